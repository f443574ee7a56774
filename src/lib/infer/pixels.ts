/** Camera images ({mime, b64} as records hold them) to model input: RGB resized to S x S, in [-1, 1]. */
import sharp from 'sharp';
import { VlakitError } from '../errors.js';
import type { ImageJson } from '../io/json.js';

/** Recently converted frames: a closed loop converts each frame more than once (the verifier's "after" is the next
 * cycle's input). Keyed by the base64 string itself, whose hash V8 keeps with the string. */
const recent = new Map<string, Float32Array>();
const RECENT = 16;

async function convert(img: ImageJson | Uint8Array, size: number): Promise<Float32Array> {
  const key = img instanceof Uint8Array ? undefined : `${size}:${img.b64}`;
  const hit = key ? recent.get(key) : undefined;
  if (hit) return hit;
  const bytes = img instanceof Uint8Array ? img : Buffer.from(img.b64, 'base64');
  const raw = await sharp(bytes).removeAlpha().resize(size, size, { fit: 'fill' }).raw().toBuffer();
  const out = new Float32Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw[i] / 127.5 - 1;
  if (key) {
    recent.set(key, out);
    if (recent.size > RECENT) recent.delete(recent.keys().next().value!);
  }
  return out;
}

/**
 * [cameras, S, S, 3] flattened; cameras beyond `images` stay 0 (mid-grey), images beyond `cameras` are left out.
 * @example const px = await imagesToPixels([obs.image], 1, 64)
 */
export async function imagesToPixels(images: (ImageJson | Uint8Array)[], cameras: number, size: number, what = 'image'): Promise<Float32Array> {
  const out = new Float32Array(cameras * size * size * 3);
  for (let c = 0; c < Math.min(cameras, images.length); c++) {
    let px: Float32Array;
    try {
      px = await convert(images[c], size);
    } catch (err) {
      throw new VlakitError('E_IMAGE', `${what} ${c} cannot be decoded (${(err as Error).message})`, {}, { cause: err });
    }
    out.set(px, c * size * size * 3);
  }
  return out;
}
