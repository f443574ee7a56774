/**
 * The built-in VLA as the action head's backbone: its decoder's final hidden states give the head's features,
 * [h at the prompt's last position (<sep>), the mean of h over the image tokens and the prompt] -> [B, 2D]. The
 * decoder is causal, so these positions see only the images and the prompt: one forward over
 * `<bos> prompt <sep> target <eos>` gives both the target's logits (the language loss) and the features the head
 * gets at inference from the prompt alone. With `keypoints` (a head's keypoint_features) the features end with the
 * vision tower's keypoint readouts, [B, C*K*8], straight from the spatial softmax.
 */
import * as tf from '@tensorflow/tfjs-core';
import { KEYPOINT_DIM, type VlaConfig } from './config.js';
import { VlakitError } from '../errors.js';
import type { VlaModel } from './model.js';
import { TfjsOps } from './arch/tfjs-ops.js';
import { type VlaTap, vlaHidden, vlaImageTokens } from './arch/vlakit-vla.js';

/** The keypoint readouts' width of a built-in model (C*K*8); a usage error when it has no keypoints. */
export function vlaKeypointDim(c: VlaConfig): number {
  const K = c.vision_config.keypoints;
  if (!K) throw new VlakitError('E_USAGE', 'keypoint features need a backbone with keypoints (vision_config.keypoints; docs/MODEL.md)');
  return c.num_cameras * K * KEYPOINT_DIM;
}

/** The head's feature width for a built-in model: twice the decoder's width (and the keypoint readouts). */
export function vlaFeatureDim(c: VlaConfig, keypoints = false): number {
  return 2 * c.text_config.hidden_size + (keypoints ? vlaKeypointDim(c) : 0);
}

/**
 * pixels [B, C, S, S, 3], ids [B, T] and, per example, the text position of its prompt's last token (<sep>) ->
 * the head's features [B, 2D] ([B, 2D + C*K*8] with `keypoints`) and, unless `logits` is false, the text positions' logits [B, T, V].
 */
export function vlaHeadFeatures(model: VlaModel, pixels: tf.Tensor5D, ids: tf.Tensor2D, promptEnd: number[], o: { logits?: boolean; keypoints?: boolean; tap?: VlaTap<tf.Tensor> } = {}): { cond: tf.Tensor2D; logits?: tf.Tensor3D } {
  const c = model.config;
  const ops = new TfjsOps(model.params, undefined, model.lora, 0, 'in_out');
  if (o.keypoints) vlaKeypointDim(c); // a usage error when the backbone has no keypoints
  const tap: VlaTap<tf.Tensor> = o.tap ?? {};
  const h = vlaHidden(ops, c, ids, pixels, o.keypoints || o.tap ? tap : undefined) as tf.Tensor3D; // [B, Ni + T, D]
  const [B, L] = h.shape;
  const Ni = vlaImageTokens(c);
  // per example, two weightings of the positions: one-hot at <sep>, and uniform over the images and the prompt
  const weights = new Float32Array(B * 2 * L);
  promptEnd.forEach((p, b) => {
    const end = Ni + p; // position of <sep> among all positions
    weights[(2 * b) * L + end] = 1;
    for (let j = 0; j <= end; j++) weights[(2 * b + 1) * L + j] = 1 / (end + 1);
  });
  const w = tf.tensor3d(weights, [B, 2, L]);
  const D = h.shape[2];
  const hidden = tf.reshape(tf.matMul(w, h), [B, 2 * D]) as tf.Tensor2D; // [B, 2, L] x [B, L, D] -> [B, 2, D] -> [B, 2D]: [at <sep>, mean]
  const cond = o.keypoints ? (tf.concat([hidden, tap.keypoints as tf.Tensor2D], 1) as tf.Tensor2D) : hidden; // [B, 2D (+ C*K*8)]
  if (o.logits === false) return { cond };
  const logits = ops.head(ops.slice(h, 1, Ni), 'model.embed_tokens.weight') as tf.Tensor3D; // [B, T, V]
  return { cond, logits };
}
