/**
 * The one table of element types dendra reads: ONNX TensorProto.DataType codes and NumPy descr codes,
 * and how each converts to float32. Every reader (ONNX initializers, .npy files, session inputs) goes
 * through here.
 */
import { getFloat16 } from '@petamoriken/float16';

export type DType = 'float32' | 'float16' | 'bfloat16' | 'float64' | 'uint8' | 'int8' | 'int32' | 'int64';

export interface DTypeInfo {
  name: DType;
  bytes: number;
  /** ONNX TensorProto.DataType code. */
  onnx: number;
  /** NumPy array-interface descr without byte order (e.g. 'f4'); undefined when NumPy has none. */
  npy?: string;
  /** Reads element i (little-endian) as a JS number. */
  read(view: DataView, byteOffset: number): number;
}

const table: DTypeInfo[] = [
  { name: 'float32', bytes: 4, onnx: 1, npy: 'f4', read: (v, o) => v.getFloat32(o, true) },
  { name: 'uint8', bytes: 1, onnx: 2, npy: 'u1', read: (v, o) => v.getUint8(o) },
  { name: 'int8', bytes: 1, onnx: 3, npy: 'i1', read: (v, o) => v.getInt8(o) },
  { name: 'int32', bytes: 4, onnx: 6, npy: 'i4', read: (v, o) => v.getInt32(o, true) },
  { name: 'int64', bytes: 8, onnx: 7, npy: 'i8', read: (v, o) => Number(v.getBigInt64(o, true)) },
  { name: 'float16', bytes: 2, onnx: 10, npy: 'f2', read: (v, o) => getFloat16(v, o, true) },
  { name: 'float64', bytes: 8, onnx: 11, npy: 'f8', read: (v, o) => v.getFloat64(o, true) },
  // bfloat16 is the top half of a float32.
  { name: 'bfloat16', bytes: 2, onnx: 16, read: (v, o) => bf16ToFloat(v.getUint16(o, true)) },
];

const scratch = new DataView(new ArrayBuffer(4));
function bf16ToFloat(bits: number): number {
  scratch.setUint32(0, bits << 16, true);
  return scratch.getFloat32(0, true);
}

export function dtypeByOnnx(code: number): DTypeInfo | undefined {
  return table.find((t) => t.onnx === code);
}
export function dtypeByNpy(descr: string): DTypeInfo | undefined {
  return table.find((t) => t.npy === descr);
}
export function dtypeByName(name: string): DTypeInfo | undefined {
  return table.find((t) => t.name === name);
}

/** Copies `count` elements of `info` starting at bytes[byteOffset] into a new Float32Array. */
export function toFloat32(bytes: Uint8Array, info: DTypeInfo, count: number, byteOffset = 0): Float32Array {
  const out = new Float32Array(count);
  if (info.name === 'float32') {
    // Copy first: the source may sit at an unaligned offset inside a larger Buffer.
    new Uint8Array(out.buffer).set(bytes.subarray(byteOffset, byteOffset + count * 4));
    return out;
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset + byteOffset, count * info.bytes);
  for (let i = 0; i < count; i++) out[i] = info.read(view, i * info.bytes);
  return out;
}
