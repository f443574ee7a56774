import { readFileSync, writeFileSync } from 'node:fs';
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
});
