/**
 * Pass: LayerModel + sample inputs → the mean power E[x²] of every input of every layer, from the
 * float network (no device effects). The remapper weights a weight's error by the power of its input:
 * a stuck cell on a pixel that is always dark costs nothing. At most `limit` samples are used.
 */
import { InputError } from '../../common/errors.js';
import type { Activation, LayerModel } from '../ir/layers.js';

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

export function calibrate(model: LayerModel, inputs: Float32Array, limit = 512): Float64Array[] {
  const features = model.input.features;
  if (inputs.length === 0 || inputs.length % features !== 0) {
    throw new InputError(`calibration data holds ${inputs.length} values, not a whole number of samples of ${features} features`);
  }
  const n = Math.min(limit, inputs.length / features);
  const power = model.layers.map((l) => new Float64Array(l.inFeatures));
  let x = new Float64Array(features);
  for (let s = 0; s < n; s++) {
    for (let i = 0; i < features; i++) x[i] = inputs[s * features + i]!;
    model.layers.forEach((l, li) => {
      const p = power[li]!;
      for (let i = 0; i < l.inFeatures; i++) p[i]! += x[i]! * x[i]! / n;
      const y = Float64Array.from(l.bias);
      for (let i = 0; i < l.inFeatures; i++) {
        const xi = x[i]!;
        if (xi === 0) continue;
        const row = i * l.outFeatures;
        for (let j = 0; j < l.outFeatures; j++) y[j]! += xi * l.weight[row + j]!;
      }
      for (let j = 0; j < y.length; j++) y[j] = activate(l.activation, y[j]!);
      x = y;
    });
    x = new Float64Array(features);
  }
  return power;
}
