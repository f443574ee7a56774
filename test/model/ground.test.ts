import { readFileSync } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import type { TrainingExample } from '../../src/lib/actions/index.js';
import { TfjsOps } from '../../src/lib/model/arch/tfjs-ops.js';
import { type VlaTap, vlaForward, vlaVision } from '../../src/lib/model/arch/vlakit-vla.js';
import { selectBackend } from '../../src/lib/model/backend.js';
import { preset, validateConfig, type VlaConfig, VlaConfigSchema } from '../../src/lib/model/config.js';
import { VlaModel } from '../../src/lib/model/model.js';
import { buildTokenizer } from '../../src/lib/model/tokenizer.js';
import { type Batch, type Prepared, makeBatch, prepare } from '../../src/lib/train/data.js';
import { evaluateGround, groundCellsOf, groundLoss, groundTarget, keypointPoints, pointCells } from '../../src/lib/train/ground.js';
import { namedReadoutNorm } from '../../src/lib/train/head.js';
import { vlaHeadFeatures } from '../../src/lib/model/action-head-vla.js';
import { SEP } from '../../src/lib/model/tokenizer.js';
import { exportModel } from '../../src/lib/export/index.js';
import { openModel } from '../../src/lib/infer/index.js';
import { backboneDim, namedKeypoints, readHeadConfig, withNamedKeypoints, withNamedKeypointsTf } from '../../src/lib/model/action-head.js';
import { openHeadEngine, sampleHeadChunk } from '../../src/lib/policy/head-policy.js';
import { tempDir } from '../helpers.js';
import { ex } from './examples.js';
import { keypointReadouts, keypointSoftmax } from './keypoint-reference.js';
import { trainTiny } from './runs.js';

const dir = tempDir('vlakit-ground-');

/** tiny with a 4-px stem and 2 keypoints: 32-px images, 8 x 8 cells. */
function sizes(): VlaConfig {
  const base = preset('tiny', 128, 1);
  return { ...base, vision_config: { ...base.vision_config, stem_patch_size: 4, stem_channels: 8, keypoints: 2 } };
}

/** A 32-px gray image with a red 6 x 6 square at (x, y) (its top-left pixel), and the square's centre in [0, 1]^2. */
async function square(x: number, y: number): Promise<{ img: { mime: string; b64: string }; point: [number, number] }> {
  const px = Buffer.alloc(32 * 32 * 3, 128);
  for (let r = y; r < y + 6; r++) for (let c = x; c < x + 6; c++) px.set([230, 20, 20], (r * 32 + c) * 3);
  const buf = await sharp(px, { raw: { width: 32, height: 32, channels: 3 } }).png().toBuffer();
  return { img: { mime: 'image/png', b64: buf.toString('base64') }, point: [(x + 3) / 32, (y + 3) / 32] };
}

/** Examples "grasp the red block" with the square somewhere, each grounded at the square's centre. */
async function squares(n: number, seed: number, split: string): Promise<TrainingExample[]> {
  let s = seed;
  const rand = () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const out: TrainingExample[] = [];
  for (let i = 0; i < n; i++) {
    const { img, point } = await square(Math.floor(rand() * 26), Math.floor(rand() * 26));
    out.push({ ...ex(`${split}${i}`, img, 'Subtask: grasp the red block', '', '[[0.010, 0.000, 0.000, 1]]', split), ground: [{ object: 'red block', image: 0, point }] });
  }
  return out;
}

beforeAll(async () => {
  await selectBackend('cpu');
});

describe('grounding targets as cell distributions', () => {
  it('a point becomes bilinear weights on the nearest cell centres: they sum to 1 and their mean is the point (inside the centres)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 16 }), fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true }), (side, x, y) => {
        const p = pointCells([x, y], side);
        const sum = p.reduce((a, b) => a + b, 0);
        expect(sum).toBeCloseTo(1, 5);
        let mx = 0;
        let my = 0;
        p.forEach((w, i) => {
          mx += w * (((i % side) + 0.5) / side);
          my += w * ((Math.floor(i / side) + 0.5) / side);
        });
        // clamped to the outermost centres at the border
        const clamp = (u: number) => Math.min(Math.max(u, 0.5 / side), 1 - 0.5 / side);
        expect(mx).toBeCloseTo(clamp(x), 5);
        expect(my).toBeCloseTo(clamp(y), 5);
      }),
    );
  });

  it('entries beyond the model\'s keypoints or cameras are left out', async () => {
    const [e] = await squares(1, 1, 'train');
    const g = e.ground![0];
    const c = sizes();
    expect(groundCellsOf({ ...e, ground: [g, g, g] }, c)!.map((x) => x.k)).toEqual([0, 1]); // 2 keypoints
    expect(groundCellsOf({ ...e, ground: [{ ...g, image: 1 }] }, c)).toBeUndefined(); // one camera
    expect(() => groundCellsOf(e, preset('tiny', 128, 1))).toThrow(/has none/); // no keypoints
    // keypoints named after kinds of objects: an entry trains its object's keypoint, whatever its place in the list
    const named = { ...c, vision_config: { ...c.vision_config, keypoint_names: ['plate', 'Red Block'] } };
    const cells = groundCellsOf({ ...e, ground: [{ ...g, object: 'spoon' }, g, { ...g, object: 'plate', point: [0.99, 0.99] }] }, named)!;
    expect(cells.map((x) => x.k)).toEqual([1, 0]); // the spoon has no keypoint
    expect(cells[1].cells[63]).toBe(1); // the plate's target, at the last cell
    // more names than keypoints is an invalid config, named by its field
    const tooMany = { ...c, vision_config: { ...c.vision_config, keypoint_names: ['a', 'b', 'c'] } };
    expect(() => validateConfig(tooMany)).toThrow(/3 names for 2 keypoints/);
    const r = VlaConfigSchema.safeParse(tooMany);
    expect(r.success).toBe(false);
    expect(r.error!.issues[0].path).toEqual(['vision_config', 'keypoint_names']);
    const even = { ...c, vision_config: { ...c.vision_config, keypoint_context: 2 } };
    expect(() => validateConfig(even)).toThrow(/keypoint_context 2 is not odd/);
    expect(VlaConfigSchema.safeParse(even).error!.issues[0].path).toEqual(['vision_config', 'keypoint_context']);
  });
});

describe('the grounding loss', () => {
  // keypoint_context 3: each cell's key reads the 3 x 3 cells around it (zeros beyond the border), as the reference does
  it.each([1, 3])('is the cross-entropy of each keypoint\'s spatial softmax against its target, as a float64 reference computes it from the weights (keypoint_context %i)', async (context) => {
    const c = { ...sizes(), vision_config: { ...sizes().vision_config, keypoint_context: context } };
    const model = VlaModel.init(c, 5);
    expect(model.params.get('vision.keypoints.key.weight')!.shape).toEqual([context * context * 8, 16]); // [n*n*Cs, K*8]
    // sharpen the spatial softmax (at initialization it is nearly uniform, where a wrong score would not show)
    for (const n of ['vision.keypoints.query', 'vision.keypoints.key.weight', 'vision.stem.weight']) {
      const v = model.params.get(n)!;
      v.assign(tf.mul(v, 30));
    }
    const examples = await squares(3, 7, 'train');
    // the second example trains both keypoints, the third none
    examples[1] = { ...examples[1], ground: [examples[1].ground![0], { object: 'x', image: 0, point: [0.9, 0.1] }] };
    delete examples[2].ground;
    const tok = await buildTokenizer(['Subtask: grasp the red block [[0.010, 0.000, 0.000, 1]]'], 96);
    const items = await prepare(examples, tok, { cameras: 1, imageSize: 32, maxTokens: 200, ground: (e) => groundCellsOf(e, c) });
    // patterned pixels (mostly gray squares give every cell nearly the same key, and any softmax is near uniform)
    items.forEach((it, b) => (it.pixels = Float32Array.from(it.pixels, (_, i) => Math.sin(i * 0.37 + b) * Math.cos(i * 0.011))));
    const batch = makeBatch(items, { cameras: 1, size: 32 });
    expect(batch.ground!.count).toBe(3);
    expect(batch.ground!.target.shape).toEqual([3, 2, 64]);
    const { loss, points } = tf.tidy(() => {
      const tap: VlaTap<tf.Tensor> = {};
      vlaForward(new TfjsOps(model.params, undefined, undefined, 0, 'in_out'), c, batch.ids, batch.pixels, tap);
      return { loss: groundLoss(tap.keypointQuery!, tap.keypointKey!, batch.ground!.target, batch.ground!.count).dataSync()[0], points: keypointPoints(tap.keypointQuery!, tap.keypointKey!, 2).arraySync() };
    });
    const w = new Map([...model.params].map(([n, v]) => [n, { data: v.dataSync() as Float32Array, shape: v.shape }]));
    let ce = 0;
    let sharpest = 0;
    items.forEach((it, b) => {
      const p = keypointSoftmax(w, it.pixels, 32, 4, 2);
      sharpest = Math.max(sharpest, ...p.flat());
      for (const g of it.ground ?? []) g.cells.forEach((t, n) => (ce -= t * Math.log(p[g.k][n])));
      p.forEach((pk, k) => {
        const mx = pk.reduce((a, v, n) => a + v * (((n % 8) + 0.5) / 8), 0);
        const my = pk.reduce((a, v, n) => a + v * ((Math.floor(n / 8) + 0.5) / 8), 0);
        expect(Math.abs(points[b][k][0] - mx)).toBeLessThan(1e-5);
        expect(Math.abs(points[b][k][1] - my)).toBeLessThan(1e-5);
      });
    });
    expect(sharpest).toBeGreaterThan(0.05); // far from uniform (1/64)
    expect(Math.abs(loss - ce / 3)).toBeLessThan(1e-4 * Math.max(1, ce / 3));
    tf.dispose([batch.pixels!, batch.ids, batch.action, batch.reasoning, batch.ground!.target]);
    model.dispose();
  });
});

describe('the grounding evaluation (train-sft --eval-every with --ground-weight)', () => {
  it('measures each keypoint against its target as a float64 reference does: the median distance, the misses beyond a stem cell, per object', async () => {
    const c = { ...sizes(), vision_config: { ...sizes().vision_config, keypoint_names: ['red block', 'blue block'] } };
    const model = VlaModel.init(c, 6);
    for (const n of ['vision.keypoints.query', 'vision.keypoints.key.weight', 'vision.stem.weight']) {
      const v = model.params.get(n)!;
      v.assign(tf.mul(v, 30));
    }
    const tok = await buildTokenizer(['Subtask: grasp the red block [[0.010, 0.000, 0.000, 1]]'], 96);
    const w = new Map([...model.params].map(([n, v]) => [n, { data: v.dataSync() as Float32Array, shape: v.shape }]));
    const pattern = (it: Prepared, b: number) => (it.pixels = Float32Array.from(it.pixels, (_, i) => Math.sin(i * 0.29 + b) * Math.cos(i * 0.013)));
    /** Each keypoint's expected cell centre in float64 from the weights: [x, y] per keypoint. */
    const reference = (pixels: Float32Array): [number, number][] =>
      keypointSoftmax(w, pixels, 32, 4, 2).map((pk) => [pk.reduce((a, v, n) => a + v * (((n % 8) + 0.5) / 8), 0), pk.reduce((a, v, n) => a + v * ((Math.floor(n / 8) + 0.5) / 8), 0)]);
    const examples = await squares(5, 3, 'val');
    const seen = (await prepare(examples, tok, { cameras: 1, imageSize: 32, maxTokens: 200 })).map((it, b) => reference(pattern(it, b)));
    // targets a keypoint finds (within a stem cell) and ones it misses: 0 and 2 near the red block's keypoint, 1 and 3
    // across the image from it; the first also grounds the blue block (keypoint 1) just off its keypoint; the last none
    // (every point stays between the outer cells' centres, where a target's cells average to it)
    const far = (p: [number, number]): [number, number] => [p[0] > 0.5 ? 0.1 : 0.9, p[1] > 0.5 ? 0.1 : 0.9];
    const near = (p: [number, number], d: number): [number, number] => [p[0] + (p[0] < 0.5 ? d : -d), p[1] + (p[1] < 0.5 ? d / 2 : -d / 2)];
    examples.forEach((e, b) => (e.ground = [{ object: 'red block', image: 0, point: b % 2 ? far(seen[b][0]) : near(seen[b][0], 0.03) }]));
    examples[0].ground!.push({ object: 'blue block', image: 0, point: near(seen[0][1], 0.05) });
    delete examples[4].ground;
    const items = await prepare(examples, tok, { cameras: 1, imageSize: 32, maxTokens: 200, ground: (e) => groundCellsOf(e, c) });
    items.forEach(pattern);
    const got = (await evaluateGround(model, items, { cameras: 1, size: 32 }, 3))!;
    const errors: { object: string; e: number }[] = [];
    examples.forEach((e, b) => {
      const p = reference(items[b].pixels);
      for (const g of e.ground ?? []) {
        const [mx, my] = p[g.object === 'red block' ? 0 : 1];
        errors.push({ object: g.object, e: Math.hypot(mx - g.point[0], my - g.point[1]) });
      }
    });
    expect(errors).toHaveLength(5);
    expect(got.targets).toBe(5);
    const sorted = errors.map((x) => x.e).sort((a, b) => a - b);
    expect(Math.abs(got.medianError - sorted[2])).toBeLessThan(1e-5);
    const miss = errors.filter((x) => x.e > 1 / 8);
    expect(miss.map((x) => x.object)).toEqual(['red block', 'red block']);
    expect(got.missRate).toBeCloseTo(miss.length / 5, 10);
    expect(got.byObject).toEqual({ 'red block': { targets: 4, misses: miss.filter((x) => x.object === 'red block').length }, 'blue block': { targets: 1, misses: miss.filter((x) => x.object === 'blue block').length } });
    expect(await evaluateGround(model, items.slice(4), { cameras: 1, size: 32 })).toBeUndefined();
    model.dispose();
  });
});

describe('train-sft --ground-weight', () => {
  let train: TrainingExample[];
  let val: TrainingExample[];
  beforeAll(async () => {
    train = await squares(48, 11, 'train');
    val = await squares(12, 99, 'val');
  });

  /** Keypoint 0's expected positions on examples' images, and the batch's grounding targets, through the vision tower alone. */
  function tower(model: VlaModel, batch: Batch, items: Prepared[], c: VlaConfig): { loss: tf.Scalar; points: tf.Tensor3D } {
    const tap: VlaTap<tf.Tensor> = {};
    vlaVision(new TfjsOps(model.params, undefined, undefined, 0, 'in_out'), c, batch.pixels!, undefined, tap);
    const target = groundTarget(items.map((x) => x.ground), 1)!;
    const loss = groundLoss(tap.keypointQuery!, tap.keypointKey!, target.target, target.count);
    return { loss, points: keypointPoints(tap.keypointQuery!, tap.keypointKey!, 1) };
  }

  it('its gradient teaches keypoint 0 where the named object is: on held-out images it lands near the square', async () => {
    const c = sizes();
    const model = VlaModel.init(c, 2);
    const tok = await buildTokenizer(['x'], 96);
    const opts = { cameras: 1, imageSize: 32, maxTokens: 64, ground: (e: TrainingExample) => groundCellsOf(e, c) };
    const trainItems = await prepare(train, tok, opts);
    const valItems = await prepare(val, tok, opts);
    const valBatch = makeBatch(valItems, { cameras: 1, size: 32 });
    const error = (): number =>
      tf.tidy(() => {
        const p = tower(model, valBatch, valItems, c).points.arraySync();
        return val.reduce((a, e, b) => a + Math.hypot(p[b][0][0] - e.ground![0].point[0], p[b][0][1] - e.ground![0].point[1]), 0) / val.length;
      });
    const mean = [0, 1].map((d) => val.reduce((a, e) => a + e.ground![0].point[d], 0) / val.length);
    const baseline = val.reduce((a, e) => a + Math.hypot(e.ground![0].point[0] - mean[0], e.ground![0].point[1] - mean[1]), 0) / val.length;
    const before = error();
    // the stem and the keypoints alone, Adam on the grounding loss
    const vars = [...model.params].filter(([n]) => n.startsWith('vision.stem') || n.startsWith('vision.keypoints')).map(([, v]) => v);
    const opt = tf.train.adam(1e-2);
    const losses: number[] = [];
    for (let step = 0; step < 150; step++) {
      const part = Array.from({ length: 8 }, (_, i) => trainItems[(step * 8 + i) % trainItems.length]);
      const b = makeBatch(part, { cameras: 1, size: 32 });
      const l = opt.minimize(() => tower(model, b, part, c).loss, true, vars)!;
      losses.push(l.dataSync()[0]);
      l.dispose();
      tf.dispose([b.pixels!, b.ids, b.action, b.reasoning, b.ground!.target]);
    }
    const after = error();
    const avg = (xs: number[]) => xs.reduce((a, v) => a + v, 0) / xs.length;
    expect(avg(losses.slice(-10))).toBeLessThan(0.7 * avg(losses.slice(0, 10)));
    expect(after, `after ${after.toFixed(3)} before ${before.toFixed(3)} mean-position ${baseline.toFixed(3)}`).toBeLessThan(0.35 * baseline);
    expect(before).toBeGreaterThan(2 * after);
    opt.dispose();
    tf.dispose([valBatch.pixels!, valBatch.ids, valBatch.action, valBatch.reasoning, valBatch.ground!.target]);
    model.dispose();
  }, 120_000);

  it('train-sft records the setting and its loss: a run with another weight is another run', async () => {
    const losses: number[] = [];
    const last: Record<string, unknown>[] = [];
    const run = await trainTiny(dir, 'ground', [...train.slice(0, 8), ...val.slice(0, 4)], { sizes: sizes(), steps: 2, batchSize: 4, groundWeight: 1, evalEvery: 2, onMetrics: (m) => (losses.push(m.ground_loss as number), last.push(m)) });
    expect(losses).toHaveLength(2);
    // the evaluation measures the keypoints on the val split: 4 targets of keypoint 0 (unnamed)
    expect(last[1].val_ground_error).toBeGreaterThan(0);
    expect(last[1].val_ground_miss).toBeGreaterThanOrEqual(0);
    expect(Object.keys(last[1].val_ground_miss_by_object as object)).toEqual(['keypoint 0']);
    expect(last[0].val_ground_error).toBeUndefined();
    expect(losses[0]).toBeGreaterThan(0);
    expect(readFileSync(path.join(run, 'run.json'), 'utf8')).toContain('"ground-weight": 1');
  }, 60_000);

  it('--workers 2 gives the losses of one thread (within 1e-5), the grounding loss included', async () => {
    const one: number[][] = [];
    const two: number[][] = [];
    const o = { sizes: sizes(), steps: 3, batchSize: 6, groundWeight: 0.5 };
    await trainTiny(dir, 'g1', train.slice(0, 12), { ...o, onMetrics: (m) => one.push([m.loss as number, m.ground_loss as number]) });
    await trainTiny(dir, 'g2', train.slice(0, 12), { ...o, workers: 2, onMetrics: (m) => two.push([m.loss as number, m.ground_loss as number]) });
    expect(one[0][1]).toBeGreaterThan(0);
    two.forEach((l, i) => l.forEach((v, j) => expect(Math.abs(v - one[i][j]), `step ${i + 1}`).toBeLessThanOrEqual(1e-5 * Math.max(1, one[i][j]))));
  }, 120_000);

  it('refuses a model without keypoints, or examples without targets (usage errors)', async () => {
    await expect(trainTiny(dir, 'nokp', train.slice(0, 4), { steps: 1, groundWeight: 1 })).rejects.toMatchObject({ code: 'E_USAGE' });
    const bare = train.slice(0, 4).map(({ ground: _g, ...e }) => e);
    await expect(trainTiny(dir, 'notargets', bare, { sizes: sizes(), steps: 1, groundWeight: 1 })).rejects.toMatchObject({ code: 'E_USAGE', message: expect.stringMatching(/no training example has grounding targets/) });
  });
});

describe('an action head with named keypoints (--head-named-keypoints)', () => {
  it('standardizes the named readouts by their mean and std over the training examples (a float64 reference from the weights)', async () => {
    const c = sizes();
    const model = VlaModel.init(c, 4);
    for (const n of ['vision.keypoints.query', 'vision.keypoints.key.weight', 'vision.stem.weight', 'vision.keypoints.value.weight']) {
      const v = model.params.get(n)!;
      v.assign(tf.mul(v, 30));
    }
    const examples = await squares(20, 8, 'train');
    const tok = await buildTokenizer(['Subtask: grasp the red block [[0.010, 0.000, 0.000, 1]]'], 96);
    const items = await prepare(examples, tok, { cameras: 1, imageSize: 32, maxTokens: 200 });
    items.forEach((p, i) => (p.head = { promptEnd: p.ids.indexOf(SEP), named: [i % 2, i % 3 === 0 ? 0 : -1] })); // some slots empty
    const D = c.text_config.hidden_size;
    const layout = { cameras: 1, size: 32 };
    const norm = await namedReadoutNorm(items, layout, 2 * D, (b, ends) => vlaHeadFeatures(model, b.pixels as tf.Tensor5D, b.ids, ends, { logits: false, keypoints: true }).cond);
    const w = new Map([...model.params].map(([n, v]) => [n, { data: v.dataSync() as Float32Array, shape: v.shape }]));
    const rows = items.flatMap((p) => p.head!.named!.filter((k) => k >= 0).map((k) => keypointReadouts(w, p.pixels, 32, 4, 2).slice(k * 8, k * 8 + 8)));
    expect(rows.length).toBe(20 + 7);
    for (let j = 0; j < 8; j++) {
      const m = rows.reduce((a, r) => a + r[j], 0) / rows.length;
      const sd = Math.sqrt(rows.reduce((a, r) => a + (r[j] - m) ** 2, 0) / rows.length);
      expect(Math.abs(norm.mean[j] - m)).toBeLessThan(1e-5);
      expect(Math.abs(norm.std[j] - sd)).toBeLessThan(1e-4 * Math.max(sd, 1e-2));
      expect(sd).toBeGreaterThan(1e-4); // the readouts vary between images
    }
    model.dispose();
  });

  it('appends the readouts of the keypoints of the objects the prompt names; the export samples the checkpoint\'s chunk', async () => {
    const c = sizes();
    const named = { ...c, vision_config: { ...c.vision_config, keypoint_names: ['red block', 'blue block'] } };
    const examples = await squares(8, 5, 'train');
    const run = await trainTiny(dir, 'named', examples, { sizes: named, steps: 2, batchSize: 4, groundWeight: 1, actionHead: { objective: 'flow', hidden: 16, layers: 1, inferenceSteps: 2, namedKeypoints: 2 } });
    const hc = readHeadConfig(run);
    const D = c.text_config.hidden_size;
    expect(hc.keypoint_features).toBe(true); // implied
    expect(hc.named_keypoints).toMatchObject({ names: ['red block', 'blue block'], slots: 2, offset: 2 * D, past_norm: true });
    expect(hc.named_keypoints!.norm!.std).toHaveLength(8);
    expect(hc.cond_dim).toBe(2 * D + 2 * 8 + 2 * 9);
    expect(backboneDim(hc)).toBe(2 * D + 2 * 8);
    // the appended numbers: per slot the readouts of the named object's keypoint and a 1; nothing named, zeros
    const nn = hc.named_keypoints!.norm!;
    const f = Float32Array.from({ length: backboneDim(hc) }, (_, i) => i);
    const one = withNamedKeypoints(hc, f, 'put the blue block on the red block');
    expect(Array.from(one.subarray(0, f.length))).toEqual(Array.from(f));
    const std = (x: Float32Array) => Array.from(x, (v, j) => Math.fround((v - nn.mean[j]) / nn.std[j]));
    expect(Array.from(one.subarray(f.length))).toEqual([...std(f.subarray(2 * D + 8, 2 * D + 16)), 1, ...std(f.subarray(2 * D, 2 * D + 8)), 1]);
    expect(Array.from(withNamedKeypoints(hc, f, 'grasp the spoon').subarray(f.length)).every((v) => v === 0)).toBe(true);
    // the training path's batch version picks the same numbers
    const prompts = ['put the blue block on the red block', 'grasp the red block', 'grasp the spoon'];
    const g = Float32Array.from({ length: 3 * f.length }, (_, i) => Math.sin(i));
    const batch = tf.tidy(() => withNamedKeypointsTf(hc, tf.tensor2d(g, [3, f.length]), prompts.map((p) => namedKeypoints(hc, p))).arraySync());
    prompts.forEach((p, b) => batch[b].forEach((v, i) => expect(v).toBeCloseTo(withNamedKeypoints(hc, g.subarray(b * f.length, (b + 1) * f.length), p)[i], 6)));
    // the checkpoint and its export sample the same chunk for a prompt that names an object
    const out = path.join(dir, 'named-onnx');
    await exportModel(run, out, { ops: 'standard' });
    const ck = await openModel(run);
    const ex = await openModel(out);
    const a = await openHeadEngine(ck, run);
    const b = await openHeadEngine(ex, out);
    const img = [new Uint8Array(Buffer.from(examples[0].images[0].b64, 'base64'))];
    const sa = await sampleHeadChunk(ck, a, 'Subtask: grasp the red block', img, { seed: 3 });
    const sb = await sampleHeadChunk(ex, b, 'Subtask: grasp the red block', img, { seed: 3 });
    sa.chunk.flat().forEach((v, i) => expect(Math.abs(v - sb.chunk.flat()[i])).toBeLessThan(1e-4));
    await a.dispose();
    await b.dispose();
    await ck.dispose();
    await ex.dispose();
    // a backbone whose keypoints have no names cannot have them
    await expect(trainTiny(dir, 'unnamed', examples, { sizes: c, steps: 1, batchSize: 4, actionHead: { objective: 'flow', hidden: 16, layers: 1, namedKeypoints: 1 } })).rejects.toMatchObject({ code: 'E_USAGE' });
  }, 120_000);
});
