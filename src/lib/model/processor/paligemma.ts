/**
 * PaliGemma 2's processor (PaliGemmaForConditionalGeneration): SigLIP's image pipeline and the prefix format of
 * transformers' PaliGemmaProcessor: image tokens first, then bos, the prefix text and "\n".
 *
 * Per image: RGB; resized to size.height x size.width (the vision image_size: 224, 448 or 896; `resample` 3 =
 * bicubic for the released models, as transformers.js resizes: through sharp's affine transform); rescaled (1/255)
 * and normalized (mean and std 0.5). In the prompt, as transformers' PaliGemmaProcessor.__call__:
 * - without `<image>` placeholders: image_seq_length x `<image>` per image, then `<bos>` + the prompt + "\n";
 * - with them (one per image): each expanded in place to image_seq_length x `<image>`, `<bos>` inserted right after
 *   the last image token (at the start when there are none), "\n" appended.
 * The bos is inserted whether or not the prompt already has one (transformers does not look; a prompt that starts
 * with `<bos>` gets two), and the tokenizer adds no special tokens (the processor sets add_bos_token false).
 * image_seq_length comes from preprocessor_config.json (then processor_config.json) and must be the SigLIP patch
 * count; the image token string is tokenizer_config.json's `image_token` (else `<image>`), its id config.json's
 * image_token_index.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { VlakitError } from '../../errors.js';
import { readJsonFile } from '../../io/json-file.js';
import type { PaliGemmaConfig } from '../arch/gemma.js';
import { type SquareImageConfig, imagePositionsOf, readSquareImage, squarePixels } from './square.js';
import type { TextParts } from './text.js';
import { textProcessor } from './text.js';
import type { Processor, ProcessorImage, ProcessorInputs } from './types.js';

const TokenizerConfigSchema = z.looseObject({ image_token: z.union([z.string(), z.looseObject({ content: z.string() })]).nullish() });

export interface PaliGemmaImageConfig extends SquareImageConfig {
  /** The image token string (`<image>`). */
  token: string;
}

/** Reads the image side of a PaliGemma checkpoint and checks it against the model (image size, tokens per image). */
export function readPaliGemmaImage(dir: string, config: PaliGemmaConfig): PaliGemmaImageConfig {
  const { image } = readSquareImage(dir, { imageSize: config.vision.image_size, tokens: config.tokensPerImage, tokensName: '(image_size / patch_size)^2', resample: 3, seqLenFrom: 'preprocessor' });
  const tokFile = path.join(dir, 'tokenizer_config.json');
  const tc = existsSync(tokFile) ? readJsonFile(tokFile, TokenizerConfigSchema, { what: 'tokenizer config', code: 'E_MODEL' }) : {};
  const token = tc.image_token === null || tc.image_token === undefined ? '<image>' : typeof tc.image_token === 'string' ? tc.image_token : tc.image_token.content;
  return { ...image, token };
}

/**
 * The prompt string transformers' PaliGemmaProcessor tokenizes for `prompt` and `images` images: image tokens
 * first (or the placeholders expanded in place), bos after the last image token, "\n" at the end.
 */
export function paliGemmaPromptText(prompt: string, images: number, c: Pick<PaliGemmaImageConfig, 'seqLen' | 'token'>, bos: string): string {
  const block = c.token.repeat(c.seqLen);
  const placeholders = prompt.split(c.token).length - 1;
  if (placeholders === 0) return `${block.repeat(images)}${bos}${prompt}\n`;
  if (placeholders !== images) throw new VlakitError('E_USAGE', `the prompt has ${placeholders} ${c.token} placeholders for ${images} images (give one per image, or none: the images then go first)`);
  const expanded = prompt.split(c.token).join(block);
  const at = expanded.lastIndexOf(c.token) + c.token.length;
  return `${expanded.slice(0, at)}${bos}${expanded.slice(at)}\n`;
}

/**
 * The PaliGemma processor over the shared text parts. `img` undefined (no preprocessor_config.json): text prompts
 * in the prefix format, images refused with `missing`.
 */
export function paliGemmaProcessor(t: TextParts, config: PaliGemmaConfig, img: PaliGemmaImageConfig | undefined, missing?: VlakitError): Processor {
  const file = path.join(t.dir, 'config.json');
  const token = img?.token ?? '<image>';
  if (t.tokenizer) {
    const imageId = t.idOf(token, 'image token');
    if (imageId !== config.image_token_id) throw new VlakitError('E_MODEL', `the tokenizer's ${token} is id ${imageId}; config.json's image_token_index is ${config.image_token_id}`, { file, field: 'image_token_index' });
  }
  t.special.image = config.image_token_id;
  const encode = async (prompt: string, images: ProcessorImage[] = []): Promise<ProcessorInputs> => {
    if (!t.tokenizer) throw new VlakitError('E_USAGE', 'the model has no tokenizer.json: give token ids instead of text', { file: t.dir });
    if (!t.bosToken) throw new VlakitError('E_MODEL', "the tokenizer files name no bos_token, which PaliGemma's prompt format needs", { file: path.join(t.dir, 'tokenizer_config.json'), field: 'bos_token' });
    if (images.length && !img) throw missing ?? new VlakitError('E_NOT_FOUND', 'the model has no preprocessor_config.json', { file: t.dir });
    const c = img ?? { seqLen: config.tokensPerImage, token, size: 0, resample: 3 };
    const pixels = images.length ? await squarePixels(images, img!) : new Float32Array(0); // [N, 3, S, S]
    const ids = t.tokenizer.encode(paliGemmaPromptText(prompt, images.length, c, t.bosToken), false);
    const imagePositions = imagePositionsOf(ids, config.image_token_id, images.length, c.seqLen, t.dir);
    return { ids, pixels, tiles: images.length, grids: images.map(() => ({ rows: 0, cols: 0 })), imagePositions };
  };
  return textProcessor(t, encode);
}
