/** Progress against a sized input: its records counted ahead, or its bytes read of its size; annotate's requests in flight; export's stages. */
import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { LogProgress, startProgress, type Progress, type ProgressState } from '../../src/lib/cli/progress.js';
import { fmtBytes, logLine, timing, viewLines, wrapItems } from '../../src/lib/cli/progress-format.js';
import { InputMeter, countJsonlRecords, measureInputs } from '../../src/lib/cli/progress-input.js';
import { stageProgress, watchInFlight } from '../../src/lib/cli/progress-jobs.js';
import { frameTfrecord, readRecords } from '../../src/lib/io/index.js';
import type { TeacherAnswer, TeacherRequest } from '../../src/lib/teacher/types.js';
import { tempDir } from '../helpers.js';

const dir = tempDir();
const MiB = 1024 * 1024;
const KITCHEN = path.resolve('fixtures/toy_kitchen');

function recorder(): Progress & { states: Partial<ProgressState>[] } {
  const r = {
    states: [] as Partial<ProgressState>[],
    update(s: Partial<ProgressState>) {
      r.states.push(s);
    },
    event() {},
    stop() {},
  };
  return r;
}

const step = (ep: number, i: number) => JSON.stringify({ episode_id: `e${ep}`, step: i, action: [0, 0, 0, 1], is_first: i === 0, is_last: i === 4 });

describe('the fraction of a sized input', () => {
  it('log line and view: the bytes read of the size give %, bar and an ETA from the byte rate since the first update', () => {
    const s: ProgressState = { label: 'convert', records: 5000, unit: 'records', size: { done: 30 * MiB, total: 120 * MiB } };
    // first update after 2 s with 10 MiB read and 1000 records; 8 s later 30 MiB: 2.5 MiB/s, 90 MiB left: 36 s
    const t = timing(s, 0, { records: 1000, at: 2000, sizeDone: 10 * MiB }, 10_000);
    expect(t).toEqual({ elapsed: 10, rate: 500, eta: 36 });
    expect(logLine(s, t)).toBe('vlakit convert: record 5000 25.0% 30.0 MiB/120.0 MiB 500 records/s elapsed 10s eta 36s');
    const [bar] = viewLines(s, t, 100);
    expect(bar.text).toBe(`convert ${'━'.repeat(5)}${'─'.repeat(16)} 5000 records 25.0% · 500 records/s · 30.0 MiB/120.0 MiB · 10s eta 36s`);
    expect(bar.text.length).toBeLessThan(100);
    // a known total of records wins over the bytes
    expect(logLine({ ...s, total: 20_000 }, timing({ ...s, total: 20_000 }, 0, { records: 1000, at: 2000 }, 10_000))).toMatch(/^vlakit convert: record 5000\/20000 25\.0% 30\.0 MiB\/120\.0 MiB 500 records\/s elapsed 10s eta 30s$/);
  });

  it('LogProgress on a fake clock: a line every --log-every seconds with the bytes and ETA', () => {
    let now = 0;
    const lines: string[] = [];
    const p = new LogProgress('inspect', 5, () => now, (l) => lines.push(l), false);
    for (let sec = 1; sec <= 12; sec++) {
      now = sec * 1000;
      // 100 records and 1 MiB a second of a 20 MiB input
      p.update({ records: sec * 100, size: { done: sec * MiB, total: 20 * MiB } });
    }
    p.stop();
    // the clock starts at 0, the rate at the first update (second 1)
    expect(lines).toEqual(['vlakit inspect: record 500 25.0% 5.0 MiB/20.0 MiB 100 records/s elapsed 5s eta 15s', 'vlakit inspect: record 1000 50.0% 10.0 MiB/20.0 MiB 100 records/s elapsed 10s eta 10s']);
  });

  it('LogProgress: lines on the grid of the start, so a late one (a long step) does not delay the next', () => {
    let now = 0;
    const lines: string[] = [];
    const p = new LogProgress('train-sft', 10, () => now, (l) => lines.push(l), false);
    for (const [t, step] of [[1, 1], [10.9, 2], [13, 3], [20.2, 4], [29.5, 5], [30.1, 6]]) {
      now = t * 1000;
      p.update({ records: step, total: 10, unit: 'steps' });
    }
    p.stop();
    // due at 10, 20, 30 s: written at 10.9, 20.2 and 30.1 s (not 10.9, 20.9, 30.9)
    expect(lines.map((l) => l.split(' ')[3])).toEqual(['2/10', '4/10', '6/10']);
  });

  it('startProgress without --log-every: a line every 10 s of the clock (the default), none before', async () => {
    let now = 0;
    let out = '';
    const pipe = new PassThrough();
    pipe.on('data', (d) => (out += d));
    const p = await startProgress('relabel', true, { stream: pipe, env: {}, now: () => now, timer: false });
    for (const t of [1, 5, 9.9]) {
      now = t * 1000;
      p.update({ records: t * 10, total: 200, unit: 'chunks' });
    }
    await new Promise((r) => setImmediate(r));
    expect(out).toBe('');
    now = 10_000;
    p.update({ records: 100 });
    p.stop();
    await new Promise((r) => setImmediate(r));
    expect(out).toBe('vlakit relabel: chunk 100/200 50.0% 10 chunks/s elapsed 10s eta 10s\n');
  });

  it('measureInputs: plain JSON Lines counted (blank lines not), gzip and TFRecord by size, RLDS by its split, stdin unknown', async () => {
    expect(countJsonlRecords(Buffer.from('{"a":1}\n\n  \r\n{"b":2}\r\n{"c":3}'))).toBe(3);
    const jsonl = path.join(dir, 'steps.jsonl');
    const text = `${[0, 1, 2].flatMap((e) => [0, 1, 2, 3, 4].map((i) => step(e, i))).join('\n')}\n\n`;
    writeFileSync(jsonl, text);
    expect(await measureInputs([jsonl])).toEqual({ records: 15, bytes: Buffer.byteLength(text) });
    // over the counting limit: the bytes only
    expect(await measureInputs([jsonl], { countLinesUpTo: 10 })).toEqual({ bytes: Buffer.byteLength(text) });
    const gz = path.join(dir, 'steps.jsonl.gz');
    writeFileSync(gz, gzipSync(text));
    expect(await measureInputs([gz])).toEqual({ bytes: statSync(gz).size });
    const tf = path.join(dir, 'raw.tfrecord');
    writeFileSync(tf, Buffer.concat([frameTfrecord(Buffer.from('abc')), frameTfrecord(Buffer.from('defg'))]));
    expect(await measureInputs([tf, jsonl])).toEqual({ bytes: statSync(tf).size + Buffer.byteLength(text) });
    const train = ['00000', '00001'].map((i) => statSync(path.join(KITCHEN, '1.0.0', `toy_kitchen-train.tfrecord-${i}-of-00002`)).size);
    expect(await measureInputs([KITCHEN], { split: 'train' })).toEqual({ bytes: train[0] + train[1] });
    expect(await measureInputs([KITCHEN], { split: 'val' })).toEqual({ bytes: statSync(path.join(KITCHEN, '1.0.0', 'toy_kitchen-val.tfrecord-00000-of-00001')).size });
    expect(await measureInputs(['-'])).toEqual({});
    // a LeRobot dataset: its frames, from meta/info.json
    const lr = path.join(dir, 'lerobot');
    mkdirSync(path.join(lr, 'meta'), { recursive: true });
    writeFileSync(path.join(lr, 'meta', 'info.json'), JSON.stringify({ codebase_version: 'v3.0', total_frames: 42, fps: 10 }));
    expect(await measureInputs([lr])).toEqual({ records: 42 });
    // not a regular file (a device here; a pipe, whose head would be taken from the job, alike): no size
    expect(await measureInputs(['/dev/null'])).toEqual({});
    expect(await measureInputs([jsonl, '-'])).toEqual({});
    // a missing file: nothing known (the reader names the problem)
    expect(await measureInputs([path.join(dir, 'none.jsonl')])).toEqual({});
  });

  it('the reader counts the bytes the job is done with, a MiB at a time: none at the first record, all at the end', async () => {
    // 2.5 MiB of JSON Lines
    const line = JSON.stringify({ b64: 'A'.repeat(1000) });
    const n = Math.ceil((2.5 * MiB) / (line.length + 1));
    const file = path.join(dir, 'pad.jsonl');
    writeFileSync(file, `${Array(n).fill(line).join('\n')}\n`);
    let read = 0;
    const seen = new Set<number>();
    let first: number | undefined;
    for await (const _ of readRecords([file], { onRead: (b) => (read += b) })) {
      first ??= read;
      seen.add(read);
    }
    expect(first).toBe(0);
    expect([...seen]).toEqual([0, MiB, 2 * MiB]);
    expect(read).toBe(statSync(file).size);
  });

  it('the reader hears every byte of the files as they are on disk (gzip compressed), so a whole read ends at 100%', async () => {
    const text = `${[0, 1].flatMap((e) => [0, 1, 2, 3, 4].map((i) => step(e, i))).join('\n')}\n`;
    const gz = path.join(dir, 'read.jsonl.gz');
    writeFileSync(gz, gzipSync(text));
    for (const [inputs, split] of [[[gz]], [[KITCHEN], 'train']] as [string[], string?][]) {
      const meter = new InputMeter(await measureInputs(inputs, { split }));
      expect(meter.state()).toEqual({ size: { done: 0, total: expect.any(Number) } });
      for await (const _ of readRecords(inputs, { split, onRead: meter.onRead }));
      const { size } = meter.state();
      expect(size!.done).toBe(size!.total);
      expect(fmtBytes(size!.total)).not.toBe('0 B');
    }
    const plain = path.join(dir, 'read.jsonl');
    writeFileSync(plain, text);
    expect(new InputMeter(await measureInputs([plain])).state()).toEqual({ total: 10 });
  });
});

describe('annotate and export', () => {
  it("the view's figures: two lines at most, an item never split, the rest cut", () => {
    expect(wrapItems(['requests 88', 'in flight 4', 'cached 0', 'tokens 81k', 'cost $0.031'], 30, 2)).toEqual(['requests 88 · in flight 4', 'cached 0 · tokens 81k · cost …']);
    expect(wrapItems(['a', 'b'], 30, 2)).toEqual(['a · b']);
    expect(wrapItems([], 30, 2)).toEqual([]);
  });

  it('watchInFlight: requests sent and not yet answered', async () => {
    const waiting: (() => void)[] = [];
    const teacher = {
      id: 'fake',
      complete: (_req: TeacherRequest) => new Promise<TeacherAnswer>((resolve) => waiting.push(() => resolve({ text: 'ok', usage: { inputTokens: 1, outputTokens: 1 }, retries: 0 }))),
    };
    const w = watchInFlight(teacher);
    expect(w.inFlight()).toBe(0);
    const req = { kind: 'plan' as const, json: true, messages: [] };
    const a = w.teacher.complete(req);
    const b = w.teacher.complete(req);
    expect(w.inFlight()).toBe(2);
    waiting.shift()!();
    await a;
    expect(w.inFlight()).toBe(1);
    waiting.shift()!();
    expect((await b).text).toBe('ok');
    expect(w.inFlight()).toBe(0);
    expect(w.teacher.id).toBe('fake'); // the rest of the teacher as it was
  });

  it('stageProgress: the stages before the current one of all, the current one named', () => {
    const r = recorder();
    const on = stageProgress(r, ['loading the checkpoint', 'building the graphs', 'writing the files', 'checking parity']);
    on('loading the checkpoint');
    on('writing the files');
    expect(r.states).toEqual([
      { records: 0, total: 4, unit: 'stages', figures: ['loading the checkpoint'] },
      { records: 2, total: 4, unit: 'stages', figures: ['writing the files'] },
    ]);
  });
});
