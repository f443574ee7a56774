import { Args, Flags } from '@oclif/core';
import { type ActionCodec, type TrainingExample, TrainingExampleSchema } from '../lib/actions/index.js';
import { VlakitCommand, sharedFlags } from '../lib/cli/base.js';
import { type FlagRule, allOnlyWith, decimal, int } from '../lib/cli/flags.js';
import { startProgress } from '../lib/cli/progress.js';
import { type Predictor, expertPredictor, formatReplay, replay } from '../lib/diag/index.js';
import { readValidated } from '../lib/io/index.js';

export default class Replay extends VlakitCommand {
  static summary = 'Open-loop replay: a policy answers the action prompts of recorded demonstrations; its actions are compared with the expert\'s.';
  static description =
    'Reads training examples (vlakit relabel, with --split for held-out episodes) and, for each one whose target holds actions, generates the model\'s actions from the example\'s images and prompt (the recorded subtask and motion plan: the upstream stages are the expert\'s). Prints per split the mean |error| per action dimension (translations in mm), the error of never moving beside it, the translation error and the gripper accuracy (open/closed), over every compared action and over the first of each chunk. A large train/val gap, or errors no better than never moving, show before any closed-loop run. --model expert replays the examples\' own actions (zero error): a check of the data and the metric.';
  static strict = false;
  static args = { input: Args.string({ description: 'training examples (from vlakit relabel); "-" or nothing for stdin', required: false, ignoreStdin: true }) };
  static examples = [
    { description: 'The fine-tuned policy on its train and held-out examples', command: '<%= config.bin %> replay --model runs/sft-onnx examples_vlm2vla.jsonl' },
    { description: 'At most 50 examples per split, the report as JSON', command: '<%= config.bin %> replay --model runs/sft examples.jsonl --limit 50 --json' },
  ];
  static flags = {
    model: Flags.string({ description: 'a checkpoint or export directory, or "expert" (the examples\' own actions: zero error)', required: true, helpValue: 'DIR|expert' }),
    limit: int({ description: 'replay at most N action examples per split', min: 1, max: 10_000_000 }),
    actions: Flags.string({ description: 'how the model writes actions, when its config does not say', options: ['text', 'words'] }),
    'max-new-tokens': int({ description: 'longest generation', default: 256, min: 1, max: 8192 }),
    temperature: decimal({ description: 'sampling temperature (0: greedy)', default: '0', min: 0, max: 10 }),
    seed: int({ description: 'seed of sampling', default: 0, min: 0, max: 2 ** 32 - 1 }),
    device: Flags.string({ description: 'onnxruntime execution provider for an export', options: ['cpu', 'cuda'], default: 'cpu' }),
    backend: Flags.string({ description: 'tfjs backend for a checkpoint', options: ['tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'] }),
    'blank-images': Flags.boolean({ description: 'answer each example again with blank images: how many answers change and how the errors compare (does the policy read its images?)' }),
    quiet: sharedFlags.quiet,
    json: Flags.boolean({ description: 'print the report as JSON on stderr' }),
  };

  static flagRules: FlagRule[] = [...allOnlyWith(['actions', 'max-new-tokens', 'temperature', 'seed', 'device', 'backend'], 'a model (not --model expert)', (i) => i.flags.model !== 'expert')];

  async run(): Promise<void> {
    const { argv, flags } = await this.parse(Replay);
    const inputs = argv.length ? (argv as string[]) : ['-'];
    const signal = this.abort.signal;
    let predict: Predictor = expertPredictor;
    let codec: ActionCodec | undefined;
    let runner: { dispose(): Promise<void> | void } | undefined;
    if (flags.model !== 'expert') {
      const { openModel } = await import('../lib/infer/index.js');
      const { codecOf } = await import('../lib/policy/index.js');
      const { modelPredictor } = await import('../lib/diag/index.js');
      const r = await openModel(flags.model, { device: flags.device as 'cpu', backend: flags.backend });
      runner = r;
      codec = codecOf(r, flags.actions);
      predict = modelPredictor(r, { maxNewTokens: flags['max-new-tokens'], temperature: Number(flags.temperature), seed: flags.seed });
    }
    const progress = await startProgress('replay', !flags.quiet && !flags.json);
    let n = 0;
    try {
      const examples = (async function* (): AsyncGenerator<TrainingExample> {
        for await (const r of readValidated(inputs, 'training_example', TrainingExampleSchema, 'replay reads training examples (from vlakit relabel)', { signal })) yield r.value;
      })();
      const report = await replay(examples, predict, { codec, limit: flags.limit, blankImages: flags['blank-images'], signal, onExample: () => progress.update({ records: ++n, unit: 'examples' }) });
      progress.stop();
      if (flags.json) process.stderr.write(`${JSON.stringify(report)}\n`);
      else this.note(formatReplay(report), flags.quiet);
    } finally {
      progress.stop();
      await runner?.dispose();
    }
  }
}
