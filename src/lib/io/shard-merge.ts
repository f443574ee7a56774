/**
 * `vlakit merge`: the parts of a `--shard I/N` job, joined in the unsharded order. Episode k of the input went to
 * shard k mod N as that shard's episode floor(k / N), so the parts are read side by side and their episodes taken
 * round-robin, part 0 first. Each part's manifest (OUTPUT.shard.json) says which shard it is and which episodes
 * it holds; a shard given twice or not at all, an episode missing from its part, one that appears twice or one
 * that belongs to no shard stops the merge (E_SHARD, exit 1) before the output is committed.
 */
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { VlakitError } from '../errors.js';
import { newStats, readRecords, type ReadOptions, type ReadStats, type SourceRecord } from './read.js';
import { type ShardManifest, episodeIdOf, manifestPathFor, readShardManifest, shardSize } from './shard.js';

export interface MergeSummary {
  parts: number;
  shards: number;
  episodes: number;
  records: number;
  read: ReadStats;
}

interface Episode<T> {
  id: string | number;
  records: T[];
  /** The records came from JSON Lines, where episode ids are the input's own (RLDS and TFRecord parts number theirs by position). */
  keepsIds: boolean;
}

/** A part's records, one episode (or unit) at a time: a run of records with the same id. */
class EpisodeReader<T extends { line?: number }> {
  private readonly it: AsyncIterator<T>;
  private pending: T | undefined;
  private ended = false;
  read = 0;

  constructor(
    readonly part: string,
    src: AsyncIterable<T>,
    private readonly idOf: (r: T) => string | number,
  ) {
    this.it = src[Symbol.asyncIterator]();
  }

  private async pull(): Promise<T | undefined> {
    if (this.pending) {
      const p = this.pending;
      this.pending = undefined;
      return p;
    }
    if (this.ended) return undefined;
    const n = await this.it.next();
    if (n.done) {
      this.ended = true;
      return undefined;
    }
    return n.value;
  }

  async next(): Promise<Episode<T> | undefined> {
    const first = await this.pull();
    if (!first) return undefined;
    const id = this.idOf(first);
    const records = [first];
    for (;;) {
      const r = await this.pull();
      if (!r) break;
      if (this.idOf(r) !== id) {
        this.pending = r;
        break;
      }
      records.push(r);
    }
    this.read += 1;
    return { id, records, keepsIds: first.line !== undefined };
  }

  async close(): Promise<void> {
    await this.it.return?.(undefined);
  }
}

function idOf(r: SourceRecord): string | number {
  const id = episodeIdOf(r.kind, r.value);
  if (id === undefined) throw new VlakitError('E_SHARD', `merge joins records of episodes (steps, chunks, training examples); a ${r.kind} record has no episode id`, { file: r.file, line: r.line, record: r.index });
  return id;
}

const show = (id: string | number): string => JSON.stringify(id);

/** One part of a sharded job: the output name its manifest is named after, and its files. */
export interface MergePart {
  name: string;
  files: string[];
}

const SIZE_SPLIT = /^(.*)-(\d{5,})-of-(\d{5,})$/;

/**
 * The parts named on the command line. A part written with --shard-size is several files `NAME-0000i-of-0000n`
 * beside one manifest `NAME.shard.json`: it may be named by NAME or by its files (all of them, in any order).
 * @example resolveParts(['p0.tfrecord', 'p1.tfrecord']) // p0.tfrecord-00000-of-00002, ... as one part each
 */
export function resolveParts(args: readonly string[]): MergePart[] {
  // a part named twice stays twice (checkManifests says so); the files of one split part are gathered into one
  const parts: { name: string; files: Set<string>; of?: number }[] = [];
  const split = new Map<string, (typeof parts)[number]>();
  const splitPart = (name: string, of: number) => {
    let p = split.get(name);
    if (!p) {
      p = { name, files: new Set<string>(), of };
      split.set(name, p);
      parts.push(p);
    }
    return p;
  };
  for (const arg of args) {
    const m = SIZE_SPLIT.exec(arg);
    if (m && !existsSync(manifestPathFor(arg)) && existsSync(manifestPathFor(m[1]))) {
      splitPart(m[1], Number(m[3])).files.add(arg);
      continue;
    }
    if (!existsSync(arg)) {
      const dir = path.dirname(arg);
      const base = path.basename(arg);
      let names: string[] = [];
      try {
        names = readdirSync(dir).filter((f) => f.startsWith(base) && /^-\d{5,}-of-\d{5,}$/.test(f.slice(base.length)));
      } catch {
        names = [];
      }
      if (names.length) {
        const p = splitPart(arg, Number(SIZE_SPLIT.exec(names[0])![3]));
        for (const f of names) p.files.add(path.join(dir, f));
        continue;
      }
    }
    parts.push({ name: arg, files: new Set([arg]) });
  }
  return parts.map(({ name, files: set, of }) => {
    const files = [...set].sort();
    if (of !== undefined) {
      const have = new Set(files.map((f) => Number(SIZE_SPLIT.exec(f)?.[2])));
      const missing = Array.from({ length: of }, (_, i) => i).filter((i) => !have.has(i));
      if (missing.length) throw new VlakitError('E_SHARD', `part ${name} was written as ${of} files (-of-${String(of).padStart(5, '0')}), but file ${missing.map((i) => String(i).padStart(5, '0')).join(', ')} of them is not given or not there`, { file: name });
    }
    return { name, files };
  });
}

/** Checks that the manifests are the N shards of one job, each once; returns the parts by shard index. */
export function checkManifests(parts: readonly string[], manifests: readonly ShardManifest[]): number[] {
  if (parts.length === 0) throw new VlakitError('E_USAGE', 'merge needs the parts: the outputs of --shard I/N runs');
  const m0 = manifests[0];
  for (let p = 1; p < parts.length; p++) {
    const m = manifests[p];
    if (m.of !== m0.of || m.episodes !== m0.episodes || m.command !== m0.command) {
      throw new VlakitError('E_SHARD', `${parts[p]} is shard ${m.shard}/${m.of} of ${m.episodes} episodes (vlakit ${m.command}), but ${parts[0]} is shard ${m0.shard}/${m0.of} of ${m0.episodes} episodes (vlakit ${m0.command}): the parts come from different jobs`, { file: manifestPathFor(parts[p]) });
    }
  }
  const byShard: number[] = new Array(m0.of).fill(-1);
  manifests.forEach((m, p) => {
    if (byShard[m.shard] >= 0) throw new VlakitError('E_SHARD', `${parts[byShard[m.shard]]} and ${parts[p]} are both shard ${m.shard}/${m.of}`, { file: parts[p] });
    byShard[m.shard] = p;
  });
  const missing = byShard.flatMap((p, s) => (p < 0 ? [s] : []));
  if (missing.length) {
    const s = missing[0];
    const ordinals = Array.from({ length: Math.min(3, shardSize(m0.episodes, { index: s, count: m0.of })) }, (_, j) => s + j * m0.of);
    throw new VlakitError(
      'E_SHARD',
      `no part is shard ${s}/${m0.of}${missing.length > 1 ? ` (nor ${missing.slice(1, 4).map((x) => `${x}/${m0.of}`).join(', ')}${missing.length > 4 ? ', ...' : ''})` : ''}: its episodes${ordinals.length ? ` (the input's #${ordinals.join(', #')}${shardSize(m0.episodes, { index: s, count: m0.of }) > 3 ? ', ...' : ''})` : ''} are missing; give all ${m0.of} parts`,
    );
  }
  const where = new Map<string | number, number>();
  manifests.forEach((m, p) => {
    for (const id of m.ids) {
      const q = where.get(id);
      if (q !== undefined) throw new VlakitError('E_SHARD', `episode ${show(id)} is in two shards: ${parts[q]} (shard ${manifests[q].shard}/${m.of}) and ${parts[p]} (shard ${m.shard}/${m.of})`, { file: manifestPathFor(parts[p]) });
      where.set(id, p);
    }
  });
  return byShard;
}

/**
 * The records of the parts in the unsharded order, checked against the parts' manifests; `summary` is filled in
 * as they are read.
 * @example await convert({ inputs: parts, source: mergeShards(parts), output: 'all.jsonl' })
 */
export async function* mergeShards(args: readonly string[], opts: ReadOptions = {}, summary: MergeSummary = { parts: 0, shards: 0, episodes: 0, records: 0, read: newStats() }): AsyncGenerator<SourceRecord> {
  yield* mergeParts(args, summary, (files) => readRecords(files, opts, summary.read), idOf, (records, expected) => {
    // RLDS and TFRecord parts number their episodes by position within the part: the input's id is the manifest's
    for (const r of records) if (r.kind === 'step') r.value.episode_id = expected;
  });
}

/** One line of an eval-vqa --log-samples part. */
export interface SampleLine {
  value: { model?: unknown; benchmark?: unknown; id?: unknown; circular?: { group?: unknown } };
  line: number;
  file: string;
}

/** The unit eval-vqa --shard splits by: a model's answers to one question (all rotations of a circular one). */
export function sampleUnitId(model: string, benchmark: string, question: string): string {
  return `${model}/${benchmark}/${question}`;
}

async function* sampleLines(files: string[]): AsyncGenerator<SampleLine> {
  const { createReadStream } = await import('node:fs');
  const { decodeJsonl } = await import('./jsonl.js');
  for (const file of files) {
    for await (const l of decodeJsonl(createReadStream(file))) yield { value: l.value as SampleLine['value'], line: l.line, file };
  }
}

/**
 * The samples of `eval-vqa --shard I/N --log-samples PART` runs in the order of the unsharded run (model by model,
 * question by question), checked against the parts' manifests as mergeShards checks episodes.
 */
export async function* mergeSampleShards(args: readonly string[], summary: MergeSummary = { parts: 0, shards: 0, episodes: 0, records: 0, read: newStats() }): AsyncGenerator<unknown> {
  const idOfSample = (r: SampleLine): string => {
    const v = r.value;
    if (typeof v?.model !== 'string' || typeof v.benchmark !== 'string' || typeof v.id !== 'string') throw new VlakitError('E_SHARD', 'an eval-vqa part holds a line that is not a sample (model, benchmark, id)', { file: r.file, line: r.line });
    return sampleUnitId(v.model, v.benchmark, typeof v.circular?.group === 'string' ? v.circular.group : v.id);
  };
  for await (const r of mergeParts(args, summary, sampleLines, idOfSample)) yield r.value;
}

async function* mergeParts<T extends { line?: number }>(
  args: readonly string[],
  summary: MergeSummary,
  open: (files: string[]) => AsyncIterable<T>,
  unitId: (r: T) => string | number,
  renumber?: (records: T[], expected: string | number) => void,
): AsyncGenerator<T> {
  const resolved = resolveParts(args);
  const parts = resolved.map((p) => p.name);
  const manifests = parts.map((p) => readShardManifest(p));
  const byShard = checkManifests(parts, manifests);
  const n = byShard.length;
  const total = manifests[0].episodes;
  summary.parts = parts.length;
  summary.shards = n;
  const readers = byShard.map((p) => new EpisodeReader(parts[p], open(resolved[p].files), unitId));
  const seen = new Map<string | number, string>();
  try {
    for (let k = 0; k < total; k++) {
      const s = k % n;
      const j = Math.floor(k / n);
      const m = manifests[byShard[s]];
      const reader = readers[s];
      const expected = m.ids[j];
      const ep = await reader.next();
      if (!ep) {
        throw new VlakitError('E_SHARD', `episode ${show(expected)} (the input's #${k}, shard ${s}/${n}) is missing: ${reader.part} ends after ${j} of its ${m.ids.length} episodes`, { file: reader.part });
      }
      if (ep.keepsIds) {
        const before = seen.get(ep.id);
        if (before !== undefined) throw new VlakitError('E_SHARD', `episode ${show(ep.id)} appears twice: in ${before} and again in ${reader.part}`, { file: reader.part, line: ep.records[0].line });
        if (ep.id !== expected) {
          const later = m.ids.indexOf(ep.id);
          throw new VlakitError(
            'E_SHARD',
            later > j
              ? `episode ${show(expected)} (the input's #${k}, shard ${s}/${n}) is missing from ${reader.part}: its episode ${j} is ${show(ep.id)}, which comes after it`
              : `${reader.part} holds episode ${show(ep.id)} where shard ${s}/${n} has ${show(expected)} (the input's #${k}): ${show(ep.id)} is not this shard's, or is out of order`,
            { file: reader.part, line: ep.records[0].line },
          );
        }
        seen.set(ep.id, reader.part);
      } else {
        renumber?.(ep.records, expected);
      }
      summary.episodes += 1;
      summary.records += ep.records.length;
      yield* ep.records;
    }
    for (let s = 0; s < n; s++) {
      const extra = await readers[s].next();
      if (extra) throw new VlakitError('E_SHARD', `${readers[s].part} holds more episodes than its manifest's ${manifests[byShard[s]].ids.length}: episode ${show(extra.id)} is past the end of shard ${s}/${n}`, { file: readers[s].part, line: extra.records[0].line });
    }
  } finally {
    await Promise.all(readers.map((r) => r.close()));
  }
}
