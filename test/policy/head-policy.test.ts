import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportModel } from '../../src/lib/export/index.js';
import { OrtHeadEngine } from '../../src/lib/export/head.js';
import { openModel, type VlaRunner } from '../../src/lib/infer/index.js';
import { selectBackend } from '../../src/lib/model/backend.js';
import { chunkNoise, chunkSize, readHeadConfig, sampleChunk } from '../../src/lib/model/action-head.js';
import { preset } from '../../src/lib/model/config.js';
import { readSafetensors, writeSafetensors } from '../../src/lib/model/safetensors.js';
import { TfjsHeadEngine, openHeadEngine, sampleHeadChunk } from '../../src/lib/policy/head-policy.js';
import { TfjsRunner } from '../../src/lib/infer/tfjs.js';
import { subSeed } from '../../src/lib/util/rng.js';
import { tempDir } from '../helpers.js';
import { png, toyExamples } from '../model/examples.js';
import { keypointReadouts } from '../model/keypoint-reference.js';
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
    // the hierarchy needs a planner and a verifier other than the head itself: usage errors (exit 2)
    const h = await execa('node', [BIN, 'rollout', '--policy', ckpt, '--episodes', '1', '--max-steps', '2', '-o', path.join(dir, 'h.jsonl')], { reject: false });
    expect(h.exitCode).toBe(2);
    expect(h.stderr).toMatch(/action head, which writes no subtask list: .*--planner oracle/);
    const v = await execa('node', [BIN, 'rollout', '--policy', ckpt, '--planner', 'oracle', '--episodes', '1', '--max-steps', '2', '-o', path.join(dir, 'h.jsonl')], { reject: false });
    expect(v.exitCode).toBe(2);
    expect(v.stderr).toMatch(/answers no verification question: .*--verifier oracle/);
    expect(v.stderr).not.toMatch(/\n\s+at /);
  }, 180_000);

  it('in the hierarchy (--planner oracle --verifier oracle) the head is prompted with each subtask, moved on by the verifier', async () => {
    const { HeadPolicy } = await import('../../src/lib/policy/head-policy.js');
    const { Hierarchy, OraclePlanner } = await import('../../src/lib/policy/hierarchy.js');
    const { OracleVerifier, codecOf } = await import('../../src/lib/policy/index.js');
    const ck = await openModel(ckpt);
    const prompts: string[] = [];
    // the runner, its prompts recorded
    const spy = new Proxy(ck, {
      get(t, k) {
        if (k === 'prepare') return (p: string, ...rest: unknown[]) => (prompts.push(p), (t.prepare as (...a: unknown[]) => unknown).call(t, p, ...rest));
        const v = Reflect.get(t, k) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
      },
    }) as VlaRunner;
    const policy = new HeadPolicy(spy, await openHeadEngine(ck, ckpt), { prompt: 'task', codec: codecOf(ck), hierarchy: new Hierarchy(new OraclePlanner(), new OracleVerifier(), 1) });
    const subtasks = ['move to the red block', 'grasp the red block', 'lift the red block'];
    const obs = { image_0: { mime: 'image/png', b64: readFileSync(image).toString('base64') }, state: [0.35, 0, 0.18, 1] };
    const instruction = 'pick up the red block';
    const at = (done: number, extra: Record<string, unknown> = {}) => ({ instruction, step: 0, info: { task: { subtasks }, oracle: { subtasks_done: done, subtask: { kind: 'reach' } }, ...extra } });
    policy.reset({ instruction, seed: 3 });
    const c0 = await policy.cycle(obs, at(0));
    expect(c0!.info).toMatchObject({ subtasks, planner: 'oracle', subtask_index: 0, subtask: subtasks[0] });
    expect(prompts.at(-1)!.split('\n')[0]).toContain('move to the red block');
    expect(prompts.at(-1)).not.toContain(instruction);
    // the world reports the first subtask done: the next one is the task
    const c1 = await policy.cycle(obs, at(1));
    expect(c1!.info).toMatchObject({ verifier: { verifier: 'oracle', subtask_index: 0, success: true }, subtask_index: 1 });
    expect(prompts.at(-1)).toContain('grasp the red block');
    // not done: one retry (--max-retries 1), then the policy gives up on it and says so
    expect((await policy.cycle(obs, at(1)))!.info).toMatchObject({ verifier: { success: false, retry: 1 }, subtask_index: 1 });
    expect((await policy.cycle(obs, at(1)))!.info).toMatchObject({ verifier: { success: false, gave_up: true }, subtask_index: 2 });
    expect(prompts.at(-1)).toContain('lift the red block');
    // the task done: the plan is finished
    expect(await policy.cycle(obs, at(3, { success: true }))).toBeNull();
    // an env without a subtask list: a usage error naming what is missing
    policy.reset({ instruction, seed: 3 });
    await expect(policy.cycle(obs, { instruction, step: 0, info: {} })).rejects.toThrow(/oracle planner reads the env's subtask list \(info.task.subtasks/);
    await policy.close();
    await ck.dispose();
    // through the CLI: another model as the planner (its subtask list, sampled), the world's oracle as verifier
    const text = await trainTiny(dir, 'planner', await toyExamples(), { steps: 1 });
    const out = path.join(dir, 'planned.jsonl');
    const RUN = ['rollout', '--policy', ckpt, '--mode', 'hierarchical', '--verifier', 'oracle', '--prompt', 'task', '--execute', '1', '--tasks', 'place', '--episodes', '1', '--max-steps', '3', '--width', '32', '--height', '32'];
    const r = await execa('node', [BIN, ...RUN, '--planner', text, '-o', out], { reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
    const first = JSON.parse(readFileSync(out, 'utf8').split('\n')[0]);
    expect(first.policy.planner).toBe(text);
    expect(typeof first.policy.subtasks_text).toBe('string');
    expect(first.policy.subtasks.length).toBeGreaterThan(0);
    expect(first.policy.subtask).toBe(first.policy.subtasks[0]);
    expect(first.episode_metadata.policy).toBe('model:head-flow-hierarchical');
    const bad = await execa('node', [BIN, ...RUN, '--planner', path.join(dir, 'nope'), '-o', path.join(dir, 'bad.jsonl')], { reject: false });
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toMatch(/--planner: expected model, oracle or a model directory/);
    // --max-retries when not given: a head's chunk here is one step, so it gets room for a whole subtask (100), not
    // the text policy's 3; the untrained head never reaches the block, and the oracle rejects every step
    const verdicts = async (name: string, extra: string[]) => {
      const o = path.join(dir, name);
      const longer = RUN.map((a, i) => (RUN[i - 1] === '--max-steps' ? '7' : a)); // 7 steps instead of 3
      const v = await execa('node', [BIN, ...longer, '--planner', 'oracle', ...extra, '-o', o], { reject: false });
      expect(v.exitCode, v.stderr).toBe(0);
      return readFileSync(o, 'utf8').trim().split('\n').map((l) => JSON.parse(l).policy?.verifier as { retry?: number; gave_up?: boolean } | undefined).filter((x) => x !== undefined);
    };
    const patient = await verdicts('retries-default.jsonl', []);
    expect(patient.map((x) => x.retry)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(patient.some((x) => x.gave_up)).toBe(false);
    const hasty = await verdicts('retries-2.jsonl', ['--max-retries', '2']);
    expect(hasty[2]).toMatchObject({ gave_up: true });
  }, 180_000);

  it('--head-noise 0 starts every chunk from the prior\'s mean: one chunk per observation whatever the seed; --head-samples K takes the median of K draws; rollout takes both, a text policy refuses them', async () => {
    const ck = (await openModel(ckpt)) as TfjsRunner;
    const a = await openHeadEngine(ck, ckpt);
    const img = [new Uint8Array(readFileSync(image))];
    const at = (seed: number, noiseScale?: number) => sampleHeadChunk(ck, a, 'Subtask: grasp the red block', img, { seed, noiseScale });
    const z1 = (await at(1, 0)).chunk.flat();
    const z2 = (await at(2, 0)).chunk.flat();
    expect(maxDiff(z1, z2)).toBe(0);
    // the sampler itself from zeros: the same chunk
    const fa = await a.features(await ck.prepare('Subtask: grasp the red block', img));
    const fromZeros = await sampleChunk(a.config, new Float64Array(chunkSize(a.config)), (xt, t) => a.denoise(xt, t, fa));
    const { denormalizeChunk } = await import('../../src/lib/model/action-head.js');
    expect(maxDiff(z1, denormalizeChunk(a.config, fromZeros).flat())).toBeLessThan(1e-6);
    // the default scale (1) draws a different chunk per seed; scale 1 given explicitly is the default
    const n1 = (await at(1)).chunk.flat();
    expect(maxDiff(n1, (await at(2)).chunk.flat())).toBeGreaterThan(1e-4);
    expect(maxDiff(n1, (await at(1, 1)).chunk.flat())).toBe(0);
    // --head-samples K: the element-wise median of the chunks the seed and its first K-1 sub-seeds draw one by one
    const many = (samples: number) => sampleHeadChunk(ck, a, 'Subtask: grasp the red block', img, { seed: 1, samples });
    expect(maxDiff(n1, (await many(1)).chunk.flat())).toBe(0);
    const three = [n1, (await at(subSeed(1, 1))).chunk.flat(), (await at(subSeed(1, 2))).chunk.flat()];
    const median3 = n1.map((_, j) => three.map((c) => c[j]).sort((x, y) => x - y)[1]);
    expect(maxDiff((await many(3)).chunk.flat(), median3)).toBeLessThan(1e-6);
    expect(maxDiff(median3, n1)).toBeGreaterThan(1e-4);
    await a.dispose();
    await (ck as VlaRunner).dispose();
    const RUN = ['rollout', '--mode', 'direct', '--prompt', 'task', '--tasks', 'pick', '--episodes', '1', '--max-steps', '3', '--width', '32', '--height', '32', '--head-noise', '0'];
    const out = path.join(dir, 'noise0.jsonl');
    const r = await execa('node', [BIN, ...RUN, '--policy', ckpt, '--head-samples', '3', '-o', out], { reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(readFileSync(out, 'utf8')).toContain('"chunk"');
    const text = await trainTiny(dir, 'text', await toyExamples(), { steps: 1 });
    const t = await execa('node', [BIN, ...RUN, '--policy', text, '-o', path.join(dir, 'noise-text.jsonl')], { reject: false });
    expect(t.exitCode).toBe(2);
    expect(t.stderr).toMatch(/--head-noise.*no action head/);
    expect(t.stderr).not.toMatch(/\n\s+at /);
    const ts = await execa('node', [BIN, ...RUN.slice(0, -2), '--head-samples', '3', '--policy', text, '-o', path.join(dir, 'samples-text.jsonl')], { reject: false });
    expect(ts.exitCode).toBe(2);
    expect(ts.stderr).toMatch(/--head-samples.*no action head/);
    const scripted = await execa('node', [BIN, 'rollout', '--policy', 'scripted', '--episodes', '1', '--head-noise', '0', '-o', path.join(dir, 'noise-scripted.jsonl')], { reject: false });
    expect(scripted.exitCode).toBe(2);
    expect(scripted.stderr).toMatch(/--head-noise applies only with a learned --policy/);
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

describe('an action head fed the keypoint readouts (--head-keypoints)', () => {
  // keypoint_context 3: keys from the 3 x 3 cells around each cell, in the checkpoint's graph and the ONNX export's alike
  it.each([1, 3])('features end with the spatial softmax\'s readouts (a float64 reference); the export matches the checkpoint (keypoint_context %i)', async (context) => {
    const base = preset('tiny', 128, 1);
    const sizes = { ...base, vision_config: { ...base.vision_config, stem_patch_size: 4, stem_channels: 8, keypoints: 4, keypoint_context: context } };
    const run = await trainTiny(dir, `head-kp-${context}`, await toyExamples(), { steps: 2, sizes, actionHead: { objective: 'flow', hidden: 16, layers: 1, inferenceSteps: 2, keypoints: true } });
    const hc = readHeadConfig(run);
    const D = base.text_config.hidden_size;
    expect(hc.keypoint_features).toBe(true);
    expect(hc.cond_dim).toBe(2 * D + 4 * 8);
    // sharpen the spatial softmax (a tiny run's attention is nearly uniform, where a wrong score would not show)
    const wfile = path.join(run, 'model.safetensors');
    const st = readSafetensors(wfile);
    for (const n of ['vision.keypoints.query', 'vision.keypoints.key.weight', 'vision.stem.weight', 'vision.keypoints.value.weight']) {
      const t = st.tensors.get(n)!;
      st.tensors.set(n, { ...t, data: t.data.map((v) => v * 30) });
    }
    await writeSafetensors(wfile, st.tensors, st.metadata);
    const out = path.join(dir, `head-kp-${context}-onnx`);
    await exportModel(run, out, { ops: 'standard' });
    const ck = (await openModel(run)) as TfjsRunner;
    const ex = await openModel(out);
    const a = await openHeadEngine(ck, run);
    const b = await openHeadEngine(ex, out);
    const img = [new Uint8Array(readFileSync(image))];
    // a patterned image (a plain one gives every cell the same key, and any softmax is uniform over them)
    const prepared = await ck.prepare('Subtask: grasp the red block', img);
    const input = { ...prepared, pixels: Float32Array.from(prepared.pixels, (_, i) => Math.sin(i * 0.37) * Math.cos(i * 0.011)) };
    expect((await ex.prepare('Subtask: grasp the red block', img)).ids).toEqual(input.ids);
    const fa = await a.features(input);
    expect(fa.length).toBe(hc.cond_dim);
    expect(maxDiff(fa, await b.features(input))).toBeLessThan(1e-4);
    const S = base.vision_config.image_size;
    const ref = keypointReadouts(readSafetensors(path.join(run, 'model.safetensors')).tensors, input.pixels, S, 4, 4);
    expect(maxDiff(fa.slice(2 * D), ref)).toBeLessThan(1e-4);
    // the readouts are far from the uniform average over the cells (what any softmax of tiny scores gives)
    const flat = keypointReadouts(new Map([...st.tensors].map(([n, t]) => [n, n === 'vision.keypoints.query' ? { ...t, data: t.data.map(() => 0) } : t])), input.pixels, S, 4, 4);
    expect(maxDiff(ref, flat)).toBeGreaterThan(0.05);
    await a.dispose();
    await b.dispose();
    await ck.dispose();
    await ex.dispose();
  }, 120_000);

  it('a run from it keeps its head (and the keypoint features) with the same objective; another objective starts a new head without them unless asked', async () => {
    const base = preset('tiny', 128, 1);
    const sizes = { ...base, vision_config: { ...base.vision_config, stem_patch_size: 4, stem_channels: 8, keypoints: 4 } };
    const D = base.text_config.hidden_size;
    const head = { hidden: 16, layers: 1, inferenceSteps: 2 };
    const kp = await trainTiny(dir, 'head-kp-init', await toyExamples(), { steps: 1, sizes, actionHead: { objective: 'flow', ...head, keypoints: true } });
    const same = await trainTiny(dir, 'head-kp-same', await toyExamples(), { steps: 1, init: kp, actionHead: { objective: 'flow', ...head } });
    expect(readHeadConfig(same)).toMatchObject({ keypoint_features: true, cond_dim: 2 * D + 4 * 8 });
    const other = await trainTiny(dir, 'head-kp-other', await toyExamples(), { steps: 1, init: kp, actionHead: { objective: 'diffusion', ...head } });
    expect(readHeadConfig(other)).toMatchObject({ objective: 'diffusion', keypoint_features: false, cond_dim: 2 * D });
    const asked = await trainTiny(dir, 'head-kp-asked', await toyExamples(), { steps: 1, init: kp, actionHead: { objective: 'diffusion', ...head, keypoints: true } });
    expect(readHeadConfig(asked)).toMatchObject({ keypoint_features: true, cond_dim: 2 * D + 4 * 8 });
  }, 120_000);

  it('is refused for a backbone without keypoints', async () => {
    await expect(trainTiny(dir, 'head-kp-none', await toyExamples(), { steps: 1, actionHead: { objective: 'flow', hidden: 16, layers: 1, keypoints: true } })).rejects.toThrow(/keypoints/);
  }, 60_000);
});
