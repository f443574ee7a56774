/**
 * A data-parallel replica (data-parallel.ts): builds the built-in model (and its action head) from the coordinator's
 * weights, or a LoRA model on a Hugging Face checkpoint from the coordinator's options, then for
 * each part of a step takes the trainable weights, computes the part's loss (normalized by the whole batch's token
 * counts) and returns its gradients.
 */
import { parentPort } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '../model/backend.js';
import { assignValues, newVar, paramName } from '../model/layers.js';
import { VlaModel } from '../model/model.js';
import { ActionHead } from '../model/action-head.js';
import { type PartRequest, type PartResult, type ReplicaInit, partGrads } from './data-parallel.js';
import { headLoss, headLossWith } from './head.js';
import { groundedSftLoss } from './ground.js';
import { hfFeaturesOf } from './hf-head.js';
import { HfLoraModel } from './hf-model.js';
import { hfLogits } from './hf-sft.js';
import { loadHfCheckpoint } from '../model/arch/hf.js';

let model: VlaModel | undefined;
let hfModel: HfLoraModel | undefined;
let head: ActionHead | undefined;
let init: ReplicaInit | undefined;
let vars: tf.Variable[] = [];

/** The action head of the coordinator, when it trains one: its config and weights. */
function setupHead(i: ReplicaInit): void {
  if (!i.head) return;
  head = new ActionHead(i.head.config);
  for (const p of i.head.params) head.params.set(p.name, newVar(tf.tensor(p.data, p.shape), p.name));
}

/** The replica's variables for the coordinator's trainable names, in their order. */
function byNames(names: string[], find: (name: string) => tf.Variable | undefined): tf.Variable[] {
  return names.map((n) => {
    const v = find(n);
    if (!v) throw new Error(`the replica has no parameter ${n}`);
    return v;
  });
}

async function setup(i: ReplicaInit): Promise<void> {
  await selectBackend(i.backend);
  if (i.hf) return setupHf(i, i.hf);
  const m = new VlaModel(i.config!);
  for (const p of i.params) m.params.set(p.name, newVar(tf.tensor(p.data, p.shape), p.name));
  if (i.lora) m.lora = { r: i.lora.r, alpha: i.lora.alpha, targets: new Set(i.lora.targets), enabled: true };
  setupHead(i);
  vars = byNames(i.trainable, (n) => m.params.get(n) ?? head?.params.get(n));
  model = m;
  init = i;
}

/** A LoRA model on a Hugging Face checkpoint (and the head): the coordinator's, from the same options. */
function setupHf(i: ReplicaInit, hf: NonNullable<ReplicaInit['hf']>): void {
  const m = new HfLoraModel(loadHfCheckpoint(hf.dir), hf.lora);
  m.lora.enabled = hf.loraEnabled;
  setupHead(i);
  const byName = new Map([...m.trainable(), ...(head?.vars() ?? [])].map((v) => [paramName(v), v]));
  vars = byNames(i.trainable, (n) => byName.get(n));
  hfModel = m;
  init = i;
}

function part(r: PartRequest): { result: PartResult; transfer: ArrayBuffer[] } {
  if (!(model || hfModel) || !init) throw new Error('the replica was not initialized');
  vars.forEach((v, i) => assignValues(v, r.weights[i]));
  const h = head && init.head ? { head, settings: init.head.settings } : undefined;
  const hm = hfModel;
  const lossOf = hm
    ? h && ((b: Parameters<typeof headLoss>[3]) => headLossWith(hfFeaturesOf(hm, b, r.items), h.head, h.settings, b, r.items, init!.lambdaR, r.key))
    : h
      ? (b: Parameters<typeof headLoss>[3]) => headLoss(model!, h.head, h.settings, b, r.items, init!.lambdaR, r.key)
      : init.groundWeight
        ? (b: Parameters<typeof headLoss>[3]) => groundedSftLoss(model!, b, init!.lambdaR, init!.groundWeight!)
        : undefined;
  const forward = hm ? (b: Parameters<typeof headLoss>[3]) => hfLogits(hm, b, r.items) : model!;
  const { grads, loss, action, reasoning, ground, tokens } = partGrads(forward, r.items, init.layout, r.counts, vars, init.lambdaR, lossOf);
  const out = vars.map((v) => {
    const g = grads[v.name];
    return g ? (g.dataSync() as Float32Array).slice() : null;
  });
  tf.dispose(Object.values(grads));
  return { result: { grads: out, loss, action, reasoning, ground, tokens }, transfer: out.flatMap((g) => (g ? [g.buffer as ArrayBuffer] : [])) };
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
