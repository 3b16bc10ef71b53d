/** Shared CLI plumbing: reading inputs for a session and running it in chunks. */
import { readNpyFile, type NpyArray } from '../common/npy.js';
import { InputError } from '../common/errors.js';
import { InferenceSession, Tensor } from '../runtime/index.js';

/**
 * Reads X.npy (or takes it already read, `file` then only names it) and checks it against the session's input:
 * trailing dims equal the model's, or one flat sample row per leading index.
 */
export function readInputs(session: InferenceSession, file: string, read?: NpyArray, allowNonfinite = false): { x: NpyArray; n: number; nonfinite: number } {
  const x = read ?? readNpyFile(file);
  const meta = session.inputMetadata[0]!;
  const dims = meta.shape.slice(1) as number[];
  const features = dims.reduce((a, b) => a * b, 1);
  const trailing = x.shape.slice(x.shape.length - dims.length);
  let n: number;
  if (x.shape.length > dims.length && trailing.every((d, i) => d === dims[i])) {
    n = x.shape.slice(0, x.shape.length - dims.length).reduce((a, b) => a * b, 1);
  } else if (x.shape.length >= 2 && x.shape.slice(1).reduce((a, b) => a * b, 1) === features) {
    n = x.shape[0]!;
  } else {
    throw new InputError(`input ${file} has shape (${x.shape.join(', ')}) but the model's input '${meta.name}' is [${meta.shape.join(', ')}]: its trailing dimensions must be (${dims.join(', ')})`, { file });
  }
  if (n === 0) throw new InputError(`input ${file} holds no samples`, { file });
  let nonfinite = 0;
  let first = -1;
  for (let i = 0; i < x.data.length; i++) {
    if (!Number.isFinite(x.data[i]!)) {
      if (first < 0) first = i;
      nonfinite++;
    }
  }
  if (nonfinite > 0 && !allowNonfinite) {
    const perSample = x.data.length / n;
    throw new InputError(`input ${file} holds ${nonfinite} non-finite values (NaN or ±Infinity; the first in sample ${Math.floor(first / perSample)}, element ${first % perSample}); fix them, or pass --allow-nonfinite to run them and count them`, { file });
  }
  return { x, n, nonfinite };
}

/** Runs all n samples through the session in chunks; returns [n, outFeatures] float32. */
export async function runAll(session: InferenceSession, x: Float32Array, n: number, chunk = 4096): Promise<Float32Array> {
  const meta = session.inputMetadata[0]!;
  const dims = meta.shape.slice(1) as number[];
  const features = dims.reduce((a, b) => a * b, 1);
  const outFeatures = session.outputMetadata[0]!.shape[1] as number;
  const out = new Float32Array(n * outFeatures);
  for (let start = 0; start < n; start += chunk) {
    const b = Math.min(chunk, n - start);
    const feed = new Tensor('float32', x.subarray(start * features, (start + b) * features), [b, ...dims]);
    const result = await session.run({ [meta.name]: feed });
    out.set(result[session.outputNames[0]!]!.data, start * outFeatures);
  }
  return out;
}

export function argmaxRows(y: Float32Array, n: number, width: number): Int32Array {
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let j = 1; j < width; j++) if (y[i * width + j]! > y[i * width + best]!) best = j;
    out[i] = best;
  }
  return out;
}

export function parseIntOption(value: string, name: string, min: number, max: number): number {
  const v = Number(value);
  if (!Number.isInteger(v) || v < min || v > max) throw new InputError(`${name} must be an integer from ${min} to ${max} (got '${value}')`);
  return v;
}

export function parseNumberOption(value: string, name: string, min: number, max: number): number {
  const v = Number(value);
  if (value.trim() === '' || !Number.isFinite(v) || v < min || v > max) throw new InputError(`${name} must be a number from ${min} to ${max} (got '${value}')`);
  return v;
}
