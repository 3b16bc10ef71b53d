/** The passes on their own: pure functions from one IR to the next. */
import { describe, expect, it } from 'vitest';
import { importModel, mapConductances, tile } from '../../compiler/index.js';
import { quantiseConductance } from '../../compiler/passes/map-conductances.js';
import { tileGeometry } from '../../compiler/passes/tile.js';
import { loadProfile } from '../../common/profile.js';
import { mnist } from '../helpers/fixtures.js';

const model = importModel(mnist('mnist8x8-64x54x10.onnx'));

describe('map-conductances', () => {
  it('ideal: (G+ − G−) / k gives back every weight, one device of each pair at Gmin', () => {
    const mapped = mapConductances(model, loadProfile('ideal'));
    for (const [li, l] of mapped.layers.entries()) {
      const w = model.layers[li]!.weight;
      const m = l.outFeatures;
      for (let i = 0; i < w.length; i++) {
        const j = i % m;
        expect((l.gPos[i]! - l.gNeg[i]!) / l.gPerWeight[j]!).toBeCloseTo(w[i]!, 6);
        expect(Math.min(l.gPos[i]!, l.gNeg[i]!)).toBe(0);
      }
    }
  });

  it('hfo2-1t1r: every device on one of 32 levels inside the 0–250 µS window, largest weight of a column at Gmax', () => {
    const p = loadProfile('hfo2-1t1r');
    const step = p.conductance.max / 31;
    const mapped = mapConductances(model, p);
    for (const l of mapped.layers) {
      for (const g of [...l.gPos, ...l.gNeg]) {
        expect(g).toBeGreaterThanOrEqual(0);
        expect(g).toBeLessThanOrEqual(p.conductance.max * (1 + 1e-6));
        expect(Math.abs(g / step - Math.round(g / step))).toBeLessThan(1e-3);
      }
      const m = l.outFeatures;
      for (let j = 0; j < m; j++) {
        let top = 0;
        for (let i = 0; i < l.inFeatures; i++) top = Math.max(top, l.gPos[i * m + j]!, l.gNeg[i * m + j]!);
        expect(top).toBeCloseTo(p.conductance.max, 9);
      }
    }
  });

  it('quantiseConductance clamps to the window and rounds to the nearest level', () => {
    const p = loadProfile('rram-512'); // 1–100 µS, 16 levels: step 6.6 µS
    expect(quantiseConductance(-1, p)).toBe(1e-6);
    expect(quantiseConductance(1, p)).toBeCloseTo(1e-4, 12);
    expect(quantiseConductance(1e-6 + 6.6e-6 * 0.6, p)).toBeCloseTo(1e-6 + 6.6e-6, 12);
  });
});

describe('tile', () => {
  it('covers every weight exactly once, on arrays no larger than the profile allows', () => {
    for (const name of ['hfo2-1t1r', 'rram-512', 'ideal']) {
      const p = loadProfile(name);
      const placed = tile(mapConductances(importModel(mnist('mnist-784x500x10.onnx')), p));
      for (const a of placed.arrays) {
        if (p.array.rows) expect(a.rows).toBe(p.array.rows);
        if (p.array.cols) expect(a.cols).toBe(p.array.cols);
      }
      for (const l of placed.layers) {
        const seen = new Uint8Array(l.inFeatures * l.outFeatures);
        for (const t of l.tiles) for (const i of t.inputIndex) for (const j of t.outputIndex) seen[i * l.outFeatures + j]!++;
        expect(seen.every((c) => c === 1)).toBe(true);
      }
    }
  });

  it('hfo2-1t1r: 784 → 500 needs 13 × 8 arrays of 64 pairs × 64 columns; G+ on the top half, G− on the bottom half of the same column', () => {
    const placed = tile(mapConductances(importModel(mnist('mnist-784x500x10.onnx')), loadProfile('hfo2-1t1r')));
    const l0 = placed.layers[0]!;
    expect(tileGeometry(placed.profile, 784, 500)).toEqual({ inputsPerArray: 64, outputsPerArray: 64 });
    expect(l0.tiles.length).toBe(13 * 8);
    const t = l0.tiles[0]!;
    expect(Array.from(t.rowNeg.subarray(0, 3))).toEqual([64, 65, 66]);
    expect(Array.from(t.colPos)).toEqual(Array.from(t.colNeg));
  });

  it('rram-512: pairs on adjacent columns', () => {
    const placed = tile(mapConductances(model, loadProfile('rram-512')));
    const t = placed.layers[0]!.tiles[0]!;
    expect(Array.from(t.colPos.subarray(0, 3))).toEqual([0, 2, 4]);
    expect(Array.from(t.colNeg.subarray(0, 3))).toEqual([1, 3, 5]);
    expect(Array.from(t.rowPos)).toEqual(Array.from(t.rowNeg));
  });

  it('passes do not modify their input', () => {
    const before = Float32Array.from(model.layers[0]!.weight);
    tile(mapConductances(model, loadProfile('hfo2-1t1r')));
    expect(model.layers[0]!.weight).toEqual(before);
  });
});
