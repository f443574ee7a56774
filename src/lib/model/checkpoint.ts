/**
 * Checkpoints: config.json, model.safetensors (all base weights, [in, out] layout), LoRA adapters as PEFT writes
 * them (adapter_model.safetensors with `base_model.model.<module>.lora_A/B.weight` in PyTorch's [out, in] layout,
 * adapter_config.json), tokenizer.json, and the action representation. Written into a temporary directory and
 * renamed into place, so a checkpoint is whole or absent.
 */
import { existsSync, promises as fsp, readFileSync } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { ActionStatsSchema } from '../actions/stats.js';
import { VlakitError } from '../errors.js';
import { readJsonFile } from '../io/json-file.js';
import { AdapterConfigSchema, CheckpointConfigSchema, type VlaConfig } from './config.js';
import { newVar } from './layers.js';
import { VlaModel } from './model.js';
import { vlakitVla } from './arch/registry.js';
import { type NamedArray, readSafetensors, writeSafetensors } from './safetensors.js';

/** The files of a checkpoint's model (what export and inference read); the optimizer and trainer state are beside them. */
export const MODEL_FILES = ['config.json', 'model.safetensors', 'tokenizer.json', 'action_stats.json', 'adapter_config.json', 'adapter_model.safetensors', 'vlakit.json', 'action_head.json', 'action_head.safetensors'] as const;

export interface CheckpointExtras {
  /** The action codec description (relabel's representation) and statistics, for decoding actions later. */
  actionCodec?: Record<string, unknown>;
  actionStats?: unknown;
  /** Where the base weights came from (PEFT's base_model_name_or_path). */
  baseModel?: string;
}

function transpose2d(a: NamedArray): NamedArray {
  const [r, c] = a.shape;
  const out = new Float32Array(r * c);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out[j * r + i] = a.data[i * c + j];
  return { shape: [c, r], data: out };
}

async function arrays(vars: [string, tf.Variable][]): Promise<Map<string, NamedArray>> {
  const out = new Map<string, NamedArray>();
  for (const [n, v] of vars) out.set(n, { shape: v.shape, data: (await v.data()) as Float32Array });
  return out;
}

/** Writes the model's files into `dir` (which must exist). */
export async function writeModelFiles(dir: string, model: VlaModel, tokenizerJson: string, extras: CheckpointExtras = {}): Promise<void> {
  const base = [...model.params].filter(([n]) => !n.includes('.lora_'));
  await writeSafetensors(path.join(dir, 'model.safetensors'), await arrays(base), { format: 'vlakit', layout: 'in_out' });
  // `lora` records whether the checkpoint has adapters, so that adapter files it does not own are never loaded
  const lora = model.lora ? { r: model.lora.r, alpha: model.lora.alpha, target_modules: [...model.lora.targets] } : null;
  const config = { ...model.config, vlakit: { action_codec: extras.actionCodec ?? null, weight_layout: 'in_out', lora } };
  await fsp.writeFile(path.join(dir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
  await fsp.writeFile(path.join(dir, 'tokenizer.json'), tokenizerJson);
  if (extras.actionStats !== undefined) await fsp.writeFile(path.join(dir, 'action_stats.json'), `${JSON.stringify(extras.actionStats, null, 2)}\n`);
  if (model.lora) {
    const lora = await arrays([...model.params].filter(([n]) => n.includes('.lora_')));
    const peft = new Map<string, NamedArray>();
    for (const [n, a] of lora) peft.set(`base_model.model.${n}`, transpose2d(a)); // [in, r] -> [r, in]; [r, out] -> [out, r]
    await writeSafetensors(path.join(dir, 'adapter_model.safetensors'), peft, { format: 'pt' });
    const adapter = {
      peft_type: 'LORA',
      task_type: 'CAUSAL_LM',
      r: model.lora.r,
      lora_alpha: model.lora.alpha,
      lora_dropout: 0,
      bias: 'none',
      target_modules: [...model.lora.targets],
      base_model_name_or_path: extras.baseModel ?? null,
      inference_mode: true,
    };
    await fsp.writeFile(path.join(dir, 'adapter_config.json'), `${JSON.stringify(adapter, null, 2)}\n`);
  }
}

export interface LoadedCheckpoint {
  model: VlaModel;
  tokenizerJson: string;
  actionCodec?: Record<string, unknown>;
  actionStats?: unknown;
}


function readText(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new VlakitError(code === 'ENOENT' ? 'E_NOT_FOUND' : 'E_IO', `${what} ${code === 'ENOENT' ? 'not found' : `cannot be read (${code ?? (err as Error).message})`}`, { file });
  }
}

/** The checkpoint's tensors against the registry's list for its config: a missing, extra or mis-shaped one is named. */
function checkTensors(tensors: Map<string, NamedArray>, config: VlaConfig, dir: string): void {
  const expected = vlakitVla.tensors(config);
  for (const t of expected) {
    const got = tensors.get(t.name);
    if (!got) throw new VlakitError('E_MODEL', `model.safetensors has no tensor ${t.name} (shape [${t.shape}]), which the config needs`, { file: dir });
    if (got.shape.join(',') !== t.shape.join(',')) throw new VlakitError('E_MODEL', `tensor ${t.name} has shape [${got.shape}]; the config says [${t.shape}]`, { file: dir });
  }
  const want = new Set(expected.map((t) => t.name));
  const extra = [...tensors.keys()].find((n) => !want.has(n));
  if (extra !== undefined) throw new VlakitError('E_MODEL', `tensor ${extra} of model.safetensors is not part of the model as configured`, { file: dir });
}

/**
 * Loads a checkpoint directory, with its LoRA adapters when config.json records them (checkpoints written before
 * that record: when adapter files are present). Adapter files that config.json does not record are refused.
 */
export function loadCheckpoint(dir: string): LoadedCheckpoint {
  const cfgFile = path.join(dir, 'config.json');
  if (!existsSync(cfgFile)) throw new VlakitError('E_NOT_FOUND', 'not a vlakit checkpoint: no config.json', { file: dir });
  const { vlakit, ...config } = readJsonFile(cfgFile, CheckpointConfigSchema, { what: 'checkpoint config', code: 'E_MODEL' });
  const adapterCfg = path.join(dir, 'adapter_config.json');
  const adapterFile = path.join(dir, 'adapter_model.safetensors');
  const hasAdapter = existsSync(adapterCfg) || existsSync(adapterFile);
  const recorded = vlakit?.lora;
  if (recorded === null && hasAdapter) {
    throw new VlakitError('E_MODEL', `config.json records a model without LoRA adapters, yet ${existsSync(adapterCfg) ? 'adapter_config.json' : 'adapter_model.safetensors'} is here: adapter files left by another run, which would change the model; remove them (or train into a fresh directory)`, { file: dir });
  }
  if (recorded && !existsSync(adapterCfg)) throw new VlakitError('E_MODEL', 'config.json records LoRA adapters, but adapter_config.json is missing', { file: dir });
  const model = new VlaModel(config as VlaConfig);
  const tensors = readSafetensors(path.join(dir, 'model.safetensors')).tensors;
  checkTensors(tensors, config as VlaConfig, dir);
  for (const [n, a] of tensors) model.params.set(n, newVar(tf.tensor(a.data, a.shape), n));
  if (recorded || (recorded === undefined && existsSync(adapterCfg))) {
    const ac = readJsonFile(adapterCfg, AdapterConfigSchema, { what: 'LoRA adapter config', code: 'E_MODEL' });
    if (recorded && (ac.r !== recorded.r || ac.lora_alpha !== recorded.alpha || [...ac.target_modules].sort().join(',') !== [...recorded.target_modules].sort().join(','))) {
      throw new VlakitError('E_MODEL', `adapter_config.json (r ${ac.r}, alpha ${ac.lora_alpha}, ${ac.target_modules.join(',')}) is not the adapter config.json records (r ${recorded.r}, alpha ${recorded.alpha}, ${recorded.target_modules.join(',')}): adapter files of another run`, { file: dir });
    }
    model.lora = { r: ac.r, alpha: ac.lora_alpha, targets: new Set(ac.target_modules), enabled: true };
    for (const [n, a] of readSafetensors(adapterFile).tensors) {
      const name = n.replace(/^base_model\.model\./, '');
      const t = transpose2d(a);
      model.params.set(name, newVar(tf.tensor(t.data, t.shape), name));
    }
  }
  const statsFile = path.join(dir, 'action_stats.json');
  return {
    model,
    tokenizerJson: readText(path.join(dir, 'tokenizer.json'), 'the checkpoint\'s tokenizer.json'),
    actionCodec: vlakit?.action_codec ?? undefined,
    actionStats: existsSync(statsFile) ? readJsonFile(statsFile, ActionStatsSchema, { what: 'action statistics' }) : undefined,
  };
}
