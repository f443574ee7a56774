import { Args, Flags } from '@oclif/core';
import { VlakitCommand, parseSize, sharedFlags } from '../lib/cli/base.js';
import { type FlagRule, decimal, exclusive, int, onlyWith, lerobotFlags, lerobotOptions, size, shardFlag } from '../lib/cli/flags.js';
import { logEveryFlag, startProgress } from '../lib/cli/progress.js';
import { annotateProgress, watchInFlight } from '../lib/cli/progress-jobs.js';
import { meterInput } from '../lib/cli/progress-input.js';
import { EXIT, VlakitError } from '../lib/errors.js';
import { ShardJob, checkOutputFormat, claimOutput, groupEpisodes, isLeRobotDir, leRobotInfo, newStats, outputFormatFor, parseCameraList, readValidated, rldsInputs, type StepRecord, writeEpisodes } from '../lib/io/index.js';
import { ActionStepSchema, AnswerCache, RateLimiter, TeacherFatalError, annotate, defaultCacheDir, makeTeacher, runBatch, scorePlans, type Teacher, type UsageStats } from '../lib/teacher/index.js';

function parsePrice(s: string | undefined): { input: number; output: number } | undefined {
  if (!s) return undefined;
  const m = /^\s*(\d+(?:\.\d*)?|\.\d+)\s*,\s*(\d+(?:\.\d*)?|\.\d+)\s*$/.exec(s);
  if (!m) throw new VlakitError('E_USAGE', `invalid --price "${s}"; expected INPUT,OUTPUT in USD per million tokens, e.g. 0.30,2.50`);
  return { input: Number(m[1]), output: Number(m[2]) };
}

function usageLine(u: UsageStats): string {
  const cost = u.cost !== undefined ? `, $${u.cost.toFixed(4)}` : '';
  const reasons = Object.entries(u.reasons)
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .map(([k, n]) => `${k} ${n}`)
    .join(', ');
  const thinking = u.thoughtTokens ? ` (${u.thoughtTokens} thinking)` : '';
  const again = u.truncatedReasks || u.emptyRetries ? `, ${u.truncatedReasks} truncated re-asked, ${u.emptyRetries} empty re-asked` : '';
  const batch = u.batchAnswers ? ` (${u.batchAnswers} answered by batch jobs, ${u.batchInputTokens} in / ${u.batchOutputTokens} out at the batch price)` : '';
  return `${u.episodes} episodes, ${u.steps} steps; ${u.requests} requests${batch}, ${u.cacheHits} cache hits, ${u.retries} retries, ${u.failures} failures, ${u.reasks} re-asks${again}, ${u.localRepairs} plans repaired, ${u.errors} annotation errors${reasons ? ` (${reasons})` : ''}; tokens ${u.inputTokens} in / ${u.outputTokens} out${thinking}${cost}`;
}

export default class Annotate extends VlakitCommand {
  static summary = 'Have a teacher write reasoning per step (ReFineVLA) or a subtask plan per episode (VLM2VLA).';
  static description =
    'Reads step records (RLDS, TFRecord, JSONL), asks a teacher, and writes the records with a `reasoning` (--kind reasoning) or `plan` (--kind plan) field. Answers are cached by content (never paid twice, safe to kill and rerun), requests run concurrently with retries and an optional rate limit, unusable answers are re-asked, and the usage (requests, cache hits, tokens, cost) is reported.';
  static strict = false;
  static args = { input: Args.string({ description: 'input files, directories or globs; "-" or nothing for stdin', required: false, ignoreStdin: true }) };
  static examples = [
    { description: 'Subtask plans from the built-in kinematic teacher, scored against the oracle', command: '<%= config.bin %> annotate demos/tabletop/1.0.0 --kind plan -o plans.jsonl' },
    { description: 'ReFineVLA reasoning for every 4th step with Gemini', command: 'GEMINI_API_KEY=... <%= config.bin %> annotate bridge/1.0.0 --kind reasoning --teacher gemini:gemini-2.5-flash --stride 4 --concurrency 16 --rpm 900 --price 0.30,2.50 -o reasoning/1.0.0' },
    { description: 'A local vLLM or Ollama server', command: '<%= config.bin %> annotate steps.jsonl --kind plan --teacher openai:qwen2.5-vl-7b --teacher-url http://localhost:8000 -o plans.jsonl' },
  ];
  static flags = {
    kind: Flags.string({ description: 'reasoning (per step) or plan (per episode)', options: ['reasoning', 'plan'], required: true }),
    teacher: Flags.string({ description: 'kinematic, gemini:MODEL, openai:MODEL or exec:COMMAND', default: 'kinematic' }),
    'teacher-url': Flags.string({ description: 'server of an openai: teacher (or another Gemini endpoint)', helpValue: 'URL' }),
    stride: int({ description: 'reasoning: annotate every k-th step', default: 1, min: 1, max: 1_000_000 }),
    frames: int({ description: 'plan: frames sent to the teacher', default: 8, min: 2, max: 64 }),
    cache: Flags.string({ description: `answer cache directory (default ${defaultCacheDir()})`, helpValue: 'DIR' }),
    'no-cache': Flags.boolean({ description: 'do not read or write the cache' }),
    concurrency: int({ description: 'requests in flight', default: 4, min: 1, max: 256 }),
    rpm: int({ description: 'at most this many requests a minute', min: 1, max: 1_000_000 }),
    timeout: int({ description: 'seconds before a request is abandoned (and retried)', default: 120, min: 1, max: 3600 }),
    retries: int({ description: 'retries of a request on network errors, 408, 409, 429, 5xx', default: 6, min: 0, max: 20 }),
    repair: int({ description: 're-asks after an unusable answer', default: 2, min: 0, max: 10 }),
    price: Flags.string({
      description: 'USD per million input,output tokens, for the cost figure',
      helpValue: 'IN,OUT',
      parse: async (s) => {
        parsePrice(s);
        return s;
      },
    }),
    temperature: decimal({ description: 'sampling temperature of remote teachers (not sent to OpenAI reasoning models: gpt-5*, o1, o3, o4-mini)', default: '0.2', min: 0, max: 2 }),
    'max-tokens': int({ description: "output token budget of a remote teacher request, thinking included (default: the service's); a truncated answer is asked once more with 4x", min: 16, max: 1_000_000 }),
    'thinking-budget': int({ description: 'gemini: thinking tokens per request (0: off where the model allows it; -1: the model decides)', min: -1, max: 1_000_000 }),
    output: sharedFlags.output,
    overwrite: sharedFlags.overwrite,
    to: Flags.string({ description: 'output format (default: rlds for a directory, else jsonl)', options: ['rlds', 'jsonl', 'lerobot'] }),
    ...lerobotFlags,
    'shard-size': size({ description: 'RLDS shard size limit', min: 1024 }),
    camera: Flags.string({ description: 'cameras the teacher sees, in order (default: all, the primary camera first: image, image_0, ...; plans: the primary one)', helpValue: 'NAME[,NAME...]' }),
    split: sharedFlags.split,
    shard: shardFlag(),
    'add-split': Flags.boolean({ description: 'rlds output: add the split to an existing dataset directory (same name and features) instead of refusing it' }),
    'skip-corrupt': sharedFlags['skip-corrupt'],
    quiet: sharedFlags.quiet,
    'log-every': logEveryFlag,
    json: Flags.boolean({ description: 'print the usage summary as JSON on stderr' }),
    batch: Flags.boolean({ description: "gemini:/openai: teachers: send the requests as the provider's batch jobs (about half the price, answers within 24 h); the job ids are kept in the cache directory, so the same command resumes a killed run" }),
    'batch-poll': decimal({ description: 'seconds between the first polls of a batch job (the interval grows 1.5x a round, up to 10 minutes)', default: '30', min: 0, minExclusive: true, max: 3600 }),
    'batch-size': int({ description: "requests per batch job at most (default: the service's limit: 50,000 for OpenAI; and 200 MB, 2 GB for Gemini)", min: 1, max: 50_000 }),
  };

  static flagRules: FlagRule[] = [
    exclusive('cache', 'no-cache', '--no-cache reads and writes no cache'),
    onlyWith('stride', '--kind reasoning', (i) => i.flags.kind === 'reasoning'),
    onlyWith('frames', '--kind plan', (i) => i.flags.kind === 'plan'),
    onlyWith('teacher-url', 'an openai: or gemini: teacher', (i) => /^(openai|gemini):/.test(String(i.flags.teacher))),
    onlyWith('thinking-budget', 'a gemini: teacher', (i) => String(i.flags.teacher).startsWith('gemini:')),
    onlyWith('batch', 'a gemini: or openai: teacher', (i) => /^(openai|gemini):/.test(String(i.flags.teacher))),
    exclusive('batch', 'no-cache', 'batch jobs are kept in the cache directory'),
    onlyWith('batch-poll', '--batch', (i) => !!i.flags.batch),
    onlyWith('batch-size', '--batch', (i) => !!i.flags.batch),
  ];

  async run(): Promise<void> {
    const { argv, flags } = await this.parse(Annotate);
    const inputs = argv.length ? (argv as string[]) : ['-'];
    checkOutputFormat(flags.to, flags.output);
    const to = (flags.to as 'rlds' | 'jsonl' | 'lerobot' | undefined) ?? (outputFormatFor(flags.output) === 'rlds' ? 'rlds' : 'jsonl');
    const temperature = Number(flags.temperature);
    const cameras = parseCameraList(flags.camera);
    const teacher = makeTeacher(flags.teacher, {
      url: flags['teacher-url'],
      retries: flags.retries,
      timeoutMs: flags.timeout * 1000,
      limiter: new RateLimiter(flags.rpm),
      temperature,
      maxTokens: flags['max-tokens'],
      thinkingBudget: flags['thinking-budget'],
      onWarning: flags.quiet ? undefined : (m) => this.note(`vlakit annotate: ${m}`),
    });
    const cacheDir = teacher.local || flags['no-cache'] ? undefined : (flags.cache ?? defaultCacheDir());
    const output = this.outputOptions(flags, [...inputs, cacheDir]);
    // refused before a single request is paid for
    // --add-split writes into an existing dataset (checked by the RLDS writer)
    if (flags.output && flags.output !== '-') claimOutput(flags.output, to === 'rlds' ? 'dir' : 'file', flags['add-split'] && to === 'rlds' ? { ...output, overwrite: true } : output);
    const shard = ShardJob.start('annotate', flags.shard, flags.output, output);
    const cache = cacheDir === undefined ? undefined : await AnswerCache.open(cacheDir);
    const input = await meterInput(inputs, { split: flags.split });
    const watched = watchInFlight(teacher);
    const progress = await startProgress('annotate', !flags.quiet && !flags.json, { logEvery: flags['log-every'], initial: { unit: 'steps', ...input.state() } });
    const signal = this.abort.signal;
    const light: StepRecord[][] = [];
    let usage: UsageStats | undefined;
    const read = newStats();
    const note = (m: string): void => this.note(`vlakit annotate: ${m}`);
    let checked = teacher.id !== 'kinematic';
    const readSteps = (job: typeof shard, first: boolean) => (async function* () {
      const all = readValidated(inputs, 'step', ActionStepSchema, 'annotate reads step records', { split: flags.split, skipCorrupt: flags['skip-corrupt'], signal, onRead: first ? undefined : input.onRead, onWarning: flags.quiet || first ? undefined : (m) => note(m), skipEpisode: job?.skipEpisode }, first ? newStats() : read);
      for await (const r of job ? job.filter(all, (r) => r.value.episode_id, (r) => r) : all) {
        if (!checked) {
          checked = true;
          // steps of the built-in world carry its oracle; anything else is data the kinematic teacher cannot see
          if (r.value.oracle === undefined && !flags.quiet) note('warning: these steps are not from the built-in world; the kinematic teacher reads only the actions, the state and the instruction (never the images): its plans and reasoning name what the motion shows, and objects only as the instruction names them. A VLM teacher (--teacher gemini:MODEL, openai:MODEL) sees the images.');
        }
        yield { record: r.value, line: r.line, file: r.file };
      }
    })();
    const kind = flags.kind as 'reasoning' | 'plan';
    let asked: Teacher = watched.teacher;
    const steps = readSteps(shard, false);
    const out = (async function* () {
      for await (const ep of annotate(
        groupEpisodes(steps),
        {
          kind,
          teacher: asked,
          stride: flags.stride,
          frames: flags.frames,
          cache,
          concurrency: flags.concurrency,
          repair: flags.repair,
          price: parsePrice(flags.price),
          cameras,
          signal,
          onUsage: (u) => progress.update(annotateProgress(u, { inFlight: teacher.local ? undefined : watched.inFlight(), input: input.state() })),
        },
        (u) => (usage = u),
      )) {
        if (flags.kind === 'plan') light.push(ep.map((s) => ({ episode_id: s.episode_id, step: s.step, oracle: s.oracle && { subtask: (s.oracle as { subtask: unknown }).subtask }, plan: s.plan })));
        yield ep;
      }
    })();
    try {
      if (flags.batch) {
        // a first reading of the input collects the requests for the batch jobs; the second one writes the output
        const { teacher: answering } = await runBatch(groupEpisodes(readSteps(shard?.again(), true)), { kind, teacher: watched.teacher, stride: flags.stride, frames: flags.frames, cache, repair: flags.repair, cameras, signal }, {
          dir: cacheDir!,
          pollMs: Number(flags['batch-poll']) * 1000,
          maxRequests: flags['batch-size'],
          retry: { retries: flags.retries, timeoutMs: flags.timeout * 1000 },
          signal,
          onNote: flags.quiet ? undefined : note,
        });
        asked = answering;
      }
      // one RLDS input: its fields keep their dtypes and shapes in an RLDS output (the annotations are inferred)
      const sources = to === 'rlds' && inputs.length === 1 ? rldsInputs(inputs) : [];
      const res = await writeEpisodes(out, { ...output, output: flags.output, to, lerobot: { ...lerobotOptions(flags), fps: inputs.length === 1 && isLeRobotDir(inputs[0]) ? leRobotInfo(inputs[0]).fps : undefined, onWarning: flags.quiet ? undefined : (m) => this.note(`vlakit annotate: ${m}`) }, baseFeatures: sources[0]?.features, split: flags.split, addSplit: flags['add-split'], maxShardBytes: flags['shard-size'] ? parseSize(flags['shard-size']) : undefined });
      await shard?.finish();
      progress.stop();
      const score = flags.kind === 'plan' ? scorePlans(light) : undefined;
      if (flags.json) {
        process.stderr.write(`${JSON.stringify({ outputs: res.outputs, usage, score })}\n`);
      } else if (!flags.quiet) {
        this.note(`vlakit annotate: ${usageLine(usage!)}`);
        if (score) {
          this.note(
            `vlakit annotate: against the oracle (${score.episodes} episodes): boundary precision ${(score.precision * 100).toFixed(1)}%, recall ${(score.recall * 100).toFixed(1)}% (within 2 steps), label accuracy ${(score.labelAccuracy * 100).toFixed(1)}% of ${score.steps} steps`,
          );
        }
        this.note(`vlakit annotate: wrote ${res.episodes} episodes, ${res.steps} steps as ${to} to ${res.outputs.map((o) => (o === '-' ? 'stdout' : o)).join(', ')}`);
      }
      if (read.skipped > 0) this.note(`vlakit annotate: skipped ${read.skipped} corrupt record(s)${read.skippedBytes ? `, ${read.skippedBytes} bytes` : ''}`, flags.quiet || flags.json);
      if ((usage && usage.errors > 0) || read.skipped > 0) process.exitCode = EXIT.partial;
    } catch (err) {
      if (!(err instanceof TeacherFatalError)) throw err;
      const kept = cache ? `; every answer received so far is in the cache (${cache.file}): the same command resumes without paying for them again` : ' (--no-cache: nothing was kept)';
      if (usage && !flags.quiet && !flags.json) this.note(`vlakit annotate: ${usageLine(usage)}`);
      throw new TeacherFatalError(`the job stopped: ${err.detail}${kept}; no output was written`, err.context.file);
    } finally {
      progress.stop();
      await cache?.close();
      await teacher.close?.();
    }
  }
}
