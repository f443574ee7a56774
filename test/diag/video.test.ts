import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { findFfmpeg, type RgbFrame, videoSize, writeEpisodeVideo } from '../../src/lib/diag/index.js';
import { type EpisodeResult, SafetyFilter, ScriptedPolicy, TabletopEnv, builtinOf, runEpisodes } from '../../src/lib/env/index.js';
import { collect, tempDir } from '../helpers.js';

const dir = tempDir();
const BIN = path.resolve('bin/run.js');
const ffmpeg = findFfmpeg();
let ep: EpisodeResult;

/** Frames in a video file, counted by decoding every one of them to raw RGB with ffmpeg. */
function decodedFrames(file: string, width: number, height: number): number {
  const raw = execFileSync(ffmpeg!, ['-v', 'error', '-i', file, '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-'], { maxBuffer: 1 << 30 });
  expect(raw.length % (width * height * 3)).toBe(0);
  return raw.length / (width * height * 3);
}

beforeAll(async () => {
  const env = new SafetyFilter(new TabletopEnv({ width: 32, height: 32, distractors: 0, maxSteps: 9 }));
  [ep] = await collect(runEpisodes({ env, policy: new ScriptedPolicy(), families: ['pick'], episodes: 1, seed: 5, capture: (e) => builtinOf(e)?.snapshot(128, 128) }));
  await env.close();
});

describe('episode videos', () => {
  it('writes an animated GIF with one frame per step record, from the records\' camera images', async () => {
    const file = path.join(dir, 'ep.gif');
    const r = await writeEpisodeVideo(ep.records, file, { format: 'gif', size: 128 });
    expect(ep.records.length).toBe(10); // 9 steps, then the final observation
    expect(r.frames).toBe(10);
    const m = await sharp(file, { animated: true }).metadata();
    const [w, h] = videoSize(128);
    expect(m.format).toBe('gif');
    expect(m.pages).toBe(10);
    expect([m.width, m.pageHeight]).toEqual([w, h]);
    expect(m.delay).toEqual(new Array(10).fill(200));
    // frames differ: the arm moves and the step counter advances
    const first = await sharp(file, { page: 0 }).raw().toBuffer();
    const last = await sharp(file, { page: 9 }).raw().toBuffer();
    expect(first.equals(last)).toBe(false);
  });

  it.runIf(ffmpeg)('writes an H.264 MP4 that decodes to one frame per step, from the world\'s own renders', async () => {
    const file = path.join(dir, 'ep.mp4');
    const frames = ep.captures as RgbFrame[];
    expect(frames).toHaveLength(10);
    expect(frames[0].width).toBe(128);
    await writeEpisodeVideo(ep.records, file, { format: 'mp4', ffmpeg, size: 128, frames });
    expect(readFileSync(file).subarray(4, 8).toString()).toBe('ftyp');
    const [w, h] = videoSize(128);
    expect(decodedFrames(file, w, h)).toBe(10);
  });

  it('refuses an odd image size and mp4 without ffmpeg', async () => {
    await expect(writeEpisodeVideo(ep.records, path.join(dir, 'odd.gif'), { format: 'gif', size: 127 })).rejects.toThrow(/even/);
    await expect(writeEpisodeVideo(ep.records, path.join(dir, 'no.mp4'), { format: 'mp4' })).rejects.toThrow(/ffmpeg/);
  });
});

describe('rollout --video', () => {
  it('writes one video per episode, the failure analysis in --json, and no temporaries', async () => {
    const out = path.join(dir, 'cli');
    const r = await execa('node', [BIN, 'rollout', '--tasks', 'pick', '--episodes', '2', '--max-steps', '6', '--width', '32', '--height', '32', '--distractors', '0', '--video', path.join(out, 'videos'), '--video-format', 'gif', '--video-size', '96', '--json', '-o', path.join(out, 'eval.jsonl')], { reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
    const files = readdirSync(path.join(out, 'videos')).sort();
    expect(files).toEqual(['episode-0000-pick-timeout.gif', 'episode-0001-pick-timeout.gif']);
    const m = await sharp(path.join(out, 'videos', files[0]), { animated: true }).metadata();
    expect(m.pages).toBe(7);
    expect(readdirSync(out).sort()).toEqual(['eval.jsonl', 'videos']);
    const rep = JSON.parse(r.stderr.trim().split('\n').at(-1)!);
    expect(rep.videos).toEqual({ dir: path.join(out, 'videos'), format: 'gif' });
    expect(rep.failures).toHaveLength(2);
    expect(rep.failures[0]).toMatchObject({ episode_id: '0-0', family: 'pick', success: false, end: 'timeout', steps: 6, subtasks_total: 3 });
    expect(rep.failures[0].ended_in.kind).toBe('reach');
    expect(rep.failures[0].min_distance_m).toBeGreaterThan(0);
    // a second run does not write over the videos without --overwrite
    const again = await execa('node', [BIN, 'rollout', '--tasks', 'pick', '--episodes', '1', '--max-steps', '2', '--width', '32', '--height', '32', '--video', path.join(out, 'videos'), '-o', path.join(out, 'eval2.jsonl')], { reject: false });
    expect(again.exitCode).toBe(2);
    expect(again.stderr).toMatch(/--video.*exists/);
    expect(existsSync(path.join(out, 'eval2.jsonl'))).toBe(false);
  });

  it('render: the videos of recorded episodes, one frame per step record', async () => {
    const out = path.join(dir, 'cli');
    const r = await execa('node', [BIN, 'render', path.join(out, 'eval.jsonl'), '--limit', '1', '--size', '64', '-o', path.join(out, 'rendered')], { reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
    const files = readdirSync(path.join(out, 'rendered'));
    const format = ffmpeg ? 'mp4' : 'gif';
    expect(files).toEqual([`episode-0000-pick-timeout.${format}`]);
    const file = path.join(out, 'rendered', files[0]);
    const [w, h] = videoSize(64);
    expect(ffmpeg ? decodedFrames(file, w, h) : (await sharp(file, { animated: true }).metadata()).pages).toBe(7);
    expect(r.stderr).toContain(`1 ${format} videos, 7 frames`);
    const none = await execa('node', [BIN, 'render', path.join(out, 'eval.jsonl'), '--size', '65', '-o', path.join(out, 'odd')], { reject: false });
    expect(none.exitCode).toBe(2);
  });

  it('prints the failed episodes under the table', async () => {
    const r = await execa('node', [BIN, 'rollout', '--tasks', 'pick', '--episodes', '1', '--max-steps', '3', '--width', '32', '--height', '32', '--distractors', '0', '-o', path.join(dir, 'table.jsonl')], { reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toContain('failed episodes: 1 of 1 (1 timeout)');
    expect(r.stderr).toMatch(/0-0\s+pick\s+timeout\s+3 1\/3 move to the/);
  });
});
