/**
 * LoRA against PEFT itself (test/fixtures/reference/peft/, made on a GPU machine by
 * test/reference/transformers_check.py with peft 0.21 and transformers 5.17, float64):
 * - adapters that peft wrote (save_pretrained) on the tiny Llama, Idefics3 (its vision tower adapted too) and Gemma 3
 *   text checkpoints: vlakit's logits with each adapter folded in, and the training loss and the gradient of every
 *   LoRA matrix on a labelled prompt, against peft's;
 * - three steps of vlakit's AdamW (global-norm clipping, decoupled decay) against torch.optim.AdamW with
 *   clip_grad_norm_, from the same adapter and batch;
 * - adapters that vlakit wrote (writePeftAdapter): the logits peft gets when it loads them.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../../src/lib/model/backend.js';
import { loadHfCheckpoint } from '../../src/lib/model/arch/hf.js';
import { applyPeftAdapter, readPeftAdapter } from '../../src/lib/model/arch/adapter.js';
import { TfjsCausalLm } from '../../src/lib/infer/causal.js';
import { HfLoraModel } from '../../src/lib/train/hf-model.js';
import { paramName } from '../../src/lib/model/layers.js';
import { AdamW } from '../../src/lib/train/optim.js';
import { maxRelDiff } from '../helpers.js';

const REF = path.resolve('test/fixtures/reference');

interface Inputs {
  input_ids: number[];
  pixel_values?: number[];
  pixel_shape?: number[];
}

interface PeftRef {
  /** llama-tiny: three steps of torch.optim.AdamW from the adapter, gradients clipped by clip_grad_norm_. */
  adamw?: { lr: number; weight_decay: number; max_norm: number; steps: { loss: number; grad_norm: number; params: Record<string, number[][]> }[] };
  targets: string[];
  labels: number[];
  loss: number;
  logits: number[][];
  grads: Record<string, number[][]>;
}

const json = <T>(f: string): T => JSON.parse(readFileSync(f, 'utf8')) as T;

/** transformers' causal-LM loss: each position predicts the next label; -100 is ignored; the mean over the rest. */
function causalLmLoss(logits: tf.Tensor3D, labels: number[]): tf.Scalar {
  return tf.tidy(() => {
    const T = labels.length;
    const V = logits.shape[2];
    const keep = labels.slice(1).map((l): number => (l === -100 ? 0 : 1));
    const target = tf.oneHot(labels.slice(1).map((l) => Math.max(l, 0)), V); // [T-1, V]
    const logp = tf.logSoftmax(logits.reshape([T, V]).slice([0, 0], [T - 1, V])); // [T-1, V]
    const nll = tf.neg(tf.sum(tf.mul(logp, target), 1)); // [T-1]
    return tf.div(tf.sum(tf.mul(nll, tf.tensor1d(keep))), keep.reduce((a, b) => a + b, 0)) as tf.Scalar;
  });
}

beforeAll(async () => {
  await selectBackend('cpu');
});

describe.each(['llama-tiny', 'idefics3-tiny', 'gemma3-text-tiny'])('a LoRA adapter written by peft on %s', (name) => {
  const dir = path.join(REF, 'peft', name);
  const ref = json<PeftRef>(path.join(dir, 'reference.json'));
  const inp = json<Inputs>(path.join(REF, name, 'inputs.json'));
  const pixels = inp.pixel_values ? Float32Array.from(inp.pixel_values) : undefined;

  it('folded into the checkpoint, gives peft\'s logits within 1e-4 relative', async () => {
    const ck = loadHfCheckpoint(path.join(REF, name));
    const applied = applyPeftAdapter(ck, dir);
    expect(applied.modules).toHaveLength(Object.keys(ref.grads).length / 2);
    const lm = new TfjsCausalLm(ck);
    try {
      expect(maxRelDiff(await lm.logits(inp.input_ids, pixels), ref.logits.flat())).toBeLessThan(1e-4);
    } finally {
      lm.dispose();
    }
  });

  it('trained by vlakit, has peft\'s loss and the gradient of every LoRA matrix within 1e-4 relative', () => {
    const ck = loadHfCheckpoint(path.join(REF, name));
    const saved = readPeftAdapter(dir);
    const model = new HfLoraModel(ck, { r: saved.config.r, alpha: saved.config.lora_alpha, targets: ref.targets });
    try {
      model.loadAdapter(saved.tensors, path.join(dir, 'adapter_model.safetensors'));
      const T = inp.input_ids.length;
      const ids = tf.tensor2d(inp.input_ids, [1, T], 'int32');
      const image = pixels ? tf.tensor4d(pixels, inp.pixel_shape as [number, number, number, number]) : undefined;
      const names = model.modules.flatMap((m) => [`${m}.lora_A.weight`, `${m}.lora_B.weight`]);
      const vars = model.trainable();
      expect(names.sort()).toEqual(Object.keys(ref.grads).sort());
      const { value, grads } = tf.variableGrads(() => causalLmLoss(model.forward(ids, image), ref.labels), vars);
      expect(Math.abs(value.dataSync()[0] - ref.loss) / ref.loss).toBeLessThan(1e-5);
      for (const v of vars) {
        const want = ref.grads[paramName(v)];
        expect(want, v.name).toBeDefined();
        expect(maxRelDiff(grads[v.name].dataSync(), want.flat()), v.name).toBeLessThan(1e-4);
      }
      tf.dispose([ids, image, value, ...Object.values(grads)].filter((t) => t !== undefined) as tf.Tensor[]);
    } finally {
      model.dispose();
    }
  });
});

describe('vlakit\'s AdamW against torch.optim.AdamW', () => {
  it('three LoRA training steps on llama-tiny (clipped to norm 1, decay 0.01): the losses, norms and weights of torch', () => {
    const name = 'llama-tiny';
    const dir = path.join(REF, 'peft', name);
    const ref = json<PeftRef>(path.join(dir, 'reference.json'));
    const run = ref.adamw!;
    const inp = json<Inputs>(path.join(REF, name, 'inputs.json'));
    const saved = readPeftAdapter(dir);
    const model = new HfLoraModel(loadHfCheckpoint(path.join(REF, name)), { r: saved.config.r, alpha: saved.config.lora_alpha, targets: ref.targets });
    const opt = new AdamW({ weightDecay: run.weight_decay });
    try {
      model.loadAdapter(saved.tensors, path.join(dir, 'adapter_model.safetensors'));
      const ids = tf.tensor2d(inp.input_ids, [1, inp.input_ids.length], 'int32');
      const vars = model.trainable();
      for (const [i, want] of run.steps.entries()) {
        const { value, grads } = tf.variableGrads(() => causalLmLoss(model.forward(ids), ref.labels), vars);
        expect(Math.abs(value.dataSync()[0] - want.loss) / want.loss, `step ${i} loss`).toBeLessThan(1e-5);
        const norm = opt.apply(vars, new Map(Object.entries(grads)), run.lr, run.max_norm);
        expect(Math.abs(norm - want.grad_norm) / want.grad_norm, `step ${i} norm`).toBeLessThan(1e-4);
        for (const v of vars) expect(maxRelDiff(v.dataSync(), want.params[paramName(v)].flat()), `step ${i} ${v.name}`).toBeLessThan(1e-4);
        tf.dispose([value, ...Object.values(grads)]);
      }
      ids.dispose();
    } finally {
      opt.dispose();
      model.dispose();
    }
  });
});

describe.each(['llama-tiny', 'idefics3-tiny'])('a LoRA adapter written by vlakit on %s', (name) => {
  it('is read by peft (PeftModel.from_pretrained) as vlakit reads it: the same logits within 1e-4 relative', async () => {
    const dir = path.join(REF, 'peft', `vlakit-${name}`);
    const ref = json<{ lora_modules: number; logits: number[][] }>(path.join(dir, 'reference.json'));
    const inp = json<Inputs>(path.join(REF, name, 'inputs.json'));
    const ck = loadHfCheckpoint(path.join(REF, name));
    expect(applyPeftAdapter(ck, dir).modules).toHaveLength(ref.lora_modules);
    const lm = new TfjsCausalLm(ck);
    try {
      expect(maxRelDiff(await lm.logits(inp.input_ids, inp.pixel_values ? Float32Array.from(inp.pixel_values) : undefined), ref.logits.flat())).toBeLessThan(1e-4);
    } finally {
      lm.dispose();
    }
  });
});
