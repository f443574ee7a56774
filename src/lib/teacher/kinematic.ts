/**
 * The kinematic teacher: the embedded default, no network, deterministic. It reads what a demonstration really
 * contains (actions, proprioception, the instruction), not the images: primitive motions in words, segmentation
 * at gripper events and direction changes into subtasks named with the objects of the instruction, and the four
 * reasoning sections filled with what can honestly be derived from those.
 */
import type { DataFacts, Teacher, TeacherAnswer, TeacherRequest } from './types.js';

export interface TaskWords {
  object: string;
  target?: string;
  relation?: 'on' | 'in' | 'near';
  /** The item of a second stage ("..., then lift the Z"). */
  second?: string;
}

const REL: Record<string, 'on' | 'in' | 'near'> = { on: 'on', 'on top of': 'on', onto: 'on', in: 'in', into: 'in', inside: 'in', near: 'near', 'next to': 'near', 'close to': 'near', beside: 'near' };

/**
 * Object names from an instruction: "put the X in the Y, then lift the Z", "pick up the X", "put X into Y" (no
 * articles, as many real datasets write them), else the words after the verb ("wipe the table" -> table).
 */
export function parseInstruction(instruction: string): TaskWords {
  const s = instruction.toLowerCase().replace(/\s+/g, ' ').trim().replace(/[.!]+$/, '');
  const [first, ...rest] = s.split(/,?\s*(?:and )?then /);
  const the = '(?:(?:the|a|an)\\s+)?';
  const second = rest.length ? new RegExp(`(?:lift|pick up|raise|grab|take) ${the}(.+?)(?: up| off.*)?$`).exec(rest.join(' '))?.[1] : undefined;
  const place = new RegExp(`(?:put|place|move|transfer|bring|set|stack)\\s+${the}(.+?)\\s+(?:down\\s+)?(on top of|onto|on|into|inside|in|near|next to|close to|beside)\\s+${the}(.+?)(?:\\s+please)?$`).exec(first);
  if (place) return { object: place[1], relation: REL[place[2]] ?? 'on', target: place[3], second };
  const pick = new RegExp(`(?:pick up|lift|grab|take|raise|pick)\\s+${the}(.+?)(?:\\s+(?:up|and .*|off .*|from .*))?$`).exec(first);
  if (pick) return { object: pick[1], second };
  // any other verb: the rest of the phrase names the object ("open the drawer", "wipe table", "turn on the stove")
  const other = /^(?:please\s+)?[a-z]+(?:\s+(?:on|off|over|up|down))?\s+(?:(?:the|a|an)\s+)?([a-z][a-z ]*?)(?:\s+(?:to|with|from|using|towards?)\b.*)?$/.exec(first);
  return { object: other?.[1]?.trim() || 'object', second };
}

export type Phase = 'reach' | 'grasp' | 'lift' | 'carry' | 'place' | 'retract';

export interface Segment {
  phase: Phase;
  start: number;
  end: number;
  /** Which item (0: the first, 1: the second stage). */
  stage: number;
}

const EPS = 0.001;
/** A lift is done once the item is this high above where it was grasped (as the world's lift predicate). */
const LIFT_RISE = 0.05;

/** Words for a displacement relative to the end-effector: "forward and left", "up". */
export function directionWords(d: number[], min = 0.002): string {
  const words: string[] = [];
  const parts: [number, string, string][] = [
    [d[0], 'forward', 'backward'],
    [d[1], 'left', 'right'],
    [d[2], 'up', 'down'],
  ];
  const big = Math.max(...parts.map((p) => Math.abs(p[0])));
  for (const [v, pos, neg] of parts) {
    if (Math.abs(v) < min || Math.abs(v) < big * 0.3) continue;
    const w = v > 0 ? pos : neg;
    words.push(Math.abs(v) < big * 0.6 ? `slightly ${w}` : w);
  }
  return words.join(' and ');
}

/** The primitive motion of one action in words. */
export function primitive(a: number[], prevGrip: number | undefined): string {
  const g = a[a.length - 1];
  if (prevGrip !== undefined && prevGrip >= 0.5 && g < 0.5) return 'close the gripper';
  if (prevGrip !== undefined && prevGrip < 0.5 && g >= 0.5) return 'open the gripper';
  const w = directionWords(a, EPS);
  return w ? `move ${w}` : 'stay still';
}

/**
 * Splits a trajectory into phases at gripper events and direction changes: before a close, reaching; the close
 * itself, grasping; while closed, lifting (first rise), carrying, then placing (the final descent up to the
 * release); after a release, retracting. A new close starts the next stage.
 */
export function segment(actions: number[][]): Segment[] {
  const T = actions.length;
  const grip = actions.map((a) => (a[a.length - 1] >= 0.5 ? 1 : 0));
  const phases: Phase[] = new Array(T);
  const stages: number[] = new Array(T).fill(0);
  let t = 0;
  let stage = 0;
  let open = 1;
  while (t < T) {
    // reach: until the gripper closes
    while (t < T && !(grip[t] === 0 && open === 1)) {
      phases[t] = 'reach';
      stages[t] = stage;
      t++;
    }
    if (t >= T) break;
    // grasp: the closing step(s) without motion
    phases[t] = 'grasp';
    stages[t] = stage;
    open = 0;
    t++;
    while (t < T && grip[t] === 0 && Math.hypot(actions[t][0], actions[t][1], actions[t][2]) < EPS) {
      phases[t] = 'grasp';
      stages[t] = stage;
      t++;
    }
    // while closed: lift (rising), carry, place (final descent up to and including the release step)
    let closedEnd = t;
    while (closedEnd < T && grip[closedEnd] === 0) closedEnd++;
    const releaseAt = closedEnd < T ? closedEnd : -1; // the step that opens
    // lift: the first rise, until the item is LIFT_RISE above where it was grasped (the rest of the climb carries it)
    let u = t;
    let rise = 0;
    while (u < closedEnd && rise < LIFT_RISE && actions[u][2] > EPS && actions[u][2] >= 0.5 * Math.hypot(actions[u][0], actions[u][1])) {
      rise += actions[u][2];
      phases[u] = 'lift';
      stages[u] = stage;
      u++;
    }
    // the final descent: walk back from the release over descending or still steps
    let d = closedEnd - 1;
    if (releaseAt >= 0) {
      while (d >= u && actions[d][2] <= EPS && -actions[d][2] >= 0.5 * Math.hypot(actions[d][0], actions[d][1]) - EPS) d--;
    } else {
      d = closedEnd - 1;
    }
    for (let k = u; k < closedEnd; k++) {
      phases[k] = releaseAt >= 0 && k > d ? 'place' : u === t && k === u && releaseAt < 0 ? 'lift' : 'carry';
      stages[k] = stage;
    }
    t = closedEnd;
    if (releaseAt >= 0) {
      phases[t] = 'place';
      stages[t] = stage;
      open = 1;
      t++;
      // retract: after the release, while the gripper rises (or rests)
      while (t < T && grip[t] === 1) {
        const a = actions[t];
        const h = Math.hypot(a[0], a[1]);
        const idle = h < EPS && Math.abs(a[2]) < EPS;
        if (!idle && !(a[2] > EPS && a[2] >= 0.5 * h)) break;
        phases[t] = 'retract';
        stages[t] = stage;
        t++;
      }
      stage += 1;
    }
  }
  // runs of equal (phase, stage) become segments
  const segs: Segment[] = [];
  for (let k = 0; k < T; k++) {
    const last = segs[segs.length - 1];
    if (last && last.phase === phases[k] && last.stage === stages[k]) last.end = k;
    else segs.push({ phase: phases[k], start: k, end: k, stage: stages[k] });
  }
  return segs;
}

export function phaseText(p: Phase, w: TaskWords, stage: number): string {
  const x = stage > 0 && w.second ? w.second : w.object;
  const y = stage > 0 ? undefined : w.target;
  const rel = stage > 0 ? undefined : w.relation;
  switch (p) {
    case 'reach':
      return `move to the ${x}`;
    case 'grasp':
      return `grasp the ${x}`;
    case 'lift':
      return `lift the ${x}`;
    case 'carry':
      return y ? (rel === 'near' ? `move the ${x} next to the ${y}` : `move the ${x} above the ${y}`) : `move the ${x}`;
    case 'place':
      return y ? (rel === 'near' ? `put the ${x} down next to the ${y}` : `put the ${x} ${rel} the ${y}`) : `put the ${x} down`;
    case 'retract':
      return 'move the gripper up and away';
  }
}

const WHY: Record<Phase, string> = {
  reach: 'The gripper must first get to the item, open, before it can hold it.',
  grasp: 'Closing the gripper around the item secures it for transport.',
  lift: 'Raising the item clears the table and nearby objects.',
  carry: 'The item has to be brought over the place where it goes.',
  place: 'Lowering and opening the gripper sets the item down where the instruction asks.',
  retract: 'Moving away after the release leaves the item undisturbed.',
};

function sum(actions: number[][], a: number, b: number): number[] {
  const s = [0, 0, 0];
  for (let t = a; t <= b; t++) for (let k = 0; k < 3; k++) s[k] += actions[t][k];
  return s;
}

function gripWord(actions: number[][], a: number, b: number): string {
  const g0 = actions[a][actions[a].length - 1] >= 0.5;
  const g1 = actions[b][actions[b].length - 1] >= 0.5;
  return g0 === g1 ? `gripper stays ${g0 ? 'open' : 'closed'}` : g1 ? 'gripper opens' : 'gripper closes';
}

/**
 * The segments with names that agree with their actual motion: a "lift" whose net motion is not up is a move
 * ("carry"), a "retract" that goes down likewise.
 */
function checkedSegments(actions: number[][]): Segment[] {
  return segment(actions).map((s) => {
    const dz = sum(actions, s.start, s.end)[2];
    if ((s.phase === 'lift' && !(dz > EPS)) || (s.phase === 'retract' && dz < -EPS)) return { ...s, phase: s.phase === 'lift' ? 'carry' : 'reach' };
    return s;
  });
}

export function kinematicPlan(actions: number[][], instruction: string): { subtasks: Record<string, unknown>[] } {
  const w = parseInstruction(instruction);
  const segs = checkedSegments(actions);
  return {
    subtasks: segs.map((s) => {
      const moves = directionWords(sum(actions, s.start, s.end));
      return {
        step_description: phaseText(s.phase, w, s.stage),
        reasoning: WHY[s.phase],
        main_movements: `${moves ? `mostly ${moves}` : 'little motion'}; ${gripWord(actions, s.start, s.end)}`,
        start_step: s.start,
        end_step: s.end,
      };
    }),
  };
}

export function kinematicReasoning(actions: number[][], states: (number[] | undefined)[], instruction: string, step: number): Record<string, unknown> {
  const w = parseInstruction(instruction);
  const segs = checkedSegments(actions);
  const cur = segs.find((s) => step >= s.start && step <= s.end) ?? segs[segs.length - 1];
  const idx = segs.indexOf(cur);
  const labels = segs.map((s) => phaseText(s.phase, w, s.stage));
  const st = states[step];
  // what the frame shows: the state's gripper when it has one ([x, y, z, opening] or [..., 7-D with gripper last]),
  // else the command in force when it was taken (the previous step's); never this step's own action (the label)
  const observed = observedGripper(st);
  const gripOpen = (observed ?? (step > 0 ? actions[step - 1][actions[step - 1].length - 1] : 1)) >= 0.5;
  const holding = cur.phase === 'lift' || cur.phase === 'carry' || (cur.phase === 'place' && !gripOpen) || (cur.phase === 'grasp' && step > cur.start);
  const named = [w.object, w.target, w.second].filter(Boolean).map((n) => `the ${n}`).join(', ');
  const pos = st && st.length >= 3 ? ` at x ${st[0].toFixed(2)} m, y ${st[1].toFixed(2)} m, z ${st[2].toFixed(2)} m` : '';
  const ahead = sum(actions, step, cur.end);
  const dist = Math.hypot(ahead[0], ahead[1], ahead[2]);
  const dir = directionWords(ahead);
  const obj = cur.stage > 0 && w.second ? w.second : w.object;
  const where =
    cur.phase === 'reach'
      ? `the ${obj} lies ${dir || 'right below'} of the gripper, about ${(dist * 100).toFixed(0)} cm away`
      : cur.phase === 'carry' || cur.phase === 'place'
        ? `the ${w.target ?? 'goal'} is ${dir || 'right below'} of the gripper, about ${(dist * 100).toFixed(0)} cm away`
        : dir
          ? `the gripper will move ${dir}, about ${(dist * 100).toFixed(0)} cm, in this phase`
          : 'the gripper stays where it is in this phase';
  return {
    observation: `The gripper is ${gripOpen ? 'open' : 'closed'}${holding ? ` and holds the ${obj}` : ''}${pos}. The instruction names ${named || 'the objects to handle'}.`,
    situation_analysis: `The task is to ${instruction.replace(/[.!]$/, '')}. The robot is in phase ${idx + 1} of ${segs.length}: ${labels[idx]}.`,
    spatial_reasoning: `Judging from the motion that completes this phase, ${where}.`,
    task_planning: idx + 1 < segs.length ? `Finish "${labels[idx]}", then ${labels.slice(idx + 1).join(', then ')}.` : `Finish "${labels[idx]}"; the task is then done.`,
    logical_steps: labels,
    sub_action: primitive(actions[step], step > 0 ? actions[step - 1][actions[step - 1].length - 1] : 1),
  };
}

/** The gripper opening a state shows: the last of a 4-, 7- or 8-number state when it lies in [0, 1]. */
function observedGripper(st: number[] | undefined): number | undefined {
  return st && (st.length === 4 || st.length === 7 || st.length === 8) && st[st.length - 1] >= 0 && st[st.length - 1] <= 1 ? st[st.length - 1] : undefined;
}

/**
 * What the kinematic teacher could not determine from the data it reads (actions, state, instruction), for a plan
 * or for the reasoning of one step: on the built-in world's demonstrations, nothing.
 * @example kinematicLimits('reasoning', { actions, states, instruction: 'wipe', step: 3 }, { builtin: false, actionDims: 7 })
 */
export function kinematicLimits(kind: 'reasoning' | 'plan', c: { actions: number[][]; states?: (number[] | undefined)[]; instruction: string; step?: number }, data: DataFacts): string[] {
  const out: string[] = [];
  const w = parseInstruction(c.instruction);
  const segs = checkedSegments(c.actions);
  if (w.object === 'object') out.push('object: the instruction names none; the item is called "the object"');
  if (data.actionDims > 4) out.push(`wrist rotation: ${data.actionDims - 4} action dimensions between translation and gripper are not read`);
  if (kind === 'plan') return out;
  const step = c.step ?? 0;
  const st = c.states?.[step];
  if (!st) out.push('position: the step carries no state');
  else if (!data.builtin && st.length >= 3) out.push('state layout: not stated by the data; the state is read as [x, y, z, ...] in metres');
  if (observedGripper(st) === undefined) out.push(`gripper state: the state holds no gripper reading; taken from ${step > 0 ? "the previous step's command" : 'the default (open)'}`);
  if (!segs.some((s) => s.phase === 'grasp')) out.push('object position: the gripper never closes, so where the item lies is not located');
  return out;
}

/** A verdict from the world's facts (the privileged teacher sees the oracle, not the pixels). */
function kinematicVerdict(c: Record<string, unknown>): { success: boolean; confidence: string; reasoning: string } {
  const after = c.after as { subtasks_done?: number } | undefined;
  const index = Number(c.index ?? 0);
  const done = after?.subtasks_done;
  if (typeof done !== 'number') return { success: false, confidence: 'Low', reasoning: 'no world state to judge from' };
  const success = c.success === true || done > index;
  return { success, confidence: 'High', reasoning: success ? `the world reports ${done} subtasks done, including "${c.subtask}"` : `the world reports ${done} subtasks done; "${c.subtask}" is not among them` };
}

function answer(body: unknown): TeacherAnswer {
  return { text: JSON.stringify(body), usage: { inputTokens: 0, outputTokens: 0 }, retries: 0 };
}

/** The kinematic teacher behind the common interface: it answers from `context`, in the JSON the parsers read. */
export class KinematicTeacher implements Teacher {
  readonly id = 'kinematic';
  readonly local = true;
  readonly readsContext = true;

  async complete(req: TeacherRequest): Promise<TeacherAnswer> {
    if (req.kind === 'verify') return answer(kinematicVerdict(req.context ?? {}));
    const c = req.context as { actions: number[][]; states: (number[] | undefined)[]; instruction: string; step?: number };
    const body = req.kind === 'plan' ? kinematicPlan(c.actions, c.instruction) : kinematicReasoning(c.actions, c.states, c.instruction, c.step ?? 0);
    return answer(body);
  }

  limits(req: TeacherRequest, data: DataFacts): string[] {
    if (req.kind !== 'reasoning' && req.kind !== 'plan') return [];
    return kinematicLimits(req.kind, req.context as { actions: number[][]; states: (number[] | undefined)[]; instruction: string; step?: number }, data);
  }
}
