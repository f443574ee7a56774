/** The base of every vlakit command: shared flags, one way to report errors, exit codes, Ctrl-C, `| head`. */
import { Command, Errors, Flags, type Interfaces } from '@oclif/core';
import { EXIT, VlakitError, isVlakitError } from '../errors.js';
import { type FlagRule, checkRules, softLimitWarnings } from './flags.js';

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

export abstract class VlakitCommand extends Command {
  /** Rules between flags (exclusive pairs, mode-only flags), checked right after parsing, before any work. */
  static flagRules: readonly FlagRule[] = [];
  protected readonly abort = new AbortController();

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
    process.once('SIGINT', () => this.abort.abort(new VlakitError('E_IO', 'interrupted')));
    process.stdout.on('error', (err: NodeJS.ErrnoException) => {
      // The reader went away (`| head`): that is success, not an error.
      if (err.code === 'EPIPE') process.exit(EXIT.ok);
    });
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
    if (this.abort.signal.aborted) {
      process.stderr.write('vlakit: interrupted; partial outputs were removed\n');
      process.exitCode = 130;
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
    process.stderr.write(`vlakit ${this.displayName}: internal error: ${err.stack ?? err.message}\n`);
    process.exitCode = EXIT.error;
  }
}
