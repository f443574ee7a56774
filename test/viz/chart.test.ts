import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { chartGeometry, chartSvg, ticks, writeChartPng, type ChartSpec } from '../../src/lib/viz/chart.js';

const spec: ChartSpec = {
  title: 'success vs retention',
  xLabel: 'retention (%)',
  yLabel: 'success (%)',
  xDomain: [0, 100],
  yDomain: [0, 100],
  series: [
    { name: 'lora-text', color: '#ff0000', points: [{ x: 50, y: 50, yLow: 20, yHigh: 80, label: 'a <b>' }] },
    { name: 'full', color: '#0000ff', line: true, points: [{ x: 10, y: 90 }, { x: 90, y: 90 }] },
  ],
};

/** The RGB of the PNG's pixel nearest (x, y). */
async function pixel(file: string, x: number, y: number): Promise<number[]> {
  const { data, info } = await sharp(file).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const i = (Math.round(y) * info.width + Math.round(x)) * 3;
  return [data[i], data[i + 1], data[i + 2]];
}

describe('charts for the experiment reports', () => {
  it('round ticks over a domain', () => {
    expect(ticks(0, 100)).toEqual([0, 20, 40, 60, 80, 100]);
    expect(ticks(0, 1)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    expect(ticks(-3, 7)).toEqual([-2, 0, 2, 4, 6]);
    expect(ticks(5, 5)).toEqual([5]);
  });

  it('draws each point, its interval and the lines where the axes put them; text is escaped', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'vlakit-chart-'));
    const file = path.join(dir, 'c.png');
    await writeChartPng(spec, file);
    const meta = await sharp(file).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 720, 480]);
    const g = chartGeometry(spec);
    const [x, y] = [g.toX(50), g.toY(50)];
    // colours within antialiasing of what was drawn there
    const near = (rgb: number[], want: number[]) => rgb.every((v, k) => Math.abs(v - want[k]) <= 96);
    expect(await pixel(file, x, y)).toEqual([255, 0, 0]); // the marker's centre
    expect(near(await pixel(file, x, g.toY(25)), [255, 0, 0])).toBe(true); // on the interval, below the marker
    expect(await pixel(file, x + 30, g.toY(25))).toEqual([255, 255, 255]); // beside it: background
    expect(near(await pixel(file, g.toX(50), g.toY(90)), [0, 0, 255])).toBe(true); // the blue line between its points
    expect(near(await pixel(file, g.toX(50), g.toY(85)), [255, 0, 0])).toBe(false); // above the interval's end (80): not red
    expect(g.area.left).toBeLessThan(x);
    expect(chartSvg(spec)).toContain('a &lt;b&gt;');
    // an existing file is kept unless told otherwise
    writeFileSync(path.join(dir, 'keep.png'), 'mine');
    await expect(writeChartPng(spec, path.join(dir, 'keep.png'))).rejects.toThrow(/exists/);
    expect(readFileSync(path.join(dir, 'keep.png'), 'utf8')).toBe('mine');
    await writeChartPng(spec, path.join(dir, 'keep.png'), { overwrite: true });
    expect((await sharp(path.join(dir, 'keep.png')).metadata()).format).toBe('png');
    expect(existsSync(file)).toBe(true);
  });

  it('a bad spec is a clear error', () => {
    expect(() => chartSvg({ ...spec, series: [] })).toThrow(/E_USAGE: invalid chart \(series\): expected at least one series/);
    expect(() => chartSvg({ ...spec, xDomain: [1, 0] })).toThrow(/a chart domain must increase/);
    expect(() => chartSvg({ ...spec, series: [{ name: 'n', points: [{ x: Number.NaN, y: 0 }] }] })).toThrow(/invalid chart/);
  });
});
