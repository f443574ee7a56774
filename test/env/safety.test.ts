import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SafetyFilter, TabletopEnv, WORKSPACE, filterAction } from '../../src/lib/env/index.js';
import { Rng } from '../../src/lib/util/rng.js';

const inBounds = (s: number[]) => s.slice(0, 3).every((v, i) => v >= WORKSPACE.min[i] - 1e-6 && v <= WORKSPACE.max[i] + 1e-6);

describe('filterAction', () => {
  it('never sends a target outside the bounds, nor a step longer than the limit', () => {
    fc.assert(
      fc.property(
        fc.tuple(fc.double({ min: 0.22, max: 0.7, noNaN: true }), fc.double({ min: -0.3, max: 0.3, noNaN: true }), fc.double({ min: 0.008, max: 0.3, noNaN: true })),
        fc.array(fc.double({ min: -10, max: 10, noNaN: true }), { minLength: 4, maxLength: 4 }),
        (ee, a) => {
          const r = filterAction(a, ee, undefined, { maxStep: 0.03 });
          expect(r.action).toBeDefined();
          const out = r.action!;
          expect(Math.hypot(out[0], out[1], out[2])).toBeLessThanOrEqual(0.03 + 1e-12);
          expect(inBounds([ee[0] + out[0], ee[1] + out[1], ee[2] + out[2]])).toBe(true);
          expect(out[3]).toBeGreaterThanOrEqual(0);
          expect(out[3]).toBeLessThanOrEqual(1);
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('e-stops NaN, infinite and wrong-length actions with a reason', () => {
    expect(filterAction([0, NaN, 0, 1], [0.4, 0, 0.1], undefined).estop).toMatch(/action\[1\] is NaN/);
    expect(filterAction([0, 0, Infinity, 1], [0.4, 0, 0.1], undefined).estop).toMatch(/action\[2\] is Infinity/);
    expect(filterAction([0, 0, 1], [0.4, 0, 0.1], undefined).estop).toMatch(/action has 3 numbers; expected 4/);
    expect(filterAction('left', [0.4, 0, 0.1], undefined).estop).toMatch(/not an array/);
  });

  it('the contact guard stops downward and forward motion only', () => {
    const r = filterAction([0.01, 0.01, -0.01, 1], [0.4, 0, 0.1], { down: true, forward: true });
    expect(r.action).toEqual([0, 0.01, 0, 1]);
    expect(r.interventions).toEqual(['contact']);
    expect(filterAction([0, 0, 0.01, 1], [0.4, 0, 0.1], { down: true }).action).toEqual([0, 0, 0.01, 1]);
    expect(filterAction([0, 0, -0.01, 1], [0.4, 0, 0.1], { down: true }, { contactGuard: false }).action).toEqual([0, 0, -0.01, 1]);
  });

  it('7-D actions keep their rotations and clip the gripper', () => {
    const r = filterAction([0, 0, 0, 0.1, 0.2, 0.3, 1.7], [0.4, 0, 0.1], undefined);
    expect(r.action).toEqual([0, 0, 0, 0.1, 0.2, 0.3, 1]);
    expect(r.interventions).toEqual(['gripper']);
  });
});

describe('safety filter in the built-in world', () => {
  it('10,000 random and adversarial actions never take the end-effector out of bounds', async () => {
    const env = new SafetyFilter(new TabletopEnv({ images: false, controlHz: 25, maxSteps: 10_000 }), { maxStep: 0.03 });
    const rng = new Rng(99);
    const adversarial = [
      () => [1e9, -1e9, -1e9, 5],
      () => [0, 0, -1, 0],
      () => [1, 0, 0, 1],
      () => [-1, 1, 1, -3],
      () => [NaN, 0, 0, 1],
      () => [0, 0, Infinity, 0],
      () => [0, 0, 0],
      () => [0.02, 0.02, -0.02, 0, 0, 0, 1],
      () => [Number.MAX_VALUE, Number.MIN_VALUE, -Number.MAX_VALUE, 0.5],
    ];
    let obs = (await env.reset(1, { family: 'place' })).observation;
    let resets = 0;
    for (let i = 0; i < 10_000; i++) {
      const a = rng.next() < 0.3 ? rng.pick(adversarial)() : [rng.uniform(-0.2, 0.2), rng.uniform(-0.2, 0.2), rng.uniform(-0.2, 0.2), rng.uniform(-1, 2)];
      const r = await env.step(a);
      if (r.info.estop) {
        expect(r.done).toBe(true);
        obs = (await env.reset(100 + resets++, { family: 'place' })).observation;
        continue;
      }
      obs = r.observation;
      expect(inBounds(obs.state as number[]), `step ${i}: ${JSON.stringify(obs.state)} after ${JSON.stringify(a)}`).toBe(true);
      if (r.done) obs = (await env.reset(100 + resets++, { family: 'place' })).observation;
    }
    expect(env.counts.estops).toBeGreaterThan(100);
    expect(env.counts.boundClips + env.counts.stepClips).toBeGreaterThan(1000);
    await env.close();
  });
});

describe('safety with an action layout', () => {
  it('7-D: translation limited, rotations untouched, the gripper clipped; a wrong length is an e-stop', async () => {
    const { filterAction } = await import('../../src/lib/env/safety.js');
    const { parseLayout } = await import('../../src/lib/actions/index.js');
    const layout = parseLayout('xyz-rpy-g');
    const r = filterAction([0.06, 0, 0, 0.5, -0.2, 0.1, 1.5], undefined, undefined, { maxStep: 0.03, layout });
    expect(r.action!.map((v) => +v.toFixed(9))).toEqual([0.03, 0, 0, 0.5, -0.2, 0.1, 1]);
    expect(r.interventions).toEqual(['step', 'gripper']);
    expect(filterAction([0, 0, 0, 1], undefined, undefined, { layout }).estop).toMatch(/action has 4 numbers; the action layout has 7/);
    // a layout with the gripper first and translation after it
    const other = parseLayout('{"dims": 5, "translation": [1, 2, 3], "rotation": [], "gripper": 0}');
    expect(filterAction([2, 0.06, 0, 0, 0.5], undefined, undefined, { maxStep: 0.03, layout: other }).action!.map((v) => +v.toFixed(9))).toEqual([1, 0.03, 0, 0, 0.5]);
  });
});
