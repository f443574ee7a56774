/**
 * Rewards of train-rl, each reported on its own and weighted into the total: action accuracy against the
 * ground-truth actions (1 - normalized L1, or the share of dimensions within a tolerance, per chunk), format
 * (the completion parses into actions, with a rationale when one is expected), an optional length penalty, and an
 * optional external scorer in a child process.
 */
import type { ActionCodec } from '../actions/codecs.js';
import { ACTIONS_MARKER } from '../actions/prompts.js';
import { JsonLinesProcess } from '../util/child.js';
import { VlakitError } from '../errors.js';

export interface RewardWeights {
  accuracy: number;
  format: number;
  length: number;
  exec: number;
}

export interface RewardOptions {
  weights: RewardWeights;
  mode: 'l1' | 'tolerance';
  /** l1: the L1 error (meters) that scores 0. */
  scale: number;
  /** tolerance: a dimension within this error (meters) counts as right. */
  tolerance: number;
  maxTokens: number;
  expectReasoning: boolean;
}

export interface RewardParts {
  accuracy: number;
  format: number;
  length: number;
  exec: number;
  total: number;
  /** Mean absolute error of the decoded actions (undefined when they do not decode). */
  l1?: number;
}

/** Splits a completion into its rationale and its actions ("<Actions>: ..." or the whole text). */
export function splitCompletion(text: string): { reasoning: string; actions: string } {
  const i = text.indexOf(ACTIONS_MARKER);
  return i < 0 ? { reasoning: '', actions: text.trim() } : { reasoning: text.slice(0, i).trim(), actions: text.slice(i + ACTIONS_MARKER.length).trim() };
}

/**
 * Accuracy of predicted actions against the truth; a missing action counts as fully wrong. `l1` is the mean error
 * over all dimensions, translation errors capped at `scale` and a wrong gripper counted as `scale`.
 */
export function actionAccuracy(pred: number[][], truth: number[][], o: Pick<RewardOptions, 'mode' | 'scale' | 'tolerance'>): { score: number; l1: number } {
  let err = 0;
  let right = 0;
  let n = 0;
  truth.forEach((a, i) =>
    a.forEach((v, k) => {
      const p = pred[i]?.[k];
      const e = p === undefined || !Number.isFinite(p) ? Infinity : Math.abs(p - v);
      // gripper: 0/1, judged by side of 0.5
      const ok = k === a.length - 1 ? p !== undefined && p >= 0.5 === v >= 0.5 : e <= o.tolerance;
      if (ok) right += 1;
      err += k === a.length - 1 ? (ok ? 0 : 1) * o.scale : Math.min(e, o.scale);
      n += 1;
    }),
  );
  const l1 = err / Math.max(n, 1);
  return { score: o.mode === 'l1' ? 1 - Math.min(1, l1 / o.scale) : right / Math.max(n, 1), l1 };
}

export class Rewarder {
  private readonly child?: JsonLinesProcess;
  constructor(
    readonly codec: ActionCodec,
    readonly o: RewardOptions,
    execCommand?: string,
  ) {
    if (execCommand) this.child = new JsonLinesProcess(execCommand);
  }

  async score(completion: string, truth: number[][], prompt: string, tokens: number): Promise<RewardParts> {
    const { reasoning, actions } = splitCompletion(completion);
    let pred: number[][] | undefined;
    try {
      pred = this.codec.decode(actions);
    } catch {
      pred = undefined;
    }
    const format = pred && (!this.o.expectReasoning || reasoning.length > 0) ? 1 : 0;
    const acc = pred ? actionAccuracy(pred, truth, this.o) : { score: 0, l1: undefined };
    const length = -tokens / Math.max(1, this.o.maxTokens);
    let exec = 0;
    if (this.child) {
      const line = await this.child.request(JSON.stringify({ prompt, completion, ground_truth: truth }));
      const m = line === undefined ? undefined : (JSON.parse(line) as { reward?: unknown });
      if (typeof m?.reward !== 'number') throw new VlakitError('E_USAGE', `the reward process answered ${line?.slice(0, 80) ?? 'nothing'}; expected {"reward": number}`);
      exec = m.reward;
    }
    const w = this.o.weights;
    return { accuracy: acc.score, format, length, exec, total: w.accuracy * acc.score + w.format * format + w.length * length + w.exec * exec, l1: acc.l1 };
  }

  close(): Promise<void> {
    return this.child?.close() ?? Promise.resolve();
  }
}
