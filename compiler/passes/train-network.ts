/**
 * A LayerModel (with or without dendrites) as the native training engine's network (native/index.ts
 * NativeTrainNetwork, docs/training.md): the one place where layers, somas and dendrite devices become the
 * engine's parameters, for every training path (fine-tuning, in-situ training, studies).
 */
import { nativeActivation } from '../../common/activation.js';
import { availableParallelism } from 'node:os';
import { alphaOf, type DendriteDevice } from '../../common/dendrite.js';
import { InputError } from '../../common/errors.js';
import { NativeActivation, NativeDendriteKind, type NativeTrainHardware, type NativeTrainLayer, type NativeTrainNetwork } from '../../native/index.js';
import type { DenseLayer, LayerModel } from '../ir/layers.js';

export interface TrainNetworkOptions {
  /** GEMM threads (default: the machine's, at most 8). */
  threads?: number;
  /** The trainer's seed (default 1). */
  seed?: number;
  /** σ of the dendrites' ε drawn in passes that ask for variation (default: the device's `variation`). */
  variation?: number;
  /**
   * The same network without dendrite devices (each dendritic layer's soma sees the plain x·W + b); per layer
   * when an array (true: that layer without its devices).
   */
  bypass?: boolean | readonly boolean[];
  /** The loss sees logitScale × the outputs (default 1). */
  logitScale?: number;
  /** L1 activity penalty (NativeTrainNetwork.penalty). */
  penalty?: { soma?: number; branch?: number };
  /** Per layer, the hardware effects of its training forward (undefined: none). */
  hardware?: (NativeTrainHardware | undefined)[];
}

/** A layer's activation (or threshold soma) as the engine's code. */
export function somaCode(l: DenseLayer): { activation: NativeActivation; alpha: number; beta: number } {
  const soma = l.dendrites?.soma;
  if (soma?.kind === 'threshold') return { activation: NativeActivation.ThresholdSoma, alpha: soma.theta, beta: soma.scale };
  return nativeActivation(l.activation);
}


/** Default GEMM threads for training. */
export function trainThreads(): number {
  return Math.max(1, Math.min(8, availableParallelism()));
}

export function toTrainNetwork(model: LayerModel, device: DendriteDevice | null, opts: TrainNetworkOptions = {}): NativeTrainNetwork {
  const bypassOf = (li: number) => (typeof opts.bypass === 'boolean' ? opts.bypass : opts.bypass?.[li] ?? false);
  if (Array.isArray(opts.bypass) && opts.bypass.length !== model.layers.length) {
    throw new InputError(`bypass is given for ${opts.bypass.length} layers; the network has ${model.layers.length}`);
  }
  if (opts.hardware && opts.hardware.length !== model.layers.length) {
    throw new InputError(`training hardware is given for ${opts.hardware.length} layers; the network has ${model.layers.length}`);
  }
  const layers: NativeTrainLayer[] = model.layers.map((l, li) => {
    const d = l.dendrites;
    const bypass = bypassOf(li);
    if (d && !bypass && !device) throw new InputError(`layer ${li} (${l.name}) has dendrites but no dendrite device was given`);
    const hw = opts.hardware?.[li];
    return {
      inFeatures: l.inFeatures,
      outFeatures: l.outFeatures,
      weight: l.weight,
      bias: l.bias,
      ...somaCode(l),
      ...(d && !bypass && device
        ? {
            dendrites: {
              count: d.count,
              branchOf: d.branchOf,
              kind: device.kind === 'threshold-linear' ? NativeDendriteKind.ThresholdLinear : NativeDendriteKind.Exponential,
              alpha: alphaOf(device.nonlinearity),
              onOffRatio: device.onOffRatio,
              ratio: device.voltage / device.onVoltage,
              ...(device.maxVoltage !== undefined ? { maxRatio: device.maxVoltage / device.onVoltage } : {}),
              threshold: device.threshold,
              rectify: device.rectify,
              variation: opts.variation ?? device.variation,
              fullScale: d.fullScale,
              biasScale: d.biasScale,
            },
          }
        : {}),
      ...(hw ? { hardware: hw } : {}),
    };
  });
  return {
    layers,
    threads: opts.threads ?? trainThreads(),
    seed: (opts.seed ?? 1) >>> 0,
    logitScale: opts.logitScale ?? 1,
    ...(opts.penalty ? { penalty: opts.penalty } : {}),
  };
}
