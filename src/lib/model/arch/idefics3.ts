/**
 * Idefics3 (Idefics3ForConditionalGeneration: SmolVLM-256M/500M-Instruct), written once over `Ops`: a SigLIP
 * vision tower (convolutional patch embedding, learned positions, pre-norm blocks with tanh-GELU MLPs, a final
 * LayerNorm), the pixel-shuffle connector (scale_factor^2 neighbouring patches into one token) with a bias-free
 * projection, and a Llama text model whose image-token positions take the image features; untied head.
 * Tiles are image_size square (the processor resizes and splits images so), so every patch position is used.
 */
import { z } from 'zod';
import { VlakitError } from '../../errors.js';
import { type LlamaConfig, llamaDecoder, llamaTensors } from './llama.js';
import { type ImageFeatures, isFeatures, type Ops, type TensorSpec } from './ops.js';

export const Idefics3VisionSchema = z.looseObject({
  hidden_size: z.number().int().positive(),
  intermediate_size: z.number().int().positive(),
  num_hidden_layers: z.number().int().positive(),
  num_attention_heads: z.number().int().positive(),
  num_channels: z.number().int().positive().default(3),
  image_size: z.number().int().positive(),
  patch_size: z.number().int().positive(),
  layer_norm_eps: z.number().positive().default(1e-6),
  hidden_act: z.enum(['gelu_pytorch_tanh', 'gelu']).default('gelu_pytorch_tanh'),
  initializer_range: z.number().positive().default(0.02),
});

/** The config without its text part, which is a Llama config (parsed by LlamaConfigSchema, see registry). */
export const Idefics3ConfigSchema = z.looseObject({
  model_type: z.literal('idefics3'),
  image_token_id: z.number().int().nonnegative(),
  scale_factor: z.number().int().positive().default(2),
  tie_word_embeddings: z.boolean().default(false),
  vision_config: Idefics3VisionSchema,
  text_config: z.looseObject({}),
});
export interface Idefics3Config {
  model_type: 'idefics3';
  image_token_id: number;
  scale_factor: number;
  tie_word_embeddings: boolean;
  vision_config: z.infer<typeof Idefics3VisionSchema>;
  text_config: LlamaConfig;
}

const VISION = 'model.vision_model';
const TEXT = 'model.text_model';

/** Patches per side of a tile, and image tokens per tile after the pixel shuffle. */
export function idefics3Grid(c: Idefics3Config): { side: number; patches: number; tokensPerImage: number } {
  const side = c.vision_config.image_size / c.vision_config.patch_size;
  return { side, patches: side * side, tokensPerImage: (side * side) / c.scale_factor ** 2 };
}

export function checkIdefics3(c: Idefics3Config, file?: string): void {
  const v = c.vision_config;
  const { side } = idefics3Grid(c);
  const bad = (m: string, field: string) => new VlakitError('E_MODEL', `invalid model config: ${m}`, { file, field });
  if (v.image_size % v.patch_size) throw bad(`vision image_size ${v.image_size} is not a multiple of patch_size ${v.patch_size}`, 'vision_config.image_size');
  if (side % c.scale_factor) throw bad(`${side} patches per side do not divide by scale_factor ${c.scale_factor}`, 'scale_factor');
  if (v.hidden_size % v.num_attention_heads) throw bad('vision hidden_size is not a multiple of num_attention_heads', 'vision_config.num_attention_heads');
}

/** Every tensor with transformers' names and shapes (the order does not matter; files sort by name). */
export function idefics3Tensors(c: Idefics3Config): TensorSpec[] {
  const v = c.vision_config;
  const D = v.hidden_size;
  const I = v.intermediate_size;
  const P = v.patch_size;
  const { patches } = idefics3Grid(c);
  const out: TensorSpec[] = [
    { name: `${VISION}.embeddings.patch_embedding.weight`, shape: [D, v.num_channels, P, P], init: 'normal' },
    { name: `${VISION}.embeddings.patch_embedding.bias`, shape: [D], init: 'zeros' },
    { name: `${VISION}.embeddings.position_embedding.weight`, shape: [patches, D], init: 'normal' },
  ];
  const lin = (name: string, o: number, i: number) => out.push({ name: `${name}.weight`, shape: [o, i], init: 'normal' }, { name: `${name}.bias`, shape: [o], init: 'zeros' });
  const ln = (name: string) => out.push({ name: `${name}.weight`, shape: [D], init: 'ones' }, { name: `${name}.bias`, shape: [D], init: 'zeros' });
  for (let i = 0; i < v.num_hidden_layers; i++) {
    const n = `${VISION}.encoder.layers.${i}`;
    for (const m of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) lin(`${n}.self_attn.${m}`, D, D);
    ln(`${n}.layer_norm1`);
    ln(`${n}.layer_norm2`);
    lin(`${n}.mlp.fc1`, I, D);
    lin(`${n}.mlp.fc2`, D, I);
  }
  ln(`${VISION}.post_layernorm`);
  const t = c.text_config;
  out.push({ name: 'model.connector.modality_projection.proj.weight', shape: [t.hidden_size, D * c.scale_factor ** 2], init: 'normal' });
  out.push(...llamaTensors(t, TEXT));
  if (!c.tie_word_embeddings) out.push({ name: 'lm_head.weight', shape: [t.vocab_size, t.hidden_size], init: 'normal' });
  return out;
}

/** pixel_values [N, C, S, S] (normalized) -> image features [N, tokensPerImage, text hidden]. */
export function idefics3Vision<T>(ops: Ops<T>, c: Idefics3Config, pixels: T): T {
  const v = c.vision_config;
  const D = v.hidden_size;
  const P = v.patch_size;
  const { side, patches } = idefics3Grid(c);
  // the patch convolution (stride = kernel = P) as a matmul over flattened patches:
  // [N, C, S, S] -> [N, C, g, P, g, P] -> [N, g, g, C, P, P] -> [N, g*g, C*P*P]
  const flat = ops.reshape(ops.transpose(ops.reshape(pixels, [-1, v.num_channels, side, P, side, P]), [0, 2, 4, 1, 3, 5]), [-1, patches, v.num_channels * P * P]);
  let x = ops.add(ops.linear(flat, `${VISION}.embeddings.patch_embedding`), ops.param(`${VISION}.embeddings.position_embedding.weight`)); // [N, g*g, D]
  const act = v.hidden_act === 'gelu' ? 'none' : 'tanh';
  const hd = D / v.num_attention_heads;
  for (let i = 0; i < v.num_hidden_layers; i++) {
    const n = `${VISION}.encoder.layers.${i}`;
    const input = x;
    x = ops.block(() => {
      const h = ops.layerNorm(input, `${n}.layer_norm1`, v.layer_norm_eps);
      const a = ops.attention(ops.linear(h, `${n}.self_attn.q_proj`), ops.linear(h, `${n}.self_attn.k_proj`), ops.linear(h, `${n}.self_attn.v_proj`), { layer: -1, heads: v.num_attention_heads, kvHeads: v.num_attention_heads, headDim: hd, causal: false });
      const y = ops.add(input, ops.linear(a, `${n}.self_attn.out_proj`));
      const h2 = ops.layerNorm(y, `${n}.layer_norm2`, v.layer_norm_eps);
      return ops.add(y, ops.linear(ops.gelu(ops.linear(h2, `${n}.mlp.fc1`), act), `${n}.mlp.fc2`));
    });
  }
  x = ops.layerNorm(x, `${VISION}.post_layernorm`, v.layer_norm_eps);
  // pixel shuffle: each s x s block of neighbouring patches becomes one token of s*s*D features
  const s = c.scale_factor;
  x = ops.reshape(x, [-1, side, side / s, D * s]); // [N, g, g/s, D*s]
  x = ops.transpose(x, [0, 2, 1, 3]); // [N, g/s, g, D*s]
  x = ops.reshape(x, [-1, side / s, side / s, D * s * s]); // [N, g/s, g/s, D*s*s]
  x = ops.transpose(x, [0, 2, 1, 3]);
  x = ops.reshape(x, [-1, patches / (s * s), D * s * s]); // [N, g*g/s^2, D*s*s]
  return ops.linear(x, 'model.connector.modality_projection.proj'); // [N, tokens, text hidden]
}

/**
 * ids [B, T] (image tokens where the images go) and pixel_values [N, C, S, S], or image features computed before
 * ({ features: [N, tokens, text hidden] }, as idefics3Vision gives them: a frozen vision tower's cache) -> logits
 * [B, T, V].
 */
export function idefics3Forward<T>(ops: Ops<T>, c: Idefics3Config, ids: T, image?: T | ImageFeatures<T>): T {
  let x = ops.embed(`${TEXT}.embed_tokens.weight`, ids); // [B, T, D]
  if (image !== undefined) x = ops.mergeTokens(x, ids, isFeatures(image) ? image.features : idefics3Vision(ops, c, image), c.image_token_id);
  const h = llamaDecoder(ops, c.text_config, x, TEXT);
  return ops.head(h, c.tie_word_embeddings ? `${TEXT}.embed_tokens.weight` : 'lm_head.weight');
}
