/**
 * Cameras of an observation: the encoded images among its fields. The primary camera (the one a single-image
 * example takes) is chosen by name, not by feature order: the first present of `PRIMARY_CAMERAS` (RLDS / Open
 * X-Embodiment's `image`, then `image_0`, `image_primary`, robomimic's `agentview_image`, `rgb`, `front`), else the
 * first camera in feature order. `--camera NAME[,NAME...]` states the cameras and their order instead.
 */
import { VlakitError } from '../errors.js';
import { type ImageJson, isImageJson } from './json.js';

export const PRIMARY_CAMERAS = ['image', 'image_0', 'image_primary', 'agentview_image', 'rgb', 'front'];

/** The camera names of an observation, primary first (see PRIMARY_CAMERAS), the others in feature order. */
export function cameraNames(obs: Record<string, unknown>): string[] {
  const all = Object.keys(obs).filter((k) => isImageJson(obs[k]));
  const primary = PRIMARY_CAMERAS.find((n) => all.includes(n)) ?? all[0];
  return primary === undefined ? [] : [primary, ...all.filter((n) => n !== primary)];
}

/**
 * The images of the named cameras, in that order; without names, every camera, primary first. A named camera the
 * observation lacks is an error that lists the cameras it has.
 * @example camerasOf({ image_1: a, image_0: b, state: [] }) // [b, a]
 */
export function camerasOf(obs: Record<string, unknown>, names?: string[]): ImageJson[] {
  if (!names?.length) return cameraNames(obs).map((n) => obs[n] as ImageJson);
  return names.map((n) => {
    const v = obs[n];
    if (!isImageJson(v)) throw new VlakitError('E_RECORD_INVALID', `no camera "${n}" in the observation (cameras: ${cameraNames(obs).join(', ') || 'none'})`, { field: `observation.${n}` });
    return v;
  });
}

/** The observation with only the named cameras (in that order) and every non-image field. */
export function keepCameras(obs: Record<string, unknown>, names: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const n of names) out[n] = camerasOf(obs, [n])[0];
  for (const [k, v] of Object.entries(obs)) if (!isImageJson(v)) out[k] = v;
  return out;
}

/** `--camera a,b`: the names, trimmed, none empty or repeated. */
export function parseCameraList(spec: string | undefined): string[] | undefined {
  if (spec === undefined) return undefined;
  const names = spec.split(',').map((s) => s.trim());
  if (names.some((n) => !n)) throw new VlakitError('E_USAGE', `--camera "${spec}": expected NAME[,NAME...] (observation fields holding images)`);
  if (new Set(names).size !== names.length) throw new VlakitError('E_USAGE', `--camera "${spec}" names a camera twice`);
  return names;
}
