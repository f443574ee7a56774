/**
 * A 7-D RLDS dataset ([dx, dy, dz, droll, dpitch, dyaw, gripper], a continuous gripper) through the real binary:
 * annotate -> chunk -> relabel (every codec, non-default units/precision) -> train-sft (tiny) -> export -> rollout
 * against an exec: env that takes only 7-D actions. Checks: per-dimension sums of the chunked actions equal the
 * source's; every example and checkpoint/export carries the codec spec with the layout; the codec rebuilt from the
 * export decodes every action target back to the chunk's 7-D actions within the codec's resolution (the per-dimension
 * round-trip errors relabel --report prints); the env receives only 7-D actions. And one model trained long enough
 * to write its target: the env receives exactly the codec's decode of the text the rollout records.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { codecFromSpec } from '../../src/lib/actions/index.js';
import { tempDir } from '../helpers.js';
import { buildRlds, makeEpisode } from '../rlds-builder.js';

const BIN = path.resolve('bin/run.js');
const ENV7 = path.resolve('test/env/env7.mjs');
const dir = tempDir();
const at = (f: string) => path.join(dir, f);
const lines = (f: string) => readFileSync(at(f), 'utf8').trim().split('\n').map((l) => JSON.parse(l));

function vlakit(args: string[]) {
  return execa('node', [BIN, ...args], { reject: false, cwd: dir, env: { NO_COLOR: '1' } }).then((r) => ({ code: r.exitCode, out: r.stdout, err: r.stderr }));
}

// the source actions per episode (the builder's float32 values)
const source: number[][][] = [];

beforeAll(async () => {
  const eps = [];
  for (const seed of [1, 2, 3]) {
    const ep = await makeEpisode(seed, 8);
    // a continuous gripper: open, part-closed, closed
    ep.steps.forEach((s, t) => (s.action[6] = Math.fround(t < 3 ? 1 : t < 6 ? 0.35 : 0)));
    source.push(ep.steps.map((s) => s.action.map((v) => Math.fround(v))));
    eps.push(ep);
  }
  await buildRlds(at('ds/1.0.0'), { train: [eps] });
});

// resolution of each codec, per kind of dimension: translation (m), rotation (rad), gripper
const CODECS: { name: string; args: string[]; tol: [number, number, number] }[] = [
  { name: 'text', args: ['--actions', 'text', '--units', 'cm', '--precision', '1'], tol: [0.0005, 0.0005, 0.005] },
  { name: 'words', args: ['--actions', 'words', '--precision', '2'], tol: [0.00005, 0.0001, 0.005] },
  { name: 'tokens', args: ['--actions', 'tokens', '--units', 'cm', '--precision', '2'], tol: [0.00005, 0.00005, 0.005] },
  { name: 'bins', args: ['--actions', 'bins', '--bins', '64', '--stats', 'stats.json'], tol: [0.002, 0.002, 0.01] },
];

describe('7-D actions end to end', () => {
  it('annotate -> chunk keeps all 7 dimensions: per-dimension sums equal the source', async () => {
    expect((await vlakit(['annotate', 'ds/1.0.0', '--kind', 'plan', '-q', '-o', 'ann.jsonl'])).code).toBe(0);
    // foreign data: the kinematic teacher's plans say what it could not read
    expect(lines('ann.jsonl')[0].plan.unknown).toEqual(['wrist rotation: 3 action dimensions between translation and gripper are not read']);
    const r = await vlakit(['chunk', 'ann.jsonl', '--mode', 'merge', '-o', 'chunks.jsonl']);
    expect(r.code).toBe(0);
    const chunks = lines('chunks.jsonl');
    const byEp = new Map<string, number[][]>();
    for (const c of chunks) {
      expect(c.action_layout).toMatchObject({ dims: 7, translation: [0, 1, 2], rotation: [3, 4, 5], gripper: 6 });
      byEp.set(String(c.episode_id), [...(byEp.get(String(c.episode_id)) ?? []), ...c.actions]);
    }
    const merged = [...byEp.values()];
    expect(merged).toHaveLength(3);
    // the steps chunk read (annotate's JSONL: float32 values written shortest)
    const steps = lines('ann.jsonl');
    merged.forEach((acts, e) => {
      expect(acts.every((a) => a.length === 7)).toBe(true);
      const read = steps.filter((s) => String(s.episode_id) === [...byEp.keys()][e]).map((s) => s.action as number[]);
      expect(read).toHaveLength(8);
      for (let k = 0; k < 6; k++) {
        const sum = acts.reduce((s, a) => s + a[k], 0);
        expect(Math.abs(sum - read.reduce((s, a) => s + a[k], 0))).toBeLessThan(1e-12); // the same numbers, summed
        expect(Math.abs(sum - source[e].reduce((s, a) => s + a[k], 0))).toBeLessThan(1e-8); // float32 as written in JSON
      }
      // the continuous gripper is kept: its values, in order, at the change points
      expect([...new Set(acts.map((a) => a[6]))]).toEqual([1, 0.35, 0]); // float32 0.35, written shortest
    });
  }, 60_000);

  it('relabel (every codec) -> train-sft -> export -> rollout against a 7-D exec: env', async () => {
    expect((await vlakit(['relabel', 'chunks.jsonl', '--stats-out', 'stats.json', '-q'])).code).toBe(0);
    const chunks = lines('chunks.jsonl');
    for (const c of CODECS) {
      const rl = await vlakit(['relabel', 'chunks.jsonl', ...c.args, '--report', '-o', `ex-${c.name}.jsonl`]);
      expect(rl.code, rl.err).toBe(0);
      // the per-dimension round-trip report names the 7 dimensions
      expect(rl.err).toMatch(new RegExp(`round trip of \\d+ actions as ${c.name}, per dimension max \\|error\\|: dx [^,]+, dy [^,]+, dz [^,]+, droll [^,]+, dpitch [^,]+, dyaw [^,]+, gripper `));
      const examples = lines(`ex-${c.name}.jsonl`);
      const spec = examples[0].meta.codec;
      expect(spec).toMatchObject({ codec: c.name, layout: { dims: 7 } });
      expect(examples.every((e) => JSON.stringify(e.meta.codec) === JSON.stringify(spec))).toBe(true);

      const run = `run-${c.name}`;
      const tr = await vlakit(['train-sft', `ex-${c.name}.jsonl`, '--preset', 'tiny', '--vocab-size', '256', '--batch-size', '2', '--steps', '2', '-q', '-o', run]);
      expect(tr.code, tr.err).toBe(0);
      expect(JSON.parse(readFileSync(at(`${run}/config.json`), 'utf8')).vlakit.action_codec).toEqual(spec);
      const ex = await vlakit(['export', run, '-q', '-o', `exp-${c.name}`]);
      expect(ex.code, ex.err).toBe(0);
      const exported = JSON.parse(readFileSync(at(`exp-${c.name}/config.json`), 'utf8')).vlakit.action_codec;
      expect(exported).toEqual(spec);

      // the codec rebuilt from the export decodes every action target to its chunk's 7-D actions
      const codec = codecFromSpec(exported);
      const maxErr = new Array(7).fill(0);
      for (const e of examples.filter((x) => x.meta.stage === 'actions')) {
        const chunk = chunks.find((k) => String(k.episode_id) === String(e.meta.episode_id) && k.start_step === e.meta.steps[0]);
        const back = codec.decode(e.messages[1].content[0].text);
        expect(back).toHaveLength(chunk.actions.length);
        back.forEach((a, i) => a.forEach((v, k) => (maxErr[k] = Math.max(maxErr[k], Math.abs(v - chunk.actions[i][k])))));
      }
      maxErr.forEach((err, k) => expect(err, `${c.name} dimension ${k}`).toBeLessThanOrEqual(c.tol[k < 3 ? 0 : k < 6 ? 1 : 2]));

      // rollout: whatever the (barely trained) model writes, the env gets 7-D actions only
      const log = at(`actions-${c.name}.log`);
      const ro = await vlakit(['rollout', '--policy', `exp-${c.name}`, '--env', `exec:node ${ENV7} ${log} 2`, '--episodes', '1', '--mode', 'direct', '--max-new-tokens', '32', '-q', '-o', `roll-${c.name}.jsonl`]);
      expect(ro.code, ro.err).toBe(0);
      expect(existsSync(log)).toBe(true);
      const sent = readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as number[]);
      expect(sent).toHaveLength(2);
      expect(sent.every((a) => a.length === 7 && a.every(Number.isFinite))).toBe(true);
    }
  }, 300_000);

  it('rollout executes decoded model actions: a tiny model trained to one 7-D text target, the env gets its decode', async () => {
    // VLM2VLA-NR examples (task prompt -> actions), text codec in cm with 1 digit
    const rl = await vlakit(['relabel', 'chunks.jsonl', '--no-reasoning', '--actions', 'text', '--units', 'cm', '--precision', '1', '-q', '-o', 'ex-nr.jsonl']);
    expect(rl.code, rl.err).toBe(0);
    const examples = lines('ex-nr.jsonl');
    const codec = codecFromSpec(examples[0].meta.codec);
    // one target: a single action that moves and rotates, with the continuous gripper part-closed
    const target = examples.find((e) => {
      const a = codec.decode(e.messages[1].content[0].text);
      return a.length === 1 && a[0][6] === 0.35 && a[0].slice(3, 6).every((v) => v !== 0);
    });
    expect(target).toBeDefined();
    const text: string = target.messages[1].content[0].text;
    writeFileSync(at('one.jsonl'), `${JSON.stringify(target)}\n`);
    // memorised in 100 steps (about 7 s here; final loss ~0.02); the tokenizer covers every example's text
    const tr = await vlakit(['train-sft', 'one.jsonl', '--vocab-from', 'ex-nr.jsonl', '--preset', 'tiny', '--vocab-size', '128', '--batch-size', '1', '--steps', '100', '--lr', '1e-2', '--seed', '1', '-q', '-o', 'run-one']);
    expect(tr.code, tr.err).toBe(0);
    expect((await vlakit(['export', 'run-one', '-q', '-o', 'exp-one'])).code).toBe(0);
    const log = at('actions-one.log');
    const ro = await vlakit(['rollout', '--policy', 'exp-one', '--env', `exec:node ${ENV7} ${log} 2`, '--episodes', '1', '--mode', 'direct', '--prompt', 'task', '--temperature-actions', '0', '--max-new-tokens', '64', '-q', '-o', 'roll-one.jsonl']);
    expect(ro.code, ro.err).toBe(0);
    const records = lines('roll-one.jsonl').filter((r) => r.policy);
    const sent = readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as number[]);
    expect(sent).toHaveLength(2);
    records.forEach((r, i) => {
      // the model writes the trained target, and the env receives exactly its decode (as float32: the rollout loop
      // rounds every action, as RLDS stores them)
      expect(r.policy.text).toBe(text);
      expect(r.policy.noop).toBeUndefined();
      const decoded = codec.decode(r.policy.text);
      expect(sent[i]).toEqual(decoded[0].map(Math.fround));
    });
    // all 7 dimensions: centimetres back to metres, rotations in radians, the gripper continuous
    const [a] = codec.decode(text);
    const m = /^\[\[(.+)\]\]$/.exec(text)![1].split(', ').map(Number);
    expect(sent[0]).toEqual([m[0] / 100, m[1] / 100, m[2] / 100, m[3], m[4], m[5], m[6]].map(Math.fround));
    expect(a[6]).toBe(0.35);
  }, 120_000);
});
