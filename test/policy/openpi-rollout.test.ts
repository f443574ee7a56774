import { readFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import sharp from 'sharp';
import { WebSocketServer } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Float64, NdArray, packb, unpackb } from '../../src/lib/io/msgpack-numpy.js';
import { OpenpiClient, adaptActions } from '../../src/lib/policy/index.js';
import { actionAdapterOf } from '../../src/lib/cli/protocol-flags.js';
import { tempDir } from '../helpers.js';

const dir = tempDir();
const BIN = path.resolve('bin/run.js');

// LIBERO-style 7-D actions [dx, dy, dz, droll, dpitch, dyaw, gripper], gripper -1 open / +1 closed
const CHUNK = [
  [0.01, 0, -0.005, 0, 0, 0, -1],
  [0.01, 0.005, 0, 0, 0, 0, -1],
  [0, 0, 0, 0, 0, 0, 1],
];

/** A small openpi-format server, written here from openpi's protocol: metadata map, then one chunk per request. */
let wss: WebSocketServer;
let url: string;
const requests: Record<string, unknown>[] = [];
beforeAll(async () => {
  wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  await new Promise((r) => wss.once('listening', r));
  url = `ws://127.0.0.1:${(wss.address() as { port: number }).port}`;
  wss.on('connection', (ws) => {
    ws.send(packb({}));
    ws.on('message', (data: Buffer) => {
      const obs = unpackb(new Uint8Array(data)) as Record<string, unknown>;
      requests.push(obs);
      if (obs.prompt === 'fail') {
        ws.send('Traceback (most recent call last):\n  ValueError: bad observation');
        ws.close(1011, 'Internal server error. Traceback included in previous frame.');
        return;
      }
      ws.send(packb({ actions: NdArray.from(Float32Array.from(CHUNK.flat()), [3, 7]), server_timing: { infer_ms: new Float64(1.5) }, policy_timing: { infer_ms: new Float64(1.25) } }));
    });
  });
});
afterAll(() => new Promise<void>((r) => wss.close(() => r())));

const rollout = (args: string[]) => execa('node', [BIN, 'rollout', '--policy', url, '--protocol', 'openpi', '--tasks', 'pick', '--width', '32', '--height', '32', '--distractors', '0', ...args], { reject: false });

describe('rollout --policy ws://... --protocol openpi', () => {
  it('runs an openpi server\'s fixed chunks in the built-in world: adapted actions, the safety filter, records and report', async () => {
    requests.length = 0;
    const out = path.join(dir, 'eval.jsonl');
    const res = await rollout(['--episodes', '2', '--max-steps', '5', '--action-dims', '0,1,2,6', '--gripper-range', '-1,1', '-o', out, '--json']);
    expect(res.stderr).not.toMatch(/Error/);
    expect(res.exitCode).toBe(0);
    const records = readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const episodes = [...new Set(records.map((r) => r.episode_id))];
    expect(episodes).toHaveLength(2);
    // each episode: 5 steps (+ the final observation), one request per chunk of 3
    expect(requests).toHaveLength(4);
    const first = records.filter((r) => r.episode_id === episodes[0]);
    const acted = first.filter((r) => !r.is_last);
    expect(acted.map((r) => r.action)).toEqual([
      [0.01, 0, -0.005, 1],
      [0.01, 0.005, 0, 1],
      [0, 0, 0, 0],
      [0.01, 0, -0.005, 1],
      [0.01, 0.005, 0, 1],
    ]);
    expect(acted[0].policy).toMatchObject({ chunk_step: 0, server_ms: 1.5, openpi_actions_shape: [3, 7] });
    expect(acted[0].timing.model_ms).toBe(1.25);
    // what the server got: openpi's LIBERO keys, the camera as uint8 [H, W, 3] with the recorded pixels
    const r0 = requests[0];
    expect(Object.keys(r0)).toEqual(['observation/image', 'observation/state', 'prompt']);
    const img = r0['observation/image'] as NdArray;
    expect([img.dtype, img.shape]).toEqual(['|u1', [32, 32, 3]]);
    const recorded = await sharp(Buffer.from(first[0].observation.image_0.b64, 'base64')).raw().toBuffer();
    expect(Buffer.from(img.data).equals(recorded)).toBe(true);
    const state = r0['observation/state'] as NdArray;
    expect([state.dtype, [...state.numbers()]]).toEqual(['<f4', [...Float32Array.from(first[0].observation.state as number[])]]);
    expect(r0.prompt).toBe(first[0].language_instruction);
    const report = JSON.parse(res.stderr.trim().split('\n').at(-1)!);
    expect(report.tasks[0]).toMatchObject({ family: 'pick', episodes: 2, cycles: 4 });
    expect(report.safety.steps).toBe(10);
  }, 30_000);

  it('an action space that cannot work, and openpi flags without openpi, are usage errors', async () => {
    const nine = await rollout(['--episodes', '1', '--max-steps', '2', '--action-dims', '0,1,2,9']);
    expect(nine.exitCode).toBe(2);
    expect(nine.stderr).toMatch(/--action-dims names index 9, but the openpi server at ws:\/\/127\.0\.0\.1:\d+ answers 7-D actions/);
    const noProtocol = await execa('node', [BIN, 'rollout', '--policy', url, '--obs-map', 'droid', '--episodes', '1'], { reject: false });
    expect(noProtocol.exitCode).toBe(2);
    expect(noProtocol.stderr).toMatch(/--obs-map applies only with --protocol openpi/);
    const notRemote = await execa('node', [BIN, 'rollout', '--protocol', 'openpi', '--episodes', '1'], { reject: false });
    expect(notRemote.exitCode).toBe(2);
    expect(notRemote.stderr).toMatch(/--protocol applies only with --policy ws:\/\/host:port/);
    // a key in the environment does not get in the way of other policies
    const scripted = await execa('node', [BIN, 'rollout', '--tasks', 'pick', '--episodes', '1', '--max-steps', '1', '--width', '16', '--height', '16', '-q', '-o', path.join(dir, 's.jsonl')], { reject: false, env: { VLAKIT_POLICY_API_KEY: 'k' } });
    expect(scripted.exitCode).toBe(0);
  }, 30_000);

  it('the server\'s error frame (text, then close 1011) is reported as the error', async () => {
    const client = await OpenpiClient.connect(url);
    expect(client.metadata).toEqual({});
    await expect(client.infer({ prompt: 'fail' })).rejects.toThrow(/the openpi server at ws:\/\/127\.0\.0\.1:\d+ reported an error:\nTraceback \(most recent call last\):\n  ValueError: bad observation/);
    expect(client.failed).toBe(true);
    client.close();
  });
});

describe('the action-space flags (actionAdapterOf)', () => {
  it('are checked before anything runs', () => {
    expect(actionAdapterOf({ 'action-dims': '0,1,2,6', 'gripper-range': '-1,1', 'action-scale': '0.05' })).toEqual({ dims: [0, 1, 2, 6], gripper: [-1, 1], scale: [0.05] });
    expect(() => actionAdapterOf({ 'action-dims': '0,1,2' })).toThrow(/E_USAGE: --action-dims names 3 indices; vlakit's actions have 4/);
    expect(() => actionAdapterOf({ 'action-dims': '0,1,2,1' })).toThrow(/names an index twice/);
    expect(() => actionAdapterOf({ 'action-dims': '0,1,x,2' })).toThrow(/--action-dims must be a comma-separated list of indices/);
    expect(() => actionAdapterOf({ 'gripper-range': '1,1' })).toThrow(/--gripper-range needs two different values/);
    expect(() => actionAdapterOf({ 'gripper-range': '1' })).toThrow(/--gripper-range takes two numbers/);
    expect(() => actionAdapterOf({ 'action-dims': '0,1,2,6', 'action-scale': '1,2' })).toThrow(/one factor or one per non-gripper dimension \(3\), got 2/);
  });
});

describe('adaptActions', () => {
  const a = (rows: number[][]) => NdArray.from(Float32Array.from(rows.flat()), [rows.length, rows[0].length]);
  it('selects, scales, maps the gripper and turns absolute targets into steps', () => {
    const out = adaptActions(a([[0.5, 0.25, 0.75, 9, 0]]), { dims: [0, 1, 2, 4], scale: [0.1], gripper: [0, 1] }, undefined, 'ws://x');
    expect(out[0].map((v) => +v.toFixed(6))).toEqual([0.05, 0.025, 0.075, 1]);
    const abs = adaptActions(a([[0.5, 0.0, 0.25, 1], [0.5, 0.01, 0.25, 0]]), { absolute: true }, [0.49, 0, 0.3, 1], 'ws://x');
    expect(abs.map((r) => r.map((v) => +v.toFixed(6)))).toEqual([[0.01, 0, -0.05, 1], [0, 0.01, 0, 0]]);
    expect(() => adaptActions(a([[1, 2, 3, 4, 5, 6, 7, 8]]), {}, undefined, 'ws://x')).toThrow(/answers 8-D actions; say which of its dimensions .* --action-dims \(e\.g\. --action-dims 0,1,2,7\)/);
    expect(() => adaptActions(a([[1, 2, 3, 4]]), { absolute: true }, undefined, 'ws://x')).toThrow(/--action-absolute needs the observed position/);
    expect(() => adaptActions(a([[1, Number.NaN, 3, 4]]), {}, undefined, 'ws://x')).toThrow(/non-finite action at row 0/);
  });
});
