/**
 * compile(model, options) → artifact: the compiler's one entry point.
 *
 *   ONNX ─load→ Graph IR ─lower→ LayerChain ─foldBatchnorm→ ─fuseLayers→ LayerModel
 *        ─mapConductances→ MappedModel ─tile→ PlacedModel (= the artifact's content)
 */
import { loadProfile, validateProfile, type DeviceProfile } from '../common/profile.js';
import { loadOnnx, loadOnnxFile } from './onnx/load.js';
import { lower } from './passes/lower.js';
import { foldBatchnorm } from './passes/fold-batchnorm.js';
import { fuseLayers } from './passes/fuse-layers.js';
import { mapConductances } from './passes/map-conductances.js';
import { tile } from './passes/tile.js';
import type { LayerModel } from './ir/layers.js';
import type { PlacedModel } from './ir/placed.js';
import type { Graph } from './ir/graph.js';

export interface CompileOptions {
  /** A shipped profile name (see models/devices), a profile JSON path, or a profile object. Default 'ideal'. */
  device?: string | DeviceProfile;
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
  return tile(mapConductances(importModel(model), profile));
}

export { loadOnnx, loadOnnxFile } from './onnx/load.js';
export { lower, SUPPORTED_OPS } from './passes/lower.js';
export { foldBatchnorm } from './passes/fold-batchnorm.js';
export { fuseLayers } from './passes/fuse-layers.js';
export { mapConductances } from './passes/map-conductances.js';
export { tile } from './passes/tile.js';
export type { Graph } from './ir/graph.js';
export type { LayerModel, DenseLayer, Activation, Head } from './ir/layers.js';
export type { PlacedModel, MappedModel } from './ir/placed.js';
