/**
 * Image preprocessing pieces shared by processors: decoding to RGB, resampling with sharp, rescale + normalize to
 * a float CHW image, and a float bilinear resize (onnxruntime's `Resize` in linear/half_pixel mode, the resize
 * transformers.js applies to normalized images).
 */
import sharp, { type OutputInfo } from 'sharp';

/** sharp's resampling kernels. */
export type Kernel = 'nearest' | 'linear' | 'cubic' | 'lanczos3';
import { VlakitError } from '../../errors.js';
import type { ProcessorImage } from './types.js';

/** An RGB image, 8 bits per channel, rows of width * 3 bytes. */
export interface Rgb {
  width: number;
  height: number;
  rgb: Uint8Array;
}

/** A float image, channels first: data [C, H, W] flattened. */
export interface Chw {
  channels: number;
  height: number;
  width: number;
  data: Float32Array;
}

/**
 * An image as RGB: encoded bytes decoded by sharp (EXIF orientation applied; grey replicated, alpha dropped, as
 * transformers' convert_rgb does in transformers.js), raw RGB checked for its length.
 */
export async function toRgb(img: ProcessorImage, what = 'image'): Promise<Rgb> {
  if (!(img instanceof Uint8Array)) {
    if (!Number.isInteger(img.width) || !Number.isInteger(img.height) || img.width < 1 || img.height < 1 || img.rgb.length !== img.width * img.height * 3) {
      throw new VlakitError('E_IMAGE', `${what}: raw RGB of ${img.rgb.length} bytes is not ${img.width} x ${img.height} x 3`);
    }
    return img;
  }
  let raw: { data: Buffer; info: OutputInfo };
  try {
    raw = await sharp(img).rotate().raw().toBuffer({ resolveWithObject: true });
  } catch (err) {
    throw new VlakitError('E_IMAGE', `${what} cannot be decoded (${(err as Error).message})`, {}, { cause: err });
  }
  const { width, height, channels } = raw.info;
  const src = raw.data;
  if (channels === 3) return { width, height, rgb: new Uint8Array(src.buffer, src.byteOffset, src.length) };
  const rgb = new Uint8Array(width * height * 3);
  for (let p = 0; p < width * height; p++) {
    for (let c = 0; c < 3; c++) rgb[p * 3 + c] = channels <= 2 ? src[p * channels] : src[p * channels + c];
  }
  return { width, height, rgb };
}

/** PIL's resample codes (preprocessor_config.json `resample`) as sharp kernels. */
const KERNELS: Record<number, Kernel> = { 0: 'nearest', 1: 'lanczos3', 2: 'linear', 3: 'cubic' };

export function resampleKernel(code: number, file?: string): Kernel {
  const k = KERNELS[code];
  if (!k) throw new VlakitError('E_MODEL', `resample ${code} is not supported (0 nearest, 1 lanczos, 2 bilinear, 3 bicubic)`, { file, field: 'resample' });
  return k;
}

/**
 * An RGB image resized to width x height as transformers.js resizes for a PIL resample code: nearest, bilinear and
 * bicubic through sharp's affine transform (no antialiasing), lanczos through sharp's resize (unchanged when it
 * has that size already).
 */
export async function resizeRgbPil(img: Rgb, width: number, height: number, resample: number, file?: string): Promise<Rgb> {
  const kernel = resampleKernel(resample, file);
  if (kernel === 'lanczos3' || (img.width === width && img.height === height)) return resizeRgb(img, width, height, kernel);
  const interpolator = kernel === 'nearest' ? 'nearest' : kernel === 'linear' ? 'bilinear' : 'bicubic';
  const { data, info } = await sharp(img.rgb, { raw: { width: img.width, height: img.height, channels: 3 } })
    .affine([width / img.width, 0, 0, height / img.height], { interpolator })
    .raw()
    .toBuffer({ resolveWithObject: true });
  if (info.width !== width || info.height !== height || info.channels !== 3) throw new VlakitError('E_IMAGE', `resizing ${img.width} x ${img.height} to ${width} x ${height} gave ${info.width} x ${info.height}`);
  return { width, height, rgb: new Uint8Array(data.buffer, data.byteOffset, data.length) };
}

/** An RGB image resized to width x height with sharp (unchanged when it has that size already). */
export async function resizeRgb(img: Rgb, width: number, height: number, kernel: Kernel): Promise<Rgb> {
  if (img.width === width && img.height === height) return img;
  const out = await sharp(img.rgb, { raw: { width: img.width, height: img.height, channels: 3 } })
    .resize({ width, height, fit: 'fill', kernel })
    .raw()
    .toBuffer();
  return { width, height, rgb: new Uint8Array(out.buffer, out.byteOffset, out.length) };
}

/** RGB bytes -> float [3, H, W]: x * rescale, then (x - mean[c]) / std[c] (each step stored in float32). */
export function normalizeRgb(img: Rgb, o: { rescale?: number; mean?: number[]; std?: number[] }): Chw {
  const { width: W, height: H } = img;
  const data = new Float32Array(3 * H * W); // [3, H, W]
  for (let c = 0; c < 3; c++) {
    const mean = o.mean?.[c];
    const std = o.std?.[c];
    for (let p = 0; p < H * W; p++) {
      let v = Math.fround(o.rescale === undefined ? img.rgb[p * 3 + c] : Math.fround(o.rescale * img.rgb[p * 3 + c]));
      if (mean !== undefined && std !== undefined) v = Math.fround((v - mean) / std);
      data[c * H * W + p] = v;
    }
  }
  return { channels: 3, height: H, width: W, data };
}

/** Source taps of a linear resize along one axis (half_pixel coordinates, clamped at the edges). */
function taps(outSize: number, inSize: number): { i0: Int32Array; i1: Int32Array; w1: Float64Array } {
  // in float32 as onnxruntime computes them (the coordinates of a 2048-pixel edge move by ~1e-4 pixel otherwise)
  const f = Math.fround;
  const scale = f(outSize / inSize);
  const i0 = new Int32Array(outSize);
  const i1 = new Int32Array(outSize);
  const w1 = new Float64Array(outSize);
  for (let o = 0; o < outSize; o++) {
    const x = Math.min(Math.max(f(f(f(o + 0.5) / scale) - 0.5), 0), inSize - 1);
    const lo = Math.min(Math.floor(x), inSize - 1);
    i0[o] = lo;
    i1[o] = Math.min(lo + 1, inSize - 1);
    w1[o] = x - lo;
  }
  return { i0, i1, w1 };
}

/**
 * A float image resized to height x width by bilinear interpolation without antialiasing (onnxruntime's `Resize`,
 * mode linear, coordinate_transformation_mode half_pixel): what transformers.js's interpolate_4d does.
 */
export function bilinear(img: Chw, height: number, width: number): Chw {
  if (img.height === height && img.width === width) return img;
  const ys = taps(height, img.height);
  const xs = taps(width, img.width);
  const out = new Float32Array(img.channels * height * width); // [C, height, width]
  const W = img.width;
  for (let c = 0; c < img.channels; c++) {
    const src = c * img.height * W;
    for (let y = 0; y < height; y++) {
      const r0 = src + ys.i0[y] * W;
      const r1 = src + ys.i1[y] * W;
      const wy = ys.w1[y];
      for (let x = 0; x < width; x++) {
        const a = xs.i0[x];
        const b = xs.i1[x];
        const wx = xs.w1[x];
        const top = img.data[r0 + a] * (1 - wx) + img.data[r0 + b] * wx;
        const bottom = img.data[r1 + a] * (1 - wx) + img.data[r1 + b] * wx;
        out[(c * height + y) * width + x] = top * (1 - wy) + bottom * wy;
      }
    }
  }
  return { channels: img.channels, height, width, data: out };
}

/** The rectangle [y0, y0 + h) x [x0, x0 + w) of a float image. */
export function crop(img: Chw, y0: number, x0: number, h: number, w: number): Chw {
  const out = new Float32Array(img.channels * h * w); // [C, h, w]
  for (let c = 0; c < img.channels; c++) {
    for (let y = 0; y < h; y++) {
      const from = (c * img.height + y0 + y) * img.width + x0;
      out.set(img.data.subarray(from, from + w), (c * h + y) * w);
    }
  }
  return { channels: img.channels, height: h, width: w, data: out };
}
