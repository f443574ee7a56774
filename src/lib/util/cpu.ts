/**
 * How this CPU adds int8 products in onnxruntime (its MLAS kernels for uint8 activations x int8 weights, the
 * kernels of an int8 export), read from /proc/cpuinfo. On x86-64 without VNNI or AMX (AVX2, AVX-512 without VNNI,
 * SSE4.1) MLAS multiplies with vpmaddubsw, which adds the products in pairs into int16 with saturation: two
 * 255 x 127 products (64770) overflow 32767, two 255 x 63 products (32130) do not. VNNI (vpdpbusd), AMX and arm64
 * (NEON widening adds, dot products) add them in 32 bits. The flags name the kernel; infer/int8.ts measures it.
 */
import { readFileSync } from 'node:fs';

export interface Int8Path {
  /** process.arch: x64, arm64, ... */
  arch: string;
  /** The MLAS kernel family: amx, avx512-vnni, avx-vnni, avx512, avx2, sse, arm64, or unknown. */
  kernel: 'amx' | 'avx512-vnni' | 'avx-vnni' | 'avx512' | 'avx2' | 'sse' | 'arm64' | 'unknown';
  /** true: products added in pairs in 16 bits (full-range int8 weights can saturate); false: in 32 bits; undefined: cannot tell. */
  saturates: boolean | undefined;
  /** Whether `saturates` was measured on onnxruntime (infer/int8.ts), not only read from the CPU flags. */
  measured?: boolean;
  /** In words, e.g. "x86-64 with AVX2, without VNNI (uint8 x int8 products added in pairs in 16 bits)". */
  description: string;
}

const PAIRS16 = 'uint8 x int8 products added in pairs in 16 bits, with saturation';
const ADDS32 = 'uint8 x int8 products added in 32 bits';

/**
 * The int8 path of a CPU from the text of its /proc/cpuinfo (undefined: not readable) and its architecture.
 * @example int8Path(readFileSync('/proc/cpuinfo', 'utf8')).saturates // false on a CPU with avx512_vnni
 */
export function int8Path(cpuinfo: string | undefined, arch: string = process.arch): Int8Path {
  if (arch === 'arm64') return { arch, kernel: 'arm64', saturates: false, description: `arm64 (${ADDS32})` };
  if (arch !== 'x64') return { arch, kernel: 'unknown', saturates: undefined, description: `${arch}: no known int8 kernel` };
  const line = cpuinfo === undefined ? undefined : /^flags\s*:(.*)$/m.exec(cpuinfo)?.[1];
  if (line === undefined) return { arch, kernel: 'unknown', saturates: undefined, description: 'x86-64 whose CPU flags cannot be read (no /proc/cpuinfo)' };
  const flags = new Set(line.trim().split(/\s+/));
  if (flags.has('amx_int8')) return { arch, kernel: 'amx', saturates: false, description: `x86-64 with AMX (${ADDS32})` };
  if (flags.has('avx512_vnni')) return { arch, kernel: 'avx512-vnni', saturates: false, description: `x86-64 with AVX-512 VNNI (${ADDS32})` };
  if (flags.has('avx_vnni')) return { arch, kernel: 'avx-vnni', saturates: false, description: `x86-64 with AVX-VNNI (${ADDS32})` };
  if (flags.has('avx512bw')) return { arch, kernel: 'avx512', saturates: true, description: `x86-64 with AVX-512, without VNNI (${PAIRS16})` };
  if (flags.has('avx2')) return { arch, kernel: 'avx2', saturates: true, description: `x86-64 with AVX2, without VNNI (${PAIRS16})` };
  return { arch, kernel: 'sse', saturates: true, description: `x86-64 without AVX2 or VNNI (${PAIRS16})` };
}

/** int8Path of this machine from its /proc/cpuinfo (what the flags say; infer/int8.ts measures what onnxruntime does). */
export function cpuinfoInt8Path(): Int8Path {
  let text: string | undefined;
  try {
    text = readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    text = undefined;
  }
  return int8Path(text);
}
