/**
 * The pulse arithmetic a programmer needs: which pulse should move a cell from G to a target, from the
 * profile's pulse model (common/profile.ts `pulse`). A first guess only: program-and-verify reads back
 * and corrects, so device-to-device variation and noise are absorbed by the loop.
 */
import type { DeviceProfile } from '../../../common/profile.js';

export interface PulseChoice {
  /** Volts: > 0 SET, < 0 RESET. */
  amplitude: number;
  gate: number;
}

type PulseModel = NonNullable<DeviceProfile['pulse']>;

/** The conductance a SET with gate voltage vg reaches from below (mean, no variation). */
export const setLevel = (p: PulseModel, vg: number) => p.slope * Math.min(p.gate[1], Math.max(p.gate[0], vg)) + p.offset;

/**
 * The pulse that moves a cell at conductance g towards target (siemens). `gain` is what this cell's SET
 * response has shown so far relative to the model (reached ÷ expected level; 1 before any SET): a cell
 * whose SET lands low gets a higher gate voltage next time.
 */
export function choosePulse(profile: DeviceProfile, g: number, target: number, gain = 1): PulseChoice {
  const p = profile.pulse!;
  const gmin = profile.conductance.min;
  const setAmplitude = Math.min(p.amplitude[1], Math.max(p.amplitude[0], 2));
  if (target > g) {
    // SET only raises G to the level the gate voltage sets; below the lowest level, overshoot and come down.
    const vg = (target / gain - p.offset) / p.slope;
    return { amplitude: setAmplitude, gate: Math.min(p.gate[1], Math.max(p.gate[0], vg)) };
  }
  // Partial RESET: G − Gmin shrinks by exp(−(|a| − threshold)/scale).
  const above = Math.max(target - gmin, 1e-9);
  const ratio = Math.max(1, (g - gmin) / above);
  const a = p.threshold + p.scale * Math.log(ratio);
  return { amplitude: -Math.min(p.amplitude[1], Math.max(p.amplitude[0], a)), gate: p.gate[1] };
}
