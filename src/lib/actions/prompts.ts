/**
 * The prompts a policy is trained on (relabel) and run with (rollout): one place, so the words at test time are
 * exactly the words of training. VLM2VLA's three stages plus the verifier question; ReFineVLA's
 * reason-then-act prompt and its no-reasoning form; the plain task prompt (VLM2VLA-NR) and its compact form.
 */
import type { ActionCodec } from './codecs.js';
import { type ActionLayout, dimNames } from './layout.js';

export const CONVENTIONS = '+x is forward, +y is left, +z is up (meters per step); the gripper is 1 when open and 0 when closed';

/** What the action prompts say about the actions: their layout (default: 4-D deltas) and translation units (default: meters). */
export interface ActionFormat {
  layout?: ActionLayout;
  units?: 'm' | 'cm';
}

/** The action format of a codec: its layout and (text and tokens) its translation units. */
export function actionFormatOf(codec: ActionCodec): ActionFormat {
  const units = (codec.describe() as { units?: unknown }).units;
  return { layout: codec.layout, units: units === 'cm' ? 'cm' : 'm' };
}

/**
 * The sentence on the action format: the dimension names of the layout (`[dx, dy, dz, gripper]` for the built-in
 * world, `[dx, dy, dz, droll, dpitch, dyaw, gripper]` for 7-D data, `[x, y, z, gripper]` for absolute targets) and
 * the units the codec writes.
 */
function actionsSentence(f: ActionFormat = {}): string {
  const names = f.layout ? dimNames(f.layout).join(', ') : 'dx, dy, dz, gripper';
  const units = `${f.units === 'cm' ? 'centimeters' : 'meters'}${!f.layout || f.layout.mode === 'delta' ? ' per step' : ''}${f.layout?.rotation.length ? ', rotations in radians' : ''}`;
  return `Output the end-effector actions [${names}] (+x is forward, +y is left, +z is up (${units}); the gripper is 1 when open and 0 when closed).`;
}

/** The letters of multiple-choice options, in order. */
export const LETTERS = 'ABCDEFGHIJ';

/** The marker before the actions in a ReFineVLA target. */
export const ACTIONS_MARKER = '<Actions>:';

/** An action target without the "<Actions>: " it starts with (as examples write it); other text as it is. */
export function withoutActionsMarker(text: string): string {
  return text.startsWith(`${ACTIONS_MARKER} `) ? text.slice(ACTIONS_MARKER.length + 1) : text;
}

/** The robot-state line of a prompt (`stateText`: the end-effector position, then the gripper opening), or nothing. */
function stateLine(state?: string): string {
  return state ? `Robot state: ${state}\n` : '';
}

export const PROMPTS = {
  /** VLM2VLA stage 1: the subtask list from the first image. */
  subtasks: (instruction: string) => `Task: ${instruction}\nList, in order, the subtasks the robot arm must carry out to complete the task.`,
  /** VLM2VLA stage 2: the motion plan of a subtask. */
  motionPlan: (subtask: string) => `Subtask: ${subtask}\nDescribe the motion of the end-effector for this subtask (${CONVENTIONS}).`,
  /** VLM2VLA stage 3: the action chunk of a subtask, given its motion plan. */
  actions: (subtask: string, plan?: string, state?: string, format?: ActionFormat) => `Subtask: ${subtask}\n${plan ? `Motion plan: ${plan}\n` : ''}${stateLine(state)}${actionsSentence(format)}`,
  /** The verifier question over the frames before and after a subtask: "yes" or "no". */
  verify: (subtask: string) => `Subtask: ${subtask}\nThe first image was taken before and the second after the robot attempted the subtask. Was the subtask completed? Answer yes or no.`,
  /** Direction prediction (an auxiliary VLM2VLA example). */
  direction: (subtask: string) => `Subtask: ${subtask}\nIn which directions must the end-effector move for this subtask (${CONVENTIONS})?`,
  /** ReFineVLA: reason (observation, situation analysis, spatial reasoning, task planning), then act. */
  refinevla: (instruction: string, reasoning: boolean, state?: string, format?: ActionFormat) =>
    `Instruction: ${instruction}\n${stateLine(state)}${reasoning ? 'Reason step by step about the scene (observation, situation analysis, spatial reasoning, task planning), then give the next actions.' : 'Give the next actions.'} ${actionsSentence(format)}`,
  /** A visual question: a short answer, or (with choices) the option's letter. */
  vqa: (question: string, choices?: string[], hint?: string) =>
    `${hint ? `Hint: ${hint}\n` : ''}Question: ${question}\n${choices?.length ? `${choices.map((c, i) => `${LETTERS[i]}. ${c}`).join('\n')}\nAnswer with the letter of the right option.` : 'Answer with one word or a short phrase.'}`,
  /** Image + instruction -> actions, with no reasoning (VLM2VLA-NR). */
  task: (instruction: string, state?: string, format?: ActionFormat) => `Task: ${instruction}\n${stateLine(state)}${actionsSentence(format)}`,
  /**
   * The task prompt without the sentence on the action format (`relabel --compact-prompt`): for small models trained
   * from scratch, to which those 50-odd tokens say nothing (the example's codec spec records the conventions) and cost a
   * third of each example's compute.
   */
  compact: (instruction: string, state?: string) => `Task: ${instruction}${state ? `\nRobot state: ${state}` : ''}`,
};

/** A subtask list as the planner writes it, one numbered line each ("1. grasp the carrot\n2. ..."): what parseSubtaskList reads. */
export function formatSubtaskList(subtasks: string[]): string {
  return subtasks.map((t, i) => `${i + 1}. ${t}`).join('\n');
}

/** Parses a numbered subtask list ("1. grasp the carrot\n2. ..."); empty when the text holds none. */
export function parseSubtaskList(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*(\d+)[.)]\s*(\S.*)$/.exec(line);
    if (m && Number(m[1]) === out.length + 1) out.push(m[2].trim());
  }
  return out;
}
