import { readFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { WebSocket } from 'ws';
import { afterEach, describe, expect, it } from 'vitest';
import { Float64, NdArray, packb, unpackb } from '../../src/lib/io/msgpack-numpy.js';
import type { ImageJson } from '../../src/lib/io/json.js';
import { ChunkPolicy, type Cycle, OpenpiClient, type PolicyServer, type ServeOptions, parseObsMap, servePolicy } from '../../src/lib/policy/index.js';
import { FIXTURES } from '../helpers.js';

const DIR = path.join(FIXTURES, 'openpi');
const fixture = (name: string) => new Uint8Array(readFileSync(path.join(DIR, name)));
const expected = JSON.parse(readFileSync(path.join(DIR, 'expected.json'), 'utf8'));
const REPLY = unpackb(fixture('reply_libero.msgpack')) as { actions: NdArray };
const REQUEST = unpackb(fixture('request_libero.msgpack')) as Record<string, NdArray | string>;

/** A policy without a model that keeps what it was given and answers the fixture's action chunk. */
class RecordingPolicy extends ChunkPolicy {
  readonly name = 'recording';
  static seen: { obs: Record<string, unknown>; instruction: string; step: number }[] = [];
  static resets: string[] = [];
  static done = false;
  async reset(ctx: { instruction: string; seed: number }): Promise<void> {
    super.reset(ctx);
    RecordingPolicy.resets.push(ctx.instruction);
  }
  async cycle(obs: Record<string, unknown>, ctx: { instruction: string; step: number }): Promise<Cycle | null> {
    RecordingPolicy.seen.push({ obs, instruction: ctx.instruction, step: ctx.step });
    if (RecordingPolicy.done) return null;
    const a = REPLY.actions.values() as Float32Array;
    const rows = Array.from({ length: 10 }, (_, i) => [...a.subarray(i * 7, i * 7 + 7)]);
    return { actions: rows, info: {}, modelMs: 40.2 };
  }
}

let server: PolicyServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
  RecordingPolicy.seen = [];
  RecordingPolicy.resets = [];
  RecordingPolicy.done = false;
});

async function serve(o: Partial<ServeOptions> = {}): Promise<string> {
  server = await servePolicy({ port: 0, makePolicy: () => new RecordingPolicy(), metadata: {}, protocol: 'openpi', openpi: { obsMap: parseObsMap('libero'), actionDim: 7 }, ...o });
  return `ws://127.0.0.1:${server.port}`;
}

/** A raw client as openpi-client is: binary frames of msgpack-numpy, text frames are errors. */
async function open(url: string, headers?: Record<string, string>) {
  const ws = new WebSocket(url, { headers });
  const frames: { binary: boolean; data: Buffer }[] = [];
  const waiters: (() => void)[] = [];
  ws.on('message', (data: Buffer, binary: boolean) => {
    frames.push({ binary, data });
    waiters.splice(0).forEach((w) => w());
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  const received = async (n: number) => {
    while (frames.length < n) await new Promise<void>((r) => waiters.push(r));
    return frames[n - 1];
  };
  return { ws, frames, closed, received };
}

/** A PNG's pixels, [H, W, C]. */
const pixels = async (img: unknown) => new Uint8Array(await sharp(Buffer.from((img as ImageJson).b64, 'base64')).raw().toBuffer());

describe('rollout serve --protocol openpi (library): the fixture client', () => {
  it('sends the metadata map, answers the fixture request with actions [10, 7] and timings, and gives the policy the mapped observation', async () => {
    const c = await open(await serve());
    const meta = await c.received(1);
    expect(meta.binary).toBe(true);
    expect(new Uint8Array(meta.data)).toEqual(fixture('metadata_empty.msgpack'));
    c.ws.send(fixture('request_libero.msgpack'));
    const reply = await c.received(2);
    expect(reply.binary).toBe(true);
    const r = unpackb(new Uint8Array(reply.data), { keepFloats: true }) as { actions: NdArray; server_timing: Record<string, Float64>; policy_timing: Record<string, Float64> };
    expect(Object.keys(r)).toEqual(['actions', 'server_timing', 'policy_timing']);
    expect(r.actions.dtype).toBe('<f4');
    expect(r.actions.shape).toEqual([10, 7]);
    expect(r.actions.data).toEqual(REPLY.actions.data); // the same float32 bits
    expect(r.actions.numbers().reduce((s, v) => s + v, 0)).toBeCloseTo(expected['reply_libero.msgpack'].actions.sum, 5);
    expect(r.server_timing.infer_ms).toBeInstanceOf(Float64); // a float on the wire, as Python's time difference
    expect(r.server_timing.infer_ms.value).toBeGreaterThanOrEqual(0);
    expect(r.policy_timing).toEqual({ infer_ms: new Float64(40.2) });

    // what the policy saw: the cameras as PNGs with the very pixels, the state, the prompt
    const [seen] = RecordingPolicy.seen;
    expect(Object.keys(seen.obs)).toEqual(['image_0', 'wrist_image', 'state']);
    expect(await pixels(seen.obs.image_0)).toEqual((REQUEST['observation/image'] as NdArray).data);
    expect(await pixels(seen.obs.wrist_image)).toEqual((REQUEST['observation/wrist_image'] as NdArray).data);
    const sumPx = (await pixels(seen.obs.image_0)).reduce((s, v) => s + v, 0);
    expect(sumPx).toBe(expected['request_libero.msgpack']['observation/image'].sum);
    expect((seen.obs.state as number[]).reduce((s, v) => s + v, 0)).toBeCloseTo(expected['request_libero.msgpack']['observation/state'].sum, 6);
    expect(seen.instruction).toBe(expected['request_libero.msgpack'].prompt);
    expect(RecordingPolicy.resets).toEqual([seen.instruction]);

    // the same prompt goes on with the episode; the next reply reports the previous request's whole time
    c.ws.send(fixture('request_libero.msgpack'));
    const r2 = unpackb(new Uint8Array((await c.received(3)).data)) as { server_timing: Record<string, number> };
    expect(Object.keys(r2.server_timing)).toEqual(['infer_ms', 'prev_total_ms']);
    expect(RecordingPolicy.resets).toHaveLength(1);
    expect(RecordingPolicy.seen[1].step).toBe(10);
    // another prompt is another episode
    c.ws.send(packb({ ...REQUEST, prompt: 'open the drawer' } as never));
    await c.received(4);
    expect(RecordingPolicy.resets).toEqual([seen.instruction, 'open the drawer']);
    expect(RecordingPolicy.seen[2].step).toBe(0);
    c.ws.close();
  });

  it('OpenpiClient (the client side) talks to it: metadata, then the reply map', async () => {
    const client = await OpenpiClient.connect(await serve({ metadata: { model: 'fake', action_dim: 7, layout: undefined } }));
    expect(client.metadata).toEqual({ model: 'fake', action_dim: 7 });
    const r = await client.infer(REQUEST as never);
    expect((r.actions as NdArray).shape).toEqual([10, 7]);
    client.close();
  });

  it('ALOHA-style requests: nested images, channels first, no prompt (the default prompt)', async () => {
    const url = await serve({ openpi: { obsMap: parseObsMap('aloha'), defaultPrompt: 'transfer the cube' } });
    const c = await open(url);
    await c.received(1);
    // a [3, 2, 4] CHW image: value = 100 * channel + 10 * row + column
    const chw = Uint8Array.from({ length: 24 }, (_, i) => 100 * Math.floor(i / 8) + 10 * Math.floor((i % 8) / 4) + (i % 4));
    c.ws.send(packb({ state: NdArray.from(new Float32Array(14).fill(0.5)), images: { cam_high: NdArray.from(chw, [3, 2, 4]) } }));
    const reply = await c.received(2);
    expect(reply.binary).toBe(true);
    const [seen] = RecordingPolicy.seen;
    expect(seen.instruction).toBe('transfer the cube');
    const hwc = await pixels(seen.obs.image_0);
    // pixel (row 1, column 2), channel 2
    expect(hwc[(1 * 4 + 2) * 3 + 2]).toBe(212);
    expect(hwc.length).toBe(24);
    expect(seen.obs.state).toHaveLength(14);
    c.ws.close();
  });

  it('a finished plan answers zero actions with done, and the next request starts again', async () => {
    const c = await open(await serve());
    await c.received(1);
    RecordingPolicy.done = true;
    c.ws.send(fixture('request_libero.msgpack'));
    const r = unpackb(new Uint8Array((await c.received(2)).data)) as { actions: NdArray; done: boolean };
    expect([r.actions.shape, r.done]).toEqual([[0, 7], true]);
    RecordingPolicy.done = false;
    c.ws.send(fixture('request_libero.msgpack'));
    await c.received(3);
    expect(RecordingPolicy.resets).toHaveLength(2);
    c.ws.close();
  });
});

describe('rollout serve --protocol openpi: errors and access as openpi does them', () => {
  it('a request the policy cannot take: the error as a text frame, then close 1011', async () => {
    for (const bad of [packb({ prompt: 'x', 'observation/state': NdArray.from(new Float32Array(8)) }), packb([1, 2]), new Uint8Array([0xc1]), packb({ 'observation/image': NdArray.from(new Float32Array(12), [2, 2, 3]) })]) {
      const c = await open(await serve());
      await c.received(1);
      c.ws.send(bad);
      const f = await c.received(2);
      expect(f.binary).toBe(false);
      expect(f.data.toString()).toMatch(/^E_(USAGE|MSGPACK)/);
      expect(await c.closed).toEqual({ code: 1011, reason: 'Internal server error. Traceback included in previous frame.' });
      await server!.close();
      server = undefined;
    }
  });

  it('the messages say what is wrong', async () => {
    const c = await open(await serve());
    await c.received(1);
    c.ws.send(packb({ prompt: 'x', wrong: NdArray.from(new Uint8Array(12), [2, 2, 3]) }));
    expect((await c.received(2)).data.toString()).toBe('E_USAGE: the observation holds none of the mapped camera keys (observation/image, observation/wrist_image); it has prompt, wrong; see --obs-map');
    const client = await OpenpiClient.connect(await serve());
    await expect(client.infer({ 'observation/image': NdArray.from(new Float32Array(12), [2, 2, 3]) })).rejects.toThrow(/reported an error:\nE_USAGE: openpi key "observation\/image": a camera image must be uint8/);
  });

  it('with an API key, a client without it gets HTTP 401; with it (as openpi sends it) the metadata', async () => {
    const url = await serve({ apiKey: 's3cret' });
    await expect(OpenpiClient.connect(url)).rejects.toThrow(/refused the connection: HTTP 401 \(a wrong or missing --api-key\?\)/);
    await expect(OpenpiClient.connect(url, { apiKey: 'nope' })).rejects.toThrow(/HTTP 401/);
    const c = await open(url, { Authorization: 'Api-Key s3cret' });
    expect((await c.received(1)).binary).toBe(true);
    c.ws.close();
    const res = await fetch(`http://127.0.0.1:${server!.port}/healthz`);
    expect([res.status, await res.text()]).toEqual([200, 'OK\n']);
  });

  it('--obs-map entries are checked', () => {
    expect(parseObsMap('observation/image=image_0:chw,prompt=instruction')).toEqual([{ key: 'observation/image', target: 'image_0', chw: true }, { key: 'prompt', target: 'instruction' }]);
    expect(() => parseObsMap('observation/image=camera')).toThrow(/invalid --obs-map entry "observation\/image=camera"/);
    expect(() => parseObsMap('prompt=instruction')).toThrow(/maps no camera/);
    expect(() => parseObsMap('a=image_0,b=image_0')).toThrow(/two openpi keys to the camera "image_0"/);
    expect(() => parseObsMap('s=state:chw,a=image_0')).toThrow(/only a camera/);
  });
});
