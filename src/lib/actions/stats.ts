/**
 * Per-dimension action statistics in one streaming pass: count, mean, std (Welford), min, max, and the q01/q99
 * quantiles. Quantiles are exact while a dimension has seen at most `exactLimit` values (4 million by default: the
 * values are kept as float64 and sorted at the end); past that, a uniform reservoir of `exactLimit` values
 * estimates them (rank error of order 1/sqrt(exactLimit), about 0.05 percentile points).
 */
import { z } from 'zod';
import { readJsonFile } from '../io/json-file.js';
import { FiniteNumberSchema } from '../io/records.js';
import { Rng } from '../util/rng.js';

const count = z.number().int().nonnegative();

export const DimStatsSchema = z.looseObject({
  count,
  mean: FiniteNumberSchema,
  std: FiniteNumberSchema.min(0),
  min: FiniteNumberSchema,
  max: FiniteNumberSchema,
  q01: FiniteNumberSchema,
  q99: FiniteNumberSchema,
});
export type DimStats = z.infer<typeof DimStatsSchema>;

/** Per-dimension statistics (`relabel --stats-out`, a checkpoint's action_stats.json); every number finite. */
export const ActionStatsSchema = z.looseObject({
  dims: z.array(DimStatsSchema).min(1, 'expected statistics of at least one dimension'),
  /** true when every quantile is exact (no dimension outgrew the reservoir). */
  exactQuantiles: z.boolean(),
  count,
});
export type ActionStats = z.infer<typeof ActionStatsSchema>;

/**
 * Reads an action statistics file; a missing, corrupt or wrong-shaped one is an error naming the file and field.
 * @example const stats = readActionStats('stats.json');
 */
export function readActionStats(file: string): ActionStats {
  return readJsonFile(file, ActionStatsSchema, { what: 'action statistics' });
}

/** The q-quantile of sorted values, by linear interpolation between closest ranks (numpy's default). */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return NaN;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

export class StatsAccumulator {
  private n: number[] = [];
  private mean: number[] = [];
  private m2: number[] = [];
  private min: number[] = [];
  private max: number[] = [];
  private keep: Float64Array[] = [];
  private kept: number[] = [];
  private readonly rng = new Rng(12345);

  constructor(private readonly exactLimit = 4_000_000) {}

  add(action: number[]): void {
    action.forEach((v, k) => {
      if (!Number.isFinite(v)) return;
      if (this.n[k] === undefined) {
        this.n[k] = 0;
        this.mean[k] = 0;
        this.m2[k] = 0;
        this.min[k] = Infinity;
        this.max[k] = -Infinity;
        this.keep[k] = new Float64Array(1024);
        this.kept[k] = 0;
      }
      const n = ++this.n[k];
      const d = v - this.mean[k];
      this.mean[k] += d / n;
      this.m2[k] += d * (v - this.mean[k]);
      if (v < this.min[k]) this.min[k] = v;
      if (v > this.max[k]) this.max[k] = v;
      if (this.kept[k] < this.exactLimit) {
        if (this.kept[k] === this.keep[k].length) {
          const grown = new Float64Array(Math.min(this.exactLimit, this.keep[k].length * 2));
          grown.set(this.keep[k]);
          this.keep[k] = grown;
        }
        this.keep[k][this.kept[k]++] = v;
      } else {
        const j = this.rng.int(0, n - 1); // reservoir sampling
        if (j < this.exactLimit) this.keep[k][j] = v;
      }
    });
  }

  result(): ActionStats {
    const dims = this.n.map((n, k) => {
      const sorted = this.keep[k].slice(0, this.kept[k]).sort();
      return { count: n, mean: this.mean[k], std: n > 1 ? Math.sqrt(this.m2[k] / n) : 0, min: this.min[k], max: this.max[k], q01: quantile(sorted, 0.01), q99: quantile(sorted, 0.99) };
    });
    return { dims, exactQuantiles: this.n.every((n) => n <= this.exactLimit), count: Math.max(0, ...this.n) };
  }
}
