/**
 * train-sft with a continuous action head (`--action-head diffusion|flow`) on the built-in VLA: each batch runs the
 * backbone once over `<bos> prompt <sep> target <eos>`; the head's features come from the prompt's positions
 * (model/action-head-vla.ts) and its loss from the example's action chunk (the target's action span decoded by the
 * codec, normalized by the dataset's statistics); the loss is head + lang_weight x the usual language loss. The
 * head always trains; the backbone trains as the other flags say (full, frozen layers, LoRA) or not at all
 * (`freezeBackbone`). Checkpoints are the usual files plus action_head.json and action_head.safetensors.
 */
import * as tf from '@tensorflow/tfjs-core';
import { type ActionCodec, codecFromSpec } from '../actions/codecs.js';
import type { TrainingExample } from '../actions/examples.js';
import { withoutActionsMarker } from '../actions/prompts.js';
import { inferLayout } from '../actions/layout.js';
import { ActionStatsSchema, StatsAccumulator } from '../actions/stats.js';
import { VlakitError } from '../errors.js';
import { ActionHead, type ActionHeadConfig, type HeadObjective, backboneDim, chunkNoise, chunkSize, denormalizeChunk, hasActionHead, headConfig, loadActionHead, namedKeypoints, normalizeChunk, normalizeState, withNamedKeypointsTf, writeActionHead } from '../model/action-head.js';
import { vlaFeatureDim, vlaHeadFeatures } from '../model/action-head-vla.js';
import type { VlaTap } from '../model/arch/vlakit-vla.js';
import { KEYPOINT_DIM, tokensPerImage } from '../model/config.js';
import type { VlaModel } from '../model/model.js';
import { SEP, type Tokenizer } from '../model/tokenizer.js';
import { Rng } from '../util/rng.js';
import { type Batch, type HeadTarget, type PixelLayout, type Prepared, disposeBatch, makeBatch, prepare, promptText, targetText } from './data.js';
import type { Trainee } from './hf-sft.js';
import { type LossParts, sftLoss } from './loss.js';
import { type GroundEvalResult, evaluateGround, groundCellsOf, withGround } from './ground.js';
import type { AdamW } from './optim.js';

export interface HeadOptions {
  objective: HeadObjective;
  /** Weight of the language loss (action + lambda_r x reasoning tokens) next to the head's loss (default 1). */
  langWeight?: number;
  /** Diffusion: predict the noise (default) or the clean chunk. */
  prediction?: 'epsilon' | 'sample';
  /** Denoising steps at inference, stored in the head's config (default 10). */
  inferenceSteps?: number;
  hidden?: number;
  layers?: number;
  /** Actions per chunk (default: the longest chunk of the training data). */
  horizon?: number;
  /** Train the head alone (the backbone's weights stay as they are). */
  freezeBackbone?: boolean;
  /** The built-in backbone's keypoint readouts among the head's features (keypoint_features). */
  keypoints?: boolean;
  /** Slots of named keypoints (named_keypoints): the readouts of the objects the prompt names, appended (implies keypoints). */
  namedKeypoints?: number;
}

/** The action chunk of an example: its action spans' text decoded by the codec; undefined when it has none. */
export function exampleChunk(ex: TrainingExample, codec: ActionCodec): number[][] | undefined {
  const target = targetText(ex);
  const text = ex.spans.filter((s) => s.kind === 'action').map((s) => target.slice(s.start, s.end)).join('');
  if (!text) return undefined;
  try {
    const chunk = codec.decode(withoutActionsMarker(text).trim());
    return chunk.length ? chunk : undefined;
  } catch (err) {
    throw new VlakitError('E_RECORD_INVALID', `example ${ex.id}: its action text does not decode with the ${codec.name} codec (${(err as Error).message})`);
  }
}

/** The numeric proprioceptive state of an example (its `state`, as `relabel --state` writes it), when it has one. */
function exampleState(ex: TrainingExample): number[] | undefined {
  const s = ex.state;
  return s && s.length > 0 && s.every((v) => Number.isFinite(v)) ? s : undefined;
}

function meanStd(rows: number[][], dims: number): { mean: number[]; std: number[] } {
  const acc = new StatsAccumulator();
  for (const r of rows) acc.add(r.slice(0, dims));
  const s = acc.result().dims;
  // a constant dimension keeps a unit scale: its normalized value is 0 either way
  return { mean: s.map((d) => d.mean), std: s.map((d) => (d.std > 1e-6 ? d.std : 1)) };
}

/**
 * A new head's config for these training examples: the horizon (longest chunk), action width, the statistics
 * (`stats` when it matches the width, else computed from the chunks) and the state width (when every example with a chunk has a `state`).
 */
export function newHeadConfig(examples: TrainingExample[], codec: ActionCodec, condDim: number, o: HeadOptions, stats?: unknown, named?: { names: string[]; offset: number }): ActionHeadConfig {
  const withChunks = examples.map((e) => ({ e, chunk: exampleChunk(e, codec) })).filter((x) => x.chunk !== undefined);
  const chunks = withChunks.map((x) => x.chunk!);
  if (!chunks.length) throw new VlakitError('E_USAGE', '--action-head needs examples with action chunks: none of the training examples has an action span');
  const D = chunks[0][0].length;
  const horizon = o.horizon ?? Math.max(...chunks.map((c) => c.length));
  const given = ActionStatsSchema.safeParse(stats);
  const norm = given.success && given.data.dims.length === D ? { mean: given.data.dims.map((d) => d.mean), std: given.data.dims.map((d) => (d.std > 1e-6 ? d.std : 1)) } : meanStd(chunks.flat(), D);
  // the state input when every example the head trains on (those with a chunk) has one
  const states = withChunks.map((x) => exampleState(x.e));
  const stateDim = states.every((s) => s !== undefined) ? Math.min(...states.map((s) => s!.length)) : 0;
  return headConfig({
    objective: o.objective,
    horizon,
    action_dim: D,
    cond_dim: condDim + (o.namedKeypoints && named ? o.namedKeypoints * (KEYPOINT_DIM + 1) : 0),
    action_norm: norm,
    state_dim: stateDim,
    state_norm: stateDim ? meanStd(states as number[][], stateDim) : null,
    keypoint_features: o.keypoints ?? false,
    named_keypoints: o.namedKeypoints && named ? { ...named, slots: o.namedKeypoints, past_norm: true } : null,
    hidden_size: o.hidden ?? 256,
    num_layers: o.layers ?? 2,
    inference_steps: o.inferenceSteps ?? 10,
    prediction: o.prediction ?? 'epsilon',
  });
}


/** The head's held-out error (train-sft's validation with an action head). */
export interface HeadEvalResult {
  /** Validation examples with an action chunk (the others have no target for the head). */
  examples: number;
  /** The head's loss on them, at fixed noise and times. */
  loss: number;
  /** Mean absolute error of the sampled chunks, in the dataset's units, over every dimension but a binary gripper. */
  mae: number;
  /** Mean absolute error per dimension (a binary gripper's too). */
  maeDims: number[];
  /** The binary gripper's dimension (the codec's layout, else the one inferred from the action width), when there is one. */
  gripper?: number;
  /** Fraction of the chunks' actions whose gripper is on the target's side of 0.5. */
  gripperAccuracy?: number;
}

/** Seeds of the validation noise and times: the same for every checkpoint of a run, so its metrics compare. */
export const EVAL_SEED = 7_000_003;

/**
 * Errors of predicted chunks against target chunks (both [H][D] in action units, the same H): the mean absolute
 * error per dimension over every action of every chunk, their mean over the dimensions other than `gripper`, and the
 * gripper's accuracy (predicted and target on the same side of 0.5).
 * @example chunkErrors([{ pred: [[0.1, 1]], target: [[0, 1]] }], 1) // { mae: 0.1, maeDims: [0.1, 0], gripperAccuracy: 1 }
 */
export function chunkErrors(pairs: { pred: number[][]; target: number[][] }[], gripper?: number): Pick<HeadEvalResult, 'mae' | 'maeDims' | 'gripperAccuracy'> {
  const D = pairs[0]?.target[0]?.length ?? 0;
  const sums = new Array<number>(D).fill(0);
  let n = 0;
  let right = 0;
  for (const { pred, target } of pairs) {
    target.forEach((a, i) => {
      n += 1;
      for (let k = 0; k < D; k++) sums[k] += Math.abs(pred[i][k] - a[k]);
      if (gripper !== undefined && pred[i][gripper] >= 0.5 === a[gripper] >= 0.5) right += 1;
    });
  }
  const maeDims = sums.map((s) => (n ? s / n : 0));
  const cont = maeDims.filter((_, k) => k !== gripper);
  return { mae: cont.length ? cont.reduce((a, b) => a + b, 0) / cont.length : 0, maeDims, ...(gripper !== undefined ? { gripperAccuracy: n ? right / n : 0 } : {}) };
}

/** A chunk cut to `horizon` actions or padded by repeating its last, as normalizeChunk does. */
function fitChunk(chunk: number[][], horizon: number): number[][] {
  return Array.from({ length: horizon }, (_, i) => chunk[Math.min(i, chunk.length - 1)]);
}

/** The settings of a head trainee's loss. */
export interface HeadLossSettings {
  seed: number;
  langWeight: number;
  freezeBackbone: boolean;
  /** The grounding loss's weight (train/ground.ts; 0 or absent: none). */
  groundWeight?: number;
}

function headTarget(p: Prepared): HeadTarget {
  if (!p.head) throw new Error(`example ${p.id} was not prepared for an action head`);
  return p.head;
}

/**
 * The loss of a batch for the built-in model with an action head: the head's loss + lang_weight x the language loss.
 * Each row's noise and time are seeded by its position in the data stream (`key` + its row), so a resumed run draws
 * what the uninterrupted one would, and a batch split across data-parallel workers draws what one thread would.
 * With `batch.chunkCount` (the whole batch's rows with a chunk), the head's loss is this part's share of the batch's.
 */
export function headLoss(model: VlaModel, head: ActionHead, s: HeadLossSettings, batch: Batch, items: Prepared[], lambdaR: number, key: number): LossParts {
  const tap: VlaTap<tf.Tensor> | undefined = s.groundWeight && batch.ground ? {} : undefined;
  const parts = headLossWith((promptEnd, logits) => vlaHeadFeatures(model, batch.pixels as tf.Tensor5D, batch.ids, promptEnd, { logits, keypoints: head.config.keypoint_features, tap }), head, s, batch, items, lambdaR, key);
  return tap ? withGround(parts, tap, batch, s.groundWeight!) : parts;
}

/** A batch's backbone features [B, C] at each example's prompt end (and its logits [B, T, V] when asked). */
export type FeaturesOf = (promptEnd: number[], logits: boolean) => { cond: tf.Tensor2D; logits?: tf.Tensor3D };

/** headLoss over any backbone: `features` gives the batch's features (and logits). */
export function headLossWith(features: FeaturesOf, head: ActionHead, s: HeadLossSettings, batch: Batch, items: Prepared[], lambdaR: number, key: number): LossParts {
  const rows = items.map(headTarget);
  const lang = !s.freezeBackbone && s.langWeight > 0;
  const f = features(rows.map((r) => r.promptEnd), lang);
  const { logits } = f;
  const cond = withNamedKeypointsTf(head.config, f.cond, rows.map((r) => r.named ?? [])); // [B, cond_dim]
  const language = logits ? sftLoss(() => logits, batch, lambdaR).loss : tf.scalar(0);
  const chosen = rows.map((r, b) => (r.x0 ? b : -1)).filter((b) => b >= 0);
  let hl: tf.Scalar = tf.scalar(0);
  if (chosen.length) {
    const n = chunkSize(head.config);
    const B = rows.length;
    // the rows with a chunk, as a one-hot product (the WebAssembly backend has no gradient for gather)
    const pick = new Float32Array(chosen.length * B);
    chosen.forEach((b, i) => (pick[i * B + b] = 1));
    const sel = tf.tensor2d(pick, [chosen.length, B]);
    const c = tf.matMul(sel, cond) as tf.Tensor2D; // [n, B] x [B, C] -> [n, C]
    const x0 = new Float32Array(chosen.length * n);
    chosen.forEach((b, i) => x0.set(rows[b].x0!, i * n));
    const S = head.config.state_dim;
    const state = S ? tf.tensor2d(Float32Array.from(chosen.flatMap((b) => [...rows[b].state!])), [chosen.length, S]) : undefined;
    const rngs = chosen.map((b) => new Rng(s.seed * 1_000_003 + key + b));
    hl = head.loss(c, x0, rngs, state, batch.chunkCount);
  }
  return { loss: tf.add(hl, tf.mul(language, s.langWeight)) as tf.Scalar, action: hl, reasoning: language as tf.Scalar };
}

/**
 * Puts each prepared example's head inputs on it (`p.head`): its prompt's end (`promptEndOf`), its chunk normalized
 * and in action units (cut or padded to the horizon), and its normalized state when the head takes one.
 */
export function attachHeadTargets(out: Prepared[], examples: TrainingExample[], hc: ActionHeadConfig, codec: ActionCodec, promptEndOf: (p: Prepared) => number): void {
  out.forEach((p, i) => {
    const promptEnd = promptEndOf(p);
    const chunk = exampleChunk(examples[i], codec);
    if (chunk && chunk[0].length !== hc.action_dim) throw new VlakitError('E_RECORD_INVALID', `example ${p.id}: actions of ${chunk[0].length} numbers; the action head takes ${hc.action_dim}`);
    let state: Float32Array | undefined;
    try {
      state = hc.state_dim && chunk ? normalizeState(hc, examples[i].state) : undefined;
    } catch (err) {
      throw new VlakitError('E_RECORD_INVALID', `example ${p.id}: ${(err as Error).message} (its \`state\`; relabel --state writes it)`, { field: 'state' });
    }
    const named = hc.named_keypoints ? namedKeypoints(hc, promptText(examples[i])) : undefined;
    p.head = { promptEnd, x0: chunk ? normalizeChunk(hc, chunk) : undefined, chunk: chunk ? fitChunk(chunk, hc.horizon) : undefined, state, ...(named ? { named } : {}) };
  });
}

/**
 * The head on held-out examples: per example with a chunk, its loss and a chunk sampled with the head's inference
 * steps, both from noise seeded by the example's position, so every checkpoint of a run is measured alike.
 */
export async function evaluateHead(head: ActionHead, codec: ActionCodec, items: Prepared[], layout: PixelLayout, featuresOf: (b: Batch, items: Prepared[]) => FeaturesOf): Promise<HeadEvalResult | undefined> {
  const hc = head.config;
  const pairs: { pred: number[][]; target: number[][] }[] = [];
  let loss = 0;
  for (const [i, p] of items.entries()) {
    const r = headTarget(p);
    if (!r.x0 || !r.chunk) continue;
    if (i % 16 === 15) await new Promise((res) => setImmediate(res));
    const batch = makeBatch([p], layout);
    const cond = tf.tidy(() => withNamedKeypointsTf(hc, featuresOf(batch, [p])([r.promptEnd], false).cond, [r.named ?? []])); // [1, C]
    disposeBatch(batch);
    const state = r.state ? tf.tensor2d(r.state, [1, r.state.length]) : undefined;
    try {
      loss += tf.tidy(() => head.loss(cond, r.x0!, new Rng(EVAL_SEED + i), state).dataSync()[0]);
      const x = await head.sample(cond, chunkNoise(hc, 1, EVAL_SEED + i), { state });
      pairs.push({ pred: denormalizeChunk(hc, x), target: r.chunk });
    } finally {
      cond.dispose();
      state?.dispose();
    }
  }
  if (!pairs.length) return undefined;
  const L = codec.layout ?? inferLayout(hc.action_dim);
  const gripper = L && L.gripper !== null && L.gripper_kind === 'binary' ? L.gripper : undefined;
  return { examples: pairs.length, loss: loss / pairs.length, ...chunkErrors(pairs, gripper), ...(gripper !== undefined ? { gripper } : {}) };
}

/** The built-in model with an action head, as train-sft trains it. */
export class HeadTrainee implements Trainee {
  readonly vars: tf.Variable[];
  readonly layout: PixelLayout;
  readonly parameters: number;

  constructor(
    readonly model: VlaModel,
    readonly tok: Tokenizer,
    readonly head: ActionHead,
    readonly codec: ActionCodec,
    private readonly o: HeadOptions & { freezeLayers?: number; freezeVision?: boolean; seed?: number; groundWeight?: number },
  ) {
    this.vars = [...(o.freezeBackbone ? [] : model.trainable({ freezeLayers: o.freezeLayers, freezeVision: o.freezeVision })), ...head.vars()];
    this.layout = { cameras: model.config.num_cameras, size: model.config.vision_config.image_size };
    this.parameters = model.numParameters() + head.numParameters();
  }

  /** What a data-parallel replica needs to compute this trainee's loss. */
  get lossSettings(): HeadLossSettings {
    return { seed: this.o.seed ?? 0, langWeight: this.o.langWeight ?? 1, freezeBackbone: this.o.freezeBackbone ?? false, ...(this.o.groundWeight ? { groundWeight: this.o.groundWeight } : {}) };
  }

  async prepare(examples: TrainingExample[]): Promise<Prepared[]> {
    const cfg = this.model.config;
    const maxTokens = cfg.text_config.max_position_embeddings - tokensPerImage(cfg) * cfg.num_cameras;
    const out = await prepare(examples, this.tok, { cameras: cfg.num_cameras, imageSize: cfg.vision_config.image_size, maxTokens, ground: this.o.groundWeight ? (ex) => groundCellsOf(ex, cfg) : undefined });
    attachHeadTargets(out, examples, this.head.config, this.codec, (p) => {
      const promptEnd = p.ids.indexOf(SEP);
      if (promptEnd < 0) throw new VlakitError('E_USAGE', `example ${p.id}: its prompt is longer than the model's ${maxTokens} text positions`);
      return promptEnd;
    });
    // a new head with named keypoints standardizes their readouts by the training data's (the first examples prepared)
    const named = this.head.config.named_keypoints;
    if (named && !named.norm) named.norm = await namedReadoutNorm(out, this.layout, named.offset, (b, ends) => vlaHeadFeatures(this.model, b.pixels as tf.Tensor5D, b.ids, ends, { logits: false, keypoints: true }).cond);
    return out;
  }

  logits(batch: Batch): tf.Tensor3D {
    return this.model.forward(batch.pixels as tf.Tensor5D, batch.ids).logits;
  }

  /** head + lang_weight x language loss (headLoss); `key` is the stream position of the first item. */
  loss(batch: Batch, items: Prepared[], lambdaR: number, key: number): LossParts {
    return headLoss(this.model, this.head, this.lossSettings, batch, items, lambdaR, key);
  }

  evaluateHead(items: Prepared[]): Promise<HeadEvalResult | undefined> {
    return evaluateHead(this.head, this.codec, items, this.layout, (b) => (promptEnd, logits) => vlaHeadFeatures(this.model, b.pixels as tf.Tensor5D, b.ids, promptEnd, { logits, keypoints: this.head.config.keypoint_features }));
  }

  evaluateGround(items: Prepared[]): Promise<GroundEvalResult | undefined> {
    return evaluateGround(this.model, items, this.layout);
  }

  decode(ids: number[]): string {
    return this.tok.decode(ids);
  }

  async save(dir: string, opt: AdamW | undefined, state: object, o: { codec?: ActionCodec; actionStats?: unknown; init?: string }): Promise<void> {
    const { writeCheckpointFiles } = await import('./sft.js');
    await writeCheckpointFiles(dir, this.model, this.tok, opt, state, o);
    await writeActionHead(dir, this.head);
  }

  dispose(): void {
    this.model.dispose();
    this.head.dispose();
  }
}


/** The codec of the examples: `o.codec`, else their meta.codec. */
export function headCodec(examples: TrainingExample[], codec?: ActionCodec): ActionCodec {
  const spec = examples.find((e) => e.meta.codec)?.meta.codec;
  const c = codec ?? (spec ? codecFromSpec(spec) : undefined);
  if (!c) throw new VlakitError('E_USAGE', '--action-head needs the action codec of the examples (their meta.codec, or --actions)');
  return c;
}

/**
 * The head of a run: the head of `startDir` (a resumed run, or an --init checkpoint with a head of the same
 * objective and features), else a new one for the training examples. `condDim(keypoints)`: the backbone's feature
 * width with or without the keypoint readouts; a kept head keeps its own choice, a new one takes the options' (default none).
 */
export function openHead(o: { examples: TrainingExample[]; actionStats?: unknown; actionHead: HeadOptions; seed?: number }, codec: ActionCodec, condDim: (keypoints: boolean) => number, startDir: string | undefined, resume: boolean, named?: () => { names: string[]; offset: number }): ActionHead {
  let head: ActionHead | undefined;
  if (startDir && hasActionHead(startDir)) {
    head = loadActionHead(startDir);
    const otherFeatures = (o.actionHead.keypoints !== undefined && head.config.keypoint_features !== o.actionHead.keypoints) || (o.actionHead.namedKeypoints !== undefined && (head.config.named_keypoints?.slots ?? 0) !== o.actionHead.namedKeypoints);
    if (!resume && (head.config.objective !== o.actionHead.objective || otherFeatures)) {
      head.dispose();
      head = undefined; // another objective or other features: a new head on the --init backbone
    }
  }
  if (resume && !head) throw new VlakitError('E_MODEL', 'the run to resume has no action head (action_head.json)', { file: startDir });
  if (head) {
    const want = condDim(head.config.keypoint_features);
    if (backboneDim(head.config) !== want) throw new VlakitError('E_MODEL', `the action head takes features of ${head.config.cond_dim} numbers; this backbone gives ${want}`, { file: startDir });
    return head;
  }
  const train = o.examples.filter((e) => e.meta.split !== 'val');
  // named keypoints read the keypoint readouts among the features
  const keypoints = (o.actionHead.keypoints ?? false) || Boolean(o.actionHead.namedKeypoints);
  return ActionHead.init(newHeadConfig(train, codec, condDim(keypoints), { ...o.actionHead, keypoints }, o.actionStats, o.actionHead.namedKeypoints ? named?.() : undefined), o.seed ?? 0);
}

/**
 * The mean and std of the named keypoints' readouts over (up to 512 of) the examples: the backbone's features of
 * each, the 8 readouts of every filled slot's keypoint. A std below 1e-6 becomes 1.
 */
export async function namedReadoutNorm(items: Prepared[], layout: PixelLayout, offset: number, features: (b: Batch, promptEnds: number[]) => tf.Tensor2D): Promise<{ mean: number[]; std: number[] }> {
  const rows: number[][] = [];
  const some = items.filter((p) => p.head?.named?.some((k) => k >= 0)).slice(0, 512);
  for (let i = 0; i < some.length; i += 16) {
    const part = some.slice(i, i + 16);
    const batch = makeBatch(part, layout);
    const f = tf.tidy(() => features(batch, part.map((p) => p.head!.promptEnd)).arraySync()); // [B, C]
    disposeBatch(batch);
    part.forEach((p, b) => {
      for (const k of p.head!.named!) if (k >= 0) rows.push(f[b].slice(offset + k * KEYPOINT_DIM, offset + (k + 1) * KEYPOINT_DIM));
    });
    await new Promise((r) => setImmediate(r));
  }
  if (!rows.length) return { mean: new Array<number>(KEYPOINT_DIM).fill(0), std: new Array<number>(KEYPOINT_DIM).fill(1) };
  return meanStd(rows, KEYPOINT_DIM);
}

/** The head trainee of a run on the built-in model (openHead). */
export function openHeadTrainee(model: VlaModel, tok: Tokenizer, o: { examples: TrainingExample[]; codec?: ActionCodec; actionStats?: unknown; actionHead: HeadOptions; freezeLayers?: number; freezeVision?: boolean; seed?: number; groundWeight?: number }, startDir: string | undefined, resume: boolean): HeadTrainee {
  const codec = headCodec(o.examples, o.codec);
  const named = () => {
    const names = model.config.vision_config.keypoint_names;
    if (!names?.length) throw new VlakitError('E_USAGE', '--head-named-keypoints: the backbone\'s keypoints have no names (vision_config.keypoint_names, trained with --ground-weight; docs/MODEL.md)');
    return { names, offset: vlaFeatureDim(model.config, false) };
  };
  const head = openHead(o, codec, (keypoints) => vlaFeatureDim(model.config, keypoints), startDir, resume, named);
  return new HeadTrainee(model, tok, head, codec, { ...o.actionHead, freezeLayers: o.freezeLayers, freezeVision: o.freezeVision, seed: o.seed, groundWeight: o.groundWeight });
}
