/**
 * Waypoint targets (`relabel --waypoints`): each step's action becomes the end-effector position where the current
 * straight run of the demonstrator's delta actions ends (the point it was heading for), as an absolute target, with
 * the step's own gripper command. A run continues while the direction of the translation stays within about 25
 * degrees (cosine 0.9) and the gripper command is unchanged; a step without translation targets where the hand is.
 * During a reach the target is the same for every step (a place above the object, then the object), so the model
 * learns where to go, which the image shows, not the difference between that and where the hand is.
 *
 * The targets are executed by rollout in a delta env (the built-in world, most robots) as steps of at most
 * `max_step` toward them (`waypointDeltas`), the demonstrator's own step length. Positions come from the
 * observation's `state`, whose first three values must be the end-effector position in the actions' frame and units
 * (the built-in world's `[x, y, z, opening]` is).
 */
import { VlakitError } from '../errors.js';
import type { ActionLayout } from './layout.js';

/** Cosine between successive translations above which they belong to one straight run. */
export const RUN_COSINE = 0.9;

export interface WaypointStep {
  /** observation.state: the end-effector position first (the actions' frame and units). */
  state: readonly number[];
  /** The step's delta action in `layout`. */
  action: readonly number[];
}

function unit(v: number[]): number[] | undefined {
  const n = Math.hypot(...v);
  return n < 1e-9 ? undefined : v.map((x) => x / n);
}

/** The absolute layout of waypoint targets made from `layout` (delta, translation only) with steps of `maxStep`. */
export function waypointLayout(layout: ActionLayout, maxStep: number): ActionLayout {
  return { ...layout, mode: 'absolute', max_step: maxStep };
}

/**
 * The waypoint target of every step of one episode (in order), in `layout` with absolute translation.
 * @example waypointTargets([{ state: [0, 0, 0.1, 1], action: [0.01, 0, 0, 1] }, { state: [0.01, 0, 0.1, 1], action: [0.01, 0, 0, 1] }], NAMED_LAYOUTS['xyz-g'])
 *   // [[0.02, 0, 0.1, 1], [0.02, 0, 0.1, 1]]
 */
export function waypointTargets(steps: readonly WaypointStep[], layout: ActionLayout): number[][] {
  if (layout.mode !== 'delta' || layout.translation.length !== 3 || layout.rotation.length) {
    throw new VlakitError('E_USAGE', 'waypoint targets need delta actions with a translation and no rotation (the state gives positions, not orientations)');
  }
  const T = layout.translation;
  const g = layout.gripper;
  const move = (s: WaypointStep) => T.map((k) => s.action[k]);
  return steps.map((s, i) => {
    const d0 = unit(move(s));
    let j = i;
    if (d0) {
      while (j + 1 < steps.length) {
        const next = steps[j + 1];
        const d1 = unit(move(next));
        if (!d1 || (g !== null && next.action[g] !== s.action[g]) || d0.reduce((a, x, k) => a + x * d1[k], 0) < RUN_COSINE) break;
        j++;
      }
    }
    // where the run ends: the state of its last step plus that step's move (the hand itself when nothing moves)
    const end = d0 ? T.map((k, n) => steps[j].state[n] + steps[j].action[k]) : T.map((_, n) => s.state[n]);
    const out = [...s.action];
    T.forEach((k, n) => (out[k] = end[n]));
    return out;
  });
}

/**
 * Absolute waypoint targets -> the delta actions a delta env takes: each a step of at most `layout.max_step` from
 * the position before it toward its target (the first from `state`), the other values as they are.
 */
export function waypointDeltas(targets: readonly number[][], layout: ActionLayout, state: readonly number[]): number[][] {
  const T = layout.translation;
  const maxStep = layout.max_step ?? Number.POSITIVE_INFINITY;
  const pos = T.map((_, n) => state[n]);
  return targets.map((t) => {
    const d = T.map((k, n) => t[k] - pos[n]);
    const norm = Math.hypot(...d);
    const scale = norm > maxStep ? maxStep / norm : 1;
    const out = [...t];
    T.forEach((k, n) => {
      out[k] = d[n] * scale;
      pos[n] += out[k];
    });
    return out;
  });
}

/**
 * The end-effector position a policy writing waypoint targets steps from: the observation's `state` (its first
 * three values). A usage error when the observation has none, since the targets cannot be executed without it.
 */
export function waypointOrigin(state: unknown): number[] {
  if (!(Array.isArray(state) && state.length >= 3 && state.every((v) => typeof v === 'number' && Number.isFinite(v)))) {
    throw new VlakitError('E_USAGE', "this model writes waypoint targets (relabel --waypoints), which rollout turns into steps from the observation's end-effector position, but the observation has no numeric `state`");
  }
  return state as number[];
}

/** Whether a layout holds waypoint targets for a delta env (absolute, with `max_step`). */
export function isWaypointLayout(layout: ActionLayout | undefined): layout is ActionLayout & { max_step: number } {
  return layout?.mode === 'absolute' && layout.max_step !== undefined;
}

/** The layout of the actions an env receives from a policy of `layout`: deltas for waypoint targets, else the same. */
export function executedLayout(layout: ActionLayout | undefined): ActionLayout | undefined {
  if (!isWaypointLayout(layout)) return layout;
  const { max_step: _, ...rest } = layout;
  return { ...rest, mode: 'delta' };
}

/**
 * Releases labelled early (`relabel --release-lead N`): a step whose gripper command is closed (below 0.5) takes the
 * open command of the next step that opens the hand when that step is at most `n` steps ahead. The demonstrator opens
 * only once the hand is exactly at its put point (the built-in expert within 4 mm), a region narrower than a learned
 * policy's error in finding the point, so a policy trained on those labels rarely opens; labelled `n` steps early,
 * the release covers the last `n` steps of the approach (a drop of at most `n` steps' travel). Closing (a grasp) is
 * left as it is: closing early grasps nothing. Returns new actions; the others are unchanged.
 * @example releaseLead([[0, 0, 0.1, 0], [0, 0, 0.09, 0], [0, 0, 0.09, 1]], 3, 1) // [[0, 0, 0.1, 0], [0, 0, 0.09, 1], [0, 0, 0.09, 1]]
 */
export function releaseLead(actions: readonly (readonly number[])[], gripper: number, n: number): number[][] {
  const out = actions.map((a) => [...a]);
  let open = -1; // the index of the next step that opens the hand (after a closed step), -1 when none
  for (let i = actions.length - 1; i >= 0; i--) {
    const g = actions[i][gripper];
    if (g >= 0.5 && i > 0 && actions[i - 1][gripper] < 0.5) open = i;
    else if (g < 0.5 && open > i && open - i <= n) out[i][gripper] = actions[open][gripper];
  }
  return out;
}
