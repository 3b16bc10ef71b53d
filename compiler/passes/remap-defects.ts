/**
 * Pass: (naively tiled PlacedModel, MappedModel, chip DefectMap) → PlacedModel on that chip.
 *
 * remap 'none': tile i goes to chip array i with the naive row and column order; stuck cells keep their
 * stuck conductance and their healthy partners their original target. This is what a tool blind to
 * the fault map does, kept for comparison.
 *
 * remap 'auto':
 *  1. arrays: the tiles that matter most (Σ input power · weight²) get the chip's least faulty arrays
 *     (stuck-ON cells count double: they pin a pair far from zero);
 *  2. inside each array, logical inputs are assigned to physical row slots and logical outputs to
 *     column slots (spare and unused ones included) by alternating linear assignment problems
 *     (rows, columns, rows) that minimise Σ s_r · (w − w_achievable)², where s_r is the input's
 *     mean power from calibration data (1 without it) and w_achievable is the weight closest to w that
 *     the pair can still encode given its stuck devices; on the side where pairs sit, each slot can
 *     also be taken flipped (G+ and G− exchanged, so the input or output is negated and negated back);
 *  3. the healthy partner of a stuck device is set so the pair encodes the weight where the window
 *     allows (G− = G_stuck − w·k, or G+ = G_stuck + w·k).
 */
import { InputError } from '../../common/errors.js';
import { faultGrid, STUCK_NONE, type DefectMap, type FaultGrid } from '../../common/defects.js';
import type { DeviceProfile } from '../../common/profile.js';
import type { MappedModel, PlacedArray, PlacedModel, PlacedTile } from '../ir/placed.js';
import { quantiseConductance } from './map-conductances.js';
import { assign } from '../solve/assignment.js';

export type RemapMode = 'none' | 'auto';

export interface RemapOptions {
  remap: RemapMode;
  /** Per layer, the mean power E[x²] of each input (from calibration data); 1 for every input when absent. */
  inputPower?: Float64Array[];
  /** Alternating row/column assignment rounds (default 3 solves: rows, columns, rows). */
  rounds?: number;
}

export interface ChipPlacement {
  device: string;
  arrays: number;
  faults: number;
  remap: RemapMode;
  calibrated: boolean;
  origin?: Record<string, unknown>;
}

/** How logical slots map to physical rows and columns for one profile. */
interface Geometry {
  onRows: boolean;
  rows: number;
  cols: number;
  rowSlots: number;
  colSlots: number;
}

const posRow = (g: Geometry, p: number, flip: number) => (g.onRows ? (flip ? p + g.rows / 2 : p) : p);
const negRow = (g: Geometry, p: number, flip: number) => (g.onRows ? (flip ? p : p + g.rows / 2) : p);
const posCol = (g: Geometry, c: number, flip: number) => (g.onRows ? c : flip ? 2 * c + 1 : 2 * c);
const negCol = (g: Geometry, c: number, flip: number) => (g.onRows ? c : flip ? 2 * c : 2 * c + 1);

/** Distance from w to the weights a pair with these stuck devices can still encode (weight units). */
function residual(w: number, k: number, grid: FaultGrid, pos: number, neg: number, p: DeviceProfile): number {
  const sp = grid.state[pos]!;
  const sn = grid.state[neg]!;
  if (sp === STUCK_NONE && sn === STUCK_NONE) return 0;
  const { min, max } = p.conductance;
  let lo: number;
  let hi: number;
  if (sp !== STUCK_NONE && sn !== STUCK_NONE) {
    lo = hi = (grid.conductance[pos]! - grid.conductance[neg]!) / k;
  } else if (sp !== STUCK_NONE) {
    const a = grid.conductance[pos]!;
    lo = (a - max) / k;
    hi = (a - min) / k;
  } else {
    const b = grid.conductance[neg]!;
    lo = (min - b) / k;
    hi = (max - b) / k;
  }
  return w < lo ? lo - w : w > hi ? w - hi : 0;
}

export function remapDefects(placed: PlacedModel, mapped: MappedModel, defects: DefectMap, options: RemapOptions): PlacedModel & { chip: ChipPlacement } {
  const profile = placed.profile;
  if (profile.array.rows === null || profile.array.cols === null) {
    throw new InputError(`device '${profile.name}' has unlimited arrays; it cannot be placed on a chip's defect map`);
  }
  const g: Geometry = {
    onRows: profile.array.differential === 'rows',
    rows: profile.array.rows,
    cols: profile.array.cols,
    rowSlots: profile.array.differential === 'rows' ? profile.array.rows / 2 : profile.array.rows,
    colSlots: profile.array.differential === 'columns' ? profile.array.cols / 2 : profile.array.cols,
  };
  defects.arrays.forEach((a, i) => {
    if (a.rows !== g.rows || a.cols !== g.cols) {
      throw new InputError(`defect map array ${i} is ${a.rows} × ${a.cols}, but device '${profile.name}' has ${g.rows} × ${g.cols} arrays`);
    }
  });
  const tiles = placed.layers.flatMap((l, li) => l.tiles.map((t, ti) => ({ li, ti, t })));
  if (tiles.length > defects.arrays.length) {
    throw new InputError(`the chip in the defect map has ${defects.arrays.length} arrays; the network needs ${tiles.length}`);
  }
  const grids = defects.arrays.map(faultGrid);
  const power = (li: number, input: number) => options.inputPower?.[li]?.[input] ?? 1;

  // 1. Which chip array holds which tile.
  const chipArrayOf = new Int32Array(tiles.length).map((_, i) => i);
  if (options.remap === 'auto') {
    const importance = tiles.map(({ li, t }) => {
      const l = mapped.layers[li]!;
      let s = 0;
      for (const i of t.inputIndex) for (const j of t.outputIndex) s += power(li, i) * l.weight[i * l.outFeatures + j]! ** 2;
      return s;
    });
    const severity = grids.map((gr) => {
      let s = 0;
      for (const st of gr.state) s += st === STUCK_NONE ? 0 : st === 1 ? 2 : 1;
      return s;
    });
    const byImportance = [...tiles.keys()].sort((a, b) => importance[b]! - importance[a]!);
    const bySeverity = [...grids.keys()].sort((a, b) => severity[a]! - severity[b]!);
    byImportance.forEach((tile, rank) => (chipArrayOf[tile] = bySeverity[rank]!));
  }

  // 2–3. Place each tile in its array.
  const arrays: PlacedArray[] = [];
  const layers = placed.layers.map((l) => ({ ...l, tiles: [] as PlacedTile[] }));
  tiles.forEach(({ li, t }, i) => {
    const grid = grids[chipArrayOf[i]!]!;
    const layer = mapped.layers[li]!;
    const placement = options.remap === 'auto'
      ? solveTile(g, grid, layer, t, (r) => power(li, r), profile, options.rounds ?? 3)
      : naiveSlots(g, t);
    const { tile, array } = writeTile(g, grid, layer, t, placement, profile, options.remap === 'auto', arrays.length);
    arrays.push({ ...array, chipArray: chipArrayOf[i]! });
    layers[li]!.tiles.push(tile);
  });
  return {
    ...placed,
    arrays,
    layers,
    chip: {
      device: defects.device,
      arrays: defects.arrays.length,
      faults: grids.reduce((s, gr) => s + gr.count, 0),
      remap: options.remap,
      calibrated: options.inputPower !== undefined,
      origin: defects.origin,
    },
  };
}

interface Slots {
  rowSlot: Int32Array; // per logical input of the tile
  rowFlip: Uint8Array;
  colSlot: Int32Array; // per logical output of the tile
  colFlip: Uint8Array;
}

function naiveSlots(g: Geometry, t: PlacedTile): Slots {
  const k = t.inputIndex.length;
  const c = t.outputIndex.length;
  return {
    rowSlot: Int32Array.from({ length: k }, (_, r) => (g.onRows ? t.rowPos[r]! : t.rowPos[r]!)),
    rowFlip: new Uint8Array(k),
    colSlot: Int32Array.from({ length: c }, (_, q) => (g.onRows ? t.colPos[q]! : t.colPos[q]! / 2)),
    colFlip: new Uint8Array(c),
  };
}

function solveTile(g: Geometry, grid: FaultGrid, layer: MappedModel['layers'][number], t: PlacedTile, power: (input: number) => number, profile: DeviceProfile, rounds: number): Slots {
  const k = t.inputIndex.length;
  const c = t.outputIndex.length;
  const slots = naiveSlots(g, t);
  if (grid.count === 0) return slots;
  const m = layer.outFeatures;
  const w = (r: number, q: number) => layer.weight[t.inputIndex[r]! * m + t.outputIndex[q]!]!;
  const kq = Float64Array.from(t.outputIndex, (j) => layer.gPerWeight[j]!);
  const s = Float64Array.from(t.inputIndex, (i) => power(i));
  const cell = (row: number, col: number) => row * g.cols + col;
  const faultyRow = new Uint8Array(g.rows);
  const faultyCol = new Uint8Array(g.cols);
  for (let r = 0; r < g.rows; r++) for (let x = 0; x < g.cols; x++) if (grid.state[cell(r, x)]) (faultyRow[r] = 1), (faultyCol[x] = 1);

  for (let round = 0; round < rounds; round++) {
    if (round % 2 === 0) {
      // Rows: cost[r][slot] with the columns fixed; flips where pairs sit on rows.
      const flips = g.onRows ? 2 : 1;
      const cost = new Float64Array(k * g.rowSlots);
      const bestFlip = new Uint8Array(k * g.rowSlots);
      for (let p = 0; p < g.rowSlots; p++) {
        if (!faultyRow[posRow(g, p, 0)] && !faultyRow[negRow(g, p, 0)]) continue;
        for (let r = 0; r < k; r++) {
          let best = Infinity;
          for (let f = 0; f < flips; f++) {
            let e = 0;
            for (let q = 0; q < c; q++) {
              const pos = cell(posRow(g, p, f), posCol(g, slots.colSlot[q]!, slots.colFlip[q]!));
              const neg = cell(negRow(g, p, f), negCol(g, slots.colSlot[q]!, slots.colFlip[q]!));
              if (!grid.state[pos] && !grid.state[neg]) continue;
              e += residual(w(r, q), kq[q]!, grid, pos, neg, profile) ** 2;
            }
            if (e < best) {
              best = e;
              bestFlip[r * g.rowSlots + p] = f;
            }
          }
          cost[r * g.rowSlots + p] = s[r]! * best;
        }
      }
      const chosen = assign(cost, k, g.rowSlots);
      for (let r = 0; r < k; r++) {
        slots.rowSlot[r] = chosen[r]!;
        slots.rowFlip[r] = bestFlip[r * g.rowSlots + chosen[r]!]!;
      }
    } else {
      // Columns: cost[q][slot] with the rows fixed; flips where pairs sit on columns.
      const flips = g.onRows ? 1 : 2;
      const cost = new Float64Array(c * g.colSlots);
      const bestFlip = new Uint8Array(c * g.colSlots);
      for (let x = 0; x < g.colSlots; x++) {
        if (!faultyCol[posCol(g, x, 0)] && !faultyCol[negCol(g, x, 0)]) continue;
        for (let q = 0; q < c; q++) {
          let best = Infinity;
          for (let f = 0; f < flips; f++) {
            let e = 0;
            for (let r = 0; r < k; r++) {
              const pos = cell(posRow(g, slots.rowSlot[r]!, slots.rowFlip[r]!), posCol(g, x, f));
              const neg = cell(negRow(g, slots.rowSlot[r]!, slots.rowFlip[r]!), negCol(g, x, f));
              if (!grid.state[pos] && !grid.state[neg]) continue;
              e += s[r]! * residual(w(r, q), kq[q]!, grid, pos, neg, profile) ** 2;
            }
            if (e < best) {
              best = e;
              bestFlip[q * g.colSlots + x] = f;
            }
          }
          cost[q * g.colSlots + x] = best;
        }
      }
      const chosen = assign(cost, c, g.colSlots);
      for (let q = 0; q < c; q++) {
        slots.colSlot[q] = chosen[q]!;
        slots.colFlip[q] = bestFlip[q * g.colSlots + chosen[q]!]!;
      }
    }
  }
  return slots;
}

function writeTile(
  g: Geometry, grid: FaultGrid, layer: MappedModel['layers'][number], t: PlacedTile, slots: Slots,
  profile: DeviceProfile, compensate: boolean, arrayIndex: number,
): { tile: PlacedTile; array: PlacedArray } {
  const k = t.inputIndex.length;
  const c = t.outputIndex.length;
  const m = layer.outFeatures;
  const conductance = new Float32Array(g.rows * g.cols).fill(profile.conductance.min);
  const stuck = Uint8Array.from(grid.state);
  for (let i = 0; i < stuck.length; i++) if (stuck[i]) conductance[i] = grid.conductance[i]!;
  const tile: PlacedTile = {
    array: arrayIndex,
    inputIndex: t.inputIndex,
    rowPos: Int32Array.from({ length: k }, (_, r) => posRow(g, slots.rowSlot[r]!, slots.rowFlip[r]!)),
    rowNeg: Int32Array.from({ length: k }, (_, r) => negRow(g, slots.rowSlot[r]!, slots.rowFlip[r]!)),
    outputIndex: t.outputIndex,
    colPos: Int32Array.from({ length: c }, (_, q) => posCol(g, slots.colSlot[q]!, slots.colFlip[q]!)),
    colNeg: Int32Array.from({ length: c }, (_, q) => negCol(g, slots.colSlot[q]!, slots.colFlip[q]!)),
    adcFullScale: t.adcFullScale,
  };
  const { min, max } = profile.conductance;
  const clamp = (x: number) => Math.min(max, Math.max(min, x));
  for (let r = 0; r < k; r++) {
    for (let q = 0; q < c; q++) {
      const src = t.inputIndex[r]! * m + t.outputIndex[q]!;
      const pos = tile.rowPos[r]! * g.cols + tile.colPos[q]!;
      const neg = tile.rowNeg[r]! * g.cols + tile.colNeg[q]!;
      const sp = stuck[pos]!;
      const sn = stuck[neg]!;
      const kq = layer.gPerWeight[t.outputIndex[q]!]!;
      const w = layer.weight[src]!;
      if (!sp) conductance[pos] = compensate && sn ? quantiseConductance(clamp(conductance[neg]! + w * kq), profile) : layer.gPos[src]!;
      if (!sn) conductance[neg] = compensate && sp ? quantiseConductance(clamp(conductance[pos]! - w * kq), profile) : layer.gNeg[src]!;
    }
  }
  return { tile, array: { rows: g.rows, cols: g.cols, conductance, stuck } };
}
