/**
 * `vlakit attn-viz`: where a policy looks when it writes chosen tokens. Each example runs through the model
 * (teacher-forced on its own target, or free-running with `generate`); the attention rows of the chosen tokens are
 * fused over layers and heads (top-k, max or mean), cut into per-camera patch grids and drawn over the camera
 * images; with several models (`--compare`) side by side, with the share of attention mass on the objects the
 * instruction names when the example carries the world's pixel masks.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { ACTIONS_MARKER } from '../actions/prompts.js';
import type { TrainingExample } from '../actions/examples.js';
import { decodeMask, type ObjectMasks } from '../env/tabletop.js';
import { type VlaRunner, generateFrom } from '../infer/index.js';
import { VlakitError } from '../errors.js';
import { type OutputOptions, writeOutputDir } from '../io/outputs.js';
import { promptText, targetText } from '../train/data.js';
import { type Fusion, chooseTokens, fuseTopK, imageMaps, maskMass, meanMap, normalizeMap, queryRows } from './attention.js';
import { heatmapPanel, panelGrid } from './heatmap.js';

export { cameraGrids, chooseTokens, imageMaps, fuseTopK, maskMass, meanMap, normalizeMap, queryRows, type Fusion } from './attention.js';
export { colormap, heatmapPanel, panelGrid, upsample } from './heatmap.js';

export interface AttnVizOptions {
  models: { name: string; runner: VlaRunner }[];
  examples: TrainingExample[];
  /** action, reasoning, all, A:B or /regex/. */
  tokens: string;
  topK: number;
  fusion: Fusion;
  /** example: one picture per example (the chosen tokens' maps averaged); tokens: one panel per token. */
  layout: 'example' | 'tokens';
  /** layout tokens: at most this many tokens per example. */
  maxTokens?: number;
  outDir: string;
  alpha?: number;
  /** Free-running: the model writes its own answer and its tokens are chosen (action = after "<Actions>:"). */
  generate?: boolean;
  /** Free-running: the longest answer (default 256). */
  maxNewTokens?: number;
  /** Also write the raw maps (maps.jsonl). */
  json?: boolean;
  signal?: AbortSignal;
  onExample?: () => void;
  /** How `outDir` is written: --overwrite and the inputs it may not replace (the examples file, the models). */
  output?: OutputOptions;
}

export interface TokenMap {
  /** Index among the target (or generated) tokens, and its text. */
  index: number;
  text: string;
  /** Per camera (image), the fused [grid x grid] map (not normalized; a split image: its global tile). */
  cameras: number[][];
}

export interface ExampleResult {
  id: string;
  file: string;
  instruction: string;
  /** Per model: the chosen tokens and their maps. */
  models: { name: string; tokens: TokenMap[]; objectMass?: number; objects?: string[] }[];
}

/** A white panel the size of `like`, to pad a row. */
async function blankLike(like: Buffer): Promise<Buffer> {
  const m = await sharp(like).metadata();
  return sharp({ create: { width: m.width ?? 1, height: m.height ?? 1, channels: 3, background: '#ffffff' } }).png().toBuffer();
}

/** The instruction (or subtask) of a prompt: its first line without the "Instruction:" / "Task:" / "Subtask:" label. */
export function instructionOf(prompt: string): string {
  return prompt.split('\n')[0].replace(/^(Instruction|Task|Subtask|Question):\s*/, '');
}

/** The union mask of the objects the instruction names, when the example carries the world's masks. */
function namedMask(ex: TrainingExample, instruction: string): { mask: Uint8Array; width: number; height: number; objects: string[] } | undefined {
  const o = ex.oracle as { masks?: ObjectMasks; objects?: { id: string; name: string }[] } | undefined;
  if (!o?.masks || !o.objects) return undefined;
  const text = instruction.toLowerCase();
  const runs = new Map(o.masks.objects.map((m) => [m.id, m.runs]));
  const named = o.objects.filter((x) => text.includes(x.name.toLowerCase()) && runs.has(x.id));
  if (!named.length) return undefined;
  const { width, height } = o.masks;
  const mask = new Uint8Array(width * height);
  for (const x of named) {
    const m = decodeMask(runs.get(x.id)!, width, height);
    for (let i = 0; i < m.length; i++) mask[i] |= m[i];
  }
  return { mask, width, height, objects: named.map((x) => x.name) };
}

/** The chosen tokens' maps of one example through one model, and the grid side of each camera's map. */
async function mapsOf(runner: VlaRunner, ex: TrainingExample, o: AttnVizOptions): Promise<{ tokens: TokenMap[]; grids: number[] }> {
  const prompt = promptText(ex);
  const input = await runner.prepare(prompt, ex.images, `example ${ex.id}: image`);
  const layout = input.images;
  const grids = layout.map((l) => l.grid);
  const maps = (rows: Float32Array[]) => imageMaps(fuseTopK(rows, o.topK, o.fusion), layout).map((m) => Array.from(m));
  if (o.generate) {
    const g = await generateFrom(runner, input, { maxNewTokens: o.maxNewTokens ?? 256, attentions: true });
    const texts = g.ids.map((id) => runner.decode([id]));
    const full = texts.join('');
    const at = full.lastIndexOf(ACTIONS_MARKER);
    // without the marker: an answer to a prompt that asks for reasoning first is reasoning (cut before its actions)
    const noMarker = /Reason step by step/.test(prompt) ? 'reasoning' : 'action';
    let pos = 0;
    const kinds = texts.map((t) => {
      const k = at >= 0 ? (pos >= at + ACTIONS_MARKER.length ? 'action' : 'reasoning') : noMarker;
      pos += t.length;
      return k as 'action' | 'reasoning';
    });
    const chosen = chooseTokens(o.tokens, kinds, texts);
    return { grids, tokens: chosen.map((i) => ({ index: i, text: texts[i], cameras: maps(g.attentions![i].flatMap((layer) => layer.map((head) => Float32Array.from(head)))) })) };
  }
  // teacher forcing: the prompt, then the target as the model was trained on it (each span tokenized on its own,
  // the gaps between spans as reasoning, the answer's end as the last span's kind)
  const target = targetText(ex);
  const ids = [...input.ids];
  const kinds: ('action' | 'reasoning' | 'other')[] = [];
  const texts: string[] = [];
  const push = (tokens: number[], kind: 'action' | 'reasoning', end = false) => {
    for (const id of tokens) {
      ids.push(id);
      kinds.push(kind);
      texts.push(end && runner.stopIds.includes(id) ? '<eos>' : runner.decode([id]));
    }
  };
  let at = 0;
  let lastKind: 'action' | 'reasoning' = 'reasoning';
  for (const s of ex.spans) {
    const gap = target.slice(at, s.start);
    if (gap) push(runner.encodeText(gap), 'reasoning');
    push(runner.encodeText(target.slice(s.start, s.end)), s.kind);
    lastKind = s.kind;
    at = s.end;
  }
  push(runner.answerEnd, lastKind, true);
  const room = runner.maxPositions - input.textOffset;
  if (input.ids.length > room) throw new VlakitError('E_USAGE', `example ${ex.id}: the prompt alone fills the model's ${runner.maxPositions} positions; no target token is left to map`);
  const t0 = input.ids.length; // the first target token
  const n = Math.min(ids.length, room) - t0;
  const chosen = chooseTokens(o.tokens, kinds.slice(0, n), texts.slice(0, n));
  if (!chosen.length) return { grids, tokens: [] };
  const att = await runner.attentions(input.pixels, ids.slice(0, t0 + n));
  // the query that predicts target token j is the position before it
  return { grids, tokens: chosen.map((j) => ({ index: j, text: texts[j], cameras: maps(queryRows(att.layers, att.heads, att.positions, input.textOffset + t0 + j - 1)) })) };
}

/**
 * Draws the maps of every example into `outDir` (written whole: a temporary directory swapped in once complete; an
 * existing non-empty `outDir` needs `output.overwrite`, and one that holds an input is refused).
 * @example await attnViz({ models: [{ name: 'sft', runner }], examples, tokens: 'action', topK: 5, fusion: 'max', layout: 'example', outDir: 'viz' })
 */
export async function attnViz(o: AttnVizOptions): Promise<ExampleResult[]> {
  const results: ExampleResult[] = [];
  await writeOutputDir(o.outDir, async (tmp) => {
    const lines: string[] = [];
    for (const [n, ex] of o.examples.entries()) {
      o.signal?.throwIfAborted();
      const instruction = instructionOf(promptText(ex));
      const res: ExampleResult = { id: ex.id, file: '', instruction, models: [] };
      const panels: Buffer[] = [];
      const perModel: Buffer[][] = [];
      const named = namedMask(ex, instruction); // the same objects for every model
      for (const { name, runner } of o.models) {
        const mine: Buffer[] = [];
        perModel.push(mine);
        const { tokens, grids } = await mapsOf(runner, ex, o);
        const entry: ExampleResult['models'][number] = { name, tokens };
        const cams = Math.min(grids.length, ex.images.length);
        // per camera, the chosen tokens' maps averaged: the example's picture and its attention-mass score
        const means = tokens.length ? Array.from({ length: cams }, (_, c) => meanMap(tokens.map((t) => Float32Array.from(t.cameras[c])))) : [];
        if (means.length && named) {
          entry.objectMass = maskMass(means[0], grids[0], named.mask, named.width, named.height);
          entry.objects = named.objects;
        }
        res.models.push(entry);
        const show = o.layout === 'tokens' ? tokens.slice(0, o.maxTokens ?? 12).map((t) => ({ label: JSON.stringify(t.text), maps: t.cameras })) : means.length ? [{ label: `${tokens.length} ${o.tokens} tokens: ${JSON.stringify(tokens.map((t) => t.text).join(''))}`, maps: means.map((m) => Array.from(m)) }] : [];
        for (const s of show) {
          for (let c = 0; c < cams; c++) {
            const caption = [`${name}${cams > 1 ? ` (camera ${c})` : ''}: ${instruction}`, s.label, ...(c === 0 && entry.objectMass !== undefined ? [`attention on ${entry.objects!.join(', ')}: ${(entry.objectMass * 100).toFixed(1)}%`] : [])];
            mine.push(await heatmapPanel(ex.images[c], normalizeMap(Float32Array.from(s.maps[c])), grids[c], { alpha: o.alpha, caption }));
          }
        }
        if (!tokens.length) for (let c = 0; c < cams; c++) mine.push(await heatmapPanel(ex.images[c], new Float32Array(grids[c] * grids[c]), grids[c], { alpha: 0, caption: [`${name}: ${instruction}`, `no ${o.tokens} tokens in this example`] }));
      }
      // one row (or block of rows) per model, so that the models' panels line up
      const columns = o.layout === 'tokens' ? Math.max(...perModel.map((m) => Math.min(m.length, 4 * Math.max(1, ex.images.length)))) : o.models.length * Math.max(...perModel.map((m) => m.length));
      if (o.layout === 'tokens') {
        const blank = await blankLike(perModel.flat()[0]);
        for (const m of perModel) {
          panels.push(...m);
          while (panels.length % columns) panels.push(blank);
        }
      } else panels.push(...perModel.flat());
      const file = `${String(n).padStart(4, '0')}-${ex.id.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 80)}.png`;
      const png = await panelGrid(panels, columns, o.models.length > 1 ? `${o.models.map((m) => m.name).join(' vs ')}: top-${o.topK} ${o.fusion} fusion` : undefined);
      await fsp.writeFile(path.join(tmp, file), png);
      res.file = file;
      results.push(res);
      if (o.json) lines.push(JSON.stringify(res));
      o.onExample?.();
    }
    if (o.json) await fsp.writeFile(path.join(tmp, 'maps.jsonl'), lines.length ? `${lines.join('\n')}\n` : '');
    await fsp.writeFile(path.join(tmp, 'summary.json'), `${JSON.stringify(results.map((r) => ({ id: r.id, file: r.file, instruction: r.instruction, models: r.models.map((m) => ({ name: m.name, tokens: m.tokens.length, objectMass: m.objectMass, objects: m.objects })) })), null, 2)}\n`);
  }, { signal: o.signal, ...o.output });
  return results;
}
