/**
 * Remote and external teachers: Gemini's REST `generateContent`, any OpenAI-compatible `/v1/chat/completions`
 * server (OpenAI, vLLM, Ollama, llama.cpp), and a child process answering JSON lines (`exec:`).
 * Each backend reads its service's answer shape and turns it into an outcome: a usable text, or a
 * TeacherItemError naming why not (blocked, refused, truncated, empty), or a TeacherFatalError.
 */
import { VlakitError } from '../errors.js';
import { JsonLinesProcess } from '../util/child.js';
import { type RateLimiter, type RetryPolicy, isLocalHost, postJson } from './http.js';
import { TeacherFatalError, TeacherItemError } from './outcome.js';
import type { Teacher, TeacherAnswer, TeacherRequest, Usage } from './types.js';

export interface RemoteOptions extends RetryPolicy {
  limiter?: RateLimiter;
  temperature?: number;
  /** Output token budget per request (undefined: the service's default). */
  maxTokens?: number;
  /** Gemini: `thinkingConfig.thinkingBudget` (0 turns thinking off on models that allow it; -1 dynamic). */
  thinkingBudget?: number;
  onRetry?: (why: string) => void;
  /** Warnings worth a line on stderr (a key sent in clear text, a prompt the server seems to have truncated). */
  onWarning?: (message: string) => void;
}

function usageNumber(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) ? v : 0;
}

/**
 * Warns once when the server counted far fewer prompt tokens than the text alone holds (at most ~6 characters a
 * token): the server is cutting the prompt, as Ollama does beyond its context length (2048-4096 by default).
 */
class PromptCheck {
  private warned = false;
  constructor(private readonly warn?: (m: string) => void) {}
  check(reported: number, req: TeacherRequest, server: string): void {
    if (this.warned || !this.warn || reported <= 0) return;
    const chars = req.messages.reduce((a, m) => a + m.text.length, 0);
    const atLeast = Math.floor(chars / 6);
    if (reported >= atLeast) return;
    this.warned = true;
    this.warn(
      `warning: ${server} counted ${reported} prompt tokens for a prompt whose text alone is about ${atLeast}+ tokens (${chars} characters): the server is truncating prompts to its context length. Ollama: raise the context (OLLAMA_CONTEXT_LENGTH=16384 when starting the server, or num_ctx in a Modelfile); vLLM: --max-model-len.`,
    );
  }
}

/** Which key goes where: only to the service's own host; a warning for plain http to another machine. */
function checkKeyHost(url: URL, what: string, warn?: (m: string) => void): void {
  if (url.protocol === 'http:' && !isLocalHost(url.hostname)) warn?.(`warning: the ${what} goes in clear text over http to ${url.host}; use https`);
}

/** "models/gemini-2.5-flash" -> "gemini-2.5-flash" (the API's resource name and the bare model name both work). */
export function geminiModelName(model: string): string {
  return model.trim().replace(/^models\//, '');
}

/** Gemini finish reasons that mean the candidate was stopped by a filter (not a budget): refused. */
const GEMINI_STOPS_OK = new Set(['STOP', 'FINISH_REASON_UNSPECIFIED']);

/** Whether a backend asks for JSON mode: turned off once, with a warning, when the server rejects it. */
class JsonMode {
  constructor(
    public on: boolean,
    private readonly id: string,
    private readonly warn?: (m: string) => void,
  ) {}

  /** postJson's onJsonOff: the request's payload without JSON mode, or undefined when it was off already. */
  fallback(payload: () => unknown): (why: string) => unknown {
    return (why) => {
      if (!this.on) return undefined;
      this.on = false;
      this.warn?.(`warning: ${this.id} has no JSON mode (${why.slice(0, 120)}); asking for JSON in the prompt only`);
      return payload();
    };
  }
}

/** A remote teacher as a batch service sees it (batch.ts): where to send, with which key, what each request is. */
export interface BatchTarget {
  service: 'gemini' | 'openai';
  /** The base URL, without /v1 or /v1beta. */
  base: string;
  headers: Record<string, string>;
  model: string;
  /** The body of one online request (generateContent / chat completion), as the batch input file carries it. */
  body(req: TeacherRequest): unknown;
  /** One answer's outcome, read as the online path reads it (throws TeacherItemError). */
  read(body: unknown): TeacherAnswer;
}

/** Google's Gemini API: images inline, JSON response mode, thinking budget. Key from GEMINI_API_KEY. */
export class GeminiTeacher implements Teacher {
  readonly id: string;
  readonly local = false;
  readonly readsContext = false;
  readonly model: string;
  readonly maxTokens?: number;
  private readonly base: string;
  private readonly key: string;
  private readonly json: JsonMode;
  private readonly prompts: PromptCheck;
  constructor(
    model: string,
    private readonly opts: RemoteOptions & { baseUrl?: string; apiKey?: string } = {},
  ) {
    this.model = geminiModelName(model);
    this.id = `gemini:${this.model}`;
    this.maxTokens = opts.maxTokens;
    const key = opts.apiKey ?? process.env.GEMINI_API_KEY;
    if (!key) throw new VlakitError('E_USAGE', 'the gemini teacher needs an API key: set GEMINI_API_KEY');
    this.key = key;
    this.base = (opts.baseUrl ?? 'https://generativelanguage.googleapis.com').replace(/\/+$/, '').replace(/\/v1(beta)?$/, '');
    const url = parseUrl(this.base);
    if (!/(^|\.)googleapis\.com$/i.test(url.hostname) && !isLocalHost(url.hostname)) opts.onWarning?.(`warning: the Gemini API key goes to ${url.host}, which is not Google's API host`);
    checkKeyHost(url, 'Gemini API key', opts.onWarning);
    // Gemma models on the Gemini API have no JSON mode and no thinking: JSON is asked for in the prompt only
    this.json = new JsonMode(!/^gemma/i.test(this.model), this.id, opts.onWarning);
    this.prompts = new PromptCheck(opts.onWarning);
  }

  cacheIdentity(req: TeacherRequest): Record<string, unknown> {
    return { service: 'gemini', url: this.base, model: this.model, temperature: this.opts.temperature ?? 0.2, maxTokens: req.maxTokens ?? this.maxTokens, thinkingBudget: this.opts.thinkingBudget };
  }

  /** What a batch job needs: the service's base URL, the key header, one request's body, and how to read an answer. */
  batchTarget(): BatchTarget {
    return { service: 'gemini', base: this.base, headers: { 'x-goog-api-key': this.key }, model: this.model, body: (req) => this.payload(req), read: (body) => readGemini(body, 0, this.id) };
  }

  private payload(req: TeacherRequest): unknown {
    const contents = req.messages.map((m) => ({
      role: m.role === 'assistant' ? 'model' : 'user',
      parts: [...(m.images ?? []).map((im) => ({ inline_data: { mime_type: im.mime, data: im.b64 } })), { text: m.text }],
    }));
    const budget = req.maxTokens ?? this.maxTokens;
    return {
      contents,
      generationConfig: {
        temperature: this.opts.temperature ?? 0.2,
        ...(budget !== undefined ? { maxOutputTokens: budget } : {}),
        ...(req.json && this.json.on ? { responseMimeType: 'application/json' } : {}),
        ...(this.opts.thinkingBudget !== undefined ? { thinkingConfig: { thinkingBudget: this.opts.thinkingBudget } } : {}),
      },
    };
  }

  async complete(req: TeacherRequest, signal?: AbortSignal): Promise<TeacherAnswer> {
    const url = `${this.base}/v1beta/models/${encodeURIComponent(this.model)}:generateContent`;
    const { body, retries } = await postJson(url, this.payload(req), { 'x-goog-api-key': this.key }, {
      ...this.opts,
      signal,
      onJsonOff: this.json.fallback(() => this.payload(req)),
    });
    return readGemini(body, retries, this.id, (n) => this.prompts.check(n, req, this.id));
  }
}

/** The outcome of a Gemini `GenerateContentResponse`. */
export function readGemini(body: unknown, retries: number, id: string, onPromptTokens?: (n: number) => void): TeacherAnswer {
  const b = body as {
    candidates?: { content?: { parts?: { text?: string; thought?: boolean }[] }; finishReason?: string }[];
    usageMetadata?: Record<string, unknown>;
    promptFeedback?: { blockReason?: string; blockReasonMessage?: string };
  };
  const u = b.usageMetadata ?? {};
  const thoughts = usageNumber(u.thoughtsTokenCount);
  // thinking is billed as output: candidatesTokenCount leaves it out
  const usage: Usage = { inputTokens: usageNumber(u.promptTokenCount), outputTokens: usageNumber(u.candidatesTokenCount) + thoughts, ...(thoughts ? { thoughtTokens: thoughts } : {}) };
  onPromptTokens?.(usage.inputTokens);
  const cand = b.candidates?.[0];
  if (!cand) {
    const why = b.promptFeedback?.blockReason;
    if (why) throw new TeacherItemError(`blocked:${why}`, `gemini blocked the prompt (${why}${b.promptFeedback?.blockReasonMessage ? `: ${b.promptFeedback.blockReasonMessage}` : ''})`, usage, retries, id);
    throw new TeacherItemError('empty', 'gemini returned no candidate', usage, retries, id);
  }
  // thought summaries (parts with thought: true) are not the answer
  const text = (cand.content?.parts ?? []).filter((p) => !p.thought).map((p) => p.text ?? '').join('');
  const fr = cand.finishReason;
  if (fr === 'MAX_TOKENS') throw new TeacherItemError('truncated:MAX_TOKENS', `gemini stopped at the output budget (MAX_TOKENS) after ${usage.outputTokens} tokens (${thoughts} thinking)`, usage, retries, id);
  if (fr && !GEMINI_STOPS_OK.has(fr)) throw new TeacherItemError(`refused:${fr}`, `gemini stopped the answer (finish reason ${fr})`, usage, retries, id);
  if (!text.trim()) throw new TeacherItemError('empty', `gemini returned no text (finish reason ${fr ?? 'none'})`, usage, retries, id);
  return { text, usage, retries };
}

/** OpenAI reasoning models (o1, o3, o4-mini, gpt-5, ...) accept only the default temperature. */
export function isOpenAiReasoningModel(model: string): boolean {
  const m = model.toLowerCase().split('/').pop()!;
  return /^o\d/.test(m) || (/^gpt-5/.test(m) && !/-chat/.test(m));
}

function parseUrl(u: string): URL {
  try {
    return new URL(u);
  } catch {
    throw new VlakitError('E_USAGE', `invalid teacher URL "${u}"; expected e.g. http://localhost:8000`);
  }
}

/**
 * Any OpenAI-compatible chat completions server; images as data URLs. The key: OPENAI_API_KEY for api.openai.com
 * only; VLAKIT_TEACHER_API_KEY for any other server (vLLM --api-key, a hosted endpoint). Reasoning models get no
 * temperature; OpenAI's own API gets `max_completion_tokens`, other servers `max_tokens`.
 */
export class OpenAITeacher implements Teacher {
  readonly id: string;
  readonly local = false;
  readonly readsContext = false;
  readonly maxTokens?: number;
  private readonly base: string;
  private readonly key?: string;
  private readonly official: boolean;
  private readonly reasoning: boolean;
  private readonly json: JsonMode;
  private readonly prompts: PromptCheck;
  constructor(
    readonly model: string,
    private readonly opts: RemoteOptions & { baseUrl: string; apiKey?: string },
  ) {
    this.id = `openai:${model}`;
    this.maxTokens = opts.maxTokens;
    this.base = opts.baseUrl.replace(/\/+$/, '').replace(/\/v1$/, '');
    const url = parseUrl(this.base);
    this.official = url.hostname.toLowerCase() === 'api.openai.com';
    this.key = opts.apiKey ?? (this.official ? process.env.OPENAI_API_KEY : process.env.VLAKIT_TEACHER_API_KEY);
    if (this.key) checkKeyHost(url, 'API key', opts.onWarning);
    this.reasoning = isOpenAiReasoningModel(model);
    this.json = new JsonMode(true, this.id, opts.onWarning);
    this.prompts = new PromptCheck(opts.onWarning);
  }

  private get temperature(): number | undefined {
    return this.reasoning ? undefined : (this.opts.temperature ?? 0.2);
  }

  cacheIdentity(req: TeacherRequest): Record<string, unknown> {
    return { service: 'openai', url: this.base, model: this.model, temperature: this.temperature, maxTokens: req.maxTokens ?? this.maxTokens };
  }

  /** What a batch job needs: the service's base URL, the key header, one request's body, and how to read an answer. */
  batchTarget(): BatchTarget {
    return { service: 'openai', base: this.base, headers: this.key ? { authorization: `Bearer ${this.key}` } : {}, model: this.model, body: (req) => this.payload(req), read: (body) => readOpenAi(body, 0, this.id) };
  }

  private payload(req: TeacherRequest): unknown {
    const messages = req.messages.map((m) =>
      m.role === 'assistant'
        ? { role: 'assistant', content: m.text }
        : {
            role: 'user',
            content: [...(m.images ?? []).map((im) => ({ type: 'image_url', image_url: { url: `data:${im.mime};base64,${im.b64}` } })), { type: 'text', text: m.text }],
          },
    );
    const budget = req.maxTokens ?? this.maxTokens;
    const t = this.temperature;
    return {
      model: this.model,
      messages,
      ...(t !== undefined ? { temperature: t } : {}),
      ...(budget !== undefined ? { [this.official || this.reasoning ? 'max_completion_tokens' : 'max_tokens']: budget } : {}),
      ...(req.json && this.json.on ? { response_format: { type: 'json_object' } } : {}),
    };
  }

  async complete(req: TeacherRequest, signal?: AbortSignal): Promise<TeacherAnswer> {
    const { body, retries } = await postJson(`${this.base}/v1/chat/completions`, this.payload(req), this.key ? { authorization: `Bearer ${this.key}` } : {}, {
      ...this.opts,
      signal,
      onJsonOff: this.json.fallback(() => this.payload(req)),
    });
    return readOpenAi(body, retries, this.id, (n) => this.prompts.check(n, req, this.id));
  }
}

/** The outcome of a chat completion (OpenAI, vLLM with or without a reasoning parser, Ollama). */
export function readOpenAi(body: unknown, retries: number, id: string, onPromptTokens?: (n: number) => void): TeacherAnswer {
  const b = body as {
    choices?: { message?: { content?: string | null; refusal?: string | null; reasoning_content?: string | null; reasoning?: string | null }; finish_reason?: string | null }[];
    usage?: { prompt_tokens?: unknown; completion_tokens?: unknown; completion_tokens_details?: { reasoning_tokens?: unknown } };
  };
  const thoughts = usageNumber(b.usage?.completion_tokens_details?.reasoning_tokens);
  // completion_tokens already holds the reasoning tokens
  const usage: Usage = { inputTokens: usageNumber(b.usage?.prompt_tokens), outputTokens: usageNumber(b.usage?.completion_tokens), ...(thoughts ? { thoughtTokens: thoughts } : {}) };
  onPromptTokens?.(usage.inputTokens);
  const choice = b.choices?.[0];
  const msg = choice?.message;
  if (!choice || !msg) throw new TeacherItemError('empty', 'the server returned no choice', usage, retries, id);
  if (typeof msg.refusal === 'string' && msg.refusal.trim()) throw new TeacherItemError('refused:refusal', `the model refused: ${msg.refusal.slice(0, 200)}`, usage, retries, id);
  const fr = choice.finish_reason;
  if (fr === 'content_filter') throw new TeacherItemError('refused:content_filter', 'the answer was stopped by a content filter (finish_reason content_filter)', usage, retries, id);
  if (fr === 'length') throw new TeacherItemError('truncated:length', `the answer stopped at the output budget (finish_reason length) after ${usage.outputTokens} tokens`, usage, retries, id);
  const text = typeof msg.content === 'string' ? msg.content : '';
  if (!text.trim()) {
    const thinking = msg.reasoning_content ?? msg.reasoning;
    throw new TeacherItemError('empty', `the server returned no message content${typeof thinking === 'string' && thinking ? ' (only reasoning_content: the model never finished thinking)' : ''}`, usage, retries, id);
  }
  return { text, usage, retries };
}

/**
 * A child process answering one JSON line per request: it reads
 * `{"kind", "messages": [{"role", "text", "images": [{"mime", "b64"}]}], "json", "context"}` and writes
 * `{"text": "...", "usage": {"input_tokens": n, "output_tokens": n}}` (or `{"error": "..."}`).
 */
export class ExecTeacher implements Teacher {
  readonly id: string;
  readonly local = false;
  readonly readsContext = true;
  private readonly child: JsonLinesProcess;

  cacheIdentity(): Record<string, unknown> {
    return { service: 'exec', command: this.command };
  }

  constructor(readonly command: string) {
    this.id = `exec:${command}`;
    this.child = new JsonLinesProcess(command);
  }

  async complete(req: TeacherRequest): Promise<TeacherAnswer> {
    const line = await this.child.request(JSON.stringify(req));
    if (line === undefined) {
      const tail = this.child.stderrTail(1);
      throw new TeacherFatalError(`the teacher process ended${tail ? `: ${tail}` : ''}`, this.id);
    }
    let m: { text?: unknown; error?: unknown; usage?: Record<string, unknown> };
    try {
      m = JSON.parse(line);
    } catch {
      throw new TeacherItemError('rejected:exec', `the teacher process wrote a line that is not JSON: ${line.slice(0, 120)}`, undefined, 0, this.id);
    }
    if (typeof m.error === 'string') throw new TeacherItemError('rejected:exec', `the teacher process reported: ${m.error}`, undefined, 0, this.id);
    if (typeof m.text !== 'string') throw new TeacherItemError('rejected:exec', 'the teacher process answered without "text"', undefined, 0, this.id);
    return { text: m.text, usage: { inputTokens: usageNumber(m.usage?.input_tokens), outputTokens: usageNumber(m.usage?.output_tokens) }, retries: 0 };
  }

  close(): Promise<void> {
    return this.child.close();
  }
}
