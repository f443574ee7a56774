/**
 * The VLA model as two ONNX graphs over one set of weights, mirroring src/lib/model/model.ts op for op:
 * - prefill: pixel_values [B, C, S, S, 3] + input_ids [B, T] -> logits [B, T, V] of the text positions and
 *   present.{i}.key/value [B, KV, Ni + T, hd] (image tokens first);
 * - decode: input_ids [B, T] + past_key_values.{i}.key/value [B, KV, P, hd] -> logits [B, T, V] and
 *   present.{i}.key/value [B, KV, P + T, hd], positions continuing after the past.
 * With `attentions`, both also return attentions.{i} [B, H, T(q), keys] per decoder layer.
 */
import type { VlaModel } from '../model/model.js';
import { patchesPerImage } from '../model/config.js';
import { type Dim, GraphBuilder, type ModelProto, type WeightStore } from './onnx.js';

export interface GraphOptions {
  attentions?: boolean;
}

const INT64_MAX = Number.MAX_SAFE_INTEGER;

/** Symbolic dimension names, as the Hugging Face / Optimum exports use them. */
export const DIMS = { batch: 'batch_size', seq: 'sequence_length', past: 'past_sequence_length' } as const;

class VlaGraph {
  readonly b: GraphBuilder;
  private readonly cfg;

  constructor(private readonly model: VlaModel, name: string, store: WeightStore) {
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
    const y = this.b.o('MatMul', [x, this.w(`${name}.weight`)]);
    return this.has(`${name}.bias`) ? this.b.o('Add', [y, this.w(`${name}.bias`)]) : y;
  }

  rmsNorm(x: string, weight: string, eps: number): string {
    const b = this.b;
    const ms = b.o('ReduceMean', [b.o('Mul', [x, x])], { axes: [-1], keepdims: 1 }); // [.., 1]
    const inv = b.o('Reciprocal', [b.o('Sqrt', [b.o('Add', [ms, b.floats([eps])])])]);
    return b.o('Mul', [b.o('Mul', [x, inv]), this.w(weight)]);
  }

  layerNorm(x: string, prefix: string, eps: number): string {
    return this.b.o('LayerNormalization', [x, this.w(`${prefix}.weight`), this.w(`${prefix}.bias`)], { axis: -1, epsilon: { float: eps } });
  }

  /** GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
  gelu(x: string): string {
    const b = this.b;
    const x3 = b.o('Mul', [x, b.o('Mul', [x, x])]);
    const inner = b.o('Mul', [b.o('Add', [x, b.o('Mul', [x3, b.floats([0.044715])])]), b.floats([Math.sqrt(2 / Math.PI)])]);
    return b.o('Mul', [b.o('Mul', [x, b.floats([0.5])]), b.o('Add', [b.floats([1]), b.o('Tanh', [inner])])]);
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

  /** [B, KV, T, hd] -> [B, KV*n, T, hd], head kv*n + j a copy of kv head kv. */
  repeatKv(x: string, n: number, heads: number, hd: number): string {
    if (n === 1) return x;
    const b = this.b;
    const e = b.o('Expand', [b.o('Unsqueeze', [x, b.ints([2])]), b.ints([1, 1, n, 1, 1])]); // [B, KV, 1, T, hd] -> [B, KV, n, T, hd]
    return b.o('Reshape', [e, b.ints([0, heads, -1, hd])]); // -> [B, KV*n, T, hd]
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

  /** A scalar int64: dimension `axis` of `x`. */
  dim(x: string, axis: number): string {
    return this.b.o('Gather', [this.b.o('Shape', [x]), this.b.ints([axis], true)], { axis: 0 });
  }

  /**
   * The decoder over embeddings x [B, N, D] at positions [past, past + N): returns the final hidden states, the
   * present keys/values per layer and the attention weights per layer.
   */
  decoder(x: string, past: string, pastKv?: { k: string; v: string }[]): { h: string; present: { k: string; v: string }[]; attentions: string[] } {
    const b = this.b;
    const t = this.cfg.text_config;
    const H = t.num_attention_heads;
    const KV = t.num_key_value_heads;
    const hd = t.hidden_size / H;
    const N = this.dim(x, 1);
    const total = b.o('Add', [past, N]);
    const one = b.ints([1], true);
    // rotary tables for positions [past, past + N): rows of precomputed [max_positions, hd/2] tables
    const positions = b.o('Range', [past, total, one]); // [N]
    const { cos, sin } = ropeTable(t.max_position_embeddings, hd, t.rope_theta);
    const cosN = b.o('Unsqueeze', [b.o('Gather', [b.weight('rope.cos', cos, [t.max_position_embeddings, hd / 2]), positions], { axis: 0 }), b.ints([0, 1])]); // [1, 1, N, hd/2]
    const sinN = b.o('Unsqueeze', [b.o('Gather', [b.weight('rope.sin', sin, [t.max_position_embeddings, hd / 2]), positions], { axis: 0 }), b.ints([0, 1])]);
    // causal mask [N, past + N]: key j is hidden from query i when j > past + i
    const keys = b.o('Unsqueeze', [b.o('Range', [b.ints([0], true), total, one]), b.ints([0])]); // [1, past + N]
    const queries = b.o('Unsqueeze', [positions, b.ints([1])]); // [N, 1]
    const mask = b.o('Where', [b.o('Greater', [keys, queries]), b.floats([-1e9]), b.floats([0])]); // [N, past + N]
    const rope = (q: string) => {
      const [x1, x2] = b.op('Split', [q, b.ints([hd / 2, hd / 2])], { axis: 3 }, 2); // [B, h, N, hd/2] each
      const lo = b.o('Sub', [b.o('Mul', [x1, cosN]), b.o('Mul', [x2, sinN])]);
      const hi = b.o('Add', [b.o('Mul', [x2, cosN]), b.o('Mul', [x1, sinN])]);
      return b.o('Concat', [lo, hi], { axis: 3 });
    };
    const present: { k: string; v: string }[] = [];
    const attentions: string[] = [];
    for (let i = 0; i < t.num_hidden_layers; i++) {
      const n = `model.layers.${i}`;
      const h = this.rmsNorm(x, `${n}.input_layernorm.weight`, t.rms_norm_eps);
      const q = rope(this.splitHeads(this.linear(`${n}.self_attn.q_proj`, h), H, hd)); // [B, H, N, hd]
      let k = rope(this.splitHeads(this.linear(`${n}.self_attn.k_proj`, h), KV, hd)); // [B, KV, N, hd]
      let v = this.splitHeads(this.linear(`${n}.self_attn.v_proj`, h), KV, hd);
      if (pastKv) {
        k = b.o('Concat', [pastKv[i].k, k], { axis: 2 }); // [B, KV, past + N, hd]
        v = b.o('Concat', [pastKv[i].v, v], { axis: 2 });
      }
      present.push({ k, v });
      const { out, weights } = this.attention(q, this.repeatKv(k, H / KV, H, hd), this.repeatKv(v, H / KV, H, hd), hd, mask);
      attentions.push(weights);
      x = b.o('Add', [x, this.linear(`${n}.self_attn.o_proj`, this.mergeHeads(out, t.hidden_size))]);
      const h2 = this.rmsNorm(x, `${n}.post_attention_layernorm.weight`, t.rms_norm_eps);
      const gate = this.linear(`${n}.mlp.gate_proj`, h2);
      const up = this.linear(`${n}.mlp.up_proj`, h2);
      x = b.o('Add', [x, this.linear(`${n}.mlp.down_proj`, b.o('Mul', [b.o('Mul', [gate, b.o('Sigmoid', [gate])]), up]))]); // SwiGLU
    }
    return { h: this.rmsNorm(x, 'model.norm.weight', t.rms_norm_eps), present, attentions };
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

/** cos and sin of position p x theta^(-2i/hd): [max_positions, hd/2] each, as ropeTables computes them. */
function ropeTable(maxPos: number, hd: number, theta: number): { cos: Float32Array; sin: Float32Array } {
  const half = hd / 2;
  const cos = new Float32Array(maxPos * half);
  const sin = new Float32Array(maxPos * half);
  for (let p = 0; p < maxPos; p++) {
    for (let i = 0; i < half; i++) {
      const a = p / theta ** ((2 * i) / hd);
      cos[p * half + i] = Math.cos(a);
      sin[p * half + i] = Math.sin(a);
    }
  }
  return { cos, sin };
}

/** The prefill graph: images + prompt ids -> logits and the KV cache. */
export function prefillGraph(model: VlaModel, store: WeightStore, o: GraphOptions = {}): ModelProto {
  const g = new VlaGraph(model, 'prefill', store);
  const b = g.b;
  const cfg = model.config;
  const S = cfg.vision_config.image_size;
  const pixels = b.input('pixel_values', 'float', [DIMS.batch, cfg.num_cameras, S, S, 3]);
  const ids = b.input('input_ids', 'int64', [DIMS.batch, DIMS.seq]);
  const text = b.o('Gather', [g.w('model.embed_tokens.weight'), ids], { axis: 0 }); // [B, T, D]
  const image = g.encodeImages(pixels); // [B, Ni, D]
  const x = b.o('Concat', [image, text], { axis: 1 }); // [B, Ni + T, D]
  const { h, present, attentions } = g.decoder(x, b.ints([0], true));
  const Ni = model.numImageTokens;
  const textH = b.o('Slice', [h, b.ints([Ni]), b.ints([INT64_MAX]), b.ints([1])]); // [B, T, D]
  const total = `${DIMS.seq} + ${Ni}`;
  g.outputs(g.head(textH), present, attentions, total, total, o);
  return b.model('vlakit VLA prefill: images and prompt ids to logits and the KV cache', { vlakit_graph: 'prefill', num_image_tokens: String(Ni) });
}

/** The decode step: new ids + the past KV cache -> logits and the extended cache. */
export function decodeGraph(model: VlaModel, store: WeightStore, o: GraphOptions = {}): ModelProto {
  const g = new VlaGraph(model, 'decode', store);
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
  const { h, present, attentions } = g.decoder(text, g.dim(pastKv[0].k, 2), pastKv);
  const total = `${DIMS.past} + ${DIMS.seq}`;
  g.outputs(g.head(h), present, attentions, DIMS.seq, total, o);
  return b.model('vlakit VLA decode step: new ids and the past KV cache to logits and the extended cache', { vlakit_graph: 'decode' });
}
