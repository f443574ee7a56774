import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '../../src/lib/model/backend.js';
import { loadHfCheckpoint } from '../../src/lib/model/arch/hf.js';
import { TfjsCausalLm, generateIds } from '../../src/lib/infer/causal.js';
import { STORIES, STORIES_IDS } from './stories.js';


beforeAll(async () => {
  await selectBackend();
});

describe('Llama from a Hugging Face checkpoint (stories260K)', () => {
  it('greedy decoding from BOS gives llama2.c run.c ids, with and without the KV cache, leaking no tensor', async () => {
    const lm = new TfjsCausalLm(loadHfCheckpoint(STORIES));
    await generateIds(lm, [1], { maxNewTokens: 2 }); // weights upload when first used (linear ones transposed)
    const before = tf.memory().numTensors;
    const cached = await generateIds(lm, [1], { maxNewTokens: 40, stopAtEos: false });
    expect(cached.ids).toEqual(STORIES_IDS);
    expect(tf.memory().numTensors).toBe(before);
    const plain = await generateIds(lm, [1], { maxNewTokens: 12, stopAtEos: false, useCache: false });
    expect(plain.ids).toEqual(STORIES_IDS.slice(0, 12));
    expect(tf.memory().numTensors).toBe(before);
    lm.dispose();
  });

  it('generation stops at the model\'s last position; a longer prompt is a usage error', async () => {
    const lm = new TfjsCausalLm(loadHfCheckpoint(STORIES)); // 512 positions
    await generateIds(lm, [1], { maxNewTokens: 2 });
    const before = tf.memory().numTensors;
    const r = await generateIds(lm, Array(500).fill(1), { maxNewTokens: 40, stopAtEos: false });
    expect(r).toMatchObject({ stop: 'positions' });
    expect(r.ids).toHaveLength(13); // 500 prompt positions + 12 fed tokens = 512
    expect((await generateIds(lm, Array(500).fill(1), { maxNewTokens: 13, stopAtEos: false })).stop).toBe('length');
    await expect(generateIds(lm, Array(513).fill(1), { maxNewTokens: 1 })).rejects.toMatchObject({ code: 'E_USAGE', message: expect.stringMatching(/the prompt has 513 tokens; the model has 512 positions/) });
    expect(tf.memory().numTensors).toBe(before);
    lm.dispose();
  });
});

describe('the ONNX export of a Hugging Face checkpoint', () => {
  it('stories260K: prefill + decode graphs pass the checker; greedy ids on onnxruntime equal run.c; logits within 1e-4 of tfjs', async () => {
    const { mkdtempSync } = await import('node:fs');
    const os = await import('node:os');
    const { exportHfModel } = await import('../../src/lib/export/hf.js');
    const { OrtCausalLm } = await import('../../src/lib/infer/ort-causal.js');
    const ck = loadHfCheckpoint(STORIES);
    const out = path.join(mkdtempSync(path.join(os.tmpdir(), 'vlakit-hf-')), 'onnx');
    const res = await exportHfModel(ck, out);
    expect(res.checks.map((c) => c.problems)).toEqual([[], []]);
    const ort = await OrtCausalLm.open(out);
    try {
      expect((await generateIds(ort, [1], { maxNewTokens: 40, stopAtEos: false })).ids).toEqual(STORIES_IDS);
      const tfjs = new TfjsCausalLm(ck);
      const prompt = [1, ...STORIES_IDS.slice(0, 20)];
      const [a, b] = [await tfjs.logits(prompt), await ort.logits(prompt)];
      tfjs.dispose();
      let max = 0;
      for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
      expect(a.length).toBe(21 * 512);
      expect(max).toBeLessThan(1e-4);
      // past the 512 positions of its rotary tables: a usage error, or a stop, never onnxruntime's index error
      await expect(ort.logits(Array(513).fill(1))).rejects.toMatchObject({ code: 'E_USAGE', message: expect.stringMatching(/513 tokens; the model has 512 positions/) });
      const long = await generateIds(ort, Array(510).fill(1), { maxNewTokens: 10, stopAtEos: false });
      expect(long).toMatchObject({ stop: 'positions', ids: expect.any(Array) });
      expect(long.ids).toHaveLength(3);
      expect((await generateIds(ort, Array(510).fill(1), { maxNewTokens: 10, stopAtEos: false, useCache: false })).ids).toEqual(long.ids);
    } finally {
      await ort.dispose();
    }
  });
});
