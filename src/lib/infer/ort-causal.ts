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
import type { CausalLm, CausalState } from './causal.js';
import { type Device, loadOrt } from './ort.js';

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
  private readonly layers: number;

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
    this.layers = arch.cache(config).layers;
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
    const options: OrtTypes.InferenceSession.SessionOptions = { executionProviders: [o.device ?? 'cpu'], graphOptimizationLevel: 'all', logSeverityLevel: 3, ...(o.threads ? { intraOpNumThreads: o.threads } : {}) };
    const open = async (name: string) => {
      try {
        return await ort.InferenceSession.create(path.join(dir, name), options);
      } catch (err) {
        throw new VlakitError('E_ONNX', `onnxruntime cannot load ${name}: ${(err as Error).message.split('\n')[0]}`, { file: path.join(dir, name) }, { cause: err });
      }
    };
    const prefill = await open(raw.vlakit.export.graphs.prefill);
    try {
      return new OrtCausalLm(ort, prefill, await open(raw.vlakit.export.graphs.decode), arch, config);
    } catch (err) {
      await prefill.release();
      throw err;
    }
  }

  private idsTensor(ids: number[]): OrtTypes.Tensor {
    if (ids.some((i) => !Number.isInteger(i) || i < 0 || i >= this.vocabSize)) throw new VlakitError('E_USAGE', `token ids must be integers in [0, ${this.vocabSize})`);
    return new this.ort.Tensor('int64', BigInt64Array.from(ids, (i) => BigInt(i)), [1, ids.length]);
  }

  async logits(ids: number[]): Promise<Float32Array> {
    const out = await this.prefillSession.run({ input_ids: this.idsTensor(ids) });
    const l = out.logits.data as Float32Array;
    for (const t of Object.values(out)) t.dispose();
    return l;
  }

  start(o: { useCache?: boolean } = {}): CausalState {
    const V = this.vocabSize;
    const last = (l: Float32Array) => l.slice(l.length - V);
    if (o.useCache === false) {
      let seq: number[] = [];
      return {
        prefill: async (ids) => last(await this.logits((seq = [...ids]))),
        next: async (id) => last(await this.logits((seq = [...seq, id]))),
        dispose: () => {},
      };
    }
    let past: Record<string, OrtTypes.Tensor> = {};
    let length = 0;
    const keep = (out: OrtTypes.InferenceSession.OnnxValueMapType, n: number): Float32Array => {
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
      prefill: async (ids) => {
        length = 0;
        return keep(await this.prefillSession.run({ input_ids: this.idsTensor(ids) }), ids.length);
      },
      next: async (id) => {
        if (length + 1 > this.maxPositions) throw new VlakitError('E_USAGE', `the sequence would pass the model's ${this.maxPositions} positions`);
        return keep(await this.decodeSession.run({ input_ids: this.idsTensor([id]), ...past }), 1);
      },
      dispose: () => {
        for (const t of Object.values(past)) t.dispose();
        past = {};
      },
    };
  }

  async dispose(): Promise<void> {
    await this.prefillSession.release();
    await this.decodeSession.release();
  }
}
