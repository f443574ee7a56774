/**
 * Weight quantization for exports: symmetric int8 per output column (scale = max |w| / qmax over the column, no
 * zero point), as onnxruntime's dynamic quantization expects for MatMulInteger weights. Activations are quantized
 * at run time (DynamicQuantizeLinear: uint8, one scale per tensor).
 *
 * The weight range: x86-64 CPUs without VNNI or AMX (AVX2, AVX-512 without VNNI) add uint8 x int8 products in pairs
 * in 16 bits with saturation (see util/cpu.ts): 2 x 255 x 127 = 64770 overflows there, 2 x 255 x 63 = 32130 does
 * not. So exports take 7-bit weights (qmax 63) by default, correct on every CPU: an export is often built on one
 * machine and run on another. Full-range weights (qmax 127, half the rounding error) are for CPUs that add in 32
 * bits, and only when asked for.
 */
import { VlakitError } from '../errors.js';
import type { Int8Path } from '../util/cpu.js';
import type { GraphBuilder } from './onnx.js';

/** The largest |q| of each weight range. */
export const WEIGHT_MAX = { '7-bit': 63, full: 127 } as const;
export type WeightRange = keyof typeof WEIGHT_MAX;

/** Quantizes w [K, N] (row-major) column by column: q [K, N] int8 in [-qmax, qmax] and scale [N], w ~= q * scale. */
export function quantizeColumns(w: Float32Array, K: number, N: number, qmax = 127): { q: Int8Array; scale: Float32Array } {
  if (w.length !== K * N) throw new Error(`a weight of ${w.length} values is not [${K}, ${N}]`);
  const scale = new Float32Array(N);
  for (let k = 0; k < K; k++) {
    for (let n = 0; n < N; n++) scale[n] = Math.max(scale[n], Math.abs(w[k * N + n]));
  }
  for (let n = 0; n < N; n++) scale[n] = scale[n] > 0 ? scale[n] / qmax : 1; // an all-zero column quantizes to zeros
  const q = new Int8Array(K * N);
  for (let k = 0; k < K; k++) {
    for (let n = 0; n < N; n++) q[k * N + n] = Math.max(-qmax, Math.min(qmax, Math.round(w[k * N + n] / scale[n])));
  }
  return { q, scale };
}

/**
 * x [.., K] times the int8 weight `q` [K, N] with column scales `scale` [N], the activations quantized at run time:
 * DynamicQuantizeLinear(x) -> MatMulInteger -> Cast -> Mul, which onnxruntime fuses into DynamicQuantizeMatMul.
 */
export function int8MatMul(b: GraphBuilder, x: string, q: string, scale: string): string {
  const [xq, xs, xz] = b.op('DynamicQuantizeLinear', [x], {}, 3); // uint8 [.., K], scale and zero point scalars
  const acc = b.o('Cast', [b.o('MatMulInteger', [xq, q, xz])], { to: 1 }); // int32 [.., N] -> float
  return b.o('Mul', [acc, b.o('Mul', [xs, scale])]); // x scale * column scales [N]
}

/** config.json `vlakit.export.quantization` of an int8 export: what was quantized how, the weight range and why. */
export interface Int8Quantization {
  method: 'int8';
  weights: string;
  activations: string;
  weight_range: WeightRange;
  /** Every int8 weight lies in [-weight_max, weight_max]. */
  weight_max: number;
  reason: string;
  /** With full-range weights: the CPU that allowed them (it exported and ran the parity check). */
  exported_on?: { cpu: string; arch: string; int8_kernel: Int8Path['kernel']; saturates: boolean | null; measured: boolean };
}

/**
 * Why full-range weights cannot be exported on `cpu` (undefined: they can): only where uint8 x int8 products are
 * known to add in 32 bits.
 */
export function fullRangeProblem(cpu: Int8Path): string | undefined {
  if (cpu.saturates === false) return undefined;
  const what = cpu.saturates ? `this CPU (${cpu.description}) saturates on full-range int8 weights (two 255 x 127 products overflow 16 bits), so onnxruntime would compute wrong logits here` : `cannot tell whether this CPU (${cpu.description}) adds int8 products in 32 bits`;
  return `--full-range: ${what}; full-range weights need x86-64 with AVX-512 VNNI, AVX-VNNI or AMX, or arm64. Leave out --full-range: 7-bit weights are correct on every CPU`;
}

/**
 * The quantization entry of an int8 export with weights in `range`; full range only where `cpu` adds int8 products
 * in 32 bits (E_USAGE otherwise).
 * @example int8Quantization('7-bit').weight_max // 63
 */
export function int8Quantization(range: WeightRange, cpu?: Int8Path): Int8Quantization {
  if (range === 'full') {
    if (!cpu) throw new Error('full-range weights need the CPU that exports');
    const problem = fullRangeProblem(cpu);
    if (problem) throw new VlakitError('E_USAGE', problem);
  }
  const reason =
    range === '7-bit'
      ? '7-bit weights (the default): correct on every CPU; x86-64 CPUs without VNNI or AMX (AVX2, AVX-512 without VNNI) add uint8 x int8 products in pairs in 16 bits, and 2 x 255 x 63 = 32130 fits'
      : `full-range weights, asked for (--full-range) on a CPU that adds int8 products in 32 bits (${cpu?.description}); CPUs without VNNI or AMX (AVX2, AVX-512 without VNNI) saturate on them (2 x 255 x 127 = 64770 > 32767) and compute wrong logits`;
  return {
    method: 'int8',
    weights: 'int8, symmetric, a scale per output column (every matmul)',
    activations: 'uint8, quantized at run time with a scale and zero point per tensor (DynamicQuantizeLinear)',
    weight_range: range,
    weight_max: WEIGHT_MAX[range],
    reason,
    ...(range === 'full' && cpu ? { exported_on: { cpu: cpu.description, arch: cpu.arch, int8_kernel: cpu.kernel, saturates: cpu.saturates ?? null, measured: Boolean(cpu.measured) } } : {}),
  };
}

/**
 * The weight range of an export from its config.json `vlakit.export.quantization` (older exports wrote "int8",
 * full range, or "int8-reduced-range"); undefined when it is not an int8 export.
 */
export function exportWeightRange(q: unknown): WeightRange | undefined {
  if (q === 'int8') return 'full';
  if (q === 'int8-reduced-range') return '7-bit';
  if (typeof q === 'object' && q !== null && (q as { method?: unknown }).method === 'int8') {
    const r = (q as { weight_range?: unknown }).weight_range;
    return r === '7-bit' ? '7-bit' : 'full'; // anything else: assume the range that can saturate
  }
  return undefined;
}

/**
 * A warning for an int8 export with weights in `range` run on `cpu` (undefined: nothing to warn about).
 */
export function int8RunWarning(range: WeightRange | undefined, cpu: Int8Path, dir: string): string | undefined {
  if (range !== 'full' || cpu.saturates === false) return undefined;
  const what = cpu.saturates ? `this CPU (${cpu.description}) saturates on them: its logits can be far off (wrong actions)` : `cannot tell whether this CPU (${cpu.description}) adds int8 products in 32 bits: if it does not, its logits can be far off`;
  return `${dir} has full-range int8 weights (exported with --full-range) and ${what}; export it again without --full-range (7-bit weights, correct on every CPU)`;
}
