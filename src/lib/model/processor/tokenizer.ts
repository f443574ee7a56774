/**
 * The text side of a processor, from a checkpoint's own files: tokenizer.json (run by @huggingface/tokenizers),
 * the special tokens named by tokenizer_config.json / special_tokens_map.json (strings looked up to ids, with
 * added_tokens.json as a fallback), the end-of-sequence ids of config.json and generation_config.json, and the chat
 * template (chat_template.jinja, chat_template.json or tokenizer_config.json's `chat_template`) rendered with
 * @huggingface/jinja.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { VlakitError } from '../../errors.js';
import { readJsonFile, readTextFile } from '../../io/json-file.js';
import type { ChatMessage, ChatPart } from './types.js';

/** A Hugging Face tokenizer.json beside a model: text to ids and back. */
export interface TextTokenizer {
  encode(text: string, addSpecialTokens: boolean): number[];
  decode(ids: number[], skipSpecialTokens?: boolean): string;
  /** The id of a token string (vocabulary or added token), or undefined. */
  tokenId(token: string): number | undefined;
  /** Whether an id is one of tokenizer.json's added tokens marked special. */
  isSpecial(id: number): boolean;
}

/** A token as tokenizer files write it: a string, an AddedToken object, or null. */
const TokenValue = z.union([z.string(), z.looseObject({ content: z.string() }), z.null()]).optional();
const tokenText = (v: z.infer<typeof TokenValue>): string | undefined => (v === null || v === undefined ? undefined : typeof v === 'string' ? v : v.content);

const TemplateValue = z.union([z.string(), z.array(z.looseObject({ name: z.string(), template: z.string() }))]).optional();
const TokenizerConfigSchema = z.looseObject({
  bos_token: TokenValue,
  eos_token: TokenValue,
  pad_token: TokenValue,
  unk_token: TokenValue,
  chat_template: TemplateValue,
});
const SpecialTokensMapSchema = z.looseObject({ bos_token: TokenValue, eos_token: TokenValue, pad_token: TokenValue, unk_token: TokenValue });
const AddedTokensSchema = z.record(z.string(), z.number().int().nonnegative());
const ChatTemplateJsonSchema = z.looseObject({ chat_template: TemplateValue });
const IdOrIds = z.union([z.number().int().nonnegative(), z.array(z.number().int().nonnegative()), z.null()]).optional();
const GenerationConfigSchema = z.looseObject({ eos_token_id: IdOrIds, bos_token_id: IdOrIds, pad_token_id: IdOrIds });

const TOKENIZER_JSON = z.looseObject({ added_tokens: z.array(z.looseObject({ id: z.number().int(), special: z.boolean().optional() })).optional() });
const opt = <T>(file: string, read: (f: string) => T): T | undefined => (existsSync(file) ? read(file) : undefined);

/** The tokenizer of a model directory (tokenizer.json, with tokenizer_config.json when present), or undefined. */
export async function loadTextTokenizer(dir: string): Promise<TextTokenizer | undefined> {
  const file = path.join(dir, 'tokenizer.json');
  if (!existsSync(file)) return undefined;
  const json = readJsonFile(file, TOKENIZER_JSON, { what: 'tokenizer', code: 'E_MODEL' });
  const config = opt(path.join(dir, 'tokenizer_config.json'), (f) => readJsonFile(f, z.record(z.string(), z.unknown()), { what: 'tokenizer config', code: 'E_MODEL' })) ?? {};
  const added = opt(path.join(dir, 'added_tokens.json'), (f) => readJsonFile(f, AddedTokensSchema, { what: 'added tokens', code: 'E_MODEL' })) ?? {};
  const special = new Set((json.added_tokens ?? []).filter((t) => t.special).map((t) => t.id));
  const { Tokenizer } = await import('@huggingface/tokenizers');
  let tok: InstanceType<typeof Tokenizer>;
  try {
    tok = new Tokenizer(json as never, config as never);
  } catch (err) {
    throw new VlakitError('E_MODEL', `the tokenizer cannot be built: ${(err as Error).message}`, { file });
  }
  return {
    encode: (text, add) => tok.encode(text, { add_special_tokens: add }).ids,
    decode: (ids, skip = true) => tok.decode(ids, { skip_special_tokens: skip }),
    tokenId: (token) => tok.token_to_id(token) ?? added[token],
    isSpecial: (id) => special.has(id),
  };
}

/** What a checkpoint's tokenizer files say beyond the vocabulary: special token strings and the chat template. */
export interface TokenizerFiles {
  tokens: { bos?: string; eos?: string; pad?: string; unk?: string };
  /** eos ids of generation_config.json. */
  generationEos: number[];
  template?: { text: string; file: string };
}

/** Reads tokenizer_config.json, special_tokens_map.json, generation_config.json and the chat template of `dir`. */
export function readTokenizerFiles(dir: string): TokenizerFiles {
  const cfg = opt(path.join(dir, 'tokenizer_config.json'), (f) => readJsonFile(f, TokenizerConfigSchema, { what: 'tokenizer config', code: 'E_MODEL' }));
  const map = opt(path.join(dir, 'special_tokens_map.json'), (f) => readJsonFile(f, SpecialTokensMapSchema, { what: 'special tokens map', code: 'E_MODEL' }));
  const gen = opt(path.join(dir, 'generation_config.json'), (f) => readJsonFile(f, GenerationConfigSchema, { what: 'generation config', code: 'E_MODEL' }));
  // tokenizer_config.json is what transformers reads first; special_tokens_map.json fills what it leaves out
  const pick = (k: 'bos_token' | 'eos_token' | 'pad_token' | 'unk_token') => tokenText(cfg?.[k]) ?? tokenText(map?.[k]);
  return {
    tokens: { bos: pick('bos_token'), eos: pick('eos_token'), pad: pick('pad_token'), unk: pick('unk_token') },
    generationEos: idList(gen?.eos_token_id),
    template: readTemplate(dir, cfg?.chat_template),
  };
}

export const idList = (v: number | number[] | null | undefined): number[] => (v === null || v === undefined ? [] : Array.isArray(v) ? v : [v]);

function templateText(v: z.infer<typeof TemplateValue>, file: string): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v === 'string') return v;
  // a list of named templates: the default one (transformers' choice when no tool template is asked for)
  const t = v.find((x) => x.name === 'default') ?? v[0];
  if (!t) throw new VlakitError('E_MODEL', 'the chat_template list is empty', { file, field: 'chat_template' });
  return t.template;
}

/** The chat template: chat_template.jinja, then chat_template.json, then tokenizer_config.json's (transformers' order). */
function readTemplate(dir: string, fromConfig: z.infer<typeof TemplateValue>): TokenizerFiles['template'] {
  const jinja = path.join(dir, 'chat_template.jinja');
  if (existsSync(jinja)) return { text: readTextFile(jinja, 'chat template', 'E_MODEL'), file: jinja };
  const json = path.join(dir, 'chat_template.json');
  if (existsSync(json)) {
    const t = templateText(readJsonFile(json, ChatTemplateJsonSchema, { what: 'chat template', code: 'E_MODEL' }).chat_template, json);
    if (t !== undefined) return { text: t, file: json };
  }
  const cfg = path.join(dir, 'tokenizer_config.json');
  const t = templateText(fromConfig, cfg);
  return t === undefined ? undefined : { text: t, file: cfg };
}

/** A message's text as it is, image parts written as `imageToken` (for a model without a chat template). */
export function plainText(m: ChatMessage, imageToken = ''): string {
  if (typeof m.content === 'string') return m.content;
  return m.content.map((p: ChatPart) => (p.type === 'text' ? p.text : imageToken)).join('');
}

export type ChatRenderer = (messages: ChatMessage[], o?: { addGenerationPrompt?: boolean }) => string;

/**
 * A renderer of the checkpoint's chat template (transformers' variables: messages, add_generation_prompt and the
 * special token strings), or of the messages' text joined by newlines when it has none.
 */
export async function chatRenderer(files: TokenizerFiles, imageToken?: string): Promise<ChatRenderer> {
  const tpl = files.template;
  if (!tpl) return (messages) => messages.map((m) => plainText(m, imageToken)).join('\n');
  const { Template } = await import('@huggingface/jinja');
  let compiled: InstanceType<typeof Template>;
  try {
    compiled = new Template(tpl.text);
  } catch (err) {
    throw new VlakitError('E_MODEL', `the chat template does not parse: ${(err as Error).message}`, { file: tpl.file, field: 'chat_template' });
  }
  const t = files.tokens;
  const specials = Object.fromEntries(
    Object.entries({ bos_token: t.bos, eos_token: t.eos, pad_token: t.pad, unk_token: t.unk }).filter(([, v]) => v !== undefined),
  );
  return (messages, o = {}) => {
    try {
      return compiled.render({ messages, add_generation_prompt: o.addGenerationPrompt ?? false, ...specials });
    } catch (err) {
      throw new VlakitError('E_MODEL', `the chat template failed on these messages: ${(err as Error).message}`, { file: tpl.file, field: 'chat_template' });
    }
  };
}

/**
 * What the template writes after an assistant answer before the next turn begins (`<end_of_utterance>\n`,
 * `<|im_end|>\n`, `<|eot_id|>`...), found by rendering a conversation with a marker answer, once as the last turn
 * and once followed by a user turn: the text both have after the marker. Tries the content as a plain string, then
 * as a list of parts (a string template would print a list as its repr; a parts template drops a string's text).
 * Undefined when neither renders the marker.
 */
export function deriveTurnEnd(render: ChatRenderer): string | undefined {
  const MARK = 'VLAKIT_ANSWER_7f3a';
  for (const asParts of [false, true]) {
    const msg = (role: ChatMessage['role'], text: string): ChatMessage => ({ role, content: asParts ? [{ type: 'text', text }] : text });
    let last: string;
    let more: string;
    try {
      last = render([msg('user', 'Hi'), msg('assistant', MARK)]);
      more = render([msg('user', 'Hi'), msg('assistant', MARK), msg('user', 'Bye')]);
    } catch {
      continue;
    }
    const a = last.indexOf(MARK);
    const b = more.indexOf(MARK);
    if (a < 0 || b < 0 || last.indexOf(MARK, a + 1) >= 0) continue;
    const tailA = last.slice(a + MARK.length);
    const tailB = more.slice(b + MARK.length);
    let n = 0;
    while (n < tailA.length && n < tailB.length && tailA[n] === tailB[n]) n++;
    return tailA.slice(0, n);
  }
  return undefined;
}
