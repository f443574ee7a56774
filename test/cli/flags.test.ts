import path from 'node:path';
import { Config } from '@oclif/core';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { checkInt, checkNumber, parseSize } from '../../src/lib/cli/flags.js';
import { tempDir } from '../helpers.js';

const BIN = path.resolve('bin/run.js');
const dir = tempDir();
/** Inputs that do not exist: a flag error must come before any input is read or any model loaded. */
const NOPE = path.join(dir, 'nope.jsonl');
const MODEL = path.join(dir, 'no-model');

function vlakit(args: string[]) {
  return execa('node', [BIN, ...args], { reject: false, input: '', cwd: dir, env: { NO_COLOR: '1' } }).then((r) => ({ code: r.exitCode ?? -1, out: String(r.stdout), err: String(r.stderr) }));
}

let config: Config;
beforeAll(async () => {
  config = await Config.load({ root: path.resolve('.') });
});

/**
 * The command as the binary runs it (oclif's parsing, the built command, its error handling), in this process:
 * dozens of cases cost one oclif start, not one each. Its stdout, stderr and exit code are captured.
 */
async function vlakitHere(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const [id, argv] = args[0] === 'rollout' && args[1] === 'serve' ? ['rollout:serve', args.slice(2)] : [args[0], args.slice(1)];
  // what a command adds to the process (signal and exit handlers, stdout/stderr error handlers) is taken off after it
  const events = ['SIGINT', 'SIGTERM', 'SIGHUP', 'exit'];
  const before = new Map(events.map((e) => [e, process.listeners(e as NodeJS.Signals)]));
  const streams = [process.stdout, process.stderr].map((s) => [s, s.listeners('error')] as const);
  const write = { out: process.stdout.write, err: process.stderr.write };
  let out = '';
  let err = '';
  process.stdout.write = ((chunk: string | Uint8Array) => ((out += String(chunk)), true)) as typeof process.stdout.write;
  process.stderr.write = ((chunk: string | Uint8Array) => ((err += String(chunk)), true)) as typeof process.stderr.write;
  try {
    await config.runCommand(id, argv);
  } catch (e) {
    err += `uncaught: ${(e as Error).stack}`;
  } finally {
    process.stdout.write = write.out;
    process.stderr.write = write.err;
    for (const e of events) for (const l of process.listeners(e as NodeJS.Signals)) if (!before.get(e)!.includes(l)) process.removeListener(e, l);
    for (const [s, had] of streams) for (const l of s.listeners('error')) if (!had.includes(l)) s.removeListener('error', l as never);
  }
  const code = Number(process.exitCode ?? 0);
  process.exitCode = undefined;
  return { code, out, err };
}

/** A usage error: exit 2, the rule on stderr after the command's name, no stack trace, nothing on stdout. */
async function expectUsage(args: string[], rule: RegExp, run = vlakitHere) {
  const r = await run(args);
  expect(r.err).toMatch(new RegExp(`^vlakit ${args[0] === 'rollout' && args[1] === 'serve' ? 'rollout serve' : args[0]}: E_USAGE: `));
  expect(r.err).toMatch(rule);
  expect(r.err).not.toMatch(/internal error|\n\s+at |Parsing --|See more help|MaxListenersExceededWarning/);
  expect(r.out).toBe('');
  expect(r.code).toBe(2);
}

describe('flag values out of range: exit 2 with the rule, before any work', () => {
  const cases: [string[], RegExp][] = [
    [['convert', NOPE, '--shard-size', '0'], /--shard-size must be a size of 1024 bytes or more \(e\.g\. 256MB, 64KiB, 1G\), got "0"/],
    [['convert', NOPE, '--shard-size', 'lots'], /--shard-size must be a size of 1024 bytes or more .*got "lots"/],
    [['inspect', NOPE, '--samples', '-1'], /--samples must be an integer from 0 to 1000, got "-1"/],
    [['annotate', NOPE, '--kind', 'plan', '--concurrency', '0'], /--concurrency must be an integer from 1 to 256, got "0"/],
    [['annotate', NOPE, '--kind', 'plan', '--retries', '-1'], /--retries must be an integer from 0 to 20, got "-1"/],
    [['annotate', NOPE, '--kind', 'plan', '--timeout', '0'], /--timeout must be an integer from 1 to 3600, got "0"/],
    [['annotate', NOPE, '--kind', 'reasoning', '--stride', '2.5'], /--stride must be an integer from 1 to 1000000, got "2\.5"/],
    [['annotate', NOPE, '--kind', 'plan', '--frames', '1'], /--frames must be an integer from 2 to 64, got "1"/],
    [['annotate', NOPE, '--kind', 'plan', '--temperature', 'hot'], /--temperature must be a number from 0 to 2, got "hot"/],
    [['annotate', NOPE, '--kind', 'plan', '--price', '1.2.3,4'], /invalid --price "1\.2\.3,4"; expected INPUT,OUTPUT/],
    [['chunk', NOPE, '--mode', 'fixed', '--horizon', '0'], /--horizon must be an integer from 1 to 1024, got "0"/],
    [['chunk', NOPE, '--axis-limit', '-0.1'], /--axis-limit must be a number > 0 and <= 10, got "-0\.1"/],
    [['relabel', NOPE, '--precision', '9'], /--precision must be an integer from 0 to 8, got "9"/],
    [['relabel', NOPE, '--actions', 'bins', '--bins', '1'], /--bins must be an integer from 2 to 4096, got "1"/],
    [['relabel', NOPE, '--split', '1'], /--split must be a number >= 0 and < 1, got "1"/],
    [['train-sft', NOPE, '-o', MODEL, '--steps', '-1'], /--steps must be an integer from 1 to 10000000, got "-1"/],
    [['train-sft', NOPE, '-o', MODEL, '--batch-size', '0'], /--batch-size must be an integer from 1 to 4096, got "0"/],
    [['train-sft', NOPE, '-o', MODEL, '--lr', '0'], /--lr must be a number > 0 and <= 1, got "0"/],
    [['train-sft', NOPE, '-o', MODEL, '--weight-decay', 'NaN'], /--weight-decay must be a number from 0 to 1, got "NaN"/],
    [['train-sft', NOPE, '-o', MODEL, '--seed', '1e10'], /--seed must be an integer from 0 to 4294967295, got "1e10"/],
    [['train-rl', NOPE, '--init', MODEL, '-o', MODEL, '--group', '1'], /--group must be an integer from 2 to 256, got "1"/],
    [['train-rl', NOPE, '--init', MODEL, '-o', MODEL, '--top-p', '2'], /--top-p must be a number > 0 and <= 1, got "2"/],
    [['train-rl', NOPE, '--init', MODEL, '-o', MODEL, '--clip-eps', '0'], /--clip-eps must be a number > 0 and <= 1, got "0"/],
    [['export', MODEL, '-o', path.join(dir, 'out'), '--tolerance', '-1'], /--tolerance must be a number >= 0 or a percentage such as 5%, got "-1"/],
    [['rollout', '--episodes', '0'], /--episodes must be an integer from 1 to 1000000, got "0"/],
    [['rollout', '--episodes', '1e12'], /--episodes must be an integer from 1 to 1000000, got "1e12"/],
    [['rollout', '--width', '8'], /--width must be an integer from 16 to 1024, got "8"/],
    [['rollout', '--hz', '1000'], /--hz must be an integer from 1 to 100, got "1000"/],
    [['rollout', '--distractors', '5-2'], /--distractors 5-2 is an empty range: MIN must not exceed MAX/],
    [['rollout', '--distractors', '9'], /--distractors must be at most 5, got "9"/],
    [['rollout', '--distractors', 'many'], /invalid --distractors "many"; expected N or MIN-MAX/],
    [['rollout', '--step-size', '0'], /--step-size must be a number > 0 and <= 1, got "0"/],
    [['rollout', '--policy', MODEL, '--top-p', '0'], /--top-p must be a number > 0 and <= 1, got "0"/],
    [['rollout', '--policy', MODEL, '--max-new-tokens', '0'], /--max-new-tokens must be an integer from 1 to 8192, got "0"/],
    [['rollout', '--policy', MODEL, '--temperature-actions', '-1'], /--temperature-actions must be a number from 0 to 10, got "-1"/],
    [['rollout', 'serve', '--policy', MODEL, '--port', '70000'], /--port must be an integer from 0 to 65535, got "70000"/],
    [['rollout', 'serve', '--policy', MODEL, '--handshake-timeout', '0'], /--handshake-timeout must be a number > 0 and <= 3600, got "0"/],
    [['rollout', 'serve', '--policy', MODEL, '--max-message', '10'], /--max-message must be a size of 1024 bytes or more, at most 1073741824/],
    [['rollout', 'serve', '--policy', MODEL, '--max-queue', '0'], /--max-queue must be an integer from 1 to 64, got "0"/],
    [['eval-vqa', '--generate', '0'], /--generate must be an integer from 1 to 10000000, got "0"/],
    [['eval-vqa', '--generate', '1e12'], /--generate must be an integer from 1 to 10000000, got "1e12"/],
    [['eval-vqa', '--model', MODEL, '--data', NOPE, '--concurrency', '0'], /--concurrency must be an integer from 1 to 256, got "0"/],
    [['eval-vqa', '--model', MODEL, '--data', NOPE, '--limit', '-3'], /--limit must be an integer from 1 to 1000000000, got "-3"/],
    [['attn-viz', '--model', MODEL, '-o', path.join(dir, 'viz'), '--top-k', '0'], /--top-k must be an integer from 1 to 4096, got "0"/],
    [['attn-viz', '--model', MODEL, '-o', path.join(dir, 'viz'), '--alpha', '2'], /--alpha must be a number from 0 to 1, got "2"/],
  ];
  it.each(cases)('%j', async (args, rule) => {
    await expectUsage(args, rule);
  });

  it('the same through the binary, for one flag of each kind', async () => {
    await Promise.all([
      expectUsage(['train-sft', NOPE, '-o', MODEL, '--steps', '-1'], /--steps must be an integer from 1 to 10000000, got "-1"/, vlakit),
      expectUsage(['rollout', 'serve', '--policy', MODEL, '--port', '70000'], /--port must be an integer from 0 to 65535, got "70000"/, vlakit),
      expectUsage(['rollout', '--episodes', '1e12'], /--episodes must be an integer from 1 to 1000000, got "1e12"/, vlakit),
      expectUsage(['annotate', NOPE, '--kind', 'plan', '--temperature', 'hot'], /--temperature must be a number from 0 to 2, got "hot"/, vlakit),
      // a single-valued flag given twice (oclif throws a plain Error for it)
      expectUsage(['train-rl', NOPE, '--init', MODEL, '-o', MODEL, '--steps', '1', '--steps', '2'], /--steps can only be specified once \(it takes one value\)/, vlakit),
    ]);
  });
});

describe('flags that contradict each other: exit 2 with the rule', () => {
  const cases: [string[], RegExp][] = [
    [['eval-vqa', '--model', MODEL, '--models', `a=${MODEL}`, '--data', NOPE], /--model and --models cannot be given together: one model, or several to compare/],
    [['eval-vqa', '--generate', '5', '--data', NOPE], /--generate and --data cannot be given together/],
    [['eval-vqa', '--generate', '5', '--model', MODEL], /--model applies only with an evaluation \(not with --generate\)/],
    [['eval-vqa', '--model', MODEL, '--data', NOPE, '--width', '64'], /--width applies only with --generate/],
    [['eval-vqa', '--model', MODEL, '--data', NOPE, '--cache', dir, '--no-cache'], /--cache and --no-cache cannot be given together/],
    [['attn-viz', '--model', MODEL, '--compare', `${MODEL},${MODEL}`, '-o', path.join(dir, 'viz')], /--model and --compare cannot be given together/],
    [['attn-viz', '--model', MODEL, '-o', path.join(dir, 'viz'), '--max-new-tokens', '10'], /--max-new-tokens applies only with --generate/],
    [['annotate', NOPE, '--kind', 'plan', '--no-cache', '--cache', dir], /--cache and --no-cache cannot be given together: --no-cache reads and writes no cache/],
    [['annotate', NOPE, '--kind', 'reasoning', '--frames', '4'], /--frames applies only with --kind plan/],
    [['annotate', NOPE, '--kind', 'plan', '--teacher-url', 'http://localhost:1'], /--teacher-url applies only with an openai: or gemini: teacher/],
    [['chunk', NOPE, '--horizon', '4'], /--horizon applies only with --mode fixed/],
    [['chunk', NOPE, '--mode', 'fixed', '--horizon', '4', '--total-limit', '0.1'], /--total-limit applies only with --mode merge/],
    [['relabel', NOPE, '--bins', '128'], /--bins applies only with --actions bins/],
    [['relabel', NOPE, '--subtask-prompts'], /--subtask-prompts applies only with --method vlm2vla --no-reasoning/],
    [['relabel', NOPE, '--method', 'refinevla', '--subtask-lists'], /--subtask-lists applies only with --method vlm2vla \(its subtasks stage\), without --no-reasoning/],
    [['relabel', NOPE, '--no-reasoning', '--subtask-lists'], /--subtask-lists applies only with --method vlm2vla/],
    [['relabel', NOPE, '--actions', 'bins', '--precision', '2'], /--precision applies only with --actions text, tokens or words/],
    [['rollout', '--mode', 'direct'], /--mode applies only with a learned --policy/],
    [['rollout', '--policy', MODEL, '--prompt', 'task'], /--prompt applies only with --mode direct, or --mode hierarchical with --planner/],
    [['rollout', '--policy', MODEL, '--mode', 'direct', '--planner', 'oracle'], /--planner applies only with --mode hierarchical/],
    [['rollout', '--planner', 'oracle'], /--planner applies only with a learned --policy/],
    [['rollout', '--policy', MODEL, '--mode', 'direct', '--verifier', 'oracle'], /--verifier applies only with --mode hierarchical/],
    [['rollout', '--policy', MODEL, '--step-size', '0.01'], /--step-size applies only with --policy scripted/],
    [['rollout', '--no-safety', '--max-translation', '0.01'], /--max-translation applies only with the safety filter/],
    [['rollout', '--env', 'exec:true', '--width', '64'], /--width applies only with --env builtin:tabletop/],
    [['rollout', 'serve', '--policy', MODEL, '--mode', 'direct', '--max-retries', '2'], /--max-retries applies only with --mode hierarchical/],
    [['train-sft', NOPE, '-o', MODEL, '--lora-r', '8'], /--lora-r applies only with --lora/],
    [['train-sft', NOPE, '-o', MODEL, '--steps', '10', '--epochs', '2'], /--steps and --epochs cannot be given together/],
    [['train-sft', NOPE, '-o', MODEL, '--init', MODEL, '--preset', 'small'], /--preset applies only with a new model \(not with --init/],
    [['train-rl', NOPE, '--init', MODEL, '-o', MODEL, '--tolerance', '0.01'], /--tolerance applies only with --accuracy-mode tolerance/],
  ];
  it.each(cases)('%j', async (args, rule) => {
    await expectUsage(args, rule);
  });

  it('the same through the binary', async () => {
    await Promise.all([
      expectUsage(['eval-vqa', '--model', MODEL, '--models', `a=${MODEL}`, '--data', NOPE], /--model and --models cannot be given together/, vlakit),
      expectUsage(['annotate', NOPE, '--kind', 'plan', '--no-cache', '--cache', dir], /--cache and --no-cache cannot be given together/, vlakit),
    ]);
  });
});

describe('absurd counts', () => {
  it('a hard limit refuses, the help states it; above the soft limit a warning on stderr (none with --quiet)', async () => {
    const help = await vlakit(['rollout', '--help']); // the binary: oclif prints the help itself
    expect(help.out.replace(/\s+/g, ' ')).toMatch(/--episodes=<value> \[default: 10\] number of episodes \(families take turns\) \(from 1 to 1000000; a warning above 10000\)/);
    // the env is refused after the flags are read: the warning comes first, then that error
    const warned = await vlakitHere(['rollout', '--episodes', '20000', '--env', 'tcp://nowhere']);
    expect(warned.err).toMatch(/^vlakit rollout: warning: --episodes 20000 is more than 10000; this run will take long \(Ctrl-C stops it\)\n/);
    expect(warned.err).toMatch(/E_USAGE: unknown env "tcp:\/\/nowhere"/);
    const quiet = await vlakitHere(['rollout', '--episodes', '20000', '--env', 'tcp://nowhere', '-q']);
    expect(quiet.err).not.toMatch(/warning/);
    const below = await vlakitHere(['rollout', '--episodes', '10000', '--env', 'tcp://nowhere']);
    expect(below.err).not.toMatch(/warning/);
  });
});

describe('the checks', () => {
  it('integers: whole values, exponents allowed when whole, the range in the message', () => {
    expect(checkInt('12', 'n', { min: 1 })).toBe(12);
    expect(checkInt('1e3', 'n', { min: 1, max: 1000 })).toBe(1000);
    expect(checkInt(' 7 ', 'n', {})).toBe(7);
    expect(() => checkInt('1.5e0', 'n', { min: 1 })).toThrow('--n must be an integer >= 1, got "1.5e0"');
    expect(() => checkInt('0x10', 'n', { min: 1 })).toThrow('--n must be an integer >= 1, got "0x10"');
    expect(() => checkInt('', 'n', {})).toThrow('--n must be an integer, got ""');
    expect(() => checkInt('9007199254740993', 'n', {})).toThrow(/must be an integer/);
    expect(() => checkInt('1001', 'n', { min: 1, max: 1000 })).toThrow('--n must be an integer from 1 to 1000, got "1001"');
  });

  it('numbers: finite decimals only, open and closed bounds', () => {
    expect(checkNumber('3e-4', 'lr', { min: 0, minExclusive: true })).toBe(3e-4);
    expect(checkNumber('.5', 'a', { min: 0, max: 1 })).toBe(0.5);
    expect(() => checkNumber('Infinity', 'a', {})).toThrow('--a must be a number, got "Infinity"');
    expect(() => checkNumber('1', 'split', { min: 0, max: 1, maxExclusive: true })).toThrow('--split must be a number >= 0 and < 1, got "1"');
    expect(() => checkNumber('0', 'lr', { min: 0, minExclusive: true })).toThrow('--lr must be a number > 0, got "0"');
  });

  it('sizes', () => {
    expect(parseSize('64KiB')).toBe(65536);
    expect(parseSize('1.5MB')).toBe(1_500_000);
    expect(() => parseSize('lots')).toThrow(/invalid size "lots"/);
  });
});
