/** train-sft / train-rl run directories through the real binary: exit codes and messages, never a stack trace. */
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers.js';
import { toyExamples } from '../model/examples.js';

const BIN = path.resolve('bin/run.js');
const dir = tempDir();
const data = path.join(dir, 'examples.jsonl');
const other = path.join(dir, 'other.jsonl');

function vlakit(args: string[]) {
  return execa('node', [BIN, ...args], { reject: false, env: { NO_COLOR: '1' } }).then((r) => ({ code: r.exitCode, out: r.stdout, err: r.stderr }));
}

const TINY = ['--preset', 'tiny', '--vocab-size', '128', '--batch-size', '2', '-q'];

beforeAll(async () => {
  const ex = await toyExamples();
  writeFileSync(data, ex.map((e) => JSON.stringify(e)).join('\n') + '\n');
  writeFileSync(other, ex.slice(0, 2).map((e) => JSON.stringify(e)).join('\n') + '\n');
});

describe('train-sft run directories', () => {
  it('refuses another run\'s directory (exit 2), --resume with other inputs names the difference, --overwrite replaces', async () => {
    const run = path.join(dir, 'sft');
    const first = await vlakit(['train-sft', data, ...TINY, '--steps', '4', '--save-every', '2', '--lr', '1e-3', '-o', run]);
    expect(first.err).toBe('');
    expect(first.code).toBe(0);
    const before = readFileSync(path.join(run, 'model.safetensors'));

    const again = await vlakit(['train-sft', other, ...TINY, '--steps', '4', '--lr', '2e-3', '-o', run]);
    expect(again.code).toBe(2);
    expect(again.err).toMatch(/^vlakit train-sft: E_USAGE: -o .*sft already holds a train-sft run \(finished at step 4, 1 checkpoint\(s\) up to step 2, started [^)]*\); it differs from this one: the training data differ \(hash [0-9a-f]{12} vs [0-9a-f]{12}\), --lr 0.001 vs 0.002; pass --resume to continue it or --overwrite to replace it$/);
    expect(readFileSync(path.join(run, 'model.safetensors')).equals(before)).toBe(true);

    const resume = await vlakit(['train-sft', other, ...TINY, '--steps', '4', '--save-every', '2', '--lr', '2e-3', '--seed', '1', '--resume', '-o', run]);
    expect(resume.code).toBe(2);
    expect(resume.err).toMatch(/--resume: the run in .*sft was started with other inputs \(the run's vs this command's\): the training data differ \(hash [0-9a-f]{12} vs [0-9a-f]{12}\), --seed 0 vs 1, --lr 0.001 vs 0.002/);
    expect(resume.err).not.toMatch(/\n\s+at /);

    const over = await vlakit(['train-sft', other, ...TINY, '--steps', '2', '--lr', '2e-3', '--overwrite', '-o', run]);
    expect(over.code).toBe(0);
    expect(readdirSync(run).sort()).toEqual(['config.json', 'metrics.jsonl', 'model.safetensors', 'optimizer.safetensors', 'run.json', 'tokenizer.json', 'trainer_state.json']);
    expect(readFileSync(path.join(run, 'metrics.jsonl'), 'utf8').trim().split('\n')).toHaveLength(2);
    expect(readdirSync(dir).filter((n) => n.startsWith('sft.'))).toEqual([]);
  }, 120_000);

  it('an -o that is the input, and a corrupt trainer_state.json on --resume, are clear errors', async () => {
    const self = await vlakit(['train-sft', data, ...TINY, '--steps', '1', '--overwrite', '-o', dir]);
    expect(self.code).toBe(2);
    expect(self.err).toMatch(/E_USAGE: -o .* is or contains the input .*examples.jsonl: the run would write over its own data; choose another -o/);

    const run = path.join(dir, 'cut');
    // a run cut after its first checkpoint: --steps 4 --save-every 2, then the final state removed by hand
    expect((await vlakit(['train-sft', data, ...TINY, '--steps', '4', '--save-every', '2', '-o', run])).code).toBe(0);
    const info = JSON.parse(readFileSync(path.join(run, 'run.json'), 'utf8'));
    writeFileSync(path.join(run, 'run.json'), JSON.stringify({ ...info, finished: null }));
    writeFileSync(path.join(run, 'checkpoint-2', 'trainer_state.json'), '{"step": 2,');
    const r = await vlakit(['train-sft', data, ...TINY, '--steps', '4', '--save-every', '2', '--resume', '-o', run]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^vlakit train-sft: E_RECORD_INVALID in .*cut\/checkpoint-2\/trainer_state.json: the trainer state is not valid JSON/);
    expect(r.err).not.toMatch(/internal error|\n\s+at /);
  }, 120_000);
});

describe('train-rl run directories', () => {
  it('refuses its own --init as -o, and another run\'s directory', async () => {
    const sft = path.join(dir, 'rl-sft');
    expect((await vlakit(['train-sft', data, ...TINY, '--steps', '2', '-o', sft])).code).toBe(0);
    const RL = ['--init', sft, '--steps', '1', '--group', '2', '--prompts-per-step', '1', '--max-new-tokens', '4', '-q'];
    const self = await vlakit(['train-rl', data, ...RL, '--overwrite', '-o', sft]);
    expect(self.code).toBe(2);
    expect(self.err).toMatch(/is or contains the --init checkpoint .*rl-sft: the run would replace the model it starts from/);
    const rl = path.join(dir, 'rl');
    const first = await vlakit(['train-rl', data, ...RL, '-o', rl]);
    expect(first.err).toBe('');
    expect(first.code).toBe(0);
    const again = await vlakit(['train-rl', data, ...RL, '--beta', '0.5', '-o', rl]);
    expect(again.code).toBe(2);
    expect(again.err).toMatch(/already holds a train-rl run \(finished at step 1, 0 checkpoint\(s\), started [^)]*\); it differs from this one: --beta 0.04 vs 0.5; pass --resume/);
    // one new token: every answer is cut off, which metrics.jsonl records and the run warns about (once)
    const cut = path.join(dir, 'rl-cut');
    const loud = await vlakit(['train-rl', data, '--init', sft, '--steps', '2', '--group', '2', '--prompts-per-step', '1', '--max-new-tokens', '1', '-o', cut]);
    expect(loud.code, loud.err).toBe(0);
    const metrics = readFileSync(path.join(cut, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(metrics.map((m) => m.truncated)).toEqual([1, 1]);
    expect(loud.err.match(/warning: step 1: every completion reached --max-new-tokens 1 without an end token/g)).toHaveLength(1);
  }, 120_000);

  it('keeps the examples\' action units in the model (centimeters stay centimeters), and builds the mini preset', async () => {
    const ex = (await toyExamples()).map((e) => ({ ...e, meta: { ...e.meta, codec: { codec: 'text', precision: 1, units: 'cm' } } }));
    const cm = path.join(dir, 'cm.jsonl');
    writeFileSync(cm, ex.map((e) => JSON.stringify(e)).join('\n') + '\n');
    const run = path.join(dir, 'sft-cm');
    const r = await vlakit(['train-sft', cm, '--preset', 'mini', '--vocab-size', '128', '--batch-size', '2', '-q', '--steps', '1', '-o', run]);
    expect(r.err).toBe('');
    const cfg = JSON.parse(readFileSync(path.join(run, 'config.json'), 'utf8'));
    expect(cfg.vlakit.action_codec).toEqual({ codec: 'text', precision: 1, units: 'cm' });
    expect(cfg.vision_config).toMatchObject({ image_size: 64, patch_size: 16 });
    expect(cfg.text_config).toMatchObject({ hidden_size: 48, num_hidden_layers: 2 });
  }, 120_000);

  it('--config: a new model of any size (here the stem and keypoint tokens), vocabulary and cameras from the data; the result exports and a bad config is named', async () => {
    const sizes = {
      model_type: 'vlakit-vla', architectures: ['VlaForCausalLM'], num_cameras: 4, tie_word_embeddings: true, initializer_range: 0.1, torch_dtype: 'float32',
      vision_config: { image_size: 32, patch_size: 8, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 32, layer_norm_eps: 1e-6, stem_patch_size: 4, stem_channels: 8, keypoints: 4 },
      text_config: { vocab_size: 9999, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, intermediate_size: 32, rms_norm_eps: 1e-6, rope_theta: 10000, max_position_embeddings: 256 },
    };
    const file = path.join(dir, 'sizes.json');
    writeFileSync(file, JSON.stringify(sizes));
    const run = path.join(dir, 'sft-config');
    const r = await vlakit(['train-sft', data, '--config', file, '--vocab-size', '128', '--batch-size', '2', '-q', '--steps', '2', '-o', run]);
    expect(r.err).toBe('');
    const cfg = JSON.parse(readFileSync(path.join(run, 'config.json'), 'utf8'));
    expect(cfg.vision_config).toMatchObject({ stem_patch_size: 4, stem_channels: 8, keypoints: 4 });
    expect(cfg.num_cameras).toBe(1); // the toy examples have one image
    const vocab = Object.keys(JSON.parse(readFileSync(path.join(run, 'tokenizer.json'), 'utf8')).model.vocab).length;
    expect(cfg.text_config.vocab_size).toBeGreaterThanOrEqual(vocab);
    expect(cfg.text_config.vocab_size).not.toBe(9999);
    expect((await vlakit(['export', run, '-o', `${run}-onnx`, '-q'])).code).toBe(0);
    writeFileSync(file, JSON.stringify({ ...sizes, vision_config: { ...sizes.vision_config, stem_patch_size: 3 } }));
    const bad = await vlakit(['train-sft', data, '--config', file, '--steps', '1', '-q', '-o', path.join(dir, 'sft-bad')]);
    expect(bad.code).toBe(1); // the file's content: a data error naming the field
    expect(bad.err).toContain('"vision_config.stem_patch_size"');
    expect(bad.err).toContain('not a multiple of stem_patch_size 3');
    expect((await vlakit(['train-sft', data, '--config', file, '--preset', 'mini', '--steps', '1', '-o', path.join(dir, 'sft-bad2')])).code).toBe(2);
  }, 120_000);
});
