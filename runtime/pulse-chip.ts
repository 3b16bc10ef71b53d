/**
 * A chip whose cells change only by pulses, from a device profile and a defect map: the native PulseChip
 * (native/src/pulse_physics.h), shared by the board emulator (runtime/backends/device/emulator-physics.ts)
 * and the in-situ trainer's simulated chip (train/). One implementation of the physics for both.
 */
import { ProfileError } from '../common/errors.js';
import type { DefectMap } from '../common/defects.js';
import type { DeviceProfile } from '../common/profile.js';
import { native, type NativePulseChip, type NativePulseChipConfig } from '../native/index.js';

export type PulseModel = NonNullable<DeviceProfile['pulse']>;

/** The profile's pulse model, or a ProfileError naming the profile. */
export function pulseModelOf(profile: DeviceProfile): PulseModel {
  if (!profile.pulse) throw new ProfileError(`device profile '${profile.name}' has no pulse model (no "pulse" section): it cannot be programmed by pulses`);
  return profile.pulse;
}

export function pulseChipConfig(profile: DeviceProfile, defects: DefectMap, seed: number): NativePulseChipConfig {
  const p = pulseModelOf(profile);
  const rows = profile.array.rows;
  const cols = profile.array.cols;
  if (rows === null || cols === null) throw new ProfileError(`device profile '${profile.name}' has no fixed array size; a pulse-level chip needs array.rows and array.cols`);
  return {
    rows,
    cols,
    count: defects.arrays.length,
    gmin: profile.conductance.min,
    gmax: profile.conductance.max,
    readSigma: profile.read.sigma,
    readRelative: profile.read.relative,
    pulse: { slope: p.slope, offset: p.offset, gateLo: p.gate[0], gateHi: p.gate[1], threshold: p.threshold, scale: p.scale, noise: p.noise, variation: p.variation },
    seed: seed >>> 0,
    stuck: defects.arrays.map((a) => ({
      cells: Int32Array.from(a.faults, ([r, c]) => r * a.cols + c),
      conductance: Float32Array.from(a.faults, (f) => f[3]),
    })),
  };
}

/** A fresh chip: every array as fabricated, the defect map's cells stuck, all randomness from `seed`. */
export function createPulseChip(profile: DeviceProfile, defects: DefectMap, seed: number): NativePulseChip {
  return new (native().PulseChip)(pulseChipConfig(profile, defects, seed));
}
