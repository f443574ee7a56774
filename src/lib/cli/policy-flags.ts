/** Flags shared by `rollout` and `rollout serve` for learned policies, and the options they make. */
import { Flags } from '@oclif/core';
import type { VlaRunner } from '../infer/index.js';
import { type ModelPolicyOptions, codecOf, makeVerifier } from '../policy/index.js';
import { parseNumber } from './base.js';
import { VlakitError } from '../errors.js';

export const policyFlags = {
  mode: Flags.string({ description: 'learned policies: direct (reasoning + actions each cycle) or hierarchical (VLM2VLA: subtasks, motion plan, actions, verifier)', options: ['direct', 'hierarchical'], default: 'hierarchical' }),
  prompt: Flags.string({ description: 'direct mode: the training prompt (relabel --method refinevla with or without reasoning, or VLM2VLA-NR "task")', options: ['refinevla', 'refinevla-nr', 'task'], default: 'refinevla' }),
  verifier: Flags.string({ description: 'hierarchical mode: model (the policy answers its verification prompt), oracle (the built-in world), or teacher:SPEC', default: 'model', helpValue: 'SPEC' }),
  'teacher-url': Flags.string({ description: 'server of an openai:MODEL teacher verifier', helpValue: 'URL' }),
  'max-retries': Flags.integer({ description: 'hierarchical: chunks per subtask the verifier may reject before moving on', default: 3, min: 0 }),
  resample: Flags.integer({ description: 'extra samples when the model output does not parse (then a safe no-op)', default: 3, min: 0 }),
  execute: Flags.integer({ description: 'execute at most N actions of each chunk before asking the model again', min: 1 }),
  'max-chunk': Flags.integer({ description: 'cut action chunks longer than this', default: 32, min: 1 }),
  'motion-plan': Flags.boolean({ description: 'hierarchical: a motion plan before each chunk', default: true, allowNo: true }),
  'top-p': Flags.string({ description: 'nucleus sampling for every stage', default: '0.95' }),
  'temperature-subtasks': Flags.string({ description: 'temperature of the subtask list', default: '0.5' }),
  'temperature-plan': Flags.string({ description: 'temperature of motion plans', default: '0.1' }),
  'temperature-actions': Flags.string({ description: 'temperature of action chunks (and direct-mode reasoning)', default: '0.5' }),
  'temperature-verifier': Flags.string({ description: 'temperature of the model verifier', default: '0' }),
  'max-new-tokens': Flags.integer({ description: 'longest generation of a stage (actions with reasoning need the most)', default: 256, min: 1 }),
  actions: Flags.string({ description: 'how the model writes actions, when its config does not say', options: ['text', 'words'] }),
  device: Flags.string({ description: 'onnxruntime execution provider for an export (a checkpoint: cuda picks tfjs-node-gpu)', options: ['cpu', 'cuda'], default: 'cpu' }),
  backend: Flags.string({ description: 'tfjs backend for a checkpoint', options: ['tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'] }),
};

type PolicyFlagValues = { [K in keyof typeof policyFlags]: unknown };

/** The options of a ModelPolicy from the parsed flags. */
export function policyOptions(runner: VlaRunner, f: PolicyFlagValues): ModelPolicyOptions {
  const num = (k: keyof PolicyFlagValues, min = 0) => parseNumber(f[k] as string, k, min);
  const topP = num('top-p');
  if (!(topP > 0 && topP <= 1)) throw new VlakitError('E_USAGE', `--top-p must be in (0, 1], got ${topP}`);
  const max = f['max-new-tokens'] as number;
  const stage = (k: keyof PolicyFlagValues, maxNewTokens = max) => ({ temperature: num(k), topP, maxNewTokens });
  const mode = f.mode as 'direct' | 'hierarchical';
  return {
    mode,
    prompt: f.prompt as 'refinevla',
    codec: codecOf(runner, f.actions as string | undefined),
    verifier: mode === 'hierarchical' ? makeVerifier(f.verifier as string, runner, { temperature: num('temperature-verifier'), topP, teacherUrl: f['teacher-url'] as string | undefined }) : undefined,
    maxRetries: f['max-retries'] as number,
    resample: f.resample as number,
    execute: f.execute as number | undefined,
    maxChunk: f['max-chunk'] as number,
    motionPlan: f['motion-plan'] as boolean,
    sampling: { subtasks: stage('temperature-subtasks', Math.min(max, 160)), plan: stage('temperature-plan', Math.min(max, 96)), actions: stage('temperature-actions') },
  };
}
