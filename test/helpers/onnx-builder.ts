/**
 * Builds small ONNX models in tests (with onnx-proto's encoder) so every import path and refusal can
 * be exercised, and ONNX Runtime can be run on the same bytes as the reference.
 */
import onnxProto from 'onnx-proto';
import type { onnx as OnnxTypes } from 'onnx-proto';
import { setFloat16 } from '@petamoriken/float16';

const { onnx } = onnxProto;
const DT = onnx.TensorProto.DataType;

export type Encoding = 'raw' | 'typed';
export type WeightType = 'float32' | 'float16' | 'bfloat16' | 'float64';

export interface NodeSpec {
  op: string;
  inputs: string[];
  outputs: string[];
  name?: string;
  attrs?: Record<string, number | number[] | string | OnnxTypes.ITensorProto>;
  domain?: string;
}

export function tensor(name: string, dims: number[], values: ArrayLike<number>, type: WeightType | 'int64' = 'float32', encoding: Encoding = 'raw'): OnnxTypes.ITensorProto {
  const n = values.length;
  const t: OnnxTypes.ITensorProto = { name, dims };
  switch (type) {
    case 'float32':
      t.dataType = DT.FLOAT;
      if (encoding === 'raw') t.rawData = new Uint8Array(Float32Array.from(values).buffer);
      else t.floatData = Array.from(values);
      break;
    case 'float64':
      t.dataType = DT.DOUBLE;
      if (encoding === 'raw') t.rawData = new Uint8Array(Float64Array.from(values).buffer);
      else t.doubleData = Array.from(values);
      break;
    case 'int64':
      t.dataType = DT.INT64;
      if (encoding === 'raw') t.rawData = new Uint8Array(BigInt64Array.from(Array.from(values), (v) => BigInt(v)).buffer);
      else t.int64Data = Array.from(values);
      break;
    case 'float16':
    case 'bfloat16': {
      t.dataType = type === 'float16' ? DT.FLOAT16 : DT.BFLOAT16;
      const bits = new Uint16Array(n);
      const view = new DataView(new ArrayBuffer(4));
      for (let i = 0; i < n; i++) {
        if (type === 'float16') {
          setFloat16(view, 0, values[i]!, true);
          bits[i] = view.getUint16(0, true);
        } else {
          view.setFloat32(0, values[i]!, true);
          bits[i] = view.getUint32(0, true) >>> 16; // truncation: exact for values made with bf16()
        }
      }
      if (encoding === 'raw') t.rawData = new Uint8Array(bits.buffer);
      else t.int32Data = Array.from(bits);
      break;
    }
  }
  return t;
}

function attribute(name: string, v: NonNullable<NodeSpec['attrs']>[string]): OnnxTypes.IAttributeProto {
  const A = onnx.AttributeProto.AttributeType;
  if (typeof v === 'number') return Number.isInteger(v) && !name.match(/alpha|beta|epsilon|min|max|momentum|ratio/) ? { name, type: A.INT, i: v } : { name, type: A.FLOAT, f: v };
  if (typeof v === 'string') return { name, type: A.STRING, s: new TextEncoder().encode(v) };
  if (Array.isArray(v)) return { name, type: A.INTS, ints: v };
  return { name, type: A.TENSOR, t: v };
}

export interface ModelSpec {
  opset?: number;
  input?: { name?: string; dims: (number | string)[]; type?: 'float32' | 'float16' | 'float64' };
  output?: { name?: string; dims?: (number | string)[] };
  nodes: NodeSpec[];
  initializers?: OnnxTypes.ITensorProto[];
  extraInputs?: string[];
}

const elem = { float32: DT.FLOAT, float16: DT.FLOAT16, float64: DT.DOUBLE };

function valueInfo(name: string, dims: (number | string)[] | undefined, type: number): OnnxTypes.IValueInfoProto {
  return {
    name,
    type: { tensorType: { elemType: type, shape: dims ? { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } : undefined } },
  };
}

export function model(spec: ModelSpec): Uint8Array {
  const inputType = elem[spec.input?.type ?? 'float32'];
  const input = spec.input ?? { dims: ['batch', 4] };
  const m: OnnxTypes.IModelProto = {
    irVersion: 7,
    producerName: 'dendra-tests',
    opsetImport: [{ domain: '', version: spec.opset ?? 13 }],
    graph: {
      name: 'g',
      node: spec.nodes.map((n, i) => ({
        name: n.name ?? `${n.op}_${i}`,
        opType: n.op,
        domain: n.domain ?? '',
        input: n.inputs,
        output: n.outputs,
        attribute: Object.entries(n.attrs ?? {}).map(([k, v]) => attribute(k, v)),
      })),
      initializer: spec.initializers ?? [],
      input: [valueInfo(input.name ?? 'x', input.dims, inputType), ...(spec.extraInputs ?? []).map((n) => valueInfo(n, ['batch', 4], inputType))],
      output: [valueInfo(spec.output?.name ?? 'y', spec.output?.dims, inputType)],
    },
  };
  return onnx.ModelProto.encode(onnx.ModelProto.create(m)).finish();
}

/** Seeded uniform values in [-scale, scale). */
export function randomValues(n: number, seed: number, scale = 1): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    out[i] = ((s / 0x100000000) * 2 - 1) * scale;
  }
  return out;
}

/** Values exactly representable in bfloat16 and float16 (so every encoding means the same weights). */
export function roundTo16(values: Float32Array): Float32Array {
  return values.map((v) => Math.round(v * 256) / 256);
}
