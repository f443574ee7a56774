/**
 * The built-in tabletop world as an Env: MuJoCo physics, the software camera(s), the task and its subtask
 * tracker. `info.oracle` carries scene facts and the current subtask: teachers and policies never read it; it
 * serves success checks, annotation scoring and VQA.
 */
import sharp from 'sharp';
import { VlakitError } from '../errors.js';
import { Rng } from '../util/rng.js';
import type { Env, Observation, StepResult, TaskRequest } from './protocol.js';
import { type World, TIMESTEP, World as WorldClass } from './physics.js';
import { type Camera, type Frame, Renderer } from './render.js';
import { MAX_OPENING, type Vec3, WORKSPACE, sampleLayout } from './scene.js';
import { FAMILIES, type Family, type Subtask, type Task, regression, relations, sampleTask, subtaskDone, taskSuccess } from './tasks.js';

export interface TabletopOptions {
  /** Camera image size in pixels (default 128 x 128). */
  width?: number;
  height?: number;
  /** Add a wrist camera (`wrist_image`). */
  wrist?: boolean;
  /** Control rate, Hz (default 5, as BridgeData). */
  controlHz?: number;
  /** Distractor objects per scene: a number or [min, max] (default [1, 3]). */
  distractors?: number | [number, number];
  /** Steps before the episode is cut (default by family). */
  maxSteps?: number;
  /** Add each object's pixel mask in the main camera image to the oracle (for attention scores). */
  masks?: boolean;
  /** Render camera images into observations (default true; off for fast expert statistics). */
  images?: boolean;
}

export const MAX_STEPS: Record<Family, number> = { pick: 60, place: 110, near: 110, place_then_lift: 170 };

/** The third-person camera, over the table like BridgeData's. */
export function mainCamera(width: number, height: number): Camera {
  return { name: 'image_0', width, height, fovy: 50, pos: [0.08, 0.28, 0.52], target: [0.47, -0.02, 0] };
}

/** The wrist camera: behind and above the fingers, looking down past them. */
export function wristCamera(tcp: Vec3, width: number, height: number): Camera {
  return { name: 'wrist_image', width, height, fovy: 80, pos: [tcp[0] - 0.06, tcp[1], tcp[2] + 0.06], target: [tcp[0] + 0.06, tcp[1], tcp[2] - 0.07] };
}

export interface OracleFacts {
  /** The subtask being worked on; kind 'done' once all are done. */
  subtask: { index: number; kind: string; text: string };
  subtasks_done: number;
  holding: string;
  success: boolean;
  relations: string[];
  objects: { id: string; name: string; color: string; shape: string; role: string; pos: number[] }[];
  /** With the `masks` option: each visible object's pixels in the main camera image, run-length encoded. */
  masks?: ObjectMasks;
}

/**
 * Pixel masks of objects in one camera image: per visible object, runs over the row-major pixel index
 * (`[start, length, start, length, ...]`). A list of objects (not a map of arrays), so that datasets keep it as
 * one JSON value whatever the run counts.
 */
export interface ObjectMasks {
  camera: string;
  width: number;
  height: number;
  objects: { id: string; runs: number[] }[];
}

/** Runs of pixels whose body id is `id`. */
function runsOf(body: Int16Array, id: number): number[] {
  const runs: number[] = [];
  for (let i = 0; i < body.length; i++) {
    if (body[i] !== id) continue;
    const start = i;
    while (i + 1 < body.length && body[i + 1] === id) i++;
    runs.push(start, i - start + 1);
  }
  return runs;
}

/** A mask as a 0/1 array of width * height. */
export function decodeMask(runs: number[], width: number, height: number): Uint8Array {
  const m = new Uint8Array(width * height);
  for (let k = 0; k + 1 < runs.length; k += 2) m.fill(1, runs[k], Math.min(runs[k] + runs[k + 1], m.length));
  return m;
}

export class TabletopEnv implements Env {
  readonly name = 'builtin:tabletop';
  world: World | undefined;
  task: Task | undefined;
  /** Index of the first subtask not yet done. */
  progress = 0;
  steps = 0;
  rng: Rng = new Rng(0);
  private renderer: Renderer | undefined;
  private readonly width: number;
  private readonly height: number;
  private readonly substeps: number;
  private lastFrames = new Map<string, Frame>();

  constructor(readonly opts: TabletopOptions = {}) {
    this.width = opts.width ?? 128;
    this.height = opts.height ?? 128;
    const hz = opts.controlHz ?? 5;
    if (!(hz > 0 && hz <= 100)) throw new VlakitError('E_USAGE', `control rate must be in (0, 100] Hz, got ${hz}`);
    this.substeps = Math.max(1, Math.round(1 / hz / TIMESTEP));
  }

  async reset(seed: number, req: TaskRequest = {}): Promise<Observation> {
    this.world?.dispose();
    this.world = undefined; // a reset that fails (no room for the objects) must not leave it to be disposed twice
    this.rng = new Rng(seed);
    const family = (req.family ?? this.rng.pick(FAMILIES)) as Family;
    if (!(FAMILIES as readonly string[]).includes(family)) {
      throw new VlakitError('E_USAGE', `unknown task family "${family}" for builtin:tabletop; expected one of ${FAMILIES.join(', ')}`);
    }
    const d = this.opts.distractors ?? [1, 3];
    const n = typeof d === 'number' ? d : this.rng.int(d[0], d[1]);
    const { task, objects } = sampleTask(this.rng, family, n);
    this.task = { ...task, instruction: req.instruction ?? task.instruction };
    // A layout in which the task is already done (an item placed near its reference) is drawn again.
    for (let attempt = 0; ; attempt++) {
      this.world = await WorldClass.create(sampleLayout(this.rng, objects));
      if (!taskSuccess(this.world, this.task) || attempt >= 20) break;
      this.world.dispose();
      this.world = undefined;
    }
    this.renderer = new Renderer(this.world.model);
    this.progress = 0;
    this.steps = 0;
    this.advance();
    return { observation: await this.observe(), instruction: this.task.instruction, info: { oracle: this.oracle(false), task: this.taskFacts() } };
  }

  /** The subtask being worked on (undefined when all are done). */
  get subtask(): Subtask | undefined {
    return this.task?.subtasks[this.progress];
  }

  private advance(): void {
    const w = this.world!;
    const subs = this.task!.subtasks;
    this.progress = regression(w, subs, this.progress) ?? this.progress; // a dropped item: back to its reach
    while (this.progress < subs.length && subtaskDone(w, subs[this.progress])) this.progress += 1;
  }

  async step(action: number[]): Promise<StepResult> {
    const w = this.world;
    if (!w || !this.task) throw new VlakitError('E_USAGE', 'step() before reset()');
    if (!Array.isArray(action) || (action.length !== 4 && action.length !== 7) || !action.every(Number.isFinite)) {
      throw new VlakitError('E_USAGE', `action must be 4 or 7 finite numbers [dx, dy, dz, (droll, dpitch, dyaw,) gripper], got ${JSON.stringify(action)}`);
    }
    const g = action[action.length - 1];
    const target: Vec3 = [w.tcp[0] + action[0], w.tcp[1] + action[1], w.tcp[2] + action[2]];
    w.move(target, g >= 0.5 ? 1 : 0, this.substeps);
    this.steps += 1;
    this.advance();
    const success = taskSuccess(w, this.task);
    const max = this.opts.maxSteps ?? MAX_STEPS[this.task.family];
    const truncated = !success && this.steps >= max;
    return {
      observation: await this.observe(),
      reward: success ? 1 : 0,
      done: success || truncated,
      info: { oracle: this.oracle(success), success, truncated, contact: this.contact() },
    };
  }

  /** Touching the table below, or the far edge of the workspace (the back wall side) ahead. */
  contact(): { down: boolean; forward: boolean } {
    const w = this.world!;
    let down = w.tcp[2] <= WORKSPACE.min[2] + 1e-3;
    if (w.grasped) down ||= w.state(w.grasped).pos[2] <= 0.002;
    return { down, forward: w.tcp[0] >= WORKSPACE.max[0] - 1e-3 };
  }

  /** Renders the cameras; the last raw frames stay available (pixel masks for the oracle). */
  frames(): Map<string, Frame> {
    const w = this.world!;
    const cams = [mainCamera(this.width, this.height)];
    if (this.opts.wrist) cams.push(wristCamera(w.tcp, this.width, this.height));
    for (const cam of cams) this.lastFrames.set(cam.name, this.renderer!.render(w.data, cam, this.lastFrames.get(cam.name)));
    return this.lastFrames;
  }

  /** The main camera at another size (a video frame), rendered from the current state; undefined before a reset. */
  snapshot(width: number, height: number): Frame | undefined {
    if (!this.world || !this.renderer) return undefined;
    return this.renderer.render(this.world.data, mainCamera(width, height));
  }

  private async observe(): Promise<Record<string, unknown>> {
    const w = this.world!;
    const obs: Record<string, unknown> = {};
    for (const [name, f] of this.opts.images === false ? [] : this.frames()) {
      const png = await sharp(f.rgb, { raw: { width: f.width, height: f.height, channels: 3 } }).png({ compressionLevel: 6 }).toBuffer();
      obs[name] = { mime: 'image/png', b64: png.toString('base64') };
    }
    obs.state = [...w.tcp.map((v) => +v.toFixed(6)), +(w.opening === 1 ? 1 : Math.max(w.opening, (w.grasped ? w.graspExtentY(w.grasped) : 0) / MAX_OPENING)).toFixed(4)];
    return obs;
  }

  oracle(success: boolean): OracleFacts {
    const w = this.world!;
    const sub = this.subtask;
    return {
      subtask: sub ? { index: this.progress, kind: sub.kind, text: sub.text } : { index: this.progress, kind: 'done', text: '' },
      subtasks_done: this.progress,
      holding: w.grasped ? w.spec(w.grasped).name : '',
      success,
      relations: relations(w),
      objects: w.layout.placements.map((p) => ({
        id: p.spec.id,
        name: p.spec.name,
        color: p.spec.color,
        shape: p.spec.shape,
        role: p.spec.role,
        pos: w.state(p.spec.id).pos.map((v) => +v.toFixed(4)),
      })),
      ...(this.opts.masks ? { masks: this.masks() } : {}),
    };
  }

  /** The objects' pixels in the last main camera frame. */
  private masks(): ObjectMasks | undefined {
    const f = this.lastFrames.get('image_0');
    if (!f) return undefined;
    const objects: ObjectMasks['objects'] = [];
    for (const [id, b] of this.world!.body) {
      const runs = runsOf(f.body, b);
      if (runs.length) objects.push({ id, runs });
    }
    return { camera: 'image_0', width: f.width, height: f.height, objects };
  }

  taskFacts(): Record<string, unknown> {
    const t = this.task!;
    return { family: t.family, instruction: t.instruction, objects: t.objects, distractors: t.distractors, subtasks: t.subtasks.map((s) => s.text) };
  }

  async close(): Promise<void> {
    this.world?.dispose();
    this.world = undefined;
  }
}
