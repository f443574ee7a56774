/**
 * The VLA model as two ONNX graphs over one set of weights, mirroring src/lib/model/model.ts op for op:
 * - prefill: pixel_values [B, C, S, S, 3] + input_ids [B, T] -> logits [B, T, V] of the text positions and
 *   present.{i}.key/value [B, KV, Ni + T, hd] (image tokens first);
 * - decode: input_ids [B, T] + past_key_values.{i}.key/value [B, KV, P, hd] -> logits [B, T, V],
 *   new_key_values.{i}.* [B, KV, T, hd] (the new positions alone) and present.{i}.key/value: standard operators
 *   [B, KV, P + T, hd]; fused operators also take attention_mask [B, total] (all ones; total = the filled past + T),
 *   the past may be a longer preallocated buffer (P >= total - T), and present is [B, KV, max(P, total), hd];
 * With `attentions`, both also return attentions.{i} [B, H, T(q), keys] per decoder layer. With `quantize: 'int8'`
 * every matmul weight is int8 (dynamic quantization; 7-bit weights unless `weightRange: 'full'`).
 */
import type { VlaModel } from '../model/model.js';
import { ropeAngles } from '../model/layers.js';
import { type Dim, GraphBuilder, type ModelProto, type WeightStore } from './onnx.js';
import { WEIGHT_MAX, type WeightRange, int8MatMul, quantizeColumns } from './quantize.js';

export interface GraphOptions {
  attentions?: boolean;
  /**
   * Use onnxruntime's fused operators (com.microsoft GroupQueryAttention with rotary embedding, and
   * SkipSimplifiedLayerNormalization): far fewer nodes per layer; graphs then need onnxruntime. Not with attentions
   * (the fused attention does not return its weights).
   */
  fused?: boolean;
  /**
   * int8: the weights of every matmul as int8 with a scale per output column, the activations quantized at run
   * time (DynamicQuantizeLinear, MatMulInteger: standard operators that onnxruntime fuses into
   * DynamicQuantizeMatMul); embeddings, norms and the output head stay float32.
   */
  quantize?: 'int8';
  /** With int8: the weight range, 7-bit (the default, correct on every CPU) or full (see quantize.ts). */
  weightRange?: WeightRange;
}

type KvNames = { k: string; v: string };

const INT64_MAX = Number.MAX_SAFE_INTEGER;

/** Symbolic dimension names, as the Hugging Face / Optimum exports use them. */
export const DIMS = { batch: 'batch_size', seq: 'sequence_length', past: 'past_sequence_length', total: 'total_sequence_length' } as const;

/**
 * The length of present.* in a fused decode step: the past buffer's when it has room for the new positions (a
 * preallocated cache), else past + new.
 */
export const PRESENT_DIM = `max(${DIMS.past}, ${DIMS.total})`;

class VlaGraph {
  readonly b: GraphBuilder;
  private readonly cfg;

  constructor(private readonly model: VlaModel, name: string, store: WeightStore, private readonly o: GraphOptions) {
    this.b = new GraphBuilder(name, store);
    this.cfg = model.config;
  }

  w(name: string): string {
    const v = this.model.params.get(name);
    if (!v) throw new Error(`missing parameter ${name}`);
    return this.b.weight(name, v.dataSync() as Float32Array, v.shape);
  }

  has(name: string): boolean {
    return this.model.params.has(name);
  }

  /** x [.., in] -> [.., out] (MatMul broadcasts over the leading axes). */
  linear(name: string, x: string): string {
    const p = this.model.params.get(`${name}.weight`);
    if (!p) throw new Error(`missing parameter ${name}.weight`);
    const y = this.matmul(x, `${name}.weight`, () => p.dataSync() as Float32Array, p.shape as [number, number]);
    return this.has(`${name}.bias`) ? this.b.o('Add', [y, this.w(`${name}.bias`)]) : y;
  }

  /**
   * x [.., K] times a constant weight [K, N] stored as `name` (`data` is asked for only when the store lacks it):
   * MatMul, or with int8 quantization DynamicQuantizeLinear(x) -> MatMulInteger -> Cast -> Mul by the scales.
   */
  matmul(x: string, name: string, data: () => Float32Array, [K, N]: [number, number]): string {
    const b = this.b;
    const stored = (n: string) => b.weights.entries.get(n)?.data;
    if (this.o.quantize !== 'int8') return b.o('MatMul', [x, b.weight(name, stored(name) ?? data(), [K, N])]);
    const [qName, sName] = [`${name}.int8`, `${name}.scale`];
    const { q, scale } = stored(qName) ? { q: stored(qName)!, scale: stored(sName)! } : quantizeColumns(data(), K, N, WEIGHT_MAX[this.o.weightRange ?? '7-bit']);
    return int8MatMul(b, x, b.weight(qName, q, [K, N]), b.weight(sName, scale, [N]));
  }

  rmsNorm(x: string, weight: string, eps: number): string {
    return this.b.rmsNorm(x, this.w(weight), eps);
  }

  layerNorm(x: string, prefix: string, eps: number): string {
    return this.b.layerNorm(x, this.w(`${prefix}.weight`), this.w(`${prefix}.bias`), eps);
  }

  /** GELU, tanh approximation (the model's). */
  gelu(x: string): string {
    return this.b.gelu(x, 'tanh');
  }

  /** [B, T, H*hd] -> [B, H, T, hd] */
  splitHeads(x: string, heads: number, hd: number): string {
    return this.b.o('Transpose', [this.b.o('Reshape', [x, this.b.ints([0, 0, heads, hd])])], { perm: [0, 2, 1, 3] }); // [B, T, H, hd] -> [B, H, T, hd]
  }

  /** [B, H, T, hd] -> [B, T, H*hd] */
  mergeHeads(x: string, width: number): string {
    return this.b.o('Reshape', [this.b.o('Transpose', [x], { perm: [0, 2, 1, 3] }), this.b.ints([0, 0, width])]); // [B, T, H, hd] -> [B, T, H*hd]
  }

  /** Scaled dot-product attention; q [B, H, Tq, hd], k and v [B, H, Tk, hd], mask [Tq, Tk] -> out, weights. */
  attention(q: string, k: string, v: string, hd: number, mask?: string): { out: string; weights: string } {
    const b = this.b;
    let scores = b.o('Div', [b.o('MatMul', [q, b.o('Transpose', [k], { perm: [0, 1, 3, 2] })]), b.floats([Math.sqrt(hd)])]); // [B, H, Tq, Tk]
    if (mask) scores = b.o('Add', [scores, mask]);
    const weights = b.o('Softmax', [scores], { axis: -1 });
    return { out: b.o('MatMul', [weights, v]), weights };
  }

  /** pixel_values [B, C, S, S, 3] -> image tokens [B, C*Np, D] */
  encodeImages(pixels: string): string {
    const b = this.b;
    const v = this.cfg.vision_config;
    const P = v.patch_size;
    const g = v.image_size / P;
    const Np = g * g;
    const C = this.cfg.num_cameras;
    const D = this.cfg.text_config.hidden_size;
    // [B, C, S, S, 3] -> [B*C, g, P, g, P, 3] -> [B*C, g, g, P, P, 3] -> [B*C, Np, P*P*3]
    const patches = b.o('Reshape', [b.o('Transpose', [b.o('Reshape', [pixels, b.ints([-1, g, P, g, P, 3])])], { perm: [0, 1, 3, 2, 4, 5] }), b.ints([-1, Np, P * P * 3])]);
    let x = b.o('Add', [this.linear('vision.patch_embed', patches), this.w('vision.pos_embed')]); // [B*C, Np, Dv]
    const hdv = v.hidden_size / v.num_attention_heads;
    for (let i = 0; i < v.num_hidden_layers; i++) {
      const n = `vision.layers.${i}`;
      const h = this.layerNorm(x, `${n}.ln1`, v.layer_norm_eps);
      const [q, k, vv] = b.op('Split', [this.linear(`${n}.attn.qkv`, h), b.ints([v.hidden_size, v.hidden_size, v.hidden_size])], { axis: -1 }, 3); // 3 x [B*C, Np, Dv]
      const heads = (t: string) => this.splitHeads(t, v.num_attention_heads, hdv);
      const { out } = this.attention(heads(q), heads(k), heads(vv), hdv);
      x = b.o('Add', [x, this.linear(`${n}.attn.proj`, this.mergeHeads(out, v.hidden_size))]);
      const h2 = this.layerNorm(x, `${n}.ln2`, v.layer_norm_eps);
      x = b.o('Add', [x, this.linear(`${n}.mlp.fc2`, this.gelu(this.linear(`${n}.mlp.fc1`, h2)))]);
    }
    x = this.layerNorm(x, 'vision.post_ln', v.layer_norm_eps);
    const proj = this.linear('projector.fc2', this.gelu(this.linear('projector.fc1', x))); // [B*C, Np, D]
    const cam = b.o('Reshape', [this.w('projector.camera_embed'), b.ints([1, C, 1, D])]); // [C, D] -> [1, C, 1, D]
    const perCam = b.o('Add', [b.o('Reshape', [proj, b.ints([-1, C, Np, D])]), cam]); // [B, C, Np, D]
    return b.o('Reshape', [perCam, b.ints([-1, C * Np, D])]); // [B, C*Np, D]
  }

  /**
   * x [.., D] times layer i's [q | rotate_half(q) | k | rotate_half(k) | v] projection [D, 2*H*hd + 3*KV*hd]:
   * rotate_half is a signed column permutation, folded into the weights.
   */
  qkvRope(i: number, x: string): string {
    const t = this.cfg.text_config;
    const D = t.hidden_size;
    const [H, KV] = [t.num_attention_heads, t.num_key_value_heads];
    const hd = D / H;
    const weight = () => {
      const q = this.projection(i, 'self_attn.q_proj');
      const k = this.projection(i, 'self_attn.k_proj');
      return this.concatColumns(D, [[q, H * hd], [rotateHalfColumns(q, D, H, hd), H * hd], [k, KV * hd], [rotateHalfColumns(k, D, KV, hd), KV * hd], [this.projection(i, 'self_attn.v_proj'), KV * hd]]);
    };
    return this.matmul(x, `model.layers.${i}.self_attn.qkv_rope.weight`, weight, [D, 2 * H * hd + 3 * KV * hd]);
  }

  /** A bias-free projection's weight [in, out] of layer i, e.g. `self_attn.q_proj` (fused paths fold no bias). */
  private projection(i: number, m: string): Float32Array {
    const prefix = `model.layers.${i}.${m}`;
    if (this.has(`${prefix}.bias`)) throw new Error(`the export does not fold a ${m} bias into a fused projection`);
    return this.model.params.get(`${prefix}.weight`)!.dataSync() as Float32Array;
  }

  /** One weight [rows, sum of widths] whose columns are the given weights' side by side. */
  private concatColumns(rows: number, parts: [Float32Array, number][]): Float32Array {
    const width = parts.reduce((a, [, c]) => a + c, 0);
    const out = new Float32Array(rows * width);
    let at = 0;
    for (const [w, c] of parts) {
      for (let r = 0; r < rows; r++) out.set(w.subarray(r * c, (r + 1) * c), r * width + at);
      at += c;
    }
    return out;
  }

  /** A scalar int64: dimension `axis` of `x`. */
  dim(x: string, axis: number): string {
    return this.b.o('Gather', [this.b.o('Shape', [x]), this.b.ints([axis], true)], { axis: 0 });
  }

  /**
   * The decoder with onnxruntime's fused operators, per layer: one matmul for the packed q, k, v;
   * GroupQueryAttention (the causal mask, the KV cache, grouped heads, and the rotary embedding when the head size
   * allows, else RotaryEmbedding); one matmul for gate and up; the residual adds folded into
   * SkipSimplifiedLayerNormalization. A decode step takes the cache with attention_mask [B, total] (ones over the
   * past and new positions): the past buffers may be longer than the past (a preallocated cache, filled up to
   * total - N), and the new positions' keys/values come out alone as well.
   */
  fusedDecoder(x: string, cache?: { past: KvNames[]; mask: string }): { h: string; present: KvNames[]; fresh: KvNames[]; attentions?: string[] } {
    const b = this.b;
    const t = this.cfg.text_config;
    const H = t.num_attention_heads;
    const KV = t.num_key_value_heads;
    const hd = t.hidden_size / H;
    const D = t.hidden_size;
    const I = t.intermediate_size;
    const N = this.dim(x, 1);
    const total = cache ? this.dim(cache.mask, 1) : N; // int64 scalar: past + N
    const total32 = b.o('Cast', [total], { to: 6 }); // int32
    const seqlens = cache
      ? b.o('Cast', [b.o('Sub', [b.o('ReduceSum', [cache.mask, b.ints([1])], { keepdims: 0 }), b.ints([1], true)])], { to: 6 }) // [B]: positions per row - 1
      : b.o('Expand', [b.o('Sub', [total32, b.ints32([1], true)]), b.o('Unsqueeze', [this.dim(x, 0), b.ints([0])])]); // [B]: total - 1
    // the model's own rotary angles for every position: [max_positions, hd/2] (the rotary operators' caches)
    const angles = ropeAngles(t.max_position_embeddings, hd, t.rope_theta);
    const cosCache = b.weight('rope.cos_cache', angles.cos, [t.max_position_embeddings, hd / 2]);
    const sinCache = b.weight('rope.sin_cache', angles.sin, [t.max_position_embeddings, hd / 2]);
    const innerRotary = hd % 16 === 0;
    const [first, last] = cache ? [b.unsqueezed(b.o('Sub', [total, N])), b.unsqueezed(total)] : [b.ints([0]), '']; // [1]: the new positions' bounds
    const pos = innerRotary ? '' : first; // RotaryEmbedding counts on from the first new position
    const present: KvNames[] = [];
    const fresh: KvNames[] = [];
    let h = b.op('SimplifiedLayerNormalization', [x, this.w('model.layers.0.input_layernorm.weight')], { axis: -1, epsilon: { float: t.rms_norm_eps } }, 1)[0];
    let residual = x;
    const qkvCols: [string, number][] = [['self_attn.q_proj', H * hd], ['self_attn.k_proj', KV * hd], ['self_attn.v_proj', KV * hd]];
    for (let i = 0; i < t.num_hidden_layers; i++) {
      const ln = `model.layers.${i}`;
      const qkv = this.matmul(h, `${ln}.self_attn.qkv.weight`, () => this.concatColumns(D, qkvCols.map(([m, c]) => [this.projection(i, m), c])), [D, (H + 2 * KV) * hd]); // [B, N, (H + 2 KV) hd]
      // GroupQueryAttention rotates q and k itself when the head size is a multiple of 16; otherwise RotaryEmbedding does
      let qkvIn = [qkv, '', ''];
      if (!innerRotary) {
        const [q, k, v] = b.op('Split', [qkv, b.ints([H * hd, KV * hd, KV * hd])], { axis: -1 }, 3);
        const rotary = (x: string, heads: number) => b.op('RotaryEmbedding', [x, pos, cosCache, sinCache], { num_heads: heads, interleaved: 0 }, 1, 'com.microsoft')[0];
        qkvIn = [rotary(q, H), rotary(k, KV), v];
      }
      const [attn, pk, pv] = b.op(
        'GroupQueryAttention',
        [...qkvIn, cache?.past[i].k ?? '', cache?.past[i].v ?? '', seqlens, total32, ...(innerRotary ? [cosCache, sinCache] : [])],
        { num_heads: H, kv_num_heads: KV, scale: { float: 1 / Math.sqrt(hd) }, ...(innerRotary ? { do_rotary: 1, rotary_interleaved: 0 } : {}) },
        3,
        'com.microsoft',
      ); // [B, N, H hd], [B, KV, max(past, total), hd] x 2
      present.push({ k: pk, v: pv });
      // this step's keys/values alone (positions [total - N, total)), for a runner that keeps its own cache
      if (cache) fresh.push({ k: b.o('Slice', [present[i].k, first, last, b.ints([2])]), v: b.o('Slice', [present[i].v, first, last, b.ints([2])]) });
      const o = this.linear(`${ln}.self_attn.o_proj`, attn);
      // residual + attention, then the post-attention norm, in one node (outputs: normed, -, -, sum)
      const [h2, sum] = this.skipNorm(o, residual, `${ln}.post_attention_layernorm.weight`, t.rms_norm_eps);
      const gateUp = this.matmul(h2, `${ln}.mlp.gate_up.weight`, () => this.concatColumns(D, [[this.projection(i, 'mlp.gate_proj'), I], [this.projection(i, 'mlp.up_proj'), I]]), [D, 2 * I]);
      const [gate, up] = b.op('Split', [gateUp, b.ints([I, I])], { axis: -1 }, 2); // [B, N, I] x 2
      const mlp = this.linear(`${ln}.mlp.down_proj`, b.o('Mul', [b.o('Mul', [gate, b.o('Sigmoid', [gate])]), up]));
      const nextNorm = i + 1 < t.num_hidden_layers ? `model.layers.${i + 1}.input_layernorm.weight` : 'model.norm.weight';
      const [hn, sum2] = this.skipNorm(mlp, sum, nextNorm, t.rms_norm_eps);
      h = hn;
      residual = sum2;
    }
    return { h, present, fresh };
  }

  /**
   * The causal mask for queries at positions [past, total) over keys [0, total): [n*N, total], -1e9 where key j
   * lies after query i, repeated for the n query heads that share a key/value head (row j*N + i for query i of
   * head j of the group).
   */
  causalMask(past: string, total: string): string {
    const b = this.b;
    const t = this.cfg.text_config;
    const n = t.num_attention_heads / t.num_key_value_heads;
    const one = b.ints([1], true);
    const keys = b.o('Unsqueeze', [b.o('Range', [b.ints([0], true), total, one]), b.ints([0])]); // [1, total]
    const queries = b.o('Unsqueeze', [b.o('Range', [past, total, one]), b.ints([1])]); // [N, 1]
    const mask = b.o('Where', [b.o('Greater', [keys, queries]), b.floats([-1e9]), b.floats([0])]); // [N, total]
    return n > 1 ? b.o('Tile', [mask, b.ints([n, 1])]) : mask; // [n*N, total]
  }

  /**
   * Grouped-query attention with standard operators, keys not repeated: q [B, N, H*hd] (rotated), k and v
   * [B, KV, T, hd], mask [n*N, T] -> out [B, H, N, hd] and, when asked for, weights [B, H, N, T].
   */
  groupedAttention(q: string, k: string, v: string, mask: string, withWeights = false): { out: string; weights?: string } {
    const b = this.b;
    const t = this.cfg.text_config;
    const H = t.num_attention_heads;
    const KV = t.num_key_value_heads;
    const hd = t.hidden_size / H;
    const n = H / KV;
    if (n === 1) return this.attention(this.splitHeads(q, H, hd), k, v, hd, mask);
    // the n query heads of a group become n*N rows: [B, N, H*hd] -> [B, N, KV, n, hd] -> [B, KV, n, N, hd] -> [B, KV, n*N, hd]
    const qg = b.o('Reshape', [b.o('Transpose', [b.o('Reshape', [q, b.ints([0, 0, KV, n, hd])])], { perm: [0, 2, 3, 1, 4] }), b.ints([0, KV, -1, hd])]);
    const att = this.attention(qg, k, v, hd, mask); // out [B, KV, n*N, hd], weights [B, KV, n*N, T]
    return { out: b.o('Reshape', [att.out, b.ints([0, H, -1, hd])]), weights: withWeights ? b.o('Reshape', [att.weights, b.ints([0, H, -1, 0])]) : undefined }; // [B, KV, n, N, .] = [B, H, N, .]
  }

  /**
   * Rotary tables for positions [past, total), laid out like the projections ([.., H*hd]): rows of precomputed
   * [max_positions, H*hd] tables; the key/value heads use the first KV*hd columns.
   */
  ropeRows(past: string, total: string): { positions: string; cosQ: string; sinQ: string; cosK: string; sinK: string } {
    const b = this.b;
    const t = this.cfg.text_config;
    const H = t.num_attention_heads;
    const KV = t.num_key_value_heads;
    const hd = t.hidden_size / H;
    const positions = b.o('Range', [past, total, b.ints([1], true)]); // [N]
    const { cos, sin } = ropeTable(t.max_position_embeddings, hd, t.rope_theta, H);
    const table = (name: string, data: Float32Array) => b.o('Gather', [b.weight(name, data, [t.max_position_embeddings, H * hd]), positions], { axis: 0 }); // [N, H*hd]
    const cosQ = table('rope.cos', cos);
    const sinQ = table('rope.sin', sin);
    const kvCols = (m: string) => (KV === H ? m : b.o('Slice', [m, b.ints([0]), b.ints([KV * hd]), b.ints([1])])); // [N, KV*hd]
    return { positions, cosQ, sinQ, cosK: kvCols(cosQ), sinK: kvCols(sinQ) };
  }

  /** x + skip, RMS-normalized with `weight`: [normed, the sum] (SkipSimplifiedLayerNormalization). */
  skipNorm(x: string, skip: string, weight: string, eps: number): [string, string] {
    const [normed, , , sum] = this.b.op('SkipSimplifiedLayerNormalization', [x, skip, this.w(weight)], { epsilon: { float: eps } }, 4, 'com.microsoft');
    const node = this.b.nodes[this.b.nodes.length - 1];
    node.output = [normed, '', '', sum]; // mean and inverse std are not wanted
    return [normed, sum];
  }

  /**
   * The decoder over embeddings x [B, N, D] at positions [past, past + N): returns the final hidden states, the
   * present keys/values per layer and the attention weights per layer.
   */
  decoder(x: string, past: string, o: GraphOptions, pastKv?: { k: string; v: string }[]): { h: string; present: KvNames[]; fresh: KvNames[]; attentions: string[] } {
    const b = this.b;
    const t = this.cfg.text_config;
    const H = t.num_attention_heads;
    const KV = t.num_key_value_heads;
    const hd = t.hidden_size / H;
    const N = this.dim(x, 1);
    const total = b.o('Add', [past, N]);
    const { cosQ, sinQ, cosK, sinK } = this.ropeRows(past, total);
    const mask = this.causalMask(past, total);
    const present: { k: string; v: string }[] = [];
    const fresh: { k: string; v: string }[] = [];
    const attentions: string[] = [];
    for (let i = 0; i < t.num_hidden_layers; i++) {
      const ln = `model.layers.${i}`;
      const h = this.rmsNorm(x, `${ln}.input_layernorm.weight`, t.rms_norm_eps);
      // one matmul for q, rotate_half(q), k, rotate_half(k), v: the rotation is a signed column permutation,
      // folded into the weights, so rope is q cos + rotate_half(q) sin with no split/concat
      const [q0, qr, k0, kr, v0] = b.op('Split', [this.qkvRope(i, h), b.ints([H * hd, H * hd, KV * hd, KV * hd, KV * hd])], { axis: -1 }, 5);
      const q = b.o('Add', [b.o('Mul', [q0, cosQ]), b.o('Mul', [qr, sinQ])]); // [B, N, H*hd]
      const kRot = b.o('Add', [b.o('Mul', [k0, cosK]), b.o('Mul', [kr, sinK])]); // [B, N, KV*hd]
      let k = this.splitHeads(kRot, KV, hd); // [B, KV, N, hd]
      let v = this.splitHeads(v0, KV, hd);
      fresh.push({ k, v });
      if (pastKv) {
        k = b.o('Concat', [pastKv[i].k, k], { axis: 2 }); // [B, KV, past + N, hd]
        v = b.o('Concat', [pastKv[i].v, v], { axis: 2 });
      }
      present.push({ k, v });
      const { out, weights } = this.groupedAttention(q, k, v, mask, o.attentions); // [B, H, N, hd], [B, H, N, past + N]
      if (weights) attentions.push(weights);
      x = b.o('Add', [x, this.linear(`${ln}.self_attn.o_proj`, this.mergeHeads(out, t.hidden_size))]);
      const h2 = this.rmsNorm(x, `${ln}.post_attention_layernorm.weight`, t.rms_norm_eps);
      const gate = this.linear(`${ln}.mlp.gate_proj`, h2);
      const up = this.linear(`${ln}.mlp.up_proj`, h2);
      x = b.o('Add', [x, this.linear(`${ln}.mlp.down_proj`, b.o('Mul', [b.o('Mul', [gate, b.o('Sigmoid', [gate])]), up]))]); // SwiGLU
    }
    return { h: this.rmsNorm(x, 'model.norm.weight', t.rms_norm_eps), present, fresh, attentions };
  }

  /** Hidden states [B, T, D] -> logits [B, T, V] through the tied embedding. */
  head(h: string): string {
    const b = this.b;
    const t = this.cfg.text_config;
    const flat = b.o('Reshape', [h, b.ints([-1, t.hidden_size])]); // [B*T, D]
    const logits = b.o('Gemm', [flat, this.w('model.embed_tokens.weight')], { transB: 1 }); // [B*T, D] x [V, D]^T
    const shape = b.o('Concat', [b.o('Slice', [b.o('Shape', [h]), b.ints([0]), b.ints([2])]), b.ints([t.vocab_size])], { axis: 0 });
    return b.o('Reshape', [logits, shape]); // [B*T, V] -> [B, T, V]
  }

  /** Declares the outputs; `queries` and `keys` are the lengths of the query and key positions. */
  outputs(logits: string, present: { k: string; v: string }[], attentions: string[], queries: Dim, keys: Dim, o: GraphOptions): void {
    const t = this.cfg.text_config;
    const hd = t.hidden_size / t.num_attention_heads;
    this.b.output(logits, 'logits', 'float', [DIMS.batch, DIMS.seq, t.vocab_size]);
    present.forEach((p, i) => {
      this.b.output(p.k, `present.${i}.key`, 'float', [DIMS.batch, t.num_key_value_heads, keys, hd]);
      this.b.output(p.v, `present.${i}.value`, 'float', [DIMS.batch, t.num_key_value_heads, keys, hd]);
    });
    if (o.attentions) attentions.forEach((a, i) => this.b.output(a, `attentions.${i}`, 'float', [DIMS.batch, t.num_attention_heads, queries, keys]));
  }
}

/**
 * cos and sin of the rotary angles (ropeAngles, as the model computes them), laid out for `heads` heads of size hd:
 * [max_positions, heads*hd], column h*hd + j holding frequency i = j mod hd/2 (both halves of a head share it).
 */
function ropeTable(maxPos: number, hd: number, theta: number, heads: number): { cos: Float32Array; sin: Float32Array } {
  const half = hd / 2;
  const W = heads * hd;
  const angles = ropeAngles(maxPos, hd, theta); // [maxPos, hd/2], the model's own values
  const cos = new Float32Array(maxPos * W);
  const sin = new Float32Array(maxPos * W);
  for (let p = 0; p < maxPos; p++) {
    for (let i = 0; i < half; i++) {
      for (let h = 0; h < heads; h++) {
        for (const j of [i, i + half]) {
          cos[p * W + h * hd + j] = angles.cos[p * half + i];
          sin[p * W + h * hd + j] = angles.sin[p * half + i];
        }
      }
    }
  }
  return { cos, sin };
}

/**
 * The columns of rotate_half applied to a projection's output: for each head, [x1, x2] -> [-x2, x1], so
 * (x W) rotated = x (W with its columns permuted and half of them negated). w: [in, heads*hd] row-major.
 */
function rotateHalfColumns(w: Float32Array, rows: number, heads: number, hd: number): Float32Array {
  const cols = heads * hd;
  const half = hd / 2;
  const out = new Float32Array(w.length);
  for (let r = 0; r < rows; r++) {
    for (let h = 0; h < heads; h++) {
      for (let j = 0; j < half; j++) {
        out[r * cols + h * hd + j] = -w[r * cols + h * hd + j + half];
        out[r * cols + h * hd + j + half] = w[r * cols + h * hd + j];
      }
    }
  }
  return out;
}

/** The prefill graph: images + prompt ids -> logits and the KV cache. */
export function prefillGraph(model: VlaModel, store: WeightStore, o: GraphOptions = {}): ModelProto {
  const g = new VlaGraph(model, 'prefill', store, o);
  const b = g.b;
  const cfg = model.config;
  const S = cfg.vision_config.image_size;
  const pixels = b.input('pixel_values', 'float', [DIMS.batch, cfg.num_cameras, S, S, 3]);
  const ids = b.input('input_ids', 'int64', [DIMS.batch, DIMS.seq]);
  const text = b.o('Gather', [g.w('model.embed_tokens.weight'), ids], { axis: 0 }); // [B, T, D]
  const image = g.encodeImages(pixels); // [B, Ni, D]
  const x = b.o('Concat', [image, text], { axis: 1 }); // [B, Ni + T, D]
  const { h, present, attentions = [] } = o.fused ? g.fusedDecoder(x) : g.decoder(x, b.ints([0], true), o);
  const Ni = model.numImageTokens;
  const textH = b.o('Slice', [h, b.ints([Ni]), b.ints([INT64_MAX]), b.ints([1])]); // [B, T, D]
  const total = `${DIMS.seq} + ${Ni}`;
  g.outputs(g.head(textH), present, attentions, total, total, o);
  return b.model('vlakit VLA prefill: images and prompt ids to logits and the KV cache', { vlakit_graph: 'prefill', num_image_tokens: String(Ni) });
}

/** The decode step: new ids + the past KV cache -> logits and the extended cache. */
export function decodeGraph(model: VlaModel, store: WeightStore, o: GraphOptions = {}): ModelProto {
  const g = new VlaGraph(model, 'decode', store, o);
  const b = g.b;
  const t = model.config.text_config;
  const hd = t.hidden_size / t.num_attention_heads;
  const ids = b.input('input_ids', 'int64', [DIMS.batch, DIMS.seq]);
  const pastKv: { k: string; v: string }[] = [];
  for (let i = 0; i < t.num_hidden_layers; i++) {
    pastKv.push({
      k: b.input(`past_key_values.${i}.key`, 'float', [DIMS.batch, t.num_key_value_heads, DIMS.past, hd]),
      v: b.input(`past_key_values.${i}.value`, 'float', [DIMS.batch, t.num_key_value_heads, DIMS.past, hd]),
    });
  }
  const text = b.o('Gather', [g.w('model.embed_tokens.weight'), ids], { axis: 0 }); // [B, T, D]
  let out: { h: string; present: KvNames[]; fresh: KvNames[]; attentions?: string[] };
  if (o.fused) {
    out = g.fusedDecoder(text, { past: pastKv, mask: b.input('attention_mask', 'int64', [DIMS.batch, DIMS.total]) });
    g.outputs(g.head(out.h), out.present, [], DIMS.seq, PRESENT_DIM, o);
  } else {
    out = g.decoder(text, g.dim(pastKv[0].k, 2), o, pastKv);
    g.outputs(g.head(out.h), out.present, out.attentions ?? [], DIMS.seq, `${DIMS.past} + ${DIMS.seq}`, o);
  }
  // this step's keys/values alone: a runner that keeps its own cache appends them instead of copying present.*
  out.fresh.forEach((f, i) => {
    b.output(f.k, `new_key_values.${i}.key`, 'float', [DIMS.batch, t.num_key_value_heads, DIMS.seq, hd]);
    b.output(f.v, `new_key_values.${i}.value`, 'float', [DIMS.batch, t.num_key_value_heads, DIMS.seq, hd]);
  });
  return b.model('vlakit VLA decode step: new ids and the past KV cache to logits and the extended cache', { vlakit_graph: 'decode' });
}
