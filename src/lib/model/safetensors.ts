/**
 * safetensors: an 8-byte little-endian header length, a JSON header naming each tensor's dtype, shape and byte
 * range (`data_offsets`, relative to the end of the header) plus optional `__metadata__` (strings only), padding
 * with spaces to an 8-byte boundary, then the raw little-endian data.
 *
 * vlakit computes in float32: F32, F16 and BF16 tensors are read as float32 and written in the dtype asked for
 * (BF16 and F16 rounded to nearest even). A checkpoint is one `model.safetensors` or shards listed by
 * `model.safetensors.index.json` (`weight_map`: tensor name -> shard file), as Hugging Face writes them.
 */
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readFileSync, readSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { VlakitError } from '../errors.js';
import { readJsonFile } from '../io/json-file.js';
import { writeFileAtomic } from '../io/writer.js';

export interface NamedArray {
  shape: number[];
  data: Float32Array;
}

/** The float dtypes vlakit reads and writes, with their byte widths. */
export const FLOAT_DTYPES = { F32: 4, F16: 2, BF16: 2 } as const;
export type FloatDtype = keyof typeof FLOAT_DTYPES;

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** bfloat16 bits -> float32: the high half of the float32 bits. */
export function bf16ToF32(bits: number): number {
  u32[0] = bits << 16;
  return f32[0];
}

/** float32 -> bfloat16 bits, rounded to nearest even; NaN stays NaN. */
export function f32ToBf16(x: number): number {
  f32[0] = x;
  const b = u32[0];
  if ((b & 0x7fffffff) > 0x7f800000) return ((b >>> 16) | 0x40) & 0xffff; // quiet NaN
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

/** IEEE half bits -> float32. */
export function f16ToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** float32 -> IEEE half bits, rounded to nearest even (overflow to infinity, underflow through subnormals). */
export function f32ToF16(x: number): number {
  f32[0] = x;
  const b = u32[0];
  const sign = (b >>> 16) & 0x8000;
  const e = (b >>> 23) & 0xff;
  let m = b & 0x7fffff;
  if (e === 0xff) return sign | 0x7c00 | (m ? 0x200 : 0);
  const exp = e - 127 + 15;
  if (exp >= 31) return sign | 0x7c00;
  if (exp <= 0) {
    if (exp < -10) return sign;
    m |= 0x800000; // the implicit bit
    const shift = 14 - exp; // 13 for the mantissa width, plus the subnormal shift
    const half = 1 << (shift - 1);
    const rest = m & ((1 << shift) - 1);
    let out = m >>> shift;
    if (rest > half || (rest === half && out & 1)) out += 1;
    return sign | out;
  }
  let out = (exp << 10) | (m >>> 13);
  const rest = m & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && out & 1)) out += 1; // a carry into the exponent is still correct
  return sign | out;
}

/** Decodes `count` little-endian values of `dtype` to float32. */
function toFloat32(bytes: Uint8Array, dtype: FloatDtype, count: number): Float32Array {
  const out = new Float32Array(count);
  if (dtype === 'F32') {
    new Uint8Array(out.buffer).set(bytes);
    return out;
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const conv = dtype === 'BF16' ? bf16ToF32 : f16ToF32;
  for (let i = 0; i < count; i++) out[i] = conv(dv.getUint16(2 * i, true));
  return out;
}

/** Encodes float32 values as little-endian `dtype` bytes. */
function fromFloat32(data: Float32Array, dtype: FloatDtype): Uint8Array {
  if (dtype === 'F32') return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const out = new Uint8Array(data.length * 2);
  const dv = new DataView(out.buffer);
  const conv = dtype === 'BF16' ? f32ToBf16 : f32ToF16;
  for (let i = 0; i < data.length; i++) dv.setUint16(2 * i, conv(data[i]), true);
  return out;
}

export interface EncodeOptions {
  /** The dtype every tensor is written in (default F32). */
  dtype?: FloatDtype;
}

/** The header, padded to an 8-byte boundary, and the total file size, for tensors of the given shapes. */
function layout(tensors: Map<string, NamedArray>, metadata: Record<string, string>, dtype: FloatDtype): { header: Buffer; names: string[]; dataBytes: number } {
  const names = [...tensors.keys()].sort();
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  for (const n of names) {
    const bytes = tensors.get(n)!.data.length * FLOAT_DTYPES[dtype];
    header[n] = { dtype, shape: tensors.get(n)!.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  return { header: Buffer.from(json, 'utf8'), names, dataBytes: offset };
}

export function encodeSafetensors(tensors: Map<string, NamedArray>, metadata: Record<string, string> = {}, opts: EncodeOptions = {}): Buffer {
  const dtype = opts.dtype ?? 'F32';
  const { header, names, dataBytes } = layout(tensors, metadata, dtype);
  const out = Buffer.alloc(8 + header.length + dataBytes);
  out.writeBigUInt64LE(BigInt(header.length), 0);
  header.copy(out, 8);
  let at = 8 + header.length;
  for (const n of names) {
    const b = fromFloat32(tensors.get(n)!.data, dtype);
    out.set(b, at);
    at += b.length;
  }
  return out;
}

const TensorInfo = z.object({
  dtype: z.string(),
  shape: z.array(z.number().int().nonnegative()),
  data_offsets: z.tuple([z.number().int().nonnegative(), z.number().int().nonnegative()]),
});

/** Tensor names, dtypes and shapes of a safetensors buffer, without decoding the data. */
export function safetensorsHeader(buf: Uint8Array, file = 'safetensors'): { base: number; tensors: Map<string, z.infer<typeof TensorInfo>>; metadata: Record<string, string> } {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b.length < 8) throw new VlakitError('E_MODEL', 'file too short for a safetensors header', { file });
  const n = Number(b.readBigUInt64LE(0));
  if (8 + n > b.length) throw new VlakitError('E_MODEL', `header length ${n} runs past the end of the file (${b.length} bytes)`, { file });
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(b.subarray(8, 8 + n)));
  } catch (err) {
    throw new VlakitError('E_MODEL', `invalid safetensors header (${(err as Error).message})`, { file });
  }
  const tensors = new Map<string, z.infer<typeof TensorInfo>>();
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const r = TensorInfo.safeParse(info);
    if (!r.success) throw new VlakitError('E_MODEL', `tensor ${name}: invalid header entry (${r.error.issues[0].message})`, { file, field: name });
    tensors.set(name, r.data);
  }
  return { base: 8 + n, tensors, metadata: (header.__metadata__ as Record<string, string>) ?? {} };
}

/**
 * The header of a safetensors file, reading only its first bytes (a checkpoint of gigabytes is not loaded); every
 * tensor's byte range is checked against the file's size.
 */
export function readSafetensorsHeader(file: string): ReturnType<typeof safetensorsHeader> & { bytes: number } {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    throw new VlakitError('E_NOT_FOUND', 'cannot read the weights', { file }, { cause: err });
  }
  try {
    const size = fstatSync(fd).size;
    const head = Buffer.alloc(8);
    if (readSync(fd, head, 0, 8, 0) < 8) throw new VlakitError('E_MODEL', 'file too short for a safetensors header', { file });
    const n = Number(head.readBigUInt64LE(0));
    if (8 + n > size) throw new VlakitError('E_MODEL', `header length ${n} runs past the end of the file (${size} bytes)`, { file });
    const buf = Buffer.alloc(8 + n);
    readSync(fd, buf, 0, 8 + n, 0);
    const h = safetensorsHeader(buf, file);
    for (const [name, t] of h.tensors) if (h.base + t.data_offsets[1] > size) throw new VlakitError('E_MODEL', `tensor ${name} runs past the end of the file`, { file, field: name });
    return { ...h, bytes: size };
  } finally {
    closeSync(fd);
  }
}

export function decodeSafetensors(buf: Buffer, file = 'safetensors', opts: { only?: (name: string) => boolean } = {}): { tensors: Map<string, NamedArray>; metadata: Record<string, string>; dtypes: Map<string, FloatDtype> } {
  const { base, tensors: infos, metadata } = safetensorsHeader(buf, file);
  const tensors = new Map<string, NamedArray>();
  const dtypes = new Map<string, FloatDtype>();
  for (const [name, t] of infos) {
    if (opts.only && !opts.only(name)) continue;
    if (!(t.dtype in FLOAT_DTYPES)) throw new VlakitError('E_MODEL', `tensor ${name} has dtype ${t.dtype}; vlakit reads ${Object.keys(FLOAT_DTYPES).join(', ')}`, { file, field: name });
    const dtype = t.dtype as FloatDtype;
    const [a, b] = t.data_offsets;
    const count = t.shape.reduce((x, y) => x * y, 1);
    if (b - a !== count * FLOAT_DTYPES[dtype] || base + b > buf.length) throw new VlakitError('E_MODEL', `tensor ${name}: byte range [${a}, ${b}) does not match ${dtype} shape [${t.shape}]`, { file, field: name });
    tensors.set(name, { shape: t.shape, data: toFloat32(buf.subarray(base + a, base + b), dtype, count) });
    dtypes.set(name, dtype);
  }
  return { tensors, metadata, dtypes };
}

export async function writeSafetensors(file: string, tensors: Map<string, NamedArray>, metadata?: Record<string, string>, opts: EncodeOptions = {}): Promise<void> {
  await writeFileAtomic(file, encodeSafetensors(tensors, metadata, opts));
}

export function readSafetensors(file: string): { tensors: Map<string, NamedArray>; metadata: Record<string, string>; dtypes: Map<string, FloatDtype> } {
  let buf: Buffer;
  try {
    buf = readFileSync(file);
  } catch (err) {
    throw new VlakitError('E_NOT_FOUND', 'cannot read the weights', { file }, { cause: err });
  }
  return decodeSafetensors(buf, file);
}

export const INDEX_FILE = 'model.safetensors.index.json';
const IndexSchema = z.object({
  metadata: z.record(z.string(), z.unknown()).optional(),
  weight_map: z.record(z.string(), z.string().regex(/^[^/\\]+\.safetensors$/, 'expected a shard file name beside the index')),
});

/**
 * Every tensor of a Hugging Face checkpoint directory: `model.safetensors`, or the shards that
 * `model.safetensors.index.json` lists (each tensor must be in the shard the index names, and no shard may hold
 * a tensor the index leaves out).
 * @example const { tensors } = readSafetensorsDir('models/stories260k');
 */
export function readSafetensorsDir(dir: string): { tensors: Map<string, NamedArray>; dtypes: Map<string, FloatDtype>; files: string[] } {
  const index = path.join(dir, INDEX_FILE);
  if (!existsSync(index)) {
    const single = path.join(dir, 'model.safetensors');
    if (!existsSync(single)) throw new VlakitError('E_NOT_FOUND', `no model.safetensors or ${INDEX_FILE}`, { file: dir });
    const r = readSafetensors(single);
    return { tensors: r.tensors, dtypes: r.dtypes, files: [single] };
  }
  const { weight_map } = readJsonFile(index, IndexSchema, { what: 'safetensors index', code: 'E_MODEL' });
  const shards = [...new Set(Object.values(weight_map))].sort();
  const tensors = new Map<string, NamedArray>();
  const dtypes = new Map<string, FloatDtype>();
  for (const shard of shards) {
    const file = path.join(dir, shard);
    const r = readSafetensors(file);
    for (const [name, t] of r.tensors) {
      if (weight_map[name] !== shard) throw new VlakitError('E_MODEL', `tensor ${name} is in ${shard} but the index ${weight_map[name] ? `puts it in ${weight_map[name]}` : 'does not list it'}`, { file: index });
      tensors.set(name, t);
      dtypes.set(name, r.dtypes.get(name)!);
    }
  }
  const missing = Object.keys(weight_map).filter((n) => !tensors.has(n));
  if (missing.length) throw new VlakitError('E_MODEL', `${missing.length} tensors listed in the index are in no shard (first: ${missing[0]})`, { file: index });
  return { tensors, dtypes, files: shards.map((s) => path.join(dir, s)) };
}

/**
 * Writes tensors as Hugging Face does: one `model.safetensors`, or with `maxShardBytes` shards named
 * `model-0000i-of-0000n.safetensors` plus the index (tensors in name order, a shard closed before it would pass the
 * limit; a tensor larger than the limit gets a shard of its own).
 */
export async function writeSafetensorsDir(dir: string, tensors: Map<string, NamedArray>, opts: EncodeOptions & { maxShardBytes?: number; metadata?: Record<string, string> } = {}): Promise<string[]> {
  const dtype = opts.dtype ?? 'F32';
  const metadata = { format: 'pt', ...opts.metadata };
  mkdirSync(dir, { recursive: true });
  const max = opts.maxShardBytes ?? Infinity;
  const groups: string[][] = [[]];
  let size = 0;
  for (const n of [...tensors.keys()].sort()) {
    const bytes = tensors.get(n)!.data.length * FLOAT_DTYPES[dtype];
    if (groups[groups.length - 1].length && size + bytes > max) {
      groups.push([]);
      size = 0;
    }
    groups[groups.length - 1].push(n);
    size += bytes;
  }
  if (groups.length === 1) {
    const file = path.join(dir, 'model.safetensors');
    await writeSafetensors(file, tensors, metadata, { dtype });
    return [file];
  }
  const width = 5;
  const files: string[] = [];
  const weightMap: Record<string, string> = {};
  let total = 0;
  for (let i = 0; i < groups.length; i++) {
    const name = `model-${String(i + 1).padStart(width, '0')}-of-${String(groups.length).padStart(width, '0')}.safetensors`;
    const part = new Map(groups[i].map((n) => [n, tensors.get(n)!]));
    for (const n of groups[i]) {
      weightMap[n] = name;
      total += tensors.get(n)!.data.length * FLOAT_DTYPES[dtype];
    }
    await writeSafetensors(path.join(dir, name), part, metadata, { dtype });
    files.push(path.join(dir, name));
  }
  await writeFileAtomic(path.join(dir, INDEX_FILE), `${JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2)}\n`);
  return [...files, path.join(dir, INDEX_FILE)];
}

/** The size of a safetensors file holding tensors of these shapes in `dtype` (header included), without writing it. */
export function safetensorsSize(shapes: Map<string, number[]>, dtype: FloatDtype, metadata: Record<string, string> = {}): number {
  const fake = new Map([...shapes].map(([n, s]) => [n, { shape: s, data: { length: s.reduce((a, b) => a * b, 1) } as Float32Array }]));
  const { header, dataBytes } = layout(fake, metadata, dtype);
  return 8 + header.length + dataBytes;
}
