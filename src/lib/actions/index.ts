/** Actions: chunking, actions as text (four codecs), statistics, tokenizers, and training examples. */
import { VlakitError } from '../errors.js';
import { readTextFile } from '../io/json-file.js';
import { type ActionCodec, BinsCodec, TextCodec, TokensCodec, WordsCodec } from './codecs.js';
import type { ActionStats } from './stats.js';
import { GEMMA3_DIGIT_TOKENS, lastTokens, loadVocab, verifySingleTokens } from './tokenizers.js';

export { mergeActions, fixedChunks } from './chunk.js';
export type { MergedAction, FixedChunk, MergeOptions } from './chunk.js';
export { TextCodec, WordsCodec, TokensCodec, BinsCodec, roundTripError, stateText, codecStateText } from './codecs.js';
export type { ActionCodec } from './codecs.js';
export { StatsAccumulator, quantile, readActionStats, ActionStatsSchema } from './stats.js';
export type { ActionStats, DimStats } from './stats.js';
export { GEMMA3_DIGIT_TOKENS, loadVocab, loadGemma3, loadTokenizerJson, verifySingleTokens, lastTokens } from './tokenizers.js';
export { chunkEpisode, subtasksOf, isChunkRecord, ChunkRecordSchema } from './records.js';
export type { ChunkRecord, ChunkOptions } from './records.js';
export { episodeExamples, splitOf, rationaleText, targetOf, TrainingExampleSchema, SpanSchema } from './examples.js';
export { ACTIONS_MARKER, CONVENTIONS, PROMPTS, parseSubtaskList } from './prompts.js';
export type { TrainingExample, ExampleOptions, Span } from './examples.js';

/**
 * The text or words codec a checkpoint or an example set was written with (its `describe()`, or just the
 * representation name, defaults then); undefined for tokens and bins, which need their tokenizer and statistics.
 */
export function textCodecFor(kind: string, desc?: Record<string, unknown>): ActionCodec | undefined {
  if (kind === 'text') return new TextCodec((desc?.precision as number) ?? 3, ((desc?.units as string) ?? 'm') as 'm' | 'cm', desc?.state === true);
  if (kind === 'words') return new WordsCodec((desc?.precision as number) ?? 1, desc?.state === true);
  return undefined;
}

export interface CodecOptions {
  actions: 'text' | 'words' | 'tokens' | 'bins';
  precision?: number;
  units?: 'm' | 'cm';
  /** gemma3 or a tokenizer.json path (tokens, bins). */
  tokenizer?: string;
  /** A file with 10 tokens, one per line, for digits 0-9 (tokens with another tokenizer). */
  tokenList?: string;
  bins?: number;
  stats?: ActionStats;
  /** Prompts carry the robot state (text and words only). */
  state?: boolean;
}

/** The 10 digit tokens of a --token-list file, one per line. */
function readTokenList(file: string): string[] {
  return readTextFile(file, 'token list').split('\n').map((l) => l.trim()).filter(Boolean);
}

/** Builds the codec a relabel run asks for, checking tokens against the real tokenizer. */
export async function makeCodec(o: CodecOptions): Promise<ActionCodec> {
  switch (o.actions) {
    case 'text':
      return new TextCodec(o.precision ?? 3, o.units ?? 'm', o.state ?? false);
    case 'words':
      return new WordsCodec(o.precision ?? 1, o.state ?? false);
    case 'tokens': {
      const spec = o.tokenizer ?? 'gemma3';
      const tokens = o.tokenList ? readTokenList(o.tokenList) : spec === 'gemma3' ? GEMMA3_DIGIT_TOKENS : undefined;
      if (!tokens) throw new VlakitError('E_USAGE', '--actions tokens with a tokenizer.json needs --token-list FILE (10 tokens, one per line, for digits 0-9)');
      verifySingleTokens(await loadVocab(spec), tokens);
      return new TokensCodec(tokens, o.precision ?? 3, o.units ?? 'm', spec);
    }
    case 'bins': {
      if (!o.stats) throw new VlakitError('E_USAGE', '--actions bins needs --stats FILE (per-dimension q01/q99, from `vlakit relabel --stats-out`)');
      const vocab = await loadVocab(o.tokenizer ?? 'gemma3');
      const n = o.bins ?? 256;
      return new BinsCodec(o.stats.dims.map((d) => ({ low: d.q01, high: d.q99 })), lastTokens(vocab, n), o.tokenizer ?? 'gemma3');
    }
  }
}
