/**
 * `vlakit generate --image --prompt` through the real CLI on a tiny-random PaliGemma 2 with the stand-in Gemma
 * tokenizer (paligemma-files.ts; SigLIP 16 px, patch 4: 16 image tokens): the prompt ids are the prefix format
 * written out by hand, and the checkpoint (tfjs, cached and uncached) and its ONNX export generate the same ids.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers.js';
import { loadTextTokenizer } from '../../src/lib/model/processor/tokenizer.js';
import { PALIGEMMA_PREPROCESSOR, PALI_IMAGE_ID, paliGemmaConfig, writePaliGemmaTokenizer } from './paligemma-files.js';

const BIN = path.resolve('bin/run.js');
const dir = tempDir('vlakit-genpali-');
const ckpt = path.join(dir, 'ckpt');
const image = path.join(dir, 'frame.png');

async function vlakit(args: string[]) {
  const r = await execa('node', [BIN, ...args], { reject: false, env: { NO_COLOR: '1' } });
  return { code: r.exitCode, out: r.stdout, err: r.stderr };
}

beforeAll(async () => {
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(paliGemmaConfig(16, 4)));
  const init = await vlakit(['model', 'init', '--config', path.join(dir, 'config.json'), '--seed', '7', '-o', ckpt]);
  expect(init.code, init.err).toBe(0);
  writePaliGemmaTokenizer(ckpt);
  writeFileSync(path.join(ckpt, 'preprocessor_config.json'), JSON.stringify({ ...PALIGEMMA_PREPROCESSOR, size: { height: 16, width: 16 }, image_seq_length: 16 }));
  const px = Buffer.alloc(40 * 30 * 3);
  for (let i = 0; i < px.length; i++) px[i] = (i * 31) % 251;
  await sharp(px, { raw: { width: 40, height: 30, channels: 3 } }).png().toFile(image);
}, 120_000);

const gen = async (model: string, extra: string[] = []) => {
  const r = await vlakit(['generate', '--model', model, '--image', image, '--prompt', 'caption en', '--max-new-tokens', '6', '--ignore-eos', '--json', ...extra]);
  expect(r.code, r.err).toBe(0);
  return JSON.parse(r.out) as { ids: number[]; prompt_ids: number[]; tiles: number; engine: string };
};

describe('vlakit generate --image on a tiny-random PaliGemma 2', () => {
  it('prompt: 16 image tokens, <bos>, "caption en", "\\n"; checkpoint, --no-cache and export give the same ids', async () => {
    const a = await gen(ckpt);
    const tok = (await loadTextTokenizer(ckpt))!;
    // the Gemma tokenizer's ids of the words, then "\n" (107): no bos added by the tokenizer, one by the processor
    const words = tok.encode('caption en', false);
    expect(a.prompt_ids).toEqual([...Array(16).fill(PALI_IMAGE_ID), 2, ...words, 107]);
    expect(tok.decode(words, false)).toBe('caption en');
    expect(a.tiles).toBe(1);
    expect(a.ids).toHaveLength(6);
    expect((await gen(ckpt, ['--no-cache'])).ids).toEqual(a.ids);
    // --chat: no template, the user turn as its text (image part first), so the same prompt
    expect((await gen(ckpt, ['--chat'])).prompt_ids).toEqual(a.prompt_ids);
    const ex = await vlakit(['export', ckpt, '-o', path.join(dir, 'onnx')]);
    expect(ex.code, ex.err).toBe(0);
    const b = await gen(path.join(dir, 'onnx'));
    expect(b).toMatchObject({ engine: 'onnxruntime', prompt_ids: a.prompt_ids, ids: a.ids, tiles: 1 });
  }, 180_000); // five CLI runs (about 26 s on an idle 2-core machine; over 60 s beside a training job)
});
