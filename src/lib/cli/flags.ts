/**
 * Flags with their valid values, checked when the command line is parsed (before any work), and rules between
 * flags (pairs that contradict each other, flags that apply only in one mode). A violation is a usage error:
 * `vlakit train-sft: E_USAGE: --steps must be an integer >= 1, got "-1"`, exit 2.
 *
 * Counts have a hard limit (refused above it, shown in --help); the counts that decide how long a run takes may
 * also have a soft limit, above which the command warns on stderr and goes on.
 */
import { Flags } from '@oclif/core';
import type { OptionFlag } from '@oclif/core/interfaces';
import { VlakitError } from '../errors.js';
import { type Shard, parseShard } from '../io/shard.js';

/** Parses sizes such as `256MB`, `64KiB`, `1G` into bytes. */
export function parseSize(s: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)$/i.exec(s.trim());
  if (!m) throw new VlakitError('E_USAGE', `invalid size "${s}"; expected e.g. 256MB, 64KiB or 1G`);
  const pow = ' kmgt'.indexOf(m[2].toLowerCase() || ' ');
  const base = m[3].toLowerCase().startsWith('i') ? 1024 : 1000;
  return Math.round(Number(m[1]) * base ** pow);
}

export interface IntRange {
  min?: number;
  max?: number;
  /** Warn (and go on) above this value. */
  warnAbove?: number;
}

export interface NumberRange {
  min?: number;
  max?: number;
  /** The bounds themselves are not allowed. */
  minExclusive?: boolean;
  maxExclusive?: boolean;
}

/** `from 1 to 100`, `>= 0`, `> 0 and <= 1`: the rule as the help and the errors say it. */
function rangeText(r: NumberRange): string {
  const lo = r.min === undefined ? undefined : `${r.minExclusive ? '>' : '>='} ${r.min}`;
  const hi = r.max === undefined ? undefined : `${r.maxExclusive ? '<' : '<='} ${r.max}`;
  if (lo && hi && !r.minExclusive && !r.maxExclusive) return `from ${r.min} to ${r.max}`;
  return [lo, hi].filter(Boolean).join(' and ');
}

const INTEGER = /^[+-]?\d+$/;
/** Integers may be written with an exponent (1e6), as long as the value is whole. */
const INTEGER_EXP = /^[+-]?\d+(\.\d+)?e\+?\d+$/i;
const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

/** Checks an integer flag value: `--steps must be an integer >= 1, got "-1"`. */
export function checkInt(input: string, name: string, r: IntRange): number {
  const s = input.trim();
  const v = INTEGER.test(s) || INTEGER_EXP.test(s) ? Number(s) : Number.NaN;
  const ok = Number.isSafeInteger(v) && (r.min === undefined || v >= r.min) && (r.max === undefined || v <= r.max);
  if (!ok) {
    const rule = rangeText(r);
    throw new VlakitError('E_USAGE', `--${name} must be an integer${rule ? ` ${rule}` : ''}, got "${input}"`);
  }
  return v;
}

/** Checks a number flag value: `--top-p must be a number > 0 and <= 1, got "2"`. */
export function checkNumber(input: string, name: string, r: NumberRange): number {
  const s = input.trim();
  const v = DECIMAL.test(s) ? Number(s) : Number.NaN;
  const ok =
    Number.isFinite(v) &&
    (r.min === undefined || (r.minExclusive ? v > r.min : v >= r.min)) &&
    (r.max === undefined || (r.maxExclusive ? v < r.max : v <= r.max));
  if (!ok) {
    const rule = rangeText(r);
    throw new VlakitError('E_USAGE', `--${name} must be a number${rule ? ` ${rule}` : ''}, got "${input}"`);
  }
  return v;
}

type Base<T> = Omit<Partial<OptionFlag<T>>, 'parse' | 'multiple' | 'default' | 'required'> & { description: string };

function describe(description: string, rule: string, r: IntRange): string {
  const soft = r.warnAbove !== undefined ? `; a warning above ${r.warnAbove}` : '';
  return rule ? `${description} (${rule}${soft})` : description;
}

/**
 * An integer flag with its range; the range goes into the help.
 * @example steps: int({ description: 'RL steps', default: 20, min: 1, max: 1_000_000 })
 */
export function int(o: Base<number> & IntRange & ({ default: number } | { required: true })): OptionFlag<number>;
export function int(o: Base<number> & IntRange): OptionFlag<number | undefined>;
export function int(o: Base<number> & IntRange & { default?: number; required?: boolean }): OptionFlag<number | undefined> {
  const { min, max, warnAbove, description, ...rest } = o;
  const r = { min, max, warnAbove };
  const def = Flags.custom<number>({ parse: async (input, _ctx, flag) => checkInt(input, flag.name, r) }) as (o: object) => OptionFlag<number | undefined>;
  return Object.assign(def({ ...rest, description: describe(description, rangeText(r), r) }), { warnAbove });
}

/**
 * A number flag (fractions, exponents) with its range, checked at parse time; the value stays text, as the
 * commands read it with Number().
 * @example lr: decimal({ description: 'learning rate', default: '1e-3', min: 0, minExclusive: true })
 */
export function decimal(o: Base<string> & NumberRange & ({ default: string } | { required: true })): OptionFlag<string>;
export function decimal(o: Base<string> & NumberRange): OptionFlag<string | undefined>;
export function decimal(o: Base<string> & NumberRange & { default?: string; required?: boolean }): OptionFlag<string | undefined> {
  const { min, max, minExclusive, maxExclusive, description, ...rest } = o;
  const r = { min, max, minExclusive, maxExclusive };
  const def = Flags.custom<string>({
    parse: async (input, _ctx, flag) => {
      checkNumber(input, flag.name, r);
      return input;
    },
  }) as (o: object) => OptionFlag<string | undefined>;
  return def({ ...rest, description: describe(description, rangeText(r), {}) });
}

/**
 * A size flag (`256MB`, `64KiB`, `1G`), at least `min` bytes, checked at parse time; the value stays text.
 * @example 'shard-size': size({ description: 'start a new shard past this size', min: 1024 })
 */
export function size(o: Base<string> & { min: number; max?: number; default: string }): OptionFlag<string>;
export function size(o: Base<string> & { min: number; max?: number }): OptionFlag<string | undefined>;
export function size(o: Base<string> & { min: number; max?: number; default?: string }): OptionFlag<string | undefined> {
  const { min, max, description, ...rest } = o;
  const rule = `${min} bytes or more${max !== undefined ? `, at most ${max}` : ''}`;
  const def = Flags.custom<string>({
    parse: async (input, _ctx, flag) => {
      let bytes: number;
      try {
        bytes = parseSize(input);
      } catch {
        bytes = Number.NaN;
      }
      if (!(bytes >= min) || (max !== undefined && bytes > max)) {
        throw new VlakitError('E_USAGE', `--${flag.name} must be a size of ${rule} (e.g. 256MB, 64KiB, 1G), got "${input}"`);
      }
      return input;
    },
  }) as (o: object) => OptionFlag<string | undefined>;
  return def({ helpValue: 'SIZE', ...rest, description: `${description} (${rule})` });
}

/** What a rule sees: the parsed values and the names of the flags given on the command line (not defaulted). */
export interface RuleInput {
  flags: Record<string, unknown>;
  given: ReadonlySet<string>;
}

/** A rule between flags: the message of the violation, or undefined. */
export type FlagRule = (i: RuleInput) => string | undefined;

/** `a` and `b` cannot be given together. */
export function exclusive(a: string, b: string, why?: string): FlagRule {
  return ({ given }) => (given.has(a) && given.has(b) ? `--${a} and --${b} cannot be given together${why ? `: ${why}` : ''}` : undefined);
}

/** `flag`, when given, needs `condition` (said as `what`, e.g. "--kind plan"). */
export function onlyWith(flag: string, what: string, condition: (i: RuleInput) => boolean): FlagRule {
  return (i) => (i.given.has(flag) && !condition(i) ? `--${flag} applies only with ${what}` : undefined);
}

/** Each flag of `flags`, when given, needs `condition`. */
export function allOnlyWith(flags: readonly string[], what: string, condition: (i: RuleInput) => boolean): FlagRule[] {
  return flags.map((f) => onlyWith(f, what, condition));
}

/** The first broken rule, as a usage error. */
export function checkRules(rules: readonly FlagRule[], input: RuleInput): void {
  for (const rule of rules) {
    const problem = rule(input);
    if (problem) throw new VlakitError('E_USAGE', problem);
  }
}

/** Warnings for counts above their soft limit. */
export function softLimitWarnings(defs: Record<string, unknown>, input: RuleInput): string[] {
  const out: string[] = [];
  for (const name of input.given) {
    const warnAbove = (defs[name] as { warnAbove?: number } | undefined)?.warnAbove;
    const v = input.flags[name];
    if (warnAbove !== undefined && typeof v === 'number' && v > warnAbove) out.push(`--${name} ${v} is more than ${warnAbove}; this run will take long (Ctrl-C stops it)`);
  }
  return out;
}

/** The LeRobot output flags (convert, annotate, rollout: `--to lerobot`). */
export const lerobotFlags = {
  'lerobot-version': Flags.string({ description: 'lerobot output: the codebase version to write', options: ['3.0', '2.1'], default: '3.0' }),
  'lerobot-images': Flags.string({ description: 'lerobot output: camera frames as MP4 videos (LeRobot\'s default) or as image bytes in the parquet files (lossless)', options: ['video', 'image'], default: 'video' }),
  'video-codec': Flags.string({ description: 'lerobot output: the video codec (av1 through libaom-av1, h264 through libx264, hevc through libx265)', options: ['av1', 'h264', 'hevc'], default: 'av1' }),
};

/** The options of a LeRobot output, from lerobotFlags' values. */
export function lerobotOptions(f: { 'lerobot-version': string; 'lerobot-images': string; 'video-codec': string }): { version: '3.0' | '2.1'; images: 'video' | 'image'; videoCodec: 'av1' | 'h264' | 'hevc' } {
  return { version: f['lerobot-version'] as '3.0' | '2.1', images: f['lerobot-images'] as 'video' | 'image', videoCodec: f['video-codec'] as 'av1' | 'h264' | 'hevc' };
}

/**
 * `--shard I/N`: this run reads the whole input and keeps the episodes whose ordinal (place in reading order, from
 * 0) is I modulo N; `vlakit merge` joins the N parts. Checked at parse time (exit 2).
 */
export const shardFlag = Flags.custom<Shard>({
  description: 'process only shard I of N: the episodes whose place in the input (from 0) is I modulo N; writes OUTPUT.shard.json beside -o for vlakit merge (docs/SCALE.md)',
  helpValue: 'I/N',
  parse: async (input, _ctx, flag) => parseShard(input, flag.name),
});

/** The most distractors a scene takes: with more, some layouts find no room for every object. */
export const MAX_DISTRACTORS = 5;

/** `2` or `1-3`, as --distractors takes it. */
export function parseRange(s: string): number | [number, number] {
  const m = /^(\d+)(?:-(\d+))?$/.exec(s.trim());
  if (!m) throw new VlakitError('E_USAGE', `invalid --distractors "${s}"; expected N or MIN-MAX, e.g. 2 or 1-3`);
  return m[2] === undefined ? Number(m[1]) : [Number(m[1]), Number(m[2])];
}

/** --distractors N or MIN-MAX (rollout, eval-vqa --generate): checked as given, parsed with parseRange. */
export function distractorsFlag(description = 'distractor objects per scene') {
  return Flags.string({
    description: `${description}: N or MIN-MAX (MIN <= MAX <= ${MAX_DISTRACTORS})`,
    default: '1-3',
    parse: async (s) => {
      const r = parseRange(s);
      const [lo, hi] = typeof r === 'number' ? [r, r] : r;
      if (lo > hi) throw new VlakitError('E_USAGE', `--distractors ${s} is an empty range: MIN must not exceed MAX (e.g. 2-5)`);
      if (hi > MAX_DISTRACTORS) throw new VlakitError('E_USAGE', `--distractors must be at most ${MAX_DISTRACTORS}, got "${s}"`);
      return s;
    },
  });
}
