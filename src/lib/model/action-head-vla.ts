/**
 * The built-in VLA as the action head's backbone: its decoder's final hidden states give the head's features,
 * [h at the prompt's last position (<sep>), the mean of h over the image tokens and the prompt] -> [B, 2D]. The
 * decoder is causal, so these positions see only the images and the prompt: one forward over
 * `<bos> prompt <sep> target <eos>` gives both the target's logits (the language loss) and the features the head
 * gets at inference from the prompt alone.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { VlaConfig } from './config.js';
import type { VlaModel } from './model.js';
import { TfjsOps } from './arch/tfjs-ops.js';
import { vlaHidden, vlaImageTokens } from './arch/vlakit-vla.js';

/** The head's feature width for a built-in model: twice the decoder's width. */
export function vlaFeatureDim(c: VlaConfig): number {
  return 2 * c.text_config.hidden_size;
}

/**
 * pixels [B, C, S, S, 3], ids [B, T] and, per example, the text position of its prompt's last token (<sep>) ->
 * the head's features [B, 2D] and, unless `logits` is false, the text positions' logits [B, T, V].
 */
export function vlaHeadFeatures(model: VlaModel, pixels: tf.Tensor5D, ids: tf.Tensor2D, promptEnd: number[], o: { logits?: boolean } = {}): { cond: tf.Tensor2D; logits?: tf.Tensor3D } {
  const c = model.config;
  const ops = new TfjsOps(model.params, undefined, model.lora, 0, 'in_out');
  const h = vlaHidden(ops, c, ids, pixels) as tf.Tensor3D; // [B, Ni + T, D]
  const [B, L] = h.shape;
  const Ni = vlaImageTokens(c);
  // per example, weights over positions: one-hot at <sep>, and uniform over the images and the prompt
  const last = new Float32Array(B * L);
  const mean = new Float32Array(B * L);
  promptEnd.forEach((p, b) => {
    const end = Ni + p; // position of <sep> among all positions
    last[b * L + end] = 1;
    for (let j = 0; j <= end; j++) mean[b * L + j] = 1 / (end + 1);
  });
  const w = tf.tensor3d([...last, ...mean], [2 * B, 1, L]); // rows: B one-hots, then B means
  const hh = tf.concat([h, h], 0) as tf.Tensor3D; // [2B, L, D]
  const D = h.shape[2];
  const pooled = tf.reshape(tf.matMul(w, hh), [2 * B, D]); // [2B, 1, L] x [2B, L, D] -> [2B, 1, D] -> [2B, D]
  const cond = tf.concat([tf.slice(pooled, [0, 0], [B, D]), tf.slice(pooled, [B, 0], [B, D])], 1) as tf.Tensor2D; // [B, 2D]
  if (o.logits === false) return { cond };
  const logits = ops.head(ops.slice(h, 1, Ni), 'model.embed_tokens.weight') as tf.Tensor3D; // [B, T, V]
  return { cond, logits };
}
