/** Actions: chunking, actions as text (four codecs), statistics, tokenizers, and training examples. */
import { VlakitError } from '../errors.js';
import { readTextFile } from '../io/json-file.js';
import { type ActionCodec, ActionCodecSpecSchema, BinsCodec, codecFromSpec, TextCodec, TokensCodec, WordsCodec } from './codecs.js';
import type { ActionLayout } from './layout.js';
import type { ActionStats } from './stats.js';
import { GEMMA3_DIGIT_TOKENS, loadVocab, unusedTokens, verifySingleTokens } from './tokenizers.js';

export { mergeActions, fixedChunks } from './chunk.js';
export type { MergedAction, FixedChunk, MergeOptions } from './chunk.js';
export { TextCodec, WordsCodec, TokensCodec, BinsCodec, roundTripError, codecFromSpec, ActionCodecSpecSchema, stateText, positionText, codecStateText } from './codecs.js';
export type { ActionCodec, ActionCodecSpec } from './codecs.js';
export { ActionLayoutSchema, NAMED_LAYOUTS, inferLayout, layoutFor, parseLayout, dimKinds, dimNames, gripperKindOf } from './layout.js';
export type { ActionLayout } from './layout.js';
export { StatsAccumulator, quantile, readActionStats, ActionStatsSchema } from './stats.js';
export type { ActionStats, DimStats } from './stats.js';
export { GEMMA3_DIGIT_TOKENS, loadVocab, loadGemma3, loadTokenizerJson, verifySingleTokens, lastTokens, unusedTokens } from './tokenizers.js';
export type { TokenVocab } from './tokenizers.js';
export { chunkEpisode, subtasksOf, isChunkRecord, ChunkRecordSchema } from './records.js';
export type { ChunkRecord, ChunkOptions } from './records.js';
export { episodeExamples, splitOf, rationaleText, targetOf, TrainingExampleSchema, SpanSchema } from './examples.js';
export { ACTIONS_MARKER, CONVENTIONS, PROMPTS, actionFormatOf, parseSubtaskList } from './prompts.js';
export type { ActionFormat } from './prompts.js';
export { waypointTargets, waypointDeltas, waypointOrigin, waypointLayout, isWaypointLayout, executedLayout, releaseLead } from './waypoints.js';
export type { TrainingExample, ExampleOptions, Span } from './examples.js';

/**
 * The codec a checkpoint or an example set was written with: rebuilt from its spec (`describe()`, any codec), or,
 * for older records that carry only the representation name, text or words with their defaults; else undefined.
 */
export function codecFor(kind: string, desc?: unknown): ActionCodec | undefined {
  if (desc !== undefined && desc !== null && ActionCodecSpecSchema.safeParse(desc).success) return codecFromSpec(desc);
  if (kind === 'text') return new TextCodec();
  if (kind === 'words') return new WordsCodec();
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
  /** The action layout (default: set by relabel from the chunk records, or inferred from the action length). */
  layout?: ActionLayout;
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
      return new TextCodec(o.precision ?? 3, o.units ?? 'm', o.layout, o.state ?? false);
    case 'words':
      return new WordsCodec(o.precision ?? 1, o.layout, o.state ?? false);
    case 'tokens': {
      // digits: the --token-list, Gemma-3's VLM2VLA-AT tokens, or the last 10 unused tokens of a tokenizer.json
      const spec = o.tokenizer ?? 'gemma3';
      const vocab = await loadVocab(spec);
      const tokens = o.tokenList ? readTokenList(o.tokenList) : spec === 'gemma3' ? GEMMA3_DIGIT_TOKENS : unusedTokens(vocab, 10);
      verifySingleTokens(vocab, tokens);
      return new TokensCodec(tokens, o.precision ?? 3, o.units ?? 'm', spec, o.layout, o.state ?? false);
    }
    case 'bins': {
      if (!o.stats) throw new VlakitError('E_USAGE', '--actions bins needs --stats FILE (per-dimension q01/q99, from `vlakit relabel --stats-out`)');
      const spec = o.tokenizer ?? 'gemma3';
      const vocab = await loadVocab(spec);
      const n = o.bins ?? 256;
      // unused added tokens only (Gemma-3's last token is <image_soft_token>); the digit tokens stay free for --actions tokens
      const tokens = unusedTokens(vocab, n, spec === 'gemma3' ? GEMMA3_DIGIT_TOKENS : []);
      return new BinsCodec(o.stats.dims.map((d) => ({ low: d.q01, high: d.q99 })), tokens, spec, o.layout, o.state ?? false);
    }
  }
}
