/** Grounding targets from the world's masks (env/ground.ts), and relabel --ground / eval-vqa --ground end to end. */
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { groundTargets } from '../../src/lib/env/ground.js';
import { namedObjects } from '../../src/lib/util/names.js';

const BIN = path.resolve('bin/run.js');

describe('grounding targets', () => {
  it('names are whole words in the order the text says them; a longer name claims its span', () => {
    const objects = [{ name: 'cup' }, { name: 'red cup' }, { name: 'plate' }, { name: 'corn' }];
    expect(namedObjects('put the red cup on the plate', objects).map((o) => o.name)).toEqual(['red cup', 'plate']);
    expect(namedObjects('Where is the Plate? And the cup.', objects).map((o) => o.name)).toEqual(['plate', 'cup']);
    expect(namedObjects('the cupboard and the popcorn', objects)).toEqual([]);
  });

  it('a target is the centre of the object\'s visible pixels, in the slot of the masked camera; hidden objects have none', () => {
    // a 10 x 4 image: the spoon covers pixels 12-14 of row 1 and 22-24 of row 2 (x 2-4), the plate is not visible
    const oracle = {
      objects: [{ id: 'a', name: 'spoon' }, { id: 'b', name: 'plate' }],
      masks: { camera: 'image_0', width: 10, height: 4, objects: [{ id: 'a', runs: [12, 3, 22, 3] }] },
    };
    expect(groundTargets(oracle, 'put the spoon on the plate', ['image_0'])).toEqual([{ object: 'spoon', image: 0, point: [0.35, 0.5] }]);
    expect(groundTargets(oracle, 'the spoon', ['wrist_image', 'image_0'])![0].image).toBe(1);
    expect(groundTargets(oracle, 'the spoon', ['wrist_image'])).toEqual([]);
    expect(groundTargets({ objects: oracle.objects }, 'the spoon', ['image_0'])).toBeUndefined(); // no masks recorded
    // with `all`, the visible objects the text does not name follow the named ones
    const three = { ...oracle, objects: [...oracle.objects, { id: 'c', name: 'corn' }], masks: { ...oracle.masks, objects: [...oracle.masks.objects, { id: 'c', runs: [0, 1] }, { id: 'b', runs: [39, 1] }] } };
    expect(groundTargets(three, 'the corn', ['image_0'], true)!.map((t) => [t.object, ...t.point])).toEqual([['corn', 0.05, 0.125], ['spoon', 0.35, 0.5], ['plate', 0.95, 0.875]]);
  });
});

describe('relabel --ground and eval-vqa --ground', () => {
  it('examples carry the named item\'s centre from rollout --masks; without masks it is a data error', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'vlakit-ground-'));
    const f = (n: string) => path.join(dir, n);
    const run = (args: string[]) => execa('node', [BIN, ...args], { reject: false });
    for (const masks of [true, false]) {
      const r = await run(['rollout', '--policy', 'scripted', '--tasks', 'pick', '--episodes', '1', '--max-steps', '4', '--width', '64', '--height', '64', '-q', '-o', f(`ep${masks}.jsonl`), ...(masks ? ['--masks'] : [])]);
      expect(r.exitCode, r.stderr).toBe(0);
      expect((await run(['chunk', f(`ep${masks}.jsonl`), '--mode', 'fixed', '--horizon', '1', '-q', '-o', f(`ch${masks}.jsonl`)])).exitCode).toBe(0);
    }
    const ok = await run(['relabel', f('chtrue.jsonl'), '--method', 'refinevla', '--no-reasoning', '--actions', 'text', '--units', 'cm', '--ground', '-q', '-o', f('ex.jsonl')]);
    expect(ok.exitCode, ok.stderr).toBe(0);
    const examples = readFileSync(f('ex.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const steps = readFileSync(f('eptrue.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const instruction = steps[0].language_instruction as string;
    expect(examples.length).toBeGreaterThan(0);
    for (const ex of examples) {
      expect(ex.ground).toHaveLength(1); // pick names one item
      expect(instruction).toContain(ex.ground[0].object);
      expect(ex.ground[0].image).toBe(0);
      for (const v of ex.ground[0].point) expect(v > 0 && v < 1).toBe(true);
    }
    const bad = await run(['relabel', f('chfalse.jsonl'), '--method', 'refinevla', '--no-reasoning', '--actions', 'text', '--ground', '-q', '-o', f('bad.jsonl')]);
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr).toMatch(/no oracle pixel masks.*rollout --masks/);
    expect(bad.stderr).not.toMatch(/\n\s+at /); // no stack trace
    // scene questions: the object the question asks about
    const q = await run(['eval-vqa', '--generate', '3', '--types', 'where', '--tasks', 'pick', '--width', '64', '--height', '64', '--as', 'examples', '--ground', '-q', '-o', f('q.jsonl')]);
    expect(q.exitCode, q.stderr).toBe(0);
    for (const ex of readFileSync(f('q.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l))) {
      expect(ex.messages[0].content[1].text.toLowerCase()).toContain(ex.ground[0].object);
    }
    const usage = await run(['eval-vqa', '--generate', '3', '--ground', '-q', '-o', f('q2.jsonl')]);
    expect(usage.exitCode).toBe(2);
    expect(usage.stderr).toMatch(/--as examples/);
  }, 120_000);
});
