/** Tiny training runs for tests: each call trains into a fresh directory of its own, so no test reads another's files. */
import { mkdtempSync } from 'node:fs';
import path from 'node:path';
import { TextCodec, type TrainingExample } from '../../src/lib/actions/index.js';
import { type SftOptions, trainSft } from '../../src/lib/train/sft.js';

/** The settings of the tiny runs in the model tests (tiny preset, small vocabulary, seeded). */
export const TINY = { preset: 'tiny' as const, vocabSize: 128, batchSize: 2, lr: 1e-2, warmup: 0, seed: 3, codec: new TextCodec(3) };

/** A new, empty directory under `parent` (a test's temp dir), named after `name`. */
export function freshDir(parent: string, name: string): string {
  return mkdtempSync(path.join(parent, `${name}-`));
}

/**
 * Trains a tiny checkpoint into a fresh directory under `parent` and returns its path.
 * @example const ck = await trainTiny(dir, 'overfit', examples.slice(0, 2), { steps: 120, clip: 0 })
 */
export async function trainTiny(parent: string, name: string, examples: TrainingExample[], o: Partial<SftOptions> = {}): Promise<string> {
  const outDir = path.join(freshDir(parent, name), 'run');
  await trainSft({ ...TINY, examples, outDir, ...o });
  return outDir;
}
