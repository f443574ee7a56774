/**
 * Where bytes come from: files, directories of shards, globs and stdin, with gzip sniffed from the magic bytes.
 */
import { promises as fsp, statSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { constants as zlibConstants, createGunzip, gunzipSync } from 'node:zlib';
import fg from 'fast-glob';
import { VlakitError } from '../errors.js';
import { looksLikeTfrecord } from './tfrecord.js';

/** Chunk size for file reads: large enough that framing and CRC work, not syscalls, dominate. */
export const READ_CHUNK = 4 << 20;
/** Reads kept in flight ahead of the consumer, so that disk/page-cache copies overlap with decoding. */
const READ_AHEAD = 2;

export type ByteSource = AsyncIterable<Uint8Array>;

/** With a meter (progress): the slices a chunk is handed out in, so that the count moves every MiB. */
const METER_SLICE = 1 << 20;

/**
 * Reads a file as chunks; `-` reads stdin. `onRead` hears the bytes the consumer is done with (the read-ahead is not
 * counted; a slice counts when the next one is asked for): progress against the file's size.
 */
export function readBytes(file: string, signal?: AbortSignal, onRead?: (bytes: number) => void): ByteSource {
  if (file === '-') return process.stdin as AsyncIterable<Uint8Array>;
  return (async function* () {
    let fh: FileHandle;
    try {
      fh = await fsp.open(file, 'r');
    } catch (err) {
      throw ioError(err, file);
    }
    const ahead: Promise<{ bytesRead: number; buffer: Buffer }>[] = [];
    try {
      let pos = 0;
      const issue = (): void => {
        ahead.push(fh.read(Buffer.allocUnsafeSlow(READ_CHUNK), 0, READ_CHUNK, pos));
        pos += READ_CHUNK;
      };
      for (let i = 0; i < READ_AHEAD; i++) issue();
      for (;;) {
        signal?.throwIfAborted();
        const r = await ahead.shift()!;
        if (r.bytesRead === 0) break;
        issue();
        // Each chunk is a fresh buffer: records handed out as views into it stay valid.
        const chunk = r.bytesRead === READ_CHUNK ? r.buffer : r.buffer.subarray(0, r.bytesRead);
        if (!onRead) {
          yield chunk;
          continue;
        }
        // metered: in slices, each counted when the consumer asks for the next one (it is done with it by then)
        for (let at = 0; at < chunk.length; at += METER_SLICE) {
          const slice = chunk.subarray(at, at + METER_SLICE);
          yield slice;
          onRead(slice.length);
        }
      }
      await Promise.allSettled(ahead);
    } catch (err) {
      throw ioError(err, file);
    } finally {
      // Stopped early (`| head`, an error downstream): reads still in flight must not reject unheard.
      for (const p of ahead) p.catch(() => {});
      await fh.close();
    }
  })();
}

export function ioError(err: unknown, file: string): unknown {
  const e = err as NodeJS.ErrnoException;
  if (e?.code === 'ENOENT') return new VlakitError('E_NOT_FOUND', 'no such file or directory', { file }, { cause: err });
  if (e?.code === 'EISDIR') return new VlakitError('E_IO', 'is a directory, expected a file', { file }, { cause: err });
  if (e?.code === 'EACCES') return new VlakitError('E_IO', 'permission denied', { file }, { cause: err });
  return err;
}

/**
 * A chunk stream that can be closed before it is read to the end (or read at all): `return()` closes the file or
 * stream underneath. Every reader that stops early calls it (`for await` does on `break` and on errors).
 */
export interface ClosableSource extends AsyncIterableIterator<Uint8Array> {
  return(): Promise<IteratorResult<Uint8Array>>;
}

/** Takes at least `n` bytes (or all, if shorter) off the front of a chunk stream without losing any. */
export async function peek(src: ByteSource, n: number): Promise<{ head: Uint8Array; rest: ClosableSource }> {
  const it = src[Symbol.asyncIterator]();
  const taken: Uint8Array[] = [];
  let have = 0;
  let done = false;
  try {
    while (have < n) {
      const r = await it.next();
      if (r.done) {
        done = true;
        break;
      }
      taken.push(r.value);
      have += r.value.length;
    }
  } catch (err) {
    await it.return?.();
    throw err;
  }
  const head = taken.length === 1 ? taken[0] : Buffer.concat(taken);
  // A plain object, not a generator: a generator that was never started ignores return() and would leave the
  // file underneath open until garbage collection (DEP0137).
  const rest: ClosableSource = {
    [Symbol.asyncIterator]() {
      return this;
    },
    async next() {
      if (taken.length) return { done: false, value: taken.shift()! };
      if (done) return { done: true, value: undefined };
      try {
        const r = await it.next();
        if (r.done) done = true;
        return r;
      } catch (err) {
        done = true;
        await it.return?.();
        throw err;
      }
    },
    async return() {
      taken.length = 0;
      if (!done) {
        done = true;
        await it.return?.();
      }
      return { done: true, value: undefined };
    },
  };
  return { head, rest };
}

export function isGzip(head: Uint8Array): boolean {
  // A raw TFRecord whose first length happens to start with the gzip magic still has a valid length CRC.
  return head.length >= 3 && head[0] === 0x1f && head[1] === 0x8b && head[2] === 0x08 && !looksLikeTfrecord(head);
}

/** Compressed bytes fed to zlib at a time: bounds the output held in memory (deflate expands at most ~1032x). */
const GUNZIP_SLICE = 64 << 10;
const GUNZIP_CHUNK = 1 << 20;

/**
 * Decompresses a gzip chunk stream. Everything decompressed before a failure is handed out first; the failure is
 * then an `E_GZIP` error whose context holds the compressed byte where zlib stopped (`compressedOffset`) and the
 * uncompressed bytes handed out (`offset`), so that the record decoders can name the record and skip the rest.
 */
export async function* gunzip(src: ByteSource, name: string): AsyncGenerator<Uint8Array> {
  const z = createGunzip({ chunkSize: GUNZIP_CHUNK });
  const out: Buffer[] = [];
  let failure: (Error & { code?: string }) | undefined;
  z.on('data', (b: Buffer) => out.push(b));
  z.on('error', (e) => {
    failure ??= e;
  });
  let produced = 0;
  const it = src[Symbol.asyncIterator]();
  const settle = (start: (done: () => void) => void): Promise<void> =>
    new Promise<void>((resolve) => {
      const done = (): void => {
        z.off('error', done);
        z.off('end', done);
        resolve();
      };
      z.once('error', done);
      z.once('end', done);
      start(done);
    });
  try {
    input: for (;;) {
      const r = await it.next();
      if (r.done) break;
      for (let at = 0; at < r.value.length; at += GUNZIP_SLICE) {
        const slice = r.value.subarray(at, at + GUNZIP_SLICE);
        await settle((done) => z.write(slice, () => done()));
        while (out.length) {
          const b = out.shift()!;
          produced += b.length;
          yield b;
        }
        if (failure) break input;
      }
    }
    if (!failure) await settle(() => z.end());
    while (out.length) {
      const b = out.shift()!;
      produced += b.length;
      yield b;
    }
    if (failure) throw gzipError(failure, name, z.bytesWritten, produced);
  } finally {
    z.destroy();
    await it.return?.();
  }
}

function gzipError(err: Error & { code?: string }, file: string, compressedOffset: number, offset: number): VlakitError {
  const truncated = err.code === 'Z_BUF_ERROR' || /unexpected end of file/.test(err.message);
  const detail = truncated ? 'gzip stream ends early (file truncated?)' : `gzip data is corrupt (${err.message})`;
  return new VlakitError('E_GZIP', detail, { file, compressedOffset, offset }, { cause: err });
}

/**
 * Bytes of a file or stdin, decompressed when gzip. `bytes.return()` closes the file when it is not read to the end.
 * `onRead` counts the file's own (compressed) bytes as they are used.
 */
export async function openBytes(file: string, signal?: AbortSignal, onRead?: (bytes: number) => void): Promise<{ head: Uint8Array; bytes: ClosableSource; gzip: boolean }> {
  const { head, rest } = await peek(readBytes(file, signal, onRead), 16);
  if (!isGzip(head)) return { head, bytes: rest, gzip: false };
  const inner = await peek(gunzip(rest, displayName(file)), 16);
  return { head: inner.head, bytes: inner.rest, gzip: true };
}

/** The first (decompressed) bytes of a file, for telling its format; never throws. */
export async function sniffHead(file: string, n = 16): Promise<Uint8Array> {
  let fh: FileHandle | undefined;
  try {
    fh = await fsp.open(file, 'r');
    const buf = Buffer.alloc(64 << 10);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    const head = buf.subarray(0, bytesRead);
    if (!isGzip(head)) return head.subarray(0, n);
    return gunzipSync(head, { finishFlush: zlibConstants.Z_SYNC_FLUSH }).subarray(0, n);
  } catch {
    return new Uint8Array(0);
  } finally {
    await fh?.close().catch(() => {});
  }
}

export function displayName(file: string): string {
  return file === '-' ? '<stdin>' : file;
}

export function isDirectory(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/**
 * Expands inputs into files: a glob, a directory (its files, sorted) or a file. `-` stays stdin.
 * Throws E_NOT_FOUND when something names nothing.
 */
export async function expandInputs(inputs: string[]): Promise<string[]> {
  const files: string[] = [];
  for (const input of inputs) {
    if (input === '-') {
      files.push(input);
    } else if (fg.isDynamicPattern(input)) {
      let found: string[];
      try {
        found = (await fg(input, { onlyFiles: true, dot: false })).sort();
      } catch (err) {
        throw new VlakitError('E_USAGE', `invalid glob pattern (${(err as Error).message})`, { file: input.slice(0, 200) }, { cause: err });
      }
      if (found.length === 0) throw new VlakitError('E_NOT_FOUND', 'the pattern matches no file', { file: input });
      files.push(...found);
    } else if (isDirectory(input)) {
      const names = (await fsp.readdir(input, { withFileTypes: true }))
        .filter((d) => d.isFile() && !d.name.startsWith('.') && !d.name.endsWith('.json'))
        .map((d) => path.join(input, d.name))
        .sort();
      if (names.length === 0) throw new VlakitError('E_NOT_FOUND', 'the directory holds no record file', { file: input });
      files.push(...names);
    } else {
      try {
        await fsp.access(input);
      } catch (err) {
        throw ioError(err, input);
      }
      files.push(input);
    }
  }
  return files;
}
