/** Teachers (kinematic, Gemini, OpenAI-compatible, exec), prompts and parsers, the answer cache, and `annotate`. */
import os from 'node:os';
import path from 'node:path';
import { VlakitError } from '../errors.js';
import { ExecTeacher, GeminiTeacher, OpenAITeacher, type RemoteOptions } from './backends.js';
import { KinematicTeacher } from './kinematic.js';
import type { Teacher } from './types.js';

export { annotate, newUsage, requestKey, sampleFrames, stepImages } from './annotate.js';
export { batchTargetOf, runBatch } from './batch.js';
export type { BatchOptions, BatchSummary } from './batch.js';
export type { AnnotateOptions, UsageStats } from './annotate.js';
export { AnswerCache, hashKey } from './cache.js';
export { KinematicTeacher, segment, parseInstruction, kinematicPlan, kinematicReasoning } from './kinematic.js';
export { GeminiTeacher, OpenAITeacher, ExecTeacher, geminiModelName, isOpenAiReasoningModel, readGemini, readOpenAi } from './backends.js';
export { RateLimiter, backoffMs, classifyFailure, durationMs, isLocalHost, postJson } from './http.js';
export { TeacherFatalError, TeacherItemError, categoryOf } from './outcome.js';
export { PROMPT_VERSIONS, extractJson, parsePlan, parseReasoning, planPrompt, reasoningPrompt } from './prompts.js';
export { scorePlans, kindOf } from './score.js';
export type { PlanScore } from './score.js';
export type { Teacher, TeacherRequest, TeacherAnswer, Usage } from './types.js';

/** The default cache directory: $XDG_CACHE_HOME/vlakit/teacher, else ~/.cache/vlakit/teacher. */
export function defaultCacheDir(): string {
  return path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'vlakit', 'teacher');
}

/**
 * Builds the teacher named by `--teacher`: kinematic, gemini:MODEL, openai:MODEL (with a URL) or exec:COMMAND;
 * `openai:MODEL@URL` and `gemini:MODEL@URL` name the model's server in the spec itself.
 */
export function makeTeacher(spec: string, opts: RemoteOptions & { url?: string }): Teacher {
  if (spec === 'kinematic') return new KinematicTeacher();
  const colon = spec.indexOf(':');
  const kind = colon < 0 ? spec : spec.slice(0, colon);
  let rest = colon < 0 ? '' : spec.slice(colon + 1).trim();
  // MODEL@URL: this model's own server (eval-vqa compares models on different servers)
  const at = kind === 'exec' ? null : /^(.+?)@(https?:\/\/\S+)$/.exec(rest);
  if (at) {
    rest = at[1];
    opts = { ...opts, url: at[2] };
  }
  if (kind === 'gemini') {
    if (!rest) throw new VlakitError('E_USAGE', 'gemini needs a model: --teacher gemini:gemini-2.5-flash');
    return new GeminiTeacher(rest, { ...opts, baseUrl: opts.url });
  }
  if (kind === 'openai') {
    if (!rest) throw new VlakitError('E_USAGE', 'openai needs a model: --teacher openai:MODEL --teacher-url http://host:8000');
    if (!opts.url) throw new VlakitError('E_USAGE', 'openai:MODEL needs --teacher-url, the server (e.g. http://localhost:8000 for vLLM, http://localhost:11434 for Ollama)');
    return new OpenAITeacher(rest, { ...opts, baseUrl: opts.url });
  }
  if (kind === 'exec') {
    if (!rest) throw new VlakitError('E_USAGE', 'exec needs a command: --teacher exec:"python my_teacher.py"');
    return new ExecTeacher(rest);
  }
  throw new VlakitError('E_USAGE', `unknown teacher "${spec}"; expected kinematic, gemini:MODEL, openai:MODEL or exec:COMMAND`);
}
export { ActionStepSchema, AnnotatedStepSchema, PlanAnnotationSchema, ReasoningAnnotationSchema, StepActionSchema } from './records.js';
export type { AnnotatedStep, PlanAnnotation, ReasoningAnnotation } from './records.js';
