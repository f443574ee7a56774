/**
 * The one environment interface every policy drives (docs/ENV.md): `reset(seed, task) -> observation`,
 * `step(action) -> observation, reward, done, info`. The built-in world, a child process speaking JSON lines and a
 * websocket robot all implement it. The messages of the JSON-lines / websocket protocol (docs/ENV.md) have zod
 * schemas: a bad message is an E_ENV error naming the field, on either side.
 */
import { z } from 'zod';
import { expected, FiniteNumberSchema } from '../io/records.js';

/** What a policy sees: camera images (encoded, {mime, b64}) and proprioception, plus the instruction. */
export interface Observation {
  /** Cameras by name ({"mime": "image/png", "b64": ...}) and `state`: [x, y, z, gripper_opening]. */
  observation: Record<string, unknown>;
  instruction: string;
  info?: Record<string, unknown>;
}

export interface StepResult {
  observation: Record<string, unknown>;
  reward: number;
  done: boolean;
  info: Record<string, unknown>;
}

/** What to reset into: a task family of the built-in world, or anything an external env understands. */
export interface TaskRequest {
  family?: string;
  instruction?: string;
  [k: string]: unknown;
}

export interface Env {
  readonly name: string;
  reset(seed: number, task?: TaskRequest): Promise<Observation>;
  /** `action`: [dx, dy, dz, gripper] in meters per control step (+x forward, +y left, +z up; gripper 1 open, 0 closed), or 7-D with rotations. */
  step(action: number[]): Promise<StepResult>;
  close(): Promise<void>;
}

/** The end-effector position (first three entries of `state`), when the observation has one. */
export function eePosition(obs: Record<string, unknown>): [number, number, number] | undefined {
  const s = obs.state;
  if (Array.isArray(s) && s.length >= 3 && s.slice(0, 3).every((v) => typeof v === 'number' && Number.isFinite(v))) {
    return [s[0], s[1], s[2]];
  }
  return undefined;
}

const info = z.record(z.string(), z.unknown(), { error: expected('an object') });

/** An observation as the protocol carries it: cameras ({mime, b64}) and anything else; `state` finite numbers when present. */
const ObservationFieldSchema = z.looseObject({ state: z.array(FiniteNumberSchema, { error: expected('a list of numbers') }).optional() });

/** The answer to `reset`. */
export const ResetAnswerSchema = z.looseObject({ observation: ObservationFieldSchema, instruction: z.string().optional(), info: info.optional() });

/** The answer to `step`. */
export const StepAnswerSchema = z.looseObject({ observation: ObservationFieldSchema, reward: FiniteNumberSchema.optional(), done: z.boolean(), info: info.optional() });

/** A request to an env: reset, step or close. */
export const EnvRequestSchema = z.discriminatedUnion(
  'op',
  [
    z.looseObject({ op: z.literal('reset'), seed: z.number().int().optional(), task: z.looseObject({ family: z.string().optional(), instruction: z.string().optional() }).optional() }),
    z.looseObject({ op: z.literal('step'), action: z.array(FiniteNumberSchema, { error: expected('a list of numbers') }) }),
    z.looseObject({ op: z.literal('close') }),
  ],
  {
    error: (iss) => {
      if (iss.code !== 'invalid_union') return undefined;
      const op = (iss.input as { op?: unknown } | undefined)?.op;
      return `${op === undefined ? 'no "op"' : `unknown op ${JSON.stringify(op)}`}; expected reset, step or close`;
    },
  },
);
export type EnvRequest = z.infer<typeof EnvRequestSchema>;
