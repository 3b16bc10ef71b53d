/** A tiny seeded dendritic network, its inputs and the model read literally, for the dendrite passes' tests. */
import { expect } from 'vitest';
import { Random } from '../../common/random.js';
import { dendritePower, dendriteTransfer, somaOutput, type DendriteDevice, type Soma } from '../../common/dendrite.js';
import type { Activation, DenseLayer, LayerModel } from '../../compiler/ir/layers.js';

/**
 * 12 → 7 (3 branches, `soma`, default the paper's threshold soma) → 5 (2 branches, tanh) → 3 (no dendrites,
 * `lastActivation`, default sigmoid); weights N(0, 0.8²), biases N(0, 0.3²), F 1.3, κ 0.6.
 */
export function tinyNetwork(seed: number, opts: { soma?: Soma; lastActivation?: Activation } = {}): LayerModel {
  const rng = new Random(seed);
  const dense = (n: number, m: number, activation: Activation, branches: number, s: Soma): DenseLayer => ({
    name: `dense${n}x${m}`,
    origin: [],
    inFeatures: n,
    outFeatures: m,
    weight: Float32Array.from({ length: n * m }, () => rng.normal() * 0.8),
    bias: Float32Array.from({ length: m }, () => rng.normal() * 0.3),
    activation,
    dendrites: branches > 0
      ? { count: branches, branchOf: Int32Array.from({ length: n }, (_, i) => (i * 7 + 3) % branches), fullScale: 1.3, biasScale: 0.6, soma: s, strategy: 'test', calibrated: false }
      : undefined,
  });
  return {
    source: { file: 'tiny', producer: 'test', opset: 17 } as unknown as LayerModel['source'],
    input: { name: 'x', dtype: 'float32', shape: ['batch', 12], features: 12 },
    output: { name: 'y', features: 3 },
    head: 'none',
    layers: [
      dense(12, 7, { kind: 'relu' }, 3, opts.soma ?? { kind: 'threshold', theta: 0.1, scale: 1.5 }),
      dense(7, 5, { kind: 'tanh' }, 2, { kind: 'activation' }),
      dense(5, 3, opts.lastActivation ?? { kind: 'sigmoid' }, 0, { kind: 'activation' }),
    ],
  };
}

/** Inputs for tinyNetwork: a quarter zeros, the rest N(0, 1). */
export function tinyInputs(seed: number, samples: number): Float32Array {
  const rng = new Random(seed);
  return Float32Array.from({ length: samples * 12 }, () => (rng.next() < 0.25 ? 0 : rng.normal()));
}

/**
 * The model of common/dendrite.ts read literally, sample by sample, neuron by neuron, branch by branch:
 * y_bj = F·ε_bj·H(z_bj/F) (ε = 1 unless `eps` gives each dendritic layer's factors, [branch][neuron]), power ε·V·I;
 * `bypass`: the network without dendrite devices.
 */
export function naiveForward(model: LayerModel, device: DendriteDevice, x: Float32Array, opts: { bypass?: boolean; eps?: (Float64Array | null)[] } = {}) {
  const f = model.input.features;
  const samples = x.length / f;
  const somaSum = model.layers.map(() => 0);
  const power = model.layers.map(() => 0);
  const outputs: number[] = [];
  const inputs: number[][] = model.layers.map(() => []);
  for (let s = 0; s < samples; s++) {
    let a = Array.from(x.subarray(s * f, (s + 1) * f));
    model.layers.forEach((l, li) => {
      inputs[li]!.push(...a);
      const d = l.dendrites;
      const next: number[] = [];
      for (let j = 0; j < l.outFeatures; j++) {
        let pre: number;
        if (!d || opts.bypass) {
          pre = l.bias[j]!;
          for (let i = 0; i < l.inFeatures; i++) pre += a[i]! * l.weight[i * l.outFeatures + j]!;
        } else {
          pre = d.biasScale * l.bias[j]!;
          for (let b = 0; b < d.count; b++) {
            let z = 0;
            for (let i = 0; i < l.inFeatures; i++) if (d.branchOf[i] === b) z += a[i]! * l.weight[i * l.outFeatures + j]!;
            const e = opts.eps ? opts.eps[li]![b * l.outFeatures + j]! : 1;
            pre += d.fullScale * e * dendriteTransfer(device, z / d.fullScale);
            power[li]! += e * dendritePower(device, z / d.fullScale);
          }
        }
        const out = somaOutput(d?.soma ?? { kind: 'activation' }, l.activation, pre);
        somaSum[li]! += Math.abs(out);
        next.push(out);
      }
      a = next;
    });
    outputs.push(...a);
  }
  return { outputs, inputs, somaSum, power };
}

/** Largest |actual − expected| / (1 + |expected|) below `rel`. */
export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, rel = 1e-6) {
  expect(actual.length).toBe(expected.length);
  let worst = 0;
  for (let i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs(actual[i]! - expected[i]!) / (1 + Math.abs(expected[i]!)));
  expect(worst).toBeLessThan(rel);
}
