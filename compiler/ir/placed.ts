/**
 * The IRs after mapping: layers as conductance pairs (MappedModel), then placed on physical arrays
 * (PlacedModel, which is what an artifact stores and a runtime runs).
 */
import type { DeviceProfile } from '../../common/profile.js';
import type { NativeTile } from '../../native/index.js';
import type { Activation, DenseLayer, Dendrites, Head, LayerModel, ModelInterface, Origin } from './layers.js';

export interface MappedLayer extends DenseLayer {
  /** Target conductances of the positive and negative devices, [in][out] row-major, siemens, quantised. */
  gPos: Float32Array;
  gNeg: Float32Array;
  /** Conductance per unit weight of each output column (siemens); weight = (G+ − G−) / gPerWeight. */
  gPerWeight: Float32Array;
}

export interface MappedModel extends Omit<LayerModel, 'layers'> {
  profile: DeviceProfile;
  layers: MappedLayer[];
}

/** One physical array's programmed conductances. */
export interface PlacedArray {
  rows: number;
  cols: number;
  /** row-major, siemens */
  conductance: Float32Array;
  /** Compiled for a chip: per cell 0 healthy, 1 stuck ON, 2 stuck OFF (stuck cells hold their stuck conductance). */
  stuck?: Uint8Array;
  /** Compiled for a chip: which of the chip's arrays this is. */
  chipArray?: number;
}

/** The part of one layer held by one array: the same record the native simulator takes (native/index.ts). */
export type PlacedTile = NativeTile;

export interface PlacedLayer {
  name: string;
  origin: Origin[];
  inFeatures: number;
  outFeatures: number;
  activation: Activation;
  bias: Float32Array;
  gPerWeight: Float32Array;
  tiles: PlacedTile[];
  /** Dendritic branches; each tile then holds inputs of one branch only (tile.branch). */
  dendrites?: Dendrites;
  /**
   * The soma output at which a soma draws the profile's soma.onCurrent (energy only): calibrated on sample
   * inputs, else a bound from the weights. Set when the profile has a soma.
   */
  somaFullScale?: number;
}

export interface PlacedModel extends ModelInterface {
  source: LayerModel['source'];
  profile: DeviceProfile;
  head: Head;
  arrays: PlacedArray[];
  layers: PlacedLayer[];
  /**
   * Set when compiled with dendrites: the same model compiled without them on the same profile (the plain
   * compile, what eval reports as dendrites.plain; not placed on a chip's defect map).
   */
  reference?: { plain: PlacedModel };
  /** Set when compiled with dendrites (--branches, or a dendritic ONNX model): what the dendrite passes did. */
  dendrites?: { branches?: number[]; strategy?: string; calibration?: string; finetune?: string };
  /** Set when compiled for one chip's defect map: how it was placed. */
  chip?: {
    device: string;
    arrays: number;
    faults: number;
    remap: 'none' | 'auto';
    calibrated: boolean;
    origin?: Record<string, unknown>;
  };
}
