/**
 * Splitting a dataset job by episode, for job arrays (Slurm arrays, Kubernetes indexed Jobs): `--shard I/N` keeps
 * the episodes whose ordinal is I modulo N. An episode's ordinal is its place in reading order, counting from 0
 * (the order in which the unsharded command reads them: RLDS shards in order, files in the order given), so the
 * split is the same every time the same input is read, needs no hashing, and gives the N parts sizes that differ
 * by at most one episode. `vlakit merge` puts the parts back in that order: round-robin, part 0 first.
 *
 * Each sharded run writes a manifest beside its output (`OUTPUT.shard.json`): which shard it is, how many episodes
 * the whole input held, and the ids of its own episodes. merge checks the parts against their manifests.
 */
import { existsSync } from 'node:fs';
import { z } from 'zod';
import { VlakitError } from '../errors.js';
import { readJsonFile } from './json-file.js';
import { claimOutput, type OutputOptions } from './outputs.js';
import { EpisodeIdSchema } from './records.js';
import { writeOutputFile } from './writer.js';

/** Shard `index` of `count` (0 <= index < count). */
export interface Shard {
  index: number;
  count: number;
}

/** The most shards a job is split into. */
export const MAX_SHARDS = 1_000_000;

/**
 * Parses `I/N` (0 <= I < N <= 1,000,000) as the --shard flag takes it; anything else is a usage error.
 * @example parseShard('2/8') // { index: 2, count: 8 }
 */
export function parseShard(text: string, flag = 'shard'): Shard {
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(text);
  const index = m ? Number(m[1]) : Number.NaN;
  const count = m ? Number(m[2]) : Number.NaN;
  if (!m || !(count >= 1 && count <= MAX_SHARDS)) {
    throw new VlakitError('E_USAGE', `--${flag} must be I/N with N from 1 to ${MAX_SHARDS} and I from 0 to N-1 (e.g. 0/4), got "${text}"`);
  }
  if (!(index < count)) throw new VlakitError('E_USAGE', `--${flag} ${text}: the shard index counts from 0, so it must be below ${count} (0/${count} .. ${count - 1}/${count})`);
  return { index, count };
}

export const shardText = (s: Shard): string => `${s.index}/${s.count}`;

/** Whether the episode with this ordinal belongs to the shard. */
export const inShard = (ordinal: number, s: Shard): boolean => ordinal % s.count === s.index;

/** How many of `total` episodes shard `index` of `count` holds. */
export const shardSize = (total: number, s: Shard): number => (total > s.index ? Math.ceil((total - s.index) / s.count) : 0);

/** What a sharded pass saw: the episodes of the whole input, and the ids of those it kept, in order. */
export interface ShardTally {
  episodes: number;
  kept: (string | number)[];
}

export const newTally = (): ShardTally => ({ episodes: 0, kept: [] });

/**
 * The items (steps, chunks, examples: anything with an episode id) of the episodes in the shard. An episode is a
 * run of consecutive items with the same id; one that appears again after other episodes is an E_STEP_ORDER error
 * (as the unsharded commands say), since it would land in two shards.
 * @example for await (const r of shardByEpisode(records, { index: 1, count: 4 }, (r) => r.episode_id, tally)) ...
 */
export async function* shardByEpisode<T>(
  items: AsyncIterable<T>,
  shard: Shard,
  idOf: (item: T) => string | number,
  tally: ShardTally = newTally(),
  where: (item: T) => { file?: string; line?: number } = () => ({}),
  counted?: (id: string | number) => boolean,
): AsyncGenerator<T> {
  const seen = new Set<string | number>();
  let current: string | number | undefined;
  let started = false;
  let keep = false;
  for await (const item of items) {
    const id = idOf(item);
    if (!started || id !== current) {
      if (seen.has(id)) throw new VlakitError('E_STEP_ORDER', `episode ${JSON.stringify(id)} appears again after other episodes; the records of an episode must be contiguous`, where(item));
      seen.add(id);
      started = true;
      current = id;
      // an episode the reader already counted (and kept) when it chose not to decode the others
      if (counted?.(id)) {
        keep = true;
      } else {
        keep = inShard(tally.episodes, shard);
        tally.episodes += 1;
        if (keep) tally.kept.push(id);
      }
    }
    if (keep) yield item;
  }
}

/** The episode id of a record of any kind that has one (steps, chunks, training examples), else undefined. */
export function episodeIdOf(kind: string, value: unknown): string | number | undefined {
  const v = value as { episode_id?: unknown; meta?: { episode_id?: unknown } } | null;
  const id = kind === 'training_example' ? v?.meta?.episode_id : kind === 'step' || kind === 'chunk' ? v?.episode_id : undefined;
  return typeof id === 'string' || typeof id === 'number' ? id : undefined;
}

/** The manifest a sharded run writes beside its output. */
export const ShardManifestSchema = z.strictObject({
  vlakit_shard: z.literal(1),
  /** The command that wrote the part (`convert`, `rollout`...). */
  command: z.string(),
  shard: z.number().int().nonnegative(),
  of: z.number().int().min(1).max(MAX_SHARDS),
  /** Episodes in the whole input (all shards). */
  episodes: z.number().int().nonnegative(),
  /** This shard's episodes, in order: ids as the input had them (rollout: SEED-I). */
  ids: z.array(EpisodeIdSchema),
});
export type ShardManifest = z.infer<typeof ShardManifestSchema>;

/** Where the manifest of an output goes: `OUTPUT.shard.json` (a directory's beside it). */
export function manifestPathFor(output: string): string {
  return `${output.replace(/[/\\]+$/, '')}.shard.json`;
}

/**
 * Claims the manifest of a sharded output before any work (an existing one needs --overwrite, as the output does).
 * Returns its path, or undefined for stdout (no manifest: merge needs parts written with -o).
 */
export function claimShardManifest(output: string | undefined, opts: OutputOptions): string | undefined {
  if (!output || output === '-') return undefined;
  const p = manifestPathFor(output);
  const claim = claimOutput(p, 'file', { ...opts, flag: `${opts.flag ?? '-o'} (its shard manifest)` });
  return claim.direct ? undefined : p;
}

/** Writes a sharded output's manifest (after the output itself). */
export async function writeShardManifest(output: string | undefined, m: Omit<ShardManifest, 'vlakit_shard'>, opts: OutputOptions): Promise<string | undefined> {
  if (!output || output === '-') return undefined;
  const p = manifestPathFor(output);
  const body: ShardManifest = { vlakit_shard: 1, ...m };
  await writeOutputFile(p, `${JSON.stringify(body)}\n`, { ...opts, overwrite: true, flag: `${opts.flag ?? '-o'} (its shard manifest)` });
  return p;
}

/** Reads a part's manifest; a part without one is a data error that says how parts are made. */
export function readShardManifest(part: string): ShardManifest {
  const p = manifestPathFor(part);
  if (!existsSync(p)) {
    throw new VlakitError('E_SHARD', `no shard manifest ${p} beside this part: merge joins the outputs of --shard I/N runs written with -o (each writes OUTPUT.shard.json)`, { file: part });
  }
  const m = readJsonFile(p, ShardManifestSchema, { what: 'shard manifest' });
  if (m.shard >= m.of) throw new VlakitError('E_SHARD', `shard ${m.shard} of ${m.of}: the index must be below the count`, { file: p });
  if (m.ids.length !== shardSize(m.episodes, { index: m.shard, count: m.of })) {
    throw new VlakitError('E_SHARD', `shard ${m.shard}/${m.of} of ${m.episodes} episodes holds ${shardSize(m.episodes, { index: m.shard, count: m.of })} episodes, but the manifest lists ${m.ids.length}`, { file: p });
  }
  return m;
}

/**
 * One command's sharded pass: claims the manifest up front, filters the records, and writes the manifest once the
 * output is written.
 * @example const job = ShardJob.start('chunk', flags.shard, flags.output, output); ... await job?.finish();
 */
export class ShardJob {
  readonly tally: ShardTally = newTally();
  private constructor(
    readonly command: string,
    readonly shard: Shard,
    private readonly output: string | undefined,
    private readonly opts: OutputOptions,
  ) {}

  /** undefined when the run is not sharded. */
  static start(command: string, shard: Shard | undefined, output: string | undefined, opts: OutputOptions): ShardJob | undefined {
    if (!shard) return undefined;
    if (!output || output === '-') opts.onNote?.(`--shard ${shardText(shard)} to stdout: no manifest is written, and vlakit merge takes only parts written with -o`);
    claimShardManifest(output, opts);
    return new ShardJob(command, shard, output, opts);
  }

  private announced: string | number | undefined;

  /** The same split with a tally of its own, for a second reading of the input (annotate --batch reads it twice). */
  again(): ShardJob {
    return new ShardJob(this.command, this.shard, this.output, this.opts);
  }

  /** Keeps the items of this shard's episodes. */
  filter<T>(items: AsyncIterable<T>, idOf: (item: T) => string | number, where?: (item: T) => { file?: string; line?: number }): AsyncGenerator<T> {
    return shardByEpisode(items, this.shard, idOf, this.tally, where, (id) => {
      if (this.announced === undefined || id !== this.announced) return false;
      this.announced = undefined;
      return true;
    });
  }

  /**
   * ReadOptions.skipEpisode: the readers of RLDS datasets and TFRecord episode files ask it before decoding each
   * episode, so that a shard does not decode the others' episodes. It counts the episode here; the one it keeps
   * is not counted again when its steps reach `filter`.
   */
  readonly skipEpisode = (id: string | number): boolean => {
    const keep = inShard(this.tally.episodes, this.shard);
    this.tally.episodes += 1;
    if (keep) {
      this.tally.kept.push(id);
      this.announced = id;
    }
    return !keep;
  };

  /** Writes the manifest (with `episodes` and `ids` when the caller counted them itself, as rollout does). */
  async finish(counted?: { episodes: number; ids: (string | number)[] }): Promise<string | undefined> {
    const t = counted ?? this.tally;
    return writeShardManifest(this.output, { command: this.command, shard: this.shard.index, of: this.shard.count, episodes: t.episodes, ids: 'kept' in t ? t.kept : t.ids }, this.opts);
  }
}
