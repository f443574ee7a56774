/**
 * `annotate`: teacher-written reasoning per step (ReFineVLA) or a subtask plan per episode (VLM2VLA), with an
 * answer cache that never pays twice, bounded concurrency, strict parsing with re-asking, and usage accounting.
 * Episodes are annotated concurrently and emitted in input order, so the output does not depend on timing.
 */
import pLimit from 'p-limit';
import { VlakitError } from '../errors.js';
import { camerasOf } from '../io/cameras.js';
import { type ImageJson } from '../io/json.js';
import type { StepRecord } from '../io/records.js';
import { type AnswerCache, hashKey } from './cache.js';
import { TeacherFatalError, TeacherItemError } from './outcome.js';
import { type ParsedPlan, ParseError, PROMPT_VERSIONS, planPrompt, parsePlan, parseReasoning, type Reasoning, reasoningPrompt, repairPrompt } from './prompts.js';
import type { PlanAnnotation, ReasoningAnnotation } from './records.js';
import type { DataFacts, Teacher, TeacherMessage, TeacherRequest, Usage } from './types.js';

export interface AnnotateOptions {
  kind: 'reasoning' | 'plan';
  teacher: Teacher;
  /** Annotate every k-th step (reasoning); the steps between carry the last annotation. Default 1. */
  stride?: number;
  /** Frames sent with a plan request (evenly spaced, first and last included). Default 8. */
  frames?: number;
  cache?: AnswerCache;
  /** Requests in flight at once. Default 4. */
  concurrency?: number;
  /** Re-asks after an unusable answer. Default 2. */
  repair?: number;
  /** Asks again after an empty answer (no text, no reason). Default 2. */
  emptyRetries?: number;
  /** A truncated answer is asked once more with this many times the output budget. Default 4. */
  truncatedGrowth?: number;
  /** USD per million input and output tokens, for the cost figure. */
  price?: { input: number; output: number };
  /** Cameras the teacher sees, in order (default: every camera, primary first; plans: the primary one). */
  cameras?: string[];
  signal?: AbortSignal;
  onUsage?: (u: UsageStats) => void;
}

export interface UsageStats {
  episodes: number;
  steps: number;
  /** Requests sent to the teacher (re-asks included), and answers served from the cache. */
  requests: number;
  cacheHits: number;
  retries: number;
  /** Steps or episodes whose request failed for good (retries exhausted). */
  failures: number;
  /** Re-asks after unusable answers, and plans fixed locally (gaps/overlaps snapped). */
  reasks: number;
  localRepairs: number;
  /** Steps (reasoning) or episodes (plan) left with an annotation error. */
  errors: number;
  /**
   * Annotation errors by reason: `blocked:SAFETY`, `refused:refusal`, `truncated:MAX_TOKENS`, `empty`,
   * `rejected:400`, `failed` (retries exhausted), `unusable` (no valid JSON after the re-asks).
   */
  reasons: Record<string, number>;
  /** Truncated answers asked again with a larger budget, and empty answers asked again. */
  truncatedReasks: number;
  emptyRetries: number;
  inputTokens: number;
  /** Output tokens, thinking included (billed as output). */
  outputTokens: number;
  /** Of `outputTokens`, those spent thinking (where the service reports them). */
  thoughtTokens: number;
  /** Answers that came from batch jobs (`--batch`), and their tokens (of the totals above; billed at half price). */
  batchAnswers: number;
  batchInputTokens: number;
  batchOutputTokens: number;
  cost?: number;
}

export function newUsage(): UsageStats {
  return { episodes: 0, steps: 0, requests: 0, cacheHits: 0, retries: 0, failures: 0, reasks: 0, localRepairs: 0, errors: 0, reasons: {}, truncatedReasks: 0, emptyRetries: 0, inputTokens: 0, outputTokens: 0, thoughtTokens: 0, batchAnswers: 0, batchInputTokens: 0, batchOutputTokens: 0 };
}

/** The cameras of a step: the named ones in order, else every encoded image, the primary camera first (io/cameras.ts). */
export function stepImages(step: StepRecord, cameras?: string[]): ImageJson[] {
  return camerasOf(step.observation ?? {}, cameras);
}

/** [dx, dy, dz, gripper] of a step's action (7-D actions drop their rotations). */
export function actionOf(step: StepRecord): number[] {
  const a = step.action;
  if (!Array.isArray(a) || a.length < 4 || !a.every((v) => typeof v === 'number')) {
    throw new VlakitError('E_RECORD_INVALID', `expected an action of 4 or 7 numbers, got ${JSON.stringify(a)?.slice(0, 60)}`, { field: 'action', record: step.step });
  }
  return a.length >= 7 ? [a[0], a[1], a[2], a[a.length - 1]] : a.slice(0, 4);
}

function stateOf(step: StepRecord): number[] | undefined {
  const s = step.observation?.state;
  return Array.isArray(s) && s.every((v) => typeof v === 'number') ? (s as number[]) : undefined;
}

/** Evenly spaced frame indices over T steps, first and last included. */
export function sampleFrames(T: number, n: number): number[] {
  if (T <= n) return Array.from({ length: T }, (_, i) => i);
  const out = new Set<number>();
  for (let i = 0; i < n; i++) out.add(Math.round((i * (T - 1)) / (n - 1)));
  return [...out];
}

/** The cache key of a request to `teacher`: what the answer depends on (batch jobs name their requests by it). */
export function requestKey(teacher: Teacher, req: TeacherRequest): string {
  return hashKey({
    teacher: teacher.id,
    // base URL, model and decoding parameters: the same model name on two servers never shares answers
    identity: teacher.cacheIdentity?.(req),
    version: PROMPT_VERSIONS[req.kind],
    json: req.json,
    context: teacher.readsContext ? req.context : undefined,
    messages: req.messages.map((m) => ({ role: m.role, text: m.text, images: (m.images ?? []).map((im) => hashKey(im.b64)) })),
  });
}

class Annotator {
  readonly usage = newUsage();
  private readonly limit: ReturnType<typeof pLimit>;
  private readonly teacherId: string;

  /** Aborted when the job must stop (a fatal outcome): no request starts after it. */
  private readonly stop = new AbortController();
  readonly signal: AbortSignal;
  /** The first fatal outcome: every item after it ends with it. */
  fatal: TeacherFatalError | undefined;

  constructor(private readonly opts: AnnotateOptions) {
    this.limit = pLimit(opts.concurrency ?? 4);
    this.teacherId = opts.teacher.id;
    this.signal = opts.signal ? AbortSignal.any([opts.signal, this.stop.signal]) : this.stop.signal;
  }

  private key(req: TeacherRequest): string {
    return requestKey(this.opts.teacher, req);
  }

  /** Requests in flight by key: the same request asked twice at once is paid once. */
  private readonly inflight = new Map<string, Promise<string>>();

  /** One answer: from the cache, from an identical request in flight, or from the teacher (cached before it counts). */
  private ask(req: TeacherRequest): Promise<string> {
    const t = this.opts.teacher;
    const key = t.local ? '' : this.key(req);
    const hit = key ? this.opts.cache?.get(key) : undefined;
    if (hit) {
      this.usage.cacheHits += 1;
      this.report();
      return Promise.resolve(hit.text);
    }
    const pending = key ? this.inflight.get(key) : undefined;
    if (pending) {
      this.usage.cacheHits += 1;
      return pending;
    }
    const p = this.fetch(req, key);
    if (key) {
      this.inflight.set(key, p);
      p.then(
        () => this.inflight.delete(key),
        () => this.inflight.delete(key),
      );
    }
    return p;
  }

  private count(u: Usage, retries: number): void {
    this.usage.retries += retries;
    this.usage.inputTokens += u.inputTokens;
    this.usage.outputTokens += u.outputTokens;
    this.usage.thoughtTokens += u.thoughtTokens ?? 0;
    if (u.batch) {
      this.usage.batchAnswers += 1;
      this.usage.batchInputTokens += u.inputTokens;
      this.usage.batchOutputTokens += u.outputTokens;
    }
  }

  /** One request to the teacher; empty answers are asked again a bounded number of times. Only usable answers are cached. */
  private async fetch(req: TeacherRequest, key: string): Promise<string> {
    const t = this.opts.teacher;
    for (let empties = 0; ; empties++) {
      let ans;
      try {
        ans = await this.limit(async () => {
          if (this.fatal) throw this.fatal;
          this.signal.throwIfAborted();
          try {
            return await t.complete(req, this.signal);
          } catch (err) {
            // stopped before this slot frees: no queued request starts after a fatal answer
            if (err instanceof TeacherFatalError) this.halt(err);
            throw err;
          } finally {
            if (!t.local) this.usage.requests += 1;
          }
        });
      } catch (err) {
        if (err instanceof TeacherItemError) {
          this.count(err.usage, err.retries);
          if (err.category === 'empty' && empties < (this.opts.emptyRetries ?? 2)) {
            this.usage.emptyRetries += 1;
            this.report();
            continue;
          }
        }
        if (err instanceof TeacherFatalError) this.halt(err);
        // the job was stopped by a fatal outcome elsewhere: this item ends with that outcome
        if (this.fatal && this.stop.signal.aborted && !this.opts.signal?.aborted) throw this.fatal;
        throw err;
      }
      this.count(ans.usage, ans.retries);
      if (key && this.opts.cache) await this.opts.cache.put({ key, text: ans.text, usage: ans.usage });
      this.report();
      return ans.text;
    }
  }

  /** Stops the job: nothing more is sent; requests in flight are aborted. */
  private halt(err: TeacherFatalError): void {
    if (this.fatal) return;
    this.fatal = err;
    // queued requests are not dropped (their promises would never settle): each ends at once with this error
    this.stop.abort(err);
  }

  /** One answer; a truncated one is asked once more with a larger output budget. */
  private async askGrown(req: TeacherRequest): Promise<string> {
    try {
      return await this.ask(req);
    } catch (err) {
      const budget = req.maxTokens ?? this.opts.teacher.maxTokens;
      if (!(err instanceof TeacherItemError) || err.category !== 'truncated' || req.maxTokens !== undefined || budget === undefined) throw err;
      this.usage.truncatedReasks += 1;
      return this.ask({ ...req, maxTokens: budget * (this.opts.truncatedGrowth ?? 4) });
    }
  }

  /** Asks, parses, and re-asks with the parse error up to `repair` times. */
  private async askParsed<T>(req: TeacherRequest, parse: (text: string) => T): Promise<T> {
    const messages: TeacherMessage[] = [...req.messages];
    for (let attempt = 0; ; attempt++) {
      const text = await this.askGrown({ ...req, messages: [...messages] });
      try {
        return parse(text);
      } catch (err) {
        if (!(err instanceof ParseError)) throw err;
        if (attempt >= (this.opts.repair ?? 2)) throw err;
        this.usage.reasks += 1;
        messages.push({ role: 'assistant', text }, { role: 'user', text: repairPrompt(err.message) });
      }
    }
  }

  /**
   * Runs `fn`; an unusable answer or an item outcome (refused, blocked, truncated, empty, rejected, failed) becomes
   * an annotation error counted by reason; a fatal outcome or anything else stops the job.
   */
  private async guarded<T>(fn: () => Promise<T>): Promise<T | { error: string; reason: string }> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof ParseError) return { error: `unusable answer after ${(this.opts.repair ?? 2) + 1} tries: ${err.message}`, reason: 'unusable' };
      if (err instanceof TeacherItemError) return { error: `${err.reason}: ${err.detail}`, reason: err.reason };
      throw err;
    }
  }

  private failed(reason: string): void {
    this.usage.errors += 1;
    if (reason === 'failed') this.usage.failures += 1;
    this.usage.reasons[reason] = (this.usage.reasons[reason] ?? 0) + 1;
  }

  report(): void {
    const p = this.opts.price;
    const u = this.usage;
    // batch jobs are billed at half the online price (Gemini Batch Mode, the OpenAI Batch API)
    if (p) this.usage.cost = ((u.inputTokens - u.batchInputTokens / 2) * p.input + (u.outputTokens - u.batchOutputTokens / 2) * p.output) / 1e6;
    this.opts.onUsage?.(this.usage);
  }

  async episode(steps: StepRecord[]): Promise<StepRecord[]> {
    const instruction = steps[0].language_instruction ?? '';
    const actions = steps.map(actionOf);
    const states = steps.map(stateOf);
    const base = { teacher: this.teacherId, prompt_version: PROMPT_VERSIONS[this.opts.kind] };
    const facts: DataFacts = { builtin: steps[0].oracle !== undefined, actionDims: Array.isArray(steps[0].action) ? steps[0].action.length : 0 };
    // what the teacher could not determine (local teachers say so): carried as `unknown` when there is anything
    const unknownOf = (req: TeacherRequest) => {
      const u = this.opts.teacher.limits?.(req, facts) ?? [];
      return u.length ? { unknown: u } : {};
    };
    let out: StepRecord[];
    if (this.opts.kind === 'plan') {
      const frames = sampleFrames(steps.length, this.opts.frames ?? 8);
      const images = frames.flatMap((t) => (this.opts.cameras ? stepImages(steps[t], this.opts.cameras) : stepImages(steps[t]).slice(0, 1)));
      const req: TeacherRequest = {
        kind: 'plan',
        json: true,
        messages: [{ role: 'user', text: planPrompt(instruction, frames, actions), images }],
        context: { actions, states, instruction },
      };
      const plan = await this.guarded(() => this.askParsed<ParsedPlan>(req, (text) => parsePlan(text, steps.length)));
      const unknown = unknownOf(req);
      if ('error' in plan) this.failed(plan.reason);
      else if (plan.repairs.length) this.usage.localRepairs += 1;
      out = steps.map((s) => {
        if ('error' in plan) return { ...s, plan: { index: -1, description: '', reasoning: '', main_movements: '', start: 0, end: steps.length - 1, count: 0, repairs: [], ...base, error: plan.error } satisfies PlanAnnotation };
        const i = plan.steps.findIndex((p) => s.step >= p.start && s.step <= p.end);
        const p = plan.steps[i];
        return { ...s, plan: { index: i, description: p.description, reasoning: p.reasoning, main_movements: p.main_movements, start: p.start, end: p.end, count: plan.steps.length, repairs: plan.repairs, ...unknown, ...base, error: '' } satisfies PlanAnnotation };
      });
    } else {
      const stride = Math.max(1, this.opts.stride ?? 1);
      const results = await Promise.all(
        steps.map((s, t) => {
          if (t % stride !== 0) return undefined;
          const images = stepImages(s, this.opts.cameras);
          const req: TeacherRequest = {
            kind: 'reasoning',
            json: true,
            messages: [{ role: 'user', text: reasoningPrompt(instruction, Math.max(images.length, 1)), images }],
            context: { actions, states, instruction, step: t },
          };
          return this.guarded(() => this.askParsed<Reasoning>(req, parseReasoning)).then((r) => ('error' in r ? r : { ...r, ...unknownOf(req) }));
        }),
      );
      let last: { fields: Reasoning | { error: string; reason: string }; at: number } | undefined;
      out = steps.map((s, t) => {
        const r = results[t];
        if (r) {
          last = { fields: r, at: t };
          if ('error' in r) this.failed(r.reason);
        }
        const f = last!.fields;
        const fields = 'error' in f ? { observation: '', situation_analysis: '', spatial_reasoning: '', task_planning: '', logical_steps: [], sub_action: '', error: f.error } : { ...f, error: '' };
        return { ...s, reasoning: { ...fields, source_step: last!.at, ...base } satisfies ReasoningAnnotation };
      });
    }
    this.usage.episodes += 1;
    this.usage.steps += steps.length;
    this.report();
    return out;
  }
}

/**
 * Annotates a stream of episodes; up to `concurrency` episodes are worked on at once and come out in order.
 * @example for await (const ep of annotate(groupEpisodes(steps), { kind: 'plan', teacher: new KinematicTeacher() })) ...
 */
export async function* annotate(episodes: AsyncIterable<StepRecord[]>, opts: AnnotateOptions, usage?: (u: UsageStats) => void): AsyncGenerator<StepRecord[]> {
  const a = new Annotator(opts);
  const window = Math.max(2, opts.concurrency ?? 4);
  const pending: Promise<StepRecord[]>[] = [];
  try {
    for await (const ep of episodes) {
      opts.signal?.throwIfAborted();
      const p = a.episode(ep);
      p.catch(() => {}); // handled when its turn comes
      pending.push(p);
      if (pending.length >= window) yield await pending.shift()!;
    }
    while (pending.length) yield await pending.shift()!;
  } finally {
    await Promise.allSettled(pending);
    usage?.(a.usage);
  }
}
