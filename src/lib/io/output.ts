/** Writing step records: JSON Lines (file or stdout), an RLDS or a LeRobot dataset directory, whole or not at all. */
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable, type Writable } from 'node:stream';
import { VlakitError } from '../errors.js';
import { encodeJsonl } from './jsonl.js';
import type { StepRecord } from './records.js';
import { claimOutput, type OutputOptions } from './outputs.js';
import { writeLeRobot, type WriteLeRobotOptions } from './lerobot-write.js';
import { writeRlds, type WriteRldsOptions } from './rlds.js';
import { AtomicFile } from './writer.js';

const EXTENSION_FORMATS: [RegExp, 'jsonl' | 'tfrecord'][] = [
  [/\.(jsonl|ndjson|json)$/, 'jsonl'],
  [/\.(tfrecord|tfrecords|rec)$|\.tfrecord-\d+/, 'tfrecord'],
];

/** The format an output name's extension says (.jsonl, .tfrecord, also under .gz), or undefined (a directory name). */
export function extensionFormat(output: string | undefined): 'jsonl' | 'tfrecord' | undefined {
  if (!output || output === '-') return undefined;
  const base = path.basename(output).replace(/\.gz$/, '');
  return EXTENSION_FORMATS.find(([re]) => re.test(base))?.[1];
}

/** Refuses `--to` naming another format than the output's extension: `--to tfrecord -o x.jsonl` is a mistake. */
export function checkOutputFormat(to: string | undefined, output: string | undefined): void {
  const ext = extensionFormat(output);
  if (!to || !ext || ext === to) return;
  throw new VlakitError(
    'E_USAGE',
    `--to ${to} conflicts with the output name ${output}, which says ${ext}: the extension must match the format (.jsonl/.ndjson/.json for jsonl, .tfrecord/.tfrecords/.rec for tfrecord, .gz after either to compress; rlds is a directory, named without those)`,
  );
}

/** Writes chunks to stdout with back-pressure; a closed pipe (`| head`) ends the job quietly. */
export async function writeStdout(chunks: AsyncIterable<string | Uint8Array>, out: Writable = process.stdout): Promise<void> {
  try {
    await pipeline(Readable.from(chunks, { objectMode: false }), out, { end: out !== process.stdout });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EPIPE') return;
    throw err;
  }
}

export interface WriteJsonlOptions extends OutputOptions {
  gzip?: boolean;
  stdout?: Writable;
}

/**
 * Writes JSON values as JSON Lines to a file (gzip when it ends in .gz) or to stdout ('-' or undefined). The file
 * is claimed first (an existing one needs `overwrite`; inputs are never written over), then written whole.
 */
export async function writeJsonl(values: AsyncIterable<unknown>, output?: string, opts: WriteJsonlOptions = {}): Promise<void> {
  if (!output || output === '-') {
    await writeStdout(encodeJsonl(values), opts.stdout);
    return;
  }
  const claim = claimOutput(output, 'file', opts);
  const file = new AtomicFile(claim.path, { gzip: opts.gzip ?? output.endsWith('.gz'), direct: claim.direct, output: opts });
  try {
    for await (const chunk of encodeJsonl(values)) await file.write(chunk);
    await file.commit();
  } catch (err) {
    await file.abort();
    throw err;
  }
}

export interface WriteEpisodesOptions extends Omit<WriteRldsOptions, 'dir'>, OutputOptions {
  /** A .jsonl path, '-' for stdout, or a directory for RLDS and LeRobot. */
  output?: string;
  to: 'jsonl' | 'rlds' | 'lerobot';
  /** LeRobot output's version, fps, camera storage and codec. */
  lerobot?: Omit<WriteLeRobotOptions, 'dir' | keyof OutputOptions>;
}

/** Writes episodes of step records as JSON Lines, an RLDS dataset or a LeRobot dataset. */
export async function writeEpisodes(episodes: AsyncIterable<StepRecord[]>, opts: WriteEpisodesOptions): Promise<{ episodes: number; steps: number; outputs: string[] }> {
  checkOutputFormat(opts.to, opts.output);
  if (opts.to === 'rlds') {
    if (!opts.output || opts.output === '-') throw new VlakitError('E_USAGE', 'RLDS output is a directory: give it with -o DIR');
    const r = await writeRlds(episodes, { ...opts, dir: opts.output });
    return { episodes: r.episodes, steps: r.steps, outputs: [r.dir] };
  }
  if (opts.to === 'lerobot') {
    if (!opts.output || opts.output === '-') throw new VlakitError('E_USAGE', 'LeRobot output is a directory: give it with -o DIR');
    const r = await writeLeRobot(episodes, { overwrite: opts.overwrite, inputs: opts.inputs, signal: opts.signal, onNote: opts.onNote, flag: opts.flag, ...opts.lerobot, dir: opts.output });
    return { episodes: r.episodes, steps: r.steps, outputs: [r.dir] };
  }
  let n = 0;
  let steps = 0;
  await writeJsonl(
    (async function* () {
      for await (const ep of episodes) {
        n += 1;
        steps += ep.length;
        yield* ep;
      }
    })(),
    opts.output,
    opts,
  );
  return { episodes: n, steps, outputs: [opts.output && opts.output !== '-' ? opts.output : '-'] };
}
