/**
 * Processors against an independent implementation: the Idefics3 processor on SmolVLM-256M-Instruct's real files
 * (../shared/models) compared with transformers.js's AutoProcessor (a dev dependency, local files only); the text
 * side (special ids, chat template, end of turn) against its tokenizer; hand-worked sizes and prompt formats from
 * transformers' processing_idefics3.py / image_processing_idefics3.py.
 */
import { cpSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { AutoProcessor, RawImage, env } from '@huggingface/transformers';
import { describeProcessor, openProcessor } from '../../src/lib/model/processor/index.js';
import { imagePromptText, longestEdgeSize, tiledSize } from '../../src/lib/model/processor/idefics3.js';
import type { ChatMessage } from '../../src/lib/model/processor/types.js';
import { VlakitError } from '../../src/lib/errors.js';
import { tempDir } from '../helpers.js';
import { STORIES } from './stories.js';

const MODELS = path.resolve('../shared/models');
const SMOLVLM = path.join(MODELS, 'smolvlm-256m-instruct');

/** A PNG with edges, gradients and noise (resampling differences show), `channels` 1, 3 or 4. */
async function png(width: number, height: number, channels: 1 | 3 | 4, seed = 1): Promise<Uint8Array> {
  const data = Buffer.alloc(width * height * channels);
  let s = seed;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      s = (s * 1103515245 + 12345) >>> 0;
      for (let c = 0; c < channels; c++) {
        const v = c === 3 ? 128 + ((x * 5) % 128) : ((x * 255) / width) * (c === 0 ? 1 : 0) + ((y * 255) / height) * (c === 1 ? 1 : 0.3) + ((x ^ y) & 8 ? 40 : 0) + ((s >>> (8 * c)) & 31);
        data[(y * width + x) * channels + c] = Math.min(255, Math.round(v));
      }
    }
  }
  return new Uint8Array(await sharp(data, { raw: { width, height, channels } }).png().toBuffer());
}

const PROMPT = (n: number) => `<|im_start|>User:${'<image>'.repeat(n)}What is on the table?<end_of_utterance>\nAssistant:`;

type Ref = Awaited<ReturnType<typeof AutoProcessor.from_pretrained>>;
let ref: Ref;

beforeAll(async () => {
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  env.localModelPath = `${MODELS}/`;
  ref = await AutoProcessor.from_pretrained('smolvlm-256m-instruct');
});

/** transformers.js's ids and pixel values for PNGs (decoded by RawImage, as a user of it would). */
async function reference(prompt: string, images: Uint8Array[], o: { split?: boolean; longestEdge?: number } = {}) {
  const raws = await Promise.all(images.map((b) => RawImage.fromBlob(new Blob([b]))));
  const ip = (ref as unknown as { image_processor: { size: { longest_edge: number } } }).image_processor;
  const saved = ip.size;
  if (o.longestEdge) ip.size = { longest_edge: o.longestEdge };
  try {
    const r = await (ref as unknown as (t: string, i: RawImage[], o: object) => Promise<Record<string, { data: ArrayLike<number | bigint>; dims: number[] }>>)(prompt, raws, { do_image_splitting: o.split ?? true });
    return { ids: Array.from(r.input_ids.data, Number), pixels: r.pixel_values.data as Float32Array, dims: r.pixel_values.dims };
  } finally {
    ip.size = saved;
  }
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

// transformers.js resizes twice: sharp's lanczos3 to the longest edge (vlakit uses the same sharp call, so these bytes
// are identical), then onnxruntime's float32 bilinear Resize to whole tiles; vlakit computes the second in float32 the
// same way, so values differ by float rounding only (measured: at most 1.2e-7).
const PIXEL_TOLERANCE = 1e-6;

describe('Idefics3 processor vs transformers.js AutoProcessor (SmolVLM-256M-Instruct files)', () => {
  const cases: { name: string; w: number; h: number; ch: 1 | 3 | 4; split?: boolean; longestEdge?: number; tiles: number }[] = [
    { name: '40x30 RGB, upscaled to 2048x1536: 4x3 tiles + global', w: 40, h: 30, ch: 3, tiles: 13 },
    { name: '64x64 RGBA (alpha dropped): 4x4 + global', w: 64, h: 64, ch: 4, tiles: 17 },
    { name: '300x200 grey (replicated): 4x3 + global', w: 300, h: 200, ch: 1, tiles: 13 },
    { name: '700x1100 portrait: 3x4 + global', w: 700, h: 1100, ch: 3, tiles: 13 },
    { name: '300x200 without splitting: one 512 tile', w: 300, h: 200, ch: 3, split: false, tiles: 1 },
    { name: '300x200 capped at a longest edge of 1024: 2x2 + global', w: 300, h: 200, ch: 3, longestEdge: 1024, tiles: 5 },
    { name: '300x200 capped at 512: one tile, no split', w: 300, h: 200, ch: 3, longestEdge: 512, tiles: 1 },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const image = await png(c.w, c.h, c.ch);
      const p = await openProcessor(SMOLVLM, { split: c.split, longestEdge: c.longestEdge });
      const mine = await p.encode(PROMPT(1), [image]);
      const theirs = await reference(PROMPT(1), [image], c);
      expect(mine.ids).toEqual(theirs.ids);
      expect(theirs.dims).toEqual([1, c.tiles, 3, 512, 512]);
      expect(mine.tiles).toBe(c.tiles);
      expect(mine.pixels.length).toBe(theirs.pixels.length);
      expect(maxAbsDiff(mine.pixels, theirs.pixels)).toBeLessThanOrEqual(PIXEL_TOLERANCE);
      expect(mine.imagePositions.length).toBe(c.tiles * 64);
      expect(mine.imagePositions.every((i) => mine.ids[i] === 49190)).toBe(true);
    });
  }

  it('two images (two cameras) in one prompt, each expanded in place', async () => {
    const images = [await png(96, 64, 3, 2), await png(32, 48, 3, 3)];
    const p = await openProcessor(SMOLVLM, { longestEdge: 1024 });
    const mine = await p.encode(PROMPT(2), images);
    const theirs = await reference(PROMPT(2), images, { longestEdge: 1024 });
    expect(mine.ids).toEqual(theirs.ids);
    expect(mine.grids).toEqual([{ rows: 2, cols: 2 }, { rows: 2, cols: 2 }]);
    expect(maxAbsDiff(mine.pixels, theirs.pixels)).toBeLessThanOrEqual(PIXEL_TOLERANCE);
  });

  it('the chat template renders as transformers.js apply_chat_template renders it', () => {
    return openProcessor(SMOLVLM).then((p) => {
      const conversations: ChatMessage[][] = [
        [{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'Pick up the red block.' }] }],
        [{ role: 'user', content: [{ type: 'text', text: 'Hi' }] }, { role: 'assistant', content: [{ type: 'text', text: 'Hello.' }] }, { role: 'user', content: [{ type: 'image' }, { type: 'image' }, { type: 'text', text: 'Two cameras.' }] }],
        [{ role: 'system', content: [{ type: 'text', text: 'You are a robot.' }] }, { role: 'user', content: [{ type: 'text', text: 'Go.' }] }],
      ];
      for (const conv of conversations) {
        for (const add of [true, false]) {
          expect(p.renderChat(conv, { addGenerationPrompt: add })).toBe((ref as unknown as { apply_chat_template: (m: unknown, o: object) => string }).apply_chat_template(conv, { add_generation_prompt: add }));
        }
      }
    });
  });

  it('special ids, end of turn and text as transformers.js tokenizer has them', async () => {
    const p = await openProcessor(SMOLVLM);
    const tok = (ref as unknown as { tokenizer: { bos_token_id: number; eos_token_id: number; pad_token_id: number; encode: (t: string, o: object) => number[]; decode: (i: number[], o: object) => string } }).tokenizer;
    expect(p.special.bos).toBe(tok.bos_token_id); // <|im_start|> = 1
    expect(p.special.eos[0]).toBe(tok.eos_token_id); // <end_of_utterance> = 49279 (tokenizer_config.json)
    expect(p.special.eos).toEqual([49279, 2]); // + config.json's text eos <|im_end|>
    expect(p.special.pad).toBe(tok.pad_token_id);
    expect(p.special.image).toBe(49190);
    expect(p.turnEnd).toEqual(tok.encode('<end_of_utterance>\n', { add_special_tokens: false }));
    expect(p.turnEnd).toEqual([49279, 198]);
    const text = 'Move the gripper 3 cm left, then close it.';
    expect(p.encodeText(text)).toEqual(tok.encode(text, { add_special_tokens: false }));
    expect(p.decode(p.encodeText(text))).toBe(text);
  });
});

describe('Idefics3 prompt and sizes, hand-worked from transformers processing_idefics3.py', () => {
  it('expands one image without splitting to fake, global, image tokens, fake', () => {
    expect(imagePromptText(0, 0, 2)).toBe('<fake_token_around_image><global-img><image><image><fake_token_around_image>');
  });
  it('expands a 1x2 split row by row, a blank line, then the global tile', () => {
    expect(imagePromptText(1, 2, 1)).toBe(
      '<fake_token_around_image><row_1_col_1><image><fake_token_around_image><row_1_col_2><image>\n\n<fake_token_around_image><global-img><image><fake_token_around_image>',
    );
  });
  it('resizes to the longest edge (up or down) and rounds to whole tiles', () => {
    expect(longestEdgeSize(40, 30, 2048)).toEqual([2048, 1536]);
    expect(longestEdgeSize(700, 1100, 2048)).toEqual([1303, 2048]); // 2048 * 700 / 1100 = 1303.27
    expect(tiledSize(2048, 1303, 512)).toEqual([2048, 1536]);
    expect(tiledSize(683, 1024, 512)).toEqual([1024, 1024]);
    expect(tiledSize(341, 512, 512)).toEqual([512, 512]);
  });
});

describe('describeProcessor (model info)', () => {
  it('SmolVLM: its special ids, template, and a 640x480 image as 12 split tiles + the global one of 64 tokens each', async () => {
    const s = await describeProcessor(SMOLVLM);
    expect(s).toMatchObject({ model_type: 'idefics3', tokenizer: true, chat_template: true, turn_end: [49279, 198] });
    expect(s.special).toMatchObject({ bos: 1, eos: [49279, 2], pad: 2, image: 49190 });
    // 640x480 -> longest edge 2048 (2048x1536) -> 4 x 3 tiles of 512 + the global tile
    expect(s.image_640x480).toMatchObject({ tiles: 13, image_tokens: 13 * 64 });
  });
  it('stories260K: no tokenizer files, token ids only, no template', async () => {
    const s = await describeProcessor(STORIES);
    expect(s).toMatchObject({ model_type: 'llama', tokenizer: false, chat_template: false, special: { bos: 1, eos: [2] } });
    expect(s.image_640x480).toBeUndefined();
  });
});

describe('processor errors and text-only models', () => {
  it('refuses a prompt whose <image> count is not the image count', async () => {
    const p = await openProcessor(SMOLVLM, { split: false });
    await expect(p.encode(PROMPT(2), [await png(8, 8, 3)])).rejects.toMatchObject({ code: 'E_USAGE' });
  });
  it('names an image that cannot be decoded', async () => {
    const p = await openProcessor(SMOLVLM, { split: false });
    await expect(p.encode(PROMPT(1), [new Uint8Array([1, 2, 3])])).rejects.toMatchObject({ code: 'E_IMAGE' });
  });
  it('refuses an image_seq_len that is not the model tokens per tile', async () => {
    const dir = tempDir();
    cpSync(SMOLVLM, dir, { recursive: true });
    writeFileSync(path.join(dir, 'processor_config.json'), JSON.stringify({ image_seq_len: 81 }));
    const err = await openProcessor(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(VlakitError);
    expect(err).toMatchObject({ code: 'E_MODEL', context: { field: 'image_seq_len' } });
  });
  it('a Llama without tokenizer files: bos/eos from config.json, text is a usage error', async () => {
    const p = await openProcessor(STORIES);
    expect(p.hasTokenizer).toBe(false);
    expect(p.special.bos).toBe(1);
    expect(p.special.eos).toEqual([2]);
    expect(() => p.encodeText('hi')).toThrow(/no tokenizer.json/);
    await expect(p.encode('hi', [await png(8, 8, 3)])).rejects.toMatchObject({ code: 'E_USAGE' });
  });
  it('a Llama with a ChatML template: end of turn <|im_end|>\\n derived by rendering, and eos gains <|im_end|>', async () => {
    const dir = tempDir();
    cpSync(path.join(STORIES, 'config.json'), path.join(dir, 'config.json'));
    cpSync(path.join(SMOLVLM, 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
    const chatml = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
    writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ bos_token: '<|im_start|>', eos_token: '<|endoftext|>', chat_template: chatml }));
    const p = await openProcessor(dir);
    expect(p.renderChat([{ role: 'user', content: 'Hi' }], { addGenerationPrompt: true })).toBe('<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n');
    expect(p.turnEnd).toEqual([2, 198]); // <|im_end|> \n
    expect(p.special.eos).toEqual([0, 2]); // <|endoftext|> (tokenizer_config), config eos 2 (= <|im_end|> here)
  });
  it('a Llama without a template renders the messages plainly; its end of turn is the eos', async () => {
    const dir = tempDir();
    cpSync(path.join(STORIES, 'config.json'), path.join(dir, 'config.json'));
    cpSync(path.join(SMOLVLM, 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
    writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ eos_token: '<|endoftext|>' }));
    const p = await openProcessor(dir);
    expect(p.renderChat([{ role: 'user', content: 'Hi' }, { role: 'assistant', content: [{ type: 'text', text: 'Yo' }] }])).toBe('Hi\nYo');
    expect(p.turnEnd).toEqual([0]);
  });
  it('a named special token missing from tokenizer.json is an error naming it', async () => {
    const dir = tempDir();
    cpSync(path.join(STORIES, 'config.json'), path.join(dir, 'config.json'));
    cpSync(path.join(SMOLVLM, 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
    writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ eos_token: '<|no such token|>' }));
    await expect(openProcessor(dir)).rejects.toMatchObject({ code: 'E_MODEL', message: expect.stringContaining('eos_token') });
  });
});
