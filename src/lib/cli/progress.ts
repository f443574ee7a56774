/**
 * Progress on stderr, in one of three forms chosen once per command:
 * - a terminal (stderr a TTY, TERM not dumb): the live ink view (progress-view.tsx), redrawn in place, erased at the end;
 * - no terminal (a pipe, a file, CI, nohup): a plain line every --log-every seconds (progress-format.ts's logLine);
 * - --quiet or --json: nothing.
 * Events (an evaluation, a checkpoint) are lines of their own in both visible forms.
 */
import { decimal } from './flags.js';
import { baseline, logLine, timing, type Baseline, type ProgressState } from './progress-format.js';

export type { ProgressState } from './progress-format.js';

export interface Progress {
  /** Merges new figures into the state (cheap: the view redraws at most 10 times a second). */
  update(s: Partial<ProgressState>): void;
  /** A line of its own, kept above the live view or written at once in the log (an evaluation's result). */
  event(line: string): void;
  /** Ends the view: the live view is erased, so the command's summary replaces it. Safe to call twice. */
  stop(): void;
}

const NOOP: Progress = { update() {}, event() {}, stop() {} };

export const DEFAULT_LOG_EVERY = 10;

/** `--log-every SECONDS` of the long commands. */
export const logEveryFlag = decimal({ description: 'without a terminal on stderr: a progress line every N seconds (0: at every update)', default: String(DEFAULT_LOG_EVERY), min: 0, max: 86_400, helpValue: 'SECONDS' });

export interface ProgressOptions {
  /** Seconds between log lines without a terminal (default 10; 0: a line at every update). */
  logEvery?: number | string;
  /** What the view shows before the first update (the unit, the total): not counted as an update. */
  initial?: Partial<ProgressState>;
  /** Tests: the clock (ms), the stream and whether it is a terminal. */
  now?: () => number;
  stream?: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  env?: NodeJS.ProcessEnv;
  /** Tests: no background timer (the log's heartbeat). */
  timer?: boolean;
}

/** True when the live view can draw: a terminal that moves the cursor, outside CI (where ink draws only the last frame). */
export function isLiveTerminal(stream: { isTTY?: boolean }, env: NodeJS.ProcessEnv): boolean {
  const ci = (env.CI !== undefined && env.CI !== '0' && env.CI !== 'false') || env.CONTINUOUS_INTEGRATION !== undefined;
  return stream.isTTY === true && env.TERM !== 'dumb' && !ci;
}

/** Colour unless NO_COLOR is set (any value) or the terminal is dumb. */
export function useColor(env: NodeJS.ProcessEnv): boolean {
  return env.NO_COLOR === undefined && env.TERM !== 'dumb';
}

/**
 * The plain log without a terminal: a line at the first update `every` seconds after the previous line (or the
 * start), and from a heartbeat timer when updates are slower than that, so a slow step still shows the clock.
 */
export class LogProgress implements Progress {
  private state: ProgressState;
  private readonly start: number;
  private base: Baseline | undefined;
  private last: number;
  private changed = false;
  private stopped = false;
  private readonly timer: NodeJS.Timeout | undefined;

  constructor(
    label: string,
    private readonly every: number,
    private readonly now: () => number,
    private readonly write: (line: string) => void,
    heartbeat = true,
    initial: Partial<ProgressState> = {},
  ) {
    this.state = { label, records: 0, ...initial };
    this.start = now();
    this.last = this.start;
    if (heartbeat && every > 0) {
      // checked each second: a due line is at most a second late
      this.timer = setInterval(() => this.tick(), Math.min(1000, Math.max(100, every * 500)));
      this.timer.unref();
    }
  }

  update(s: Partial<ProgressState>): void {
    if (this.stopped) return;
    const now = this.now();
    // the rate counts from the first update: setup time (loading a model) and a resumed run's earlier steps are not in it
    this.base ??= baseline(s, now);
    this.state = { ...this.state, ...s };
    this.changed = true;
    this.tick();
  }

  /** Writes the line when one is due (none before the first update: there is nothing to tell yet). */
  tick(): void {
    if (this.stopped || !this.base) return;
    const now = this.now();
    const every = this.every * 1000;
    if (now - this.last < every) return;
    if (!this.changed && every === 0) return;
    // on the grid of the start (10 s, 20 s, 30 s...): a line written late (a long step blocks the timer) does not
    // push the next ones later
    this.last = every === 0 ? now : this.last + every * Math.floor((now - this.last) / every);
    this.changed = false;
    this.write(logLine(this.state, timing(this.state, this.start, this.base, now)));
  }

  event(line: string): void {
    if (this.stopped) return;
    this.write(`vlakit ${this.state.label}: ${line}`);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
  }
}

/**
 * Starts the progress of a command: the live view on a terminal, the plain log otherwise; nothing when not
 * `enabled` (--quiet, --json).
 */
export async function startProgress(label: string, enabled: boolean, o: ProgressOptions = {}): Promise<Progress> {
  if (!enabled) return NOOP;
  const stream = o.stream ?? process.stderr;
  const env = o.env ?? process.env;
  const now = o.now ?? (() => performance.now());
  if (isLiveTerminal(stream, env)) {
    const { renderProgress } = await import('./progress-view.js');
    // data on a stdout that is the same terminal would tear the view: it goes above it (tests pass their own stream)
    const alsoCapture = !o.stream && process.stdout.isTTY ? process.stdout : undefined;
    return renderProgress(label, { stream, color: useColor(env), now, alsoCapture, initial: o.initial });
  }
  const every = typeof o.logEvery === 'string' ? Number(o.logEvery) : (o.logEvery ?? DEFAULT_LOG_EVERY);
  return new LogProgress(label, Number.isFinite(every) && every >= 0 ? every : DEFAULT_LOG_EVERY, now, (line) => stream.write(`${line}\n`), o.timer ?? true, o.initial);
}
