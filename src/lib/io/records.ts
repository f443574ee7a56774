/**
 * The record kinds that flow through vlakit pipelines as JSON Lines, with zod schemas that reject bad records with
 * the line, the field and what was expected. docs/FORMATS.md documents each.
 */
import { z } from 'zod';
import { type ErrorContext, VlakitError } from '../errors.js';
import { zodProblem } from './json-file.js';
import type { ExampleJson, SequenceExampleJson } from './json.js';

/** One time step of one episode, with the RLDS field names. */
export interface StepRecord {
  episode_id: string | number;
  step: number;
  is_first?: boolean;
  is_last?: boolean;
  is_terminal?: boolean;
  observation?: Record<string, unknown>;
  action?: unknown;
  reward?: unknown;
  discount?: unknown;
  language_instruction?: string;
  episode_metadata?: Record<string, unknown>;
  [field: string]: unknown;
}

export interface RawRecord {
  b64: string;
}

/** 'chunk' and 'training_example' records are written by chunk and relabel (their schemas live with them). */
export type RecordKind = 'step' | 'example' | 'sequence_example' | 'raw' | 'chunk' | 'training_example';

/** How a JSON value reads in a message: `missing`, `"NaN"`, `null`, `[1,2]` (cut at 40 characters). */
export function describeValue(v: unknown): string {
  if (v === undefined) return 'missing';
  if (typeof v === 'number') return String(v);
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 40 ? `${s.slice(0, 40)}...` : s;
}

/** A zod error message for a value of the wrong type: `missing (expected X)` or `expected X, got "NaN"`. */
export function expected(what: string): (iss: { input?: unknown }) => string {
  return (iss) => (iss.input === undefined ? `missing (expected ${what})` : `expected ${what}, got ${describeValue(iss.input)}`);
}

/**
 * A finite JSON number: NaN and the infinities are refused in every form (as numbers, and as the strings "NaN",
 * "Infinity" that lossless float32 records use), since they would become training targets or robot commands.
 */
export const FiniteNumberSchema = z.number({ error: expected('a finite number') });

/** A step, chunk or example's episode id: a non-empty string or a non-negative integer. */
export const EpisodeIdSchema = z.union([z.string().min(1), z.number().int().nonnegative()], { error: expected('a non-empty string or a non-negative integer') });

const floatish = z.union([z.number(), z.literal('NaN'), z.literal('Infinity'), z.literal('-Infinity'), z.literal('-0')]);
type Tensorish = number | string | boolean | Tensorish[];
const tensorish: z.ZodType<Tensorish> = z.lazy(() => z.union([floatish, z.boolean(), z.array(tensorish)]));
/** An image as records carry it: `{mime, b64}`. */
export const ImageSchema = z.object({ mime: z.string().regex(/^image\//, 'expected a mime type such as "image/png"'), b64: z.string() });

export const StepRecordSchema = z.looseObject({
  episode_id: EpisodeIdSchema,
  step: z.number().int().nonnegative(),
  is_first: z.boolean().optional(),
  is_last: z.boolean().optional(),
  is_terminal: z.boolean().optional(),
  observation: z.record(z.string(), z.unknown()).optional(),
  action: tensorish.optional(),
  reward: floatish.optional(),
  discount: floatish.optional(),
  language_instruction: z.string().optional(),
  episode_metadata: z.record(z.string(), z.unknown()).optional(),
});

/**
 * Which kind of record a parsed JSON line is, by the fields that only that kind has (a chunk record by
 * `chunk_index`, or `actions` without `step`; a training example by `messages` and `spans`), so that a record
 * missing a required field is reported as that kind's record with that field, not as another kind.
 */
export function recordKind(v: unknown, where: { line?: number; file?: string } = {}): RecordKind {
  if (typeof v === 'object' && v !== null && !Array.isArray(v)) {
    const o = v as Record<string, unknown>;
    if ('chunk_index' in o || ('actions' in o && !('step' in o))) return 'chunk';
    if ('messages' in o && 'spans' in o) return 'training_example';
    if ('episode_id' in o || 'step' in o) return 'step';
    if ('feature_lists' in o || 'context' in o) return 'sequence_example';
    if ('features' in o) return 'example';
    if (typeof o.b64 === 'string' && Object.keys(o).length === 1) return 'raw';
  }
  throw new VlakitError(
    'E_RECORD_INVALID',
    `expected a step record (with episode_id and step), a chunk record (with chunk_index and actions), a training example (with messages and spans), an example record ({"features": {...}}), a sequence example ({"context": ..., "feature_lists": ...}) or a raw record ({"b64": "..."}); got ${describeValue(v)}`,
    where,
  );
}

/** What each kind is called in messages. */
export const RECORD_NAMES: Record<RecordKind, string> = {
  step: 'step record',
  chunk: 'chunk record',
  training_example: 'training example',
  example: 'example record',
  sequence_example: 'sequence example',
  raw: 'raw record',
};

/**
 * Validates one record against a schema; the error names the place, the first offending field and what was
 * expected (`E_RECORD_INVALID at line 3 field "actions.0.2" of chunks.jsonl: invalid chunk record: expected a
 * finite number, got "NaN"`). Returns the record itself, not zod's copy, so that its fields keep their order:
 * record schemas check and never transform (no defaults, no coercion).
 * @example const chunk = validateRecord(ChunkRecordSchema, value, 'chunk record', { file, line });
 */
export function validateRecord<S extends z.ZodType>(schema: S, value: unknown, what: string, where: ErrorContext = {}): z.output<S> {
  const r = schema.safeParse(value, { error: (iss) => (iss.code === 'invalid_type' && iss.input === undefined ? `missing (expected ${iss.expected})` : undefined) });
  if (r.success) return value as z.output<S>;
  const p = zodProblem(r.error);
  const o = value as { episode_id?: unknown; step?: unknown } | null;
  // steps of RLDS datasets have no line: say which episode and step
  const which = where.line === undefined && o && typeof o === 'object' && o.episode_id !== undefined ? ` (episode ${String(o.episode_id)}${o.step !== undefined ? `, step ${String(o.step)}` : ''})` : '';
  throw new VlakitError('E_RECORD_INVALID', `invalid ${what}${which}: ${p.message}`, { ...where, field: p.field });
}

/** Validates a step record (by `schema`: StepRecordSchema or an extension of it); the error names the line and the first offending field. */
export function parseStepRecord(v: unknown, where: { line?: number; file?: string } = {}, schema: z.ZodType = StepRecordSchema): StepRecord {
  validateRecord(schema, v, 'step record', where);
  return v as StepRecord;
}

export type AnyRecord =
  | { kind: 'step'; value: StepRecord }
  | { kind: 'example'; value: ExampleJson }
  | { kind: 'sequence_example'; value: SequenceExampleJson }
  | { kind: 'raw'; value: RawRecord }
  | { kind: 'chunk' | 'training_example'; value: Record<string, unknown> };

/** Standard step fields in the order vlakit writes them; other fields follow in their own order. */
export const STEP_FIELD_ORDER = [
  'episode_id',
  'step',
  'is_first',
  'is_last',
  'is_terminal',
  'observation',
  'action',
  'reward',
  'discount',
  'language_instruction',
] as const;
