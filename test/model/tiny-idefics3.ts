/** A tiny-random Idefics3 with SmolVLM-256M's real tokenizer and chat template, 32-pixel tiles of 4 image tokens. */
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { initCheckpoint } from '../../src/lib/model/arch/manage.js';

export const SMOLVLM = path.resolve('../shared/models/smolvlm-256m-instruct');

export const TINY_IDEFICS3 = {
  architectures: ['Idefics3ForConditionalGeneration'],
  model_type: 'idefics3',
  image_token_id: 49190,
  scale_factor: 2,
  vision_config: { hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2, image_size: 32, patch_size: 8 },
  text_config: { model_type: 'llama', vocab_size: 49280, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 8, max_position_embeddings: 256, rms_norm_eps: 1e-5, bos_token_id: 1, eos_token_id: 2, initializer_range: 0.05 },
};

/** Writes the model (random weights from `seed`) and its processor files into `dir`. */
export async function makeTinyIdefics3(dir: string, seed = 3): Promise<void> {
  await initCheckpoint(TINY_IDEFICS3, dir, { seed });
  for (const f of ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'chat_template.json', 'generation_config.json']) copyFileSync(path.join(SMOLVLM, f), path.join(dir, f));
  // SmolVLM's image processing at the tiny model's 32-pixel tiles (4 image tokens each), images not split
  const pre = JSON.parse(readFileSync(path.join(SMOLVLM, 'preprocessor_config.json'), 'utf8'));
  writeFileSync(path.join(dir, 'preprocessor_config.json'), JSON.stringify({ ...pre, max_image_size: { longest_edge: 32 }, size: { longest_edge: 32 }, do_image_splitting: false }));
  const pc = JSON.parse(readFileSync(path.join(SMOLVLM, 'processor_config.json'), 'utf8'));
  writeFileSync(path.join(dir, 'processor_config.json'), JSON.stringify({ ...pc, image_seq_len: 4 }));
}
