/**
 * Env transports: a child process speaking JSON lines on stdin/stdout (`exec:"python my_sim.py"`), a websocket
 * client (`ws://host:port`) for a robot, and the matching servers that put any Env behind either. One JSON
 * message per line / frame, one request at a time (docs/ENV.md):
 *   {"op":"reset","seed":1,"task":{"family":"place"}} -> {"observation":{...},"instruction":"...","info":{...}}
 *   {"op":"step","action":[dx,dy,dz,g]}               -> {"observation":{...},"reward":0,"done":false,"info":{...}}
 *   {"op":"close"}                                    -> {"ok":true}
 * A failure is answered {"error":"..."}.
 */
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import WebSocket, { WebSocketServer } from 'ws';
import type { z } from 'zod';
import { VlakitError } from '../errors.js';
import { zodProblem } from '../io/json-file.js';
import { describeValue } from '../io/records.js';
import { JsonLinesProcess } from '../util/child.js';
import { type Env, EnvRequestSchema, type Observation, ResetAnswerSchema, StepAnswerSchema, type StepResult, type TaskRequest } from './protocol.js';

type Message = Record<string, unknown>;

/** Validates a protocol message; the error names the env, the field and what was expected. */
function checkMessage<S extends z.ZodType>(schema: S, m: unknown, what: string, where: string): z.output<S> {
  const r = schema.safeParse(m, { error: (iss) => (iss.code === 'invalid_type' && iss.input === undefined ? `missing (expected ${iss.expected})` : undefined) });
  if (r.success) return r.data;
  const p = zodProblem(r.error);
  throw new VlakitError('E_ENV', `invalid ${what}: ${p.message}`, { file: where, field: p.field });
}

function checkObservation(m: Message, where: string): Observation {
  const a = checkMessage(ResetAnswerSchema, m, 'reset answer', where);
  return { observation: a.observation, instruction: a.instruction ?? '', info: a.info ?? {} };
}

function checkStep(m: Message, where: string): StepResult {
  const a = checkMessage(StepAnswerSchema, m, 'step answer', where);
  return { observation: a.observation, reward: a.reward ?? 0, done: a.done, info: a.info ?? {} };
}

/** Common request/answer logic over some message channel. */
abstract class RemoteEnv implements Env {
  abstract readonly name: string;
  protected abstract request(msg: Message, timeoutMs?: number): Promise<Message>;

  async reset(seed: number, task?: TaskRequest): Promise<Observation> {
    return checkObservation(await this.request({ op: 'reset', seed, task: task ?? {} }), this.name);
  }

  async step(action: number[]): Promise<StepResult> {
    return checkStep(await this.request({ op: 'step', action }), this.name);
  }

  abstract close(): Promise<void>;

  protected answer(text: string): Message {
    let m: unknown;
    try {
      m = JSON.parse(text);
    } catch (err) {
      throw new VlakitError('E_ENV', `the env answered something that is not JSON: ${text.slice(0, 120)}`, { file: this.name }, { cause: err });
    }
    if (typeof m !== 'object' || m === null || Array.isArray(m)) throw new VlakitError('E_ENV', `the env answered ${text.slice(0, 80)}; expected a JSON object`, { file: this.name });
    if (typeof (m as Message).error === 'string') throw new VlakitError('E_ENV', `the env reported: ${(m as Message).error as string}`, { file: this.name });
    return m as Message;
  }
}

/** An env in a child process, started with a shell command, speaking JSON lines. */
export class ExecEnv extends RemoteEnv {
  readonly name: string;
  private readonly child: JsonLinesProcess;

  constructor(
    command: string,
    private readonly timeoutMs = 60_000,
  ) {
    super();
    this.name = `exec:${command}`;
    this.child = new JsonLinesProcess(command);
  }

  protected async request(msg: Message, timeoutMs = this.timeoutMs): Promise<Message> {
    if (this.child.exited) throw this.gone();
    const line = await this.child.request(JSON.stringify(msg), timeoutMs, () => new VlakitError('E_ENV', `no answer to "${String(msg.op)}" within ${timeoutMs} ms`, { file: this.name }));
    if (line === undefined) throw this.gone();
    return this.answer(line);
  }

  private gone(): VlakitError {
    const tail = this.child.stderrTail();
    return new VlakitError('E_ENV', `the env process ended (${this.child.exited ?? 'closed its output'})${tail ? `; its last stderr: ${tail}` : ''}`, { file: this.name });
  }

  async close(): Promise<void> {
    if (!this.child.exited) {
      try {
        await this.request({ op: 'close' }, 2000);
      } catch {
        // it may close without answering
      }
    }
    await this.child.close();
  }
}

/** An env behind a websocket server (a robot, a remote simulator). */
export class WsEnv extends RemoteEnv {
  readonly name: string;
  private constructor(
    private readonly ws: WebSocket,
    url: string,
    private readonly timeoutMs: number,
  ) {
    super();
    this.name = url;
  }

  static async connect(url: string, timeoutMs = 60_000): Promise<WsEnv> {
    const ws = new WebSocket(url);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', (err) => reject(new VlakitError('E_ENV', `cannot connect (${err.message})`, { file: url }, { cause: err })));
    });
    return new WsEnv(ws, url, timeoutMs);
  }

  protected request(msg: Message, timeoutMs = this.timeoutMs): Promise<Message> {
    return new Promise((resolve, reject) => {
      const done = (fn: () => void): void => {
        clearTimeout(timer);
        this.ws.off('message', onMessage);
        this.ws.off('close', onClose);
        fn();
      };
      const onMessage = (data: WebSocket.RawData): void =>
        done(() => {
          try {
            resolve(this.answer(data.toString()));
          } catch (err) {
            reject(err);
          }
        });
      const onClose = (): void => done(() => reject(new VlakitError('E_ENV', 'the connection closed', { file: this.name })));
      const timer = setTimeout(() => done(() => reject(new VlakitError('E_ENV', `no answer to "${String(msg.op)}" within ${timeoutMs} ms`, { file: this.name }))), timeoutMs);
      this.ws.on('message', onMessage);
      this.ws.once('close', onClose);
      this.ws.send(JSON.stringify(msg));
    });
  }

  async close(): Promise<void> {
    if (this.ws.readyState === WebSocket.OPEN) {
      try {
        await this.request({ op: 'close' }, 2000);
      } catch {
        // closing anyway
      }
      this.ws.close();
    }
  }
}

/** Answers one protocol message with `env`; a message that is not JSON or not a valid request is answered {"error"}. */
export async function handleMessage(env: Env, text: string): Promise<Message> {
  try {
    let m: unknown;
    try {
      m = JSON.parse(text);
    } catch {
      return { error: `not JSON: ${describeValue(text)}` };
    }
    const req = checkMessage(EnvRequestSchema, m, 'request', env.name);
    switch (req.op) {
      case 'reset':
        return { ...(await env.reset(req.seed ?? 0, req.task ?? {})) };
      case 'step':
        return { ...(await env.step(req.action)) };
      case 'close':
        return { ok: true };
    }
  } catch (err) {
    return { error: (err as Error).message };
  }
}

/** Whether a protocol message asks to close (anything unreadable does not). */
function isClose(text: string): boolean {
  try {
    return (JSON.parse(text) as Message | null)?.op === 'close';
  } catch {
    return false;
  }
}

/** Serves `env` over JSON lines on the given streams (stdin/stdout for `exec:`), until "close" or end of input. */
export async function serveLines(env: Env, input: Readable, output: Writable): Promise<void> {
  for await (const line of createInterface({ input, crlfDelay: Infinity })) {
    if (!line.trim()) continue;
    const answer = await handleMessage(env, line);
    output.write(`${JSON.stringify(answer)}\n`);
    if (isClose(line)) break;
  }
  await env.close();
}

/** Serves `env` to websocket clients, one at a time. Resolves with the server once it listens. */
export async function serveWebsocket(env: Env, opts: { port: number; host?: string }): Promise<WebSocketServer> {
  const wss = new WebSocketServer({ port: opts.port, host: opts.host ?? '127.0.0.1' });
  let queue = Promise.resolve();
  wss.on('connection', (ws) => {
    ws.on('message', (data) => {
      queue = queue.then(async () => ws.send(JSON.stringify(await handleMessage(env, data.toString()))));
    });
  });
  await new Promise<void>((resolve, reject) => {
    wss.once('listening', () => resolve());
    wss.once('error', reject);
  });
  return wss;
}

/** Opens the env named by `--env`: builtin:tabletop, exec:COMMAND or ws://host:port. */
export async function openEnv(spec: string, builtin: () => Promise<Env>): Promise<Env> {
  if (spec === 'builtin:tabletop' || spec === 'builtin') return builtin();
  if (spec.startsWith('exec:')) {
    const cmd = spec.slice(5).trim();
    if (!cmd) throw new VlakitError('E_USAGE', 'exec: needs a command, e.g. --env exec:"python my_sim.py"');
    return new ExecEnv(cmd);
  }
  if (spec.startsWith('ws://') || spec.startsWith('wss://')) return WsEnv.connect(spec);
  throw new VlakitError('E_USAGE', `unknown env "${spec}"; expected builtin:tabletop, exec:COMMAND or ws://host:port`);
}
