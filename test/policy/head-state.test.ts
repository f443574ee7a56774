/**
 * The robot state as the action head's input: relabel --state writes each action example's `state` (the chunk's
 * observation.state numbers), train-sft gives the head a state input from it, and generate and rollout feed it.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers.js';

const dir = tempDir('vlakit-head-state-');
const BIN = path.resolve('bin/run.js');
const vlakit = (...args: string[]) => execa('node', [BIN, ...args], { reject: false });
const file = (f: string) => path.join(dir, f);
const lines = (f: string) => readFileSync(f, 'utf8').trim().split('\n').map((l) => JSON.parse(l));

beforeAll(async () => {
  const steps: [string, string[]][] = [
    ['rollout', ['--policy', 'scripted', '--tasks', 'pick', '--episodes', '2', '--seed', '0', '--width', '32', '--height', '32', '--distractors', '0', '-o', file('demos.jsonl')]],
    ['chunk', [file('demos.jsonl'), '--mode', 'fixed', '--horizon', '4', '-o', file('chunks.jsonl')]],
    ['relabel', [file('chunks.jsonl'), '--no-reasoning', '--compact-prompt', '--state', '-o', file('examples.jsonl')]],
    ['relabel', [file('chunks.jsonl'), '--method', 'refinevla', '--state', '-o', file('refinevla.jsonl')]],
    ['relabel', [file('chunks.jsonl'), '--no-reasoning', '-o', file('plain.jsonl')]],
  ];
  for (const [cmd, args] of steps) {
    const r = await vlakit(cmd, ...args);
    expect(r.exitCode, `${cmd}: ${r.stderr}`).toBe(0);
  }
}, 120_000);

describe('relabel --state and the action head', () => {
  it('every action example carries its chunk\'s observation.state as numbers', () => {
    const chunks = lines(file('chunks.jsonl'));
    for (const f of ['examples.jsonl', 'refinevla.jsonl']) {
      const exs = lines(file(f));
      expect(exs).toHaveLength(chunks.length);
      exs.forEach((e, i) => {
        expect(e.state, e.id).toEqual(chunks[i].observation.state);
        expect(e.state).toHaveLength(4);
      });
    }
    // without --state, no state
    expect(lines(file('plain.jsonl')).some((e) => 'state' in e)).toBe(false);
  });

  it('train-sft --action-head takes the state; generate needs it and uses it; rollout feeds the observation\'s', async () => {
    const run = file('run');
    const t = await vlakit('train-sft', file('examples.jsonl'), '--preset', 'tiny', '--vocab-size', '128', '--steps', '2', '--batch-size', '4', '--action-head', 'flow', '--head-hidden', '16', '--head-layers', '1', '--inference-steps', '3', '--backend', 'cpu', '-o', run);
    expect(t.exitCode, t.stderr).toBe(0);
    const cfg = JSON.parse(readFileSync(path.join(run, 'action_head.json'), 'utf8'));
    expect(cfg.state_dim).toBe(4);
    // the statistics of the examples' states: the first state is the robot's start, x = 0.35
    const states = lines(file('examples.jsonl')).map((e) => e.state[0] as number);
    expect(cfg.state_norm.mean[0]).toBeCloseTo(states.reduce((a, b) => a + b, 0) / states.length, 9);

    const img = file('frame.png');
    const first = lines(file('examples.jsonl'))[0];
    const { writeFileSync } = await import('node:fs');
    writeFileSync(img, Buffer.from(first.images[0].b64, 'base64'));
    const gen = (...extra: string[]) => vlakit('generate', '--model', run, '--prompt', first.messages[0].content.at(-1).text, '--image', img, '--json', ...extra);
    const a = await gen('--state', JSON.stringify(first.state));
    expect(a.exitCode, a.stderr).toBe(0);
    const b = await gen('--state', '[0.5, 0.1, 0.05, 0]');
    expect(b.exitCode, b.stderr).toBe(0);
    // the same noise (seed 0), another state: another chunk
    expect(JSON.parse(a.stdout).chunk).not.toEqual(JSON.parse(b.stdout).chunk);
    const none = await gen();
    expect(none.exitCode).toBe(1);
    expect(none.stderr).toMatch(/takes a numeric state of 4 numbers/);
    const bad = await gen('--state', 'x');
    expect(bad.exitCode).toBe(2);

    const out = file('rollout.jsonl');
    const r = await vlakit('rollout', '--policy', run, '--mode', 'direct', '--prompt', 'compact', '--tasks', 'pick', '--episodes', '1', '--max-steps', '3', '--width', '32', '--height', '32', '-o', out);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(lines(out).some((s) => s.policy?.head)).toBe(true);
  }, 300_000);

  it('an example with a chunk but no state, beside ones with: the head gets no state input', async () => {
    const exs = lines(file('examples.jsonl'));
    delete exs[1].state;
    const f = file('mixed.jsonl');
    const { writeFileSync } = await import('node:fs');
    writeFileSync(f, exs.map((e) => JSON.stringify(e)).join('\n') + '\n');
    const run = file('run-mixed');
    const t = await vlakit('train-sft', f, '--preset', 'tiny', '--vocab-size', '128', '--steps', '1', '--batch-size', '2', '--action-head', 'flow', '--head-hidden', '16', '--head-layers', '1', '--backend', 'cpu', '-o', run);
    expect(t.exitCode, t.stderr).toBe(0);
    expect(JSON.parse(readFileSync(path.join(run, 'action_head.json'), 'utf8')).state_dim).toBe(0);
  }, 120_000);

  it('a head trained on waypoint targets (relabel --waypoints): rollout steps toward the sampled targets from the observed position', async () => {
    const ch = file('chunks1.jsonl');
    const c = await vlakit('chunk', file('demos.jsonl'), '--mode', 'fixed', '--horizon', '1', '-o', ch);
    expect(c.exitCode, c.stderr).toBe(0);
    const ex = file('waypoints.jsonl');
    const r0 = await vlakit('relabel', ch, '--no-reasoning', '--compact-prompt', '--state', '--waypoints', '--waypoint-step', '0.01', '-o', ex);
    expect(r0.exitCode, r0.stderr).toBe(0);
    const run = file('run-waypoints');
    const t = await vlakit('train-sft', ex, '--preset', 'tiny', '--vocab-size', '128', '--steps', '2', '--batch-size', '4', '--action-head', 'flow', '--head-hidden', '16', '--head-layers', '1', '--inference-steps', '2', '--backend', 'cpu', '-o', run);
    expect(t.exitCode, t.stderr).toBe(0);
    const out = file('rollout-waypoints.jsonl');
    const r = await vlakit('rollout', '--policy', run, '--mode', 'direct', '--prompt', 'compact', '--execute', '1', '--tasks', 'pick', '--episodes', '1', '--max-steps', '4', '--width', '32', '--height', '32', '-o', out);
    expect(r.exitCode, r.stderr).toBe(0);
    const steps = lines(out).filter((s) => s.policy?.head);
    expect(steps.length).toBeGreaterThan(1);
    for (const s of steps) {
      // the chunk holds the sampled targets (absolute positions); the env got a step of at most 1 cm toward the first
      const target = s.policy.chunk[0] as number[];
      const here = s.observation.state as number[];
      const d = [0, 1, 2].map((k) => target[k] - here[k]);
      const n = Math.hypot(...d);
      const want = d.map((v) => (n > 0.01 ? (v * 0.01) / n : v));
      want.forEach((v, k) => expect(s.action[k]).toBeCloseTo(v, 5));
      expect(s.action[3]).toBeCloseTo(Math.min(1, Math.max(0, target[3])), 6); // the gripper command as written (clipped to [0, 1])
    }
  }, 180_000);
});
