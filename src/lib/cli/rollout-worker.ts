/**
 * A `rollout --workers N` worker process (forked by src/lib/policy/workers.ts): builds its own env and policy from
 * the command's flags, then runs the episode indices it is handed, one at a time, and sends each result back.
 */
import { VlakitError } from '../errors.js';
import { type EpisodeResult, SafetyFilter, builtinOf, runEpisodes } from '../env/index.js';
import type { ParentMessage, WorkerMessage } from '../policy/workers.js';
import { type RolloutFlags, openRollout } from './rollout-setup.js';

/** What the parent sends once. */
export interface WorkerSetup {
  flags: RolloutFlags;
  families: string[];
  episodes: number;
  seed: number;
  recordTiming: boolean;
  /** --video: the side of the frames the built-in world renders for each step (sent back with the episode). */
  videoSize?: number;
}

const send = (m: WorkerMessage): Promise<void> => new Promise((resolve) => process.send!(m, undefined, undefined, () => resolve()));

const inbox: ParentMessage[] = [];
let waiting: ((m: ParentMessage) => void) | undefined;
process.on('message', (m: ParentMessage) => {
  if (waiting) {
    const w = waiting;
    waiting = undefined;
    w(m);
  } else inbox.push(m);
});
// the parent went away: nothing is left to do
process.on('disconnect', () => process.exit(1));
const next = (): Promise<ParentMessage> => (inbox.length ? Promise.resolve(inbox.shift()!) : new Promise((resolve) => (waiting = resolve)));

async function main(): Promise<void> {
  const first = await next();
  if (first.type !== 'setup') throw new VlakitError('E_ENV', `rollout worker: expected its setup, got ${first.type}`);
  const setup = first.setup as WorkerSetup;
  const parts = await openRollout(setup.flags);
  try {
    await send({ type: 'ready' });
    let assigned = -1;
    // one generator for the whole run: it skips to each index handed out (they increase), so episode i is run
    // exactly as the serial run runs it
    const size = setup.videoSize;
    // as the serial run captures them: the built-in world renders each frame at the video's size
    const capture = size && builtinOf(parts.env) ? (e: typeof parts.env) => builtinOf(e)?.snapshot(size, size) : undefined;
    const episodes = runEpisodes({
      env: parts.env,
      policy: parts.policy,
      families: setup.families,
      episodes: setup.episodes,
      seed: setup.seed,
      recordTiming: setup.recordTiming,
      capture,
      only: (i) => i === assigned,
      onStep: () => void send({ type: 'step' }),
    });
    for (;;) {
      const m = await next();
      if (m.type !== 'run') break;
      assigned = m.index;
      const r = await episodes.next();
      if (r.done) throw new VlakitError('E_ENV', `rollout worker: episode ${m.index} is past the run's ${setup.episodes} episodes`);
      const result: EpisodeResult = r.value;
      await send({ type: 'episode', result });
    }
    await episodes.return(undefined);
    await send({ type: 'done', counts: parts.env instanceof SafetyFilter ? { ...parts.env.counts } : undefined });
  } finally {
    await parts.close();
  }
}

main().then(
  () => process.disconnect(),
  async (err: unknown) => {
    const e = err instanceof VlakitError ? { code: err.code, detail: err.detail, context: err.context } : { detail: err instanceof Error ? err.message : String(err) };
    await send({ type: 'error', error: e }).catch(() => {});
    process.disconnect();
    process.exitCode = 1;
  },
);
