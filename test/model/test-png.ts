/** Test images for the processor parity tests. */
import sharp from 'sharp';

/** A PNG with edges, gradients and noise (resampling differences show), `channels` 1, 3 or 4. */
export async function noisyPng(width: number, height: number, channels: 1 | 3 | 4, seed = 1): Promise<Uint8Array> {
  const data = Buffer.alloc(width * height * channels);
  let s = seed;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      s = (s * 1103515245 + 12345) >>> 0;
      for (let c = 0; c < channels; c++) data[(y * width + x) * channels + c] = Math.min(255, Math.round(((x * 255) / width) * (c === 0 ? 1 : 0.2) + ((y * 255) / height) * (c === 1 ? 1 : 0.3) + ((x ^ y) & 8 ? 40 : 0) + ((s >>> (8 * c)) & 31)));
    }
  }
  return new Uint8Array(await sharp(data, { raw: { width, height, channels } }).png().toBuffer());
}
