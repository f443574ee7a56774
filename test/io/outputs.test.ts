import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { VlakitError } from '../../src/lib/errors.js';
import {
  AtomicFile,
  ShardedTfrecordWriter,
  checkDistinctOutputs,
  checkOutputFormat,
  claimOutput,
  liveTemporaries,
  removeStaleTemporaries,
  removeTemporariesSync,
  writeError,
  writeFileAtomic,
  writeJsonl,
  writeOutputDir,
  writeOutputFile,
} from '../../src/lib/io/index.js';
import { tempDir } from '../helpers.js';

const root = tempDir('vlakit-outputs-');
let n = 0;
/** A fresh directory per test. */
function fresh(): string {
  const d = path.join(root, `t${++n}`);
  mkdirSync(d);
  return d;
}

async function* values(k: number, failAt?: number): AsyncGenerator<unknown> {
  for (let i = 0; i < k; i++) {
    if (i === failAt) throw new VlakitError('E_RECORD_INVALID', `bad record ${i}`);
    yield { i };
  }
}

function usage(fn: () => unknown): VlakitError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(VlakitError);
    expect((err as VlakitError).code).toBe('E_USAGE');
    expect((err as VlakitError).exitCode).toBe(2);
    return err as VlakitError;
  }
  throw new Error('expected a usage error');
}

/** The pid of a process that has ended. */
function deadPid(): number {
  const r = spawnSync('true');
  return r.pid!;
}

describe('claiming an output', () => {
  it('refuses an existing non-empty file or directory unless overwrite; empty ones and new paths are free', () => {
    const d = fresh();
    writeFileSync(path.join(d, 'old.jsonl'), 'x\n');
    const e = usage(() => claimOutput(path.join(d, 'old.jsonl'), 'file'));
    expect(e.message).toMatch(/^E_USAGE in .*old\.jsonl: the output \(-o\) exists \(a file of 2 bytes\); pass --overwrite to replace it/);
    expect(claimOutput(path.join(d, 'old.jsonl'), 'file', { overwrite: true }).exists).toBe(true);
    writeFileSync(path.join(d, 'empty.jsonl'), '');
    expect(claimOutput(path.join(d, 'empty.jsonl'), 'file').exists).toBe(true);
    mkdirSync(path.join(d, 'full'));
    writeFileSync(path.join(d, 'full', 'keep.txt'), 'mine');
    expect(usage(() => claimOutput(path.join(d, 'full'), 'dir', { flag: '--out' })).message).toMatch(/the output \(--out\) exists \(a directory holding 1 entry\)/);
    mkdirSync(path.join(d, 'hollow'));
    expect(claimOutput(path.join(d, 'hollow'), 'dir').exists).toBe(true);
  });

  it('a directory where a file goes, or a file where a directory goes, is a usage error (not EISDIR)', () => {
    const d = fresh();
    mkdirSync(path.join(d, 'somedir'));
    expect(usage(() => claimOutput(path.join(d, 'somedir'), 'file', { overwrite: true })).message).toMatch(/is an existing directory, but a file is written here: give a file path/);
    writeFileSync(path.join(d, 'afile'), 'x');
    expect(usage(() => claimOutput(path.join(d, 'afile'), 'dir', { overwrite: true })).message).toMatch(/is an existing file, but a directory is written here/);
    // a file where a parent directory should be
    expect(usage(() => claimOutput(path.join(d, 'afile', 'x.jsonl'), 'file')).message).toMatch(/a part of this path is a file, not a directory/);
  });

  it('creates missing parent directories', () => {
    const d = fresh();
    claimOutput(path.join(d, 'a', 'b', 'c.jsonl'), 'file');
    expect(existsSync(path.join(d, 'a', 'b'))).toBe(true);
  });

  it('never an input: the same file, a directory holding an input, a path inside an input directory, through symlinks too', () => {
    const d = fresh();
    const input = path.join(d, 'data', 'examples.jsonl');
    mkdirSync(path.dirname(input));
    writeFileSync(input, '{}\n');
    const o = { overwrite: true, inputs: [input] };
    expect(usage(() => claimOutput(input, 'file', o)).message).toMatch(/the output \(-o\) is the input .*examples\.jsonl; choose another output \(--overwrite never replaces an input\)/);
    expect(usage(() => claimOutput(path.join(d, 'data'), 'dir', o)).message).toMatch(/contains the input .*examples\.jsonl: writing it would delete that input/);
    expect(usage(() => claimOutput(d, 'dir', o)).message).toMatch(/contains the input/);
    const model = path.join(d, 'model');
    mkdirSync(model);
    writeFileSync(path.join(model, 'config.json'), '{}');
    expect(usage(() => claimOutput(path.join(model, 'viz'), 'dir', { inputs: [model] })).message).toMatch(/is inside the input .*model: writing it would change that input/);
    symlinkSync(path.join(d, 'data'), path.join(d, 'link'));
    expect(readlinkSync(path.join(d, 'link'))).toBe(path.join(d, 'data'));
    expect(usage(() => claimOutput(path.join(d, 'link'), 'dir', o)).message).toMatch(/contains the input/);
    expect(usage(() => claimOutput(path.join(d, 'link', 'examples.jsonl'), 'file', o)).message).toMatch(/is the input/);
    // a glob input: its matches are the inputs
    expect(usage(() => claimOutput(input, 'file', { overwrite: true, inputs: [path.join(d, 'data', '*.jsonl')] })).message).toMatch(/is the input/);
    // siblings and remote names are fine
    expect(claimOutput(path.join(d, 'data-out'), 'dir', { inputs: [path.join(d, 'data'), 'ws://host:1', '-', 'openai:m'] }).exists).toBe(false);
    expect(() => checkDistinctOutputs([['-o', path.join(d, 's.json')], ['--stats-out', path.join(d, 's.json')]])).toThrow(/-o .* and --stats-out .* overlap/);
  });

  it('--to must agree with the extension of the output name', () => {
    expect(usage(() => checkOutputFormat('tfrecord', 'x.jsonl')).message).toMatch(/--to tfrecord conflicts with the output name x\.jsonl, which says jsonl: the extension must match the format/);
    expect(usage(() => checkOutputFormat('rlds', 'out/x.tfrecord.gz')).message).toMatch(/which says tfrecord/);
    expect(() => checkOutputFormat('jsonl', 'x.jsonl.gz')).not.toThrow();
    expect(() => checkOutputFormat('tfrecord', 'out/data')).not.toThrow();
    expect(() => checkOutputFormat('jsonl', '-')).not.toThrow();
  });
});

describe('write errors say why', () => {
  const errno = (code: string) => Object.assign(new Error(`${code}: something, open 'x'`), { code });
  it('EROFS is read-only, not "no such file"; EISDIR and ENOTDIR are usage errors', () => {
    expect(writeError(errno('EROFS'), 'out/x').message).toBe('E_IO in out/x: read-only file system: cannot write here');
    expect(writeError(errno('EACCES'), 'x').message).toMatch(/E_IO in x: permission denied/);
    expect(writeError(errno('ENOSPC'), 'x').message).toMatch(/no space left/);
    expect(writeError(errno('EMFILE'), 'x').message).toMatch(/too many open files/);
    expect(writeError(errno('EISDIR'), 'x')).toMatchObject({ code: 'E_USAGE', exitCode: 2 });
    expect(writeError(errno('ENOTDIR'), 'x')).toMatchObject({ code: 'E_USAGE', exitCode: 2 });
    const v = new VlakitError('E_GZIP', 'kept');
    expect(writeError(v, 'x')).toBe(v);
  });
});

describe('atomic replacement', () => {
  it('a file: refused without overwrite; replaced with it; the old one intact when the new write fails', async () => {
    const d = fresh();
    const f = path.join(d, 'out.jsonl');
    await writeJsonl(values(3), f);
    const old = readFileSync(f, 'utf8');
    await expect(writeJsonl(values(2), f)).rejects.toThrow(/exists .*pass --overwrite/);
    await expect(writeJsonl(values(5, 3), f, { overwrite: true })).rejects.toThrow(/bad record 3/);
    expect(readFileSync(f, 'utf8')).toBe(old);
    expect(readdirSync(d)).toEqual(['out.jsonl']);
    await writeJsonl(values(2), f, { overwrite: true });
    expect(readFileSync(f, 'utf8')).toBe('{"i":0}\n{"i":1}\n');
    expect(readdirSync(d)).toEqual(['out.jsonl']);
    await expect(writeOutputFile(f, 'x')).rejects.toThrow(/exists/);
    await writeOutputFile(f, 'x', { overwrite: true });
    expect(readFileSync(f, 'utf8')).toBe('x');
  });

  it('a file that is not a claimed output (a run\'s run.json, a file in a temporary directory) is replaced in place', async () => {
    const d = fresh();
    const f = path.join(d, 'run.json');
    await writeFileAtomic(f, '{"finished": 0}\n');
    await writeFileAtomic(f, '{"finished": 10}\n');
    expect(readFileSync(f, 'utf8')).toBe('{"finished": 10}\n');
    expect(readdirSync(d)).toEqual(['run.json']);
    // a claimed output still refuses a file that appeared while it was written
    const g = new AtomicFile(path.join(d, 'out.jsonl'), { output: {} });
    await g.write('new\n');
    writeFileSync(path.join(d, 'out.jsonl'), 'someone else\n');
    await expect(g.commit()).rejects.toThrow(/appeared while it was being written/);
    await g.abort();
    expect(readFileSync(path.join(d, 'out.jsonl'), 'utf8')).toBe('someone else\n');
  });

  it('an aborted write keeps the old output and leaves no temporary', async () => {
    const d = fresh();
    const f = path.join(d, 'out.jsonl');
    writeFileSync(f, 'old\n');
    const ctl = new AbortController();
    const vals = (async function* () {
      yield { a: 1 };
      ctl.abort(new VlakitError('E_IO', 'interrupted'));
      yield { a: 2 };
    })();
    await expect(writeJsonl(vals, f, { overwrite: true, signal: ctl.signal })).rejects.toThrow(/interrupted/);
    expect(readFileSync(f, 'utf8')).toBe('old\n');
    expect(readdirSync(d)).toEqual(['out.jsonl']);
  });

  it('a directory: built aside, swapped in whole; a failure keeps the old one and its files', async () => {
    const d = fresh();
    const out = path.join(d, 'viz');
    mkdirSync(out);
    writeFileSync(path.join(out, 'unrelated.txt'), 'mine');
    await expect(writeOutputDir(out, async () => {})).rejects.toThrow(/exists \(a directory holding 1 entry\); pass --overwrite/);
    await expect(
      writeOutputDir(out, async (tmp) => {
        writeFileSync(path.join(tmp, 'a.png'), 'half');
        throw new VlakitError('E_MODEL', 'the model failed');
      }, { overwrite: true }),
    ).rejects.toThrow(/the model failed/);
    expect(readdirSync(out)).toEqual(['unrelated.txt']);
    expect(readdirSync(d)).toEqual(['viz']);
    const res = await writeOutputDir(out, async (tmp) => {
      expect(path.basename(tmp)).toMatch(new RegExp(`^\\.viz\\.tmp-${process.pid}-\\d+$`));
      writeFileSync(path.join(tmp, 'a.png'), 'new');
      return 7;
    }, { overwrite: true });
    expect(res).toBe(7);
    expect(readdirSync(out)).toEqual(['a.png']);
    expect(readdirSync(d)).toEqual(['viz']);
  });

  it('temporaries are tracked while written, so an exit handler can remove them', async () => {
    const d = fresh();
    const f = new AtomicFile(path.join(d, 'x.jsonl'));
    await f.write('{}\n');
    expect(liveTemporaries()).toContain(f.tmp);
    expect(existsSync(f.tmp)).toBe(true);
    expect(path.basename(f.tmp)).toMatch(new RegExp(`^\\.x\\.jsonl\\.tmp-${process.pid}-\\d+$`));
    expect(removeTemporariesSync()).toContain(f.tmp);
    expect(existsSync(f.tmp)).toBe(false);
    await f.abort();
    expect(readdirSync(d)).toEqual([]);
  });
});

describe('stale temporaries of killed runs', () => {
  it('are removed (with a note) when their pid is gone; a live process\'s and unrelated files are kept', () => {
    const d = fresh();
    const target = path.join(d, 'out.jsonl');
    const dead = deadPid();
    writeFileSync(path.join(d, `.out.jsonl.tmp-${dead}-3`), 'partial');
    mkdirSync(path.join(d, `.out.jsonl.tmp-${dead}-4`));
    writeFileSync(path.join(d, `.out.jsonl.tmp-${dead}-4`, 'shard'), 'x');
    writeFileSync(path.join(d, `.out.jsonl.tmp-${process.pid}-99`), 'mine, in flight');
    writeFileSync(path.join(d, '.out.jsonl.tmp-notes'), 'a user file');
    writeFileSync(path.join(d, `.other.jsonl.tmp-${dead}-1`), 'another output\'s');
    const notes: string[] = [];
    claimOutput(target, 'file', { onNote: (m) => notes.push(m) });
    expect(readdirSync(d).sort()).toEqual([`.other.jsonl.tmp-${dead}-1`, '.out.jsonl.tmp-notes', `.out.jsonl.tmp-${process.pid}-99`].sort());
    expect(notes).toEqual([`removed 2 stale temporaries of killed vlakit runs beside ${target}: .out.jsonl.tmp-${dead}-3, .out.jsonl.tmp-${dead}-4`]);
  });

  it('an old output set aside by a swap that was killed half-way is put back', () => {
    const d = fresh();
    const dead = deadPid();
    mkdirSync(path.join(d, `.ds.old-${dead}-2`));
    writeFileSync(path.join(d, `.ds.old-${dead}-2`, 'features.json'), '{}');
    const notes: string[] = [];
    removeStaleTemporaries(path.join(d, 'ds'), (m) => notes.push(m));
    expect(readdirSync(d)).toEqual(['ds']);
    expect(readdirSync(path.join(d, 'ds'))).toEqual(['features.json']);
    expect(notes[0]).toMatch(/restored .*ds from \.ds\.old-\d+-2/);
  });
});

/** Fails the first write into shard `k`, as a full disk or a lost mount would. */
class FailingShards extends ShardedTfrecordWriter {
  constructor(
    opts: ConstructorParameters<typeof ShardedTfrecordWriter>[0],
    private readonly k: number,
  ) {
    super(opts);
  }
  protected override open(index: number): AtomicFile {
    const f = super.open(index);
    if (index === this.k) {
      f.write = async () => {
        throw writeError(Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' }), f.target);
      };
    }
    return f;
  }
}

function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}

describe('sharded TFRecord writes', () => {
  const record = new Uint8Array(100).fill(7);

  it('a failure on shard k leaves no final-named shard and no temporary', async () => {
    const d = fresh();
    const w = new FailingShards({ shardName: (i, n) => path.join(d, `data.tfrecord-${String(i).padStart(5, '0')}-of-${String(n).padStart(5, '0')}`), maxShardBytes: 200 }, 5);
    let err: unknown;
    try {
      for (let i = 0; i < 40; i++) await w.write(record);
      await w.commit();
    } catch (e) {
      err = e;
      await w.abort();
    }
    expect(err).toMatchObject({ code: 'E_IO', message: expect.stringMatching(/no space left on the device/) });
    expect(readdirSync(d)).toEqual([]);
  });

  it('a rename failing at commit takes back the shards already renamed: no partial set under final names', async () => {
    const d = fresh();
    const name = (i: number, n: number) => path.join(d, `data.tfrecord-${String(i).padStart(5, '0')}-of-${String(n).padStart(5, '0')}`);
    mkdirSync(name(3, 6)); // an empty directory where shard 3's final name goes: its rename fails (EISDIR)
    const w = new ShardedTfrecordWriter({ shardName: name, maxShardBytes: 200 });
    let err: unknown;
    try {
      for (let i = 0; i < 6; i++) await w.write(record);
      await w.commit();
    } catch (e) {
      err = e;
      await w.abort();
    }
    expect(err).toMatchObject({ code: 'E_USAGE' });
    expect(readdirSync(d)).toEqual([path.basename(name(3, 6))]);
  });

  it('closes each shard when it is full: hundreds of shards, one descriptor at a time; renamed only at commit', async (ctx) => {
    if (!existsSync('/proc/self/fd')) ctx.skip();
    const d = fresh();
    const w = new ShardedTfrecordWriter({ shardName: (i, n) => path.join(d, `m.tfrecord-${String(i).padStart(5, '0')}-of-${String(n).padStart(5, '0')}`), maxShardBytes: 150 });
    const base = openFds();
    let most = 0;
    for (let i = 0; i < 320; i++) {
      await w.write(record); // 116 framed bytes: one record per shard
      most = Math.max(most, openFds());
    }
    expect(most - base).toBeLessThanOrEqual(3);
    expect(readdirSync(d).filter((f) => !f.startsWith('.'))).toEqual([]); // nothing final before the last shard
    expect(readdirSync(d)).toHaveLength(320);
    const res = await w.commit();
    expect(res.files).toHaveLength(320);
    const names = readdirSync(d).sort();
    expect(names[0]).toBe('m.tfrecord-00000-of-00320');
    expect(names[319]).toBe('m.tfrecord-00319-of-00320');
    expect(readFileSync(path.join(d, names[7])).length).toBe(116);
  });
});
