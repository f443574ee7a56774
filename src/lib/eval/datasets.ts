/**
 * VQA datasets as one item type:
 * - the VQAv2 layout: a directory with `*questions*.json` and `*annotations*.json` (10 human answers per question)
 *   and the COCO images (`images/` or the directory itself, named COCO_<subtype>_<12-digit id>.jpg);
 * - generic JSON Lines: `{"image": path | {mime, b64} | [..], "question", "answers": [...] | "answer", "choices"?,
 *   "metric"?, "type"?, "id"?}` (image paths relative to the file);
 * - MMBench-style TSV: `index, question, hint?, A, B, C, D..., answer, category?, image` (base64; a bare number
 *   refers to another row's image), read with csv-parse; with `circular`, every question is asked once per
 *   rotation of its options.
 * Images load lazily, when a model asks for them.
 */
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'csv-parse/sync';
import { z } from 'zod';
import { VlakitError } from '../errors.js';
import { readFileBytes, readJsonFile, readTextFile } from '../io/json-file.js';
import { sniffImageMime } from '../io/images.js';
import { type ImageJson, isImageJson } from '../io/json.js';
import { JsonlDecoder } from '../io/jsonl.js';
import { expected, FiniteNumberSchema, validateRecord } from '../io/records.js';
import { LETTERS, rotateChoices } from './metrics.js';

export type Metric = 'vqa' | 'exact' | 'anls' | 'mc' | 'position';

export type ImageSource = ImageJson | { path: string };

export interface VqaItem {
  id: string;
  benchmark: string;
  images: ImageSource[];
  question: string;
  /** Human answers (10 in VQAv2), or the one reference answer; for multiple choice the option's text. */
  answers: string[];
  choices?: string[];
  /** Multiple choice: the right letter. */
  answer?: string;
  metric: Metric;
  /** Answer or question type, for a breakdown. */
  type?: string;
  hint?: string;
  /** Circular evaluation: the question every rotation belongs to. */
  circular?: { group: string; rotation: number };
}

function mimeOf(bytes: Buffer): string {
  return sniffImageMime(bytes) ?? (bytes.subarray(0, 4).toString('latin1') === 'RIFF' ? 'image/webp' : 'application/octet-stream');
}

/** The image as {mime, b64}, reading files when needed. */
export function loadImage(src: ImageSource): ImageJson {
  if (isImageJson(src)) return src;
  const file = (src as { path: string }).path;
  if (!existsSync(file)) throw new VlakitError('E_NOT_FOUND', 'image file not found', { file });
  const bytes = readFileSync(file);
  return { mime: mimeOf(bytes), b64: bytes.toString('base64') };
}

const id = z.number().int().nonnegative();

/** VQAv2's questions file: the fields read. */
const Vqav2QuestionsSchema = z.looseObject({
  questions: z.array(z.looseObject({ image_id: id, question: z.string(), question_id: id })),
  data_subtype: z.string().optional(),
});

/** VQAv2's annotations file: the human answers of each question. */
const Vqav2AnnotationsSchema = z.looseObject({
  annotations: z.array(
    z.looseObject({
      question_id: id,
      answers: z.array(z.looseObject({ answer: z.string() })).min(1, 'expected at least one human answer'),
      answer_type: z.string().optional(),
      question_type: z.string().optional(),
    }),
  ),
});

/** VQAv2: questions + annotations + COCO images. */
export function readVqav2(dir: string, name = path.basename(dir)): VqaItem[] {
  const files = readdirSync(dir);
  const qFile = files.find((f) => /questions.*\.json$/i.test(f));
  const aFile = files.find((f) => /annotations.*\.json$/i.test(f));
  if (!qFile) throw new VlakitError('E_NOT_FOUND', 'no *questions*.json in the VQAv2 directory', { file: dir });
  const q = readJsonFile(path.join(dir, qFile), Vqav2QuestionsSchema, { what: 'VQAv2 questions' });
  const answers = new Map<number, z.infer<typeof Vqav2AnnotationsSchema>['annotations'][number]>();
  if (aFile) {
    const a = readJsonFile(path.join(dir, aFile), Vqav2AnnotationsSchema, { what: 'VQAv2 annotations' });
    for (const x of a.annotations) answers.set(x.question_id, x);
  }
  const imageDir = existsSync(path.join(dir, 'images')) ? path.join(dir, 'images') : dir;
  const byId = new Map<number, string>();
  for (const f of readdirSync(imageDir)) {
    const m = /(\d+)\.(jpe?g|png)$/i.exec(f);
    if (m) byId.set(Number(m[1]), path.join(imageDir, f));
  }
  return q.questions.map((x, i) => {
    const ann = answers.get(x.question_id);
    if (!ann) throw new VlakitError('E_RECORD_INVALID', `question ${x.question_id} has no annotation (human answers)`, { file: path.join(dir, aFile ?? 'annotations.json'), record: i });
    const img = byId.get(x.image_id);
    if (!img) throw new VlakitError('E_NOT_FOUND', `no image for image_id ${x.image_id} (question ${x.question_id}); expected e.g. COCO_${q.data_subtype ?? 'val2014'}_${String(x.image_id).padStart(12, '0')}.jpg`, { file: imageDir });
    return { id: String(x.question_id), benchmark: name, images: [{ path: img }], question: x.question, answers: ann.answers.map((a) => a.answer), metric: 'vqa' as const, type: ann.answer_type };
  });
}

const ImageRefSchema = z.union([z.string().min(1), z.looseObject({ mime: z.string(), b64: z.string() })], { error: expected('an image path or {"mime", "b64"}') });
const scalar = z.union([z.string(), FiniteNumberSchema, z.boolean()], { error: expected('a string') });

/** A row of the generic JSON Lines layout. */
export const VqaRowSchema = z
  .looseObject({
    id: z.union([z.string(), z.number()]).optional(),
    question: z.string(),
    image: z.union([ImageRefSchema, z.array(ImageRefSchema)], { error: expected('an image path, {"mime", "b64"}, or a list of them') }).optional(),
    images: z.array(ImageRefSchema).optional(),
    answers: z.array(scalar).optional(),
    answer: scalar.optional(),
    choices: z.array(scalar).min(2, 'expected at least two choices').optional(),
    metric: z.enum(['vqa', 'exact', 'anls', 'mc', 'position']).optional(),
    type: z.string().optional(),
  })
  .superRefine((r, ctx) => {
    const imgs = Array.isArray(r.image) ? r.image : (r.images ?? (r.image === undefined ? [] : [r.image]));
    if (!imgs.length) ctx.addIssue({ code: 'custom', path: ['image'], message: 'expected "image" (a path, {mime, b64}, or a list of them)' });
    if (!r.answers?.length && r.answer === undefined && !r.choices) ctx.addIssue({ code: 'custom', path: ['answers'], message: 'expected "answers" (a list) or "answer"' });
  });

/** Generic JSON Lines. */
export function readVqaJsonl(file: string, name = path.basename(file).replace(/\.jsonl$/, '')): VqaItem[] {
  const base = path.dirname(file);
  const out: VqaItem[] = [];
  const dec = new JsonlDecoder({ source: file });
  const lines = [...dec.push(readFileBytes(file, 'VQA dataset')), ...dec.end()];
  for (const { value, line } of lines) {
    const i = line - 1;
    const bad = (m: string, field?: string) => new VlakitError('E_RECORD_INVALID', m, { file, line, field });
    const r = validateRecord(VqaRowSchema, value, 'VQA row', { file, line });
    const imgs = Array.isArray(r.image) ? r.image : (r.images ?? (r.image === undefined ? [] : [r.image]));
    const images: ImageSource[] = imgs.map((im) => (typeof im === 'string' ? { path: path.resolve(base, im) } : { mime: im.mime, b64: im.b64 }));
    const answers = r.answers?.length ? r.answers.map(String) : r.answer !== undefined ? [String(r.answer)] : [];
    const choices = r.choices?.map(String);
    let answer: string | undefined;
    if (choices) {
      const a = String(r.answer ?? answers[0] ?? '');
      answer = /^[A-J]$/.test(a) ? a : LETTERS[choices.findIndex((c) => c === a)];
      if (!answer || LETTERS.indexOf(answer) >= choices.length) throw bad(`the answer "${a}" is neither an option letter nor one of the choices`, 'answer');
    }
    const metric: Metric = r.metric ?? (choices ? 'mc' : answers.length >= 3 ? 'vqa' : 'exact');
    out.push({ id: String(r.id ?? i), benchmark: name, images, question: r.question, answers: choices && answer ? [choices[LETTERS.indexOf(answer)]] : answers, choices, answer, metric, type: r.type });
  }
  return out;
}

/** MMBench-style TSV with base64 images; `circular` asks each question once per rotation of its options. */
export function readMmbenchTsv(file: string, o: { circular?: boolean; name?: string } = {}): VqaItem[] {
  const text = readTextFile(file, 'VQA dataset');
  let parsed: { record: Record<string, string>; info: { lines: number } }[];
  try {
    parsed = parse(text, { delimiter: '\t', columns: true, relax_quotes: true, skip_empty_lines: true, quote: false, info: true });
  } catch (err) {
    throw new VlakitError('E_RECORD_INVALID', `cannot read the TSV: ${(err as Error).message}`, { file }, { cause: err });
  }
  const rows = parsed.map((p) => p.record);
  const name = o.name ?? path.basename(file).replace(/\.tsv$/, '');
  const byIndex = new Map(rows.map((r) => [r.index, r]));
  // files that already hold the circular copies (index + k * 1e6 for rotation k, as VLMEvalKit writes them)
  const expanded = rows.some((r) => Number(r.index) >= 1e6);
  const out: VqaItem[] = [];
  rows.forEach((r, i) => {
    const copy = expanded ? Math.floor(Number(r.index) / 1e6) : 0;
    if (expanded && copy > 0 && !o.circular) return; // plain evaluation: the original questions only
    const bad = (m: string, field: string) => new VlakitError('E_RECORD_INVALID', m, { file, line: parsed[i].info.lines, field });
    if (!r.question) throw bad('expected a "question" column', 'question');
    const choices: string[] = [];
    for (const l of LETTERS) {
      const v = r[l];
      if (v === undefined || v === '' || v === 'nan') break;
      choices.push(v);
    }
    if (choices.length < 2) throw bad('expected options in columns A, B, ...', choices.length ? 'B' : 'A');
    if (!r.answer || LETTERS.indexOf(r.answer) < 0 || LETTERS.indexOf(r.answer) >= choices.length) throw bad(`the answer "${r.answer ?? ''}" is not one of the option letters ${LETTERS.slice(0, choices.length)}`, 'answer');
    let b64 = r.image ?? '';
    if (/^\d{1,8}$/.test(b64)) b64 = byIndex.get(b64)?.image ?? ''; // a reference to another row's image
    if (/^\d{1,8}$/.test(b64)) b64 = byIndex.get(b64)?.image ?? ''; // (a copy may point at a row that points on)
    if (!b64) throw bad('no image (expected base64 in the "image" column)', 'image');
    const image = { mime: mimeOf(Buffer.from(b64.slice(0, 24), 'base64')), b64 }; // the type from the first 18 bytes
    const hint = r.hint && r.hint !== 'nan' ? r.hint : undefined;
    const id = r.index ?? String(i);
    if (expanded) {
      // the copies are already rotated: group them by the original question
      const group = String(Number(id) % 1e6);
      out.push({ id, benchmark: name, images: [image], question: r.question, hint, choices, answer: r.answer, answers: [choices[LETTERS.indexOf(r.answer)]], metric: 'mc', type: r.category, circular: o.circular ? { group, rotation: copy } : undefined });
      return;
    }
    const rotations = o.circular ? choices.length : 1;
    for (let k = 0; k < rotations; k++) {
      const rot = rotateChoices(choices, r.answer, k);
      out.push({ id: o.circular ? `${id}#${k}` : id, benchmark: name, images: [image], question: r.question, hint, choices: rot.choices, answer: rot.answer, answers: [rot.choices[LETTERS.indexOf(rot.answer)]], metric: 'mc', type: r.category, circular: o.circular ? { group: id, rotation: k } : undefined });
    }
  });
  return out;
}

/** A dataset by its path: a VQAv2 directory, a .jsonl file or a .tsv file. */
export function readVqaDataset(spec: string, o: { circular?: boolean } = {}): VqaItem[] {
  if (!existsSync(spec)) throw new VlakitError('E_NOT_FOUND', 'dataset not found (expected a VQAv2 directory, a .jsonl or a .tsv file)', { file: spec });
  if (statSync(spec).isDirectory()) return readVqav2(spec);
  if (/\.tsv$/i.test(spec)) return readMmbenchTsv(spec, o);
  if (/\.jsonl?$/i.test(spec)) return readVqaJsonl(spec);
  throw new VlakitError('E_FORMAT_UNKNOWN', 'unknown VQA dataset format; expected a VQAv2 directory, .jsonl or .tsv', { file: spec });
}
