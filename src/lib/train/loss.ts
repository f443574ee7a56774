/**
 * The fine-tuning loss (ReFineVLA eq. 3): mean cross-entropy over action-span tokens + lambda_r x mean
 * cross-entropy over reasoning-span tokens; prompt and padding tokens weigh nothing.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Batch } from './data.js';
import type { VlaModel } from '../model/model.js';

/** Per-token cross-entropy of next-token prediction: logits [B, T, V], ids [B, T] -> [B, T-1]. */
export function tokenCrossEntropy(logits: tf.Tensor3D, ids: tf.Tensor2D): tf.Tensor2D {
  const [B, T, V] = logits.shape;
  const lp = tf.logSoftmax(tf.slice(logits, [0, 0, 0], [B, T - 1, V])); // [B, T-1, V]
  const target = tf.oneHot(tf.reshape(tf.slice(ids, [0, 1], [B, T - 1]), [-1]) as tf.Tensor1D, V); // [B*(T-1), V]
  return tf.neg(tf.reshape(tf.sum(tf.mul(tf.reshape(lp, [B * (T - 1), V]), target), -1), [B, T - 1])) as tf.Tensor2D;
}

export interface LossParts {
  loss: tf.Scalar;
  action: tf.Scalar;
  reasoning: tf.Scalar;
  /** The grounding loss (train/ground.ts), when the batch has grounding targets and the run weighs them. */
  ground?: tf.Scalar;
}

/** The loss of a batch under the built-in model, or under any forward (batch -> logits [B, T, V]). */
export function sftLoss(model: VlaModel | ((b: Batch) => tf.Tensor3D), batch: Batch, lambdaR: number): LossParts {
  const logits = typeof model === 'function' ? model(batch) : model.forward(batch.pixels as tf.Tensor5D, batch.ids).logits;
  const ce = tokenCrossEntropy(logits, batch.ids);
  const action = batch.actionCount > 0 ? tf.div(tf.sum(tf.mul(ce, batch.action)), batch.actionCount) : tf.scalar(0);
  const reasoning = batch.reasoningCount > 0 ? tf.div(tf.sum(tf.mul(ce, batch.reasoning)), batch.reasoningCount) : tf.scalar(0);
  return { loss: tf.add(action, tf.mul(reasoning, lambdaR)) as tf.Scalar, action: action as tf.Scalar, reasoning: reasoning as tf.Scalar };
}
