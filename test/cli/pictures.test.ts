/** dendra inspect --png: an artifact's arrays and a defect map's faults as pictures; defect map summaries. */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { mnist } from '../helpers/fixtures.js';
import { readArtifactFile } from '../../artifact/read.js';
import { dendra } from '../helpers/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'dendra-png-'));

type Fault = [number, number, 'on' | 'off', number];
interface MapJson { arrays: { rows: number; cols: number; faults: Fault[] }[] }

// The colours the pictures promise (cli/pictures.ts COLORS).
const RED = [220, 30, 30];
const BLUE = [30, 90, 235];
const HEALTHY = [211, 211, 211];

const readPng = (file: string) => PNG.sync.read(readFileSync(file));
const pixel = (png: PNG, x: number, y: number) => {
  const p = (y * png.width + x) * 4;
  return [png.data[p]!, png.data[p + 1]!, png.data[p + 2]!];
};
const same = (a: number[], b: number[]) => a[0] === b[0] && a[1] === b[1] && a[2] === b[2];
function countColor(png: PNG, c: number[]): number {
  let k = 0;
  for (let p = 0; p < png.data.length; p += 4) if (png.data[p] === c[0] && png.data[p + 1] === c[1] && png.data[p + 2] === c[2]) k++;
  return k;
}

/**
 * Two 128 × 64 arrays: 4 px per cell, side by side with a 1-pixel gap, so array i's cell (r, c) covers
 * x = i·257 + 4c .. +3, y = 4r .. +3. Checks every pixel of every cell against the map: red exactly on the
 * stuck-ON cells, blue exactly on the stuck-OFF ones; `healthy` checks the other cells, `gap` the gap.
 */
function checkFaults(png: PNG, chipArrays: number[], map: MapJson, healthy: (rgb: number[]) => boolean, gap: number[]) {
  let on = 0;
  let off = 0;
  chipArrays.forEach((k, i) => {
    const a = map.arrays[k]!;
    const state = new Map(a.faults.map(([r, c, s]) => [r * a.cols + c, s]));
    for (let r = 0; r < a.rows; r++) {
      for (let c = 0; c < a.cols; c++) {
        const s = state.get(r * a.cols + c);
        for (let dy = 0; dy < 4; dy++) {
          for (let dx = 0; dx < 4; dx++) {
            const rgb = pixel(png, i * 257 + 4 * c + dx, 4 * r + dy);
            const ok = s === 'on' ? same(rgb, RED) : s === 'off' ? same(rgb, BLUE) : healthy(rgb);
            if (!ok) throw new Error(`array ${i} cell (${r}, ${c}) ${s ?? 'healthy'}: pixel ${rgb.join(',')}`);
          }
        }
      }
    }
    on += a.faults.filter((f) => f[2] === 'on').length;
    off += a.faults.filter((f) => f[2] === 'off').length;
  });
  // No red or blue anywhere else (gap included).
  expect(countColor(png, RED)).toBe(16 * on);
  expect(countColor(png, BLUE)).toBe(16 * off);
  // The 1-pixel gap between the two arrays.
  for (let y = 0; y < png.height; y++) expect(pixel(png, 256, y)).toEqual(gap);
}

describe('inspect --png', () => {
  const mapFile = join(dir, 'm.json');
  let map: MapJson;
  beforeAll(() => {
    const r = dendra('defects', 'generate', '--device', 'hfo2-1t1r', '--rate', '0.1', '--arrays', '2', '--seed', '1', '-o', mapFile);
    expect(r.code).toBe(0);
    map = JSON.parse(readFileSync(mapFile, 'utf8')) as MapJson;
  });

  it('summarises a defect map', () => {
    const faults = map.arrays.reduce((s, a) => s + a.faults.length, 0);
    const on = map.arrays.reduce((s, a) => s + a.faults.filter((f) => f[2] === 'on').length, 0);
    const r = dendra('inspect', mapFile);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/defect map of a hfo2-1t1r chip/);
    expect(r.out).toMatch(/arrays\s+2 of 128 × 64 \(16384 cells\)/);
    expect(r.out).toContain(`${faults} stuck cells (rate ${((100 * faults) / 16384).toFixed(2)} %): ${on} ON at 250.0 uS, ${faults - on} OFF at 10.00 uS`);
    expect(r.out).toMatch(/origin\s+generator dendra defects generate, rate 0\.1, onFraction 0\.5, pattern random, seed 1/);
    const j = JSON.parse(dendra('inspect', mapFile, '--json').out);
    expect(j).toMatchObject({ kind: 'defects', device: 'hfo2-1t1r', arrays: 2, cells: 16384, faults, on, off: faults - on });
    expect(j.rate).toBeCloseTo(faults / 16384, 12);
  });

  it('draws a defect map: healthy light gray, ON red, OFF blue', () => {
    const out = join(dir, 'm.png');
    const r = dendra('inspect', mapFile, '--png', out);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/picture\s+.*m\.png: 513 × 512 px, 2 arrays at 4 px per cell, in 1 row\(s\) of 2/);
    const png = readPng(out);
    expect([png.width, png.height]).toEqual([513, 512]);
    checkFaults(png, [0, 1], map, (rgb) => same(rgb, HEALTHY), [90, 90, 90]);
  });

  it('draws an artifact compiled for the chip: conductances in gray, its arrays\' stuck cells red and blue', () => {
    const art = join(dir, 'a.dendra');
    expect(dendra('compile', mnist('mnist8x8-64x54x10.onnx'), '--device', 'hfo2-1t1r', '--defects', mapFile, '-o', art).code).toBe(0);
    const out = join(dir, 'a.png');
    const r = dendra('inspect', art, '--png', out, '--json');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out);
    expect(j.png).toMatchObject({ file: out, width: 513, height: 512, cellPx: 4, gridCols: 2, gridRows: 1 });
    // Remapping may give the tiles the chip's arrays in another order: artifact array i is chip array chipArrays[i].
    const chipArrays = j.chip.chipArrays as number[];
    expect([...chipArrays].sort()).toEqual([0, 1]);
    const png = readPng(out);
    expect([png.width, png.height]).toEqual([513, 512]);
    const gray = (rgb: number[]) => rgb[0] === rgb[1] && rgb[1] === rgb[2];
    checkFaults(png, chipArrays, map, gray, [255, 255, 255]);
    // Healthy cells: gray = 255 · (G − Gmin) / (Gmax − Gmin), black at the window's bottom, white at its top.
    const a = readArtifactFile(art);
    const { min, max } = a.profile.conductance;
    const levels = new Set<number>();
    a.arrays.forEach((arr, i) => {
      for (let r = 0; r < arr.rows; r++) {
        for (let c = 0; c < arr.cols; c++) {
          if (arr.stuck![r * arr.cols + c]) continue;
          const v = Math.round(255 * ((arr.conductance[r * arr.cols + c]! - min) / (max - min)));
          expect(pixel(png, i * 257 + 4 * c + 3, 4 * r + 3)[0]).toBe(v);
          levels.add(v);
        }
      }
    });
    expect(levels.size).toBeGreaterThan(10);
  });

  it('draws a fault-free artifact in gray only', () => {
    const art = join(dir, 'clean.dendra');
    expect(dendra('compile', mnist('mnist8x8-64x54x10.onnx'), '--device', 'hfo2-1t1r', '-o', art).code).toBe(0);
    const out = join(dir, 'clean.png');
    expect(dendra('inspect', art, '--png', out).code).toBe(0);
    const png = readPng(out);
    expect([png.width, png.height]).toEqual([513, 512]);
    for (let p = 0; p < png.data.length; p += 4) {
      if (png.data[p] !== png.data[p + 1] || png.data[p + 1] !== png.data[p + 2]) throw new Error(`colour at pixel ${p / 4}`);
    }
  });

  it('refuses an ONNX model and JSON that is not a defect map, with one line', () => {
    const r = dendra('inspect', mnist('mnist8x8-64x54x10.onnx'), '--png', join(dir, 'x.png'));
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/--png draws a \.dendra artifact or a defect map; .* is an ONNX model/);
    expect(r.err.trim().split('\n')).toHaveLength(1);
    const r2 = dendra('inspect', mnist('manifest.json'));
    expect(r2.code).toBe(1);
    expect(r2.err).toMatch(/defect map: 'format' must be "dendra-defects"/);
    expect(r2.err.trim().split('\n')).toHaveLength(1);
  });
});
