/** HDF5 in the robomimic / LIBERO layout, written here with h5wasm, read back by the binary as the same steps. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers.js';

const BIN = path.resolve('bin/run.js');
const dir = tempDir();
const file = path.join(dir, 'libero_demo.hdf5');
const vlakit = (args: string[]) => execa('node', [BIN, ...args], { reject: false, cwd: dir, env: { NO_COLOR: '1' } }).then((r) => ({ code: r.exitCode, out: r.stdout, err: r.stderr }));

interface Demo {
  actions: number[][];
  state: number[][];
  image: Uint8Array; // [T, 6, 8, 3]
  rewards: number[];
}
const demos: Demo[] = [];
const H = 6;
const W = 8;

beforeAll(async () => {
  const h5wasm = ((await import('h5wasm/node')) as unknown as { default: any }).default;
  await h5wasm.ready;
  const f = new h5wasm.File(file, 'w');
  const data = f.create_group('data');
  data.create_attribute('problem_info', JSON.stringify({ problem_name: 'libero_spatial', language_instruction: 'pick up the black bowl and place it on the plate' }));
  data.create_attribute('env_args', JSON.stringify({ env_name: 'Libero', type: 1 }));
  // demo_10 before demo_2 in name order: read in number order
  for (const [n, T] of [[0, 3], [2, 2], [10, 4]] as const) {
    const actions = Array.from({ length: T }, (_, t) => Array.from({ length: 7 }, (_, k) => Math.fround((n + 1) * 0.01 * (k - 3) + t * 0.001)));
    const state = Array.from({ length: T }, (_, t) => [Math.fround(0.1 * t), Math.fround(-0.2), Math.fround(n)]);
    const image = new Uint8Array(T * H * W * 3).map((_, i) => (i * 7 + n * 13) % 256);
    const rewards = Array.from({ length: T }, (_, t) => (t === T - 1 ? 1 : 0));
    demos.push({ actions, state, image, rewards });
    const g = data.create_group(`demo_${n}`);
    g.create_dataset({ name: 'actions', data: new Float64Array(actions.flat()), shape: [T, 7] });
    g.create_dataset({ name: 'rewards', data: new Float64Array(rewards), shape: [T] });
    g.create_dataset({ name: 'dones', data: new Uint8Array(rewards), shape: [T], dtype: '<B' });
    const obs = g.create_group('obs');
    obs.create_dataset({ name: 'agentview_rgb', data: image, shape: [T, H, W, 3], dtype: '<B' });
    obs.create_dataset({ name: 'ee_pos', data: new Float32Array(state.flat()), shape: [T, 3], dtype: '<f' });
  }
  f.close();
});

describe('HDF5 (robomimic / LIBERO layout)', () => {
  it('reads as the same steps: actions, numbers, camera pixels, rewards, the instruction; episodes in demo order', async () => {
    const r = await vlakit(['convert', 'libero_demo.hdf5', '-q', '-o', 'steps.jsonl']);
    expect(r.code, r.err).toBe(0);
    const steps = readFileSync(path.join(dir, 'steps.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(steps.map((s) => `${s.episode_id}:${s.step}`)).toEqual(['demo_0:0', 'demo_0:1', 'demo_0:2', 'demo_2:0', 'demo_2:1', 'demo_10:0', 'demo_10:1', 'demo_10:2', 'demo_10:3']);
    let at = 0;
    for (const d of demos) {
      for (let t = 0; t < d.actions.length; t++, at++) {
        const s = steps[at];
        expect(s.action).toEqual(d.actions[t]);
        expect(s.observation.ee_pos).toEqual(d.state[t]);
        expect(s.reward).toBe(d.rewards[t]);
        expect(s.is_first).toBe(t === 0);
        expect(s.is_last).toBe(t === d.actions.length - 1);
        expect(s.language_instruction).toBe('pick up the black bowl and place it on the plate');
        const { data, info } = await sharp(Buffer.from(s.observation.agentview_rgb.b64, 'base64')).raw().toBuffer({ resolveWithObject: true });
        expect([info.width, info.height, info.channels]).toEqual([W, H, 3]);
        expect(Buffer.compare(data, Buffer.from(d.image.subarray(t * H * W * 3, (t + 1) * H * W * 3)))).toBe(0);
      }
    }
    // every command reads it: chunk, with the 7-D layout inferred and the primary camera rule
    const c = await vlakit(['chunk', 'libero_demo.hdf5', '-q', '-o', 'chunks.jsonl']);
    expect(c.code, c.err).toBe(0);
    const chunks = readFileSync(path.join(dir, 'chunks.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(chunks).toHaveLength(3);
    expect(chunks[0].action_layout.dims).toBe(7);
  }, 60_000);

  it('an HDF5 file in another layout is a clear error', async () => {
    const h5wasm = ((await import('h5wasm/node')) as unknown as { default: any }).default;
    const f = new h5wasm.File(path.join(dir, 'other.h5'), 'w');
    f.create_dataset({ name: 'x', data: new Float64Array([1]), shape: [1] });
    f.close();
    const r = await vlakit(['convert', 'other.h5', '-q']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/E_FORMAT_UNKNOWN .*other\.h5.*an HDF5 file without a "data" group/);
  });
});
