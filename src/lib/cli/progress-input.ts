/**
 * How much of a job's input is done, for the progress of the commands that read datasets (convert, inspect, chunk,
 * relabel, annotate): the records, when they can be counted ahead cheaply, else the input's bytes read of its size.
 */
import { closeSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import path from 'node:path';
import { expandInputs, isLeRobotDir, isRldsDir, openRlds, sniffFormat, splitShards } from '../io/index.js';
import { isDirectory } from '../io/sources.js';
import type { ProgressState } from './progress-format.js';

/** Plain JSON Lines up to this size are counted line by line before the job (a few tens of milliseconds). */
export const COUNT_LINES_UP_TO = 64 << 20;

export interface InputSize {
  /** The records of the whole input, when known ahead: non-blank lines of plain JSON Lines, a LeRobot dataset's frames. */
  records?: number;
  /** The bytes of all the input's files (compressed ones as they are on disk), when every input is a file or an RLDS dataset. */
  bytes?: number;
}

/** The first bytes of a file (empty when it cannot be read). */
function head(file: string, n = 64): Buffer {
  let fd: number | undefined;
  try {
    fd = openSync(file, 'r');
    const b = Buffer.alloc(n);
    return b.subarray(0, readSync(fd, b, 0, n, 0));
  } catch {
    return Buffer.alloc(0);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Lines holding something other than white space: the records a JSON Lines reader yields (invalid lines included). */
export function countJsonlRecords(bytes: Uint8Array): number {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let n = 0;
  let start = 0;
  while (start < b.length) {
    let nl = b.indexOf(10, start);
    if (nl < 0) nl = b.length;
    for (let i = start; i < nl; i++) {
      const c = b[i];
      if (c !== 0x20 && c !== 0x09 && c !== 0x0d && c !== 0x0b && c !== 0x0c) {
        n++;
        break;
      }
    }
    start = nl + 1;
  }
  return n;
}

function leRobotFrames(dir: string): number | undefined {
  try {
    const n = (JSON.parse(readFileSync(path.join(dir, 'meta', 'info.json'), 'utf8')) as { total_frames?: unknown }).total_frames;
    return typeof n === 'number' && Number.isInteger(n) && n >= 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The size of a job's inputs, as far as it is known without reading them: stdin and HDF5 files have none (nothing
 * is known then); any problem (a missing file, an unknown split) is left to the reader, which names it.
 * @example await measureInputs(['steps.jsonl']) // { records: 1200, bytes: 4123456 }
 */
export async function measureInputs(inputs: string[], o: { split?: string; countLinesUpTo?: number } = {}): Promise<InputSize> {
  try {
    let bytes = 0;
    let records: number | undefined = 0;
    const plainJsonl: string[] = [];
    for (const input of inputs) {
      if (input === '-') return {};
      if (isDirectory(input) && isRldsDir(input)) {
        for (const s of splitShards(openRlds(input), o.split ?? 'train')) bytes += statSync(s.file).size;
        records = undefined;
        continue;
      }
      if (isDirectory(input) && isLeRobotDir(input)) {
        const n = leRobotFrames(input);
        if (n === undefined || records === undefined) return {};
        records += n;
        bytes = NaN; // read as parquet and video, not as bytes
        continue;
      }
      for (const file of await expandInputs([input])) {
        // a pipe or a device (`<(cmd)`, /dev/stdin) has no size, and reading its head here would take bytes from the job
        const st = file === '-' ? undefined : statSync(file);
        if (!st?.isFile()) return {};
        const h = head(file);
        if (h.length >= 3 && h[0] === 0x1f && h[1] === 0x8b && h[2] === 0x08) records = undefined;
        else {
          const f = sniffFormat(h);
          if (f === 'hdf5') return {};
          if (f === 'jsonl') plainJsonl.push(file);
          else records = undefined;
        }
        bytes += st.size;
      }
    }
    if (records !== undefined && plainJsonl.length && bytes <= (o.countLinesUpTo ?? COUNT_LINES_UP_TO)) {
      for (const f of plainJsonl) records += countJsonlRecords(readFileSync(f));
    } else if (plainJsonl.length) records = undefined;
    return { ...(records !== undefined ? { records } : {}), ...(Number.isFinite(bytes) ? { bytes } : {}) };
  } catch {
    return {};
  }
}

/**
 * Meters a job's input: `onRead` goes to the reader (ReadOptions.onRead); `state()` adds the total (records known
 * ahead) or the bytes read of the size to a progress update.
 */
export class InputMeter {
  private read = 0;
  constructor(readonly size: InputSize) {}

  readonly onRead = (n: number): void => {
    this.read += n;
  };

  /** What the progress shows of the input: its records' total, else its bytes read of its size, else nothing. */
  state(): Partial<ProgressState> {
    if (this.size.records !== undefined) return { total: this.size.records };
    if (this.size.bytes) return { size: { done: Math.min(this.read, this.size.bytes), total: this.size.bytes } };
    return {};
  }
}

/** measureInputs, then a meter over it. */
export async function meterInput(inputs: string[], o: { split?: string } = {}): Promise<InputMeter> {
  return new InputMeter(await measureInputs(inputs, o));
}
