/** rollout's progress (a file of its own: it reads the env's Wilson interval, which the training commands need not load). */
import { wilson } from '../env/rollout.js';
import type { EpisodeResult, Policy } from '../env/rollout.js';
import { fmtNum } from './progress-format.js';
import { pct } from './progress-jobs.js';
import type { Progress } from './progress.js';

/**
 * A rollout's progress: episodes done of the total, success so far (overall and per task family with its 95%
 * Wilson interval), the current episode's instruction and subtask, and cycle latency with vlakit's share.
 */
export class RolloutProgress {
  private readonly done: { family: string; success: boolean }[] = [];
  private steps = 0;
  private current: { index: number; instruction?: string; subtask?: string } = { index: 0 };
  private latency: string | undefined;

  constructor(
    private readonly progress: Progress,
    private readonly episodes: number,
  ) {
    this.progress.update({ records: 0, total: episodes, unit: 'episodes' });
  }

  /** The policy, watched: its reset tells the instruction, its steps' info the subtask (VLM2VLA's hierarchy). */
  watch<P extends Policy>(policy: P): Policy {
    return {
      name: policy.name,
      reset: (ctx) => {
        this.current = { index: this.done.length, instruction: ctx.instruction };
        this.show();
        return policy.reset(ctx);
      },
      act: async (obs, ctx) => {
        const out = await policy.act(obs, ctx);
        const subtask = out && !Array.isArray(out) ? (out.info as { subtask?: unknown } | undefined)?.subtask : undefined;
        if (typeof subtask === 'string' && subtask !== this.current.subtask) {
          this.current.subtask = subtask;
          this.show();
        }
        return out;
      },
      close: () => policy.close?.(),
    };
  }

  step(): void {
    this.steps++;
    this.show();
  }

  episode(ep: Pick<EpisodeResult, 'family' | 'success' | 'timings'>): void {
    this.done.push({ family: ep.family, success: ep.success });
    this.current = { index: this.done.length };
    if (ep.timings.length) {
      const cycle = ep.timings.map((t) => t.model_ms + t.env_ms + t.vlakit_ms).sort((a, b) => a - b);
      const all = cycle.reduce((a, b) => a + b, 0);
      const own = ep.timings.reduce((a, t) => a + t.vlakit_ms, 0);
      if (all > 0) this.latency = `latency ${fmtNum(cycle[Math.floor(cycle.length / 2)])}ms vlakit ${pct(own / all)}`;
    }
    this.show();
  }

  /** Per family: successes/episodes, the rate and its 95% interval. */
  families(): string[] {
    const by = new Map<string, boolean[]>();
    for (const d of this.done) by.set(d.family, [...(by.get(d.family) ?? []), d.success]);
    return [...by].map(([f, xs]) => {
      const k = xs.filter(Boolean).length;
      const [lo, hi] = wilson(k, xs.length);
      return `${f} ${k}/${xs.length} ${pct(k / xs.length)} [${(lo * 100).toFixed(0)}-${(hi * 100).toFixed(0)}%]`;
    });
  }

  private show(): void {
    const n = this.done.length;
    const k = this.done.filter((d) => d.success).length;
    const [lo, hi] = n ? wilson(k, n) : [0, 1];
    const figures = [`success ${k}/${n}${n ? ` ${pct(k / n)} [${(lo * 100).toFixed(0)}-${(hi * 100).toFixed(0)}%]` : ''}`, `steps ${this.steps}`];
    if (this.latency) figures.push(this.latency);
    const fams = this.families();
    const lines: string[] = [];
    if (fams.length) lines.push(...(fams.length > 6 ? [fams.join(' · ')] : fams));
    if (n < this.episodes && this.current.instruction) lines.push(`episode ${this.current.index + 1}: ${this.current.instruction}${this.current.subtask ? ` · subtask: ${this.current.subtask}` : ''}`);
    this.progress.update({ records: n, total: this.episodes, unit: 'episodes', figures, lines });
  }
}
