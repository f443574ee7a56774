/**
 * The one error type of vlakit. Every failure that a user can cause carries a stable code and the place it
 * happened, so that messages read like `E_TFRECORD_DATA_CRC at record 17 (byte 52311) of shard.tfrecord: ...`.
 */

export type ErrorCode =
  | 'E_USAGE'
  | 'E_IO'
  | 'E_NOT_FOUND'
  | 'E_FORMAT_UNKNOWN'
  | 'E_TFRECORD_LENGTH_CRC'
  | 'E_TFRECORD_DATA_CRC'
  | 'E_TFRECORD_TRUNCATED'
  | 'E_TFRECORD_TOO_LARGE'
  | 'E_GZIP'
  | 'E_PROTO'
  | 'E_JSONL_PARSE'
  | 'E_RECORD_INVALID'
  | 'E_STEP_ORDER'
  | 'E_RLDS_FEATURES'
  | 'E_RLDS_SHAPE'
  | 'E_RLDS_INFO'
  | 'E_FEATURE_DTYPE'
  | 'E_IMAGE'
  | 'E_ENV'
  | 'E_TEACHER'
  | 'E_TEACHER_FATAL'
  | 'E_CACHE'
  | 'E_ONNX'
  | 'E_MODEL'
  | 'E_MSGPACK'
  | 'E_SHARD';

/** Where in the input an error happened; every field is optional and printed when present. */
export interface ErrorContext {
  file?: string;
  record?: number;
  offset?: number;
  /** In a gzip file: the compressed byte where decompression stopped (`offset` is then the uncompressed byte). */
  compressedOffset?: number;
  line?: number;
  field?: string;
}

/** Exit codes shared by every command. */
export const EXIT = { ok: 0, error: 1, usage: 2, partial: 3 } as const;

export class VlakitError extends Error {
  readonly code: ErrorCode;
  readonly context: ErrorContext;
  readonly exitCode: number;
  /** The message without the code and place. */
  readonly detail: string;

  constructor(code: ErrorCode, detail: string, context: ErrorContext = {}, options: { cause?: unknown } = {}) {
    super(formatMessage(code, detail, context), options);
    this.name = 'VlakitError';
    this.code = code;
    this.detail = detail;
    this.context = context;
    this.exitCode = code === 'E_USAGE' ? EXIT.usage : EXIT.error;
  }
}

function formatMessage(code: ErrorCode, message: string, ctx: ErrorContext): string {
  const where: string[] = [];
  if (ctx.line !== undefined) where.push(`line ${ctx.line}`);
  if (ctx.record !== undefined) where.push(`record ${ctx.record}`);
  if (ctx.compressedOffset !== undefined) where.push(`(compressed byte ${ctx.compressedOffset}, uncompressed byte ${ctx.offset ?? '?'})`);
  else if (ctx.offset !== undefined) where.push(`(byte ${ctx.offset})`);
  if (ctx.field !== undefined) where.push(`field "${ctx.field}"`);
  const place = where.join(' ');
  if (ctx.file !== undefined) return place ? `${code} at ${place} of ${ctx.file}: ${message}` : `${code} in ${ctx.file}: ${message}`;
  return place ? `${code} at ${place}: ${message}` : `${code}: ${message}`;
}

export function isVlakitError(err: unknown): err is VlakitError {
  return err instanceof VlakitError;
}

/** Adds context (e.g. the file name) to an error raised deeper down, without losing its code. */
export function withContext(err: unknown, extra: ErrorContext): unknown {
  if (!(err instanceof VlakitError)) return err;
  return new VlakitError(err.code, err.detail, { ...extra, ...err.context }, { cause: err.cause });
}
