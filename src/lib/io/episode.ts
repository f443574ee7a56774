/**
 * One RLDS episode <-> one tf.train.Example, as TFDS serializes it: per-step values of each `steps/...` key are
 * concatenated in step order (images and text one bytes entry per step, tensors flattened row-major, bools as
 * int64 0/1, every float as float32), episode values stored once. Also infers a feature spec from step records.
 */
import { VlakitError } from '../errors.js';
import type { Example, Feature } from './example.js';
import { type Dtype, type FeatureNode, type Leaf, type LeafNode, flattenFeatures, isFloatDtype } from './features.js';
import { imageInfo, sniffImageMime } from './images.js';
import {
  brief,
  bytesFromJson,
  bytesToJson,
  floatFromJson,
  floatToJson,
  int64FromJson,
  int64ToJson,
  isB64,
  isImageJson,
} from './json.js';
import { STEP_FIELD_ORDER, type StepRecord } from './records.js';

const MIME_OF = { jpeg: 'image/jpeg', png: 'image/png' } as const;

function featureLength(f: Feature | undefined): number {
  return f?.value?.length ?? 0;
}

/** Rebuilds nested arrays of `shape` from a flat slice. */
function reshape<T>(flat: T[], shape: number[], at = 0, dim = 0): unknown {
  if (dim === shape.length) return flat[at];
  const n = shape[dim];
  const stride = shape.slice(dim + 1).reduce((a, b) => a * b, 1);
  const out: unknown[] = new Array(n);
  for (let i = 0; i < n; i++) out[i] = reshape(flat, shape, at + i * stride, dim + 1);
  return out;
}

function decodeValue(leaf: Leaf, f: Feature | undefined, start: number, count: number): unknown {
  const node = leaf.node;
  if (node.kind === 'image') {
    const bytes = expectKind(f, 'bytes_list', leaf)[start] as Uint8Array;
    const mime = node.encodingFormat ? MIME_OF[node.encodingFormat] : (sniffImageMime(bytes) ?? 'application/octet-stream');
    return { mime: sniffImageMime(bytes) ?? mime, b64: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64') };
  }
  if (node.kind === 'text') {
    const text = bytesToJson(expectKind(f, 'bytes_list', leaf)[start] as Uint8Array);
    if (node.encoding !== 'json' || typeof text !== 'string') return text;
    try {
      return JSON.parse(text);
    } catch (err) {
      throw new VlakitError('E_RLDS_SHAPE', `a JSON text feature holds text that is not JSON: ${text.slice(0, 60)}`, { field: leaf.key }, { cause: err });
    }
  }
  const shape = node.shape.map((d) => (d < 0 ? count : d));
  let flat: unknown[];
  if (node.dtype === 'string') {
    flat = (expectKind(f, 'bytes_list', leaf) as Uint8Array[]).slice(start, start + count).map(bytesToJson);
  } else if (isFloatDtype(node.dtype)) {
    flat = (expectKind(f, 'float_list', leaf) as number[]).slice(start, start + count).map(floatToJson);
  } else if (node.dtype === 'bool') {
    flat = (expectKind(f, 'int64_list', leaf) as number[]).slice(start, start + count).map((v) => v !== 0);
  } else {
    flat = (expectKind(f, 'int64_list', leaf) as (number | bigint)[]).slice(start, start + count).map(int64ToJson);
  }
  return node.scalar || shape.length === 0 ? flat[0] : reshape(flat, shape);
}

function expectKind(f: Feature | undefined, kind: NonNullable<Feature['kind']>, leaf: Leaf): unknown[] {
  if (f?.kind !== kind) {
    throw new VlakitError('E_RLDS_SHAPE', `expected a ${kind} for this ${leaf.node.kind} feature, found ${f?.kind ?? 'no list'}`, {
      field: leaf.key,
    });
  }
  return f.value as unknown[];
}

function setPath(obj: Record<string, unknown>, path: string[], value: unknown): void {
  let o = obj;
  for (let i = 0; i < path.length - 1; i++) {
    const k = path[i];
    let next = o[k] as Record<string, unknown> | undefined;
    if (next === undefined) {
      next = {};
      o[k] = next;
    }
    o = next;
  }
  o[path[path.length - 1]] = value;
}

function getPath(obj: Record<string, unknown>, path: string[]): unknown {
  let o: unknown = obj;
  for (const k of path) {
    if (typeof o !== 'object' || o === null) return undefined;
    o = (o as Record<string, unknown>)[k];
  }
  return o;
}

/** Counts the steps of an episode Example and checks that every step feature agrees. */
export function countSteps(ex: Example, leaves: Leaf[]): number {
  let steps = -1;
  let first = '';
  for (const leaf of leaves) {
    if (leaf.scope !== 'step' || leaf.size === 0) continue;
    const n = featureLength(ex.features.get(leaf.key));
    if (n % leaf.size !== 0) {
      throw new VlakitError('E_RLDS_SHAPE', `${n} values is not a whole number of steps of ${leaf.size} values each`, { field: leaf.key });
    }
    const t = n / leaf.size;
    if (steps < 0) {
      steps = t;
      first = leaf.key;
    } else if (t !== steps) {
      throw new VlakitError('E_RLDS_SHAPE', `holds ${t} steps but ${first} holds ${steps}; every step feature must have one value per step`, {
        field: leaf.key,
      });
    }
  }
  return Math.max(steps, 0);
}

/** Splits one episode Example into step records. */
export function decodeEpisode(ex: Example, leaves: Leaf[], episodeId: string | number): StepRecord[] {
  const steps = countSteps(ex, leaves);
  const episodeValues: [string[], unknown][] = [];
  for (const leaf of leaves) {
    if (leaf.scope !== 'episode') continue;
    const f = ex.features.get(leaf.key);
    if (f === undefined) throw new VlakitError('E_RLDS_SHAPE', 'episode feature missing from the record', { field: leaf.key });
    const count = leaf.node.kind === 'tensor' && leaf.node.shape.includes(-1) ? featureLength(f) : leaf.size;
    episodeValues.push([leaf.path, decodeValue(leaf, f, 0, count)]);
  }
  const out: StepRecord[] = [];
  for (let t = 0; t < steps; t++) {
    const rec: Record<string, unknown> = { episode_id: episodeId, step: t };
    for (const k of STEP_FIELD_ORDER) if (k !== 'episode_id' && k !== 'step') rec[k] = undefined;
    for (const leaf of leaves) {
      if (leaf.scope !== 'step') continue;
      setPath(rec, leaf.path, decodeValue(leaf, ex.features.get(leaf.key), t * leaf.size, leaf.size));
    }
    for (const [path, v] of episodeValues) setPath(rec, path, v);
    for (const k of STEP_FIELD_ORDER) if (rec[k] === undefined) delete rec[k];
    out.push(rec as StepRecord);
  }
  return out;
}

function flatten(v: unknown, out: unknown[], shape: number[], dim: number, field: string): void {
  if (dim === shape.length) {
    if (Array.isArray(v)) throw new VlakitError('E_RLDS_SHAPE', `expected shape [${shape}], found a deeper array`, { field });
    out.push(v);
    return;
  }
  if (!Array.isArray(v) || (shape[dim] >= 0 && v.length !== shape[dim])) {
    throw new VlakitError('E_RLDS_SHAPE', `expected an array of shape [${shape}], got ${brief(v)}`, { field });
  }
  for (const x of v) flatten(x, out, shape, dim + 1, field);
}

function encodeValues(node: LeafNode, values: unknown[], field: string): Feature {
  if (node.kind === 'image') {
    return {
      kind: 'bytes_list',
      value: values.map((v) => {
        if (!isB64(v)) throw new VlakitError('E_RECORD_INVALID', `expected an image {"mime": ..., "b64": ...}, got ${brief(v)}`, { field });
        return Buffer.from(v.b64, 'base64');
      }),
    };
  }
  if (node.kind === 'text') {
    if (node.encoding === 'json') return { kind: 'bytes_list', value: values.map((v) => Buffer.from(JSON.stringify(v), 'utf8')) };
    return { kind: 'bytes_list', value: values.map((v) => bytesFromJson(v, field)) };
  }
  const flat: unknown[] = [];
  const shape = node.scalar ? [] : node.shape;
  for (const v of values) flatten(v, flat, shape, 0, field);
  if (node.dtype === 'string') return { kind: 'bytes_list', value: flat.map((v) => bytesFromJson(v, field)) };
  if (isFloatDtype(node.dtype)) return { kind: 'float_list', value: flat.map((v) => floatFromJson(v, field)) };
  if (node.dtype === 'bool') {
    return {
      kind: 'int64_list',
      value: flat.map((v) => {
        if (typeof v === 'boolean') return v ? 1 : 0;
        if (v === 0 || v === 1) return v;
        throw new VlakitError('E_RECORD_INVALID', `expected a boolean, got ${brief(v)}`, { field });
      }),
    };
  }
  return {
    kind: 'int64_list',
    value: flat.map((v) => {
      if (typeof v === 'number' && !Number.isInteger(v)) {
        throw new VlakitError('E_FEATURE_DTYPE', `expected an integer for dtype ${node.dtype}, got ${v}; give the dtype with --features if this field is a float`, { field });
      }
      return int64FromJson(v, field);
    }),
  };
}

/** Joins the step records of one episode into its Example. */
export function encodeEpisode(steps: StepRecord[], leaves: Leaf[]): Example {
  const features = new Map<string, Feature>();
  for (const leaf of leaves) {
    const field = leaf.path.join('.');
    if (leaf.scope === 'episode') {
      const v = getPath(steps[0], leaf.path);
      if (v === undefined) throw new VlakitError('E_RECORD_INVALID', 'missing episode field', { field, record: 0 });
      features.set(leaf.key, encodeValues(leaf.node, [v], field));
      continue;
    }
    const jsonText = leaf.node.kind === 'text' && (leaf.node as { encoding?: string }).encoding === 'json';
    const values = steps.map((s, t) => {
      const v = getPath(s, leaf.path);
      if (v === undefined && jsonText) return null; // a field only some steps have (stored as JSON text): null elsewhere
      if (v === undefined) {
        throw new VlakitError('E_RECORD_INVALID', `missing field in step ${t} of episode ${s.episode_id}`, { field });
      }
      return v;
    });
    features.set(leaf.key, encodeValues(leaf.node, values, field));
  }
  return { features };
}

// --- inferring a spec ---

/** Fields that RLDS datasets store as floats even when a sample holds only whole numbers. */
const FLOAT_ROOTS = new Set(['action', 'reward', 'discount', 'observation']);
const RESERVED = new Set(['episode_id', 'step']);

function shapeOf(v: unknown, field: string): number[] {
  const shape: number[] = [];
  let x = v;
  while (Array.isArray(x)) {
    shape.push(x.length);
    x = x[0];
  }
  return shape;
}

function leafOf(values: unknown[], path: string[], field: string): FeatureNode {
  // a field that only some steps have, or objects whose keys differ from step to step (a policy's per-cycle
  // record), cannot be a fixed TFDS feature: JSON text, with null where a step has none
  const present = values.filter((x) => x !== undefined);
  if (present.length && present.length < values.length) return { kind: 'text', encoding: 'json' };
  const objects = present.filter((x) => typeof x === 'object' && x !== null && !Array.isArray(x) && !isImageJson(x) && !isB64(x)) as Record<string, unknown>[];
  if (objects.length > 1) {
    const keys = Object.keys(objects[0]).sort().join('\u0000');
    if (objects.some((o) => Object.keys(o).sort().join('\u0000') !== keys)) return { kind: 'text', encoding: 'json' };
  }
  const v = values[0];
  if (typeof v === 'string') return { kind: 'text' };
  if (isImageJson(v)) {
    let shape: number[] | undefined;
    let format = '';
    for (const x of values) {
      if (!isImageJson(x)) throw new VlakitError('E_RECORD_INVALID', `expected an image in every step, got ${brief(x)}`, { field });
      const info = imageInfo(Buffer.from(x.b64, 'base64'), { field });
      const s = [info.height, info.width, info.channels ?? -1];
      format ||= info.format;
      shape = shape ? shape.map((d, i) => (d === s[i] ? d : -1)) : s;
    }
    if (format !== 'jpeg' && format !== 'png') {
      throw new VlakitError('E_IMAGE', `TFDS images must be jpeg or png, found ${format}`, { field });
    }
    return { kind: 'image', shape: shape!, dtype: 'uint8', encodingFormat: format };
  }
  if (isB64(v)) return { kind: 'tensor', shape: [], dtype: 'string', scalar: true };
  if (typeof v === 'object' && v !== null && !Array.isArray(v)) {
    const features: Record<string, FeatureNode> = {};
    for (const k of Object.keys(v)) {
      features[k] = leafOf(
        values.map((x) => (x as Record<string, unknown>)?.[k]),
        [...path, k],
        `${field}.${k}`,
      );
    }
    return { kind: 'dict', features };
  }
  if (v === undefined) throw new VlakitError('E_RECORD_INVALID', 'cannot store a missing value in a TFDS feature', { field });
  if (v === null) return { kind: 'text', encoding: 'json' };
  const shape = shapeOf(v, field);
  const flat: unknown[] = [];
  try {
    for (const x of values) flatten(x, flat, shape, 0, field);
  } catch {
    return { kind: 'text', encoding: 'json' }; // ragged: no tensor shape
  }
  const numeric = flat.every((x) => typeof x === 'number' || x === 'NaN' || x === 'Infinity' || x === '-Infinity' || x === '-0');
  const bools = flat.every((x) => typeof x === 'boolean');
  if (shape.includes(0) || (!numeric && !bools)) return { kind: 'text', encoding: 'json' };
  let dtype: Dtype;
  if (flat.every((x) => typeof x === 'boolean')) dtype = 'bool';
  else if (!FLOAT_ROOTS.has(path[0]) && flat.every((x) => typeof x === 'number' && Number.isInteger(x))) dtype = 'int64';
  else dtype = 'float32';
  return { kind: 'tensor', shape, dtype, scalar: shape.length === 0 };
}

/**
 * Infers the features of a dataset from the step records of its first episode: strings are Text, {mime, b64} are
 * Images (shape from the headers), booleans bool, numbers float32 (int64 when whole numbers outside action,
 * reward, discount and observation). `episode_metadata` becomes the episode-level FeaturesDict.
 */
export function inferFeatures(episode: StepRecord[]): FeatureNode {
  const stepFields: Record<string, FeatureNode> = {};
  const first = episode[0];
  const keys = [...new Set(episode.flatMap((s) => Object.keys(s)))]; // every field of any step, first seen first
  for (const k of keys) {
    if (RESERVED.has(k) || k === 'episode_metadata') continue;
    stepFields[k] = leafOf(
      episode.map((s) => s[k]),
      [k],
      k,
    );
  }
  const root: Record<string, FeatureNode> = { steps: { kind: 'dataset', feature: { kind: 'dict', features: stepFields } } };
  if (first.episode_metadata !== undefined) root.episode_metadata = leafOf([first.episode_metadata], ['episode_metadata'], 'episode_metadata');
  return { kind: 'dict', features: root };
}

/**
 * Infers the features of an RLDS episode Example that came without a features.json: `steps/...` keys are per step,
 * the step count comes from `steps/is_first` (or is_last / is_terminal), images are recognised by their bytes.
 */
export function inferFeaturesFromExample(ex: Example): FeatureNode {
  let steps = -1;
  for (const k of ['steps/is_first', 'steps/is_last', 'steps/is_terminal']) {
    const f = ex.features.get(k);
    if (f !== undefined) {
      steps = featureLength(f);
      break;
    }
  }
  if (steps < 0) {
    throw new VlakitError('E_RLDS_FEATURES', 'cannot tell the number of steps: no steps/is_first, steps/is_last or steps/is_terminal; give the dataset directory with its features.json');
  }
  const root: FeatureNode = { kind: 'dict', features: {} };
  const stepsDict: FeatureNode = { kind: 'dict', features: {} };
  for (const [key, f] of ex.features) {
    const parts = key.split('/');
    const inSteps = parts[0] === 'steps';
    const n = featureLength(f);
    let node: FeatureNode;
    const per = inSteps ? (steps === 0 ? 0 : n / steps) : n;
    if (inSteps && !Number.isInteger(per)) {
      throw new VlakitError('E_RLDS_SHAPE', `${n} values do not split into ${steps} steps`, { field: key });
    }
    const name = parts[parts.length - 1];
    if (f.kind === 'bytes_list') {
      const isImage = f.value.length > 0 && f.value.every((b) => sniffImageMime(b) !== undefined);
      if (isImage && per === 1) node = { kind: 'image', shape: [-1, -1, -1], dtype: 'uint8' };
      else if (per === 1) node = { kind: 'text' };
      else node = { kind: 'tensor', shape: [per], dtype: 'string', scalar: false };
    } else if (f.kind === 'int64_list') {
      const dtype: Dtype = ['is_first', 'is_last', 'is_terminal'].includes(name) ? 'bool' : 'int64';
      node = { kind: 'tensor', shape: per === 1 ? [] : [per], dtype, scalar: per === 1 };
    } else if (f.kind === 'float_list') {
      node = { kind: 'tensor', shape: per === 1 ? [] : [per], dtype: 'float32', scalar: per === 1 };
    } else {
      continue;
    }
    let dict: FeatureNode = inSteps ? stepsDict : root;
    const rest = inSteps ? parts.slice(1) : parts;
    for (const p of rest.slice(0, -1)) {
      if (dict.kind !== 'dict') break;
      dict.features[p] ??= { kind: 'dict', features: {} };
      dict = dict.features[p];
    }
    if (dict.kind === 'dict') dict.features[rest[rest.length - 1]] = node;
  }
  root.features.steps = { kind: 'dataset', feature: stepsDict };
  return root;
}

/** True when an Example looks like an RLDS episode (has `steps/...` keys). */
export function looksLikeEpisode(ex: Example): boolean {
  for (const k of ex.features.keys()) if (k.startsWith('steps/')) return true;
  return false;
}

export { flattenFeatures };
