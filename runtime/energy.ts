/**
 * The runtime's energy model (docs/energy.md): what one inference of an artifact costs on its chip.
 *
 *   crossbar  Σ over samples, layers, tiles and driven physical rows ρ of V_ρ² · Σ_c G_ρc · t_read
 *             (data-dependent: the simulator sums V_ρ² · Σ_c G_ρc exactly in its forward pass; the device
 *             backend from the voltages it applies and the artifact's target conductances)
 *   DAC       one conversion per driven physical row per tile; rows whose input is zero are not driven
 *             (event-driven rows, counted by the simulator). Periphery 'adc': every layer; 'analog': the first
 *   ADC       'adc': one per read output column per tile (column pairs subtracted before it), one per soma
 *             output on a dendritic layer (its column segments feed the dendrites); 'analog': one per output
 *             of the last layer
 *   TIA       'analog' on a chip without soma devices: one transimpedance stage with analog activation per
 *             output of every layer (after the dendrites on a dendritic layer; with soma devices the soma is
 *             that stage: its energy is the soma term)
 *   digital   'adc': per layer partial-sum additions (none on a dendritic layer: its segments add as currents),
 *             scale, bias and activation of every output, the DAC's per-sample scaling; 'analog': the first
 *             layer's DAC scaling and the last layer's outputs; after the last layer the head
 *   dendrite  Σ over dendrites of V·I·t (profile.dendrite; data-dependent, summed by the simulator)
 *   soma      Σ over somas of V_soma · I_soma · t, I_soma = onCurrent · min(|output| / somaFullScale, 1)
 *             (profile.soma; the power Li et al. 2020 integrate; data-dependent, summed by the simulator)
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
  /** Transimpedance stages with analog activation (periphery 'analog' without soma devices; else 0). */
  tiaJ: number;
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
  /** Event counts per inference (the simulator's; absent on the device backend). */
  events?: EnergyEvents;
}

/** What the devices did, per inference (docs/energy.md). */
export interface EnergyEvents {
  /** Physical rows driven (non-zero input) per inference, every layer, and the rows that could have been. */
  rowsDriven: number;
  rowsPossible: number;
  /** Of rowsDriven, the first layer's (the rows the input DACs convert on an analog periphery). */
  inputRowsDriven: number;
  /** 1 − rowsDriven / rowsPossible: the share of row drives event-driven rows save. */
  sparsity: number;
  /** Fraction of the non-zero dendrite branch signals in the device's ON region (null without dendrites). */
  signalsOn: number | null;
  /** Fraction of soma outputs above 1 % of their full scale (null without soma devices). */
  activeSomas: number | null;
}

/** The converter and operation counts of one layer, per inference. */
export interface LayerEnergyCounts {
  /** Distinct physical rows each tile drives, summed over the tiles (both rows of a pair on rows): every row driven. */
  rows: number;
  /** DAC conversions with every row driven (rows on the layers the periphery converts, else 0). */
  dacConversions: number;
  /** Transimpedance stages (periphery 'analog' without soma devices: one per output; else 0). */
  tiaConversions: number;
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
  /** Totals per inference (DAC conversions with every row driven). */
  dacConversions: number;
  adcConversions: number;
  tiaConversions: number;
  digitalOps: number;
  /** Physical rows of every layer with every row driven. */
  rows: number;
  periphery: 'adc' | 'analog';
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

/** The per-inference counts of an artifact, read off its tiles and its profile's periphery. */
export function energyCounts(artifact: Artifact): EnergyCounts {
  const dacBits = artifact.profile.dac.bits;
  const periphery = artifact.profile.periphery ?? 'adc';
  const analog = periphery === 'analog';
  const somas = !!artifact.profile.soma;
  const last = artifact.layers.length - 1;
  const layers = artifact.layers.map((layer, li): LayerEnergyCounts => {
    let rows = 0;
    let columns = 0;
    const cover = new Int32Array(layer.outFeatures);
    for (const t of layer.tiles) {
      rows += drivenRows(t);
      columns += t.outputIndex.length;
      for (const j of t.outputIndex) cover[j]!++;
    }
    let partialSumAdds = 0;
    for (const c of cover) partialSumAdds += Math.max(0, c - 1);
    const dendritic = !!layer.dendrites;
    const converted = !analog || li === 0; // rows a DAC drives
    const digitalOut = !analog || li === last; // outputs the digital periphery sees
    return {
      rows,
      dacConversions: converted ? rows : 0,
      adcConversions: analog ? (li === last ? layer.outFeatures : 0) : dendritic ? layer.outFeatures : columns,
      tiaConversions: analog && !somas ? layer.outFeatures : 0,
      partialSumAdds: analog || dendritic ? 0 : partialSumAdds,
      outputOps: digitalOut ? layer.outFeatures * (layer.activation.kind === 'none' || li === last && analog ? 2 : 3) : 0,
      dacScaleOps: dacBits > 0 && converted ? 2 * layer.inFeatures : 0,
      headOps: li === last ? headOps(artifact.head, layer.outFeatures) : 0,
    };
  });
  const sum = (f: (l: LayerEnergyCounts) => number) => layers.reduce((s, l) => s + f(l), 0);
  return {
    layers,
    dacConversions: sum((l) => l.dacConversions),
    adcConversions: sum((l) => l.adcConversions),
    tiaConversions: sum((l) => l.tiaConversions),
    digitalOps: sum((l) => l.partialSumAdds + l.outputOps + l.dacScaleOps + l.headOps),
    rows: sum((l) => l.rows),
    periphery,
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
 * The energy of `samples` inferences whose data-dependent terms, summed over the samples, are `run`, as
 * per-inference averages. Without event counts (the device backend) every row counts as driven.
 */
export function energyReport(artifact: Artifact, counts: EnergyCounts, run: RunEnergy, samples: number): EnergyReport {
  const e = artifact.profile.energy;
  const per = (x: number) => (samples > 0 ? x / samples : 0);
  const analog = counts.periphery === 'analog';
  const events = run.rowEvents !== undefined && run.inputRowEvents !== undefined;
  const dacConversions = events ? per(analog ? run.inputRowEvents! : run.rowEvents!) : counts.dacConversions;
  const breakdown: EnergyBreakdown = {
    crossbarJ: per(run.crossbarPower * e.readTime),
    dacJ: dacConversions * e.dacConversion,
    adcJ: counts.adcConversions * e.adcConversion,
    tiaJ: counts.tiaConversions * (e.tiaConversion ?? 0),
    digitalJ: counts.digitalOps * e.digitalOp,
    dendriteJ: per(run.dendriteJ),
    somaJ: per(run.somaJ),
  };
  const report: EnergyReport = {
    energyPerInferenceJ: breakdown.crossbarJ + breakdown.dacJ + breakdown.adcJ + breakdown.tiaJ + breakdown.digitalJ + breakdown.dendriteJ + breakdown.somaJ,
    breakdown,
    samples,
  };
  if (events) {
    const driven = per(run.rowEvents!);
    report.events = {
      rowsDriven: driven,
      rowsPossible: counts.rows,
      inputRowsDriven: per(run.inputRowEvents!),
      sparsity: counts.rows > 0 ? 1 - driven / counts.rows : 0,
      signalsOn: run.signals ? run.signalsOn! / run.signals : null,
      activeSomas: run.somas ? run.somasActive! / run.somas : null,
    };
  }
  return report;
}

/**
 * The data-dependent part of a run, summed over its samples: crossbar read power (W), dendrite and soma energy
 * (J), and the simulator's event counts (absent from the device backend).
 */
export interface RunEnergy {
  crossbarPower: number;
  dendriteJ: number;
  somaJ: number;
  rowEvents?: number;
  inputRowEvents?: number;
  signalsOn?: number;
  signals?: number;
  somasActive?: number;
  somas?: number;
}

const EVENT_KEYS = ['rowEvents', 'inputRowEvents', 'signalsOn', 'signals', 'somasActive', 'somas'] as const;

/** a + b, field by field (an event count absent from either stays absent). */
function addRuns(a: RunEnergy, b: RunEnergy): RunEnergy {
  const out: RunEnergy = { crossbarPower: a.crossbarPower + b.crossbarPower, dendriteJ: a.dendriteJ + b.dendriteJ, somaJ: a.somaJ + b.somaJ };
  for (const k of EVENT_KEYS) if (a[k] !== undefined && b[k] !== undefined) out[k] = a[k]! + b[k]!;
  return out;
}

/** Keeps a session's crossbar power: of its last run and over all its runs. */
export class EnergyMeter {
  readonly counts: EnergyCounts;
  readonly #artifact: Artifact;
  #last = { run: { crossbarPower: 0, dendriteJ: 0, somaJ: 0 } as RunEnergy, samples: 0 };
  #all = { run: { crossbarPower: 0, dendriteJ: 0, somaJ: 0, rowEvents: 0, inputRowEvents: 0, signalsOn: 0, signals: 0, somasActive: 0, somas: 0 } as RunEnergy, samples: 0 };

  constructor(artifact: Artifact) {
    this.#artifact = artifact;
    this.counts = energyCounts(artifact);
  }

  /** One run of `samples` inferences; `run` summed over them (a number: the crossbar read power alone, in W). */
  record(run: RunEnergy | number, samples: number): void {
    const r = typeof run === 'number' ? { crossbarPower: run, dendriteJ: 0, somaJ: 0 } : run;
    this.#last = { run: r, samples };
    this.#all = { run: addRuns(this.#all.run, r), samples: this.#all.samples + samples };
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
