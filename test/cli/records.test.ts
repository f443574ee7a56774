/**
 * Bad records at every command's input: each stops with exit 1 and a message naming the file, the line and the
 * field, never a stack trace.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { preset } from '../../src/lib/model/config.js';
import { tempDir } from '../helpers.js';

const BIN = path.resolve('bin/run.js');
const dir = tempDir();

async function vlakit(args: string[]) {
  const r = await execa('node', [BIN, ...args], { reject: false, env: { NO_COLOR: '1' } });
  return { code: r.exitCode, out: r.stdout, err: r.stderr };
}

/** Exit 1, the place in the message, and no stack trace. */
function refused(r: { code?: number; err: string }, where: { file: string; line?: number; field?: string; code?: string }): void {
  expect(r.err).not.toMatch(/internal error/);
  expect(r.err).not.toMatch(/\n\s+at /);
  expect(r.code).toBe(1);
  if (where.code) expect(r.err).toContain(where.code);
  if (where.line !== undefined) expect(r.err).toContain(`line ${where.line}`);
  if (where.field !== undefined) expect(r.err).toContain(`field "${where.field}"`);
  expect(r.err).toContain(where.file);
}

const write = (name: string, lines: unknown[]): string => {
  const file = path.join(dir, name);
  writeFileSync(file, lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n') + '\n');
  return file;
};

let png: string;
let example: Record<string, unknown>;
const chunk = {
  episode_id: 'e',
  chunk_index: 0,
  mode: 'merge',
  language_instruction: 'pick',
  subtask: { index: 0, count: 1, description: 'pick', motion_plan: '' },
  observation: {},
  next_observation: {},
  actions: [[0, 0, 0, 1]],
  source_steps: [[0, 0]],
  start_step: 0,
  end_step: 0,
};

beforeAll(async () => {
  png = (await sharp({ create: { width: 8, height: 8, channels: 3, background: 'red' } }).png().toBuffer()).toString('base64');
  example = {
    id: 'e/actions/0',
    images: [{ mime: 'image/png', b64: png }],
    messages: [
      { role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'pick' }] },
      { role: 'assistant', content: [{ type: 'text', text: '[[0.000, 0.000, 0.000, 1]]' }] },
    ],
    spans: [{ kind: 'action', start: 0, end: 26 }],
    meta: { episode_id: 'e', steps: [0, 0], stage: 'actions', method: 'vlm2vla', representation: 'text', split: 'train' },
  };
});

describe('training examples', () => {
  it('{"messages":[],"spans":[]} is refused by train-sft, train-rl and attn-viz with line and field', async () => {
    const file = write('empty-example.jsonl', [example, { messages: [], spans: [] }]);
    refused(await vlakit(['train-sft', file, '-o', path.join(dir, 'run-sft'), '--backend', 'cpu', '--quiet']), { file, line: 2, field: 'id', code: 'E_RECORD_INVALID' });
    refused(await vlakit(['train-rl', file, '--init', path.join(dir, 'none'), '-o', path.join(dir, 'run-rl'), '--backend', 'cpu', '--quiet']), { file, line: 2, field: 'id' });
    refused(await vlakit(['attn-viz', '--model', path.join(dir, 'none'), '--input', file, '-o', path.join(dir, 'viz')]), { file, line: 2, field: 'id' });
  });

  it('a span past the end of the target, and --vocab-from', async () => {
    const file = write('long-span.jsonl', [{ ...example, spans: [{ kind: 'action', start: 0, end: 99 }] }]);
    refused(await vlakit(['train-sft', file, '-o', path.join(dir, 'run-span'), '--backend', 'cpu', '--quiet']), { file, line: 1, field: 'spans.0' });
    const good = write('good-example.jsonl', [example]);
    refused(await vlakit(['train-sft', good, '--vocab-from', file, '-o', path.join(dir, 'run-vf'), '--backend', 'cpu', '--quiet']), { file, line: 1, field: 'spans.0' });
  });

  it('train-sft --stats: a missing file and a corrupt one', async () => {
    const good = write('good-example2.jsonl', [example]);
    refused(await vlakit(['train-sft', good, '--stats', path.join(dir, 'no-stats.json'), '-o', path.join(dir, 'run-st1'), '--backend', 'cpu', '--quiet']), { file: 'no-stats.json', code: 'E_NOT_FOUND' });
    const corrupt = path.join(dir, 'corrupt-stats.json');
    writeFileSync(corrupt, '{"dims": [{"count": 1, "mean": NaN');
    refused(await vlakit(['train-sft', good, '--stats', corrupt, '-o', path.join(dir, 'run-st2'), '--backend', 'cpu', '--quiet']), { file: corrupt, code: 'E_RECORD_INVALID' });
  });
});

describe('chunk records', () => {
  it('relabel refuses "NaN" in actions, naming line and action entry', async () => {
    const file = write('nan-chunks.jsonl', [chunk, { ...chunk, chunk_index: 1, actions: [[0, 0, 'NaN', 1]] }]);
    const r = await vlakit(['relabel', file, '-o', path.join(dir, 'nan-examples.jsonl')]);
    refused(r, { file, line: 2, field: 'actions.0.2' });
    expect(r.err).toMatch(/expected a finite number, got "NaN"/);
    const inf = write('inf-chunks.jsonl', [{ ...chunk, actions: [[0, '-Infinity', 0, 1]] }]);
    refused(await vlakit(['relabel', inf, '--stats-out', path.join(dir, 'inf-stats.json')]), { file: inf, line: 1, field: 'actions.0.1' });
  });

  it('a chunk record without actions is reported as a chunk record missing "actions"', async () => {
    const { actions: _, ...noActions } = chunk;
    const file = write('no-actions.jsonl', [noActions]);
    const r = await vlakit(['relabel', file, '-o', path.join(dir, 'x.jsonl')]);
    refused(r, { file, line: 1, field: 'actions' });
    expect(r.err).toMatch(/invalid chunk record: missing/);
    expect(r.err).not.toMatch(/step/);
  });

  it('relabel --stats: a missing file and a wrong-shaped one', async () => {
    const file = write('ok-chunks.jsonl', [chunk]);
    refused(await vlakit(['relabel', file, '--actions', 'bins', '--stats', path.join(dir, 'missing.json'), '-o', path.join(dir, 'b.jsonl')]), { file: 'missing.json', code: 'E_NOT_FOUND' });
    const stats = path.join(dir, 'wrong-stats.json');
    writeFileSync(stats, JSON.stringify({ dims: [{ count: 1, mean: 0, std: 0, min: 0, max: 0, q01: 'NaN', q99: 0 }], exactQuantiles: true, count: 1 }));
    refused(await vlakit(['relabel', file, '--actions', 'bins', '--stats', stats, '-o', path.join(dir, 'b.jsonl')]), { file: stats, field: 'dims.0.q01' });
  });
});

describe('step records', () => {
  const step = (t: number, action: unknown[]) => ({ episode_id: 'e', step: t, is_first: t === 0, is_last: t === 2, observation: { state: [0, 0, 0, 1] }, action, language_instruction: 'pick' });

  it('chunk and annotate refuse an action with "NaN" or too few numbers', async () => {
    const file = write('nan-steps.jsonl', [step(0, [0, 0, 0, 1]), step(1, [0, 'NaN', 0, 1]), step(2, [0, 0, 0, 1])]);
    refused(await vlakit(['chunk', file, '-o', path.join(dir, 'c.jsonl')]), { file, line: 2, field: 'action.1' });
    refused(await vlakit(['annotate', file, '--kind', 'plan', '--teacher', 'kinematic', '-o', path.join(dir, 'a.jsonl')]), { file, line: 2, field: 'action.1' });
    const short = write('short-steps.jsonl', [step(0, [0, 0])]);
    refused(await vlakit(['chunk', short, '-o', path.join(dir, 'c.jsonl')]), { file: short, line: 1, field: 'action' });
  });

  it('chunk refuses a bad plan annotation', async () => {
    const plan = { index: 0, description: 'pick', start: 0, end: 'two' };
    const file = write('bad-plan.jsonl', [{ ...step(0, [0, 0, 0, 1]), plan }]);
    refused(await vlakit(['chunk', file, '-o', path.join(dir, 'c.jsonl')]), { file, line: 1, field: 'plan.end' });
  });
});

describe('eval-vqa and model configs', () => {
  it('a VQA row without a question, and a corrupt model config.json', async () => {
    writeFileSync(path.join(dir, 'red.png'), Buffer.from(png, 'base64'));
    const rows = write('rows.jsonl', [{ image: 'red.png', question: 'color?', answer: 'red' }, { image: 'red.png', answer: 'red' }]);
    refused(await vlakit(['eval-vqa', '--data', rows, '--model', path.join(dir, 'none')]), { file: rows, line: 2, field: 'question' });
    const bad = write('bad-metric.jsonl', [{ image: 'red.png', question: 'q', answer: 'a', metric: 'bleu' }]);
    refused(await vlakit(['eval-vqa', '--data', bad, '--model', path.join(dir, 'none')]), { file: bad, line: 1, field: 'metric' });

    const ck = path.join(dir, 'ck');
    mkdirSync(ck);
    writeFileSync(path.join(ck, 'config.json'), '{"model_type": "vlakit-vla",');
    const good = write('rows-ok.jsonl', [{ image: 'red.png', question: 'color?', answer: 'red' }]);
    const r = await vlakit(['eval-vqa', '--data', good, '--model', ck]);
    refused(r, { file: path.join(ck, 'config.json'), code: 'E_MODEL' });
    expect(r.err).toMatch(/not valid JSON/);
    const cfg = preset('tiny', 64);
    writeFileSync(path.join(ck, 'config.json'), JSON.stringify({ ...cfg, num_cameras: 0 }));
    refused(await vlakit(['export', ck, '-o', path.join(dir, 'onnx')]), { file: path.join(ck, 'config.json'), field: 'num_cameras' });
  });
});
