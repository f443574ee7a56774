/**
 * Open-loop replay: the policy answers the action prompts of recorded demonstrations (the training examples that
 * relabel makes, train and held-out episodes alike), and its actions are compared with the expert's, per action
 * dimension and per split. A train/val gap, or a model no better than standing still, shows here before any
 * closed-loop run. The upstream stages are the expert's (teacher-forced): the subtask and motion plan in each
 * prompt are the recorded ones, not the model's.
 */
import { codecFor } from '../actions/index.js';
import type { ActionCodec } from '../actions/codecs.js';
import type { TrainingExample } from '../actions/examples.js';
import { ACTIONS_MARKER } from '../actions/prompts.js';
import { VlakitError } from '../errors.js';
import { type VlaRunner, generateFrom } from '../infer/index.js';
import type { ImageJson } from '../io/json.js';
import sharp from 'sharp';

/** Text a policy writes for an example's prompt (and images): the model's generation, or, for checks, the expert's own target. */
export type Predictor = (ex: TrainingExample) => Promise<string> | string;

/** The "policy" that replays the expert's own actions: its target text. Its error is zero by construction. */
export const expertPredictor: Predictor = (ex) => targetTextOf(ex);

function targetTextOf(ex: TrainingExample): string {
  const c = ex.messages[1]?.content[0];
  return c && c.type === 'text' ? c.text : '';
}

/** The user turn's text: the prompt the policy gets. */
export function promptOf(ex: TrainingExample): string {
  return ex.messages[0].content.map((c) => (c.type === 'text' ? c.text : '')).join('');
}

/** An example whose target holds actions: VLM2VLA's action stage, ReFineVLA's (reasoning then actions), VLM2VLA-NR. */
export function hasActions(ex: TrainingExample): boolean {
  return ex.spans.some((s) => s.kind === 'action');
}

/** The action text of a target or a generation: after the last "<Actions>:" when there is one. */
export function actionText(text: string): string {
  const at = text.lastIndexOf(ACTIONS_MARKER);
  return (at < 0 ? text : text.slice(at + ACTIONS_MARKER.length)).trim();
}

export interface SplitReport {
  split: string;
  /** Action examples replayed. */
  examples: number;
  /** Generations that decoded as an action chunk. */
  parsed: number;
  /** Actions compared (the first min(predicted, expert) of each chunk). */
  actions: number;
  /** Chunks whose length differs from the expert's. */
  lengthMismatches: number;
  /** Names of the action dimensions: dx, dy, dz, (droll, dpitch, dyaw,) gripper. */
  dims: string[];
  /** Per dimension, mean |policy - expert| (translations in meters, as the actions are). */
  meanAbsError: number[];
  /**
   * Per dimension, the error of a policy that never moves (a baseline to beat): mean |expert| for delta actions; for
   * absolute targets (relabel --waypoints), mean |target - the position in the prompt's robot state|.
   */
  zeroBaseline: number[];
  /** Mean Euclidean error of the translation (dx, dy, dz), meters. */
  translationError: number;
  /** Share of compared actions whose gripper command (open >= 0.5, closed below) is the expert's. */
  gripperAccuracy: number;
  /** The same over the first action of each chunk only (what the robot does first). */
  firstAction: { meanAbsError: number[]; gripperAccuracy: number };
  /**
   * With `blankImages`: the same examples answered with every image replaced by a blank (mid-grey) one. A policy
   * that reads its images changes its answers and does worse blind; one whose answers do not change has learned the
   * action text's marginal distribution, not a function of the scene.
   */
  blank?: {
    /** Examples answered both ways. */
    examples: number;
    /** Of them, how many answers changed (text). */
    changed: number;
    /** Mean |error| per dimension of the blind answers that decoded (gripper: share of wrong commands). */
    meanAbsError: number[];
    gripperAccuracy: number;
  };
}

export interface ReplayReport {
  splits: SplitReport[];
  /** Examples whose generation did not decode, with why (the first few). */
  failures: { id: string; split: string; error: string; text: string }[];
}

export interface ReplayOptions {
  /** How the policy writes actions (default: each example's own representation, text or words). */
  codec?: ActionCodec;
  /** Replay at most this many action examples per split. */
  limit?: number;
  signal?: AbortSignal;
  /** Called after each example. */
  onExample?: () => void;
  /** Answer each example a second time with blank images (see SplitReport.blank). */
  blankImages?: boolean;
}

/** A 16 x 16 mid-grey PNG: the blank image of the image ablation (the model resizes it to its own size). */
let BLANK: Promise<ImageJson> | undefined;
function blankImage(): Promise<ImageJson> {
  BLANK ??= sharp({ create: { width: 16, height: 16, channels: 3, background: { r: 128, g: 128, b: 128 } } })
    .png()
    .toBuffer()
    .then((b) => ({ mime: 'image/png', b64: b.toString('base64') }));
  return BLANK;
}

function dimNames(n: number): string[] {
  return n === 7 ? ['dx', 'dy', 'dz', 'droll', 'dpitch', 'dyaw', 'gripper'] : n === 4 ? ['dx', 'dy', 'dz', 'gripper'] : Array.from({ length: n }, (_, i) => (i === n - 1 ? 'gripper' : `a${i}`));
}

class Acc {
  examples = 0;
  parsed = 0;
  actions = 0;
  lengthMismatches = 0;
  dims = 0;
  abs: number[] = [];
  zero: number[] = [];
  trans = 0;
  grip = 0;
  firstN = 0;
  firstAbs: number[] = [];
  firstGrip = 0;
  blind?: Acc;
  blindExamples = 0;
  changed = 0;

  /** `here`: for absolute targets, the current position (what "not moving" targets); undefined for deltas. */
  add(pred: number[][], expert: number[][], here?: readonly number[]): void {
    this.parsed++;
    if (pred.length !== expert.length) this.lengthMismatches++;
    const n = Math.min(pred.length, expert.length);
    for (let i = 0; i < n; i++) {
      const p = pred[i];
      const e = expert[i];
      if (!this.dims) {
        this.dims = e.length;
        this.abs = new Array(e.length).fill(0);
        this.zero = new Array(e.length).fill(0);
        this.firstAbs = new Array(e.length).fill(0);
      }
      if (p.length !== this.dims || e.length !== this.dims) throw new VlakitError('E_RECORD_INVALID', `actions of ${p.length} and ${e.length} dimensions cannot be compared with ${this.dims}-D ones`);
      const g = this.dims - 1;
      for (let k = 0; k < this.dims; k++) {
        // the gripper is compared as a command: open or closed
        const err = k === g ? Number(p[k] >= 0.5 !== e[k] >= 0.5) : Math.abs(p[k] - e[k]);
        const zeroErr = k === g ? Number(e[k] < 0.5) : Math.abs(e[k] - (here?.[k] ?? 0));
        this.abs[k] += err;
        this.zero[k] += zeroErr;
        if (i === 0) this.firstAbs[k] += err;
      }
      this.trans += Math.hypot(p[0] - e[0], p[1] - e[1], p[2] - e[2]);
      const same = p[g] >= 0.5 === e[g] >= 0.5;
      this.grip += Number(same);
      this.actions++;
      if (i === 0) {
        this.firstN++;
        this.firstGrip += Number(same);
      }
    }
  }

  report(split: string): SplitReport {
    const mean = (xs: number[], n: number) => xs.map((x) => (n ? x / n : 0));
    return {
      split,
      examples: this.examples,
      parsed: this.parsed,
      actions: this.actions,
      lengthMismatches: this.lengthMismatches,
      dims: dimNames(this.dims || 4),
      meanAbsError: mean(this.abs, this.actions),
      zeroBaseline: mean(this.zero, this.actions),
      translationError: this.actions ? this.trans / this.actions : 0,
      gripperAccuracy: this.actions ? this.grip / this.actions : 0,
      firstAction: { meanAbsError: mean(this.firstAbs, this.firstN), gripperAccuracy: this.firstN ? this.firstGrip / this.firstN : 0 },
      ...(this.blind ? { blank: { examples: this.blindExamples, changed: this.changed, meanAbsError: mean(this.blind.abs, this.blind.actions), gripperAccuracy: this.blind.actions ? this.blind.grip / this.blind.actions : 0 } } : {}),
    };
  }
}

/**
 * For absolute targets: the end-effector position of the prompt's robot-state line (relabel --state), in meters
 * at the translation dims of the codec's layout, so that "not moving" can be scored. An example without one is a
 * data error: an absolute target has no never-move baseline without the position it starts from.
 */
function promptPosition(ex: TrainingExample, codec: ActionCodec): number[] {
  const m = /Robot state: \[([^\]]+)\]/.exec(promptOf(ex));
  const L = codec.layout!;
  if (!m) throw new VlakitError('E_RECORD_INVALID', `replay of absolute targets needs the robot state in the prompt (relabel --state) to score a policy that does not move; example ${ex.id} has none`);
  const spec = codec.describe() as { units?: string };
  const scale = spec.units === 'cm' ? 0.01 : 1;
  const values = m[1].split(',').map((v) => Number(v) * scale);
  const out = new Array(L.dims).fill(0);
  L.translation.forEach((k, n) => (out[k] = values[n]));
  return out;
}

/**
 * Replays the action examples among `examples` through `predict` and compares with the expert's actions, by split.
 * In the gripper column the mean |error| is the share of wrong open/closed commands.
 * @example const r = await replay(examples, expertPredictor) // every meanAbsError is 0
 */
export async function replay(examples: Iterable<TrainingExample> | AsyncIterable<TrainingExample>, predict: Predictor, o: ReplayOptions = {}): Promise<ReplayReport> {
  const accs = new Map<string, Acc>();
  const failures: ReplayReport['failures'] = [];
  for await (const ex of examples) {
    o.signal?.throwIfAborted();
    if (!hasActions(ex)) continue;
    const split = ex.meta.split;
    let acc = accs.get(split);
    if (!acc) accs.set(split, (acc = new Acc()));
    if (o.limit !== undefined && acc.examples >= o.limit) continue;
    const codec = o.codec ?? codecFor(ex.meta.representation, ex.meta.codec);
    const own = codecFor(ex.meta.representation, ex.meta.codec);
    if (!codec || !own) throw new VlakitError('E_USAGE', `replay cannot rebuild the action codec of example ${ex.id} ("${ex.meta.representation}" with no codec spec in meta.codec)`);
    const target = targetTextOf(ex);
    const span = ex.spans.find((s) => s.kind === 'action')!;
    const expert = own.decode(actionText(target.slice(span.start, span.end)));
    const here = own.layout?.mode === 'absolute' ? promptPosition(ex, own) : undefined;
    acc.examples++;
    const text = await predict(ex);
    let pred: number[][];
    try {
      pred = codec.decode(actionText(text));
      if (!pred.length) throw new Error('an empty chunk');
    } catch (err) {
      if (failures.length < 20) failures.push({ id: ex.id, split, error: (err as Error).message, text: text.slice(0, 200) });
      o.onExample?.();
      continue;
    }
    acc.add(pred, expert, here);
    if (o.blankImages) {
      const blank = await blankImage();
      const blindText = await predict({ ...ex, images: ex.images.map(() => blank) });
      acc.blind ??= new Acc();
      acc.blindExamples++;
      if (blindText !== text) acc.changed++;
      try {
        acc.blind.add(codec.decode(actionText(blindText)), expert, here);
      } catch {
        // a blind answer that does not decode counts as changed and adds no error
      }
    }
    o.onExample?.();
  }
  // train first, then the held-out splits by name
  const order = [...accs.keys()].sort((a, b) => (a === 'train' ? -1 : b === 'train' ? 1 : a.localeCompare(b)));
  return { splits: order.map((s) => accs.get(s)!.report(s)), failures };
}

/** The report as a table: per split, mean |error| per dimension (translations in mm), the never-move baseline beside it, gripper accuracy. */
export function formatReplay(r: ReplayReport): string {
  if (!r.splits.length) return 'no action examples to replay';
  const dims = r.splits[0].dims;
  const lines = [`${'split'.padEnd(8)} ${'examples'.padStart(8)} ${'parsed'.padStart(7)} ${'actions'.padStart(8)} ${dims.slice(0, -1).map((d) => `${d} mm`.padStart(9)).join(' ')} ${'trans mm'.padStart(9)} ${'gripper'.padStart(8)} ${'first gripper'.padStart(13)}`];
  const mm = (x: number) => (x * 1000).toFixed(2).padStart(9);
  for (const s of r.splits) {
    if (!s.actions) {
      // nothing decoded: no error to show (not 0, and not NaN)
      lines.push(`${s.split.padEnd(8)} ${String(s.examples).padStart(8)} ${String(s.parsed).padStart(7)} ${String(s.actions).padStart(8)}   no decoded actions to compare`);
      continue;
    }
    lines.push(`${s.split.padEnd(8)} ${String(s.examples).padStart(8)} ${String(s.parsed).padStart(7)} ${String(s.actions).padStart(8)} ${s.meanAbsError.slice(0, -1).map(mm).join(' ')} ${mm(s.translationError)} ${`${(s.gripperAccuracy * 100).toFixed(1)}%`.padStart(8)} ${`${(s.firstAction.gripperAccuracy * 100).toFixed(1)}%`.padStart(13)}`);
    lines.push(`${'  (no motion)'.padEnd(35)} ${s.zeroBaseline.slice(0, -1).map(mm).join(' ')} ${''.padStart(9)} ${`${((1 - s.zeroBaseline.at(-1)!) * 100).toFixed(1)}%`.padStart(8)}`);
    if (s.blank) {
      const b = s.blank;
      const label = `  (blank images: ${b.changed}/${b.examples} changed)`.padEnd(35);
      // blind answers that do not decode leave nothing to compare (not a 0% gripper)
      if (!b.meanAbsError.length) lines.push(`${label} no blind answer decoded as actions`);
      else lines.push(`${label} ${b.meanAbsError.slice(0, -1).map(mm).join(' ')} ${''.padStart(9)} ${`${(b.gripperAccuracy * 100).toFixed(1)}%`.padStart(8)}`);
    }
  }
  const blind = r.splits.filter((s) => s.blank);
  if (blind.length && blind.every((s) => s.blank!.changed === 0)) lines.push('no answer changed when the images were blanked: the policy does not read its images');
  if (r.failures.length) lines.push(`${r.failures.length} generation(s) did not decode, e.g. ${r.failures[0].id}: ${r.failures[0].error}`);
  return lines.join('\n');
}

/**
 * A model as the policy: greedy (or sampled) generation from each example's prompt and images, as rollout prompts
 * it.
 * @example await replay(examples, modelPredictor(await openModel('runs/sft'), { maxNewTokens: 256 }))
 */
export function modelPredictor(runner: VlaRunner, o: { maxNewTokens: number; temperature?: number; topP?: number; seed?: number }): Predictor {
  let calls = 0;
  return async (ex) => {
    const input = await runner.prepare(promptOf(ex), ex.images, `example ${ex.id}: image`);
    const g = await generateFrom(runner, input, { maxNewTokens: o.maxNewTokens, temperature: o.temperature ?? 0, topP: o.topP ?? 1, seed: (o.seed ?? 0) + calls++ });
    return g.text;
  };
}
