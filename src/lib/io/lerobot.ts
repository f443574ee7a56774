/**
 * LeRobot datasets (Hugging Face's format), read as step records: `meta/info.json` (`codebase_version` v2.x or
 * v3.x, `features`), frames in parquet under `data/` (v2.1: one file per episode; v3.0: many episodes per file),
 * tasks in `meta/tasks.jsonl` (v2.1) or `meta/tasks.parquet` (v3.0). Each parquet row is one step: `action`,
 * `observation.*` features (an `image` feature's `{bytes, path}` struct becomes a camera image), `next.reward`,
 * `next.done`, `timestamp`; the instruction is the row's task. Camera features stored as `video` (MP4 files under
 * `videos/`) are not decoded yet: they are left out of the steps, with a warning naming them.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import fg from 'fast-glob';
import { z } from 'zod';
import { VlakitError } from '../errors.js';
import { readJsonFile } from './json-file.js';
import { sniffImageMime } from './images.js';
import type { StepRecord } from './records.js';

const InfoSchema = z.looseObject({
  codebase_version: z.string().regex(/^v[23]\./, 'expected a LeRobot codebase_version v2.x or v3.x'),
  fps: z.number().positive().optional(),
  features: z.record(z.string(), z.looseObject({ dtype: z.string(), shape: z.array(z.number()).optional() })),
});
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

type Row = Record<string, unknown>;

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

/** A parquet value as JSON numbers (lists of float32 stay numbers; bigints become numbers). */
function plain(v: unknown): unknown {
  if (typeof v === 'bigint') return Number(v);
  if (Array.isArray(v)) return v.map(plain);
  if (ArrayBuffer.isView(v) && !(v instanceof Uint8Array)) return Array.from(v as unknown as ArrayLike<number>);
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

/**
 * The steps of a LeRobot dataset, episode by episode (in episode_index order within each data file, frames by
 * frame_index).
 * @example for await (const s of readLeRobot('lerobot/pusht')) ...
 */
export async function* readLeRobot(root: string, opts: { signal?: AbortSignal; onWarning?: (m: string) => void } = {}): AsyncGenerator<StepRecord> {
  const info = readJsonFile(path.join(root, 'meta', 'info.json'), InfoSchema, { what: 'LeRobot info.json' });
  const tasks = await readTasks(root);
  const videos = Object.entries(info.features).filter(([, f]) => f.dtype === 'video').map(([k]) => k);
  if (videos.length) opts.onWarning?.(`${root}: camera features stored as video are not decoded yet and are left out: ${videos.join(', ')}`);
  const images = new Set(Object.entries(info.features).filter(([, f]) => f.dtype === 'image').map(([k]) => k));
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
      for (let i = 0; i < frames.length; i++) {
        const r = frames[i];
        const observation: Record<string, unknown> = {};
        for (const [k, v] of Object.entries(r)) {
          if (!k.startsWith('observation.') || videos.includes(k)) continue;
          const name = k.slice('observation.'.length);
          if (images.has(k)) {
            const bytes = (v as { bytes?: unknown } | null)?.bytes;
            if (!(bytes instanceof Uint8Array)) throw new VlakitError('E_RECORD_INVALID', 'an image feature without bytes', { file, record: i, field: k });
            observation[name] = { mime: sniffImageMime(bytes) ?? 'application/octet-stream', b64: Buffer.from(bytes).toString('base64') };
          } else observation[name] = plain(v);
        }
        const task = tasks.get(num(r.task_index));
        const step: StepRecord = {
          episode_id: e,
          step: num(r.frame_index ?? i),
          is_first: i === 0,
          is_last: i === frames.length - 1,
          is_terminal: i === frames.length - 1 && (r['next.done'] === undefined || Boolean(r['next.done'])),
          observation,
          action: plain(r.action),
          ...(r['next.reward'] !== undefined ? { reward: plain(r['next.reward']) } : {}),
          language_instruction: task ?? '',
          ...(r.timestamp !== undefined ? { timestamp: plain(r.timestamp) } : {}),
        };
        yield step;
      }
    }
  }
}
