/**
 * One output discipline for every command. An output (a file or a directory) is claimed before anything is written:
 * an existing non-empty output is refused unless `overwrite`; an output that is, contains or lies inside an input is
 * refused always; a directory where a file is expected (or the reverse) is a usage error. The new output is written
 * under a temporary sibling name (`.NAME.tmp-PID-N`) and swapped in only when complete, so a failure leaves the old
 * one intact. Temporaries are tracked, so that an interrupted command can remove them on its way out; those left by a
 * killed process (its pid gone) are removed by the next run that writes beside them.
 */
import { type Stats, existsSync, lstatSync, mkdirSync, promises as fsp, readdirSync, realpathSync, renameSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import fg from 'fast-glob';
import { VlakitError, isVlakitError } from '../errors.js';

export type OutputKind = 'file' | 'dir';

/** How a command writes its outputs; every command passes `--overwrite`, its inputs, its AbortSignal. */
export interface OutputOptions {
  /** Replace an existing non-empty output, atomically, once the new one is complete. */
  overwrite?: boolean;
  /** Everything the command reads (files, globs, dataset/model/cache directories): never written over. */
  inputs?: readonly (string | undefined)[];
  /** Checked before the new output is swapped in: an aborted command leaves no output. */
  signal?: AbortSignal;
  /** Notes for stderr (stale temporaries removed). */
  onNote?: (msg: string) => void;
  /** How the output was given, for messages: `-o`, `--stats-out`, ... */
  flag?: string;
}

export interface OutputClaim {
  /** The absolute path of the output. */
  path: string;
  /** True when something is there now (to be replaced). */
  exists: boolean;
  /** A device or pipe (`-o /dev/null`): written in place, not through a temporary name. */
  direct: boolean;
}

// ---------------------------------------------------------------------------------------------- temporaries

let tmpCounter = 0;
const live = new Set<string>();

/** A temporary name beside `target`, recognisably vlakit's and this process's: `.NAME.tmp-PID-N`. */
export function tempNameFor(target: string): string {
  tmpCounter += 1;
  return path.join(path.dirname(target), `.${path.basename(target)}.tmp-${process.pid}-${tmpCounter}`);
}

function oldNameFor(target: string): string {
  tmpCounter += 1;
  return path.join(path.dirname(target), `.${path.basename(target)}.old-${process.pid}-${tmpCounter}`);
}

/** Registers a temporary file or directory, to be removed by `removeTemporariesSync` if it is still there. */
export function trackTemporary(p: string): void {
  live.add(path.resolve(p));
}

/** The temporary became the output, or was removed: no longer ours to clean. */
export function untrackTemporary(p: string): void {
  live.delete(path.resolve(p));
}

/** The temporaries of this process that still exist (for tests and for the exit handler). */
export function liveTemporaries(): string[] {
  return [...live];
}

/**
 * Removes every temporary this process still holds, synchronously: for a signal handler or `process.on('exit')`,
 * where nothing asynchronous runs any more. Returns what was removed.
 */
export function removeTemporariesSync(): string[] {
  const removed: string[] = [];
  for (const p of live) {
    try {
      rmSync(p, { recursive: true, force: true });
      removed.push(p);
    } catch {
      // best effort: the next run removes what is left (its pid will be gone)
    }
    live.delete(p);
  }
  return removed;
}

/** `.NAME.tmp-PID-N...`, `.NAME.old-PID-N`, and the older `NAME.tmp-PID` / `NAME.old-PID` of vlakit's directory writers. */
function temporaryOf(entry: string, base: string): { pid: number; old: boolean } | undefined {
  let m: RegExpExecArray | null = null;
  if (entry.startsWith(`.${base}.`)) m = /^(tmp|old)-(\d+)-\d+$/.exec(entry.slice(base.length + 2));
  if (!m && entry.startsWith(`${base}.`)) m = /^(tmp|old)-(\d+)$/.exec(entry.slice(base.length + 1));
  return m ? { pid: Number(m[2]), old: m[1] === 'old' } : undefined;
}

/** True when a process with this pid exists (it may be another program: then its files are left alone). */
function pidAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes the temporaries that killed vlakit processes left beside `target` (their pid no longer runs). A previous
 * output set aside for a swap that never finished (`.NAME.old-PID-N` with no NAME) is put back instead.
 */
export function removeStaleTemporaries(target: string, onNote?: (msg: string) => void): string[] {
  const dir = path.dirname(target);
  const base = path.basename(target);
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const e of entries) {
    const t = temporaryOf(e, base);
    if (!t || pidAlive(t.pid)) continue;
    const p = path.join(dir, e);
    try {
      if (t.old && !existsSync(target)) {
        renameSync(p, target);
        onNote?.(`restored ${target} from ${e}, set aside by a process that was killed while replacing it`);
        continue;
      }
      rmSync(p, { recursive: true, force: true });
      removed.push(p);
    } catch (err) {
      onNote?.(`cannot remove the stale temporary ${p} (${(err as Error).message})`);
    }
  }
  if (removed.length) onNote?.(`removed ${removed.length} stale temporar${removed.length === 1 ? 'y' : 'ies'} of killed vlakit runs beside ${target}: ${removed.map((p) => path.basename(p)).join(', ')}`);
  return removed;
}

// ---------------------------------------------------------------------------------------------- errors

/**
 * A failed write as a VlakitError that says why: a read-only file system is EROFS, not "no such file".
 * @example throw writeError(err, 'out/steps.jsonl')
 */
export function writeError(err: unknown, file: string): VlakitError {
  if (isVlakitError(err)) return err;
  const e = err as NodeJS.ErrnoException;
  const opts = { cause: err };
  switch (e?.code) {
    case 'EROFS':
      return new VlakitError('E_IO', 'read-only file system: cannot write here', { file }, opts);
    case 'EACCES':
    case 'EPERM':
      return new VlakitError('E_IO', 'permission denied: cannot write here', { file }, opts);
    case 'ENOSPC':
      return new VlakitError('E_IO', 'no space left on the device', { file }, opts);
    case 'EDQUOT':
      return new VlakitError('E_IO', 'disk quota exceeded', { file }, opts);
    case 'EMFILE':
    case 'ENFILE':
      return new VlakitError('E_IO', 'too many open files', { file }, opts);
    case 'EISDIR':
      return new VlakitError('E_USAGE', 'is a directory, but a file is to be written here', { file }, opts);
    case 'ENOTDIR':
      return new VlakitError('E_USAGE', 'a part of this path is a file, not a directory', { file }, opts);
    case 'ENAMETOOLONG':
      return new VlakitError('E_USAGE', 'the file name is too long', { file }, opts);
    case 'ENOENT':
      return new VlakitError('E_IO', 'cannot write: its directory disappeared', { file }, opts);
    default:
      return new VlakitError('E_IO', `cannot write (${e?.message ?? String(err)})`, { file }, opts);
  }
}

// ---------------------------------------------------------------------------------------------- claiming

/** The real path of `p`, also when it (or its last parts) does not exist yet. */
export function realPathOf(p: string): string {
  const abs = path.resolve(p);
  const tail: string[] = [];
  let cur = abs;
  for (;;) {
    try {
      return path.join(realpathSync(cur), ...tail);
    } catch {
      const up = path.dirname(cur);
      if (up === cur) return abs;
      tail.unshift(path.basename(cur));
      cur = up;
    }
  }
}

function inside(child: string, parent: string): boolean {
  const rel = path.relative(parent, child);
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
}

/** The real paths an input names: a glob's matches, else the path itself (remote names and stdin: none). */
function inputPaths(input: string): string[] {
  if (input === '-' || input === '' || /^[a-z][a-z0-9+.-]*:\/\//i.test(input) || /^(openai|gemini|exec):/.test(input)) return [];
  if (fg.isDynamicPattern(input)) {
    try {
      return fg.sync(input, { onlyFiles: true, dot: false }).map(realPathOf);
    } catch {
      return [];
    }
  }
  return existsSync(input) ? [realPathOf(input)] : [];
}

/** Refuses an output that is an input, contains one, or lies inside one (a dataset, model or cache directory). */
function checkInputs(target: string, real: string, inputs: readonly (string | undefined)[], flag: string): void {
  for (const input of inputs) {
    if (input === undefined) continue;
    for (const r of inputPaths(input)) {
      let why: string | undefined;
      if (r === real) why = `is the input ${input}`;
      else if (inside(r, real)) why = `contains the input ${input}${r !== realPathOf(input) ? ` (${r})` : ''}: writing it would delete that input`;
      else if (inside(real, r)) why = `is inside the input ${input}: writing it would change that input`;
      if (why) throw new VlakitError('E_USAGE', `the output (${flag}) ${why}; choose another output (--overwrite never replaces an input)`, { file: target });
    }
  }
}

function describe(st: Stats, entries?: number): string {
  return st.isDirectory() ? `a directory holding ${entries} entr${entries === 1 ? 'y' : 'ies'}` : `a file of ${st.size} bytes`;
}

/**
 * Claims `target` as a `kind` output: checks it against the inputs and what is there now, creates missing parent
 * directories, and removes stale temporaries of killed runs beside it. Throws E_USAGE (exit 2) with the rule.
 * @example claimOutput('out/steps.jsonl', 'file', { overwrite: flags.overwrite, inputs: argv })
 */
export function claimOutput(target: string, kind: OutputKind, opts: OutputOptions = {}): OutputClaim {
  const flag = opts.flag ?? '-o';
  if (!target) throw new VlakitError('E_USAGE', `${flag} needs a path`);
  const abs = path.resolve(target);
  const real = realPathOf(abs);
  checkInputs(target, real, opts.inputs ?? [], flag);
  let st: Stats | undefined;
  try {
    st = statSync(abs);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') throw writeError(err, target);
  }
  let direct = false;
  if (st) {
    if (kind === 'file' && st.isDirectory()) {
      throw new VlakitError('E_USAGE', `the output (${flag}) is an existing directory, but a file is written here: give a file path (e.g. ${path.join(target, 'out.jsonl')})`, { file: target });
    }
    if (kind === 'dir' && !st.isDirectory()) {
      throw new VlakitError('E_USAGE', `the output (${flag}) is an existing file, but a directory is written here: give a directory path`, { file: target });
    }
    if (kind === 'file' && !st.isFile()) {
      direct = true; // /dev/null, a named pipe: written in place, never replaced
    } else {
      const entries = st.isDirectory() ? readdirSync(abs).length : undefined;
      const nonEmpty = st.isDirectory() ? entries! > 0 : st.size > 0;
      if (nonEmpty && !opts.overwrite) {
        throw new VlakitError('E_USAGE', `the output (${flag}) exists (${describe(st, entries)}); pass --overwrite to replace it once the new output is complete, or choose another path`, { file: target });
      }
    }
  }
  if (!direct) {
    try {
      mkdirSync(path.dirname(abs), { recursive: true });
    } catch (err) {
      throw writeError(err, path.dirname(target) || '.');
    }
    removeStaleTemporaries(abs, opts.onNote);
  }
  return { path: abs, exists: st !== undefined, direct };
}

/** Refuses two outputs of one command that are the same path or inside each other. */
export function checkDistinctOutputs(outputs: [flag: string, target: string | undefined][]): void {
  const given = outputs.filter((o): o is [string, string] => !!o[1] && o[1] !== '-');
  for (let i = 0; i < given.length; i++) {
    for (let j = i + 1; j < given.length; j++) {
      const [a, b] = [realPathOf(given[i][1]), realPathOf(given[j][1])];
      if (a === b || inside(a, b) || inside(b, a)) throw new VlakitError('E_USAGE', `${given[i][0]} ${given[i][1]} and ${given[j][0]} ${given[j][1]} overlap: give each output its own path`);
    }
  }
}

/** The final check before an output is swapped in: not aborted, and (without overwrite) nothing appeared there meanwhile. */
function checkBeforeSwap(target: string, opts: OutputOptions): void {
  opts.signal?.throwIfAborted();
  if (opts.overwrite) return;
  let st: Stats;
  try {
    st = statSync(target);
  } catch {
    return;
  }
  const entries = st.isDirectory() ? readdirSync(target).length : undefined;
  if (st.isDirectory() ? entries! > 0 : st.size > 0) {
    throw new VlakitError('E_USAGE', `the output (${opts.flag ?? '-o'}) appeared while it was being written (${describe(st, entries)}); pass --overwrite to replace it`, { file: target });
  }
}

/** Moves the temporary file `tmp` to `target` (rename replaces a file atomically). */
export async function swapFileIn(tmp: string, target: string, opts: OutputOptions = {}): Promise<void> {
  checkBeforeSwap(target, opts);
  try {
    await fsp.rename(tmp, target);
  } catch (err) {
    throw writeError(err, target);
  }
  untrackTemporary(tmp);
}

/**
 * Moves the complete temporary directory `tmp` to `target`. An existing `target` is set aside first and removed
 * after the swap; if the swap fails it is put back, so the old output stays intact.
 */
export async function swapDirIn(tmp: string, target: string, opts: OutputOptions = {}): Promise<void> {
  checkBeforeSwap(target, opts);
  let old: string | undefined;
  try {
    if (existsSync(target)) {
      if (lstatSync(target).isDirectory() && readdirSync(target).length === 0) await fsp.rmdir(target);
      else {
        old = oldNameFor(target);
        await fsp.rename(target, old);
      }
    }
    try {
      await fsp.rename(tmp, target);
    } catch (err) {
      if (old) await fsp.rename(old, target).catch(() => {});
      old = undefined;
      throw err;
    }
  } catch (err) {
    throw writeError(err, target);
  }
  untrackTemporary(tmp);
  if (old) await fsp.rm(old, { recursive: true, force: true });
}

/**
 * Writes a directory output whole or not at all: `fill` writes into a fresh temporary directory, which replaces
 * `target` only when `fill` succeeded (and the command was not aborted); on failure it is removed.
 * @example await writeOutputDir('viz', async (tmp) => { await fsp.writeFile(path.join(tmp, 'a.png'), png) }, { overwrite })
 */
export async function writeOutputDir<T>(target: string, fill: (tmp: string) => Promise<T>, opts: OutputOptions = {}): Promise<T> {
  const claim = claimOutput(target, 'dir', opts);
  const tmp = tempNameFor(claim.path);
  trackTemporary(tmp);
  try {
    try {
      await fsp.mkdir(tmp);
    } catch (err) {
      throw writeError(err, target);
    }
    const res = await fill(tmp);
    await swapDirIn(tmp, claim.path, opts);
    return res;
  } catch (err) {
    await fsp.rm(tmp, { recursive: true, force: true });
    untrackTemporary(tmp);
    throw err;
  }
}
