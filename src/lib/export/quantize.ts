/**
 * Weight quantization for exports: symmetric int8 per output column (scale = max |w| / qmax over the column, no
 * zero point), as onnxruntime's dynamic quantization expects for MatMulInteger weights. Activations are quantized
 * at run time (DynamicQuantizeLinear: uint8, one scale per tensor). qmax is 127, or 63 ("reduce range") for CPUs
 * whose uint8 x int8 dot products add pairs in 16 bits (AVX2 and AVX-512 without VNNI): 255 x 127 x 2 overflows
 * there, 255 x 63 x 2 does not.
 */

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
