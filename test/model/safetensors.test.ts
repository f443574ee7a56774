import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bf16ToF32, decodeSafetensors, encodeSafetensors, f16ToF32, f32ToBf16, f32ToF16, readSafetensorsDir, safetensorsSize, writeSafetensorsDir, type NamedArray } from '../../src/lib/model/safetensors.js';

const STORIES = path.resolve('../shared/models/stories260k');

describe('half-precision conversions', () => {
  it('decode known bit patterns (IEEE half and bfloat16 tables)', () => {
    expect([0x3c00, 0xc000, 0x7bff, 0x0001, 0x0400, 0x3555, 0x7c00, 0xfc00, 0x8000].map(f16ToF32)).toEqual([1, -2, 65504, 2 ** -24, 2 ** -14, 0.333251953125, Infinity, -Infinity, -0]);
    expect(Number.isNaN(f16ToF32(0x7e00))).toBe(true);
    expect([0x3f80, 0xc000, 0x4049, 0x7f80, 0x0001].map(bf16ToF32)).toEqual([1, -2, 3.140625, Infinity, 2 ** -133]);
  });

  it('encode is the exact inverse of decode for every one of the 65536 bit patterns (NaNs stay NaN)', () => {
    const bad: string[] = [];
    for (let h = 0; h < 65536; h++) {
      const x = f16ToF32(h);
      const back = f32ToF16(x);
      if (Number.isNaN(x) ? !Number.isNaN(f16ToF32(back)) : back !== h) bad.push(`f16 ${h.toString(16)} -> ${back.toString(16)}`);
      const y = bf16ToF32(h);
      const back2 = f32ToBf16(y);
      if (Number.isNaN(y) ? !Number.isNaN(bf16ToF32(back2)) : back2 !== h) bad.push(`bf16 ${h.toString(16)} -> ${back2.toString(16)}`);
    }
    expect(bad.slice(0, 5), `${bad.length} mismatches`).toEqual([]);
  });

  it('rounds float32 to the nearest representable value, ties to even', () => {
    // 1 + 2^-11 is halfway between the half values 1 and 1 + 2^-10: ties go to the even mantissa (1).
    expect(f32ToF16(1 + 2 ** -11)).toBe(0x3c00);
    expect(f32ToF16(1 + 3 * 2 ** -11)).toBe(0x3c02);
    expect(f32ToF16(65520)).toBe(0x7c00); // rounds past the largest half
    expect(f32ToBf16(1 + 2 ** -8)).toBe(0x3f80);
    expect(f32ToBf16(1 + 3 * 2 ** -8)).toBe(0x3f82);
    fc.assert(
      fc.property(fc.float({ noNaN: true, noDefaultInfinity: true, min: -60000, max: 60000 }), (x) => {
        const x32 = Math.fround(x);
        const h = f16ToF32(f32ToF16(x32));
        // the nearest half is never further than half a step: 2^-11 relative (normal), 2^-25 absolute (subnormal)
        expect(Math.abs(h - x32)).toBeLessThanOrEqual(Math.max(Math.abs(x32) * 2 ** -11, 2 ** -25));
        const b = bf16ToF32(f32ToBf16(x32));
        expect(Math.abs(b - x32)).toBeLessThanOrEqual(Math.max(Math.abs(x32) * 2 ** -8, 2 ** -134));
      }),
    );
  });
});

describe('safetensors files', () => {
  const tensors = new Map<string, NamedArray>([
    ['b.weight', { shape: [2, 3], data: Float32Array.from([1, -2, 0.5, 3.25, -0.125, 100]) }],
    ['a.bias', { shape: [3], data: Float32Array.from([0, 1, 2]) }],
  ]);

  it('round-trips F32, F16 and BF16 (values exact in all three here), header padded to 8 bytes', () => {
    for (const dtype of ['F32', 'F16', 'BF16'] as const) {
      const buf = encodeSafetensors(tensors, { format: 'pt' }, { dtype });
      expect(Number(buf.readBigUInt64LE(0)) % 8).toBe(0);
      expect(buf.length).toBe(safetensorsSize(new Map([...tensors].map(([n, t]) => [n, t.shape])), dtype, { format: 'pt' }));
      const { tensors: back, dtypes } = decodeSafetensors(buf);
      expect([...back.keys()].sort()).toEqual(['a.bias', 'b.weight']);
      expect(Array.from(back.get('b.weight')!.data)).toEqual([1, -2, 0.5, 3.25, -0.125, 100]);
      expect(dtypes.get('a.bias')).toBe(dtype);
    }
  });

  it('reads a real F32 checkpoint (stories260K) and the same tensors from BF16 shards through the index', async () => {
    const one = readSafetensorsDir(STORIES);
    expect(one.tensors.get('model.embed_tokens.weight')!.shape).toEqual([512, 64]);
    expect(one.tensors.has('lm_head.weight')).toBe(false); // tied
    const dir = mkdtempSync(path.join(os.tmpdir(), 'vlakit-st-'));
    const files = await writeSafetensorsDir(dir, one.tensors, { dtype: 'BF16', maxShardBytes: 100_000 });
    expect(files.length).toBeGreaterThan(3);
    expect(readdirSync(dir)).toContain('model.safetensors.index.json');
    const sharded = readSafetensorsDir(dir);
    expect([...sharded.tensors.keys()].sort()).toEqual([...one.tensors.keys()].sort());
    for (const [name, t] of one.tensors) {
      const b = sharded.tensors.get(name)!;
      expect(b.shape).toEqual(t.shape);
      for (let i = 0; i < t.data.length; i += 97) expect(b.data[i]).toBe(bf16ToF32(f32ToBf16(t.data[i])));
    }
  });

  it('refuses an index whose shards disagree with it, and unknown dtypes, naming the tensor', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'vlakit-st-'));
    await writeSafetensorsDir(dir, tensors, { maxShardBytes: 16 });
    const idx = path.join(dir, 'model.safetensors.index.json');
    const j = JSON.parse(readFileSync(idx, 'utf8'));
    expect(j.weight_map).toEqual({ 'a.bias': 'model-00001-of-00002.safetensors', 'b.weight': 'model-00002-of-00002.safetensors' });
    j.weight_map['a.bias'] = 'model-00002-of-00002.safetensors';
    writeFileSync(idx, JSON.stringify(j));
    expect(() => readSafetensorsDir(dir)).toThrow(/E_MODEL in .*index\.json: 1 tensors listed in the index are in no shard \(first: a\.bias\)/);
    j.weight_map = { 'a.bias': 'model-00001-of-00002.safetensors' };
    writeFileSync(idx, JSON.stringify(j));
    expect(() => readSafetensorsDir(dir)).not.toThrow();
    j.weight_map = { 'a.bias': 'model-00002-of-00002.safetensors', 'b.weight': 'model-00002-of-00002.safetensors' };
    writeFileSync(idx, JSON.stringify(j));
    expect(() => readSafetensorsDir(dir)).toThrow(/1 tensors listed in the index are in no shard/);
    const buf = encodeSafetensors(tensors);
    const text = buf.toString('latin1').replace('"dtype":"F32"', '"dtype":"I64"');
    expect(() => decodeSafetensors(Buffer.from(text, 'latin1'), 'x.safetensors')).toThrow(/tensor a\.bias has dtype I64/);
  });
});
