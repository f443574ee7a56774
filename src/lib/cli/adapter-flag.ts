/** `--adapter`: a PEFT LoRA adapter for a Hugging Face model, one per named model where a command takes several. */
import { Flags } from '@oclif/core';
import { VlakitError } from '../errors.js';

export const adapterFlag = (several: string) =>
  Flags.string({
    description: `a PEFT LoRA adapter directory folded into a Hugging Face checkpoint (its saved action codec and statistics are used); with ${several}: NAME=DIR for the model NAME (repeatable)`,
    helpValue: 'DIR|NAME=DIR',
    multiple: true,
  });

/**
 * The adapter of each model: with one model, `--adapter DIR`; with several, `--adapter NAME=DIR` per model.
 * @example adaptersFor(['vla=runs/lora'], ['base', 'vla'], true) // Map { 'vla' => 'runs/lora' }
 */
export function adaptersFor(values: string[] | undefined, names: string[], several: boolean): Map<string, string> {
  const out = new Map<string, string>();
  for (const v of values ?? []) {
    const m = /^([^=]+)=(.+)$/.exec(v);
    if (several) {
      if (!m) throw new VlakitError('E_USAGE', `with several models, --adapter takes NAME=DIR (one of ${names.join(', ')}), got "${v}"`);
      if (!names.includes(m[1])) throw new VlakitError('E_USAGE', `--adapter ${v}: there is no model named "${m[1]}" (models: ${names.join(', ')})`);
      if (out.has(m[1])) throw new VlakitError('E_USAGE', `--adapter is given twice for ${m[1]}`);
      out.set(m[1], m[2]);
    } else {
      if (out.size) throw new VlakitError('E_USAGE', '--adapter is given twice for one model');
      out.set(names[0], m && names.includes(m[1]) ? m[2] : v);
    }
  }
  return out;
}
