/** Chunk records: what `vlakit chunk` writes and `vlakit relabel` reads (docs/FORMATS.md). */
import { z } from 'zod';
import { VlakitError } from '../errors.js';
import { keepCameras } from '../io/cameras.js';
import { EpisodeIdSchema, expected, type StepRecord } from '../io/records.js';
import { type PlanAnnotation, type ReasoningAnnotation, ReasoningAnnotationSchema, StepActionSchema } from '../teacher/records.js';
import { fixedChunks, mergeActions, type MergeOptions } from './chunk.js';
import { type ActionLayout, ActionLayoutSchema, layoutFor } from './layout.js';

const index = z.number().int().nonnegative();
const observation = z.record(z.string(), z.unknown(), { error: expected('an object (cameras and state)') });

/** The chunk record; its type is the schema's, so what chunk writes is what relabel validates. */
export const ChunkRecordSchema = z
  .looseObject({
    episode_id: EpisodeIdSchema,
    chunk_index: index,
    mode: z.enum(['merge', 'fixed']),
    language_instruction: z.string(),
    /** The subtask the chunk belongs to: from a plan annotation, else the whole episode (index 0, the instruction). */
    subtask: z.looseObject({ index, count: index, description: z.string(), motion_plan: z.string() }),
    /** The observation at the chunk's first step, and the one after its last step (the last one at the end). */
    observation,
    next_observation: observation,
    /** Actions in the source layout (`action_layout`), all dimensions kept; merged actions (merge) or the next H actions (fixed). */
    actions: z.array(StepActionSchema, { error: expected('a list of actions') }),
    /** Which dimensions are translation, rotation and gripper (stated with --action-layout or inferred: 4-D, 7-D). */
    action_layout: ActionLayoutSchema.optional(),
    /** The cameras chosen with `chunk --camera`, in order (relabel's default cameras). */
    cameras: z.array(z.string()).optional(),
    /** Source steps of each action (inclusive). */
    source_steps: z.array(z.tuple([index, index])),
    /** fixed: 1 for real actions, 0 for padding. */
    mask: z.array(z.number().refine((v) => [0, 1].includes(v), 'expected 0 or 1')).optional(),
    start_step: index,
    end_step: index,
    /** Carried from the chunk's first step when the steps were annotated. */
    reasoning: ReasoningAnnotationSchema.nullable().optional(),
    oracle: z.unknown().optional(),
    /**
     * DAgger and DART records (`rollout --dagger`, `--dart`): where the scripted expert was heading at the chunk's
     * first step, [x, y, z] in the state's frame (meters); relabel --waypoints uses it as that step's target.
     */
    expert_target: z.array(z.number()).length(3).optional(),
    /** The built-in world's subtask list of the episode (`episode_metadata.task.subtasks`); relabel --subtask-lists uses it. */
    task_subtasks: z.array(z.string()).optional(),
  })
  .superRefine((c, ctx) => {
    if (c.source_steps.length !== c.actions.length) ctx.addIssue({ code: 'custom', path: ['source_steps'], message: `expected one [first, last] per action (${c.actions.length}), got ${c.source_steps.length}` });
    if (c.mask && c.mask.length !== c.actions.length) ctx.addIssue({ code: 'custom', path: ['mask'], message: `expected one entry per action (${c.actions.length}), got ${c.mask.length}` });
    const L = c.action_layout;
    if (L) c.actions.forEach((a, i) => {
      if (a.length !== L.dims) ctx.addIssue({ code: 'custom', path: ['actions', i], message: `expected ${L.dims} numbers (action_layout.dims), got ${a.length}` });
    });
    if (c.end_step < c.start_step) ctx.addIssue({ code: 'custom', path: ['end_step'], message: `end_step ${c.end_step} is before start_step ${c.start_step}` });
  });
export type ChunkRecord = z.infer<typeof ChunkRecordSchema>;

export interface ChunkOptions extends MergeOptions {
  mode: 'merge' | 'fixed';
  /** Cameras to keep in the observations, in this order (default: all). */
  cameras?: string[];
  horizon?: number;
  stride?: number;
}

/** The subtasks of an episode from its `plan` fields, or the whole episode as one. */
export function subtasksOf(steps: StepRecord[]): { index: number; count: number; description: string; motion_plan: string; start: number; end: number }[] {
  const plans = steps.map((s) => s.plan as PlanAnnotation | null | undefined); // validated where the steps were read (AnnotatedStepSchema)
  if (plans.every((p) => p && !p.error && p.index >= 0)) {
    const out: ReturnType<typeof subtasksOf> = [];
    for (const p of plans as PlanAnnotation[]) {
      if (out.length && out[out.length - 1].index === p.index) continue;
      out.push({ index: p.index, count: p.count ?? 0, description: p.description, motion_plan: p.main_movements ?? '', start: p.start, end: p.end });
    }
    for (const s of out) s.count = out.length;
    return out;
  }
  return [{ index: 0, count: 1, description: steps[0].language_instruction ?? '', motion_plan: '', start: 0, end: steps.length - 1 }];
}

/** Every number of a step's action (all dimensions). */
function fullAction(step: StepRecord): number[] {
  const a = step.action;
  if (!Array.isArray(a) || a.length < 1 || !a.every((v) => typeof v === 'number' && Number.isFinite(v))) {
    throw new VlakitError('E_RECORD_INVALID', `expected an action (a list of finite numbers), got ${JSON.stringify(a)?.slice(0, 60)}`, { field: 'action', record: step.step });
  }
  return a as number[];
}

/** Cuts one episode into chunk records; every action dimension is kept (merge sums deltas per dimension). */
export function chunkEpisode(steps: StepRecord[], opts: ChunkOptions): ChunkRecord[] {
  const actions = steps.map(fullAction);
  const layout: ActionLayout = layoutFor(actions[0].length, opts.layout);
  actions.forEach((a, i) => {
    if (a.length !== layout.dims) throw new VlakitError('E_RECORD_INVALID', `episode ${String(steps[0].episode_id)}: step ${steps[i].step} has a ${a.length}-D action, the episode's first step ${layout.dims}-D`, { field: 'action', record: steps[i].step });
  });
  const subs = subtasksOf(steps);
  const view = (obs: Record<string, unknown>) => (opts.cameras ? keepCameras(obs, opts.cameras) : obs);
  const beyond = subs.find((s) => s.end >= steps.length);
  if (beyond) {
    throw new VlakitError('E_RECORD_INVALID', `episode ${String(steps[0].episode_id)}: the plan's subtask ${beyond.index} ends at step ${beyond.end}, but the episode has ${steps.length} steps`, { field: 'plan.end' });
  }
  const base = (start: number, end: number, index: number) => {
    const sub = subs.find((s) => start >= s.start && start <= s.end) ?? subs[0];
    const first = steps[start];
    const rec: ChunkRecord = {
      episode_id: first.episode_id,
      chunk_index: index,
      mode: opts.mode,
      language_instruction: first.language_instruction ?? '',
      subtask: { index: sub.index, count: sub.count, description: sub.description, motion_plan: sub.motion_plan },
      observation: view(first.observation ?? {}),
      next_observation: view(steps[Math.min(end + 1, steps.length - 1)].observation ?? {}),
      actions: [],
      action_layout: layout,
      ...(opts.cameras ? { cameras: opts.cameras } : {}),
      source_steps: [],
      start_step: first.step,
      end_step: steps[end].step,
    };
    if (first.reasoning !== undefined) rec.reasoning = first.reasoning as ReasoningAnnotation | null; // validated where the steps were read
    if (first.oracle !== undefined) rec.oracle = first.oracle;
    const info = first.policy as { dagger?: { target?: unknown }; dart?: { target?: unknown } } | undefined;
    const target = info?.dagger?.target ?? info?.dart?.target;
    if (Array.isArray(target) && target.length === 3 && target.every((v) => typeof v === 'number' && Number.isFinite(v))) rec.expert_target = target as number[];
    const list = (first.episode_metadata as { task?: { subtasks?: unknown } } | undefined)?.task?.subtasks;
    if (Array.isArray(list) && list.length && list.every((t) => typeof t === 'string')) rec.task_subtasks = list as string[];
    return rec;
  };
  const out: ChunkRecord[] = [];
  if (opts.mode === 'merge') {
    for (const sub of subs) {
      const merged = mergeActions(actions.slice(sub.start, sub.end + 1), { ...opts, layout }, sub.start);
      const rec = base(sub.start, sub.end, out.length);
      rec.actions = merged.map((m) => m.action);
      rec.source_steps = merged.map((m) => [steps[m.start].step, steps[m.end].step]);
      out.push(rec);
    }
  } else {
    const H = opts.horizon ?? 0;
    if (!(H >= 1)) throw new VlakitError('E_USAGE', '--mode fixed needs --horizon H (at least 1)');
    for (const c of fixedChunks(actions, H, opts.stride ?? 1, layout)) {
      const rec = base(c.start, c.end, out.length);
      rec.actions = c.actions;
      rec.mask = c.mask;
      rec.source_steps = c.actions.map((_, i) => {
        const t = Math.min(c.start + i, c.end);
        return [steps[t].step, steps[t].step];
      });
      out.push(rec);
    }
  }
  return out;
}

export function isChunkRecord(v: unknown): v is ChunkRecord {
  return ChunkRecordSchema.safeParse(v).success;
}
