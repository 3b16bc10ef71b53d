/**
 * The training engine's gradients (native trainGradients) against central differences of the network read
 * literally in float64 (test/helpers/train-reference.ts, from common/dendrite.ts), for every activation and
 * soma, every dendrite kind (exponential with small and large α, linear, threshold-linear; rectifying or not),
 * the loss (softmax cross-entropy with a logit scale), the activity penalty, given dendrite factors ε, stuck
 * weights and ADC clipping; and the forward's loss against the reference's.
 */
import { describe, expect, it } from 'vitest';
import { Random } from '../../common/random.js';
import { native, NativeActivation, NativeDendriteKind, type NativeTrainDendrites, type NativeTrainHardware, type NativeTrainLayer, type NativeTrainNetwork } from '../../native/index.js';
import { finiteDifferences, params64, referenceForward } from '../helpers/train-reference.js';

const rng = new Random(2024);
const normal = (n: number, sd: number) => Float32Array.from({ length: n }, () => rng.normal() * sd);

function layer(inF: number, outF: number, activation: NativeActivation, extra: Partial<NativeTrainLayer> = {}): NativeTrainLayer {
  return { inFeatures: inF, outFeatures: outF, weight: normal(inF * outF, 0.7), bias: normal(outF, 0.3), activation, ...extra };
}

function dendrites(inF: number, count: number, d: Partial<NativeTrainDendrites>): NativeTrainDendrites {
  return { count, branchOf: Int32Array.from({ length: inF }, (_, i) => (i * 5 + 1) % count), kind: NativeDendriteKind.Exponential, fullScale: 1.1, biasScale: 0.7, ...d };
}

function data(inF: number, samples: number, classes: number) {
  return {
    x: Float32Array.from({ length: inF * samples }, () => (rng.next() < 0.2 ? 0 : rng.normal())),
    labels: Int32Array.from({ length: samples }, (_, s) => (s * 7 + 3) % classes),
  };
}

/** The native gradients agree with the reference's central differences (and the losses agree). */
function check(net: NativeTrainNetwork, samples = 6, opts: { eps?: (Float32Array | null)[]; maxSkipped?: number } = {}) {
  const classes = net.layers[net.layers.length - 1]!.outFeatures;
  const { x, labels } = data(net.layers[0]!.inFeatures, samples, classes);
  const g = native().trainGradients(net, x, labels, opts.eps ? { eps: opts.eps } : {});
  const fd = finiteDifferences(net, x, labels, { eps: opts.eps });
  expect(g.loss).toBeCloseTo(fd.loss, 5);
  let compared = 0;
  const compare = (got: Float32Array, want: Float64Array) => {
    const scale = Math.max(1e-3, ...Array.from(want).filter(Number.isFinite).map(Math.abs));
    for (let k = 0; k < got.length; k++) {
      if (!Number.isFinite(want[k]!)) continue;
      expect(Math.abs(got[k]! - want[k]!)).toBeLessThan(2e-4 * scale + 1e-6);
      compared++;
    }
  };
  g.weight.forEach((w, li) => compare(w, fd.weight[li]!));
  g.bias.forEach((b, li) => compare(b, fd.bias[li]!));
  expect(fd.skipped).toBeLessThanOrEqual(opts.maxSkipped ?? 0);
  // Something flows back to the first layer (a test whose gradients are all zero proves nothing).
  expect(Math.max(...Array.from(g.weight[0]!).map(Math.abs))).toBeGreaterThan(1e-4);
  return { compared, g, fd };
}

const net = (layers: NativeTrainLayer[], extra: Partial<NativeTrainNetwork> = {}): NativeTrainNetwork => ({ layers, threads: 2, seed: 1, ...extra });

describe('training engine gradients against finite differences (float64 reference)', () => {
  it('point-neuron layers: every activation, the loss with a logit scale', () => {
    const acts: [NativeActivation, Partial<NativeTrainLayer>][] = [
      [NativeActivation.None, {}],
      [NativeActivation.Relu, {}],
      [NativeActivation.LeakyRelu, { alpha: 0.1 }],
      [NativeActivation.Sigmoid, {}],
      [NativeActivation.Tanh, {}],
      [NativeActivation.Clip, { alpha: -0.6, beta: 0.8 }],
      [NativeActivation.ThresholdSoma, { alpha: 0.2, beta: 1.4 }],
    ];
    for (const [act, extra] of acts) {
      const { compared } = check(net([layer(7, 6, act, extra), layer(6, 4, NativeActivation.Tanh), layer(4, 3, NativeActivation.None)], { logitScale: 1.7 }), 6, { maxSkipped: 1 });
      expect(compared).toBeGreaterThan(80);
    }
  });

  it('dendritic layers: each dendrite kind, rectifying or not, both somas', () => {
    const kinds: Partial<NativeTrainDendrites>[] = [
      { kind: NativeDendriteKind.Exponential, alpha: 5.56, onOffRatio: 100, ratio: 1 }, // n = 0.1: the float kernel
      { kind: NativeDendriteKind.Exponential, alpha: 0.5, onOffRatio: 10, ratio: 2, rectify: true }, // α < 1: the double kernel
      { kind: NativeDendriteKind.Exponential, alpha: 0, onOffRatio: 5, ratio: 0.8 }, // linear device
      { kind: NativeDendriteKind.ThresholdLinear, threshold: 0.5, onOffRatio: 20, ratio: 1.5 },
      { kind: NativeDendriteKind.ThresholdLinear, threshold: 0.3, onOffRatio: 8, ratio: 1, rectify: true },
    ];
    for (const d of kinds) {
      for (const soma of [{ activation: NativeActivation.ThresholdSoma, alpha: 0.1, beta: 1.5 }, { activation: NativeActivation.Relu }]) {
        const layers = [
          layer(9, 6, soma.activation, { ...soma, dendrites: dendrites(9, 3, d) }),
          layer(6, 5, NativeActivation.Tanh, { dendrites: dendrites(6, 2, d) }),
          layer(5, 3, NativeActivation.Sigmoid),
        ];
        const { compared } = check(net(layers, { logitScale: 2 }), 8, { maxSkipped: 2 });
        expect(compared).toBeGreaterThan(100);
      }
    }
  });

  it('given dendrite factors ε, the activity penalty, stuck weights and ADC clipping', () => {
    const d = { kind: NativeDendriteKind.Exponential, alpha: 2, onOffRatio: 50, ratio: 1.2 };
    const stuck = Uint8Array.from({ length: 8 * 5 }, (_, k) => (k % 7 === 2 ? 1 : 0));
    const hw: NativeTrainHardware = { stuck, stuckValue: Float32Array.from(stuck, (s, k) => (s ? (k % 2 ? 0.9 : -0.9) : 0)), adcClip: 1.2 };
    const layers = [
      layer(8, 5, NativeActivation.Relu, { dendrites: dendrites(8, 2, d), hardware: hw }),
      layer(5, 4, NativeActivation.Tanh, { hardware: { adcClip: 1.0 } }),
      layer(4, 3, NativeActivation.None),
    ];
    const eps = [Float32Array.from({ length: 10 }, () => Math.max(0, 1 + 0.4 * rng.normal())), null, null];
    const { g, compared } = check(net(layers, { penalty: { soma: 0.05, branch: 0.03 } }), 8, { eps, maxSkipped: 2 });
    expect(compared).toBeGreaterThan(60);
    // Stuck weights take no gradient.
    stuck.forEach((s, k) => {
      if (s) expect(g.weight[0]![k]).toBe(0);
    });
    // The clip and the stuck weights change the loss (else their agreement proves nothing about them).
    const { x, labels } = data(8, 8, 3);
    const loss = (ls: NativeTrainLayer[]) => referenceForward(net(ls), params64(net(ls)), x, labels, eps).loss;
    const unclipped = layers.map((l) => ({ ...l, hardware: l.hardware?.stuck ? { stuck: l.hardware.stuck, stuckValue: l.hardware.stuckValue } : undefined }));
    const healthy = layers.map((l) => ({ ...l, hardware: l.hardware?.adcClip ? { adcClip: l.hardware.adcClip } : undefined }));
    expect(Math.abs(loss(unclipped) - loss(layers))).toBeGreaterThan(1e-3);
    expect(Math.abs(loss(healthy) - loss(layers))).toBeGreaterThan(1e-3);
  });

  it('forwardLayers: every layer\'s outputs as the reference computes them, the branch sums summed literally', () => {
    const d = { kind: NativeDendriteKind.ThresholdLinear, threshold: 0.4, onOffRatio: 10, ratio: 1.3 };
    const layers = [layer(9, 6, NativeActivation.Relu, { dendrites: dendrites(9, 3, d) }), layer(6, 3, NativeActivation.Sigmoid)];
    const n = net(layers);
    const { x, labels } = data(9, 700, 3); // more than one 512-row chunk
    const got = new (native().Trainer)(n).forwardLayers(x);
    const ref = referenceForward(n, params64(n), x, labels);
    got.outputs.forEach((o, li) => o.forEach((v, k) => expect(v).toBeCloseTo(ref.outputs[li]![k]!, 5)));
    expect(got.branch[1]).toBeNull();
    const z = got.branch[0]!;
    expect(z.length).toBe(700 * 3 * 6);
    for (const s of [0, 511, 512, 699]) {
      for (let b = 0; b < 3; b++) {
        for (let j = 0; j < 6; j++) {
          let want = 0;
          for (let i = 0; i < 9; i++) if ((i * 5 + 1) % 3 === b) want += x[s * 9 + i]! * layers[0]!.weight[i * 6 + j]!;
          expect(z[(s * 3 + b) * 6 + j]).toBeCloseTo(want, 5);
        }
      }
    }
    // The soma input: Σ_b F·H(z/F) + κ·b; relu of it is the output.
    got.pre[0]!.forEach((v, k) => expect(got.outputs[0]![k]).toBeCloseTo(Math.max(0, v), 6));
  });

  it("'out-in' layout: the same gradients, transposed", () => {
    const a = net([layer(5, 4, NativeActivation.Sigmoid), layer(4, 3, NativeActivation.None)]);
    const tr = (w: Float32Array, i: number, o: number) => Float32Array.from({ length: i * o }, (_, k) => w[(k % i) * o + Math.floor(k / i)]!);
    const b: NativeTrainNetwork = { ...a, layout: 'out-in', layers: a.layers.map((l) => ({ ...l, weight: tr(l.weight, l.inFeatures, l.outFeatures) })) };
    const { x, labels } = data(5, 7, 3);
    const ga = native().trainGradients(a, x, labels);
    const gb = native().trainGradients(b, x, labels);
    expect(gb.loss).toBe(ga.loss);
    a.layers.forEach((l, li) => expect(gb.weight[li]).toEqual(tr(ga.weight[li]!, l.inFeatures, l.outFeatures)));
    check(b, 5);
  });
});
