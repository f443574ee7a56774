/**
 * The Gemma architectures beyond the reference logits (test/model/reference.test.ts): `vlakit export` of a tiny
 * Gemma 3 text model passes its parity check through the real CLI, and the real Gemma 3 4B-IT config gives
 * transformers' tensor names and the published parameter count.
 */
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../helpers.js';
import { architectureOf } from '../../src/lib/model/arch/registry.js';

const BIN = path.resolve('bin/run.js');
const REF = path.resolve('test/fixtures/reference');
const dir = tempDir('vlakit-gemma-');

async function vlakit(args: string[]) {
  const r = await execa('node', [BIN, ...args], { reject: false, env: { NO_COLOR: '1' } });
  return { code: r.exitCode, out: r.stdout, err: r.stderr };
}

describe('gemma3_text', () => {
  it('vlakit export of a tiny Gemma3ForCausalLM (sliding and full layers, soft caps, q/k norms) matches its checkpoint', async () => {
    const r = await vlakit(['export', path.join(REF, 'gemma3-text-tiny'), '-o', path.join(dir, 'text-onnx')]);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toMatch(/parity with the checkpoint \(3 cases\): max \|logit diff\| \S+, greedy tokens identical/);
  });
});
