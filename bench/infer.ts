/**
 * Inference latency of one action chunk (the prefill of image + prompt, then N decoded tokens) for a preset: the
 * checkpoint on the tfjs backend vs its ONNX export on onnxruntime (float32, and `--quantize int8`), each with and
 * without the KV cache, as ratios measured in one run. Target: onnxruntime >= 10x faster than the tfjs wasm backend.
 * Each engine runs in a process of its own (as in use: a command loads one engine), so neither engine's threads
 * take the other's cores.
 * Run: `npx tsx bench/infer.ts [--quick] [--preset=small] [--tokens=32] [--backend=wasm]`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { quantile } from '../src/lib/actions/stats.js';
import { exportModel } from '../src/lib/export/index.js';
import { type VlaRunner, openModel } from '../src/lib/infer/index.js';
import { selectBackend } from '../src/lib/model/backend.js';
import { writeOutputDir } from '../src/lib/io/outputs.js';
import { writeModelFiles } from '../src/lib/model/checkpoint.js';
import { type Preset, preset } from '../src/lib/model/config.js';
import { VlaModel } from '../src/lib/model/model.js';
import { buildTokenizer } from '../src/lib/model/tokenizer.js';
import { Rng } from '../src/lib/util/rng.js';

const arg = (name: string, dflt: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? dflt;
const quick = process.argv.includes('--quick');
const presetName = arg('preset', 'small') as Preset;
const N = Number(arg('tokens', '32'));
const child = arg('child', '');
const backendName = arg('backend', 'wasm');

const rng = new Rng(1);
const words = ['move', 'the', 'gripper', 'left', 'right', 'up', 'down', 'grasp', 'red', 'block', 'plate', 'carrot', '0.012', '-0.004', '1'];
const tok = await buildTokenizer(Array.from({ length: 400 }, () => Array.from({ length: 12 }, () => rng.pick(words)).join(' ')), 512);
const cfg = preset(presetName, tok.vocabSize, 1);
let dir = arg('dir', '');
if (!child) {
  await selectBackend(backendName);
  dir = mkdtempSync(path.join(os.tmpdir(), 'vlakit-bench-infer-'));
  const model = VlaModel.init(cfg, 0);
  await writeOutputDir(path.join(dir, 'ck'), (d) => writeModelFiles(d, model, tok.json), { overwrite: true });
  model.dispose();
  await exportModel(path.join(dir, 'ck'), path.join(dir, 'onnx'));
  await exportModel(path.join(dir, 'ck'), path.join(dir, 'onnx-int8'), { quantize: 'int8' });
}
const S = cfg.vision_config.image_size;
const pixels = Float32Array.from({ length: S * S * 3 }, () => rng.uniform(-1, 1));
const prompt = [2, ...tok.encode('Subtask: grasp the red block. Output the next actions.'), 4];
const forced = Array.from({ length: N }, () => rng.int(5, tok.vocabSize - 1));

/** Seconds for one chunk: the prefill and N - 1 further tokens (the prefill yields the first), tokens forced. */
async function chunk(r: VlaRunner, useCache: boolean): Promise<{ total: number; prefill: number }> {
  const s = r.start({ useCache, attentions: false });
  const t0 = performance.now();
  await s.prefill(pixels, prompt);
  const t1 = performance.now();
  for (let i = 0; i < N - 1; i++) await s.next(forced[i]);
  const t2 = performance.now();
  s.dispose();
  return { total: (t2 - t0) / 1000, prefill: (t1 - t0) / 1000 };
}

/** The median over `reps` chunks (after a warm-up): the machines are noisy, and a median ignores a stalled run. */
async function time(r: VlaRunner, useCache: boolean, reps: number): Promise<{ total: number; prefill: number }> {
  await chunk(r, useCache); // warm-up
  const runs: { total: number; prefill: number }[] = [];
  for (let i = 0; i < reps; i++) runs.push(await chunk(r, useCache));
  const median = (xs: number[]) => quantile(xs.sort((a, b) => a - b), 0.5);
  return { total: median(runs.map((t) => t.total)), prefill: median(runs.map((t) => t.prefill)) };
}

const reps = quick ? 1 : 5;
if (child) {
  // one engine in this process: print its timings as JSON
  const r = child === 'tfjs' ? await openModel(path.join(dir, 'ck'), { backend: backendName }) : await openModel(path.join(dir, child === 'ort-int8' ? 'onnx-int8' : 'onnx'));
  const k = child === 'tfjs' ? 1 : 3; // onnxruntime is fast: more repeats for a steadier figure
  const out = { cache: await time(r, true, reps * k), none: await time(r, false, child === 'tfjs' ? (quick ? 1 : 3) : reps) };
  await r.dispose();
  console.log(JSON.stringify(out));
  process.exit(0);
}
const measure = (engine: string) => JSON.parse(execFileSync(process.execPath, [...process.execArgv, process.argv[1], ...process.argv.slice(2), `--child=${engine}`, `--dir=${dir}`], { encoding: 'utf8' }).trim().split('\n').at(-1)!) as { cache: { total: number; prefill: number }; none: { total: number; prefill: number } };
const tf = measure('tfjs');
const ort = measure('ort');
const ort8 = measure('ort-int8');
const backend = backendName;
const rows = {
  [`tfjs ${backend}, KV cache`]: tf.cache,
  [`tfjs ${backend}, no cache`]: tf.none,
  'onnxruntime cpu, KV cache': ort.cache,
  'onnxruntime cpu, no cache': ort.none,
  'onnxruntime int8, KV cache': ort8.cache,
  'onnxruntime int8, no cache': ort8.none,
};
console.log(`vlakit infer bench on ${os.cpus()[0]?.model ?? 'cpu'} x${os.cpus().length}, node ${process.version}: ${presetName} (${(cfg.vision_config.image_size / cfg.vision_config.patch_size) ** 2} image tokens, ${prompt.length} prompt tokens, ${N} generated tokens)${quick ? ' (quick)' : ''}; each engine in its own process`);
for (const [name, t] of Object.entries(rows)) console.log(`  ${name.padEnd(28)} ${(t.total * 1000).toFixed(0).padStart(7)} ms per chunk (prefill ${(t.prefill * 1000).toFixed(0)} ms, ${(((t.total - t.prefill) / (N - 1)) * 1000).toFixed(1)} ms per decoded token)`);
const r = (a: string, b: string) => (rows[b].total / rows[a].total).toFixed(1);
const perToken = (k: string) => (rows[k].total - rows[k].prefill) / (N - 1);
const tfKey = `tfjs ${backend}, KV cache`;
for (const [label, k] of [['onnxruntime float32', 'onnxruntime cpu, KV cache'], ['onnxruntime int8', 'onnxruntime int8, KV cache']] as const) {
  console.log(`  ${label} vs tfjs ${backend} (both with the cache): ${r(k, tfKey)}x faster per chunk (target >= 10x); prefill ${(rows[tfKey].prefill / rows[k].prefill).toFixed(1)}x, one decoded token ${(perToken(tfKey) / perToken(k)).toFixed(1)}x`);
}
console.log(`  KV cache vs none: onnxruntime ${r('onnxruntime cpu, KV cache', 'onnxruntime cpu, no cache')}x (int8 ${r('onnxruntime int8, KV cache', 'onnxruntime int8, no cache')}x), tfjs ${r(tfKey, `tfjs ${backend}, no cache`)}x`);
rmSync(dir, { recursive: true, force: true });
