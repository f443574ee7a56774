/**
 * Closed-loop cycle latency of a learned policy in the built-in world, split into model, env and vlakit's own time
 * (image decoding and resizing, prompts, tokenization, sampling, parsing, records), for exports of the tiny and
 * small presets on onnxruntime. Target: vlakit <= 5% of cycle time. The models are freshly initialized (their
 * output does not parse, so every cycle is one full-length generation and a no-op): the cost of the toolkit per
 * cycle does not depend on what the model says.
 * Run: `npx tsx bench/rollout.ts [--quick] [--tokens=64]`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PROMPTS, TextCodec } from '../src/lib/actions/index.js';
import { SafetyFilter, TabletopEnv, runEpisodes } from '../src/lib/env/index.js';
import { exportModel } from '../src/lib/export/index.js';
import { openModel } from '../src/lib/infer/index.js';
import { selectBackend } from '../src/lib/model/backend.js';
import { writeOutputDir } from '../src/lib/io/outputs.js';
import { writeModelFiles } from '../src/lib/model/checkpoint.js';
import { type Preset, preset } from '../src/lib/model/config.js';
import { VlaModel } from '../src/lib/model/model.js';
import { buildTokenizer } from '../src/lib/model/tokenizer.js';
import { ModelPolicy, policyReport, summarizeEpisode } from '../src/lib/policy/index.js';

const quick = process.argv.includes('--quick');
const tokens = Number(process.argv.find((a) => a.startsWith('--tokens='))?.slice(9) ?? 64);
await selectBackend('wasm');
const dir = mkdtempSync(path.join(os.tmpdir(), 'vlakit-bench-rollout-'));
const tok = await buildTokenizer([PROMPTS.refinevla('pick up the red block and put it on the blue plate', true), '[[0.012, -0.004, 0.000, 1]]'], 400);

console.log(`vlakit rollout bench on ${os.cpus()[0]?.model ?? 'cpu'} x${os.cpus().length}, node ${process.version}: direct mode, ${tokens} tokens per cycle, 128 px camera${quick ? ' (quick)' : ''}`);
for (const name of ['tiny', 'small'] as Preset[]) {
  const model = VlaModel.init(preset(name, tok.vocabSize, 1), 0);
  const ck = path.join(dir, name);
  await writeOutputDir(ck, (d) => writeModelFiles(d, model, tok.json, { actionCodec: new TextCodec(3).describe() }), { overwrite: true });
  model.dispose();
  await exportModel(ck, `${ck}-onnx`);
  const runner = await openModel(`${ck}-onnx`);
  const s = { temperature: 0.5, topP: 0.95, maxNewTokens: tokens };
  const policy = new ModelPolicy(runner, { mode: 'direct', prompt: 'refinevla', codec: new TextCodec(3), resample: 0, sampling: { subtasks: s, plan: s, actions: s } });
  const env = new SafetyFilter(new TabletopEnv({ width: 128, height: 128, maxSteps: quick ? 10 : 30 }));
  const eps = [];
  for await (const ep of runEpisodes({ env, policy, families: ['pick', 'place'], episodes: quick ? 2 : 4, seed: 0, recordTiming: true })) eps.push(ep);
  await env.close();
  await runner.dispose();
  const sums = eps.map((e) => summarizeEpisode(e.records));
  const cycles = sums.flatMap((x) => x.cycles).slice(1); // the first cycle warms up the engines
  const tot = (k: 'model' | 'env' | 'vlakit') => cycles.reduce((a, c) => a + c[k], 0) / cycles.length;
  const all = tot('model') + tot('env') + tot('vlakit');
  const [row] = policyReport(sums);
  console.log(
    `  ${name.padEnd(5)} ${cycles.length} cycles: ${all.toFixed(1)} ms per cycle (median ${row.latencyMs.median.toFixed(1)}, IQR ${row.latencyMs.q25.toFixed(1)}-${row.latencyMs.q75.toFixed(1)}) = model ${tot('model').toFixed(1)} + env ${tot('env').toFixed(1)} + vlakit ${tot('vlakit').toFixed(2)} ms -> vlakit ${((tot('vlakit') / all) * 100).toFixed(1)}% of cycle time (target <= 5%)`,
  );
}
rmSync(dir, { recursive: true, force: true });
