/**
 * TFRecord framing: for each record, uint64 length (LE), masked crc32c of those 8 bytes, the data, masked crc32c of
 * the data. A pure incremental decoder (`TfrecordDecoder`) is the core; `decodeTfrecord` adapts it to async
 * iterables of byte chunks. Records are views into the input chunks when they fit in one chunk (no copy).
 */
import { VlakitError } from '../errors.js';
import { crc32cSmall, maskCrc, maskedCrc32c } from './crc32c.js';

export interface TfRecord {
  /** The record's payload. May be a view into an input chunk: input chunks must not be reused by the producer. */
  data: Uint8Array;
  /** 0-based index of the record in its stream. */
  index: number;
  /** Byte offset of the record's header in the (decompressed) stream. */
  offset: number;
}

export interface TfrecordDecodeOptions {
  /** Name used in error messages. */
  source?: string;
  /** Verify both CRCs (default true). */
  verify?: boolean;
  /** Skip a record whose data CRC fails; on a broken frame, skip the rest of the stream. Counted in `stats`. */
  skipCorrupt?: boolean;
  /** Largest record accepted (default 2 GiB). */
  maxRecordBytes?: number;
  /** Called for each skipped problem, with the error that would have been thrown. */
  onSkip?: (err: VlakitError) => void;
}

export interface TfrecordStats {
  records: number;
  bytes: number;
  skippedRecords: number;
  /** Bytes dropped after a broken frame or a truncated tail. */
  skippedBytes: number;
  /**
   * The rest of the stream was lost (a broken frame, a truncated or corrupt tail): how many records it held is
   * unknown, so `records + skippedRecords` is a lower bound.
   */
  lostTail: boolean;
}

const HEADER = 12;
const FOOTER = 4;
const EMPTY = new Uint8Array(0);

function readU32(b: Uint8Array, at: number): number {
  return (b[at] | (b[at + 1] << 8) | (b[at + 2] << 16) | (b[at + 3] << 24)) >>> 0;
}

/** Incremental decoder: `push` chunks, then `end`. Throws VlakitError on corruption unless skipping. */
export class TfrecordDecoder {
  readonly stats: TfrecordStats = { records: 0, bytes: 0, skippedRecords: 0, skippedBytes: 0, lostTail: false };
  private readonly source: string;
  private readonly verify: boolean;
  private readonly skip: boolean;
  private readonly maxRecord: number;
  private readonly onSkip?: (err: VlakitError) => void;
  /** Stream offset of the first byte not yet consumed into a record (start of `partial` when set). */
  private offset = 0;
  private index = 0;
  /** Bytes of an incomplete record carried over between chunks. */
  private partial: Uint8Array = EMPTY;
  private partialLen = 0;
  /** Total frame size of the carried record, once its header is known. */
  private partialTotal = 0;
  /** After a broken frame while skipping: the rest of the stream is dropped. */
  private dead = false;

  constructor(opts: TfrecordDecodeOptions = {}) {
    this.source = opts.source ?? '<stdin>';
    this.verify = opts.verify ?? true;
    this.skip = opts.skipCorrupt ?? false;
    this.maxRecord = opts.maxRecordBytes ?? 2 ** 31;
    this.onSkip = opts.onSkip;
  }

  /** Feeds one chunk; returns the records completed by it. */
  push(chunk: Uint8Array): TfRecord[] {
    const out: TfRecord[] = [];
    if (this.dead) {
      this.stats.skippedBytes += chunk.length;
      return out;
    }
    let pos = 0;
    if (this.partialLen > 0) {
      pos = this.fillPartial(chunk, out);
      if (pos < 0) return out;
    }
    while (!this.dead && chunk.length - pos >= HEADER) {
      const total = this.frameSize(chunk, pos);
      if (total < 0) break; // frame broken and skipped
      if (chunk.length - pos < total) {
        this.carry(chunk.subarray(pos), total);
        return out;
      }
      this.emit(chunk, pos, total, out);
      pos += total;
    }
    if (this.dead) {
      this.stats.skippedBytes += chunk.length - pos;
    } else if (pos < chunk.length) {
      this.carry(chunk.subarray(pos), 0);
    }
    return out;
  }

  /** Signals the end of input; throws if a record is incomplete (unless skipping). */
  end(): void {
    if (this.partialLen > 0 && !this.dead) {
      const have = this.partialLen;
      const want = this.partialTotal || HEADER;
      const err = new VlakitError(
        'E_TFRECORD_TRUNCATED',
        `file ends inside a record: ${have} of ${want} bytes present${this.partialTotal ? '' : ' (header incomplete)'}`,
        { file: this.source, record: this.index, offset: this.offset },
      );
      this.partialLen = 0;
      this.failOrSkip(err, have);
      this.stats.skippedRecords += 1;
      this.dead = true;
      this.stats.lostTail = true;
    }
  }

  /**
   * The byte source failed (a gzip stream that is corrupt or ends early, with its compressed and uncompressed
   * offsets in the error's context): names the record it broke in; when skipping, every record completed before
   * stays read, the incomplete one is counted as skipped and the rest of the stream is dropped.
   */
  sourceFailed(err: VlakitError): void {
    if (this.dead) return;
    const partial = this.partialLen;
    // A gzip stream that ends early is a truncated TFRecord file (the documented code); corrupt data stays E_GZIP.
    const truncated = (err.cause as { code?: string } | undefined)?.code === 'Z_BUF_ERROR';
    const located = new VlakitError(
      truncated ? 'E_TFRECORD_TRUNCATED' : err.code,
      partial > 0 ? `${err.detail}; record ${this.index} starts at uncompressed byte ${this.offset}` : err.detail,
      { ...err.context, file: err.context.file ?? this.source, record: this.index },
      { cause: err.cause },
    );
    this.partialLen = 0;
    this.partial = EMPTY;
    this.failOrSkip(located, partial);
    if (partial > 0) this.stats.skippedRecords += 1;
    this.dead = true;
    this.stats.lostTail = true;
  }

  /** Returns the whole frame size at `pos`, or -1 when the frame is broken and was skipped. */
  private frameSize(buf: Uint8Array, pos: number): number {
    const lo = readU32(buf, pos);
    const hi = readU32(buf, pos + 4);
    if (this.verify) {
      const expected = readU32(buf, pos + 8);
      const actual = maskCrc(crc32cSmall(buf, pos, 8));
      if (actual !== expected) {
        this.broken(
          new VlakitError(
            'E_TFRECORD_LENGTH_CRC',
            `length CRC mismatch (stored 0x${hex(expected)}, computed 0x${hex(actual)}): the record frame is corrupt`,
            { file: this.source, record: this.index, offset: this.offset },
          ),
        );
        return -1;
      }
    }
    const len = hi * 2 ** 32 + lo;
    if (len > this.maxRecord) {
      this.broken(
        new VlakitError('E_TFRECORD_TOO_LARGE', `record length ${len} exceeds the limit of ${this.maxRecord} bytes`, {
          file: this.source,
          record: this.index,
          offset: this.offset,
        }),
      );
      return -1;
    }
    return HEADER + len + FOOTER;
  }

  private emit(buf: Uint8Array, pos: number, total: number, out: TfRecord[]): void {
    const data = buf.subarray(pos + HEADER, pos + total - FOOTER);
    const at = this.offset;
    const index = this.index;
    this.offset += total;
    this.index += 1;
    if (this.verify) {
      const expected = readU32(buf, pos + total - FOOTER);
      const actual = maskedCrc32c(data);
      if (actual !== expected) {
        const err = new VlakitError(
          'E_TFRECORD_DATA_CRC',
          `data CRC mismatch (stored 0x${hex(expected)}, computed 0x${hex(actual)}) over ${data.length} bytes`,
          { file: this.source, record: index, offset: at },
        );
        this.failOrSkip(err, total);
        this.stats.skippedRecords += 1;
        return;
      }
    }
    this.stats.records += 1;
    this.stats.bytes += data.length;
    out.push({ data, index, offset: at });
  }

  private carry(rest: Uint8Array, total: number): void {
    const cap = Math.max(total, HEADER, rest.length);
    this.partial = new Uint8Array(cap);
    this.partial.set(rest);
    this.partialLen = rest.length;
    this.partialTotal = total;
  }

  /** Completes the carried record from `chunk`; returns the position reached in chunk, or -1 if it needs more. */
  private fillPartial(chunk: Uint8Array, out: TfRecord[]): number {
    let pos = 0;
    if (this.partialTotal === 0) {
      const need = HEADER - this.partialLen;
      const take = Math.min(need, chunk.length);
      this.partial.set(chunk.subarray(0, take), this.partialLen);
      this.partialLen += take;
      pos = take;
      if (this.partialLen < HEADER) return -1;
      const total = this.frameSize(this.partial, 0);
      if (total < 0) {
        this.stats.skippedBytes += this.partialLen + chunk.length - pos;
        this.partialLen = 0;
        return -1;
      }
      this.partialTotal = total;
      if (this.partial.length < total) {
        const grown = new Uint8Array(total);
        grown.set(this.partial.subarray(0, this.partialLen));
        this.partial = grown;
      }
    }
    const take = Math.min(this.partialTotal - this.partialLen, chunk.length - pos);
    this.partial.set(chunk.subarray(pos, pos + take), this.partialLen);
    this.partialLen += take;
    pos += take;
    if (this.partialLen < this.partialTotal) return -1;
    const buf = this.partial;
    const total = this.partialTotal;
    this.partial = EMPTY;
    this.partialLen = 0;
    this.partialTotal = 0;
    this.emit(buf, 0, total, out);
    return pos;
  }

  /** A broken frame: the rest of the stream cannot be framed; callers count the dropped bytes. */
  private broken(err: VlakitError): void {
    this.failOrSkip(err, 0);
    this.stats.skippedRecords += 1;
    this.dead = true;
    this.stats.lostTail = true;
  }

  private failOrSkip(err: VlakitError, bytes: number): void {
    if (!this.skip) throw err;
    this.stats.skippedBytes += bytes;
    this.onSkip?.(err);
  }
}

/** An error of the byte source that a record decoder can place (it carries a compressed offset: gzip). */
export function isSourceFailure(err: unknown): err is VlakitError {
  return err instanceof VlakitError && err.context.compressedOffset !== undefined;
}

function hex(n: number): string {
  return n.toString(16).padStart(8, '0');
}

/**
 * Decodes TFRecord frames from a stream of byte chunks.
 * @example for await (const r of decodeTfrecord(fs.createReadStream('a.tfrecord'))) use(r.data)
 */
export async function* decodeTfrecord(
  chunks: AsyncIterable<Uint8Array>,
  opts: TfrecordDecodeOptions & { stats?: (s: TfrecordStats) => void; signal?: AbortSignal } = {},
): AsyncGenerator<TfRecord> {
  const dec = new TfrecordDecoder(opts);
  const it = chunks[Symbol.asyncIterator]();
  try {
    for (;;) {
      let r: IteratorResult<Uint8Array>;
      try {
        r = await it.next();
      } catch (err) {
        if (!isSourceFailure(err)) throw err;
        dec.sourceFailed(err); // throws unless skipping
        break;
      }
      if (r.done) {
        dec.end();
        break;
      }
      opts.signal?.throwIfAborted();
      const recs = dec.push(r.value);
      for (let i = 0; i < recs.length; i++) yield recs[i];
    }
  } finally {
    await it.return?.();
    opts.stats?.(dec.stats);
  }
}

/** The full frame (header, data, footer) of one record. */
export function frameTfrecord(data: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(HEADER + data.length + FOOTER);
  const len = data.length;
  out.writeUInt32LE(len >>> 0, 0);
  out.writeUInt32LE(Math.floor(len / 2 ** 32), 4);
  out.writeUInt32LE(maskCrc(crc32cSmall(out, 0, 8)), 8);
  out.set(data, HEADER);
  out.writeUInt32LE(maskedCrc32c(data), HEADER + len);
  return out;
}

/** Frames every record of an iterable. */
export async function* encodeTfrecord(records: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): AsyncGenerator<Buffer> {
  for await (const r of records) yield frameTfrecord(r);
}

/** True when the first bytes hold a valid TFRecord header (length CRC matches). */
export function looksLikeTfrecord(head: Uint8Array): boolean {
  return head.length >= HEADER && maskCrc(crc32cSmall(head, 0, 8)) === readU32(head, 8);
}
