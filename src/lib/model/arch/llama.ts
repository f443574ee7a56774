/**
 * Llama (LlamaForCausalLM), written once over `Ops`: RMSNorm, rotary positions (rope_theta), grouped-query causal
 * attention, SwiGLU MLP, tied or untied output head. The config is read from a Hugging Face config.json.
 */
import { z } from 'zod';
import type { Ops, TensorSpec } from './ops.js';

export const LlamaConfigSchema = z.looseObject({
  model_type: z.literal('llama'),
  vocab_size: z.number().int().positive(),
  hidden_size: z.number().int().positive(),
  intermediate_size: z.number().int().positive(),
  num_hidden_layers: z.number().int().positive(),
  num_attention_heads: z.number().int().positive(),
  num_key_value_heads: z.number().int().positive().optional(),
  head_dim: z.number().int().positive().optional(),
  max_position_embeddings: z.number().int().positive().default(2048),
  rms_norm_eps: z.number().positive().default(1e-6),
  rope_theta: z.number().positive().default(10000),
  rope_scaling: z.unknown().optional(),
  hidden_act: z.literal('silu').default('silu'),
  attention_bias: z.boolean().default(false),
  mlp_bias: z.boolean().default(false),
  tie_word_embeddings: z.boolean().default(false),
  initializer_range: z.number().positive().default(0.02),
  bos_token_id: z.number().int().nullish(),
  eos_token_id: z.union([z.number().int(), z.array(z.number().int())]).nullish(),
});
export type LlamaConfig = z.infer<typeof LlamaConfigSchema>;

/** The attention layout of a config: heads, key/value heads, head size. */
export function llamaHeads(c: LlamaConfig): { H: number; KV: number; hd: number } {
  return { H: c.num_attention_heads, KV: c.num_key_value_heads ?? c.num_attention_heads, hd: c.head_dim ?? c.hidden_size / c.num_attention_heads };
}

/** Every tensor of the checkpoint, with transformers' names and shapes. */
export function llamaTensors(c: LlamaConfig, prefix = 'model'): TensorSpec[] {
  const { H, KV, hd } = llamaHeads(c);
  const D = c.hidden_size;
  const I = c.intermediate_size;
  const out: TensorSpec[] = [{ name: `${prefix}.embed_tokens.weight`, shape: [c.vocab_size, D], init: 'normal' }];
  const lin = (name: string, o: number, i: number, bias: boolean) => {
    out.push({ name: `${name}.weight`, shape: [o, i], init: 'normal' });
    if (bias) out.push({ name: `${name}.bias`, shape: [o], init: 'zeros' });
  };
  for (let i = 0; i < c.num_hidden_layers; i++) {
    const n = `${prefix}.layers.${i}`;
    out.push({ name: `${n}.input_layernorm.weight`, shape: [D], init: 'ones' });
    lin(`${n}.self_attn.q_proj`, H * hd, D, c.attention_bias);
    lin(`${n}.self_attn.k_proj`, KV * hd, D, c.attention_bias);
    lin(`${n}.self_attn.v_proj`, KV * hd, D, c.attention_bias);
    lin(`${n}.self_attn.o_proj`, D, H * hd, c.attention_bias);
    out.push({ name: `${n}.post_attention_layernorm.weight`, shape: [D], init: 'ones' });
    lin(`${n}.mlp.gate_proj`, I, D, c.mlp_bias);
    lin(`${n}.mlp.up_proj`, I, D, c.mlp_bias);
    lin(`${n}.mlp.down_proj`, D, I, c.mlp_bias);
  }
  out.push({ name: `${prefix}.norm.weight`, shape: [D], init: 'ones' });
  return out;
}

/** The decoder over input embeddings x [B, T, D] -> final hidden states [B, T, D] (the Llama text model). */
export function llamaDecoder<T>(ops: Ops<T>, c: LlamaConfig, x: T, prefix = 'model'): T {
  const { H, KV, hd } = llamaHeads(c);
  for (let i = 0; i < c.num_hidden_layers; i++) {
    const n = `${prefix}.layers.${i}`;
    const input = x;
    x = ops.block(() => {
      const h = ops.rmsNorm(input, `${n}.input_layernorm.weight`, c.rms_norm_eps);
      const [q, k, v] = ops.linears(h, [`${n}.self_attn.q_proj`, `${n}.self_attn.k_proj`, `${n}.self_attn.v_proj`]); // [B, T, H*hd], [B, T, KV*hd] x 2
      const a = ops.attention(q, k, v, { layer: i, heads: H, kvHeads: KV, headDim: hd, causal: true, rope: { theta: c.rope_theta } });
      const y = ops.add(input, ops.linear(a, `${n}.self_attn.o_proj`));
      const h2 = ops.rmsNorm(y, `${n}.post_attention_layernorm.weight`, c.rms_norm_eps);
      const [gate, up] = ops.linears(h2, [`${n}.mlp.gate_proj`, `${n}.mlp.up_proj`]);
      const mlp = ops.mul(ops.silu(gate), up); // SwiGLU
      return ops.add(y, ops.linear(mlp, `${n}.mlp.down_proj`));
    });
  }
  return ops.rmsNorm(x, `${prefix}.norm.weight`, c.rms_norm_eps);
}

/** LlamaForCausalLM: ids [B, T] -> logits [B, T, V]. */
export function llamaForward<T>(ops: Ops<T>, c: LlamaConfig, ids: T): T {
  const h = llamaDecoder(ops, c, ops.embed('model.embed_tokens.weight', ids), 'model');
  return ops.head(h, c.tie_word_embeddings ? 'model.embed_tokens.weight' : 'lm_head.weight');
}
