/**
 * Dendrites in the loop (common/dendrite.ts): the float reference forward, calibration of each layer's F and κ,
 * and fine-tuning with the dendrites in the loop — against a naive reading of the model and on the real
 * 784-500-10 digits network.
 */
import { describe, expect, it } from 'vitest';
import { importModel } from '../../compiler/index.js';
import { assignBranches } from '../../compiler/passes/assign-branches.js';
import { layerInputs } from '../../compiler/passes/calibrate.js';
import { calibrateDendrites, defaultDendriteScales, somaFullScales } from '../../compiler/passes/calibrate-dendrites.js';
import { DendriteKernel, agreement, argmaxRows, dendriticForward } from '../../compiler/passes/dendritic-forward.js';
import { finetune } from '../../compiler/passes/finetune.js';
import { dendritePower, dendriteTransfer, type DendriteDevice, type Soma } from '../../common/dendrite.js';
import { readNpyFile } from '../../common/npy.js';
import type { LayerModel } from '../../compiler/ir/layers.js';
import { mnist } from '../helpers/fixtures.js';
import { expectClose, naiveForward, tinyInputs, tinyNetwork } from '../helpers/tiny-dendritic.js';

const EXP: DendriteDevice = { kind: 'exponential', nonlinearity: 0.1, onOffRatio: 100, voltage: 5, onVoltage: 5, threshold: 0.5, rectify: false, variation: 0, onCurrent: 1e-6, time: 1e-5 };
const DEVICES: Record<string, DendriteDevice> = {
  exponential: EXP,
  'exponential, rectifying, V/Von = 2': { ...EXP, rectify: true, voltage: 4, onVoltage: 2 },
  'threshold-linear': { ...EXP, kind: 'threshold-linear', threshold: 0.4, onOffRatio: 10, voltage: 2, onVoltage: 5 },
  'linear (n = 0)': { ...EXP, nonlinearity: 0, onOffRatio: 20 },
};




describe('dendriticForward', () => {
  for (const [name, device] of Object.entries(DEVICES)) {
    for (const bypass of [false, true]) {
      it(`matches the model read literally: ${name}${bypass ? ', bypass' : ''}`, () => {
        const model = tinyNetwork(3);
        const x = tinyInputs(4, 40);
        const fast = dendriticForward(model, device, x, { bypass });
        const ref = naiveForward(model, device, x, { bypass });
        expect(fast.samples).toBe(40);
        expectClose(fast.outputs, ref.outputs);
        fast.layerInputs.forEach((li, k) => expectClose(li, ref.inputs[k]!));
        expectClose(fast.somaSum, ref.somaSum, 1e-9);
        expectClose(fast.dendritePower, ref.power, 1e-9);
        if (bypass) expect(Array.from(fast.dendritePower)).toEqual([0, 0, 0]);
        else expect(fast.dendritePower[0]).toBeGreaterThan(0);
        // The dendrites change the outputs: the comparison above is not vacuous.
        if (!bypass) expect(Math.max(...fast.outputs.map((v, i) => Math.abs(v - naiveForward(model, device, x, { bypass: true }).outputs[i]!)))).toBeGreaterThan(1e-3);
      });
    }
  }

  it('with the threshold soma cut at 0 and an activation soma', () => {
    for (const soma of [{ kind: 'threshold', theta: 0.5, scale: 0.7 } as Soma, { kind: 'activation' } as Soma]) {
      const model = tinyNetwork(11, { soma });
      const x = tinyInputs(12, 30);
      const fast = dendriticForward(model, EXP, x);
      expectClose(fast.outputs, naiveForward(model, EXP, x).outputs);
      const hidden = fast.layerInputs[1]!;
      if (soma.kind === 'threshold') {
        expect(hidden.every((v) => v >= 0)).toBe(true);
        expect(hidden.some((v) => v === 0)).toBe(true);
      }
    }
  });

  it('the kernel is common/dendrite.ts: transfer and power', () => {
    for (const device of Object.values(DEVICES)) {
      const k = new DendriteKernel(device);
      for (let u = -2.5; u <= 2.5; u += 0.0137) {
        k.power = 0;
        expect(k.out(u * 1.7, 1.7)).toBeCloseTo(1.7 * dendriteTransfer(device, u), 12);
        expect(k.power).toBeCloseTo(dendritePower(device, u), 12);
      }
      const z = Float64Array.from([0.3, -1.2, 0, 2.5, -0.01]);
      k.power = 0;
      const sum = k.branchSum(z, 0, 1, 5, 0.9);
      expect(sum).toBeCloseTo(Array.from(z).reduce((a, v) => a + 0.9 * dendriteTransfer(device, v / 0.9), 0), 12);
      expect(k.power).toBeCloseTo(Array.from(z).reduce((a, v) => a + dendritePower(device, v / 0.9), 0), 12);
    }
  });

  it('bypass is the plain float forward of calibrate.ts (layerInputs), bit for bit', () => {
    const plain = importModel(mnist('mnist-784x500x10.onnx'));
    const plans = assignBranches(plain, { branches: [9, 4], strategy: 'contiguous' });
    const model = withBranches(plain, plans);
    const x = readNpyFile(mnist('digits28-f32.npy')).data as Float32Array;
    const ours = dendriticForward(model, EXP, x, { bypass: true, limit: 100 });
    const theirs = layerInputs(plain, x, 100);
    expect(ours.samples).toBe(100);
    ours.layerInputs.forEach((li, k) => expect(li).toEqual(theirs.inputs[k]));
    // ... and the outputs are what the plain network computes (the dendritic one differs).
    const plainOut = dendriticForward(plain, null, x, { limit: 100 }).outputs;
    expect(ours.outputs).toEqual(plainOut);
    const dendritic = dendriticForward(model, EXP, x, { limit: 100 }).outputs;
    expect(dendritic).not.toEqual(plainOut);
  });

  it('refuses a partial sample and a dendritic layer without a device', () => {
    const model = tinyNetwork(1);
    expect(() => dendriticForward(model, EXP, new Float32Array(13))).toThrow(/not a whole number of samples of 12/);
    expect(() => dendriticForward(model, null, tinyInputs(1, 2))).toThrow(/no dendrite device/);
    expect(dendriticForward(model, null, tinyInputs(1, 2), { bypass: true }).samples).toBe(2);
  });
});

describe('somaFullScales and defaultDendriteScales', () => {
  it('bounds from the weights, and the 99th percentile of the network without dendrites on samples', () => {
    // 2 → 2 (2 branches: input 0 | input 1), relu → 1, no activation.
    const model: LayerModel = {
      ...tinyNetwork(1),
      input: { name: 'x', dtype: 'float32', shape: ['batch', 2], features: 2 },
      layers: [
        { name: 'a', origin: [], inFeatures: 2, outFeatures: 2, weight: Float32Array.from([1, -2, 3, 0.5]), bias: Float32Array.from([0.5, -1]), activation: { kind: 'relu' },
          dendrites: { count: 2, branchOf: Int32Array.from([0, 1]), fullScale: 1, biasScale: 1, soma: { kind: 'activation' }, strategy: 'test', calibrated: false } },
        { name: 'b', origin: [], inFeatures: 2, outFeatures: 1, weight: Float32Array.from([2, -1]), bias: Float32Array.from([0.25]), activation: { kind: 'none' } },
      ],
    };
    // Layer 0: columns Σ|W| = 4 and 2.5, + |b|: 4.5 and 3.5 → bound 4.5 (relu keeps it); branches: max(1, 3, 2, 0.5) = 3.
    // Layer 1: (2 + 1)·4.5 + 0.25 = 13.75; one branch of the whole column: 3·4.5 = 13.5.
    expect(somaFullScales(model)).toEqual([4.5, 13.75]);
    expect(defaultDendriteScales(model)).toEqual([{ fullScale: 3, biasScale: 1 }, { fullScale: 13.5, biasScale: 1 }]);
    // On samples: 100 inputs (i, 0), i = 1..100 → layer 0 outputs relu(i + 0.5) and relu(−2i − 1) = 0.
    const x = Float32Array.from({ length: 200 }, (_, k) => (k % 2 === 0 ? k / 2 + 1 : 0));
    const [s0, s1] = somaFullScales(model, x);
    // 200 values of |out| (100 zeros, then 1.5 … 100.5): nearest-rank p99 = the 198th smallest = 98 + 0.5.
    expect(s0).toBe(98.5);
    // Layer 1: |2·(i + 0.5) + 0.25|, p99 of 100 values = the 99th: 2·99.5 + 0.25.
    expect(s1).toBe(199.25);
  });
});

// ---- The real network ----

const DIGITS = mnist('mnist-784x500x10.onnx');

function withBranches(plain: LayerModel, plans: { count: number; branchOf: Int32Array }[]): LayerModel {
  const model: LayerModel = {
    ...plain,
    layers: plain.layers.map((l, li) => ({
      ...l,
      dendrites: { count: plans[li]!.count, branchOf: plans[li]!.branchOf, fullScale: 1, biasScale: 1, soma: { kind: 'activation' }, strategy: 'contiguous', calibrated: false },
    })),
  };
  // The operating point a compile without calibration data takes: F from the weights, κ = 1.
  const scales = defaultDendriteScales(model);
  model.layers.forEach((l, li) => Object.assign(l.dendrites!, scales[li]));
  return model;
}

/** The fixture's digits are sorted by class: split them alternately into calibration and held-out halves. */
function split() {
  const x = readNpyFile(mnist('digits28-f32.npy')).data as Float32Array;
  const labels = Int32Array.from(readNpyFile(mnist('labels.npy')).data as ArrayLike<number>);
  const f = 784;
  const total = labels.length;
  const half = (parity: number) => {
    const k = Math.floor((total + 1 - parity) / 2);
    const xs = new Float32Array(k * f);
    const ls = new Int32Array(k);
    for (let s = 0; s < k; s++) {
      xs.set(x.subarray((2 * s + parity) * f, (2 * s + parity + 1) * f), s * f);
      ls[s] = labels[2 * s + parity]!;
    }
    return { x: xs, labels: ls };
  };
  return { cal: half(0), held: half(1) };
}

function accuracy(model: LayerModel, device: DendriteDevice, data: { x: Float32Array; labels: Int32Array }, bypass = false): number {
  const fwd = dendriticForward(model, device, data.x, { bypass });
  return agreement(argmaxRows(fwd.outputs, fwd.samples, model.output.features), data.labels);
}

describe('calibrateDendrites on the 784-500-10 digits network, 9 and 4 contiguous branches', () => {
  const plain = importModel(DIGITS);
  const model = withBranches(plain, assignBranches(plain, { branches: [9, 4], strategy: 'contiguous' }));
  const { cal, held } = split();

  it('holds held-out accuracy within 1 point of the network without dendrites at a soma power advantage >= 2', () => {
    const without = accuracy(model, EXP, held, true);
    const uncalibrated = accuracy(model, EXP, held);
    // Without calibration (F from the weights, κ = 1) the bias swamps the attenuated branch signals.
    expect(uncalibrated).toBeLessThan(without - 0.1);

    const { model: tuned, report } = calibrateDendrites(model, EXP, cal.x, cal.labels, { limit: 500 });
    expect(report.samples).toBe(500);
    expect(report.labelled).toBe(true);
    expect(report.layers.map((l) => l.layer)).toEqual([0, 1]);
    expect(tuned.layers.every((l) => l.dendrites!.calibrated)).toBe(true);
    expect(model.layers.every((l) => !l.dendrites!.calibrated && l.dendrites!.biasScale === 1)).toBe(true); // the input is untouched
    expect(report.accuracy).toBeGreaterThanOrEqual(report.bypassAccuracy - 0.005 - 1e-9);
    expect(report.powerAdvantage).toBeGreaterThanOrEqual(2);
    expect(report.summary).toMatch(/accuracy .* with dendrites, .* without .* soma power advantage/);

    const withD = accuracy(tuned, EXP, held);
    expect(withD).toBeGreaterThanOrEqual(without - 0.01);
    // The power advantage holds on the held-out digits too (soma energy: Σ|out| over each layer's full scale).
    const scales = somaFullScales(model, cal.x);
    const energy = (fwd: { somaSum: Float64Array }) => fwd.somaSum.reduce((a, v, li) => a + v / scales[li]!, 0);
    const advantage = energy(dendriticForward(model, EXP, held.x, { bypass: true })) / energy(dendriticForward(tuned, EXP, held.x));
    expect(advantage).toBeGreaterThanOrEqual(2);
    // The report's numbers are the reference forward's.
    const calFwd = dendriticForward(tuned, EXP, cal.x, { limit: 500 });
    expect(report.accuracy).toBe(agreement(argmaxRows(calFwd.outputs, 500, 10), cal.labels.subarray(0, 500)));
  });

  it('fine-tuning with the dendrites in the loop wins back what rectifying dendrites cost', () => {
    const rectifying = { ...EXP, rectify: true };
    const without = accuracy(model, rectifying, held, true);
    const { model: tuned, report: cr } = calibrateDendrites(model, rectifying, cal.x, cal.labels, { limit: 300 });
    const calibrated = accuracy(tuned, rectifying, held);
    // Negative branch signals pass nothing: no operating point saves the inhibitory inputs.
    expect(calibrated).toBeLessThan(without - 0.2);
    expect(cr.accuracy).toBeLessThan(cr.bypassAccuracy - 0.2);

    let calls = 0;
    let lastDone = 0;
    const { model: trained, report } = finetune(tuned, rectifying, cal.x, cal.labels, {
      epochs: 2,
      onProgress: (done, total) => {
        calls++;
        expect(done).toBeGreaterThan(lastDone);
        lastDone = done;
        expect(total).toBe(2 * cal.labels.length);
      },
    });
    expect(lastDone).toBe(2 * cal.labels.length);
    expect(calls).toBe(2 * Math.ceil(cal.labels.length / 64));
    expect(report.loss).toHaveLength(2);
    expect(report.loss[1]!).toBeLessThan(report.loss[0]!);
    expect(report.accuracyAfter).toBeGreaterThan(report.accuracyBefore + 0.2);
    const after = accuracy(trained, rectifying, held);
    expect(after).toBeGreaterThan(calibrated + 0.2);
    // Same branches, F and κ; the input model is untouched.
    trained.layers.forEach((l, li) => {
      expect(l.dendrites).toBe(tuned.layers[li]!.dendrites);
      expect(l.weight).not.toBe(tuned.layers[li]!.weight);
    });
    expect(accuracy(tuned, rectifying, held)).toBe(calibrated);
  });
});

describe('calibrateDendrites and finetune on a small network', () => {
  it('unlabelled calibration holds agreement with the network without dendrites', () => {
    const model = tinyNetwork(5, { soma: { kind: 'activation' } });
    const x = tinyInputs(6, 400);
    const { model: tuned, report } = calibrateDendrites(model, EXP, x, undefined, { tolerance: 2 });
    expect(report.labelled).toBe(false);
    expect(report.bypassAccuracy).toBe(1);
    expect(report.accuracy).toBe(report.agreement);
    const a = argmaxRows(dendriticForward(tuned, EXP, x).outputs, 400, 3);
    const b = argmaxRows(dendriticForward(model, EXP, x, { bypass: true }).outputs, 400, 3);
    expect(report.agreement).toBe(agreement(a, b));
    expect(report.agreement).toBeGreaterThanOrEqual(0.98 - 1e-9);
    for (const l of report.layers) {
      expect(l.fullScale).toBeGreaterThan(0);
      expect(l.quantile).not.toBeNull();
    }
  });

  it('an already calibrated layer keeps its F and κ', () => {
    const model = tinyNetwork(5, { soma: { kind: 'activation' } });
    model.layers[1]!.dendrites = { ...model.layers[1]!.dendrites!, calibrated: true, fullScale: 0.77, biasScale: 0.42 };
    const { model: tuned, report } = calibrateDendrites(model, EXP, tinyInputs(6, 200));
    expect(tuned.layers[1]!.dendrites).toMatchObject({ fullScale: 0.77, biasScale: 0.42 });
    expect(report.layers.map((l) => l.calibrated)).toEqual([true, false]);
  });

  it('finetune: one full-batch Adam step moves every parameter against the gradient of the loss', () => {
    // Adam's first step is −lr·g/(|g| + ε): the sign of each gradient, checked by central differences of the
    // loss the pass minimises (cross-entropy of logitScale · outputs, through dendrites and the threshold soma).
    const model = tinyNetwork(21);
    model.layers[2] = { ...model.layers[2]!, activation: { kind: 'none' } };
    const x = tinyInputs(22, 64);
    const labels = Int32Array.from({ length: 64 }, (_, s) => s % 3);
    const lr = 1e-4;
    const { model: stepped, report } = finetune(model, EXP, x, labels, { epochs: 1, batch: 64, learningRate: lr });
    const T = report.logitScale;
    const loss = (m: LayerModel) => {
      const y = naiveForward(m, EXP, x).outputs; // float64 throughout: clean differences
      let sum = 0;
      for (let s = 0; s < 64; s++) {
        const row = y.slice(s * 3, s * 3 + 3).map((v) => T * v);
        const mx = Math.max(...row);
        sum += -(row[labels[s]!]! - mx - Math.log(row.reduce((a, v) => a + Math.exp(v - mx), 0)));
      }
      return sum / 64;
    };
    let checked = 0;
    model.layers.forEach((l, li) => {
      for (const which of ['weight', 'bias'] as const) {
        const p = l[which];
        for (let k = 0; k < p.length; k++) {
          const h = 1e-3;
          const plus = { ...model, layers: model.layers.map((ll, i) => (i === li ? { ...ll, [which]: Float32Array.from(p, (v, kk) => (kk === k ? v + h : v)) } : ll)) };
          const minus = { ...model, layers: model.layers.map((ll, i) => (i === li ? { ...ll, [which]: Float32Array.from(p, (v, kk) => (kk === k ? v - h : v)) } : ll)) };
          const g = (loss(plus) - loss(minus)) / (2 * h);
          if (Math.abs(g) < 1e-3) continue; // too flat to tell the sign from float32 differences
          const moved = stepped.layers[li]![which][k]! - p[k]!;
          expect(Math.sign(moved)).toBe(-Math.sign(g));
          expect(Math.abs(moved)).toBeCloseTo(lr, 5);
          checked++;
        }
      }
    });
    expect(checked).toBeGreaterThan(40);
  });

  it('finetune is deterministic for a seed and refuses bad labels', () => {
    const model = tinyNetwork(8);
    const x = tinyInputs(9, 50);
    const labels = Int32Array.from({ length: 50 }, (_, s) => (s * 7) % 3);
    const a = finetune(model, EXP, x, labels, { epochs: 2, batch: 8, seed: 3 });
    const b = finetune(model, EXP, x, labels, { epochs: 2, batch: 8, seed: 3 });
    const c = finetune(model, EXP, x, labels, { epochs: 2, batch: 8, seed: 4 });
    a.model.layers.forEach((l, li) => expect(l.weight).toEqual(b.model.layers[li]!.weight));
    expect(a.model.layers[0]!.weight).not.toEqual(c.model.layers[0]!.weight);
    expect(a.report.summary).toMatch(/2 epochs on 50 samples/);
    expect(() => finetune(model, EXP, x, Int32Array.from({ length: 50 }, () => 3))).toThrow(/not a class/);
    expect(() => finetune(model, EXP, x, new Int32Array(10))).toThrow(/10 labels for 50/);
  });
});
