/**
 * Running a policy model: open a checkpoint (tfjs) or an export (onnxruntime) behind one interface, and generate.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { VlakitError } from '../errors.js';
import type { VlaRunner } from './runner.js';
import { type Device, OrtRunner, isExport } from './ort.js';

export type { DecodeState, RunnerInfo, StepOutput, VlaRunner } from './runner.js';
export { type GenerateOptions, type Generation, generate, pickToken, promptIds } from './generate.js';
export { OrtRunner, isExport, loadOrt, type Device } from './ort.js';
// TfjsRunner is imported from './tfjs.js' where it is wanted: importing this module must not load TensorFlow.js
export { imagesToPixels } from './pixels.js';

export interface OpenOptions {
  /** cpu (default) or cuda: onnxruntime's execution provider, or tfjs-node-gpu for a checkpoint. */
  device?: Device;
  /** A tfjs backend for checkpoints (tensorflow-gpu, tensorflow, wasm, cpu). */
  backend?: string;
  threads?: number;
  /** For an export: told about a problem that does not stop the run (default: a warning line on stderr; see OrtOptions). */
  onWarning?: (message: string) => void;
}

/**
 * Opens a model directory: an export written by `vlakit export` runs on onnxruntime, a checkpoint of train-sft or
 * train-rl on TensorFlow.js.
 * @example const runner = await openModel('runs/sft-onnx'); const g = await generate(runner, pixels, prompt)
 */
export async function openModel(dir: string, o: OpenOptions = {}): Promise<VlaRunner> {
  if (!existsSync(path.join(dir, 'config.json'))) throw new VlakitError('E_NOT_FOUND', 'not a model directory: no config.json (expected a checkpoint of train-sft/train-rl or an export of vlakit export)', { file: dir });
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
