/**
 * Actions written as text, four ways, each with an exact decoder (exact up to the chosen precision), for actions of
 * any layout (./layout.ts):
 * - text (VLM2VLA): `[[dx, dy, dz, g], ...]` (or `[[dx, dy, dz, droll, dpitch, dyaw, g], ...]`) with `precision`
 *   digits; translation in meters or centimeters, rotation in radians;
 * - words: "move forward 4.2 cm and left 1.0 cm, rotate yaw -5.7 deg, gripper closed; ...";
 * - tokens (VLM2VLA-AT): the text form with each digit 0-9 written as a reserved token of a tokenizer
 *   (Gemma-3: <unused6133>..<unused6142>);
 * - bins (OpenVLA): each dimension cut into N uniform bins over its [q01, q99] range, each bin an unused token.
 * Every codec is described by one typed spec (`ActionCodecSpecSchema`), carried by training examples
 * (`meta.codec`), checkpoints and exports; `codecFromSpec` rebuilds any codec from it.
 */
import { z } from 'zod';
import { VlakitError } from '../errors.js';
import { zodProblem } from '../io/json-file.js';
import { type ActionLayout, ActionLayoutSchema, dimKinds, inferLayout } from './layout.js';

export interface ActionCodec {
  readonly name: string;
  /** The layout of the actions it writes; undefined: inferred from each action's length (4-D or 7-D). */
  readonly layout?: ActionLayout;
  encode(chunk: number[][]): string;
  decode(text: string): number[][];
  /** The codec's spec (`ActionCodecSpec`), stored with examples, checkpoints and exports; `codecFromSpec` rebuilds it. */
  describe(): ActionCodecSpec;
  /** The same codec for actions of another layout. */
  withLayout(layout: ActionLayout): ActionCodec;
  /**
   * True when the model's prompts also carry the robot's proprioceptive state (`observation.state`), written by
   * `stateText` in this codec's units: relabel `--state` sets it, and it travels in the spec (`"state": true`) so
   * that rollout writes the same prompt.
   */
  readonly state?: boolean;
}

const precision = z.number().int().min(0).max(8);
const units = z.enum(['m', 'cm']);

/** The spec of an action codec: what `describe()` returns and `codecFromSpec` takes. */
export const ActionCodecSpecSchema = z.discriminatedUnion(
  'codec',
  [
    z.looseObject({ codec: z.literal('text'), precision: precision.default(3), units: units.default('m'), layout: ActionLayoutSchema.optional(), state: z.boolean().optional() }),
    z.looseObject({ codec: z.literal('words'), precision: precision.default(1), layout: ActionLayoutSchema.optional(), state: z.boolean().optional() }),
    z.looseObject({
      codec: z.literal('tokens'),
      tokens: z.array(z.string()).length(10),
      tokenizer: z.string().default('custom'),
      precision: precision.default(3),
      units: units.default('m'),
      layout: ActionLayoutSchema.optional(),
      state: z.boolean().optional(),
    }),
    z.looseObject({
      codec: z.literal('bins'),
      bins: z.number().int().min(2).optional(),
      ranges: z.array(z.object({ low: z.number(), high: z.number() })).min(1),
      vocab: z.array(z.string()).min(2),
      tokenizer: z.string().default('custom'),
      layout: ActionLayoutSchema.optional(),
      state: z.boolean().optional(),
    }),
  ],
  { error: (iss) => (iss.code === 'invalid_union' ? 'expected an action codec spec: {"codec": "text" | "words" | "tokens" | "bins", ...}' : undefined) },
);
export type ActionCodecSpec = z.output<typeof ActionCodecSpecSchema>;

/**
 * Rebuilds any codec from its spec (a checkpoint's `vlakit.action_codec`, an example's `meta.codec`).
 * @example codecFromSpec({ codec: 'text', precision: 1, units: 'cm' }).encode([[0.012, 0, 0, 1]]) // "[[1.2, 0.0, 0.0, 1]]"
 */
export function codecFromSpec(spec: unknown): ActionCodec {
  const r = ActionCodecSpecSchema.safeParse(spec);
  if (!r.success) {
    const p = zodProblem(r.error);
    throw new VlakitError('E_RECORD_INVALID', `invalid action codec spec${p.field ? ` (${p.field})` : ''}: ${p.message}`, { field: p.field ? `codec.${p.field}` : 'codec' });
  }
  const s = r.data;
  switch (s.codec) {
    case 'text':
      return new TextCodec(s.precision, s.units, s.layout, s.state ?? false);
    case 'words':
      return new WordsCodec(s.precision, s.layout, s.state ?? false);
    case 'tokens':
      return new TokensCodec(s.tokens, s.precision, s.units, s.tokenizer, s.layout, s.state ?? false);
    case 'bins':
      if (s.bins !== undefined && s.bins !== s.vocab.length) throw new VlakitError('E_RECORD_INVALID', `invalid action codec spec: ${s.bins} bins but ${s.vocab.length} bin tokens`, { field: 'codec.vocab' });
      return new BinsCodec(s.ranges, s.vocab, s.tokenizer, s.layout, s.state ?? false);
  }
}

/**
 * The robot state as prompt text: positions (all but the last value) in the codec's units with its precision,
 * the gripper opening (the last value, 0 closed .. 1 open) with two decimals. `[0.35, 0, 0.18, 1]` in cm with one
 * decimal: `[35.0, 0.0, 18.0, 1.00]`.
 */
export function stateText(state: readonly number[], units: 'm' | 'cm' = 'm', precision = 3): string {
  const scale = units === 'cm' ? 100 : 1;
  return `[${state.map((v, i) => (i === state.length - 1 ? fixed(v, 2) : fixed(v * scale, precision))).join(', ')}]`;
}

/** A position (m) as prompt text, written as the robot state's positions are: `[0.46, -0.18]` in cm with one decimal: `[46.0, -18.0]`. */
export function positionText(pos: readonly number[], units: 'm' | 'cm' = 'm', precision = 3): string {
  const scale = units === 'cm' ? 100 : 1;
  return `[${pos.map((v) => fixed(v * scale, precision)).join(', ')}]`;
}

/**
 * The state text of a codec (text codecs: their units and precision; words: cm with their precision), or undefined
 * when `state` is not a robot state (at least two finite numbers): the caller says where it came from.
 */
export function codecStateText(codec: ActionCodec, state: unknown): string | undefined {
  if (!Array.isArray(state) || state.length < 2 || !state.every((v) => typeof v === 'number' && Number.isFinite(v))) return undefined;
  if (codec instanceof TextCodec) return stateText(state, codec.units, codec.precision);
  if (codec instanceof WordsCodec) return stateText(state, 'cm', codec.precision);
  // tokens and bins spell only the actions with their tokens; the state is an input, written in plain digits
  if (codec instanceof TokensCodec) return stateText(state, codec.units, codec.precision);
  if (codec instanceof BinsCodec) return stateText(state, 'cm', 1);
  throw new VlakitError('E_USAGE', `the robot state in the prompt is written with the text, words, tokens or bins codecs, not ${codec.name}`);
}

function fixed(v: number, digits: number): string {
  const s = v.toFixed(digits);
  return /^-0\.?0*$/.test(s) ? s.slice(1) : s; // no "-0.000"
}

function decodeError(codec: string, text: string, why: string): VlakitError {
  return new VlakitError('E_RECORD_INVALID', `cannot read actions from ${JSON.stringify(text.slice(0, 80))} as ${codec}: ${why}`);
}

/** The layout of one action: the codec's, else inferred from its length (anything else: gripper last, no rotation). */
function rowLayout(layout: ActionLayout | undefined, D: number): ActionLayout {
  if (layout) return layout;
  return inferLayout(D) ?? { dims: D, translation: D >= 4 ? [0, 1, 2] : [], rotation: [], gripper: D - 1, gripper_kind: 'binary', mode: 'delta' };
}

/** Digits of a continuous gripper (at least two: 0.01 of the range). */
const gripperDigits = (p: number): number => Math.max(2, p);

export class TextCodec implements ActionCodec {
  readonly name = 'text';
  constructor(
    readonly precision = 3,
    readonly units: 'm' | 'cm' = 'm',
    readonly layout?: ActionLayout,
    readonly state = false,
  ) {}
  private get scale(): number {
    return this.units === 'cm' ? 100 : 1;
  }
  /** Rotation digits: the same resolution in radians as translation has in meters. */
  private get rotationDigits(): number {
    return this.precision + (this.units === 'cm' ? 2 : 0);
  }
  private write(a: number[]): string {
    const L = rowLayout(this.layout, a.length);
    const kinds = dimKinds(L);
    return `[${a
      .map((v, k) => {
        switch (kinds[k]) {
          case 'translation':
            return fixed(v * this.scale, this.precision);
          case 'rotation':
            return fixed(v, this.rotationDigits);
          case 'gripper':
            // binary grippers as 0/1; any other value (a continuous gripper) keeps its digits
            return L.gripper_kind === 'binary' && (v === 0 || v === 1) ? String(v) : fixed(v, gripperDigits(this.precision));
          default:
            return fixed(v, this.precision);
        }
      })
      .join(', ')}]`;
  }
  encode(chunk: number[][]): string {
    return `[${chunk.map((a) => this.write(a)).join(', ')}]`;
  }
  decode(text: string): number[][] {
    let v: unknown;
    try {
      v = JSON.parse(text.trim());
    } catch (err) {
      throw decodeError('text', text, (err as Error).message);
    }
    if (!Array.isArray(v) || !v.every((a) => Array.isArray(a) && a.length >= 2 && a.every((x) => typeof x === 'number'))) {
      throw decodeError('text', text, 'expected a list of lists of numbers');
    }
    return (v as number[][]).map((a) => {
      if (this.layout && a.length !== this.layout.dims) throw decodeError('text', text, `an action of ${a.length} numbers; expected ${this.layout.dims}`);
      const kinds = dimKinds(rowLayout(this.layout, a.length));
      return a.map((x, k) => (kinds[k] === 'translation' ? x / this.scale : x));
    });
  }
  describe(): ActionCodecSpec {
    return { codec: 'text', precision: this.precision, units: this.units, ...(this.layout ? { layout: this.layout } : {}), ...(this.state ? { state: true } : {}) };
  }
  withLayout(layout: ActionLayout): TextCodec {
    return new TextCodec(this.precision, this.units, layout, this.state);
  }
}

const AXES: [string, string][] = [
  ['forward', 'backward'],
  ['left', 'right'],
  ['up', 'down'],
];
const ROTATIONS = ['roll', 'pitch', 'yaw'];

/**
 * Words: translation in centimeters by direction, rotation in signed degrees ("rotate roll 5.7 deg and yaw -2.0 deg"),
 * the gripper open/closed (binary, 0 or 1) or as a number (any other value, two digits at least).
 */
export class WordsCodec implements ActionCodec {
  readonly name = 'words';
  constructor(
    readonly precision = 1,
    readonly layout?: ActionLayout,
    readonly state = false,
  ) {}
  encode(chunk: number[][]): string {
    return chunk
      .map((a) => {
        const L = rowLayout(this.layout, a.length);
        const parts: string[] = [];
        L.translation.forEach((i, k) => {
          const cm = +(a[i] * 100).toFixed(this.precision);
          if (cm !== 0) parts.push(`${cm > 0 ? AXES[k][0] : AXES[k][1]} ${Math.abs(cm).toFixed(this.precision)} cm`);
        });
        const rot: string[] = [];
        L.rotation.forEach((i, k) => {
          const deg = fixed((a[i] * 180) / Math.PI, this.precision);
          if (Number(deg) !== 0) rot.push(`${ROTATIONS[k]} ${deg} deg`);
        });
        const g = L.gripper === null ? undefined : a[L.gripper];
        const grip = g === undefined ? '' : L.gripper_kind === 'binary' && (g === 0 || g === 1) ? `, gripper ${g === 1 ? 'open' : 'closed'}` : `, gripper ${fixed(g, gripperDigits(this.precision))}`;
        return `${parts.length ? `move ${parts.join(' and ')}` : 'stay'}${rot.length ? `, rotate ${rot.join(' and ')}` : ''}${grip}`;
      })
      .join('; ');
  }
  decode(text: string): number[][] {
    return text
      .split(';')
      .map((s) => s.trim())
      .filter(Boolean)
      .map((s) => {
        const m = /^(?:move (.+?)|stay)(?:, rotate (.+?))?, gripper (open|closed|-?[\d.]+)$/.exec(s);
        if (!m) throw decodeError('words', s, 'expected "move <direction> <n> cm [and ...][, rotate <roll|pitch|yaw> <deg> deg [and ...]], gripper open|closed|<value>" or "stay, gripper ..."');
        const L = this.layout ?? rowLayout(undefined, m[2] ? 7 : 4);
        const a = new Array(L.dims).fill(0);
        if (L.gripper !== null) a[L.gripper] = m[3] === 'open' ? 1 : m[3] === 'closed' ? 0 : Number(m[3]);
        for (const part of (m[1] ?? '').split(' and ').filter(Boolean)) {
          const p = /^(forward|backward|left|right|up|down) ([\d.]+) cm$/.exec(part.trim());
          const k = p ? AXES.findIndex((ax) => ax.includes(p[1])) : -1;
          if (!p || L.translation[k] === undefined) throw decodeError('words', s, `cannot read "${part}"`);
          a[L.translation[k]] = (AXES[k][0] === p[1] ? 1 : -1) * (Number(p[2]) / 100);
        }
        for (const part of (m[2] ?? '').split(' and ').filter(Boolean)) {
          const p = /^(roll|pitch|yaw) (-?[\d.]+) deg$/.exec(part.trim());
          const k = p ? ROTATIONS.indexOf(p[1]) : -1;
          if (!p || L.rotation[k] === undefined) throw decodeError('words', s, `cannot read "${part}"${p ? ' (no rotation in this layout)' : ''}`);
          a[L.rotation[k]] = (Number(p[2]) * Math.PI) / 180;
        }
        return a;
      });
  }
  describe(): ActionCodecSpec {
    return { codec: 'words', precision: this.precision, ...(this.layout ? { layout: this.layout } : {}), ...(this.state ? { state: true } : {}) };
  }
  withLayout(layout: ActionLayout): WordsCodec {
    return new WordsCodec(this.precision, layout, this.state);
  }
}

/** The text form with its digits spelled as ten reserved tokens (digit d -> tokens[d]). */
export class TokensCodec implements ActionCodec {
  readonly name = 'tokens';
  private readonly text: TextCodec;
  constructor(
    readonly tokens: string[],
    precision = 3,
    units: 'm' | 'cm' = 'm',
    readonly tokenizer = 'custom',
    readonly layout?: ActionLayout,
    readonly state = false,
  ) {
    if (tokens.length !== 10 || new Set(tokens).size !== 10) throw new VlakitError('E_USAGE', 'the token list must hold 10 distinct tokens, one per digit 0-9');
    this.text = new TextCodec(precision, units, layout);
  }
  encode(chunk: number[][]): string {
    return this.text.encode(chunk).replace(/\d/g, (d) => this.tokens[Number(d)]);
  }
  decode(text: string): number[][] {
    let s = text;
    this.tokens.forEach((tok, d) => (s = s.split(tok).join(String(d))));
    return this.text.decode(s);
  }
  describe(): ActionCodecSpec {
    return { codec: 'tokens', tokens: this.tokens, tokenizer: this.tokenizer, precision: this.text.precision, units: this.text.units, ...(this.layout ? { layout: this.layout } : {}), ...(this.state ? { state: true } : {}) };
  }
  get units(): 'm' | 'cm' {
    return this.text.units;
  }
  get precision(): number {
    return this.text.precision;
  }
  withLayout(layout: ActionLayout): TokensCodec {
    return new TokensCodec(this.tokens, this.text.precision, this.text.units, this.tokenizer, layout, this.state);
  }
}

export interface DimRange {
  low: number;
  high: number;
}

/** OpenVLA-style bins: N uniform bins over [q01, q99] of each dimension; bin i of any dimension is `vocab[i]`. */
export class BinsCodec implements ActionCodec {
  readonly name = 'bins';
  constructor(
    readonly ranges: DimRange[],
    readonly vocab: string[],
    readonly tokenizer = 'custom',
    readonly layout?: ActionLayout,
    readonly state = false,
  ) {
    if (new Set(vocab).size !== vocab.length) throw new VlakitError('E_USAGE', 'bin tokens must be distinct');
    if (layout && layout.dims !== ranges.length) throw new VlakitError('E_USAGE', `the statistics cover ${ranges.length} dimensions, the action layout ${layout.dims}`);
  }
  get bins(): number {
    return this.vocab.length;
  }
  bin(v: number, k: number): number {
    const { low, high } = this.ranges[k];
    if (!(high > low)) return 0;
    const i = Math.floor(((v - low) / (high - low)) * this.bins);
    return Math.min(this.bins - 1, Math.max(0, i));
  }
  centre(i: number, k: number): number {
    const { low, high } = this.ranges[k];
    return high > low ? low + ((i + 0.5) * (high - low)) / this.bins : low;
  }
  encode(chunk: number[][]): string {
    return chunk
      .map((a) => {
        if (a.length !== this.ranges.length) throw new VlakitError('E_RECORD_INVALID', `an action of ${a.length} numbers; the bin statistics cover ${this.ranges.length} dimensions`, { field: 'actions' });
        return a.map((v, k) => this.vocab[this.bin(v, k)]).join('');
      })
      .join('');
  }
  decode(text: string): number[][] {
    const index = new Map(this.vocab.map((t, i) => [t, i]));
    const ids: number[] = [];
    let s = text;
    // greedy longest match over the bin tokens
    const sorted = [...this.vocab].sort((a, b) => b.length - a.length);
    while (s.length) {
      const tok = sorted.find((t) => s.startsWith(t));
      if (!tok) throw decodeError('bins', text, `unexpected text at "${s.slice(0, 20)}"`);
      ids.push(index.get(tok)!);
      s = s.slice(tok.length);
    }
    const D = this.ranges.length;
    if (ids.length % D !== 0) throw decodeError('bins', text, `${ids.length} tokens is not a whole number of ${D}-D actions`);
    const out: number[][] = [];
    for (let i = 0; i < ids.length; i += D) out.push(ids.slice(i, i + D).map((b, k) => this.centre(b, k)));
    return out;
  }
  describe(): ActionCodecSpec {
    return { codec: 'bins', bins: this.bins, ranges: this.ranges, vocab: this.vocab, tokenizer: this.tokenizer, ...(this.layout ? { layout: this.layout } : {}), ...(this.state ? { state: true } : {}) };
  }
  withLayout(layout: ActionLayout): BinsCodec {
    return new BinsCodec(this.ranges, this.vocab, this.tokenizer, layout, this.state);
  }
}

/** Round-trip error per dimension: max and mean absolute difference over all actions. */
export function roundTripError(codec: ActionCodec, chunks: number[][][]): { max: number[]; mean: number[]; actions: number } {
  const D = chunks[0]?.[0]?.length ?? 0;
  const max = new Array(D).fill(0);
  const sum = new Array(D).fill(0);
  let n = 0;
  for (const c of chunks) {
    const back = codec.decode(codec.encode(c));
    c.forEach((a, i) =>
      a.forEach((v, k) => {
        const e = Math.abs(v - back[i][k]);
        max[k] = Math.max(max[k], e);
        sum[k] += e;
      }),
    );
    n += c.length;
  }
  return { max, mean: sum.map((s) => (n ? s / n : 0)), actions: n };
}
