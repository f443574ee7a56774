/**
 * The grounding loss (`train-sft --ground-weight W`): the vision tower's keypoints (vision_config.keypoints, each a
 * spatial softmax over the stem's G x G cells) are taught where the objects a prompt names are. An example's
 * `ground` entry k (env/ground.ts: the k-th named object's centre in one of its images) is made a distribution over
 * the cells: the point's bilinear weights on the four nearest cell centres, so that the distribution's mean is the
 * point. Keypoint k's softmax over that image's cells is trained toward it by cross-entropy, averaged over the
 * batch's targets, and W times that is added to the language (or action head) loss.
 *
 * This is an auxiliary signal from privileged training data (the world's pixel masks), in the spirit of object-centric
 * auxiliary losses for visuomotor policies; at inference nothing changes: the keypoints simply look where they learned to.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { TrainingExample } from '../actions/examples.js';
import { KEYPOINT_DIM, type VlaConfig } from '../model/config.js';
import { VlakitError } from '../errors.js';
import { TfjsOps } from '../model/arch/tfjs-ops.js';
import { type VlaTap, vlaForward } from '../model/arch/vlakit-vla.js';
import type { VlaModel } from '../model/model.js';
import { type Batch, type PixelLayout, type Prepared, disposeBatch, makeBatch } from './data.js';
import { type LossParts, sftLoss } from './loss.js';

/** One grounding target of a prepared example: keypoint k, camera slot `image`, the target distribution [G*G]. */
export interface GroundCells {
  k: number;
  image: number;
  cells: Float32Array;
}

/** The cells' side G of a model's stem (image_size / stem_patch_size), or an error when the model has no keypoints. */
export function groundGrid(c: VlaConfig): number {
  const v = c.vision_config;
  if (!v.keypoints || v.stem_patch_size === undefined || v.stem_channels === undefined) {
    throw new VlakitError('E_USAGE', '--ground-weight trains the vision tower\'s keypoints: the model has none (vision_config.keypoints with a patch stem, docs/MODEL.md)');
  }
  return v.image_size / v.stem_patch_size;
}

/**
 * A point [x, y] in [0, 1]^2 as a distribution over a side x side raster of cells (row-major; cell (r, c) centred at
 * ((c + 0.5) / side, (r + 0.5) / side)): bilinear weights on the four nearest centres, clamped at the border.
 */
export function pointCells(point: [number, number], side: number): Float32Array {
  const out = new Float32Array(side * side);
  const at = (u: number): [number, number, number] => {
    const f = Math.min(Math.max(u * side - 0.5, 0), side - 1);
    const i0 = Math.floor(f);
    return [i0, Math.min(i0 + 1, side - 1), f - i0];
  };
  const [c0, c1, wc] = at(point[0]);
  const [r0, r1, wr] = at(point[1]);
  out[r0 * side + c0] += (1 - wr) * (1 - wc);
  out[r0 * side + c1] += (1 - wr) * wc;
  out[r1 * side + c0] += wr * (1 - wc);
  out[r1 * side + c1] += wr * wc;
  return out;
}

/**
 * An example's grounding targets for a model: entry k trains keypoint k, or with `vision_config.keypoint_names` the
 * keypoint of the entry's object; entries the model has no keypoint or camera for are left out.
 */
export function groundCellsOf(ex: TrainingExample, c: VlaConfig): GroundCells[] | undefined {
  if (!ex.ground?.length) return undefined;
  const side = groundGrid(c);
  const K = c.vision_config.keypoints ?? 0;
  const names = c.vision_config.keypoint_names?.map((n) => n.toLowerCase());
  const out: GroundCells[] = [];
  ex.ground.forEach((g, i) => {
    const k = names ? names.indexOf(g.object.toLowerCase()) : i;
    if (k >= 0 && k < K && g.image < c.num_cameras && g.image < ex.images.length && !out.some((o) => o.k === k && o.image === g.image)) out.push({ k, image: g.image, cells: pointCells(g.point, side) });
  });
  return out.length ? out : undefined;
}

/** Targets of a batch's examples: [B*C, Kg, G*G] (zero rows where an example has no target), Kg the most keypoints any example trains. */
export function groundTarget(ground: (GroundCells[] | undefined)[], cameras: number): { target: tf.Tensor3D; keypoints: number; count: number } | undefined {
  const all = ground.flatMap((g) => g ?? []);
  if (!all.length) return undefined;
  const Kg = Math.max(...all.map((g) => g.k)) + 1;
  const N = all[0].cells.length;
  const data = new Float32Array(ground.length * cameras * Kg * N);
  ground.forEach((list, b) => {
    for (const g of list ?? []) data.set(g.cells, ((b * cameras + g.image) * Kg + g.k) * N);
  });
  return { target: tf.tensor3d(data, [ground.length * cameras, Kg, N]), keypoints: Kg, count: all.length };
}

/**
 * Keypoint k's logits over the cells from a forward's keypoint tap: the queries [B*C, 1, K*8] and keys
 * [B*C, G*G, K*8] give q . k / sqrt(8), as the spatial softmax computes them; the first `keypoints` -> [B*C, Kg, G*G].
 */
export function keypointLogits(query: tf.Tensor, key: tf.Tensor, keypoints: number): tf.Tensor3D {
  const [BC, N] = key.shape as [number, number, number];
  const K = query.shape[2]! / KEYPOINT_DIM;
  const q = tf.slice(tf.reshape(query, [BC, K, KEYPOINT_DIM, 1]), [0, 0, 0, 0], [BC, keypoints, KEYPOINT_DIM, 1]); // [B*C, 1, K*8] -> [B*C, Kg, 8, 1]
  const k = tf.slice(tf.transpose(tf.reshape(key, [BC, N, K, KEYPOINT_DIM]), [0, 2, 3, 1]), [0, 0, 0, 0], [BC, keypoints, KEYPOINT_DIM, N]); // [B*C, N, K, 8] -> [B*C, Kg, 8, N]
  return tf.div(tf.sum(tf.mul(q, k), 2), Math.sqrt(KEYPOINT_DIM)) as tf.Tensor3D; // [B*C, Kg, N]
}

/** The cross-entropy of the keypoints' softmax against `target` [B*C, Kg, G*G], summed and divided by `count` (the whole batch's targets, for data-parallel parts). */
export function groundLoss(query: tf.Tensor, key: tf.Tensor, target: tf.Tensor3D, count: number): tf.Scalar {
  const logits = keypointLogits(query, key, target.shape[1]);
  return tf.div(tf.neg(tf.sum(tf.mul(target, tf.logSoftmax(logits)))), Math.max(count, 1)) as tf.Scalar;
}

/** The centres of a side x side raster of cells (row-major), [x0, y0, x1, y1, ...] in [0, 1]. */
function cellCentres(side: number): Float32Array {
  const centres = new Float32Array(side * side * 2);
  for (let i = 0; i < side * side; i++) {
    centres[2 * i] = ((i % side) + 0.5) / side;
    centres[2 * i + 1] = (Math.floor(i / side) + 0.5) / side;
  }
  return centres;
}

/** The keypoints' expected positions [B*C, Kg, 2] in [0, 1]^2 (x across, y down): what the first `keypoints` keypoints read. */
export function keypointPoints(query: tf.Tensor, key: tf.Tensor, keypoints: number): tf.Tensor3D {
  return tf.tidy(() => {
    const p = tf.softmax(keypointLogits(query, key, keypoints)); // [B*C, Kg, N]
    const [BC, , N] = p.shape;
    const centres = cellCentres(Math.round(Math.sqrt(N)));
    return tf.reshape(tf.matMul(tf.reshape(p, [BC * keypoints, N]), tf.tensor2d(centres, [N, 2])), [BC, keypoints, 2]) as tf.Tensor3D; // [B*C*Kg, N] x [N, 2] -> [B*C, Kg, 2]
  });
}

/**
 * The language loss of a batch under the built-in model (train/loss.ts) + `weight` x its grounding loss: one forward
 * that also hands out the keypoints' queries and keys.
 */
export function groundedSftLoss(model: VlaModel, batch: Batch, lambdaR: number, weight: number): LossParts {
  const ops = new TfjsOps(model.params, undefined, model.lora, 0, 'in_out');
  const tap: VlaTap<tf.Tensor> = {};
  const logits = vlaForward(ops, model.config, batch.ids, batch.pixels, tap) as tf.Tensor3D; // [B, T, V]
  const parts = sftLoss(() => logits, batch, lambdaR);
  return withGround(parts, tap, batch, weight);
}

/** `parts` + `weight` x the grounding loss of the batch's targets, from a forward's keypoint tap (unchanged without targets). */
export function withGround(parts: LossParts, tap: VlaTap<tf.Tensor>, batch: Batch, weight: number): LossParts {
  if (!batch.ground || !(weight > 0)) return parts;
  if (!tap.keypointQuery || !tap.keypointKey) throw new Error('withGround: the forward handed out no keypoint tap');
  const g = groundLoss(tap.keypointQuery, tap.keypointKey, batch.ground.target, batch.ground.count);
  return { ...parts, loss: tf.add(parts.loss, tf.mul(g, weight)) as tf.Scalar, ground: g };
}

/** How well the keypoints find their grounding targets on held-out examples (train-sft's evaluation, --ground-weight). */
export interface GroundEvalResult {
  /** Grounding targets measured. */
  targets: number;
  /** Median distance of a keypoint's expected position from its target, as a fraction of the image's side. */
  medianError: number;
  /** Share of targets whose keypoint is more than one stem cell from them: it found another object, or nothing. */
  missRate: number;
  /** Per object (the keypoint's name, or "keypoint k"): its targets and their misses. */
  byObject: Record<string, { targets: number; misses: number }>;
}

/**
 * The keypoints' error on prepared examples with grounding targets (undefined when none has one): the expected
 * position of keypoint k against its target's point (the mean of the target's cells, which is the point itself away
 * from the image's border), over batches of `batchSize`.
 */
export async function evaluateGround(model: VlaModel, items: Prepared[], layout: PixelLayout, batchSize = 16): Promise<GroundEvalResult | undefined> {
  const withTargets = items.filter((x) => x.ground?.length);
  if (!withTargets.length) return undefined;
  const c = model.config;
  const side = groundGrid(c);
  const names = c.vision_config.keypoint_names;
  const centres = cellCentres(side);
  const ops = new TfjsOps(model.params, undefined, model.lora, 0, 'in_out');
  const errors: number[] = [];
  const byObject: GroundEvalResult['byObject'] = {};
  for (let i = 0; i < withTargets.length; i += batchSize) {
    const part = withTargets.slice(i, i + batchSize);
    const b = makeBatch(part, layout);
    const Kg = Math.max(...part.flatMap((x) => x.ground!.map((g) => g.k))) + 1;
    const points = tf.tidy(() => {
      const tap: VlaTap<tf.Tensor> = {};
      vlaForward(ops, c, b.ids, b.pixels, tap);
      return keypointPoints(tap.keypointQuery!, tap.keypointKey!, Kg).arraySync(); // [B*C, Kg, 2]
    });
    disposeBatch(b);
    part.forEach((x, j) => {
      for (const g of x.ground!) {
        let tx = 0;
        let ty = 0;
        g.cells.forEach((w, n) => {
          tx += w * centres[2 * n];
          ty += w * centres[2 * n + 1];
        });
        const [px, py] = points[j * c.num_cameras + g.image][g.k];
        const e = Math.hypot(px - tx, py - ty);
        errors.push(e);
        const o = (byObject[names?.[g.k] ?? `keypoint ${g.k}`] ??= { targets: 0, misses: 0 });
        o.targets += 1;
        if (e > 1 / side) o.misses += 1;
      }
    });
  }
  const sorted = [...errors].sort((a, b) => a - b);
  const misses = Object.values(byObject).reduce((a, o) => a + o.misses, 0);
  return { targets: errors.length, medianError: sorted[Math.floor(sorted.length / 2)], missRate: misses / errors.length, byObject };
}
