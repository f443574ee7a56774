/**
 * Causal language models loaded from Hugging Face checkpoints (src/lib/model/arch), run on TensorFlow.js with a
 * KV cache, and greedy or sampled generation over token ids. `vlakit generate` is built on it; the ONNX export of
 * the same architectures runs behind the same `CausalLm` interface (infer/ort-causal.ts).
 */
import * as tf from '@tensorflow/tfjs-core';
import '../model/backend.js';
import type { Architecture } from '../model/arch/registry.js';
import type { HfCheckpoint } from '../model/arch/hf.js';
import { TfjsOps, type TfjsCache } from '../model/arch/tfjs-ops.js';
import { VlakitError } from '../errors.js';
import { Rng } from '../util/rng.js';
import { pickToken } from './generate.js';

/** One generation's state: the prompt runs once, then one token per step. */
export interface CausalState {
  /** Runs the prompt ids; returns the logits [V] of its last position. */
  prefill(ids: number[]): Promise<Float32Array>;
  /** Appends one token; returns its logits [V]. */
  next(id: number): Promise<Float32Array>;
  dispose(): void;
}

export interface CausalLm {
  readonly engine: 'tfjs' | 'onnxruntime';
  readonly modelType: string;
  readonly vocabSize: number;
  readonly maxPositions: number;
  readonly eosIds: number[];
  start(o?: { useCache?: boolean }): CausalState;
  /** Logits of every position, [T, V] flattened, without a cache. */
  logits(ids: number[]): Promise<Float32Array>;
  dispose(): Promise<void> | void;
}

/** A checkpoint's model on TensorFlow.js. */
export class TfjsCausalLm implements CausalLm {
  readonly engine = 'tfjs' as const;
  readonly params = new Map<string, tf.Tensor>();
  readonly modelType: string;
  readonly vocabSize: number;
  readonly maxPositions: number;
  readonly eosIds: number[];
  private readonly arch: Architecture<unknown>;
  private readonly config: unknown;

  constructor(ckpt: HfCheckpoint) {
    this.arch = ckpt.arch;
    this.config = ckpt.config;
    for (const [name, t] of ckpt.tensors) this.params.set(name, tf.tensor(t.data, t.shape, 'float32'));
    this.modelType = ckpt.arch.modelType;
    this.vocabSize = ckpt.arch.vocabSize(ckpt.config);
    this.maxPositions = ckpt.arch.maxPositions(ckpt.config);
    this.eosIds = ckpt.arch.eosIds(ckpt.config);
  }

  /** ids -> logits [B, T, V], extending `cache` when one is given (its new tensors are kept out of tidy). */
  private forward(ids: number[], cache?: TfjsCache): { logits: Float32Array; cache?: TfjsCache } {
    if (ids.some((i) => !Number.isInteger(i) || i < 0 || i >= this.vocabSize)) throw new VlakitError('E_USAGE', `token ids must be integers in [0, ${this.vocabSize})`);
    let next: TfjsCache | undefined;
    const logits = tf.tidy(() => {
      const ops = new TfjsOps(this.params, cache);
      const out = this.arch.forward(ops, this.config, tf.tensor2d(ids, [1, ids.length], 'int32')); // [1, T, V]
      next = ops.next;
      if (next) for (const t of [...next.k, ...next.v]) if (t) tf.keep(t);
      return out;
    });
    const data = logits.dataSync() as Float32Array;
    logits.dispose();
    return { logits: data, cache: next };
  }

  async logits(ids: number[]): Promise<Float32Array> {
    return this.forward(ids).logits;
  }

  start(o: { useCache?: boolean } = {}): CausalState {
    const V = this.vocabSize;
    const last = (l: Float32Array) => l.slice(l.length - V);
    if (o.useCache === false) {
      let seq: number[] = [];
      return {
        prefill: async (ids) => last(this.forward((seq = [...ids])).logits),
        next: async (id) => last(this.forward((seq = [...seq, id])).logits),
        dispose: () => {},
      };
    }
    let cache: TfjsCache = { k: [], v: [], length: 0 };
    const step = (ids: number[]): Float32Array => {
      if (cache.length + ids.length > this.maxPositions) throw new VlakitError('E_USAGE', `the sequence would pass the model's ${this.maxPositions} positions`);
      const r = this.forward(ids, cache);
      const old = cache;
      cache = r.cache!;
      for (let i = 0; i < old.k.length; i++) {
        if (old.k[i] !== cache.k[i]) old.k[i]?.dispose();
        if (old.v[i] !== cache.v[i]) old.v[i]?.dispose();
      }
      return last(r.logits);
    };
    return {
      prefill: async (ids) => step(ids),
      next: async (id) => step([id]),
      dispose: () => {
        for (const t of [...cache.k, ...cache.v]) t?.dispose();
        cache = { k: [], v: [], length: 0 };
      },
    };
  }

  dispose(): void {
    for (const t of this.params.values()) t.dispose();
    this.params.clear();
  }
}

export interface IdGenerateOptions {
  maxNewTokens?: number;
  /** 0 (default): greedy. */
  temperature?: number;
  topP?: number;
  seed?: number;
  useCache?: boolean;
  /** Stop at the model's end-of-sequence ids (default true). */
  stopAtEos?: boolean;
}

/**
 * Generates token ids after `prompt`.
 * @example const { ids } = await generateIds(lm, [1], { maxNewTokens: 40 }); // greedy
 */
export async function generateIds(lm: CausalLm, prompt: number[], o: IdGenerateOptions = {}): Promise<{ ids: number[]; stop: 'eos' | 'length' }> {
  if (prompt.length === 0) throw new VlakitError('E_USAGE', 'the prompt has no tokens');
  const max = o.maxNewTokens ?? 64;
  const rng = new Rng(o.seed ?? 0);
  const state = lm.start({ useCache: o.useCache });
  const ids: number[] = [];
  try {
    let logits = await state.prefill(prompt);
    for (let i = 0; i < max; i++) {
      const id = pickToken(logits, o.temperature ?? 0, o.topP ?? 1, rng);
      ids.push(id);
      if ((o.stopAtEos ?? true) && lm.eosIds.includes(id)) return { ids, stop: 'eos' };
      if (i + 1 < max) logits = await state.next(id);
    }
    return { ids, stop: 'length' };
  } finally {
    state.dispose();
  }
}
