/** The output discipline through the real CLI: --overwrite, inputs never written over, signals, stale temporaries. */
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { describe, expect, it } from 'vitest';
import { tempDir, TFX } from '../helpers.js';

const BIN = path.resolve('bin/run.js');
const MNIST = path.join(TFX, 'mnist/mnist.tfrecord');
const root = tempDir('vlakit-cli-outputs-');
let n = 0;
function fresh(): string {
  const d = path.join(root, `t${++n}`);
  mkdirSync(d);
  return d;
}

function vlakit(args: string[], opts: { input?: string; env?: Record<string, string> } = {}) {
  return execa('node', [BIN, ...args], { reject: false, input: opts.input, env: { NO_COLOR: '1', ...opts.env } }).then((r) => ({ code: r.exitCode, out: String(r.stdout), err: String(r.stderr) }));
}

const STEPS = Array.from({ length: 6 }, (_, i) => JSON.stringify({ episode_id: `e${i >> 1}`, step: i & 1, action: [i, 0, 0], language_instruction: 'pick' })).join('\n') + '\n';

/** Resolves once `dir` holds an entry matching `re` (polled: the child writes it when it gets there). */
async function appears(dir: string, re: RegExp, child: ResultPromise): Promise<string> {
  let exited = false;
  void child.finally(() => (exited = true));
  for (;;) {
    const hit = readdirSync(dir).find((f) => re.test(f));
    if (hit) return hit;
    if (exited) throw new Error(`the command ended before ${re} appeared: ${(await child).stderr}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('existing outputs', () => {
  it('refused without --overwrite (exit 2, file untouched); replaced with it; kept whole when the new write fails', async () => {
    const d = fresh();
    const out = path.join(d, 'steps.jsonl');
    writeFileSync(out, 'precious\n');
    const r = await vlakit(['convert', '-', '-o', out], { input: STEPS });
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/^vlakit convert: E_USAGE in .*steps\.jsonl: the output \(-o\) exists \(a file of 9 bytes\); pass --overwrite to replace it/);
    expect(readFileSync(out, 'utf8')).toBe('precious\n');
    const bad = await vlakit(['convert', '-', '-o', out, '--overwrite'], { input: `${STEPS}{"episode_id":\n` });
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/E_JSONL_PARSE at line 7/);
    expect(readFileSync(out, 'utf8')).toBe('precious\n');
    const ok = await vlakit(['convert', '-', '-o', out, '--overwrite', '-q'], { input: STEPS });
    expect(ok.code).toBe(0);
    expect(readFileSync(out, 'utf8')).toBe(STEPS);
    expect(readdirSync(d)).toEqual(['steps.jsonl']);
  });

  it('a directory where a file goes is a usage error, not EISDIR; --to must agree with the extension', async () => {
    const d = fresh();
    mkdirSync(path.join(d, 'somedir'));
    const r = await vlakit(['convert', '-', '--to', 'jsonl', '-o', path.join(d, 'somedir'), '--overwrite'], { input: STEPS });
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/E_USAGE in .*somedir: the output \(-o\) is an existing directory, but a file is written here: give a file path/);
    expect(r.err).not.toMatch(/EISDIR|\n\s+at /);
    const t = await vlakit(['convert', MNIST, '--to', 'tfrecord', '-o', path.join(d, 'x.jsonl')]);
    expect(t.code).toBe(2);
    expect(t.err).toMatch(/--to tfrecord conflicts with the output name .*x\.jsonl, which says jsonl: the extension must match the format/);
    const ro = await vlakit(['rollout', '--to', 'rlds', '--episodes', '1', '-o', path.join(d, 'demos.jsonl')]);
    expect(ro.code).toBe(2);
    expect(ro.err).toMatch(/--to rlds conflicts with the output name/);
    expect(readdirSync(d)).toEqual(['somedir']);
  });

  it('sharded TFRecord output: an earlier set is refused, then replaced whole with --overwrite (no old shard left)', async () => {
    const d = fresh();
    const out = path.join(d, 'm.tfrecord');
    expect((await vlakit(['convert', MNIST, '--to', 'tfrecord', '--shard-size', '1MB', '-o', out, '-q'])).code).toBe(0);
    expect(readdirSync(d)).toHaveLength(4);
    const again = await vlakit(['convert', MNIST, '--to', 'tfrecord', '--shard-size', '2MB', '-o', out, '-q']);
    expect(again.code).toBe(2);
    expect(again.err).toMatch(/4 shards of an earlier output exist \(m\.tfrecord-00000-of-00004, \.\.\.\); pass --overwrite/);
    const own = await vlakit(['convert', path.join(d, 'm.tfrecord-*'), '--to', 'tfrecord', '--shard-size', '2MB', '-o', out, '--overwrite']);
    expect(own.code).toBe(2); // the old shards are the input here: never replaced
    expect(own.err).toMatch(/m\.tfrecord-00000-of-00004: the output \(-o\) is the input/);
    expect((await vlakit(['convert', MNIST, '--to', 'tfrecord', '--shard-size', '2MB', '-o', out, '-q', '--overwrite'])).code).toBe(0);
    expect(readdirSync(d).sort()).toEqual(['m.tfrecord-00000-of-00002', 'm.tfrecord-00001-of-00002']);
  });

  it('a failed sharded write leaves no shard under a final name and no temporary', async () => {
    const d = fresh();
    const bad = path.join(d, 'bad.tfrecord');
    copyFileSync(MNIST, bad);
    const buf = readFileSync(bad);
    buf[2_000_000] ^= 0xff; // a record in the middle: shards before it are finished when it is read
    writeFileSync(bad, buf);
    const out = path.join(d, 'out', 'm.tfrecord');
    const r = await vlakit(['convert', bad, '--to', 'tfrecord', '--shard-size', '100KB', '-o', out]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/E_TFRECORD_DATA_CRC/);
    expect(readdirSync(path.join(d, 'out'))).toEqual([]);
  });

  it('a thousand shards under a limit of 512 open files: each shard is closed when full', async () => {
    const d = fresh();
    const out = path.join(d, 'm.tfrecord');
    const r = await execa('bash', ['-c', `ulimit -n 512 && exec node ${BIN} convert ${MNIST} --to tfrecord --shard-size 1KiB -o ${out} -q`], { reject: false });
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    const names = readdirSync(d).sort();
    expect(names).toHaveLength(1000);
    expect(names[999]).toBe('m.tfrecord-00999-of-01000');
  });
});

describe('inputs are never written over', () => {
  it('attn-viz with its input inside -o DIR: refused even with --overwrite, the input kept', async () => {
    const d = fresh();
    const viz = path.join(d, 'viz');
    mkdirSync(viz);
    const input = path.join(viz, 'examples.jsonl');
    writeFileSync(input, '{"kind":"training_example"}\n');
    for (const extra of [[], ['--overwrite']]) {
      const r = await vlakit(['attn-viz', '--model', path.join(d, 'model'), '--input', input, '-o', viz, ...extra]);
      expect(r.code).toBe(2);
      expect(r.err).toMatch(/^vlakit attn-viz: E_USAGE in .*viz: the output \(-o\) contains the input .*examples\.jsonl: writing it would delete that input; choose another output \(--overwrite never replaces an input\)$/);
    }
    mkdirSync(path.join(d, 'model'));
    writeFileSync(path.join(d, 'model', 'config.json'), '{}');
    const inModel = await vlakit(['attn-viz', '--model', path.join(d, 'model'), '--input', input, '-o', path.join(d, 'model', 'viz')]);
    expect(inModel.code).toBe(2);
    expect(inModel.err).toMatch(/is inside the input .*model: writing it would change that input/);
    expect(readFileSync(input, 'utf8')).toBe('{"kind":"training_example"}\n');
    expect(readdirSync(path.join(d, 'model'))).toEqual(['config.json']);
  });

  it('export -o over a directory holding an unrelated file: refused, the file kept', async () => {
    const d = fresh();
    const out = path.join(d, 'onnx');
    mkdirSync(out);
    writeFileSync(path.join(out, 'notes.txt'), 'mine');
    const r = await vlakit(['export', path.join(d, 'ckpt'), '-o', out]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/E_USAGE in .*onnx: the output \(-o\) exists \(a directory holding 1 entry\); pass --overwrite/);
    // with --overwrite a failed export leaves it as it was
    const f = await vlakit(['export', path.join(d, 'ckpt'), '-o', out, '--overwrite']);
    expect(f.code).toBe(1);
    expect(readdirSync(out)).toEqual(['notes.txt']);
    expect(readdirSync(d)).toEqual(['onnx']);
  });

  it('convert onto its own input, relabel -o = --stats-out: refused', async () => {
    const d = fresh();
    const f = path.join(d, 'steps.jsonl');
    writeFileSync(f, STEPS);
    const r = await vlakit(['convert', f, '-o', f, '--overwrite']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/the output \(-o\) is the input .*steps\.jsonl/);
    expect(readFileSync(f, 'utf8')).toBe(STEPS);
    const s = await vlakit(['relabel', '-', '-o', path.join(d, 's.json'), '--stats-out', path.join(d, 's.json')], { input: '' });
    expect(s.code).toBe(2);
    expect(s.err).toMatch(/-o .*s\.json and --stats-out .*s\.json overlap/);
  });
});

describe('a read-only file system', () => {
  // Tests run as root, where permissions stop nothing: a preload makes one directory behave as a read-only mount.
  const d = fresh();
  const ro = path.join(d, 'ro');
  mkdirSync(ro);
  const preload = path.join(d, 'readonly.mjs');
  writeFileSync(
    preload,
    `import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
const RO = process.env.VLAKIT_TEST_READONLY;
const erofs = (p, op) => Object.assign(new Error(\`EROFS: read-only file system, \${op} '\${p}'\`), { code: 'EROFS', errno: -30, syscall: op, path: String(p) });
// as Linux does: creating what exists is EEXIST (mkdir -p passes), anything else that writes is EROFS
const hit = (p) => String(p).startsWith(RO + '/');
const exists = fs.existsSync;
for (const name of ['mkdirSync', 'openSync', 'writeFileSync', 'renameSync']) {
  const orig = fs[name];
  fs[name] = function (p, ...rest) { if (hit(p) && !(name === 'mkdirSync' && exists(p)) && (name !== 'openSync' || /[wa+]/.test(String(rest[0] ?? 'r')))) throw erofs(p, name.replace('Sync', '')); return orig.call(this, p, ...rest); };
}
for (const name of ['mkdir', 'writeFile', 'rename', 'open']) {
  const orig = fs.promises[name];
  fs.promises[name] = function (p, ...rest) { if (hit(p) && !(name === 'mkdir' && exists(p)) && (name !== 'open' || /[wa+]/.test(String(rest[0] ?? 'r')))) return Promise.reject(erofs(p, name)); return orig.call(this, p, ...rest); };
}
for (const name of ['mkdir', 'open']) {
  const orig = fs[name];
  fs[name] = function (p, ...rest) {
    const cb = rest[rest.length - 1];
    const flags = typeof rest[0] === 'string' ? rest[0] : 'r';
    if (hit(p) && !(name === 'mkdir' && exists(p)) && (name !== 'open' || /[wa+]/.test(flags))) return void process.nextTick(cb, erofs(p, name));
    return orig.call(this, p, ...rest);
  };
}
syncBuiltinESMExports();
`,
  );
  const env = { VLAKIT_TEST_READONLY: ro, NODE_OPTIONS: `--import ${preload}` };

  it('a file output says read-only (EROFS), not ENOENT; a directory output too, and a missing parent', async () => {
    const f = await vlakit(['convert', '-', '-o', path.join(ro, 'steps.jsonl')], { input: STEPS, env });
    expect(f.code).toBe(1);
    expect(f.err).toMatch(/^vlakit convert: E_IO in .*ro\/steps\.jsonl: read-only file system: cannot write here$/);
    const r = await vlakit(['convert', '-', '--to', 'rlds', '-o', path.join(ro, 'ds', '1.0.0')], { input: STEPS, env });
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/E_IO in .*ro\/ds: read-only file system: cannot write here/);
    mkdirSync(path.join(ro, 'ds2'));
    const r2 = await vlakit(['convert', '-', '--to', 'rlds', '-o', path.join(ro, 'ds2', '1.0.0')], { input: STEPS, env });
    expect(r2.code).toBe(1);
    expect(r2.err).toMatch(/E_IO in .*ro\/ds2\/1\.0\.0: read-only file system: cannot write here/);
    expect(`${f.err}${r.err}${r2.err}`).not.toMatch(/ENOENT|internal error|\n\s+at /);
  });
});

describe('signals and killed runs', () => {
  it('SIGTERM: the command stops, removes its temporaries, writes no output, exits 143', async () => {
    const d = fresh();
    const out = path.join(d, 'demos.jsonl');
    const child = execa('node', [BIN, 'rollout', '--episodes', '400', '--width', '16', '--height', '16', '-o', out, '-q'], { reject: false });
    await appears(d, /^\.demos\.jsonl\.tmp-\d+-\d+$/, child);
    child.kill('SIGTERM');
    const r = await child;
    expect(r.exitCode).toBe(143);
    expect(String(r.stderr)).toMatch(/vlakit rollout: interrupted by SIGTERM; partial outputs were removed/);
    expect(readdirSync(d)).toEqual([]);
  }, 60_000);

  it('SIGHUP while blocked on stdin: exits 129 and leaves no temporary', async () => {
    const d = fresh();
    const out = path.join(d, 'steps.jsonl');
    const child = execa('node', [BIN, 'convert', '-', '-o', out], { reject: false, stdin: 'pipe' });
    child.stdin!.write(STEPS); // and stdin stays open
    await appears(d, /^\.steps\.jsonl\.tmp-\d+-\d+$/, child);
    child.kill('SIGHUP');
    const r = await child;
    expect(r.exitCode).toBe(129);
    expect(String(r.stderr)).toMatch(/interrupted by SIGHUP; partial outputs were removed/);
    expect(readdirSync(d)).toEqual([]);
  }, 60_000);

  it('SIGKILL leaves a temporary; the next run writing there removes it and says so', async () => {
    const d = fresh();
    const out = path.join(d, 'steps.jsonl');
    const child = execa('node', [BIN, 'convert', '-', '-o', out], { reject: false, stdin: 'pipe' });
    child.stdin!.write(STEPS);
    const tmp = await appears(d, /^\.steps\.jsonl\.tmp-\d+-\d+$/, child);
    child.kill('SIGKILL');
    expect((await child).signal).toBe('SIGKILL');
    expect(readdirSync(d)).toEqual([tmp]);
    const r = await vlakit(['convert', '-', '-o', out], { input: STEPS });
    expect(r.code).toBe(0);
    expect(r.err).toContain(`vlakit convert: removed 1 stale temporary of killed vlakit runs beside ${out}: ${tmp}`);
    expect(readdirSync(d)).toEqual(['steps.jsonl']);
  }, 60_000);
});
