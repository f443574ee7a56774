/**
 * `inspect`: what a dataset holds. Episodes and steps, every feature with its shape and type, cameras and image
 * sizes, instruction samples, per-dimension action (and state) statistics; or, for plain Example streams, the
 * keys with their kinds and lengths.
 */
import { flattenFeatures, type Leaf } from './features.js';
import { imageInfo } from './images.js';
import { isB64, isImageJson, type FeatureJson } from './json.js';
import { newStats, readRecords, rldsInputs, type ReadOptions, type ReadStats } from './read.js';
import { splitNames, splitShards } from './rlds.js';

export interface DimStats {
  min: number;
  max: number;
  mean: number;
  std: number;
}

export interface FeatureSummary {
  key: string;
  type: 'image' | 'text' | 'bytes' | 'bool' | 'number' | 'tensor' | 'json' | 'int64_list' | 'float_list' | 'bytes_list' | 'empty' | 'mixed';
  shape?: (number | null)[];
  dtype?: string;
  /** Values seen (steps, or records). */
  count: number;
  /** For list features: shortest and longest list. */
  minLength?: number;
  maxLength?: number;
}

export interface CameraSummary {
  key: string;
  mime: string[];
  sizes: string[];
}

export interface InspectSummary {
  records: number;
  kinds: Record<string, number>;
  dataset?: { dir: string; name: string; version?: string; splits: { name: string; shards: number; episodes: number }[] };
  episodes?: number;
  steps?: number;
  stepsPerEpisode?: { min: number; mean: number; max: number };
  features: FeatureSummary[];
  cameras?: CameraSummary[];
  instructions?: { distinct: number; samples: string[] };
  action?: { dims: number; stats: DimStats[] };
  state?: { dims: number; stats: DimStats[] };
  read: ReadStats;
}

class Welford {
  n = 0;
  mean = 0;
  m2 = 0;
  min = Infinity;
  max = -Infinity;
  add(x: number): void {
    if (!Number.isFinite(x)) return;
    this.n += 1;
    const d = x - this.mean;
    this.mean += d / this.n;
    this.m2 += d * (x - this.mean);
    if (x < this.min) this.min = x;
    if (x > this.max) this.max = x;
  }
  get stats(): DimStats {
    return { min: this.min, max: this.max, mean: this.mean, std: this.n > 1 ? Math.sqrt(this.m2 / this.n) : 0 };
  }
}

class VectorStats {
  dims: Welford[] = [];
  add(v: unknown): void {
    const flat: number[] = [];
    flattenNumbers(v, flat);
    for (let i = 0; i < flat.length; i++) (this.dims[i] ??= new Welford()).add(flat[i]);
  }
  get result(): { dims: number; stats: DimStats[] } {
    return { dims: this.dims.length, stats: this.dims.map((w) => w.stats) };
  }
}

function flattenNumbers(v: unknown, out: number[]): void {
  if (Array.isArray(v)) for (const x of v) flattenNumbers(x, out);
  else if (typeof v === 'number') out.push(v);
  else if (typeof v === 'boolean') out.push(v ? 1 : 0);
  else if (typeof v === 'string' && (v === 'NaN' || v === 'Infinity' || v === '-Infinity')) out.push(Number(v));
}

function describe(v: unknown): Pick<FeatureSummary, 'type' | 'shape'> {
  if (typeof v === 'string') return { type: 'text' };
  if (isImageJson(v)) return { type: 'image' };
  if (isB64(v)) return { type: 'bytes' };
  if (typeof v === 'boolean') return { type: 'bool', shape: [] };
  if (typeof v === 'number') return { type: 'number', shape: [] };
  if (v === null) return { type: 'json' };
  const shape: number[] = [];
  let x = v;
  while (Array.isArray(x)) {
    shape.push(x.length);
    x = x[0];
  }
  if (typeof x === 'boolean') return { type: 'bool', shape };
  // lists of objects or strings (and empty lists) have no tensor shape: JSON values
  return typeof x === 'number' ? { type: 'tensor', shape } : { type: 'json' };
}

function mergeShape(a: (number | null)[] | undefined, b: (number | null)[] | undefined): (number | null)[] | undefined {
  if (!a || !b) return a ?? b;
  if (a.length !== b.length) return a.map(() => null);
  return a.map((d, i) => (d === b[i] ? d : null));
}

function walkLeaves(o: Record<string, unknown>, prefix: string, visit: (key: string, v: unknown) => void): void {
  for (const [k, v] of Object.entries(o)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (typeof v === 'object' && v !== null && !Array.isArray(v) && !isB64(v)) walkLeaves(v as Record<string, unknown>, key, visit);
    else visit(key, v);
  }
}

/** Summarizes every record of the inputs in one streaming pass. */
export async function inspect(inputs: string[], opts: ReadOptions & { samples?: number } = {}): Promise<InspectSummary> {
  const stats = newStats();
  const kinds: Record<string, number> = {};
  const features = new Map<string, FeatureSummary>();
  const cameras = new Map<string, { mime: Set<string>; sizes: Set<string> }>();
  const instructions = new Set<string>();
  const samples: string[] = [];
  const action = new VectorStats();
  const state = new VectorStats();
  let episodes = 0;
  let steps = 0;
  let epLen = 0;
  const epLens = new Welford();
  let lastEpisode: unknown = undefined;
  const leafDtypes = new Map<string, string>();
  const datasets = rldsInputs(inputs);
  for (const ds of datasets) for (const l of flattenFeatures(ds.features)) leafDtypes.set(leafName(l), l.node.kind === 'text' ? (l.node.encoding === 'json' ? 'as JSON text' : 'string') : l.node.dtype);

  const feature = (key: string): FeatureSummary => {
    let f = features.get(key);
    if (!f) {
      f = { key, type: 'empty', count: 0 };
      features.set(key, f);
    }
    return f;
  };

  for await (const r of readRecords(inputs, { ...opts, videos: false }, stats)) {
    kinds[r.kind] = (kinds[r.kind] ?? 0) + 1;
    if (r.kind === 'step') {
      const s = r.value;
      steps += 1;
      const newEpisode = s.episode_id !== lastEpisode;
      if (newEpisode) {
        if (episodes > 0) epLens.add(epLen);
        episodes += 1;
        epLen = 0;
        lastEpisode = s.episode_id;
      }
      epLen += 1;
      walkLeaves(s, '', (key, v) => {
        if (key.startsWith('episode_metadata.') && !newEpisode) return;
        const f = feature(key);
        const d = describe(v);
        f.type = f.count === 0 || f.type === d.type ? d.type : f.type === 'json' || d.type === 'json' ? 'json' : 'mixed';
        f.shape = f.count === 0 ? d.shape : mergeShape(f.shape, d.shape);
        f.count += 1;
        if (d.type === 'image' && newEpisode) {
          const cam = cameras.get(key) ?? { mime: new Set<string>(), sizes: new Set<string>() };
          cameras.set(key, cam);
          const im = v as { mime: string; b64: string };
          cam.mime.add(im.mime);
          try {
            const info = imageInfo(Buffer.from(im.b64, 'base64'));
            cam.sizes.add(`${info.width}x${info.height}${info.channels ? `x${info.channels}` : ''}`);
          } catch {
            cam.sizes.add('unreadable');
          }
        }
      });
      if (typeof s.language_instruction === 'string' && !instructions.has(s.language_instruction)) {
        instructions.add(s.language_instruction);
        if (samples.length < (opts.samples ?? 5)) samples.push(s.language_instruction);
      }
      if (s.action !== undefined) action.add(s.action);
      if (s.observation?.state !== undefined) state.add(s.observation.state);
    } else if (r.kind === 'example' || r.kind === 'sequence_example') {
      const lists: [string, FeatureJson][] =
        r.kind === 'example'
          ? Object.entries(r.value.features)
          : [
              ...Object.entries(r.value.context).map(([k, v]) => [`context/${k}`, v] as [string, FeatureJson]),
              ...Object.entries(r.value.feature_lists).flatMap(([k, l]) => l.map((v) => [`feature_lists/${k}`, v] as [string, FeatureJson])),
            ];
      for (const [key, fj] of lists) {
        const f = feature(key);
        const kind = (Object.keys(fj)[0] ?? 'empty') as FeatureSummary['type'];
        const len = kind === 'empty' ? 0 : ((fj as Record<string, unknown[]>)[kind]?.length ?? 0);
        f.type = f.count === 0 || f.type === kind ? kind : 'mixed';
        f.minLength = Math.min(f.minLength ?? Infinity, len);
        f.maxLength = Math.max(f.maxLength ?? -Infinity, len);
        f.count += 1;
      }
    } else if (r.kind === 'chunk' || r.kind === 'training_example') {
      // counted in `kinds`; their fields are described in docs/FORMATS.md
    } else {
      const f = feature('(raw bytes)');
      const len = Math.floor(((r.value as { b64: string }).b64.length * 3) / 4);
      f.type = 'bytes';
      f.minLength = Math.min(f.minLength ?? Infinity, len);
      f.maxLength = Math.max(f.maxLength ?? -Infinity, len);
      f.count += 1;
    }
  }
  if (epLen > 0) epLens.add(epLen);
  for (const f of features.values()) {
    const dt = leafDtypes.get(f.key);
    if (dt) f.dtype = dt;
  }
  const summary: InspectSummary = {
    records: stats.records,
    kinds,
    features: [...features.values()].filter((f) => f.key !== 'episode_id' && f.key !== 'step'),
    read: stats,
  };
  if (datasets.length === 1) {
    const ds = datasets[0];
    summary.dataset = {
      dir: ds.dir,
      name: ds.info.name,
      version: ds.info.version,
      splits: splitNames(ds).map((name) => {
        const shards = splitShards(ds, name);
        return { name, shards: shards.length, episodes: shards.reduce((a, s) => a + (s.length ?? 0), 0) };
      }),
    };
  }
  if (steps > 0) {
    summary.episodes = episodes;
    summary.steps = steps;
    summary.stepsPerEpisode = { min: epLens.min, mean: epLens.mean, max: epLens.max };
    summary.cameras = [...cameras.entries()].map(([key, c]) => ({ key, mime: [...c.mime], sizes: [...c.sizes] }));
    summary.instructions = { distinct: instructions.size, samples };
    if (action.dims.length) summary.action = action.result;
    if (state.dims.length) summary.state = state.result;
  }
  return summary;
}

function leafName(l: Leaf): string {
  return l.path.join('.');
}

function fmt(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  const a = Math.abs(x);
  return a !== 0 && (a < 1e-3 || a >= 1e5) ? x.toExponential(3) : x.toFixed(4);
}

/** A person-readable report of an inspect summary. */
export function formatInspect(s: InspectSummary): string {
  const lines: string[] = [];
  if (s.dataset) {
    lines.push(`dataset   ${s.dataset.name}${s.dataset.version ? ` ${s.dataset.version}` : ''} (${s.dataset.dir})`);
    for (const sp of s.dataset.splits) lines.push(`  split ${sp.name}: ${sp.episodes} episodes in ${sp.shards} shard(s)`);
  }
  lines.push(`records   ${s.records} (${Object.entries(s.kinds).map(([k, n]) => `${n} ${k}`).join(', ') || 'none'})`);
  if (s.steps !== undefined) {
    const e = s.stepsPerEpisode!;
    lines.push(`episodes  ${s.episodes}`);
    lines.push(`steps     ${s.steps} (per episode: min ${e.min}, mean ${e.mean.toFixed(1)}, max ${e.max})`);
  }
  if (s.read.skipped) lines.push(`skipped   ${s.read.skipped} corrupt record(s)`);
  lines.push('', 'features');
  const w = Math.max(8, ...s.features.map((f) => f.key.length));
  for (const f of s.features) {
    const shape = f.shape ? `[${f.shape.map((d) => (d === null ? '?' : d)).join(', ')}]` : '';
    const len = f.minLength !== undefined ? `len ${f.minLength}${f.maxLength !== f.minLength ? `..${f.maxLength}` : ''}` : '';
    lines.push(`  ${f.key.padEnd(w)}  ${[f.type, f.dtype, shape, len].filter(Boolean).join(' ')}`);
  }
  if (s.cameras?.length) {
    lines.push('', 'cameras');
    for (const c of s.cameras) lines.push(`  ${c.key.padEnd(w)}  ${c.mime.join(', ')} ${c.sizes.join(', ')}`);
  }
  if (s.instructions) {
    lines.push('', `instructions (${s.instructions.distinct} distinct)`);
    for (const x of s.instructions.samples) lines.push(`  "${x}"`);
  }
  for (const [name, v] of [['action', s.action], ['state', s.state]] as const) {
    if (!v) continue;
    lines.push('', `${name} (${v.dims} dims)`, `  ${'dim'.padEnd(4)} ${['min', 'max', 'mean', 'std'].map((h) => h.padStart(11)).join('')}`);
    v.stats.forEach((d, i) => lines.push(`  ${String(i).padEnd(4)} ${[d.min, d.max, d.mean, d.std].map((x) => fmt(x).padStart(11)).join('')}`));
  }
  return lines.join('\n') + '\n';
}
