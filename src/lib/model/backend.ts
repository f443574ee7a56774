/**
 * TensorFlow.js backend selection at run time: tfjs-node-gpu, then tfjs-node (both optional: they cannot install
 * where libtensorflow cannot be downloaded), then the WebAssembly backend, then the plain JS CPU backend.
 */
import * as tf from '@tensorflow/tfjs-core';
// tfjs-core registers no gradients by itself; the union package's Node build registers them all into the same core.
import '@tensorflow/tfjs';
import { VlakitError } from '../errors.js';

/**
 * x y with the transposes made explicit for 2-D operands: the WebAssembly backend runs a 2-D matMul with a transposed
 * operand about 10x slower than a plain one (a copy by tf.transpose costs far less); batched products keep the flags.
 */
function plainMatMul(x: tf.Tensor, y: tf.Tensor, tx: boolean, ty: boolean): tf.Tensor {
  if (x.rank !== 2 || y.rank !== 2) return tf.matMul(x, y, tx, ty);
  return tf.matMul(tx ? tf.transpose(x) : x, ty ? tf.transpose(y) : y);
}

// tfjs's own matMul gradient multiplies by transposed operands (dy b^T, a^T dy): the same four cases, each product
// through plainMatMul; each input's gradient is still computed only when backprop needs it (a frozen weight's is not).
tf.registerGradient({
  kernelName: tf.BatchMatMul,
  inputsToSave: ['a', 'b'],
  gradFunc: (dy, saved, attrs) => {
    const [a, b] = saved;
    const { transposeA, transposeB } = attrs as unknown as { transposeA: boolean; transposeB: boolean };
    const d = dy as tf.Tensor;
    if (!transposeA && !transposeB) return { a: () => plainMatMul(d, b, false, true), b: () => plainMatMul(a, d, true, false) };
    if (!transposeA) return { a: () => plainMatMul(d, b, false, false), b: () => plainMatMul(d, a, true, false) };
    if (!transposeB) return { a: () => plainMatMul(b, d, false, true), b: () => plainMatMul(a, d, false, false) };
    return { a: () => plainMatMul(b, d, true, true), b: () => plainMatMul(d, a, true, true) };
  },
});

export type BackendName = 'tensorflow-gpu' | 'tensorflow' | 'wasm' | 'cpu';
const ORDER: BackendName[] = ['tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'];

let selected: BackendName | undefined;

async function tryLoad(name: BackendName): Promise<boolean> {
  try {
    if (name === 'tensorflow-gpu') await import('@tensorflow/tfjs-node-gpu' as string);
    else if (name === 'tensorflow') await import('@tensorflow/tfjs-node' as string);
    else if (name === 'wasm') await import('@tensorflow/tfjs-backend-wasm');
    else await import('@tensorflow/tfjs-backend-cpu');
    const registered = name === 'tensorflow-gpu' ? 'tensorflow' : name;
    if (!tf.findBackendFactory(registered)) return false;
    return await tf.setBackend(registered);
  } catch {
    return false;
  }
}

/**
 * Selects the fastest backend that loads (or `force`), once per process; returns its name.
 * @example const backend = await selectBackend(); // 'wasm' on a machine without libtensorflow
 */
export async function selectBackend(force?: string): Promise<BackendName> {
  if (selected && (!force || force === selected)) return selected;
  // tfjs prints advice about tfjs-node when a backend loads in Node unless IS_TEST is set; it is not for our
  // users. IS_TEST also turns on kernel leak checks, so it is set only while the backend loads.
  const env = tf.env() as unknown as { set(k: string, v: boolean): void };
  env.set('IS_TEST', true);
  try {
    return await pick(force);
  } finally {
    env.set('IS_TEST', false);
  }
}

async function pick(force?: string): Promise<BackendName> {
  const order = force ? ORDER.filter((b) => b === force) : ORDER;
  if (force && order.length === 0) throw new VlakitError('E_USAGE', `unknown backend "${force}"; expected one of ${ORDER.join(', ')}`);
  for (const name of order) {
    if (await tryLoad(name)) {
      await tf.ready();
      selected = name;
      return name;
    }
  }
  throw new VlakitError('E_USAGE', force ? `the ${force} backend is not available here` : 'no TensorFlow.js backend could be loaded');
}

export { tf };
