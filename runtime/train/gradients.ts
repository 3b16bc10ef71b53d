/**
 * Host-side backpropagation for in-situ training: the native training engine's one-step primitive
 * (`trainGradients`, native/src/train/), handed the weights as the chip holds them (read back), the minibatch,
 * its labels and the activations the chip measured, so the gradients are those of the chip's own forward pass.
 */
import { nativeActivation } from '../../common/activation.js';
import { native } from '../../native/index.js';
import type { Activation } from '../../compiler/ir/layers.js';

export interface HostGradients {
  /** Mean softmax cross-entropy of the minibatch. */
  loss: number;
  /** Per layer, [in][out] row-major. */
  weight: Float32Array[];
  bias: Float32Array[];
}

export interface GradientInput {
  layers: { inFeatures: number; outFeatures: number; weight: Float32Array; bias: Float32Array; activation: Activation }[];
  x: Float32Array;
  labels: Int32Array;
  batch: number;
  /** Per layer, its outputs as measured on the chip ([batch × out], after the activation). */
  measured: Float32Array[];
}


export function hostGradients(input: GradientInput): HostGradients {
  const r = native().trainGradients(
    {
      layout: 'in-out',
      threads: 1,
      seed: 0,
      layers: input.layers.map((l) => ({ inFeatures: l.inFeatures, outFeatures: l.outFeatures, weight: l.weight, bias: l.bias, ...nativeActivation(l.activation) })),
    },
    input.x,
    input.labels,
    { measured: input.measured },
  );
  return { loss: r.loss, weight: r.weight, bias: r.bias };
}
