/**
 * JSON Lines: one JSON value per line. `JsonlDecoder` is the pure core (bytes in, parsed lines out, any split of
 * the bytes gives the same values); `decodeJsonl` and `encodeJsonl` adapt it to async iterables.
 */
import { isAscii, isUtf8 } from 'node:buffer';
import { VlakitError } from '../errors.js';
import { isSourceFailure } from './tfrecord.js';

export interface JsonlLine {
  value: unknown;
  /** 1-based line number. */
  line: number;
}

export interface JsonlDecodeOptions {
  source?: string;
  /** Skip lines that are not valid JSON instead of failing; each is passed to onSkip. */
  skipInvalid?: boolean;
  onSkip?: (err: VlakitError) => void;
}

/**
 * Where the first ill-formed UTF-8 sequence of `b[start, end)` begins, or -1 when all of it is UTF-8 (the
 * well-formed byte sequences of the Unicode standard, table 3-7: no overlong forms, no surrogates, nothing above
 * U+10FFFF, no sequence cut short).
 */
export function firstInvalidUtf8(b: Uint8Array, start = 0, end = b.length): number {
  let i = start;
  while (i < end) {
    const c = b[i];
    if (c < 0x80) {
      i += 1;
      continue;
    }
    let n: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) n = 1;
    else if (c >= 0xe0 && c <= 0xef) {
      n = 2;
      if (c === 0xe0) lo = 0xa0;
      else if (c === 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 3;
      if (c === 0xf0) lo = 0x90;
      else if (c === 0xf4) hi = 0x8f;
    } else return i;
    if (i + n >= end) return i; // cut short
    if (b[i + 1] < lo || b[i + 1] > hi) return i;
    for (let k = 2; k <= n; k++) if (b[i + k] < 0x80 || b[i + k] > 0xbf) return i;
    i += n + 1;
  }
  return -1;
}

function hexBytes(b: Uint8Array, at: number, end: number): string {
  const n = Math.min(4, end - at);
  return Array.from(b.subarray(at, at + n), (x) => `0x${x.toString(16).padStart(2, '0')}`).join(' ');
}

/**
 * Cuts each chunk after its last '\n' (a byte never found inside a UTF-8 multi-byte sequence), decodes the complete
 * lines in one call and parses them one by one; the bytes after the last newline wait for the next chunk. Decoding
 * is strict: a line that is not UTF-8 is an error naming its line and byte offset (never U+FFFD), or, with
 * `skipInvalid`, skipped and counted like a line that is not JSON.
 */
export class JsonlDecoder {
  /** Bytes of an incomplete last line, carried to the next chunk. */
  private carry: Buffer[] = [];
  private line = 0;
  /** Stream offset of the first byte not yet decoded (the start of `carry`). */
  private offset = 0;
  private dead = false;
  private readonly source: string;
  skipped = 0;
  constructor(private readonly opts: JsonlDecodeOptions = {}) {
    this.source = opts.source ?? '<stdin>';
  }

  push(chunk: Uint8Array): JsonlLine[] {
    if (this.dead) return [];
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    const last = buf.lastIndexOf(10);
    if (last < 0) {
      this.carry.push(buf);
      return [];
    }
    let bytes: Buffer;
    if (this.carry.length) {
      this.carry.push(buf.subarray(0, last + 1));
      bytes = Buffer.concat(this.carry);
      this.carry = [];
    } else {
      bytes = buf.subarray(0, last + 1);
    }
    if (last + 1 < buf.length) this.carry.push(buf.subarray(last + 1));
    return this.decode(bytes);
  }

  end(): JsonlLine[] {
    if (this.dead || !this.carry.length) return [];
    this.carry.push(NEWLINE);
    const bytes = Buffer.concat(this.carry);
    this.carry = [];
    return this.decode(bytes);
  }

  /**
   * The byte source failed (a gzip stream that is corrupt or ends early): names the line it broke in; when
   * skipping, the lines completed before stay read, the incomplete one is counted as skipped, the rest is dropped.
   */
  sourceFailed(err: VlakitError): void {
    if (this.dead) return;
    const partial = this.carry.length > 0;
    const e = new VlakitError(err.code, err.detail, { ...err.context, file: err.context.file ?? this.source, line: this.line + 1 }, { cause: err.cause });
    this.carry = [];
    this.dead = true;
    if (!this.opts.skipInvalid) throw e;
    if (partial) this.skipped += 1;
    this.opts.onSkip?.(e);
  }

  /** Decodes '\n'-terminated lines: pure ASCII (the usual JSONL: base64 images, numbers) takes the one-byte path. */
  private decode(bytes: Buffer): JsonlLine[] {
    const base = this.offset;
    this.offset += bytes.length;
    if (isAscii(bytes)) return this.lines(bytes.toString('latin1'));
    if (isUtf8(bytes)) return this.lines(bytes.toString('utf8'));
    // Some line is not UTF-8: line by line, to name it and keep the others.
    const out: JsonlLine[] = [];
    let start = 0;
    while (start < bytes.length) {
      const nl = bytes.indexOf(10, start);
      const bad = firstInvalidUtf8(bytes, start, nl);
      if (bad < 0) {
        out.push(...this.lines(bytes.toString('utf8', start, nl + 1)));
      } else {
        this.line += 1;
        this.fail(
          new VlakitError(
            'E_JSONL_PARSE',
            `invalid UTF-8 (${hexBytes(bytes, bad, nl)} at byte ${bad - start} of the line); JSON Lines must be UTF-8 text`,
            { file: this.source, line: this.line, offset: base + bad },
          ),
        );
      }
      start = nl + 1;
    }
    return out;
  }

  /** Parses every '\n'-terminated line of `text`. */
  private lines(text: string): JsonlLine[] {
    const out: JsonlLine[] = [];
    let start = 0;
    for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n', start)) {
      this.line += 1;
      const end = nl > start && text.charCodeAt(nl - 1) === 13 ? nl - 1 : nl; // CRLF
      if (end > start) this.parse(text.slice(start, end), out);
      start = nl + 1;
    }
    return out;
  }

  private parse(text: string, out: JsonlLine[]): void {
    if (text.charCodeAt(0) <= 32 && text.trim() === '') return;
    try {
      out.push({ value: JSON.parse(text), line: this.line });
    } catch (err) {
      this.fail(
        new VlakitError('E_JSONL_PARSE', `invalid JSON (${(err as Error).message}); expected one JSON value per line`, { file: this.source, line: this.line }, { cause: err }),
      );
    }
  }

  private fail(e: VlakitError): void {
    if (!this.opts.skipInvalid) throw e;
    this.skipped += 1;
    this.opts.onSkip?.(e);
  }
}

const NEWLINE = Buffer.from('\n');

/** Parses JSON Lines from byte chunks. Blank lines are allowed and ignored. */
export async function* decodeJsonl(
  chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  opts: JsonlDecodeOptions & { signal?: AbortSignal } = {},
): AsyncGenerator<JsonlLine> {
  const dec = new JsonlDecoder(opts);
  const it = Symbol.asyncIterator in chunks ? chunks[Symbol.asyncIterator]() : (chunks as Iterable<Uint8Array>)[Symbol.iterator]();
  try {
    for (;;) {
      let r: IteratorResult<Uint8Array>;
      try {
        r = await it.next();
      } catch (err) {
        if (!isSourceFailure(err)) throw err;
        dec.sourceFailed(err); // throws unless skipping
        return;
      }
      if (r.done) break;
      opts.signal?.throwIfAborted();
      const lines = dec.push(r.value);
      for (let i = 0; i < lines.length; i++) yield lines[i];
    }
    yield* dec.end();
  } finally {
    await it.return?.();
  }
}

/** JSON.stringify that writes bigints as numbers' decimal strings (never loses them silently). */
export function stringifyRecord(v: unknown): string {
  return JSON.stringify(v, bigintReplacer);
}

function bigintReplacer(_k: string, x: unknown): unknown {
  return typeof x === 'bigint' ? x.toString() : x;
}

/** Serializes records as JSON Lines, batched into strings of about `batchBytes` for fewer writes. */
export async function* encodeJsonl(
  records: AsyncIterable<unknown> | Iterable<unknown>,
  batchBytes = 1 << 16,
): AsyncGenerator<string> {
  let buf = '';
  for await (const r of records) {
    buf += stringifyRecord(r) + '\n';
    if (buf.length >= batchBytes) {
      yield buf;
      buf = '';
    }
  }
  if (buf) yield buf;
}
