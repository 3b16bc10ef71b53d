/**
 * engineForward (the native training engine's forward, float32) against dendriticForward (the float64 reference)
 * and the model read literally: what calibration and the soma scales now run on.
 */
import { describe, expect, it } from 'vitest';
import { dendriticForward, drawDendriteVariation, engineForward } from '../../compiler/passes/dendritic-forward.js';
import type { DendriteDevice } from '../../common/dendrite.js';
import { Random } from '../../common/random.js';
import { expectClose, naiveForward, tinyInputs, tinyNetwork } from '../helpers/tiny-dendritic.js';

const EXP: DendriteDevice = { kind: 'exponential', nonlinearity: 0.1, onOffRatio: 100, voltage: 5, onVoltage: 5, threshold: 0.5, rectify: false, variation: 0, onCurrent: 1e-6, time: 1e-5 };
const DEVICES: Record<string, DendriteDevice> = {
  exponential: EXP,
  'exponential, rectifying, V/Von = 2, rated at 1.5 V': { ...EXP, rectify: true, voltage: 4, onVoltage: 2, maxVoltage: 3 },
  'threshold-linear': { ...EXP, kind: 'threshold-linear', threshold: 0.4, onOffRatio: 10, voltage: 2, onVoltage: 5 },
};

describe('engineForward', () => {
  for (const [name, device] of Object.entries(DEVICES)) {
    for (const bypass of [false, true]) {
      it(`is the float64 reference within float32 precision: ${name}${bypass ? ', bypass' : ''}`, () => {
        const model = tinyNetwork(3);
        const x = tinyInputs(4, 40);
        const got = engineForward(model, device, x, { bypass });
        const ref = dendriticForward(model, device, x, { bypass, somaInputs: true });
        const naive = naiveForward(model, device, x, { bypass });
        expect(got.samples).toBe(40);
        expectClose(got.outputs, ref.outputs, 1e-5);
        expectClose(got.outputs, naive.outputs, 1e-5);
        got.layerInputs.forEach((li, k) => expectClose(li, ref.layerInputs[k]!, 1e-5));
        got.somaInputs.forEach((p, k) => expectClose(p, ref.somaInputs![k]!, 1e-5));
        expectClose(got.somaSum, ref.somaSum, 1e-5);
        expectClose(got.dendritePower, ref.dendritePower, 1e-5);
        if (!bypass) expect(got.dendritePower[0]).toBeGreaterThan(0);
        expect(got.branch.map((b) => b?.length ?? null)).toEqual(bypass ? [null, null, null] : model.layers.map((l) => (l.dendrites ? 40 * l.dendrites.count * l.outFeatures : null)));
      });
    }
  }

  it('with each dendrite\'s ε, one layer bypassed, and a limit', () => {
    const model = tinyNetwork(3);
    const x = tinyInputs(4, 40);
    const eps = drawDendriteVariation(model, 0.4, new Random(7));
    const got = engineForward(model, EXP, x, { eps });
    const ref = dendriticForward(model, EXP, x, { eps });
    expectClose(got.outputs, ref.outputs, 1e-5);
    expectClose(got.dendritePower, ref.dendritePower, 1e-5);
    expect(Math.max(...got.outputs.map((v, i) => Math.abs(v - engineForward(model, EXP, x).outputs[i]!)))).toBeGreaterThan(1e-3);
    // Layer 0 without its devices, layer 1 with: neither the all-bypass nor the all-dendritic forward.
    const mixed = engineForward(model, EXP, x, { dendritic: [false, true, true], limit: 10 });
    expect(mixed.samples).toBe(10);
    expect(mixed.branch[0]).toBeNull();
    expect(mixed.dendritePower[0]).toBe(0);
    const layer1 = { ...model, input: { ...model.input, features: model.layers[1]!.inFeatures }, layers: model.layers.slice(1) };
    const hidden = engineForward(model, EXP, x, { bypass: true, limit: 10 }).layerInputs[1]!;
    expectClose(mixed.outputs, dendriticForward(layer1, EXP, hidden).outputs, 1e-5);
    expect(() => engineForward(model, EXP, x, { eps: [new Float64Array(3), null, null] })).toThrow(/3 dendrite factors for 3 branches × 7 neurons/);
    expect(() => engineForward(model, null, x)).toThrow(/no dendrite device/);
  });
});

describe('native dendriteSums', () => {
  it('is Σ_b F·ε·H(z/F) of common/dendrite.ts per sample and neuron, with the devices\' power; bad input refused', async () => {
    const { native } = await import('../../native/index.js');
    const { toTrainNetwork } = await import('../../compiler/passes/train-network.js');
    const { dendritePower, dendriteTransfer } = await import('../../common/dendrite.js');
    const rng = new Random(9);
    const samples = 5, count = 3, out = 4, F = 0.8;
    const z = Float32Array.from({ length: samples * count * out }, () => (rng.next() < 0.1 ? 0 : rng.normal() * 1.5));
    const eps = Float32Array.from({ length: count * out }, () => Math.max(0, 1 + 0.3 * rng.normal()));
    for (const device of Object.values(DEVICES)) {
      const d = toTrainNetwork(tinyNetwork(3), device).layers[0]!.dendrites!;
      for (const e of [null, eps]) {
        const got = native().dendriteSums({ ...d, count, fullScale: F }, z, out, e);
        let power = 0;
        const want = new Float64Array(samples * out);
        for (let s = 0; s < samples; s++) {
          for (let b = 0; b < count; b++) {
            for (let j = 0; j < out; j++) {
              const u = z[(s * count + b) * out + j]! / F;
              const ej = e ? e[b * out + j]! : 1;
              want[s * out + j] += F * ej * dendriteTransfer(device, u);
              power += ej * dendritePower(device, u);
            }
          }
        }
        expectClose(got.sums, want, 1e-5);
        expect(got.power).toBeGreaterThan(0);
        expect(Math.abs(got.power - power) / power).toBeLessThan(1e-5);
      }
    }
    const d = toTrainNetwork(tinyNetwork(3), EXP).layers[0]!.dendrites!;
    expect(() => native().dendriteSums({ ...d, count }, z.subarray(1), out)).toThrow(/not a whole number of samples of 3 branches × 4 neurons/);
    expect(() => native().dendriteSums({ ...d, count }, z, 0)).toThrow(/outFeatures must be an integer >= 1/);
    expect(() => native().dendriteSums({ ...d, count, fullScale: -1 }, z, out)).toThrow(/fullScale/);
    expect(() => native().dendriteSums({ ...d, count }, z, out, new Float32Array(3))).toThrow(/eps holds 3 factors for 3 branches × 4 neurons/);
    expect(() => native().dendriteSums({ ...d, count }, Array.from(z) as unknown as Float32Array, out)).toThrow(/z must be a Float32Array/);
  });
});
