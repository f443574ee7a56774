/**
 * Issue 24: teachers against the answers real services give (replayed by the fake server in their documented
 * shapes): every item ends ok, retried, counted by reason, or stops the job when nothing can go on.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ScriptedPolicy, TabletopEnv, runEpisodes } from '../../src/lib/env/index.js';
import { EndpointModel, endpointUrlFor, evaluateModel, summarize, type VqaItem } from '../../src/lib/eval/index.js';
import type { StepRecord } from '../../src/lib/io/index.js';
import {
  AnswerCache,
  GeminiTeacher,
  OpenAITeacher,
  annotate,
  classifyFailure,
  isOpenAiReasoningModel,
  makeTeacher,
  type UsageStats,
} from '../../src/lib/teacher/index.js';
import { collect, tempDir } from '../helpers.js';
import { type Fault, type FakeServer, startFakeServer } from './fake-server.js';

const dir = tempDir();
let server: FakeServer;
let other: FakeServer;
let eps: StepRecord[][];

beforeAll(async () => {
  server = await startFakeServer();
  other = await startFakeServer();
  const env = new TabletopEnv({ width: 16, height: 16 });
  const got = await collect(runEpisodes({ env, policy: new ScriptedPolicy({ noise: 0 }), families: ['place'], episodes: 3, seed: 5 }));
  await env.close();
  eps = got.map((e) => e.records);
});
afterAll(async () => {
  await server.close();
  await other.close();
});

async function* from(xs: StepRecord[][]): AsyncGenerator<StepRecord[]> {
  yield* xs;
}

async function run(xs: StepRecord[][], opts: Parameters<typeof annotate>[1]): Promise<{ out: StepRecord[][]; usage: UsageStats }> {
  let usage: UsageStats | undefined;
  const out = await collect(annotate(from(xs), opts, (u) => (usage = u)));
  return { out, usage: usage! };
}

const gemini = (o: ConstructorParameters<typeof GeminiTeacher>[1] = {}, model = 'gemini-2.5-flash') => new GeminiTeacher(model, { baseUrl: server.url, apiKey: 'g-key', retries: 2, baseDelayMs: 1, ...o });
const openai = (o: Partial<ConstructorParameters<typeof OpenAITeacher>[1]> = {}, model = 'qwen2.5-vl') => new OpenAITeacher(model, { baseUrl: server.url, retries: 2, baseDelayMs: 1, ...o });
const planErr = (out: StepRecord[][], e: number) => (out[e][0].plan as { error: string }).error;

/** Plans for the three episodes, one request each (concurrency 1), with these faults. */
async function plans(teacher: Parameters<typeof annotate>[1]['teacher'], faults: Fault[], extra: Partial<Parameters<typeof annotate>[1]> = {}) {
  server.seen.length = 0;
  server.faults = [...faults];
  try {
    return await run(eps, { kind: 'plan', teacher, concurrency: 1, frames: 2, ...extra });
  } finally {
    server.faults = [];
  }
}

describe('item 1: one bad answer never aborts the job', () => {
  it('gemini: a blocked prompt, a SAFETY stop and an empty STOP (asked again) are counted per reason; the other episodes are annotated', async () => {
    const { out, usage } = await plans(gemini(), ['blocked', 'safety', 'empty-stop', 'empty-stop', 'empty-stop']);
    expect(usage.reasons).toEqual({ 'blocked:SAFETY': 1, 'refused:SAFETY': 1, empty: 1 });
    expect(usage).toMatchObject({ errors: 3, emptyRetries: 2, episodes: 3 });
    expect(planErr(out, 0)).toMatch(/^blocked:SAFETY: gemini blocked the prompt \(SAFETY\)/);
    expect(planErr(out, 1)).toMatch(/^refused:SAFETY/);
    // an empty answer that comes good on the next ask
    const again = await plans(gemini(), ['empty-stop']);
    expect(again.usage).toMatchObject({ errors: 0, emptyRetries: 1, requests: 4 });
  });

  it('openai/vLLM: a refusal, a content filter, a reasoning-parser answer without content, a 400 for one item', async () => {
    const { out, usage } = await plans(openai(), ['refusal', 'content-filter', 'reasoning-null', 'reasoning-null', 'reasoning-null']);
    expect(usage.reasons).toEqual({ 'refused:refusal': 1, 'refused:content_filter': 1, empty: 1 });
    expect(planErr(out, 0)).toMatch(/the model refused: I'm sorry/);
    expect(planErr(out, 2)).toMatch(/only reasoning_content/);
    const img = await plans(openai(), ['400-images']);
    expect(img.usage.reasons).toEqual({ 'rejected:400': 1 });
    expect(img.usage.episodes).toBe(3);
    expect(planErr(img.out, 0)).toMatch(/At most 1 image\(s\).*--limit-mm-per-prompt/);
    expect(planErr(img.out, 1)).toBe('');
  });

  it('refused and blocked answers are not cached: a rerun asks for them again, and only for them', async () => {
    const cache = await AnswerCache.open(path.join(dir, 'cache-refused'));
    await plans(openai(), ['refusal'], { cache });
    expect(server.seen).toHaveLength(3);
    const rerun = await plans(openai(), [], { cache });
    await cache.close();
    expect(server.seen).toHaveLength(1);
    expect(rerun.usage).toMatchObject({ cacheHits: 2, requests: 1, errors: 0 });
  });
});

describe('item 2: thinking tokens are output tokens', () => {
  it('gemini thoughtsTokenCount is counted and priced; thought parts are not the answer', async () => {
    const cache = await AnswerCache.open(path.join(dir, 'cache-thinking'));
    const { usage } = await plans(gemini({ thinkingBudget: 2048 }), ['thinking', 'thinking', 'thinking'], { cache, price: { input: 0.3, output: 2.5 } });
    await cache.close();
    expect(usage.outputTokens).toBe(3 * 1900);
    expect(usage.thoughtTokens).toBe(3 * 1800);
    expect(usage.cost).toBeCloseTo((usage.inputTokens * 0.3 + 5700 * 2.5) / 1e6, 12);
    expect((server.seen[0].body.generationConfig as Record<string, unknown>).thinkingConfig).toEqual({ thinkingBudget: 2048 });
    const reopened = await AnswerCache.open(path.join(dir, 'cache-thinking'));
    expect(reopened.size).toBe(3);
    await reopened.close();
    const { readFileSync } = await import('node:fs');
    expect(readFileSync(path.join(dir, 'cache-thinking', 'answers.jsonl'), 'utf8')).not.toMatch(/Considering the frames/);
  });

  it('openai reasoning_tokens are already in completion_tokens: not added twice', async () => {
    const { usage } = await plans(openai(), ['thinking', 'thinking', 'thinking']);
    expect(usage.outputTokens).toBe(3 * 1900);
    expect(usage.thoughtTokens).toBe(3 * 1800);
  });
});

describe('item 3: parameters as each service names them', () => {
  it('OpenAI reasoning models get no temperature and max_completion_tokens; other servers temperature and max_tokens', async () => {
    expect(['o1', 'o3-mini', 'o4-mini', 'gpt-5', 'gpt-5-mini', 'openai/gpt-5-nano'].every(isOpenAiReasoningModel)).toBe(true);
    expect(['gpt-4o', 'gpt-4.1-mini', 'gpt-5-chat-latest', 'qwen2.5-vl', 'ollama3'].some(isOpenAiReasoningModel)).toBe(false);
    await plans(openai({ maxTokens: 1000, temperature: 0.7 }, 'gpt-5-mini'), []);
    const r = server.seen[0].body;
    expect(r).not.toHaveProperty('temperature');
    expect(r).not.toHaveProperty('max_tokens');
    expect(r.max_completion_tokens).toBe(1000);
    await plans(openai({ maxTokens: 1000, temperature: 0.7 }), []);
    expect(server.seen[0].body).toMatchObject({ temperature: 0.7, max_tokens: 1000, response_format: { type: 'json_object' } });
    await plans(gemini({ maxTokens: 1000 }), []);
    expect(server.seen[0].body.generationConfig).toEqual({ temperature: 0.2, maxOutputTokens: 1000, responseMimeType: 'application/json' });
    // Gemma on the Gemini API has no JSON mode: JSON is asked for in the prompt only
    await plans(gemini({}, 'gemma-3-27b-it'), []);
    expect(server.seen[0].body.generationConfig).toEqual({ temperature: 0.2 });
  });

  it('a server without JSON mode: asked again at once without it, then never with it', async () => {
    const warnings: string[] = [];
    const t = openai({ onWarning: (m) => warnings.push(m) });
    const { usage } = await plans(t, ['400-json-mode']);
    expect(usage).toMatchObject({ errors: 0, retries: 0, requests: 3 });
    expect(server.seen.map((s) => 'response_format' in s.body)).toEqual([true, false, false, false]);
    expect(warnings).toEqual([expect.stringMatching(/has no JSON mode .*asking for JSON in the prompt only/)]);
  });
});

describe('item 4: the service says how long to wait, and when to stop', () => {
  it('reads the wait from Gemini\'s RetryInfo, OpenAI\'s retry-after-ms and Retry-After', () => {
    const h = (o: Record<string, string> = {}) => new Headers(o);
    const body = { error: { code: 429, status: 'RESOURCE_EXHAUSTED', message: 'm', details: [{ '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: '36.5s' }] } };
    expect(classifyFailure({ status: 429, text: '', body, headers: h() })).toEqual({ kind: 'retry', why: 'HTTP 429', delayMs: 36_500 });
    expect(classifyFailure({ status: 429, text: '', body: {}, headers: h({ 'retry-after-ms': '250', 'retry-after': '1' }) })).toMatchObject({ delayMs: 250 });
    expect(classifyFailure({ status: 503, text: '', body: undefined, headers: h({ 'retry-after': '3' }) })).toMatchObject({ kind: 'retry', delayMs: 3000 });
    // vLLM: prompt + max_tokens over --max-model-len is this item's problem, said how to fix
    const ctx = { object: 'error', message: "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens (904 in the messages, 4096 in the completion).", type: 'BadRequestError', code: 400 };
    expect(classifyFailure({ status: 400, text: '', body: ctx, headers: h() })).toMatchObject({ kind: 'item', reason: 'rejected:400', why: expect.stringMatching(/smaller --max-tokens or --frames, or vLLM --max-model-len/) });
  });

  it('a 429 with RetryInfo is retried after the body\'s delay (never the 10-minute backoff)', async () => {
    const { usage } = await plans(gemini({ baseDelayMs: 600_000, maxDelayMs: 600_000, random: () => 1 }), ['429-retryinfo']);
    expect(usage).toMatchObject({ retries: 1, errors: 0, episodes: 3 });
  });

  it('a daily quota stops the job with a clear message; what was answered stays in the cache and a rerun resumes', async () => {
    const cacheDir = path.join(dir, 'cache-daily');
    let cache = await AnswerCache.open(cacheDir);
    server.seen.length = 0;
    server.faults = ['none', '429-daily'];
    await expect(run(eps, { kind: 'plan', teacher: gemini(), concurrency: 1, frames: 2, cache })).rejects.toThrow(/E_TEACHER_FATAL .*the daily quota is exhausted \(GenerateRequestsPerDayPerProjectPerModel-FreeTier\)/);
    await cache.close();
    expect(server.seen).toHaveLength(2); // nothing sent after the quota answer, no retry of it
    cache = await AnswerCache.open(cacheDir);
    const rerun = await plans(gemini(), [], { cache });
    await cache.close();
    expect(rerun.usage).toMatchObject({ cacheHits: 1, requests: 2, errors: 0 });
  });

  it('bad keys, unknown models and an exhausted OpenAI account stop the job without retries', async () => {
    for (const [t, fault, msg] of [
      [openai(), '401', /credentials \(HTTP 401\): Incorrect API key/],
      [gemini(), '401', /credentials \(HTTP 400\): API key not valid/],
      [gemini(), '404', /model not found \(HTTP 404\): models\/gemini-9-flash is not found/],
      [openai(), '404', /model not found \(HTTP 404\)/],
      [openai(), '429-insufficient-quota', /quota is exhausted \(insufficient_quota\)/],
    ] as const) {
      server.seen.length = 0;
      server.faults = [fault];
      await expect(run(eps, { kind: 'plan', teacher: t, concurrency: 1, frames: 2 })).rejects.toThrow(msg);
      server.faults = [];
      expect(server.seen).toHaveLength(1); // no retry, nothing sent after it
    }
  });
});

describe('a fatal answer with requests in flight', () => {
  it('ends every queued and in-flight request at once (no hang), and nothing is sent after it', async () => {
    other.seen.length = 0;
    other.faults = ['401'];
    const t = new OpenAITeacher('m', { baseUrl: other.url, retries: 2, baseDelayMs: 1 });
    await expect(run(eps, { kind: 'reasoning', teacher: t, concurrency: 4, stride: 5 })).rejects.toThrow(/E_TEACHER_FATAL .*credentials \(HTTP 401\)/);
    other.faults = [];
    const total = eps.reduce((a, e) => a + Math.ceil(e.length / 5), 0);
    expect(total).toBeGreaterThan(20);
    expect(other.seen.length).toBeLessThan(total);
  });
});

describe('item 5 and 8: keys go only to their own service; cache keys name the server and the parameters', () => {
  it('--endpoint is never a gemini model\'s server; MODEL@URL gives each model its own', () => {
    expect(endpointUrlFor('gemini:gemini-2.5-flash', 'http://localhost:8000')).toBeUndefined();
    expect(endpointUrlFor('openai:m', 'http://localhost:8000')).toBe('http://localhost:8000');
    expect(endpointUrlFor('openai:m@http://h:1', 'http://localhost:8000')).toBeUndefined();
    const t = makeTeacher('openai:qwen@http://10.0.0.5:8000', { url: 'http://localhost:1' }) as OpenAITeacher;
    expect(t.id).toBe('openai:qwen');
    expect(t.cacheIdentity({ kind: 'vqa', json: false, messages: [] }).url).toBe('http://10.0.0.5:8000');
  });

  it('OPENAI_API_KEY goes to api.openai.com only; VLAKIT_TEACHER_API_KEY to other servers; a warning for plain http to another machine', async () => {
    const saved = { o: process.env.OPENAI_API_KEY, v: process.env.VLAKIT_TEACHER_API_KEY };
    try {
      process.env.OPENAI_API_KEY = 'sk-openai';
      delete process.env.VLAKIT_TEACHER_API_KEY;
      await plans(openai(), []);
      expect(server.seen[0].headers.authorization).toBeUndefined();
      process.env.VLAKIT_TEACHER_API_KEY = 'vllm-key';
      await plans(openai(), []);
      expect(server.seen[0].headers.authorization).toBe('Bearer vllm-key');
      const warnings: string[] = [];
      new OpenAITeacher('m', { baseUrl: 'http://10.1.2.3:8000', onWarning: (m) => warnings.push(m) });
      new OpenAITeacher('m', { baseUrl: 'https://10.1.2.3:8000', onWarning: (m) => warnings.push(m) });
      new OpenAITeacher('m', { baseUrl: 'http://localhost:8000', onWarning: (m) => warnings.push(m) });
      expect(warnings).toEqual(['warning: the API key goes in clear text over http to 10.1.2.3:8000; use https']);
      const g: string[] = [];
      new GeminiTeacher('gemini-2.5-flash', { apiKey: 'k', baseUrl: 'https://proxy.example.com', onWarning: (m) => g.push(m) });
      new GeminiTeacher('gemini-2.5-flash', { apiKey: 'k', onWarning: (m) => g.push(m) });
      expect(g).toEqual(["warning: the Gemini API key goes to proxy.example.com, which is not Google's API host"]);
    } finally {
      for (const [k, v] of [['OPENAI_API_KEY', saved.o], ['VLAKIT_TEACHER_API_KEY', saved.v]] as const) if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });

  it('"models/x" Gemini names are the bare model', async () => {
    const t = gemini({}, 'models/gemini-2.5-flash');
    expect(t.id).toBe('gemini:gemini-2.5-flash');
    await plans(t, []);
    expect(server.seen[0].path).toBe('/v1beta/models/gemini-2.5-flash:generateContent');
  });

  it('the same model name on two servers, or at two temperatures, shares no cached answer', async () => {
    const cache = await AnswerCache.open(path.join(dir, 'cache-two'));
    await plans(openai(), [], { cache });
    other.seen.length = 0;
    const second = await run(eps, { kind: 'plan', teacher: openai({ baseUrl: other.url }), concurrency: 1, frames: 2, cache });
    expect(second.usage).toMatchObject({ cacheHits: 0, requests: 3 });
    expect(other.seen).toHaveLength(3);
    const warm = await plans(openai({ temperature: 0.9 }), [], { cache });
    expect(warm.usage).toMatchObject({ cacheHits: 0, requests: 3 });
    const same = await plans(openai(), [], { cache });
    await cache.close();
    expect(same.usage).toMatchObject({ cacheHits: 3, requests: 0 });
  });
});

describe('item 7: truncated answers are never accepted', () => {
  it('re-asked once with 4x the budget; truncated twice: counted, not cached', async () => {
    const cache = await AnswerCache.open(path.join(dir, 'cache-trunc'));
    const g = await plans(gemini({ maxTokens: 100 }), ['max-tokens', 'none', 'max-tokens', 'max-tokens'], { cache });
    // requests in order: episode 0 (cut), 1 (ok), 0 again with 4x (cut: counted), 2 (cut), 2 again with 4x (ok)
    expect(server.seen.map((s) => (s.body.generationConfig as { maxOutputTokens: number }).maxOutputTokens)).toEqual([100, 100, 400, 100, 400]);
    expect(g.usage).toMatchObject({ truncatedReasks: 2, errors: 1, reasons: { 'truncated:MAX_TOKENS': 1 } });
    expect(planErr(g.out, 0)).toMatch(/^truncated:MAX_TOKENS: gemini stopped at the output budget/);
    expect(planErr(g.out, 2)).toBe('');
    const o = await plans(openai({ maxTokens: 50 }), ['max-tokens', 'max-tokens', 'max-tokens'], { cache });
    expect(server.seen.map((s) => s.body.max_tokens)).toEqual([50, 50, 200, 200, 50]);
    expect(o.usage.reasons).toEqual({ 'truncated:length': 1 });
    await cache.close();
    const again = await AnswerCache.open(path.join(dir, 'cache-trunc'));
    expect(again.size).toBe(2 + 2); // gemini: episodes 1 and 2 (re-asked); openai: episodes 1 (re-asked) and 2
    await again.close();
  });

  it('eval-vqa: a truncated or refused endpoint answer is scored 0 and said so, never cached', async () => {
    const items: VqaItem[] = [0, 1, 2].map((i) => ({ benchmark: 'b', id: String(i), question: 'What colour?', answers: ['Sure! Here is my analysis: the carrot is on the left.'], images: [{ mime: 'image/png', b64: 'iVBORw0KGgo=' }], metric: 'exact' }) as VqaItem);
    const cache = await AnswerCache.open(path.join(dir, 'cache-vqa'));
    server.seen.length = 0;
    server.faults = ['max-tokens', 'refusal'];
    const m = new EndpointModel('m', openai({}), 1, cache);
    const samples = await evaluateModel(m, items);
    server.faults = [];
    expect(samples.map((s) => s.error?.split(':').slice(0, 2).join(':'))).toEqual(['truncated:length', 'refused:refusal', undefined]);
    expect(samples.map((s) => s.score)).toEqual([0, 0, 0]);
    expect(summarize(samples)[0].unanswered).toEqual({ 'truncated:length': 1, 'refused:refusal': 1 });
    expect(cache.size).toBe(1);
    await cache.close();
  });
});

describe('deployment traps', () => {
  it('a server that cuts the prompt to its context (Ollama) is detected from the prompt tokens it reports', async () => {
    const warnings: string[] = [];
    server.contextTokens = 64;
    try {
      await plans(openai({ onWarning: (m) => warnings.push(m) }), []);
    } finally {
      server.contextTokens = undefined;
    }
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/counted 64 prompt tokens for a prompt whose text alone is about \d+\+ tokens .*OLLAMA_CONTEXT_LENGTH/);
    const none: string[] = [];
    await plans(openai({ onWarning: (m) => none.push(m) }), []);
    expect(none).toEqual([]);
  });

  it('vLLM without a reasoning parser: <think> before the JSON still parses', async () => {
    const { usage } = await plans(openai(), ['think-inline', 'think-inline', 'think-inline']);
    expect(usage).toMatchObject({ errors: 0, reasks: 0 });
  });
});
