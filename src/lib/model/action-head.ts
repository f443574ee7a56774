/**
 * A continuous action head (RoboAlign's diffusion head; pi0-style flow matching): a small residual-MLP denoiser
 * over an action chunk H x D in normalized action space, conditioned on backbone features, the proprioceptive state
 * (when the model has one) and the diffusion/flow time. Written once over `Ops`, so training (tfjs) and the ONNX
 * export's denoiser step share the definition; the sampling loops (DDIM, Euler) are plain float64 arithmetic around
 * any denoiser, so the checkpoint and the export run the same loop.
 *
 * Objectives:
 * - diffusion: DDPM with a cosine schedule over `train_timesteps` steps, epsilon prediction; sampled with
 *   deterministic DDIM (eta 0) over `inference_steps` evenly spaced timesteps;
 * - flow: the linear path x_t = (1 - t) x_0 + t eps (t = 0 data, t = 1 noise), velocity target eps - x_0;
 *   sampled with Euler steps from t = 1 to t = 0.
 */
import { existsSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { VlakitError } from '../errors.js';
import { readJsonFile } from '../io/json-file.js';
import type { Ops, TensorSpec } from './arch/ops.js';
import { TfjsOps } from './arch/tfjs-ops.js';
import { type Params, newVar } from './layers.js';
import { type NamedArray, readSafetensors, writeSafetensors } from './safetensors.js';
import { Rng } from '../util/rng.js';
import { namedObjects } from '../util/names.js';
import { KEYPOINT_DIM } from './config.js';

export const ACTION_HEAD_CONFIG = 'action_head.json';
export const ACTION_HEAD_WEIGHTS = 'action_head.safetensors';

const Norm = z.object({ mean: z.array(z.number()), std: z.array(z.number().positive()) });

export const ActionHeadConfigSchema = z
  .object({
    format: z.literal('vlakit-action-head/1'),
    objective: z.enum(['diffusion', 'flow']),
    /** Actions per chunk (H) and numbers per action (D). */
    horizon: z.number().int().positive(),
    action_dim: z.number().int().positive(),
    /** Proprioceptive state numbers (0: no state input). */
    state_dim: z.number().int().nonnegative(),
    /** Width of the backbone features the head takes. */
    cond_dim: z.number().int().positive(),
    /**
     * The built-in backbone's features include its keypoint readouts (each camera's spatial-softmax outputs, K x 8
     * numbers, linear in the expected image position of each keypoint), a direct path from where things are in the
     * image to the head, as visuomotor policies feed spatial-softmax coordinates to their controller.
     */
    keypoint_features: z.boolean().default(false),
    /**
     * The readouts of the keypoints of the objects the prompt names, appended to the features (so the head need not
     * find them among all K): per slot (the prompt's first, second... named object), the 8 readout numbers of the
     * main camera's keypoint that detects it (`names[k]`: the backbone's vision_config.keypoint_names, trained by
     * train-sft --ground-weight) and a 1, or 9 zeros when the prompt names fewer objects or one without a keypoint.
     * `offset`: where the main camera's readouts start in the backbone features. The backbone's features are the
     * first cond_dim - 9 x slots numbers. `norm`: the readouts are standardized by these (the training data's, measured
     * when the head is made: the readouts are about ten times smaller than the hidden states, and would be drowned).
     * `past_norm`: the slots join after cond_norm, which then normalizes the backbone's features alone. Inside it,
     * each example's readouts were divided by the spread of all its features, a scale that changes with the image,
     * so the same position in the image could read as another; heads made before it have false.
     */
    named_keypoints: z
      .object({ names: z.array(z.string().min(1)).min(1), slots: z.number().int().positive(), offset: z.number().int().nonnegative(), norm: z.object({ mean: z.array(z.number()).length(KEYPOINT_DIM), std: z.array(z.number().positive()).length(KEYPOINT_DIM) }).optional(), past_norm: z.boolean().default(false) })
      .nullable()
      .default(null),
    hidden_size: z.number().int().positive(),
    num_layers: z.number().int().nonnegative(),
    /** Sinusoidal time features (even). */
    time_dim: z.number().int().positive().multipleOf(2),
    /** Diffusion: timesteps of the training schedule. */
    train_timesteps: z.number().int().positive(),
    /** Diffusion: what the denoiser predicts, the noise (epsilon, the default) or the clean chunk (sample). */
    prediction: z.enum(['epsilon', 'sample']).default('epsilon'),
    /** Denoising steps at inference (DDIM steps or Euler steps). */
    inference_steps: z.number().int().positive(),
    /**
     * Diffusion: DDIM clips its estimate of the clean chunk to +-clip_sample (normalized units): at the first
     * steps abar is near 0 and the estimate divides by sqrt(abar).
     */
    clip_sample: z.number().positive(),
    layer_norm_eps: z.number().positive(),
    initializer_range: z.number().positive(),
    /** Normalized action = (action - mean) / std, per dimension (from the dataset's statistics). */
    action_norm: Norm,
    state_norm: Norm.nullable(),
  })
  .superRefine((c, ctx) => {
    if (c.action_norm.mean.length !== c.action_dim || c.action_norm.std.length !== c.action_dim) ctx.addIssue({ code: 'custom', path: ['action_norm'], message: `expected ${c.action_dim} means and stds` });
    if (c.state_dim > 0 && (c.state_norm?.mean.length !== c.state_dim || c.state_norm?.std.length !== c.state_dim)) ctx.addIssue({ code: 'custom', path: ['state_norm'], message: `expected ${c.state_dim} means and stds` });
  });
export type ActionHeadConfig = z.infer<typeof ActionHeadConfigSchema>;
export type HeadObjective = ActionHeadConfig['objective'];

/** A config with the defaults of the fields not given. */
export function headConfig(o: Pick<ActionHeadConfig, 'objective' | 'horizon' | 'action_dim' | 'cond_dim' | 'action_norm'> & Partial<ActionHeadConfig>): ActionHeadConfig {
  return ActionHeadConfigSchema.parse({
    format: 'vlakit-action-head/1',
    state_dim: 0,
    keypoint_features: false,
    named_keypoints: null,
    hidden_size: 128,
    num_layers: 2,
    time_dim: 32,
    train_timesteps: 100,
    prediction: 'epsilon',
    inference_steps: 10,
    clip_sample: 5,
    layer_norm_eps: 1e-5,
    initializer_range: 0.02,
    state_norm: null,
    ...o,
  });
}

/** The numbers the named keypoints add to the backbone's features (9 per slot). */
export function namedDim(c: ActionHeadConfig): number {
  return c.named_keypoints ? c.named_keypoints.slots * (KEYPOINT_DIM + 1) : 0;
}

/** The width of the backbone's own features (cond_dim without the named keypoints). */
export function backboneDim(c: ActionHeadConfig): number {
  return c.cond_dim - namedDim(c);
}

/** Per slot, the keypoint of the object the prompt names in that place (-1: none); empty without named keypoints. */
export function namedKeypoints(c: ActionHeadConfig, prompt: string): number[] {
  const n = c.named_keypoints;
  if (!n) return [];
  const names = n.names.map((name, k) => ({ name, k }));
  const found = namedObjects(prompt, names).map((x) => x.k);
  return Array.from({ length: n.slots }, (_, i) => found[i] ?? -1);
}

/** The features with the named keypoints' readouts appended: features [backboneDim] -> [cond_dim] (the prompt's named objects). */
export function withNamedKeypoints(c: ActionHeadConfig, features: Float32Array, prompt: string): Float32Array {
  const n = c.named_keypoints;
  if (!n) return features;
  const base = backboneDim(c);
  if (features.length !== base) throw new Error(`withNamedKeypoints: ${features.length} features, the head's backbone gives ${base}`);
  const out = new Float32Array(c.cond_dim);
  out.set(features);
  namedKeypoints(c, prompt).forEach((k, s) => {
    if (k < 0) return;
    for (let j = 0; j < KEYPOINT_DIM; j++) out[base + s * (KEYPOINT_DIM + 1) + j] = (features[n.offset + k * KEYPOINT_DIM + j] - (n.norm?.mean[j] ?? 0)) / (n.norm?.std[j] ?? 1);
    out[base + s * (KEYPOINT_DIM + 1) + KEYPOINT_DIM] = 1;
  });
  return out;
}

/**
 * The same for a batch: features [B, backboneDim] and each row's keypoints per slot (namedKeypoints) -> [B, cond_dim],
 * the readouts picked by a one-hot product (differentiable; the WebAssembly backend has no gradient for gather).
 */
export function withNamedKeypointsTf(c: ActionHeadConfig, features: tf.Tensor2D, named: number[][]): tf.Tensor2D {
  const n = c.named_keypoints;
  if (!n) return features;
  const [B, base] = features.shape;
  const S = n.slots;
  const pick = new Float32Array(B * base * S * KEYPOINT_DIM);
  const present = new Float32Array(B * S);
  named.forEach((ks, b) =>
    ks.forEach((k, s) => {
      if (k < 0) return;
      present[b * S + s] = 1;
      for (let j = 0; j < KEYPOINT_DIM; j++) pick[(b * base + n.offset + k * KEYPOINT_DIM + j) * S * KEYPOINT_DIM + s * KEYPOINT_DIM + j] = 1;
    }),
  );
  let read = tf.reshape(tf.matMul(tf.reshape(features, [B, 1, base]), tf.tensor3d(pick, [B, base, S * KEYPOINT_DIM])), [B, S, KEYPOINT_DIM]); // [B, 1, base] x [B, base, S*8] -> [B, S, 8]
  // standardized where a slot is filled (an empty slot stays zeros)
  if (n.norm) read = tf.mul(tf.div(tf.sub(read, tf.tensor1d(n.norm.mean)), tf.tensor1d(n.norm.std)), tf.tensor3d(present, [B, S, 1]));
  const slots = tf.concat([read, tf.tensor3d(present, [B, S, 1])], 2); // [B, S, 9]
  return tf.concat([features, tf.reshape(slots, [B, S * (KEYPOINT_DIM + 1)])], 1) as tf.Tensor2D; // [B, cond_dim]
}

/** The flattened chunk width H*D. */
export function chunkSize(c: ActionHeadConfig): number {
  return c.horizon * c.action_dim;
}

/** Every tensor of the head, linear weights [in, out] (vlakit's layout). */
export function headTensors(c: ActionHeadConfig): TensorSpec[] {
  const out: TensorSpec[] = [];
  const lin = (name: string, i: number, o: number) => out.push({ name: `${name}.weight`, shape: [i, o], init: 'normal' }, { name: `${name}.bias`, shape: [o], init: 'zeros' });
  const norm = (name: string, n: number) => out.push({ name: `${name}.weight`, shape: [n], init: 'ones' }, { name: `${name}.bias`, shape: [n], init: 'zeros' });
  const h = c.hidden_size;
  norm('action_head.cond_norm', c.named_keypoints?.past_norm ? backboneDim(c) : c.cond_dim);
  lin('action_head.cond_in', c.time_dim + c.cond_dim + c.state_dim, h);
  lin('action_head.in', chunkSize(c), h);
  for (let i = 0; i < c.num_layers; i++) {
    lin(`action_head.layers.${i}.film`, h, 2 * h);
    norm(`action_head.layers.${i}.norm`, h);
    lin(`action_head.layers.${i}.fc1`, h, 2 * h);
    lin(`action_head.layers.${i}.fc2`, 2 * h, h);
  }
  lin('action_head.out', h, chunkSize(c));
  return out;
}

/**
 * One denoiser call: x [B, H*D] (the noisy normalized chunk), temb [B, time_dim] (timeEmbedding), cond [B, C]
 * (backbone features), state [B, S] (normalized; when state_dim > 0) -> [B, H*D]: the noise (diffusion) or the
 * velocity (flow). The time, features and state make one embedding that modulates every block (FiLM: a scale and
 * a shift of the normalized activations), as diffusion policies condition their networks: the targets are
 * time-dependent multiples of x, which a plain MLP over concatenated inputs fits poorly.
 */
export function headDenoise<T>(ops: Ops<T>, c: ActionHeadConfig, x: T, temb: T, cond: T, state?: T): T {
  // past_norm: [B, C] -> [B, C - 9 slots] normalized, [B, 9 slots] as they are
  const [features, ...named] = c.named_keypoints?.past_norm ? ops.split(cond, [backboneDim(c), namedDim(c)]) : [cond];
  const parts = [temb, ops.layerNorm(features, 'action_head.cond_norm', c.layer_norm_eps), ...named];
  if (c.state_dim > 0) {
    if (state === undefined) throw new VlakitError('E_USAGE', `the action head takes a ${c.state_dim}-number state`);
    parts.push(state);
  }
  const emb = ops.silu(ops.linear(ops.concat(parts, 1), 'action_head.cond_in')); // [B, E + C + S] -> [B, hidden]
  let h = ops.linear(x, 'action_head.in'); // [B, H*D] -> [B, hidden]
  const hs = c.hidden_size;
  for (let i = 0; i < c.num_layers; i++) {
    const n = `action_head.layers.${i}`;
    const [scale, shift] = ops.split(ops.linear(emb, `${n}.film`), [hs, hs]); // [B, 2h] -> 2 x [B, h]
    const hn = ops.layerNorm(h, `${n}.norm`, c.layer_norm_eps);
    const mod = ops.add(ops.add(hn, ops.mul(hn, scale)), shift); // hn (1 + scale) + shift
    h = ops.add(h, ops.linear(ops.silu(ops.linear(mod, `${n}.fc1`)), `${n}.fc2`)); // [B, 2h] -> [B, h]
  }
  // no norm before the output: the targets scale with x (eps ~ x at high noise), which a norm would take away
  return ops.linear(h, 'action_head.out'); // [B, H*D]
}

/** Sinusoidal features of model times t in [0, 1] (scaled by 1000): [B, dim] row-major, sines then cosines. */
export function timeEmbedding(ts: number[], dim: number): Float32Array {
  const half = dim / 2;
  const out = new Float32Array(ts.length * dim);
  ts.forEach((t, b) => {
    for (let i = 0; i < half; i++) {
      const a = t * 1000 * Math.exp((-Math.log(10000) * i) / half);
      out[b * dim + i] = Math.sin(a);
      out[b * dim + half + i] = Math.cos(a);
    }
  });
  return out;
}

/**
 * The cosine schedule's cumulative alphas (Nichol & Dhariwal 2021, s = 0.008, betas capped at 0.999): abar[k] for
 * k = 0..T, abar[0] = 1.
 */
export function cosineAlphaBars(T: number): Float64Array {
  const f = (t: number) => Math.cos(((t / T + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
  const out = new Float64Array(T + 1);
  out[0] = 1;
  for (let k = 1; k <= T; k++) {
    const beta = Math.min(1 - f(k) / f(k - 1), 0.999);
    out[k] = out[k - 1] * (1 - beta);
  }
  return out;
}

/**
 * The DDIM timesteps of K inference steps over a T-step schedule, "leading" spacing: 1 + T(K-1)/K, ..., 1 (then 0);
 * e.g. 91, 81, ..., 1 for T = 100, K = 10. The cosine schedule's abar at T itself is about 2e-7, where the clean
 * estimate divides the denoiser's error by sqrt(abar); the first step starts below it.
 */
export function ddimTimesteps(T: number, K: number): number[] {
  const steps = Math.min(K, T);
  return Array.from({ length: steps }, (_, i) => 1 + Math.floor((T * (steps - 1 - i)) / steps));
}

/** A denoiser as the samplers call it: the noisy chunks x [B*H*D] and the model time t in [0, 1] -> its prediction. */
export type Denoiser = (x: Float32Array, t: number) => Promise<Float32Array>;

/**
 * Denoises `noise` (B chunks, flattened) into normalized action chunks with the config's objective: DDIM (eta 0)
 * or Euler, over `steps` (default the config's inference_steps). The arithmetic is float64; only the denoiser's
 * inputs are float32.
 * @example const x0 = await sampleChunk(cfg, noise, (x, t) => head.predict(x, t, cond))
 */
export async function sampleChunk(c: Pick<ActionHeadConfig, 'objective' | 'train_timesteps' | 'inference_steps' | 'clip_sample'> & { prediction?: 'epsilon' | 'sample' }, noise: ArrayLike<number>, denoise: Denoiser, steps = c.inference_steps): Promise<Float64Array> {
  const x = Float64Array.from(noise);
  if (c.objective === 'flow') {
    const dt = 1 / steps;
    for (let i = 0; i < steps; i++) {
      const t = 1 - i * dt;
      const v = await denoise(Float32Array.from(x), t);
      for (let j = 0; j < x.length; j++) x[j] -= dt * v[j];
    }
    return x;
  }
  const T = c.train_timesteps;
  const abar = cosineAlphaBars(T);
  const taus = ddimTimesteps(T, steps);
  for (let i = 0; i < taus.length; i++) {
    const a = abar[taus[i]];
    const aPrev = abar[taus[i + 1] ?? 0];
    const pred = await denoise(Float32Array.from(x), taus[i] / T);
    const clip = (v: number) => Math.min(c.clip_sample, Math.max(-c.clip_sample, v));
    for (let j = 0; j < x.length; j++) {
      // the clean estimate and the noise, one from the other
      const x0 = clip(c.prediction === 'sample' ? pred[j] : (x[j] - Math.sqrt(1 - a) * pred[j]) / Math.sqrt(a));
      const eps = c.prediction === 'sample' ? (x[j] - Math.sqrt(a) * x0) / Math.sqrt(1 - a) : pred[j];
      x[j] = Math.sqrt(aPrev) * x0 + Math.sqrt(1 - aPrev) * eps;
    }
  }
  return x;
}

/**
 * One training example's noisy input and target per chunk: x0 [B*n] (normalized chunks) -> x_t, the model times
 * [B] and the targets (the noise, or the velocity noise - x0), drawn from `rng`.
 */
export function trainingPair(c: ActionHeadConfig, x0: Float32Array, rng: Rng | Rng[]): { xt: Float32Array; t: number[]; target: Float32Array } {
  const n = chunkSize(c);
  const B = x0.length / n;
  const xt = new Float32Array(x0.length);
  const target = new Float32Array(x0.length);
  const t: number[] = [];
  const abar = c.objective === 'diffusion' ? cosineAlphaBars(c.train_timesteps) : undefined;
  for (let b = 0; b < B; b++) {
    const r = Array.isArray(rng) ? rng[b] : rng;
    let sa = 0;
    let sn = 0;
    if (abar) {
      const k = r.int(1, c.train_timesteps);
      t.push(k / c.train_timesteps);
      sa = Math.sqrt(abar[k]);
      sn = Math.sqrt(1 - abar[k]);
    } else {
      const tt = r.next();
      t.push(tt);
      sa = 1 - tt;
      sn = tt;
    }
    for (let j = b * n; j < (b + 1) * n; j++) {
      const eps = r.normal();
      xt[j] = sa * x0[j] + sn * eps;
      target[j] = !abar ? eps - x0[j] : c.prediction === 'sample' ? x0[j] : eps;
    }
  }
  return { xt, t, target };
}

/** A chunk [h][D] as normalized numbers [H*D]: cut to H, or padded by repeating its last action. */
export function normalizeChunk(c: ActionHeadConfig, chunk: number[][]): Float32Array {
  if (!chunk.length) throw new VlakitError('E_RECORD_INVALID', 'an empty action chunk');
  const D = c.action_dim;
  const out = new Float32Array(chunkSize(c));
  for (let i = 0; i < c.horizon; i++) {
    const a = chunk[Math.min(i, chunk.length - 1)];
    if (a.length !== D) throw new VlakitError('E_RECORD_INVALID', `an action of ${a.length} numbers; the action head takes ${D}`);
    for (let k = 0; k < D; k++) out[i * D + k] = (a[k] - c.action_norm.mean[k]) / c.action_norm.std[k];
  }
  return out;
}

/** Normalized numbers [H*D] -> the chunk in action units [H][D]. */
export function denormalizeChunk(c: ActionHeadConfig, x: ArrayLike<number>): number[][] {
  const D = c.action_dim;
  return Array.from({ length: c.horizon }, (_, i) => Array.from({ length: D }, (_, k) => x[i * D + k] * c.action_norm.std[k] + c.action_norm.mean[k]));
}

/** A state vector normalized as the head takes it (state_dim numbers), or a usage error naming what is wrong. */
export function normalizeState(c: ActionHeadConfig, state: unknown): Float32Array | undefined {
  if (c.state_dim === 0) return undefined;
  if (!Array.isArray(state) || state.length < c.state_dim || !state.slice(0, c.state_dim).every((v) => typeof v === 'number' && Number.isFinite(v))) {
    throw new VlakitError('E_RECORD_INVALID', `the action head takes a numeric state of ${c.state_dim} numbers`, { field: 'state' });
  }
  const n = c.state_norm!;
  return Float32Array.from({ length: c.state_dim }, (_, k) => ((state[k] as number) - n.mean[k]) / n.std[k]);
}

/** The head's weights as tfjs variables, and the tfjs denoiser over them. */
export class ActionHead {
  readonly params: Params = new Map();

  constructor(readonly config: ActionHeadConfig) {}

  /** Fresh weights: normal(0, initializer_range) in the tensor list's order from the seed; norms 1, biases 0. */
  static init(config: ActionHeadConfig, seed = 0): ActionHead {
    const h = new ActionHead(config);
    let s = seed * 1000 + 501;
    for (const t of headTensors(config)) {
      const value = t.init === 'normal' ? tf.randomNormal(t.shape, 0, config.initializer_range, 'float32', s++) : t.init === 'ones' ? tf.ones(t.shape) : tf.zeros(t.shape);
      h.params.set(t.name, newVar(value, t.name));
    }
    return h;
  }

  /** A head from stored arrays (action_head.safetensors), each checked against the config's shapes. */
  static fromArrays(config: ActionHeadConfig, arrays: Map<string, NamedArray>, file = ACTION_HEAD_WEIGHTS): ActionHead {
    const h = new ActionHead(config);
    for (const t of headTensors(config)) {
      const a = arrays.get(t.name);
      if (!a) throw new VlakitError('E_MODEL', `the action head has no tensor ${t.name}`, { file });
      if (a.shape.join('x') !== t.shape.join('x')) throw new VlakitError('E_MODEL', `${t.name} is [${a.shape.join(', ')}]; the head's config makes it [${t.shape.join(', ')}]`, { file });
      h.params.set(t.name, newVar(tf.tensor(a.data, a.shape, 'float32'), t.name));
    }
    return h;
  }

  /** x [B, H*D], t [B] model times, cond [B, C], state [B, S] -> the prediction [B, H*D] (tensors of the caller's scope). */
  denoise(x: tf.Tensor2D, t: number[], cond: tf.Tensor2D, state?: tf.Tensor2D): tf.Tensor2D {
    const ops = new TfjsOps(this.params, undefined, undefined, 0, 'in_out');
    const temb = tf.tensor2d(timeEmbedding(t, this.config.time_dim), [t.length, this.config.time_dim]);
    return headDenoise(ops, this.config, x, temb, cond, state) as tf.Tensor2D;
  }

  /**
   * The objective's loss: mean squared error of the prediction against the noise (diffusion) or the velocity
   * (flow) at a random time, for normalized chunks x0 [B, H*D]; noise and times drawn from `rng` (one for all
   * rows, or one per row). `rows` divides the summed squares instead of B (a part of a larger batch).
   */
  loss(cond: tf.Tensor2D, x0: Float32Array, rng: Rng | Rng[], state?: tf.Tensor2D, rows?: number): tf.Scalar {
    const n = chunkSize(this.config);
    const B = x0.length / n;
    const p = trainingPair(this.config, x0, rng);
    const pred = this.denoise(tf.tensor2d(p.xt, [B, n]), p.t, cond, state);
    return tf.div(tf.sum(tf.square(tf.sub(pred, tf.tensor2d(p.target, [B, n])))), (rows ?? B) * n) as tf.Scalar;
  }

  /** Samples normalized chunks for cond [B, C] (kept by the caller) from `noise` [B*H*D]. */
  async sample(cond: tf.Tensor2D, noise: ArrayLike<number>, o: { steps?: number; state?: tf.Tensor2D } = {}): Promise<Float64Array> {
    const n = chunkSize(this.config);
    const B = cond.shape[0];
    return sampleChunk(this.config, noise, async (x, t) => {
      const out = tf.tidy(() => this.denoise(tf.tensor2d(x, [B, n]), new Array<number>(B).fill(t), cond, o.state));
      const data = (await out.data()) as Float32Array;
      out.dispose();
      return data;
    }, o.steps);
  }

  /** The weights as arrays, by name (action_head.safetensors). */
  async arrays(): Promise<Map<string, NamedArray>> {
    const out = new Map<string, NamedArray>();
    for (const [n, v] of this.params) out.set(n, { shape: v.shape, data: (await v.data()) as Float32Array });
    return out;
  }

  vars(): tf.Variable[] {
    return [...this.params.values()];
  }

  numParameters(): number {
    return this.vars().reduce((a, v) => a + v.size, 0);
  }

  dispose(): void {
    for (const v of this.params.values()) v.dispose();
    this.params.clear();
  }
}

/** Standard normal noise for B chunks of the head, from a seed: [B*H*D]. */
export function chunkNoise(c: ActionHeadConfig, B: number, seed: number): Float64Array {
  const rng = new Rng(seed);
  return Float64Array.from({ length: B * chunkSize(c) }, () => rng.normal());
}

/** True when a model directory (a checkpoint or an export) has an action head. */
export function hasActionHead(dir: string): boolean {
  return existsSync(path.join(dir, ACTION_HEAD_CONFIG));
}

/** Reads an action head's config (action_head.json); a missing or invalid one is an error naming the file. */
export function readHeadConfig(dir: string): ActionHeadConfig {
  return readJsonFile(path.join(dir, ACTION_HEAD_CONFIG), ActionHeadConfigSchema, { what: 'action head config', code: 'E_MODEL' });
}

/** Loads a checkpoint's action head (action_head.json + action_head.safetensors). */
export function loadActionHead(dir: string): ActionHead {
  const file = path.join(dir, ACTION_HEAD_WEIGHTS);
  if (!existsSync(file)) throw new VlakitError('E_MODEL', `${ACTION_HEAD_CONFIG} is here but ${ACTION_HEAD_WEIGHTS} is missing`, { file: dir });
  return ActionHead.fromArrays(readHeadConfig(dir), readSafetensors(file).tensors, file);
}

/** Writes the head's config and weights into `dir` (a checkpoint being written). */
export async function writeActionHead(dir: string, head: ActionHead): Promise<void> {
  await fsp.writeFile(path.join(dir, ACTION_HEAD_CONFIG), `${JSON.stringify(head.config, null, 2)}\n`);
  await writeSafetensors(path.join(dir, ACTION_HEAD_WEIGHTS), await head.arrays(), { format: 'vlakit', layout: 'in_out' });
}
