import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import fc from 'fast-check';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { TextCodec } from '../../src/lib/actions/index.js';
import { checkModel, checkParity, decodeModel, encodeModel, exportModel, parityCases } from '../../src/lib/export/index.js';
import type { TensorProto } from '../../src/lib/export/onnx.js';
import { quantizeColumns } from '../../src/lib/export/quantize.js';
import { generate, openModel } from '../../src/lib/infer/index.js';
import { selectBackend } from '../../src/lib/model/backend.js';
import { writeDirAtomic, writeModelFiles } from '../../src/lib/model/checkpoint.js';
import { preset } from '../../src/lib/model/config.js';
import { VlaModel } from '../../src/lib/model/model.js';
import { buildTokenizer } from '../../src/lib/model/tokenizer.js';
import { prepare } from '../../src/lib/train/data.js';
import { trainSft } from '../../src/lib/train/sft.js';
import { tempDir } from '../helpers.js';
import { toyExamples } from '../model/examples.js';

const dir = tempDir();
const ck = path.join(dir, 'ck'); // a random 2-camera GQA model with nonzero LoRA adapters
const fp = path.join(dir, 'fp32');
const q8 = path.join(dir, 'int8');

beforeAll(async () => {
  await selectBackend('wasm');
  const tok = await buildTokenizer(['grasp the red block', 'move the gripper left 0.012', 'Subtask: pick up the carrot and put it on the plate'], 160);
  const m = VlaModel.init({ ...preset('tiny', tok.vocabSize, 2), initializer_range: 0.05 }, 11);
  m.addLora(4, 8, ['q', 'v', 'up'], 11);
  let s = 0;
  for (const [n, v] of m.params) if (n.includes('lora_B')) v.assign(tf.randomNormal(v.shape, 0, 0.05, 'float32', s++));
  await writeDirAtomic(ck, (d) => writeModelFiles(d, m, tok.json));
  m.dispose();
  await exportModel(ck, fp);
  await exportModel(ck, q8, { quantize: 'int8', attentions: true });
}, 120_000);

describe('quantizeColumns', () => {
  it('keeps every weight within half a step of its column scale; the largest |w| of a column is +-127 (or 63) steps', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 7 }), fc.integer({ min: 0, max: 1e6 }), fc.constantFrom(127, 63), (K, N, seed, qmax) => {
        let x = seed;
        const w = Float32Array.from({ length: K * N }, (_, i) => (i % 5 === 4 && seed % 2 ? 0 : (((x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1) * 3));
        const { q, scale } = quantizeColumns(w, K, N, qmax);
        for (let n = 0; n < N; n++) {
          let peak = 0;
          for (let k = 0; k < K; k++) {
            expect(Math.abs(w[k * N + n] - q[k * N + n] * scale[n])).toBeLessThanOrEqual(scale[n] / 2 + 1e-6);
            peak = Math.max(peak, Math.abs(q[k * N + n]));
          }
          const colMax = Math.max(...Array.from({ length: K }, (_, k) => Math.abs(w[k * N + n])));
          expect(peak).toBe(colMax > 0 ? qmax : 0);
        }
      }),
      { numRuns: 60 },
    );
    expect(() => quantizeColumns(new Float32Array(5), 2, 3)).toThrow(/not \[2, 3\]/);
  });
});

describe('vlakit export --quantize int8', () => {
  it('stores every matmul weight as int8 (a byte per float32 weight of the plain export) and passes the structural check', () => {
    const elements = (t: TensorProto) => (t.dims ?? []).map(Number).reduce((a, b) => a * b, 1);
    const g32 = decodeModel(readFileSync(path.join(fp, 'decode.onnx'))).graph!;
    const g8 = decodeModel(readFileSync(path.join(q8, 'decode.onnx'))).graph!;
    const matmulWeights = new Set(g32.node!.filter((n) => n.opType === 'MatMul').map((n) => n.input![1]));
    const fpCount = g32.initializer!.filter((t) => matmulWeights.has(t.name!)).reduce((a, t) => a + elements(t), 0);
    const int8 = g8.initializer!.filter((t) => t.dataType === 3);
    expect(fpCount).toBeGreaterThan(0);
    expect(int8.reduce((a, t) => a + elements(t), 0)).toBe(fpCount);
    // one MatMulInteger for every matmul of a weight, each over an int8 weight
    expect(g8.node!.filter((n) => n.opType === 'MatMulInteger').map((n) => n.input![1]).sort()).toEqual(int8.map((t) => t.name).sort());
    expect(g8.node!.filter((n) => n.opType === 'MatMulInteger')).toHaveLength(matmulWeights.size);
    expect(JSON.parse(readFileSync(path.join(q8, 'config.json'), 'utf8')).vlakit.export.quantization).toBe('int8');
    for (const [f, outputs] of [['prefill.onnx', 5], ['decode.onnx', 9], ['prefill_attentions.onnx', 7], ['decode_attentions.onnx', 11]] as const) {
      const model = decodeModel(readFileSync(path.join(q8, f)));
      const ops = new Set(model.graph!.node!.map((n) => n.opType));
      expect(ops.has('MatMulInteger') && ops.has('DynamicQuantizeLinear')).toBe(true);
      const r = checkModel(model, q8);
      expect(r.problems).toEqual([]);
      expect(r.outputsUnknown).toEqual([]);
      expect(r.outputsChecked).toBe(outputs);
    }
    const decode = decodeModel(readFileSync(path.join(q8, 'decode.onnx')));
    const names = decode.graph!.initializer!.filter((t) => t.dataType === 3).map((t) => t.name);
    expect(names).toContain('model.layers.0.self_attn.qkv.weight.int8');
    expect(names).toContain('model.layers.1.mlp.down_proj.weight.int8');
  });

  it('the structural check catches a broken int8 graph: a weight of the wrong size, a float operand, a wrong rotary cache', () => {
    const problems = (edit: (g: NonNullable<ReturnType<typeof decodeModel>['graph']>) => void) => {
      const m = decodeModel(readFileSync(path.join(q8, 'decode.onnx')));
      edit(m.graph!);
      return checkModel(decodeModel(encodeModel(m)), q8).problems.join('\n');
    };
    const find = (g: NonNullable<ReturnType<typeof decodeModel>['graph']>, name: string) => g.initializer!.find((t) => t.name === name)!;
    expect(problems((g) => {
      const w = find(g, 'model.layers.1.mlp.down_proj.weight.int8');
      w.dims = [40, 32];
      w.externalData!.find((e) => e.key === 'length')!.value = String(40 * 32);
    })).toMatch(/MatMulInteger inner dimensions differ: 88 vs 40/);
    expect(problems((g) => {
      const w = find(g, 'model.layers.0.self_attn.qkv.weight.int8');
      w.dataType = 1;
      w.externalData!.find((e) => e.key === 'length')!.value = String(Number(w.dims![0]) * Number(w.dims![1]) * 4);
    })).toMatch(/MatMulInteger takes 8-bit integer operands/);
    expect(problems((g) => {
      for (const name of ['rope.cos_cache', 'rope.sin_cache']) {
        const c = find(g, name);
        c.dims = [Number(c.dims![0]), 2];
        c.externalData!.find((e) => e.key === 'length')!.value = String(Number(c.dims![0]) * 2 * 4);
      }
    })).toMatch(/RotaryEmbedding: width 32 is not num_heads 4 x twice the cos cache width 2/);
    expect(problems((g) => {
      const c = find(g, 'rope.sin_cache');
      c.dims = [Number(c.dims![0]) / 2, Number(c.dims![1])];
      c.externalData!.find((e) => e.key === 'length')!.value = String(Number(c.dims![0]) * Number(c.dims![1]) * 4);
    })).toMatch(/RotaryEmbedding: the sin and cos caches differ in shape/);
    expect(problems((g) => {
      g.node!.find((n) => n.opType === 'RotaryEmbedding')!.input![1] = '';
    })).toMatch(/RotaryEmbedding without position_ids/);
    expect(problems((g) => {
      g.node!.find((n) => n.opType === 'GroupQueryAttention')!.input![1] = '';
    })).toMatch(/GroupQueryAttention: a value without a key/);
  });

  it('logits within a few percent of the checkpoint scale, and much further off than the float32 export', async () => {
    const a = await openModel(ck);
    const cases = parityCases(32, 2, 5, ['grasp the red block', 'move the gripper left', 'the plate']);
    const exact = await openModel(fp);
    const rough = await openModel(q8);
    const r32 = await checkParity(a, exact, cases, 8);
    const r8 = await checkParity(a, rough, cases, 8);
    expect(r8.maxAbsDiff).toBeLessThanOrEqual(0.05 * r8.maxAbsLogit);
    expect(r8.maxAbsDiff).toBeGreaterThan(10 * r32.maxAbsDiff); // the weights really are quantized
    expect(r8.cases).toBe(3);
    await Promise.all([a.dispose(), exact.dispose(), rough.dispose()]);
  });

  it('a trained checkpoint: the int8 export says the same target text', async () => {
    const examples = await toyExamples();
    const base = { preset: 'tiny' as const, vocabSize: 128, batchSize: 2, lr: 1e-2, warmup: 0, seed: 3, codec: new TextCodec(3), clip: 0 };
    await trainSft({ ...base, examples: examples.slice(0, 2), outDir: path.join(dir, 'sft'), steps: 100 });
    await exportModel(path.join(dir, 'sft'), path.join(dir, 'sft-int8'), { quantize: 'int8', attentions: true });
    const a = await openModel(path.join(dir, 'sft'));
    const b = await openModel(path.join(dir, 'sft-int8'));
    const [item] = await prepare(examples.slice(0, 1), a.tokenizer, { cameras: 1, imageSize: 32, maxTokens: 200 });
    const ga = await generate(a, item.pixels, 'Subtask: grasp the red block', { maxNewTokens: 40 });
    const gb = await generate(b, item.pixels, 'Subtask: grasp the red block', { maxNewTokens: 40 });
    expect(gb.text).toBe(ga.text);
    expect(gb.text).toBe('the red block is ahead\n[[0.012, -0.004, 0.000, 1]]');
    // the attention pair (standard operators) computes the same quantized model: same words, rows that are distributions
    const gc = await generate(b, item.pixels, 'Subtask: grasp the red block', { maxNewTokens: 40, attentions: true });
    expect(gc.text).toBe(gb.text);
    const row = gc.attentions![0][0][0];
    expect(row.reduce((x, y) => x + y, 0)).toBeCloseTo(1, 4);
    await Promise.all([a.dispose(), b.dispose()]);
  }, 120_000);

  it('the command: reports int8 parity relative to the logit scale; a tolerance it misses refuses the export', async () => {
    const BIN = path.resolve('bin/run.js');
    const run = (args: string[]) => execa('node', [BIN, ...args], { reject: false, env: { NO_COLOR: '1' } });
    const to = path.join(dir, 'cli-int8');
    const r = await run(['export', ck, '-o', to, '--quantize', 'int8']);
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toMatch(/onnxruntime operators, int8 weights -> /);
    expect(r.stderr).toMatch(/int8 parity with the checkpoint \(wasm vs onnxruntime cpu, 3 cases\): max \|logit diff\| \S+ \(\d+\.\d+% of the largest \|logit\|\), greedy tokens with the cache identical in \d of 3 cases/);
    const bad = await run(['export', ck, '-o', path.join(dir, 'cli-int8-strict'), '--quantize', 'int8', '--tolerance', '1e-4']);
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr).toMatch(/E_ONNX .*does not match its checkpoint, so it was not written: max \|logit diff\| \S+ \(tolerance 1e-4\)/);
    expect(() => statSync(path.join(dir, 'cli-int8-strict'))).toThrow();
    const r7 = await run(['export', ck, '-o', path.join(dir, 'cli-int7'), '--quantize', 'int8', '--reduce-range', '--no-parity']);
    expect(r7.stderr).toMatch(/int8 weights \(7-bit range\) -> /);
    expect(JSON.parse(readFileSync(path.join(dir, 'cli-int7', 'config.json'), 'utf8')).vlakit.export.quantization).toBe('int8-reduced-range');
    const g7 = decodeModel(readFileSync(path.join(dir, 'cli-int7', 'decode.onnx'))).graph!;
    const w7 = g7.initializer!.find((t) => t.name === 'model.layers.0.mlp.gate_up.weight.int8')!;
    const kv = Object.fromEntries(w7.externalData!.map((e) => [e.key, e.value]));
    const bytes = new Int8Array(readFileSync(path.join(dir, 'cli-int7', 'model.onnx_data')).subarray(Number(kv.offset), Number(kv.offset) + Number(kv.length)));
    expect(Math.max(...bytes.map(Math.abs))).toBe(63);
    expect((await run(['export', ck, '-o', path.join(dir, 'x'), '--reduce-range'])).stderr).toMatch(/--reduce-range goes with --quantize int8/);
    expect((await run(['export', ck, '-o', path.join(dir, 'x'), '--tolerance', 'abc%'])).stderr).toMatch(/--tolerance must be a number >= 0 or a percentage such as 5%, got "abc%"/);
  }, 120_000);
});
