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

  rmsNorm(x: string, weight: string, eps: number): string {
    return this.b.rmsNorm(x, this.w(weight), eps);
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
  private rope(x: string, positions: string, hd: number, theta: number): string {
    const b = this.b;
    const half = hd / 2;
    const { cos, sin } = ropeAngles(this.maxPositions, hd, theta); // [maxPos, hd/2]
    const c = b.o('Gather', [b.weight(`rope.${hd}.${theta}.cos`, cos, [this.maxPositions, half]), positions], { axis: 0 }); // [T, hd/2]
    const s = b.o('Gather', [b.weight(`rope.${hd}.${theta}.sin`, sin, [this.maxPositions, half]), positions], { axis: 0 });
    const x1 = b.o('Slice', [x, b.ints([0]), b.ints([half]), b.ints([3])]); // [B, heads, T, hd/2]
    const x2 = b.o('Slice', [x, b.ints([half]), b.ints([hd]), b.ints([3])]);
    return b.o('Concat', [b.o('Sub', [b.o('Mul', [x1, c]), b.o('Mul', [x2, s])]), b.o('Add', [b.o('Mul', [x2, c]), b.o('Mul', [x1, s])])], { axis: 3 });
  }

  attention(q: string, k: string, v: string, s: AttentionSpec): string {
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
      qh = this.rope(qh, positions, hd, s.rope.theta);
      kh = this.rope(kh, positions, hd, s.rope.theta);
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
    if (s.causal) {
      const one = b.ints([1], true);
      const keys = b.o('Unsqueeze', [b.o('Range', [b.ints([0], true), total, one]), b.ints([0])]); // [1, P + T]
      const queries = b.o('Unsqueeze', [b.o('Range', [past, total, one]), b.ints([1])]); // [T, 1]
      scores = b.o('Add', [scores, b.o('Where', [b.o('Greater', [keys, queries]), b.floats([-1e9]), b.floats([0])])]); // + [T, P + T]
    }
    const out = b.o('MatMul', [b.o('Softmax', [scores], { axis: -1 }), repeat(vh)]); // [B, H, T, hd]
    return b.o('Reshape', [b.o('Transpose', [out], { perm: [0, 2, 1, 3] }), b.ints([0, 0, H * hd])]); // [B, T, H, hd] -> [B, T, H*hd]
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
