import { OrtRunner } from '../src/lib/infer/index.js';
for (const dir of process.argv.slice(2)) for (const threads of [0, 1]) {
  const r = await OrtRunner.open(dir, threads ? { threads } : {});
  const S = r.config.vision_config.image_size;
  const px = new Float32Array(S * S * 3);
  const ids = [2, ...Array.from({ length: 34 }, (_, i) => 5 + (i % 20)), 4];
  const s = r.start({ useCache: true, attentions: false });
  let best = Infinity, pre = Infinity;
  for (let rep = 0; rep < 4; rep++) {
    let t = performance.now();
    await s.prefill(px, ids);
    pre = Math.min(pre, performance.now() - t);
    t = performance.now();
    for (let i = 0; i < 31; i++) await s.next(7);
    best = Math.min(best, (performance.now() - t) / 31);
  }
  console.log(dir, 'threads', threads || 'default', 'prefill', pre.toFixed(1), 'decode', best.toFixed(2), 'ms/token');
  await r.dispose();
}
