/**
 * The onnxruntime runner: an export directory (prefill.onnx + decode.onnx over model.onnx_data, config.json,
 * tokenizer.json) on onnxruntime-node, CPU by default or the CUDA execution provider when the install has it.
 * The KV cache stays in onnxruntime tensors between steps: present.{i}.* of one run is past_key_values.{i}.* of
 * the next.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type * as OrtTypes from 'onnxruntime-node';
import { VlakitError } from '../errors.js';
import type { VlaConfig } from '../model/config.js';
import { type Tokenizer, loadTokenizer } from '../model/tokenizer.js';
import type { DecodeState, RunnerInfo, StepOutput, VlaRunner } from './runner.js';

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

interface ExportMeta {
  format: 'onnx';
  graphs: { prefill: string; decode: string };
  attentions: boolean;
  num_image_tokens: number;
}

export interface OrtOptions {
  device?: Device;
  /** Intra-op threads (default: onnxruntime's choice, one per core). */
  threads?: number;
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

export class OrtRunner implements VlaRunner {
  readonly info: RunnerInfo;

  private constructor(
    private readonly ort: Ort,
    readonly config: VlaConfig,
    readonly tokenizer: Tokenizer,
    private readonly meta: ExportMeta,
    private readonly prefillSession: OrtTypes.InferenceSession,
    private readonly decodeSession: OrtTypes.InferenceSession,
    device: Device,
    dir: string,
    readonly actionCodec?: Record<string, unknown>,
    readonly actionStats?: unknown,
  ) {
    this.info = { engine: 'onnxruntime', device, dir };
  }

  /**
   * Opens an export directory.
   * @example const runner = await OrtRunner.open('runs/sft-onnx', { device: 'cpu' })
   */
  static async open(dir: string, o: OrtOptions = {}): Promise<OrtRunner> {
    const cfgFile = path.join(dir, 'config.json');
    if (!existsSync(cfgFile)) throw new VlakitError('E_NOT_FOUND', 'not a vlakit export: no config.json', { file: dir });
    const { vlakit, ...config } = JSON.parse(readFileSync(cfgFile, 'utf8')) as VlaConfig & { vlakit?: { export?: ExportMeta; action_codec?: Record<string, unknown> } };
    const meta = vlakit?.export;
    if (!meta || meta.format !== 'onnx') throw new VlakitError('E_MODEL', 'config.json has no vlakit.export entry: this is not a directory written by vlakit export', { file: cfgFile });
    const ort = await loadOrt();
    const device = o.device ?? 'cpu';
    const options: OrtTypes.InferenceSession.SessionOptions = {
      executionProviders: [device],
      graphOptimizationLevel: 'all',
      logSeverityLevel: 3,
      ...(o.threads ? { intraOpNumThreads: o.threads } : {}),
    };
    const session = async (name: string) => {
      const file = path.join(dir, name);
      if (!existsSync(file)) throw new VlakitError('E_NOT_FOUND', `the export lacks ${name}`, { file: dir });
      try {
        return await ort.InferenceSession.create(file, options);
      } catch (err) {
        const msg = (err as Error).message;
        if (device !== 'cpu') throw new VlakitError('E_USAGE', `onnxruntime cannot use the ${device} execution provider here (${msg.split('\n')[0]}); install onnxruntime-node with its CUDA files, or use --device cpu`, {}, { cause: err });
        throw new VlakitError('E_ONNX', `onnxruntime cannot load ${name}: ${msg.split('\n')[0]}`, { file }, { cause: err });
      }
    };
    const tokenizer = await loadTokenizer(readFileSync(path.join(dir, 'tokenizer.json'), 'utf8'));
    const statsFile = path.join(dir, 'action_stats.json');
    const stats = existsSync(statsFile) ? JSON.parse(readFileSync(statsFile, 'utf8')) : undefined;
    const prefill = await session(meta.graphs.prefill);
    const decode = await session(meta.graphs.decode);
    return new OrtRunner(ort, config as VlaConfig, tokenizer, meta, prefill, decode, device, dir, vlakit?.action_codec ?? undefined, stats);
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

  private fetches(attentions: boolean): string[] {
    const L = this.config.text_config.num_hidden_layers;
    const names = ['logits'];
    for (let i = 0; i < L; i++) names.push(`present.${i}.key`, `present.${i}.value`);
    if (attentions) for (let i = 0; i < L; i++) names.push(`attentions.${i}`);
    return names;
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
    const L = this.config.text_config.num_hidden_layers;
    let px: OrtTypes.Tensor | undefined;
    let seq: number[] = [];
    let past: Record<string, OrtTypes.Tensor> = {};
    const release = (tensors: Record<string, OrtTypes.Tensor>) => {
      for (const t of Object.values(tensors)) (t as { dispose?: () => void }).dispose?.();
    };
    const keep = (out: OrtTypes.InferenceSession.OnnxValueMapType) => {
      const next: Record<string, OrtTypes.Tensor> = {};
      for (let i = 0; i < L; i++) {
        next[`past_key_values.${i}.key`] = out[`present.${i}.key`];
        next[`past_key_values.${i}.value`] = out[`present.${i}.value`];
      }
      release(past);
      past = next;
    };
    const fetches = this.fetches(o.attentions);
    const logitsOnly = o.attentions ? ['logits', ...fetches.filter((f) => f.startsWith('attentions.'))] : ['logits'];
    const runPrefill = async () => {
      const out = await this.prefillSession.run({ pixel_values: px!, input_ids: this.idsTensor(seq) }, o.useCache ? fetches : logitsOnly);
      if (o.useCache) keep(out);
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
        const out = await this.decodeSession.run({ input_ids: this.idsTensor([id]), ...past }, fetches);
        keep(out);
        return this.lastStep(out, o.attentions);
      },
      dispose: () => {
        release(past);
        past = {};
      },
    };
  }

  async logits(pixels: Float32Array, ids: number[]): Promise<Float32Array> {
    const out = await this.prefillSession.run({ pixel_values: this.pixelTensor(pixels), input_ids: this.idsTensor(ids) }, ['logits']);
    return out.logits.data as Float32Array;
  }

  async dispose(): Promise<void> {
    await this.prefillSession.release();
    await this.decodeSession.release();
  }
}
