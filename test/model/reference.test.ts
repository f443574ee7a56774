/**
 * vlakit's architectures against an independent reference: a float64 NumPy implementation written from
 * transformers' modeling files (test/reference/hf_reference.py), run on tiny random checkpoints with transformers'
 * tensor names (test/fixtures/reference/, remade by test/reference/make.sh). The TypeScript is compared with
 * the dumps, on TensorFlow.js and through the ONNX export on onnxruntime; the Hugging Face ones also with the
 * logits of transformers itself on the same files (transformers.json, from test/reference/transformers_check.py).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../../src/lib/model/backend.js';
import { loadHfCheckpoint } from '../../src/lib/model/arch/hf.js';
import { TfjsCausalLm, generateIds } from '../../src/lib/infer/causal.js';
import { exportHfModel } from '../../src/lib/export/hf.js';
import { OrtCausalLm } from '../../src/lib/infer/ort-causal.js';
import { tempDir } from '../helpers.js';

const REF = path.resolve('test/fixtures/reference');

function load(name: string): { dir: string; ids: number[]; pixels?: Float32Array; prefix?: number; expected: number[][]; transformers: number[][] } {
  const dir = path.join(REF, name);
  const inp = JSON.parse(readFileSync(path.join(dir, 'inputs.json'), 'utf8')) as { input_ids: number[]; pixel_values?: number[]; prefix_length?: number };
  const logits = (f: string) => (JSON.parse(readFileSync(path.join(dir, f), 'utf8')) as { logits: number[][] }).logits;
  return { dir, ids: inp.input_ids, pixels: inp.pixel_values ? Float32Array.from(inp.pixel_values) : undefined, prefix: inp.prefix_length, expected: logits('expected.json'), transformers: logits('transformers.json') };
}

/** max |a - b| relative to max |b|, with the first mismatches above `tol` for the message. */
function compare(got: Float32Array, expected: number[][], tol: number): { rel: number; bad: string[] } {
  const V = expected[0].length;
  let scale = 0;
  for (const row of expected) for (const v of row) scale = Math.max(scale, Math.abs(v));
  let worst = 0;
  const bad: string[] = [];
  expected.forEach((row, t) =>
    row.forEach((v, j) => {
      const d = Math.abs(got[t * V + j] - v) / scale;
      worst = Math.max(worst, d);
      if (d > tol && bad.length < 5) bad.push(`[${t}, ${j}] vlakit ${got[t * V + j].toFixed(6)} reference ${v.toFixed(6)}`);
    }),
  );
  return { rel: worst, bad };
}

beforeAll(async () => {
  await selectBackend();
});

describe.each(['llama-tiny', 'idefics3-tiny', 'gemma3-text-tiny', 'gemma3-tiny', 'paligemma-tiny'])('%s against the NumPy float64 reference and transformers', (name) => {
  const out = tempDir('vlakit-ref-');
  it('logits on TensorFlow.js and on onnxruntime (the export) within 1e-4 relative; greedy ids agree with the cache', async () => {
    // paligemma-tiny: a prefix (images, bos, prefix, "\n") attending both ways and a causal suffix
    const { dir, ids, pixels, prefix, expected, transformers } = load(name);
    expect(expected.length).toBe(ids.length);
    const ck = loadHfCheckpoint(dir);
    const tfjs = new TfjsCausalLm(ck);
    const got = await tfjs.logits(ids, pixels, prefix);
    const a = compare(got, expected, 1e-4);
    expect(a.bad, `tfjs: max relative difference ${a.rel.toExponential(2)}`).toEqual([]);
    // and against transformers itself (its logits on the same checkpoint and inputs, dumped on a GPU machine)
    const t = compare(got, transformers, 1e-4);
    expect(t.bad, `tfjs vs transformers: max relative difference ${t.rel.toExponential(2)}`).toEqual([]);
    await exportHfModel(ck, path.join(out, name));
    const ort = await OrtCausalLm.open(path.join(out, name));
    try {
      const b = compare(await ort.logits(ids, pixels, prefix), expected, 1e-4);
      expect(b.bad, `onnxruntime: max relative difference ${b.rel.toExponential(2)}`).toEqual([]);
      // generation with the KV cache (prefill with the images, then decode steps) agrees across engines and with
      // the uncached recomputation
      const g = { maxNewTokens: 8, stopAtEos: false, images: pixels };
      const ref = await generateIds(tfjs, ids, g);
      expect((await generateIds(ort, ids, g)).ids).toEqual(ref.ids);
      expect((await generateIds(tfjs, ids, { ...g, useCache: false })).ids).toEqual(ref.ids);
    } finally {
      tfjs.dispose();
      await ort.dispose();
    }
  });
});
