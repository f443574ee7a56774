/**
 * A Hugging Face model (src/lib/model/arch) behind the VlaRunner interface: a causal LM (a checkpoint on
 * TensorFlow.js, or its export on onnxruntime) with its processor. The processor owns the prompt: one user turn
 * of the chat template (the camera images, then the text; the generation prompt added), the images split and
 * normalized, every image placeholder expanded in place; generation stops at the processor's end-of-sequence ids.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { VlakitError } from '../errors.js';
import type { ImageJson } from '../io/json.js';
import { readJsonFile } from '../io/json-file.js';
import { ActionStatsSchema } from '../actions/stats.js';
import type { ChatMessage, Processor, ProcessorImage } from '../model/processor/types.js';
import type { CausalLm } from './causal.js';
import type { DecodeState, ImageLayout, RunnerInfo, RunnerInput, StepOutput, VlaRunner } from './runner.js';

/** The most camera images one prompt of a vision-language model takes (each costs its tiles' tokens). */
export const MAX_PROMPT_IMAGES = 8;

/** What a policy needs beside the weights: how it writes actions, and the statistics its codec scales with. */
export interface PolicyMeta {
  actionCodec?: Record<string, unknown>;
  actionStats?: unknown;
}

const Codec = z.record(z.string(), z.unknown());
const MetaFile = z.looseObject({ action_codec: Codec.nullish(), action_stats: z.unknown().optional() });
const WithVlakit = z.looseObject({ vlakit: z.looseObject({ action_codec: Codec.nullish(), action_stats: z.unknown().optional() }).nullish() });

/**
 * The action codec and statistics saved with a model or an adapter, read from any of: `vlakit.json`
 * ({action_codec, action_stats}), a `vlakit` block in `config.json` or `adapter_config.json`, and
 * `action_stats.json`. The first found of each wins, in that order; none is fine (flags then say it).
 * @example const meta = readPolicyMeta('runs/vla-adapter')
 */
export function readPolicyMeta(dir: string): PolicyMeta {
  const meta: PolicyMeta = {};
  const take = (codec: Record<string, unknown> | null | undefined, stats: unknown, file: string) => {
    if (codec && !meta.actionCodec) meta.actionCodec = codec;
    if (stats !== undefined && stats !== null && meta.actionStats === undefined) meta.actionStats = parseStats(stats, file);
  };
  const vj = path.join(dir, 'vlakit.json');
  if (existsSync(vj)) {
    const m = readJsonFile(vj, MetaFile, { what: 'vlakit policy metadata', code: 'E_MODEL' });
    take(m.action_codec, m.action_stats, vj);
  }
  for (const name of ['config.json', 'adapter_config.json']) {
    const f = path.join(dir, name);
    if (!existsSync(f)) continue;
    const v = readJsonFile(f, WithVlakit, { what: name, code: 'E_MODEL' }).vlakit;
    if (v) take(v.action_codec, v.action_stats, f);
  }
  const sf = path.join(dir, 'action_stats.json');
  if (meta.actionStats === undefined && existsSync(sf)) meta.actionStats = readJsonFile(sf, ActionStatsSchema, { what: 'action statistics' });
  return meta;
}

function parseStats(v: unknown, file: string): unknown {
  const r = ActionStatsSchema.safeParse(v);
  if (!r.success) throw new VlakitError('E_MODEL', `invalid action statistics: ${r.error.issues[0]?.message ?? 'wrong shape'}`, { file, field: `action_stats.${r.error.issues[0]?.path.join('.') ?? ''}` });
  return r.data;
}

/** An image as the processor takes it: the encoded bytes. */
function imageBytes(img: ImageJson | Uint8Array): ProcessorImage {
  return img instanceof Uint8Array ? img : new Uint8Array(Buffer.from(img.b64, 'base64'));
}

/**
 * Per image, the map layout of its tiles: tile t of the prompt owns image tokens [t*L, (t+1)*L) (L = tokens per
 * tile, a square grid row-major after the pixel shuffle); an image split into rows x cols tiles is followed by its
 * global tile, whose grid is the image's map.
 */
export function tileLayout(imagePositions: number[], grids: { rows: number; cols: number }[], tokensPerTile: number): ImageLayout[] {
  const grid = Math.round(Math.sqrt(tokensPerTile));
  if (grid * grid !== tokensPerTile) throw new VlakitError('E_MODEL', `${tokensPerTile} image tokens per tile are not a square grid`);
  const out: ImageLayout[] = [];
  let t = 0;
  const tile = (k: number) => imagePositions.slice(k * tokensPerTile, (k + 1) * tokensPerTile);
  for (const g of grids) {
    const tiles: ImageLayout['tiles'] = [];
    for (let r = 0; r < g.rows; r++) for (let c = 0; c < g.cols; c++) tiles.push({ row: r, col: c, positions: tile(t++) });
    const global = tile(t++);
    if (global.length !== tokensPerTile) throw new VlakitError('E_MODEL', `the prompt has ${imagePositions.length} image tokens; its ${grids.length} images' tiles need more`);
    out.push({ grid, positions: global, ...(tiles.length ? { tiles } : {}) });
  }
  if (t * tokensPerTile !== imagePositions.length) throw new VlakitError('E_MODEL', `the prompt has ${imagePositions.length} image tokens; its ${grids.length} images' ${t} tiles take ${t * tokensPerTile}`);
  return out;
}

export class HfRunner implements VlaRunner {
  readonly info: RunnerInfo;
  readonly actionCodec?: Record<string, unknown>;
  readonly actionStats?: unknown;
  readonly maxPositions: number;
  readonly stopIds: number[];
  readonly answerEnd: number[];
  readonly maxImages: number;

  constructor(
    readonly lm: CausalLm,
    readonly processor: Processor,
    extras: PolicyMeta & { dir?: string; device?: string } = {},
  ) {
    this.info = { engine: lm.engine, device: extras.device ?? 'cpu', dir: extras.dir, model: lm.modelType };
    this.actionCodec = extras.actionCodec;
    this.actionStats = extras.actionStats;
    this.maxPositions = lm.maxPositions;
    this.stopIds = processor.special.eos.length ? processor.special.eos : lm.eosIds;
    this.answerEnd = processor.turnEnd.length ? processor.turnEnd : this.stopIds.slice(0, 1);
    this.maxImages = lm.vision ? MAX_PROMPT_IMAGES : 0;
  }

  encodeText(text: string): number[] {
    return this.processor.encodeText(text);
  }

  decode(ids: number[]): string {
    return this.processor.decode(ids, { skipSpecial: true });
  }

  async prepare(prompt: string, images: (ImageJson | Uint8Array)[], what = 'image'): Promise<RunnerInput> {
    const imgs: ProcessorImage[] = images.slice(0, this.maxImages).map(imageBytes);
    const messages: ChatMessage[] = [{ role: 'user', content: [...imgs.map(() => ({ type: 'image' as const })), { type: 'text' as const, text: prompt }] }];
    const text = this.processor.renderChat(messages, { addGenerationPrompt: true });
    let enc;
    try {
      enc = await this.processor.encode(text, imgs);
    } catch (err) {
      if (err instanceof VlakitError) throw err;
      throw new VlakitError('E_IMAGE', `${what}: ${(err as Error).message}`, {}, { cause: err });
    }
    const v = this.lm.vision;
    return { ids: enc.ids, pixels: enc.pixels, textOffset: 0, imagePositions: enc.imagePositions, images: v && imgs.length ? tileLayout(enc.imagePositions, enc.grids, v.tokensPerImage) : [] };
  }

  start(o: { useCache: boolean; attentions: boolean }): DecodeState {
    const st = this.lm.start({ useCache: o.useCache, attentions: o.attentions });
    const out = (logits: Float32Array): StepOutput => (o.attentions ? { logits, attentions: st.attentions?.() } : { logits });
    return {
      prefill: async (pixels, ids) => out(await st.prefill(ids, pixels.length ? pixels : undefined)),
      next: async (id) => out(await st.next(id)),
      dispose: () => st.dispose(),
    };
  }

  logits(pixels: Float32Array, ids: number[]): Promise<Float32Array> {
    return this.lm.logits(ids, pixels.length ? pixels : undefined);
  }

  async attentions(pixels: Float32Array, ids: number[]): Promise<{ layers: Float32Array[]; heads: number; positions: number }> {
    if (!this.lm.attentions) throw new VlakitError('E_USAGE', 'this export has no attention outputs: export it again with --attentions, or run attn-viz on the checkpoint it was exported from (with its --adapter)', { file: this.info.dir });
    return this.lm.attentions(ids, pixels.length ? pixels : undefined);
  }

  dispose(): Promise<void> | void {
    return this.lm.dispose();
  }
}
