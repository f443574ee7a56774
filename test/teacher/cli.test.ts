import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ScriptedPolicy, TabletopEnv, runEpisodes } from '../../src/lib/env/index.js';
import { encodeJsonl } from '../../src/lib/io/index.js';
import { collect, tempDir } from '../helpers.js';
import { type FakeServer, startFakeServer } from './fake-server.js';

const BIN = path.resolve('bin/run.js');
const dir = tempDir();
const demos = path.join(dir, 'demos.jsonl');
let server: FakeServer;

beforeAll(async () => {
  const env = new TabletopEnv({ width: 16, height: 16 });
  const eps = await collect(runEpisodes({ env, policy: new ScriptedPolicy(), families: ['pick', 'place', 'near'], episodes: 3, seed: 9 }));
  writeFileSync(demos, (await collect(encodeJsonl(eps.flatMap((e) => e.records)))).join(''));
  server = await startFakeServer({ latencyMs: 5 });
});
afterAll(() => server.close());

describe('vlakit annotate', () => {
  it('plans from the kinematic teacher, scored against the oracle', async () => {
    const out = path.join(dir, 'plans.jsonl');
    const r = await execa('node', [BIN, 'annotate', demos, '--kind', 'plan', '-o', out], { reject: false });
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toMatch(/against the oracle \(3 episodes\): boundary precision \d+\.\d%, recall \d+\.\d% \(within 2 steps\), label accuracy \d+\.\d%/);
    const lines = readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines[0].plan).toMatchObject({ index: 0, teacher: 'kinematic', prompt_version: 'plan-v1', error: '' });
    expect(lines[0].plan.description).toMatch(/^move to the /);
  });

  it('survives kill -9: the rerun asks nothing twice and writes what an uninterrupted run writes', async () => {
    const args = (cache: string, out: string) => [BIN, 'annotate', demos, '--kind', 'reasoning', '--teacher', 'openai:m', '--teacher-url', server.url, '--cache', cache, '--concurrency', '2', '-o', out, '--quiet'];
    let hold = false;
    let count = 0;
    let child: ReturnType<typeof execa> | undefined;
    server.seen.length = 0;
    server.onRequest = async () => {
      count += 1;
      if (count === 25 && child) {
        hold = true;
        await new Promise((r) => setTimeout(r, 400)); // answers sent before now are surely on disk
        child.kill('SIGKILL');
      }
      if (hold) await new Promise((r) => setTimeout(r, 3000)); // the connection is gone by then: never answered
    };
    const cache = path.join(dir, 'cache-killed');
    const out = path.join(dir, 'killed.jsonl');
    child = execa('node', args(cache, out), { reject: false });
    const killed = await child;
    expect(killed.signal).toBe('SIGKILL');
    const beforeKill = server.seen.filter((s) => s.answered).length;
    expect(beforeKill).toBeGreaterThanOrEqual(20);
    hold = false;
    server.onRequest = undefined;
    const rerun = await execa('node', args(cache, out), { reject: false });
    expect(rerun.exitCode).toBe(0);
    await new Promise((r) => setTimeout(r, 3100)); // let the held handlers finish (they answer nothing)
    const answered = new Map<string, number>();
    for (const s of server.seen) if (s.answered) answered.set(s.key, (answered.get(s.key) ?? 0) + 1);
    const dup = [...answered.entries()].filter(([, n]) => n > 1).map(([k]) => server.seen.map((s, i) => (s.key === k ? i : -1)).filter((i) => i >= 0));
    expect(dup).toEqual([]);

    const seenBefore = server.seen.length;
    const fresh = path.join(dir, 'fresh.jsonl');
    const clean = await execa('node', args(path.join(dir, 'cache-fresh'), fresh), { reject: false });
    expect(clean.exitCode).toBe(0);
    expect(readFileSync(out, 'utf8')).toBe(readFileSync(fresh, 'utf8'));
    // the uninterrupted run bought exactly the same distinct answers
    expect(new Set(server.seen.slice(seenBefore).map((s) => s.key))).toEqual(new Set(answered.keys()));
  });

  it('an unreachable teacher: every request fails after its retries, no MaxListenersExceededWarning', async () => {
    const port = await new Promise<number>((resolve) => {
      const srv = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (srv.address() as net.AddressInfo).port;
        srv.close(() => resolve(p));
      });
    });
    const r = await execa('node', [BIN, 'annotate', demos, '--kind', 'reasoning', '--teacher', 'openai:m', '--teacher-url', `http://127.0.0.1:${port}`, '--no-cache', '--retries', '1', '--concurrency', '16', '-o', path.join(dir, 'unreachable.jsonl')], { reject: false });
    const m = /; (\d+) requests, \d+ cache hits, \d+ retries, (\d+) failures, .* (\d+) annotation errors/.exec(r.stderr);
    expect(m).not.toBeNull();
    expect(Number(m![1])).toBeGreaterThan(10); // more waits on the command's signal than the default listener limit of 10
    expect(m![3]).toBe(m![2]); // every step failed and was counted
    expect(r.stderr).not.toMatch(/MaxListenersExceededWarning|memory leak/);
    expect(r.exitCode).toBe(3);
  });

  it('unusable answers end as counted annotation errors, exit 3', async () => {
    server.faults = Array(30).fill('garbage');
    const r = await execa('node', [BIN, 'annotate', demos, '--kind', 'plan', '--teacher', 'openai:m', '--teacher-url', server.url, '--no-cache', '--repair', '1', '--concurrency', '1', '-o', path.join(dir, 'bad.jsonl')], { reject: false });
    server.faults = [];
    expect(r.exitCode).toBe(3);
    expect(r.stderr).toMatch(/3 annotation errors/);
  });

  it('real service answers (issue 24): every job finishes, errors counted per reason, exit 3', async () => {
    const env = { ...process.env, GEMINI_API_KEY: 'g-test' };
    const base = ['annotate', demos, '--kind', 'plan', '--no-cache', '--concurrency', '1', '--frames', '2'];
    server.faults = ['blocked', 'safety'];
    const g = await execa('node', [BIN, ...base, '--teacher', 'gemini:models/gemini-2.5-flash', '--teacher-url', server.url, '--thinking-budget', '512', '-o', path.join(dir, 'g.jsonl')], { reject: false, env });
    expect(g.exitCode).toBe(3);
    expect(g.stderr).toMatch(/2 annotation errors \(blocked:SAFETY 1, refused:SAFETY 1\)/);
    expect(g.stderr).toMatch(/wrote 3 episodes/);
    server.faults = ['refusal', '400-images'];
    const o = await execa('node', [BIN, ...base, '--teacher', 'openai:m', '--teacher-url', server.url, '-o', path.join(dir, 'o.jsonl')], { reject: false });
    expect(o.exitCode).toBe(3);
    expect(o.stderr).toMatch(/2 annotation errors \((refused:refusal 1, rejected:400 1|rejected:400 1, refused:refusal 1)\)/);
    const lines = readFileSync(path.join(dir, 'o.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.filter((l) => l.plan.error === '').length).toBeGreaterThan(0);
    server.faults = [];
  });

  it('a daily quota stops annotate with a clear message, no output, and the answers so far kept for the rerun', async () => {
    const env = { ...process.env, GEMINI_API_KEY: 'g-test' };
    const cache = path.join(dir, 'cache-quota');
    const out = path.join(dir, 'quota.jsonl');
    const args = [BIN, 'annotate', demos, '--kind', 'plan', '--concurrency', '1', '--frames', '2', '--teacher', 'gemini:gemini-2.5-flash', '--teacher-url', server.url, '--cache', cache, '-o', out];
    server.seen.length = 0;
    server.faults = ['none', '429-daily'];
    const r = await execa('node', args, { reject: false, env });
    server.faults = [];
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/E_TEACHER_FATAL .*the job stopped: the daily quota is exhausted \(GenerateRequestsPerDayPerProjectPerModel-FreeTier\).*every answer received so far is in the cache \(.*answers\.jsonl\): the same command resumes/);
    expect(server.seen).toHaveLength(2);
    expect(existsSync(out)).toBe(false);
    const again = await execa('node', args, { reject: false, env });
    expect(again.exitCode).toBe(0);
    expect(again.stderr).toMatch(/; 2 requests, 1 cache hits/);
  });

  it('eval-vqa: each model on its own server (MODEL@URL); truncated answers scored 0 and said so, exit 3', async () => {
    const other = await startFakeServer();
    try {
      const sq = path.join(dir, 'sq.jsonl');
      expect((await execa('node', [BIN, 'eval-vqa', '--generate', '3', '--width', '16', '--height', '16', '-o', sq], { reject: false })).exitCode).toBe(0);
      server.seen.length = 0;
      server.faults = ['max-tokens'];
      const r = await execa('node', [BIN, 'eval-vqa', '--models', `a=openai:m@${server.url},b=openai:m@${other.url}`, '--data', sq, '--no-cache', '--concurrency', '1'], { reject: false });
      server.faults = [];
      expect(server.seen).toHaveLength(3);
      expect(other.seen).toHaveLength(3);
      expect(r.stderr).toMatch(/a sq: 1 questions without a usable answer, scored 0 \(truncated:length 1\)/);
      expect(r.exitCode).toBe(3);
    } finally {
      await other.close();
    }
  });
});
