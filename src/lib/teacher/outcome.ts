/**
 * What one teacher answer comes to, besides a usable text: an item outcome (refused, blocked, truncated, empty,
 * rejected, failed) that marks the step and is counted per reason, or a fatal outcome (authentication, quota
 * exhausted, model not found) that stops the job. Neither is ever cached as an answer.
 */
import { VlakitError } from '../errors.js';
import type { Usage } from './types.js';

/**
 * The reason of an item outcome, `category[:detail]`:
 * - `blocked:SAFETY` (Gemini refused the prompt), `refused:SAFETY` / `refused:RECITATION` (a candidate stopped by a
 *   filter), `refused:refusal` (OpenAI's `message.refusal`), `refused:content_filter`;
 * - `truncated:MAX_TOKENS` / `truncated:length` (the output budget ran out; re-asked once with a larger one);
 * - `empty` (no text and no reason: asked again a bounded number of times);
 * - `rejected:400` (the server refused this one request; other requests go on);
 * - `failed` (retries exhausted on 429/5xx/network errors).
 */
export type ItemReason = string;

export function categoryOf(reason: ItemReason): string {
  const i = reason.indexOf(':');
  return i < 0 ? reason : reason.slice(0, i);
}

export const NO_USAGE: Usage = { inputTokens: 0, outputTokens: 0 };

/** One item's answer is not usable; the job goes on. Tokens billed for it are in `usage`. */
export class TeacherItemError extends VlakitError {
  constructor(
    readonly reason: ItemReason,
    detail: string,
    readonly usage: Usage = NO_USAGE,
    readonly retries = 0,
    file?: string,
  ) {
    super('E_TEACHER', detail, file ? { file } : {});
  }

  get category(): string {
    return categoryOf(this.reason);
  }
}

/** The job cannot go on (authentication, quota exhausted, model not found). */
export class TeacherFatalError extends VlakitError {
  constructor(detail: string, file?: string) {
    super('E_TEACHER_FATAL', detail, file ? { file } : {});
  }
}
