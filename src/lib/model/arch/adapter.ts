/**
 * PEFT LoRA adapters as PEFT saves them (`adapter_config.json` + `adapter_model.safetensors`, tensors named
 * `base_model.model.<module>.lora_A.weight` [r, in] and `.lora_B.weight` [out, r]), folded into a Hugging Face
 * checkpoint's weights: W += scale * B A, scale = lora_alpha / r (lora_alpha / sqrt(r) with rsLoRA). An adapter
 * trained elsewhere (TRL/PEFT on a GPU cluster) then runs, and exports, as part of its base model.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { VlakitError } from '../../errors.js';
import { readJsonFile } from '../../io/json-file.js';
import { readSafetensors } from '../safetensors.js';
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
    const module = m[1].startsWith(PREFIX) ? m[1].slice(PREFIX.length) : m[1];
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
