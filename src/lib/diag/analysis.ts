/**
 * Failure analysis of a rollout episode, from its step records alone (so it works on any recorded rollout, also
 * one read back later): where the episode ended (the world's subtask), how close the gripper came to the object
 * it was working on, how often it closed the gripper and held something, and why it stopped (a timeout, a safety
 * stop, the policy finishing, or success).
 */
import type { StepRecord } from '../io/records.js';

/** How an episode ended, in the words of the report. */
export type EndKind = 'success' | 'timeout' | 'safety_stop' | 'policy_finished' | 'env_done';

export interface EpisodeAnalysis {
  episode_id: string | number;
  family: string;
  seed?: number;
  success: boolean;
  end: EndKind;
  /** Actions executed. */
  steps: number;
  /** The world's subtask when the episode ended ({index, kind: 'done' after the last, text}); absent outside the built-in world. */
  ended_in?: { index: number; kind: string; text: string };
  subtasks_done?: number;
  subtasks_total?: number;
  /** The object the ended-in subtask acts on (its id), and the closest the gripper came to it. */
  target?: string;
  /** Closest distance, meters, from the gripper (TCP, `observation.state[0..2]`) to the target's position (the oracle's `pos`, its base centre). */
  min_distance_m?: number;
  /** The step at which that distance was reached. */
  min_distance_step?: number;
  /** Closest horizontal (x-y) distance, meters: whether the gripper got over the object at all. */
  min_xy_distance_m?: number;
  /** Times the gripper command went from open (>= 0.5) to closed. */
  grasp_attempts: number;
  /** Times the world saw the gripper start holding an object. */
  grasps: number;
  /** Steps on which the safety filter changed the action. */
  safety_interventions: number;
}

type OracleObj = { id?: string; name?: string; pos?: number[] };
type Oracle = { subtask?: { index: number; kind: string; text: string }; subtasks_done?: number; holding?: string; objects?: OracleObj[] };

function endKind(end: unknown, success: boolean): EndKind {
  if (success || end === 'success') return 'success';
  if (end === 'truncated') return 'timeout';
  if (end === 'estop') return 'safety_stop';
  if (end === 'policy') return 'policy_finished';
  return 'env_done';
}

/** The object a subtask's words name: the longest object name in the text; else the task's first object. */
function targetOf(text: string, objects: OracleObj[], taskObjects: string[]): OracleObj | undefined {
  const t = text.toLowerCase();
  const named = objects.filter((o) => o.name && t.includes(o.name.toLowerCase())).sort((a, b) => (b.name?.length ?? 0) - (a.name?.length ?? 0));
  return named[0] ?? objects.find((o) => o.id === taskObjects[0]);
}

/**
 * The failure analysis of one episode's step records (the last record is the final observation).
 * @example episodeAnalysis(ep.records).min_distance_m // 0.004: the gripper got to the block
 */
export function episodeAnalysis(records: StepRecord[]): EpisodeAnalysis {
  const meta = (records[0]?.episode_metadata ?? {}) as { family?: string; seed?: number; success?: boolean; end?: string; task?: { subtasks?: unknown[]; objects?: unknown[] } };
  const success = meta.success === true;
  const taskObjects = (meta.task?.objects ?? []).filter((o): o is string => typeof o === 'string');
  const out: EpisodeAnalysis = {
    episode_id: records[0]?.episode_id ?? '',
    family: meta.family ?? 'task',
    ...(typeof meta.seed === 'number' ? { seed: meta.seed } : {}),
    success,
    end: endKind(meta.end, success),
    steps: Math.max(records.length - 1, 0),
    grasp_attempts: 0,
    grasps: 0,
    safety_interventions: 0,
  };
  const last = records.at(-1)?.oracle as Oracle | undefined;
  if (last?.subtask) {
    out.ended_in = { index: last.subtask.index, kind: last.subtask.kind, text: last.subtask.text };
    out.subtasks_done = last.subtasks_done;
    out.subtasks_total = meta.task?.subtasks?.length;
  }
  // the subtask it ended in names the object; after the last subtask, the text is empty: the task's first object
  const target = last?.objects ? targetOf(last.subtask?.text ?? '', last.objects, taskObjects) : undefined;
  if (target?.id) out.target = target.id;
  let open = true;
  let holding = '';
  for (const [t, r] of records.entries()) {
    const oracle = r.oracle as Oracle | undefined;
    const state = r.observation?.state;
    const pos = oracle?.objects?.find((o) => o.id === target?.id)?.pos;
    if (target && Array.isArray(state) && state.length >= 3 && Array.isArray(pos) && pos.length >= 3) {
      const d = Math.hypot(Number(state[0]) - pos[0], Number(state[1]) - pos[1], Number(state[2]) - pos[2]);
      const xy = Math.hypot(Number(state[0]) - pos[0], Number(state[1]) - pos[1]);
      if (Number.isFinite(d) && (out.min_distance_m === undefined || d < out.min_distance_m)) {
        out.min_distance_m = Math.round(d * 1e4) / 1e4;
        out.min_distance_step = t;
      }
      if (Number.isFinite(xy) && (out.min_xy_distance_m === undefined || xy < out.min_xy_distance_m)) out.min_xy_distance_m = Math.round(xy * 1e4) / 1e4;
    }
    const h = oracle?.holding ?? '';
    if (h && h !== holding) out.grasps += 1;
    holding = h;
    if (t === records.length - 1) break; // the final observation's action is a no-op, not executed
    const a = r.action;
    if (Array.isArray(a) && a.length && typeof a.at(-1) === 'number') {
      const g = a.at(-1) as number;
      if (open && g < 0.5) out.grasp_attempts += 1;
      open = g >= 0.5;
    }
    if ((r.safety as { interventions?: unknown[] } | undefined)?.interventions?.length) out.safety_interventions += 1;
  }
  return out;
}

/** The failed episodes as a table (one line each), with a count of the ways they ended; '' when none failed. */
export function formatFailures(rows: EpisodeAnalysis[]): string {
  const failed = rows.filter((r) => !r.success);
  if (!failed.length) return '';
  const by = new Map<EndKind, number>();
  for (const r of failed) by.set(r.end, (by.get(r.end) ?? 0) + 1);
  const lines = [
    `failed episodes: ${failed.length} of ${rows.length} (${[...by].map(([k, n]) => `${n} ${k.replace('_', ' ')}`).join(', ')})`,
    `${'episode'.padEnd(10)} ${'task'.padEnd(16)} ${'end'.padEnd(15)} ${'steps'.padStart(5)} ${'ended in subtask'.padEnd(34)} ${'closest cm'.padStart(10)} ${'xy cm'.padStart(6)} ${'grasp tries'.padStart(11)} ${'held'.padStart(4)}`,
  ];
  for (const r of failed) {
    const sub = r.ended_in ? `${r.ended_in.index + 1}/${r.subtasks_total ?? '?'} ${r.ended_in.kind === 'done' ? 'done' : r.ended_in.text}` : '-';
    const cm = (m?: number) => (m === undefined ? '-' : (m * 100).toFixed(1));
    lines.push(
      `${String(r.episode_id).padEnd(10)} ${r.family.padEnd(16)} ${r.end.padEnd(15)} ${String(r.steps).padStart(5)} ${(sub.length > 34 ? `${sub.slice(0, 33)}…` : sub).padEnd(34)} ${cm(r.min_distance_m).padStart(10)} ${cm(r.min_xy_distance_m).padStart(6)} ${String(r.grasp_attempts).padStart(11)} ${String(r.grasps).padStart(4)}`,
    );
  }
  return lines.join('\n');
}
