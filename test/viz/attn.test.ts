import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import sharp from 'sharp';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { PROMPTS, TextCodec, type TrainingExample } from '../../src/lib/actions/index.js';
import { TabletopEnv, decodeMask, type ObjectMasks } from '../../src/lib/env/index.js';
import { exportModel } from '../../src/lib/export/index.js';
import { type BuiltinRunner, openModel } from '../../src/lib/infer/index.js';
import { builtinPrompting } from '../../src/lib/infer/builtin.js';
import type { ImageJson } from '../../src/lib/io/json.js';
import { selectBackend } from '../../src/lib/model/backend.js';
import { writeOutputDir } from '../../src/lib/io/outputs.js';
import { writeModelFiles } from '../../src/lib/model/checkpoint.js';
import { preset } from '../../src/lib/model/config.js';
import { VlaModel } from '../../src/lib/model/model.js';
import { buildTokenizer, type Tokenizer } from '../../src/lib/model/tokenizer.js';
import { attnViz, cameraGrids, chooseTokens, colormap, fuseTopK, maskMass, normalizeMap, queryRows, upsample } from '../../src/lib/viz/index.js';
import { tempDir } from '../helpers.js';
import { ex } from '../model/examples.js';

const dir = tempDir();
const BIN = path.resolve('bin/run.js');

describe('top-k fusion over (layer, head)', () => {
  const rows = [Float32Array.of(0.1, 0.7, 0.2), Float32Array.of(0.5, 0.3, 0.2), Float32Array.of(0.4, 0.4, 0.2)];
  it('max and mean of the k largest values per position, by hand', () => {
    expect(Array.from(fuseTopK(rows, 2, 'max'))).toEqual([0.5, 0.7, 0.2].map(Math.fround));
    const mean = Array.from(fuseTopK(rows, 2, 'mean'));
    [0.45, 0.55, 0.2].forEach((v, i) => expect(mean[i]).toBeCloseTo(v, 6));
    const all = Array.from(fuseTopK(rows, 9, 'mean')); // k beyond the rows: every row
    [1 / 3, 1.4 / 3, 0.2].forEach((v, i) => expect(all[i]).toBeCloseTo(v, 6));
    expect(Array.from(fuseTopK(rows, 1, 'mean'))).toEqual(Array.from(fuseTopK(rows, 3, 'max')));
  });

  it('query rows come out of [H, N, N] maps; image patches split per camera; masks weigh patches', () => {
    // 2 layers, 2 heads, N = 3: value = 100 * layer + 10 * head + key, on query row 2 only
    const layers = [0, 1].map((l) => {
      const a = new Float32Array(2 * 3 * 3);
      for (let h = 0; h < 2; h++) for (let k = 0; k < 3; k++) a[(h * 3 + 2) * 3 + k] = 100 * l + 10 * h + k;
      return a;
    });
    expect(queryRows(layers, 2, 3, 2).map((r) => Array.from(r))).toEqual([[0, 1, 2], [10, 11, 12], [100, 101, 102], [110, 111, 112]]);
    expect(queryRows(layers, 2, 3, 1, 2).map((r) => Array.from(r))).toEqual([[0, 0], [0, 0], [0, 0], [0, 0]]);
    const fused = Float32Array.from({ length: 3 * 4 + 5 }, (_, i) => i); // 3 cameras of a 2x2 grid, then text
    expect(cameraGrids(fused, 3, 2).map((m) => Array.from(m))).toEqual([[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]);
    expect(() => cameraGrids(fused, 5, 2)).toThrow(/cannot hold 5 cameras/);
    // a 6 x 4 image (non-square), grid 2: the top-left cell is x 0-2, y 0-1
    const mask = new Uint8Array(6 * 4);
    for (let y = 0; y < 2; y++) for (let x = 0; x < 3; x++) mask[y * 6 + x] = 1;
    expect(maskMass(Float32Array.of(1, 0, 0, 0), 2, mask, 6, 4)).toBe(1);
    expect(maskMass(Float32Array.of(1, 1, 0, 0), 2, mask, 6, 4)).toBe(0.5);
    mask.fill(0);
    mask[0] = 1; // one of the cell's 6 pixels
    expect(maskMass(Float32Array.of(1, 0, 0, 0), 2, mask, 6, 4)).toBeCloseTo(1 / 6, 12);
    expect(Array.from(normalizeMap(Float32Array.of(2, 4, 3)))).toEqual([0, 1, 0.5]);
  });

  it('choosing tokens by kind, range and regex', () => {
    const kinds = ['reasoning', 'reasoning', 'other', 'action', 'action', 'action'] as ('action' | 'reasoning' | 'other')[];
    const texts = ['look', ' left', '\n', '[[0', '.01', ']]'];
    expect(chooseTokens('action', kinds, texts)).toEqual([3, 4, 5]);
    expect(chooseTokens('reasoning', kinds, texts)).toEqual([0, 1]);
    expect(chooseTokens('all', kinds, texts)).toHaveLength(6);
    expect(chooseTokens('1:3', kinds, texts)).toEqual([1, 2]);
    expect(chooseTokens('/left/', kinds, texts)).toEqual([1]);
    expect(chooseTokens('/0\\.0/', kinds, texts)).toEqual([3, 4]); // a match across two tokens
    expect(() => chooseTokens('nouns', kinds, texts)).toThrow(/expected action, reasoning, all, A:B or \/regex\//);
  });

  it('bilinear upsampling keeps a constant map constant and puts a peak at its cell; the colormap runs blue to red', () => {
    expect(Array.from(upsample(Float32Array.of(0.5, 0.5, 0.5, 0.5), 2, 5, 3)).every((v) => Math.abs(v - 0.5) < 1e-6)).toBe(true);
    const up = upsample(Float32Array.of(0, 0, 0, 1), 2, 8, 8);
    let best = 0;
    for (let i = 1; i < up.length; i++) if (up[i] > up[best]) best = i;
    expect([Math.floor(best / 8) >= 4, best % 8 >= 4]).toEqual([true, true]); // bottom-right quadrant
    expect(colormap(0)[2]).toBeGreaterThan(colormap(0)[0]);
    expect(colormap(1)[0]).toBeGreaterThan(colormap(1)[2]);
  });
});

/** A runner whose every attention row puts all weight on one key position. */
function forcedRunner(config: ReturnType<typeof preset>, tokenizer: Tokenizer, key: number): BuiltinRunner {
  return {
    info: { engine: 'tfjs', device: 'stub', model: 'vlakit' },
    config,
    tokenizer,
    ...builtinPrompting(config, tokenizer),
    start: () => {
      throw new Error('not used');
    },
    logits: async () => new Float32Array(),
    attentions: async (_px, ids) => {
      const N = config.num_cameras * (config.vision_config.image_size / config.vision_config.patch_size) ** 2 + ids.length;
      const H = config.text_config.num_attention_heads;
      const layers = Array.from({ length: config.text_config.num_hidden_layers }, () => {
        const a = new Float32Array(H * N * N);
        for (let h = 0; h < H; h++) for (let q = 0; q < N; q++) a[(h * N + q) * N + key] = 1;
        return a;
      });
      return { layers, heads: H, positions: N };
    },
    dispose: () => {},
  };
}

describe('attn-viz end to end', () => {
  let tok: Tokenizer;
  let example: TrainingExample;
  let wide: ImageJson;
  beforeAll(async () => {
    await selectBackend('wasm');
    tok = await buildTokenizer(['move to the red block', '[[0.010, -0.020, 0.000, 1]]', 'the red block is ahead', PROMPTS.actions('move to the red block')], 160);
    const png = async (w: number, h: number, r: number) => ({ mime: 'image/png', b64: (await sharp({ create: { width: w, height: h, channels: 3, background: { r, g: 90, b: 90 } } }).png().toBuffer()).toString('base64') });
    wide = await png(64, 32, 200);
    example = ex('ep/actions/0', wide, PROMPTS.actions('move to the red block'), 'the red block is ahead', '[[0.010, -0.020, 0.000, 1]]');
    example.images.push(await png(32, 32, 40));
  });

  it('attention forced onto one patch gives a map peaked exactly there, on the right camera; the PNG has the expected size', async () => {
    const cfg = preset('tiny', tok.vocabSize, 2); // 32 px images, 8 px patches: a 4 x 4 grid per camera
    const key = 16 + 6; // camera 1, patch 6 = row 1, column 2
    const out = path.join(dir, 'forced');
    const [res] = await attnViz({ models: [{ name: 'forced', runner: forcedRunner(cfg, tok, key) }], examples: [example], tokens: 'action', topK: 3, fusion: 'mean', layout: 'example', outDir: out, json: true });
    const [m] = res.models;
    expect(m.tokens.length).toBeGreaterThan(3);
    expect(m.tokens.map((t) => t.text).join('')).toBe('[[0.010, -0.020, 0.000, 1]]<eos>'); // the action span's tokens, and <eos> after it
    for (const t of m.tokens) {
      expect(t.cameras[0].every((v) => v === 0)).toBe(true);
      expect(t.cameras[1]).toEqual(Array.from({ length: 16 }, (_, i) => (i === 6 ? 1 : 0)));
    }
    const files = readdirSync(out).sort();
    expect(files).toEqual(['0000-ep_actions_0.png', 'maps.jsonl', 'summary.json']);
    const meta = await sharp(path.join(out, files[0])).metadata();
    // two panels (one per camera) side by side: 256 + 66 wide each, 8 px apart; the wide image keeps its 2:1 aspect
    expect(meta.width).toBe(2 * (256 + 66) + 8);
    expect(meta.height).toBeGreaterThanOrEqual(256 + 6);
    const raw = JSON.parse(readFileSync(path.join(out, 'maps.jsonl'), 'utf8').trim());
    expect(raw.models[0].tokens[0].cameras[1][6]).toBe(1);
    // the overlay: the peak cell (row 1, column 2 of 4) is red, a far cell is blue; camera 1's panel starts at x = 330
    const { data, info } = await sharp(path.join(out, files[0])).raw().toBuffer({ resolveWithObject: true });
    const top = (meta.height! - 256 - 6); // caption height
    const px = (x: number, y: number) => Array.from(data.subarray((y * info.width + x) * info.channels, (y * info.width + x) * info.channels + 3));
    const peak = px(330 + Math.round(2.5 * 64), top + Math.round(1.5 * 64));
    const far = px(330 + 10, top + 250);
    expect(peak[0]).toBeGreaterThan(peak[2]);
    expect(far[2]).toBeGreaterThan(far[0]);
  });

  it('a tiny model: checkpoint and export give the same maps; no tensor leaks; compare draws both', async () => {
    const cfg = { ...preset('tiny', tok.vocabSize, 2), initializer_range: 0.2 };
    const m = VlaModel.init(cfg, 4);
    const ck = path.join(dir, 'tiny');
    await writeOutputDir(ck, (d) => writeModelFiles(d, m, tok.json, { actionCodec: new TextCodec(3).describe() }), { overwrite: true });
    m.dispose();
    await exportModel(ck, `${ck}-onnx`, { attentions: true });
    const a = await openModel(ck);
    const b = await openModel(`${ck}-onnx`);
    const before = tf.memory().numTensors;
    const res = await attnViz({ models: [{ name: 'ckpt', runner: a }, { name: 'onnx', runner: b }], examples: [example], tokens: 'reasoning', topK: 5, fusion: 'max', layout: 'tokens', maxTokens: 3, outDir: path.join(dir, 'cmp') });
    expect(tf.memory().numTensors).toBe(before);
    const [ta, tb] = res[0].models.map((x) => x.tokens);
    expect(ta.length).toBeGreaterThan(0);
    expect(tb.map((t) => t.text)).toEqual(ta.map((t) => t.text));
    let diff = 0;
    ta.forEach((t, i) => t.cameras.forEach((cam, c) => cam.forEach((v, k) => (diff = Math.max(diff, Math.abs(v - tb[i].cameras[c][k]))))));
    expect(diff).toBeLessThan(1e-4);
    const meta = await sharp(path.join(dir, 'cmp', res[0].file)).metadata();
    expect(meta.width).toBeGreaterThan(4 * 256); // panels of both models
    // an export without attention outputs says what to do
    await exportModel(ck, `${ck}-plain`);
    const c = await openModel(`${ck}-plain`);
    await expect(attnViz({ models: [{ name: 'plain', runner: c }], examples: [example], tokens: 'action', topK: 5, fusion: 'max', layout: 'example', outDir: path.join(dir, 'plain') })).rejects.toThrow(/export it again with --attentions/);
    for (const r of [a, b, c]) await r.dispose();
  }, 60_000);

  it("the world's pixel masks: objects apart, visible, and scored as attention mass on the named object", async () => {
    const env = new TabletopEnv({ width: 64, height: 64, masks: true, distractors: 2 });
    const first = await env.reset(3, { family: 'pick' });
    await env.close();
    const oracle = first.info!.oracle as { masks: ObjectMasks; objects: { id: string; name: string }[] };
    const ids = oracle.masks.objects.map((m) => m.id);
    expect(ids.length).toBeGreaterThanOrEqual(2);
    const masks = oracle.masks.objects.map((m) => decodeMask(m.runs, 64, 64));
    for (const m of masks) expect(m.reduce((s, v) => s + v, 0)).toBeGreaterThan(5);
    for (let i = 0; i < 64 * 64; i++) expect(masks.reduce((s, m) => s + m[i], 0)).toBeLessThanOrEqual(1); // disjoint
    // the instruction names one object; attention forced on the patch holding most of its pixels scores its share
    const target = oracle.objects.find((o) => o.id === ids[0])!;
    const m0 = masks[0];
    const cover = Array.from({ length: 16 }, (_, p) => {
      let n = 0;
      for (let y = Math.floor(p / 4) * 16; y < Math.floor(p / 4) * 16 + 16; y++) for (let x = (p % 4) * 16; x < (p % 4) * 16 + 16; x++) n += m0[y * 64 + x];
      return n / 256;
    });
    const best = cover.indexOf(Math.max(...cover));
    const e = ex('world/0', first.observation.image_0 as ImageJson, PROMPTS.actions(`move to the ${target.name}`), '', '[[0.010, 0.000, 0.000, 1]]');
    e.oracle = oracle;
    const cfg = preset('tiny', tok.vocabSize, 1);
    const [res] = await attnViz({ models: [{ name: 'forced', runner: forcedRunner(cfg, tok, best) }], examples: [e], tokens: 'all', topK: 1, fusion: 'max', layout: 'example', outDir: path.join(dir, 'mass') });
    expect(res.models[0].objects).toEqual([target.name]);
    expect(res.models[0].objectMass).toBeCloseTo(cover[best], 6);
    expect(maskMass(Float32Array.from(res.models[0].tokens[0].cameras[0]), 4, m0, 64, 64)).toBeCloseTo(cover[best], 6);
  });

  it('the command: bad token choices are usage errors; a run writes pictures and a summary', async () => {
    const file = path.join(dir, 'examples.jsonl');
    const { writeFileSync } = await import('node:fs');
    writeFileSync(file, `${JSON.stringify(example)}\n`);
    const bad = await execa('node', [BIN, 'attn-viz', '--model', path.join(dir, 'tiny'), '--input', file, '--tokens', 'nouns', '-o', path.join(dir, 'v0')], { reject: false });
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toMatch(/unknown token choice "nouns"/);
    const ok = await execa('node', [BIN, 'attn-viz', '--compare', `before=${path.join(dir, 'tiny')},after=${path.join(dir, 'tiny')}-onnx`, '--input', file, '--tokens', '/block/', '-o', path.join(dir, 'v1')], { reject: false });
    expect(ok.exitCode).toBe(0);
    expect(ok.stderr).toMatch(/1 pictures in/);
    const summary = JSON.parse(readFileSync(path.join(dir, 'v1', 'summary.json'), 'utf8'));
    expect(summary[0].models.map((m: { name: string }) => m.name)).toEqual(['before', 'after']);
  }, 60_000);
});
