import { Args, Flags } from '@oclif/core';
import { VlakitCommand, parseSize, sharedFlags } from '../lib/cli/base.js';
import { decimal, lerobotFlags, lerobotOptions, shardFlag, size } from '../lib/cli/flags.js';
import { logEveryFlag, startProgress } from '../lib/cli/progress.js';
import { meterInput } from '../lib/cli/progress-input.js';
import { EXIT } from '../lib/errors.js';
import { ShardJob, convert } from '../lib/io/index.js';

export default class Convert extends VlakitCommand {
  static summary = 'Convert records between RLDS datasets, LeRobot datasets, TFRecord (plain, gzip, sharded) and JSON Lines.';
  static description =
    'Reads any supported input (sniffed: an RLDS/TFDS dataset directory, TFRecord files plain or gzip, directories and globs of shards, JSON Lines, stdin) and writes one output format. RLDS episodes become one JSON step record per line; step records become RLDS episodes again, or a LeRobot dataset (v3.0, or v2.1 with --lerobot-version 2.1).';
  static strict = false;
  static args = {
    input: Args.string({ description: 'input files, directories or globs; "-" or nothing for stdin', required: false, ignoreStdin: true }),
  };
  static examples = [
    { description: 'An RLDS dataset to step records', command: '<%= config.bin %> convert data/bridge_dataset/1.0.0 --split train -o steps.jsonl' },
    { description: 'Step records back to an RLDS dataset directory', command: '<%= config.bin %> convert steps.jsonl --to rlds -o out/my_dataset/1.0.0 --features data/bridge_dataset/1.0.0/features.json' },
    { description: 'Peek at a gzip TFRecord of tf.train.Examples', command: '<%= config.bin %> convert train.tfrecord.gz | head -3' },
    { description: 'An RLDS dataset to a LeRobot v3.0 dataset (AV1 camera videos)', command: '<%= config.bin %> convert data/bridge_dataset/1.0.0 --to lerobot -o out/bridge_lerobot' },
    { description: 'Compress and shard', command: '<%= config.bin %> convert "shards/*.tfrecord" --to tfrecord --compression gzip --shard-size 256MB -o out/data.tfrecord.gz' },
  ];
  static flags = {
    output: sharedFlags.output,
    overwrite: sharedFlags.overwrite,
    to: Flags.string({ description: 'output format (default: from the output name; stdout: jsonl)', options: ['jsonl', 'tfrecord', 'rlds', 'lerobot'] }),
    ...lerobotFlags,
    fps: decimal({ description: 'lerobot: frames per second; timestamps are frame_index / fps (default: a LeRobot input\'s, else 10)', min: 0, minExclusive: true }),
    split: sharedFlags.split,
    shard: shardFlag(),
    'add-split': Flags.boolean({ description: 'rlds: add --split to an existing dataset directory (same name and features) instead of refusing it' }),
    decode: Flags.string({ description: 'how TFRecord payloads are read', options: ['auto', 'rlds', 'example', 'sequence_example', 'raw'], default: 'auto' }),
    compression: Flags.string({ description: 'compress jsonl/tfrecord output (default: gzip when the name ends in .gz)', options: ['none', 'gzip'] }),
    'shard-size': size({ description: 'start a new shard past this size (tfrecord, rlds; e.g. 256MB)', min: 1024 }),
    name: Flags.string({ description: 'dataset name for --to rlds (default: from the directory name)' }),
    features: Flags.string({ description: 'a TFDS features.json to encode episodes with (default: the input dataset\'s, else inferred)', helpValue: 'FILE' }),
    'skip-corrupt': sharedFlags['skip-corrupt'],
    verify: sharedFlags.verify,
    quiet: sharedFlags.quiet,
    json: sharedFlags.json,
    'log-every': logEveryFlag,
  };

  async run(): Promise<void> {
    const { argv, flags } = await this.parse(Convert);
    const inputs = argv.length ? (argv as string[]) : ['-'];
    const input = await meterInput(inputs, { split: flags.split });
    const progress = await startProgress('convert', !flags.quiet && !flags.json, { logEvery: flags['log-every'], initial: input.state() });
    const shard = ShardJob.start('convert', flags.shard, flags.output, this.outputOptions(flags, inputs));
    try {
      const summary = await convert({
        ...this.outputOptions(flags),
        shard,
        inputs,
        output: flags.output,
        to: flags.to as 'jsonl' | 'tfrecord' | 'rlds' | 'lerobot' | undefined,
        split: flags.split,
        addSplit: flags['add-split'],
        decode: flags.decode as 'auto',
        compression: flags.compression as 'none' | 'gzip' | undefined,
        maxShardBytes: flags['shard-size'] ? parseSize(flags['shard-size']) : undefined,
        name: flags.name,
        featuresFile: flags.features,
        lerobot: { ...lerobotOptions(flags), fps: flags.fps === undefined ? undefined : Number(flags.fps) },
        skipCorrupt: flags['skip-corrupt'],
        verify: flags.verify,
        signal: this.abort.signal,
        onWarning: flags.quiet ? undefined : (m) => this.note(`vlakit convert: ${m}`),
        onRead: input.onRead,
        onProgress: (s) => progress.update({ records: s.records, bytes: s.bytes, skipped: s.skipped, ...input.state() }),
      });
      await shard?.finish();
      progress.stop();
      const { read, ...rest } = summary;
      if (flags.json) {
        process.stderr.write(`${JSON.stringify({ ...rest, read: { ...read } })}\n`);
      } else if (!flags.quiet) {
        const what = summary.steps !== undefined ? `${summary.episodes} episodes, ${summary.steps} steps` : `${summary.records} records`;
        this.note(`vlakit convert: wrote ${what} as ${summary.to} to ${summary.outputs.map((o) => (o === '-' ? 'stdout' : o)).join(', ')}`);
      }
      if (read.skipped > 0) {
        this.note(`vlakit convert: skipped ${read.skipped} corrupt record(s), ${read.skippedBytes} bytes`, flags.json);
        process.exitCode = EXIT.partial;
      }
    } finally {
      progress.stop();
    }
  }
}
