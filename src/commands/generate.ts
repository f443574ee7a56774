import { Flags } from '@oclif/core';
import { VlakitCommand } from '../lib/cli/base.js';
import { type FlagRule, decimal, exclusive, int, onlyWith } from '../lib/cli/flags.js';
import { VlakitError } from '../lib/errors.js';

export default class Generate extends VlakitCommand {
  static summary = 'Generate text or token ids from any model vlakit loads: a Hugging Face checkpoint or its ONNX export.';
  static description =
    'A sanity check for a model: runs the prompt (text through the model\'s processor, or token ids as given) and prints the generated text on stdout, or with --json the prompt ids, the new ids, the text and why it stopped. Greedy unless --temperature is above 0. A checkpoint runs on TensorFlow.js, an export on onnxruntime.\n\nImages (--image, repeatable) go through the model\'s image processor and take the prompt\'s <image> placeholders in order; with --chat the prompt is one user turn, its images first, rendered by the model\'s chat template with the assistant prompt added. A SmolVLM image at its defaults is up to 17 tiles of 512 x 512: on a CPU, --image-size 512 or --no-image-splitting makes it one.';
  static examples = [
    { description: 'stories260K from BOS, 40 greedy tokens, as ids', command: '<%= config.bin %> generate --model models/stories260k --input-ids 1 --max-new-tokens 40 --json' },
    { description: 'A text prompt through the model\'s tokenizer', command: '<%= config.bin %> generate --model models/SmolLM2-135M --prompt "Once upon a time"' },
    { description: 'The same model exported to ONNX', command: '<%= config.bin %> generate --model out/smollm-onnx --prompt "Once upon a time"' },
    { description: 'A vision-language model on a camera image, as a chat turn, one tile per image', command: '<%= config.bin %> generate --model models/SmolVLM-256M-Instruct --image frame.png --chat --prompt "What is on the table?" --no-image-splitting' },
  ];
  static flags = {
    model: Flags.string({ char: 'm', description: 'a Hugging Face checkpoint directory (config.json + safetensors) or a vlakit export of one', required: true, helpValue: 'DIR' }),
    adapter: Flags.string({ description: 'a PEFT LoRA adapter directory (adapter_config.json + adapter_model.safetensors) folded into the checkpoint', helpValue: 'DIR' }),
    prompt: Flags.string({ char: 'p', description: 'the prompt as text (needs the model\'s tokenizer.json)' }),
    'input-ids': Flags.string({ description: 'the prompt as comma-separated token ids', helpValue: '1,2,3' }),
    image: Flags.string({ description: 'an image file for the prompt (repeatable, in order): one per <image> in --prompt, or with --chat placed before its text', multiple: true, helpValue: 'FILE' }),
    chat: Flags.boolean({ description: 'render --prompt (and the images) as one user turn through the model\'s chat template, assistant prompt added' }),
    'image-size': int({ description: 'resize images so their longest edge is this before tiling (the processor\'s size.longest_edge; smaller is fewer tiles)', min: 1, max: 16384, helpValue: 'PX' }),
    'image-splitting': Flags.boolean({ description: 'split large images into tiles plus a global view (--no-image-splitting: one tile per image); default: the processor config\'s', allowNo: true }),
    'max-new-tokens': int({ description: 'tokens to generate', default: 64, min: 1, max: 1_000_000 }),
    temperature: decimal({ description: 'sampling temperature; 0 is greedy', default: '0', min: 0, max: 10 }),
    'top-p': decimal({ description: 'nucleus sampling mass (with --temperature > 0)', default: '1', min: 0, minExclusive: true, max: 1 }),
    seed: int({ description: 'sampling seed', default: 0, min: 0, max: 2 ** 32 - 1 }),
    cache: Flags.boolean({ description: 'use the KV cache (--no-cache recomputes the sequence each step, for checks)', default: true, allowNo: true }),
    'ignore-eos': Flags.boolean({ description: 'go on past the end-of-sequence token' }),
    backend: Flags.string({ description: 'tfjs backend for a checkpoint', options: ['tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'] }),
    device: Flags.string({ description: 'onnxruntime execution provider for an export', options: ['cpu', 'cuda'], default: 'cpu' }),
    state: Flags.string({ description: 'the robot state for a model whose action head takes one (trained on relabel --state examples): a JSON array of numbers, as observation.state', helpValue: '[x,y,z,g]' }),
    json: Flags.boolean({ description: 'print prompt ids, new ids, text and the stop reason as JSON (a model with an action head: the sampled chunk, the objective, the denoising steps and the time)' }),
  };

  static flagRules: FlagRule[] = [
    exclusive('prompt', 'input-ids', 'the prompt is text or token ids, one of the two'),
    onlyWith('image', '--prompt', (i) => i.given.has('prompt')),
    onlyWith('chat', '--prompt', (i) => i.given.has('prompt')),
    onlyWith('image-size', '--image', (i) => i.given.has('image')),
    onlyWith('image-splitting', '--image', (i) => i.given.has('image')),
    onlyWith('state', '--prompt', (i) => i.given.has('prompt')),
  ];

  async run(): Promise<void> {
    const { flags } = await this.parse(Generate);
    const inputIds = flags['input-ids']?.split(',').map((s) => {
      const v = Number(s.trim());
      if (s.trim() === '' || !Number.isInteger(v) || v < 0) throw new VlakitError('E_USAGE', `--input-ids must be comma-separated integers >= 0, got "${flags['input-ids']}"`);
      return v;
    });
    const { hasActionHead } = await import('../lib/model/action-head.js');
    if (hasActionHead(flags.model)) {
      // a model with an action head answers with a sampled action chunk
      if (flags.prompt === undefined) throw new VlakitError('E_USAGE', `${flags.model} has an action head: pass the prompt as --prompt text`);
      const { generateHeadChunk } = await import('../lib/policy/head-policy.js');
      const r = await generateHeadChunk(flags.model, { prompt: flags.prompt, images: flags.image, seed: flags.seed, state: flags.state === undefined ? undefined : parseState(flags.state), backend: flags.backend, device: flags.device as 'cpu' | 'cuda' });
      process.stdout.write(flags.json ? `${JSON.stringify(r)}\n` : `${JSON.stringify(r.chunk)}\n`);
      return;
    }
    const { generateFromDir } = await import('../lib/infer/causal.js');
    const r = await generateFromDir(flags.model, {
      prompt: flags.prompt,
      inputIds,
      images: flags.image,
      chat: flags.chat,
      imageSize: flags['image-size'],
      imageSplitting: flags['image-splitting'],
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

/** --state: a JSON array of finite numbers. */
function parseState(text: string): number[] {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    v = undefined;
  }
  if (!Array.isArray(v) || !v.length || !v.every((x) => typeof x === 'number' && Number.isFinite(x))) throw new VlakitError('E_USAGE', `--state must be a JSON array of numbers, e.g. [0.4, 0, 0.2, 1]; got ${JSON.stringify(text)}`);
  return v as number[];
}
