/**
 * The hidden physical state of an emulated memristor chip and its response to pulses, reads and
 * inference (the board emulator's "silicon"; emulator.ts puts the protocol around it).
 *
 * Per array (rows × cols of the profile), per cell:
 * - its true conductance G. As fabricated, every healthy cell starts uniform in the lower quarter of the
 *   window, [Gmin, Gmin + (Gmax − Gmin)/4]: a conductance is reached only by pulses and known only by reads;
 * - its device-to-device factor d ~ N(1, pulse.variation²) (floored at 0.1) on its SET response;
 * - whether it is stuck: a stuck cell never changes and reads as its stuck conductance.
 *
 * Pulses (profile.pulse, see common/profile.ts):
 * - SET (amplitude a > 0): G ← max(G, d·(slope·Vg + offset)) + N(0, noise²), Vg clipped to pulse.gate;
 * - RESET (a < 0): when |a| > threshold, G ← Gmin + (G − Gmin)·exp(−(|a| − threshold)/scale) + N(0, noise²);
 *   a RESET at or below the threshold does nothing (and adds no noise);
 * - then G is clamped to [0, 1.2·Gmax]. The pulse width (checked against pulse.width by the caller) and
 *   the SET amplitude (checked against pulse.amplitude) do not change the outcome.
 * Reads: G + N(0, (read.sigma + read.relative·G)²) per cell and read.
 * Inference: I_c = Σ_r V_r·G_rc + N(0, Σ_r V_r²·σ_rc²), the read noise of every device drawn per column
 * from the exact variance it implies (as the simulator does). No IR drop, no ADC: a board returns currents.
 *
 * Arrays are materialised on first use, each from its own seeded stream, so a chip of 400 arrays starts
 * at once and its state does not depend on the order arrays are touched.
 */
import { faultGrid, STUCK_NONE, type DefectMap, type FaultGrid } from '../../../common/defects.js';
import type { DeviceProfile } from '../../../common/profile.js';
import { Random } from '../../../common/random.js';
import { setLevel } from './pulses.js';

type PulseModel = NonNullable<DeviceProfile['pulse']>;

/** Fraction of the window, above Gmin, that as-fabricated cells are spread over. */
export const AS_FABRICATED_FRACTION = 0.25;
/** Conductances are clamped to [0, CLAMP_FRACTION·Gmax]. */
export const CLAMP_FRACTION = 1.2;

interface ArrayState {
  g: Float32Array;
  d: Float32Array;
  faults: FaultGrid;
}

/** Pulses already checked (in range, inside the array). */
export interface PulseBatch {
  row: Int32Array;
  col: Int32Array;
  amplitude: Float32Array;
  gate: Float32Array;
}

/** A seed for array a's own stream. */
function arraySeed(seed: number, a: number): number {
  return (Math.imul(seed >>> 0, 0x85ebca6b) ^ Math.imul(a + 1, 0xc2b2ae35)) >>> 0;
}

export class ChipPhysics {
  readonly rows: number;
  readonly cols: number;
  readonly count: number;
  readonly profile: DeviceProfile;
  readonly pulseModel: PulseModel;
  readonly defects: DefectMap;
  readonly #seed: number;
  readonly #arrays: (ArrayState | undefined)[];
  /** Noise of pulses and reads, in the order requests arrive. */
  readonly #noise: Random;

  constructor(profile: DeviceProfile, defects: DefectMap, seed: number) {
    if (profile.pulse === null) throw new Error(`device profile '${profile.name}' has no pulse model`);
    this.profile = profile;
    this.pulseModel = profile.pulse;
    this.rows = profile.array.rows!;
    this.cols = profile.array.cols!;
    this.count = defects.arrays.length;
    this.defects = defects;
    this.#seed = seed >>> 0;
    this.#arrays = new Array<ArrayState | undefined>(this.count);
    this.#noise = new Random((this.#seed ^ 0x6e6f6973) >>> 0);
  }

  #array(a: number): ArrayState {
    let s = this.#arrays[a];
    if (s) return s;
    const n = this.rows * this.cols;
    const rng = new Random(arraySeed(this.#seed, a));
    const { min, max } = this.profile.conductance;
    const faults = faultGrid(this.defects.arrays[a]!);
    const g = new Float32Array(n);
    const d = new Float32Array(n);
    const variation = this.pulseModel.variation;
    for (let i = 0; i < n; i++) {
      g[i] = min + AS_FABRICATED_FRACTION * (max - min) * rng.next();
      d[i] = Math.max(0.1, 1 + variation * rng.normal());
      if (faults.state[i] !== STUCK_NONE) g[i] = faults.conductance[i]!;
    }
    s = { g, d, faults };
    this.#arrays[a] = s;
    return s;
  }

  /** Applies checked pulses in order. */
  pulse(a: number, p: PulseBatch): void {
    const s = this.#array(a);
    const m = this.pulseModel;
    const gmin = this.profile.conductance.min;
    const top = CLAMP_FRACTION * this.profile.conductance.max;
    const noise = m.noise;
    const rng = this.#noise;
    const cols = this.cols;
    const { g, d } = s;
    const state = s.faults.state;
    for (let k = 0; k < p.row.length; k++) {
      const row = p.row[k]!;
      const col = p.col[k]!;
      const amp = p.amplitude[k]!;
      const first = row * cols + (col < 0 ? 0 : col);
      const last = col < 0 ? row * cols + cols : first + 1;
      if (amp > 0) {
        const level = setLevel(m, p.gate[k]!);
        for (let i = first; i < last; i++) {
          if (state[i] !== STUCK_NONE) continue;
          const v = Math.max(g[i]!, d[i]! * level) + (noise > 0 ? noise * rng.normal() : 0);
          g[i] = Math.min(top, Math.max(0, v));
        }
      } else {
        const over = -amp - m.threshold;
        if (!(over > 0)) continue;
        const keep = Math.exp(-over / m.scale);
        for (let i = first; i < last; i++) {
          if (state[i] !== STUCK_NONE) continue;
          const v = gmin + (g[i]! - gmin) * keep + (noise > 0 ? noise * rng.normal() : 0);
          g[i] = Math.min(top, Math.max(0, v));
        }
      }
    }
  }

  /** One noisy read of a region, row-major. */
  read(a: number, row: number, col: number, rows: number, cols: number): Float32Array {
    const s = this.#array(a);
    const { sigma, relative } = this.profile.read;
    const out = new Float32Array(rows * cols);
    const rng = this.#noise;
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const gi = s.g[(row + r) * this.cols + col + c]!;
        const sd = sigma + relative * gi;
        out[r * cols + c] = gi + (sd > 0 ? sd * rng.normal() : 0);
      }
    }
    return out;
  }

  /** Column currents [batch × cols.length] for voltages [batch × rows.length] on the given rows. */
  infer(a: number, rows: readonly number[], cols: readonly number[], voltages: Float32Array, batch: number): Float32Array {
    const s = this.#array(a);
    const { sigma, relative } = this.profile.read;
    const k = rows.length;
    const m = cols.length;
    const w = new Float64Array(k * m);
    const v2 = new Float64Array(k * m);
    let noisy = false;
    for (let p = 0; p < k; p++) {
      const base = rows[p]! * this.cols;
      for (let c = 0; c < m; c++) {
        const gi = s.g[base + cols[c]!]!;
        const sd = sigma + relative * gi;
        w[p * m + c] = gi;
        v2[p * m + c] = sd * sd;
        if (sd > 0) noisy = true;
      }
    }
    const out = new Float32Array(batch * m);
    const acc = new Float64Array(m);
    const vacc = new Float64Array(m);
    const rng = this.#noise;
    for (let b = 0; b < batch; b++) {
      acc.fill(0);
      vacc.fill(0);
      const vb = b * k;
      for (let p = 0; p < k; p++) {
        const v = voltages[vb + p]!;
        if (v === 0) continue;
        const base = p * m;
        if (noisy) {
          const vv = v * v;
          for (let c = 0; c < m; c++) {
            acc[c] += v * w[base + c]!;
            vacc[c] += vv * v2[base + c]!;
          }
        } else {
          for (let c = 0; c < m; c++) acc[c] += v * w[base + c]!;
        }
      }
      const ob = b * m;
      for (let c = 0; c < m; c++) out[ob + c] = acc[c]! + (vacc[c]! > 0 ? Math.sqrt(vacc[c]!) * rng.normal() : 0);
    }
    return out;
  }

  /** What array a really holds (a copy), row-major, siemens. */
  trueConductances(a: number): Float32Array {
    return this.#array(a).g.slice();
  }

  /** Device-to-device SET factors of array a (a copy). */
  setFactors(a: number): Float32Array {
    return this.#array(a).d.slice();
  }
}
