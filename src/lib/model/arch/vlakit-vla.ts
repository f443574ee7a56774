/**
 * vlakit's built-in VLA (model_type `vlakit-vla`), written once over `Ops`: a ViT over each camera image (patch
 * embedding, learned positions, pre-norm blocks with one qkv projection, tanh-GELU MLPs, a final LayerNorm), a
 * two-layer projector into the language width plus a learned vector per camera, and a Llama decoder (the Llama
 * architecture's own, under `model.*`) with the head tied to the embedding. Image tokens come first, camera after
 * camera, then the text; the logits are those of the text positions.
 *
 * Its checkpoints (train-sft/train-rl) store linear weights [in, out] (`linearLayout: 'in_out'`), under vlakit's
 * names (`vision.layers.{i}.attn.qkv.weight`, `projector.fc1.weight`, ...) and Llama's (`model.layers.{i}.*`).
 */
import { KEYPOINT_DIM, type VlaConfig, patchesPerImage, tokensPerImage } from '../config.js';
import type { LlamaConfig } from './llama.js';
import { llamaDecoder } from './llama.js';
import type { Ops, TensorSpec } from './ops.js';
import { BOS, PAD, SEP } from '../tokenizer.js';

/** The decoder's config as a Llama config (the same layers, names and rotary positions). */
export function vlaTextConfig(c: VlaConfig): LlamaConfig {
  const t = c.text_config;
  return {
    model_type: 'llama',
    vocab_size: t.vocab_size,
    hidden_size: t.hidden_size,
    intermediate_size: t.intermediate_size,
    num_hidden_layers: t.num_hidden_layers,
    num_attention_heads: t.num_attention_heads,
    num_key_value_heads: t.num_key_value_heads,
    max_position_embeddings: t.max_position_embeddings,
    rms_norm_eps: t.rms_norm_eps,
    rope_theta: t.rope_theta,
    hidden_act: 'silu',
    attention_bias: false,
    mlp_bias: false,
    tie_word_embeddings: true,
    initializer_range: c.initializer_range,
  };
}

/** Every tensor of a checkpoint, as stored: linear weights [in, out]. */
export function vlaTensors(c: VlaConfig): TensorSpec[] {
  const v = c.vision_config;
  const t = c.text_config;
  const P = v.patch_size;
  const hd = t.hidden_size / t.num_attention_heads;
  const out: TensorSpec[] = [];
  const normal = (name: string, shape: number[]) => out.push({ name, shape, init: 'normal' });
  const lin = (name: string, i: number, o: number, bias = true) => {
    normal(`${name}.weight`, [i, o]);
    if (bias) out.push({ name: `${name}.bias`, shape: [o], init: 'zeros' });
  };
  const norm = (name: string, n: number, bias = true) => {
    out.push({ name: `${name}.weight`, shape: [n], init: 'ones' });
    if (bias) out.push({ name: `${name}.bias`, shape: [n], init: 'zeros' });
  };
  if (v.stem_patch_size !== undefined && v.stem_channels !== undefined) {
    const q = P / v.stem_patch_size;
    lin('vision.stem', v.stem_patch_size * v.stem_patch_size * 3, v.stem_channels);
    lin('vision.patch_embed', q * q * v.stem_channels, v.hidden_size);
    if (v.keypoints) {
      const K = v.keypoints;
      const cells = (v.image_size / v.stem_patch_size) ** 2;
      normal('vision.keypoints.query', [1, K * KEYPOINT_DIM]);
      if (v.keypoint_query === 'prompt') lin('vision.keypoints.prompt', t.hidden_size, K * KEYPOINT_DIM, false);
      lin('vision.keypoints.key', (v.keypoint_context ?? 1) ** 2 * v.stem_channels, K * KEYPOINT_DIM);
      out.push({ name: 'vision.keypoints.grid', shape: [cells, 2], init: 'grid' });
      lin('vision.keypoints.value', 2, K * KEYPOINT_DIM);
      lin('vision.keypoints.proj', KEYPOINT_DIM, v.hidden_size);
      normal('vision.keypoints.embed', [K, v.hidden_size]);
    }
  } else lin('vision.patch_embed', P * P * 3, v.hidden_size);
  normal('vision.pos_embed', [patchesPerImage(c), v.hidden_size]);
  for (let i = 0; i < v.num_hidden_layers; i++) {
    const n = `vision.layers.${i}`;
    norm(`${n}.ln1`, v.hidden_size);
    lin(`${n}.attn.qkv`, v.hidden_size, 3 * v.hidden_size);
    lin(`${n}.attn.proj`, v.hidden_size, v.hidden_size);
    norm(`${n}.ln2`, v.hidden_size);
    lin(`${n}.mlp.fc1`, v.hidden_size, v.intermediate_size);
    lin(`${n}.mlp.fc2`, v.intermediate_size, v.hidden_size);
  }
  norm('vision.post_ln', v.hidden_size);
  lin('projector.fc1', v.hidden_size, t.hidden_size);
  lin('projector.fc2', t.hidden_size, t.hidden_size);
  normal('projector.camera_embed', [c.num_cameras, t.hidden_size]);
  normal('model.embed_tokens.weight', [t.vocab_size, t.hidden_size]);
  for (let i = 0; i < t.num_hidden_layers; i++) {
    const n = `model.layers.${i}`;
    norm(`${n}.input_layernorm`, t.hidden_size, false);
    lin(`${n}.self_attn.q_proj`, t.hidden_size, t.num_attention_heads * hd, false);
    lin(`${n}.self_attn.k_proj`, t.hidden_size, t.num_key_value_heads * hd, false);
    lin(`${n}.self_attn.v_proj`, t.hidden_size, t.num_key_value_heads * hd, false);
    lin(`${n}.self_attn.o_proj`, t.num_attention_heads * hd, t.hidden_size, false);
    norm(`${n}.post_attention_layernorm`, t.hidden_size, false);
    lin(`${n}.mlp.gate_proj`, t.hidden_size, t.intermediate_size, false);
    lin(`${n}.mlp.up_proj`, t.hidden_size, t.intermediate_size, false);
    lin(`${n}.mlp.down_proj`, t.intermediate_size, t.hidden_size, false);
  }
  norm('model.norm', t.hidden_size, false);
  return out;
}

/** Image tokens of one example: patches per image times cameras. */
export function vlaImageTokens(c: VlaConfig): number {
  return tokensPerImage(c) * c.num_cameras;
}

/** Intermediate values a forward hands out on the way (filled when asked for). */
export interface VlaTap<T> {
  /** The keypoint readouts of every camera, [B, C*K*8] (models with keypoints). */
  keypoints?: T;
  /** The keypoints' spatial-softmax queries [B*C, 1, K*8] and the stem cells' keys [B*C, G*G, K*8] (grounding loss). */
  keypointQuery?: T;
  keypointKey?: T;
}

/**
 * Each stem cell's features with those of the n x n square of cells around it (n odd; zeros beyond the border), the
 * square row-major: f [B*C, G*G, Cs] -> [B*C, G*G, n*n*Cs] (n = 1: f itself).
 */
function keypointContext<T>(ops: Ops<T>, f: T, G: number, Cs: number, n: number): T {
  if (n === 1) return f;
  const r = (n - 1) / 2;
  const grid = ops.reshape(f, [-1, G, G, Cs]); // [B*C, G, G, Cs]
  const rows = ops.scale(ops.slice(grid, 1, 0, r), 0); // [B*C, r, G, Cs] of zeros
  const tall = ops.concat([rows, grid, rows], 1); // [B*C, G+2r, G, Cs]
  const cols = ops.scale(ops.slice(tall, 2, 0, r), 0); // [B*C, G+2r, r, Cs] of zeros
  const padded = ops.concat([cols, tall, cols], 2); // [B*C, G+2r, G+2r, Cs]
  const shifted: T[] = [];
  for (let dy = 0; dy < n; dy++) {
    const band = ops.slice(padded, 1, dy, dy + G); // [B*C, G, G+2r, Cs]
    for (let dx = 0; dx < n; dx++) shifted.push(ops.slice(band, 2, dx, dx + G)); // [B*C, G, G, Cs]: cell (y+dy-r, x+dx-r)
  }
  return ops.reshape(ops.concat(shifted, 3), [-1, G * G, n * n * Cs]); // [B*C, G, G, n*n*Cs] -> [B*C, G*G, n*n*Cs]
}

/**
 * pixels [B, C, S, S, 3] in [-1, 1] -> image tokens [B, C*Nt, D] (per camera its Np patches, then its keypoints).
 * `prompt` [B, D], the mean embedding of the prompt's tokens, conditions the keypoint queries (keypoint_query 'prompt').
 */
export function vlaVision<T>(ops: Ops<T>, c: VlaConfig, pixels: T, prompt?: T, tap?: VlaTap<T>): T {
  const v = c.vision_config;
  const P = v.patch_size;
  const g = v.image_size / P;
  const Np = g * g;
  const Nt = tokensPerImage(c);
  const C = c.num_cameras;
  const D = c.text_config.hidden_size;
  const Dv = v.hidden_size;
  const hd = Dv / v.num_attention_heads;
  let patches: T;
  let keypoints: T | undefined;
  if (v.stem_patch_size !== undefined && v.stem_channels !== undefined) {
    const s = v.stem_patch_size;
    const Cs = v.stem_channels;
    const q = P / s;
    const G = g * q; // cells along a side
    // the stem over the raster of cells: [B*C, G, s, G, s, 3] -> [B*C, G, G, s, s, 3] -> [B*C, G*G, s*s*3] -> [B*C, G*G, Cs]
    const cells = ops.reshape(ops.transpose(ops.reshape(pixels, [-1, G, s, G, s, 3]), [0, 1, 3, 2, 4, 5]), [-1, G * G, s * s * 3]);
    const f = ops.gelu(ops.linear(cells, 'vision.stem'), 'tanh'); // [B*C, G*G, Cs]
    // each patch reads its cells row-major: [B*C, g, q, g, q, Cs] -> [B*C, g, g, q, q, Cs] -> [B*C, Np, q*q*Cs]
    patches = ops.reshape(ops.transpose(ops.reshape(f, [-1, g, q, g, q, Cs]), [0, 1, 3, 2, 4, 5]), [-1, Np, q * q * Cs]);
    if (v.keypoints) {
      // a spatial softmax per keypoint: its learned query against every cell's key, averaging the cells' positions
      const K = v.keypoints;
      const key = ops.linear(keypointContext(ops, f, G, Cs, v.keypoint_context ?? 1), 'vision.keypoints.key'); // [B*C, G*G, K*dk]
      const zero = ops.scale(key, 0); // the batch's shape, to broadcast the learned query and the positions over it
      let query = ops.add(ops.slice(zero, 1, 0, 1), ops.param('vision.keypoints.query')); // [B*C, 1, K*dk]
      if (v.keypoint_query === 'prompt') {
        if (prompt === undefined) throw new Error('vlaVision: keypoint_query "prompt" needs the prompt');
        // the same prompt vector for every camera of an example: [B, C, 1, K*dk] + [B, 1, 1, K*dk]
        const byPrompt = ops.reshape(ops.linear(prompt, 'vision.keypoints.prompt'), [-1, 1, 1, K * KEYPOINT_DIM]);
        query = ops.reshape(ops.add(ops.reshape(query, [-1, C, 1, K * KEYPOINT_DIM]), byPrompt), [-1, 1, K * KEYPOINT_DIM]); // [B*C, 1, K*dk]
      }
      const value = ops.add(zero, ops.linear(ops.param('vision.keypoints.grid'), 'vision.keypoints.value')); // [B*C, G*G, K*dk]
      const a = ops.attention(query, key, value, { layer: -1, heads: K, kvHeads: K, headDim: KEYPOINT_DIM, causal: false }); // [B*C, 1, K*dk]
      if (tap) {
        tap.keypoints = ops.reshape(a, [-1, C * K * KEYPOINT_DIM]); // [B*C, 1, K*dk] -> [B, C*K*dk]
        tap.keypointQuery = query;
        tap.keypointKey = key;
      }
      keypoints = ops.add(ops.linear(ops.reshape(a, [-1, K, KEYPOINT_DIM]), 'vision.keypoints.proj'), ops.param('vision.keypoints.embed')); // [B*C, K, Dv]
    }
  } else {
    // [B, C, S, S, 3] -> [B*C, g, P, g, P, 3] -> [B*C, g, g, P, P, 3] -> [B*C, Np, P*P*3]
    patches = ops.reshape(ops.transpose(ops.reshape(pixels, [-1, g, P, g, P, 3]), [0, 1, 3, 2, 4, 5]), [-1, Np, P * P * 3]);
  }
  let x = ops.add(ops.linear(patches, 'vision.patch_embed'), ops.param('vision.pos_embed')); // [B*C, Np, Dv]
  if (keypoints !== undefined) x = ops.concat([x, keypoints], 1); // [B*C, Np + K, Dv]
  for (let i = 0; i < v.num_hidden_layers; i++) {
    const n = `vision.layers.${i}`;
    const input = x;
    x = ops.block(() => {
      const h = ops.layerNorm(input, `${n}.ln1`, v.layer_norm_eps);
      const [q, k, vv] = ops.split(ops.linear(h, `${n}.attn.qkv`), [Dv, Dv, Dv]); // 3 x [B*C, Np, Dv]
      const a = ops.attention(q, k, vv, { layer: -1, heads: v.num_attention_heads, kvHeads: v.num_attention_heads, headDim: hd, causal: false }); // bidirectional
      const y = ops.add(input, ops.linear(a, `${n}.attn.proj`));
      const h2 = ops.layerNorm(y, `${n}.ln2`, v.layer_norm_eps);
      return ops.add(y, ops.linear(ops.gelu(ops.linear(h2, `${n}.mlp.fc1`), 'tanh'), `${n}.mlp.fc2`));
    });
  }
  x = ops.layerNorm(x, 'vision.post_ln', v.layer_norm_eps);
  const proj = ops.linear(ops.gelu(ops.linear(x, 'projector.fc1'), 'tanh'), 'projector.fc2'); // [B*C, Nt, D]
  const cam = ops.reshape(ops.param('projector.camera_embed'), [1, C, 1, D]); // one vector per camera
  return ops.reshape(ops.add(ops.reshape(proj, [-1, C, Nt, D]), cam), [-1, C * Nt, D]); // [B, C, Nt, D] -> [B, C*Nt, D]
}

/**
 * ids [B, T] (text) and, for a prefill, pixels [B, C, S, S, 3] (their tokens go first) -> logits [B, T, V] of the
 * text positions. Without pixels the positions continue after the cache (a decode step).
 */
export function vlaForward<T>(ops: Ops<T>, c: VlaConfig, ids: T, pixels?: T, tap?: VlaTap<T>): T {
  let h = vlaHidden(ops, c, ids, pixels, tap);
  if (pixels !== undefined) h = ops.slice(h, 1, vlaImageTokens(c)); // [B, T, D]
  return ops.head(h, 'model.embed_tokens.weight');
}

/**
 * The decoder's final hidden states (after its last norm) of every position: [B, Ni + T, D] for a prefill (image
 * tokens first), [B, T, D] without pixels. The action head's features come from them.
 */
export function vlaHidden<T>(ops: Ops<T>, c: VlaConfig, ids: T, pixels?: T, tap?: VlaTap<T>): T {
  const text = ops.embed('model.embed_tokens.weight', ids); // [B, T, D]
  const prompt = pixels !== undefined && c.vision_config.keypoint_query === 'prompt' ? ops.promptMean(text, ids, SEP, [PAD, BOS]) : undefined; // [B, D]
  const x = pixels === undefined ? text : ops.concat([vlaVision(ops, c, pixels, prompt, tap), text], 1); // [B, Ni + T, D]
  return llamaDecoder(ops, vlaTextConfig(c), x, 'model');
}
