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
import { type NamedArray, readSafetensors, writeSafetensors } from './safetensors.js';

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

/** Replaces `dir` with the files written by `fill` into a fresh temporary directory. */
export async function writeDirAtomic(dir: string, fill: (tmp: string) => Promise<void>): Promise<void> {
  const tmp = `${dir.replace(/\/$/, '')}.tmp-${process.pid}`;
  await fsp.rm(tmp, { recursive: true, force: true });
  await fsp.mkdir(tmp, { recursive: true });
  try {
    await fill(tmp);
    const old = `${dir.replace(/\/$/, '')}.old-${process.pid}`;
    if (existsSync(dir)) await fsp.rename(dir, old);
    await fsp.rename(tmp, dir);
    await fsp.rm(old, { recursive: true, force: true });
  } catch (err) {
    await fsp.rm(tmp, { recursive: true, force: true });
    throw err;
  }
}

/** Writes the model's files into `dir` (which must exist). */
export async function writeModelFiles(dir: string, model: VlaModel, tokenizerJson: string, extras: CheckpointExtras = {}): Promise<void> {
  const base = [...model.params].filter(([n]) => !n.includes('.lora_'));
  await writeSafetensors(path.join(dir, 'model.safetensors'), await arrays(base), { format: 'vlakit', layout: 'in_out' });
  const config = { ...model.config, vlakit: { action_codec: extras.actionCodec ?? null, weight_layout: 'in_out' } };
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

/** Loads a checkpoint directory (with its LoRA adapters when present). */
export function loadCheckpoint(dir: string): LoadedCheckpoint {
  const cfgFile = path.join(dir, 'config.json');
  if (!existsSync(cfgFile)) throw new VlakitError('E_NOT_FOUND', 'not a vlakit checkpoint: no config.json', { file: dir });
  const { vlakit, ...config } = readJsonFile(cfgFile, CheckpointConfigSchema, { what: 'checkpoint config' });
  const model = new VlaModel(config as VlaConfig);
  for (const [n, a] of readSafetensors(path.join(dir, 'model.safetensors')).tensors) model.params.set(n, newVar(tf.tensor(a.data, a.shape), n));
  const adapterCfg = path.join(dir, 'adapter_config.json');
  if (existsSync(adapterCfg)) {
    const ac = readJsonFile(adapterCfg, AdapterConfigSchema, { what: 'LoRA adapter config' });
    model.lora = { r: ac.r, alpha: ac.lora_alpha, targets: new Set(ac.target_modules), enabled: true };
    for (const [n, a] of readSafetensors(path.join(dir, 'adapter_model.safetensors')).tensors) {
      const name = n.replace(/^base_model\.model\./, '');
      const t = transpose2d(a);
      model.params.set(name, newVar(tf.tensor(t.data, t.shape), name));
    }
  }
  const statsFile = path.join(dir, 'action_stats.json');
  return {
    model,
    tokenizerJson: readFileSync(path.join(dir, 'tokenizer.json'), 'utf8'),
    actionCodec: vlakit?.action_codec ?? undefined,
    actionStats: existsSync(statsFile) ? readJsonFile(statsFile, ActionStatsSchema, { what: 'action statistics' }) : undefined,
  };
}
