/**
 * The relabel job: chunk records in, training examples out (vlakit JSONL or TRL's conversational layout), with
 * optional action statistics and a round-trip report of the action representation.
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { VlakitError } from '../errors.js';
import { type ImageJson } from '../io/json.js';
import { writeJsonl } from '../io/output.js';
import { type OutputOptions, writeOutputDir } from '../io/outputs.js';
import { type ActionCodec, roundTripError } from './codecs.js';
import { episodeExamples, type ExampleOptions, type TrainingExample } from './examples.js';
import { type ActionLayout, dimNames, layoutFor } from './layout.js';
import type { ChunkRecord } from './records.js';
import { StatsAccumulator, type ActionStats } from './stats.js';
import { releaseLead, waypointLayout, waypointTargets } from './waypoints.js';

export interface RelabelOptions extends Omit<ExampleOptions, 'codec'> {
  codec?: ActionCodec;
  /** The action layout (--action-layout); default: the chunk records' `action_layout`, else inferred (4-D, 7-D). */
  layout?: ActionLayout;
  /** Where examples go: a .jsonl file, '-' (stdout), or a directory for format trl; undefined: no examples. */
  output?: string;
  format?: 'vlakit' | 'trl';
  /** Collect per-dimension statistics of the actions. */
  stats?: boolean;
  /** Collect the round-trip error of the codec. */
  report?: boolean;
  /** Waypoint targets (`--waypoints`): each step's action becomes its absolute waypoint, reached in steps of this length. */
  waypointStep?: number;
  /** With waypoints: each release (the gripper opening) labelled this many steps early (`--release-lead`, default 0). */
  releaseLead?: number;
  /** How the output is written: --overwrite, the inputs it must not replace, the AbortSignal. */
  outputOptions?: OutputOptions;
}

export interface RelabelSummary {
  episodes: number;
  chunks: number;
  examples: number;
  byStage: Record<string, number>;
  bySplit: Record<string, number>;
  stats?: ActionStats;
  roundTrip?: { max: number[]; mean: number[]; actions: number };
  /** The action layout the examples were written with, and its dimension names (for the per-dimension reports). */
  layout?: ActionLayout;
  dims?: string[];
}

/** Groups consecutive chunk records by episode. */
async function* byEpisode(chunks: AsyncIterable<ChunkRecord>): AsyncGenerator<ChunkRecord[]> {
  let cur: ChunkRecord[] = [];
  for await (const c of chunks) {
    if (cur.length && c.episode_id !== cur[0].episode_id) {
      yield cur;
      cur = [];
    }
    cur.push(c);
  }
  if (cur.length) yield cur;
}

/** TRL's conversational layout: `data.jsonl` with messages and image paths, images as files, in directory `dir`. */
class TrlWriter {
  private lines: string[] = [];
  private readonly seen = new Set<string>();

  constructor(readonly dir: string) {}

  async open(): Promise<void> {
    await fsp.mkdir(path.join(this.dir, 'images'), { recursive: true });
    await fsp.writeFile(path.join(this.dir, 'data.jsonl'), '');
  }

  async add(ex: TrainingExample): Promise<void> {
    const paths: string[] = [];
    for (const im of ex.images as ImageJson[]) {
      const ext = im.mime === 'image/jpeg' ? 'jpg' : (im.mime.split('/')[1] ?? 'bin');
      const name = `images/${createHash('sha256').update(im.b64).digest('hex').slice(0, 24)}.${ext}`;
      if (!this.seen.has(name)) {
        this.seen.add(name);
        await fsp.writeFile(path.join(this.dir, name), Buffer.from(im.b64, 'base64'));
      }
      paths.push(name);
    }
    this.lines.push(JSON.stringify({ messages: ex.messages, images: paths, spans: ex.spans, meta: ex.meta }));
    if (this.lines.length >= 1000) await this.flush();
  }

  async flush(): Promise<void> {
    if (!this.lines.length) return;
    await fsp.appendFile(path.join(this.dir, 'data.jsonl'), `${this.lines.join('\n')}\n`);
    this.lines = [];
  }
}

/** An episode's step chunks (fixed, horizon 1, in order) with their actions replaced by waypoint targets. */
function waypointChunks(ep: ChunkRecord[], layout: ActionLayout, wl: ActionLayout, lead = 0): ChunkRecord[] {
  const steps = ep.map((c) => {
    const state = (c.observation as Record<string, unknown>).state;
    const where = `episode ${String(c.episode_id)} chunk ${c.chunk_index}`;
    if (c.actions.length !== 1 || c.mode !== 'fixed') throw new VlakitError('E_USAGE', `relabel --waypoints takes one action per chunk (chunk --mode fixed --horizon 1); ${where} has ${c.actions.length}`);
    if (!Array.isArray(state) || state.length < 3 || !state.every((v) => typeof v === 'number' && Number.isFinite(v))) {
      throw new VlakitError('E_RECORD_INVALID', `relabel --waypoints: ${where} has no numeric observation.state (its first three values are the end-effector position the targets are made from)`, { field: 'observation.state' });
    }
    return { state: state as number[], action: c.actions[0] };
  });
  const order = ep.map((c) => c.start_step);
  if (order.some((t, i) => i > 0 && t !== order[i - 1] + 1)) throw new VlakitError('E_USAGE', `relabel --waypoints needs every step of an episode in order (chunk --mode fixed --horizon 1 --stride 1); episode ${String(ep[0].episode_id)} skips steps`);
  let targets = waypointTargets(steps, layout);
  if (lead > 0 && layout.gripper !== null) targets = releaseLead(targets, layout.gripper, lead);
  // a DAgger step's own expert target (where the expert was heading from the policy's state) replaces the run-based one
  const own = (c: ChunkRecord, t: number[]) => (c.expert_target ? t.map((v, k) => { const j = layout.translation.indexOf(k); return j >= 0 ? c.expert_target![j] : v; }) : t);
  const out = ep.map((c, i) => ({ ...c, actions: [own(c, targets[i])], action_layout: wl }));
  // The episode's final step when it does not move: the final observation, whose action RLDS leaves undefined and
  // vlakit's rollout records as a no-op. No run starts there, and as a label it would say "stay where you are" in
  // the subtask under way when the episode ended (the retract after a successful place, a timed-out reach).
  const last = ep.at(-1)!;
  if (!last.expert_target && layout.translation.every((k) => last.actions[0][k] === 0)) out.pop();
  return out;
}

/**
 * Turns chunk records into training examples.
 * @example await relabel(chunks, { method: 'vlm2vla', codec: new TextCodec(3), output: 'train.jsonl' })
 */
export async function relabel(chunks: AsyncIterable<ChunkRecord>, opts: RelabelOptions): Promise<RelabelSummary> {
  const summary: RelabelSummary = { episodes: 0, chunks: 0, examples: 0, byStage: {}, bySplit: {} };
  const acc = opts.stats ? new StatsAccumulator() : undefined;
  const report: number[][][] = [];
  let codec = opts.codec;
  if (opts.output !== undefined && !codec) throw new VlakitError('E_USAGE', 'writing examples needs an action representation (--actions)');
  let layout = opts.layout ?? codec?.layout;
  // one layout for the whole set: stated, else the first chunk record's (written by chunk), else inferred
  const settle = (c: ChunkRecord): void => {
    if (!layout) layout = c.action_layout ?? layoutFor(c.actions[0]?.length ?? 0);
    const dims = c.action_layout?.dims ?? c.actions[0]?.length;
    if (dims !== undefined && dims !== layout.dims) {
      throw new VlakitError('E_RECORD_INVALID', `episode ${String(c.episode_id)} chunk ${c.chunk_index}: ${dims}-D actions, but the actions so far (or --action-layout) are ${layout.dims}-D`, { field: 'actions' });
    }
    if (codec && codec.layout !== layout) codec = codec.withLayout(layout);
  };
  const examples = (async function* (): AsyncGenerator<TrainingExample> {
    for await (let ep of byEpisode(chunks)) {
      summary.episodes += 1;
      summary.chunks += ep.length;
      for (const c of ep) settle(c);
      let exCodec = codec;
      // waypoint targets replace the actions before anything reads them: the statistics (bins' ranges) and the
      // round trip are of the targets the examples hold
      if (opts.waypointStep !== undefined && layout) {
        const wl = waypointLayout(layout, opts.waypointStep);
        ep = waypointChunks(ep, layout, wl, opts.releaseLead);
        exCodec = codec?.withLayout(wl);
      }
      for (const c of ep) {
        // fixed chunks overlap: each step's own action is the first of its chunk
        if (acc) for (const a of c.mode === 'fixed' ? c.actions.slice(0, 1) : c.actions) acc.add(a);
        if (opts.report && codec) report.push(c.mode === 'fixed' && c.mask ? c.actions.filter((_, i) => c.mask![i]) : c.actions);
      }
      if (opts.output === undefined || !exCodec) continue;
      for (const ex of episodeExamples(ep, { ...opts, codec: exCodec })) {
        summary.examples += 1;
        summary.byStage[ex.meta.stage] = (summary.byStage[ex.meta.stage] ?? 0) + 1;
        summary.bySplit[ex.meta.split] = (summary.bySplit[ex.meta.split] ?? 0) + 1;
        yield ex;
      }
    }
  })();
  if (opts.output === undefined) {
    for await (const _ of examples) {
      // statistics only
    }
  } else if (opts.format === 'trl') {
    // whole or nothing: a temporary directory swapped in once complete
    await writeOutputDir(
      opts.output,
      async (tmp) => {
        const w = new TrlWriter(tmp);
        await w.open();
        for await (const ex of examples) await w.add(ex);
        await w.flush();
      },
      opts.outputOptions,
    );
  } else {
    await writeJsonl(examples, opts.output, opts.outputOptions);
  }
  if (acc) summary.stats = acc.result();
  if (opts.report && codec && report.length) {
    // with waypoints the reported actions are targets, in the codec's waypoint layout as the examples write them
    const rc = opts.waypointStep !== undefined && layout ? codec.withLayout(waypointLayout(layout, opts.waypointStep)) : codec;
    summary.roundTrip = roundTripError(rc, report);
  }
  if (layout) {
    summary.layout = layout;
    summary.dims = dimNames(layout);
  }
  return summary;
}
