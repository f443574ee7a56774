import { Flags } from '@oclif/core';
import { VlakitCommand, parseSize, sharedFlags } from '../../lib/cli/base.js';
import { logEveryFlag, startProgress } from '../../lib/cli/progress.js';
import { RolloutProgress } from '../../lib/cli/progress-rollout.js';
import { VlakitError } from '../../lib/errors.js';
import {
  type EpisodeOutcome,
  type EpisodeResult,
  type Env,
  FAMILIES,
  SafetyFilter,
  formatReport,
  parseFamilies,
  report,
  runEpisodes,
} from '../../lib/env/index.js';
import path from 'node:path';
import { type EpisodeAnalysis, type RgbFrame, episodeAnalysis, findFfmpeg, formatFailures, videoName, writeEpisodeVideo } from '../../lib/diag/index.js';
import { builtinOf } from '../../lib/env/index.js';
import { ShardJob, checkDistinctOutputs, checkOutputFormat, claimOutput, inShard, outputFormatFor, type StepRecord, writeEpisodes, writeOutputDir } from '../../lib/io/index.js';
import { policyFlags, policyOptions, policyRules } from '../../lib/cli/policy-flags.js';
import { openpiActionFlags, protocolFlags, protocolRules } from '../../lib/cli/protocol-flags.js';
import { openRollout } from '../../lib/cli/rollout-setup.js';
import { type FlagRule, allOnlyWith, decimal, distractorsFlag, int, onlyWith, lerobotFlags, lerobotOptions, shardFlag, size } from '../../lib/cli/flags.js';
import type { EpisodeSummary } from '../../lib/policy/index.js';

export default class Rollout extends VlakitCommand {
  static summary = 'Run a policy (the scripted expert, a checkpoint, an export or a policy server) in an environment and record every step.';
  static description = `Drives an env (the built-in MuJoCo tabletop world, a child process speaking JSON lines, or a websocket robot) with a policy through the safety filter, writes every executed step as step records, and prints the success rate per task family with a 95% Wilson interval. Learned policies (a train-sft/train-rl checkpoint or a vlakit export directory) run closed loop, direct or as the VLM2VLA hierarchy with a verifier; their records carry the model's text, subtasks, verifier decisions, re-samples and per-step time in the model, the env and vlakit, and the report adds partial credit, cycle latency and vlakit's own share of it. Task families of builtin:tabletop: ${FAMILIES.join(', ')}.`;
  static examples = [
    { description: 'Demonstrations from the scripted expert, as an RLDS dataset', command: '<%= config.bin %> rollout --policy scripted --env builtin:tabletop --tasks pick,place --episodes 50 --seed 0 -o demos/tabletop/1.0.0' },
    { description: 'The long-horizon family with a wrist camera, as JSON Lines', command: '<%= config.bin %> rollout --policy scripted --tasks place_then_lift --episodes 5 --wrist -o demos.jsonl' },
    { description: 'A simulator in another process', command: '<%= config.bin %> rollout --policy scripted --env exec:"python my_sim.py" --episodes 1' },
    { description: 'A trained policy as the VLM2VLA hierarchy, verified by the world\'s oracle', command: '<%= config.bin %> rollout --policy runs/sft-onnx --mode hierarchical --verifier oracle --tasks pick --episodes 20 -o eval.jsonl' },
    { description: 'ReFineVLA-style: reasoning and a chunk each cycle, the first 4 actions executed', command: '<%= config.bin %> rollout --policy runs/refinevla --mode direct --prompt refinevla --execute 4 --episodes 20' },
    { description: 'A failing policy, watched: one video per episode with the model\'s text and the verifier\'s decisions drawn on the frames', command: '<%= config.bin %> rollout --policy runs/sft-onnx --mode hierarchical --verifier oracle --tasks pick --episodes 4 --video videos -o eval.jsonl' },
    { description: 'A policy served elsewhere (vlakit rollout serve)', command: '<%= config.bin %> rollout --policy ws://gpu-box:8765 --episodes 20' },
    { description: 'A policy served by openpi (LIBERO-style 7-D actions, gripper -1 open / 1 closed)', command: '<%= config.bin %> rollout --policy ws://gpu-box:8000 --protocol openpi --obs-map libero --action-dims 0,1,2,6 --gripper-range -1,1 --episodes 20' },
  ];
  static flags = {
    policy: Flags.string({ description: 'scripted (the built-in expert), a checkpoint (vlakit\'s or a Hugging Face one, see --adapter), a head run of train-sft --action-head on a Hugging Face checkpoint (its base from its vlakit.json) or export directory, or ws://host:port (vlakit rollout serve, or an openpi server with --protocol openpi)', default: 'scripted', helpValue: 'scripted|DIR|ws://...' }),
    ...policyFlags,
    ...protocolFlags,
    ...openpiActionFlags,
    timing: Flags.boolean({ description: 'record per-step time in the model, the env and vlakit (learned policies; on by default)', allowNo: true }),
    env: Flags.string({ description: 'builtin:tabletop, exec:COMMAND or ws://host:port', default: 'builtin:tabletop' }),
    tasks: Flags.string({ description: `task families, comma-separated, or all (${FAMILIES.join(', ')})`, default: 'all' }),
    episodes: int({ description: 'number of episodes (families take turns)', default: 10, min: 1, max: 1_000_000, warnAbove: 10_000 }),
    seed: int({ description: 'seed of the run: the same seed gives the same episodes', default: 0, min: 0, max: 2 ** 32 - 1 }),
    shard: shardFlag({ description: 'run only shard I of N of the episodes: those whose index is I modulo N (same seeds as the whole run); writes OUTPUT.shard.json beside -o for vlakit merge (docs/SCALE.md)' }),
    workers: int({ description: 'run the episodes in this many worker processes, each with its own env and policy (same records, in the same order, as one)', default: 1, min: 1, max: 256 }),
    output: sharedFlags.output,
    overwrite: sharedFlags.overwrite,
    to: Flags.string({ description: 'output format (default: rlds for a directory, jsonl for a .jsonl file or stdout)', options: ['rlds', 'jsonl', 'lerobot'] }),
    ...lerobotFlags,
    name: Flags.string({ description: 'dataset name for RLDS output (default: from the directory name)' }),
    'shard-size': size({ description: 'RLDS shard size limit, e.g. 256MB', min: 1024 }),
    width: int({ description: 'camera image width, px', default: 128, min: 16, max: 1024 }),
    height: int({ description: 'camera image height, px', default: 128, min: 16, max: 1024 }),
    wrist: Flags.boolean({ description: 'add a wrist camera (observation.wrist_image)' }),
    masks: Flags.boolean({ description: 'add object pixel masks of the main camera to the oracle (attention scores of attn-viz)' }),
    hz: int({ description: 'control rate, Hz', default: 5, min: 1, max: 100 }),
    distractors: distractorsFlag(),
    'max-steps': int({ description: 'cut episodes after this many steps (default by family)', min: 1, max: 100_000 }),
    'step-size': decimal({ description: 'scripted expert: largest move per step, meters', default: '0.015', min: 0, minExclusive: true, max: 1 }),
    noise: decimal({ description: 'scripted expert: Gaussian noise on each move, meters (std)', default: '0', min: 0, max: 1 }),
    dart: decimal({ description: 'scripted expert: DART: Gaussian noise on each executed move, meters (std), while the expert\'s own action is recorded', default: '0', min: 0, max: 1 }),
    planner: Flags.string({ description: 'hierarchical mode: who writes the subtask list: model (the policy itself), oracle (the built-in world\'s own list) or DIR (another model trained on subtask lists, e.g. the text policy for a policy with an action head)', helpValue: 'model|oracle|DIR' }),
    'head-noise': decimal({ description: 'learned policies with an action head: the scale of the sampler\'s starting noise (default 1, the trained prior; 0: every chunk starts from the prior\'s mean, one deterministic chunk per observation, as the mode of a unimodal policy)', min: 0, max: 10 }),
    'head-samples': int({ description: 'learned policies with an action head: chunks sampled per cycle from independent noise, executed as their element-wise median (steadies positions the samples scatter around; the gripper takes the majority\'s side). Default 1', min: 1, max: 64 }),
    dagger: Flags.boolean({ description: 'DAgger data: a learned --policy drives while the scripted expert\'s action for every visited state is recorded as the step\'s action (the executed one in `policy.dagger`); builtin:tabletop only' }),
    'dagger-beta': decimal({ description: 'with --dagger: probability per step of executing the expert\'s action instead of the policy\'s', default: '0', min: 0, max: 1 }),
    safety: Flags.boolean({ description: 'the safety filter (bounds, step limit, e-stop on bad actions)', default: true, allowNo: true }),
    'max-translation': decimal({ description: 'safety: largest translation per step, meters', default: '0.03', min: 0, minExclusive: true, max: 1 }),
    'contact-guard': Flags.boolean({ description: 'safety: no downward/forward motion while in contact', default: true, allowNo: true }),
    video: Flags.string({ description: 'write one video per episode into this directory: camera frames with the instruction, the model\'s text, the verifier\'s decisions and the end', helpValue: 'DIR' }),
    'video-format': Flags.string({ description: 'mp4 (H.264, needs ffmpeg: @ffmpeg-installer/linux-x64, the PATH or VLAKIT_FFMPEG) or gif; auto: mp4 when ffmpeg is found', options: ['auto', 'mp4', 'gif'], default: 'auto' }),
    'video-size': int({ description: 'side of the camera image in the video, px (the built-in world renders it at this size; other envs\' images are scaled)', default: 384, min: 64, max: 1024 }),
    quiet: sharedFlags.quiet,
    'log-every': logEveryFlag,
    json: Flags.boolean({ description: 'print the report as JSON on stderr (with each episode\'s failure analysis)' }),
  };

  static flagRules: FlagRule[] = [
    ...allOnlyWith(['noise', 'dart'], '--policy scripted', (i) => i.flags.policy === 'scripted'),
    onlyWith('step-size', '--policy scripted or --dagger (the expert\'s largest move)', (i) => i.flags.policy === 'scripted' || i.flags.dagger === true),
    onlyWith('dagger', 'a learned --policy in builtin:tabletop (the scripted expert labels its states)', (i) => i.flags.policy !== 'scripted' && !/^wss?:\/\//.test(String(i.flags.policy)) && i.flags.env === 'builtin:tabletop'),
    onlyWith('dagger-beta', '--dagger', (i) => i.flags.dagger === true),
    onlyWith('planner', '--mode hierarchical', (i) => i.flags.mode === 'hierarchical'),
    ...allOnlyWith([...Object.keys(policyFlags), 'head-noise', 'head-samples', 'planner'], 'a learned --policy (a checkpoint or export directory)', (i) => i.flags.policy !== 'scripted' && !/^wss?:\/\//.test(String(i.flags.policy))),
    ...policyRules,
    // --api-key is left out: VLAKIT_POLICY_API_KEY in the environment must not break other runs
    ...allOnlyWith(['protocol'], '--policy ws://host:port (a policy server)', (i) => /^wss?:\/\//.test(String(i.flags.policy))),
    ...protocolRules,
    ...allOnlyWith(['width', 'height', 'wrist', 'masks', 'hz', 'distractors', 'max-steps'], '--env builtin:tabletop (another env makes its own scenes)', (i) => i.flags.env === 'builtin:tabletop'),
    onlyWith('name', 'RLDS output', (i) => i.flags.to !== 'jsonl'),
    ...allOnlyWith(['max-translation', 'contact-guard'], 'the safety filter (not with --no-safety)', (i) => i.flags.safety === true),
    ...allOnlyWith(['video-format', 'video-size'], '--video', (i) => i.flags.video !== undefined),
  ];

  async run(): Promise<void> {
    const { flags } = await this.parse(Rollout);
    const families = parseFamilies(flags.tasks);
    checkOutputFormat(flags.to, flags.output);
    const to = (flags.to as 'rlds' | 'jsonl' | 'lerobot' | undefined) ?? (outputFormatFor(flags.output) === 'rlds' ? 'rlds' : 'jsonl');
    const output = this.outputOptions(flags, [flags.policy === 'scripted' ? undefined : flags.policy, flags.adapter]);
    // refused before the policy is loaded and the episodes run
    if (flags.output && flags.output !== '-') claimOutput(flags.output, to === 'rlds' ? 'dir' : 'file', output);
    let video: { dir: string; format: 'mp4' | 'gif'; ffmpeg?: string; size: number } | undefined;
    if (flags.video !== undefined) {
      checkDistinctOutputs([['-o', flags.output], ['--video', flags.video]]);
      if (flags['video-size'] % 2) throw new VlakitError('E_USAGE', `--video-size must be even (H.264 frames), got ${flags['video-size']}`);
      claimOutput(flags.video, 'dir', { ...output, flag: '--video' });
      const ffmpeg = flags['video-format'] === 'gif' ? undefined : findFfmpeg();
      if (flags['video-format'] === 'mp4' && !ffmpeg) throw new VlakitError('E_USAGE', '--video-format mp4 needs ffmpeg: install @ffmpeg-installer/linux-x64 (npm), put ffmpeg on the PATH or set VLAKIT_FFMPEG; or use --video-format gif');
      video = { dir: flags.video, format: ffmpeg ? 'mp4' : 'gif', ffmpeg, size: flags['video-size'] };
    }
    const shard = ShardJob.start('rollout', flags.shard, flags.output, output);
    const workers = flags.workers;
    // with workers, each process opens its own; this one only reads and writes
    const parts = workers > 1 ? undefined : await openRollout(flags);
    const learned = flags.policy !== 'scripted';
    if (parts?.runner) {
      const r = parts.runner;
      this.note(`vlakit rollout: ${flags.policy}${flags.adapter ? ` + ${flags.adapter}` : ''}${r.info.model && r.info.model !== 'vlakit' ? ` (${r.info.model})` : ''} on ${r.info.engine} (${r.info.device}), ${flags.mode} mode${flags.mode === 'hierarchical' ? `, verifier ${flags.verifier}` : ''}`, flags.quiet || flags.json);
    }
    const env: Env | undefined = parts?.env;

    const progress = await startProgress('rollout', !flags.quiet && !flags.json, { logEvery: flags['log-every'] });
    const shown = new RolloutProgress(progress, flags.episodes);
    const outcomes: EpisodeOutcome[] = [];
    const summaries: EpisodeSummary[] = [];
    const analyses: EpisodeAnalysis[] = [];
    // the built-in world renders the video frames at the video's size; other envs' camera images are scaled up
    const capture = video && env && builtinOf(env) ? (e: Env): RgbFrame | undefined => builtinOf(e)?.snapshot(video.size, video.size) : undefined;
    let videoTmp: string | undefined;
    const { summarizeEpisode, policyReport, formatPolicyReport } = await import('../../lib/policy/index.js');
    const signal = this.abort.signal;
    const only = flags.shard ? (i: number) => inShard(i, flags.shard!) : undefined;
    const recordTiming = flags.timing ?? learned;
    const pool: { counts?: Record<string, number> } = {};
    const { runInWorkers } = await import('../../lib/policy/workers.js');
    const run = (): AsyncIterable<EpisodeResult> => {
      if (parts) return runEpisodes({ env: parts.env, policy: shown.watch(parts.policy), families, episodes: flags.episodes, seed: flags.seed, signal, capture, recordTiming, only, onStep: () => shown.step() });
      const indices = Array.from({ length: flags.episodes }, (_, i) => i).filter((i) => !only || only(i));
      const setup = { flags, families, episodes: flags.episodes, seed: flags.seed, recordTiming, videoSize: video?.size };
      return runInWorkers({ script: new URL('../../lib/cli/rollout-worker.js', import.meta.url), workers, setup, indices, signal, onStep: () => shown.step() }, pool);
    };
    const ids: (string | number)[] = [];
    const episodes = (async function* (): AsyncGenerator<StepRecord[]> {
      for await (const ep of run()) {
        ids.push(ep.records[0].episode_id);
        outcomes.push({ family: ep.family, success: ep.success, end: ep.end, steps: ep.records.length - 1 });
        analyses.push(episodeAnalysis(ep.records));
        if (learned) summaries.push(summarizeEpisode(ep.records, ep.timings));
        if (video && videoTmp) {
          const frames = ep.captures as (RgbFrame | undefined)[] | undefined;
          await writeEpisodeVideo(ep.records, path.join(videoTmp, videoName(ep.records, ep.index, video.format)), { format: video.format, ffmpeg: video.ffmpeg, fps: flags.hz, size: video.size, frames, signal });
        }
        shown.episode(ep);
        yield ep.records;
      }
    })();
    try {
      const write = () => writeEpisodes(episodes, { ...output, output: flags.output, to, lerobot: { ...lerobotOptions(flags), fps: flags.hz, onWarning: (m) => this.note(`vlakit rollout: ${m}`, flags.quiet || flags.json) }, name: flags.name, maxShardBytes: flags['shard-size'] ? parseSize(flags['shard-size']) : undefined });
      // the videos' directory, like every output, appears whole or not at all
      const res = video
        ? await writeOutputDir(video.dir, async (tmp) => {
            videoTmp = tmp;
            return write();
          }, { ...output, flag: '--video' })
        : await write();
      await shard?.finish({ episodes: flags.episodes, ids });
      progress.stop();
      const rows = report(outcomes);
      const policyRows = learned ? policyReport(summaries) : undefined;
      const counts = env instanceof SafetyFilter ? env.counts : (pool.counts as SafetyFilter['counts'] | undefined);
      if (flags.json) {
        process.stderr.write(`${JSON.stringify({ outputs: res.outputs, episodes: res.episodes, steps: res.steps, tasks: policyRows ?? rows, safety: counts, failures: analyses, ...(video ? { videos: { dir: video.dir, format: video.format } } : {}) })}\n`);
      } else if (!flags.quiet) {
        this.note(policyRows ? formatPolicyReport(policyRows) : formatReport(rows));
        if (counts) this.note(`safety: ${counts.estops} e-stops, ${counts.stepClips} step clips, ${counts.boundClips} bound clips, ${counts.contactStops} contact stops in ${counts.steps} steps`);
        const failures = formatFailures(analyses);
        if (failures) this.note(failures);
        if (video) this.note(`vlakit rollout: wrote ${res.episodes} ${video.format} videos to ${video.dir}`);
        this.note(`vlakit rollout: wrote ${res.episodes} episodes, ${res.steps} steps as ${to} to ${res.outputs.map((o) => (o === '-' ? 'stdout' : o)).join(', ')}`);
      }
    } finally {
      progress.stop();
      await parts?.close();
    }
  }
}
