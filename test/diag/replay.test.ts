import { readFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { NAMED_LAYOUTS, TextCodec, waypointLayout, type TrainingExample } from '../../src/lib/actions/index.js';
import { ex } from '../model/examples.js';
import { actionText, expertPredictor, formatReplay, hasActions, replay } from '../../src/lib/diag/index.js';
import { writeOutputDir } from '../../src/lib/io/outputs.js';
import { writeModelFiles } from '../../src/lib/model/checkpoint.js';
import { preset } from '../../src/lib/model/config.js';
import { VlaModel } from '../../src/lib/model/model.js';
import { buildTokenizer } from '../../src/lib/model/tokenizer.js';
import { tempDir } from '../helpers.js';

const dir = tempDir();
const BIN = path.resolve('bin/run.js');
const vlakit = (...args: string[]) => execa('node', [BIN, ...args], { reject: false });
const examplesFile = path.join(dir, 'examples.jsonl');
let examples: TrainingExample[];

/** The demo's data pipeline, small: scripted demonstrations, kinematic plans, merged chunks, VLM2VLA examples with a held-out split. */
beforeAll(async () => {
  const steps: [string, string[]][] = [
    ['rollout', ['--policy', 'scripted', '--tasks', 'pick,place', '--episodes', '4', '--seed', '0', '--width', '32', '--height', '32', '--distractors', '0', '-o', path.join(dir, 'demos.jsonl')]],
    ['annotate', [path.join(dir, 'demos.jsonl'), '--kind', 'plan', '-o', path.join(dir, 'plans.jsonl')]],
    ['chunk', [path.join(dir, 'plans.jsonl'), '--mode', 'merge', '-o', path.join(dir, 'chunks.jsonl')]],
    ['relabel', [path.join(dir, 'chunks.jsonl'), '--method', 'vlm2vla', '--actions', 'text', '--split', '0.5', '-o', examplesFile]],
  ];
  for (const [cmd, args] of steps) {
    const r = await vlakit(cmd, ...args);
    expect(r.exitCode, `${cmd}: ${r.stderr}`).toBe(0);
  }
  examples = readFileSync(examplesFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
}, 120_000);

describe('open-loop replay', () => {
  it('of the scripted expert through a policy that replays the expert\'s own actions: zero error on every split', async () => {
    const r = await vlakit('replay', '--model', 'expert', examplesFile, '--json');
    expect(r.exitCode, r.stderr).toBe(0);
    const rep = JSON.parse(r.stderr.trim());
    const actionExamples = examples.filter(hasActions);
    expect(rep.splits.map((s: { split: string }) => s.split)).toEqual(['train', 'val']);
    expect(rep.splits.reduce((a: number, s: { examples: number }) => a + s.examples, 0)).toBe(actionExamples.length);
    for (const s of rep.splits) {
      expect(s.examples).toBeGreaterThan(0);
      expect(s.parsed).toBe(s.examples);
      expect(s.dims).toEqual(['dx', 'dy', 'dz', 'gripper']);
      expect(s.meanAbsError).toEqual([0, 0, 0, 0]);
      expect(s.translationError).toBe(0);
      expect(s.gripperAccuracy).toBe(1);
      expect(s.lengthMismatches).toBe(0);
      expect(s.zeroBaseline[2]).toBeGreaterThan(0.001); // the expert moves: never moving would be wrong
    }
    expect(rep.failures).toEqual([]);
  });

  it('measures a known error: every dx off by 1 cm, the gripper always open', async () => {
    const codec = new TextCodec(3);
    const shifted = (ex: TrainingExample) => codec.encode(codec.decode(actionText(expertPredictor(ex) as string)).map((a) => [a[0] + 0.01, a[1], a[2], 1]));
    const r = await replay(examples, shifted);
    // independent reference: the share of closed gripper commands among the expert's actions, per split
    for (const s of r.splits) {
      const chunks = examples.filter((e) => hasActions(e) && e.meta.split === s.split).map((e) => codec.decode(actionText(expertPredictor(e) as string)));
      const all = chunks.flat();
      expect(s.actions).toBe(all.length);
      expect(s.meanAbsError[0]).toBeCloseTo(0.01, 3);
      expect(s.meanAbsError[1]).toBe(0);
      expect(s.translationError).toBeCloseTo(0.01, 3);
      const closed = all.filter((a) => a[3] < 0.5).length;
      expect(closed).toBeGreaterThan(0);
      expect(s.gripperAccuracy).toBeCloseTo(1 - closed / all.length, 9);
      expect(s.firstAction.gripperAccuracy).toBeCloseTo(chunks.filter((c) => c[0][3] >= 0.5).length / chunks.length, 9);
    }
    expect(formatReplay(r)).toMatch(/train\s+\d+\s+\d+\s+\d+\s+10\.00\s+0\.00\s+0\.00\s+10\.00/);
  });

  it('blank images: a policy that ignores its images changes nothing; one that reads them changes its answers and does worse blind', async () => {
    const blind = await replay(examples, expertPredictor, { blankImages: true });
    for (const s of blind.splits) {
      expect(s.blank).toEqual({ examples: s.examples, changed: 0, meanAbsError: [0, 0, 0, 0], gripperAccuracy: 1 });
    }
    expect(formatReplay(blind)).toMatch(/no answer changed when the images were blanked: the policy does not read its images/);
    // a "policy" that acts from its image: the expert's actions when it sees the scene, standing still when the image is grey
    const grey = (ex: TrainingExample) => Buffer.from(ex.images[0].b64, 'base64').length < 200; // the 16 x 16 blank PNG is ~80 bytes
    const seeing = (ex: TrainingExample) => (grey(ex) ? '[[0.000, 0.000, 0.000, 1]]' : (expertPredictor(ex) as string));
    const r = await replay(examples, seeing, { blankImages: true });
    for (const s of r.splits) {
      expect(s.meanAbsError).toEqual([0, 0, 0, 0]);
      expect(s.blank!.examples).toBe(s.examples);
      const own = examples.filter((e) => hasActions(e) && e.meta.split === s.split).slice(0, s.examples);
      expect(s.blank!.changed).toBe(own.filter((e) => expertPredictor(e) !== '[[0.000, 0.000, 0.000, 1]]').length);
      expect(s.blank!.changed).toBeGreaterThan(s.examples / 2);
      // blind, it never moves: its error is the never-move baseline of the first action of each chunk
      const chunks = examples.filter((e) => hasActions(e) && e.meta.split === s.split).map((e) => new TextCodec(3).decode(actionText(expertPredictor(e) as string)));
      const firsts = chunks.map((c) => c[0]);
      for (let k = 0; k < 3; k++) expect(s.blank!.meanAbsError[k]).toBeCloseTo(firsts.reduce((a, x) => a + Math.abs(x[k]), 0) / firsts.length, 12);
    }
    const text = formatReplay(r);
    expect(text).toMatch(/\(blank images: \d+\/\d+ changed\)/);
    expect(text).not.toMatch(/does not read its images/);
    // blind answers that never decode: said so, not shown as a 0% gripper
    const lost = await replay(examples, (ex) => (grey(ex) ? 'I cannot see anything' : (expertPredictor(ex) as string)), { blankImages: true });
    const lostText = formatReplay(lost);
    expect(lostText).toMatch(/\(blank images: (\d+)\/\1 changed\)\s+no blind answer decoded as actions/);
    expect(lostText).not.toMatch(/ 0\.0%/);
  });

  it('absolute targets (relabel --waypoints): never moving targets the robot state of the prompt', async () => {
    const L = waypointLayout(NAMED_LAYOUTS['xyz-g'], 0.015);
    const spec = new TextCodec(1, 'cm', L, true).describe();
    const img = examples[0].images[0];
    const wp = (id: string, state: string, target: string): TrainingExample => ({ ...ex(id, img, `Task: pick the block up\nRobot state: ${state}`, '', target), meta: { ...ex(id, img, '', '', target).meta, stage: 'actions', codec: spec } });
    const set = [wp('a', '[3.0, 0.0, 10.0, 1.00]', '[[10.0, 0.0, 10.0, 1]]'), wp('b', '[10.0, 2.0, 4.0, 1.00]', '[[10.0, 0.0, 2.0, 1]]')];
    const still = await replay(set, (e) => (e.id === 'a' ? '[[3.0, 0.0, 10.0, 1]]' : '[[10.0, 2.0, 4.0, 1]]'));
    const s = still.splits[0];
    [0.035, 0.01, 0.01].forEach((v, k) => expect(s.zeroBaseline[k]).toBeCloseTo(v, 12)); // |target - here| averaged
    s.meanAbsError.slice(0, 3).forEach((v, k) => expect(v).toBeCloseTo(s.zeroBaseline[k], 12));
    const right = await replay(set, expertPredictor);
    expect(right.splits[0].meanAbsError).toEqual([0, 0, 0, 0]);
    const noState = { ...set[0], messages: [{ role: 'user' as const, content: [{ type: 'image' as const }, { type: 'text' as const, text: 'Task: pick the block up' }] }, set[0].messages[1]] };
    await expect(replay([noState], expertPredictor)).rejects.toThrow(/needs the robot state in the prompt .* example a has none/);
  });

  it('never moving scores the baseline; output that does not decode is counted and shown', async () => {
    const r = await replay(examples, () => '[[0, 0, 0, 1]]', { limit: 3 });
    for (const s of r.splits) {
      expect(s.examples).toBe(3);
      expect(s.meanAbsError.slice(0, 3)).toEqual(s.zeroBaseline.slice(0, 3).map((x) => expect.closeTo(x, 12)));
    }
    const bad = await replay(examples, () => 'the robot should move left', { limit: 2 });
    expect(bad.splits.map((s) => [s.examples, s.parsed])).toEqual([[2, 0], [2, 0]]);
    expect(bad.failures).toHaveLength(4);
    expect(bad.failures[0]).toMatchObject({ text: 'the robot should move left', error: expect.stringMatching(/text/) });
    const table = formatReplay(bad);
    expect(table).not.toMatch(/NaN/);
    expect(table).toMatch(/train\s+2\s+0\s+0\s+no decoded actions/);
  });

  it('runs a model: a tiny random checkpoint, whose output does not decode', async () => {
    const tok = await buildTokenizer(['hello world', '[[0.1, 0.2]]'], 80);
    const cfg = preset('tiny', tok.vocabSize, 1);
    const m = VlaModel.init({ ...cfg, initializer_range: 0.3, text_config: { ...cfg.text_config, max_position_embeddings: 1024 } }, 5);
    const ck = path.join(dir, 'random');
    await writeOutputDir(ck, (d) => writeModelFiles(d, m, tok.json, { actionCodec: new TextCodec(3).describe() }), { overwrite: true });
    m.dispose();
    const r = await vlakit('replay', '--model', ck, examplesFile, '--limit', '2', '--max-new-tokens', '6', '--json');
    expect(r.exitCode, r.stderr).toBe(0);
    const rep = JSON.parse(r.stderr.trim());
    expect(rep.splits.map((s: { examples: number }) => s.examples)).toEqual([2, 2]);
    expect(rep.failures.length).toBe(4 - rep.splits.reduce((a: number, s: { parsed: number }) => a + s.parsed, 0));
    const usage = await vlakit('replay', '--model', 'expert', '--temperature', '1', examplesFile);
    expect(usage.exitCode).toBe(2);
  }, 60_000);
});
