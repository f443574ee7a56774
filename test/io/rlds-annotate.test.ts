/** Writing a dataset back with annotations: dtypes kept, the split kept, output directories follow the umask. */
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers.js';
import { buildRlds, makeEpisode } from '../rlds-builder.js';

const BIN = path.resolve('bin/run.js');
const dir = tempDir();
const src = path.join(dir, 'src', '1.0.0');
const sh = (cmd: string) => execa('sh', ['-c', cmd], { reject: false, cwd: dir, env: { NO_COLOR: '1' } }).then((r) => ({ code: r.exitCode, err: r.stderr }));

beforeAll(async () => {
  await buildRlds(src, { train: [[await makeEpisode(1, 4)]], val: [[await makeEpisode(2, 3)]] });
  // episode_id as int32 (as some TFDS builders declare it)
  const f = path.join(src, 'features.json');
  const json = JSON.parse(readFileSync(f, 'utf8'));
  json.featuresDict.features.episode_metadata.featuresDict.features.episode_id.tensor.dtype = 'int32';
  writeFileSync(f, JSON.stringify(json));
});

const leaf = (features: any, ...keys: string[]) => keys.reduce((n, k) => n.featuresDict?.features?.[k] ?? n.sequence?.feature?.featuresDict?.features?.[k], features);

describe('annotate -o DIR on an RLDS dataset', () => {
  it('keeps the source dtypes (int32 episode_id, float32 state) and the split it read; directories follow the umask', async () => {
    const r = await sh(`umask 002 && node ${BIN} annotate src/1.0.0 --split val --kind plan -q -o out/1.0.0`);
    expect(r.code, r.err).toBe(0);
    const features = JSON.parse(readFileSync(path.join(dir, 'out/1.0.0/features.json'), 'utf8'));
    expect(leaf(features, 'episode_metadata', 'episode_id').tensor.dtype).toBe('int32');
    expect(leaf(features, 'steps', 'observation', 'state').tensor).toMatchObject({ dtype: 'float32', shape: { dimensions: ['7'] } });
    expect(leaf(features, 'steps', 'plan')).toBeDefined();
    const info = JSON.parse(readFileSync(path.join(dir, 'out/1.0.0/dataset_info.json'), 'utf8'));
    expect(info.splits.map((s: { name: string }) => s.name)).toEqual(['val']);
    expect(statSync(path.join(dir, 'out')).mode & 0o777).toBe(0o775);
    expect(statSync(path.join(dir, 'out/1.0.0')).mode & 0o777).toBe(0o775);
  }, 60_000);
});

describe('--add-split', () => {
  it('adds a second split to an existing dataset directory, refuses an existing split, and the result reads as both', async () => {
    expect((await sh(`node ${BIN} convert src/1.0.0 --split train -q -o two/1.0.0`)).code).toBe(0);
    const refused = await sh(`node ${BIN} convert src/1.0.0 --split val -q -o two/1.0.0`);
    expect(refused.code).toBe(2);
    expect(refused.err).toMatch(/the output \(-o\) exists/);
    const added = await sh(`node ${BIN} convert src/1.0.0 --split val --add-split -q -o two/1.0.0`);
    expect(added.code, added.err).toBe(0);
    const info = JSON.parse(readFileSync(path.join(dir, 'two/1.0.0/dataset_info.json'), 'utf8'));
    expect(info.splits.map((s: { name: string; shardLengths: string[] }) => [s.name, s.shardLengths])).toEqual([
      ['train', ['1']],
      ['val', ['1']],
    ]);
    for (const split of ['train', 'val']) {
      const a = await execa('node', [BIN, 'convert', 'src/1.0.0', '--split', split, '-q'], { cwd: dir });
      const b = await execa('node', [BIN, 'convert', 'two/1.0.0', '--split', split, '-q'], { cwd: dir });
      expect(b.stdout).toBe(a.stdout);
    }
    const again = await sh(`node ${BIN} convert src/1.0.0 --split val --add-split -q -o two/1.0.0`);
    expect(again.code).toBe(2);
    expect(again.err).toMatch(/already has a "val" split/);
  }, 60_000);
});
