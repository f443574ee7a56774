import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { VlakitError } from '../../src/lib/errors.js';
import {
  ShardJob,
  convert,
  encodeEpisode,
  encodeExample,
  flattenFeatures,
  frameTfrecord,
  inferFeatures,
  mergeShards,
  parseShard,
  readRecords,
  shardByEpisode,
  shardSize,
  type ShardTally,
  type StepRecord,
} from '../../src/lib/io/index.js';
import { collect, tempDir } from '../helpers.js';

const dir = tempDir('vlakit-shard-io-');

async function* items<T>(xs: T[]): AsyncGenerator<T> {
  yield* xs;
}

/** Steps of `n` episodes with 1..3 steps each. */
function steps(n: number): { id: string; step: number }[] {
  const out: { id: string; step: number }[] = [];
  for (let e = 0; e < n; e++) for (let t = 0; t <= e % 3; t++) out.push({ id: `ep${e}`, step: t });
  return out;
}

describe('parseShard', () => {
  it('reads I/N', () => {
    expect(parseShard('0/1')).toEqual({ index: 0, count: 1 });
    expect(parseShard(' 7 / 8 ')).toEqual({ index: 7, count: 8 });
  });

  it.each(['8/8', '1/0', '0/0', '-1/3', '1.5/3', 'a/3', '3', '', '1/2/3', '0/1000001'])('refuses %j with a usage error that states the rule', (s) => {
    let err: unknown;
    try {
      parseShard(s);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(VlakitError);
    expect((err as VlakitError).exitCode).toBe(2);
    expect((err as VlakitError).message).toMatch(/--shard/);
  });
});

describe('shardByEpisode', () => {
  it('splits by episode ordinal modulo N: the shards partition the episodes, whole, in order, sizes within one', async () => {
    const all = steps(11);
    for (const count of [1, 2, 3, 5, 11, 13]) {
      const parts: { id: string; step: number }[][] = [];
      const tallies: ShardTally[] = [];
      for (let index = 0; index < count; index++) {
        const tally: ShardTally = { episodes: 0, kept: [] };
        parts.push(await collect(shardByEpisode(items(all), { index, count }, (s) => s.id, tally)));
        tallies.push(tally);
      }
      for (let index = 0; index < count; index++) {
        const ids = [...new Set(parts[index].map((s) => s.id))];
        // episode k goes to shard k mod N, with all its steps
        expect(ids).toEqual(Array.from({ length: 11 }, (_, k) => k).filter((k) => k % count === index).map((k) => `ep${k}`));
        expect(parts[index]).toEqual(all.filter((s) => ids.includes(s.id)));
        expect(tallies[index]).toEqual({ episodes: 11, kept: ids });
        expect(ids.length).toBe(shardSize(11, { index, count }));
      }
    }
  });

  it('an episode that appears again after others is an E_STEP_ORDER error, whichever shard it falls in', async () => {
    const bad = [...steps(3), { id: 'ep0', step: 0 }];
    for (const index of [0, 1]) await expect(collect(shardByEpisode(items(bad), { index, count: 2 }, (s) => s.id))).rejects.toThrow(/E_STEP_ORDER.*"ep0" appears again/);
  });
});

describe('a shard of a TFRecord file of episodes', () => {
  it('does not decode the other shards\' episodes (an undecodable one fails only its own shard)', async () => {
    const episodes: StepRecord[][] = [0, 1, 2, 3, 4].map((e) =>
      [0, 1].map((t) => ({ episode_id: e, step: t, is_first: t === 0, is_last: t === 1, is_terminal: false, action: [e, t, 0.5], reward: 0, discount: 1, language_instruction: `task ${e}` })),
    );
    const leaves = flattenFeatures(inferFeatures(episodes[0]));
    const records = episodes.map((ep) => frameTfrecord(encodeExample(encodeEpisode(ep, leaves))));
    // episode 1 is no Example at all (its frame and CRCs are valid)
    records[1] = frameTfrecord(new Uint8Array([0xff, 0xff, 0xff, 0xff]));
    const file = path.join(dir, 'episodes.tfrecord');
    writeFileSync(file, Buffer.concat(records));
    const read = async (index: number): Promise<{ ids: unknown[]; job: ShardJob }> => {
      const job = ShardJob.start('convert', { index, count: 3 }, undefined, {})!;
      const got = await collect(job.filter(readRecords([file], { skipEpisode: job.skipEpisode }), (r) => (r.value as StepRecord).episode_id));
      return { ids: [...new Set(got.map((r) => (r.value as StepRecord).episode_id))], job };
    };
    const s0 = await read(0);
    expect(s0.ids).toEqual([0, 3]);
    expect(s0.job.tally).toEqual({ episodes: 5, kept: [0, 3] });
    const s2 = await read(2);
    expect(s2.ids).toEqual([2]);
    expect(s2.job.tally).toEqual({ episodes: 5, kept: [2] });
    await expect(read(1)).rejects.toThrow(/at record 1 .*episodes\.tfrecord/);
  });
});

describe('mergeShards', () => {
  // 7 episodes of 1..3 steps, in 3 parts as --shard I/3 writes them, with their manifests
  const ids = Array.from({ length: 7 }, (_, k) => `ep${k}`);
  const stepsOf = (id: string) => Array.from({ length: (Number(id.slice(2)) % 3) + 1 }, (_, t) => ({ episode_id: id, step: t, action: [t, 0, 0, 1] }));
  const part = (name: string, shard: number, episodes: string[], manifest: string[] = ids.filter((_, k) => k % 3 === shard)): string => {
    const file = path.join(dir, name);
    writeFileSync(file, episodes.flatMap(stepsOf).map((s) => `${JSON.stringify(s)}\n`).join(''));
    writeFileSync(`${file}.shard.json`, JSON.stringify({ vlakit_shard: 1, command: 'chunk', shard, of: 3, episodes: 7, ids: manifest }));
    return file;
  };
  const good = [0, 1, 2].map((s) => part(`good-${s}.jsonl`, s, ids.filter((_, k) => k % 3 === s)));
  const merged = async (parts: string[]) => collect(mergeShards(parts));
  const message = async (parts: string[]): Promise<string> => {
    const err = await merged(parts).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(VlakitError);
    expect((err as VlakitError).code).toBe('E_SHARD');
    return (err as VlakitError).message;
  };

  it('joins the parts, given in any order, in the order of the input', async () => {
    const recs = await merged([good[2], good[0], good[1]]);
    expect(recs.map((r) => r.value)).toEqual(ids.flatMap(stepsOf));
  });

  it('refuses a missing part, a part given twice, parts of different jobs', async () => {
    expect(await message([good[0], good[2]])).toContain("no part is shard 1/3: its episodes (the input's #1, #4) are missing");
    expect(await message([good[0], good[1], good[2], good[1]])).toContain(`${good[1]} and ${good[1]} are both shard 1/3`);
    const other = part('other-1.jsonl', 1, ['ep1', 'ep4']);
    writeFileSync(`${other}.shard.json`, JSON.stringify({ vlakit_shard: 1, command: 'chunk', shard: 1, of: 3, episodes: 8, ids: ['ep1', 'ep4', 'ep7'] }));
    expect(await message([good[0], other, good[2]])).toContain('the parts come from different jobs');
  });

  it('names an episode missing from its part, and the part', async () => {
    expect(await message([good[0], part('miss-mid.jsonl', 1, ['ep4']), good[2]])).toContain(`episode "ep1" (the input's #1, shard 1/3) is missing from ${path.join(dir, 'miss-mid.jsonl')}`);
    expect(await message([good[0], part('miss-end.jsonl', 1, ['ep1']), good[2]])).toContain(`episode "ep4" (the input's #4, shard 1/3) is missing: ${path.join(dir, 'miss-end.jsonl')} ends after 1 of its 2 episodes`);
  });

  it('names an episode found twice, one in a part it does not belong to, and one past the end', async () => {
    expect(await message([good[0], part('dup.jsonl', 1, ['ep0', 'ep4']), good[2]])).toContain(`episode "ep0" appears twice: in ${good[0]} and again in ${path.join(dir, 'dup.jsonl')}`);
    expect(await message([good[0], part('stray.jsonl', 1, ['ep2', 'ep4']), good[2]])).toMatch(/holds episode "ep2" where shard 1\/3 has "ep1"/);
    expect(await message([good[0], part('extra.jsonl', 1, ['ep1', 'ep4', 'ep2']), good[2]])).toMatch(/holds more episodes than its manifest's 2: episode "ep2"/);
  });

  it('refuses a manifest that lists one episode in two shards, or the wrong number for its shard', async () => {
    expect(await message([good[0], part('two.jsonl', 1, ['ep1', 'ep4'], ['ep1', 'ep0']), good[2]])).toMatch(/episode "ep0" is in two shards/);
    expect(await message([good[0], part('short.jsonl', 1, ['ep1'], ['ep1']), good[2]])).toMatch(/shard 1\/3 of 7 episodes holds 2 episodes, but the manifest lists 1/);
  });
});

describe('convert --shard', () => {
  it('refuses records without episodes (examples, raw records) with a usage error, writing nothing', async () => {
    const file = path.join(dir, 'examples.jsonl');
    writeFileSync(file, '{"features": {"x": {"int64List": {"value": ["1"]}}}}\n');
    const out = path.join(dir, 'examples-out.jsonl');
    const shard = ShardJob.start('convert', { index: 0, count: 2 }, out, {});
    const err = await convert({ inputs: [file], output: out, shard }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((err as VlakitError).code).toBe('E_USAGE');
    expect((err as VlakitError).message).toContain('--shard splits the input by episode, but example records have no episode id');
    expect(existsSync(out)).toBe(false);
  });
});
