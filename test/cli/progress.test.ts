/** Progress: the plain log lines without a terminal (format, cadence on a fake clock), the live view at several widths, and the jobs' figures. */
import { PassThrough } from 'node:stream';
import { describe, expect, it, vi } from 'vitest';

// ink decides once, when it is imported, whether it runs under CI (is-in-ci: the CI variable), and then draws only
// the last frame. These tests give the view a terminal of their own, so they must not inherit the CI variable of the
// machine running them (.ci/run sets CI=true): it is removed before any import.
vi.hoisted(() => {
  for (const k of Object.keys(process.env)) if (k === 'CI' || k === 'CONTINUOUS_INTEGRATION' || k.startsWith('CI_')) delete process.env[k];
});
import { LogProgress, isLiveTerminal, startProgress, useColor, type Progress, type ProgressState } from '../../src/lib/cli/progress.js';
import { fmtDuration, fmtNum, logLine, sparkline, timing, viewLines } from '../../src/lib/cli/progress-format.js';
import { annotateProgress, rlProgress, sftProgress, vqaProgress } from '../../src/lib/cli/progress-jobs.js';
import { RolloutProgress } from '../../src/lib/cli/progress-rollout.js';
import { renderProgress } from '../../src/lib/cli/progress-view.js';
import { FakeTty, applyTerminal } from './term.js';

/** A Progress that keeps what it was told. */
function recorder(): Progress & { state: Partial<ProgressState>; events: string[] } {
  const r = {
    state: {} as Partial<ProgressState>,
    events: [] as string[],
    update(s: Partial<ProgressState>) {
      r.state = { ...r.state, ...s };
    },
    event(l: string) {
      r.events.push(l);
    },
    stop() {},
  };
  return r;
}

const tick = () => new Promise((r) => setImmediate(r));

describe('figures as text', () => {
  it('numbers in a few characters, durations as 42s, 6m10s, 1h02m', () => {
    expect([0.91, 0.9123, 2.4e-3, 1300, 12_345, 2_400_000, 123.4, 0].map(fmtNum)).toEqual(['0.91', '0.912', '2.4e-3', '1.3k', '12k', '2.4M', '123', '0']);
    expect([0, 42, 370, 3720, 86_399].map(fmtDuration)).toEqual(['0s', '42s', '6m10s', '1h02m', '23h59m']);
    expect(sparkline([4, 3, 2, 1], 10)).toBe('█▆▃▁');
    expect(sparkline([1, 2, 3, 4, 5, 6], 3)).toBe('▁▅█'); // averaged in pairs: 1.5, 3.5, 5.5
  });

  it('the log line: done/total, %, the job figures, rate, elapsed and ETA from the rate since the first update', () => {
    const s: ProgressState = { label: 'train-sft', records: 400, total: 1500, unit: 'steps', figures: ['loss 0.91', 'lr 2.4e-3', '1.3k tok/s'] };
    // first update at step 100 after 10 s of setup; 300 steps in 150 s since: 2 steps/s, 1100 left: 550 s
    const t = timing(s, 0, { records: 100, at: 10_000 }, 160_000);
    expect(t).toEqual({ elapsed: 160, rate: 2, eta: 550 });
    expect(logLine(s, t)).toBe('vlakit train-sft: step 400/1500 26.7% loss 0.91 lr 2.4e-3 1.3k tok/s 2 steps/s elapsed 2m40s eta 9m10s');
    // no total: no percentage, no ETA; slow units as seconds per unit
    expect(logLine({ label: 'annotate', records: 3, unit: 'steps' }, timing({ label: 'annotate', records: 3 }, 0, { records: 1, at: 0 }, 10_000))).toBe('vlakit annotate: step 3 5s/step elapsed 10s');
  });
});

describe('the plain log without a terminal', () => {
  it('writes a line every N seconds of the clock, never between; events at once; nothing after stop', () => {
    let now = 0;
    const lines: string[] = [];
    const p = new LogProgress('train-sft', 10, () => now, (l) => lines.push(l), false);
    now = 25_000; // loading the model: no line before the first update
    p.tick();
    expect(lines).toEqual([]);
    now = 0;
    for (let step = 1; step <= 35; step++) {
      now = step * 1000; // one step a second
      p.update({ records: step, total: 100, unit: 'steps', figures: [`loss ${(1 / step).toFixed(2)}`] });
      if (step === 15) p.event('eval step 15/100: val action token accuracy 40.0%');
    }
    expect(lines).toEqual([
      'vlakit train-sft: step 10/100 10.0% loss 0.10 1 steps/s elapsed 10s eta 1m30s',
      'vlakit train-sft: eval step 15/100: val action token accuracy 40.0%',
      'vlakit train-sft: step 20/100 20.0% loss 0.05 1 steps/s elapsed 20s eta 1m20s',
      'vlakit train-sft: step 30/100 30.0% loss 0.03 1 steps/s elapsed 30s eta 1m10s',
    ]);
    // a slow step: the heartbeat's tick shows the clock (and the rate falling) even without an update
    now = 45_000;
    p.tick();
    expect(lines.at(-1)).toBe('vlakit train-sft: step 35/100 35.0% loss 0.03 1.29s/step elapsed 45s eta 1m24s');
    p.stop();
    now = 100_000;
    p.update({ records: 99 });
    p.event('late');
    expect(lines).toHaveLength(5);
  });

  it('--log-every 0: a line at every update', () => {
    let now = 0;
    const lines: string[] = [];
    const p = new LogProgress('rollout', 0, () => now, (l) => lines.push(l), false);
    for (let i = 1; i <= 3; i++) {
      now = i;
      p.update({ records: i, total: 3, unit: 'episodes' });
    }
    p.tick(); // nothing new: no line
    expect(lines.map((l) => l.split(' ').slice(0, 4).join(' '))).toEqual(['vlakit rollout: episode 1/3', 'vlakit rollout: episode 2/3', 'vlakit rollout: episode 3/3']);
  });

  it('startProgress: a pipe gets the log, a dumb terminal too, a terminal the live view, --quiet nothing', async () => {
    expect(isLiveTerminal({ isTTY: true }, {})).toBe(true);
    expect(isLiveTerminal({ isTTY: true }, { TERM: 'dumb' })).toBe(false);
    expect(isLiveTerminal({ isTTY: true }, { CI: 'true' })).toBe(false);
    expect(isLiveTerminal({ isTTY: false }, {})).toBe(false);
    expect(useColor({})).toBe(true);
    expect(useColor({ NO_COLOR: '' })).toBe(false);
    expect(useColor({ TERM: 'dumb' })).toBe(false);
    const pipe = new PassThrough();
    let out = '';
    pipe.on('data', (d) => (out += d));
    const log = await startProgress('convert', true, { stream: pipe, env: {}, logEvery: 0, timer: false });
    expect(log).toBeInstanceOf(LogProgress);
    log.update({ records: 5 });
    log.stop();
    expect(out).toMatch(/^vlakit convert: record 5 elapsed \d+s\n$/);
    const dumb = new FakeTty(80);
    const d = await startProgress('convert', true, { stream: dumb as never, env: { TERM: 'dumb' }, timer: false });
    expect(d).toBeInstanceOf(LogProgress);
    d.stop();
    const tty = new FakeTty(80);
    const live = await startProgress('convert', true, { stream: tty as never, env: { TERM: 'xterm' }, initial: { unit: 'records', total: 10 } });
    expect(live).not.toBeInstanceOf(LogProgress);
    expect(tty.screen().lines).toEqual([expect.stringMatching(/^convert ─+ 0\/10 records 0\.0% · 0s$/)]); // before the first update
    live.update({ records: 7, unit: 'records' });
    live.stop();
    expect(tty.written).toContain('7/10 records 70.0%');
    expect(tty.screen().lines).toEqual([]); // erased at the end
    const quiet = new FakeTty(80);
    (await startProgress('convert', false, { stream: quiet as never, env: {} })).update({ records: 1 });
    expect(quiet.written).toBe('');
  });
});

describe('the live view', () => {
  const long = 'put the small red block that is left of the green bowl into the blue bowl, then push the yellow cube';
  for (const columns of [60, 100, 120]) {
    it(`at ${columns} columns: nothing wraps, shrinking state leaves no stale line, the end leaves only the events`, async () => {
      const tty = new FakeTty(columns);
      let now = 0;
      const p = renderProgress('train-sft', { stream: tty as never, color: true, now: () => now });
      const losses: number[] = [];
      for (let step = 1; step <= 30; step++) {
        now += 400;
        losses.push(3 / step);
        p.update({ records: step, total: 1500, unit: 'steps', figures: ['loss 0.912', 'action 0.8', 'reasoning 0.11', 'lr 2.4e-3', 'grad 0.53', '1.3k tok/s'], spark: { name: 'loss', values: losses }, lines: [`episode 3: ${long}`, 'checkpoint: step 400', 'last eval (step 100): val action token accuracy 42.0%, action L1 0.0123 m'] });
        await tick();
      }
      const mid = tty.screen();
      expect(mid.wraps).toBe(0);
      // at 60 columns the figures take two lines, never cut
      const narrow = columns === 60 ? 1 : 0;
      expect(mid.lines).toHaveLength(6 + narrow);
      // at 60 columns the rate gives way, so that the bar keeps room
      if (columns === 60) expect(mid.lines[0]).toMatch(/^train-sft ─{10,} 30\/1500 steps 2\.0% · 12s eta 9m48s$/);
      else expect(mid.lines[0]).toMatch(/^train-sft ━─{39} 30\/1500 steps 2\.0% · 2\.5 steps\/s · 12s eta 9m48s$/);
      if (narrow) expect(mid.lines.slice(1, 3)).toEqual(['loss 0.912 · action 0.8 · reasoning 0.11 · lr 2.4e-3', 'grad 0.53 · 1.3k tok/s']);
      else expect(mid.lines[1]).toBe('loss 0.912 · action 0.8 · reasoning 0.11 · lr 2.4e-3 · grad 0.53 · 1.3k tok/s');
      expect(mid.lines[2 + narrow]).toMatch(/^loss [▁▂▃▄▅▆▇█]+ 3 → 0\.1$/);
      for (const l of mid.lines) expect([...l].length).toBeLessThan(columns);
      if (columns === 60) expect(mid.lines[4]).toMatch(/^episode 3: put the small red block .*…$/);
      else {
        const full = `episode 3: ${long}`;
        expect(mid.lines[3]).toBe(full.length < columns ? full : `${full.slice(0, columns - 2)}…`);
      }

      p.event('eval step 30/1500: val action token accuracy 45.0%');
      now += 400;
      p.update({ records: 31, figures: ['loss 0.9'], spark: { name: 'loss', values: [] }, lines: [] });
      await tick();
      const fewer = tty.screen();
      expect(fewer.wraps).toBe(0);
      expect(fewer.lines).toEqual(['eval step 30/1500: val action token accuracy 45.0%', expect.stringMatching(/^train-sft ━*─+ 31\/1500 steps 2\.1% · /), 'loss 0.9']);

      p.stop();
      p.stop();
      await tick();
      expect(tty.screen().lines).toEqual(['eval step 30/1500: val action token accuracy 45.0%']);
      expect(tty.written.endsWith('\u001B[?25h')).toBe(true); // the cursor shown again
    });
  }

  it("the process's own writes while the view is live become lines above it, never torn into it", async () => {
    const tty = new FakeTty(80);
    const p = renderProgress('train-sft', { stream: tty as never, color: false, now: () => 0 });
    p.update({ records: 1, total: 10, unit: 'steps', figures: ['loss 2'], lines: ['checkpoint: step 1'] });
    tty.write('vlakit train-sft: backend wasm; ');
    tty.write('3 examples\nwarning: one\n');
    p.update({ records: 2 });
    tty.write('tail without newline');
    p.stop();
    await tick();
    const s = tty.screen();
    expect(s.lines).toEqual(['vlakit train-sft: backend wasm; 3 examples', 'warning: one', 'tail without newline']);
    tty.write('\nafter');
    expect(tty.written.endsWith('tail without newline\nafter')).toBe(true); // the stream's own write is back
  });

  it('a stdout on the same terminal: its data lines go above the view too, a partial line to stdout at the end', async () => {
    const tty = new FakeTty(80);
    const out = new FakeTty(80);
    let now = 0;
    const p = renderProgress('rollout', { stream: tty as never, color: false, now: () => (now += 200), alsoCapture: out as never });
    p.update({ records: 1, total: 4, unit: 'episodes', figures: ['success 1/1'] });
    out.write('{"step":0}\n{"step":1}\n{"st');
    p.update({ records: 2 });
    expect(tty.screen().lines).toEqual(['{"step":0}', '{"step":1}', expect.stringMatching(/^rollout ━+─+ 2\/4 episodes 50\.0%/), 'success 1/1']);
    out.write('ep":2}\n');
    p.stop();
    await tick();
    expect(tty.screen().lines).toEqual(['{"step":0}', '{"step":1}', '{"step":2}']);
    out.write('{"st');
    expect(out.written).toBe('{"st'); // its own write again
  });

  it('a terminal made narrower: the lines are fitted to the new width at once', async () => {
    const tty = new FakeTty(120);
    let now = 0;
    const p = renderProgress('train-sft', { stream: tty as never, color: false, now: () => (now += 200) });
    p.update({ records: 1, total: 10, unit: 'steps', figures: ['loss 2'], lines: ['x'.repeat(110)] });
    tty.columns = 60;
    tty.written = ''; // the screen as the narrower terminal redraws it
    tty.emit('resize');
    await tick();
    const s = tty.screen();
    expect(s.wraps).toBe(0);
    expect(s.lines.at(-1)).toBe(`${'x'.repeat(58)}…`);
    p.stop();
  });

  it('NO_COLOR: no colour escapes in the view; without a total no bar', () => {
    const lines = viewLines({ label: 'convert', records: 1234, unit: 'records', bytes: 5 * 1024 * 1024 }, { elapsed: 3, rate: 411.3 }, 60);
    expect(lines.map((l) => l.text)).toEqual(['convert 1234 records · 411 records/s · 5.0 MiB · 3s']);
    const tty = new FakeTty(60);
    const p = renderProgress('rollout', { stream: tty as never, color: false, now: () => 0 });
    p.update({ records: 1, total: 4, unit: 'episodes' });
    p.stop();
    expect(tty.written).not.toMatch(/\u001B\[[0-9;]*m/);
  });

  it('the terminal model wraps an over-long line (so the checks above can fail)', () => {
    expect(applyTerminal('x'.repeat(61), 60).wraps).toBe(1);
    expect(applyTerminal('ab\ncd\u001B[2K\u001B[1A\u001B[2K\u001B[Gz', 60).lines).toEqual(['z']);
  });
});

describe("the jobs' figures", () => {
  it('train-sft: loss, lr, grad norm, tokens/s, the sparkline; evaluations as events; checkpoints', () => {
    const r = recorder();
    const on = sftProgress(r, { saveEvery: 2 });
    on({ step: 1, loss: 2.5, action_loss: 2, reasoning_loss: 0.5, lr: 3e-4, grad_norm: 1.25, tokens_per_s: 1834 }, { totalSteps: 4 });
    on({ step: 2, loss: 2.0, action_loss: 1.6, reasoning_loss: 0.4, lr: 2e-4, grad_norm: 0.9, tokens_per_s: 1900, val_action_token_accuracy: 0.42, val_action_l1: 0.0123, val_undecodable: 0 }, { totalSteps: 4 });
    expect(r.state).toMatchObject({ records: 2, total: 4, unit: 'steps', figures: ['loss 2', 'action 1.6', 'reasoning 0.4', 'lr 2.0e-4', 'grad 0.9', '1.9k tok/s'], spark: { name: 'loss', values: [2.5, 2] } });
    expect(r.events).toEqual(['eval step 2/4: val action token accuracy 42.0%, action L1 0.0123 m']);
    expect(r.state.lines).toEqual(['last eval (step 2): val action token accuracy 42.0%, action L1 0.0123 m', 'checkpoint: step 2']);
  });

  it('train-rl: reward, KL, evaluations', () => {
    const r = recorder();
    rlProgress(r, { totalSteps: 10 })({ step: 5, loss: 0.01, reward: { mean: 0.625 }, kl: 0.0012, grad_norm: 0.3, clip_fraction: 0, completion_length: 14, val_reward: 0.7, val_accuracy: 0.5 });
    expect(r.state.figures).toEqual(['reward 0.625', 'kl 1.2e-3', 'loss 0.01', 'grad 0.3', 'clip 0', 'len 14']);
    expect(r.events).toEqual(['eval step 5/10: val reward 0.7, accuracy 0.5']);
  });

  it('annotate: steps of the input total, requests and those in flight, cache hits, retries, failures, tokens, cost', () => {
    const u = { episodes: 2, steps: 40, requests: 12, cacheHits: 30, retries: 1, failures: 0, reasks: 2, errors: 1, inputTokens: 9000, outputTokens: 1000, cost: 0.0123 };
    expect(annotateProgress(u, { inFlight: 3, input: { total: 100 } })).toEqual({ records: 40, total: 100, unit: 'steps', figures: ['requests 12', 'in flight 3', 'episodes 2', 'cached 30', 'retries 1', 'failures 0', 'reasks 2', 'errors 1', 'tokens 10k', 'cost $0.012'] });
    // a local teacher sends no requests: nothing in flight is shown; an unsized input (stdin): no total
    expect(annotateProgress({ ...u, cost: undefined })).toEqual({ records: 40, unit: 'steps', figures: ['requests 12', 'episodes 2', 'cached 30', 'retries 1', 'failures 0', 'reasks 2', 'errors 1', 'tokens 10k'] });
  });

  it('eval-vqa: questions of all models, the current model\'s mean score per benchmark so far', () => {
    const r = recorder();
    const forModel = vqaProgress(r, 6);
    const a = forModel('base');
    a({ benchmark: 'vqav2', score: 1 });
    a({ benchmark: 'vqav2', score: 0 });
    a({ benchmark: 'mmmu', score: 1 });
    expect(r.state).toMatchObject({ records: 3, total: 6, unit: 'questions', figures: ['model base', 'vqav2 50.0%', 'mmmu 100.0%'] });
    forModel('tuned')({ benchmark: 'vqav2', score: 0.3 });
    expect(r.state).toMatchObject({ records: 4, figures: ['model tuned', 'vqav2 30.0%'] });
  });

  it('rollout: success so far per family with its Wilson interval, the current instruction and subtask, cycle latency', async () => {
    const r = recorder();
    const rp = new RolloutProgress(r, 4);
    const inner = { name: 'fake', reset: () => {}, act: () => ({ action: [0, 0, 0, 1], info: { subtask: 'reach the red block' } }) };
    const policy = rp.watch(inner);
    await policy.reset({ env: undefined as never, instruction: 'pick up the red block', seed: 0 });
    await policy.act({}, { instruction: 'pick up the red block', step: 0 } as never);
    rp.step();
    expect(r.state.lines).toEqual(['episode 1: pick up the red block · subtask: reach the red block']);
    rp.episode({ family: 'pick', success: true, timings: [{ model_ms: 90, env_ms: 8, vlakit_ms: 2 }, { model_ms: 110, env_ms: 8, vlakit_ms: 2 }, { model_ms: 100, env_ms: 10, vlakit_ms: 10 }] });
    rp.episode({ family: 'stack', success: false, timings: [] });
    rp.episode({ family: 'pick', success: false, timings: [] });
    // 1 of 2: Wilson [9.5%, 90.5%]; 0 of 1: [0%, 79.3%]
    expect(r.state).toMatchObject({ records: 3, total: 4, unit: 'episodes', figures: ['success 1/3 33.3% [6-79%]', 'steps 1', 'latency 120ms vlakit 4.1%'] });
    expect(r.state.lines).toEqual(['pick 1/2 50.0% [9-91%]', 'stack 0/1 0.0% [0-79%]']);
  });
});
