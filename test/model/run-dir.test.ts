import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { TextCodec, type TrainingExample } from '../../src/lib/actions/index.js';
import { exportModel } from '../../src/lib/export/index.js';
import { liveTemporaries } from '../../src/lib/io/outputs.js';
import { selectBackend } from '../../src/lib/model/backend.js';
import { loadCheckpoint } from '../../src/lib/model/checkpoint.js';
import { trainRl } from '../../src/lib/train/rl.js';
import { type RunIdentity, identityDifferences } from '../../src/lib/train/run-dir.js';
import { trainSft } from '../../src/lib/train/sft.js';
import { tempDir } from '../helpers.js';
import { toyExamples } from './examples.js';
import { TINY, freshDir, trainTiny } from './runs.js';

const dir = tempDir();
let examples: TrainingExample[];
const LORA = { r: 4, alpha: 8, targets: ['q', 'v'] };

beforeAll(async () => {
  await selectBackend('wasm');
  examples = await toyExamples();
});

/** Every file under `root` with its bytes, for before/after comparisons. */
function snapshot(root: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.set(path.relative(root, p), readFileSync(p).toString('base64'));
    }
  };
  walk(root);
  return out;
}

const metricSteps = (run: string) => readFileSync(path.join(run, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).step as number);
/** Siblings of `run` that a run left behind (temporary or set-aside directories). */
const leftovers = (run: string) => readdirSync(path.dirname(run)).filter((n) => n !== path.basename(run));

describe('a run directory holds one run', () => {
  it('a new run into a directory holding another run is refused (exit 2) and the old run stays as it was', async () => {
    const run = await trainTiny(dir, 'refuse', examples, { steps: 4, saveEvery: 2 });
    const before = snapshot(run);
    expect([...before.keys()]).toContain('run.json');
    const err = await trainSft({ ...TINY, examples: examples.slice(0, 2), outDir: run, steps: 3, lr: 2e-2 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'E_USAGE', exitCode: 2 });
    expect((err as Error).message).toMatch(/already holds a train-sft run \(finished at step 4, 1 checkpoint\(s\) up to step 2, started .*\); it differs from this one: the training data differ \(hash [0-9a-f]{12} vs [0-9a-f]{12}\), --lr 0.01 vs 0.02, --steps 4 vs 3; pass --resume to continue it or --overwrite to replace it/);
    expect(snapshot(run)).toEqual(before);
    // the same run again, without --resume: refused too (it would mix two copies of the run's metrics)
    await expect(trainSft({ ...TINY, examples, outDir: run, steps: 4, saveEvery: 2 })).rejects.toThrow(/it has the same data, settings and seed as this one; pass --resume/);
    // a directory with other files, and a file
    const other = freshDir(dir, 'other');
    writeFileSync(path.join(other, 'notes.txt'), 'mine');
    await expect(trainSft({ ...TINY, examples, outDir: other, steps: 1 })).rejects.toThrow(/-o .*other-\w+ already holds files \(1 entry: notes.txt\); pass --resume to continue it or --overwrite/);
    expect(readdirSync(other)).toEqual(['notes.txt']);
    await expect(trainSft({ ...TINY, examples, outDir: path.join(other, 'notes.txt'), steps: 1 })).rejects.toThrow(/is a file, not a run directory/);
    await expect(trainSft({ ...TINY, examples, outDir: other, steps: 1, resume: true, overwrite: true })).rejects.toMatchObject({ code: 'E_USAGE', message: expect.stringMatching(/pass one of them/) });
  }, 60_000);

  it('--overwrite replaces the old run: the directory then holds the new run\'s files only', async () => {
    const run = await trainTiny(dir, 'replace', examples, { steps: 4, saveEvery: 2 });
    writeFileSync(path.join(run, 'stray.txt'), 'x');
    await trainSft({ ...TINY, examples: examples.slice(0, 2), outDir: run, steps: 3, overwrite: true });
    expect(readdirSync(run).sort()).toEqual(['config.json', 'metrics.jsonl', 'model.safetensors', 'optimizer.safetensors', 'run.json', 'tokenizer.json', 'trainer_state.json']);
    expect(metricSteps(run)).toEqual([1, 2, 3]);
    const info = JSON.parse(readFileSync(path.join(run, 'run.json'), 'utf8'));
    expect(info).toMatchObject({ format: 'vlakit-run/1', finished: 3, identity: { kind: 'train-sft', seed: 3, mode: 'full', config: { steps: 3 } } });
    expect(JSON.parse(readFileSync(path.join(run, 'trainer_state.json'), 'utf8'))).toMatchObject({ step: 3, run: info.fingerprint });
    expect(leftovers(run)).toEqual([]);
  }, 60_000);

  it('LoRA, then full fine-tuning with --overwrite: no adapter files are left, and export merges nothing', async () => {
    const init = await trainTiny(dir, 'lf-init', examples, { steps: 1 });
    const run = await trainTiny(dir, 'lf', examples, { init, steps: 2, lora: LORA });
    expect(readdirSync(run)).toContain('adapter_model.safetensors');
    await trainSft({ ...TINY, examples, init, outDir: run, steps: 2, overwrite: true });
    expect(readdirSync(run).filter((n) => n.startsWith('adapter_'))).toEqual([]);
    expect(JSON.parse(readFileSync(path.join(run, 'config.json'), 'utf8')).vlakit.lora).toBeNull();
    const res = await exportModel(run, path.join(path.dirname(run), 'onnx'), {});
    expect(res.loraMerged).toBe(false);
  }, 60_000);

  it('a checkpoint refuses adapter files that its config.json does not record, or that are not its own', async () => {
    const init = await trainTiny(dir, 'stale-init', examples, { steps: 1 });
    const lora = await trainTiny(dir, 'stale-lora', examples, { init, steps: 1, lora: LORA });
    const full = await trainTiny(dir, 'stale-full', examples, { init, steps: 1 });
    // an older vlakit left a LoRA run's adapters in a directory that then got a full model
    for (const f of ['adapter_config.json', 'adapter_model.safetensors']) writeFileSync(path.join(full, f), readFileSync(path.join(lora, f)));
    expect(() => loadCheckpoint(full)).toThrow(/E_MODEL in .*: config.json records a model without LoRA adapters, yet adapter_config.json is here/);
    await expect(exportModel(full, path.join(path.dirname(full), 'onnx'), {})).rejects.toMatchObject({ code: 'E_MODEL' });
    // adapters of another shape than config.json records
    const cfg = JSON.parse(readFileSync(path.join(lora, 'adapter_config.json'), 'utf8'));
    writeFileSync(path.join(lora, 'adapter_config.json'), JSON.stringify({ ...cfg, r: 8 }));
    expect(() => loadCheckpoint(lora)).toThrow(/adapter_config.json \(r 8, alpha 8, q_proj,v_proj\) is not the adapter config.json records \(r 4, alpha 8, q_proj,v_proj\)/);
  }, 60_000);

  it('a new run that fails before its first checkpoint leaves nothing behind: --overwrite keeps the old run whole', async () => {
    const run = await trainTiny(dir, 'killed', examples, { steps: 4, saveEvery: 2 });
    const before = snapshot(run);
    const boom = (m: Record<string, unknown>) => {
      if (m.step === 2) throw new Error('simulated crash at step 2');
    };
    await expect(trainSft({ ...TINY, examples: examples.slice(0, 2), outDir: run, steps: 6, saveEvery: 3, overwrite: true, onMetrics: boom })).rejects.toThrow('simulated crash at step 2');
    expect(snapshot(run)).toEqual(before);
    expect(leftovers(run)).toEqual([]);
    // a fresh directory: a failed run with nothing to show takes its directory away again
    const fresh = path.join(freshDir(dir, 'killed-fresh'), 'run');
    await expect(trainSft({ ...TINY, examples, outDir: fresh, steps: 6, onMetrics: boom })).rejects.toThrow('simulated crash');
    expect(existsSync(fresh)).toBe(false);
  }, 60_000);

  it('--overwrite replaces the old run at the new run\'s first checkpoint; the new run can then be resumed', async () => {
    const run = await trainTiny(dir, 'swap', examples, { steps: 4 });
    const ctl = new AbortController();
    const o = { ...TINY, examples: examples.slice(0, 2), outDir: run, steps: 4, saveEvery: 2 };
    await expect(trainSft({ ...o, overwrite: true, signal: ctl.signal, onMetrics: (m) => m.step === 3 && ctl.abort() })).rejects.toMatchObject({ name: 'AbortError' });
    expect(readdirSync(run).sort()).toEqual(['checkpoint-2', 'metrics.jsonl', 'run.json']);
    expect(JSON.parse(readFileSync(path.join(run, 'run.json'), 'utf8')).finished).toBeNull();
    expect(leftovers(run)).toEqual([]);
    await trainSft({ ...o, resume: true });
    expect(metricSteps(run)).toEqual([1, 2, 3, 4]);
  }, 60_000);

  it('the temporaries of a run are tracked, so that a signal removes them (SIGTERM and the like)', async () => {
    const run = await trainTiny(dir, 'tracked', examples, { steps: 1 });
    const seen: string[][] = [];
    const note = () => seen.push(liveTemporaries().filter((p) => p.startsWith(path.dirname(run))));
    // --overwrite: the new run lives in a tracked sibling until its first checkpoint
    await trainSft({ ...TINY, examples: examples.slice(0, 2), outDir: run, steps: 3, saveEvery: 2, overwrite: true, onMetrics: note });
    expect(seen[0]).toEqual([expect.stringMatching(/\/\.run\.tmp-\d+-\d+$/)]);
    expect(seen[2]).toEqual([]); // after the swap at step 2
    expect(liveTemporaries().filter((p) => p.startsWith(path.dirname(run)))).toEqual([]);
    expect(leftovers(run)).toEqual([]);
  }, 60_000);

  it('leftovers of a killed run (SIGKILL) are cleaned by the next run', async () => {
    const run = await trainTiny(dir, 'stale', examples, { steps: 2 });
    const dead = spawnSync(process.execPath, ['-e', '0']).pid;
    const tmp = path.join(path.dirname(run), `.run.tmp-${dead}-1`);
    mkdirSync(tmp);
    writeFileSync(path.join(tmp, 'run.json'), '{}');
    mkdirSync(path.join(run, `.checkpoint-9.tmp-${dead}-2`));
    mkdirSync(path.join(run, `.final.tmp-${dead}-3`));
    await trainSft({ ...TINY, examples, outDir: run, steps: 1, overwrite: true });
    expect(leftovers(run)).toEqual([]);
    expect(readdirSync(run).filter((n) => n.startsWith('.'))).toEqual([]);
    // killed between the two renames of a replacement: the old run is put back
    renameSync(run, path.join(path.dirname(run), `.run.old-${dead}-4`));
    await expect(trainSft({ ...TINY, examples, outDir: run, steps: 1 })).rejects.toThrow(/already holds a train-sft run \(finished at step 1/);
    expect(leftovers(run)).toEqual([]);
  }, 60_000);
});

describe('--resume', () => {
  it('is refused when the data, settings or seed differ, naming each difference', async () => {
    const run = path.join(freshDir(dir, 'resume'), 'run');
    const ctl = new AbortController();
    const o = { ...TINY, examples, outDir: run, steps: 4, saveEvery: 2 };
    await expect(trainSft({ ...o, signal: ctl.signal, onMetrics: (m) => m.step === 2 && ctl.abort() })).rejects.toMatchObject({ name: 'AbortError' });
    const before = snapshot(run);
    const err = await trainSft({ ...o, examples: examples.slice(0, 2), lr: 2e-2, seed: 4, resume: true }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'E_USAGE', exitCode: 2 });
    expect((err as Error).message).toMatch(/^E_USAGE: --resume: the run in .*run was started with other inputs \(the run's vs this command's\): the training data differ \(hash [0-9a-f]{12} vs [0-9a-f]{12}\), --seed 3 vs 4, --lr 0.01 vs 0.02; start a new run elsewhere, or replace it with --overwrite$/);
    await expect(trainSft({ ...o, lora: LORA, resume: true })).rejects.toThrow(/full fine-tuning vs LoRA fine-tuning, --lora-r \(none\) vs 4, --lora-alpha \(none\) vs 8, --lora-targets \(none\) vs "q,v"/);
    expect(snapshot(run)).toEqual(before);
    await trainSft({ ...o, resume: true });
    expect(metricSteps(run)).toEqual([1, 2, 3, 4]);
    await expect(trainSft({ ...o, resume: true })).rejects.toThrow(/the run in .* finished at step 4; nothing to resume/);
    await expect(trainSft({ ...o, outDir: path.join(dir, 'nothing-here'), resume: true })).rejects.toMatchObject({ code: 'E_NOT_FOUND', message: expect.stringMatching(/nothing to resume/) });
  }, 60_000);

  it('a corrupt or missing trainer_state.json is an error that names the file', async () => {
    const run = path.join(freshDir(dir, 'corrupt'), 'run');
    const ctl = new AbortController();
    const o = { ...TINY, examples, outDir: run, steps: 4, saveEvery: 2 };
    await expect(trainSft({ ...o, signal: ctl.signal, onMetrics: (m) => m.step === 2 && ctl.abort() })).rejects.toMatchObject({ name: 'AbortError' });
    const state = path.join(run, 'checkpoint-2', 'trainer_state.json');
    const good = readFileSync(state);
    writeFileSync(state, '{"step": 2, "consu');
    await expect(trainSft({ ...o, resume: true })).rejects.toMatchObject({ code: 'E_RECORD_INVALID', message: expect.stringMatching(/^E_RECORD_INVALID in .*checkpoint-2\/trainer_state.json: the trainer state is not valid JSON/) });
    writeFileSync(state, JSON.stringify({ ...JSON.parse(good.toString()), step: -1 }));
    await expect(trainSft({ ...o, resume: true })).rejects.toThrow(/E_RECORD_INVALID at field "step" of .*trainer_state.json: invalid trainer state/);
    writeFileSync(state, JSON.stringify({ ...JSON.parse(good.toString()), run: 'f'.repeat(64) }));
    await expect(trainSft({ ...o, resume: true })).rejects.toThrow(/checkpoint-2 belongs to another run than run.json describes/);
    const { rmSync } = await import('node:fs');
    rmSync(state);
    await expect(trainSft({ ...o, resume: true })).rejects.toMatchObject({ code: 'E_NOT_FOUND', message: expect.stringMatching(/trainer_state.json: trainer state not found/) });
    writeFileSync(path.join(run, 'checkpoint-2', 'config.json'), '{"model_type":');
    writeFileSync(state, good);
    await expect(trainSft({ ...o, resume: true })).rejects.toThrow(/E_MODEL in .*checkpoint-2\/config.json: the checkpoint config is not valid JSON/);
    writeFileSync(path.join(run, 'run.json'), '[]');
    await expect(trainSft({ ...o, resume: true })).rejects.toThrow(/E_RECORD_INVALID in .*run.json: invalid run file/);
  }, 60_000);
});

describe('outputs that are inputs', () => {
  it('-o that is or contains the data or the --init checkpoint is refused', async () => {
    const init = await trainTiny(dir, 'in-init', examples, { steps: 1 });
    await expect(trainSft({ ...TINY, examples, init, outDir: init, steps: 1, overwrite: true })).rejects.toThrow(/-o .* is or contains the --init checkpoint .*: the run would replace the model it starts from/);
    await expect(trainSft({ ...TINY, examples, init: path.join(init, '.'), outDir: path.dirname(init), steps: 1, overwrite: true })).rejects.toMatchObject({ code: 'E_USAGE' });
    const data = path.join(freshDir(dir, 'in-data'), 'examples.jsonl');
    writeFileSync(data, '');
    await expect(trainSft({ ...TINY, examples, inputs: [data], outDir: path.dirname(data), steps: 1, overwrite: true })).rejects.toThrow(/is or contains the input .*examples.jsonl: the run would write over its own data/);
    expect(statSync(data).isFile()).toBe(true);
    await expect(trainRl({ init, examples, codec: new TextCodec(3), outDir: init, steps: 1, overwrite: true })).rejects.toThrow(/is or contains the --init checkpoint/);
    // a missing --init is found before the run directory is made
    const nowhere = path.join(freshDir(dir, 'no-init'), 'run');
    await expect(trainSft({ ...TINY, examples, init: path.join(dir, 'missing'), outDir: nowhere, steps: 1 })).rejects.toMatchObject({ code: 'E_NOT_FOUND', message: expect.stringMatching(/missing: not a vlakit checkpoint: no config.json/) });
    expect(existsSync(nowhere)).toBe(false);
  }, 60_000);
});

describe('identityDifferences', () => {
  it('names each difference, the run\'s value first', () => {
    const a: RunIdentity = { kind: 'train-sft', data: 'a'.repeat(64), seed: 1, init: null, mode: 'full', config: { lr: 0.001, stats: null } };
    expect(identityDifferences(a, a)).toEqual([]);
    const b: RunIdentity = { ...a, kind: 'train-rl', data: 'b'.repeat(64), init: { path: 'runs/x', hash: `sha256:${'c'.repeat(64)}` }, config: { lr: 0.002, stats: `sha256:${'d'.repeat(64)}` } };
    expect(identityDifferences(a, b)).toEqual([
      'it is a train-sft run, not train-rl',
      'the training data differ (hash aaaaaaaaaaaa vs bbbbbbbbbbbb)',
      'the --init checkpoint differs: (none) vs runs/x (hash cccccccccccc)',
      '--lr 0.001 vs 0.002',
      '--stats (none) vs dddddddddddd',
    ]);
  });
});
