/**
 * The architectures vlakit loads, keyed by config.json's `model_type` (and `architectures`). Adding one is one
 * file written over `Ops` plus an entry here.
 */
import { z } from 'zod';
import { VlakitError } from '../../errors.js';
import { zodProblem } from '../../io/json-file.js';
import { type Idefics3Config, Idefics3ConfigSchema, checkIdefics3, idefics3Forward, idefics3Grid, idefics3Tensors, idefics3Vision } from './idefics3.js';
import { type PaliGemmaConfig, PaliGemmaConfigSchema, paliGemmaConfig, paliGemmaForward, paliGemmaTensors, paliGemmaVision, type Gemma3Config, Gemma3ConfigSchema, type GemmaTextConfig, GemmaTextSchema, gemma3Config, gemma3Forward, gemma3Vision, gemma3Tensors, gemma3TextForward, gemmaText, gemmaTextTensors } from './gemma.js';
import { type SiglipVisionConfig, SiglipVisionSchema, checkSiglip } from './siglip.js';
import { type LlamaConfig, LlamaConfigSchema, llamaForward, llamaHeads, llamaTensors } from './llama.js';
import { type ImageFeatures, type Ops, type TensorSpec, isFeatures } from './ops.js';
import { type VlaConfig, CheckpointConfigSchema } from '../config.js';
import { BOS, EOS } from '../tokenizer.js';
import { vlaForward, vlaImageTokens, vlaTensors } from './vlakit-vla.js';

/** A text decoder's cache layout: layers, key/value heads and head size; and its query heads (attention maps). */
export interface CacheLayout {
  layers: number;
  kvHeads: number;
  headDim: number;
  heads: number;
}

export interface Architecture<C = unknown> {
  modelType: string;
  /** transformers' class names for it. */
  classes: string[];
  parseConfig(raw: unknown, file?: string): C;
  /** Every tensor with its HF name, shape and initialization (the head too when it is not tied). */
  tensors(c: C): TensorSpec[];
  /**
   * ids [B, T] (and, for a vision-language model, pixel_values [N, C, S, S], or the features `features` computed
   * from them before) -> logits [B, T, V].
   */
  forward<T>(ops: Ops<T>, c: C, ids: T, pixels?: T | ImageFeatures<T>): T;
  /** For a vision-language model: pixel_values [N, C, S, S] -> the image features the text model takes [N, L, D]. */
  features?<T>(ops: Ops<T>, c: C, pixels: T): T;
  /** For a vision-language model: the image tile side, channels and tokens per tile; undefined for text only. */
  vision?(c: C): { imageSize: number; channels: number; tokensPerImage: number; imageTokenId: number };
  cache(c: C): CacheLayout;
  /** A prefix-LM (PaliGemma): the prompt's positions attend both ways; generation passes the prompt length. */
  prefixLm?: boolean;
  vocabSize(c: C): number;
  maxPositions(c: C): number;
  eosIds(c: C): number[];
  bosId(c: C): number | undefined;
  initializerRange(c: C): number;
  /**
   * Other checkpoint layouts of the same weights: [pattern, replacement] pairs that rename a tensor name as saved
   * (transformers >= 4.52 / 5: `model.language_model.*`) into the one `tensors` lists; the first match applies.
   */
  renames?: [RegExp, string][];
  /** How the checkpoint stores linear weights: Hugging Face's [out, in] (default), or [in, out] (vlakit's own). */
  linearLayout?: 'out_in' | 'in_out';
  /**
   * vlakit's own model: its checkpoints are train-sft/train-rl runs (tokenizer.json, action codec, LoRA as PEFT
   * files) loaded by model/checkpoint.ts, not Hugging Face checkpoints (see isHfCheckpoint).
   */
  builtin?: boolean;
}

/**
 * Checkpoints saved by transformers >= 4.52 (and 5) of the *ForConditionalGeneration models that gained a `model`
 * submodule (Gemma 3, PaliGemma): the inverse of their `_checkpoint_conversion_mapping`.
 */
const CONDITIONAL_GENERATION_RENAMES: [RegExp, string][] = [
  [/^model\.language_model\./, 'language_model.model.'],
  [/^model\.vision_tower\./, 'vision_tower.'],
  [/^model\.multi_modal_projector\./, 'multi_modal_projector.'],
  [/^lm_head\./, 'language_model.lm_head.'],
];

/** A tensor name as saved -> the name the architecture's tensor list uses (unchanged when no rename applies). */
export function canonicalTensorName(arch: Pick<Architecture<unknown>, 'renames'>, name: string): string {
  for (const [re, to] of arch.renames ?? []) if (re.test(name)) return name.replace(re, to);
  return name;
}

/** Parses a config with a zod schema; the first problem names the field. */
export function parseWith<S extends z.ZodType>(schema: S, raw: unknown, file = 'config.json'): z.output<S> {
  const r = schema.safeParse(raw);
  if (!r.success) {
    const p = zodProblem(r.error);
    throw new VlakitError('E_MODEL', `invalid model config: ${p.message}`, { file, field: p.field });
  }
  return r.data;
}

const ids = (v: number | number[] | null | undefined): number[] => (v === null || v === undefined ? [] : Array.isArray(v) ? v : [v]);

export const llama: Architecture<LlamaConfig> = {
  modelType: 'llama',
  classes: ['LlamaForCausalLM'],
  parseConfig(raw, file) {
    return checkLlama(parseWith(LlamaConfigSchema, raw, file), file);
  },
  tensors: (c) => [...llamaTensors(c), ...(c.tie_word_embeddings ? [] : [{ name: 'lm_head.weight', shape: [c.vocab_size, c.hidden_size], init: 'normal' as const }])],
  forward: (ops, c, x) => llamaForward(ops, c, x),
  cache: (c) => {
    const { H, KV, hd } = llamaHeads(c);
    return { layers: c.num_hidden_layers, kvHeads: KV, headDim: hd, heads: H };
  },
  vocabSize: (c) => c.vocab_size,
  maxPositions: (c) => c.max_position_embeddings,
  eosIds: (c) => ids(c.eos_token_id),
  bosId: (c) => c.bos_token_id ?? undefined,
  initializerRange: (c) => c.initializer_range,
};

/** What vlakit's Llama does not cover, refused with the field. */
function checkLlama(c: LlamaConfig, file?: string): LlamaConfig {
  if (c.rope_scaling !== undefined && c.rope_scaling !== null) throw new VlakitError('E_MODEL', 'rope_scaling is not supported yet (only plain rotary positions)', { file, field: 'rope_scaling' });
  const { H, KV } = llamaHeads(c);
  if (H % KV !== 0) throw new VlakitError('E_MODEL', `num_attention_heads ${H} is not a multiple of num_key_value_heads ${KV}`, { file, field: 'num_key_value_heads' });
  return c;
}

export const idefics3: Architecture<Idefics3Config> = {
  modelType: 'idefics3',
  classes: ['Idefics3ForConditionalGeneration'],
  parseConfig(raw, file) {
    const outer = parseWith(Idefics3ConfigSchema, raw, file);
    // the text model is a Llama whatever its config calls itself (SmolVLM's says model_type "llama"; others omit it)
    const text = checkLlama(parseWith(LlamaConfigSchema, { ...outer.text_config, model_type: 'llama' }, file), file);
    const c: Idefics3Config = { ...outer, text_config: text };
    checkIdefics3(c, file);
    return c;
  },
  tensors: idefics3Tensors,
  forward: (ops, c, x, pixels) => idefics3Forward(ops, c, x, pixels),
  features: (ops, c, pixels) => idefics3Vision(ops, c, pixels),
  vision: (c) => ({ imageSize: c.vision_config.image_size, channels: c.vision_config.num_channels, tokensPerImage: idefics3Grid(c).tokensPerImage, imageTokenId: c.image_token_id }),
  cache: (c) => {
    const { H, KV, hd } = llamaHeads(c.text_config);
    return { layers: c.text_config.num_hidden_layers, kvHeads: KV, headDim: hd, heads: H };
  },
  vocabSize: (c) => c.text_config.vocab_size,
  maxPositions: (c) => c.text_config.max_position_embeddings,
  eosIds: (c) => ids(c.text_config.eos_token_id),
  bosId: (c) => c.text_config.bos_token_id ?? undefined,
  initializerRange: (c) => c.text_config.initializer_range,
};

export const gemma3Text: Architecture<GemmaTextConfig> = {
  modelType: 'gemma3_text',
  classes: ['Gemma3ForCausalLM'],
  parseConfig(raw, file) {
    return gemmaText(parseWith(GemmaTextSchema.extend({ model_type: z.literal('gemma3_text') }), raw, file), file, '');
  },
  tensors: (c) => [...gemmaTextTensors(c, 'model'), ...(c.tie_word_embeddings ? [] : [{ name: 'lm_head.weight', shape: [c.vocab_size, c.hidden_size], init: 'normal' as const }])],
  forward: (ops, c, x) => gemma3TextForward(ops, c, x),
  cache: (c) => ({ layers: c.num_hidden_layers, kvHeads: c.num_key_value_heads, headDim: c.head_dim, heads: c.num_attention_heads }),
  vocabSize: (c) => c.vocab_size,
  maxPositions: (c) => c.max_position_embeddings,
  eosIds: (c) => c.eos_token_id,
  bosId: (c) => c.bos_token_id,
  initializerRange: (c) => c.initializer_range,
};

/** What a Gemma-based vision-language model adds to its parts: the outer config and how it is assembled. */
interface GemmaVlmSpec<C, S extends z.ZodType> {
  modelType: string;
  classes: string[];
  schema: S;
  build(outer: z.output<S>, vision: SiglipVisionConfig, file?: string): C;
  tensors(c: C): TensorSpec[];
  forward: Architecture<C>['forward'];
  features: NonNullable<Architecture<C>['features']>;
  tokensPerImage(c: C): number;
  prefixLm?: boolean;
}

/**
 * A SigLIP + Gemma vision-language model (Gemma 3, PaliGemma 2): the config parsed part by part (the field errors
 * of the vision and text configs first), and the text model's cache, vocabulary, positions and special ids.
 */
function gemmaVlm<C extends { text: GemmaTextConfig; vision: SiglipVisionConfig; image_token_id: number; initializer_range: number }, S extends z.ZodType>(a: GemmaVlmSpec<C, S>): Architecture<C> {
  return {
    modelType: a.modelType,
    classes: a.classes,
    parseConfig(raw, file) {
      const outer = parseWith(a.schema, raw, file);
      const vision = parseWith(SiglipVisionSchema, (outer as { vision_config?: unknown }).vision_config, file);
      checkSiglip(vision, file);
      parseWith(GemmaTextSchema.extend({ model_type: z.string().optional() }), (outer as { text_config?: unknown }).text_config, file); // field errors first
      return a.build(outer, vision, file);
    },
    tensors: a.tensors,
    forward: a.forward,
    features: a.features,
    vision: (c) => ({ imageSize: c.vision.image_size, channels: c.vision.num_channels, tokensPerImage: a.tokensPerImage(c), imageTokenId: c.image_token_id }),
    cache: (c) => ({ layers: c.text.num_hidden_layers, kvHeads: c.text.num_key_value_heads, headDim: c.text.head_dim, heads: c.text.num_attention_heads }),
    vocabSize: (c) => c.text.vocab_size,
    maxPositions: (c) => c.text.max_position_embeddings,
    eosIds: (c) => c.text.eos_token_id,
    bosId: (c) => c.text.bos_token_id,
    initializerRange: (c) => c.initializer_range,
    renames: CONDITIONAL_GENERATION_RENAMES,
    prefixLm: a.prefixLm,
  };
}

export const gemma3: Architecture<Gemma3Config> = gemmaVlm({
  modelType: 'gemma3',
  classes: ['Gemma3ForConditionalGeneration'],
  schema: Gemma3ConfigSchema,
  build: gemma3Config,
  tensors: gemma3Tensors,
  forward: (ops, c, x, pixels) => gemma3Forward(ops, c, x, pixels),
  features: (ops, c, pixels) => gemma3Vision(ops, c, pixels),
  tokensPerImage: (c) => c.mm_tokens_per_image,
});

export const paligemma: Architecture<PaliGemmaConfig> = gemmaVlm({
  modelType: 'paligemma',
  classes: ['PaliGemmaForConditionalGeneration'],
  schema: PaliGemmaConfigSchema,
  build: paliGemmaConfig,
  tensors: paliGemmaTensors,
  forward: (ops, c, x, pixels) => paliGemmaForward(ops, c, x, pixels),
  features: (ops, c, pixels) => paliGemmaVision(ops, c, pixels),
  tokensPerImage: (c) => c.tokensPerImage,
  prefixLm: true,
});

/**
 * vlakit's built-in VLA (train-sft --preset): ViT per camera + projector + Llama decoder, image tokens first.
 * `forward` takes pixels [B, C, S, S, 3] in [-1, 1] and returns the logits of the text positions.
 */
export const vlakitVla: Architecture<VlaConfig> = {
  modelType: 'vlakit-vla',
  classes: ['VlaForCausalLM'],
  parseConfig(raw, file) {
    const { vlakit: _own, ...c } = parseWith(CheckpointConfigSchema, raw, file);
    return c as VlaConfig;
  },
  tensors: vlaTensors,
  forward: (ops, c, x, pixels) => {
    if (pixels !== undefined && isFeatures(pixels)) throw new VlakitError('E_USAGE', 'vlakit-vla runs its vision tower in the forward: it takes pixels, not image features');
    return vlaForward(ops, c, x, pixels);
  },
  vision: (c) => ({ imageSize: c.vision_config.image_size, channels: 3, tokensPerImage: vlaImageTokens(c), imageTokenId: -1 }),
  cache: (c) => ({ layers: c.text_config.num_hidden_layers, kvHeads: c.text_config.num_key_value_heads, headDim: c.text_config.hidden_size / c.text_config.num_attention_heads, heads: c.text_config.num_attention_heads }),
  vocabSize: (c) => c.text_config.vocab_size,
  maxPositions: (c) => c.text_config.max_position_embeddings,
  eosIds: () => [EOS], // the built-in tokenizer's fixed special ids
  bosId: () => BOS,
  initializerRange: (c) => c.initializer_range,
  linearLayout: 'in_out',
  builtin: true,
};

const REGISTRY: Architecture<never>[] = [vlakitVla as Architecture<never>, llama as Architecture<never>, idefics3 as Architecture<never>, gemma3Text as Architecture<never>, gemma3 as Architecture<never>, paligemma as Architecture<never>];

/** The architecture of a config.json (by model_type), or a clear error listing what vlakit supports. */
export function architectureOf(raw: unknown, file = 'config.json'): Architecture<unknown> {
  const type = typeof raw === 'object' && raw !== null ? (raw as { model_type?: unknown }).model_type : undefined;
  const arch = REGISTRY.find((a) => a.modelType === type);
  if (!arch) throw new VlakitError('E_MODEL', `model_type ${JSON.stringify(type)} is not an architecture vlakit loads; supported: ${REGISTRY.map((a) => a.modelType).join(', ')}`, { file, field: 'model_type' });
  return arch as Architecture<unknown>;
}

export function supportedModelTypes(): string[] {
  return REGISTRY.map((a) => a.modelType);
}
