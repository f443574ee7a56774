/**
 * The onnxruntime runner: an export directory (prefill.onnx + decode.onnx over model.onnx_data, config.json,
 * tokenizer.json) on onnxruntime-node, CPU by default or the CUDA execution provider when the install has it.
 * The KV cache lives in buffers on the JS side, grown by each step's new_key_values.{i}.*: with a fused export
 * (decode.onnx takes attention_mask) preallocated buffers written in place, else buffers re-laid out per step.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type * as OrtTypes from 'onnxruntime-node';
import { VlakitError } from '../errors.js';
import { exportWeightRange, int8RunWarning } from '../export/quantize.js';
import type { VlaConfig } from '../model/config.js';
import type { Int8Path } from '../util/cpu.js';
import { hostInt8 } from './int8.js';
import { type Tokenizer, loadTokenizer } from '../model/tokenizer.js';
import type { DecodeState, RunnerInfo, StepOutput, VlaRunner } from './runner.js';
import { BuiltinPromptingRunner } from './builtin.js';
import { ActionStatsSchema } from '../actions/stats.js';
import { readJsonFile } from '../io/json-file.js';
import { ExportConfigSchema } from './export-config.js';

type Ort = typeof OrtTypes;
let ortModule: Ort | undefined;

/** onnxruntime-node, loaded on first use (its native library is large). */
export async function loadOrt(): Promise<Ort> {
  if (!ortModule) {
    const m = (await import('onnxruntime-node')) as Ort & { default?: Ort };
    ortModule = m.default ?? m;
  }
  return ortModule;
}

export type Device = 'cpu' | 'cuda';

export interface ExportMeta {
  format: 'onnx';
  /** With fused operators, graphs with attention outputs are a separate pair. */
  graphs: { prefill: string; decode: string; prefill_attentions?: string; decode_attentions?: string };
  attentions: boolean;
  num_image_tokens: number;
  /** "none", an int8 entry ({ method: 'int8', weight_range, ... }), or in older exports "int8" / "int8-reduced-range". */
  quantization?: unknown;
}

export interface OrtOptions {
  device?: Device;
  /** Intra-op threads (default: onnxruntime's choice, one per core). */
  threads?: number;
  /**
   * Told about a problem that does not stop the run (an int8 export whose full-range weights this CPU saturates on);
   * default: a `vlakit: warning:` line on stderr.
   */
  onWarning?: (message: string) => void;
  /** The CPU's int8 path for that warning (default: this machine's, measured). */
  cpu?: Int8Path;
}

/** True when `dir` holds a vlakit ONNX export. */
export function isExport(dir: string): boolean {
  const cfg = path.join(dir, 'config.json');
  if (!existsSync(cfg)) return false;
  try {
    return Boolean((JSON.parse(readFileSync(cfg, 'utf8')) as { vlakit?: { export?: unknown } }).vlakit?.export);
  } catch {
    return false;
  }
}

type Session = OrtTypes.InferenceSession;

/**
 * Opens one graph of an export directory: CPU or the asked-for execution provider, all graph optimizations; the
 * threads spin while a run is on (fast hand-offs between the many small nodes) and stop when it ends, so one
 * session's threads do not take the cores from the next run, nor from the rest of the process.
 */
export async function openGraph(ort: Ort, dir: string, name: string, o: { device?: Device; threads?: number } = {}): Promise<Session> {
  const file = path.join(dir, name);
  const device = o.device ?? 'cpu';
  if (!existsSync(file)) throw new VlakitError('E_NOT_FOUND', `the export lacks ${name}`, { file: dir });
  const options: OrtTypes.InferenceSession.SessionOptions = {
    executionProviders: [device],
    graphOptimizationLevel: 'all',
    logSeverityLevel: 3,
    ...(o.threads ? { intraOpNumThreads: o.threads } : {}),
  };
  try {
    const extra = { session: { intra_op: { allow_spinning: '1' }, force_spinning_stop: '1' } };
    return await ort.InferenceSession.create(file, { ...options, extra });
  } catch (err) {
    const msg = (err as Error).message;
    if (device !== 'cpu' && /cuda|provider|libcu|cudnn/i.test(msg)) throw new VlakitError('E_USAGE', `onnxruntime cannot use the ${device} execution provider here (${msg.split('\n')[0]}); install onnxruntime-node with its CUDA files, or use --device cpu`, {}, { cause: err });
    throw new VlakitError('E_ONNX', `onnxruntime cannot load ${name}: ${msg.split('\n')[0]}`, { file }, { cause: err });
  }
}

/** Opens two graphs (prefill and decode); the first is released when the second cannot be opened. */
export async function openGraphPair(open: (name: string) => Promise<Session>, first: string, second: string): Promise<[Session, Session]> {
  const a = await open(first);
  try {
    return [a, await open(second)];
  } catch (err) {
    await a.release();
    throw err;
  }
}

/** A generation's KV cache on the JS side: the past_key_values.* feeds of the next step, grown by each step's new ones. */
interface KvCache {
  length: number;
  reset(tensors: Record<string, OrtTypes.Tensor>, length: number): void;
  feeds(T: number): Record<string, OrtTypes.Tensor>;
  append(tensors: Record<string, OrtTypes.Tensor>, T: number): void;
}

/**
 * The KV cache of one generation on the JS side, per layer: past_key_values.{i}.* of the next step, built by
 * appending each step's new_key_values.{i}.* (two buffers per tensor, swapped, grown by doubling), so the whole
 * cache is not copied out of onnxruntime at every token.
 */
class KvStore implements KvCache {
  private bufs = new Map<string, [Float32Array, Float32Array]>();
  length = 0;

  constructor(private readonly ort: Ort, private readonly kvHeads: number, private readonly hd: number) {}

  /** Replaces the cache with `tensors` (name -> [1, KV, P, hd]), as the prefill returns them. */
  reset(tensors: Record<string, OrtTypes.Tensor>, length: number): void {
    this.length = 0;
    for (const [name, t] of Object.entries(tensors)) this.write(name, t.data as Float32Array, length);
    this.length = length;
  }

  /** Appends T new positions (name -> [1, KV, T, hd]). */
  append(tensors: Record<string, OrtTypes.Tensor>, T: number): void {
    for (const [name, t] of Object.entries(tensors)) this.write(name, t.data as Float32Array, T);
    this.length += T;
  }

  private write(name: string, add: Float32Array, T: number): void {
    const { kvHeads: KV, hd } = this;
    const P = this.length;
    const need = KV * (P + T) * hd;
    let pair = this.bufs.get(name);
    if (!pair || pair[1].length < need) {
      const cap = Math.max(need * 2, KV * 256 * hd);
      const grown: [Float32Array, Float32Array] = [pair ? pair[0] : new Float32Array(cap), new Float32Array(cap)];
      if (pair && pair[0].length < cap) {
        grown[0] = new Float32Array(cap);
        grown[0].set(pair[0].subarray(0, KV * P * hd));
      }
      pair = grown;
    }
    const [cur, next] = pair;
    for (let h = 0; h < KV; h++) {
      next.set(cur.subarray(h * P * hd, (h + 1) * P * hd), h * (P + T) * hd); // [KV, P, hd] -> [KV, P + T, hd]
      next.set(add.subarray(h * T * hd, (h + 1) * T * hd), h * (P + T) * hd + P * hd);
    }
    this.bufs.set(name, [next, cur]);
  }

  /** The feeds past_key_values.{i}.* for the next step (of any length). */
  feeds(): Record<string, OrtTypes.Tensor> {
    const out: Record<string, OrtTypes.Tensor> = {};
    const n = this.kvHeads * this.length * this.hd;
    for (const [name, [cur]] of this.bufs) out[name] = new this.ort.Tensor('float32', cur.subarray(0, n), [1, this.kvHeads, this.length, this.hd]);
    return out;
  }
}

/**
 * The KV cache of one generation for a fused export (its decode step takes attention_mask): per tensor one buffer
 * [1, KV, capacity, hd] given whole as past_key_values.{i}.*, attention_mask saying how much of it is filled; each
 * step's new_key_values.{i}.* are written into place, so nothing is moved per token on the JS side.
 */
class KvBuffers implements KvCache {
  private bufs = new Map<string, Float32Array>(); // past_key_values.{i}.{key,value} -> [KV, capacity, hd]
  private capacity = 0;
  private ones = new BigInt64Array(0);
  length = 0;
  /**
   * Free positions after a (re)allocation: onnxruntime copies the whole buffer into present.* at every step, so it
   * stays short; growing copies it once per HEADROOM tokens.
   */
  static readonly HEADROOM = 16;

  constructor(private readonly ort: Ort, private readonly kvHeads: number, private readonly hd: number) {}

  /** Starts from the prefill's present tensors (past name -> [1, KV, P, hd]). */
  reset(tensors: Record<string, OrtTypes.Tensor>, length: number): void {
    this.bufs.clear();
    this.capacity = length + KvBuffers.HEADROOM;
    for (const [name, t] of Object.entries(tensors)) this.bufs.set(name, this.relayout(t.data as Float32Array, length, length, this.capacity));
    this.length = length;
  }

  /** The first `filled` positions of [KV, from, hd] in a new [KV, to, hd] buffer. */
  private relayout(src: Float32Array, filled: number, from: number, to: number): Float32Array {
    const { kvHeads: KV, hd } = this;
    const out = new Float32Array(KV * to * hd);
    for (let h = 0; h < KV; h++) out.set(src.subarray(h * from * hd, (h * from + filled) * hd), h * to * hd);
    return out;
  }

  /** The feeds for a step of T new positions (room made first). */
  feeds(T: number): Record<string, OrtTypes.Tensor> {
    const total = this.length + T;
    if (total > this.capacity) {
      const grown = total + KvBuffers.HEADROOM;
      for (const [name, buf] of this.bufs) this.bufs.set(name, this.relayout(buf, this.length, this.capacity, grown));
      this.capacity = grown;
    }
    if (this.ones.length < total) this.ones = new BigInt64Array(this.capacity + KvBuffers.HEADROOM).fill(1n);
    const feeds: Record<string, OrtTypes.Tensor> = { attention_mask: new this.ort.Tensor('int64', this.ones.subarray(0, total), [1, total]) };
    for (const [name, buf] of this.bufs) feeds[name] = new this.ort.Tensor('float32', buf, [1, this.kvHeads, this.capacity, this.hd]);
    return feeds;
  }

  /** Writes a step's new keys/values (past name -> [1, KV, T, hd]) after the filled part. */
  append(tensors: Record<string, OrtTypes.Tensor>, T: number): void {
    const { kvHeads: KV, hd, capacity, length } = this;
    for (const [name, t] of Object.entries(tensors)) {
      const buf = this.bufs.get(name)!;
      const add = t.data as Float32Array;
      for (let h = 0; h < KV; h++) buf.set(add.subarray(h * T * hd, (h + 1) * T * hd), (h * capacity + length) * hd);
    }
    this.length += T;
  }
}

export class OrtRunner extends BuiltinPromptingRunner implements VlaRunner {
  readonly info: RunnerInfo;

  private constructor(
    private readonly ort: Ort,
    readonly config: VlaConfig,
    readonly tokenizer: Tokenizer,
    private readonly meta: ExportMeta,
    private readonly prefillSession: OrtTypes.InferenceSession,
    private readonly decodeSession: OrtTypes.InferenceSession,
    private readonly openSession: (name: string) => Promise<OrtTypes.InferenceSession>,
    device: Device,
    dir: string,
    readonly actionCodec?: Record<string, unknown>,
    readonly actionStats?: unknown,
  ) {
    super(config, tokenizer);
    this.info = { engine: 'onnxruntime', device, dir, model: 'vlakit' };
  }

  /**
   * Opens an export directory.
   * @example const runner = await OrtRunner.open('runs/sft-onnx', { device: 'cpu' })
   */
  static async open(dir: string, o: OrtOptions = {}): Promise<OrtRunner> {
    const cfgFile = path.join(dir, 'config.json');
    if (!existsSync(cfgFile)) throw new VlakitError('E_NOT_FOUND', 'not a vlakit export: no config.json', { file: dir });
    const { vlakit, ...config } = readJsonFile(cfgFile, ExportConfigSchema, { what: 'export config' });
    const meta = vlakit?.export;
    if (!meta || meta.format !== 'onnx') throw new VlakitError('E_MODEL', 'config.json has no vlakit.export entry: this is not a directory written by vlakit export', { file: cfgFile });
    const ort = await loadOrt();
    const device = o.device ?? 'cpu';
    const range = exportWeightRange(meta.quantization);
    if (device === 'cpu' && range === 'full') {
      const warning = int8RunWarning(range, o.cpu ?? (await hostInt8(ort)), dir);
      if (warning) (o.onWarning ?? ((m: string) => process.stderr.write(`vlakit: warning: ${m}\n`)))(warning);
    }
    const session = (name: string) => openGraph(ort, dir, name, { device, threads: o.threads });
    const tokFile = path.join(dir, 'tokenizer.json');
    if (!existsSync(tokFile)) throw new VlakitError('E_NOT_FOUND', 'the export lacks tokenizer.json', { file: dir });
    const tokenizer = await loadTokenizer(readFileSync(tokFile, 'utf8'), tokFile);
    const statsFile = path.join(dir, 'action_stats.json');
    const stats = existsSync(statsFile) ? readJsonFile(statsFile, ActionStatsSchema, { what: 'action statistics' }) : undefined;
    const [prefill, decode] = await openGraphPair(session, meta.graphs.prefill, meta.graphs.decode);
    return new OrtRunner(ort, config as VlaConfig, tokenizer, meta, prefill, decode, session, device, dir, vlakit?.action_codec ?? undefined, stats);
  }

  private attnPair: Promise<[OrtTypes.InferenceSession, OrtTypes.InferenceSession]> | undefined;

  /** The sessions that return attention weights: the main pair, or the separate pair of a fused export (opened on first use). */
  private async attentionSessions(): Promise<[OrtTypes.InferenceSession, OrtTypes.InferenceSession]> {
    if (!this.meta.attentions) throw new VlakitError('E_USAGE', 'this export has no attention outputs; export it again with --attentions', { file: this.info.dir });
    const g = this.meta.graphs;
    if (!g.prefill_attentions || !g.decode_attentions) return [this.prefillSession, this.decodeSession];
    this.attnPair ??= openGraphPair(this.openSession, g.prefill_attentions, g.decode_attentions).catch((err) => {
      this.attnPair = undefined; // a later call may try again
      throw err;
    });
    return this.attnPair;
  }

  private pixelTensor(p: Float32Array): OrtTypes.Tensor {
    const c = this.config;
    const S = c.vision_config.image_size;
    if (p.length !== c.num_cameras * S * S * 3) throw new VlakitError('E_USAGE', `pixels hold ${p.length} values; this model takes ${c.num_cameras} x ${S} x ${S} x 3`);
    return new this.ort.Tensor('float32', p, [1, c.num_cameras, S, S, 3]);
  }

  private idsTensor(ids: number[]): OrtTypes.Tensor {
    return new this.ort.Tensor('int64', BigInt64Array.from(ids, (x) => BigInt(x)), [1, ids.length]);
  }

  /** The last position's logits and attention rows of a run's outputs. */
  private lastStep(out: OrtTypes.InferenceSession.OnnxValueMapType, attentions: boolean): StepOutput {
    const logits = out.logits;
    const [, T, V] = logits.dims;
    const data = logits.data as Float32Array;
    const step: StepOutput = { logits: data.slice((T - 1) * V, T * V) };
    if (attentions) {
      step.attentions = [];
      for (let i = 0; i < this.config.text_config.num_hidden_layers; i++) {
        const a = out[`attentions.${i}`];
        const [, H, Tq, Tk] = a.dims;
        const d = a.data as Float32Array;
        step.attentions.push(Array.from({ length: H }, (_, h) => Array.from(d.subarray((h * Tq + Tq - 1) * Tk, (h * Tq + Tq) * Tk)))); // [1, H, Tq, Tk] -> last query row per head
      }
    }
    return step;
  }

  start(o: { useCache: boolean; attentions: boolean }): DecodeState {
    if (o.attentions && !this.meta.attentions) throw new VlakitError('E_USAGE', 'this export has no attention outputs; export it again with --attentions', { file: this.info.dir });
    const sessions = o.attentions ? this.attentionSessions() : Promise.resolve([this.prefillSession, this.decodeSession] as const);
    const t = this.config.text_config;
    const L = t.num_hidden_layers;
    const hd = t.hidden_size / t.num_attention_heads;
    // a fused decode step (it takes attention_mask) reads preallocated buffers; the standard graphs grow the cache
    const buffered = !o.attentions && this.decodeSession.inputNames.includes('attention_mask');
    const cache: KvCache = buffered ? new KvBuffers(this.ort, t.num_key_value_heads, hd) : new KvStore(this.ort, t.num_key_value_heads, hd);
    let px: OrtTypes.Tensor | undefined;
    let seq: number[] = [];
    const atts = o.attentions ? Array.from({ length: L }, (_, i) => `attentions.${i}`) : [];
    const kvNames = (prefix: string) => Array.from({ length: L }, (_, i) => [`${prefix}.${i}.key`, `${prefix}.${i}.value`]).flat();
    const names = { past: kvNames('past_key_values'), present: kvNames('present'), fresh: kvNames('new_key_values') };
    const decodeFetches = ['logits', ...names.fresh, ...atts];
    /** The outputs `prefix`.{i}.* under the names past_key_values.{i}.* they are fed back as. */
    const pick = (out: OrtTypes.InferenceSession.OnnxValueMapType, from: string[]) => Object.fromEntries(from.map((n, j) => [names.past[j], out[n]]));
    const runPrefill = async () => {
      const [prefill] = await sessions;
      const out = await prefill.run({ pixel_values: px!, input_ids: this.idsTensor(seq) }, ['logits', ...(o.useCache ? names.present : []), ...atts]);
      if (o.useCache) cache.reset(pick(out, names.present), out['present.0.key'].dims[2]);
      return this.lastStep(out, o.attentions);
    };
    return {
      prefill: async (pixels, ids) => {
        px = this.pixelTensor(pixels);
        seq = [...ids];
        return runPrefill();
      },
      next: async (id) => {
        seq.push(id);
        if (!o.useCache) return runPrefill();
        const [, decode] = await sessions;
        const out = await decode.run({ input_ids: this.idsTensor([id]), ...cache.feeds(1) }, decodeFetches);
        cache.append(pick(out, names.fresh), 1);
        return this.lastStep(out, o.attentions);
      },
      dispose: () => {
        px = undefined;
      },
    };
  }

  async logits(pixels: Float32Array, ids: number[]): Promise<Float32Array> {
    const out = await this.prefillSession.run({ pixel_values: this.pixelTensor(pixels), input_ids: this.idsTensor(ids) }, ['logits']);
    return out.logits.data as Float32Array;
  }

  async attentions(pixels: Float32Array, ids: number[]): Promise<{ layers: Float32Array[]; heads: number; positions: number }> {
    const [prefill] = await this.attentionSessions();
    const L = this.config.text_config.num_hidden_layers;
    const names = Array.from({ length: L }, (_, i) => `attentions.${i}`);
    const out = await prefill.run({ pixel_values: this.pixelTensor(pixels), input_ids: this.idsTensor(ids) }, names);
    const [, heads, positions] = out[names[0]].dims;
    return { layers: names.map((n) => out[n].data as Float32Array), heads, positions };
  }

  async dispose(): Promise<void> {
    await this.prefillSession.release();
    await this.decodeSession.release();
    const pair = await this.attnPair?.catch(() => undefined);
    if (pair) for (const s of pair) await s.release();
  }
}
