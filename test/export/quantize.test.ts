import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import fc from 'fast-check';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { TextCodec } from '../../src/lib/actions/index.js';
import { VlakitError } from '../../src/lib/errors.js';
import { checkModel, checkParity, decodeModel, encodeModel, exportModel, hostInt8, int8Path, parityCases, probeInt8 } from '../../src/lib/export/index.js';
import type { ModelProto, TensorProto } from '../../src/lib/export/onnx.js';
import { exportWeightRange, int8Quantization, int8RunWarning, quantizeColumns } from '../../src/lib/export/quantize.js';
import { OrtRunner, generate, loadOrt, openBuiltinModel } from '../../src/lib/infer/index.js';
import { selectBackend } from '../../src/lib/model/backend.js';
import { writeOutputDir } from '../../src/lib/io/outputs.js';
import { writeModelFiles } from '../../src/lib/model/checkpoint.js';
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
const q8 = path.join(dir, 'int8'); // the default: 7-bit weights
const q8full = path.join(dir, 'int8-full'); // full-range weights, exported as if on a CPU with VNNI

/** /proc/cpuinfo of one logical CPU with these flags (as Linux prints it on x86-64). */
const cpuinfo = (flags: string) => `processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: test CPU\nflags\t\t: fpu vme de pse tsc msr pae mce cx8 sse sse2 ssse3 sse4_1 sse4_2 ${flags}\nbogomips\t: 4000.00\n\nprocessor\t: 1\nflags\t\t: fpu\n`;
const AVX2 = int8Path(cpuinfo('avx avx2 fma bmi2'), 'x64'); // AMD EPYC Zen 2, Intel Haswell
const VNNI = int8Path(cpuinfo('avx avx2 avx512f avx512bw avx512vl avx512_vnni'), 'x64'); // Zen 4, Ice Lake

/** Every int8 weight of a graph, read from the export's data file. */
function int8Weights(exportDir: string, graph: string): Int8Array[] {
  const data = readFileSync(path.join(exportDir, 'model.onnx_data'));
  const m: ModelProto = decodeModel(readFileSync(path.join(exportDir, graph)));
  return m.graph!.initializer!.filter((t) => t.dataType === 3).map((t) => {
    const kv = Object.fromEntries(t.externalData!.map((e) => [e.key, e.value]));
    return new Int8Array(data.buffer, data.byteOffset + Number(kv.offset), Number(kv.length));
  });
}
const peak = (ws: Int8Array[]) => Math.max(...ws.map((w) => w.reduce((a, v) => Math.max(a, Math.abs(v)), 0)));

beforeAll(async () => {
  await selectBackend('wasm');
  const tok = await buildTokenizer(['grasp the red block', 'move the gripper left 0.012', 'Subtask: pick up the carrot and put it on the plate'], 160);
  const m = VlaModel.init({ ...preset('tiny', tok.vocabSize, 2), initializer_range: 0.05 }, 11);
  m.addLora(4, 8, ['q', 'v', 'up'], 11);
  let s = 0;
  for (const [n, v] of m.params) if (n.includes('lora_B')) v.assign(tf.randomNormal(v.shape, 0, 0.05, 'float32', s++));
  await writeOutputDir(ck, (d) => writeModelFiles(d, m, tok.json), { overwrite: true });
  m.dispose();
  await exportModel(ck, fp);
  await exportModel(ck, q8, { quantize: 'int8', attentions: true });
  await exportModel(ck, q8full, { quantize: 'int8', weightRange: 'full', cpu: VNNI });
}, 120_000);

describe('the int8 path of a CPU', () => {
  it('reads /proc/cpuinfo: x86-64 without VNNI or AMX adds uint8 x int8 pairs in 16 bits (saturates), VNNI, AMX and arm64 in 32', () => {
    const path8 = (flags: string) => int8Path(cpuinfo(flags), 'x64');
    expect(AVX2).toMatchObject({ kernel: 'avx2', saturates: true });
    expect(AVX2.description).toBe('x86-64 with AVX2, without VNNI (uint8 x int8 products added in pairs in 16 bits, with saturation)');
    expect(path8('avx avx2 avx512f avx512dq avx512cd avx512bw avx512vl')).toMatchObject({ kernel: 'avx512', saturates: true }); // Skylake-X
    expect(VNNI).toMatchObject({ kernel: 'avx512-vnni', saturates: false });
    expect(path8('avx avx2 avx_vnni')).toMatchObject({ kernel: 'avx-vnni', saturates: false }); // Alder Lake
    expect(path8('avx2 avx512bw avx512_vnni amx_bf16 amx_tile amx_int8')).toMatchObject({ kernel: 'amx', saturates: false }); // Sapphire Rapids
    expect(path8('avx')).toMatchObject({ kernel: 'sse', saturates: true });
    expect(path8('avx2 avx_vnni_int8 avx512_vnnix')).toMatchObject({ kernel: 'avx2', saturates: true }); // whole flags only
    expect(int8Path(undefined, 'x64')).toMatchObject({ kernel: 'unknown', saturates: undefined });
    expect(int8Path('processor\t: 0\n', 'x64')).toMatchObject({ kernel: 'unknown', saturates: undefined });
    expect(int8Path('Features\t: fp asimd asimddp\n', 'arm64')).toMatchObject({ kernel: 'arm64', saturates: false });
    expect(int8Path(undefined, 'riscv64')).toMatchObject({ kernel: 'unknown', saturates: undefined });
  });

  it("measures onnxruntime here: 7-bit weights multiply exactly on every CPU; full range exactly where it does not saturate, else with each pair clipped to 32767", async () => {
    const ort = await loadOrt();
    const seven = await probeInt8(ort, 63);
    expect(seven).toMatchObject({ weightMax: 63, exact: true });
    expect(seven.got).toBeCloseTo(seven.expected, 3);
    const full = await probeInt8(ort, 127);
    const host = await hostInt8(ort);
    expect(host.measured).toBe(true);
    expect(host.saturates).toBe(!full.exact);
    // the signature of a 16-bit pair sum: K/2 pairs of 32767 instead of 2 x 255 x 127, times the scales 1/255 x 1/127
    if (!full.exact) expect(full.got).toBeCloseTo((full.expected / 2) * (32767 / (255 * 127)), 2);
  });

  it('the quantization entry: 7-bit by default on any CPU; full range only where products add in 32 bits', () => {
    for (const cpu of [AVX2, VNNI, int8Path(undefined, 'x64'), undefined]) expect(int8Quantization('7-bit', cpu)).toMatchObject({ method: 'int8', weight_range: '7-bit', weight_max: 63 });
    expect(int8Quantization('7-bit').reason).toMatch(/correct on every CPU.*2 x 255 x 63 = 32130 fits/);
    expect(int8Quantization('7-bit').exported_on).toBeUndefined();
    const full = int8Quantization('full', VNNI);
    expect(full).toMatchObject({ weight_range: 'full', weight_max: 127, exported_on: { int8_kernel: 'avx512-vnni', saturates: false } });
    expect(full.reason).toMatch(/--full-range.*AVX2, AVX-512 without VNNI.*64770 > 32767/);
    const refused = (cpu: ReturnType<typeof int8Path>) => {
      try {
        int8Quantization('full', cpu);
      } catch (err) {
        expect(err).toBeInstanceOf(VlakitError);
        expect((err as VlakitError).code).toBe('E_USAGE');
        return (err as Error).message;
      }
      throw new Error('not refused');
    };
    expect(refused(AVX2)).toMatch(/--full-range: this CPU \(x86-64 with AVX2, without VNNI .*\) saturates on full-range int8 weights.*Leave out --full-range: 7-bit weights are correct on every CPU/);
    expect(refused(int8Path(undefined, 'x64'))).toMatch(/--full-range: cannot tell whether this CPU/);
  });

  it('a runner warns when an export has full-range weights and the CPU saturates on them (older exports too)', async () => {
    expect(exportWeightRange('none')).toBeUndefined();
    expect(exportWeightRange('int8')).toBe('full'); // older exports
    expect(exportWeightRange('int8-reduced-range')).toBe('7-bit');
    expect(exportWeightRange(int8Quantization('7-bit'))).toBe('7-bit');
    expect(exportWeightRange({ method: 'int8' })).toBe('full');
    expect(int8RunWarning('full', VNNI, 'x')).toBeUndefined();
    expect(int8RunWarning('7-bit', AVX2, 'x')).toBeUndefined();
    expect(int8RunWarning('full', AVX2, 'runs/x')).toMatch(/^runs\/x has full-range int8 weights .* this CPU \(x86-64 with AVX2, without VNNI .*\) saturates on them: its logits can be far off .*export it again without --full-range/);
    const warnings: string[] = [];
    const open = async (d: string, cpu: ReturnType<typeof int8Path>) => (await OrtRunner.open(d, { cpu, onWarning: (m) => warnings.push(m) })).dispose();
    await open(q8full, AVX2);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/int8-full has full-range int8 weights/);
    await open(q8full, VNNI);
    await open(q8, AVX2);
    expect(warnings).toHaveLength(1);
    // without onWarning: a warning line on stderr
    const written: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((chunk: string) => written.push(String(chunk)) > 0) as typeof process.stderr.write;
    try {
      await (await OrtRunner.open(q8full, { cpu: AVX2 })).dispose();
    } finally {
      process.stderr.write = write;
    }
    expect(written.join('')).toMatch(/^vlakit: warning: .*int8-full has full-range int8 weights/);
  });
});

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
    expect(JSON.parse(readFileSync(path.join(q8, 'config.json'), 'utf8')).vlakit.export.quantization).toMatchObject({ method: 'int8', weight_range: '7-bit', weight_max: 63 });
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

  it('by default every int8 weight lies within +-63 (7-bit: no CPU saturates); full range reaches 127', () => {
    for (const g of ['prefill.onnx', 'decode.onnx', 'prefill_attentions.onnx', 'decode_attentions.onnx']) {
      const ws = int8Weights(q8, g);
      expect(ws.length).toBeGreaterThan(0);
      expect(peak(ws)).toBe(63);
    }
    expect(peak(int8Weights(q8full, 'decode.onnx'))).toBe(127);
    const q = JSON.parse(readFileSync(path.join(q8full, 'config.json'), 'utf8')).vlakit.export.quantization;
    expect(q).toMatchObject({ method: 'int8', weight_range: 'full', weight_max: 127, exported_on: { int8_kernel: 'avx512-vnni', saturates: false } });
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
    const a = await openBuiltinModel(ck);
    const cases = parityCases(32, 2, 5, ['grasp the red block', 'move the gripper left', 'the plate']);
    const exact = await openBuiltinModel(fp);
    const rough = await openBuiltinModel(q8);
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
    const a = await openBuiltinModel(path.join(dir, 'sft'));
    const b = await openBuiltinModel(path.join(dir, 'sft-int8'));
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

  it('the command: 7-bit weights by default, parity within 5% of the logit scale on every CPU; a tolerance it misses refuses the export', async () => {
    const BIN = path.resolve('bin/run.js');
    const run = (args: string[]) => execa('node', [BIN, ...args], { reject: false, env: { NO_COLOR: '1' } });
    const config = (d: string) => JSON.parse(readFileSync(path.join(d, 'config.json'), 'utf8')).vlakit.export;
    const to = path.join(dir, 'cli-int8');
    const r = await run(['export', ck, '-o', to, '--quantize', 'int8']);
    expect(r.stderr).toMatch(/onnxruntime operators, int8 weights \(7-bit, -63\.\.63: correct on every CPU\) -> /);
    expect(r.stderr).toMatch(/int8 parity with the checkpoint \(wasm vs onnxruntime cpu, 3 cases\): max \|logit diff\| \S+ \(\d+\.\d+% of the largest \|logit\|\), greedy tokens with the cache identical in \d of 3 cases/);
    expect(r.exitCode).toBe(0); // what failed on AVX2 with full-range weights
    expect(config(to).quantization).toMatchObject({ method: 'int8', weight_range: '7-bit', weight_max: 63 });
    expect(peak(int8Weights(to, 'prefill.onnx'))).toBe(63);
    const bad = await run(['export', ck, '-o', path.join(dir, 'cli-int8-strict'), '--quantize', 'int8', '--tolerance', '1e-4']);
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr).toMatch(/E_ONNX .*does not match its checkpoint, so it was not written: max \|logit diff\| \S+ \(tolerance 1e-4\); int8 with 7-bit weights on this CPU: \S+/);
    expect(() => statSync(path.join(dir, 'cli-int8-strict'))).toThrow();
    // --full-range: allowed where onnxruntime adds int8 products in 32 bits (measured here), refused elsewhere
    const host = await hostInt8(await loadOrt());
    const full = path.join(dir, 'cli-int8-full');
    const rf = await run(['export', ck, '-o', full, '--quantize', 'int8', '--full-range', '--no-parity']);
    if (host.saturates === false) {
      expect(rf.exitCode).toBe(0);
      expect(rf.stderr).toMatch(/int8 weights \(full range, -127\.\.127: for CPUs with VNNI, AMX or arm64 only\) -> /);
      expect(config(full).quantization).toMatchObject({ weight_range: 'full', weight_max: 127, exported_on: { saturates: false, measured: true } });
      expect(peak(int8Weights(full, 'decode.onnx'))).toBe(127);
    } else {
      expect(rf.exitCode).toBe(2);
      expect(rf.stderr).toMatch(/E_USAGE --full-range: (this CPU .* saturates on full-range int8 weights|cannot tell whether this CPU)/);
      expect(() => statSync(full)).toThrow();
    }
    // --reduce-range, the old way to ask for 7-bit weights, still works
    const r7 = await run(['export', ck, '-o', path.join(dir, 'cli-int7'), '--quantize', 'int8', '--reduce-range', '--no-parity']);
    expect(r7.exitCode).toBe(0);
    expect(config(path.join(dir, 'cli-int7')).quantization).toMatchObject({ weight_range: '7-bit', weight_max: 63 });
    const usage = async (args: string[], message: RegExp) => {
      const u = await run(['export', ck, '-o', path.join(dir, 'x'), ...args]);
      expect(u.exitCode).toBe(2);
      expect(u.stderr).toMatch(message);
    };
    await usage(['--reduce-range'], /--reduce-range goes with --quantize int8/);
    await usage(['--full-range'], /--full-range goes with --quantize int8/);
    await usage(['--quantize', 'int8', '--full-range', '--reduce-range'], /--full-range and --reduce-range \(7-bit weights\) contradict each other/);
    await usage(['--tolerance', 'abc%'], /--tolerance must be a number >= 0 or a percentage such as 5%, got "abc%"/);
  }, 120_000);
});
