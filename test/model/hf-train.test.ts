/**
 * train-sft on Hugging Face checkpoints: LoRA adapters on a tiny-random Idefics3 (the real SmolVLM tokenizer) and on
 * stories260K (Llama), saved as PEFT saves them and folded back by applyPeftAdapter to the logits of the unmerged
 * adapters; the frozen vision tower's feature cache; exact resume.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { maxRelDiff, tempDir } from '../helpers.js';
import { toyExamples } from './examples.js';
import { makeTinyIdefics3 } from './tiny-idefics3.js';
import { selectBackend } from '../../src/lib/model/backend.js';
import { type HfCheckpoint, loadHfCheckpoint } from '../../src/lib/model/arch/hf.js';
import { applyPeftAdapter, readPeftAdapter } from '../../src/lib/model/arch/adapter.js';
import { TfjsOps, type TfjsParams } from '../../src/lib/model/arch/tfjs-ops.js';
import { readSafetensors } from '../../src/lib/model/safetensors.js';
import { type Processor, openProcessor } from '../../src/lib/model/processor/index.js';
import { charProcessor } from './char-processor.js';
import { HfLoraModel } from '../../src/lib/train/hf-model.js';
import { trainSft } from '../../src/lib/train/sft.js';
import type { TrainingExample } from '../../src/lib/actions/index.js';

const STORIES = path.resolve('../shared/models/stories260k');
const dir = tempDir('vlakit-hf-train-');



const losses = (run: string) =>
  readFileSync(path.join(run, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => (JSON.parse(l) as { loss: number }).loss);

/** Logits [T, V] of one prompt through the architecture's forward on `params` (with LoRA when given). */
function logitsOf(ck: HfCheckpoint, params: TfjsParams, ids: number[], pixels?: Float32Array, model?: HfLoraModel): Float32Array {
  return tf.tidy(() => {
    const px = pixels ? tf.tensor4d(pixels, [pixels.length / 3072, 3, 32, 32]) : undefined;
    const idt = tf.tensor2d(ids, [1, ids.length], 'int32');
    const out = model ? model.forward(idt, px) : ck.arch.forward(new TfjsOps(params), ck.config, idt, px);
    return out.dataSync() as Float32Array;
  });
}

let examples: TrainingExample[];
let proc: Processor;
const base = path.join(dir, 'tiny-idefics3');

beforeAll(async () => {
  await selectBackend();
  examples = await toyExamples();
  await makeTinyIdefics3(base, 3);
  proc = await openProcessor(base);
}, 120_000);

const LORA = { r: 4, alpha: 8, targets: ['q', 'k', 'v', 'o', 'gate', 'up', 'down'] };

describe('train-sft --init a Hugging Face Idefics3 with LoRA', () => {
  const run = path.join(dir, 'run');
  let first: number[];

  beforeAll(async () => {
    await trainSft({ examples, outDir: run, init: base, processor: proc, lora: LORA, steps: 8, batchSize: 2, lr: 2e-2, warmup: 0, seed: 5, saveEvery: 4 });
    first = losses(run);
  }, 300_000);

  it('lowers the loss, and the first step of the seeded run is pinned', () => {
    expect(first).toHaveLength(8);
    for (let i = 1; i < 8; i++) expect(first[i]).toBeLessThan(first[i - 1]);
    expect(first[7]).toBeLessThan(first[0] - 1);
    // lora_B starts at zero, so step 1 is the random base model: action + reasoning CE, each about ln(49280) = 10.8
    expect(first[0]).toBeCloseTo(21.7171, 2);
  });

  it('saves only LoRA matrices, with PEFT names of the base model\'s modules, and an adapter_config PEFT reads', () => {
    const cfg = JSON.parse(readFileSync(path.join(run, 'adapter_config.json'), 'utf8'));
    expect(cfg).toMatchObject({ peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 4, lora_alpha: 8, bias: 'none', base_model_name_or_path: base, use_rslora: false, fan_in_fan_out: false, modules_to_save: null });
    expect(cfg.target_modules).toEqual(['down_proj', 'gate_proj', 'k_proj', 'o_proj', 'q_proj', 'up_proj', 'v_proj']);
    const { tensors, metadata } = readSafetensors(path.join(run, 'adapter_model.safetensors'));
    expect(metadata).toMatchObject({ format: 'pt' });
    const names = [...tensors.keys()];
    for (const n of names) expect(n).toMatch(/^base_model\.model\.model\.(text_model|vision_model\.encoder)\.layers\.\d+\.(self_attn|mlp)\.\w+_proj\.lora_[AB]\.weight$/);
    // text: 2 layers x 7 modules; vision (not frozen): q, k, v of its one layer; A and B each
    expect(names).toHaveLength(2 * (2 * 7 + 3));
    expect(tensors.get('base_model.model.model.text_model.layers.1.mlp.down_proj.lora_A.weight')!.shape).toEqual([4, 64]);
    expect(tensors.get('base_model.model.model.text_model.layers.1.mlp.down_proj.lora_B.weight')!.shape).toEqual([32, 4]);
    const vlakit = JSON.parse(readFileSync(path.join(run, 'vlakit.json'), 'utf8'));
    expect(vlakit).toMatchObject({ format: 'vlakit-adapter/1', base_model: base, model_type: 'idefics3', lora: { r: 4, alpha: 8, modules: 17, freeze_vision: false } });
    expect(existsSync(path.join(run, 'config.json'))).toBe(false);
  });

  it('folds back with applyPeftAdapter to the logits of the unmerged adapters', async () => {
    const [item] = examples;
    const prompt = proc.renderChat([{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'Subtask: grasp' }] }], { addGenerationPrompt: true });
    const inp = await proc.encode(prompt, [new Uint8Array(Buffer.from(item.images[0].b64, 'base64'))]);
    const ids = [...inp.ids, ...proc.encodeText('the red')];
    // the adapters as trained, in the forward (x A^T B^T alpha/r beside W)
    const model = new HfLoraModel(loadHfCheckpoint(base), LORA);
    model.loadAdapter(readPeftAdapter(run).tensors, run);
    const unmerged = logitsOf(model.ckpt, model.params, ids, inp.pixels, model);
    // the base model alone, and the adapters folded into its weights
    const ck = loadHfCheckpoint(base);
    const params = new Map([...ck.tensors].map(([n, t]) => [n, tf.tensor(t.data, t.shape)]));
    const before = logitsOf(ck, params, ids, inp.pixels);
    tf.dispose([...params.values()]);
    const applied = applyPeftAdapter(ck, run);
    expect(applied.modules).toHaveLength(17);
    const merged = new Map([...ck.tensors].map(([n, t]) => [n, tf.tensor(t.data, t.shape)]));
    const folded = logitsOf(ck, merged, ids, inp.pixels);
    tf.dispose([...merged.values()]);
    model.dispose();
    expect(maxRelDiff(unmerged, before)).toBeGreaterThan(1e-3); // training changed the model
    expect(maxRelDiff(folded, unmerged)).toBeLessThan(1e-4);
  });

  it('resumes exactly: an interrupted run continued from its checkpoint ends with the same adapter', async () => {
    const cut = path.join(dir, 'cut');
    const stop = new AbortController();
    await expect(trainSft({ examples, outDir: cut, init: base, processor: proc, lora: LORA, steps: 8, batchSize: 2, lr: 2e-2, warmup: 0, seed: 5, saveEvery: 4, signal: stop.signal, onMetrics: (m) => m.step === 5 && stop.abort() })).rejects.toThrow();
    expect(existsSync(path.join(cut, 'checkpoint-4', 'adapter_model.safetensors'))).toBe(true);
    await trainSft({ examples, outDir: cut, init: base, processor: proc, lora: LORA, steps: 8, batchSize: 2, lr: 2e-2, warmup: 0, seed: 5, saveEvery: 4, resume: true });
    const a = readSafetensors(path.join(run, 'adapter_model.safetensors')).tensors;
    const b = readSafetensors(path.join(cut, 'adapter_model.safetensors')).tensors;
    for (const [n, t] of a) expect(maxRelDiff(b.get(n)!.data, t.data)).toBeLessThan(1e-6);
    expect(losses(cut)).toEqual(first);
  }, 300_000);
});

describe('train-sft --workers 2 on a Hugging Face Idefics3 with LoRA', () => {
  it('gives the losses and the adapter of one thread (within 1e-5), with the vision tower adapted or frozen (each replica caches its own features)', async () => {
    for (const freezeVision of [false, true]) {
      const o = { examples, init: base, processor: proc, lora: LORA, freezeVision, steps: 2, batchSize: 3, lr: 2e-2, warmup: 0, seed: 6 };
      const runs = { 1: path.join(dir, `dp1-${freezeVision}`), 2: path.join(dir, `dp2-${freezeVision}`) };
      for (const w of [1, 2] as const) await trainSft({ ...o, outDir: runs[w], workers: w });
      const [l1, l2] = [losses(runs[1]), losses(runs[2])];
      expect(l2).toHaveLength(2);
      l2.forEach((l, i) => expect(Math.abs(l - l1[i]), `frozen vision ${freezeVision}, step ${i + 1}`).toBeLessThanOrEqual(1e-5 * Math.max(1, l1[i])));
      const a = readSafetensors(path.join(runs[1], 'adapter_model.safetensors')).tensors;
      const b = readSafetensors(path.join(runs[2], 'adapter_model.safetensors')).tensors;
      for (const [n, t] of a) expect(maxRelDiff(b.get(n)!.data, t.data), n).toBeLessThan(1e-5);
      // the adapters trained: not the zero B they start from
      expect(Math.max(...[...readPeftAdapter(runs[2]).tensors.values()].map((t) => Math.max(...t.b.data.map(Math.abs))))).toBeGreaterThan(1e-4);
    }
  }, 300_000);
});

describe('--freeze-vision', () => {
  it('adapts the text model only and computes each image\'s features once, as the vision tower gives them', async () => {
    const run = path.join(dir, 'frozen');
    await trainSft({ examples, outDir: run, init: base, processor: proc, lora: LORA, freezeVision: true, steps: 2, batchSize: 2, seed: 1 });
    const cfg = JSON.parse(readFileSync(path.join(run, 'adapter_config.json'), 'utf8'));
    expect(cfg.target_modules).toHaveLength(14);
    for (const m of cfg.target_modules) expect(m).toMatch(/^model\.text_model\.layers\.\d+\./);
    expect([...readSafetensors(path.join(run, 'adapter_model.safetensors')).tensors.keys()].filter((n) => n.includes('vision'))).toEqual([]);

    const model = new HfLoraModel(loadHfCheckpoint(base), { ...LORA, freezeVision: true });
    const inp = await proc.encode(proc.renderChat([{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'a' }] }], { addGenerationPrompt: true }), [new Uint8Array(Buffer.from(examples[0].images[0].b64, 'base64'))]);
    const f1 = model.features(inp.pixels, 1);
    const f2 = model.features(Float32Array.from(inp.pixels), 1);
    expect(f2).toBe(f1); // the same content: the cached tensor
    expect(model.cachedImages).toBe(1);
    expect(f1.shape).toEqual([1, 4, 32]);
    const ids = tf.tensor2d(inp.ids, [1, inp.ids.length], 'int32');
    const px = tf.tensor4d(inp.pixels, [1, 3, 32, 32]);
    const viaPixels = model.forward(ids, px);
    const viaFeatures = model.forward(ids, { features: f1 });
    expect(maxRelDiff(viaFeatures.dataSync() as Float32Array, viaPixels.dataSync() as Float32Array)).toBeLessThan(1e-6);
    tf.dispose([ids, px, viaPixels, viaFeatures]);
    model.dispose();
  }, 120_000);
});

describe('train-sft --init a Hugging Face Llama (stories260K)', () => {
  it('trains LoRA on the text model and saves it under Llama\'s module names', async () => {
    const run = path.join(dir, 'stories');
    const text = examples.map((e) => ({ ...e, images: [], messages: [{ ...e.messages[0], content: e.messages[0].content.filter((c) => c.type === 'text') }, e.messages[1]] }));
    await trainSft({ examples: text, outDir: run, init: STORIES, processor: charProcessor(500), lora: { r: 2, alpha: 4, targets: ['q_proj', 'v_proj'] }, steps: 6, batchSize: 2, lr: 3e-2, warmup: 0, seed: 2 });
    const l = losses(run);
    expect(l[5]).toBeLessThan(l[0]);
    const names = [...readSafetensors(path.join(run, 'adapter_model.safetensors')).tensors.keys()].sort();
    expect(names).toHaveLength(5 * 2 * 2); // 5 layers x q, v x A, B
    expect(names[0]).toBe('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight');
    const ck = loadHfCheckpoint(STORIES);
    expect(applyPeftAdapter(ck, run).modules).toHaveLength(10);
  }, 120_000);

  it('refuses full fine-tuning and unknown modules with usage errors', async () => {
    const text = examples.map((e) => ({ ...e, images: [] }));
    await expect(trainSft({ examples: text, outDir: path.join(dir, 'full'), init: STORIES, processor: charProcessor(500), steps: 1 })).rejects.toMatchObject({ code: 'E_USAGE', message: expect.stringMatching(/pass --lora/) });
    await expect(trainSft({ examples: text, outDir: path.join(dir, 'bad'), init: STORIES, processor: charProcessor(500), lora: { r: 2, alpha: 4, targets: ['fc1'] }, steps: 1 })).rejects.toMatchObject({ code: 'E_USAGE', message: expect.stringMatching(/no module named fc1.*q_proj/) });
  });
});

describe('the CLI', () => {
  const vlakit = async (args: string[], input?: string) => {
    const r = await execa('node', [path.resolve('bin/run.js'), ...args], { reject: false, input, env: { NO_COLOR: '1' } });
    return { code: r.exitCode, out: r.stdout, err: r.stderr };
  };

  it('train-sft --init a Hugging Face checkpoint writes an adapter that generate --adapter runs; without --lora it is a usage error', async () => {
    const data = path.join(dir, 'examples.jsonl');
    writeFileSync(data, examples.map((e) => JSON.stringify(e)).join('\n'));
    const out = path.join(dir, 'cli-run');
    const t = await vlakit(['train-sft', data, '--init', base, '--lora', '--lora-r', '2', '--freeze-vision', '--steps', '1', '--batch-size', '1', '-o', out, '--quiet']);
    expect(t.err).toBe('');
    expect(t.code).toBe(0);
    const g = await vlakit(['generate', '--model', base, '--adapter', out, '--input-ids', '1,2,3', '--max-new-tokens', '2', '--json']);
    expect(g.code).toBe(0);
    const full = await vlakit(['train-sft', data, '--init', base, '--steps', '1', '-o', path.join(dir, 'cli-full')]);
    expect(full.code).toBe(2);
    expect(full.err).toMatch(/Hugging Face checkpoint.*pass --lora/);
  }, 120_000);
});
