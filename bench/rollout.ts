/**
 * Closed-loop cycle latency of a learned policy in the built-in world, split into model, env and vlakit's own time
 * (image decoding and resizing, prompts, tokenization, sampling, parsing, records), for exports of the tiny and
 * small presets on onnxruntime. Target: vlakit <= 5% of cycle time. The models are freshly initialized (their
 * output does not parse, so every cycle is one full-length generation and a no-op): the cost of the toolkit per
 * cycle does not depend on what the model says.
 * Run: `npx tsx bench/rollout.ts [--quick] [--tokens=64]`.
 *
 * With `--workers[=N]`: the speed-up of `rollout --workers N` (default: the machine's cores) over one process, the
 * scripted expert on the same episodes through the built CLI (`npm run build` first), checking that both wrote
 * the same records. Run: `npx tsx bench/rollout.ts --workers [--episodes=16]`.
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
const workersArg = process.argv.find((a) => a === '--workers' || a.startsWith('--workers='));
if (workersArg) {
  await benchWorkers(Number(workersArg.split('=')[1] ?? os.cpus().length), Number(process.argv.find((a) => a.startsWith('--episodes='))?.slice(11) ?? 16));
  process.exit(0);
}
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

/** Wall time of `rollout --workers 1` and `--workers N` on the same episodes; their records must be equal. */
async function benchWorkers(workers: number, episodes: number): Promise<void> {
  const { execFileSync } = await import('node:child_process');
  const { readFileSync } = await import('node:fs');
  const out = mkdtempSync(path.join(os.tmpdir(), 'vlakit-bench-workers-'));
  const bin = path.resolve('bin/run.js');
  const args = ['rollout', '--policy', 'scripted', '--tasks', 'pick,place,near', '--episodes', String(episodes), '--max-steps', '40', '--quiet'];
  const load = os.loadavg()[0].toFixed(2);
  console.log(`vlakit rollout --workers bench on ${os.cpus()[0]?.model ?? 'cpu'} x${os.cpus().length}, node ${process.version}, load ${load}: scripted expert, ${episodes} episodes of at most 40 steps, 128 px camera`);
  const time = (w: number): number => {
    const t0 = performance.now();
    execFileSync(process.execPath, [bin, ...args, '--workers', String(w), '-o', path.join(out, `w${w}.jsonl`)], { stdio: 'inherit' });
    return (performance.now() - t0) / 1000;
  };
  const one = time(1);
  const many = time(workers);
  const same = readFileSync(path.join(out, 'w1.jsonl')).equals(readFileSync(path.join(out, `w${workers}.jsonl`)));
  console.log(`  --workers 1: ${one.toFixed(1)} s; --workers ${workers}: ${many.toFixed(1)} s -> speed-up ${(one / many).toFixed(2)}x (${((one / many / workers) * 100).toFixed(0)}% of linear); records equal: ${same}`);
  rmSync(out, { recursive: true, force: true });
  if (!same) process.exitCode = 1;
}
