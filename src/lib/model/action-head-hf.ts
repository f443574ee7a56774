/**
 * A Hugging Face checkpoint as the action head's backbone (any architecture of arch/registry.ts that trains: the
 * text-only and vision-language ones): the text model's final hidden states (after its final norm, the input of
 * the LM head) give the head's features, [h at the prompt's last token, the mean of h over the prompt's tokens (the
 * image tokens among them)] -> [B, 2D], as for the built-in model (action-head-vla.ts). The hidden states are taken
 * where every architecture hands them to `ops.head`, so no architecture needs a second forward.
 */
import * as tf from '@tensorflow/tfjs-core';
import { VlakitError } from '../errors.js';
import type { ImageFeatures } from './arch/ops.js';
import type { Architecture } from './arch/registry.js';
import { TfjsOps, type TfjsLora, type TfjsParams } from './arch/tfjs-ops.js';

/** TfjsOps that keep the hidden states the LM head is applied to; without `logits`, the head is not applied. */
class HiddenOps extends TfjsOps {
  hidden?: tf.Tensor;
  constructor(
    params: TfjsParams,
    lora: TfjsLora | undefined,
    private readonly logits: boolean,
    prefix: number[] | number = 0,
  ) {
    super(params, undefined, lora, prefix);
  }

  override head(h: tf.Tensor, weight: string): tf.Tensor {
    this.hidden = h;
    return this.logits ? super.head(h, weight) : h;
  }
}

/** The width of a checkpoint's text model (its token embedding's second axis). */
export function hfHiddenSize(arch: Architecture<unknown>, config: unknown): number {
  const emb = arch.tensors(config).find((t) => /(^|\.)embed_tokens\.weight$/.test(t.name) && !/vision/.test(t.name));
  if (!emb) throw new VlakitError('E_MODEL', `${arch.modelType}: no token embedding to size the action head's features by`);
  return emb.shape[1];
}

/** The head's feature width for a Hugging Face backbone: twice the text model's width. */
export function hfFeatureDim(arch: Architecture<unknown>, config: unknown): number {
  return 2 * hfHiddenSize(arch, config);
}

/**
 * ids [B, T] (right-padded), the images (pixel_values [N, C, S, S] or cached features) and, per example, the
 * position of its prompt's last token -> the head's features [B, 2D] and, with `logits`, the logits [B, T, V].
 */
export function hfHeadFeatures(
  b: { arch: Architecture<unknown>; config: unknown; params: TfjsParams; lora?: TfjsLora },
  ids: tf.Tensor2D,
  image: tf.Tensor | ImageFeatures<tf.Tensor> | undefined,
  promptEnd: number[],
  o: { logits?: boolean } = {},
): { cond: tf.Tensor2D; logits?: tf.Tensor3D } {
  // a prefix-LM (PaliGemma): each row's prompt, up to its last token, attends both ways
  const ops = new HiddenOps(b.params, b.lora, o.logits !== false, b.arch.prefixLm ? promptEnd.map((p) => p + 1) : 0);
  const out = b.arch.forward(ops, b.config, ids, image) as tf.Tensor3D;
  const h = ops.hidden as tf.Tensor3D; // [B, T, D]
  if (!h) throw new VlakitError('E_MODEL', `${b.arch.modelType}: its forward gave no hidden states to the LM head`);
  const [B, L, D] = h.shape;
  // per example, two weightings of the positions: one-hot at the prompt's last token, uniform over the prompt
  const weights = new Float32Array(B * 2 * L);
  promptEnd.forEach((p, i) => {
    weights[2 * i * L + p] = 1;
    for (let j = 0; j <= p; j++) weights[(2 * i + 1) * L + j] = 1 / (p + 1);
  });
  const w = tf.tensor3d(weights, [B, 2, L]);
  const cond = tf.reshape(tf.matMul(w, h), [B, 2 * D]) as tf.Tensor2D; // [B, 2, L] x [B, L, D] -> [B, 2, D] -> [B, 2D]: [last, mean]
  return o.logits === false ? { cond } : { cond, logits: out };
}
