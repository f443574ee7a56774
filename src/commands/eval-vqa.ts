import path from 'node:path';
import { Flags } from '@oclif/core';
import { VlakitCommand, sharedFlags } from '../lib/cli/base.js';
import { type FlagRule, allOnlyWith, distractorsFlag, exclusive, int, parseRange, shardFlag } from '../lib/cli/flags.js';
import { logEveryFlag, startProgress } from '../lib/cli/progress.js';
import { vqaProgress } from '../lib/cli/progress-jobs.js';
import { adapterFlag, adaptersFor } from '../lib/cli/adapter-flag.js';
import { EXIT, VlakitError } from '../lib/errors.js';

export default class EvalVqa extends VlakitCommand {
  static summary = 'VQA benchmarks for VLMs and VLAs, and the forgetting report; or generate scene questions from the built-in world.';
  static description =
    'Scores models (vlakit checkpoints, Hugging Face checkpoints with their processor\'s prompt format and an optional --adapter, exports on onnxruntime, or any OpenAI-compatible endpoint) on VQA datasets: the VQAv2 layout (VQA accuracy over 10 human answers), generic JSON Lines (VQA accuracy, exact match, ANLS or multiple choice), and MMBench-style TSV with base64 images (multiple choice; --circular asks every rotation of the options). With several models, a table of scores per benchmark and each model\'s retention relative to the first (VLM2VLA\'s measure of forgetting). With --generate N, writes scene questions from the tabletop world with exact answers from its oracle (as VQA JSON Lines, or as training examples to pre-train a base VLM).';
  static examples = [
    { description: 'Scene questions with exact answers from the world', command: '<%= config.bin %> eval-vqa --generate 500 --seed 0 -o sceneqa.jsonl' },
    { description: 'The same as training examples, to pre-train a small base VLM', command: '<%= config.bin %> eval-vqa --generate 5000 --seed 1 --as examples -o sceneqa_train.jsonl' },
    { description: 'Does the VLA keep its VLM skills? (retention relative to the base)', command: '<%= config.bin %> eval-vqa --models base=runs/vlm,vla=runs/sft-onnx --data sceneqa.jsonl --data ~/data/vqav2_val --log-samples samples.jsonl' },
    { description: 'Gemma-3 behind vLLM, MMBench with circular evaluation', command: '<%= config.bin %> eval-vqa --endpoint http://localhost:8000 --model google/gemma-3-4b-it --data MMBench_DEV_EN.tsv --circular --concurrency 16' },
  ];
  static flags = {
    generate: int({ description: 'write N scene questions from the built-in world instead of evaluating', min: 1, max: 10_000_000, warnAbove: 100_000, helpValue: 'N' }),
    seed: int({ description: '--generate: seed of the scenes', default: 0, min: 0, max: 2 ** 32 - 1 }),
    as: Flags.string({ description: '--generate: vqa (JSON Lines for eval-vqa) or examples (training examples for train-sft)', options: ['vqa', 'examples'], default: 'vqa' }),
    width: int({ description: '--generate: image width, px', default: 128, min: 16, max: 1024 }),
    height: int({ description: '--generate: image height, px', default: 128, min: 16, max: 1024 }),
    types: Flags.string({ description: `--generate: question types, comma-separated (${'color,count,exists,left_right,left_of,on,holding'} by default; where and gripper ask for positions in centimeters: grounding data for a base VLM)`, helpValue: 'LIST' }),
    'per-frame': int({ description: '--generate: questions per frame', default: 3, min: 1, max: 100 }),
    tasks: Flags.string({ description: '--generate: the task families whose scenes are asked about, comma-separated (as rollout --tasks), or all', default: 'all' }),
    distractors: distractorsFlag('--generate: distractor objects per scene'),
    'ground-all': Flags.boolean({ description: '--generate --ground: after the objects the question names, every other visible object too (for vision_config.keypoint_names)' }),
    ground: Flags.boolean({ description: '--generate --as examples: each example records where the objects its question names are in the image (`ground`, from the world\'s pixel masks), for train-sft --ground-weight' }),
    output: Flags.string({ char: 'o', description: '--generate: output file ("-" or absent: stdout)', helpValue: 'PATH' }),
    overwrite: sharedFlags.overwrite,
    models: Flags.string({ description: 'models to compare, the first one the reference: NAME=DIR, NAME=openai:MODEL (its server: --endpoint, or NAME=openai:MODEL@URL), NAME=gemini:MODEL or NAME=exec:CMD, comma-separated', helpValue: 'base=A,vla=B' }),
    model: Flags.string({ description: 'one model: a checkpoint or export directory, or (with --endpoint) the served model name', helpValue: 'DIR|NAME' }),
    endpoint: Flags.string({ description: 'an OpenAI-compatible server (vLLM, Ollama, ...) for openai:MODEL models without their own @URL (never used for gemini: models)', helpValue: 'URL' }),
    data: Flags.string({ description: 'a VQAv2 directory, a .jsonl or a .tsv file (repeatable)', multiple: true }),
    circular: Flags.boolean({ description: 'multiple choice: circular evaluation (right under every rotation of the options)' }),
    limit: int({ description: 'at most N questions per dataset', min: 1, max: 1_000_000_000 }),
    metric: Flags.string({ description: 'score every JSON Lines dataset with this metric instead of its own', options: ['vqa', 'exact', 'anls', 'mc', 'position'] }),
    'log-samples': Flags.string({ description: 'write every question, answer, prediction and score as JSON Lines', helpValue: 'FILE' }),
    concurrency: int({ description: 'parallel requests to an endpoint', default: 8, min: 1, max: 256 }),
    cache: Flags.string({ description: 'endpoint answer cache directory (default: the teacher cache)', helpValue: 'DIR' }),
    'no-cache': Flags.boolean({ description: 'do not read or write the endpoint answer cache' }),
    'max-new-tokens': int({ description: 'longest answer of a vlakit model', default: 24, min: 1, max: 8192 }),
    adapter: adapterFlag('--models'),
    device: Flags.string({ description: 'onnxruntime execution provider for exports', options: ['cpu', 'cuda'], default: 'cpu' }),
    backend: Flags.string({ description: 'tfjs backend for checkpoints', options: ['tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'] }),
    quiet: Flags.boolean({ char: 'q', description: 'no progress and no report on stderr' }),
    'log-every': logEveryFlag,
    json: Flags.boolean({ description: 'print the report as JSON on stderr' }),
    shard: shardFlag({ description: 'evaluate part I of N (counting from 0) of the model-question pairs, in the unsharded order; needs --log-samples FILE, which vlakit merge joins into the unsharded samples' }),
  };

  static flagRules: FlagRule[] = [
    exclusive('model', 'models', 'one model, or several to compare'),
    exclusive('generate', 'data', '--generate writes questions, --data evaluates on them'),
    exclusive('cache', 'no-cache', '--no-cache reads and writes no cache'),
    ...allOnlyWith(['seed', 'as', 'width', 'height', 'per-frame', 'types', 'tasks', 'distractors', 'output', 'ground', 'ground-all'], '--generate', (i) => i.given.has('generate')),
    ...allOnlyWith(['models', 'model', 'endpoint', 'circular', 'limit', 'metric', 'log-samples', 'concurrency', 'cache', 'no-cache', 'max-new-tokens', 'device', 'backend', 'adapter', 'shard'], 'an evaluation (not with --generate)', (i) => !i.given.has('generate')),
  ];

  async run(): Promise<void> {
    const { flags } = await this.parse(EvalVqa);
    if (flags.generate) return this.generateScenes(flags.generate, flags);
    const ev = await import('../lib/eval/index.js');
    const { claimOutput, writeJsonl } = await import('../lib/io/index.js');
    if (!flags.data?.length) throw new VlakitError('E_USAGE', 'give datasets with --data (a VQAv2 directory, .jsonl or .tsv), or --generate N');
    const specs: [string, string][] = [];
    if (flags.models) {
      for (const part of flags.models.split(',')) {
        const m = /^([^=]+)=(.+)$/.exec(part.trim());
        if (!m) throw new VlakitError('E_USAGE', `invalid --models entry "${part}"; expected NAME=DIR or NAME=openai:MODEL`);
        specs.push([m[1], m[2]]);
      }
    } else if (flags.model) specs.push([flags.endpoint ? flags.model : path.basename(path.resolve(flags.model)), flags.endpoint ? `openai:${flags.model}` : flags.model]);
    else throw new VlakitError('E_USAGE', 'give the models with --models NAME=DIR,... or --model DIR (or --endpoint URL --model NAME)');
    if (new Set(specs.map((s) => s[0])).size !== specs.length) throw new VlakitError('E_USAGE', 'model names in --models must differ');
    const adapters = adaptersFor(flags.adapter, specs.map((s) => s[0]), Boolean(flags.models));
    if (flags.endpoint && adapters.size) throw new VlakitError('E_USAGE', '--adapter goes with a model directory, not an endpoint model');
    const cacheDir = flags['no-cache'] ? undefined : (flags.cache ?? (await import('../lib/teacher/index.js')).defaultCacheDir());
    const samplesOutput = this.outputOptions(flags, [...flags.data, ...specs.map((s) => s[1]), ...adapters.values(), cacheDir], '--log-samples');
    // refused now, not after the evaluation
    if (flags['log-samples'] && flags['log-samples'] !== '-') claimOutput(flags['log-samples'], 'file', samplesOutput);

    const items = flags.data.flatMap((d) => {
      let xs = ev.readVqaDataset(d, { circular: flags.circular });
      if (flags.metric) xs = xs.map((x) => (x.choices ? x : { ...x, metric: flags.metric as 'vqa' }));
      if (flags.limit) {
        // a limit keeps whole circular groups
        const groups = [...new Set(xs.map((x) => x.circular?.group ?? x.id))].slice(0, flags.limit);
        const keep = new Set(groups);
        xs = xs.filter((x) => keep.has(x.circular?.group ?? x.id));
      }
      return xs;
    });
    const benchmarks = [...new Set(items.map((i) => i.benchmark))];
    // --shard: the unit is one model's answers to one question (every rotation of a circular one), numbered in the
    // order of the unsharded run's samples (model by model, question by question): shard I keeps those I mod N
    const { ShardJob, inShard, sampleUnitId } = await import('../lib/io/index.js');
    const questionOf = (x: (typeof items)[number]) => sampleUnitId('', x.benchmark, x.circular?.group ?? x.id);
    const named = new Map(items.map((x) => [questionOf(x), [x.benchmark, x.circular?.group ?? x.id] as const]));
    const questions = [...named.keys()];
    const ordinal = new Map(questions.map((q, i) => [q, i]));
    const shard = flags.shard;
    if (shard && (!flags['log-samples'] || flags['log-samples'] === '-')) throw new VlakitError('E_USAGE', '--shard needs --log-samples FILE: the samples are the part that vlakit merge joins');
    const job = ShardJob.start('eval-vqa', shard, flags['log-samples'], samplesOutput);
    const itemsOf = (m: number) => (shard ? items.filter((x) => inShard(m * questions.length + ordinal.get(questionOf(x))!, shard)) : items);
    const total = specs.reduce((a, _, m) => a + itemsOf(m).length, 0);
    const progress = await startProgress('eval-vqa', !flags.quiet && !flags.json, { logEvery: flags['log-every'], initial: { unit: 'questions', total } });
    const onModel = vqaProgress(progress, total);
    const all: import('../lib/eval/index.js').Sample[] = [];
    const results: { model: string; source: string; scores: import('../lib/eval/index.js').BenchmarkScore[] }[] = [];
    let cache: import('../lib/teacher/index.js').AnswerCache | undefined;
    try {
      for (const [m, [name, spec]] of specs.entries()) {
        const model = await this.openVqaModel(name, spec, { ...flags, adapter: adapters.get(name) }, async () => {
          if (flags['no-cache']) return undefined;
          const { AnswerCache, defaultCacheDir } = await import('../lib/teacher/index.js');
          cache ??= await AnswerCache.open(flags.cache ?? defaultCacheDir());
          return cache;
        });
        try {
          const samples = await ev.evaluateModel(model, itemsOf(m), { signal: this.abort.signal, onSample: onModel(name) });
          all.push(...samples);
          results.push({ model: name, source: model.source, scores: ev.summarize(samples) });
        } finally {
          await model.close();
        }
      }
      progress.stop();
      if (flags['log-samples']) await writeJsonl((async function* () { yield* all; })(), flags['log-samples'], samplesOutput);
      if (job) {
        const ids = specs.flatMap(([name], m) => questions.flatMap((q, u) => (inShard(m * questions.length + u, job.shard) ? [sampleUnitId(name, ...named.get(q)!)] : [])));
        await job.finish({ episodes: specs.length * questions.length, ids });
      }
      const report = ev.forgettingReport(results);
      if (results.some((r) => r.scores.some((s) => s.unanswered))) process.exitCode = EXIT.partial;
      if (flags.json) process.stderr.write(`${JSON.stringify({ benchmarks, models: results, report })}\n`);
      else if (!flags.quiet) {
        this.note(ev.formatForgetting(report));
        for (const r of results) for (const s of r.scores) if (s.vanilla !== undefined) this.note(`${r.model} ${s.benchmark}: circular ${(s.score * 100).toFixed(1)}%, over all rotations ${(s.vanilla * 100).toFixed(1)}%`);
        for (const r of results) for (const s of r.scores) if (s.unanswered) this.note(`vlakit eval-vqa: ${r.model} ${s.benchmark}: ${Object.values(s.unanswered).reduce((a, b) => a + b, 0)} questions without a usable answer, scored 0 (${Object.entries(s.unanswered).map(([k, v]) => `${k} ${v}`).join(', ')})`);
        this.note(`vlakit eval-vqa: ${shard ? `shard ${shard.index}/${shard.count}: ${total} of ` : ''}${items.length} questions x ${specs.length} models${flags['log-samples'] ? `; samples in ${flags['log-samples']}` : ''}`);
      }
    } finally {
      progress.stop();
      await cache?.close();
    }
  }

  private async openVqaModel(name: string, spec: string, flags: { endpoint?: string; quiet: boolean; concurrency: number; device: string; backend?: string; 'max-new-tokens': number; adapter?: string }, cache: () => Promise<import('../lib/teacher/index.js').AnswerCache | undefined>): Promise<import('../lib/eval/index.js').VqaModel> {
    const ev = await import('../lib/eval/index.js');
    if (/^(openai|gemini|exec):/.test(spec)) {
      if (flags.adapter) throw new VlakitError('E_USAGE', `--adapter for ${name}: an endpoint model (${spec}) takes no adapter`);
      if (spec.startsWith('openai:') && !/@https?:\/\//.test(spec) && !flags.endpoint) throw new VlakitError('E_USAGE', `model ${name} (${spec}) needs --endpoint URL (or ${name}=${spec}@URL), its OpenAI-compatible server`);
      const { makeTeacher } = await import('../lib/teacher/index.js');
      const url = ev.endpointUrlFor(spec, flags.endpoint);
      return new ev.EndpointModel(name, makeTeacher(spec, { url, temperature: 0, onWarning: flags.quiet ? undefined : (m) => this.note(`vlakit eval-vqa: ${m}`) }), flags.concurrency, await cache());
    }
    const { openModel } = await import('../lib/infer/index.js');
    return new ev.RunnerModel(name, await openModel(spec, { device: flags.device as 'cpu', backend: flags.backend, adapter: flags.adapter }), flags['max-new-tokens']);
  }

  private async generateScenes(n: number, flags: { seed: number; as: string; width: number; height: number; 'per-frame': number; types?: string; tasks: string; distractors: string; ground: boolean; 'ground-all': boolean; output?: string; overwrite: boolean; quiet: boolean }): Promise<void> {
    if (flags['ground-all'] && !flags.ground) throw new VlakitError('E_USAGE', '--ground-all goes with --ground');
    if (flags.ground && flags.as !== 'examples') throw new VlakitError('E_USAGE', '--ground records grounding targets in training examples: use it with --as examples');
    const { generateSceneQa, sceneQaExample, SCENE_QA_TYPES } = await import('../lib/eval/index.js');
    const askTypes = flags.types?.split(',').map((t) => t.trim());
    for (const t of askTypes ?? []) {
      if (!(SCENE_QA_TYPES as readonly string[]).includes(t)) throw new VlakitError('E_USAGE', `--types: unknown question type "${t}"; expected some of ${SCENE_QA_TYPES.join(', ')}`);
    }
    const { parseFamilies } = await import('../lib/env/index.js');
    const families = parseFamilies(flags.tasks);
    const distractors = parseRange(flags.distractors);
    const { writeJsonl } = await import('../lib/io/index.js');
    const progress = await startProgress('eval-vqa --generate', !flags.quiet);
    let made = 0;
    const types: Record<string, number> = {};
    const signal = this.abort.signal;
    const items = (async function* () {
      for await (const q of generateSceneQa({ count: n, seed: flags.seed, width: flags.width, height: flags.height, perFrame: flags['per-frame'], types: askTypes as (typeof SCENE_QA_TYPES)[number][] | undefined, families, distractors, ground: flags['ground-all'] ? 'all' : flags.ground, signal })) {
        types[q.type] = (types[q.type] ?? 0) + 1;
        progress.update({ records: ++made, unit: 'questions' });
        yield flags.as === 'examples' ? sceneQaExample(q) : q;
      }
    })();
    try {
      await writeJsonl(items, flags.output, this.outputOptions(flags));
    } finally {
      progress.stop();
    }
    this.note(`vlakit eval-vqa: ${made} scene questions (${Object.entries(types).map(([k, v]) => `${k} ${v}`).join(', ')}) as ${flags.as === 'examples' ? 'training examples' : 'VQA JSON Lines'}${flags.output && flags.output !== '-' ? ` to ${flags.output}` : ''}`, flags.quiet);
  }
}

