/**
 * The Gemma architectures beyond the reference logits (test/model/reference.test.ts): `vlakit export` of a tiny
 * Gemma 3 text model passes its parity check through the real CLI, and the real Gemma 3 4B-IT config gives
 * transformers' tensor names and the published parameter count.
 */
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../helpers.js';
import { z } from 'zod';
import { readJsonFile } from '../../src/lib/io/json-file.js';
import type { Gemma3Config } from '../../src/lib/model/arch/gemma.js';
import { architectureOf } from '../../src/lib/model/arch/registry.js';

const BIN = path.resolve('bin/run.js');
const REF = path.resolve('test/fixtures/reference');
const dir = tempDir('vlakit-gemma-');

async function vlakit(args: string[]) {
  const r = await execa('node', [BIN, ...args], { reject: false, env: { NO_COLOR: '1' } });
  return { code: r.exitCode, out: r.stdout, err: r.stderr };
}

describe('gemma3_text', () => {
  it('vlakit export of a tiny Gemma3ForCausalLM (sliding and full layers, soft caps, q/k norms) matches its checkpoint', async () => {
    const r = await vlakit(['export', path.join(REF, 'gemma3-text-tiny'), '-o', path.join(dir, 'text-onnx')]);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toMatch(/parity with the checkpoint \(3 cases\): max \|logit diff\| \S+, greedy tokens identical/);
    // generate runs both (a text processor without tokenizer files: token ids), with the same greedy ids
    const gen = async (model: string) => {
      const g = await vlakit(['generate', '--model', model, '--input-ids', '2,5,7,9,11,13', '--max-new-tokens', '12', '--ignore-eos', '--json']);
      expect(g.code, g.err).toBe(0);
      return JSON.parse(g.out) as { ids: number[]; engine: string };
    };
    const [a, b] = [await gen(path.join(REF, 'gemma3-text-tiny')), await gen(path.join(dir, 'text-onnx'))];
    expect([a.engine, b.engine]).toEqual(['tfjs', 'onnxruntime']);
    expect(b.ids).toEqual(a.ids);
    expect(a.ids).toHaveLength(12);
  });
});

describe('gemma3', () => {
  it("the real Gemma 3 4B-IT config: transformers' checkpoint names, 883 tensors, 4,300,079,472 parameters", () => {
    const raw = readJsonFile(path.resolve('test/fixtures/configs/gemma-3-4b-it.json'), z.record(z.string(), z.unknown()));
    const arch = architectureOf(raw);
    const c = arch.parseConfig(raw) as Gemma3Config;
    const tensors = arch.tensors(c);
    const shapes = new Map(tensors.map((t) => [t.name, t.shape]));
    const count = (re: RegExp) => tensors.filter((t) => re.test(t.name)).length;
    expect(count(/^vision_tower\.vision_model\./)).toBe(3 + 27 * 16 + 2);
    expect(count(/^multi_modal_projector\./)).toBe(2);
    expect(count(/^language_model\.model\./)).toBe(1 + 34 * 13 + 1);
    expect(tensors.length).toBe(883);
    expect(shapes.get('multi_modal_projector.mm_input_projection_weight')).toEqual([1152, 2560]);
    expect(shapes.get('multi_modal_projector.mm_soft_emb_norm.weight')).toEqual([1152]);
    expect(shapes.get('vision_tower.vision_model.embeddings.patch_embedding.weight')).toEqual([1152, 3, 14, 14]);
    expect(shapes.get('vision_tower.vision_model.embeddings.position_embedding.weight')).toEqual([4096, 1152]);
    expect(shapes.get('language_model.model.embed_tokens.weight')).toEqual([262208, 2560]);
    expect(shapes.get('language_model.model.layers.33.self_attn.q_proj.weight')).toEqual([2048, 2560]);
    expect(shapes.get('language_model.model.layers.33.self_attn.k_norm.weight')).toEqual([256]);
    expect(shapes.get('language_model.model.layers.0.post_feedforward_layernorm.weight')).toEqual([2560]);
    expect(shapes.has('language_model.lm_head.weight')).toBe(false); // tied
    // the published BF16 files hold 8,600,158,944 bytes of tensors: 4,300,079,472 parameters
    expect(tensors.reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0)).toBe(4_300_079_472);
    // every sixth layer is global (rope_theta 1e6 scaled by 8), the others slide over 1024 tokens (base 10000)
    expect(c.text.layer_types.filter((t) => t === 'full_attention').length).toBe(5);
    expect(c.text.layer_types[5]).toBe('full_attention');
    expect(c.text.rope).toEqual({ full_attention: { theta: 1_000_000, factor: 8 }, sliding_attention: { theta: 10_000 } });
    expect([c.text.sliding_window, c.text.query_pre_attn_scalar, c.text.vocab_size, c.image_token_id]).toEqual([1024, 256, 262208, 262144]);
    expect(arch.eosIds(c)).toEqual([1, 106]);
    expect(arch.vision?.(c)).toEqual({ imageSize: 896, channels: 3, tokensPerImage: 256, imageTokenId: 262144 });
  });

  it('model init writes a tiny Gemma 3 that model info reports as supported, with its tensor count', async () => {
    const out = path.join(dir, 'init-gemma3');
    const r = await vlakit(['model', 'init', '--config', path.join(REF, 'gemma3-tiny', 'config.json'), '--seed', '1', '-o', out]);
    expect(r.code, r.err).toBe(0);
    const info = JSON.parse((await vlakit(['model', 'info', out, '--json'])).out) as { model_type: string; supported: boolean; tensors: number; problems: string[] };
    expect(info.problems).toEqual([]);
    expect(info).toMatchObject({ model_type: 'gemma3', supported: true, tensors: 3 + 2 * 16 + 2 + 2 + 1 + 3 * 13 + 1 });
  });

  it('configs vlakit cannot run are refused naming the field', async () => {
    const raw = readJsonFile(path.resolve('test/fixtures/configs/gemma-3-4b-it.json'), z.record(z.string(), z.unknown()));
    const arch = architectureOf(raw);
    const bad = (patch: Record<string, unknown>) => () => arch.parseConfig({ ...raw, ...patch });
    expect(bad({ mm_tokens_per_image: 200 })).toThrow(/mm_tokens_per_image 200/);
    expect(bad({ text_config: { ...(raw.text_config as object), rope_scaling: { rope_type: 'yarn', factor: 2 } } })).toThrow(/rope type "yarn" is not supported/);
    expect(bad({ image_token_index: 300000 })).toThrow(/outside the vocabulary/);
  });
});
