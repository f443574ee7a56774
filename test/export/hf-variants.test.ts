/**
 * The fused-operator and int8 exports of Hugging Face architectures, derived from the same definitions as the
 * standard export: stories260K (a real Llama, head size 8: RotaryEmbedding + GroupQueryAttention) generates
 * llama2.c's 40 ids from its fused export; llama-tiny (head size 16: the rotary inside GroupQueryAttention) matches
 * the NumPy reference; Gemma 3's sliding windows fall back to standard operators; int8 (7-bit) exports quantize
 * every weight matmul and compute what their float export computes, up to the activations' rounding.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { decodeModel } from '../../src/lib/export/index.js';
import { exportHfModel } from '../../src/lib/export/hf.js';
import { TfjsCausalLm, generateIds } from '../../src/lib/infer/causal.js';
import { OrtCausalLm } from '../../src/lib/infer/ort-causal.js';
import { type HfCheckpoint, loadHfCheckpoint } from '../../src/lib/model/arch/hf.js';
import { quantizeColumns } from '../../src/lib/export/quantize.js';
import { selectBackend } from '../../src/lib/model/backend.js';
import { initCheckpoint } from '../../src/lib/model/arch/manage.js';
import { tempDir } from '../helpers.js';
import { TINY_IDEFICS3 } from '../model/tiny-idefics3.js';
import { STORIES, STORIES_IDS } from '../model/stories.js';

const REF = path.resolve('test/fixtures/reference');
const dir = tempDir('vlakit-hf-variants-');

beforeAll(async () => {
  await selectBackend('wasm');
});

const opTypes = (out: string, g: string) => new Set(decodeModel(readFileSync(path.join(out, g))).graph!.node!.map((n) => n.opType));

/** The reference fixture's inputs and the largest |logit difference| of `lm` from its expected logits, with the scale. */
async function againstReference(name: string, lm: OrtCausalLm): Promise<{ diff: number; scale: number }> {
  const inp = JSON.parse(readFileSync(path.join(REF, name, 'inputs.json'), 'utf8')) as { input_ids: number[]; pixel_values?: number[] };
  const { logits } = JSON.parse(readFileSync(path.join(REF, name, 'expected.json'), 'utf8')) as { logits: number[][] };
  const got = await lm.logits(inp.input_ids, inp.pixel_values ? Float32Array.from(inp.pixel_values) : undefined);
  const V = logits[0].length;
  let diff = 0;
  let scale = 0;
  logits.forEach((row, t) => row.forEach((v, j) => ((diff = Math.max(diff, Math.abs(got[t * V + j] - v))), (scale = Math.max(scale, Math.abs(v))))));
  return { diff, scale };
}

describe('fused operators (--ops onnxruntime) for Hugging Face models', () => {
  it('stories260K: the fused export generates llama2.c\'s 40 greedy ids', async () => {
    const ck = loadHfCheckpoint(STORIES);
    const out = path.join(dir, 'stories');
    const res = await exportHfModel(ck, out, { ops: 'onnxruntime' });
    expect(res.ops).toBe('onnxruntime');
    expect(JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8')).vlakit.export.ops).toBe('onnxruntime');
    const ops = opTypes(out, 'decode.onnx');
    expect(ops.has('GroupQueryAttention') && ops.has('RotaryEmbedding')).toBe(true); // head size 8: rotary apart
    const lm = await OrtCausalLm.open(out);
    expect((await generateIds(lm, [1], { maxNewTokens: 40, stopAtEos: false })).ids).toEqual(STORIES_IDS);
    await lm.dispose();
  }, 120_000);

  it('llama-tiny (head size 16: rotary inside GroupQueryAttention) matches the NumPy reference and the checkpoint\'s greedy ids', async () => {
    const ck = loadHfCheckpoint(path.join(REF, 'llama-tiny'));
    const out = path.join(dir, 'llama');
    expect((await exportHfModel(ck, out, { ops: 'onnxruntime' })).ops).toBe('onnxruntime');
    expect(opTypes(out, 'decode.onnx').has('RotaryEmbedding')).toBe(false);
    const lm = await OrtCausalLm.open(out);
    const { diff, scale } = await againstReference('llama-tiny', lm);
    expect(diff).toBeLessThan(1e-4 * scale);
    const tfjs = new TfjsCausalLm(ck);
    const prompt = [1, 7, 30, 12];
    expect((await generateIds(lm, prompt, { maxNewTokens: 12, stopAtEos: false })).ids).toEqual((await generateIds(tfjs, prompt, { maxNewTokens: 12, stopAtEos: false })).ids);
    tfjs.dispose();
    await lm.dispose();
  }, 120_000);

  it('a tiny Idefics3 (head size 8): prompts with image tiles and without (the decode graph, an empty past) as on the checkpoint', async () => {
    const src = path.join(dir, 'idefics3-src');
    await initCheckpoint(TINY_IDEFICS3, src, { seed: 5 });
    const ck = loadHfCheckpoint(src);
    const out = path.join(dir, 'idefics3-fused');
    expect((await exportHfModel(ck, out, { ops: 'onnxruntime' })).ops).toBe('onnxruntime');
    const [a, b] = [new TfjsCausalLm(ck), await OrtCausalLm.open(out)];
    const img = TINY_IDEFICS3.image_token_id;
    const pixels = Float32Array.from({ length: 2 * 3 * 32 * 32 }, (_, i) => Math.sin(i * 0.11));
    for (const [ids, px] of [[[1, 5, ...Array(4).fill(img), 9, ...Array(4).fill(img), 11, 12], pixels], [[1, 5, 9, 11, 12, 40], undefined]] as const) {
      const [x, y] = [await a.logits([...ids], px), await b.logits([...ids], px)];
      let diff = 0;
      x.forEach((v, i) => (diff = Math.max(diff, Math.abs(v - y[i]))));
      expect(diff).toBeLessThan(1e-4);
      const o = { maxNewTokens: 8, stopAtEos: false };
      expect((await generateIds(b, [...ids], { ...o, images: px })).ids).toEqual((await generateIds(a, [...ids], { ...o, images: px })).ids);
    }
    a.dispose();
    await b.dispose();
  }, 120_000);

  it('Gemma 3 (sliding windows, soft caps) falls back to standard operators and still matches', async () => {
    const ck = loadHfCheckpoint(path.join(REF, 'gemma3-text-tiny'));
    const out = path.join(dir, 'gemma');
    expect((await exportHfModel(ck, out, { ops: 'onnxruntime' })).ops).toBe('standard');
    expect(opTypes(out, 'decode.onnx').has('GroupQueryAttention')).toBe(false);
    const lm = await OrtCausalLm.open(out);
    const { diff, scale } = await againstReference('gemma3-text-tiny', lm);
    expect(diff).toBeLessThan(1e-4 * scale);
    await lm.dispose();
  }, 120_000);
});

/**
 * The checkpoint with every linear weight replaced by its 7-bit value (q * scale, quantizeColumns per output): the
 * int8 export then stores these weights exactly, and differs from the float export of the same weights only by the
 * run-time quantization of the activations (uint8 per tensor), which these tiny random models feel (measured:
 * llama-tiny 4.9%, idefics3-tiny 9.8% of the largest |logit|); a wrong transpose or scale would be off by O(1).
 */
function onGrid(ck: HfCheckpoint): HfCheckpoint {
  for (const [n, t] of ck.tensors) {
    if (t.shape.length < 2 || n.includes('embed') || n.includes('position')) continue;
    const o = t.shape[0];
    const i = t.data.length / o; // [out, in] (a convolution's as [out, c*kh*kw])
    const tr = new Float32Array(t.data.length);
    for (let r = 0; r < o; r++) for (let c = 0; c < i; c++) tr[c * o + r] = t.data[r * i + c];
    const { q, scale } = quantizeColumns(tr, i, o, 63);
    const out = new Float32Array(t.data.length);
    for (let r = 0; r < o; r++) for (let c = 0; c < i; c++) out[r * i + c] = q[c * o + r] * scale[r];
    ck.tensors.set(n, { shape: t.shape, data: out });
  }
  return ck;
}

describe('int8 (--quantize int8) for Hugging Face models', () => {
  it.each([['llama-tiny', 0.1], ['idefics3-tiny', 0.2]] as const)('%s: 7-bit weights stored exactly, the logits of the same weights in float within the activation rounding', async (name, tol) => {
    const ck = onGrid(loadHfCheckpoint(path.join(REF, name)));
    const [fp, q8] = [path.join(dir, `${name}-fp32`), path.join(dir, `${name}-int8`)];
    await exportHfModel(ck, fp);
    const res = await exportHfModel(ck, q8, { quantize: 'int8' });
    expect(res.quantization).toMatchObject({ method: 'int8', weight_range: '7-bit', weight_max: 63 });
    expect(JSON.parse(readFileSync(path.join(q8, 'config.json'), 'utf8')).vlakit.export.quantization.weight_max).toBe(63);
    const g32 = decodeModel(readFileSync(path.join(fp, 'prefill.onnx'))).graph!;
    const g8 = decodeModel(readFileSync(path.join(q8, 'prefill.onnx'))).graph!;
    const weights = new Set(g32.initializer!.map((t) => t.name));
    // every matmul of a model weight is quantized (the rotary embedding's constant signed permutation stays float)
    const floatMatMuls = g32.node!.filter((n) => n.opType === 'MatMul' && weights.has(n.input![1]) && !n.input![1].startsWith('rope.')).length;
    expect(g8.node!.filter((n) => n.opType === 'MatMulInteger')).toHaveLength(floatMatMuls);
    expect(g8.node!.filter((n) => n.opType === 'MatMul' && n.input![1].startsWith('rope.rotate_half')).length).toBeGreaterThan(0);
    const int8 = g8.initializer!.filter((t) => t.dataType === 3);
    expect(int8.map((t) => t.name)).toContain(name === 'llama-tiny' ? 'model.layers.0.self_attn.qkv.weight.int8' : 'model.text_model.layers.0.self_attn.qkv.weight.int8'); // q, k, v packed
    const [a, b] = [await OrtCausalLm.open(fp), await OrtCausalLm.open(q8)];
    const inp = JSON.parse(readFileSync(path.join(REF, name, 'inputs.json'), 'utf8')) as { input_ids: number[]; pixel_values?: number[] };
    const px = inp.pixel_values ? Float32Array.from(inp.pixel_values) : undefined;
    const [x, y] = [await a.logits(inp.input_ids, px), await b.logits(inp.input_ids, px)];
    let diff = 0;
    let scale = 0;
    x.forEach((v, i) => ((diff = Math.max(diff, Math.abs(v - y[i]))), (scale = Math.max(scale, Math.abs(v)))));
    expect(diff).toBeLessThan(tol * scale);
    expect(diff).toBeGreaterThan(1e-3 * scale); // the activations really are quantized
    await a.dispose();
    await b.dispose();
  }, 120_000);
});
