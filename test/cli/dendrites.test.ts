/**
 * Dendrites end to end from the CLI: compile --branches (tiles follow branches, the artifact records the
 * assignment, inspect shows it), eval --json (accuracy with and without dendrites, soma power advantage,
 * energy breakdown), --input-noise, the refusals, version-1 artifacts, and boards refusing dendritic artifacts.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { examples } from '../helpers/fixtures.js';
import { dendra, expectOneLineError } from '../helpers/cli.js';
import { readArtifact, readArtifactFile } from '../../artifact/read.js';
import { writeArtifact } from '../../artifact/write.js';
import { CHECKSUM_BYTES } from '../../artifact/format.js';
import { refuseDendrites } from '../../runtime/backends/device/backend.js';
import { DeviceError } from '../../common/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'dendra-dendrites-'));
const model = examples('mnist8x8-64x54x10.onnx');
const x = examples('digits8x8-f32.npy');
const l = examples('labels.npy');
const plain = join(dir, 'plain.dendra');
const dendritic = join(dir, 'dendritic.dendra');

interface EvalJson {
  accuracy: number;
  energyPerInferenceJ: number;
  energy: { crossbarJ: number; dacJ: number; adcJ: number; digitalJ: number; dendriteJ: number; somaJ: number };
  inputNoise?: number;
  events?: { rowsDriven: number; rowsPossible: number; sparsity: number; signalsOn: number | null; activeSomas: number | null };
  dendrites?: {
    branches: number[];
    plain: { accuracy: number; energyPerInferenceJ: number; energy: { somaJ: number; dendriteJ: number } } | null;
    bypass: { accuracy: number; energy: { somaJ: number; dendriteJ: number } };
    powerAdvantage: number | null;
    energyAdvantage: number | null;
    signalsOn: number | null;
    activeSomas: { dendritic: number | null; plain: number | null };
  };
}
const evalJson = (file: string, ...extra: string[]): EvalJson => {
  const r = dendra('eval', file, '--input', x, '--labels', l, '--json', '--seed', '1', ...extra);
  expect(r.err).toBe('');
  return JSON.parse(r.out) as EvalJson;
};

describe('dendra compile --branches', () => {
  it('compiles with dendrites: tiles follow branches, the artifact records them, inspect shows them', () => {
    expect(dendra('compile', model, '--device', 'taox-dendrite', '-o', plain).code).toBe(0);
    const r = dendra('compile', model, '--device', 'taox-dendrite', '--branches', '4,2', '--branch-strategy', 'balanced', '--calibrate', x, l, '-o', dendritic);
    expect(r.err).toBe('');
    expect(r.out).toMatch(/branches 4, 2 \(balanced\)/);
    expect(r.out).toMatch(/calibration: efficient mode: dendrites calibrated on 1000 samples/);
    const a = readArtifactFile(dendritic);
    expect(a.layers.map((layer) => layer.dendrites?.count)).toEqual([4, 2]);
    for (const layer of a.layers) {
      const d = layer.dendrites!;
      expect(d.calibrated).toBe(true);
      expect(d.strategy).toBe('balanced');
      for (const t of layer.tiles) for (const i of t.inputIndex) expect(d.branchOf[i]).toBe(t.branch);
      // every input of the layer is on exactly one tile per output block
      const seen = new Int32Array(layer.inFeatures);
      for (const t of layer.tiles) if (t.outputIndex[0] === 0) for (const i of t.inputIndex) seen[i]!++;
      expect(Array.from(seen).every((k) => k === 1)).toBe(true);
    }
    const text = dendra('inspect', dendritic);
    expect(text.out).toMatch(/dendrite exponential n = 0\.1, ON\/OFF 100/);
    expect(text.out).toMatch(/dendrites: 4 branches \(balanced\) of [0-9× ]+ inputs on 1×4 tile\(s\) each; F [0-9.]+, κ [0-9.]+, relu soma, calibrated/);
    const json = JSON.parse(dendra('inspect', dendritic, '--json').out) as { layers: { dendrites: { count: number; inputsPerBranch: number[]; branchOf: number[] } }[] };
    expect(json.layers[1]!.dendrites.count).toBe(2);
    expect(json.layers[1]!.dendrites.inputsPerBranch).toEqual([27, 27]);
    expect(json.layers[0]!.dendrites.branchOf).toHaveLength(64);
  });

  it('eval --json: the dendritic run, the plain compile it carries, the bypass reference and the energy breakdown', () => {
    const p = evalJson(plain);
    const d = evalJson(dendritic);
    expect(p.dendrites).toBeUndefined();
    expect(p.energy.dendriteJ).toBe(0);
    expect(p.energy.somaJ).toBeGreaterThan(0);
    const dd = d.dendrites!;
    expect(dd.branches).toEqual([4, 2]);
    expect(Math.abs(d.accuracy - p.accuracy)).toBeLessThan(0.02);
    // The plain compile carried by the artifact is the separately compiled plain network (same weights and
    // tiles; its somas saturate at the calibrated full scale, which moves at most a few digits).
    expect(Math.abs(dd.plain!.accuracy - p.accuracy)).toBeLessThan(0.005);
    expect(dd.plain!.energy.dendriteJ).toBe(0);
    expect(dd.bypass.energy.dendriteJ).toBe(0);
    expect(d.energy.dendriteJ).toBeGreaterThan(0);
    expect(dd.powerAdvantage).toBeGreaterThan(0);
    expect(dd.energyAdvantage).toBeGreaterThan(0);
    for (const f of [dd.signalsOn, dd.activeSomas.dendritic, dd.activeSomas.plain, d.events!.sparsity]) {
      expect(f).toBeGreaterThanOrEqual(0);
      expect(f).toBeLessThanOrEqual(1);
    }
    const sum = Object.values(d.energy).reduce((s, v) => s + v, 0);
    expect(d.energyPerInferenceJ).toBeCloseTo(sum, 18);
  });

  it('eval --input-noise adds seeded Gaussian noise to the inputs', () => {
    const clean = evalJson(dendritic);
    const noisy = evalJson(dendritic, '--input-noise', '8');
    expect(noisy.inputNoise).toBe(8);
    expect(noisy.accuracy).toBeLessThan(clean.accuracy - 0.05);
    expect(noisy.dendrites!.plain!.accuracy).toBeLessThan(clean.dendrites!.plain!.accuracy - 0.05);
    expect(evalJson(dendritic, '--input-noise', '8').accuracy).toBe(noisy.accuracy);
    expectOneLineError(dendra('eval', dendritic, '--input', x, '--labels', l, '--input-noise', '-1'), /--input-noise must be a number from 0/);
  });

  it('--branches auto takes one branch per array height of inputs, at least 4', () => {
    const out = join(dir, 'auto.dendra');
    const r = dendra('compile', model, '--device', 'taox-dendrite', '--branches', 'auto', '-o', out);
    expect(r.code).toBe(0);
    expect(r.err).toMatch(/warning: dendrite gains come from the weights alone/);
    expect(readArtifactFile(out).layers.map((layer) => layer.dendrites?.count)).toEqual([4, 4]);
  });

  it('refuses what it cannot do, in one line', () => {
    const o = ['-o', join(dir, 'bad.dendra')];
    expectOneLineError(dendra('compile', model, '--branches', '4,2', ...o), /the 'ideal' profile has no dendrite devices/);
    expectOneLineError(dendra('compile', model, '--device', 'taox-dendrite', '--branches', '4', ...o), /--branches gives 1 numbers for a network of 2 layers/);
    expectOneLineError(dendra('compile', model, '--device', 'taox-dendrite', '--branches', '4,x', ...o), /--branches must be positive integers/);
    expectOneLineError(dendra('compile', model, '--device', 'taox-dendrite', '--branches', '100,2', ...o), /layer 0 has 64 inputs; its branch count must be an integer from 1 to 64/);
    expectOneLineError(dendra('compile', model, '--device', 'taox-dendrite', '--branch-strategy', 'spatial', ...o), /--branch-strategy needs --branches/);
    expectOneLineError(dendra('compile', model, '--device', 'taox-dendrite', '--branches', '4,2', '--branch-strategy', 'spatial', ...o), /'spatial' needs an input of shape \[batch, C, H, W\]/);
    expectOneLineError(dendra('compile', model, '--device', 'taox-dendrite', '--branches', '4,2', '--branch-strategy', 'correlated', ...o), /'correlated' needs calibration data/);
    expectOneLineError(dendra('compile', model, '--device', 'taox-dendrite', '--branches', '4,2', '--finetune', x, ...o), /--finetune takes two files/);
    expectOneLineError(dendra('compile', model, '--device', 'taox-dendrite', '--finetune', x, l, ...o), /--finetune trains a network with its dendrites in the loop; give --branches too/);
    expectOneLineError(dendra('compile', model, '--device', 'taox-dendrite', '--branches', '4,2', '--epochs', '2', ...o), /--epochs needs --finetune/);
    expectOneLineError(dendra('compile', model, '--device', 'taox-dendrite', '--branches', '4,2', '--sparsity', '1', ...o), /--sparsity sets the activity penalty of --finetune/);
    expectOneLineError(dendra('compile', model, '--device', 'taox-dendrite', '--branches', '4,2', '--finetune', x, l, '--sparsity', '-1', ...o), /--sparsity must be a number from 0/);
    expectOneLineError(dendra('compile', model, '--device', 'taox-dendrite', '--branches', '4,2', '--dendrite-mode', 'nonlinear', ...o), /--dendrite-mode chooses how --calibrate sets the dendrites/);
  });
});

describe('dendritic artifacts', () => {
  it('version-1 artifacts (no dendrites) still read', () => {
    const bytes = new Uint8Array(readFileSync(plain));
    const v1 = bytes.slice();
    new DataView(v1.buffer).setUint32(8, 1, true);
    const body = v1.length - CHECKSUM_BYTES;
    v1.set(createHash('sha256').update(v1.subarray(0, body)).digest(), body);
    expect(readArtifact(v1).layers).toHaveLength(2);
    new DataView(v1.buffer).setUint32(8, 3, true);
    v1.set(createHash('sha256').update(v1.subarray(0, body)).digest(), body);
    expect(() => readArtifact(v1)).toThrow(/format version 3 is not supported \(this dendra reads versions 1 and 2/);
  });

  it('refuses a tile whose branch is outside the layer, and a branchOf of the wrong length', () => {
    const a = readArtifactFile(dendritic);
    a.layers[0]!.tiles[0]!.branch = 7;
    expect(() => readArtifact(writeArtifact(a))).toThrow(/layers\[0\]\.tiles\[0\]\.branch must be an integer in \[0, 4\)/);
    const b = readArtifactFile(dendritic);
    b.layers[1]!.dendrites!.branchOf = new Int32Array(3);
    expect(() => readArtifact(writeArtifact(b))).toThrow(/layers\[1\]\.dendrites\.branchOf must be 54 int32 values/);
  });

  it('boards (protocol v1) refuse dendritic artifacts with a clear error', () => {
    expect(() => refuseDendrites(readArtifactFile(dendritic), 'dendritic.dendra')).toThrow(DeviceError);
    expect(() => refuseDendrites(readArtifactFile(dendritic), 'dendritic.dendra')).toThrow(/layer 0 of dendritic\.dendra has dendrites; board protocol v1 has no dendrite devices/);
    expect(() => refuseDendrites(readArtifactFile(plain))).not.toThrow();
  });
});
