/**
 * openpi's policy-server protocol (openpi's WebsocketPolicyServer / openpi_client's WebsocketClientPolicy), both
 * ways. One websocket, binary frames of msgpack-numpy (src/lib/io/msgpack-numpy.ts):
 * - server -> client, on connect: the metadata map;
 * - client -> server: an observation dict (`observation/image` uint8 [H, W, 3], `observation/state` float32,
 *   `prompt`, ...) -> `{actions: float32 [H, D], server_timing: {infer_ms}, policy_timing: {infer_ms}}`;
 * - a request that fails: the error as a text frame, then close 1011 (the client raises on a str frame).
 * The client may send `Authorization: Api-Key KEY`. There is no reset message: an episode is the client's business.
 *
 * Observations map to vlakit's (cameras image_0, wrist_image, ...; state; the instruction) by a key map: a preset
 * (libero, aloha, droid) or `openpi-key=vlakit-name` pairs, nested maps addressed with `/` (`images/cam_high`).
 */
import sharp from 'sharp';
import { WebSocket } from 'ws';
import { VlakitError } from '../errors.js';
import { type ImageJson, isImageJson } from '../io/json.js';
import { Float64, NdArray, type Packable, packb, unpackb } from '../io/msgpack-numpy.js';
import { ReplyQueue } from '../util/reply-queue.js';
import type { ActContext } from '../env/rollout.js';
import { ChunkPolicy, type Cycle } from './model-policy.js';

export const OPENPI_ERROR_REASON = 'Internal server error. Traceback included in previous frame.';

/** One pair of the key map: the openpi key, the vlakit name it is, and how its array is laid out. */
export interface ObsMapEntry {
  /** The openpi key (`observation/image`, `images/cam_high` for a nested map). */
  key: string;
  /** image_0, wrist_image, image_N (a camera), state, or instruction. */
  target: string;
  /** A camera sent channels first, [3, H, W] (ALOHA's images); default [H, W, 3]. */
  chw?: boolean;
}

/** The key maps of openpi's LIBERO, ALOHA and DROID example clients. */
export const OBS_PRESETS = {
  libero: 'observation/image=image_0,observation/wrist_image=wrist_image,observation/state=state,prompt=instruction',
  aloha: 'images/cam_high=image_0:chw,images/cam_low=image_1:chw,images/cam_left_wrist=wrist_image:chw,images/cam_right_wrist=image_2:chw,state=state,prompt=instruction',
  droid: 'observation/exterior_image_1_left=image_0,observation/wrist_image_left=wrist_image,observation/joint_position=state,observation/gripper_position=state,prompt=instruction',
} as const;

const TARGET = /^(image_\d+|wrist_image|state|instruction)$/;

/**
 * A key map from `--obs-map`: a preset name or `openpi-key=vlakit-name[:chw],...`.
 * @example parseObsMap('observation/image=image_0,prompt=instruction')
 */
export function parseObsMap(spec: string): ObsMapEntry[] {
  const text = (OBS_PRESETS as Record<string, string>)[spec] ?? spec;
  const entries: ObsMapEntry[] = [];
  for (const part of text.split(',').map((s) => s.trim()).filter(Boolean)) {
    const m = /^([^=]+)=([^=:]+)(?::(chw|hwc))?$/.exec(part);
    if (!m || !TARGET.test(m[2].trim())) {
      throw new VlakitError('E_USAGE', `invalid --obs-map entry "${part}"; expected openpi-key=NAME (NAME: image_0, image_1, ..., wrist_image, state or instruction; a camera may end in :chw), or a preset: ${Object.keys(OBS_PRESETS).join(', ')}`);
    }
    const e: ObsMapEntry = { key: m[1].trim(), target: m[2].trim(), ...(m[3] === 'chw' ? { chw: true } : {}) };
    if (e.chw && !isCamera(e.target)) throw new VlakitError('E_USAGE', `--obs-map entry "${part}": only a camera (image_N, wrist_image) takes :chw`);
    if (entries.some((x) => x.key === e.key)) throw new VlakitError('E_USAGE', `--obs-map names the openpi key "${e.key}" twice`);
    if (isCamera(e.target) && entries.some((x) => x.target === e.target)) throw new VlakitError('E_USAGE', `--obs-map maps two openpi keys to the camera "${e.target}"`);
    if (e.target === 'instruction' && entries.some((x) => x.target === 'instruction')) throw new VlakitError('E_USAGE', '--obs-map maps two openpi keys to the instruction');
    entries.push(e);
  }
  if (!entries.some((e) => isCamera(e.target))) throw new VlakitError('E_USAGE', `--obs-map "${spec}" maps no camera (image_0, wrist_image, ...)`);
  return entries;
}

const isCamera = (t: string) => t !== 'state' && t !== 'instruction';

/** The value at an openpi key: the flat key first (LIBERO's `observation/image`), else a path through nested maps. */
function lookup(obs: Record<string, unknown>, key: string): unknown {
  if (key in obs) return obs[key];
  let v: unknown = obs;
  for (const part of key.split('/')) {
    if (v === null || typeof v !== 'object' || v instanceof NdArray || !(part in v)) return undefined;
    v = (v as Record<string, unknown>)[part];
  }
  return v;
}

/** A uint8 image array ([H, W, C] or, with chw or when only the first axis can be channels, [C, H, W]) as PNG. */
export async function arrayToPng(a: NdArray, key: string, chw?: boolean): Promise<ImageJson> {
  if (a.dtype !== '|u1') throw new VlakitError('E_USAGE', `openpi key "${key}": a camera image must be uint8 (openpi_client.image_tools.convert_to_uint8), got dtype ${a.dtype}`);
  if (a.shape.length !== 3) throw new VlakitError('E_USAGE', `openpi key "${key}": a camera image is [H, W, 3] or [3, H, W], got shape [${a.shape.join(', ')}]`);
  const ch = (n: number) => n === 1 || n === 3 || n === 4;
  const first = chw ?? (!ch(a.shape[2]) && ch(a.shape[0]));
  const [h, w, c] = first ? [a.shape[1], a.shape[2], a.shape[0]] : [a.shape[0], a.shape[1], a.shape[2]];
  if (!ch(c) || h === 0 || w === 0) throw new VlakitError('E_USAGE', `openpi key "${key}": a camera image is [H, W, 3] or [3, H, W], got shape [${a.shape.join(', ')}]`);
  let px = a.data;
  if (first) {
    // [C, H, W] -> [H, W, C]
    px = new Uint8Array(h * w * c);
    for (let k = 0; k < c; k++) for (let i = 0; i < h * w; i++) px[i * c + k] = a.data[k * h * w + i];
  }
  const png = await sharp(Buffer.from(px.buffer, px.byteOffset, px.byteLength), { raw: { width: w, height: h, channels: c as 1 | 3 | 4 } }).png().toBuffer();
  return { mime: 'image/png', b64: png.toString('base64') };
}

/** An encoded camera image as a uint8 array, [H, W, 3] or [3, H, W]. */
export async function imageToArray(img: ImageJson, chw?: boolean): Promise<NdArray> {
  const { data, info } = await sharp(Buffer.from(img.b64, 'base64')).removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
  const [h, w, c] = [info.height, info.width, info.channels];
  const px = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (!chw) return NdArray.from(new Uint8Array(px), [h, w, c]);
  // [H, W, C] -> [C, H, W]
  const out = new Uint8Array(h * w * c);
  for (let k = 0; k < c; k++) for (let i = 0; i < h * w; i++) out[k * h * w + i] = px[i * c + k];
  return NdArray.from(out, [c, h, w]);
}

/**
 * An openpi observation dict as vlakit's observation and instruction: mapped cameras become PNG images (in the
 * map's order), mapped state arrays are concatenated, keys the map does not name are ignored.
 */
export async function fromOpenpiObservation(obs: unknown, map: readonly ObsMapEntry[], defaultPrompt = ''): Promise<{ observation: Record<string, unknown>; instruction: string }> {
  if (obs === null || typeof obs !== 'object' || Array.isArray(obs) || obs instanceof NdArray || obs instanceof Uint8Array) {
    throw new VlakitError('E_USAGE', `an openpi request is an observation dict (msgpack map), got ${obs === null ? 'nil' : Array.isArray(obs) ? 'a list' : typeof obs}`);
  }
  const o = obs as Record<string, unknown>;
  const observation: Record<string, unknown> = {};
  const state: number[] = [];
  let instruction: string | undefined;
  for (const e of map) {
    const v = lookup(o, e.key);
    if (v === undefined) continue;
    if (e.target === 'instruction') {
      if (typeof v !== 'string') throw new VlakitError('E_USAGE', `openpi key "${e.key}" (the instruction) must be a str`);
      instruction = v;
    } else if (e.target === 'state') {
      const nums = v instanceof NdArray ? [...v.numbers()] : Array.isArray(v) && v.every((x) => typeof x === 'number') ? (v as number[]) : typeof v === 'number' ? [v] : undefined;
      if (!nums || !nums.every(Number.isFinite)) throw new VlakitError('E_USAGE', `openpi key "${e.key}" (state) must be an array of finite numbers`);
      state.push(...nums);
    } else {
      if (!(v instanceof NdArray)) throw new VlakitError('E_USAGE', `openpi key "${e.key}" (camera ${e.target}) must be a numpy uint8 array`);
      observation[e.target] = await arrayToPng(v, e.key, e.chw);
    }
  }
  if (!Object.values(observation).some(isImageJson)) {
    const cams = map.filter((e) => isCamera(e.target)).map((e) => e.key);
    throw new VlakitError('E_USAGE', `the observation holds none of the mapped camera keys (${cams.join(', ')}); it has ${Object.keys(o).join(', ') || 'no keys'}; see --obs-map`);
  }
  if (map.some((e) => e.target === 'state')) observation.state = state;
  return { observation, instruction: instruction ?? defaultPrompt };
}

/** vlakit's observation as the openpi observation dict the map describes (the inverse of fromOpenpiObservation). */
export async function toOpenpiObservation(obs: Record<string, unknown>, instruction: string, map: readonly ObsMapEntry[]): Promise<Record<string, Packable>> {
  const out: Record<string, Packable> = {};
  const put = (key: string, v: Packable) => {
    // observation/... keys are flat (LIBERO, DROID); other paths are nested maps (ALOHA's images/cam_high)
    if (key.startsWith('observation/') || !key.includes('/')) return void (out[key] = v);
    const parts = key.split('/');
    let at = out as Record<string, Packable>;
    for (const p of parts.slice(0, -1)) at = (at[p] ??= {}) as Record<string, Packable>;
    at[parts.at(-1)!] = v;
  };
  for (const e of map) {
    if (e.target === 'instruction') put(e.key, instruction);
    else if (e.target === 'state') {
      if (Array.isArray(obs.state)) put(e.key, NdArray.from(Float32Array.from(obs.state as number[])));
    } else if (isImageJson(obs[e.target])) put(e.key, await imageToArray(obs[e.target] as ImageJson, e.chw));
  }
  return out;
}

/** How the server's actions become vlakit's [dx, dy, dz, (droll, dpitch, dyaw,) gripper] steps. */
export interface ActionAdapter {
  /** Indices of the server's action vector, in vlakit's order (4 or 7 of them); default: all, which must be 4 or 7. */
  dims?: number[];
  /** The translations are absolute positions (targets), turned into steps from the observed position. */
  absolute?: boolean;
  /** Multiplies the non-gripper numbers: one factor, or one per non-gripper dimension. */
  scale?: number[];
  /** The server's gripper values for open and closed, mapped linearly onto vlakit's 1 (open) and 0 (closed). */
  gripper?: [open: number, closed: number];
}

/** Checks an adapter before anything runs (usage errors name the flags). */
export function checkActionAdapter(a: ActionAdapter): void {
  if (a.dims) {
    if (a.dims.length !== 4 && a.dims.length !== 7) throw new VlakitError('E_USAGE', `--action-dims names ${a.dims.length} indices; vlakit's actions have 4 [dx, dy, dz, gripper] or 7 [dx, dy, dz, droll, dpitch, dyaw, gripper]`);
    if (new Set(a.dims).size !== a.dims.length) throw new VlakitError('E_USAGE', `--action-dims names an index twice: ${a.dims.join(',')}`);
  }
  if (a.scale && a.dims && a.scale.length !== 1 && a.scale.length !== a.dims.length - 1) throw new VlakitError('E_USAGE', `--action-scale takes one factor or one per non-gripper dimension (${a.dims.length - 1}), got ${a.scale.length}`);
  if (a.scale && !a.dims && a.scale.length !== 1 && a.scale.length !== 3 && a.scale.length !== 6) throw new VlakitError('E_USAGE', `--action-scale takes one factor or one per non-gripper dimension (3 or 6), got ${a.scale.length}`);
  if (a.gripper && a.gripper[0] === a.gripper[1]) throw new VlakitError('E_USAGE', `--gripper-range needs two different values for open and closed, got ${a.gripper.join(',')}`);
}

/**
 * The server's action chunk [H, D] as vlakit steps. Absolute targets become steps: the first from the observed
 * position (`state[0..2]`), each next one from the previous target.
 */
export function adaptActions(actions: NdArray, a: ActionAdapter, state: readonly number[] | undefined, url: string): number[][] {
  const shape = actions.shape.length === 1 ? [1, actions.shape[0]] : actions.shape;
  if (shape.length !== 2 || shape[0] === 0) throw new VlakitError('E_IO', `the openpi server at ${url} answered actions of shape [${actions.shape.join(', ')}]; expected [H, D] with H >= 1`);
  const [h, d] = shape;
  const flat = actions.numbers();
  const dims = a.dims ?? Array.from({ length: d }, (_, i) => i);
  if (!a.dims && d !== 4 && d !== 7) throw new VlakitError('E_USAGE', `the openpi server at ${url} answers ${d}-D actions; say which ${d > 7 ? 'of its dimensions' : 'dimensions'} make vlakit's 4-D [dx, dy, dz, gripper] or 7-D action with --action-dims (e.g. --action-dims 0,1,2,${d - 1})`);
  const bad = dims.find((i) => i >= d);
  if (bad !== undefined) throw new VlakitError('E_USAGE', `--action-dims names index ${bad}, but the openpi server at ${url} answers ${d}-D actions (indices 0-${d - 1})`);
  let prev = state?.slice(0, 3);
  if (a.absolute && (!prev || prev.length < 3 || !prev.every(Number.isFinite))) throw new VlakitError('E_USAGE', '--action-absolute needs the observed position: the observation has no state [x, y, z, ...]');
  const out: number[][] = [];
  for (let t = 0; t < h; t++) {
    const v = dims.map((i) => flat[t * d + i]);
    if (!v.every(Number.isFinite)) throw new VlakitError('E_IO', `the openpi server at ${url} answered a non-finite action at row ${t}: [${v.join(', ')}]`);
    const g = v.length - 1;
    for (let i = 0; i < g; i++) v[i] *= a.scale ? (a.scale.length === 1 ? a.scale[0] : a.scale[i]) : 1;
    if (a.gripper) v[g] = Math.min(1, Math.max(0, (v[g] - a.gripper[1]) / (a.gripper[0] - a.gripper[1])));
    if (a.absolute) {
      const target = v.slice(0, 3);
      for (let i = 0; i < 3; i++) v[i] = target[i] - prev![i];
      prev = target;
    }
    out.push(v);
  }
  return out;
}

/** A client of an openpi policy server (openpi's `serve_policy.py`, or `vlakit rollout serve --protocol openpi`). */
export class OpenpiClient {
  metadata: Record<string, unknown> = {};
  private readonly replies: ReplyQueue<unknown>;
  private lastText: string | undefined;

  private constructor(
    private readonly ws: WebSocket,
    readonly url: string,
    timeoutMs: number,
  ) {
    this.replies = new ReplyQueue({
      timeout: { ms: timeoutMs, error: () => new VlakitError('E_IO', `no answer from the openpi server at ${url} within ${timeoutMs} ms`), after: () => ws.terminate() },
      capacity: { max: 1, error: () => new VlakitError('E_IO', 'OpenpiClient: one request at a time') },
    });
  }

  get failed(): boolean {
    return this.replies.failure !== undefined;
  }

  /**
   * Connects (with `Authorization: Api-Key KEY` when a key is given) and reads the metadata map.
   * @example const c = await OpenpiClient.connect('ws://gpu-box:8000'); const { actions } = await c.infer({ 'observation/image': img, prompt: 'pick' })
   */
  static async connect(url: string, o: { apiKey?: string; timeoutMs?: number } = {}): Promise<OpenpiClient> {
    const ws = new WebSocket(url, { perMessageDeflate: false, headers: o.apiKey ? { Authorization: `Api-Key ${o.apiKey}` } : undefined });
    const c = new OpenpiClient(ws, url, o.timeoutMs ?? 60_000);
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (!isBinary) {
        // openpi's server reports a failure as text, then closes
        c.lastText = data.toString();
        c.replies.fail(new VlakitError('E_IO', `the openpi server at ${url} reported an error:\n${c.lastText.trimEnd()}`));
        return;
      }
      let m: unknown;
      try {
        m = unpackb(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      } catch (err) {
        c.replies.fail(new VlakitError('E_IO', `the openpi server at ${url} sent a message that is not msgpack-numpy (${(err as Error).message})`));
        ws.terminate();
        return;
      }
      c.replies.resolve(m); // dropped when nothing was asked
    });
    ws.on('unexpected-response', (_req, res) => {
      c.replies.fail(new VlakitError('E_IO', `the openpi server at ${url} refused the connection: HTTP ${res.statusCode}${res.statusCode === 401 || res.statusCode === 403 ? ' (a wrong or missing --api-key?)' : ''}`));
      ws.terminate();
    });
    ws.on('close', (code: number, reason: Buffer) => {
      c.replies.fail(new VlakitError('E_IO', `the openpi server at ${url} closed the connection${code === 1005 ? '' : ` (${code}${reason.length ? `: ${reason.toString()}` : ''})`}`));
    });
    ws.on('error', (err) => c.replies.fail(new VlakitError('E_IO', `cannot talk to the openpi server at ${url}: ${err.message}`)));
    let meta: unknown;
    try {
      meta = await c.replies.wait();
    } catch (err) {
      ws.terminate();
      throw err;
    }
    if (meta === null || typeof meta !== 'object' || Array.isArray(meta) || meta instanceof NdArray) {
      ws.terminate();
      throw new VlakitError('E_IO', `the openpi server at ${url} did not start with a metadata map; is it an openpi policy server?`);
    }
    c.metadata = meta as Record<string, unknown>;
    return c;
  }

  /** One observation dict in, the server's reply map out (`actions`, `server_timing`, ...). */
  async infer(obs: Record<string, Packable>): Promise<Record<string, unknown>> {
    const answer = this.replies.wait();
    this.ws.send(packb(obs));
    const r = await answer;
    if (r === null || typeof r !== 'object' || Array.isArray(r) || r instanceof NdArray || !((r as { actions?: unknown }).actions instanceof NdArray)) {
      throw new VlakitError('E_IO', `the openpi server at ${this.url} answered without an actions array`);
    }
    return r as Record<string, unknown>;
  }

  close(): void {
    this.replies.fail(new VlakitError('E_IO', 'the client was closed'));
    this.ws.close();
  }
}

const timingMs = (t: unknown): number | undefined => {
  const v = t && typeof t === 'object' ? (t as Record<string, unknown>).infer_ms : undefined;
  return typeof v === 'number' ? v : v instanceof Float64 ? v.value : undefined;
};

/** A policy served by openpi (`rollout --policy ws://host:port --protocol openpi`): one infer per control cycle. */
export class OpenpiPolicy extends ChunkPolicy {
  readonly name: string;
  private client: OpenpiClient | undefined;
  private cycles = 0;

  constructor(
    readonly url: string,
    private readonly o: { obsMap: readonly ObsMapEntry[]; actions: ActionAdapter; apiKey?: string; timeoutMs?: number },
  ) {
    super();
    checkActionAdapter(o.actions);
    this.name = `openpi:${url}`;
  }

  async reset(ctx: { instruction: string; seed: number }): Promise<void> {
    super.reset(ctx);
    this.cycles = 0;
    // openpi has no reset message (its client's reset does nothing remotely): (re)connect when needed
    if (!this.client || this.client.failed) this.client = await OpenpiClient.connect(this.url, { apiKey: this.o.apiKey, timeoutMs: this.o.timeoutMs });
  }

  async cycle(obs: Record<string, unknown>, ctx: ActContext): Promise<Cycle | null> {
    const request = await toOpenpiObservation(obs, ctx.instruction, this.o.obsMap);
    const t0 = performance.now();
    const r = await this.client!.infer(request);
    const rtt = performance.now() - t0;
    const actions = adaptActions(r.actions as NdArray, this.o.actions, Array.isArray(obs.state) ? (obs.state as number[]) : undefined, this.url);
    const server = timingMs(r.server_timing);
    const model = timingMs(r.policy_timing) ?? server ?? 0;
    const raw = r.actions as NdArray;
    return { actions, info: { cycle: this.cycles++, server_ms: server, round_trip_ms: Math.round(rtt * 100) / 100, openpi_actions_shape: [...raw.shape] }, modelMs: model };
  }

  close(): void {
    this.client?.close();
  }
}

/**
 * One connection of `rollout serve --protocol openpi`: each request is an observation; the policy is reset when
 * the instruction changes (openpi has no reset message) and after a plan that finished.
 */
export class OpenpiSession {
  private instruction: string | undefined;
  private step = 0;
  private prevTotalMs: number | undefined;

  constructor(
    private readonly policy: ChunkPolicy,
    private readonly o: { obsMap: readonly ObsMapEntry[]; defaultPrompt?: string; actionDim?: number },
  ) {}

  /** The reply to one request (packed), or an error to report. */
  async handle(data: Uint8Array): Promise<Uint8Array> {
    const { observation, instruction } = await fromOpenpiObservation(unpackb(data), this.o.obsMap, this.o.defaultPrompt);
    if (instruction !== this.instruction) {
      await this.policy.reset({ instruction, seed: 0 });
      this.instruction = instruction;
      this.step = 0;
    }
    const t0 = performance.now();
    const c = await this.policy.cycle(observation, { instruction, step: this.step });
    const inferMs = performance.now() - t0;
    const rows = c?.actions ?? [];
    const d = rows[0]?.length ?? this.o.actionDim ?? 4;
    if (rows.some((r) => r.length !== d)) throw new VlakitError('E_MODEL', `the policy decided on actions of different lengths: ${rows.map((r) => r.length).join(', ')}`);
    this.step += rows.length;
    if (c === null) this.instruction = undefined; // the plan is finished: the next request starts a new one
    const flat = Float32Array.from(rows.flat()); // [H, D] in C order
    const serverTiming: Record<string, Packable> = { infer_ms: new Float64(inferMs) };
    if (this.prevTotalMs !== undefined) serverTiming.prev_total_ms = new Float64(this.prevTotalMs);
    return packb({ actions: NdArray.from(flat, [rows.length, d]), server_timing: serverTiming, policy_timing: { infer_ms: new Float64(c?.modelMs ?? 0) }, ...(c === null ? { done: true } : {}) });
  }

  /** The whole time of the last request (decode, infer, send), reported with the next reply as openpi does. */
  finished(totalMs: number): void {
    this.prevTotalMs = totalMs;
  }
}

/** Metadata as plain msgpack values (JSON's subset: no undefined, no class instances). */
export function plainMetadata(m: Record<string, unknown>): Record<string, Packable> {
  return JSON.parse(JSON.stringify(m)) as Record<string, Packable>;
}
