/**
 * The ONNX export of a Hugging Face checkpoint (a causal language model of the registry): the prefill graph
 * (input_ids -> logits + present.*) and the decode step (input_ids + past_key_values.* -> logits + present.*),
 * both derived from the architecture's one definition through the ONNX backend of `Ops`, over one external weights
 * file; config.json (the checkpoint's, plus `vlakit.export`) and the tokenizer files beside them.
 */
import path from 'node:path';
import { type HfCheckpoint } from '../model/arch/hf.js';
import { OnnxOps } from '../model/arch/onnx-ops.js';
import { VlakitError } from '../errors.js';
import { type OutputOptions, claimOutput, writeOutputDir } from '../io/outputs.js';
import type { CheckReport } from './check.js';
import { ExportFiles } from './files.js';
import { GraphBuilder, type ModelProto, OPSET, WeightStore } from './onnx.js';
import { type Int8Quantization, int8Quantization } from './quantize.js';
import { PRESENT_DIM } from './vla.js';
import { type CausalLm, generateIds } from '../infer/causal.js';
import { Rng } from '../util/rng.js';
import { type PolicyMeta, readPolicyMeta } from '../infer/hf-runner.js';
import { ACTION_HEAD_CONFIG, ACTION_HEAD_WEIGHTS, ActionHead, type ActionHeadConfig, chunkSize, hasActionHead, readHeadConfig } from '../model/action-head.js';
import { type NamedArray, readSafetensors } from '../model/safetensors.js';
import { HEAD_FILES, headDenoiseGraph, hfHeadPrefillGraph } from './head.js';

export const HF_EXPORT_FILES = { prefill: 'prefill.onnx', decode: 'decode.onnx', data: 'model.onnx_data' } as const;
/** Files of a checkpoint directory that an export carries over unchanged. */
const CARRIED = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'added_tokens.json', 'generation_config.json', 'chat_template.json', 'chat_template.jinja', 'vocab.json', 'merges.txt', 'tokenizer.model', 'preprocessor_config.json', 'processor_config.json'];

const DIMS = { batch: 'batch_size', seq: 'sequence_length', past: 'past_sequence_length', total: 'total_sequence_length' } as const;

/** The variants of a causal LM's graphs (OnnxOps' options). */
export interface CausalGraphOptions {
  /** attentions.{i} [batch, heads, queries, keys] outputs: each decoder layer's attention weights. */
  attentions?: boolean;
  /** onnxruntime's fused operators; the decode step then also takes attention_mask [batch, total] (all ones). */
  fused?: boolean;
  /** int8 linear weights (7-bit: correct on every CPU), activations quantized at run time. */
  quantize?: 'int8';
}

/**
 * One graph of a causal LM: prefill (no past) or decode (past_key_values.* in); with `attentions`, each decoder
 * layer's attention weights too (attentions.{i} [batch, heads, queries, keys]).
 */
export function causalLmGraph(ck: HfCheckpoint, kind: 'prefill' | 'decode', store: WeightStore, o: CausalGraphOptions = {}): ModelProto {
  const b = new GraphBuilder(kind, store);
  const layout = ck.arch.cache(ck.config);
  const ids = b.input('input_ids', 'int64', [DIMS.batch, DIMS.seq]);
  const past = kind === 'decode' ? Array.from({ length: layout.layers }, (_, i) => ({ k: b.input(`past_key_values.${i}.key`, 'float', [DIMS.batch, layout.kvHeads, DIMS.past, layout.headDim]), v: b.input(`past_key_values.${i}.value`, 'float', [DIMS.batch, layout.kvHeads, DIMS.past, layout.headDim]) })) : undefined;
  const mask = kind === 'decode' && o.fused ? b.input('attention_mask', 'int64', [DIMS.batch, DIMS.total]) : undefined;
  const vision = ck.arch.vision?.(ck.config);
  // a vision-language model's prefill takes the image tiles of the prompt: pixel_values [N, C, S, S]
  const pixels = kind === 'prefill' && vision ? b.input('pixel_values', 'float', ['num_images', vision.channels, vision.imageSize, vision.imageSize]) : undefined;
  const ops = new OnnxOps(b, ck.tensors, { past, mask, present: [] }, { maxPositions: ck.arch.maxPositions(ck.config), linearLayout: ck.arch.linearLayout, attentions: o.attentions, fused: o.fused, quantize: o.quantize });
  const logits = ck.arch.forward(ops, ck.config, ids, pixels); // [B, T, V]
  const keys = kind === 'decode' ? (o.fused ? PRESENT_DIM : `${DIMS.past} + ${DIMS.seq}`) : DIMS.seq;
  b.output(logits, 'logits', 'float', [DIMS.batch, DIMS.seq, ck.arch.vocabSize(ck.config)]);
  ops.cache.present.forEach((p, i) => {
    b.output(p.k, `present.${i}.key`, 'float', [DIMS.batch, layout.kvHeads, keys, layout.headDim]);
    b.output(p.v, `present.${i}.value`, 'float', [DIMS.batch, layout.kvHeads, keys, layout.headDim]);
  });
  if (o.attentions) ops.cache.attentions?.forEach((a, i) => b.output(a, `attentions.${i}`, 'float', [DIMS.batch, layout.heads, DIMS.seq, keys]));
  return b.model(`vlakit ${ck.arch.modelType} ${kind}`, { vlakit_graph: kind, model_type: ck.arch.modelType });
}

export interface HfExportResult {
  dir: string;
  parameters: number;
  /** The operators used: onnxruntime's fused ones, or standard (asked for, or what the architecture needs). */
  ops: 'onnxruntime' | 'standard';
  quantization: Int8Quantization | 'none';
  files: { name: string; bytes: number }[];
  checks: CheckReport[];
}

/**
 * Exports a loaded checkpoint to `outDir` (written whole or not at all); `verify` runs on the finished files first.
 * @example await exportHfModel(loadHfCheckpoint('models/stories260k'), 'out/stories-onnx')
 */
export async function exportHfModel(ck: HfCheckpoint, outDir: string, o: { verify?: (dir: string) => Promise<void>; output?: OutputOptions; meta?: PolicyMeta; attentions?: boolean; ops?: 'onnxruntime' | 'standard'; quantize?: 'int8'; head?: HeadArrays } = {}): Promise<HfExportResult> {
  const src = path.resolve(ck.dir);
  const output: OutputOptions = { ...o.output, inputs: [ck.dir, ...(o.output?.inputs ?? [])] };
  claimOutput(outDir, 'dir', output);
  const quantization = o.quantize === 'int8' ? int8Quantization('7-bit') : 'none';
  const build = (fused: boolean) => {
    const store = new WeightStore(HF_EXPORT_FILES.data);
    const g = { attentions: o.attentions, fused, quantize: o.quantize };
    // an action head: its prefill (the prompt to the head's features) and denoiser graphs beside the LM's
    const head: Record<string, ModelProto> = o.head ? { [HEAD_FILES.prefill]: hfHeadPrefillGraph(ck, store), [HEAD_FILES.denoise]: headDenoiseGraph(o.head.config, o.head.weights, store) } : {};
    return { store, graphs: { [HF_EXPORT_FILES.prefill]: causalLmGraph(ck, 'prefill', store, g), [HF_EXPORT_FILES.decode]: causalLmGraph(ck, 'decode', store, g), ...head } };
  };
  // onnxruntime's fused attention: causal rotary layers with head sizes a multiple of 8, and no attention outputs;
  // an architecture with sliding windows, soft caps, image blocks or a prefix gets standard operators
  let fused = o.ops === 'onnxruntime' && !o.attentions && ck.arch.cache(ck.config).headDim % 8 === 0;
  let built: ReturnType<typeof build>;
  try {
    built = build(fused);
  } catch (err) {
    if (!(fused && err instanceof VlakitError && err.code === 'E_USAGE')) throw err;
    fused = false;
    built = build(false);
  }
  const { store, graphs } = built;
  let out: ExportFiles | undefined;
  await writeOutputDir(outDir, async (tmp) => {
    const ex = (out = new ExportFiles(tmp));
    await ex.graphs(store, HF_EXPORT_FILES.data, graphs);
    const vlakit = { export: { format: 'onnx', kind: 'causal-lm', opset: OPSET, ops: fused ? 'onnxruntime' : 'standard', quantization, graphs: { prefill: HF_EXPORT_FILES.prefill, decode: HF_EXPORT_FILES.decode }, external_data: HF_EXPORT_FILES.data, attentions: Boolean(o.attentions), source: src } };
    // a policy's action codec and statistics (from the checkpoint or its adapter) travel with the export
    const codec = o.meta?.actionCodec ? { action_codec: o.meta.actionCodec } : {};
    await ex.write('config.json', `${JSON.stringify({ ...ck.rawConfig, vlakit: { ...vlakit, ...codec } }, null, 2)}\n`);
    for (const f of CARRIED) ex.copy(path.join(ck.dir, f));
    if (o.meta?.actionStats !== undefined) await ex.write('action_stats.json', `${JSON.stringify(o.meta.actionStats, null, 2)}\n`);
    if (o.head) await ex.write(ACTION_HEAD_CONFIG, `${JSON.stringify(o.head.config, null, 2)}\n`);
    await o.verify?.(tmp);
  }, output);
  let parameters = 0;
  for (const t of ck.tensors.values()) parameters += t.data.length;
  return { dir: outDir, parameters, ops: fused ? 'onnxruntime' : 'standard', quantization, files: out!.files, checks: out!.checks };
}

export interface CausalParity {
  cases: number;
  maxAbsDiff: number;
  maxAbsLogit: number;
  /** Greedy ids of the checkpoint and of the export (with its cache) agree on every case. */
  greedyMatch: boolean;
  mismatch?: { prompt: number[]; reference: number[]; export: number[] };
}

/**
 * Compares an export with its checkpoint: logits of every position for a few seeded prompts, and greedy ids.
 * @example const p = await causalParity(checkpointLm, exportLm); p.maxAbsDiff <= 1e-4
 */
export async function causalParity(reference: CausalLm, candidate: CausalLm, o: { seed?: number; cases?: number; maxNewTokens?: number } = {}): Promise<CausalParity> {
  const rng = new Rng(o.seed ?? 0);
  const V = reference.vocabSize;
  let maxAbsDiff = 0;
  let maxAbsLogit = 0;
  let greedyMatch = true;
  let mismatch: CausalParity['mismatch'];
  const n = o.cases ?? 3;
  for (let c = 0; c < n; c++) {
    // text prompts: a vision-language model's image token (which needs image tiles) is drawn again
    const draw = (): number => {
      const id = Math.floor(rng.next() * V);
      return id === reference.vision?.imageTokenId ? draw() : id;
    };
    const prompt = Array.from({ length: 3 + 4 * c }, draw);
    const [a, b] = [await reference.logits(prompt), await candidate.logits(prompt)];
    for (let i = 0; i < a.length; i++) {
      maxAbsDiff = Math.max(maxAbsDiff, Math.abs(a[i] - b[i]));
      maxAbsLogit = Math.max(maxAbsLogit, Math.abs(a[i]));
    }
    const steps = Math.min(o.maxNewTokens ?? 16, reference.maxPositions - prompt.length);
    const ra = await generateIds(reference, prompt, { maxNewTokens: steps, stopAtEos: false });
    const rb = await generateIds(candidate, prompt, { maxNewTokens: steps, stopAtEos: false });
    if (ra.ids.join() !== rb.ids.join() && greedyMatch) {
      greedyMatch = false;
      mismatch = { prompt, reference: ra.ids, export: rb.ids };
    }
  }
  return { cases: n, maxAbsDiff, maxAbsLogit, greedyMatch, mismatch };
}

export interface HfExportOptions {
  /** Compare the export with the checkpoint before it is renamed into place (default true). */
  parity?: boolean;
  /** Largest allowed |logit difference| (default: 1e-4 of the checkpoint's largest |logit|, at least 1e-4). */
  tolerance?: number;
  /** How -o is written (--overwrite, the inputs it must not replace). */
  output?: OutputOptions;
  /** A PEFT LoRA adapter directory folded into the weights before the export. */
  adapter?: string;
  /** attentions.{i} outputs (each decoder layer's attention weights, for attn-viz); standard operators. */
  attentions?: boolean;
  /** onnxruntime's fused operators where the architecture allows them, or standard ones (the default). */
  ops?: 'onnxruntime' | 'standard';
  /** int8 linear weights (7-bit); the parity check then allows 5% of the largest |logit| and counts greedy ids only. */
  quantize?: 'int8';
  backend?: string;
  device?: 'cpu' | 'cuda';
}

/**
 * `vlakit export` of a Hugging Face checkpoint: loads it, writes the graphs and, unless told not to, refuses an
 * export whose logits or greedy ids differ from the checkpoint's (nothing is written then).
 */
export async function exportHfChecked(ckptDir: string, outDir: string, o: HfExportOptions = {}): Promise<HfExportResult & { parity?: CausalParity }> {
  const { loadHfCheckpoint } = await import('../model/arch/hf.js');
  const { TfjsCausalLm } = await import('../infer/causal.js');
  const { OrtCausalLm } = await import('../infer/ort-causal.js');
  const { selectBackend } = await import('../model/backend.js');
  const output: OutputOptions = { ...o.output, inputs: [ckptDir, o.adapter, ...(o.output?.inputs ?? [])] };
  claimOutput(outDir, 'dir', output); // refused before the weights are read
  const ck = loadHfCheckpoint(ckptDir);
  if (o.adapter) {
    const { applyPeftAdapter } = await import('../model/arch/adapter.js');
    applyPeftAdapter(ck, o.adapter);
  }
  let parity: CausalParity | undefined;
  const verify = async (dir: string) => {
    await selectBackend(o.backend);
    const reference = new TfjsCausalLm(ck);
    const candidate = await OrtCausalLm.open(dir, { device: o.device });
    try {
      parity = await causalParity(reference, candidate);
    } finally {
      reference.dispose();
      await candidate.dispose();
    }
    const tolerance = o.tolerance ?? (o.quantize ? 0.05 * parity.maxAbsLogit : 1e-4 * Math.max(1, parity.maxAbsLogit));
    if (parity.maxAbsDiff > tolerance || (!o.quantize && !parity.greedyMatch)) {
      const m = parity.mismatch;
      throw new VlakitError('E_ONNX', `the export does not match its checkpoint, so it was not written: max |logit diff| ${parity.maxAbsDiff.toExponential(2)} (tolerance ${tolerance.toExponential(2)})${m ? `; greedy ids after ${m.prompt.join(',')}: checkpoint ${m.reference.join(',')}, export ${m.export.join(',')}` : ''}`, { file: outDir });
    }
  };
  const own = readPolicyMeta(ckptDir);
  const fromAdapter = o.adapter ? readPolicyMeta(o.adapter) : {};
  const meta: PolicyMeta = { actionCodec: fromAdapter.actionCodec ?? own.actionCodec, actionStats: fromAdapter.actionStats ?? own.actionStats };
  // a head run (train-sft --action-head on this checkpoint): its head graphs, checked against the checkpoint too
  const headDir = o.adapter && hasActionHead(o.adapter) ? o.adapter : undefined;
  const head = headDir ? { config: readHeadConfig(headDir), weights: readSafetensors(path.join(headDir, ACTION_HEAD_WEIGHTS)).tensors } : undefined;
  let headParity: number | undefined;
  const verifyAll = async (dir: string) => {
    await verify(dir);
    if (!head) return;
    headParity = await hfHeadParity(ck, head, dir, o.device);
    const tolerance = o.tolerance ?? 1e-4;
    if (headParity > tolerance) throw new VlakitError('E_ONNX', `the exported action head does not match its checkpoint, so nothing was written: max |diff| ${headParity.toExponential(2)} (tolerance ${tolerance.toExponential(2)})`, { file: outDir });
  };
  const res = await exportHfModel(ck, outDir, { verify: o.parity === false ? undefined : verifyAll, output, meta, attentions: o.attentions, ops: o.ops, quantize: o.quantize, head });
  return { ...res, parity, ...(headParity !== undefined ? { headParity } : {}) };
}

/** An action head as stored: its config and weights. */
export interface HeadArrays {
  config: ActionHeadConfig;
  weights: Map<string, NamedArray>;
}

/**
 * The largest difference between an exported head (head_prefill.onnx, head_denoise.onnx in `dir`) and the checkpoint
 * (TensorFlow.js): the features of two seeded prompts (with one random image tile for a vision-language model), and
 * the denoiser's prediction at three times on those features.
 */
export async function hfHeadParity(ck: HfCheckpoint, head: HeadArrays, dir: string, device?: string): Promise<number> {
  const tf = await import('@tensorflow/tfjs-core');
  const { TfjsWeights } = await import('../model/arch/tfjs-ops.js');
  const { hfHeadFeatures } = await import('../model/action-head-hf.js');
  const { OrtHeadEngine } = await import('./head.js');
  const vision = ck.arch.vision?.(ck.config);
  const params = new TfjsWeights(ck.tensors);
  const h = ActionHead.fromArrays(head.config, head.weights);
  const engine = await OrtHeadEngine.openHf(dir, vision, { device: device as 'cpu' });
  const rng = new Rng(11);
  const V = Math.min(ck.arch.vocabSize(ck.config), 1000);
  let worst = 0;
  const diff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  };
  try {
    for (let c = 0; c < 2; c++) {
      const text = () => Array.from({ length: 3 + c }, () => rng.int(3, V - 1));
      const ids = vision ? [...text(), ...new Array<number>(vision.tokensPerImage).fill(vision.imageTokenId), ...text()] : [...text(), ...text()];
      const pixels = vision ? Float32Array.from({ length: vision.channels * vision.imageSize * vision.imageSize }, () => rng.next() * 2 - 1) : new Float32Array(0);
      const ref = tf.tidy(() => {
        const px = vision ? tf.tensor4d(pixels, [1, vision.channels, vision.imageSize, vision.imageSize]) : undefined;
        return hfHeadFeatures({ arch: ck.arch, config: ck.config, params }, tf.tensor2d([ids], undefined, 'int32'), px, [ids.length - 1], { logits: false }).cond.dataSync() as Float32Array;
      });
      diff(ref, await engine.features({ ids, pixels, textOffset: 0, imagePositions: [], images: [] }));
      const x = Float32Array.from({ length: chunkSize(head.config) }, () => rng.normal());
      const state = head.config.state_dim ? Float32Array.from({ length: head.config.state_dim }, () => rng.normal()) : undefined;
      for (const t of [1, 0.5, 0.01]) {
        const want = tf.tidy(() => h.denoise(tf.tensor2d(x, [1, x.length]), [t], tf.tensor2d(ref, [1, ref.length]), state && tf.tensor2d(state, [1, state.length])).dataSync() as Float32Array);
        diff(want, await engine.denoise(x, t, ref, state));
      }
    }
  } finally {
    await engine.dispose();
    h.dispose();
    params.dispose();
  }
  return worst;
}
