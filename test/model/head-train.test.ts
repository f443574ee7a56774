import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TrainingExample } from '../../src/lib/actions/index.js';
import { selectBackend } from '../../src/lib/model/backend.js';
import { loadActionHead, readHeadConfig } from '../../src/lib/model/action-head.js';
import { readSafetensors } from '../../src/lib/model/safetensors.js';
import { toyExamples } from './examples.js';
import { trainTiny } from './runs.js';

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
