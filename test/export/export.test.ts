import { cpSync, existsSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { TextCodec, type TrainingExample } from '../../src/lib/actions/index.js';
import { checkModel, checkParity, decodeModel, encodeModel, exportModel, parityCases } from '../../src/lib/export/index.js';
import type { ValueInfoProto } from '../../src/lib/export/onnx.js';
import { OrtRunner, generate, openBuiltinModel } from '../../src/lib/infer/index.js';
import { TfjsRunner } from '../../src/lib/infer/tfjs.js';
import { selectBackend } from '../../src/lib/model/backend.js';
import { writeOutputDir } from '../../src/lib/io/outputs.js';
import { writeModelFiles } from '../../src/lib/model/checkpoint.js';
import { type TextConfig, preset } from '../../src/lib/model/config.js';
import { VlaModel } from '../../src/lib/model/model.js';
import { buildTokenizer } from '../../src/lib/model/tokenizer.js';
import { prepare } from '../../src/lib/train/data.js';
import { trainSft } from '../../src/lib/train/sft.js';
import { tempDir } from '../helpers.js';
import { toyExamples } from '../model/examples.js';
import { StatsAccumulator } from '../../src/lib/actions/stats.js';

/** Valid action statistics (loadCheckpoint validates them). */
const STATS = (() => {
  const acc = new StatsAccumulator();
  for (const a of [[0, 0, 0], [0.01, -0.02, 1]]) acc.add(a);
  return acc.result();
})();

const dir = tempDir();
const ck = path.join(dir, 'ck'); // a random 2-camera GQA model with LoRA adapters (B != 0)
const out = path.join(dir, 'onnx');
let examples: TrainingExample[];

beforeAll(async () => {
  await selectBackend('wasm');
  examples = await toyExamples();
  const tok = await buildTokenizer(['grasp the red block', 'move the gripper left 0.012', 'Subtask: pick up the carrot and put it on the plate'], 160);
  const cfg = { ...preset('tiny', tok.vocabSize, 2), initializer_range: 0.05 };
  const m = VlaModel.init(cfg, 7);
  m.addLora(4, 8, ['q', 'k', 'v', 'o', 'gate', 'up', 'down'], 7);
  let s = 0;
  for (const [n, v] of m.params) if (n.includes('lora_B')) v.assign(tf.randomNormal(v.shape, 0, 0.05, 'float32', s++));
  await writeOutputDir(ck, (d) => writeModelFiles(d, m, tok.json, { actionCodec: { codec: 'text', decimals: 3 }, actionStats: STATS }), { overwrite: true });
  m.dispose();
  await exportModel(ck, out, { attentions: true });
}, 120_000);

/** A random one-camera tiny checkpoint whose text config differs from the preset's by `text`, written under dir/name. */
async function tinyCheckpoint(name: string, text: Partial<TextConfig>, seed: number, initializerRange?: number): Promise<string> {
  const tok = await buildTokenizer(['grasp the red block', 'move the gripper left'], 80);
  const base = preset('tiny', tok.vocabSize, 1);
  const m = VlaModel.init({ ...base, ...(initializerRange ? { initializer_range: initializerRange } : {}), text_config: { ...base.text_config, ...text } }, seed);
  const at = path.join(dir, name);
  await writeOutputDir(at, (d) => writeModelFiles(d, m, tok.json), { overwrite: true });
  m.dispose();
  return at;
}

/** A float32 export against its checkpoint: logits within 1e-4, the same greedy ids with and without the cache. */
async function expectExactParity(ckDir: string, exportDir: string, cases: ReturnType<typeof parityCases>, maxNewTokens: number): Promise<void> {
  const a = await openBuiltinModel(ckDir);
  const b = await openBuiltinModel(exportDir);
  const r = await checkParity(a, b, cases, maxNewTokens);
  expect(r.maxAbsDiff).toBeLessThanOrEqual(1e-4);
  expect(r.greedyMatch).toBe(true);
  await a.dispose();
  await b.dispose();
}

describe('vlakit export: the files', () => {
  it('writes both graphs over one external data file, with the config, tokenizer and stats beside them', () => {
    const cfg = JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8'));
    expect(cfg.vlakit.export).toMatchObject({ format: 'onnx', opset: 17, ops: 'onnxruntime', graphs: { prefill: 'prefill.onnx', decode: 'decode.onnx', prefill_attentions: 'prefill_attentions.onnx', decode_attentions: 'decode_attentions.onnx' }, external_data: 'model.onnx_data', attentions: true, lora_merged: true });
    expect(cfg.vlakit.action_codec).toEqual({ codec: 'text', decimals: 3 });
    expect(JSON.parse(readFileSync(path.join(out, 'action_stats.json'), 'utf8'))).toEqual(STATS);
    expect(readFileSync(path.join(out, 'tokenizer.json'), 'utf8')).toBe(readFileSync(path.join(ck, 'tokenizer.json'), 'utf8'));
    const prefill = decodeModel(readFileSync(path.join(out, 'prefill.onnx')));
    const decode = decodeModel(readFileSync(path.join(out, 'decode.onnx')));
    expect(prefill.graph!.input!.map((i) => i.name)).toEqual(['pixel_values', 'input_ids']);
    const past = ['past_key_values.0.key', 'past_key_values.0.value', 'past_key_values.1.key', 'past_key_values.1.value'];
    expect(decode.graph!.input!.map((i) => i.name)).toEqual(['input_ids', ...past, 'attention_mask']); // fused: the mask says how much of the past counts
    const dims = (vi: ValueInfoProto) => vi.type!.tensorType!.shape!.dim!.map((d) => d.dimParam || Number(d.dimValue));
    expect(dims(decode.graph!.output!.find((o) => o.name === 'present.0.key')!)).toEqual(['batch_size', 2, 'max(past_sequence_length, total_sequence_length)', 8]);
    const kv = ['present.0.key', 'present.0.value', 'present.1.key', 'present.1.value'];
    const fresh = ['new_key_values.0.key', 'new_key_values.0.value', 'new_key_values.1.key', 'new_key_values.1.value'];
    expect(decode.graph!.output!.map((o) => o.name)).toEqual(['logits', ...kv, ...fresh]);
    const withAtt = decodeModel(readFileSync(path.join(out, 'decode_attentions.onnx')));
    expect(withAtt.graph!.output!.map((o) => o.name)).toEqual(['logits', ...kv, 'attentions.0', 'attentions.1', ...fresh]);
    // the fast pair uses onnxruntime's fused operators; the attention pair only the default domain
    expect(decode.graph!.node!.map((n) => n.opType)).toContain('GroupQueryAttention');
    expect(decode.opsetImport!.map((x) => [x.domain, Number(x.version)])).toEqual([['', 17], ['com.microsoft', 1]]);
    expect(withAtt.graph!.node!.every((n) => !n.domain)).toBe(true);
    expect(withAtt.opsetImport!.map((x) => x.domain)).toEqual(['']);
    // weights live outside the graph files; no LoRA tensors survive the merge
    for (const g of [prefill, decode]) {
      for (const t of g.graph!.initializer!) {
        expect(t.name).not.toMatch(/lora/);
        if (t.dims!.map(Number).reduce((a, b) => a * b, 1) > 64) expect(t.dataLocation).toBe(1);
      }
    }
  });

  it('passes the structural check: opset 17, every input produced, every output shape inferred and as declared', () => {
    for (const [f, outputs] of [['prefill.onnx', 5], ['decode.onnx', 9], ['prefill_attentions.onnx', 7], ['decode_attentions.onnx', 11]] as const) {
      const r = checkModel(decodeModel(readFileSync(path.join(out, f))), out);
      expect(r.problems).toEqual([]);
      expect(r.opset).toBe(17);
      expect(r.unchecked).toEqual([]);
      expect(r.outputsUnknown).toEqual([]);
      expect(r.outputsChecked).toBe(outputs); // logits, 4 present, (2 attentions), (+ 4 new key/values in decode)
    }
  });

  it('runs from the directory alone (copied away from its checkpoint)', async () => {
    const alone = path.join(dir, 'alone');
    cpSync(out, alone, { recursive: true });
    const r = await openBuiltinModel(alone);
    expect(r.info.engine).toBe('onnxruntime');
    expect(r.actionCodec).toEqual({ codec: 'text', decimals: 3 });
    const [c] = parityCases(32, 2);
    const g = await generate(r, c.pixels, c.prompt, { maxNewTokens: 5 });
    expect(g.ids.length + (g.stop === 'eos' ? 1 : 0)).toBeGreaterThan(0);
    await r.dispose();
    rmSync(alone, { recursive: true });
  });
});

describe('parity: onnxruntime vs tfjs on the same checkpoint', () => {
  it('logits within 1e-4, identical greedy ids with and without the KV cache, for several prompts and images', async () => {
    const a = await openBuiltinModel(ck);
    const b = await openBuiltinModel(out);
    const cases = parityCases(32, 2, 3, ['grasp the red block', 'move the gripper left', 'Subtask: pick up the carrot', 'the plate']);
    const r = await checkParity(a, b, cases, 12);
    expect(r.cases).toBe(4);
    expect(r.maxAbsDiff).toBeLessThanOrEqual(1e-4);
    expect(r.maxAbsDiff).toBeGreaterThan(0); // two engines, so not bit-identical: the comparison is real
    expect(r.mismatches).toEqual([]);
    await a.dispose();
    await b.dispose();
  });

  it('refuses an export over its own checkpoint; a head size onnxruntime cannot fuse falls back to standard operators', async () => {
    await expect(exportModel(ck, ck)).rejects.toThrow(/overlap: the export would replace the checkpoint/);
    await expect(exportModel(ck, path.dirname(ck))).rejects.toThrow(/overlap/);
    const odd = await tinyCheckpoint('odd', { hidden_size: 48, num_attention_heads: 4, num_key_value_heads: 2 }, 1); // head size 12
    const res = await exportModel(odd, `${odd}-onnx`);
    expect(res.ops).toBe('standard');
    const a = await openBuiltinModel(odd);
    const b = await openBuiltinModel(`${odd}-onnx`);
    expect((await checkParity(a, b, parityCases(32, 1, 2).slice(0, 1), 6)).greedyMatch).toBe(true);
    await a.dispose();
    await b.dispose();
  });

  it('a head size that is a multiple of 16: GroupQueryAttention applies the rotary embedding itself, and matches', async () => {
    const h16 = await tinyCheckpoint('h16', { hidden_size: 64, num_attention_heads: 4, num_key_value_heads: 2, intermediate_size: 96 }, 5, 0.05); // head size 16
    const res = await exportModel(h16, `${h16}-onnx`);
    expect(res.ops).toBe('onnxruntime');
    const nodes = decodeModel(readFileSync(path.join(`${h16}-onnx`, 'decode.onnx'))).graph!.node!;
    expect(nodes.filter((n) => n.opType === 'RotaryEmbedding')).toEqual([]);
    expect(nodes.filter((n) => n.opType === 'GroupQueryAttention').every((n) => n.attribute!.some((a) => a.name === 'do_rotary' && Number(a.i) === 1))).toBe(true);
    await expectExactParity(h16, `${h16}-onnx`, parityCases(32, 1, 6), 24);
  });

  it('an export with --ops standard (default domain only) matches too', async () => {
    const std = path.join(dir, 'standard');
    await exportModel(ck, std, { ops: 'standard' });
    const g = decodeModel(readFileSync(path.join(std, 'decode.onnx')));
    expect(g.graph!.node!.every((n) => !n.domain)).toBe(true);
    await expectExactParity(ck, std, parityCases(32, 2, 5), 10);
  });

  it('attention rows agree and are distributions over image + text positions', async () => {
    const a = await openBuiltinModel(ck);
    const b = await openBuiltinModel(out);
    const [c] = parityCases(32, 2, 9);
    const ga = await generate(a, c.pixels, c.prompt, { maxNewTokens: 4, attentions: true });
    const gb = await generate(b, c.pixels, c.prompt, { maxNewTokens: 4, attentions: true });
    expect(gb.attentions!.length).toBe(ga.attentions!.length);
    let diff = 0;
    ga.attentions!.forEach((step, s) => step.forEach((layer, l) => layer.forEach((head, h) => head.forEach((x, k) => (diff = Math.max(diff, Math.abs(x - gb.attentions![s][l][h][k])))))));
    expect(diff).toBeLessThan(1e-5);
    const ids = b.tokenizer.encode(c.prompt).length + 2; // <bos> prompt <sep>
    expect(gb.attentions![0][0][0].length).toBe(2 * 16 + ids); // the prefill's last query: 32 image tokens + the prompt
    const second = gb.attentions![1][0][0]; // second generated token, layer 0, head 0: one more key
    expect(second.length).toBe(2 * 16 + ids + 1);
    expect(second.reduce((x, y) => x + y, 0)).toBeCloseTo(1, 5);
    await a.dispose();
    await b.dispose();
  });

  it('a trained LoRA checkpoint: the export says the same target text as the checkpoint', async () => {
    const base = { preset: 'tiny' as const, vocabSize: 128, batchSize: 2, lr: 1e-2, warmup: 0, seed: 3, codec: new TextCodec(3), clip: 0 };
    await trainSft({ ...base, examples: examples.slice(0, 2), outDir: path.join(dir, 'sft'), steps: 100 });
    await trainSft({ ...base, examples: examples.slice(0, 2), outDir: path.join(dir, 'sft-lora'), init: path.join(dir, 'sft'), steps: 10, lr: 1e-3, lora: { r: 4, alpha: 8, targets: ['q', 'v', 'up'] } });
    await exportModel(path.join(dir, 'sft-lora'), path.join(dir, 'sft-onnx'));
    const a = await openBuiltinModel(path.join(dir, 'sft-lora'));
    const b = await openBuiltinModel(path.join(dir, 'sft-onnx'));
    const [item] = await prepare(examples.slice(0, 1), a.tokenizer, { cameras: 1, imageSize: 32, maxTokens: 200 });
    const before = tf.memory().numTensors;
    const ga = await generate(a, item.pixels, 'Subtask: grasp the red block', { maxNewTokens: 40 });
    expect(tf.memory().numTensors).toBe(before); // no tensor leak on the tfjs path
    const gb = await generate(b, item.pixels, 'Subtask: grasp the red block', { maxNewTokens: 40 });
    expect(gb.text).toBe(ga.text);
    expect(gb.text).toBe('the red block is ahead\n[[0.012, -0.004, 0.000, 1]]');
    const r = await checkParity(a, b, [{ prompt: 'Subtask: grasp the blue block', pixels: item.pixels }], 30);
    expect(r.maxAbsDiff).toBeLessThanOrEqual(1e-4);
    expect(r.greedyMatch).toBe(true);
    await a.dispose();
    await b.dispose();
  }, 120_000);

  it('an export without --attentions says so when attentions are asked for', async () => {
    const b = await openBuiltinModel(path.join(dir, 'sft-onnx'));
    const [c] = parityCases(32, 1);
    await expect(generate(b, c.pixels, c.prompt, { attentions: true })).rejects.toThrow(/no attention outputs; export it again with --attentions/);
    await b.dispose();
  });
});

describe('a fresh process', () => {
  it('loads the graphs in onnxruntime and runs a batch of 2 through prefill then decode', async () => {
    const script = `
      const ort = require('onnxruntime-node');
      (async () => {
        const dir = process.argv[1];
        const p = await ort.InferenceSession.create(dir + '/prefill' + process.argv[2] + '.onnx');
        const d = await ort.InferenceSession.create(dir + '/decode' + process.argv[2] + '.onnx');
        const px = new ort.Tensor('float32', new Float32Array(2 * 2 * 32 * 32 * 3).fill(0.1), [2, 2, 32, 32, 3]);
        const ids = new ort.Tensor('int64', BigInt64Array.from([2n, 10n, 11n, 4n, 2n, 12n, 13n, 4n]), [2, 4]);
        const a = await p.run({ pixel_values: px, input_ids: ids });
        const feeds = { input_ids: new ort.Tensor('int64', BigInt64Array.from([5n, 6n]), [2, 1]) };
        for (let i = 0; i < 2; i++) for (const kv of ['key', 'value']) feeds['past_key_values.' + i + '.' + kv] = a['present.' + i + '.' + kv];
        const ones = (n) => new ort.Tensor('int64', new BigInt64Array(2 * n).fill(1n), [2, n]);
        const masked = d.inputNames.includes('attention_mask');
        if (masked) feeds.attention_mask = ones(37);
        const b = await d.run(feeds);
        const maxDiff = (x, y) => x.data.reduce((m, v, i) => Math.max(m, Math.abs(v - y.data[i])), 0);
        let padded;
        if (masked) {
          // the same step over past buffers with room for 3 more positions (filled with garbage): the mask says how much counts
          const f2 = { input_ids: feeds.input_ids, attention_mask: ones(37) };
          for (const name of Object.keys(feeds).filter((n) => n.startsWith('past'))) {
            const t = feeds[name];
            const [B, KV, P, hd] = t.dims;
            const buf = new Float32Array(B * KV * (P + 3) * hd).fill(7);
            for (let r = 0; r < B * KV; r++) buf.set(t.data.subarray(r * P * hd, (r + 1) * P * hd), r * (P + 3) * hd);
            f2[name] = new ort.Tensor('float32', buf, [B, KV, P + 3, hd]);
          }
          const c = await d.run(f2);
          padded = { logits: maxDiff(c.logits, b.logits), fresh: maxDiff(c['new_key_values.1.value'], b['new_key_values.1.value']), present: c['present.0.key'].dims };
        }
        console.log(JSON.stringify({ inputs: p.inputNames, decodeInputs: d.inputNames.length, logits: a.logits.dims, present: a['present.0.key'].dims, att: a['attentions.0']?.dims, next: b.logits.dims, present2: b['present.1.value'].dims, fresh: b['new_key_values.0.key'].dims, att2: b['attentions.1']?.dims, logit0: a.logits.data[5], padded }));
      })().catch((e) => { console.error(e.message); process.exit(1); });`;
    const V = JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8')).text_config.vocab_size;
    const fast = JSON.parse((await execa('node', ['-e', script, out, ''])).stdout);
    const withAtt = JSON.parse((await execa('node', ['-e', script, out, '_attentions'])).stdout);
    // 2 cameras x 16 patches = 32 image tokens; 4 heads, 2 KV heads of size 8
    expect(withAtt).toMatchObject({ inputs: ['pixel_values', 'input_ids'], decodeInputs: 5, logits: [2, 4, V], present: [2, 2, 36, 8], att: [2, 4, 36, 36], next: [2, 1, V], present2: [2, 2, 37, 8], fresh: [2, 2, 1, 8], att2: [2, 4, 1, 37] });
    // the fused decode step also takes attention_mask; over longer (preallocated) past buffers it computes the same
    expect(fast).toMatchObject({ inputs: ['pixel_values', 'input_ids'], decodeInputs: 6, logits: [2, 4, V], present: [2, 2, 36, 8], next: [2, 1, V], present2: [2, 2, 37, 8], fresh: [2, 2, 1, 8] });
    expect(fast.padded.present).toEqual([2, 2, 39, 8]);
    expect(fast.padded.logits).toBeLessThan(1e-5);
    expect(fast.padded.fresh).toBeLessThan(1e-6);
    expect(Math.abs(fast.logit0 - withAtt.logit0)).toBeLessThan(1e-4); // the two pairs compute the same model
  });
});

describe('the structural check fails on broken graphs', () => {
  const load = () => decodeModel(readFileSync(path.join(out, 'decode.onnx')));
  const problems = (m: ReturnType<typeof load>, where = out) => checkModel(decodeModel(encodeModel(m)), where).problems.join('\n');

  it('a node whose input nothing produces, and nodes out of order', () => {
    const m = load();
    m.graph!.node!.splice(3, 1);
    expect(problems(m)).toMatch(/input ".*" is not produced by any earlier node, initializer or graph input/);
    const m2 = load();
    const nodes = m2.graph!.node!;
    [nodes[5], nodes[40]] = [nodes[40], nodes[5]];
    expect(problems(m2)).toMatch(/is not produced by any earlier node/);
  });

  it('a missing opset, an old opset, an output nothing produces', () => {
    const m = load();
    m.opsetImport = [{ domain: '', version: 13 }];
    expect(problems(m)).toMatch(/opset 13 is declared; vlakit exports need opset 17/);
    m.opsetImport = [];
    expect(problems(m)).toMatch(/no opset is declared/);
    const m2 = load();
    m2.graph!.output!.push({ ...m2.graph!.output![0], name: 'ghost' });
    expect(problems(m2)).toMatch(/graph output "ghost" is not produced/);
  });

  it('inconsistent shapes: a declared output dimension, a weight of the wrong size, a bad reshape', () => {
    const m = load();
    const V = Number(m.graph!.output![0].type!.tensorType!.shape!.dim![2].dimValue);
    m.graph!.output![0].type!.tensorType!.shape!.dim![2] = { dimValue: 999 };
    expect(problems(m)).toContain(`graph output "logits": dimension 2 is ${V}, declared 999`);
    const m2 = load();
    const w = m2.graph!.initializer!.find((t) => t.name === 'model.layers.0.self_attn.qkv.weight')!;
    w.dims = [32, 48];
    w.externalData!.find((e) => e.key === 'length')!.value = String(32 * 48 * 4);
    expect(problems(m2)).toMatch(/Split sizes 32\+16\+16 do not add up to 48/);
    const m3 = load();
    const k = m3.graph!.initializer!.find((t) => t.name === 'model.layers.1.mlp.down_proj.weight')!;
    k.dims = [32, 88];
    expect(problems(m3)).toMatch(/MatMul inner dimensions differ: 88 vs 32/);
  });

  it('external data that is missing or too short', () => {
    const broken = path.join(dir, 'broken');
    cpSync(out, broken, { recursive: true });
    truncateSync(path.join(broken, 'model.onnx_data'), 1000);
    expect(problems(load(), broken)).toMatch(/lie beyond the end of model.onnx_data/);
    rmSync(path.join(broken, 'model.onnx_data'));
    expect(problems(load(), broken)).toMatch(/external data file "model.onnx_data" is missing/);
  });
});

describe('runners', () => {
  it('OrtRunner refuses a checkpoint; openModel refuses a directory without config.json', async () => {
    await expect(OrtRunner.open(ck)).rejects.toThrow(/no vlakit.export entry/);
    writeFileSync(path.join(dir, 'empty.txt'), '');
    await expect(openBuiltinModel(dir)).rejects.toThrow(/not a model directory: no config.json/);
  });

  it('TfjsRunner over an in-memory model matches openModel of its checkpoint', async () => {
    const a = await openBuiltinModel(ck);
    const b = new TfjsRunner((a as TfjsRunner).model, a.tokenizer);
    const [c] = parityCases(32, 2, 4);
    expect((await generate(b, c.pixels, c.prompt, { maxNewTokens: 6 })).ids).toEqual((await generate(a, c.pixels, c.prompt, { maxNewTokens: 6 })).ids);
    await a.dispose();
  });
});

describe('vlakit export (the command)', () => {
  const BIN = path.resolve('bin/run.js');
  const run = (args: string[]) => execa('node', [BIN, ...args], { reject: false, env: { NO_COLOR: '1' } });

  it('exports, checks and compares; prints a summary on stderr and nothing on stdout', async () => {
    const to = path.join(dir, 'cli-onnx');
    const r = await run(['export', ck, '-o', to]);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/LoRA merged\), onnxruntime operators -> .*cli-onnx \(model.onnx_data, prefill.onnx, decode.onnx, config.json, tokenizer.json, action_stats.json/);
    expect(r.stderr).toMatch(/prefill: opset 17, \d+ nodes, \d+ initializers; structural check passed \(5 output shapes checked\)/);
    expect(r.stderr).toMatch(/parity with the checkpoint \(wasm vs onnxruntime cpu, 3 cases\): max \|logit diff\| \S+, greedy tokens identical with and without the KV cache/);
    const again = await run(['export', ck, '-o', to, '--json']);
    expect(again.exitCode).toBe(2); // an existing export is replaced only with --overwrite
    expect(again.stderr).toMatch(/E_USAGE in .*cli-onnx: the output \(-o\) exists \(a directory holding \d+ entries\); pass --overwrite/);
    const j = await run(['export', ck, '-o', to, '--json', '--attentions', '--overwrite']);
    const res = JSON.parse(j.stderr);
    expect(res.parity.greedyMatch).toBe(true);
    expect(res.parity.maxAbsDiff).toBeLessThanOrEqual(1e-4);
    expect(res.checks.map((c: { outputsChecked: number }) => c.outputsChecked)).toEqual([5, 9, 7, 11]);
  }, 120_000);

  it('fails clearly and leaves an existing export untouched', async () => {
    const keep = readFileSync(path.join(out, 'prefill.onnx'));
    const bad = await run(['export', path.join(dir, 'nope'), '-o', out, '--overwrite']);
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr).toMatch(/E_NOT_FOUND in .*nope: not a vlakit checkpoint: no config.json/);
    expect(readFileSync(path.join(out, 'prefill.onnx')).equals(keep)).toBe(true);
    const usage = await run(['export', ck, '-o', out, '--tolerance', '-1']);
    expect(usage.exitCode).toBe(2);
    expect(usage.stderr).toMatch(/--tolerance must be a number >= 0/);
    const tight = await run(['export', ck, '-o', path.join(dir, 'tight'), '--tolerance', '0']);
    expect(tight.exitCode).toBe(1); // two engines never agree to the last bit: the check can fail
    expect(existsSync(path.join(dir, "tight"))).toBe(false);
    expect(tight.stderr).toMatch(/E_ONNX .*the export does not match its checkpoint, so it was not written: max \|logit diff\| \S+ \(tolerance 0\)/);
  }, 120_000);
});
