/** The base of every vlakit command: shared flags, one way to report errors, exit codes, Ctrl-C, `| head`. */
import { Command, Errors, Flags } from '@oclif/core';
import { EXIT, VlakitError, isVlakitError } from '../errors.js';

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
