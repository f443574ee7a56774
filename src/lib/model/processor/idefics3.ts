/**
 * Idefics3's processor (SmolVLM): preprocessor_config.json's image pipeline and processor_config.json's
 * image_seq_len, with each `<image>` of the prompt expanded into its tiles' tokens.
 *
 * Per image: RGB; resized with `resample` (sharp) so its longest edge is size.longest_edge (up or down); rescaled
 * and normalized; with splitting, resized (bilinear, on the float image) to whole multiples of
 * max_image_size.longest_edge = M and cut into rows x cols tiles of M x M plus the whole image resized to M x M
 * (the global tile, last); without, resized to M x M alone. Sizes and resizes follow transformers.js's
 * Idefics3ImageProcessor (the parity reference); transformers' Python processor rounds the short edge up to an
 * even size and does the second resize with `resample` on 8-bit images, which changes pixel values slightly, not
 * the tiles or the prompt.
 */
import path from 'node:path';
import { z } from 'zod';
import { VlakitError } from '../../errors.js';
import { readJsonFile } from '../../io/json-file.js';
import { type Idefics3Config, idefics3Grid } from '../arch/idefics3.js';
import { type Chw, bilinear, crop, normalizeRgb, resampleKernel, resizeRgb, toRgb } from './image.js';
import { type TextParts, textProcessor } from './text.js';
import type { Processor, ProcessorImage, ProcessorInputs } from './types.js';

const Edge = z.looseObject({ longest_edge: z.number().int().positive() });
const Triple = z.tuple([z.number(), z.number(), z.number()]);
const PreprocessorSchema = z.looseObject({
  do_convert_rgb: z.boolean().default(true),
  do_resize: z.boolean().default(true),
  do_rescale: z.boolean().default(true),
  do_normalize: z.boolean().default(true),
  do_image_splitting: z.boolean().default(true),
  rescale_factor: z.number().positive().default(1 / 255),
  image_mean: Triple.default([0.5, 0.5, 0.5]),
  image_std: Triple.default([0.5, 0.5, 0.5]),
  resample: z.number().int().default(1),
  size: Edge.default({ longest_edge: 4 * 364 }),
  max_image_size: Edge.default({ longest_edge: 364 }),
});
const ProcessorConfigSchema = z.looseObject({ image_seq_len: z.number().int().positive().optional() });

/** Caps on the image work, for a CPU: SmolVLM at its defaults turns one image into up to 17 tiles of 512 x 512. */
export interface ImageOptions {
  /** The longest edge images are resized to before tiling (preprocessor_config.json's size.longest_edge). */
  longestEdge?: number;
  /** false: one M x M tile per image, no split (do_image_splitting). */
  split?: boolean;
}

export const FAKE = '<fake_token_around_image>';
export const IMAGE = '<image>';
export const GLOBAL = '<global-img>';

/** The text an `<image>` stands for: tiles row by row with their `<row_r_col_c>` markers, then the global tile. */
export function imagePromptText(rows: number, cols: number, seqLen: number): string {
  const tokens = IMAGE.repeat(seqLen);
  const global = `${FAKE}${GLOBAL}${tokens}${FAKE}`;
  if (rows === 0 && cols === 0) return global;
  let s = '';
  for (let r = 1; r <= rows; r++) {
    for (let c = 1; c <= cols; c++) s += `${FAKE}<row_${r}_col_${c}>${tokens}`;
    s += '\n';
  }
  return `${s}\n${global}`;
}

/** (width, height) with the longest edge at `edge`, transformers.js's rounding (floor after 2 decimals). */
export function longestEdgeSize(width: number, height: number, edge: number): [number, number] {
  const f = Math.min(edge / width, edge / height);
  return [Math.floor(Number((width * f).toFixed(2))), Math.floor(Number((height * f).toFixed(2)))];
}

/** (height, width) rounded up to whole tiles of `m`, the long side first and the other from the aspect ratio. */
export function tiledSize(height: number, width: number, m: number): [number, number] {
  const aspect = width / height;
  if (width >= height) {
    const w = Math.ceil(width / m) * m;
    return [Math.ceil(Math.floor(w / aspect) / m) * m, w];
  }
  const h = Math.ceil(height / m) * m;
  return [h, Math.ceil(Math.floor(h * aspect) / m) * m];
}

export interface Idefics3ImageConfig {
  pre: z.infer<typeof PreprocessorSchema>;
  seqLen: number;
  /** The tile side M. */
  tile: number;
}

/** Reads the image side of an Idefics3 checkpoint and checks it against the model (tile side, tokens per tile). */
export function readIdefics3Image(dir: string, config: Idefics3Config, o: ImageOptions = {}): Idefics3ImageConfig {
  const preFile = path.join(dir, 'preprocessor_config.json');
  const pre = readJsonFile(preFile, PreprocessorSchema, { what: 'image preprocessor config', code: 'E_MODEL' });
  const procFile = path.join(dir, 'processor_config.json');
  const proc = (() => {
    try {
      return readJsonFile(procFile, ProcessorConfigSchema, { what: 'processor config', code: 'E_MODEL' });
    } catch (err) {
      if (err instanceof VlakitError && err.code === 'E_NOT_FOUND') return {};
      throw err;
    }
  })();
  const { tokensPerImage } = idefics3Grid(config);
  const seqLen = proc.image_seq_len ?? tokensPerImage;
  if (seqLen !== tokensPerImage) throw new VlakitError('E_MODEL', `image_seq_len ${seqLen} does not match the model's ${tokensPerImage} image tokens per tile`, { file: procFile, field: 'image_seq_len' });
  const tile = pre.max_image_size.longest_edge;
  if (tile !== config.vision_config.image_size) throw new VlakitError('E_MODEL', `max_image_size.longest_edge ${tile} is not the vision model's image_size ${config.vision_config.image_size}`, { file: preFile, field: 'max_image_size.longest_edge' });
  resampleKernel(pre.resample, preFile);
  if (o.longestEdge !== undefined) {
    if (!Number.isInteger(o.longestEdge) || o.longestEdge < 1) throw new VlakitError('E_USAGE', `the image size must be a positive integer, got ${o.longestEdge}`);
    pre.size = { ...pre.size, longest_edge: o.longestEdge };
  }
  if (o.split !== undefined) pre.do_image_splitting = o.split;
  return { pre, seqLen, tile };
}

/** One image's tiles [n, 3, M, M] (split tiles row by row, then the global one) and its grid. */
export async function idefics3Tiles(img: ProcessorImage, c: Idefics3ImageConfig, what = 'image'): Promise<{ tiles: Chw[]; rows: number; cols: number }> {
  const { pre, tile: M } = c;
  let rgb = await toRgb(img, what);
  if (pre.do_resize) {
    const [w, h] = longestEdgeSize(rgb.width, rgb.height, pre.size.longest_edge);
    rgb = await resizeRgb(rgb, Math.max(w, 1), Math.max(h, 1), resampleKernel(pre.resample));
  }
  const x = normalizeRgb(rgb, { rescale: pre.do_rescale ? pre.rescale_factor : undefined, mean: pre.do_normalize ? pre.image_mean : undefined, std: pre.do_normalize ? pre.image_std : undefined });
  if (!pre.do_image_splitting) return { tiles: [bilinear(x, M, M)], rows: 0, cols: 0 };
  const [H, W] = tiledSize(x.height, x.width, M);
  const big = bilinear(x, H, W); // [3, H, W], H and W whole multiples of M
  if (H <= M && W <= M) return { tiles: [big], rows: 0, cols: 0 };
  const rows = H / M;
  const cols = W / M;
  const tiles: Chw[] = [];
  for (let r = 0; r < rows; r++) for (let col = 0; col < cols; col++) tiles.push(crop(big, r * M, col * M, M, M));
  tiles.push(bilinear(big, M, M));
  return { tiles, rows, cols };
}

/** The Idefics3 processor over the shared text parts. */
export function idefics3Processor(t: TextParts, config: Idefics3Config, img: Idefics3ImageConfig): Processor {
  const imageId = t.idOf(IMAGE, 'image token');
  if (imageId !== config.image_token_id) throw new VlakitError('E_MODEL', `the tokenizer's ${IMAGE} is id ${imageId}; config.json's image_token_id is ${config.image_token_id}`, { file: path.join(t.dir, 'config.json'), field: 'image_token_id' });
  t.idOf(FAKE, 'image boundary token');
  t.idOf(GLOBAL, 'global image token');
  t.special.image = imageId;
  const encode = async (prompt: string, images: ProcessorImage[] = []): Promise<ProcessorInputs> => {
    const pieces = prompt.split(IMAGE);
    if (pieces.length - 1 !== images.length) throw new VlakitError('E_USAGE', `the prompt has ${pieces.length - 1} ${IMAGE} placeholders for ${images.length} images`);
    const M = img.tile;
    const all: Chw[] = [];
    const grids: ProcessorInputs['grids'] = [];
    let text = pieces[0];
    for (let i = 0; i < images.length; i++) {
      const r = await idefics3Tiles(images[i], img, `image ${i}`);
      all.push(...r.tiles);
      grids.push({ rows: r.rows, cols: r.cols });
      text += imagePromptText(r.rows, r.cols, img.seqLen) + pieces[i + 1];
    }
    const ids = t.tokenizer!.encode(text, true);
    const pixels = new Float32Array(all.length * 3 * M * M); // [tiles, 3, M, M]
    all.forEach((tile, i) => pixels.set(tile.data, i * 3 * M * M));
    const imagePositions: number[] = [];
    ids.forEach((id, i) => id === imageId && imagePositions.push(i));
    if (imagePositions.length !== all.length * img.seqLen) throw new VlakitError('E_MODEL', `the tokenizer gave ${imagePositions.length} image tokens for ${all.length} tiles of ${img.seqLen}`, { file: path.join(t.dir, 'tokenizer.json') });
    return { ids, pixels, tiles: all.length, grids, imagePositions };
  };
  return textProcessor(t, encode);
}
