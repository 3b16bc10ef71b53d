/**
 * What `dendra compile --finetune` puts in the training forward besides the dendrites (issue 11): the profile's
 * hardware in weight units, per layer (NativeTrainHardware), and the activity penalty a `sparsity` asks for.
 *
 *   DAC       the profile's dac.bits (each input row abs-max scaled and quantised, as the simulator does)
 *   read      read.relative of every weight (σ = relative·|W|: the per-device noise of docs/device-profile.md
 *             taken on the pair's net weight), read.sigma in weight units of the layer's largest weight
 *   ADC       sums clipped at adc.range × the largest branch column mass Σ_{i∈b}|W_ij| × the layer's typical input
 *             scale (the median per-sample abs-max of its inputs on the samples): the tile ADC's full scale,
 *             which the simulator applies to abs-max-normalised inputs, in the units of the raw sums. The engine
 *             clips whole branch sums where the simulator clips each tile's part: an approximation for branches
 *             taller than one array.
 *   sparsity  an L1 penalty on the hidden layers' soma outputs, soma = sparsity / (mean Σ|hidden soma outputs|
 *             per sample of the network as calibrated): at sparsity 1 the penalty starts at one nat, the size of
 *             the cross-entropy.
 */
import type { DeviceProfile } from '../../common/profile.js';
import type { NativeTrainHardware } from '../../native/index.js';
import type { LayerModel } from '../ir/layers.js';
import { engineForward, sampleRows } from './dendritic-forward.js';

export function finetuneHardware(model: LayerModel, profile: DeviceProfile, x: Float32Array): NativeTrainHardware[] {
  const drawn = sampleRows(x, model.input.features, 1000).x;
  const fwd = engineForward(model, null, drawn, { bypass: true });
  return model.layers.map((l, li) => {
    const inputs = fwd.layerInputs[li]!;
    const n = inputs.length / l.inFeatures;
    const scales = new Float64Array(n);
    for (let s = 0; s < n; s++) {
      let m = 0;
      for (let i = 0; i < l.inFeatures; i++) m = Math.max(m, Math.abs(inputs[s * l.inFeatures + i]!));
      scales[s] = m;
    }
    scales.sort();
    const typical = n > 0 ? scales[Math.floor(n / 2)]! : 1;
    const nb = l.dendrites?.count ?? 1;
    const mass = new Float64Array(nb * l.outFeatures);
    let wmax = 0;
    for (let i = 0; i < l.inFeatures; i++) {
      const b = l.dendrites ? l.dendrites.branchOf[i]! : 0;
      for (let j = 0; j < l.outFeatures; j++) {
        const w = Math.abs(l.weight[i * l.outFeatures + j]!);
        mass[b * l.outFeatures + j] += w;
        if (w > wmax) wmax = w;
      }
    }
    let maxMass = 0;
    for (const v of mass) maxMass = Math.max(maxMass, v);
    const clip = profile.adc.bits > 0 ? profile.adc.range * maxMass * typical : 0;
    const window = profile.conductance.max - profile.conductance.min;
    return {
      dacBits: profile.dac.bits,
      readRelative: profile.read.relative,
      readSigma: window > 0 ? (profile.read.sigma / window) * wmax : 0,
      ...(clip > 0 && Number.isFinite(clip) ? { adcClip: clip } : {}),
    };
  });
}

/** The soma penalty coefficient of a sparsity (see the top of this file). */
export function sparsityPenalty(model: LayerModel, device: NonNullable<DeviceProfile['dendrite']>, x: Float32Array, sparsity: number): number {
  if (!(sparsity > 0)) return 0;
  const drawn = sampleRows(x, model.input.features, 1000).x;
  const fwd = engineForward(model, device, drawn);
  // The engine's penalty leaves the last layer (the logits) alone: normalise by the hidden layers' somas.
  const hidden = fwd.somaSum.subarray(0, Math.max(0, fwd.somaSum.length - 1));
  const total = hidden.reduce((a, b) => a + b, 0) / Math.max(1, fwd.samples);
  return total > 0 && Number.isFinite(total) ? sparsity / total : 0;
}
