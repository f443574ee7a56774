import { Args, Flags } from '@oclif/core';
import { VlakitCommand, parseNumber, sharedFlags } from '../lib/cli/base.js';
import { type FlagRule, allOnlyWith, decimal, exclusive, int, onlyWith } from '../lib/cli/flags.js';
import { logEveryFlag, startProgress } from '../lib/cli/progress.js';
import { sftProgress } from '../lib/cli/progress-jobs.js';
import { VlakitError } from '../lib/errors.js';
import { codecFor, readActionStats, type TrainingExample, TrainingExampleSchema } from '../lib/actions/index.js';
import { readValidated } from '../lib/io/index.js';

/** --config: a model config.json (a checkpoint's works: its vlakit block is left out). */
async function readModelConfig(file: string) {
  const { readJsonFile } = await import('../lib/io/json-file.js');
  const { VlaConfigSchema } = await import('../lib/model/config.js');
  const { vlakit: _, ...config } = readJsonFile(file, VlaConfigSchema, { what: 'model config (--config)' }) as Record<string, unknown>;
  return config as unknown as import('../lib/model/config.js').VlaConfig;
}

export default class TrainSft extends VlakitCommand {
  static summary = 'Fine-tune the VLA model on training examples: LoRA or full, frozen lower layers, action + lambda_r x reasoning loss.';
  static description =
    'Trains with TensorFlow.js on the fastest backend that loads (tfjs-node-gpu, tfjs-node, wasm, cpu; --backend to force one). Writes checkpoints (model.safetensors, PEFT adapter files with --lora, config.json, tokenizer.json, optimizer and trainer state) every --save-every steps and at the end, metrics as JSONL, and evaluates on the val split every --eval-every steps. The -o directory holds one run (run.json: its data hash, settings and seed): a new run refuses a directory that holds anything unless --overwrite, which replaces it once the new run has a checkpoint or finishes; --resume continues the run only with the same data, settings and seed.';
  static strict = false;
  static args = { input: Args.string({ description: 'training example records (from vlakit relabel); "-" or nothing for stdin', required: false, ignoreStdin: true }) };
  static examples = [
    { description: 'A tiny model from scratch on the built-in demonstrations', command: '<%= config.bin %> train-sft examples.jsonl --preset tiny --steps 200 -o runs/sft' },
    { description: 'VLM2VLA: LoRA on a base checkpoint', command: '<%= config.bin %> train-sft examples.jsonl --init runs/base --lora --lora-r 16 --lora-alpha 32 --lora-targets q,k,v,o,gate,up,down -o runs/vla' },
    { description: 'LoRA on a Hugging Face SmolVLM, vision tower frozen (features cached); the run directory is a PEFT adapter', command: '<%= config.bin %> train-sft examples.jsonl --init models/smolvlm-256m-instruct --lora --freeze-vision -o runs/smolvla' },
    { description: 'ReFineVLA: lower layers frozen, reasoning weighted 0.5', command: '<%= config.bin %> train-sft refinevla.jsonl --init runs/base --freeze-layers 4 --lambda-r 0.5 -o runs/refine' },
    { description: 'A diffusion action head (RoboAlign\'s) on a trained backbone, the backbone frozen, 10 DDIM steps at inference', command: '<%= config.bin %> train-sft examples.jsonl --init runs/sft --action-head diffusion --freeze-backbone --inference-steps 10 -o runs/head' },
    { description: 'Continue an interrupted run exactly', command: '<%= config.bin %> train-sft examples.jsonl --resume -o runs/sft' },
    { description: 'Replace the run in runs/sft with a new one (the old one stays until the new one has a checkpoint)', command: '<%= config.bin %> train-sft examples.jsonl --lora --init runs/base --overwrite -o runs/sft' },
  ];
  static flags = {
    output: Flags.string({ char: 'o', description: 'run directory (run.json, checkpoints, final model, metrics.jsonl); one run per directory', required: true, helpValue: 'DIR' }),
    preset: Flags.string({ description: 'model size when starting from scratch', options: ['tiny', 'mini', 'small', 'base'], default: 'tiny' }),
    config: Flags.string({ description: 'a model config.json for a new model instead of --preset (sizes, the patch stem, keypoint tokens: docs/MODEL.md); its vocab_size and num_cameras come from the tokenizer and the data', helpValue: 'FILE' }),
    init: Flags.string({ description: 'start from this checkpoint: a vlakit checkpoint, or a Hugging Face checkpoint (config.json + safetensors; LoRA only, inputs through its processor, adapters saved in PEFT\'s layout)', helpValue: 'DIR' }),
    resume: Flags.boolean({ description: 'continue the run in -o from its latest checkpoint, exactly (the same data, settings and seed)' }),
    overwrite: sharedFlags.overwrite,
    'vocab-size': int({ description: 'vocabulary of the tokenizer built from the examples (from scratch)', default: 512, min: 64, max: 262_144 }),
    tokenizer: Flags.string({ description: 'a Hugging Face tokenizer.json to use instead (from scratch), e.g. Gemma-3\'s for the token ablation', helpValue: 'FILE' }),
    'vocab-from': Flags.string({ description: 'more training examples whose text the new tokenizer must cover, not trained on (e.g. the robot data a base VLM will be fine-tuned on)', multiple: true, helpValue: 'FILE' }),
    cameras: int({ description: 'camera slots of a new model (default: the most images of any example)', min: 1, max: 16 }),
    lora: Flags.boolean({ description: 'train LoRA adapters only' }),
    'lora-r': int({ description: 'LoRA rank', default: 16, min: 1, max: 1024 }),
    'lora-alpha': int({ description: 'LoRA alpha', default: 32, min: 1, max: 4096 }),
    'lora-targets': Flags.string({ description: 'LoRA target modules by their Hugging Face names (q_proj, fc1...; q,k,v,o,gate,up,down stand for the *_proj of VLM2VLA\'s set)', default: 'q,k,v,o,gate,up,down' }),
    'freeze-layers': int({ description: 'freeze the first N decoder layers', default: 0, min: 0, max: 1000 }),
    'freeze-vision': Flags.boolean({ description: 'freeze the vision tower (a Hugging Face VLM: no adapters on it, and each image\'s features computed once, cached by content)' }),
    'lambda-r': decimal({ description: 'weight of the reasoning loss', default: '1', min: 0, max: 1000 }),
    'ground-weight': decimal({ description: 'built-in model with keypoints: weight of the grounding loss, which teaches keypoint k to look at the k-th object the prompt names (examples with `ground` targets: relabel --ground, eval-vqa --ground)', min: 0, max: 1000, minExclusive: true }),
    lr: decimal({ description: 'peak learning rate', default: '3e-4', min: 0, minExclusive: true, max: 1 }),
    warmup: int({ description: 'warmup steps (default: 10% of the steps, at most 10)', min: 0, max: 10_000_000 }),
    steps: int({ description: 'optimizer steps (default: from --epochs)', min: 1, max: 10_000_000, warnAbove: 100_000 }),
    epochs: decimal({ description: 'epochs, when --steps is not given', default: '1', min: 0, minExclusive: true, max: 100_000 }),
    'batch-size': int({ description: 'examples per micro-batch', default: 8, min: 1, max: 4096 }),
    'grad-accum': int({ description: 'micro-batches per optimizer step', default: 1, min: 1, max: 1024 }),
    clip: decimal({ description: 'gradient clipping by global norm (0: off)', default: '1', min: 0 }),
    'weight-decay': decimal({ description: 'AdamW decoupled weight decay', default: '0.01', min: 0, max: 1 }),
    seed: int({ description: 'seed: the same seed gives the same run', default: 0, min: 0, max: 2 ** 32 - 1 }),
    'save-every': int({ description: 'checkpoint every N steps', min: 1, max: 10_000_000 }),
    'eval-every': int({ description: 'evaluate on the val split every N steps', min: 1, max: 10_000_000 }),
    'eval-limit': int({ description: 'evaluate on at most N val examples, evenly spread over the split (default: all; a val split of thousands takes minutes on the CPU)', min: 1, max: 10_000_000, helpValue: 'N' }),
    stats: Flags.string({ description: 'action statistics to keep with the model (relabel --stats-out)', helpValue: 'FILE' }),
    oversample: Flags.string({ description: 'training examples whose prompt contains TEXT come K times in every epoch (the first rule that matches; repeatable): a rare skill of the mixture seen more often, e.g. "up and away=8" for the few steps of each episode that retract the hand', multiple: true, helpValue: 'TEXT=K' }),
    backend: Flags.string({ description: 'force a TensorFlow.js backend', options: ['tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'] }),
    workers: int({ description: 'data-parallel threads (the built-in model or a Hugging Face checkpoint\'s LoRA adapters, with or without an action head): each batch split across them and their gradients summed; the WebAssembly backend uses one core per thread, so 2 on a 2-core machine trains about twice as fast', default: 1, min: 1, max: 64 }),
    'action-head': Flags.string({ description: 'train a continuous action head (the built-in model, or a Hugging Face checkpoint with --lora or --freeze-backbone): a denoiser over the action chunk conditioned on the backbone\'s features (docs/MODEL.md)', options: ['diffusion', 'flow'] }),
    'lang-weight': decimal({ description: 'action head: weight of the language loss next to the head\'s', default: '1', min: 0, max: 1000 }),
    'inference-steps': int({ description: 'action head: denoising steps at inference (DDIM or Euler), stored with the head', default: 10, min: 1, max: 1000 }),
    'head-hidden': int({ description: 'action head: width of its MLP', default: 256, min: 8, max: 16_384 }),
    'head-layers': int({ description: 'action head: residual MLP blocks', default: 2, min: 0, max: 64 }),
    'head-prediction': Flags.string({ description: 'action head, diffusion: what the denoiser predicts, the noise or the clean chunk', options: ['epsilon', 'sample'], default: 'epsilon' }),
    'head-horizon': int({ description: 'action head: actions per chunk (default: the longest chunk of the data; shorter chunks repeat their last action)', min: 1, max: 1024 }),
    'head-named-keypoints': int({ description: 'action head, built-in model whose keypoints are named (vision_config.keypoint_names, trained with --ground-weight): the readouts of the keypoints of the first N objects the prompt names are appended to the head\'s features (implies --head-keypoints)', min: 1, max: 8, helpValue: 'N' }),
    'head-keypoints': Flags.boolean({ description: 'action head, built-in model with keypoints: the vision tower\'s keypoint readouts (spatial softmax) go to the head\'s features directly, beside the decoder\'s hidden states' }),
    'freeze-backbone': Flags.boolean({ description: 'action head: train the head alone (the backbone, or the LoRA adapters of a Hugging Face checkpoint, as they start; a Hugging Face checkpoint without --lora: the run stores a zero rank-1 adapter)' }),
    quiet: sharedFlags.quiet,
    'log-every': logEveryFlag,
    json: Flags.boolean({ description: 'print the result as JSON on stderr' }),
  };

  static flagRules: FlagRule[] = [
    ...allOnlyWith(['lora-r', 'lora-alpha', 'lora-targets'], '--lora', (i) => i.flags.lora === true),
    ...allOnlyWith(['lang-weight', 'inference-steps', 'head-hidden', 'head-layers', 'head-horizon', 'head-keypoints', 'head-named-keypoints', 'freeze-backbone'], '--action-head', (i) => i.given.has('action-head')),
    onlyWith('head-prediction', '--action-head diffusion', (i) => i.flags['action-head'] === 'diffusion'),
    exclusive('steps', 'epochs', '--epochs sets the steps when --steps is not given'),
    exclusive('tokenizer', 'vocab-size', 'a tokenizer.json has its own vocabulary'),
    exclusive('config', 'preset', '--config gives the sizes --preset would'),
    ...allOnlyWith(['preset', 'config', 'vocab-size', 'tokenizer', 'vocab-from', 'cameras'], 'a new model (not with --init, whose checkpoint has them)', (i) => !i.given.has('init')),
  ];

  async run(): Promise<void> {
    const { argv, flags } = await this.parse(TrainSft);
    const inputs = argv.length ? (argv as string[]) : ['-'];
    const num = (s: string, name: string) => parseNumber(s, name, 0);
    const { selectBackend } = await import('../lib/model/backend.js');
    const { trainSft } = await import('../lib/train/sft.js');
    const { parseOversample } = await import('../lib/train/data.js');
    const oversample = flags.oversample?.map(parseOversample);
    const { isHfCheckpoint } = await import('../lib/model/arch/hf.js');
    const hf = flags.init !== undefined && isHfCheckpoint(flags.init);
    const processor = hf ? await (await import('../lib/model/processor/index.js')).openProcessor(flags.init!) : undefined;
    const backend = await selectBackend(flags.backend);
    const examples: TrainingExample[] = [];
    for await (const r of readValidated(inputs, 'training_example', TrainingExampleSchema, 'train-sft reads training examples (from vlakit relabel)', { signal: this.abort.signal })) examples.push(r.value);
    if (!examples.length) throw new VlakitError('E_USAGE', 'no training examples in the input');
    const vocabFrom: TrainingExample[] = [];
    if (flags['vocab-from']?.length) for await (const r of readValidated(flags['vocab-from'], 'training_example', TrainingExampleSchema, '--vocab-from reads training examples', { signal: this.abort.signal })) vocabFrom.push(r.value);
    const stats = flags.stats ? readActionStats(flags.stats) : undefined;
    const progress = await startProgress('train-sft', !flags.quiet && !flags.json, { logEvery: flags['log-every'], initial: { unit: 'steps', total: flags.steps } });
    this.note(`vlakit train-sft: backend ${backend}; ${examples.length} examples`, flags.quiet || flags.json);
    try {
      const res = await trainSft({
        examples,
        outDir: flags.output,
        preset: flags.preset as 'tiny',
        sizes: flags.config ? await readModelConfig(flags.config) : undefined,
        init: flags.init,
        processor,
        resume: flags.resume,
        overwrite: flags.overwrite,
        inputs: [...inputs, ...(flags['vocab-from'] ?? []), ...(flags.config ? [flags.config] : []), ...(flags.stats ? [flags.stats] : []), ...(flags.tokenizer ? [flags.tokenizer] : [])],
        vocabSize: flags['vocab-size'],
        tokenizerFile: flags.tokenizer,
        vocabFrom,
        cameras: flags.cameras,
        lora: flags.lora ? { r: flags['lora-r'], alpha: flags['lora-alpha'], targets: flags['lora-targets'].split(',').map((s) => s.trim()) } : undefined,
        freezeLayers: flags['freeze-layers'],
        freezeVision: flags['freeze-vision'],
        lambdaR: num(flags['lambda-r'], 'lambda-r'),
        groundWeight: flags['ground-weight'] === undefined ? undefined : num(flags['ground-weight'], 'ground-weight'),
        oversample,
        lr: num(flags.lr, 'lr'),
        warmup: flags.warmup,
        steps: flags.steps,
        epochs: num(flags.epochs, 'epochs'),
        batchSize: flags['batch-size'],
        gradAccum: flags['grad-accum'],
        clip: num(flags.clip, 'clip'),
        weightDecay: num(flags['weight-decay'], 'weight-decay'),
        seed: flags.seed,
        saveEvery: flags['save-every'],
        evalEvery: flags['eval-every'],
        evalLimit: flags['eval-limit'],
        codec: codecFor(examples[0].meta.representation, examples[0].meta.codec), // every codec from its spec; older token/bin examples without one: token accuracy only
        actionStats: stats,
        signal: this.abort.signal,
        workers: flags.workers,
        backend,
        actionHead: flags['action-head']
          ? { objective: flags['action-head'] as 'diffusion' | 'flow', langWeight: num(flags['lang-weight'], 'lang-weight'), inferenceSteps: flags['inference-steps'], hidden: flags['head-hidden'], layers: flags['head-layers'], horizon: flags['head-horizon'], prediction: flags['head-prediction'] as 'epsilon' | 'sample', freezeBackbone: flags['freeze-backbone'], keypoints: flags['head-keypoints'], namedKeypoints: flags['head-named-keypoints'] }
          : undefined,
        onMetrics: sftProgress(progress, { saveEvery: flags['save-every'] }),
      });
      progress.stop();
      if (flags.json) process.stderr.write(`${JSON.stringify({ backend, ...res })}\n`);
      else {
        this.note(`vlakit train-sft: ${res.steps} steps, final loss ${res.finalLoss.toFixed(4)}; ${res.parameters} parameters, ${res.trainable} trained; model in ${res.outDir}`, flags.quiet);
        if (res.eval) this.note(`vlakit train-sft: val: action token accuracy ${(res.eval.actionTokenAccuracy * 100).toFixed(1)}%${res.eval.actionL1 !== undefined ? `, action L1 ${res.eval.actionL1.toFixed(4)} m` : ''} (${res.eval.examples} examples, ${res.eval.undecodable} undecodable)`, flags.quiet);
        const h = res.eval?.head;
        if (h) this.note(`vlakit train-sft: val: action head loss ${h.loss.toFixed(4)}, chunk MAE ${h.mae.toFixed(4)} (per dimension ${h.maeDims.map((v) => v.toFixed(4)).join(', ')})${h.gripperAccuracy !== undefined ? `, gripper accuracy ${(h.gripperAccuracy * 100).toFixed(1)}%` : ''} (${h.examples} examples)`, flags.quiet);
        const g = res.eval?.ground;
        if (g) this.note(`vlakit train-sft: val: keypoints a median ${(g.medianError * 100).toFixed(1)}% of the image from their grounding targets, ${(g.missRate * 100).toFixed(1)}% more than a stem cell off (${g.targets} targets; per object in metrics.jsonl)`, flags.quiet);
      }
    } finally {
      progress.stop();
    }
  }
}
