import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { AddressInfo } from 'node:net';
import { PassThrough } from 'node:stream';
import { ExecEnv, TabletopEnv, WsEnv, handleMessage, openEnv, serveLines, serveWebsocket } from '../../src/lib/env/index.js';

const CHILD = `node --import tsx ${path.resolve('test/env/stdio-env.ts')}`;

describe('env protocol over a real child process (exec:)', () => {
  it('reset and step round-trip and match the same env in-process', async () => {
    const remote = await openEnv(`exec:${CHILD}`, () => Promise.reject(new Error('not builtin')));
    expect(remote).toBeInstanceOf(ExecEnv);
    const local = new TabletopEnv({ width: 32, height: 32 });
    const a = await remote.reset(21, { family: 'pick' });
    const b = await local.reset(21, { family: 'pick' });
    expect(a.instruction).toBe(b.instruction);
    expect(a.observation).toEqual(b.observation);
    for (let i = 0; i < 3; i++) {
      const ra = await remote.step([0.01, 0, -0.01, 1]);
      const rb = await local.step([0.01, 0, -0.01, 1]);
      expect(ra.observation).toEqual(rb.observation);
      expect(ra.done).toBe(rb.done);
    }
    // a bad action is answered with an error that names it, and the env stays usable
    await expect(remote.step([1, 2])).rejects.toThrow(/E_ENV .*the env reported: E_USAGE: action must be 4 or 7 finite numbers/);
    expect((await remote.step([0, 0, 0, 1])).observation.state).toBeDefined();
    await remote.close();
    await local.close();
  });

  it('a child that dies is reported with its stderr', async () => {
    const env = new ExecEnv(`node -e "process.stderr.write('simulator crashed: no GPU'); process.exit(4)"`);
    await expect(env.reset(0)).rejects.toThrow(/E_ENV .*the env process ended .*simulator crashed: no GPU/);
    await env.close();
  });

  it('a child that answers garbage is reported', async () => {
    const env = new ExecEnv(`node -e "process.stdin.once('data', () => console.log('hello'))"`);
    await expect(env.reset(0)).rejects.toThrow(/E_ENV .*not JSON: hello/);
    await env.close();
  });
});

describe('env protocol over a real websocket', () => {
  it('reset and step through a websocket server', async () => {
    const served = new TabletopEnv({ width: 32, height: 32 });
    const wss = await serveWebsocket(served, { port: 0 });
    const port = (wss.address() as AddressInfo).port;
    const env = await openEnv(`ws://127.0.0.1:${port}`, () => Promise.reject(new Error('not builtin')));
    expect(env).toBeInstanceOf(WsEnv);
    const o = await env.reset(4, { family: 'place' });
    expect(o.instruction.length).toBeGreaterThan(5);
    expect(o.observation.image_0).toMatchObject({ mime: 'image/png' });
    const r = await env.step([0, 0, 0.01, 1]);
    expect((r.observation.state as number[])[2]).toBeCloseTo((o.observation.state as number[])[2] + 0.01, 6);
    await env.close();
    await new Promise<void>((res) => wss.close(() => res()));
    await served.close();
  });

  it('an unreachable robot is a clear error', async () => {
    await expect(WsEnv.connect('ws://127.0.0.1:9', 2000)).rejects.toThrow(/E_ENV in ws:\/\/127\.0\.0\.1:9: cannot connect/);
  });
});

/** A child that answers every request with the same JSON line. */
function answering(answer: unknown): ExecEnv {
  return new ExecEnv(`node -e "require('readline').createInterface({input: process.stdin}).on('line', () => console.log(process.argv[1]))" '${JSON.stringify(answer)}'`);
}

describe('env protocol messages are validated (zod), naming the field', () => {
  it('answers: a reset without observation, a step with a "NaN" reward or state, a done that is not a boolean', async () => {
    const cases: [unknown, 'reset' | 'step', string][] = [
      [{ instruction: 'pick' }, 'reset', 'observation'],
      [{ observation: { state: [0, 'NaN', 0, 1] } }, 'reset', 'observation.state.1'],
      [{ observation: {}, reward: 'NaN', done: false }, 'step', 'reward'],
      [{ observation: {}, reward: 0, done: 'no' }, 'step', 'done'],
      [{ observation: {}, reward: 0, done: false, info: [] }, 'step', 'info'],
    ];
    for (const [answer, op, field] of cases) {
      const env = answering(answer);
      try {
        const call = op === 'reset' ? env.reset(0) : env.step([0, 0, 0, 1]);
        await expect(call).rejects.toThrow(new RegExp(`^E_ENV at field "${field.replace(/\./g, '\\.')}" of exec:.*: invalid ${op} answer: `));
      } finally {
        await env.close();
      }
    }
    const ok = answering({ observation: { state: [0, 0, 0, 1] }, done: true });
    expect(await ok.step([0, 0, 0, 1])).toEqual({ observation: { state: [0, 0, 0, 1] }, reward: 0, done: true, info: {} });
    await ok.close();
  });

  it('requests: not JSON, null, an unknown op, a "NaN" action are answered {"error"} naming the field; the server goes on', async () => {
    const env = new TabletopEnv({ width: 16, height: 16 });
    expect((await handleMessage(env, 'hello')).error).toMatch(/^not JSON: "hello"/);
    expect((await handleMessage(env, 'null')).error).toMatch(/^E_ENV .*invalid request: .*expected object/);
    expect((await handleMessage(env, '{"op":"jump"}')).error).toMatch(/field "op" .*unknown op "jump"; expected reset, step or close/);
    expect((await handleMessage(env, '{"op":"reset","seed":"x"}')).error).toMatch(/field "seed"/);
    expect((await handleMessage(env, '{"op":"step","action":[0,"NaN",0,1]}')).error).toMatch(/field "action\.1" .*expected a finite number, got "NaN"/);
    // over JSON lines, a line that is not JSON is answered and the server keeps serving
    const input = new PassThrough();
    const output = new PassThrough();
    const served = serveLines(env, input, output);
    input.end('not json\n{"op":"reset","seed":1}\n{"op":"close"}\n');
    await served;
    const answers = output.read().toString().trim().split('\n').map((l: string) => JSON.parse(l));
    expect(answers).toHaveLength(3);
    expect(answers[0].error).toMatch(/not JSON/);
    expect(answers[1].observation).toBeDefined();
    expect(answers[2]).toEqual({ ok: true });
  });
});
