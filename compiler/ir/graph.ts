/**
 * Graph IR: what an ONNX file says, decoded and checked, with no ONNX protobuf types left in it.
 * Produced by `compiler/onnx/load.ts`, consumed by `compiler/passes/lower.ts`.
 */
import type { DType } from '../../common/dtypes.js';

/** A constant tensor (initializer or Constant node), converted to float32. */
export interface GraphTensor {
  name: string;
  dims: number[];
  /** The element type it was stored as. */
  dtype: DType;
  data: Float32Array;
}

export type AttrValue = number | string | number[] | GraphTensor;

export interface GraphNode {
  name: string;
  op: string;
  inputs: string[];
  outputs: string[];
  attrs: Record<string, AttrValue>;
}

/** A graph input or output: its element type and shape (a string for a symbolic dimension, null if unknown). */
export interface GraphValue {
  name: string;
  dtype: DType | undefined;
  shape: (number | string | null)[] | undefined;
}

export interface Graph {
  /** Where the model came from: file path (if any) and SHA-256 of the .onnx bytes. */
  source: { file?: string; sha256: string; producer: string; opset: number };
  inputs: GraphValue[];
  outputs: GraphValue[];
  constants: Map<string, GraphTensor>;
  nodes: GraphNode[];
}
