/**
 * A fake batch service with the documented shapes of the OpenAI Batch API (POST /v1/files multipart purpose=batch,
 * POST /v1/batches, GET /v1/batches/{id}, GET /v1/files/{id}/content with {custom_id, response: {status_code, body},
 * error} lines) and Gemini Batch Mode (resumable upload to /upload/v1beta/files, POST
 * /v1beta/models/M:batchGenerateContent answering an operation `batches/N`, GET /v1beta/batches/N with
 * metadata.state BATCH_STATE_*, metadata.output.responsesFile, GET /download/v1beta/FILE:download?alt=media with
 * {key, response} / {key, error} lines). It also answers the online endpoints (chat completions, generateContent),
 * so a test sees every request a run pays for, batch or online.
 *
 * A reasoning answer names the request's first image (`frame <sha256 of its base64, 12 hex>`), so a test can check
 * that each answer reached the step it was asked for.
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { type Fault, REASONING, answerReply, listenLocal, planFor, promptSize } from './fake-server.js';

/** What the fake does with one request of a batch: answer (with a fault of the online fake), or an error line. */
export type LineFate = Fault | 'error-line';

export interface FakeBatch {
  url: string;
  /** Jobs stay running until this is true. */
  release: boolean;
  /** The fate of the n-th request line the fake processes (0-based, over all jobs), default none. */
  fate: (n: number, body: Record<string, unknown>) => LineFate;
  uploads: number;
  created: string[];
  polls: number;
  onPoll?: () => void;
  /** Answers with usage (billed), per request body hash, batch and online. */
  billed: Map<string, { batch: number; online: number }>;
  /** Billed tokens, batch and online. */
  tokens: { batch: { input: number; output: number }; online: { input: number; output: number } };
  /** Online requests seen, and batch request lines processed. */
  online: number;
  processed: number;
  close(): Promise<void>;
}

async function readRaw(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

function hash(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

/** The first image's base64 of a request body. */
function firstImage(body: Record<string, unknown>, gemini: boolean): string {
  if (gemini) {
    for (const c of body.contents as { parts: { inline_data?: { data: string } }[] }[]) for (const p of c.parts) if (p.inline_data) return p.inline_data.data;
    return '';
  }
  for (const m of body.messages as { content: string | { type: string; image_url?: { url: string } }[] }[]) {
    if (typeof m.content === 'string') continue;
    for (const p of m.content) if (p.image_url) return p.image_url.url.replace(/^data:[^,]*,/, '');
  }
  return '';
}

/** The fake's reasoning answer for an image: REASONING with the observation naming the frame. */
export function frameAnswer(b64: string): string {
  return JSON.stringify({ ...JSON.parse(REASONING), observation: `frame ${hash(b64).slice(0, 12)}` });
}

interface Job {
  id: string;
  service: 'openai' | 'gemini';
  model: string;
  lines: string[];
  out?: string;
  err?: string;
  counts: { total: number; completed: number; failed: number };
}

export async function startFakeBatch(): Promise<FakeBatch> {
  const files = new Map<string, string>();
  const uploads = new Map<string, string>();
  const jobs = new Map<string, Job>();
  let processed = 0;
  const state: Omit<FakeBatch, 'url' | 'close'> = {
    release: false,
    fate: () => 'none',
    uploads: 0,
    created: [],
    polls: 0,
    billed: new Map(),
    tokens: { batch: { input: 0, output: 0 }, online: { input: 0, output: 0 } },
    online: 0,
    processed: 0,
  };

  /** One answer (status, body) for a request body, counted as billed when it carries usage. */
  const answer = (body: Record<string, unknown>, gemini: boolean, fault: Fault, via: 'batch' | 'online'): [number, unknown] => {
    const isPlan = /Action log:/.test(JSON.stringify(body));
    const text = isPlan ? planFor(extractFirstText(body, gemini), 'none') : frameAnswer(firstImage(body, gemini));
    const { chars, images } = promptSize(body, gemini);
    const [status, , payload] = answerReply(fault, gemini, text, Math.ceil(chars / 4) + 258 * images);
    const p = payload as { usage?: { prompt_tokens: number; completion_tokens: number }; usageMetadata?: { promptTokenCount: number; candidatesTokenCount?: number; thoughtsTokenCount?: number } };
    const input = p.usage?.prompt_tokens ?? p.usageMetadata?.promptTokenCount ?? 0;
    const output = p.usage?.completion_tokens ?? (p.usageMetadata ? (p.usageMetadata.candidatesTokenCount ?? 0) + (p.usageMetadata.thoughtsTokenCount ?? 0) : 0);
    state.tokens[via].input += input;
    state.tokens[via].output += output;
    const h = hash(JSON.stringify(body));
    const b = state.billed.get(h) ?? { batch: 0, online: 0 };
    b[via] += 1;
    state.billed.set(h, b);
    return [status, payload];
  };

  /** Runs a job's lines once, when the test releases the jobs. */
  const finish = (job: Job) => {
    if (job.out !== undefined) return;
    const out: string[] = [];
    const err: string[] = [];
    for (const line of job.lines) {
      const l = JSON.parse(line) as { custom_id?: string; key?: string; body?: Record<string, unknown>; request?: Record<string, unknown> };
      const body = (job.service === 'openai' ? l.body : l.request)!;
      const fate = state.fate(processed++, body);
      state.processed = processed;
      if (fate === 'error-line') {
        job.counts.failed += 1;
        if (job.service === 'openai') err.push(JSON.stringify({ id: `batch_req_${processed}`, custom_id: l.custom_id, response: null, error: { code: 'server_error', message: 'The request could not be processed.' } }));
        else out.push(JSON.stringify({ key: l.key, error: { code: 13, message: 'Internal error encountered.', status: 'INTERNAL' } }));
        continue;
      }
      const [status, payload] = answer(body, job.service === 'gemini', fate, 'batch');
      job.counts.completed += 1;
      if (job.service === 'openai') out.push(JSON.stringify({ id: `batch_req_${processed}`, custom_id: l.custom_id, response: { status_code: status, request_id: `req_${processed}`, body: payload }, error: null }));
      else out.push(JSON.stringify({ key: l.key, response: payload }));
    }
    job.out = `file-out-${job.id.replace(/\W/g, '')}`;
    files.set(job.out, out.map((s) => `${s}\n`).join(''));
    if (err.length) {
      job.err = `file-err-${job.id.replace(/\W/g, '')}`;
      files.set(job.err, err.map((s) => `${s}\n`).join(''));
    }
  };

  const server: Server = createServer(async (req: IncomingMessage, res: ServerResponse) => {
    const raw = await readRaw(req);
    const url = new URL(req.url!, 'http://x');
    const send = (status: number, body: unknown, headers: Record<string, string> = {}) => res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(typeof body === 'string' ? body : JSON.stringify(body));
    const p = url.pathname;
    // online endpoints
    if (req.method === 'POST' && (p === '/v1/chat/completions' || p.endsWith(':generateContent'))) {
      state.online += 1;
      const body = JSON.parse(raw.toString('utf8')) as Record<string, unknown>;
      const [status, payload] = answer(body, p.endsWith(':generateContent'), 'none', 'online');
      return send(status, payload);
    }
    // OpenAI
    if (req.method === 'POST' && p === '/v1/files') {
      const form = await new Request('http://x/', { method: 'POST', headers: { 'content-type': req.headers['content-type']! }, body: raw }).formData();
      if (form.get('purpose') !== 'batch') return send(400, { error: { message: 'purpose must be batch', type: 'invalid_request_error' } });
      const file = form.get('file') as File;
      const id = `file-${++state.uploads}`;
      files.set(id, await file.text());
      return send(200, { id, object: 'file', bytes: file.size, created_at: 0, filename: file.name, purpose: 'batch' });
    }
    if (req.method === 'POST' && p === '/v1/batches') {
      const b = JSON.parse(raw.toString('utf8')) as { input_file_id: string; endpoint: string; completion_window: string };
      if (b.endpoint !== '/v1/chat/completions' || b.completion_window !== '24h' || !files.has(b.input_file_id)) return send(400, { error: { message: 'bad batch', type: 'invalid_request_error' } });
      const lines = files.get(b.input_file_id)!.split('\n').filter((l) => l.trim());
      for (const l of lines) {
        const o = JSON.parse(l) as { custom_id?: string; method?: string; url?: string };
        if (!o.custom_id || o.method !== 'POST' || o.url !== '/v1/chat/completions') return send(400, { error: { message: `bad line ${l.slice(0, 80)}`, type: 'invalid_request_error' } });
      }
      const id = `batch_${state.created.length + 1}`;
      jobs.set(id, { id, service: 'openai', model: '', lines, counts: { total: lines.length, completed: 0, failed: 0 } });
      state.created.push(id);
      return send(200, { id, object: 'batch', endpoint: b.endpoint, status: 'validating', input_file_id: b.input_file_id, request_counts: { total: 0, completed: 0, failed: 0 } });
    }
    let m = /^\/v1\/batches\/([^/]+)$/.exec(p);
    if (req.method === 'GET' && m && jobs.has(m[1])) {
      state.polls += 1;
      state.onPoll?.();
      const job = jobs.get(m[1])!;
      if (state.release) finish(job);
      const done = job.out !== undefined;
      return send(200, { id: job.id, object: 'batch', status: done ? 'completed' : 'in_progress', output_file_id: done ? job.out : null, error_file_id: done ? (job.err ?? null) : null, request_counts: job.counts, errors: null });
    }
    m = /^\/v1\/files\/([^/]+)\/content$/.exec(p);
    if (req.method === 'GET' && m && files.has(m[1])) return res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(files.get(m[1]));
    // Gemini
    if (req.method === 'POST' && p === '/upload/v1beta/files' && req.headers['x-goog-upload-command'] === 'start') {
      const id = `up${uploads.size + 1}`;
      uploads.set(id, '');
      return send(200, {}, { 'x-goog-upload-url': `http://${req.headers.host}/upload/v1beta/files?upload_id=${id}`, 'x-goog-upload-status': 'active' });
    }
    if (req.method === 'POST' && p === '/upload/v1beta/files' && url.searchParams.has('upload_id')) {
      if (req.headers['x-goog-upload-command'] !== 'upload, finalize' || req.headers['x-goog-upload-offset'] !== '0') return send(400, { error: { code: 400, message: 'bad upload', status: 'INVALID_ARGUMENT' } });
      const name = `files/in${++state.uploads}`;
      files.set(name, raw.toString('utf8'));
      return send(200, { file: { name, mimeType: 'application/jsonl', sizeBytes: String(raw.length), state: 'ACTIVE' } });
    }
    m = /^\/v1beta\/models\/([^/:]+):batchGenerateContent$/.exec(p);
    if (req.method === 'POST' && m) {
      const b = JSON.parse(raw.toString('utf8')) as { batch?: { display_name?: string; input_config?: { file_name?: string } } };
      const file = b.batch?.input_config?.file_name;
      if (!b.batch?.display_name || !file || !files.has(file)) return send(400, { error: { code: 400, message: 'bad batch', status: 'INVALID_ARGUMENT' } });
      const lines = files.get(file)!.split('\n').filter((l) => l.trim());
      const id = `batches/${state.created.length + 1}`;
      jobs.set(id, { id, service: 'gemini', model: m[1], lines, counts: { total: lines.length, completed: 0, failed: 0 } });
      state.created.push(id);
      return send(200, { name: id, metadata: { '@type': 'type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch', model: `models/${m[1]}`, displayName: b.batch.display_name, state: 'BATCH_STATE_PENDING' } });
    }
    m = /^\/v1beta\/(batches\/[^/]+)$/.exec(p);
    if (req.method === 'GET' && m && jobs.has(m[1])) {
      state.polls += 1;
      state.onPoll?.();
      const job = jobs.get(m[1])!;
      if (state.release) finish(job);
      const done = job.out !== undefined;
      const stats = { requestCount: String(job.counts.total), successfulRequestCount: String(job.counts.completed), failedRequestCount: String(job.counts.failed), pendingRequestCount: String(done ? 0 : job.counts.total) };
      const metadata = { '@type': 'type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch', model: `models/${job.model}`, state: done ? 'BATCH_STATE_SUCCEEDED' : 'BATCH_STATE_RUNNING', batchStats: stats, ...(done ? { output: { responsesFile: `files/${job.out}` } } : {}) };
      if (done) files.set(`files/${job.out}`, files.get(job.out!)!);
      return send(200, { name: job.id, metadata, ...(done ? { done: true, response: { '@type': 'type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput', responsesFile: `files/${job.out}` } } : {}) });
    }
    m = /^\/download\/v1beta\/(files\/[^/:]+):download$/.exec(p);
    if (req.method === 'GET' && m && url.searchParams.get('alt') === 'media' && files.has(m[1])) return res.writeHead(200, { 'content-type': 'application/jsonl' }).end(files.get(m[1]));
    send(404, { error: { code: 404, message: `no route ${req.method} ${p}`, status: 'NOT_FOUND' } });
  });
  return Object.assign(state, await listenLocal(server));
}

function extractFirstText(body: Record<string, unknown>, gemini: boolean): string {
  if (gemini) return (body.contents as { parts: { text?: string }[] }[])[0].parts.find((p) => p.text)?.text ?? '';
  return (body.messages as { content: { type: string; text?: string }[] }[])[0].content.find((p) => p.type === 'text')?.text ?? '';
}
