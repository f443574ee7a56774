/** PEFT LoRA adapters folded into Hugging Face checkpoints: against weights merged independently in the test. */
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers.js';
import { selectBackend } from '../../src/lib/model/backend.js';
import { loadHfCheckpoint } from '../../src/lib/model/arch/hf.js';
import { applyPeftAdapter } from '../../src/lib/model/arch/adapter.js';
import { TfjsCausalLm } from '../../src/lib/infer/causal.js';
import { type NamedArray, readSafetensorsDir, writeSafetensors, writeSafetensorsDir } from '../../src/lib/model/safetensors.js';
import { Rng } from '../../src/lib/util/rng.js';

const BIN = path.resolve('bin/run.js');
const BASE = path.resolve('test/fixtures/reference/llama-tiny');
const dir = tempDir('vlakit-adapter-');
const PROMPT = [1, 17, 33, 5, 60, 2, 9];

/** A PEFT-layout adapter on q_proj and v_proj of every layer (r 4, alpha 8), and the same model merged by hand. */
async function makeAdapter(): Promise<{ adapter: string; merged: string }> {
  const base = readSafetensorsDir(BASE).tensors;
  const rng = new Rng(11);
  const r = 4;
  const scale = 8 / r;
  const lora = new Map<string, NamedArray>();
  const merged = new Map<string, NamedArray>([...base].map(([n, t]) => [n, { shape: t.shape, data: Float64Array.from(t.data) as unknown as Float32Array }]));
  for (let l = 0; l < 3; l++) {
    for (const m of ['q_proj', 'v_proj']) {
      const name = `model.layers.${l}.self_attn.${m}`;
      const [out, inp] = base.get(`${name}.weight`)!.shape;
      const A = Float32Array.from({ length: r * inp }, () => rng.normal() * 0.3);
      const B = Float32Array.from({ length: out * r }, () => rng.normal() * 0.3);
      lora.set(`base_model.model.${name}.lora_A.weight`, { shape: [r, inp], data: A });
      lora.set(`base_model.model.${name}.lora_B.weight`, { shape: [out, r], data: B });
      const W = merged.get(`${name}.weight`)!.data;
      for (let o = 0; o < out; o++) for (let i = 0; i < inp; i++) {
        let sum = 0;
        for (let k = 0; k < r; k++) sum += B[o * r + k] * A[k * inp + i];
        W[o * inp + i] += scale * sum;
      }
    }
  }
  const adapter = path.join(dir, 'adapter');
  mkdirSync(adapter);
  writeFileSync(path.join(adapter, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', r, lora_alpha: 8, target_modules: ['q_proj', 'v_proj'], base_model_name_or_path: 'llama-tiny', bias: 'none' }));
  await writeSafetensors(path.join(adapter, 'adapter_model.safetensors'), lora, { format: 'pt' });
  const out = path.join(dir, 'merged');
  await writeSafetensorsDir(out, new Map([...merged].map(([n, t]) => [n, { shape: t.shape, data: Float32Array.from(t.data) }])));
  copyFileSync(path.join(BASE, 'config.json'), path.join(out, 'config.json'));
  return { adapter, merged: out };
}

let made: { adapter: string; merged: string };
beforeAll(async () => {
  await selectBackend();
  made = await makeAdapter();
});

async function vlakit(args: string[]) {
  const r = await execa('node', [BIN, ...args], { reject: false, env: { NO_COLOR: '1' } });
  return { code: r.exitCode, out: r.stdout, err: r.stderr };
}

describe('PEFT LoRA adapters', () => {
  it('base + adapter gives the logits of the weights merged by hand (W + alpha/r B A), and changes the model', async () => {
    const ck = loadHfCheckpoint(BASE);
    const plain = new TfjsCausalLm(ck);
    const before = await plain.logits(PROMPT);
    plain.dispose();
    const applied = applyPeftAdapter(ck, made.adapter);
    expect(applied).toMatchObject({ r: 4, alpha: 8, scale: 2 });
    expect(applied.modules).toHaveLength(6);
    const withAdapter = new TfjsCausalLm(ck);
    const merged = new TfjsCausalLm(loadHfCheckpoint(made.merged));
    const [a, b] = [await withAdapter.logits(PROMPT), await merged.logits(PROMPT)];
    withAdapter.dispose();
    merged.dispose();
    let diff = 0;
    let moved = 0;
    for (let i = 0; i < a.length; i++) {
      diff = Math.max(diff, Math.abs(a[i] - b[i]));
      moved = Math.max(moved, Math.abs(a[i] - before[i]));
    }
    expect(diff).toBeLessThan(1e-4);
    expect(moved).toBeGreaterThan(0.1);
  });

  it('generate --adapter and export --adapter say what the merged model says; bad adapters are clear errors', async () => {
    const ids = (r: { out: string }) => (JSON.parse(r.out) as { ids: number[] }).ids;
    const args = ['--input-ids', PROMPT.join(','), '--max-new-tokens', '12', '--ignore-eos', '--json'];
    const want = ids(await vlakit(['generate', '--model', made.merged, ...args]));
    const got = await vlakit(['generate', '--model', BASE, '--adapter', made.adapter, ...args]);
    expect(got.code, got.err).toBe(0);
    expect(ids(got)).toEqual(want);
    const out = path.join(dir, 'onnx');
    const ex = await vlakit(['export', BASE, '--adapter', made.adapter, '-o', out]);
    expect(ex.code, ex.err).toBe(0);
    expect(ids(await vlakit(['generate', '--model', out, ...args]))).toEqual(want);
    const again = await vlakit(['generate', '--model', out, '--adapter', made.adapter, ...args]);
    expect(again.code).toBe(2);
    expect(again.err).toMatch(/an export has its adapter merged already/);
    // an adapter of another model
    const stranger = path.join(dir, 'stranger');
    mkdirSync(stranger);
    writeFileSync(path.join(stranger, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', r: 1, lora_alpha: 1 }));
    await writeSafetensors(path.join(stranger, 'adapter_model.safetensors'), new Map([
      ['base_model.model.model.text_model.layers.0.self_attn.q_proj.lora_A.weight', { shape: [1, 48], data: new Float32Array(48) }],
      ['base_model.model.model.text_model.layers.0.self_attn.q_proj.lora_B.weight', { shape: [64, 1], data: new Float32Array(64) }],
    ]));
    const bad = await vlakit(['generate', '--model', BASE, '--adapter', stranger, ...args]);
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/E_MODEL .*the adapter changes model\.text_model\.layers\.0\.self_attn\.q_proj, which the base model \(llama\) does not have/);
    writeFileSync(path.join(stranger, 'adapter_config.json'), JSON.stringify({ peft_type: 'IA3', r: 1, lora_alpha: 1 }));
    const ia3 = await vlakit(['generate', '--model', BASE, '--adapter', stranger, ...args]);
    expect(ia3.code).toBe(1);
    expect(ia3.err).toMatch(/field "peft_type".*expected a LoRA adapter/);
  });
});
