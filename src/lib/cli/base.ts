/** The base of every vlakit command: shared flags, one way to report errors, exit codes, Ctrl-C, `| head`. */
import { Command, Errors, Flags } from '@oclif/core';
import { EXIT, VlakitError, isVlakitError } from '../errors.js';
import { type OutputOptions, removeTemporariesSync } from '../io/outputs.js';

/** The signals that end a command, with the exit code a shell gives them (128 + the signal number). */
const SIGNALS = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 } as const;
type Signal = keyof typeof SIGNALS;
/** Time the command gets to unwind after a signal (stop, remove its temporaries) before it is ended. */
const UNWIND_MS = 3000;

/** Parses sizes such as `256MB`, `64KiB`, `1G` into bytes. */
export function parseSize(s: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)$/i.exec(s.trim());
  if (!m) throw new VlakitError('E_USAGE', `invalid size "${s}"; expected e.g. 256MB, 64KiB or 1G`);
  const pow = ' kmgt'.indexOf(m[2].toLowerCase() || ' ');
  const base = m[3].toLowerCase().startsWith('i') ? 1024 : 1000;
  return Math.round(Number(m[1]) * base ** pow);
}

/** A number flag given as text (fractions, exponents), checked: `--name must be a number >= min`. */
export function parseNumber(s: string, name: string, min = -Infinity): number {
  const v = Number(s);
  if (s.trim() === '' || !Number.isFinite(v) || v < min) throw new VlakitError('E_USAGE', `--${name} must be a number${min > -Infinity ? ` >= ${min}` : ''}, got "${s}"`);
  return v;
}

export const sharedFlags = {
  output: Flags.string({ char: 'o', description: 'output path ("-" or absent: stdout)', helpValue: 'PATH' }),
  overwrite: Flags.boolean({ description: 'replace an existing output (atomically, once the new one is complete); never an input' }),
  quiet: Flags.boolean({ char: 'q', description: 'no progress view and no warnings on stderr' }),
  json: Flags.boolean({ description: 'print the summary as JSON' }),
  'skip-corrupt': Flags.boolean({ description: 'skip corrupt records (and unparseable lines), count them, exit 3' }),
  verify: Flags.boolean({ description: 'verify TFRecord CRCs', default: true, allowNo: true }),
  split: Flags.string({ description: 'split of an RLDS dataset directory', default: 'train' }),
};

export abstract class VlakitCommand extends Command {
  protected readonly abort = new AbortController();
  /** A server: a signal is its normal stop (exit 0 once it has closed), not an interruption. */
  protected readonly signalIsStop: boolean = false;
  private signalled: Signal | undefined;

  public async init(): Promise<void> {
    await super.init();
    for (const sig of Object.keys(SIGNALS) as Signal[]) process.on(sig, () => this.onSignal(sig));
    // Whatever way the process ends, no temporary output is left behind (a SIGKILL's are removed by the next run).
    process.once('exit', () => removeTemporariesSync());
    process.stdout.on('error', (err: NodeJS.ErrnoException) => {
      // The reader went away (`| head`): that is success, not an error.
      if (err.code === 'EPIPE') process.exit(EXIT.ok);
    });
  }

  /**
   * SIGINT, SIGTERM, SIGHUP: abort the command (its writers remove their temporaries and keep no output), exit with
   * 128 + the signal number. A command that does not unwind in time (blocked on stdin), or a second signal, ends
   * the process at once; the exit handler removes what is left.
   */
  private onSignal(sig: Signal): void {
    const code = SIGNALS[sig];
    const end = (): void => {
      this.interrupted();
      process.exit(code);
    };
    if (this.signalled) return end();
    this.signalled = sig;
    process.stderr.on('error', () => {}); // after SIGHUP the terminal may be gone: a failed note must not crash the cleanup
    if (this.signalIsStop) {
      this.abort.abort(new VlakitError('E_IO', `stopped by ${sig}`));
      return;
    }
    process.exitCode = code;
    this.abort.abort(new VlakitError('E_IO', `interrupted by ${sig}`));
    setTimeout(end, UNWIND_MS).unref();
  }

  private told = false;
  private interrupted(): void {
    if (this.told) return;
    this.told = true;
    removeTemporariesSync();
    try {
      process.stderr.write(`vlakit ${this.id}: interrupted by ${this.signalled ?? 'a signal'}; partial outputs were removed\n`);
    } catch {
      // no stderr any more (a hung-up terminal): the cleanup above is what matters
    }
  }

  /** How this command's outputs are written: --overwrite, its inputs (never written over), its AbortSignal, notes. */
  protected outputOptions(flags: { overwrite?: boolean; quiet?: boolean }, inputs: readonly (string | undefined)[] = [], flag = '-o'): OutputOptions {
    return { overwrite: flags.overwrite, inputs, signal: this.abort.signal, onNote: flags.quiet ? undefined : (m) => this.note(`vlakit ${this.id}: ${m}`), flag };
  }

  /** Writes a line to stderr unless quiet. */
  protected note(msg: string, quiet = false): void {
    if (!quiet) process.stderr.write(`${msg}\n`);
  }

  protected async catch(err: Error & { exitCode?: number }): Promise<void> {
    if ((err as NodeJS.ErrnoException).code === 'EPIPE') {
      process.exitCode = EXIT.ok;
      return;
    }
    if (this.signalled && !this.signalIsStop) {
      this.interrupted();
      process.exitCode = SIGNALS[this.signalled];
      return;
    }
    if (isVlakitError(err)) {
      process.stderr.write(`vlakit ${this.id}: ${err.message}\n`);
      process.exitCode = err.exitCode;
      return;
    }
    if (err instanceof Errors.CLIError && 'parse' in err) {
      process.stderr.write(`vlakit ${this.id}: ${err.message}\n`);
      process.exitCode = EXIT.usage;
      return;
    }
    if (err instanceof Errors.ExitError) throw err;
    process.stderr.write(`vlakit ${this.id}: internal error: ${err.stack ?? err.message}\n`);
    process.exitCode = EXIT.error;
  }
}
