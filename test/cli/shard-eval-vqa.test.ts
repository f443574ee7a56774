/**
 * eval-vqa --shard I/N: each part holds the model-question pairs whose place in the unsharded samples is I mod N;
 * vlakit merge joins the parts into the unsharded --log-samples output (timings aside).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { tempDir } from '../helpers.js';
import { type FakeServer, startFakeServer } from '../teacher/fake-server.js';

vi.setConfig({ testTimeout: 180_000 });

const BIN = path.resolve('bin/run.js');
const dir = tempDir('vlakit-shard-vqa-');
const at = (...p: string[]) => path.join(dir, ...p);
const vlakit = (...args: string[]) => execa('node', [BIN, ...args], { cwd: dir, reject: false });
let server: FakeServer;

beforeAll(async () => {
  server = await startFakeServer();
  const r = await vlakit('eval-vqa', '--generate', '7', '--seed', '3', '--width', '32', '--height', '32', '-o', 'q.jsonl', '--quiet');
  expect(r.exitCode).toBe(0);
}, 120_000);
afterAll(() => server.close());

/** The samples without their timings. */
const samples = (f: string) => readFileSync(at(f), 'utf8').trim().split('\n').map((l) => {
  const { ms: _ms, ...rest } = JSON.parse(l) as { ms: number };
  return rest;
});

describe('eval-vqa --shard', () => {
  it('the parts of 0/3 .. 2/3, merged, are the unsharded samples; each part holds its share', async () => {
    const models = `a=openai:m@${server.url},b=openai:m@${server.url}`;
    const base = ['eval-vqa', '--data', 'q.jsonl', '--models', models, '--no-cache', '--quiet'];
    const runs = await Promise.all([vlakit(...base, '--log-samples', 'whole.jsonl'), ...[0, 1, 2].map((i) => vlakit(...base, '--shard', `${i}/3`, '--log-samples', `s${i}.jsonl`))]);
    for (const r of runs) expect(r.stderr).toBe('');
    for (const r of runs) expect(r.exitCode).toBe(0);
    const whole = samples('whole.jsonl');
    expect(new Set(whole.map((s) => (s as { model: string }).model))).toEqual(new Set(['a', 'b']));
    const sizes = [0, 1, 2].map((i) => samples(`s${i}.jsonl`).length);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(whole.length);
    expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
    const manifest = JSON.parse(readFileSync(at('s1.jsonl.shard.json'), 'utf8'));
    expect(manifest).toMatchObject({ command: 'eval-vqa', shard: 1, of: 3, episodes: whole.length });
    const m = await vlakit('merge', 's2.jsonl', 's0.jsonl', 's1.jsonl', '-o', 'merged.jsonl', '--quiet');
    expect(m.stderr).toBe('');
    expect(m.exitCode).toBe(0);
    expect(samples('merged.jsonl')).toEqual(whole);
    const short = await vlakit('merge', 's0.jsonl', 's1.jsonl', '-o', 'short.jsonl');
    expect(short.exitCode).toBe(1);
    expect(short.stderr).toMatch(/E_SHARD.*no part is shard 2\/3/);
  });

  it('--shard needs --log-samples FILE', async () => {
    const r = await vlakit('eval-vqa', '--data', 'q.jsonl', '--models', `a=openai:m@${server.url}`, '--no-cache', '--shard', '0/2');
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/--shard needs --log-samples FILE/);
  });
});
