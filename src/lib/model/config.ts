/**
 * The VLA model's configuration, in the style of Hugging Face `config.json`: a ViT image encoder, a projector into
 * the language width, and a LLaMA-style decoder with tied input/output embeddings.
 */
import { z } from 'zod';
import { VlakitError } from '../errors.js';
import { FiniteNumberSchema } from '../io/records.js';

export interface VisionConfig {
  image_size: number;
  patch_size: number;
  hidden_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  intermediate_size: number;
  layer_norm_eps: number;
  /**
   * A patch stem (absent: none): each patch is cut into stem_patch_size-px cells, each cell embedded into
   * stem_channels features with a GELU (a convolution with kernel = stride = stem_patch_size), and the patch embedding
   * reads the cells' features instead of raw pixels: a local non-linear detector for objects a few pixels wide.
   */
  stem_patch_size?: number;
  stem_channels?: number;
  /**
   * Keypoint tokens (absent: none; needs the stem): each of `keypoints` learned queries attends over the stem's cells
   * (a spatial softmax over the image at the stem's resolution) and reads the expected cell position; each becomes one
   * more image token after the patches. A named object's position is then one attention away for the decoder.
   */
  keypoints?: number;
  /**
   * What the keypoint queries are (absent: 'learned'): 'learned' vectors, the same for every example, or 'prompt':
   * each keypoint's learned vector plus a linear map of the mean embedding of the prompt's tokens, so the spatial
   * softmax looks for what the instruction names (FiLM-style conditioning of vision on language, as RT-1 and BC-Z do).
   */
  keypoint_query?: 'learned' | 'prompt';
  /**
   * Which object each keypoint is a detector of (absent: none named): keypoint k's grounding targets
   * (`train-sft --ground-weight`) are those of the object named `keypoint_names[k]`, whatever the prompt names, so each
   * keypoint learns to find one kind of object and the decoder picks among their tokens. At most `keypoints` names.
   */
  keypoint_names?: string[];
  /**
   * The side of the square of stem cells each keypoint key reads (absent: 1, the cell alone; odd): with 3, a cell's key
   * is a linear map of its own and its 8 neighbours' stem features (zeros beyond the image's border), so a keypoint
   * can tell an object by its shape and surroundings, not only by the colour of one cell.
   */
  keypoint_context?: number;
}

export interface TextConfig {
  vocab_size: number;
  hidden_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  intermediate_size: number;
  rms_norm_eps: number;
  rope_theta: number;
  max_position_embeddings: number;
}

export interface VlaConfig {
  model_type: 'vlakit-vla';
  architectures: ['VlaForCausalLM'];
  vision_config: VisionConfig;
  text_config: TextConfig;
  /** Cameras per example (their patch tokens come first, camera after camera). */
  num_cameras: number;
  tie_word_embeddings: true;
  initializer_range: number;
  torch_dtype: 'float32';
}

export type Preset = 'tiny' | 'mini' | 'small' | 'base';

function make(v: Partial<VisionConfig>, t: Partial<TextConfig>, cameras = 1, initializerRange = 0.02): VlaConfig {
  const text: TextConfig = { vocab_size: 512, hidden_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, intermediate_size: 172, rms_norm_eps: 1e-6, rope_theta: 10000, max_position_embeddings: 512, ...t };
  const vision: VisionConfig = { image_size: 32, patch_size: 8, hidden_size: 48, num_hidden_layers: 1, num_attention_heads: 4, intermediate_size: 192, layer_norm_eps: 1e-6, ...v };
  return { model_type: 'vlakit-vla', architectures: ['VlaForCausalLM'], vision_config: vision, text_config: text, num_cameras: cameras, tie_word_embeddings: true, initializer_range: initializerRange, torch_dtype: 'float32' };
}

/**
 * Presets. The initializer's standard deviation is GPT-2's 0.02 except for mini: at widths of 48-64 it leaves
 * attention uniform and the image tokens' contribution drowned for thousands of steps (measured, docs/RESULTS.md:
 * a policy trained for 1500 steps at 0.02 answers the same with a blank image; at 0.1 it reads its images). tiny keeps
 * 0.02 because the tests pin its numbers. tiny trains in a CI test in seconds; mini (about 0.15M parameters; 64-px images in 16-px patches: as few
 * image tokens as tiny, four times the pixels, where a block is a few pixels wide) is the closed-loop policy of `make demo` on 2 CPU cores; small is about 11M parameters; base (about
 * 85M) is for machines with a GPU backend. Larger models are configured the same way in a config.json.
 */
export function preset(name: Preset, vocab: number, cameras = 1): VlaConfig {
  switch (name) {
    case 'tiny':
      return make({ image_size: 32, patch_size: 8, hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 64 }, { vocab_size: vocab, hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, intermediate_size: 88, max_position_embeddings: 256 }, cameras);
    case 'mini':
      return make({ image_size: 64, patch_size: 16, hidden_size: 64, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 128 }, { vocab_size: vocab, hidden_size: 48, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, intermediate_size: 128, max_position_embeddings: 256 }, cameras, 0.1);
    case 'small':
      return make({ image_size: 64, patch_size: 8, hidden_size: 192, num_hidden_layers: 4, num_attention_heads: 4, intermediate_size: 768 }, { vocab_size: vocab, hidden_size: 320, num_hidden_layers: 8, num_attention_heads: 8, num_key_value_heads: 4, intermediate_size: 864, max_position_embeddings: 1024 }, cameras);
    case 'base':
      return make({ image_size: 128, patch_size: 16, hidden_size: 384, num_hidden_layers: 6, num_attention_heads: 6, intermediate_size: 1536 }, { vocab_size: vocab, hidden_size: 768, num_hidden_layers: 12, num_attention_heads: 12, num_key_value_heads: 4, intermediate_size: 2048, max_position_embeddings: 2048 }, cameras);
    default:
      throw new VlakitError('E_USAGE', `unknown preset "${name as string}"; expected tiny, mini, small or base`);
  }
}

/** Patches along each side of an image. */
export function patchGrid(c: VlaConfig): number {
  return c.vision_config.image_size / c.vision_config.patch_size;
}

export function patchesPerImage(c: VlaConfig): number {
  return patchGrid(c) ** 2;
}

/** Image tokens of one camera: its patches, then its keypoint tokens. */
export function tokensPerImage(c: VlaConfig): number {
  return patchesPerImage(c) + (c.vision_config.keypoints ?? 0);
}

/** The head size of the keypoint queries (each keypoint one attention head). */
export const KEYPOINT_DIM = 8;

export function validateConfig(c: VlaConfig): void {
  const v = c.vision_config;
  const t = c.text_config;
  const bad = (m: string) => new VlakitError('E_USAGE', `invalid model config: ${m}`, { file: 'config.json' });
  if (v.image_size % v.patch_size !== 0) throw bad(`image_size ${v.image_size} is not a multiple of patch_size ${v.patch_size}`);
  if ((v.stem_patch_size === undefined) !== (v.stem_channels === undefined)) throw bad('stem_patch_size and stem_channels go together');
  if (v.stem_patch_size !== undefined && v.patch_size % v.stem_patch_size !== 0) throw bad(`patch_size ${v.patch_size} is not a multiple of stem_patch_size ${v.stem_patch_size}`);
  if (v.keypoints !== undefined && v.stem_patch_size === undefined) throw bad('keypoints need the stem (stem_patch_size, stem_channels)');
  if (v.keypoint_query !== undefined && v.keypoints === undefined) throw bad('keypoint_query needs keypoints');
  if (v.keypoint_names !== undefined && v.keypoint_names.length > (v.keypoints ?? 0)) throw bad(`keypoint_names has ${v.keypoint_names.length} names for ${v.keypoints ?? 0} keypoints`);
  if (v.keypoint_context !== undefined && v.keypoints === undefined) throw bad('keypoint_context needs keypoints');
  if (v.keypoint_context !== undefined && v.keypoint_context % 2 !== 1) throw bad(`keypoint_context ${v.keypoint_context} is not odd (1, 3, 5, ...)`);
  if (v.hidden_size % v.num_attention_heads !== 0) throw bad('vision hidden_size must be a multiple of num_attention_heads');
  if (t.hidden_size % t.num_attention_heads !== 0) throw bad('text hidden_size must be a multiple of num_attention_heads');
  if (t.num_attention_heads % t.num_key_value_heads !== 0) throw bad('num_attention_heads must be a multiple of num_key_value_heads');
  if ((t.hidden_size / t.num_attention_heads) % 2 !== 0) throw bad('the text head size must be even (rotary embeddings)');
}

const positive = z.number().int().positive();
const layers = z.number().int().nonnegative();
const eps = FiniteNumberSchema.positive();

const VisionConfigSchema = z.looseObject({
  image_size: positive,
  patch_size: positive,
  hidden_size: positive,
  num_hidden_layers: layers,
  num_attention_heads: positive,
  intermediate_size: positive,
  layer_norm_eps: eps,
  stem_patch_size: positive.optional(),
  stem_channels: positive.optional(),
  keypoints: positive.optional(),
  keypoint_query: z.enum(['learned', 'prompt']).optional(),
  keypoint_names: z.array(z.string().min(1)).optional(),
  keypoint_context: positive.optional(),
});

const TextConfigSchema = z.looseObject({
  vocab_size: positive,
  hidden_size: positive,
  num_hidden_layers: layers,
  num_attention_heads: positive,
  num_key_value_heads: positive,
  intermediate_size: positive,
  rms_norm_eps: eps,
  rope_theta: eps,
  max_position_embeddings: positive,
});

/** The fields of a model config; other fields (HF's, vlakit's own block) are kept. */
export const VlaConfigObject = z.looseObject({
  model_type: z.literal('vlakit-vla'),
  architectures: z.tuple([z.literal('VlaForCausalLM')]),
  vision_config: VisionConfigSchema,
  text_config: TextConfigSchema,
  num_cameras: positive,
  tie_word_embeddings: z.literal(true),
  initializer_range: FiniteNumberSchema.nonnegative(),
  torch_dtype: z.literal('float32'),
});

// the schema's type and the interfaces above are one definition: this fails to compile when they drift apart
const _sameType: z.ZodType<VlaConfig> = VlaConfigObject;
void _sameType;

/** validateConfig's rules as zod checks, with the field of each. */
export function withConfigChecks<S extends z.ZodType<VlaConfig>>(schema: S): S {
  return schema.superRefine((c, ctx) => {
    const v = c.vision_config;
    const t = c.text_config;
    const bad = (path: (string | number)[], message: string) => ctx.addIssue({ code: 'custom', path, message });
    if (v.image_size % v.patch_size !== 0) bad(['vision_config', 'patch_size'], `image_size ${v.image_size} is not a multiple of patch_size ${v.patch_size}`);
    if ((v.stem_patch_size === undefined) !== (v.stem_channels === undefined)) bad(['vision_config', v.stem_patch_size === undefined ? 'stem_patch_size' : 'stem_channels'], 'stem_patch_size and stem_channels go together');
    else if (v.stem_patch_size !== undefined && v.patch_size % v.stem_patch_size !== 0) bad(['vision_config', 'stem_patch_size'], `patch_size ${v.patch_size} is not a multiple of stem_patch_size ${v.stem_patch_size}`);
    if (v.keypoints !== undefined && v.stem_patch_size === undefined) bad(['vision_config', 'keypoints'], 'keypoints need the stem (stem_patch_size, stem_channels)');
    if (v.keypoint_query !== undefined && v.keypoints === undefined) bad(['vision_config', 'keypoint_query'], 'keypoint_query needs keypoints');
    if (v.keypoint_names !== undefined && v.keypoint_names.length > (v.keypoints ?? 0)) bad(['vision_config', 'keypoint_names'], `${v.keypoint_names.length} names for ${v.keypoints ?? 0} keypoints`);
    if (v.keypoint_context !== undefined && v.keypoints === undefined) bad(['vision_config', 'keypoint_context'], 'keypoint_context needs keypoints');
    else if (v.keypoint_context !== undefined && v.keypoint_context % 2 !== 1) bad(['vision_config', 'keypoint_context'], `${v.keypoint_context} is not odd (1, 3, 5, ...)`);
    if (v.hidden_size % v.num_attention_heads !== 0) bad(['vision_config', 'num_attention_heads'], 'vision hidden_size must be a multiple of num_attention_heads');
    if (t.hidden_size % t.num_attention_heads !== 0) bad(['text_config', 'num_attention_heads'], 'text hidden_size must be a multiple of num_attention_heads');
    else if (t.num_attention_heads % t.num_key_value_heads !== 0) bad(['text_config', 'num_key_value_heads'], 'num_attention_heads must be a multiple of num_key_value_heads');
    else if ((t.hidden_size / t.num_attention_heads) % 2 !== 0) bad(['text_config', 'hidden_size'], 'the text head size must be even (rotary embeddings)');
  }) as S;
}

/** A model config (config.json of a checkpoint without vlakit's block). */
export const VlaConfigSchema = withConfigChecks(VlaConfigObject);

/** What a checkpoint's config.json records of its LoRA adapters (null: a model without adapters). */
const LoraRecordSchema = z.object({ r: z.number().int().positive(), alpha: FiniteNumberSchema.positive(), target_modules: z.array(z.string()) });

/** A checkpoint's config.json: the model config and vlakit's block (the action representation, the adapters). */
export const CheckpointConfigSchema = withConfigChecks(
  VlaConfigObject.extend({
    vlakit: z.looseObject({ action_codec: z.record(z.string(), z.unknown()).nullable().optional(), lora: LoraRecordSchema.nullable().optional() }).optional(),
  }),
);

/** PEFT's adapter_config.json, the fields vlakit reads. */
export const AdapterConfigSchema = z.looseObject({
  r: positive,
  lora_alpha: FiniteNumberSchema.positive(),
  target_modules: z.array(z.string()).min(1, 'expected at least one target module'),
});
