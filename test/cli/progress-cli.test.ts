/** The progress lines of real commands without a terminal (stderr a pipe, as under make, nohup or CI). */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers.js';
import { toyExamples } from '../model/examples.js';
import { applyTerminal } from './term.js';

const BIN = path.resolve('bin/run.js');
const dir = tempDir();
const data = path.join(dir, 'examples.jsonl');

function vlakit(args: string[]) {
  return execa('node', [BIN, ...args], { reject: false, env: { NO_COLOR: '1' } }).then((r) => ({ code: r.exitCode, err: r.stderr }));
}

beforeAll(async () => {
  const ex = await toyExamples();
  writeFileSync(data, ex.map((e) => JSON.stringify(e)).join('\n') + '\n');
});

describe('progress lines without a terminal', () => {
  it('train-sft --log-every 0: a line per step with total, %, loss, lr, tokens/s; each evaluation a line of its own', async () => {
    const r = await vlakit(['train-sft', data, '--preset', 'tiny', '--vocab-size', '128', '--batch-size', '2', '--steps', '4', '--eval-every', '2', '--log-every', '0', '-o', path.join(dir, 'sft')]);
    expect(r.code, r.err).toBe(0);
    const lines = r.err.split('\n');
    const steps = lines.filter((l) => / step \d+\/4 /.test(l));
    expect(steps).toHaveLength(4);
    for (const [i, l] of steps.entries()) expect(l).toMatch(new RegExp(`^vlakit train-sft: step ${i + 1}/4 ${((100 * (i + 1)) / 4).toFixed(1)}% loss [0-9.]+ action [0-9.]+ reasoning [0-9.]+ lr [0-9.e-]+ grad [0-9.]+ [0-9.k]+ tok/s .*elapsed \\d+s`));
    expect(steps[3]).toMatch(/ eta 0s$/);
    expect(lines.filter((l) => l.includes(': eval step'))).toEqual([expect.stringMatching(/^vlakit train-sft: eval step 2\/4: val action token accuracy [0-9.]+%/), expect.stringMatching(/^vlakit train-sft: eval step 4\/4: /)]);
    // the default cadence (10 s): a run this short prints no progress line, and --quiet none at all
    const quiet = await vlakit(['train-sft', data, '--preset', 'tiny', '--vocab-size', '128', '--batch-size', '2', '--steps', '2', '-o', path.join(dir, 'sft2')]);
    expect(quiet.code, quiet.err).toBe(0);
    expect(quiet.err).not.toMatch(/step \d+\/2/);
  }, 120_000);

  it('rollout --log-every 0: episodes done of the total and success so far with its interval', async () => {
    const r = await vlakit(['rollout', '--policy', 'scripted', '--episodes', '2', '--log-every', '0', '-o', path.join(dir, 'roll.jsonl')]);
    expect(r.code, r.err).toBe(0);
    const eps = r.err.split('\n').filter((l) => l.startsWith('vlakit rollout: episode 2/2'));
    // the last episode's median step latency and vlakit's share of it, then the rate
    expect(eps.at(-1)).toMatch(/^vlakit rollout: episode 2\/2 100\.0% success 2\/2 100\.0% \[34-100%\] steps \d+ latency [0-9.]+ms vlakit [0-9.]+% .* elapsed \d+s eta 0s$/);
  }, 120_000);

  // script(1) from util-linux runs the command on a pseudo-terminal, as a person's terminal would
  const hasScript = (() => {
    try {
      execFileSync('script', ['--version'], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  })();

  it.skipIf(!hasScript)('on a terminal (100x30): the bar and the training state while it runs; Ctrl-C leaves a clean screen and the cursor shown; NO_COLOR', async () => {
    const cmd = `stty cols 100 rows 30; node ${BIN} train-sft ${data} --preset tiny --vocab-size 128 --batch-size 2 --steps 3000 -o ${path.join(dir, 'tty')}`;
    const p = execa('script', ['-q', '-e', '-c', cmd, '/dev/null'], { reject: false, stdin: 'pipe', extendEnv: false, env: { PATH: process.env.PATH, HOME: process.env.HOME, TERM: 'xterm-256color', NO_COLOR: '1' } });
    let out = '';
    let live: string[] | undefined;
    p.stdout!.on('data', (d) => {
      out += d;
      // once the view has drawn its sparkline (two steps), the screen as it is; then Ctrl-C as a keystroke
      if (!live && /loss [▁▂▃▄▅▆▇█]{2,}/.test(out)) {
        live = applyTerminal(out.replace(/\r\n/g, '\n'), 100).lines;
        p.stdin!.write('\u0003');
      }
    });
    const r = await p;
    expect(live, out).toBeDefined();
    expect(live!.slice(1)).toEqual([
      expect.stringMatching(/^train-sft [━─]{40} \d+\/3000 steps \d+\.\d% · .* eta /),
      expect.stringMatching(/^loss [0-9.]+ · action [0-9.]+ · reasoning [0-9.]+ · lr [0-9.e-]+ · grad [0-9.]+ · [0-9.k]+ tok\/s$/),
      expect.stringMatching(/^loss [▁▂▃▄▅▆▇█]+ [0-9.]+ → [0-9.]+$/),
    ]);
    expect(r.exitCode).toBe(130);
    const end = applyTerminal(out.replace(/\r\n/g, '\n'), 100);
    expect(end.wraps).toBe(0);
    expect(end.lines).toEqual(['vlakit train-sft: backend wasm; 3 examples', 'vlakit train-sft: interrupted by SIGINT; partial outputs were removed']);
    expect(out.lastIndexOf('\u001B[?25h')).toBeGreaterThan(out.lastIndexOf('\u001B[?25l'));
    expect(out).not.toMatch(/\u001B\[[0-9;]*m/); // NO_COLOR: no colour or style at all (without it the bar is cyan)
  }, 120_000);
});
