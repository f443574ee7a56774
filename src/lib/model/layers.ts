/**
 * The TensorFlow.js building blocks of the tfjs backend of `Ops` (arch/tfjs-ops.ts), one function per concept:
 * linear layers over weights stored [in, out] (y = x W + b, with optional LoRA), RMSNorm, LayerNorm, rotary
 * position embeddings, grouped-query attention, GELU, and the embedding lookup with a scatter-add gradient (the
 * WebAssembly backend has no gradient for gather).
 */
import * as tf from '@tensorflow/tfjs-core';
import './backend.js'; // the plain-product gradient of matMul

export type Params = Map<string, tf.Variable>;

export interface LoraSpec {
  r: number;
  alpha: number;
  /** PEFT module names: q, k, v, o, gate, up, down (as q_proj, ...). */
  targets: Set<string>;
  /** When false, the adapters are bypassed (the reference policy of train-rl). */
  enabled: boolean;
}

let varCounter = 0;

/**
 * A variable holding `init`, which is then released (tf.variable keeps its own reference to the data). TF.js
 * registers variables by name process-wide, so the name gets a unique `@n` suffix: several models can live at once.
 */
export function newVar(init: tf.Tensor, name?: string, trainable = true): tf.Variable {
  const v = tf.variable(init, trainable, name === undefined ? undefined : `${name}@${++varCounter}`);
  init.dispose();
  return v;
}

/**
 * Sets a variable to new values (the data of a checkpoint, a worker's copy of the weights). The temporary tensor is
 * disposed once the variable holds its data: `v.assign(tf.tensor(..))` alone keeps every old value alive.
 */
export function assignValues(v: tf.Variable, data: Float32Array, shape: number[] = v.shape): void {
  const t = tf.tensor(data, shape, 'float32');
  v.assign(t);
  t.dispose();
}

/** The parameter name of a variable made by newVar. */
export function paramName(v: tf.Variable): string {
  return v.name.replace(/@\d+$/, '');
}

/** Where `linear` reads its weights: a Params map, or any lookup by name. */
export interface WeightLookup {
  get(name: string): tf.Tensor | undefined;
}

/**
 * a [M, K] times b [K, N] (or b [N, K] transposed when `transposeB`): [M, N], as a plain product. The WebAssembly
 * backend runs a matMul with a transposed operand about 10x slower, so the transpose is made explicit (a copy, cheap
 * next to the product); the gradient (registered in backend.ts) makes its products plain the same way. Measured on a
 * `mini` training step: BatchMatMul kernels 342 of 447 ms before.
 */
export function matMul2d(a: tf.Tensor2D, b: tf.Tensor2D, transposeB = false): tf.Tensor2D {
  return tf.matMul(a, transposeB ? tf.transpose(b) : b); // [M, K] x [K, N]
}

/**
 * x [.., in] -> [.., out] with `${name}.weight` [in, out] and `${name}.bias`; adds the LoRA update (x A) B * alpha / r
 * (A [in, r], B [r, out]) when the module is a target.
 */
export function linear(p: WeightLookup, name: string, x: tf.Tensor, lora?: LoraSpec): tf.Tensor {
  const w = p.get(`${name}.weight`);
  if (!w) throw new Error(`missing parameter ${name}.weight`);
  const shape = x.shape;
  const inDim = shape[shape.length - 1];
  const x2 = tf.reshape(x, [-1, inDim]); // [N, in]
  let y = matMul2d(x2 as tf.Tensor2D, w as tf.Tensor2D); // [N, out]
  const b = p.get(`${name}.bias`);
  if (b) y = tf.add(y, b);
  const module = name.split('.').pop()!;
  if (lora?.enabled && lora.targets.has(module)) {
    const a = p.get(`${name}.lora_A.weight`);
    const bb = p.get(`${name}.lora_B.weight`);
    if (a && bb) y = tf.add(y, tf.mul(matMul2d(matMul2d(x2 as tf.Tensor2D, a as tf.Tensor2D), bb as tf.Tensor2D), lora.alpha / lora.r)); // [N, in]x[in, r]x[r, out]
  }
  return tf.reshape(y, [...shape.slice(0, -1), w.shape[1] as number]);
}

/** x / rms(x) * weight, over the last axis. */
export function rmsNorm(x: tf.Tensor, weight: tf.Tensor, eps: number): tf.Tensor {
  const ms = tf.mean(tf.square(x), -1, true);
  return tf.mul(tf.mul(x, tf.rsqrt(tf.add(ms, eps))), weight);
}

export function layerNorm(x: tf.Tensor, weight: tf.Tensor, bias: tf.Tensor, eps: number): tf.Tensor {
  const { mean, variance } = tf.moments(x, -1, true);
  return tf.add(tf.mul(tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, eps))), weight), bias);
}

/** GELU, tanh approximation. */
export function gelu(x: tf.Tensor): tf.Tensor {
  const c = Math.sqrt(2 / Math.PI);
  return tf.mul(tf.mul(x, 0.5), tf.add(1, tf.tanh(tf.mul(tf.add(x, tf.mul(tf.pow(x, 3), 0.044715)), c))));
}

/**
 * cos and sin of the rotary angles of positions [offset, offset + T): [T, hd/2] each, row-major (the export's tables
 * too); positions are divided by `factor` (the "linear" rope scaling).
 */
export function ropeAngles(T: number, hd: number, theta: number, offset = 0, factor = 1): { cos: Float32Array; sin: Float32Array } {
  const half = hd / 2;
  const cos = new Float32Array(T * half);
  const sin = new Float32Array(T * half);
  for (let t = 0; t < T; t++) {
    for (let i = 0; i < half; i++) {
      const a = (t + offset) / factor / theta ** ((2 * i) / hd);
      cos[t * half + i] = Math.cos(a);
      sin[t * half + i] = Math.sin(a);
    }
  }
  return { cos, sin };
}

/** cos and sin tables for rotary embeddings of positions [offset, offset + T): each [T, hd/2]. */
export function ropeTables(T: number, hd: number, theta: number, offset = 0, factor = 1): { cos: tf.Tensor2D; sin: tf.Tensor2D } {
  const { cos, sin } = ropeAngles(T, hd, theta, offset, factor);
  return { cos: tf.tensor2d(cos, [T, hd / 2]), sin: tf.tensor2d(sin, [T, hd / 2]) };
}

/** Rotates the two halves of the head dimension (the "rotate_half" convention). x: [B, H, T, hd]. */
export function applyRope(x: tf.Tensor4D, cos: tf.Tensor2D, sin: tf.Tensor2D): tf.Tensor4D {
  const hd = x.shape[3];
  const [x1, x2] = tf.split(x, [hd / 2, hd / 2], 3); // [B, H, T, hd/2] each
  const c = tf.reshape(cos, [1, 1, ...cos.shape]); // [1, 1, T, hd/2]
  const s = tf.reshape(sin, [1, 1, ...sin.shape]);
  return tf.concat([tf.sub(tf.mul(x1, c), tf.mul(x2, s)), tf.add(tf.mul(x2, c), tf.mul(x1, s))], 3) as tf.Tensor4D;
}

/** [B, T, H*hd] -> [B, H, T, hd] */
export function splitHeads(x: tf.Tensor, heads: number): tf.Tensor4D {
  const [B, T, D] = x.shape;
  return tf.transpose(tf.reshape(x, [B, T, heads, D / heads]), [0, 2, 1, 3]) as tf.Tensor4D; // [B, T, H, hd] -> [B, H, T, hd]
}

/** [B, H, T, hd] -> [B, T, H*hd] */
export function mergeHeads(x: tf.Tensor4D): tf.Tensor3D {
  const [B, H, T, hd] = x.shape;
  return tf.reshape(tf.transpose(x, [0, 2, 1, 3]), [B, T, H * hd]) as tf.Tensor3D; // [B, H, T, hd] -> [B, T, H, hd] -> [B, T, H*hd]
}

/**
 * Repeats key/value heads for grouped-query attention: [B, KV, T, hd] -> [B, KV*n, T, hd], head kv*n + j being a
 * copy of kv head kv (PyTorch's repeat_interleave). Built from slice and concat, which have gradients everywhere.
 */
export function repeatKv(x: tf.Tensor4D, n: number): tf.Tensor4D {
  if (n === 1) return x;
  const [B, KV, T, hd] = x.shape;
  const heads = Array.from({ length: KV }, (_, h) => (KV === 1 ? x : tf.slice(x, [0, h, 0, 0], [B, 1, T, hd]))); // KV x [B, 1, T, hd]
  return tf.concat(heads.flatMap((h) => new Array<tf.Tensor4D>(n).fill(h)), 1) as tf.Tensor4D;
}

/** Additive causal mask for Tq queries at positions [past, past + Tq) over Tk = past + Tq keys: [Tq, Tk]. */
export function causalMask(Tq: number, Tk: number): tf.Tensor2D {
  const past = Tk - Tq;
  const m = new Float32Array(Tq * Tk);
  for (let i = 0; i < Tq; i++) for (let j = 0; j < Tk; j++) m[i * Tk + j] = j > past + i ? -1e9 : 0;
  return tf.tensor2d(m, [Tq, Tk]);
}

/**
 * Scaled dot-product attention. q [B, H, Tq, hd], k and v [B, H, Tk, hd], an additive mask broadcast to the scores
 * ([Tq, Tk], [B, 1, Tq, Tk]) or none; scores divided by sqrt(hd) unless `scale` multiplies them, and with `softcap`
 * mapped to cap * tanh(scores / cap) before the mask. Returns the output [B, H, Tq, hd] and the weights
 * [B, H, Tq, Tk].
 */
export function attention(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, mask?: tf.Tensor, o: { scale?: number; softcap?: number } = {}): { out: tf.Tensor4D; weights: tf.Tensor4D } {
  const hd = q.shape[3];
  const qk = tf.matMul(q, k, false, true); // [B, H, Tq, Tk]
  let scores = o.scale === undefined ? tf.div(qk, Math.sqrt(hd)) : tf.mul(qk, o.scale);
  if (o.softcap !== undefined) scores = tf.mul(tf.tanh(tf.div(scores, o.softcap)), o.softcap);
  if (mask) scores = tf.add(scores, mask);
  const weights = tf.softmax(scores) as tf.Tensor4D;
  return { out: tf.matMul(weights, v) as tf.Tensor4D, weights };
}

/**
 * ids [B, T] -> embeddings [B, T, D]: a gather forward, and a scatter-add (scatterND sums repeated ids) for the
 * table's gradient. The WebAssembly backend has no gradient for gather, and a one-hot matmul would need a [B*T, V]
 * matrix, too large for vocabularies such as Gemma-3's 262k tokens.
 */
export function embed(table: tf.Tensor2D, ids: tf.Tensor2D): tf.Tensor3D {
  const [B, T] = ids.shape;
  const [V, D] = table.shape;
  const flat = tf.reshape(ids, [-1]) as tf.Tensor1D; // [B*T]
  const lookup = tf.customGrad(((tbl: tf.Tensor) => {
    const value = tf.gather(tbl as tf.Tensor2D, flat); // [B*T, D]
    const gradFunc = (dy: tf.Tensor) => tf.scatterND(tf.reshape(flat, [-1, 1]), dy, [V, D]); // [V, D]
    return { value, gradFunc };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return tf.reshape(lookup(table), [B, T, D]) as tf.Tensor3D; // [B*T, D] -> [B, T, D]
}
