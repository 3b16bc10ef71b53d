/**
 * The hidden physical state of an emulated memristor chip (the board emulator's "silicon"; emulator.ts puts
 * the protocol around it): the native pulse-level chip of runtime/pulse-chip.ts, the same physics the in-situ
 * trainer's simulated chip uses (native/src/pulse_physics.h documents it):
 * - as fabricated, healthy cells uniform in the lower quarter of the window; stuck cells at their conductance;
 * - SET: G ← max(G, d·(slope·Vg + offset)) + N(0, noise²), d ~ N(1, variation²) per cell, Vg clipped;
 * - RESET above the threshold: G ← Gmin + (G − Gmin)·exp(−(|a| − threshold)/scale) + N(0, noise²);
 * - G clamped to [0, 1.2·Gmax]; reads and inference with read noise σ = read.sigma + read.relative·G.
 * No IR drop, no ADC: a board returns currents.
 */
import type { DefectMap } from '../../../common/defects.js';
import type { DeviceProfile } from '../../../common/profile.js';
import type { NativePulseChip } from '../../../native/index.js';
import { createPulseChip, pulseModelOf, type PulseModel } from '../../pulse-chip.js';

/** Fraction of the window, above Gmin, that as-fabricated cells are spread over. */
export const AS_FABRICATED_FRACTION = 0.25;
/** Conductances are clamped to [0, CLAMP_FRACTION·Gmax]. */
export const CLAMP_FRACTION = 1.2;

/** Pulses already checked (in range, inside the array). */
export interface PulseBatch {
  row: Int32Array;
  col: Int32Array;
  amplitude: Float32Array;
  gate: Float32Array;
}

export class ChipPhysics {
  readonly rows: number;
  readonly cols: number;
  readonly count: number;
  readonly profile: DeviceProfile;
  readonly pulseModel: PulseModel;
  readonly defects: DefectMap;
  readonly chip: NativePulseChip;

  constructor(profile: DeviceProfile, defects: DefectMap, seed: number) {
    this.pulseModel = pulseModelOf(profile);
    this.profile = profile;
    this.rows = profile.array.rows!;
    this.cols = profile.array.cols!;
    this.count = defects.arrays.length;
    this.defects = defects;
    this.chip = createPulseChip(profile, defects, seed);
  }

  /** Applies checked pulses in order (width: seconds, for the energy counters). */
  pulse(a: number, p: PulseBatch, width = this.pulseModel.width[0]): void {
    this.chip.pulse(a, p.row, p.col, p.amplitude, p.gate, width);
  }

  /** One noisy read of a region, row-major. */
  read(a: number, row: number, col: number, rows: number, cols: number): Float32Array {
    return this.chip.read(a, row, col, rows, cols);
  }

  /** Column currents [batch × cols.length] for voltages [batch × rows.length] on the given rows. */
  infer(a: number, rows: readonly number[], cols: readonly number[], voltages: Float32Array, batch: number): Float32Array {
    return this.chip.infer(a, Int32Array.from(rows), Int32Array.from(cols), voltages, batch);
  }

  /**
   * InferTiles: the column currents of several tiles, each [batch × cols.length], one after another, for their
   * voltages [batch × rows.length] one after another; computed natively on up to `threads` threads.
   */
  inferTiles(tiles: readonly { array: number; rows: readonly number[]; cols: readonly number[] }[], voltages: Float32Array, batch: number, threads = 1): Float32Array {
    return this.chip.inferTiles(
      Int32Array.from(tiles, (t) => t.array),
      Int32Array.from(tiles, (t) => t.rows.length),
      Int32Array.from(tiles.flatMap((t) => t.rows)),
      Int32Array.from(tiles, (t) => t.cols.length),
      Int32Array.from(tiles.flatMap((t) => t.cols)),
      voltages,
      batch,
      threads,
    );
  }

  /** What array a really holds (a copy), row-major, siemens. */
  trueConductances(a: number): Float32Array {
    return this.chip.conductances(a);
  }

  /** Device-to-device SET factors of array a (a copy). */
  setFactors(a: number): Float32Array {
    return this.chip.setFactors(a);
  }
}
