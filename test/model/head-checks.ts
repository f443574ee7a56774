/** Checks shared by the action-head tests on Hugging Face backbones (head-hf, train-paligemma). */
import path from 'node:path';
import { execa } from 'execa';
import * as tf from '@tensorflow/tfjs-core';
import { expect } from 'vitest';
import type { TrainingExample } from '../../src/lib/actions/index.js';
import { hfHeadParity } from '../../src/lib/export/hf.js';
import { hfHeadFeatures } from '../../src/lib/model/action-head-hf.js';
import { readHeadConfig } from '../../src/lib/model/action-head.js';
import { applyPeftAdapter, readPeftAdapter } from '../../src/lib/model/arch/adapter.js';
import { loadHfCheckpoint } from '../../src/lib/model/arch/hf.js';
import type { Processor } from '../../src/lib/model/processor/types.js';
import { readSafetensors } from '../../src/lib/model/safetensors.js';
import { HfHeadEngine } from '../../src/lib/policy/head-policy.js';
import { HfLoraModel } from '../../src/lib/train/hf-model.js';

const BIN = path.resolve('bin/run.js');

/**
 * The head features of one prompt with the example's image: the training path (the run's LoRA unmerged) against the
 * inference engine (the adapter folded into the base); their largest difference. `lora`: the run's LoRA options.
 */
export async function trainingVsServedFeatures(base: string, run: string, proc: Processor, example: TrainingExample, lora: { r: number; alpha: number; targets: string[] }): Promise<number> {
  const img = new Uint8Array(Buffer.from(example.images[0].b64, 'base64'));
  const prompt = proc.renderChat([{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'Subtask: grasp the red block' }] }], { addGenerationPrompt: true });
  const inp = await proc.encode(prompt, [img]);
  const model = new HfLoraModel(loadHfCheckpoint(base), lora);
  model.loadAdapter(readPeftAdapter(run).tensors, run);
  const v = model.vision!;
  const train = tf.tidy(() => {
    const px = tf.tensor4d(inp.pixels, [inp.tiles, v.channels, v.imageSize, v.imageSize]);
    return hfHeadFeatures(model, tf.tensor2d([inp.ids], undefined, 'int32'), px, [inp.ids.length - 1], { logits: false }).cond.dataSync() as Float32Array;
  });
  model.dispose();
  const engine = await HfHeadEngine.open(base, run);
  const served = await engine.features({ ids: inp.ids, pixels: inp.pixels, textOffset: 0, imagePositions: inp.imagePositions, images: [] });
  engine.dispose();
  expect(served.length).toBe(train.length);
  let worst = 0;
  train.forEach((x, i) => (worst = Math.max(worst, Math.abs(x - served[i]))));
  return worst;
}

/** `vlakit export BASE --adapter RUN -o OUT`, then the export's head graphs against the checkpoint (adapter folded): the largest difference. */
export async function exportedHeadParity(base: string, run: string, out: string): Promise<number> {
  const e = await execa('node', [BIN, 'export', base, '--adapter', run, '-o', out], { reject: false });
  expect(e.exitCode, e.stderr).toBe(0);
  const ck = loadHfCheckpoint(base);
  applyPeftAdapter(ck, run);
  return hfHeadParity(ck, { config: readHeadConfig(run), weights: readSafetensors(path.join(run, 'action_head.safetensors')).tensors }, out);
}
