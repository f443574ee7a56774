/**
 * openProcessor: the processor of a Hugging Face checkpoint (or its vlakit export, which carries the same files),
 * chosen by config.json's model_type. See types.ts for the contract and docs/MODEL.md for what each file supplies.
 */
import { readHfConfig } from '../arch/hf.js';
import type { Idefics3Config } from '../arch/idefics3.js';
import type { Gemma3Config, PaliGemmaConfig } from '../arch/gemma.js';
import { gemma3Processor, readGemma3Image } from './gemma3.js';
import { VlakitError } from '../../errors.js';
import { type ImageOptions, idefics3Processor, readIdefics3Image } from './idefics3.js';
import { paliGemmaProcessor, readPaliGemmaImage } from './paligemma.js';
import { type TextParts, plainTextProcessor, readTextParts, textProcessor } from './text.js';
import type { ChatMessage, Processor } from './types.js';

export type { ChatMessage, ChatPart, Processor, ProcessorImage, ProcessorInputs, SpecialTokens } from './types.js';
export type { ImageOptions } from './idefics3.js';

export interface ProcessorOptions extends ImageOptions {}

type Builder = (dir: string, arch: ReturnType<typeof readHfConfig>['arch'], config: unknown, o: ProcessorOptions) => Promise<Processor>;

/**
 * A model's image settings when it has a tokenizer and its preprocessor_config.json; a missing file is kept (thrown
 * at the first image, so text prompts and token ids still run), any other error is thrown now.
 */
function optionalImage<T>(t: TextParts, read: () => T): { image?: T; missing?: VlakitError } {
  try {
    return { image: t.tokenizer ? read() : undefined };
  } catch (err) {
    if (!(err instanceof VlakitError && err.code === 'E_NOT_FOUND')) throw err;
    return { missing: err };
  }
}

const BUILDERS: Record<string, Builder> = {
  llama: async (dir, arch, config) => plainTextProcessor(await readTextParts(dir, arch, config)),
  gemma3_text: async (dir, arch, config) => plainTextProcessor(await readTextParts(dir, arch, config)),
  gemma3: async (dir, arch, config) => {
    const c = config as Gemma3Config;
    const t = await readTextParts(dir, arch, config, '<start_of_image>');
    // without tokenizer.json or preprocessor_config.json the model still runs from token ids (or text without images)
    const { image, missing } = optionalImage(t, () => readGemma3Image(dir, c));
    if (image) return gemma3Processor(t, c, image);
    const text = plainTextProcessor(t);
    return textProcessor(t, async (prompt, images = []) => {
      if (images.length) throw missing ?? new VlakitError('E_USAGE', 'the model has no tokenizer.json: give token ids instead of text', { file: dir });
      return text.encode(prompt);
    });
  },
  paligemma: async (dir, arch, config) => {
    const c = config as PaliGemmaConfig;
    const t = await readTextParts(dir, arch, config, '<image>');
    // without preprocessor_config.json the model still runs on text prompts (in the prefix format) and token ids
    const { image, missing } = optionalImage(t, () => readPaliGemmaImage(dir, c));
    return paliGemmaProcessor(t, c, image, missing);
  },
  idefics3: async (dir, arch, config, o) => {
    const c = config as Idefics3Config;
    const t = await readTextParts(dir, arch, config, '<image>');
    // a checkpoint without tokenizer.json or preprocessor_config.json still runs from token ids: encode says what is missing
    let missing: VlakitError | undefined;
    if (!t.tokenizer) missing = new VlakitError('E_USAGE', 'the model has no tokenizer.json: give token ids instead of text', { file: dir });
    let image: ReturnType<typeof readIdefics3Image> | undefined;
    try {
      image = readIdefics3Image(dir, c, o);
    } catch (err) {
      if (!(err instanceof VlakitError && err.code === 'E_NOT_FOUND')) throw err;
      missing ??= err;
    }
    if (missing || !image) {
      const why = missing!;
      return textProcessor(t, async () => {
        throw why;
      });
    }
    return idefics3Processor(t, c, image);
  },
};

/**
 * The processor of the checkpoint (or export) in `dir`, built from its own files.
 * @example const p = await openProcessor('../shared/models/smolvlm-256m-instruct', { split: false });
 */
export async function openProcessor(dir: string, o: ProcessorOptions = {}): Promise<Processor> {
  const { arch, config } = readHfConfig(dir);
  const build = BUILDERS[arch.modelType];
  if (!build) throw new VlakitError('E_MODEL', `vlakit has no processor for model_type ${JSON.stringify(arch.modelType)} yet`, { file: dir, field: 'model_type' });
  return build(dir, arch, config, o);
}

/** What `model info` says of a processor: its kind, special ids, template, and what one camera image becomes. */
export interface ProcessorSummary {
  model_type: string;
  tokenizer: boolean;
  special: Processor['special'];
  turn_end: number[];
  chat_template: boolean;
  /** A 640 x 480 image through the processor: tiles and image tokens (vision-language models only). */
  image_640x480?: { tiles: number; image_tokens: number; prompt_tokens: number };
}

/**
 * Summarizes the processor of `dir` (undefined fields where it cannot run: a missing tokenizer or image config).
 * @example const s = await describeProcessor('../shared/models/smolvlm-256m-instruct'); s.image_640x480?.tiles === 13
 */
export async function describeProcessor(dir: string, o: ProcessorOptions = {}): Promise<ProcessorSummary> {
  const p = await openProcessor(dir, o);
  const probe = '\u0000';
  // templates take the content as parts (SmolVLM's) or as a string (many text models'): the first that renders
  const render = (content: ChatMessage['content']) => p.renderChat([{ role: 'user', content }], { addGenerationPrompt: true });
  let rendered = probe;
  if (p.hasTokenizer) {
    try {
      rendered = render([{ type: 'text', text: probe }]);
    } catch {
      rendered = render(probe);
    }
  }
  const out: ProcessorSummary = { model_type: p.modelType, tokenizer: p.hasTokenizer, special: p.special, turn_end: p.turnEnd, chat_template: rendered !== probe };
  if (p.special.image !== undefined && p.hasTokenizer) {
    try {
      const prompt = p.renderChat([{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'What is on the table?' }] }], { addGenerationPrompt: true });
      const r = await p.encode(prompt, [{ width: 640, height: 480, rgb: new Uint8Array(640 * 480 * 3) }]);
      out.image_640x480 = { tiles: r.tiles, image_tokens: r.imagePositions.length, prompt_tokens: r.ids.length };
    } catch (err) {
      if (!(err instanceof VlakitError)) throw err;
    }
  }
  return out;
}
