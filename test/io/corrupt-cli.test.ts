/** Corrupt input through the real binary: what each command prints and its exit code (1 error, 3 finished with skips). */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { encodeExample, frameTfrecord } from '../../src/lib/io/index.js';
import { tempDir } from '../helpers.js';

const BIN = path.resolve('bin/run.js');
const dir = tempDir();

function vlakit(args: string[]) {
  return execa('node', [BIN, ...args], { reject: false, env: { NO_COLOR: '1' } }).then((r) => ({ code: r.exitCode, out: r.stdout, err: r.stderr }));
}

const lines = (s: string) => s.split('\n').filter(Boolean);
const example = (n: number) => encodeExample({ features: new Map([['n', { kind: 'int64_list', value: [n] }]]) });
const frames = (ns: number[]) => Buffer.concat(ns.map((n) => frameTfrecord(example(n))));
const ns = (out: string) => lines(out).map((l) => JSON.parse(l).features.n.int64_list[0]);

describe('invalid UTF-8 in JSON Lines', () => {
  const steps = path.join(dir, 'steps.jsonl');
  const step = (e: number, s: number, last = false) => `{"episode_id":${e},"step":${s},"is_first":${s === 0},"is_last":${last},"action":[0.01,0,0,1],"language_instruction":"pick"}`;
  // line 3 ends in "pick\xe9"}: an é written as Latin-1, a lone 0xe9 byte
  writeFileSync(steps, Buffer.concat([Buffer.from(`${step(0, 0)}\n${step(0, 1, true)}\n${step(1, 0).slice(0, -2)}`), Buffer.from([0xe9]), Buffer.from(`"}\n${step(2, 0)}\n${step(2, 1, true)}\n`)]));

  it('is an error naming the file, line and byte (exit 1), in convert, inspect, chunk and relabel alike', async () => {
    const bytes = readFileSync(steps);
    const at = bytes.indexOf(0xe9);
    expect(bytes.subarray(at + 1, at + 3).toString()).toBe('"}'); // the test data holds a lone 0xe9
    const where = new RegExp(`E_JSONL_PARSE at line 3 \\(byte ${at}\\) of .*steps\\.jsonl: invalid UTF-8`);
    for (const args of [['convert', steps, '-q'], ['inspect', steps], ['chunk', steps, '-q', '-o', path.join(dir, 'c.jsonl')], ['relabel', steps, '-o', path.join(dir, 'r.jsonl')]]) {
      const r = await vlakit(args);
      expect(r.code, args[0]).toBe(1);
      expect(r.err).toMatch(where);
      expect(r.err).not.toMatch(/\n\s+at /);
    }
  });

  it('--skip-corrupt skips and counts the line: exit 3', async () => {
    const c = await vlakit(['convert', steps, '--skip-corrupt']);
    expect(c.code).toBe(3);
    expect(lines(c.out).map((l) => JSON.parse(l).episode_id)).toEqual([0, 0, 2, 2]);
    expect(c.err).toMatch(/skipped: E_JSONL_PARSE at line 3 \(byte \d+\) of .*steps\.jsonl: invalid UTF-8/);
    expect(c.err).toMatch(/skipped 1 corrupt record/);
    const i = await vlakit(['inspect', steps, '--skip-corrupt', '--json']);
    expect(i.code).toBe(3);
    expect(JSON.parse(i.out)).toMatchObject({ episodes: 2, steps: 4, read: { skipped: 1 } });
    const k = await vlakit(['chunk', steps, '--skip-corrupt', '-o', path.join(dir, 'k.jsonl')]);
    expect(k.code).toBe(3);
    expect(k.err).toMatch(/vlakit chunk: 2 episodes, 4 steps/);
    expect(k.err).toMatch(/vlakit chunk: skipped 1 corrupt record/);
  });
});

describe('a multi-shard --skip-corrupt job with one shard header flipped', () => {
  it('goes on with the next shard: every record of the good shards, the bad one named at byte 0, exit 3', async () => {
    const d = path.join(dir, 'shards');
    mkdirSync(d);
    for (let i = 0; i < 4; i++) {
      const data = frames([0, 1, 2, 3, 4].map((k) => i * 5 + k));
      if (i === 2) data[2] ^= 0x08; // the length of the first record: the length CRC fails
      writeFileSync(path.join(d, `part-${i}-of-4`), i === 3 ? gzipSync(data) : data);
    }
    const r = await vlakit(['convert', d, '--skip-corrupt']);
    expect(r.code).toBe(3);
    expect(ns(r.out)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17, 18, 19]);
    expect(r.err).toMatch(/skipped: E_TFRECORD_LENGTH_CRC at record 0 \(byte 0\) of .*part-2-of-4: length CRC mismatch/);
    const e = await vlakit(['convert', d, '-q', '-o', path.join(dir, 'all.jsonl')]);
    expect(e.code).toBe(1);
    expect(e.err).toMatch(/^vlakit convert: E_TFRECORD_LENGTH_CRC at record 0 \(byte 0\) of .*part-2-of-4/);
  });
});

describe('a truncated gzip TFRecord (a partial download)', () => {
  it('recovers every complete record with --skip-corrupt (exit 3) and names record and offsets; without it, exit 1 and nothing written', async () => {
    const data = frames([...Array(2000).keys()]);
    const gz = gzipSync(data);
    const file = path.join(dir, 'part.tfrecord.gz');
    writeFileSync(file, gz.subarray(0, gz.length - 100));
    const r = await vlakit(['convert', file, '--skip-corrupt']);
    expect(r.code).toBe(3);
    const got = ns(r.out);
    expect(got).toEqual([...Array(got.length).keys()]);
    expect(got.length).toBeGreaterThan(1500);
    expect(r.err).toMatch(new RegExp(`E_TFRECORD_TRUNCATED at record ${got.length} \\(compressed byte ${gz.length - 100}, uncompressed byte \\d+\\) of .*part\\.tfrecord\\.gz: gzip stream ends early`));
    expect(r.err).toMatch(/skipped 1 corrupt record/);
    const out = path.join(dir, 'part.jsonl');
    const e = await vlakit(['convert', file, '-q', '-o', out]);
    expect(e.code).toBe(1);
    expect(e.err).toMatch(/^vlakit convert: E_TFRECORD_TRUNCATED at record \d+ \(compressed byte \d+, uncompressed byte \d+\) of .*part\.tfrecord\.gz/);
    expect(() => readFileSync(out)).toThrow();
  });
});
