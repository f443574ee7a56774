/**
 * vlakit merge over parts written with --shard-size: a part that is several files (NAME-0000i-of-0000n) beside one
 * manifest (NAME.shard.json) is named by NAME or by its files, and merges as the unsplit part does.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { tempDir } from '../helpers.js';

vi.setConfig({ testTimeout: 180_000 });

const BIN = path.resolve('bin/run.js');
const dir = tempDir('vlakit-shard-size-');
const at = (...p: string[]) => path.join(dir, ...p);
const vlakit = (...args: string[]) => execa('node', [BIN, ...args], { cwd: dir, reject: false });
const filesOf = (name: string) => readdirSync(dir).filter((f) => f.startsWith(`${name}-`) && /-\d{5}-of-\d{5}$/.test(f)).sort();

beforeAll(async () => {
  const r = await vlakit('rollout', '--episodes', '6', '--tasks', 'pick,place', '--max-steps', '8', '--width', '32', '--height', '32', '--quiet', '-o', 'steps.jsonl');
  expect(r.exitCode).toBe(0);
  const runs = await Promise.all([
    vlakit('convert', 'steps.jsonl', '-o', 'whole.tfrecord', '--quiet'),
    ...[0, 1].map((i) => vlakit('convert', 'steps.jsonl', '--shard', `${i}/2`, '-o', `u${i}.tfrecord`, '--quiet')),
    ...[0, 1].map((i) => vlakit('convert', 'steps.jsonl', '--shard', `${i}/2`, '--shard-size', '4KB', '-o', `p${i}.tfrecord`, '--quiet')),
  ]);
  for (const x of runs) expect(x.exitCode).toBe(0);
}, 180_000);

describe('merge over --shard-size parts', () => {
  it('a part named by its output name: the same as the unsplit parts, and the same records as the unsharded output', async () => {
    expect(filesOf('p0.tfrecord').length).toBeGreaterThan(1);
    expect(filesOf('p1.tfrecord').length).toBeGreaterThan(1);
    const [split, unsplit] = await Promise.all([vlakit('merge', 'p1.tfrecord', 'p0.tfrecord', '-o', 'm.tfrecord', '--quiet'), vlakit('merge', 'u0.tfrecord', 'u1.tfrecord', '-o', 'mu.tfrecord', '--quiet')]);
    expect(split.stderr).toBe('');
    expect(split.exitCode).toBe(0);
    expect(unsplit.exitCode).toBe(0);
    expect(readFileSync(at('m.tfrecord')).equals(readFileSync(at('mu.tfrecord')))).toBe(true);
    const [a, b] = await Promise.all([vlakit('merge', 'p0.tfrecord', 'p1.tfrecord', '-o', 'm.jsonl', '--quiet'), vlakit('convert', 'whole.tfrecord', '-o', 'whole.jsonl', '--quiet')]);
    expect(a.exitCode).toBe(0);
    expect(b.exitCode).toBe(0);
    // TFRecord episodes are numbered by position; merge gives them back the input's ids (from the manifests)
    const rows = (f: string) => readFileSync(at(f), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { episode_id: string | number });
    const ids = [...new Set(rows('steps.jsonl').map((r) => r.episode_id))];
    const whole = rows('whole.jsonl').map((r) => ({ ...r, episode_id: ids[Number(r.episode_id)] }));
    expect(rows('m.jsonl')).toEqual(whole);
  });

  it('a part named by its files, in any order; a file left out stops the merge', async () => {
    const files = [...filesOf('p0.tfrecord'), ...filesOf('p1.tfrecord')].reverse();
    const r = await vlakit('merge', ...files, '-o', 'm2.tfrecord', '--quiet');
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    expect(readFileSync(at('m2.tfrecord')).equals(readFileSync(at('mu.tfrecord')))).toBe(true);
    const short = await vlakit('merge', ...filesOf('p0.tfrecord').slice(1), 'p1.tfrecord', '-o', 'm3.tfrecord');
    expect(short.exitCode).toBe(1);
    expect(short.stderr).toMatch(/E_SHARD .*part p0\.tfrecord was written as \d+ files .* file 00000 of them is not given/);
  });
});
