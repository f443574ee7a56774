/**
 * Small charts for experiment reports (docs/RESULTS.md): points or lines with optional error bars on linear axes,
 * written as SVG and rendered to PNG by sharp (librsvg). One chart per call; no state.
 */
import sharp from 'sharp';
import { z } from 'zod';
import { VlakitError } from '../errors.js';
import { zodProblem } from '../io/json-file.js';
import { type OutputOptions } from '../io/outputs.js';
import { writeOutputFile } from '../io/writer.js';

const finite = z.number().refine(Number.isFinite, 'expected a finite number');

export const ChartPointSchema = z.object({
  x: finite,
  y: finite,
  /** An interval around y (e.g. a Wilson 95% interval), drawn as a vertical bar. */
  yLow: finite.optional(),
  yHigh: finite.optional(),
  /** An interval around x, drawn as a horizontal bar. */
  xLow: finite.optional(),
  xHigh: finite.optional(),
  /** Written beside the point. */
  label: z.string().optional(),
});

export const ChartSeriesSchema = z.object({
  name: z.string(),
  points: z.array(ChartPointSchema),
  /** Join the points (in the order given) with a line. */
  line: z.boolean().default(false),
  /** Hollow markers (e.g. single seeds beside their pooled point). */
  hollow: z.boolean().default(false),
  color: z.string().optional(),
});

export const ChartSpecSchema = z.object({
  title: z.string(),
  xLabel: z.string(),
  yLabel: z.string(),
  series: z.array(ChartSeriesSchema).min(1, 'expected at least one series'),
  xDomain: z.tuple([finite, finite]).optional(),
  yDomain: z.tuple([finite, finite]).optional(),
  width: z.number().int().min(200).max(4000).default(720),
  height: z.number().int().min(150).max(4000).default(480),
});
export type ChartSpec = z.input<typeof ChartSpecSchema>;

/** Colours of the series, in order, when a series gives none (distinct for readers with colour-vision deficiency). */
const PALETTE = ['#0072b2', '#d55e00', '#009e73', '#cc79a7', '#e69f00', '#56b4e9', '#000000'];

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** About 5 round tick values spanning [lo, hi]. */
export function ticks(lo: number, hi: number, n = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + 1e-9 * step; v += step) out.push(+v.toFixed(10));
  return out;
}

function domain(values: number[], given?: [number, number]): [number, number] {
  if (given) {
    if (!(given[1] > given[0])) throw new VlakitError('E_USAGE', `a chart domain must increase; got [${given[0]}, ${given[1]}]`);
    return given;
  }
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  const pad = hi > lo ? (hi - lo) * 0.08 : Math.abs(hi) * 0.1 || 1;
  return [lo - pad, hi + pad];
}

/** The plot area's geometry: where a data point lands, in pixels of the image. */
export function chartGeometry(input: ChartSpec): Geometry {
  return geometry(parseSpec(input));
}

interface Geometry {
  toX: (x: number) => number;
  toY: (y: number) => number;
  xDomain: [number, number];
  yDomain: [number, number];
  area: { left: number; top: number; right: number; bottom: number };
}

function geometry(s: z.output<typeof ChartSpecSchema>): Geometry {
  const pts = s.series.flatMap((t) => t.points);
  const xs = pts.flatMap((p) => [p.x, p.xLow ?? p.x, p.xHigh ?? p.x]);
  const ys = pts.flatMap((p) => [p.y, p.yLow ?? p.y, p.yHigh ?? p.y]);
  const xDomain = domain(xs.length ? xs : [0, 1], s.xDomain);
  const yDomain = domain(ys.length ? ys : [0, 1], s.yDomain);
  const area = { left: 72, top: 44, right: s.width - 170, bottom: s.height - 56 };
  const toX = (x: number) => area.left + ((x - xDomain[0]) / (xDomain[1] - xDomain[0])) * (area.right - area.left);
  const toY = (y: number) => area.bottom - ((y - yDomain[0]) / (yDomain[1] - yDomain[0])) * (area.bottom - area.top);
  return { toX, toY, xDomain, yDomain, area };
}

function parseSpec(input: unknown): z.output<typeof ChartSpecSchema> {
  const r = ChartSpecSchema.safeParse(input);
  if (!r.success) {
    const p = zodProblem(r.error);
    throw new VlakitError('E_USAGE', `invalid chart${p.field ? ` (${p.field})` : ''}: ${p.message}`);
  }
  return r.data;
}

/** The chart as an SVG document. */
export function chartSvg(input: ChartSpec): string {
  const s = parseSpec(input);
  const { toX, toY, xDomain, yDomain, area } = geometry(s);
  const out: string[] = [];
  const fmt = (v: number) => String(+v.toPrecision(4));
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${s.width}" height="${s.height}" font-family="sans-serif">`);
  out.push(`<rect width="${s.width}" height="${s.height}" fill="white"/>`);
  out.push(`<text x="${s.width / 2}" y="24" font-size="16" text-anchor="middle">${esc(s.title)}</text>`);
  // grid and ticks
  for (const v of ticks(xDomain[0], xDomain[1])) {
    const x = toX(v);
    out.push(`<line x1="${x}" y1="${area.top}" x2="${x}" y2="${area.bottom}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${x}" y="${area.bottom + 18}" font-size="12" text-anchor="middle">${fmt(v)}</text>`);
  }
  for (const v of ticks(yDomain[0], yDomain[1])) {
    const y = toY(v);
    out.push(`<line x1="${area.left}" y1="${y}" x2="${area.right}" y2="${y}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${area.left - 8}" y="${y + 4}" font-size="12" text-anchor="end">${fmt(v)}</text>`);
  }
  out.push(`<rect x="${area.left}" y="${area.top}" width="${area.right - area.left}" height="${area.bottom - area.top}" fill="none" stroke="#333"/>`);
  out.push(`<text x="${(area.left + area.right) / 2}" y="${s.height - 16}" font-size="13" text-anchor="middle">${esc(s.xLabel)}</text>`);
  out.push(`<text x="18" y="${(area.top + area.bottom) / 2}" font-size="13" text-anchor="middle" transform="rotate(-90 18 ${(area.top + area.bottom) / 2})">${esc(s.yLabel)}</text>`);
  // series
  s.series.forEach((t, i) => {
    const color = t.color ?? PALETTE[i % PALETTE.length];
    if (t.line && t.points.length > 1) out.push(`<polyline points="${t.points.map((p) => `${toX(p.x)},${toY(p.y)}`).join(' ')}" fill="none" stroke="${color}" stroke-width="2"/>`);
    for (const p of t.points) {
      const [x, y] = [toX(p.x), toY(p.y)];
      if (p.yLow !== undefined || p.yHigh !== undefined) out.push(`<line x1="${x}" y1="${toY(p.yLow ?? p.y)}" x2="${x}" y2="${toY(p.yHigh ?? p.y)}" stroke="${color}" stroke-width="1.5"/>`);
      if (p.xLow !== undefined || p.xHigh !== undefined) out.push(`<line x1="${toX(p.xLow ?? p.x)}" y1="${y}" x2="${toX(p.xHigh ?? p.x)}" y2="${y}" stroke="${color}" stroke-width="1.5"/>`);
      out.push(t.hollow ? `<circle cx="${x}" cy="${y}" r="4" fill="white" stroke="${color}" stroke-width="1.5"/>` : `<circle cx="${x}" cy="${y}" r="5" fill="${color}"/>`);
      if (p.label) out.push(`<text x="${x + 7}" y="${y - 7}" font-size="11" fill="${color}">${esc(p.label)}</text>`);
    }
    // legend
    const ly = area.top + 8 + i * 20;
    out.push(t.hollow ? `<circle cx="${area.right + 18}" cy="${ly}" r="4" fill="white" stroke="${color}" stroke-width="1.5"/>` : `<circle cx="${area.right + 18}" cy="${ly}" r="5" fill="${color}"/>`);
    out.push(`<text x="${area.right + 30}" y="${ly + 4}" font-size="12">${esc(t.name)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n');
}

/** Renders the chart to a PNG file, written whole (an existing file only with `overwrite`). */
export async function writeChartPng(input: ChartSpec, file: string, opts: OutputOptions = {}): Promise<void> {
  const png = await sharp(Buffer.from(chartSvg(input))).png().toBuffer();
  await writeOutputFile(file, png, opts);
}
