/**
 * `vlakit generate --image --chat` through the real CLI on a tiny-random Idefics3 that carries SmolVLM's real
 * tokenizer and processor files (tiles of 32 px = the vision image_size, 4 image tokens per tile): the prompt ids
 * hold each tile's tokens in place, and the checkpoint (tfjs) and its ONNX export (onnxruntime) generate the same ids.
 */
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers.js';
import { imagePromptText } from '../../src/lib/model/processor/idefics3.js';
import { loadTextTokenizer } from '../../src/lib/model/processor/tokenizer.js';

const BIN = path.resolve('bin/run.js');
const SMOLVLM = path.resolve('../shared/models/smolvlm-256m-instruct');
const dir = tempDir('vlakit-genimg-');
const ckpt = path.join(dir, 'ckpt');
const onnx = path.join(dir, 'onnx');
const image = path.join(dir, 'frame.png');

async function vlakit(args: string[]) {
  const r = await execa('node', [BIN, ...args], { reject: false, env: { NO_COLOR: '1' } });
  return { code: r.exitCode, out: r.stdout, err: r.stderr };
}

const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'added_tokens.json', 'chat_template.json', 'generation_config.json'];

beforeAll(async () => {
  const real = JSON.parse(readFileSync(path.join(SMOLVLM, 'config.json'), 'utf8'));
  const config = {
    architectures: ['Idefics3ForConditionalGeneration'],
    model_type: 'idefics3',
    image_token_id: real.image_token_id,
    scale_factor: 2,
    tie_word_embeddings: false,
    vision_config: { model_type: 'idefics3', hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2, num_channels: 3, image_size: 32, patch_size: 8, layer_norm_eps: 1e-6, hidden_act: 'gelu_pytorch_tanh' },
    text_config: { model_type: 'llama', vocab_size: real.text_config.vocab_size, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 256, rms_norm_eps: 1e-5, rope_theta: 100000, tie_word_embeddings: false, bos_token_id: 1, eos_token_id: 2 },
  };
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
  const init = await vlakit(['model', 'init', '--config', path.join(dir, 'config.json'), '--seed', '5', '-o', ckpt]);
  expect(init.code, init.err).toBe(0);
  for (const f of TOKENIZER_FILES) copyFileSync(path.join(SMOLVLM, f), path.join(ckpt, f));
  const pre = JSON.parse(readFileSync(path.join(SMOLVLM, 'preprocessor_config.json'), 'utf8'));
  writeFileSync(path.join(ckpt, 'preprocessor_config.json'), JSON.stringify({ ...pre, size: { longest_edge: 64 }, max_image_size: { longest_edge: 32 } }));
  writeFileSync(path.join(ckpt, 'processor_config.json'), JSON.stringify({ image_seq_len: 4, processor_class: 'Idefics3Processor' }));
  const px = Buffer.alloc(48 * 32 * 3);
  for (let i = 0; i < px.length; i++) px[i] = (i * 29) % 251;
  await sharp(px, { raw: { width: 48, height: 32, channels: 3 } }).png().toFile(image);
}, 120_000);

const gen = async (model: string, extra: string[] = []) => {
  const r = await vlakit(['generate', '--model', model, '--image', image, '--chat', '--prompt', 'What is on the table?', '--max-new-tokens', '6', '--ignore-eos', '--json', ...extra]);
  expect(r.code, r.err).toBe(0);
  return JSON.parse(r.out) as { ids: number[]; prompt_ids: number[]; tiles: number; engine: string; text: string };
};

describe('vlakit generate --image --chat on a tiny-random Idefics3 with SmolVLM tokenizer files', () => {
  it('places the tiles tokens in the chat prompt; checkpoint and export generate the same ids', async () => {
    const r = await gen(ckpt);
    // 48x32 -> longest edge 64: 64x42 (transformers.js rounding) -> whole 32-px tiles 64x64: 2x2 tiles + global
    expect(r.tiles).toBe(5);
    const tok = (await loadTextTokenizer(SMOLVLM))!;
    const expected = tok.encode(`<|im_start|>User:${imagePromptText(2, 2, 4)}What is on the table?<end_of_utterance>\nAssistant:`, true);
    expect(r.prompt_ids).toEqual(expected);
    expect(r.prompt_ids.filter((i) => i === 49190)).toHaveLength(20);
    expect(r.ids).toHaveLength(6);
    const ex = await vlakit(['export', ckpt, '-o', onnx]);
    expect(ex.code, ex.err).toBe(0);
    const o = await gen(onnx);
    expect(o).toMatchObject({ engine: 'onnxruntime', prompt_ids: r.prompt_ids, ids: r.ids, tiles: 5 });
  });

  it('--no-image-splitting and --image-size cap the tiles', async () => {
    expect((await gen(ckpt, ['--no-image-splitting'])).tiles).toBe(1);
    expect((await gen(ckpt, ['--image-size', '32'])).tiles).toBe(1);
  });

  it('usage errors: images without --prompt, a placeholder count that does not match', async () => {
    const a = await vlakit(['generate', '--model', ckpt, '--image', image, '--input-ids', '1,2']);
    expect(a.code).toBe(2);
    expect(a.err).toMatch(/--image applies only with --prompt/);
    const b = await vlakit(['generate', '--model', ckpt, '--image', image, '--prompt', 'no placeholder']);
    expect(b.code).toBe(2);
    expect(b.err).toMatch(/0 <image> placeholders for 1 images/);
  });
});
