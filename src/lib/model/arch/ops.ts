/**
 * The operations an architecture is written against. Each architecture (llama.ts, ...) is one function over
 * `Ops<T>`; the TensorFlow.js backend (tfjs-ops.ts: training, generation) and the ONNX backend (onnx-ops.ts: the
 * export's prefill and decode graphs) implement it, so a model is written once. Weights are named and laid out as
 * Hugging Face stores them (`[out, in]` for linear layers); the backends map them.
 */

/** One attention call: which layer (its KV cache), the head layout and the position scheme. */
export interface AttentionSpec<T = unknown> {
  /** Decoder layer index: the KV cache slot (-1: no cache, as in a vision tower). */
  layer: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  /** Causal over the sequence (a decoder), or bidirectional (an encoder). */
  causal: boolean;
  /**
   * Rotary embedding, "rotate_half" layout, over positions counted from the cache's length; `factor` is the
   * "linear" rope_scaling (positions divided by it).
   */
  rope?: { theta: number; factor?: number };
  /** Score scale (default 1/sqrt(headDim)). */
  scale?: number;
  /** Sliding window (causal only): a query at position p sees keys at positions p - window < k <= p. */
  window?: number;
  /** Attention logit soft cap: scores -> cap * tanh(scores / cap) before the mask (Gemma 2). */
  softcap?: number;
  /**
   * Bidirectional blocks inside a causal attention: tokens of `ids` [B, T] (this call's tokens) equal to `tokenId`
   * that form one contiguous run (one image's tokens) also see each other, later ones included (Gemma 3's image
   * tokens). Blocks are found among the tokens of one call, so a prompt's images belong in its prefill.
   */
  blocks?: { ids: T; tokenId: number };
  /**
   * Prefix-LM attention (PaliGemma): queries and keys at absolute positions below `prefix` (the model input
   * `prefixLength()`) see each other both ways; later positions stay causal.
   */
  prefix?: T;
}

export interface Ops<T> {
  /**
   * The prefix length of a prefix-LM, a model input [1] (int): positions below it attend both ways. Generation
   * sets it to the prompt's length, so cached and uncached runs agree.
   */
  prefixLength(): T;
  /** True when the checkpoint has this tensor. */
  has(name: string): boolean;
  /** A tensor of the checkpoint as it is stored. */
  param(name: string): T;
  /** ONNX Reshape semantics: 0 copies the input's dimension, -1 is inferred. */
  reshape(x: T, dims: number[]): T;
  transpose(x: T, perm: number[]): T;
  /** Joins tensors along `axis` (their other dimensions agree). */
  concat(xs: T[], axis: number): T;
  /** Positions [start, end) of `axis` (to the end when `end` is omitted). */
  slice(x: T, axis: number, start: number, end?: number): T;
  /** The last axis cut into consecutive parts of the given widths. */
  split(x: T, sizes: number[]): T[];
  /**
   * The rows of `text` [B, T, D] at positions where `ids` [B, T] equals `tokenId` replaced, in order, by the rows
   * of `features` [N, L, D] (the image tokens of a prompt take the image features; the processor makes the counts
   * agree).
   */
  mergeTokens(text: T, ids: T, features: T, tokenId: number): T;
  /** ids [B, T] -> rows of `table` [V, D]: [B, T, D]. */
  embed(table: string, ids: T): T;
  /**
   * x [.., in] -> x W^T + b [.., out], W = `${prefix}.weight` [out, in] (a convolution's [out, c, kh, kw] is read
   * as [out, c*kh*kw]; a checkpoint whose architecture says `linearLayout: 'in_out'` stores W^T [in, out]),
   * b = `${prefix}.bias` when present.
   */
  linear(x: T, prefix: string): T;
  /**
   * Several linear layers over the same input (a layer's q, k and v projections): the same as `linear` for each;
   * a backend may run them as one matmul over their weights side by side (the ONNX export does).
   */
  linears(x: T, prefixes: string[]): T[];
  /**
   * x / sqrt(mean(x^2) + eps) * w over the last axis; with `offset` the weight is used as (offset + w) (Gemma's
   * RMSNorm stores w around 0 and multiplies by 1 + w).
   */
  rmsNorm(x: T, weight: string, eps: number, offset?: number): T;
  /** (x - mean) / sqrt(var + eps) * w + b over the last axis (`${prefix}.weight`, `${prefix}.bias`). */
  layerNorm(x: T, prefix: string, eps: number): T;
  add(a: T, b: T): T;
  mul(a: T, b: T): T;
  /** x * s for a constant s. */
  scale(x: T, s: number): T;
  tanh(x: T): T;
  /** x * sigmoid(x) */
  silu(x: T): T;
  /** GELU, exact (erf) or the tanh approximation. */
  gelu(x: T, approximate: 'none' | 'tanh'): T;
  /** q [B, T, H*hd], k and v [B, T, KV*hd] -> [B, T, H*hd], through the KV cache of `spec.layer`. */
  attention(q: T, k: T, v: T, spec: AttentionSpec<T>): T;
  /** Hidden states [B, T, D] -> logits [B, T, V] = h W^T with W = `weight` [V, D]. */
  head(h: T, weight: string): T;
  /**
   * Average pooling over the last two axes with a square kernel and the same stride: [.., H, W] -> [.., H/k, W/k]
   * (H and W multiples of k).
   */
  avgPool(x: T, kernel: number): T;
  /**
   * x [B, T, D] and ids [B, T] -> [B, D]: the mean of x over the prompt's tokens, the positions before the first
   * `sep` whose ids are not in `skip` (<bos>, pads); an example with none gives zeros.
   */
  promptMean(x: T, ids: T, sep: number, skip: number[]): T;
  /** x [.., in] -> x W [.., out] with W = `weight` stored [in, out] (a bare projection matrix, not a linear layer). */
  matmul(x: T, weight: string): T;
  /**
   * Runs one block of the model (a layer) and returns its output; the backend may free the block's temporaries
   * then (tfjs: one tf.tidy per block, so a forward holds one layer's intermediates, not all of them).
   */
  block(fn: () => T): T;
}

/**
 * How a tensor of an architecture is initialized by `model init` (normal with the config's std, ones, zeros; grid: a
 * [N, 2] table of the (x, y) centres of a square raster of N cells, row-major, in [-1, 1]).
 */
export type Init = 'normal' | 'ones' | 'zeros' | 'grid';

/** The `grid` initialization: [N, 2] flattened, cell (r, c) of a side x side raster at ((c + 0.5) / side * 2 - 1, (r + 0.5) / side * 2 - 1). */
export function gridInit(n: number): Float32Array {
  const side = Math.round(Math.sqrt(n));
  const out = new Float32Array(2 * n);
  for (let i = 0; i < n; i++) {
    out[2 * i] = ((i % side) + 0.5) / side * 2 - 1;
    out[2 * i + 1] = (Math.floor(i / side) + 0.5) / side * 2 - 1;
  }
  return out;
}

/** A tensor the architecture expects: its Hugging Face name, shape and initialization. */
export interface TensorSpec {
  name: string;
  shape: number[];
  init: Init;
}

/** Image features computed before the forward (a frozen vision tower's output, cached): [N, tokens, D]. */
export interface ImageFeatures<T> {
  features: T;
}

export function isFeatures<T>(x: T | ImageFeatures<T>): x is ImageFeatures<T> {
  return typeof x === 'object' && x !== null && Object.prototype.hasOwnProperty.call(x, 'features');
}
