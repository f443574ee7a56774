import { readFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { DaggerPolicy, DartPolicy, SafetyFilter, ScriptedPolicy, TabletopEnv, report, runEpisodes, wilson } from '../../src/lib/env/index.js';
import type { Policy, PolicyStep } from '../../src/lib/env/rollout.js';
import { shortFloat32 } from '../../src/lib/io/json.js';
import { decodeJsonl, encodeJsonl, groupEpisodes, openRlds, parseStepRecord, readRlds, writeRlds, type StepRecord } from '../../src/lib/io/index.js';
import { collect, tempDir } from '../helpers.js';

const BIN = path.resolve('bin/run.js');
const dir = tempDir();

describe('wilson', () => {
  it('matches hand-computed 95% intervals', () => {
    const [lo, hi] = wilson(8, 10);
    expect(lo).toBeCloseTo(0.4902, 4);
    expect(hi).toBeCloseTo(0.9433, 4);
    const [lo0, hi0] = wilson(0, 10);
    expect(lo0).toBe(0);
    expect(hi0).toBeCloseTo(0.2775, 4);
    expect(wilson(20, 20)[0]).toBeCloseTo(0.8389, 4);
  });
});

describe('runEpisodes with the scripted expert', () => {
  it('with masks: every object pixel mask rides in the oracle and survives RLDS whatever its run counts', async () => {
    const env = new SafetyFilter(new TabletopEnv({ width: 32, height: 32, masks: true }));
    const eps = await collect(runEpisodes({ env, policy: new ScriptedPolicy(), families: ['pick', 'place'], episodes: 3, seed: 2 }));
    const masks = (r: StepRecord) => (r.oracle as { masks: { width: number; objects: { id: string; runs: number[] }[] } }).masks;
    expect(masks(eps[0].records[0])).toMatchObject({ camera: 'image_0', width: 32, height: 32 });
    expect(masks(eps[0].records[0]).objects.length).toBeGreaterThan(1);
    const out = path.join(dir, 'masks', '1.0.0');
    await writeRlds((async function* () { for (const e of eps) yield e.records; })(), { dir: out });
    const back = await collect(readRlds(openRlds(out)));
    expect(back.map((r) => masks(r))).toEqual(eps.flatMap((e) => e.records).map((r) => masks(r)));
  });

  it('records every step with RLDS fields, the oracle and episode facts; the report matches the episodes', async () => {
    const env = new SafetyFilter(new TabletopEnv({ width: 32, height: 32 }));
    const eps = await collect(runEpisodes({ env, policy: new ScriptedPolicy(), families: ['pick', 'place'], episodes: 4, seed: 5 }));
    expect(eps.map((e) => e.family)).toEqual(['pick', 'place', 'pick', 'place']);
    for (const ep of eps) {
      const r = ep.records;
      expect(r[0]).toMatchObject({ episode_id: `5-${ep.index}`, step: 0, is_first: true, is_last: false });
      const lastGrip = (r[r.length - 2].action as number[])[3];
      expect(r[r.length - 1]).toMatchObject({ is_last: true, is_terminal: ep.success, action: [0, 0, 0, lastGrip] });
      expect(r.every((s, t) => s.step === t && s.language_instruction === ep.instruction)).toBe(true);
      expect(r[0].observation).toMatchObject({ image_0: { mime: 'image/png' }, state: expect.any(Array) });
      expect((r[0].oracle as { subtask: { kind: string } }).subtask.kind).toBe('reach');
      expect(r[0].episode_metadata).toMatchObject({ family: ep.family, success: ep.success, env: 'builtin:tabletop', policy: 'scripted' });
      expect(r.filter((s) => s.reward === 1).length).toBe(ep.success ? 1 : 0);
      // state follows the actions exactly (kinematic end-effector)
      for (let t = 0; t + 1 < r.length; t++) {
        const a = r[t].action as number[];
        const s0 = (r[t].observation as { state: number[] }).state;
        const s1 = (r[t + 1].observation as { state: number[] }).state;
        for (let k = 0; k < 3; k++) expect(s1[k]).toBeCloseTo(s0[k] + a[k], 5);
      }
    }
    const rows = report(eps.map((e) => ({ family: e.family, success: e.success, end: e.end, steps: e.records.length - 1 })));
    expect(rows.map((r) => [r.family, r.episodes, r.successes])).toEqual([
      ['pick', 2, eps.filter((e) => e.family === 'pick' && e.success).length],
      ['place', 2, eps.filter((e) => e.family === 'place' && e.success).length],
    ]);

    // the records survive RLDS -> JSONL -> RLDS, the oracle's lists included (stored as JSON text)
    const out = path.join(dir, 'demos', '1.0.0');
    await writeRlds((async function* () { for (const e of eps) yield e.records; })(), { dir: out });
    const back = await collect(readRlds(openRlds(out)));
    const orig = eps.flatMap((e) => e.records).map((s) => JSON.parse(JSON.stringify(s)));
    const norm = (s: StepRecord) => JSON.parse(JSON.stringify({ ...s, episode_id: 0 }));
    expect(back.map(norm)).toEqual(orig.map(norm));
    const text = (await collect(encodeJsonl(back))).join('');
    const again = path.join(dir, 'again', '1.0.0');
    await writeRlds(groupEpisodes((async function* () { for await (const l of decodeJsonl([Buffer.from(text)])) yield { record: parseStepRecord(l.value) }; })()), { dir: again, features: openRlds(out).features });
    expect((await collect(readRlds(openRlds(again)))).map(norm)).toEqual(orig.map(norm));
    await env.close();
  });

  it('DART: executes the expert\'s move plus noise, records the expert\'s own action, and still succeeds', async () => {
    const env = new SafetyFilter(new TabletopEnv({ width: 32, height: 32 }));
    // the noise-free expert reads the same world at every step: its action is the label DART must record
    const dart = new DartPolicy({ dart: 0.002 });
    const ref = new ScriptedPolicy();
    const log: { clean: number[]; out: PolicyStep }[] = [];
    const probe: Policy = {
      name: 'scripted',
      reset: (ctx) => {
        ref.reset(ctx);
        dart.reset(ctx);
      },
      act: () => {
        const clean = ref.act();
        const out = dart.act();
        log.push({ clean, out });
        return out;
      },
    };
    const eps = await collect(runEpisodes({ env, policy: probe, families: ['pick'], episodes: 4, seed: 3 }));
    const recorded = eps.flatMap((e) => e.records.slice(0, -1).map((r) => r.action as number[]));
    expect(recorded).toEqual(log.map((l) => l.clean.map((v) => shortFloat32(Math.fround(v)))));
    // what was executed is not the label: translations moved by the noise, the gripper command kept
    const moved = log.filter((l) => Math.hypot(l.out.action[0] - l.clean[0], l.out.action[1] - l.clean[1], l.out.action[2] - l.clean[2]) > 1e-5);
    expect(moved.length).toBeGreaterThan(log.length / 2);
    expect(log.every((l) => l.out.action[3] === l.clean[3])).toBe(true);
    // the states follow the executed moves, not the labels (the end-effector is kinematic)
    const r = eps[0].records;
    const s = (t: number) => (r[t].observation as { state: number[] }).state;
    expect(Math.hypot(...[0, 1, 2].map((k) => s(1)[k] - s(0)[k] - log[0].out.action[k]))).toBeLessThan(1e-4);
    expect(eps.filter((e) => e.success).length).toBeGreaterThanOrEqual(3);
    // each step also says where the expert was heading from the state it was in (relabel --waypoints' target)
    const targets = eps.flatMap((e) => e.records.slice(0, -1).map((x) => (x.policy as { dart: { target: number[] } }).dart.target));
    expect(targets.length).toBe(log.length);
    expect(targets.every((t) => t.length === 3 && t.every(Number.isFinite))).toBe(true);
    // on a straight move the label points at the target: a step of at most 1.5 cm along the way to it
    const along = eps[0].records.slice(0, 3).map((x) => {
      const t = (x.policy as { dart: { target: number[] } }).dart.target;
      const st = (x.observation as { state: number[] }).state;
      const a = x.action as number[];
      const d = [0, 1, 2].map((k) => t[k] - st[k]);
      return (d[0] * a[0] + d[1] * a[1] + d[2] * a[2]) / (Math.hypot(...d) * Math.hypot(a[0], a[1], a[2]));
    });
    expect(Math.min(...along)).toBeGreaterThan(0.99);
    await env.close();
  });

  it('DAgger: the policy\'s moves are executed and the expert\'s action for each visited state recorded; with beta 1 it is the expert\'s own demonstration', async () => {
    const env = new SafetyFilter(new TabletopEnv({ width: 32, height: 32 }));
    // a "learned" policy that always drifts to +y with the gripper open: it never reaches its item
    const drift: Policy = { name: 'drift', reset: () => {}, act: () => ({ action: [0, 0.01, 0, 1], info: { text: 'drift' } }) };
    const ref = new ScriptedPolicy();
    const labels: number[][] = [];
    const dagger = new DaggerPolicy(drift, 0);
    const probe: Policy = {
      name: 'probe',
      reset: async (ctx) => {
        ref.reset(ctx);
        await dagger.reset(ctx);
      },
      act: async (obs, ctx) => {
        labels.push(ref.act()); // the expert, asked at the same state before DAgger steps
        return dagger.act(obs, ctx);
      },
    };
    const eps = await collect(runEpisodes({ env, policy: probe, families: ['pick'], episodes: 2, seed: 4 }));
    const recs = eps.flatMap((e) => e.records.slice(0, -1));
    expect(recs.map((r) => r.action)).toEqual(labels.map((a) => a.map((v) => shortFloat32(Math.fround(v)))));
    expect(recs.every((r) => (r.policy as { dagger: { executed: string; action: number[] }; text: string }).dagger.executed === 'policy')).toBe(true);
    expect((recs[0].policy as { text: string }).text).toBe('drift');
    // each record also holds where the expert was heading from that state; its label is the step toward it
    const target = (r: StepRecord) => (r.policy as { dagger: { target: number[] } }).dagger.target;
    for (const r of recs.filter((x) => (x.action as number[])[3] === 1).slice(0, 5)) {
      const s = (r.observation as { state: number[] }).state;
      const d = [0, 1, 2].map((k) => target(r)[k] - s[k]);
      const n = Math.hypot(...d);
      [0, 1, 2].forEach((k) => expect((r.action as number[])[k]).toBeCloseTo((d[k] * Math.min(n, 0.015)) / n, 4));
    }
    // the states follow the policy's drift (+1 cm of y a step, up to the workspace bound), not the labels
    const y = (r: StepRecord) => (r.observation as { state: number[] }).state[1];
    expect(y(eps[0].records[1]) - y(eps[0].records[0])).toBeCloseTo(0.01, 4);
    expect(eps.some((e) => e.success)).toBe(false);
    // beta 1: the expert drives every step, so the records are the expert's own rollout, step for step
    const expertEps = await collect(runEpisodes({ env, policy: new ScriptedPolicy(), families: ['pick'], episodes: 2, seed: 4 }));
    const led = await collect(runEpisodes({ env, policy: new DaggerPolicy(drift, 1), families: ['pick'], episodes: 2, seed: 4 }));
    const strip = (es: typeof led) => es.flatMap((e) => e.records.map((r) => ({ action: r.action, state: (r.observation as { state: number[] }).state })));
    expect(strip(led)).toEqual(strip(expertEps));
    expect(led.every((e) => e.success)).toBe(true);
    await env.close();
  });

  it('the scripted policy refuses an env it cannot see into', async () => {
    const fake = { name: 'exec:sim', reset: async () => ({ observation: {}, instruction: 'x' }), step: async () => ({ observation: {}, reward: 0, done: true, info: {} }), close: async () => {} };
    await expect(collect(runEpisodes({ env: fake, policy: new ScriptedPolicy(), families: ['pick'], episodes: 1, seed: 0 }))).rejects.toThrow(
      /E_USAGE: the scripted policy reads the simulator's state, so it runs only in builtin:tabletop, not in exec:sim/,
    );
  });
});

describe('vlakit rollout', () => {
  it('writes demonstrations as JSONL, prints the report per task, and is reproducible', async () => {
    const run = (file: string) => execa('node', [BIN, 'rollout', '--tasks', 'pick,near', '--episodes', '4', '--seed', '3', '--width', '32', '--height', '32', '-o', file], { reject: false });
    const a = await run(path.join(dir, 'a.jsonl'));
    expect(a.exitCode).toBe(0);
    expect(a.stderr).toMatch(/task\s+episodes\s+success\s+95% CI \(Wilson\)/);
    expect(a.stderr).toMatch(/pick\s+2\s+100\.0%\s+\[34\.2, 100\.0\]/);
    expect(a.stderr).toMatch(/wrote 4 episodes, \d+ steps as jsonl/);
    await run(path.join(dir, 'b.jsonl'));
    expect(readFileSync(path.join(dir, 'a.jsonl'))).toEqual(readFileSync(path.join(dir, 'b.jsonl')));
    const lines = readFileSync(path.join(dir, 'a.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(new Set(lines.map((l) => l.episode_id)).size).toBe(4);
  });

  it('bad flags are usage errors', async () => {
    const r = await execa('node', [BIN, 'rollout', '--tasks', 'juggle', '-o', path.join(dir, 'x.jsonl')], { reject: false });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/unknown task family "juggle"; expected some of pick, place, near, place_then_lift/);
    const e = await execa('node', [BIN, 'rollout', '--env', 'tcp://robot', '-o', path.join(dir, 'x.jsonl')], { reject: false });
    expect(e.exitCode).toBe(2);
    expect(e.stderr).toMatch(/unknown env "tcp:\/\/robot"/);
    const d = await execa('node', [BIN, 'rollout', '--policy', 'ws://localhost:1', '--dart', '0.003', '-o', path.join(dir, 'x.jsonl')], { reject: false });
    expect(d.exitCode).toBe(2);
    expect(d.stderr).toMatch(/--dart.*--policy scripted/);
    const g = await execa('node', [BIN, 'rollout', '--dagger', '-o', path.join(dir, 'x.jsonl')], { reject: false });
    expect(g.exitCode).toBe(2);
    expect(g.stderr).toMatch(/--dagger applies only with a learned --policy in builtin:tabletop/);
    const b = await execa('node', [BIN, 'rollout', '--policy', 'ws://localhost:1', '--dagger-beta', '0.5', '-o', path.join(dir, 'x.jsonl')], { reject: false });
    expect(b.exitCode).toBe(2);
    expect(b.stderr).toMatch(/--dagger-beta applies only with --dagger/);
  });
});
