/**
 * `convert`: any supported input to JSON Lines, TFRecord (plain, gzip, sharded) or an RLDS dataset directory.
 */
import { promises as fsp, readdirSync } from 'node:fs';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { VlakitError, withContext } from '../errors.js';
import { encodeEpisode, inferFeatures } from './episode.js';
import { encodeExample, encodeSequenceExample } from './example.js';
import { type FeatureNode, flattenFeatures, type Leaf } from './features.js';
import { exampleFromJson, sequenceExampleFromJson } from './json.js';
import { checkOutputFormat, writeJsonl, writeStdout } from './output.js';
import { claimOutput, type OutputOptions, tempNameFor } from './outputs.js';
import { newStats, readRecords, rldsInputs, type ReadOptions, type ReadStats, type SourceRecord } from './read.js';
import type { StepRecord } from './records.js';
import { groupEpisodes, loadFeatures, writeRlds } from './rlds.js';
import { isLeRobotDir, leRobotInfo } from './lerobot.js';
import { writeLeRobot, type WriteLeRobotOptions } from './lerobot-write.js';
import { ShardedTfrecordWriter, shardSuffix } from './writer.js';
import { episodeIdOf, type ShardJob } from './shard.js';

export type OutputFormat = 'jsonl' | 'tfrecord' | 'rlds' | 'lerobot';

export interface ConvertOptions extends ReadOptions, Omit<OutputOptions, 'signal' | 'inputs'> {
  inputs: string[];
  /** A path, or '-' / undefined for stdout (not for rlds). */
  output?: string;
  to?: OutputFormat;
  /** rlds: add the split to an existing dataset directory (its features and name) instead of refusing it. */
  addSplit?: boolean;
  compression?: 'none' | 'gzip';
  /** Shard size limit in bytes for tfrecord and rlds output. */
  maxShardBytes?: number;
  /** Dataset name for rlds output (default: from the directory name). */
  name?: string;
  /** A features.json to write RLDS/TFRecord episodes with (default: the input dataset's, else inferred). */
  featuresFile?: string;
  /** lerobot output: version, fps (default: a LeRobot input's, else 10), camera storage and video codec. */
  lerobot?: Pick<WriteLeRobotOptions, 'version' | 'fps' | 'images' | 'videoCodec' | 'robotType'>;
  /** Where stdout output goes (default process.stdout). */
  stdout?: Writable;
  /** --shard I/N: keep the records of this shard's episodes (records without an episode id are refused). */
  shard?: ShardJob;
  /** The records to write, instead of reading `inputs` (merge); `inputs` are then only what the output must not be. */
  source?: AsyncIterable<SourceRecord>;
}

export interface ConvertSummary {
  to: OutputFormat;
  outputs: string[];
  records: number;
  episodes?: number;
  steps?: number;
  read: ReadStats;
}

/** Picks the output format from the output path when not given: .jsonl, .tfrecord (.gz), else a directory. */
export function outputFormatFor(output: string | undefined): OutputFormat {
  if (!output || output === '-') return 'jsonl';
  const base = path.basename(output).replace(/\.gz$/, '');
  if (/\.(jsonl|ndjson|json)$/.test(base)) return 'jsonl';
  if (/\.(tfrecord|tfrecords|rec)$/.test(base) || /\.tfrecord-\d+/.test(base)) return 'tfrecord';
  return 'rlds';
}

/**
 * Converts inputs to one output format.
 * @example await convert({ inputs: ['bridge/1.0.0'], output: 'steps.jsonl' })
 */
export async function convert(opts: ConvertOptions): Promise<ConvertSummary> {
  checkOutputFormat(opts.to, opts.output);
  const to = opts.to ?? outputFormatFor(opts.output);
  const out: OutputOptions = { overwrite: opts.overwrite, inputs: [...opts.inputs, opts.featuresFile], signal: opts.signal, onNote: opts.onNote, flag: opts.flag };
  const stats = newStats();
  const read = opts.source ?? readRecords(opts.inputs, opts.shard ? { ...opts, skipEpisode: opts.shard.skipEpisode } : opts, stats);
  const records = opts.shard ? opts.shard.filter(read, shardKey, (r) => r) : toGenerator(read);
  const toStdout = !opts.output || opts.output === '-';
  const gzip = opts.compression === 'gzip' || (opts.compression === undefined && !!opts.output?.endsWith('.gz'));
  if (to === 'lerobot') {
    if (toStdout) throw new VlakitError('E_USAGE', 'LeRobot output is a directory: give it with -o DIR');
    const source = opts.inputs.length === 1 && isLeRobotDir(opts.inputs[0]) ? leRobotInfo(opts.inputs[0]) : undefined;
    const res = await writeLeRobot(groupEpisodes(stepsOnly(records, 'a LeRobot dataset')), {
      ...out,
      ...opts.lerobot,
      fps: opts.lerobot?.fps ?? source?.fps,
      robotType: opts.lerobot?.robotType ?? source?.robot_type,
      dir: opts.output!,
      onWarning: opts.onWarning,
    });
    return { to, outputs: [res.dir], records: stats.records, episodes: res.episodes, steps: res.steps, read: stats };
  }
  if (to === 'rlds') {
    if (toStdout) throw new VlakitError('E_USAGE', 'RLDS output is a directory: give it with -o DIR');
    const sources = rldsInputs(opts.inputs);
    const features = opts.featuresFile ? loadFeatures(opts.featuresFile) : sources.length === 1 && opts.inputs.length === 1 ? sources[0].features : undefined;
    const carried = sources.length === 1 ? pick(sources[0].info, ['description', 'citation', 'homepage', 'moduleName']) : {};
    const res = await writeRlds(groupEpisodes(stepsOnly(records, 'an RLDS dataset')), {
      dir: opts.output!,
      name: opts.name ?? (sources.length === 1 && opts.inputs.length === 1 ? sources[0].info.name : undefined),
      split: opts.split,
      addSplit: opts.addSplit,
      features,
      info: carried,
      maxShardBytes: opts.maxShardBytes,
      ...out,
    });
    return { to, outputs: [res.dir], records: stats.records, episodes: res.episodes, steps: res.steps, read: stats };
  }
  if (to === 'jsonl') {
    const values = (async function* () {
      for await (const r of records) yield r.value;
    })();
    await writeJsonl(values, opts.output, { ...out, gzip, stdout: opts.stdout });
    return { to, outputs: [toStdout ? '-' : opts.output!], records: stats.records, read: stats };
  }
  // tfrecord
  const features = opts.featuresFile ? loadFeatures(opts.featuresFile) : undefined;
  const payloads = tfrecordPayloads(records, features);
  if (toStdout) {
    const out = opts.stdout ?? process.stdout;
    if ((out as { isTTY?: boolean }).isTTY) throw new VlakitError('E_USAGE', 'refusing to write binary TFRecord to a terminal; use -o FILE or a pipe');
    const { encodeTfrecord } = await import('./tfrecord.js');
    await writeStdout(encodeTfrecord(payloads.records), opts.stdout);
    return { to, outputs: ['-'], records: stats.records, episodes: payloads.count.episodes || undefined, read: stats };
  }
  const sharded = opts.maxShardBytes !== undefined;
  // sharded, the name itself is not written: only its shards are checked (claimShards)
  const claim = claimOutput(opts.output!, 'file', sharded ? { ...out, overwrite: true } : out);
  const target = claim.path;
  if (sharded && claim.direct) throw new VlakitError('E_USAGE', `--shard-size writes files beside ${opts.output}, which is not a regular file`);
  const before = sharded ? claimShards(opts.output!, out) : [];
  const writer = new ShardedTfrecordWriter({
    shardName: (i, n) => (sharded ? `${target}-${shardSuffix(i, n)}` : target),
    tempName: () => tempNameFor(target),
    direct: claim.direct,
    maxShardBytes: opts.maxShardBytes,
    gzip,
    output: out,
  });
  try {
    for await (const p of payloads.records) await writer.write(p);
    const res = await writer.commit();
    // --overwrite of a sharded output: shards of the old set that the new one did not replace go
    const now = new Set(res.files);
    await Promise.all(before.filter((f) => !now.has(f)).map((f) => fsp.rm(f, { force: true })));
    return { to, outputs: res.files, records: stats.records, episodes: payloads.count.episodes || undefined, read: stats };
  } catch (err) {
    await writer.abort();
    throw err;
  }
}

/** The episode of a record, for --shard; a record kind without episodes cannot be split by episode. */
function shardKey(r: SourceRecord): string | number {
  const id = episodeIdOf(r.kind, r.value);
  if (id === undefined) throw new VlakitError('E_USAGE', `--shard splits the input by episode, but ${r.kind} records have no episode id`, { file: r.file, line: r.line, record: r.index });
  return id;
}

async function* toGenerator<T>(src: AsyncIterable<T>): AsyncGenerator<T> {
  yield* src;
}

/** The shards of an earlier sharded write to `target` (`NAME-0000i-of-0000n`): refused without --overwrite. */
function claimShards(output: string, opts: OutputOptions): string[] {
  const target = path.resolve(output);
  const dir = path.dirname(target);
  const re = /^-\d{5,}-of-\d{5,}$/;
  const base = path.basename(target);
  let names: string[];
  try {
    names = readdirSync(dir).filter((f) => f.startsWith(base) && re.test(f.slice(base.length)));
  } catch {
    names = [];
  }
  if (names.length && !opts.overwrite) {
    throw new VlakitError('E_USAGE', `the output (${opts.flag ?? '-o'}): ${names.length} shard${names.length === 1 ? '' : 's'} of an earlier output exist (${names[0]}${names.length > 1 ? ', ...' : ''}); pass --overwrite to replace them once the new ones are complete, or choose another path`, { file: output });
  }
  // each old shard is checked as an output of its own: one that is an input is never replaced
  for (const f of names) claimOutput(path.join(dir, f), 'file', { ...opts, overwrite: true });
  return names.map((f) => path.join(dir, f));
}

async function* stepsOnly(src: AsyncIterable<SourceRecord>, what: string): AsyncGenerator<{ record: StepRecord; line?: number; file?: string }> {
  for await (const r of src) {
    if (r.kind !== 'step') {
      throw new VlakitError('E_USAGE', `only step records can be written as ${what}, found a ${r.kind} record`, {
        file: r.file,
        line: r.line,
        record: r.index,
      });
    }
    yield { record: r.value, line: r.line, file: r.file };
  }
}

/** TFRecord payloads for records: raw bytes pass through untouched, JSON records are encoded, steps are grouped. */
function tfrecordPayloads(src: AsyncGenerator<SourceRecord>, features?: FeatureNode): { records: AsyncGenerator<Uint8Array>; count: { episodes: number } } {
  const count = { episodes: 0 };
  const records = (async function* () {
    const it = src[Symbol.asyncIterator]();
    const first = await it.next();
    if (first.done) return;
    if (first.value.kind === 'step') {
      const rest = (async function* () {
        yield first.value;
        for (;;) {
          const n = await it.next();
          if (n.done) return;
          yield n.value;
        }
      })();
      let leaves: Leaf[] | undefined = features ? flattenFeatures(features) : undefined;
      for await (const ep of groupEpisodes(stepsOnly(rest, 'episodes'))) {
        leaves ??= flattenFeatures(inferFeatures(ep));
        count.episodes += 1;
        yield encodeExample(encodeEpisode(ep, leaves));
      }
      return;
    }
    let r: IteratorResult<SourceRecord> = first;
    while (!r.done) {
      yield payloadOf(r.value);
      r = await it.next();
    }
  })();
  return { records, count };
}

function payloadOf(r: SourceRecord): Uint8Array {
  if (r.raw) return r.raw;
  try {
    return encodeRecord(r);
  } catch (err) {
    throw withContext(err, { file: r.file, line: r.line });
  }
}

function encodeRecord(r: SourceRecord): Uint8Array {
  switch (r.kind) {
    case 'raw':
      return Buffer.from(r.value.b64, 'base64');
    case 'example':
      return encodeExample(exampleFromJson(r.value));
    case 'sequence_example':
      return encodeSequenceExample(sequenceExampleFromJson(r.value));
    case 'step':
      throw new VlakitError('E_USAGE', 'step records must come first and alone to be written as TFRecord episodes', { file: r.file, line: r.line });
    default:
      throw new VlakitError('E_USAGE', `${r.kind} records are JSON Lines only; they have no TFRecord form`, { file: r.file, line: r.line });
  }
}

function pick(o: Record<string, unknown>, keys: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of keys) if (o[k] !== undefined) out[k] = o[k];
  return out;
}
