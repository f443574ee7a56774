import { readFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { WebSocket } from 'ws';
import { beforeAll, describe, expect, it } from 'vitest';
import { TextCodec } from '../../src/lib/actions/index.js';
import { writeOutputDir } from '../../src/lib/io/outputs.js';
import { type NdArray, unpackb } from '../../src/lib/io/msgpack-numpy.js';
import { selectBackend } from '../../src/lib/model/backend.js';
import { writeModelFiles } from '../../src/lib/model/checkpoint.js';
import { preset } from '../../src/lib/model/config.js';
import { VlaModel } from '../../src/lib/model/model.js';
import { buildTokenizer } from '../../src/lib/model/tokenizer.js';
import { FIXTURES, tempDir } from '../helpers.js';

const dir = tempDir();
const BIN = path.resolve('bin/run.js');
const request = readFileSync(path.join(FIXTURES, 'openpi/request_libero.msgpack'));
let ckpt: string;

/** An untrained tiny policy: its output never parses, so each cycle is the safe no-op [0, 0, 0, 1]. */
beforeAll(async () => {
  await selectBackend('wasm');
  const tok = await buildTokenizer(['hello world', '[[0.1, 0.2]]'], 80);
  const cfg = preset('tiny', tok.vocabSize, 1);
  const m = VlaModel.init({ ...cfg, initializer_range: 0.3, text_config: { ...cfg.text_config, max_position_embeddings: 1024 } }, 5);
  ckpt = path.join(dir, 'garbage');
  await writeOutputDir(ckpt, (d) => writeModelFiles(d, m, tok.json, { actionCodec: new TextCodec(3).describe() }));
  m.dispose();
}, 60_000);

describe('vlakit rollout serve --protocol openpi (the command)', () => {
  it('an openpi client sending the fixture request gets the metadata map and an actions reply; the API key is required', async () => {
    const proc = execa('node', [BIN, 'rollout', 'serve', '--policy', ckpt, '--protocol', 'openpi', '--mode', 'direct', '--resample', '0', '--max-new-tokens', '4', '--port', '0', '-q'], { reject: false, env: { VLAKIT_POLICY_API_KEY: 'k1' } });
    try {
      const url = await new Promise<string>((resolve, reject) => {
        let err = '';
        proc.stderr!.on('data', (d: Buffer) => {
          err += d.toString();
          const m = /listening on (ws:\/\/\S+) \(openpi protocol\)/.exec(err);
          if (m) resolve(m[1]);
        });
        proc.once('exit', () => reject(new Error(`serve exited: ${err}`)));
      });
      // without the key: HTTP 401
      const refused = await new Promise<number>((resolve) => {
        const ws = new WebSocket(url);
        ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
        ws.on('error', () => {});
      });
      expect(refused).toBe(401);
      // as openpi's client: Authorization: Api-Key KEY, then the packed observation
      const ws = new WebSocket(url, { headers: { Authorization: 'Api-Key k1' } });
      const frames: Buffer[] = [];
      const next = (n: number) => new Promise<Buffer>((resolve) => {
        const check = () => (frames.length >= n ? resolve(frames[n - 1]) : setTimeout(check, 10));
        check();
      });
      ws.on('message', (d: Buffer) => frames.push(d));
      const meta = unpackb(new Uint8Array(await next(1))) as Record<string, unknown>;
      expect(meta).toMatchObject({ engine: 'tfjs', mode: 'direct', action_dim: 4 });
      expect(meta.type).toBeUndefined();
      ws.send(request);
      const reply = unpackb(new Uint8Array(await next(2))) as { actions: NdArray; server_timing: { infer_ms: number }; policy_timing: { infer_ms: number } };
      expect(reply.actions.dtype).toBe('<f4');
      expect(reply.actions.shape).toEqual([1, 4]);
      expect([...reply.actions.numbers()]).toEqual([0, 0, 0, 1]); // the no-op of output that does not parse
      expect(reply.server_timing.infer_ms).toBeGreaterThan(0);
      expect(reply.policy_timing.infer_ms).toBeGreaterThanOrEqual(0);
      ws.close();
    } finally {
      proc.kill('SIGTERM');
    }
    expect((await proc).exitCode).toBe(0);
  }, 60_000);

  it('openpi flags are checked before the model loads', async () => {
    const bad = await execa('node', [BIN, 'rollout', 'serve', '--policy', path.join(dir, 'missing'), '--protocol', 'openpi', '--obs-map', 'observation/image=eye'], { reject: false });
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toMatch(/invalid --obs-map entry "observation\/image=eye"/);
    const without = await execa('node', [BIN, 'rollout', 'serve', '--policy', ckpt, '--obs-map', 'droid'], { reject: false });
    expect(without.exitCode).toBe(2);
    expect(without.stderr).toMatch(/--obs-map applies only with --protocol openpi/);
  }, 30_000);
});
