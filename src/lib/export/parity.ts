/**
 * The parity check of an export against its checkpoint: the same images and prompts through TensorFlow.js (the
 * checkpoint, LoRA unmerged) and onnxruntime (the export), comparing the logits of every text position and the
 * greedy token ids with and without the KV cache. A float32 export matches to rounding (|diff| <= 1e-4, the same
 * ids); an int8 export is judged by its logits relative to their scale, its greedy agreement counted.
 */
import { type BuiltinRunner, generate, promptIds } from '../infer/index.js';
import { Rng } from '../util/rng.js';

export interface ParityCase {
  prompt: string;
  /** [C, S, S, 3] in [-1, 1], flattened. */
  pixels: Float32Array;
}

export interface ParityResult {
  cases: number;
  /** Max |logit difference| over every text position of every case. */
  maxAbsDiff: number;
  /** Max |logit| of the reference over the same positions (the scale for a relative tolerance). */
  maxAbsLogit: number;
  /** Cases whose greedy ids with the cache are the reference's. */
  greedyAgree: number;
  /** Greedy ids: tfjs with the cache, onnxruntime with and without it, all equal for every case. */
  greedyMatch: boolean;
  mismatches: { prompt: string; reference: number[]; cached: number[]; uncached: number[] }[];
}

const PROMPTS = ['Subtask: pick up the red block', 'What should the robot do next to put the carrot on the plate?', 'Move the gripper left'];

/** Seeded camera images (a smooth pattern plus noise, and a flat grey) with a few prompts. */
export function parityCases(imageSize: number, cameras: number, seed = 0, prompts: string[] = PROMPTS): ParityCase[] {
  const rng = new Rng(seed);
  const n = cameras * imageSize * imageSize * 3;
  return prompts.map((prompt, k) => ({
    prompt,
    pixels: k === prompts.length - 1 ? new Float32Array(n) : Float32Array.from({ length: n }, (_, i) => Math.max(-1, Math.min(1, 0.6 * Math.sin(i * 0.01 * (k + 1)) + rng.uniform(-0.4, 0.4)))),
  }));
}

/**
 * Compares `candidate` (an export on onnxruntime) with `reference` (its checkpoint on tfjs).
 * @example const r = await checkParity(tfjsRunner, ortRunner, parityCases(64, 1)); r.maxAbsDiff <= 1e-4
 */
export async function checkParity(reference: BuiltinRunner, candidate: BuiltinRunner, cases: ParityCase[], maxNewTokens = 16): Promise<ParityResult> {
  let maxAbsDiff = 0;
  let maxAbsLogit = 0;
  let greedyAgree = 0;
  const mismatches: ParityResult['mismatches'] = [];
  for (const c of cases) {
    const ids = promptIds(reference, c.prompt);
    const a = await reference.logits(c.pixels, ids);
    const b = await candidate.logits(c.pixels, ids);
    if (a.length !== b.length) throw new Error(`logits of ${a.length} and ${b.length} values`);
    for (let i = 0; i < a.length; i++) {
      maxAbsDiff = Math.max(maxAbsDiff, Math.abs(a[i] - b[i]));
      maxAbsLogit = Math.max(maxAbsLogit, Math.abs(a[i]));
    }
    const ref = await generate(reference, c.pixels, c.prompt, { maxNewTokens });
    const cached = await generate(candidate, c.pixels, c.prompt, { maxNewTokens });
    const uncached = await generate(candidate, c.pixels, c.prompt, { maxNewTokens, useCache: false });
    if (ref.ids.join() === cached.ids.join()) greedyAgree++;
    if (ref.ids.join() !== cached.ids.join() || ref.ids.join() !== uncached.ids.join()) mismatches.push({ prompt: c.prompt, reference: ref.ids, cached: cached.ids, uncached: uncached.ids });
  }
  return { cases: cases.length, maxAbsDiff, maxAbsLogit, greedyAgree, greedyMatch: mismatches.length === 0, mismatches };
}
