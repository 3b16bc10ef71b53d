/**
 * PNG pictures of what sits on a chip: an artifact's physical arrays as conductance heat maps (stuck
 * cells coloured) and a defect map's fault map. Both use one layout: the arrays in a grid, row-major in
 * array order, separated by a 1-pixel gap, each cell drawn as a square of `cellPx` pixels.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { PNG } from 'pngjs';
import type { Artifact } from '../artifact/format.js';
import { STUCK_NONE, STUCK_ON, faultGrid, type DefectMap } from '../common/defects.js';
import { InputError } from '../common/errors.js';

export type RGB = readonly [number, number, number];

/** The fixed colours (grayscale for conductances never produces them: its pixels have R = G = B). */
export const COLORS = {
  on: [220, 30, 30] as RGB, // stuck ON
  off: [30, 90, 235] as RGB, // stuck OFF
  healthy: [211, 211, 211] as RGB, // a healthy cell of a defect map
  /** Background (the gaps between arrays, unused space) of artifact pictures: white against the mostly dark heat maps. */
  gap: [255, 255, 255] as RGB,
  /** Background of defect map pictures: dark gray against the light gray healthy cells. */
  mapGap: [90, 90, 90] as RGB,
};

/** Widest picture the layout aims for (a single array wider than this at 1 px per cell still gets drawn). */
export const MAX_WIDTH = 4000;
export const GAP = 1;

export interface Layout {
  /** Pixels per cell side. */
  cellPx: number;
  /** Arrays per grid row, and grid rows. */
  gridCols: number;
  gridRows: number;
  /** Each array's slot: the largest array's size in pixels. */
  slotWidth: number;
  slotHeight: number;
  width: number;
  height: number;
}

/** The picture grows no further than this many cell pixels to get more pixels per cell. */
export const TARGET_PIXELS = 4_000_000;

/**
 * The layout for n arrays of at most maxRows × maxCols cells: the most pixels per cell from 4, 3, 2
 * that keeps the cells within TARGET_PIXELS (2 px however large the chip; 1 px only where one array
 * would pass MAX_WIDTH at 2 px); as many arrays per grid row as makes the picture about square, without
 * passing MAX_WIDTH.
 */
export function layoutFor(n: number, maxRows: number, maxCols: number): Layout {
  const cells = n * maxRows * maxCols;
  let cellPx = [4, 3, 2].find((px) => cells * px * px <= TARGET_PIXELS && maxCols * px <= MAX_WIDTH) ?? 2;
  if (maxCols * cellPx > MAX_WIDTH) cellPx = 1;
  const slotWidth = maxCols * cellPx;
  const slotHeight = maxRows * cellPx;
  const fit = Math.max(1, Math.floor((MAX_WIDTH + GAP) / (slotWidth + GAP)));
  const square = Math.ceil(Math.sqrt((n * slotHeight) / slotWidth));
  const gridCols = Math.max(1, Math.min(n, fit, square));
  const gridRows = Math.ceil(n / gridCols);
  return {
    cellPx, gridCols, gridRows, slotWidth, slotHeight,
    width: gridCols * slotWidth + (gridCols - 1) * GAP,
    height: gridRows * slotHeight + (gridRows - 1) * GAP,
  };
}

/** Top-left pixel of array i's slot. */
export function slotOrigin(layout: Layout, i: number): [number, number] {
  return [(i % layout.gridCols) * (layout.slotWidth + GAP), Math.floor(i / layout.gridCols) * (layout.slotHeight + GAP)];
}

interface Drawable {
  rows: number;
  cols: number;
  /** Writes the colour of cell (r, c) into out[0..2]. */
  color(r: number, c: number, out: Uint8Array): void;
}

function draw(arrays: Drawable[], background: RGB): { png: PNG; layout: Layout } {
  const layout = layoutFor(arrays.length, Math.max(...arrays.map((a) => a.rows)), Math.max(...arrays.map((a) => a.cols)));
  const { width, height, cellPx } = layout;
  if (width * height > 100_000_000) throw new InputError(`the picture would be ${width} × ${height} pixels; too large to draw`);
  const png = new PNG({ width, height, colorType: 6 });
  const data = png.data;
  const [gr, gg, gb] = background;
  for (let p = 0; p < data.length; p += 4) (data[p] = gr), (data[p + 1] = gg), (data[p + 2] = gb), (data[p + 3] = 255);
  const rgb = new Uint8Array(3);
  arrays.forEach((a, i) => {
    const [x0, y0] = slotOrigin(layout, i);
    for (let r = 0; r < a.rows; r++) {
      for (let c = 0; c < a.cols; c++) {
        a.color(r, c, rgb);
        for (let dy = 0; dy < cellPx; dy++) {
          let p = ((y0 + r * cellPx + dy) * width + x0 + c * cellPx) * 4;
          for (let dx = 0; dx < cellPx; dx++, p += 4) (data[p] = rgb[0]!), (data[p + 1] = rgb[1]!), (data[p + 2] = rgb[2]!);
        }
      }
    }
  });
  return { png, layout };
}

const put = (out: Uint8Array, c: RGB) => ((out[0] = c[0]), (out[1] = c[1]), (out[2] = c[2]));

/**
 * An artifact's physical arrays, in artifact order: conductance in grayscale from the profile's
 * conductance.min (black) to max (white); with a chip's defect map compiled in, stuck-ON cells red and
 * stuck-OFF cells blue.
 */
export function artifactPicture(a: Artifact): { png: PNG; layout: Layout } {
  const { min, max } = a.profile.conductance;
  const span = max > min ? max - min : 1;
  return draw(a.arrays.map((arr) => ({
    rows: arr.rows,
    cols: arr.cols,
    color(r: number, c: number, out: Uint8Array) {
      const k = r * arr.cols + c;
      const s = arr.stuck?.[k] ?? STUCK_NONE;
      if (s !== STUCK_NONE) return put(out, s === STUCK_ON ? COLORS.on : COLORS.off);
      const v = Math.round(255 * Math.min(1, Math.max(0, (arr.conductance[k]! - min) / span)));
      out[0] = out[1] = out[2] = v;
    },
  })), COLORS.gap);
}

/** A defect map's fault map, in chip order: healthy cells light gray, stuck ON red, stuck OFF blue. */
export function defectMapPicture(m: DefectMap): { png: PNG; layout: Layout } {
  return draw(m.arrays.map((arr) => {
    const grid = faultGrid(arr);
    return {
      rows: arr.rows,
      cols: arr.cols,
      color(r: number, c: number, out: Uint8Array) {
        const s = grid.state[r * arr.cols + c]!;
        put(out, s === STUCK_NONE ? COLORS.healthy : s === STUCK_ON ? COLORS.on : COLORS.off);
      },
    };
  }), COLORS.mapGap);
}

export function writePng(file: string, png: PNG): void {
  try {
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, PNG.sync.write(png, { colorType: 2 }));
  } catch (e) {
    throw new InputError(`cannot write ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { file });
  }
}
