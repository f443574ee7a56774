/**
 * Gemma 3's processor (Gemma3ForConditionalGeneration): preprocessor_config.json's image pipeline and each
 * `<start_of_image>` of the prompt (the chat template writes one per image part) expanded into the image's tokens.
 *
 * Per image: RGB; resized to size.height x size.width (the vision image_size, 896 for the released models;
 * `resample` as transformers.js resizes: bilinear through sharp's affine transform); rescaled and normalized (mean
 * and std 0.5). No pan-and-scan (transformers' default: do_pan_and_scan false). In the prompt each boi token becomes
 * `\n\n<start_of_image>` + image_seq_length x `<image_soft_token>` + `<end_of_image>\n\n`, as transformers'
 * Gemma3Processor.full_image_sequence. The token strings come from tokenizer_config.json (boi_token, eoi_token,
 * image_token, or extra_special_tokens), their ids from tokenizer.json, checked against config.json.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { VlakitError } from '../../errors.js';
import { readJsonFile } from '../../io/json-file.js';
import type { Gemma3Config } from '../arch/gemma.js';
import { type SquareImageConfig, imagePositionsOf, readSquareImage, squarePixels } from './square.js';
import { type TextParts, encodePrompt, textProcessor } from './text.js';
import type { Processor, ProcessorImage, ProcessorInputs } from './types.js';

const TokenText = z.union([z.string(), z.looseObject({ content: z.string() })]).nullish();
const TokenizerConfigSchema = z.looseObject({
  boi_token: TokenText,
  eoi_token: TokenText,
  image_token: TokenText,
  extra_special_tokens: z.union([z.record(z.string(), z.unknown()), z.array(z.unknown())]).nullish(),
});

export interface Gemma3ImageConfig extends SquareImageConfig {
  tokens: { boi: string; eoi: string; image: string };
}

const text = (v: z.infer<typeof TokenText>): string | undefined => (v === null || v === undefined ? undefined : typeof v === 'string' ? v : v.content);

/** The three image token strings tokenizer_config.json names (top-level or under extra_special_tokens). */
function imageTokens(dir: string): Gemma3ImageConfig['tokens'] {
  const file = path.join(dir, 'tokenizer_config.json');
  const cfg = existsSync(file) ? readJsonFile(file, TokenizerConfigSchema, { what: 'tokenizer config', code: 'E_MODEL' }) : {};
  const extra = cfg.extra_special_tokens && !Array.isArray(cfg.extra_special_tokens) ? cfg.extra_special_tokens : {};
  const pick = (k: 'boi_token' | 'eoi_token' | 'image_token'): string => {
    const v = text(cfg[k]) ?? text(TokenText.catch(undefined).parse(extra[k]));
    if (v === undefined) throw new VlakitError('E_MODEL', `tokenizer_config.json does not name the ${k} Gemma 3's processor needs`, { file, field: k });
    return v;
  };
  return { boi: pick('boi_token'), eoi: pick('eoi_token'), image: pick('image_token') };
}

/** Reads the image side of a Gemma 3 checkpoint and checks it against the model (image size, tokens per image). */
export function readGemma3Image(dir: string, config: Gemma3Config): Gemma3ImageConfig {
  const { image, pre, preFile } = readSquareImage(dir, { imageSize: config.vision.image_size, tokens: config.mm_tokens_per_image, tokensName: 'mm_tokens_per_image', resample: 2, size: 896, seqLenFrom: 'processor' });
  if (pre.do_pan_and_scan) throw new VlakitError('E_MODEL', 'pan-and-scan crops (do_pan_and_scan) are not supported', { file: preFile, field: 'do_pan_and_scan' });
  return { ...image, tokens: imageTokens(dir) };
}

/** What one boi token of the prompt stands for (transformers' Gemma3Processor.full_image_sequence). */
export function gemma3ImageText(c: Pick<Gemma3ImageConfig, 'seqLen' | 'tokens'>): string {
  return `\n\n${c.tokens.boi}${c.tokens.image.repeat(c.seqLen)}${c.tokens.eoi}\n\n`;
}

/** The Gemma 3 processor over the shared text parts. */
export function gemma3Processor(t: TextParts, config: Gemma3Config, img: Gemma3ImageConfig): Processor {
  const file = path.join(t.dir, 'config.json');
  const imageId = t.idOf(img.tokens.image, 'image token');
  if (imageId !== config.image_token_id) throw new VlakitError('E_MODEL', `the tokenizer's ${img.tokens.image} is id ${imageId}; config.json's image_token_index is ${config.image_token_id}`, { file, field: 'image_token_index' });
  const boiId = t.idOf(img.tokens.boi, 'image start token');
  if (boiId !== config.boi_token_id) throw new VlakitError('E_MODEL', `the tokenizer's ${img.tokens.boi} is id ${boiId}; config.json's boi_token_index is ${config.boi_token_id}`, { file, field: 'boi_token_index' });
  t.idOf(img.tokens.eoi, 'image end token');
  t.special.image = imageId;
  const encode = async (prompt: string, images: ProcessorImage[] = []): Promise<ProcessorInputs> => {
    const pieces = prompt.split(img.tokens.boi);
    if (pieces.length - 1 !== images.length) throw new VlakitError('E_USAGE', `the prompt has ${pieces.length - 1} ${img.tokens.boi} placeholders for ${images.length} images`);
    const pixels = await squarePixels(images, img); // [N, 3, S, S]
    const ids = encodePrompt(t, pieces.join(gemma3ImageText(img)));
    const imagePositions = imagePositionsOf(ids, imageId, images.length, img.seqLen, t.dir);
    return { ids, pixels, tiles: images.length, grids: images.map(() => ({ rows: 0, cols: 0 })), imagePositions };
  };
  return textProcessor(t, encode);
}
