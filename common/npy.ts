/**
 * The one NumPy .npy reader/writer (format versions 1.0–3.0, little-endian, C order).
 * Reading converts any dtype of the table in dtypes.ts to float32.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { dtypeByNpy, toFloat32, type DType } from './dtypes.js';
import { InputError } from './errors.js';

export interface NpyArray {
  dtype: DType;
  shape: number[];
  data: Float32Array;
}

const MAGIC = '\x93NUMPY';

export function readNpyFile(file: string): NpyArray {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(file);
  } catch (e) {
    throw new InputError(`cannot read .npy file: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { file });
  }
  return readNpy(bytes, file);
}

export function readNpy(bytes: Uint8Array, file?: string): NpyArray {
  const fail = (msg: string): never => {
    throw new InputError(`not a readable .npy file: ${msg}`, { file });
  };
  if (bytes.length < 10 || String.fromCharCode(...bytes.subarray(0, 6)) !== MAGIC) fail('bad magic (expected \\x93NUMPY)');
  const major = bytes[6]!;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let headerLen: number;
  let start: number;
  if (major === 1) {
    headerLen = view.getUint16(8, true);
    start = 10;
  } else if (major === 2 || major === 3) {
    if (bytes.length < 12) fail('truncated header');
    headerLen = view.getUint32(8, true);
    start = 12;
  } else {
    return fail(`format version ${major} is not supported`);
  }
  if (start + headerLen > bytes.length) fail('truncated header');
  const header = new TextDecoder().decode(bytes.subarray(start, start + headerLen));
  const descr = /'descr'\s*:\s*'([<>|=]?)([a-zA-Z]\d+)'/.exec(header);
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header);
  const shapeMatch = /'shape'\s*:\s*\(([^)]*)\)/.exec(header);
  if (!descr || !fortran || !shapeMatch) return fail(`cannot parse header ${header.trim()}`);
  if (descr[1] === '>') fail('big-endian data is not supported');
  if (fortran[1] === 'True') fail('Fortran-order arrays are not supported (save with np.ascontiguousarray)');
  const info = dtypeByNpy(descr[2]!);
  if (!info) return fail(`dtype '${descr[2]}' is not supported (float32, float16, float64, uint8, int8, int32, int64)`);
  const shape = shapeMatch[1]!.split(',').map((s) => s.trim()).filter((s) => s.length > 0).map(Number);
  if (shape.some((d) => !Number.isInteger(d) || d < 0)) fail(`invalid shape (${shapeMatch[1]})`);
  const count = shape.reduce((a, b) => a * b, 1);
  const dataStart = start + headerLen;
  if (bytes.length - dataStart < count * info.bytes) {
    fail(`truncated data: shape (${shape.join(', ')}) of ${info.name} needs ${count * info.bytes} bytes, the file has ${bytes.length - dataStart}`);
  }
  return { dtype: info.name, shape, data: toFloat32(bytes, info, count, dataStart) };
}

/** Encodes a float32 (or uint8) array as .npy version 1.0. */
export function encodeNpy(data: Float32Array | Uint8Array, shape: number[]): Uint8Array {
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  const descr = data instanceof Uint8Array ? '|u1' : '<f4';
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shapeText}, }`;
  const total = 10 + header.length + 1;
  header += ' '.repeat((64 - (total % 64)) % 64) + '\n';
  const out = new Uint8Array(10 + header.length + data.byteLength);
  out.set([0x93, ...Buffer.from('NUMPY'), 1, 0], 0);
  new DataView(out.buffer).setUint16(8, header.length, true);
  out.set(Buffer.from(header, 'latin1'), 10);
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), 10 + header.length);
  return out;
}

export function writeNpyFile(file: string, data: Float32Array | Uint8Array, shape: number[]): void {
  try {
    writeFileSync(file, encodeNpy(data, shape));
  } catch (e) {
    throw new InputError(`cannot write .npy file: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { file });
  }
}
