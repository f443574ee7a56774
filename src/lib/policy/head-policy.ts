/**
 * A policy with a continuous action head: each control cycle the backbone runs the prompt (with the camera images)
 * once, then the sampler (DDIM or Euler) denoises an action chunk with the head; the chunk is executed like a text
 * policy's (the same ChunkPolicy: --execute, the chunk cut at --max-chunk, the env's safety filter). The backbone and
 * the head run on TensorFlow.js (a checkpoint) or onnxruntime (an export: head_prefill.onnx and head_denoise.onnx,
 * the loop here).
 */
import { existsSync, readFileSync } from 'node:fs';
import { z } from 'zod';
import { readJsonFile } from '../io/json-file.js';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { hfFeatureDim, hfHeadFeatures } from '../model/action-head-hf.js';
import type { HfCheckpoint } from '../model/arch/hf.js';
import { TfjsWeights } from '../model/arch/tfjs-ops.js';
import type { ActionCodec } from '../actions/codecs.js';
import { quantile } from '../actions/stats.js';
import { isWaypointLayout, waypointDeltas, waypointOrigin } from '../actions/waypoints.js';
import type { ActContext } from '../env/rollout.js';
import type { Env } from '../env/protocol.js';
import { actionProblem } from '../env/safety.js';
import { VlakitError } from '../errors.js';
import { camerasOf } from '../io/cameras.js';
import type { ImageJson } from '../io/json.js';
import type { RunnerInput, VlaRunner } from '../infer/runner.js';
import { type ActionHeadConfig, ActionHead, backboneDim, chunkNoise, denormalizeChunk, loadActionHead, normalizeState, sampleChunk, withNamedKeypoints } from '../model/action-head.js';
import { vlaHeadFeatures } from '../model/action-head-vla.js';
import type { VlaModel } from '../model/model.js';
import { subSeed } from '../util/rng.js';
import { ChunkPolicy, type Cycle, type DirectPrompt, directPrompt, promptImages, promptStateText } from './model-policy.js';
import type { Hierarchy } from './hierarchy.js';

/** The backbone features and the denoiser of a model with an action head, on some engine. */
export interface HeadEngine {
  readonly config: ActionHeadConfig;
  /** The backbone's features [C] for a prompt's inputs (runner.prepare's; `<bos> prompt <sep>`). */
  features(input: RunnerInput): Promise<Float32Array>;
  /** One denoiser call: x [H*D], model time t, features [C], state [S] -> [H*D]. */
  denoise(x: Float32Array, t: number, cond: Float32Array, state?: Float32Array): Promise<Float32Array>;
  dispose(): Promise<void> | void;
}

/** A tensor's values, the tensor disposed. */
async function readOut(t: tf.Tensor): Promise<Float32Array> {
  const data = (await t.data()) as Float32Array;
  t.dispose();
  return data;
}

/** One call of a head's denoiser on TensorFlow.js: x [H*D], model time t, features [C], state [S] -> [H*D]. */
function denoiseOnce(head: ActionHead, x: Float32Array, t: number, cond: Float32Array, state?: Float32Array): Promise<Float32Array> {
  return readOut(tf.tidy(() => head.denoise(tf.tensor2d(x, [1, x.length]), [t], tf.tensor2d(cond, [1, cond.length]), state ? tf.tensor2d(state, [1, state.length]) : undefined)));
}

/** A checkpoint's backbone (the runner's VlaModel) and head on TensorFlow.js. */
export class TfjsHeadEngine implements HeadEngine {
  readonly config: ActionHeadConfig;
  constructor(
    private readonly model: VlaModel,
    readonly head: ActionHead,
  ) {
    this.config = head.config;
  }

  static open(model: VlaModel, dir: string): TfjsHeadEngine {
    return new TfjsHeadEngine(model, loadActionHead(dir));
  }

  async features(input: RunnerInput): Promise<Float32Array> {
    const c = this.model.config;
    const S = c.vision_config.image_size;
    const out = tf.tidy(() => {
      const px = tf.tensor5d(input.pixels, [1, c.num_cameras, S, S, 3]);
      const ids = tf.tensor2d([input.ids], undefined, 'int32');
      return vlaHeadFeatures(this.model, px, ids, [input.ids.length - 1], { logits: false, keypoints: this.config.keypoint_features }).cond; // [1, C]
    });
    return readOut(out);
  }

  denoise(x: Float32Array, t: number, cond: Float32Array, state?: Float32Array): Promise<Float32Array> {
    return denoiseOnce(this.head, x, t, cond, state);
  }

  dispose(): void {
    this.head.dispose();
  }
}

/**
 * A Hugging Face backbone trained with a head (train-sft --init <HF checkpoint> --action-head): the base checkpoint
 * with the run's adapter folded in, its final hidden states as the head's features (model/action-head-hf.ts).
 */
export class HfHeadEngine implements HeadEngine {
  readonly config: ActionHeadConfig;
  private constructor(
    private readonly ckpt: HfCheckpoint,
    private readonly params: TfjsWeights,
    readonly head: ActionHead,
  ) {
    this.config = head.config;
  }

  /** The engine of a head run `dir` on the base checkpoint `base` (its adapter folded in when it has one). */
  static async open(base: string, dir: string): Promise<HfHeadEngine> {
    const { existsSync } = await import('node:fs');
    const path = await import('node:path');
    const { loadHfCheckpoint } = await import('../model/arch/hf.js');
    const ckpt = loadHfCheckpoint(base);
    if (existsSync(path.join(dir, 'adapter_config.json'))) {
      const { applyPeftAdapter } = await import('../model/arch/adapter.js');
      applyPeftAdapter(ckpt, dir);
    }
    const head = loadActionHead(dir);
    const want = hfFeatureDim(ckpt.arch, ckpt.config);
    if (backboneDim(head.config) !== want) throw new VlakitError('E_MODEL', `the action head takes features of ${head.config.cond_dim} numbers; ${base} gives ${want}`, { file: dir });
    return new HfHeadEngine(ckpt, new TfjsWeights(ckpt.tensors), head);
  }

  async features(input: RunnerInput): Promise<Float32Array> {
    const v = this.ckpt.arch.vision?.(this.ckpt.config);
    const out = tf.tidy(() => {
      const ids = tf.tensor2d([input.ids], undefined, 'int32');
      const px = v && input.pixels.length ? tf.tensor4d(input.pixels, [input.pixels.length / (v.channels * v.imageSize * v.imageSize), v.channels, v.imageSize, v.imageSize]) : undefined;
      return hfHeadFeatures({ arch: this.ckpt.arch, config: this.ckpt.config, params: this.params }, ids, px, [input.ids.length - 1], { logits: false }).cond; // [1, C]
    });
    return readOut(out);
  }

  denoise(x: Float32Array, t: number, cond: Float32Array, state?: Float32Array): Promise<Float32Array> {
    return denoiseOnce(this.head, x, t, cond, state);
  }

  dispose(): void {
    this.head.dispose();
    this.params.dispose();
  }
}

/** The base checkpoint of a head run on a Hugging Face backbone (its vlakit.json), or undefined for other models. */
export function hfHeadBase(dir: string): string | undefined {
  const file = path.join(dir, 'vlakit.json');
  if (!existsSync(file) || existsSync(path.join(dir, 'config.json'))) return undefined;
  return readJsonFile(file, z.looseObject({ base_model: z.string() }), { what: 'vlakit adapter metadata', code: 'E_MODEL' }).base_model;
}

export interface HeadPolicyOptions {
  /** Which training prompt the model learned (as ModelPolicy's direct mode). */
  prompt?: DirectPrompt;
  codec: ActionCodec;
  /** Execute at most this many actions of each chunk before the next cycle (default: the whole chunk). */
  execute?: number;
  /** Chunks longer than this are cut. */
  maxChunk?: number;
  /** Denoising steps (default: the head's inference_steps). */
  steps?: number;
  /** The scale of the sampler's starting noise (default 1; 0: from the prior's mean, deterministic). */
  noiseScale?: number;
  /** Chunks sampled per cycle from independent noise, executed as their element-wise median (default 1). */
  samples?: number;
  /**
   * The VLM2VLA hierarchy (rollout --mode hierarchical): each cycle's task is the current subtask of the plan instead
   * of the instruction (a head trained on relabel --subtask-prompts), the verifier moving it on after each chunk.
   */
  hierarchy?: Hierarchy;
}

/**
 * Samples one action chunk for a prompt and its images: the backbone's features, then the sampler from noise drawn
 * from `seed`. With `samples` K > 1 the sampler runs K times on the same features from independent noise (the first
 * from `seed`, the others from its sub-seeds) and the chunk is their element-wise median: a position the samples
 * scatter around is steadied, and a bimodal dimension such as the gripper takes the majority's side (the mean would
 * fall between open and closed). Returns the chunk in action units [H][D] and the time spent.
 * @example const { chunk } = await sampleHeadChunk(runner, engine, prompt, [image], { seed: 0, samples: 5 })
 */
export async function sampleHeadChunk(runner: VlaRunner, engine: HeadEngine, prompt: string, images: (ImageJson | Uint8Array)[], o: { seed: number; state?: unknown; steps?: number; noiseScale?: number; samples?: number }): Promise<{ chunk: number[][]; ms: number; steps: number }> {
  const input = await runner.prepare(prompt, images, 'camera image');
  const t0 = performance.now();
  const c = engine.config;
  const cond = withNamedKeypoints(c, await engine.features(input), prompt); // [cond_dim]: the prompt's named objects' readouts appended
  const state = normalizeState(c, o.state);
  const steps = o.steps ?? c.inference_steps;
  const scale = o.noiseScale ?? 1;
  const K = o.samples ?? 1;
  const xs: Float64Array[] = []; // K x [H*D]
  for (let k = 0; k < K; k++) {
    const noise = chunkNoise(c, 1, k === 0 ? o.seed : subSeed(o.seed, k)); // [1, H*D] from N(0, 1)
    if (scale !== 1) noise.forEach((v, i) => (noise[i] = v * scale));
    xs.push(await sampleChunk(c, noise, (xt, t) => engine.denoise(xt, t, cond, state), steps));
  }
  return { chunk: denormalizeChunk(c, K === 1 ? xs[0] : elementwiseMedian(xs)), ms: performance.now() - t0, steps };
}

/** The element-wise median of equally long vectors (the mean of the middle two for an even count). */
function elementwiseMedian(xs: ArrayLike<number>[]): Float64Array {
  return Float64Array.from({ length: xs[0].length }, (_, j) => quantile(xs.map((x) => x[j]).sort((a, b) => a - b), 0.5));
}

export class HeadPolicy extends ChunkPolicy {
  readonly name: string;
  private seed = 0;
  private cycles = 0;
  private calls = 0;
  /** Seeds of the hierarchy's planner and verifier, apart from the sampler's. */
  private readonly nextSeed = () => subSeed(this.seed ^ 0x5eed, ++this.calls);

  constructor(
    readonly runner: VlaRunner,
    readonly engine: HeadEngine,
    readonly o: HeadPolicyOptions,
  ) {
    super();
    this.name = `model:head-${engine.config.objective}${o.hierarchy ? '-hierarchical' : ''}`;
    this.execute = o.execute;
  }

  protected override gripperOf(action: number[]): number {
    const g = this.o.codec.layout?.gripper;
    return g === null ? this.gripper : (action[g ?? action.length - 1] ?? this.gripper);
  }

  reset(ctx: { env?: Env; instruction: string; seed: number }): void {
    super.reset(ctx);
    this.seed = ctx.seed;
    this.cycles = 0;
    this.calls = 0;
    this.o.hierarchy?.reset();
  }

  async close(): Promise<void> {
    await this.o.hierarchy?.close();
    await this.engine.dispose();
  }

  async cycle(obs: Record<string, unknown>, ctx: ActContext): Promise<Cycle | null> {
    const images = camerasOf(obs);
    if (!images.length) throw new Error('the observation holds no camera image');
    const style = this.o.prompt ?? 'refinevla';
    const stateText = promptStateText(this.o.codec, obs);
    const info: Record<string, unknown> = { cycle: this.cycles };
    // the hierarchy: the current subtask is the task (null: the plan is done)
    let task = ctx.instruction;
    let planMs = 0;
    if (this.o.hierarchy) {
      const h = await this.o.hierarchy.current(images[0], ctx, info, this.nextSeed);
      if (h.subtask === null) return null;
      task = h.subtask;
      planMs = h.ms;
      this.o.hierarchy.chunkStarted(images[0], ctx.info);
    }
    const prompt = directPrompt(style, task, this.o.codec, stateText);
    const L = this.o.codec.layout;
    const origin = isWaypointLayout(L) ? waypointOrigin(obs.state) : undefined;
    const r = await sampleHeadChunk(this.runner, this.engine, prompt, promptImages(style, images), { seed: subSeed(this.seed, ++this.cycles), state: obs.state, steps: this.o.steps, noiseScale: this.o.noiseScale, samples: this.o.samples });
    const chunk = r.chunk.slice(0, this.o.maxChunk ?? 64);
    info.head = { objective: this.engine.config.objective, steps: r.steps };
    info.chunk = chunk;
    const problem = chunk.map((a) => actionProblem(a, L)).find((p) => p !== undefined);
    if (problem) {
      // nothing unchecked reaches the env: a safe no-op instead (zero motion, the gripper held)
      info.noop = { reason: problem };
      const dims = L?.dims ?? chunk[0]?.length ?? 4;
      const g = L ? L.gripper : dims - 1;
      return { actions: [Array.from({ length: dims }, (_, k) => (k === g ? this.gripper : 0))], info, modelMs: r.ms + planMs };
    }
    // waypoint targets reach the env as steps of at most max_step toward them, as a text policy's do
    if (origin) return { actions: waypointDeltas(chunk, L!, origin), info, modelMs: r.ms + planMs };
    return { actions: chunk, info, modelMs: r.ms + planMs };
  }
}

/**
 * The head engine of an opened model directory: a checkpoint's (TensorFlow.js, over the runner's model) or an
 * export's (onnxruntime).
 */
export async function openHeadEngine(runner: VlaRunner, dir: string): Promise<HeadEngine> {
  const { TfjsRunner } = await import('../infer/tfjs.js');
  if (runner instanceof TfjsRunner) return TfjsHeadEngine.open(runner.model, dir);
  if (runner.info.engine === 'onnxruntime' && runner.info.model === 'vlakit') {
    const { OrtHeadEngine } = await import('../export/head.js');
    return OrtHeadEngine.open(dir, runner);
  }
  const base = hfHeadBase(dir);
  if (base) return HfHeadEngine.open(base, dir); // a head run on a Hugging Face checkpoint (the runner: base + its adapter)
  if (runner.info.engine === 'onnxruntime') {
    // a Hugging Face export with a head (export --adapter <head run>)
    const { HfRunner } = await import('../infer/hf-runner.js');
    const { OrtHeadEngine } = await import('../export/head.js');
    if (runner instanceof HfRunner) return OrtHeadEngine.openHf(dir, runner.lm.vision);
  }
  throw new VlakitError('E_USAGE', `${dir} has an action head, which runs on vlakit's built-in model, its export, or an export of a Hugging Face head run; a Hugging Face head run itself opens through generate --model <run>`, { file: dir });
}

/**
 * generate on a model with an action head: the prompt (the built-in model's `<bos> prompt <sep>`) and image files
 * -> one sampled chunk in action units.
 * @example const r = await generateHeadChunk('runs/head', { prompt: 'Task: pick up the red block', images: ['frame.png'] })
 */
export async function generateHeadChunk(dir: string, o: { prompt: string; images?: string[]; seed?: number; steps?: number; state?: number[]; backend?: string; device?: 'cpu' | 'cuda' }): Promise<{ chunk: number[][]; objective: string; steps: number; ms: number }> {
  const { openModel } = await import('../infer/index.js');
  // a head on a Hugging Face backbone: the base checkpoint with the run's adapter, the head from the run
  const base = hfHeadBase(dir);
  const runner = await openModel(base ?? dir, { backend: o.backend, device: o.device, adapter: base && existsSync(path.join(dir, 'adapter_config.json')) ? dir : undefined });
  try {
    const engine = base ? await HfHeadEngine.open(base, dir) : await openHeadEngine(runner, dir);
    try {
      const images = (o.images ?? []).map((f) => new Uint8Array(readFileSync(f)));
      const r = await sampleHeadChunk(runner, engine, o.prompt, images, { seed: o.seed ?? 0, steps: o.steps, state: o.state });
      return { chunk: r.chunk, objective: engine.config.objective, steps: r.steps, ms: r.ms };
    } finally {
      await engine.dispose();
    }
  } finally {
    await runner.dispose();
  }
}
