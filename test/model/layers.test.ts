import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../../src/lib/model/backend.js';
import { applyRope, assignValues, attention, causalMask, embed, gelu, layerNorm, linear, matMul2d, newVar, repeatKv, rmsNorm, ropeTables, type Params } from '../../src/lib/model/layers.js';

beforeAll(async () => {
  await selectBackend('cpu'); // plain float32 JS: the reference for gradient checks
});

/** Compares tf.grad of sum(f(x) * r) with central finite differences; prints the first mismatches. */
function gradCheck(f: (x: tf.Tensor) => tf.Tensor, shape: number[], tol = 2e-2): void {
  const x0 = tf.randomNormal(shape, 0, 1, 'float32', 3);
  const r = tf.tidy(() => tf.randomNormal(f(x0).shape, 0, 1, 'float32', 4));
  const loss = (x: tf.Tensor) => tf.sum(tf.mul(f(x), r)) as tf.Scalar;
  const analytic = tf.grad(loss)(x0).dataSync();
  const xs = x0.dataSync();
  const eps = 1e-2;
  const bad: string[] = [];
  for (let i = 0; i < xs.length; i++) {
    const plus = Float32Array.from(xs);
    const minus = Float32Array.from(xs);
    plus[i] += eps;
    minus[i] -= eps;
    const lp = tf.tidy(() => loss(tf.tensor(plus, shape)).dataSync()[0]);
    const lm = tf.tidy(() => loss(tf.tensor(minus, shape)).dataSync()[0]);
    const numeric = (lp - lm) / (2 * eps);
    if (Math.abs(numeric - analytic[i]) > tol * Math.max(1, Math.abs(numeric))) bad.push(`[${i}] analytic ${analytic[i].toFixed(5)} numeric ${numeric.toFixed(5)}`);
  }
  tf.dispose([x0, r]);
  expect(bad.slice(0, 5), `${bad.length} mismatches`).toEqual([]);
}

describe('assignValues', () => {
  it('sets a variable step after step without keeping the old values (a data-parallel worker does it every step)', () => {
    const v = newVar(tf.zeros([3, 4]));
    const before = tf.memory();
    for (let step = 1; step <= 5; step++) assignValues(v, Float32Array.from({ length: 12 }, (_, i) => step * 100 + i));
    expect(tf.memory().numTensors).toBe(before.numTensors);
    expect(tf.memory().numBytes).toBe(before.numBytes);
    expect(Array.from(v.dataSync())).toEqual(Array.from({ length: 12 }, (_, i) => 500 + i));
    expect(v.shape).toEqual([3, 4]);
    v.dispose();
  });
});

describe('layers against finite differences', () => {
  it('RMSNorm, LayerNorm and GELU', () => {
    const w = tf.randomNormal([6], 1, 0.1, 'float32', 1);
    const b = tf.randomNormal([6], 0, 0.1, 'float32', 2);
    gradCheck((x) => rmsNorm(x, w, 1e-6), [3, 6]);
    gradCheck((x) => layerNorm(x, w, b, 1e-6), [3, 6]);
    gradCheck((x) => gelu(x), [4, 5]);
    tf.dispose([w, b]);
  });

  it('rotary embeddings and causal grouped-query attention', () => {
    const { cos, sin } = ropeTables(5, 4, 10000);
    gradCheck((x) => applyRope(x as tf.Tensor4D, cos, sin), [1, 2, 5, 4]);
    const mask = causalMask(5, 5);
    const k = tf.randomNormal([1, 1, 5, 4], 0, 1, 'float32', 7) as tf.Tensor4D;
    const v = tf.randomNormal([1, 1, 5, 4], 0, 1, 'float32', 8) as tf.Tensor4D;
    gradCheck((q) => attention(q as tf.Tensor4D, repeatKv(k, 2), repeatKv(v, 2), mask).out, [1, 2, 5, 4]);
    gradCheck((kk) => attention(tf.ones([1, 2, 5, 4]) as tf.Tensor4D, repeatKv(kk as tf.Tensor4D, 2), repeatKv(v, 2), mask).out, [1, 1, 5, 4]);
    tf.dispose([cos, sin, mask, k, v]);
  });

  it('matMul2d (plain products with explicit transposes, forward and backward): values and both gradients', () => {
    const a = tf.randomNormal([3, 4], 0, 1, 'float32', 11) as tf.Tensor2D;
    const b = tf.randomNormal([4, 5], 0, 1, 'float32', 12) as tf.Tensor2D;
    const bt = tf.transpose(b) as tf.Tensor2D; // [5, 4]
    const ref = tf.matMul(a, b).arraySync() as number[][];
    expect(matMul2d(a, b).arraySync()).toEqual(ref);
    const viaT = matMul2d(a, bt, true).arraySync();
    viaT.forEach((row, i) => row.forEach((v, j) => expect(v).toBeCloseTo(ref[i]![j]!, 5)));
    gradCheck((x) => matMul2d(x as tf.Tensor2D, b), [3, 4]);
    gradCheck((x) => matMul2d(a, x as tf.Tensor2D), [4, 5]);
    gradCheck((x) => matMul2d(x as tf.Tensor2D, bt, true), [3, 4]);
    gradCheck((x) => matMul2d(a, x as tf.Tensor2D, true), [5, 4]);
    tf.dispose([a, b, bt]);
  });

  it('a linear layer with a LoRA adapter, in its input and in the adapter', () => {
    const p: Params = new Map([
      ['l.q_proj.weight', newVar(tf.randomNormal([4, 3], 0, 0.5, 'float32', 1))],
      ['l.q_proj.bias', newVar(tf.randomNormal([3], 0, 0.5, 'float32', 2))],
      ['l.q_proj.lora_A.weight', newVar(tf.randomNormal([4, 2], 0, 0.5, 'float32', 3))],
      ['l.q_proj.lora_B.weight', newVar(tf.randomNormal([2, 3], 0, 0.5, 'float32', 4))],
    ]);
    const lora = { r: 2, alpha: 4, targets: new Set(['q_proj']), enabled: true };
    gradCheck((x) => linear(p, 'l.q_proj', x, lora), [2, 4]);
    const x = tf.randomNormal([2, 4], 0, 1, 'float32', 5);
    gradCheck((a) => {
      const q = new Map(p);
      q.set('l.q_proj.lora_A.weight', a as tf.Variable);
      return linear(q, 'l.q_proj', x, lora);
    }, [4, 2]);
    // disabled adapters: exactly the base layer
    const off = tf.tidy(() => linear(p, 'l.q_proj', x, { ...lora, enabled: false }).arraySync());
    const base = tf.tidy(() => tf.add(tf.matMul(x, p.get('l.q_proj.weight')!), p.get('l.q_proj.bias')!).arraySync());
    expect(off).toEqual(base);
    for (const v of p.values()) v.dispose();
    x.dispose();
  });

  it('repeatKv copies each key/value head n times, in order', () => {
    const x = tf.tensor4d([1, 2, 3, 4], [1, 2, 2, 1]); // heads [1,2] and [3,4]
    expect(repeatKv(x, 2).arraySync()).toEqual([[[[1], [2]], [[1], [2]], [[3], [4]], [[3], [4]]]]);
  });
});

describe('embedding lookup', () => {
  it('gathers rows, and its gradient adds up repeated ids (checked against finite differences)', () => {
    const ids = tf.tensor2d([[1, 3, 1]], undefined, 'int32');
    gradCheck((table) => embed(table as tf.Tensor2D, ids), [5, 3]);
    const table = tf.tensor2d([[0, 0], [1, 2], [3, 4]]);
    expect(embed(table, tf.tensor2d([[2, 1]], undefined, 'int32')).arraySync()).toEqual([[[3, 4], [1, 2]]]);
  });
});
