import { Args, Flags } from '@oclif/core';
import { VlakitCommand, sharedFlags } from '../lib/cli/base.js';
import { int } from '../lib/cli/flags.js';
import { logEveryFlag, startProgress } from '../lib/cli/progress.js';
import { meterInput } from '../lib/cli/progress-input.js';
import { EXIT } from '../lib/errors.js';
import { formatInspect, inspect } from '../lib/io/index.js';

export default class Inspect extends VlakitCommand {
  static summary = 'Summarize a dataset: episodes, steps, features, cameras, instructions, action statistics.';
  static description =
    'Reads any input that convert reads and prints, in one streaming pass: episodes and steps, every feature key with its shape and dtype, cameras and image sizes, instruction samples, and per-dimension min/max/mean/std of actions and states.';
  static strict = false;
  static args = {
    input: Args.string({ description: 'input files, directories or globs; "-" or nothing for stdin', required: false, ignoreStdin: true }),
  };
  static examples = [
    { description: 'An RLDS dataset directory', command: '<%= config.bin %> inspect data/bridge_dataset/1.0.0 --split train' },
    { description: 'A machine-readable summary of step records', command: '<%= config.bin %> inspect steps.jsonl --json | jq .action' },
  ];
  static flags = {
    split: sharedFlags.split,
    samples: int({ description: 'instruction samples to show', default: 5, min: 0, max: 1000 }),
    'skip-corrupt': sharedFlags['skip-corrupt'],
    verify: sharedFlags.verify,
    quiet: sharedFlags.quiet,
    json: Flags.boolean({ description: 'print the summary as JSON on stdout' }),
    'log-every': logEveryFlag,
  };

  async run(): Promise<void> {
    const { argv, flags } = await this.parse(Inspect);
    const inputs = argv.length ? (argv as string[]) : ['-'];
    const input = await meterInput(inputs, { split: flags.split });
    const progress = await startProgress('inspect', !flags.quiet && !flags.json, { logEvery: flags['log-every'], initial: input.state() });
    try {
      const summary = await inspect(inputs, {
        split: flags.split,
        samples: flags.samples,
        skipCorrupt: flags['skip-corrupt'],
        verify: flags.verify,
        signal: this.abort.signal,
        onRead: input.onRead,
        onProgress: (s) => progress.update({ records: s.records, bytes: s.bytes, skipped: s.skipped, ...input.state() }),
      });
      progress.stop();
      process.stdout.write(flags.json ? `${JSON.stringify(summary, null, 2)}\n` : formatInspect(summary));
      if (summary.read.skipped > 0) process.exitCode = EXIT.partial;
    } finally {
      progress.stop();
    }
  }
}
