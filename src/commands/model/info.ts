import { Args, Flags } from '@oclif/core';
import { VlakitCommand } from '../../lib/cli/base.js';

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
    if (flags.json) process.stdout.write(`${JSON.stringify(info, null, 2)}\n`);
    else {
      const lines = [
        `${info.dir}: ${info.model_type} (${info.classes.join(', ') || 'no architectures entry'})`,
        `  parameters ${info.parameters.toLocaleString('en-US')} in ${info.tensors} tensors; dtypes ${Object.entries(info.dtypes).map(([d, n]) => `${d} ${n.toLocaleString('en-US')}`).join(', ') || 'none'}`,
        `  weights: ${info.files.join(', ') || 'none'}`,
        `  processor files: ${info.processor.join(', ') || 'none'}`,
        info.supported ? '  vlakit: supported (generate, export, train-sft --init)' : `  vlakit: not supported: ${info.problems.join('; ')}`,
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
    }
    if (!info.supported) process.exitCode = 1;
  }
}
