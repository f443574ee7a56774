/**
 * A causal language model exported by vlakit (export/hf.ts) on onnxruntime-node, behind the same `CausalLm`
 * interface as the checkpoint on TensorFlow.js: the prefill graph runs the prompt, then the decode graph one token
 * at a time with the previous step's present.* as its past_key_values.* (onnxruntime's tensors are handed back
 * as they are; nothing is copied on the JS side).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import type * as OrtTypes from 'onnxruntime-node';
import { z } from 'zod';
import { VlakitError } from '../errors.js';
import { readJsonFile } from '../io/json-file.js';
import { type Architecture, architectureOf } from '../model/arch/registry.js';
import { type AttentionMaps, type CausalLm, type CausalState, checkPrompt, uncachedState } from './causal.js';
import { type Device, loadOrt, openGraph, openGraphPair } from './ort.js';

const ExportConfig = z.looseObject({
  model_type: z.string(),
  vlakit: z.object({ export: z.looseObject({ format: z.literal('onnx'), kind: z.literal('causal-lm'), graphs: z.object({ prefill: z.string(), decode: z.string() }) }) }),
});

/** True when `dir` holds a causal-LM export written by vlakit (config.json with vlakit.export.kind causal-lm). */
export function isCausalExport(dir: string): boolean {
  const file = path.join(dir, 'config.json');
  if (!existsSync(file)) return false;
  try {
    readJsonFile(file, ExportConfig);
    return true;
  } catch {
    return false;
  }
}

export class OrtCausalLm implements CausalLm {
  readonly engine = 'onnxruntime' as const;
  readonly modelType: string;
  readonly vocabSize: number;
  readonly maxPositions: number;
  readonly eosIds: number[];
  readonly vision?: CausalLm['vision'];
  private readonly layers: number;
  private readonly kv: { kvHeads: number; headDim: number };
  /** Every decoder attention weight of one forward pass: only an export with attentions.{i} outputs has them. */
  readonly attentions?: (ids: number[], images?: Float32Array, prefix?: number) => Promise<AttentionMaps>;

  private constructor(
    private readonly ort: typeof OrtTypes,
    private readonly prefillSession: OrtTypes.InferenceSession,
    private readonly decodeSession: OrtTypes.InferenceSession,
    arch: Architecture<unknown>,
    config: unknown,
  ) {
    this.modelType = arch.modelType;
    this.vocabSize = arch.vocabSize(config);
    this.maxPositions = arch.maxPositions(config);
    this.eosIds = arch.eosIds(config);
    const layout = arch.cache(config);
    this.layers = layout.layers;
    this.kv = layout;
    this.vision = arch.vision?.(config);
    if (prefillSession.outputNames.includes('attentions.0')) this.attentions = (ids, images, prefix) => this.attentionMaps(ids, images, prefix);
  }

  private async attentionMaps(ids: number[], images?: Float32Array, prefix?: number): Promise<AttentionMaps> {
    const out = await this.runPrompt(ids, images, prefix);
    const layers = Array.from({ length: this.layers }, (_, i) => out[`attentions.${i}`].data as Float32Array); // [1, H, N, N]
    const [, heads, positions] = out['attentions.0'].dims;
    for (const t of Object.values(out)) t.dispose();
    return { layers, heads, positions };
  }

  /** The last query's row of each layer's attentions.{i} [1, H, T, K]: [layer][head][key]. */
  private lastRows(out: OrtTypes.InferenceSession.OnnxValueMapType): number[][][] {
    return Array.from({ length: this.layers }, (_, i) => {
      const a = out[`attentions.${i}`];
      const [, H, T, K] = a.dims;
      const d = a.data as Float32Array;
      return Array.from({ length: H }, (_, h) => Array.from(d.subarray((h * T + T - 1) * K, (h * T + T) * K)));
    });
  }

  /**
   * Opens an export directory.
   * @example const lm = await OrtCausalLm.open('out/stories-onnx');
   */
  static async open(dir: string, o: { device?: Device; threads?: number } = {}): Promise<OrtCausalLm> {
    const file = path.join(dir, 'config.json');
    const raw = readJsonFile(file, ExportConfig, { what: 'export config', code: 'E_MODEL' });
    const arch = architectureOf(raw, file);
    const config = arch.parseConfig(raw, file);
    const ort = await loadOrt();
    const [prefill, decode] = await openGraphPair((name) => openGraph(ort, dir, name, o), raw.vlakit.export.graphs.prefill, raw.vlakit.export.graphs.decode);
    return new OrtCausalLm(ort, prefill, decode, arch, config);
  }

  private idsTensor(ids: number[]): OrtTypes.Tensor {
    return new this.ort.Tensor('int64', BigInt64Array.from(ids, (i) => BigInt(i)), [1, ids.length]);
  }

  /**
   * The prompt through the prefill graph; a vision-language model's prompt without images goes through the decode
   * graph with an empty past (its prefill takes at least one image tile).
   */
  private async runPrompt(ids: number[], images?: Float32Array, prefix = ids.length): Promise<OrtTypes.InferenceSession.OnnxValueMapType> {
    const n = checkPrompt(this, ids, images);
    const v = this.vision;
    if (!v) return this.prefillSession.run({ input_ids: this.idsTensor(ids), ...this.prefixFeed(this.prefillSession, prefix) });
    if (n > 0) return this.prefillSession.run({ input_ids: this.idsTensor(ids), ...this.prefixFeed(this.prefillSession, prefix), pixel_values: new this.ort.Tensor('float32', images!, [n, v.channels, v.imageSize, v.imageSize]) });
    const empty: Record<string, OrtTypes.Tensor> = {};
    for (let i = 0; i < this.layers; i++) {
      for (const kind of ['key', 'value']) empty[`past_key_values.${i}.${kind}`] = new this.ort.Tensor('float32', new Float32Array(0), [1, this.kv.kvHeads, 0, this.kv.headDim]);
    }
    return this.decodeSession.run({ input_ids: this.idsTensor(ids), ...empty, ...this.prefixFeed(this.decodeSession, prefix), ...this.maskFeed(ids.length) });
  }

  /** A fused decode graph's attention_mask: ones over the `total` positions of past and new tokens; nothing for standard graphs. */
  private maskFeed(total: number): Record<string, OrtTypes.Tensor> {
    return this.decodeSession.inputNames.includes('attention_mask') ? { attention_mask: new this.ort.Tensor('int64', new BigInt64Array(total).fill(1n), [1, total]) } : {};
  }

  /** A prefix-LM graph's `prefix_length` input (PaliGemma); nothing for graphs without one. */
  private prefixFeed(s: OrtTypes.InferenceSession, prefix: number): Record<string, OrtTypes.Tensor> {
    return s.inputNames.includes('prefix_length') ? { prefix_length: new this.ort.Tensor('int64', BigInt64Array.from([BigInt(prefix)]), [1]) } : {};
  }

  async logits(ids: number[], images?: Float32Array, prefix?: number): Promise<Float32Array> {
    const out = await this.runPrompt(ids, images, prefix);
    const l = out.logits.data as Float32Array;
    for (const t of Object.values(out)) t.dispose();
    return l;
  }

  start(o: { useCache?: boolean; attentions?: boolean } = {}): CausalState {
    if (o.attentions && !this.attentions) throw new VlakitError('E_USAGE', 'this export has no attention outputs: export it again with --attentions, or run attn-viz on the checkpoint it was exported from (with its --adapter)');
    const V = this.vocabSize;
    const last = (l: Float32Array) => l.slice(l.length - V);
    if (o.useCache === false) return uncachedState(this, o.attentions);
    let past: Record<string, OrtTypes.Tensor> = {};
    let length = 0;
    let prompt = 0;
    let rows: number[][][] = [];
    const keep = (out: OrtTypes.InferenceSession.OnnxValueMapType, n: number): Float32Array => {
      if (o.attentions) rows = this.lastRows(out);
      for (let i = 0; i < this.layers; i++) out[`attentions.${i}`]?.dispose();
      for (const t of Object.values(past)) t.dispose();
      past = {};
      for (let i = 0; i < this.layers; i++) {
        past[`past_key_values.${i}.key`] = out[`present.${i}.key`] as OrtTypes.Tensor;
        past[`past_key_values.${i}.value`] = out[`present.${i}.value`] as OrtTypes.Tensor;
      }
      length += n;
      const l = last((out.logits as OrtTypes.Tensor).data as Float32Array);
      (out.logits as OrtTypes.Tensor).dispose();
      return l;
    };
    return {
      prefill: async (ids, images) => {
        length = 0;
        prompt = ids.length;
        return keep(await this.runPrompt(ids, images), ids.length);
      },
      next: async (id) => {
        if (length + 1 > this.maxPositions) throw new VlakitError('E_USAGE', `the sequence would pass the model's ${this.maxPositions} positions`);
        checkPrompt(this, [id], undefined, { step: true });
        return keep(await this.decodeSession.run({ input_ids: this.idsTensor([id]), ...past, ...this.prefixFeed(this.decodeSession, prompt), ...this.maskFeed(length + 1) }), 1);
      },
      dispose: () => {
        for (const t of Object.values(past)) t.dispose();
        past = {};
      },
      attentions: o.attentions ? () => rows : undefined,
    };
  }

  async dispose(): Promise<void> {
    await this.prefillSession.release();
    await this.decodeSession.release();
  }
}
