/** Bytes → Artifact, refusing damaged, foreign or unsupported files with an ArtifactError. */
import { createHash } from 'node:crypto';
import { ArtifactError } from '../common/errors.js';
import { LIMITS, readBounded } from '../common/files.js';
import { validateProfile } from '../common/profile.js';
import { CHECKSUM_BYTES, FORMAT_NAME, FORMAT_VERSION, MAGIC, PREAMBLE_BYTES, READABLE_VERSIONS, type Artifact, type ArtifactHeader } from './format.js';

const align8 = (n: number) => (n + 7) & ~7;

export function readArtifactFile(file: string): Artifact {
  return readArtifact(readArtifactBytes(file), file);
}

/** The bytes of an artifact file (at most LIMITS.artifact), or an ArtifactError. */
export function readArtifactBytes(file: string): Uint8Array {
  return readBounded(file, LIMITS.artifact, 'artifact', ArtifactError);
}

export function isArtifact(bytes: Uint8Array): boolean {
  return bytes.length >= MAGIC.length && MAGIC.every((b, i) => bytes[i] === b);
}

export function readArtifact(bytes: Uint8Array, file?: string): Artifact {
  const fail = (msg: string): never => {
    throw new ArtifactError(msg, { file });
  };
  if (!isArtifact(bytes)) fail('not a dendra artifact (bad magic bytes); compile a model with `dendra compile` first');
  if (bytes.length < PREAMBLE_BYTES + CHECKSUM_BYTES) fail(`artifact is truncated (${bytes.length} bytes)`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = view.getUint32(8, true);
  if (!READABLE_VERSIONS.includes(version)) fail(`artifact format version ${version} is not supported (this dendra reads versions ${READABLE_VERSIONS.join(' and ')}; it writes ${FORMAT_VERSION})`);
  const body = bytes.length - CHECKSUM_BYTES;
  const digest = createHash('sha256').update(bytes.subarray(0, body)).digest();
  if (!digest.equals(bytes.subarray(body))) fail('artifact is damaged: its SHA-256 checksum does not match (truncated or modified file)');
  const headerLen = view.getUint32(12, true);
  if (PREAMBLE_BYTES + headerLen > body) fail('artifact is damaged: header runs past the end of the file');
  let header: ArtifactHeader;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(PREAMBLE_BYTES, PREAMBLE_BYTES + headerLen))) as ArtifactHeader;
  } catch {
    return fail('artifact is damaged: its header is not valid UTF-8 JSON');
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) fail('artifact is damaged: its header is not a JSON object');
  if (header.format !== FORMAT_NAME) fail(`not a dendra artifact (format '${String(header.format)}')`);
  if (!Array.isArray(header.blobs)) fail('artifact is damaged: header has no blob table');
  const blobStart = align8(PREAMBLE_BYTES + headerLen);
  if (header.blobs.length > 1 << 20) fail(`artifact is damaged: its blob table lists ${header.blobs.length} blobs`);
  const blobs = header.blobs.map((b, i) => {
    if (typeof b !== 'object' || b === null || Array.isArray(b)) return fail(`artifact is damaged: blob table entry ${i} is not an object`);
    const size = b.dtype === 'float32' || b.dtype === 'int32' ? 4 : b.dtype === 'uint8' ? 1 : fail(`artifact blob ${i} has unknown dtype '${String(b.dtype)}'`);
    const start = blobStart + b.offset;
    if (!Number.isSafeInteger(b.offset) || !Number.isSafeInteger(b.length) || b.offset < 0 || b.length < 0 || b.offset % 8 !== 0 || start + b.length * size > body) {
      fail(`artifact blob ${i} lies outside the file`);
    }
    const copy = new Uint8Array(bytes.subarray(start, start + b.length * size)); // an aligned copy (Buffer.slice would be a view)
    return b.dtype === 'float32' ? new Float32Array(copy.buffer) : b.dtype === 'int32' ? new Int32Array(copy.buffer) : copy;
  });
  const revive = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(revive);
    if (value && typeof value === 'object') {
      const o = value as Record<string, unknown>;
      if (typeof o['$blob'] === 'number') {
        const blob = Number.isInteger(o['$blob']) ? blobs[o['$blob']] : undefined;
        return blob ?? fail(`artifact refers to missing blob ${o['$blob']}`);
      }
      if (typeof o['$number'] === 'string') return Number(o['$number']);
      return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, revive(v)]));
    }
    return value;
  };
  const model = revive(header.model) as Artifact;
  checkShape(model, fail);
  const plain = model.reference?.plain;
  if (plain !== undefined) checkShape(plain, (msg) => fail(msg.replace('artifact is malformed: ', 'artifact is malformed: reference.plain.')));
  try {
    model.profile = validateProfile(model.profile);
    if (plain) plain.profile = validateProfile(plain.profile);
  } catch (e) {
    fail(`artifact holds an invalid device profile: ${(e as Error).message}`);
  }
  return model;
}

/** Structural checks: every field the runtime relies on is there with the right type and length. */
function checkShape(m: Artifact, fail: (msg: string) => never): void {
  const isObj = (v: unknown) => typeof v === 'object' && v !== null;
  const int = (v: unknown, what: string) => {
    if (!Number.isInteger(v) || (v as number) < 0) fail(`artifact is malformed: ${what} is not a non-negative integer`);
    return v as number;
  };
  const f32 = (v: unknown, n: number, what: string) => {
    if (!(v instanceof Float32Array) || v.length !== n) fail(`artifact is malformed: ${what} must be ${n} float32 values`);
  };
  const i32 = (v: unknown, n: number, what: string) => {
    if (!(v instanceof Int32Array) || v.length !== n) fail(`artifact is malformed: ${what} must be ${n} int32 values`);
  };
  if (!isObj(m) || !isObj(m.input) || !isObj(m.output) || !isObj(m.source) || !Array.isArray(m.arrays) || !Array.isArray(m.layers) || m.layers.length === 0) {
    fail('artifact is malformed: missing input, output, source, arrays or layers');
  }
  if (typeof m.input.name !== 'string' || !Array.isArray(m.input.shape)) fail('artifact is malformed: input has no name or shape');
  const features = int(m.input.features, 'input.features');
  int(m.output.features, 'output.features');
  // input.shape = [batch, ...dims]: the dims are positive integers whose product is input.features.
  const shape = m.input.shape as unknown[];
  if (shape.length < 2 || shape.length > 16) fail(`artifact is malformed: input.shape must be [batch, ...dims] (got ${shape.length} entries)`);
  if (!(shape[0] === null || typeof shape[0] === 'string' || (Number.isInteger(shape[0]) && (shape[0] as number) >= 0))) fail('artifact is malformed: input.shape[0] (the batch) must be a name, null or an integer');
  const dims = shape.slice(1);
  if (!dims.every((d) => Number.isInteger(d) && (d as number) >= 1 && (d as number) <= 1 << 24)) fail('artifact is malformed: input.shape dimensions after the batch must be positive integers');
  const product = (dims as number[]).reduce((a, b) => a * b, 1);
  if (product !== features) fail(`artifact is malformed: input.shape [${shape.join(', ')}] holds ${product} features but input.features is ${features}`);
  if (m.layers[0] && isObj(m.layers[0]) && m.layers[0].inFeatures !== features) fail(`artifact is malformed: input.features (${features}) differs from layers[0].inFeatures (${String(m.layers[0].inFeatures)})`);
  const last = m.layers[m.layers.length - 1];
  if (last && isObj(last) && last.outFeatures !== m.output.features) fail(`artifact is malformed: output.features (${m.output.features}) differs from the last layer's outFeatures (${String(last.outFeatures)})`);
  m.arrays.forEach((a, i) => {
    if (!isObj(a)) fail(`artifact is malformed: arrays[${i}]`);
    const cells = int(a.rows, `arrays[${i}].rows`) * int(a.cols, `arrays[${i}].cols`);
    f32(a.conductance, cells, `arrays[${i}].conductance`);
    if (a.stuck !== undefined && !(a.stuck instanceof Uint8Array && a.stuck.length === cells && a.stuck.every((s) => s <= 2))) {
      fail(`artifact is malformed: arrays[${i}].stuck must be ${cells} values of 0, 1 or 2`);
    }
  });
  m.layers.forEach((l, li) => {
    const at = `layers[${li}]`;
    if (!isObj(l) || !Array.isArray(l.tiles) || !isObj(l.activation)) fail(`artifact is malformed: ${at}`);
    int(l.inFeatures, `${at}.inFeatures`);
    const out = int(l.outFeatures, `${at}.outFeatures`);
    f32(l.bias, out, `${at}.bias`);
    f32(l.gPerWeight, out, `${at}.gPerWeight`);
    const d = l.dendrites;
    if (d !== undefined) {
      if (!isObj(d) || !Number.isInteger(d.count) || d.count < 1 || d.count > l.inFeatures) fail(`artifact is malformed: ${at}.dendrites.count`);
      i32(d.branchOf, l.inFeatures, `${at}.dendrites.branchOf`);
      if (d.branchOf.some((b) => b < 0 || b >= d.count)) fail(`artifact is malformed: ${at}.dendrites.branchOf holds a branch outside [0, ${d.count})`);
      if (!(typeof d.fullScale === 'number' && d.fullScale > 0 && Number.isFinite(d.fullScale))) fail(`artifact is malformed: ${at}.dendrites.fullScale must be a finite number > 0`);
      if (!(typeof d.biasScale === 'number' && Number.isFinite(d.biasScale))) fail(`artifact is malformed: ${at}.dendrites.biasScale must be finite`);
      const so = d.soma as { kind?: unknown; theta?: unknown; scale?: unknown } | undefined;
      if (!isObj(so) || (so!.kind !== 'activation' && !(so!.kind === 'threshold' && typeof so!.theta === 'number' && typeof so!.scale === 'number' && (so!.scale as number) > 0))) {
        fail(`artifact is malformed: ${at}.dendrites.soma`);
      }
    }
    if (l.somaFullScale !== undefined && !(typeof l.somaFullScale === 'number' && l.somaFullScale > 0 && Number.isFinite(l.somaFullScale))) fail(`artifact is malformed: ${at}.somaFullScale must be a finite number > 0`);
    l.tiles.forEach((t, ti) => {
      const tt = `${at}.tiles[${ti}]`;
      if (!isObj(t) || !(t.inputIndex instanceof Int32Array) || !(t.outputIndex instanceof Int32Array)) fail(`artifact is malformed: ${tt}`);
      i32(t.rowPos, t.inputIndex.length, `${tt}.rowPos`);
      i32(t.rowNeg, t.inputIndex.length, `${tt}.rowNeg`);
      i32(t.colPos, t.outputIndex.length, `${tt}.colPos`);
      i32(t.colNeg, t.outputIndex.length, `${tt}.colNeg`);
      int(t.array, `${tt}.array`);
      if (typeof t.adcFullScale !== 'number') fail(`artifact is malformed: ${tt}.adcFullScale`);
      if (t.branch !== undefined && !(Number.isInteger(t.branch) && t.branch >= 0 && t.branch < (d?.count ?? 1))) fail(`artifact is malformed: ${tt}.branch must be an integer in [0, ${d?.count ?? 1})`);
    });
  });
}
