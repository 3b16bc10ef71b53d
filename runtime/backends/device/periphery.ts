/**
 * The digital periphery on the host for the device backend: DAC before the crossbar, ADC after it, then
 * scaling, bias, activation and head. It mirrors native/src/periphery.cc (dacRow, makeAdc/adcInPlace,
 * finishRow, roundHalfAway) operation for operation in float32 (Math.fround after each step), so a board
 * that computes the ideal crossbar currents gives the simulator's outputs. Change both together.
 */
import type { Activation, Head } from '../../../compiler/ir/layers.js';

const f = Math.fround;
/** 0.49999997f: the float just below 0.5 (see roundHalfAway in periphery.h). */
const ALMOST_HALF = f(0.49999997);

/** Round half away from zero, as periphery.h's roundHalfAway (callers clamp first). */
export function roundHalfAway(x: number): number {
  return Math.trunc(f(x + (x < 0 ? -ALMOST_HALF : ALMOST_HALF))) + 0;
}

/**
 * DAC of one input row (bits > 0): s = max|x|; u = round(x / s · q) / q, q = 2^(bits−1) − 1, clamped to
 * [−1, 1]. Writes u (normalised, without the read voltage) and returns s; s = 0 gives u = 0, a row
 * holding ±Infinity or NaN gives NaN. With bits = 0: u = x and s = 1 (no quantisation, no scaling).
 */
export function dacRow(x: Float32Array, bits: number, u: Float32Array): number {
  const n = x.length;
  if (bits === 0) {
    u.set(x);
    return 1;
  }
  let s = 0;
  for (let i = 0; i < n; i++) {
    const a = Math.abs(x[i]!);
    if (!(a <= s)) s = a; // NaN wins, as it sorts above Infinity in periphery.cc's bit-pattern max
  }
  if (s === 0) {
    u.fill(0);
    return 0;
  }
  if (!Number.isFinite(s)) {
    u.fill(NaN);
    return NaN;
  }
  const q = (1 << (bits - 1)) - 1;
  const invQ = f(1 / q);
  for (let j = 0; j < n; j++) {
    const v0 = f(f(x[j]! / s) * q);
    let v = v0 > -q ? v0 : -q;
    v = v < q ? v : q;
    u[j] = f(roundHalfAway(v) * invQ) + (v0 - v0);
  }
  return s;
}

/** One tile's ADC, in the simulator's normalised units p = I / vRead (periphery.cc makeAdc). */
export interface Adc {
  toCode: number;
  fromCode: number;
  levels: number;
}

/** bits = 0: an ideal ADC (undefined). */
export function makeAdc(bits: number, fullScale: number, vRead: number): Adc | undefined {
  if (bits === 0) return undefined;
  const levels = (1 << (bits - 1)) - 1;
  const step = fullScale / levels;
  return { toCode: f(vRead / step), fromCode: f(step / vRead), levels };
}

/** Quantises one normalised tile output p = I / vRead: clamp(round(p · toCode), −L, L) · fromCode; NaN stays NaN. */
export function adc(a: Adc, p: number): number {
  const c0 = f(p * a.toCode);
  let code = c0 > -a.levels ? c0 : -a.levels;
  code = code < a.levels ? code : a.levels;
  return f(roundHalfAway(code) * a.fromCode) + (c0 - c0);
}

/**
 * Finishes one layer row in place (periphery.cc finishRow): y_j = acc_j · s · outScale_j + bias_j
 * (acc in current / vRead units), then the activation, then the head over the row.
 */
export function finishRow(y: Float32Array, s: number, outScale: Float32Array, bias: Float32Array, activation: Activation, head: Head): void {
  const n = y.length;
  for (let j = 0; j < n; j++) y[j] = f(f(f(y[j]! * s) * outScale[j]!) + bias[j]!);
  switch (activation.kind) {
    case 'none':
      break;
    case 'relu':
      for (let j = 0; j < n; j++) y[j] = y[j]! > 0 ? y[j]! : 0;
      break;
    case 'leakyrelu': {
      const alpha = f(activation.alpha);
      for (let j = 0; j < n; j++) y[j] = y[j]! < 0 ? alpha * y[j]! : y[j]!;
      break;
    }
    case 'sigmoid':
      for (let j = 0; j < n; j++) y[j] = 1 / (1 + Math.exp(-y[j]!));
      break;
    case 'tanh':
      for (let j = 0; j < n; j++) y[j] = Math.tanh(y[j]!);
      break;
    case 'clip': {
      const lo = f(Math.max(activation.min, -3.4e38));
      const hi = f(Math.min(activation.max, 3.4e38));
      for (let j = 0; j < n; j++) y[j] = Math.min(Math.max(y[j]!, lo), hi);
      break;
    }
  }
  if (head === 'none' || n === 0) return;
  let mx = y[0]!;
  for (let j = 1; j < n; j++) mx = Math.max(mx, y[j]!);
  let sum = 0;
  if (head === 'softmax') {
    for (let j = 0; j < n; j++) {
      y[j] = Math.exp(y[j]! - mx);
      sum += y[j]!;
    }
    const inv = f(1 / sum);
    for (let j = 0; j < n; j++) y[j] = y[j]! * inv;
  } else {
    for (let j = 0; j < n; j++) sum += Math.exp(f(y[j]! - mx));
    const logSum = f(Math.log(sum));
    for (let j = 0; j < n; j++) y[j] = f(y[j]! - mx) - logSum;
  }
}
