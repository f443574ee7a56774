/**
 * VQA metrics:
 * - VQA accuracy as the official VQA evaluation computes it: answers normalized (punctuation, number words,
 *   articles, contractions), then for each of the leave-one-out subsets of the human answers min(1, matches / 3),
 *   averaged (with 10 answers, an answer given by 4 or more humans scores 1, by 3 humans 0.9);
 * - exact match (after the same normalization);
 * - ANLS (average normalized Levenshtein similarity, threshold 0.5) for document-style answers;
 * - multiple choice: the option letter read from free text, and circular accuracy (right under every rotation of
 *   the options).
 */

import { LETTERS } from '../actions/prompts.js';

export { LETTERS };

/** Words that are also contractions without their apostrophe ("well" / "we'll"): never rewritten. */
const WORDS = new Set(['well', 'were', 'shed', 'id', 'lets', 'wed', 'im', 'its', 'ill', 'hell', 'shell']);

const CONTRACTIONS: Record<string, string> = Object.fromEntries(
  [
    "ain't", "aren't", "can't", "could've", "couldn't", "couldn't've", "didn't", "doesn't", "don't", "hadn't", "hadn't've", "hasn't",
    "haven't", "he'd", "he'd've", "he's", "how'd", "how'll", "how's", "i'd", "i'd've", "i'm", "i've", "isn't", "it'd", "it'd've",
    "it'll", "let's", "ma'am", "mightn't", "mightn't've", "might've", "mustn't", "must've", "needn't", "not've", "o'clock",
    "oughtn't", "'ow's'at", "shan't", "she'd", "she'd've", "she's", "should've", "shouldn't", "shouldn't've", "somebody'd",
    "somebody'd've", "somebody'll", "somebody's", "someone'd", "someone'd've", "someone'll", "someone's", "something'd",
    "something'd've", "something'll", "that's", "there'd", "there'd've", "there're", "there's", "they'd", "they'd've", "they'll",
    "they're", "they've", "'twas", "wasn't", "we'd", "we'd've", "we'll", "we're", "we've", "weren't", "what'll", "what're",
    "what's", "what've", "when's", "where'd", "where's", "where've", "who'd", "who'd've", "who'll", "who's", "who've", "why'll",
    "why're", "why's", "won't", "would've", "wouldn't", "wouldn't've", "y'all", "y'all'll", "y'all'd've", "you'd", "you'd've",
    "you'll", "you're", "you've",
  ].flatMap((c) => {
    // the forms written without apostrophes, and with only some of them, map to the full contraction
    const bare = c.replace(/'/g, '');
    const parts = c.split("'");
    const partial = parts.length > 2 ? [parts.slice(0, -1).join("'") + parts.at(-1), parts[0] + parts.slice(1).join("'")] : [];
    // bare forms that are words in their own right stay as they are
    return [bare, ...partial].filter((k) => k !== c && !WORDS.has(k)).map((k) => [k, c] as const);
  }),
);

const NUMBER_WORDS: Record<string, string> = { none: '0', zero: '0', one: '1', two: '2', three: '3', four: '4', five: '5', six: '6', seven: '7', eight: '8', nine: '9', ten: '10' };
const ARTICLES = new Set(['a', 'an', 'the']);
const PUNCTUATION = [';', '/', '[', ']', '"', '{', '}', '(', ')', '=', '+', '\\', '_', '-', '>', '<', '@', '`', ',', '?', '!'];

/**
 * Punctuation as the official evaluation treats it: a mark next to a space (or any text with a comma between
 * digits) is deleted, otherwise replaced by a space; periods go unless they precede a digit.
 */
export function processPunctuation(text: string): string {
  let out = text;
  const digitComma = /\d,\d/.test(text);
  for (const p of PUNCTUATION) {
    if (text.includes(`${p} `) || text.includes(` ${p}`) || digitComma) out = out.split(p).join('');
    else out = out.split(p).join(' ');
  }
  return out.replace(/\.(?!\d)/g, '');
}

/** Lower case; number words to digits; articles dropped; contractions restored. */
export function processDigitArticle(text: string): string {
  const words: string[] = [];
  for (const w0 of text.toLowerCase().split(/\s+/)) {
    if (!w0) continue;
    const w = NUMBER_WORDS[w0] ?? w0;
    if (ARTICLES.has(w)) continue;
    words.push(CONTRACTIONS[w] ?? w);
  }
  return words.join(' ');
}

/**
 * The normalized form of an answer.
 * @example normalizeAnswer('Two dogs.') // '2 dogs'
 */
export function normalizeAnswer(a: string): string {
  return processDigitArticle(processPunctuation(a.replace(/[\n\t]/g, ' ').trim())).trim();
}

/**
 * VQA accuracy of a prediction against the human answers (10 in VQAv2).
 * @example vqaAccuracy('net', ['net', 'net', 'net', 'netting', 'net', 'net', 'mesh', 'net', 'pitcher', 'orange']) // 1
 */
export function vqaAccuracy(prediction: string, answers: string[]): number {
  if (!answers.length) return 0;
  const p = normalizeAnswer(prediction);
  const gts = answers.map(normalizeAnswer);
  let total = 0;
  for (let i = 0; i < gts.length; i++) {
    let matches = 0;
    for (let j = 0; j < gts.length; j++) if (j !== i && gts[j] === p) matches += 1;
    total += Math.min(1, matches / 3);
  }
  return total / gts.length;
}

export function exactMatch(prediction: string, answers: string[]): number {
  const p = normalizeAnswer(prediction);
  return answers.some((a) => normalizeAnswer(a) === p) ? 1 : 0;
}

/** Levenshtein distance (two rows). */
export function levenshtein(a: string, b: string): number {
  if (a === b) return 0;
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur.push(Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1)));
    prev = cur;
  }
  return prev[b.length];
}

/**
 * ANLS: the best over the answers of 1 - normalized edit distance, 0 when that distance reaches the threshold;
 * compared lower-cased with spaces collapsed.
 * @example anls('Hello Wrld', ['hello world']) // 1 - 1/11
 */
export function anls(prediction: string, answers: string[], threshold = 0.5): number {
  const clean = (s: string) => s.toLowerCase().trim().replace(/\s+/g, ' ');
  const p = clean(prediction);
  let best = 0;
  for (const a of answers) {
    const g = clean(a);
    const n = Math.max(p.length, g.length);
    const nl = n === 0 ? 0 : levenshtein(p, g) / n;
    best = Math.max(best, nl < threshold ? 1 - nl : 0);
  }
  return best;
}


/**
 * The option a free-text answer picks, as a letter, or undefined: a leading letter ("B", "(B)", "B. red",
 * "B)"), a stated one ("the answer is B", "option B"), or the text of exactly one option.
 */
export function extractChoice(text: string, choices: string[]): string | undefined {
  const letters = LETTERS.slice(0, choices.length);
  const t = text.trim();
  // a letter alone, or followed by ")", ".", ":" or ","; not "A dog" (the article)
  const lead = new RegExp(`^\\(?([${letters}])(?:[).:,]|\\s*$)`).exec(t);
  if (lead) return lead[1];
  const stated = new RegExp(`\\b(?:[Aa]nswer|[Oo]ption|[Cc]hoice)\\s*(?:is|:)?\\s*\\(?([${letters}])\\b`).exec(t);
  if (stated) return stated[1];
  const norm = normalizeAnswer(t);
  const opts = choices.map(normalizeAnswer);
  const exact = opts.findIndex((o) => o === norm);
  if (exact >= 0) return letters[exact];
  const contained = opts.flatMap((o, i) => (o && ` ${norm} `.includes(` ${o} `) ? [i] : []));
  return contained.length === 1 ? letters[contained[0]] : undefined;
}

/** The choices rotated by r (option i moves to position (i - r) mod k) and where the answer goes. */
export function rotateChoices(choices: string[], answer: string, r: number): { choices: string[]; answer: string } {
  const k = choices.length;
  const rotated = choices.map((_, i) => choices[(i + r) % k]);
  const from = LETTERS.indexOf(answer);
  return { choices: rotated, answer: LETTERS[(from - r + k) % k] };
}

/** The position metric's tolerance, in the answer's units (centimeters for scene questions): about a small item's half-width. */
export const POSITION_TOLERANCE = 2;

/**
 * A position answer ("[x, y]" or "[x, y, z]") against the reference: the Euclidean distance over the reference's
 * coordinates (the first numbers of the prediction), and whether it is within POSITION_TOLERANCE. A prediction with
 * fewer numbers scores 0 with no distance.
 * @example positionError('[45.1, 12.9]', '[46.0, 13.0]') // { error: 0.905..., score: 1 }
 */
export function positionError(prediction: string, reference: string): { error?: number; score: number } {
  const ref = (reference.match(/-?\d+(?:\.\d+)?/g) ?? []).map(Number);
  const got = (prediction.match(/-?\d+(?:\.\d+)?/g) ?? []).map(Number);
  if (!ref.length || got.length < ref.length) return { score: 0 };
  const error = Math.hypot(...ref.map((r, i) => got[i] - r));
  return { error, score: error <= POSITION_TOLERANCE ? 1 : 0 };
}
