/**
 * The default tokenizer: a small BPE vocabulary learned from the training text and saved as a standard Hugging
 * Face tokenizer.json (Replace normalizer " " -> "▁", a Split pre-tokenizer that isolates letters runs, single
 * digits and single symbols, a BPE model, a Replace decoder), so any tokenizers implementation loads it. Digits
 * stay single tokens: numbers are spelled digit by digit, as Gemma and LLaMA do.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { VlakitError } from '../errors.js';
import { zodProblem } from '../io/json-file.js';

export const SPECIAL_TOKENS = ['<pad>', '<unk>', '<bos>', '<eos>', '<sep>'] as const;
export const PAD = 0;
export const UNK = 1;
export const BOS = 2;
export const EOS = 3;
export const SEP = 4;

const SPACE = '▁';
const PATTERN = `${SPACE}?[A-Za-z]+|${SPACE}?[0-9]|${SPACE}?[^A-Za-z0-9${SPACE}]|${SPACE}`;

export interface Tokenizer {
  vocabSize: number;
  encode(text: string): number[];
  decode(ids: number[]): string;
  /** The tokenizer.json text. */
  json: string;
}

function words(text: string): string[] {
  return text.replace(/ /g, SPACE).match(new RegExp(PATTERN, 'gu')) ?? [];
}

/**
 * Learns BPE merges from `texts` until the vocabulary holds `vocabSize` entries (specials, every character seen,
 * then merged symbols). Ties between equally frequent pairs go to the lexically smallest, so training is
 * deterministic.
 */
export function trainBpe(texts: Iterable<string>, vocabSize: number): { vocab: Record<string, number>; merges: [string, string][] } {
  const counts = new Map<string, number>();
  for (const t of texts) for (const w of words(t)) counts.set(w, (counts.get(w) ?? 0) + 1);
  const vocab: Record<string, number> = {};
  SPECIAL_TOKENS.forEach((s, i) => (vocab[s] = i));
  const chars = new Set<string>();
  for (const w of counts.keys()) for (const c of w) chars.add(c);
  for (const c of [...chars].sort()) vocab[c] ??= Object.keys(vocab).length;
  // each distinct word as a list of symbols, with its count
  const ws = [...counts.entries()].map(([w, n]) => ({ syms: [...w], n }));
  const merges: [string, string][] = [];
  while (Object.keys(vocab).length < vocabSize) {
    const pairs = new Map<string, number>();
    for (const { syms, n } of ws) for (let i = 0; i + 1 < syms.length; i++) {
      const k = `${syms[i]} ${syms[i + 1]}`;
      pairs.set(k, (pairs.get(k) ?? 0) + n);
    }
    let best = '';
    let bestN = 1; // a pair seen once is not worth a token
    for (const [k, n] of pairs) if (n > bestN || (n === bestN && best && k < best)) [best, bestN] = [k, n];
    if (!best) break;
    const [a, b] = best.split(' ');
    const merged = a + b;
    merges.push([a, b]);
    vocab[merged] ??= Object.keys(vocab).length;
    for (const w of ws) {
      const s = w.syms;
      for (let i = 0; i + 1 < s.length; i++) if (s[i] === a && s[i + 1] === b) s.splice(i, 2, merged);
    }
  }
  return { vocab, merges };
}

export function tokenizerJson(vocab: Record<string, number>, merges: [string, string][]): string {
  return JSON.stringify({
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: SPECIAL_TOKENS.map((content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: { type: 'Replace', pattern: { String: ' ' }, content: SPACE },
    pre_tokenizer: { type: 'Split', pattern: { Regex: PATTERN }, behavior: 'Isolated', invert: false },
    post_processor: null,
    decoder: { type: 'Replace', pattern: { String: SPACE }, content: ' ' },
    model: { type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges: merges.map(([a, b]) => `${a} ${b}`) },
  });
}

interface HfTokenizer {
  encode(text: string, opts: { add_special_tokens: boolean }): { ids: number[] };
  decode(ids: number[], opts?: { skip_special_tokens?: boolean }): string;
}

/** The fields of a tokenizer.json that vlakit reads (a vocabulary of token -> id, and the added tokens). */
const TokenizerJsonSchema = z.looseObject({
  model: z.looseObject({ vocab: z.record(z.string(), z.number().int().nonnegative()) }),
  added_tokens: z.array(z.looseObject({ id: z.number().int().nonnegative() })).optional(),
});

/** Loads a tokenizer.json text with @huggingface/tokenizers; `file` names it in errors. */
export async function loadTokenizer(json: string, file = 'tokenizer.json'): Promise<Tokenizer> {
  const { Tokenizer: Hf } = (await import('@huggingface/tokenizers')) as unknown as { Tokenizer: new (j: unknown, c: unknown) => HfTokenizer };
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch (err) {
    throw new VlakitError('E_RECORD_INVALID', `the tokenizer is not valid JSON (${(err as Error).message})`, { file }, { cause: err });
  }
  const r = TokenizerJsonSchema.safeParse(value);
  if (!r.success) {
    const p = zodProblem(r.error);
    throw new VlakitError('E_RECORD_INVALID', `invalid tokenizer: ${p.message}`, { file, field: p.field });
  }
  const parsed = r.data;
  let tok: HfTokenizer;
  try {
    tok = new Hf(parsed, {});
  } catch (err) {
    throw new VlakitError('E_RECORD_INVALID', `invalid tokenizer: ${(err as Error).message}`, { file }, { cause: err });
  }
  let size = 0;
  for (const id of Object.values(parsed.model.vocab)) size = Math.max(size, id + 1);
  for (const a of parsed.added_tokens ?? []) size = Math.max(size, a.id + 1);
  return {
    vocabSize: size,
    encode: (text) => tok.encode(text, { add_special_tokens: false }).ids,
    decode: (ids) => (ids.length ? tok.decode(ids, { skip_special_tokens: true }) : ''),
    json,
  };
}

export async function loadTokenizerFile(file: string): Promise<Tokenizer> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new VlakitError('E_USAGE', `cannot read the tokenizer (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { file }, { cause: err });
  }
  return loadTokenizer(text, file);
}

/** Trains a tokenizer on `texts` and loads it. */
export async function buildTokenizer(texts: Iterable<string>, vocabSize: number): Promise<Tokenizer> {
  const { vocab, merges } = trainBpe(texts, vocabSize);
  return loadTokenizer(tokenizerJson(vocab, merges));
}
