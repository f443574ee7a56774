/**
 * RLDS datasets as TensorFlow Datasets prepares them: a version directory with features.json, dataset_info.json and
 * TFRecord shards named by the split's filepathTemplate, one tf.train.Example per episode.
 */
import { existsSync, promises as fsp, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { VlakitError, withContext } from '../errors.js';
import { decodeEpisode, encodeEpisode, inferFeatures } from './episode.js';
import { decodeExample, encodeExample } from './example.js';
import { type FeatureNode, type Leaf, featuresToJson, flattenFeatures, parseFeatures } from './features.js';
import type { StepRecord } from './records.js';
import { openBytes } from './sources.js';
import { decodeTfrecord, isSourceFailure, type TfrecordStats } from './tfrecord.js';
import { type OutputOptions, writeOutputDir } from './outputs.js';
import { ShardedTfrecordWriter, shardSuffix, writeFileAtomic } from './writer.js';

export const DEFAULT_TEMPLATE = '{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}';

export interface SplitInfo {
  name: string;
  shardLengths?: (string | number)[];
  numBytes?: string | number;
  filepathTemplate?: string;
  [k: string]: unknown;
}

export interface DatasetInfo {
  name: string;
  version?: string;
  fileFormat?: string;
  splits?: SplitInfo[];
  description?: string;
  citation?: string;
  [k: string]: unknown;
}

export interface RldsDataset {
  dir: string;
  info: DatasetInfo;
  features: FeatureNode;
  leaves: Leaf[];
}

/** True when `dir` is a TFDS dataset directory (or holds version directories of one). */
export function isRldsDir(dir: string): boolean {
  try {
    return resolveVersionDir(dir) !== undefined;
  } catch {
    return false;
  }
}

function resolveVersionDir(dir: string): string | undefined {
  if (existsSync(path.join(dir, 'features.json'))) return dir;
  const versions = readdirSync(dir, { withFileTypes: true })
    .filter((d) => d.isDirectory() && /^\d+\.\d+\.\d+$/.test(d.name) && existsSync(path.join(dir, d.name, 'features.json')))
    .map((d) => d.name)
    .sort((a, b) => compareVersions(a, b));
  return versions.length ? path.join(dir, versions[versions.length - 1]) : undefined;
}

function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < 3; i++) if (pa[i] !== pb[i]) return pa[i] - pb[i];
  return 0;
}

function readJson(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new VlakitError('E_NOT_FOUND', 'cannot read the file', { file }, { cause: err });
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new VlakitError('E_RLDS_INFO', `invalid JSON (${(err as Error).message})`, { file }, { cause: err });
  }
}

/** Loads the features of a features.json file. */
export function loadFeatures(file: string): FeatureNode {
  try {
    return parseFeatures(readJson(file));
  } catch (err) {
    throw withContext(err, { file });
  }
}

/** Opens a dataset directory: the version directory itself, or its parent (the newest version is taken). */
export function openRlds(dir: string): RldsDataset {
  const vdir = resolveVersionDir(dir);
  if (!vdir) throw new VlakitError('E_NOT_FOUND', 'not a TFDS dataset directory: no features.json in it or in a version subdirectory', { file: dir });
  const features = loadFeatures(path.join(vdir, 'features.json'));
  const infoFile = path.join(vdir, 'dataset_info.json');
  const info: DatasetInfo = existsSync(infoFile) ? (readJson(infoFile) as DatasetInfo) : { name: path.basename(path.dirname(vdir)) };
  if (typeof info.name !== 'string' || !info.name) throw new VlakitError('E_RLDS_INFO', 'dataset_info.json has no "name"', { file: infoFile });
  let leaves: Leaf[];
  try {
    leaves = flattenFeatures(features);
  } catch (err) {
    throw withContext(err, { file: path.join(vdir, 'features.json') });
  }
  return { dir: vdir, info, features, leaves };
}

export function splitNames(ds: RldsDataset): string[] {
  return (ds.info.splits ?? []).map((s) => s.name);
}

/** The shard files of one split, in order, with the record count dataset_info.json promises for each. */
export function splitShards(ds: RldsDataset, split: string): { file: string; length?: number }[] {
  const info = (ds.info.splits ?? []).find((s) => s.name === split);
  if (!info) {
    if ((ds.info.splits ?? []).length === 0) {
      // No split table: take the files named like TFDS shards of this split.
      const re = new RegExp(`-${split.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.[a-z_]+-\\d+-of-\\d+$`);
      const files = readdirSync(ds.dir).filter((f) => re.test(f)).sort();
      if (files.length) return files.map((f) => ({ file: path.join(ds.dir, f) }));
    }
    throw new VlakitError('E_USAGE', `no split "${split}" in this dataset; it has: ${splitNames(ds).join(', ') || 'none'}`, { file: ds.dir });
  }
  const lengths = (info.shardLengths ?? []).map(Number);
  const template = info.filepathTemplate ?? DEFAULT_TEMPLATE;
  const n = lengths.length;
  return lengths.map((length, i) => ({
    file: path.join(
      ds.dir,
      template
        .replaceAll('{DATASET}', ds.info.name)
        .replaceAll('{SPLIT}', split)
        .replaceAll('{FILEFORMAT}', ds.info.fileFormat ?? 'tfrecord')
        .replaceAll('{SHARD_X_OF_Y}', shardSuffix(i, n))
        .replaceAll('{SHARD_INDEX}', String(i).padStart(5, '0'))
        .replaceAll('{NUM_SHARDS}', String(n).padStart(5, '0')),
    ),
    length,
  }));
}

export interface ReadRldsOptions {
  split?: string;
  verify?: boolean;
  skipCorrupt?: boolean;
  onSkip?: (err: VlakitError) => void;
  onStats?: (file: string, stats: TfrecordStats) => void;
  /** Hears the shards' bytes as they are read (before decompression). */
  onRead?: (bytes: number) => void;
  signal?: AbortSignal;
  /** Asked before each episode is decoded: true skips it (not decoded, not yielded); --shard's filter uses it. */
  skipEpisode?: (id: string | number) => boolean;
}

/**
 * Streams the step records of one split of an RLDS dataset, episode by episode.
 * @example for await (const step of readRlds(openRlds('bridge/1.0.0'), { split: 'train' })) ...
 */
export async function* readRlds(ds: RldsDataset, opts: ReadRldsOptions = {}): AsyncGenerator<StepRecord> {
  const split = opts.split ?? 'train';
  const shards = splitShards(ds, split);
  let episode = 0;
  for (const shard of shards) {
    if (!existsSync(shard.file)) {
      throw new VlakitError('E_NOT_FOUND', `shard listed in dataset_info.json is missing`, { file: shard.file });
    }
    let seen = 0;
    let stats: TfrecordStats | undefined;
    // shards may be gzip (TFDS's GZIP compression, or a re-compressed download): sniffed like any input
    let bytes: AsyncIterable<Uint8Array>;
    try {
      bytes = (await openBytes(shard.file, opts.signal, opts.onRead)).bytes;
    } catch (err) {
      // a gzip stream that fails before its first bytes: nothing of this shard can be read
      if (!isSourceFailure(err)) throw err;
      const e = withContext(err, { file: shard.file, record: 0 }) as VlakitError;
      if (!opts.skipCorrupt) throw e;
      opts.onSkip?.(e);
      continue;
    }
    const records = decodeTfrecord(bytes, {
      source: shard.file,
      verify: opts.verify,
      skipCorrupt: opts.skipCorrupt,
      onSkip: opts.onSkip,
      stats: (s) => (stats = s),
      signal: opts.signal,
    });
    for await (const rec of records) {
      seen = rec.index + 1;
      if (opts.skipEpisode?.(`${split}-${episode + rec.index}`)) continue;
      let steps: StepRecord[];
      try {
        steps = decodeEpisode(decodeExample(rec.data), ds.leaves, `${split}-${episode + rec.index}`);
      } catch (err) {
        throw withContext(err, { file: shard.file, record: rec.index, offset: rec.offset });
      }
      yield* steps;
    }
    if (stats) opts.onStats?.(shard.file, stats);
    const total = stats ? stats.records + stats.skippedRecords : seen;
    // a lost tail held an unknown number of episodes; skipped records are counted, so the total must match otherwise
    if (shard.length !== undefined && total !== shard.length && !stats?.lostTail) {
      throw new VlakitError('E_RLDS_INFO', `shard holds ${total} episodes but dataset_info.json says ${shard.length}`, { file: shard.file });
    }
    episode += shard.length ?? total;
  }
}

/** Groups a stream of step records into episodes, checking that each episode's steps are contiguous and in order. */
export async function* groupEpisodes(
  steps: AsyncIterable<{ record: StepRecord; line?: number; file?: string }>,
): AsyncGenerator<StepRecord[]> {
  let cur: StepRecord[] = [];
  const done = new Set<string | number>();
  for await (const { record, line, file } of steps) {
    const where = { line, file };
    if (cur.length > 0 && record.episode_id !== cur[0].episode_id) {
      done.add(cur[0].episode_id);
      yield cur;
      cur = [];
    }
    if (cur.length === 0 && done.has(record.episode_id)) {
      throw new VlakitError('E_STEP_ORDER', `episode ${JSON.stringify(record.episode_id)} appears again after other episodes; the steps of an episode must be contiguous`, where);
    }
    if (record.step !== cur.length) {
      throw new VlakitError('E_STEP_ORDER', `expected step ${cur.length} of episode ${JSON.stringify(record.episode_id)}, found step ${record.step}`, where);
    }
    cur.push(record);
  }
  if (cur.length) yield cur;
}

export interface WriteRldsOptions extends OutputOptions {
  /** The version directory to create (e.g. out/my_dataset/1.0.0); must not exist or be empty unless `overwrite`. */
  dir: string;
  name?: string;
  version?: string;
  split?: string;
  /** Features to write with; inferred from the first episode when absent. */
  features?: FeatureNode;
  /**
   * The source dataset's features, when episodes are written back with fields added (annotate): every field they
   * name keeps its dtype and shape (an int32 episode_id stays int32); the others are inferred.
   */
  baseFeatures?: FeatureNode;
  /**
   * When `dir` already holds an RLDS dataset: add `split` to it (its name, version and features; the split must be
   * new) instead of refusing it. The dataset is rebuilt in a temporary directory (existing files hard-linked) and
   * swapped in whole.
   */
  addSplit?: boolean;
  /** Other dataset_info.json fields to carry over (description, citation, ...). */
  info?: Partial<DatasetInfo>;
  maxShardBytes?: number;
  signal?: AbortSignal;
}

export interface WriteRldsResult {
  dir: string;
  episodes: number;
  steps: number;
  files: string[];
}

/**
 * The inferred features with every node `base` has at the same path and of the same kind taken from `base` (its
 * dtype, shape, encoding); fields only `base` has are dropped (the episodes do not carry them).
 */
export function overlayFeatures(base: FeatureNode, inferred: FeatureNode): FeatureNode {
  if (base.kind !== inferred.kind) return inferred;
  if (inferred.kind === 'dict' && base.kind === 'dict') {
    const features: Record<string, FeatureNode> = {};
    for (const [k, v] of Object.entries(inferred.features)) features[k] = base.features[k] ? overlayFeatures(base.features[k], v) : v;
    const same = Object.keys(features).length === Object.keys(base.features).length && Object.keys(features).every((k) => features[k] === base.features[k]);
    return same ? base : { kind: 'dict', features };
  }
  if (inferred.kind === 'dataset' && base.kind === 'dataset') {
    const feature = overlayFeatures(base.feature, inferred.feature);
    return feature === base.feature ? base : { kind: 'dataset', feature };
  }
  return base;
}

/** Writes episodes as an RLDS dataset directory that tfds.builder_from_directory can load. Whole or not at all. */
export async function writeRlds(episodes: AsyncIterable<StepRecord[]>, opts: WriteRldsOptions): Promise<WriteRldsResult> {
  const split = opts.split ?? 'train';
  const final = path.resolve(opts.dir);
  const name = opts.name ?? sanitizeName(path.basename(/^\d+\.\d+\.\d+$/.test(path.basename(final)) ? path.dirname(final) : final));
  let files: string[] = [];
  let nEpisodes = 0;
  let nSteps = 0;
  const existing = opts.addSplit && existsSync(final) && isRldsDir(final) ? openRlds(final) : undefined;
  if (existing) {
    if (path.resolve(existing.dir) !== final) throw new VlakitError('E_USAGE', `--add-split needs the version directory itself (${existing.dir})`, { file: opts.dir });
    if (splitNames(existing).includes(split)) throw new VlakitError('E_USAGE', `the dataset already has a "${split}" split; --add-split adds a new one (--overwrite replaces the whole dataset)`, { file: path.join(final, 'dataset_info.json') });
    if (opts.name && opts.name !== existing.info.name) throw new VlakitError('E_USAGE', `the dataset is named "${existing.info.name}", not "${opts.name}"`, { file: opts.dir });
  }
  await writeOutputDir(
    opts.dir,
    async (tmp) => {
      if (existing) {
        // the dataset as it is, hard-linked (copied across devices), then the new split's shards and info
        for (const f of await fsp.readdir(final)) {
          await fsp.link(path.join(final, f), path.join(tmp, f)).catch(() => fsp.copyFile(path.join(final, f), path.join(tmp, f)));
        }
      }
      const writer = new ShardedTfrecordWriter({
        shardName: (i, n) => path.join(tmp, `${name}-${split}.tfrecord-${shardSuffix(i, n)}`),
        maxShardBytes: opts.maxShardBytes ?? 256 * 2 ** 20,
        output: { overwrite: true, signal: opts.signal }, // inside the fresh temporary directory
      });
      let features = existing ? existing.features : opts.features;
      let leaves = features ? flattenFeatures(features) : undefined;
      try {
        for await (const ep of episodes) {
          opts.signal?.throwIfAborted();
          if (!features) {
            features = opts.baseFeatures ? overlayFeatures(opts.baseFeatures, inferFeatures(ep)) : inferFeatures(ep);
            leaves = flattenFeatures(features);
          }
          let bytes: Uint8Array;
          try {
            bytes = encodeExample(encodeEpisode(ep, leaves!));
          } catch (err) {
            throw withContext(err, { record: nEpisodes });
          }
          await writer.write(bytes);
          nEpisodes += 1;
          nSteps += ep.length;
        }
        if (!features) throw new VlakitError('E_USAGE', 'no episodes to write: the input holds no step records');
        const shards = await writer.commit();
        const entry = { filepathTemplate: DEFAULT_TEMPLATE, name: split, numBytes: String(shards.shardBytes.reduce((a, b) => a + b, 0)), shardLengths: shards.shardLengths.map(String) };
        if (existing) {
          // features.json stays the dataset's; dataset_info.json gains the split
          await fsp.rm(path.join(tmp, 'dataset_info.json'), { force: true });
          await writeFileAtomic(path.join(tmp, 'dataset_info.json'), JSON.stringify(sortKeys({ ...existing.info, splits: [...(existing.info.splits ?? []), entry] }), null, 2));
          files = shards.files.map((f) => path.join(final, path.basename(f)));
          return;
        }
        const info: DatasetInfo = {
          citation: '',
          description: 'Written by vlakit.',
          ...opts.info,
          fileFormat: 'tfrecord',
          name,
          releaseNotes: { [opts.version ?? '1.0.0']: 'Written by vlakit.' },
          splits: [entry],
          version: opts.version ?? '1.0.0',
        };
        await writeFileAtomic(path.join(tmp, 'features.json'), JSON.stringify(featuresToJson(features), null, 4));
        await writeFileAtomic(path.join(tmp, 'dataset_info.json'), JSON.stringify(sortKeys(info), null, 2));
        files = shards.files.map((f) => path.join(final, path.basename(f)));
      } catch (err) {
        await writer.abort();
        throw err;
      }
    },
    existing ? { ...opts, overwrite: true } : opts,
  );
  return { dir: final, episodes: nEpisodes, steps: nSteps, files };
}

function sanitizeName(s: string): string {
  const n = s.replace(/[^A-Za-z0-9_]/g, '_').replace(/^_+|_+$/g, '').toLowerCase();
  return n || 'dataset';
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (typeof v === 'object' && v !== null) {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) out[k] = sortKeys((v as Record<string, unknown>)[k]);
    return out;
  }
  return v;
}
