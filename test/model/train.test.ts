import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import type { TrainingExample } from '../../src/lib/actions/index.js';
import { selectBackend } from '../../src/lib/model/backend.js';
import { loadCheckpoint } from '../../src/lib/model/checkpoint.js';
import { preset } from '../../src/lib/model/config.js';
import { VlaModel } from '../../src/lib/model/model.js';
import { buildTokenizer } from '../../src/lib/model/tokenizer.js';
import { makeBatch, oversampleCounts, parseOversample, prepare, repeatItems } from '../../src/lib/train/data.js';
import { sftLoss, tokenCrossEntropy } from '../../src/lib/train/loss.js';
import { evenlySpread, trainSft } from '../../src/lib/train/sft.js';
import { tempDir } from '../helpers.js';
import { toyExamples } from './examples.js';
import { TINY, freshDir, trainTiny } from './runs.js';

const dir = tempDir();
let examples: TrainingExample[];

beforeAll(async () => {
  await selectBackend('wasm');
  examples = await toyExamples();
});

const base = TINY;
const LORA = { r: 4, alpha: 8, targets: ['q', 'k', 'v', 'o', 'gate', 'up', 'down'] };

describe('train-sft', () => {
  it('a tiny model overfits one batch to near-zero loss, with no tensor leak across steps', async () => {
    const before = tf.memory().numTensors;
    const counts: number[] = [];
    const losses: number[] = [];
    const res = await trainSft({ ...base, examples: examples.slice(0, 2), outDir: path.join(freshDir(dir, 'overfit'), 'run'), steps: 120, clip: 0, onMetrics: (m) => (counts.push(tf.memory().numTensors), losses.push(m.loss as number)) });
    expect(losses[0]).toBeGreaterThan(3);
    expect(res.finalLoss).toBeLessThan(0.05);
    expect(new Set(counts.slice(1)).size).toBe(1); // flat across steps
    expect(tf.memory().numTensors).toBe(before);
  }, 120_000);

  it('LoRA trains only adapters: base weights stay bit-identical; frozen layers do not move', async () => {
    const init = await trainTiny(dir, 'init', examples, { steps: 2 });
    const lora = await trainTiny(dir, 'lora', examples, { init, steps: 5, lora: LORA });
    const a = loadCheckpoint(init).model;
    const b = loadCheckpoint(lora).model;
    for (const [n, v] of a.params) expect(Buffer.from((b.params.get(n)!.dataSync() as Float32Array).buffer).equals(Buffer.from((v.dataSync() as Float32Array).buffer)), n).toBe(true);
    const loraB = [...b.params.keys()].filter((n) => n.includes('lora_B'));
    expect(loraB.length).toBe(2 * 7);
    expect(loraB.some((n) => tf.tidy(() => tf.max(tf.abs(b.params.get(n)!)).dataSync()[0]) > 0)).toBe(true); // adapters learned
    const adapter = JSON.parse(readFileSync(path.join(lora, 'adapter_config.json'), 'utf8'));
    expect(adapter).toMatchObject({ peft_type: 'LORA', r: 4, lora_alpha: 8, base_model_name_or_path: init });
    a.dispose();
    b.dispose();

    const frozen = await trainTiny(dir, 'frozen', examples, { init, steps: 3, freezeLayers: 1, freezeVision: true });
    const c = loadCheckpoint(init).model;
    const d = loadCheckpoint(frozen).model;
    const same = (n: string) => Buffer.from((c.params.get(n)!.dataSync() as Float32Array).buffer).equals(Buffer.from((d.params.get(n)!.dataSync() as Float32Array).buffer));
    expect(same('model.layers.0.self_attn.q_proj.weight')).toBe(true);
    expect(same('vision.patch_embed.weight')).toBe(true);
    expect(same('model.layers.1.self_attn.q_proj.weight')).toBe(false);
    c.dispose();
    d.dispose();
  }, 120_000);

  it('N steps straight equal N/2 + resume + N/2 (same losses)', async () => {
    const straight: number[] = [];
    await trainTiny(dir, 'straight', examples, { steps: 6, gradAccum: 2, onMetrics: (m) => straight.push(m.loss as number) });
    const ctl = new AbortController();
    const first: number[] = [];
    const cut = path.join(freshDir(dir, 'cut'), 'run');
    await expect(
      trainSft({ ...base, examples, outDir: cut, steps: 6, gradAccum: 2, saveEvery: 3, signal: ctl.signal, onMetrics: (m) => (first.push(m.loss as number), m.step === 4 && ctl.abort()) }),
    ).rejects.toMatchObject({ name: 'AbortError' });
    expect(readdirSync(cut)).toContain('checkpoint-3');
    expect(readFileSync(path.join(cut, 'metrics.jsonl'), 'utf8').trim().split('\n')).toHaveLength(4); // step 4 ran, after the checkpoint
    const rest: number[] = [];
    await trainSft({ ...base, examples, outDir: cut, steps: 6, gradAccum: 2, saveEvery: 3, resume: true, onMetrics: (m) => rest.push(m.loss as number) });
    const resumed = [...first.slice(0, 3), ...rest];
    expect(resumed).toHaveLength(6);
    resumed.forEach((l, i) => expect(Math.abs(l - straight[i]), `step ${i + 1}`).toBeLessThanOrEqual(1e-6));
    // the resumed run's metrics: steps 1-6 once each (step 4 of the cut run was dropped and run again)
    const steps = readFileSync(path.join(cut, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).step);
    expect(steps).toEqual([1, 2, 3, 4, 5, 6]);
  }, 120_000);
});

describe('train-sft --oversample', () => {
  it('parses TEXT=K; repeats the examples whose prompt has the first matching text; a rule that matches nothing is an error', async () => {
    expect(parseOversample('move the gripper up and away=8')).toEqual({ pattern: 'move the gripper up and away', times: 8 });
    expect(parseOversample('a=b=3')).toEqual({ pattern: 'a=b', times: 3 });
    for (const bad of ['up and away', '=3', 'x=0', 'x=1.5', 'x=101']) expect(() => parseOversample(bad)).toThrow(/expected TEXT=K/);
    const [a, b, c] = await toyExamples();
    const { counts, matched } = oversampleCounts([a, b, c], [{ pattern: 'red block', times: 3 }, { pattern: 'grasp', times: 2 }]);
    // a and c name the red block (first rule, 3 times); b only the second rule
    expect(repeatItems(['A', 'B', 'C'], counts)).toEqual(['A', 'A', 'A', 'B', 'B', 'C', 'C', 'C']);
    expect(matched).toEqual([2, 1]);
    expect(repeatItems(['A'], oversampleCounts([a], []).counts)).toEqual(['A']);
    expect(() => oversampleCounts([a], [{ pattern: 'spoon', times: 2 }])).toThrow(/"spoon": no training example's prompt contains it/);
  });

  it('trains as if the matching examples were in the data that many times (the same losses)', async () => {
    const [a, b] = await toyExamples();
    const dir = tempDir('vlakit-oversample-');
    const losses = (d: string) => readFileSync(path.join(dir, d, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).loss);
    // one checkpoint to start from (a new model's tokenizer is learned from its data, which a copy would change)
    const init = await trainTiny(dir, 'init', [a, b], { steps: 1 });
    const from = { ...TINY, preset: undefined, vocabSize: undefined, init, steps: 4 };
    await trainSft({ ...from, examples: [a, b], outDir: path.join(dir, 'rule'), oversample: [{ pattern: 'blue', times: 2 }] });
    await trainSft({ ...from, examples: [a, b, { ...b, id: 'b2' }], outDir: path.join(dir, 'copy') });
    await trainSft({ ...from, examples: [a, b], outDir: path.join(dir, 'plain') });
    expect(losses('rule')).toEqual(losses('copy'));
    expect(losses('rule')).not.toEqual(losses('plain'));
  }, 120_000);
});

describe('train-sft --eval-limit', () => {
  it('takes N val examples evenly spread over the split, in order; all of them without a limit or when there are fewer', () => {
    const xs = Array.from({ length: 10 }, (_, i) => i);
    expect(evenlySpread(xs, 4)).toEqual([0, 2, 5, 7]);
    expect(evenlySpread(xs, 1)).toEqual([0]);
    expect(evenlySpread(xs, 10)).toBe(xs);
    expect(evenlySpread(xs, 50)).toBe(xs);
    expect(evenlySpread(xs, undefined)).toBe(xs);
  });

  it('evaluates on that many examples, and the run keeps its identity (eval settings are not part of it)', async () => {
    const base = await toyExamples();
    const vals = [0, 1, 2, 3].map((i) => ({ ...base[2], id: `v${i}` }));
    const examples = [base[0], base[1], ...vals];
    const dir = tempDir('vlakit-eval-limit-');
    const all = await trainSft({ ...TINY, examples, outDir: path.join(dir, 'all'), steps: 1, evalEvery: 1 });
    const two = await trainSft({ ...TINY, examples, outDir: path.join(dir, 'two'), steps: 1, evalEvery: 1, evalLimit: 2 });
    expect(all.eval?.examples).toBe(4);
    expect(two.eval?.examples).toBe(2);
    const id = (d: string) => JSON.parse(readFileSync(path.join(dir, d, 'run.json'), 'utf8')).fingerprint;
    expect(id('two')).toBe(id('all'));
  }, 120_000);
});

describe('train-sft --workers (data-parallel threads)', () => {
  it('3 threads give the losses and the weights of one thread (the batch split, the gradients summed), with accumulation', async () => {
    const one: number[] = [];
    const three: number[] = [];
    const a = await trainTiny(dir, 'dp1', examples, { steps: 4, gradAccum: 2, batchSize: 5, onMetrics: (m) => one.push(m.loss as number) });
    const b = await trainTiny(dir, 'dp3', examples, { steps: 4, gradAccum: 2, batchSize: 5, workers: 3, onMetrics: (m) => three.push(m.loss as number) });
    expect(three).toHaveLength(4);
    three.forEach((l, i) => expect(Math.abs(l - one[i]), `step ${i + 1}`).toBeLessThanOrEqual(1e-5 * Math.max(1, one[i])));
    const x = loadCheckpoint(a).model;
    const y = loadCheckpoint(b).model;
    let worst = 0;
    for (const [n, v] of x.params) worst = Math.max(worst, tf.tidy(() => tf.max(tf.abs(tf.sub(v, y.params.get(n)!))).dataSync()[0]));
    expect(worst).toBeLessThan(1e-5);
    x.dispose();
    y.dispose();
  }, 120_000);

  it('refuses more threads than examples per batch', async () => {
    await expect(trainTiny(dir, 'dpbad', examples, { steps: 1, batchSize: 2, workers: 3 })).rejects.toMatchObject({ code: 'E_USAGE' });
  });
});

describe('the loss', () => {
  it('is the mean CE over action tokens plus lambda_r x the mean CE over reasoning tokens; prompt tokens weigh nothing', async () => {
    const tok = await buildTokenizer(['Subtask: grasp the red block the red block is ahead\n[[0.012, -0.004, 0.000, 1]]'], 96);
    const model = VlaModel.init(preset('tiny', tok.vocabSize, 1), 1);
    const items = await prepare(examples.slice(0, 1), tok, { cameras: 1, imageSize: 32, maxTokens: 200 });
    const batch = makeBatch(items, { cameras: 1, size: 32 });
    const ce = tf.tidy(() => tokenCrossEntropy(model.forward(batch.pixels as tf.Tensor5D, batch.ids).logits, batch.ids).arraySync()[0]);
    const w = items[0];
    const mean = (kind: 'action' | 'reasoning') => {
      const xs = ce.filter((_, t) => w[kind][t + 1] === 1);
      return xs.reduce((a, b) => a + b, 0) / xs.length;
    };
    for (const lambda of [0, 0.5, 2]) {
      const l = tf.tidy(() => sftLoss(model, batch, lambda).loss.dataSync()[0]);
      expect(l).toBeCloseTo(mean('action') + lambda * mean('reasoning'), 4);
    }
    // the spans pick exactly the tokens of their characters
    const actionIds = w.ids.filter((_, t) => w.action[t] === 1);
    expect(tok.decode(actionIds.slice(0, -1))).toBe('[[0.012, -0.004, 0.000, 1]]'); // the last one is <eos>
    expect(tok.decode(w.ids.filter((_, t) => w.reasoning[t] === 1))).toBe('the red block is ahead\n'); // with the separator
    expect(w.action.slice(0, w.ids.indexOf(4) + 1).every((x) => x === 0)).toBe(true); // nothing up to <sep>
    tf.dispose([batch.pixels, batch.ids, batch.action, batch.reasoning]);
    model.dispose();
  });
});

describe('safetensors written by train-sft', () => {
  it('follows the format: u64 header length, JSON header with F32 dtypes and data offsets, 8-byte alignment', async () => {
    const init = await trainTiny(dir, 'st-init', examples, { steps: 1 });
    const lora = await trainTiny(dir, 'st-lora', examples, { init, steps: 1, lora: LORA });
    const buf = readFileSync(path.join(lora, 'adapter_model.safetensors'));
    const n = Number(buf.readBigUInt64LE(0));
    expect((8 + n) % 8).toBe(0);
    const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
    const names = Object.keys(header).filter((k) => k !== '__metadata__');
    expect(names).toContain('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight');
    const a = header['base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight'];
    expect(a.dtype).toBe('F32');
    expect(a.shape).toEqual([4, 32]); // PyTorch layout [r, in]
    let end = 0;
    for (const k of names) end = Math.max(end, header[k].data_offsets[1]);
    expect(8 + n + end).toBe(buf.length);
  });
});

describe('generation', () => {
  it('greedy decoding with and without the KV cache gives the same tokens; the overfit model says its target', async () => {
    const { generate: gen } = await import('../../src/lib/infer/index.js');
    const { TfjsRunner } = await import('../../src/lib/infer/tfjs.js');
    const { loadTokenizer } = await import('../../src/lib/model/tokenizer.js');
    const ck = loadCheckpoint(await trainTiny(dir, 'gen-overfit', examples.slice(0, 2), { steps: 120, clip: 0 }));
    const tok = await loadTokenizer(ck.tokenizerJson);
    const [item] = await prepare(examples.slice(0, 1), tok, { cameras: 1, imageSize: 32, maxTokens: 200 });
    const prompt = 'Subtask: grasp the red block';
    const runner = new TfjsRunner(ck.model, tok);
    const generate = (px: Float32Array, p: string, o: Parameters<typeof gen>[3]) => gen(runner, px, p, o);
    const before = tf.memory().numTensors;
    const cached = await generate(item.pixels, prompt, { maxNewTokens: 40 });
    const plain = await generate(item.pixels, prompt, { maxNewTokens: 40, useCache: false });
    expect(tf.memory().numTensors).toBe(before);
    expect(cached.ids).toEqual(plain.ids);
    expect(cached.text).toBe('the red block is ahead\n[[0.012, -0.004, 0.000, 1]]');
    expect(cached.stop).toBe('eos');
    const stopped = await generate(item.pixels, prompt, { maxNewTokens: 40, stop: ['\n'] });
    expect(stopped).toMatchObject({ text: 'the red block is ahead', stop: 'stop' });
    const withAtt = await generate(item.pixels, prompt, { maxNewTokens: 3, attentions: true });
    const a = withAtt.attentions!;
    expect(a).toHaveLength(3);
    expect(a[0]).toHaveLength(ck.model.config.text_config.num_hidden_layers);
    for (const head of a[1][0]) expect(head.reduce((x: number, y: number) => x + y, 0)).toBeCloseTo(1, 5); // a distribution over keys
    const sampled = await generate(item.pixels, prompt, { maxNewTokens: 10, temperature: 1.5, topP: 0.9, seed: 5 });
    expect((await generate(item.pixels, prompt, { maxNewTokens: 10, temperature: 1.5, topP: 0.9, seed: 5 })).ids).toEqual(sampled.ids);
    ck.model.dispose();
  }, 60_000);
});
