import { readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  type Example,
  decodeExample,
  decodeJsonl,
  decodeTfrecord,
  encodeJsonl,
  groupEpisodes,
  openRlds,
  parseStepRecord,
  readBytes,
  readRlds,
  type StepRecord,
  writeRlds,
} from '../../src/lib/io/index.js';
import { collect, tempDir } from '../helpers.js';
import { type BuiltEpisode, FEATURES_JSON, standardDataset } from '../rlds-builder.js';

const dir = tempDir();
const src = path.join(dir, 'toy_kitchen', '1.0.0');
let built: Record<string, BuiltEpisode[][]>;

beforeAll(async () => {
  built = await standardDataset(src);
});

async function examplesOf(versionDir: string, split: string): Promise<Example[]> {
  const files = readdirSync(versionDir).filter((f) => f.includes(`-${split}.tfrecord-`)).sort();
  const out: Example[] = [];
  for (const f of files) for (const r of await collect(decodeTfrecord(readBytes(path.join(versionDir, f))))) out.push(decodeExample(r.data));
  return out;
}

async function viaJsonl(steps: AsyncIterable<StepRecord>): Promise<AsyncGenerator<StepRecord[]>> {
  const text = (await collect(encodeJsonl(steps))).join('');
  const lines = decodeJsonl([Buffer.from(text)]);
  return groupEpisodes(
    (async function* () {
      for await (const l of lines) yield { record: parseStepRecord(l.value, { line: l.line }), line: l.line };
    })(),
  );
}

describe('reading an RLDS dataset directory', () => {
  it('finds the version directory from the dataset directory and lists splits', () => {
    const ds = openRlds(path.join(dir, 'toy_kitchen'));
    expect(ds.dir).toBe(src);
    expect(ds.info.name).toBe('toy_kitchen');
    expect(ds.leaves.map((l) => l.key).sort()).toContain('steps/observation/wrist_image');
  });

  it('emits one step record per step with RLDS names, nested observation and lossless images', async () => {
    const steps = await collect(readRlds(openRlds(src), { split: 'train' }));
    expect(steps).toHaveLength(4 + 3 + 5);
    const s = steps[4]; // episode 1, step 0
    const want = built.train[0][1];
    expect(Object.keys(s).slice(0, 10)).toEqual(['episode_id', 'step', 'is_first', 'is_last', 'is_terminal', 'observation', 'action', 'reward', 'discount', 'language_instruction']);
    expect(s).toMatchObject({ episode_id: 'train-1', step: 0, is_first: true, is_last: false, is_terminal: false, reward: 0, discount: 1 });
    expect(s.language_instruction).toBe('put the carrot 2 on the plate');
    expect((s.action as number[]).map(Math.fround)).toEqual(want.steps[0].action);
    expect((s.observation!.state as number[]).map(Math.fround)).toEqual(want.steps[0].state);
    const img = s.observation!.image_0 as { mime: string; b64: string };
    expect(img.mime).toBe('image/png');
    expect(Buffer.from(img.b64, 'base64').equals(want.steps[0].image_0)).toBe(true);
    const wrist = s.observation!.wrist_image as { mime: string; b64: string };
    expect(wrist.mime).toBe('image/jpeg');
    expect(Buffer.from(wrist.b64, 'base64').equals(want.steps[0].wrist_image)).toBe(true);
    expect(s.episode_metadata).toEqual({ file_path: '/data/raw/episode_2.npy', episode_id: 1002 });
    expect(steps[11]).toMatchObject({ episode_id: 'train-2', step: 4, is_last: true, is_terminal: true, reward: 1 });
  });

  it('reads another split, and names the splits there are when asked for a missing one', async () => {
    expect(await collect(readRlds(openRlds(src), { split: 'val' }))).toHaveLength(2);
    await expect(collect(readRlds(openRlds(src), { split: 'test' }))).rejects.toThrow(/E_USAGE .*no split "test" in this dataset; it has: train, val/);
  });
});

describe('RLDS -> JSONL -> RLDS reproduces every value', () => {
  it('with the source features.json', async () => {
    const ds = openRlds(src);
    const out = path.join(dir, 'copy', '1.0.0');
    const res = await writeRlds(await viaJsonl(readRlds(ds, { split: 'train' })), { dir: out, name: 'toy_kitchen', features: ds.features });
    expect(res).toMatchObject({ episodes: 3, steps: 12 });
    expect(await examplesOf(out, 'train')).toEqual(await examplesOf(src, 'train'));
    expect(JSON.parse(readFileSync(path.join(out, 'features.json'), 'utf8'))).toEqual(FEATURES_JSON);
    const info = JSON.parse(readFileSync(path.join(out, 'dataset_info.json'), 'utf8'));
    expect(info).toMatchObject({ name: 'toy_kitchen', version: '1.0.0', fileFormat: 'tfrecord' });
    expect(info.splits).toEqual([{ filepathTemplate: '{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}', name: 'train', numBytes: expect.any(String), shardLengths: ['3'] }]);
    expect(readdirSync(out).sort()).toEqual(['dataset_info.json', 'features.json', 'toy_kitchen-train.tfrecord-00000-of-00001']);
  });

  it('with features inferred from the records, sharded by size', async () => {
    const out = path.join(dir, 'inferred', '1.0.0');
    await writeRlds(await viaJsonl(readRlds(openRlds(src), { split: 'train' })), { dir: out, maxShardBytes: 20_000 });
    expect(await examplesOf(out, 'train')).toEqual(await examplesOf(src, 'train'));
    const files = readdirSync(out).filter((f) => f.includes('tfrecord')).sort();
    expect(files.length).toBeGreaterThan(1);
    expect(files[0]).toBe(`inferred-train.tfrecord-00000-of-${String(files.length).padStart(5, '0')}`);
    const back = openRlds(out);
    const leaves = Object.fromEntries(back.leaves.map((l) => [l.key, l.node]));
    expect(leaves['steps/observation/image_0']).toMatchObject({ kind: 'image', shape: [48, 64, 3], encodingFormat: 'png' });
    expect(leaves['steps/observation/wrist_image']).toMatchObject({ kind: 'image', shape: [32, 32, 3], encodingFormat: 'jpeg' });
    expect(leaves['steps/action']).toMatchObject({ kind: 'tensor', shape: [7], dtype: 'float32' });
    expect(leaves['steps/reward']).toMatchObject({ kind: 'tensor', shape: [], dtype: 'float32', scalar: true });
    expect(leaves['steps/is_first']).toMatchObject({ kind: 'tensor', dtype: 'bool' });
    expect(leaves['episode_metadata/episode_id']).toMatchObject({ kind: 'tensor', dtype: 'int64' });
    expect(await collect(readRlds(back))).toEqual(
      (await collect(readRlds(openRlds(src)))).map((s) => s),
    );
  });
});

describe('fields that only some steps have', () => {
  it('a policy record with per-cycle keys and a sometimes-present field are kept as JSON text, null where absent', async () => {
    const step = (t: number, extra: Record<string, unknown>): StepRecord => ({ episode_id: 'e', step: t, is_first: t === 0, is_last: t === 2, is_terminal: false, observation: { state: [t, 0] }, action: [0.1, 0], reward: 0, discount: 1, language_instruction: 'x', ...extra });
    const steps = [
      step(0, { policy: { cycle: 0, chunk_step: 0, subtasks: ['reach', 'grasp'] } }),
      step(1, { policy: { cycle: 0, chunk_step: 1 }, safety: { interventions: ['bounds'] } }),
      step(2, {}),
    ];
    const out = path.join(dir, 'sparse', '1.0.0');
    await writeRlds((async function* () { yield steps; })(), { dir: out });
    const leaves = Object.fromEntries(openRlds(out).leaves.map((l) => [l.key, l.node]));
    expect(leaves['steps/policy']).toMatchObject({ kind: 'text', encoding: 'json' });
    expect(leaves['steps/safety']).toMatchObject({ kind: 'text', encoding: 'json' }); // absent from step 0, still kept
    const back = await collect(readRlds(openRlds(out)));
    expect(back.map((s) => s.policy)).toEqual([steps[0].policy, steps[1].policy, null]);
    expect(back.map((s) => s.safety)).toEqual([null, { interventions: ['bounds'] }, null]);
  });
});

describe('bad input', () => {
  it('a step count that disagrees between features names the field, record and shard', async () => {
    const bad = path.join(dir, 'bad', '1.0.0');
    await standardDataset(bad);
    const shard = path.join(bad, 'toy_kitchen-val.tfrecord-00000-of-00001');
    const ex = decodeExample((await collect(decodeTfrecord(readBytes(shard))))[0].data);
    const action = ex.features.get('steps/action')!;
    (action.value as number[]).push(...new Array(7).fill(0));
    const { encodeExample, frameTfrecord } = await import('../../src/lib/io/index.js');
    writeFileSync(shard, frameTfrecord(encodeExample(ex)));
    await expect(collect(readRlds(openRlds(bad), { split: 'val' }))).rejects.toThrow(
      /E_RLDS_SHAPE at record 0 \(byte 0\) field "steps\/[a-z_/]+" of .*val\.tfrecord-00000-of-00001: holds 3 steps but steps\/observation\/image_0 holds 2; every step feature/,
    );
  });

  it('a shard with fewer episodes than dataset_info.json promises, and a missing shard', async () => {
    const bad = path.join(dir, 'bad2', '1.0.0');
    await standardDataset(bad);
    const shard = path.join(bad, 'toy_kitchen-train.tfrecord-00000-of-00002');
    const recs = await collect(decodeTfrecord(readBytes(shard)));
    const { frameTfrecord } = await import('../../src/lib/io/index.js');
    writeFileSync(shard, frameTfrecord(recs[0].data));
    await expect(collect(readRlds(openRlds(bad)))).rejects.toThrow(/E_RLDS_INFO .*shard holds 1 episodes but dataset_info.json says 2/);
    rmSync(shard);
    await expect(collect(readRlds(openRlds(bad)))).rejects.toThrow(/E_NOT_FOUND .*00000-of-00002: shard listed in dataset_info.json is missing/);
  });

  it('steps out of order or an episode split in two are refused with the line', async () => {
    const rec = (episode_id: string, step: number, line: number) => ({ record: { episode_id, step, action: [0] } as StepRecord, line });
    const run = (recs: ReturnType<typeof rec>[]) => collect(groupEpisodes((async function* () { yield* recs; })()));
    await expect(run([rec('a', 0, 1), rec('a', 2, 2)])).rejects.toThrow(/E_STEP_ORDER at line 2: expected step 1 of episode "a", found step 2/);
    await expect(run([rec('a', 0, 1), rec('b', 0, 2), rec('a', 0, 3)])).rejects.toThrow(/E_STEP_ORDER at line 3: episode "a" appears again/);
  });

  it('writing refuses a non-empty output directory and leaves no temporary files on failure', async () => {
    const out = path.join(dir, 'fail');
    const eps = (async function* (): AsyncGenerator<StepRecord[]> {
      yield [{ episode_id: 0, step: 0, action: [1, 2] }];
      yield [{ episode_id: 1, step: 0, action: [1, 2, 3] }];
    })();
    await expect(writeRlds(eps, { dir: path.join(out, '1.0.0') })).rejects.toThrow(/E_RLDS_SHAPE at record 1 field "action": expected an array of shape \[2\]/);
    expect(readdirSync(out)).toEqual([]);
    await expect(writeRlds((async function* () {})(), { dir: src })).rejects.toThrow(/E_USAGE in .*1\.0\.0: the output \(-o\) exists \(a directory holding \d+ entries\); pass --overwrite/);
  });
});

describe('gzip shards in a dataset directory', () => {
  it('are read like plain ones; a truncated one keeps its complete episodes under skipCorrupt and names record and offsets', async () => {
    const { gzipSync } = await import('node:zlib');
    const { makeEpisode, buildRlds } = await import('../rlds-builder.js');
    const gz = path.join(dir, 'gz', '1.0.0');
    const eps = [];
    for (let s = 1; s <= 6; s++) eps.push(await makeEpisode(s, 3));
    await buildRlds(gz, { train: [eps] });
    const shard = path.join(gz, readdirSync(gz).find((f) => f.includes('.tfrecord-'))!);
    const plain = readFileSync(shard);
    const whole = gzipSync(plain);
    writeFileSync(shard, whole);
    expect((await collect(readRlds(openRlds(gz)))).length).toBe(18);
    const cut = whole.subarray(0, Math.floor(whole.length * 0.6));
    writeFileSync(shard, cut);
    await expect(collect(readRlds(openRlds(gz)))).rejects.toThrow(/^E_TFRECORD_TRUNCATED at record \d+ \(compressed byte \d+, uncompressed byte \d+\) of .*: gzip stream ends early/);
    const skipped: string[] = [];
    const steps = await collect(readRlds(openRlds(gz), { skipCorrupt: true, onSkip: (e) => skipped.push(e.message) }));
    const complete = steps.length / 3;
    expect(complete).toBeGreaterThan(0);
    expect(steps.every((s) => Array.isArray(s.action))).toBe(true);
    expect(skipped).toHaveLength(1);
    expect(skipped[0]).toMatch(new RegExp(`E_TFRECORD_TRUNCATED at record ${complete} \\(compressed byte ${cut.length}, uncompressed byte \\d+\\)`));
  });
});
