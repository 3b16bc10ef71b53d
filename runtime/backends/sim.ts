/**
 * The simulator backend: turns an artifact into the native program (the one place where the profile
 * and placed layers become native parameters) and runs it in the addon.
 */
import { nativeActivation } from '../../common/activation.js';
import { availableParallelism } from 'node:os';
import type { Artifact } from '../../artifact/format.js';
import type { Head } from '../../compiler/ir/layers.js';
import { ArtifactError } from '../../common/errors.js';
import { native, NativeActivation, NativeDendriteKind, NativeHead, type NativeChip, type NativeDendrites, type NativeLayer, type NativePhysics, type NativeProgram } from '../../native/index.js';
import type { PlacedLayer } from '../../compiler/ir/placed.js';
import { alphaOf } from '../../common/dendrite.js';
import type { DeviceProfile } from '../../common/profile.js';

/** The profile's device physics in the addon's terms. */
export function physicsOf(p: DeviceProfile, time = 0): NativePhysics {
  return {
    programSigma: p.programming.sigma,
    programRelative: p.programming.relative,
    readSigma: p.read.sigma,
    readRelative: p.read.relative,
    driftNu: p.drift.nu,
    driftNuSigma: p.drift.nuSigma,
    driftT0: p.drift.t0,
    time,
    wireResistance: p.wire.resistance,
    // The levels' spacing: where every conductance of a tile sits on a level, the simulator runs it in exact integers.
    levelStep: p.conductance.levels >= 2 ? (p.conductance.max - p.conductance.min) / (p.conductance.levels - 1) : 0,
  };
}

export interface SimOptions {
  seed?: number;
  threads?: number;
  /** Seconds since the chip was programmed (conductance drift). */
  time?: number;
  /** 'bypass': run the same network without its dendrite devices (the reference of the power advantage). */
  dendrites?: 'on' | 'bypass';
  /** The kernels ('portable', 'avx2', 'avx512', 'vnni' or 'auto'; default: DENDRA_KERNEL, else the best the CPU has). */
  kernel?: string;
}

/** A dendritic layer's dendrites in the addon's terms (from the profile's devices and the layer's gains). */
export function dendritesOf(artifact: Artifact, layer: PlacedLayer, bypass: boolean): NativeDendrites | undefined {
  const d = layer.dendrites;
  if (!d) return undefined;
  const dev = artifact.profile.dendrite;
  if (!dev) throw new ArtifactError(`layer '${layer.name}' has dendrites but the artifact's '${artifact.profile.name}' profile has no dendrite devices`);
  return {
    count: d.count,
    kind: dev.kind === 'exponential' ? NativeDendriteKind.Exponential : NativeDendriteKind.ThresholdLinear,
    alpha: alphaOf(dev.nonlinearity),
    onOffRatio: dev.onOffRatio,
    ratio: dev.voltage / dev.onVoltage,
    ...(dev.maxVoltage !== undefined ? { maxRatio: dev.maxVoltage / dev.onVoltage } : {}),
    threshold: dev.threshold,
    rectify: dev.rectify,
    variation: dev.variation,
    fullScale: d.fullScale,
    biasScale: d.biasScale,
    energyUnit: dev.onVoltage * dev.onCurrent * dev.time,
    bypass,
  };
}


const headCode: Record<Head, NativeHead> = { none: NativeHead.None, softmax: NativeHead.Softmax, logsoftmax: NativeHead.LogSoftmax };

export function toNativeProgram(artifact: Artifact, options: SimOptions = {}): NativeProgram {
  const p = artifact.profile;
  const last = artifact.layers.length - 1;
  const layers: NativeLayer[] = artifact.layers.map((l, i) => ({
    inFeatures: l.inFeatures,
    outFeatures: l.outFeatures,
    vRead: p.read.voltage,
    dacBits: p.dac.bits,
    adcBits: p.adc.bits,
    tiles: l.tiles,
    outScale: Float32Array.from(l.gPerWeight, (g) => 1 / g),
    bias: l.bias,
    ...(l.dendrites?.soma.kind === 'threshold'
      ? { activation: NativeActivation.ThresholdSoma, alpha: l.dendrites.soma.theta, beta: l.dendrites.soma.scale }
      : nativeActivation(l.activation)),
    head: i === last ? headCode[artifact.head] : NativeHead.None,
    ...(l.dendrites ? { dendrites: dendritesOf(artifact, l, options.dendrites === 'bypass') } : {}),
    ...(p.soma && l.somaFullScale ? { soma: { fullScale: l.somaFullScale, energy: p.soma.voltage * p.soma.onCurrent * p.soma.time } } : {}),
  }));
  return {
    arrays: artifact.arrays.map((a) => ({ rows: a.rows, cols: a.cols, conductance: a.conductance, ...(a.stuck ? { stuck: a.stuck } : {}) })),
    physics: physicsOf(p, options.time ?? 0),
    layers,
    threads: options.threads ?? Math.max(1, availableParallelism()),
    seed: (options.seed ?? 0) >>> 0,
    ...(options.kernel !== undefined ? { kernel: options.kernel } : {}),
  };
}

export function createSimChip(artifact: Artifact, options: SimOptions = {}): NativeChip {
  try {
    return new (native().Chip)(toNativeProgram(artifact, options));
  } catch (e) {
    throw new ArtifactError(`the simulator refused the artifact: ${(e as Error).message}`);
  }
}
