/**
 * `vlakit rollout serve`: a policy behind a websocket, so an external simulator or robot loop can query it.
 * Every message is one msgpack map with a `type`:
 * - server -> client, on connect: `{type: "metadata", ...}` (model, engine, device, mode, cameras, image size,
 *   action representation, protocol version);
 * - client -> server: `{type: "reset", instruction, seed}` -> `{type: "reset", ok: true}`;
 * - client -> server: `{type: "infer", observation: {<camera>: PNG/JPEG bytes or {mime, b64}, state: [...]},
 *   instruction, step?, info?}` -> `{type: "actions", actions: [[dx, dy, dz, gripper], ...], done, info,
 *   timing: {model_ms, server_ms}}` (`done`: the plan is finished, no actions);
 * - anything that fails -> `{type: "error", message}` (the connection stays open).
 * Each connection has its own policy state (its own episode); the model is shared.
 */
import { decode, encode } from '@msgpack/msgpack';
import { WebSocket, WebSocketServer } from 'ws';
import type { ActContext } from '../env/rollout.js';
import { VlakitError } from '../errors.js';
import { sniffImageMime } from '../io/images.js';
import { isImageJson } from '../io/json.js';
import { ChunkPolicy, type Cycle } from './model-policy.js';

export const PROTOCOL = 'vlakit-policy/1';

/** Camera images may arrive as raw bytes; the policy reads {mime, b64}. */
function normalizeObservation(obs: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obs)) {
    if (v instanceof Uint8Array) out[k] = { mime: sniffImageMime(v) ?? 'image/png', b64: Buffer.from(v).toString('base64') };
    else out[k] = v;
  }
  return out;
}

export interface ServeOptions {
  port: number;
  host?: string;
  /** A fresh policy per connection. */
  makePolicy: () => ChunkPolicy;
  metadata: Record<string, unknown>;
  onRequest?: (r: { type: string; ms: number }) => void;
}

export interface PolicyServer {
  port: number;
  close(): Promise<void>;
}

/**
 * Serves policies until closed.
 * @example const s = await servePolicy({ port: 8765, makePolicy: () => new ModelPolicy(runner, opts), metadata: {} })
 */
export async function servePolicy(o: ServeOptions): Promise<PolicyServer> {
  const wss = new WebSocketServer({ port: o.port, host: o.host ?? '127.0.0.1' });
  await new Promise<void>((resolve, reject) => {
    wss.once('listening', resolve);
    wss.once('error', (err) => reject(new VlakitError('E_USAGE', `cannot listen on port ${o.port}: ${err.message}`)));
  });
  wss.on('error', () => {}); // errors after listening belong to connections, handled below
  wss.on('connection', (ws) => {
    ws.on('error', () => ws.terminate()); // a malformed frame ends that connection, not the server
    const policy = o.makePolicy();
    let chain = Promise.resolve();
    const send = (m: Record<string, unknown>) => ws.readyState === WebSocket.OPEN && ws.send(encode(m, { ignoreUndefined: true }));
    send({ type: 'metadata', protocol: PROTOCOL, ...o.metadata });
    ws.on('message', (data: Buffer) => {
      chain = chain.then(async () => {
        const t0 = performance.now();
        let type = 'unknown';
        try {
          const m = decode(data) as { type?: string; instruction?: string; seed?: number; observation?: Record<string, unknown>; step?: number; info?: Record<string, unknown> };
          type = m.type ?? 'unknown';
          if (m.type === 'reset') {
            await policy.reset({ instruction: m.instruction ?? '', seed: m.seed ?? 0 });
            send({ type: 'reset', ok: true });
          } else if (m.type === 'infer') {
            if (!m.observation || typeof m.observation !== 'object') throw new Error('"infer" needs an observation map');
            const obs = normalizeObservation(m.observation);
            if (!Object.values(obs).some(isImageJson)) throw new Error('the observation holds no camera image (bytes or {mime, b64})');
            const c = await policy.cycle(obs, { instruction: m.instruction ?? '', step: m.step ?? 0, info: m.info });
            send({ type: 'actions', actions: c?.actions ?? [], done: c === null, info: c?.info ?? {}, timing: { model_ms: c?.modelMs ?? 0, server_ms: performance.now() - t0 } });
          } else throw new Error(`unknown message type "${String(m.type)}"; expected reset or infer`);
        } catch (err) {
          send({ type: 'error', message: (err as Error).message });
        }
        o.onRequest?.({ type, ms: performance.now() - t0 });
      });
    });
  });
  const addr = wss.address();
  return {
    port: typeof addr === 'object' && addr ? addr.port : o.port,
    close: () => new Promise<void>((resolve) => {
      for (const c of wss.clients) c.terminate();
      wss.close(() => resolve());
    }),
  };
}

/** A client of `vlakit rollout serve`: requests are queued and answered in order, each within a time limit. */
export class PolicyClient {
  metadata: Record<string, unknown> = {};
  private readonly pending: { resolve: (m: Record<string, unknown>) => void; reject: (e: Error) => void; timer?: NodeJS.Timeout }[] = [];
  private failure: Error | undefined;

  private constructor(
    private readonly ws: WebSocket,
    readonly url: string,
    private readonly timeoutMs: number,
  ) {}

  get failed(): boolean {
    return this.failure !== undefined;
  }

  private fail(err: Error): void {
    this.failure ??= err;
    for (const p of this.pending.splice(0)) {
      clearTimeout(p.timer);
      p.reject(this.failure);
    }
  }

  /**
   * Connects and reads the server's metadata.
   * @example const c = await PolicyClient.connect('ws://localhost:8765'); const r = await c.infer(obs, 'put the carrot on the plate')
   */
  static async connect(url: string, timeoutMs = 60_000): Promise<PolicyClient> {
    const ws = new WebSocket(url);
    const c = new PolicyClient(ws, url, timeoutMs);
    ws.on('message', (data: Buffer) => {
      let m: Record<string, unknown>;
      try {
        m = decode(data) as Record<string, unknown>;
      } catch (err) {
        c.fail(new VlakitError('E_IO', `the policy server at ${url} sent a message that is not msgpack (${(err as Error).message})`));
        ws.terminate();
        return;
      }
      const p = c.pending.shift();
      if (!p) return; // nothing asked: ignore
      clearTimeout(p.timer);
      if (m.type === 'error') p.reject(new VlakitError('E_IO', `the policy server: ${String(m.message)}`));
      else p.resolve(m);
    });
    ws.on('close', () => c.fail(new VlakitError('E_IO', `the policy server at ${url} closed the connection`)));
    ws.on('error', (err) => c.fail(new VlakitError('E_IO', `cannot talk to the policy server at ${url}: ${err.message}`)));
    let meta: Record<string, unknown>;
    try {
      meta = await c.next();
    } catch (err) {
      ws.terminate();
      throw err;
    }
    if (meta.type !== 'metadata') {
      ws.terminate();
      throw new VlakitError('E_IO', `the server at ${url} did not start with metadata (got ${String(meta.type)}); is it vlakit rollout serve?`);
    }
    c.metadata = meta;
    return c;
  }

  /** The next message, within the time limit. */
  private next(): Promise<Record<string, unknown>> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const entry: (typeof this.pending)[number] = { resolve, reject };
      entry.timer = setTimeout(() => {
        this.fail(new VlakitError('E_IO', `no answer from the policy server at ${this.url} within ${this.timeoutMs} ms`));
        this.ws.terminate();
      }, this.timeoutMs);
      this.pending.push(entry);
    });
  }

  private request(m: Record<string, unknown>): Promise<Record<string, unknown>> {
    if (this.failure) return Promise.reject(this.failure);
    const answer = this.next();
    this.ws.send(encode(m, { ignoreUndefined: true }));
    return answer;
  }

  async reset(instruction: string, seed = 0): Promise<void> {
    await this.request({ type: 'reset', instruction, seed });
  }

  async infer(observation: Record<string, unknown>, instruction: string, extra: { step?: number; info?: Record<string, unknown> } = {}): Promise<{ actions: number[][]; done: boolean; info: Record<string, unknown>; timing: { model_ms: number; server_ms: number } }> {
    const r = await this.request({ type: 'infer', observation, instruction, ...extra });
    return r as never;
  }

  close(): void {
    this.fail(new VlakitError('E_IO', 'the client was closed'));
    this.ws.close();
  }
}

/** A policy served elsewhere (`rollout --policy ws://host:port`): one infer per control cycle. */
export class RemotePolicy extends ChunkPolicy {
  readonly name: string;
  private client: PolicyClient | undefined;

  constructor(readonly url: string) {
    super();
    this.name = `remote:${url}`;
  }

  async reset(ctx: { instruction: string; seed: number }): Promise<void> {
    super.reset(ctx);
    if (!this.client || this.client.failed) this.client = await PolicyClient.connect(this.url); // (re)connect
    await this.client.reset(ctx.instruction, ctx.seed);
  }

  async cycle(obs: Record<string, unknown>, ctx: ActContext): Promise<Cycle | null> {
    const t0 = performance.now();
    const r = await this.client!.infer(obs, ctx.instruction, { step: ctx.step, info: ctx.info as Record<string, unknown> | undefined });
    const rtt = performance.now() - t0;
    if (r.done) return null;
    if (!Array.isArray(r.actions) || !r.actions.length) throw new VlakitError('E_IO', `the policy server at ${this.url} answered with no actions and not done`);
    // the model's time as the server measured it; the rest of the round trip (network, msgpack) is the toolkit's
    return { actions: r.actions, info: { ...r.info, server_ms: r.timing.server_ms, round_trip_ms: Math.round(rtt * 100) / 100 }, modelMs: r.timing.model_ms };
  }

  close(): void {
    this.client?.close();
  }
}
