/**
 * Output files written whole or not at all: data goes to a temporary file beside the target and is renamed into
 * place on commit; on abort the temporary file is removed. The sharded TFRecord writer builds on it. Claiming an
 * output (existing outputs, inputs, --overwrite) is io/outputs.ts's job: these writers write where they are told.
 */
import { createWriteStream, openSync, promises as fsp, type WriteStream } from 'node:fs';
import { once } from 'node:events';
import { createGzip, type Gzip } from 'node:zlib';
import { VlakitError } from '../errors.js';
import { claimOutput, type OutputOptions, swapFileIn, tempNameFor, trackTemporary, untrackTemporary, writeError } from './outputs.js';
import { frameTfrecord } from './tfrecord.js';

export interface AtomicFileOptions {
  gzip?: boolean;
  /** Write `target` in place (a device or a pipe such as /dev/null): no temporary name, no rename. */
  direct?: boolean;
  /** The temporary name (default: `.NAME.tmp-PID-N` beside the target). */
  tmp?: string;
  /**
   * A claimed output's options, passed to the swap at commit (--overwrite, the AbortSignal): without `overwrite`,
   * a file that appeared at `target` meanwhile is refused. Absent, the file is not a claimed output (a file inside
   * a temporary directory, a run's own bookkeeping) and replaces what is there.
   */
  output?: OutputOptions;
}

/** The swap of a file that is not a claimed output: it replaces `target`. */
const UNCLAIMED: OutputOptions = { overwrite: true };

/** A file written through a temporary name; optionally gzip-compressed. */
export class AtomicFile {
  readonly tmp: string;
  private readonly file: WriteStream;
  private readonly gzip?: Gzip;
  private failed: Error | undefined;
  private finished = false;
  bytes = 0;

  constructor(
    readonly target: string,
    private readonly opts: AtomicFileOptions = {},
  ) {
    this.tmp = opts.direct ? target : (opts.tmp ?? tempNameFor(target));
    // opened now: the temporary exists from here on (an exit handler can find it), and EROFS, EACCES or EISDIR
    // surface here, as a clear error, not later from a stream
    let fd: number;
    try {
      fd = openSync(this.tmp, 'w');
    } catch (err) {
      throw writeError(err, target);
    }
    if (!opts.direct) trackTemporary(this.tmp);
    this.file = createWriteStream(this.tmp, { fd, highWaterMark: 1 << 20 });
    this.file.on('error', (e) => (this.failed ??= e));
    if (opts.gzip) {
      this.gzip = createGzip({ level: 6 });
      this.gzip.on('error', (e) => (this.failed ??= e));
      this.gzip.pipe(this.file);
    }
  }

  private get sink(): NodeJS.WritableStream {
    return this.gzip ?? this.file;
  }

  async write(data: Uint8Array | string): Promise<void> {
    if (this.failed) throw this.ioError(this.failed);
    this.bytes += typeof data === 'string' ? Buffer.byteLength(data) : data.length;
    if (!this.sink.write(data)) await this.drained();
    if (this.failed) throw this.ioError(this.failed);
  }

  /** Resolves on 'drain', or when the file fails or closes (the caller then checks `failed`). */
  private drained(): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        this.sink.off('drain', done);
        this.file.off('error', done);
        this.file.off('close', done);
        resolve();
      };
      this.sink.on('drain', done);
      this.file.on('error', done);
      this.file.on('close', done);
    });
  }

  /** Flushes, closes and fsyncs the temporary file (its descriptor is released); the rename is left to commit. */
  async finish(): Promise<void> {
    if (this.finished) return;
    this.finished = true;
    if (this.gzip) {
      this.gzip.end();
    } else {
      this.file.end();
    }
    if (!this.file.closed) await once(this.file, 'close').catch(() => {});
    if (this.failed) throw this.ioError(this.failed);
    if (this.opts.direct) return;
    try {
      const fh = await fsp.open(this.tmp, 'r+');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
    } catch (err) {
      throw this.ioError(err as Error);
    }
  }

  /** Flushes, fsyncs and renames the file into place. */
  async commit(): Promise<void> {
    try {
      await this.finish();
    } catch (err) {
      await this.abort();
      throw err;
    }
    if (!this.opts.direct) await swapFileIn(this.tmp, this.target, this.opts.output ?? UNCLAIMED);
  }

  async abort(): Promise<void> {
    this.gzip?.destroy();
    this.file.destroy();
    if (!this.file.closed) await once(this.file, 'close').catch(() => {});
    if (this.opts.direct) return;
    await fsp.rm(this.tmp, { force: true });
    untrackTemporary(this.tmp);
  }

  private ioError(e: Error): VlakitError {
    return writeError(e, this.target);
  }
}

/**
 * Writes `data` to `target` atomically, replacing what is there (no claim: for files inside a temporary directory,
 * or a run's own files; a command's output goes through `writeOutputFile`).
 */
export async function writeFileAtomic(target: string, data: string | Uint8Array, opts: AtomicFileOptions = {}): Promise<void> {
  const f = new AtomicFile(target, opts);
  try {
    await f.write(data);
    await f.commit();
  } catch (err) {
    await f.abort();
    throw err;
  }
}

/**
 * Writes a whole output file: claims it (existing output, inputs, --overwrite), then writes it atomically.
 * @example await writeOutputFile('stats.json', json, { overwrite: flags.overwrite, inputs, flag: '--stats-out' })
 */
export async function writeOutputFile(target: string, data: string | Uint8Array, opts: OutputOptions = {}): Promise<void> {
  const claim = claimOutput(target, 'file', opts);
  await writeFileAtomic(claim.path, data, { direct: claim.direct, output: opts });
}

export interface ShardedWriterOptions {
  /** Name of shard `index` of `count`; called at commit, when the count is known. */
  shardName: (index: number, count: number) => string;
  /** Start a new shard once the current one holds this many (uncompressed) bytes. */
  maxShardBytes?: number;
  gzip?: boolean;
  /** Temporary name of shard `index` (default: `.NAME.tmp-PID-N` beside its first name). */
  tempName?: (index: number) => string;
  /** --overwrite and the AbortSignal, for the renames at commit. */
  output?: OutputOptions;
  /** One unsharded output written in place (a device or pipe such as /dev/null). */
  direct?: boolean;
}

export interface ShardedResult {
  files: string[];
  /** Records per shard. */
  shardLengths: number[];
  /** Framed bytes per shard (before compression). */
  shardBytes: number[];
}

/** 5-digit (or wider) shard numbering as TFDS writes it: `00003-of-00010`. */
export function shardSuffix(index: number, count: number): string {
  const width = Math.max(5, String(count).length);
  return `${String(index).padStart(width, '0')}-of-${String(count).padStart(width, '0')}`;
}

/**
 * TFRecord shards written through temporary names. Each shard is closed as soon as it is full (one descriptor open
 * at a time, however many shards); all are renamed to their final `-0000i-of-0000n` names only after the last one
 * was written, so a failure leaves no final-named shard: every temporary is removed.
 */
export class ShardedTfrecordWriter {
  private shards: AtomicFile[] = [];
  private lengths: number[] = [];
  private sizes: number[] = [];
  private readonly max: number;

  constructor(private readonly opts: ShardedWriterOptions) {
    this.max = opts.maxShardBytes ?? Infinity;
  }

  /** Opens shard `index` under its temporary name (a seam for tests that make a shard fail). */
  protected open(index: number): AtomicFile {
    const first = this.opts.shardName(index, 0);
    if (this.opts.direct) return new AtomicFile(first, { gzip: this.opts.gzip, direct: true });
    return new AtomicFile(first, { gzip: this.opts.gzip, tmp: this.opts.tempName?.(index) });
  }

  private async next(): Promise<void> {
    const prev = this.shards[this.shards.length - 1];
    if (prev) await prev.finish(); // full: closed now, renamed at commit
    this.shards.push(this.open(this.shards.length));
    this.lengths.push(0);
    this.sizes.push(0);
  }

  async write(record: Uint8Array): Promise<void> {
    const frame = frameTfrecord(record);
    const i = this.shards.length - 1;
    if (i < 0 || (this.sizes[i] > 0 && this.sizes[i] + frame.length > this.max)) await this.next();
    const j = this.shards.length - 1;
    await this.shards[j].write(frame);
    this.lengths[j] += 1;
    this.sizes[j] += frame.length;
  }

  get records(): number {
    return this.lengths.reduce((a, b) => a + b, 0);
  }

  async commit(): Promise<ShardedResult> {
    if (this.shards.length === 0) await this.next();
    await this.shards[this.shards.length - 1].finish();
    this.opts.output?.signal?.throwIfAborted();
    const n = this.shards.length;
    if (this.opts.direct) return { files: [this.opts.shardName(0, 1)], shardLengths: [...this.lengths], shardBytes: [...this.sizes] };
    const files: string[] = [];
    try {
      for (let i = 0; i < n; i++) {
        const final = this.opts.shardName(i, n);
        await swapFileIn(this.shards[i].tmp, final, this.opts.output);
        files.push(final);
      }
    } catch (err) {
      // a rename failed (rare: same directory): take back the shards already renamed, so no partial set remains
      await Promise.all(files.map((f) => fsp.rm(f, { force: true })));
      throw err;
    }
    return { files, shardLengths: [...this.lengths], shardBytes: [...this.sizes] };
  }

  async abort(): Promise<void> {
    await Promise.all(this.shards.map((s) => s.abort()));
  }
}
