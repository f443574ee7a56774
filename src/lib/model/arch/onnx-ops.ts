/**
 * The ONNX backend of `Ops`: each operation adds (opset 17) nodes to a graph. Linear weights are stored
 * transposed ([in, out], named `<hf name>.T`; a checkpoint already stored [in, out] keeps its names) so a MatMul
 * broadcasts over the leading axes; everything else keeps its Hugging Face name and layout. Attention reads
 * `past_key_values.{layer}.key/value` [B, KV, P, hd] when the graph is a decode step and returns
 * `present.{layer}.*` [B, KV, P + T, hd] and this step's keys/values alone (`fresh`).
 *
 * Variants, chosen per graph (`OnnxOpsOptions`): `attentions` also returns each decoder layer's attention weights;
 * `quantize: 'int8'` stores every linear weight as int8 with a scale per output column (activations quantized at
 * run time, see export/quantize.ts); `fused` uses onnxruntime's operators for the decoder (GroupQueryAttention with
 * the rotary embedding, SimplifiedLayerNormalization), whose decode step takes attention_mask [B, total] and past
 * buffers that may be longer than the filled past (a preallocated cache): present.* is then [B, KV, max(P, total), hd].
 */
import { VlakitError } from '../../errors.js';
import type { GraphBuilder } from '../../export/onnx.js';
import { WEIGHT_MAX, type WeightRange, int8MatMul, quantizeColumns } from '../../export/quantize.js';
import { ropeAngles } from '../layers.js';
import type { NamedArray } from '../safetensors.js';
import type { AttentionSpec, Ops } from './ops.js';

export interface OnnxCacheIo {
  /** Per layer: the past inputs (decode) or none (prefill). */
  past?: { k: string; v: string }[];
  /** With fused operators, in a decode step: attention_mask [B, total] (ones over the filled past and the new positions). */
  mask?: string;
  /** Filled per layer: the present values to declare as outputs. */
  present: { k: string; v: string }[];
  /** Filled per layer: this call's keys/values alone [B, KV, T, hd] (a runner that keeps its own cache appends them). */
  fresh?: { k: string; v: string }[];
  /** Filled per decoder layer with `attentions`: the attention weights [B, H, T, P + T]. */
  attentions?: string[];
}

export interface OnnxOpsOptions {
  /** Rows of the rotary tables (the model's longest sequence). */
  maxPositions: number;
  /** How the tensors store linear weights: Hugging Face's [out, in] (default) or [in, out]. */
  linearLayout?: 'out_in' | 'in_out';
  /** Return the decoder layers' attention weights (`cache.attentions`); not with `fused`. */
  attentions?: boolean;
  /** onnxruntime's fused operators for the decoder (causal, rotary, no window, soft cap, blocks or prefix). */
  fused?: boolean;
  /** int8 weights for every linear layer. */
  quantize?: 'int8';
  /** With int8: 7-bit weights (the default, correct on every CPU) or full range (see quantize.ts). */
  weightRange?: WeightRange;
}

/** What the fused attention of every decoder layer shares, computed once per graph. */
interface FusedShared {
  seqlens: string;
  total32: string;
  first: string;
  last: string;
  cos: string;
  sin: string;
}

export class OnnxOps implements Ops<string> {
  private pastLen: string | undefined;
  private fusedShared: FusedShared | undefined;
  private readonly o: OnnxOpsOptions;

  constructor(
    private readonly b: GraphBuilder,
    private readonly tensors: Map<string, NamedArray>,
    readonly cache: OnnxCacheIo,
    options: number | OnnxOpsOptions,
  ) {
    this.o = typeof options === 'number' ? { maxPositions: options } : options;
    if (this.o.fused && this.o.attentions) throw new Error('the fused attention returns no weights: attentions need standard operators');
  }

  private get maxPositions(): number {
    return this.o.maxPositions;
  }

  private t(name: string): NamedArray {
    const t = this.tensors.get(name);
    if (!t) throw new VlakitError('E_MODEL', `the model has no tensor ${name}`);
    return t;
  }

  /** A weight as stored (HF layout). */
  private w(name: string): string {
    const t = this.t(name);
    return this.b.weight(name, t.data, t.shape);
  }

  /**
   * A linear weight as [in, out]: a checkpoint's [out, in] stored transposed (named `<name>.T`), or one stored
   * [in, out] as it is. Returns its graph name and its data and shape (read only when the store lacks it).
   */
  private linearWeight(name: string): { stored: string; data: () => Float32Array; dims: [number, number] } {
    if (this.o.linearLayout === 'in_out') {
      const { data, shape } = this.t(name);
      return { stored: name, data: () => data, dims: [shape[0], data.length / shape[0]] };
    }
    const stored = `${name}.T`;
    const { data, shape } = this.t(name);
    const [o, i] = [shape[0], data.length / shape[0]]; // a convolution's [out, c, kh, kw] as [out, c*kh*kw]
    const transposed = () => {
      const out = new Float32Array(data.length);
      for (let r = 0; r < o; r++) for (let c = 0; c < i; c++) out[c * o + r] = data[r * i + c];
      return out;
    };
    return { stored, data: transposed, dims: [i, o] };
  }

  /**
   * x [.., K] times a constant [K, N] weight: MatMul, or with int8 quantization DynamicQuantizeLinear(x) ->
   * MatMulInteger -> Cast -> Mul by the column scales (`<name>.int8`, `<name>.scale`).
   */
  private matmulConst(x: string, w: { stored: string; data: () => Float32Array; dims: [number, number] }): string {
    const b = this.b;
    const have = (n: string) => b.weights.entries.get(n)?.data;
    const [K, N] = w.dims;
    if (this.o.quantize !== 'int8') return b.o('MatMul', [x, b.weight(w.stored, have(w.stored) ?? w.data(), [K, N])]);
    const [qName, sName] = [`${w.stored}.int8`, `${w.stored}.scale`];
    const { q, scale } = have(qName) ? { q: have(qName)!, scale: have(sName)! } : quantizeColumns(w.data(), K, N, WEIGHT_MAX[this.o.weightRange ?? '7-bit']);
    return int8MatMul(b, x, b.weight(qName, q, [K, N]), b.weight(sName, scale, [N]));
  }

  private prefixInput: string | undefined;

  prefixLength(): string {
    this.prefixInput ??= this.b.input('prefix_length', 'int64', [1]);
    return this.prefixInput;
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  param(name: string): string {
    return this.w(name);
  }

  reshape(x: string, dims: number[]): string {
    return this.b.o('Reshape', [x, this.b.ints(dims)]);
  }

  transpose(x: string, perm: number[]): string {
    return this.b.o('Transpose', [x], { perm });
  }

  concat(xs: string[], axis: number): string {
    return this.b.o('Concat', xs, { axis });
  }

  slice(x: string, axis: number, start: number, end?: number): string {
    const b = this.b;
    return b.o('Slice', [x, b.ints([start]), b.ints([end ?? Number.MAX_SAFE_INTEGER]), b.ints([axis])]);
  }

  split(x: string, sizes: number[]): string[] {
    return this.b.op('Split', [x, this.b.ints(sizes)], { axis: -1 }, sizes.length);
  }

  mergeTokens(text: string, ids: string, features: string, tokenId: number): string {
    const b = this.b;
    const D = this.b.o('Gather', [b.o('Shape', [text]), b.ints([-1])], { axis: 0 }); // [1]
    const rows = b.o('Reshape', [features, b.o('Concat', [b.ints([-1]), D], { axis: 0 })]); // [N*L, D]
    const mask = b.o('Equal', [b.o('Reshape', [ids, b.ints([-1])]), b.ints([tokenId], true)]); // [B*T]
    const last = b.o('Sub', [this.dim(rows, 0), b.ints([1], true)]);
    const k = b.o('Sub', [b.o('CumSum', [b.o('Cast', [mask], { to: 7 }), b.ints([0], true)]), b.ints([1], true)]); // the k-th image token takes row k
    const index = b.o('Max', [b.o('Min', [k, last]), b.ints([0], true)]);
    const merged = b.o('Where', [b.o('Unsqueeze', [mask, b.ints([1])]), b.o('Gather', [rows, index], { axis: 0 }), b.o('Reshape', [text, b.o('Concat', [b.ints([-1]), D], { axis: 0 })])]); // [B*T, D]
    return b.o('Reshape', [merged, b.o('Shape', [text])]);
  }

  promptMean(x: string, ids: string, sep: number, skip: number[]): string {
    const b = this.b;
    // 1 before the first <sep> (an inclusive running count of <sep> still 0), 0 on skipped ids: [B, T]
    const seps = b.o('CumSum', [b.o('Cast', [b.o('Equal', [ids, b.ints([sep], true)])], { to: 7 }), b.ints([1], true)]);
    let keep = b.o('Cast', [b.o('Equal', [seps, b.ints([0], true)])], { to: 1 });
    for (const s of skip) keep = b.o('Mul', [keep, b.o('Cast', [b.o('Not', [b.o('Equal', [ids, b.ints([s], true)])])], { to: 1 })]);
    const sum = b.o('ReduceSum', [b.o('Mul', [x, b.o('Unsqueeze', [keep, b.ints([2])])]), b.ints([1])], { keepdims: 0 }); // [B, D]
    const n = b.o('Max', [b.o('ReduceSum', [keep, b.ints([1])], { keepdims: 1 }), b.floats([1])]); // [B, 1]
    return b.o('Div', [sum, n]);
  }

  embed(table: string, ids: string): string {
    return this.b.o('Gather', [this.w(table), ids], { axis: 0 }); // [B, T] -> [B, T, D]
  }

  linear(x: string, prefix: string): string {
    const y = this.matmulConst(x, this.linearWeight(`${prefix}.weight`)); // [.., in] x [in, out]
    return this.has(`${prefix}.bias`) ? this.b.o('Add', [y, this.w(`${prefix}.bias`)]) : y;
  }

  /**
   * One MatMul over the weights side by side ([in, sum of outs], named after the modules: `self_attn.qkv`,
   * `mlp.gate_up`), then Split; biases likewise, when every layer has one.
   */
  linears(x: string, prefixes: string[]): string[] {
    if (prefixes.length === 1) return [this.linear(x, prefixes[0])];
    const b = this.b;
    const parts = prefixes.map((p) => this.linearWeight(`${p}.weight`));
    const K = parts[0].dims[0];
    if (parts.some((p) => p.dims[0] !== K)) throw new Error(`${prefixes.join(', ')} do not share an input width`);
    const widths = parts.map((p) => p.dims[1]);
    const width = widths.reduce((a, c) => a + c, 0);
    const dot = prefixes[0].lastIndexOf('.');
    const stems = prefixes.map((p) => p.slice(p.lastIndexOf('.') + 1).replace(/_proj$/, ''));
    const name = `${prefixes[0].slice(0, dot + 1)}${stems.join(stems.every((s) => s.length === 1) ? '' : '_')}`; // model.layers.0.self_attn.qkv
    const data = () => {
      const out = new Float32Array(K * width);
      let at = 0;
      for (const p of parts) {
        const [w, c] = [p.data(), p.dims[1]];
        for (let r = 0; r < K; r++) out.set(w.subarray(r * c, (r + 1) * c), r * width + at);
        at += c;
      }
      return out;
    };
    let y = this.matmulConst(x, { stored: `${name}.weight`, data, dims: [K, width] }); // [.., in] x [in, sum of outs]
    const biases = prefixes.map((p) => `${p}.bias`);
    if (biases.every((n) => this.has(n))) {
      const have = b.weights.entries.get(`${name}.bias`);
      y = b.o('Add', [y, b.weight(`${name}.bias`, have?.data ?? Float32Array.from(biases.flatMap((n) => [...this.t(n).data])), [width])]);
    } else if (biases.some((n) => this.has(n))) {
      const ys = b.op('Split', [y, b.ints(widths)], { axis: -1 }, widths.length);
      return ys.map((v, i) => (this.has(biases[i]) ? b.o('Add', [v, this.w(biases[i])]) : v));
    }
    return b.op('Split', [y, b.ints(widths)], { axis: -1 }, widths.length);
  }

  rmsNorm(x: string, weight: string, eps: number, offset?: number): string {
    const w = offset === undefined ? this.w(weight) : this.shifted(weight, offset);
    // onnxruntime's RMSNorm kernel (it fuses a preceding residual Add into SkipSimplifiedLayerNormalization)
    if (this.o.fused) return this.b.op('SimplifiedLayerNormalization', [x, w], { axis: -1, epsilon: { float: eps } }, 1)[0];
    return this.b.rmsNorm(x, w, eps);
  }

  /** A norm weight stored as offset + w (named `<name>+<offset>`), so the graph multiplies once. */
  private shifted(name: string, offset: number): string {
    const stored = `${name}+${offset}`;
    const done = this.b.weights.entries.get(stored);
    if (done) return this.b.weight(stored, done.data, done.dims);
    const { data, shape } = this.t(name);
    return this.b.weight(stored, data.map((v) => v + offset), shape);
  }

  layerNorm(x: string, prefix: string, eps: number): string {
    return this.b.layerNorm(x, this.w(`${prefix}.weight`), this.w(`${prefix}.bias`), eps);
  }

  add(a: string, c: string): string {
    return this.b.o('Add', [a, c]);
  }

  mul(a: string, c: string): string {
    return this.b.o('Mul', [a, c]);
  }

  scale(x: string, s: number): string {
    return this.b.o('Mul', [x, this.b.floats([s])]);
  }

  tanh(x: string): string {
    return this.b.o('Tanh', [x]);
  }

  silu(x: string): string {
    return this.b.o('Mul', [x, this.b.o('Sigmoid', [x])]);
  }

  gelu(x: string, approximate: 'none' | 'tanh'): string {
    return this.b.gelu(x, approximate);
  }

  /** A scalar int64: dimension `axis` of `x`. */
  private dim(x: string, axis: number): string {
    return this.b.o('Gather', [this.b.o('Shape', [x]), this.b.ints([axis], true)], { axis: 0 });
  }

  /** The number of cached positions (0 in a prefill), an int64 scalar computed once per graph. */
  private past(): string {
    this.pastLen ??= this.cache.past ? this.dim(this.cache.past[0].k, 2) : this.b.ints([0], true);
    return this.pastLen;
  }

  /** [B, T, heads*hd] -> [B, heads, T, hd] */
  private heads(x: string, heads: number, hd: number): string {
    return this.b.o('Transpose', [this.b.o('Reshape', [x, this.b.ints([0, 0, heads, hd])])], { perm: [0, 2, 1, 3] }); // [B, T, heads, hd] -> [B, heads, T, hd]
  }

  /** Gathered rotary rows per table, shared by the decoder layers of the graph (their positions are the same). */
  private readonly ropeRows = new Map<string, { c: string; s: string }>();

  /**
   * Rotary embedding of x [B, heads, T, hd] at `positions` [T]: x cos + rotate_half(x) sin, with cos and sin rows
   * [T, hd] (both halves of a head share a frequency) and rotate_half as a MatMul by a constant signed permutation
   * [hd, hd] ([x1, x2] -> [-x2, x1]: sums of one term and zeros, so exact). `shared`: the rows are the same for
   * every call of this graph (decoder layers), so they are gathered once.
   */
  private rope(x: string, positions: string, hd: number, theta: number, factor = 1, shared = false): string {
    const b = this.b;
    const half = hd / 2;
    const name = `rope.${hd}.${theta}${factor === 1 ? '' : `.x${factor}`}`;
    const table = (part: 'cos' | 'sin'): string => {
      const done = b.weights.entries.get(`${name}.${part}`);
      if (done) return b.weight(`${name}.${part}`, done.data, done.dims);
      const angles = ropeAngles(this.maxPositions, hd, theta, 0, factor)[part]; // [maxPos, hd/2]
      const full = new Float32Array(this.maxPositions * hd); // [maxPos, hd]: the row twice
      for (let p = 0; p < this.maxPositions; p++) for (let i = 0; i < half; i++) full[p * hd + i] = full[p * hd + half + i] = angles[p * half + i];
      return b.weight(`${name}.${part}`, full, [this.maxPositions, hd]);
    };
    let rows = shared ? this.ropeRows.get(name) : undefined;
    if (!rows) {
      rows = { c: b.o('Gather', [table('cos'), positions], { axis: 0 }), s: b.o('Gather', [table('sin'), positions], { axis: 0 }) }; // [T, hd]
      if (shared) this.ropeRows.set(name, rows);
    }
    const rotName = `rope.rotate_half.${hd}`;
    const have = b.weights.entries.get(rotName);
    let rot: Float32Array;
    if (have) rot = have.data as Float32Array;
    else {
      rot = new Float32Array(hd * hd); // [hd, hd]: column j < half takes -x[j + half], column j + half takes x[j]
      for (let j = 0; j < half; j++) {
        rot[(j + half) * hd + j] = -1;
        rot[j * hd + j + half] = 1;
      }
    }
    const rotated = b.o('MatMul', [x, b.weight(rotName, rot, [hd, hd])]); // [B, heads, T, hd]
    return b.o('Add', [b.o('Mul', [x, rows.c]), b.o('Mul', [rotated, rows.s])]);
  }

  /** The shared sequence of the decoder layers (past, total, positions), made by the first one. */
  private decoderSeq: { past: string; total: string; positions: string } | undefined;
  /** Additive causal masks of the decoder layers by their spec (window, prefix, blocks). */
  private readonly masks = new Map<string, string>();

  /** A call's sequence: `past` cached positions, total = past + T, positions [past, total). */
  private sequence(q: string, past: string): { past: string; total: string; positions: string } {
    const b = this.b;
    const total = b.o('Add', [past, this.dim(q, 1)]);
    return { past, total, positions: b.o('Range', [past, total, b.ints([1], true)]) }; // [T]
  }

  /** -1e9 where a query may not see a key, else 0: [T, P + T] (or [B, 1, T, P + T] with blocks). */
  private causalMask(s: AttentionSpec<string>, seq: { past: string; total: string; positions: string }, key: string, shared: boolean): string {
    const b = this.b;
    const { past, total } = seq;
    const one = b.ints([1], true);
    const keys = b.o('Unsqueeze', [b.o('Range', [b.ints([0], true), total, one]), b.ints([0])]); // [1, P + T]
    const queries = b.o('Unsqueeze', [seq.positions, b.ints([1])]); // [T, 1]
    let blocked = b.o('Greater', [keys, queries]); // [T, P + T]: future keys
    // outside the sliding window: query - key >= window
    if (s.window !== undefined) blocked = b.o('Or', [blocked, b.o('GreaterOrEqual', [b.o('Sub', [queries, keys]), b.ints([s.window], true)])]);
    if (s.prefix) blocked = b.o('And', [blocked, b.o('Not', [b.o('And', [b.o('Less', [queries, s.prefix]), b.o('Less', [keys, s.prefix])])])]); // both in the prefix: seen
    if (s.blocks) blocked = b.o('And', [b.o('Unsqueeze', [blocked, b.ints([0, 1])]), b.o('Not', [this.blockMask(s.blocks.ids, s.blocks.tokenId, past)])]); // [B, 1, T, P + T]
    const mask = b.o('Where', [blocked, b.floats([-1e9]), b.floats([0])]);
    if (shared) this.masks.set(key, mask);
    return mask;
  }

  attention(q: string, k: string, v: string, s: AttentionSpec<string>): string {
    if (this.o.fused && s.layer >= 0) return this.fusedAttention(q, k, v, s);
    const b = this.b;
    const { heads: H, kvHeads: KV, headDim: hd } = s;
    const cached = s.layer >= 0;
    // the decoder layers of a graph share their sequence: past, total and positions are computed once
    const seq = cached ? (this.decoderSeq ??= this.sequence(q, this.past())) : s.rope || s.causal ? this.sequence(q, b.ints([0], true)) : undefined;
    let qh = this.heads(q, H, hd); // [B, H, T, hd]
    let kh = this.heads(k, KV, hd); // [B, KV, T, hd]
    let vh = this.heads(v, KV, hd);
    if (s.rope) {
      const positions = seq!.positions;
      qh = this.rope(qh, positions, hd, s.rope.theta, s.rope.factor, cached);
      kh = this.rope(kh, positions, hd, s.rope.theta, s.rope.factor, cached);
    }
    if (cached) {
      (this.cache.fresh ??= [])[s.layer] = { k: kh, v: vh };
      const p = this.cache.past?.[s.layer];
      if (p) {
        kh = b.o('Concat', [p.k, kh], { axis: 2 }); // [B, KV, P + T, hd]
        vh = b.o('Concat', [p.v, vh], { axis: 2 });
      }
      this.cache.present[s.layer] = { k: kh, v: vh };
    }
    const n = H / KV;
    // grouped heads: [B, KV, L, hd] -> [B, KV, 1, L, hd] -> [B, KV, n, L, hd] -> [B, H, L, hd]
    const repeat = (x: string) => (n === 1 ? x : b.o('Reshape', [b.o('Tile', [b.o('Unsqueeze', [x, b.ints([2])]), b.ints([1, 1, n, 1, 1])]), b.ints([0, H, -1, hd])]));
    let scores = b.o('Mul', [b.o('MatMul', [qh, b.o('Transpose', [repeat(kh)], { perm: [0, 1, 3, 2] })]), b.floats([s.scale ?? 1 / Math.sqrt(hd)])]); // [B, H, T, P + T]
    if (s.softcap !== undefined) scores = b.o('Mul', [b.o('Tanh', [b.o('Div', [scores, b.floats([s.softcap])])]), b.floats([s.softcap])]);
    if (s.causal) {
      const maskKey = `${s.window ?? ''}|${s.prefix ?? ''}|${s.blocks ? `${s.blocks.ids}:${s.blocks.tokenId}` : ''}`;
      const shared = cached ? this.masks.get(maskKey) : undefined;
      if (shared) scores = b.o('Add', [scores, shared]);
      else scores = b.o('Add', [scores, this.causalMask(s, seq!, maskKey, cached)]);
    }
    const probs = b.o('Softmax', [scores], { axis: -1 }); // [B, H, T, P + T]
    if (this.o.attentions && cached) (this.cache.attentions ??= [])[s.layer] = probs;
    const out = b.o('MatMul', [probs, repeat(vh)]); // [B, H, T, hd]
    return b.o('Reshape', [b.o('Transpose', [out], { perm: [0, 2, 1, 3] }), b.ints([0, 0, H * hd])]); // [B, T, H, hd] -> [B, T, H*hd]
  }

  /**
   * A decoder layer's attention as onnxruntime's GroupQueryAttention (the causal mask, the KV cache, grouped heads,
   * and the rotary embedding when the head size is a multiple of 16, else RotaryEmbedding before it). A decode step
   * reads `cache.mask`: the past buffers may be longer than the filled past (total - T positions).
   */
  private fusedAttention(q: string, k: string, v: string, s: AttentionSpec<string>): string {
    const b = this.b;
    const { heads: H, kvHeads: KV, headDim: hd } = s;
    if (!s.causal || !s.rope || s.window !== undefined || s.softcap !== undefined || s.blocks || s.prefix) {
      throw new VlakitError('E_USAGE', 'onnxruntime\'s fused attention covers causal rotary attention only (no sliding window, soft cap, image blocks or prefix-LM): export with standard operators');
    }
    const sh = this.fused(q, hd, s.rope.theta, s.rope.factor);
    const innerRotary = hd % 16 === 0;
    let qkv = [q, k, v];
    if (!innerRotary) {
      const pos = this.cache.mask ? sh.first : b.ints([0]); // RotaryEmbedding counts on from the first new position
      const rotary = (x: string, heads: number) => b.op('RotaryEmbedding', [x, pos, sh.cos, sh.sin], { num_heads: heads, interleaved: 0 }, 1, 'com.microsoft')[0];
      qkv = [rotary(q, H), rotary(k, KV), v];
    }
    const past = this.cache.past?.[s.layer];
    const [out, pk, pv] = b.op(
      'GroupQueryAttention',
      [...qkv, past?.k ?? '', past?.v ?? '', sh.seqlens, sh.total32, ...(innerRotary ? [sh.cos, sh.sin] : [])],
      { num_heads: H, kv_num_heads: KV, scale: { float: s.scale ?? 1 / Math.sqrt(hd) }, ...(innerRotary ? { do_rotary: 1, rotary_interleaved: 0 } : {}) },
      3,
      'com.microsoft',
    ); // [B, T, H*hd], [B, KV, max(past, total), hd] x 2
    this.cache.present[s.layer] = { k: pk, v: pv };
    // this step's keys/values alone: positions [total - T, total) of present
    if (this.cache.mask) (this.cache.fresh ??= [])[s.layer] = { k: b.o('Slice', [pk, sh.first, sh.last, b.ints([2])]), v: b.o('Slice', [pv, sh.first, sh.last, b.ints([2])]) };
    return out;
  }

  /** The inputs every fused attention of the graph shares: sequence lengths, the new positions' bounds, rotary caches. */
  private fused(q: string, hd: number, theta: number, factor = 1): FusedShared {
    if (this.fusedShared) return this.fusedShared;
    const b = this.b;
    const mask = this.cache.mask;
    const T = this.dim(q, 1);
    const total = mask ? this.dim(mask, 1) : T; // int64 scalar: past + T
    const total32 = b.o('Cast', [total], { to: 6 }); // int32
    const seqlens = mask
      ? b.o('Cast', [b.o('Sub', [b.o('ReduceSum', [mask, b.ints([1])], { keepdims: 0 }), b.ints([1], true)])], { to: 6 }) // [B]: positions per row - 1
      : b.o('Expand', [b.o('Sub', [total32, b.ints32([1], true)]), b.o('Unsqueeze', [this.dim(q, 0), b.ints([0])])]); // [B]: total - 1
    const [first, last] = mask ? [b.unsqueezed(b.o('Sub', [total, T])), b.unsqueezed(total)] : [b.ints([0]), '']; // [1]: the new positions' bounds
    // the model's own rotary angles for every position: [max_positions, hd/2] (the rotary operators' caches)
    const angles = ropeAngles(this.maxPositions, hd, theta, 0, factor);
    const cos = b.weight('rope.cos_cache', angles.cos, [this.maxPositions, hd / 2]);
    const sin = b.weight('rope.sin_cache', angles.sin, [this.maxPositions, hd / 2]);
    this.fusedShared = { seqlens, total32, first, last, cos, sin };
    return this.fusedShared;
  }

  /**
   * [B, 1, T, P + T] bool: query and key are tokens of one run of `tokenId` among this call's ids [B, T] (past keys
   * never are).
   */
  private blockMask(ids: string, tokenId: number, past: string): string {
    const b = this.b;
    const img = b.o('Equal', [ids, b.ints([tokenId], true)]); // [B, T]
    const imgI = b.o('Cast', [img], { to: 7 }); // int64
    const prev = b.o('Pad', [b.o('Slice', [imgI, b.ints([0]), b.ints([-1]), b.ints([1])]), b.ints([0, 1, 0, 0])]); // [B, T]: the previous token is one
    const starts = b.o('Mul', [imgI, b.o('Sub', [b.ints([1], true), prev])]); // [B, T]
    const group = b.o('CumSum', [starts, b.ints([1], true)]); // [B, T]
    const both = b.o('And', [b.o('Unsqueeze', [img, b.ints([2])]), b.o('Unsqueeze', [img, b.ints([1])])]); // [B, T, T]
    const same = b.o('And', [both, b.o('Equal', [b.o('Unsqueeze', [group, b.ints([2])]), b.o('Unsqueeze', [group, b.ints([1])])])]);
    // left-pad the key axis with the past positions: [B, T, T] -> [B, T, P + T]
    const pads = b.o('Concat', [b.ints([0, 0]), b.o('Reshape', [past, b.ints([1])]), b.ints([0, 0, 0])], { axis: 0 });
    const padded = b.o('Cast', [b.o('Pad', [b.o('Cast', [same], { to: 6 }), pads]), ], { to: 9 }); // via int32 (Pad of bool is not in opset 17)
    return b.o('Unsqueeze', [padded, b.ints([1])]);
  }

  avgPool(x: string, kernel: number): string {
    const b = this.b;
    // [.., H, W] -> [N, 1, H, W] -> AveragePool -> [.., H/k, W/k]
    const shape = b.o('Shape', [x]);
    const lead = b.o('Slice', [shape, b.ints([0]), b.ints([-2])]);
    const hw = b.o('Slice', [shape, b.ints([-2]), b.ints([2 ** 30])]);
    const pooled = b.o('AveragePool', [b.o('Reshape', [x, b.o('Concat', [b.ints([-1, 1]), hw], { axis: 0 })])], { kernel_shape: [kernel, kernel], strides: [kernel, kernel] });
    return b.o('Reshape', [pooled, b.o('Concat', [lead, b.o('Div', [hw, b.ints([kernel])])], { axis: 0 })]);
  }

  matmul(x: string, weight: string): string {
    const { data, shape } = this.t(weight);
    return this.matmulConst(x, { stored: weight, data: () => data, dims: [shape[0], shape[1]] }); // [.., in] x [in, out]
  }

  block(fn: () => string): string {
    return fn();
  }

  head(h: string, weight: string): string {
    const b = this.b;
    const { shape } = this.t(weight); // [V, D]
    const flat = b.o('Reshape', [h, b.ints([-1, shape[1]])]); // [B*T, D]
    const logits = b.o('Gemm', [flat, this.w(weight)], { transB: 1 }); // [B*T, D] x [V, D]^T
    const outShape = b.o('Concat', [b.o('Slice', [b.o('Shape', [h]), b.ints([0]), b.ints([2])]), b.ints([shape[0]])], { axis: 0 });
    return b.o('Reshape', [logits, outShape]); // [B*T, V] -> [B, T, V]
  }
}
