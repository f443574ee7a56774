/**
 * The image side the SigLIP-based Gemma processors share (Gemma 3, PaliGemma 2): one square tile per image at the
 * vision image_size, from preprocessor_config.json (resize with `resample` as transformers.js resizes, rescale,
 * normalize) and image_seq_length (preprocessor_config.json or processor_config.json) checked against the model;
 * each processor adds its own prompt format and token strings.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { VlakitError } from '../../errors.js';
import { readJsonFile } from '../../io/json-file.js';
import { normalizeRgb, resampleKernel, resizeRgbPil, toRgb } from './image.js';
import type { ProcessorImage } from './types.js';

const Triple = z.tuple([z.number(), z.number(), z.number()]);
const PreprocessorSchema = z.looseObject({
  do_resize: z.boolean().nullish(),
  do_rescale: z.boolean().nullish(),
  do_normalize: z.boolean().nullish(),
  do_pan_and_scan: z.boolean().nullish(),
  rescale_factor: z.number().positive().default(1 / 255),
  image_mean: Triple.default([0.5, 0.5, 0.5]),
  image_std: Triple.default([0.5, 0.5, 0.5]),
  resample: z.number().int().optional(),
  size: z.looseObject({ height: z.number().int().positive(), width: z.number().int().positive() }).optional(),
  image_seq_length: z.number().int().positive().optional(),
});
const ProcessorConfigSchema = z.looseObject({ image_seq_length: z.number().int().positive().optional() });

export interface SquareImageConfig {
  size: number;
  resample: number;
  rescale?: number;
  mean?: number[];
  std?: number[];
  seqLen: number;
}

export interface SquareImageOptions {
  /** The vision model's image_size. */
  imageSize: number;
  /** The model's image tokens per image, and what it is called in messages. */
  tokens: number;
  tokensName: string;
  /** resample when preprocessor_config.json has none (Gemma 3: 2 bilinear; PaliGemma: 3 bicubic). */
  resample: number;
  /** size when preprocessor_config.json has none (default: the vision image_size). */
  size?: number;
  /** Which file's image_seq_length wins when both have one. */
  seqLenFrom: 'processor' | 'preprocessor';
}

/**
 * Reads and checks the image side of a checkpoint; returns it with the raw preprocessor config (for checks of a
 * processor's own).
 */
export function readSquareImage(dir: string, o: SquareImageOptions): { image: SquareImageConfig; pre: z.infer<typeof PreprocessorSchema>; preFile: string } {
  const preFile = path.join(dir, 'preprocessor_config.json');
  const pre = readJsonFile(preFile, PreprocessorSchema, { what: 'image preprocessor config', code: 'E_MODEL' });
  const procFile = path.join(dir, 'processor_config.json');
  const proc = existsSync(procFile) ? readJsonFile(procFile, ProcessorConfigSchema, { what: 'processor config', code: 'E_MODEL' }) : {};
  const fromProc = proc.image_seq_length !== undefined && (o.seqLenFrom === 'processor' || pre.image_seq_length === undefined);
  const seqLen = (fromProc ? proc.image_seq_length : pre.image_seq_length) ?? o.tokens;
  const seqFile = fromProc ? procFile : preFile;
  if (seqLen !== o.tokens) throw new VlakitError('E_MODEL', `image_seq_length ${seqLen} is not the model's ${o.tokens} image tokens (${o.tokensName})`, { file: seqFile, field: 'image_seq_length' });
  const S = o.imageSize;
  const size = pre.size ?? { height: o.size ?? S, width: o.size ?? S };
  if (size.height !== S || size.width !== S) throw new VlakitError('E_MODEL', `size ${size.height} x ${size.width} is not the vision model's image_size ${S}`, { file: preFile, field: 'size' });
  if (pre.do_resize === false) throw new VlakitError('E_MODEL', 'do_resize false is not supported: images must be resized to the vision image_size', { file: preFile, field: 'do_resize' });
  const resample = pre.resample ?? o.resample;
  resampleKernel(resample, preFile);
  const norm = pre.do_normalize ?? true;
  const image = {
    size: S,
    resample,
    rescale: pre.do_rescale ?? true ? pre.rescale_factor : undefined,
    mean: norm ? pre.image_mean : undefined,
    std: norm ? pre.image_std : undefined,
    seqLen,
  };
  return { image, pre, preFile };
}

/** The images as pixel_values [N, 3, S, S]. */
export async function squarePixels(images: ProcessorImage[], c: SquareImageConfig): Promise<Float32Array> {
  const S = c.size;
  const pixels = new Float32Array(images.length * 3 * S * S); // [N, 3, S, S]
  for (let i = 0; i < images.length; i++) {
    const rgb = await resizeRgbPil(await toRgb(images[i], `image ${i}`), S, S, c.resample);
    pixels.set(normalizeRgb(rgb, { rescale: c.rescale, mean: c.mean, std: c.std }).data, i * 3 * S * S);
  }
  return pixels;
}

/** The positions of the image token in `ids`, checked to be `seqLen` per image. */
export function imagePositionsOf(ids: number[], imageId: number, images: number, seqLen: number, dir: string): number[] {
  const positions: number[] = [];
  ids.forEach((id, i) => id === imageId && positions.push(i));
  if (positions.length !== images * seqLen) throw new VlakitError('E_MODEL', `the tokenizer gave ${positions.length} image tokens for ${images} images of ${seqLen}`, { file: path.join(dir, 'tokenizer.json') });
  return positions;
}
