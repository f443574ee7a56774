/**
 * vlakit's built-in model in the architecture registry: its checkpoints are recognized (and kept apart from
 * Hugging Face ones), their tensors match the registry's list (checked on load), the definition run over the
 * checkpoint's tensors as read (TfjsWeights, as Hugging Face checkpoints run) gives VlaModel's logits and KV cache
 * (its trainable variables), with images, then a decode step; and the definition against an independent float64 NumPy reference
 * (test/reference/hf_reference.py, dump in test/fixtures/reference/vlakit-vla-tiny) on tfjs and through both ONNX
 * exports (standard and onnxruntime operators).
 */
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { isHfCheckpoint, loadHfCheckpoint } from '../../src/lib/model/arch/hf.js';
import { initCheckpoint } from '../../src/lib/model/arch/manage.js';
import { architectureOf, vlakitVla } from '../../src/lib/model/arch/registry.js';
import { TfjsOps, TfjsWeights } from '../../src/lib/model/arch/tfjs-ops.js';
import { selectBackend } from '../../src/lib/model/backend.js';
import { loadCheckpoint, writeModelFiles } from '../../src/lib/model/checkpoint.js';
import { type VlaConfig, preset } from '../../src/lib/model/config.js';
import { VlaModel } from '../../src/lib/model/model.js';
import { assignValues } from '../../src/lib/model/layers.js';
import { buildTokenizer } from '../../src/lib/model/tokenizer.js';
import { writeOutputDir } from '../../src/lib/io/outputs.js';
import { exportModel } from '../../src/lib/export/index.js';
import { openBuiltinModel } from '../../src/lib/infer/index.js';
import { readSafetensors } from '../../src/lib/model/safetensors.js';
import { tempDir } from '../helpers.js';

const dir = tempDir('vlakit-vla-');
let cfg: VlaConfig;
let ck: string;

beforeAll(async () => {
  await selectBackend('wasm');
  const tok = await buildTokenizer(['grasp the red block', 'move left'], 60);
  cfg = { ...preset('tiny', tok.vocabSize, 2), initializer_range: 0.08 };
  const m = VlaModel.init(cfg, 11);
  ck = path.join(dir, 'ck');
  await writeOutputDir(ck, (d) => writeModelFiles(d, m, tok.json));
  m.dispose();
});

const maxDiff = (a: tf.Tensor, b: tf.Tensor) => tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);

describe('vlakit-vla in the registry', () => {
  it('is the architecture of a built-in checkpoint, which is not a Hugging Face checkpoint; its tensors are the registry\'s', () => {
    const raw = { ...cfg, vlakit: { lora: null } };
    expect(architectureOf(raw).modelType).toBe('vlakit-vla');
    expect(isHfCheckpoint(ck)).toBe(false); // openModel and train-sft --init route it to model/checkpoint.ts
    const loaded = loadHfCheckpoint(ck); // every tensor named and shaped as vlaTensors lists it ([in, out] linears)
    expect(loaded.tensors.size).toBe(vlakitVla.tensors(cfg).length);
    expect(loaded.tensors.get('vision.layers.0.attn.qkv.weight')!.shape).toEqual([32, 96]);
  });

  it('loading a checkpoint checks every tensor against the registry\'s list for its config', () => {
    const bad = path.join(dir, 'bad');
    cpSync(ck, bad, { recursive: true });
    const raw = JSON.parse(readFileSync(path.join(bad, 'config.json'), 'utf8'));
    raw.text_config.intermediate_size = 100;
    writeFileSync(path.join(bad, 'config.json'), JSON.stringify(raw));
    expect(() => loadCheckpoint(bad)).toThrow(/tensor model\.layers\.0\.mlp\.(down|gate|up)_proj\.weight has shape \[(88,32|32,88)\]; the config says \[(100,32|32,100)\]/);
    expect(() => loadCheckpoint(ck)).not.toThrow();
  });

  it('model info describes a built-in checkpoint as vlakit\'s own model (no processor to build)', async () => {
    const r = await execa('node', [path.resolve('bin/run.js'), 'model', 'info', ck], { reject: false });
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(/vlakit-vla \(VlaForCausalLM\)/);
    expect(r.stdout).toMatch(/vlakit: its own model, a train-sft\/train-rl checkpoint/);
    expect(r.stdout).not.toMatch(/processor: cannot be built/);
  });

  it('model init refuses it (the built-in model starts from train-sft --preset)', async () => {
    await expect(initCheckpoint(cfg as unknown as Record<string, unknown>, path.join(dir, 'init'))).rejects.toThrow(/train-sft --preset/);
  });

  it('over the tensors as read (TfjsWeights) it gives VlaModel\'s logits, with images, then a decode step through the cache', async () => {
    const loaded = loadHfCheckpoint(ck);
    const model = VlaModel.init(cfg, 0);
    for (const [n, t] of loaded.tensors) assignValues(model.params.get(n)!, t.data, t.shape);
    const before = tf.memory().numTensors;
    const weights = new TfjsWeights(loaded.tensors);
    const pixels = tf.randomUniform([2, 2, 32, 32, 3], -1, 1, 'float32', 3) as tf.Tensor5D;
    const ids = tf.tensor2d([[2, 9, 14, 21, 4], [2, 10, 8, 8, 4]], [2, 5], 'int32');
    const next = tf.tensor2d([[17], [5]], [2, 1], 'int32');
    const [refLogits, refNext, refK1] = tf.tidy(() => {
      const r = model.forward(pixels, ids, { useCache: true });
      const n = model.forward(undefined, next, { cache: r.cache });
      return [r.logits, n.logits, n.cache!.k[1]];
    });
    const cache = { k: [], v: [], length: 0 };
    const ops = new TfjsOps(weights, cache, undefined, 0, 'in_out');
    const logits = tf.tidy(() => vlakitVla.forward(ops, cfg, ids, pixels)); // [2, 5, V]
    const ops2 = new TfjsOps(weights, ops.next, undefined, 0, 'in_out');
    const logitsNext = tf.tidy(() => vlakitVla.forward(ops2, cfg, next)); // [2, 1, V]
    expect(logits.shape).toEqual([2, 5, cfg.text_config.vocab_size]);
    expect(ops.next!.length).toBe(2 * 16 + 5); // 2 cameras x 16 patches, then the text
    const scale = tf.tidy(() => tf.max(tf.abs(refLogits)).dataSync()[0]);
    expect(scale).toBeGreaterThan(0.1); // the weights are not negligible: the comparison is real
    expect(maxDiff(logits, refLogits)).toBeLessThan(1e-5);
    expect(maxDiff(logitsNext, refNext)).toBeLessThan(1e-5);
    expect(maxDiff(ops2.next!.k[1]!, refK1)).toBeLessThan(1e-5);
    tf.dispose([logits, logitsNext, refLogits, refNext, refK1]);
    for (const t of [...ops2.next!.k, ...ops2.next!.v, ...ops.next!.k, ...ops.next!.v]) t?.dispose();
    tf.dispose([pixels, ids, next]);
    weights.dispose();
    expect(tf.memory().numTensors).toBe(before); // the tfjs path leaks nothing
    model.dispose();
  });
});

describe('vlakit-vla against the NumPy float64 reference', () => {
  // vlakit-vla-stem-tiny: the same with the patch stem (4-px cells, GELU features) before the patch embedding;
  // vlakit-vla-kp-tiny: and keypoint tokens (a spatial softmax per learned query over the stem's cells);
  // vlakit-vla-kpq-tiny: with the queries conditioned on the prompt (its ids hold a <sep>: the tokens after it are not read);
  // vlakit-vla-kpc-tiny: keypoint keys from the 3 x 3 cells around each cell (keypoint_context 3, zeros off the image)
  it.each(['vlakit-vla-tiny', 'vlakit-vla-stem-tiny', 'vlakit-vla-kp-tiny', 'vlakit-vla-kpq-tiny', 'vlakit-vla-kpc-tiny'])('%s: logits of the text positions within 1e-4 relative: the checkpoint (tfjs) and its exports (onnxruntime)', async (name) => {
    const REF = path.resolve('test/fixtures/reference', name);
    const config = JSON.parse(readFileSync(path.join(REF, 'config.json'), 'utf8')) as VlaConfig;
    const inp = JSON.parse(readFileSync(path.join(REF, 'inputs.json'), 'utf8')) as { input_ids: number[]; pixel_values: number[] };
    const { logits: expected } = JSON.parse(readFileSync(path.join(REF, 'expected.json'), 'utf8')) as { logits: number[][] };
    const m = VlaModel.init(config, 0);
    for (const [n, t] of readSafetensors(path.join(REF, 'model.safetensors')).tensors) assignValues(m.params.get(n)!, t.data, t.shape);
    const tok = await buildTokenizer(['grasp the red block'], 40);
    const ref = path.join(dir, `ref-${name}`);
    await writeOutputDir(ref, (d) => writeModelFiles(d, m, tok.json));
    m.dispose();
    const scale = Math.max(...expected.flat().map(Math.abs));
    const worst = (got: Float32Array) => Math.max(...expected.flatMap((row, t) => row.map((v, j) => Math.abs(got[t * row.length + j] - v) / scale)));
    const pixels = Float32Array.from(inp.pixel_values);
    const runs: [string, string][] = [['checkpoint', ref]];
    for (const ops of ['standard', 'onnxruntime'] as const) {
      await exportModel(ref, `${ref}-${ops}`, { ops });
      runs.push([ops, `${ref}-${ops}`]);
    }
    for (const [what, at] of runs) {
      const r = await openBuiltinModel(at);
      const got = await r.logits(pixels, inp.input_ids);
      await r.dispose();
      expect(got.length).toBe(inp.input_ids.length * config.text_config.vocab_size);
      expect(worst(got), what).toBeLessThan(1e-4);
    }
  });
});
