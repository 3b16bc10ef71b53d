/**
 * The optimizers against their papers' update equations worked by hand, and training from random weights on
 * the 8 × 8 digits (common/mnist.ts) judged on the held-out test digits.
 *
 * The hand-worked problem: one layer, 1 input held at 0 (the weights get no gradient), 2 outputs, 10 samples of
 * which 8 are class 0 (q = 0.8), full-batch steps from b = 0. The loss −q·log p0 − (1 − q)·log p1, p = softmax(b),
 * has its minimum where b0 − b1 = ln(q / (1 − q)) = ln 4, and its gradient is p − (q, 1 − q): at b = 0,
 * (−0.3, +0.3). The reference values below were worked step by step from the equations as the papers print them
 * (float64), independently of the engine:
 *   SGD with momentum (Sutskever et al. 2013 form), η = 0.5, μ = 0.9: v ← μv + g, b ← b − ηv.
 *     Step 1: b0 = 0.5·0.3 = 0.15 exactly.
 *   RMSprop (Tieleman & Hinton 2012), η = 0.01, ρ = 0.9: s ← ρs + (1 − ρ)g², b ← b − ηg/(√s + ε).
 *     Step 1: b0 = 0.01·0.3/(√0.1·0.3) = 0.01/√0.1 = 0.0316228 (whatever g).
 *   Adam (Kingma & Ba 2015, Algorithm 1), α = 0.05: m̂1 = g, v̂1 = g², so step 1 moves every parameter with a
 *     gradient by exactly α (their §2.1): b0 = 0.05.
 */
import { describe, expect, it } from 'vitest';
import { loadMnist } from '../../common/mnist.js';
import { Random } from '../../common/random.js';
import { native, NativeActivation, type NativeOptimizer, type NativeTrainNetwork } from '../../native/index.js';

const X = new Float32Array(10);
const LABELS = Int32Array.from({ length: 10 }, (_, s) => (s < 8 ? 0 : 1));
const bernoulli = (): NativeTrainNetwork => ({
  threads: 1,
  seed: 1,
  layers: [{ inFeatures: 1, outFeatures: 2, weight: Float32Array.from([0.3, -0.2]), bias: new Float32Array(2), activation: NativeActivation.None }],
});

/** b0 after each of `steps` full-batch steps (b1 = −b0 by symmetry, checked). */
function trajectory(opt: NativeOptimizer, steps: number): number[] {
  const t = new (native().Trainer)(bernoulli(), opt);
  const out: number[] = [];
  for (let k = 0; k < steps; k++) {
    t.step(X, LABELS);
    const p = t.params();
    expect(p.bias[0]![1]).toBeCloseTo(-p.bias[0]![0]!, 6);
    expect(Array.from(p.weight[0]!)).toEqual([Math.fround(0.3), Math.fround(-0.2)]); // x = 0: no weight gradient
    out.push(p.bias[0]![0]!);
  }
  return out;
}

describe('optimizers: the papers\' update equations, worked by hand', () => {
  it('SGD with momentum', () => {
    const b = trajectory({ kind: 'sgd', learningRate: 0.5, momentum: 0.9 }, 3);
    [0.15, 0.3977787415941706, 0.6762679177413463].forEach((v, k) => expect(b[k]).toBeCloseTo(v, 6));
    // Without momentum the second step is only η·g2: 0.15 + 0.5·(0.8 − σ(0.3)) = 0.27222...
    const plain = trajectory({ kind: 'sgd', learningRate: 0.5 }, 2);
    expect(plain[1]).toBeCloseTo(0.15 + 0.5 * (0.8 - 1 / (1 + Math.exp(-0.3))), 6);
  });

  it('RMSprop', () => {
    const b = trajectory({ kind: 'rmsprop', learningRate: 0.01, rho: 0.9 }, 3);
    [0.031622773268350814, 0.05396728394222243, 0.07236987762826261].forEach((v, k) => expect(b[k]).toBeCloseTo(v, 6));
  });

  it('Adam, and the linear step decay', () => {
    const b = trajectory({ kind: 'adam', learningRate: 0.05 }, 3);
    // float32 state: within 1e-5 of the float64 hand values (a step is 0.05; without the bias correction step 1 alone would be 0.05·0.1/√0.001 ≈ 0.16)
    [0.04999999833333342, 0.09983975803211947, 0.14939084305182534].forEach((v, k) => expect(b[k]).toBeCloseTo(v, 5));
    // η_t = η·(1 − (t − 1)/T): with T = 1 the second step has η = 0 and moves nothing.
    const decayed = trajectory({ kind: 'adam', learningRate: 0.05, schedule: 'linear', totalSteps: 1 }, 2);
    expect(decayed[0]).toBeCloseTo(0.05, 6);
    expect(decayed[1]).toBe(decayed[0]);
  });

  it('each converges to the analytic minimiser b0 − b1 = ln 4', () => {
    const opts: [NativeOptimizer, number][] = [
      [{ kind: 'sgd', learningRate: 0.5, momentum: 0.5 }, 200],
      [{ kind: 'rmsprop', learningRate: 0.01 }, 600],
      [{ kind: 'adam', learningRate: 0.05 }, 600],
    ];
    for (const [opt, steps] of opts) {
      const b = trajectory(opt, steps);
      expect(2 * b[steps - 1]!).toBeCloseTo(Math.log(4), 2);
    }
  });
});

describe('training from random weights on the 8 × 8 digits', () => {
  it('64-54-10 beats 90 % on the 2,004 held-out test digits with each optimizer (untrained: chance)', async () => {
    const train = loadMnist('train', 8);
    const test = loadMnist('test', 8);
    const trainLabels = Int32Array.from(train.labels);
    const testLabels = Int32Array.from(test.labels);
    const rng = new Random(5);
    const init = (i: number, o: number) => Float32Array.from({ length: i * o }, () => rng.normal() * Math.sqrt(2 / i));
    const net: NativeTrainNetwork = {
      threads: 2,
      seed: 3,
      layers: [
        { inFeatures: 64, outFeatures: 54, weight: init(64, 54), bias: new Float32Array(54), activation: NativeActivation.Relu },
        { inFeatures: 54, outFeatures: 10, weight: init(54, 10), bias: new Float32Array(10), activation: NativeActivation.None },
      ],
    };
    const runs: [NativeOptimizer, number][] = [
      [{ kind: 'adam', learningRate: 3e-3 }, 15],
      [{ kind: 'sgd', learningRate: 0.05, momentum: 0.9 }, 15],
      [{ kind: 'rmsprop', learningRate: 1e-3 }, 25],
    ];
    for (const [opt, epochs] of runs) {
      const t = new (native().Trainer)(net, opt);
      expect(t.evaluate(test.x, testLabels).accuracy).toBeLessThan(0.2);
      const seen: number[] = [];
      const fit = await t.fit(train.x, trainLabels, { epochs, batch: 32 }, (p) => seen.push(p.samples));
      expect(fit.loss).toHaveLength(epochs);
      expect(fit.loss[epochs - 1]!).toBeLessThan(fit.loss[0]!);
      expect(seen.at(-1)).toBe(epochs * train.labels.length);
      expect(t.steps).toBe(epochs * Math.ceil(train.labels.length / 32));
      expect(t.evaluate(test.x, testLabels).accuracy).toBeGreaterThan(0.9);
    }
  });

  it('the soma activity penalty trades accuracy for sparser hidden activity', () => {
    const train = loadMnist('train', 8);
    const labels = Int32Array.from(train.labels);
    const rng = new Random(11);
    const init = (i: number, o: number) => Float32Array.from({ length: i * o }, () => rng.normal() * Math.sqrt(2 / i));
    const layers = [
      { inFeatures: 64, outFeatures: 54, weight: init(64, 54), bias: new Float32Array(54), activation: NativeActivation.Relu },
      { inFeatures: 54, outFeatures: 10, weight: init(54, 10), bias: new Float32Array(10), activation: NativeActivation.None },
    ];
    const run = (soma: number) => {
      const t = new (native().Trainer)({ layers, threads: 2, seed: 2, penalty: { soma } }, { kind: 'adam', learningRate: 3e-3 });
      t.fitSync(train.x, labels, { epochs: 5, batch: 32 });
      const hidden = t.forwardLayers(train.x).outputs[0]!;
      return { active: hidden.filter((v) => v > 0).length / hidden.length, accuracy: t.evaluate(train.x, labels).accuracy };
    };
    // Measured here: λ 0, 0.02, 0.1, 0.3, 1 → active 72 %, 28 %, 8.6 %, 2.4 %, 0 %; accuracy 92.1, 93.4, 91.2, 63.8, 11.3 %.
    const runs = [0, 0.1, 0.3, 1].map(run);
    for (let k = 1; k < runs.length; k++) expect(runs[k]!.active).toBeLessThan(runs[k - 1]!.active);
    expect(runs[1]!.active).toBeLessThan(0.2 * runs[0]!.active);
    expect(runs[1]!.accuracy).toBeGreaterThan(0.85);
    expect(runs[2]!.accuracy).toBeLessThan(runs[0]!.accuracy - 0.1);
    expect(runs[3]!.active).toBeLessThan(1e-3);
    expect(runs[3]!.accuracy).toBeLessThan(0.2);
  });

  it('is deterministic for a seed, and the seed matters', () => {
    const train = loadMnist('train', 8);
    const labels = Int32Array.from(train.labels);
    const rng = new Random(1);
    const layers = [
      { inFeatures: 64, outFeatures: 20, weight: Float32Array.from({ length: 1280 }, () => rng.normal() * 0.2), bias: new Float32Array(20), activation: NativeActivation.Tanh },
      { inFeatures: 20, outFeatures: 10, weight: Float32Array.from({ length: 200 }, () => rng.normal() * 0.3), bias: new Float32Array(10), activation: NativeActivation.None },
    ];
    const run = (seed: number, threads: number) => {
      const t = new (native().Trainer)({ layers, seed, threads }, { kind: 'adam', learningRate: 1e-2 });
      t.fitSync(train.x, labels, { epochs: 1, batch: 50 });
      return t.params().weight[0]!;
    };
    expect(run(7, 1)).toEqual(run(7, 2));
    expect(run(7, 1)).not.toEqual(run(8, 1));
  });
});
