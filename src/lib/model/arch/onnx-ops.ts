/**
 * The ONNX backend of `Ops`: each operation adds standard (opset 17) nodes to a graph. Linear weights are stored
 * transposed ([in, out], named `<hf name>.T`) so a MatMul broadcasts over the leading axes; everything else keeps
 * its Hugging Face name and layout. Attention reads `past_key_values.{layer}.key/value` [B, KV, P, hd] when the
 * graph is a decode step and returns `present.{layer}.*` [B, KV, P + T, hd].
 */
import { VlakitError } from '../../errors.js';
import type { GraphBuilder } from '../../export/onnx.js';
import { ropeAngles } from '../layers.js';
import type { NamedArray } from '../safetensors.js';
import type { AttentionSpec, Ops } from './ops.js';

export interface OnnxCacheIo {
  /** Per layer: the past inputs (decode) or none (prefill). */
  past?: { k: string; v: string }[];
  /** Filled per layer: the present values to declare as outputs. */
  present: { k: string; v: string }[];
}

export class OnnxOps implements Ops<string> {
  private pastLen: string | undefined;

  constructor(
    private readonly b: GraphBuilder,
    private readonly tensors: Map<string, NamedArray>,
    readonly cache: OnnxCacheIo,
    private readonly maxPositions: number,
  ) {}

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

  /** A linear weight [out, in] stored transposed: [in, out], named `<name>.T`. */
  private wT(name: string): string {
    const stored = `${name}.T`;
    const done = this.b.weights.entries.get(stored);
    if (done) return this.b.weight(stored, done.data, done.dims);
    const { data, shape } = this.t(name);
    const [o, i] = [shape[0], data.length / shape[0]]; // a convolution's [out, c, kh, kw] as [out, c*kh*kw]
    const out = new Float32Array(data.length);
    for (let r = 0; r < o; r++) for (let c = 0; c < i; c++) out[c * o + r] = data[r * i + c];
    return this.b.weight(stored, out, [i, o]);
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

  embed(table: string, ids: string): string {
    return this.b.o('Gather', [this.w(table), ids], { axis: 0 }); // [B, T] -> [B, T, D]
  }

  linear(x: string, prefix: string): string {
    const y = this.b.o('MatMul', [x, this.wT(`${prefix}.weight`)]); // [.., in] x [in, out]
    return this.has(`${prefix}.bias`) ? this.b.o('Add', [y, this.w(`${prefix}.bias`)]) : y;
  }

  rmsNorm(x: string, weight: string, eps: number, offset?: number): string {
    return this.b.rmsNorm(x, offset === undefined ? this.w(weight) : this.shifted(weight, offset), eps);
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

  /** Rotary embedding of x [B, heads, T, hd] at positions [past, past + T): x1 c - x2 s | x2 c + x1 s. */
  private rope(x: string, positions: string, hd: number, theta: number, factor = 1): string {
    const b = this.b;
    const half = hd / 2;
    const name = `rope.${hd}.${theta}${factor === 1 ? '' : `.x${factor}`}`;
    const table = (part: 'cos' | 'sin'): string => {
      const done = b.weights.entries.get(`${name}.${part}`);
      if (done) return b.weight(`${name}.${part}`, done.data, done.dims);
      const angles = ropeAngles(this.maxPositions, hd, theta, 0, factor); // [maxPos, hd/2]
      return b.weight(`${name}.${part}`, angles[part], [this.maxPositions, half]);
    };
    const c = b.o('Gather', [table('cos'), positions], { axis: 0 }); // [T, hd/2]
    const s = b.o('Gather', [table('sin'), positions], { axis: 0 });
    const x1 = b.o('Slice', [x, b.ints([0]), b.ints([half]), b.ints([3])]); // [B, heads, T, hd/2]
    const x2 = b.o('Slice', [x, b.ints([half]), b.ints([hd]), b.ints([3])]);
    return b.o('Concat', [b.o('Sub', [b.o('Mul', [x1, c]), b.o('Mul', [x2, s])]), b.o('Add', [b.o('Mul', [x2, c]), b.o('Mul', [x1, s])])], { axis: 3 });
  }

  attention(q: string, k: string, v: string, s: AttentionSpec<string>): string {
    const b = this.b;
    const { heads: H, kvHeads: KV, headDim: hd } = s;
    const cached = s.layer >= 0;
    const past = cached ? this.past() : b.ints([0], true);
    const T = this.dim(q, 1);
    const total = b.o('Add', [past, T]);
    let qh = this.heads(q, H, hd); // [B, H, T, hd]
    let kh = this.heads(k, KV, hd); // [B, KV, T, hd]
    let vh = this.heads(v, KV, hd);
    if (s.rope) {
      const positions = b.o('Range', [past, total, b.ints([1], true)]); // [T]
      qh = this.rope(qh, positions, hd, s.rope.theta, s.rope.factor);
      kh = this.rope(kh, positions, hd, s.rope.theta, s.rope.factor);
    }
    if (cached) {
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
      const one = b.ints([1], true);
      const keys = b.o('Unsqueeze', [b.o('Range', [b.ints([0], true), total, one]), b.ints([0])]); // [1, P + T]
      const queries = b.o('Unsqueeze', [b.o('Range', [past, total, one]), b.ints([1])]); // [T, 1]
      let blocked = b.o('Greater', [keys, queries]); // [T, P + T]: future keys
      // outside the sliding window: query - key >= window
      if (s.window !== undefined) blocked = b.o('Or', [blocked, b.o('GreaterOrEqual', [b.o('Sub', [queries, keys]), b.ints([s.window], true)])]);
      if (s.prefix) blocked = b.o('And', [blocked, b.o('Not', [b.o('And', [b.o('Less', [queries, s.prefix]), b.o('Less', [keys, s.prefix])])])]); // both in the prefix: seen
      if (s.blocks) blocked = b.o('And', [b.o('Unsqueeze', [blocked, b.ints([0, 1])]), b.o('Not', [this.blockMask(s.blocks.ids, s.blocks.tokenId, past)])]); // [B, 1, T, P + T]
      scores = b.o('Add', [scores, b.o('Where', [blocked, b.floats([-1e9]), b.floats([0])])]);
    }
    const out = b.o('MatMul', [b.o('Softmax', [scores], { axis: -1 }), repeat(vh)]); // [B, H, T, hd]
    return b.o('Reshape', [b.o('Transpose', [out], { perm: [0, 2, 1, 3] }), b.ints([0, 0, H * hd])]); // [B, T, H, hd] -> [B, T, H*hd]
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
    return this.b.o('MatMul', [x, this.w(weight)]); // [.., in] x [in, out]
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
