/**
 * msgpack with openpi's numpy extension, the wire format of openpi's policy server and client
 * (openpi_client.msgpack_numpy). An array travels as a map with bytes keys:
 * `{b"__ndarray__": true, b"data": <C-order bytes>, b"dtype": "<f4", b"shape": [H, D]}`, a numpy scalar as
 * `{b"__npgeneric__": true, b"data": <its Python value>, b"dtype": "<f4"}`. Everything else is plain msgpack as
 * Python's msgpack packer writes it (use_bin_type): ints in their smallest format, floats as float64, str as str,
 * bytes as bin, dict keys in insertion order. Encoding a value decoded from Python's bytes gives the same bytes.
 */
import { VlakitError } from '../errors.js';

/** A float that stays a float on the wire even when it is integral (JS numbers do not say which they are). */
export class Float64 {
  constructor(readonly value: number) {}
}

type NumericArray = Uint8Array | Int8Array | Uint16Array | Int16Array | Uint32Array | Int32Array | Float32Array | Float64Array | BigInt64Array | BigUint64Array;

interface Dtype {
  order: '<' | '>' | '|';
  kind: 'b' | 'i' | 'u' | 'f' | 'U' | 'S';
  /** Bytes per element. */
  itemsize: number;
}

const NUMERIC_SIZES: Record<string, number[]> = { b: [1], i: [1, 2, 4, 8], u: [1, 2, 4, 8], f: [2, 4, 8] };

/** numpy's dtype.str (`<f4`, `|u1`, `<U5`, `|b1`) parsed; anything openpi cannot send is refused. */
export function parseDtype(s: string): Dtype {
  const m = /^([<>|=])([biufUS])(\d+)$/.exec(s);
  const bad = () => new VlakitError('E_MSGPACK', `unsupported numpy dtype "${s}"; expected bool (|b1), int/uint (i1-i8, u1-u8), float (f2, f4, f8), unicode (<Un) or bytes (|Sn)`);
  if (!m) throw bad();
  const kind = m[2] as Dtype['kind'];
  const n = Number(m[3]);
  const itemsize = kind === 'U' ? 4 * n : n;
  if (NUMERIC_SIZES[kind] && !NUMERIC_SIZES[kind].includes(n)) throw bad();
  const order = m[1] === '=' ? '<' : (m[1] as Dtype['order']);
  return { order: itemsize === 1 || kind === 'S' ? '|' : order === '|' ? '<' : order, kind, itemsize };
}

/** numpy's dtype.str of a typed array (little-endian, as numpy writes on x86 and ARM). */
function dtypeOfTyped(a: NumericArray): string {
  if (a instanceof Uint8Array) return '|u1';
  if (a instanceof Int8Array) return '|i1';
  if (a instanceof Uint16Array) return '<u2';
  if (a instanceof Int16Array) return '<i2';
  if (a instanceof Uint32Array) return '<u4';
  if (a instanceof Int32Array) return '<i4';
  if (a instanceof Float32Array) return '<f4';
  if (a instanceof Float64Array) return '<f8';
  if (a instanceof BigInt64Array) return '<i8';
  return '<u8';
}

const product = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? Number.NaN : s * Number.POSITIVE_INFINITY;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}

/** A numpy array: its dtype string, shape and C-order bytes, as they travel. */
export class NdArray {
  readonly dtype: string;
  readonly shape: readonly number[];
  readonly data: Uint8Array;

  constructor(dtype: string, shape: readonly number[], data: Uint8Array) {
    const d = parseDtype(dtype);
    if (!shape.every((n) => Number.isSafeInteger(n) && n >= 0)) throw new VlakitError('E_MSGPACK', `an ndarray shape holds non-negative integers, got [${shape.join(', ')}]`);
    const want = product(shape) * d.itemsize;
    if (data.length !== want) throw new VlakitError('E_MSGPACK', `an ndarray of dtype ${dtype} and shape [${shape.join(', ')}] holds ${want} bytes, got ${data.length}`);
    this.dtype = dtype;
    this.shape = [...shape];
    this.data = data;
  }

  /**
   * An array from a typed array (its dtype follows the type; Uint8Array with dtype '|b1' makes a bool array).
   * @example NdArray.from(new Float32Array(70), [10, 7]) // float32 [10, 7]
   */
  static from(values: NumericArray, shape: readonly number[] = [values.length], dtype = dtypeOfTyped(values)): NdArray {
    const d = parseDtype(dtype);
    if (d.kind === 'U' || d.kind === 'S' || d.order === '>') throw new VlakitError('E_MSGPACK', `NdArray.from writes little-endian numbers, not ${dtype}`);
    if (d.itemsize !== values.BYTES_PER_ELEMENT) throw new VlakitError('E_MSGPACK', `a ${values.constructor.name} cannot hold dtype ${dtype}`);
    return new NdArray(dtype, shape, new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength)));
  }

  /** A unicode array (numpy's `<Un`, n the longest string in code points). */
  static strings(values: readonly string[], shape: readonly number[] = [values.length]): NdArray {
    const cps = values.map((v) => [...v].map((c) => c.codePointAt(0)!));
    const n = Math.max(1, ...cps.map((c) => c.length));
    const out = new Uint32Array(values.length * n);
    cps.forEach((c, i) => out.set(c, i * n));
    return new NdArray(`<U${n}`, shape, new Uint8Array(out.buffer));
  }

  get size(): number {
    return product(this.shape);
  }

  /** The elements in C order as a native typed array (bool: 0/1 bytes; float16 widened to float32). */
  values(): NumericArray {
    const d = parseDtype(this.dtype);
    if (d.kind === 'U' || d.kind === 'S') throw new VlakitError('E_MSGPACK', `an array of dtype ${this.dtype} holds text; use strings()`);
    // an aligned little-endian copy
    const bytes = new Uint8Array(this.data);
    if (d.order === '>') {
      for (let i = 0; i < bytes.length; i += d.itemsize) bytes.subarray(i, i + d.itemsize).reverse();
    }
    const b = bytes.buffer;
    if (d.kind === 'b') return bytes.map((v) => (v ? 1 : 0));
    if (d.kind === 'f' && d.itemsize === 2) {
      const h = new Uint16Array(b);
      return Float32Array.from(h, halfToFloat);
    }
    const ctor = ({ i1: Int8Array, i2: Int16Array, i4: Int32Array, i8: BigInt64Array, u1: Uint8Array, u2: Uint16Array, u4: Uint32Array, u8: BigUint64Array, f4: Float32Array, f8: Float64Array } as const)[`${d.kind}${d.itemsize}` as 'i1'];
    return new ctor(b);
  }

  /** The elements as float64 numbers (64-bit integers beyond 2^53 lose precision). */
  numbers(): Float64Array {
    const v = this.values();
    return v instanceof BigInt64Array || v instanceof BigUint64Array ? Float64Array.from(v, Number) : Float64Array.from(v as ArrayLike<number>);
  }

  /** The elements of a unicode (`<Un`) or bytes (`|Sn`) array as strings, trailing NULs removed. */
  strings(): string[] {
    const d = parseDtype(this.dtype);
    const out: string[] = [];
    for (let i = 0; i < this.size; i++) {
      const item = this.data.subarray(i * d.itemsize, (i + 1) * d.itemsize);
      let s = '';
      if (d.kind === 'U') {
        const dv = new DataView(item.buffer, item.byteOffset, item.byteLength);
        for (let j = 0; j < item.length; j += 4) s += String.fromCodePoint(dv.getUint32(j, d.order !== '>'));
      } else if (d.kind === 'S') s = Buffer.from(item).toString('latin1');
      else throw new VlakitError('E_MSGPACK', `an array of dtype ${this.dtype} holds numbers; use values()`);
      out.push(s.replace(/\0+$/, ''));
    }
    return out;
  }
}

/** A numpy scalar (np.float32(1.5), np.bool_(True)): its dtype and its value as Python would unpack it. */
export class NpScalar {
  constructor(
    readonly dtype: string,
    readonly value: number | bigint | boolean | string | Uint8Array | Float64,
  ) {
    parseDtype(dtype);
  }
}

/** What packb takes. Plain objects become maps with str keys (undefined values left out), arrays become lists. */
export type Packable =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | Float64
  | NdArray
  | NpScalar
  | readonly Packable[]
  | { readonly [key: string]: Packable | undefined };

class Writer {
  private buf = new Uint8Array(256);
  private view = new DataView(this.buf.buffer);
  length = 0;

  private reserve(n: number): number {
    if (this.length + n > this.buf.length) {
      const next = new Uint8Array(Math.max(this.buf.length * 2, this.length + n));
      next.set(this.buf.subarray(0, this.length));
      this.buf = next;
      this.view = new DataView(next.buffer);
    }
    const at = this.length;
    this.length += n;
    return at;
  }

  u8(v: number): void {
    const at = this.reserve(1);
    this.buf[at] = v;
  }
  head(tag: number, bytes: 1 | 2 | 4, n: number): void {
    const at = this.reserve(1 + bytes);
    this.buf[at] = tag;
    if (bytes === 1) this.view.setUint8(at + 1, n);
    else if (bytes === 2) this.view.setUint16(at + 1, n);
    else this.view.setUint32(at + 1, n);
  }
  bytes(b: Uint8Array): void {
    const at = this.reserve(b.length); // may replace this.buf
    this.buf.set(b, at);
  }
  f64(v: number): void {
    const at = this.reserve(9);
    this.buf[at] = 0xcb;
    this.view.setFloat64(at + 1, v);
  }
  int(v: number | bigint): void {
    const n = BigInt(v);
    if (n >= 0n) {
      if (n < 0x80n) return this.u8(Number(n));
      if (n <= 0xffn) return this.head(0xcc, 1, Number(n));
      if (n <= 0xffffn) return this.head(0xcd, 2, Number(n));
      if (n <= 0xffffffffn) return this.head(0xce, 4, Number(n));
      if (n > 0xffffffffffffffffn) throw new VlakitError('E_MSGPACK', `integer ${n} does not fit in 64 bits`);
      const at = this.reserve(9);
      this.buf[at] = 0xcf;
      this.view.setBigUint64(at + 1, n);
      return;
    }
    if (n >= -0x20n) return this.u8(Number(n) & 0xff);
    if (n >= -0x80n) return this.head(0xd0, 1, Number(n) & 0xff);
    if (n >= -0x8000n) return this.head(0xd1, 2, Number(n) & 0xffff);
    if (n >= -0x80000000n) return this.head(0xd2, 4, Number(n) >>> 0);
    if (n < -0x8000000000000000n) throw new VlakitError('E_MSGPACK', `integer ${n} does not fit in 64 bits`);
    const at = this.reserve(9);
    this.buf[at] = 0xd3;
    this.view.setBigInt64(at + 1, n);
  }
  sized(n: number, fix: [number, number] | null, t8: number | null, t16: number, t32: number): void {
    if (fix && n <= fix[1]) this.u8(fix[0] | n);
    else if (t8 !== null && n <= 0xff) this.head(t8, 1, n);
    else if (n <= 0xffff) this.head(t16, 2, n);
    else this.head(t32, 4, n);
  }
  str(s: string): void {
    const b = Buffer.from(s, 'utf8');
    this.sized(b.length, [0xa0, 31], 0xd9, 0xda, 0xdb);
    this.bytes(b);
  }
  bin(b: Uint8Array): void {
    this.sized(b.length, null, 0xc4, 0xc5, 0xc6);
    this.bytes(b);
  }
  result(): Uint8Array {
    return this.buf.slice(0, this.length);
  }
}

const binKey = (k: string) => new Uint8Array(Buffer.from(k, 'latin1'));
const K = { ndarray: binKey('__ndarray__'), npgeneric: binKey('__npgeneric__'), data: binKey('data'), dtype: binKey('dtype'), shape: binKey('shape') };

function write(w: Writer, v: Packable, depth: number): void {
  if (depth > 512) throw new VlakitError('E_MSGPACK', 'a value nested more than 512 levels deep');
  if (v === null) return w.u8(0xc0);
  if (v === true) return w.u8(0xc3);
  if (v === false) return w.u8(0xc2);
  if (typeof v === 'number') return Number.isSafeInteger(v) && !Object.is(v, -0) ? w.int(v) : w.f64(v);
  if (typeof v === 'bigint') return w.int(v);
  if (typeof v === 'string') return w.str(v);
  if (v instanceof Uint8Array) return w.bin(v);
  if (v instanceof Float64) return w.f64(v.value);
  if (v instanceof NdArray) {
    // openpi's pack_array: the keys are bytes, in this order
    w.u8(0x84);
    w.bin(K.ndarray);
    w.u8(0xc3);
    w.bin(K.data);
    w.bin(v.data);
    w.bin(K.dtype);
    w.str(v.dtype);
    w.bin(K.shape);
    w.sized(v.shape.length, [0x90, 15], null, 0xdc, 0xdd);
    for (const n of v.shape) w.int(n);
    return;
  }
  if (v instanceof NpScalar) {
    w.u8(0x83);
    w.bin(K.npgeneric);
    w.u8(0xc3);
    w.bin(K.data);
    write(w, v.value, depth + 1);
    w.bin(K.dtype);
    w.str(v.dtype);
    return;
  }
  if (Array.isArray(v)) {
    w.sized(v.length, [0x90, 15], null, 0xdc, 0xdd);
    for (const x of v as Packable[]) write(w, x, depth + 1);
    return;
  }
  if (typeof v === 'object' && (Object.getPrototypeOf(v) === Object.prototype || Object.getPrototypeOf(v) === null)) {
    const entries = Object.entries(v).filter(([, x]) => x !== undefined) as [string, Packable][];
    w.sized(entries.length, [0x80, 15], null, 0xde, 0xdf);
    for (const [k, x] of entries) {
      w.str(k);
      write(w, x, depth + 1);
    }
    return;
  }
  throw new VlakitError('E_MSGPACK', `cannot pack a ${typeof v === 'object' ? (v as object).constructor?.name ?? 'object' : typeof v}`);
}

/**
 * One value as openpi's Packer writes it.
 * @example packb({ actions: NdArray.from(new Float32Array(70), [10, 7]), server_timing: { infer_ms: new Float64(41.5) } })
 */
export function packb(value: Packable): Uint8Array {
  const w = new Writer();
  write(w, value, 0);
  return w.result();
}

export interface UnpackOptions {
  /** Floats as Float64 objects, so that packing the result gives the same bytes (default: plain numbers). */
  keepFloats?: boolean;
}

class Reader {
  at = 0;
  private readonly view: DataView;
  constructor(
    private readonly b: Uint8Array,
    private readonly o: UnpackOptions,
  ) {
    this.view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  }

  private need(n: number): number {
    if (this.at + n > this.b.length) throw new VlakitError('E_MSGPACK', `the message ends inside a value (needs ${this.at + n - this.b.length} more bytes)`, { offset: this.at });
    const at = this.at;
    this.at += n;
    return at;
  }
  private u(n: 1 | 2 | 4): number {
    const at = this.need(n);
    return n === 1 ? this.view.getUint8(at) : n === 2 ? this.view.getUint16(at) : this.view.getUint32(at);
  }
  private raw(n: number): Uint8Array {
    const at = this.need(n);
    return this.b.slice(at, at + n);
  }
  private text(n: number): string {
    const at = this.need(n);
    return Buffer.from(this.b.buffer, this.b.byteOffset + at, n).toString('utf8');
  }
  private float(v: number): number | Float64 {
    return this.o.keepFloats ? new Float64(v) : v;
  }
  private big(v: bigint): number | bigint {
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  }

  value(depth: number): unknown {
    if (depth > 512) throw new VlakitError('E_MSGPACK', 'a value nested more than 512 levels deep', { offset: this.at });
    const start = this.at;
    const t = this.u(1);
    if (t < 0x80) return t;
    if (t >= 0xe0) return t - 0x100;
    if ((t & 0xf0) === 0x80) return this.map(t & 0x0f, depth);
    if ((t & 0xf0) === 0x90) return this.array(t & 0x0f, depth);
    if ((t & 0xe0) === 0xa0) return this.text(t & 0x1f);
    switch (t) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: return this.raw(this.u(1));
      case 0xc5: return this.raw(this.u(2));
      case 0xc6: return this.raw(this.u(4));
      case 0xca: return this.float(this.view.getFloat32(this.need(4)));
      case 0xcb: return this.float(this.view.getFloat64(this.need(8)));
      case 0xcc: return this.u(1);
      case 0xcd: return this.u(2);
      case 0xce: return this.u(4);
      case 0xcf: return this.big(this.view.getBigUint64(this.need(8)));
      case 0xd0: return this.view.getInt8(this.need(1));
      case 0xd1: return this.view.getInt16(this.need(2));
      case 0xd2: return this.view.getInt32(this.need(4));
      case 0xd3: return this.big(this.view.getBigInt64(this.need(8)));
      case 0xd9: return this.text(this.u(1));
      case 0xda: return this.text(this.u(2));
      case 0xdb: return this.text(this.u(4));
      case 0xdc: return this.array(this.u(2), depth);
      case 0xdd: return this.array(this.u(4), depth);
      case 0xde: return this.map(this.u(2), depth);
      case 0xdf: return this.map(this.u(4), depth);
      default:
        throw new VlakitError('E_MSGPACK', t === 0xc1 ? 'byte 0xc1 is never used in msgpack' : `msgpack extension type 0x${t.toString(16)} is not part of openpi's format`, { offset: start });
    }
  }

  private array(n: number, depth: number): unknown[] {
    if (n > this.b.length - this.at) throw new VlakitError('E_MSGPACK', `an array of ${n} items is longer than the message`, { offset: this.at });
    const out: unknown[] = [];
    for (let i = 0; i < n; i++) out.push(this.value(depth + 1));
    return out;
  }

  private map(n: number, depth: number): unknown {
    if (2 * n > this.b.length - this.at) throw new VlakitError('E_MSGPACK', `a map of ${n} entries is longer than the message`, { offset: this.at });
    const start = this.at;
    const out: Record<string, unknown> = Object.create(null);
    for (let i = 0; i < n; i++) {
      const k = this.value(depth + 1);
      let key: string;
      if (typeof k === 'string') key = k;
      else if (k instanceof Uint8Array) {
        key = Buffer.from(k).toString('utf8');
      } else if (typeof k === 'number' || typeof k === 'bigint' || typeof k === 'boolean') key = String(k);
      else throw new VlakitError('E_MSGPACK', `a map key must be a string, bytes or a number, got ${k === null ? 'nil' : Array.isArray(k) ? 'an array' : 'a map'}`, { offset: start });
      if (key === '__proto__') throw new VlakitError('E_MSGPACK', 'a map key "__proto__" is refused', { offset: start });
      out[key] = this.value(depth + 1);
    }
    // openpi accepts its markers under bytes or str keys
    try {
      if ('__ndarray__' in out) {
        if (!(out.data instanceof Uint8Array) || !Array.isArray(out.shape) || typeof out.dtype !== 'string') throw new VlakitError('E_MSGPACK', 'it needs data (bytes), dtype (str) and shape (a list)');
        return new NdArray(String(out.dtype), out.shape as number[], out.data as Uint8Array);
      }
      if ('__npgeneric__' in out) return new NpScalar(String(out.dtype), out.data as NpScalar['value']);
    } catch (err) {
      throw new VlakitError('E_MSGPACK', `an ${('__ndarray__' in out) ? 'ndarray' : 'numpy scalar'} map is invalid: ${(err as VlakitError).detail ?? (err as Error).message}`, { offset: start });
    }
    return { ...out };
  }
}

/**
 * One message as openpi's unpackb reads it: ndarray maps become NdArray, numpy scalars NpScalar, bytes keys strings.
 * @example const obs = unpackb(bytes) as Record<string, unknown>; (obs['observation/image'] as NdArray).shape // [224, 224, 3]
 */
export function unpackb(bytes: Uint8Array, o: UnpackOptions = {}): unknown {
  const r = new Reader(bytes, o);
  const v = r.value(0);
  if (r.at !== bytes.length) throw new VlakitError('E_MSGPACK', `${bytes.length - r.at} bytes after the message's one value`, { offset: r.at });
  return v;
}
