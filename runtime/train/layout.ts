/**
 * Where an in-situ trained network lives on the chip, and how a weight maps to gate voltages.
 *
 * The paper's scheme (Li et al. 2018, memNN code): each weight is a differential pair on two rows of one
 * column, W = (G+ − G−) / gPerWeight; a device's conductance is set by the gate voltage of a SET pulse,
 * G = f(Vg) = slope·Vg + offset, Vg clipped to the profile's gate range, so every trained device sits in the
 * SET window [f(Vg_lo), f(Vg_hi)] (189–277 µS on hfo2-1t1r) and W spans ±(f(Vg_hi) − f(Vg_lo)) / gPerWeight.
 *
 * - `random` init: gPerWeight = 100 µS for every column (the paper's W = ΔG / 100 µS), all devices SET at
 *   Vg0 = 1.0 V after a full RESET (W ≈ 0 plus the pulse noise).
 * - `model` init: the ONNX weights mapped into the SET window per column, G± = Gc ± w·gPerWeight/2 with Gc the
 *   window's middle and gPerWeight = window / max|w| of the column, then programmed with program-and-verify.
 *
 * The tiles are the compiler's (compiler/passes/tile.ts: pairs on rows, one array per tile, naive placement:
 * in-situ training never learns where the stuck devices are). Each tile's ADC full scale is adc.range times
 * the largest differential column current the SET window allows (k inputs × window × vRead).
 */
import type { DeviceProfile } from '../../common/profile.js';
import { InputError } from '../../common/errors.js';
import type { LayerModel } from '../../compiler/ir/layers.js';
import type { MappedModel, PlacedModel } from '../../compiler/ir/placed.js';
import { tile } from '../../compiler/passes/tile.js';
import { pulseModelOf } from '../pulse-chip.js';

/** The paper's conductance per unit weight: W = (G+ − G−) / 100 µS. */
export const PAPER_G_PER_WEIGHT = 100e-6;
/** The paper's initial gate voltage after the full RESET (memNN code: Vg0 = 1.0 V). */
export const INITIAL_GATE = 1.0;

export type InitMode = 'random' | 'model';

/** The SET window of the profile: the conductances a SET reaches at the ends of the gate range (no variation). */
export function setWindow(profile: DeviceProfile): { lo: number; hi: number } {
  const p = pulseModelOf(profile);
  return { lo: p.slope * p.gate[0] + p.offset, hi: p.slope * p.gate[1] + p.offset };
}

/** The gate voltage whose SET reaches g (clipped to the gate range). */
export function gateFor(profile: DeviceProfile, g: number): number {
  const p = pulseModelOf(profile);
  return Math.min(p.gate[1], Math.max(p.gate[0], (g - p.offset) / p.slope));
}

/**
 * The placed network the trainer starts from: its layers (biases, activations), tiles and per-column
 * gPerWeight, and the target conductances (model init) or the initial SET level everywhere (random init).
 */
export function inSituLayout(model: LayerModel, profile: DeviceProfile, init: InitMode): PlacedModel {
  if (profile.array.differential !== 'rows') {
    throw new InputError(`in-situ training drives the differential pairs of '${profile.name}' as the paper does (G+ and G− on two rows of one column); this profile places pairs on ${profile.array.differential}`);
  }
  if (model.layers.some((l) => l.dendrites)) throw new InputError('in-situ training takes plain dense layers; this model has dendritic layers');
  const p = pulseModelOf(profile);
  const win = setWindow(profile);
  const span = win.hi - win.lo;
  const center = (win.lo + win.hi) / 2;
  const g0 = p.slope * INITIAL_GATE + p.offset;
  const mapped: MappedModel = {
    ...model,
    profile,
    layers: model.layers.map((layer) => {
      const { inFeatures: n, outFeatures: m, weight } = layer;
      const gPerWeight = new Float32Array(m);
      const gPos = new Float32Array(n * m);
      const gNeg = new Float32Array(n * m);
      if (init === 'random') {
        gPerWeight.fill(PAPER_G_PER_WEIGHT);
        gPos.fill(g0);
        gNeg.fill(g0);
      } else {
        for (let j = 0; j < m; j++) {
          let a = 0;
          for (let i = 0; i < n; i++) a = Math.max(a, Math.abs(weight[i * m + j]!));
          gPerWeight[j] = a > 0 ? span / a : PAPER_G_PER_WEIGHT;
        }
        for (let i = 0; i < n; i++) {
          for (let j = 0; j < m; j++) {
            const d = (weight[i * m + j]! * gPerWeight[j]!) / 2;
            gPos[i * m + j] = center + d;
            gNeg[i * m + j] = center - d;
          }
        }
      }
      return {
        ...layer,
        weight: new Float32Array(0),
        bias: init === 'random' ? new Float32Array(m) : Float32Array.from(layer.bias),
        gPos,
        gNeg,
        gPerWeight,
      };
    }),
  };
  const placed = tile(mapped);
  for (const l of placed.layers) {
    for (const t of l.tiles) t.adcFullScale = profile.adc.range * profile.read.voltage * t.inputIndex.length * span;
  }
  return placed;
}

/** Every device of a placed network: array, cell, layer, weight index (i·out + j) and sign (+1 G+, −1 G−). */
export interface DeviceIndex {
  /** Per artifact array: the cells the network uses, and for each the layer, weight and sign. */
  arrays: { cells: Int32Array; layer: Int32Array; weight: Int32Array; sign: Int8Array }[];
}

export function deviceIndex(placed: PlacedModel): DeviceIndex {
  const lists = placed.arrays.map(() => ({ cells: [] as number[], layer: [] as number[], weight: [] as number[], sign: [] as number[] }));
  placed.layers.forEach((l, li) => {
    for (const t of l.tiles) {
      const cols = placed.arrays[t.array]!.cols;
      const out = lists[t.array]!;
      for (let r = 0; r < t.inputIndex.length; r++) {
        for (let q = 0; q < t.outputIndex.length; q++) {
          const w = t.inputIndex[r]! * l.outFeatures + t.outputIndex[q]!;
          out.cells.push(t.rowPos[r]! * cols + t.colPos[q]!, t.rowNeg[r]! * cols + t.colNeg[q]!);
          out.layer.push(li, li);
          out.weight.push(w, w);
          out.sign.push(1, -1);
        }
      }
    }
  });
  return {
    arrays: lists.map((a) => ({ cells: Int32Array.from(a.cells), layer: Int32Array.from(a.layer), weight: Int32Array.from(a.weight), sign: Int8Array.from(a.sign) })),
  };
}

/** The weights [in][out] the conductances g (per artifact array) hold: W = (G+ − G−) / gPerWeight. */
export function weightsFrom(placed: PlacedModel, index: DeviceIndex, g: Float32Array[]): Float32Array[] {
  const w = placed.layers.map((l) => new Float32Array(l.inFeatures * l.outFeatures));
  index.arrays.forEach((a, ai) => {
    const ga = g[ai]!;
    for (let d = 0; d < a.cells.length; d++) {
      const li = a.layer[d]!;
      const wi = a.weight[d]!;
      const l = placed.layers[li]!;
      w[li]![wi] += (a.sign[d]! * ga[a.cells[d]!]!) / l.gPerWeight[wi % l.outFeatures]!;
    }
  });
  return w;
}
