/**
 * The hardware effects of the training forward (NativeTrainHardware, dendrite variation) against their
 * statistics and definitions; the one-step primitive with measured activations; bad input.
 */
import { describe, expect, it } from 'vitest';
import { Random } from '../../common/random.js';
import { native, NativeActivation, NativeDendriteKind, type NativeTrainLayer, type NativeTrainNetwork } from '../../native/index.js';
import { dacRow, finiteDifferences, params64, referenceForward } from '../helpers/train-reference.js';

const rng = new Random(77);
const normal = (n: number, sd = 1) => Float32Array.from({ length: n }, () => rng.normal() * sd);

function linear(inF: number, outF: number, extra: Partial<NativeTrainLayer> = {}): NativeTrainNetwork {
  return { threads: 1, seed: 5, layers: [{ inFeatures: inF, outFeatures: outF, weight: normal(inF * outF, 0.5), bias: new Float32Array(outF), activation: NativeActivation.None, ...extra }] };
}

/** Per output of `draws` predictions of the same rows: sample variance per (row, output), and the mean. */
function spread(net: NativeTrainNetwork, x: Float32Array, draws: number, opts: { noise?: boolean; variation?: boolean }) {
  const t = new (native().Trainer)(net);
  const first = t.predict(x, opts);
  const sum = new Float64Array(first.length);
  const sq = new Float64Array(first.length);
  const all: Float32Array[] = [];
  for (let d = 0; d < draws; d++) {
    const y = d === 0 ? first : t.predict(x, opts);
    all.push(y);
    y.forEach((v, k) => {
      sum[k] += v;
      sq[k] += v * v;
    });
  }
  const mean = Array.from(sum, (s) => s / draws);
  const variance = Array.from(sq, (s, k) => s / draws - mean[k]! ** 2);
  return { mean, variance, all };
}

describe('hardware effects in the training forward', () => {
  const inF = 24;
  const x = normal(3 * inF);
  // Rows 1 and 2 are the same input: within one pass they share the chip (programming error) but not the reads.
  x.set(x.subarray(inF, 2 * inF), 2 * inF);
  const sumSq = (s: number) => x.subarray(s * inF, (s + 1) * inF).reduce((a, v) => a + v * v, 0);

  it('programming error: one draw per pass (shared by its samples), Var(z_j) = Σ_i x_i²(σ + σ_rel·|W_ij|)²', () => {
    const net = linear(inF, 4, { hardware: { programSigma: 0.05, programRelative: 0.2 } });
    const w = net.layers[0]!.weight;
    const { mean, variance, all } = spread(net, x, 600, { noise: true });
    const nominal = new (native().Trainer)(net).predict(x);
    for (let s = 0; s < 3; s++) {
      for (let j = 0; j < 4; j++) {
        let want = 0;
        for (let i = 0; i < inF; i++) want += x[s * inF + i]! ** 2 * (0.05 + 0.2 * Math.abs(w[i * 4 + j]!)) ** 2;
        expect(variance[s * 4 + j]! / want).toBeGreaterThan(0.8);
        expect(variance[s * 4 + j]! / want).toBeLessThan(1.2);
        expect(Math.abs(mean[s * 4 + j]! - nominal[s * 4 + j]!)).toBeLessThan(4 * Math.sqrt(want / 600));
      }
    }
    for (const y of all) expect(Array.from(y.subarray(8, 12))).toEqual(Array.from(y.subarray(4, 8)));
    // Off unless the pass asks for noise.
    expect(new (native().Trainer)(net).predict(x)).toEqual(nominal);
  });

  it('read noise: a fresh read per sample, Var(z_j) = Σ_i x_i²(σ + σ_rel·|W̃_ij|)²', () => {
    for (const [sigma, rel] of [[0.1, 0], [0, 0.3]] as const) {
      const net = linear(inF, 3, { hardware: { readSigma: sigma, readRelative: rel } });
      const w = net.layers[0]!.weight;
      const { variance, all } = spread(net, x, 600, { noise: true });
      for (let s = 0; s < 3; s++) {
        for (let j = 0; j < 3; j++) {
          let want = 0;
          for (let i = 0; i < inF; i++) want += x[s * inF + i]! ** 2 * (sigma + rel * Math.abs(w[i * 3 + j]!)) ** 2;
          if (sigma > 0) expect(want).toBeCloseTo(sigma * sigma * sumSq(s), 9);
          expect(variance[s * 3 + j]! / want).toBeGreaterThan(0.8);
          expect(variance[s * 3 + j]! / want).toBeLessThan(1.2);
        }
      }
      expect(all.filter((y) => y[3] !== y[6]).length).toBe(all.length);
    }
  });

  it('ADC: sums clipped at ±adcClip and quantised to adcClip/(2^(bits−1) − 1); DAC: the simulator\'s per-row quantiser', () => {
    const adc = linear(inF, 6, { hardware: { adcClip: 1.5, adcBits: 4 } });
    const y = new (native().Trainer)(adc).predict(x);
    const step = 1.5 / 7;
    for (const v of y) {
      expect(Math.abs(v)).toBeLessThanOrEqual(1.5 + 1e-6);
      expect(Math.abs(v / step - Math.round(v / step))).toBeLessThan(1e-4);
    }
    expect(new Set(Array.from(y, (v) => Math.round(v / step))).size).toBeGreaterThan(4);
    expect(y.some((v) => Math.abs(Math.abs(v) - 1.5) < 1e-6)).toBe(true); // some sums were clipped

    // The DAC against its definition (periphery.cc dacRow), and the weight gradient through it exact: the
    // quantised input does not depend on the weights of its own layer.
    const dac: NativeTrainNetwork = { ...linear(inF, 3, { hardware: { dacBits: 3 } }), layers: [{ ...linear(inF, 3).layers[0]!, hardware: { dacBits: 3 }, activation: NativeActivation.Tanh }] };
    const labels = Int32Array.from([0, 2, 1]);
    const l = dac.layers[0]!;
    const got = new (native().Trainer)(dac).predict(x);
    for (let s = 0; s < 3; s++) {
      const q = dacRow(Array.from(x.subarray(s * inF, (s + 1) * inF)), 3);
      expect(new Set(q.map((v) => Math.abs(v).toFixed(6))).size).toBeLessThanOrEqual(4); // 0, s/3, 2s/3, s
      for (let j = 0; j < 3; j++) {
        const z = q.reduce((a, v, i) => a + v * l.weight[i * 3 + j]!, 0);
        expect(got[s * 3 + j]).toBeCloseTo(Math.tanh(z), 5);
      }
    }
    const g = native().trainGradients(dac, x, labels);
    const fd = finiteDifferences(dac, x, labels);
    g.weight[0]!.forEach((v, k) => expect(v).toBeCloseTo(fd.weight[0]![k]!, 5));
  });

  it('dendrite variation: a fresh ε per dendrite per pass, shared by the pass\'s samples, max(0, N(1, σ²))', () => {
    // One linear dendrite per neuron (α = 0, R = 1, F = 1, κ·b = 0): the soma sees ε·z, so out / z reads ε.
    const layer: NativeTrainLayer = {
      inFeatures: inF,
      outFeatures: 5,
      weight: normal(inF * 5, 0.5),
      bias: new Float32Array(5),
      activation: NativeActivation.None,
      dendrites: { count: 1, branchOf: new Int32Array(inF), kind: NativeDendriteKind.Exponential, alpha: 0, onOffRatio: 1, ratio: 1, fullScale: 1, biasScale: 0, variation: 0.3 },
    };
    const net: NativeTrainNetwork = { threads: 1, seed: 9, layers: [layer] };
    const t = new (native().Trainer)(net);
    const z = t.predict(x);
    const eps: number[] = [];
    for (let d = 0; d < 400; d++) {
      const y = t.predict(x, { variation: true });
      for (let j = 0; j < 5; j++) {
        const e = y[j]! / z[j]!;
        expect(y[5 + j]! / z[5 + j]!).toBeCloseTo(e, 4); // the same chip for every sample of the pass
        eps.push(e);
      }
    }
    const mean = eps.reduce((a, v) => a + v, 0) / eps.length;
    const sd = Math.sqrt(eps.reduce((a, v) => a + (v - mean) ** 2, 0) / eps.length);
    expect(mean).toBeGreaterThan(0.97);
    expect(mean).toBeLessThan(1.03);
    expect(sd).toBeGreaterThan(0.27);
    expect(sd).toBeLessThan(0.33);
    // σ = 2: about P(N < −0.5) = 31 % of the devices clamp at 0.
    const wild = new (native().Trainer)({ ...net, layers: [{ ...layer, dendrites: { ...layer.dendrites!, variation: 2 } }] });
    let zeros = 0;
    for (let d = 0; d < 200; d++) zeros += Array.from(wild.predict(x, { variation: true }).subarray(0, 5)).filter((v) => v === 0).length;
    expect(zeros / 1000).toBeGreaterThan(0.26);
    expect(zeros / 1000).toBeLessThan(0.36);
  });
});

describe('fit with the chip in the loop', () => {
  it('variation and noise drawn per minibatch: deterministic for a seed, and they change what is learnt', () => {
    const layer: NativeTrainLayer = {
      inFeatures: 12,
      outFeatures: 4,
      weight: normal(48, 0.5),
      bias: new Float32Array(4),
      activation: NativeActivation.Tanh,
      dendrites: { count: 3, branchOf: Int32Array.from({ length: 12 }, (_, i) => i % 3), kind: NativeDendriteKind.Exponential, alpha: 3, onOffRatio: 20, variation: 0.4 },
      hardware: { programSigma: 0.05, readSigma: 0.05 },
    };
    const net: NativeTrainNetwork = { threads: 2, seed: 4, layers: [layer, { inFeatures: 4, outFeatures: 3, weight: normal(12, 0.5), bias: new Float32Array(3), activation: NativeActivation.None }] };
    const x = normal(12 * 90);
    const labels = Int32Array.from({ length: 90 }, (_, s) => s % 3);
    const run = (opts: { variation?: boolean; noise?: boolean }, seed = 4) => {
      const t = new (native().Trainer)({ ...net, seed }, { kind: 'sgd', learningRate: 0.1, momentum: 0.5 });
      t.fitSync(x, labels, { epochs: 2, batch: 10, ...opts });
      return t.params().weight[0]!;
    };
    const plain = run({});
    expect(run({ variation: true })).toEqual(run({ variation: true }));
    expect(run({ noise: true })).toEqual(run({ noise: true }));
    expect(run({ variation: true })).not.toEqual(plain);
    expect(run({ noise: true })).not.toEqual(plain);
    expect(run({ variation: true })).not.toEqual(run({ variation: true }, 5));
  });
});

describe('the one-step primitive with the activations a chip measured', () => {
  const layers: NativeTrainLayer[] = [
    { inFeatures: 6, outFeatures: 5, weight: normal(30, 0.6), bias: normal(5, 0.2), activation: NativeActivation.Tanh },
    { inFeatures: 5, outFeatures: 3, weight: normal(15, 0.6), bias: normal(3, 0.2), activation: NativeActivation.None },
  ];
  const net: NativeTrainNetwork = { threads: 1, seed: 1, logitScale: 1.5, layers };
  const x = normal(4 * 6);
  const labels = Int32Array.from([2, 0, 1, 0]);

  it('measured = what the weights compute: the same gradients as the float forward', () => {
    const ref = referenceForward(net, params64(net), x, labels);
    const measured = ref.outputs.map((o) => Float32Array.from(o));
    const a = native().trainGradients(net, x, labels);
    const b = native().trainGradients(net, x, labels, { measured });
    expect(b.loss).toBeCloseTo(a.loss, 6);
    a.weight.forEach((w, li) => w.forEach((v, k) => expect(b.weight[li]![k]).toBeCloseTo(v, 6)));
    a.bias.forEach((w, li) => w.forEach((v, k) => expect(b.bias[li]![k]).toBeCloseTo(v, 6)));
  });

  it('measured on another chip: backpropagation of the chip\'s values (Li et al. 2018: forward on the chip, backward on the host)', () => {
    // The chip computed something else (its devices differ): its hidden outputs h and its outputs o.
    const chip: NativeTrainNetwork = { ...net, layers: layers.map((l) => ({ ...l, weight: Float32Array.from(l.weight, (v) => v * 1.3 + 0.05) })) };
    const ref = referenceForward(chip, params64(chip), x, labels);
    const h = ref.outputs[0]!;
    const o = ref.outputs[1]!;
    const g = native().trainGradients(net, x, labels, { measured: [Float32Array.from(h), Float32Array.from(o)] });
    // By hand: δ2 = T·(softmax(T·o) − onehot)/B; dW2 = hᵀδ2; δ1 = (δ2·W2ᵀ) ⊙ (1 − h²) with the host's W2; dW1 = xᵀδ1.
    const T = 1.5;
    const B = 4;
    const d2 = new Float64Array(B * 3);
    let loss = 0;
    for (let s = 0; s < B; s++) {
      const z = [0, 1, 2].map((j) => T * o[s * 3 + j]!);
      const mx = Math.max(...z);
      const den = z.reduce((a, v) => a + Math.exp(v - mx), 0);
      loss += mx + Math.log(den) - z[labels[s]!]!;
      for (let j = 0; j < 3; j++) d2[s * 3 + j] = (T * (Math.exp(z[j]! - mx) / den - (j === labels[s] ? 1 : 0))) / B;
    }
    expect(g.loss).toBeCloseTo(loss / B, 6);
    for (let i = 0; i < 5; i++) {
      for (let j = 0; j < 3; j++) {
        let want = 0;
        for (let s = 0; s < B; s++) want += h[s * 5 + i]! * d2[s * 3 + j]!;
        expect(g.weight[1]![i * 3 + j]).toBeCloseTo(want, 6);
      }
    }
    for (let i = 0; i < 6; i++) {
      for (let j = 0; j < 5; j++) {
        let want = 0;
        for (let s = 0; s < B; s++) {
          let back = 0;
          for (let k = 0; k < 3; k++) back += d2[s * 3 + k]! * layers[1]!.weight[j * 3 + k]!;
          want += x[s * 6 + i]! * back * (1 - h[s * 5 + j]! ** 2);
        }
        expect(g.weight[0]![i * 5 + j]).toBeCloseTo(want, 6);
      }
    }
    // ... which is not the gradient of the host's own float forward.
    const own = native().trainGradients(net, x, labels);
    expect(Math.max(...Array.from(own.weight[0]!, (v, k) => Math.abs(v - g.weight[0]![k]!)))).toBeGreaterThan(1e-3);
  });
});

describe('bad input is refused with the field named', () => {
  const net = linear(4, 3);
  const x = new Float32Array(8);
  const labels = Int32Array.from([0, 1]);
  const n = native();
  it('network, batch, options, optimizer, and a trainer busy fitting', async () => {
    expect(() => n.trainGradients(net, x, Int32Array.from([0, 3]))).toThrow(/labels\[1\] = 3 is not a class of the network's 3 outputs/);
    expect(() => n.trainGradients(net, new Float32Array(7), labels)).toThrow(/x holds 7 values, not a whole number .* of 4 features/);
    expect(() => n.trainGradients(net, x, Int32Array.from([0]))).toThrow(/1 labels for 2 samples/);
    expect(() => n.trainGradients(net, Float32Array.from([0, 0, 0, 0, 0, Infinity, 0, 0]), labels)).toThrow(/x\[5\] \(sample 1, feature 1\) = Infinity must be finite/);
    expect(() => n.trainGradients(net, x, new Float32Array(2) as unknown as Int32Array)).toThrow(/labels must be an Int32Array \(got Float32Array\)/);
    expect(() => n.trainGradients({ ...net, layers: [{ ...net.layers[0]!, weight: new Float32Array(5) }] }, x, labels)).toThrow(/network\.layers\[0\]\.weight has length 5, expected 12/);
    expect(() => n.trainGradients({ ...net, layers: [{ ...net.layers[0]!, bias: Float32Array.from([0, NaN, 0]) }] }, x, labels)).toThrow(/network\.layers\[0\]\.bias\[1\] = NaN must be finite/);
    expect(() => n.trainGradients({ ...net, layers: [...net.layers, { ...net.layers[0]! }] }, x, labels)).toThrow(/layers\[1\]\.inFeatures = 4 does not match the previous layer's outFeatures = 3/);
    expect(() => n.trainGradients({ ...net, layers: [{ ...net.layers[0]!, dendrites: { count: 2, branchOf: Int32Array.from([0, 1, 2, 0]), kind: 0 } }] }, x, labels)).toThrow(/dendrites\.branchOf\[2\] = 2 is outside \[0, 2\)/);
    expect(() => n.trainGradients({ ...net, layers: [{ ...net.layers[0]!, hardware: { stuck: new Uint8Array(12) } }] }, x, labels)).toThrow(/hardware\.stuckValue must be a Float32Array/);
    expect(() => n.trainGradients({ ...net, layers: [{ ...net.layers[0]!, hardware: { adcBits: 4 } }] }, x, labels)).toThrow(/adcBits = 4 needs adcClip > 0/);
    expect(() => n.trainGradients(net, x, labels, { measured: [new Float32Array(5)] })).toThrow(/measured\[0\] has length 5, expected 6/);
    expect(() => n.trainGradients(net, x, labels, { eps: [new Float32Array(3)] })).toThrow(/eps\[0\]: layer 0 has no dendrites/);
    expect(() => n.trainGradients({ ...net, layout: 'rows' as 'in-out' }, x, labels)).toThrow(/layout must be 'in-out' or 'out-in'/);
    expect(() => new n.Trainer(net, { kind: 'lbfgs' as 'sgd' })).toThrow(/optimizer\.kind must be 'sgd', 'rmsprop' or 'adam'/);
    expect(() => new n.Trainer(net, { kind: 'adam', schedule: 'linear' })).toThrow(/optimizer\.totalSteps must be a number/);
    const t = new n.Trainer(net);
    const big = new Float32Array(4 * 4000);
    const fit = t.fit(big, new Int32Array(4000), { epochs: 3, batch: 4 });
    expect(() => t.evaluate(x, labels)).toThrow(/Trainer\.evaluate: a fit\(\) is running on this trainer/);
    t.release(); // while the fit runs: it finishes on its own reference
    await fit;
    expect(() => t.evaluate(x, labels)).toThrow(/Trainer\.evaluate: the trainer was released/);
  });
});
