/**
 * The two batch services as their documentation shapes them.
 *
 * OpenAI Batch API: a JSONL input file, one `{custom_id, method, url, body}` a line (at most 50,000 requests and
 * 200 MB), uploaded to `POST /v1/files` (multipart, purpose `batch`); `POST /v1/batches {input_file_id, endpoint,
 * completion_window: "24h"}`; `GET /v1/batches/{id}` until `status` is completed, expired, cancelled or failed;
 * then `output_file_id` and `error_file_id` read from `GET /v1/files/{id}/content`, one
 * `{custom_id, response: {status_code, body}, error}` a line.
 *
 * Gemini Batch Mode: a JSONL input file, one `{key, request}` a line (a GenerateContentRequest; files up to 2 GB),
 * uploaded with the Files API's resumable protocol (`POST /upload/v1beta/files`, then the upload URL it names);
 * `POST /v1beta/models/M:batchGenerateContent {batch: {display_name, input_config: {file_name}}}` answers an
 * operation named `batches/ID`; `GET /v1beta/batches/ID` until `metadata.state` is BATCH_STATE_SUCCEEDED, _FAILED,
 * _CANCELLED or _EXPIRED; then `metadata.output.responsesFile` read from
 * `GET /download/v1beta/FILE:download?alt=media`, one `{key, response}` or `{key, error}` a line.
 */
import { TeacherFatalError } from './outcome.js';
import type { BatchTarget } from './backends.js';
import { type RetryPolicy, backoffMs, classifyFailure, errorMessage, redact, sleep } from './http.js';

/** One line of a job's results: the answer body (read by the online path's reader), or why there is none. */
export type BatchResult = { key: string; body: unknown } | { key: string; error: string };

export interface JobStatus {
  /** running: poll again; ended: read `files` (some may hold partial results, e.g. an expired OpenAI batch). */
  state: 'running' | 'ended';
  /** The service's state and counts, for the log. */
  detail: string;
  /** Result files to download (output, errors). */
  files: string[];
}

export interface BatchService {
  readonly name: 'gemini' | 'openai';
  /** The documented limits of one job's input file. */
  readonly maxRequests: number;
  readonly maxBytes: number;
  /** One request as a line of the input file (no newline). */
  line(key: string, body: unknown): string;
  /** Uploads the input file and creates the job; the job's id. */
  submit(data: Uint8Array, label: string, signal?: AbortSignal): Promise<string>;
  status(id: string, signal?: AbortSignal): Promise<JobStatus>;
  download(file: string, signal?: AbortSignal): Promise<string>;
  results(text: string): BatchResult[];
}

interface Sent {
  status: number;
  text: string;
  headers: Headers;
}

/**
 * One control call (upload, create, poll, download), retried as online requests are (429, 5xx, network errors);
 * anything else the service refuses stops the job: a batch that cannot be submitted or read is not an item outcome.
 */
async function send(url: string, init: RequestInit, policy: RetryPolicy & { signal?: AbortSignal }, what: string): Promise<Sent> {
  const max = policy.retries ?? 6;
  for (let attempt = 0; ; attempt++) {
    let why: string;
    let delayMs: number | undefined;
    try {
      const timeout = AbortSignal.timeout(policy.timeoutMs ?? 300_000);
      const res = await fetch(url, { ...init, signal: policy.signal ? AbortSignal.any([policy.signal, timeout]) : timeout });
      const text = await res.text();
      if (res.ok) return { status: res.status, text, headers: res.headers };
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        body = undefined;
      }
      const f = { status: res.status, text, body, headers: res.headers };
      const v = classifyFailure(f);
      if (v.kind !== 'retry') throw new TeacherFatalError(`${what}: the batch service refused it (HTTP ${res.status}): ${errorMessage(f)}`, redact(url));
      why = v.why;
      delayMs = v.delayMs;
    } catch (err) {
      if (err instanceof TeacherFatalError) throw err;
      if (policy.signal?.aborted) throw policy.signal.reason;
      const e = err as Error;
      why = e.name === 'TimeoutError' ? 'no answer in time' : `network error (${(e.cause as Error)?.message ?? e.message})`;
    }
    if (attempt >= max) throw new TeacherFatalError(`${what}: giving up after ${attempt + 1} attempts; last: ${why}`, redact(url));
    await sleep(delayMs ?? backoffMs(attempt + 1, null, policy), policy.signal);
  }
}

function json(s: Sent, what: string): Record<string, unknown> {
  try {
    return JSON.parse(s.text) as Record<string, unknown>;
  } catch {
    throw new TeacherFatalError(`${what}: the batch service answered ${s.status} with a body that is not JSON: ${s.text.slice(0, 120)}`);
  }
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v ? v : undefined;
}

function lines(text: string): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const l of text.split('\n')) {
    if (!l.trim()) continue;
    try {
      out.push(JSON.parse(l) as Record<string, unknown>);
    } catch {
      // a line that cannot be read names no request: its request is asked online
    }
  }
  return out;
}

function errorText(e: unknown): string {
  const o = e as { message?: unknown; code?: unknown } | undefined;
  return str(o?.message) ?? (o ? JSON.stringify(o).slice(0, 200) : 'no result');
}

/** The OpenAI Batch API over chat completions (api.openai.com, or a server that offers the same API). */
export function openaiBatch(t: BatchTarget, policy: RetryPolicy = {}): BatchService {
  const api = (p: string) => `${t.base}/v1${p}`;
  return {
    name: 'openai',
    maxRequests: 50_000,
    maxBytes: 200 * 1024 * 1024,
    line: (key, body) => JSON.stringify({ custom_id: key, method: 'POST', url: '/v1/chat/completions', body }),
    async submit(data, label, signal) {
      const form = new FormData();
      form.append('purpose', 'batch');
      form.append('file', new Blob([data], { type: 'application/jsonl' }), `${label}.jsonl`);
      const file = json(await send(api('/files'), { method: 'POST', headers: t.headers, body: form }, { ...policy, signal }, 'uploading the batch input'), 'uploading the batch input');
      const fileId = str(file.id);
      if (!fileId) throw new TeacherFatalError(`uploading the batch input: the answer names no file id: ${JSON.stringify(file).slice(0, 160)}`);
      const body = JSON.stringify({ input_file_id: fileId, endpoint: '/v1/chat/completions', completion_window: '24h', metadata: { vlakit_job: label } });
      const batch = json(await send(api('/batches'), { method: 'POST', headers: { ...t.headers, 'content-type': 'application/json' }, body }, { ...policy, signal }, 'creating the batch'), 'creating the batch');
      const id = str(batch.id);
      if (!id) throw new TeacherFatalError(`creating the batch: the answer names no batch id: ${JSON.stringify(batch).slice(0, 160)}`);
      return id;
    },
    async status(id, signal) {
      const b = json(await send(api(`/batches/${encodeURIComponent(id)}`), { headers: t.headers }, { ...policy, signal }, `polling batch ${id}`), `polling batch ${id}`);
      const status = str(b.status) ?? 'unknown';
      const c = (b.request_counts ?? {}) as { total?: number; completed?: number; failed?: number };
      const errs = ((b.errors as { data?: { message?: string }[] } | null)?.data ?? []).map((e) => e.message).filter(Boolean);
      const detail = `${status}, ${c.completed ?? 0}/${c.total ?? '?'} done, ${c.failed ?? 0} failed${errs.length ? ` (${errs.slice(0, 2).join('; ')})` : ''}`;
      const ended = ['completed', 'expired', 'cancelled', 'failed'].includes(status);
      return { state: ended ? 'ended' : 'running', detail, files: [str(b.output_file_id), str(b.error_file_id)].filter((f): f is string => !!f) };
    },
    async download(file, signal) {
      return (await send(api(`/files/${encodeURIComponent(file)}/content`), { headers: t.headers }, { ...policy, signal }, `downloading batch results ${file}`)).text;
    },
    results(text) {
      return lines(text).flatMap((l): BatchResult[] => {
        const key = str(l.custom_id);
        if (!key) return [];
        const r = l.response as { status_code?: number; body?: unknown } | null | undefined;
        if (r && r.status_code === 200 && r.body) return [{ key, body: r.body }];
        const why = l.error ? errorText(l.error) : r ? `HTTP ${r.status_code}: ${errorText((r.body as { error?: unknown } | undefined)?.error ?? r.body)}` : 'no response';
        return [{ key, error: why }];
      });
    },
  };
}

/** Gemini Batch Mode (generateContent requests in an uploaded JSONL file). */
export function geminiBatch(t: BatchTarget, policy: RetryPolicy = {}): BatchService {
  const origin = new URL(t.base).origin;
  return {
    name: 'gemini',
    maxRequests: Number.MAX_SAFE_INTEGER,
    maxBytes: 2 * 1024 * 1024 * 1024,
    line: (key, body) => JSON.stringify({ key, request: body }),
    async submit(data, label, signal) {
      const start = await send(
        `${t.base}/upload/v1beta/files`,
        {
          method: 'POST',
          headers: { ...t.headers, 'content-type': 'application/json', 'x-goog-upload-protocol': 'resumable', 'x-goog-upload-command': 'start', 'x-goog-upload-header-content-length': String(data.byteLength), 'x-goog-upload-header-content-type': 'application/jsonl' },
          body: JSON.stringify({ file: { display_name: label } }),
        },
        { ...policy, signal },
        'starting the batch input upload',
      );
      const uploadUrl = start.headers.get('x-goog-upload-url');
      if (!uploadUrl) throw new TeacherFatalError('starting the batch input upload: the answer has no x-goog-upload-url header');
      // the key goes only to the service's own origin
      const keyHeaders = new URL(uploadUrl).origin === origin ? t.headers : {};
      const up = json(
        await send(uploadUrl, { method: 'POST', headers: { ...keyHeaders, 'x-goog-upload-offset': '0', 'x-goog-upload-command': 'upload, finalize' }, body: data }, { ...policy, signal }, 'uploading the batch input'),
        'uploading the batch input',
      );
      const fileName = str((up.file as { name?: unknown } | undefined)?.name);
      if (!fileName) throw new TeacherFatalError(`uploading the batch input: the answer names no file: ${JSON.stringify(up).slice(0, 160)}`);
      const body = JSON.stringify({ batch: { display_name: label, input_config: { file_name: fileName } } });
      const op = json(
        await send(`${t.base}/v1beta/models/${encodeURIComponent(t.model)}:batchGenerateContent`, { method: 'POST', headers: { ...t.headers, 'content-type': 'application/json' }, body }, { ...policy, signal }, 'creating the batch'),
        'creating the batch',
      );
      const id = str(op.name);
      if (!id) throw new TeacherFatalError(`creating the batch: the answer names no batch: ${JSON.stringify(op).slice(0, 160)}`);
      return id;
    },
    async status(id, signal) {
      const op = json(await send(`${t.base}/v1beta/${id}`, { headers: t.headers }, { ...policy, signal }, `polling ${id}`), `polling ${id}`);
      const meta = (op.metadata ?? {}) as { state?: string; output?: { responsesFile?: string }; batchStats?: Record<string, unknown> };
      const resp = (op.response ?? {}) as { responsesFile?: string; output?: { responsesFile?: string } };
      const state = (str(meta.state) ?? 'UNKNOWN').replace(/^(BATCH|JOB)_STATE_/, '');
      const s = meta.batchStats ?? {};
      const detail = `${state}, ${String(s.successfulRequestCount ?? 0)}/${String(s.requestCount ?? '?')} done, ${String(s.failedRequestCount ?? 0)} failed${op.error ? ` (${errorText(op.error)})` : ''}`;
      const ended = ['SUCCEEDED', 'FAILED', 'CANCELLED', 'EXPIRED'].includes(state);
      const file = str(meta.output?.responsesFile) ?? str(resp.responsesFile) ?? str(resp.output?.responsesFile);
      return { state: ended ? 'ended' : 'running', detail, files: ended && file ? [file] : [] };
    },
    async download(file, signal) {
      return (await send(`${t.base}/download/v1beta/${file}:download?alt=media`, { headers: t.headers }, { ...policy, signal }, `downloading batch results ${file}`)).text;
    },
    results(text) {
      return lines(text).flatMap((l): BatchResult[] => {
        const key = str(l.key);
        if (!key) return [];
        if (l.response && typeof l.response === 'object') return [{ key, body: l.response }];
        return [{ key, error: errorText(l.error ?? l.status) }];
      });
    },
  };
}
