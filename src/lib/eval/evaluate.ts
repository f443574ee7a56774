/**
 * Running VQA models and scoring them: a vlakit checkpoint or export (any VlaRunner, greedy), or any
 * OpenAI-compatible endpoint (a vLLM server with the real Gemma-3, Ollama, ...) with concurrency and a response
 * cache; per-sample scores; per-benchmark summaries; and the forgetting report (each model's score relative to
 * the first model: VLM2VLA's retention of VQA skill after robot fine-tuning).
 */
import pLimit from 'p-limit';
import { PROMPTS } from '../actions/prompts.js';
import { VlakitError } from '../errors.js';
import { type VlaRunner, generateFrom } from '../infer/index.js';
import type { AnswerCache } from '../teacher/cache.js';
import { hashKey } from '../teacher/cache.js';
import { TeacherItemError } from '../teacher/outcome.js';
import { PROMPT_VERSIONS } from '../teacher/prompts.js';
import type { Teacher } from '../teacher/types.js';
import { type VqaItem, loadImage } from './datasets.js';
import { anls, exactMatch, extractChoice, positionError, vqaAccuracy } from './metrics.js';

export interface VqaModel {
  readonly name: string;
  /** What it is: a path or an endpoint model. */
  readonly source: string;
  /** Parallel requests it can take (1 for in-process models). */
  readonly concurrency: number;
  answer(item: VqaItem, signal?: AbortSignal): Promise<{ text: string; ms: number; cached?: boolean }>;
  close(): Promise<void> | void;
}

/** The text prompt of an item (the same for every model). */
export function vqaPrompt(item: VqaItem): string {
  return PROMPTS.vqa(item.question, item.choices, item.hint);
}

/** A checkpoint or export (built-in or Hugging Face), answering greedily; the answer ends at the first newline. */
export class RunnerModel implements VqaModel {
  readonly concurrency = 1;
  constructor(
    readonly name: string,
    readonly runner: VlaRunner,
    private readonly maxNewTokens = 24,
  ) {}

  get source(): string {
    return this.runner.info.dir ?? this.name;
  }

  async answer(item: VqaItem): Promise<{ text: string; ms: number }> {
    // the question (with its choices and hint) is the user turn; the runner lays out the prompt and the images
    const input = await this.runner.prepare(vqaPrompt(item), item.images.map(loadImage), `item ${item.id}: image`);
    const g = await generateFrom(this.runner, input, { maxNewTokens: this.maxNewTokens, stop: ['\n'] });
    return { text: g.text.trim(), ms: g.timing.prefillMs + g.timing.decodeMs };
  }

  async close(): Promise<void> {
    await this.runner.dispose();
  }
}

/**
 * The server `--endpoint` gives a model spec: only openai:MODEL specs without their own `@URL`. A gemini: model
 * never goes there, so its key never leaves Google's API host.
 * @example endpointUrlFor('gemini:gemini-2.5-flash', 'http://localhost:8000') // undefined
 */
export function endpointUrlFor(spec: string, endpoint: string | undefined): string | undefined {
  return spec.startsWith('openai:') && !/@https?:\/\//.test(spec) ? endpoint : undefined;
}

/** An OpenAI-compatible endpoint (through the teacher backend), answers cached by model, prompt and images. */
export class EndpointModel implements VqaModel {
  constructor(
    readonly name: string,
    private readonly teacher: Teacher,
    readonly concurrency: number,
    private readonly cache?: AnswerCache,
  ) {}

  get source(): string {
    return this.teacher.id;
  }

  async answer(item: VqaItem, signal?: AbortSignal): Promise<{ text: string; ms: number; cached?: boolean }> {
    const images = item.images.map(loadImage);
    const text = vqaPrompt(item);
    const req = { kind: 'vqa' as const, json: false, messages: [{ role: 'user' as const, text, images }] };
    // the server, model and decoding parameters are part of the key: one model name on two servers shares nothing
    const key = hashKey({ model: this.teacher.id, identity: this.teacher.cacheIdentity?.(req), kind: PROMPT_VERSIONS.vqa, text, images: images.map((im) => hashKey(im.b64)) });
    const hit = this.cache?.get(key);
    if (hit) return { text: hit.text.trim(), ms: 0, cached: true };
    const t0 = performance.now();
    // refused, blocked, truncated or empty answers throw TeacherItemError: never cached, never scored as an answer
    const a = await this.teacher.complete(req, signal);
    await this.cache?.put({ key, text: a.text, usage: a.usage });
    return { text: a.text.trim(), ms: performance.now() - t0 };
  }

  async close(): Promise<void> {
    await this.teacher.close?.();
  }
}

export interface Sample {
  model: string;
  benchmark: string;
  id: string;
  type?: string;
  question: string;
  answers: string[];
  choices?: string[];
  answer?: string;
  prediction: string;
  /** Multiple choice: the letter read from the prediction. */
  picked?: string;
  /** The position metric: the distance between the predicted and the true position (the answer's units). */
  distance?: number;
  metric: VqaItem['metric'];
  score: number;
  circular?: VqaItem['circular'];
  ms: number;
  /** Why there is no answer (the endpoint refused, blocked or truncated it: `refused:refusal`, `truncated:length`); scored 0. */
  error?: string;
}

/** The score of one prediction under the item's metric. */
export function scoreItem(item: VqaItem, prediction: string): { score: number; picked?: string; error?: number } {
  switch (item.metric) {
    case 'position':
      return positionError(prediction, item.answers[0]);
    case 'vqa':
      return { score: vqaAccuracy(prediction, item.answers) };
    case 'anls':
      return { score: anls(prediction, item.answers) };
    case 'mc': {
      const picked = extractChoice(prediction, item.choices ?? []);
      return { score: picked !== undefined && picked === item.answer ? 1 : 0, picked };
    }
    default:
      return { score: exactMatch(prediction, item.answers) };
  }
}

/**
 * Every item through one model (in order; endpoints `concurrency` at a time).
 * @example const samples = await evaluateModel(model, items, { onSample: () => bar.tick() })
 */
export async function evaluateModel(model: VqaModel, items: VqaItem[], o: { signal?: AbortSignal; onSample?: (s: Sample) => void } = {}): Promise<Sample[]> {
  const limit = pLimit(Math.max(1, model.concurrency));
  const stop = (err: unknown) => {
    limit.clearQueue(); // one failure ends the run: no more requests
    throw err;
  };
  return Promise.all(
    items.map((item) =>
      limit(async () => {
        o.signal?.throwIfAborted();
        let a;
        try {
          a = await model.answer(item, o.signal);
        } catch (err) {
          if (err instanceof TeacherItemError) {
            // no usable answer: wrong, and said so (a truncated answer is not graded as if it were whole)
            const sample: Sample = { model: model.name, benchmark: item.benchmark, id: item.id, type: item.type, question: item.question, answers: item.answers, choices: item.choices, answer: item.answer, prediction: '', metric: item.metric, score: 0, circular: item.circular, ms: 0, error: `${err.reason}: ${err.detail}` };
            o.onSample?.(sample);
            return sample;
          }
          if (err instanceof VlakitError) throw new VlakitError(err.code, `${model.name} on ${item.benchmark} item ${item.id}: ${err.detail}`, err.context, { cause: err });
          throw err;
        }
        const s = scoreItem(item, a.text);
        const sample: Sample = { model: model.name, benchmark: item.benchmark, id: item.id, type: item.type, question: item.question, answers: item.answers, choices: item.choices, answer: item.answer, prediction: a.text, picked: s.picked, metric: item.metric, score: s.score, ...(s.error !== undefined ? { distance: Math.round(s.error * 1000) / 1000 } : {}), circular: item.circular, ms: Math.round(a.ms * 100) / 100 };
        o.onSample?.(sample);
        return sample;
      }).catch(stop),
    ),
  );
}

export interface BenchmarkScore {
  benchmark: string;
  metric: string;
  /** Questions (circular: questions, each asked once per rotation). */
  n: number;
  /** Mean score in [0, 1] (circular: the share right under every rotation). */
  score: number;
  /** Circular only: the plain accuracy over all rotations. */
  vanilla?: number;
  /** Questions without a usable answer, by reason (refused, blocked, truncated, ...): each scored 0. */
  unanswered?: Record<string, number>;
  byType?: Record<string, { n: number; score: number }>;
}

/** Appends `v` to the list under `k`, starting the list when there is none. */
function pushTo<K, V>(m: Map<K, V[]>, k: K, v: V): void {
  const list = m.get(k);
  if (list) list.push(v);
  else m.set(k, [v]);
}

/** Per benchmark: the mean score (circular groups count as right only when every rotation is). */
export function summarize(samples: Sample[]): BenchmarkScore[] {
  const by = new Map<string, Sample[]>();
  for (const s of samples) pushTo(by, s.benchmark, s);
  const out: BenchmarkScore[] = [];
  for (const [benchmark, ss] of by) {
    const metrics = [...new Set(ss.map((s) => s.metric))];
    const circular = ss.some((s) => s.circular);
    let n = ss.length;
    let score = ss.reduce((a, s) => a + s.score, 0) / n;
    let vanilla: number | undefined;
    if (circular) {
      const groups = new Map<string, Sample[]>();
      for (const s of ss) pushTo(groups, s.circular?.group ?? s.id, s);
      vanilla = score;
      n = groups.size;
      score = [...groups.values()].filter((g) => g.every((s) => s.score === 1)).length / n;
    }
    const byType: Record<string, { n: number; score: number }> = {};
    for (const s of ss) {
      if (!s.type) continue;
      const t = (byType[s.type] ??= { n: 0, score: 0 });
      t.n += 1;
      t.score += s.score;
    }
    for (const t of Object.values(byType)) t.score /= t.n;
    const unanswered: Record<string, number> = {};
    for (const s of ss) if (s.error) unanswered[s.error.split(': ')[0]] = (unanswered[s.error.split(': ')[0]] ?? 0) + 1;
    out.push({ benchmark, metric: circular ? 'circular' : metrics.join('+'), n, score, vanilla, byType: Object.keys(byType).length ? byType : undefined, ...(Object.keys(unanswered).length ? { unanswered } : {}) });
  }
  return out;
}

export interface ForgettingReport {
  models: string[];
  benchmarks: { benchmark: string; metric: string; n: number; scores: Record<string, number>; retention: Record<string, number> }[];
  /** Per model: the mean over benchmarks of score / the first model's score. */
  meanRetention: Record<string, number>;
}

/** The table of scores per benchmark and model, with retention relative to the first model. */
export function forgettingReport(results: { model: string; scores: BenchmarkScore[] }[]): ForgettingReport {
  const models = results.map((r) => r.model);
  const names = [...new Set(results.flatMap((r) => r.scores.map((s) => s.benchmark)))];
  const benchmarks = names.map((benchmark) => {
    const first = results[0].scores.find((s) => s.benchmark === benchmark);
    const scores: Record<string, number> = {};
    const retention: Record<string, number> = {};
    for (const r of results) {
      const s = r.scores.find((x) => x.benchmark === benchmark);
      if (!s) continue;
      scores[r.model] = s.score;
      if (first && first.score > 0) retention[r.model] = s.score / first.score;
    }
    return { benchmark, metric: first?.metric ?? '', n: first?.n ?? 0, scores, retention };
  });
  const meanRetention: Record<string, number> = {};
  for (const m of models) {
    const rs = benchmarks.map((b) => b.retention[m]).filter((x) => x !== undefined);
    if (rs.length) meanRetention[m] = rs.reduce((a, b) => a + b, 0) / rs.length;
  }
  return { models, benchmarks, meanRetention };
}

export function formatForgetting(r: ForgettingReport): string {
  const w = Math.max(12, ...r.models.map((m) => m.length + 2));
  const head = `${'benchmark'.padEnd(18)} ${'metric'.padEnd(9)} ${'n'.padStart(6)} ${r.models.map((m) => m.padStart(w)).join(' ')}`;
  const lines = [head];
  for (const b of r.benchmarks) {
    lines.push(`${b.benchmark.padEnd(18)} ${b.metric.padEnd(9)} ${String(b.n).padStart(6)} ${r.models.map((m) => (b.scores[m] === undefined ? '-' : `${(b.scores[m] * 100).toFixed(1)}${m === r.models[0] || b.retention[m] === undefined ? '' : ` (${(b.retention[m] * 100).toFixed(0)}%)`}`).padStart(w)).join(' ')}`);
  }
  if (r.models.length > 1) lines.push(`${'retention vs'.padEnd(18)} ${r.models[0].padEnd(9)} ${''.padStart(6)} ${r.models.map((m) => (r.meanRetention[m] === undefined ? '-' : `${(r.meanRetention[m] * 100).toFixed(1)}%`).padStart(w)).join(' ')}`);
  return lines.join('\n');
}
