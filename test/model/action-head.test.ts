import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../../src/lib/model/backend.js';
import { ActionHead, type ActionHeadConfig, chunkNoise, denormalizeChunk, headConfig, normalizeChunk, sampleChunk } from '../../src/lib/model/action-head.js';
import { AdamW } from '../../src/lib/train/optim.js';
import { Rng } from '../../src/lib/util/rng.js';

beforeAll(async () => {
  await selectBackend('cpu');
});

// ---- float64 references, written from the definitions (not from the module) ----

/** abar_k = prod_{j<=k} (1 - beta_j), beta_j = min(1 - g(j)/g(j-1), 0.999), g(u) = cos^2(((u/T) + s)/(1 + s) pi/2). */
function refAlphaBar(T: number, k: number): number {
  let prod = 1;
  for (let j = 1; j <= k; j++) {
    const g = (u: number) => Math.cos((((u / T) + 0.008) / (1 + 0.008)) * Math.PI * 0.5) ** 2;
    prod *= 1 - Math.min(1 - g(j) / g(j - 1), 0.999);
  }
  return prod;
}

/** DDIM, eta = 0, over timesteps 1 + floor(T (K - 1 - i) / K), the last step going to abar = 1; the clean estimate clipped to +-clip. */
function refDdim(T: number, K: number, x0: number[], eps: (x: number[], t: number) => number[], clip = Infinity, sample = false): number[] {
  let x = [...x0];
  for (let i = 0; i < K; i++) {
    const tau = 1 + Math.floor((T * (K - 1 - i)) / K);
    const prev = i + 1 < K ? 1 + Math.floor((T * (K - 2 - i)) / K) : 0;
    const a = refAlphaBar(T, tau);
    const ap = prev === 0 ? 1 : refAlphaBar(T, prev);
    const e = eps(x, tau / T);
    x = x.map((xi, j) => {
      // sample prediction: the output is the clean chunk, the noise follows from it
      const pred = Math.max(-clip, Math.min(clip, sample ? e[j] : (xi - Math.sqrt(1 - a) * e[j]) / Math.sqrt(a)));
      const noise = sample ? (xi - Math.sqrt(a) * pred) / Math.sqrt(1 - a) : e[j];
      return Math.sqrt(ap) * pred + Math.sqrt(1 - ap) * noise;
    });
  }
  return x;
}

/** Euler from t = 1 to 0 in K equal steps: x <- x - v(x, t) / K. */
function refEuler(K: number, x0: number[], v: (x: number[], t: number) => number[]): number[] {
  let x = [...x0];
  for (let i = 0; i < K; i++) {
    const t = (K - i) / K;
    const vt = v(x, t);
    x = x.map((xi, j) => xi - vt[j] / K);
  }
  return x;
}

/** An analytic denoiser, smooth in x and t. */
const analytic = (x: number[], t: number) => x.map((xi, j) => 0.4 * xi + 0.2 * Math.sin(3 * t + j) - 0.1 * t * t);

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe('samplers against float64 references', () => {
  const noise = Array.from(chunkNoise(headConfig({ objective: 'flow', horizon: 3, action_dim: 4, cond_dim: 8, action_norm: { mean: [0, 0, 0, 0], std: [1, 1, 1, 1] } }), 1, 7));
  const asDenoiser = (f: (x: number[], t: number) => number[]) => async (x: Float32Array, t: number) => Float32Array.from(f([...x], t));
  // the references see what a float32 denoiser sees: its inputs and outputs rounded to float32
  const f32 = (f: (x: number[], t: number) => number[]) => (x: number[], t: number) => f(x.map(Math.fround), t).map(Math.fround);

  it('DDIM (cosine schedule, epsilon prediction) matches the reference on fixed noise', async () => {
    for (const [T, K, clip] of [[100, 10, 5], [50, 7, 1], [20, 20, 100]]) {
      const got = await sampleChunk({ objective: 'diffusion', train_timesteps: T, inference_steps: K, clip_sample: clip }, noise, asDenoiser(analytic));
      const want = refDdim(T, K, noise, f32(analytic), clip);
      expect(maxDiff(got, want), `T ${T} K ${K}`).toBeLessThan(1e-9);
      const sampled = await sampleChunk({ objective: 'diffusion', train_timesteps: T, inference_steps: K, clip_sample: clip, prediction: 'sample' }, noise, asDenoiser(analytic));
      expect(maxDiff(sampled, refDdim(T, K, noise, f32(analytic), clip, true)), `sample prediction, T ${T} K ${K}`).toBeLessThan(1e-9);
    }
  });

  it('Euler (flow matching) matches the reference on fixed noise', async () => {
    for (const K of [1, 5, 16]) {
      const got = await sampleChunk({ objective: 'flow', train_timesteps: 1, inference_steps: K, clip_sample: 1 }, noise, asDenoiser(analytic));
      expect(maxDiff(got, refEuler(K, noise, f32(analytic))), `K ${K}`).toBeLessThan(1e-9);
    }
  });

  it('the exact denoiser of a point mass recovers the point (both objectives)', async () => {
    const c = noise.map((_, j) => Math.cos(j));
    const T = 100;
    // eps*(x, t) = (x - sqrt(abar) c) / sqrt(1 - abar); v*(x, t) = (x - c) / t
    const eps = (x: number[], t: number) => {
      const a = refAlphaBar(T, Math.round(t * T));
      return x.map((xi, j) => (xi - Math.sqrt(a) * c[j]) / Math.sqrt(1 - a));
    };
    const v = (x: number[], t: number) => x.map((xi, j) => (xi - c[j]) / t);
    expect(maxDiff(await sampleChunk({ objective: 'diffusion', train_timesteps: T, inference_steps: 8, clip_sample: 5 }, noise, asDenoiser(eps)), c)).toBeLessThan(1e-4);
    expect(maxDiff(await sampleChunk({ objective: 'flow', train_timesteps: 1, inference_steps: 8, clip_sample: 5 }, noise, asDenoiser(v)), c)).toBeLessThan(1e-5);
  });
});

describe('the denoiser overfits one example', () => {
  const chunk = [
    [0.01, -0.02, 0.0, 1],
    [0.02, -0.01, 0.005, 1],
    [0.015, 0.0, -0.01, 0],
    [0.0, 0.01, -0.02, 0],
  ];
  const norm = { mean: [0.01, -0.005, -0.005, 0.5], std: [0.01, 0.012, 0.01, 0.5] };

  async function overfit(objective: ActionHeadConfig['objective'], prediction: ActionHeadConfig['prediction'], STEPS: number, LR: number): Promise<number[][]> {
    const cfg = headConfig({ objective, prediction, horizon: 4, action_dim: 4, cond_dim: 6, hidden_size: 64, num_layers: 2, inference_steps: 10, action_norm: norm });
    const head = ActionHead.init(cfg, 1);
    const cond = tf.tensor2d([[0.5, -1, 0.3, 0.8, -0.2, 1.1]]);
    const x0 = normalizeChunk(cfg, chunk);
    const batch = 16; // the same example 16 times: more noise levels per step
    const xs = new Float32Array(batch * x0.length);
    for (let b = 0; b < batch; b++) xs.set(x0, b * x0.length);
    const conds = tf.tile(cond, [batch, 1]) as tf.Tensor2D;
    const opt = new AdamW({ weightDecay: 0 });
    const rng = new Rng(3);
    const before = tf.memory().numTensors;
    for (let step = 0; step < STEPS; step++) {
      const { value, grads } = tf.variableGrads(() => head.loss(conds, xs, rng), head.vars());
      value.dispose();
      opt.apply(head.vars(), new Map(Object.entries(grads)), step < STEPS * 0.75 ? LR : LR / 3, 1);
      for (const g of Object.values(grads)) g.dispose();
    }
    const out = await head.sample(cond, chunkNoise(cfg, 1, 11));
    expect(tf.memory().numTensors - before).toBeLessThanOrEqual(2 * head.vars().length); // the optimizer's moments only
    opt.dispose();
    tf.dispose([cond, conds]);
    head.dispose();
    return denormalizeChunk(cfg, out);
  }

  // epsilon prediction has to fit eps = (x - sqrt(abar) c) / sqrt(1 - abar), steep in x at low noise: more steps at a
  // higher rate (measured: 450 steps at 1e-2 end 0.195 off, 600 and 800 pass; 1500 at 3e-3 passed, 700 did not)
  const cases = [
    ['diffusion', 'epsilon', 800, 1e-2],
    ['diffusion', 'sample', 400, 3e-3],
    ['flow', 'epsilon', 400, 3e-3],
  ] as const;
  for (const [objective, prediction, steps, lr] of cases) {
    it(`${objective}${objective === 'diffusion' ? ` (${prediction} prediction)` : ''}: the sampled chunk is the training chunk`, async () => {
      const got = await overfit(objective, prediction, steps, lr);
      const err = got.map((a, i) => a.map((v, k) => Math.abs(v - chunk[i][k]) / norm.std[k]));
      // within 0.15 standard deviations in every number (a fresh head is off by about 1)
      expect(Math.max(...err.flat()), JSON.stringify(got)).toBeLessThan(0.15);
    }, 600_000); // epsilon: about 40 s of training on an idle 2-core machine, the others about 20 s
  }
});

describe('named keypoints join after the features\' LayerNorm (named_keypoints.past_norm)', () => {
  // 6 backbone features + one slot of 8 readouts and its flag
  const named = (pastNorm: boolean) => headConfig({ objective: 'flow', horizon: 1, action_dim: 4, cond_dim: 6 + 9, hidden_size: 16, num_layers: 1, initializer_range: 0.5, action_norm: { mean: [0, 0, 0, 0], std: [1, 1, 1, 1] }, named_keypoints: { names: ['red block'], slots: 1, offset: 0, past_norm: pastNorm } });
  const slot = [0.3, -1.2, 0.8, 0.1, -0.4, 1.5, 0.2, -0.7, 1];
  const denoise = (head: ActionHead, features: number[]) => tf.tidy(() => head.denoise(tf.tensor2d([[0.1, -0.2, 0.3, 0.5]]), [0.6], tf.tensor2d([[...features, ...slot]])).arraySync()[0]);

  it('the LayerNorm covers the backbone\'s features alone: scaling them leaves the output; before, it rescaled the readouts', () => {
    const f = [0.5, -1, 2, 0.3, -0.8, 1.1];
    const head = ActionHead.init(named(true), 4);
    // with the flag, cond_norm is as wide as the backbone's features
    expect(head.params.get('action_head.cond_norm.weight')!.shape).toEqual([6]);
    const a = denoise(head, f);
    const b = denoise(head, f.map((v) => v * 3 + 2)); // LayerNorm removes a shift and a scale
    expect(maxDiff(a, b)).toBeLessThan(1e-3); // float32 and the norm's eps
    // the head made before the flag: the same scaling moves the readouts inside the norm, so the output changes
    const old = ActionHead.init(named(false), 4);
    expect(old.params.get('action_head.cond_norm.weight')!.shape).toEqual([15]);
    expect(maxDiff(denoise(old, f), denoise(old, f.map((v) => v * 3 + 2)))).toBeGreaterThan(1);
    head.dispose();
    old.dispose();
  });
});
