/**
 * --shard I/N and vlakit merge: for each command that reads a dataset, the parts of --shard 0/3 .. 2/3, merged,
 * are byte for byte the unsharded output; merge refuses parts that do not make one whole job.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { tempDir } from '../helpers.js';

// these tests run the CLI some 40 times; on a loaded machine each run takes seconds
vi.setConfig({ testTimeout: 180_000 });

const BIN = path.resolve('bin/run.js');
const dir = tempDir('vlakit-shard-');
const at = (...p: string[]) => path.join(dir, ...p);
const vlakit = (...args: string[]) => execa('node', [BIN, ...args], { cwd: dir, reject: false });
const ROLLOUT = ['rollout', '--episodes', '5', '--tasks', 'pick,place', '--max-steps', '8', '--width', '32', '--height', '32', '--distractors', '1', '--quiet'];
const SHARDS = [0, 1, 2];

/** Every file under a directory, relative path -> bytes. */
function tree(root: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.set(path.relative(root, p), readFileSync(p));
    }
  };
  walk(root);
  return out;
}

/** Runs `args` unsharded (-o name) and as 3 shards (-o name-I), merges the parts; returns [whole, merged] paths. */
async function shardAndMerge(args: string[], name: string, ext: string): Promise<[string, string]> {
  const whole = `${name}${ext}`;
  const parts = SHARDS.map((i) => `${name}-${i}${ext}`);
  const runs = await Promise.all([vlakit(...args, '-o', whole), ...SHARDS.map((i) => vlakit(...args, '--shard', `${i}/3`, '-o', parts[i]))]);
  for (const r of runs) expect(r.stderr).toBe('');
  for (const r of runs) expect(r.exitCode).toBe(0);
  for (const p of parts) expect(existsSync(at(`${p.replace(/\/$/, '')}.shard.json`))).toBe(true);
  // the parts in another order: their manifests say which is which
  const m = await vlakit('merge', parts[2], parts[0], parts[1], '-o', `${name}-merged${ext}`, '--quiet');
  expect(m.stderr).toBe('');
  expect(m.exitCode).toBe(0);
  return [at(whole), at(`${name}-merged${ext}`)];
}

beforeAll(async () => {
  const made = await Promise.all([vlakit(...ROLLOUT, '-o', 'steps.jsonl'), vlakit(...ROLLOUT, '-o', 'demo/1.0.0')]);
  for (const r of made) expect(r.exitCode).toBe(0);
  const c = await vlakit('chunk', 'steps.jsonl', '-o', 'chunks.jsonl', '--quiet');
  expect(c.exitCode).toBe(0);
}, 180_000);

describe('--shard I/N, merged, equals the unsharded output', () => {
  it('rollout, JSON Lines: shard I runs the episodes with index I mod 3, with the whole run\'s seeds', async () => {
    const [whole, merged] = await shardAndMerge(ROLLOUT, 'roll', '.jsonl');
    expect(readFileSync(merged).equals(readFileSync(whole))).toBe(true);
    const manifest = JSON.parse(readFileSync(at('roll-1.jsonl.shard.json'), 'utf8'));
    expect(manifest).toEqual({ vlakit_shard: 1, command: 'rollout', shard: 1, of: 3, episodes: 5, ids: ['0-1', '0-4'] });
    const ids = readFileSync(at('roll-1.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).episode_id);
    expect([...new Set(ids)]).toEqual(['0-1', '0-4']);
  }, 180_000);

  it('rollout, RLDS dataset directories: every file of the merged dataset equals the unsharded one\'s', async () => {
    const [whole, merged] = await shardAndMerge(ROLLOUT, 'rlds', '/demo/1.0.0');
    const a = tree(whole);
    const b = tree(merged);
    expect([...b.keys()].sort()).toEqual([...a.keys()].sort());
    for (const [k, v] of a) expect(b.get(k)!.equals(v), k).toBe(true);
  }, 180_000);

  it('convert: an RLDS dataset (each shard decodes only its own episodes) to JSON Lines', async () => {
    const [whole, merged] = await shardAndMerge(['convert', 'demo/1.0.0', '--quiet'], 'conv', '.jsonl');
    expect(readFileSync(merged).equals(readFileSync(whole))).toBe(true);
  }, 180_000);

  it('annotate (kinematic plans)', async () => {
    const [whole, merged] = await shardAndMerge(['annotate', 'steps.jsonl', '--kind', 'plan', '--teacher', 'kinematic', '--quiet'], 'ann', '.jsonl');
    expect(readFileSync(merged).equals(readFileSync(whole))).toBe(true);
  }, 180_000);

  it('chunk, from an RLDS dataset', async () => {
    const [whole, merged] = await shardAndMerge(['chunk', 'demo/1.0.0', '--mode', 'fixed', '--horizon', '2', '--quiet'], 'chk', '.jsonl');
    expect(readFileSync(merged).equals(readFileSync(whole))).toBe(true);
  }, 180_000);

  it('relabel', async () => {
    const [whole, merged] = await shardAndMerge(['relabel', 'chunks.jsonl', '--quiet'], 'rel', '.jsonl');
    const text = readFileSync(whole, 'utf8');
    expect(text.trim().split('\n').length).toBeGreaterThan(5);
    expect(readFileSync(merged, 'utf8')).toBe(text);
  }, 180_000);
});

describe('merge refuses parts that are not one whole job (each case: test/io/shard.test.ts)', () => {
  // the parts of the chunk test above
  it('a missing part: exit 1, names the shard, writes nothing', async () => {
    const r = await vlakit('merge', 'chk-0.jsonl', 'chk-2.jsonl', '-o', 'bad.jsonl');
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain('E_SHARD');
    expect(r.stderr).toContain('no part is shard 1/3');
    expect(existsSync(at('bad.jsonl'))).toBe(false);
  });

  it('the output exists: --overwrite rules as elsewhere; never over a part', async () => {
    writeFileSync(at('exists.jsonl'), 'x\n');
    const r = await vlakit('merge', 'chk-0.jsonl', 'chk-1.jsonl', 'chk-2.jsonl', '-o', 'exists.jsonl');
    expect(r.exitCode).toBe(2);
    expect(readFileSync(at('exists.jsonl'), 'utf8')).toBe('x\n');
    const o = await vlakit('merge', 'chk-0.jsonl', 'chk-1.jsonl', 'chk-2.jsonl', '-o', 'chk-0.jsonl', '--overwrite');
    expect(o.exitCode).toBe(2);
    const ok = await vlakit('merge', 'chk-0.jsonl', 'chk-1.jsonl', 'chk-2.jsonl', '-o', 'exists.jsonl', '--overwrite', '--quiet');
    expect(ok.exitCode).toBe(0);
  });

  // every form is checked by test/io/shard.test.ts; here, that the command refuses it before any work
  it('--shard 3/3 and a/3 are usage errors (exit 2) that name the flag', async () => {
    const bad = ['3/3', 'a/3'];
    const runs = await Promise.all(bad.map((s) => vlakit('chunk', 'steps.jsonl', `--shard=${s}`, '-o', 'never.jsonl')));
    for (const r of runs) {
      expect(r.exitCode).toBe(2);
      expect(r.stderr).toMatch(/--shard/);
    }
    expect(runs[0].stderr).toContain('must be below 3');
    expect(existsSync(at('never.jsonl'))).toBe(false);
  });
});
