import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ScriptedPolicy, TabletopEnv, runEpisodes } from '../../src/lib/env/index.js';
import { encodeJsonl, type StepRecord } from '../../src/lib/io/index.js';
import { stepImages } from '../../src/lib/teacher/index.js';
import { collect, tempDir } from '../helpers.js';
import { type FakeBatch, startFakeBatch } from './fake-batch.js';

const BIN = path.resolve('bin/run.js');
const dir = tempDir();
const demos = path.join(dir, 'demos.jsonl');
let steps: StepRecord[];
let fake: FakeBatch;

beforeAll(async () => {
  const env = new TabletopEnv({ width: 16, height: 16 });
  const eps = await collect(runEpisodes({ env, policy: new ScriptedPolicy(), families: ['pick', 'place', 'near'], episodes: 3, seed: 9 }));
  steps = eps.flatMap((e) => e.records);
  writeFileSync(demos, (await collect(encodeJsonl(steps))).join(''));
});
afterAll(() => fake?.close());

/** The answer the fake gives for a step's first image (fake-batch.ts frameAnswer), found independently here. */
function frameOf(step: StepRecord): string {
  return `frame ${createHash('sha256').update(stepImages(step)[0].b64).digest('hex').slice(0, 12)}`;
}

interface Out {
  episode_id: string | number;
  step: number;
  reasoning: { observation: string; error: string; source_step: number };
}

function readOut(file: string): Out[] {
  return readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Out);
}

function usageOf(stderr: string): { usage: Record<string, number> & { reasons: Record<string, number>; cost: number } } {
  const line = stderr.trim().split('\n').reverse().find((l) => l.startsWith('{'));
  return JSON.parse(line!);
}

/** Every answered step carries the answer for its own source step's image. */
function expectMapped(out: Out[]): void {
  const byKey = new Map(steps.map((s) => [`${s.episode_id}/${s.step}`, s]));
  expect(out.length).toBe(steps.length);
  for (const o of out) {
    if (o.reasoning.error) continue;
    expect(o.reasoning.observation).toBe(frameOf(byKey.get(`${o.episode_id}/${o.reasoning.source_step}`)!));
  }
}

describe('annotate --batch', () => {
  it('openai: submit, kill -9 mid-poll, resume: answers reach their steps, nothing is paid twice, failures asked online, batch price', async () => {
    fake = await startFakeBatch();
    // the first request line fails in the job (an error line), the second is refused
    fake.fate = (n) => (n === 0 ? 'error-line' : n === 1 ? 'refusal' : 'none');
    const cache = path.join(dir, 'cache-openai');
    const out = path.join(dir, 'openai.jsonl');
    const args = [BIN, 'annotate', demos, '--kind', 'reasoning', '--stride', '3', '--teacher', 'openai:m', '--teacher-url', fake.url, '--cache', cache, '--batch', '--batch-poll', '0.02', '--price', '1,2', '--json', '-o', out];
    let child: ReturnType<typeof execa> | undefined;
    fake.onPoll = () => {
      if (fake.polls === 3) child!.kill('SIGKILL');
    };
    child = execa('node', args, { reject: false });
    const killed = await child;
    expect(killed.signal).toBe('SIGKILL');
    expect(fake.created).toEqual(['batch_1']);
    expect(fake.online).toBe(0);
    expect(existsSync(out)).toBe(false);
    const log = readFileSync(path.join(cache, 'batch', 'jobs.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(log.map((e) => [e.event, e.id])).toEqual([['submitted', 'batch_1']]);

    fake.onPoll = undefined;
    fake.release = true;
    const r = await execa('node', args, { reject: false });
    expect(r.exitCode).toBe(3); // the refused step
    // resumed, not submitted again
    expect(fake.created).toEqual(['batch_1']);
    expect(fake.uploads).toBe(1);
    // every request paid once: the failed line online, everything else from the job
    expect([...fake.billed.values()].filter((b) => b.batch + b.online !== 1)).toEqual([]);
    expect(fake.online).toBe(1);
    const lines = fake.processed;
    expect(lines).toBeGreaterThan(5);
    const { usage } = usageOf(r.stderr);
    expect(usage.reasons).toEqual({ 'refused:refusal': 1 });
    expect(usage.batchAnswers).toBe(lines - 1);
    expect(usage.requests).toBe(lines);
    // batch tokens at half price, online tokens at full price (--price 1,2 USD per million)
    const t = fake.tokens;
    const expected = (t.batch.input * 1 + t.batch.output * 2) / 2 / 1e6 + (t.online.input * 1 + t.online.output * 2) / 1e6;
    expect(usage.cost).toBeCloseTo(expected, 12);
    expect(usage.cost).toBeLessThan(((t.batch.input + t.online.input) * 1 + (t.batch.output + t.online.output) * 2) / 1e6);
    const rows = readOut(out);
    expectMapped(rows);
    expect(new Set(rows.filter((o) => o.reasoning.error).map((o) => `${o.episode_id}/${o.reasoning.source_step}`)).size).toBe(1);
    expect(rows.find((o) => o.reasoning.error)!.reasoning.error).toMatch(/^refused:refusal: .*\(batch job\)/);

    // a third run: nothing new is asked, the output is the same
    const before = readFileSync(out, 'utf8');
    const again = await execa('node', [...args, '--overwrite'], { reject: false });
    expect(again.exitCode).toBe(3);
    expect(fake.created).toEqual(['batch_1']);
    expect(fake.online).toBe(1);
    expect(readFileSync(out, 'utf8')).toBe(before);
    await fake.close();
  }, 240_000);

  it('gemini: the requests split into jobs of --batch-size, each answer mapped back, refusals counted, failed lines asked online', async () => {
    fake = await startFakeBatch();
    fake.release = true;
    fake.fate = (n) => (n === 2 ? 'safety' : n === 5 ? 'error-line' : 'none');
    const cache = path.join(dir, 'cache-gemini');
    const out = path.join(dir, 'gemini.jsonl');
    const r = await execa('node', [BIN, 'annotate', demos, '--kind', 'reasoning', '--stride', '4', '--teacher', 'gemini:gemini-2.5-flash', '--teacher-url', fake.url, '--cache', cache, '--batch', '--batch-poll', '0.02', '--batch-size', '4', '--json', '-o', out], {
      reject: false,
      env: { ...process.env, GEMINI_API_KEY: 'g-test' },
    });
    expect(r.exitCode).toBe(3);
    const lines = fake.processed;
    expect(fake.created.length).toBe(Math.ceil(lines / 4));
    expect(fake.created[0]).toBe('batches/1');
    expect(readdirSync(path.join(cache, 'batch')).filter((f) => f.endsWith('.input.jsonl')).length).toBe(fake.created.length);
    expect(fake.online).toBe(1);
    expect([...fake.billed.values()].filter((b) => b.batch + b.online !== 1)).toEqual([]);
    const { usage } = usageOf(r.stderr);
    expect(usage.reasons).toEqual({ 'refused:SAFETY': 1 });
    expect(usage.batchAnswers).toBe(lines - 1);
    expectMapped(readOut(out));
    await fake.close();
  }, 120_000);

  it('refuses --batch without a batch service or without the cache, before reading anything', async () => {
    const k = await execa('node', [BIN, 'annotate', demos, '--kind', 'plan', '--batch', '-o', path.join(dir, 'k.jsonl')], { reject: false });
    expect(k.exitCode).toBe(2);
    expect(k.stderr).toMatch(/--batch applies only with a gemini: or openai: teacher/);
    const n = await execa('node', [BIN, 'annotate', demos, '--kind', 'plan', '--teacher', 'openai:m', '--teacher-url', 'http://127.0.0.1:9', '--batch', '--no-cache', '-o', path.join(dir, 'n.jsonl')], { reject: false });
    expect(n.exitCode).toBe(2);
    expect(n.stderr).toMatch(/--batch and --no-cache cannot be given together/);
  });
});
