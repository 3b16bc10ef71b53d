/**
 * Layer IR: the network as a chain of dense layers, in the field's terms, free of ONNX.
 *
 * `LayerChain` is what `lower` produces (one entry per meaningful ONNX op, in order);
 * `fold-batchnorm` and `fuse-layers` turn it into a `LayerModel`, one dense layer per crossbar layer.
 */
import type { Graph } from './graph.js';
import type { DType } from '../../common/dtypes.js';
import type { Soma } from '../../common/dendrite.js';

export type { Activation } from '../../common/activation.js';
import type { Activation } from '../../common/activation.js';

export type Head = 'none' | 'softmax' | 'logsoftmax';

/** Where in the ONNX graph a layer came from, for messages and `inspect`. */
export interface Origin {
  node: string;
  op: string;
}

export type ChainOp =
  /**
   * y = x · W + b, W stored [inFeatures][outFeatures] row-major (crossbar rows × columns); with `dendrites`
   * (a dendritic layer imported from ONNX, docs/dendritic-onnx.md) the branch sums go through the dendrites first.
   */
  | { kind: 'dense'; origin: Origin; inFeatures: number; outFeatures: number; weight: Float32Array; bias: Float32Array; dendrites?: Dendrites }
  | { kind: 'bias'; origin: Origin; bias: Float32Array }
  | { kind: 'batchnorm'; origin: Origin; scale: Float32Array; shift: Float32Array; mean: Float32Array; variance: Float32Array; epsilon: number }
  | { kind: 'activation'; origin: Origin; activation: Activation }
  | { kind: 'head'; origin: Origin; head: Exclude<Head, 'none'> };

export interface ModelInterface {
  input: { name: string; dtype: DType; shape: (number | string | null)[]; features: number };
  output: { name: string; features: number };
}

export interface LayerChain extends ModelInterface {
  source: Graph['source'];
  ops: ChainOp[];
}

export interface DenseLayer {
  name: string;
  origin: Origin[];
  inFeatures: number;
  outFeatures: number;
  /** [inFeatures][outFeatures] row-major. */
  weight: Float32Array;
  bias: Float32Array;
  activation: Activation;
  /** Dendritic branches of every neuron (common/dendrite.ts); absent = a point neuron. */
  dendrites?: Dendrites;
}

/**
 * A layer's dendrites (the model of common/dendrite.ts): every neuron splits its inputs the same way.
 * Set by `assign-branches` (or imported from a dendritic ONNX layer) and tuned by `calibrate-dendrites`.
 */
export interface Dendrites {
  /** Branches per neuron (>= 1). */
  count: number;
  /** Branch of each input, in [0, count); length inFeatures. */
  branchOf: Int32Array;
  /** F: the branch signal (weight units) that applies the profile's dendrite voltage; u = z / F. > 0. */
  fullScale: number;
  /** κ: the bias (soma threshold) is added as κ·bias, matching the dendrites' attenuation. */
  biasScale: number;
  /** What the soma computes. */
  soma: Soma;
  /** How the branches were chosen ('contiguous', 'spatial', ..., or 'onnx' when imported), for `inspect` and reports. */
  strategy: string;
  /** true once fullScale and biasScale were set on sample inputs (or imported from a trained dendritic model). */
  calibrated: boolean;
  /**
   * Imported from a dendritic ONNX layer: the dendrite function it was trained with, so the compiler can warn
   * when the profile's devices differ.
   */
  trained?: { kind: 'exponential' | 'threshold-linear'; nonlinearity: number; onOffRatio: number; ratio: number; threshold: number; rectify: boolean };
}

export interface LayerModel extends ModelInterface {
  source: Graph['source'];
  layers: DenseLayer[];
  head: Head;
}
