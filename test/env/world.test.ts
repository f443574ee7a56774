import { describe, expect, it } from 'vitest';
import {
  Renderer,
  ScriptedExpert,
  TabletopEnv,
  World,
  mainCamera,
  objectSpec,
  sampleLayout,
  type Family,
} from '../../src/lib/env/index.js';
import { isIn, isLifted, isNear, isOn } from '../../src/lib/env/tasks.js';
import { Rng } from '../../src/lib/util/rng.js';

async function runExpert(env: TabletopEnv, seed: number, family: Family) {
  const first = await env.reset(seed, { family });
  const ex = new ScriptedExpert(new Rng(seed));
  const actions: number[][] = [];
  const states: unknown[] = [];
  for (;;) {
    const a = ex.act(env.world!, env.task!, env.subtask);
    actions.push(a);
    const r = await env.step(a);
    states.push(r.observation.state);
    if (r.done) return { first, actions, states, success: r.info.success as boolean, last: r };
  }
}

describe('determinism', () => {
  it('the same seed gives the same episode bit for bit; another seed another one', async () => {
    const env = new TabletopEnv({ width: 48, height: 48 });
    const a = await runExpert(env, 11, 'place');
    const b = await runExpert(env, 11, 'place');
    expect(b.first).toEqual(a.first);
    expect(b.actions).toEqual(a.actions);
    expect(b.states).toEqual(a.states);
    expect(b.last.observation).toEqual(a.last.observation);
    const c = await env.reset(12, { family: 'place' });
    expect(c.observation.image_0).not.toEqual(a.first.observation.image_0);
    await env.close();
  });
});

describe('the scripted expert', () => {
  const N = 20;
  it.each(['pick', 'place', 'near', 'place_then_lift'] as Family[])('succeeds on 19 or more of 20 %s episodes', async (family) => {
    const env = new TabletopEnv({ images: false });
    let ok = 0;
    const lengths: number[] = [];
    for (let i = 0; i < N; i++) {
      const r = await runExpert(env, 5000 + i, family);
      if (r.success) ok += 1;
      lengths.push(r.actions.length);
      // moves like teleoperation: at most 1.5 cm a step
      for (const a of r.actions) expect(Math.hypot(a[0], a[1], a[2])).toBeLessThanOrEqual(0.015 + 1e-9);
    }
    expect(ok / N).toBeGreaterThanOrEqual(0.95);
    await env.close();
  });

  it('walks through the subtasks in order and reports them in the oracle', async () => {
    const env = new TabletopEnv({ images: false });
    await env.reset(3, { family: 'place' });
    const ex = new ScriptedExpert(new Rng(3));
    const seen: string[] = [];
    for (;;) {
      const r = await env.step(ex.act(env.world!, env.task!, env.subtask));
      const kind = (r.info.oracle as { subtask: { kind: string } }).subtask.kind;
      if (seen[seen.length - 1] !== kind) seen.push(kind);
      if (r.done) break;
    }
    // the episode ends on success, which may come before the final retract is complete
    const all = ['reach', 'grasp', 'lift', 'carry', 'place', 'retract', 'done'];
    expect(seen.slice(0, 5)).toEqual(all.slice(0, 5));
    expect(all.slice(0, seen.length)).toEqual(seen);
    await env.close();
  });
});

describe('a dropped item', () => {
  it('sends the subtasks back to its reach (once it is at rest), and the expert picks it up again', async () => {
    const env = new TabletopEnv({ images: false });
    await env.reset(3, { family: 'place' });
    const ex = new ScriptedExpert(new Rng(3));
    const kind = (r: { info: Record<string, unknown> }) => (r.info.oracle as { subtask: { kind: string }; subtasks_done: number }).subtask.kind;
    let r = await env.step(ex.act(env.world!, env.task!, env.subtask));
    while (kind(r) !== 'carry') r = await env.step(ex.act(env.world!, env.task!, env.subtask));
    expect(env.world!.grasped).toBe(env.task!.objects[0]);
    // the hand opens high above the table: the item falls (within a step or two) and comes to rest
    r = await env.step([0, 0, 0, 1]);
    expect(env.world!.grasped).toBeUndefined();
    let n = 0;
    while (kind(r) === 'carry' && n++ < 30) r = await env.step([0, 0, 0, 1]);
    expect(kind(r)).toBe('reach');
    expect((r.info.oracle as { subtasks_done: number }).subtasks_done).toBe(0);
    expect(env.world!.state(env.task!.objects[0]).speed).toBeLessThan(0.05);
    while (!r.done) r = await env.step(ex.act(env.world!, env.task!, env.subtask));
    expect(r.info.success).toBe(true);
    await env.close();
  });
});

describe('a grasp that closes on nothing', () => {
  it('sends the subtasks back to the reach; a closed hand at the grasp pose has not reached; the expert opens and picks the item up', async () => {
    const env = new TabletopEnv({ images: false });
    await env.reset(5, { family: 'pick' });
    const ex = new ScriptedExpert(new Rng(5));
    const kind = (r: { info: Record<string, unknown> }) => (r.info.oracle as { subtask: { kind: string } }).subtask.kind;
    let r = await env.step(ex.act(env.world!, env.task!, env.subtask));
    while (kind(r) !== 'grasp') r = await env.step(ex.act(env.world!, env.task!, env.subtask));
    // the hand rises 3 cm, still open (the grasp is still under way), then closes there: on nothing
    for (let i = 0; i < 2; i++) r = await env.step([0, 0, 0.015, 1]);
    expect(kind(r)).toBe('grasp');
    r = await env.step([0, 0, 0, 0]);
    expect(env.world!.grasped).toBeUndefined();
    expect(kind(r)).toBe('reach');
    // back down to the grasp pose with the hand still closed: not reached (a closed hand cannot grasp)
    for (let i = 0; i < 2; i++) r = await env.step([0, 0, -0.015, 0]);
    expect(env.world!.graspCandidate()).toBe(env.task!.objects[0]);
    expect(kind(r)).toBe('reach');
    while (!r.done) r = await env.step(ex.act(env.world!, env.task!, env.subtask));
    expect(r.info.success).toBe(true);
    await env.close();
  });
});

describe('predicates', () => {
  async function world(names: string[], seed = 3): Promise<World> {
    return World.create(sampleLayout(new Rng(seed), names.map((n) => objectSpec(n)!)));
  }
  const go = (w: World, p: [number, number, number], g: number, n = 10) => {
    for (let i = 0; i < n; i++) w.move(p, g, 50);
  };

  it('on, in, near and lifted hold exactly when they should', async () => {
    const w = await world(['red block', 'plate', 'basket']);
    const b = w.state('red_block').pos;
    expect(isOn(w, 'red_block', 'plate')).toBe(false);
    expect(isLifted(w, 'red_block')).toBe(false);
    go(w, [b[0], b[1], 0.1], 1, 3);
    go(w, [b[0], b[1], b[2] + 0.02], 1, 3);
    go(w, [b[0], b[1], b[2] + 0.02], 0, 1);
    expect(w.grasped).toBe('red_block');
    go(w, [b[0], b[1], 0.15], 0, 3);
    expect(isLifted(w, 'red_block')).toBe(true);
    const p = w.state('plate').pos;
    go(w, [p[0], p[1], 0.15], 0, 3);
    go(w, [p[0], p[1], 0.05], 0, 3);
    expect(isOn(w, 'red_block', 'plate')).toBe(false); // still held
    go(w, [p[0], p[1], 0.05], 1, 3);
    expect(w.grasped).toBeUndefined();
    expect(isOn(w, 'red_block', 'plate')).toBe(true);
    expect(isIn(w, 'red_block', 'basket')).toBe(false);
    expect(isNear(w, 'red_block', 'plate')).toBe(false); // on it is not next to it
    expect(w.state('red_block').pos[2]).toBeCloseTo(0.01, 2); // resting on the plate's top, not sinking through
    w.dispose();
  });

  it('an item dropped into a container is in it', async () => {
    const w = await world(['green block', 'pot']);
    const b = w.state('green_block').pos;
    go(w, [b[0], b[1], b[2] + 0.02], 1, 3);
    go(w, [b[0], b[1], b[2] + 0.02], 0, 1);
    const p = w.state('pot').pos;
    go(w, [p[0], p[1], 0.16], 0, 4);
    go(w, [p[0], p[1], 0.1], 1, 4);
    expect(isIn(w, 'green_block', 'pot')).toBe(true);
    expect(isOn(w, 'green_block', 'pot')).toBe(false);
    w.dispose();
  });
});

describe('renderer', () => {
  it('draws an object where it projects, with its colour, and marks its pixels with its body', async () => {
    const w = await World.create(sampleLayout(new Rng(8), [objectSpec('red block')!, objectSpec('blue block')!]));
    const cam = mainCamera(96, 96);
    const frame = new Renderer(w.model).render(w.data, cam);
    for (const [id, channel] of [['red_block', 0], ['blue_block', 2]] as const) {
      const s = w.state(id).pos;
      const centre: [number, number, number] = [s[0], s[1], s[2] + 0.02];
      // independent pinhole projection
      const sub = (a: number[], b: number[]) => a.map((v, i) => v - b[i]);
      const crossP = (a: number[], b: number[]) => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
      const unit = (a: number[]) => a.map((v) => v / Math.hypot(...a));
      const f = unit(sub(cam.target, cam.pos));
      const r = unit(crossP(f, [0, 0, 1]));
      const d = crossP(f, r);
      const rel = sub(centre, cam.pos);
      const z = rel[0] * f[0] + rel[1] * f[1] + rel[2] * f[2];
      const focal = cam.height / 2 / Math.tan((cam.fovy * Math.PI) / 360);
      const u = Math.floor(cam.width / 2 + (focal * (rel[0] * r[0] + rel[1] * r[1] + rel[2] * r[2])) / z);
      const v = Math.floor(cam.height / 2 + (focal * (rel[0] * d[0] + rel[1] * d[1] + rel[2] * d[2])) / z);
      const i = v * cam.width + u;
      const px = [frame.rgb[i * 3], frame.rgb[i * 3 + 1], frame.rgb[i * 3 + 2]];
      expect(px[channel], `${id} at (${u}, ${v}) is ${px}`).toBeGreaterThan(Math.max(...px.filter((_, k) => k !== channel)) + 40);
      const bodyName = w.mj.mj_id2name(w.model, 1, frame.body[i]);
      expect(bodyName).toBe(id);
    }
    // the corners show the back wall / the table, never an object
    expect(w.mj.mj_id2name(w.model, 1, frame.body[0])).toBe('world'); // table, wall and floor are world geoms
    w.dispose();
  });

  it('renders the same bytes for the same state', async () => {
    const w = await World.create(sampleLayout(new Rng(2), [objectSpec('carrot')!, objectSpec('pot')!]));
    const r = new Renderer(w.model);
    const a = r.render(w.data, mainCamera(64, 48));
    const b = new Renderer(w.model).render(w.data, mainCamera(64, 48));
    expect(Buffer.from(a.rgb).equals(Buffer.from(b.rgb))).toBe(true);
    expect(a.rgb.length).toBe(64 * 48 * 3);
    w.dispose();
  });
});

describe('a reset that fails', () => {
  it('no room for every object: a usage error, and the env still closes cleanly (its world is not disposed twice)', async () => {
    const env = new TabletopEnv({ width: 16, height: 16, distractors: 8 });
    let failure: unknown;
    for (let seed = 0; seed < 30 && !failure; seed++) await env.reset(seed).catch((e: unknown) => (failure = e));
    expect(failure).toMatchObject({ code: 'E_USAGE', message: expect.stringMatching(/cannot place \d+ objects on the table without overlap; use fewer distractors/) });
    await expect(env.close()).resolves.toBeUndefined();
  });
});
