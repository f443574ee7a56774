/**
 * Causal language models loaded from Hugging Face checkpoints (src/lib/model/arch), run on TensorFlow.js with a
 * KV cache, and greedy or sampled generation over token ids. `vlakit generate` is built on it; the ONNX export of
 * the same architectures runs behind the same `CausalLm` interface (infer/ort-causal.ts).
 */
import * as tf from '@tensorflow/tfjs-core';
import '../model/backend.js';
import type { Architecture } from '../model/arch/registry.js';
import type { HfCheckpoint } from '../model/arch/hf.js';
import { TfjsOps, type TfjsCache, type TfjsLora, type TfjsParams, TfjsWeights } from '../model/arch/tfjs-ops.js';
import { VlakitError } from '../errors.js';
import { Rng } from '../util/rng.js';
import { pickToken } from './generate.js';

/** One generation's state: the prompt runs once, then one token per step. */
export interface CausalState {
  /**
   * Runs the prompt ids (with the images of a vision-language model: pixel_values [N, C, S, S] flattened, one
   * tile per N, the prompt holding N * tokensPerImage image tokens); returns the logits [V] of its last position.
   */
  prefill(ids: number[], images?: Float32Array): Promise<Float32Array>;
  /** Appends one token; returns its logits [V]. */
  next(id: number): Promise<Float32Array>;
  dispose(): void;
  /** After a step of a state started with `attentions`: its last position's attention rows, [layer][head][key]. */
  attentions?(): number[][][];
}

/** Every attention weight of one forward pass: per decoder layer [H, N, N] flattened (query rows, key columns). */
export interface AttentionMaps {
  layers: Float32Array[];
  heads: number;
  positions: number;
}

export interface CausalLm {
  readonly engine: 'tfjs' | 'onnxruntime';
  readonly modelType: string;
  readonly vocabSize: number;
  readonly maxPositions: number;
  readonly eosIds: number[];
  /** For a vision-language model: tile side, channels, image tokens per tile and the image token id. */
  readonly vision?: { imageSize: number; channels: number; tokensPerImage: number; imageTokenId: number };
  /** `attentions`: the state reports each step's attention rows (engines that cannot say so refuse). */
  start(o?: { useCache?: boolean; attentions?: boolean }): CausalState;
  /**
   * Logits of every position, [T, V] flattened, without a cache. `prefix`: a prefix-LM's prefix length (PaliGemma:
   * positions below it attend both ways), default all of `ids`; other models ignore it.
   */
  logits(ids: number[], images?: Float32Array, prefix?: number): Promise<Float32Array>;
  /** Every decoder attention weight of one forward pass without a cache, where the engine has them. */
  attentions?(ids: number[], images?: Float32Array, prefix?: number): Promise<AttentionMaps>;
  dispose(): Promise<void> | void;
}

/** A checkpoint's model on TensorFlow.js. */
export class TfjsCausalLm implements CausalLm {
  readonly engine = 'tfjs' as const;
  /** The weights on the backend, each uploaded once in the layout its use needs (linear weights as [in, out]). */
  readonly params: TfjsParams;
  private readonly owned?: TfjsWeights;
  private readonly lora?: TfjsLora;
  private readonly cachedFeatures?: (pixels: Float32Array, tiles: number) => tf.Tensor;
  readonly modelType: string;
  readonly vocabSize: number;
  readonly maxPositions: number;
  readonly eosIds: number[];
  readonly vision?: CausalLm['vision'];
  private readonly arch: Architecture<unknown>;
  private readonly config: unknown;

  /**
   * `o.params` (with `o.lora`): run on weights another owner holds (a LoRA model in training: sampling from the
   * policy as it is now); they are not disposed with this model. `o.features`: image features [tiles, L, D] from
   * the owner (a frozen vision tower's cache), used in place of the vision tower and not disposed here.
   */
  constructor(ckpt: HfCheckpoint, o: { params?: TfjsParams; lora?: TfjsLora; features?: (pixels: Float32Array, tiles: number) => tf.Tensor } = {}) {
    this.arch = ckpt.arch;
    this.config = ckpt.config;
    if (o.params) this.params = o.params;
    else this.params = this.owned = new TfjsWeights(ckpt.tensors);
    this.lora = o.lora;
    this.cachedFeatures = o.features;
    this.modelType = ckpt.arch.modelType;
    this.vocabSize = ckpt.arch.vocabSize(ckpt.config);
    this.maxPositions = ckpt.arch.maxPositions(ckpt.config);
    this.eosIds = ckpt.arch.eosIds(ckpt.config);
    this.vision = ckpt.arch.vision?.(ckpt.config);
  }

  /**
   * ids (+ images) -> logits [B, T, V], extending `cache` when one is given (its new tensors are kept out of tidy);
   * with `attentions`, each decoder layer's weights [1, H, T, past + T] too (the caller disposes them). `prefix`: a
   * prefix-LM's prefix length.
   */
  private forward(ids: number[], cache?: TfjsCache, images?: Float32Array, o: { attentions?: boolean; prefix?: number } = {}): { logits: Float32Array; cache?: TfjsCache; attentions?: tf.Tensor4D[] } {
    const n = checkPrompt(this, ids, images, { step: (cache?.length ?? 0) > 0 });
    const cached = n > 0 && this.cachedFeatures !== undefined;
    const features = n ? (cached ? this.cachedFeatures!(images!, n) : this.features(images!, n)) : undefined; // [N, L, D]
    let next: TfjsCache | undefined;
    let atts: tf.Tensor4D[] | undefined;
    const logits = tf.tidy(() => {
      const ops = new TfjsOps(this.params, cache, this.lora, o.prefix ?? ids.length);
      if (o.attentions) ops.recordAttentions = [];
      const v = this.vision;
      // the vision tower tile by tile when the architecture has one apart (its attention is over all patches of a tile)
      const image = features ? { features } : v && images && n ? tf.tensor4d(images, [n, v.channels, v.imageSize, v.imageSize]) : undefined; // [N, C, S, S]
      const out = this.arch.forward(ops, this.config, tf.tensor2d(ids, [1, ids.length], 'int32'), image); // [1, T, V]
      next = ops.next;
      if (ops.recordAttentions) atts = ops.recordAttentions.map((a) => tf.keep(a));
      return out;
    });
    if (!cached) features?.dispose();
    const data = logits.dataSync() as Float32Array;
    logits.dispose();
    return { logits: data, cache: next, attentions: atts };
  }

  async attentions(ids: number[], images?: Float32Array, prefix?: number): Promise<AttentionMaps> {
    const atts = this.forward(ids, undefined, images, { attentions: true, prefix }).attentions!; // per layer [1, H, N, N]
    const layers = atts.map((a) => a.dataSync() as Float32Array);
    const [, heads, positions] = atts[0].shape;
    tf.dispose(atts);
    return { layers, heads, positions };
  }

  /** Image features [N, L, D] of N tiles' pixel_values, one tile at a time (undefined when the architecture has no separate vision tower). */
  private features(images: Float32Array, n: number): tf.Tensor | undefined {
    const v = this.vision;
    if (!v || !this.arch.features) return undefined;
    const tile = v.channels * v.imageSize * v.imageSize;
    const parts: tf.Tensor[] = [];
    for (let i = 0; i < n; i++) parts.push(tf.tidy(() => this.arch.features!(new TfjsOps(this.params, undefined, this.lora), this.config, tf.tensor4d(images.subarray(i * tile, (i + 1) * tile), [1, v.channels, v.imageSize, v.imageSize])))); // [1, L, D]
    if (parts.length === 1) return parts[0];
    const all = tf.concat(parts, 0); // [N, L, D]
    tf.dispose(parts);
    return all;
  }

  async logits(ids: number[], images?: Float32Array, prefix?: number): Promise<Float32Array> {
    return this.forward(ids, undefined, images, { prefix }).logits;
  }

  start(o: { useCache?: boolean; attentions?: boolean } = {}): CausalState {
    const V = this.vocabSize;
    const last = (l: Float32Array) => l.slice(l.length - V);
    if (o.useCache === false) return uncachedState(this, o.attentions);
    let cache: TfjsCache = { k: [], v: [], length: 0 };
    let rows: number[][][] | undefined;
    let prompt = 0;
    const step = (ids: number[], images?: Float32Array): Float32Array => {
      // a prompt is checked against the positions in forward (checkPrompt); here what the cache adds to it
      if (cache.length > 0 && cache.length + ids.length > this.maxPositions) throw new VlakitError('E_USAGE', `the sequence would pass the model's ${this.maxPositions} positions`);
      if (cache.length === 0) prompt = ids.length; // the prompt is a prefix-LM's prefix
      const r = this.forward(ids, cache, images, { attentions: o.attentions, prefix: prompt });
      if (r.attentions) {
        rows = lastRows(r.attentions);
        tf.dispose(r.attentions);
      }
      const old = cache;
      cache = r.cache!;
      for (let i = 0; i < old.k.length; i++) {
        if (old.k[i] !== cache.k[i]) old.k[i]?.dispose();
        if (old.v[i] !== cache.v[i]) old.v[i]?.dispose();
      }
      return last(r.logits);
    };
    return {
      prefill: async (ids, images) => step(ids, images),
      next: async (id) => step([id]),
      dispose: () => {
        for (const t of [...cache.k, ...cache.v]) t?.dispose();
        cache = { k: [], v: [], length: 0 };
      },
      attentions: o.attentions ? () => rows ?? [] : undefined,
    };
  }

  dispose(): void {
    this.owned?.dispose();
  }
}

/** The last query's row of each layer's attention weights [1, H, T, K]: [layer][head][key]. */
function lastRows(atts: tf.Tensor4D[]): number[][][] {
  return atts.map((a) => {
    const [, H, T, K] = a.shape;
    const d = a.dataSync();
    return Array.from({ length: H }, (_, h) => Array.from(d.subarray((h * T + T - 1) * K, (h * T + T) * K)));
  });
}

/** A generation without a KV cache: the whole sequence (and its images) runs again at every step. For checks. */
export function uncachedState(lm: Pick<CausalLm, 'logits' | 'vocabSize' | 'attentions'>, attentions = false): CausalState {
  const last = (l: Float32Array) => l.slice(l.length - lm.vocabSize);
  let seq: number[] = [];
  let pixels: Float32Array | undefined;
  let rows: number[][][] = [];
  let prompt = 0;
  const run = async (): Promise<Float32Array> => {
    if (attentions) {
      if (!lm.attentions) throw new VlakitError('E_USAGE', 'this model gives no attention weights');
      const a = await lm.attentions(seq, pixels, prompt);
      const N = a.positions;
      rows = a.layers.map((l) => Array.from({ length: a.heads }, (_, h) => Array.from(l.subarray((h * N + N - 1) * N, (h * N + N) * N))));
    }
    return last(await lm.logits(seq, pixels, prompt));
  };
  return {
    prefill: async (ids, images) => {
      seq = [...ids];
      pixels = images;
      prompt = ids.length; // the prompt is a prefix-LM's prefix
      return run();
    },
    next: async (id) => {
      seq = [...seq, id];
      return run();
    },
    dispose: () => {},
    attentions: attentions ? () => rows : undefined,
  };
}

/**
 * Checks a prompt's ids against the model: within its positions, in the vocabulary, and for a vision-language model
 * one image tile per tokensPerImage image tokens. Returns the number of tiles.
 */
export function checkPrompt(lm: Pick<CausalLm, 'vocabSize' | 'vision' | 'maxPositions'>, ids: number[], images?: Float32Array, o: { step?: boolean } = {}): number {
  if (ids.length === 0) throw new VlakitError('E_USAGE', 'the prompt has no tokens');
  if (ids.length > lm.maxPositions) throw new VlakitError('E_USAGE', `the prompt has ${ids.length} tokens; the model has ${lm.maxPositions} positions`);
  if (ids.some((i) => !Number.isInteger(i) || i < 0 || i >= lm.vocabSize)) throw new VlakitError('E_USAGE', `token ids must be integers in [0, ${lm.vocabSize})`);
  const v = lm.vision;
  // a generated token fed back (a decode step) is a plain token even when it is the image token's id (random models)
  if (o.step && !images?.length) return 0;
  if (!v) {
    if (images?.length) throw new VlakitError('E_USAGE', 'this model takes no images');
    return 0;
  }
  const tile = v.channels * v.imageSize * v.imageSize;
  const n = images ? images.length / tile : 0;
  if (!Number.isInteger(n)) throw new VlakitError('E_USAGE', `pixel_values of ${images!.length} values are not whole ${v.channels}x${v.imageSize}x${v.imageSize} tiles`);
  const tokens = ids.filter((i) => i === v.imageTokenId).length;
  if (tokens !== n * v.tokensPerImage) throw new VlakitError('E_USAGE', `the prompt has ${tokens} image tokens (id ${v.imageTokenId}); ${n} image tiles need ${n * v.tokensPerImage}`);
  return n;
}

export interface IdGenerateOptions {
  maxNewTokens?: number;
  /** 0 (default): greedy. */
  temperature?: number;
  topP?: number;
  seed?: number;
  useCache?: boolean;
  /** Stop at the model's end-of-sequence ids (default true). */
  stopAtEos?: boolean;
  /** The end-of-sequence ids (default the model config's; a processor knows more: its tokenizer's, its end of turn). */
  eosIds?: number[];
}

/** Why generation stopped: an end-of-sequence id, maxNewTokens, or the model's last position. */
export type StopReason = 'eos' | 'length' | 'positions';

/**
 * Generates token ids after `prompt`, at most up to the model's last position (stop "positions").
 * @example const { ids } = await generateIds(lm, [1], { maxNewTokens: 40 }); // greedy
 */
export async function generateIds(lm: CausalLm, prompt: number[], o: IdGenerateOptions & { images?: Float32Array } = {}): Promise<{ ids: number[]; stop: StopReason }> {
  if (prompt.length === 0) throw new VlakitError('E_USAGE', 'the prompt has no tokens');
  // n new tokens feed prompt.length + n - 1 positions: the last one is picked, never fed
  const room = lm.maxPositions - prompt.length + 1;
  const max = Math.min(o.maxNewTokens ?? 64, room);
  const rng = new Rng(o.seed ?? 0);
  const state = lm.start({ useCache: o.useCache });
  const ids: number[] = [];
  try {
    let logits = await state.prefill(prompt, o.images);
    for (let i = 0; i < max; i++) {
      const id = pickToken(logits, o.temperature ?? 0, o.topP ?? 1, rng);
      ids.push(id);
      if ((o.stopAtEos ?? true) && (o.eosIds ?? lm.eosIds).includes(id)) return { ids, stop: 'eos' };
      if (i + 1 < max) logits = await state.next(id);
    }
    return { ids, stop: max < (o.maxNewTokens ?? 64) ? 'positions' : 'length' };
  } finally {
    state.dispose();
  }
}

// the tokenizer moved to the processor (src/lib/model/processor); re-exported for callers of this module
export { type TextTokenizer, loadTextTokenizer } from '../model/processor/tokenizer.js';

export interface OpenCausalOptions {
  /** A PEFT LoRA adapter directory folded into a checkpoint's weights (not with an export: export it merged). */
  adapter?: string;
  /** tfjs backend for a checkpoint. */
  backend?: string;
  /** onnxruntime execution provider for an export. */
  device?: 'cpu' | 'cuda';
}

/**
 * A causal LM from a directory: a Hugging Face checkpoint (tfjs) or its vlakit ONNX export (onnxruntime).
 * @example const lm = await openCausalLm('../shared/models/stories260k');
 */
export async function openCausalLm(dir: string, o: OpenCausalOptions = {}): Promise<CausalLm> {
  const { isCausalExport, OrtCausalLm } = await import('./ort-causal.js');
  if (isCausalExport(dir)) {
    if (o.adapter) throw new VlakitError('E_USAGE', 'an export has its adapter merged already: give --adapter to `vlakit export` (or run the checkpoint with --adapter)', { file: dir });
    return OrtCausalLm.open(dir, { device: o.device });
  }
  const { selectBackend } = await import('../model/backend.js');
  const { loadHfCheckpoint } = await import('../model/arch/hf.js');
  const ckpt = loadHfCheckpoint(dir);
  if (o.adapter) {
    const { applyPeftAdapter } = await import('../model/arch/adapter.js');
    applyPeftAdapter(ckpt, o.adapter);
  }
  await selectBackend(o.backend);
  return new TfjsCausalLm(ckpt);
}

export interface GenerateFromDirOptions extends IdGenerateOptions, OpenCausalOptions {
  /** Text, through the model's processor (special tokens added as its tokenizer adds them). */
  prompt?: string;
  /** Token ids, as they are. */
  inputIds?: number[];
  /** Image files (PNG, JPEG...) for the prompt's `<image>` placeholders, in order (with `chat`, one user turn's). */
  images?: string[];
  /** Render the prompt as one user turn (its images first) through the chat template, generation prompt added. */
  chat?: boolean;
  /** Caps on the image work (processor options): the resize target of the longest edge, and tiling on or off. */
  imageSize?: number;
  imageSplitting?: boolean;
}

export interface GenerateResult {
  engine: 'tfjs' | 'onnxruntime';
  model_type: string;
  /** The prompt as the model saw it: images expanded to their tile tokens. */
  prompt_ids: number[];
  ids: number[];
  /** The new tokens as text, when the model has a tokenizer. */
  text?: string;
  /** Image tiles given to the model (0 without images). */
  tiles: number;
  stop: StopReason;
}

/**
 * Generates from a model directory (checkpoint or export), the `vlakit generate` job. Text prompts and images go
 * through the model's processor (chat template, image tiles and tokens in place); generation stops at its eos ids.
 * @example await generateFromDir('../shared/models/stories260k', { inputIds: [1], maxNewTokens: 40 })
 */
export async function generateFromDir(dir: string, o: GenerateFromDirOptions): Promise<GenerateResult> {
  if ((o.prompt === undefined) === (o.inputIds === undefined)) throw new VlakitError('E_USAGE', 'give the prompt as text (--prompt) or as token ids (--input-ids), one of the two');
  const images = o.images ?? [];
  if (o.inputIds && (images.length || o.chat)) throw new VlakitError('E_USAGE', 'images and --chat need the prompt as text (--prompt): the processor places the image tokens');
  const { openProcessor } = await import('../model/processor/index.js');
  const proc = await openProcessor(dir, { longestEdge: o.imageSize, split: o.imageSplitting });
  let prompt = o.inputIds ?? [];
  let pixels: Float32Array | undefined;
  let tiles = 0;
  if (o.prompt !== undefined) {
    if (!proc.hasTokenizer) throw new VlakitError('E_USAGE', 'the model has no tokenizer.json: give the prompt as --input-ids', { file: dir });
    const { readFileBytes } = await import('../io/json-file.js');
    const bytes = images.map((f) => new Uint8Array(readFileBytes(f, 'image')));
    const text = o.chat
      ? proc.renderChat([{ role: 'user', content: images.length || proc.special.image !== undefined ? [...images.map(() => ({ type: 'image' as const })), { type: 'text' as const, text: o.prompt }] : o.prompt }], { addGenerationPrompt: true })
      : o.prompt;
    const inputs = await proc.encode(text, bytes);
    prompt = inputs.ids;
    tiles = inputs.tiles;
    pixels = tiles ? inputs.pixels : undefined;
  }
  const lm = await openCausalLm(dir, o);
  try {
    const r = await generateIds(lm, prompt, { ...o, images: pixels, eosIds: [...new Set([...lm.eosIds, ...proc.special.eos])] });
    return { engine: lm.engine, model_type: lm.modelType, prompt_ids: prompt, ids: r.ids, text: proc.hasTokenizer ? proc.decode(r.ids) : undefined, tiles, stop: r.stop };
  } finally {
    await lm.dispose();
  }
}
