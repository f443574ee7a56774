import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportModel } from '../../src/lib/export/index.js';
import { OrtHeadEngine } from '../../src/lib/export/head.js';
import { openModel, type VlaRunner } from '../../src/lib/infer/index.js';
import { selectBackend } from '../../src/lib/model/backend.js';
import { chunkNoise, chunkSize, sampleChunk } from '../../src/lib/model/action-head.js';
import { TfjsHeadEngine, openHeadEngine } from '../../src/lib/policy/head-policy.js';
import { TfjsRunner } from '../../src/lib/infer/tfjs.js';
import { tempDir } from '../helpers.js';
import { png, toyExamples } from '../model/examples.js';
import { trainTiny } from '../model/runs.js';

const dir = tempDir('vlakit-head-policy-');
const BIN = path.resolve('bin/run.js');
let ckpt: string;
let onnx: string;
let image: string;

beforeAll(async () => {
  await selectBackend('cpu');
  const examples = await toyExamples();
  // the rollout prompt of --prompt task, so the policy sees prompts like the training ones
  ckpt = await trainTiny(dir, 'head', examples, { steps: 4, actionHead: { objective: 'flow', hidden: 32, layers: 1, inferenceSteps: 3 } });
  onnx = path.join(dir, 'head-onnx');
  await exportModel(ckpt, onnx, { ops: 'standard' });
  image = path.join(dir, 'red.png');
  writeFileSync(image, Buffer.from((await png(220, 30, 30)).b64, 'base64'));
}, 300_000);
afterAll(() => undefined);

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe('the action head exported to ONNX', () => {
  it('head_prefill and head_denoise match the checkpoint to 1e-4, and so does the sampled chunk', async () => {
    const ck = (await openModel(ckpt)) as TfjsRunner;
    const ex = await openModel(onnx);
    const a = (await openHeadEngine(ck, ckpt)) as TfjsHeadEngine;
    const b = (await openHeadEngine(ex, onnx)) as OrtHeadEngine;
    expect(a).toBeInstanceOf(TfjsHeadEngine);
    expect(b).toBeInstanceOf(OrtHeadEngine);
    const input = await ck.prepare('Subtask: grasp the red block', [new Uint8Array(readFileSync(image))]);
    const fa = await a.features(input);
    const fb = await b.features(await ex.prepare('Subtask: grasp the red block', [new Uint8Array(readFileSync(image))]));
    expect(fa.length).toBe(a.config.cond_dim);
    expect(maxDiff(fa, fb)).toBeLessThan(1e-4);
    const n = chunkSize(a.config);
    const x = Float32Array.from(chunkNoise(a.config, 1, 5));
    for (const t of [1, 0.5, 0.01]) expect(maxDiff(await a.denoise(x, t, fa), await b.denoise(x, t, fa)), `t ${t}`).toBeLessThan(1e-4);
    const noise = chunkNoise(a.config, 1, 9);
    const sa = await sampleChunk(a.config, noise, (xt, t) => a.denoise(xt, t, fa));
    const sb = await sampleChunk(b.config, noise, (xt, t) => b.denoise(xt, t, fb));
    expect(sa.length).toBe(n);
    expect(maxDiff(sa, sb)).toBeLessThan(1e-4);
    await a.dispose();
    await b.dispose();
    await (ck as VlaRunner).dispose();
    await ex.dispose();
  }, 120_000);
});

describe('generate and rollout with the head', () => {
  it('generate --json prints the sampled chunk, the same from the checkpoint and its export', async () => {
    const run = async (model: string) => JSON.parse((await execa('node', [BIN, 'generate', '--model', model, '--prompt', 'Subtask: grasp the red block', '--image', image, '--json'])).stdout) as { chunk: number[][]; objective: string; steps: number };
    const a = await run(ckpt);
    expect(a.objective).toBe('flow');
    expect(a.steps).toBe(3);
    expect(a.chunk).toHaveLength(1);
    expect(a.chunk[0]).toHaveLength(4);
    const b = await run(onnx);
    expect(maxDiff(a.chunk.flat(), b.chunk.flat())).toBeLessThan(1e-4);
  }, 120_000);

  it('rollout --policy <checkpoint with a head> runs episodes end to end through the safety filter', async () => {
    const out = path.join(dir, 'rollout.jsonl');
    const r = await execa('node', [BIN, 'rollout', '--policy', ckpt, '--mode', 'direct', '--prompt', 'task', '--tasks', 'pick', '--episodes', '1', '--max-steps', '3', '--width', '32', '--height', '32', '--json', '-o', out], { reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
    const records = readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(records.length).toBeGreaterThanOrEqual(2);
    const withHead = records.filter((s) => s.policy?.head);
    expect(withHead.length).toBeGreaterThan(0);
    expect(withHead[0].policy.head).toEqual({ objective: 'flow', steps: 3 });
    expect(withHead[0].policy.chunk[0]).toHaveLength(4);
    // hierarchical mode is refused with a usage error (exit 2)
    const h = await execa('node', [BIN, 'rollout', '--policy', ckpt, '--episodes', '1', '--max-steps', '2', '-o', path.join(dir, 'h.jsonl')], { reject: false });
    expect(h.exitCode).toBe(2);
    expect(h.stderr).toMatch(/action head.*--mode direct/);
  }, 180_000);

  it('rollout --workers 2 with a head policy writes the records of --workers 1 (same seeds, same chunks)', async () => {
    const RUN = ['rollout', '--policy', ckpt, '--mode', 'direct', '--prompt', 'task', '--tasks', 'pick,place', '--episodes', '3', '--max-steps', '3', '--width', '32', '--height', '32', '--no-timing'];
    const one = await execa('node', [BIN, ...RUN, '--workers', '1', '-o', path.join(dir, 'w1.jsonl')], { reject: false });
    expect(one.exitCode, one.stderr).toBe(0);
    const two = await execa('node', [BIN, ...RUN, '--workers', '2', '-o', path.join(dir, 'w2.jsonl')], { reject: false });
    expect(two.exitCode, two.stderr).toBe(0);
    const serial = readFileSync(path.join(dir, 'w1.jsonl'), 'utf8');
    expect(serial.split('\n').filter((l) => l.includes('"chunk"')).length).toBeGreaterThan(2);
    expect(readFileSync(path.join(dir, 'w2.jsonl'), 'utf8')).toBe(serial);
  }, 180_000);
});
