import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TrainingExample } from '../../src/lib/actions/index.js';
import { selectBackend } from '../../src/lib/model/backend.js';
import { loadActionHead, readHeadConfig } from '../../src/lib/model/action-head.js';
import { readSafetensors } from '../../src/lib/model/safetensors.js';
import { toyExamples } from './examples.js';
import { TINY, trainTiny } from './runs.js';
import * as tf from '@tensorflow/tfjs-core';
import { TextCodec } from '../../src/lib/actions/index.js';
import { ActionHead } from '../../src/lib/model/action-head.js';
import { vlaFeatureDim } from '../../src/lib/model/action-head-vla.js';
import { loadCheckpoint } from '../../src/lib/model/checkpoint.js';
import { loadTokenizer } from '../../src/lib/model/tokenizer.js';
import { EVAL_SEED, HeadTrainee, chunkErrors, newHeadConfig } from '../../src/lib/train/head.js';
import { trainSft } from '../../src/lib/train/sft.js';
import { Rng } from '../../src/lib/util/rng.js';

let dir: string;
let examples: TrainingExample[];

beforeAll(async () => {
  await selectBackend('cpu');
  dir = mkdtempSync(path.join(os.tmpdir(), 'vlakit-head-train-'));
  examples = await toyExamples();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const head = { hidden: 32, layers: 1, inferenceSteps: 4 };

describe('train-sft with an action head', () => {
  it('writes the head beside the model; the head trains, and a frozen backbone stays as it was', async () => {
    const base = await trainTiny(dir, 'base', examples, { steps: 2 });
    const run = await trainTiny(dir, 'flow', examples, { steps: 6, init: base, actionHead: { objective: 'flow', ...head, freezeBackbone: true } });
    expect(readdirSync(run)).toEqual(expect.arrayContaining(['action_head.json', 'action_head.safetensors', 'model.safetensors', 'config.json', 'tokenizer.json']));
    const cfg = readHeadConfig(run);
    expect(cfg).toMatchObject({ objective: 'flow', horizon: 1, action_dim: 4, state_dim: 0, hidden_size: 32, num_layers: 1, inference_steps: 4 });
    // the two training chunks' statistics: mean and (population) std per dimension
    expect(cfg.action_norm.mean[0]).toBeCloseTo(0.001, 6);
    expect(cfg.action_norm.std[0]).toBeCloseTo(0.011, 6);
    // backbone unchanged, bit for bit
    const before = readSafetensors(path.join(base, 'model.safetensors')).tensors;
    const after = readSafetensors(path.join(run, 'model.safetensors')).tensors;
    for (const [n, a] of before) expect(Buffer.from(after.get(n)!.data.buffer).equals(Buffer.from(a.data.buffer)), n).toBe(true);
    expect(JSON.parse(readFileSync(path.join(run, 'run.json'), 'utf8')).identity.mode).toBe('frozen'); // the head alone trained
    const metrics = readFileSync(path.join(run, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(metrics).toHaveLength(6);
    expect(metrics.every((m) => Number.isFinite(m.action_loss) && m.action_loss > 0 && m.reasoning_loss === 0)).toBe(true);
    const h = loadActionHead(run);
    expect(h.numParameters()).toBeGreaterThan(0);
    h.dispose();
  }, 120_000);

  it('a diffusion head with the backbone trained too: the language loss counts and the backbone changes', async () => {
    const base = await trainTiny(dir, 'base2', examples, { steps: 1 });
    const run = await trainTiny(dir, 'diffusion', examples, { steps: 3, init: base, actionHead: { objective: 'diffusion', ...head, langWeight: 0.5 } });
    expect(readHeadConfig(run).objective).toBe('diffusion');
    const metrics = readFileSync(path.join(run, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    for (const m of metrics) expect(m.loss).toBeCloseTo(m.action_loss + 0.5 * m.reasoning_loss, 4);
    expect(metrics[0].reasoning_loss).toBeGreaterThan(0);
    const before = readSafetensors(path.join(base, 'model.safetensors')).tensors.get('model.layers.0.mlp.up_proj.weight')!;
    const after = readSafetensors(path.join(run, 'model.safetensors')).tensors.get('model.layers.0.mlp.up_proj.weight')!;
    expect(Buffer.from(after.data.buffer).equals(Buffer.from(before.data.buffer))).toBe(false);
  }, 120_000);
});

describe('the action head on the validation split', () => {
  it('chunkErrors: per-dimension MAE, their mean without the gripper, the gripper as accuracy (hand-computed)', () => {
    const pairs = [
      { pred: [[0.1, -0.2, 0.9], [0.0, 0.0, 0.2]], target: [[0.0, 0.0, 1], [0.3, 0.1, 1]] },
      { pred: [[0.5, 0.5, 0.7]], target: [[0.5, 0.1, 0]] },
    ];
    const e = chunkErrors(pairs, 2);
    // dim 0: (0.1 + 0.3 + 0) / 3; dim 1: (0.2 + 0.1 + 0.4) / 3; dim 2: (0.1 + 0.8 + 0.7) / 3
    expect(e.maeDims[0]).toBeCloseTo(0.4 / 3, 12);
    expect(e.maeDims[1]).toBeCloseTo(0.7 / 3, 12);
    expect(e.maeDims[2]).toBeCloseTo(1.6 / 3, 12);
    expect(e.mae).toBeCloseTo((0.4 / 3 + 0.7 / 3) / 2, 12);
    // gripper: 0.9 vs 1 right, 0.2 vs 1 wrong, 0.7 vs 0 wrong
    expect(e.gripperAccuracy).toBeCloseTo(1 / 3, 12);
    const none = chunkErrors(pairs);
    expect(none.gripperAccuracy).toBeUndefined();
    expect(none.mae).toBeCloseTo((0.4 + 0.7 + 1.6) / 9, 12);
  });

  it('a head that predicts zero velocity returns its noise: the metric is the noise against the target, by hand', async () => {
    const base = await trainTiny(dir, 'zero-base', examples, { steps: 1 });
    const ck = loadCheckpoint(base);
    const tok = await loadTokenizer(ck.tokenizerJson);
    const codec = new TextCodec(3);
    const cfg = newHeadConfig(examples.slice(0, 2), codec, vlaFeatureDim(ck.model.config), { objective: 'flow', hidden: 16, layers: 1, inferenceSteps: 3 });
    const h = ActionHead.init(cfg, 1);
    for (const n of ['action_head.out.weight', 'action_head.out.bias']) h.params.get(n)!.assign(tf.zerosLike(h.params.get(n)!));
    const t = new HeadTrainee(ck.model, tok, h, codec, { objective: 'flow' });
    const items = await t.prepare([examples[2]]);
    const r = (await t.evaluateHead(items))!;
    // Euler steps with zero velocity leave the noise; the chunk is the noise in action units
    const target = [0, 0, 0.015, 0];
    const rng = new Rng(EVAL_SEED);
    const noise = target.map(() => rng.normal());
    const pred = noise.map((v, k) => v * cfg.action_norm.std[k] + cfg.action_norm.mean[k]);
    const dims = pred.map((p, k) => Math.abs(p - target[k]));
    expect(r.examples).toBe(1);
    r.maeDims.forEach((v, k) => expect(v).toBeCloseTo(dims[k], 5));
    expect(r.gripper).toBe(3); // 4 numbers: x, y, z, gripper
    expect(r.mae).toBeCloseTo((dims[0] + dims[1] + dims[2]) / 3, 5);
    expect(r.gripperAccuracy).toBe(pred[3] >= 0.5 ? 0 : 1);
    // the loss: the velocity target (noise - x0) against 0, at the seeded time and noise
    const lr = new Rng(EVAL_SEED);
    lr.next(); // the time
    const x0 = target.map((v, k) => (v - cfg.action_norm.mean[k]) / cfg.action_norm.std[k]);
    const want = x0.reduce((a, v) => a + (lr.normal() - v) ** 2, 0) / 4;
    expect(r.loss).toBeCloseTo(want, 4);
    t.dispose();
  }, 120_000);

  it('train-sft --eval-every reports the held-out head error, and it falls as the head overfits', async () => {
    const val = { ...examples[0], id: 'a-val', meta: { ...examples[0].meta, split: 'val' } };
    const outDir = path.join(dir, 'head-val');
    // one training example, 8 times a batch (more noise levels per step)
    const res = await trainSft({ ...TINY, examples: [examples[0], val], outDir, steps: 40, evalEvery: 1, batchSize: 8, lr: 5e-3, actionHead: { objective: 'flow', ...head, freezeBackbone: true } });
    const metrics = readFileSync(path.join(outDir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const first = metrics[0];
    const last = metrics[metrics.length - 1];
    expect(first.val_head_mae_dims).toHaveLength(4);
    expect(Number.isFinite(first.val_head_loss)).toBe(true);
    // seen: 0.70 -> 0.33 (units: one example, so a unit scale); the run is seeded, so this is the same every time
    expect(last.val_head_mae).toBeLessThan(first.val_head_mae * 0.6);
    expect(last.val_head_loss).toBeLessThan(first.val_head_loss);
    expect(res.eval?.head?.mae).toBe(last.val_head_mae);
  }, 300_000); // about 25 s of training alone; the shared test machine can take several times that
});

describe('train-sft --workers with an action head', () => {
  it('3 threads give the losses and the weights (backbone and head) of one thread, with accumulation', async () => {
    const base = await trainTiny(dir, 'dp-base', examples, { steps: 1 });
    const one: number[] = [];
    const three: number[] = [];
    const o = { steps: 3, gradAccum: 2, batchSize: 5, init: base, actionHead: { objective: 'diffusion' as const, ...head, langWeight: 0.5 } };
    const a = await trainTiny(dir, 'dp-head1', examples, { ...o, onMetrics: (m) => one.push(m.loss as number) });
    const b = await trainTiny(dir, 'dp-head3', examples, { ...o, workers: 3, onMetrics: (m) => three.push(m.loss as number) });
    expect(three).toHaveLength(3);
    three.forEach((l, i) => expect(Math.abs(l - one[i]), `step ${i + 1}`).toBeLessThanOrEqual(1e-5 * Math.max(1, one[i])));
    const worst = (x: Map<string, { data: Float32Array }>, y: Map<string, { data: Float32Array }>) => {
      let w = 0;
      for (const [n, v] of x) v.data.forEach((e, i) => (w = Math.max(w, Math.abs(e - y.get(n)!.data[i]))));
      return w;
    };
    const file = (d: string, f: string) => readSafetensors(path.join(d, f)).tensors;
    expect(worst(file(a, 'action_head.safetensors'), file(b, 'action_head.safetensors'))).toBeLessThan(1e-5);
    expect(worst(file(a, 'model.safetensors'), file(b, 'model.safetensors'))).toBeLessThan(1e-5);
    // the backbone trained too (the language loss): not the --init weights
    expect(worst(file(a, 'model.safetensors'), file(base, 'model.safetensors'))).toBeGreaterThan(1e-4);
  }, 300_000);
});
