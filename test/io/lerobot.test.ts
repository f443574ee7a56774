/**
 * LeRobot datasets (v2.1 and v3.0 layouts) written here with hyparquet-writer as LeRobot lays them out (LIST<float>
 * columns, image structs {bytes, path}, tasks in jsonl or parquet), read by the binary as the same steps.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers.js';
import { shortFloat32 } from '../../src/lib/io/json.js';

const BIN = path.resolve('bin/run.js');
const dir = tempDir();
const vlakit = (args: string[]) => execa('node', [BIN, ...args], { reject: false, cwd: dir, env: { NO_COLOR: '1' } }).then((r) => ({ code: r.exitCode, out: r.stdout, err: r.stderr }));

interface Frame {
  episode: number;
  frame: number;
  action: number[];
  state: number[];
  png: Buffer;
  wrist: Buffer; // raw RGB 16x16, smooth (video codecs keep it close)
  reward: number;
  done: boolean;
  task: number;
}
const TASKS = ['push the T into place', 'stack the red cube on the blue cube'];
const frames: Frame[] = [];

const FEATURES = {
  action: { dtype: 'float32', shape: [7], names: null },
  'observation.state': { dtype: 'float32', shape: [3], names: null },
  'observation.image': { dtype: 'image', shape: [4, 6, 3], names: ['height', 'width', 'channel'] },
  'observation.images.wrist': { dtype: 'video', shape: [16, 16, 3], names: ['height', 'width', 'channel'], info: { 'video.fps': 10 } },
  timestamp: { dtype: 'float32', shape: [1], names: null },
  frame_index: { dtype: 'int64', shape: [1], names: null },
  episode_index: { dtype: 'int64', shape: [1], names: null },
  index: { dtype: 'int64', shape: [1], names: null },
  task_index: { dtype: 'int64', shape: [1], names: null },
  'next.reward': { dtype: 'float32', shape: [1], names: null },
  'next.done': { dtype: 'bool', shape: [1], names: null },
};

const SCHEMA = [
  { name: 'schema', num_children: 10 },
  { name: 'action', repetition_type: 'OPTIONAL', num_children: 1, converted_type: 'LIST' },
  { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
  { name: 'element', type: 'FLOAT', repetition_type: 'OPTIONAL' },
  { name: 'observation.state', repetition_type: 'OPTIONAL', num_children: 1, converted_type: 'LIST' },
  { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
  { name: 'element', type: 'FLOAT', repetition_type: 'OPTIONAL' },
  { name: 'observation.image', repetition_type: 'OPTIONAL', num_children: 2 },
  { name: 'bytes', type: 'BYTE_ARRAY', repetition_type: 'OPTIONAL' },
  { name: 'path', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' },
  { name: 'timestamp', type: 'FLOAT', repetition_type: 'OPTIONAL' },
  { name: 'frame_index', type: 'INT64', repetition_type: 'OPTIONAL' },
  { name: 'episode_index', type: 'INT64', repetition_type: 'OPTIONAL' },
  { name: 'index', type: 'INT64', repetition_type: 'OPTIONAL' },
  { name: 'task_index', type: 'INT64', repetition_type: 'OPTIONAL' },
  { name: 'next.reward', type: 'FLOAT', repetition_type: 'OPTIONAL' },
  { name: 'next.done', type: 'BOOLEAN', repetition_type: 'OPTIONAL' },
];

async function writeParquet(file: string, fs: Frame[]): Promise<void> {
  const { parquetWriteFile } = await import('hyparquet-writer');
  mkdirSync(path.dirname(file), { recursive: true });
  const columnData = [
    { name: 'action', data: fs.map((f) => f.action) },
    { name: 'observation.state', data: fs.map((f) => f.state) },
    { name: 'observation.image', data: fs.map((f) => ({ bytes: new Uint8Array(f.png), path: `frame_${f.frame}.png` })) },
    { name: 'timestamp', data: fs.map((f) => f.frame / 10) },
    { name: 'frame_index', data: fs.map((f) => BigInt(f.frame)) },
    { name: 'episode_index', data: fs.map((f) => BigInt(f.episode)) },
    { name: 'index', data: fs.map((f) => BigInt(frames.indexOf(f))) },
    { name: 'task_index', data: fs.map((f) => BigInt(f.task)) },
    { name: 'next.reward', data: fs.map((f) => f.reward) },
    { name: 'next.done', data: fs.map((f) => f.done) },
  ];
  parquetWriteFile({ filename: file, columnData, schema: SCHEMA as never });
}

beforeAll(async () => {
  for (const [e, T] of [[0, 3], [1, 2]] as const) {
    for (let t = 0; t < T; t++) {
      const raw = Buffer.alloc(4 * 6 * 3).map((_, i) => (i * 11 + e * 50 + t * 3) % 256);
      frames.push({
        episode: e,
        frame: t,
        action: Array.from({ length: 7 }, (_, k) => Math.fround(0.01 * (k + 1) * (e + 1) - t * 0.002)),
        state: [Math.fround(0.1 * t), Math.fround(e), Math.fround(-0.5)],
        png: await sharp(raw, { raw: { width: 6, height: 4, channels: 3 } }).png().toBuffer(),
        wrist: Buffer.from(
          Array.from({ length: 16 * 16 * 3 }, (_, i) => {
            const p = Math.floor(i / 3);
            const [y, x, c] = [Math.floor(p / 16), p % 16, i % 3];
            return Math.min(255, 40 + x * 6 + y * 4 + c * 30 + e * 40 + t * 10);
          }),
        ),
        reward: t === T - 1 ? 1 : 0,
        done: t === T - 1,
        task: e,
      });
    }
  }
  const info = (version: string, dataPath: string, videoPath: string) => ({ codebase_version: version, robot_type: 'so100', fps: 10, total_episodes: 2, total_frames: frames.length, total_tasks: 2, chunks_size: 1000, splits: { train: '0:2' }, data_path: dataPath, video_path: videoPath, features: FEATURES });
  const V21_VIDEO = 'videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4';
  const V30_VIDEO = 'videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4';
  // v2.1: one parquet file per episode, tasks.jsonl, episodes.jsonl
  const v21 = path.join(dir, 'v21');
  mkdirSync(path.join(v21, 'meta'), { recursive: true });
  writeFileSync(path.join(v21, 'meta/info.json'), JSON.stringify(info('v2.1', 'data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet', V21_VIDEO)));
  writeFileSync(path.join(v21, 'meta/tasks.jsonl'), TASKS.map((task, i) => JSON.stringify({ task_index: i, task })).join('\n') + '\n');
  writeFileSync(path.join(v21, 'meta/episodes.jsonl'), [0, 1].map((e) => JSON.stringify({ episode_index: e, tasks: [TASKS[e]], length: frames.filter((f) => f.episode === e).length })).join('\n') + '\n');
  for (const e of [0, 1]) await writeParquet(path.join(v21, `data/chunk-000/episode_${String(e).padStart(6, '0')}.parquet`), frames.filter((f) => f.episode === e));
  // v2.1 videos: H.264 (yuv420p), one file per episode
  for (const e of [0, 1]) await encode(path.join(v21, `videos/chunk-000/observation.images.wrist/episode_${String(e).padStart(6, '0')}.mp4`), frames.filter((f) => f.episode === e), ['-c:v', 'libx264', '-pix_fmt', 'yuv420p', '-crf', '10']);
  // v3.0: all episodes in one file, tasks.parquet (task strings as the pandas index column)
  const v30 = path.join(dir, 'v30');
  mkdirSync(path.join(v30, 'meta'), { recursive: true });
  writeFileSync(path.join(v30, 'meta/info.json'), JSON.stringify(info('v3.0', 'data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet', V30_VIDEO)));
  const { parquetWriteFile } = await import('hyparquet-writer');
  parquetWriteFile({ filename: path.join(v30, 'meta/tasks.parquet'), columnData: [{ name: 'task_index', data: [0n, 1n], type: 'INT64' }, { name: '__index_level_0__', data: TASKS, type: 'STRING' }] });
  await writeParquet(path.join(v30, 'data/chunk-000/file-000.parquet'), frames);
  // v3.0 video: AV1 (LeRobot v3's default codec), both episodes in one file, located by meta/episodes
  await encode(path.join(v30, 'videos/observation.images.wrist/chunk-000/file-000.mp4'), frames, ['-c:v', 'libaom-av1', '-strict', 'experimental', '-cpu-used', '8', '-crf', '10', '-b:v', '0', '-pix_fmt', 'yuv420p']);
  const n0 = frames.filter((f) => f.episode === 0).length;
  mkdirSync(path.join(v30, 'meta/episodes/chunk-000'), { recursive: true });
  parquetWriteFile({
    filename: path.join(v30, 'meta/episodes/chunk-000/file-000.parquet'),
    columnData: [
      { name: 'episode_index', data: [0n, 1n], type: 'INT64' },
      { name: 'videos/observation.images.wrist/chunk_index', data: [0n, 0n], type: 'INT64' },
      { name: 'videos/observation.images.wrist/file_index', data: [0n, 0n], type: 'INT64' },
      { name: 'videos/observation.images.wrist/from_timestamp', data: [0, n0 / 10], type: 'DOUBLE' },
    ],
  });
});

/** Frames encoded as a 10 fps MP4 with the ffmpeg the project ships. */
async function encode(file: string, fs: Frame[], codec: string[]): Promise<void> {
  const { findFfmpeg } = await import('../../src/lib/diag/video.js');
  mkdirSync(path.dirname(file), { recursive: true });
  await execa(findFfmpeg()!, ['-v', 'error', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', '16x16', '-r', '10', '-i', 'pipe:0', ...codec, '-y', file], { input: Buffer.concat(fs.map((f) => f.wrist)) });
}

/** Mean absolute difference of a PNG's pixels from raw RGB. */
async function meanError(b64: string, raw: Buffer): Promise<number> {
  const px = await sharp(Buffer.from(b64, 'base64')).raw().toBuffer();
  expect(px.length).toBe(raw.length);
  let s = 0;
  for (let i = 0; i < px.length; i++) s += Math.abs(px[i] - raw[i]);
  return s / px.length;
}

describe('LeRobot datasets', () => {
  it('without its video files: the other features convert, and a warning names the camera left out', async () => {
    const { cpSync, rmSync } = await import('node:fs');
    cpSync(path.join(dir, 'v21'), path.join(dir, 'novideo'), { recursive: true });
    rmSync(path.join(dir, 'novideo', 'videos'), { recursive: true });
    const r = await vlakit(['convert', 'novideo', '-o', 'novideo.jsonl']);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toMatch(/video file missing for observation\.images\.wrist/);
    const steps = readFileSync(path.join(dir, 'novideo.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(steps).toHaveLength(frames.length);
    expect(steps[0].observation['images.wrist']).toBeUndefined();
    expect(steps[0].action).toEqual(frames[0].action.map(shortFloat32));
    // inspect reads the metadata and parquet only: no video decoded, no warning
    const ins = await vlakit(['inspect', 'v30']);
    expect(ins.code, ins.err).toBe(0);
    expect(ins.err + ins.out).not.toMatch(/video file missing|no ffmpeg/);
    expect(ins.out).toMatch(/records +5 \(5 step\)\nepisodes +2/);
  }, 60_000);

  for (const v of ['v21', 'v30']) {
    it(`${v}: reads as the same steps (actions, state, image bytes, reward, task, video frames within codec tolerance)`, async () => {
      const r = await vlakit(['convert', v, '-q', '-o', `${v}.jsonl`]);
      expect(r.code, r.err).toBe(0);
      const steps = readFileSync(path.join(dir, `${v}.jsonl`), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
      expect(steps).toHaveLength(frames.length);
      const errors: number[] = [];
      for (const [i, s] of steps.entries()) {
        const f = frames[i];
        expect([s.episode_id, s.step]).toEqual([f.episode, f.frame]);
        // float32 features read as the shortest decimals of the same float32s (vlakit's JSON convention)
        expect(s.action).toEqual(f.action.map(shortFloat32));
        expect(s.action.map(Math.fround)).toEqual(f.action);
        expect(s.observation.state).toEqual(f.state.map(shortFloat32));
        expect(s.observation.image).toEqual({ mime: 'image/png', b64: f.png.toString('base64') });
        errors.push(await meanError(s.observation['images.wrist'].b64, f.wrist));
        expect(s.reward).toBe(f.reward);
        expect(s.is_last).toBe(f.done);
        expect(s.language_instruction).toBe(TASKS[f.task]);
      }
      // lossy video (H.264 / AV1, yuv420p): every frame within 4 levels on average of its source, and each frame
      // matched to its own timestamp (neighbouring frames differ by 10 levels)
      expect(Math.max(...errors)).toBeLessThan(4);
      // and as any command's input: chunk infers the 7-D layout
      const c = await vlakit(['chunk', v, '-q', '-o', `${v}-chunks.jsonl`]);
      expect(c.code, c.err).toBe(0);
      expect(JSON.parse(readFileSync(path.join(dir, `${v}-chunks.jsonl`), 'utf8').split('\n')[0]).action_layout.dims).toBe(7);
    }, 60_000);
  }
});
