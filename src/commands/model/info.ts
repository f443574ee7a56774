import { Args, Flags } from '@oclif/core';
import { VlakitCommand } from '../../lib/cli/base.js';
import { VlakitError } from '../../lib/errors.js';
import type { ProcessorSummary } from '../../lib/model/processor/index.js';

function processorLine(p: ProcessorSummary | { error: string }): string {
  if ('error' in p) return `cannot be built: ${p.error}`;
  const s = p.special;
  const ids = [s.bos !== undefined ? `bos ${s.bos}` : '', `eos ${s.eos.join(',') || 'none'}`, s.pad !== undefined ? `pad ${s.pad}` : '', s.image !== undefined ? `image ${s.image}` : ''].filter(Boolean).join(', ');
  const img = p.image_640x480 ? `; a 640x480 image: ${p.image_640x480.tiles} tile(s), ${p.image_640x480.image_tokens} image tokens` : '';
  return `${p.model_type}${p.tokenizer ? '' : ' (no tokenizer.json: token ids only)'}; ${ids}; ${p.chat_template ? 'chat template' : 'no chat template'}${img}`;
}

export default class ModelInfo extends VlakitCommand {
  static summary = 'Describe a Hugging Face checkpoint: architecture, parameters, dtypes, tensors, processor files, and what vlakit supports of it.';
  static description = 'Reads config.json and the safetensors headers (not the weights), checks every tensor name and shape against the architecture vlakit would build from the config, and lists the processor files present. Exit 1 when vlakit cannot run the checkpoint, with the reasons.';
  static args = { dir: Args.string({ description: 'the checkpoint directory', required: true }) };
  static examples = [{ description: 'A checkpoint', command: '<%= config.bin %> model info models/stories260k' }];
  static flags = { json: Flags.boolean({ description: 'print the description as JSON on stdout' }) };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(ModelInfo);
    const { describeCheckpoint } = await import('../../lib/model/arch/manage.js');
    const info = describeCheckpoint(args.dir);
    let proc: ProcessorSummary | { error: string } | undefined;
    if (info.model_type && !info.builtin) {
      const { describeProcessor } = await import('../../lib/model/processor/index.js');
      try {
        proc = await describeProcessor(args.dir);
      } catch (err) {
        if (!(err instanceof VlakitError)) throw err;
        proc = { error: err.message };
      }
    }
    if (flags.json) process.stdout.write(`${JSON.stringify({ ...info, ...(proc ? { processor_summary: proc } : {}) }, null, 2)}\n`);
    else {
      const lines = [
        `${info.dir}: ${info.model_type} (${info.classes.join(', ') || 'no architectures entry'})`,
        `  parameters ${info.parameters.toLocaleString('en-US')} in ${info.tensors} tensors; dtypes ${Object.entries(info.dtypes).map(([d, n]) => `${d} ${n.toLocaleString('en-US')}`).join(', ') || 'none'}`,
        `  weights: ${info.files.join(', ') || 'none'}`,
        `  processor files: ${info.processor.join(', ') || 'none'}`,
        ...(proc ? [`  processor: ${processorLine(proc)}`] : []),
        !info.supported ? `  vlakit: not supported: ${info.problems.join('; ')}` : info.builtin ? '  vlakit: its own model, a train-sft/train-rl checkpoint (export, rollout, eval-vqa, attn-viz, train-sft/train-rl --init)' : '  vlakit: supported (generate, export, train-sft --init)',
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
    }
    if (!info.supported) process.exitCode = 1;
  }
}
