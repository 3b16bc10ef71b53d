/**
 * The runtime's energy model (docs/energy.md): what one inference of an artifact costs on its chip.
 *
 *   crossbar  Σ over samples, layers, tiles and driven physical rows ρ of V_ρ² · Σ_c G_ρc · t_read
 *             (the only data-dependent term: the simulator sums V_ρ² · Σ_c G_ρc exactly in its forward pass;
 *             the device backend from the voltages it applies and the artifact's target conductances)
 *   DAC       one conversion per driven physical row per tile per inference
 *   ADC       one conversion per read output column per tile per inference (column pairs are subtracted
 *             before the ADC: one conversion)
 *   digital   per layer: partial-sum additions, scale, bias and activation of every output, the DAC's
 *             per-sample abs-max scaling; after the last layer the head
 *   dendrite  Σ over dendrites of V·I·t (profile.dendrite; data-dependent, summed by the simulator)
 *   soma      Σ over somas of V_soma · I_soma · t, I_soma = onCurrent · |output| / somaFullScale (profile.soma; the
 *             power Li et al. 2020 integrate; data-dependent, summed by the simulator)
 *
 * Everything but the crossbar term is a count read off the artifact's tiles, times a constant of
 * `profile.energy`.
 */
import type { Artifact } from '../artifact/format.js';
import type { PlacedTile } from '../compiler/ir/placed.js';
import type { Head } from '../compiler/ir/layers.js';

/** Energy of one inference by part, in joules. */
export interface EnergyBreakdown {
  /** Crossbar read: V² · G · t_read over every cell of every driven row. */
  crossbarJ: number;
  /** DAC conversions. */
  dacJ: number;
  /** ADC conversions. */
  adcJ: number;
  /** Digital periphery operations. */
  digitalJ: number;
  /** Dendrite devices (0 without dendrites). */
  dendriteJ: number;
  /** Soma devices (0 when the profile has none). */
  somaJ: number;
}

/** Per-inference averages over `samples` inferences. */
export interface EnergyReport {
  /** The sum of the breakdown, joules per inference. */
  energyPerInferenceJ: number;
  breakdown: EnergyBreakdown;
  /** Inferences the averages are over. */
  samples: number;
}

/** The converter and operation counts of one layer, per inference. */
export interface LayerEnergyCounts {
  /** Distinct physical rows each tile drives, summed over the tiles (both rows of a pair on rows). */
  dacConversions: number;
  /** Output columns (or column pairs) each tile reads, summed over the tiles. */
  adcConversions: number;
  /** Σ over outputs of (tiles contributing to it − 1). */
  partialSumAdds: number;
  /** Scale and bias of every output, and its activation unless the activation is `none`. */
  outputOps: number;
  /** The DAC's per-sample abs-max scaling (a comparison and a division per input) when the DAC quantises; else 0. */
  dacScaleOps: number;
  /** The digital head after the last layer (0 on the other layers). */
  headOps: number;
}

export interface EnergyCounts {
  layers: LayerEnergyCounts[];
  /** Totals per inference. */
  dacConversions: number;
  adcConversions: number;
  digitalOps: number;
}

/** Physical rows a tile drives: rowPos[r] with +v and rowNeg[r] with −v (the same row when pairs sit on columns), each once. */
export function drivenRows(tile: Pick<PlacedTile, 'rowPos' | 'rowNeg'>): number {
  const rows = new Set<number>();
  for (let r = 0; r < tile.rowPos.length; r++) {
    rows.add(tile.rowPos[r]!);
    rows.add(tile.rowNeg[r]!);
  }
  return rows.size;
}

/** Operations of the digital head over n outputs: max, subtract, exp, sum, divide (softmax); one more log (logsoftmax). */
export function headOps(head: Head, n: number): number {
  switch (head) {
    case 'none': return 0;
    case 'softmax': return 5 * n;
    case 'logsoftmax': return 5 * n + 1;
  }
}

/** The per-inference counts of an artifact, read off its tiles. */
export function energyCounts(artifact: Artifact): EnergyCounts {
  const dacBits = artifact.profile.dac.bits;
  const last = artifact.layers.length - 1;
  const layers = artifact.layers.map((layer, li): LayerEnergyCounts => {
    let dac = 0;
    let adc = 0;
    const cover = new Int32Array(layer.outFeatures);
    for (const t of layer.tiles) {
      dac += drivenRows(t);
      adc += t.outputIndex.length;
      for (const j of t.outputIndex) cover[j]!++;
    }
    let partialSumAdds = 0;
    for (const c of cover) partialSumAdds += Math.max(0, c - 1);
    return {
      dacConversions: dac,
      adcConversions: adc,
      partialSumAdds,
      outputOps: layer.outFeatures * (layer.activation.kind === 'none' ? 2 : 3),
      dacScaleOps: dacBits > 0 ? 2 * layer.inFeatures : 0,
      headOps: li === last ? headOps(artifact.head, layer.outFeatures) : 0,
    };
  });
  const sum = (f: (l: LayerEnergyCounts) => number) => layers.reduce((s, l) => s + f(l), 0);
  return {
    layers,
    dacConversions: sum((l) => l.dacConversions),
    adcConversions: sum((l) => l.adcConversions),
    digitalOps: sum((l) => l.partialSumAdds + l.outputOps + l.dacScaleOps + l.headOps),
  };
}

/** Σ_c G of every row of a row-major rows × cols conductance matrix (S), in float64. */
export function rowSums(conductance: Float32Array, rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let c = 0; c < cols; c++) s += conductance[r * cols + c]!;
    out[r] = s;
  }
  return out;
}

/**
 * The energy of `samples` inferences whose crossbar read power summed over the samples is
 * `crossbarPower` watts, as per-inference averages.
 */
export function energyReport(artifact: Artifact, counts: EnergyCounts, run: RunEnergy, samples: number): EnergyReport {
  const e = artifact.profile.energy;
  const per = (x: number) => (samples > 0 ? x / samples : 0);
  const breakdown: EnergyBreakdown = {
    crossbarJ: per(run.crossbarPower * e.readTime),
    dacJ: counts.dacConversions * e.dacConversion,
    adcJ: counts.adcConversions * e.adcConversion,
    digitalJ: counts.digitalOps * e.digitalOp,
    dendriteJ: per(run.dendriteJ),
    somaJ: per(run.somaJ),
  };
  return {
    energyPerInferenceJ: breakdown.crossbarJ + breakdown.dacJ + breakdown.adcJ + breakdown.digitalJ + breakdown.dendriteJ + breakdown.somaJ,
    breakdown,
    samples,
  };
}

/** The data-dependent energy of a run, summed over its samples: crossbar read power (W), dendrite and soma energy (J). */
export interface RunEnergy {
  crossbarPower: number;
  dendriteJ: number;
  somaJ: number;
}

/** Keeps a session's crossbar power: of its last run and over all its runs. */
export class EnergyMeter {
  readonly counts: EnergyCounts;
  readonly #artifact: Artifact;
  #last = { run: { crossbarPower: 0, dendriteJ: 0, somaJ: 0 } as RunEnergy, samples: 0 };
  #all = { run: { crossbarPower: 0, dendriteJ: 0, somaJ: 0 } as RunEnergy, samples: 0 };

  constructor(artifact: Artifact) {
    this.#artifact = artifact;
    this.counts = energyCounts(artifact);
  }

  /** One run of `samples` inferences; `run` summed over them (a number: the crossbar read power alone, in W). */
  record(run: RunEnergy | number, samples: number): void {
    const r = typeof run === 'number' ? { crossbarPower: run, dendriteJ: 0, somaJ: 0 } : run;
    const a = this.#all.run;
    this.#last = { run: r, samples };
    this.#all = { run: { crossbarPower: a.crossbarPower + r.crossbarPower, dendriteJ: a.dendriteJ + r.dendriteJ, somaJ: a.somaJ + r.somaJ }, samples: this.#all.samples + samples };
  }

  /** Per-inference averages of the last run, or of every run so far; undefined before the first run. */
  report(scope: 'last' | 'all' = 'last'): EnergyReport | undefined {
    const r = scope === 'all' ? this.#all : this.#last;
    return r.samples > 0 ? energyReport(this.#artifact, this.counts, r.run, r.samples) : undefined;
  }
}

/** An energy in joules as a short figure with an SI prefix: "12.3 nJ". */
export function formatJoules(j: number): string {
  if (!Number.isFinite(j)) return `${j} J`;
  if (j === 0) return '0 J';
  const units: [number, string][] = [[1, 'J'], [1e-3, 'mJ'], [1e-6, 'µJ'], [1e-9, 'nJ'], [1e-12, 'pJ'], [1e-15, 'fJ']];
  const [scale, unit] = units.find(([s]) => Math.abs(j) >= s) ?? units[units.length - 1]!;
  const v = j / scale;
  return `${v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)} ${unit}`;
}
