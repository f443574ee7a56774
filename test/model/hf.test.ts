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
    } finally {
      await ort.dispose();
    }
  });
});
