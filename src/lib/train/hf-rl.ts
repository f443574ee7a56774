/**
 * train-rl on a Hugging Face checkpoint: `--init` is train-sft's LoRA run on it (adapter_config.json +
 * adapter_model.safetensors + vlakit.json naming the base) or the checkpoint itself. Prompts come from its processor
 * (chat template, image tokens in place), completions are sampled from the policy as it is (the base with the
 * adapter being trained, KV cache) and stop at the processor's end-of-sequence ids; GRPO (grpo.ts, the objective
 * the built-in model's runs use) updates the adapter itself, and the reference policy is a frozen copy of the SFT
 * adapter (the base alone for a plain checkpoint), so KL is zero at step 0. The run is saved as train-sft saves
 * one: a PEFT adapter on the base with its HF module names, plus vlakit.json.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { VlakitError } from '../errors.js';
import { readJsonFile } from '../io/json-file.js';
import { TfjsCausalLm, generateIds } from '../infer/causal.js';
import { readPeftAdapter } from '../model/arch/adapter.js';
import { isHfCheckpoint, loadHfCheckpoint } from '../model/arch/hf.js';
import { openProcessor } from '../model/processor/index.js';
import type { Processor } from '../model/processor/types.js';
import { readSafetensors } from '../model/safetensors.js';
import { subSeed } from '../util/rng.js';
import { disposeBatch, makeBatch, type Prepared } from './data.js';
import { groupAdvantages, tokenLogProbs } from './grpo.js';
import { HfLoraModel } from './hf-model.js';
import { HfTrainee, VLAKIT_ADAPTER_FILE, type VlakitAdapter, VlakitAdapterSchema } from './hf-sft.js';
import { AdamW, lrAt } from './optim.js';
import type { RewardParts, Rewarder } from './rewards.js';
import { type Prompt, type RlEval, type RlOptions, grpoUpdate, promptsOf, rewardStat, rewarderFor, stepMetrics } from './rl.js';
import { type RunDir, TrainerStateBase } from './run-dir.js';
import { streamItem } from './sft.js';

/** The VLM2VLA LoRA targets, for RL straight on a checkpoint (no SFT adapter). */
const DEFAULT_TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];

export interface HfRlInit {
  /** The base checkpoint directory. */
  base: string;
  /** The SFT adapter run (undefined: RL on the checkpoint itself). */
  adapter?: string;
  meta?: VlakitAdapter;
}

/**
 * What `--init` is for train-rl on a Hugging Face model: an adapter run of train-sft (vlakit.json beside a PEFT
 * adapter) or a checkpoint; undefined for the built-in model's checkpoints.
 */
export function hfRlInit(init: string): HfRlInit | undefined {
  const metaFile = path.join(init, VLAKIT_ADAPTER_FILE);
  if (existsSync(metaFile) && existsSync(path.join(init, 'adapter_config.json'))) {
    const meta = readJsonFile(metaFile, VlakitAdapterSchema, { what: 'vlakit adapter metadata', code: 'E_MODEL' });
    if (!isHfCheckpoint(meta.base_model)) throw new VlakitError('E_NOT_FOUND', `the adapter's base model ${meta.base_model} is not a Hugging Face checkpoint here (base_model in vlakit.json, as train-sft was given it)`, { file: metaFile, field: 'base_model' });
    return { base: meta.base_model, adapter: init, meta };
  }
  if (isHfCheckpoint(init)) return { base: init };
  return undefined;
}

interface Row {
  item: Prepared;
  /** Where the completion starts in item.ids. */
  start: number;
  /** The sampler stopped at an end token (not at --max-new-tokens). */
  eos: boolean;
}

/** Greedy evaluation on held-out prompts through the processor: mean reward, accuracy, L1 and format. */
async function evaluateHf(lm: TfjsCausalLm, proc: Processor, prompts: Prompt[], rewarder: Rewarder, maxNewTokens: number): Promise<RlEval> {
  const parts: RewardParts[] = [];
  for (const p of prompts) {
    const ids = p.item.ids.slice(0, p.item.promptLength);
    const g = await generateIds(lm, ids, { images: p.item.tiles ? p.item.pixels : undefined, maxNewTokens, eosIds: proc.special.eos });
    parts.push(await rewarder.score(proc.decode(g.ids, { skipSpecial: true }), p.truth, p.prompt, g.ids.length));
  }
  const l1s = parts.filter((r) => r.l1 !== undefined).map((r) => r.l1!);
  const mean = (f: (r: RewardParts) => number) => (parts.length ? rewardStat(parts, f).mean : 0);
  return { prompts: prompts.length, reward: mean((r) => r.total), accuracy: mean((r) => r.accuracy), format: mean((r) => r.format), l1: l1s.length ? l1s.reduce((a, b) => a + b, 0) / l1s.length : undefined };
}

/** train-rl's loop for a Hugging Face checkpoint (see the module comment); `run` is open. */
export async function hfRlInto(run: RunDir, o: RlOptions): Promise<{ steps: number; eval?: { before?: RlEval; after?: RlEval } }> {
  const init = hfRlInit(o.init)!;
  const seed = o.seed ?? 0;
  const G = o.group ?? 8;
  const P = o.promptsPerStep ?? 4;
  const maxNew = o.maxNewTokens ?? 48;
  const ck = loadHfCheckpoint(init.base);
  const proc = await openProcessor(init.base);
  if (!proc.hasTokenizer) throw new VlakitError('E_USAGE', `train-rl needs the model's tokenizer (tokenizer.json in ${init.base})`, { file: init.base });
  let model: HfLoraModel;
  if (init.adapter) {
    const sft = readPeftAdapter(init.adapter);
    const modules = [...sft.tensors.keys()];
    model = new HfLoraModel(ck, { r: sft.config.r, alpha: sft.config.lora_alpha, targets: [...new Set(modules.map((m) => m.split('.').pop()!))], modules, freezeVision: init.meta?.lora.freeze_vision, seed });
    model.loadAdapter(sft.tensors, path.join(init.adapter, 'adapter_model.safetensors'));
  } else {
    model = new HfLoraModel(ck, { r: o.lora?.r ?? 16, alpha: o.lora?.alpha ?? 32, targets: DEFAULT_TARGETS, seed });
  }
  // the reference policy: the SFT adapter as it starts (frozen), beside the adapter that trains
  const reference = model.frozenAdapter();
  const trainee = new HfTrainee(model, proc, init.base);
  const resumeDir = run.resumeFrom;
  if (resumeDir) trainee.resume(resumeDir);
  // samples from the policy as it is now (a frozen vision tower's features from the run's cache)
  const lm = new TfjsCausalLm(ck, { params: model.params, lora: model.lora, features: model.freezeVision ? (px, tiles) => model.features(px, tiles) : undefined });
  const actionStats = init.adapter && existsSync(path.join(init.adapter, 'action_stats.json')) ? (JSON.parse(readFileSync(path.join(init.adapter, 'action_stats.json'), 'utf8')) as unknown) : undefined;
  const opt = new AdamW({ weightDecay: 0 });
  let rewarder: Rewarder | undefined;
  try {
    const items = await trainee.prepare(o.examples);
    const all = promptsOf(o.examples, items, o.codec);
    let train = all.filter((p) => p.item.split !== 'val');
    const held = all.filter((p) => p.item.split === 'val');
    if (o.maxPrompts) train = train.slice(0, o.maxPrompts);
    if (!train.length) throw new VlakitError('E_USAGE', 'no training prompts with actions that decode with the adapter\'s action representation');
    rewarder = rewarderFor(o, maxNew, train);
    const vars = model.trainable();
    const total = o.steps ?? 20;
    const peak = o.lr ?? 1e-3;
    let state = { step: 0, consumed: 0, seed, run: run.fingerprint };
    if (resumeDir) {
      state = run.readState(TrainerStateBase);
      opt.load(readSafetensors(path.join(resumeDir, 'optimizer.safetensors')).tensors, state.step);
    }
    const orders = new Map<number, number[]>();
    const evals: { before?: RlEval; after?: RlEval } = {};
    if (o.evalEvery && held.length && state.step === 0) evals.before = await evaluateHf(lm, proc, held, rewarder, maxNew);
    while (state.step < total) {
      o.signal?.throwIfAborted();
      const tGen = performance.now();
      const rows: Row[] = [];
      const parts: RewardParts[] = [];
      const advantages: number[] = [];
      let zeroStd = 0;
      for (let p = 0; p < P; p++) {
        const pr = train[streamItem(state.consumed++, train.length, seed, orders)];
        const prompt = pr.item.ids.slice(0, pr.item.promptLength);
        const groupRewards: number[] = [];
        for (let g = 0; g < G; g++) {
          const gen = await generateIds(lm, prompt, { images: pr.item.tiles ? pr.item.pixels : undefined, maxNewTokens: maxNew, temperature: o.temperature ?? 1, topP: o.topP ?? 1, seed: subSeed(subSeed(seed, state.step), p * G + g), eosIds: proc.special.eos });
          const r = await rewarder.score(proc.decode(gen.ids, { skipSpecial: true }), pr.truth, pr.prompt, gen.ids.length);
          parts.push(r);
          groupRewards.push(r.total);
          const ids = [...prompt, ...gen.ids];
          rows.push({ item: { ...pr.item, ids, action: ids.map(() => 0), reasoning: ids.map(() => 0) }, start: prompt.length, eos: gen.stop === 'eos' }); // an eos the sampler stopped at is scored too
        }
        if (Math.max(...groupRewards) - Math.min(...groupRewards) < 1e-12) zeroStd += 1;
        advantages.push(...groupAdvantages(groupRewards, o.noStdScaling));
      }
      const genSecs = (performance.now() - tGen) / 1000;
      const tUpd = performance.now();
      const items = rows.map((r) => r.item);
      const batch = makeBatch(items, trainee.layout); // ids [N, T] padded with the processor's pad id, pixel tiles in row order
      const T = batch.ids.shape[1];
      const maskData = new Float32Array(rows.length * (T - 1));
      rows.forEach((r, n) => {
        for (let t = r.start; t < r.item.ids.length; t++) maskData[n * (T - 1) + t - 1] = 1; // position t-1 scores token t
      });
      const mask = tf.tensor2d(maskData, [rows.length, T - 1]);
      const adv = tf.tensor1d(advantages);
      const oldLogp = tf.tidy(() => tokenLogProbs(trainee.logits(batch, items), batch.ids));
      const refLogp = tf.tidy(() => tokenLogProbs(trainee.logits(batch, items, { adapter: reference }), batch.ids));
      const { loss, kl, clipFraction, gradNorm } = grpoUpdate(() => trainee.logits(batch, items), batch.ids, { oldLogp, refLogp, mask, adv }, vars, opt, lrAt(state.step, peak, o.warmup ?? 0, total), o);
      disposeBatch(batch);
      tf.dispose([mask, adv, oldLogp, refLogp]);
      const updSecs = (performance.now() - tUpd) / 1000;
      state.step += 1;
      const m = stepMetrics({ step: state.step, loss, parts, exec: Boolean(o.rewardExec), zeroStdShare: zeroStd / P, kl, clipFraction, completionLength: rows.reduce((a, r) => a + r.item.ids.length - r.start, 0) / rows.length, truncatedShare: rows.filter((r) => !r.eos).length / rows.length, gradNorm, genSecs, updSecs });
      if (o.evalEvery && held.length && (state.step % o.evalEvery === 0 || state.step === total)) {
        const e = await evaluateHf(lm, proc, held, rewarder, maxNew);
        evals.after = e;
        Object.assign(m, { val_reward: e.reward, val_accuracy: e.accuracy, val_action_l1: e.l1 ?? null, val_format: e.format });
      }
      await run.appendMetrics(m);
      o.onMetrics?.(m);
      if (o.saveEvery && state.step % o.saveEvery === 0 && state.step < total) await run.save(state.step, (d) => trainee.save(d, opt, state, { codec: o.codec, actionStats }));
    }
    await run.finalize(state.step, (d) => trainee.save(d, undefined, state, { codec: o.codec, actionStats }));
    return { steps: state.step, eval: evals };
  } finally {
    await rewarder?.close();
    opt.dispose();
    tf.dispose([...reference.values()]);
    lm.dispose();
    trainee.dispose();
  }
}
