/**
 * The env and policy of a rollout, built from its parsed flags: one definition for the command itself and for
 * each of its --workers processes (src/lib/cli/rollout-worker.ts), which get the same flags as plain JSON.
 */
import { VlakitError } from '../errors.js';
import { type Env, type Policy, DaggerPolicy, DartPolicy, SafetyFilter, ScriptedPolicy, TabletopEnv, openEnv } from '../env/index.js';
import { type ActionLayout, executedLayout } from '../actions/index.js';
import { parseNumber } from './base.js';
import { parseRange } from './flags.js';
import { type PolicyFlagValues, policyOptions } from './policy-flags.js';
import { actionAdapterOf, obsMapOf } from './protocol-flags.js';
import type { ModelPolicyOptions } from '../policy/index.js';
import { HEAD_MAX_RETRIES, type Planner } from '../policy/hierarchy.js';

/**
 * The planner named by --planner: oracle (the env's own subtask list) or a model directory that writes subtask lists
 * (sampled as the policy's subtask stage).
 */
async function makePlanner(spec: string, po: ModelPolicyOptions, engine: { device?: string; backend?: string }): Promise<Planner> {
  const { ModelPlanner, OraclePlanner } = await import('../policy/hierarchy.js');
  if (spec === 'oracle') return new OraclePlanner();
  const { existsSync } = await import('node:fs');
  if (!existsSync(spec)) throw new VlakitError('E_USAGE', `--planner: expected model, oracle or a model directory, got "${spec}" (no such directory)`);
  const { openModel } = await import('../infer/index.js');
  // on the policy's device and backend
  return new ModelPlanner(spec, await openModel(spec, { device: engine.device as 'cpu' | undefined, backend: engine.backend }), po.sampling.subtasks, po.resample ?? 3, true);
}

/** rollout's parsed flags (plain JSON: they travel to worker processes). */
export type RolloutFlags = PolicyFlagValues & {
  policy: string;
  protocol?: string;
  'api-key'?: string;
  'obs-map': string;
  'action-dims'?: string;
  'action-absolute'?: boolean;
  'action-scale'?: string;
  'gripper-range'?: string;
  env: string;
  width: number;
  height: number;
  wrist: boolean;
  masks: boolean;
  hz: number;
  distractors: string;
  'max-steps'?: number;
  'step-size': string;
  noise: string;
  dart: string;
  dagger: boolean;
  'dagger-beta': string;
  safety: boolean;
  'max-translation': string;
  'contact-guard': boolean;
  'head-noise'?: string;
  'head-samples'?: number;
  planner?: string;
};

export interface RolloutParts {
  policy: Policy;
  env: Env;
  learned: boolean;
  /** A learned policy's engine, to describe and dispose. */
  runner?: { dispose(): Promise<void> | void; info: { model?: string; engine: string; device: string } };
  /** Closes the env, the policy and its engine. */
  close(): Promise<void>;
}

/**
 * Opens the policy and the env (behind the safety filter unless --no-safety) that the flags name.
 * @example const { env, policy, close } = await openRollout(flags);
 */
export async function openRollout(flags: RolloutFlags): Promise<RolloutParts> {
  const num = (s: string, name: string) => parseNumber(s, name, 0);
  let policy: Policy;
  let runner: RolloutParts['runner'];
  let layout: ActionLayout | undefined; // the model's action layout (its codec spec), for the safety filter
  if (flags.policy === 'scripted') {
    const expert = { stepSize: num(flags['step-size'], 'step-size'), noise: num(flags.noise, 'noise') };
    const dart = num(flags.dart, 'dart');
    policy = dart > 0 ? new DartPolicy({ ...expert, dart }) : new ScriptedPolicy(expert);
  } else if (/^wss?:\/\//.test(flags.policy)) {
    const { OpenpiPolicy, RemotePolicy } = await import('../policy/index.js');
    policy = flags.protocol === 'openpi'
      ? new OpenpiPolicy(flags.policy, { obsMap: obsMapOf(flags), actions: actionAdapterOf(flags), apiKey: flags['api-key'] })
      : new RemotePolicy(flags.policy, flags['api-key']);
  } else {
    const { openModel } = await import('../infer/index.js');
    const { ModelPolicy } = await import('../policy/index.js');
    const { existsSync } = await import('node:fs');
    const path = await import('node:path');
    const { hfHeadBase } = await import('../policy/head-policy.js');
    const { hasActionHead } = await import('../model/action-head.js');
    // a head run on a Hugging Face backbone opens as generate opens it: its base (vlakit.json) with the run as adapter
    const base = flags.adapter || !hasActionHead(flags.policy) ? undefined : hfHeadBase(flags.policy);
    const model = base ?? flags.policy;
    const adapter = base ? (existsSync(path.join(flags.policy, 'adapter_config.json')) ? flags.policy : undefined) : (flags.adapter as string | undefined);
    const r = await openModel(model, { device: flags.device as 'cpu', backend: flags.backend as string | undefined, adapter });
    runner = r;
    // the head is in the model directory, or in the --adapter run of a Hugging Face checkpoint trained with one
    const headDir = base ? flags.policy : flags.adapter && hasActionHead(flags.adapter as string) ? (flags.adapter as string) : flags.policy;
    // one set of options (and one verifier) for the planner and the policy
    let po: ModelPolicyOptions | undefined;
    let planner: Planner | undefined;
    try {
      po = policyOptions(r, flags);
      if (flags.mode === 'hierarchical' && flags.planner !== undefined && flags.planner !== 'model') planner = await makePlanner(flags.planner, po, { device: flags.device as string | undefined, backend: flags.backend as string | undefined });
      if (hasActionHead(headDir)) {
        // a continuous action head: one backbone pass and the sampler per cycle; in the hierarchy, the current subtask
        // is its task (the plan from --planner, the verifier an oracle or a teacher: the head writes no text)
        const hierarchical = flags.mode === 'hierarchical';
        if (hierarchical && !planner) throw new VlakitError('E_USAGE', `${flags.policy} has an action head, which writes no subtask list: in --mode hierarchical give --planner oracle or --planner DIR (a model that writes them), or use --mode direct`);
        if (hierarchical && flags.verifier === 'model') throw new VlakitError('E_USAGE', `${flags.policy} has an action head, which answers no verification question: in --mode hierarchical give --verifier oracle or teacher:SPEC`);
        const { HeadPolicy, openHeadEngine } = await import('../policy/head-policy.js');
        const { Hierarchy } = await import('../policy/hierarchy.js');
        layout = executedLayout(po.codec.layout);
        const noiseScale = flags['head-noise'] === undefined ? undefined : num(flags['head-noise'], 'head-noise');
        const hierarchy = hierarchical ? new Hierarchy(planner!, po.verifier!, po.maxRetries ?? HEAD_MAX_RETRIES) : undefined;
        policy = new HeadPolicy(r, await openHeadEngine(r, headDir), { prompt: po.prompt ?? 'compact', codec: po.codec, execute: po.execute, maxChunk: po.maxChunk, noiseScale, samples: flags['head-samples'], hierarchy });
      } else {
        if (flags['head-noise'] !== undefined) throw new VlakitError('E_USAGE', `--head-noise scales an action head's starting noise: ${flags.policy} has no action head (it writes its actions as text; see --temperature-actions)`);
        if (flags['head-samples'] !== undefined) throw new VlakitError('E_USAGE', `--head-samples takes the median of an action head's samples: ${flags.policy} has no action head (it writes its actions as text)`);
        if (flags.mode === 'hierarchical' && (po.prompt === 'task' || po.prompt === 'compact')) {
          // one skill per subtask (relabel --subtask-prompts): the model writes neither subtask lists nor verdicts
          if (!planner) throw new VlakitError('E_USAGE', `--prompt ${po.prompt} in --mode hierarchical prompts ${flags.policy} with each subtask of a plan it does not write: give --planner oracle or --planner DIR (a model that writes subtask lists)`);
          if (flags.verifier === 'model') throw new VlakitError('E_USAGE', `--prompt ${po.prompt} in --mode hierarchical: ${flags.policy} learned skills, not verification questions; give --verifier oracle or teacher:SPEC`);
        }
        layout = executedLayout(po.codec.layout); // waypoint targets reach the env as deltas
        policy = new ModelPolicy(r, { ...po, planner });
      }
    } catch (err) {
      await planner?.close?.();
      await po?.verifier?.close?.();
      await r.dispose();
      throw err;
    }
  }
  // DAgger: the learned policy drives, the scripted expert's action is recorded
  if (flags.dagger) policy = new DaggerPolicy(policy, num(flags['dagger-beta'], 'dagger-beta'), { stepSize: num(flags['step-size'], 'step-size') });
  let env: Env;
  try {
    env = await openEnv(flags.env, async () =>
      new TabletopEnv({ width: flags.width, height: flags.height, wrist: flags.wrist, masks: flags.masks, controlHz: flags.hz, distractors: parseRange(flags.distractors), maxSteps: flags['max-steps'] }),
    );
  } catch (err) {
    await policy.close?.();
    await runner?.dispose();
    throw err;
  }
  if (flags.safety) env = new SafetyFilter(env, { maxStep: num(flags['max-translation'], 'max-translation'), contactGuard: flags['contact-guard'], layout });
  const opened = env;
  return {
    policy,
    env,
    learned: flags.policy !== 'scripted',
    runner,
    async close() {
      await opened.close();
      await policy.close?.();
      await runner?.dispose();
    },
  };
}
