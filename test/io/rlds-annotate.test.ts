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
