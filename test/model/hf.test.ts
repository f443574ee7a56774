import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '../../src/lib/model/backend.js';
import { loadHfCheckpoint } from '../../src/lib/model/arch/hf.js';
import { TfjsCausalLm, generateIds } from '../../src/lib/infer/causal.js';

const STORIES = path.resolve('../shared/models/stories260k');
/** Greedy ids after BOS, computed independently by llama2.c's run.c (../shared/models/README.md). */
export const STORIES_IDS = [461, 461, 401, 401, 401, 461, 378, 455, 473, 456, 435, 299, 362, 409, 283, 264, 283, 452, 288, 13, 431, 431, 431, 431, 431, 431, 431, 431, 431, 431, 431, 431, 431, 293, 430, 417, 363, 416, 315, 342];

beforeAll(async () => {
  await selectBackend();
});

describe('Llama from a Hugging Face checkpoint (stories260K)', () => {
  it('greedy decoding from BOS gives llama2.c run.c ids, with and without the KV cache, leaking no tensor', async () => {
    const lm = new TfjsCausalLm(loadHfCheckpoint(STORIES));
    const before = tf.memory().numTensors;
    const cached = await generateIds(lm, [1], { maxNewTokens: 40, stopAtEos: false });
    expect(cached.ids).toEqual(STORIES_IDS);
    expect(tf.memory().numTensors).toBe(before);
    const plain = await generateIds(lm, [1], { maxNewTokens: 12, stopAtEos: false, useCache: false });
    expect(plain.ids).toEqual(STORIES_IDS.slice(0, 12));
    expect(tf.memory().numTensors).toBe(before);
    lm.dispose();
  });
});
