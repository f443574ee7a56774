/**
 * Writing step records as a LeRobot dataset (Hugging Face's format), v3.0 (default) or v2.1, laid out as LeRobot's
 * own writer lays it out (lerobot/datasets/utils.py, dataset_metadata.py, compute_stats.py):
 * - v3.0: `data/chunk-000/file-000.parquet` (many episodes a file, a new file past ~100 MB), camera videos
 *   `videos/{key}/chunk-000/file-000.mp4` (episodes one after another), `meta/tasks.parquet` (task_index, the task
 *   string as the pandas index "task"), `meta/episodes/chunk-000/file-000.parquet` (episode_index, tasks, length,
 *   data/ and videos/ chunk and file indices, dataset_from_index/dataset_to_index, from/to timestamps, stats/).
 * - v2.1: `data/chunk-000/episode_000000.parquet` and `videos/chunk-000/{key}/episode_000000.mp4` per episode,
 *   `meta/tasks.jsonl`, `meta/episodes.jsonl`, `meta/episodes_stats.jsonl`.
 * Both: `meta/info.json` (features with dtype/shape/names, fps, paths, totals) and `meta/stats.json` (min, max,
 * mean, std, count per feature; cameras per channel in [0, 1]). Columns: `action`, `observation.<name>` for each
 * observation entry, `next.reward`, `next.done`, `timestamp` (frame_index / fps), `frame_index`, `episode_index`,
 * `index`, `task_index`. Camera frames are encoded with the bundled ffmpeg (AV1 by default) or kept as image bytes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { findFfmpeg } from '../diag/video.js';
import { VlakitError } from '../errors.js';
import { shortFloat32 } from './json.js';
import { type OutputOptions, writeOutputDir } from './outputs.js';
import type { StepRecord } from './records.js';

export type LeRobotVersion = '3.0' | '2.1';
export type LeRobotVideoCodec = 'av1' | 'h264' | 'hevc';

export interface WriteLeRobotOptions extends OutputOptions {
  /** The dataset root to create. */
  dir: string;
  /** Codebase version to write (default 3.0). */
  version?: LeRobotVersion;
  /** Frames per second (timestamps are frame_index / fps; default 10). */
  fps?: number;
  /** How camera images are stored: `video` (MP4 per camera, LeRobot's default) or `image` (bytes in the parquet). */
  images?: 'video' | 'image';
  /** Video codec (default av1, through libaom-av1: this ffmpeg has no libsvtav1). */
  videoCodec?: LeRobotVideoCodec;
  robotType?: string;
  /** v3.0: start a new data file past this many bytes of rows (default 100 MB, LeRobot's). */
  maxDataFileBytes?: number;
  /** v3.0: start new video files (and a new data file with them) past this many bytes (default 500 MB, LeRobot's). */
  maxVideoFileBytes?: number;
  onWarning?: (msg: string) => void;
}

export interface WriteLeRobotResult {
  dir: string;
  episodes: number;
  steps: number;
  files: string[];
}

/** LeRobot's defaults (utils.py). */
export const LEROBOT_PATHS = {
  '3.0': {
    data: 'data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet',
    video: 'videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4',
    episodes: 'meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet',
  },
  '2.1': {
    data: 'data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet',
    video: 'videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4',
  },
} as const;
const CHUNKS_SIZE = 1000;
/** The columns LeRobot adds to every frame. */
const LEROBOT_COLUMNS = ['timestamp', 'frame_index', 'episode_index', 'index', 'task_index'];
const DATA_FILE_MB = 100;
const VIDEO_FILE_MB = 500;

const CODEC_ARGS: Record<LeRobotVideoCodec, { name: string; args: string[] }> = {
  // libaom-av1 is marked experimental in this ffmpeg; cpu-used 8 is its fastest preset
  av1: { name: 'av1', args: ['-c:v', 'libaom-av1', '-strict', 'experimental', '-cpu-used', '8', '-row-mt', '1', '-crf', '20', '-b:v', '0'] },
  h264: { name: 'h264', args: ['-c:v', 'libx264', '-preset', 'medium', '-crf', '18'] },
  hevc: { name: 'hevc', args: ['-c:v', 'libx265', '-crf', '18', '-x265-params', 'log-level=error'] },
};

/** Fills `{name}` / `{name:03d}` in a LeRobot path template. */
export function fillLeRobotPath(t: string, values: Record<string, string | number>): string {
  return t.replace(/\{(\w+)(?::0?(\d+)d)?\}/g, (_, k: string, w?: string) => (w ? String(values[k]).padStart(Number(w), '0') : String(values[k])));
}

// ------------------------------------------------------------------------------------------------ features

type Dtype = 'float32' | 'float64' | 'bool' | 'int64' | 'string' | 'image' | 'video';

interface Column {
  /** The LeRobot feature key: `action`, `observation.state`, `next.reward`, ... */
  key: string;
  dtype: Dtype;
  shape: number[];
  /** A list column ([D]) rather than a scalar one ([1]). */
  list: boolean;
  /** The step's value for this column. */
  get: (s: StepRecord) => unknown;
  /** A string column holding JSON text (a step field that is not a string: annotations, episode_metadata). */
  json?: boolean;
}

interface CameraImage {
  mime: string;
  b64: string;
}
const isImage = (v: unknown): v is CameraImage => typeof v === 'object' && v !== null && typeof (v as CameraImage).b64 === 'string' && typeof (v as CameraImage).mime === 'string';
const isNumbers = (v: unknown): v is number[] => Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'number');
/** Values a float32 column holds exactly: float32 numbers, or the shortest decimals vlakit writes for them. */
const f32exact = (vs: number[]) => vs.every((x) => Math.fround(x) === x || shortFloat32(Math.fround(x)) === x);

async function rgbOf(img: CameraImage, where: string): Promise<{ data: Buffer; width: number; height: number }> {
  try {
    const { data, info } = await sharp(Buffer.from(img.b64, 'base64')).removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`${info.channels} channels`);
    return { data, width: info.width, height: info.height };
  } catch (err) {
    throw new VlakitError('E_IMAGE', `cannot decode the camera image: ${(err as Error).message}`, { field: where }, { cause: err });
  }
}

/** The columns the first episode gives, and the fields that have no LeRobot column (left out, warned). */
async function planColumns(first: StepRecord[], images: 'video' | 'image'): Promise<{ columns: Column[]; cameras: Map<string, { h: number; w: number }>; leftOut: string[] }> {
  const columns: Column[] = [];
  const cameras = new Map<string, { h: number; w: number }>();
  const leftOut: string[] = [];
  const numeric = (key: string, get: (s: StepRecord) => unknown) => {
    const v0 = get(first[0]);
    const all = first.flatMap((s) => {
      const v = get(s);
      return typeof v === 'number' ? [v] : isNumbers(v) ? v : [];
    });
    const dtype = f32exact(all) ? 'float32' : 'float64';
    if (typeof v0 === 'number') columns.push({ key, dtype, shape: [1], list: false, get });
    else columns.push({ key, dtype, shape: [(v0 as number[]).length], list: true, get });
  };
  const a0 = first[0].action;
  if (typeof a0 === 'number' || isNumbers(a0)) numeric('action', (s) => s.action);
  else if (a0 !== undefined) leftOut.push('action (not a number or a list of numbers)');
  for (const [k, v] of Object.entries(first[0].observation ?? {})) {
    const key = `observation.${k}`;
    if (k.includes('/')) leftOut.push(`observation.${k} (LeRobot feature names have no "/")`);
    else if (isImage(v)) {
      const { width, height } = await rgbOf(v, key);
      cameras.set(key, { h: height, w: width });
      columns.push({ key, dtype: images, shape: [height, width, 3], list: false, get: (s) => s.observation?.[k] });
    } else if (typeof v === 'number' || isNumbers(v)) numeric(key, (s) => s.observation?.[k]);
    else if (typeof v === 'boolean') columns.push({ key, dtype: 'bool', shape: [1], list: false, get: (s) => s.observation?.[k] });
    else leftOut.push(`${key} (${Array.isArray(v) ? 'a nested or empty list' : typeof v})`);
  }
  if (typeof first[0].reward === 'number') numeric('next.reward', (s) => s.reward);
  columns.push({ key: 'next.done', dtype: 'bool', shape: [1], list: false, get: (s) => Boolean(s.is_terminal ?? s.is_last) });
  // other step fields (discount, episode_metadata, annotations) keep their names: numbers and booleans as such, strings
  // as LeRobot "string" features, anything else as JSON text (marked so in info.json: {"info": {"json": true}})
  const known = new Set(['episode_id', 'step', 'is_first', 'is_last', 'is_terminal', 'observation', 'action', 'reward', 'language_instruction', 'timestamp', ...LEROBOT_COLUMNS]);
  for (const k of new Set(first.flatMap((st) => Object.keys(st)))) {
    if (known.has(k)) continue;
    if (k.includes('/') || k.startsWith('observation.') || k.startsWith('next.')) leftOut.push(`${k} (not a name LeRobot allows here)`);
    else if (first.every((st) => typeof st[k] === 'number') || first.every((st) => isNumbers(st[k]))) numeric(k, (st) => st[k]);
    else if (first.every((st) => typeof st[k] === 'boolean')) columns.push({ key: k, dtype: 'bool', shape: [1], list: false, get: (st) => st[k] });
    else columns.push({ key: k, dtype: 'string', shape: [1], list: false, json: !first.every((st) => st[k] === undefined || st[k] === null || typeof st[k] === 'string'), get: (st) => st[k] });
  }
  return { columns, cameras, leftOut };
}

/** A numeric value of a step as the column's list (or one-element list), checked against its shape. */
function valueOf(c: Column, s: StepRecord): number[] | boolean {
  const v = c.get(s);
  if (c.dtype === 'bool') return Boolean(v);
  const vs = typeof v === 'number' ? [v] : v;
  if (!isNumbers(vs) || vs.length !== c.shape[0] || (c.list ? !Array.isArray(v) : typeof v !== 'number')) {
    throw new VlakitError('E_RECORD_INVALID', `expected ${c.list ? `a list of ${c.shape[0]} numbers` : 'a number'} (as in the first episode), found ${JSON.stringify(v)?.slice(0, 60) ?? 'nothing'}`, { record: s.step, field: `${c.key} of episode ${JSON.stringify(s.episode_id)}` });
  }
  if (vs.some((x) => !Number.isFinite(x))) throw new VlakitError('E_RECORD_INVALID', 'a non-finite number', { record: s.step, field: c.key });
  return vs;
}

// ------------------------------------------------------------------------------------------------ statistics

/** Running min/max/sum/sum of squares per element (population std, as numpy's np.std). */
class Stats {
  min: number[] = [];
  max: number[] = [];
  sum: number[] = [];
  sq: number[] = [];
  count = 0;
  add(vs: ArrayLike<number>): void {
    if (!this.count) {
      this.min = Array.from(vs);
      this.max = Array.from(vs);
      this.sum = new Array<number>(vs.length).fill(0);
      this.sq = new Array<number>(vs.length).fill(0);
    }
    for (let i = 0; i < vs.length; i++) {
      const x = vs[i];
      if (x < this.min[i]) this.min[i] = x;
      if (x > this.max[i]) this.max[i] = x;
      this.sum[i] += x;
      this.sq[i] += x * x;
    }
    this.count += 1;
  }
  /** Adds one RGB frame as per-channel values in [0, 1] (LeRobot's image stats): min/max/mean over pixels. */
  addFrame(rgb: Buffer): void {
    const n = rgb.length / 3;
    const [mn, mx, sm, sq] = [[255, 255, 255], [0, 0, 0], [0, 0, 0], [0, 0, 0]];
    for (let i = 0; i < rgb.length; i++) {
      const c = i % 3;
      const x = rgb[i];
      if (x < mn[c]) mn[c] = x;
      if (x > mx[c]) mx[c] = x;
      sm[c] += x;
      sq[c] += x * x;
    }
    if (!this.count) {
      this.min = [1, 1, 1];
      this.max = [0, 0, 0];
      this.sum = [0, 0, 0];
      this.sq = [0, 0, 0];
      this.pixels = 0;
    }
    for (let c = 0; c < 3; c++) {
      this.min[c] = Math.min(this.min[c], mn[c] / 255);
      this.max[c] = Math.max(this.max[c], mx[c] / 255);
      this.sum[c] += sm[c] / 255;
      this.sq[c] += sq[c] / 255 / 255;
    }
    this.pixels += n;
    this.count += 1;
  }
  pixels = 0;
  /** LeRobot's stats entry: lists (cameras: [3][1][1]), count as [n]. */
  json(camera: boolean): Record<string, unknown> {
    const n = camera ? this.pixels : this.count;
    const mean = this.sum.map((s) => s / n);
    const std = this.sq.map((q, i) => Math.sqrt(Math.max(0, q / n - mean[i] * mean[i])));
    const shape = (v: number[]) => (camera ? v.map((x) => [[x]]) : v);
    return { min: shape(this.min), max: shape(this.max), mean: shape(mean), std: shape(std), count: [this.count] };
  }
}

// ------------------------------------------------------------------------------------------------ parquet

interface SchemaEl {
  name: string;
  type?: string;
  repetition_type?: string;
  num_children?: number;
  converted_type?: string;
}

/** One parquet file: columns of rows with an explicit schema (LIST<FLOAT|DOUBLE>, image structs, INT64, ...). */
async function writeParquet(file: string, cols: { name: string; schema: SchemaEl[]; data: unknown[] }[], kv: Record<string, string> = {}): Promise<void> {
  const { parquetWriteBuffer } = await import('hyparquet-writer');
  const schema: SchemaEl[] = [{ name: 'schema', num_children: cols.length }, ...cols.flatMap((c) => c.schema)];
  const buf = parquetWriteBuffer({
    columnData: cols.map((c) => ({ name: c.name, data: c.data as never })),
    schema: schema as never,
    kvMetadata: Object.entries(kv).map(([key, value]) => ({ key, value })),
  });
  await fsp.mkdir(path.dirname(file), { recursive: true });
  await fsp.writeFile(file, new Uint8Array(buf));
}

const PQ = { float32: 'FLOAT', float64: 'DOUBLE', int64: 'INT64', bool: 'BOOLEAN' } as const;
const scalarSchema = (name: string, type: string, extra: Partial<SchemaEl> = {}): SchemaEl[] => [{ name, type, repetition_type: 'OPTIONAL', ...extra }];
const listSchema = (name: string, type: string, extra: Partial<SchemaEl> = {}): SchemaEl[] => [
  { name, repetition_type: 'OPTIONAL', num_children: 1, converted_type: 'LIST' },
  { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
  { name: 'element', type, repetition_type: 'OPTIONAL', ...extra },
];
const stringSchema = (name: string) => scalarSchema(name, 'BYTE_ARRAY', { converted_type: 'UTF8' });
const imageSchema = (name: string): SchemaEl[] => [
  { name, repetition_type: 'OPTIONAL', num_children: 2 },
  { name: 'bytes', type: 'BYTE_ARRAY', repetition_type: 'OPTIONAL' },
  { name: 'path', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' },
];

/** The Hugging Face `datasets` feature of a column (kept in the parquet's "huggingface" metadata, as datasets does). */
function hfFeature(f: { dtype: string; shape: number[] }): unknown {
  if (f.dtype === 'image') return { _type: 'Image' };
  const value = { dtype: f.dtype, _type: 'Value' };
  return f.shape.length === 1 && f.shape[0] === 1 ? value : { feature: value, length: f.shape[0], _type: 'Sequence' };
}

// ------------------------------------------------------------------------------------------------ video

/** One ffmpeg process encoding raw RGB frames into an MP4. */
class VideoEncoder {
  private p: ChildProcess;
  private err = '';
  private done: Promise<number | null>;
  frames = 0;
  constructor(ffmpeg: string, readonly file: string, w: number, h: number, fps: number, codec: LeRobotVideoCodec) {
    const args = ['-v', 'error', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', `${w}x${h}`, '-r', String(fps), '-i', 'pipe:0', ...CODEC_ARGS[codec].args, '-g', '2', '-pix_fmt', 'yuv420p', '-an', '-f', 'mp4', '-y', file];
    this.p = spawn(ffmpeg, args, { stdio: ['pipe', 'ignore', 'pipe'] });
    this.p.stderr!.on('data', (b: Buffer) => (this.err += b.toString()));
    this.p.stdin!.on('error', () => {}); // a dead ffmpeg is reported by finish()
    this.done = new Promise((resolve, reject) => {
      this.p.on('error', (e) => reject(new VlakitError('E_IO', `cannot run ffmpeg (${ffmpeg}): ${e.message}`, { file })));
      this.p.on('close', resolve);
    });
    this.done.catch(() => {});
  }
  async write(rgb: Buffer): Promise<void> {
    this.frames += 1;
    if (!this.p.stdin!.write(rgb)) await Promise.race([once(this.p.stdin!, 'drain'), this.done]);
  }
  async finish(): Promise<void> {
    this.p.stdin!.end();
    const code = await this.done;
    if (code !== 0) throw new VlakitError('E_IO', `ffmpeg could not encode the video: ${this.err.trim().split('\n').slice(-2).join('; ') || `exit ${code}`}`, { file: this.file });
  }
  kill(): void {
    this.p.kill('SIGKILL');
  }
}

// ------------------------------------------------------------------------------------------------ the writer

interface DataRow {
  ep: number;
  frame: number;
  /** The frame's index in the whole dataset. */
  index: number;
  task: number;
  step: StepRecord;
  /** Image-stored cameras: the image bytes as given. */
  rgb: Map<string, Buffer>;
}

interface EpisodeMeta {
  index: number;
  length: number;
  task: string;
  dataChunk: number;
  dataFile: number;
  from: number;
  videos: Record<string, { chunk: number; file: number; from: number; to: number }>;
  stats: Map<string, Stats>;
}

/**
 * Writes episodes of step records as a LeRobot dataset directory, whole or not at all. Episodes are renumbered
 * 0..N-1 (LeRobot's episode_index); each episode's task is its first step's language_instruction.
 * @example await writeLeRobot(groupEpisodes(steps), { dir: 'out/my_dataset', version: '3.0', fps: 10 })
 */
export async function writeLeRobot(episodes: AsyncIterable<StepRecord[]>, opts: WriteLeRobotOptions): Promise<WriteLeRobotResult> {
  const version = opts.version ?? '3.0';
  const fps = opts.fps ?? 10;
  const images = opts.images ?? 'video';
  const codec = opts.videoCodec ?? 'av1';
  const maxDataBytes = opts.maxDataFileBytes ?? DATA_FILE_MB * 1024 * 1024;
  const maxVideoBytes = opts.maxVideoFileBytes ?? VIDEO_FILE_MB * 1024 * 1024;
  /** The largest video file being written (ffmpeg writes the frames as it goes; the index comes at the end). */
  const videoBytes = async (encs: Iterable<VideoEncoder>) => Math.max(0, ...(await Promise.all([...encs].map((e) => fsp.stat(e.file).then((st) => st.size, () => 0)))));
  if (!(fps > 0)) throw new VlakitError('E_USAGE', `fps must be positive, got ${fps}`);
  return writeOutputDir(
    opts.dir,
    async (tmp) => {
      const files = new Set<string>();
      const rel = (p: string) => {
        files.add(p);
        return path.join(tmp, p);
      };
      let plan: Awaited<ReturnType<typeof planColumns>> | undefined;
      let ffmpeg: string | undefined;
      const tasks = new Map<string, number>();
      const metas: EpisodeMeta[] = [];
      const total = new Map<string, Stats>();
      let index = 0;
      // v3.0: the data file being filled and the video files beside it (rotated together)
      let chunk = 0;
      let fileIdx = 0;
      let rows: DataRow[] = [];
      let rowBytes = 0;
      let encoders = new Map<string, VideoEncoder>();
      const allEncoders: VideoEncoder[] = [];

      const openEncoders = (values: Record<string, number>) => {
        const out = new Map<string, VideoEncoder>();
        for (const [key, { h, w }] of plan!.cameras) {
          const file = rel(fillLeRobotPath(LEROBOT_PATHS[version].video, { ...values, video_key: key }));
          const enc = new VideoEncoder(ffmpeg!, file, w, h, fps, codec);
          allEncoders.push(enc);
          out.set(key, enc);
        }
        return out;
      };
      const ensureDir = async (values: Record<string, number>) => {
        for (const key of plan!.cameras.keys()) await fsp.mkdir(path.dirname(path.join(tmp, fillLeRobotPath(LEROBOT_PATHS[version].video, { ...values, video_key: key }))), { recursive: true });
      };
      const flushData = async (file: string) => {
        if (!rows.length) return;
        await writeParquet(rel(file), dataColumns(plan!.columns, rows, fps), { huggingface: JSON.stringify({ info: { features: hfFeatures(plan!.columns) } }) });
        rows = [];
        rowBytes = 0;
      };
      const closeVideos = async () => {
        for (const enc of encoders.values()) await enc.finish();
        encoders = new Map();
      };

      try {
        let ep = 0;
        for await (const steps of episodes) {
          opts.signal?.throwIfAborted();
          if (!steps.length) continue;
          if (!plan) {
            plan = await planColumns(steps, images);
            if (plan.leftOut.length) opts.onWarning?.(`LeRobot has no column for: ${plan.leftOut.join(', ')}; left out`);
            if (plan.cameras.size && images === 'video') {
              ffmpeg = findFfmpeg();
              if (!ffmpeg) throw new VlakitError('E_USAGE', 'no ffmpeg found (@ffmpeg-installer/linux-x64, the PATH or VLAKIT_FFMPEG) to encode the camera videos; store the frames as images in the parquet files instead (--lerobot-images image)');
              for (const { h, w } of plan.cameras.values()) {
                if (h % 2 || w % 2) throw new VlakitError('E_USAGE', `camera frames of ${w}x${h} pixels: yuv420p video needs even sides; store them as images instead (--lerobot-images image)`);
              }
            }
          }
          const task = steps[0].language_instruction ?? '';
          if (!tasks.has(task)) tasks.set(task, tasks.size);
          const stats = new Map<string, Stats>();
          const meta: EpisodeMeta = { index: ep, length: steps.length, task, dataChunk: chunk, dataFile: fileIdx, from: index, videos: {}, stats };
          if (version === '2.1') {
            const values = { episode_chunk: Math.floor(ep / CHUNKS_SIZE), episode_index: ep };
            if (plan.cameras.size && images === 'video') {
              await ensureDir(values);
              encoders = openEncoders(values);
            }
          } else if (plan.cameras.size && images === 'video') {
            if (!encoders.size) {
              const values = { chunk_index: chunk, file_index: fileIdx };
              await ensureDir(values);
              encoders = openEncoders(values);
            }
            for (const k of plan.cameras.keys()) meta.videos[k] = { chunk, file: fileIdx, from: encoders.get(k)!.frames / fps, to: (encoders.get(k)!.frames + steps.length) / fps };
          }
          for (const [i, s] of steps.entries()) {
            const rgb = new Map<string, Buffer>();
            for (const c of plan.columns) {
              if (c.dtype === 'string') continue; // LeRobot keeps no statistics of strings
              const st = stats.get(c.key) ?? new Stats();
              stats.set(c.key, st);
              if (c.dtype === 'image' || c.dtype === 'video') {
                const v = c.get(s);
                if (!isImage(v)) throw new VlakitError('E_RECORD_INVALID', 'a camera image is missing (the first episode has one)', { record: s.step, field: `${c.key} of episode ${JSON.stringify(s.episode_id)}` });
                const px = await rgbOf(v, c.key);
                const { h, w } = plan.cameras.get(c.key)!;
                if (px.width !== w || px.height !== h) throw new VlakitError('E_RECORD_INVALID', `a ${px.width}x${px.height} frame; the camera's frames are ${w}x${h}`, { record: s.step, field: `${c.key} of episode ${JSON.stringify(s.episode_id)}` });
                st.addFrame(px.data);
                if (c.dtype === 'video') await encoders.get(c.key)!.write(px.data);
                else rgb.set(c.key, Buffer.from(v.b64, 'base64'));
              } else {
                const v = valueOf(c, s);
                st.add(typeof v === 'boolean' ? [v ? 1 : 0] : v);
              }
            }
            for (const [k, v] of [['timestamp', i / fps], ['frame_index', i], ['episode_index', ep], ['index', index], ['task_index', tasks.get(task)!]] as const) {
              const st = stats.get(k) ?? new Stats();
              stats.set(k, st);
              st.add([k === 'timestamp' ? Math.fround(v) : v]);
            }
            rows.push({ ep, frame: i, index, task: tasks.get(task)!, step: s, rgb });
            rowBytes += 64 + plan.columns.reduce((n, c) => n + (c.dtype === 'image' ? (rgb.get(c.key)?.length ?? 0) : c.dtype === 'video' ? 0 : c.dtype === 'string' ? (JSON.stringify(c.get(s)) ?? '').length : c.shape[0] * 8), 0);
            index += 1;
          }
          for (const [k, st] of stats) {
            const t = total.get(k) ?? new Stats();
            total.set(k, mergeStats(t, st));
          }
          metas.push(meta);
          if (version === '2.1') {
            await flushData(fillLeRobotPath(LEROBOT_PATHS['2.1'].data, { episode_chunk: Math.floor(ep / CHUNKS_SIZE), episode_index: ep }));
            await closeVideos();
          } else if (rowBytes >= maxDataBytes || (encoders.size > 0 && (await videoBytes(encoders.values())) >= maxVideoBytes)) {
            await flushData(fillLeRobotPath(LEROBOT_PATHS['3.0'].data, { chunk_index: chunk, file_index: fileIdx }));
            await closeVideos();
            [chunk, fileIdx] = fileIdx === CHUNKS_SIZE - 1 ? [chunk + 1, 0] : [chunk, fileIdx + 1];
          }
          ep += 1;
        }
        if (!plan) throw new VlakitError('E_USAGE', 'no steps to write as a LeRobot dataset');
        if (version === '3.0') {
          await flushData(fillLeRobotPath(LEROBOT_PATHS['3.0'].data, { chunk_index: chunk, file_index: fileIdx }));
          await closeVideos();
        }
      } catch (err) {
        for (const enc of allEncoders) enc.kill();
        throw err;
      }

      // metadata
      const features: Record<string, unknown> = {};
      for (const c of plan.columns) {
        if (c.dtype === 'image' || c.dtype === 'video') {
          const [h, w] = c.shape;
          features[c.key] = {
            dtype: c.dtype,
            shape: c.shape,
            names: ['height', 'width', 'channels'],
            ...(c.dtype === 'video'
              ? { info: { 'video.height': h, 'video.width': w, 'video.codec': CODEC_ARGS[codec].name, 'video.pix_fmt': 'yuv420p', 'video.is_depth_map': false, 'video.fps': fps, 'video.channels': 3, has_audio: false } }
              : {}),
          };
        } else features[c.key] = { dtype: c.dtype, shape: c.shape, names: null, ...(c.json ? { info: { json: true } } : {}) };
      }
      for (const [k, dtype] of [['timestamp', 'float32'], ['frame_index', 'int64'], ['episode_index', 'int64'], ['index', 'int64'], ['task_index', 'int64']] as const) features[k] = { dtype, shape: [1], names: null };
      const hasVideo = plan.cameras.size > 0 && images === 'video';
      const common = { total_episodes: metas.length, total_frames: index, total_tasks: tasks.size };
      const info =
        version === '3.0'
          ? { codebase_version: 'v3.0', robot_type: opts.robotType ?? null, ...common, chunks_size: CHUNKS_SIZE, data_files_size_in_mb: DATA_FILE_MB, video_files_size_in_mb: VIDEO_FILE_MB, fps, splits: { train: `0:${metas.length}` }, data_path: LEROBOT_PATHS['3.0'].data, video_path: hasVideo ? LEROBOT_PATHS['3.0'].video : null, features }
          : { codebase_version: 'v2.1', robot_type: opts.robotType ?? null, ...common, total_videos: hasVideo ? metas.length * plan.cameras.size : 0, total_chunks: Math.ceil(metas.length / CHUNKS_SIZE), chunks_size: CHUNKS_SIZE, fps, splits: { train: `0:${metas.length}` }, data_path: LEROBOT_PATHS['2.1'].data, video_path: hasVideo ? LEROBOT_PATHS['2.1'].video : null, features };
      const cameraKeys = new Set(plan.cameras.keys());
      const statsJson = (m: Map<string, Stats>) => Object.fromEntries([...m].map(([k, s]) => [k, s.json(cameraKeys.has(k))]));
      await fsp.mkdir(path.join(tmp, 'meta'), { recursive: true });
      await fsp.writeFile(rel('meta/info.json'), `${JSON.stringify(info, null, 4)}\n`);
      await fsp.writeFile(rel('meta/stats.json'), `${JSON.stringify(statsJson(total), null, 4)}\n`);
      const taskList = [...tasks].sort((a, b) => a[1] - b[1]).map(([t]) => t);
      if (version === '2.1') {
        await fsp.writeFile(rel('meta/tasks.jsonl'), taskList.map((task, i) => `${JSON.stringify({ task_index: i, task })}\n`).join(''));
        await fsp.writeFile(rel('meta/episodes.jsonl'), metas.map((m) => `${JSON.stringify({ episode_index: m.index, tasks: [m.task], length: m.length })}\n`).join(''));
        await fsp.writeFile(rel('meta/episodes_stats.jsonl'), metas.map((m) => `${JSON.stringify({ episode_index: m.index, stats: statsJson(m.stats) })}\n`).join(''));
      } else {
        await writeParquet(rel('meta/tasks.parquet'), [
          { name: 'task_index', schema: scalarSchema('task_index', 'INT64'), data: taskList.map((_, i) => BigInt(i)) },
          { name: 'task', schema: stringSchema('task'), data: taskList },
        ], { pandas: pandasMeta() });
        await writeParquet(rel(fillLeRobotPath(LEROBOT_PATHS['3.0'].episodes, { chunk_index: 0, file_index: 0 })), episodeColumns(metas, plan.columns, cameraKeys, hasVideo));
      }
      return { dir: path.resolve(opts.dir), episodes: metas.length, steps: index, files: [...files].sort() };
    },
    opts,
  );
}

/** Two partial statistics merged (the same sums; LeRobot aggregates per-episode stats with weighted means). */
function mergeStats(a: Stats, b: Stats): Stats {
  if (!a.count) return Object.assign(new Stats(), { ...b, min: [...b.min], max: [...b.max], sum: [...b.sum], sq: [...b.sq] });
  a.min = a.min.map((x, i) => Math.min(x, b.min[i]));
  a.max = a.max.map((x, i) => Math.max(x, b.max[i]));
  a.sum = a.sum.map((x, i) => x + b.sum[i]);
  a.sq = a.sq.map((x, i) => x + b.sq[i]);
  a.count += b.count;
  a.pixels += b.pixels;
  return a;
}

function hfFeatures(columns: Column[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const c of columns) if (c.dtype !== 'video') out[c.key] = hfFeature(c);
  for (const [k, dtype] of [['timestamp', 'float32'], ['frame_index', 'int64'], ['episode_index', 'int64'], ['index', 'int64'], ['task_index', 'int64']] as const) out[k] = hfFeature({ dtype, shape: [1] });
  return out;
}

/** The data parquet's columns: the features (video ones live in the MP4s), then LeRobot's index columns. */
function dataColumns(columns: Column[], rows: DataRow[], fps: number): { name: string; schema: SchemaEl[]; data: unknown[] }[] {
  const out: { name: string; schema: SchemaEl[]; data: unknown[] }[] = [];
  for (const c of columns) {
    if (c.dtype === 'video') continue;
    if (c.dtype === 'image') {
      const ext = (b: Buffer) => (b[0] === 0xff ? 'jpg' : 'png');
      out.push({ name: c.key, schema: imageSchema(c.key), data: rows.map((r) => ({ bytes: new Uint8Array(r.rgb.get(c.key)!), path: `frame_${String(r.frame).padStart(6, '0')}.${ext(r.rgb.get(c.key)!)}` })) });
    } else if (c.dtype === 'string') {
      const text = (v: unknown) => (v === undefined || v === null ? null : c.json ? JSON.stringify(v) : String(v));
      out.push({ name: c.key, schema: stringSchema(c.key), data: rows.map((r) => text(c.get(r.step))) });
    } else if (c.dtype === 'bool') out.push({ name: c.key, schema: scalarSchema(c.key, 'BOOLEAN'), data: rows.map((r) => Boolean(c.get(r.step) ?? false)) });
    else {
      const type = PQ[c.dtype as 'float32' | 'float64'];
      const vals = rows.map((r) => valueOf(c, r.step) as number[]);
      out.push(c.list ? { name: c.key, schema: listSchema(c.key, type), data: vals } : { name: c.key, schema: scalarSchema(c.key, type), data: vals.map((v) => v[0]) });
    }
  }
  out.push({ name: 'timestamp', schema: scalarSchema('timestamp', 'FLOAT'), data: rows.map((r) => r.frame / fps) });
  out.push({ name: 'frame_index', schema: scalarSchema('frame_index', 'INT64'), data: rows.map((r) => BigInt(r.frame)) });
  out.push({ name: 'episode_index', schema: scalarSchema('episode_index', 'INT64'), data: rows.map((r) => BigInt(r.ep)) });
  out.push({ name: 'index', schema: scalarSchema('index', 'INT64'), data: rows.map((r) => BigInt(r.index)) });
  out.push({ name: 'task_index', schema: scalarSchema('task_index', 'INT64'), data: rows.map((r) => BigInt(r.task)) });
  return out;
}

/** pandas' metadata for a frame indexed by the task strings (index name "task"), as LeRobot's tasks.parquet. */
function pandasMeta(): string {
  return JSON.stringify({
    index_columns: ['task'],
    column_indexes: [{ name: null, field_name: null, pandas_type: 'unicode', numpy_type: 'object', metadata: { encoding: 'UTF-8' } }],
    columns: [
      { name: 'task_index', field_name: 'task_index', pandas_type: 'int64', numpy_type: 'int64', metadata: null },
      { name: 'task', field_name: 'task', pandas_type: 'unicode', numpy_type: 'object', metadata: null },
    ],
    creator: { library: 'vlakit', version: '1' },
    pandas_version: '2.2.3',
  });
}

/** meta/episodes rows (v3.0): what LeRobot's loader reads to find each episode's rows and video segments. */
function episodeColumns(metas: EpisodeMeta[], columns: Column[], cameras: Set<string>, hasVideo: boolean): { name: string; schema: SchemaEl[]; data: unknown[] }[] {
  const int = (name: string, f: (m: EpisodeMeta) => number) => ({ name, schema: scalarSchema(name, 'INT64'), data: metas.map((m) => BigInt(f(m))) });
  const dbl = (name: string, f: (m: EpisodeMeta) => number) => ({ name, schema: scalarSchema(name, 'DOUBLE'), data: metas.map(f) });
  const out: { name: string; schema: SchemaEl[]; data: unknown[] }[] = [
    int('episode_index', (m) => m.index),
    { name: 'tasks', schema: listSchema('tasks', 'BYTE_ARRAY', { converted_type: 'UTF8' }), data: metas.map((m) => [m.task]) },
    int('length', (m) => m.length),
    int('data/chunk_index', (m) => m.dataChunk),
    int('data/file_index', (m) => m.dataFile),
    int('dataset_from_index', (m) => m.from),
    int('dataset_to_index', (m) => m.from + m.length),
  ];
  if (hasVideo) {
    for (const k of cameras) {
      out.push(int(`videos/${k}/chunk_index`, (m) => m.videos[k].chunk), int(`videos/${k}/file_index`, (m) => m.videos[k].file));
      out.push(dbl(`videos/${k}/from_timestamp`, (m) => m.videos[k].from), dbl(`videos/${k}/to_timestamp`, (m) => m.videos[k].to));
    }
  }
  out.push(int('meta/episodes/chunk_index', () => 0), int('meta/episodes/file_index', () => 0));
  // per-episode stats of the non-camera features (LeRobot's loader drops stats/ columns; aggregation tools read them)
  const keys = [...columns.filter((c) => !cameras.has(c.key) && c.dtype !== 'string').map((c) => c.key), ...LEROBOT_COLUMNS];
  for (const k of keys) {
    for (const s of ['min', 'max', 'mean', 'std'] as const) out.push({ name: `stats/${k}/${s}`, schema: listSchema(`stats/${k}/${s}`, 'DOUBLE'), data: metas.map((m) => m.stats.get(k)!.json(false)[s] as number[]) });
    out.push({ name: `stats/${k}/count`, schema: listSchema(`stats/${k}/count`, 'INT64'), data: metas.map((m) => [BigInt(m.stats.get(k)!.count)]) });
  }
  return out;
}
