/**
 * The TensorFlow.js ops' memory and weight layout: one tidy per block (a forward's peak does not grow with the
 * number of layers), and TfjsWeights (linear weights held transposed, a custom gradient to the input) giving the
 * same logits and LoRA gradients as the weights in Hugging Face layout.
 */
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { type HfCheckpoint, loadHfCheckpoint } from '../../src/lib/model/arch/hf.js';
import { initCheckpoint } from '../../src/lib/model/arch/manage.js';
import { TfjsOps, TfjsWeights } from '../../src/lib/model/arch/tfjs-ops.js';
import { selectBackend } from '../../src/lib/model/backend.js';
import { tempDir } from '../helpers.js';
import { TINY_IDEFICS3 } from './tiny-idefics3.js';

const dir = tempDir('vlakit-tfjs-ops-');

/** A tiny Idefics3 whose vision tower has `layers` layers over 64 patches (attention scores dominate a layer). */
async function tiny(layers: number): Promise<HfCheckpoint> {
  const out = path.join(dir, `v${layers}`);
  await initCheckpoint({ ...TINY_IDEFICS3, vision_config: { ...TINY_IDEFICS3.vision_config, num_hidden_layers: layers, num_attention_heads: 8, hidden_size: 32, image_size: 64 } }, out, { seed: 1 });
  return loadHfCheckpoint(out);
}

beforeAll(async () => {
  await selectBackend();
});

describe('TfjsOps', () => {
  it('holds one block\'s temporaries at a time: the peak of a vision forward does not grow with its layers', async () => {
    const peak = async (layers: number) => {
      const ck = await tiny(layers);
      const params = new TfjsWeights(ck.tensors);
      const pixels = tf.randomNormal([1, 3, 64, 64]);
      tf.tidy(() => ck.arch.features!(new TfjsOps(params), ck.config, pixels)); // weights uploaded
      const before = tf.memory().numBytes;
      const p = await tf.profile(() => tf.tidy(() => ck.arch.features!(new TfjsOps(params), ck.config, pixels)));
      params.dispose();
      pixels.dispose();
      return p.peakBytes - before;
    };
    const two = await peak(2);
    const eight = await peak(8);
    // one tidy around the whole forward would hold all layers' [1, 8, 64, 64] scores and their softmax: about 4x
    expect(eight).toBeLessThan(two * 1.3);
  });

  it('TfjsWeights (linear weights transposed) gives the logits and LoRA gradients of the weights as stored', async () => {
    const ck = await tiny(1);
    const ids = tf.tensor2d([[1, 5, 7, ...Array(16).fill(49190), 9, 11]], [1, 21], 'int32');
    const pixels = tf.randomNormal([1, 3, 64, 64], 0, 1, 'float32', 4);
    const stored = new Map([...ck.tensors].map(([n, t]) => [n, tf.tensor(t.data, t.shape)]));
    const weights = new TfjsWeights(ck.tensors);
    const lora = { r: 2, alpha: 4, targets: new Set(['q_proj', 'down_proj']), enabled: true };
    const vars: tf.Variable[] = [];
    for (const m of ['model.text_model.layers.0.self_attn.q_proj', 'model.text_model.layers.1.mlp.down_proj', 'model.vision_model.encoder.layers.0.self_attn.q_proj']) {
      const [o, i] = ck.tensors.get(`${m}.weight`)!.shape;
      for (const [part, shape] of [['A', [2, i]], ['B', [o, 2]]] as const) {
        const v = tf.variable(tf.randomNormal([...shape], 0, 0.3, 'float32', vars.length + 1), true, `${m}.lora_${part}.weight`);
        vars.push(v);
        stored.set(v.name, v);
        weights.set(v.name, v);
      }
    }
    const run = (params: TfjsWeights | Map<string, tf.Tensor>) => {
      const { value, grads } = tf.variableGrads(() => tf.sum(tf.square(ck.arch.forward(new TfjsOps(params, undefined, lora), ck.config, ids, pixels) as tf.Tensor)) as tf.Scalar, vars);
      const out = { loss: value.dataSync()[0], grads: vars.map((v) => grads[v.name].dataSync() as Float32Array) };
      value.dispose();
      tf.dispose(Object.values(grads));
      return out;
    };
    const a = run(stored);
    const b = run(weights);
    expect(Math.abs(a.loss - b.loss) / Math.abs(a.loss)).toBeLessThan(1e-5);
    a.grads.forEach((g, k) => {
      const scale = Math.max(...g.map(Math.abs));
      expect(scale).toBeGreaterThan(0);
      expect(Math.max(...g.map((x, i) => Math.abs(x - b.grads[k][i]))) / scale).toBeLessThan(1e-4);
    });
    weights.dispose(); // disposes the variables it was given too
    tf.dispose([...stored.values()].filter((t) => !vars.includes(t as tf.Variable)));
    tf.dispose([ids, pixels]);
  });
});
