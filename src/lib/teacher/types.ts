/** What every teacher backend takes and returns. */
import type { ImageJson } from '../io/json.js';

export interface Usage {
  inputTokens: number;
  /** Every billed output token, thinking included (Gemini `thoughtsTokenCount`, OpenAI `reasoning_tokens`). */
  outputTokens: number;
  /** Of `outputTokens`, those spent thinking, where the service reports them. */
  thoughtTokens?: number;
  /** Billed at the batch price (an answer from a batch job). */
  batch?: boolean;
}

export interface TeacherMessage {
  role: 'user' | 'assistant';
  text: string;
  images?: ImageJson[];
}

export interface TeacherRequest {
  /** 'reasoning' (per step), 'plan' (per episode) or 'verify' (a subtask's before/after frames, at rollout). */
  kind: 'reasoning' | 'plan' | 'verify' | 'vqa';
  /** The conversation: the prompt with images, then, on repair, the bad answer and the correction request. */
  messages: TeacherMessage[];
  /** Ask for a JSON answer (JSON mode where the API has one). */
  json: boolean;
  /** Structured facts for local teachers (the kinematic teacher reads these instead of images). */
  context?: Record<string, unknown>;
  /** Output token budget of this request (the teacher's own when absent); a truncated answer is re-asked with more. */
  maxTokens?: number;
}

export interface TeacherAnswer {
  text: string;
  usage: Usage;
  /** Requests retried before this answer (429, 5xx, network errors). */
  retries: number;
}

/** What the annotator knows of the data besides the request: whether it is the built-in world's, the action size. */
export interface DataFacts {
  /** The steps carry the built-in world's oracle (its state layout is documented: [x, y, z, gripper opening]). */
  builtin: boolean;
  /** Numbers per action in the data (the kinematic teacher reads translation and gripper only). */
  actionDims: number;
}

export interface Teacher {
  /** e.g. "kinematic", "gemini:gemini-2.5-flash", "openai:qwen2.5-vl". */
  readonly id: string;
  /** Local teachers cost nothing and are not cached. */
  readonly local: boolean;
  /** Whether the answer depends on `context` (then it is part of the cache key; else only what is sent counts). */
  readonly readsContext: boolean;
  /** The output token budget sent with each request (undefined: the service's default). */
  readonly maxTokens?: number;
  /**
   * What besides the messages decides the answer (service, base URL, model, decoding parameters): part of the
   * cache key, so that the same model name on two servers, or at two temperatures, never shares answers.
   */
  cacheIdentity?(req: TeacherRequest): Record<string, unknown>;
  /**
   * One answer. Throws TeacherItemError (outcome.ts) for an answer that is refused, blocked, truncated, empty or
   * rejected (this item only), TeacherFatalError when the job cannot go on.
   */
  complete(req: TeacherRequest, signal?: AbortSignal): Promise<TeacherAnswer>;
  /**
   * What this teacher could not determine for the answer to `req` (local teachers that read `context`): short
   * phrases, "gripper state: ...". Annotations carry them as `unknown` when there are any.
   */
  limits?(req: TeacherRequest, data: DataFacts): string[];
  close?(): Promise<void>;
}
