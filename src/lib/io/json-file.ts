/**
 * JSON files that vlakit reads (configs, statistics, trainer state): read, parsed and validated in one step, so a
 * missing, unreadable, corrupt or wrong-shaped file is an error that names the file, the field and what was expected.
 */
import { readFileSync } from 'node:fs';
import type { z } from 'zod';
import { type ErrorCode, VlakitError } from '../errors.js';

/** Decodes UTF-8 strictly: invalid bytes are an error, never replaced by U+FFFD. */
export function decodeUtf8Strict(bytes: Uint8Array): string {
  return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
}

/** The first problem zod found, as `field` and a message. */
export function zodProblem(error: z.ZodError): { field?: string; message: string } {
  const issue = error.issues[0];
  const field = issue.path.map(String).join('.') || undefined;
  return { field, message: issue.message };
}

export interface ReadJsonFileOptions {
  /** The error code for a file that is there but wrong (default E_RECORD_INVALID). */
  code?: ErrorCode;
  /** What the file is, for messages ("checkpoint config", "action statistics"). */
  what?: string;
}

/**
 * Reads and validates a JSON file.
 * @example const stats = readJsonFile('stats.json', ActionStatsSchema, { what: 'action statistics' });
 */
export function readJsonFile<S extends z.ZodType>(file: string, schema: S, opts: ReadJsonFileOptions = {}): z.output<S> {
  const what = opts.what ?? 'JSON file';
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT') throw new VlakitError('E_NOT_FOUND', `${what} not found`, { file });
    if (e.code === 'EISDIR') throw new VlakitError('E_IO', `${what}: expected a file, found a directory`, { file });
    throw new VlakitError('E_IO', `cannot read the ${what} (${e.code ?? e.message})`, { file });
  }
  let value: unknown;
  try {
    value = JSON.parse(decodeUtf8Strict(bytes));
  } catch (err) {
    const detail = err instanceof TypeError ? 'invalid UTF-8' : (err as Error).message;
    throw new VlakitError(opts.code ?? 'E_RECORD_INVALID', `the ${what} is not valid JSON (${detail})`, { file });
  }
  const r = schema.safeParse(value);
  if (!r.success) {
    const p = zodProblem(r.error);
    throw new VlakitError(opts.code ?? 'E_RECORD_INVALID', `invalid ${what}: ${p.message}`, { file, field: p.field });
  }
  return r.data;
}
