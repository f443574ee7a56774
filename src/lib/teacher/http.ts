/**
 * JSON over HTTP with retries: network errors, timeouts, 408, 409, 429 and 5xx are retried with exponential
 * backoff and full jitter, honouring Retry-After; any other 4xx is a clear error at once. A rate limiter spaces
 * request starts to at most `rpm` a minute across all concurrent callers.
 */
import { VlakitError } from '../errors.js';

export interface RetryPolicy {
  /** Retries after the first attempt (default 6). */
  retries?: number;
  /** First backoff, ms (default 1000); doubles each retry up to `maxDelayMs`. */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Per-request timeout, ms (default 120000). */
  timeoutMs?: number;
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

/**
 * Waits `ms`, or rejects with the signal's reason. Each wait listens on a signal of its own that follows the
 * caller's (AbortSignal.any adds no listener to its sources), and removes its listener when the time is up: many
 * concurrent or successive waits on one signal neither leak listeners nor trip MaxListenersExceededWarning.
 */
function sleep(ms: number, signal?: AbortSignal): Promise<void> {
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

/**
 * POSTs JSON and returns the parsed JSON answer.
 * @example const { body } = await postJson(url, { model }, { Authorization: 'Bearer k' }, { retries: 3 })
 */
export async function postJson(
  url: string,
  payload: unknown,
  headers: Record<string, string>,
  policy: RetryPolicy & { limiter?: RateLimiter; signal?: AbortSignal; onRetry?: (why: string) => void } = {},
): Promise<JsonResponse> {
  const body = JSON.stringify(payload);
  const max = policy.retries ?? 6;
  for (let attempt = 0; ; attempt++) {
    await policy.limiter?.wait(policy.signal);
    let why: string;
    let retryAfter: string | null = null;
    try {
      const timeout = AbortSignal.timeout(policy.timeoutMs ?? 120_000);
      const signal = policy.signal ? AbortSignal.any([policy.signal, timeout]) : timeout;
      const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body, signal });
      const text = await res.text();
      if (res.ok) {
        try {
          return { body: JSON.parse(text), retries: attempt };
        } catch {
          why = `the server answered ${res.status} with a body that is not JSON: ${text.slice(0, 120)}`;
          throw new VlakitError('E_TEACHER', why, { file: redact(url) });
        }
      }
      if (!RETRYABLE.has(res.status) && res.status < 500) {
        throw new VlakitError('E_TEACHER', `the server refused the request: HTTP ${res.status}: ${text.slice(0, 300)}`, { file: redact(url) });
      }
      why = `HTTP ${res.status}`;
      retryAfter = res.headers.get('retry-after');
    } catch (err) {
      if (err instanceof VlakitError) throw err;
      if (policy.signal?.aborted) throw policy.signal.reason;
      const e = err as Error;
      why = e.name === 'TimeoutError' ? `no answer within ${policy.timeoutMs ?? 120_000} ms` : `network error (${(e.cause as Error)?.message ?? e.message})`;
    }
    if (attempt >= max) throw new VlakitError('E_TEACHER', `giving up after ${attempt + 1} attempts; last: ${why}`, { file: redact(url) });
    policy.onRetry?.(why);
    await sleep(backoffMs(attempt + 1, retryAfter, policy), policy.signal);
  }
}

/** Drops query-string secrets from URLs in messages. */
export function redact(url: string): string {
  return url.replace(/([?&]key=)[^&]+/, '$1***');
}
