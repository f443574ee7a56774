/**
 * Heatmaps a person can read: the camera image under a semi-transparent colormap of an attention map (bilinear
 * upsampling of the patch grid to the image), a color bar with its scale, and a caption; panels laid out in a grid.
 * Images are decoded, composed and encoded with sharp; text is SVG rendered by sharp.
 */
import sharp, { type OverlayOptions } from 'sharp';
import type { ImageJson } from '../io/json.js';

/** The colormap's anchors (value, RGB): dark blue for little attention through green and yellow to red for the most. */
const ANCHORS: [number, [number, number, number]][] = [
  [0, [20, 24, 120]],
  [0.25, [30, 110, 230]],
  [0.5, [40, 200, 120]],
  [0.75, [250, 215, 40]],
  [1, [215, 25, 30]],
];

/** The color of v in [0, 1]. */
export function colormap(v: number): [number, number, number] {
  const x = Math.min(1, Math.max(0, Number.isFinite(v) ? v : 0));
  for (let i = 1; i < ANCHORS.length; i++) {
    const [b, cb] = ANCHORS[i];
    if (x <= b) {
      const [a, ca] = ANCHORS[i - 1];
      const t = (x - a) / (b - a);
      return [0, 1, 2].map((k) => Math.round(ca[k] + (cb[k] - ca[k]) * t)) as [number, number, number];
    }
  }
  return ANCHORS[ANCHORS.length - 1][1];
}

/** A [grid x grid] map upsampled bilinearly to width x height (cell centres at (i + 0.5) / grid). */
export function upsample(map: Float32Array, grid: number, width: number, height: number): Float32Array {
  const out = new Float32Array(width * height);
  const at = (r: number, c: number) => map[Math.min(grid - 1, Math.max(0, r)) * grid + Math.min(grid - 1, Math.max(0, c))];
  for (let y = 0; y < height; y++) {
    const fy = ((y + 0.5) * grid) / height - 0.5;
    const r0 = Math.floor(fy);
    const ty = fy - r0;
    for (let x = 0; x < width; x++) {
      const fx = ((x + 0.5) * grid) / width - 0.5;
      const c0 = Math.floor(fx);
      const tx = fx - c0;
      out[y * width + x] = (1 - ty) * ((1 - tx) * at(r0, c0) + tx * at(r0, c0 + 1)) + ty * ((1 - tx) * at(r0 + 1, c0) + tx * at(r0 + 1, c0 + 1));
    }
  }
  return out;
}

function escapeXml(s: string): string {
  return s.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!);
}

/** Lines of at most `width` characters. */
function wrap(text: string, width: number, maxLines: number): string[] {
  const words = text.replace(/\s+/g, ' ').trim().split(' ');
  const lines: string[] = [];
  let cur = '';
  for (const w of words) {
    if ((cur ? `${cur} ${w}` : w).length > width && cur) {
      lines.push(cur);
      cur = w;
    } else cur = cur ? `${cur} ${w}` : w;
  }
  if (cur) lines.push(cur);
  if (lines.length > maxLines) {
    lines.length = maxLines;
    lines[maxLines - 1] = `${lines[maxLines - 1].slice(0, width - 3)}...`;
  }
  return lines;
}

export interface PanelOptions {
  /** Opacity of the heatmap over the image. */
  alpha?: number;
  /** Displayed width of the image (the image is scaled to it). */
  width?: number;
  /** Caption lines (wrapped). */
  caption?: string[];
  /** The value the top of the color bar stands for (the map is shown normalized to it). */
  scaleMax?: number;
}

/** One panel: caption, the image under the heatmap (a [grid x grid] map in [0, 1]), and a color bar. Returns PNG bytes. */
export async function heatmapPanel(image: ImageJson, map: Float32Array, grid: number, o: PanelOptions = {}): Promise<Buffer> {
  const source = sharp(Buffer.from(image.b64, 'base64'));
  const meta = await source.metadata();
  const W = o.width ?? Math.max(256, meta.width ?? 256);
  const H = Math.round((W * (meta.height ?? W)) / (meta.width ?? W));
  const rgb = await source.removeAlpha().toColourspace('srgb').resize(W, H, { fit: 'fill' }).raw().toBuffer(); // grey images too: 3 channels
  const up = upsample(map, grid, W, H);
  const alpha = o.alpha ?? 0.5;
  const out = Buffer.alloc(W * H * 3);
  for (let i = 0; i < W * H; i++) {
    const c = colormap(up[i]);
    for (let k = 0; k < 3; k++) out[i * 3 + k] = Math.round((1 - alpha) * rgb[i * 3 + k] + alpha * c[k]);
  }
  const fontSize = 13;
  const lineH = 17;
  const captionLines = (o.caption ?? []).flatMap((c) => wrap(c, Math.floor((W + 60) / 7.2), 3));
  const top = captionLines.length * lineH + (captionLines.length ? 8 : 0);
  const barW = 14;
  const right = barW + 52;
  const totalW = W + right;
  const totalH = top + H + 6;
  // the color bar, top = high
  const bar = Buffer.alloc(barW * H * 3);
  for (let y = 0; y < H; y++) {
    const c = colormap(1 - y / Math.max(1, H - 1));
    for (let x = 0; x < barW; x++) bar.set(c, (y * barW + x) * 3);
  }
  const hi = o.scaleMax === undefined ? 'max' : o.scaleMax.toPrecision(2);
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${totalW}" height="${totalH}">${captionLines.map((l, i) => `<text x="4" y="${(i + 1) * lineH - 3}" font-family="DejaVu Sans, sans-serif" font-size="${fontSize}" fill="#111">${escapeXml(l)}</text>`).join('')}<text x="${W + barW + 8}" y="${top + 11}" font-family="DejaVu Sans, sans-serif" font-size="11" fill="#111">${escapeXml(hi)}</text><text x="${W + barW + 8}" y="${top + H / 2 + 4}" font-family="DejaVu Sans, sans-serif" font-size="11" fill="#111">attn</text><text x="${W + barW + 8}" y="${top + H - 2}" font-family="DejaVu Sans, sans-serif" font-size="11" fill="#111">0</text></svg>`;
  return sharp({ create: { width: totalW, height: totalH, channels: 3, background: '#ffffff' } })
    .composite([
      { input: out, raw: { width: W, height: H, channels: 3 }, left: 0, top },
      { input: bar, raw: { width: barW, height: H, channels: 3 }, left: W + 4, top },
      { input: Buffer.from(svg), left: 0, top: 0 },
    ])
    .png()
    .toBuffer();
}

/** Panels (PNG bytes) in rows of `columns`, with an optional title line on top. */
export async function panelGrid(panels: Buffer[], columns: number, title?: string): Promise<Buffer> {
  const metas = await Promise.all(panels.map((p) => sharp(p).metadata()));
  const cw = Math.max(...metas.map((m) => m.width ?? 0));
  const ch = Math.max(...metas.map((m) => m.height ?? 0));
  const cols = Math.max(1, Math.min(columns, panels.length));
  const rows = Math.ceil(panels.length / cols);
  const head = title ? 24 : 0;
  const gap = 8;
  const width = cols * cw + (cols - 1) * gap;
  const height = head + rows * ch + (rows - 1) * gap;
  const layers: OverlayOptions[] = panels.map((p, i) => ({ input: p, left: (i % cols) * (cw + gap), top: head + Math.floor(i / cols) * (ch + gap) }));
  if (title) layers.push({ input: Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${head}"><text x="4" y="17" font-family="DejaVu Sans, sans-serif" font-size="15" font-weight="bold" fill="#111">${escapeXml(title)}</text></svg>`), left: 0, top: 0 });
  return sharp({ create: { width, height, channels: 3, background: '#ffffff' } }).composite(layers).png().toBuffer();
}
