/**
 * `vlakit export`: a checkpoint (LoRA merged into the weights) as ONNX, prefill and decode graphs over one external
 * weights file, with the tokenizer, the action representation, the normalization statistics and the config beside
 * them, so that the directory alone runs the policy. Every graph passes the structural check before the directory
 * is renamed into place.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { VlakitError } from '../errors.js';
import { selectBackend } from '../model/backend.js';
import { claimOutput, type OutputOptions, writeOutputDir } from '../io/outputs.js';
import { loadCheckpoint } from '../model/checkpoint.js';
import type { CheckReport } from './check.js';
import { ExportFiles } from './files.js';
import { type VlaWeights, vlaGraph } from './vla.js';
import { OPSET, WeightStore } from './onnx.js';
import { type Int8Quantization, type WeightRange, int8Quantization } from './quantize.js';
import type { Int8Path } from '../util/cpu.js';
import { hostInt8 } from '../infer/int8.js';
import { loadOrt } from '../infer/ort.js';
import { ACTION_HEAD_CONFIG, hasActionHead, readHeadConfig } from '../model/action-head.js';
import { readSafetensors } from '../model/safetensors.js';
import { headGraphs } from './head.js';

export { checkModel, type CheckReport } from './check.js';
export { decodeModel, encodeModel, OPSET } from './onnx.js';

/** The files of an export directory. */
export const EXPORT_FILES = { prefill: 'prefill.onnx', decode: 'decode.onnx', prefillAttentions: 'prefill_attentions.onnx', decodeAttentions: 'decode_attentions.onnx', data: 'model.onnx_data' } as const;

export interface ExportOptions {
  /** Add attentions.{i} outputs (attn-viz): with fused operators, as a second pair of graphs beside the fast one. */
  attentions?: boolean;
  /**
   * onnxruntime (default): onnxruntime's fused operators (GroupQueryAttention, SimplifiedLayerNormalization);
   * standard: the default ONNX domain only, for any runtime.
   */
  ops?: 'onnxruntime' | 'standard';
  /**
   * int8: matmul weights as int8 (a scale per output column), activations quantized at run time: about a quarter
   * of the weight bytes and faster on CPUs with int8 dot products, at the cost of exact parity (see checkParity).
   */
  quantize?: 'int8';
  /**
   * With int8: 7-bit weights (-63..63, the default), correct on every CPU, or full-range ones (-127..127, half the
   * rounding error), which CPUs without VNNI or AMX saturate on: refused unless `cpu` adds int8 products in 32 bits.
   */
  weightRange?: WeightRange;
  /** The CPU whose int8 path decides whether full-range weights are allowed (default: this machine's, measured). */
  cpu?: Int8Path;
  /** The tfjs backend that reads the checkpoint (any will do). */
  backend?: string;
  /** Runs on the finished files before they are renamed into place (the parity check); throwing leaves no export. */
  verify?: (dir: string) => Promise<void>;
  /** Hears each stage as it starts (EXPORT_STAGES, then the verification), for progress. */
  onStage?: (stage: ExportStage) => void;
  /** How the export directory is written: --overwrite (an existing one is refused without), inputs, AbortSignal. */
  output?: OutputOptions;
}

/** The stages of an export, in order; `verify` runs after the last. */
export const EXPORT_STAGES = ['loading the checkpoint', 'building the graphs', 'writing the files'] as const;
export type ExportStage = (typeof EXPORT_STAGES)[number];

export interface ExportResult {
  dir: string;
  parameters: number;
  loraMerged: boolean;
  /** The operators used: onnxruntime's fused ones, or standard (asked for, or a head size onnxruntime's attention cannot take). */
  ops: 'onnxruntime' | 'standard';
  /** config.json's vlakit.export.quantization. */
  quantization: Int8Quantization | 'none';
  files: { name: string; bytes: number }[];
  checks: CheckReport[];
}

/**
 * Exports the checkpoint in `ckptDir` to `outDir`: a new directory, or with `output.overwrite` an existing one
 * replaced whole once the export is complete and checked (left untouched on failure).
 * @example await exportModel('runs/sft', 'runs/sft-onnx', { attentions: true })
 */
export async function exportModel(ckptDir: string, outDir: string, o: ExportOptions = {}): Promise<ExportResult> {
  const [src, dst] = [path.resolve(ckptDir), path.resolve(outDir)];
  if (src === dst || src.startsWith(`${dst}${path.sep}`) || dst.startsWith(`${src}${path.sep}`)) {
    throw new VlakitError('E_USAGE', `the export directory ${outDir} and the checkpoint ${ckptDir} overlap: the export would replace the checkpoint; choose another -o`);
  }
  const output: OutputOptions = { ...o.output, inputs: [ckptDir, ...(o.output?.inputs ?? [])] };
  claimOutput(outDir, 'dir', output); // refused before the checkpoint is loaded
  // decided (and a full range on a CPU that saturates refused) before any work
  const range = o.weightRange ?? '7-bit';
  const quantization = o.quantize === 'int8' ? int8Quantization(range, range === 'full' ? (o.cpu ?? (await hostInt8(await loadOrt()))) : undefined) : 'none';
  o.onStage?.('loading the checkpoint');
  await selectBackend(o.backend); // the weights are read through tfjs
  const ck = loadCheckpoint(ckptDir);
  const model = ck.model;
  try {
    const loraMerged = model.lora !== undefined;
    model.mergeLora();
    const store = new WeightStore(EXPORT_FILES.data);
    const t = model.config.text_config;
    // onnxruntime's GroupQueryAttention needs head sizes that are multiples of 8: other models get standard operators
    const fused = (o.ops ?? 'onnxruntime') === 'onnxruntime' && (t.hidden_size / t.num_attention_heads) % 8 === 0;
    const quantize = o.quantize;
    const weightRange = quantization === 'none' ? undefined : quantization.weight_range;
    const main = { attentions: fused ? false : o.attentions, fused, quantize, weightRange };
    // the weights as the registry's definition reads them (vlakit's names, linear weights [in, out])
    o.onStage?.('building the graphs');
    const weights: VlaWeights = new Map([...model.params].map(([n, v]) => [n, { shape: v.shape, data: v.dataSync() as Float32Array }]));
    const graphs: Record<string, ReturnType<typeof vlaGraph>> = { [EXPORT_FILES.prefill]: vlaGraph(model.config, weights, 'prefill', store, main), [EXPORT_FILES.decode]: vlaGraph(model.config, weights, 'decode', store, main) };
    const separate = fused && o.attentions; // the fused attention returns no weights: a standard pair for attn-viz
    if (separate) {
      graphs[EXPORT_FILES.prefillAttentions] = vlaGraph(model.config, weights, 'prefill', store, { attentions: true, quantize, weightRange });
      graphs[EXPORT_FILES.decodeAttentions] = vlaGraph(model.config, weights, 'decode', store, { attentions: true, quantize, weightRange });
    }
    // an action head: the backbone up to its features and one denoiser step (float32, standard operators)
    const head = hasActionHead(ckptDir) ? readHeadConfig(ckptDir) : undefined;
    if (head) Object.assign(graphs, headGraphs(model.config, weights, head, readSafetensors(path.join(ckptDir, 'action_head.safetensors')).tensors, store));
    let out: ExportFiles | undefined;
    await writeOutputDir(outDir, async (tmp) => {
      o.onStage?.('writing the files');
      const ex = (out = new ExportFiles(tmp));
      const write = (name: string, data: Uint8Array | string) => ex.write(name, data);
      await ex.graphs(store, EXPORT_FILES.data, graphs);
      const cfgJson = JSON.parse(readFileSync(path.join(ckptDir, 'config.json'), 'utf8')) as Record<string, unknown>;
      const vlakit = { ...((cfgJson.vlakit as object | undefined) ?? {}), export: { format: 'onnx', opset: OPSET, ops: fused ? 'onnxruntime' : 'standard', quantization, graphs: { prefill: EXPORT_FILES.prefill, decode: EXPORT_FILES.decode, ...(separate ? { prefill_attentions: EXPORT_FILES.prefillAttentions, decode_attentions: EXPORT_FILES.decodeAttentions } : {}) }, external_data: EXPORT_FILES.data, attentions: Boolean(o.attentions), lora_merged: loraMerged, num_image_tokens: model.numImageTokens, source: path.resolve(ckptDir) } };
      await write('config.json', `${JSON.stringify({ ...model.config, vlakit }, null, 2)}\n`);
      await write('tokenizer.json', ck.tokenizerJson);
      if (head) await write(ACTION_HEAD_CONFIG, `${JSON.stringify(head, null, 2)}\n`);
      if (ck.actionStats !== undefined) await write('action_stats.json', `${JSON.stringify(ck.actionStats, null, 2)}\n`);
      await o.verify?.(tmp);
    }, output);
    return { dir: outDir, parameters: model.numParameters(), loraMerged, ops: fused ? 'onnxruntime' : 'standard', quantization, files: out!.files, checks: out!.checks };
  } finally {
    model.dispose();
  }
}

export { checkParity, parityCases, type ParityCase, type ParityResult } from './parity.js';
export { WEIGHT_MAX, exportWeightRange, fullRangeProblem, int8Quantization, int8RunWarning, quantizeColumns, type Int8Quantization, type WeightRange } from './quantize.js';
export { cpuinfoInt8Path, int8Path, type Int8Path } from '../util/cpu.js';
export { hostInt8, probeInt8, type Int8Probe } from '../infer/int8.js';
