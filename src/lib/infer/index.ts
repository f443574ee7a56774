/**
 * Running a policy model: open a checkpoint (tfjs) or an export (onnxruntime) behind one interface, and generate.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { VlakitError } from '../errors.js';
import { type BuiltinRunner, type VlaRunner, asBuiltin, isBuiltinRunner } from './runner.js';
import { type Device, OrtRunner, isExport } from './ort.js';

export { type BuiltinRunner, type DecodeState, type ImageLayout, type RunnerInfo, type RunnerInput, type StepOutput, type VlaRunner, asBuiltin, isBuiltinRunner } from './runner.js';
export { type GenerateOptions, type Generation, generate, generateFrom, pickToken, promptIds } from './generate.js';
export { OrtRunner, isExport, loadOrt, type Device } from './ort.js';
// TfjsRunner is imported from './tfjs.js' where it is wanted: importing this module must not load TensorFlow.js
export { imagesToPixels } from './pixels.js';
export { HfRunner, readPolicyMeta, tileLayout, type PolicyMeta } from './hf-runner.js';

export interface OpenOptions {
  /** cpu (default) or cuda: onnxruntime's execution provider, or tfjs-node-gpu for a checkpoint. */
  device?: Device;
  /** A tfjs backend for checkpoints (tensorflow-gpu, tensorflow, wasm, cpu). */
  backend?: string;
  threads?: number;
  /** For an export: told about a problem that does not stop the run (default: a warning line on stderr; see OrtOptions). */
  onWarning?: (message: string) => void;
  /**
   * A PEFT LoRA adapter directory folded into a Hugging Face checkpoint's weights (its action codec and statistics,
   * when saved with it, are the policy's). Refused for vlakit's own checkpoints and exports, and for an export of a
   * Hugging Face model (export it with --adapter instead).
   */
  adapter?: string;
}

/**
 * Opens a model directory: an export written by `vlakit export` runs on onnxruntime, a checkpoint on TensorFlow.js;
 * vlakit's built-in model (train-sft/train-rl checkpoints) or a Hugging Face model of the registry with its
 * processor (a checkpoint as it is on disk, optionally with a PEFT adapter, or its export).
 * @example const runner = await openModel('runs/sft-onnx'); const g = await generateFrom(runner, await runner.prepare(prompt, [image]))
 */
export async function openModel(dir: string, o: OpenOptions = {}): Promise<VlaRunner> {
  if (!existsSync(path.join(dir, 'config.json'))) throw new VlakitError('E_NOT_FOUND', 'not a model directory: no config.json (expected a checkpoint of train-sft/train-rl, a Hugging Face checkpoint, or an export of vlakit export)', { file: dir });
  const { isCausalExport } = await import('./ort-causal.js');
  const { isHfCheckpoint } = await import('../model/arch/hf.js');
  if (isCausalExport(dir) || isHfCheckpoint(dir)) return openHfModel(dir, o);
  if (o.adapter) throw new VlakitError('E_USAGE', '--adapter is for Hugging Face checkpoints: a vlakit checkpoint carries its own LoRA adapters (and an export has them merged)', { file: dir });
  if (isExport(dir)) return OrtRunner.open(dir, { device: o.device, threads: o.threads, onWarning: o.onWarning });
  const { selectBackend } = await import('../model/backend.js');
  const { loadCheckpoint } = await import('../model/checkpoint.js');
  const { loadTokenizer } = await import('../model/tokenizer.js');
  const { TfjsRunner } = await import('./tfjs.js');
  await selectBackend(o.backend ?? (o.device === 'cuda' ? 'tensorflow-gpu' : undefined));
  const ck = loadCheckpoint(dir);
  const tok = await loadTokenizer(ck.tokenizerJson);
  return new TfjsRunner(ck.model, tok, { actionCodec: ck.actionCodec, actionStats: ck.actionStats, dir, owned: true });
}

/**
 * Opens a checkpoint or export of vlakit's built-in model (a Hugging Face model is a usage error naming `what`).
 * @example const runner = await openBuiltinModel('runs/sft', 'the parity check')
 */
export async function openBuiltinModel(dir: string, o: OpenOptions = {}, what = 'this command'): Promise<BuiltinRunner> {
  const r = await openModel(dir, o);
  if (isBuiltinRunner(r)) return r;
  await r.dispose();
  return asBuiltin(r, what);
}

/** A Hugging Face checkpoint (tfjs, with its adapter) or its export (onnxruntime), with its processor. */
async function openHfModel(dir: string, o: OpenOptions): Promise<VlaRunner> {
  const { openCausalLm } = await import('./causal.js');
  const { HfRunner, readPolicyMeta } = await import('./hf-runner.js');
  const { openProcessor } = await import('../model/processor/index.js');
  const processor = await openProcessor(dir);
  const own = readPolicyMeta(dir);
  const fromAdapter = o.adapter ? readPolicyMeta(o.adapter) : {};
  const lm = await openCausalLm(dir, { adapter: o.adapter, backend: o.backend ?? (o.device === 'cuda' ? 'tensorflow-gpu' : undefined), device: o.device });
  const device = lm.engine === 'tfjs' ? (await import('@tensorflow/tfjs-core')).getBackend() : (o.device ?? 'cpu');
  return new HfRunner(lm, processor, { dir, device, actionCodec: fromAdapter.actionCodec ?? own.actionCodec, actionStats: fromAdapter.actionStats ?? own.actionStats });
}
