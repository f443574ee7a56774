import { Args, Flags } from '@oclif/core';
import { VlakitCommand, sharedFlags } from '../lib/cli/base.js';
import { type FlagRule, decimal, exclusive, int, onlyWith, shardFlag } from '../lib/cli/flags.js';
import { VlakitError } from '../lib/errors.js';
import { type ActionStats, ChunkRecordSchema, makeCodec, parseLayout, readActionStats } from '../lib/actions/index.js';
import { relabel } from '../lib/actions/relabel.js';
import { logEveryFlag, startProgress } from '../lib/cli/progress.js';
import { meterInput } from '../lib/cli/progress-input.js';
import { ShardJob, checkDistinctOutputs, claimOutput, parseCameraList, readValidated, writeOutputFile } from '../lib/io/index.js';

export default class Relabel extends VlakitCommand {
  static summary = 'Turn action chunks into training examples, with actions written as text, words, tokens or bins.';
  static description =
    'Reads chunk records (from `vlakit chunk`) and writes chat-format training examples: VLM2VLA (subtask list, motion plan, action chunk, verifier pairs, direction prediction) or ReFineVLA (rationale + actions), with spans marking reasoning and action characters. Also computes per-dimension action statistics (--stats-out) and the round-trip error of the representation (--report).';
  static strict = false;
  static args = { input: Args.string({ description: 'chunk records (JSONL); "-" or nothing for stdin', required: false, ignoreStdin: true }) };
  static examples = [
    { description: 'VLM2VLA examples with actions as text, 10% of episodes for validation', command: '<%= config.bin %> relabel chunks.jsonl --method vlm2vla --actions text --precision 3 --split 0.1 -o examples.jsonl' },
    { description: 'Statistics, then OpenVLA-style bins over the last 256 Gemma-3 tokens', command: '<%= config.bin %> relabel chunks.jsonl --stats-out stats.json && <%= config.bin %> relabel chunks.jsonl --actions bins --stats stats.json --report -o examples.jsonl' },
    { description: 'VLM2VLA-AT: digits as Gemma-3 reserved tokens, in TRL layout', command: '<%= config.bin %> relabel chunks.jsonl --actions tokens --tokenizer gemma3 --format trl -o trl_data/' },
  ];
  static flags = {
    method: Flags.string({ description: 'vlm2vla (three stages + auxiliary) or refinevla (rationale + actions)', options: ['vlm2vla', 'refinevla'], default: 'vlm2vla' }),
    actions: Flags.string({ description: 'action representation', options: ['text', 'words', 'tokens', 'bins'], default: 'text' }),
    precision: int({ description: 'digits after the point (text/tokens: 3; words: 1)', min: 0, max: 8 }),
    units: Flags.string({ description: 'text/tokens: meters or centimeters', options: ['m', 'cm'], default: 'm' }),
    tokenizer: Flags.string({ description: 'tokens/bins: gemma3 or a tokenizer.json', default: 'gemma3' }),
    'token-list': Flags.string({ description: 'tokens with another tokenizer: 10 tokens, one per line, for digits 0-9', helpValue: 'FILE' }),
    bins: int({ description: 'bins: number of bins per dimension', default: 256, min: 2, max: 4096 }),
    stats: Flags.string({ description: 'bins: statistics from --stats-out', helpValue: 'FILE' }),
    'stats-out': Flags.string({ description: 'write per-dimension mean, std, min, max, q01, q99 of the actions', helpValue: 'FILE' }),
    'action-layout': Flags.string({ description: 'which action dimensions are translation, rotation, gripper: xyz-g, xyz-rpy-g (optionally :continuous), a JSON object or file (default: the chunk records\' layout)', helpValue: 'LAYOUT' }),
    camera: Flags.string({ description: 'cameras of every example, in order (default: the primary camera, image/image_0 first; refinevla: all)', helpValue: 'NAME[,NAME...]' }),
    report: Flags.boolean({ description: 'print the round-trip error of the representation per dimension' }),
    'no-reasoning': Flags.boolean({ description: 'actions only (VLM2VLA-NR, the SFT baseline)' }),
    waypoints: Flags.boolean({ description: 'each step\'s action becomes the absolute end-effector position its straight run of moves ends at (from observation.state; one action per chunk: chunk --mode fixed --horizon 1); rollout moves toward it in steps of --waypoint-step' }),
    'release-lead': int({ description: 'with --waypoints: each release (the gripper command going from closed to open) is labelled this many steps early, so the open region a policy must learn is wider than the demonstrator\'s exact put point; closing is left as it is. Default 0', min: 0, max: 100 }),
    'waypoint-step': decimal({ description: 'with --waypoints: the largest move per step toward a target, meters (the built-in expert\'s step by default)', default: '0.015', min: 0, max: 1, minExclusive: true }),
    'compact-prompt': Flags.boolean({ description: 'with --method vlm2vla --no-reasoning: the task prompt without its sentence on the action format (for small models trained from scratch; rollout --prompt compact)' }),
    'subtask-prompts': Flags.boolean({ description: 'with --no-reasoning: each example\'s task is the subtask under way at its step (the built-in world\'s oracle.subtask) instead of the episode\'s instruction, the low level of a hierarchy (rollout --mode hierarchical with an action head); steps after the last subtask give none' }),
    'subtask-lists': Flags.boolean({ description: 'only the planner\'s examples (VLM2VLA\'s subtasks stage): per episode, its first frame and instruction -> the built-in world\'s numbered subtask list (episode_metadata.task.subtasks, which chunk carries as task_subtasks). Trains a planner for a policy that writes no text (rollout --planner DIR)' }),
    'ground-all': Flags.boolean({ description: 'with --ground: after the named objects, every other visible object too (for models whose keypoints are detectors of kinds of objects: vision_config.keypoint_names)' }),
    ground: Flags.boolean({ description: 'each action (and motion-plan) example records where the objects its prompt names are in the main camera image (`ground`: the centre of their pixels, from the oracle masks of rollout --masks), for train-sft --ground-weight' }),
    state: Flags.boolean({ description: "the action prompts carry the robot state (observation.state: position in the codec's units, gripper opening); recorded in the codec, so rollout writes it too" }),
    format: Flags.string({ description: 'vlakit JSONL, or trl (a directory: data.jsonl + images/)', options: ['vlakit', 'trl'], default: 'vlakit' }),
    split: decimal({ description: 'share of episodes for validation, by a seeded hash of the episode id', default: '0', min: 0, max: 1, maxExclusive: true }),
    seed: int({ description: 'seed of the split hash', default: 0, min: 0, max: 2 ** 32 - 1 }),
    output: sharedFlags.output,
    overwrite: sharedFlags.overwrite,
    shard: shardFlag(),
    quiet: sharedFlags.quiet,
    json: Flags.boolean({ description: 'print the summary as JSON on stderr' }),
    'log-every': logEveryFlag,
  };

  static flagRules: FlagRule[] = [
    onlyWith('precision', '--actions text, tokens or words', (i) => i.flags.actions !== 'bins'),
    onlyWith('units', '--actions text or tokens', (i) => i.flags.actions === 'text' || i.flags.actions === 'tokens'),
    onlyWith('tokenizer', '--actions tokens or bins', (i) => i.flags.actions === 'tokens' || i.flags.actions === 'bins'),
    onlyWith('token-list', '--actions tokens', (i) => i.flags.actions === 'tokens'),
    onlyWith('bins', '--actions bins', (i) => i.flags.actions === 'bins'),
    onlyWith('stats', '--actions bins', (i) => i.flags.actions === 'bins'),
    onlyWith('seed', 'a validation share (--split)', (i) => Number(i.flags.split) > 0),
    onlyWith('waypoint-step', '--waypoints', (i) => i.flags.waypoints === true),
    onlyWith('release-lead', '--waypoints', (i) => i.flags.waypoints === true),
    onlyWith('ground-all', '--ground', (i) => i.flags.ground === true),
    exclusive('shard', 'stats-out', 'the statistics of one shard are not the dataset\'s; compute them in an unsharded run (they read only the actions)'),
    onlyWith('shard', '--format vlakit (vlakit merge joins JSON Lines parts)', (i) => i.flags.format === 'vlakit'),
    onlyWith('subtask-prompts', '--method vlm2vla --no-reasoning (one skill per subtask)', (i) => i.flags.method === 'vlm2vla' && i.flags['no-reasoning'] === true),
    onlyWith('subtask-lists', '--method vlm2vla (its subtasks stage), without --no-reasoning', (i) => i.flags.method === 'vlm2vla' && i.flags['no-reasoning'] !== true),
    onlyWith('compact-prompt', '--method vlm2vla --no-reasoning (the VLM2VLA-NR task prompt)', (i) => i.flags.method === 'vlm2vla' && i.flags['no-reasoning'] === true),
  ];

  async run(): Promise<void> {
    const { argv, flags } = await this.parse(Relabel);
    const inputs = argv.length ? (argv as string[]) : ['-'];
    const stats: ActionStats | undefined = flags.stats ? readActionStats(flags.stats) : undefined;
    const layout = flags['action-layout'] ? parseLayout(flags['action-layout']) : undefined;
    const cameras = parseCameraList(flags.camera);
    const wantsExamples = flags.output !== undefined || !flags['stats-out'];
    const codec = wantsExamples || flags.report ? await makeCodec({ actions: flags.actions as 'text', precision: flags.precision, units: flags.units as 'm', tokenizer: flags.tokenizer, tokenList: flags['token-list'], bins: flags.bins, stats, layout, state: flags.state }) : undefined;
    if (flags.format === 'trl' && (!flags.output || flags.output === '-')) throw new VlakitError('E_USAGE', '--format trl writes a directory: give it with -o DIR');
    // both outputs are claimed before any work: never an input, never each other, existing ones need --overwrite
    const read = [...inputs, flags.stats, flags['token-list'], flags.tokenizer];
    checkDistinctOutputs([['-o', flags.output], ['--stats-out', flags['stats-out']]]);
    const output = this.outputOptions(flags, read);
    const statsOutput = this.outputOptions(flags, read, '--stats-out');
    if (wantsExamples && flags.output && flags.output !== '-') claimOutput(flags.output, flags.format === 'trl' ? 'dir' : 'file', output);
    if (flags['stats-out']) claimOutput(flags['stats-out'], 'file', statsOutput);
    const signal = this.abort.signal;
    const input = await meterInput(inputs);
    const progress = await startProgress('relabel', !flags.quiet && !flags.json, { logEvery: flags['log-every'], initial: { unit: 'chunks', ...input.state() } });
    const onProgress = (st: { records: number }) => progress.update({ records: st.records, ...input.state() });
    const shard = ShardJob.start('relabel', flags.shard, flags.output, output);
    const chunks = (async function* () {
      const all = readValidated(inputs, 'chunk', ChunkRecordSchema, 'relabel reads chunk records (from vlakit chunk)', { signal, onRead: input.onRead, onProgress });
      for await (const r of shard ? shard.filter(all, (r) => r.value.episode_id, (r) => r) : all) yield r.value;
    })();
    const s = await relabel(chunks, {
      method: flags.method as 'vlm2vla',
      codec,
      layout,
      cameras,
      noReasoning: flags['no-reasoning'],
      compactPrompt: flags['compact-prompt'],
      subtaskPrompts: flags['subtask-prompts'],
      subtaskLists: flags['subtask-lists'],
      ground: flags['ground-all'] ? 'all' : flags.ground,
      waypointStep: flags.waypoints ? Number(flags['waypoint-step']) : undefined,
      releaseLead: flags['release-lead'],
      valFraction: Number(flags.split),
      seed: flags.seed,
      output: wantsExamples ? (flags.output ?? '-') : undefined,
      format: flags.format as 'vlakit',
      stats: !!flags['stats-out'],
      report: flags.report,
      outputOptions: output,
    }).finally(() => progress.stop());
    await shard?.finish();
    if (flags['stats-out'] && s.stats) await writeOutputFile(flags['stats-out'], `${JSON.stringify(s.stats, null, 2)}\n`, statsOutput);
    const { stats: st, ...rest } = s;
    if (flags.json) {
      process.stderr.write(`${JSON.stringify({ ...rest, statsExact: st?.exactQuantiles })}\n`);
      return;
    }
    if (wantsExamples) this.note(`vlakit relabel: ${s.episodes} episodes, ${s.chunks} chunks -> ${s.examples} examples (${Object.entries(s.byStage).map(([k, n]) => `${n} ${k}`).join(', ') || 'none'}; ${Object.entries(s.bySplit).map(([k, n]) => `${n} ${k}`).join(', ')})`, flags.quiet);
    if (st) this.note(`vlakit relabel: statistics of ${st.count} actions written to ${flags['stats-out']} (quantiles ${st.exactQuantiles ? 'exact' : 'estimated from a 4M-value reservoir'})`, flags.quiet);
    if (s.roundTrip) {
      const rt = s.roundTrip;
      const f = (x: number) => x.toExponential(2);
      const names = s.dims ?? rt.max.map((_, k) => `a${k}`);
      this.note(`vlakit relabel: round trip of ${rt.actions} actions as ${codec!.name}, per dimension max |error|: ${rt.max.map((v, k) => `${names[k]} ${f(v)}`).join(', ')}; mean: ${rt.mean.map((v, k) => `${names[k]} ${f(v)}`).join(', ')}`, flags.quiet);
    }
  }
}
