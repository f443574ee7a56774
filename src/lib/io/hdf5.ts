/**
 * HDF5 datasets in the robomimic / LIBERO layout, read as step records:
 * `data/demo_N/{actions [T, D], obs/<key> [T, ...], rewards [T], dones [T]}`, episodes in demo-number order.
 * Observations of uint8 [T, H, W, C] (C 1, 3 or 4) are camera images (encoded as PNG, pixels exact); others are
 * per-step numbers (a scalar for [T], a list for [T, n], nested lists beyond). The instruction comes from, first
 * found: the demo's `language_instruction` attribute, `data`'s `problem_info` JSON (LIBERO's
 * `language_instruction`), `data`'s `language_instruction`; `data`'s `env_args` (robomimic) is kept in
 * `episode_metadata`. Read with h5wasm (the HDF5 C library compiled to WebAssembly), loaded on first use.
 */
import sharp from 'sharp';
import { VlakitError } from '../errors.js';
import type { ImageJson } from './json.js';
import type { StepRecord } from './records.js';

/** HDF5's signature, at byte 0 of a file (other offsets, for files with a user block, are not looked at). */
export function isHdf5(head: Uint8Array): boolean {
  const sig = [0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a];
  return head.length >= 8 && sig.every((b, i) => head[i] === b);
}

interface H5Dataset {
  type: 'Dataset';
  shape: number[];
  dtype: unknown;
  value: ArrayLike<number | bigint> | unknown;
}
interface H5Group {
  type: 'Group';
  keys(): string[];
  get(name: string): H5Group | H5Dataset | null;
  attrs: Record<string, { value: unknown }>;
}
interface H5File extends H5Group {
  close(): void;
}

let h5: Promise<{ File: new (path: string, mode: string) => H5File }> | undefined;
async function loadH5wasm(): Promise<{ File: new (path: string, mode: string) => H5File }> {
  h5 ??= (async () => {
    const mod = (await import('h5wasm/node')) as unknown as { default: { ready: Promise<unknown>; File: new (path: string, mode: string) => H5File } };
    await mod.default.ready;
    return mod.default;
  })();
  return h5;
}

const isGroup = (n: H5Group | H5Dataset | null): n is H5Group => n?.type === 'Group';
const isDataset = (n: H5Group | H5Dataset | null): n is H5Dataset => n?.type === 'Dataset';

function attr(g: H5Group, name: string): unknown {
  try {
    return g.attrs[name]?.value;
  } catch {
    return undefined;
  }
}

function jsonAttr(g: H5Group, name: string): Record<string, unknown> | undefined {
  const v = attr(g, name);
  if (typeof v !== 'string') return undefined;
  try {
    const o = JSON.parse(v) as unknown;
    return o && typeof o === 'object' ? (o as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** The values of a dataset as plain numbers, row-major. */
function numbers(d: H5Dataset): number[] {
  const v = d.value as ArrayLike<number | bigint | boolean>;
  return Array.from({ length: v.length }, (_, i) => Number(v[i]));
}

/** Per-step rows of a [T, ...] dataset: scalars for [T], lists for [T, n], nested beyond. */
function rows(d: H5Dataset, T: number, field: string, file: string): unknown[] {
  if (d.shape[0] !== T) throw new VlakitError('E_RECORD_INVALID', `${d.shape[0]} rows, but the demo has ${T} actions`, { file, field });
  const flat = numbers(d);
  const inner = d.shape.slice(1);
  const n = inner.reduce((a, b) => a * b, 1);
  const nest = (at: number, dims: number[]): unknown => (dims.length === 0 ? flat[at] : Array.from({ length: dims[0] }, (_, i) => nest(at + i * dims.slice(1).reduce((a, b) => a * b, 1), dims.slice(1))));
  return Array.from({ length: T }, (_, t) => (inner.length === 0 ? flat[t] : nest(t * n, inner)));
}

function isImageDataset(d: H5Dataset): boolean {
  const [, h, w, c] = d.shape;
  return d.shape.length === 4 && h > 1 && w > 1 && [1, 3, 4].includes(c) && d.value instanceof Uint8Array;
}

async function png(pixels: Uint8Array, h: number, w: number, c: number): Promise<ImageJson> {
  const b = await sharp(Buffer.from(pixels.buffer, pixels.byteOffset, pixels.byteLength), { raw: { width: w, height: h, channels: c as 1 | 3 | 4 } })
    .png()
    .toBuffer();
  return { mime: 'image/png', b64: b.toString('base64') };
}

const demoNumber = (name: string): number => Number(/(\d+)$/.exec(name)?.[1] ?? Number.MAX_SAFE_INTEGER);

/**
 * The steps of every demo of an HDF5 file, in order.
 * @example for await (const s of readHdf5('libero_spatial/pick_up_the_bowl_demo.hdf5')) ...
 */
export async function* readHdf5(file: string, opts: { signal?: AbortSignal } = {}): AsyncGenerator<StepRecord> {
  const { File } = await loadH5wasm();
  let f: H5File;
  try {
    f = new File(file, 'r');
  } catch (err) {
    throw new VlakitError('E_RECORD_INVALID', `cannot open as HDF5: ${(err as Error).message}`, { file }, { cause: err });
  }
  try {
    const data = f.get('data');
    if (!isGroup(data)) throw new VlakitError('E_FORMAT_UNKNOWN', 'an HDF5 file without a "data" group; expected the robomimic/LIBERO layout data/demo_N/{actions, obs/*, rewards, dones}', { file });
    const problem = jsonAttr(data, 'problem_info');
    const envArgs = attr(data, 'env_args');
    const dataInstruction = (typeof problem?.language_instruction === 'string' ? problem.language_instruction : undefined) ?? (typeof attr(data, 'language_instruction') === 'string' ? (attr(data, 'language_instruction') as string) : undefined);
    const demos = data.keys().filter((k) => isGroup(data.get(k))).sort((a, b) => demoNumber(a) - demoNumber(b) || a.localeCompare(b));
    for (const name of demos) {
      opts.signal?.throwIfAborted();
      const demo = data.get(name) as H5Group;
      const where = (field: string) => `data/${name}/${field}`;
      const actions = demo.get('actions');
      if (!isDataset(actions) || actions.shape.length < 1) throw new VlakitError('E_RECORD_INVALID', 'a demo without an "actions" dataset', { file, field: where('actions') });
      const T = actions.shape[0];
      const act = rows(actions, T, where('actions'), file);
      const rewards = demo.get('rewards');
      const dones = demo.get('dones');
      const reward = isDataset(rewards) ? rows(rewards, T, where('rewards'), file) : undefined;
      const done = isDataset(dones) ? rows(dones, T, where('dones'), file) : undefined;
      const obsGroup = demo.get('obs');
      const obs: Record<string, { rows?: unknown[]; image?: H5Dataset }> = {};
      if (isGroup(obsGroup)) {
        for (const k of obsGroup.keys()) {
          const d = obsGroup.get(k);
          if (!isDataset(d)) continue;
          obs[k] = isImageDataset(d) ? { image: d } : { rows: rows(d, T, where(`obs/${k}`), file) };
        }
      }
      const demoInstruction = attr(demo, 'language_instruction');
      const instruction = typeof demoInstruction === 'string' ? demoInstruction : (dataInstruction ?? '');
      for (let t = 0; t < T; t++) {
        const observation: Record<string, unknown> = {};
        for (const [k, o] of Object.entries(obs)) {
          if (o.image) {
            const [, h, w, c] = o.image.shape;
            const px = o.image.value as Uint8Array;
            observation[k] = await png(px.subarray(t * h * w * c, (t + 1) * h * w * c), h, w, c);
          } else observation[k] = o.rows![t];
        }
        const step: StepRecord = {
          episode_id: name,
          step: t,
          is_first: t === 0,
          is_last: t === T - 1,
          is_terminal: done ? Number(done[t]) !== 0 && t === T - 1 : t === T - 1,
          observation,
          action: act[t],
          ...(reward ? { reward: reward[t] } : {}),
          language_instruction: instruction,
        };
        if (t === 0 && typeof envArgs === 'string') step.episode_metadata = { env_args: envArgs, file_path: file };
        yield step;
      }
    }
  } finally {
    f.close();
  }
}
