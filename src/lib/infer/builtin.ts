/**
 * The prompt format of vlakit's built-in VLA model, shared by its two runners (tfjs checkpoint, onnxruntime
 * export): `<bos> prompt <sep>`, the cameras' images resized to the model's square, image tokens first (camera after
 * camera, patch grids row-major), then the text.
 */
import type { ImageJson } from '../io/json.js';
import { type VlaConfig, patchGrid, patchesPerImage, tokensPerImage } from '../model/config.js';
import { BOS, EOS, SEP, type Tokenizer } from '../model/tokenizer.js';
import { imagesToPixels } from './pixels.js';
import type { ImageLayout, RunnerInput } from './runner.js';

/** The members of VlaRunner that follow from the built-in config and tokenizer. */
export interface BuiltinPrompting {
  readonly maxPositions: number;
  readonly stopIds: number[];
  readonly answerEnd: number[];
  readonly maxImages: number;
  encodeText(text: string): number[];
  decode(ids: number[]): string;
  prepare(prompt: string, images: (ImageJson | Uint8Array)[], what?: string): Promise<RunnerInput>;
}

/** The camera grids of the built-in model: camera c's patches are key positions [c * Nt, c * Nt + P) (its keypoint tokens follow). */
export function builtinLayout(cfg: VlaConfig): ImageLayout[] {
  const grid = patchGrid(cfg);
  const P = patchesPerImage(cfg);
  const Nt = tokensPerImage(cfg);
  return Array.from({ length: cfg.num_cameras }, (_, c) => ({ grid, positions: Array.from({ length: P }, (_, i) => c * Nt + i) }));
}

export function builtinPrompting(cfg: VlaConfig, tok: Tokenizer): BuiltinPrompting {
  const Ni = cfg.num_cameras * tokensPerImage(cfg);
  const layout = builtinLayout(cfg);
  return {
    maxPositions: cfg.text_config.max_position_embeddings,
    stopIds: [EOS],
    answerEnd: [EOS],
    maxImages: cfg.num_cameras,
    encodeText: (text) => tok.encode(text),
    decode: (ids) => tok.decode(ids),
    prepare: async (prompt, images, what = 'image') => ({
      ids: [BOS, ...tok.encode(prompt), SEP],
      pixels: await imagesToPixels(images, cfg.num_cameras, cfg.vision_config.image_size, what),
      textOffset: Ni,
      imagePositions: Array.from({ length: Ni }, (_, i) => i),
      images: layout,
    }),
  };
}

/**
 * The members both built-in runners (tfjs checkpoint, onnxruntime export) take from `builtinPrompting`: they
 * extend this instead of forwarding each member.
 */
export abstract class BuiltinPromptingRunner implements BuiltinPrompting {
  readonly maxPositions: number;
  readonly stopIds: number[];
  readonly answerEnd: number[];
  readonly maxImages: number;
  readonly encodeText: BuiltinPrompting['encodeText'];
  readonly decode: BuiltinPrompting['decode'];
  readonly prepare: BuiltinPrompting['prepare'];

  constructor(cfg: VlaConfig, tok: Tokenizer) {
    const p = builtinPrompting(cfg, tok);
    this.maxPositions = p.maxPositions;
    this.stopIds = p.stopIds;
    this.answerEnd = p.answerEnd;
    this.maxImages = p.maxImages;
    this.encodeText = p.encodeText;
    this.decode = p.decode;
    this.prepare = p.prepare;
  }
}
