/**
 * Teacher prompts (our own wording) with the structure and keys of the papers, and strict parsers for the answers.
 * - reasoning (ReFineVLA): the sections Observation, Situation Analysis, Spatial Reasoning, Task Planning, the
 *   numbered logical steps and the next sub-action, for one step, from all camera views and the instruction;
 * - plan (VLM2VLA): the trajectory split into subtasks, each with a step description, reasoning, main movements
 *   and its step range, from sampled frames, the instruction and the action log.
 * The prompt version is part of the cache key and of every output record.
 */
import { z } from 'zod';

export const PROMPT_VERSIONS = { reasoning: 'reasoning-v1', plan: 'plan-v1', verify: 'verify-v1', vqa: 'vqa-v1' } as const;

export const CONVENTIONS =
  'Coordinates are relative to the robot: +x is forward (away from the robot base), -x backward; +y is left, -y right; +z is up, -z down. The gripper value is 1 when open and 0 when closed.';

export function reasoningPrompt(instruction: string, views: number): string {
  return [
    `You are the reasoning module of a robot arm with a parallel gripper. You are given ${views === 1 ? 'one camera view' : `${views} camera views taken at the same moment`} of the scene and the task instruction.`,
    CONVENTIONS,
    `Instruction: "${instruction}"`,
    'Think step by step about the scene and answer with a single JSON object with exactly these keys:',
    '- "observation": what the images show: the objects, their colours and where the gripper is.',
    '- "situation_analysis": what is going on in the scene and what the task requires at this moment.',
    '- "spatial_reasoning": how the relevant objects are placed relative to each other and to the gripper, and which relations matter for the task.',
    '- "task_planning": how the robot should go on from here to finish the task.',
    '- "logical_steps": that plan as an ordered list of short steps (strings).',
    '- "sub_action": the robot\'s very next action, in a few words.',
    'Output the JSON object and nothing else.',
  ].join('\n');
}

export function planPrompt(instruction: string, frames: number[], actions: number[][]): string {
  const T = actions.length;
  const log = actions.map((a, t) => `t=${t}: [${a.map((v, i) => (i === a.length - 1 ? String(+v.toFixed(2)) : v.toFixed(3))).join(', ')}]`).join('\n');
  return [
    `You are annotating a demonstration of a 4-DoF robot arm (x, y, z, gripper). ${CONVENTIONS} Each action [dx, dy, dz, gripper] moves the end-effector by dx, dy, dz meters in one control step and sets the gripper.`,
    `The instruction given to the robot was: "${instruction}".`,
    `The ${frames.length} attached images are frames ${frames.join(', ')} of the ${T}-step trajectory, in order. The action log below gives the action of every step.`,
    'Split the trajectory into the consecutive subtasks that accomplish the instruction. First think step by step about the phases of the motion (approach, grasp, lift, transport, release, retreat, ...), looking at the gripper changes and the directions of motion. Be brief.',
    'Answer with one JSON object {"subtasks": [...]} in which each subtask has the keys:',
    '- "step_description": a short imperative description of the subtask (e.g. "grasp the carrot"),',
    '- "reasoning": why this phase is needed and what the gripper does in it,',
    '- "main_movements": the motion in words relative to the end-effector (e.g. "mostly forward and down; gripper stays open"),',
    `- "start_step" and "end_step": the first and the last step of the subtask (inclusive).`,
    `The ranges must cover steps 0 to ${T - 1} in order, with no gap and no overlap. Do not write actions: they are taken from the log.`,
    'Action log:',
    log,
  ].join('\n');
}

export function repairPrompt(error: string): string {
  return `Your previous answer could not be used: ${error}. Answer again with the corrected JSON object only.`;
}

export interface Reasoning {
  observation: string;
  situation_analysis: string;
  spatial_reasoning: string;
  task_planning: string;
  logical_steps: string[];
  sub_action: string;
}

export interface PlanStep {
  description: string;
  reasoning: string;
  main_movements: string;
  start: number;
  end: number;
}

const text = z.string().trim().min(1, 'must not be empty');
const ReasoningSchema = z.object({
  observation: text,
  situation_analysis: text,
  spatial_reasoning: text,
  task_planning: text,
  logical_steps: z.array(text).min(1, 'must list at least one step'),
  sub_action: text,
});

const PlanSchema = z.object({
  subtasks: z
    .array(
      z.object({
        step_description: text,
        reasoning: z.string(),
        main_movements: z.string(),
        start_step: z.number().int().nonnegative(),
        end_step: z.number().int().nonnegative(),
      }),
    )
    .min(1, 'must hold at least one subtask'),
});

/** Lower-cases keys and turns spaces and dashes into underscores ("STEP_DESCRIPTION", "Sub Action"). */
function normalizeKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(normalizeKeys);
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k.trim().toLowerCase().replace(/[\s-]+/g, '_')] = normalizeKeys(x);
    return out;
  }
  return v;
}

/** Drops reasoning blocks: `<think>...</think>` anywhere, and everything up to a `</think>` whose opening tag was in the prompt. */
export function stripThinking(answer: string): string {
  let t = answer.replace(/<(think|thinking|reasoning)>[\s\S]*?<\/\1>/gi, '');
  const close = t.search(/<\/(think|thinking|reasoning)>/i);
  if (close >= 0) t = t.slice(t.indexOf('>', close) + 1);
  // an unclosed block (the answer ended while thinking): nothing after it is the answer
  const open = t.search(/<(think|thinking|reasoning)>/i);
  if (open >= 0) t = t.slice(0, open);
  return t;
}

/** The end (exclusive) of the balanced {...} starting at `i`, skipping JSON strings; -1 when it never closes. */
function balancedEnd(t: string, i: number): number {
  let depth = 0;
  let inString = false;
  for (let j = i; j < t.length; j++) {
    const c = t[j];
    if (inString) {
      if (c === '\\') j += 1;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '{') depth += 1;
    else if (c === '}') {
      depth -= 1;
      if (depth === 0) return j + 1;
    }
  }
  return -1;
}

function parseObject(s: string): object | undefined {
  try {
    const v: unknown = JSON.parse(s);
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The JSON object in an answer, never eval'd: the whole text; else the first fenced block (```json, ```JSON, or no
 * language; several fences: the first that holds an object); else the first balanced {...} that parses, so prose
 * before or after it (braces included) does not matter. Reasoning blocks (`<think>...</think>`) are dropped first.
 * @example extractJson('<think>{draft}</think>```JSON\n{"a": 1}\n``` Note: {x}') // {a: 1}
 */
export function extractJson(answer: string): unknown {
  const t = stripThinking(answer).trim();
  const whole = parseObject(t);
  if (whole) return whole;
  for (const m of t.matchAll(/```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n?([\s\S]*?)```/g)) {
    const v = parseObject(m[2].trim());
    if (v) return v;
  }
  let firstError: string | undefined;
  for (let i = t.indexOf('{'); i >= 0; i = t.indexOf('{', i + 1)) {
    const end = balancedEnd(t, i);
    if (end < 0) {
      firstError ??= 'an object that never closes (the answer stops before its last "}")';
      break;
    }
    const slice = t.slice(i, end);
    const v = parseObject(slice);
    if (v) return v;
    try {
      JSON.parse(slice);
    } catch (err) {
      firstError ??= (err as Error).message;
    }
    i = end - 1; // an invalid object: its inner braces are not the answer either
  }
  throw new ParseError(`the answer is not valid JSON (${firstError ?? 'no JSON object in it'})`);
}

export class ParseError extends Error {}

function zodMessage(err: z.ZodError): string {
  const i = err.issues[0];
  return `${i.path.join('.') || 'the object'}: ${i.message}`;
}

export function parseReasoning(answer: string): Reasoning {
  const r = ReasoningSchema.safeParse(normalizeKeys(extractJson(answer)));
  if (!r.success) throw new ParseError(`key ${zodMessage(r.error)}; expected keys observation, situation_analysis, spatial_reasoning, task_planning, logical_steps (list), sub_action`);
  return r.data;
}

export interface ParsedPlan {
  steps: PlanStep[];
  /** What was fixed locally: gaps and overlaps snapped to the neighbour's boundary. */
  repairs: string[];
}

/**
 * Parses a plan and checks that its ranges cover steps 0..T-1 in order. Small defects (gaps, overlaps, a first
 * start or last end off the ends) are snapped locally and reported; a plan whose ranges are out of order or
 * collapse to nothing is refused, to be asked again.
 */
export function parsePlan(answer: string, T: number): ParsedPlan {
  const r = PlanSchema.safeParse(normalizeKeys(extractJson(answer)));
  if (!r.success) throw new ParseError(`${zodMessage(r.error)}; expected {"subtasks": [{"step_description", "reasoning", "main_movements", "start_step", "end_step"}]}`);
  const raw = r.data.subtasks;
  const repairs: string[] = [];
  for (let i = 0; i < raw.length; i++) {
    if (raw[i].start_step > raw[i].end_step) throw new ParseError(`subtask ${i} starts at step ${raw[i].start_step} after it ends (${raw[i].end_step})`);
    if (i > 0 && raw[i].start_step <= raw[i - 1].start_step) throw new ParseError(`subtask ${i} starts at step ${raw[i].start_step}, not after subtask ${i - 1} (${raw[i - 1].start_step}); the subtasks must be in order`);
    if (raw[i].start_step >= T) throw new ParseError(`subtask ${i} starts at step ${raw[i].start_step}, beyond the last step ${T - 1}`);
  }
  const steps: PlanStep[] = raw.map((s) => ({ description: s.step_description.trim(), reasoning: s.reasoning.trim(), main_movements: s.main_movements.trim(), start: s.start_step, end: s.end_step }));
  if (steps[0].start !== 0) {
    repairs.push(`first subtask started at ${steps[0].start}, set to 0`);
    steps[0].start = 0;
  }
  for (let i = 1; i < steps.length; i++) {
    const want = steps[i - 1].end + 1;
    if (steps[i].start !== want) {
      repairs.push(`${steps[i].start > want ? 'gap' : 'overlap'} before subtask ${i} (steps ${Math.min(want, steps[i].start)}-${Math.max(want, steps[i].start) - 1}): subtask ${i - 1} now ends at ${steps[i].start - 1}`);
      steps[i - 1].end = steps[i].start - 1;
    }
  }
  const last = steps[steps.length - 1];
  if (last.end !== T - 1) {
    repairs.push(`last subtask ended at ${last.end}, set to ${T - 1}`);
    last.end = T - 1;
  }
  return { steps, repairs };
}
