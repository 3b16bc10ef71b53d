/**
 * The one NumPy .npy reader/writer (format versions 1.0–3.0, little-endian, C order).
 * Reading converts any dtype of the table in dtypes.ts to float32.
 */
import { writeFileSync } from 'node:fs';
import { LIMITS, readBounded } from './files.js';
import { dtypeByNpy, toFloat32, type DType } from './dtypes.js';
import { InputError } from './errors.js';

export interface NpyArray {
  dtype: DType;
  shape: number[];
  data: Float32Array;
}

const MAGIC = '\x93NUMPY';
/** The element types the reader takes (docs/limits.md); any other dtype is refused. */
export const NPY_DTYPES = 'float32, float16, float64, uint8, int8, int32 or int64, little-endian, C order';
/** Most elements in one array (a float32 copy must fit in memory). */
export const MAX_ELEMENTS = 2 ** 29;

/**
 * The header dictionary, parsed exactly: the three keys NumPy writes and nothing else, each once.
 * null when it is anything else.
 */
function parseHeader(text: string): { descr: string; fortran: boolean; shape: number[] } | null {
  const body = text.replace(/[\s\x00]+$/, '');
  const m = /^\{(.*)\}$/s.exec(body.trim());
  if (!m) return null;
  let rest = m[1]!.trim();
  const out: { descr?: string; fortran?: boolean; shape?: number[] } = {};
  while (rest.length > 0) {
    const kv = /^'(descr|fortran_order|shape)'\s*:\s*('[^']*'|True|False|\([^()]*\))\s*(,\s*|$)/.exec(rest);
    if (!kv) return null;
    const [all, key, value] = kv as unknown as [string, string, string];
    if (key === 'descr') {
      if (out.descr !== undefined || !value.startsWith("'")) return null;
      out.descr = value.slice(1, -1);
    } else if (key === 'fortran_order') {
      if (out.fortran !== undefined || (value !== 'True' && value !== 'False')) return null;
      out.fortran = value === 'True';
    } else {
      if (out.shape !== undefined || !value.startsWith('(')) return null;
      const inner = value.slice(1, -1).trim();
      const parts = inner === '' ? [] : inner.split(',').map((p) => p.trim());
      // (n,) has a trailing empty part; any other empty part is malformed.
      if (parts.length > 1 && parts[parts.length - 1] === '') parts.pop();
      if (parts.some((p) => !/^\d+$/.test(p))) return null;
      out.shape = parts.map(Number);
    }
    rest = rest.slice(all.length);
  }
  if (out.descr === undefined || out.fortran === undefined || out.shape === undefined) return null;
  return { descr: out.descr, fortran: out.fortran, shape: out.shape };
}

export function readNpyFile(file: string): NpyArray {
  return readNpy(readBounded(file, LIMITS.npy, '.npy file'), file);
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
  const header = new TextDecoder('latin1').decode(bytes.subarray(start, start + headerLen));
  const dict = parseHeader(header);
  if (!dict) return fail(`the header is not the dictionary NumPy writes ({'descr': ..., 'fortran_order': ..., 'shape': (...)})`);
  const descr = /^([<>|=]?)([a-zA-Z]\d+)$/.exec(dict.descr);
  if (!descr) return fail(`dtype '${dict.descr.slice(0, 16)}' is not supported (${NPY_DTYPES})`);
  if (descr[1] === '>') fail('big-endian data is not supported');
  if (dict.fortran) fail('Fortran-order arrays are not supported (save with np.ascontiguousarray)');
  const info = dtypeByNpy(descr[2]!);
  if (!info) return fail(`dtype '${descr[2]}' is not supported (${NPY_DTYPES})`);
  const shape = dict.shape;
  if (shape.length > 32) fail(`shape has ${shape.length} dimensions (at most 32)`);
  let count = 1;
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0) fail(`invalid shape: dimension ${d} is not a non-negative integer`);
    count *= d;
  }
  // Checked on the product too: (1e308, 1e308, 0) has integer dimensions and a NaN product.
  if (!Number.isSafeInteger(count) || count > MAX_ELEMENTS) fail(`shape (${shape.join(', ')}) holds more than the ${MAX_ELEMENTS} elements dendra reads`);
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
