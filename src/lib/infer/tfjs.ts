/** The tfjs runner: a VlaModel (a checkpoint in memory) behind the VlaRunner interface. */
import * as tf from '@tensorflow/tfjs-core';
import { type ForwardOutput, type KvCache, type VlaModel, disposeCache } from '../model/model.js';
import type { Tokenizer } from '../model/tokenizer.js';
import type { DecodeState, RunnerInfo, StepOutput, VlaRunner } from './runner.js';
import { BuiltinPromptingRunner } from './builtin.js';

/** The last position's logits and attention rows of a forward pass (inside a tidy). */
function lastStep(r: ForwardOutput, attentions: boolean): StepOutput {
  const [, T, V] = r.logits.shape;
  const logits = tf.slice(r.logits, [0, T - 1, 0], [1, 1, V]).dataSync() as Float32Array;
  if (!attentions) return { logits };
  const rows = r.attentions!.map((a) => (tf.slice(a, [0, 0, a.shape[2] - 1, 0], [1, a.shape[1], 1, a.shape[3]]).arraySync() as number[][][][])[0].map((h) => h[0])); // [1, H, 1, Tk] -> [H][Tk]
  return { logits, attentions: rows };
}

export class TfjsRunner extends BuiltinPromptingRunner implements VlaRunner {
  readonly info: RunnerInfo;
  readonly actionCodec?: Record<string, unknown>;
  readonly actionStats?: unknown;
  private readonly owned: boolean;

  /** `owned`: dispose the model with the runner. */
  constructor(
    readonly model: VlaModel,
    readonly tokenizer: Tokenizer,
    extras: { actionCodec?: Record<string, unknown>; actionStats?: unknown; dir?: string; owned?: boolean } = {},
  ) {
    super(model.config, tokenizer);
    this.info = { engine: 'tfjs', device: tf.getBackend(), dir: extras.dir, model: 'vlakit' };
    this.actionCodec = extras.actionCodec;
    this.actionStats = extras.actionStats;
    this.owned = extras.owned ?? false;
  }

  get config() {
    return this.model.config;
  }

  private pixels(p: Float32Array): tf.Tensor5D {
    const c = this.config;
    return tf.tensor5d(p, [1, c.num_cameras, c.vision_config.image_size, c.vision_config.image_size, 3]);
  }

  start(o: { useCache: boolean; attentions: boolean }): DecodeState {
    const model = this.model;
    let px: tf.Tensor5D | undefined;
    let cache: KvCache | undefined;
    let seq: number[] = [];
    const keepCache = (r: ForwardOutput) => {
      const old = cache;
      cache = r.cache;
      for (const t of [...cache!.k, ...cache!.v]) tf.keep(t);
      disposeCache(old);
    };
    return {
      prefill: async (pixels, ids) => {
        px?.dispose();
        px = this.pixels(pixels);
        seq = [...ids];
        return tidyStep(() => {
          const r = model.forward(px, tf.tensor2d([seq], undefined, 'int32'), { useCache: o.useCache, attentions: o.attentions });
          if (o.useCache) keepCache(r);
          return lastStep(r, o.attentions);
        });
      },
      next: async (id) => {
        seq.push(id);
        return tidyStep(() => {
          const r = o.useCache
            ? model.forward(undefined, tf.tensor2d([[id]], undefined, 'int32'), { cache, attentions: o.attentions })
            : model.forward(px, tf.tensor2d([seq], undefined, 'int32'), { attentions: o.attentions });
          if (o.useCache) keepCache(r);
          return lastStep(r, o.attentions);
        });
      },
      dispose: () => {
        px?.dispose();
        disposeCache(cache);
        px = undefined;
        cache = undefined;
      },
    };
  }

  async logits(pixels: Float32Array, ids: number[]): Promise<Float32Array> {
    const px = this.pixels(pixels);
    try {
      const out = tf.tidy(() => model2d(this.model.forward(px, tf.tensor2d([ids], undefined, 'int32')).logits));
      const data = (await out.data()) as Float32Array;
      out.dispose();
      return data;
    } finally {
      px.dispose();
    }
  }

  async attentions(pixels: Float32Array, ids: number[]): Promise<{ layers: Float32Array[]; heads: number; positions: number }> {
    const px = this.pixels(pixels);
    try {
      const atts = tf.tidy(() => this.model.forward(px, tf.tensor2d([ids], undefined, 'int32'), { attentions: true }).attentions!); // per layer [1, H, N, N]
      const layers = await Promise.all(atts.map(async (a) => (await a.data()) as Float32Array));
      const [, heads, positions] = atts[0].shape;
      tf.dispose(atts);
      return { layers, heads, positions };
    } finally {
      px.dispose();
    }
  }

  dispose(): void {
    if (this.owned) this.model.dispose();
  }
}

/** Runs `fn` in a tidy scope; the step it returns holds plain arrays, so nothing leaks. */
function tidyStep(fn: () => StepOutput): StepOutput {
  let step: StepOutput | undefined;
  tf.tidy(() => {
    step = fn();
  });
  return step!;
}

/** [1, T, V] -> [T, V] */
function model2d(logits: tf.Tensor3D): tf.Tensor2D {
  return tf.reshape(logits, [logits.shape[1], logits.shape[2]]) as tf.Tensor2D;
}
