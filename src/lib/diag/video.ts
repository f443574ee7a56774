/**
 * One animated file per rollout episode, for seeing why a policy fails: each control step's camera frame (scaled
 * up, nearest neighbour) beside a panel with the instruction, the world's subtask, the model's text (subtasks,
 * motion plan, actions), the verifier's decisions, the executed action and the safety filter's interventions.
 * MP4 (H.264) through an ffmpeg binary when one is found (VLAKIT_FFMPEG, the @ffmpeg-installer package of this
 * platform, or ffmpeg on the PATH); otherwise an animated GIF written by sharp.
 */
import { spawn } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import sharp from 'sharp';
import { VlakitError } from '../errors.js';
import { imagesOf } from '../io/json.js';
import type { StepRecord } from '../io/records.js';
import { episodeAnalysis } from './analysis.js';

export type VideoFormat = 'mp4' | 'gif';

/** An RGB frame (3 bytes a pixel, row-major), e.g. a render of the built-in world. */
export interface RgbFrame {
  width: number;
  height: number;
  rgb: Uint8Array;
}

export interface VideoOptions {
  format: VideoFormat;
  /** ffmpeg's path, for mp4 (see findFfmpeg). */
  ffmpeg?: string;
  /** Frames per second (the control rate gives real time; default 5). */
  fps?: number;
  /** Side of the camera image in the video, pixels (default 384). */
  size?: number;
  /** Frames to draw instead of the records' camera images (one per record), e.g. larger renders of the world. */
  frames?: (RgbFrame | undefined)[];
  signal?: AbortSignal;
}

const PANEL = 400;
const FONT = 13;
const LINE = 17;
const COLS = 54;

/**
 * The ffmpeg binary to use: VLAKIT_FFMPEG when set, else the binary of the @ffmpeg-installer package for this
 * platform when installed, else `ffmpeg` on the PATH; undefined when there is none.
 */
export function findFfmpeg(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.VLAKIT_FFMPEG) return env.VLAKIT_FFMPEG;
  const req = createRequire(import.meta.url);
  const bin = process.platform === 'win32' ? 'ffmpeg.exe' : 'ffmpeg';
  try {
    const pkg = req.resolve(`@ffmpeg-installer/${process.platform}-${process.arch}/package.json`);
    const p = path.join(path.dirname(pkg), bin);
    if (existsSync(p)) return p;
  } catch {
    // not installed (an optional dependency, for linux-x64 only)
  }
  for (const dir of (env.PATH ?? '').split(path.delimiter).filter(Boolean)) {
    const p = path.join(dir, bin);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

function escapeXml(s: string): string {
  return s.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!);
}

/** Wraps text at `cols` characters, at most `max` lines (the last one cut with an ellipsis). */
function wrap(text: string, cols: number, max: number): string[] {
  const out: string[] = [];
  for (const para of text.split('\n')) {
    let line = '';
    for (const word of para.split(/\s+/).filter(Boolean)) {
      for (let w = word; w.length; ) {
        const room = line ? cols - line.length - 1 : cols;
        if (w.length <= room) {
          line = line ? `${line} ${w}` : w;
          w = '';
        } else if (!line) {
          out.push(w.slice(0, cols));
          w = w.slice(cols);
        } else {
          out.push(line);
          line = '';
        }
      }
    }
    if (line) out.push(line);
  }
  if (out.length > max) {
    out.length = max;
    out[max - 1] = `${out[max - 1].slice(0, cols - 1)}…`;
  }
  return out;
}

type PolicyInfo = {
  cycle?: number;
  chunk_step?: number;
  subtasks?: string[];
  subtask?: string;
  subtask_index?: number;
  motion_plan?: string;
  text?: string;
  noop?: { reason?: string };
  resampled?: { texts: string[] };
  verifier?: { verifier?: string; success?: boolean; retry?: number; gave_up?: boolean; subtask_index?: number };
};

interface Line {
  text: string;
  color?: string;
  bold?: boolean;
}

/** What the panel shows at each step: the policy's latest cycle is carried over the steps that execute its chunk. */
function panels(records: StepRecord[]): Line[][] {
  const analysis = episodeAnalysis(records);
  const meta = (records[0]?.episode_metadata ?? {}) as { family?: string; episode_index?: number };
  const out: Line[][] = [];
  let plan: string[] | undefined;
  let cycle: PolicyInfo = {};
  let verdict: { text: string; at: number } | undefined;
  const n = records.length - 1;
  for (const [t, r] of records.entries()) {
    const p = r.policy as PolicyInfo | undefined;
    if (p?.subtasks) plan = p.subtasks;
    if (p && p.chunk_step === 0) cycle = p;
    if (p?.verifier) {
      const v = p.verifier;
      verdict = { text: `${v.verifier ?? 'verifier'} on subtask ${(v.subtask_index ?? 0) + 1}: ${v.success ? 'done' : v.gave_up ? 'not done, gave up' : `not done, retry ${v.retry ?? ''}`}`, at: t };
    }
    const oracle = r.oracle as { subtask?: { index: number; kind: string; text: string }; holding?: string } | undefined;
    const lines: Line[] = [];
    const add = (label: string, text: string, max: number, color?: string) => wrap(`${label}${text}`, COLS, max).forEach((l) => lines.push({ text: l, color }));
    lines.push({ text: `step ${t}/${n}   ${meta.family ?? ''}   episode ${r.episode_id}`, bold: true });
    add('task: ', r.language_instruction ?? '', 2);
    if (oracle?.subtask) add('world: ', `${oracle.subtask.kind === 'done' ? 'all subtasks done' : `subtask ${oracle.subtask.index + 1}, ${oracle.subtask.text}`}${oracle.holding ? `; holding ${oracle.holding}` : ''}`, 2, '#9fd0ff');
    if (plan) add('plan: ', plan.map((s, i) => `${i + 1}. ${s}`).join(' '), 3, '#ffe29f');
    if (cycle.subtask !== undefined) add('policy subtask: ', `${(cycle.subtask_index ?? 0) + 1}. ${cycle.subtask}`, 2, '#ffe29f');
    if (cycle.motion_plan !== undefined) add('motion plan: ', cycle.motion_plan, 3, '#ffe29f');
    if (cycle.text !== undefined) add(`model (cycle ${cycle.cycle ?? 0}): `, cycle.text, 4, '#d7ffb0');
    if (cycle.resampled) add('', `re-sampled ${cycle.resampled.texts.length}x`, 1, '#ffb3a7');
    if (cycle.noop) add('no-op: ', cycle.noop.reason ?? 'no action parsed', 2, '#ff8a7a');
    if (verdict) add('verifier: ', `${verdict.text}, at step ${verdict.at}`, 2, verdict.text.includes(': done') ? '#8dff8d' : '#ff8a7a');
    if (t < n && Array.isArray(r.action)) add('action: ', `[${(r.action as number[]).map((v) => (typeof v === 'number' ? v.toFixed(3) : String(v))).join(', ')}]`, 1);
    const safety = (r.safety as { interventions?: string[] } | undefined)?.interventions;
    if (safety?.length) add('safety: ', safety.join(', '), 1, '#ff8a7a');
    if (t === n) {
      const ok = analysis.success;
      const closest = analysis.min_distance_m === undefined ? '' : `; closest ${(analysis.min_distance_m * 100).toFixed(1)} cm to ${analysis.target}`;
      add('END: ', `${ok ? 'success' : analysis.end.replace('_', ' ')}${ok ? '' : `${closest}; grasp tries ${analysis.grasp_attempts}`}`, 2, ok ? '#8dff8d' : '#ff8a7a');
    }
    out.push(lines);
  }
  return out;
}

function panelSvg(lines: Line[], height: number): Buffer {
  const body = lines
    .slice(0, Math.floor((height - 8) / LINE))
    .map((l, i) => `<text x="8" y="${16 + i * LINE}" fill="${l.color ?? '#f0f0f0'}"${l.bold ? ' font-weight="bold"' : ''}>${escapeXml(l.text)}</text>`)
    .join('');
  return Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" width="${PANEL}" height="${height}"><rect width="100%" height="100%" fill="#1c1c1c"/><g font-family="DejaVu Sans Mono, monospace" font-size="${FONT}" xml:space="preserve">${body}</g></svg>`);
}

async function cameraImage(r: StepRecord, frame: RgbFrame | undefined, size: number): Promise<Buffer> {
  let img: ReturnType<typeof sharp>;
  if (frame) img = sharp(frame.rgb, { raw: { width: frame.width, height: frame.height, channels: 3 } });
  else {
    const im = imagesOf(r.observation ?? {})[0];
    if (!im) throw new VlakitError('E_RECORD_INVALID', 'a step has no camera image to draw', { record: r.step });
    img = sharp(Buffer.from(im.b64, 'base64'));
  }
  return img.removeAlpha().resize(size, size, { fit: 'contain', kernel: 'nearest', background: '#000' }).png({ compressionLevel: 0 }).toBuffer();
}

/** Frames drawn ahead of the one being written (sharp draws them on its own threads). */
const AHEAD = 3;

/** The frames of an episode as RGB buffers, in order. */
async function* episodeFrames(records: StepRecord[], o: VideoOptions): AsyncGenerator<Buffer> {
  const size = o.size ?? 384;
  const height = Math.max(size, 384);
  const texts = panels(records);
  const draw = async (t: number): Promise<Buffer> =>
    sharp({ create: { width: size + PANEL, height, channels: 3, background: '#000' } })
      .composite([
        { input: await cameraImage(records[t], o.frames?.[t], size), left: 0, top: 0 },
        { input: panelSvg(texts[t], height), left: size, top: 0 },
      ])
      .removeAlpha()
      .raw()
      .toBuffer();
  const pending: Promise<Buffer>[] = [];
  let next = 0;
  const more = () => {
    const p = draw(next++);
    p.catch(() => undefined); // awaited in order below; a frame given up on (an error or abort before it) must not be an unhandled rejection
    pending.push(p);
  };
  while (next < records.length && pending.length < AHEAD) more();
  while (pending.length) {
    o.signal?.throwIfAborted();
    const frame = await pending.shift()!;
    if (next < records.length) more();
    yield frame;
  }
}

/** Frame size of the videos for an (even) camera side `size`: [width, height], both even (H.264 4:2:0 needs that). */
export function videoSize(size = 384): [number, number] {
  return [size + PANEL, Math.max(size, 384)];
}

/**
 * Writes the video of one episode (its step records, final observation last) to `file`: one frame per record.
 * @example await writeEpisodeVideo(ep.records, 'videos/episode-0.gif', { format: 'gif' })
 */
export async function writeEpisodeVideo(records: StepRecord[], file: string, o: VideoOptions): Promise<{ frames: number }> {
  if (!records.length) throw new VlakitError('E_RECORD_INVALID', 'an episode without steps has no video', { file });
  const size = o.size ?? 384;
  if (size % 2) throw new VlakitError('E_USAGE', `the video image size must be even (H.264), got ${size}`);
  const [width, height] = videoSize(size);
  const fps = o.fps ?? 5;
  if (o.format === 'gif') {
    const frames: Buffer[] = [];
    for await (const f of episodeFrames(records, o)) frames.push(f);
    await sharp(Buffer.concat(frames), { raw: { width, height: height * frames.length, channels: 3, pageHeight: height } })
      .gif({ delay: frames.map(() => Math.round(1000 / fps)), loop: 0, keepDuplicateFrames: true, effort: 1 })
      .toFile(file);
    return { frames: frames.length };
  }
  if (!o.ffmpeg) throw new VlakitError('E_USAGE', 'mp4 videos need ffmpeg: install @ffmpeg-installer/linux-x64, put ffmpeg on the PATH or set VLAKIT_FFMPEG; or use --video-format gif');
  const args = ['-hide_banner', '-loglevel', 'error', '-y', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', `${width}x${height}`, '-r', String(fps), '-i', '-', '-an', '-c:v', 'libx264', '-preset', 'veryfast', '-crf', '20', '-pix_fmt', 'yuv420p', '-movflags', '+faststart', '-f', 'mp4', file];
  const child = spawn(o.ffmpeg, args, { stdio: ['pipe', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
  const done = new Promise<number>((resolve, reject) => {
    child.on('error', (err) => reject(new VlakitError('E_IO', `cannot run ffmpeg (${err.message})`, { file: o.ffmpeg })));
    child.on('close', (code) => resolve(code ?? 1));
  });
  let frames = 0;
  try {
    for await (const f of episodeFrames(records, o)) {
      frames++;
      if (!child.stdin.write(f)) await new Promise<void>((resolve) => child.stdin.once('drain', resolve));
    }
  } catch (err) {
    child.kill();
    await done.catch(() => {});
    throw err;
  } finally {
    child.stdin.end();
  }
  const code = await done;
  if (code !== 0) throw new VlakitError('E_IO', `ffmpeg failed (exit ${code}): ${stderr.trim().split('\n').at(-1) ?? ''}`, { file });
  return { frames };
}

/** The file name of an episode's video: `episode-0003-pick-timeout.mp4`. */
export function videoName(records: StepRecord[], index: number, format: VideoFormat): string {
  const a = episodeAnalysis(records);
  return `episode-${String(index).padStart(4, '0')}-${a.family}-${a.end}.${format}`;
}
