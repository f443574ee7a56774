/**
 * The rollout report of a learned policy, computed from the step records themselves (so it always matches what
 * was recorded): per task family, success with a 95% Wilson interval, VLM2VLA-style partial credit (the share of
 * the task's subtasks the world saw completed), cycle latency (median and interquartile range), the share of cycle
 * time spent in vlakit itself, and the counts of re-samples, no-ops, verifier decisions and safety interventions.
 */
import { quantile } from '../actions/stats.js';
import { type EpisodeOutcome, type FamilyReport, report } from '../env/rollout.js';
import type { StepRecord } from '../io/records.js';

/** Events counted per episode and per task: re-samples, no-ops, verifier decisions, safety interventions. */
export interface PolicyCounts {
  resamples: number;
  noops: number;
  verifierCalls: number;
  verifierRejections: number;
  gaveUp: number;
  safetyInterventions: number;
}

const COUNT_KEYS = ['resamples', 'noops', 'verifierCalls', 'verifierRejections', 'gaveUp', 'safetyInterventions'] as const;

export interface EpisodeSummary extends EpisodeOutcome, PolicyCounts {
  /** Subtasks the world saw completed / subtasks of the task (1 on success). */
  partial: number;
  /** Per control cycle: milliseconds in the model, the env and vlakit. */
  cycles: { model: number; env: number; vlakit: number }[];
  /** Hierarchical: the model's plan names every task object (VLM2VLA appendix D.3). */
  planNamesObjects?: boolean;
}

/** A family's rollout report (success, Wilson interval, e-stops, mean steps) with the learned policy's columns. */
export interface TaskReport extends FamilyReport, PolicyCounts {
  partialCredit: number;
  cycles: number;
  latencyMs: { median: number; q25: number; q75: number };
  overheadShare: number;
  planNamesObjects?: number;
}

type PolicyInfo = { cycle?: number; resampled?: { texts: string[] }; subtasks_resampled?: number; plan_resampled?: number; noop?: unknown; verifier?: { success?: boolean; gave_up?: boolean }; subtasks?: string[] };

/**
 * One episode's summary from its step records (the last record is the final observation); `timings` per step stand
 * in for records written without their timing.
 */
export function summarizeEpisode(records: StepRecord[], timings?: ({ model_ms: number; env_ms: number; vlakit_ms: number } | undefined)[]): EpisodeSummary {
  const meta = (records[0]?.episode_metadata ?? {}) as { family?: string; success?: boolean; end?: EpisodeOutcome['end']; task?: { subtasks?: unknown[]; objects?: (string | { name?: string })[] } };
  const total = meta.task?.subtasks?.length ?? 0;
  let done = 0;
  const cycles = new Map<number, { model: number; env: number; vlakit: number }>();
  const s: EpisodeSummary = { family: meta.family ?? 'task', success: meta.success === true, end: meta.end ?? 'done', steps: Math.max(records.length - 1, 0), partial: 0, cycles: [], resamples: 0, noops: 0, verifierCalls: 0, verifierRejections: 0, gaveUp: 0, safetyInterventions: 0 };
  for (const [i, r] of records.entries()) {
    const oracle = r.oracle as { subtasks_done?: number } | undefined;
    if (typeof oracle?.subtasks_done === 'number') done = Math.max(done, oracle.subtasks_done);
    const p = r.policy as PolicyInfo | undefined;
    const t = (r.timing as { model_ms: number; env_ms: number; vlakit_ms: number } | undefined) ?? timings?.[i];
    if (p && t) {
      const c = cycles.get(p.cycle ?? 0) ?? { model: 0, env: 0, vlakit: 0 };
      c.model += t.model_ms;
      c.env += t.env_ms;
      c.vlakit += t.vlakit_ms;
      cycles.set(p.cycle ?? 0, c);
    }
    if (p) {
      s.resamples += (p.resampled?.texts.length ?? 0) + (p.subtasks_resampled ?? 0) + (p.plan_resampled ?? 0);
      if (p.noop) s.noops += 1;
      if (p.verifier) {
        s.verifierCalls += 1;
        if (!p.verifier.success && !p.verifier.gave_up) s.verifierRejections += 1; // a retry asked for
        if (p.verifier.gave_up) s.gaveUp += 1;
      }
      if (p.subtasks) {
        const text = p.subtasks.join(' ').toLowerCase();
        // task objects are ids such as "red_block" (or {name}): a plan names them in words
        const names = (meta.task?.objects ?? []).map((o) => (typeof o === 'string' ? o : (o.name ?? '')).replace(/_/g, ' ').toLowerCase()).filter(Boolean);
        s.planNamesObjects = names.length > 0 && names.every((n) => text.includes(n));
      }
    }
    if ((r.safety as { interventions?: unknown[] } | undefined)?.interventions?.length) s.safetyInterventions += 1;
  }
  s.partial = s.success ? 1 : total ? Math.min(done / total, 1) : 0;
  s.cycles = [...cycles.values()];
  return s;
}


export function policyReport(episodes: EpisodeSummary[]): TaskReport[] {
  return report(episodes).map((row) => {
    const es = episodes.filter((e) => e.family === row.family);
    const cycles = es.flatMap((e) => e.cycles);
    const totals = cycles.map((c) => c.model + c.env + c.vlakit).sort((a, b) => a - b);
    const all = totals.reduce((a, b) => a + b, 0);
    const sum = (f: (e: EpisodeSummary) => number) => es.reduce((a, e) => a + f(e), 0);
    const planned = es.filter((e) => e.planNamesObjects !== undefined);
    return {
      ...row,
      partialCredit: sum((e) => e.partial) / es.length,
      cycles: cycles.length,
      latencyMs: totals.length ? { median: quantile(totals, 0.5), q25: quantile(totals, 0.25), q75: quantile(totals, 0.75) } : { median: 0, q25: 0, q75: 0 },
      overheadShare: all ? cycles.reduce((a, c) => a + c.vlakit, 0) / all : 0,
      ...(Object.fromEntries(COUNT_KEYS.map((k) => [k, sum((e) => e[k])])) as unknown as PolicyCounts),
      planNamesObjects: planned.length ? planned.filter((e) => e.planNamesObjects).length / planned.length : undefined,
    };
  });
}

export function formatPolicyReport(rows: TaskReport[]): string {
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  const lines = [`${'task'.padEnd(16)} ${'episodes'.padStart(8)} ${'success'.padStart(8)} ${'95% CI (Wilson)'.padStart(17)} ${'partial'.padStart(8)} ${'cycle ms: median [IQR]'.padStart(26)} ${'vlakit'.padStart(7)}`];
  for (const r of rows) {
    lines.push(
      `${r.family.padEnd(16)} ${String(r.episodes).padStart(8)} ${pct(r.rate).padStart(8)} ${`[${(r.ci95[0] * 100).toFixed(1)}, ${(r.ci95[1] * 100).toFixed(1)}]`.padStart(17)} ${pct(r.partialCredit).padStart(8)} ${`${r.latencyMs.median.toFixed(0)} [${r.latencyMs.q25.toFixed(0)}, ${r.latencyMs.q75.toFixed(0)}]`.padStart(26)} ${pct(r.overheadShare).padStart(7)}`,
    );
  }
  const t = rows.reduce((a, r) => ({ re: a.re + r.resamples, no: a.no + r.noops, v: a.v + r.verifierCalls, vr: a.vr + r.verifierRejections, g: a.g + r.gaveUp, s: a.s + r.safetyInterventions }), { re: 0, no: 0, v: 0, vr: 0, g: 0, s: 0 });
  lines.push(`re-samples ${t.re}, no-ops ${t.no}; verifier: ${t.v} decisions, ${t.vr} retries asked, ${t.g} subtasks given up; steps with safety interventions ${t.s}`);
  return lines.join('\n');
}
