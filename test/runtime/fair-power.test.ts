/**
 * Physics checks of the dendrite figures and the energy model (issue 11): nothing here recomputes a figure with
 * the formula the code uses. A device that is a plain resistor cannot save soma power once each network's somas
 * are driven to their own full scale; dendrites held in their linear OFF region cannot either; no input or
 * calibration makes an energy term exceed what the devices' ratings allow; the periphery choice moves exactly the
 * converter terms.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compileWithReport } from '../../compiler/index.js';
import { somaFullScales } from '../../compiler/passes/calibrate-dendrites.js';
import { writeArtifact } from '../../artifact/write.js';
import type { Artifact } from '../../artifact/format.js';
import { loadProfile, type DeviceProfile } from '../../common/profile.js';
import { dendritePower, maxRatio, type DendriteDevice } from '../../common/dendrite.js';
import { readNpyFile } from '../../common/npy.js';
import { Random } from '../../common/random.js';
import { evaluate } from '../../cli/eval.js';
import { InferenceSession, Tensor } from '../../runtime/index.js';
import { examples, extra } from '../helpers/fixtures.js';

const MODEL = examples('mnist8x8-64x54x10.onnx');
const X = examples('digits8x8-f32.npy');
const L = examples('labels.npy');
const digits = readNpyFile(X).data as Float32Array;
const labels = Int32Array.from(readNpyFile(L).data as ArrayLike<number>);
const dir = mkdtempSync(join(tmpdir(), 'dendra-fair-'));
const taox = loadProfile('taox-dendrite');

function withDevice(dendrite: DendriteDevice, patch: Partial<DeviceProfile> = {}): DeviceProfile {
  return { ...taox, name: 'taox-test', dendrite, ...patch };
}

async function evalArtifact(a: Artifact, name: string) {
  const file = join(dir, `${name}.dendra`);
  writeFileSync(file, writeArtifact(a));
  return evaluate(file, { input: X, labels: L, seed: 1, threads: 1 });
}

describe('fair power advantage: each network at its own full scale', () => {
  it('a 1:32 resistor in place of the dendrite (never ON, no nonlinearity) gives 1.00 ± 0.02', async () => {
    // threshold-linear, ON above v = 1, but rated below it: i(v) = v/32 for every signal, a plain resistor.
    const resistor: DendriteDevice = { ...taox.dendrite!, kind: 'threshold-linear', onOffRatio: 32, threshold: 1, voltage: 2.5, onVoltage: 5, maxVoltage: 2.5, variation: 0 };
    const { artifact } = compileWithReport(MODEL, { device: withDevice(resistor), branches: [4, 2], calibrate: digits, calibrateLabels: labels });
    const r = await evalArtifact(artifact, 'resistor');
    const d = r.dendrites!;
    expect(d.signalsOn).toBe(0);
    expect(d.powerAdvantage!).toBeGreaterThan(0.98);
    expect(d.powerAdvantage!).toBeLessThan(1.02);
    // The old figure (somas of the bypassed network at the dendritic network's scale) is the resistor's ratio:
    // scaling alone, which the fair figure does not count.
    expect(d.bypass.powerAdvantage!).toBeGreaterThan(2); // bounded by the somas' saturation at the dendritic scale
    expect(Math.abs(r.accuracy - d.plain!.accuracy)).toBeLessThan(0.01);
  });

  it('a wire (a linear device of gain 1) gives 1.00 ± 0.02', async () => {
    const wire: DendriteDevice = { ...taox.dendrite!, nonlinearity: 0, onOffRatio: 1, variation: 0 };
    const { artifact } = compileWithReport(MODEL, { device: withDevice(wire), branches: [4, 2], calibrate: digits, calibrateLabels: labels });
    const d = (await evalArtifact(artifact, 'wire')).dendrites!;
    expect(d.powerAdvantage!).toBeGreaterThan(0.98);
    expect(d.powerAdvantage!).toBeLessThan(1.02);
  });

  it('exponential dendrites all held OFF (full scale 1000 × the largest signal) give no advantage', async () => {
    const device: DendriteDevice = { ...taox.dendrite!, variation: 0 };
    const profile = withDevice(device);
    const { artifact, model } = compileWithReport(MODEL, { device: profile, branches: [4, 2], calibrate: digits, calibrateLabels: labels });
    // Every branch signal at |u| <= 1e-3: the device's small-signal slope, a linear attenuator.
    const gain = 1 / device.onOffRatio + (1 - 1 / device.onOffRatio) * (50 * 0.1 / 0.9) / Math.expm1(50 * 0.1 / 0.9);
    const off = { ...model, layers: model.layers.map((l) => ({ ...l, dendrites: { ...l.dendrites!, fullScale: l.dendrites!.fullScale * 1000, biasScale: gain } })) };
    const scales = somaFullScales(off, digits, 1000, device);
    const a: Artifact = {
      ...artifact,
      layers: artifact.layers.map((l, li) => ({ ...l, dendrites: off.layers[li]!.dendrites, somaFullScale: scales[li]! })),
    };
    const d = (await evalArtifact(a, 'off')).dendrites!;
    expect(d.signalsOn).toBe(0);
    expect(d.powerAdvantage!).toBeGreaterThan(0.95);
    expect(d.powerAdvantage!).toBeLessThan(1.05);
    expect(d.bypass.powerAdvantage!).toBeGreaterThan(2); // attenuation by the small-signal slope, not saving
  });
});

/** What the ratings allow one inference to spend, per term, on an artifact's chip (variation bounded at 1 + 8σ). */
function ratedBound(a: Artifact) {
  const p = a.profile;
  const d = p.dendrite;
  let dendrites = 0;
  let somas = 0;
  let crossbar = 0;
  for (const l of a.layers) {
    if (l.dendrites && d) dendrites += l.dendrites.count * l.outFeatures;
    somas += l.outFeatures;
    for (const t of l.tiles) {
      const rows = new Set([...t.rowPos, ...t.rowNeg]).size;
      crossbar += rows * a.arrays[t.array]!.cols; // every cell of a driven row at the top of the window
    }
  }
  const vMax = d ? maxRatio(d) : 0;
  return {
    dendriteJ: d ? dendrites * dendritePower({ ...d, voltage: d.maxVoltage!, onVoltage: d.onVoltage }, 1) * (1 + 8 * d.variation) * d.onVoltage * d.onCurrent * d.time : 0,
    vMax,
    somaJ: p.soma ? somas * p.soma.voltage * p.soma.onCurrent * p.soma.time : 0,
    crossbarJ: crossbar * Math.max(p.conductance.max, p.stuck.on) * p.read.voltage ** 2 * p.energy.readTime,
  };
}

/** Fuzzed inputs: wild scales, signs, sparsity, NaN and ±Infinity. */
function fuzzInputs(features: number, n: number, seed: number): Float32Array {
  const rng = new Random(seed);
  const x = new Float32Array(n * features);
  for (let s = 0; s < n; s++) {
    const scale = 10 ** (rng.next() * 12 - 4);
    const sparse = rng.next();
    for (let i = 0; i < features; i++) {
      const u = rng.next();
      x[s * features + i] = u < sparse ? 0 : (rng.normal() + (rng.next() < 0.5 ? 3 : 0)) * scale;
    }
    if (s % 7 === 3) x[s * features + rng.int(features)] = [NaN, Infinity, -Infinity][s % 3]!;
  }
  return x;
}

async function checkBound(a: Artifact, inputs: Float32Array, n: number) {
  const bound = ratedBound(a);
  const s = await InferenceSession.create(writeArtifact(a), { threads: 1 });
  try {
    const name = s.inputNames[0]!;
    await s.run({ [name]: new Tensor('float32', inputs, [n, ...a.input.shape.slice(1).map(Number)]) });
    const e = s.energy().breakdown;
    for (const [k, v] of Object.entries(e)) expect(Number.isFinite(v), k).toBe(true);
    expect(e.dendriteJ).toBeLessThanOrEqual(bound.dendriteJ * (1 + 1e-6));
    expect(e.somaJ).toBeLessThanOrEqual(bound.somaJ * (1 + 1e-6));
    expect(e.crossbarJ).toBeLessThanOrEqual(bound.crossbarJ * (1 + 1e-6));
    return e;
  } finally {
    await s.release();
  }
}

describe('no input or calibration makes an energy term exceed the devices\' rated bound', () => {
  it('64-54-10 on taox-dendrite: fuzzed inputs × fuzzed full scales and soma scales', async () => {
    const { artifact } = compileWithReport(MODEL, { device: 'taox-dendrite', branches: [4, 2], calibrate: digits, calibrateLabels: labels, dendriteMode: 'nonlinear' });
    const rng = new Random(5);
    for (let trial = 0; trial < 6; trial++) {
      // A calibration gone wrong in either direction: full scales and soma scales off by up to 10^±4.
      const a: Artifact = {
        ...artifact,
        layers: artifact.layers.map((l) => ({
          ...l,
          dendrites: { ...l.dendrites!, fullScale: l.dendrites!.fullScale * 10 ** (rng.next() * 8 - 4), biasScale: l.dendrites!.biasScale * 10 ** (rng.next() * 4 - 2) },
          somaFullScale: l.somaFullScale! * 10 ** (rng.next() * 8 - 4),
        })),
      };
      const e = await checkBound(a, fuzzInputs(64, 64, 100 + trial), 64);
      expect(e.somaJ).toBeGreaterThan(0);
    }
  });

  it('the 3072-500-10 spatial compile (9, 4 branches, calibrated) stays within its ratings on fuzzed inputs', async () => {
    const x = (readNpyFile(extra('svhn-shaped-inputs-f32.npy')).data as Float32Array).subarray(0, 128 * 3072);
    const { artifact } = compileWithReport(extra('svhn-shaped-3072x500x10.onnx'), { device: 'taox-dendrite', branches: [9, 4], branchStrategy: 'spatial', calibrate: x });
    const bound = ratedBound(artifact);
    const e = await checkBound(artifact, fuzzInputs(3072, 16, 7), 16);
    // The figures are joules per inference of a chip, not the megajoules of unbounded devices.
    expect(e.dendriteJ + e.somaJ).toBeLessThan(1e-6);
    expect(bound.dendriteJ).toBeLessThan(1e-5);
  }, 120_000);
});

describe('the periphery choice changes exactly the converter terms', () => {
  it('adc vs analog on the same artifact: crossbar, dendrites, somas, outputs and events unchanged; DAC, ADC, TIA, digital move', async () => {
    const { artifact } = compileWithReport(MODEL, { device: 'taox-dendrite', branches: [4, 2], calibrate: digits, calibrateLabels: labels });
    const run = async (periphery: 'adc' | 'analog', soma: boolean) => {
      const a: Artifact = { ...artifact, profile: { ...artifact.profile, periphery, ...(soma ? {} : { soma: null }) } };
      const s = await InferenceSession.create(writeArtifact(a), { threads: 1 });
      const y = await s.run({ [s.inputNames[0]!]: new Tensor('float32', digits.subarray(0, 64 * 100), [100, 64]) });
      const r = s.energy();
      await s.release();
      return { y: y[s.outputNames[0]!]!.data, r };
    };
    const adc = await run('adc', true);
    const analog = await run('analog', true);
    expect(Array.from(analog.y)).toEqual(Array.from(adc.y));
    const [a, b] = [adc.r.breakdown, analog.r.breakdown];
    expect(b.crossbarJ).toBe(a.crossbarJ);
    expect(b.dendriteJ).toBe(a.dendriteJ);
    expect(b.somaJ).toBe(a.somaJ);
    const k = artifact.profile.energy;
    const [l0, l1] = artifact.layers as [Artifact['layers'][0], Artifact['layers'][0]];
    // analog: the input DACs only (the first layer's driven rows), one ADC per output, no TIA (the somas are the stage)
    expect(analog.r.events).toEqual(adc.r.events);
    expect(a.dacJ).toBeCloseTo(adc.r.events!.rowsDriven * k.dacConversion, 25);
    expect(b.dacJ).toBeCloseTo(adc.r.events!.inputRowsDriven * k.dacConversion, 25);
    // The first layer's rows: 2 (a pair on rows) per input the 8-bit DAC does not round to zero, per sample.
    let nonzero = 0;
    for (let s = 0; s < 100; s++) {
      const row = digits.subarray(s * 64, (s + 1) * 64);
      const max = Math.max(...Array.from(row, Math.abs));
      for (const v of row) if (Math.abs(v / max) * 127 >= 0.5) nonzero++;
    }
    expect(adc.r.events!.inputRowsDriven).toBeCloseTo((2 * nonzero) / 100, 9);
    expect(b.adcJ).toBeCloseTo(l1.outFeatures * k.adcConversion, 25);
    expect(b.tiaJ).toBe(0);
    // adc: one ADC per soma output of each dendritic layer (its column segments feed the dendrites)
    expect(a.adcJ).toBeCloseTo((l0.outFeatures + l1.outFeatures) * k.adcConversion, 25);
    expect(b.digitalJ).toBeLessThan(a.digitalJ);
    // Without soma devices the analog periphery pays a transimpedance stage per output instead.
    const noSoma = await run('analog', false);
    expect(noSoma.r.breakdown.tiaJ).toBeCloseTo((l0.outFeatures + l1.outFeatures) * k.tiaConversion, 25);
    expect(noSoma.r.breakdown.somaJ).toBe(0);
  });
});
