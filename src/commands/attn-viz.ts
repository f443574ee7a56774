import path from 'node:path';
import { Flags } from '@oclif/core';
import { VlakitCommand, sharedFlags } from '../lib/cli/base.js';
import { type FlagRule, decimal, exclusive, int, onlyWith } from '../lib/cli/flags.js';
import { logEveryFlag, startProgress } from '../lib/cli/progress.js';
import { adapterFlag, adaptersFor } from '../lib/cli/adapter-flag.js';
import { VlakitError } from '../lib/errors.js';
import { type TrainingExample, TrainingExampleSchema } from '../lib/actions/index.js';
import { claimOutput, readValidated } from '../lib/io/index.js';

export default class AttnViz extends VlakitCommand {
  static summary = 'Draw where a policy looks when it writes action (or reasoning) tokens: fused attention heatmaps over the camera images.';
  static description =
    'Runs each training example through the model (teacher-forced on its target, or free-running with --generate), takes the attention of the chosen tokens to the image patches in every layer and head, fuses them with top-k over (layer, head) by max or mean (ReFineVLA appendix B.6), and draws the maps over the camera images with a color bar and a caption. --compare puts two models side by side (before and after fine-tuning); when the examples carry the built-in world\'s pixel masks (rollout --masks), each map is scored by the share of attention on the objects the instruction names. Writes one PNG per example into the output directory, a summary.json, and with --json the raw maps.';
  static examples = [
    { description: 'Action tokens of the fine-tuned policy', command: '<%= config.bin %> attn-viz --model runs/sft --input examples.jsonl --tokens action --top-k 5 --fusion max -o viz/' },
    { description: 'Before and after fine-tuning, one panel per reasoning token', command: '<%= config.bin %> attn-viz --compare runs/base,runs/refinevla --input examples.jsonl --tokens reasoning --layout tokens -o viz/' },
    { description: 'The tokens of the digits in the actions, on an export', command: '<%= config.bin %> attn-viz --model runs/sft-onnx --input examples.jsonl --tokens "/[0-9]/" --limit 8 -o viz/' },
  ];
  static flags = {
    model: Flags.string({ description: 'a checkpoint (vlakit\'s or a Hugging Face one), or an export made with --attentions', helpValue: 'DIR' }),
    compare: Flags.string({ description: 'two (or more) models side by side: DIR,DIR or NAME=DIR,NAME=DIR', helpValue: 'A,B' }),
    input: Flags.string({ char: 'i', description: 'training examples (vlakit relabel output); "-" for stdin', default: '-' }),
    tokens: Flags.string({ description: 'which target tokens: action, reasoning, all, A:B (token indices) or /regex/ (over the target text)', default: 'action' }),
    'top-k': int({ description: 'top-k over (layer, head) per patch', default: 5, min: 1, max: 4096 }),
    fusion: Flags.string({ description: 'fusion of the top-k values', options: ['max', 'mean'], default: 'max' }),
    layout: Flags.string({ description: 'example: one picture per example (the tokens averaged); tokens: one panel per token', options: ['example', 'tokens'], default: 'example' }),
    'max-tokens': int({ description: 'layout tokens: panels per example', default: 12, min: 1, max: 256 }),
    generate: Flags.boolean({ description: 'let the model write its own answer and map its tokens (action = after "<Actions>:")' }),
    'max-new-tokens': int({ description: '--generate: the longest answer', default: 256, min: 1, max: 8192 }),
    limit: int({ description: 'at most N examples', min: 1, max: 100_000 }),
    stage: Flags.string({ description: 'only examples of these stages (e.g. actions,refinevla)', helpValue: 'LIST' }),
    alpha: decimal({ description: 'heatmap opacity', default: '0.5', min: 0, max: 1 }),
    output: Flags.string({ char: 'o', description: 'output directory (an existing one only with --overwrite, replaced whole once complete; never one holding an input)', required: true, helpValue: 'DIR' }),
    overwrite: sharedFlags.overwrite,
    json: Flags.boolean({ description: 'also write the raw maps (maps.jsonl)' }),
    device: Flags.string({ description: 'onnxruntime execution provider for exports', options: ['cpu', 'cuda'], default: 'cpu' }),
    backend: Flags.string({ description: 'tfjs backend for checkpoints', options: ['tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'] }),
    adapter: adapterFlag('--compare'),
    quiet: Flags.boolean({ char: 'q', description: 'no progress and summary on stderr' }),
    'log-every': logEveryFlag,
  };

  static flagRules: FlagRule[] = [
    exclusive('model', 'compare', '--compare names every model, A,B'),
    onlyWith('max-new-tokens', '--generate', (i) => i.flags.generate === true),
    onlyWith('max-tokens', '--layout tokens', (i) => i.flags.layout === 'tokens'),
  ];

  async run(): Promise<void> {
    const { flags } = await this.parse(AttnViz);
    const specs: [string, string][] = [];
    if (flags.compare) {
      for (const part of flags.compare.split(',')) {
        const m = /^([^=]+)=(.+)$/.exec(part.trim());
        specs.push(m ? [m[1], m[2]] : [path.basename(path.resolve(part.trim())), part.trim()]);
      }
      if (specs.length < 2) throw new VlakitError('E_USAGE', '--compare takes two models or more: A,B');
    } else if (flags.model) specs.push([path.basename(path.resolve(flags.model)), flags.model]);
    else throw new VlakitError('E_USAGE', 'give the model with --model DIR, or two with --compare A,B');
    const adapters = adaptersFor(flags.adapter, specs.map((s) => s[0]), Boolean(flags.compare));
    const output = this.outputOptions(flags, [flags.input, ...specs.map((s) => s[1]), ...adapters.values()]);
    claimOutput(flags.output, 'dir', output); // before any example is read or model loaded
    const { chooseTokens, attnViz } = await import('../lib/viz/index.js');
    try {
      chooseTokens(flags.tokens, [], []);
    } catch (err) {
      throw new VlakitError('E_USAGE', (err as Error).message);
    }
    const stages = flags.stage ? new Set(flags.stage.split(',').map((s) => s.trim())) : undefined;
    const examples: TrainingExample[] = [];
    for await (const r of readValidated([flags.input], 'training_example', TrainingExampleSchema, 'attn-viz reads training examples (from vlakit relabel)', { signal: this.abort.signal })) {
      const ex = r.value;
      if (stages && !stages.has(ex.meta.stage)) continue;
      if (!ex.images.length) continue;
      examples.push(ex);
      if (flags.limit && examples.length >= flags.limit) break;
    }
    if (!examples.length) throw new VlakitError('E_USAGE', `no examples with images in the input${stages ? ` for stages ${[...stages].join(', ')}` : ''}`);
    const { openModel } = await import('../lib/infer/index.js');
    const models = [];
    try {
      for (const [name, dir] of specs) models.push({ name, runner: await openModel(dir, { device: flags.device as 'cpu', backend: flags.backend, adapter: adapters.get(name) }) });
      const progress = await startProgress('attn-viz', !flags.quiet, { logEvery: flags['log-every'], initial: { unit: 'examples', total: examples.length } });
      let done = 0;
      const res = await attnViz({
        models,
        examples,
        tokens: flags.tokens,
        topK: flags['top-k'],
        fusion: flags.fusion as 'max',
        layout: flags.layout as 'example',
        maxTokens: flags['max-tokens'],
        outDir: flags.output,
        alpha: Number(flags.alpha),
        generate: flags.generate,
        maxNewTokens: flags['max-new-tokens'],
        json: flags.json,
        signal: this.abort.signal,
        output,
        onExample: () => progress.update({ records: ++done }),
      });
      progress.stop();
      const scored = res.flatMap((r) => r.models.filter((m) => m.objectMass !== undefined));
      for (const { name } of models) {
        const mine = scored.filter((m) => m.name === name);
        if (mine.length) this.note(`vlakit attn-viz: ${name}: attention on the named objects ${((mine.reduce((a, m) => a + m.objectMass!, 0) / mine.length) * 100).toFixed(1)}% on average over ${mine.length} examples`, flags.quiet);
      }
      const empty = res.filter((r) => r.models.every((m) => !m.tokens.length)).length;
      this.note(`vlakit attn-viz: ${res.length} pictures in ${flags.output}${empty ? ` (${empty} examples had no ${flags.tokens} tokens)` : ''}`, flags.quiet);
    } finally {
      for (const m of models) await m.runner.dispose();
    }
  }
}
