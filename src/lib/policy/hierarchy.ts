/**
 * The high level of the VLM2VLA hierarchy, shared by text policies and policies with an action head:
 * - a planner writes the subtask list from the first observation: the policy model itself (`model`), another
 *   model that writes subtask lists (`--planner DIR`), or the built-in world's own list (`oracle`, the task's
 *   `info.task.subtasks` at reset);
 * - after each chunk the verifier decides: the next subtask, or the same one again (up to maxRetries rejections,
 *   then the policy moves on and says so).
 */
import { PROMPTS, parseSubtaskList } from '../actions/prompts.js';
import type { ActContext } from '../env/rollout.js';
import { VlakitError } from '../errors.js';
import { type VlaRunner, generateFrom } from '../infer/index.js';
import type { ImageJson } from '../io/json.js';
import type { Verifier } from './verifiers.js';

/**
 * Rejections of one subtask before the policy moves on, when not given: a text policy's chunk is several steps, a
 * head's (with --execute 1) often one, so a head gets room for a whole subtask (the episode's step limit bounds it).
 */
export const TEXT_MAX_RETRIES = 3;
export const HEAD_MAX_RETRIES = 100;

export interface Sampling {
  temperature: number;
  topP: number;
  maxNewTokens: number;
}

/**
 * Generates from a prompt until `parse` accepts the text (1 + resample tries; a greedy setting gets some
 * temperature for the retries, so that they can differ).
 */
export async function sampleUntil<T>(runner: VlaRunner, prompt: string, images: ImageJson[], s: Sampling, o: { resample: number; seed: () => number }, parse: (text: string, truncated: boolean) => T): Promise<{ value?: T; texts: string[]; errors: string[]; ms: number }> {
  const texts: string[] = [];
  const errors: string[] = [];
  const input = await runner.prepare(prompt, images, 'camera image');
  let ms = 0;
  for (let attempt = 0; attempt <= o.resample; attempt++) {
    const temperature = attempt > 0 && s.temperature < 0.3 ? 0.7 : s.temperature;
    const g = await generateFrom(runner, input, { maxNewTokens: s.maxNewTokens, temperature, topP: s.topP, seed: o.seed() });
    ms += g.timing.prefillMs + g.timing.decodeMs;
    texts.push(g.text);
    try {
      return { value: parse(g.text, g.stop === 'length'), texts, errors, ms };
    } catch (err) {
      errors.push((err as Error).message);
    }
  }
  return { texts, errors, ms };
}

export interface PlanInput {
  instruction: string;
  /** The first observation's primary camera image. */
  image: ImageJson;
  /** The env's info at reset. */
  info?: Record<string, unknown>;
  /** A fresh seed per call. */
  seed: () => number;
}

export interface Plan {
  /** The subtasks, or undefined when none could be read (the hierarchy then works on the whole task). */
  subtasks?: string[];
  /** What the planner wrote (a model's last text). */
  text?: string;
  /** Extra samples it took. */
  resampled?: number;
  ms: number;
}

export interface Planner {
  readonly name: string;
  plan(p: PlanInput): Promise<Plan>;
  close?(): Promise<void> | void;
}

/** A model that writes the numbered subtask list it was trained on (relabel --method vlm2vla's subtasks stage). */
export class ModelPlanner implements Planner {
  constructor(
    readonly name: string,
    private readonly runner: VlaRunner,
    private readonly sampling: Sampling,
    private readonly resample: number,
    /** Disposes the runner on close (a planner model of its own, not the policy's). */
    private readonly owned = false,
  ) {}

  async plan(p: PlanInput): Promise<Plan> {
    const r = await sampleUntil(this.runner, PROMPTS.subtasks(p.instruction), [p.image], this.sampling, { resample: this.resample, seed: p.seed }, (t) => {
      const list = parseSubtaskList(t);
      if (!list.length) throw new Error('no numbered subtask list in the output');
      return list;
    });
    return { subtasks: r.value, text: r.texts.at(-1), resampled: r.texts.length - 1, ms: r.ms };
  }

  async close(): Promise<void> {
    if (this.owned) await this.runner.dispose();
  }
}

/** The env's own subtask list (the built-in world reports it at reset as info.task.subtasks). */
export class OraclePlanner implements Planner {
  readonly name = 'oracle';

  async plan(p: PlanInput): Promise<Plan> {
    const subtasks = (p.info?.task as { subtasks?: unknown } | undefined)?.subtasks;
    if (!Array.isArray(subtasks) || !subtasks.length || !subtasks.every((s) => typeof s === 'string')) {
      throw new VlakitError('E_USAGE', 'the oracle planner reads the env\'s subtask list (info.task.subtasks at reset, as the built-in world reports it), which this env does not report; use --planner model or a model directory');
    }
    return { subtasks: subtasks as string[], ms: 0 };
  }
}

/**
 * Which subtask the policy works on: the plan (once per episode), then after each chunk the verifier's decision.
 * Records go into the cycle's info: subtasks (and the planner's text), the verifier's decision, subtask_index, subtask.
 */
export class Hierarchy {
  private subtasks: string[] | undefined;
  private index = 0;
  private retries: number[] = [];
  private pending: { image: ImageJson; info?: Record<string, unknown> } | undefined;

  constructor(
    readonly planner: Planner,
    readonly verifier: Verifier,
    readonly maxRetries: number,
  ) {}

  reset(): void {
    this.subtasks = undefined;
    this.index = 0;
    this.retries = [];
    this.pending = undefined;
  }

  /** The subtask to work on now (null when the plan is done), and the time spent in the planner and verifier. */
  async current(image: ImageJson, ctx: ActContext, info: Record<string, unknown>, seed: () => number): Promise<{ subtask: string | null; ms: number }> {
    let ms = 0;
    if (!this.subtasks) {
      const r = await this.planner.plan({ instruction: ctx.instruction, image, info: ctx.info, seed });
      ms += r.ms;
      this.subtasks = r.subtasks ?? [ctx.instruction]; // no usable list: the whole task as one subtask
      this.retries = this.subtasks.map(() => 0);
      info.subtasks = this.subtasks;
      if (this.planner.name !== 'model') info.planner = this.planner.name;
      if (r.text !== undefined) info.subtasks_text = r.text;
      if (r.resampled) info.subtasks_resampled = r.resampled;
      if (!r.subtasks) info.subtasks_fallback = true;
    } else if (this.pending) {
      const v = await this.verifier.verify({
        before: this.pending.image,
        after: image,
        subtask: this.subtasks[this.index],
        next: this.subtasks[this.index + 1],
        index: this.index,
        total: this.subtasks.length,
        beforeInfo: this.pending.info,
        afterInfo: ctx.info,
        seed: seed(),
      });
      ms += v.ms;
      const decision: Record<string, unknown> = { verifier: this.verifier.name, subtask_index: this.index, success: v.success, text: v.text };
      if (v.resume !== undefined && v.resume < this.index) {
        decision.resume = v.resume; // an earlier subtask was undone: work from there again
        this.index = v.resume;
      } else if (v.success) this.index++;
      else if (++this.retries[this.index] > this.maxRetries) {
        decision.gave_up = true; // out of retries: move on, and say so
        this.index++;
      } else decision.retry = this.retries[this.index];
      info.verifier = decision;
      this.pending = undefined;
    }
    if (this.index >= this.subtasks.length) return { subtask: null, ms };
    info.subtask_index = this.index;
    info.subtask = this.subtasks[this.index];
    return { subtask: this.subtasks[this.index], ms };
  }

  /** A chunk for the current subtask was decided from this frame: the verifier judges it at the next cycle. */
  chunkStarted(image: ImageJson, info?: Record<string, unknown>): void {
    this.pending = { image, info };
  }

  async close(): Promise<void> {
    await this.verifier.close?.();
    await this.planner.close?.();
  }
}
