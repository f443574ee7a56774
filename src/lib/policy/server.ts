/**
 * `vlakit rollout serve`: a policy behind a websocket, so an external simulator or robot loop can query it.
 * Every message is one msgpack map with a `type`:
 * - server -> client, on connect: `{type: "metadata", ...}` (model, engine, device, mode, cameras, image size,
 *   action representation, protocol version);
 * - client -> server: `{type: "reset", instruction, seed}` -> `{type: "reset", ok: true}`;
 * - client -> server: `{type: "infer", observation: {<camera>: PNG/JPEG bytes or {mime, b64}, state: [...]},
 *   instruction, step?, info?}` -> `{type: "actions", actions: [[dx, dy, dz, gripper], ...], done, info,
 *   timing: {model_ms, server_ms}}` (`done`: the plan is finished, no actions);
 * - anything that fails -> `{type: "error", message}` (the connection stays open), a nil or malformed request too.
 * Each connection has its own policy state (its own episode); the model is shared. Limits per connection: the
 * handshake and idleness are timed, and a message larger than the limit (close 1009) or more requests in flight
 * than the queue holds (close 1008) end the connection.
 */
import { createServer } from 'node:http';
import type { Socket } from 'node:net';
import { decode, encode } from '@msgpack/msgpack';
import { WebSocket, WebSocketServer } from 'ws';
import { z } from 'zod';
import type { ActContext } from '../env/rollout.js';
import { VlakitError } from '../errors.js';
import { sniffImageMime } from '../io/images.js';
import { isImageJson } from '../io/json.js';
import { zodProblem } from '../io/json-file.js';
import { ReplyQueue } from '../util/reply-queue.js';
import { ChunkPolicy, type Cycle } from './model-policy.js';
import { OPENPI_ERROR_REASON, type ObsMapEntry, OpenpiSession, plainMetadata } from './openpi.js';
import { packb } from '../io/msgpack-numpy.js';

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
  /** Connections closed by the server (timeouts, limits), for the log. */
  onNotice?: (message: string) => void;
  /** A TCP connection must finish the websocket handshake within this time, or it is dropped (default 10 s). */
  handshakeTimeoutMs?: number;
  /** A connection that sends nothing for this long while nothing of it is in progress is closed, 1001 (default 300 s; 0: never). */
  idleTimeoutMs?: number;
  /** The largest message a client may send; a larger one closes the connection, 1009 (default 64 MiB). */
  maxMessageBytes?: number;
  /** Requests of one connection queued or in progress; one more closes the connection, 1008 (default 4). */
  maxQueue?: number;
  /** vlakit's protocol (default) or openpi's (src/lib/policy/openpi.ts). */
  protocol?: 'vlakit' | 'openpi';
  /** openpi: the key map of observations, and the instruction when a request has none. */
  openpi?: { obsMap: readonly ObsMapEntry[]; defaultPrompt?: string; actionDim?: number };
  /** Clients must send `Authorization: Api-Key KEY` (as openpi's client does); others get HTTP 401. */
  apiKey?: string;
}

export interface PolicyServer {
  port: number;
  close(): Promise<void>;
}

/** Close codes of the server (RFC 6455): idle, a policy limit broken, a message too big. */
export const CLOSE = { idle: 1001, policy: 1008, tooBig: 1009 } as const;

const nullish = <T extends z.ZodType>(t: T) => t.nullish().transform((v) => v ?? undefined);
const ResetRequest = z.object({ type: z.literal('reset'), instruction: nullish(z.string()), seed: nullish(z.number().int()) });
const InferRequest = z.object({
  type: z.literal('infer'),
  observation: z.record(z.string(), z.unknown()),
  instruction: nullish(z.string()),
  step: nullish(z.number().int().min(0)),
  info: nullish(z.record(z.string(), z.unknown())),
});

/** A decoded message as a request, or an error that says what is wrong with it. */
export function parseRequest(m: unknown): z.output<typeof ResetRequest> | z.output<typeof InferRequest> {
  if (m === null || typeof m !== 'object' || Array.isArray(m) || m instanceof Uint8Array) {
    const got = m === null || m === undefined ? 'nil' : Array.isArray(m) ? 'an array' : m instanceof Uint8Array ? 'bytes' : `a ${typeof m}`;
    throw new VlakitError('E_USAGE', `a request is a msgpack map with a type (reset or infer), got ${got}`);
  }
  const type = (m as { type?: unknown }).type;
  const schema = type === 'reset' ? ResetRequest : type === 'infer' ? InferRequest : undefined;
  if (!schema) throw new VlakitError('E_USAGE', `unknown message type "${String(type)}"; expected reset or infer`);
  const r = schema.safeParse(m);
  if (!r.success) {
    const p = zodProblem(r.error);
    throw new VlakitError('E_USAGE', `invalid "${type}" request${p.field ? `: field ${p.field}` : ''}: ${p.message}`);
  }
  return r.data;
}

/**
 * Serves policies until closed. Each connection is bounded: the handshake and idleness have time limits, and a
 * connection holds at most `maxQueue` requests of at most `maxMessageBytes` each.
 * @example const s = await servePolicy({ port: 8765, makePolicy: () => new ModelPolicy(runner, opts), metadata: {} })
 */
export async function servePolicy(o: ServeOptions): Promise<PolicyServer> {
  const handshakeMs = o.handshakeTimeoutMs ?? 10_000;
  const idleMs = o.idleTimeoutMs ?? 300_000;
  const maxQueue = o.maxQueue ?? 4;
  const maxMessage = o.maxMessageBytes ?? 64 * 2 ** 20;
  const http = createServer((req, res) => {
    if (req.url === '/healthz') {
      // openpi's health check
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('OK\n');
      return;
    }
    res.writeHead(426, { 'content-type': 'text/plain' });
    res.end('vlakit rollout serve speaks websocket (msgpack)\n');
  });
  const openpi = o.protocol === 'openpi' ? (o.openpi ?? (() => { throw new VlakitError('E_USAGE', 'the openpi protocol needs a key map (openpi.obsMap)'); })()) : undefined;
  const wss = new WebSocketServer({
    server: http,
    maxPayload: maxMessage,
    perMessageDeflate: false,
    verifyClient: o.apiKey === undefined ? undefined : (info, done) => (info.req.headers.authorization === `Api-Key ${o.apiKey}` ? done(true) : done(false, 401, 'Unauthorized: send Authorization: Api-Key KEY')),
  });
  // raw TCP connections that have not finished the websocket handshake, each with its deadline
  const handshakes = new Map<Socket, NodeJS.Timeout>();
  http.on('connection', (socket: Socket) => {
    const t = setTimeout(() => {
      handshakes.delete(socket);
      o.onNotice?.(`dropped a connection from ${socket.remoteAddress}: no websocket handshake within ${handshakeMs} ms`);
      socket.destroy();
    }, handshakeMs);
    handshakes.set(socket, t);
    socket.once('close', () => {
      clearTimeout(t);
      handshakes.delete(socket);
    });
  });
  await new Promise<void>((resolve, reject) => {
    http.once('listening', resolve);
    http.once('error', (err) => reject(new VlakitError('E_USAGE', `cannot listen on port ${o.port}: ${err.message}`)));
    http.listen(o.port, o.host ?? '127.0.0.1');
  });
  http.on('error', () => {}); // errors after listening belong to connections, handled below
  wss.on('error', () => {});
  wss.on('connection', (ws, req) => {
    const socket = req.socket;
    clearTimeout(handshakes.get(socket));
    handshakes.delete(socket);
    const who = socket.remoteAddress;
    let failTimer: NodeJS.Timeout | undefined;
    ws.on('error', (err: Error & { code?: string }) => {
      // ws has sent the close frame (1009 for a message over maxPayload, 1002 for a malformed frame): give the
      // peer a moment to read it, then end the connection, not the server
      if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') o.onNotice?.(`closed a connection from ${who}: a message of more than ${maxMessage} bytes`);
      failTimer ??= setTimeout(() => ws.terminate(), 1000);
    });
    const policy = o.makePolicy();
    let chain = Promise.resolve();
    let pending = 0;
    let idle: NodeJS.Timeout | undefined;
    const armIdle = () => {
      clearTimeout(idle);
      if (idleMs > 0 && pending === 0) {
        idle = setTimeout(() => {
          o.onNotice?.(`closed an idle connection from ${who} (nothing for ${idleMs} ms)`);
          ws.close(CLOSE.idle, `idle for ${idleMs} ms`);
        }, idleMs);
      }
    };
    ws.on('close', () => {
      clearTimeout(idle);
      clearTimeout(failTimer);
    });
    const send = (m: Record<string, unknown>) => ws.readyState === WebSocket.OPEN && ws.send(encode(m, { ignoreUndefined: true }));
    const session = openpi ? new OpenpiSession(policy, openpi) : undefined;
    if (session) ws.send(packb(plainMetadata(o.metadata)));
    else send({ type: 'metadata', protocol: PROTOCOL, ...o.metadata });
    armIdle();
    ws.on('message', (data: Buffer) => {
      if (ws.readyState !== WebSocket.OPEN) return;
      if (pending >= maxQueue) {
        o.onNotice?.(`closed a connection from ${who}: more than ${maxQueue} requests in flight`);
        ws.close(CLOSE.policy, `more than ${maxQueue} requests in flight; wait for the answers`);
        return;
      }
      pending += 1;
      clearTimeout(idle);
      chain = chain.then(async () => {
        const t0 = performance.now();
        let type = 'invalid';
        try {
          if (ws.readyState !== WebSocket.OPEN) return; // the connection is gone: its queued work is dropped
          if (session) {
            type = 'infer';
            const reply = await session.handle(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
            if (ws.readyState === WebSocket.OPEN) ws.send(reply);
            session.finished(performance.now() - t0);
            o.onRequest?.({ type, ms: performance.now() - t0 });
            return;
          }
          let decoded: unknown;
          try {
            decoded = decode(data);
          } catch (err) {
            throw new VlakitError('E_USAGE', `a request is one msgpack map; this message is not msgpack (${(err as Error).message})`);
          }
          const m = parseRequest(decoded);
          type = m.type;
          if (m.type === 'reset') {
            await policy.reset({ instruction: m.instruction ?? '', seed: m.seed ?? 0 });
            send({ type: 'reset', ok: true });
          } else {
            const obs = normalizeObservation(m.observation);
            if (!Object.values(obs).some(isImageJson)) throw new VlakitError('E_USAGE', 'the observation holds no camera image (bytes or {mime, b64})');
            const c = await policy.cycle(obs, { instruction: m.instruction ?? '', step: m.step ?? 0, info: m.info });
            send({ type: 'actions', actions: c?.actions ?? [], done: c === null, info: c?.info ?? {}, timing: { model_ms: c?.modelMs ?? 0, server_ms: performance.now() - t0 } });
          }
        } catch (err) {
          if (session) {
            type = 'failed infer';
            // as openpi's server: the error as a text frame, then close 1011
            if (ws.readyState === WebSocket.OPEN) {
              ws.send((err as Error).message);
              ws.close(1011, OPENPI_ERROR_REASON);
            }
            o.onNotice?.(`closed a connection from ${who} after an error: ${(err as Error).message}`);
          } else send({ type: 'error', message: (err as Error).message });
        } finally {
          pending -= 1;
          if (ws.readyState === WebSocket.OPEN) armIdle();
        }
        o.onRequest?.({ type, ms: performance.now() - t0 });
      });
    });
  });
  const addr = http.address();
  return {
    port: typeof addr === 'object' && addr ? addr.port : o.port,
    close: () => new Promise<void>((resolve) => {
      for (const c of wss.clients) c.terminate();
      for (const [socket, t] of handshakes) {
        clearTimeout(t);
        socket.destroy();
      }
      wss.close(() => http.close(() => resolve()));
    }),
  };
}

/** A client of `vlakit rollout serve`: requests are queued and answered in order, each within a time limit. */
export class PolicyClient {
  metadata: Record<string, unknown> = {};
  private readonly replies: ReplyQueue<Record<string, unknown>>;

  private constructor(
    private readonly ws: WebSocket,
    readonly url: string,
    timeoutMs: number,
  ) {
    this.replies = new ReplyQueue({
      timeout: { ms: timeoutMs, error: () => new VlakitError('E_IO', `no answer from the policy server at ${url} within ${timeoutMs} ms`), after: () => ws.terminate() },
    });
  }

  get failed(): boolean {
    return this.replies.failure !== undefined;
  }

  /**
   * Connects and reads the server's metadata.
   * @example const c = await PolicyClient.connect('ws://localhost:8765'); const r = await c.infer(obs, 'put the carrot on the plate')
   */
  static async connect(url: string, timeoutMs = 60_000, apiKey?: string): Promise<PolicyClient> {
    const ws = new WebSocket(url, { headers: apiKey ? { Authorization: `Api-Key ${apiKey}` } : undefined });
    const c = new PolicyClient(ws, url, timeoutMs);
    ws.on('message', (data: Buffer) => {
      let m: Record<string, unknown>;
      try {
        m = decode(data) as Record<string, unknown>;
      } catch (err) {
        c.replies.fail(new VlakitError('E_IO', `the policy server at ${url} sent a message that is not msgpack (${(err as Error).message})`));
        ws.terminate();
        return;
      }
      // a reply when nothing was asked is ignored
      if (m.type === 'error') c.replies.reject(new VlakitError('E_IO', `the policy server: ${String(m.message)}`));
      else c.replies.resolve(m);
    });
    ws.on('close', (code: number, reason: Buffer) => {
      const why = code === 1005 ? '' : ` (${code}${reason.length ? `: ${reason.toString()}` : code === CLOSE.tooBig ? ': a message larger than the server takes' : ''})`;
      c.replies.fail(new VlakitError('E_IO', `the policy server at ${url} closed the connection${why}`));
    });
    ws.on('error', (err) => c.replies.fail(new VlakitError('E_IO', `cannot talk to the policy server at ${url}: ${err.message}`)));
    ws.on('unexpected-response', (_req, res) => {
      c.replies.fail(new VlakitError('E_IO', `the policy server at ${url} refused the connection: HTTP ${res.statusCode}${res.statusCode === 401 ? ' (a wrong or missing --api-key?)' : ''}`));
      ws.terminate();
    });
    let meta: Record<string, unknown>;
    try {
      meta = await c.replies.wait();
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

  private request(m: Record<string, unknown>): Promise<Record<string, unknown>> {
    if (this.replies.failure) return Promise.reject(this.replies.failure);
    const answer = this.replies.wait(); // the next message, within the time limit
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
    this.replies.fail(new VlakitError('E_IO', 'the client was closed'));
    this.ws.close();
  }
}

/** A policy served elsewhere (`rollout --policy ws://host:port`): one infer per control cycle. */
export class RemotePolicy extends ChunkPolicy {
  readonly name: string;
  private client: PolicyClient | undefined;

  constructor(
    readonly url: string,
    private readonly apiKey?: string,
  ) {
    super();
    this.name = `remote:${url}`;
  }

  async reset(ctx: { instruction: string; seed: number }): Promise<void> {
    super.reset(ctx);
    if (!this.client || this.client.failed) this.client = await PolicyClient.connect(this.url, undefined, this.apiKey); // (re)connect
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
