/**
 * The ONNX export of a Hugging Face checkpoint (a causal language model of the registry): the prefill graph
 * (input_ids -> logits + present.*) and the decode step (input_ids + past_key_values.* -> logits + present.*),
 * both derived from the architecture's one definition through the ONNX backend of `Ops`, over one external weights
 * file; config.json (the checkpoint's, plus `vlakit.export`) and the tokenizer files beside them.
 */
import { copyFileSync, existsSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import { type HfCheckpoint } from '../model/arch/hf.js';
import { OnnxOps } from '../model/arch/onnx-ops.js';
import { VlakitError } from '../errors.js';
import { writeDirAtomic } from '../model/checkpoint.js';
import { type CheckReport, checkModel } from './check.js';
import { GraphBuilder, type ModelProto, OPSET, WeightStore, decodeModel, encodeModel } from './onnx.js';

export const HF_EXPORT_FILES = { prefill: 'prefill.onnx', decode: 'decode.onnx', data: 'model.onnx_data' } as const;
/** Files of a checkpoint directory that an export carries over unchanged. */
const CARRIED = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'added_tokens.json', 'generation_config.json', 'chat_template.json', 'chat_template.jinja', 'vocab.json', 'merges.txt', 'tokenizer.model', 'preprocessor_config.json', 'processor_config.json'];

const DIMS = { batch: 'batch_size', seq: 'sequence_length', past: 'past_sequence_length' } as const;

/** One graph of a causal LM: prefill (no past) or decode (past_key_values.* in). */
export function causalLmGraph(ck: HfCheckpoint, kind: 'prefill' | 'decode', store: WeightStore): ModelProto {
  const b = new GraphBuilder(kind, store);
  const layout = ck.arch.cache(ck.config);
  const ids = b.input('input_ids', 'int64', [DIMS.batch, DIMS.seq]);
  const past = kind === 'decode' ? Array.from({ length: layout.layers }, (_, i) => ({ k: b.input(`past_key_values.${i}.key`, 'float', [DIMS.batch, layout.kvHeads, DIMS.past, layout.headDim]), v: b.input(`past_key_values.${i}.value`, 'float', [DIMS.batch, layout.kvHeads, DIMS.past, layout.headDim]) })) : undefined;
  const ops = new OnnxOps(b, ck.tensors, { past, present: [] }, ck.arch.maxPositions(ck.config));
  const logits = ck.arch.forward(ops, ck.config, ids); // [B, T, V]
  const keys = kind === 'decode' ? `${DIMS.past} + ${DIMS.seq}` : DIMS.seq;
  b.output(logits, 'logits', 'float', [DIMS.batch, DIMS.seq, ck.arch.vocabSize(ck.config)]);
  ops.cache.present.forEach((p, i) => {
    b.output(p.k, `present.${i}.key`, 'float', [DIMS.batch, layout.kvHeads, keys, layout.headDim]);
    b.output(p.v, `present.${i}.value`, 'float', [DIMS.batch, layout.kvHeads, keys, layout.headDim]);
  });
  return b.model(`vlakit ${ck.arch.modelType} ${kind}`, { vlakit_graph: kind, model_type: ck.arch.modelType });
}

export interface HfExportResult {
  dir: string;
  parameters: number;
  files: { name: string; bytes: number }[];
  checks: CheckReport[];
}

/**
 * Exports a loaded checkpoint to `outDir` (written whole or not at all); `verify` runs on the finished files first.
 * @example await exportHfModel(loadHfCheckpoint('models/stories260k'), 'out/stories-onnx')
 */
export async function exportHfModel(ck: HfCheckpoint, outDir: string, o: { verify?: (dir: string) => Promise<void> } = {}): Promise<HfExportResult> {
  const [src, dst] = [path.resolve(ck.dir), path.resolve(outDir)];
  if (src === dst || src.startsWith(`${dst}${path.sep}`) || dst.startsWith(`${src}${path.sep}`)) throw new VlakitError('E_USAGE', `the export directory ${outDir} and the checkpoint ${ck.dir} overlap; choose another -o`);
  const store = new WeightStore(HF_EXPORT_FILES.data);
  const graphs = { [HF_EXPORT_FILES.prefill]: causalLmGraph(ck, 'prefill', store), [HF_EXPORT_FILES.decode]: causalLmGraph(ck, 'decode', store) };
  const files: HfExportResult['files'] = [];
  const checks: CheckReport[] = [];
  await writeDirAtomic(outDir, async (tmp) => {
    const write = async (name: string, data: Uint8Array | string) => {
      await fsp.writeFile(path.join(tmp, name), data);
      files.push({ name, bytes: typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength });
    };
    await store.writeTo(path.join(tmp, HF_EXPORT_FILES.data));
    files.push({ name: HF_EXPORT_FILES.data, bytes: store.byteLength });
    for (const [name, g] of Object.entries(graphs)) {
      const bytes = encodeModel(g);
      await write(name, bytes);
      const report = checkModel(decodeModel(bytes), tmp);
      if (report.problems.length) throw new VlakitError('E_ONNX', `the exported ${name} fails the structural check: ${report.problems.slice(0, 5).join('; ')}`, { file: name });
      checks.push(report);
    }
    const vlakit = { export: { format: 'onnx', kind: 'causal-lm', opset: OPSET, ops: 'standard', quantization: 'none', graphs: { prefill: HF_EXPORT_FILES.prefill, decode: HF_EXPORT_FILES.decode }, external_data: HF_EXPORT_FILES.data, source: src } };
    await write('config.json', `${JSON.stringify({ ...ck.rawConfig, vlakit }, null, 2)}\n`);
    for (const f of CARRIED) {
      if (!existsSync(path.join(ck.dir, f))) continue;
      copyFileSync(path.join(ck.dir, f), path.join(tmp, f));
      files.push({ name: f, bytes: 0 });
    }
    await o.verify?.(tmp);
  });
  let parameters = 0;
  for (const t of ck.tensors.values()) parameters += t.data.length;
  return { dir: outDir, parameters, files, checks };
}
