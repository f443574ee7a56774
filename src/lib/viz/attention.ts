/**
 * Attention maps of chosen output tokens over the image (ReFineVLA section 3, equations 1-2, appendix B.6): for a
 * token, the attention row of the query that predicts it, in every decoder layer and head; per key position the
 * top-k values over (layer, head), fused by max or mean; the image-patch positions cut into one grid per camera;
 * and the share of attention mass that falls on given pixel masks.
 */

export type Fusion = 'max' | 'mean';

/**
 * Top-k fusion over (layer, head): `rows` holds one attention row (length N) per layer and head; for each key
 * position, the k largest values across rows, then their max or mean.
 * @example fuseTopK([Float32Array.of(0.1, 0.9), Float32Array.of(0.5, 0.5)], 1, 'max') // [0.5, 0.9]
 */
export function fuseTopK(rows: Float32Array[], k: number, fusion: Fusion): Float32Array {
  if (!rows.length) throw new Error('no attention rows to fuse');
  const n = rows[0].length;
  const kk = Math.max(1, Math.min(k, rows.length));
  const out = new Float32Array(n);
  const col = new Float64Array(rows.length);
  for (let p = 0; p < n; p++) {
    for (let r = 0; r < rows.length; r++) col[r] = rows[r][p];
    col.sort(); // ascending: the top k are at the end
    if (fusion === 'max') out[p] = col[rows.length - 1];
    else {
      let s = 0;
      for (let i = rows.length - kk; i < rows.length; i++) s += col[i];
      out[p] = s / kk;
    }
  }
  return out;
}

/**
 * The attention rows of query position `query` from full attention maps (per layer [H, N, N] flattened), over keys
 * 0..`keys`-1: one row per (layer, head).
 */
export function queryRows(layers: Float32Array[], heads: number, positions: number, query: number, keys = positions): Float32Array[] {
  const rows: Float32Array[] = [];
  for (const a of layers) for (let h = 0; h < heads; h++) rows.push(a.slice((h * positions + query) * positions, (h * positions + query) * positions + keys));
  return rows;
}

/** The image-token part of a fused row, one [grid x grid] map per camera (image tokens come first, camera after camera). */
export function cameraGrids(fused: Float32Array, cameras: number, grid: number): Float32Array[] {
  const np = grid * grid;
  if (fused.length < cameras * np) throw new Error(`a row of ${fused.length} positions cannot hold ${cameras} cameras of ${np} patches`);
  return Array.from({ length: cameras }, (_, c) => fused.slice(c * np, (c + 1) * np));
}

/**
 * Per image, its map cut out of a fused row: the values at the image's cell positions (row-major), wherever the
 * model's prompt put its tokens (the built-in model's image tokens first; a chat model's inside the prompt).
 * @example imageMaps(Float32Array.of(9, 1, 2, 3, 4), [{ positions: [1, 2, 3, 4] }]) // [[1, 2, 3, 4]]
 */
export function imageMaps(fused: Float32Array, images: { positions: number[] }[]): Float32Array[] {
  return images.map((im) => {
    const out = new Float32Array(im.positions.length);
    im.positions.forEach((p, i) => {
      if (p >= fused.length) throw new Error(`a row of ${fused.length} positions has no image token at ${p}`);
      out[i] = fused[p];
    });
    return out;
  });
}

/** Min-max normalized to [0, 1] (a flat map becomes all 0). */
export function normalizeMap(m: Float32Array): Float32Array {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of m) {
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  const out = new Float32Array(m.length);
  if (hi > lo) for (let i = 0; i < m.length; i++) out[i] = (m[i] - lo) / (hi - lo);
  return out;
}

/** The mean of several maps (several tokens fused into one picture). */
export function meanMap(maps: Float32Array[]): Float32Array {
  const out = new Float32Array(maps[0].length);
  for (const m of maps) for (let i = 0; i < m.length; i++) out[i] += m[i] / maps.length;
  return out;
}

/**
 * The share of a camera map's attention that falls on a pixel mask of the camera image (width x height, 0/1): each
 * patch covers a cell of the image (the model sees the image stretched to a square), weighted by the share of the
 * cell's pixels inside the mask.
 */
export function maskMass(map: Float32Array, grid: number, mask: Uint8Array, width: number, height: number): number {
  let total = 0;
  let inside = 0;
  for (let r = 0; r < grid; r++) {
    const y0 = Math.floor((r * height) / grid);
    const y1 = Math.floor(((r + 1) * height) / grid);
    for (let c = 0; c < grid; c++) {
      const x0 = Math.floor((c * width) / grid);
      const x1 = Math.floor(((c + 1) * width) / grid);
      let hit = 0;
      for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) hit += mask[y * width + x];
      const cover = hit / Math.max(1, (y1 - y0) * (x1 - x0));
      const a = Math.max(0, map[r * grid + c]);
      total += a;
      inside += a * cover;
    }
  }
  return total > 0 ? inside / total : 0;
}

/**
 * Target tokens chosen by `spec`: "action" / "reasoning" / "all" (by the example's spans), "A:B" (target tokens A
 * to B-1), or "/regex/" (tokens overlapping a match in the target text). `texts` are the target tokens' decoded
 * pieces, in order.
 */
export function chooseTokens(spec: string, kinds: ('action' | 'reasoning' | 'other')[], texts: string[]): number[] {
  const all = kinds.map((_, i) => i);
  if (spec === 'all') return all;
  if (spec === 'action' || spec === 'reasoning') return all.filter((i) => kinds[i] === spec);
  const range = /^(\d*):(\d*)$/.exec(spec);
  if (range) {
    const a = range[1] ? Number(range[1]) : 0;
    const b = range[2] ? Number(range[2]) : kinds.length;
    return all.filter((i) => i >= a && i < b);
  }
  const re = /^\/(.+)\/([a-z]*)$/.exec(spec);
  if (re) {
    const text = texts.join('');
    const pattern = new RegExp(re[1], re[2].includes('g') ? re[2] : `${re[2]}g`);
    const hits: [number, number][] = [];
    for (const m of text.matchAll(pattern)) if (m[0].length) hits.push([m.index!, m.index! + m[0].length]);
    let at = 0;
    const out: number[] = [];
    texts.forEach((t, i) => {
      const [s, e] = [at, at + t.length];
      if (hits.some(([a, b]) => s < b && a < e)) out.push(i);
      at = e;
    });
    return out;
  }
  throw new Error(`unknown token choice "${spec}"; expected action, reasoning, all, A:B or /regex/`);
}
