/**
 * compile(model, options) → artifact: the compiler's one entry point.
 *
 *   ONNX ─load→ Graph IR ─lower→ LayerChain ─foldBatchnorm→ ─fuseLayers→ LayerModel
 *        ─mapConductances→ MappedModel ─tile→ PlacedModel (= the artifact's content)
 *        [─remapDefects→ PlacedModel on one chip, with --defects; calibrate feeds it input statistics]
 *
 * With --branches the LayerModel first takes dendrites: ─assignBranches→ ─calibrateDendrites→ [─finetune→],
 * and tile aligns tiles to branches.
 */
import { loadProfile, validateProfile, type DeviceProfile } from '../common/profile.js';
import { dendriteTransfer, type DendriteDevice } from '../common/dendrite.js';
import { loadOnnx, loadOnnxFile } from './onnx/load.js';
import { lower } from './passes/lower.js';
import { foldBatchnorm } from './passes/fold-batchnorm.js';
import { fuseLayers } from './passes/fuse-layers.js';
import { mapConductances } from './passes/map-conductances.js';
import { tile } from './passes/tile.js';
import { remapDefects, type RemapMode } from './passes/remap-defects.js';
import { calibrate } from './passes/calibrate.js';
import { loadDefectMap, type DefectMap } from '../common/defects.js';
import { InputError } from '../common/errors.js';
import { assignBranches, type BranchStrategy } from './passes/assign-branches.js';
import { calibrateDendrites, defaultDendriteScales, somaFullScales, type DendriteCalibrationReport } from './passes/calibrate-dendrites.js';
import { finetune, type FinetuneReport } from './passes/finetune.js';
import { finetuneHardware, sparsityPenalty } from './passes/finetune-hardware.js';
import { layerInputs } from './passes/calibrate.js';
import { tileGeometry } from './passes/tile.js';
import type { LayerModel } from './ir/layers.js';
import type { PlacedModel } from './ir/placed.js';
import type { Graph } from './ir/graph.js';

export interface CompileOptions {
  /** A shipped profile name (see models/devices), a profile JSON path, or a profile object. Default 'ideal'. */
  device?: string | DeviceProfile;
  /** The chip's defect map (a path or a parsed map): place the network on that chip. */
  defects?: string | DefectMap;
  /** With defects: 'auto' (default) remaps around them, 'none' places naively. */
  remap?: RemapMode;
  /**
   * Sample inputs (float32, whole samples): their statistics weight the remapping, set the dendrites' gains
   * and thresholds, group inputs for the 'correlated' branch strategy and scale the somas' energy.
   */
  calibrate?: Float32Array;
  /** Labels of the calibration samples (optional): dendrite calibration then holds accuracy, not agreement. */
  calibrateLabels?: Int32Array;
  /** Dendritic branches per neuron, per layer (1 = no dendrites on that layer), or 'auto'. */
  branches?: number[] | 'auto';
  /** How inputs are split into branches (default 'contiguous'). */
  branchStrategy?: BranchStrategy;
  /** Calibration's operating mode (docs/dendrites.md): 'efficient' (default) or 'nonlinear'. */
  dendriteMode?: 'efficient' | 'nonlinear';
  /** Fine-tune the weights with the dendrites in the loop on these samples and labels. */
  finetune?: {
    inputs: Float32Array;
    labels: Int32Array;
    epochs?: number;
    /** Activity penalty (>= 0, default 0): trades accuracy for sparse somas (finetune-hardware.ts). */
    sparsity?: number;
    /** The profile's DAC, read noise and ADC clipping in the training forward (default true). */
    hardware?: boolean;
    onProgress?: (done: number, total: number) => void;
  };
}

/** What the dendrite passes did (CompileResult.report, and the artifact's `dendrites` record). */
export interface CompileReport {
  branches?: { counts: number[]; strategy: BranchStrategy };
  calibration?: DendriteCalibrationReport;
  finetune?: FinetuneReport;
  /** Warnings worth a line on the console. */
  warnings: string[];
}

export function resolveProfile(device: CompileOptions['device']): DeviceProfile {
  if (device === undefined) return loadProfile('ideal');
  return typeof device === 'string' ? loadProfile(device) : validateProfile(device);
}

/** Reads an ONNX model (path or bytes) into the Layer IR: the passes that know nothing of devices. */
export function importModel(model: string | Uint8Array): LayerModel {
  const graph: Graph = typeof model === 'string' ? loadOnnxFile(model) : loadOnnx(model);
  return fuseLayers(foldBatchnorm(lower(graph)));
}

export function compile(model: string | Uint8Array, options: CompileOptions = {}): PlacedModel {
  return compileWithReport(model, options).artifact;
}

/** Branch counts for --branches auto: one branch per array height of inputs, at least 4 (Li et al. 2020 use 9 and 4). */
export function autoBranches(layers: LayerModel, profile: DeviceProfile, strategy: BranchStrategy): number[] {
  return layers.layers.map((l, li) => {
    const { inputsPerArray } = tileGeometry(profile, l.inFeatures, l.outFeatures);
    let count = Math.max(4, Math.ceil(l.inFeatures / inputsPerArray));
    const dims = layers.input.shape.slice(1);
    if (li === 0 && strategy === 'spatial' && dims.length === 3 && typeof dims[0] === 'number') count = Math.ceil(count / dims[0]) * dims[0];
    return Math.min(count, l.inFeatures);
  });
}

/** Accuracy points calibration may lose in 'nonlinear' mode when fine-tuning follows (docs/dendrites.md). */
export const FINETUNE_TOLERANCE = 5;

/** Adds dendrites to a plain LayerModel: assign branches, set gains (calibrated when samples are given), fine-tune. */
function withDendrites(layers: LayerModel, profile: DeviceProfile, options: CompileOptions, report: CompileReport): LayerModel {
  const device = profile.dendrite;
  const strategy = options.branchStrategy ?? 'contiguous';
  if (options.branches !== undefined) {
    if (!device) throw new InputError(`the '${profile.name}' profile has no dendrite devices (no "dendrite" section); compile for --device taox-dendrite or add one`);
    if (layers.layers.some((l) => l.dendrites)) throw new InputError('the model already has dendritic layers (imported from ONNX); --branches applies to plain layers only');
    const counts = options.branches === 'auto' ? autoBranches(layers, profile, strategy) : options.branches;
    const activity = options.calibrate ? layerInputs(layers, options.calibrate) : undefined;
    const plans = assignBranches(layers, { branches: counts, strategy, activity });
    const scales = defaultDendriteScales({ ...layers, layers: layers.layers.map((l, li) => ({ ...l, dendrites: { count: plans[li]!.count, branchOf: plans[li]!.branchOf, fullScale: 1, biasScale: 1, soma: { kind: 'activation' as const }, strategy, calibrated: false } })) });
    layers = {
      ...layers,
      layers: layers.layers.map((l, li) => plans[li]!.count < 2 ? l : {
        ...l,
        dendrites: { count: plans[li]!.count, branchOf: plans[li]!.branchOf, fullScale: scales[li]!.fullScale, biasScale: scales[li]!.biasScale, soma: { kind: 'activation' }, strategy, calibrated: false },
      }),
    };
    report.branches = { counts, strategy };
  }
  if (!layers.layers.some((l) => l.dendrites)) {
    if (options.finetune) throw new InputError('--finetune trains a network with its dendrites in the loop; give --branches too');
    return layers;
  }
  if (!device) throw new InputError(`the model has dendritic layers but the '${profile.name}' profile has no dendrite devices; compile for --device taox-dendrite`);
  for (const [li, l] of layers.layers.entries()) {
    const t = l.dendrites?.trained;
    if (t && !sameTransfer({ ...device, maxVoltage: undefined, kind: t.kind, nonlinearity: t.nonlinearity, onOffRatio: t.onOffRatio, voltage: t.ratio, onVoltage: 1, threshold: t.threshold, rectify: t.rectify }, device)) {
      report.warnings.push(`layer ${li} was trained for a ${t.kind} dendrite (n = ${t.nonlinearity}, ON/OFF ${t.onOffRatio}, V/Von ${t.ratio}${t.rectify ? ', rectifying' : ''}); the '${profile.name}' devices respond differently`);
    }
  }
  if (options.calibrate && layers.layers.some((l) => l.dendrites && !l.dendrites.calibrated)) {
    // In 'nonlinear' mode with fine-tuning to follow, calibration may spend more accuracy on the calibration samples
    // (FINETUNE_TOLERANCE points) to switch MIN_SIGNALS_ON of the signals ON: the fine-tuning wins it back.
    const tolerance = options.dendriteMode === 'nonlinear' && options.finetune ? FINETUNE_TOLERANCE : undefined;
    const cal = calibrateDendrites(layers, device, options.calibrate, options.calibrateLabels, { mode: options.dendriteMode, ...(tolerance !== undefined ? { tolerance } : {}) });
    layers = cal.model;
    report.calibration = cal.report;
  } else if (layers.layers.some((l) => l.dendrites && !l.dendrites.calibrated)) {
    report.warnings.push('dendrite gains come from the weights alone; give sample inputs (--calibrate X.npy) to calibrate them');
  }
  if (options.finetune) {
    const f = options.finetune;
    const sparsity = f.sparsity ?? 0;
    if (!(sparsity >= 0) || !Number.isFinite(sparsity)) throw new InputError(`the fine-tuning sparsity must be a number >= 0 (got ${sparsity})`);
    const ft = finetune(layers, device, f.inputs, f.labels, {
      epochs: f.epochs,
      onProgress: f.onProgress,
      ...(f.hardware ?? true ? { hardware: finetuneHardware(layers, profile, f.inputs) } : {}),
      // With a penalty the objective is no longer the cross-entropy the probe scores epochs by: keep the last epoch
      // (the step has decayed to 0 by then) rather than the input, which always has the lowest cross-entropy.
      ...(sparsity > 0 ? { penalty: { soma: sparsityPenalty(layers, device, f.inputs, sparsity) }, keepBest: false } : {}),
    });
    layers = ft.model;
    report.finetune = ft.report;
  }
  return layers;
}

/**
 * Whether two dendrite devices have the same transfer H(u) (to 1e-3 of its range) over the full-scale range
 * u in [−1, 1] (beyond it a rated device saturates where a trained module's function goes on).
 */
function sameTransfer(a: DendriteDevice, b: DendriteDevice): boolean {
  let diff = 0;
  let range = 0;
  for (let k = -200; k <= 200; k++) {
    const u = k / 200;
    const ha = dendriteTransfer(a, u);
    diff = Math.max(diff, Math.abs(ha - dendriteTransfer(b, u)));
    range = Math.max(range, Math.abs(ha));
  }
  return diff <= 1e-3 * Math.max(range, 1e-12);
}

export interface CompileResult {
  artifact: PlacedModel;
  report: CompileReport;
  /** The LayerModel placed (with its calibrated or fine-tuned dendrites). */
  model: LayerModel;
}

/** The same layers without dendrites: what the soma sees is x·W + b (a dendritic import's trained weights, κ = 1). */
function withoutDendrites(layers: LayerModel): LayerModel {
  return { ...layers, layers: layers.layers.map(({ dendrites: _d, ...l }) => l) };
}

/** Places a LayerModel on the profile's arrays; with soma devices, each layer's soma full scale from the samples. */
function place(layers: LayerModel, profile: DeviceProfile, calibrate: Float32Array | undefined): PlacedModel {
  const placed = tile(mapConductances(layers, profile));
  if (profile.soma) {
    const scales = somaFullScales(layers, calibrate, 1000, profile.dendrite);
    placed.layers.forEach((l, li) => { l.somaFullScale = scales[li]!; });
  }
  return placed;
}

export function compileWithReport(model: string | Uint8Array, options: CompileOptions = {}): CompileResult {
  const profile = resolveProfile(options.device);
  const report: CompileReport = { warnings: [] };
  const imported = importModel(model);
  const layers = withDendrites(imported, profile, options, report);
  const mapped = mapConductances(layers, profile);
  const naive = place(layers, profile, options.calibrate);
  if (layers.layers.some((l) => l.dendrites)) {
    // The compile a user would otherwise ship: the same model without branches, same profile and periphery,
    // soma full scales from the same samples (eval --json reports it as dendrites.plain).
    naive.reference = { plain: place(withoutDendrites(imported), profile, options.calibrate) };
  }
  if (report.branches || report.calibration || report.finetune) {
    naive.dendrites = {
      ...(report.branches ? { branches: report.branches.counts, strategy: report.branches.strategy } : {}),
      ...(report.calibration ? { calibration: report.calibration.summary } : {}),
      ...(report.finetune ? { finetune: report.finetune.summary } : {}),
    };
  }
  const dendritic = layers.layers.some((l) => l.dendrites);
  if (options.defects === undefined) {
    if (options.remap !== undefined || (options.calibrate !== undefined && !dendritic && !profile.soma)) {
      throw new InputError('--remap and --calibrate place a network around a chip\'s defects; give the chip\'s --defects map too (or --branches, whose dendrites --calibrate also tunes)');
    }
    return { artifact: naive, report, model: layers };
  }
  const defects = typeof options.defects === 'string' ? loadDefectMap(options.defects) : options.defects;
  if (defects.device !== profile.name) {
    throw new InputError(`the defect map describes a '${defects.device}' chip, but the network is compiled for '${profile.name}'`);
  }
  const remap = options.remap ?? 'auto';
  if (remap !== 'auto' && remap !== 'none') throw new InputError(`--remap must be 'none' or 'auto' (got '${String(remap)}')`);
  const inputPower = options.calibrate ? calibrate(layers, options.calibrate) : undefined;
  return { artifact: remapDefects(naive, mapped, defects, { remap, inputPower }), report, model: layers };
}

export { loadOnnx, loadOnnxFile } from './onnx/load.js';
export { lower, SUPPORTED_OPS } from './passes/lower.js';
export { foldBatchnorm } from './passes/fold-batchnorm.js';
export { fuseLayers } from './passes/fuse-layers.js';
export { mapConductances } from './passes/map-conductances.js';
export { tile } from './passes/tile.js';
export { remapDefects, type RemapMode } from './passes/remap-defects.js';
export { calibrate } from './passes/calibrate.js';
export type { Graph } from './ir/graph.js';
export type { LayerModel, DenseLayer, Activation, Head } from './ir/layers.js';
export type { PlacedModel, MappedModel } from './ir/placed.js';
