/**
 * Pass: MappedModel → PlacedModel. Splits each layer into tiles that fit one physical array, gives
 * each tile its own array, and places the differential pairs:
 *   pairs on rows:    logical input r drives row r (+v, G+) and row r + rows/2 (−v, G−); output c is column c;
 *   pairs on columns: logical input r drives row r; output c is column 2c (G+) minus column 2c+1 (G−).
 * Cells an array does not use (and the profile's spare rows and columns) stay at the window's lowest
 * conductance. Partial sums of the tiles of one
 * layer are added in the periphery. A dendritic layer is tiled branch by branch: a tile holds the inputs of
 * one branch only (tile.branch), so each of its column segments feeds that branch's dendrite device; a branch
 * larger than an array spans several tiles whose currents add before the dendrite. Each tile's ADC full scale is the profile's `adc.range` times the
 * largest column current the tile can draw with every input at full scale.
 */
import type { DeviceProfile } from '../../common/profile.js';
import type { MappedModel, PlacedArray, PlacedLayer, PlacedModel, PlacedTile } from '../ir/placed.js';

export interface TileGeometry {
  /** Logical inputs (pairs) and outputs one array holds. */
  inputsPerArray: number;
  outputsPerArray: number;
}

export function tileGeometry(profile: DeviceProfile, inFeatures: number, outFeatures: number): TileGeometry {
  const { rows, cols, differential, spareRows, spareCols } = profile.array;
  const rowFactor = differential === 'rows' ? 2 : 1;
  const colFactor = differential === 'columns' ? 2 : 1;
  return {
    inputsPerArray: rows === null ? inFeatures : Math.floor((rows - spareRows) / rowFactor),
    outputsPerArray: cols === null ? outFeatures : Math.floor((cols - spareCols) / colFactor),
  };
}

export function tile(model: MappedModel): PlacedModel {
  const profile = model.profile;
  const arrays: PlacedArray[] = [];
  const layers: PlacedLayer[] = model.layers.map((layer) => {
    const { inFeatures: n, outFeatures: m } = layer;
    const geo = tileGeometry(profile, n, m);
    const tiles: PlacedTile[] = [];
    const d = layer.dendrites;
    // The inputs of each branch (a point-neuron layer is one branch of every input), in order.
    const groups: number[][] = d ? Array.from({ length: d.count }, () => []) : [[]];
    for (let i = 0; i < n; i++) groups[d ? d.branchOf[i]! : 0]!.push(i);
    groups.forEach((inputs, branch) => {
      for (let i0 = 0; i0 < inputs.length; i0 += geo.inputsPerArray) {
        const chunk = inputs.slice(i0, i0 + geo.inputsPerArray);
        for (let j0 = 0; j0 < m; j0 += geo.outputsPerArray) {
          const c = Math.min(geo.outputsPerArray, m - j0);
          const placed = placeTile(layer, profile, chunk, j0, c, arrays.length);
          if (d) placed.tile.branch = branch;
          arrays.push(placed.array);
          tiles.push(placed.tile);
        }
      }
    });
    return {
      name: layer.name,
      origin: layer.origin,
      inFeatures: n,
      outFeatures: m,
      activation: layer.activation,
      bias: layer.bias,
      gPerWeight: layer.gPerWeight,
      tiles,
      ...(d ? { dendrites: d } : {}),
    };
  });
  return {
    source: model.source,
    input: model.input,
    output: model.output,
    profile,
    head: model.head,
    arrays,
    layers,
  };
}

function placeTile(
  layer: MappedModel['layers'][number], profile: DeviceProfile,
  inputs: number[], j0: number, c: number, arrayIndex: number,
): { array: PlacedArray; tile: PlacedTile } {
  const k = inputs.length;
  const onRows = profile.array.differential === 'rows';
  const rows = profile.array.rows ?? (onRows ? 2 * k : k);
  const cols = profile.array.cols ?? (onRows ? c : 2 * c);
  // Pairs on rows: G+ rows in the top half, G− rows in the bottom half; spare rows are the last of each half.
  const half = onRows ? (profile.array.rows === null ? k : profile.array.rows / 2) : 0;
  const conductance = new Float32Array(rows * cols).fill(profile.conductance.min);
  const t: PlacedTile = {
    array: arrayIndex,
    inputIndex: new Int32Array(k),
    rowPos: new Int32Array(k),
    rowNeg: new Int32Array(k),
    outputIndex: new Int32Array(c),
    colPos: new Int32Array(c),
    colNeg: new Int32Array(c),
    adcFullScale: 0,
  };
  for (let r = 0; r < k; r++) {
    t.inputIndex[r] = inputs[r]!;
    t.rowPos[r] = r;
    t.rowNeg[r] = onRows ? half + r : r;
  }
  for (let q = 0; q < c; q++) {
    t.outputIndex[q] = j0 + q;
    t.colPos[q] = onRows ? q : 2 * q;
    t.colNeg[q] = onRows ? q : 2 * q + 1;
  }
  const m = layer.outFeatures;
  let worst = 0;
  for (let q = 0; q < c; q++) {
    let column = 0;
    for (let r = 0; r < k; r++) {
      const src = inputs[r]! * m + (j0 + q);
      const gp = layer.gPos[src]!;
      const gn = layer.gNeg[src]!;
      conductance[t.rowPos[r]! * cols + t.colPos[q]!] = gp;
      conductance[t.rowNeg[r]! * cols + t.colNeg[q]!] = gn;
      column += Math.abs(gp - gn);
    }
    worst = Math.max(worst, column);
  }
  t.adcFullScale = Math.max(worst * profile.read.voltage * profile.adc.range, 1e-15);
  return { array: { rows, cols, conductance }, tile: t };
}
