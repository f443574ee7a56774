/**
 * One interface over the two ways a policy runs: the TensorFlow.js model of a checkpoint (src/lib/model) and an
 * ONNX export on onnxruntime-node. Generation, rollout, eval-vqa and attn-viz are written against it, so every
 * command takes either a checkpoint or an export.
 */
import type { VlaConfig } from '../model/config.js';
import type { Tokenizer } from '../model/tokenizer.js';

/** The model's output at the last position of a forward pass. */
export interface StepOutput {
  /** Logits [V] of the last position. */
  logits: Float32Array;
  /** When asked for: the last query's attention weights, [layer][head][key] (image tokens first). */
  attentions?: number[][][];
}

/** The state of one generation: the cache (or the whole sequence when the cache is off). */
export interface DecodeState {
  /** Runs the images and the prompt ids. */
  prefill(pixels: Float32Array, ids: number[]): Promise<StepOutput>;
  /** Appends one token. */
  next(id: number): Promise<StepOutput>;
  dispose(): void;
}

export interface RunnerInfo {
  /** 'tfjs' for a checkpoint, 'onnxruntime' for an export. */
  engine: 'tfjs' | 'onnxruntime';
  /** The tfjs backend or the onnxruntime execution provider. */
  device: string;
  dir?: string;
}

export interface VlaRunner {
  readonly info: RunnerInfo;
  readonly config: VlaConfig;
  readonly tokenizer: Tokenizer;
  /** The action representation (config.json vlakit.action_codec) and statistics, when the model has them. */
  readonly actionCodec?: Record<string, unknown>;
  readonly actionStats?: unknown;
  start(o: { useCache: boolean; attentions: boolean }): DecodeState;
  /**
   * One forward pass without a cache: the logits of every text position, [T, V] flattened (pixels are
   * [C, S, S, 3] in [-1, 1], flattened; ids include <bos> and <sep>).
   */
  logits(pixels: Float32Array, ids: number[]): Promise<Float32Array>;
  /**
   * One forward pass without a cache, returning every attention weight: per decoder layer [H, N, N] flattened
   * (N = image tokens + ids; query rows, key columns). For attn-viz on a teacher-forced sequence.
   */
  attentions(pixels: Float32Array, ids: number[]): Promise<{ layers: Float32Array[]; heads: number; positions: number }>;
  dispose(): Promise<void> | void;
}
