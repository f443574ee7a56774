/**
 * The text processor every architecture starts from: tokenizer, special token ids, chat template and its end of
 * turn. A text-only architecture (llama) is this alone; a vision-language one adds its images on top.
 */
import path from 'node:path';
import { VlakitError } from '../../errors.js';
import type { Architecture } from '../arch/registry.js';
import { type ChatRenderer, type TextTokenizer, chatRenderer, deriveTurnEnd, loadTextTokenizer, readTokenizerFiles } from './tokenizer.js';
import type { ChatMessage, Processor, ProcessorImage, ProcessorInputs, SpecialTokens } from './types.js';

export interface TextParts {
  dir: string;
  modelType: string;
  tokenizer?: TextTokenizer;
  special: SpecialTokens;
  render: ChatRenderer;
  turnEnd: number[];
  /** The bos token's string (tokenizer files), when they name one. */
  bosToken?: string;
  /** Token string -> id through the tokenizer; an error naming the file when the tokenizer lacks it. */
  idOf(token: string, what: string): number;
}

/**
 * Reads the text side of the checkpoint in `dir`; `imageToken` is how a template-less render writes image parts.
 * Special ids: bos and pad from the tokenizer files (the config's when they name none); eos = the tokenizer's eos,
 * the config's and generation_config.json's eos ids, and the end-of-turn token when it is a special token.
 */
export async function readTextParts(dir: string, arch: Architecture<unknown>, config: unknown, imageToken?: string): Promise<TextParts> {
  const tokenizer = await loadTextTokenizer(dir);
  const files = readTokenizerFiles(dir);
  const idOf = (token: string, what: string): number => {
    const id = tokenizer?.tokenId(token);
    if (id === undefined) throw new VlakitError('E_MODEL', `the ${what} ${JSON.stringify(token)} is not a token of tokenizer.json`, { file: path.join(dir, 'tokenizer.json') });
    return id;
  };
  const named = (token: string | undefined, what: string) => (token === undefined || !tokenizer ? undefined : idOf(token, what));
  const bos = named(files.tokens.bos, 'bos_token') ?? arch.bosId(config);
  const eos = named(files.tokens.eos, 'eos_token');
  const pad = named(files.tokens.pad, 'pad_token');
  const render = await chatRenderer(files, imageToken);
  let turnEnd: number[] = [];
  if (files.template && tokenizer) {
    const text = deriveTurnEnd(render);
    if (text === undefined) throw new VlakitError('E_MODEL', 'the chat template does not render an assistant answer, so its end of turn is unknown', { file: files.template.file, field: 'chat_template' });
    turnEnd = tokenizer.encode(text, false);
  } else if (eos !== undefined) {
    turnEnd = [eos];
  }
  const eosIds = [...(eos === undefined ? [] : [eos]), ...arch.eosIds(config), ...files.generationEos];
  if (turnEnd.length && tokenizer?.isSpecial(turnEnd[0])) eosIds.push(turnEnd[0]);
  const special: SpecialTokens = { bos, eos: [...new Set(eosIds)], pad };
  return { dir, modelType: arch.modelType, tokenizer, special, render, turnEnd, bosToken: files.tokens.bos, idOf };
}

/**
 * A prompt's ids with the special tokens the tokenizer adds, unless the prompt already starts with the bos token
 * (a rendered chat template that writes it): then as it is, as transformers' apply_chat_template tokenizes.
 */
export function encodePrompt(t: TextParts, prompt: string): number[] {
  if (!t.tokenizer) throw new VlakitError('E_USAGE', 'the model has no tokenizer.json: give token ids instead of text', { file: t.dir });
  return t.tokenizer.encode(prompt, !(t.bosToken && prompt.startsWith(t.bosToken)));
}

/** The Processor methods every architecture shares; `encode` is the architecture's. */
export function textProcessor(t: TextParts, encode: (prompt: string, images?: ProcessorImage[]) => Promise<ProcessorInputs>): Processor {
  const tok = (): TextTokenizer => {
    if (!t.tokenizer) throw new VlakitError('E_USAGE', 'the model has no tokenizer.json: give token ids instead of text', { file: t.dir });
    return t.tokenizer;
  };
  return {
    modelType: t.modelType,
    special: t.special,
    hasTokenizer: t.tokenizer !== undefined,
    turnEnd: t.turnEnd,
    encodeText: (text) => tok().encode(text, false),
    decode: (ids, o = {}) => tok().decode(ids, o.skipSpecial ?? true),
    renderChat: (messages: ChatMessage[], o = {}) => t.render(messages, o),
    encode,
  };
}

/** A text-only architecture's processor: the prompt through the tokenizer, no images. */
export function plainTextProcessor(t: TextParts): Processor {
  return textProcessor(t, async (prompt, images = []) => {
    if (images.length) throw new VlakitError('E_USAGE', `a ${t.modelType} model takes no images`);
    return { ids: encodePrompt(t, prompt), pixels: new Float32Array(0), tiles: 0, grids: [], imagePositions: [] };
  });
}
