/** Flags of the policy-server protocols (vlakit's, openpi's) for `rollout serve` and `rollout --policy ws://...`. */
import { Flags } from '@oclif/core';
import { VlakitError } from '../errors.js';
import { type ActionAdapter, OBS_PRESETS, type ObsMapEntry, checkActionAdapter, parseObsMap } from '../policy/index.js';
import { type FlagRule, allOnlyWith } from './flags.js';

const presets = Object.keys(OBS_PRESETS).join(', ');

/** Shared by both sides. */
export const protocolFlags = {
  protocol: Flags.string({ description: 'the policy-server protocol: vlakit\'s (msgpack maps with a type) or openpi\'s (msgpack-numpy observation dicts, as openpi\'s serve_policy.py and openpi-client speak it)', options: ['vlakit', 'openpi'], default: 'vlakit' }),
  'obs-map': Flags.string({ description: `openpi: how openpi observation keys map to vlakit's cameras, state and instruction: a preset (${presets}) or openpi-key=NAME pairs, NAME one of image_N, wrist_image, state, instruction (a camera may end in :chw)`, default: 'libero', helpValue: 'PRESET|KEY=NAME,...' }),
  'api-key': Flags.string({ description: 'the API key sent or required as the header Authorization: Api-Key KEY (openpi\'s client sends it)', env: 'VLAKIT_POLICY_API_KEY', helpValue: 'KEY' }),
};

/** The client side's action adaptation (openpi servers answer in their robot's action space). */
export const openpiActionFlags = {
  'action-dims': Flags.string({ description: 'openpi: which dimensions of the server\'s action vector make vlakit\'s [dx, dy, dz, gripper] (4) or [dx, dy, dz, droll, dpitch, dyaw, gripper] (7), in order, e.g. 0,1,2,6 (default: all, which must be 4 or 7)', helpValue: 'I,J,...' }),
  'action-absolute': Flags.boolean({ description: 'openpi: the translations are absolute positions (targets): each becomes a step from the observed position, then from the previous target' }),
  'action-scale': Flags.string({ description: 'openpi: multiply the non-gripper numbers (undo a normalization or change units): one factor or one per non-gripper dimension', helpValue: 'S|S1,S2,...' }),
  'gripper-range': Flags.string({ description: 'openpi: the server\'s gripper values for open and closed, e.g. -1,1 (LIBERO); mapped linearly onto vlakit\'s 1 (open) and 0 (closed)', helpValue: 'OPEN,CLOSED' }),
};

const numbers = (s: string, flag: string, int: boolean): number[] => {
  const parts = s.split(',').map((x) => x.trim());
  const v = parts.map(Number);
  if (!parts.length || parts.some((p) => p === '') || v.some((x) => !Number.isFinite(x) || (int && (!Number.isInteger(x) || x < 0)))) {
    throw new VlakitError('E_USAGE', `--${flag} must be a comma-separated list of ${int ? 'indices (integers >= 0)' : 'finite numbers'}, got "${s}"`);
  }
  return v;
};

/** The action adapter the flags state, checked. */
export function actionAdapterOf(f: { 'action-dims'?: string; 'action-absolute'?: boolean; 'action-scale'?: string; 'gripper-range'?: string }): ActionAdapter {
  const a: ActionAdapter = {};
  if (f['action-dims'] !== undefined) a.dims = numbers(f['action-dims'], 'action-dims', true);
  if (f['action-absolute']) a.absolute = true;
  if (f['action-scale'] !== undefined) a.scale = numbers(f['action-scale'], 'action-scale', false);
  if (f['gripper-range'] !== undefined) {
    const g = numbers(f['gripper-range'], 'gripper-range', false);
    if (g.length !== 2) throw new VlakitError('E_USAGE', `--gripper-range takes two numbers, OPEN,CLOSED (e.g. -1,1), got "${f['gripper-range']}"`);
    a.gripper = [g[0], g[1]];
  }
  checkActionAdapter(a);
  return a;
}

/** The key map of --obs-map. */
export function obsMapOf(f: { 'obs-map': string }): ObsMapEntry[] {
  return parseObsMap(f['obs-map']);
}

const isOpenpi = (i: { flags: Record<string, unknown> }) => i.flags.protocol === 'openpi';

/** openpi's flags need --protocol openpi. */
export const protocolRules: FlagRule[] = [...allOnlyWith(['obs-map', ...Object.keys(openpiActionFlags)], '--protocol openpi', isOpenpi)];
