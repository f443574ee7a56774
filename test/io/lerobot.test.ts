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

const BIN = path.resolve('bin/run.js');
const dir = tempDir();
const vlakit = (args: string[]) => execa('node', [BIN, ...args], { reject: false, cwd: dir, env: { NO_COLOR: '1' } }).then((r) => ({ code: r.exitCode, out: r.stdout, err: r.stderr }));

interface Frame {
  episode: number;
  frame: number;
  action: number[];
  state: number[];
  png: Buffer;
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
  'observation.images.wrist': { dtype: 'video', shape: [4, 6, 3], names: ['height', 'width', 'channel'] },
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
        reward: t === T - 1 ? 1 : 0,
        done: t === T - 1,
        task: e,
      });
    }
  }
  const info = (version: string, dataPath: string) => ({ codebase_version: version, robot_type: 'so100', fps: 10, total_episodes: 2, total_frames: frames.length, total_tasks: 2, chunks_size: 1000, splits: { train: '0:2' }, data_path: dataPath, video_path: null, features: FEATURES });
  // v2.1: one parquet file per episode, tasks.jsonl, episodes.jsonl
  const v21 = path.join(dir, 'v21');
  mkdirSync(path.join(v21, 'meta'), { recursive: true });
  writeFileSync(path.join(v21, 'meta/info.json'), JSON.stringify(info('v2.1', 'data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet')));
  writeFileSync(path.join(v21, 'meta/tasks.jsonl'), TASKS.map((task, i) => JSON.stringify({ task_index: i, task })).join('\n') + '\n');
  writeFileSync(path.join(v21, 'meta/episodes.jsonl'), [0, 1].map((e) => JSON.stringify({ episode_index: e, tasks: [TASKS[e]], length: frames.filter((f) => f.episode === e).length })).join('\n') + '\n');
  for (const e of [0, 1]) await writeParquet(path.join(v21, `data/chunk-000/episode_${String(e).padStart(6, '0')}.parquet`), frames.filter((f) => f.episode === e));
  // v3.0: all episodes in one file, tasks.parquet (task strings as the pandas index column)
  const v30 = path.join(dir, 'v30');
  mkdirSync(path.join(v30, 'meta'), { recursive: true });
  writeFileSync(path.join(v30, 'meta/info.json'), JSON.stringify(info('v3.0', 'data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet')));
  const { parquetWriteFile } = await import('hyparquet-writer');
  parquetWriteFile({ filename: path.join(v30, 'meta/tasks.parquet'), columnData: [{ name: 'task_index', data: [0n, 1n], type: 'INT64' }, { name: '__index_level_0__', data: TASKS, type: 'STRING' }] });
  await writeParquet(path.join(v30, 'data/chunk-000/file-000.parquet'), frames);
});

describe('LeRobot datasets', () => {
  for (const v of ['v21', 'v30']) {
    it(`${v}: reads as the same steps (actions, state, image bytes, reward, task); video features are named and left out`, async () => {
      const r = await vlakit(['convert', v, '-o', `${v}.jsonl`]);
      expect(r.code, r.err).toBe(0);
      expect(r.err).toMatch(/camera features stored as video are not decoded yet and are left out: observation\.images\.wrist/);
      const steps = readFileSync(path.join(dir, `${v}.jsonl`), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
      expect(steps).toHaveLength(frames.length);
      steps.forEach((s, i) => {
        const f = frames[i];
        expect([s.episode_id, s.step]).toEqual([f.episode, f.frame]);
        expect(s.action).toEqual(f.action);
        expect(s.observation.state).toEqual(f.state);
        expect(s.observation.image).toEqual({ mime: 'image/png', b64: f.png.toString('base64') });
        expect(s.observation['images.wrist']).toBeUndefined();
        expect(s.reward).toBe(f.reward);
        expect(s.is_last).toBe(f.done);
        expect(s.language_instruction).toBe(TASKS[f.task]);
      });
      // and as any command's input: chunk infers the 7-D layout
      const c = await vlakit(['chunk', v, '-q', '-o', `${v}-chunks.jsonl`]);
      expect(c.code, c.err).toBe(0);
      expect(JSON.parse(readFileSync(path.join(dir, `${v}-chunks.jsonl`), 'utf8').split('\n')[0]).action_layout.dims).toBe(7);
    }, 60_000);
  }
});
