/**
 * JSON over HTTP with retries. Each answer that is not 2xx is judged by the service's rules (`classifyFailure`):
 * retried (network errors, timeouts, 408, 409, 429 and 5xx, after the service's own delay: `retry-after-ms`,
 * `Retry-After`, or Gemini's `RetryInfo.retryDelay` in the body, else exponential backoff with full jitter),
 * fatal for the job (authentication, quota exhausted, model not found), JSON mode turned off and asked again, or
 * refused for this one item (any other 4xx). A rate limiter spaces request starts to at most `rpm` a minute
 * across all concurrent callers.
 */
import { VlakitError } from '../errors.js';
import { TeacherFatalError, TeacherItemError } from './outcome.js';

export interface RetryPolicy {
  /** Retries after the first attempt (default 6). */
  retries?: number;
  /** First backoff, ms (default 1000); doubles each retry up to `maxDelayMs`. */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Per-request timeout, ms (default 120000). */
  timeoutMs?: number;
  /** A wait asked by the service longer than this (ms, default 15 min) stops the job instead. */
  maxServerDelayMs?: number;
  /** Random source for jitter (tests pass a fixed one). */
  random?: () => number;
}

const RETRYABLE = new Set([408, 409, 429]);

/** Delay before retry `attempt` (1-based): full jitter over an exponential cap, or the server's Retry-After. */
export function backoffMs(attempt: number, retryAfter: string | null, p: RetryPolicy = {}): number {
  if (retryAfter) {
    const secs = Number(retryAfter);
    if (Number.isFinite(secs) && secs >= 0) return secs * 1000;
    const date = Date.parse(retryAfter);
    if (Number.isFinite(date)) return Math.max(0, date - Date.now());
  }
  const cap = Math.min(p.maxDelayMs ?? 60_000, (p.baseDelayMs ?? 1000) * 2 ** (attempt - 1));
  return (p.random ?? Math.random)() * cap;
}

/** A protobuf Duration as JSON ("36s", "1.5s", "0.250s") in ms; undefined if it is not one. */
export function durationMs(v: unknown): number | undefined {
  if (typeof v !== 'string') return undefined;
  const m = /^\s*(\d+(?:\.\d+)?)s\s*$/.exec(v);
  return m ? Number(m[1]) * 1000 : undefined;
}

/** A non-2xx answer, as the classifier sees it. */
export interface HttpFailure {
  status: number;
  text: string;
  /** The body parsed as JSON, when it is JSON. */
  body: unknown;
  headers: Headers;
}

export type FailureVerdict =
  | { kind: 'retry'; why: string; delayMs?: number }
  | { kind: 'fatal'; why: string }
  | { kind: 'item'; reason: string; why: string }
  /** The request used a JSON mode the server does not support: ask again without it (the caller rebuilds it). */
  | { kind: 'json-off'; why: string };

/** The error message of an error body: OpenAI/vLLM/Ollama `{error: {message}}` or `{message}`, Gemini `{error: {message, status}}`. */
export function errorMessage(f: HttpFailure): string {
  const b = f.body as { error?: { message?: unknown } | string; message?: unknown } | undefined;
  const m = typeof b?.error === 'object' ? b.error?.message : typeof b?.error === 'string' ? b.error : b?.message;
  return (typeof m === 'string' ? m : f.text).replace(/\s+/g, ' ').trim().slice(0, 300);
}

interface GoogleDetail {
  '@type'?: string;
  retryDelay?: unknown;
  reason?: unknown;
  violations?: { quotaId?: unknown; quotaMetric?: unknown }[];
}

/**
 * The rules every service shares, with the Gemini and OpenAI specifics read from the body:
 * 401/403 and invalid keys are fatal; 404 and "model ... not found / does not exist" are fatal; a 429 for a
 * per-day quota (Gemini QuotaFailure `...PerDay...`) or OpenAI `insufficient_quota` is fatal, any other 429 is
 * retried after the delay the service names; 408/409/5xx are retried; JSON-mode complaints turn JSON mode off;
 * any other 4xx is refused for this item only.
 */
export function classifyFailure(f: HttpFailure): FailureVerdict {
  const msg = errorMessage(f);
  const err = (f.body as { error?: { status?: unknown; code?: unknown; type?: unknown; details?: GoogleDetail[] } } | undefined)?.error;
  const details = Array.isArray(err?.details) ? err.details : [];
  const http = `HTTP ${f.status}`;
  if (f.status === 401 || f.status === 403 || details.some((d) => d.reason === 'API_KEY_INVALID') || /api key not valid|invalid api key|incorrect api key/i.test(msg)) {
    return { kind: 'fatal', why: `the service refused the credentials (${http}): ${msg}` };
  }
  if (f.status === 404 || /\bmodel\b.*\b(not found|does not exist)\b/i.test(msg)) return { kind: 'fatal', why: `model not found (${http}): ${msg}` };
  if (f.status === 429) {
    const daily = details.flatMap((d) => d.violations ?? []).find((v) => /PerDay/i.test(String(v.quotaId ?? '')));
    if (daily) return { kind: 'fatal', why: `the daily quota is exhausted (${String(daily.quotaId)}): ${msg}` };
    if (err?.code === 'insufficient_quota' || err?.type === 'insufficient_quota') return { kind: 'fatal', why: `the account's quota is exhausted (insufficient_quota): ${msg}` };
    const body = details.map((d) => durationMs(d.retryDelay)).find((d) => d !== undefined);
    const ms = Number(f.headers.get('retry-after-ms'));
    const header = Number.isFinite(ms) && ms >= 0 && f.headers.get('retry-after-ms') !== null ? ms : undefined;
    const after = f.headers.get('retry-after');
    const delayMs = header ?? body ?? (after !== null ? backoffMs(1, after) : undefined);
    return { kind: 'retry', why: http, delayMs };
  }
  if (RETRYABLE.has(f.status) || f.status >= 500) {
    const after = f.headers.get('retry-after');
    return { kind: 'retry', why: http, delayMs: after !== null ? backoffMs(1, after) : undefined };
  }
  if (f.status === 400 && /response_format|json[ _]?mode|response_?mime_?type|json_object/i.test(msg)) return { kind: 'json-off', why: msg };
  const hint = /at most \d+ image/i.test(msg)
    ? ' (vLLM allows one image per prompt unless started with --limit-mm-per-prompt, e.g. \'{"image": 8}\')'
    : /maximum context length|context length/i.test(msg)
      ? ' (the prompt and the output budget exceed the server\'s context: a smaller --max-tokens or --frames, or vLLM --max-model-len)'
      : '';
  return { kind: 'item', reason: `rejected:${f.status}`, why: `the server refused the request: ${http}: ${msg}${hint}` };
}

/**
 * Waits `ms`, or rejects with the signal's reason. Each wait listens on a signal of its own that follows the
 * caller's (AbortSignal.any adds no listener to its sources), and removes its listener when the time is up: many
 * concurrent or successive waits on one signal neither leak listeners nor trip MaxListenersExceededWarning.
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.reject(signal.reason);
  const own = signal && AbortSignal.any([signal]);
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(t);
      reject(own!.reason);
    };
    const t = setTimeout(() => {
      own?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    own?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Spaces request starts so that at most `rpm` start in any minute. */
export class RateLimiter {
  private next = 0;
  constructor(private readonly rpm?: number) {}
  async wait(signal?: AbortSignal): Promise<void> {
    if (!this.rpm) return;
    const gap = 60_000 / this.rpm;
    const now = Date.now();
    const at = Math.max(now, this.next);
    this.next = at + gap;
    if (at > now) await sleep(at - now, signal);
  }
}

export interface JsonResponse {
  body: unknown;
  retries: number;
}

export interface PostPolicy extends RetryPolicy {
  limiter?: RateLimiter;
  signal?: AbortSignal;
  onRetry?: (why: string) => void;
  /** Judges a non-2xx answer (default `classifyFailure`). */
  classify?: (f: HttpFailure) => FailureVerdict;
}

/**
 * POSTs JSON and returns the parsed JSON answer. `payload` may be a function of whether JSON mode is still on
 * (it goes off, once, when the server says it does not support it).
 * Throws TeacherItemError (this item only) or TeacherFatalError (the job).
 * @example const { body } = await postJson(url, { model }, { Authorization: 'Bearer k' }, { retries: 3 })
 */
export async function postJson(url: string, payload: unknown, headers: Record<string, string>, policy: PostPolicy & { onJsonOff?: (why: string) => unknown } = {}): Promise<JsonResponse> {
  let body = JSON.stringify(payload);
  const max = policy.retries ?? 6;
  const where = redact(url);
  let retries = 0;
  for (let attempt = 0; ; attempt++) {
    await policy.limiter?.wait(policy.signal);
    let why: string;
    let delayMs: number | undefined;
    try {
      const timeout = AbortSignal.timeout(policy.timeoutMs ?? 120_000);
      const signal = policy.signal ? AbortSignal.any([policy.signal, timeout]) : timeout;
      const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body, signal });
      const text = await res.text();
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      if (res.ok) {
        if (json === undefined) throw new TeacherItemError('rejected:not-json', `the server answered ${res.status} with a body that is not JSON: ${text.slice(0, 120)}`, undefined, retries, where);
        return { body: json, retries };
      }
      const v = (policy.classify ?? classifyFailure)({ status: res.status, text, body: json, headers: res.headers });
      if (v.kind === 'fatal') throw new TeacherFatalError(v.why, where);
      if (v.kind === 'item') throw new TeacherItemError(v.reason, v.why, undefined, retries, where);
      if (v.kind === 'json-off') {
        const next = policy.onJsonOff?.(v.why);
        if (next === undefined) throw new TeacherItemError(`rejected:${res.status}`, `the server refused the request: HTTP ${res.status}: ${v.why}`, undefined, retries, where);
        body = JSON.stringify(next);
        attempt -= 1; // not a retry: the same attempt, asked the way the server supports
        continue;
      }
      why = v.why;
      delayMs = v.delayMs;
      if (delayMs !== undefined && delayMs > (policy.maxServerDelayMs ?? 15 * 60_000)) {
        throw new TeacherFatalError(`the service asks to wait ${Math.round(delayMs / 1000)} s before the next request (${why}); stopping instead`, where);
      }
    } catch (err) {
      if (err instanceof VlakitError) throw err;
      if (policy.signal?.aborted) throw policy.signal.reason;
      const e = err as Error;
      why = e.name === 'TimeoutError' ? `no answer within ${policy.timeoutMs ?? 120_000} ms` : `network error (${(e.cause as Error)?.message ?? e.message})`;
    }
    if (attempt >= max) throw new TeacherItemError('failed', `giving up after ${attempt + 1} attempts; last: ${why}`, undefined, retries, where);
    policy.onRetry?.(why);
    retries += 1;
    await sleep(delayMs ?? backoffMs(attempt + 1, null, policy), policy.signal);
  }
}

/** Drops query-string secrets from URLs in messages. */
export function redact(url: string): string {
  return url.replace(/([?&]key=)[^&]+/, '$1***');
}

/** Hosts that are this machine: keys may go there over plain http. */
export function isLocalHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h.endsWith('.localhost') || /^127\./.test(h) || h === '::1' || h === '0.0.0.0' || h === 'host.docker.internal';
}
