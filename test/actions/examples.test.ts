import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { ChunkRecordSchema, TextCodec, stateText, TrainingExampleSchema, WordsCodec, chunkEpisode, episodeExamples, splitOf, targetOf, codecFor, type ChunkRecord, type TrainingExample } from '../../src/lib/actions/index.js';
import { AnnotatedStepSchema } from '../../src/lib/teacher/index.js';
import { ScriptedPolicy, TabletopEnv, runEpisodes } from '../../src/lib/env/index.js';
import { encodeJsonl, type StepRecord } from '../../src/lib/io/index.js';
import { KinematicTeacher, annotate } from '../../src/lib/teacher/index.js';
import { collect, tempDir } from '../helpers.js';

const BIN = path.resolve('bin/run.js');
const dir = tempDir();
let planned: StepRecord[][];
let reasoned: StepRecord[][];

beforeAll(async () => {
  const env = new TabletopEnv({ width: 16, height: 16 });
  const eps = (await collect(runEpisodes({ env, policy: new ScriptedPolicy(), families: ['place', 'pick'], episodes: 4, seed: 6 }))).map((e) => e.records);
  planned = await collect(annotate((async function* () { yield* eps; })(), { kind: 'plan', teacher: new KinematicTeacher() }));
  reasoned = await collect(annotate((async function* () { yield* eps; })(), { kind: 'reasoning', teacher: new KinematicTeacher() }));
});

function checkSpans(ex: TrainingExample): void {
  const target = targetOf(ex);
  let covered = '';
  let at = 0;
  for (const s of ex.spans) {
    expect(s.start).toBeGreaterThanOrEqual(at);
    expect(s.end).toBeGreaterThan(s.start);
    covered += target.slice(at, s.start);
    at = s.end;
  }
  covered += target.slice(at);
  // everything outside the spans is separators only
  expect(covered.replace(/\n/g, '')).toBe('');
  expect(ex.messages[0].content.filter((c) => c.type === 'image')).toHaveLength(ex.images.length);
}

describe('chunk records', () => {
  it('merge: one chunk per plan subtask, covering the episode, with observations before and after', () => {
    const ep = planned[0];
    const chunks = chunkEpisode(ep, { mode: 'merge' });
    const subtasks = new Set(ep.map((s) => (s.plan as { index: number }).index));
    expect(chunks).toHaveLength(subtasks.size);
    expect(chunks[0].start_step).toBe(0);
    expect(chunks.at(-1)!.end_step).toBe(ep.length - 1);
    for (let i = 1; i < chunks.length; i++) expect(chunks[i].start_step).toBe(chunks[i - 1].end_step + 1);
    const c = chunks[1];
    expect(c.subtask.description).toBe((ep[c.start_step].plan as { description: string }).description);
    expect(c.next_observation).toEqual(ep[c.end_step + 1].observation);
    expect(c.source_steps[0][0]).toBe(c.start_step);
    expect(c.source_steps.at(-1)![1]).toBe(c.end_step);
  });
});

describe('what annotate, chunk and relabel write passes the schemas the next command reads with', () => {
  it('annotated steps, chunk records of both modes, examples of both methods', () => {
    const asRead = (v: unknown) => JSON.parse(JSON.stringify(v));
    for (const ep of [...planned, ...reasoned]) for (const s of ep) expect(AnnotatedStepSchema.safeParse(asRead(s)).error).toBeUndefined();
    for (const [eps, mode, method] of [[planned, 'merge', 'vlm2vla'], [reasoned, 'fixed', 'refinevla']] as const) {
      for (const ep of eps) {
        const chunks = chunkEpisode(ep, { mode, horizon: 4 });
        for (const c of chunks) expect(ChunkRecordSchema.safeParse(asRead(c)).error).toBeUndefined();
        for (const ex of episodeExamples(chunks, { method, codec: new TextCodec(3), valFraction: 0.5 })) expect(TrainingExampleSchema.safeParse(asRead(ex)).error).toBeUndefined();
      }
    }
  });
});

describe('training examples', () => {
  it('VLM2VLA: three stages, verifier pairs and direction; spans cover exactly the target; actions decode back', () => {
    const codec = new TextCodec(3);
    const chunks = chunkEpisode(planned[0], { mode: 'merge' });
    const exs = episodeExamples(chunks, { method: 'vlm2vla', codec });
    const stages = new Set(exs.map((e) => e.meta.stage));
    expect([...stages].sort()).toEqual(['actions', 'direction', 'motion_plan', 'subtasks', 'verifier']);
    for (const ex of exs) checkSpans(ex);
    const first = exs.find((e) => e.meta.stage === 'subtasks')!;
    expect(targetOf(first).split('\n')).toEqual(chunks.map((c, i) => `${i + 1}. ${c.subtask.description}`));
    const acts = exs.filter((e) => e.meta.stage === 'actions');
    acts.forEach((ex, i) => {
      expect(ex.spans).toEqual([{ kind: 'action', start: 0, end: targetOf(ex).length }]);
      const back = codec.decode(targetOf(ex));
      chunks[i].actions.forEach((a, j) => a.forEach((v, k) => expect(Math.abs(back[j][k] - v)).toBeLessThanOrEqual(0.0005 + 1e-12)));
    });
    const verify = exs.filter((e) => e.meta.stage === 'verifier');
    expect(verify.filter((e) => targetOf(e) === 'yes')).toHaveLength(chunks.length);
    expect(verify.filter((e) => targetOf(e) === 'no')).toHaveLength(chunks.length);
    expect(verify.every((e) => e.images.length === 2)).toBe(true);
  });

  it('text in centimeters: the examples carry the codec\'s settings, and the codec they name decodes to meters', () => {
    const chunks = chunkEpisode(planned[0], { mode: 'fixed', horizon: 2 });
    const exs = episodeExamples(chunks, { method: 'vlm2vla', codec: new TextCodec(1, 'cm'), noReasoning: true });
    expect(exs[0].meta).toMatchObject({ representation: 'text', codec: { codec: 'text', precision: 1, units: 'cm' } });
    const codec = codecFor(exs[0].meta.representation, exs[0].meta.codec)!;
    const back = codec.decode(targetOf(exs[0]));
    chunks[0].actions.forEach((a, j) => a.slice(0, 3).forEach((v, k) => expect(Math.abs(back[j][k] - v)).toBeLessThanOrEqual(0.0005 + 1e-9)));
    // without the settings, the same text would read as meters: 100 times too far
    expect(Math.abs(codecFor('text')!.decode('[[1.5, 0.0, 0.0, 1]]')[0][0])).toBe(1.5);
    expect(codec.decode('[[1.5, 0.0, 0.0, 1]]')[0][0]).toBeCloseTo(0.015, 9);
  });

  it('--state: the action prompts carry the step\'s robot state in the codec\'s units, and the codec says so', () => {
    const chunks = chunkEpisode(planned[0], { mode: 'fixed', horizon: 2 });
    const codec = new TextCodec(1, 'cm', undefined, true);
    const direct = episodeExamples(chunks, { method: 'vlm2vla', codec, noReasoning: true });
    expect(direct[0].meta.codec).toMatchObject({ codec: 'text', precision: 1, units: 'cm', state: true });
    expect(codecFor('text', direct[0].meta.codec)!.state).toBe(true);
    chunks.forEach((c, i) => {
      const st = (c.observation as { state: number[] }).state;
      const want = `Robot state: [${st.slice(0, 3).map((v) => { const s = (v * 100).toFixed(1); return s === '-0.0' ? '0.0' : s; }).join(', ')}, ${st[3].toFixed(2)}]`;
      const prompt = (direct[i].messages[0].content.at(-1) as { text: string }).text;
      expect(prompt.split('\n')[1]).toBe(want);
    });
    expect(stateText([0.35, -0.00001, 0.18, 1], 'cm', 1)).toBe('[35.0, 0.0, 18.0, 1.00]');
    expect(stateText([0.5, 0.25, 0.1234, 0.375])).toBe('[0.500, 0.250, 0.123, 0.38]');
    // VLM2VLA: only the action stage carries it; ReFineVLA: its one prompt
    const hier = episodeExamples(chunkEpisode(planned[0], { mode: 'merge' }), { method: 'vlm2vla', codec });
    for (const e of hier) expect((e.messages[0].content.at(-1) as { text: string }).text.includes('Robot state: [')).toBe(e.meta.stage === 'actions');
    const refine = episodeExamples(chunkEpisode(reasoned[0], { mode: 'fixed', horizon: 4 }), { method: 'refinevla', codec });
    expect((refine[0].messages[0].content.at(-1) as { text: string }).text).toMatch(/^Instruction: .+\nRobot state: \[[-\d., ]+\]\n/);
    // without the state in the data, a clear error naming the chunk
    const bare = chunks.map((c) => ({ ...c, observation: { image_0: (c.observation as { image_0: unknown }).image_0 } }));
    expect(() => episodeExamples(bare, { method: 'vlm2vla', codec, noReasoning: true })).toThrow(/relabel --state: chunk 0 of episode .+ has no numeric observation.state/);
    // the codecs without it are unchanged
    expect(new TextCodec(1, 'cm').describe()).not.toHaveProperty('state');
  });

  it('--subtask-prompts: each step\'s task is the subtask under way in the world (its oracle), steps after the last give none', () => {
    // planned[0] is a place episode of the scripted expert: six subtasks, then the task done
    const ep = planned[0];
    const chunks = chunkEpisode(ep, { mode: 'fixed', horizon: 1 });
    const codec = new TextCodec(1, 'cm', undefined, true);
    const exs = episodeExamples(chunks, { method: 'vlm2vla', codec, noReasoning: true, compactPrompt: true, subtaskPrompts: true });
    const subs = ep.map((s) => (s.oracle as { subtask: { kind: string; text: string } }).subtask);
    const working = chunks.filter((c) => subs[c.start_step].kind !== 'done');
    expect(working.length).toBeGreaterThan(10);
    expect(working.length).toBeLessThan(chunks.length + 1);
    expect(exs).toHaveLength(working.length);
    exs.forEach((e, i) => {
      const prompt = (e.messages[0].content.at(-1) as { text: string }).text;
      expect(prompt.split('\n')[0]).toBe(`Task: ${subs[working[i].start_step].text}`);
      expect(e.meta.steps[0]).toBe(working[i].start_step);
    });
    // every subtask of the world's list is somebody's task, in order
    const tasks = [...new Set(exs.map((e) => (e.messages[0].content.at(-1) as { text: string }).text.split('\n')[0].slice(6)))];
    expect(tasks).toEqual((ep[0].episode_metadata as { task: { subtasks: string[] } }).task.subtasks.filter((t) => tasks.includes(t)));
    expect(tasks.length).toBeGreaterThanOrEqual(5);
    expect(tasks).not.toContain(ep[0].language_instruction);
    // records without the world's oracle: a clear error naming the chunk
    const bare = chunks.map((c) => ({ ...c, oracle: undefined }));
    expect(() => episodeExamples(bare, { method: 'vlm2vla', codec, noReasoning: true, subtaskPrompts: true })).toThrow(/relabel --subtask-prompts: chunk 0 of episode .+ has no oracle.subtask/);
  });

  it('--subtask-lists: one planner example per episode, the first frame and instruction -> the world\'s numbered list', async () => {
    // planned[0] is a place episode of the scripted expert, planned[1] a pick one; chunk carries the world's list
    const lists = planned.slice(0, 2).map((ep) => (ep[0].episode_metadata as { task: { subtasks: string[] } }).task.subtasks);
    expect(lists[0]).toHaveLength(6);
    expect(lists[1]).toHaveLength(3);
    const codec = new TextCodec(1, 'cm');
    for (const [k, ep] of planned.slice(0, 2).entries()) {
      const chunks = chunkEpisode(ep, { mode: 'fixed', horizon: 1 });
      expect(chunks.every((c) => c.task_subtasks?.join('|') === lists[k].join('|'))).toBe(true);
      const exs = episodeExamples(chunks, { method: 'vlm2vla', codec, subtaskLists: true });
      expect(exs).toHaveLength(1);
      const [ex] = exs;
      expect(ex.id).toBe(`${ep[0].episode_id}/subtasks`);
      expect(ex.meta.stage).toBe('subtasks');
      expect((ex.messages[0].content.at(-1) as { text: string }).text).toContain(`Task: ${ep[0].language_instruction}`);
      expect(ex.images).toEqual([(ep[0].observation as { image_0: unknown }).image_0]);
      // the list as the planner parses it back (the hierarchy's own parser)
      const { parseSubtaskList } = await import('../../src/lib/actions/prompts.js');
      expect(parseSubtaskList(targetOf(ex))).toEqual(lists[k]);
      expect(ex.spans).toEqual([{ kind: 'reasoning', start: 0, end: targetOf(ex).length }]);
    }
    // chunks without the world's list: a clear error naming the episode
    const bare = chunkEpisode(planned[0].map((s) => ({ ...s, episode_metadata: undefined })), { mode: 'fixed', horizon: 1 });
    expect(bare[0].task_subtasks).toBeUndefined();
    expect(() => episodeExamples(bare, { method: 'vlm2vla', codec, subtaskLists: true })).toThrow(/relabel --subtask-lists: episode .+ has no task_subtasks/);
  });

  it('ReFineVLA: rationale then actions, two spans; --no-reasoning keeps the actions only', () => {
    const codec = new WordsCodec(1);
    const chunks = chunkEpisode(reasoned[0], { mode: 'fixed', horizon: 4 });
    const [ex] = episodeExamples(chunks.slice(0, 1), { method: 'refinevla', codec });
    checkSpans(ex);
    expect(ex.spans.map((s) => s.kind)).toEqual(['reasoning', 'action']);
    const t = targetOf(ex);
    const reasoning = t.slice(ex.spans[0].start, ex.spans[0].end);
    expect(reasoning).toMatch(/^<Observation>: .*\n<Situation Analysis>: .*\n<Spatial Reasoning>: .*\n<Task Planning>: .* <logical_steps><1> move to the .* <sub_action> .*$/s);
    expect(t.slice(ex.spans[1].start, ex.spans[1].end)).toBe(`<Actions>: ${codec.encode(chunks[0].actions)}`);
    const [plain] = episodeExamples(chunks.slice(0, 1), { method: 'refinevla', codec, noReasoning: true });
    expect(plain.spans.map((s) => s.kind)).toEqual(['action']);
    const nr = episodeExamples(chunkEpisode(planned[1], { mode: 'merge' }), { method: 'vlm2vla', codec, noReasoning: true });
    expect(new Set(nr.map((e) => e.meta.stage))).toEqual(new Set(['actions']));
  });

  it('splits whole episodes by a seeded hash', () => {
    const ids = Array.from({ length: 2000 }, (_, i) => `ep-${i}`);
    const val = ids.filter((id) => splitOf(id, 0.25, 7) === 'val').length;
    expect(val / ids.length).toBeGreaterThan(0.2);
    expect(val / ids.length).toBeLessThan(0.3);
    expect(ids.map((id) => splitOf(id, 0.25, 7))).toEqual(ids.map((id) => splitOf(id, 0.25, 7)));
    expect(ids.filter((id) => splitOf(id, 0.25, 8) !== splitOf(id, 0.25, 7)).length).toBeGreaterThan(0);
    const exs = planned.flatMap((ep) => episodeExamples(chunkEpisode(ep, { mode: 'merge' }), { method: 'vlm2vla', codec: new TextCodec(), valFraction: 0.5, seed: 3 }));
    const byEp = new Map<string | number, Set<string>>();
    for (const e of exs) byEp.set(e.meta.episode_id, (byEp.get(e.meta.episode_id) ?? new Set()).add(e.meta.split));
    expect([...byEp.values()].every((s) => s.size === 1)).toBe(true);
  });
});

describe('vlakit chunk and relabel', () => {
  it('steps -> chunks -> examples (vlakit and TRL layouts), statistics, bins, and clear errors', async () => {
    const steps = path.join(dir, 'planned.jsonl');
    writeFileSync(steps, (await collect(encodeJsonl(planned.flat()))).join(''));
    const chunks = path.join(dir, 'chunks.jsonl');
    const c = await execa('node', [BIN, 'chunk', steps, '--mode', 'merge', '-o', chunks], { reject: false });
    expect(c.exitCode).toBe(0);
    expect(c.stderr).toMatch(/4 episodes, \d+ steps -> \d+ chunks, \d+ merged actions/);
    const recs = readFileSync(chunks, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as ChunkRecord);
    expect(recs[0]).toMatchObject({ mode: 'merge', chunk_index: 0, start_step: 0 });

    const ex = path.join(dir, 'examples.jsonl');
    const r = await execa('node', [BIN, 'relabel', chunks, '--actions', 'text', '--report', '-o', ex], { reject: false });
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toMatch(/round trip of \d+ actions as text, per dimension max \|error\|: /);
    const first = JSON.parse(readFileSync(ex, 'utf8').split('\n')[0]);
    expect(first).toMatchObject({ meta: { stage: 'subtasks', method: 'vlm2vla', representation: 'text', split: 'train' } });

    const stats = path.join(dir, 'stats.json');
    expect((await execa('node', [BIN, 'relabel', chunks, '--stats-out', stats], { reject: false })).exitCode).toBe(0);
    expect(JSON.parse(readFileSync(stats, 'utf8')).dims).toHaveLength(4);
    const nobins = await execa('node', [BIN, 'relabel', chunks, '--actions', 'bins', '-o', path.join(dir, 'b.jsonl')], { reject: false });
    expect(nobins.exitCode).toBe(2);
    expect(nobins.stderr).toMatch(/--actions bins needs --stats FILE/);
    // bins and tokens with --state: test/actions/waypoints.test.ts and codecs.test.ts
    const withState = path.join(dir, 'state.jsonl');
    expect((await execa('node', [BIN, 'relabel', chunks, '--state', '--units', 'cm', '--precision', '1', '-o', withState], { reject: false })).exitCode).toBe(0);
    const act = readFileSync(withState, 'utf8').trim().split('\n').map((l) => JSON.parse(l)).find((e) => e.meta.stage === 'actions');
    expect(act.meta.codec).toMatchObject({ codec: 'text', precision: 1, units: 'cm', state: true });
    expect(act.messages[0].content.at(-1).text).toMatch(/\nRobot state: \[\d+\.\d, -?\d+\.\d, \d+\.\d, [01]\.\d\d\]\n/);
    // --compact-prompt: the task prompt without its sentence on the action format; only for VLM2VLA-NR examples
    const compact = path.join(dir, 'compact.jsonl');
    expect((await execa('node', [BIN, 'relabel', chunks, '--no-reasoning', '--compact-prompt', '--state', '-o', compact], { reject: false })).exitCode).toBe(0);
    const cex = readFileSync(compact, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(cex.every((e) => e.meta.stage === 'actions')).toBe(true);
    expect(cex[0].messages[0].content.at(-1).text).toMatch(/^Task: [^\n]+\nRobot state: \[[^\]]+\]$/);
    const refCompact = await execa('node', [BIN, 'relabel', chunks, '--method', 'refinevla', '--no-reasoning', '--compact-prompt', '-o', path.join(dir, 'rc.jsonl')], { reject: false });
    expect(refCompact.exitCode).toBe(2);
    expect(refCompact.stderr).toMatch(/--compact-prompt applies only with --method vlm2vla --no-reasoning/);

    const trl = path.join(dir, 'trl');
    expect((await execa('node', [BIN, 'relabel', chunks, '--format', 'trl', '-o', trl], { reject: false })).exitCode).toBe(0);
    const row = JSON.parse(readFileSync(path.join(trl, 'data.jsonl'), 'utf8').split('\n')[0]);
    expect(row.messages[0].content[0]).toEqual({ type: 'image' });
    expect(existsSync(path.join(trl, row.images[0]))).toBe(true);

    const wrong = await execa('node', [BIN, 'relabel', steps, '-o', path.join(dir, 'x.jsonl')], { reject: false });
    expect(wrong.exitCode).toBe(2);
    expect(wrong.stderr).toMatch(/relabel reads chunk records \(from vlakit chunk\), found a step record/);
  });
});
