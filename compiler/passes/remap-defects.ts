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
 *     (rows, then columns) that minimise Σ s_r · (w − w_achievable)², where s_r is the input's
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
  /** Alternating row/column assignment rounds (default 2: rows, then columns). */
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
 * [lo, hi] of G+ − G− (siemens) each can still reach in the unflipped orientation (flipping negates it),
 * indexed by row slot and by column slot (CSR).
 */
interface Sites {
  rowSlot: Int32Array;
  colSlot: Int32Array;
  lo: Float64Array;
  hi: Float64Array;
  /** Sites of row slot p: byRow[rowStart[p] .. rowStart[p+1]). */
  rowStart: Int32Array;
  byRow: Int32Array;
  colStart: Int32Array;
  byCol: Int32Array;
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
  const index = (keys: number[], n: number) => {
    const start = new Int32Array(n + 1);
    for (const k of keys) start[k + 1]!++;
    for (let i = 0; i < n; i++) start[i + 1]! += start[i]!;
    const fill = start.slice(0, n);
    const order = new Int32Array(keys.length);
    keys.forEach((k, i) => (order[fill[k]!++] = i));
    return { start, order };
  };
  const byRow = index(rs, g.rowSlots);
  const byCol = index(cs, g.colSlots);
  return {
    rowSlot: Int32Array.from(rs), colSlot: Int32Array.from(cs), lo: Float64Array.from(los), hi: Float64Array.from(his),
    rowStart: byRow.start, byRow: byRow.order, colStart: byCol.start, byCol: byCol.order,
  };
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
      ? solveTile(g, grid, layer, t, (r) => power(li, r), profile, options.rounds ?? 2)
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
    rowSlot: Int32Array.from(t.rowPos),
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
  // The tile's weights in conductance units (w·k), and 1/k² to turn conductance misses back into weight units.
  const gw = new Float64Array(k * c);
  const invK2 = Float64Array.from(t.outputIndex, (j) => 1 / layer.gPerWeight[j]! ** 2);
  for (let r = 0; r < k; r++) {
    for (let q = 0; q < c; q++) gw[r * c + q] = layer.weight[t.inputIndex[r]! * m + t.outputIndex[q]!]! * layer.gPerWeight[t.outputIndex[q]!]!;
  }
  const s = Float64Array.from(t.inputIndex, (i) => power(i));
  const st = faultySites(g, grid, profile);
  const rowFlips = g.onRows ? 2 : 1;
  const colFlips = g.onRows ? 1 : 2;

  // gwT: the same weights transposed, so the row round runs over inputs contiguously.
  const gwT = new Float64Array(k * c);
  for (let r = 0; r < k; r++) for (let q = 0; q < c; q++) gwT[q * k + r] = gw[r * c + q]!;
  const e0 = new Float64Array(Math.max(k, c));
  const e1 = new Float64Array(Math.max(k, c));
  const { lo, hi } = st;

  for (let round = 0; round < rounds; round++) {
    if (round % 2 === 0) {
      // Rows: cost[r][slot] with the columns fixed. A flipped column negates its weights, which is the
      // same as negating (and swapping) the reachable interval; a flipped row negates again.
      const owner = new Int32Array(g.colSlots).fill(-1);
      for (let q = 0; q < c; q++) owner[slots.colSlot[q]!] = q;
      const cost = new Float64Array(k * g.rowSlots);
      const bestFlip = new Uint8Array(k * g.rowSlots);
      for (let p = 0; p < g.rowSlots; p++) {
        const from = st.rowStart[p]!;
        const to = st.rowStart[p + 1]!;
        if (from === to) continue;
        e0.fill(0, 0, k);
        e1.fill(0, 0, k);
        for (let n = from; n < to; n++) {
          const i = st.byRow[n]!;
          const q = owner[st.colSlot[i]!]!;
          if (q < 0) continue;
          const flipped = slots.colFlip[q] === 1;
          const a = flipped ? -hi[i]! : lo[i]!;
          const b = flipped ? -lo[i]! : hi[i]!;
          const ik = invK2[q]!;
          const base = q * k;
          for (let r = 0; r < k; r++) {
            const v = gwT[base + r]!;
            const d0 = v < a ? a - v : v > b ? v - b : 0;
            const d1 = -v < a ? a + v : -v > b ? -v - b : 0;
            e0[r]! += d0 * d0 * ik;
            e1[r]! += d1 * d1 * ik;
          }
        }
        for (let r = 0; r < k; r++) {
          const flip = rowFlips === 2 && e1[r]! < e0[r]! ? 1 : 0;
          bestFlip[r * g.rowSlots + p] = flip;
          cost[r * g.rowSlots + p] = s[r]! * (flip ? e1[r]! : e0[r]!);
        }
      }
      const chosen = assign(cost, k, g.rowSlots);
      for (let r = 0; r < k; r++) {
        slots.rowSlot[r] = chosen[r]!;
        slots.rowFlip[r] = bestFlip[r * g.rowSlots + chosen[r]!]!;
      }
    } else {
      // Columns: cost[q][slot] with the rows fixed.
      const owner = new Int32Array(g.rowSlots).fill(-1);
      for (let r = 0; r < k; r++) owner[slots.rowSlot[r]!] = r;
      const cost = new Float64Array(c * g.colSlots);
      const bestFlip = new Uint8Array(c * g.colSlots);
      for (let x = 0; x < g.colSlots; x++) {
        const from = st.colStart[x]!;
        const to = st.colStart[x + 1]!;
        if (from === to) continue;
        e0.fill(0, 0, c);
        e1.fill(0, 0, c);
        for (let n = from; n < to; n++) {
          const i = st.byCol[n]!;
          const r = owner[st.rowSlot[i]!]!;
          if (r < 0) continue;
          const flipped = slots.rowFlip[r] === 1;
          const a = flipped ? -hi[i]! : lo[i]!;
          const b = flipped ? -lo[i]! : hi[i]!;
          const sr = s[r]!;
          const base = r * c;
          for (let q = 0; q < c; q++) {
            const v = gw[base + q]!;
            const d0 = v < a ? a - v : v > b ? v - b : 0;
            const d1 = -v < a ? a + v : -v > b ? -v - b : 0;
            e0[q]! += sr * d0 * d0;
            e1[q]! += sr * d1 * d1;
          }
        }
        for (let q = 0; q < c; q++) {
          const flip = colFlips === 2 && e1[q]! < e0[q]! ? 1 : 0;
          bestFlip[q * g.colSlots + x] = flip;
          cost[q * g.colSlots + x] = (flip ? e1[q]! : e0[q]!) * invK2[q]!;
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
