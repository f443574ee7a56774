import { createWriteStream, writeFileSync } from 'node:fs';
import { constants as zlibConstants, gunzipSync, gzipSync } from 'node:zlib';
import path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  TfrecordDecoder,
  VlakitError,
} from '../../src/lib/index.js';
import { crc32cOf, decodeTfrecord, frameTfrecord, openBytes, readBytes, maskCrc, type TfrecordStats } from '../../src/lib/io/index.js';
import { chunksOf, collect, tempDir, TFX } from '../helpers.js';

function frameAll(records: Uint8Array[]): Buffer {
  return Buffer.concat(records.map((r) => frameTfrecord(r)));
}

async function decodeAll(bytes: Uint8Array, sizes: number[] = []): Promise<Uint8Array[]> {
  return (await collect(decodeTfrecord(chunksOf(bytes, sizes)))).map((r) => Buffer.from(r.data));
}

async function count(file: string): Promise<number> {
  const { bytes } = await openBytes(file);
  let n = 0;
  for await (const _ of decodeTfrecord(bytes, { source: file })) n++;
  return n;
}

describe('crc32c', () => {
  it('matches the standard check value and the TFRecord mask', () => {
    expect(crc32cOf(Buffer.from('123456789'))).toBe(0xe3069283);
    // masked crc of an all-zero 8-byte length (the header of an empty record), as TensorFlow writes it
    expect(maskCrc(crc32cOf(Buffer.alloc(8)))).toBe(frameTfrecord(new Uint8Array(0)).readUInt32LE(8));
  });
});

describe('TFRecord files written by TensorFlow', () => {
  it.each([
    ['penguin/Split-train_data_tfrecord-00000-of-00001.gz', 234],
    ['penguin/Split-eval_data_tfrecord-00000-of-00001.gz', 100],
    ['tfrecord_sequence/data_tfrecord_eval.gz', 4500],
    ['mnist/mnist.tfrecord', 1000],
  ])('%s has %i records and every CRC verifies', async (file, n) => {
    expect(await count(path.join(TFX, file))).toBe(n);
  });

  it('sniffs gzip by its magic bytes and plain TFRecord otherwise', async () => {
    const gz = await openBytes(path.join(TFX, 'penguin/Split-eval_data_tfrecord-00000-of-00001.gz'));
    const plain = await openBytes(path.join(TFX, 'mnist/mnist.tfrecord'));
    expect(gz.gzip).toBe(true);
    expect(plain.gzip).toBe(false);
    // not read to the end: closing them closes the files
    await gz.bytes.return();
    await plain.bytes.return();
  });
});

describe('TFRecord codec properties', () => {
  const payloads = fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 12 });

  it('decode(encode(records)) = records, whatever the chunking', async () => {
    await fc.assert(
      fc.asyncProperty(payloads, fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 8 }), async (recs, sizes) => {
        const got = await decodeAll(frameAll(recs), sizes);
        expect(got).toEqual(recs.map((r) => Buffer.from(r)));
      }),
      { numRuns: 200 },
    );
  });

  it('any split of the input bytes gives the same records (one byte at a time included)', async () => {
    const recs = [Buffer.from('a'), Buffer.alloc(0), Buffer.alloc(1000, 7), Buffer.from('the end')];
    const bytes = frameAll(recs);
    expect(await decodeAll(bytes, [1])).toEqual(recs);
    expect(await decodeAll(bytes, [11, 13])).toEqual(recs);
    expect(await decodeAll(bytes, [bytes.length])).toEqual(recs);
  });

  it('detects every single-bit flip in a record', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 0, maxLength: 40 }), async (payload) => {
        const framed = frameTfrecord(payload);
        for (let bit = 0; bit < framed.length * 8; bit++) {
          const bad = Buffer.from(framed);
          bad[bit >> 3] ^= 1 << (bit & 7);
          const err = await decodeAll(bad).then(
            () => undefined,
            (e: unknown) => e,
          );
          expect(err, `bit ${bit} of ${framed.length * 8}`).toBeInstanceOf(VlakitError);
          const code = (err as VlakitError).code;
          const region = bit < 64 ? 'length' : bit < 96 ? 'lencrc' : bit < framed.length * 8 - 32 ? 'data' : 'datacrc';
          if (region === 'length' || region === 'lencrc') expect(code).toBe('E_TFRECORD_LENGTH_CRC');
          else expect(code).toBe('E_TFRECORD_DATA_CRC');
        }
      }),
      { numRuns: 20 },
    );
  });
});

describe('corruption', () => {
  const recs = [Buffer.alloc(100, 1), Buffer.alloc(200, 2), Buffer.alloc(300, 3)];
  const good = frameAll(recs);
  const at1 = 16 + 100; // header of record 1

  function errorOf(bytes: Uint8Array): Promise<VlakitError> {
    return collect(decodeTfrecord(chunksOf(bytes, [64]), { source: 'shard.tfrecord' })).then(
      () => {
        throw new Error('expected an error');
      },
      (e: VlakitError) => e,
    );
  }

  it('data CRC mismatch: code, record index, byte offset and file', async () => {
    const bad = Buffer.from(good);
    bad[at1 + 12 + 50] ^= 0xff;
    const err = await errorOf(bad);
    expect(err.code).toBe('E_TFRECORD_DATA_CRC');
    expect(err.context).toMatchObject({ record: 1, offset: at1, file: 'shard.tfrecord' });
    expect(err.message).toMatch(/E_TFRECORD_DATA_CRC at record 1 \(byte 116\) of shard\.tfrecord/);
  });

  it('length CRC mismatch is its own code', async () => {
    const bad = Buffer.from(good);
    bad[at1 + 9] ^= 0x01;
    const err = await errorOf(bad);
    expect(err.code).toBe('E_TFRECORD_LENGTH_CRC');
    expect(err.context).toMatchObject({ record: 1, offset: at1 });
  });

  it('a truncated file is its own code, also inside a header', async () => {
    const at2 = at1 + 16 + 200;
    for (const [cut, record, offset] of [
      [good.length - 1, 2, at2],
      [at1 + 5, 1, at1],
      [at1 + 30, 1, at1],
    ]) {
      const err = await errorOf(good.subarray(0, cut));
      expect(err.code).toBe('E_TFRECORD_TRUNCATED');
      expect(err.context).toMatchObject({ record, offset });
    }
  });

  it('a huge corrupt length fails at once instead of waiting for bytes', async () => {
    const bad = Buffer.from(good);
    bad.writeUInt32LE(0xffffffff, at1 + 4);
    const err = await errorOf(bad);
    expect(err.code).toBe('E_TFRECORD_LENGTH_CRC');
  });

  it('--skip-corrupt skips a record with a bad data CRC and counts it', async () => {
    const bad = Buffer.from(good);
    bad[at1 + 12 + 50] ^= 0xff;
    const dec = new TfrecordDecoder({ skipCorrupt: true });
    const out = [...dec.push(bad)];
    dec.end();
    expect(out.map((r) => r.index)).toEqual([0, 2]);
    expect(Buffer.from(out[1].data)).toEqual(recs[2]);
    expect(dec.stats).toMatchObject({ records: 2, skippedRecords: 1 });
  });

  it('--skip-corrupt drops the rest of the stream after a broken frame, and a truncated tail', async () => {
    const bad = Buffer.from(good);
    bad[at1 + 2] ^= 0x10;
    const dec = new TfrecordDecoder({ skipCorrupt: true });
    const out = [...dec.push(bad.subarray(0, 150)), ...dec.push(bad.subarray(150))];
    dec.end();
    expect(out.map((r) => r.index)).toEqual([0]);
    expect(dec.stats.skippedRecords).toBe(1);
    expect(dec.stats.skippedBytes).toBe(good.length - at1);

    const dec2 = new TfrecordDecoder({ skipCorrupt: true });
    const out2 = dec2.push(good.subarray(0, good.length - 3));
    dec2.end();
    expect(out2.length).toBe(2);
    expect(dec2.stats.skippedBytes).toBe(16 + 300 - 3);
  });
});

describe('gzip and memory', () => {
  const dir = tempDir();

  it('reads a gzip TFRecord written by zlib', async () => {
    const recs = [Buffer.from('x'), Buffer.alloc(5000, 9)];
    const file = path.join(dir, 'a.tfrecord.gz');
    const { writeFileSync } = await import('node:fs');
    writeFileSync(file, gzipSync(frameAll(recs)));
    const { bytes, gzip } = await openBytes(file);
    expect(gzip).toBe(true);
    expect((await collect(decodeTfrecord(bytes))).map((r) => Buffer.from(r.data))).toEqual(recs);
  });

  it('a truncated gzip file is reported as truncated', async () => {
    const file = path.join(dir, 'cut.tfrecord.gz');
    const { writeFileSync } = await import('node:fs');
    const { randomBytes } = await import('node:crypto');
    const gz = gzipSync(frameAll([randomBytes(100000)]));
    writeFileSync(file, gz.subarray(0, gz.length >> 1));
    const { bytes } = await openBytes(file);
    await expect(collect(decodeTfrecord(bytes, { source: file }))).rejects.toMatchObject({ code: 'E_TFRECORD_TRUNCATED' });
  });

  // 40 records of incompressible bytes, so that a cut in the compressed file falls inside the records
  const payloads = Array.from({ length: 40 }, (_, i) => Buffer.from(Array.from({ length: 3000 }, (_, j) => (i * 7919 + j * j * 31 + ((j * 2654435761) >>> 24)) & 0xff)));
  const framed = frameAll(payloads);
  const frameEnds = payloads.map((_, i) => (i + 1) * (16 + 3000));

  /** Records and skips of a file read with --skip-corrupt, and the error without it. */
  async function readBoth(file: string): Promise<{ got: number[]; skipped: VlakitError[]; stats?: TfrecordStats; err: VlakitError }> {
    const skipped: VlakitError[] = [];
    let stats: TfrecordStats | undefined;
    const { bytes } = await openBytes(file);
    const got = (await collect(decodeTfrecord(bytes, { source: file, skipCorrupt: true, onSkip: (e) => skipped.push(e), stats: (s) => (stats = s) }))).map((r) => r.index);
    const plain: number[] = [];
    const err = await (async () => {
      for await (const r of decodeTfrecord((await openBytes(file)).bytes, { source: file })) plain.push(r.index);
    })().then(
      () => {
        throw new Error('expected an error');
      },
      (e: VlakitError) => e,
    );
    expect(plain).toEqual(got); // without --skip-corrupt the same records come out before the error
    return { got, skipped, stats, err };
  }

  it('a truncated gzip stream (a partial download): every complete record before the cut is read, the error names the record and both offsets', async () => {
    const gz = gzipSync(framed);
    for (const frac of [0.13, 0.5, 0.77, 0.999]) {
      const cut = Math.floor(gz.length * frac);
      const file = path.join(dir, `partial-${frac}.tfrecord.gz`);
      writeFileSync(file, gz.subarray(0, cut));
      const avail = gunzipSync(gz.subarray(0, cut), { finishFlush: zlibConstants.Z_SYNC_FLUSH }).length;
      const complete = frameEnds.filter((e) => e <= avail).length;
      const { got, skipped, stats, err } = await readBoth(file);
      expect(got).toEqual([...Array(complete).keys()]);
      expect(err.code).toBe('E_TFRECORD_TRUNCATED');
      expect(err.context).toMatchObject({ file, record: complete, compressedOffset: cut, offset: avail });
      expect(err.message).toContain(`E_TFRECORD_TRUNCATED at record ${complete} (compressed byte ${cut}, uncompressed byte ${avail}) of ${file}: gzip stream ends early`);
      expect(skipped.map((e) => e.message)).toEqual([err.message]);
      expect(stats).toMatchObject({ records: complete, skippedRecords: avail > complete * 3016 ? 1 : 0, lostTail: true });
    }
  });

  it('corrupt gzip data (a bad trailer checksum): E_GZIP with the record and both offsets; the records before it are read', async () => {
    const gz = gzipSync(framed);
    gz[gz.length - 6] ^= 0x40; // inside the CRC-32 of the gzip trailer
    const file = path.join(dir, 'badcrc.tfrecord.gz');
    writeFileSync(file, gz);
    const { got, skipped, err } = await readBoth(file);
    expect(err.code).toBe('E_GZIP');
    expect(err.message).toMatch(new RegExp(`^E_GZIP at record ${got.length} \\(compressed byte \\d+, uncompressed byte \\d+\\) of .*badcrc\\.tfrecord\\.gz: gzip data is corrupt \\(incorrect data check\\)`));
    expect(err.context.compressedOffset).toBeLessThanOrEqual(gz.length);
    expect(got).toEqual([...Array(got.length).keys()]);
    // records that ended before the reported uncompressed byte were all handed out
    expect(got.length).toBe(frameEnds.filter((e) => e <= err.context.offset!).length);
    expect(got.length).toBeGreaterThan(0);
    expect(skipped).toHaveLength(1);
  });

  it('a gzip stream that fails before its first bytes is E_GZIP at compressed byte 10 or so, from openBytes', async () => {
    const gz = gzipSync(framed);
    gz[10] = 0xff; // the first deflate block header: an invalid block type
    gz[11] = 0xff;
    const file = path.join(dir, 'badblock.tfrecord.gz');
    writeFileSync(file, gz);
    const err = await openBytes(file).then(
      () => undefined,
      (e: VlakitError) => e,
    );
    expect(err?.code).toBe('E_GZIP');
    expect(err?.context).toMatchObject({ file, offset: 0 });
    expect(err?.context.compressedOffset).toBeLessThan(16);
  });

  it('memory stays flat while reading a 256 MiB shard', async () => {
    const file = path.join(dir, 'big.tfrecord');
    const ws = createWriteStream(file);
    const rec = frameTfrecord(Buffer.alloc(64 * 1024, 5));
    for (let i = 0; i < 4096; i++) if (!ws.write(rec)) await new Promise<void>((r) => ws.once('drain', () => r()));
    await new Promise<void>((r) => ws.end(() => r()));
    const base = process.memoryUsage().rss;
    let peak = base;
    let n = 0;
    for await (const _ of decodeTfrecord(readBytes(file))) {
      if (++n % 256 === 0) peak = Math.max(peak, process.memoryUsage().rss);
    }
    expect(n).toBe(4096);
    // The file is 256 MiB; reading it must not hold it: allow generous GC slack, far below the file size.
    expect((peak - base) / 2 ** 20).toBeLessThan(128);
  });
});

describe('crc32c of the length field in plain JS', () => {
  it('agrees with the native CRC for any bytes', async () => {
    const { crc32cSmall } = await import('../../src/lib/io/crc32c.js');
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (b) => {
        expect(crc32cSmall(b, 0, b.length)).toBe(crc32cOf(Buffer.from(b)));
      }),
      { numRuns: 500 },
    );
  });
});
