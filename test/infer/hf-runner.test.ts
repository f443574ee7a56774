/**
 * Hugging Face VLMs as policies: a tiny-random Idefics3 (SmolVLM's real tokenizer, chat template and processor
 * files) behind the VlaRunner interface, from its checkpoint (tfjs, with and without a PEFT adapter) and from its
 * export (onnxruntime); rollout, eval-vqa and attn-viz through the real CLI.
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import sharp from 'sharp';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { PROMPTS } from '../../src/lib/actions/index.js';
import { exportHfChecked } from '../../src/lib/export/hf.js';
import { type VlaRunner, generateFrom, openModel, readPolicyMeta, tileLayout } from '../../src/lib/infer/index.js';
import { initCheckpoint } from '../../src/lib/model/arch/manage.js';
import { selectBackend } from '../../src/lib/model/backend.js';
import { type NamedArray, writeSafetensors } from '../../src/lib/model/safetensors.js';
import { Rng } from '../../src/lib/util/rng.js';
import { writeOutputDir } from '../../src/lib/io/outputs.js';
import { writeModelFiles } from '../../src/lib/model/checkpoint.js';
import { preset } from '../../src/lib/model/config.js';
import { VlaModel } from '../../src/lib/model/model.js';
import { buildTokenizer } from '../../src/lib/model/tokenizer.js';
import { FIXTURES, tempDir } from '../helpers.js';
import { ex } from '../model/examples.js';

const BIN = path.resolve('bin/run.js');
const SMOLVLM = path.resolve('../shared/models/smolvlm-256m-instruct');
const VQAV2 = path.join(FIXTURES, 'vqa/vqav2');
const IMAGE_TOKEN = 49190;
const dir = tempDir('vlakit-hf-runner-');
const ckpt = path.join(dir, 'tiny');
const adapter = path.join(dir, 'adapter');
const exported = path.join(dir, 'tiny-onnx');
const CODEC = { codec: 'text', precision: 3, units: 'm' };

/** SmolVLM's layout at a tiny size: 32 px tiles of 8 px patches, pixel shuffle 2 (4 tokens per tile), 64 px images split 2 x 2. */
const CONFIG = {
  architectures: ['Idefics3ForConditionalGeneration'],
  model_type: 'idefics3',
  image_token_id: IMAGE_TOKEN,
  scale_factor: 2,
  tie_word_embeddings: false,
  vocab_size: 49280,
  text_config: { model_type: 'llama', vocab_size: 49280, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 1024, rms_norm_eps: 1e-5, rope_theta: 100000, bos_token_id: 1, eos_token_id: 2, initializer_range: 0.5 },
  vision_config: { hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2, num_channels: 3, image_size: 32, patch_size: 8, layer_norm_eps: 1e-6, hidden_act: 'gelu_pytorch_tanh', initializer_range: 0.5 },
};

async function pngOf(w: number, h: number, seed: number): Promise<Buffer> {
  const rng = new Rng(seed);
  const raw = Buffer.from(Array.from({ length: w * h * 3 }, () => Math.floor(rng.next() * 256)));
  return sharp(raw, { raw: { width: w, height: h, channels: 3 } }).png().toBuffer();
}

/** A PEFT adapter (q_proj, v_proj of both text layers; r 2, alpha 4) with random A and B, and the policy's codec beside it. */
async function makeAdapter(): Promise<void> {
  mkdirSync(adapter);
  const rng = new Rng(5);
  const lora = new Map<string, NamedArray>();
  const r = 2;
  for (let l = 0; l < 2; l++) {
    for (const [m, out] of [['q_proj', 16], ['v_proj', 8]] as const) {
      const name = `base_model.model.model.text_model.layers.${l}.self_attn.${m}`;
      lora.set(`${name}.lora_A.weight`, { shape: [r, 16], data: Float32Array.from({ length: r * 16 }, () => rng.normal()) });
      lora.set(`${name}.lora_B.weight`, { shape: [out, r], data: Float32Array.from({ length: out * r }, () => rng.normal()) });
    }
  }
  writeFileSync(path.join(adapter, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', r, lora_alpha: 4, target_modules: ['q_proj', 'v_proj'], base_model_name_or_path: 'tiny', bias: 'none', task_type: 'CAUSAL_LM' }));
  await writeSafetensors(path.join(adapter, 'adapter_model.safetensors'), lora, { format: 'pt' });
  writeFileSync(path.join(adapter, 'vlakit.json'), JSON.stringify({ action_codec: CODEC }));
}

async function vlakit(args: string[]) {
  const r = await execa('node', [BIN, ...args], { reject: false, env: { NO_COLOR: '1' } });
  return { code: r.exitCode, out: r.stdout, err: r.stderr };
}

let image: Buffer;
beforeAll(async () => {
  await selectBackend('cpu');
  await initCheckpoint(CONFIG, ckpt, { seed: 3 });
  for (const f of ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'added_tokens.json', 'chat_template.json', 'generation_config.json']) copyFileSync(path.join(SMOLVLM, f), path.join(ckpt, f));
  const pre = JSON.parse(readFileSync(path.join(SMOLVLM, 'preprocessor_config.json'), 'utf8'));
  writeFileSync(path.join(ckpt, 'preprocessor_config.json'), JSON.stringify({ ...pre, max_image_size: { longest_edge: 32 }, size: { longest_edge: 64 } }));
  writeFileSync(path.join(ckpt, 'processor_config.json'), JSON.stringify({ image_seq_len: 4, processor_class: 'Idefics3Processor' }));
  await makeAdapter();
  await exportHfChecked(ckpt, exported, { adapter });
  image = await pngOf(64, 64, 1);
}, 180_000);

/** One training example (reasoning + action) over the test image, as attn-viz reads them. */
function writeExamples(): string {
  const examples = path.join(dir, 'examples.jsonl');
  const png = { mime: 'image/png', b64: image.toString('base64') };
  writeFileSync(examples, `${JSON.stringify(ex('a', png, PROMPTS.task('pick up the red block'), 'the block is ahead', '[[0.010, 0.000, 0.000, 1]]'))}\n`);
  return examples;
}

/** Greedy ids of a prompt with one image (cache on unless told). */
async function greedy(r: VlaRunner, o: { useCache?: boolean } = {}) {
  const input = await r.prepare('Task: pick up the red block', [image]);
  return { input, g: await generateFrom(r, input, { maxNewTokens: 6, ...o }) };
}

describe('HfRunner over a tiny Idefics3', () => {
  it('prepare: the chat template with the image tokens expanded in place (2 x 2 tiles + the global one), per-image layout', async () => {
    const r = await openModel(ckpt);
    try {
      expect(r.info).toMatchObject({ engine: 'tfjs', model: 'idefics3' });
      const input = await r.prepare('Task: pick up the red block', [image]);
      const positions = input.ids.flatMap((id, i) => (id === IMAGE_TOKEN ? [i] : []));
      expect(positions).toHaveLength(5 * 4);
      expect(input.imagePositions).toEqual(positions);
      expect(input.textOffset).toBe(0);
      expect(input.pixels.length).toBe(5 * 3 * 32 * 32);
      expect(input.images).toHaveLength(1);
      expect(input.images[0].grid).toBe(2);
      expect(input.images[0].positions).toEqual(positions.slice(16)); // the global tile comes last
      expect(input.images[0].tiles!.map((t) => [t.row, t.col])).toEqual([[0, 0], [0, 1], [1, 0], [1, 1]]);
      const text = r.decode(input.ids.filter((id) => id !== IMAGE_TOKEN));
      expect(text).toMatch(/^User:/);
      expect(text).toContain('Task: pick up the red block');
      expect(text.trimEnd()).toMatch(/Assistant:$/);
      // two cameras: two images in the one user turn
      const two = await r.prepare('Task: pick up the red block', [image, await pngOf(32, 32, 2)]);
      expect(two.images).toHaveLength(2);
      expect(two.imagePositions).toHaveLength(2 * 5 * 4); // each resized to 64 px and split
      expect(two.images[0].positions).toEqual(two.imagePositions.slice(16, 20));
      expect(two.images[1].positions).toEqual(two.imagePositions.slice(36));
    } finally {
      await r.dispose();
    }
  });

  it('greedy ids with and without the KV cache agree; attention rows cover every key; no tensor leaks', async () => {
    const r = await openModel(ckpt);
    try {
      const { input, g } = await greedy(r);
      // weights upload on first use (TfjsWeights): count after the first generation
      const before = tf.memory().numTensors;
      const plain = (await greedy(r, { useCache: false })).g;
      expect(g.ids).toHaveLength(6);
      expect(plain.ids).toEqual(g.ids);
      const att = await generateFrom(r, input, { maxNewTokens: 3, attentions: true });
      expect(att.ids).toEqual(g.ids.slice(0, 3));
      expect(att.attentions!.map((step) => step[0][0].length)).toEqual([0, 1, 2].map((i) => input.ids.length + i));
      expect(att.attentions![0]).toHaveLength(2); // layers
      expect(att.attentions![0][0]).toHaveLength(4); // heads
      const full = await r.attentions(input.pixels, input.ids);
      expect(full).toMatchObject({ heads: 4, positions: input.ids.length });
      // the last query's row of the full map is the prefill's row
      const N = full.positions;
      const last = Array.from(full.layers[1].subarray((2 * N + N - 1) * N, (2 * N + N) * N));
      last.forEach((v, i) => expect(v).toBeCloseTo(att.attentions![0][1][2][i], 5));
      expect(tf.memory().numTensors).toBe(before);
    } finally {
      await r.dispose();
    }
  });

  it('the adapter changes the model; its export (merged) gives the same greedy ids and carries the action codec', async () => {
    const base = await openModel(ckpt);
    const tuned = await openModel(ckpt, { adapter });
    const onnx = await openModel(exported);
    try {
      expect(tuned.actionCodec).toEqual(CODEC);
      expect(onnx.actionCodec).toEqual(CODEC);
      expect(onnx.info).toMatchObject({ engine: 'onnxruntime', model: 'idefics3' });
      const { input, g } = await greedy(tuned);
      const e = await greedy(onnx);
      expect(e.input.ids).toEqual(input.ids);
      expect(e.g.ids).toEqual(g.ids);
      const [a, b] = [await base.logits(input.pixels, input.ids), await tuned.logits(input.pixels, input.ids)];
      let diff = 0;
      for (let i = 0; i < a.length; i++) diff = Math.max(diff, Math.abs(a[i] - b[i]));
      expect(diff).toBeGreaterThan(1e-3);
      const ol = await onnx.logits(input.pixels, input.ids);
      let parity = 0;
      for (let i = 0; i < b.length; i++) parity = Math.max(parity, Math.abs(b[i] - ol[i]));
      expect(parity).toBeLessThan(1e-3);
      await expect(onnx.attentions(input.pixels, input.ids)).rejects.toThrow(/run attn-viz on the checkpoint/);
    } finally {
      await base.dispose();
      await tuned.dispose();
      await onnx.dispose();
    }
  });

  it('an adapter is refused for an export; policy metadata is read from vlakit.json, adapter_config.json or config.json', async () => {
    await expect(openModel(exported, { adapter })).rejects.toThrow(/export it merged|give --adapter to `vlakit export`/);
    const meta = path.join(dir, 'meta');
    mkdirSync(meta);
    writeFileSync(path.join(meta, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', vlakit: { action_codec: { codec: 'words', precision: 1 } } }));
    expect(readPolicyMeta(meta)).toEqual({ actionCodec: { codec: 'words', precision: 1 } });
    writeFileSync(path.join(meta, 'vlakit.json'), JSON.stringify({ action_codec: CODEC, action_stats: { dims: 'x' } }));
    expect(() => readPolicyMeta(meta)).toThrow(/invalid action statistics/);
    expect(readPolicyMeta(exported)).toEqual({ actionCodec: CODEC });
  });

  it('tileLayout: tiles then the global tile per image; counts that disagree are errors', () => {
    const pos = Array.from({ length: 16 }, (_, i) => 10 + i);
    const l = tileLayout(pos, [{ rows: 1, cols: 2 }, { rows: 0, cols: 0 }], 4);
    expect(l.map((x) => x.positions[0])).toEqual([18, 22]);
    expect(l[0].tiles!.map((t) => t.positions[0])).toEqual([10, 14]);
    expect(l[1].tiles).toBeUndefined();
    expect(() => tileLayout(pos.slice(0, 12), [{ rows: 1, cols: 2 }, { rows: 0, cols: 0 }], 4)).toThrow(/image tokens/);
    expect(() => tileLayout(pos, [{ rows: 0, cols: 0 }], 4)).toThrow(/image tokens/);
  });
});

describe('the commands on a Hugging Face VLM', () => {
  it('rollout: the checkpoint with its adapter and the export run closed loop; --adapter is refused for a built-in policy and an export', async () => {
    const args = ['rollout', '--mode', 'direct', '--prompt', 'task', '--episodes', '1', '--max-steps', '2', '--max-new-tokens', '8', '--resample', '0', '--temperature-actions', '0', '--tasks', 'pick', '--width', '64', '--height', '64', '--seed', '4', '--quiet'];
    const runs: Record<string, unknown>[][] = [];
    for (const [name, extra] of [['ckpt', ['--policy', ckpt, '--adapter', adapter]], ['onnx', ['--policy', exported]]] as const) {
      const out = path.join(dir, `rollout-${name}.jsonl`);
      const r = await vlakit([...args, ...extra, '-o', out]);
      expect(r.code, r.err).toBe(0);
      const records = readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(records.length).toBeGreaterThan(1);
      runs.push(records);
    }
    // the model's text of the first cycle (greedy): the checkpoint with its adapter and the merged export write the same
    const text = (rs: Record<string, unknown>[]) => (rs[0].policy as { text?: string }).text;
    expect(runs[0][0].policy).toMatchObject({ cycle: 0, chunk_step: 0 });
    expect(typeof text(runs[0])).toBe('string');
    expect(text(runs[0])!.length).toBeGreaterThan(0);
    expect(text(runs[1])).toBe(text(runs[0]));
    const bad = await vlakit([...args, '--policy', exported, '--adapter', adapter]);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/adapter/);
    const missing = await vlakit([...args, '--policy', ckpt, '--adapter', path.join(dir, 'nope')]);
    expect(missing.code).not.toBe(0);
  }, 240_000);

  it('eval-vqa: the question as the user turn; the export answers as the checkpoint with its adapter does', async () => {
    const samples = path.join(dir, 'samples.jsonl');
    const r = await vlakit(['eval-vqa', '--models', `tuned=${ckpt},onnx=${exported}`, '--adapter', `tuned=${adapter}`, '--data', VQAV2, '--max-new-tokens', '4', '--log-samples', samples, '--json']);
    expect(r.code, r.err).toBe(0);
    const rows = readFileSync(samples, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { model: string; id: string; prediction: string });
    expect(rows).toHaveLength(6);
    const by = (m: string) => rows.filter((x) => x.model === m).map((x) => [x.id, x.prediction]);
    expect(by('onnx')).toEqual(by('tuned'));
    const report = JSON.parse(r.err.trim().split('\n').at(-1)!) as { models: { model: string }[] };
    expect(report.models.map((m) => m.model)).toEqual(['tuned', 'onnx']);
    const wrong = await vlakit(['eval-vqa', '--models', `a=${ckpt},b=${exported}`, '--adapter', adapter, '--data', VQAV2]);
    expect(wrong.code).toBe(2);
    expect(wrong.err).toMatch(/NAME=DIR/);
  }, 240_000);

  it('attn-viz: maps over the global tile from the checkpoint (with and without the adapter); the export is a clear error', async () => {
    const examples = writeExamples();
    for (const extra of [[], ['--adapter', adapter]]) {
      const out = path.join(dir, `viz${extra.length}`);
      const r = await vlakit(['attn-viz', '--model', ckpt, ...extra, '--input', examples, '--tokens', 'all', '--json', '-o', out, '--quiet']);
      expect(r.code, r.err).toBe(0);
      expect(readdirSync(out).filter((f) => f.endsWith('.png'))).toHaveLength(1);
      const maps = JSON.parse(readFileSync(path.join(out, 'maps.jsonl'), 'utf8').trim()) as { models: { tokens: { text: string; cameras: number[][] }[] }[] };
      const tokens = maps.models[0].tokens;
      expect(tokens.length).toBeGreaterThan(5);
      expect(tokens.map((t) => t.text)).toContain('<eos>'); // <end_of_utterance>, the template's end of turn
      for (const t of tokens) {
        expect(t.cameras).toHaveLength(1);
        expect(t.cameras[0]).toHaveLength(4); // the global tile's 2 x 2 grid
        expect(t.cameras[0].every((v) => v > 0 && v <= 1)).toBe(true);
      }
    }
    const gen = await vlakit(['attn-viz', '--model', ckpt, '--adapter', adapter, '--input', examples, '--generate', '--max-new-tokens', '4', '--tokens', 'all', '-o', path.join(dir, 'viz-gen'), '--quiet']);
    expect(gen.code, gen.err).toBe(0);
    const onnx = await vlakit(['attn-viz', '--model', exported, '--input', examples, '-o', path.join(dir, 'viz-onnx')]);
    expect(onnx.code).toBe(2);
    expect(onnx.err).toMatch(/run attn-viz on the checkpoint/);
    expect(existsSync(path.join(dir, 'viz-onnx'))).toBe(false);
  }, 240_000);

  it('--adapter with vlakit\'s built-in model is a usage error (exit 2) in rollout, eval-vqa, attn-viz and export', async () => {
    const tok = await buildTokenizer(['pick up the red block', '[[0.010, 0.000, 0.000, 1]]'], 120);
    const builtin = path.join(dir, 'builtin');
    const m = VlaModel.init(preset('tiny', tok.vocabSize, 1), 1);
    await writeOutputDir(builtin, (d) => writeModelFiles(d, m, tok.json, { actionCodec: CODEC }));
    m.dispose();
    const examples = writeExamples();
    const runs = [
      ['rollout', '--policy', builtin, '--adapter', adapter, '--episodes', '1', '-q'],
      ['eval-vqa', '--model', builtin, '--adapter', adapter, '--data', VQAV2, '-q'],
      ['attn-viz', '--model', builtin, '--adapter', adapter, '--input', examples, '-o', path.join(dir, 'viz-builtin'), '-q'],
      ['export', builtin, '--adapter', adapter, '-o', path.join(dir, 'builtin-onnx'), '-q'],
    ];
    for (const args of runs) {
      const r = await vlakit(args);
      expect(r.code, `${args[0]}: ${r.err}`).toBe(2);
      expect(r.err).toMatch(/adapter is for Hugging Face checkpoints/);
    }
  }, 120_000);
});
