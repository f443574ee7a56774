/**
 * One interface over the ways a policy runs: the built-in VLA model of a checkpoint (TensorFlow.js) or of its
 * export (onnxruntime), and a Hugging Face vision-language model (a checkpoint on TensorFlow.js or its export on
 * onnxruntime) with its processor. Generation, rollout, eval-vqa and attn-viz are written against it: the runner
 * builds a prompt's model inputs (`prepare`), so callers never assume where image tokens go or which ids are special.
 */
import { VlakitError } from '../errors.js';
import type { ImageJson } from '../io/json.js';
import type { VlaConfig } from '../model/config.js';
import type { Tokenizer } from '../model/tokenizer.js';

/** The model's output at the last position of a forward pass. */
export interface StepOutput {
  /** Logits [V] of the last position. */
  logits: Float32Array;
  /** When asked for: the last query's attention weights, [layer][head][key] (keys as in `RunnerInput`). */
  attentions?: number[][][];
}

/** The state of one generation: the cache (or the whole sequence when the cache is off). */
export interface DecodeState {
  /** Runs the images and the prompt ids (as `prepare` made them). */
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
  /** vlakit: the built-in VLA model; otherwise the Hugging Face model_type (idefics3, llama, ...). */
  model?: string;
}

/**
 * Where the image tokens of a prompt sit among the attention keys, per image (camera): a square grid of cells
 * (row-major) and the key position of each cell. attn-viz cuts attention rows into camera maps with it.
 */
export interface ImageLayout {
  grid: number;
  positions: number[];
  /** Split tiles (a processor that splits images): per tile its grid row and column and its key positions. */
  tiles?: { row: number; col: number; positions: number[] }[];
}

/** The model inputs of one prompt, as the runner's model takes them. */
export interface RunnerInput {
  /** The prompt's token ids (built-in: `<bos> prompt <sep>`; a Hugging Face model: its chat template, images expanded). */
  ids: number[];
  /** The pixel input in the model's own layout. */
  pixels: Float32Array;
  /** The attention key position of ids[0] (built-in: the image tokens come first; 0 when they sit inside the ids). */
  textOffset: number;
  /** Indices (attention key positions) of every image token, in order. */
  imagePositions: number[];
  /** Per image given (up to what the model takes): its map layout. */
  images: ImageLayout[];
}

export interface VlaRunner {
  readonly info: RunnerInfo;
  /** The action representation (config.json vlakit.action_codec, or the adapter's) and statistics, when the model has them. */
  readonly actionCodec?: Record<string, unknown>;
  readonly actionStats?: unknown;
  /** Attention key positions the model has (image tokens included). */
  readonly maxPositions: number;
  /** Ids that end a generation (not part of the answer). */
  readonly stopIds: number[];
  /** What ends a trained answer, appended after its text in teacher forcing (built-in: <eos>; chat models: the end of turn). */
  readonly answerEnd: number[];
  /** The camera images one prompt takes (more are left out; fewer are padded where the model needs a fixed count). */
  readonly maxImages: number;
  /** Text -> ids, no special tokens. */
  encodeText(text: string): number[];
  /** Ids -> text (special tokens dropped). */
  decode(ids: number[]): string;
  /**
   * A user prompt with its camera images as model inputs: the built-in model's `<bos> prompt <sep>` with the
   * images resized, or a Hugging Face model's chat template (one user turn: the images, then the text; the
   * generation prompt added) through its processor.
   * @example const input = await runner.prepare('Task: pick up the red block', [obs.image])
   */
  prepare(prompt: string, images: (ImageJson | Uint8Array)[], what?: string): Promise<RunnerInput>;
  start(o: { useCache: boolean; attentions: boolean }): DecodeState;
  /** One forward pass without a cache: the logits of every text position, [T, V] flattened. */
  logits(pixels: Float32Array, ids: number[]): Promise<Float32Array>;
  /**
   * One forward pass without a cache, returning every attention weight: per decoder layer [H, N, N] flattened
   * (N attention keys, see RunnerInput; query rows, key columns). For attn-viz on a teacher-forced sequence.
   */
  attentions(pixels: Float32Array, ids: number[]): Promise<{ layers: Float32Array[]; heads: number; positions: number }>;
  dispose(): Promise<void> | void;
}

/** A runner of vlakit's built-in VLA model (checkpoint or export): its config and tokenizer are known. */
export interface BuiltinRunner extends VlaRunner {
  readonly config: VlaConfig;
  readonly tokenizer: Tokenizer;
}

/** True for the built-in model's runners. */
export function isBuiltinRunner(r: VlaRunner): r is BuiltinRunner {
  return r.info.model === 'vlakit' && 'config' in r && 'tokenizer' in r;
}

/** The runner when it is the built-in model's, else a usage error naming `what` needs it. */
export function asBuiltin(r: VlaRunner, what: string): BuiltinRunner {
  if (!isBuiltinRunner(r)) throw new VlakitError('E_USAGE', `${what} takes vlakit's built-in model; ${r.info.dir ?? 'this model'} is a ${r.info.model ?? 'Hugging Face'} model`, { file: r.info.dir });
  return r;
}
