/**
 * train-sft: supervised fine-tuning of the VLA model on training examples, with LoRA or full fine-tuning, frozen
 * lower layers, the action + lambda_r x reasoning loss, AdamW with warmup + linear decay, gradient clipping and
 * accumulation, seeded data order, atomic checkpoints every `saveEvery` steps, exact resume, metrics as JSONL, and
 * evaluation on the validation split (action-token accuracy and the L1 error of the decoded actions).
 */
import { existsSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import type { ActionCodec } from '../actions/codecs.js';
import type { TrainingExample } from '../actions/examples.js';
import { withoutActionsMarker } from '../actions/prompts.js';
import { VlakitError } from '../errors.js';
import { loadCheckpoint, writeModelFiles } from '../model/checkpoint.js';
import { type Preset, preset, tokensPerImage, type VlaConfig } from '../model/config.js';
import { VlaModel } from '../model/model.js';
import { readSafetensors, writeSafetensors } from '../model/safetensors.js';
import { buildTokenizer, loadTokenizer, loadTokenizerFile, type Tokenizer } from '../model/tokenizer.js';
import { Rng } from '../util/rng.js';
import { type Batch, type Oversample, type PixelLayout, type Prepared, disposeBatch, examplesText, makeBatch, oversampleCounts, prepare, repeatItems } from './data.js';
import { HfTrainee, type Trainee } from './hf-sft.js';
import { DataParallel, batchCounts, partGrads, splitParts } from './data-parallel.js';
import { HfLoraModel } from './hf-model.js';
import { isHfCheckpoint, loadHfCheckpoint } from '../model/arch/hf.js';
import type { Processor } from '../model/processor/types.js';
import { AdamW, lrAt } from './optim.js';
import { type HeadEvalResult, type HeadOptions, HeadTrainee, headCodec, openHead, openHeadTrainee } from './head.js';
import { HfHeadTrainee } from './hf-head.js';
import { type GroundEvalResult, evaluateGround, groundCellsOf, groundGrid, groundedSftLoss } from './ground.js';
import { hfFeatureDim } from '../model/action-head-hf.js';
import { type RunIdentity, RunDir, STATE_FILE, TrainerStateBase, hashCheckpoint, hashFile, hashRecords, hashValue } from './run-dir.js';

export interface SftOptions {
  examples: TrainingExample[];
  outDir: string;
  preset?: Preset;
  /** A new model's config, used as given. */
  config?: VlaConfig;
  /** A new model's sizes (train-sft --config): this config with the tokenizer's vocabulary and the cameras of the data. */
  sizes?: VlaConfig;
  /** Start from this checkpoint: vlakit's own, or a Hugging Face checkpoint (LoRA through `processor`). */
  init?: string;
  /** The processor of a Hugging Face --init checkpoint (its inputs: chat template, special tokens, images). */
  processor?: Processor;
  /** Continue the run saved in outDir (its latest checkpoint) exactly; refused when the data or settings differ. */
  resume?: boolean;
  /** Replace what outDir holds (another run) once this run has a checkpoint or finishes. */
  overwrite?: boolean;
  /** The input files (training data, statistics...) that outDir must not be or contain. */
  inputs?: string[];
  vocabSize?: number;
  /** A tokenizer.json to use instead of learning one (from scratch only; with --init the checkpoint's is used). */
  tokenizerFile?: string;
  /** More examples whose text the learned tokenizer covers, without training on them (e.g. the later fine-tuning data). */
  vocabFrom?: TrainingExample[];
  /** Camera slots of a new model (default: the most images of any example). */
  cameras?: number;
  lora?: { r: number; alpha: number; targets: string[] };
  freezeLayers?: number;
  freezeVision?: boolean;
  lambdaR?: number;
  /** Weight of the keypoints' grounding loss (train/ground.ts) on examples with `ground` targets (default 0: none). */
  groundWeight?: number;
  lr?: number;
  warmup?: number;
  steps?: number;
  epochs?: number;
  batchSize?: number;
  gradAccum?: number;
  clip?: number;
  weightDecay?: number;
  seed?: number;
  saveEvery?: number;
  evalEvery?: number;
  /** Evaluate on at most this many val examples, evenly spread over the split (default: all of them). */
  evalLimit?: number;
  codec?: ActionCodec;
  actionStats?: unknown;
  /** After each step's metrics record; `run.totalSteps` is the run's length (from --steps or the epochs). */
  onMetrics?: (m: Record<string, unknown>, run: { totalSteps: number }) => void;
  signal?: AbortSignal;
  /** Data-parallel threads (the built-in model): each batch split across them, gradients summed (default 1). */
  workers?: number;
  /** The TensorFlow.js backend the workers load (the coordinator's). */
  backend?: string;
  /** Training examples whose prompt contains a rule's text come that many times per epoch (train-sft --oversample). */
  oversample?: Oversample[];
  /** Train a continuous action head (diffusion or flow matching) on the built-in model (train/head.ts) or a Hugging Face checkpoint with LoRA (train/hf-head.ts). */
  actionHead?: HeadOptions;
}

export interface SftResult {
  steps: number;
  finalLoss: number;
  parameters: number;
  trainable: number;
  outDir: string;
  eval?: EvalResult;
}

export interface EvalResult {
  examples: number;
  actionTokenAccuracy: number;
  /** Mean |error| (meters) of the decoded translations (teacher-forced argmax tokens), over examples that decode. */
  actionL1?: number;
  undecodable: number;
  /** With an action head: its held-out loss and the error of its sampled chunks (train/head.ts). */
  head?: HeadEvalResult;
  /** With --ground-weight: how far the keypoints are from their grounding targets (train/ground.ts). */
  ground?: GroundEvalResult;
}

const SftState = TrainerStateBase.extend({
  total_steps: z.number().int().positive(),
  lr: z.number(),
  warmup: z.number().int().nonnegative(),
  batch_size: z.number().int().positive(),
  grad_accum: z.number().int().positive(),
});
type TrainerState = z.output<typeof SftState>;

/** The item at position k of the endless, per-epoch-shuffled stream of training examples. */
export function streamItem(k: number, n: number, seed: number, orders: Map<number, number[]>): number {
  const epoch = Math.floor(k / n);
  let order = orders.get(epoch);
  if (!order) {
    order = new Rng(seed * 7919 + epoch).shuffle(Array.from({ length: n }, (_, i) => i));
    orders.set(epoch, order);
  }
  return order[k % n];
}

/** At most `limit` of the items, evenly spaced (the first always in), in their order; all of them without a limit. */
export function evenlySpread<T>(items: T[], limit: number | undefined): T[] {
  if (limit === undefined || items.length <= limit) return items;
  return Array.from({ length: limit }, (_, i) => items[Math.floor((i * items.length) / limit)]);
}

/** Evaluates on prepared examples: accuracy of the argmax on action tokens, and L1 of the decoded actions. */
export async function evaluate(model: Trainee, items: Prepared[], codec: ActionCodec | undefined): Promise<EvalResult> {
  let right = 0;
  let total = 0;
  let l1 = 0;
  let l1n = 0;
  let undecodable = 0;
  for (const [n, item] of items.entries()) {
    // yield now and then: a val split of thousands of examples takes a minute, during which the progress log goes on
    if (n % 32 === 31) await new Promise((r) => setImmediate(r));
    const b = makeBatch([item], model.layout);
    const pred = tf.tidy(() => tf.argMax(model.logits(b, [item]), -1).arraySync() as number[][])[0]; // [T]
    const predicted: number[] = [];
    for (let t = 1; t < item.ids.length; t++) {
      if (!item.action[t]) continue;
      total += 1;
      if (pred[t - 1] === item.ids[t]) right += 1;
      predicted.push(pred[t - 1]);
    }
    disposeBatch(b);
    if (codec && item.actionText && predicted.length) {
      try {
        const truth = codec.decode(withoutActionsMarker(item.actionText));
        const got = codec.decode(withoutActionsMarker(model.decode(predicted)).trim());
        let e = 0;
        let n = 0;
        // translation only (meters); the gripper (0/1) is not a distance
        truth.forEach((a, i) =>
          a.slice(0, -1).forEach((v, k) => {
            e += Math.abs(v - (got[i]?.[k] ?? 0));
            n += 1;
          }),
        );
        l1 += e / Math.max(n, 1);
        l1n += 1;
      } catch {
        undecodable += 1;
      }
    }
  }
  return { examples: items.length, actionTokenAccuracy: total ? right / total : 0, actionL1: l1n ? l1 / l1n : undefined, undecodable };
}

/** The built-in VLA model with its tokenizer (`<bos> prompt <sep> target <eos>`, camera slots). */
class BuiltinTrainee implements Trainee {
  readonly vars: tf.Variable[];
  readonly layout: PixelLayout;
  readonly parameters: number;
  constructor(
    readonly model: VlaModel,
    readonly tok: Tokenizer,
    o: SftOptions,
  ) {
    this.vars = model.trainable({ freezeLayers: o.freezeLayers, freezeVision: o.freezeVision });
    this.layout = { cameras: model.config.num_cameras, size: model.config.vision_config.image_size };
    this.parameters = model.numParameters();
    this.groundWeight = o.groundWeight ?? 0;
    // the language loss + the grounding loss, in one forward that hands out the keypoint tap
    if (this.groundWeight > 0) this.loss = (batch, _items, lambdaR) => groundedSftLoss(this.model, batch, lambdaR, this.groundWeight);
  }

  private readonly groundWeight: number;
  readonly loss?: Trainee['loss'];

  prepare(examples: TrainingExample[]): Promise<Prepared[]> {
    const cfg = this.model.config;
    const maxTokens = cfg.text_config.max_position_embeddings - tokensPerImage(cfg) * cfg.num_cameras;
    return prepare(examples, this.tok, { cameras: cfg.num_cameras, imageSize: cfg.vision_config.image_size, maxTokens, ground: this.groundWeight > 0 ? (ex) => groundCellsOf(ex, cfg) : undefined });
  }

  logits(batch: Batch): tf.Tensor3D {
    return this.model.forward(batch.pixels as tf.Tensor5D, batch.ids).logits;
  }

  evaluateGround(items: Prepared[]): Promise<GroundEvalResult | undefined> {
    return evaluateGround(this.model, items, this.layout);
  }

  decode(ids: number[]): string {
    return this.tok.decode(ids);
  }

  save(dir: string, opt: AdamW | undefined, state: object, o: { codec?: ActionCodec; actionStats?: unknown; init?: string }): Promise<void> {
    return writeCheckpointFiles(dir, this.model, this.tok, opt, state, o);
  }

  dispose(): void {
    this.model.dispose();
  }
}

/**
 * The adapter a head-only run on a Hugging Face checkpoint (--action-head --freeze-backbone without --lora) stores:
 * rank 1 on the attention queries, B zero (never trained), so the folded weights are the base's.
 */
export const HEAD_ONLY_LORA = { r: 1, alpha: 1, targets: ['q'] };

/** The model a run trains: a Hugging Face checkpoint (LoRA through its processor) or the built-in VLA model. */
async function openTrainee(o: SftOptions, resumeDir: string | undefined, seed: number): Promise<Trainee> {
  if (o.init && isHfCheckpoint(o.init)) {
    if (o.groundWeight) throw new VlakitError('E_USAGE', `--ground-weight: ${o.init} is a Hugging Face checkpoint; the grounding loss trains the built-in model's keypoints (vision_config.keypoints)`);
    // an action head over the frozen base needs no adapter: the run keeps a zero one (HEAD_ONLY_LORA), so it opens as any adapter run
    const headOnly = !o.lora && o.actionHead?.freezeBackbone === true;
    if (!o.lora && !headOnly) throw new VlakitError('E_USAGE', `--init ${o.init} is a Hugging Face checkpoint: vlakit trains LoRA adapters on it (pass --lora, or --action-head with --freeze-backbone to train a head alone; full fine-tuning of Hugging Face checkpoints is not supported)`);
    if (!o.processor) throw new VlakitError('E_USAGE', `--init ${o.init}: training a Hugging Face checkpoint needs its processor (tokenizer and chat template files in the directory)`);
    const model = new HfLoraModel(loadHfCheckpoint(o.init), { ...(o.lora ?? HEAD_ONLY_LORA), freezeVision: o.freezeVision, freezeLayers: o.freezeLayers, seed });
    // a frozen backbone's adapters keep B zero, so the forward skips them: exactly the base model, at the base's cost
    if (o.actionHead?.freezeBackbone) model.lora.enabled = false;
    const t = new HfTrainee(model, o.processor, o.init);
    if (o.actionHead) {
      // the head on the checkpoint's hidden states (train/hf-head.ts); its adapters train unless --freeze-backbone
      if (o.actionHead.namedKeypoints) throw new VlakitError('E_USAGE', `--head-named-keypoints: ${o.init} is a Hugging Face checkpoint; named keypoints are the built-in model's (vision_config.keypoint_names)`);
      if (o.actionHead.keypoints) throw new VlakitError('E_USAGE', `--head-keypoints: ${o.init} is a Hugging Face checkpoint; keypoint features are the built-in model's (vision_config.keypoints)`);
      const codec = headCodec(o.examples, o.codec);
      const head = openHead({ ...o, actionHead: o.actionHead, seed }, codec, () => hfFeatureDim(model.arch, model.config), resumeDir, resumeDir !== undefined);
      const ht = new HfHeadTrainee(model, t, head, codec, { ...o.actionHead, seed });
      if (resumeDir) ht.resume(resumeDir);
      return ht;
    }
    if (resumeDir) t.resume(resumeDir);
    return t;
  }
  let model: VlaModel;
  let tok: Tokenizer;
  const start = resumeDir ?? o.init;
  if (start) {
    const ck = loadCheckpoint(start);
    model = ck.model;
    tok = await loadTokenizer(ck.tokenizerJson);
    if (o.lora && !model.lora) model.addLora(o.lora.r, o.lora.alpha, o.lora.targets, seed);
  } else {
    tok = o.tokenizerFile ? await loadTokenizerFile(o.tokenizerFile) : await buildTokenizer(examplesText([...o.examples, ...(o.vocabFrom ?? [])]), o.vocabSize ?? 512);
    const cameras = o.cameras ?? Math.max(1, ...o.examples.map((e) => e.images.length));
    const sized = o.sizes && { ...o.sizes, text_config: { ...o.sizes.text_config, vocab_size: tok.vocabSize }, num_cameras: cameras };
    model = VlaModel.init(o.config ?? sized ?? preset(o.preset ?? 'tiny', tok.vocabSize, cameras), seed);
    if (o.lora) model.addLora(o.lora.r, o.lora.alpha, o.lora.targets, seed);
  }
  if (o.actionHead) return openHeadTrainee(model, tok, { ...o, actionHead: o.actionHead }, start, resumeDir !== undefined);
  return new BuiltinTrainee(model, tok, o);
}

/** Writes a resumable checkpoint's files (model files, optimizer, trainer state) into `dir`. */
export async function writeCheckpointFiles(dir: string, model: VlaModel, tok: Tokenizer, opt: AdamW | undefined, state: object, o: { codec?: ActionCodec; actionStats?: unknown; init?: string }): Promise<void> {
  await writeModelFiles(dir, model, tok.json, { actionCodec: o.codec?.describe(), actionStats: o.actionStats, baseModel: o.init });
  if (opt) await writeSafetensors(path.join(dir, 'optimizer.safetensors'), await opt.state());
  await fsp.writeFile(path.join(dir, STATE_FILE), `${JSON.stringify(state, null, 2)}\n`);
}

/** What makes a train-sft run the same run: its data, init checkpoint, every setting that shapes it, and the seed. */
export async function sftIdentity(o: SftOptions): Promise<RunIdentity> {
  const scratch = !o.init;
  return {
    kind: 'train-sft',
    data: hashRecords(o.examples),
    seed: o.seed ?? 0,
    init: o.init ? { path: o.init, hash: await hashCheckpoint(o.init) } : null,
    mode: o.actionHead?.freezeBackbone ? 'frozen' : o.lora || (o.init && existsSync(path.join(o.init, 'adapter_config.json'))) ? 'lora' : 'full',
    config: {
      preset: scratch && !o.config && !o.sizes ? (o.preset ?? 'tiny') : null,
      'model-config': scratch && (o.config ?? o.sizes) ? hashValue(o.config ?? o.sizes) : null,
      cameras: scratch ? (o.cameras ?? null) : null,
      'vocab-size': scratch && !o.tokenizerFile ? (o.vocabSize ?? 512) : null,
      tokenizer: scratch && o.tokenizerFile ? await hashFile(o.tokenizerFile) : null,
      'vocab-from': scratch && o.vocabFrom?.length ? `sha256:${hashRecords(o.vocabFrom)}` : null,
      'lora-r': o.lora?.r ?? null,
      'lora-alpha': o.lora?.alpha ?? null,
      'lora-targets': o.lora ? o.lora.targets.join(',') : null,
      'freeze-layers': o.freezeLayers ?? 0,
      'freeze-vision': o.freezeVision ?? false,
      'lambda-r': o.lambdaR ?? 1,
      // only when given: earlier runs keep their fingerprints
      ...(o.groundWeight ? { 'ground-weight': o.groundWeight } : {}),
      ...(o.oversample?.length ? { oversample: JSON.stringify(o.oversample.map((r) => [r.pattern, r.times])) } : {}),
      lr: o.lr ?? 3e-4,
      warmup: o.warmup ?? null,
      steps: o.steps ?? null,
      epochs: o.steps ? null : (o.epochs ?? 1),
      'batch-size': o.batchSize ?? 8,
      'grad-accum': o.gradAccum ?? 1,
      clip: o.clip ?? 1,
      'weight-decay': o.weightDecay ?? 0.01,
      stats: o.actionStats === undefined ? null : hashValue(o.actionStats),
      // only with a head: runs without one keep their fingerprints
      ...(o.actionHead
        ? {
            'action-head': o.actionHead.objective,
            'lang-weight': o.actionHead.langWeight ?? 1,
            'inference-steps': o.actionHead.inferenceSteps ?? 10,
            'head-hidden': o.actionHead.hidden ?? 256,
            'head-layers': o.actionHead.layers ?? 2,
            'head-prediction': o.actionHead.prediction ?? 'epsilon',
            'head-horizon': o.actionHead.horizon ?? null,
            'freeze-backbone': o.actionHead.freezeBackbone ?? false,
            // only when given: earlier head runs keep their fingerprints
            ...(o.actionHead.keypoints !== undefined ? { 'head-keypoints': o.actionHead.keypoints } : {}),
            ...(o.actionHead.namedKeypoints !== undefined ? { 'head-named-keypoints': o.actionHead.namedKeypoints } : {}),
          }
        : {}),
    },
  };
}

/**
 * Trains; writes checkpoints to `<outDir>/checkpoint-<step>` and the final model to `outDir`.
 * @example await trainSft({ examples, outDir: 'runs/sft', preset: 'tiny', steps: 100, lambdaR: 0.5 })
 */
export async function trainSft(o: SftOptions): Promise<SftResult> {
  const train = o.examples.filter((e) => e.meta.split !== 'val');
  const val = o.examples.filter((e) => e.meta.split === 'val');
  if (train.length === 0) throw new VlakitError('E_USAGE', 'no training examples (every example is in the val split)');
  const run = await RunDir.open(o.outDir, await sftIdentity(o), { resume: o.resume, overwrite: o.overwrite, inputs: o.inputs });
  try {
    return await trainInto(run, o, train, val);
  } catch (err) {
    await run.abandon();
    throw err;
  }
}

async function trainInto(run: RunDir, o: SftOptions, train: TrainingExample[], val: TrainingExample[]): Promise<SftResult> {
  const seed = o.seed ?? 0;
  const B = o.batchSize ?? 8;
  const accum = o.gradAccum ?? 1;
  const resumeDir = run.resumeFrom;

  const model = await openTrainee(o, resumeDir, seed);
  // the grounding loss trains the built-in model's keypoints: a usage error when it has none (Hugging Face checkpoints are refused when opened)
  if (o.groundWeight && model.model instanceof VlaModel) groundGrid(model.model.config);
  const repeats = oversampleCounts(train, o.oversample ?? []).counts; // before decoding images: a rule that matches nothing fails at once
  const trainItems = repeatItems(await model.prepare(train), repeats);
  const valItems = await model.prepare(evenlySpread(val, o.evalLimit));
  if (o.groundWeight && !trainItems.some((p) => p.ground)) throw new VlakitError('E_USAGE', '--ground-weight: no training example has grounding targets the model can take (`ground`: relabel --ground or eval-vqa --ground; with vision_config.keypoint_names, objects of those names)');
  const vars = model.vars;
  const total = o.steps ?? Math.max(1, Math.ceil(((o.epochs ?? 1) * trainItems.length) / (B * accum)));
  const peak = o.lr ?? 3e-4;
  const warmup = o.warmup ?? Math.min(10, Math.floor(total / 10));
  const opt = new AdamW({ weightDecay: o.weightDecay ?? 0.01 });
  let state: TrainerState = { step: 0, consumed: 0, total_steps: total, seed, lr: peak, warmup, batch_size: B, grad_accum: accum, run: run.fingerprint };
  if (resumeDir) {
    state = run.readState(SftState);
    opt.load(readSafetensors(path.join(resumeDir, 'optimizer.safetensors')).tensors, state.step);
  }
  const workers = o.workers ?? 1;
  let dp: DataParallel | undefined;
  if (workers > 1) {
    if (B < workers) throw new VlakitError('E_USAGE', `--workers ${workers} needs a batch of at least ${workers} examples (--batch-size ${B}): each worker takes a part of every batch`);
    const head = model instanceof HeadTrainee || model instanceof HfHeadTrainee ? { head: model.head, settings: model.lossSettings } : undefined;
    const hf = model instanceof HfHeadTrainee || model instanceof HfTrainee;
    dp = await DataParallel.start(workers, model.model, vars, { backend: o.backend ?? 'wasm', layout: model.layout, lambdaR: o.lambdaR ?? 1, groundWeight: o.groundWeight, head, hfDir: hf ? o.init : undefined });
  }
  try {
    return await steps(run, o, model, opt, state, { trainItems, valItems, total, peak, warmup, B, accum, seed, dp });
  } finally {
    await dp?.close();
  }
}

async function steps(
  run: RunDir,
  o: SftOptions,
  model: Trainee,
  opt: AdamW,
  state: TrainerState,
  c: { trainItems: Prepared[]; valItems: Prepared[]; total: number; peak: number; warmup: number; B: number; accum: number; seed: number; dp: DataParallel | undefined },
): Promise<SftResult> {
  const { trainItems, valItems, total, peak, warmup, B, accum, seed, dp } = c;
  const vars = model.vars;
  const orders = new Map<number, number[]>();
  let last = NaN;
  let evalResult: EvalResult | undefined;
  while (state.step < total) {
    o.signal?.throwIfAborted();
    const t0 = performance.now();
    const sums = new Map<string, tf.Tensor>();
    let lossSum = 0;
    let aSum = 0;
    let rSum = 0;
    let gSum = 0;
    let tokens = 0;
    for (let a = 0; a < accum; a++) {
      const all = Array.from({ length: B }, (_, i) => trainItems[streamItem(state.consumed + i, trainItems.length, seed, orders)]);
      const key = state.consumed; // the stream position of the batch's first item
      state.consumed += B;
      // data-parallel: the replicas take parts 1.., this thread part 0, every part normalized by the batch's counts
      const shares = dp ? splitParts(all, dp.workers) : [all];
      const counts = dp ? batchCounts(all) : undefined;
      const collect = dp ? await dp.dispatch(shares, counts!, key) : undefined;
      const items = shares[0];
      const lossOf = model.loss && ((b: Batch) => model.loss!(b, items, o.lambdaR ?? 1, key)); // an action head's loss
      const part = partGrads((b) => model.logits(b, items), items, model.layout, counts, vars, o.lambdaR ?? 1, lossOf);
      tokens += part.tokens;
      lossSum += part.loss;
      aSum += part.action;
      rSum += part.reasoning;
      gSum += part.ground;
      for (const [n, g] of Object.entries(part.grads)) {
        const prev = sums.get(n);
        sums.set(n, prev ? tf.add(prev, g) : g);
        if (prev) {
          prev.dispose();
          g.dispose();
        }
      }
      if (collect) {
        const results = await collect();
        dp!.addGrads(sums, results);
        for (const r of results) {
          lossSum += r.loss;
          aSum += r.action;
          rSum += r.reasoning;
          gSum += r.ground;
          tokens += r.tokens;
        }
      }
    }
    if (accum > 1) {
      for (const [n, g] of [...sums]) {
        sums.set(n, tf.div(g, accum));
        g.dispose();
      }
    }
    const lr = lrAt(state.step, peak, warmup, total);
    const gradNorm = opt.apply(vars, sums, lr, o.clip ?? 1);
    for (const g of sums.values()) g.dispose();
    state.step += 1;
    last = lossSum / accum;
    const secs = (performance.now() - t0) / 1000;
    const m: Record<string, unknown> = { step: state.step, loss: last, action_loss: aSum / accum, reasoning_loss: rSum / accum, ...(o.groundWeight ? { ground_loss: gSum / accum } : {}), lr, grad_norm: gradNorm, tokens_per_s: tokens / secs };
    if (o.evalEvery && valItems.length && (state.step % o.evalEvery === 0 || state.step === total)) {
      evalResult = await evaluate(model, valItems, o.codec);
      Object.assign(m, { val_action_token_accuracy: evalResult.actionTokenAccuracy, val_action_l1: evalResult.actionL1 ?? null, val_undecodable: evalResult.undecodable });
      const head = model.evaluateHead && (await model.evaluateHead(valItems));
      if (head) {
        evalResult.head = head;
        Object.assign(m, { val_head_loss: head.loss, val_head_mae: head.mae, val_head_mae_dims: head.maeDims, val_head_gripper_accuracy: head.gripperAccuracy ?? null });
      }
      const ground = model.evaluateGround && (await model.evaluateGround(valItems));
      if (ground) {
        evalResult.ground = ground;
        Object.assign(m, { val_ground_error: ground.medianError, val_ground_miss: ground.missRate, val_ground_miss_by_object: Object.fromEntries(Object.entries(ground.byObject).map(([k, v]) => [k, v.misses / v.targets])) });
      }
    }
    await run.appendMetrics(m);
    o.onMetrics?.(m, { totalSteps: total });
    if (o.saveEvery && state.step % o.saveEvery === 0 && state.step < total) await run.save(state.step, (d) => model.save(d, opt, state, o));
  }
  // the final model: the run directory itself holds it (and the trainer state)
  await run.finalize(state.step, (d) => model.save(d, opt, state, o));
  const result: SftResult = { steps: state.step, finalLoss: last, parameters: model.parameters, trainable: vars.reduce((a, v) => a + v.size, 0), outDir: o.outDir, eval: evalResult };
  opt.dispose();
  model.dispose();
  return result;
}
