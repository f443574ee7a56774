/**
 * The scripted expert of the built-in world: for the current subtask it picks a waypoint (above the item,
 * down to it, close, lift, above the target, down, open, retract) and moves towards it in small steps, as a
 * human teleoperator would (about 1.5 cm a step, optional Gaussian noise). It is privileged: it reads the
 * simulator's state, so it only drives the built-in world.
 */
import type { Rng } from '../util/rng.js';
import type { World } from './physics.js';
import { type Vec3, WORKSPACE } from './scene.js';
import type { Subtask, Task } from './tasks.js';
import { nearSpot } from './tasks.js';

export interface ExpertOptions {
  /** Largest translation per control step, meters (default 0.015). */
  stepSize?: number;
  /** Standard deviation of Gaussian noise added to each translation, meters (default 0). */
  noise?: number;
}

const LIFT_Z = 0.13;

/** The slope of the cone over a goal inside which the expert heads straight for it (lateral / height). */
export const FUNNEL = 0.5;

export class ScriptedExpert {
  private readonly step: number;
  private readonly noise: number;

  constructor(
    private readonly rng: Rng,
    opts: ExpertOptions = {},
  ) {
    this.step = opts.stepSize ?? 0.015;
    this.noise = opts.noise ?? 0;
  }

  /** The action for the current state and subtask: [dx, dy, dz, gripper]. */
  act(w: World, task: Task, sub: Subtask | undefined): number[] {
    if (!sub) return [0, 0, 0, w.handOpen ? 1 : 0];
    const { target, gripper } = this.waypoint(w, task, sub);
    const d: Vec3 = [target[0] - w.tcp[0], target[1] - w.tcp[1], target[2] - w.tcp[2]];
    const n = Math.hypot(d[0], d[1], d[2]);
    const k = n > this.step ? this.step / n : 1;
    const a = d.map((x) => x * k + (this.noise > 0 ? this.rng.normal() * this.noise : 0));
    return [a[0], a[1], a[2], gripper];
  }

  /** Where the expert is heading now (the end of its current straight move) and its gripper command; none without a subtask. */
  target(w: World, task: Task, sub: Subtask | undefined): { target: Vec3; gripper: number } | undefined {
    return sub ? this.waypoint(w, task, sub) : undefined;
  }

  private waypoint(w: World, task: Task, sub: Subtask): { target: Vec3; gripper: number } {
    const tcp = w.tcp;
    const x = w.state(sub.object);
    const xs = w.spec(sub.object);
    const xTop = x.pos[2] + xs.height;
    switch (sub.kind) {
      case 'reach': {
        const graspZ = Math.max(WORKSPACE.min[2] + 0.002, x.pos[2] + Math.min(Math.max(xs.height * 0.5, 0.006), 0.02));
        const safe = Math.max(xTop + 0.05, 0.08);
        return { target: this.approach(tcp, [x.pos[0], x.pos[1], graspZ], safe), gripper: 1 };
      }
      case 'grasp':
        return { target: tcp, gripper: 0 };
      case 'lift':
        return { target: [tcp[0], tcp[1], LIFT_Z], gripper: 0 };
      case 'carry': {
        const p = this.placePoint(w, task, sub);
        const y = w.spec(sub.target!);
        const z = Math.max(LIFT_Z, w.state(sub.target!).pos[2] + y.height + xs.height + 0.07);
        return { target: this.approach(tcp, [p[0], p[1], z], z), gripper: 0 };
      }
      case 'place': {
        if (w.grasped !== sub.object) return { target: [tcp[0], tcp[1], Math.max(tcp[2], xTop + 0.05)], gripper: 1 }; // released: rise clear while the item settles
        const p = this.placePoint(w, task, sub);
        const held = tcp[2] - x.pos[2]; // TCP height above the item's bottom
        const y = w.state(sub.target!);
        const ys = w.spec(sub.target!);
        const bottomAt = sub.relation === 'near' ? 0.008 : sub.relation === 'in' ? y.pos[2] + (ys.inner?.rim ?? ys.height) + 0.008 : y.pos[2] + ys.height + 0.01;
        const target: Vec3 = [p[0], p[1], Math.max(WORKSPACE.min[2], bottomAt + held)];
        const there = Math.hypot(target[0] - tcp[0], target[1] - tcp[1], target[2] - tcp[2]) < 0.004;
        return { target, gripper: there ? 1 : 0 };
      }
      case 'retract':
        return { target: [tcp[0], tcp[1], Math.min(WORKSPACE.max[2], xTop + 0.07)], gripper: 1 };
    }
  }

  /** Where the item goes down: the receptacle's centre, or a free spot beside the reference for 'near'. */
  private placePoint(w: World, task: Task, sub: Subtask): Vec3 {
    if (sub.relation === 'near') {
      task.spot ??= nearSpot(w, sub.object, sub.target!);
      return task.spot;
    }
    return w.state(sub.target!).pos;
  }

  /**
   * Rise to `safe` before moving sideways, then go straight to `goal` once the hand is inside a cone over it (a
   * lateral offset of at most FUNNEL x the height above the goal, and at least 6 mm): the hand converges on the goal
   * while it descends instead of stopping above it, so a policy that misjudges the goal by a centimetre or two still
   * goes down toward it (and corrects on the way) rather than hovering at the safe height.
   */
  private approach(tcp: Vec3, goal: Vec3, safe: number): Vec3 {
    const far = Math.hypot(goal[0] - tcp[0], goal[1] - tcp[1]) > Math.max(0.006, FUNNEL * (tcp[2] - goal[2]));
    if (far && tcp[2] < safe - 0.004) return [tcp[0], tcp[1], safe];
    if (far) return [goal[0], goal[1], Math.max(safe, goal[2])];
    return goal;
  }
}
