import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeJsonl, decodeUtf8Strict, encodeJsonl, floatFromJson, floatToJson, shortFloat32 } from '../../src/lib/io/index.js';
import type { VlakitError } from '../../src/lib/errors.js';
import { firstInvalidUtf8 } from '../../src/lib/io/jsonl.js';
import { chunksOf, collect } from '../helpers.js';

const jsonValue = fc.jsonValue({ maxDepth: 3 });

describe('JSON Lines', () => {
  it('any split of the bytes (inside UTF-8 sequences too) gives the same values', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(jsonValue, { maxLength: 10 }), fc.array(fc.integer({ min: 1, max: 7 }), { minLength: 1, maxLength: 5 }), async (values, sizes) => {
        const text = (await collect(encodeJsonl(values))).join('');
        const got = await collect(decodeJsonl(chunksOf(Buffer.from(text), sizes)));
        expect(got.map((l) => l.value)).toEqual(values.map((v) => JSON.parse(JSON.stringify(v))));
      }),
      { numRuns: 200 },
    );
  });

  it('numbers lines from 1, skips blank lines, accepts CRLF and a last line without newline', async () => {
    const text = '{"a":1}\r\n\n  \n{"b":"é"}\n[3]';
    const got = await collect(decodeJsonl(chunksOf(Buffer.from(text), [3])));
    expect(got).toEqual([
      { value: { a: 1 }, line: 1 },
      { value: { b: 'é' }, line: 4 },
      { value: [3], line: 5 },
    ]);
  });

  it('reports the line of invalid JSON, or skips and counts it when asked', async () => {
    const text = '{"a":1}\n{"a":\n{"a":3}\n';
    await expect(collect(decodeJsonl(chunksOf(Buffer.from(text), [5]), { source: 'x.jsonl' }))).rejects.toThrow(
      /E_JSONL_PARSE at line 2 of x\.jsonl: invalid JSON/,
    );
    const skipped: string[] = [];
    const got = await collect(decodeJsonl(chunksOf(Buffer.from(text), [5]), { skipInvalid: true, onSkip: (e) => skipped.push(e.message) }));
    expect(got.map((l) => l.line)).toEqual([1, 3]);
    expect(skipped).toHaveLength(1);
  });

  it('float32 values print as the shortest decimal that reads back to the same float32', () => {
    fc.assert(
      fc.property(fc.float({ noNaN: true, noDefaultInfinity: true }), (f) => {
        const v = Math.fround(f);
        const j = floatToJson(v);
        expect(Math.fround(floatFromJson(JSON.parse(JSON.stringify(j)), 'x'))).toBe(v);
        const s = typeof j === 'number' ? j : 0;
        const mantissa = s.toExponential().split('e')[0].replace(/[-.]/g, '');
        expect(mantissa.length).toBeLessThanOrEqual(9);
      }),
      { numRuns: 2000 },
    );
    expect(shortFloat32(Math.fround(0.1))).toBe(0.1);
    expect(shortFloat32(Math.fround(0.2916666567325592))).toBe(0.29166666);
  });
});

describe('JSON Lines are UTF-8, strictly', () => {
  // any code point but lone surrogates, astral planes included: 1- to 4-byte sequences
  const text = fc.string({ unit: 'binary', maxLength: 12 });
  const record = fc.dictionary(text, fc.oneof(text, fc.integer()), { maxKeys: 3 });
  const sizes = fc.array(fc.integer({ min: 1, max: 7 }), { minLength: 1, maxLength: 5 });

  it('any split of valid UTF-8 (through multi-byte characters, one byte at a time included) decodes the same', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(record, { maxLength: 8 }), sizes, async (values, cut) => {
        const bytes = Buffer.from(values.map((v) => JSON.stringify(v)).join('\n'));
        const got = await collect(decodeJsonl(chunksOf(bytes, cut)));
        expect(got.map((l) => l.value)).toEqual(values);
      }),
      { numRuns: 300 },
    );
    const one = Buffer.from('{"a":"h\u00e9\u20ac\u{1F600}"}\n{"b":"\u{10FFFF}"}');
    expect((await collect(decodeJsonl(chunksOf(one, [1])))).map((l) => l.value)).toEqual([{ a: 'h\u00e9\u20ac\u{1F600}' }, { b: '\u{10FFFF}' }]);
  });

  // ill-formed sequences: a lone continuation byte, bytes never in UTF-8, an overlong form, a surrogate, a code
  // point above U+10FFFF, sequences cut short
  const INVALID = [[0x80], [0xff], [0xfe], [0xc0, 0xaf], [0xc1, 0x81], [0xe0, 0x80, 0xaf], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xf5, 0x80, 0x80, 0x80], [0xe2, 0x82], [0xf0, 0x9f, 0x98], [0xc3]];

  it('an invalid byte anywhere is E_JSONL_PARSE naming the file, the line and the byte offset; --skip-corrupt skips and counts the line', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(record, { minLength: 1, maxLength: 6 }),
        fc.nat(),
        fc.nat(),
        fc.constantFrom(...INVALID),
        sizes,
        async (values, lineSeed, posSeed, bad, cut) => {
          const lines = values.map((v) => JSON.stringify(v));
          const at = lineSeed % lines.length;
          const chars = [...lines[at]]; // code points: the invalid bytes go between two characters
          const pos = posSeed % (chars.length + 1);
          const before = Buffer.from(lines.slice(0, at).map((l) => `${l}\n`).join('') + chars.slice(0, pos).join(''));
          const bytes = Buffer.concat([before, Buffer.from(bad), Buffer.from(chars.slice(pos).join('') + '\n' + lines.slice(at + 1).join('\n'))]);
          const err = await collect(decodeJsonl(chunksOf(bytes, cut), { source: 'x.jsonl' })).then(
            () => undefined,
            (e: VlakitError) => e,
          );
          expect(err?.code).toBe('E_JSONL_PARSE');
          expect(err?.context).toEqual({ file: 'x.jsonl', line: at + 1, offset: before.length });
          expect(err?.message).toMatch(new RegExp(`^E_JSONL_PARSE at line ${at + 1} \\(byte ${before.length}\\) of x\\.jsonl: invalid UTF-8 \\(0x${bad[0].toString(16)}`));

          const skipped: VlakitError[] = [];
          const got = await collect(decodeJsonl(chunksOf(bytes, cut), { source: 'x.jsonl', skipInvalid: true, onSkip: (e) => skipped.push(e) }));
          expect(got.map((l) => l.value)).toEqual(values.filter((_, i) => i !== at));
          expect(got.map((l) => l.line)).toEqual(values.map((_, i) => i + 1).filter((l) => l !== at + 1));
          expect(skipped.map((e) => e.context)).toEqual([err?.context]);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('the last line without a newline is decoded strictly too, and U+FFFD itself is fine', async () => {
    const bytes = Buffer.concat([Buffer.from('{"a":"\uFFFD"}\n{"b":"'), Buffer.from([0xe9]), Buffer.from('"}')]);
    await expect(collect(decodeJsonl(chunksOf(bytes, [3]), { source: 'y.jsonl' }))).rejects.toThrow(/E_JSONL_PARSE at line 2 \(byte 18\) of y\.jsonl: invalid UTF-8 \(0xe9 0x22 0x7d at byte 6 of the line\)/);
    expect((await collect(decodeJsonl([bytes.subarray(0, 12)])))[0].value).toEqual({ a: '\uFFFD' });
  });

  it('firstInvalidUtf8 finds exactly where a strict decoder first fails', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 24 }), (b) => {
        const at = firstInvalidUtf8(b);
        const ok = (x: Uint8Array): boolean => {
          try {
            decodeUtf8Strict(x);
            return true;
          } catch {
            return false;
          }
        };
        if (at < 0) {
          expect(ok(b)).toBe(true);
        } else {
          expect(ok(b)).toBe(false);
          // the bytes before it are whole characters, and no sequence starting there is valid
          expect(ok(b.subarray(0, at))).toBe(true);
          for (let n = 1; n <= 4 && at + n <= b.length; n++) expect(ok(b.subarray(at, at + n))).toBe(false);
        }
      }),
      { numRuns: 3000 },
    );
  });
});
