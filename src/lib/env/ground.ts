/**
 * Grounding targets: where, in a camera image, the objects a prompt names are. Made from the built-in world's oracle
 * (its objects and their pixel masks, recorded with `rollout --masks`): for each object the text names, in the order
 * the text names them, the centre of its visible pixels as a point in [0, 1]^2 of the image (x across, y down).
 * `train-sft --ground-weight` teaches the vision tower's keypoints to look there (train/ground.ts).
 */
import { namedObjects } from '../util/names.js';
import { type ObjectMasks } from './tabletop.js';

/** One grounding target: an object, the example image it is seen in, and its centre there. */
export interface GroundTarget {
  /** The object's name as the text says it. */
  object: string;
  /** Index of the example's image (camera slot). */
  image: number;
  /** The centre of the object's visible pixels: [x, y] in [0, 1] of the image's width and height. */
  point: [number, number];
}

interface OracleLike {
  objects?: { id: string; name: string }[];
  masks?: ObjectMasks;
}

/**
 * The grounding targets of `text` in an example whose images come from `cameras` (their names, in slot order), from
 * the oracle of the example's step; undefined when the oracle has no masks. A named object with no visible pixel in
 * the masked camera (hidden, or out of view) gets no target, so the list may be shorter than the names. With `all`,
 * every other visible object follows the named ones (in the oracle's order): targets for models whose keypoints are
 * detectors of named kinds of objects (vision_config.keypoint_names).
 */
export function groundTargets(oracle: unknown, text: string, cameras: string[], all = false): GroundTarget[] | undefined {
  const o = oracle as OracleLike | undefined;
  if (!o?.masks || !Array.isArray(o.objects)) return undefined;
  const { camera, width, height } = o.masks;
  const image = cameras.indexOf(camera);
  if (image < 0) return [];
  const runs = new Map(o.masks.objects.map((m) => [m.id, m.runs]));
  const out: GroundTarget[] = [];
  const named = namedObjects(text, o.objects);
  for (const x of all ? [...named, ...o.objects.filter((y) => !named.includes(y))] : named) {
    const r = runs.get(x.id);
    if (!r) continue;
    // the mean pixel centre of the runs (row-major pixel index; a run may wrap onto the next row)
    let sx = 0;
    let sy = 0;
    let n = 0;
    for (let k = 0; k + 1 < r.length; k += 2) {
      for (let i = r[k]; i < r[k] + r[k + 1]; i++) {
        sx += (i % width) + 0.5;
        sy += Math.floor(i / width) + 0.5;
        n += 1;
      }
    }
    if (n) out.push({ object: x.name, image, point: [+(sx / n / width).toFixed(5), +(sy / n / height).toFixed(5)] });
  }
  return out;
}
