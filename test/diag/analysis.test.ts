import { describe, expect, it } from 'vitest';
import { episodeAnalysis, formatFailures } from '../../src/lib/diag/index.js';
import type { StepRecord } from '../../src/lib/io/records.js';

const BLOCK = { id: 'red_block', name: 'red block' };
const MUG = { id: 'mug', name: 'mug' };

/**
 * A pick episode that failed by timeout: the gripper comes down towards the red block (at [0.4, 0, 0]), closes
 * twice without holding it, is clipped by the safety filter once, and the world never leaves subtask 1 (reach).
 */
function failingEpisode(): StepRecord[] {
  const tcp = [
    [0.3, 0.1, 0.2],
    [0.35, 0.05, 0.1],
    [0.39, 0.01, 0.03], // closest: 0.01, 0.01, 0.03 -> sqrt(0.0011) = 0.0332 m; xy 0.0141
    [0.38, 0.02, 0.05],
    [0.36, 0.04, 0.08],
  ];
  const gripper = [1, 0, 1, 0.2, 0.1]; // closes at steps 1 and 3 (0.2 and 0.1 count as one closing)
  const meta = { family: 'pick', seed: 42, success: false, end: 'truncated', task: { objects: ['red_block'], subtasks: ['move to the red block', 'grasp the red block', 'lift the red block'] } };
  return tcp.map((p, t) => ({
    episode_id: '0-3',
    step: t,
    observation: { state: [...p, 1] },
    action: [0.01, 0, 0, gripper[t]],
    oracle: {
      subtask: { index: 0, kind: 'reach', text: 'move to the red block' },
      subtasks_done: 0,
      holding: '',
      objects: [
        { ...BLOCK, pos: [0.4, 0, 0] },
        { ...MUG, pos: [0.36, 0.04, 0.07] }, // a distractor the gripper passes much closer to
      ],
    },
    ...(t === 2 ? { safety: { interventions: ['contact'] } } : {}),
    episode_metadata: meta,
  }));
}

describe('episodeAnalysis', () => {
  it('names where a failing episode ended, how close it came, its grasp attempts and why it stopped', () => {
    const a = episodeAnalysis(failingEpisode());
    expect(a).toMatchObject({ episode_id: '0-3', family: 'pick', seed: 42, success: false, end: 'timeout', steps: 4, subtasks_done: 0, subtasks_total: 3, target: 'red_block', min_distance_step: 2, grasp_attempts: 2, grasps: 0, safety_interventions: 1 });
    expect(a.ended_in).toEqual({ index: 0, kind: 'reach', text: 'move to the red block' });
    expect(a.min_distance_m).toBeCloseTo(Math.hypot(0.01, 0.01, 0.03), 4);
    expect(a.min_xy_distance_m).toBeCloseTo(Math.hypot(0.01, 0.01), 4);
  });

  it('tells safety stops from timeouts and counts a grasp when the world sees the gripper holding', () => {
    const recs = failingEpisode().map((r, t) => ({ ...r, episode_metadata: { ...r.episode_metadata, end: 'estop' }, oracle: { ...(r.oracle as object), holding: t >= 2 ? 'red block' : '' } }));
    const a = episodeAnalysis(recs);
    expect(a.end).toBe('safety_stop');
    expect(a.grasps).toBe(1);
    expect(episodeAnalysis(failingEpisode().map((r) => ({ ...r, episode_metadata: { ...r.episode_metadata, end: 'policy' } }))).end).toBe('policy_finished');
  });

  it('takes the object named by the subtask the episode ended in (place_then_lift: the second item)', () => {
    const recs = failingEpisode().map((r) => ({ ...r, oracle: { ...(r.oracle as object), subtask: { index: 7, kind: 'reach', text: 'move to the mug' } } }));
    const a = episodeAnalysis(recs);
    expect(a.target).toBe('mug');
    expect(a.min_distance_m).toBeCloseTo(0.01, 4); // step 4: [0.36, 0.04, 0.08] vs [0.36, 0.04, 0.07]
  });

  it('prints one line per failed episode, none for successes', () => {
    const ok = failingEpisode().map((r) => ({ ...r, episode_metadata: { ...r.episode_metadata, success: true, end: 'success' } }));
    expect(formatFailures([episodeAnalysis(ok)])).toBe('');
    const text = formatFailures([episodeAnalysis(failingEpisode()), episodeAnalysis(ok)]);
    expect(text).toContain('failed episodes: 1 of 2 (1 timeout)');
    expect(text).toMatch(/0-3\s+pick\s+timeout\s+4 1\/3 move to the red block\s+3\.3\s+1\.4\s+2\s+0/);
  });
});
