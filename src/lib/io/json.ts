/**
 * How binary and numeric values appear in vlakit's JSON records, losslessly:
 * - bytes: a string when they are valid UTF-8, else `{"b64": "..."}`;
 * - images: `{"mime": "image/png", "b64": "..."}` with the original encoded bytes;
 * - float32: the shortest decimal that reads back to the same float32; NaN and infinities as strings;
 * - int64 beyond 2^53: a decimal string (in typed lists) or `{"int64": "..."}` (in step records).
 */
import { VlakitError } from '../errors.js';
import type { Example, Feature, Features, Int64, SequenceExample } from './example.js';

export interface BytesJson {
  b64: string;
}
export interface ImageJson {
  mime: string;
  b64: string;
}
export type FloatJson = number | 'NaN' | 'Infinity' | '-Infinity' | '-0';

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** The shortest decimal that rounds to the same float32 (so re-encoding as float32 is exact). */
export function shortFloat32(v: number): number {
  if (Number.isInteger(v) && Math.abs(v) <= 16777216) return v;
  for (let p = 6; p < 9; p++) {
    const s = +v.toPrecision(p);
    if (Math.fround(s) === v) return s;
  }
  return +v.toPrecision(9);
}

/** A float32 as JSON: JSON has no NaN, infinities or negative zero, so those become strings. */
export function floatToJson(v: number): FloatJson {
  if (v === 0 && 1 / v < 0) return '-0';
  return Number.isFinite(v) ? shortFloat32(v) : (String(v) as FloatJson);
}

export function floatFromJson(v: unknown, field: string): number {
  if (typeof v === 'number') return v;
  if (v === 'NaN') return NaN;
  if (v === 'Infinity') return Infinity;
  if (v === '-Infinity') return -Infinity;
  if (v === '-0') return -0;
  throw new VlakitError('E_RECORD_INVALID', `expected a number (or "NaN", "Infinity", "-Infinity", "-0"), got ${brief(v)}`, {
    field,
  });
}

export function bytesToJson(b: Uint8Array): string | BytesJson {
  try {
    return utf8.decode(b);
  } catch {
    return { b64: Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64') };
  }
}

export function bytesFromJson(v: unknown, field: string): Uint8Array {
  if (typeof v === 'string') return Buffer.from(v, 'utf8');
  if (isB64(v)) return Buffer.from(v.b64, 'base64');
  throw new VlakitError('E_RECORD_INVALID', `expected a string or {"b64": "..."}, got ${brief(v)}`, { field });
}

export function isB64(v: unknown): v is BytesJson {
  return typeof v === 'object' && v !== null && typeof (v as BytesJson).b64 === 'string';
}

export function isImageJson(v: unknown): v is ImageJson {
  return isB64(v) && typeof (v as ImageJson).mime === 'string';
}

/** The camera images of an observation, in key order. */
export function imagesOf(obs: Record<string, unknown>): ImageJson[] {
  return Object.values(obs).filter(isImageJson);
}

export function int64ToJson(v: Int64): number | string {
  return typeof v === 'bigint' ? v.toString() : v;
}

export function int64FromJson(v: unknown, field: string): Int64 {
  if (typeof v === 'number' && Number.isSafeInteger(v)) return v;
  if (typeof v === 'string' && /^-?\d+$/.test(v)) {
    const b = BigInt(v);
    if (b >= -(2n ** 63n) && b < 2n ** 63n) return Number.isSafeInteger(Number(b)) ? Number(b) : b;
  }
  throw new VlakitError('E_RECORD_INVALID', `expected an int64 (a safe integer or a decimal string), got ${brief(v)}`, {
    field,
  });
}

/** A short description of a JSON value for error messages. */
export function brief(v: unknown): string {
  if (v === undefined) return 'nothing';
  const s = JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? x.toString() : x));
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

// --- tf.train.Example as JSON: {"features": {"name": {"float_list": [..]}, "empty": {}}} ---

export type FeatureJson =
  | { bytes_list: (string | BytesJson)[] }
  | { float_list: FloatJson[] }
  | { int64_list: (number | string)[] }
  | Record<string, never>;

export interface ExampleJson {
  features: Record<string, FeatureJson>;
}
export interface SequenceExampleJson {
  context: Record<string, FeatureJson>;
  feature_lists: Record<string, FeatureJson[]>;
}

export function featureToJson(f: Feature): FeatureJson {
  switch (f.kind) {
    case 'bytes_list':
      return { bytes_list: f.value.map(bytesToJson) };
    case 'float_list':
      return { float_list: f.value.map(floatToJson) };
    case 'int64_list':
      return { int64_list: f.value.map(int64ToJson) };
    default:
      return {};
  }
}

export function featureFromJson(v: unknown, field: string): Feature {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new VlakitError('E_RECORD_INVALID', `expected a feature object such as {"float_list": [...]}, got ${brief(v)}`, {
      field,
    });
  }
  const keys = Object.keys(v);
  if (keys.length === 0) return {};
  const kind = keys[0];
  const list = (v as Record<string, unknown>)[kind];
  if (keys.length > 1 || !Array.isArray(list) || !['bytes_list', 'float_list', 'int64_list'].includes(kind)) {
    throw new VlakitError(
      'E_RECORD_INVALID',
      `expected exactly one of bytes_list, float_list, int64_list holding an array, got ${brief(v)}`,
      { field },
    );
  }
  if (kind === 'bytes_list') return { kind, value: list.map((x, i) => bytesFromJson(x, `${field}[${i}]`)) };
  if (kind === 'float_list') return { kind, value: list.map((x, i) => Math.fround(floatFromJson(x, `${field}[${i}]`))) };
  return { kind: 'int64_list', value: list.map((x, i) => int64FromJson(x, `${field}[${i}]`)) };
}

function featuresToJson(fs: Features): Record<string, FeatureJson> {
  const out: Record<string, FeatureJson> = {};
  for (const [k, f] of fs) out[k] = featureToJson(f);
  return out;
}

function featuresFromJson(v: unknown, field: string): Features {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new VlakitError('E_RECORD_INVALID', `expected an object of features, got ${brief(v)}`, { field });
  }
  const out: Features = new Map();
  for (const [k, f] of Object.entries(v)) out.set(k, featureFromJson(f, `${field}.${k}`));
  return out;
}

export function exampleToJson(ex: Example): ExampleJson {
  return { features: featuresToJson(ex.features) };
}

export function exampleFromJson(v: { features?: unknown }): Example {
  return { features: featuresFromJson(v.features, 'features') };
}

export function sequenceExampleToJson(se: SequenceExample): SequenceExampleJson {
  const feature_lists: Record<string, FeatureJson[]> = {};
  for (const [k, list] of se.featureLists) feature_lists[k] = list.map(featureToJson);
  return { context: featuresToJson(se.context), feature_lists };
}

export function sequenceExampleFromJson(v: { context?: unknown; feature_lists?: unknown }): SequenceExample {
  const featureLists = new Map<string, Feature[]>();
  const fl = v.feature_lists ?? {};
  if (typeof fl !== 'object' || fl === null || Array.isArray(fl)) {
    throw new VlakitError('E_RECORD_INVALID', `expected an object of feature lists, got ${brief(fl)}`, {
      field: 'feature_lists',
    });
  }
  for (const [k, list] of Object.entries(fl)) {
    if (!Array.isArray(list)) {
      throw new VlakitError('E_RECORD_INVALID', `expected an array of features, got ${brief(list)}`, {
        field: `feature_lists.${k}`,
      });
    }
    featureLists.set(
      k,
      list.map((f, i) => featureFromJson(f, `feature_lists.${k}[${i}]`)),
    );
  }
  return { context: featuresFromJson(v.context ?? {}, 'context'), featureLists };
}
