/** The progress lines of real commands without a terminal (stderr a pipe, as under make, nohup or CI). */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers.js';
import { toyExamples } from '../model/examples.js';

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
});
