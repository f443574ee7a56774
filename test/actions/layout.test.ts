/** Actions of any layout: 7-D merge rules, codec specs rebuilt by one function, unused-token choice, cameras. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ActionCodecSpecSchema,
  BinsCodec,
  GEMMA3_DIGIT_TOKENS,
  TextCodec,
  TokensCodec,
  WordsCodec,
  codecFromSpec,
  fixedChunks,
  inferLayout,
  layoutFor,
  loadGemma3,
  makeCodec,
  mergeActions,
  parseLayout,
  roundTripError,
  unusedTokens,
  verifySingleTokens,
  type TokenVocab,
} from '../../src/lib/actions/index.js';
import { cameraNames, camerasOf, keepCameras } from '../../src/lib/io/index.js';

const XYZRPYG = parseLayout('xyz-rpy-g');
const d = fc.double({ min: -0.03, max: 0.03, noNaN: true });
const rot = fc.double({ min: -0.2, max: 0.2, noNaN: true });
const action7 = fc.tuple(d, d, d, rot, rot, rot, fc.constantFrom(0, 1, 0.25, 0.8)).map((a) => [...a]);

describe('action layouts', () => {
  it('inferred for 4-D and 7-D, stated by name, JSON or refused', () => {
    expect(inferLayout(4)).toMatchObject({ translation: [0, 1, 2], rotation: [], gripper: 3 });
    expect(inferLayout(7)).toMatchObject({ translation: [0, 1, 2], rotation: [3, 4, 5], gripper: 6 });
    expect(parseLayout('xyz-rpy-g:continuous').gripper_kind).toBe('continuous');
    expect(parseLayout('{"dims": 8, "translation": [0,1,2], "rotation": [3,4,5], "gripper": 7}')).toMatchObject({ dims: 8, mode: 'delta', gripper_kind: 'binary' });
    expect(() => parseLayout('{"dims": 4, "translation": [0,1,2], "rotation": [], "gripper": 2}')).toThrow(/E_USAGE: --action-layout: a dimension is named twice/);
    expect(() => parseLayout('xyz')).toThrow(/expected xyz-g or xyz-rpy-g/);
    expect(() => layoutFor(6)).toThrow(/cannot tell what the 6 numbers of an action are; state it with --action-layout/);
    expect(() => layoutFor(4, XYZRPYG)).toThrow(/describes 7-D actions, but the actions have 4 numbers/);
  });
});

describe('merge of 7-D actions', () => {
  it('golden: rotation deltas are summed, thresholds apply to translation, a continuous gripper ends chunks where it changes', () => {
    const a = [
      [0.01, 0, 0, 0.1, 0, -0.05, 1],
      [0.01, 0, 0, 0.2, 0.01, -0.05, 1],
      [0.01, 0, 0, 0, 0, 0.3, 1], // 3 cm along x: a new chunk
      [0, 0, 0, 0.5, 0, 0, 0.4], // the gripper moves: a new chunk
      [0, 0, 0, 0.5, 0, 0, 0.4],
    ];
    const m = mergeActions(a, { layout: XYZRPYG });
    expect(m.map((x) => [x.start, x.end])).toEqual([
      [0, 1],
      [2, 2],
      [3, 4],
    ]);
    expect(m[0].action.map((v) => +v.toFixed(9))).toEqual([0.02, 0, 0, 0.3, 0.01, -0.1, 1]);
    expect(m[2].action).toEqual([0, 0, 0, 1, 0, 0, 0.4]);
    // with a tolerance, a small gripper change joins and the merged action keeps the last gripper value
    const t = mergeActions([[0, 0, 0, 0, 0, 0, 0.5], [0, 0, 0, 0, 0, 0, 0.52]], { layout: XYZRPYG, gripperTolerance: 0.05 });
    expect(t).toEqual([{ action: [0, 0, 0, 0, 0, 0, 0.52], start: 0, end: 1 }]);
  });

  it('per-dimension sums of merged actions equal the source sums; gripper values expand back', () => {
    fc.assert(
      fc.property(fc.array(action7, { minLength: 1, maxLength: 50 }), (acts) => {
        const m = mergeActions(acts, { layout: XYZRPYG });
        for (let k = 0; k < 6; k++) expect(m.reduce((s, x) => s + x.action[k], 0)).toBeCloseTo(acts.reduce((s, a) => s + a[k], 0), 9);
        expect(m.flatMap((x) => new Array(x.end - x.start + 1).fill(x.action[6]))).toEqual(acts.map((a) => a[6]));
      }),
      { numRuns: 300 },
    );
  });

  it('absolute layouts keep the last target; fixed chunks pad with zero deltas (absolute: the last target)', () => {
    const abs = { ...inferLayout(4)!, mode: 'absolute' as const };
    expect(mergeActions([[0.1, 0, 0.2, 1], [0.11, 0, 0.2, 1]], { layout: abs })).toEqual([{ action: [0.11, 0, 0.2, 1], start: 0, end: 1 }]);
    expect(fixedChunks([[0.01, 0, 0, 0.1, 0, 0, 1]], 2, 1, XYZRPYG)[0].actions[1]).toEqual([0, 0, 0, 0, 0, 0, 1]);
    expect(fixedChunks([[0.1, 0, 0.2, 1]], 2, 1, abs)[0].actions[1]).toEqual([0.1, 0, 0.2, 1]);
  });
});

describe('one codec spec, rebuilt by codecFromSpec', () => {
  const chunk = [
    [0.0123, -0.0049, 0, 0.1234, -0.05, 0.3333, 1],
    [-0.1, 0.02551, 0.003, 0, 0.0021, -0.25, 0.37],
  ];
  const vocab = Array.from({ length: 64 }, (_, i) => `<unused${i}>`);
  const codecs = [
    new TextCodec(1, 'cm', XYZRPYG),
    new TextCodec(4, 'm', XYZRPYG),
    new WordsCodec(2, XYZRPYG),
    new TokensCodec(GEMMA3_DIGIT_TOKENS, 2, 'cm', 'gemma3', XYZRPYG),
    new BinsCodec(
      Array.from({ length: 7 }, (_, k) => (k === 6 ? { low: 0, high: 1 } : { low: -0.4, high: 0.4 })),
      vocab,
      'gemma3',
      XYZRPYG,
    ),
  ];
  // each codec's resolution per dimension: translation, rotation, gripper
  const tol = [
    [0.0005, 0.0005, 0.005],
    [0.00005, 0.00005, 0.005],
    [0.00005, 0.0001, 0.005],
    [0.00005, 0.00005, 0.005],
    [0.8 / 64 / 2, 0.8 / 64 / 2, 1 / 64 / 2],
  ];

  it('every codec: the spec validates, rebuilds an equal codec, and round-trips all 7 dimensions within its resolution', () => {
    codecs.forEach((c, i) => {
      const spec = JSON.parse(JSON.stringify(c.describe()));
      expect(ActionCodecSpecSchema.safeParse(spec).success).toBe(true);
      const back = codecFromSpec(spec);
      expect(back.describe()).toEqual(c.describe());
      expect(back.encode(chunk)).toBe(c.encode(chunk));
      const rt = roundTripError(back, [chunk]);
      expect(rt.max).toHaveLength(7);
      rt.max.forEach((e, k) => expect(e, `${c.name} dim ${k}`).toBeLessThanOrEqual((k < 3 ? tol[i][0] : k < 6 ? tol[i][1] : tol[i][2]) + 1e-12));
    });
  });

  it('golden 7-D strings: centimetres for translation only, radians for rotation, a continuous gripper keeps its digits', () => {
    expect(new TextCodec(1, 'cm', XYZRPYG).encode(chunk)).toBe('[[1.2, -0.5, 0.0, 0.123, -0.050, 0.333, 1], [-10.0, 2.6, 0.3, 0.000, 0.002, -0.250, 0.37]]');
    expect(new WordsCodec(1, XYZRPYG).encode(chunk.slice(0, 1))).toBe('move forward 1.2 cm and right 0.5 cm, rotate roll 7.1 deg and pitch -2.9 deg and yaw 19.1 deg, gripper open');
    expect(new TextCodec(3).encode([[0.01, 0, 0, 0.37]])).toBe('[[0.010, 0.000, 0.000, 0.370]]'); // not rounded to 0
  });

  it('a bad spec is a clear error; older specs (text without a layout) still rebuild', () => {
    expect(() => codecFromSpec({ codec: 'bins', ranges: [], vocab: [] })).toThrow(/E_RECORD_INVALID at field "codec.ranges": invalid action codec spec \(ranges\): Too small/);
    expect(() => codecFromSpec({ codec: 'morse' })).toThrow(/expected an action codec spec/);
    expect(codecFromSpec({ codec: 'text', precision: 3, units: 'm' }).decode('[[1, 2, 3, 1]]')).toEqual([[1, 2, 3, 1]]);
  });
});

describe('token codecs take unused tokens only', () => {
  it('Gemma-3 bins never include <image_soft_token> (id 262144) or the digit tokens', async () => {
    const gemma = await loadGemma3();
    const codec = (await makeCodec({ actions: 'bins', bins: 256, stats: { count: 1, exactQuantiles: true, dims: Array.from({ length: 7 }, () => ({ mean: 0, std: 1, min: -1, max: 1, q01: -1, q99: 1 })) } as never })) as BinsCodec;
    expect(codec.vocab).toHaveLength(256);
    expect(codec.vocab).not.toContain('<image_soft_token>');
    expect(codec.vocab.every((t) => /^<unused\d+>$/.test(t) && !GEMMA3_DIGIT_TOKENS.includes(t))).toBe(true);
    expect(codec.vocab.map((t) => gemma.encode(t)).every((ids) => ids.length === 1 && ids[0] < 262144)).toBe(true);
  }, 60_000);

  it('a tokenizer without enough unused tokens is refused; a special token in a token list is refused', () => {
    const v: TokenVocab = { name: 'tiny', size: 10, token: () => '', encode: () => [1], unused: ['<unused0>', '<unused1>'], reserved: new Set(['<image>']) };
    expect(() => unusedTokens(v, 3)).toThrow(/tiny has 2 unused tokens .* fewer than the 3 needed/);
    expect(unusedTokens(v, 1)).toEqual(['<unused1>']);
    expect(() => verifySingleTokens(v, ['<unused0>', '<image>'])).toThrow(/"<image>" is a special token of tiny/);
  });
});

describe('cameras', () => {
  const im = (s: string) => ({ mime: 'image/png', b64: Buffer.from(s).toString('base64') });
  it('the primary camera by name (image_0 before image_1 whatever the feature order); --camera picks and orders', () => {
    const obs = { image_1: im('one'), wrist: im('w'), image_0: im('zero'), state: [1, 2] };
    expect(cameraNames(obs)).toEqual(['image_0', 'image_1', 'wrist']);
    expect(camerasOf(obs, ['wrist', 'image_1'])).toEqual([obs.wrist, obs.image_1]);
    expect(() => camerasOf(obs, ['front'])).toThrow(/no camera "front" in the observation \(cameras: image_0, image_1, wrist\)/);
    expect(Object.keys(keepCameras(obs, ['wrist']))).toEqual(['wrist', 'state']);
  });
});

describe('the action prompts name the layout and units the codec writes', () => {
  it('4-D meters as before; 7-D names the rotations; centimeters; absolute targets are positions', async () => {
    const { PROMPTS, actionFormatOf, waypointLayout } = await import('../../src/lib/actions/index.js');
    const four = PROMPTS.task('pick the block up');
    expect(four).toBe('Task: pick the block up\nOutput the end-effector actions [dx, dy, dz, gripper] (+x is forward, +y is left, +z is up (meters per step); the gripper is 1 when open and 0 when closed).');
    expect(PROMPTS.task('pick the block up', undefined, actionFormatOf(new TextCodec(3, 'm', parseLayout('xyz-g'))))).toBe(four);
    expect(PROMPTS.task('pick', undefined, actionFormatOf(new TextCodec(1, 'cm', XYZRPYG)))).toContain('[dx, dy, dz, droll, dpitch, dyaw, gripper] (+x is forward, +y is left, +z is up (centimeters per step, rotations in radians);');
    expect(PROMPTS.actions('reach', 'move down', undefined, actionFormatOf(new WordsCodec(1, XYZRPYG)))).toContain('[dx, dy, dz, droll, dpitch, dyaw, gripper] (+x is forward, +y is left, +z is up (meters per step, rotations in radians);');
    expect(PROMPTS.refinevla('pick', false, undefined, actionFormatOf(new TextCodec(1, 'cm', waypointLayout(parseLayout('xyz-g'), 0.015))))).toContain('[x, y, z, gripper] (+x is forward, +y is left, +z is up (centimeters);');
  });
});
