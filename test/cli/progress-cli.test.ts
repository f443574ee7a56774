/** The progress lines of real commands without a terminal (stderr a pipe, as under make, nohup or CI). */
import { execFileSync } from 'node:child_process';
import { statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers.js';
import { toyExamples } from '../model/examples.js';
import { fmtBytes } from '../../src/lib/cli/progress-format.js';
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

// script(1) from util-linux runs the command on a pseudo-terminal, as a person's terminal would
const hasScript = (() => {
  try {
    execFileSync('script', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();


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
  }, 120_000);

  it('rollout --log-every 0: episodes done of the total and success so far with its interval', async () => {
    const r = await vlakit(['rollout', '--policy', 'scripted', '--episodes', '2', '--log-every', '0', '-o', path.join(dir, 'roll.jsonl')]);
    expect(r.code, r.err).toBe(0);
    const eps = r.err.split('\n').filter((l) => l.startsWith('vlakit rollout: episode 2/2'));
    // the last episode's median step latency and vlakit's share of it, then the rate
    expect(eps.at(-1)).toMatch(/^vlakit rollout: episode 2\/2 100\.0% success 2\/2 100\.0% \[34-100%\] steps \d+ latency [0-9.]+ms vlakit [0-9.]+% .* elapsed \d+s eta 0s$/);
  }, 120_000);

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

describe('the dataset commands against the size of their input (no terminal, --log-every 0)', () => {
  // 60 episodes of 10 steps: more than the 256 records between the reader's progress reports
  const steps = path.join(dir, 'steps.jsonl');
  const progressLines = (err: string, label: string) => err.split('\n').filter((l) => new RegExp(`^vlakit ${label}: (record|step|chunk|stage) \\d`).test(l));
  beforeAll(() => {
    const lines = [];
    for (let e = 0; e < 60; e++) for (let i = 0; i < 10; i++) lines.push(JSON.stringify({ episode_id: `e${e}`, step: i, is_first: i === 0, is_last: i === 9, language_instruction: 'pick up the red block', action: [0.01 * i, 0, 0, i < 5 ? 1 : 0], observation: { state: [0, 0, 0, 0] } }));
    writeFileSync(steps, `${lines.join('\n')}\n`);
  });

  it('convert: records of the JSON Lines counted ahead (done/total, %); inspect of the TFRecord written (60 episodes): its bytes read of its size', async () => {
    const tf = path.join(dir, 'steps.tfrecord');
    const r = await vlakit(['convert', steps, '-o', tf, '--log-every', '0']);
    expect(r.code, r.err).toBe(0);
    const lines = progressLines(r.err, 'convert');
    expect(lines.map((l) => l.split(' ').slice(3, 5).join(' '))).toEqual(['256/600 42.7%', '512/600 85.3%', '600/600 100.0%']);
    expect(lines[2]).toMatch(/^vlakit convert: record 600\/600 100\.0% [0-9.k]+ records\/s elapsed \d+s eta 0s$/);
    const size = fmtBytes(statSync(tf).size);
    const i = await vlakit(['inspect', tf, '--log-every', '0']);
    expect(i.code, i.err).toBe(0);
    expect(progressLines(i.err, 'inspect').at(-1)).toMatch(new RegExp(`^vlakit inspect: record 60 100\\.0% ${size.replace('.', '\\.')}/${size.replace('.', '\\.')} .*elapsed \\d+s`));
  }, 120_000);

  it('chunk: steps of the total; relabel: chunks of the total', async () => {
    const chunks = path.join(dir, 'chunks.jsonl');
    const c = await vlakit(['chunk', steps, '-o', chunks, '--log-every', '0']);
    expect(c.code, c.err).toBe(0);
    const cl = progressLines(c.err, 'chunk');
    expect(cl).toHaveLength(60); // a line at each episode
    expect(cl[0]).toMatch(/^vlakit chunk: step 10\/600 1\.7% 1 chunks elapsed \d+s$/);
    expect(cl[59]).toMatch(/^vlakit chunk: step 600\/600 100\.0% 60 chunks .*eta 0s$/);
    const r = await vlakit(['relabel', chunks, '-o', path.join(dir, 'chunk-examples.jsonl'), '--log-every', '0']);
    expect(r.code, r.err).toBe(0);
    expect(progressLines(r.err, 'relabel')).toEqual([expect.stringMatching(/^vlakit relabel: chunk 60\/60 100\.0% elapsed \d+s$/)]);
  }, 120_000);

  it('annotate: steps annotated of the input total, requests, episodes, cache hits, tokens; ETA from the rate', async () => {
    const r = await vlakit(['annotate', steps, '--kind', 'plan', '-o', path.join(dir, 'plans.jsonl'), '--log-every', '0']);
    expect(r.code, r.err).toBe(0);
    const lines = progressLines(r.err, 'annotate');
    expect(lines.at(-1)).toMatch(/^vlakit annotate: step 600\/600 100\.0% requests 0 episodes 60 cached 0 retries 0 failures 0 reasks 0 errors 0 tokens 0 .*elapsed \d+s eta 0s$/);
    expect(lines.some((l) => /^vlakit annotate: step [1-5]\d\d\/600 \d+\.\d% .* eta \d+s$/.test(l))).toBe(true);
  }, 120_000);

  it('export: its stages of the total, the current one named', async () => {
    const ex = path.join(dir, 'ex.jsonl');
    const rl = await vlakit(['relabel', path.join(dir, 'chunks.jsonl'), '--method', 'vlm2vla', '--actions', 'text', '-o', ex, '-q']);
    expect(rl.code, rl.err).toBe(0);
    const t = await vlakit(['train-sft', ex, '--preset', 'tiny', '--vocab-size', '128', '--batch-size', '2', '--steps', '1', '-q', '-o', path.join(dir, 'sft-export')]);
    expect(t.code, t.err).toBe(0);
    const r = await vlakit(['export', path.join(dir, 'sft-export'), '-o', path.join(dir, 'onnx'), '--log-every', '0']);
    expect(r.code, r.err).toBe(0);
    expect(progressLines(r.err, 'export').map((l) => l.replace(/ [0-9.k]+ stages\/s/, '').replace(/ elapsed .*/, ''))).toEqual([
      'vlakit export: stage 0/4 0.0% loading the checkpoint',
      'vlakit export: stage 1/4 25.0% building the graphs',
      'vlakit export: stage 2/4 50.0% writing the files',
      'vlakit export: stage 3/4 75.0% checking parity',
    ]);
  }, 240_000);
  it.skipIf(!hasScript)('annotate on a terminal (100x30): steps of the total, requests in flight; Ctrl-C stops the teacher and leaves no view behind', async () => {
    // a stand-in teacher process: each answer after 300 ms
    const teacher = path.join(dir, 'teacher.cjs');
    writeFileSync(teacher, `let b='';process.stdin.setEncoding('utf8');process.stdin.on('data',(d)=>{b+=d;let i;while((i=b.indexOf('\\n'))>=0){b=b.slice(i+1);setTimeout(()=>process.stdout.write(JSON.stringify({text:JSON.stringify({observation:'o',situation_analysis:'s',spatial_reasoning:'r',task_planning:'p',logical_steps:['a'],sub_action:'m'}),usage:{input_tokens:10,output_tokens:5}})+'\\n'),300)}});`);
    const cmd = `stty cols 100 rows 30; node ${BIN} annotate ${steps} --kind reasoning --stride 5 --no-cache --teacher 'exec:node ${teacher}' -o ${path.join(dir, 'tty-reasoning.jsonl')}`;
    const p = execa('script', ['-q', '-e', '-c', cmd, '/dev/null'], { reject: false, stdin: 'pipe', extendEnv: false, env: { PATH: process.env.PATH, HOME: process.env.HOME, TERM: 'xterm-256color', NO_COLOR: '1' } });
    let out = '';
    let live: string[] | undefined;
    p.stdout!.on('data', (d) => {
      out += d;
      if (!live && /[1-9]\d*\/600 steps/.test(out)) {
        live = applyTerminal(out.replace(/\r\n/g, '\n'), 100).lines;
        p.stdin!.write('\u0003');
      }
    });
    const r = await p;
    expect(live, out).toBeDefined();
    const view = live!.slice(live!.findIndex((l) => l.startsWith('annotate ')));
    expect(view).toEqual([
      expect.stringMatching(/^annotate [━─]{40} [1-9]\d*\/600 steps \d+\.\d% · .* eta \d/),
      expect.stringMatching(/^requests \d+ · in flight [0-4] · episodes [1-9]\d* · cached \d+ · retries 0 · failures 0 · reasks 0 · errors 0$/),
      expect.stringMatching(/^tokens \d+$/),
    ]);
    expect(r.exitCode).toBe(130);
    const end = applyTerminal(out.replace(/\r\n/g, '\n'), 100).lines;
    expect(end.at(-1)).toBe('vlakit annotate: interrupted by SIGINT; partial outputs were removed');
    expect(end.filter((l) => /^(annotate |requests |tokens )/.test(l))).toEqual([]);
    expect(out.lastIndexOf('\u001B[?25h')).toBeGreaterThan(out.lastIndexOf('\u001B[?25l'));
  }, 120_000);
});
