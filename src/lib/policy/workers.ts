/**
 * Rollout episodes in worker processes (`rollout --workers N`): each worker is a node child process with its own
 * env and policy engine, built from the same flags. The parent hands out episode indices one at a time, in
 * increasing order, to whichever worker is free, and yields the results in index order, so that the records are
 * those of a serial run: episode i has family i mod |families| and seed subSeed(seed, i) wherever it runs.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { type ErrorCode, type ErrorContext, VlakitError } from '../errors.js';
import type { EpisodeResult } from '../env/index.js';

/** The safety filter's counts, summed over workers. */
export type Counts = Record<string, number>;

/** Messages from a worker. */
export type WorkerMessage =
  | { type: 'ready' }
  | { type: 'step' }
  | { type: 'episode'; result: EpisodeResult }
  | { type: 'done'; counts?: Counts }
  | { type: 'error'; error: { code?: ErrorCode; detail: string; context?: ErrorContext } };

/** Messages to a worker: its setup once, then one episode index at a time, and `stop`. */
export type ParentMessage = { type: 'setup'; setup: unknown } | { type: 'run'; index: number } | { type: 'stop' };

export interface WorkerPoolOptions {
  /** The worker's entry script (a module that calls serveRolloutWorker). */
  script: URL | string;
  workers: number;
  /** What each worker builds its env, policy and run from (plain JSON). */
  setup: unknown;
  /** The episode indices to run, in the order the serial run runs them. */
  indices: readonly number[];
  signal?: AbortSignal;
  /** Called for every env step of any worker (progress). */
  onStep?: () => void;
  /** At most this many episodes run or wait ahead of the next one to yield (default 4 x workers). */
  window?: number;
}

export interface WorkerPoolResult {
  /** Summed over the workers that reported them. */
  counts?: Counts;
}

function errorOf(e: Extract<WorkerMessage, { type: 'error' }>['error']): Error {
  return new VlakitError(e.code ?? 'E_ENV', e.detail, e.context ?? {});
}

/**
 * Runs the episodes in `workers` processes and yields them in index order; `done.counts` holds the summed safety
 * counts once the generator has finished.
 * @example for await (const ep of runInWorkers({ script, workers: 4, setup: flags, indices: [0, 1, 2, 3, 4, 5] }, done)) ...
 */
export async function* runInWorkers(opts: WorkerPoolOptions, done: WorkerPoolResult = {}): AsyncGenerator<EpisodeResult> {
  const n = Math.max(1, Math.min(opts.workers, opts.indices.length));
  const window = opts.window ?? 4 * n;
  const children: ChildProcess[] = [];
  const results = new Map<number, EpisodeResult>();
  let failure: Error | undefined;
  let handed = 0; // indices[0 .. handed) were handed out
  let yielded = 0; // indices[0 .. yielded) were yielded
  let finished = 0;
  let wake: (() => void) | undefined;
  const notify = (): void => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const idle: ChildProcess[] = [];
  const dispatch = (): void => {
    while (idle.length && handed < opts.indices.length && handed - yielded < window) idle.shift()!.send({ type: 'run', index: opts.indices[handed++] } satisfies ParentMessage);
    if (handed >= opts.indices.length) for (const c of idle.splice(0)) c.send({ type: 'stop' } satisfies ParentMessage);
  };
  const fail = (err: Error): void => {
    failure ??= err;
    notify();
  };
  const onAbort = (): void => fail(opts.signal!.reason instanceof Error ? opts.signal!.reason : new Error('aborted'));
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    for (let w = 0; w < n; w++) {
      const child = fork(opts.script, [], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'], serialization: 'advanced' });
      children.push(child);
      let ended = false;
      child.on('message', (m: WorkerMessage) => {
        switch (m.type) {
          case 'ready':
            idle.push(child);
            dispatch();
            break;
          case 'step':
            opts.onStep?.();
            break;
          case 'episode':
            results.set(m.result.index, m.result);
            idle.push(child);
            dispatch();
            notify();
            break;
          case 'done':
            ended = true;
            finished += 1;
            if (m.counts) {
              done.counts ??= {};
              for (const [k, v] of Object.entries(m.counts)) done.counts[k] = (done.counts[k] ?? 0) + v;
            }
            notify();
            break;
          case 'error':
            ended = true;
            fail(errorOf(m.error));
            break;
        }
      });
      child.on('error', (err) => fail(new VlakitError('E_ENV', `rollout worker ${w}: ${err.message}`)));
      child.on('exit', (code, sig) => {
        if (!ended) fail(new VlakitError('E_ENV', `rollout worker ${w} stopped (${sig ?? `exit code ${code}`}) before it finished its episodes`));
      });
      child.send({ type: 'setup', setup: opts.setup } satisfies ParentMessage);
    }
    while (yielded < opts.indices.length) {
      if (failure) throw failure;
      const r = results.get(opts.indices[yielded]);
      if (r) {
        results.delete(opts.indices[yielded]);
        yielded += 1;
        dispatch();
        yield r;
        continue;
      }
      await new Promise<void>((resolve) => (wake = resolve));
    }
    while (finished < n) {
      if (failure) throw failure;
      await new Promise<void>((resolve) => (wake = resolve));
    }
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill();
  }
}
