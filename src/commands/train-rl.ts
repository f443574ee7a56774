import { Args, Flags } from '@oclif/core';
import { VlakitCommand, parseNumber, sharedFlags } from '../lib/cli/base.js';
import { type FlagRule, decimal, int, onlyWith } from '../lib/cli/flags.js';
import { logEveryFlag, startProgress } from '../lib/cli/progress.js';
import { rlProgress } from '../lib/cli/progress-jobs.js';
import { VlakitError } from '../lib/errors.js';
import { codecFor, type ActionCodec, type TrainingExample, TrainingExampleSchema } from '../lib/actions/index.js';
import { readValidated } from '../lib/io/index.js';

function codecFrom(desc: Record<string, unknown> | undefined, ex: TrainingExample): ActionCodec {
  const kind = (desc?.codec as string | undefined) ?? ex.meta.representation;
  const codec = codecFor(kind, desc);
  if (!codec) throw new VlakitError('E_USAGE', `train-rl cannot rebuild the action codec of these examples ("${kind}" with no codec spec in meta.codec)`);
  return codec;
}

export default class TrainRl extends VlakitCommand {
  static summary = 'Refine the reasoning that leads to actions with GRPO-style RL, rewarding action accuracy (RoboAlign).';
  static description =
    'From an SFT checkpoint (the built-in model, or a Hugging Face checkpoint with train-sft\'s LoRA adapter run on it: --init the adapter run, whose adapter then trains on, the SFT adapter frozen as the reference, prompts and stop tokens from the model\'s processor; the run is saved as a PEFT adapter), samples --group completions per prompt, decodes their actions with the checkpoint\'s action representation, scores them (action accuracy, format, optional length penalty, optional external scorer), and updates fresh LoRA adapters with the clipped group-normalized objective and beta x KL to the SFT model (the same weights with the adapters off). The -o directory holds one run (run.json: its data hash, settings and seed): a new run refuses a directory that holds anything unless --overwrite, which replaces it once the new run has a checkpoint or finishes; --resume continues the run only with the same data, settings and seed.';
  static strict = false;
  static args = { input: Args.string({ description: 'training examples with actions (from vlakit relabel); "-" or nothing for stdin', required: false, ignoreStdin: true }) };
  static examples = [
    { description: 'RL on a small subset after SFT', command: '<%= config.bin %> train-rl examples.jsonl --init runs/sft --max-prompts 32 --group 8 --steps 50 --eval-every 10 -o runs/rl' },
    { description: 'Dr. GRPO (no std scaling) with your own reward', command: '<%= config.bin %> train-rl examples.jsonl --init runs/sft --no-std-scaling --reward exec:"python score.py" -o runs/rl' },
  ];
  static flags = {
    init: Flags.string({ description: 'the SFT checkpoint (or train-sft\'s adapter run on a Hugging Face checkpoint)', required: true, helpValue: 'CKPT' }),
    output: Flags.string({ char: 'o', description: 'run directory (run.json, checkpoints, final model, metrics.jsonl); one run per directory', required: true, helpValue: 'DIR' }),
    resume: Flags.boolean({ description: 'continue the run in -o from its latest checkpoint (the same data, settings and seed)' }),
    overwrite: sharedFlags.overwrite,
    group: int({ description: 'completions per prompt', default: 8, min: 2, max: 256 }),
    'prompts-per-step': int({ description: 'prompts per step', default: 4, min: 1, max: 1024 }),
    steps: int({ description: 'RL steps', default: 20, min: 1, max: 1_000_000, warnAbove: 10_000 }),
    'max-prompts': int({ description: 'use at most this many training prompts', min: 1, max: 10_000_000 }),
    temperature: decimal({ description: 'sampling temperature', default: '0.8', min: 0, max: 10 }),
    'top-p': decimal({ description: 'nucleus sampling', default: '0.95', min: 0, minExclusive: true, max: 1 }),
    'max-new-tokens': int({ description: 'completion length limit', default: 64, min: 1, max: 8192 }),
    lr: decimal({ description: 'learning rate of the adapters', default: '1e-3', min: 0, minExclusive: true, max: 1 }),
    'clip-eps': decimal({ description: 'ratio clip epsilon', default: '0.2', min: 0, minExclusive: true, max: 1 }),
    beta: decimal({ description: 'weight of KL to the reference (SFT) policy', default: '0.04', min: 0, max: 1000 }),
    'no-std-scaling': Flags.boolean({ description: 'advantages without std scaling (Dr. GRPO)' }),
    'inner-steps': int({ description: 'updates per batch of samples', default: 1, min: 1, max: 100 }),
    'lora-r': int({ description: 'LoRA rank of the RL adapters', default: 16, min: 1, max: 1024 }),
    'lora-alpha': int({ description: 'LoRA alpha', default: 32, min: 1, max: 4096 }),
    'reward-accuracy': decimal({ description: 'weight of the action accuracy reward', default: '1', min: -1000, max: 1000 }),
    'reward-format': decimal({ description: 'weight of the format reward', default: '0.1', min: -1000, max: 1000 }),
    'reward-length': decimal({ description: 'weight of the length penalty', default: '0', min: -1000, max: 1000 }),
    'accuracy-mode': Flags.string({ description: 'l1: 1 - L1/scale; tolerance: share of dimensions within --tolerance', options: ['l1', 'tolerance'], default: 'l1' }),
    'l1-scale': decimal({ description: 'l1 mode: the error (m) that scores 0', default: '0.02', min: 0, minExclusive: true, max: 10 }),
    tolerance: decimal({ description: 'tolerance mode: an error (m) that counts as right', default: '0.005', min: 0, max: 10 }),
    reward: Flags.string({ description: 'an extra reward from a child process: exec:COMMAND (JSON lines)', helpValue: 'exec:CMD' }),
    seed: int({ description: 'seed: the same seed gives the same run', default: 0, min: 0, max: 2 ** 32 - 1 }),
    'save-every': int({ description: 'checkpoint every N steps', min: 1, max: 1_000_000 }),
    'eval-every': int({ description: 'greedy evaluation on the val split every N steps', min: 1, max: 1_000_000 }),
    backend: Flags.string({ options: ['tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'] }),
    quiet: sharedFlags.quiet,
    'log-every': logEveryFlag,
    json: Flags.boolean({ description: 'print the result as JSON on stderr' }),
  };

  static flagRules: FlagRule[] = [
    onlyWith('l1-scale', '--accuracy-mode l1', (i) => i.flags['accuracy-mode'] === 'l1'),
    onlyWith('tolerance', '--accuracy-mode tolerance', (i) => i.flags['accuracy-mode'] === 'tolerance'),
  ];

  async run(): Promise<void> {
    const { argv, flags } = await this.parse(TrainRl);
    const inputs = argv.length ? (argv as string[]) : ['-'];
    const num = (s: string, name: string) => parseNumber(s, name);
    if (flags.reward && !flags.reward.startsWith('exec:')) throw new VlakitError('E_USAGE', '--reward takes exec:COMMAND');
    const { selectBackend } = await import('../lib/model/backend.js');
    const { trainRl } = await import('../lib/train/rl.js');
    const { loadCheckpoint } = await import('../lib/model/checkpoint.js');
    const backend = await selectBackend(flags.backend);
    const examples: TrainingExample[] = [];
    for await (const r of readValidated(inputs, 'training_example', TrainingExampleSchema, 'train-rl reads training examples (from vlakit relabel)', { signal: this.abort.signal })) examples.push(r.value);
    if (!examples.length) throw new VlakitError('E_USAGE', 'no training examples in the input');
    // a Hugging Face model (train-sft's adapter run on one, or the checkpoint) says its action codec in vlakit.json
    const { hfRlInit } = await import('../lib/train/hf-rl.js');
    const hf = hfRlInit(flags.init);
    let desc: Record<string, unknown> | undefined;
    if (hf) desc = hf.meta?.action_codec ?? undefined;
    else {
      const probe = loadCheckpoint(flags.init);
      desc = probe.actionCodec;
      probe.model.dispose();
    }
    const codec = codecFrom(desc, examples[0]);
    let truncationNoted = false;
    const progress = await startProgress('train-rl', !flags.quiet && !flags.json, { logEvery: flags['log-every'], initial: { unit: 'steps', total: flags.steps } });
    const onMetrics = rlProgress(progress, { totalSteps: flags.steps, saveEvery: flags['save-every'] });
    try {
      const res = await trainRl({
        init: flags.init,
        examples,
        outDir: flags.output,
        codec,
        resume: flags.resume,
        overwrite: flags.overwrite,
        inputs,
        group: flags.group,
        promptsPerStep: flags['prompts-per-step'],
        steps: flags.steps,
        maxPrompts: flags['max-prompts'],
        temperature: num(flags.temperature, 'temperature'),
        topP: num(flags['top-p'], 'top-p'),
        maxNewTokens: flags['max-new-tokens'],
        lr: num(flags.lr, 'lr'),
        clipEps: num(flags['clip-eps'], 'clip-eps'),
        beta: num(flags.beta, 'beta'),
        noStdScaling: flags['no-std-scaling'],
        innerSteps: flags['inner-steps'],
        lora: { r: flags['lora-r'], alpha: flags['lora-alpha'] },
        rewards: {
          weights: { accuracy: num(flags['reward-accuracy'], 'reward-accuracy'), format: num(flags['reward-format'], 'reward-format'), length: num(flags['reward-length'], 'reward-length'), exec: flags.reward ? 1 : 0 },
          mode: flags['accuracy-mode'] as 'l1',
          scale: num(flags['l1-scale'], 'l1-scale'),
          tolerance: num(flags.tolerance, 'tolerance'),
        },
        rewardExec: flags.reward?.slice(5),
        seed: flags.seed,
        saveEvery: flags['save-every'],
        evalEvery: flags['eval-every'],
        signal: this.abort.signal,
        onMetrics: (m) => {
          // once: every completion of a step cut off at --max-new-tokens scores no format reward, so GRPO has nothing to compare
          if (m.truncated === 1 && !truncationNoted) {
            truncationNoted = true;
            this.note(`vlakit train-rl: warning: step ${m.step}: every completion reached --max-new-tokens ${flags['max-new-tokens']} without an end token; cut-off answers fail the format reward (raise --max-new-tokens)`, flags.quiet);
          }
          onMetrics(m);
        },
      });
      progress.stop();
      if (flags.json) process.stderr.write(`${JSON.stringify({ backend, ...res })}\n`);
      else {
        this.note(`vlakit train-rl: ${res.steps} steps on ${backend}; adapters in ${flags.output}`, flags.quiet);
        const f = (e?: { reward: number; accuracy: number; l1?: number }) => (e ? `reward ${e.reward.toFixed(3)}, accuracy ${e.accuracy.toFixed(3)}${e.l1 !== undefined ? `, L1 ${e.l1.toFixed(4)} m` : ''}` : 'n/a');
        if (res.eval?.before || res.eval?.after) this.note(`vlakit train-rl: held-out (greedy): before ${f(res.eval.before)}; after ${f(res.eval.after)}`, flags.quiet);
      }
    } finally {
      progress.stop();
    }
  }
}
