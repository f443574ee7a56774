/**
 * Action chunks, for actions of any layout (./layout.ts). `mergeActions` (VLM2VLA appendix B.2): consecutive steps
 * are merged while their translation moves along one dominant dimension without a sign change, up to `axisLimit`
 * along it and `totalLimit` in all; the gripper ends a merged action where it changes (by more than
 * `gripperTolerance`). Delta dimensions (translation, rotation, others) are summed, so the merged actions sum to the
 * originals per dimension; absolute layouts keep the last target of each merged action; the gripper of a merged
 * action is its last step's (the value in force at the change point). Every source step is used once, in order.
 * `fixedChunks`: the next H actions from each step (ACT / pi0 style), padded with a no-op and masked.
 */
import { type ActionLayout, inferLayout } from './layout.js';

export interface MergedAction {
  /** The merged action, in the source layout: summed deltas (or the last targets) and the gripper at its end. */
  action: number[];
  /** First and last source step (inclusive). */
  start: number;
  end: number;
}

export interface MergeOptions {
  /** Largest travel along the dominant dimension, meters (default 0.025). */
  axisLimit?: number;
  /** Largest translation of a merged action, meters (default 0.05). */
  totalLimit?: number;
  /** Moves shorter than this join any chunk (default 0.0005 m). */
  negligible?: number;
  /** A gripper change larger than this ends a merged action (default 0: any change). */
  gripperTolerance?: number;
  /** The action layout (default: inferred from the action length, 4-D or 7-D). */
  layout?: ActionLayout;
}

function dominant(d: number[]): { axis: number; sign: number } {
  let axis = 0;
  for (let k = 1; k < 3; k++) if (Math.abs(d[k]) > Math.abs(d[axis])) axis = k;
  return { axis, sign: Math.sign(d[axis]) };
}

/** The layout for actions: the given one, else inferred from their length (gripper last otherwise). */
function layoutOf(actions: number[][], layout?: ActionLayout): ActionLayout {
  if (layout) return layout;
  const D = actions[0]?.length ?? 4;
  return inferLayout(D) ?? { dims: D, translation: D >= 4 ? [0, 1, 2] : [], rotation: [], gripper: D - 1, gripper_kind: 'binary', mode: 'delta' };
}

/**
 * Merges the actions of steps `offset .. offset + actions.length - 1` (one subtask, or a whole episode).
 * @example mergeActions([[0.01,0,0,1],[0.012,0.001,0,1],[0,0,0,0]]) // -> two merged actions
 */
export function mergeActions(actions: number[][], opts: MergeOptions = {}, offset = 0): MergedAction[] {
  const axisLimit = opts.axisLimit ?? 0.025;
  const totalLimit = opts.totalLimit ?? 0.05;
  const negligible = opts.negligible ?? 0.0005;
  const tol = opts.gripperTolerance ?? 0;
  const L = layoutOf(actions, opts.layout);
  const T = L.translation;
  const g = L.gripper;
  const absolute = L.mode === 'absolute';
  const out: MergedAction[] = [];
  // sum: the running sum of every dimension (delta layouts); trans: the translation travelled in this merged action
  let cur: { sum: number[]; last: number[]; trans: number[]; grip: number; axis: number; sign: number; start: number; end: number } | undefined;
  const flush = (): void => {
    if (cur) {
      const a = absolute ? [...cur.last] : [...cur.sum];
      if (g !== null) a[g] = cur.last[g];
      out.push({ action: a, start: cur.start, end: cur.end });
    }
    cur = undefined;
  };
  actions.forEach((a, i) => {
    const t = i + offset;
    const grip = g === null ? 0 : a[g];
    // the step's translation: its delta, or the change of target for absolute layouts
    const prev = i > 0 ? actions[i - 1] : a;
    const d = T.length ? T.map((k) => (absolute ? a[k] - prev[k] : a[k])) : [0, 0, 0];
    const small = Math.hypot(d[0], d[1], d[2]) < negligible;
    const dom = dominant(d);
    if (cur) {
      const trans = [cur.trans[0] + d[0], cur.trans[1] + d[1], cur.trans[2] + d[2]];
      const sameGrip = Math.abs(grip - cur.grip) <= tol;
      const sameDir = small || cur.sign === 0 || (dom.axis === cur.axis && dom.sign === cur.sign);
      const axis = cur.sign === 0 ? dom.axis : cur.axis;
      const fits = Math.abs(trans[axis]) <= axisLimit + 1e-12 && Math.hypot(trans[0], trans[1], trans[2]) <= totalLimit + 1e-12;
      if (sameGrip && sameDir && fits) {
        cur.sum = cur.sum.map((s, k) => s + a[k]);
        cur.trans = trans;
        cur.last = a;
        cur.end = t;
        if (cur.sign === 0 && !small) {
          cur.axis = dom.axis;
          cur.sign = dom.sign;
        }
        return;
      }
      flush();
    }
    cur = { sum: [...a], last: a, trans: d, grip, axis: small ? 0 : dom.axis, sign: small ? 0 : dom.sign, start: t, end: t };
  });
  flush();
  return out;
}

export interface FixedChunk {
  /** The H actions from this step on; past the episode's end, copies of a no-op. */
  actions: number[][];
  /** 1 for real actions, 0 for padding. */
  mask: number[];
  start: number;
  end: number;
}

/**
 * For every `stride`-th step: the next `horizon` actions, padded at the end with a no-op: zero deltas (absolute
 * layouts: the last targets) and the last gripper.
 */
export function fixedChunks(actions: number[][], horizon: number, stride = 1, layout?: ActionLayout): FixedChunk[] {
  const L = layoutOf(actions, layout);
  const out: FixedChunk[] = [];
  for (let t = 0; t < actions.length; t += stride) {
    const real = actions.slice(t, t + horizon);
    const last = real[real.length - 1];
    const pad = last.map((v, k) => (k === L.gripper || L.mode === 'absolute' ? v : 0));
    const chunk = [...real, ...Array.from({ length: horizon - real.length }, () => [...pad])];
    out.push({ actions: chunk, mask: chunk.map((_, i) => (i < real.length ? 1 : 0)), start: t, end: t + real.length - 1 });
  }
  return out;
}
