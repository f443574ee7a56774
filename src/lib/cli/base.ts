/** The base of every vlakit command: shared flags, one way to report errors, exit codes, Ctrl-C, `| head`. */
import { Command, Errors, Flags, type Interfaces } from '@oclif/core';
import { EXIT, VlakitError, isVlakitError } from '../errors.js';
import { type FlagRule, checkRules, softLimitWarnings } from './flags.js';
import { type OutputOptions, removeTemporariesSync } from '../io/outputs.js';

/** The signals that end a command, with the exit code a shell gives them (128 + the signal number). */
const SIGNALS = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 } as const;
type Signal = keyof typeof SIGNALS;
/** Time the command gets to unwind after a signal (stop, remove its temporaries) before it is ended. */
const UNWIND_MS = 3000;

export { parseSize } from './flags.js';

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

// oclif's own (unexported) constraint of parse outputs
type Output = { [name: string]: any };

/** An error thrown by a flag's own parser, as oclif wraps it: the flag's message is the part that matters. */
const FLAG_PARSE = /^Parsing --\S+ \n\t([\s\S]*?)\nSee more help with --help$/;

/** The command this process runs (the last one started, when tests run several in one process). */
let running: VlakitCommand | undefined;
let handlersInstalled = false;

/** Process-wide handlers, installed once however many commands run in the process. */
function installProcessHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  for (const sig of Object.keys(SIGNALS) as Signal[]) process.on(sig, () => running?.onSignal(sig));
  // Whatever way the process ends, no temporary output is left behind (a SIGKILL's are removed by the next run).
  process.once('exit', () => removeTemporariesSync());
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    // The reader went away (`| head`): that is success, not an error.
    if (err.code === 'EPIPE') process.exit(EXIT.ok);
  });
}

export abstract class VlakitCommand extends Command {
  /** Rules between flags (exclusive pairs, mode-only flags), checked right after parsing, before any work. */
  static flagRules: readonly FlagRule[] = [];
  protected readonly abort = new AbortController();
  /** A server: a signal is its normal stop (exit 0 once it has closed), not an interruption. */
  protected readonly signalIsStop: boolean = false;
  private signalled: Signal | undefined;

  /** Parses, then checks the command's flag rules and warns about counts above their soft limit. */
  protected async parse<F extends Output, B extends Output, A extends Output>(
    options?: Interfaces.Input<F, B, A>,
    argv?: string[],
  ): Promise<Interfaces.ParserOutput<F, B, A>> {
    // parsing was attempted even when a flag is refused (oclif warns about commands that never parse, in development)
    this.parsed = true;
    const out = await super.parse(options, argv);
    const flags = out.flags as Record<string, unknown>;
    const meta = (out.metadata?.flags ?? {}) as Record<string, { setFromDefault?: boolean } | undefined>;
    const given = new Set(Object.keys(flags).filter((k) => flags[k] !== undefined && !meta[k]?.setFromDefault));
    const input = { flags, given };
    checkRules((this.constructor as typeof VlakitCommand).flagRules, input);
    for (const w of softLimitWarnings((options?.flags ?? {}) as Record<string, unknown>, input)) this.note(`vlakit ${this.displayName}: warning: ${w}`, flags.quiet === true);
    return out;
  }

  /** The command as typed (`rollout serve`, not oclif's `rollout:serve`). */
  protected get displayName(): string {
    return (this.id ?? 'vlakit').replaceAll(':', ' ');
  }

  public async init(): Promise<void> {
    await super.init();
    running = this;
    installProcessHandlers();
  }

  /**
   * SIGINT, SIGTERM, SIGHUP: abort the command (its writers remove their temporaries and keep no output), exit with
   * 128 + the signal number. A command that does not unwind in time (blocked on stdin), or a second signal, ends
   * the process at once; the exit handler removes what is left.
   */
  onSignal(sig: Signal): void {
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
      process.stderr.write(`vlakit ${this.displayName}: interrupted by ${this.signalled ?? 'a signal'}; partial outputs were removed\n`);
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
    const wrapped = FLAG_PARSE.exec(err.message);
    if (wrapped) {
      // a flag value its parser refused (a range, a size, a number): a usage error, without oclif's wrapping
      process.stderr.write(`vlakit ${this.displayName}: ${wrapped[1]}\n`);
      process.exitCode = EXIT.usage;
      return;
    }
    if (isVlakitError(err)) {
      process.stderr.write(`vlakit ${this.displayName}: ${err.message}\n`);
      process.exitCode = err.exitCode;
      return;
    }
    if (err instanceof Errors.CLIError && 'parse' in err) {
      process.stderr.write(`vlakit ${this.displayName}: ${err.message.replace(/\nSee more help with --help$/, '')}\n`);
      process.exitCode = EXIT.usage;
      return;
    }
    if (err instanceof Errors.ExitError) throw err;
    if (/^Flag --[\w-]+ can only be specified once$/.test(err.message)) {
      // oclif's parser throws a plain Error for a repeated single-valued flag: a usage error all the same
      process.stderr.write(`vlakit ${this.displayName}: E_USAGE: ${err.message.replace('Flag ', '')} (it takes one value)\n`);
      process.exitCode = EXIT.usage;
      return;
    }
    process.stderr.write(`vlakit ${this.displayName}: internal error: ${err.stack ?? err.message}\n`);
    process.exitCode = EXIT.error;
  }
}
