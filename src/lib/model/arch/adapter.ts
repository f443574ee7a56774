/**
 * PEFT LoRA adapters as PEFT saves them (`adapter_config.json` + `adapter_model.safetensors`, tensors named
 * `base_model.model.<module>.lora_A.weight` [r, in] and `.lora_B.weight` [out, r]), folded into a Hugging Face
 * checkpoint's weights: W += scale * B A, scale = lora_alpha / r (lora_alpha / sqrt(r) with rsLoRA). An adapter
 * trained elsewhere (TRL/PEFT on a GPU cluster) then runs, and exports, as part of its base model.
 */
import { existsSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { canonicalTensorName } from './registry.js';
import { VlakitError } from '../../errors.js';
import { readJsonFile } from '../../io/json-file.js';
import { type NamedArray, readSafetensors, writeSafetensors } from '../safetensors.js';
import type { HfCheckpoint } from './hf.js';

const PeftConfigSchema = z.looseObject({
  peft_type: z.literal('LORA', { message: 'expected a LoRA adapter (peft_type "LORA")' }),
  r: z.number().int().positive(),
  lora_alpha: z.number().positive(),
  use_rslora: z.boolean().default(false),
  fan_in_fan_out: z.boolean().default(false),
  use_dora: z.boolean().default(false),
  modules_to_save: z.array(z.string()).nullish(),
  base_model_name_or_path: z.string().nullish(),
});
export type PeftConfig = z.infer<typeof PeftConfigSchema>;

const PREFIX = 'base_model.model.';

export interface AppliedAdapter {
  dir: string;
  r: number;
  alpha: number;
  scale: number;
  /** The modules whose weights changed, with their HF names. */
  modules: string[];
}

/**
 * Folds the adapter in `dir` into `ck`'s weights (in place).
 * @example applyPeftAdapter(loadHfCheckpoint('models/smolvlm'), 'runs/trl-lora')
 */
export function applyPeftAdapter(ck: HfCheckpoint, dir: string): AppliedAdapter {
  const cfgFile = path.join(dir, 'adapter_config.json');
  const cfg = readJsonFile(cfgFile, PeftConfigSchema, { what: 'PEFT adapter config', code: 'E_MODEL' });
  const refuse = (what: string, field: string) => new VlakitError('E_MODEL', `${what} is not supported; vlakit folds plain LoRA adapters`, { file: cfgFile, field });
  if (cfg.fan_in_fan_out) throw refuse('fan_in_fan_out (Conv1D layouts)', 'fan_in_fan_out');
  if (cfg.use_dora) throw refuse('DoRA', 'use_dora');
  if (cfg.modules_to_save?.length) throw refuse(`modules_to_save (${cfg.modules_to_save.join(', ')})`, 'modules_to_save');
  const weights = path.join(dir, 'adapter_model.safetensors');
  if (!existsSync(weights)) throw new VlakitError('E_NOT_FOUND', existsSync(path.join(dir, 'adapter_model.bin')) ? 'adapter_model.bin (a pickle) is not read; save the adapter with safetensors' : 'no adapter_model.safetensors', { file: dir });
  const { tensors } = readSafetensors(weights);
  const scale = cfg.use_rslora ? cfg.lora_alpha / Math.sqrt(cfg.r) : cfg.lora_alpha / cfg.r;
  const modules: string[] = [];
  for (const [name, a] of tensors) {
    const m = /^(.*)\.lora_A(?:\.default)?\.weight$/.exec(name);
    if (!m) {
      if (!/\.lora_B(?:\.default)?\.weight$/.test(name)) throw new VlakitError('E_MODEL', `tensor ${name} is not a LoRA A or B matrix`, { file: weights, field: name });
      continue;
    }
    const b = tensors.get(name.replace('.lora_A.', '.lora_B.'));
    if (!b) throw new VlakitError('E_MODEL', `${name} has no lora_B partner`, { file: weights, field: name });
    // the module as the base model names it (an adapter trained on transformers >= 4.52 uses its newer names)
    const module = canonicalTensorName(ck.arch, `${m[1].startsWith(PREFIX) ? m[1].slice(PREFIX.length) : m[1]}.weight`).slice(0, -'.weight'.length);
    const w = ck.tensors.get(`${module}.weight`);
    if (!w) throw new VlakitError('E_MODEL', `the adapter changes ${module}, which the base model (${ck.arch.modelType}) does not have: an adapter of another model?`, { file: weights, field: name });
    const [out, inp] = [w.shape[0], w.data.length / w.shape[0]];
    const r = a.shape[0];
    if (a.shape.join(',') !== `${r},${inp}` || b.shape.join(',') !== `${out},${r}`) {
      throw new VlakitError('E_MODEL', `${module}: lora_A [${a.shape}] and lora_B [${b.shape}] do not fit the weight [${w.shape}] (expected [r, ${inp}] and [${out}, r])`, { file: weights, field: name });
    }
    // W [out, in] += scale * B [out, r] A [r, in]
    for (let o = 0; o < out; o++) {
      for (let k = 0; k < r; k++) {
        const bk = scale * b.data[o * r + k];
        if (bk === 0) continue;
        const row = o * inp;
        const arow = k * inp;
        for (let i = 0; i < inp; i++) w.data[row + i] += bk * a.data[arow + i];
      }
    }
    modules.push(module);
  }
  if (!modules.length) throw new VlakitError('E_MODEL', 'the adapter holds no LoRA matrices', { file: weights });
  return { dir, r: cfg.r, alpha: cfg.lora_alpha, scale, modules: modules.sort() };
}

/** A LoRA adapter to save: its rank, alpha, PEFT target_modules, and per module (HF name) lora_A [r, in] and lora_B [out, r]. */
export interface PeftAdapter {
  r: number;
  alpha: number;
  /** PEFT's target_modules: module name suffixes (q_proj, ...) or, when only some of the matching modules are adapted, their full names. */
  targetModules: string[];
  /** The base model (PEFT's base_model_name_or_path). */
  base: string;
  tensors: Map<string, { a: NamedArray; b: NamedArray }>;
}

/** adapter_config.json as PEFT writes it for a plain LoRA adapter of a causal LM. */
export function peftAdapterConfig(a: Omit<PeftAdapter, 'tensors'>): Record<string, unknown> {
  return {
    alpha_pattern: {},
    auto_mapping: null,
    base_model_name_or_path: a.base,
    bias: 'none',
    exclude_modules: null,
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    layer_replication: null,
    layers_pattern: null,
    layers_to_transform: null,
    loftq_config: {},
    lora_alpha: a.alpha,
    lora_bias: false,
    lora_dropout: 0,
    megatron_config: null,
    megatron_core: 'megatron.core',
    modules_to_save: null,
    peft_type: 'LORA',
    r: a.r,
    rank_pattern: {},
    revision: null,
    target_modules: a.targetModules,
    task_type: 'CAUSAL_LM',
    use_dora: false,
    use_rslora: false,
  };
}

/**
 * Writes `adapter_config.json` and `adapter_model.safetensors` into `dir` as PEFT's `save_pretrained` does (tensor
 * names `base_model.model.<module>.lora_A.weight` [r, in] / `.lora_B.weight` [out, r], metadata format "pt"), so that
 * `PeftModel.from_pretrained(base, dir)` and applyPeftAdapter load it.
 * @example await writePeftAdapter('runs/vla', { r: 16, alpha: 32, targetModules: ['q_proj'], base: 'models/smolvlm', tensors })
 */
export async function writePeftAdapter(dir: string, a: PeftAdapter): Promise<void> {
  const out = new Map<string, NamedArray>();
  for (const [module, t] of a.tensors) {
    out.set(`${PREFIX}${module}.lora_A.weight`, t.a);
    out.set(`${PREFIX}${module}.lora_B.weight`, t.b);
  }
  await writeSafetensors(path.join(dir, 'adapter_model.safetensors'), out, { format: 'pt' });
  await fsp.writeFile(path.join(dir, 'adapter_config.json'), `${JSON.stringify(peftAdapterConfig(a), null, 2)}\n`);
}

/** Reads a PEFT adapter's config and its LoRA matrices by module (HF name), without a base model (resuming training). */
export function readPeftAdapter(dir: string): { config: PeftConfig; tensors: Map<string, { a: NamedArray; b: NamedArray }> } {
  const cfgFile = path.join(dir, 'adapter_config.json');
  const config = readJsonFile(cfgFile, PeftConfigSchema, { what: 'PEFT adapter config', code: 'E_MODEL' });
  const weights = path.join(dir, 'adapter_model.safetensors');
  if (!existsSync(weights)) throw new VlakitError('E_NOT_FOUND', 'no adapter_model.safetensors', { file: dir });
  const { tensors } = readSafetensors(weights);
  const out = new Map<string, { a: NamedArray; b: NamedArray }>();
  for (const [name, a] of tensors) {
    const m = /^(?:base_model\.model\.)?(.*)\.lora_A(?:\.default)?\.weight$/.exec(name);
    if (!m) continue;
    const b = tensors.get(name.replace('.lora_A.', '.lora_B.'));
    if (!b) throw new VlakitError('E_MODEL', `${name} has no lora_B partner`, { file: weights, field: name });
    out.set(m[1], { a, b });
  }
  return { config, tensors: out };
}
