/**
 * The dendrite and soma devices of Li et al., Nat. Nanotechnol. 15, 776 (2020), as plain functions: the
 * one TypeScript statement of the model (docs/dendrites.md) that the native simulator mirrors
 * (native/src/dendrite.h) and calibration, fine-tuning and the tests use.
 *
 * A dendritic layer of B branches: every input i feeds branch b(i) (the same split for every neuron).
 * For one sample, neuron j and branch b:
 *
 *   z_bj = Σ_{i ∈ b} x_i · W_ij                      the branch's partial sum (a column segment's current)
 *   u    = z_bj / F                                  F: the layer's branch full scale (calibrated)
 *   y_bj = F · ε_bj · H(u)                           the dendrite device's output, ε its device-to-device factor
 *   x_j  = Σ_b y_bj + κ · bias_j                      κ: the soma threshold's scale (calibrated)
 *   out_j = soma(x_j)                                 the layer's own activation, or the paper's threshold soma
 *
 * H is the dendrite's normalised I–V: with a = V_applied / V_on (the voltage a full-scale branch signal
 * applies, over the voltage at which the device is fully ON) and v = a·min(|u|, 1) the device's normalised
 * voltage, at most vMax = maxVoltage/onVoltage (the device's rating: no signal drives it beyond; see maxVoltage),
 *
 *   H(u) = sign(u) · i(v) / a
 *   exponential       i(v) = v/R + (1 − 1/R)·(e^{αv} − 1)/(e^{α} − 1)   for v < 1,   α = 50·n/(1 − n)
 *   threshold-linear  i(v) = v/R                                          for v < threshold
 *   both              i(v) = v                                            above (the ohmic ON state)
 *
 * n is the paper's I–V nonlinearity (n → 0: a linear device), R the ON/OFF ratio. A rectifying dendrite
 * passes nothing for u < 0 (the paper's code: u = max(z, 0)/…). Without dendrites ("bypass", the same
 * network without dendrite devices) y_bj = z_bj and κ = 1: the soma sees Σ_i x_i W_ij + bias_j.
 */
import type { Activation } from './activation.js';

/** The dendrite device of a profile (DeviceProfile.dendrite). */
export interface DendriteDevice {
  /** 'exponential': the paper's I–V family; 'threshold-linear': OFF (ohmic at G_on/R) below a threshold, ON above. */
  kind: 'exponential' | 'threshold-linear';
  /** The paper's I–V nonlinearity n in [0, 1): α = 50·n/(1 − n). */
  nonlinearity: number;
  /** ON/OFF ratio R >= 1. */
  onOffRatio: number;
  /** Voltage (V) a full-scale branch signal applies across the device. */
  voltage: number;
  /** Voltage (V) at which the device is fully ON. */
  onVoltage: number;
  /**
   * The device's rated voltage (V): the applied voltage saturates there (no signal drives it further), so one
   * dendrite spends at most (maxVoltage/onVoltage)·i(maxVoltage/onVoltage)·onVoltage·onCurrent·time per inference.
   * Absent: no ceiling (a device fitted to a trained module's function, docs/dendritic-onnx.md).
   */
  maxVoltage?: number;
  /** threshold-linear: normalised voltage v (V / onVoltage) at which it switches ON, in (0, 1]. */
  threshold: number;
  /** true: negative branch signals pass nothing (the paper's code); false: the device conducts both ways. */
  rectify: boolean;
  /** Device-to-device variation: each dendrite's output carries a factor N(1, variation²) (clamped at 0). */
  variation: number;
  /** Current (A) through the device at onVoltage. */
  onCurrent: number;
  /** Integration time (s) of one inference at the dendrites and somas. */
  time: number;
}

/** The soma device of a profile (DeviceProfile.soma): only its energy; its function is the layer's. */
export interface SomaDevice {
  /** Voltage (V) applied across a soma. */
  voltage: number;
  /** Soma output current (A) at a soma output equal to the layer's somaFullScale. */
  onCurrent: number;
  /** Integration time (s) of one inference. */
  time: number;
}

/** What a soma computes: the layer's own activation, or the paper's threshold device. */
export type Soma =
  | { kind: 'activation' }
  /** out = scale · max(2·sigmoid(x/scale − theta) − 1, 0) */
  | { kind: 'threshold'; theta: number; scale: number };

/** maxVoltage / onVoltage: the normalised voltage the device saturates at (Infinity without a rating). */
export function maxRatio(d: DendriteDevice): number {
  return d.maxVoltage === undefined ? Infinity : d.maxVoltage / d.onVoltage;
}

export function alphaOf(nonlinearity: number): number {
  return (50 * nonlinearity) / (1 - nonlinearity);
}

/** The device's normalised current i(v) at normalised voltage v >= 0. */
export function deviceCurrent(d: DendriteDevice, v: number): number {
  if (d.kind === 'threshold-linear') return v >= d.threshold ? v : v / d.onOffRatio;
  if (v >= 1) return v;
  const alpha = alphaOf(d.nonlinearity);
  const phi = alpha < 1e-9 ? v : Math.expm1(alpha * v) / Math.expm1(alpha);
  return v / d.onOffRatio + (1 - 1 / d.onOffRatio) * phi;
}

/**
 * The normalised voltage from which a branch signal counts as ON: where the device's differential conductance
 * di/dv reaches half its ON-state conductance (di/dv = 1). Exponential: (1 − 1/R)·α·e^{αv}/(e^α − 1) + 1/R = ½,
 * v ≈ 0.57 for n = 0.1, R = 100; threshold-linear: its threshold; a device that never gets there: 1 (the ohmic
 * ON state). A plain resistor (linear, R = 1) is ON everywhere; a 1:k resistor (threshold-linear, never past its
 * threshold) never. native/src/dendrite.cc mirrors it (Constants.onAt).
 */
export function onPoint(d: DendriteDevice): number {
  if (d.kind === 'threshold-linear') return d.threshold;
  const invR = 1 / d.onOffRatio;
  const alpha = alphaOf(d.nonlinearity);
  if (alpha < 1e-9) return 0; // i(v) = v: the ON-state conductance everywhere
  const slope = 0.5 - invR;
  if (slope <= 0) return 0;
  return Math.min(1, Math.max(0, Math.log((slope * Math.expm1(alpha)) / ((1 - invR) * alpha)) / alpha));
}

/** The normalised transfer H(u) of a dendrite (see the top of this file). */
export function dendriteTransfer(d: DendriteDevice, u: number): number {
  if (u < 0 && d.rectify) return 0;
  const a = d.voltage / d.onVoltage;
  const v = Math.min(a * Math.abs(u), maxRatio(d)); // the applied voltage saturates at the rating
  const h = deviceCurrent(d, v) / a;
  return u < 0 ? -h : h;
}

/**
 * The dendrite's electrical energy factor for a normalised signal u: V·I in units of onVoltage·onCurrent,
 * (a|u|)·i(a|u|) (0 for a rectified negative signal). Times onVoltage·onCurrent·time and the device's
 * factor ε it is the joules one dendrite spends on one inference.
 */
export function dendritePower(d: DendriteDevice, u: number): number {
  if (u < 0 && d.rectify) return 0;
  const v = Math.min((d.voltage / d.onVoltage) * Math.abs(u), maxRatio(d));
  return v * deviceCurrent(d, v);
}

/** A layer's activation of one value. */
export function activate(a: Activation, y: number): number {
  switch (a.kind) {
    case 'none': return y;
    case 'relu': return y > 0 ? y : 0;
    case 'leakyrelu': return y > 0 ? y : a.alpha * y;
    case 'sigmoid': return 1 / (1 + Math.exp(-y));
    case 'tanh': return Math.tanh(y);
    case 'clip': return Math.min(a.max, Math.max(a.min, y));
  }
}

/** The soma's output for input x. */
export function somaOutput(soma: Soma, activation: Activation, x: number): number {
  if (soma.kind === 'threshold') {
    const s = 2 / (1 + Math.exp(-(x / soma.scale - soma.theta))) - 1;
    return s > 0 ? soma.scale * s : 0;
  }
  return activate(activation, x);
}
