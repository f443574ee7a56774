/**
 * What `vlakit model info` and `vlakit model init` do: describe a Hugging Face checkpoint directory (architecture,
 * parameters, dtypes, processor files, what vlakit supports of it), and write a checkpoint with random weights
 * for any config of a registered architecture (as transformers' `from_config` + `save_pretrained` would).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { VlakitError } from '../../errors.js';
import { readJsonFile } from '../../io/json-file.js';
import { type OutputOptions, claimOutput, writeOutputDir } from '../../io/outputs.js';
import { writeFileAtomic } from '../../io/writer.js';
import { Rng } from '../../util/rng.js';
import { INDEX_FILE, type FloatDtype, type NamedArray, readSafetensorsHeader, writeSafetensorsDir } from '../safetensors.js';
import { isTiedHead } from './hf.js';
import { type Architecture, architectureOf, canonicalTensorName } from './registry.js';
import { gridInit } from './ops.js';

const PROCESSOR_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'chat_template.json', 'chat_template.jinja', 'preprocessor_config.json', 'processor_config.json', 'generation_config.json'];

export interface ModelInfo {
  dir: string;
  model_type: string;
  classes: string[];
  /** Whether vlakit can run it, and what it lacks when not. */
  supported: boolean;
  /** vlakit's own model (a train-sft/train-rl checkpoint), not a Hugging Face one. */
  builtin: boolean;
  problems: string[];
  parameters: number;
  tensors: number;
  dtypes: Record<string, number>;
  files: string[];
  processor: string[];
  config: Record<string, unknown>;
}

/**
 * Describes a checkpoint from its config and safetensors headers (the weights are not read).
 * @example const info = describeCheckpoint('../shared/models/stories260k'); info.parameters === 260544
 */
export function describeCheckpoint(dir: string): ModelInfo {
  const cfgFile = path.join(dir, 'config.json');
  const config = readJsonFile(cfgFile, z.record(z.string(), z.unknown()), { what: 'model config', code: 'E_MODEL' });
  const problems: string[] = [];
  let expected: Map<string, number[]> | undefined;
  let classes: string[] = [];
  let arch: Architecture<unknown> | undefined;
  try {
    arch = architectureOf(config, cfgFile);
    classes = arch.classes;
    expected = new Map(arch.tensors(arch.parseConfig(config, cfgFile)).map((t) => [t.name, t.shape]));
  } catch (err) {
    problems.push((err as Error).message);
  }
  const files: string[] = [];
  if (existsSync(path.join(dir, INDEX_FILE))) {
    const idx = readJsonFile(path.join(dir, INDEX_FILE), z.object({ weight_map: z.record(z.string(), z.string()) }), { what: 'safetensors index', code: 'E_MODEL' });
    files.push(...new Set(Object.values(idx.weight_map)));
  } else if (existsSync(path.join(dir, 'model.safetensors'))) files.push('model.safetensors');
  else problems.push('no model.safetensors or model.safetensors.index.json (a config without weights)');
  let parameters = 0;
  let tensors = 0;
  const dtypes: Record<string, number> = {};
  const seen = new Set<string>();
  for (const f of files) {
    for (const [name, t] of readSafetensorsHeader(path.join(dir, f)).tensors) {
      const n = t.shape.reduce((a, b) => a * b, 1);
      parameters += n;
      tensors += 1;
      dtypes[t.dtype] = (dtypes[t.dtype] ?? 0) + n;
      const canon = arch ? canonicalTensorName(arch, name) : name; // transformers >= 4.52 names as the architecture's
      seen.add(canon);
      const want = expected?.get(canon);
      if (expected && !want && !/rotary_emb\.inv_freq$/.test(name) && !isTiedHead(canon, new Set(expected.keys()))) problems.push(`unexpected tensor ${name}`);
      if (want && want.join(',') !== t.shape.join(',')) problems.push(`tensor ${name} has shape [${t.shape}], the config says [${want}]`);
    }
  }
  if (expected && files.length) for (const name of expected.keys()) if (!seen.has(name)) problems.push(`missing tensor ${name}`);
  return {
    dir,
    model_type: String(config.model_type),
    classes: classes.length ? classes : ((config.architectures as string[] | undefined) ?? []),
    supported: problems.length === 0,
    builtin: Boolean(arch?.builtin),
    problems: problems.slice(0, 20),
    parameters,
    tensors,
    dtypes,
    files,
    processor: PROCESSOR_FILES.filter((f) => existsSync(path.join(dir, f))),
    config,
  };
}


export interface InitOptions {
  dtype?: FloatDtype;
  seed?: number;
  /** Shard the weights (model-0000i-of-0000n.safetensors + index) past this many bytes. */
  maxShardBytes?: number;
  /** How -o is written (--overwrite, the inputs it must not replace). */
  output?: OutputOptions;
}

/**
 * Writes a checkpoint with random weights for `config` into `outDir` (whole or not at all; an existing one only
 * with `output.overwrite`): normal
 * with the config's initializer_range for matrices and embeddings, ones for norm weights, zeros for biases.
 * @example await initCheckpoint(readJsonFile('config.json', ...), 'out/random-llama', { dtype: 'BF16', seed: 0 })
 */
export async function initCheckpoint(config: Record<string, unknown>, outDir: string, o: InitOptions = {}): Promise<{ files: string[]; parameters: number }> {
  const arch = architectureOf(config);
  if (arch.builtin) throw new VlakitError('E_USAGE', `model init writes Hugging Face checkpoints; vlakit's own ${arch.modelType} model starts from train-sft --preset`, { field: 'model_type' });
  const c = arch.parseConfig(config);
  claimOutput(outDir, 'dir', o.output ?? {});
  const rng = new Rng(o.seed ?? 0);
  const std = arch.initializerRange(c);
  const tensors = new Map<string, NamedArray>();
  let parameters = 0;
  for (const t of arch.tensors(c)) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    if (t.init === 'ones') data.fill(1);
    else if (t.init === 'grid') data.set(gridInit(t.shape[0]));
    else if (t.init === 'normal') for (let i = 0; i < n; i++) data[i] = rng.normal() * std;
    tensors.set(t.name, { shape: t.shape, data });
    parameters += n;
  }
  const torch = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' }[o.dtype ?? 'F32'];
  const names = await writeOutputDir(outDir, async (tmp) => {
    const files = await writeSafetensorsDir(tmp, tensors, { dtype: o.dtype ?? 'F32', maxShardBytes: o.maxShardBytes });
    await writeFileAtomic(path.join(tmp, 'config.json'), `${JSON.stringify({ ...config, torch_dtype: torch }, null, 2)}\n`);
    return [...files.map((f) => path.basename(f)), 'config.json'];
  }, o.output);
  return { files: names.map((f) => path.join(outDir, f)), parameters };
}
