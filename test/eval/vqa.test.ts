import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { execa } from 'execa';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { TextCodec } from '../../src/lib/actions/index.js';
import { CATALOG } from '../../src/lib/env/catalog.js';
import { ScriptedPolicy, TabletopEnv } from '../../src/lib/env/index.js';
import {
  EndpointModel,
  RunnerModel,
  SIDE_MARGIN,
  anls,
  evaluateModel,
  exactMatch,
  positionError,
  extractChoice,
  forgettingReport,
  generateSceneQa,
  normalizeAnswer,
  readMmbenchTsv,
  readVqaJsonl,
  readVqav2,
  rotateChoices,
  sceneQaExample,
  summarize,
  vqaAccuracy,
  type SceneQaItem,
  type Sample,
} from '../../src/lib/eval/index.js';
import { exportModel } from '../../src/lib/export/index.js';
import { openModel } from '../../src/lib/infer/index.js';
import { selectBackend } from '../../src/lib/model/backend.js';
import { AnswerCache, OpenAITeacher } from '../../src/lib/teacher/index.js';
import { trainSft } from '../../src/lib/train/sft.js';
import { FIXTURES, collect, tempDir } from '../helpers.js';

const dir = tempDir();
const VQAV2 = path.join(FIXTURES, 'vqa/vqav2');
const BIN = path.resolve('bin/run.js');

describe('VQA accuracy on the real VQAv2 answer lists', () => {
  const items = readVqav2(VQAV2);
  const [q1, q2, q3] = items;

  it('reads the layout: questions, 10 human answers each, the COCO image by id', () => {
    expect(items.map((i) => i.id)).toEqual(['458752000', '458752001', '458752002']);
    expect(q1.question).toBe('What is this photo taken looking through?');
    expect(q1.answers).toEqual(['net', 'net', 'net', 'netting', 'net', 'net', 'mesh', 'net', 'pitcher', 'orange']);
    expect((q1.images[0] as { path: string }).path).toMatch(/COCO_train2014_000000458752\.jpg$/);
    expect(items.every((i) => i.metric === 'vqa' && i.answers.length === 10)).toBe(true);
  });

  it('scores as the official evaluation: min(1, matches/3) over the 10 leave-one-out subsets', () => {
    expect(vqaAccuracy('net', q1.answers)).toBe(1); // 6 humans: 5 or 6 matches in every subset
    expect(vqaAccuracy('Net.', q1.answers)).toBe(1);
    expect(vqaAccuracy('a net', q1.answers)).toBe(1);
    expect(vqaAccuracy('mesh', q1.answers)).toBeCloseTo(0.3, 12); // 1 human: 9 subsets with 1/3, one with 0
    expect(vqaAccuracy('netting', q1.answers)).toBeCloseTo(0.3, 12);
    expect(vqaAccuracy('ball', q1.answers)).toBe(0);
    expect(vqaAccuracy('pitcher', q2.answers)).toBe(1);
    expect(vqaAccuracy('catcher', q2.answers)).toBeCloseTo(0.3, 12);
    expect(vqaAccuracy('ORANGE!', q3.answers)).toBe(1);
    // 2 matching humans: 2 subsets with 1 match (1/3), 8 with 2 (2/3) -> 0.6
    expect(vqaAccuracy('red', ['red', 'red', 'blue', 'blue', 'blue', 'green', 'green', 'green', 'pink', 'white'])).toBeCloseTo(0.6, 12);
  });

  it('normalizes punctuation, number words, articles and contractions', () => {
    expect(normalizeAnswer('Two')).toBe('2');
    expect(normalizeAnswer('none')).toBe('0');
    expect(normalizeAnswer('The Dog.')).toBe('dog');
    expect(normalizeAnswer('dont')).toBe("don't");
    expect(normalizeAnswer('well')).toBe('well'); // a word, not "we'll"
    expect(vqaAccuracy('blue', ['blue', 'blue', 'blue', 'red', 'red', 'red', 'red', 'red', 'red', 'red'])).toBeCloseTo(0.9, 12); // 3 of 10 humans
    expect(normalizeAnswer('3,000')).toBe('3000'); // comma between digits: marks deleted
    expect(normalizeAnswer('hot-dog')).toBe('hot dog'); // no space next to it: a space
    expect(normalizeAnswer('yes !')).toBe('yes'); // next to a space: deleted
    expect(normalizeAnswer('3.5')).toBe('3.5'); // a period before a digit stays
    expect(normalizeAnswer(' left\n')).toBe('left');
  });
});

describe('exact match, ANLS, multiple choice', () => {
  it('exact match after normalization', () => {
    expect(exactMatch('The Plate.', ['plate'])).toBe(1);
    expect(exactMatch('plates', ['plate'])).toBe(0);
  });

  it('ANLS with threshold 0.5', () => {
    expect(anls('Hello Wrld', ['hello world'])).toBeCloseTo(1 - 1 / 11, 12);
    expect(anls('abc', ['xyz'])).toBe(0);
    expect(anls('ab', ['ax'])).toBe(0); // distance 1 of 2 = 0.5: at the threshold, 0
    expect(anls('invoice 42', ['Invoice 42', 'receipt'])).toBe(1);
    expect(anls('', [''])).toBe(1);
  });

  it('reads the option from free text', () => {
    const ch = ['red', 'green', 'blue', 'black'];
    expect(extractChoice('B', ch)).toBe('B');
    expect(extractChoice('(C) blue', ch)).toBe('C');
    expect(extractChoice('D. black', ch)).toBe('D');
    expect(extractChoice('I think the answer is C.', ch)).toBe('C');
    expect(extractChoice('green', ch)).toBe('B');
    expect(extractChoice('it is blue', ch)).toBe('C');
    expect(extractChoice('red or green', ch)).toBeUndefined(); // two options named
    expect(extractChoice('purple', ch)).toBeUndefined();
    expect(extractChoice('E', ch)).toBeUndefined(); // no option E
    expect(extractChoice('A dog', ['cat', 'dog'])).toBe('B'); // the article, not option A
    expect(extractChoice('The answer is a dog.', ['cat', 'dog'])).toBe('B');
    expect(extractChoice('A.', ['cat', 'dog'])).toBe('A');
  });

  it('circular evaluation: right only when right under every rotation', () => {
    expect(rotateChoices(['a', 'b', 'c', 'd'], 'C', 1)).toEqual({ choices: ['b', 'c', 'd', 'a'], answer: 'B' });
    expect(rotateChoices(['a', 'b', 'c', 'd'], 'A', 1)).toEqual({ choices: ['b', 'c', 'd', 'a'], answer: 'D' });
    const s = (group: string, rotation: number, score: number): Sample => ({ model: 'm', benchmark: 'mmb', id: `${group}#${rotation}`, question: '', answers: [], prediction: '', metric: 'mc', score, circular: { group, rotation }, ms: 0 });
    const [r] = summarize([s('1', 0, 1), s('1', 1, 1), s('1', 2, 1), s('2', 0, 1), s('2', 1, 0), s('2', 2, 1)]);
    expect(r).toMatchObject({ benchmark: 'mmb', metric: 'circular', n: 2, score: 0.5 });
    expect(r.vanilla).toBeCloseTo(5 / 6, 12);
  });
});

describe('datasets', () => {
  let png: string;
  beforeAll(async () => {
    png = (await sharp({ create: { width: 8, height: 8, channels: 3, background: 'red' } }).png().toBuffer()).toString('base64');
  });

  it('MMBench-style TSV with base64 images, an image by reference, quotes in text; circular rotations', () => {
    const file = path.join(dir, 'mmb.tsv');
    writeFileSync(
      file,
      ['index\tquestion\thint\tA\tB\tC\tD\tanswer\tcategory\timage', `10\tWhat "color" is it?\tnan\tred\tgreen\tblue\tblack\tA\tattr\t${png}`, `11\tWhich shape?\tLook closely\tcube\tball\tnan\tnan\tB\tshape\t10`].join('\n'),
    );
    const items = readMmbenchTsv(file);
    expect(items).toHaveLength(2);
    expect(items[0]).toMatchObject({ id: '10', question: 'What "color" is it?', choices: ['red', 'green', 'blue', 'black'], answer: 'A', answers: ['red'], metric: 'mc', type: 'attr' });
    expect(items[0].hint).toBeUndefined();
    expect(items[1]).toMatchObject({ choices: ['cube', 'ball'], answer: 'B', hint: 'Look closely' });
    expect((items[1].images[0] as { b64: string }).b64).toBe(png);
    const circ = readMmbenchTsv(file, { circular: true });
    expect(circ.map((i) => i.id)).toEqual(['10#0', '10#1', '10#2', '10#3', '11#0', '11#1']);
    expect(circ.slice(0, 4).map((i) => i.choices![i.answer!.charCodeAt(0) - 65])).toEqual(['red', 'red', 'red', 'red']);
    // a file that already holds the circular copies (index + k * 1e6), as VLMEvalKit writes them
    writeFileSync(file, ['index\tquestion\tA\tB\tanswer\timage', `7\tq\tx\ty\tA\t${png}`, `1000007\tq\ty\tx\tB\t7`].join('\n'));
    expect(readMmbenchTsv(file).map((i) => i.id)).toEqual(['7']);
    const copies = readMmbenchTsv(file, { circular: true });
    expect(copies.map((i) => [i.id, i.circular, i.answers[0]])).toEqual([['7', { group: '7', rotation: 0 }, 'x'], ['1000007', { group: '7', rotation: 1 }, 'x']]);
    writeFileSync(file, ['index\tquestion\tA\tB\tanswer\timage', `1\tq\tx\ty\tC\t${png}`].join('\n'));
    expect(() => readMmbenchTsv(file)).toThrow(/line 2 field "answer" of .*mmb.tsv: the answer "C" is not one of the option letters AB/);
  });

  it('generic JSON Lines: image paths relative to the file, answer text to letter, clear errors', () => {
    writeFileSync(path.join(dir, 'red.png'), Buffer.from(png, 'base64'));
    const file = path.join(dir, 'q.jsonl');
    writeFileSync(file, `${JSON.stringify({ image: 'red.png', question: 'color?', answer: 'red' })}\n${JSON.stringify({ image: 'red.png', question: 'which?', choices: ['blue', 'red'], answer: 'red' })}\n${JSON.stringify({ image: 'red.png', question: 'q', answers: ['a', 'a', 'b'] })}\n`);
    const items = readVqaJsonl(file);
    expect(items.map((i) => i.metric)).toEqual(['exact', 'mc', 'vqa']);
    expect(items[1]).toMatchObject({ answer: 'B', answers: ['red'] });
    expect((items[0].images[0] as { path: string }).path).toBe(path.join(dir, 'red.png'));
    writeFileSync(file, `${JSON.stringify({ image: 'red.png', answer: 'x' })}\n`);
    expect(() => readVqaJsonl(file)).toThrow(/E_RECORD_INVALID at line 1 field "question" of .*q.jsonl: invalid VQA row: missing \(expected string\)/);
    // each field is checked: an image that is neither a path nor {mime, b64}, answers that are objects, no image
    writeFileSync(file, `${JSON.stringify({ image: 'red.png', question: 'q', answer: 'a' })}\n${JSON.stringify({ image: 5, question: 'q', answer: 'a' })}\n`);
    expect(() => readVqaJsonl(file)).toThrow(/line 2 field "image" of .*q.jsonl: invalid VQA row: expected an image path, \{"mime", "b64"\}, or a list of them, got 5/);
    writeFileSync(file, `${JSON.stringify({ image: 'red.png', question: 'q', answers: [{ a: 1 }] })}\n`);
    expect(() => readVqaJsonl(file)).toThrow(/line 1 field "answers.0" of .*q.jsonl/);
    writeFileSync(file, `${JSON.stringify({ question: 'q', answer: 'a' })}\n`);
    expect(() => readVqaJsonl(file)).toThrow(/line 1 field "image" of .*q.jsonl: invalid VQA row: expected "image"/);
    writeFileSync(file, Buffer.concat([Buffer.from('{"image": "red.png", "question": "q'), Buffer.from([0xff]), Buffer.from('", "answer": "a"}\n')]));
    expect(() => readVqaJsonl(file)).toThrow(/E_JSONL_PARSE at line 1 \(byte 35\) of .*q.jsonl: invalid UTF-8 \(0xff/);
    // the file itself unreadable is said as such, not as invalid UTF-8
    expect(() => readVqaJsonl(dir)).toThrow(/E_IO in .*: VQA dataset: expected a file, found a directory/);
    expect(() => readVqaJsonl(path.join(dir, 'none.jsonl'))).toThrow(/E_NOT_FOUND in .*none\.jsonl: VQA dataset not found/);
  });

  it('MMBench TSV: invalid UTF-8 names its line and byte; an unreadable file is not called invalid UTF-8', () => {
    const file = path.join(dir, 'bad.tsv');
    writeFileSync(file, Buffer.concat([Buffer.from(`index\tquestion\tA\tB\tanswer\timage\n1\tq`), Buffer.from([0xc3, 0x28]), Buffer.from(`\tx\ty\tA\t${png}\n`)]));
    expect(() => readMmbenchTsv(file)).toThrow(/E_RECORD_INVALID at line 2 \(byte 35\) of .*bad\.tsv: the VQA dataset is not UTF-8 text \(byte 0xc3 at byte 3 of the line\)/);
    expect(() => readMmbenchTsv(dir)).toThrow(/E_IO in .*: VQA dataset: expected a file, found a directory/);
  });

  it('VQAv2 files: a wrong-shaped question or annotation names the file and field', () => {
    const v = path.join(dir, 'vqav2-bad');
    mkdirSync(v, { recursive: true });
    writeFileSync(path.join(v, 'v2_OpenEnded_mscoco_val2014_questions.json'), JSON.stringify({ questions: [{ image_id: 1, question: 'q', question_id: 10 }, { image_id: 2, question: 'q', question_id: '11' }] }));
    expect(() => readVqav2(v)).toThrow(/E_RECORD_INVALID at field "questions.1.question_id" of .*questions\.json: invalid VQAv2 questions: /);
    writeFileSync(path.join(v, 'v2_OpenEnded_mscoco_val2014_questions.json'), JSON.stringify({ questions: [{ image_id: 1, question: 'q', question_id: 10 }] }));
    writeFileSync(path.join(v, 'v2_mscoco_val2014_annotations.json'), JSON.stringify({ annotations: [{ question_id: 10, answers: [] }] }));
    expect(() => readVqav2(v)).toThrow(/field "annotations.0.answers" of .*annotations\.json: invalid VQAv2 annotations: expected at least one human answer/);
  });
});

describe('scene questions from the built-in world', () => {
  let items: SceneQaItem[];
  beforeAll(async () => {
    items = await collect(generateSceneQa({ count: 60, seed: 7, width: 32, height: 32 }));
  }, 120_000);

  it('covers the question types and is reproducible', async () => {
    expect(items).toHaveLength(60);
    expect(new Set(items.map((i) => i.type)).size).toBeGreaterThanOrEqual(6);
    const again = await collect(generateSceneQa({ count: 6, seed: 7, width: 32, height: 32 }));
    expect(again.map((q) => [q.question, q.answer])).toEqual(items.slice(0, 6).map((q) => [q.question, q.answer]));
  });

  it("the facts are the world's oracle at that frame, and every answer follows from them", async () => {
    const env = new TabletopEnv({ width: 32, height: 32 });
    for (const q of items.filter((_, i) => i % 3 === 0)) {
      // replay the scene: same seed and family, the expert's steps, then compare with the oracle
      const first = await env.reset(q.scene.seed, { family: q.scene.family });
      const expert = new ScriptedPolicy();
      expert.reset({ env, seed: q.scene.seed });
      let info = first.info!;
      for (let t = 0; t < q.scene.step; t++) info = (await env.step(expert.act())).info;
      const oracle = info.oracle as { objects: { name: string; pos: number[] }[]; holding: string };
      expect(q.facts.objects.map((o) => [o.name, o.pos])).toEqual(oracle.objects.map((o) => [o.name, o.pos]));
      expect(q.facts.holding).toBe(oracle.holding);
    }
    await env.close();
    for (const q of items) {
      const f = q.facts;
      const named = (n: string) => f.objects.find((o) => q.question.includes(`the ${o.name}`) && o.name === n);
      switch (q.type) {
        case 'color': {
          const o = f.objects.find((x) => q.question === `What color is the ${x.name}?`)!;
          expect(q.answer).toBe(CATALOG.find((c) => c.name === o.name)!.color);
          break;
        }
        case 'count':
          expect(Number(q.answer)).toBe(q.question.includes('blocks') ? f.objects.filter((o) => o.name.endsWith('block')).length : f.objects.length);
          break;
        case 'exists': {
          const name = /Is there a (.+) in the scene\?/.exec(q.question)![1];
          expect(q.answer).toBe(f.objects.some((o) => o.name === name) ? 'yes' : 'no');
          break;
        }
        case 'left_right': {
          const [, a, b] = /is the (.+) to the left or to the right of the (.+)\?/.exec(q.question)!;
          const dy = named(a)!.pos[1] - named(b)!.pos[1];
          expect(Math.abs(dy)).toBeGreaterThanOrEqual(SIDE_MARGIN);
          expect(q.answer).toBe(dy > 0 ? 'left' : 'right'); // +y is the robot's left
          break;
        }
        case 'left_of': {
          const b = /what is to the left of the (.+)\?/.exec(q.question)![1];
          const ref = f.objects.find((o) => o.name === b)!;
          expect(f.objects.filter((o) => o !== ref && o.pos[1] - ref.pos[1] >= SIDE_MARGIN).map((o) => o.name)).toEqual([q.answer]);
          break;
        }
        case 'holding':
          expect(q.answer).toBe(f.holding || 'nothing');
          break;
        case 'on':
          expect(f.relations.some((r) => r.startsWith(`${q.answer} `))).toBe(true);
          break;
      }
    }
  });
});

describe('grounding questions (--types where,gripper)', () => {
  it("answer with the oracle's positions in centimeters (x forward, y left), one decimal, and only when asked for", async () => {
    const items = await collect(generateSceneQa({ count: 24, seed: 5, width: 32, height: 32, perFrame: 4, types: ['where', 'gripper'] }));
    expect(items).toHaveLength(24);
    expect(new Set(items.map((i) => i.type))).toEqual(new Set(['where', 'gripper']));
    const env = new TabletopEnv({ width: 32, height: 32 });
    for (const q of items) {
      const first = await env.reset(q.scene.seed, { family: q.scene.family });
      const expert = new ScriptedPolicy();
      expert.reset({ env, seed: q.scene.seed });
      let obs = first.observation;
      let info = first.info!;
      for (let t = 0; t < q.scene.step; t++) ({ observation: obs, info } = await env.step(expert.act()));
      const answer = JSON.parse(q.answer) as number[];
      if (q.type === 'where') {
        const name = /^Where is the (.+)\? Give its \[x, y\] position in centimeters\.$/.exec(q.question)![1];
        const o = (info.oracle as { objects: { name: string; pos: number[] }[] }).objects.find((x) => x.name === name)!;
        expect(answer).toHaveLength(2);
        for (let k = 0; k < 2; k++) expect(Math.abs(answer[k] - o.pos[k] * 100)).toBeLessThanOrEqual(0.05 + 1e-9);
      } else {
        const state = obs.state as number[];
        expect(answer).toHaveLength(3);
        for (let k = 0; k < 3; k++) expect(Math.abs(answer[k] - state[k] * 100)).toBeLessThanOrEqual(0.05 + 1e-9);
      }
      expect(q.answer).toMatch(/^\[-?\d+\.\d(, -?\d+\.\d){1,2}\]$/);
      expect(q.metric).toBe('position');
    }
    await env.close();
    // the default types are the exact-answer ones: no positions
    const plain = await collect(generateSceneQa({ count: 30, seed: 5, width: 32, height: 32 }));
    expect(plain.some((q) => q.type === 'where' || q.type === 'gripper')).toBe(false);
  }, 120_000);

  it('are scored by position: the distance to the true position, right within 2 cm', () => {
    expect(positionError('[45.1, 12.9]', '[46.0, 13.0]').error).toBeCloseTo(Math.sqrt(0.81 + 0.01), 9);
    expect(positionError('[45.1, 12.9]', '[46.0, 13.0]').score).toBe(1);
    const far = positionError('The spoon is at [49.0, 10.0] cm.', '[46.0, 13.0]');
    expect(far.error).toBeCloseTo(Math.sqrt(18), 9);
    expect(far.score).toBe(0);
    expect(positionError('[35.0, 0.0, 16.5]', '[35.0, 0.0, 18.0]').score).toBe(1); // 1.5 cm, all three coordinates
    expect(positionError('[35.0, 0.0]', '[35.0, 0.0, 18.0]')).toEqual({ score: 0 }); // too few numbers: wrong, no distance
    expect(positionError('somewhere on the left', '[46.0, 13.0]')).toEqual({ score: 0 });
  });

  it('eval-vqa --generate --tasks pick --distractors 0: one item per scene, pick scenes only (grounding data for one object)', async () => {
    const out = path.join(dir, 'single.jsonl');
    const r = await execa('node', [BIN, 'eval-vqa', '--generate', '6', '--types', 'where', '--tasks', 'pick', '--distractors', '0', '--per-frame', '1', '--width', '32', '--height', '32', '-o', out], { reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
    const qs = readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l)) as SceneQaItem[];
    expect(qs).toHaveLength(6);
    for (const q of qs) {
      expect(q.scene.family).toBe('pick');
      expect(q.facts.objects).toHaveLength(1); // the item alone
      expect(q.question).toBe(`Where is the ${q.facts.objects[0].name}? Give its [x, y] position in centimeters.`);
    }
    // the same scenes with the world's default 1-3 distractors have more objects
    const many = await collect(generateSceneQa({ count: 6, seed: 0, width: 32, height: 32, perFrame: 1, types: ['where'], families: ['pick'] }));
    expect(many.every((q) => q.facts.objects.length >= 2)).toBe(true);
    const bad = await execa('node', [BIN, 'eval-vqa', '--generate', '3', '--tasks', 'stack'], { reject: false });
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toContain('unknown task family "stack"');
  }, 120_000);

  it('eval-vqa --types refuses an unknown type (exit 2)', async () => {
    const r = await execa('node', [BIN, 'eval-vqa', '--generate', '3', '--types', 'where,colour'], { reject: false });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain('unknown question type "colour"');
  });
});

describe('models', () => {
  it('a tiny checkpoint trained on scene questions answers them; its export answers the same', async () => {
    await selectBackend('wasm');
    const qs = await collect(generateSceneQa({ count: 8, seed: 3, width: 32, height: 32, perFrame: 2 }));
    const out = path.join(dir, 'vlm');
    await trainSft({ examples: qs.map((q) => sceneQaExample(q)), outDir: out, preset: 'tiny', vocabSize: 200, batchSize: 8, lr: 1e-2, warmup: 0, seed: 2, steps: 150, clip: 0, lambdaR: 1, codec: new TextCodec(3) });
    await exportModel(out, `${out}-onnx`);
    const file = path.join(dir, 'train-qs.jsonl');
    writeFileSync(file, qs.map((q) => JSON.stringify(q)).join('\n'));
    const items = readVqaJsonl(file);
    const a = new RunnerModel('ckpt', await openModel(out));
    const b = new RunnerModel('onnx', await openModel(`${out}-onnx`));
    const sa = await evaluateModel(a, items);
    const sb = await evaluateModel(b, items);
    expect(sa.map((s) => s.prediction)).toEqual(sb.map((s) => s.prediction));
    const [ra] = summarize(sa);
    expect(ra.score).toBeGreaterThanOrEqual(0.75); // it learned its training questions
    const rep = forgettingReport([
      { model: 'ckpt', scores: summarize(sa) },
      { model: 'onnx', scores: summarize(sb) },
    ]);
    expect(rep.meanRetention.onnx).toBe(1);
    await a.close();
    await b.close();
  }, 180_000);

  it('an OpenAI-compatible endpoint: concurrent requests, answers cached', async () => {
    let requests = 0;
    let inFlight = 0;
    let maxInFlight = 0;
    const server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', async () => {
        requests += 1;
        inFlight += 1;
        maxInFlight = Math.max(maxInFlight, inFlight);
        await new Promise((r) => setTimeout(r, 30));
        inFlight -= 1;
        const msg = JSON.parse(body).messages[0].content;
        const text = msg.find((c: { type: string }) => c.type === 'text').text as string;
        expect(msg[0].image_url.url).toMatch(/^data:image\/jpeg;base64,/);
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ choices: [{ message: { content: text.includes('looking through') ? 'net' : 'Orange.' } }], usage: { prompt_tokens: 10, completion_tokens: 1 } }));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    try {
      const cache = await AnswerCache.open(path.join(dir, 'cache'));
      const m = new EndpointModel('gemma', new OpenAITeacher('gemma-3', { baseUrl: url, temperature: 0 }), 3, cache);
      const samples = await evaluateModel(m, readVqav2(VQAV2));
      expect(samples.map((s) => s.score)).toEqual([1, 0, 1]);
      expect(requests).toBe(3);
      expect(maxInFlight).toBeGreaterThan(1);
      const again = await evaluateModel(m, readVqav2(VQAV2));
      expect(again.map((s) => s.prediction)).toEqual(samples.map((s) => s.prediction));
      expect(requests).toBe(3); // all from the cache
      await cache.close();
    } finally {
      server.close();
    }
  });
});

describe('vlakit eval-vqa (the command)', () => {
  it('generates scene questions, then scores models with a report, retention and sample logs', async () => {
    const sq = path.join(dir, 'sq.jsonl');
    const g = await execa('node', [BIN, 'eval-vqa', '--generate', '9', '--seed', '1', '--width', '32', '--height', '32', '-o', sq], { reject: false });
    expect(g.exitCode).toBe(0);
    expect(g.stderr).toMatch(/9 scene questions \(.*\) as VQA JSON Lines/);
    const ex = await execa('node', [BIN, 'eval-vqa', '--generate', '3', '--as', 'examples', '--width', '32', '--height', '32'], { reject: false });
    expect(JSON.parse(ex.stdout.split('\n')[0])).toMatchObject({ messages: [{ role: 'user' }, { role: 'assistant' }], meta: { stage: 'vqa' } });
    const vlm = path.join(dir, 'vlm');
    const log = path.join(dir, 'samples.jsonl');
    const r = await execa('node', [BIN, 'eval-vqa', '--models', `base=${vlm},vla=${vlm}-onnx`, '--data', sq, '--data', VQAV2, '--json', '--log-samples', log], { reject: false });
    expect(r.exitCode).toBe(0);
    const rep = JSON.parse(r.stderr.trim().split('\n').at(-1)!);
    expect(rep.benchmarks).toEqual(['sq', 'vqav2']);
    expect(rep.report.models).toEqual(['base', 'vla']);
    expect(rep.report.benchmarks[1]).toMatchObject({ benchmark: 'vqav2', metric: 'vqa', n: 3 });
    const samples = readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(samples).toHaveLength(2 * 12);
    for (const m of ['base', 'vla']) {
      const mine = samples.filter((s) => s.model === m && s.benchmark === 'sq');
      expect(rep.models.find((x: { model: string }) => x.model === m).scores[0].score).toBeCloseTo(mine.reduce((a, s) => a + s.score, 0) / mine.length, 12);
    }
    const bad = await execa('node', [BIN, 'eval-vqa', '--models', 'x=openai:gemma', '--data', sq], { reject: false });
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toMatch(/needs --endpoint URL/);
  }, 180_000);
});
