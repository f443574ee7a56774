import { Flags } from '@oclif/core';
import { z } from 'zod';
import { VlakitCommand, sharedFlags } from '../../lib/cli/base.js';
import { int, parseSize, size } from '../../lib/cli/flags.js';

export default class ModelInit extends VlakitCommand {
  static summary = 'Write a Hugging Face checkpoint with random weights for a config.json (tests, pipelines, benchmarks at a real size).';
  static description = 'As transformers\' from_config + save_pretrained: every tensor the architecture has, with transformers\' names and shapes, normal(0, initializer_range) for matrices and embeddings, ones for norms, zeros for biases, in F32, F16 or BF16, one file or shards with an index.';
  static examples = [
    { description: 'A random Llama at a given config, BF16', command: '<%= config.bin %> model init --config config.json --dtype bf16 -o models/random-llama' },
    { description: 'Sharded as Hugging Face shards large models', command: '<%= config.bin %> model init --config config.json --max-shard-size 2GB -o models/random' },
  ];
  static flags = {
    config: Flags.string({ description: 'a config.json (its model_type picks the architecture)', required: true, helpValue: 'FILE' }),
    dtype: Flags.string({ description: 'weight dtype on disk', options: ['f32', 'f16', 'bf16'], default: 'f32' }),
    seed: int({ description: 'random seed', default: 0, min: 0, max: 2 ** 32 - 1 }),
    'max-shard-size': size({ description: 'shard the weights past this size (e.g. 2GB)', helpValue: 'SIZE', min: 1024 }),
    output: Flags.string({ char: 'o', description: 'the checkpoint directory to write (an existing one only with --overwrite)', required: true, helpValue: 'DIR' }),
    overwrite: sharedFlags.overwrite,
    quiet: Flags.boolean({ char: 'q', description: 'no summary on stderr' }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(ModelInit);
    const { readJsonFile } = await import('../../lib/io/json-file.js');
    const { initCheckpoint } = await import('../../lib/model/arch/manage.js');
    const config = readJsonFile(flags.config, z.record(z.string(), z.unknown()), { what: 'model config', code: 'E_MODEL' });
    const dtype = flags.dtype.toUpperCase() as 'F32' | 'F16' | 'BF16';
    const r = await initCheckpoint(config, flags.output, { dtype, seed: flags.seed, maxShardBytes: flags['max-shard-size'] ? parseSize(flags['max-shard-size']) : undefined, output: this.outputOptions(flags, [flags.config]) });
    this.note(`vlakit model init: ${r.parameters.toLocaleString('en-US')} parameters (${dtype}) -> ${r.files.join(', ')}`, flags.quiet);
  }
}
