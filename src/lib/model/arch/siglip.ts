/**
 * The SigLIP vision tower (SiglipVisionTransformer without its pooling head) shared by Idefics3, Gemma 3 and
 * PaliGemma, written once over `Ops`: a convolutional patch embedding (stride = kernel = patch_size), learned
 * positions for the full image_size grid, pre-norm encoder blocks (LayerNorm, bidirectional attention, LayerNorm,
 * GELU MLP) and a final LayerNorm. Tensor names are `${prefix}.embeddings.*`, `${prefix}.encoder.layers.N.*`,
 * `${prefix}.post_layernorm.*`, as transformers saves them under each model's vision prefix.
 */
import { z } from 'zod';
import { VlakitError } from '../../errors.js';
import type { Ops, TensorSpec } from './ops.js';

export const SiglipVisionSchema = z.looseObject({
  hidden_size: z.number().int().positive().default(768),
  intermediate_size: z.number().int().positive().default(3072),
  num_hidden_layers: z.number().int().positive().default(12),
  num_attention_heads: z.number().int().positive().default(12),
  num_channels: z.number().int().positive().default(3),
  image_size: z.number().int().positive().default(224),
  patch_size: z.number().int().positive().default(16),
  layer_norm_eps: z.number().positive().default(1e-6),
  hidden_act: z.enum(['gelu_pytorch_tanh', 'gelu']).default('gelu_pytorch_tanh'),
  initializer_range: z.number().positive().default(0.02),
});
export type SiglipVisionConfig = z.infer<typeof SiglipVisionSchema>;

/** Patches per side and in all. */
export function siglipGrid(v: SiglipVisionConfig): { side: number; patches: number } {
  const side = v.image_size / v.patch_size;
  return { side, patches: side * side };
}

/** What the tower needs of a vision config, refused with the field (under `vision_config`). */
export function checkSiglip(v: SiglipVisionConfig, file?: string): void {
  const bad = (m: string, field: string) => new VlakitError('E_MODEL', `invalid model config: ${m}`, { file, field: `vision_config.${field}` });
  if (v.image_size % v.patch_size) throw bad(`vision image_size ${v.image_size} is not a multiple of patch_size ${v.patch_size}`, 'image_size');
  if (v.hidden_size % v.num_attention_heads) throw bad('vision hidden_size is not a multiple of num_attention_heads', 'num_attention_heads');
}

/** The tower's tensors with transformers' names under `prefix` (e.g. `model.vision_model`). */
export function siglipTensors(v: SiglipVisionConfig, prefix: string): TensorSpec[] {
  const D = v.hidden_size;
  const I = v.intermediate_size;
  const P = v.patch_size;
  const { patches } = siglipGrid(v);
  const out: TensorSpec[] = [
    { name: `${prefix}.embeddings.patch_embedding.weight`, shape: [D, v.num_channels, P, P], init: 'normal' },
    { name: `${prefix}.embeddings.patch_embedding.bias`, shape: [D], init: 'zeros' },
    { name: `${prefix}.embeddings.position_embedding.weight`, shape: [patches, D], init: 'normal' },
  ];
  const lin = (name: string, o: number, i: number) => out.push({ name: `${name}.weight`, shape: [o, i], init: 'normal' }, { name: `${name}.bias`, shape: [o], init: 'zeros' });
  const ln = (name: string) => out.push({ name: `${name}.weight`, shape: [D], init: 'ones' }, { name: `${name}.bias`, shape: [D], init: 'zeros' });
  for (let i = 0; i < v.num_hidden_layers; i++) {
    const n = `${prefix}.encoder.layers.${i}`;
    for (const m of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) lin(`${n}.self_attn.${m}`, D, D);
    ln(`${n}.layer_norm1`);
    ln(`${n}.layer_norm2`);
    lin(`${n}.mlp.fc1`, I, D);
    lin(`${n}.mlp.fc2`, D, I);
  }
  ln(`${prefix}.post_layernorm`);
  return out;
}

/** pixel_values [N, C, S, S] (normalized, S = image_size) -> patch features [N, (S/P)^2, D] after post_layernorm. */
export function siglipVision<T>(ops: Ops<T>, v: SiglipVisionConfig, pixels: T, prefix: string): T {
  const D = v.hidden_size;
  const P = v.patch_size;
  const { side, patches } = siglipGrid(v);
  // the patch convolution (stride = kernel = P) as a matmul over flattened patches:
  // [N, C, S, S] -> [N, C, g, P, g, P] -> [N, g, g, C, P, P] -> [N, g*g, C*P*P]
  const flat = ops.reshape(ops.transpose(ops.reshape(pixels, [-1, v.num_channels, side, P, side, P]), [0, 2, 4, 1, 3, 5]), [-1, patches, v.num_channels * P * P]);
  let x = ops.add(ops.linear(flat, `${prefix}.embeddings.patch_embedding`), ops.param(`${prefix}.embeddings.position_embedding.weight`)); // [N, g*g, D]
  const act = v.hidden_act === 'gelu' ? 'none' : 'tanh';
  const hd = D / v.num_attention_heads;
  for (let i = 0; i < v.num_hidden_layers; i++) {
    const n = `${prefix}.encoder.layers.${i}`;
    const input = x;
    // one block: the backend may free the layer's temporaries (the attention scores of every patch pair) after it
    x = ops.block(() => {
      const h = ops.layerNorm(input, `${n}.layer_norm1`, v.layer_norm_eps);
      const a = ops.attention(ops.linear(h, `${n}.self_attn.q_proj`), ops.linear(h, `${n}.self_attn.k_proj`), ops.linear(h, `${n}.self_attn.v_proj`), { layer: -1, heads: v.num_attention_heads, kvHeads: v.num_attention_heads, headDim: hd, causal: false });
      const y = ops.add(input, ops.linear(a, `${n}.self_attn.out_proj`));
      const h2 = ops.layerNorm(y, `${n}.layer_norm2`, v.layer_norm_eps);
      return ops.add(y, ops.linear(ops.gelu(ops.linear(h2, `${n}.mlp.fc1`), act), `${n}.mlp.fc2`));
    });
  }
  return ops.layerNorm(x, `${prefix}.post_layernorm`, v.layer_norm_eps);
}
