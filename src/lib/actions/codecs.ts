/**
 * Actions written as text, four ways, each with an exact decoder (exact up to the chosen precision):
 * - text (VLM2VLA): `[[dx, dy, dz, g], ...]` with `precision` digits, in meters or centimeters;
 * - words: "move forward 4.2 cm and left 1.0 cm, gripper closed; ...";
 * - tokens (VLM2VLA-AT): the text form with each digit 0-9 written as a reserved token of a tokenizer
 *   (Gemma-3: <unused6133>..<unused6142>);
 * - bins (OpenVLA): each dimension cut into N uniform bins over its [q01, q99] range, each bin a token among the
 *   last N of a vocabulary.
 */
import { VlakitError } from '../errors.js';

export interface ActionCodec {
  readonly name: string;
  encode(chunk: number[][]): string;
  decode(text: string): number[][];
  /** A description stored with checkpoints, enough to rebuild the codec. */
  describe(): Record<string, unknown>;
  /**
   * True when the model's prompts also carry the robot's proprioceptive state (`observation.state`), written by
   * `stateText` in this codec's units: relabel `--state` sets it, and it travels in the description
   * (`"state": true`) so that rollout writes the same prompt.
   */
  readonly state?: boolean;
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

/** The state text of a codec (text codecs: their units and precision; words: cm with their precision). */
export function codecStateText(codec: ActionCodec, state: readonly number[]): string {
  if (codec instanceof TextCodec) return stateText(state, codec.units, codec.precision);
  if (codec instanceof WordsCodec) return stateText(state, 'cm', codec.precision);
  throw new VlakitError('E_USAGE', `the robot state in the prompt is written with the text or words codecs, not ${codec.name}`);
}

function fixed(v: number, digits: number): string {
  const s = v.toFixed(digits);
  return /^-0\.?0*$/.test(s) ? s.slice(1) : s; // no "-0.000"
}

function decodeError(codec: string, text: string, why: string): VlakitError {
  return new VlakitError('E_RECORD_INVALID', `cannot read actions from ${JSON.stringify(text.slice(0, 80))} as ${codec}: ${why}`);
}

export class TextCodec implements ActionCodec {
  readonly name = 'text';
  constructor(
    readonly precision = 3,
    readonly units: 'm' | 'cm' = 'm',
    readonly state = false,
  ) {}
  private get scale(): number {
    return this.units === 'cm' ? 100 : 1;
  }
  encode(chunk: number[][]): string {
    return `[${chunk.map((a) => `[${a.map((v, i) => (i === a.length - 1 ? String(Math.round(v)) : fixed(v * this.scale, this.precision))).join(', ')}]`).join(', ')}]`;
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
    return (v as number[][]).map((a) => a.map((x, i) => (i === a.length - 1 ? x : x / this.scale)));
  }
  describe(): Record<string, unknown> {
    return { codec: 'text', precision: this.precision, units: this.units, ...(this.state ? { state: true } : {}) };
  }
}

const AXES: [string, string][] = [
  ['forward', 'backward'],
  ['left', 'right'],
  ['up', 'down'],
];

export class WordsCodec implements ActionCodec {
  readonly name = 'words';
  constructor(
    readonly precision = 1,
    readonly state = false,
  ) {}
  encode(chunk: number[][]): string {
    return chunk
      .map((a) => {
        const parts: string[] = [];
        for (let k = 0; k < 3; k++) {
          const cm = +(a[k] * 100).toFixed(this.precision);
          if (cm !== 0) parts.push(`${cm > 0 ? AXES[k][0] : AXES[k][1]} ${Math.abs(cm).toFixed(this.precision)} cm`);
        }
        const move = parts.length ? `move ${parts.join(' and ')}` : 'stay';
        return `${move}, gripper ${a[a.length - 1] >= 0.5 ? 'open' : 'closed'}`;
      })
      .join('; ');
  }
  decode(text: string): number[][] {
    return text
      .split(';')
      .map((s) => s.trim())
      .filter(Boolean)
      .map((s) => {
        const m = /^(?:move (.+)|stay), gripper (open|closed)$/.exec(s);
        if (!m) throw decodeError('words', s, 'expected "move <direction> <n> cm [and ...], gripper open|closed" or "stay, gripper ..."');
        const a = [0, 0, 0, m[2] === 'open' ? 1 : 0];
        for (const part of (m[1] ?? '').split(' and ').filter(Boolean)) {
          const p = /^(forward|backward|left|right|up|down) ([\d.]+) cm$/.exec(part.trim());
          if (!p) throw decodeError('words', s, `cannot read "${part}"`);
          const k = AXES.findIndex((ax) => ax.includes(p[1]));
          a[k] = (AXES[k][0] === p[1] ? 1 : -1) * (Number(p[2]) / 100);
        }
        return a;
      });
  }
  describe(): Record<string, unknown> {
    return { codec: 'words', precision: this.precision, ...(this.state ? { state: true } : {}) };
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
  ) {
    if (tokens.length !== 10 || new Set(tokens).size !== 10) throw new VlakitError('E_USAGE', 'the token list must hold 10 distinct tokens, one per digit 0-9');
    this.text = new TextCodec(precision, units);
  }
  encode(chunk: number[][]): string {
    return this.text.encode(chunk).replace(/\d/g, (d) => this.tokens[Number(d)]);
  }
  decode(text: string): number[][] {
    let s = text;
    this.tokens.forEach((tok, d) => (s = s.split(tok).join(String(d))));
    return this.text.decode(s);
  }
  describe(): Record<string, unknown> {
    return { codec: 'tokens', tokens: this.tokens, tokenizer: this.tokenizer, ...this.text.describe(), codec_base: 'text' };
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
  ) {
    if (new Set(vocab).size !== vocab.length) throw new VlakitError('E_USAGE', 'bin tokens must be distinct');
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
    return chunk.map((a) => a.map((v, k) => this.vocab[this.bin(v, k)]).join('')).join('');
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
  describe(): Record<string, unknown> {
    return { codec: 'bins', bins: this.bins, ranges: this.ranges, vocab: this.vocab, tokenizer: this.tokenizer };
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
