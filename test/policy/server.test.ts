import net from 'node:net';
import { decode, encode } from '@msgpack/msgpack';
import { WebSocket } from 'ws';
import { afterEach, describe, expect, it } from 'vitest';
import { ChunkPolicy, type Cycle, PolicyClient, type PolicyServer, type ServeOptions, servePolicy } from '../../src/lib/policy/index.js';

/** A policy without a model: one fixed action per cycle; its resets wait for `gate` when one is set. */
class FakePolicy extends ChunkPolicy {
  readonly name = 'fake';
  static gate: Promise<void> | undefined;
  async reset(ctx: { instruction: string; seed: number }): Promise<void> {
    super.reset(ctx);
    await FakePolicy.gate;
  }
  async cycle(): Promise<Cycle> {
    return { actions: [[0.01, 0, 0, 1]], info: {}, modelMs: 0 };
  }
}

const PNG = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0]);
let server: PolicyServer | undefined;
const notices: string[] = [];

async function serve(o: Partial<ServeOptions> = {}): Promise<string> {
  notices.length = 0;
  server = await servePolicy({ port: 0, makePolicy: () => new FakePolicy(), metadata: { model: 'fake' }, onNotice: (m) => notices.push(m), ...o });
  return `ws://127.0.0.1:${server.port}`;
}

afterEach(async () => {
  FakePolicy.gate = undefined;
  await server?.close();
  server = undefined;
});

/** A raw websocket that collects the decoded messages and how it was closed. */
async function open(url: string) {
  const ws = new WebSocket(url);
  const messages: Record<string, unknown>[] = [];
  const waiters: (() => void)[] = [];
  ws.on('message', (d: Buffer) => {
    messages.push(decode(d) as Record<string, unknown>);
    waiters.splice(0).forEach((w) => w());
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  /** Waits until `n` messages have arrived. */
  const received = async (n: number) => {
    while (messages.length < n) await new Promise<void>((r) => waiters.push(r));
    return messages;
  };
  return { ws, messages, closed, received };
}

describe('rollout serve: requests are validated', () => {
  it('a nil request, a non-map and a malformed infer get clear errors; the connection stays usable', async () => {
    const c = await open(await serve());
    await c.received(1);
    // one request at a time, as a client does (the queue holds 4)
    const ask = async (bytes: Uint8Array) => {
      c.ws.send(bytes);
      return (await c.received(c.messages.length + 1)).at(-1)!;
    };
    expect(c.messages[0]).toMatchObject({ type: 'metadata', protocol: 'vlakit-policy/1', model: 'fake' });
    expect(await ask(encode(null))).toEqual({ type: 'error', message: 'E_USAGE: a request is a msgpack map with a type (reset or infer), got nil' });
    expect(await ask(encode([1, 2]))).toEqual({ type: 'error', message: 'E_USAGE: a request is a msgpack map with a type (reset or infer), got an array' });
    expect((await ask(encode({ type: 'infer', observation: 5 }))).message).toMatch(/^E_USAGE: invalid "infer" request: field observation: /);
    expect((await ask(encode({ type: 'reset', instruction: 'x', seed: 1.5 }))).message).toMatch(/^E_USAGE: invalid "reset" request: field seed: .*int/i);
    expect((await ask(new Uint8Array([0xc1]))).message).toMatch(/^E_USAGE: a request is one msgpack map; this message is not msgpack/); // 0xc1: never used
    expect(await ask(encode({ type: 'reset', instruction: null, seed: 3 }))).toEqual({ type: 'reset', ok: true });
    const m = c.messages;
    for (const e of m.slice(1, 6)) expect(String(e.message)).not.toMatch(/Cannot read properties|TypeError/);
    c.ws.close();
  });
});

describe('rollout serve: each connection is bounded', () => {
  it('a raw TCP connection that never finishes the websocket handshake is dropped after the handshake timeout', async () => {
    const url = await serve({ handshakeTimeoutMs: 200 });
    const port = Number(new URL(url).port);
    const silent = net.connect(port, '127.0.0.1');
    const partial = net.connect(port, '127.0.0.1', () => partial.write('GET / HTTP/1.1\r\nHost: x\r\n')); // never ends its headers
    const ends = (s: net.Socket) => new Promise<void>((resolve) => s.on('close', () => resolve()));
    silent.on('error', () => {});
    partial.on('error', () => {});
    await Promise.all([ends(silent), ends(partial)]);
    expect(notices.filter((n) => /no websocket handshake within 200 ms/.test(n))).toHaveLength(2);
    // the server goes on serving
    const client = await PolicyClient.connect(url);
    await client.reset('pick up the block', 0);
    client.close();
  });

  it('a connection that handshakes is not dropped by the handshake timeout', async () => {
    const url = await serve({ handshakeTimeoutMs: 100 });
    const c = await open(url);
    await c.received(1);
    // longer than the handshake timeout: the reset is still answered on the same connection
    await new Promise((r) => setTimeout(r, 300));
    c.ws.send(encode({ type: 'reset', instruction: 'x', seed: 0 }));
    expect((await c.received(2))[1]).toEqual({ type: 'reset', ok: true });
    c.ws.close();
  });

  it('a message over the size limit closes that connection with 1009; others go on', async () => {
    const url = await serve({ maxMessageBytes: 4096 });
    const c = await open(url);
    await c.received(1);
    c.ws.send(encode({ type: 'infer', observation: { image_0: new Uint8Array(10_000) } }));
    expect((await c.closed).code).toBe(1009);
    expect(notices.some((n) => /a message of more than 4096 bytes/.test(n))).toBe(true);
    // through the client, the error names the close code
    const client = await PolicyClient.connect(url);
    await expect(client.infer({ image_0: new Uint8Array(10_000) }, 'x')).rejects.toThrow(/closed the connection \(1009: a message larger than the server takes\)/);
    // a message within the limit is answered
    const ok = await PolicyClient.connect(url);
    const r = await ok.infer({ image_0: PNG, state: [0, 0, 0, 1] }, 'pick');
    expect(r.actions).toEqual([[0.01, 0, 0, 1]]);
    ok.close();
  });

  it('more requests in flight than the queue holds closes the connection with 1008', async () => {
    let release!: () => void;
    FakePolicy.gate = new Promise((r) => (release = r));
    const c = await open(await serve({ maxQueue: 2 }));
    await c.received(1);
    for (let i = 0; i < 3; i++) c.ws.send(encode({ type: 'reset', instruction: 'x', seed: i }));
    const closed = await c.closed;
    expect(closed).toEqual({ code: 1008, reason: 'more than 2 requests in flight; wait for the answers' });
    release();
  });

  it('an idle connection is closed with 1001 after the idle timeout; a busy one is not', async () => {
    let release!: () => void;
    FakePolicy.gate = new Promise((r) => (release = r));
    const url = await serve({ idleTimeoutMs: 150 });
    const busy = await open(url);
    await busy.received(1);
    busy.ws.send(encode({ type: 'reset', instruction: 'x', seed: 0 })); // held until release
    const idle = await open(url);
    expect(await idle.closed).toEqual({ code: 1001, reason: 'idle for 150 ms' });
    // the busy connection outlived the idle one: its request is still answered
    release();
    expect((await busy.received(2))[1]).toEqual({ type: 'reset', ok: true });
    expect(await busy.closed).toEqual({ code: 1001, reason: 'idle for 150 ms' });
  });
});
