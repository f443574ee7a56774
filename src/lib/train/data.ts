/**
 * Training examples as model inputs: camera images resized to the model's image size (RGB in [-1, 1]), token ids
 * `<bos> prompt <sep> target <eos>`, and per-token weights: which target tokens are action and which reasoning
 * (from the example's spans; each span is tokenized on its own so that its tokens are exactly its characters;
 * separators between spans count as reasoning, `<eos>` as the last span's kind). A Hugging Face model's inputs come
 * from its processor instead (chat template, its special tokens, image tokens in place, pixel_values per tile), with
 * the same target weights.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { TrainingExample } from '../actions/examples.js';
import { imagesToPixels } from '../infer/pixels.js';
import { BOS, EOS, PAD, SEP, type Tokenizer } from '../model/tokenizer.js';
import type { ChatPart, Processor } from '../model/processor/types.js';
import { VlakitError } from '../errors.js';
import { type GroundCells, groundTarget } from './ground.js';

export interface Prepared {
  id: string;
  ids: number[];
  /** 1 where the token is an action-span token of the target (the token itself, not its predictor). */
  action: number[];
  reasoning: number[];
  /** [cameras, S, S, 3] flattened (built-in model), or pixel_values [tiles, C, S, S] flattened (processor). */
  pixels: Float32Array;
  /** Tiles of `pixels` (processor inputs). */
  tiles?: number;
  /** How many of `ids` are the prompt (processor inputs: the rendered user turn with its image tokens). */
  promptLength?: number;
  /** The target's action text, for decoding (L1 against `actions`). */
  actionText: string;
  split: string;
  /** An action head's inputs (train/head.ts): kept on the item, so they travel with it to data-parallel workers. */
  head?: HeadTarget;
  /** Grounding targets of the keypoints (train/ground.ts, `--ground-weight`). */
  ground?: GroundCells[];
}

/** What an action head trains on for one example. */
export interface HeadTarget {
  /** The text position of the prompt's last token (<sep>). */
  promptEnd: number;
  /** The normalized chunk [H*D], when the example has one. */
  x0?: Float32Array;
  /** The chunk in action units, cut or padded to the horizon as x0 [H][D]. */
  chunk?: number[][];
  /** The normalized state [S], when the head takes one. */
  state?: Float32Array;
  /** Per slot, the keypoint of the object the prompt names (a head with named_keypoints). */
  named?: number[];
}

export function promptText(ex: TrainingExample): string {
  return ex.messages[0].content.map((c) => (c.type === 'text' ? c.text : '')).join('');
}

export function targetText(ex: TrainingExample): string {
  const c = ex.messages[1]?.content[0];
  return c && c.type === 'text' ? c.text : '';
}

/** All the text a tokenizer should be trained on. */
export function* examplesText(examples: TrainingExample[]): Generator<string> {
  for (const ex of examples) {
    yield promptText(ex);
    yield targetText(ex);
  }
}

function pixelsOf(ex: TrainingExample, cameras: number, size: number): Promise<Float32Array> {
  return imagesToPixels(ex.images, cameras, size, `example ${ex.id}: image`);
}

/** A target's tokens: each span tokenized on its own, with its action / reasoning weights (gaps count as reasoning). */
function targetTokens(ex: TrainingExample, encode: (text: string) => number[]): { ids: number[]; action: number[]; reasoning: number[]; actionText: string; lastKind: 'action' | 'reasoning' } {
  const ids: number[] = [];
  const action: number[] = [];
  const reasoning: number[] = [];
  const target = targetText(ex);
  let at = 0;
  let actionText = '';
  let lastKind: 'action' | 'reasoning' = 'reasoning';
  for (const s of ex.spans) {
    // separators between spans ("\n") are target text too: they train with the reasoning weight, else the
    // model would never learn to write them
    const gap = target.slice(at, s.start);
    for (const id of gap ? encode(gap) : []) {
      ids.push(id);
      action.push(0);
      reasoning.push(1);
    }
    const text = target.slice(s.start, s.end);
    for (const id of encode(text)) {
      ids.push(id);
      action.push(s.kind === 'action' ? 1 : 0);
      reasoning.push(s.kind === 'reasoning' ? 1 : 0);
    }
    if (s.kind === 'action') actionText += text;
    lastKind = s.kind;
    at = s.end;
  }
  return { ids, action, reasoning, actionText, lastKind };
}

/** `--oversample`: training examples whose prompt contains `pattern` come `times` times in every epoch. */
export interface Oversample {
  pattern: string;
  times: number;
}

/**
 * "PATTERN=K" (train-sft --oversample) as a rule; a usage error for anything else.
 * @example parseOversample('move the gripper up and away=8') // { pattern: 'move the gripper up and away', times: 8 }
 */
export function parseOversample(s: string): Oversample {
  const k = s.lastIndexOf('=');
  const times = Number(s.slice(k + 1));
  if (k < 1 || !Number.isInteger(times) || times < 1 || times > 100) {
    throw new VlakitError('E_USAGE', `--oversample ${JSON.stringify(s)}: expected TEXT=K, a piece of the prompt and how many times (1-100) its examples come per epoch, e.g. "up and away=8"`);
  }
  return { pattern: s.slice(0, k), times };
}

/**
 * How many times each example comes per epoch: as the first rule whose pattern its prompt contains says (once when
 * none does), and how many examples each rule matched. Needs only the examples, so a rule that matches none is a
 * usage error before any image is decoded.
 */
export function oversampleCounts(examples: TrainingExample[], rules: readonly Oversample[]): { counts: number[]; matched: number[] } {
  const matched = rules.map(() => 0);
  const counts = examples.map((ex) => {
    if (!rules.length) return 1;
    const text = promptText(ex);
    const r = rules.findIndex((x) => text.includes(x.pattern));
    if (r < 0) return 1;
    matched[r] += 1;
    return rules[r].times;
  });
  const none = rules.findIndex((_, r) => matched[r] === 0);
  if (none >= 0) throw new VlakitError('E_USAGE', `--oversample ${JSON.stringify(rules[none].pattern)}: no training example's prompt contains it`);
  return { counts, matched };
}

/** The items (the examples prepared, in order) each repeated as `counts` says: rare skills of a mixture seen more often. */
export function repeatItems<T>(items: T[], counts: readonly number[]): T[] {
  if (items.length !== counts.length) throw new Error(`repeatItems: ${items.length} items for ${counts.length} counts`);
  return counts.every((n) => n === 1) ? items : items.flatMap((item, i) => Array<T>(counts[i]).fill(item));
}

/** Tokenizes and resizes; sequences are cut at `maxTokens`. */
export async function prepare(examples: TrainingExample[], tok: Tokenizer, opts: { cameras: number; imageSize: number; maxTokens: number; ground?: (ex: TrainingExample) => GroundCells[] | undefined }): Promise<Prepared[]> {
  const out: Prepared[] = [];
  for (const ex of examples) {
    const t = targetTokens(ex, (s) => tok.encode(s));
    const ids = [BOS, ...tok.encode(promptText(ex)), SEP, ...t.ids, EOS];
    const action = [...ids.slice(0, ids.length - t.ids.length - 1).map(() => 0), ...t.action, t.lastKind === 'action' ? 1 : 0];
    const reasoning = [...ids.slice(0, ids.length - t.ids.length - 1).map(() => 0), ...t.reasoning, t.lastKind === 'reasoning' ? 1 : 0];
    const n = Math.min(ids.length, opts.maxTokens);
    const ground = opts.ground?.(ex);
    out.push({ id: ex.id, ids: ids.slice(0, n), action: action.slice(0, n), reasoning: reasoning.slice(0, n), pixels: await pixelsOf(ex, opts.cameras, opts.imageSize), actionText: t.actionText, split: ex.meta.split, ...(ground ? { ground } : {}) });
  }
  return out;
}

/**
 * Examples as a Hugging Face model's inputs, built through its processor: the user message (the example's images
 * and prompt text, in order) rendered by the chat template with the generation prompt and encoded with the images
 * (image tokens in place, pixel_values [tiles, C, S, S]); then the target's spans tokenized on their own, then the
 * template's end of turn (weighted as the last span). Targets are cut at `maxTokens`; a prompt longer than that
 * is an error.
 */
export async function prepareWithProcessor(examples: TrainingExample[], processor: Processor, opts: { maxTokens: number }): Promise<Prepared[]> {
  const out: Prepared[] = [];
  for (const ex of examples) {
    const parts: ChatPart[] = ex.messages[0].content.map((c) => (c.type === 'text' ? { type: 'text', text: c.text } : { type: 'image' }));
    const prompt = processor.renderChat([{ role: 'user', content: parts }], { addGenerationPrompt: true });
    const images = ex.images.map((img) => new Uint8Array(Buffer.from(img.b64, 'base64')));
    let inputs;
    try {
      inputs = await processor.encode(prompt, images);
    } catch (err) {
      if (err instanceof VlakitError) throw new VlakitError(err.code, `example ${ex.id}: ${err.detail}`, err.context, { cause: err });
      throw err;
    }
    const t = targetTokens(ex, (s) => processor.encodeText(s));
    const end = processor.turnEnd;
    const P = inputs.ids.length;
    if (P >= opts.maxTokens) throw new VlakitError('E_USAGE', `example ${ex.id}: its prompt is ${P} tokens; the model takes ${opts.maxTokens} (fewer or smaller images, a shorter prompt)`);
    const ids = [...inputs.ids, ...t.ids, ...end];
    const kind = (k: 'action' | 'reasoning') => end.map(() => (t.lastKind === k ? 1 : 0));
    const action = [...inputs.ids.map(() => 0), ...t.action, ...kind('action')];
    const reasoning = [...inputs.ids.map(() => 0), ...t.reasoning, ...kind('reasoning')];
    const n = Math.min(ids.length, opts.maxTokens);
    out.push({ id: ex.id, ids: ids.slice(0, n), action: action.slice(0, n), reasoning: reasoning.slice(0, n), pixels: inputs.pixels, tiles: inputs.tiles, promptLength: P, actionText: t.actionText, split: ex.meta.split });
  }
  return out;
}

/**
 * How a batch's images are laid out: the built-in model's camera slots ([B, cameras, S, S, 3], padded with PAD), or a
 * Hugging Face vision-language model's tiles (every example's pixel_values [tiles, C, S, S] one after the other,
 * [N, C, S, S]; ids padded with `pad`, a text model has no pixels).
 */
export type PixelLayout = { cameras: number; size: number } | { tiles: { channels: number; size: number } | null; pad: number };

export interface Batch {
  /** [B, cameras, S, S, 3] (built-in), or [N, C, S, S] (tiles; undefined when no example has an image). */
  pixels: tf.Tensor | undefined;
  ids: tf.Tensor2D;
  /** Weights of the next-token targets: [B, T-1]. */
  action: tf.Tensor2D;
  reasoning: tf.Tensor2D;
  actionCount: number;
  reasoningCount: number;
  /** Examples with an action chunk in the whole batch (a data-parallel part's head loss is normalized by it). */
  chunkCount?: number;
  /** The keypoints' grounding targets [B*C, Kg, G*G] and the whole batch's count of them (train/ground.ts). */
  ground?: { target: tf.Tensor3D; count: number };
  tokens: number;
}

/** Pads a list of prepared examples into tensors (caller disposes); padded positions weigh nothing in the loss. */
export function makeBatch(items: Prepared[], layout: PixelLayout): Batch {
  const B = items.length;
  const T = Math.max(...items.map((x) => x.ids.length));
  const ids = new Int32Array(B * T).fill('pad' in layout ? layout.pad : PAD);
  const wa = new Float32Array(B * (T - 1));
  const wr = new Float32Array(B * (T - 1));
  let ac = 0;
  let rc = 0;
  let tokens = 0;
  items.forEach((x, b) => {
    ids.set(x.ids, b * T);
    for (let t = 1; t < x.ids.length; t++) {
      // position t-1 predicts token t
      wa[b * (T - 1) + t - 1] = x.action[t];
      wr[b * (T - 1) + t - 1] = x.reasoning[t];
      ac += x.action[t];
      rc += x.reasoning[t];
    }
    tokens += x.ids.length;
  });
  const ground = 'cameras' in layout ? groundTarget(items.map((x) => x.ground), layout.cameras) : undefined;
  return {
    pixels: batchPixels(items, layout),
    ...(ground ? { ground: { target: ground.target, count: ground.count } } : {}),
    ids: tf.tensor2d(ids, [B, T], 'int32'),
    action: tf.tensor2d(wa, [B, T - 1]),
    reasoning: tf.tensor2d(wr, [B, T - 1]),
    actionCount: ac,
    reasoningCount: rc,
    tokens,
  };
}

function batchPixels(items: Prepared[], layout: PixelLayout): tf.Tensor | undefined {
  if ('cameras' in layout) {
    const { cameras, size } = layout;
    const px = new Float32Array(items.length * cameras * size * size * 3);
    items.forEach((x, b) => px.set(x.pixels, b * cameras * size * size * 3));
    return tf.tensor5d(px, [items.length, cameras, size, size, 3]);
  }
  const N = items.reduce((a, x) => a + (x.tiles ?? 0), 0);
  if (!layout.tiles || N === 0) return undefined;
  const { channels: C, size: S } = layout.tiles;
  const px = new Float32Array(N * C * S * S);
  let at = 0;
  for (const x of items) {
    px.set(x.pixels, at);
    at += x.pixels.length;
  }
  return tf.tensor4d(px, [N, C, S, S]);
}

export function disposeBatch(b: Batch): void {
  tf.dispose([b.ids, b.action, b.reasoning]);
  b.ground?.target.dispose();
  b.pixels?.dispose();
}
