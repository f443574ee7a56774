/**
 * The safety filter between every policy and every env, on by default. Per step:
 * - an action that does not fit the action layout (default: 4 or 7 finite numbers, gripper last) stops the episode
 *   (e-stop) with the reason; the env never sees it;
 * - the layout's translation dimensions (default the first three) are the ones scaled, clipped and guarded, its
 *   gripper dimension (default the last) the one clipped to [0, 1]; rotations pass unchanged;
 * - the translation is scaled down to at most `maxStep` meters;
 * - the target position is clipped into the workspace bounds;
 * - the gripper command is clipped to [0, 1];
 * - with the contact guard, no further downward (forward) motion while the env reports contact below (ahead).
 * Every intervention is reported in `info.safety` and counted.
 */
import type { ActionLayout } from '../actions/layout.js';
import type { Env, Observation, StepResult, TaskRequest } from './protocol.js';
import { eePosition } from './protocol.js';
import { type Vec3, WORKSPACE } from './scene.js';

export interface SafetyOptions {
  bounds?: { min: Vec3; max: Vec3 };
  /** Largest translation per step, meters (default 0.03). */
  maxStep?: number;
  /** Stop downward/forward motion while touching the table/a wall (default true). */
  contactGuard?: boolean;
  /** The action layout the policy writes (its codec's); default: 4-D or 7-D, translation first, gripper last. */
  layout?: ActionLayout;
}

export interface SafetyCounts {
  steps: number;
  estops: number;
  stepClips: number;
  boundClips: number;
  gripperClips: number;
  contactStops: number;
}

export type Intervention = 'step' | 'bounds' | 'gripper' | 'contact';

export interface FilterResult {
  /** The action to send, or undefined for an e-stop. */
  action?: number[];
  estop?: string;
  interventions: Intervention[];
}

/**
 * Filters one action given the current end-effector position and contact flags. Pure: the same inputs give the
 * same output.
 */
/** What makes `action` one the env cannot take (not 4 or 7 finite numbers, or not `layout.dims`), or undefined when it is fine. */
export function actionProblem(action: unknown, layout?: ActionLayout): string | undefined {
  if (!Array.isArray(action)) return `action is not an array (got ${typeof action})`;
  if (layout && action.length !== layout.dims) return `action has ${action.length} numbers; the action layout has ${layout.dims}`;
  if (!layout && action.length !== 4 && action.length !== 7) return `action has ${action.length} numbers; expected 4 [dx, dy, dz, gripper] or 7 [dx, dy, dz, droll, dpitch, dyaw, gripper]`;
  const bad = action.findIndex((v) => typeof v !== 'number' || !Number.isFinite(v));
  return bad >= 0 ? `action[${bad}] is ${String(action[bad])}; every entry must be a finite number` : undefined;
}

export function filterAction(
  action: unknown,
  ee: Vec3 | undefined,
  contact: { down?: boolean; forward?: boolean } | undefined,
  opts: SafetyOptions = {},
): FilterResult {
  const problem = actionProblem(action, opts.layout);
  if (problem) return { estop: problem, interventions: [] };
  const a = [...(action as number[])];
  const interventions: Intervention[] = [];
  const g = opts.layout ? opts.layout.gripper : a.length - 1;
  // absolute targets: only the gripper is checked here (step and bounds limits are for deltas)
  const T = !opts.layout ? [0, 1, 2] : opts.layout.mode === 'absolute' ? [] : opts.layout.translation;
  // the translation, [dx, dy, dz]
  const out = T.map((k) => a[k]);
  const maxStep = opts.maxStep ?? 0.03;
  const n = T.length ? Math.hypot(out[0], out[1], out[2]) : 0;
  if (n > maxStep) {
    const k = maxStep / n;
    out[0] *= k;
    out[1] *= k;
    out[2] *= k;
    interventions.push('step');
  }
  if (T.length && opts.contactGuard !== false && contact) {
    if (contact.down && out[2] < 0) {
      out[2] = 0;
      interventions.push('contact');
    }
    if (contact.forward && out[0] > 0) {
      out[0] = 0;
      if (!interventions.includes('contact')) interventions.push('contact');
    }
  }
  if (ee && T.length) {
    const { min, max } = opts.bounds ?? WORKSPACE;
    let clipped = false;
    for (let i = 0; i < 3; i++) {
      const target = Math.min(max[i], Math.max(min[i], ee[i] + out[i]));
      // An end-effector already outside the bounds may only move back towards them.
      const d = target - ee[i];
      if (Math.abs(d - out[i]) > 1e-12) {
        out[i] = ee[i] < min[i] ? Math.max(0, d) : ee[i] > max[i] ? Math.min(0, d) : d;
        clipped = true;
      }
    }
    if (clipped) interventions.push('bounds');
  }
  T.forEach((k, i) => (a[k] = out[i]));
  if (g !== null && (a[g] < 0 || a[g] > 1)) {
    a[g] = Math.min(1, Math.max(0, a[g]));
    interventions.push('gripper');
  }
  return { action: a, interventions };
}

/** Wraps an env so that every action goes through `filterAction`. */
export class SafetyFilter implements Env {
  readonly counts: SafetyCounts = { steps: 0, estops: 0, stepClips: 0, boundClips: 0, gripperClips: 0, contactStops: 0 };
  private last: Record<string, unknown> = {};
  private contact: { down?: boolean; forward?: boolean } | undefined;

  constructor(
    readonly inner: Env,
    readonly opts: SafetyOptions = {},
  ) {}

  get name(): string {
    return this.inner.name;
  }

  async reset(seed: number, task?: TaskRequest): Promise<Observation> {
    const o = await this.inner.reset(seed, task);
    this.last = o.observation;
    this.contact = undefined;
    return o;
  }

  async step(action: number[]): Promise<StepResult> {
    this.counts.steps += 1;
    const f = filterAction(action, eePosition(this.last), this.contact, this.opts);
    if (!f.action) {
      this.counts.estops += 1;
      return { observation: this.last, reward: 0, done: true, info: { estop: f.estop, safety: { estop: f.estop, interventions: [] } } };
    }
    for (const i of f.interventions) {
      if (i === 'step') this.counts.stepClips += 1;
      else if (i === 'bounds') this.counts.boundClips += 1;
      else if (i === 'gripper') this.counts.gripperClips += 1;
      else this.counts.contactStops += 1;
    }
    const r = await this.inner.step(f.action);
    this.last = r.observation;
    this.contact = r.info.contact as typeof this.contact;
    return { ...r, info: { ...r.info, safety: { interventions: f.interventions, sent: f.action } } };
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
