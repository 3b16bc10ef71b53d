/** Defect maps and the remapping pass: never worse than naive, uses the healthy partner and the spares. */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compile, importModel, mapConductances, remapDefects, tile } from '../../compiler/index.js';
import type { PlacedModel } from '../../compiler/index.js';
import { generateDefects, loadDefectMap, validateDefectMap, writeDefectMap, type DefectMap, type Fault } from '../../common/defects.js';
import { InputError } from '../../common/errors.js';
import { loadProfile } from '../../common/profile.js';
import { writeArtifact } from '../../artifact/write.js';
import { readArtifact } from '../../artifact/read.js';
import { model, randomValues, tensor } from '../helpers/onnx-builder.js';
import { mnist } from '../helpers/fixtures.js';

const hfo2 = loadProfile('hfo2-1t1r');
const MODEL = mnist('mnist8x8-64x54x10.onnx');

/** Σ (w − encoded w)² over every weight: what the placed conductances encode against what the model says. */
function weightError(placed: PlacedModel, weights: Float32Array[]): number {
  let e = 0;
  placed.layers.forEach((l, li) => {
    for (const t of l.tiles) {
      const a = placed.arrays[t.array]!;
      t.inputIndex.forEach((i, r) => {
        t.outputIndex.forEach((j, q) => {
          const g = a.conductance[t.rowPos[r]! * a.cols + t.colPos[q]!]! - a.conductance[t.rowNeg[r]! * a.cols + t.colNeg[q]!]!;
          e += (weights[li]![i * l.outFeatures + j]! - g / l.gPerWeight[j]!) ** 2;
        });
      });
    }
  });
  return e;
}

describe('defect maps', () => {
  it('generate: rate and ON fraction as asked, reproducible by seed', () => {
    const m = generateDefects(hfo2, { rate: 0.1, onFraction: 0.3, seed: 5, arrays: 20 });
    const faults = m.arrays.flatMap((a) => a.faults);
    expect(faults.length / (20 * 128 * 64)).toBeCloseTo(0.1, 2);
    expect(faults.filter((f) => f[2] === 'on').length / faults.length).toBeCloseTo(0.3, 1);
    expect(faults.every((f) => f[3] === (f[2] === 'on' ? hfo2.stuck.on : hfo2.stuck.off))).toBe(true);
    expect(generateDefects(hfo2, { rate: 0.1, onFraction: 0.3, seed: 5, arrays: 20 })).toEqual(m);
    expect(generateDefects(hfo2, { rate: 0.1, seed: 6, arrays: 20 })).not.toEqual(m);
  });

  it('patterns: rows and columns fail whole lines; clustered faults sit close together', () => {
    const rows = generateDefects(hfo2, { rate: 0.1, pattern: 'rows', seed: 1, arrays: 4 });
    for (const a of rows.arrays) {
      const perRow = new Map<number, number>();
      for (const f of a.faults) perRow.set(f[0], (perRow.get(f[0]) ?? 0) + 1);
      expect([...perRow.values()].every((n) => n === 64)).toBe(true);
    }
    const cols = generateDefects(hfo2, { rate: 0.1, pattern: 'columns', seed: 1, arrays: 4 });
    for (const a of cols.arrays) {
      const perCol = new Map<number, number>();
      for (const f of a.faults) perCol.set(f[1], (perCol.get(f[1]) ?? 0) + 1);
      expect([...perCol.values()].every((n) => n === 128)).toBe(true);
    }
    const clustered = generateDefects(hfo2, { rate: 0.05, pattern: 'clustered', seed: 1, arrays: 4 });
    const random = generateDefects(hfo2, { rate: 0.05, pattern: 'random', seed: 1, arrays: 4 });
    const neighbours = (m: DefectMap) => {
      let n = 0;
      for (const a of m.arrays) {
        const set = new Set(a.faults.map((f) => f[0] * 64 + f[1]));
        for (const f of a.faults) if (set.has(f[0] * 64 + f[1] + 1) || set.has((f[0] + 1) * 64 + f[1])) n++;
      }
      return n / m.arrays.reduce((s, a) => s + a.faults.length, 0);
    };
    expect(neighbours(clustered)).toBeGreaterThan(3 * neighbours(random));
  });

  it('round-trips through its JSON file and refuses malformed maps with the place named', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dendra-map-'));
    const m = generateDefects(hfo2, { rate: 0.02, seed: 3, arrays: 3 });
    writeDefectMap(join(dir, 'm.json'), m);
    expect(loadDefectMap(join(dir, 'm.json'))).toEqual(m);
    const base = { format: 'dendra-defects', version: 1, device: 'hfo2-1t1r' };
    const withFaults = (faults: unknown[]) => ({ ...base, arrays: [{ rows: 128, cols: 64, faults }] });
    expect(() => validateDefectMap(withFaults([[128, 0, 'on', 1e-4]]))).toThrow(/arrays\[0\].faults\[0\]: cell \(128, 0\) is outside the 128 × 64 array/);
    expect(() => validateDefectMap(withFaults([[1, 1, 'stuck', 1e-4]]))).toThrow(/state must be "on" or "off"/);
    expect(() => validateDefectMap(withFaults([[1, 1, 'on', 1e-4], [1, 1, 'off', 0]]))).toThrow(/listed twice/);
    expect(() => validateDefectMap({ ...base, version: 2, arrays: [] })).toThrow(/version 2 is not supported/);
    expect(() => generateDefects(loadProfile('ideal'), { rate: 0.1 })).toThrow(/unlimited arrays/);
  });
});

describe('remapping', () => {
  const layers = importModel(MODEL);
  const weights = layers.layers.map((l) => l.weight);
  const mapped = mapConductances(layers, hfo2);
  const naive = tile(mapped);

  it.each([
    ['random', 0.1], ['random', 0.2], ['random', 0.3], ['rows', 0.1], ['columns', 0.1], ['clustered', 0.2],
  ] as const)('never worse than naive: %s faults at %s', (pattern, rate) => {
    for (const seed of [1, 2, 3]) {
      const chip = generateDefects(hfo2, { rate, pattern, seed, arrays: 2 });
      const none = weightError(remapDefects(naive, mapped, chip, { remap: 'none' }), weights);
      const auto = weightError(remapDefects(naive, mapped, chip, { remap: 'auto' }), weights);
      expect(auto).toBeLessThanOrEqual(none);
      if (rate >= 0.1 && pattern === 'random') expect(auto).toBeLessThan(0.5 * none);
    }
  });

  it('sets the healthy partner of a stuck device so the pair still encodes the weight', () => {
    // One stuck-OFF device on the G+ row of weight (0, 0) of both arrays, and no freedom to move: rounds = 0.
    const t = naive.layers[0]!.tiles[0]!;
    const fault: Fault = [t.rowPos[0]!, t.colPos[0]!, 'off', hfo2.stuck.off];
    const chip: DefectMap = { format: 'dendra-defects', version: 1, device: 'hfo2-1t1r', arrays: [{ rows: 128, cols: 64, faults: [fault] }, { rows: 128, cols: 64, faults: [fault] }] };
    const auto = remapDefects(naive, mapped, chip, { remap: 'auto', rounds: 0 });
    const none = remapDefects(naive, mapped, chip, { remap: 'none' });
    const step = hfo2.conductance.max / (hfo2.conductance.levels - 1);
    const k = mapped.layers[0]!.gPerWeight[0]!;
    const encoded = (p: PlacedModel) => {
      const a = p.arrays[p.layers[0]!.tiles[0]!.array]!;
      const tt = p.layers[0]!.tiles[0]!;
      return (a.conductance[tt.rowPos[0]! * 64 + tt.colPos[0]!]! - a.conductance[tt.rowNeg[0]! * 64 + tt.colNeg[0]!]!) / k;
    };
    const w = weights[0]![0]!;
    expect(auto.arrays[0]!.stuck![fault[0] * 64 + fault[1]]).toBe(2);
    expect(auto.arrays[0]!.conductance[fault[0] * 64 + fault[1]]).toBeCloseTo(hfo2.stuck.off, 12);
    expect(Math.abs(encoded(auto) - w)).toBeLessThanOrEqual(step / 2 / k + 1e-9);
    expect(Math.abs(encoded(none) - w)).toBeGreaterThan(Math.abs(encoded(auto) - w));
  });

  it('moves inputs onto the spare rows the profile declares', () => {
    // rram-512: 496 of 512 rows for weights, 16 spares. A 496-input layer fills every non-spare row; row 3 is dead.
    const rram = loadProfile('rram-512');
    const n = 496;
    const bytes = model({
      input: { dims: ['batch', n] },
      nodes: [{ op: 'MatMul', inputs: ['x', 'W'], outputs: ['y'] }],
      initializers: [tensor('W', [n, 4], randomValues(n * 4, 9))],
    });
    const m = mapConductances(importModel(bytes), rram);
    const placedNaive = tile(m);
    expect(Math.max(...placedNaive.layers[0]!.tiles[0]!.rowPos)).toBe(n - 1);
    const dead: Fault[] = Array.from({ length: 512 }, (_, c) => [3, c, 'on', rram.stuck.on] as Fault);
    const chip: DefectMap = { format: 'dendra-defects', version: 1, device: 'rram-512', arrays: [{ rows: 512, cols: 512, faults: dead }] };
    const auto = remapDefects(placedNaive, m, chip, { remap: 'auto' });
    const rows = Array.from(auto.layers[0]!.tiles[0]!.rowPos);
    expect(rows).not.toContain(3);
    expect(Math.max(...rows)).toBeGreaterThanOrEqual(n);
    // What is left is the 16-level quantisation error of a fault-free chip.
    const faultFree = weightError(placedNaive, [m.layers[0]!.weight]);
    expect(weightError(auto, [m.layers[0]!.weight])).toBeLessThanOrEqual(faultFree * (1 + 1e-6));
    expect(weightError(remapDefects(placedNaive, m, chip, { remap: 'none' }), [m.layers[0]!.weight])).toBeGreaterThan(2 * faultFree);
  });

  it('weights errors by input power from calibration data: dead pixels take the faults', () => {
    const chip = generateDefects(hfo2, { rate: 0.2, seed: 4, arrays: 2 });
    const power = [Float64Array.from({ length: 64 }, (_, i) => (i % 8 === 0 ? 0 : 1)), new Float64Array(54).fill(1)];
    const placed = remapDefects(naive, mapped, chip, { remap: 'auto', inputPower: power });
    const plain = remapDefects(naive, mapped, chip, { remap: 'auto' });
    const weighted = (p: PlacedModel) => {
      // Error on the inputs that carry signal only.
      const w = weights.map((x) => Float32Array.from(x));
      for (let i = 0; i < 64; i += 8) for (let j = 0; j < 54; j++) w[0]![i * 54 + j] = NaN;
      let e = 0;
      const l = p.layers[0]!;
      for (const t of l.tiles) {
        const a = p.arrays[t.array]!;
        t.inputIndex.forEach((i, r) => {
          if (i % 8 === 0) return;
          t.outputIndex.forEach((j, q) => {
            const g = a.conductance[t.rowPos[r]! * a.cols + t.colPos[q]!]! - a.conductance[t.rowNeg[r]! * a.cols + t.colNeg[q]!]!;
            e += (weights[0]![i * 54 + j]! - g / l.gPerWeight[j]!) ** 2;
          });
        });
      }
      return e;
    };
    expect(weighted(placed)).toBeLessThan(weighted(plain));
  });

  it('the artifact records the chip, the stuck cells and the placement', () => {
    const chip = generateDefects(hfo2, { rate: 0.1, seed: 8, arrays: 3 });
    const placed = compile(MODEL, { device: 'hfo2-1t1r', defects: chip, remap: 'auto' });
    const back = readArtifact(writeArtifact(placed));
    expect(back.chip).toMatchObject({ device: 'hfo2-1t1r', arrays: 3, remap: 'auto', calibrated: false });
    expect(back.arrays.map((a) => a.chipArray).sort()).toEqual(placed.arrays.map((a) => a.chipArray).sort());
    expect(back.arrays[0]!.stuck).toEqual(placed.arrays[0]!.stuck);
    expect(back.layers[0]!.tiles[0]!.rowPos).toEqual(placed.layers[0]!.tiles[0]!.rowPos);
  });

  it('refuses maps of another device, of other array sizes, or with too few arrays', () => {
    const chip = generateDefects(hfo2, { rate: 0.1, seed: 8, arrays: 1 });
    expect(() => compile(MODEL, { device: 'hfo2-1t1r', defects: chip })).toThrow(/has 1 arrays; the network needs 2/);
    expect(() => compile(MODEL, { device: 'rram-512', defects: generateDefects(hfo2, { rate: 0.1, arrays: 2 }) })).toThrow(/describes a 'hfo2-1t1r' chip, but the network is compiled for 'rram-512'/);
    expect(() => compile(MODEL, { device: 'hfo2-1t1r', remap: 'auto' })).toThrow(InputError);
  });
});
