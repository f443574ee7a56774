/**
 * Verifiers of the VLM2VLA hierarchy: after an action chunk, was the subtask done (move on) or not (retry)?
 * - oracle: the built-in world's own subtask predicate, read from the env's info (`oracle.subtasks_done`);
 * - model: the policy itself answers the verification question it was trained on, over the before/after frames;
 * - teacher:<spec>: any annotate teacher (Gemini, an OpenAI-compatible server, a child process, the kinematic
 *   teacher) asked, with both frames, whether the subtask was done precisely enough for the next one.
 */
import { PROMPTS } from '../actions/prompts.js';
import { VlakitError } from '../errors.js';
import type { ImageJson } from '../io/json.js';
import { type VlaRunner, generateFrom } from '../infer/index.js';
import { extractJson } from '../teacher/prompts.js';
import type { Teacher } from '../teacher/types.js';

export interface VerifyInput {
  before: ImageJson;
  after: ImageJson;
  subtask: string;
  /** The next subtask, when there is one. */
  next?: string;
  /** Index of the subtask in the plan and the plan's length. */
  index: number;
  total: number;
  /** The env's info before and after the chunk (the built-in world's oracle). */
  beforeInfo?: Record<string, unknown>;
  afterInfo?: Record<string, unknown>;
  seed: number;
}

export interface Verdict {
  success: boolean;
  /**
   * Go back to this subtask of the plan: an earlier one was undone (the built-in world's oracle, when the item was
   * dropped on the way: its reach again).
   */
  resume?: number;
  /** The verifier's words (the model's or teacher's answer), when it has any. */
  text?: string;
  /** Milliseconds in the model or teacher. */
  ms: number;
}

export interface Verifier {
  readonly name: string;
  verify(v: VerifyInput): Promise<Verdict>;
  close?(): Promise<void> | void;
}

function subtasksDone(info: Record<string, unknown> | undefined): number | undefined {
  const o = info?.oracle as { subtasks_done?: unknown } | undefined;
  return typeof o?.subtasks_done === 'number' ? o.subtasks_done : undefined;
}

/**
 * The world's predicate: the subtask at `index` counts as done once the world has completed index + 1 subtasks;
 * the last subtask of the plan only when the world's task is done (a plan shorter than the world's must not end the
 * episode early). When the world has fewer done than `index` (it went back: a dropped item), the plan resumes there.
 */
export class OracleVerifier implements Verifier {
  readonly name = 'oracle';

  async verify(v: VerifyInput): Promise<Verdict> {
    const done = subtasksDone(v.afterInfo);
    if (done === undefined) throw new VlakitError('E_USAGE', 'the oracle verifier reads the built-in world\'s oracle (info.oracle.subtasks_done), which this env does not report; use --verifier model or teacher:SPEC');
    const o = v.afterInfo?.oracle as { subtask?: { kind?: string } } | undefined;
    const taskDone = (v.afterInfo?.success as boolean | undefined) === true || o?.subtask?.kind === 'done';
    const success = taskDone || (v.index + 1 < v.total && done >= v.index + 1);
    // the world went back (a dropped item): so does the plan
    if (!success && done < v.index) return { success, resume: done, text: `subtasks_done=${done}`, ms: 0 };
    return { success, text: `subtasks_done=${done}`, ms: 0 };
  }
}

/** The policy model answers "yes" or "no" to the verification prompt it was trained on. */
export class ModelVerifier implements Verifier {
  readonly name = 'model';
  constructor(
    private readonly runner: VlaRunner,
    private readonly o: { temperature: number; topP: number },
  ) {}

  async verify(v: VerifyInput): Promise<Verdict> {
    const input = await this.runner.prepare(PROMPTS.verify(v.subtask), [v.before, v.after], 'verifier frame');
    const g = await generateFrom(this.runner, input, { maxNewTokens: 4, temperature: this.o.temperature, topP: this.o.topP, seed: v.seed });
    return { success: /^\s*yes\b/i.test(g.text), text: g.text, ms: g.timing.prefillMs + g.timing.decodeMs };
  }
}

/** The verification request sent to a teacher (own wording; the structure of VLM2VLA appendix D.5). */
export function verifierPrompt(subtask: string, next?: string): string {
  return [
    'You inspect a robot arm at work. The first image was taken before and the second after it tried to carry out the current subtask.',
    `Current subtask: "${subtask}".`,
    next ? `Next subtask: "${next}".` : 'This is the last subtask of the task.',
    'Decide whether the current subtask was carried out precisely enough that the next subtask can succeed from the second image. Judge the precondition, not the effort: a move counts only if the gripper ends where the next step needs it (for a grasp, centred over the object); a position that is only roughly right is a failure when it would make the next step fail.',
    'Answer with one JSON object: {"success": true or false, "confidence": "High", "Medium" or "Low", "reasoning": "one or two sentences on what the images show"}.',
  ].join('\n');
}

/** Reads {"success": bool, ...} from a teacher's answer (the JSON in the text, as extractJson finds it). */
export function parseVerdict(text: string): { success: boolean; confidence?: string; reasoning?: string } {
  const shown = JSON.stringify(text.slice(0, 120));
  if (!text.includes('{')) throw new VlakitError('E_TEACHER', `the verifier's answer holds no JSON object: ${shown}`);
  let v: unknown;
  try {
    v = extractJson(text);
  } catch (err) {
    throw new VlakitError('E_TEACHER', `the verifier's answer: ${(err as Error).message}: ${shown}`);
  }
  const o = (v ?? {}) as { success?: unknown; confidence?: unknown; reasoning?: unknown };
  if (typeof o.success !== 'boolean') throw new VlakitError('E_TEACHER', `the verifier's answer has no boolean "success": ${shown}`);
  return { success: o.success, confidence: typeof o.confidence === 'string' ? o.confidence : undefined, reasoning: typeof o.reasoning === 'string' ? o.reasoning : undefined };
}

export class TeacherVerifier implements Verifier {
  readonly name: string;
  constructor(private readonly teacher: Teacher) {
    this.name = `teacher:${teacher.id}`;
  }

  async verify(v: VerifyInput): Promise<Verdict> {
    const t0 = performance.now();
    const a = await this.teacher.complete({
      kind: 'verify',
      json: true,
      messages: [{ role: 'user', text: verifierPrompt(v.subtask, v.next), images: [v.before, v.after] }],
      context: { subtask: v.subtask, next: v.next, index: v.index, total: v.total, before: v.beforeInfo?.oracle, after: v.afterInfo?.oracle, success: v.afterInfo?.success },
    });
    const verdict = parseVerdict(a.text);
    return { success: verdict.success, text: a.text, ms: performance.now() - t0 };
  }

  async close(): Promise<void> {
    await this.teacher.close?.();
  }
}
