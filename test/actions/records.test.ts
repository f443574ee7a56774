/**
 * The record schemas: valid records pass through unchanged (property tests), and bad ones are refused with the
 * field and what was expected: NaN and infinities in any form, missing fields, inconsistent lengths and spans.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ActionStatsSchema, ChunkRecordSchema, TrainingExampleSchema, chunkEpisode, makeCodec, readActionStats, type ChunkRecord, type TrainingExample } from '../../src/lib/actions/index.js';
import { VlakitError } from '../../src/lib/errors.js';
import { recordKind, validateRecord } from '../../src/lib/io/records.js';
import { loadCheckpoint } from '../../src/lib/model/checkpoint.js';
import { preset } from '../../src/lib/model/config.js';
import { AnnotatedStepSchema } from '../../src/lib/teacher/records.js';
import { tempDir } from '../helpers.js';

const dir = tempDir();

/** The error a call throws (fails the test when it throws none, or something other than a VlakitError). */
function errorOf(fn: () => unknown): VlakitError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(VlakitError);
    return err as VlakitError;
  }
  throw new Error('expected an error');
}

const key = fc.string({ maxLength: 8 }).filter((k) => k !== '__proto__');
const finite = fc.double({ noNaN: true, noDefaultInfinity: true });
const nat = fc.nat({ max: 10_000 });
const observation = fc.dictionary(key, fc.oneof(fc.jsonValue({ maxDepth: 2 }), fc.record({ mime: fc.constant('image/png'), b64: fc.base64String({ maxLength: 16 }) })), { maxKeys: 3 });

const chunkArb: fc.Arbitrary<ChunkRecord> = fc.integer({ min: 0, max: 4 }).chain((n) =>
  fc
    .record(
      {
        episode_id: fc.oneof(fc.string({ minLength: 1, maxLength: 8 }), nat),
        chunk_index: nat,
        mode: fc.constantFrom('merge' as const, 'fixed' as const),
        language_instruction: fc.string({ maxLength: 20 }),
        subtask: fc.record({ index: nat, count: nat, description: fc.string({ maxLength: 20 }), motion_plan: fc.string({ maxLength: 20 }) }),
        observation,
        next_observation: observation,
        actions: fc.array(fc.array(finite, { minLength: 4, maxLength: 7 }), { minLength: n, maxLength: n }),
        source_steps: fc.array(fc.tuple(nat, nat), { minLength: n, maxLength: n }),
        mask: fc.array(fc.constantFrom(0, 1), { minLength: n, maxLength: n }),
        start_step: nat,
        length: nat,
        oracle: fc.jsonValue({ maxDepth: 2 }),
        extra: fc.jsonValue({ maxDepth: 2 }),
      },
      { requiredKeys: ['episode_id', 'chunk_index', 'mode', 'language_instruction', 'subtask', 'observation', 'next_observation', 'actions', 'source_steps', 'start_step', 'length'] },
    )
    .map(({ length, extra, ...c }) => ({ ...c, end_step: c.start_step + length, ...(extra !== undefined ? { future_field: extra } : {}) }) as ChunkRecord),
);

const exampleArb: fc.Arbitrary<TrainingExample> = fc
  .record(
    {
      id: fc.string({ maxLength: 12 }),
      images: fc.array(fc.record({ mime: fc.constantFrom('image/png', 'image/jpeg'), b64: fc.base64String({ maxLength: 16 }) }), { maxLength: 3 }),
      prompt: fc.string({ maxLength: 30 }),
      parts: fc.array(fc.record({ kind: fc.constantFrom('reasoning' as const, 'action' as const), text: fc.string({ minLength: 1, maxLength: 20 }) }), { maxLength: 4 }),
      meta: fc.record({ episode_id: fc.oneof(fc.string({ minLength: 1, maxLength: 8 }), nat), steps: fc.tuple(nat, nat), stage: fc.string({ maxLength: 10 }), method: fc.string({ maxLength: 10 }), representation: fc.string({ maxLength: 10 }), split: fc.constantFrom('train', 'val') }),
      oracle: fc.jsonValue({ maxDepth: 2 }),
    },
    { requiredKeys: ['id', 'images', 'prompt', 'parts', 'meta'] },
  )
  .map(({ prompt, parts, images, ...rest }) => {
    let target = '';
    const spans: TrainingExample['spans'] = [];
    for (const p of parts) {
      if (target) target += '\n';
      spans.push({ kind: p.kind, start: target.length, end: target.length + p.text.length });
      target += p.text;
    }
    const messages: TrainingExample['messages'] = [
      { role: 'user', content: [...images.map(() => ({ type: 'image' as const })), { type: 'text', text: prompt }] },
      { role: 'assistant', content: [{ type: 'text', text: target }] },
    ];
    return { ...rest, images, messages, spans } as TrainingExample;
  });

describe('valid records pass the schemas unchanged', () => {
  it('chunk records', () => {
    fc.assert(
      fc.property(chunkArb, (c) => {
        const text = JSON.parse(JSON.stringify(c));
        expect(recordKind(text)).toBe('chunk');
        expect(ChunkRecordSchema.parse(text)).toEqual(text); // every field kept, none changed
        expect(validateRecord(ChunkRecordSchema, text, 'chunk record')).toBe(text);
      }),
    );
  });

  it('training examples', () => {
    fc.assert(
      fc.property(exampleArb, (ex) => {
        const text = JSON.parse(JSON.stringify(ex));
        expect(recordKind(text)).toBe('training_example');
        expect(TrainingExampleSchema.parse(text)).toEqual(text);
        expect(validateRecord(TrainingExampleSchema, text, 'training example')).toBe(text);
      }),
    );
  });

  it('what chunk writes is a valid chunk record', () => {
    const steps = Array.from({ length: 6 }, (_, t) => ({ episode_id: 'e', step: t, action: [0.01, 0, -0.01, t < 3 ? 1 : 0], observation: { state: [0, 0, 0, 1] }, language_instruction: 'pick' }));
    for (const mode of ['merge', 'fixed'] as const) {
      for (const c of chunkEpisode(steps, { mode, horizon: 3 })) expect(ChunkRecordSchema.safeParse(JSON.parse(JSON.stringify(c))).success).toBe(true);
    }
  });
});

const goodChunk = (): Record<string, unknown> => ({
  episode_id: 'e',
  chunk_index: 0,
  mode: 'merge',
  language_instruction: 'pick',
  subtask: { index: 0, count: 1, description: 'pick', motion_plan: '' },
  observation: {},
  next_observation: {},
  actions: [
    [0, 0, 0, 1],
    [0.1, 0.2, 0.3, 1],
  ],
  source_steps: [
    [0, 0],
    [1, 1],
  ],
  start_step: 0,
  end_step: 1,
});

describe('bad records are refused with the field', () => {
  const where = { file: 'chunks.jsonl', line: 7 };

  it('NaN and infinities in actions, as strings or numbers, at any position', () => {
    fc.assert(
      fc.property(fc.constantFrom<unknown>('NaN', 'Infinity', '-Infinity', NaN, Infinity, -Infinity, null, '0.5'), fc.nat({ max: 1 }), fc.nat({ max: 3 }), (bad, i, j) => {
        const c = goodChunk();
        (c.actions as unknown[][])[i][j] = bad;
        const e = errorOf(() => validateRecord(ChunkRecordSchema, c, 'chunk record', where));
        expect(e.code).toBe('E_RECORD_INVALID');
        expect(e.context).toMatchObject({ file: 'chunks.jsonl', line: 7, field: `actions.${i}.${j}` });
        expect(e.message).toMatch(/expected a finite number/);
      }),
    );
  });

  it('a chunk record without actions is a chunk record missing "actions", not a bad step', () => {
    const { actions: _, ...c } = goodChunk();
    expect(recordKind(c)).toBe('chunk');
    const e = errorOf(() => validateRecord(ChunkRecordSchema, c, 'chunk record', where));
    expect(e.context.field).toBe('actions');
    expect(e.message).toBe('E_RECORD_INVALID at line 7 field "actions" of chunks.jsonl: invalid chunk record: missing (expected a list of actions)');
    // and actions without chunk_index is a chunk record missing chunk_index
    const { chunk_index: __, ...d } = goodChunk();
    expect(recordKind(d)).toBe('chunk');
    expect(errorOf(() => validateRecord(ChunkRecordSchema, d, 'chunk record', where)).context.field).toBe('chunk_index');
  });

  it('lengths that disagree, and a record of no known kind', () => {
    const c = goodChunk();
    (c.source_steps as unknown[]).pop();
    expect(errorOf(() => validateRecord(ChunkRecordSchema, c, 'chunk record')).context.field).toBe('source_steps');
    expect(errorOf(() => validateRecord(ChunkRecordSchema, { ...goodChunk(), mask: [1] }, 'chunk record')).context.field).toBe('mask');
    expect(errorOf(() => recordKind({ hello: 1 }, where)).message).toMatch(/expected a step record .* a chunk record .* a training example .*; got \{"hello":1\}/);
  });

  it('training examples: the empty one, a missing target, spans outside the target', () => {
    const e = errorOf(() => validateRecord(TrainingExampleSchema, { messages: [], spans: [] }, 'training example', where));
    expect(e.code).toBe('E_RECORD_INVALID');
    expect(e.context.field).toBe('id');
    const ex = fc.sample(exampleArb.filter((x) => x.spans.length > 0), { numRuns: 1, seed: 3 })[0];
    const noTarget = { ...ex, messages: [ex.messages[0]] };
    expect(errorOf(() => validateRecord(TrainingExampleSchema, noTarget, 'training example')).context.field).toBe('messages');
    const target = (ex.messages[1].content[0] as { text: string }).text;
    const outside = { ...ex, spans: [{ kind: 'action', start: 0, end: target.length + 1 }] };
    expect(errorOf(() => validateRecord(TrainingExampleSchema, outside, 'training example')).context.field).toBe('spans.0');
    const part = { ...ex, messages: [ex.messages[0], { role: 'assistant', content: [{ type: 'text' }] }] };
    expect(errorOf(() => validateRecord(TrainingExampleSchema, part, 'training example')).context.field).toBe('messages.1.content.0.text');
  });

  it('steps for chunk: NaN actions and plans whose range is backwards', () => {
    const step = { episode_id: 'e', step: 3, action: [0, 'NaN', 0, 1] };
    expect(errorOf(() => validateRecord(AnnotatedStepSchema, step, 'step record', where)).context.field).toBe('action.1');
    const plan = { index: 0, description: 'pick', start: 5, end: 2 };
    expect(errorOf(() => validateRecord(AnnotatedStepSchema, { ...step, action: [0, 0, 0, 1], plan }, 'step record', where)).context.field).toBe('plan.end');
    // an RLDS step has no line: the message says which episode and step
    expect(errorOf(() => validateRecord(AnnotatedStepSchema, step, 'step record', { file: 'ds/1.0.0' })).message).toMatch(/invalid step record \(episode e, step 3\): expected a finite number, got "NaN"/);
  });
});

describe('statistics and config files', () => {
  it('action statistics: missing, not JSON, NaN written as null', () => {
    expect(errorOf(() => readActionStats(path.join(dir, 'none.json'))).code).toBe('E_NOT_FOUND');
    const bad = path.join(dir, 'bad.json');
    writeFileSync(bad, '{"dims": [');
    expect(errorOf(() => readActionStats(bad)).message).toMatch(/E_RECORD_INVALID in .*bad\.json: the action statistics is not valid JSON/);
    writeFileSync(bad, JSON.stringify({ dims: [{ count: 1, mean: null, std: 0, min: 0, max: 0, q01: 0, q99: 0 }], exactQuantiles: true, count: 1 }));
    expect(errorOf(() => readActionStats(bad)).context.field).toBe('dims.0.mean');
    const good = { dims: [{ count: 2, mean: 0.5, std: 0.5, min: 0, max: 1, q01: 0.01, q99: 0.99 }], exactQuantiles: true, count: 2 };
    expect(ActionStatsSchema.parse(good)).toEqual(good);
  });

  it('a token list: missing, or not UTF-8 (line and byte), is said as such', async () => {
    await expect(makeCodec({ actions: 'tokens', tokenList: path.join(dir, 'none.txt') })).rejects.toMatchObject({ code: 'E_NOT_FOUND' });
    const f = path.join(dir, 'tokens.txt');
    writeFileSync(f, Buffer.concat([Buffer.from('<0>\n<1>\n<'), Buffer.from([0xff]), Buffer.from('2>\n')]));
    await expect(makeCodec({ actions: 'tokens', tokenList: f })).rejects.toThrow(/^E_RECORD_INVALID at line 3 \(byte 9\) of .*tokens\.txt: the token list is not UTF-8 text \(byte 0xff at byte 1 of the line\)$/);
  });

  it('a checkpoint config.json that is corrupt or wrong-shaped names the file and field', () => {
    const ck = path.join(dir, 'ck');
    mkdirSync(ck);
    writeFileSync(path.join(ck, 'config.json'), '{"model_type": "vlakit-vla", ');
    expect(errorOf(() => loadCheckpoint(ck)).message).toMatch(/E_MODEL in .*ck\/config\.json: the checkpoint config is not valid JSON/);
    const cfg = preset('tiny', 64);
    writeFileSync(path.join(ck, 'config.json'), JSON.stringify({ ...cfg, text_config: { ...cfg.text_config, num_key_value_heads: 3 } }));
    const e = errorOf(() => loadCheckpoint(ck));
    expect(e.context).toMatchObject({ file: path.join(ck, 'config.json'), field: 'text_config.num_key_value_heads' });
    writeFileSync(path.join(ck, 'config.json'), JSON.stringify({ ...cfg, vision_config: { ...cfg.vision_config, image_size: 'big' } }));
    expect(errorOf(() => loadCheckpoint(ck)).context.field).toBe('vision_config.image_size');
  });
});
