/**
 * The whole VLM -> VLA path on a Hugging Face checkpoint, through the CLI as a user runs it: a tiny-random Idefics3
 * (`vlakit model init`, SmolVLM's real tokenizer, template and processor files at a tiny tile size), training data
 * from the built-in pipeline (scripted demonstrations -> plans -> merged chunks -> VLM2VLA examples), `train-sft
 * --init --lora` (a PEFT adapter), `export --adapter` (merged, checked against the checkpoint), then `rollout`,
 * `eval-vqa` and `attn-viz` on the checkpoint with its adapter and on the export (exported with --attentions). The tiny random model writes
 * nonsense; the test checks that every stage runs, agrees between engines and keeps the processor's layout.
 */
import { copyFileSync, existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { FIXTURES, tempDir } from '../helpers.js';

const BIN = path.resolve('bin/run.js');
const SMOLVLM = path.resolve('../shared/models/smolvlm-256m-instruct');
const VQAV2 = path.join(FIXTURES, 'vqa/vqav2');
const dir = tempDir('vlakit-hf-pipeline-');
const base = path.join(dir, 'tiny-smolvlm');
const run = path.join(dir, 'sft');
const onnx = path.join(dir, 'sft-onnx');
const examples = path.join(dir, 'examples.jsonl');

/** SmolVLM's architecture at a tiny size: 32 px tiles of 8 px patches, pixel shuffle 2 (4 image tokens per tile). */
const CONFIG = {
  architectures: ['Idefics3ForConditionalGeneration'],
  model_type: 'idefics3',
  image_token_id: 49190,
  scale_factor: 2,
  tie_word_embeddings: false,
  text_config: { model_type: 'llama', vocab_size: 49280, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 2048, rms_norm_eps: 1e-5, rope_theta: 100000, bos_token_id: 1, eos_token_id: 2, initializer_range: 0.05 },
  vision_config: { hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2, num_channels: 3, image_size: 32, patch_size: 8, initializer_range: 0.05 },
};

async function vlakit(args: string[]) {
  const r = await execa('node', [BIN, ...args], { reject: false, env: { NO_COLOR: '1' } });
  return { code: r.exitCode, out: r.stdout, err: r.stderr };
}

async function ok(args: string[]) {
  const r = await vlakit(args);
  if (r.code !== 0) throw new Error(`vlakit ${args[0]} exited ${r.code}: ${r.err}`);
  return r;
}

const jsonl = (file: string) =>
  readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);

beforeAll(async () => {
  const config = path.join(dir, 'config.json');
  writeFileSync(config, JSON.stringify(CONFIG));
  await ok(['model', 'init', '--config', config, '--dtype', 'bf16', '--seed', '1', '-o', base]);
  for (const f of ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'added_tokens.json', 'chat_template.json', 'generation_config.json']) copyFileSync(path.join(SMOLVLM, f), path.join(base, f));
  const pre = JSON.parse(readFileSync(path.join(SMOLVLM, 'preprocessor_config.json'), 'utf8'));
  // 64 px images split 2 x 2 into 32 px tiles + the global tile: 5 tiles, 20 image tokens per camera image
  writeFileSync(path.join(base, 'preprocessor_config.json'), JSON.stringify({ ...pre, max_image_size: { longest_edge: 32 }, size: { longest_edge: 64 } }));
  writeFileSync(path.join(base, 'processor_config.json'), JSON.stringify({ image_seq_len: 4, processor_class: 'Idefics3Processor' }));
  // the demo's data pipeline, small
  await ok(['rollout', '--policy', 'scripted', '--tasks', 'pick', '--episodes', '2', '--seed', '0', '--width', '64', '--height', '64', '--distractors', '0', '-o', path.join(dir, 'demos.jsonl')]);
  await ok(['annotate', path.join(dir, 'demos.jsonl'), '--kind', 'plan', '-o', path.join(dir, 'plans.jsonl')]);
  await ok(['chunk', path.join(dir, 'plans.jsonl'), '--mode', 'merge', '-o', path.join(dir, 'chunks.jsonl')]);
  await ok(['relabel', path.join(dir, 'chunks.jsonl'), '--method', 'vlm2vla', '--actions', 'text', '-o', examples]);
}, 300_000);

describe('a LoRA VLA from a Hugging Face VLM: train-sft -> export -> rollout -> eval-vqa -> attn-viz', () => {
  it('train-sft --init writes a PEFT adapter whose loss goes down', async () => {
    await ok(['train-sft', examples, '--init', base, '--lora', '--lora-r', '4', '--lora-alpha', '8', '--freeze-vision', '--steps', '6', '--batch-size', '2', '--lr', '3e-3', '--seed', '0', '-o', run, '--quiet']);
    const cfg = JSON.parse(readFileSync(path.join(run, 'adapter_config.json'), 'utf8'));
    expect(cfg).toMatchObject({ peft_type: 'LORA', r: 4, lora_alpha: 8, base_model_name_or_path: base });
    expect(existsSync(path.join(run, 'adapter_model.safetensors'))).toBe(true);
    expect(existsSync(path.join(run, 'config.json'))).toBe(false);
    const losses = jsonl(path.join(run, 'metrics.jsonl')).flatMap((m) => (typeof m.loss === 'number' ? [m.loss] : []));
    expect(losses.length).toBeGreaterThanOrEqual(6);
    expect(losses.at(-1)!).toBeLessThan(losses[0]);
  }, 300_000);

  it('export --adapter merges it and passes the parity check against the checkpoint with its adapter', async () => {
    await ok(['export', base, '--adapter', run, '--attentions', '-o', onnx]);
    expect(readdirSync(onnx)).toEqual(expect.arrayContaining(['prefill.onnx', 'decode.onnx', 'config.json', 'tokenizer.json', 'preprocessor_config.json']));
  }, 300_000);

  it('rollout: the checkpoint with its adapter and the export act the same in the world', async () => {
    const args = ['--mode', 'direct', '--tasks', 'pick', '--episodes', '1', '--max-steps', '2', '--seed', '5', '--width', '64', '--height', '64', '--max-new-tokens', '24', '--resample', '0', '--temperature-actions', '0'];
    await ok(['rollout', '--policy', base, '--adapter', run, ...args, '-o', path.join(dir, 'roll-ckpt.jsonl')]);
    await ok(['rollout', '--policy', onnx, ...args, '-o', path.join(dir, 'roll-onnx.jsonl')]);
    const a = jsonl(path.join(dir, 'roll-ckpt.jsonl'));
    const b = jsonl(path.join(dir, 'roll-onnx.jsonl'));
    expect(a.length).toBeGreaterThan(0);
    // every step but the final observation carries the policy's text (nonsense from a tiny random model: a no-op)
    const texts = (rs: Record<string, unknown>[]) => rs.filter((r) => r.policy).map((r) => (r.policy as { text?: string }).text);
    expect(texts(a).every((t) => typeof t === 'string' && t.length > 0)).toBe(true);
    expect(texts(b)).toEqual(texts(a));
  }, 300_000);

  it('eval-vqa: base vs VLA (the adapter) on VQAv2 with the processor\'s prompt; the export answers as the checkpoint does', async () => {
    const log = path.join(dir, 'vqa.jsonl');
    const r = await ok(['eval-vqa', '--models', `base=${base},vla=${base},export=${onnx}`, '--adapter', `vla=${run}`, '--data', VQAV2, '--limit', '3', '--max-new-tokens', '6', '--log-samples', log, '--json']);
    expect(r.out + r.err).toMatch(/vla/);
    const rows = jsonl(log) as { model: string; id?: string; question_id?: string; prediction: string }[];
    const by = (m: string) => rows.filter((x) => x.model === m).map((x) => x.prediction);
    expect(by('vla')).toHaveLength(3);
    expect(by('export')).toEqual(by('vla'));
  }, 300_000);

  it('attn-viz: action-token attention over the image of each example, from the checkpoint with its adapter and from the export', async () => {
    const out = path.join(dir, 'attn');
    await ok(['attn-viz', '--model', base, '--adapter', run, '--input', examples, '--stage', 'actions', '--limit', '2', '--tokens', 'action', '--json', '-o', out]);
    const files = readdirSync(out);
    expect(files.filter((f) => f.endsWith('.png')).length).toBeGreaterThanOrEqual(2);
    const maps = jsonl(path.join(out, 'maps.jsonl'));
    expect(maps.length).toBeGreaterThanOrEqual(2);
    // the export (with --attentions) draws the same maps
    await ok(['attn-viz', '--model', onnx, '--input', examples, '--stage', 'actions', '--limit', '2', '--tokens', 'action', '--json', '-o', `${out}-onnx`]);
    const fromExport = jsonl(path.join(`${out}-onnx`, 'maps.jsonl'));
    const worst = (a: unknown, b: unknown): number => {
      if (typeof a === 'number' && typeof b === 'number') return Math.abs(a - b);
      if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length ? Math.max(0, ...a.map((x, i) => worst(x, b[i]))) : Infinity;
      if (a && b && typeof a === 'object' && typeof b === 'object') return Math.max(0, ...Object.keys(a).filter((k) => !['name', 'file'].includes(k)).map((k) => worst((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])));
      return a === b ? 0 : Infinity;
    };
    expect(worst(fromExport, maps)).toBeLessThan(1e-4);
  }, 300_000);
});
