/**
 * The action layout of a dataset: which dimensions of an action vector are translation, rotation and gripper, and
 * whether they are deltas (per step) or absolute targets. Described once per dataset and carried in chunk records,
 * examples' codec specs, checkpoints and exports, so every stage reads the same dimensions the same way.
 * - `xyz-g` (the built-in world): `[dx, dy, dz, gripper]`;
 * - `xyz-rpy-g` (RLDS / Bridge / Open X-Embodiment): `[dx, dy, dz, droll, dpitch, dyaw, gripper]`.
 * Translation is in meters, rotation in radians; the gripper is 1 open, 0 closed, binary or continuous in [0, 1].
 */
import { existsSync } from 'node:fs';
import { z } from 'zod';
import { VlakitError } from '../errors.js';
import { readJsonFile } from '../io/json-file.js';
import { zodProblem } from '../io/json-file.js';

const dim = z.number().int().nonnegative();

export const ActionLayoutSchema = z
  .object({
    /** Number of numbers in an action. */
    dims: z.number().int().min(1).max(64),
    /** Indices of x, y, z translation (meters; +x forward, +y left, +z up), 3 or none. */
    translation: z.array(dim).refine((a) => a.length === 0 || a.length === 3, 'expected 3 indices (x, y, z) or none'),
    /** Indices of roll, pitch, yaw (radians), 3 or none. */
    rotation: z.array(dim).refine((a) => a.length === 0 || a.length === 3, 'expected 3 indices (roll, pitch, yaw) or none'),
    /** Index of the gripper command (1 open, 0 closed), or null. */
    gripper: dim.nullable(),
    /** binary: 0/1 (written as integers); continuous: any value in [0, 1], kept as is. */
    gripper_kind: z.enum(['binary', 'continuous']).default('binary'),
    /** delta: per-step motions (summed when merged); absolute: targets (the last one kept when merged). */
    mode: z.enum(['delta', 'absolute']).default('delta'),
    /**
     * Absolute translation targets meant for a delta env (`relabel --waypoints`): rollout moves toward each in steps of
     * at most this length (the actions' units), from the observation's state.
     */
    max_step: z.number().positive().optional(),
  })
  .superRefine((l, ctx) => {
    const used = [...l.translation, ...l.rotation, ...(l.gripper === null ? [] : [l.gripper])];
    used.forEach((i) => {
      if (i >= l.dims) ctx.addIssue({ code: 'custom', path: ['dims'], message: `index ${i} is outside a ${l.dims}-D action` });
    });
    if (new Set(used).size !== used.length) ctx.addIssue({ code: 'custom', path: ['translation'], message: 'a dimension is named twice' });
  });
export type ActionLayout = z.infer<typeof ActionLayoutSchema>;

/** The named layouts `--action-layout` takes besides a JSON file or inline JSON. */
export const NAMED_LAYOUTS: Record<string, ActionLayout> = {
  'xyz-g': { dims: 4, translation: [0, 1, 2], rotation: [], gripper: 3, gripper_kind: 'binary', mode: 'delta' },
  'xyz-rpy-g': { dims: 7, translation: [0, 1, 2], rotation: [3, 4, 5], gripper: 6, gripper_kind: 'binary', mode: 'delta' },
};

/** The layout of `dims`-D actions when nothing says otherwise: 4-D built-in world, 7-D RLDS; else undefined. */
export function inferLayout(dims: number, gripperKind: 'binary' | 'continuous' = 'binary'): ActionLayout | undefined {
  const base = dims === 4 ? NAMED_LAYOUTS['xyz-g'] : dims === 7 ? NAMED_LAYOUTS['xyz-rpy-g'] : undefined;
  return base ? { ...base, gripper_kind: gripperKind } : undefined;
}

/** Whether every value is 0 or 1: a binary gripper. */
export function gripperKindOf(values: Iterable<number>): 'binary' | 'continuous' {
  for (const v of values) if (v !== 0 && v !== 1) return 'continuous';
  return 'binary';
}

/**
 * `--action-layout`: a name (xyz-g, xyz-rpy-g, each optionally with `:continuous`), a JSON object, or a JSON file.
 * @example parseLayout('xyz-rpy-g:continuous') // 7-D with a continuous gripper
 */
export function parseLayout(spec: string): ActionLayout {
  const [name, kind] = spec.split(':');
  if (NAMED_LAYOUTS[name] && (kind === undefined || kind === 'binary' || kind === 'continuous')) return { ...NAMED_LAYOUTS[name], gripper_kind: (kind as 'binary' | 'continuous') ?? 'binary' };
  if (spec.trim().startsWith('{')) {
    let v: unknown;
    try {
      v = JSON.parse(spec);
    } catch (err) {
      throw new VlakitError('E_USAGE', `--action-layout: invalid JSON: ${(err as Error).message}`);
    }
    const r = ActionLayoutSchema.safeParse(v);
    if (!r.success) throw new VlakitError('E_USAGE', `--action-layout: ${zodProblem(r.error).message}`);
    return r.data;
  }
  if (existsSync(spec)) return readJsonFile(spec, ActionLayoutSchema, { what: 'action layout' });
  throw new VlakitError('E_USAGE', `--action-layout "${spec}": expected ${Object.keys(NAMED_LAYOUTS).join(' or ')} (optionally :continuous), a JSON object or a JSON file`);
}

/**
 * The layout for actions of `dims` numbers: the stated one (checked against `dims`) or the inferred one.
 * Refuses dimensions it cannot infer.
 */
export function layoutFor(dims: number, stated?: ActionLayout, gripperKind?: 'binary' | 'continuous'): ActionLayout {
  if (stated) {
    if (stated.dims !== dims) throw new VlakitError('E_RECORD_INVALID', `the action layout describes ${stated.dims}-D actions, but the actions have ${dims} numbers`, { field: 'action' });
    return stated;
  }
  const l = inferLayout(dims, gripperKind);
  if (!l) throw new VlakitError('E_USAGE', `cannot tell what the ${dims} numbers of an action are; state it with --action-layout (a JSON object: {"dims": ${dims}, "translation": [0,1,2], "rotation": [], "gripper": ${dims - 1}})`);
  return l;
}

/** The kind of each dimension. */
export function dimKinds(l: ActionLayout): ('translation' | 'rotation' | 'gripper' | 'other')[] {
  return Array.from({ length: l.dims }, (_, i) => (l.translation.includes(i) ? 'translation' : l.rotation.includes(i) ? 'rotation' : l.gripper === i ? 'gripper' : 'other'));
}

/** Short names of the dimensions (dx dy dz droll dpitch dyaw gripper; d<i> for others), for reports. */
export function dimNames(l: ActionLayout): string[] {
  const t = ['x', 'y', 'z'];
  const r = ['roll', 'pitch', 'yaw'];
  const p = l.mode === 'delta' ? 'd' : '';
  return Array.from({ length: l.dims }, (_, i) => {
    const a = l.translation.indexOf(i);
    if (a >= 0) return `${p}${t[a]}`;
    const b = l.rotation.indexOf(i);
    if (b >= 0) return `${p}${r[b]}`;
    return l.gripper === i ? 'gripper' : `a${i}`;
  });
}
