/**
 * Learned policies in closed loop (direct and the VLM2VLA hierarchy), their verifiers, the rollout report, and
 * the policy server and its client.
 */
import { codecFor } from '../actions/index.js';
import type { ActionCodec } from '../actions/codecs.js';
import { VlakitError } from '../errors.js';
import type { VlaRunner } from '../infer/index.js';
import { makeTeacher } from '../teacher/index.js';
import { ModelVerifier, OracleVerifier, TeacherVerifier, type Verifier } from './verifiers.js';

export { ChunkPolicy, ModelPolicy, type Cycle, type DirectPrompt, type ModelPolicyOptions, type Sampling } from './model-policy.js';
export { ModelVerifier, OracleVerifier, TeacherVerifier, parseVerdict, verifierPrompt, type Verdict, type Verifier, type VerifyInput } from './verifiers.js';
export { formatPolicyReport, policyReport, summarizeEpisode, type EpisodeSummary, type TaskReport } from './report.js';
export { OBS_PRESETS, OpenpiClient, OpenpiPolicy, OpenpiSession, adaptActions, checkActionAdapter, fromOpenpiObservation, parseObsMap, toOpenpiObservation, type ActionAdapter, type ObsMapEntry } from './openpi.js';
export { PROTOCOL, PolicyClient, RemotePolicy, servePolicy, type PolicyServer, type ServeOptions } from './server.js';

/** The verifier named by --verifier: oracle, model, or teacher:SPEC (kinematic, gemini:M, openai:M, exec:CMD). */
export function makeVerifier(spec: string, runner: VlaRunner, o: { temperature: number; topP: number; teacherUrl?: string }): Verifier {
  if (spec === 'oracle') return new OracleVerifier();
  if (spec === 'model') return new ModelVerifier(runner, o);
  if (spec.startsWith('teacher:')) return new TeacherVerifier(makeTeacher(spec.slice(8), { url: o.teacherUrl }));
  throw new VlakitError('E_USAGE', `unknown verifier "${spec}"; expected oracle, model or teacher:SPEC (e.g. teacher:gemini:gemini-2.5-pro)`);
}

/** The action representation a model was trained with (its config's vlakit.action_codec), or the one asked for. */
export function codecOf(runner: VlaRunner, override?: string): ActionCodec {
  const desc = runner.actionCodec;
  const kind = override ?? (desc?.codec as string | undefined);
  if (!kind) throw new VlakitError('E_USAGE', `${runner.info.dir ?? 'the model'} does not say how it writes actions (no vlakit.action_codec in config.json); pass --actions text or words`);
  const codec = codecFor(kind, override ? undefined : desc);
  if (!codec) throw new VlakitError('E_USAGE', `cannot rebuild the model's action codec "${kind}" (its config.json has no full vlakit.action_codec spec); pass --actions text or words`);
  return codec;
}
