/**
 * A Hugging Face checkpoint trained with LoRA: the architecture's own `forward` (src/lib/model/arch) over the
 * TensorFlow.js ops, the base weights frozen (constants), LoRA adapters in PEFT's layout (lora_A [r, in] initialized
 * as PEFT does, kaiming-uniform: U(-1/sqrt(in), 1/sqrt(in)); lora_B [out, r] zeros, so the model starts as the base)
 * on the modules named by their HF names. With a frozen vision tower, the image features of each distinct image
 * content are computed once and cached for the run.
 */
import { createHash } from 'node:crypto';
import * as tf from '@tensorflow/tfjs-core';
import { VlakitError } from '../errors.js';
import type { PeftAdapter } from '../model/arch/adapter.js';
import type { HfCheckpoint } from '../model/arch/hf.js';
import type { Architecture } from '../model/arch/registry.js';
import { TfjsOps, type TfjsLora, type TfjsParams, TfjsWeights } from '../model/arch/tfjs-ops.js';
import { assignValues, newVar } from '../model/layers.js';
import type { NamedArray } from '../model/safetensors.js';

/** The short names vlakit's --lora-targets has always taken, as the HF module names they stand for. */
const SHORT: Record<string, string> = { q: 'q_proj', k: 'k_proj', v: 'v_proj', o: 'o_proj', gate: 'gate_proj', up: 'up_proj', down: 'down_proj' };

/** `q,k,v,o,gate,up,down` (VLM2VLA's set) or HF module names (q_proj, fc1, out_proj...) -> HF module names. */
export function loraTargetNames(targets: string[]): string[] {
  return [...new Set(targets.map((t) => SHORT[t] ?? t))];
}

export interface HfLoraOptions {
  r: number;
  alpha: number;
  /** Module names (last component of the HF name), e.g. q_proj; short names q, k... are accepted. */
  targets: string[];
  /** No adapters on the vision tower, whose features are then computed once per image and cached. */
  freezeVision?: boolean;
  /** No adapters on the first N decoder layers of the text model. */
  freezeLayers?: number;
  /** Exactly these modules (HF names; an adapter's own list), among those the targets name. */
  modules?: string[];
  seed?: number;
}

const LAYER = /\.layers\.(\d+)\./;

/** `params` with some tensors replaced (by name). */
function overlay(params: TfjsParams, over: Map<string, tf.Tensor>): TfjsParams {
  return { get: (n) => over.get(n) ?? params.get(n), has: (n) => over.has(n) || params.has(n), linear: params.linear && ((n) => (over.has(n) ? undefined : params.linear!(n))) };
}

export class HfLoraModel {
  /**
   * Base weights (constants, each uploaded once in the layout its use needs) and the LoRA variables, by HF name
   * (`<module>.lora_A.weight`).
   */
  readonly params: TfjsWeights;
  readonly lora: TfjsLora;
  /** The adapted modules, by HF name. */
  readonly modules: string[];
  readonly arch: Architecture<unknown>;
  readonly config: unknown;
  readonly targetModules: string[];
  private readonly vars: tf.Variable[] = [];
  private readonly varNames: string[] = [];
  private readonly cache = new Map<string, tf.Tensor>();
  readonly freezeVision: boolean;

  constructor(
    readonly ckpt: HfCheckpoint,
    /** As given (a data-parallel replica builds the same model from them). */
    readonly options: HfLoraOptions,
  ) {
    const o = options;
    this.arch = ckpt.arch;
    this.config = ckpt.config;
    this.freezeVision = o.freezeVision ?? false;
    const vision = ckpt.arch.vision?.(ckpt.config);
    if (this.freezeVision && !vision) throw new VlakitError('E_USAGE', `--freeze-vision: ${ckpt.arch.modelType} has no vision tower`);
    const names = loraTargetNames(o.targets);
    const targets = new Set(names);
    const modules: string[] = [];
    const candidates = new Set<string>();
    for (const [name, t] of ckpt.tensors) {
      const m = /^(.*)\.weight$/.exec(name);
      if (!m || t.shape.length !== 2) continue;
      const module = m[1];
      const last = module.split('.').pop()!;
      if (!targets.has(last) || !/\.layers\.\d+\./.test(module)) continue;
      candidates.add(module);
      const inText = !/(^|\.)(vision_model|vision_tower)\./.test(module); // Idefics3: model.vision_model; Gemma 3, PaliGemma: vision_tower
      if (this.freezeVision && !inText) continue;
      const layer = Number(LAYER.exec(module)?.[1]);
      if (inText && layer < (o.freezeLayers ?? 0)) continue;
      if (o.modules && !o.modules.includes(module)) continue;
      modules.push(module);
    }
    const missing = names.filter((n) => ![...candidates].some((c) => c.endsWith(`.${n}`)));
    if (missing.length) {
      const known = [...new Set([...ckpt.tensors.keys()].filter((n) => /\.layers\.\d+\..*\.weight$/.test(n) && ckpt.tensors.get(n)!.shape.length === 2).map((n) => n.split('.').slice(-2)[0]))].sort();
      throw new VlakitError('E_USAGE', `--lora-targets: ${ckpt.arch.modelType} has no module named ${missing.join(', ')}; its layers' linear modules are ${known.join(', ')}`);
    }
    if (!modules.length) throw new VlakitError('E_USAGE', '--lora-targets: no module left to adapt (every target is frozen)');
    modules.sort();
    this.modules = modules;
    // PEFT's target_modules: the suffixes when every module they match is adapted, else the full names
    this.targetModules = modules.length === candidates.size ? [...targets].sort() : modules;
    this.lora = { r: o.r, alpha: o.alpha, targets, enabled: true };
    this.params = new TfjsWeights(ckpt.tensors);
    let seed = (o.seed ?? 0) * 1000 + 777;
    for (const module of modules) {
      const [out, inp] = ckpt.tensors.get(`${module}.weight`)!.shape;
      const bound = 1 / Math.sqrt(inp); // kaiming_uniform(a = sqrt(5)) of an [r, in] weight
      this.addVar(`${module}.lora_A.weight`, tf.randomUniform([o.r, inp], -bound, bound, 'float32', seed++));
      this.addVar(`${module}.lora_B.weight`, tf.zeros([out, o.r]));
    }
  }

  private addVar(name: string, init: tf.Tensor): void {
    const v = newVar(init, name);
    this.params.set(name, v);
    this.vars.push(v);
    this.varNames.push(name);
  }

  trainable(): tf.Variable[] {
    return this.vars;
  }

  numParameters(): number {
    let n = 0;
    for (const t of this.ckpt.tensors.values()) n += t.data.length;
    return n;
  }

  /** The vision-language model's tile layout (undefined for a text model). */
  get vision(): ReturnType<NonNullable<Architecture<unknown>['vision']>> | undefined {
    return this.arch.vision?.(this.config);
  }

  /**
   * ids [B, T] and pixel_values [N, C, S, S] (or, with a frozen vision tower, the cached features of the batch's
   * images) -> logits [B, T, V]. `o.adapter`: other LoRA matrices in place of the trained ones (a frozen reference
   * copy, see `frozenAdapter`). `o.prefix`: a prefix-LM's prompt length per row (PaliGemma: the prompt attends both
   * ways, as transformers' token_type_ids mask makes it in training).
   */
  forward(ids: tf.Tensor2D, image?: tf.Tensor | { features: tf.Tensor }, o: { adapter?: Map<string, tf.Tensor>; prefix?: number[] } = {}): tf.Tensor3D {
    if (this.arch.prefixLm && o.prefix?.length !== ids.shape[0]) throw new Error(`${this.arch.modelType}: a prefix-LM forward needs each row's prompt length`);
    const ops = new TfjsOps(o.adapter ? overlay(this.params, o.adapter) : this.params, undefined, this.lora, o.prefix ?? 0);
    return this.arch.forward(ops, this.config, ids, image) as tf.Tensor3D;
  }

  /** A frozen copy of the LoRA matrices as they are now (constants, by their names; the caller disposes them). */
  frozenAdapter(): Map<string, tf.Tensor> {
    return new Map(this.varNames.map((n, i) => [n, tf.clone(this.vars[i])]));
  }

  /**
   * The image features [tiles, L, D] of one example's pixel_values [tiles, C, S, S] (flattened), computed once per
   * distinct content (sha256 of the pixels) and kept for the run; only with a frozen vision tower, whose features
   * do not change.
   */
  features(pixels: Float32Array, tiles: number): tf.Tensor {
    const v = this.vision;
    if (!v || !this.arch.features) throw new VlakitError('E_USAGE', `${this.arch.modelType} has no vision tower`);
    const key = createHash('sha256').update(new Uint8Array(pixels.buffer, pixels.byteOffset, pixels.byteLength)).digest('hex');
    let f = this.cache.get(key);
    if (!f) {
      // kept: the first call may run inside a training step's scope, which would dispose it
      f = tf.keep(
        tf.tidy(() => {
          const ops = new TfjsOps(this.params);
          return this.arch.features!(ops, this.config, tf.tensor4d(pixels, [tiles, v.channels, v.imageSize, v.imageSize])); // [tiles, L, D]
        }),
      );
      this.cache.set(key, f);
    }
    return f;
  }

  /** How many distinct images have cached features. */
  get cachedImages(): number {
    return this.cache.size;
  }

  /** Replaces the LoRA matrices with saved ones (resume), checking every module and shape. */
  loadAdapter(tensors: Map<string, { a: NamedArray; b: NamedArray }>, file: string): void {
    for (const module of this.modules) {
      const t = tensors.get(module);
      if (!t) throw new VlakitError('E_MODEL', `the saved adapter has no matrices for ${module}`, { file });
      for (const [part, arr] of [['A', t.a], ['B', t.b]] as const) {
        const v = this.params.get(`${module}.lora_${part}.weight`) as tf.Variable;
        if (arr.shape.join(',') !== v.shape.join(',')) throw new VlakitError('E_MODEL', `${module}.lora_${part}: saved shape [${arr.shape}], the run's [${v.shape}]`, { file });
        assignValues(v, arr.data, arr.shape);
      }
    }
    if (tensors.size !== this.modules.length) throw new VlakitError('E_MODEL', `the saved adapter has ${tensors.size} modules; this run adapts ${this.modules.length}`, { file });
  }

  /** The adapter as PEFT saves it. */
  async adapter(base: string): Promise<PeftAdapter> {
    const tensors = new Map<string, { a: NamedArray; b: NamedArray }>();
    for (const module of this.modules) {
      const a = this.params.get(`${module}.lora_A.weight`)!;
      const b = this.params.get(`${module}.lora_B.weight`)!;
      tensors.set(module, { a: { shape: a.shape, data: (await a.data()) as Float32Array }, b: { shape: b.shape, data: (await b.data()) as Float32Array } });
    }
    return { r: this.lora.r, alpha: this.lora.alpha, targetModules: this.targetModules, base, tensors };
  }

  dispose(): void {
    this.params.dispose();
    for (const t of this.cache.values()) t.dispose();
    this.cache.clear();
  }
}
