/**
 * Writing LeRobot datasets: an RLDS dataset (test/rlds-builder.ts) converts to LeRobot v3.0 and v2.1 and back
 * through vlakit's reader (non-image features exact, video frames within a stated codec tolerance), and the written
 * files follow the rules LeRobot's own loader applies (lerobot/datasets/utils.py, dataset_metadata.py,
 * compute_stats.py): file paths from info.json's templates, parquet column types, info.json keys, meta/episodes
 * ranges matching the data rows, timestamps = frame_index / fps, tasks.parquet indexed by the task string.
 */
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import type { StepRecord } from '../../src/lib/io/records.js';
import { tempDir } from '../helpers.js';
import { buildRlds, makeEpisode, type Painter } from '../rlds-builder.js';

const BIN = path.resolve('bin/run.js');
const dir = tempDir();
const vlakit = (args: string[]) => execa('node', [BIN, ...args], { reject: false, cwd: dir, env: { NO_COLOR: '1' } }).then((r) => ({ code: r.exitCode, out: r.stdout, err: r.stderr }));
const readJsonl = (f: string) => readFileSync(path.join(dir, f), 'utf8').trim().split('\n').map((l) => JSON.parse(l));

/** Smooth gradients that move with t (lossy video keeps them close; neighbouring frames differ). */
const smooth: Painter = async (seed, t) => {
  const draw = (w: number, h: number, k: number) =>
    Buffer.from(Array.from({ length: w * h * 3 }, (_, i) => {
      const p = Math.floor(i / 3);
      return Math.min(255, 30 + (p % w) * 2 + Math.floor(p / w) * 2 + (i % 3) * 40 + seed * 9 + t * 12 + k);
    }));
  return {
    image_0: await sharp(draw(64, 48, 0), { raw: { width: 64, height: 48, channels: 3 } }).png().toBuffer(),
    wrist_image: await sharp(draw(32, 32, 20), { raw: { width: 32, height: 32, channels: 3 } }).jpeg({ quality: 90 }).toBuffer(),
  };
};

const { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } = await import('hyparquet');
async function parquet(file: string): Promise<{ rows: Record<string, unknown>[]; schema: { name: string; type?: string; converted_type?: string }[]; kv: Record<string, string> }> {
  const buf = await asyncBufferFromFile(file);
  const md = await parquetMetadataAsync(buf);
  const rows = (await parquetReadObjects({ file: buf })) as Record<string, unknown>[];
  return { rows, schema: md.schema as never, kv: Object.fromEntries((md.key_value_metadata ?? []).map((k) => [k.key, k.value ?? ''])) };
}
/** A LeRobot template filled as Python's str.format does for {name} and {name:03d}. */
const fill = (t: string, v: Record<string, string | number>) => t.replace(/\{(\w+)(?::0(\d)d)?\}/g, (_, k: string, w?: string) => (w ? String(v[k]).padStart(Number(w), '0') : String(v[k])));
const files = (root: string, sub = ''): string[] =>
  readdirSync(path.join(root, sub), { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(root, path.join(sub, e.name)) : [path.join(sub, e.name)]));

async function pixels(b64: string): Promise<Buffer> {
  return sharp(Buffer.from(b64, 'base64')).removeAlpha().raw().toBuffer();
}
async function meanError(a: string, b: string): Promise<number> {
  const [x, y] = [await pixels(a), await pixels(b)];
  expect(x.length).toBe(y.length);
  let s = 0;
  for (let i = 0; i < x.length; i++) s += Math.abs(x[i] - y[i]);
  return s / x.length;
}

const EPISODES = [3, 2];
let source: Record<string, any>[] = [];

beforeAll(async () => {
  await buildRlds(path.join(dir, 'rlds'), { train: [[await makeEpisode(1, EPISODES[0], smooth), await makeEpisode(2, EPISODES[1], smooth)]] });
  const r = await vlakit(['convert', 'rlds', '-q', '-o', 'source.jsonl']);
  expect(r.code, r.err).toBe(0);
  source = readJsonl('source.jsonl');
}, 60_000);

/** The non-image fields a LeRobot round trip keeps exactly. */
const kept = (s: Record<string, any>) => ({ step: s.step, action: s.action, state: s.observation.state, reward: s.reward, instruction: s.language_instruction, first: s.is_first, last: s.is_last, terminal: s.is_terminal, discount: s.discount, meta: s.episode_metadata });

describe('convert --to lerobot', () => {
  for (const [version, codec, tolerance] of [['3.0', 'av1', 3], ['2.1', 'h264', 3]] as const) {
    it(`v${version} (${codec} video): back through vlakit's reader, non-image features exact, frames within ${tolerance} levels`, async () => {
      const out = `lr${version}`;
      const w = await vlakit(['convert', 'rlds', '--to', 'lerobot', '--lerobot-version', version, '--video-codec', codec, '--fps', '5', '-o', out]);
      expect(w.code, w.err).toBe(0);
      expect(w.err).not.toMatch(/LeRobot has no column/);
      const r = await vlakit(['convert', out, '-q', '-o', `${out}.jsonl`]);
      expect(r.code, r.err).toBe(0);
      const back = readJsonl(`${out}.jsonl`);
      expect(back.map(kept)).toEqual(source.map(kept));
      expect(back.map((s) => s.episode_id)).toEqual([0, 0, 0, 1, 1]);
      const errors: number[] = [];
      for (const [i, s] of back.entries()) {
        for (const cam of ['image_0', 'wrist_image']) errors.push(await meanError(s.observation[cam].b64, source[i].observation[cam].b64));
      }
      // yuv420p video: mean absolute error per pixel (0..255) of every frame against its source
      expect(Math.max(...errors)).toBeLessThan(tolerance);
      // the MP4s hold the codec info.json names
      const root = path.join(dir, out);
      const info = JSON.parse(readFileSync(path.join(root, 'meta/info.json'), 'utf8'));
      const mp4 = files(root).find((f) => f.endsWith('.mp4'))!;
      const { findFfmpeg } = await import('../../src/lib/diag/video.js');
      const probe = await execa(findFfmpeg()!, ['-hide_banner', '-i', path.join(root, mp4)], { reject: false });
      expect(probe.stderr).toMatch(new RegExp(`Video: ${codec}`));
      expect(info.features['observation.image_0'].info['video.codec']).toBe(codec);
    }, 120_000);
  }

  it('v3.0 files follow LeRobot loader rules (paths from templates, column types, episodes ranges, timestamps, tasks, stats)', async () => {
    const root = path.join(dir, 'lr3.0');
    const info = JSON.parse(readFileSync(path.join(root, 'meta/info.json'), 'utf8'));
    // info.json as LeRobot's create_empty_dataset_info (v3.0) lays it out
    expect(Object.keys(info).sort()).toEqual(['chunks_size', 'codebase_version', 'data_files_size_in_mb', 'data_path', 'features', 'fps', 'robot_type', 'splits', 'total_episodes', 'total_frames', 'total_tasks', 'video_files_size_in_mb', 'video_path'].sort());
    expect(info).toMatchObject({ codebase_version: 'v3.0', fps: 5, total_episodes: 2, total_frames: 5, total_tasks: 2, chunks_size: 1000, splits: { train: '0:2' } });
    expect(info.data_path).toBe('data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet');
    expect(info.video_path).toBe('videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4');
    expect(info.features.action).toEqual({ dtype: 'float32', shape: [7], names: null });
    expect(info.features['observation.state']).toEqual({ dtype: 'float32', shape: [7], names: null });
    expect(info.features['observation.image_0']).toMatchObject({ dtype: 'video', shape: [48, 64, 3], names: ['height', 'width', 'channels'] });
    expect(info.features['observation.wrist_image'].shape).toEqual([32, 32, 3]);
    // other step fields keep their names: discount as float32, episode_metadata (an object) as JSON text
    expect(info.features.discount).toEqual({ dtype: 'float32', shape: [1], names: null });
    expect(info.features.episode_metadata).toEqual({ dtype: 'string', shape: [1], names: null, info: { json: true } });
    for (const [k, dtype] of [['timestamp', 'float32'], ['frame_index', 'int64'], ['episode_index', 'int64'], ['index', 'int64'], ['task_index', 'int64'], ['next.reward', 'float32'], ['next.done', 'bool']]) expect(info.features[k]).toEqual({ dtype, shape: [1], names: null });

    // tasks.parquet: task_index with the task strings as the pandas index named "task"
    const tasks = await parquet(path.join(root, 'meta/tasks.parquet'));
    expect(tasks.rows).toEqual([{ task_index: 0n, task: 'put the carrot 1 on the plate' }, { task_index: 1n, task: 'put the carrot 2 on the plate' }]);
    expect(JSON.parse(tasks.kv.pandas).index_columns).toEqual(['task']);

    // meta/episodes: every file the loader would open exists, and each episode's range holds its rows
    const eps = await parquet(path.join(root, 'meta/episodes/chunk-000/file-000.parquet'));
    const cams = ['observation.image_0', 'observation.wrist_image'];
    const need = ['episode_index', 'tasks', 'length', 'data/chunk_index', 'data/file_index', 'dataset_from_index', 'dataset_to_index', 'meta/episodes/chunk_index', 'meta/episodes/file_index', ...cams.flatMap((c) => ['chunk_index', 'file_index', 'from_timestamp', 'to_timestamp'].map((x) => `videos/${c}/${x}`))];
    for (const k of need) expect(Object.keys(eps.rows[0]), k).toContain(k);
    expect(eps.schema.find((s) => s.name === 'dataset_from_index')?.type).toBe('INT64');
    expect(eps.schema.find((s) => s.name === `videos/${cams[0]}/from_timestamp`)?.type).toBe('DOUBLE');
    let offset = 0;
    for (const [e, ep] of eps.rows.entries()) {
      expect(ep.episode_index).toBe(BigInt(e));
      expect(ep.tasks).toEqual([`put the carrot ${e + 1} on the plate`]);
      expect(Number(ep.length)).toBe(EPISODES[e]);
      expect([Number(ep.dataset_from_index), Number(ep.dataset_to_index)]).toEqual([offset, offset + EPISODES[e]]);
      const data = await parquet(path.join(root, fill(info.data_path, { chunk_index: Number(ep['data/chunk_index']), file_index: Number(ep['data/file_index']) })));
      const rows = data.rows.slice(Number(ep.dataset_from_index), Number(ep.dataset_to_index));
      expect(rows.map((r) => [r.episode_index, r.frame_index, r.index])).toEqual(rows.map((_, i) => [BigInt(e), BigInt(i), BigInt(offset + i)]));
      for (const r of rows) expect(r.timestamp).toBe(Math.fround(Number(r.frame_index) / info.fps));
      for (const c of cams) {
        expect(existsSync(path.join(root, fill(info.video_path, { video_key: c, chunk_index: Number(ep[`videos/${c}/chunk_index`]), file_index: Number(ep[`videos/${c}/file_index`]) })))).toBe(true);
        expect([ep[`videos/${c}/from_timestamp`], ep[`videos/${c}/to_timestamp`]]).toEqual([offset / info.fps, (offset + EPISODES[e]) / info.fps]);
      }
      offset += EPISODES[e];
    }
    // data columns: LIST<FLOAT> for vectors, FLOAT timestamp, INT64 indices, BOOLEAN done; no video columns
    const data = await parquet(path.join(root, 'data/chunk-000/file-000.parquet'));
    const type = (n: string) => data.schema.find((s) => s.name === n)?.type;
    expect(Object.keys(data.rows[0]).sort()).toEqual(['action', 'discount', 'episode_index', 'episode_metadata', 'frame_index', 'index', 'next.done', 'next.reward', 'observation.state', 'task_index', 'timestamp']);
    expect(data.schema.find((s) => s.name === 'action')?.converted_type).toBe('LIST');
    expect(data.schema.filter((s) => s.name === 'element').map((s) => s.type)).toEqual(['FLOAT', 'FLOAT']);
    expect([type('timestamp'), type('frame_index'), type('episode_index'), type('index'), type('task_index'), type('next.done'), type('next.reward')]).toEqual(['FLOAT', 'INT64', 'INT64', 'INT64', 'INT64', 'BOOLEAN', 'FLOAT']);
    expect(JSON.parse(data.kv.huggingface).info.features.action).toEqual({ feature: { dtype: 'float32', _type: 'Value' }, length: 7, _type: 'Sequence' });
    expect(data.rows.map((r) => r['next.done'])).toEqual([false, false, true, false, true]);
    expect(data.schema.find((s) => s.name === 'episode_metadata')).toMatchObject({ type: 'BYTE_ARRAY', converted_type: 'UTF8' });
    expect(JSON.parse(data.rows[0].episode_metadata as string)).toEqual(source[0].episode_metadata);

    // stats.json: min/max/mean/std/count per feature (population std), cameras per channel in [0, 1] as [3][1][1]
    const stats = JSON.parse(readFileSync(path.join(root, 'meta/stats.json'), 'utf8'));
    const acts = source.map((s) => s.action as number[]);
    for (let d = 0; d < 7; d++) {
      const col = acts.map((a) => a[d]);
      const mean = col.reduce((a, b) => a + b, 0) / col.length;
      const std = Math.sqrt(col.reduce((a, b) => a + (b - mean) ** 2, 0) / col.length);
      expect(stats.action.min[d]).toBe(Math.min(...col));
      expect(stats.action.max[d]).toBe(Math.max(...col));
      expect(stats.action.mean[d]).toBeCloseTo(mean, 12);
      expect(stats.action.std[d]).toBeCloseTo(std, 12);
    }
    expect(stats.action.count).toEqual([5]);
    expect(stats.timestamp.max).toEqual([Math.fround(2 / 5)]);
    const img = stats['observation.image_0'];
    expect(img.mean).toHaveLength(3);
    expect(img.mean[0]).toHaveLength(1);
    expect(img.mean[0][0]).toHaveLength(1);
    // channel 0 of the source PNGs, independently
    let sum = 0;
    let n = 0;
    for (const s of source) {
      const px = await pixels(s.observation.image_0.b64);
      for (let i = 0; i < px.length; i += 3) (sum += px[i] / 255), (n += 1);
    }
    expect(img.mean[0][0][0]).toBeCloseTo(sum / n, 9);
    expect(img.count).toEqual([5]);
    expect(stats.episode_metadata).toBeUndefined();
    expect(stats['next.done']).toMatchObject({ min: [0], max: [1], count: [5] });
  }, 60_000);

  it('v2.1 files: one parquet and one MP4 per episode from the templates, jsonl metadata', async () => {
    const root = path.join(dir, 'lr2.1');
    const info = JSON.parse(readFileSync(path.join(root, 'meta/info.json'), 'utf8'));
    expect(info).toMatchObject({ codebase_version: 'v2.1', total_episodes: 2, total_frames: 5, total_tasks: 2, total_videos: 4, total_chunks: 1, chunks_size: 1000, fps: 5 });
    expect(info.data_path).toBe('data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet');
    expect(info.video_path).toBe('videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4');
    const expected = ['meta/episodes.jsonl', 'meta/episodes_stats.jsonl', 'meta/info.json', 'meta/stats.json', 'meta/tasks.jsonl'];
    for (const e of [0, 1]) {
      expected.push(fill(info.data_path, { episode_chunk: 0, episode_index: e }));
      for (const c of ['observation.image_0', 'observation.wrist_image']) expected.push(fill(info.video_path, { episode_chunk: 0, episode_index: e, video_key: c }));
      const data = await parquet(path.join(root, fill(info.data_path, { episode_chunk: 0, episode_index: e })));
      expect(data.rows.map((r) => Number(r.frame_index))).toEqual([...Array(EPISODES[e]).keys()]);
      for (const r of data.rows) expect(r.timestamp).toBe(Math.fround(Number(r.frame_index) / 5));
    }
    expect(files(root).sort()).toEqual(expected.sort());
    const lines = (f: string) => readFileSync(path.join(root, 'meta', f), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines('tasks.jsonl')).toEqual([{ task_index: 0, task: 'put the carrot 1 on the plate' }, { task_index: 1, task: 'put the carrot 2 on the plate' }]);
    expect(lines('episodes.jsonl')).toEqual([{ episode_index: 0, tasks: ['put the carrot 1 on the plate'], length: 3 }, { episode_index: 1, tasks: ['put the carrot 2 on the plate'], length: 2 }]);
    const es = lines('episodes_stats.jsonl');
    expect(es[1].episode_index).toBe(1);
    expect(es[1].stats.action.count).toEqual([2]);
    expect(es[1].stats.action.max).toEqual([0, 1, 2, 3, 4, 5, 6].map((d) => Math.max(source[3].action[d], source[4].action[d])));
    // cameras per channel as [3][1][1] (LeRobot's aggregate_stats asserts that shape), strings without stats
    expect(es[0].stats['observation.wrist_image'].std.map((c: number[][]) => [c.length, c[0].length])).toEqual([[1, 1], [1, 1], [1, 1]]);
    expect(es[0].stats['observation.wrist_image'].count).toEqual([3]);
    expect(es[0].stats.episode_metadata).toBeUndefined();
  });

  it('--lerobot-images image keeps the camera bytes in the parquet: an exact round trip', async () => {
    const w = await vlakit(['convert', 'rlds', '-q', '--to', 'lerobot', '--lerobot-images', 'image', '-o', 'lrimg']);
    expect(w.code, w.err).toBe(0);
    expect(existsSync(path.join(dir, 'lrimg/videos'))).toBe(false);
    const info = JSON.parse(readFileSync(path.join(dir, 'lrimg/meta/info.json'), 'utf8'));
    expect(info.features['observation.image_0'].dtype).toBe('image');
    expect(info.video_path).toBeNull();
    expect(info.fps).toBe(10);
    const r = await vlakit(['convert', 'lrimg', '-q', '-o', 'lrimg.jsonl']);
    expect(r.code, r.err).toBe(0);
    const back = readJsonl('lrimg.jsonl');
    expect(back.map((s) => [s.observation.image_0, s.observation.wrist_image])).toEqual(source.map((s) => [s.observation.image_0, s.observation.wrist_image]));
    expect(back.map(kept)).toEqual(source.map(kept));
  }, 60_000);

  it('annotate --to lerobot: the annotations ride along as JSON text features and read back as the same records', async () => {
    const a = await vlakit(['annotate', 'rlds', '-q', '--kind', 'reasoning', '-o', 'annotated.jsonl', '--no-cache']);
    expect(a.code, a.err).toBe(0);
    const w = await vlakit(['annotate', 'rlds', '-q', '--kind', 'reasoning', '--to', 'lerobot', '--lerobot-images', 'image', '-o', 'lrann', '--no-cache']);
    expect(w.code, w.err).toBe(0);
    const info = JSON.parse(readFileSync(path.join(dir, 'lrann/meta/info.json'), 'utf8'));
    expect(info.features.reasoning).toEqual({ dtype: 'string', shape: [1], names: null, info: { json: true } });
    const r = await vlakit(['convert', 'lrann', '-q', '-o', 'lrann.jsonl']);
    expect(r.code, r.err).toBe(0);
    const [want, got] = [readJsonl('annotated.jsonl'), readJsonl('lrann.jsonl')];
    expect(got.map((s) => s.reasoning)).toEqual(want.map((s) => s.reasoning));
    expect(got[0].reasoning).toBeTypeOf('object');
  }, 60_000);

  it('v3.0 past the data file size: a new data file and new video files, located by meta/episodes', async () => {
    const { writeLeRobot } = await import('../../src/lib/io/lerobot-write.js');
    const { readLeRobot } = await import('../../src/lib/io/lerobot.js');
    const { groupEpisodes } = await import('../../src/lib/io/rlds.js');
    const steps = (async function* () {
      for (const record of source) yield { record: record as StepRecord };
    })();
    const root = path.join(dir, 'lrsplit');
    // a 1-byte limit: every episode starts a new file
    const res = await writeLeRobot(groupEpisodes(steps), { dir: root, fps: 5, videoCodec: 'h264', maxDataFileBytes: 1 });
    expect(res.files.filter((f) => f.startsWith('data/'))).toEqual(['data/chunk-000/file-000.parquet', 'data/chunk-000/file-001.parquet']);
    expect(res.files).toContain('videos/observation.image_0/chunk-000/file-001.mp4');
    const eps = await parquet(path.join(root, 'meta/episodes/chunk-000/file-000.parquet'));
    expect(eps.rows.map((r) => [r['data/file_index'], r.dataset_from_index, r.dataset_to_index, r['videos/observation.image_0/file_index'], r['videos/observation.image_0/from_timestamp']])).toEqual([
      [0n, 0n, 3n, 0n, 0],
      [1n, 3n, 5n, 1n, 0],
    ]);
    const back = [];
    for await (const s of readLeRobot(root)) back.push(s);
    expect(back.map(kept)).toEqual(source.map(kept));
    for (const [i, s] of back.entries()) expect(await meanError((s.observation as any).image_0.b64, source[i].observation.image_0.b64)).toBeLessThan(3);
  }, 60_000);

  it('v3.0 past the video file size: new files as well (a 0-byte limit: after every episode, whatever ffmpeg has flushed)', async () => {
    const { writeLeRobot } = await import('../../src/lib/io/lerobot-write.js');
    const { groupEpisodes } = await import('../../src/lib/io/rlds.js');
    const steps = (async function* () {
      for (const record of source) yield { record: record as StepRecord };
    })();
    const res = await writeLeRobot(groupEpisodes(steps), { dir: path.join(dir, 'lrvsplit'), fps: 5, videoCodec: 'h264', maxVideoFileBytes: 0 });
    expect(res.files.filter((f) => f.startsWith('data/') || f.includes('wrist'))).toEqual(['data/chunk-000/file-000.parquet', 'data/chunk-000/file-001.parquet', 'videos/observation.wrist_image/chunk-000/file-000.mp4', 'videos/observation.wrist_image/chunk-000/file-001.mp4']);
  }, 60_000);

  it('refusals: a later step that does not fit the first episode\'s features, odd frame sides for video; nothing written', async () => {
    const { writeLeRobot } = await import('../../src/lib/io/lerobot-write.js');
    const eps = (list: Record<string, any>[][]) =>
      (async function* () {
        yield* list as StepRecord[][];
      })();
    const step = (e: number, t: number, action: number[], extra: Record<string, unknown> = {}) => ({ episode_id: e, step: t, observation: { state: [0, 1] }, action, language_instruction: 'push', ...extra });
    const bad = writeLeRobot(eps([[step(0, 0, [1, 2, 3, 4])], [step(1, 0, [1, 2, 3, 4]), step(1, 1, [1, 2, 3])]]), { dir: path.join(dir, 'bad1') });
    await expect(bad).rejects.toMatchObject({ code: 'E_RECORD_INVALID', message: expect.stringMatching(/expected a list of 4 numbers \(as in the first episode\), found \[1,2,3\]/) });
    await expect(bad).rejects.toMatchObject({ context: { record: 1, field: 'action of episode 1' } });
    expect(existsSync(path.join(dir, 'bad1'))).toBe(false);
    const odd = { mime: 'image/png', b64: (await sharp(Buffer.alloc(5 * 3 * 3, 90), { raw: { width: 5, height: 3, channels: 3 } }).png().toBuffer()).toString('base64') };
    const video = writeLeRobot(eps([[{ ...step(0, 0, [1, 2, 3, 4]), observation: { image: odd } }]]), { dir: path.join(dir, 'bad2') });
    await expect(video).rejects.toMatchObject({ code: 'E_USAGE', message: expect.stringMatching(/5x3 pixels: yuv420p video needs even sides; .*--lerobot-images image/) });
    expect(existsSync(path.join(dir, 'bad2'))).toBe(false);
    // as images in the parquet, odd sides are fine
    const ok = await writeLeRobot(eps([[{ ...step(0, 0, [1, 2, 3, 4]), observation: { image: odd } }]]), { dir: path.join(dir, 'odd'), images: 'image' });
    expect(ok.steps).toBe(1);
  });

  it('rollout --to lerobot: the built-in world\'s records (oracle, episode_metadata) read back the same; fps = --hz', async () => {
    const common = ['rollout', '--episodes', '1', '--width', '32', '--height', '32', '--seed', '3', '--hz', '5', '-q'];
    expect((await vlakit([...common, '-o', 'roll.jsonl'])).code).toBe(0);
    const w = await vlakit([...common, '--to', 'lerobot', '-o', 'lrroll']);
    expect(w.code, w.err).toBe(0);
    expect(JSON.parse(readFileSync(path.join(dir, 'lrroll/meta/info.json'), 'utf8'))).toMatchObject({ fps: 5, features: { oracle: { dtype: 'string', info: { json: true } } } });
    expect((await vlakit(['convert', 'lrroll', '-q', '-o', 'lrroll.jsonl'])).code).toBe(0);
    const strip = ({ observation, episode_id, timestamp, ...rest }: Record<string, any>) => ({ ...rest, state: observation.state });
    const [want, got] = [readJsonl('roll.jsonl'), readJsonl('lrroll.jsonl')];
    expect(got.length).toBeGreaterThan(2);
    expect(got.map(strip)).toEqual(want.map(strip));
  }, 60_000);

  it('outputs: an existing directory is refused without --overwrite (and kept), never written over an input', async () => {
    writeFileSync(path.join(dir, 'lrimg', 'marker'), 'x');
    const r = await vlakit(['convert', 'rlds', '--to', 'lerobot', '--lerobot-images', 'image', '-o', 'lrimg']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--overwrite/);
    expect(existsSync(path.join(dir, 'lrimg', 'marker'))).toBe(true);
    const o = await vlakit(['convert', 'rlds', '-q', '--to', 'lerobot', '--lerobot-images', 'image', '--overwrite', '-o', 'lrimg']);
    expect(o.code, o.err).toBe(0);
    expect(existsSync(path.join(dir, 'lrimg', 'marker'))).toBe(false);
    const same = await vlakit(['convert', 'lrimg', '--to', 'lerobot', '--overwrite', '-o', 'lrimg']);
    expect(same.code).toBe(2);
    expect(existsSync(path.join(dir, 'lrimg/meta/info.json'))).toBe(true);
    const stdout = await vlakit(['convert', 'rlds', '--to', 'lerobot']);
    expect(stdout.code).toBe(2);
    expect(stdout.err).toMatch(/LeRobot output is a directory/);
  }, 60_000);
});
