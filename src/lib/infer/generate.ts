/**
 * Text generation for every command that runs a policy, on either runner (a checkpoint on tfjs or an export on
 * onnxruntime): greedy or sampled (temperature, top-p, seeded), stop strings, the KV cache (the prompt and images
 * run once, then one token per step), and optionally the attention weights of each generated token.
 */
import { VlakitError } from '../errors.js';
import { Rng } from '../util/rng.js';
import { tokensPerImage } from '../model/config.js';
import { BOS, SEP } from '../model/tokenizer.js';
import { type BuiltinRunner, type RunnerInput, type VlaRunner, isBuiltinRunner } from './runner.js';

export interface GenerateOptions {
  maxNewTokens?: number;
  /** 0 (default) is greedy. */
  temperature?: number;
  topP?: number;
  stop?: string[];
  seed?: number;
  /** Use the KV cache (default true); false recomputes the whole sequence each step (for checks). */
  useCache?: boolean;
  /** Keep, for each generated token, the attention of its query over all positions: [layers][heads][positions]. */
  attentions?: boolean;
}

export interface Generation {
  text: string;
  ids: number[];
  /** Per generated token: [layer][head][key position] (keys as in RunnerInput). */
  attentions?: number[][][][];
  /** Why generation ended. */
  stop: 'eos' | 'stop' | 'length';
  /** Milliseconds spent in the prefill and in the decode steps. */
  timing: { prefillMs: number; decodeMs: number };
}

/**
 * Picks a token from logits [V]: argmax, or a sample from the top-p nucleus at the temperature. The nucleus is
 * found without sorting the whole vocabulary (a 262k-token vocabulary would cost more than the model's step):
 * tokens above a probability threshold are gathered and sorted, and the threshold drops until they hold top-p.
 */
export function pickToken(logits: Float32Array, temperature: number, topP: number, rng: Rng): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  if (!(temperature > 0)) return best;
  const max = logits[best];
  const probs = new Float64Array(logits.length);
  let z = 0;
  for (let i = 0; i < logits.length; i++) z += probs[i] = Math.exp((logits[i] - max) / temperature);
  if (topP >= 1) {
    // the whole distribution: no nucleus to find
    let u = rng.next() * z;
    for (let i = 0; i < probs.length; i++) {
      u -= probs[i];
      if (u <= 0) return i;
    }
    return best;
  }
  let kept: number[] = [];
  let mass = 0;
  for (let threshold = 0.1; ; threshold /= 16) {
    const cut = threshold * z;
    kept = [];
    for (let i = 0; i < probs.length; i++) if (probs[i] >= cut) kept.push(i);
    kept.sort((a, b) => probs[b] - probs[a] || a - b);
    mass = 0;
    let n = 0;
    do mass += probs[kept[n++]];
    while (n < kept.length && mass < topP * z); // at least the most likely token
    if (mass >= topP * z || kept.length === probs.length || threshold < 1e-300) {
      kept = kept.slice(0, n);
      break;
    }
  }
  let u = rng.next() * mass;
  for (const i of kept) {
    u -= probs[i];
    if (u <= 0) return i;
  }
  return kept[kept.length - 1];
}

/** The token ids of a built-in model's prompt: `<bos> prompt <sep>`. */
export function promptIds(runner: BuiltinRunner, prompt: string): number[] {
  return [BOS, ...runner.tokenizer.encode(prompt), SEP];
}

/**
 * Generates the assistant text for a built-in model's prompt and camera pixels ([C, S, S, 3] flattened, in [-1, 1]).
 * @example const g = await generate(runner, pixels, 'Subtask: grasp the carrot\nOutput the actions ...', { maxNewTokens: 64 })
 */
export async function generate(runner: VlaRunner, pixels: Float32Array, prompt: string, o: GenerateOptions = {}): Promise<Generation> {
  if (!isBuiltinRunner(runner)) throw new VlakitError('E_USAGE', `a ${runner.info.model ?? 'Hugging Face'} model builds its own prompt: generate from runner.prepare(prompt, images) (generateFrom)`);
  const cfg = runner.config;
  const Ni = cfg.num_cameras * tokensPerImage(cfg);
  return generateFrom(runner, { ids: promptIds(runner, prompt), pixels, textOffset: Ni, imagePositions: Array.from({ length: Ni }, (_, i) => i), images: [] }, o);
}

/**
 * Generates the answer to a prompt the runner prepared (any runner: the built-in model or a Hugging Face VLM).
 * @example const g = await generateFrom(runner, await runner.prepare('Task: pick up the red block', [image]), { maxNewTokens: 64 })
 */
export async function generateFrom(runner: VlaRunner, input: RunnerInput, o: GenerateOptions = {}): Promise<Generation> {
  const rng = new Rng(o.seed ?? 0);
  const out: number[] = [];
  const atts: number[][][][] = [];
  let stop: Generation['stop'] = 'length';
  const timing = { prefillMs: 0, decodeMs: 0 };
  const ids = input.ids;
  const room = runner.maxPositions - input.textOffset - ids.length; // positions left for new tokens
  if (room < 1) throw new VlakitError('E_USAGE', input.textOffset ? `the prompt (${ids.length} tokens) and images (${input.textOffset} tokens) fill the model's ${runner.maxPositions} positions: no room to generate` : `the prompt (${ids.length} tokens, ${input.imagePositions.length} of them image tokens) fills the model's ${runner.maxPositions} positions: no room to generate`);
  const state = runner.start({ useCache: o.useCache ?? true, attentions: Boolean(o.attentions) });
  try {
    const max = Math.min(o.maxNewTokens ?? 64, room);
    for (let step = 0; step < max; step++) {
      const t0 = performance.now();
      const r = step === 0 ? await state.prefill(input.pixels, ids) : await state.next(out[out.length - 1]);
      timing[step === 0 ? 'prefillMs' : 'decodeMs'] += performance.now() - t0;
      if (o.attentions) atts.push(r.attentions!);
      const next = pickToken(r.logits, o.temperature ?? 0, o.topP ?? 1, rng);
      if (runner.stopIds.includes(next)) {
        stop = 'eos';
        break;
      }
      out.push(next);
      if (o.stop?.length) {
        const text = runner.decode(out);
        if (o.stop.some((s) => text.includes(s))) {
          stop = 'stop';
          break;
        }
      }
    }
  } finally {
    state.dispose();
  }
  let text = runner.decode(out);
  if (stop === 'stop') for (const s of o.stop ?? []) if (text.includes(s)) text = text.slice(0, text.indexOf(s));
  return { text, ids: out, attentions: o.attentions ? atts : undefined, stop, timing };
}
