/**
 * train-rl (RoboAlign): after SFT, the policy samples `group` completions (reasoning, then actions) per prompt;
 * rewards score the decoded actions against the ground truth; group-normalized advantages weight the clipped
 * importance-ratio objective over completion tokens, with beta x KL to the reference policy. With LoRA (the default)
 * the SFT model's adapters are merged into its weights, fresh adapters train, and the reference is the same model
 * with the adapters switched off: no second copy in memory, and KL is zero at step 0.
 */
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type { z } from 'zod';
import type { ActionCodec } from '../actions/codecs.js';
import type { TrainingExample } from '../actions/examples.js';
import { withoutActionsMarker } from '../actions/prompts.js';
import { VlakitError } from '../errors.js';
import { loadCheckpoint } from '../model/checkpoint.js';
import { type VlaRunner, generate } from '../infer/index.js';
import { TfjsRunner } from '../infer/tfjs.js';
import type { VlaModel } from '../model/model.js';
import { readSafetensors } from '../model/safetensors.js';
import { BOS, EOS, PAD, SEP, loadTokenizer, type Tokenizer } from '../model/tokenizer.js';
import { subSeed } from '../util/rng.js';
import { prepare, promptText, type Prepared } from './data.js';
import { groupAdvantages, grpoObjective, tokenLogProbs } from './grpo.js';
import { AdamW, lrAt } from './optim.js';
import { type RewardOptions, type RewardParts, Rewarder } from './rewards.js';
import { type RunIdentity, RunDir, TrainerStateBase, hashCheckpoint, hashRecords } from './run-dir.js';
import { streamItem, writeCheckpointFiles } from './sft.js';

export interface RlOptions {
  init: string;
  examples: TrainingExample[];
  outDir: string;
  codec: ActionCodec;
  /** Continue the run saved in outDir; refused when the data or settings differ. */
  resume?: boolean;
  /** Replace what outDir holds once this run has a checkpoint or finishes. */
  overwrite?: boolean;
  /** The input files that outDir must not be or contain. */
  inputs?: string[];
  group?: number;
  promptsPerStep?: number;
  steps?: number;
  temperature?: number;
  topP?: number;
  maxNewTokens?: number;
  lr?: number;
  warmup?: number;
  clipEps?: number;
  beta?: number;
  noStdScaling?: boolean;
  innerSteps?: number;
  lora?: { r: number; alpha: number };
  rewards?: Partial<RewardOptions>;
  rewardExec?: string;
  seed?: number;
  saveEvery?: number;
  evalEvery?: number;
  /** Keep at most this many training prompts (RoboAlign uses under 1% of the SFT data). */
  maxPrompts?: number;
  onMetrics?: (m: Record<string, unknown>) => void;
  signal?: AbortSignal;
}

export interface Prompt {
  item: Prepared;
  prompt: string;
  truth: number[][];
}

const RlState = TrainerStateBase;
type RlState = z.output<typeof RlState>;

export interface RlEval {
  prompts: number;
  reward: number;
  accuracy: number;
  l1?: number;
  format: number;
}

export function promptsOf(examples: TrainingExample[], items: Prepared[], codec: ActionCodec): Prompt[] {
  const out: Prompt[] = [];
  examples.forEach((ex, i) => {
    if (!items[i].actionText) return;
    try {
      out.push({ item: items[i], prompt: promptText(ex), truth: codec.decode(withoutActionsMarker(items[i].actionText)) });
    } catch {
      // an example whose actions do not decode with this codec is not a prompt for RL
    }
  });
  return out;
}

/** Greedy evaluation on held-out prompts: mean reward, accuracy, L1 and format. */
export async function evaluateRl(runner: VlaRunner, prompts: Prompt[], rewarder: Rewarder, maxNewTokens: number): Promise<RlEval> {
  let reward = 0;
  let accuracy = 0;
  let format = 0;
  let l1 = 0;
  let l1n = 0;
  for (const p of prompts) {
    const g = await generate(runner, p.item.pixels, p.prompt, { maxNewTokens });
    const r = await rewarder.score(g.text, p.truth, p.prompt, g.ids.length);
    reward += r.total;
    accuracy += r.accuracy;
    format += r.format;
    if (r.l1 !== undefined) {
      l1 += r.l1;
      l1n += 1;
    }
  }
  const n = Math.max(prompts.length, 1);
  return { prompts: prompts.length, reward: reward / n, accuracy: accuracy / n, format: format / n, l1: l1n ? l1 / l1n : undefined };
}

/** Sequences [BOS prompt SEP completion (EOS)], padded, with the completion mask aligned to the log-prob grid. */
function completionBatch(tok: Tokenizer, rows: { prompt: string; completion: number[]; eos: boolean }[]): { ids: tf.Tensor2D; mask: tf.Tensor2D } {
  const seqs = rows.map((r) => {
    const p = [BOS, ...tok.encode(r.prompt), SEP];
    const c = r.eos ? [...r.completion, EOS] : r.completion;
    return { ids: [...p, ...c], start: p.length };
  });
  const T = Math.max(...seqs.map((s) => s.ids.length));
  const ids = new Int32Array(rows.length * T).fill(PAD);
  const mask = new Float32Array(rows.length * (T - 1));
  seqs.forEach((s, n) => {
    ids.set(s.ids, n * T);
    for (let t = s.start; t < s.ids.length; t++) mask[n * (T - 1) + t - 1] = 1; // position t-1 scores token t
  });
  return { ids: tf.tensor2d(ids, [rows.length, T], 'int32'), mask: tf.tensor2d(mask, [rows.length, T - 1]) };
}

/** The run's reward: the options' weights and accuracy mode; reasoning is expected when the training targets have some. */
export function rewarderFor(o: RlOptions, maxNew: number, train: Prompt[]): Rewarder {
  return new Rewarder(
    o.codec,
    { weights: { accuracy: 1, format: 0.1, length: 0, exec: o.rewardExec ? 1 : 0, ...o.rewards?.weights }, mode: o.rewards?.mode ?? 'l1', scale: o.rewards?.scale ?? 0.02, tolerance: o.rewards?.tolerance ?? 0.005, maxTokens: maxNew, expectReasoning: train.some((p) => p.item.reasoning.some((x) => x)) },
    o.rewardExec,
  );
}

/** Mean and standard deviation of one reward part over a step's completions. */
export function rewardStat(parts: RewardParts[], f: (r: RewardParts) => number): { mean: number; std: number } {
  const xs = parts.map(f);
  const m = xs.reduce((a, b) => a + b, 0) / xs.length;
  return { mean: m, std: Math.sqrt(xs.reduce((a, x) => a + (x - m) ** 2, 0) / xs.length) };
}

/**
 * The policy update of one GRPO step: `innerSteps` gradient steps of the clipped objective (with the KL penalty to
 * the reference) on the step's completions, for the built-in model and Hugging Face checkpoints alike. `logits`
 * recomputes the policy's logits [B, T, V] of `ids` [B, T] under the gradient tape.
 */
export function grpoUpdate(
  logits: () => tf.Tensor3D,
  ids: tf.Tensor2D,
  t: { oldLogp: tf.Tensor2D; refLogp: tf.Tensor2D; mask: tf.Tensor2D; adv: tf.Tensor1D },
  vars: tf.Variable[],
  opt: AdamW,
  lr: number,
  o: Pick<RlOptions, 'innerSteps' | 'clipEps' | 'beta'>,
): { loss: number; kl: number; clipFraction: number; gradNorm: number } {
  let kl = 0;
  let clipFraction = 0;
  let loss = 0;
  let gradNorm = 0;
  for (let k = 0; k < (o.innerSteps ?? 1); k++) {
    const { value, grads } = tf.variableGrads(() => {
      const obj = grpoObjective(tokenLogProbs(logits(), ids), t.oldLogp, t.refLogp, t.mask, t.adv, o.clipEps ?? 0.2, o.beta ?? 0.04);
      kl = obj.kl.dataSync()[0];
      clipFraction = obj.clipFraction.dataSync()[0];
      return obj.loss;
    }, vars);
    loss = value.dataSync()[0];
    value.dispose();
    gradNorm = opt.apply(vars, new Map(Object.entries(grads)), lr, 1);
    tf.dispose(Object.values(grads));
  }
  return { loss, kl, clipFraction, gradNorm };
}

/** One GRPO step's metrics record (metrics.jsonl), for the built-in model and Hugging Face checkpoints alike. */
export function stepMetrics(o: { step: number; loss: number; parts: RewardParts[]; exec: boolean; zeroStdShare: number; kl: number; clipFraction: number; completionLength: number; truncatedShare: number; gradNorm: number; genSecs: number; updSecs: number }): Record<string, unknown> {
  const stat = (f: (r: RewardParts) => number) => rewardStat(o.parts, f);
  return {
    step: o.step,
    loss: o.loss,
    reward: stat((r) => r.total),
    reward_accuracy: stat((r) => r.accuracy),
    reward_format: stat((r) => r.format),
    reward_length: stat((r) => r.length),
    ...(o.exec ? { reward_exec: stat((r) => r.exec) } : {}),
    zero_std_groups: o.zeroStdShare,
    kl: o.kl,
    clip_fraction: o.clipFraction,
    completion_length: o.completionLength,
    // the share of completions cut at --max-new-tokens (no end token): an answer cut off fails the format reward
    truncated: o.truncatedShare,
    grad_norm: o.gradNorm,
    time_generation_s: o.genSecs,
    time_update_s: o.updSecs,
  };
}

/** What makes a train-rl run the same run: its data, SFT checkpoint, every setting that shapes it, and the seed. */
export async function rlIdentity(o: RlOptions): Promise<RunIdentity> {
  const w = o.rewards?.weights;
  return {
    kind: 'train-rl',
    data: hashRecords(o.examples),
    seed: o.seed ?? 0,
    init: { path: o.init, hash: await hashCheckpoint(o.init) },
    mode: 'lora',
    config: {
      codec: JSON.stringify(o.codec.describe()),
      group: o.group ?? 8,
      'prompts-per-step': o.promptsPerStep ?? 4,
      steps: o.steps ?? 20,
      'max-prompts': o.maxPrompts ?? null,
      temperature: o.temperature ?? 1,
      'top-p': o.topP ?? 1,
      'max-new-tokens': o.maxNewTokens ?? 48,
      lr: o.lr ?? 1e-3,
      warmup: o.warmup ?? 0,
      'clip-eps': o.clipEps ?? 0.2,
      beta: o.beta ?? 0.04,
      'no-std-scaling': o.noStdScaling ?? false,
      'inner-steps': o.innerSteps ?? 1,
      'lora-r': o.lora?.r ?? 16,
      'lora-alpha': o.lora?.alpha ?? 32,
      'reward-accuracy': w?.accuracy ?? 1,
      'reward-format': w?.format ?? 0.1,
      'reward-length': w?.length ?? 0,
      'accuracy-mode': o.rewards?.mode ?? 'l1',
      'l1-scale': o.rewards?.scale ?? 0.02,
      tolerance: o.rewards?.tolerance ?? 0.005,
      reward: o.rewardExec ?? null,
    },
  };
}

/**
 * Runs RL from an SFT checkpoint; writes checkpoints and the final model like train-sft. A Hugging Face
 * checkpoint, or train-sft's adapter run on one, goes through hf-rl.ts (its processor, its LoRA adapter).
 */
export async function trainRl(o: RlOptions): Promise<{ steps: number; eval?: { before?: RlEval; after?: RlEval } }> {
  const run = await RunDir.open(o.outDir, await rlIdentity(o), { resume: o.resume, overwrite: o.overwrite, inputs: o.inputs });
  try {
    const { hfRlInit, hfRlInto } = await import('./hf-rl.js');
    if (hfRlInit(o.init)) return await hfRlInto(run, o);
    return await rlInto(run, o);
  } catch (err) {
    await run.abandon();
    throw err;
  }
}

async function rlInto(run: RunDir, o: RlOptions): Promise<{ steps: number; eval?: { before?: RlEval; after?: RlEval } }> {
  const seed = o.seed ?? 0;
  const G = o.group ?? 8;
  const P = o.promptsPerStep ?? 4;
  const maxNew = o.maxNewTokens ?? 48;
  const resumeDir = run.resumeFrom;
  const ck = loadCheckpoint(resumeDir ?? o.init);
  const model = ck.model;
  const tok = await loadTokenizer(ck.tokenizerJson);
  const runner = new TfjsRunner(ck.model, tok);
  if (!resumeDir) {
    // the SFT adapters become part of the reference; fresh adapters learn the alignment
    model.mergeLora();
    model.addLora(o.lora?.r ?? 16, o.lora?.alpha ?? 32, ['q', 'k', 'v', 'o', 'gate', 'up', 'down'], seed);
  }
  const cfg = model.config;
  const cameras = cfg.num_cameras;
  const size = cfg.vision_config.image_size;
  const items = await prepare(o.examples, tok, { cameras, imageSize: size, maxTokens: cfg.text_config.max_position_embeddings });
  const all = promptsOf(o.examples, items, o.codec);
  let train = all.filter((p) => p.item.split !== 'val');
  const held = all.filter((p) => p.item.split === 'val');
  if (o.maxPrompts) train = train.slice(0, o.maxPrompts);
  if (!train.length) throw new VlakitError('E_USAGE', 'no training prompts with actions that decode with the checkpoint\'s action representation');
  const rewarder = rewarderFor(o, maxNew, train);
  const vars = model.trainable();
  const total = o.steps ?? 20;
  const peak = o.lr ?? 1e-3;
  const opt = new AdamW({ weightDecay: 0 });
  let state: RlState = { step: 0, consumed: 0, seed, run: run.fingerprint };
  if (resumeDir) {
    state = run.readState(RlState);
    opt.load(readSafetensors(path.join(resumeDir, 'optimizer.safetensors')).tensors, state.step);
  }
  const orders = new Map<number, number[]>();
  const evals: { before?: RlEval; after?: RlEval } = {};
  if (o.evalEvery && held.length && state.step === 0) evals.before = await evaluateRl(runner, held, rewarder, maxNew);
  try {
    while (state.step < total) {
      o.signal?.throwIfAborted();
      const tGen = performance.now();
      const rows: { prompt: string; completion: number[]; eos: boolean; pixels: Float32Array }[] = [];
      const parts: RewardParts[] = [];
      const advantages: number[] = [];
      let zeroStd = 0;
      for (let p = 0; p < P; p++) {
        const pr = train[streamItem(state.consumed++, train.length, seed, orders)];
        const groupRewards: number[] = [];
        for (let g = 0; g < G; g++) {
          const gen = await generate(runner, pr.item.pixels, pr.prompt, { maxNewTokens: maxNew, temperature: o.temperature ?? 1, topP: o.topP ?? 1, seed: subSeed(subSeed(seed, state.step), p * G + g) });
          const r = await rewarder.score(gen.text, pr.truth, pr.prompt, gen.ids.length);
          parts.push(r);
          groupRewards.push(r.total);
          rows.push({ prompt: pr.prompt, completion: gen.ids, eos: gen.stop === 'eos', pixels: pr.item.pixels });
        }
        if (Math.max(...groupRewards) - Math.min(...groupRewards) < 1e-12) zeroStd += 1;
        advantages.push(...groupAdvantages(groupRewards, o.noStdScaling));
      }
      const genSecs = (performance.now() - tGen) / 1000;
      const tUpd = performance.now();
      const { ids, mask } = completionBatch(tok, rows);
      const px = tf.tensor5d(Float32Array.from(rows.flatMap((r) => Array.from(r.pixels))), [rows.length, cameras, size, size, 3]);
      const adv = tf.tensor1d(advantages);
      const oldLogp = tf.tidy(() => tokenLogProbs(model.forward(px, ids).logits, ids));
      model.lora!.enabled = false;
      const refLogp = tf.tidy(() => tokenLogProbs(model.forward(px, ids).logits, ids));
      model.lora!.enabled = true;
      const { loss, kl, clipFraction, gradNorm } = grpoUpdate(() => model.forward(px, ids).logits, ids, { oldLogp, refLogp, mask, adv }, vars, opt, lrAt(state.step, peak, o.warmup ?? 0, total), o);
      tf.dispose([ids, mask, px, adv, oldLogp, refLogp]);
      const updSecs = (performance.now() - tUpd) / 1000;
      state.step += 1;
      const m = stepMetrics({ step: state.step, loss, parts, exec: Boolean(o.rewardExec), zeroStdShare: zeroStd / P, kl, clipFraction, completionLength: rows.reduce((a, r) => a + r.completion.length, 0) / rows.length, truncatedShare: rows.filter((r) => !r.eos).length / rows.length, gradNorm, genSecs, updSecs });
      if (o.evalEvery && held.length && (state.step % o.evalEvery === 0 || state.step === total)) {
        const e = await evaluateRl(runner, held, rewarder, maxNew);
        evals.after = e;
        Object.assign(m, { val_reward: e.reward, val_accuracy: e.accuracy, val_action_l1: e.l1 ?? null, val_format: e.format });
      }
      await run.appendMetrics(m);
      o.onMetrics?.(m);
      if (o.saveEvery && state.step % o.saveEvery === 0 && state.step < total) {
        await run.save(state.step, (d) => writeCheckpointFiles(d, model, tok, opt, state, { codec: o.codec, actionStats: ck.actionStats, init: o.init }));
      }
    }
    await run.finalize(state.step, (d) => writeCheckpointFiles(d, model, tok, undefined, state, { codec: o.codec, actionStats: ck.actionStats, init: o.init }));
    return { steps: state.step, eval: evals };
  } finally {
    await rewarder.close();
    opt.dispose();
    model.dispose();
  }
}

