/**
 * Training examples from chunk records, in the chat format VLMs train on: the user turn holds images and text,
 * the assistant turn the target, and `spans` mark which characters of the target are reasoning and which are
 * actions (train-sft weighs them: action loss + lambda_r x reasoning loss).
 * - vlm2vla: the three stages as separate examples (1: subtasks from the first image and the instruction;
 *   2: a motion plan from an image and a subtask; 3: the action chunk from an image, the subtask and the motion
 *   plan), plus verifier pairs (frames before and after a subtask: yes; mismatched pairs: no) and direction
 *   prediction; with `noReasoning`, only image + instruction -> actions (VLM2VLA-NR).
 * - refinevla: the rationale (Observation, Situation Analysis, Spatial Reasoning, Task Planning) followed by the
 *   actions in one target; with `noReasoning`, the actions alone (the SFT baseline).
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { cameraNames, camerasOf } from '../io/cameras.js';
import { type GroundTarget, groundTargets } from '../env/ground.js';
import { type ImageJson } from '../io/json.js';
import { EpisodeIdSchema, expected, ImageSchema } from '../io/records.js';
import { directionWords } from '../teacher/kinematic.js';
import { type ActionCodec, ActionCodecSpecSchema, codecStateText } from './codecs.js';
import { VlakitError } from '../errors.js';
import { ACTIONS_MARKER, PROMPTS, actionFormatOf, formatSubtaskList } from './prompts.js';
import type { ChunkRecord } from './records.js';

const offset = z.number().int().nonnegative();

export const SpanSchema = z.looseObject({ kind: z.enum(['reasoning', 'action']), start: offset, end: offset });
export type Span = z.infer<typeof SpanSchema>;

const ContentSchema = z.discriminatedUnion('type', [z.looseObject({ type: z.literal('image') }), z.looseObject({ type: z.literal('text'), text: z.string() })], {
  error: expected('{"type": "image"} or {"type": "text", "text": "..."}'),
});

/**
 * The training example record; its type is the schema's. Beyond the fields' types it checks what training relies
 * on: a user turn then an assistant turn whose first part is the target text, and spans in order inside the target.
 */
export const TrainingExampleSchema = z
  .looseObject({
    id: z.string(),
    images: z.array(ImageSchema),
    messages: z.array(z.looseObject({ role: z.enum(['user', 'assistant']), content: z.array(ContentSchema) })),
    spans: z.array(SpanSchema),
    meta: z.looseObject({
      episode_id: EpisodeIdSchema,
      steps: z.tuple([offset, offset]),
      stage: z.string(),
      method: z.string(),
      representation: z.string(),
      /** The codec's spec (`describe()`: every codec, with its layout), so training, export and rollout decode alike. */
      codec: ActionCodecSpecSchema.optional(),
      split: z.string(),
    }),
    /**
     * `relabel --state`: the robot state of the example's observation (its `observation.state` numbers, as they are),
     * on the examples whose prompt carries it; an action head takes it as its state input.
     */
    state: z.array(z.number().finite()).optional(),
    /** Built-in world only: the oracle facts of the (first) image's step, pixel masks included when recorded. */
    oracle: z.unknown().optional(),
    /**
     * `relabel --ground` / `eval-vqa --ground`: where the objects the prompt names are, in the order it names them
     * (entry k trains keypoint k with `train-sft --ground-weight`): the image's slot and the point in [0, 1]^2.
     */
    ground: z.array(z.object({ object: z.string(), image: z.number().int().nonnegative(), point: z.tuple([z.number().min(0).max(1), z.number().min(0).max(1)]) })).optional(),
  })
  .superRefine((ex, ctx) => {
    const [user, assistant] = ex.messages;
    if (user?.role !== 'user' || assistant?.role !== 'assistant') {
      ctx.addIssue({ code: 'custom', path: ['messages'], message: 'expected a user turn then an assistant turn' });
      return;
    }
    const target = assistant.content[0];
    if (target?.type !== 'text') {
      ctx.addIssue({ code: 'custom', path: ['messages', 1, 'content', 0], message: 'expected the target text ({"type": "text", "text": "..."})' });
      return;
    }
    let at = 0;
    ex.spans.forEach((s, i) => {
      if (s.start < at || s.end < s.start || s.end > target.text.length) {
        ctx.addIssue({ code: 'custom', path: ['spans', i], message: `span [${s.start}, ${s.end}) is out of order or outside the target text (${target.text.length} characters)` });
      }
      at = Math.max(at, s.end);
    });
  });
export type TrainingExample = z.infer<typeof TrainingExampleSchema>;

export interface ExampleOptions {
  method: 'vlm2vla' | 'refinevla';
  codec: ActionCodec;
  noReasoning?: boolean;
  /** VLM2VLA-NR examples (`noReasoning`) with the compact task prompt (PROMPTS.compact). */
  compactPrompt?: boolean;
  /**
   * VLM2VLA-NR examples (`noReasoning`) whose task is the subtask under way at the chunk's first step (the built-in
   * world's `oracle.subtask.text`) instead of the episode's instruction: the low level of a hierarchy, one skill per
   * subtask. Steps after the last subtask (the task done) give no example.
   */
  subtaskPrompts?: boolean;
  /**
   * Only the planner's examples (VLM2VLA's subtasks stage): per episode, its first frame and instruction -> the built-in
   * world's numbered subtask list (the chunks' `task_subtasks`). A planner for a policy that writes no text (rollout
   * --planner DIR).
   */
  subtaskLists?: boolean;
  /** Cameras of every example, in order (default: the chunk's `cameras`, else the primary camera; refinevla: all). */
  cameras?: string[];
  /** Share of episodes that go to the validation split (by a seeded hash of the episode id). */
  valFraction?: number;
  seed?: number;
  /** Grounding targets (`ground`) of the objects each action prompt names (`all`: then every other visible object), from the chunk's oracle masks (rollout --masks). */
  ground?: boolean | 'all';
}


/** The split of an episode: a seeded hash, so an episode's examples all land in the same split. */
export function splitOf(episodeId: string | number, valFraction: number, seed = 0): 'train' | 'val' {
  if (!(valFraction > 0)) return 'train';
  const h = createHash('sha256').update(`${seed}:${String(episodeId)}`).digest();
  return h.readUInt32LE(0) / 2 ** 32 < valFraction ? 'val' : 'train';
}

function example(id: string, images: ImageJson[], prompt: string, parts: { text: string; kind: Span['kind'] }[], meta: TrainingExample['meta'], oracle?: unknown, state?: number[], ground?: GroundTarget[]): TrainingExample {
  const spans: Span[] = [];
  let target = '';
  for (const p of parts) {
    if (!p.text) continue;
    if (target) target += '\n';
    spans.push({ kind: p.kind, start: target.length, end: target.length + p.text.length });
    target += p.text;
  }
  return {
    id,
    images,
    messages: [
      { role: 'user', content: [...images.map(() => ({ type: 'image' as const })), { type: 'text', text: prompt }] },
      { role: 'assistant', content: [{ type: 'text', text: target }] },
    ],
    spans,
    meta,
    ...(state !== undefined ? { state } : {}),
    ...(oracle !== undefined ? { oracle } : {}),
    ...(ground !== undefined ? { ground } : {}),
  };
}

const OracleSubtaskSchema = z.looseObject({ subtask: z.looseObject({ kind: z.string(), text: z.string() }) });

/** The subtask under way in a built-in world record's oracle ({kind, text}), or undefined when it has none. */
export function oracleSubtask(oracle: unknown): { kind: string; text: string } | undefined {
  const r = OracleSubtaskSchema.safeParse(oracle);
  return r.success ? r.data.subtask : undefined;
}

/** The four ReFineVLA sections and the plan, as one text. */
export function rationaleText(r: Record<string, unknown>): string {
  const steps = Array.isArray(r.logical_steps) ? (r.logical_steps as string[]).map((s, i) => `<${i + 1}> ${s}`).join(' ') : '';
  return [
    `<Observation>: ${r.observation}`,
    `<Situation Analysis>: ${r.situation_analysis}`,
    `<Spatial Reasoning>: ${r.spatial_reasoning}`,
    `<Task Planning>: ${r.task_planning} <logical_steps>${steps} <sub_action> ${r.sub_action}`,
  ].join('\n');
}

/** All examples of one episode's chunks (in chunk order). */
export function episodeExamples(chunks: ChunkRecord[], opts: ExampleOptions): TrainingExample[] {
  if (chunks.length === 0) return [];
  const ep = chunks[0].episode_id;
  const split = splitOf(ep, opts.valFraction ?? 0, opts.seed);
  const rep = opts.codec.name;
  const codec = opts.codec.describe();
  const meta = (stage: string, a: number, b: number): TrainingExample['meta'] => ({ episode_id: ep, steps: [a, b], stage, method: opts.method, representation: rep, codec, split });
  // the images of an observation: the stated cameras, else the primary one (all of them with `all`)
  const views = (c: ChunkRecord, obs: Record<string, unknown>, all = false): ImageJson[] => {
    const names = opts.cameras ?? c.cameras;
    return names ? camerasOf(obs, names) : all ? camerasOf(obs) : camerasOf(obs).slice(0, 1);
  };
  // the grounding targets of a prompt over an observation's images (--ground), from the chunk's oracle masks
  const grounded = (c: ChunkRecord, obs: Record<string, unknown>, prompt: string, all = false): GroundTarget[] | undefined => {
    if (!opts.ground) return undefined;
    const names = opts.cameras ?? c.cameras ?? (all ? cameraNames(obs) : cameraNames(obs).slice(0, 1));
    const g = groundTargets(c.oracle, prompt, names, opts.ground === 'all');
    if (!g) throw new VlakitError('E_RECORD_INVALID', `relabel --ground: chunk ${c.chunk_index} of episode ${String(ep)} has no oracle pixel masks (record the episodes with rollout --masks)`, { field: 'oracle.masks' });
    return g;
  };
  const instr = chunks[0].language_instruction;
  const format = actionFormatOf(opts.codec);
  const out: TrainingExample[] = [];
  const stateOf = (c: ChunkRecord): string | undefined => {
    if (!opts.codec.state) return undefined;
    const text = codecStateText(opts.codec, (c.observation as Record<string, unknown>).state);
    if (text === undefined) {
      throw new VlakitError('E_RECORD_INVALID', `relabel --state: chunk ${c.chunk_index} of episode ${String(ep)} has no numeric observation.state (the robot state the prompt is to carry)`, { field: 'observation.state' });
    }
    return text;
  };
  // the same state as numbers (stateOf has checked it), for an action head's state input
  const stateNumbers = (c: ChunkRecord): number[] | undefined => (opts.codec.state ? [...((c.observation as Record<string, unknown>).state as number[])] : undefined);

  if (opts.method === 'refinevla') {
    for (const c of chunks) {
      const imgs = views(c, c.observation, true);
      const r = c.reasoning ?? undefined;
      const withReasoning = !opts.noReasoning && r && !r.error;
      const prompt = PROMPTS.refinevla(instr, Boolean(withReasoning), stateOf(c), format);
      out.push(
        example(`${ep}/refinevla/${c.chunk_index}`, imgs, prompt, [...(withReasoning ? [{ text: rationaleText(r), kind: 'reasoning' as const }] : []), { text: `${ACTIONS_MARKER} ${opts.codec.encode(c.actions)}`, kind: 'action' }], meta('refinevla', c.start_step, c.end_step), c.oracle, stateNumbers(c), grounded(c, c.observation, instr, true)),
      );
    }
    return out;
  }

  // the planner's example (VLM2VLA's subtasks stage): the first frame and the instruction -> the numbered list
  const subtasksExample = (list: string[]): TrainingExample => example(`${ep}/subtasks`, views(chunks[0], chunks[0].observation), PROMPTS.subtasks(instr), [{ text: formatSubtaskList(list), kind: 'reasoning' }], meta('subtasks', chunks[0].start_step, chunks.at(-1)!.end_step));

  if (opts.subtaskLists) {
    const list = chunks[0].task_subtasks;
    if (!list) throw new VlakitError('E_RECORD_INVALID', `relabel --subtask-lists: episode ${String(ep)} has no task_subtasks (chunk carries the built-in world's list from episode_metadata.task.subtasks: record the episodes with vlakit rollout)`, { field: 'task_subtasks' });
    return [subtasksExample(list)];
  }

  if (opts.noReasoning) {
    for (const c of chunks) {
      let task = instr;
      if (opts.subtaskPrompts) {
        const sub = oracleSubtask(c.oracle);
        if (sub === undefined) throw new VlakitError('E_RECORD_INVALID', `relabel --subtask-prompts: chunk ${c.chunk_index} of episode ${String(ep)} has no oracle.subtask (record the episodes in the built-in world, which writes it)`, { field: 'oracle.subtask' });
        if (sub.kind === 'done') continue;
        task = sub.text;
      }
      out.push(example(`${ep}/actions/${c.chunk_index}`, views(c, c.observation), (opts.compactPrompt ? PROMPTS.compact(task, stateOf(c)) : PROMPTS.task(task, stateOf(c), format)), [{ text: opts.codec.encode(c.actions), kind: 'action' }], meta('actions', c.start_step, c.end_step), undefined, stateNumbers(c), grounded(c, c.observation, task)));
    }
    return out;
  }

  // VLM2VLA: one subtask per merged chunk
  out.push(subtasksExample(chunks.map((c) => c.subtask.description)));
  chunks.forEach((c, i) => {
    const img = views(c, c.observation);
    const sub = c.subtask.description;
    const plan = c.subtask.motion_plan;
    if (plan) {
      out.push(example(`${ep}/motion/${i}`, img, PROMPTS.motionPlan(sub), [{ text: plan, kind: 'reasoning' }], meta('motion_plan', c.start_step, c.end_step), c.oracle, undefined, grounded(c, c.observation, sub)));
    }
    out.push(
      example(`${ep}/actions/${i}`, img, PROMPTS.actions(sub, plan, stateOf(c), format), [{ text: opts.codec.encode(c.actions), kind: 'action' }], meta('actions', c.start_step, c.end_step), c.oracle, stateNumbers(c), grounded(c, c.observation, sub)),
    );
    const after = views(c, c.next_observation);
    const verify = PROMPTS.verify(sub);
    out.push(example(`${ep}/verify/${i}/yes`, [...img, ...after], verify, [{ text: 'yes', kind: 'reasoning' }], meta('verifier', c.start_step, c.end_step)));
    // a mismatched pair: this subtask's "before" frame twice (nothing done), or the next subtask's frames
    const other = chunks[i + 1];
    const negAfter = other ? views(other, other.next_observation) : img;
    const negBefore = other ? views(other, other.observation) : img;
    out.push(example(`${ep}/verify/${i}/no`, other ? [...negBefore, ...negAfter] : [...img, ...img], verify, [{ text: 'no', kind: 'reasoning' }], meta('verifier', c.start_step, c.end_step)));
    const [x, y, z] = c.action_layout?.translation ?? [0, 1, 2];
    const words = x === undefined ? '' : directionWords(c.actions.reduce((s, a) => [s[0] + a[x], s[1] + a[y], s[2] + a[z]], [0, 0, 0]));
    if (words) {
      out.push(example(`${ep}/direction/${i}`, img, PROMPTS.direction(sub), [{ text: words, kind: 'reasoning' }], meta('direction', c.start_step, c.end_step)));
    }
  });
  return out;
}

/** The target text of an example (the assistant turn). */
export function targetOf(ex: TrainingExample): string {
  const c = ex.messages[1].content[0];
  return c.type === 'text' ? c.text : '';
}
