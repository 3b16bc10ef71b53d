/** A tiny seeded dendritic network and inputs for the dendrite passes' tests. */
import { Random } from '../../common/random.js';
import type { Soma } from '../../common/dendrite.js';
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
