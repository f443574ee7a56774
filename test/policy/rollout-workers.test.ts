/**
 * rollout --workers N: the episodes run in N child processes, and the records and the report are those of the
 * serial run (same seeds -> same episodes, in the same order).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../helpers.js';

const BIN = path.resolve('bin/run.js');
const dir = tempDir('vlakit-workers-');
const vlakit = (...args: string[]) => execa('node', [BIN, ...args], { cwd: dir, reject: false });
// families take turns and episodes differ in length, so workers finish out of order
const RUN = ['rollout', '--episodes', '5', '--tasks', 'pick,place', '--max-steps', '10', '--width', '32', '--height', '32', '--noise', '0.004', '--json'];

/** The --json report without the output names. */
const reportOf = (stderr: string): unknown => {
  const { outputs: _outputs, ...rest } = JSON.parse(stderr.trim().split('\n').pop()!);
  return rest;
};

describe('rollout --workers', () => {
  it('--workers 2 and 3 write the records of --workers 1, record for record, and the same report', async () => {
    const [one, two, three] = await Promise.all([1, 2, 3].map((w) => vlakit(...RUN, '--workers', String(w), '-o', `w${w}.jsonl`)));
    for (const r of [one, two, three]) expect(r.exitCode).toBe(0);
    const serial = readFileSync(path.join(dir, 'w1.jsonl'), 'utf8');
    const ids = [...new Set(serial.trim().split('\n').map((l) => JSON.parse(l).episode_id))];
    expect(ids).toEqual(['0-0', '0-1', '0-2', '0-3', '0-4']);
    expect(readFileSync(path.join(dir, 'w2.jsonl'), 'utf8')).toBe(serial);
    expect(readFileSync(path.join(dir, 'w3.jsonl'), 'utf8')).toBe(serial);
    const report = reportOf(one.stderr) as { episodes: number; safety: { steps: number } };
    expect(report.episodes).toBe(5);
    expect(report.safety.steps).toBeGreaterThan(5);
    expect(reportOf(two.stderr)).toEqual(report);
    expect(reportOf(three.stderr)).toEqual(report);
  }, 90_000);

  it('with --shard: the shard\'s episodes, as the serial shard run has them', async () => {
    const [one, two] = await Promise.all([1, 2].map((w) => vlakit(...RUN, '--shard', '1/2', '--workers', String(w), '-o', `s${w}.jsonl`)));
    expect(one.exitCode).toBe(0);
    expect(two.exitCode).toBe(0);
    const serial = readFileSync(path.join(dir, 's1.jsonl'), 'utf8');
    expect([...new Set(serial.trim().split('\n').map((l) => JSON.parse(l).episode_id))]).toEqual(['0-1', '0-3']);
    expect(readFileSync(path.join(dir, 's2.jsonl'), 'utf8')).toBe(serial);
    expect(readFileSync(path.join(dir, 's2.jsonl.shard.json'), 'utf8')).toBe(readFileSync(path.join(dir, 's1.jsonl.shard.json'), 'utf8'));
  }, 90_000);

  it('a worker\'s error stops the run with that error; nothing is written', async () => {
    const r = await vlakit('rollout', '--episodes', '2', '--env', 'exec:/nonexistent/sim', '--workers', '2', '-o', 'never.jsonl');
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain('E_ENV in exec:/nonexistent/sim');
    expect(existsSync(path.join(dir, 'never.jsonl'))).toBe(false);
  }, 60_000);

  it('--video with --workers 2: the videos of --workers 1, file for file and byte for byte', async () => {
    const VIDEO = ['rollout', '--episodes', '3', '--tasks', 'pick,place', '--max-steps', '6', '--width', '32', '--height', '32', '--video-format', 'gif', '--video-size', '64', '--quiet'];
    const [one, two] = await Promise.all([1, 2].map((w) => vlakit(...VIDEO, '--workers', String(w), '--video', `v${w}`, '-o', `v${w}.jsonl`)));
    expect(one.exitCode).toBe(0);
    expect(two.exitCode).toBe(0);
    const names = readdirSync(path.join(dir, 'v1')).sort();
    expect(names.length).toBe(3);
    expect(readdirSync(path.join(dir, 'v2')).sort()).toEqual(names);
    for (const n of names) expect(readFileSync(path.join(dir, 'v2', n)).equals(readFileSync(path.join(dir, 'v1', n)))).toBe(true);
    // frames drawn by the world, not the 32 px camera image: a 64 px GIF (logical screen width, bytes 6-7)
    expect(readFileSync(path.join(dir, 'v2', names[0])).readUInt16LE(6)).toBeGreaterThanOrEqual(64);
    expect(readFileSync(path.join(dir, 'v2.jsonl'), 'utf8')).toBe(readFileSync(path.join(dir, 'v1.jsonl'), 'utf8'));
  }, 120_000);
});
