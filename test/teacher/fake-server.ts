/**
 * An in-process HTTP server that speaks the real wire formats of Gemini (`:generateContent`) and OpenAI-compatible
 * servers (`/v1/chat/completions`: OpenAI, vLLM, Ollama), answering plans and reasoning, with faults to inject.
 * The faults replay the answer shapes the services document (Gemini API reference: GenerateContentResponse,
 * PromptFeedback.blockReason, Candidate.finishReason, UsageMetadata.thoughtsTokenCount, google.rpc error details;
 * OpenAI chat completion: message.refusal, finish_reason, usage.completion_tokens_details; vLLM and Ollama error
 * bodies), one request each, in order.
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export type Fault =
  | 'none'
  // transport and rate limits
  | '429' // Retry-After: 0
  | '429-retryinfo' // Gemini: the wait in the body (RetryInfo.retryDelay), no header
  | '429-daily' // Gemini: a per-day quota (QuotaFailure ...PerDay...)
  | '429-insufficient-quota' // OpenAI: insufficient_quota
  | '500'
  | 'slow'
  | '400' // model not found, as a 400
  | '400-images' // vLLM: "At most 1 image(s) may be provided in one request."
  | '400-json-mode' // a server without JSON mode
  | '401' // OpenAI: invalid_api_key; Gemini: API_KEY_INVALID (as a 400)
  | '404' // model not found
  // answers
  | 'malformed'
  | 'garbage'
  | 'wrong-order'
  | 'gappy'
  | 'blocked' // Gemini: promptFeedback.blockReason, no candidates
  | 'safety' // Gemini: a candidate stopped with finishReason SAFETY, no content
  | 'max-tokens' // Gemini: MAX_TOKENS, content without parts, thinking used the budget; OpenAI: finish_reason length with a cut answer
  | 'empty-stop' // Gemini 2.5: finishReason STOP and no parts; OpenAI: content ""
  | 'refusal' // OpenAI: content null, refusal set
  | 'content-filter' // OpenAI/Azure: finish_reason content_filter
  | 'reasoning-null' // vLLM with a reasoning parser: content null, reasoning_content set
  | 'think-inline' // vLLM without a reasoning parser: <think>...</think> then the JSON
  | 'thinking'; // Gemini: a thought part and thoughtsTokenCount; OpenAI: reasoning_tokens

export interface Seen {
  path: string;
  body: Record<string, unknown>;
  headers: IncomingMessage['headers'];
  /** The user text of the last message (the prompt or the repair request). */
  text: string;
  key: string;
  answered: boolean;
  fault: Fault;
}

export interface FakeServer {
  url: string;
  seen: Seen[];
  /** Faults to apply to the next requests, in order. */
  faults: Fault[];
  latencyMs: number;
  /** The prompt tokens the server reports are capped at this (as Ollama cuts prompts to its context length). */
  contextTokens?: number;
  onRequest?: (s: Seen) => void | Promise<void>;
  close(): Promise<void>;
}

export function planFor(text: string, wrong: Fault): string {
  const T = (text.match(/^t=\d+:/gm) ?? []).length;
  const half = Math.max(1, Math.floor(T / 2));
  const a = { step_description: 'move to the item', reasoning: 'approach first', main_movements: 'forward; gripper open', start_step: 0, end_step: half - 1 };
  const b = { step_description: 'put the item down', reasoning: 'then place it', main_movements: 'down; gripper opens', start_step: half, end_step: T - 1 };
  if (wrong === 'wrong-order') return JSON.stringify({ subtasks: [b, a] });
  if (wrong === 'gappy') return JSON.stringify({ subtasks: [{ ...a, end_step: half - 3 }, b] });
  return JSON.stringify({ subtasks: [a, b] });
}

export const REASONING = JSON.stringify({
  observation: 'A table with a carrot and a plate; the gripper is open above them.',
  situation_analysis: 'The robot must move the carrot onto the plate.',
  spatial_reasoning: 'The carrot is left of the plate, the gripper above the carrot.',
  task_planning: 'Grasp the carrot, lift it, carry it over the plate, lower it, release.',
  logical_steps: ['grasp the carrot', 'lift', 'carry', 'release'],
  sub_action: 'move down',
});

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

type Reply = [status: number, headers: Record<string, string>, body: unknown];
const JSONH = { 'content-type': 'application/json' };

/** Error answers, as each service shapes them. */
function errorReply(fault: Fault, gemini: boolean): Reply | undefined {
  const google = (code: number, status: string, message: string, details: unknown[] = []): Reply => [code, JSONH, { error: { code, message, status, details } }];
  const openai = (code: number, message: string, type: string, c: string | null): Reply => [code, JSONH, { error: { message, type, param: null, code: c } }];
  switch (fault) {
    case '429':
      return [429, { ...JSONH, 'retry-after': '0' }, { error: 'rate limited' }];
    case '429-retryinfo':
      return google(429, 'RESOURCE_EXHAUSTED', 'You exceeded your current quota. Please retry in 0.05s.', [
        { '@type': 'type.googleapis.com/google.rpc.QuotaFailure', violations: [{ quotaMetric: 'generativelanguage.googleapis.com/generate_content_free_tier_requests', quotaId: 'GenerateRequestsPerMinutePerProjectPerModel-FreeTier', quotaValue: '10' }] },
        { '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: '0.05s' },
      ]);
    case '429-daily':
      return google(429, 'RESOURCE_EXHAUSTED', 'You exceeded your current quota, please check your plan and billing details.', [
        { '@type': 'type.googleapis.com/google.rpc.QuotaFailure', violations: [{ quotaMetric: 'generativelanguage.googleapis.com/generate_content_free_tier_requests', quotaId: 'GenerateRequestsPerDayPerProjectPerModel-FreeTier', quotaValue: '250' }] },
        { '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: '0.05s' },
      ]);
    case '429-insufficient-quota':
      return openai(429, 'You exceeded your current quota, please check your plan and billing details.', 'insufficient_quota', 'insufficient_quota');
    case '500':
      return [500, {}, 'internal error'];
    case '400':
      return [400, JSONH, { error: { message: 'model not found' } }];
    case '400-images':
      return [400, JSONH, { object: 'error', message: 'At most 1 image(s) may be provided in one request.', type: 'BadRequestError', param: null, code: 400 }];
    case '400-json-mode':
      return gemini ? google(400, 'INVALID_ARGUMENT', 'JSON mode is not enabled for models/gemma-3-27b-it') : openai(400, "'response_format' of type 'json_object' is not supported with this model.", 'invalid_request_error', null);
    case '401':
      return gemini
        ? google(400, 'INVALID_ARGUMENT', 'API key not valid. Please pass a valid API key.', [{ '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: 'API_KEY_INVALID', domain: 'googleapis.com' }])
        : openai(401, 'Incorrect API key provided: sk-test. You can find your API key at https://platform.openai.com/account/api-keys.', 'invalid_request_error', 'invalid_api_key');
    case '404':
      return gemini
        ? google(404, 'NOT_FOUND', 'models/gemini-9-flash is not found for API version v1beta, or is not supported for generateContent.')
        : openai(404, 'The model `m` does not exist or you do not have access to it.', 'invalid_request_error', 'model_not_found');
    default:
      return undefined;
  }
}

/** A 200 answer: `text` as each service would carry it under `fault`. */
export function answerReply(fault: Fault, gemini: boolean, text: string, promptTokens: number): Reply {
  if (gemini) {
    const usage = (out: number, thoughts = 0) => ({ promptTokenCount: promptTokens, candidatesTokenCount: out, ...(thoughts ? { thoughtsTokenCount: thoughts } : {}), totalTokenCount: promptTokens + out + thoughts });
    switch (fault) {
      case 'blocked':
        return [200, JSONH, { promptFeedback: { blockReason: 'SAFETY', safetyRatings: [{ category: 'HARM_CATEGORY_DANGEROUS_CONTENT', probability: 'HIGH' }] }, usageMetadata: { promptTokenCount: promptTokens, totalTokenCount: promptTokens } }];
      case 'safety':
        return [200, JSONH, { candidates: [{ finishReason: 'SAFETY', index: 0, safetyRatings: [{ category: 'HARM_CATEGORY_HARASSMENT', probability: 'MEDIUM', blocked: true }] }], usageMetadata: usage(0) }];
      case 'max-tokens':
        return [200, JSONH, { candidates: [{ content: { role: 'model' }, finishReason: 'MAX_TOKENS', index: 0 }], usageMetadata: usage(0, 4090) }];
      case 'empty-stop':
        return [200, JSONH, { candidates: [{ content: { role: 'model' }, finishReason: 'STOP', index: 0 }], usageMetadata: usage(0, 300) }];
      case 'thinking':
        return [200, JSONH, { candidates: [{ content: { role: 'model', parts: [{ text: 'Considering the frames...', thought: true }, { text }] }, finishReason: 'STOP', index: 0 }], usageMetadata: usage(100, 1800) }];
      default:
        return [200, JSONH, { candidates: [{ content: { role: 'model', parts: [{ text }] }, finishReason: 'STOP', index: 0 }], usageMetadata: usage(20) }];
    }
  }
  const choice = (message: Record<string, unknown>, finish: string) => ({ id: 'chatcmpl-x', object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', ...message }, finish_reason: finish }] });
  const usage = (out: number, reasoning = 0) => ({ prompt_tokens: promptTokens, completion_tokens: out, total_tokens: promptTokens + out, ...(reasoning ? { completion_tokens_details: { reasoning_tokens: reasoning } } : {}) });
  switch (fault) {
    case 'refusal':
      return [200, JSONH, { ...choice({ content: null, refusal: "I'm sorry, I can't help with that." }, 'stop'), usage: usage(12) }];
    case 'content-filter':
      return [200, JSONH, { ...choice({ content: null }, 'content_filter'), usage: usage(0) }];
    case 'max-tokens':
      return [200, JSONH, { ...choice({ content: text.slice(0, 40) }, 'length'), usage: usage(4096, 4000) }];
    case 'empty-stop':
      return [200, JSONH, { ...choice({ content: '' }, 'stop'), usage: usage(1) }];
    case 'reasoning-null':
      return [200, JSONH, { ...choice({ content: null, reasoning_content: 'The user wants the scene described. I should look at' }, 'stop'), usage: usage(300) }];
    case 'think-inline':
      return [200, JSONH, { ...choice({ content: `<think>\nThe plan is {approach, grasp}. Let me write {"draft": 1}.\n</think>\n\n\`\`\`JSON\n${text}\n\`\`\`\nNote: the braces } above close the object.` }, 'stop'), usage: usage(80) }];
    case 'thinking':
      return [200, JSONH, { ...choice({ content: text }, 'stop'), usage: usage(1900, 1800) }];
    default:
      return [200, JSONH, { ...choice({ content: text }, 'stop'), usage: usage(20) }];
  }
}

export async function startFakeServer(opts: { latencyMs?: number } = {}): Promise<FakeServer> {
  const state: Omit<FakeServer, 'url' | 'close'> = { seen: [], faults: [], latencyMs: opts.latencyMs ?? 0 };
  const server: Server = createServer(async (req: IncomingMessage, res: ServerResponse) => {
    const raw = await readBody(req);
    const body = JSON.parse(raw) as Record<string, unknown>;
    const gemini = req.url!.includes(':generateContent');
    const last = gemini
      ? ((body.contents as { parts: { text?: string }[] }[]).at(-1)!.parts.find((p) => p.text)?.text ?? '')
      : (((body.messages as { content: unknown }[]).at(-1)!.content as { type: string; text?: string }[]).find?.((p) => p.type === 'text')?.text ?? '');
    const fault = state.faults.shift() ?? 'none';
    const seen: Seen = { path: req.url!, body, headers: req.headers, text: last, key: createHash('sha256').update(raw).digest('hex'), answered: false, fault };
    state.seen.push(seen);
    await state.onRequest?.(seen);
    if (state.latencyMs) await new Promise((r) => setTimeout(r, state.latencyMs));
    if (fault === 'slow') await new Promise((r) => setTimeout(r, 1500));
    if (res.destroyed) return;
    const err = errorReply(fault, gemini);
    if (err) {
      res.writeHead(err[0], err[1]).end(typeof err[2] === 'string' ? err[2] : JSON.stringify(err[2]));
      return;
    }
    const isPlan = /Action log:/.test(JSON.stringify(body));
    const isRepair = /could not be used/.test(last);
    let text = isPlan ? planFor(extractPrompt(body, gemini), isRepair ? 'none' : fault) : REASONING;
    if ((fault === 'malformed' && !isRepair) || fault === 'garbage') text = isPlan ? '{"subtasks": [ {"step_description": "move", ' : 'Sure! Here is my analysis: the carrot is on the left.';
    // about 4 characters a token, 258 tokens an image (Gemini's figure); capped like a server that cuts prompts
    const { chars, images } = promptSize(body, gemini);
    const promptTokens = Math.min(Math.ceil(chars / 4) + 258 * images, state.contextTokens ?? Infinity);
    seen.answered = true;
    const [status, headers, payload] = answerReply(fault, gemini, text, promptTokens);
    res.writeHead(status, headers).end(JSON.stringify(payload));
  });
  return Object.assign(state, await listenLocal(server));
}

/** Starts `server` on a free local port: its URL, and a close that also ends open keep-alive connections. */
export async function listenLocal(server: Server): Promise<{ url: string; close: () => Promise<void> }> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** Characters of text and number of images in a request. */
export function promptSize(body: Record<string, unknown>, gemini: boolean): { chars: number; images: number } {
  let chars = 0;
  let images = 0;
  if (gemini) {
    for (const c of body.contents as { parts: { text?: string; inline_data?: unknown }[] }[]) for (const p of c.parts) p.text ? (chars += p.text.length) : p.inline_data && (images += 1);
  } else {
    for (const m of body.messages as { content: string | { type: string; text?: string }[] }[]) {
      if (typeof m.content === 'string') chars += m.content.length;
      else for (const p of m.content) p.type === 'text' ? (chars += p.text!.length) : (images += 1);
    }
  }
  return { chars, images };
}

/** The first user prompt of a request (it carries the action log). */
function extractPrompt(body: Record<string, unknown>, gemini: boolean): string {
  if (gemini) return (body.contents as { parts: { text?: string }[] }[])[0].parts.find((p) => p.text)?.text ?? '';
  return (body.messages as { content: { type: string; text?: string }[] }[])[0].content.find((p) => p.type === 'text')?.text ?? '';
}
