/**
 * Reading any supported input as a stream of typed records: RLDS dataset directories, TFRecord files (plain or
 * gzip, sniffed), directories and globs of shards, JSON Lines, and stdin.
 */
import path from 'node:path';
import type { z } from 'zod';
import { type ErrorContext, VlakitError, withContext } from '../errors.js';
import { decodeEpisode, inferFeaturesFromExample, looksLikeEpisode } from './episode.js';
import { decodeExample, decodeSequenceExample, sniffExampleKind } from './example.js';
import { flattenFeatures } from './features.js';
import { exampleToJson, sequenceExampleToJson } from './json.js';
import { decodeJsonl } from './jsonl.js';
import { type AnyRecord, parseStepRecord, recordKind } from './records.js';
import { isRldsDir, openRlds, readRlds, type RldsDataset } from './rlds.js';
import { isHdf5, readHdf5 } from './hdf5.js';
import { isLeRobotDir, readLeRobot } from './lerobot.js';
import { displayName, expandInputs, isDirectory, openBytes, sniffHead } from './sources.js';
import { decodeTfrecord, isSourceFailure, looksLikeTfrecord, type TfrecordStats } from './tfrecord.js';

export type InputFormat = 'rlds' | 'tfrecord' | 'jsonl' | 'hdf5';
export type DecodeMode = 'auto' | 'rlds' | 'example' | 'sequence_example' | 'raw';

/** A record with where it came from. `raw` holds the undecoded TFRecord payload when the input was TFRecord. */
export type SourceRecord = AnyRecord & { file: string; line?: number; index?: number; raw?: Uint8Array };

export interface ReadStats {
  files: number;
  records: number;
  /**
   * Episodes decoded from TFRecord inputs without a dataset directory. They are numbered by their record's place
   * across the files (a skipped corrupt record leaves a gap; the episodes after it keep their ids).
   */
  episodes: number;
  /** Bytes read from inputs (after decompression). */
  bytes: number;
  skipped: number;
  skippedBytes: number;
  problems: string[];
}

export interface ReadOptions {
  /** Split of RLDS dataset directories (default train). */
  split?: string;
  verify?: boolean;
  /** Skip corrupt TFRecord records and invalid JSON lines, counting them. */
  skipCorrupt?: boolean;
  /** How TFRecord payloads are decoded (default auto: RLDS episodes, Examples, SequenceExamples, else raw). */
  decode?: DecodeMode;
  signal?: AbortSignal;
  onWarning?: (msg: string) => void;
  /** Decode LeRobot camera features stored as video (default true; inspect reads metadata and parquet only). */
  videos?: boolean;
  /** Called every few hundred records and at the end, for progress views. */
  onProgress?: (stats: ReadStats) => void;
  /** Hears the bytes of input files (TFRecord, JSON Lines, RLDS shards) as they are read, before decompression: progress against their sizes. */
  onRead?: (bytes: number) => void;
  /**
   * What JSON Lines step records are validated with where they are read (default StepRecordSchema). readValidated
   * passes the command's step schema (an extension of StepRecordSchema), so that each step is validated once.
   */
  stepSchema?: z.ZodType;
  /**
   * Asked before each episode of an RLDS dataset or a TFRecord file of episodes is decoded: true skips it (neither
   * decoded nor yielded). --shard's filter (io/shard.ts) answers it, so that a shard does not decode the others'.
   */
  skipEpisode?: (id: string | number) => boolean;
}

export function newStats(): ReadStats {
  return { files: 0, records: 0, episodes: 0, bytes: 0, skipped: 0, skippedBytes: 0, problems: [] };
}

/** Detects an input's format without consuming it (directories: RLDS only). */
export function sniffFormat(head: Uint8Array): InputFormat | undefined {
  if (looksLikeTfrecord(head)) return 'tfrecord';
  if (isHdf5(head)) return 'hdf5';
  for (const b of head) {
    if (b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09) continue;
    return b === 0x7b ? 'jsonl' : undefined;
  }
  return undefined;
}

/** The RLDS datasets among the inputs (the rest are files). */
export function rldsInputs(inputs: string[]): RldsDataset[] {
  return inputs.filter((i) => i !== '-' && isDirectory(i) && isRldsDir(i)).map(openRlds);
}

/**
 * Streams every record of every input, in order.
 * @example for await (const r of readRecords(['data/bridge/1.0.0'], {split: 'train'}, stats)) if (r.kind === 'step') ...
 */
export async function* readRecords(inputs: string[], opts: ReadOptions = {}, stats: ReadStats = newStats()): AsyncGenerator<SourceRecord> {
  if (!opts.onProgress) {
    yield* readAll(inputs, opts, stats);
    return;
  }
  let last = 0;
  for await (const r of readAll(inputs, opts, stats)) {
    if (stats.records - last >= 256) {
      last = stats.records;
      opts.onProgress(stats);
    }
    yield r;
  }
  opts.onProgress(stats);
}

/** What the files of one job share: the files themselves (a shard's format is known from the others) and numbering. */
interface ReadContext {
  files: string[];
  formats: Map<string, InputFormat | undefined>;
  /** Episodes of bare TFRecord files (without a dataset directory) are numbered across files from here. */
  episodeBase: number;
  /** A file whose tail was lost: the number of episodes it held is unknown, so later ids may be too low. */
  lostTailIn?: string;
  warnedIds: boolean;
}

async function* readAll(inputs: string[], opts: ReadOptions, stats: ReadStats): AsyncGenerator<SourceRecord> {
  const onSkip = (e: VlakitError): void => {
    stats.skipped += 1;
    if (stats.problems.length < 20) stats.problems.push(e.message);
    opts.onWarning?.(`skipped: ${e.message}`);
  };
  const ctx: ReadContext = { files: [], formats: new Map(), episodeBase: 0, warnedIds: false };
  const expanded: (string[] | RldsDataset | { lerobot: string })[] = [];
  for (const input of inputs) {
    if (input !== '-' && isDirectory(input) && isRldsDir(input)) {
      expanded.push(openRlds(input));
    } else if (input !== '-' && isDirectory(input) && isLeRobotDir(input)) {
      expanded.push({ lerobot: input });
    } else {
      const files = await expandInputs([input]);
      expanded.push(files);
      ctx.files.push(...files.filter((f) => f !== '-'));
    }
  }
  for (const item of expanded) {
    if ('lerobot' in item) {
      stats.files += 1;
      for await (const step of readLeRobot(item.lerobot, { signal: opts.signal, onWarning: opts.onWarning, videos: opts.videos })) {
        stats.records += 1;
        yield { kind: 'step', value: step, file: item.lerobot };
      }
      continue;
    }
    if (!Array.isArray(item)) {
      const ds = item;
      stats.files += 1;
      for await (const step of readRlds(ds, {
        split: opts.split,
        verify: opts.verify,
        skipCorrupt: opts.skipCorrupt,
        onSkip,
        signal: opts.signal,
        onRead: opts.onRead,
        skipEpisode: opts.skipEpisode,
        onStats: (_f, s) => {
          stats.bytes += s.bytes;
          stats.skippedBytes += s.skippedBytes;
        },
      })) {
        stats.records += 1;
        yield { kind: 'step', value: step, file: ds.dir };
      }
      continue;
    }
    for (const file of item) {
      stats.files += 1;
      yield* readFile(file, opts, stats, onSkip, ctx);
    }
  }
}

/** A TFRecord shard name (`x.tfrecord`, `x.tfrecord.gz`, `x.tfrecord-00001-of-00004`, TFX's `data_tfrecord-00000-of-00001.gz`). */
const TFRECORD_NAME = /(^|[._-])tfrecords?([._-]|$)/i;
const JSONL_NAME = /\.(jsonl|ndjson)(\.gz)?$/i;

/** Shards of one set share their name up to the numbers in it (`part-00001-of-00004`, `data.tfrecord-3.gz`). */
const shardStem = (file: string): string => path.basename(file).replace(/\d+/g, '#');

/**
 * The format of a file whose first bytes are no TFRecord header, from context: its name, or the other shards of
 * its set in the same job. A TFRecord shard whose first header is corrupt is then read as TFRecord and fails (or
 * is skipped) as a corrupt record at byte 0, not as an unknown format.
 */
async function formatFromContext(file: string, sniffed: InputFormat | undefined, ctx: ReadContext): Promise<InputFormat | undefined> {
  if (file === '-') return sniffed;
  const base = path.basename(file);
  if (JSONL_NAME.test(base)) return sniffed ?? 'jsonl';
  if (TFRECORD_NAME.test(base)) return 'tfrecord'; // a first byte flipped to '{' included
  if (sniffed !== undefined) return sniffed;
  const stem = shardStem(file);
  for (const other of ctx.files) {
    if (other === file || shardStem(other) !== stem) continue;
    if (!ctx.formats.has(other)) ctx.formats.set(other, sniffFormat(await sniffHead(other)));
    if (ctx.formats.get(other) === 'tfrecord') return 'tfrecord';
  }
  return undefined;
}

async function* readFile(file: string, opts: ReadOptions, stats: ReadStats, onSkip: (e: VlakitError) => void, ctx: ReadContext): AsyncGenerator<SourceRecord> {
  const name = displayName(file);
  let opened: Awaited<ReturnType<typeof openBytes>>;
  try {
    opened = await openBytes(file, opts.signal, opts.onRead);
  } catch (err) {
    // a gzip stream that fails before its first bytes: nothing of this file can be read
    if (!isSourceFailure(err)) throw err;
    const e = withContext(err, JSONL_NAME.test(path.basename(file)) ? { line: 1 } : { record: 0 }) as VlakitError;
    if (!opts.skipCorrupt) throw e;
    onSkip(e);
    ctx.lostTailIn = name;
    return;
  }
  const { head, bytes } = opened;
  try {
    if (head.length === 0) return;
    let format = sniffFormat(head);
    ctx.formats.set(file, format);
    if (format !== 'tfrecord') format = await formatFromContext(file, format, ctx);
    if (format === 'hdf5') {
      // HDF5 is read by path (random access), not as a stream
      if (file === '-') throw new VlakitError('E_USAGE', 'HDF5 is read from a file, not from stdin', { file: name });
      await bytes.return();
      for await (const step of readHdf5(file, { signal: opts.signal })) {
        stats.records += 1;
        yield { kind: 'step', value: step, file: name };
      }
      return;
    }
    if (format === 'jsonl') {
      for await (const { value, line } of decodeJsonl(bytes, { source: name, skipInvalid: opts.skipCorrupt, onSkip, signal: opts.signal })) {
        const kind = recordKind(value, { line, file: name });
        stats.records += 1;
        if (kind === 'step') yield { kind, value: parseStepRecord(value, { line, file: name }, opts.stepSchema), file: name, line };
        else yield { kind, value, file: name, line } as SourceRecord;
      }
      return;
    }
    if (format !== 'tfrecord') {
      throw new VlakitError(
        'E_FORMAT_UNKNOWN',
        'unrecognised input: expected TFRecord (plain or gzip), JSON Lines, HDF5 (robomimic/LIBERO layout), or an RLDS dataset directory (if it is a TFRecord file, the header of its first record is corrupt)',
        { file: name },
      );
    }
    yield* readTfrecord(bytes, name, opts, stats, onSkip, ctx);
  } finally {
    await bytes.return();
  }
}

async function* readTfrecord(
  bytes: AsyncIterable<Uint8Array>,
  name: string,
  opts: ReadOptions,
  stats: ReadStats,
  onSkip: (e: VlakitError) => void,
  ctx: ReadContext,
): AsyncGenerator<SourceRecord> {
  let mode: DecodeMode = opts.decode ?? 'auto';
  let fileStats: TfrecordStats | undefined;
  const base = ctx.episodeBase;
  const tf = decodeTfrecord(bytes, {
    source: name,
    verify: opts.verify,
    skipCorrupt: opts.skipCorrupt,
    onSkip,
    signal: opts.signal,
    stats: (st) => {
      stats.skippedBytes += st.skippedBytes;
      fileStats = st;
    },
  });
  try {
    for await (const rec of tf) {
      stats.records += 1;
      stats.bytes += rec.data.length;
      const where = { file: name, record: rec.index, offset: rec.offset };
      if (mode === 'auto') {
        const k = sniffExampleKind(rec.data);
        try {
          mode = k === 'unknown' ? 'raw' : k === 'sequence_example' ? 'sequence_example' : looksLikeEpisode(decodeExample(rec.data)) ? 'rlds' : 'example';
        } catch (err) {
          throw withContext(err, where);
        }
      }
      if (mode === 'rlds') {
        if (ctx.lostTailIn && !ctx.warnedIds) {
          ctx.warnedIds = true;
          const msg = `episode ids from ${name} on may be lower than the source's: the tail lost from ${ctx.lostTailIn} held an unknown number of episodes (read the dataset directory, whose dataset_info.json has the shard lengths, to keep them)`;
          if (stats.problems.length < 20) stats.problems.push(msg);
          opts.onWarning?.(msg);
        }
        if (opts.skipEpisode?.(base + rec.index)) {
          stats.episodes += 1;
          continue;
        }
        let steps;
        try {
          const ex = decodeExample(rec.data);
          // the source's numbering: the record's place in the files, so a skipped episode leaves a gap
          steps = decodeEpisode(ex, flattenFeatures(inferFeaturesFromExample(ex)), base + rec.index);
        } catch (err) {
          throw withContext(err, where);
        }
        stats.episodes += 1;
        for (const s of steps) yield { kind: 'step', value: s, file: name, index: rec.index };
      } else {
        yield lazyRecord(mode, rec.data, name, rec.index, where);
      }
    }
  } finally {
    await tf.return(undefined);
    if (fileStats) {
      ctx.episodeBase = base + fileStats.records + fileStats.skippedRecords;
      if (fileStats.lostTail) ctx.lostTailIn = name;
    }
  }
}

const DECODERS = {
  raw: (b: Uint8Array) => ({ b64: Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64') }),
  example: (b: Uint8Array) => exampleToJson(decodeExample(b)),
  sequence_example: (b: Uint8Array) => sequenceExampleToJson(decodeSequenceExample(b)),
} as const;

/**
 * A TFRecord payload whose JSON `value` is decoded on first access only, so that TFRecord -> TFRecord passes the
 * bytes through without decoding them.
 */
function lazyRecord(kind: keyof typeof DECODERS, raw: Uint8Array, file: string, index: number, where: ErrorContext): SourceRecord {
  let value: unknown;
  const rec = { kind, file, index, raw } as SourceRecord;
  Object.defineProperty(rec, 'value', {
    enumerable: true,
    get() {
      if (value === undefined) {
        try {
          value = DECODERS[kind](raw);
        } catch (err) {
          throw withContext(err, where);
        }
      }
      return value;
    },
  });
  return rec;
}

/**
 * The records of one kind from the inputs; any other kind stops with a clear error naming what the command reads.
 * `stats` counts what was read and skipped (with `skipCorrupt`, a command exits 3 when `stats.skipped > 0`).
 * @example for await (const r of readKind(['steps.jsonl'], 'step', 'annotate reads step records')) ...
 */
export async function* readKind(
  inputs: string[],
  kind: SourceRecord['kind'],
  what: string,
  opts: ReadOptions = {},
  stats: ReadStats = newStats(),
): AsyncGenerator<SourceRecord> {
  for await (const r of readRecords(inputs, opts, stats)) {
    if (r.kind !== kind) throw new VlakitError('E_USAGE', `${what}, found a ${r.kind} record`, { file: r.file, line: r.line, record: r.index });
    yield r;
  }
}
