/**
 * Pass: LayerModel + sample inputs → the mean power E[x²] of every input of every layer, from the
 * float network (no device effects). The remapper weights a weight's error by the power of its input:
 * a stuck cell on a pixel that is always dark costs nothing. At most `limit` samples are used.
 */
import { InputError } from '../../common/errors.js';
import type { LayerModel } from '../ir/layers.js';
import { activate } from '../../common/dendrite.js';

export { activate };

/**
 * The float network's input to every layer for the first `limit` samples: per layer a row-major
 * [samples × inFeatures] matrix. The shared forward pass of calibration and branch assignment.
 */
export function layerInputs(model: LayerModel, inputs: Float32Array, limit = 512): { samples: number; inputs: Float32Array[] } {
  const features = model.input.features;
  if (inputs.length === 0 || inputs.length % features !== 0) {
    throw new InputError(`calibration data holds ${inputs.length} values, not a whole number of samples of ${features} features`);
  }
  const n = Math.min(limit, inputs.length / features);
  const out = model.layers.map((l) => new Float32Array(n * l.inFeatures));
  for (let s = 0; s < n; s++) {
    let x = Float64Array.from(inputs.subarray(s * features, (s + 1) * features));
    model.layers.forEach((l, li) => {
      out[li]!.set(x, s * l.inFeatures);
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
  }
  return { samples: n, inputs: out };
}

/** The mean power E[x²] of every input of every layer over the calibration samples. */
export function calibrate(model: LayerModel, inputs: Float32Array, limit = 512): Float64Array[] {
  const { samples, inputs: per } = layerInputs(model, inputs, limit);
  return model.layers.map((l, li) => {
    const p = new Float64Array(l.inFeatures);
    const x = per[li]!;
    for (let s = 0; s < samples; s++) for (let i = 0; i < l.inFeatures; i++) p[i]! += x[s * l.inFeatures + i]! ** 2 / samples;
    return p;
  });
}
