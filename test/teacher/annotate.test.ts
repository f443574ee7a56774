import { getEventListeners } from 'node:events';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ScriptedPolicy, TabletopEnv, runEpisodes } from '../../src/lib/env/index.js';
import type { StepRecord } from '../../src/lib/io/index.js';
import {
  AnswerCache,
  GeminiTeacher,
  KinematicTeacher,
  OpenAITeacher,
  annotate,
  backoffMs,
  makeTeacher,
  postJson,
  RateLimiter,
  parsePlan,
  parseReasoning,
  scorePlans,
  type UsageStats,
} from '../../src/lib/teacher/index.js';
import { ExecTeacher } from '../../src/lib/teacher/backends.js';
import { collect, tempDir } from '../helpers.js';
import { makeEpisode } from '../rlds-builder.js';
import { type FakeServer, promptSize, startFakeServer } from './fake-server.js';

const dir = tempDir();

async function demos(n: number, opts: { noise?: number; seed?: number; families?: string[]; images?: boolean } = {}): Promise<StepRecord[][]> {
  const env = new TabletopEnv({ width: 24, height: 24, images: opts.images ?? true });
  const eps = await collect(
    runEpisodes({ env, policy: new ScriptedPolicy({ noise: opts.noise ?? 0 }), families: opts.families ?? ['pick', 'place', 'near', 'place_then_lift'], episodes: n, seed: opts.seed ?? 1 }),
  );
  await env.close();
  return eps.map((e) => e.records);
}

async function* from(eps: StepRecord[][]): AsyncGenerator<StepRecord[]> {
  yield* eps;
}

async function run(eps: StepRecord[][], opts: Parameters<typeof annotate>[1]): Promise<{ out: StepRecord[][]; usage: UsageStats }> {
  let usage: UsageStats | undefined;
  const out = await collect(annotate(from(eps), opts, (u) => (usage = u)));
  return { out, usage: usage! };
}

describe('kinematic teacher against the oracle', () => {
  it('segments demonstrations like the world labels them (with teleoperation noise)', async () => {
    const eps = await demos(16, { noise: 0.003, seed: 4, images: false });
    const { out } = await run(eps, { kind: 'plan', teacher: new KinematicTeacher() });
    const score = scorePlans(out)!;
    expect(score.episodes).toBe(16);
    expect(score.precision).toBeGreaterThanOrEqual(0.75);
    expect(score.recall).toBeGreaterThanOrEqual(0.75);
    expect(score.labelAccuracy).toBeGreaterThanOrEqual(0.85);
    // a plan that is off by several steps scores lower: the score can fail
    const shifted = out.map((ep) => ep.map((s, t) => ({ ...s, plan: ep[Math.max(0, t - 4)].plan })));
    expect(scorePlans(shifted)!.precision).toBeLessThan(score.precision);
  });

  it('writes the four reasoning sections, steps and sub-action, and names the instruction objects', async () => {
    const [ep] = await demos(1, { families: ['place'], seed: 2, images: false });
    const { out } = await run([ep], { kind: 'reasoning', teacher: new KinematicTeacher(), stride: 3 });
    const r = out[0].map((s) => s.reasoning as Record<string, unknown>);
    expect(r[0]).toMatchObject({ source_step: 0, teacher: 'kinematic', prompt_version: 'reasoning-v1', error: '' });
    expect(r[4].source_step).toBe(3);
    const words = /(?:put|place|move|transfer) the (.+?) (?:in|on) the (.+?)( please)?$/.exec(ep[0].language_instruction!)!;
    expect(r[0].observation).toContain(words[1]);
    expect(r[0].task_planning).toMatch(/then grasp the/);
    expect((r[0].logical_steps as string[])[0]).toBe(`move to the ${words[1]}`);
    expect(r[0].sub_action).toMatch(/^move /);
  });
});

describe('the kinematic teacher says what it could not know', () => {
  /** Steps of a 7-D dataset as test/rlds-builder.ts makes them ([dx, dy, dz, droll, dpitch, dyaw, gripper]). */
  async function foreign(opts: { instruction?: string; state?: (t: number) => number[]; grip?: (t: number) => number } = {}): Promise<StepRecord[]> {
    const ep = await makeEpisode(5, 8);
    return ep.steps.map((s, t) => ({
      episode_id: ep.episode_id,
      step: t,
      observation: { state: opts.state ? opts.state(t) : s.state },
      action: [...s.action.slice(0, 6), opts.grip ? opts.grip(t) : t < 4 ? 1 : 0],
      language_instruction: opts.instruction ?? s.instruction,
    }));
  }
  const unknownOf = (out: StepRecord[][], field: 'reasoning' | 'plan') => out.flat().map((s) => (s[field] as { unknown?: string[] }).unknown);

  it('built-in demonstrations (every family): no annotation carries `unknown`', async () => {
    const eps = await demos(8, { seed: 3, images: false });
    for (const kind of ['reasoning', 'plan'] as const) {
      const { out } = await run(eps, { kind, teacher: new KinematicTeacher() });
      expect(unknownOf(out, kind).every((u) => u === undefined), kind).toBe(true);
    }
  });

  it('7-D foreign data: the rotations it does not read and the state layout it assumes', async () => {
    // a 7-D state whose last entry is the gripper opening, an instruction naming item and place, a grasp
    const ep = await foreign({ state: (t) => [0.4, 0, 0.2 - t * 0.01, 0, 0, 0, t < 4 ? 1 : 0] });
    const { out } = await run([ep], { kind: 'reasoning', teacher: new KinematicTeacher() });
    const u = unknownOf(out, 'reasoning');
    expect(u[0]).toEqual(['wrist rotation: 3 action dimensions between translation and gripper are not read', 'state layout: not stated by the data; the state is read as [x, y, z, ...] in metres']);
    expect(u.every((x) => JSON.stringify(x) === JSON.stringify(u[0]))).toBe(true);
    const plan = await run([ep], { kind: 'plan', teacher: new KinematicTeacher() });
    expect(unknownOf(plan.out, 'plan')[0]).toEqual(['wrist rotation: 3 action dimensions between translation and gripper are not read']);
  });

  it('no object named, no gripper reading, no grasp: each listed', async () => {
    const ep = await foreign({ instruction: 'go', state: () => [0.4, 0, 0.2], grip: () => 1 });
    const { out } = await run([ep], { kind: 'reasoning', teacher: new KinematicTeacher() });
    const [first, later] = [unknownOf(out, 'reasoning')[0]!, unknownOf(out, 'reasoning')[3]!];
    expect(first).toContain('object: the instruction names none; the item is called "the object"');
    expect(first).toContain('gripper state: the state holds no gripper reading; taken from the default (open)');
    expect(later).toContain("gripper state: the state holds no gripper reading; taken from the previous step's command");
    expect(first).toContain('object position: the gripper never closes, so where the item lies is not located');
    // without any state
    const bare = (await foreign()).map((s) => ({ ...s, observation: {} }));
    const r = await run([bare], { kind: 'reasoning', teacher: new KinematicTeacher() });
    expect(unknownOf(r.out, 'reasoning')[0]).toContain('position: the step carries no state');
  });
});

describe('parsing teacher answers', () => {
  it('plans: keys in any case, gaps and overlaps snapped, order and ranges enforced', () => {
    const p = parsePlan(
      '```json\n{"SUBTASKS":[{"STEP_DESCRIPTION":"a","REASONING":"r","MAIN_MOVEMENTS":"m","START_STEP":1,"END_STEP":3},{"step_description":"b","reasoning":"","main_movements":"","start_step":6,"end_step":8}]}\n```',
      10,
    );
    expect(p.steps.map((s) => [s.start, s.end])).toEqual([
      [0, 5],
      [6, 9],
    ]);
    expect(p.repairs).toHaveLength(3);
    expect(() => parsePlan('{"subtasks":[{"step_description":"b","reasoning":"","main_movements":"","start_step":5,"end_step":9},{"step_description":"a","reasoning":"","main_movements":"","start_step":0,"end_step":4}]}', 10)).toThrow(
      /subtask 1 starts at step 0, not after subtask 0 \(5\)/,
    );
    expect(() => parsePlan('{"subtasks":[]}', 10)).toThrow(/subtasks: must hold at least one subtask/);
    expect(() => parsePlan('the plan is: first grasp', 10)).toThrow(/not valid JSON/);
  });

  it('reasoning: all sections required, never eval', () => {
    const ok = parseReasoning('{"Observation":"o","Situation Analysis":"s","Spatial-Reasoning":"p","task_planning":"t","logical_steps":["1"],"sub_action":"x"}');
    expect(ok.situation_analysis).toBe('s');
    expect(() => parseReasoning('{"observation":"o"}')).toThrow(/key situation_analysis/);
    expect(() => parseReasoning('{"observation": (function(){ throw 1 })()}')).toThrow(/not valid JSON/);
  });

  it('backoff honours Retry-After and otherwise grows with full jitter', () => {
    expect(backoffMs(1, '7')).toBe(7000);
    expect(backoffMs(3, null, { random: () => 1, baseDelayMs: 100 })).toBe(400);
    expect(backoffMs(20, null, { random: () => 1, baseDelayMs: 100, maxDelayMs: 5000 })).toBe(5000);
    expect(backoffMs(2, null, { random: () => 0 })).toBe(0);
  });

  it('retries against an unreachable server leave no abort listener behind and raise no MaxListenersExceededWarning', async () => {
    const port = await new Promise<number>((resolve) => {
      const srv = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (srv.address() as net.AddressInfo).port;
        srv.close(() => resolve(p));
      });
    });
    const ac = new AbortController();
    const limiter = new RateLimiter(600_000); // spaces the starts: the limiter sleeps too
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    try {
      // one after another, then 16 at once on the same signal (as annotate --concurrency 16 does)
      await expect(postJson(`http://127.0.0.1:${port}/v1`, {}, {}, { retries: 12, baseDelayMs: 1, maxDelayMs: 2, signal: ac.signal, limiter })).rejects.toThrow(/E_TEACHER .*giving up after 13 attempts; last: network error/);
      const many = Array.from({ length: 16 }, () => postJson(`http://127.0.0.1:${port}/v1`, {}, {}, { retries: 2, baseDelayMs: 20, maxDelayMs: 20, random: () => 1, signal: ac.signal, limiter }));
      for (const r of await Promise.allSettled(many)) expect(r).toMatchObject({ status: 'rejected', reason: { code: 'E_TEACHER' } });
      await new Promise((r) => setImmediate(r)); // warnings are emitted on a later tick
    } finally {
      process.off('warning', onWarning);
    }
    expect(warnings.map((w) => w.name)).not.toContain('MaxListenersExceededWarning');
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
    // an abort still ends a wait at once
    const slow = postJson(`http://127.0.0.1:${port}/v1`, {}, {}, { retries: 3, baseDelayMs: 60_000, random: () => 1, signal: ac.signal });
    ac.abort(new Error('stop'));
    await expect(slow).rejects.toThrow('stop');
  });
});

describe('remote teachers against a server speaking their wire formats', () => {
  let server: FakeServer;
  let eps: StepRecord[][];
  beforeAll(async () => {
    server = await startFakeServer();
    eps = await demos(2, { families: ['place'], seed: 3 });
  });
  afterAll(() => server.close());

  it('openai: request shape (model, messages, image data URLs, JSON mode), usage and cost', async () => {
    server.seen.length = 0;
    const teacher = new OpenAITeacher('qwen-vl', { baseUrl: `${server.url}/v1`, apiKey: 'sk-test', retries: 2, baseDelayMs: 1 });
    const { out, usage } = await run([eps[0]], { kind: 'plan', teacher, price: { input: 1, output: 10 }, frames: 4 });
    expect(server.seen).toHaveLength(1);
    const b = server.seen[0].body as { model: string; messages: { role: string; content: { type: string; text?: string; image_url?: { url: string } }[] }[]; response_format: unknown };
    expect(server.seen[0].path).toBe('/v1/chat/completions');
    expect(b.model).toBe('qwen-vl');
    expect(b.response_format).toEqual({ type: 'json_object' });
    const parts = b.messages[0].content;
    expect(parts.filter((p) => p.type === 'image_url')).toHaveLength(4);
    expect(parts[0].image_url!.url).toMatch(/^data:image\/png;base64,iVBORw0KGgo/);
    expect(parts.at(-1)!.text).toContain('+x is forward (away from the robot base), -x backward; +y is left, -y right; +z is up, -z down. The gripper value is 1 when open and 0 when closed.');
    expect(parts.at(-1)!.text).toContain(`t=${eps[0].length - 1}:`);
    // the fake server counts about 4 characters a token and 258 tokens an image
    const { chars, images } = promptSize(server.seen[0].body, false);
    expect(images).toBe(4);
    const inputTokens = Math.ceil(chars / 4) + 258 * 4;
    expect(usage).toMatchObject({ requests: 1, inputTokens, outputTokens: 20, errors: 0 });
    expect(usage.cost).toBeCloseTo((inputTokens * 1 + 20 * 10) / 1e6, 12);
    const plan = out[0][0].plan as Record<string, unknown>;
    expect(plan).toMatchObject({ index: 0, description: 'move to the item', teacher: 'openai:qwen-vl', prompt_version: 'plan-v1', error: '' });
  });

  it('gemini: generateContent with inline images, the key in a header, JSON mode', async () => {
    server.seen.length = 0;
    const teacher = new GeminiTeacher('gemini-2.5-flash', { baseUrl: server.url, apiKey: 'g-key', retries: 1, baseDelayMs: 1 });
    const { out } = await run([eps[0]], { kind: 'reasoning', teacher, stride: 1000 });
    expect(server.seen[0].path).toBe('/v1beta/models/gemini-2.5-flash:generateContent');
    const b = server.seen[0].body as { contents: { role: string; parts: Record<string, unknown>[] }[]; generationConfig: Record<string, unknown> };
    expect(b.generationConfig.responseMimeType).toBe('application/json');
    expect(b.contents[0].parts[0]).toMatchObject({ inline_data: { mime_type: 'image/png' } });
    expect(b.contents[0].parts.at(-1)!.text).toContain(`Instruction: "${eps[0][0].language_instruction}"`);
    expect((out[0][0].reasoning as Record<string, unknown>).sub_action).toBe('move down');
  });

  it('retries 429 (Retry-After), 500 and slow answers; "model not found" stops the job at once, without retry', async () => {
    server.seen.length = 0;
    server.faults = ['429', '500', 'slow'];
    const teacher = new OpenAITeacher('m', { baseUrl: server.url, retries: 4, baseDelayMs: 1, timeoutMs: 400 });
    const { usage } = await run([eps[0]], { kind: 'plan', teacher });
    expect(usage.retries).toBe(3);
    expect(server.seen).toHaveLength(4);
    expect(usage.errors).toBe(0);
    server.faults = ['400'];
    server.seen.length = 0;
    await expect(run([eps[1]], { kind: 'plan', teacher })).rejects.toThrow(/E_TEACHER_FATAL .*model not found \(HTTP 400\)/);
    expect(server.seen).toHaveLength(1);
    server.faults = ['500', '500', '500'];
    const give = await run([eps[1]], { kind: 'plan', teacher: new OpenAITeacher('m', { baseUrl: server.url, retries: 2, baseDelayMs: 1 }) });
    expect(give.usage).toMatchObject({ failures: 1, errors: 1, reasons: { failed: 1 } });
    expect((give.out[0][0].plan as { error: string }).error).toMatch(/^failed: giving up after 3 attempts; last: HTTP 500/);
  });

  it('malformed answers and wrong segmentations are re-asked with the error; gaps are repaired locally', async () => {
    server.seen.length = 0;
    server.faults = ['malformed'];
    const teacher = new OpenAITeacher('m', { baseUrl: server.url, retries: 0 });
    const a = await run([eps[0]], { kind: 'plan', teacher });
    expect(a.usage.reasks).toBe(1);
    expect(server.seen).toHaveLength(2);
    const second = server.seen[1].body as { messages: { role: string; content: unknown }[] };
    expect(second.messages.map((m) => m.role)).toEqual(['user', 'assistant', 'user']);
    expect(server.seen[1].text).toMatch(/Your previous answer could not be used: the answer is not valid JSON/);
    server.faults = ['wrong-order'];
    const b = await run([eps[1]], { kind: 'plan', teacher });
    expect(b.usage.reasks).toBe(1);
    expect(server.seen.at(-1)!.text).toMatch(/must be in order/);
    server.faults = ['gappy'];
    const c = await run([eps[0]], { kind: 'plan', teacher, cache: undefined });
    expect(c.usage).toMatchObject({ reasks: 0, localRepairs: 1 });
    expect((c.out[0][0].plan as { repairs: string[] }).repairs[0]).toMatch(/gap before subtask 1/);
    // malformed for good: the episode is marked, counted, and the job goes on
    server.faults = ['garbage', 'garbage', 'garbage'];
    const d = await run([eps[0]], { kind: 'reasoning', teacher, stride: 1000, repair: 2 });
    expect(d.usage).toMatchObject({ errors: 1, reasks: 2, requests: 3, reasons: { unusable: 1 } });
    expect((d.out[0][0].reasoning as { error: string }).error).toMatch(/unusable answer after 3 tries/);
    expect((d.out[0].at(-1)!.reasoning as { error: string }).error).toMatch(/unusable answer/);
  });

  it('the cache pays once: a rerun makes zero requests and gives the same output', async () => {
    const cacheDir = path.join(dir, 'cache1');
    const teacher = new OpenAITeacher('m', { baseUrl: server.url, retries: 0 });
    server.seen.length = 0;
    let cache = await AnswerCache.open(cacheDir);
    const first = await run(eps, { kind: 'reasoning', teacher, stride: 5, cache });
    await cache.close();
    const requests = server.seen.length;
    expect(requests).toBe(first.usage.requests);
    cache = await AnswerCache.open(cacheDir);
    const again = await run(eps, { kind: 'reasoning', teacher, stride: 5, cache });
    await cache.close();
    expect(server.seen.length).toBe(requests);
    expect(again.usage).toMatchObject({ requests: 0, cacheHits: requests });
    expect(again.out).toEqual(first.out);
  });

  it('exec: a child process teacher answering JSON lines', async () => {
    const script = `process.stdin.setEncoding('utf8');let b='';process.stdin.on('data',d=>{b+=d;let i;while((i=b.indexOf('\\n'))>=0){const r=JSON.parse(b.slice(0,i));b=b.slice(i+1);const T=r.context.actions.length;process.stdout.write(JSON.stringify({text:JSON.stringify({subtasks:[{step_description:'do it',reasoning:'',main_movements:'',start_step:0,end_step:T-1}]}),usage:{input_tokens:7,output_tokens:3}})+'\\n')}})`;
    const teacher = new ExecTeacher(`node -e "${script.replace(/"/g, '\\"')}"`);
    const { out, usage } = await run([eps[0]], { kind: 'plan', teacher });
    await teacher.close();
    expect((out[0].at(-1)!.plan as { description: string }).description).toBe('do it');
    expect(usage).toMatchObject({ requests: 1, inputTokens: 7, outputTokens: 3 });
  });

  it('teacher specs', () => {
    expect(makeTeacher('kinematic', {}).id).toBe('kinematic');
    expect(() => makeTeacher('openai:m', {})).toThrow(/needs --teacher-url/);
    expect(() => makeTeacher('claude:x', {})).toThrow(/unknown teacher "claude:x"/);
  });
});

describe('rate limit', () => {
  it('spaces request starts to at most rpm a minute', async () => {
    const { vi } = await import('vitest');
    const { RateLimiter } = await import('../../src/lib/teacher/index.js');
    vi.useFakeTimers();
    try {
      const lim = new RateLimiter(120); // one start every 500 ms
      const started: number[] = [];
      const t0 = Date.now();
      const all = [0, 1, 2].map((i) => lim.wait().then(() => started.push(i)));
      await vi.advanceTimersByTimeAsync(0);
      expect(started).toEqual([0]);
      await vi.advanceTimersByTimeAsync(499);
      expect(started).toEqual([0]);
      await vi.advanceTimersByTimeAsync(1);
      expect(started).toEqual([0, 1]);
      await vi.advanceTimersByTimeAsync(500);
      await Promise.all(all);
      expect(started).toEqual([0, 1, 2]);
      expect(Date.now() - t0).toBe(1000);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('kinematic teacher on data from outside the built-in world', () => {
  it('names the object from instructions without articles or a place verb; never calls a downward motion "lift"; reads the gripper from the state', async () => {
    const { parseInstruction, kinematicPlan, kinematicReasoning } = await import('../../src/lib/teacher/kinematic.js');
    expect(parseInstruction('put corn in pot which is in sink')).toMatchObject({ object: 'corn', relation: 'in', target: 'pot which is in sink' });
    expect(parseInstruction('Place the spoon on top of the towel.')).toMatchObject({ object: 'spoon', relation: 'on', target: 'towel' });
    expect(parseInstruction('pick up a red block from the table')).toMatchObject({ object: 'red block' });
    expect(parseInstruction('open the drawer').object).toBe('drawer');
    expect(parseInstruction('wipe table with the cloth').object).toBe('table');
    // closed without a rise, then moving down: no "lift"
    const acts = [
      [0.01, 0, 0, 1],
      [0.01, 0, 0, 1],
      [0, 0, 0, 0],
      [0.002, 0, -0.01, 0],
      [0.002, 0, -0.01, 0],
    ];
    const plan = kinematicPlan(acts, 'put corn in pot');
    const names = plan.subtasks.map((s) => s.step_description as string);
    expect(names[0]).toBe('move to the corn');
    expect(names.some((n) => n.startsWith('lift'))).toBe(false);
    // step 2 closes the gripper: the frame of step 2 still shows it open (state), whatever the step's own command
    const states = acts.map((_, t) => [0.3, 0, 0.1, t <= 2 ? 1 : 0]);
    expect(kinematicReasoning(acts, states, 'put corn in pot', 2).observation).toMatch(/^The gripper is open/);
    expect(kinematicReasoning(acts, acts.map(() => undefined), 'put corn in pot', 2).observation).toMatch(/^The gripper is open/);
    expect(kinematicReasoning(acts, acts.map(() => undefined), 'put corn in pot', 3).observation).toMatch(/^The gripper is closed/);
  });
});
