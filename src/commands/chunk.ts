import { Args, Flags } from '@oclif/core';
import { VlakitCommand, sharedFlags } from '../lib/cli/base.js';
import { type FlagRule, allOnlyWith, decimal, int, shardFlag } from '../lib/cli/flags.js';
import { logEveryFlag, startProgress } from '../lib/cli/progress.js';
import { meterInput } from '../lib/cli/progress-input.js';
import { EXIT, VlakitError } from '../lib/errors.js';
import { chunkEpisode, type ChunkRecord, parseLayout } from '../lib/actions/index.js';
import { ShardJob, groupEpisodes, newStats, parseCameraList, readValidated, writeJsonl } from '../lib/io/index.js';
import { AnnotatedStepSchema } from '../lib/teacher/index.js';

export default class Chunk extends VlakitCommand {
  static summary = 'Cut episodes into action chunks: merged per subtask (VLM2VLA) or the next H actions of every step.';
  static description =
    'Every action dimension is kept (--action-layout says which are translation, rotation and gripper; 4-D and 7-D actions are recognised). --mode merge sums consecutive deltas (translation and rotation) within each subtask (from a plan annotation, else the whole episode) while the translation moves along one dominant dimension without a sign change, up to --axis-limit along it and --total-limit in all; a gripper change (beyond --gripper-tolerance) ends a merged action, which keeps the gripper of its last step. --mode fixed gives, for every --stride-th step, the next --horizon actions, padded at the end and masked.';
  static strict = false;
  static args = { input: Args.string({ description: 'step records (RLDS, TFRecord, JSONL); "-" or nothing for stdin', required: false, ignoreStdin: true }) };
  static examples = [
    { description: 'VLM2VLA chunks from plan annotations', command: '<%= config.bin %> annotate demos/1.0.0 --kind plan | <%= config.bin %> chunk --mode merge -o chunks.jsonl' },
    { description: 'ACT-style chunks of 8 actions', command: '<%= config.bin %> chunk demos/1.0.0 --mode fixed --horizon 8 -o chunks.jsonl' },
  ];
  static flags = {
    mode: Flags.string({ description: 'merge or fixed', options: ['merge', 'fixed'], default: 'merge' }),
    horizon: int({ description: 'fixed: actions per chunk', min: 1, max: 1024 }),
    stride: int({ description: 'fixed: a chunk every S steps', default: 1, min: 1, max: 1_000_000 }),
    'axis-limit': decimal({ description: 'merge: largest travel along the dominant dimension, meters', default: '0.025', min: 0, minExclusive: true, max: 10 }),
    'total-limit': decimal({ description: 'merge: largest translation of a merged action, meters', default: '0.05', min: 0, minExclusive: true, max: 10 }),
    'gripper-tolerance': decimal({ description: 'merge: a gripper change larger than this ends a merged action (continuous grippers)', default: '0', min: 0, max: 1 }),
    'action-layout': Flags.string({ description: 'which action dimensions are translation, rotation, gripper: xyz-g, xyz-rpy-g (optionally :continuous), a JSON object or file (default: 4-D xyz-g, 7-D xyz-rpy-g)', helpValue: 'LAYOUT' }),
    camera: Flags.string({ description: 'cameras to keep, in order (default: all; examples take the primary camera: image, image_0, ... first)', helpValue: 'NAME[,NAME...]' }),
    output: sharedFlags.output,
    overwrite: sharedFlags.overwrite,
    split: sharedFlags.split,
    shard: shardFlag(),
    'skip-corrupt': sharedFlags['skip-corrupt'],
    quiet: sharedFlags.quiet,
    'log-every': logEveryFlag,
  };

  static flagRules: FlagRule[] = [
    ...allOnlyWith(['horizon', 'stride'], '--mode fixed', (i) => i.flags.mode === 'fixed'),
    ...allOnlyWith(['axis-limit', 'total-limit', 'gripper-tolerance'], '--mode merge', (i) => i.flags.mode === 'merge'),
  ];

  async run(): Promise<void> {
    const { argv, flags } = await this.parse(Chunk);
    const inputs = argv.length ? (argv as string[]) : ['-'];
    const axisLimit = Number(flags['axis-limit']);
    const totalLimit = Number(flags['total-limit']);
    if (!(axisLimit > 0) || !(totalLimit > 0)) throw new VlakitError('E_USAGE', '--axis-limit and --total-limit must be positive numbers of meters');
    if (flags.mode === 'fixed' && !flags.horizon) throw new VlakitError('E_USAGE', '--mode fixed needs --horizon H');
    const layout = flags['action-layout'] ? parseLayout(flags['action-layout']) : undefined;
    const cameras = parseCameraList(flags.camera);
    const gripperTolerance = Number(flags['gripper-tolerance']);
    const input = await meterInput(inputs, { split: flags.split });
    const progress = await startProgress('chunk', !flags.quiet, { logEvery: flags['log-every'], initial: { unit: 'steps', ...input.state() } });
    const signal = this.abort.signal;
    let episodes = 0;
    let steps = 0;
    let chunks = 0;
    let actions = 0;
    const read = newStats();
    const note = (m: string): void => this.note(`vlakit chunk: ${m}`);
    const output = this.outputOptions(flags, inputs);
    const shard = ShardJob.start('chunk', flags.shard, flags.output, output);
    const records = (async function* () {
      const read_ = readValidated(inputs, 'step', AnnotatedStepSchema, 'chunk reads step records', { split: flags.split, skipCorrupt: flags['skip-corrupt'], signal, onRead: input.onRead, onWarning: flags.quiet ? undefined : (m) => note(m), skipEpisode: shard?.skipEpisode }, read);
      for await (const r of shard ? shard.filter(read_, (r) => r.value.episode_id, (r) => r) : read_) {
        yield { record: r.value, line: r.line, file: r.file };
      }
    })();
    const out = (async function* (): AsyncGenerator<ChunkRecord> {
      for await (const ep of groupEpisodes(records)) {
        const cs = chunkEpisode(ep, { mode: flags.mode as 'merge' | 'fixed', horizon: flags.horizon, stride: flags.stride, axisLimit, totalLimit, gripperTolerance, layout, cameras });
        episodes += 1;
        steps += ep.length;
        chunks += cs.length;
        actions += cs.reduce((a, c) => a + c.actions.length, 0);
        progress.update({ records: steps, detail: `${chunks} chunks`, ...input.state() });
        yield* cs;
      }
    })();
    try {
      await writeJsonl(out, flags.output, output);
      await shard?.finish();
      progress.stop();
      const extra = flags.mode === 'merge' ? `, ${actions} merged actions (${(steps / Math.max(actions, 1)).toFixed(2)} steps each)` : '';
      this.note(`vlakit chunk: ${episodes} episodes, ${steps} steps -> ${chunks} chunks${extra}`, flags.quiet);
      if (read.skipped > 0) {
        this.note(`vlakit chunk: skipped ${read.skipped} corrupt record(s)${read.skippedBytes ? `, ${read.skippedBytes} bytes` : ''}`, flags.quiet);
        process.exitCode = EXIT.partial;
      }
    } finally {
      progress.stop();
    }
  }
}
