/**
 * Checkpoints saved by transformers >= 4.52 / 5 name Gemma 3's and PaliGemma's weights `model.language_model.*`,
 * `model.vision_tower.*`, `model.multi_modal_projector.*` and `lm_head.*` (the inverse of their
 * `_checkpoint_conversion_mapping`). The reference fixtures rewritten with those names load, give the same logits
 * as with the old names and the NumPy reference's, and `model info` finds nothing missing; a checkpoint that mixes
 * both layouts is refused.
 */
import { copyFileSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../../src/lib/model/backend.js';
import { loadHfCheckpoint } from '../../src/lib/model/arch/hf.js';
import { TfjsCausalLm } from '../../src/lib/infer/causal.js';
import { type NamedArray, readSafetensorsDir, writeSafetensorsDir } from '../../src/lib/model/safetensors.js';
import { tempDir } from '../helpers.js';

const BIN = path.resolve('bin/run.js');
const REF = path.resolve('test/fixtures/reference');
const dir = tempDir('vlakit-names-');

/** transformers >= 4.52's names for the old ones (its _checkpoint_conversion_mapping, forwards). */
const NEW_NAMES: [RegExp, string][] = [
  [/^language_model\.model\./, 'model.language_model.'],
  [/^vision_tower\./, 'model.vision_tower.'],
  [/^multi_modal_projector\./, 'model.multi_modal_projector.'],
  [/^language_model\.lm_head\./, 'lm_head.'],
];
const renamed = (name: string) => NEW_NAMES.reduce((n, [re, to]) => (re.test(n) ? n.replace(re, to) : n), name);

async function writeWith(name: string, out: string, edit: (t: Map<string, NamedArray>) => Map<string, NamedArray>): Promise<string[]> {
  const { tensors } = readSafetensorsDir(path.join(REF, name));
  const t = edit(tensors);
  await writeSafetensorsDir(out, t);
  copyFileSync(path.join(REF, name, 'config.json'), path.join(out, 'config.json'));
  return [...t.keys()];
}

beforeAll(async () => {
  await selectBackend();
});

describe.each(['gemma3-tiny', 'paligemma-tiny'])('%s saved with transformers 5 names', (name) => {
  it('loads, and gives the same logits as the old names (and the NumPy reference within 1e-4)', async () => {
    const out = path.join(dir, name);
    const embed = 'language_model.model.embed_tokens.weight';
    const names = await writeWith(name, out, (t) => {
      const m = new Map([...t].map(([k, v]) => [renamed(k), v]));
      // a tied head saved anyway under the new head name
      if (![...t.keys()].some((k) => k.endsWith('lm_head.weight'))) m.set('lm_head.weight', t.get(embed)!);
      return m;
    });
    expect(names.some((n) => n.startsWith('model.language_model.layers.0.'))).toBe(true);
    expect(names.some((n) => n.startsWith('model.vision_tower.vision_model.'))).toBe(true);
    expect(names.some((n) => n.startsWith('model.multi_modal_projector.'))).toBe(true);
    expect(names.some((n) => /^(language_model|vision_tower|multi_modal_projector)\./.test(n))).toBe(false);
    const inp = JSON.parse(readFileSync(path.join(REF, name, 'inputs.json'), 'utf8')) as { input_ids: number[]; pixel_values: number[]; prefix_length?: number };
    const pixels = Float32Array.from(inp.pixel_values);
    const oldLm = new TfjsCausalLm(loadHfCheckpoint(path.join(REF, name)));
    const newCk = loadHfCheckpoint(out);
    expect(newCk.tensors.has(embed)).toBe(true);
    const newLm = new TfjsCausalLm(newCk);
    try {
      const a = await oldLm.logits(inp.input_ids, pixels, inp.prefix_length);
      const b = await newLm.logits(inp.input_ids, pixels, inp.prefix_length);
      expect(Array.from(b)).toEqual(Array.from(a));
      const { logits } = JSON.parse(readFileSync(path.join(REF, name, 'expected.json'), 'utf8')) as { logits: number[][] };
      const V = logits[0].length;
      const scale = Math.max(...logits.flat().map(Math.abs));
      let worst = 0;
      logits.forEach((row, t) => row.forEach((v, j) => (worst = Math.max(worst, Math.abs(b[t * V + j] - v) / scale))));
      expect(worst).toBeLessThan(1e-4);
    } finally {
      oldLm.dispose();
      newLm.dispose();
    }
    const info = JSON.parse((await execa('node', [BIN, 'model', 'info', out, '--json'], { reject: false })).stdout) as { supported: boolean; problems: string[] };
    expect(info).toMatchObject({ supported: true, problems: [] });
  });

  it('a checkpoint with both names of one tensor is refused, naming both', async () => {
    const out = path.join(dir, `${name}-mixed`);
    await writeWith(name, out, (t) => {
      const v = t.get('multi_modal_projector.mm_input_projection_weight') ?? t.get('multi_modal_projector.linear.weight')!;
      const key = t.has('multi_modal_projector.linear.weight') ? 'multi_modal_projector.linear.weight' : 'multi_modal_projector.mm_input_projection_weight';
      return new Map([...t, [`model.${key}`, v]]);
    });
    expect(() => loadHfCheckpoint(out)).toThrow(/tensors (model\.)?multi_modal_projector\.\S+ and (model\.)?multi_modal_projector\.\S+ are both multi_modal_projector\./);
  });
});

describe('a PEFT adapter saved with transformers 5 module names', () => {
  it('folds onto the module the base model names the old way, exactly as the same adapter with the old names', async () => {
    const { applyPeftAdapter } = await import('../../src/lib/model/arch/adapter.js');
    const { writeSafetensors } = await import('../../src/lib/model/safetensors.js');
    const { mkdirSync, writeFileSync } = await import('node:fs');
    const base = loadHfCheckpoint(path.join(REF, 'gemma3-tiny'));
    const q = 'language_model.model.layers.0.self_attn.q_proj';
    const [out, inp] = base.tensors.get(`${q}.weight`)!.shape;
    const r = 2;
    const A = { shape: [r, inp], data: Float32Array.from({ length: r * inp }, (_, i) => Math.sin(i)) };
    const B = { shape: [out, r], data: Float32Array.from({ length: out * r }, (_, i) => Math.cos(i)) };
    const folded = async (module: string) => {
      const d = path.join(dir, `adapter-${module.split('.')[0]}-${module.length}`);
      mkdirSync(d, { recursive: true });
      writeFileSync(path.join(d, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', r, lora_alpha: 4, target_modules: ['q_proj'] }));
      await writeSafetensors(path.join(d, 'adapter_model.safetensors'), new Map([[`base_model.model.${module}.lora_A.weight`, A], [`base_model.model.${module}.lora_B.weight`, B]]));
      const ck = loadHfCheckpoint(path.join(REF, 'gemma3-tiny'));
      const applied = applyPeftAdapter(ck, d);
      return { modules: applied.modules, w: ck.tensors.get(`${q}.weight`)!.data };
    };
    const old = await folded(q);
    const neu = await folded(renamed(q));
    expect(renamed(q)).toBe('model.language_model.layers.0.self_attn.q_proj');
    expect(neu.modules).toEqual([q]);
    expect(Array.from(neu.w)).toEqual(Array.from(old.w));
    expect(Array.from(neu.w)).not.toEqual(Array.from(base.tensors.get(`${q}.weight`)!.data));
  });
});
