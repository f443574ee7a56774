/**
 * A data-parallel replica (data-parallel.ts): builds the built-in model (and its action head) from the coordinator's weights, then for
 * each part of a step takes the trainable weights, computes the part's loss (normalized by the whole batch's token
 * counts) and returns its gradients.
 */
import { parentPort } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '../model/backend.js';
import { assignValues, newVar } from '../model/layers.js';
import { VlaModel } from '../model/model.js';
import { ActionHead } from '../model/action-head.js';
import { type PartRequest, type PartResult, type ReplicaInit, partGrads } from './data-parallel.js';
import { headLoss } from './head.js';

let model: VlaModel | undefined;
let head: ActionHead | undefined;
let init: ReplicaInit | undefined;
let vars: tf.Variable[] = [];

async function setup(i: ReplicaInit): Promise<void> {
  await selectBackend(i.backend);
  const m = new VlaModel(i.config);
  for (const p of i.params) m.params.set(p.name, newVar(tf.tensor(p.data, p.shape), p.name));
  if (i.lora) m.lora = { r: i.lora.r, alpha: i.lora.alpha, targets: new Set(i.lora.targets), enabled: true };
  if (i.head) {
    head = new ActionHead(i.head.config);
    for (const p of i.head.params) head.params.set(p.name, newVar(tf.tensor(p.data, p.shape), p.name));
  }
  vars = i.trainable.map((n) => {
    const v = m.params.get(n) ?? head?.params.get(n);
    if (!v) throw new Error(`the replica has no parameter ${n}`);
    return v;
  });
  model = m;
  init = i;
}

function part(r: PartRequest): { result: PartResult; transfer: ArrayBuffer[] } {
  if (!model || !init) throw new Error('the replica was not initialized');
  vars.forEach((v, i) => assignValues(v, r.weights[i]));
  const h = head && init.head ? { head, settings: init.head.settings } : undefined;
  const lossOf = h && ((b: Parameters<typeof headLoss>[3]) => headLoss(model!, h.head, h.settings, b, r.items, init!.lambdaR, r.key));
  const { grads, loss, action, reasoning, tokens } = partGrads(model, r.items, init.layout, r.counts, vars, init.lambdaR, lossOf);
  const out = vars.map((v) => {
    const g = grads[v.name];
    return g ? (g.dataSync() as Float32Array).slice() : null;
  });
  tf.dispose(Object.values(grads));
  return { result: { grads: out, loss, action, reasoning, tokens }, transfer: out.flatMap((g) => (g ? [g.buffer as ArrayBuffer] : [])) };
}

parentPort?.on('message', async (msg: { kind: 'init'; init: ReplicaInit } | { kind: 'part'; request: PartRequest }) => {
  try {
    if (msg.kind === 'init') {
      await setup(msg.init);
      parentPort!.postMessage({ ok: true });
    } else {
      const { result, transfer } = part(msg.request);
      parentPort!.postMessage({ ok: true, result }, transfer);
    }
  } catch (err) {
    parentPort!.postMessage({ ok: false, message: err instanceof Error ? err.message : String(err) });
  }
});
