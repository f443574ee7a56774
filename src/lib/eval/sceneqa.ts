/**
 * Scene questions from the built-in tabletop world, answered exactly from the world's oracle: colors, counts,
 * existence, left/right relations (in the robot's frame: +y is left), what lies on or in what, and what the
 * gripper holds. Frames are taken at the start of an episode or part-way through the scripted expert's
 * demonstration (so the gripper sometimes holds something and objects sit on others). The items are generic VQA
 * JSON Lines (`readVqaJsonl`) and, as training examples, can pre-train a small base VLM.
 */
import { positionText } from '../actions/codecs.js';
import { PROMPTS } from '../actions/prompts.js';
import type { TrainingExample } from '../actions/examples.js';
import { CATALOG } from '../env/catalog.js';
import { ScriptedPolicy } from '../env/rollout.js';
import { TabletopEnv } from '../env/tabletop.js';
import { type GroundTarget, groundTargets } from '../env/ground.js';
import { FAMILIES, type Family } from '../env/tasks.js';
import type { ImageJson } from '../io/json.js';
import { Rng, subSeed } from '../util/rng.js';

export interface SceneObject {
  name: string;
  color: string;
  shape: string;
  role: string;
  pos: number[];
}

export interface SceneFacts {
  objects: SceneObject[];
  holding: string;
  relations: string[];
  /** The tool centre point (m, the robot's frame), for the grounding questions. */
  gripper?: number[];
}

export interface SceneQaItem {
  id: string;
  image: ImageJson;
  question: string;
  answer: string;
  /** exact; position for the grounding types (within 2 cm, eval-vqa's position metric) */
  metric: 'exact' | 'position';
  type: SceneQaType;
  scene: { seed: number; family: string; step: number };
  facts: SceneFacts;
  /** With the `ground` option: where the objects the question names are in the image (env/ground.ts). */
  ground?: GroundTarget[];
}

/** The question types: exact facts, and the grounding ones (positions as numbers, opt-in). */
export const SCENE_QA_TYPES = ['color', 'count', 'exists', 'left_right', 'left_of', 'on', 'holding', 'where', 'gripper'] as const;
export type SceneQaType = (typeof SCENE_QA_TYPES)[number];
/** The types --generate writes by default (the grounding ones are asked for by name). */
export const DEFAULT_SCENE_QA_TYPES: SceneQaType[] = ['color', 'count', 'exists', 'left_right', 'left_of', 'on', 'holding'];

/** How far apart (m, along y) two objects must be for "left of" to be unambiguous. */
export const SIDE_MARGIN = 0.06;

/** Every question the facts answer exactly, with its answer. */
export function sceneQuestions(f: SceneFacts, rng: Rng): { type: SceneQaItem['type']; question: string; answer: string }[] {
  const out: { type: SceneQaItem['type']; question: string; answer: string }[] = [];
  const objs = f.objects;
  for (const o of objs) if (!o.name.includes(o.color)) out.push({ type: 'color', question: `What color is the ${o.name}?`, answer: o.color });
  out.push({ type: 'count', question: 'How many objects are there in the scene?', answer: String(objs.length) });
  const blocks = objs.filter((o) => o.shape === 'block' || o.name.endsWith('block')).length;
  if (blocks) out.push({ type: 'count', question: 'How many blocks are there?', answer: String(blocks) });
  const present = objs[rng.int(0, objs.length - 1)];
  out.push({ type: 'exists', question: `Is there a ${present.name} in the scene?`, answer: 'yes' });
  const absent = CATALOG.filter((c) => !objs.some((o) => o.name === c.name));
  if (absent.length) out.push({ type: 'exists', question: `Is there a ${rng.pick(absent).name} in the scene?`, answer: 'no' });
  for (const a of objs) {
    for (const b of objs) {
      if (a === b) continue;
      const dy = a.pos[1] - b.pos[1];
      if (Math.abs(dy) >= SIDE_MARGIN) out.push({ type: 'left_right', question: `From the robot's point of view, is the ${a.name} to the left or to the right of the ${b.name}?`, answer: dy > 0 ? 'left' : 'right' });
    }
    // "what is left of B": only when exactly one object is, by the margin, and none is in doubt
    const left = objs.filter((o) => o !== a && o.pos[1] - a.pos[1] >= SIDE_MARGIN);
    const doubt = objs.filter((o) => o !== a && o.pos[1] - a.pos[1] > -0.02 && o.pos[1] - a.pos[1] < SIDE_MARGIN + 0.02 && !left.includes(o)); // anything roughly beside it
    const near = left.filter((o) => o.pos[1] - a.pos[1] < SIDE_MARGIN + 0.02); // the answer itself must be clearly left
    if (left.length === 1 && !doubt.length && !near.length) out.push({ type: 'left_of', question: `From the robot's point of view, what is to the left of the ${a.name}?`, answer: left[0].name });
  }
  const on = new Map<string, string[]>();
  for (const r of f.relations) {
    const m = /^(.+) (on|in) (.+)$/.exec(r);
    if (m && !r.startsWith('gripper holds')) on.set(`${m[2]} ${m[3]}`, [...(on.get(`${m[2]} ${m[3]}`) ?? []), m[1]]);
  }
  for (const [where, xs] of on) if (xs.length === 1) out.push({ type: 'on', question: `What is ${where.replace(/^(on|in) /, '$1 the ')}?`, answer: xs[0] });
  out.push({ type: 'holding', question: 'What is the gripper holding?', answer: f.holding || 'nothing' });
  // grounding: where each object is on the table (x forward, y left, as in the robot state), and where the gripper is
  for (const o of objs) out.push({ type: 'where', question: `Where is the ${o.name}? Give its [x, y] position in centimeters.`, answer: positionText(o.pos.slice(0, 2), 'cm', 1) });
  if (f.gripper) out.push({ type: 'gripper', question: 'Where is the gripper? Give its [x, y, z] position in centimeters.', answer: positionText(f.gripper.slice(0, 3), 'cm', 1) });
  return out;
}

export interface SceneQaOptions {
  count: number;
  seed: number;
  width?: number;
  height?: number;
  /** Questions per frame (default 3). */
  perFrame?: number;
  /** The question types to ask (default DEFAULT_SCENE_QA_TYPES). */
  types?: readonly SceneQaType[];
  /** The task families whose scenes are shown, taking turns (default all four). */
  families?: readonly Family[];
  /** Distractor objects per scene (default the world's, 1-3). */
  distractors?: number | [number, number];
  /** Record each question's grounding targets (the named objects' centres in the image, from the pixel masks). */
  ground?: boolean | 'all';
  signal?: AbortSignal;
}

/**
 * `count` questions, `perFrame` from each frame, of different types where possible.
 * @example for await (const q of generateSceneQa({ count: 100, seed: 0 })) ...
 */
export async function* generateSceneQa(o: SceneQaOptions): AsyncGenerator<SceneQaItem> {
  const env = new TabletopEnv({ width: o.width ?? 128, height: o.height ?? 128, distractors: o.distractors, masks: Boolean(o.ground) });
  const families = o.families ?? FAMILIES;
  let made = 0;
  try {
    for (let scene = 0; made < o.count; scene++) {
      o.signal?.throwIfAborted();
      const seed = subSeed(o.seed, scene);
      const rng = new Rng(subSeed(seed, 1));
      const family = families[scene % families.length];
      const first = await env.reset(seed, { family });
      // a frame part-way through (or at the end of) the expert's demonstration: half at the start, half after 5-90 steps
      const steps = rng.next() < 0.5 ? 0 : rng.int(5, 90); // ends early when the demonstration does
      let obs = first.observation;
      let info = first.info ?? {};
      const expert = new ScriptedPolicy();
      expert.reset({ env, seed });
      let step = 0;
      while (step < steps) {
        const r = await env.step(expert.act());
        step += 1;
        obs = r.observation;
        info = r.info;
        if (r.done) break;
      }
      const oracle = info.oracle as { objects: SceneObject[]; holding: string; relations: string[] };
      const facts: SceneFacts = { objects: oracle.objects.map(({ name, color, shape, role, pos }) => ({ name, color, shape, role, pos })), holding: oracle.holding, relations: oracle.relations, gripper: Array.isArray(obs.state) ? (obs.state as number[]).slice(0, 3) : undefined };
      const types = new Set(o.types ?? DEFAULT_SCENE_QA_TYPES);
      const all = sceneQuestions(facts, rng).filter((q) => types.has(q.type));
      if (!all.length) continue;
      // one question per type first, in a random order of types, then the rest
      const byType = new Map<string, typeof all>();
      for (const q of rng.shuffle(all)) {
        const list = byType.get(q.type);
        if (list) list.push(q);
        else byType.set(q.type, [q]);
      }
      const picked: typeof all = [];
      for (const t of rng.shuffle([...byType.keys()])) picked.push(byType.get(t)![0]);
      for (const q of all) if (!picked.includes(q) && picked.length < (o.perFrame ?? 3)) picked.push(q); // more of the same types
      for (const q of picked.slice(0, o.perFrame ?? 3)) {
        if (made >= o.count) break;
        const ground = o.ground ? (groundTargets(info.oracle, q.question, ['image_0'], o.ground === 'all') ?? []) : undefined;
        yield { id: `sceneqa-${o.seed}-${made}`, image: obs.image_0 as ImageJson, question: q.question, answer: q.answer, metric: q.type === 'where' || q.type === 'gripper' ? 'position' : 'exact', type: q.type, scene: { seed, family, step }, facts, ...(ground ? { ground } : {}) };
        made += 1;
      }
    }
  } finally {
    await env.close();
  }
}

/** A scene question as a training example (the answer is language: a reasoning span, weighed by lambda_r). */
export function sceneQaExample(q: SceneQaItem, split = 'train'): TrainingExample {
  return {
    id: q.id,
    images: [q.image],
    messages: [
      { role: 'user', content: [{ type: 'image' }, { type: 'text', text: PROMPTS.vqa(q.question) }] },
      { role: 'assistant', content: [{ type: 'text', text: q.answer }] },
    ],
    spans: [{ kind: 'reasoning', start: 0, end: q.answer.length }],
    meta: { episode_id: q.id, steps: [q.scene.step, q.scene.step], stage: 'vqa', method: 'sceneqa', representation: 'none', split },
    ...(q.ground ? { ground: q.ground } : {}),
  };
}
