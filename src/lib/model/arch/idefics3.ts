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
import { SiglipVisionSchema, checkSiglip, siglipTensors, siglipVision } from './siglip.js';

/** Idefics3's vision config is SigLIP's, with image_size and patch_size required. */
export const Idefics3VisionSchema = SiglipVisionSchema.extend({
  image_size: z.number().int().positive(),
  patch_size: z.number().int().positive(),
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
  checkSiglip(c.vision_config, file);
  const { side } = idefics3Grid(c);
  if (side % c.scale_factor) throw new VlakitError('E_MODEL', `invalid model config: ${side} patches per side do not divide by scale_factor ${c.scale_factor}`, { file, field: 'scale_factor' });
}

/** Every tensor with transformers' names and shapes (the order does not matter; files sort by name). */
export function idefics3Tensors(c: Idefics3Config): TensorSpec[] {
  const out = siglipTensors(c.vision_config, VISION);
  const t = c.text_config;
  out.push({ name: 'model.connector.modality_projection.proj.weight', shape: [t.hidden_size, c.vision_config.hidden_size * c.scale_factor ** 2], init: 'normal' });
  out.push(...llamaTensors(t, TEXT));
  if (!c.tie_word_embeddings) out.push({ name: 'lm_head.weight', shape: [t.vocab_size, t.hidden_size], init: 'normal' });
  return out;
}

/** pixel_values [N, C, S, S] (normalized) -> image features [N, tokensPerImage, text hidden]. */
export function idefics3Vision<T>(ops: Ops<T>, c: Idefics3Config, pixels: T): T {
  const D = c.vision_config.hidden_size;
  const { side, patches } = idefics3Grid(c);
  let x = siglipVision(ops, c.vision_config, pixels, VISION); // [N, g*g, D]
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
