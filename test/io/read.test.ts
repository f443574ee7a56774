import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';
import { execa } from 'execa';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import type { VlakitError } from '../../src/lib/errors.js';
import { encodeExample, frameTfrecord, newStats, readRecords, readValidated, StepRecordSchema, type ReadOptions, type ReadStats, type SourceRecord } from '../../src/lib/io/index.js';
import { ActionStepSchema } from '../../src/lib/teacher/index.js';
import { collect, tempDir, TFX } from '../helpers.js';
import { episodeExample, makeEpisode, standardDataset } from '../rlds-builder.js';

const dir = tempDir();

function frames(records: Uint8Array[]): Buffer {
  return Buffer.concat(records.map((r) => frameTfrecord(r)));
}

/** Flips one bit of `file` at `at`, in place. */
function flip(file: string, at: number, bit = 0x10): void {
  const b = readFileSync(file);
  b[at] ^= bit;
  writeFileSync(file, b);
}

async function read(inputs: string[], opts: ReadOptions = {}): Promise<{ recs: SourceRecord[]; stats: ReadStats; warnings: string[] }> {
  const stats = newStats();
  const warnings: string[] = [];
  const recs = await collect(readRecords(inputs, { ...opts, onWarning: (m) => warnings.push(m) }, stats));
  return { recs, stats, warnings };
}

function errorOf(p: Promise<unknown>): Promise<VlakitError> {
  return p.then(
    () => {
      throw new Error('expected an error');
    },
    (e: VlakitError) => e,
  );
}

const episodeIds = (recs: SourceRecord[]) => [...new Set(recs.map((r) => (r.value as { episode_id: unknown }).episode_id))];

/** A tf.train.Example with one int64 feature `n`. */
const example = (n: number) => encodeExample({ features: new Map([['n', { kind: 'int64_list', value: [n] }]]) });

describe('--skip-corrupt keeps the source episode ids', () => {
  let episodes: Uint8Array[];
  beforeAll(async () => {
    episodes = [];
    for (let i = 0; i < 5; i++) episodes.push(episodeExample(await makeEpisode(10 + i, 2)));
  });

  it('bare TFRecord shards of episodes: a skipped episode leaves a gap, the later ones (in later files too) keep their ids', async () => {
    const a = path.join(dir, 'ids-a.tfrecord');
    const b = path.join(dir, 'ids-b.tfrecord');
    writeFileSync(a, frames(episodes.slice(0, 3)));
    writeFileSync(b, frames(episodes.slice(3)));
    expect(episodeIds((await read([a, b])).recs)).toEqual([0, 1, 2, 3, 4]);
    const at1 = frameTfrecord(episodes[0]).length;
    flip(a, at1 + 12 + 100); // inside the data of record 1: its data CRC fails
    const err = await errorOf(read([a, b]));
    expect(err.message).toMatch(/^E_TFRECORD_DATA_CRC at record 1 \(byte \d+\) of .*ids-a\.tfrecord/);
    const { recs, stats, warnings } = await read([a, b], { skipCorrupt: true });
    expect(episodeIds(recs)).toEqual([0, 2, 3, 4]);
    expect(stats).toMatchObject({ skipped: 1, episodes: 4 });
    expect(warnings).toHaveLength(1);
  });

  it('after a file whose tail was lost (its episode count unknown), a warning says that later ids may be too low', async () => {
    const a = path.join(dir, 'tail-a.tfrecord');
    const b = path.join(dir, 'tail-b.tfrecord');
    writeFileSync(a, frames(episodes.slice(0, 3)));
    writeFileSync(b, frames(episodes.slice(3)));
    flip(a, frameTfrecord(episodes[0]).length + 2); // record 1's length: records 1 and 2 cannot be framed
    const { recs, stats, warnings } = await read([a, b], { skipCorrupt: true });
    expect(episodeIds(recs)).toEqual([0, 2, 3]);
    expect(stats.skipped).toBe(1);
    expect(warnings[1]).toMatch(/^episode ids from .*tail-b\.tfrecord on may be lower than the source's: the tail lost from .*tail-a\.tfrecord/);
  });

  it('an RLDS dataset directory: ids are <split>-<n> with n from the shard lengths of dataset_info.json', async () => {
    const ds = path.join(dir, 'toy', '1.0.0');
    await standardDataset(ds);
    const shard0 = path.join(ds, 'toy_kitchen-train.tfrecord-00000-of-00002');
    flip(shard0, 200); // record 0's data
    const { recs, stats } = await read([ds], { skipCorrupt: true });
    expect(episodeIds(recs)).toEqual(['train-1', 'train-2']);
    expect(stats.skipped).toBe(1);
    flip(path.join(ds, 'toy_kitchen-train.tfrecord-00001-of-00002'), 3); // the header of the other shard's only record
    const both = await read([ds], { skipCorrupt: true });
    expect(episodeIds(both.recs)).toEqual(['train-1']);
    expect(both.stats.skipped).toBe(2);
  });
});

describe('a shard whose first header is unreadable', () => {
  /** Three shards of 4 Examples each (n = 0..11), named `name(i)`, optionally gzip. */
  function shards(sub: string, name: (i: number) => string, gzip = false): string[] {
    const d = path.join(dir, sub);
    mkdirSync(d, { recursive: true });
    return [0, 1, 2].map((i) => {
      const f = path.join(d, name(i));
      const data = frames([0, 1, 2, 3].map((k) => example(i * 4 + k)));
      writeFileSync(f, gzip ? gzipSync(data) : data);
      return f;
    });
  }
  const ns = (recs: SourceRecord[]) => recs.map((r) => (r.value as { features: { n: { int64_list: number[] } } }).features.n.int64_list[0]);

  it.each([
    ['named like shards of nothing (format from the other shards), the middle one flipped', 'set', (i: number) => `part-${i}`, 1, false],
    ['named like shards of nothing, the first one flipped', 'first', (i: number) => `part-${i}`, 0, false],
    ['named *.tfrecord-*', 'named', (i: number) => `d.tfrecord-0000${i}-of-00003`, 1, false],
    ['gzip, the header inside the stream flipped', 'gz', (i: number) => `part-${i}.gz`, 2, true],
  ])('%s: skipped as corrupt at byte 0 (counted), the job goes on; without --skip-corrupt the error names the file and byte 0', async (_what, sub, name, bad, gzip) => {
    const files = shards(sub, name, gzip);
    if (gzip) {
      const data = frames([0, 1, 2, 3].map((k) => example(bad * 4 + k)));
      data[5] ^= 0x01; // a length byte: the length CRC fails
      writeFileSync(files[bad], gzipSync(data));
    } else {
      flip(files[bad], 9, 0x01); // the length CRC
    }
    const input = path.dirname(files[0]);
    const err = await errorOf(read([input]));
    expect(err.code).toBe('E_TFRECORD_LENGTH_CRC');
    expect(err.context).toMatchObject({ file: files[bad], record: 0, offset: 0 });
    const { recs, stats } = await read([input], { skipCorrupt: true });
    expect(ns(recs)).toEqual([...Array(12).keys()].filter((n) => Math.floor(n / 4) !== bad));
    expect(stats.skipped).toBe(1);
    expect(stats.problems[0]).toMatch(new RegExp(`^E_TFRECORD_LENGTH_CRC at record 0 \\(byte 0\\) of .*${path.basename(files[bad]).replace(/\./g, '\\.')}`));
  });

  it('a shard with its gzip magic flipped is a corrupt TFRecord too, when its name or set says TFRecord', async () => {
    const files = shards('gzmagic', (i) => `t.tfrecord-${i}.gz`, true);
    flip(files[1], 1, 0x01);
    const { recs, stats } = await read(files, { skipCorrupt: true });
    expect(ns(recs)).toEqual([0, 1, 2, 3, 8, 9, 10, 11]);
    expect(stats.problems[0]).toMatch(/E_TFRECORD_LENGTH_CRC at record 0 \(byte 0\) of .*t\.tfrecord-1\.gz/);
  });

  it('without context (one file, no TFRecord name) it stays E_FORMAT_UNKNOWN, skip or not', async () => {
    const f = path.join(dir, 'alone.bin');
    writeFileSync(f, frames([example(1)]));
    flip(f, 9, 0x01);
    for (const skipCorrupt of [false, true]) {
      const err = await errorOf(read([f], { skipCorrupt }));
      expect(err.code).toBe('E_FORMAT_UNKNOWN');
      expect(err.message).toMatch(/the header of its first record is corrupt/);
    }
  });

  it('a gzip shard that fails before its first bytes is skipped under --skip-corrupt', async () => {
    const files = shards('gzbad', (i) => `p-${i}.tfrecord.gz`, true);
    const b = readFileSync(files[0]);
    b[10] = 0xff; // an invalid deflate block type
    b[11] = 0xff;
    writeFileSync(files[0], b);
    const err = await errorOf(read(files));
    expect(err.message).toMatch(/^E_GZIP at record 0 \(compressed byte \d+, uncompressed byte 0\) of .*p-0\.tfrecord\.gz: gzip data is corrupt/);
    const { recs, stats } = await read(files, { skipCorrupt: true });
    expect(ns(recs)).toEqual([4, 5, 6, 7, 8, 9, 10, 11]);
    expect(stats.skipped).toBe(1);
  });
});

describe('JSON Lines through readRecords', () => {
  it('invalid UTF-8 is an error naming file, line and byte; --skip-corrupt counts it', async () => {
    const f = path.join(dir, 'latin1.jsonl');
    writeFileSync(f, Buffer.concat([Buffer.from('{"features":{}}\n{"features":{"s":{"bytes_list":["caf'), Buffer.from([0xe9]), Buffer.from('"]}}}\n{"features":{}}\n')]));
    const err = await errorOf(read([f]));
    expect(err.message).toBe(`E_JSONL_PARSE at line 2 (byte 52) of ${f}: invalid UTF-8 (0xe9 0x22 0x5d 0x7d at byte 36 of the line); JSON Lines must be UTF-8 text`);
    const { recs, stats } = await read([f], { skipCorrupt: true });
    expect(recs.map((r) => r.line)).toEqual([1, 3]);
    expect(stats.skipped).toBe(1);
  });

  it('a truncated gzip JSONL file: the complete lines are read, the cut one is counted', async () => {
    const lines = Array.from({ length: 300 }, (_, i) => JSON.stringify({ features: { i: { int64_list: [i * 7919] } } }));
    const gz = gzipSync(lines.join('\n') + '\n');
    const f = path.join(dir, 'cut.jsonl.gz');
    writeFileSync(f, gz.subarray(0, gz.length - 40));
    const err = await errorOf(read([f]));
    expect(err.message).toMatch(new RegExp(`^E_GZIP at line \\d+ \\(compressed byte ${gz.length - 40}, uncompressed byte \\d+\\) of .*cut\\.jsonl\\.gz: gzip stream ends early`));
    const { recs, stats } = await read([f], { skipCorrupt: true });
    expect(recs.length).toBe(err.context.line! - 1);
    expect(recs.map((r) => r.line)).toEqual([...Array(recs.length).keys()].map((i) => i + 1));
    expect(stats.skipped).toBe(1);
  });
});

describe('readValidated', () => {
  it('validates each JSON Lines step once, by the command\'s schema; TFRecord steps too', async () => {
    const f = path.join(dir, 'steps-once.jsonl');
    const step = (i: number, action: unknown) => JSON.stringify({ episode_id: 0, step: i, action });
    writeFileSync(f, `${step(0, [0, 0, 0, 1])}\n${step(1, [0, 0, 0, 1])}\n`);
    const base = vi.spyOn(StepRecordSchema, 'safeParse');
    try {
      expect((await collect(readValidated([f], 'step', ActionStepSchema, 'x'))).map((r) => r.line)).toEqual([1, 2]);
      expect(base).not.toHaveBeenCalled(); // ActionStepSchema extends it: not checked twice
      await collect(readRecords([f]));
      expect(base).toHaveBeenCalledTimes(2); // without a command's schema, the plain step schema
    } finally {
      base.mockRestore();
    }
    writeFileSync(f, `${step(0, [0, 0, 0, 1])}\n${step(1, ['NaN', 0, 0, 1])}\n`);
    await expect(collect(readValidated([f], 'step', ActionStepSchema, 'x'))).rejects.toThrow(/E_RECORD_INVALID at line 2 field "action.0" of .*steps-once\.jsonl: invalid step record: expected a finite number, got "NaN"/);
    // steps decoded from TFRecord have no line: validated in readValidated
    const tf = path.join(dir, 'steps-once.tfrecord');
    writeFileSync(tf, frames([episodeExample(await makeEpisode(5, 3))]));
    const upTo1 = ActionStepSchema.refine((s) => s.step < 2, { message: 'step 2', path: ['step'] });
    await expect(collect(readValidated([tf], 'step', upTo1, 'x'))).rejects.toThrow(/E_RECORD_INVALID at record 0 field "step" of .*steps-once\.tfrecord: invalid step record \(episode 0, step 2\): step 2/);
  });
});

describe('file handles', () => {
  it('no FileHandle is left for the garbage collector: early exits, errors and unread sources close their files', async () => {
    const io = pathToFileURL(path.resolve('dist/lib/io/index.js')).href;
    const bad = path.join(dir, 'handles-bad.tfrecord');
    writeFileSync(bad, frames([example(1), example(2), example(3)]));
    flip(bad, 40);
    const junk = path.join(dir, 'handles-junk.bin');
    writeFileSync(junk, Buffer.alloc(100, 7));
    const cut = path.join(dir, 'handles-cut.tfrecord.gz');
    const gz = gzipSync(frames(Array.from({ length: 50 }, (_, i) => example(i))));
    writeFileSync(cut, gz.subarray(0, gz.length - 9));
    const files = [path.join(TFX, 'mnist/mnist.tfrecord'), path.join(TFX, 'penguin/Split-eval_data_tfrecord-00000-of-00001.gz')];
    const script = `
      import { openBytes, readRecords, decodeTfrecord, readBytes } from ${JSON.stringify(io)};
      const files = ${JSON.stringify(files)};
      const quiet = async (f) => { try { await f(); } catch {} };
      for (let round = 0; round < 3; round++) {
        for (const f of files) {
          const o = await openBytes(f); await o.bytes.return();                  // opened, never read
          for await (const _ of readRecords([f])) break;                         // stopped after one record
          for await (const _ of decodeTfrecord((await openBytes(f)).bytes)) break;
          await quiet(async () => { for await (const _ of readRecords([f])) throw new Error('consumer fails'); });
        }
        for await (const _ of readBytes(files[0])) break;
        await quiet(async () => { for await (const _ of readRecords([${JSON.stringify(bad)}])) {} });   // E_TFRECORD_DATA_CRC
        await quiet(async () => { for await (const _ of readRecords([${JSON.stringify(junk)}])) {} });  // E_FORMAT_UNKNOWN
        await quiet(async () => { for await (const _ of readRecords([${JSON.stringify(cut)}])) {} });   // truncated gzip
        for await (const _ of readRecords([${JSON.stringify(cut)}], { skipCorrupt: true })) {}
      }
      for (let i = 0; i < 4; i++) { globalThis.gc(); await new Promise((r) => setTimeout(r, 50)); }
      console.log('ok');
    `;
    const r = await execa('node', ['--expose-gc', '--input-type=module', '-e', script], { reject: false });
    expect(r.stderr).not.toMatch(/Closing file descriptor|DEP0137/);
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('ok');
    expect(r.exitCode).toBe(0);
  });
});

describe('format from context, and where it stops', () => {
  it('a stray file among shards is no shard: still E_FORMAT_UNKNOWN; a JSON Lines name is never read as TFRecord', async () => {
    const d = path.join(dir, 'stray');
    mkdirSync(d);
    writeFileSync(path.join(d, 'part-0'), frames([example(0)]));
    writeFileSync(path.join(d, 'part-1'), frames([example(1)]));
    writeFileSync(path.join(d, 'NOTES'), 'not records\n');
    const err = await errorOf(read([d], { skipCorrupt: true }));
    expect(err.code).toBe('E_FORMAT_UNKNOWN');
    expect(err.context.file).toBe(path.join(d, 'NOTES'));
    const j = path.join(dir, 'x_tfrecord-export.jsonl');
    writeFileSync(j, '{"features":{}}\n');
    expect((await read([j])).recs.map((r) => r.kind)).toEqual(['example']);
  });
});
