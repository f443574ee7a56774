/**
 * PaliGemma 2's processor against transformers.js's AutoProcessor (PaliGemmaProcessor + SiglipImageProcessor, a
 * dev dependency, local files only) with paligemma2-3b-pt-224's image settings (224 x 224 bicubic, 256 image
 * tokens) on the Gemma tokenizer with `<image>` added (paligemma-files.ts): ids identical (transformers.js called
 * with add_special_tokens false, as transformers' Python processor sets add_bos_token false) and pixel values
 * within 1e-6; the prefix format checked by hand.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { AutoProcessor, RawImage, env } from '@huggingface/transformers';
import { openProcessor } from '../../src/lib/model/processor/index.js';
import type { Processor } from '../../src/lib/model/processor/types.js';
import { tempDir } from '../helpers.js';
import { noisyPng as png } from './test-png.js';
import { PALIGEMMA_PREPROCESSOR, PALI_IMAGE_ID, paliGemmaConfig, writePaliGemmaTokenizer } from './paligemma-files.js';

const root = tempDir('vlakit-pali-proc-');
const dir = path.join(root, 'paligemma');

type Ref = (i: RawImage[], t: string, o?: object) => Promise<Record<string, { data: ArrayLike<number | bigint>; dims: number[] }>>;
let ref: Ref;
let proc: Processor;

beforeAll(async () => {
  mkdirSync(dir);
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(paliGemmaConfig(224, 14)));
  writePaliGemmaTokenizer(dir);
  writeFileSync(path.join(dir, 'preprocessor_config.json'), JSON.stringify(PALIGEMMA_PREPROCESSOR));
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  env.localModelPath = `${root}/`;
  ref = (await AutoProcessor.from_pretrained('paligemma')) as unknown as Ref;
  proc = await openProcessor(dir);
}, 120_000);

async function reference(prompt: string, images: Uint8Array[]) {
  const raws = await Promise.all(images.map((b) => RawImage.fromBlob(new Blob([b]))));
  const r = await ref(raws, prompt, { add_special_tokens: false });
  return { ids: Array.from(r.input_ids.data, Number), pixels: r.pixel_values.data as Float32Array, dims: r.pixel_values.dims };
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe('PaliGemma 2 processor vs transformers.js AutoProcessor (paligemma2-3b-pt-224 image settings)', () => {
  it('special ids from the files; no chat template: a user turn renders as its text, image parts as <image>', () => {
    expect(proc.special).toMatchObject({ bos: 2, pad: 0, image: PALI_IMAGE_ID });
    expect(proc.special.eos).toEqual([1]);
    expect(proc.turnEnd).toEqual([1]);
    expect(proc.renderChat([{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'caption en' }] }], { addGenerationPrompt: true })).toBe('<image>caption en');
  });

  const cases: { name: string; prompt: string; sizes: [number, number, 1 | 3 | 4][] }[] = [
    { name: '40x30 RGB upscaled, images first', prompt: 'caption en', sizes: [[40, 30, 3]] },
    { name: '500x300 RGBA downscaled, a placeholder in place', prompt: '<image>answer en Where is the cube?', sizes: [[500, 300, 4]] },
    { name: 'two images: 300x200 grey and 224x224', prompt: 'detect cube ; bowl', sizes: [[300, 200, 1], [224, 224, 3]] },
  ];
  for (const c of cases) {
    it(`${c.name}: ids exact, pixel values within 1e-6`, async () => {
      const imgs = await Promise.all(c.sizes.map(([w, h, ch], i) => png(w, h, ch, i + 3)));
      const want = await reference(c.prompt, imgs);
      const got = await proc.encode(c.prompt, imgs);
      expect(got.ids).toEqual(want.ids);
      expect(want.dims).toEqual([imgs.length, 3, 224, 224]);
      expect(got.tiles).toBe(imgs.length);
      expect(got.pixels.length).toBe(want.pixels.length);
      expect(maxAbsDiff(got.pixels, want.pixels)).toBeLessThanOrEqual(1e-6);
      // by hand: 256 image tokens per image, then <bos>, the prefix without the placeholder, "\n" (id 107)
      const n = 256 * imgs.length;
      expect(got.imagePositions).toEqual([...Array(n).keys()]);
      expect(got.ids.slice(0, n + 1)).toEqual([...Array(n).fill(PALI_IMAGE_ID), 2]);
      expect(got.ids.slice(n + 1)).toEqual(proc.encodeText(`${c.prompt.replace('<image>', '')}\n`));
      expect(got.ids.at(-1)).toBe(107);
    });
  }

  it('a prompt that already starts with <bos> gets a second one, as transformers inserts it unconditionally', async () => {
    const img = await png(32, 32, 3);
    const got = await proc.encode('<bos>caption en', [img]);
    expect(got.ids.slice(256, 258)).toEqual([2, 2]);
    expect(got.ids).toEqual((await reference('<bos>caption en', [img])).ids);
  });

  it('a text prompt without images: bos + prompt + "\\n"; a placeholder count that does not match is a usage error', async () => {
    expect((await proc.encode('caption en')).ids).toEqual([2, ...proc.encodeText('caption en\n')]);
    await expect(proc.encode('<image><image>caption en', [await png(8, 8, 3)])).rejects.toThrow(/2 <image> placeholders for 1 images/);
  });
});
