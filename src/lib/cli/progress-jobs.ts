/**
 * What each long job shows in its progress: the figures of a training step, a rollout's success so far, an
 * annotation run's requests. Kept out of the commands, which only pass their callbacks' records here.
 */
import { fmtNum } from './progress-format.js';
import type { Teacher } from '../teacher/types.js';
import type { Progress, ProgressState } from './progress.js';

export const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
const num = (x: unknown) => (typeof x === 'number' && Number.isFinite(x) ? x : undefined);

/** The loss (or reward) series the sparkline draws: the last 5000 values. */
function pushSeries(values: number[], x: number | undefined): number[] {
  if (x === undefined) return values;
  values.push(x);
  if (values.length > 5000) values.splice(0, values.length - 5000);
  return values;
}

/** train-sft's metrics records (sft.ts onMetrics) as progress: figures, the loss sparkline, evaluations and checkpoints. */
export function sftProgress(progress: Progress, o: { saveEvery?: number }): (m: Record<string, unknown>, run?: { totalSteps: number }) => void {
  const losses: number[] = [];
  let lastEval: string | undefined;
  let lastCheckpoint: string | undefined;
  return (m, run) => {
    const step = m.step as number;
    const total = run?.totalSteps;
    const loss = num(m.loss);
    const figures = [`loss ${fmtNum(loss ?? NaN)}`];
    if (num(m.reasoning_loss)) figures.push(`action ${fmtNum(num(m.action_loss) ?? NaN)}`, `reasoning ${fmtNum(num(m.reasoning_loss)!)}`);
    if (num(m.lr) !== undefined) figures.push(`lr ${fmtNum(num(m.lr)!)}`);
    if (num(m.grad_norm) !== undefined) figures.push(`grad ${fmtNum(num(m.grad_norm)!)}`);
    if (num(m.tokens_per_s) !== undefined) figures.push(`${fmtNum(num(m.tokens_per_s)!)} tok/s`);
    const acc = num(m.val_action_token_accuracy);
    if (acc !== undefined) {
      const l1 = num(m.val_action_l1);
      lastEval = `val action token accuracy ${pct(acc)}${l1 !== undefined ? `, action L1 ${l1.toFixed(4)} m` : ''}${num(m.val_undecodable) ? `, ${m.val_undecodable} undecodable` : ''}`;
      progress.event(`eval step ${step}${total ? `/${total}` : ''}: ${lastEval}`);
      lastEval = `last eval (step ${step}): ${lastEval}`;
    }
    // the checkpoint of this step is written right after this record
    if (o.saveEvery && step % o.saveEvery === 0 && (total === undefined || step < total)) lastCheckpoint = `checkpoint: step ${step}`;
    progress.update({ records: step, total, unit: 'steps', figures, spark: { name: 'loss', values: pushSeries(losses, loss) }, lines: [lastEval, lastCheckpoint].filter((x): x is string => x !== undefined) });
  };
}

/** train-rl's metrics records (GRPO steps) as progress: reward, KL, the reward sparkline, held-out evaluations. */
export function rlProgress(progress: Progress, o: { totalSteps: number; saveEvery?: number }): (m: Record<string, unknown>) => void {
  const rewards: number[] = [];
  let lastEval: string | undefined;
  let lastCheckpoint: string | undefined;
  return (m) => {
    const step = m.step as number;
    const reward = num((m.reward as { mean?: number } | undefined)?.mean);
    const figures = [`reward ${fmtNum(reward ?? NaN)}`, `kl ${fmtNum(num(m.kl) ?? NaN)}`, `loss ${fmtNum(num(m.loss) ?? NaN)}`];
    if (num(m.grad_norm) !== undefined) figures.push(`grad ${fmtNum(num(m.grad_norm)!)}`);
    if (num(m.clip_fraction) !== undefined) figures.push(`clip ${fmtNum(num(m.clip_fraction)!)}`);
    if (num(m.completion_length) !== undefined) figures.push(`len ${fmtNum(num(m.completion_length)!)}`);
    const vr = num(m.val_reward);
    if (vr !== undefined) {
      const l1 = num(m.val_action_l1);
      lastEval = `val reward ${fmtNum(vr)}, accuracy ${fmtNum(num(m.val_accuracy) ?? NaN)}${l1 !== undefined ? `, action L1 ${l1.toFixed(4)} m` : ''}`;
      progress.event(`eval step ${step}/${o.totalSteps}: ${lastEval}`);
      lastEval = `last eval (step ${step}): ${lastEval}`;
    }
    if (o.saveEvery && step % o.saveEvery === 0 && step < o.totalSteps) lastCheckpoint = `checkpoint: step ${step}`;
    progress.update({ records: step, total: o.totalSteps, unit: 'steps', figures, spark: { name: 'reward', values: pushSeries(rewards, reward) }, lines: [lastEval, lastCheckpoint].filter((x): x is string => x !== undefined) });
  };
}

/**
 * annotate's usage counters as progress: steps annotated (of the input's, when known ahead: the ETA then follows the
 * observed rate), then requests sent and in flight, episodes, cache hits, retries, failures, re-asks, annotation
 * errors, tokens and cost so far. `input` is the input meter's state (its total, or its bytes read of its size).
 */
export function annotateProgress(u: AnnotateUsage, o: { inFlight?: number; input?: Partial<ProgressState> } = {}): Partial<ProgressState> {
  return { records: u.steps, unit: 'steps', ...o.input, figures: annotateFigures(u, o.inFlight) };
}

type AnnotateUsage = { episodes: number; steps: number; requests: number; cacheHits: number; retries: number; failures: number; reasks: number; errors: number; inputTokens: number; outputTokens: number; cost?: number };

function annotateFigures(u: AnnotateUsage, inFlight: number | undefined): string[] {
  return [`requests ${u.requests}`, ...(inFlight !== undefined ? [`in flight ${inFlight}`] : []), `episodes ${u.episodes}`, `cached ${u.cacheHits}`, `retries ${u.retries}`, `failures ${u.failures}`, `reasks ${u.reasks}`, `errors ${u.errors}`, `tokens ${fmtNum(u.inputTokens + u.outputTokens)}`, ...(u.cost !== undefined ? [`cost $${u.cost.toFixed(3)}`] : [])];
}

/** The teacher, watched: `inFlight()` tells the requests sent and not yet answered (a cache hit sends none). */
export function watchInFlight<T extends Pick<Teacher, 'complete'>>(teacher: T): { teacher: T; inFlight: () => number } {
  let n = 0;
  const watched = Object.create(teacher) as T;
  watched.complete = async (req, signal) => {
    n++;
    try {
      return await teacher.complete(req, signal);
    } finally {
      n--;
    }
  };
  return { teacher: watched, inFlight: () => n };
}

/** eval-vqa's samples as progress: questions done of all models' questions, the current model's mean score per benchmark so far. */
export function vqaProgress(progress: Progress, total: number): (model: string) => (s: { benchmark: string; score: number }) => void {
  let done = 0;
  return (model) => {
    const by = new Map<string, { n: number; sum: number }>();
    return (s) => {
      const b = by.get(s.benchmark) ?? { n: 0, sum: 0 };
      b.n++;
      b.sum += s.score;
      by.set(s.benchmark, b);
      const figures = [`model ${model}`, ...[...by].map(([name, v]) => `${name} ${pct(v.sum / v.n)}`)];
      progress.update({ records: ++done, total, unit: 'questions', figures });
    };
  };
}

/** A job made of named stages (export): the bar counts the stages before the current one, the figure names it. */
export function stageProgress(progress: Progress, stages: readonly string[]): (stage: string) => void {
  return (stage) => {
    const i = stages.indexOf(stage);
    progress.update({ records: Math.max(0, i), total: stages.length, unit: 'stages', figures: [`${stage}`] });
  };
}
