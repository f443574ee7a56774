/** Flags shared by `rollout` and `rollout serve` for learned policies, and the options they make. */
import { Flags } from '@oclif/core';
import type { VlaRunner } from '../infer/index.js';
import { type ModelPolicyOptions, codecOf, makeVerifier } from '../policy/index.js';
import { HEAD_MAX_RETRIES, TEXT_MAX_RETRIES } from '../policy/hierarchy.js';
import { parseNumber } from './base.js';
import { type FlagRule, allOnlyWith, decimal, int, onlyWith } from './flags.js';

export const policyFlags = {
  mode: Flags.string({ description: 'learned policies: direct (reasoning + actions each cycle) or hierarchical (VLM2VLA: subtasks, motion plan, actions, verifier)', options: ['direct', 'hierarchical'], default: 'hierarchical' }),
  prompt: Flags.string({ description: 'direct mode (and in the hierarchy, each subtask its task: a policy with an action head, or with task or compact a text policy trained on relabel --subtask-prompts): the training prompt (relabel --method refinevla with or without reasoning, VLM2VLA-NR "task", or "compact": relabel --no-reasoning --compact-prompt, every camera of the observation)', options: ['refinevla', 'refinevla-nr', 'task', 'compact'], default: 'refinevla' }),
  verifier: Flags.string({ description: 'hierarchical mode: model (the policy answers its verification prompt), oracle (the built-in world), or teacher:SPEC', default: 'model', helpValue: 'SPEC' }),
  'teacher-url': Flags.string({ description: 'server of an openai:MODEL teacher verifier', helpValue: 'URL' }),
  'max-retries': int({ description: `hierarchical: chunks per subtask the verifier may reject before moving on (default ${TEXT_MAX_RETRIES} for a policy that writes its actions as text; ${HEAD_MAX_RETRIES} for one with an action head, whose chunk is often a single step: then the episode's step limit is what bounds a subtask)`, min: 0, max: 100 }),
  resample: int({ description: 'extra samples when the model output does not parse (then a safe no-op)', default: 3, min: 0, max: 100 }),
  execute: int({ description: 'execute at most N actions of each chunk before asking the model again', min: 1, max: 1024 }),
  'max-chunk': int({ description: 'cut action chunks longer than this', default: 32, min: 1, max: 1024 }),
  'motion-plan': Flags.boolean({ description: 'hierarchical: a motion plan before each chunk', default: true, allowNo: true }),
  'top-p': decimal({ description: 'nucleus sampling for every stage', default: '0.95', min: 0, minExclusive: true, max: 1 }),
  'temperature-subtasks': decimal({ description: 'temperature of the subtask list', default: '0.5', min: 0, max: 10 }),
  'temperature-plan': decimal({ description: 'temperature of motion plans', default: '0.1', min: 0, max: 10 }),
  'temperature-actions': decimal({ description: 'temperature of action chunks (and direct-mode reasoning)', default: '0.5', min: 0, max: 10 }),
  'temperature-verifier': decimal({ description: 'temperature of the model verifier', default: '0', min: 0, max: 10 }),
  'max-new-tokens': int({ description: 'longest generation of a stage (actions with reasoning need the most)', default: 256, min: 1, max: 8192 }),
  actions: Flags.string({ description: 'how the model writes actions, when its config does not say', options: ['text', 'words'] }),
  device: Flags.string({ description: 'onnxruntime execution provider for an export (a checkpoint: cuda picks tfjs-node-gpu)', options: ['cpu', 'cuda'], default: 'cpu' }),
  backend: Flags.string({ description: 'tfjs backend for a checkpoint', options: ['tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'] }),
  adapter: Flags.string({ description: 'a PEFT LoRA adapter directory folded into a Hugging Face checkpoint (its saved action codec and statistics are the policy\'s)', helpValue: 'DIR' }),
};

/** Flags of one mode of the learned policy, refused in the other. */
export const policyRules: FlagRule[] = [
  // in the hierarchy, a policy with an action head is prompted with each subtask as its task (rollout --planner)
  onlyWith('prompt', '--mode direct, or --mode hierarchical with --planner (a policy run on subtasks: an action head, or a text policy trained on relabel --subtask-prompts)', (i) => i.flags.mode === 'direct' || (i.flags.mode === 'hierarchical' && i.flags.planner !== undefined)),
  ...allOnlyWith(['verifier', 'max-retries', 'motion-plan', 'temperature-subtasks', 'temperature-plan', 'temperature-verifier'], '--mode hierarchical', (i) => i.flags.mode === 'hierarchical'),
  onlyWith('teacher-url', 'a teacher verifier (--verifier teacher:openai:MODEL)', (i) => String(i.flags.verifier).startsWith('teacher:')),
];

export type PolicyFlagValues = { [K in keyof typeof policyFlags]: unknown };

/** The options of a ModelPolicy from the parsed flags. */
export function policyOptions(runner: VlaRunner, f: PolicyFlagValues): ModelPolicyOptions {
  const num = (k: keyof PolicyFlagValues, min = 0) => parseNumber(f[k] as string, k, min);
  const topP = num('top-p');
  const max = f['max-new-tokens'] as number;
  const stage = (k: keyof PolicyFlagValues, maxNewTokens = max) => ({ temperature: num(k), topP, maxNewTokens });
  const mode = f.mode as 'direct' | 'hierarchical';
  return {
    mode,
    prompt: f.prompt as 'refinevla',
    codec: codecOf(runner, f.actions as string | undefined),
    verifier: mode === 'hierarchical' ? makeVerifier(f.verifier as string, runner, { temperature: num('temperature-verifier'), topP, teacherUrl: f['teacher-url'] as string | undefined }) : undefined,
    maxRetries: f['max-retries'] as number | undefined,
    resample: f.resample as number,
    execute: f.execute as number | undefined,
    maxChunk: f['max-chunk'] as number,
    motionPlan: f['motion-plan'] as boolean,
    sampling: { subtasks: stage('temperature-subtasks', Math.min(max, 160)), plan: stage('temperature-plan', Math.min(max, 96)), actions: stage('temperature-actions') },
  };
}
