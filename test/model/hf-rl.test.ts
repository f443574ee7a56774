/**
 * train-rl on a Hugging Face checkpoint: GRPO on train-sft's LoRA adapter of a tiny-random Idefics3 (the real
 * SmolVLM tokenizer and chat template), the SFT adapter frozen as the reference; the run saved as a PEFT adapter
 * that folds onto the base; exact resume; the command through the binary.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { TextCodec, type TrainingExample } from '../../src/lib/actions/index.js';
import { applyPeftAdapter, readPeftAdapter } from '../../src/lib/model/arch/adapter.js';
import { loadHfCheckpoint } from '../../src/lib/model/arch/hf.js';
import { selectBackend } from '../../src/lib/model/backend.js';
import { openProcessor } from '../../src/lib/model/processor/index.js';
import { readSafetensors } from '../../src/lib/model/safetensors.js';
import { type RlOptions, trainRl } from '../../src/lib/train/rl.js';
import { trainSft } from '../../src/lib/train/sft.js';
import { tempDir } from '../helpers.js';
import { toyExamples } from './examples.js';
import { makeTinyIdefics3 } from './tiny-idefics3.js';

const dir = tempDir('vlakit-hf-rl-');
const base = path.join(dir, 'tiny-idefics3');
const sft = path.join(dir, 'sft');
const BIN = path.resolve('bin/run.js');
// a reward that differs between completions (a random model's actions never parse): their length in characters
const REWARD = `node -e "require('readline').createInterface({input:process.stdin}).on('line',l=>{const m=JSON.parse(l);console.log(JSON.stringify({reward:m.completion.length/10}))})"`;
let examples: TrainingExample[];

const options = (outDir: string, extra: Partial<RlOptions> = {}): RlOptions => ({
  init: sft,
  examples,
  outDir,
  codec: new TextCodec(3),
  steps: 2,
  group: 3,
  promptsPerStep: 2,
  maxNewTokens: 6,
  temperature: 1,
  lr: 5e-2,
  seed: 7,
  rewardExec: REWARD,
  ...extra,
});

/** The metrics of a run without its timings. */
const figures = (ms: Record<string, unknown>[]) => ms.map(({ time_generation_s: _g, time_update_s: _u, ...rest }) => rest);

beforeAll(async () => {
  await selectBackend();
  examples = await toyExamples();
  await makeTinyIdefics3(base);
  const proc = await openProcessor(base);
  await trainSft({ examples, outDir: sft, init: base, processor: proc, lora: { r: 4, alpha: 8, targets: ['q', 'k', 'v', 'o', 'gate', 'up', 'down'] }, codec: new TextCodec(3), steps: 2, batchSize: 2, lr: 2e-2, warmup: 0, seed: 5 });
}, 300_000);

describe('train-rl --init train-sft\'s adapter run on a Hugging Face Idefics3', () => {
  const run = path.join(dir, 'rl');
  const metrics: Record<string, unknown>[] = [];

  beforeAll(async () => {
    await trainRl(options(run, { onMetrics: (m) => metrics.push(m) }));
  }, 300_000);

  it('starts at KL 0 (the adapter is the frozen SFT reference), moves away from it, and gives the same figures again with the same seed', async () => {
    expect(metrics).toHaveLength(2);
    expect(metrics[0].kl).toBe(0);
    expect(metrics[1].kl as number).toBeGreaterThan(0);
    for (const m of metrics) {
      expect(Number.isFinite(m.loss)).toBe(true);
      expect((m.reward as { std: number }).std).toBeGreaterThan(0); // completions of different lengths: advantages not all zero
    }
    const again: Record<string, unknown>[] = [];
    await trainRl(options(path.join(dir, 'rl-again'), { onMetrics: (m) => again.push(m) }));
    expect(figures(again)).toEqual(figures(metrics));
  }, 300_000);

  it('saves the adapter as PEFT saves it, on the base model\'s modules, and it folds onto the base with applyPeftAdapter', () => {
    const cfg = JSON.parse(readFileSync(path.join(run, 'adapter_config.json'), 'utf8'));
    expect(cfg).toMatchObject({ peft_type: 'LORA', r: 4, lora_alpha: 8, base_model_name_or_path: base });
    const before = readSafetensors(path.join(sft, 'adapter_model.safetensors')).tensors;
    const after = readSafetensors(path.join(run, 'adapter_model.safetensors')).tensors;
    expect([...after.keys()].sort()).toEqual([...before.keys()].sort());
    for (const n of after.keys()) expect(n).toMatch(/^base_model\.model\.model\.(text_model|vision_model\.encoder)\.layers\.\d+\.(self_attn|mlp)\.\w+_proj\.lora_[AB]\.weight$/);
    // RL trained the SFT adapter itself
    let moved = 0;
    for (const [n, t] of after) moved = Math.max(moved, ...t.data.map((x, i) => Math.abs(x - before.get(n)!.data[i])));
    expect(moved).toBeGreaterThan(1e-4);
    expect(JSON.parse(readFileSync(path.join(run, 'vlakit.json'), 'utf8'))).toMatchObject({ format: 'vlakit-adapter/1', base_model: base, model_type: 'idefics3', action_codec: new TextCodec(3).describe() });
    const applied = applyPeftAdapter(loadHfCheckpoint(base), run);
    expect(applied.modules).toHaveLength(17);
    expect(readPeftAdapter(run).tensors.size).toBe(17);
  });

  it('resumes exactly: an interrupted run continued from its checkpoint ends with the same adapter and figures', async () => {
    const cut = path.join(dir, 'cut');
    const stop = new AbortController();
    const seen: Record<string, unknown>[] = [];
    await expect(trainRl(options(cut, { saveEvery: 1, signal: stop.signal, onMetrics: (m) => (seen.push(m), stop.abort()) }))).rejects.toThrow();
    expect(existsSync(path.join(cut, 'checkpoint-1', 'adapter_model.safetensors'))).toBe(true);
    await trainRl(options(cut, { saveEvery: 1, resume: true, onMetrics: (m) => seen.push(m) }));
    expect(figures(seen)).toEqual(figures(metrics));
    const a = readSafetensors(path.join(run, 'adapter_model.safetensors')).tensors;
    const b = readSafetensors(path.join(cut, 'adapter_model.safetensors')).tensors;
    for (const [n, t] of a) expect(Array.from(b.get(n)!.data)).toEqual(Array.from(t.data));
  }, 300_000);
});

describe('train-rl on an adapter trained with --freeze-vision', () => {
  it('trains the same text modules, samples with the cached image features, and starts at KL 0', async () => {
    const frozen = path.join(dir, 'sft-frozen');
    await trainSft({ examples, outDir: frozen, init: base, processor: await openProcessor(base), lora: { r: 4, alpha: 8, targets: ['q', 'k', 'v', 'o', 'gate', 'up', 'down'] }, freezeVision: true, codec: new TextCodec(3), steps: 2, batchSize: 2, lr: 2e-2, warmup: 0, seed: 5 });
    const run = path.join(dir, 'rl-frozen');
    const kls: number[] = [];
    await trainRl(options(run, { init: frozen, onMetrics: (m) => kls.push(m.kl as number) }));
    expect(kls[0]).toBe(0);
    const names = [...readSafetensors(path.join(run, 'adapter_model.safetensors')).tensors.keys()].sort();
    expect(names).toEqual([...readSafetensors(path.join(frozen, 'adapter_model.safetensors')).tensors.keys()].sort());
    expect(names).toHaveLength(2 * 14); // 2 text layers x 7 modules, no vision module
    expect(JSON.parse(readFileSync(path.join(run, 'vlakit.json'), 'utf8')).lora).toMatchObject({ freeze_vision: true, modules: 14 });
  }, 300_000);
});

describe('vlakit train-rl (the binary) on a Hugging Face adapter run', () => {
  it('trains and writes the PEFT adapter run', async () => {
    const input = path.join(dir, 'examples.jsonl');
    writeFileSync(input, examples.map((e) => JSON.stringify(e)).join('\n') + '\n');
    const out = path.join(dir, 'cli');
    const r = await execa('node', [BIN, 'train-rl', input, '--init', sft, '-o', out, '--steps', '1', '--group', '2', '--prompts-per-step', '1', '--max-new-tokens', '4', '--seed', '3', '--json'], { reject: false, env: { NO_COLOR: '1' } });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(JSON.parse(r.stderr.trim().split('\n').pop()!)).toMatchObject({ steps: 1 });
    expect(readPeftAdapter(out).tensors.size).toBe(17);
    expect(JSON.parse(readFileSync(path.join(out, 'vlakit.json'), 'utf8'))).toMatchObject({ base_model: base });
  }, 300_000);
});
