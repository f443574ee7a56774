/**
 * The Gemma text decoders, written once over `Ops`: Gemma 3 (Gemma3ForCausalLM, `gemma3_text`, and the text model
 * of Gemma3ForConditionalGeneration) and Gemma 2 (the text model of PaliGemma 2). Both have Gemma's RMSNorm
 * (x / rms(x) * (1 + w)), four norms per layer (input, post-attention, pre- and post-feedforward), a GeGLU MLP
 * (tanh-GELU gate), scores scaled by query_pre_attn_scalar^-0.5, sliding-window and full layers (layer_types, or
 * the families' defaults), a final norm and an output head tied to the embeddings unless configured otherwise.
 * Gemma 3 adds per-head RMSNorms of q and k (q_norm, k_norm) and a separate rotary base for sliding layers
 * (rope_local_base_freq; a "linear" rope_scaling applies to full layers only); Gemma 2 soft-caps attention scores
 * and logits (attn_logit_softcapping, final_logit_softcapping). As in transformers (checked against 5.17 itself):
 * Gemma 3's attention ignores attn_logit_softcapping, and PaliGemma's head does not soft-cap its logits.
 */
import { z } from 'zod';
import { VlakitError } from '../../errors.js';
import { type ImageFeatures, isFeatures, type Ops, type TensorSpec } from './ops.js';
import { type SiglipVisionConfig, siglipGrid, siglipTensors, siglipVision } from './siglip.js';

const RopeScalingSchema = z.looseObject({ rope_type: z.string().optional(), type: z.string().optional(), factor: z.number().positive().optional(), rope_theta: z.number().positive().optional() }).nullish();

export const GemmaTextSchema = z.looseObject({
  model_type: z.enum(['gemma3_text', 'gemma2']),
  vocab_size: z.number().int().positive().optional(),
  hidden_size: z.number().int().positive().default(2304),
  intermediate_size: z.number().int().positive().default(9216),
  num_hidden_layers: z.number().int().positive().default(26),
  num_attention_heads: z.number().int().positive().default(8),
  num_key_value_heads: z.number().int().positive().default(4),
  head_dim: z.number().int().positive().default(256),
  hidden_activation: z.enum(['gelu_pytorch_tanh', 'gelu']).nullish(),
  max_position_embeddings: z.number().int().positive().optional(),
  rms_norm_eps: z.number().positive().default(1e-6),
  rope_theta: z.number().positive().optional(),
  rope_local_base_freq: z.number().positive().default(10000),
  rope_scaling: RopeScalingSchema,
  /** transformers 5's per-layer-type rotary parameters (or one set for all layers). */
  rope_parameters: z.record(z.string(), z.unknown()).nullish(),
  attention_bias: z.boolean().default(false),
  query_pre_attn_scalar: z.number().positive().default(256),
  sliding_window: z.number().int().positive().optional(),
  sliding_window_pattern: z.number().int().positive().default(6),
  layer_types: z.array(z.enum(['sliding_attention', 'full_attention'])).optional(),
  final_logit_softcapping: z.number().positive().nullish(),
  attn_logit_softcapping: z.number().positive().nullish(),
  tie_word_embeddings: z.boolean().default(true),
  initializer_range: z.number().positive().default(0.02),
  bos_token_id: z.number().int().nullish(),
  eos_token_id: z.union([z.number().int(), z.array(z.number().int())]).nullish(),
});

/** A Gemma 2 or 3 text config with every default of its family filled in and the layer plan resolved. */
export interface GemmaTextConfig {
  family: 'gemma2' | 'gemma3';
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  head_dim: number;
  act: 'none' | 'tanh';
  max_position_embeddings: number;
  rms_norm_eps: number;
  attention_bias: boolean;
  query_pre_attn_scalar: number;
  sliding_window: number;
  /** Per layer: sliding-window or full attention. */
  layer_types: ('sliding_attention' | 'full_attention')[];
  /** Rotary base and linear factor per layer type. */
  rope: Record<'sliding_attention' | 'full_attention', { theta: number; factor?: number }>;
  final_logit_softcapping?: number;
  attn_logit_softcapping?: number;
  tie_word_embeddings: boolean;
  initializer_range: number;
  bos_token_id?: number;
  eos_token_id: number[];
}

/** A rope_scaling / rope_parameters entry -> { theta, factor }: only "default" and "linear" are supported. */
function ropeOf(raw: unknown, theta: number, file: string | undefined, field: string): { theta: number; factor?: number } {
  if (raw === null || raw === undefined) return { theta };
  const r = raw as { rope_type?: string; type?: string; factor?: number; rope_theta?: number };
  const kind = r.rope_type ?? r.type ?? 'default';
  const t = r.rope_theta ?? theta;
  if (kind === 'default') return { theta: t };
  if (kind === 'linear' && r.factor) return { theta: t, factor: r.factor };
  throw new VlakitError('E_MODEL', `rope type ${JSON.stringify(kind)} is not supported (default and linear are)`, { file, field });
}

/** Resolves a parsed text config (defaults per family, layer types, rotary parameters). */
export function gemmaText(t: z.infer<typeof GemmaTextSchema>, file?: string, field = 'text_config'): GemmaTextConfig {
  const f = (name: string) => (field ? `${field}.${name}` : name);
  const g3 = t.model_type === 'gemma3_text';
  const L = t.num_hidden_layers;
  const layer_types = t.layer_types ?? Array.from({ length: L }, (_, i) => (g3 ? ((i + 1) % t.sliding_window_pattern ? 'sliding_attention' : 'full_attention') : i % 2 ? 'full_attention' : 'sliding_attention'));
  if (layer_types.length !== L) throw new VlakitError('E_MODEL', `invalid model config: layer_types has ${layer_types.length} entries for ${L} layers`, { file, field: f('layer_types') });
  const globalTheta = t.rope_theta ?? (g3 ? 1_000_000 : 10_000);
  let rope: GemmaTextConfig['rope'];
  const p = t.rope_parameters;
  if (p && ('full_attention' in p || 'sliding_attention' in p)) {
    rope = { full_attention: ropeOf(p.full_attention, globalTheta, file, f('rope_parameters')), sliding_attention: ropeOf(p.sliding_attention, t.rope_local_base_freq, file, f('rope_parameters')) };
  } else if (p) {
    const one = ropeOf(p, globalTheta, file, f('rope_parameters'));
    rope = { full_attention: one, sliding_attention: g3 ? { theta: t.rope_local_base_freq } : one };
  } else {
    const full = ropeOf(t.rope_scaling, globalTheta, file, f('rope_scaling'));
    // Gemma 3's sliding layers have their own base and no scaling; Gemma 2's layers share one rotary embedding
    rope = { full_attention: full, sliding_attention: g3 ? { theta: t.rope_local_base_freq } : full };
  }
  const H = t.num_attention_heads;
  const KV = t.num_key_value_heads;
  if (H % KV) throw new VlakitError('E_MODEL', `num_attention_heads ${H} is not a multiple of num_key_value_heads ${KV}`, { file, field: f('num_key_value_heads') });
  const eos = t.eos_token_id ?? 1;
  return {
    family: g3 ? 'gemma3' : 'gemma2',
    vocab_size: t.vocab_size ?? (g3 ? 262_208 : 256_000),
    hidden_size: t.hidden_size,
    intermediate_size: t.intermediate_size,
    num_hidden_layers: L,
    num_attention_heads: H,
    num_key_value_heads: KV,
    head_dim: t.head_dim,
    act: t.hidden_activation === 'gelu' ? 'none' : 'tanh',
    max_position_embeddings: t.max_position_embeddings ?? (g3 ? 131_072 : 8192),
    rms_norm_eps: t.rms_norm_eps,
    attention_bias: t.attention_bias,
    query_pre_attn_scalar: t.query_pre_attn_scalar,
    sliding_window: t.sliding_window ?? 4096,
    layer_types,
    rope,
    final_logit_softcapping: t.final_logit_softcapping ?? (g3 || 'final_logit_softcapping' in t ? undefined : 30),
    // Gemma3Attention passes no softcap to its attention (transformers 5.17), whatever the config says
    attn_logit_softcapping: g3 ? undefined : (t.attn_logit_softcapping ?? ('attn_logit_softcapping' in t ? undefined : 50)),
    tie_word_embeddings: t.tie_word_embeddings,
    initializer_range: t.initializer_range,
    bos_token_id: t.bos_token_id ?? 2,
    eos_token_id: Array.isArray(eos) ? eos : [eos],
  };
}

/** The decoder's tensors under `prefix` (`model` for Gemma3ForCausalLM, `language_model.model` in a VLM). */
export function gemmaTextTensors(c: GemmaTextConfig, prefix: string): TensorSpec[] {
  const D = c.hidden_size;
  const I = c.intermediate_size;
  const { num_attention_heads: H, num_key_value_heads: KV, head_dim: hd } = c;
  // Gemma's norm weights are stored around 0 (the model multiplies by 1 + w): transformers initializes them to 0
  const out: TensorSpec[] = [{ name: `${prefix}.embed_tokens.weight`, shape: [c.vocab_size, D], init: 'normal' }];
  const lin = (name: string, o: number, i: number, bias: boolean) => {
    out.push({ name: `${name}.weight`, shape: [o, i], init: 'normal' });
    if (bias) out.push({ name: `${name}.bias`, shape: [o], init: 'zeros' });
  };
  for (let i = 0; i < c.num_hidden_layers; i++) {
    const n = `${prefix}.layers.${i}`;
    for (const norm of ['input_layernorm', 'post_attention_layernorm', 'pre_feedforward_layernorm', 'post_feedforward_layernorm']) out.push({ name: `${n}.${norm}.weight`, shape: [D], init: 'zeros' });
    lin(`${n}.self_attn.q_proj`, H * hd, D, c.attention_bias);
    lin(`${n}.self_attn.k_proj`, KV * hd, D, c.attention_bias);
    lin(`${n}.self_attn.v_proj`, KV * hd, D, c.attention_bias);
    lin(`${n}.self_attn.o_proj`, D, H * hd, c.attention_bias);
    if (c.family === 'gemma3') out.push({ name: `${n}.self_attn.q_norm.weight`, shape: [hd], init: 'zeros' }, { name: `${n}.self_attn.k_norm.weight`, shape: [hd], init: 'zeros' });
    lin(`${n}.mlp.gate_proj`, I, D, false);
    lin(`${n}.mlp.up_proj`, I, D, false);
    lin(`${n}.mlp.down_proj`, D, I, false);
  }
  out.push({ name: `${prefix}.norm.weight`, shape: [D], init: 'zeros' });
  return out;
}

/** Scaled token embeddings: ids [B, T] -> [B, T, D] * sqrt(hidden_size) (in float32, as a float32 model does). */
export function gemmaEmbed<T>(ops: Ops<T>, c: GemmaTextConfig, ids: T, prefix: string): T {
  return ops.scale(ops.embed(`${prefix}.embed_tokens.weight`, ids), Math.sqrt(c.hidden_size));
}

/**
 * The decoder over input embeddings x [B, T, D] (already scaled) -> final hidden states [B, T, D]. `blocks` makes
 * runs of an image token bidirectional (Gemma 3's images).
 */
export function gemmaDecoder<T>(ops: Ops<T>, c: GemmaTextConfig, x: T, prefix: string, blocks?: { ids: T; tokenId: number }, prefixLm?: T): T {
  const { num_attention_heads: H, num_key_value_heads: KV, head_dim: hd } = c;
  const eps = c.rms_norm_eps;
  const norm = (h: T, name: string) => ops.rmsNorm(h, name, eps, 1);
  for (let i = 0; i < c.num_hidden_layers; i++) {
    const n = `${prefix}.layers.${i}`;
    const kind = c.layer_types[i];
    const input = x;
    // one block: the backend may free the layer's temporaries after it
    x = ops.block(() => {
      const h = norm(input, `${n}.input_layernorm.weight`);
      let q = ops.linear(h, `${n}.self_attn.q_proj`); // [B, T, H*hd]
      let k = ops.linear(h, `${n}.self_attn.k_proj`); // [B, T, KV*hd]
      const v = ops.linear(h, `${n}.self_attn.v_proj`);
      if (c.family === 'gemma3') {
        // per-head RMSNorm over hd: [B, T, H*hd] -> [B, T, H, hd] -> norm -> [B, T, H*hd]
        q = ops.reshape(norm(ops.reshape(q, [0, 0, H, hd]), `${n}.self_attn.q_norm.weight`), [0, 0, H * hd]);
        k = ops.reshape(norm(ops.reshape(k, [0, 0, KV, hd]), `${n}.self_attn.k_norm.weight`), [0, 0, KV * hd]);
      }
      const a = ops.attention(q, k, v, {
        layer: i,
        heads: H,
        kvHeads: KV,
        headDim: hd,
        causal: true,
        rope: c.rope[kind],
        scale: c.query_pre_attn_scalar ** -0.5,
        window: kind === 'sliding_attention' ? c.sliding_window : undefined,
        softcap: c.attn_logit_softcapping,
        blocks,
        prefix: prefixLm,
      });
      const y = ops.add(input, norm(ops.linear(a, `${n}.self_attn.o_proj`), `${n}.post_attention_layernorm.weight`));
      const h2 = norm(y, `${n}.pre_feedforward_layernorm.weight`);
      const mlp = ops.mul(ops.gelu(ops.linear(h2, `${n}.mlp.gate_proj`), c.act), ops.linear(h2, `${n}.mlp.up_proj`)); // GeGLU
      return ops.add(y, norm(ops.linear(mlp, `${n}.mlp.down_proj`), `${n}.post_feedforward_layernorm.weight`));
    });
  }
  return norm(x, `${prefix}.norm.weight`);
}

/** Hidden states -> logits through `head` [V, D], soft-capped when the config says so. */
export function gemmaLogits<T>(ops: Ops<T>, c: GemmaTextConfig, h: T, head: string): T {
  const logits = ops.head(h, head); // [B, T, V]
  const cap = c.final_logit_softcapping;
  return cap === undefined ? logits : ops.scale(ops.tanh(ops.scale(logits, 1 / cap)), cap);
}

/** Gemma3ForCausalLM: ids [B, T] -> logits [B, T, V]. */
export function gemma3TextForward<T>(ops: Ops<T>, c: GemmaTextConfig, ids: T): T {
  const h = gemmaDecoder(ops, c, gemmaEmbed(ops, c, ids, 'model'), 'model');
  return gemmaLogits(ops, c, h, c.tie_word_embeddings ? 'model.embed_tokens.weight' : 'lm_head.weight');
}

/** Gemma3ForConditionalGeneration's config without its parts (parsed separately: see gemma3Config). */
export const Gemma3ConfigSchema = z.looseObject({
  model_type: z.literal('gemma3'),
  text_config: z.looseObject({}).default({}),
  vision_config: z.looseObject({}).default({}),
  mm_tokens_per_image: z.number().int().positive().default(256),
  image_token_index: z.number().int().nonnegative().optional(),
  image_token_id: z.number().int().nonnegative().optional(),
  boi_token_index: z.number().int().nonnegative().default(255_999),
  eoi_token_index: z.number().int().nonnegative().default(256_000),
  initializer_range: z.number().positive().default(0.02),
  eos_token_id: z.union([z.number().int(), z.array(z.number().int())]).nullish(),
  bos_token_id: z.number().int().nullish(),
});

export interface Gemma3Config {
  text: GemmaTextConfig;
  vision: SiglipVisionConfig;
  mm_tokens_per_image: number;
  image_token_id: number;
  boi_token_id: number;
  eoi_token_id: number;
  initializer_range: number;
}

/** Checkpoint prefixes as transformers saves Gemma 3 (the names of the published safetensors). */
export const GEMMA3_PREFIX = { text: 'language_model.model', head: 'language_model.lm_head.weight', vision: 'vision_tower.vision_model', projector: 'multi_modal_projector' } as const;

/** Resolves a gemma3 config: text (a gemma3_text config), vision (SigLIP) and the projector's pooling. */
export function gemma3Config(outer: z.infer<typeof Gemma3ConfigSchema>, vision: SiglipVisionConfig, file?: string): Gemma3Config {
  const text = gemmaText(GemmaTextSchema.parse({ ...outer.text_config, model_type: 'gemma3_text' }), file);
  if (outer.eos_token_id !== undefined && outer.eos_token_id !== null) text.eos_token_id = Array.isArray(outer.eos_token_id) ? outer.eos_token_id : [outer.eos_token_id];
  if (outer.bos_token_id !== undefined && outer.bos_token_id !== null) text.bos_token_id = outer.bos_token_id;
  const image_token_id = outer.image_token_index ?? outer.image_token_id ?? 262_144;
  const bad = (m: string, field: string) => new VlakitError('E_MODEL', `invalid model config: ${m}`, { file, field });
  const { side } = siglipGrid(vision);
  const perSide = Math.round(Math.sqrt(outer.mm_tokens_per_image));
  if (perSide * perSide !== outer.mm_tokens_per_image || side % perSide) throw bad(`mm_tokens_per_image ${outer.mm_tokens_per_image} is not a square whose side divides the ${side} patches per side`, 'mm_tokens_per_image');
  if (image_token_id >= text.vocab_size) throw bad(`image_token_index ${image_token_id} is outside the vocabulary (${text.vocab_size})`, 'image_token_index');
  return { text, vision, mm_tokens_per_image: outer.mm_tokens_per_image, image_token_id, boi_token_id: outer.boi_token_index, eoi_token_id: outer.eoi_token_index, initializer_range: outer.initializer_range };
}

export function gemma3Tensors(c: Gemma3Config): TensorSpec[] {
  const P = GEMMA3_PREFIX;
  return [
    ...siglipTensors(c.vision, P.vision),
    { name: `${P.projector}.mm_soft_emb_norm.weight`, shape: [c.vision.hidden_size], init: 'zeros' },
    // transformers zeroes this matrix at initialization; random here, so a random model's images reach its text
    { name: `${P.projector}.mm_input_projection_weight`, shape: [c.vision.hidden_size, c.text.hidden_size], init: 'normal' },
    ...gemmaTextTensors(c.text, P.text),
    ...(c.text.tie_word_embeddings ? [] : [{ name: P.head, shape: [c.text.vocab_size, c.text.hidden_size], init: 'normal' as const }]),
  ];
}

/**
 * Gemma3MultiModalProjector over the SigLIP tower: pixel_values [N, C, S, S] -> [N, mm_tokens_per_image, text
 * hidden]: the patch grid average-pooled to mm_tokens_per_image, Gemma-RMSNorm'ed (mm_soft_emb_norm, the vision
 * layer_norm_eps) and multiplied by mm_input_projection_weight [vision hidden, text hidden].
 */
export function gemma3Vision<T>(ops: Ops<T>, c: Gemma3Config, pixels: T): T {
  const P = GEMMA3_PREFIX;
  const D = c.vision.hidden_size;
  const { side } = siglipGrid(c.vision);
  const perSide = Math.round(Math.sqrt(c.mm_tokens_per_image));
  let x = siglipVision(ops, c.vision, pixels, P.vision); // [N, g*g, D]
  x = ops.reshape(ops.transpose(x, [0, 2, 1]), [-1, D, side, side]); // [N, D, g, g]
  x = ops.avgPool(x, side / perSide); // [N, D, t, t]
  x = ops.transpose(ops.reshape(x, [-1, D, perSide * perSide]), [0, 2, 1]); // [N, t*t, D]
  x = ops.rmsNorm(x, `${P.projector}.mm_soft_emb_norm.weight`, c.vision.layer_norm_eps, 1);
  return ops.matmul(x, `${P.projector}.mm_input_projection_weight`); // [N, t*t, text hidden]
}

/**
 * Gemma3ForConditionalGeneration: ids [B, T] (image_token_index where the images go) and pixel_values -> logits.
 * Image features replace the image tokens' (scaled) embeddings unscaled; the tokens of each image attend to each
 * other both ways inside the otherwise causal attention (transformers' token_type_ids mask, per image).
 */
export function gemma3Forward<T>(ops: Ops<T>, c: Gemma3Config, ids: T, image?: T | ImageFeatures<T>): T {
  const P = GEMMA3_PREFIX;
  let x = gemmaEmbed(ops, c.text, ids, P.text); // [B, T, D]
  if (image !== undefined) x = ops.mergeTokens(x, ids, isFeatures(image) ? image.features : gemma3Vision(ops, c, image), c.image_token_id);
  const h = gemmaDecoder(ops, c.text, x, P.text, { ids, tokenId: c.image_token_id });
  return gemmaLogits(ops, c.text, h, c.text.tie_word_embeddings ? `${P.text}.embed_tokens.weight` : P.head);
}

/** PaliGemmaForConditionalGeneration's config without its parts (PaliGemma 2: a Gemma 2 text model). */
export const PaliGemmaConfigSchema = z.looseObject({
  model_type: z.literal('paligemma'),
  text_config: z.looseObject({ model_type: z.string().optional() }).default({}),
  vision_config: z.looseObject({ projection_dim: z.number().int().positive().optional() }).default({}),
  image_token_index: z.number().int().nonnegative().optional(),
  image_token_id: z.number().int().nonnegative().optional(),
  projection_dim: z.number().int().positive().optional(),
  initializer_range: z.number().positive().optional(),
  eos_token_id: z.union([z.number().int(), z.array(z.number().int())]).nullish(),
  bos_token_id: z.number().int().nullish(),
});

export interface PaliGemmaConfig {
  text: GemmaTextConfig;
  vision: SiglipVisionConfig;
  /** Image tokens per image: the SigLIP patches. */
  tokensPerImage: number;
  image_token_id: number;
  initializer_range: number;
}

/** Checkpoint prefixes as the published PaliGemma 2 safetensors name them. */
export const PALIGEMMA_PREFIX = { text: 'language_model.model', head: 'language_model.lm_head.weight', vision: 'vision_tower.vision_model', projector: 'multi_modal_projector.linear' } as const;

/** Resolves a paligemma config: a Gemma 2 text model, SigLIP, the linear projector to the text width. */
export function paliGemmaConfig(outer: z.infer<typeof PaliGemmaConfigSchema>, vision: SiglipVisionConfig, file?: string): PaliGemmaConfig {
  const bad = (m: string, field: string) => new VlakitError('E_MODEL', `invalid model config: ${m}`, { file, field });
  const tt = outer.text_config.model_type;
  if (tt !== undefined && tt !== 'gemma2') throw bad(`text_config.model_type ${JSON.stringify(tt)}: vlakit runs PaliGemma 2 (a gemma2 text model), not PaliGemma 1's gemma`, 'text_config.model_type');
  const text = gemmaText(GemmaTextSchema.parse({ ...outer.text_config, model_type: 'gemma2' }), file);
  if (outer.eos_token_id !== undefined && outer.eos_token_id !== null) text.eos_token_id = Array.isArray(outer.eos_token_id) ? outer.eos_token_id : [outer.eos_token_id];
  if (outer.bos_token_id !== undefined && outer.bos_token_id !== null) text.bos_token_id = outer.bos_token_id;
  // PaliGemmaForConditionalGeneration's head gives plain logits: the text config's final_logit_softcapping is unused (transformers 5.17)
  text.final_logit_softcapping = undefined;
  const proj = outer.vision_config.projection_dim ?? outer.projection_dim ?? text.hidden_size;
  if (proj !== text.hidden_size) throw bad(`the projector's projection_dim ${proj} is not the text hidden_size ${text.hidden_size}`, 'vision_config.projection_dim');
  const image_token_id = outer.image_token_index ?? outer.image_token_id ?? 256_000;
  if (image_token_id >= text.vocab_size) throw bad(`image_token_index ${image_token_id} is outside the vocabulary (${text.vocab_size})`, 'image_token_index');
  return { text, vision, tokensPerImage: siglipGrid(vision).patches, image_token_id, initializer_range: outer.initializer_range ?? text.initializer_range };
}

export function paliGemmaTensors(c: PaliGemmaConfig): TensorSpec[] {
  const P = PALIGEMMA_PREFIX;
  return [
    ...siglipTensors(c.vision, P.vision),
    { name: `${P.projector}.weight`, shape: [c.text.hidden_size, c.vision.hidden_size], init: 'normal' },
    { name: `${P.projector}.bias`, shape: [c.text.hidden_size], init: 'zeros' },
    ...gemmaTextTensors(c.text, P.text),
    ...(c.text.tie_word_embeddings ? [] : [{ name: P.head, shape: [c.text.vocab_size, c.text.hidden_size], init: 'normal' as const }]),
  ];
}

/**
 * PaliGemmaForConditionalGeneration (PaliGemma 2): pixel_values [N, C, S, S] -> SigLIP patches -> the linear
 * projector -> divided by sqrt(text hidden_size); they replace the image tokens' embeddings, and the Gemma 2 model
 * scales all embeddings by sqrt(hidden_size) (so image features enter unscaled, text scaled). Prefix-LM attention:
 * positions below the prefix length (image tokens, bos, prefix, "\n": the prompt) see each other both ways, the
 * suffix is causal (transformers' token_type_ids mask, which the sliding window does not cut).
 */
/** PaliGemma's image features: SigLIP, the linear projector, / sqrt(text hidden): [N, patches, D]. */
export function paliGemmaVision<T>(ops: Ops<T>, c: PaliGemmaConfig, pixels: T): T {
  const f = ops.linear(siglipVision(ops, c.vision, pixels, PALIGEMMA_PREFIX.vision), PALIGEMMA_PREFIX.projector); // [N, patches, D]
  return ops.scale(f, 1 / Math.sqrt(c.text.hidden_size));
}

export function paliGemmaForward<T>(ops: Ops<T>, c: PaliGemmaConfig, ids: T, image?: T | ImageFeatures<T>): T {
  const P = PALIGEMMA_PREFIX;
  const D = c.text.hidden_size;
  let x = ops.embed(`${P.text}.embed_tokens.weight`, ids); // [B, T, D]
  if (image !== undefined) x = ops.mergeTokens(x, ids, isFeatures(image) ? image.features : paliGemmaVision(ops, c, image), c.image_token_id);
  x = ops.scale(x, Math.sqrt(D));
  const h = gemmaDecoder(ops, c.text, x, P.text, undefined, ops.prefixLength());
  return gemmaLogits(ops, c.text, h, c.text.tie_word_embeddings ? `${P.text}.embed_tokens.weight` : P.head);
}
