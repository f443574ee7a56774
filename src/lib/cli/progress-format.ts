/**
 * The progress figures as text: the plain log line written without a terminal, and the lines of the live view.
 * Pure functions of the state and the time, so both are tested with a fake clock.
 */

export interface ProgressState {
  label: string;
  /** Units done so far (steps, episodes, records...). */
  records: number;
  /** Units in the whole job, when known: the view then shows a bar, the percentage and an ETA. */
  total?: number;
  /** Plural noun of the units ("steps"). */
  unit?: string;
  bytes?: number;
  /**
   * The input's bytes read of its size (files, before decompression), when its records are not counted ahead: the
   * bar, the percentage and the ETA then follow the bytes.
   */
  size?: { done: number; total: number };
  skipped?: number;
  /** The job's own figures, short "name value" items ("loss 0.912", "lr 2.4e-3"): on the log line and the view's second line. */
  figures?: string[];
  /** More lines of job state, shown in the live view only (per-family success, the current instruction...). */
  lines?: string[];
  /** A series drawn as a sparkline under the figures (e.g. the loss), with its name. */
  spark?: { name: string; values: number[] };
  /** Older callers' free text, shown after the counts. */
  detail?: string;
}

/** Where the rate and ETA start from: the first update (a resumed run starts at its checkpoint's step). */
export interface Baseline {
  records: number;
  at: number;
  /** The input's bytes read by then (with `size`). */
  sizeDone?: number;
}

/** The baseline of the first update that brings the count. */
export function baseline(s: Partial<ProgressState>, at: number): Baseline | undefined {
  return s.records === undefined ? undefined : { records: s.records, at, sizeDone: s.size?.done };
}

/** The share of the job done: records of the total, else the input's bytes of its size; undefined when neither is known. */
export function fraction(s: ProgressState): number | undefined {
  if (s.total) return Math.min(1, s.records / s.total);
  if (s.size && s.size.total > 0) return Math.min(1, s.size.done / s.size.total);
  return undefined;
}

/** A number in at most ~4 characters: 0.912, 12.3, 1.3k, 2.4M, 2.4e-3. */
export function fmtNum(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  const a = Math.abs(x);
  if (a === 0) return '0';
  if (a >= 1e9) return `${(x / 1e9).toFixed(1)}G`;
  if (a >= 1e6) return `${(x / 1e6).toFixed(1)}M`;
  if (a >= 1e4) return `${(x / 1e3).toFixed(0)}k`;
  if (a >= 1e3) return `${(x / 1e3).toFixed(1)}k`;
  if (a >= 100) return x.toFixed(0);
  if (a < 0.01) return x.toExponential(1);
  return String(Number(x.toPrecision(3)));
}

/** Seconds as 42s, 6m10s, 1h02m. */
export function fmtDuration(secs: number): string {
  if (!Number.isFinite(secs) || secs < 0) return '?';
  const s = Math.round(secs);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export function fmtBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const u = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes / 1024;
  let i = 0;
  while (v >= 1024 && i < u.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)} ${u[i]}`;
}

function singular(unit: string): string {
  return unit.endsWith('s') ? unit.slice(0, -1) : unit;
}

export interface Timing {
  elapsed: number;
  /** Units per second since the baseline; undefined before the second update. */
  rate?: number;
  /** Seconds left at that rate, when the total is known. */
  eta?: number;
}

export function timing(s: ProgressState, start: number, base: Baseline | undefined, now: number): Timing {
  const elapsed = Math.max(0, (now - start) / 1000);
  if (!base) return { elapsed };
  const secs = (now - base.at) / 1000;
  const done = s.records - base.records;
  if (secs <= 0 || done <= 0) return { elapsed };
  const rate = done / secs;
  let eta: number | undefined;
  if (s.total !== undefined) eta = Math.max(0, s.total - s.records) / rate;
  else if (s.size && base.sizeDone !== undefined && s.size.done > base.sizeDone) eta = Math.max(0, s.size.total - s.size.done) / ((s.size.done - base.sizeDone) / secs);
  return { elapsed, rate, eta };
}

/** "2.1 steps/s", or "4.2s/step" below one a second (as tqdm does). */
export function fmtRate(rate: number | undefined, unit: string): string | undefined {
  if (rate === undefined) return undefined;
  return rate >= 1 ? `${fmtNum(rate)} ${unit}/s` : `${fmtNum(1 / rate)}s/${singular(unit)}`;
}

function pct(s: ProgressState): string | undefined {
  const f = fraction(s);
  return f === undefined ? undefined : `${(100 * f).toFixed(1)}%`;
}

/** "45.1 MiB/120.0 MiB" of a sized input, else the bytes decoded. */
function bytesText(s: ProgressState): string | undefined {
  if (s.size) return `${fmtBytes(s.size.done)}/${fmtBytes(s.size.total)}`;
  return s.bytes ? fmtBytes(s.bytes) : undefined;
}

/**
 * The plain line written every --log-every seconds without a terminal:
 * `vlakit train-sft: step 400/1500 26.7% loss 0.91 lr 2.4e-3 1.3k tok/s 2.1 steps/s elapsed 3m10s eta 6m10s`.
 * Space-separated "name value" pairs after the counts, the same figures as the live view.
 */
export function logLine(s: ProgressState, t: Timing): string {
  const unit = s.unit ?? 'records';
  const parts = [`${singular(unit)} ${s.records}${s.total !== undefined ? `/${s.total}` : ''}`];
  const p = pct(s);
  if (p) parts.push(p);
  const b = bytesText(s);
  if (b) parts.push(b);
  if (s.skipped) parts.push(`skipped ${s.skipped}`);
  if (s.figures?.length) parts.push(...s.figures);
  if (s.detail) parts.push(s.detail);
  const r = fmtRate(t.rate, unit);
  if (r) parts.push(r);
  parts.push(`elapsed ${fmtDuration(t.elapsed)}`);
  if (t.eta !== undefined) parts.push(`eta ${fmtDuration(t.eta)}`);
  return `vlakit ${s.label}: ${parts.join(' ')}`;
}

const SPARKS = '▁▂▃▄▅▆▇█';

/** The series as block characters scaled between its min and max; a longer series is averaged into `width` columns. */
export function sparkline(values: number[], width: number): string {
  let v = values.filter(Number.isFinite);
  const n = Math.max(1, Math.floor(width));
  if (v.length > n) {
    const src = v;
    v = Array.from({ length: n }, (_, i) => {
      const a = Math.floor((i * src.length) / n);
      const b = Math.floor(((i + 1) * src.length) / n);
      return src.slice(a, b).reduce((x, y) => x + y, 0) / (b - a);
    });
  }
  if (!v.length) return '';
  const lo = Math.min(...v);
  const hi = Math.max(...v);
  return v.map((x) => SPARKS[hi > lo ? Math.min(7, Math.floor(((x - lo) / (hi - lo)) * 8)) : 3]).join('');
}

/** Cuts a line to `width` characters (an ellipsis marks the cut), so the terminal never wraps it. */
export function fit(line: string, width: number): string {
  const chars = [...line];
  if (chars.length <= width) return line;
  return width <= 1 ? chars.slice(0, width).join('') : `${chars.slice(0, width - 1).join('')}…`;
}

/** Items joined by " · " in lines of at most `width` characters, an item never split; the last of `maxLines` lines takes the rest, cut. */
export function wrapItems(items: string[], width: number, maxLines: number): string[] {
  const lines: string[] = [];
  let cur = '';
  for (const item of items) {
    if (cur && [...cur].length + 3 + [...item].length > width && lines.length < maxLines - 1) {
      lines.push(cur);
      cur = '';
    }
    cur = cur ? `${cur} · ${item}` : item;
  }
  if (cur) lines.push(cur);
  return lines.map((l) => fit(l, width));
}

export interface ViewLine {
  text: string;
  /** The bar's filled and empty parts, for colouring: the text is `head + filled + empty + tail`. */
  bar?: { head: string; filled: string; empty: string; tail: string };
  dim?: boolean;
}

/**
 * The live view's lines at a terminal `width` (columns): the bar with done/total, %, rate, elapsed and ETA; then the
 * job's figures, its sparkline and its state lines. Each line is at most width - 1 characters: a line that filled the
 * last column would wrap on some terminals and leave a stale line behind on the next redraw.
 */
export function viewLines(s: ProgressState, t: Timing, width: number): ViewLine[] {
  const w = Math.max(20, width - 1);
  const unit = s.unit ?? 'records';
  const counts = `${s.records}${s.total !== undefined ? `/${s.total}` : ''} ${unit}`;
  const clock = `${fmtDuration(t.elapsed)}${t.eta !== undefined ? ` eta ${fmtDuration(t.eta)}` : ''}`;
  const join = (xs: (string | undefined)[]) => xs.filter((x): x is string => x !== undefined).join(' · ');
  const tail = join([pct(s), fmtRate(t.rate, unit), bytesText(s), s.skipped ? `${s.skipped} skipped` : undefined, clock]);
  const out: ViewLine[] = [];
  const f = fraction(s);
  if (f !== undefined) {
    const head = `${s.label} `;
    // a narrow terminal keeps the bar, the counts, the percentage and the clock; the rate goes first
    const room = (after: string) => w - [...head].length - [...after].length;
    const after = [` ${counts} ${tail}`, ` ${counts} ${join([pct(s), clock])}`].find((a) => room(a) >= 10) ?? ` ${counts} ${tail}`;
    const barW = Math.min(40, room(after));
    if (barW >= 10) {
      const filled = Math.round(f * barW);
      const bar = { head, filled: '━'.repeat(filled), empty: '─'.repeat(barW - filled), tail: after };
      out.push({ text: head + bar.filled + bar.empty + after, bar });
    } else out.push({ text: fit(`${s.label} ${counts} ${tail}`, w) });
  } else out.push({ text: fit(`${s.label} ${counts} · ${tail}`, w) });
  const figs = [...(s.figures ?? []), ...(s.detail ? [s.detail] : [])];
  for (const text of wrapItems(figs, w, 2)) out.push({ text });
  if (s.spark && s.spark.values.length > 1) {
    const v = s.spark.values.filter(Number.isFinite);
    const head = `${s.spark.name} `;
    const tailS = ` ${fmtNum(v[0])} → ${fmtNum(v[v.length - 1])}`;
    out.push({ text: fit(head + sparkline(v, Math.min(60, w - [...head].length - [...tailS].length)) + tailS, w) });
  }
  for (const l of s.lines ?? []) out.push({ text: fit(l, w), dim: true });
  return out;
}
