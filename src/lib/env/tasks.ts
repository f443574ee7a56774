/**
 * Task families of the tabletop world: their instructions (varied wording), the subtasks that make them up, the
 * completion predicate of each subtask (the `oracle` verifier) and the success predicate of the task.
 */
import { VlakitError } from '../errors.js';
import type { Rng } from '../util/rng.js';
import { ITEMS, type ObjectSpec, RECEPTACLES } from './catalog.js';
import { type World, yawOf } from './physics.js';
import { TABLE_REGION, type Vec3 } from './scene.js';

export const FAMILIES = ['pick', 'place', 'near', 'place_then_lift'] as const;
export type Family = (typeof FAMILIES)[number];

export type SubtaskKind = 'reach' | 'grasp' | 'lift' | 'carry' | 'place' | 'retract';

export interface Subtask {
  kind: SubtaskKind;
  /** The item acted on. */
  object: string;
  /** The receptacle or reference object, for carry and place. */
  target?: string;
  /** 'on' / 'in' a receptacle, or 'near' a reference. */
  relation?: 'on' | 'in' | 'near';
  /** The subtask in words, as a teacher or a planner would write it. */
  text: string;
}

export interface Task {
  family: Family;
  instruction: string;
  /** Items and receptacles the task is about (ids). */
  objects: string[];
  distractors: string[];
  subtasks: Subtask[];
  /** For 'near': the spot next to the reference where the item is put down. */
  spot?: Vec3;
}

/** Lifted means the item's bottom is at least this high above the table while held. */
export const LIFT_HEIGHT = 0.05;

/** Below this speed (m/s) a released item counts as at rest (a finished put, a dropped item). */
const AT_REST = 0.05;

const TEMPLATES: Record<Family, string[]> = {
  pick: ['pick up the {x}', 'lift the {x}', 'grab the {x} and raise it', 'take the {x} off the table', 'pick the {x} up'],
  place: ['put the {x} {p} the {y}', 'place the {x} {p} the {y}', 'move the {x} {p} the {y}', 'put the {x} {p} the {y} please', 'transfer the {x} {p} the {y}'],
  near: ['move the {x} near the {y}', 'put the {x} next to the {y}', 'place the {x} close to the {y}', 'bring the {x} beside the {y}'],
  place_then_lift: ['put the {x} {p} the {y}, then lift the {z}', 'place the {x} {p} the {y} and then pick up the {z}', 'first put the {x} {p} the {y}, then raise the {z}'],
};

function fill(t: string, x: string, y = '', p = '', z = ''): string {
  return t.replace('{x}', x).replace('{y}', y).replace('{p}', p).replace('{z}', z);
}

function pickSubtasks(x: ObjectSpec): Subtask[] {
  return [
    { kind: 'reach', object: x.id, text: `move to the ${x.name}` },
    { kind: 'grasp', object: x.id, text: `grasp the ${x.name}` },
    { kind: 'lift', object: x.id, text: `lift the ${x.name}` },
  ];
}

function placeSubtasks(x: ObjectSpec, y: ObjectSpec, relation: 'on' | 'in' | 'near'): Subtask[] {
  const carry = relation === 'near' ? `move the ${x.name} next to the ${y.name}` : `move the ${x.name} above the ${y.name}`;
  const place = relation === 'near' ? `put the ${x.name} down next to the ${y.name}` : `put the ${x.name} ${relation} the ${y.name}`;
  return [
    ...pickSubtasks(x),
    { kind: 'carry', object: x.id, target: y.id, relation, text: carry },
    { kind: 'place', object: x.id, target: y.id, relation, text: place },
    { kind: 'retract', object: x.id, text: 'move the gripper up and away' },
  ];
}

/** Draws a task of `family` with `distractors` extra objects. */
export function sampleTask(rng: Rng, family: Family, distractors: number): { task: Omit<Task, 'spot'>; objects: ObjectSpec[] } {
  const items = rng.shuffle(ITEMS);
  const x = items[0];
  let y: ObjectSpec | undefined;
  let z: ObjectSpec | undefined;
  let instruction: string;
  let subtasks: Subtask[];
  switch (family) {
    case 'pick':
      instruction = fill(rng.pick(TEMPLATES.pick), x.name);
      subtasks = pickSubtasks(x);
      break;
    case 'place': {
      y = rng.pick(RECEPTACLES);
      instruction = fill(rng.pick(TEMPLATES.place), x.name, y.name, y.preposition);
      subtasks = placeSubtasks(x, y, y.preposition!);
      break;
    }
    case 'near': {
      y = rng.pick([...RECEPTACLES, ...items.slice(1, 4)]);
      instruction = fill(rng.pick(TEMPLATES.near), x.name, y.name);
      subtasks = placeSubtasks(x, y, 'near');
      break;
    }
    case 'place_then_lift': {
      y = rng.pick(RECEPTACLES.filter((r) => r.role === 'container'));
      z = items[1];
      instruction = fill(rng.pick(TEMPLATES.place_then_lift), x.name, y.name, y.preposition, z.name);
      subtasks = [...placeSubtasks(x, y, y.preposition!), ...pickSubtasks(z)];
      break;
    }
    default:
      throw new VlakitError('E_USAGE', `unknown task family "${family as string}"; expected one of ${FAMILIES.join(', ')}`);
  }
  const main = [x, y, z].filter((o): o is ObjectSpec => !!o);
  const pool = rng.shuffle([...ITEMS, ...RECEPTACLES].filter((o) => !main.includes(o)));
  // At most two receptacles in a scene: they are large.
  const extra: ObjectSpec[] = [];
  let receptacles = main.filter((o) => o.role !== 'item').length;
  for (const o of pool) {
    if (extra.length >= distractors) break;
    if (o.role !== 'item' && receptacles >= 2) continue;
    if (o.role !== 'item') receptacles += 1;
    extra.push(o);
  }
  return {
    task: { family, instruction, objects: main.map((o) => o.id), distractors: extra.map((o) => o.id), subtasks },
    objects: [...main, ...extra],
  };
}

export function parseFamilies(s: string): Family[] {
  const out = s.split(',').map((x) => x.trim()).filter(Boolean);
  if (out.length === 0) throw new VlakitError('E_USAGE', `no task family given; expected some of ${FAMILIES.join(', ')}`);
  if (out.includes('all')) return [...FAMILIES];
  for (const f of out) {
    if (!(FAMILIES as readonly string[]).includes(f)) {
      throw new VlakitError('E_USAGE', `unknown task family "${f}"; expected some of ${FAMILIES.join(', ')} (comma-separated) or all`);
    }
  }
  return out as Family[];
}

// --- predicates ---

/** The receptacle's inner region, in its own frame, holds the point (x, y). */
function insideFootprint(w: World, target: string, p: Vec3, margin = 0): boolean {
  const spec = w.spec(target);
  const s = w.state(target);
  const inner = spec.inner ?? { halfX: spec.radius * 0.6, halfY: spec.radius * 0.6, rim: spec.height };
  const a = yawOf(s.quat);
  const dx = p[0] - s.pos[0];
  const dy = p[1] - s.pos[1];
  const lx = Math.cos(a) * dx + Math.sin(a) * dy;
  const ly = -Math.sin(a) * dx + Math.cos(a) * dy;
  return Math.abs(lx) <= inner.halfX + margin && Math.abs(ly) <= inner.halfY + margin;
}

export function isLifted(w: World, x: string): boolean {
  return w.grasped === x && w.state(x).pos[2] >= LIFT_HEIGHT;
}

/** The item's centre of footprint, lifted to its middle height (for "inside" tests). */
function centre(w: World, x: string): Vec3 {
  const s = w.state(x);
  return [s.pos[0], s.pos[1], s.pos[2]];
}

export function isOn(w: World, x: string, y: string): boolean {
  if (w.grasped === x) return false;
  const p = centre(w, x);
  const top = w.state(y).pos[2] + w.spec(y).height;
  return insideFootprint(w, y, p, 0.01) && p[2] >= top - 0.012 && p[2] <= top + 0.03;
}

export function isIn(w: World, x: string, y: string): boolean {
  if (w.grasped === x) return false;
  const p = centre(w, x);
  const spec = w.spec(y);
  const bottom = w.state(y).pos[2];
  return insideFootprint(w, y, p, 0.005) && p[2] < bottom + (spec.inner?.rim ?? spec.height) && p[2] >= bottom - 0.005;
}

export function isNear(w: World, x: string, y: string): boolean {
  if (w.grasped === x) return false;
  const a = w.state(x).pos;
  const b = w.state(y).pos;
  const d = Math.hypot(a[0] - b[0], a[1] - b[1]);
  const onIt = w.spec(y).role !== 'item' && (isOn(w, x, y) || isIn(w, x, y));
  return !onIt && d <= w.spec(x).radius + w.spec(y).radius + 0.06 && a[2] < 0.02;
}

export function relationHolds(w: World, x: string, y: string, relation: 'on' | 'in' | 'near'): boolean {
  return relation === 'on' ? isOn(w, x, y) : relation === 'in' ? isIn(w, x, y) : isNear(w, x, y);
}

/** Completion predicate of one subtask: the `oracle` verifier. */
export function subtaskDone(w: World, s: Subtask): boolean {
  switch (s.kind) {
    case 'reach': // at a grasp pose with the hand open (a closed hand there cannot grasp)
      return w.grasped === s.object || (w.graspCandidate() === s.object && w.handOpen);
    case 'grasp':
      return w.grasped === s.object;
    case 'lift':
      return isLifted(w, s.object);
    case 'carry': {
      if (w.grasped !== s.object) return false;
      const p = w.state(s.object).pos;
      if (s.relation !== 'near') return insideFootprint(w, s.target!, p, -0.01);
      const q = w.state(s.target!).pos;
      return Math.hypot(p[0] - q[0], p[1] - q[1]) <= w.spec(s.object).radius + w.spec(s.target!).radius + 0.05;
    }
    case 'place':
      return relationHolds(w, s.object, s.target!, s.relation!) && w.state(s.object).speed < AT_REST;
    case 'retract': {
      const top = w.state(s.object).pos[2] + w.spec(s.object).height;
      return w.grasped === undefined && w.tcp[2] >= top + 0.04;
    }
  }
}

/**
 * Where the work goes back to when the subtask under way can no longer be done: its item was dropped (a lift, carry or
 * put whose item is neither held nor, once at rest, where the put should leave it), or a grasp closed the hand on
 * nothing or on another item, sends the list back to the item's reach ("move to the spoon"), so the oracle verifier,
 * the expert and the records follow what the scene needs next (the hand opens and comes again). Undefined when nothing
 * was undone (an item still falling is waited for: it may land where it should).
 */
export function regression(w: World, subtasks: readonly Subtask[], index: number): number | undefined {
  const s = subtasks[index];
  if (!s || w.grasped === s.object) return undefined;
  // a grasp is undone once the hand has closed without the item; a lift, carry or put once the item is at rest off target
  const undone = s.kind === 'grasp' ? !w.handOpen : ['lift', 'carry', 'place'].includes(s.kind) && w.state(s.object).speed < AT_REST && !subtaskDone(w, s);
  if (!undone) return undefined;
  for (let j = index - 1; j >= 0; j--) if (subtasks[j].kind === 'reach' && subtasks[j].object === s.object) return j;
  return undefined;
}

/** Success of the whole task, judged on the current state. */
export function taskSuccess(w: World, t: Task): boolean {
  const [x, y, z] = t.objects;
  switch (t.family) {
    case 'pick':
      return isLifted(w, x);
    case 'place':
      return relationHolds(w, x, y, w.spec(y).preposition!) && w.state(x).speed < AT_REST;
    case 'near':
      return isNear(w, x, y) && w.state(x).speed < AT_REST;
    case 'place_then_lift':
      return isIn(w, x, y) && isLifted(w, z);
  }
}

/** Facts about the scene in words: "carrot on plate", "red block in basket", "gripper holds carrot". */
export function relations(w: World): string[] {
  const out: string[] = [];
  for (const x of w.itemIds) {
    for (const p of w.layout.placements) {
      const y = p.spec.id;
      if (y === x) continue;
      if (p.spec.role === 'container' && isIn(w, x, y)) out.push(`${w.spec(x).name} in ${p.spec.name}`);
      else if (p.spec.role !== 'container' && isOnAny(w, x, y)) out.push(`${w.spec(x).name} on ${p.spec.name}`);
    }
  }
  if (w.grasped) out.push(`gripper holds ${w.spec(w.grasped).name}`);
  return out;
}

function isOnAny(w: World, x: string, y: string): boolean {
  if (w.spec(y).role === 'item') {
    if (w.grasped === x) return false;
    const a = w.state(x).pos;
    const b = w.state(y).pos;
    const top = b[2] + w.spec(y).height;
    return Math.hypot(a[0] - b[0], a[1] - b[1]) < w.spec(y).radius * 0.8 && Math.abs(a[2] - top) < 0.012;
  }
  return isOn(w, x, y);
}

/** A free spot on the table next to `y`, on the side facing `x`, for the 'near' family. */
export function nearSpot(w: World, x: string, y: string): Vec3 {
  const a = w.state(x).pos;
  const b = w.state(y).pos;
  const r = w.spec(y).radius + w.spec(x).radius * 0.8 + 0.01;
  const base = Math.atan2(a[1] - b[1], a[0] - b[0]);
  let best: Vec3 = [b[0] + r * Math.cos(base), b[1] + r * Math.sin(base), 0];
  let bestMargin = -Infinity;
  for (let k = 0; k < 24; k++) {
    const ang = base + (k % 2 ? 1 : -1) * Math.ceil(k / 2) * (Math.PI / 12);
    const p: Vec3 = [b[0] + r * Math.cos(ang), b[1] + r * Math.sin(ang), 0];
    const onTable = p[0] > TABLE_REGION.x[0] - 0.03 && p[0] < TABLE_REGION.x[1] + 0.03 && p[1] > TABLE_REGION.y[0] - 0.03 && p[1] < TABLE_REGION.y[1] + 0.03;
    if (!onTable) continue;
    // clearance: the smallest gap to any other object, beyond the two radii
    let margin = Infinity;
    for (const o of w.layout.placements) {
      if (o.spec.id === x || o.spec.id === y) continue;
      const q = w.state(o.spec.id).pos;
      margin = Math.min(margin, Math.hypot(q[0] - p[0], q[1] - p[1]) - o.spec.radius - w.spec(x).radius);
    }
    if (margin >= 0) return p;
    if (margin > bestMargin) {
      bestMargin = margin;
      best = p;
    }
  }
  return best;
}
