/**
 * Training PaliGemma 2 (a prefix-LM: the prompt's positions attend both ways, the target's are causal) on a
 * tiny-random checkpoint with the stand-in Gemma tokenizer (paligemma-files.ts; SigLIP 16 px, patch 4: 16 image
 * tokens). The training forward of a padded batch, each row with its own prompt length, gives the logits of the
 * inference path (one row, prefix = its prompt), which test/model/reference.test.ts checks against transformers;
 * LoRA and an action head train on it, and the export's head graphs (fed the prompt length) match the checkpoint.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { TextCodec, type TrainingExample } from '../../src/lib/actions/index.js';
import { openCausalLm } from '../../src/lib/infer/causal.js';
import { readHeadConfig } from '../../src/lib/model/action-head.js';
import { readPeftAdapter } from '../../src/lib/model/arch/adapter.js';
import { loadHfCheckpoint } from '../../src/lib/model/arch/hf.js';
import { initCheckpoint } from '../../src/lib/model/arch/manage.js';
import { selectBackend } from '../../src/lib/model/backend.js';
import { openProcessor } from '../../src/lib/model/processor/index.js';
import { makeBatch, disposeBatch } from '../../src/lib/train/data.js';
import { HfLoraModel } from '../../src/lib/train/hf-model.js';
import { HfTrainee } from '../../src/lib/train/hf-sft.js';
import { trainSft } from '../../src/lib/train/sft.js';
import { tempDir } from '../helpers.js';
import { ex, toyExamples } from './examples.js';
import { exportedHeadParity, trainingVsServedFeatures } from './head-checks.js';
import { PALIGEMMA_PREPROCESSOR, paliGemmaConfig, writePaliGemmaTokenizer } from './paligemma-files.js';

const dir = tempDir('vlakit-trainpali-');
const ckpt = path.join(dir, 'ckpt');
const LORA = { r: 4, alpha: 8, targets: ['q', 'v'] };
let examples: TrainingExample[];

beforeAll(async () => {
  await selectBackend('cpu');
  examples = await toyExamples();
  await initCheckpoint(paliGemmaConfig(16, 4), ckpt, { seed: 7 });
  writePaliGemmaTokenizer(ckpt);
  writeFileSync(path.join(ckpt, 'preprocessor_config.json'), JSON.stringify({ ...PALIGEMMA_PREPROCESSOR, size: { height: 16, width: 16 }, image_seq_length: 16 }));
}, 120_000);

describe('training PaliGemma 2 (prefix-LM)', () => {
  it('a padded batch of two prompt lengths gives each row the logits of the inference path with its prompt as the prefix', async () => {
    const proc = await openProcessor(ckpt);
    const t = new HfTrainee(new HfLoraModel(loadHfCheckpoint(ckpt), LORA), proc, ckpt);
    const items = await t.prepare([examples[0], ex('long', examples[2].images[0], 'Subtask: lift the red block slowly, then hold it above the table', '', '[[0.000, 0.000, 0.015, 0]]')]);
    expect(items[0].promptLength).not.toBe(items[1].promptLength);
    const batch = makeBatch(items, t.layout);
    const logits = tf.tidy(() => t.logits(batch, items)); // [2, T, V]
    const [, T, V] = logits.shape;
    const all = (await logits.data()) as Float32Array;
    logits.dispose();
    disposeBatch(batch);
    t.dispose();
    const lm = await openCausalLm(ckpt);
    for (const [b, x] of items.entries()) {
      const want = await lm.logits(x.ids, x.pixels, x.promptLength);
      const causal = await lm.logits(x.ids, x.pixels, 0); // no prefix: every position causal
      let worst = 0;
      let apart = 0;
      for (let p = 0; p < x.ids.length; p++) {
        for (let v = 0; v < V; v += 7) {
          const got = all[(b * T + p) * V + v];
          worst = Math.max(worst, Math.abs(got - want[p * V + v]));
          apart = Math.max(apart, Math.abs(got - causal[p * V + v]));
        }
      }
      expect(worst, `row ${b}`).toBeLessThan(1e-4);
      expect(apart, `row ${b}: the prefix changes the logits`).toBeGreaterThan(1e-2);
    }
    await lm.dispose();
  }, 120_000);

  it('LoRA and a flow head train on it; the engine gives the training features, and the export\'s head graphs (prefix_length fed) match the checkpoint', async () => {
    const proc = await openProcessor(ckpt);
    const run = path.join(dir, 'head');
    await trainSft({ examples, outDir: run, init: ckpt, processor: proc, codec: new TextCodec(3), lora: LORA, steps: 3, batchSize: 2, lr: 1e-2, warmup: 0, seed: 1, actionHead: { objective: 'flow', hidden: 16, layers: 1, inferenceSteps: 3, langWeight: 0 } }); // no language loss: no logits over the 262k vocabulary; the adapters train through the head
    expect(readHeadConfig(run)).toMatchObject({ objective: 'flow', cond_dim: 32, action_dim: 4 });
    const B = [...readPeftAdapter(run).tensors.values()].map((x) => Math.max(...x.b.data.map(Math.abs)));
    expect(Math.max(...B)).toBeGreaterThan(0);
    // the training path (each row's prefix) and the engine (the prompt as the prefix); then the export (prefix_length fed)
    expect(await trainingVsServedFeatures(ckpt, run, proc, examples[0], LORA)).toBeLessThan(1e-4);
    expect(await exportedHeadParity(ckpt, run, path.join(dir, 'head-onnx'))).toBeLessThan(1e-4);
  }, 300_000);
});
