/**
 * compile(model, options) → artifact: the compiler's one entry point.
 *
 *   ONNX ─load→ Graph IR ─lower→ LayerChain ─foldBatchnorm→ ─fuseLayers→ LayerModel
 *        ─mapConductances→ MappedModel ─tile→ PlacedModel (= the artifact's content)
 *        [─remapDefects→ PlacedModel on one chip, with --defects; calibrate feeds it input statistics]
 */
import { loadProfile, validateProfile, type DeviceProfile } from '../common/profile.js';
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
  /** Sample inputs (float32, whole samples) whose statistics weight the remapping. */
  calibrate?: Float32Array;
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
  const profile = resolveProfile(options.device);
  const layers = importModel(model);
  const mapped = mapConductances(layers, profile);
  const naive = tile(mapped);
  if (options.defects === undefined) {
    if (options.remap !== undefined || options.calibrate !== undefined) {
      throw new InputError('--remap and --calibrate place a network around a chip\'s defects; give the chip\'s --defects map too');
    }
    return naive;
  }
  const defects = typeof options.defects === 'string' ? loadDefectMap(options.defects) : options.defects;
  if (defects.device !== profile.name) {
    throw new InputError(`the defect map describes a '${defects.device}' chip, but the network is compiled for '${profile.name}'`);
  }
  const remap = options.remap ?? 'auto';
  if (remap !== 'auto' && remap !== 'none') throw new InputError(`--remap must be 'none' or 'auto' (got '${String(remap)}')`);
  const inputPower = options.calibrate ? calibrate(layers, options.calibrate) : undefined;
  return remapDefects(naive, mapped, defects, { remap, inputPower });
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
