/**
 * The TensorFlow.js backend of `Ops`: weights by their Hugging Face names (a plain Map in HF layout, or
 * `TfjsWeights`, which holds each linear weight once, transposed to [in, out]), an optional KV cache per decoder
 * layer ([B, KV, P, hd]), and LoRA adapters in PEFT's layout (lora_A [r, in], lora_B [out, r]) on the modules named
 * as targets. Each block runs in its own tf.tidy, so a forward holds one layer's temporaries at a time.
 */
import * as tf from '@tensorflow/tfjs-core';
import { applyRope, attention, causalMask, embed, gelu, layerNorm, linear, matMul2d, mergeHeads, repeatKv, rmsNorm, ropeTables, splitHeads } from '../layers.js';
import { VlakitError } from '../../errors.js';
import type { NamedArray } from '../safetensors.js';
import type { AttentionSpec, Ops } from './ops.js';

/** Keys and values of past positions per layer, [B, KV, P, hd], and how many positions they hold. */
export interface TfjsCache {
  k: (tf.Tensor4D | undefined)[];
  v: (tf.Tensor4D | undefined)[];
  length: number;
}

export interface TfjsLora {
  r: number;
  alpha: number;
  /** Module names the adapters sit on (q_proj, v_proj, ...). */
  targets: Set<string>;
  enabled: boolean;
}

/** Where TfjsOps reads weights: by HF name in HF layout; `linear` gives a linear weight as [in, out] when it can. */
export interface TfjsParams {
  get(name: string): tf.Tensor | undefined;
  has(name: string): boolean;
  /** `<module>.weight` as [in, out] (a convolution's [out, c, kh, kw] as [c*kh*kw, out]), or undefined. */
  linear?(name: string): tf.Tensor2D | undefined;
}

/**
 * A checkpoint's weights on the tfjs backend, each uploaded once, when first used, in the layout its use needs:
 * linear weights transposed to [in, out] (a plain matMul: the WebAssembly backend multiplies by a transposed
 * operand about 10x slower), other tensors as stored. A tensor used both ways (a tied embedding: rows gathered,
 * and the head) is held in both layouts. Extra tensors (LoRA variables) are added with `set` and owned too.
 */
export class TfjsWeights implements TfjsParams {
  private readonly stored = new Map<string, tf.Tensor>();
  private readonly transposed = new Map<string, tf.Tensor2D>();

  constructor(private readonly source: Map<string, NamedArray>) {}

  has(name: string): boolean {
    return this.stored.has(name) || this.source.has(name);
  }

  get(name: string): tf.Tensor | undefined {
    let t = this.stored.get(name);
    if (!t) {
      const a = this.source.get(name);
      if (!a) return undefined;
      t = tf.keep(tf.tensor(a.data, a.shape, 'float32')); // kept: the first use may be inside a tidy
      this.stored.set(name, t);
    }
    return t;
  }

  linear(name: string): tf.Tensor2D | undefined {
    let t = this.transposed.get(name);
    if (!t) {
      const a = this.source.get(name);
      if (!a || a.shape.length < 2) return undefined;
      const o = a.shape[0];
      const i = a.data.length / o;
      const out = new Float32Array(a.data.length); // [out, in] -> [in, out], on the host: no kernel, no tape
      for (let r = 0; r < o; r++) for (let c = 0; c < i; c++) out[c * o + r] = a.data[r * i + c];
      t = tf.keep(tf.tensor2d(out, [i, o], 'float32'));
      this.transposed.set(name, t);
    }
    return t;
  }

  /** Adds a tensor that is not in the checkpoint (a LoRA variable); disposed with the weights. */
  set(name: string, t: tf.Tensor): void {
    this.stored.get(name)?.dispose();
    this.stored.set(name, t);
  }

  /** Bytes held on the backend. */
  get numBytes(): number {
    let n = 0;
    for (const t of [...this.stored.values(), ...this.transposed.values()]) n += t.size * 4;
    return n;
  }

  dispose(): void {
    for (const t of [...this.stored.values(), ...this.transposed.values()]) t.dispose();
    this.stored.clear();
    this.transposed.clear();
  }
}

export class TfjsOps implements Ops<tf.Tensor> {
  /** The cache after this forward (new entries are kept out of tf.tidy by the caller). */
  readonly next: TfjsCache | undefined;
  /** When set: each decoder layer's attention weights [B, H, T, past + T] are stored here by layer (for attn-viz). */
  recordAttentions?: tf.Tensor4D[];

  constructor(
    private readonly params: TfjsParams,
    private readonly cache?: TfjsCache,
    private readonly lora?: TfjsLora,
    /**
     * The prefix-LM prefix length (positions below it attend both ways); default 0. One per batch row when the rows'
     * prompts differ (training a prefix-LM on a padded batch).
     */
    private readonly prefix: number | number[] = 0,
    /** How linear weights are stored: HF's [out, in] (default) or [in, out] (vlakit's built-in model). */
    private readonly linearLayout: 'out_in' | 'in_out' = 'out_in',
  ) {
    this.next = cache ? { k: [...cache.k], v: [...cache.v], length: cache.length } : undefined;
  }

  private p(name: string): tf.Tensor {
    const t = this.params.get(name);
    if (!t) throw new VlakitError('E_MODEL', `the model has no tensor ${name}`);
    return t;
  }

  prefixLength(): tf.Tensor {
    return tf.tensor1d(Array.isArray(this.prefix) ? this.prefix : [this.prefix], 'int32'); // [1] or [B]
  }

  has(name: string): boolean {
    return this.params.has(name);
  }

  param(name: string): tf.Tensor {
    return this.p(name);
  }

  reshape(x: tf.Tensor, dims: number[]): tf.Tensor {
    return tf.reshape(x, dims.map((d, i) => (d === 0 ? x.shape[i] : d)));
  }

  transpose(x: tf.Tensor, perm: number[]): tf.Tensor {
    return tf.transpose(x, perm);
  }

  concat(xs: tf.Tensor[], axis: number): tf.Tensor {
    return tf.concat(xs, axis);
  }

  slice(x: tf.Tensor, axis: number, start: number, end?: number): tf.Tensor {
    const begin = x.shape.map((_, i) => (i === axis ? start : 0));
    const size = x.shape.map((d, i) => (i === axis ? (end ?? d!) - start : -1));
    return tf.slice(x, begin, size);
  }

  split(x: tf.Tensor, sizes: number[]): tf.Tensor[] {
    return tf.split(x, sizes, -1);
  }

  mergeTokens(text: tf.Tensor, ids: tf.Tensor, features: tf.Tensor, tokenId: number): tf.Tensor {
    const D = text.shape[text.shape.length - 1];
    const rows = tf.reshape(features, [-1, D]); // [N*L, D]
    const mask = tf.equal(tf.reshape(ids, [-1]), tokenId); // [B*T]
    const k = tf.sub(tf.cumsum(tf.cast(mask, 'int32')), tf.scalar(1, 'int32')); // the k-th image token takes row k
    const index = tf.maximum(tf.minimum(k, tf.scalar(rows.shape[0] - 1, 'int32')), tf.scalar(0, 'int32'));
    // the k-th row as a one-hot matmul, not a gather: the WebAssembly backend has no gradient for gather
    const picked = matMul2d(tf.oneHot(index, rows.shape[0]) as tf.Tensor2D, rows as tf.Tensor2D); // [B*T, N*L] x [N*L, D]
    const merged = tf.where(tf.expandDims(mask, 1), picked, tf.reshape(text, [-1, D])); // [B*T, D]
    return tf.reshape(merged, text.shape);
  }

  promptMean(x: tf.Tensor, ids: tf.Tensor, sep: number, skip: number[]): tf.Tensor {
    const ids2 = tf.cast(ids, 'int32');
    // 1 before the first <sep> (an inclusive running count of <sep> still 0), 0 on skipped ids: [B, T]
    let keep = tf.cast(tf.equal(tf.cumsum(tf.cast(tf.equal(ids2, sep), 'int32'), 1), 0), 'float32');
    for (const s of skip) keep = tf.mul(keep, tf.cast(tf.notEqual(ids2, s), 'float32'));
    const sum = tf.sum(tf.mul(x, tf.expandDims(keep, 2)), 1); // [B, D]
    return tf.div(sum, tf.maximum(tf.sum(keep, 1, true), 1)); // [B, D] / [B, 1]
  }

  embed(table: string, ids: tf.Tensor): tf.Tensor {
    return embed(this.p(table) as tf.Tensor2D, ids as tf.Tensor2D); // [B, T] -> [B, T, D]
  }

  linear(x: tf.Tensor, prefix: string): tf.Tensor {
    // weights stored [in, out] (vlakit's built-in model, its variables): a plain matMul, LoRA as A [in, r], B [r, out]
    if (this.linearLayout === 'in_out') return linear(this.params, prefix, x, this.lora);
    const inDim = x.shape[x.shape.length - 1];
    const x2 = tf.reshape(x, [-1, inDim]) as tf.Tensor2D; // [N, in]
    let y = this.project(x2, `${prefix}.weight`); // [N, out]
    const b = this.params.get(`${prefix}.bias`);
    if (b) y = tf.add(y, b);
    const lora = this.lora;
    if (lora?.enabled && lora.targets.has(prefix.split('.').pop()!)) {
      const a = this.params.get(`${prefix}.lora_A.weight`) as tf.Tensor2D | undefined; // [r, in]
      const bb = this.params.get(`${prefix}.lora_B.weight`) as tf.Tensor2D | undefined; // [out, r]
      if (a && bb) y = tf.add(y, tf.mul(matMul2d(matMul2d(x2, a, true), bb, true), lora.alpha / lora.r)); // [N, in] x [in, r] x [r, out]
    }
    return tf.reshape(y, [...x.shape.slice(0, -1), y.shape[1]!]);
  }

  linears(x: tf.Tensor, prefixes: string[]): tf.Tensor[] {
    return prefixes.map((p) => this.linear(x, p));
  }

  /** x [N, in] times the weight `name` ([out, in], or [in, out] from TfjsParams.linear) transposed: [N, out]. */
  private project(x2: tf.Tensor2D, name: string): tf.Tensor2D {
    const wt = this.params.linear?.(name); // [in, out]
    if (wt) return matMul2d(x2, wt); // [N, in] x [in, out]
    const stored = this.p(name); // [out, in] (or a convolution's [out, c, kh, kw])
    const w = stored.rank === 2 ? stored : tf.reshape(stored, [stored.shape[0], -1]);
    return matMul2d(x2, w as tf.Tensor2D, true);
  }

  block(fn: () => tf.Tensor): tf.Tensor {
    return tf.tidy(fn);
  }

  rmsNorm(x: tf.Tensor, weight: string, eps: number, offset?: number): tf.Tensor {
    return rmsNorm(x, offset === undefined ? this.p(weight) : tf.add(this.p(weight), offset), eps);
  }

  layerNorm(x: tf.Tensor, prefix: string, eps: number): tf.Tensor {
    return layerNorm(x, this.p(`${prefix}.weight`), this.p(`${prefix}.bias`), eps);
  }

  add(a: tf.Tensor, b: tf.Tensor): tf.Tensor {
    return tf.add(a, b);
  }

  mul(a: tf.Tensor, b: tf.Tensor): tf.Tensor {
    return tf.mul(a, b);
  }

  scale(x: tf.Tensor, s: number): tf.Tensor {
    return tf.mul(x, s);
  }

  tanh(x: tf.Tensor): tf.Tensor {
    return tf.tanh(x);
  }

  silu(x: tf.Tensor): tf.Tensor {
    return tf.mul(x, tf.sigmoid(x));
  }

  gelu(x: tf.Tensor, approximate: 'none' | 'tanh'): tf.Tensor {
    if (approximate === 'tanh') return gelu(x);
    return tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.div(x, Math.SQRT2))));
  }

  attention(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, s: AttentionSpec<tf.Tensor>): tf.Tensor {
    const T = q.shape[1]!;
    const past = s.layer >= 0 && this.cache ? this.cache.length : 0;
    let qh = splitHeads(q, s.heads); // [B, H, T, hd]
    let kh = splitHeads(k, s.kvHeads); // [B, KV, T, hd]
    let vh = splitHeads(v, s.kvHeads);
    if (s.rope) {
      const { cos, sin } = ropeTables(T, s.headDim, s.rope.theta, past, s.rope.factor); // [T, hd/2] each
      qh = applyRope(qh, cos, sin);
      kh = applyRope(kh, cos, sin);
    }
    if (this.next && s.layer >= 0) {
      const pk = this.next.k[s.layer];
      const pv = this.next.v[s.layer];
      if (pk && pv) {
        kh = tf.concat([pk, kh], 2) as tf.Tensor4D; // [B, KV, past + T, hd]
        vh = tf.concat([pv, vh], 2) as tf.Tensor4D;
      }
      this.next.k[s.layer] = tf.keep(kh); // kept out of the block's tidy: the caller owns the cache
      this.next.v[s.layer] = tf.keep(vh);
      this.next.length = past + T;
    }
    const n = s.heads / s.kvHeads;
    let mask: tf.Tensor | undefined;
    if (s.causal && (s.window !== undefined || s.blocks || s.prefix)) mask = tf.mul(tf.sub(1, tf.cast(this.allowed(T, past, s), 'float32')), -1e9); // [B or 1, 1, T, past + T]
    else if (s.causal) mask = causalMask(T, past + T); // [T, past + T]
    const { out, weights } = attention(qh, repeatKv(kh, n), repeatKv(vh, n), mask, { scale: s.scale, softcap: s.softcap }); // [B, H, T, hd], [B, H, T, past + T]
    if (this.recordAttentions && s.layer >= 0) this.recordAttentions[s.layer] = tf.keep(weights); // kept out of the block's tidy: the caller disposes them
    return mergeHeads(out); // [B, T, H*hd]
  }

  /**
   * Which keys each query may see, [B or 1, 1, T, past + T]: causal, within the sliding window, or in the query's
   * own bidirectional block (a run of `blocks.tokenId` among this call's tokens).
   */
  private allowed(T: number, past: number, s: AttentionSpec<tf.Tensor>): tf.Tensor {
    const L = past + T;
    const qPos = tf.reshape(tf.range(past, L, 1, 'int32'), [T, 1]); // [T, 1]
    const kPos = tf.reshape(tf.range(0, L, 1, 'int32'), [1, L]); // [1, L]
    let ok: tf.Tensor = tf.lessEqual(kPos, qPos); // [T, L]
    if (s.window !== undefined) ok = tf.logicalAnd(ok, tf.less(tf.sub(qPos, kPos), s.window));
    if (s.prefix) {
      const p = tf.reshape(s.prefix, [-1, 1, 1]); // [B or 1, 1, 1]: one prefix per row, or one for all
      ok = tf.logicalOr(ok, tf.logicalAnd(tf.less(qPos, p), tf.less(kPos, p))); // [B or 1, T, L]: both in the row's prefix
    }
    if (!s.blocks) return tf.reshape(ok, [-1, 1, T, L]);
    const ids = s.blocks.ids; // [B, T]
    const B = ids.shape[0];
    const img = tf.equal(ids, s.blocks.tokenId); // [B, T]
    const prev = tf.concat([tf.zeros([B, 1], 'bool'), tf.slice(img, [0, 0], [B, T - 1])], 1);
    const group = tf.cumsum(tf.cast(tf.logicalAnd(img, tf.logicalNot(prev)), 'int32'), 1); // [B, T]: the run number of each token
    const same = tf.logicalAnd(tf.logicalAnd(tf.expandDims(img, 2), tf.expandDims(img, 1)), tf.equal(tf.expandDims(group, 2), tf.expandDims(group, 1))); // [B, T, T]
    const block = past > 0 ? tf.concat([tf.zeros([B, T, past], 'bool'), same], 2) : same; // [B, T, L]: past keys are never in a block of this call
    return tf.expandDims(tf.logicalOr(ok.rank === 2 ? tf.expandDims(ok, 0) : ok, block), 1); // [B, 1, T, L]
  }

  avgPool(x: tf.Tensor, kernel: number): tf.Tensor {
    const shape = x.shape;
    const [H, W] = shape.slice(-2);
    const lead = shape.slice(0, -2);
    // [.., H, W] -> [N, H/k, k, W/k, k] -> mean over the two k axes
    const y = tf.mean(tf.reshape(x, [-1, H / kernel, kernel, W / kernel, kernel]), [2, 4]);
    return tf.reshape(y, [...lead, H / kernel, W / kernel]);
  }

  matmul(x: tf.Tensor, weight: string): tf.Tensor {
    const w = this.p(weight); // [in, out]
    const inDim = x.shape[x.shape.length - 1];
    return tf.reshape(matMul2d(tf.reshape(x, [-1, inDim]) as tf.Tensor2D, w as tf.Tensor2D), [...x.shape.slice(0, -1), w.shape[1]!]);
  }

  head(h: tf.Tensor, weight: string): tf.Tensor {
    const [B, T, D] = h.shape;
    const y = this.project(tf.reshape(h, [B * T!, D!]), weight); // [B*T, D] x [D, V]
    return tf.reshape(y, [B, T!, y.shape[1]!]);
  }
}
