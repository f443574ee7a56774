/**
 * Records of one kind, validated where they enter a command: each record is checked against the kind's zod schema
 * and typed by it, so commands never cast records, and a bad one stops with file, line (or record), field and
 * what was expected.
 */
import type { z } from 'zod';
import { newStats, readKind, type ReadOptions, type ReadStats, type SourceRecord } from './read.js';
import { RECORD_NAMES, validateRecord } from './records.js';

export interface ValidatedRecord<T> {
  value: T;
  file: string;
  line?: number;
  index?: number;
}

/**
 * The records of one kind from the inputs, each validated by `schema`; another kind is a usage error naming what
 * the command reads (as readKind), an invalid record an E_RECORD_INVALID error. For steps, `schema` extends
 * StepRecordSchema: JSON Lines steps are validated by it where they are read (once, not twice), the steps of
 * TFRecord and RLDS inputs here.
 * @example for await (const { value } of readValidated(['chunks.jsonl'], 'chunk', ChunkRecordSchema, 'relabel reads chunk records')) ...
 */
export async function* readValidated<S extends z.ZodType>(
  inputs: string[],
  kind: SourceRecord['kind'],
  schema: S,
  what: string,
  opts: ReadOptions = {},
  stats: ReadStats = newStats(),
): AsyncGenerator<ValidatedRecord<z.output<S>>> {
  const steps = kind === 'step';
  for await (const r of readKind(inputs, kind, what, steps ? { ...opts, stepSchema: schema } : opts, stats)) {
    // a step with a line came from JSON Lines and was validated by `schema` as it was read
    const value = steps && r.line !== undefined ? (r.value as z.output<S>) : validateRecord(schema, r.value, RECORD_NAMES[kind], { file: r.file, line: r.line, record: r.index });
    yield { value, file: r.file, line: r.line, index: r.index };
  }
}
