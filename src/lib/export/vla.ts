/**
 * The ONNX graphs of vlakit's built-in VLA, derived from its one definition (model/arch/vlakit-vla.ts) through the
 * ONNX backend of `Ops`:
 * - prefill: pixel_values [B, C, S, S, 3] + input_ids [B, T] -> logits [B, T, V] of the text positions and
 *   present.{i}.key/value [B, KV, Ni + T, hd] (image tokens first);
 * - decode: input_ids [B, T] + past_key_values.{i}.key/value [B, KV, P, hd] -> logits [B, T, V],
 *   new_key_values.{i}.* [B, KV, T, hd] (the new positions alone) and present.{i}.key/value: standard operators
 *   [B, KV, P + T, hd]; fused operators also take attention_mask [B, total] (all ones; total = the filled past + T),
 *   the past may be a longer preallocated buffer (P >= total - T), and present is [B, KV, max(P, total), hd].
 * With `attentions`, both also return attentions.{i} [B, H, T(q), keys] per decoder layer. With `quantize: 'int8'`
 * every linear weight is int8 (dynamic quantization; 7-bit weights unless `weightRange: 'full'`).
 */
import type { VlaConfig } from '../model/config.js';
import { OnnxOps, type OnnxOpsOptions } from '../model/arch/onnx-ops.js';
import { vlakitVla } from '../model/arch/registry.js';
import { vlaImageTokens } from '../model/arch/vlakit-vla.js';
import type { NamedArray } from '../model/safetensors.js';
import { type Dim, GraphBuilder, type ModelProto, type WeightStore } from './onnx.js';
import type { WeightRange } from './quantize.js';

export interface GraphOptions {
  attentions?: boolean;
  /**
   * Use onnxruntime's fused operators (com.microsoft GroupQueryAttention with rotary embedding, RMSNorm kernels):
   * far fewer nodes per layer; graphs then need onnxruntime. Not with attentions (the fused attention does not
   * return its weights).
   */
  fused?: boolean;
  /**
   * int8: the weights of every linear layer as int8 with a scale per output column, the activations quantized at
   * run time (DynamicQuantizeLinear, MatMulInteger: standard operators that onnxruntime fuses into
   * DynamicQuantizeMatMul); embeddings, norms and the output head stay float32.
   */
  quantize?: 'int8';
  /** With int8: the weight range, 7-bit (the default, correct on every CPU) or full (see quantize.ts). */
  weightRange?: WeightRange;
}

/** Symbolic dimension names, as the Hugging Face / Optimum exports use them. */
export const DIMS = { batch: 'batch_size', seq: 'sequence_length', past: 'past_sequence_length', total: 'total_sequence_length' } as const;

/**
 * The length of present.* in a fused decode step: the past buffer's when it has room for the new positions (a
 * preallocated cache), else past + new.
 */
export const PRESENT_DIM = `max(${DIMS.past}, ${DIMS.total})`;

/** A model's weights as the export reads them: vlakit's names, linear weights [in, out]. */
export type VlaWeights = Map<string, NamedArray>;

/** One graph of the built-in model: the prefill (images + prompt) or a decode step (new ids + the past). */
export function vlaGraph(config: VlaConfig, weights: VlaWeights, kind: 'prefill' | 'decode', store: WeightStore, o: GraphOptions = {}): ModelProto {
  const b = new GraphBuilder(kind, store);
  const layout = vlakitVla.cache(config);
  const { kvHeads: KV, headDim: hd } = layout;
  const S = config.vision_config.image_size;
  const pixels = kind === 'prefill' ? b.input('pixel_values', 'float', [DIMS.batch, config.num_cameras, S, S, 3]) : undefined;
  const ids = b.input('input_ids', 'int64', [DIMS.batch, DIMS.seq]);
  const past = kind === 'decode' ? Array.from({ length: layout.layers }, (_, i) => ({ k: b.input(`past_key_values.${i}.key`, 'float', [DIMS.batch, KV, DIMS.past, hd]), v: b.input(`past_key_values.${i}.value`, 'float', [DIMS.batch, KV, DIMS.past, hd]) })) : undefined;
  const mask = kind === 'decode' && o.fused ? b.input('attention_mask', 'int64', [DIMS.batch, DIMS.total]) : undefined;
  const options: OnnxOpsOptions = { maxPositions: vlakitVla.maxPositions(config), linearLayout: vlakitVla.linearLayout, fused: o.fused, attentions: o.attentions, quantize: o.quantize, weightRange: o.weightRange };
  const ops = new OnnxOps(b, weights, { past, mask, present: [] }, options);
  const logits = vlakitVla.forward(ops, config, ids, pixels); // [B, T, V]
  const Ni = vlaImageTokens(config);
  const keys: Dim = kind === 'prefill' ? `${DIMS.seq} + ${Ni}` : o.fused ? PRESENT_DIM : `${DIMS.past} + ${DIMS.seq}`;
  const queries: Dim = kind === 'prefill' ? keys : DIMS.seq;
  b.output(logits, 'logits', 'float', [DIMS.batch, DIMS.seq, config.text_config.vocab_size]);
  ops.cache.present.forEach((p, i) => {
    b.output(p.k, `present.${i}.key`, 'float', [DIMS.batch, KV, keys, hd]);
    b.output(p.v, `present.${i}.value`, 'float', [DIMS.batch, KV, keys, hd]);
  });
  if (o.attentions) ops.cache.attentions?.forEach((a, i) => b.output(a, `attentions.${i}`, 'float', [DIMS.batch, config.text_config.num_attention_heads, queries, keys]));
  // a decode step's keys/values alone: a runner that keeps its own cache appends them instead of copying present.*
  if (kind === 'decode') {
    ops.cache.fresh?.forEach((f, i) => {
      b.output(f.k, `new_key_values.${i}.key`, 'float', [DIMS.batch, KV, DIMS.seq, hd]);
      b.output(f.v, `new_key_values.${i}.value`, 'float', [DIMS.batch, KV, DIMS.seq, hd]);
    });
    return b.model('vlakit VLA decode step: new ids and the past KV cache to logits and the extended cache', { vlakit_graph: 'decode' });
  }
  return b.model('vlakit VLA prefill: images and prompt ids to logits and the KV cache', { vlakit_graph: 'prefill', num_image_tokens: String(Ni) });
}
