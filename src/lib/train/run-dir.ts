/**
 * A training run directory (train-sft, train-rl): `run.json` says which run it holds (the training data's hash, the
 * init checkpoint's hash, the settings that shape the trajectory, the seed, LoRA or full fine-tuning); beside it
 * `metrics.jsonl`, `checkpoint-<step>/` and, once finished, the final model in the directory itself.
 *
 * One directory holds one run. A new run refuses a directory that holds anything (another run, or other files)
 * unless `overwrite`; then it is written into a temporary sibling (`.DIR.tmp-<pid>-<n>`, io/outputs.ts's names and
 * swap) that replaces the old directory at the new run's first checkpoint or when it finishes, whichever comes first:
 * the old run stays whole until the new one has something to show, and a run that fails or is interrupted before
 * then leaves it untouched. Its temporaries are tracked, so that a signal removes them.
 * `resume` continues a run only when this command's data, settings and seed are the run's, and says what differs.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, promises as fsp, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { VlakitError } from '../errors.js';
import { readJsonFile, writeFileAtomic } from '../io/index.js';
import { realPathOf, removeStaleTemporaries, swapDirIn, tempNameFor, trackTemporary, untrackTemporary, writeOutputDir } from '../io/outputs.js';
import { MODEL_FILES } from '../model/checkpoint.js';

export type ConfigValue = string | number | boolean | null;

export type RunKind = 'train-sft' | 'train-rl';

/** What makes two runs the same run. */
export interface RunIdentity {
  kind: RunKind;
  /** sha256 of the training examples (canonical JSON, in input order). */
  data: string;
  seed: number;
  /** The checkpoint the run starts from (its path, and the sha256 of its model files); null from scratch. */
  init: { path: string; hash: string } | null;
  /** What trains: LoRA adapters, every weight, or (an action head over a frozen backbone) the head alone. */
  mode: 'lora' | 'full' | 'frozen';
  /** Every setting that shapes the trajectory, by its flag name; files as `sha256:<hex>`. */
  config: Record<string, ConfigValue>;
}

const ConfigValueSchema = z.union([z.string(), z.number(), z.boolean(), z.null()]);
const IdentitySchema = z.object({
  kind: z.enum(['train-sft', 'train-rl']),
  data: z.string(),
  seed: z.number(),
  init: z.object({ path: z.string(), hash: z.string() }).nullable(),
  mode: z.enum(['lora', 'full', 'frozen']),
  config: z.record(z.string(), ConfigValueSchema),
});
const RunFileSchema = z.object({
  format: z.literal('vlakit-run/1'),
  fingerprint: z.string(),
  identity: IdentitySchema,
  created: z.string(),
  /** The step the run finished at (its final model is in the directory); null while it runs. */
  finished: z.number().int().nonnegative().nullable(),
});
type RunFile = z.output<typeof RunFileSchema>;

/** The part of every trainer_state.json that ties a checkpoint to its run. */
export const TrainerStateBase = z.object({
  step: z.number().int().nonnegative(),
  consumed: z.number().int().nonnegative(),
  seed: z.number(),
  run: z.string(),
});

/** The run's own files (run.json, metrics.jsonl) are rewritten in place: an existing one is replaced, not refused. */
const REPLACE = { output: { overwrite: true } };

export const RUN_FILE = 'run.json';
export const METRICS_FILE = 'metrics.jsonl';
export const STATE_FILE = 'trainer_state.json';

/** JSON with object keys sorted, so that the same value always gives the same bytes. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .filter((k) => o[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

/** sha256 (hex) of a list of records, each as canonical JSON: the same records in the same order give the same hash. */
export function hashRecords(records: Iterable<unknown>): string {
  const h = createHash('sha256');
  for (const r of records) h.update(canonicalJson(r)).update('\n');
  return h.digest('hex');
}

export function hashValue(v: unknown): string {
  return `sha256:${createHash('sha256').update(canonicalJson(v)).digest('hex')}`;
}

async function hashInto(h: ReturnType<typeof createHash>, file: string): Promise<void> {
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
}

export async function hashFile(file: string): Promise<string> {
  const h = createHash('sha256');
  try {
    await hashInto(h, file);
  } catch (err) {
    throw new VlakitError('E_NOT_FOUND', `cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { file });
  }
  return `sha256:${h.digest('hex')}`;
}

/** A Hugging Face checkpoint's weight shards and their index. */
const SHARDS = /^model-\d+-of-\d+\.safetensors$|^model\.safetensors\.index\.json$/;

/**
 * sha256 of a checkpoint's model files (not its optimizer or trainer state): the same weights give the same hash.
 * vlakit checkpoints, Hugging Face checkpoints (with their shards) and adapter directories (adapter_config.json).
 */
export async function hashCheckpoint(dir: string): Promise<string> {
  if (!existsSync(path.join(dir, 'config.json')) && !existsSync(path.join(dir, 'adapter_config.json'))) throw new VlakitError('E_NOT_FOUND', 'not a vlakit checkpoint: no config.json (nor adapter_config.json: not an adapter directory either)', { file: dir });
  const h = createHash('sha256');
  const shards = readdirSync(dir).filter((n) => SHARDS.test(n)).sort();
  for (const name of [...MODEL_FILES, ...shards]) {
    const file = path.join(dir, name);
    if (!existsSync(file)) continue;
    h.update(`${name}\n`);
    await hashInto(h, file);
  }
  return `sha256:${h.digest('hex')}`;
}

function fingerprintOf(id: RunIdentity): string {
  return createHash('sha256')
    .update(canonicalJson({ ...id, init: id.init?.hash ?? null }))
    .digest('hex');
}

const short = (v: ConfigValue | undefined): string => {
  if (v === undefined || v === null) return '(none)';
  if (typeof v === 'string' && /^(sha256:)?[0-9a-f]{64}$/.test(v)) return v.replace(/^sha256:/, '').slice(0, 12);
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
};

/** How run `a` differs from `b`, one phrase per difference, `a`'s value first; empty when they are the same run. */
export function identityDifferences(a: RunIdentity, b: RunIdentity): string[] {
  const out: string[] = [];
  if (a.kind !== b.kind) out.push(`it is a ${a.kind} run, not ${b.kind}`);
  if (a.data !== b.data) out.push(`the training data differ (hash ${short(a.data)} vs ${short(b.data)})`);
  if ((a.init?.hash ?? null) !== (b.init?.hash ?? null)) {
    const side = (i: RunIdentity['init']) => (i ? `${i.path} (hash ${short(i.hash)})` : '(none)');
    out.push(`the --init checkpoint differs: ${side(a.init)} vs ${side(b.init)}`);
  }
  const modeText = { lora: 'LoRA fine-tuning', full: 'full fine-tuning', frozen: 'the head alone over a frozen backbone' } as const;
  if (a.mode !== b.mode) out.push(`${modeText[a.mode]} vs ${modeText[b.mode]}`);
  if (a.seed !== b.seed) out.push(`--seed ${a.seed} vs ${b.seed}`);
  const keys = [...new Set([...Object.keys(a.config), ...Object.keys(b.config)])];
  for (const k of keys) if ((a.config[k] ?? null) !== (b.config[k] ?? null)) out.push(`--${k} ${short(a.config[k])} vs ${short(b.config[k])}`);
  return out;
}

const within = (inner: string, outer: string) => inner === outer || inner.startsWith(`${outer}${path.sep}`);

/** Checkpoint directories of a run directory, by step. */
export function checkpointSteps(dir: string): number[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .map((n) => /^checkpoint-(\d+)$/.exec(n))
    .filter((m): m is RegExpExecArray => !!m)
    .map((m) => Number(m[1]))
    .sort((a, b) => a - b);
}

/** The checkpoint-<step> directory with the highest step in `dir`. */
export function latestCheckpoint(dir: string): string | undefined {
  const steps = checkpointSteps(dir);
  return steps.length ? path.join(dir, `checkpoint-${steps[steps.length - 1]}`) : undefined;
}

export interface OpenRunOptions {
  /** Continue the run in the directory from its latest checkpoint. */
  resume?: boolean;
  /** Replace whatever the directory holds (once the new run has a checkpoint or finishes). */
  overwrite?: boolean;
  /** Input files (training data and the like) that the directory must not be or contain. */
  inputs?: string[];
}

/**
 * The run directory of one training run: opened (refusing another run's directory), checkpoints saved into it,
 * metrics appended, and finalized with the final model.
 * @example const run = await RunDir.open('runs/sft', identity, { overwrite: true }); ...; await run.finalize(step, fill)
 */
export class RunDir {
  /** Where files are written now: a temporary sibling until a replacing run has something to show, then `dir`. */
  private at: string;
  private pending: boolean;
  private file: RunFile;

  private constructor(
    /** The directory the user named. */
    readonly dir: string,
    readonly fingerprint: string,
    file: RunFile,
    at: string,
    /** The checkpoint to continue from (with `resume`). */
    readonly resumeFrom: string | undefined,
    /** Whether this run made `dir` (so that a failure with nothing to show can take it away again). */
    private readonly made = false,
  ) {
    this.file = file;
    this.at = at;
    this.pending = at !== dir;
  }

  /** Opens `dir` for the run `identity`: checks what is there against the options, and prepares it. */
  static async open(dir: string, identity: RunIdentity, o: OpenRunOptions = {}): Promise<RunDir> {
    if (o.resume && o.overwrite) throw new VlakitError('E_USAGE', '--resume continues the run in -o and --overwrite replaces it: pass one of them');
    const real = realPathOf(dir);
    for (const input of o.inputs ?? []) {
      if (input === '-' || !input) continue;
      if (within(realPathOf(input), real)) throw new VlakitError('E_USAGE', `-o ${dir} is or contains the input ${input}: the run would write over its own data; choose another -o`);
    }
    if (identity.init && within(realPathOf(identity.init.path), real)) throw new VlakitError('E_USAGE', `-o ${dir} is or contains the --init checkpoint ${identity.init.path}: the run would replace the model it starts from; choose another -o`);
    cleanStale(dir);
    const fingerprint = fingerprintOf(identity);
    const fresh: RunFile = { format: 'vlakit-run/1', fingerprint, identity, created: new Date().toISOString(), finished: null };
    let entries: string[] = [];
    if (existsSync(dir)) {
      if (!statSync(dir).isDirectory()) throw new VlakitError('E_USAGE', `-o ${dir} is a file, not a run directory`);
      entries = readdirSync(dir).filter((n) => !isOwnTemp(n));
    }
    const runFile = path.join(dir, RUN_FILE);
    if (o.resume) {
      if (!entries.length) throw new VlakitError('E_NOT_FOUND', 'nothing to resume: the directory holds no run', { file: dir });
      if (!existsSync(runFile)) throw new VlakitError('E_USAGE', `--resume: ${dir} holds no ${RUN_FILE} (${describeEntries(entries)}), so nothing says which run it is; start a new run with --overwrite`);
      const have = readJsonFile(runFile, RunFileSchema, { what: 'run file' });
      const diff = identityDifferences(have.identity, identity);
      if (diff.length || have.fingerprint !== fingerprint) {
        throw new VlakitError('E_USAGE', `--resume: the run in ${dir} was started with other inputs (the run's vs this command's): ${diff.join(', ') || 'its fingerprint differs'}; start a new run elsewhere, or replace it with --overwrite`);
      }
      if (have.finished !== null) throw new VlakitError('E_USAGE', `--resume: the run in ${dir} finished at step ${have.finished}; nothing to resume (--overwrite runs it again)`);
      const from = latestCheckpoint(dir);
      if (!from) throw new VlakitError('E_NOT_FOUND', 'nothing to resume: the run has no checkpoint-* directory yet (--save-every N writes them)', { file: dir });
      const run = new RunDir(dir, fingerprint, have, dir, from);
      await run.truncateMetrics(run.readState(TrainerStateBase).step);
      return run;
    }
    if (entries.length && !o.overwrite) {
      let what = `files (${describeEntries(entries)})`;
      let hint = '';
      if (existsSync(runFile)) {
        const have = readJsonFile(runFile, RunFileSchema, { what: 'run file' });
        const steps = checkpointSteps(dir);
        const diff = identityDifferences(have.identity, identity);
        what = `a ${have.identity.kind} run (${have.finished !== null ? `finished at step ${have.finished}` : 'unfinished'}, ${steps.length} checkpoint(s)${steps.length ? ` up to step ${steps[steps.length - 1]}` : ''}, started ${have.created})`;
        hint = diff.length ? `; it differs from this one: ${diff.join(', ')}` : '; it has the same data, settings and seed as this one';
      } else if (entries.includes(STATE_FILE) || checkpointSteps(dir).length) {
        what = `a run without ${RUN_FILE} (from an older vlakit)`;
      }
      throw new VlakitError('E_USAGE', `-o ${dir} already holds ${what}${hint}; pass --resume to continue it or --overwrite to replace it`);
    }
    if (entries.length) {
      // --overwrite: the new run lives beside the old one until it has something to show
      const tmp = tempNameFor(path.resolve(dir));
      trackTemporary(tmp);
      await fsp.mkdir(tmp);
      await writeFileAtomic(path.join(tmp, RUN_FILE), `${JSON.stringify(fresh, null, 2)}\n`);
      return new RunDir(dir, fingerprint, fresh, tmp, undefined);
    }
    const made = !existsSync(dir);
    await fsp.mkdir(dir, { recursive: true });
    await writeFileAtomic(runFile, `${JSON.stringify(fresh, null, 2)}\n`);
    return new RunDir(dir, fingerprint, fresh, dir, undefined, made);
  }

  /** Where the run's files are now (a temporary sibling of `dir` until a replacing run has a checkpoint). */
  get path(): string {
    return this.at;
  }

  /** The latest checkpoint of this run. */
  latest(): string | undefined {
    return latestCheckpoint(this.at);
  }

  /** The trainer state of the checkpoint to resume from, validated, and checked to belong to this run. */
  readState<S extends typeof TrainerStateBase>(schema: S): z.output<S> {
    if (!this.resumeFrom) throw new VlakitError('E_USAGE', 'not resuming: no trainer state to read');
    const file = path.join(this.resumeFrom, STATE_FILE);
    const state = readJsonFile(file, schema, { what: 'trainer state' });
    if (state.run !== this.fingerprint) throw new VlakitError('E_USAGE', `--resume: ${path.basename(this.resumeFrom)} belongs to another run than ${RUN_FILE} describes (run ${short(state.run)} vs ${short(this.fingerprint)}); replace the directory with --overwrite`, { file });
    return state;
  }

  async appendMetrics(m: Record<string, unknown>): Promise<void> {
    await fsp.appendFile(path.join(this.at, METRICS_FILE), `${JSON.stringify(m)}\n`);
  }

  /** Writes `checkpoint-<step>` whole (`fill` writes its files into a temporary directory). */
  async save(step: number, fill: (dir: string) => Promise<void>): Promise<void> {
    await writeOutputDir(path.join(this.at, `checkpoint-${step}`), fill, { overwrite: true });
    await this.settle();
  }

  /**
   * Writes the final model into the run directory: `fill` writes the files into a temporary subdirectory; they are
   * renamed into place with config.json last, model files of another kind (adapters of a LoRA run) are removed, and
   * run.json records the finished step.
   */
  async finalize(step: number, fill: (dir: string) => Promise<void>): Promise<void> {
    const tmp = tempNameFor(path.join(this.at, FINAL)); // .final.tmp-<pid>-<n>
    trackTemporary(tmp);
    await fsp.mkdir(tmp);
    try {
      await fill(tmp);
      const names = readdirSync(tmp);
      for (const stale of MODEL_FILES) if (!names.includes(stale)) await fsp.rm(path.join(this.at, stale), { force: true });
      const ordered = [...names.filter((n) => n !== 'config.json'), ...names.filter((n) => n === 'config.json')];
      for (const n of ordered) await fsp.rename(path.join(tmp, n), path.join(this.at, n));
    } finally {
      await fsp.rm(tmp, { recursive: true, force: true });
      untrackTemporary(tmp);
    }
    this.file = { ...this.file, finished: step };
    await writeFileAtomic(path.join(this.at, RUN_FILE), `${JSON.stringify(this.file, null, 2)}\n`, REPLACE);
    await this.settle();
  }

  /**
   * After a failure: a run with nothing to show (no checkpoint) is removed, so the directory is as it was before (a
   * replacing run's temporary sibling goes, and the old run stays); a run with a checkpoint stays, to be resumed.
   */
  async abandon(): Promise<void> {
    if (this.pending) {
      await fsp.rm(this.at, { recursive: true, force: true });
      untrackTemporary(this.at);
      return;
    }
    if (this.resumeFrom || this.file.finished !== null || checkpointSteps(this.at).length) return;
    if (this.made) await fsp.rm(this.at, { recursive: true, force: true });
    else for (const f of [RUN_FILE, METRICS_FILE]) await fsp.rm(path.join(this.at, f), { force: true });
  }

  /** A replacing run that has something to show takes the directory's place. */
  private async settle(): Promise<void> {
    if (!this.pending) return;
    // absolute paths: `-o .` names the working directory, which this replaces
    const target = path.resolve(this.dir);
    await swapDirIn(this.at, target, { overwrite: true });
    this.at = target;
    this.pending = false;
  }

  /** On resume: metrics of steps after the checkpoint (and a line cut by a kill) are dropped; they are run again. */
  private async truncateMetrics(step: number): Promise<void> {
    const file = path.join(this.at, METRICS_FILE);
    if (!existsSync(file)) return;
    const text = await fsp.readFile(file, 'utf8');
    const keep = text.split('\n').filter((l) => {
      try {
        const s = (JSON.parse(l) as { step?: unknown }).step;
        return typeof s === 'number' && s <= step;
      } catch {
        return false;
      }
    });
    await writeFileAtomic(file, keep.map((l) => `${l}\n`).join(''), REPLACE);
  }
}

/** The staging directory of the final model inside the run directory, named as io/outputs.ts names temporaries. */
const FINAL = 'final';
/** Temporaries inside a run directory (checkpoints and the final model being written): `.NAME.(tmp|old)-<pid>-<n>`. */
const INNER_TEMP = /^\.(checkpoint-\d+|final)\.(?:tmp|old)-\d+-\d+$/;
const isOwnTemp = (name: string) => INNER_TEMP.test(name);

function describeEntries(entries: string[]): string {
  const shown = entries.slice(0, 4).join(', ');
  return `${entries.length} entr${entries.length === 1 ? 'y' : 'ies'}: ${shown}${entries.length > 4 ? ', ...' : ''}`;
}

/**
 * Leftovers of runs that were killed (SIGKILL, or a signal that did not let them unwind) are cleaned with
 * io/outputs.ts's rules: a replacing run's temporary sibling is removed, an old directory set aside by a replacement
 * cut between its two renames is put back (or removed when the new one made it into place), and temporaries inside
 * the directory are removed.
 */
function cleanStale(dir: string): void {
  const target = path.resolve(dir);
  removeStaleTemporaries(target);
  if (!existsSync(target) || !statSync(target).isDirectory()) return;
  const names = new Set(readdirSync(target).map((n) => INNER_TEMP.exec(n)?.[1]).filter((n): n is string => !!n));
  for (const name of names) removeStaleTemporaries(path.join(target, name));
}
