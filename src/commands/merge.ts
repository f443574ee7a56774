import path from 'node:path';
import { Args, Flags } from '@oclif/core';
import { VlakitCommand, parseSize, sharedFlags } from '../lib/cli/base.js';
import { size } from '../lib/cli/flags.js';
import { type MergeSummary, convert, isRldsDir, manifestPathFor, mergeSampleShards, mergeShards, newStats, readShardManifest, resolveParts, writeJsonl } from '../lib/io/index.js';
import { existsSync } from 'node:fs';
import { VlakitError } from '../lib/errors.js';

export default class Merge extends VlakitCommand {
  static summary = 'Join the parts of a --shard I/N job into one dataset, in the order of the unsharded run.';
  static description =
    'Reads the parts that N runs with --shard 0/N .. N-1/N wrote (JSON Lines, TFRecord or RLDS dataset directories, each with the OUTPUT.shard.json manifest beside it) and writes one output, the same as one unsharded run would have written: episode k of the input is taken from part k mod N. Every episode must appear exactly once: a missing part, a part given twice, an episode missing from its part or found twice stops the merge with E_SHARD (exit 1) and nothing is written. A part written with --shard-size is named by its output name or by all of its files. The --log-samples parts of eval-vqa --shard merge into the unsharded samples. See docs/SCALE.md.';
  static strict = false;
  static args = { parts: Args.string({ description: 'the parts, in any order (their manifests say which shard each is)', required: true }) };
  static examples = [
    { description: 'Chunks from a 3-way job array', command: '<%= config.bin %> merge parts/chunks-0.jsonl parts/chunks-1.jsonl parts/chunks-2.jsonl -o chunks.jsonl' },
    { description: 'Rollout parts written as RLDS datasets', command: '<%= config.bin %> merge parts/*/demos/1.0.0 -o demos/1.0.0' },
  ];
  static flags = {
    output: sharedFlags.output,
    overwrite: sharedFlags.overwrite,
    to: Flags.string({ description: 'output format (default: from the output name; stdout: jsonl)', options: ['jsonl', 'tfrecord', 'rlds'] }),
    split: sharedFlags.split,
    name: Flags.string({ description: 'dataset name for --to rlds (default: from the directory name)' }),
    compression: Flags.string({ description: 'compress jsonl/tfrecord output (default: gzip when the name ends in .gz)', options: ['none', 'gzip'] }),
    'shard-size': size({ description: 'start a new file past this size (tfrecord, rlds; e.g. 256MB)', min: 1024 }),
    quiet: sharedFlags.quiet,
    json: sharedFlags.json,
  };

  async run(): Promise<void> {
    const { argv, flags } = await this.parse(Merge);
    const parts = (argv as string[]).map((p) => p.replace(/[/\\]+$/, ''));
    const summary: MergeSummary = { parts: 0, shards: 0, episodes: 0, records: 0, read: newStats() };
    const signal = this.abort.signal;
    const resolved = parts.length ? resolveParts(parts) : [];
    if (resolved.length && readShardManifest(resolved[0].name).command === 'eval-vqa') {
      // eval-vqa --log-samples parts: samples, not records of episodes
      if (flags.to && flags.to !== 'jsonl') throw new VlakitError('E_USAGE', `eval-vqa parts are samples: JSON Lines only, not --to ${flags.to}`);
      await writeJsonl(mergeSampleShards(parts, summary), flags.output, this.outputOptions(flags, resolved.flatMap((p) => [...p.files, manifestPathFor(p.name)])));
      if (flags.json) process.stderr.write(`${JSON.stringify({ outputs: [flags.output ?? '-'], to: 'jsonl', parts: summary.parts, episodes: summary.episodes, records: summary.records })}\n`);
      else this.note(`vlakit merge: ${summary.parts} parts, ${summary.episodes} model-question units, ${summary.records} samples -> ${flags.output && flags.output !== '-' ? flags.output : 'stdout'}`, flags.quiet);
      return;
    }
    const source = mergeShards(parts, { split: flags.split, signal, onWarning: flags.quiet ? undefined : (m) => this.note(`vlakit merge: ${m}`) }, summary);
    // RLDS parts: the output keeps their features (the unsharded run's, inferred from the same first episode)
    const features = parts.length && isRldsDir(parts[0]) && existsSync(path.join(parts[0], 'features.json')) ? path.join(parts[0], 'features.json') : undefined;
    const res = await convert({
      ...this.outputOptions(flags),
      // a part written with --shard-size is several files (NAME-0000i-of-0000n) beside one manifest
      inputs: resolveParts(parts).flatMap((p) => [...p.files, manifestPathFor(p.name)]),
      source,
      output: flags.output,
      to: flags.to as 'jsonl' | 'tfrecord' | 'rlds' | undefined,
      split: flags.split,
      name: flags.name,
      featuresFile: features,
      compression: flags.compression as 'none' | 'gzip' | undefined,
      maxShardBytes: flags['shard-size'] ? parseSize(flags['shard-size']) : undefined,
      signal,
    });
    if (flags.json) process.stderr.write(`${JSON.stringify({ outputs: res.outputs, to: res.to, parts: summary.parts, episodes: summary.episodes, records: summary.records })}\n`);
    else this.note(`vlakit merge: ${summary.parts} parts, ${summary.episodes} episodes, ${summary.records} records -> ${res.to} ${res.outputs.map((o) => (o === '-' ? 'stdout' : o)).join(', ')}`, flags.quiet);
  }
}
