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

/** The pulse width scan and deploy use: ten times the shortest the board takes, within its range. */
export const programmingWidth = (p: PulseModel) => Math.min(p.width[1], p.width[0] * 10);

/** The partial RESET that brings a cell at g down to target. */
function resetTowards(profile: DeviceProfile, g: number, target: number): PulseChoice {
  const p = profile.pulse!;
  const gmin = profile.conductance.min;
  // G − Gmin shrinks by exp(−(|a| − threshold)/scale).
  const ratio = Math.max(1, (g - gmin) / Math.max(target - gmin, 1e-9));
  const a = p.threshold + p.scale * Math.log(ratio);
  return { amplitude: -Math.min(p.amplitude[1], Math.max(p.amplitude[0], a)), gate: p.gate[1] };
}

/**
 * The pulses (one or two, applied in order) that move a cell at conductance g towards target (siemens).
 * `gain` is what this cell's SET response has shown so far relative to the model (reached ÷ expected
 * level; 1 before any SET): a cell whose SET lands low gets a higher gate voltage next time. A target
 * below the lowest SET level is reached from above: SET to that level, then a partial RESET down.
 */
export function choosePulses(profile: DeviceProfile, g: number, target: number, gain = 1): PulseChoice[] {
  const p = profile.pulse!;
  const setAmplitude = Math.min(p.amplitude[1], Math.max(p.amplitude[0], 2));
  if (target <= g) return [resetTowards(profile, g, target)];
  const vg = Math.min(p.gate[1], Math.max(p.gate[0], (target / gain - p.offset) / p.slope));
  const set = { amplitude: setAmplitude, gate: vg };
  const reached = Math.max(g, gain * setLevel(p, vg));
  return reached > target ? [set, resetTowards(profile, reached, target)] : [set];
}
