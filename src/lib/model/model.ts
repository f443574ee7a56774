/**
 * The built-in VLA's weights as trainable tfjs variables: initialization, LoRA adapters (added, merged), which
 * variables train. The model itself (a ViT over each camera image, a projector plus a camera embedding, a Llama
 * decoder with a tied head; image tokens first, then the prompt, then the target) is written once, in the
 * architecture registry (arch/vlakit-vla.ts); `forward` runs that definition on the tfjs backend, and the ONNX
 * export derives its graphs from the same definition.
 */
import * as tf from '@tensorflow/tfjs-core';
import './backend.js';
import { type VlaConfig, validateConfig } from './config.js';
import { type LoraSpec, type Params, newVar } from './layers.js';
import { type TfjsCache, TfjsOps } from './arch/tfjs-ops.js';
import { gridInit } from './arch/ops.js';
import { vlakitVla } from './arch/registry.js';
import { vlaImageTokens } from './arch/vlakit-vla.js';

/** Keys and values of past positions, per decoder layer: [B, KV, Tpast, hd]. */
export interface KvCache {
  k: tf.Tensor4D[];
  v: tf.Tensor4D[];
  length: number;
}

export interface ForwardOutput {
  /** Logits of the text positions: [B, T, V]. */
  logits: tf.Tensor3D;
  /** Per decoder layer, attention weights [B, H, Tq, Tk] (when asked for). */
  attentions?: tf.Tensor4D[];
  /** The cache extended by these positions (when one was given or asked for). */
  cache?: KvCache;
}

export const LORA_MODULES = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;

export class VlaModel {
  readonly params: Params = new Map();
  lora: LoraSpec | undefined;

  constructor(readonly config: VlaConfig) {
    validateConfig(config);
  }

  /**
   * Fresh weights for the registry's tensor list, drawn from the seed in its order (normal with std
   * initializer_range; norms at 1, biases at 0).
   */
  static init(config: VlaConfig, seed = 0): VlaModel {
    const m = new VlaModel(config);
    let s = seed * 1000 + 1;
    for (const t of vlakitVla.tensors(config)) {
      const value = t.init === 'normal' ? tf.randomNormal(t.shape, 0, config.initializer_range, 'float32', s++) : t.init === 'ones' ? tf.ones(t.shape) : t.init === 'grid' ? tf.tensor(gridInit(t.shape[0]), t.shape) : tf.zeros(t.shape);
      m.params.set(t.name, newVar(value, t.name));
    }
    return m;
  }

  /** Adds LoRA adapters to the target modules of the decoder: A ~ N(0, 1/r), B = 0 (so the model is unchanged). */
  addLora(r: number, alpha: number, targets: string[], seed = 0): void {
    const set = new Set(targets.map((t) => (t.endsWith('_proj') ? t : `${t}_proj`)));
    let s = seed * 1000 + 777;
    this.lora = { r, alpha, targets: set, enabled: true };
    for (const name of [...this.params.keys()]) {
      const m = /^(model\.layers\.\d+\.(?:self_attn|mlp)\.(\w+_proj))\.weight$/.exec(name);
      if (!m || !set.has(m[2])) continue;
      const w = this.params.get(name)!;
      const [inDim, outDim] = w.shape;
      this.params.set(`${m[1]}.lora_A.weight`, newVar(tf.randomNormal([inDim, r], 0, 1 / r, 'float32', s++), `${m[1]}.lora_A.weight`));
      this.params.set(`${m[1]}.lora_B.weight`, newVar(tf.zeros([r, outDim]), `${m[1]}.lora_B.weight`));
    }
  }

  /** Folds the LoRA adapters into the base weights (W += A B alpha / r) and removes them. */
  mergeLora(): void {
    if (!this.lora) return;
    const scale = this.lora.alpha / this.lora.r;
    for (const name of [...this.params.keys()]) {
      const m = /^(.*)\.lora_A\.weight$/.exec(name);
      if (!m) continue;
      const a = this.params.get(name)!;
      const b = this.params.get(`${m[1]}.lora_B.weight`)!;
      const w = this.params.get(`${m[1]}.weight`)!;
      const folded = tf.tidy(() => tf.add(w, tf.mul(tf.matMul(a, b), scale))); // [in, r] x [r, out]
      w.assign(folded);
      folded.dispose();
      a.dispose();
      b.dispose();
      this.params.delete(name);
      this.params.delete(`${m[1]}.lora_B.weight`);
    }
    this.lora = undefined;
  }

  get numImageTokens(): number {
    return vlaImageTokens(this.config);
  }

  /**
   * Runs the model as the registry defines it (arch/vlakit-vla.ts) on the tfjs backend, over these variables.
   * `pixels` [B, C, S, S, 3] in [-1, 1] (a prefill) puts the image tokens first; `ids` [B, T] are text tokens. With
   * a `cache`, the positions continue after it. Returns the logits of the text positions [B, T, V]; attention
   * weights and the extended cache belong to the caller's scope (a tf.tidy around the call frees them).
   */
  forward(pixels: tf.Tensor5D | undefined, ids: tf.Tensor2D, opts: { cache?: KvCache; useCache?: boolean; attentions?: boolean } = {}): ForwardOutput {
    const cache: TfjsCache | undefined = opts.cache ? { k: [...opts.cache.k], v: [...opts.cache.v], length: opts.cache.length } : opts.useCache ? { k: [], v: [], length: 0 } : undefined;
    const ops = new TfjsOps(this.params, cache, this.lora, 0, 'in_out');
    if (opts.attentions) ops.recordAttentions = [];
    const logits = vlakitVla.forward(ops, this.config, ids, pixels) as tf.Tensor3D; // [B, T, V]
    // the backend keeps what outlives its per-layer tidy; handed over as tensors of this scope instead
    const own = <T extends tf.Tensor>(t: T): T => {
      const c = tf.clone(t);
      t.dispose();
      return c;
    };
    const attentions = ops.recordAttentions?.map(own);
    const next = ops.next ? { k: ops.next.k.map((t) => own(t!)), v: ops.next.v.map((t) => own(t!)), length: ops.next.length } : undefined;
    return { logits, attentions, cache: next };
  }

  /** Variables that train: LoRA adapters only (with LoRA), or everything but frozen decoder layers / the vision tower. */
  trainable(opts: { freezeLayers?: number; freezeVision?: boolean } = {}): tf.Variable[] {
    const out: tf.Variable[] = [];
    for (const [name, v] of this.params) {
      if (this.lora) {
        if (name.includes('.lora_')) out.push(v);
        continue;
      }
      const layer = /^model\.layers\.(\d+)\./.exec(name);
      if (layer && Number(layer[1]) < (opts.freezeLayers ?? 0)) continue;
      if (opts.freezeVision && name.startsWith('vision.')) continue;
      out.push(v);
    }
    return out;
  }

  numParameters(): number {
    let n = 0;
    for (const [name, v] of this.params) if (!name.includes('.lora_')) n += v.size;
    return n;
  }

  dispose(): void {
    for (const v of this.params.values()) v.dispose();
    this.params.clear();
  }
}

export function disposeCache(c: KvCache | undefined): void {
  if (!c) return;
  for (const t of [...c.k, ...c.v]) t.dispose();
}
