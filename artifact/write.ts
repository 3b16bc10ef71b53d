/** Artifact → bytes (see format.ts). */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../common/paths.js';
import { CHECKSUM_BYTES, FORMAT_NAME, FORMAT_VERSION, MAGIC, PREAMBLE_BYTES, type Artifact, type ArtifactHeader, type BlobRef } from './format.js';

const align8 = (n: number) => (n + 7) & ~7;

export function dendraVersion(): string {
  try {
    return (JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

export function writeArtifact(artifact: Artifact): Uint8Array {
  const arrays: (Float32Array | Int32Array | Uint8Array)[] = [];
  const model = JSON.parse(
    JSON.stringify(artifact, (_key, value: unknown) => {
      if (value instanceof Float32Array || value instanceof Int32Array || value instanceof Uint8Array) {
        arrays.push(value);
        return { $blob: arrays.length - 1 };
      }
      if (typeof value === 'number' && !Number.isFinite(value)) return { $number: String(value) };
      return value;
    }),
  ) as unknown;
  let offset = 0;
  const blobs: BlobRef[] = arrays.map((a) => {
    const ref: BlobRef = { dtype: a instanceof Float32Array ? 'float32' : a instanceof Int32Array ? 'int32' : 'uint8', offset, length: a.length };
    offset = align8(offset + a.byteLength);
    return ref;
  });
  const header: ArtifactHeader = { format: FORMAT_NAME, version: FORMAT_VERSION, writer: `dendra ${dendraVersion()}`, created: new Date().toISOString(), model, blobs };
  const headerBytes = new TextEncoder().encode(JSON.stringify(header));
  const blobStart = align8(PREAMBLE_BYTES + headerBytes.length);
  const body = blobStart + offset;
  const out = new Uint8Array(body + CHECKSUM_BYTES);
  out.set(MAGIC, 0);
  const view = new DataView(out.buffer);
  view.setUint32(8, FORMAT_VERSION, true);
  view.setUint32(12, headerBytes.length, true);
  out.set(headerBytes, PREAMBLE_BYTES);
  arrays.forEach((a, i) => out.set(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), blobStart + blobs[i]!.offset));
  out.set(createHash('sha256').update(out.subarray(0, body)).digest(), body);
  return out;
}
