/**
 * JSON files that vlakit reads (configs, statistics, trainer state): read, parsed and validated in one step, so a
 * missing, unreadable, corrupt or wrong-shaped file is an error that names the file, the field and what was expected.
 */
import { readFileSync } from 'node:fs';
import type { z } from 'zod';
import { type ErrorCode, VlakitError } from '../errors.js';
import { firstInvalidUtf8 } from './jsonl.js';

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
/**
 * The bytes of a file that vlakit reads; a missing, unreadable one or a directory is an error naming the file.
 * @example const bytes = readFileBytes('q.jsonl', 'VQA dataset');
 */
export function readFileBytes(file: string, what: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT') throw new VlakitError('E_NOT_FOUND', `${what} not found`, { file });
    if (e.code === 'EISDIR') throw new VlakitError('E_IO', `${what}: expected a file, found a directory`, { file });
    throw new VlakitError('E_IO', `cannot read the ${what} (${e.code ?? e.message})`, { file });
  }
}

/**
 * A text file read as strict UTF-8: invalid bytes are an error naming the line and byte, never U+FFFD.
 * @example const text = readTextFile('tokens.txt', 'token list');
 */
export function readTextFile(file: string, what: string, code: ErrorCode = 'E_RECORD_INVALID'): string {
  const bytes = readFileBytes(file, what);
  try {
    return decodeUtf8Strict(bytes);
  } catch {
    const at = firstInvalidUtf8(bytes);
    const lineStart = bytes.lastIndexOf(10, at - 1) + 1;
    let line = 1;
    for (let i = 0; i < lineStart; i++) if (bytes[i] === 10) line += 1;
    throw new VlakitError(code, `the ${what} is not UTF-8 text (byte 0x${bytes[at].toString(16).padStart(2, '0')} at byte ${at - lineStart} of the line)`, { file, line, offset: at });
  }
}

export function readJsonFile<S extends z.ZodType>(file: string, schema: S, opts: ReadJsonFileOptions = {}): z.output<S> {
  const what = opts.what ?? 'JSON file';
  const bytes = readFileBytes(file, what);
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
