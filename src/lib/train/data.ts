/**
 * Training examples as model inputs: camera images resized to the model's image size (RGB in [-1, 1]), token ids
 * `<bos> prompt <sep> target <eos>`, and per-token weights: which target tokens are action and which reasoning
 * (from the example's spans; each span is tokenized on its own so that its tokens are exactly its characters;
 * separators between spans count as reasoning, `<eos>` as the last span's kind).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { TrainingExample } from '../actions/examples.js';
import { imagesToPixels } from '../infer/pixels.js';
import { BOS, EOS, PAD, SEP, type Tokenizer } from '../model/tokenizer.js';

export interface Prepared {
  id: string;
  ids: number[];
  /** 1 where the token is an action-span token of the target (the token itself, not its predictor). */
  action: number[];
  reasoning: number[];
  /** [cameras, S, S, 3] flattened. */
  pixels: Float32Array;
  /** The target's action text, for decoding (L1 against `actions`). */
  actionText: string;
  split: string;
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

/** Tokenizes and resizes; sequences are cut at `maxTokens`. */
export async function prepare(examples: TrainingExample[], tok: Tokenizer, opts: { cameras: number; imageSize: number; maxTokens: number }): Promise<Prepared[]> {
  const out: Prepared[] = [];
  for (const ex of examples) {
    const ids = [BOS, ...tok.encode(promptText(ex)), SEP];
    const action = ids.map(() => 0);
    const reasoning = ids.map(() => 0);
    const target = targetText(ex);
    let at = 0;
    let actionText = '';
    let lastKind: 'action' | 'reasoning' = 'reasoning';
    for (const s of ex.spans) {
      // separators between spans ("\n") are target text too: they train with the reasoning weight, else the
      // model would never learn to write them
      const gap = target.slice(at, s.start);
      for (const id of gap ? tok.encode(gap) : []) {
        ids.push(id);
        action.push(0);
        reasoning.push(1);
      }
      const text = target.slice(s.start, s.end);
      for (const id of tok.encode(text)) {
        ids.push(id);
        action.push(s.kind === 'action' ? 1 : 0);
        reasoning.push(s.kind === 'reasoning' ? 1 : 0);
      }
      if (s.kind === 'action') actionText += text;
      lastKind = s.kind;
      at = s.end;
    }
    ids.push(EOS);
    action.push(lastKind === 'action' ? 1 : 0);
    reasoning.push(lastKind === 'reasoning' ? 1 : 0);
    const n = Math.min(ids.length, opts.maxTokens);
    out.push({ id: ex.id, ids: ids.slice(0, n), action: action.slice(0, n), reasoning: reasoning.slice(0, n), pixels: await pixelsOf(ex, opts.cameras, opts.imageSize), actionText, split: ex.meta.split });
  }
  return out;
}

export interface Batch {
  pixels: tf.Tensor5D;
  ids: tf.Tensor2D;
  /** Weights of the next-token targets: [B, T-1]. */
  action: tf.Tensor2D;
  reasoning: tf.Tensor2D;
  actionCount: number;
  reasoningCount: number;
  tokens: number;
}

/** Pads a list of prepared examples into tensors (caller disposes). */
export function makeBatch(items: Prepared[], cameras: number, size: number): Batch {
  const B = items.length;
  const T = Math.max(...items.map((x) => x.ids.length));
  const ids = new Int32Array(B * T).fill(PAD);
  const wa = new Float32Array(B * (T - 1));
  const wr = new Float32Array(B * (T - 1));
  const px = new Float32Array(B * cameras * size * size * 3);
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
    px.set(x.pixels, b * cameras * size * size * 3);
  });
  return {
    pixels: tf.tensor5d(px, [B, cameras, size, size, 3]),
    ids: tf.tensor2d(ids, [B, T], 'int32'),
    action: tf.tensor2d(wa, [B, T - 1]),
    reasoning: tf.tensor2d(wr, [B, T - 1]),
    actionCount: ac,
    reasoningCount: rc,
    tokens,
  };
}

export function disposeBatch(b: Batch): void {
  tf.dispose([b.pixels, b.ids, b.action, b.reasoning]);
}
