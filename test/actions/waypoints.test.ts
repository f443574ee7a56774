/** Waypoint targets (relabel --waypoints) and the steps rollout takes toward them. */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { NAMED_LAYOUTS, executedLayout, releaseLead, waypointDeltas, waypointLayout, waypointTargets } from '../../src/lib/actions/index.js';

const XYZG = NAMED_LAYOUTS['xyz-g'];
const BIN = path.resolve('bin/run.js');

/** An expert that goes over (0.1, 0) at 0.1 m, down to 0.02 m, closes, then lifts: states and actions step by step. */
function episode(): { state: number[]; action: number[] }[] {
  const out: { state: number[]; action: number[] }[] = [];
  let p = [0, 0, 0.1];
  const go = (to: number[], g: number) => {
    for (;;) {
      const d = to.map((v, k) => v - p[k]);
      const n = Math.hypot(...d);
      if (n < 1e-9) return;
      const k = n > 0.03 ? 0.03 / n : 1;
      const a = [...d.map((v) => v * k), g];
      out.push({ state: [...p, g], action: a });
      p = p.map((v, i) => v + a[i]);
    }
  };
  go([0.1, 0, 0.1], 1); // 4 steps: 0.03, 0.03, 0.03, 0.01
  go([0.1, 0, 0.02], 1); // 3 steps
  out.push({ state: [...p, 1], action: [0, 0, 0, 0] }); // close
  go([0.1, 0, 0.08], 0);
  return out;
}

describe('waypoint targets', () => {
  it('each step targets the end of its straight run; the gripper command and a still step are their own runs', () => {
    const ep = episode();
    const t = waypointTargets(ep, XYZG);
    const near = (a: number[], b: number[]) => a.forEach((v, k) => expect(v).toBeCloseTo(b[k], 12));
    for (let i = 0; i < 4; i++) near(t[i], [0.1, 0, 0.1, 1]); // over the object
    for (let i = 4; i < 7; i++) near(t[i], [0.1, 0, 0.02, 1]); // down to it
    near(t[7], [0.1, 0, 0.02, 0]); // close where the hand is
    for (let i = 8; i < t.length; i++) near(t[i], [0.1, 0, 0.08, 0]); // lift
    expect(() => waypointTargets(ep, NAMED_LAYOUTS['xyz-rpy-g'])).toThrow(/no rotation/);
  });

  it('--release-lead: closed steps just before an opening take the open command; closing and far steps are left alone', () => {
    // open (reach), close (grasp), closed carry of 4 steps, open (release), closed again, open at the last step
    const g = [1, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0, 1];
    const acts = g.map((v, i) => [i / 100, 0, 0.1, v]);
    const grip = (a: number[][]) => a.map((x) => x[3]);
    expect(grip(releaseLead(acts, 3, 0))).toEqual(g);
    expect(grip(releaseLead(acts, 3, 1))).toEqual([1, 1, 0, 0, 0, 0, 1, 1, 1, 0, 1, 1]);
    expect(grip(releaseLead(acts, 3, 2))).toEqual([1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1]);
    // a lead longer than a closed stretch opens all of it
    expect(grip(releaseLead(acts, 3, 9))).toEqual(Array(12).fill(1));
    // positions are untouched, the input is not changed, a continuous opening keeps its value
    const cont = releaseLead([[0, 0, 0, 0.2], [1, 1, 1, 0.8]], 3, 1);
    expect(cont).toEqual([[0, 0, 0, 0.8], [1, 1, 1, 0.8]]);
    expect(acts[6][3]).toBe(0);
  });

  it('rollout steps toward a target: at most max_step, the last one lands on it; chunks continue from the previous target', () => {
    const L = waypointLayout(XYZG, 0.015);
    const [a] = waypointDeltas([[0.13, 0.04, 0.1, 1]], L, [0.1, 0, 0.1, 1]);
    expect(Math.hypot(a[0], a[1], a[2])).toBeCloseTo(0.015, 12);
    expect(a[0] / a[1]).toBeCloseTo(0.03 / 0.04, 12); // toward the target
    expect(a[3]).toBe(1);
    const two = waypointDeltas([[0.105, 0, 0.1, 0], [0.105, 0, 0.09, 0]], L, [0.1, 0, 0.1, 1]);
    expect(two[0].map((v) => +v.toFixed(12))).toEqual([0.005, 0, 0, 0]);
    expect(two[1].map((v) => +v.toFixed(12))).toEqual([0, 0, -0.01, 0]);
    expect(executedLayout(L)).toEqual(XYZG);
    expect(executedLayout(XYZG)).toBe(XYZG);
  });

  it('relabel --waypoints writes targets and an absolute layout with max_step; bad uses are clear errors', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'vlakit-wp-'));
    const ep = episode();
    const steps = path.join(dir, 'steps.jsonl');
    const stepRecord = (i: number) => ({ episode_id: 'e', step: i, is_first: i === 0, is_last: i === ep.length - 1, is_terminal: i === ep.length - 1, language_instruction: 'pick the block up', observation: { state: ep[i].state }, action: ep[i].action });
    // the final observation with a no-op, as rollout records it: no label is made from it
    const final = { ...stepRecord(ep.length - 1), step: ep.length, observation: { state: [0.1, 0, 0.08, 0] }, action: [0, 0, 0, 0] };
    writeFileSync(steps, [...ep.map((_, i) => JSON.stringify({ ...stepRecord(i), is_last: false, is_terminal: false })), JSON.stringify(final)].join('\n') + '\n');
    // the shipped base's tokenizer with four reserved tokens <unused0>..<unused3> added (the bins), as tokenizer files mark unused ones
    const tok = JSON.parse(readFileSync('models/ground-base/tokenizer.json', 'utf8'));
    const size = Object.keys(tok.model.vocab).length;
    tok.added_tokens.push(...[0, 1, 2, 3].map((i) => ({ id: size + i, content: `<unused${i}>`, single_word: false, lstrip: false, rstrip: false, normalized: false, special: false })));
    writeFileSync(path.join(dir, 'tok.json'), JSON.stringify(tok));
    const chunks = path.join(dir, 'chunks.jsonl');
    const c = await execa('node', [BIN, 'chunk', steps, '--mode', 'fixed', '--horizon', '1', '-o', chunks], { reject: false });
    expect(c.exitCode, c.stderr).toBe(0);
    const chunkLines = readFileSync(chunks, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const out = path.join(dir, 'ex.jsonl');
    const r = await execa('node', [BIN, 'relabel', chunks, '--no-reasoning', '--compact-prompt', '--state', '--units', 'cm', '--precision', '1', '--waypoints', '--waypoint-step', '0.02', '-o', out], { reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
    const ex = readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(ex.map((e) => e.messages[1].content[0].text)).toEqual([...Array(4).fill('[[10.0, 0.0, 10.0, 1]]'), ...Array(3).fill('[[10.0, 0.0, 2.0, 1]]'), '[[10.0, 0.0, 2.0, 0]]', ...Array(ep.length - 8).fill('[[10.0, 0.0, 8.0, 0]]')]);
    expect(ex[0].meta.codec.layout).toMatchObject({ mode: 'absolute', max_step: 0.02, translation: [0, 1, 2], gripper: 3 });
    expect(ex[1].messages[0].content.at(-1).text).toBe('Task: pick the block up\nRobot state: [3.0, 0.0, 10.0, 1.00]');
    // --release-lead: this episode closes and never opens again, so nothing changes; an opening after the lift does
    const lead = await execa('node', [BIN, 'relabel', chunks, '--no-reasoning', '--compact-prompt', '--state', '--units', 'cm', '--precision', '1', '--waypoints', '--waypoint-step', '0.02', '--release-lead', '2', '-o', path.join(dir, 'lead.jsonl')], { reject: false });
    expect(lead.exitCode, lead.stderr).toBe(0);
    expect(readFileSync(path.join(dir, 'lead.jsonl'), 'utf8')).toBe(readFileSync(out, 'utf8'));
    const opens = path.join(dir, 'opens.jsonl');
    writeFileSync(opens, chunkLines.map((l, i) => JSON.stringify(i === chunkLines.length - 2 ? { ...l, actions: [[0, 0, 0, 1]] } : l)).join('\n') + '\n');
    const lo = await execa('node', [BIN, 'relabel', opens, '--no-reasoning', '--compact-prompt', '--state', '--units', 'cm', '--precision', '1', '--waypoints', '--waypoint-step', '0.02', '--release-lead', '1', '-o', path.join(dir, 'lo.jsonl')], { reject: false });
    expect(lo.exitCode, lo.stderr).toBe(0);
    const grips = readFileSync(path.join(dir, 'lo.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).messages[1].content[0].text.match(/, (\d)\]\]$/)[1]);
    expect(grips.slice(-4)).toEqual(['1', '0', '1', '1']); // the close kept, the lift step before the opening opens
    const noWp = await execa('node', [BIN, 'relabel', chunks, '--release-lead', '2', '-o', path.join(dir, 'nw.jsonl')], { reject: false });
    expect(noWp.exitCode).toBe(2);
    expect(noWp.stderr).toMatch(/--release-lead applies only with --waypoints/);

    // DAgger steps carry the expert's own target (rollout --dagger: policy.dagger.target); chunk keeps it, relabel uses it
    const dsteps = path.join(dir, 'dagger-steps.jsonl');
    writeFileSync(dsteps, ep.map((_, i) => JSON.stringify({ ...stepRecord(i), policy: { dagger: { executed: 'policy', action: [0, 0, 0, 1], target: [0.07, -0.05, 0.03 + i / 100] } } })).join('\n') + '\n');
    const dchunks = path.join(dir, 'dagger-chunks.jsonl');
    expect((await execa('node', [BIN, 'chunk', dsteps, '--mode', 'fixed', '--horizon', '1', '-o', dchunks], { reject: false })).exitCode).toBe(0);
    expect(JSON.parse(readFileSync(dchunks, 'utf8').split('\n')[2]).expert_target).toEqual([0.07, -0.05, 0.05]);
    // so do DART steps (rollout --dart: policy.dart.target)
    const tsteps = path.join(dir, 'dart-steps.jsonl');
    writeFileSync(tsteps, ep.map((_, i) => JSON.stringify({ ...stepRecord(i), policy: { dart: { target: [0.06, 0.01, 0.02 + i / 100] } } })).join('\n') + '\n');
    const tchunks = path.join(dir, 'dart-chunks.jsonl');
    expect((await execa('node', [BIN, 'chunk', tsteps, '--mode', 'fixed', '--horizon', '1', '-o', tchunks], { reject: false })).exitCode).toBe(0);
    expect(JSON.parse(readFileSync(tchunks, 'utf8').split('\n')[3]).expert_target).toEqual([0.06, 0.01, 0.05]);
    const dout = path.join(dir, 'dagger-ex.jsonl');
    const d = await execa('node', [BIN, 'relabel', dchunks, '--no-reasoning', '--compact-prompt', '--state', '--units', 'cm', '--precision', '1', '--waypoints', '-o', dout], { reject: false });
    expect(d.exitCode, d.stderr).toBe(0);
    const dex = readFileSync(dout, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    // the expert's target with each step's own gripper command
    expect(dex.slice(6, 9).map((e) => e.messages[1].content[0].text)).toEqual(['[[7.0, -5.0, 9.0, 1]]', '[[7.0, -5.0, 10.0, 0]]', '[[7.0, -5.0, 11.0, 0]]']);

    // bins: the statistics (and so the bins' ranges) are of the targets, not of the recorded moves
    const st = await execa('node', [BIN, 'relabel', chunks, '--waypoints', '--stats-out', path.join(dir, 'st.json')], { reject: false });
    expect(st.exitCode, st.stderr).toBe(0);
    const dims = JSON.parse(readFileSync(path.join(dir, 'st.json'), 'utf8')).dims;
    expect(dims.map((d: { min: number; max: number }) => [+d.min.toFixed(6), +d.max.toFixed(6)])).toEqual([[0.1, 0.1], [0, 0], [0.02, 0.1], [0, 1]]);
    const bins = await execa('node', [BIN, 'relabel', chunks, '--no-reasoning', '--compact-prompt', '--state', '--actions', 'bins', '--bins', '4', '--tokenizer', path.join(dir, 'tok.json'), '--stats', path.join(dir, 'st.json'), '--waypoints', '--waypoint-step', '0.02', '-o', path.join(dir, 'b.jsonl')], { reject: false });
    expect(bins.exitCode, bins.stderr).toBe(0);
    const bex = readFileSync(path.join(dir, 'b.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    // z bins of [0.02, 0.1]: 10 cm is the top bin, 2 cm the bottom one, 8 cm the fourth; the state in plain digits (cm)
    expect(bex.map((e) => e.messages[1].content[0].text.match(/^(<unused\d>){2}(<unused\d>)/)[2])).toEqual([...Array(4).fill('<unused3>'), ...Array(4).fill('<unused0>'), ...Array(ep.length - 8).fill('<unused3>')]);
    expect(bex[1].messages[0].content.at(-1).text).toBe('Task: pick the block up\nRobot state: [3.0, 0.0, 10.0, 1.00]');
    expect(bex[0].meta.codec).toMatchObject({ codec: 'bins', state: true, layout: { mode: 'absolute', max_step: 0.02 } });
    const noState = path.join(dir, 'nostate.jsonl');
    writeFileSync(noState, chunkLines.map((l) => JSON.stringify({ ...l, observation: {} })).join('\n') + '\n');
    const ns = await execa('node', [BIN, 'relabel', noState, '--waypoints', '-o', path.join(dir, 'n.jsonl')], { reject: false });
    expect(ns.exitCode).toBe(1);
    expect(ns.stderr).toMatch(/--waypoints: episode e chunk 0 has no numeric observation.state/);
    const gap = path.join(dir, 'gap.jsonl');
    writeFileSync(gap, [0, 2, 3].map((i) => JSON.stringify(chunkLines[i])).join('\n') + '\n');
    const g = await execa('node', [BIN, 'relabel', gap, '--waypoints', '-o', path.join(dir, 'g.jsonl')], { reject: false });
    expect(g.exitCode).toBe(2);
    expect(g.stderr).toMatch(/needs every step of an episode in order/);
  }, 60_000);
});
