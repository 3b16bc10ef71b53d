/**
 * Pass: LayerModel + DeviceProfile → MappedModel. Each weight becomes a differential pair inside the
 * profile's conductance window:
 *   G+ = Gmin + max(w, 0)·k,  G− = Gmin + max(−w, 0)·k,  so (G+ − G−) / k = w,
 * with k = (Gmax − Gmin) / max|w| per output column (or per layer), then each device is rounded to the
 * nearest of the profile's evenly spaced levels (none when levels = 0).
 */
import type { DeviceProfile } from '../../common/profile.js';
import type { LayerModel } from '../ir/layers.js';
import type { MappedLayer, MappedModel } from '../ir/placed.js';

export function quantiseConductance(g: number, profile: DeviceProfile): number {
  const { min, max, levels } = profile.conductance;
  const clamped = Math.min(max, Math.max(min, g));
  if (levels === 0) return clamped;
  const step = (max - min) / (levels - 1);
  return min + Math.round((clamped - min) / step) * step;
}

export function mapConductances(model: LayerModel, profile: DeviceProfile): MappedModel {
  const { min, max } = profile.conductance;
  const window = max - min;
  const layers: MappedLayer[] = model.layers.map((layer) => {
    const { inFeatures: n, outFeatures: m, weight } = layer;
    const absMax = new Float64Array(m);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < m; j++) absMax[j] = Math.max(absMax[j]!, Math.abs(weight[i * m + j]!));
    }
    if (profile.mapping.scale === 'layer') absMax.fill(absMax.reduce((a, b) => Math.max(a, b), 0));
    const gPerWeight = Float32Array.from(absMax, (a) => (a > 0 ? window / a : window));
    const gPos = new Float32Array(n * m);
    const gNeg = new Float32Array(n * m);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < m; j++) {
        const w = weight[i * m + j]!;
        const k = gPerWeight[j]!;
        gPos[i * m + j] = quantiseConductance(min + Math.max(w, 0) * k, profile);
        gNeg[i * m + j] = quantiseConductance(min + Math.max(-w, 0) * k, profile);
      }
    }
    return { ...layer, gPos, gNeg, gPerWeight };
  });
  return { ...model, profile, layers };
}
