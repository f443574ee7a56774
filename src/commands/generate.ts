import { Flags } from '@oclif/core';
import { VlakitCommand } from '../lib/cli/base.js';
import { type FlagRule, decimal, exclusive, int } from '../lib/cli/flags.js';
import { VlakitError } from '../lib/errors.js';

export default class Generate extends VlakitCommand {
  static summary = 'Generate text or token ids from any model vlakit loads: a Hugging Face checkpoint or its ONNX export.';
  static description =
    'A sanity check for a model: runs the prompt (text through the model\'s tokenizer, or token ids as given) and prints the generated text on stdout, or with --json the prompt ids, the new ids, the text and why it stopped. Greedy unless --temperature is above 0. A checkpoint runs on TensorFlow.js, an export on onnxruntime.';
  static examples = [
    { description: 'stories260K from BOS, 40 greedy tokens, as ids', command: '<%= config.bin %> generate --model models/stories260k --input-ids 1 --max-new-tokens 40 --json' },
    { description: 'A text prompt through the model\'s tokenizer', command: '<%= config.bin %> generate --model models/SmolLM2-135M --prompt "Once upon a time"' },
    { description: 'The same model exported to ONNX', command: '<%= config.bin %> generate --model out/smollm-onnx --prompt "Once upon a time"' },
  ];
  static flags = {
    model: Flags.string({ char: 'm', description: 'a Hugging Face checkpoint directory (config.json + safetensors) or a vlakit export of one', required: true, helpValue: 'DIR' }),
    adapter: Flags.string({ description: 'a PEFT LoRA adapter directory (adapter_config.json + adapter_model.safetensors) folded into the checkpoint', helpValue: 'DIR' }),
    prompt: Flags.string({ char: 'p', description: 'the prompt as text (needs the model\'s tokenizer.json)' }),
    'input-ids': Flags.string({ description: 'the prompt as comma-separated token ids', helpValue: '1,2,3' }),
    'max-new-tokens': int({ description: 'tokens to generate', default: 64, min: 1, max: 1_000_000 }),
    temperature: decimal({ description: 'sampling temperature; 0 is greedy', default: '0', min: 0, max: 10 }),
    'top-p': decimal({ description: 'nucleus sampling mass (with --temperature > 0)', default: '1', min: 0, minExclusive: true, max: 1 }),
    seed: int({ description: 'sampling seed', default: 0, min: 0, max: 2 ** 32 - 1 }),
    cache: Flags.boolean({ description: 'use the KV cache (--no-cache recomputes the sequence each step, for checks)', default: true, allowNo: true }),
    'ignore-eos': Flags.boolean({ description: 'go on past the end-of-sequence token' }),
    backend: Flags.string({ description: 'tfjs backend for a checkpoint', options: ['tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'] }),
    device: Flags.string({ description: 'onnxruntime execution provider for an export', options: ['cpu', 'cuda'], default: 'cpu' }),
    json: Flags.boolean({ description: 'print prompt ids, new ids, text and the stop reason as JSON' }),
  };

  static flagRules: FlagRule[] = [exclusive('prompt', 'input-ids', 'the prompt is text or token ids, one of the two')];

  async run(): Promise<void> {
    const { flags } = await this.parse(Generate);
    const inputIds = flags['input-ids']?.split(',').map((s) => {
      const v = Number(s.trim());
      if (s.trim() === '' || !Number.isInteger(v) || v < 0) throw new VlakitError('E_USAGE', `--input-ids must be comma-separated integers >= 0, got "${flags['input-ids']}"`);
      return v;
    });
    const { generateFromDir } = await import('../lib/infer/causal.js');
    const r = await generateFromDir(flags.model, {
      prompt: flags.prompt,
      inputIds,
      adapter: flags.adapter,
      maxNewTokens: flags['max-new-tokens'],
      temperature: Number(flags.temperature),
      topP: Number(flags['top-p']),
      seed: flags.seed,
      useCache: flags.cache,
      stopAtEos: !flags['ignore-eos'],
      backend: flags.backend,
      device: flags.device as 'cpu' | 'cuda',
    });
    process.stdout.write(flags.json ? `${JSON.stringify(r)}\n` : `${r.text ?? r.ids.join(' ')}\n`);
  }
}
