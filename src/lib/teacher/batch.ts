/**
 * `annotate --batch`: the requests a run would send go to the provider's batch service (about half the online
 * price), then the run is made again with the jobs' answers standing in for online calls.
 *
 * 1. collect: the annotation runs with a teacher that answers nothing and writes each request it is asked (and that
 *    neither the cache nor an earlier job holds) as a line of a job input file, split at the service's limits;
 * 2. submit: each input file is uploaded and its job created; the job id and the keys it holds are appended to
 *    `batch/jobs.jsonl` in the cache directory (fsync'd) before anything else happens;
 * 3. wait: every job not yet ended is polled, the interval growing 1.5x a round up to a cap; an ended job's
 *    results are downloaded to `batch/LABEL.results.jsonl` and the job marked ended;
 * 4. the annotation runs again with a teacher that answers from the results (read by the online path's reader, so
 *    refusals and truncations count as they do online), caches usable answers as online answers are, and asks the
 *    teacher online for what no job answered (failed lines, jobs that expired, repairs of unusable answers).
 *
 * A killed run resumes: jobs in `jobs.jsonl` are polled again, never submitted again, and their keys are not
 * collected again.
 */
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, statSync, writeFileSync, writeSync } from 'node:fs';
import path from 'node:path';
import { VlakitError } from '../errors.js';
import type { StepRecord } from '../io/records.js';
import { type AnnotateOptions, annotate, requestKey } from './annotate.js';
import type { BatchTarget } from './backends.js';
import { type BatchResult, type BatchService, geminiBatch, openaiBatch } from './batch-services.js';
import { type RetryPolicy, sleep } from './http.js';
import { TeacherItemError } from './outcome.js';
import type { Teacher, TeacherAnswer, TeacherRequest } from './types.js';

export interface BatchOptions {
  /** The teacher's cache directory: jobs live in its `batch/` folder. */
  dir: string;
  /** First poll interval, ms (default 30 s); it grows 1.5x a round up to `maxPollMs` (default 10 min). */
  pollMs?: number;
  maxPollMs?: number;
  /** Limits of one job below the service's own (tests). */
  maxRequests?: number;
  maxBytes?: number;
  retry?: RetryPolicy;
  signal?: AbortSignal;
  onNote?: (message: string) => void;
}

export interface BatchSummary {
  /** Requests written to new jobs in this run, and the jobs. */
  submitted: number;
  jobs: number;
  /** Jobs from earlier runs picked up again. */
  resumed: number;
  /** Results with an answer, and lines that came back as errors (asked online). */
  answered: number;
  failed: number;
}

type Entry =
  | { event: 'submitted'; label: string; service: string; id: string; keys: string[]; at: string }
  | { event: 'ended'; id: string; detail: string; results: string; at: string };

interface Job {
  label: string;
  id: string;
  keys: string[];
  ended?: { detail: string; results: string };
}

/** Whether `teacher` can run its requests as batch jobs (gemini: and openai: teachers). */
export function batchTargetOf(teacher: Teacher): BatchTarget | undefined {
  const t = teacher as Teacher & { batchTarget?: () => BatchTarget };
  return typeof t.batchTarget === 'function' ? t.batchTarget() : undefined;
}

/** The job log in `dir/batch/jobs.jsonl`: appended and fsync'd line by line; a torn last line is ignored. */
class JobLog {
  readonly jobs = new Map<string, Job>();
  readonly folder: string;
  private readonly file: string;

  constructor(dir: string) {
    this.folder = path.join(dir, 'batch');
    mkdirSync(this.folder, { recursive: true });
    this.file = path.join(this.folder, 'jobs.jsonl');
    if (!existsSync(this.file)) return;
    for (const line of readFileSync(this.file, 'utf8').split('\n')) {
      let e: Entry;
      try {
        e = JSON.parse(line) as Entry;
      } catch {
        continue;
      }
      if (e.event === 'submitted') this.jobs.set(e.id, { label: e.label, id: e.id, keys: e.keys });
      else if (e.event === 'ended' && this.jobs.has(e.id)) this.jobs.get(e.id)!.ended = { detail: e.detail, results: e.results };
    }
  }

  append(e: Entry): void {
    const fd = openSync(this.file, 'a');
    try {
      writeSync(fd, `${JSON.stringify(e)}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    if (e.event === 'submitted') this.jobs.set(e.id, { label: e.label, id: e.id, keys: e.keys });
    else this.jobs.get(e.id)!.ended = { detail: e.detail, results: e.results };
  }
}

/** Input files being written: a new part starts where the next line would pass the request or byte limit. */
class Parts {
  readonly done: { file: string; keys: string[] }[] = [];
  private fd: number | undefined;
  private file = '';
  private keys: string[] = [];
  private bytes = 0;

  constructor(
    private readonly folder: string,
    private readonly stamp: string,
    private readonly maxRequests: number,
    private readonly maxBytes: number,
  ) {}

  add(key: string, line: string): void {
    const n = Buffer.byteLength(line) + 1;
    if (n > this.maxBytes) throw new VlakitError('E_USAGE', `one batch request is ${n} bytes, more than a job may hold (${this.maxBytes}); annotate online (without --batch) or send fewer or smaller images`);
    if (this.fd !== undefined && (this.keys.length >= this.maxRequests || this.bytes + n > this.maxBytes)) this.close();
    if (this.fd === undefined) {
      this.file = path.join(this.folder, `${this.stamp}-${this.done.length + 1}.input.jsonl`);
      this.fd = openSync(this.file, 'w');
      this.keys = [];
      this.bytes = 0;
    }
    writeSync(this.fd, `${line}\n`);
    this.keys.push(key);
    this.bytes += n;
  }

  close(): void {
    if (this.fd === undefined) return;
    closeSync(this.fd);
    this.fd = undefined;
    this.done.push({ file: this.file, keys: this.keys });
  }
}

/** A teacher that answers nothing: each request it has not seen is written to a job input file. */
function collector(teacher: Teacher, target: BatchTarget, service: BatchService, skip: (key: string) => boolean, parts: Parts): Teacher {
  const seen = new Set<string>();
  return {
    id: teacher.id,
    local: false,
    readsContext: teacher.readsContext,
    maxTokens: teacher.maxTokens,
    cacheIdentity: (req) => teacher.cacheIdentity?.(req) ?? {},
    limits: teacher.limits && ((req, data) => teacher.limits!(req, data)),
    async complete(req: TeacherRequest): Promise<TeacherAnswer> {
      const key = requestKey(teacher, req);
      if (!seen.has(key) && !skip(key)) {
        seen.add(key);
        parts.add(key, service.line(key, target.body(req)));
      }
      throw new TeacherItemError('deferred', 'asked in a batch job');
    },
  };
}

/** A teacher that answers from the jobs' results, each once, and asks `teacher` online for anything else. */
function answering(teacher: Teacher, target: BatchTarget, results: Map<string, BatchResult>): Teacher {
  const t: Teacher = {
    id: teacher.id,
    local: teacher.local,
    readsContext: teacher.readsContext,
    maxTokens: teacher.maxTokens,
    cacheIdentity: teacher.cacheIdentity && ((req) => teacher.cacheIdentity!(req)),
    limits: teacher.limits && ((req, data) => teacher.limits!(req, data)),
    close: teacher.close && (() => teacher.close!()),
    async complete(req, signal) {
      const key = requestKey(teacher, req);
      const r = results.get(key);
      // used once: a re-ask of the same request (an empty answer asked again) goes online
      results.delete(key);
      if (!r || !('body' in r)) return teacher.complete(req, signal);
      try {
        const a = target.read(r.body);
        return { ...a, usage: { ...a.usage, batch: true } };
      } catch (err) {
        if (!(err instanceof TeacherItemError)) throw err;
        throw new TeacherItemError(err.reason, `${err.detail} (batch job)`, { ...err.usage, batch: true }, 0, err.context.file);
      }
    },
  };
  return t;
}

/**
 * Runs the batch phase of `annotate --batch` over `episodes` (a first reading of the input) and returns the teacher
 * for the second reading: it answers from the jobs and asks online for the rest.
 * @example const { teacher } = await runBatch(readEpisodes(), { kind: 'reasoning', teacher, cache }, { dir: cacheDir });
 */
export async function runBatch(episodes: AsyncIterable<StepRecord[]>, opts: AnnotateOptions, batch: BatchOptions): Promise<{ teacher: Teacher; summary: BatchSummary }> {
  const target = batchTargetOf(opts.teacher);
  if (!target) throw new VlakitError('E_USAGE', `--batch needs a gemini: or openai: teacher, not ${opts.teacher.id}`);
  if (!opts.cache) throw new VlakitError('E_USAGE', '--batch needs the answer cache (the jobs are kept in it): drop --no-cache');
  const service = target.service === 'gemini' ? geminiBatch(target, batch.retry) : openaiBatch(target, batch.retry);
  const note = batch.onNote ?? (() => {});
  const log = new JobLog(batch.dir);
  const pending = new Set<string>();
  for (const j of log.jobs.values()) for (const k of j.keys) pending.add(k);
  const resumed = [...log.jobs.values()].filter((j) => !j.ended).length;

  // 1. collect what neither the cache nor a job holds
  const stamp = `vlakit-${new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '')}-${process.pid}`;
  const parts = new Parts(log.folder, stamp, Math.min(batch.maxRequests ?? Infinity, service.maxRequests), Math.min(batch.maxBytes ?? Infinity, service.maxBytes));
  const teacher = collector(opts.teacher, target, service, (k) => pending.has(k), parts);
  for await (const _ of annotate(episodes, { ...opts, teacher, concurrency: Math.max(opts.concurrency ?? 4, 64), onUsage: undefined })) {
    batch.signal?.throwIfAborted();
  }
  parts.close();

  // 2. submit: each job is logged before the next one is created
  let submitted = 0;
  for (const [i, part] of parts.done.entries()) {
    const label = path.basename(part.file).replace(/\.input\.jsonl$/, '');
    const id = await service.submit(readFileSync(part.file), label, batch.signal);
    log.append({ event: 'submitted', label, service: service.name, id, keys: part.keys, at: new Date().toISOString() });
    submitted += part.keys.length;
    note(`batch: submitted job ${i + 1}/${parts.done.length} (${id}, ${part.keys.length} requests, ${(statSync(part.file).size / 1e6).toFixed(1)} MB)`);
  }
  if (resumed) note(`batch: ${resumed} job(s) from an earlier run picked up again`);

  // 3. wait for every job, downloading each one's results as it ends
  let interval = batch.pollMs ?? 30_000;
  for (;;) {
    const open = [...log.jobs.values()].filter((j) => !j.ended);
    if (!open.length) break;
    for (const j of open) {
      const s = await service.status(j.id, batch.signal);
      if (s.state === 'running') continue;
      const results: BatchResult[] = [];
      for (const f of s.files) results.push(...service.results(await service.download(f, batch.signal)));
      const file = path.join(log.folder, `${j.label}.results.jsonl`);
      writeFileSync(`${file}.tmp`, results.map((r) => JSON.stringify(r)).join('\n') + (results.length ? '\n' : ''));
      renameSync(`${file}.tmp`, file);
      log.append({ event: 'ended', id: j.id, detail: s.detail, results: path.basename(file), at: new Date().toISOString() });
      note(`batch: job ${j.id} ended: ${s.detail}`);
    }
    if ([...log.jobs.values()].every((j) => j.ended)) break;
    const waiting = [...log.jobs.values()].filter((j) => !j.ended).length;
    note(`batch: ${waiting} job(s) running; next poll in ${(interval / 1000).toFixed(interval < 10_000 ? 2 : 0)} s`);
    await sleep(interval, batch.signal);
    interval = Math.min(interval * 1.5, batch.maxPollMs ?? 600_000);
  }

  // 4. the results of every job, for the second reading
  const results = new Map<string, BatchResult>();
  let answered = 0;
  let failed = 0;
  for (const j of log.jobs.values()) {
    const file = path.join(log.folder, j.ended!.results);
    if (!existsSync(file)) continue;
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      if (!line.trim()) continue;
      const r = JSON.parse(line) as BatchResult;
      // only what this run still needs (earlier answers are in the cache already)
      if (opts.cache.get(r.key)) continue;
      results.set(r.key, r);
      if ('body' in r) answered += 1;
      else failed += 1;
    }
  }
  note(`batch: ${answered} answers from batch jobs; ${failed} failed in the jobs and are asked online`);
  return { teacher: answering(opts.teacher, target, results), summary: { submitted, jobs: parts.done.length, resumed, answered, failed } };
}
