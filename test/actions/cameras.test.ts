/** Camera choice: the primary-camera rule and --camera on annotate, chunk and relabel (multi-camera examples). */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { TextCodec, chunkEpisode, episodeExamples } from '../../src/lib/actions/index.js';
import type { StepRecord } from '../../src/lib/io/index.js';
import { annotate, type Teacher, type TeacherRequest } from '../../src/lib/teacher/index.js';
import { collect, tempDir } from '../helpers.js';
import { buildRlds, makeEpisode } from '../rlds-builder.js';

const im = (s: string) => ({ mime: 'image/png', b64: Buffer.from(s).toString('base64') });
const A = im('image_1'), B = im('image_0'), W = im('wrist');

function episode(): StepRecord[] {
  // image_1 comes first in feature order, as on Bridge
  return Array.from({ length: 4 }, (_, t) => ({ episode_id: 7, step: t, language_instruction: 'put the carrot on the plate', observation: { image_1: A, image_0: B, wrist: W, state: [0, 0, 0, 1] }, action: [0.01, 0, 0, 0, 0, 0.1, t < 2 ? 1 : 0] }));
}

describe('primary camera and --camera', () => {
  it('examples take image_0 (not the first feature) by default, and the stated cameras in order', () => {
    const chunks = chunkEpisode(episode(), { mode: 'merge' });
    const one = episodeExamples(chunks, { method: 'vlm2vla', codec: new TextCodec(), noReasoning: true });
    expect(one.every((e) => e.images.length === 1 && e.images[0] === B)).toBe(true);
    const two = episodeExamples(chunks, { method: 'vlm2vla', codec: new TextCodec(), noReasoning: true, cameras: ['wrist', 'image_1'] });
    expect(two.every((e) => e.images.length === 2 && e.images[0] === W && e.images[1] === A)).toBe(true);
    expect(two[0].messages[0].content.filter((c) => c.type === 'image')).toHaveLength(2);
    // chunk --camera keeps those cameras, in order, and relabel then defaults to them
    const kept = chunkEpisode(episode(), { mode: 'merge', cameras: ['wrist', 'image_0'] });
    expect(Object.keys(kept[0].observation)).toEqual(['wrist', 'image_0', 'state']);
    expect(episodeExamples(kept, { method: 'vlm2vla', codec: new TextCodec(), noReasoning: true })[0].images).toEqual([W, B]);
    expect(() => chunkEpisode(episode(), { mode: 'merge', cameras: ['front'] })).toThrow(/no camera "front" in the observation \(cameras: image_0, image_1, wrist\)/);
  });

  it('annotate shows the teacher the stated cameras (reasoning), the primary one by default (plans)', async () => {
    const seen: number[][] = [];
    const teacher: Teacher = {
      id: 'probe',
      local: true,
      readsContext: false,
      async complete(req: TeacherRequest) {
        seen.push((req.messages[0].images ?? []).map((i) => [A, B, W].findIndex((x) => x.b64 === i.b64)));
        const text = req.kind === 'plan' ? JSON.stringify({ subtasks: [{ step_description: 'do it', reasoning: '', main_movements: '', start_step: 0, end_step: 3 }] }) : JSON.stringify({ observation: 'o', situation_analysis: 's', spatial_reasoning: 'r', task_planning: 't', logical_steps: ['a'], sub_action: 'x' });
        return { text, usage: { inputTokens: 0, outputTokens: 0 }, retries: 0 };
      },
    };
    async function* eps() {
      yield episode();
    }
    await collect(annotate(eps(), { kind: 'plan', teacher, frames: 2 }));
    expect(seen).toEqual([[1, 1]]);
    seen.length = 0;
    await collect(annotate(eps(), { kind: 'reasoning', teacher, stride: 4, cameras: ['wrist', 'image_1'] }));
    expect(seen).toEqual([[2, 0]]);
  });
});

describe('--camera through the binary', () => {
  const dir = tempDir();
  const BIN = path.resolve('bin/run.js');
  const vlakit = (args: string[]) => execa('node', [BIN, ...args], { reject: false, cwd: dir, env: { NO_COLOR: '1' } }).then((r) => ({ code: r.exitCode, err: r.stderr }));
  beforeAll(async () => {
    await buildRlds(path.join(dir, 'ds/1.0.0'), { train: [[await makeEpisode(1, 4)]] });
  });

  it('chunk --camera and relabel --camera give multi-camera examples; an unknown camera is named', async () => {
    expect((await vlakit(['chunk', 'ds/1.0.0', '--camera', 'wrist_image,image_0', '-q', '-o', 'chunks.jsonl'])).code).toBe(0);
    const c = JSON.parse(readFileSync(path.join(dir, 'chunks.jsonl'), 'utf8').split('\n')[0]);
    expect(c.cameras).toEqual(['wrist_image', 'image_0']);
    expect(Object.keys(c.observation).slice(0, 2)).toEqual(['wrist_image', 'image_0']);
    expect((await vlakit(['relabel', 'chunks.jsonl', '--camera', 'image_0', '--no-reasoning', '-q', '-o', 'one.jsonl'])).code).toBe(0);
    expect((await vlakit(['relabel', 'chunks.jsonl', '--no-reasoning', '-q', '-o', 'two.jsonl'])).code).toBe(0);
    const one = JSON.parse(readFileSync(path.join(dir, 'one.jsonl'), 'utf8').split('\n')[0]);
    const two = JSON.parse(readFileSync(path.join(dir, 'two.jsonl'), 'utf8').split('\n')[0]);
    expect(one.images).toEqual([c.observation.image_0]);
    expect(two.images).toEqual([c.observation.wrist_image, c.observation.image_0]);
    const bad = await vlakit(['relabel', 'chunks.jsonl', '--camera', 'front', '-q', '-o', 'bad.jsonl']);
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/no camera "front" in the observation \(cameras: image_0, wrist_image\)/);
    const warned = await vlakit(['annotate', 'ds/1.0.0', '--kind', 'plan', '--camera', 'wrist_image', '-o', 'ann.jsonl']);
    expect(warned.code).toBe(0);
    expect(warned.err).toMatch(/warning: these steps are not from the built-in world; the kinematic teacher reads only the actions/);
    const dup = await vlakit(['annotate', 'ds/1.0.0', '--kind', 'plan', '--camera', 'image_0,image_0', '-o', 'a.jsonl']);
    expect(dup.code).toBe(2);
    expect(dup.err).toMatch(/--camera "image_0,image_0" names a camera twice/);
  }, 60_000);
});

describe('a learned policy sees the primary camera first', () => {
  it('ModelPolicy hands the runner image_0 before image_1 whatever the observation order', async () => {
    const { ModelPolicy, OracleVerifier } = await import('../../src/lib/policy/index.js');
    let seen: unknown[] = [];
    const runner = {
      info: { engine: 'stub', device: 'cpu' },
      prepare: async (_prompt: string, images: unknown[]) => {
        seen = images;
        throw new Error('stop here');
      },
    };
    const sampling = { temperature: 0, topP: 1, maxNewTokens: 8 };
    const policy = new ModelPolicy(runner as never, { mode: 'direct', codec: new TextCodec(), verifier: new OracleVerifier(), sampling: { subtasks: sampling, plan: sampling, actions: sampling } } as never);
    policy.reset({ instruction: 'put the carrot on the plate', seed: 0 });
    await expect(policy.cycle({ image_1: A, image_0: B, state: [0, 0, 0, 1] }, { instruction: 'put the carrot on the plate', step: 0 } as never)).rejects.toThrow(/stop here/);
    expect(seen).toEqual([B, A]);
  });
});
