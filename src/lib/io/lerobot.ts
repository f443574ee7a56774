/**
 * LeRobot datasets (Hugging Face's format), read as step records: `meta/info.json` (`codebase_version` v2.x or
 * v3.x, `features`), frames in parquet under `data/` (v2.1: one file per episode; v3.0: many episodes per file),
 * tasks in `meta/tasks.jsonl` (v2.1) or `meta/tasks.parquet` (v3.0). Each parquet row is one step: `action`,
 * `observation.*` features (an `image` feature's `{bytes, path}` struct becomes a camera image), `next.reward`,
 * `next.done`, `timestamp`; the instruction is the row's task. Camera features stored as `video` (MP4 under
 * `videos/`) are decoded with an ffmpeg binary (the @ffmpeg-installer package, the PATH or VLAKIT_FFMPEG), frames
 * chosen by timestamp as LeRobot does, and written as PNG; without ffmpeg or without the video files the other
 * features are still read, with a warning naming what was left out.
 */
import { spawn } from 'node:child_process';
import sharp from 'sharp';
import { findFfmpeg } from '../diag/video.js';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import fg from 'fast-glob';
import { z } from 'zod';
import { VlakitError } from '../errors.js';
import { readJsonFile } from './json-file.js';
import { sniffImageMime } from './images.js';
import { shortFloat32 } from './json.js';
import type { StepRecord } from './records.js';

const InfoSchema = z.looseObject({
  codebase_version: z.string().regex(/^v[23]\./, 'expected a LeRobot codebase_version v2.x or v3.x'),
  fps: z.number().positive().optional(),
  chunks_size: z.number().int().positive().optional(),
  video_path: z.string().nullable().optional(),
  features: z.record(z.string(), z.looseObject({ dtype: z.string(), shape: z.array(z.number()).optional(), names: z.array(z.string()).nullable().optional() })),
});

/** [height, width] of an image/video feature: its shape is [h, w, c], or [c, h, w] when its names say so. */
function frameSize(f: LeRobotInfo['features'][string]): [number, number] {
  const s = f.shape ?? [];
  return f.names?.[0]?.startsWith('channel') ? [s[1], s[2]] : [s[0], s[1]];
}
export type LeRobotInfo = z.infer<typeof InfoSchema>;

/** A LeRobot dataset root: it has `meta/info.json` naming a LeRobot codebase version. */
export function isLeRobotDir(dir: string): boolean {
  const f = path.join(dir, 'meta', 'info.json');
  if (!existsSync(f)) return false;
  try {
    return /^v[23]\./.test(String((JSON.parse(readFileSync(f, 'utf8')) as { codebase_version?: unknown }).codebase_version));
  } catch {
    return false;
  }
}

/** A LeRobot dataset's fps and robot type, from its info.json (undefined where absent or unreadable). */
export function leRobotInfo(dir: string): { fps?: number; robot_type?: string } {
  try {
    const j = JSON.parse(readFileSync(path.join(dir, 'meta', 'info.json'), 'utf8')) as { fps?: unknown; robot_type?: unknown };
    return { fps: typeof j.fps === 'number' && j.fps > 0 ? j.fps : undefined, robot_type: typeof j.robot_type === 'string' ? j.robot_type : undefined };
  } catch {
    return {};
  }
}

type Row = Record<string, unknown>;

/** LeRobot's own per-frame columns (read into step fields of their own, or used to order the steps). */
const STANDARD = new Set(['timestamp', 'frame_index', 'episode_index', 'index', 'task_index']);
/** Step record fields a column may not replace. */
const STEP_FIELDS = new Set(['episode_id', 'step', 'is_first', 'is_last', 'is_terminal', 'observation', 'reward', 'language_instruction']);

async function readParquet(file: string): Promise<Row[]> {
  const { asyncBufferFromFile, parquetReadObjects } = await import('hyparquet');
  try {
    // binary columns (image bytes) stay bytes; UTF8 ones are strings
    return (await parquetReadObjects({ file: await asyncBufferFromFile(file), utf8: false })) as Row[];
  } catch (err) {
    throw new VlakitError('E_RECORD_INVALID', `cannot read as parquet: ${(err as Error).message}`, { file }, { cause: err });
  }
}

const num = (v: unknown): number => (typeof v === 'bigint' ? Number(v) : Number(v));

/**
 * A parquet value as JSON numbers (bigints become numbers); a float32 feature's numbers become the shortest decimals
 * that read back as the same float32, as everywhere in vlakit's JSON (json.ts).
 */
function plain(v: unknown, float32 = false): unknown {
  if (typeof v === 'bigint') return Number(v);
  if (typeof v === 'number') return float32 && Number.isFinite(v) ? shortFloat32(v) : v;
  if (Array.isArray(v)) return v.map((x) => plain(x, float32));
  if (ArrayBuffer.isView(v) && !(v instanceof Uint8Array)) return Array.from(v as unknown as ArrayLike<number>, (x) => plain(x, float32));
  return v;
}

/** The tasks by index: v2.1 `meta/tasks.jsonl`, v3.0 `meta/tasks.parquet` (the task string column and task_index). */
async function readTasks(root: string): Promise<Map<number, string>> {
  const tasks = new Map<number, string>();
  const jsonl = path.join(root, 'meta', 'tasks.jsonl');
  const pq = path.join(root, 'meta', 'tasks.parquet');
  if (existsSync(jsonl)) {
    for (const line of readFileSync(jsonl, 'utf8').split('\n')) {
      if (!line.trim()) continue;
      const t = JSON.parse(line) as { task_index?: unknown; task?: unknown };
      if (typeof t.task === 'string') tasks.set(num(t.task_index), t.task);
    }
  } else if (existsSync(pq)) {
    for (const r of await readParquet(pq)) {
      // pandas writes the task strings as the index: a column named "task" or "__index_level_0__"
      const text = [r.task, r.__index_level_0__, ...Object.values(r)].find((v) => typeof v === 'string');
      if (typeof text === 'string') tasks.set(num(r.task_index), text);
    }
  }
  return tasks;
}

/** Fills a LeRobot path template: `{name}` and `{name:03d}`. */
function fillTemplate(t: string, values: Record<string, string | number>): string {
  return t.replace(/\{(\w+)(?::0?(\d+)d)?\}/g, (_, k: string, w?: string) => {
    const v = values[k];
    if (v === undefined) throw new VlakitError('E_RECORD_INVALID', `the path template "${t}" names {${k}}, which is not known here`, { field: 'video_path' });
    return w ? String(v).padStart(Number(w), '0') : String(v);
  });
}

/** Decodes `count` frames of a video from `start` seconds as RGB (frame size [h, w]). */
function decodeFrames(ffmpeg: string, file: string, start: number, count: number, h: number, w: number): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const args = ['-v', 'error', ...(start > 0 ? ['-ss', start.toFixed(6)] : []), '-i', file, '-frames:v', String(count), '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', `${w}x${h}`, 'pipe:1'];
    const p = spawn(ffmpeg, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    p.stdout.on('data', (b: Buffer) => out.push(b));
    p.stderr.on('data', (b: Buffer) => (err += b.toString()));
    p.on('error', (e) => reject(new VlakitError('E_IO', `cannot run ffmpeg (${ffmpeg}): ${e.message}`, { file })));
    p.on('close', (code) => {
      if (code !== 0) {
        const codec = /Decoder \((?:codec )?(\w+)\) not found|codec (\w+) .*not (?:supported|found)/i.exec(err);
        const why = codec ? `this ffmpeg has no decoder for ${codec[1] ?? codec[2]}` : err.trim().split('\n').slice(-2).join('; ');
        reject(new VlakitError('E_RECORD_INVALID', `cannot decode the video: ${why} (ffmpeg: ${ffmpeg})`, { file }));
        return;
      }
      const all = Buffer.concat(out);
      const size = h * w * 3;
      resolve(Array.from({ length: Math.floor(all.length / size) }, (_, i) => all.subarray(i * size, (i + 1) * size)));
    });
  });
}

/** v3.0: where each episode's video of each camera lies (chunk, file, start), from meta/episodes/**.parquet. */
async function episodeVideoIndex(root: string): Promise<Map<number, Row>> {
  const out = new Map<number, Row>();
  for (const rel of (await fg('meta/episodes/**/*.parquet', { cwd: root, onlyFiles: true })).sort()) {
    for (const r of await readParquet(path.join(root, rel))) out.set(num(r.episode_index), r);
  }
  return out;
}

/**
 * The steps of a LeRobot dataset, episode by episode (in episode_index order within each data file, frames by
 * frame_index).
 * @example for await (const s of readLeRobot('lerobot/pusht')) ...
 */
export async function* readLeRobot(root: string, opts: { signal?: AbortSignal; onWarning?: (m: string) => void; videos?: boolean } = {}): AsyncGenerator<StepRecord> {
  const info = readJsonFile(path.join(root, 'meta', 'info.json'), InfoSchema, { what: 'LeRobot info.json' });
  const tasks = await readTasks(root);
  const videos = Object.entries(info.features).filter(([, f]) => f.dtype === 'video').map(([k]) => k);
  const fps = info.fps ?? 0;
  const v3 = info.codebase_version.startsWith('v3');
  const ffmpeg = videos.length && opts.videos !== false ? findFfmpeg() : undefined;
  let decodeVideos = opts.videos !== false && videos.length > 0 && !!info.video_path && fps > 0;
  if (opts.videos === false) {
    // metadata and parquet only (inspect)
  } else if (videos.length && !decodeVideos) opts.onWarning?.(`${root}: info.json gives no video_path or fps; camera features stored as video are left out: ${videos.join(', ')}`);
  else if (decodeVideos && !ffmpeg) {
    decodeVideos = false;
    opts.onWarning?.(`${root}: no ffmpeg found (@ffmpeg-installer/linux-x64, the PATH or VLAKIT_FFMPEG); camera features stored as video are left out: ${videos.join(', ')}`);
  }
  const epIndex = decodeVideos && v3 ? await episodeVideoIndex(root) : undefined;
  const missing = new Set<string>();
  /** The decoded frames of one episode's video of one camera, or undefined (missing file: warned once). */
  const episodeFrames = async (key: string, e: number, count: number): Promise<Buffer[] | undefined> => {
    const [h, w] = frameSize(info.features[key]);
    let file: string;
    let start = 0;
    if (v3) {
      const m = epIndex?.get(e);
      if (!m) throw new VlakitError('E_RECORD_INVALID', `no entry for episode ${e} in meta/episodes`, { file: path.join(root, 'meta', 'episodes') });
      file = path.join(root, fillTemplate(info.video_path!, { video_key: key, chunk_index: num(m[`videos/${key}/chunk_index`]), file_index: num(m[`videos/${key}/file_index`]) }));
      start = Number(m[`videos/${key}/from_timestamp`] ?? 0);
    } else {
      file = path.join(root, fillTemplate(info.video_path!, { video_key: key, episode_chunk: Math.floor(e / (info.chunks_size ?? 1000)), episode_index: e }));
    }
    if (!existsSync(file)) {
      if (!missing.has(key)) opts.onWarning?.(`${root}: video file missing for ${key} (${file}); that camera is left out where its videos are missing`);
      missing.add(key);
      return undefined;
    }
    return decodeFrames(ffmpeg!, file, start, count, h, w);
  };
  const images = new Set(Object.entries(info.features).filter(([, f]) => f.dtype === 'image').map(([k]) => k));
  const f32 = new Set(Object.entries(info.features).filter(([, f]) => f.dtype === 'float32').map(([k]) => k));
  const files = (await fg('data/**/*.parquet', { cwd: root, onlyFiles: true })).sort();
  if (!files.length) throw new VlakitError('E_NOT_FOUND', 'a LeRobot dataset without parquet files under data/', { file: root });
  for (const rel of files) {
    opts.signal?.throwIfAborted();
    const file = path.join(root, rel);
    const rows = await readParquet(file);
    const episodes = new Map<number, Row[]>();
    for (const r of rows) {
      const e = num(r.episode_index);
      if (!Number.isFinite(e)) throw new VlakitError('E_RECORD_INVALID', 'a row without episode_index', { file, record: rows.indexOf(r), field: 'episode_index' });
      const list = episodes.get(e) ?? [];
      list.push(r);
      episodes.set(e, list);
    }
    for (const [e, frames] of [...episodes].sort((a, b) => a[0] - b[0])) {
      frames.sort((a, b) => num(a.frame_index) - num(b.frame_index));
      // video frames by timestamp (LeRobot's rule: the decoded frame nearest the row's timestamp, within 1/fps)
      const decoded = new Map<string, Buffer[]>();
      if (decodeVideos) {
        const last = Math.max(...frames.map((r, i) => Math.round(Number(r.timestamp ?? i / fps) * fps)));
        for (const key of videos) {
          const f = await episodeFrames(key, e, last + 1);
          if (f) decoded.set(key, f);
        }
      }
      for (let i = 0; i < frames.length; i++) {
        const r = frames[i];
        const observation: Record<string, unknown> = {};
        for (const [key, list] of decoded) {
          const k = Math.round(Number(r.timestamp ?? i / fps) * fps);
          const px = list[k];
          if (!px || Math.abs(k / fps - Number(r.timestamp ?? i / fps)) > 1 / fps) throw new VlakitError('E_RECORD_INVALID', `no video frame at timestamp ${String(r.timestamp)} s (${list.length} frames decoded)`, { field: key, record: i });
          const [h, w] = frameSize(info.features[key]);
          observation[key.slice('observation.'.length)] = { mime: 'image/png', b64: (await sharp(px, { raw: { width: w, height: h, channels: 3 } }).png().toBuffer()).toString('base64') };
        }
        for (const [k, v] of Object.entries(r)) {
          if (!k.startsWith('observation.') || videos.includes(k)) continue;
          const name = k.slice('observation.'.length);
          if (images.has(k)) {
            const bytes = (v as { bytes?: unknown } | null)?.bytes;
            if (!(bytes instanceof Uint8Array)) throw new VlakitError('E_RECORD_INVALID', 'an image feature without bytes', { file, record: i, field: k });
            observation[name] = { mime: sniffImageMime(bytes) ?? 'application/octet-stream', b64: Buffer.from(bytes).toString('base64') };
          } else observation[name] = plain(v, f32.has(k));
        }
        // other columns (discount, annotations, ...) become step fields of the same name; "string" features marked
        // {"info": {"json": true}} hold JSON text (vlakit writes non-string step fields so)
        const extra: Record<string, unknown> = {};
        for (const [k, v] of Object.entries(r)) {
          if (k.startsWith('observation.') || k.startsWith('next.') || k === 'action' || STANDARD.has(k) || STEP_FIELDS.has(k) || v === null || v === undefined) continue;
          const f = info.features[k] as { dtype: string; info?: { json?: unknown } } | undefined;
          if (f?.dtype === 'string' && f.info?.json === true && typeof v === 'string') {
            try {
              extra[k] = JSON.parse(v);
            } catch {
              throw new VlakitError('E_RECORD_INVALID', 'a JSON feature whose text is not JSON', { file, record: i, field: k });
            }
          } else extra[k] = plain(v, f32.has(k));
        }
        const task = tasks.get(num(r.task_index));
        const step: StepRecord = {
          episode_id: e,
          step: num(r.frame_index ?? i),
          is_first: i === 0,
          is_last: i === frames.length - 1,
          is_terminal: i === frames.length - 1 && (r['next.done'] === undefined || Boolean(r['next.done'])),
          observation,
          action: plain(r.action, f32.has('action')),
          ...(r['next.reward'] !== undefined ? { reward: plain(r['next.reward'], f32.has('next.reward')) } : {}),
          language_instruction: task ?? '',
          ...(r.timestamp !== undefined ? { timestamp: plain(r.timestamp, f32.has('timestamp')) } : {}),
          ...extra,
        };
        yield step;
      }
    }
  }
}
