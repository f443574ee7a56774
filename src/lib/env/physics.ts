/**
 * MuJoCo physics for the tabletop (mujoco-js, the official WebAssembly build). The hand and fingers are mocap
 * bodies moved by the controller; grasping is a weld equality that activates when the gripper closes around an
 * item (its centre between the fingertips) and releases when the gripper opens. Items rest, fall and stack
 * through MuJoCo contacts.
 */
import loadMujocoModule from 'mujoco-js';
import type { MainModule, MjData, MjModel } from 'mujoco-js';
import { VlakitError } from '../errors.js';
import type { ObjectSpec } from './catalog.js';
import { type Layout, MAX_OPENING, type Vec3, footprint, sceneXml } from './scene.js';

let mujoco: Promise<MainModule> | undefined;
let fileCounter = 0;

/** Loads the MuJoCo WebAssembly module once per process. */
export function loadMujoco(): Promise<MainModule> {
  mujoco ??= (loadMujocoModule as unknown as () => Promise<MainModule>)().then((mj) => {
    (mj as unknown as { FS: { mkdir(p: string): void } }).FS.mkdir('/vlakit');
    return mj;
  });
  return mujoco;
}

export interface ItemState {
  pos: Vec3;
  /** Rotation as a quaternion (w, x, y, z). */
  quat: [number, number, number, number];
  /** Linear speed, m/s. */
  speed: number;
}

/** Rotation about z (radians) of a quaternion (w, x, y, z). */
export function yawOf(q: [number, number, number, number]): number {
  return Math.atan2(2 * (q[0] * q[3] + q[1] * q[2]), 1 - 2 * (q[2] * q[2] + q[3] * q[3]));
}

/** Physics timestep (s): MuJoCo steps per control step = (1 / controlHz) / TIMESTEP. */
export const TIMESTEP = 0.004;

export class World {
  readonly itemIds: string[];
  /** Tool centre point: between the fingertips. */
  tcp: Vec3;
  /** Gripper opening in [0, 1] (1: fully open). */
  opening = 1;
  /** Whether the hand is open (an opening of at least half). */
  get handOpen(): boolean {
    return this.opening >= 0.5;
  }
  /** The item held by the gripper, if any. */
  grasped: string | undefined;
  /** MuJoCo body id of each object (the renderer's body buffer uses them). */
  readonly body = new Map<string, number>();
  private readonly weld = new Map<string, number>();
  private readonly qadr = new Map<string, number>();
  private readonly handMocap: number;
  private readonly leftMocap: number;
  private readonly rightMocap: number;

  private constructor(
    readonly mj: MainModule,
    readonly model: MjModel,
    readonly data: MjData,
    readonly layout: Layout,
  ) {
    const BODY = (mj as unknown as { mjtObj: { mjOBJ_BODY: { value: number }; mjOBJ_EQUALITY: { value: number } } }).mjtObj;
    const id = (type: number, name: string): number => mj.mj_name2id(model, type, name);
    const mocapOf = model.body_mocapid as Int32Array;
    this.handMocap = mocapOf[id(BODY.mjOBJ_BODY.value, 'hand')];
    this.leftMocap = mocapOf[id(BODY.mjOBJ_BODY.value, 'finger_l')];
    this.rightMocap = mocapOf[id(BODY.mjOBJ_BODY.value, 'finger_r')];
    const jntAdr = model.body_jntadr as Int32Array;
    const qposAdr = model.jnt_qposadr as Int32Array;
    for (const p of layout.placements) {
      const b = id(BODY.mjOBJ_BODY.value, p.spec.id);
      this.body.set(p.spec.id, b);
      if (p.spec.role === 'item') {
        this.weld.set(p.spec.id, id(BODY.mjOBJ_EQUALITY.value, `grasp_${p.spec.id}`));
        this.qadr.set(p.spec.id, qposAdr[jntAdr[b]]);
      }
    }
    this.itemIds = layout.placements.filter((p) => p.spec.role === 'item').map((p) => p.spec.id);
    this.tcp = [...layout.hand];
    this.placeGripper(this.tcp, this.opening);
    mj.mj_forward(model, data);
  }

  /** Builds the world of a layout and lets the items settle on the table. */
  static async create(layout: Layout): Promise<World> {
    const mj = await loadMujoco();
    const fs = (mj as unknown as { FS: { writeFile(p: string, s: string): void; unlink(p: string): void } }).FS;
    const file = `/vlakit/scene-${process.pid}-${++fileCounter}.xml`;
    fs.writeFile(file, sceneXml(layout));
    let model: MjModel;
    try {
      model = mj.MjModel.loadFromXML(file);
    } catch (err) {
      throw new VlakitError('E_IO', `MuJoCo could not compile the scene (${String(err)})`, {}, { cause: err });
    } finally {
      fs.unlink(file);
    }
    const data = new mj.MjData(model);
    const w = new World(mj, model, data, layout);
    for (let i = 0; i < 100; i++) mj.mj_step(model, data);
    return w;
  }

  spec(id: string): ObjectSpec {
    return this.layout.placements.find((p) => p.spec.id === id)!.spec;
  }

  private placeGripper(tcp: Vec3, opening: number): void {
    const mp = this.data.mocap_pos as Float64Array;
    const grip = this.grasped ? Math.max(this.graspExtentY(this.grasped), 0.008) : 0;
    const half = Math.max(opening * MAX_OPENING, grip) / 2 + 0.005;
    mp.set(tcp, this.handMocap * 3);
    mp.set([tcp[0], tcp[1] + half, tcp[2]], this.leftMocap * 3);
    mp.set([tcp[0], tcp[1] - half, tcp[2]], this.rightMocap * 3);
  }

  /**
   * Moves the gripper to `target` and its opening to `opening` over one control period of `substeps` physics
   * steps (linear interpolation: the hand moves smoothly, held items follow through the weld).
   */
  move(target: Vec3, opening: number, substeps: number): void {
    const from = this.tcp;
    const open0 = this.opening;
    const closing = opening < 0.5 && open0 >= 0.5;
    if (closing && !this.grasped) this.tryGrasp();
    if (opening >= 0.5 && this.grasped) this.release();
    for (let i = 1; i <= substeps; i++) {
      const a = i / substeps;
      const p: Vec3 = [from[0] + (target[0] - from[0]) * a, from[1] + (target[1] - from[1]) * a, from[2] + (target[2] - from[2]) * a];
      this.placeGripper(p, open0 + (opening - open0) * a);
      this.mj.mj_step(this.model, this.data);
    }
    this.tcp = [...target];
    this.opening = opening;
  }

  private hullHalf(id: string): [number, number] {
    return footprint(this.spec(id));
  }

  private yaw(id: string): number {
    return yawOf(this.state(id).quat);
  }

  /** The item's width across the fingers (along world y). */
  graspExtentY(id: string): number {
    const [hx, hy] = this.hullHalf(id);
    const a = this.yaw(id);
    return 2 * (Math.abs(hx * Math.sin(a)) + Math.abs(hy * Math.cos(a)));
  }

  /** The item whose footprint holds the TCP at a height between its bottom and top, nearest first. */
  graspCandidate(): string | undefined {
    let best: string | undefined;
    let bestD = Infinity;
    for (const id of this.itemIds) {
      const s = this.state(id);
      const [hx, hy] = this.hullHalf(id);
      const a = this.yaw(id);
      const dx = this.tcp[0] - s.pos[0];
      const dy = this.tcp[1] - s.pos[1];
      const lx = Math.cos(a) * dx + Math.sin(a) * dy; // world -> item frame
      const ly = -Math.sin(a) * dx + Math.cos(a) * dy;
      const height = this.spec(id).height;
      const bottom = s.pos[2];
      const inside = Math.abs(lx) <= hx + 0.004 && Math.abs(ly) <= hy + 0.012;
      const level = this.tcp[2] >= bottom - 0.012 && this.tcp[2] <= bottom + height + 0.004;
      const fits = this.graspExtentY(id) <= MAX_OPENING;
      const d = Math.hypot(dx, dy);
      if (inside && level && fits && d < bestD) {
        best = id;
        bestD = d;
      }
    }
    return best;
  }

  private tryGrasp(): void {
    const id = this.graspCandidate();
    if (!id) return;
    const eq = this.weld.get(id)!;
    const s = this.state(id);
    const ed = this.model.eq_data as Float64Array;
    const base = eq * 11; // mjNEQDATA: anchor(3), relpose pos(3), relpose quat(4), torquescale(1)
    ed.set([s.pos[0] - this.tcp[0], s.pos[1] - this.tcp[1], s.pos[2] - this.tcp[2]], base + 3);
    ed.set(s.quat, base + 6);
    (this.data.eq_active as Uint8Array)[eq] = 1;
    this.grasped = id;
  }

  private release(): void {
    if (!this.grasped) return;
    (this.data.eq_active as Uint8Array)[this.weld.get(this.grasped)!] = 0;
    this.grasped = undefined;
  }

  /** Position (of the body origin: the bottom centre of the item), orientation and speed of an object. */
  state(id: string): ItemState {
    const b = this.body.get(id);
    if (b === undefined) throw new VlakitError('E_USAGE', `no object "${id}" in this scene`);
    const xpos = this.data.xpos as Float64Array;
    const xquat = this.data.xquat as Float64Array;
    const q = this.qadr.get(id);
    let speed = 0;
    if (q !== undefined) {
      const dofAdr = (this.model.jnt_dofadr as Int32Array)[(this.model.body_jntadr as Int32Array)[b]];
      const qv = this.data.qvel as Float64Array;
      speed = Math.hypot(qv[dofAdr], qv[dofAdr + 1], qv[dofAdr + 2]);
    }
    return {
      pos: [xpos[b * 3], xpos[b * 3 + 1], xpos[b * 3 + 2]],
      quat: [xquat[b * 4], xquat[b * 4 + 1], xquat[b * 4 + 2], xquat[b * 4 + 3]],
      speed,
    };
  }

  dispose(): void {
    this.data.delete();
    this.model.delete();
  }
}
