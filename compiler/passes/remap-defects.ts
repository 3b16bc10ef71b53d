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
 *  2. inside each array (in the native solver, native/src/placement.cc), logical inputs are assigned to physical row slots and logical outputs to
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
import { availableParallelism } from 'node:os';
import { native, type NativePlacementProblem } from '../../native/index.js';

export type RemapMode = 'none' | 'auto';

export interface RemapOptions {
  remap: RemapMode;
  /** Per layer, the mean power E[x²] of each input (from calibration data); 1 for every input when absent. */
  inputPower?: Float64Array[];
  /** Alternating row/column assignment rounds (default 3: rows, columns, rows). */
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

/**
 * The faulty sites of one array: (row slot, column slot) pairs with a stuck device, with the interval
 * [lo, hi] of G+ − G− (siemens) each can still reach in the unflipped orientation (flipping negates it).
 */
interface Sites {
  rowSlot: Int32Array;
  colSlot: Int32Array;
  lo: Float64Array;
  hi: Float64Array;
}

function faultySites(g: Geometry, grid: FaultGrid, p: DeviceProfile): Sites {
  const { min, max } = p.conductance;
  const rs: number[] = [];
  const cs: number[] = [];
  const los: number[] = [];
  const his: number[] = [];
  for (let r = 0; r < g.rowSlots; r++) {
    for (let c = 0; c < g.colSlots; c++) {
      const pos = posRow(g, r, 0) * g.cols + posCol(g, c, 0);
      const neg = negRow(g, r, 0) * g.cols + negCol(g, c, 0);
      const sp = grid.state[pos]!;
      const sn = grid.state[neg]!;
      if (sp === STUCK_NONE && sn === STUCK_NONE) continue;
      const a = grid.conductance[pos]!;
      const b = grid.conductance[neg]!;
      rs.push(r);
      cs.push(c);
      if (sp !== STUCK_NONE && sn !== STUCK_NONE) los.push(a - b), his.push(a - b);
      else if (sp !== STUCK_NONE) los.push(a - max), his.push(a - min);
      else los.push(min - b), his.push(max - b);
    }
  }
  return { rowSlot: Int32Array.from(rs), colSlot: Int32Array.from(cs), lo: Float64Array.from(los), hi: Float64Array.from(his) };
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

  // 2. Inside each array: the native solver runs every tile's assignment problems, on all cores.
  const slots = tiles.map(({ t }) => naiveSlots(g, t));
  if (options.remap === 'auto') {
    const jobs = tiles.map(({ li, t }, i) => ({ i, problem: placementProblem(g, grids[chipArrayOf[i]!]!, mapped.layers[li]!, t, (r) => power(li, r), profile, slots[i]!, options.rounds ?? 3) }))
      .filter((j) => j.problem.siteRow.length > 0);
    const solved = native().placeTiles(jobs.map((j) => j.problem), availableParallelism());
    jobs.forEach((j, n) => (slots[j.i] = solved[n]!));
  }

  // 3. Write the conductances, compensating stuck devices with their healthy partners.
  const arrays: PlacedArray[] = [];
  const layers = placed.layers.map((l) => ({ ...l, tiles: [] as PlacedTile[] }));
  tiles.forEach(({ li, t }, i) => {
    const grid = grids[chipArrayOf[i]!]!;
    const { tile, array } = writeTile(g, grid, mapped.layers[li]!, t, slots[i]!, profile, options.remap === 'auto', arrays.length);
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
    rowSlot: Int32Array.from(t.rowPos),
    rowFlip: new Uint8Array(k),
    colSlot: Int32Array.from({ length: c }, (_, q) => (g.onRows ? t.colPos[q]! : t.colPos[q]! / 2)),
    colFlip: new Uint8Array(c),
  };
}

/** The assignment problem of one tile on one array, for the native solver. */
function placementProblem(g: Geometry, grid: FaultGrid, layer: MappedModel['layers'][number], t: PlacedTile, power: (input: number) => number, profile: DeviceProfile, start: Slots, rounds: number): NativePlacementProblem {
  const k = t.inputIndex.length;
  const c = t.outputIndex.length;
  const m = layer.outFeatures;
  const weights = new Float64Array(k * c);
  for (let r = 0; r < k; r++) {
    for (let q = 0; q < c; q++) weights[r * c + q] = layer.weight[t.inputIndex[r]! * m + t.outputIndex[q]!]! * layer.gPerWeight[t.outputIndex[q]!]!;
  }
  const sites = faultySites(g, grid, profile);
  return {
    rowSlots: g.rowSlots,
    colSlots: g.colSlots,
    flipRows: g.onRows,
    k,
    c,
    weights,
    invK2: Float64Array.from(t.outputIndex, (j) => 1 / layer.gPerWeight[j]! ** 2),
    power: Float64Array.from(t.inputIndex, (i) => power(i)),
    siteRow: sites.rowSlot,
    siteCol: sites.colSlot,
    siteLo: sites.lo,
    siteHi: sites.hi,
    rowSlot: start.rowSlot,
    colSlot: start.colSlot,
    rounds,
  };
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
    ...(t.branch !== undefined ? { branch: t.branch } : {}),
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
