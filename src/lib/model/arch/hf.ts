/**
 * Hugging Face checkpoints as they are on disk: config.json (its `model_type` picks the architecture) and
 * model.safetensors or its shards (F32, F16 or BF16, computed in float32). Names and shapes are checked against
 * the architecture's tensor list in one place: a missing, extra or mis-shaped tensor is an error naming it.
 * Names saved by transformers >= 4.52 / 5 (`model.language_model.*`, `model.vision_tower.*`, `lm_head.*`) are
 * renamed to the architecture's (`Architecture.renames`) before the checks.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { VlakitError } from '../../errors.js';
import { readJsonFile } from '../../io/json-file.js';
import { type FloatDtype, type NamedArray, readSafetensorsDir } from '../safetensors.js';
import { type Architecture, architectureOf, canonicalTensorName } from './registry.js';

export interface HfCheckpoint<C = unknown> {
  dir: string;
  arch: Architecture<C>;
  config: C;
  /** The config.json as written (for copying it on). */
  rawConfig: Record<string, unknown>;
  tensors: Map<string, NamedArray>;
  /** The dtype each tensor had on disk. */
  dtypes: Map<string, FloatDtype>;
}

/** Tensors that checkpoints may carry and the model recomputes (old Llama exports saved the rotary frequencies). */
const DERIVED = /\.rotary_emb\.inv_freq$/;

/**
 * True when `dir` holds a Hugging Face checkpoint of an architecture vlakit knows (config.json with model_type);
 * false for vlakit's own checkpoints (model_type vlakit-vla, loaded by model/checkpoint.ts).
 */
export function isHfCheckpoint(dir: string): boolean {
  const cfg = path.join(dir, 'config.json');
  if (!existsSync(cfg)) return false;
  try {
    return !architectureOf(readJsonFile(cfg, z.record(z.string(), z.unknown()))).builtin;
  } catch {
    return false;
  }
}

/** Reads a checkpoint's config and architecture without its weights. */
export function readHfConfig(dir: string): { arch: Architecture<unknown>; config: unknown; rawConfig: Record<string, unknown> } {
  const file = path.join(dir, 'config.json');
  const rawConfig = readJsonFile(file, z.record(z.string(), z.unknown()), { what: 'model config', code: 'E_MODEL' });
  const arch = architectureOf(rawConfig, file);
  return { arch, config: arch.parseConfig(rawConfig, file), rawConfig };
}

/**
 * Loads a checkpoint directory and checks every tensor against the architecture.
 * @example const ckpt = loadHfCheckpoint('../shared/models/stories260k'); // llama, 22 tensors
 */
export function loadHfCheckpoint(dir: string): HfCheckpoint {
  const { arch, config, rawConfig } = readHfConfig(dir);
  const saved = readSafetensorsDir(dir);
  const { tensors, dtypes } = renameTensors(arch, saved.tensors, saved.dtypes, dir);
  const expected = arch.tensors(config);
  const want = new Set(expected.map((t) => t.name));
  for (const t of expected) {
    const got = tensors.get(t.name);
    if (!got) throw new VlakitError('E_MODEL', `the checkpoint has no tensor ${t.name} (shape [${t.shape}]), which ${arch.modelType} needs`, { file: dir });
    if (got.shape.join(',') !== t.shape.join(',')) throw new VlakitError('E_MODEL', `tensor ${t.name} has shape [${got.shape}]; the config says [${t.shape}]`, { file: dir });
  }
  for (const name of [...tensors.keys()]) {
    if (want.has(name)) continue;
    if (DERIVED.test(name)) {
      tensors.delete(name);
      continue;
    }
    // a tied head saved anyway (under either layout's name): the same values as the embedding
    if (isTiedHead(name, want)) {
      tensors.delete(name);
      continue;
    }
    throw new VlakitError('E_MODEL', `tensor ${name} is not part of ${arch.modelType} as configured (a different architecture or config?)`, { file: dir });
  }
  return { dir, arch, config, rawConfig, tensors, dtypes };
}

/** Whether `name` is a head the architecture ties to its embedding (so lists no tensor for). */
export function isTiedHead(name: string, want: Set<string>): boolean {
  return /(^|\.)lm_head\.weight$/.test(name) && !want.has(name) && ![...want].some((w) => w.endsWith('lm_head.weight'));
}

/** The tensors under the architecture's names; two saved names for one tensor (mixed layouts) are an error. */
function renameTensors(arch: Architecture<unknown>, tensors: Map<string, NamedArray>, dtypes: Map<string, FloatDtype>, dir: string): { tensors: Map<string, NamedArray>; dtypes: Map<string, FloatDtype> } {
  if (!arch.renames?.length) return { tensors, dtypes };
  const out = new Map<string, NamedArray>();
  const outTypes = new Map<string, FloatDtype>();
  const from = new Map<string, string>();
  for (const [name, t] of tensors) {
    const to = canonicalTensorName(arch, name);
    const other = from.get(to);
    if (other !== undefined) throw new VlakitError('E_MODEL', `tensors ${other} and ${name} are both ${to}: the checkpoint mixes transformers' old and new (>= 4.52) names`, { file: dir });
    from.set(to, name);
    out.set(to, t);
    const d = dtypes.get(name);
    if (d !== undefined) outTypes.set(to, d);
  }
  return { tensors: out, dtypes: outTypes };
}
