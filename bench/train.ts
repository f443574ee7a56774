/**
 * Training throughput: tokens/s of train-sft steps for the tiny and small presets on the selected backend, and
 * model FLOP utilization: the model's FLOPs per second (forward + backward ~ 3x forward: 2 x multiply-adds of every
 * matmul, attention included) divided by the same backend's matmul FLOP/s measured in the same run.
 * Target: >= 40%. Also: the products of a linear layer's forward + backward at a mini step's shapes with transposed
 * operands (tfjs's own matMul gradient) against plain products with explicit transposes, as a ratio in one run.
 * And `train-sft --workers`: steps/s of the mini preset with 1 and 2 data-parallel threads, in one run (on 2 idle
 * cores, 2 threads should approach 2x). Run: `npx tsx bench/train.ts [--quick]`.
 */
import os from 'node:os';
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '../src/lib/model/backend.js';
import { type Preset, preset, patchesPerImage, type VlaConfig } from '../src/lib/model/config.js';
import { VlaModel } from '../src/lib/model/model.js';
import { sftLoss } from '../src/lib/train/loss.js';
import { AdamW } from '../src/lib/train/optim.js';
import type { Prepared } from '../src/lib/train/data.js';
import { DataParallel, batchCounts, partGrads, splitParts } from '../src/lib/train/data-parallel.js';

const quick = process.argv.includes('--quick');
const backend = await selectBackend(process.argv.find((a) => a.startsWith('--backend='))?.slice(10));
const now = () => performance.now() / 1000;

function matmulFlops(n: number): number {
  const a = tf.randomNormal([n, n]);
  const b = tf.randomNormal([n, n]);
  // a block, not an arrow returning the array: tf.tidy walks a returned value for tensors, element by element, which
  // cost more than the product itself and made this reference read 2.1-2.6 GFLOP/s instead of ~19
  const once = () =>
    tf.tidy(() => {
      tf.matMul(a, b).dataSync();
    });
  once();
  let k = 0;
  const t0 = now();
  while (now() - t0 < 1.5) {
    once();
    k++;
  }
  tf.dispose([a, b]);
  return (2 * n ** 3 * k) / (now() - t0);
}

/** Forward FLOPs of one example: every matmul of the vision tower, projector, decoder, attention and LM head. */
function forwardFlops(c: VlaConfig, T: number): number {
  const v = c.vision_config;
  const t = c.text_config;
  const Np = patchesPerImage(c);
  const Ni = Np * c.num_cameras;
  const N = Ni + T;
  const P = v.patch_size;
  let f = 2 * c.num_cameras * Np * (P * P * 3 * v.hidden_size); // patch embedding
  f += 2 * c.num_cameras * v.num_hidden_layers * (Np * (4 * v.hidden_size ** 2 + 2 * v.hidden_size * v.intermediate_size) + 2 * Np * Np * v.hidden_size);
  f += 2 * c.num_cameras * Np * (v.hidden_size * t.hidden_size + t.hidden_size ** 2); // projector
  const hd = t.hidden_size / t.num_attention_heads;
  const qkvo = t.hidden_size * hd * (2 * t.num_attention_heads + 2 * t.num_key_value_heads);
  f += 2 * t.num_hidden_layers * (N * (qkvo + 3 * t.hidden_size * t.intermediate_size) + 2 * N * N * t.hidden_size);
  f += 2 * T * t.hidden_size * t.vocab_size; // the tied output head (the embedding itself is a gather)
  return f;
}

async function run(name: Preset, B: number, T: number, steps: number): Promise<void> {
  const c = preset(name, 512, 1);
  const model = VlaModel.init(c, 0);
  const vars = model.trainable();
  const opt = new AdamW();
  const S = c.vision_config.image_size;
  const batch = {
    pixels: tf.randomUniform([B, 1, S, S, 3], -1, 1) as tf.Tensor5D,
    ids: tf.randomUniform([B, T], 5, 511, 'int32') as tf.Tensor2D,
    action: tf.ones([B, T - 1]) as tf.Tensor2D,
    reasoning: tf.zeros([B, T - 1]) as tf.Tensor2D,
    actionCount: B * (T - 1),
    reasoningCount: 0,
    tokens: B * T,
  };
  const step = () => {
    const { value, grads } = tf.variableGrads(() => sftLoss(model, batch, 1).loss, vars);
    value.dispose();
    opt.apply(vars, new Map(Object.entries(grads)), 1e-4, 1);
    tf.dispose(Object.values(grads));
  };
  step(); // warm-up
  const t0 = now();
  for (let i = 0; i < steps; i++) step();
  const secs = (now() - t0) / steps;
  const flops = (3 * B * forwardFlops(c, T)) / secs;
  const peak = Math.max(matmulFlops(256), matmulFlops(512), matmulFlops(1024)); // the backend's best matmul rate
  console.log(
    `${name.padEnd(5)} (${(model.numParameters() / 1e6).toFixed(2)} M parameters, batch ${B} x ${T} text tokens + ${patchesPerImage(c)} image tokens): ` +
      `${((B * T) / secs).toFixed(0)} text tokens/s, ${(secs * 1000).toFixed(0)} ms/step; model ${(flops / 1e9).toFixed(2)} GFLOP/s vs matmul ${(peak / 1e9).toFixed(2)} GFLOP/s -> MFU ${((flops / peak) * 100).toFixed(0)}%`,
  );
  tf.dispose([batch.pixels, batch.ids, batch.action, batch.reasoning]);
  opt.dispose();
  model.dispose();
}

/**
 * Seconds for the three products of a linear layer's forward + backward (y = x W, dx = dy W^T, dW = x^T dy): with
 * transposed operands, as tfjs's own matMul gradient multiplies, or plain with explicit transposes, as vlakit's
 * gradient (backend.ts) does.
 */
function productStep(M: number, K: number, N: number, plain: boolean, reps: number): number {
  const x = tf.randomNormal([M, K]);
  const w = tf.randomNormal([K, N]);
  const dy = tf.randomNormal([M, N]);
  const once = () =>
    tf.tidy(() => {
      const outs = plain ? [tf.matMul(x, w), tf.matMul(dy, tf.transpose(w)), tf.matMul(tf.transpose(x), dy)] : [tf.matMul(x, w), tf.matMul(dy, w, false, true), tf.matMul(x, dy, true, false)];
      for (const o of outs) o.dataSync();
    });
  once();
  const t0 = now();
  for (let i = 0; i < reps; i++) once();
  const secs = (now() - t0) / reps;
  tf.dispose([x, w, dy]);
  return secs;
}

function products(reps: number): void {
  // the shapes of a mini step (batch 8 x 126 tokens): an MLP projection, an attention projection, the tied head
  for (const [M, K, N] of [[1008, 48, 128], [1008, 48, 48], [880, 48, 600]] as const) {
    const flags = productStep(M, K, N, false, reps);
    const plain = productStep(M, K, N, true, reps);
    console.log(`products of [${M}, ${K}] x [${K}, ${N}], forward + backward: transposed operands ${(flags * 1e3).toFixed(2)} ms, plain ${(plain * 1e3).toFixed(2)} ms -> ${(flags / plain).toFixed(1)}x`);
  }
}

/** Steps/s of mini training steps (batch B of T tokens) with `workers` data-parallel threads. */
async function dataParallel(workers: number, B: number, T: number, steps: number): Promise<number> {
  const c = preset('mini', 512, 1);
  const model = VlaModel.init(c, 0);
  const vars = model.trainable();
  const opt = new AdamW();
  const S = c.vision_config.image_size;
  const layout = { cameras: 1, size: S };
  const items: Prepared[] = Array.from({ length: B }, (_, i) => ({
    id: `x${i}`,
    ids: Array.from({ length: T }, (_, t) => 5 + ((i * 31 + t * 7) % 500)),
    action: Array.from({ length: T }, (_, t) => (t > T / 2 ? 1 : 0)),
    reasoning: new Array<number>(T).fill(0),
    pixels: Float32Array.from({ length: S * S * 3 }, (_, k) => Math.sin(k + i)),
    actionText: '',
    split: 'train',
  }));
  const dp = workers > 1 ? await DataParallel.start(workers, model, vars, { backend, layout, lambdaR: 1 }) : undefined;
  const step = async () => {
    const parts = dp ? splitParts(items, dp.workers) : [items];
    const counts = batchCounts(items);
    const collect = dp ? await dp.dispatch(parts, counts) : undefined;
    const sums = new Map(Object.entries(partGrads(model, parts[0], layout, counts, vars, 1).grads));
    if (collect) dp!.addGrads(sums, await collect());
    opt.apply(vars, sums, 1e-4, 1);
    tf.dispose([...sums.values()]);
  };
  await step();
  const t0 = now();
  for (let i = 0; i < steps; i++) await step();
  const rate = steps / (now() - t0);
  await dp?.close();
  opt.dispose();
  model.dispose();
  return rate;
}

console.log(`vlakit train bench on ${os.cpus()[0]?.model ?? 'cpu'} x${os.cpus().length}, node ${process.version}, backend ${backend}${quick ? ' (quick)' : ''}`);
products(quick ? 5 : 20);
await run('tiny', 8, 64, quick ? 3 : 10);
await run('mini', 8, 110, quick ? 3 : 10);
await run('small', 4, 64, quick ? 1 : 3);
{
  const one = await dataParallel(1, 8, 110, quick ? 5 : 30);
  const two = await dataParallel(2, 8, 110, quick ? 5 : 30);
  console.log(`train-sft --workers (mini, batch 8 x 110 tokens): 1 thread ${one.toFixed(2)} steps/s, 2 threads ${two.toFixed(2)} steps/s -> ${(two / one).toFixed(2)}x`);
}
