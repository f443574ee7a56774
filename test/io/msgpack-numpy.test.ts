import { readFileSync } from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Float64, NdArray, NpScalar, type Packable, packb, unpackb } from '../../src/lib/io/msgpack-numpy.js';
import { FIXTURES } from '../helpers.js';

const DIR = path.join(FIXTURES, 'openpi');
const fixture = (name: string) => new Uint8Array(readFileSync(path.join(DIR, name)));
const expected = JSON.parse(readFileSync(path.join(DIR, 'expected.json'), 'utf8')) as Record<string, Record<string, { dtype: string; shape: number[]; sum: number } | string | Record<string, number>>>;
const sum = (a: NdArray) => a.numbers().reduce((s, v) => s + v, 0);
const NP_DTYPE: Record<string, string> = { uint8: '|u1', float32: '<f4' };
const hex = (s: string) => new Uint8Array(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const ascii = (s: string) => Buffer.from(s, 'latin1').toString('hex');

describe('msgpack-numpy: the files openpi-client wrote', () => {
  for (const name of ['request_libero.msgpack', 'reply_libero.msgpack']) {
    it(`${name} decodes to its expected dtypes, shapes, sums and values`, () => {
      const m = unpackb(fixture(name)) as Record<string, unknown>;
      const want = expected[name];
      expect(Object.keys(m)).toEqual(Object.keys(want));
      for (const [k, w] of Object.entries(want)) {
        if (typeof w === 'object' && 'dtype' in w) {
          const a = m[k] as NdArray;
          expect(a).toBeInstanceOf(NdArray);
          expect(a.dtype).toBe(NP_DTYPE[w.dtype as string]);
          expect(a.shape).toEqual(w.shape);
          // numpy summed in float64 the same float32/uint8 values
          expect(sum(a)).toBeCloseTo(w.sum as number, 6);
        } else expect(m[k]).toEqual(w);
      }
    });
  }

  it('metadata_empty.msgpack is the empty map', () => {
    expect(unpackb(fixture('metadata_empty.msgpack'))).toEqual({});
    expect(packb({})).toEqual(fixture('metadata_empty.msgpack'));
  });

  it('the same values encoded by vlakit are the same bytes', () => {
    const req = unpackb(fixture('request_libero.msgpack')) as Record<string, NdArray | string>;
    const img = (k: string) => NdArray.from((req[k] as NdArray).values() as Uint8Array, [224, 224, 3]);
    const request = packb({
      'observation/image': img('observation/image'),
      'observation/wrist_image': img('observation/wrist_image'),
      'observation/state': NdArray.from((req['observation/state'] as NdArray).values() as Float32Array),
      prompt: req.prompt as string,
    });
    expect(Buffer.from(request).equals(fixture('request_libero.msgpack'))).toBe(true);
    const rep = unpackb(fixture('reply_libero.msgpack')) as { actions: NdArray };
    const reply = packb({ actions: NdArray.from(rep.actions.values() as Float32Array, [10, 7]), server_timing: { infer_ms: 41.5 }, policy_timing: { infer_ms: 40.2 } });
    expect(Buffer.from(reply).equals(fixture('reply_libero.msgpack'))).toBe(true);
    // and the decoded tree packs back to the file
    for (const n of ['request_libero.msgpack', 'reply_libero.msgpack', 'metadata_empty.msgpack']) expect(Buffer.from(packb(unpackb(fixture(n), { keepFloats: true }) as Packable)).equals(fixture(n))).toBe(true);
  });
});

describe('msgpack-numpy: bytes written by hand from the format', () => {
  const arr = (data: string, dtype: string, shape: string) => `84 c4 0b ${ascii('__ndarray__')} c3 c4 04 ${ascii('data')} ${data} c4 05 ${ascii('dtype')} a3 ${ascii(dtype)} c4 05 ${ascii('shape')} ${shape}`;

  it('a 0-d float64 array, an empty [0, 3] float32 array, a bool array, a big-endian int16 array', () => {
    const zeroD = hex(arr('c4 08 000000000000f03f', '<f8', '90'));
    expect(packb(NdArray.from(new Float64Array([1]), []))).toEqual(zeroD);
    const z = unpackb(zeroD) as NdArray;
    expect([z.shape, [...z.numbers()]]).toEqual([[], [1]]);
    const empty = hex(arr('c4 00', '<f4', '92 00 03'));
    expect(packb(NdArray.from(new Float32Array(0), [0, 3]))).toEqual(empty);
    expect((unpackb(empty) as NdArray).shape).toEqual([0, 3]);
    const bools = hex(arr('c4 02 0100', '|b1', '91 02'));
    expect(packb(NdArray.from(new Uint8Array([1, 0]), [2], '|b1'))).toEqual(bools);
    expect([...(unpackb(bools) as NdArray).values()]).toEqual([1, 0]);
    const be = unpackb(hex(arr('c4 04 0102 fffe', '>i2', '91 02'))) as NdArray;
    expect([...be.values()]).toEqual([0x0102, -2]);
  });

  it('a numpy scalar, a unicode array, ints and floats as Python packs them', () => {
    // np.float32(1.5): {b"__npgeneric__": True, b"data": 1.5, b"dtype": "<f4"}
    const scalar = hex(`83 c4 0d ${ascii('__npgeneric__')} c3 c4 04 ${ascii('data')} cb 3ff8000000000000 c4 05 ${ascii('dtype')} a3 ${ascii('<f4')}`);
    expect(packb(new NpScalar('<f4', 1.5))).toEqual(scalar);
    expect(unpackb(scalar)).toEqual(new NpScalar('<f4', 1.5));
    // np.array(["ab", "c"]): <U2, UCS-4 little-endian, NUL-padded
    const u = hex(arr('c4 10 61000000 62000000 63000000 00000000', '<U2', '91 02'));
    expect(packb(NdArray.strings(['ab', 'c']))).toEqual(u);
    expect((unpackb(u) as NdArray).strings()).toEqual(['ab', 'c']);
    expect(packb([0, 127, 128, 255, 256, 65536, -1, -32, -33, -129, -32769, 2 ** 32, -(2 ** 31) - 1, 1.0, new Float64(1), 0.5])).toEqual(
      hex('dc0010 00 7f cc80 ccff cd0100 ce00010000 ff e0 d0df d1ff7f d2ffff7fff cf0000000100000000 d3ffffffff7fffffff 01 cb3ff0000000000000 cb3fe0000000000000'),
    );
  });

  it('malformed messages are refused with where and why', () => {
    expect(() => unpackb(hex('c1'))).toThrow(/E_MSGPACK at \(byte 0\): byte 0xc1 is never used/);
    expect(() => unpackb(hex('a5 6162'))).toThrow(/the message ends inside a value/);
    expect(() => unpackb(hex('92 01'))).toThrow(/an array of 2 items is longer than the message/);
    expect(() => unpackb(hex('01 02'))).toThrow(/1 bytes after the message's one value/);
    expect(() => unpackb(hex(arr('c4 03 000000', '<f4', '91 01')))).toThrow(/ndarray map is invalid: an ndarray of dtype <f4 and shape \[1\] holds 4 bytes, got 3/);
    expect(() => unpackb(hex(arr('c4 08 0000000000000000', '<c8', '91 01')))).toThrow(/unsupported numpy dtype "<c8"/);
    expect(() => unpackb(hex('81 90 01'))).toThrow(/a map key must be a string, bytes or a number, got an array/);
  });
});

// ---- property tests ----

const DTYPES: [string, (n: number) => fc.Arbitrary<NdArray>][] = (
  [
    ['|u1', Uint8Array], ['|i1', Int8Array], ['<u2', Uint16Array], ['<i2', Int16Array], ['<u4', Uint32Array], ['<i4', Int32Array],
    ['<f4', Float32Array], ['<f8', Float64Array], ['<i8', BigInt64Array], ['<u8', BigUint64Array], ['|b1', Uint8Array],
  ] as const
).map(([dtype, Ctor]) => [
  dtype,
  (n: number) => fc.uint8Array({ minLength: n * Ctor.BYTES_PER_ELEMENT, maxLength: n * Ctor.BYTES_PER_ELEMENT }).map((b) => {
    const bytes = dtype === '|b1' ? b.map((v) => v & 1) : b;
    return { bytes, n };
  }).map(({ bytes }) => new NdArray(dtype, [n], bytes)),
]);

const shapeArb = fc.array(fc.integer({ min: 0, max: 4 }), { minLength: 0, maxLength: 4 });
const ndArb: fc.Arbitrary<NdArray> = fc.tuple(shapeArb, fc.integer({ min: 0, max: DTYPES.length - 1 })).chain(([shape, d]) => {
  const n = shape.reduce((a, b) => a * b, 1);
  return DTYPES[d][1](n).map((a) => new NdArray(a.dtype, shape, a.data));
});
const leaf: fc.Arbitrary<Packable> = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.maxSafeInteger(),
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 64n - 1n }).filter((b) => b < BigInt(Number.MIN_SAFE_INTEGER) || b > BigInt(Number.MAX_SAFE_INTEGER)),
  fc.double({ noNaN: false }).map((x) => new Float64(x)),
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.string({ minLength: 250, maxLength: 300 }),
  fc.uint8Array({ maxLength: 300 }),
  ndArb,
  fc.string({ maxLength: 6 }).map((s) => NdArray.strings(s ? s.split('') : [])),
  fc.double().map((x) => new NpScalar('<f8', new Float64(x))),
);
const { tree } = fc.letrec<{ tree: Packable }>((tie) => ({
  tree: fc.oneof({ depthSize: 'small', withCrossShrink: true }, leaf, fc.array(tie('tree'), { maxLength: 20 }), fc.dictionary(fc.string({ maxLength: 12 }).filter((k) => k !== '__proto__' && k !== '__ndarray__' && k !== '__npgeneric__'), tie('tree'), { maxKeys: 18 })),
}));

describe('msgpack-numpy: properties', () => {
  it('unpackb(packb(x)) is x, and packs to the same bytes again', () => {
    fc.assert(
      fc.property(tree, (x) => {
        const bytes = packb(x);
        const back = unpackb(bytes, { keepFloats: true });
        expect(back).toEqual(x);
        expect(packb(back as Packable)).toEqual(bytes);
      }),
      { numRuns: 300 },
    );
  });

  it('values() reads back the typed array an array was made from, in C order', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 3 }), fc.integer(), (shape, seed) => {
        const n = shape.reduce((a, b) => a * b, 1);
        const f = Float32Array.from({ length: n }, (_, i) => Math.fround(Math.sin(seed + i) * 100));
        const a = unpackb(packb(NdArray.from(f, shape))) as NdArray;
        expect(a.shape).toEqual(shape);
        expect(a.values()).toEqual(f);
      }),
    );
  });

  it('any truncation of a message is refused, never misread', () => {
    fc.assert(
      fc.property(tree, fc.nat(), (x, cut) => {
        const bytes = packb(x);
        if (bytes.length < 2) return;
        expect(() => unpackb(bytes.subarray(0, cut % bytes.length))).toThrow(/E_MSGPACK/);
      }),
      { numRuns: 200 },
    );
  });
});
