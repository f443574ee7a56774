/**
 * Closed-loop rollouts: a policy drives an env (through the safety filter) for N episodes; every executed step
 * becomes a step record (RLDS field names), and each task family gets a success rate with a 95% Wilson interval.
 */
import { VlakitError } from '../errors.js';
import { shortFloat32 } from '../io/json.js';
import type { StepRecord } from '../io/records.js';
import { Rng, subSeed } from '../util/rng.js';
import { ScriptedExpert, type ExpertOptions } from './expert.js';
import type { Env, Observation, StepResult } from './protocol.js';
import { SafetyFilter } from './safety.js';
import { TabletopEnv } from './tabletop.js';

/** An action with what the policy wants recorded beside it (its text, subtask, verifier decision, model time...). */
export interface PolicyStep {
  action: number[];
  /** Stored in the step record's `policy` field. */
  info?: Record<string, unknown>;
  /** Milliseconds this act() spent in the model itself (the rest of act() counts as vlakit's own time). */
  modelMs?: number;
  /**
   * The action to record instead of the executed one (the scripted expert's DART data: a perturbed action is
   * executed, the expert's own action is the label).
   */
  label?: number[];
}

export interface ActContext {
  instruction: string;
  step: number;
  /** The env's info of the last reset/step (the built-in world's oracle among it). */
  info?: Record<string, unknown>;
}

export interface Policy {
  readonly name: string;
  /** Called at the start of each episode. */
  reset(ctx: { env: Env; instruction: string; seed: number }): Promise<void> | void;
  /**
   * The next action, [dx, dy, dz, gripper] (or 7-D), for an observation; or null when the policy has finished
   * (e.g. every subtask of its plan is done), which ends the episode.
   */
  act(obs: Record<string, unknown>, ctx: ActContext): Promise<number[] | PolicyStep | null> | number[] | PolicyStep | null;
  close?(): Promise<void> | void;
}

/** Finds the built-in world behind wrappers (the scripted expert reads its state). */
export function builtinOf(env: Env): TabletopEnv | undefined {
  let e: Env = env;
  while (!(e instanceof TabletopEnv) && e instanceof SafetyFilter) e = e.inner;
  return e instanceof TabletopEnv ? e : undefined;
}

/** The scripted expert as a policy: privileged, so it needs the built-in world. */
export class ScriptedPolicy implements Policy {
  readonly name = 'scripted';
  private expert: ScriptedExpert | undefined;
  private world: TabletopEnv | undefined;
  constructor(private readonly opts: ExpertOptions = {}) {}

  reset(ctx: { env: Env; seed: number }): void {
    this.world = builtinOf(ctx.env);
    if (!this.world) {
      throw new VlakitError('E_USAGE', `the scripted policy reads the simulator's state, so it runs only in builtin:tabletop, not in ${ctx.env.name}`);
    }
    this.expert = new ScriptedExpert(new Rng(subSeed(ctx.seed, 7)), this.opts);
  }

  act(): number[] {
    const w = this.world!;
    return this.expert!.act(w.world!, w.task!, w.subtask);
  }

  /** The point the expert is heading for now, [x, y, z] in meters (undefined without a subtask). */
  target(): number[] | undefined {
    const w = this.world!;
    return this.expert!.target(w.world!, w.task!, w.subtask)?.target;
  }
}

/**
 * The scripted expert with DART noise (Laskey et al. 2017): each step executes the expert's action plus Gaussian
 * noise on the translation (std `dart` meters for a full step, scaled down with shorter moves) and records the
 * expert's own action as the label, so the data shows how the expert recovers from the states that a slightly wrong
 * policy reaches. Each step's info holds where the expert was heading (`dart.target`, [x, y, z]): relabel --waypoints
 * takes it as the step's target, since along perturbed states the runs of labels break up.
 */
export class DartPolicy implements Policy {
  readonly name = 'scripted';
  private readonly expert: ScriptedPolicy;
  private rng: Rng | undefined;
  private readonly step: number;
  constructor(private readonly opts: ExpertOptions & { dart: number }) {
    this.expert = new ScriptedPolicy(opts);
    this.step = opts.stepSize ?? 0.015;
  }

  reset(ctx: { env: Env; instruction: string; seed: number }): void {
    this.expert.reset(ctx);
    this.rng = new Rng(subSeed(ctx.seed, 8));
  }

  act(): PolicyStep {
    const label = this.expert.act();
    const target = this.expert.target();
    const rng = this.rng!;
    // scaled by the move's length (a full step gets the full noise): the expert's last small moves onto a
    // waypoint stay precise, so it still reaches them
    const k = Math.min(1, Math.hypot(label[0], label[1], label[2]) / this.step);
    const action = label.map((v, i) => (i < 3 ? v + rng.normal() * this.opts.dart * k : v));
    return { action, label, ...(target ? { info: { dart: { target: target.map(shortFloat32) } } } : {}) };
  }
}

/**
 * DAgger's data collection (Ross et al. 2011) with the scripted expert as the labeler: the learned policy drives
 * (or, with probability `beta` per step, the expert), and every visited state is recorded with the expert's action
 * for it as the label, so the data covers the states the policy itself reaches: its drifts, overshoots and missed
 * grasps, each with the expert's way back. The executed action and who chose it stay in the record's `policy` info.
 */
export class DaggerPolicy implements Policy {
  readonly name: string;
  private readonly expert: ScriptedPolicy;
  private rng: Rng | undefined;
  constructor(
    private readonly inner: Policy,
    private readonly beta: number,
    opts: ExpertOptions = {},
  ) {
    this.name = `dagger(${inner.name})`;
    this.expert = new ScriptedPolicy(opts);
  }

  async reset(ctx: { env: Env; instruction: string; seed: number }): Promise<void> {
    this.expert.reset(ctx);
    await this.inner.reset(ctx);
    this.rng = new Rng(subSeed(ctx.seed, 9));
  }

  async act(obs: Record<string, unknown>, ctx: ActContext): Promise<PolicyStep | null> {
    const label = this.expert.act();
    // the expert's own target at this state: relabel --waypoints prefers it to a target made from consecutive
    // labels, which along the policy's states (not the expert's) can end a step away instead of where the expert heads
    const target = this.expert.target();
    const got = await this.inner.act(obs, ctx);
    if (got === null) return null;
    const step: PolicyStep = Array.isArray(got) ? { action: got } : got;
    const byExpert = this.beta > 0 && this.rng!.next() < this.beta;
    const action = byExpert ? label : step.action;
    return { ...step, action, label, info: { ...step.info, dagger: { executed: byExpert ? 'expert' : 'policy', action: step.action.map(shortFloat32), ...(target ? { target: target.map(shortFloat32) } : {}) } } };
  }

  async close(): Promise<void> {
    await this.inner.close?.();
  }
}

export interface RolloutOptions {
  env: Env;
  policy: Policy;
  families: string[];
  episodes: number;
  seed: number;
  signal?: AbortSignal;
  /** Called after every env step. */
  onStep?: () => void;
  /** Record per-step timing (model, env, vlakit) in the step records; off by default, as it makes runs differ. */
  recordTiming?: boolean;
  /** Run only the episodes whose index passes (a --shard, a worker's share); the others are not run at all. */
  only?: (index: number) => boolean;
  /** Called after the reset and after every step; what it returns is kept per record (`EpisodeResult.captures`), e.g. a video frame. */
  capture?: (env: Env) => unknown;
}

export interface EpisodeResult {
  index: number;
  family: string;
  seed: number;
  instruction: string;
  success: boolean;
  /** Why the episode stopped: success, the env's own end, the step limit, an e-stop, or the policy finished. */
  end: 'success' | 'done' | 'truncated' | 'estop' | 'policy';
  estop?: string;
  records: StepRecord[];
  /** Per executed step (whether or not recorded). */
  timings: StepTiming[];
  /** With `capture`: its result per record (the reset, then each step). */
  captures?: unknown[];
}

/** Milliseconds per executed step: in the model, in the env (safety filter included), and in vlakit itself. */
export interface StepTiming {
  model_ms: number;
  env_ms: number;
  vlakit_ms: number;
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

function zeros(n: number): number[] {
  return new Array(n).fill(0);
}

/** Runs episodes one after another; episode i uses family families[i % n] and seed subSeed(seed, i). */
export async function* runEpisodes(opts: RolloutOptions): AsyncGenerator<EpisodeResult> {
  if (opts.episodes < 1) throw new VlakitError('E_USAGE', `--episodes must be at least 1, got ${opts.episodes}`);
  for (let i = 0; i < opts.episodes; i++) {
    if (opts.only && !opts.only(i)) continue;
    opts.signal?.throwIfAborted();
    const family = opts.families[i % opts.families.length];
    const seed = subSeed(opts.seed, i);
    const first: Observation = await opts.env.reset(seed, { family });
    await opts.policy.reset({ env: opts.env, instruction: first.instruction, seed });
    const rows: { obs: Record<string, unknown>; oracle: unknown; action?: number[]; reward: number; policy?: Record<string, unknown>; timing?: StepTiming; safety?: string[] }[] = [];
    const captures = opts.capture ? [opts.capture(opts.env)] : undefined;
    let obs = first.observation;
    let info = first.info;
    let last: StepResult | undefined;
    let policyDone = false;
    let tLoop = performance.now();
    for (let t = 0; ; t++) {
      opts.signal?.throwIfAborted();
      const t0 = performance.now();
      const out = await opts.policy.act(obs, { instruction: first.instruction, step: t, info });
      const t1 = performance.now();
      if (out === null) {
        policyDone = true;
        break;
      }
      const step = Array.isArray(out) ? { action: out } : out;
      // Actions are float32, as datasets store them: what is recorded is exactly what was executed.
      const action = Array.isArray(step.action) ? step.action.map((v) => (typeof v === 'number' ? Math.fround(v) : v)) : step.action;
      last = await opts.env.step(action);
      const t2 = performance.now();
      captures?.push(opts.capture!(opts.env));
      opts.onStep?.();
      const { sent, interventions } = (last.info.safety as { sent?: number[]; interventions?: string[] } | undefined) ?? {};
      const modelMs = step.modelMs ?? 0;
      // vlakit's own time: act() beyond the model, plus this loop's bookkeeping since the previous env step
      const timing = { model_ms: round2(modelMs), env_ms: round2(t2 - t1), vlakit_ms: round2(Math.max(0, t1 - t0 - modelMs) + (t0 - tLoop)) };
      const executed = sent ?? (Array.isArray(action) && action.every(Number.isFinite) ? action : undefined);
      rows.push({ obs, oracle: info?.oracle, action: step.label ? step.label.map(Math.fround) : executed, reward: last.reward, policy: step.info, timing, safety: interventions?.length ? interventions : undefined });
      obs = last.observation;
      info = last.info;
      tLoop = performance.now();
      if (last.done) break;
    }
    const success = last?.info.success === true;
    const estop = last?.info.estop as string | undefined;
    const end: EpisodeResult['end'] = estop ? 'estop' : success ? 'success' : policyDone ? 'policy' : last?.info.truncated ? 'truncated' : 'done';
    rows.push({ obs, oracle: info?.oracle, reward: 0 });
    const dims = rows.find((r) => r.action)?.action?.length ?? 4;
    // The final observation gets a no-op: no motion, the gripper left as it was.
    const lastAction = [...rows].reverse().find((r) => r.action)?.action;
    const noop = zeros(dims);
    if (lastAction) noop[dims - 1] = lastAction[dims - 1];
    const builtin = builtinOf(opts.env);
    const task = (first.info?.task as Record<string, unknown> | undefined) ?? {};
    const metadata = {
      env: opts.env.name,
      policy: opts.policy.name,
      family,
      seed,
      episode_index: i,
      success,
      end,
      task: { objects: task.objects ?? [], distractors: task.distractors ?? [], subtasks: task.subtasks ?? [] },
    };
    const records: StepRecord[] = rows.map((r, t) => {
      const rec: StepRecord = {
        episode_id: `${opts.seed}-${i}`,
        step: t,
        is_first: t === 0,
        is_last: t === rows.length - 1,
        is_terminal: t === rows.length - 1 && success,
        observation: r.obs,
        action: (r.action ?? noop).map(shortFloat32),
        reward: r.reward,
        discount: 1,
        language_instruction: first.instruction,
      };
      if (builtin) rec.oracle = r.oracle;
      if (r.policy) rec.policy = r.policy;
      if (r.safety) rec.safety = { interventions: r.safety };
      if (r.timing && opts.recordTiming) rec.timing = r.timing;
      rec.episode_metadata = metadata;
      return rec;
    });
    yield { index: i, family, seed, instruction: first.instruction, success, end, estop, records, timings: rows.flatMap((r) => (r.timing ? [r.timing] : [])), ...(captures ? { captures } : {}) };
  }
}

/** 95% Wilson score interval of k successes in n trials. */
export function wilson(k: number, n: number, z = 1.959963984540054): [number, number] {
  if (n === 0) return [0, 1];
  const p = k / n;
  const z2 = z * z;
  const centre = (p + z2 / (2 * n)) / (1 + z2 / n);
  const half = (z * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n))) / (1 + z2 / n);
  return [Math.max(0, centre - half), Math.min(1, centre + half)];
}

export interface FamilyReport {
  family: string;
  episodes: number;
  successes: number;
  rate: number;
  ci95: [number, number];
  estops: number;
  meanSteps: number;
}

/** What the report needs of an episode. */
export interface EpisodeOutcome {
  family: string;
  success: boolean;
  end: EpisodeResult['end'];
  /** Actions taken. */
  steps: number;
}

export function report(results: EpisodeOutcome[]): FamilyReport[] {
  const by = new Map<string, typeof results>();
  for (const r of results) by.set(r.family, [...(by.get(r.family) ?? []), r]);
  const out: FamilyReport[] = [];
  for (const [family, rs] of by) {
    const k = rs.filter((r) => r.success).length;
    out.push({
      family,
      episodes: rs.length,
      successes: k,
      rate: k / rs.length,
      ci95: wilson(k, rs.length),
      estops: rs.filter((r) => r.end === 'estop').length,
      meanSteps: rs.reduce((a, r) => a + r.steps, 0) / rs.length,
    });
  }
  return out;
}

export function formatReport(rows: FamilyReport[]): string {
  const lines = [`${'task'.padEnd(16)} ${'episodes'.padStart(8)} ${'success'.padStart(8)} ${'95% CI (Wilson)'.padStart(17)} ${'steps'.padStart(6)} ${'e-stops'.padStart(7)}`];
  for (const r of rows) {
    lines.push(
      `${r.family.padEnd(16)} ${String(r.episodes).padStart(8)} ${`${(r.rate * 100).toFixed(1)}%`.padStart(8)} ${`[${(r.ci95[0] * 100).toFixed(1)}, ${(r.ci95[1] * 100).toFixed(1)}]`.padStart(17)} ${r.meanSteps.toFixed(1).padStart(6)} ${String(r.estops).padStart(7)}`,
    );
  }
  return lines.join('\n');
}
