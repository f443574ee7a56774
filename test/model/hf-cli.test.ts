/** The Hugging Face model commands through the real CLI: generate, export, model info, model init. */
import { copyFileSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { tempDir } from '../helpers.js';
import { readJsonFile } from '../../src/lib/io/json-file.js';
import { architectureOf } from '../../src/lib/model/arch/registry.js';
import { readSafetensorsDir, safetensorsSize, writeSafetensorsDir } from '../../src/lib/model/safetensors.js';
import { STORIES, STORIES_IDS } from './stories.js';

const BIN = path.resolve('bin/run.js');
const SMOLVLM = path.resolve('../shared/models/smolvlm-256m-instruct');

async function vlakit(args: string[]) {
  const r = await execa('node', [BIN, ...args], { reject: false, env: { NO_COLOR: '1' } });
  return { code: r.exitCode, out: r.stdout, err: r.stderr };
}

const dir = tempDir('vlakit-hfcli-');

/** The stories260K checkpoint re-written in `dtype`, in shards of at most `shard` bytes. */
async function copyAs(name: string, dtype: 'F32' | 'BF16', shard?: number): Promise<string> {
  const out = path.join(dir, name);
  await writeSafetensorsDir(out, readSafetensorsDir(STORIES).tensors, { dtype, maxShardBytes: shard });
  copyFileSync(path.join(STORIES, 'config.json'), path.join(out, 'config.json'));
  return out;
}

const gen = async (model: string, n = 40) => {
  const r = await vlakit(['generate', '--model', model, '--input-ids', '1', '--max-new-tokens', String(n), '--ignore-eos', '--json']);
  expect(r.err).toBe('');
  expect(r.code).toBe(0);
  return JSON.parse(r.out) as { ids: number[]; engine: string; prompt_ids: number[]; stop: string };
};

describe('vlakit generate / export on stories260K', () => {
  it('the checkpoint, a sharded copy and their ONNX exports all give run.c ids; a BF16 copy agrees across engines', async () => {
    const r = await gen(STORIES);
    expect(r).toMatchObject({ engine: 'tfjs', prompt_ids: [1], ids: STORIES_IDS, stop: 'length' });
    const sharded = await copyAs('sharded', 'F32', 100_000);
    expect((await gen(sharded)).ids).toEqual(STORIES_IDS);
    const ex = await vlakit(['export', STORIES, '-o', path.join(dir, 'onnx')]);
    expect(ex.code, ex.err).toBe(0);
    expect(ex.err).toMatch(/parity with the checkpoint \(3 cases\): max \|logit diff\| \S+, greedy tokens identical/);
    const o = await gen(path.join(dir, 'onnx'));
    expect(o).toMatchObject({ engine: 'onnxruntime', ids: STORIES_IDS });
    // BF16 rounds every weight: the continuation departs from the float32 one (after 10 tokens here), but the
    // checkpoint and its export agree on it, and the first tokens are run.c's
    const bf16 = await copyAs('bf16', 'BF16', 200_000);
    const b = await gen(bf16);
    expect(b.ids.slice(0, 10)).toEqual(STORIES_IDS.slice(0, 10));
    expect((await vlakit(['export', bf16, '-o', path.join(dir, 'bf16-onnx')])).code).toBe(0);
    expect((await gen(path.join(dir, 'bf16-onnx'))).ids).toEqual(b.ids);
  });

  it('usage errors exit 2 with the rule; a broken checkpoint is a data error naming the tensor', async () => {
    for (const [args, msg] of [
      [['--input-ids', '1,x'], /--input-ids must be comma-separated integers >= 0/],
      [['--input-ids', '1', '--prompt', 'hi'], /--prompt and --input-ids|--input-ids and --prompt/],
      [['--prompt', 'Once'], /no tokenizer\.json: give the prompt as --input-ids/],
      [['--input-ids', '999'], /token ids must be integers in \[0, 512\)/],
      [['--input-ids', '1', '--top-p', '0'], /--top-p must be a number > 0 and <= 1, got "0"/],
    ] as const) {
      const r = await vlakit(['generate', '--model', STORIES, ...args]);
      expect(r.code, r.err).toBe(2);
      expect(r.err).toMatch(msg);
      expect(r.err).not.toMatch(/internal error|\n\s+at /);
    }
    const broken = await copyAs('broken', 'F32');
    const cfg = JSON.parse(readFileSync(path.join(broken, 'config.json'), 'utf8'));
    (await import('node:fs')).writeFileSync(path.join(broken, 'config.json'), JSON.stringify({ ...cfg, intermediate_size: 100 }));
    const r = await vlakit(['generate', '--model', broken, '--input-ids', '1']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/E_MODEL .*tensor model\.layers\.0\.mlp\.down_proj\.weight has shape \[64,172\]; the config says \[64,100\]|tensor model\.layers\.0\.mlp\.gate_proj\.weight has shape \[172,64\]; the config says \[100,64\]/);
  });
});

describe('vlakit model', () => {
  it('info describes a checkpoint without reading its weights, and says why vlakit cannot run a config alone', async () => {
    const r = await vlakit(['model', 'info', STORIES, '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({ model_type: 'llama', classes: ['LlamaForCausalLM'], supported: true, parameters: 260032, tensors: 47, dtypes: { F32: 260032 } });
    const s = await vlakit(['model', 'info', SMOLVLM]);
    expect(s.code).toBe(1);
    expect(s.out).toMatch(/idefics3 \(Idefics3ForConditionalGeneration\)/);
    expect(s.out).toMatch(/processor files: tokenizer\.json, tokenizer_config\.json, special_tokens_map\.json, chat_template\.json, preprocessor_config\.json/);
    expect(s.out).toMatch(/not supported: no model\.safetensors/);
  });

  it("init from SmolVLM-256M-Instruct's real config accounts for the real BF16 file's 513,028,808 bytes exactly", () => {
    // The size of the file init writes (its header included) follows from the tensor names, shapes and order: the
    // real model.safetensors is 513,028,808 bytes, so an exact match pins transformers' Idefics3 names and shapes,
    // the untied head and the header layout ({"format": "pt"} metadata).
    const raw = readJsonFile(path.join(SMOLVLM, 'config.json'), z.record(z.string(), z.unknown()));
    const arch = architectureOf(raw);
    const specs = arch.tensors(arch.parseConfig(raw));
    expect(specs.reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0)).toBe(256_484_928);
    expect(specs).toHaveLength(471);
    expect(safetensorsSize(new Map(specs.map((t) => [t.name, t.shape])), 'BF16', { format: 'pt' })).toBe(513_028_808);
  });

  it('init writes a loadable checkpoint at a config, BF16 and sharded, of the size computed above; refuses an existing -o without --overwrite', async () => {
    const cfg = path.resolve('test/fixtures/reference/idefics3-tiny/config.json');
    const out = path.join(dir, 'init');
    const r = await vlakit(['model', 'init', '--config', cfg, '--dtype', 'bf16', '--max-shard-size', '100KB', '--seed', '3', '-o', out]);
    expect(r.code, r.err).toBe(0);
    const info = JSON.parse((await vlakit(['model', 'info', out, '--json'])).out);
    expect(info).toMatchObject({ model_type: 'idefics3', supported: true, dtypes: { BF16: info.parameters } });
    expect(info.files.length).toBeGreaterThan(1);
    const raw = readJsonFile(cfg, z.record(z.string(), z.unknown()));
    const arch = architectureOf(raw);
    const st = readSafetensorsDir(out);
    expect(st.tensors.size).toBe(arch.tensors(arch.parseConfig(raw)).length);
    const total = info.files.reduce((n: number, f: string) => n + statSync(path.join(out, f)).size, 0);
    expect(total).toBeGreaterThan(info.parameters * 2);
    const again = await vlakit(['model', 'init', '--config', cfg, '-o', out]);
    expect(again.code).toBe(2);
    expect(again.err).toMatch(/exists.*--overwrite/);
    expect((await vlakit(['model', 'init', '--config', cfg, '-o', out, '--overwrite'])).code).toBe(0);
  });
});
