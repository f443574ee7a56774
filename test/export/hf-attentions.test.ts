/**
 * Attention outputs in the export of a Hugging Face model (export --attentions): the prefill and decode graphs
 * return each decoder layer's attention weights, which match the checkpoint's on TensorFlow.js, for a whole
 * forward pass and for each generated token through the KV cache; an export without them says how to get them.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { checkModel, decodeModel } from '../../src/lib/export/index.js';
import { exportHfModel } from '../../src/lib/export/hf.js';
import { type CausalLm, TfjsCausalLm } from '../../src/lib/infer/causal.js';
import { OrtCausalLm } from '../../src/lib/infer/ort-causal.js';
import { loadHfCheckpoint } from '../../src/lib/model/arch/hf.js';
import { selectBackend } from '../../src/lib/model/backend.js';
import { tempDir } from '../helpers.js';

const REF = path.resolve('test/fixtures/reference');
const dir = tempDir('vlakit-hf-att-');

beforeAll(async () => {
  await selectBackend('wasm');
});

/** Rows of `steps` generated tokens (the prompt's last query, then each new token's), [step][layer][head][key]. */
async function rowsOf(lm: CausalLm, ids: number[], pixels: Float32Array | undefined, steps: number[]): Promise<number[][][][]> {
  const st = lm.start({ attentions: true });
  const out: number[][][][] = [];
  await st.prefill(ids, pixels);
  out.push(st.attentions!());
  for (const id of steps) {
    await st.next(id);
    out.push(st.attentions!());
  }
  st.dispose();
  return out;
}

describe.each(['idefics3-tiny', 'llama-tiny'])('%s export with --attentions', (name) => {
  it('graphs pass the structural check; the weights match the checkpoint\'s, whole and step by step with the cache', async () => {
    const inp = JSON.parse(readFileSync(path.join(REF, name, 'inputs.json'), 'utf8')) as { input_ids: number[]; pixel_values?: number[] };
    const pixels = inp.pixel_values ? Float32Array.from(inp.pixel_values) : undefined;
    const ck = loadHfCheckpoint(path.join(REF, name));
    const out = path.join(dir, name);
    await exportHfModel(ck, out, { attentions: true });
    const layers = ck.arch.cache(ck.config).layers;
    expect(JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8')).vlakit.export.attentions).toBe(true);
    for (const g of ['prefill.onnx', 'decode.onnx']) {
      const m = decodeModel(readFileSync(path.join(out, g)));
      expect(m.graph!.output!.filter((o) => o.name!.startsWith('attentions.')).length).toBe(layers);
      const r = checkModel(m, out);
      expect(r.problems).toEqual([]);
      // logits, present key/value, attentions per layer (the image-token merge leaves idefics3's shapes symbolic)
      expect(r.outputsChecked + r.outputsUnknown.length).toBe(1 + 3 * layers);
      if (name === 'llama-tiny') expect(r.outputsUnknown).toEqual([]);
    }
    const a = new TfjsCausalLm(ck);
    const b = await OrtCausalLm.open(out);
    const [wa, wb] = [await a.attentions(inp.input_ids, pixels), await b.attentions!(inp.input_ids, pixels)];
    expect([wb.heads, wb.positions]).toEqual([wa.heads, inp.input_ids.length]);
    let diff = 0;
    wa.layers.forEach((l, i) => l.forEach((x, j) => (diff = Math.max(diff, Math.abs(x - wb.layers[i][j])))));
    expect(diff).toBeLessThan(1e-5);
    const N = wb.positions;
    const row = Array.from(wb.layers[layers - 1].subarray((N - 1) * N, N * N)); // last layer, first head, last query
    expect(row.reduce((x, y) => x + y, 0)).toBeCloseTo(1, 5);
    const steps = [5, 9, 12];
    const [ra, rb] = [await rowsOf(a, inp.input_ids, pixels, steps), await rowsOf(b, inp.input_ids, pixels, steps)];
    expect(rb.map((s) => s[0][0].length)).toEqual(steps.reduce((acc, _, i) => [...acc, N + i + 1], [N])); // one key more per token
    let stepDiff = 0;
    ra.forEach((s, k) => s.forEach((l, i) => l.forEach((h, j) => h.forEach((x, m) => (stepDiff = Math.max(stepDiff, Math.abs(x - rb[k][i][j][m])))))));
    expect(stepDiff).toBeLessThan(1e-5);
    a.dispose();
    await b.dispose();
  }, 120_000);
});

describe('an export without --attentions', () => {
  it('has no attention maps and says how to get them', async () => {
    const ck = loadHfCheckpoint(path.join(REF, 'llama-tiny'));
    const out = path.join(dir, 'plain');
    await exportHfModel(ck, out);
    const b = await OrtCausalLm.open(out);
    expect(b.attentions).toBeUndefined();
    expect(() => b.start({ attentions: true })).toThrow(/export it again with --attentions/);
    await b.dispose();
  });
});
