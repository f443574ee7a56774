/**
 * SmolVLM-256M at its real size on this machine: random weights from the real config.json (`model init --dtype
 * bf16`, computed in float32), one 512 x 512 tile (64 image tokens) and a short prompt. Measures the forward (prefill
 * of the prompt), one LoRA train step (r 16 on q,k,v,o,gate,up,down of the text model, frozen vision tower: the
 * image features cached, as train-sft --freeze-vision does), and generation speed with the KV cache.
 * Run: `node --import tsx bench/hf.ts [--steps=N] [--tokens=N]` (the model is written to a temp directory first).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '../src/lib/model/backend.js';
import { loadHfCheckpoint } from '../src/lib/model/arch/hf.js';
import { initCheckpoint } from '../src/lib/model/arch/manage.js';
import { TfjsCausalLm } from '../src/lib/infer/causal.js';
import { HfLoraModel } from '../src/lib/train/hf-model.js';
import { tokenCrossEntropy } from '../src/lib/train/loss.js';
import { AdamW } from '../src/lib/train/optim.js';

const arg = (name: string, d: number) => Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? d);
const steps = arg('steps', 2);
const newTokens = arg('tokens', 8);
const backend = await selectBackend(process.argv.find((a) => a.startsWith('--backend='))?.slice(10));
const now = () => performance.now() / 1000;
const mib = (n: number) => `${(n / 2 ** 20).toFixed(0)} MiB`;
const wasmHeap = () => ((tf.backend() as unknown as { wasm?: { HEAPU8: Uint8Array } }).wasm?.HEAPU8.length ?? 0);
const memory = (what: string) => console.log(`memory ${what}: tensors ${mib(tf.memory().numBytes)}, wasm heap ${mib(wasmHeap())}, RSS ${mib(process.memoryUsage().rss)} (peak ${mib(process.resourceUsage().maxRSS * 1024)})`);
console.log(`load average at start: ${os.loadavg().map((x) => x.toFixed(2)).join(', ')} (${os.cpus().length} cores)`);

const real = JSON.parse(readFileSync(path.resolve('../shared/models/smolvlm-256m-instruct/config.json'), 'utf8'));
const dir = mkdtempSync(path.join(os.tmpdir(), 'vlakit-bench-hf-'));
let t0 = now();
const made = await initCheckpoint(real, path.join(dir, 'smolvlm'), { dtype: 'BF16', seed: 0 });
console.log(`model init (BF16): ${made.parameters.toLocaleString()} parameters in ${(now() - t0).toFixed(1)} s`);
t0 = now();
const ck = loadHfCheckpoint(path.join(dir, 'smolvlm'));
console.log(`load: ${(now() - t0).toFixed(1)} s`);

const v = ck.arch.vision!(ck.config);
const prompt = [1, 11, 12, 13, ...Array(v.tokensPerImage).fill(v.imageTokenId), 14, 15, 16, 17, 18, 19, 20, 21]; // 64 image tokens + 11 text
const target = [30, 31, 32, 33, 34, 35, 36, 37]; // an answer of 8 tokens
const pixels = Float32Array.from({ length: v.channels * v.imageSize * v.imageSize }, (_, i) => Math.sin(i) * 0.5); // [1, 3, 512, 512]

// forward (prefill) and generation
const lm = new TfjsCausalLm(ck);
const state = lm.start();
t0 = now();
let logits = await state.prefill(prompt, pixels);
const prefill = now() - t0;
t0 = now();
for (let i = 0; i < newTokens; i++) {
  let best = 0;
  for (let j = 1; j < logits.length; j++) if (logits[j] > logits[best]) best = j;
  logits = await state.next(best);
}
const gen = now() - t0;
memory('after generation');
state.dispose();
await lm.dispose();

// LoRA train steps with the vision features cached
const model = new HfLoraModel(ck, { r: 16, alpha: 32, targets: ['q', 'k', 'v', 'o', 'gate', 'up', 'down'], freezeVision: true });
const opt = new AdamW();
const ids = tf.tensor2d([[...prompt, ...target]], [1, prompt.length + target.length], 'int32');
const weights = tf.tensor2d([[...Array(prompt.length - 1).fill(0), ...Array(target.length).fill(1)]], [1, prompt.length + target.length - 1]);
t0 = now();
const features = model.features(pixels, 1);
const vision = now() - t0;
const times: number[] = [];
for (let s = 0; s < steps; s++) {
  t0 = now();
  const { value, grads } = tf.variableGrads(() => tf.div(tf.sum(tf.mul(tokenCrossEntropy(model.forward(ids, { features }), ids), weights)), target.length) as tf.Scalar, model.trainable());
  opt.apply(model.trainable(), new Map(Object.entries(grads)), 1e-4, 1);
  value.dispose();
  tf.dispose(Object.values(grads));
  times.push(now() - t0);
}
memory('after the LoRA steps');
const trainable = model.trainable().reduce((a, x) => a + x.size, 0);
model.dispose();
opt.dispose();
tf.dispose([ids, weights]);
rmSync(dir, { recursive: true, force: true });

console.log(`backend ${backend}, ${os.cpus().length} cores (${os.cpus()[0]?.model ?? '?'})`);
console.log(`forward (prefill of ${prompt.length} tokens, one 512 tile, vision tower included): ${prefill.toFixed(2)} s`);
console.log(`generation: ${newTokens} tokens in ${gen.toFixed(2)} s = ${(newTokens / gen).toFixed(2)} tokens/s (KV cache)`);
console.log(`vision features of one tile (computed once, cached): ${vision.toFixed(2)} s`);
console.log(`load average at the end: ${os.loadavg().map((x) => x.toFixed(2)).join(', ')}`);
console.log(`LoRA step (r 16, 7 modules x ${real.text_config.num_hidden_layers} layers = ${trainable.toLocaleString()} trainable, ${prompt.length + target.length} tokens): ${times.map((t) => t.toFixed(2)).join(', ')} s`);
