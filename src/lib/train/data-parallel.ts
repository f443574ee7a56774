/**
 * Data-parallel gradients for `train-sft --workers N` (the built-in model, or LoRA on a Hugging Face checkpoint): the TensorFlow.js WebAssembly backend
 * runs on one core in Node (its threaded build needs browser workers), so a 2-core machine trains at half its speed.
 * Each step, the coordinator splits the batch into N parts, computes the first itself and hands the others to worker
 * threads, each holding a replica of the model; the gradients are summed in rank order, so the step is the full
 * batch's step (up to float rounding), and the coordinator's optimizer applies it. The replicas receive the
 * trainable weights at every step, so they never drift.
 *
 * Each part's loss is normalized by the whole batch's token counts (not the part's), so the sum of the parts'
 * gradients is the gradient of the batch's loss.
 */
import { Worker } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import { VlakitError } from '../errors.js';
import type { VlaConfig } from '../model/config.js';
import type { VlaModel } from '../model/model.js';
import { paramName } from '../model/layers.js';
import { type Batch, disposeBatch, makeBatch, type PixelLayout, type Prepared } from './data.js';
import { type LossParts, sftLoss } from './loss.js';
import type { ActionHead, ActionHeadConfig } from '../model/action-head.js';
import type { HfLoraModel, HfLoraOptions } from './hf-model.js';
import type { HeadLossSettings } from './head.js';
import { ReplyQueue } from '../util/reply-queue.js';

/** The whole batch's token counts, by which every part's loss is normalized. */
export interface BatchCounts {
  action: number;
  reasoning: number;
  /** Examples with an action head's chunk. */
  chunks: number;
  /** Grounding targets (train/ground.ts). */
  ground: number;
}

/** Action and reasoning target tokens of `items` (position t-1 predicts token t, as makeBatch weighs them). */
export function batchCounts(items: Prepared[]): BatchCounts {
  let action = 0;
  let reasoning = 0;
  let chunks = 0;
  let ground = 0;
  for (const x of items) {
    if (x.head?.x0) chunks += 1;
    ground += x.ground?.length ?? 0;
    for (let t = 1; t < x.ids.length; t++) {
      action += x.action[t];
      reasoning += x.reasoning[t];
    }
  }
  return { action, reasoning, chunks, ground };
}

/** `items` in `n` contiguous parts, as even as can be (the first parts take the remainder). */
export function splitParts<T>(items: T[], n: number): T[][] {
  const out: T[][] = [];
  let at = 0;
  for (let r = 0; r < n; r++) {
    const size = Math.floor(items.length / n) + (r < items.length % n ? 1 : 0);
    out.push(items.slice(at, at + size));
    at += size;
  }
  return out;
}

/** What a worker needs to build its replica. */
export interface ReplicaInit {
  backend: string;
  /** The built-in model's config (null for a Hugging Face checkpoint, see `hf`). */
  config: VlaConfig | null;
  /**
   * A Hugging Face checkpoint: its directory and LoRA options (the adapters' initial values follow from their seed),
   * and whether the forward applies the adapters; `params` is then empty and the trainable weights come each step.
   */
  hf?: { dir: string; lora: HfLoraOptions; loraEnabled: boolean };
  lora: { r: number; alpha: number; targets: string[] } | null;
  /** Every parameter by name (trainable or not): shape and values. */
  params: { name: string; shape: number[]; data: Float32Array }[];
  /** Names of the trainable parameters, in the order of the coordinator's variables. */
  trainable: string[];
  layout: PixelLayout;
  lambdaR: number;
  /** The grounding loss's weight (train/ground.ts; 0 or absent: none). */
  groundWeight?: number;
  /** An action head (train/head.ts): its config, every weight, and its loss's settings. */
  head?: { config: ActionHeadConfig; params: { name: string; shape: number[]; data: Float32Array }[]; settings: HeadLossSettings };
}

/** One part of a step: the trainable weights now, the part's items, the batch's counts. */
export interface PartRequest {
  weights: Float32Array[];
  items: Prepared[];
  counts: BatchCounts;
  /** The stream position of the part's first item (it seeds an action head's noise). */
  key: number;
}

/** A part's result: the gradients of the trainable parameters (in `trainable` order; null where there is none). */
export interface PartResult {
  grads: (Float32Array | null)[];
  loss: number;
  action: number;
  reasoning: number;
  /** The part's grounding loss term (0 without one). */
  ground: number;
  tokens: number;
}

/** A part's loss (its value and its action and reasoning terms), its text tokens, and the gradients of the variables. */
export interface PartGrads {
  grads: tf.NamedTensorMap;
  loss: number;
  action: number;
  reasoning: number;
  ground: number;
  tokens: number;
}

/**
 * The loss of `items` (one part of a batch) and its gradients with respect to `vars`: with `counts` (the whole batch's
 * token counts), the loss is normalized by them, so the parts' gradients add up to the batch's; without, by the
 * part's own; `lossOf` replaces the language loss (an action head's loss, train/head.ts). The caller disposes the
 * gradients.
 */
export function partGrads(model: VlaModel | ((b: Batch) => tf.Tensor3D), items: Prepared[], layout: PixelLayout, counts: BatchCounts | undefined, vars: tf.Variable[], lambdaR: number, lossOf?: (b: Batch) => LossParts): PartGrads {
  const batch = makeBatch(items, layout);
  try {
    if (counts) {
      batch.actionCount = counts.action;
      batch.reasoningCount = counts.reasoning;
      batch.chunkCount = counts.chunks;
      if (batch.ground) batch.ground.count = counts.ground;
    }
    let parts: [number, number, number] = [0, 0, 0];
    const { value, grads } = tf.variableGrads(() => {
      const l = lossOf ? lossOf(batch) : sftLoss(model, batch, lambdaR);
      parts = [l.action.dataSync()[0], l.reasoning.dataSync()[0], l.ground?.dataSync()[0] ?? 0];
      return l.loss;
    }, vars);
    const loss = value.dataSync()[0];
    value.dispose();
    return { grads, loss, action: parts[0], reasoning: parts[1], ground: parts[2], tokens: batch.tokens };
  } finally {
    disposeBatch(batch);
  }
}

type Reply = { ok: true; result?: PartResult } | { ok: false; message: string };

/** A worker thread holding a replica, answering one request at a time. */
class Replica {
  private readonly replies = new ReplyQueue<PartResult | undefined>();

  constructor(private readonly worker: Worker) {
    worker.on('message', (m: Reply) => {
      if (m.ok) this.replies.resolve(m.result);
      else this.replies.reject(new VlakitError('E_MODEL', `a data-parallel worker failed: ${m.message}`));
    });
    worker.on('error', (e) => this.replies.fail(new VlakitError('E_MODEL', `a data-parallel worker failed: ${e.message}`)));
    worker.on('exit', (code) => this.replies.fail(new VlakitError('E_MODEL', `a data-parallel worker exited (code ${code})`)));
  }

  request(message: unknown, transfer: ArrayBuffer[] = []): Promise<PartResult | undefined> {
    if (this.replies.failure) return Promise.reject(this.replies.failure);
    const answer = this.replies.wait();
    try {
      this.worker.postMessage(message, transfer);
    } catch (err) {
      this.replies.fail(err as Error);
    }
    return answer;
  }

  async close(): Promise<void> {
    this.worker.removeAllListeners('exit');
    await this.worker.terminate();
  }
}

function workerUrl(): URL {
  // dist/lib/train/data-parallel.js -> dp-worker.js beside it (the .ts source under tsx)
  const self = new URL(import.meta.url);
  return new URL(self.pathname.endsWith('.ts') ? './dp-worker.ts' : './dp-worker.js', self);
}

/** N-1 worker replicas of the built-in model (with its action head, when it has one); the coordinator computes part 0. */
export class DataParallel {
  private constructor(
    private readonly replicas: Replica[],
    private readonly vars: tf.Variable[],
  ) {}

  /**
   * Starts `workers - 1` replicas of `model` (its current weights; and `o.head`'s) training `vars`: the built-in
   * model, or a LoRA model on the Hugging Face checkpoint in `o.hfDir` (each replica loads the checkpoint).
   */
  static async start(workers: number, model: VlaModel | HfLoraModel, vars: tf.Variable[], o: { backend: string; layout: PixelLayout; lambdaR: number; groundWeight?: number; head?: { head: ActionHead; settings: HeadLossSettings }; hfDir?: string }): Promise<DataParallel> {
    const values = async (m: Map<string, tf.Variable>): Promise<ReplicaInit['params']> => {
      const out: ReplicaInit['params'] = [];
      for (const [name, v] of m) out.push({ name, shape: v.shape, data: (await v.data()) as Float32Array });
      return out;
    };
    const hf = 'options' in model;
    if (hf && !o.hfDir) throw new VlakitError('E_USAGE', 'data-parallel training of a Hugging Face checkpoint needs its directory');
    const init: ReplicaInit = {
      backend: o.backend,
      config: hf ? null : model.config,
      hf: hf ? { dir: o.hfDir!, lora: model.options, loraEnabled: model.lora.enabled } : undefined,
      lora: hf ? null : model.lora ? { r: model.lora.r, alpha: model.lora.alpha, targets: [...model.lora.targets] } : null,
      params: hf ? [] : await values(model.params),
      trainable: vars.map(paramName),
      layout: o.layout,
      lambdaR: o.lambdaR,
      groundWeight: o.groundWeight,
      head: o.head ? { config: o.head.head.config, params: await values(o.head.head.params), settings: o.head.settings } : undefined,
    };
    const url = workerUrl();
    const replicas: Replica[] = [];
    try {
      for (let r = 1; r < workers; r++) {
        // from the TypeScript sources (tests under vitest, tsx), the worker registers tsx's loader first
        const w = url.pathname.endsWith('.ts') ? new Worker(`import('tsx/esm/api').then((t) => { t.register(); return import(${JSON.stringify(url.href)}); });`, { eval: true }) : new Worker(url);
        const rep = new Replica(w);
        replicas.push(rep);
        await rep.request({ kind: 'init', init });
      }
    } catch (err) {
      await Promise.all(replicas.map((x) => x.close()));
      throw err;
    }
    return new DataParallel(replicas, vars);
  }

  get workers(): number {
    return this.replicas.length + 1;
  }

  /**
   * Sends parts 1.. of a step to the replicas (with the current weights); returns their results when awaited. Call
   * before computing part 0, so that the replicas work while the coordinator does.
   */
  async dispatch(parts: Prepared[][], counts: BatchCounts, key = 0): Promise<() => Promise<PartResult[]>> {
    const weights = await Promise.all(this.vars.map(async (v) => (await v.data()) as Float32Array));
    const keys = parts.map((_, r) => key + parts.slice(0, r).reduce((a, p) => a + p.length, 0)); // each part's first stream position
    const pending = this.replicas.map((rep, i) => rep.request({ kind: 'part', request: { weights, items: parts[i + 1], counts, key: keys[i + 1] } satisfies PartRequest }));
    // a rejection is observed when the caller awaits; keep Node from reporting it as unhandled meanwhile
    for (const p of pending) p.catch(() => undefined);
    return async () => (await Promise.all(pending)) as PartResult[];
  }

  /** Adds the replicas' gradients to `sums` (by variable name), in rank order. */
  addGrads(sums: Map<string, tf.Tensor>, results: PartResult[]): void {
    for (const res of results) {
      res.grads.forEach((g, i) => {
        if (!g) return;
        const v = this.vars[i];
        const t = tf.tensor(g, v.shape);
        const prev = sums.get(v.name);
        if (prev) {
          sums.set(v.name, tf.add(prev, t));
          prev.dispose();
          t.dispose();
        } else sums.set(v.name, t);
      });
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.replicas.map((r) => r.close()));
  }
}
