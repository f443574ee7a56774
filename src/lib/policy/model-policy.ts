/**
 * A learned policy in closed loop: a checkpoint or an export (any VlaRunner) prompted the way relabel trained it.
 * - direct (ReFineVLA / RoboAlign / VLM2VLA-NR): each control cycle, one generation gives the (optional)
 *   reasoning and an action chunk, executed step by step;
 * - hierarchical (VLM2VLA): from the first observation the subtask list; per subtask a motion plan, then an action
 *   chunk; after the chunk the verifier decides: next subtask, or the same one again (up to --max-retries, then
 *   the policy moves on and says so).
 * Output that does not parse is sampled again (up to `resample` times); then the cycle is a safe no-op (no motion,
 * the gripper held). Nothing unparsed ever reaches the env; every such event is recorded.
 */
import { type ActionCodec, codecStateText } from '../actions/codecs.js';
import type { ActionLayout } from '../actions/layout.js';
import { isWaypointLayout, waypointDeltas, waypointOrigin } from '../actions/waypoints.js';
import { ACTIONS_MARKER, PROMPTS, actionFormatOf } from '../actions/prompts.js';
import type { ActContext, Policy, PolicyStep } from '../env/rollout.js';
import type { Env } from '../env/protocol.js';
import { actionProblem } from '../env/safety.js';
import { camerasOf } from '../io/cameras.js';
import { type ImageJson } from '../io/json.js';
import type { VlaRunner } from '../infer/index.js';
import { subSeed } from '../util/rng.js';
import { VlakitError } from '../errors.js';
import type { Verifier } from './verifiers.js';
import { HEAD_MAX_RETRIES, Hierarchy, ModelPlanner, type Planner, type Sampling, TEXT_MAX_RETRIES, sampleUntil } from './hierarchy.js';

export type { Sampling };

export type DirectPrompt = 'refinevla' | 'refinevla-nr' | 'task' | 'compact';

export interface ModelPolicyOptions {
  mode: 'direct' | 'hierarchical';
  /**
   * Direct mode: which training prompt the model learned (relabel --method refinevla, with or without reasoning, or
   * VLM2VLA-NR). Hierarchical mode with `task` or `compact`: the model learned one skill per subtask (relabel
   * --subtask-prompts), so each cycle's prompt is that style with the current subtask as its task, with no motion
   * plan, as a policy with an action head is prompted.
   */
  prompt?: DirectPrompt;
  codec: ActionCodec;
  verifier?: Verifier;
  /** Hierarchical: who writes the subtask list (default: the policy model itself). */
  planner?: Planner;
  /** Hierarchical: chunks per subtask the verifier may reject before the policy moves on anyway. */
  maxRetries?: number;
  /** Extra samples when the output does not parse. */
  resample?: number;
  /** Execute at most this many actions of each chunk before generating again (default: the whole chunk). */
  execute?: number;
  /** Chunks longer than this are cut. */
  maxChunk?: number;
  /** Hierarchical: write a motion plan before each chunk (as VLM2VLA trains). */
  motionPlan?: boolean;
  /** Per stage (the model verifier has its own, given to it by makeVerifier). */
  sampling: { subtasks: Sampling; plan: Sampling; actions: Sampling };
}

/** A chunk the policy decided on, with what to record. */
export interface Cycle {
  actions: number[][];
  info: Record<string, unknown>;
  modelMs: number;
}

/**
 * The robot-state text of the prompts, when the model was trained with it (its codec says `state`); a data error
 * when the observation has none.
 */
export function promptStateText(codec: ActionCodec, obs: Record<string, unknown>): string | undefined {
  if (!codec.state) return undefined;
  const text = codecStateText(codec, obs.state);
  if (text === undefined) {
    throw new VlakitError('E_RECORD_INVALID', 'this model was trained with the robot state in its prompts, but the observation has no numeric `state`', { field: 'observation.state' });
  }
  return text;
}

/** The images a prompt style takes: the VLM2VLA-NR task prompt the primary camera, every other style all of them. */
export function promptImages<T>(style: DirectPrompt, images: T[]): T[] {
  return style === 'task' ? images.slice(0, 1) : images;
}

/** The prompt of one direct-mode cycle in the training prompt's `style`, for a task (the instruction or a subtask). */
export function directPrompt(style: DirectPrompt, task: string, codec: ActionCodec, state?: string): string {
  if (style === 'compact') return PROMPTS.compact(task, state);
  const format = actionFormatOf(codec);
  return style === 'task' ? PROMPTS.task(task, state, format) : PROMPTS.refinevla(task, style === 'refinevla', state, format);
}

/** Actions the env can take: [dx, dy, dz, gripper] or 7-D, every value finite. */
function checkActions(chunk: number[][], layout?: ActionLayout): number[][] {
  if (!chunk.length) throw new Error('an empty chunk');
  for (const a of chunk) {
    const problem = actionProblem(a, layout);
    if (problem) throw new Error(problem);
  }
  return chunk;
}

/**
 * A policy that decides a chunk per control cycle (`cycle`) and hands it out one action per env step, the first
 * step carrying the cycle's record and model time.
 */
export abstract class ChunkPolicy implements Policy {
  abstract readonly name: string;
  private queue: number[][] = [];
  private queueInfo: Record<string, unknown> = {};
  private queueModelMs = 0;
  private chunkStep = 0;
  protected gripper = 1;
  /** Execute at most this many actions of each chunk (default: all). */
  protected execute: number | undefined;

  abstract cycle(obs: Record<string, unknown>, ctx: ActContext): Promise<Cycle | null>;

  /** The gripper command of an action (the last number unless a layout says otherwise). */
  protected gripperOf(action: number[]): number {
    return action[action.length - 1];
  }

  reset(_ctx: { env?: Env; instruction: string; seed: number }): Promise<void> | void {
    this.queue = [];
    this.chunkStep = 0;
    this.gripper = 1;
  }

  async act(obs: Record<string, unknown>, ctx: ActContext): Promise<PolicyStep | null> {
    if (!this.queue.length) {
      const c = await this.cycle(obs, ctx);
      if (!c) return null;
      this.queue = c.actions.slice(0, this.execute ?? c.actions.length);
      this.queueInfo = c.info;
      this.queueModelMs = c.modelMs;
      this.chunkStep = 0;
    }
    const action = this.queue.shift();
    if (!action) throw new Error(`${this.name} decided on an empty chunk`);
    this.gripper = this.gripperOf(action);
    const first = this.chunkStep === 0;
    const info = { cycle: this.queueInfo.cycle, chunk_step: this.chunkStep++, ...(first ? this.queueInfo : {}) };
    return { action, info, modelMs: first ? this.queueModelMs : 0 };
  }
}

export class ModelPolicy extends ChunkPolicy {
  readonly name: string;
  private seed = 0;
  private calls = 0;
  private cycles = 0;
  /** Hierarchical mode: the plan and the verifier. */
  private readonly hierarchy: Hierarchy | undefined;
  private readonly nextSeed = () => subSeed(this.seed, ++this.calls);

  protected override gripperOf(action: number[]): number {
    const g = this.o.codec.layout?.gripper;
    return g === null ? this.gripper : (action[g ?? action.length - 1] ?? this.gripper);
  }

  constructor(
    readonly runner: VlaRunner,
    readonly o: ModelPolicyOptions,
  ) {
    super();
    this.name = `model:${o.mode}`;
    this.execute = o.execute;
    if (o.mode === 'hierarchical') {
      if (!o.verifier) throw new Error('the hierarchical mode needs a verifier');
      // a skill policy's chunks are as short as a head's (--execute 1): it gets a head's room per subtask
      this.hierarchy = new Hierarchy(o.planner ?? new ModelPlanner('model', runner, o.sampling.subtasks, o.resample ?? 3), o.verifier, o.maxRetries ?? (this.skillPrompts ? HEAD_MAX_RETRIES : TEXT_MAX_RETRIES));
    }
  }

  /** Hierarchical with a VLM2VLA-NR prompt style: the model was trained on one prompt per subtask (relabel --subtask-prompts). */
  get skillPrompts(): boolean {
    return this.o.mode === 'hierarchical' && (this.o.prompt === 'task' || this.o.prompt === 'compact');
  }

  reset(ctx: { env?: Env; instruction: string; seed: number }): void {
    super.reset(ctx);
    this.seed = ctx.seed;
    this.calls = 0;
    this.cycles = 0;
    this.hierarchy?.reset();
  }

  /** Ends the verifier's and planner's resources (a teacher's child process, a planner model). */
  async close(): Promise<void> {
    if (this.hierarchy) await this.hierarchy.close();
    else await this.o.verifier?.close?.();
  }

  /** Generates until `parse` accepts the text (1 + resample tries). */
  private sample<T>(prompt: string, images: ImageJson[], s: Sampling, parse: (text: string, truncated: boolean) => T): Promise<{ value?: T; texts: string[]; errors: string[]; ms: number }> {
    return sampleUntil(this.runner, prompt, images, s, { resample: this.o.resample ?? 3, seed: this.nextSeed }, parse);
  }

  /**
   * The actions of a model output. A chunk cut off by the token limit keeps its complete actions ("[[a], [b], [c"
   * gives a and b); anything else that does not decode is an error (and a re-sample).
   */
  private parseActions(text: string, marker: boolean, truncated: boolean, info: Record<string, unknown>): number[][] {
    let body = text;
    if (marker) {
      const at = text.lastIndexOf(ACTIONS_MARKER);
      if (at < 0) throw new Error(`no "${ACTIONS_MARKER}" in the output`);
      body = text.slice(at + ACTIONS_MARKER.length);
    }
    body = body.trim();
    const max = this.o.maxChunk ?? 64;
    try {
      return checkActions(this.o.codec.decode(body), this.o.codec.layout).slice(0, max);
    } catch (err) {
      const cut = body.lastIndexOf('],');
      if (!truncated || this.o.codec.name !== 'text' || cut < 0) throw err;
      const kept = checkActions(this.o.codec.decode(`${body.slice(0, cut + 1)}]`), this.o.codec.layout).slice(0, max);
      info.truncated = { kept: kept.length };
      return kept;
    }
  }

  /** The chunk of one cycle with its record; a no-op when nothing parsed. */
  private async actions(prompt: string, images: ImageJson[], marker: boolean, info: Record<string, unknown>, obs: Record<string, unknown>): Promise<{ actions: number[][]; ms: number }> {
    const L = this.o.codec.layout;
    const state = obs.state;
    const origin = isWaypointLayout(L) ? waypointOrigin(state) : undefined;
    const r = await this.sample(prompt, images, this.o.sampling.actions, (t, truncated) => this.parseActions(t, marker, truncated, info));
    info.text = r.texts.at(-1);
    if (r.texts.length > 1) info.resampled = { texts: r.texts.slice(0, -1), errors: r.errors.slice(0, r.texts.length - 1) };
    if (r.value && isWaypointLayout(L)) {
      info.targets = r.value; // what the model wrote; the env gets steps of at most max_step toward them
      return { actions: waypointDeltas(r.value, L, origin!), ms: r.ms };
    }
    if (r.value) return { actions: r.value, ms: r.ms };
    info.noop = { reason: r.errors.at(-1) };
    // a no-op in the layout the env takes: zero deltas, the gripper held
    const noop = L && (L.mode === 'delta' || isWaypointLayout(L)) ? Array.from({ length: L.dims }, (_, k) => (k === L.gripper ? this.gripper : 0)) : [0, 0, 0, this.gripper];
    return { actions: [noop], ms: r.ms };
  }

  /** The robot-state text of the prompts, when the model was trained with it (its codec says `state`). */
  private stateText(obs: Record<string, unknown>): string | undefined {
    return promptStateText(this.o.codec, obs);
  }

  /**
   * The next chunk for an observation (null when the plan is finished): what rollout executes step by step and
   * what `rollout serve` answers.
   */
  async cycle(obs: Record<string, unknown>, ctx: ActContext): Promise<Cycle | null> {
    const images = camerasOf(obs); // the primary camera first, as the training examples take it
    if (!images.length) throw new Error('the observation holds no camera image');
    const info: Record<string, unknown> = { cycle: this.cycles };
    let ms = 0;
    if (this.o.mode === 'direct') {
      const style = this.o.prompt ?? 'refinevla';
      const plain = style === 'task' || style === 'compact'; // VLM2VLA-NR targets: the actions without the ReFineVLA marker
      const prompt = directPrompt(style, ctx.instruction, this.o.codec, this.stateText(obs));
      const a = await this.actions(prompt, promptImages(style, images), !plain, info, obs);
      this.cycles++;
      return { actions: a.actions, info, modelMs: a.ms };
    }
    const image = images[0];
    const frames = [image];
    const h = await this.hierarchy!.current(image, ctx, info, this.nextSeed);
    ms += h.ms;
    if (h.subtask === null) return null;
    const subtask = h.subtask;
    if (this.skillPrompts) {
      // the subtask is the task of the prompt style the model learned; its targets are the plain actions
      const style = this.o.prompt!;
      const a = await this.actions(directPrompt(style, subtask, this.o.codec, this.stateText(obs)), promptImages(style, images), false, info, obs);
      this.hierarchy!.chunkStarted(image, ctx.info);
      this.cycles++;
      return { actions: a.actions, info, modelMs: ms + a.ms };
    }
    let plan: string | undefined;
    if (this.o.motionPlan ?? true) {
      const r = await this.sample(PROMPTS.motionPlan(subtask), frames, this.o.sampling.plan, (t) => {
        if (!t.trim()) throw new Error('an empty motion plan');
        return t.trim();
      });
      ms += r.ms;
      plan = r.value;
      info.motion_plan = r.texts.at(-1);
      if (r.texts.length > 1) info.plan_resampled = r.texts.length - 1;
    }
    const a = await this.actions(PROMPTS.actions(subtask, plan, this.stateText(obs), actionFormatOf(this.o.codec)), frames, false, info, obs);
    ms += a.ms;
    this.hierarchy!.chunkStarted(image, ctx.info);
    this.cycles++;
    return { actions: a.actions, info, modelMs: ms };
  }
}
