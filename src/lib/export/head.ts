/**
 * The ONNX graphs of a model with an action head, from the same definitions as training (vlaHidden, headDenoise),
 * standard operators, float32:
 * - head_prefill.onnx: pixel_values [B, C, S, S, 3] + input_ids [B, T] (the prompt, `<bos> ... <sep>`) ->
 *   features [B, 2D]: the last position's hidden state and the mean over every position (images and prompt);
 * - head_denoise.onnx: x [B, H*D], time_embedding [B, E], features [B, 2D] (and state [B, S]) -> prediction [B, H*D].
 * The denoising loop (DDIM or Euler) runs in the caller (policy/head-policy.ts), as for a checkpoint.
 */
import path from 'node:path';
import type * as OrtTypes from 'onnxruntime-node';
import type { VlaConfig } from '../model/config.js';
import { VlakitError } from '../errors.js';
import { hfHiddenSize } from '../model/action-head-hf.js';
import type { HfCheckpoint } from '../model/arch/hf.js';
import { OnnxOps } from '../model/arch/onnx-ops.js';
import { vlakitVla } from '../model/arch/registry.js';
import { type VlaTap, vlaHidden } from '../model/arch/vlakit-vla.js';
import { vlaFeatureDim } from '../model/action-head-vla.js';
import { type ActionHeadConfig, chunkSize, headDenoise, readHeadConfig, timeEmbedding } from '../model/action-head.js';
import type { NamedArray } from '../model/safetensors.js';
import type { RunnerInput, VlaRunner } from '../infer/runner.js';
import { loadOrt, openGraph, type Device } from '../infer/ort.js';
import type { HeadEngine } from '../policy/head-policy.js';
import { GraphBuilder, type ModelProto, type WeightStore } from './onnx.js';
import { DIMS, type VlaWeights } from './vla.js';

export const HEAD_FILES = { prefill: 'head_prefill.onnx', denoise: 'head_denoise.onnx' } as const;

/** The backbone up to the head's features: images and prompt ids -> features [B, 2D] (and, with `keypoints`, the keypoint readouts [B, C*K*8] after them). */
export function headPrefillGraph(config: VlaConfig, weights: VlaWeights, store: WeightStore, keypoints = false): ModelProto {
  const b = new GraphBuilder('head_prefill', store);
  const S = config.vision_config.image_size;
  const pixels = b.input('pixel_values', 'float', [DIMS.batch, config.num_cameras, S, S, 3]);
  const ids = b.input('input_ids', 'int64', [DIMS.batch, DIMS.seq]);
  const ops = new OnnxOps(b, weights, { present: [] }, { maxPositions: vlakitVla.maxPositions(config), linearLayout: 'in_out' });
  const tap: VlaTap<string> = {};
  const h = vlaHidden(ops, config, ids, pixels, keypoints ? tap : undefined); // [B, Ni + T, D]
  const D = config.text_config.hidden_size;
  const last = ops.reshape(ops.slice(h, 1, -1), [0, D]); // [B, 1, D] -> [B, D]
  const mean = b.o('ReduceMean', [h], { axes: [1], keepdims: 0 }); // [B, D]
  const parts = keypoints ? [last, mean, tap.keypoints!] : [last, mean]; // the keypoint readouts [B, C*K*8] last
  b.output(ops.concat(parts, 1), 'features', 'float', [DIMS.batch, vlaFeatureDim(config, keypoints)]);
  return b.model('vlakit action head: images and prompt ids to the backbone features of the head', { vlakit_graph: 'head_prefill' });
}

/** OnnxOps that stop at the hidden states an architecture hands to its LM head (no logits). */
class HiddenOnnxOps extends OnnxOps {
  hidden?: string;
  override head(h: string): string {
    this.hidden = h;
    return h;
  }
}

/**
 * A Hugging Face backbone up to the head's features: the prompt's ids (and, for a vision-language model, its image
 * tiles pixel_values [N, C, S, S]; at least one) -> features [B, 2D]: the final hidden state at the last position and
 * the mean over every position, as model/action-head-hf.ts computes them.
 */
export function hfHeadPrefillGraph(ck: HfCheckpoint, store: WeightStore): ModelProto {
  const b = new GraphBuilder('head_prefill', store);
  const ids = b.input('input_ids', 'int64', [DIMS.batch, DIMS.seq]);
  const vision = ck.arch.vision?.(ck.config);
  const pixels = vision ? b.input('pixel_values', 'float', ['num_images', vision.channels, vision.imageSize, vision.imageSize]) : undefined;
  const ops = new HiddenOnnxOps(b, ck.tensors, { present: [] }, { maxPositions: ck.arch.maxPositions(ck.config), linearLayout: ck.arch.linearLayout });
  ck.arch.forward(ops, ck.config, ids, pixels);
  const h = ops.hidden; // [B, T, D]
  if (!h) throw new VlakitError('E_MODEL', `${ck.arch.modelType}: its forward gave no hidden states to the LM head`);
  const D = hfHiddenSize(ck.arch, ck.config);
  const last = ops.reshape(ops.slice(h, 1, -1), [0, D]); // [B, 1, D] -> [B, D]
  const mean = b.o('ReduceMean', [h], { axes: [1], keepdims: 0 }); // [B, D]
  b.output(ops.concat([last, mean], 1), 'features', 'float', [DIMS.batch, 2 * D]);
  return b.model(`vlakit action head: the prompt to the ${ck.arch.modelType} features of the head`, { vlakit_graph: 'head_prefill', model_type: ck.arch.modelType });
}

/** One denoiser step of the head. */
export function headDenoiseGraph(c: ActionHeadConfig, weights: Map<string, NamedArray>, store: WeightStore): ModelProto {
  const b = new GraphBuilder('head_denoise', store);
  const n = chunkSize(c);
  const x = b.input('x', 'float', [DIMS.batch, n]);
  const temb = b.input('time_embedding', 'float', [DIMS.batch, c.time_dim]);
  const cond = b.input('features', 'float', [DIMS.batch, c.cond_dim]);
  const state = c.state_dim > 0 ? b.input('state', 'float', [DIMS.batch, c.state_dim]) : undefined;
  const ops = new OnnxOps(b, weights, { present: [] }, { maxPositions: 1, linearLayout: 'in_out' });
  b.output(headDenoise(ops, c, x, temb, cond, state), 'prediction', 'float', [DIMS.batch, n]);
  return b.model(`vlakit action head: one ${c.objective} denoiser step`, { vlakit_graph: 'head_denoise', objective: c.objective });
}

/** Both graphs, by file name. */
export function headGraphs(config: VlaConfig, weights: VlaWeights, head: ActionHeadConfig, headWeights: Map<string, NamedArray>, store: WeightStore): Record<string, ModelProto> {
  return { [HEAD_FILES.prefill]: headPrefillGraph(config, weights, store, head.keypoint_features), [HEAD_FILES.denoise]: headDenoiseGraph(head, headWeights, store) };
}

/** An export's action head on onnxruntime: the two graphs, the loop in the caller. */
export class OrtHeadEngine implements HeadEngine {
  private constructor(
    private readonly ort: Awaited<ReturnType<typeof loadOrt>>,
    readonly config: ActionHeadConfig,
    /** The built-in model's config, or a Hugging Face export's image tiles (null: text only). */
    private readonly vla: VlaConfig | { tiles: { channels: number; size: number } | null },
    private readonly prefill: OrtTypes.InferenceSession,
    private readonly step: OrtTypes.InferenceSession,
  ) {}

  static async open(dir: string, runner: VlaRunner, o: { device?: Device } = {}): Promise<OrtHeadEngine> {
    const ort = await loadOrt();
    const config = readHeadConfig(dir);
    const prefill = await openGraph(ort, dir, HEAD_FILES.prefill, { device: o.device });
    const step = await openGraph(ort, dir, HEAD_FILES.denoise, { device: o.device });
    return new OrtHeadEngine(ort, config, (runner as unknown as { config: VlaConfig }).config, prefill, step);
  }

  /** A Hugging Face export's head (head_prefill.onnx over the prompt and its tiles); `vision`: the model's tiles. */
  static async openHf(dir: string, vision: { imageSize: number; channels: number } | undefined, o: { device?: Device } = {}): Promise<OrtHeadEngine> {
    const ort = await loadOrt();
    const config = readHeadConfig(dir);
    const prefill = await openGraph(ort, dir, HEAD_FILES.prefill, { device: o.device });
    const step = await openGraph(ort, dir, HEAD_FILES.denoise, { device: o.device });
    return new OrtHeadEngine(ort, config, { tiles: vision ? { channels: vision.channels, size: vision.imageSize } : null }, prefill, step);
  }

  async features(input: RunnerInput): Promise<Float32Array> {
    const c = this.vla;
    const ids = new this.ort.Tensor('int64', BigInt64Array.from(input.ids, (v) => BigInt(v)), [1, input.ids.length]);
    if ('tiles' in c) {
      const feeds: Record<string, OrtTypes.Tensor> = { input_ids: ids };
      if (c.tiles) {
        const per = c.tiles.channels * c.tiles.size * c.tiles.size;
        if (!input.pixels.length) throw new VlakitError('E_USAGE', 'the exported action head of a vision-language model takes at least one image');
        feeds.pixel_values = new this.ort.Tensor('float32', input.pixels, [input.pixels.length / per, c.tiles.channels, c.tiles.size, c.tiles.size]);
      }
      // a prefix-LM (PaliGemma): the whole prompt is the prefix
      if (this.prefill.inputNames.includes('prefix_length')) feeds.prefix_length = new this.ort.Tensor('int64', BigInt64Array.from([BigInt(input.ids.length)]), [1]);
      return (await this.prefill.run(feeds)).features.data as Float32Array;
    }
    const S = c.vision_config.image_size;
    const out = await this.prefill.run({
      pixel_values: new this.ort.Tensor('float32', input.pixels, [1, c.num_cameras, S, S, 3]),
      input_ids: new this.ort.Tensor('int64', BigInt64Array.from(input.ids, (v) => BigInt(v)), [1, input.ids.length]),
    });
    return out.features.data as Float32Array;
  }

  async denoise(x: Float32Array, t: number, cond: Float32Array, state?: Float32Array): Promise<Float32Array> {
    const feeds: Record<string, OrtTypes.Tensor> = {
      x: new this.ort.Tensor('float32', x, [1, x.length]),
      time_embedding: new this.ort.Tensor('float32', timeEmbedding([t], this.config.time_dim), [1, this.config.time_dim]),
      features: new this.ort.Tensor('float32', cond, [1, cond.length]),
    };
    if (state) feeds.state = new this.ort.Tensor('float32', state, [1, state.length]);
    const out = await this.step.run(feeds);
    return out.prediction.data as Float32Array;
  }

  async dispose(): Promise<void> {
    await this.prefill.release();
    await this.step.release();
  }
}

export function headFilesOf(dir: string): string[] {
  return [path.join(dir, HEAD_FILES.prefill), path.join(dir, HEAD_FILES.denoise)];
}
