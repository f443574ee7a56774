/**
 * What onnxruntime's int8 matmul does on this CPU, measured: the exports' own pattern (DynamicQuantizeLinear ->
 * MatMulInteger -> Cast -> Mul, fused into DynamicQuantizeMatMul) on inputs that saturate a 16-bit pair sum if
 * the kernel has one (every activation 255, every weight of a column +-qmax: a pair sums to +-2 x 255 x qmax).
 * The CPU flags (util/cpu.ts) name the kernel; this says whether it saturates, also where the flags mislead (an
 * emulator shows its host's /proc/cpuinfo) or a newer onnxruntime changes its kernels.
 */
import type * as OrtTypes from 'onnxruntime-node';
import { GraphBuilder, WeightStore, encodeModel, onnx } from '../export/onnx.js';
import { int8MatMul } from '../export/quantize.js';
import { type Int8Path, cpuinfoInt8Path } from '../util/cpu.js';

type Ort = typeof OrtTypes;

export interface Int8Probe {
  /** The weights' |q|: 127 (full range) or 63 (7-bit). */
  weightMax: number;
  /** Every output should be +-K (the weights are +-1 with scale 1/weightMax, the activations 1). */
  expected: number;
  /** The output furthest from +-expected. */
  got: number;
  exact: boolean;
}

const K = 128;
const N = 32;

/** The one-matmul model: x [M, K] float -> y [M, N], weights +1 in even columns and -1 in odd ones, |q| = weightMax. */
function probeModel(weightMax: number): Uint8Array {
  const store = new WeightStore('unused');
  const b = new GraphBuilder('int8_probe', store);
  const x = b.input('x', 'float', ['m', K]);
  const q = Int8Array.from({ length: K * N }, (_, i) => (i % N) % 2 === 0 ? weightMax : -weightMax);
  const y = int8MatMul(b, x, b.weight('w.int8', q, [K, N]), b.weight('w.scale', new Float32Array(N).fill(1 / weightMax), [N]));
  b.output(y, 'y', 'float', ['m', N]);
  const m = b.model('vlakit int8 saturation probe');
  for (const t of m.graph!.initializer!) {
    const { data } = store.entries.get(t.name!)!; // inline instead of external: the model is given as bytes
    t.rawData = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    t.externalData = [];
    t.dataLocation = onnx.TensorProto.DataLocation.DEFAULT;
  }
  return encodeModel(m);
}

/**
 * Runs the probe with weights of |q| = weightMax (one row, as a decode step, and five, as a prefill).
 * @example (await probeInt8(ort, 127)).exact // false on AVX2 without VNNI
 */
export async function probeInt8(ort: Ort, weightMax: number): Promise<Int8Probe> {
  const session = await ort.InferenceSession.create(probeModel(weightMax), { graphOptimizationLevel: 'all', intraOpNumThreads: 1, logSeverityLevel: 3 });
  try {
    let got = K;
    for (const M of [1, 5]) {
      const out = await session.run({ x: new ort.Tensor('float32', new Float32Array(M * K).fill(1), [M, K]) });
      const y = out.y.data as Float32Array;
      for (let i = 0; i < y.length; i++) {
        const v = (i % N) % 2 === 0 ? y[i] : -y[i];
        if (Math.abs(v - K) > Math.abs(got - K)) got = v;
      }
    }
    return { weightMax, expected: K, got, exact: Math.abs(got - K) <= 1e-3 * K };
  } finally {
    await session.release();
  }
}

let host: Promise<Int8Path> | undefined;

/**
 * This machine's int8 path: the kernel named by /proc/cpuinfo, whether it saturates measured by probeInt8 with
 * full-range weights (once per process).
 */
export function hostInt8(ort: Ort): Promise<Int8Path> {
  host ??= (async () => {
    const flags = cpuinfoInt8Path();
    let saturates: boolean;
    try {
      saturates = !(await probeInt8(ort, 127)).exact;
    } catch {
      return flags; // the flags alone
    }
    const agrees = flags.saturates === saturates;
    const measured = saturates ? 'onnxruntime adds uint8 x int8 products in 16 bits here, measured' : 'onnxruntime adds uint8 x int8 products in 32 bits here, measured';
    return { ...flags, saturates, measured: true, description: agrees ? flags.description : `${flags.description.replace(/ \(.*\)$/, '')}, but ${measured}` };
  })();
  return host;
}
