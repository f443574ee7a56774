/**
 * The built-in vision tower's keypoints in plain float64 from a checkpoint's weights, written from the architecture's
 * description (docs/MODEL.md), not from its code: the stem (GELU, tanh form) over each s x s cell, per keypoint a
 * softmax of query . key / sqrt(8) over the cells (a learned query: keypoint_query "learned"), and the expected
 * value, a linear map of the cells' grid positions. With vision_config.keypoint_context n (read off the key weight's
 * rows: n*n*Cs), a cell's key reads the stem features of the n x n cells around it, row-major, zeros off the image.
 */
type Weights = Map<string, { data: Float32Array; shape: number[] }>;

const DK = 8;

/** Per keypoint, its softmax over the (S / s)^2 cells (row-major) of one camera's pixels [S, S, 3]. */
export function keypointSoftmax(w: Weights, pixels: ArrayLike<number>, S: number, s: number, K: number): number[][] {
  const G = S / s;
  const get = (n: string) => w.get(n)!.data;
  const [stemW, stemB, keyW, keyB, query] = ['vision.stem.weight', 'vision.stem.bias', 'vision.keypoints.key.weight', 'vision.keypoints.key.bias', 'vision.keypoints.query'].map(get);
  const Cs = stemB.length;
  const gelu = (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
  const n = Math.round(Math.sqrt(keyW.length / (Cs * K * DK)));
  const r = (n - 1) / 2;
  const feats: number[][] = [];
  for (let gy = 0; gy < G; gy++) {
    for (let gx = 0; gx < G; gx++) {
      const cell: number[] = [];
      for (let y = 0; y < s; y++) for (let x = 0; x < s; x++) for (let ch = 0; ch < 3; ch++) cell.push(pixels[((gy * s + y) * S + gx * s + x) * 3 + ch]);
      feats.push(Array.from({ length: Cs }, (_, o) => gelu(cell.reduce((a, v, i) => a + v * stemW[i * Cs + o], stemB[o]))));
    }
  }
  const keys: number[][] = [];
  for (let gy = 0; gy < G; gy++) {
    for (let gx = 0; gx < G; gx++) {
      const key = Array.from({ length: K * DK }, (_, o) => keyB[o]);
      for (let dy = -r; dy <= r; dy++) {
        for (let dx = -r; dx <= r; dx++) {
          const y = gy + dy;
          const x = gx + dx;
          if (y < 0 || y >= G || x < 0 || x >= G) continue; // zeros beyond the border
          const row0 = ((dy + r) * n + (dx + r)) * Cs;
          feats[y * G + x].forEach((v, i) => {
            for (let o = 0; o < K * DK; o++) key[o] += v * keyW[(row0 + i) * K * DK + o];
          });
        }
      }
      keys.push(key);
    }
  }
  return Array.from({ length: K }, (_, k) => {
    const scores = keys.map((key) => {
      let d = 0;
      for (let j = 0; j < DK; j++) d += query[k * DK + j] * key[k * DK + j];
      return d / Math.sqrt(DK);
    });
    const m = Math.max(...scores);
    const e = scores.map((v) => Math.exp(v - m));
    const z = e.reduce((a, b) => a + b, 0);
    return e.map((v) => v / z);
  });
}

/** The keypoint readouts [K*8] of one camera: each keypoint's expected value of its linear map of the grid positions. */
export function keypointReadouts(w: Weights, pixels: ArrayLike<number>, S: number, s: number, K: number): number[] {
  const get = (n: string) => w.get(n)!.data;
  const [grid, valW, valB] = ['vision.keypoints.grid', 'vision.keypoints.value.weight', 'vision.keypoints.value.bias'].map(get);
  const out: number[] = [];
  keypointSoftmax(w, pixels, S, s, K).forEach((p, k) => {
    for (let j = 0; j < DK; j++) {
      const o = k * DK + j;
      out.push(p.reduce((a, wt, c) => a + wt * (grid[2 * c] * valW[o] + grid[2 * c + 1] * valW[K * DK + o] + valB[o]), 0));
    }
  });
  return out;
}
