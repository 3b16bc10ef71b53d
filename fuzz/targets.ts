/**
 * The fuzz targets: for each, where its seeds live (fuzz/corpus/TARGET), how an input is mutated from
 * them (mutate.ts) and what is run on it (`run`: everything a user's CLI call would do with such a file,
 * down to the native simulator). A run that returns is "accepted", one that throws a DendraError is a
 * "typed" refusal; anything else thrown is an "untyped" error, and the runner (run.ts) adds "crash" (the
 * worker process died) and "hang" (no answer within the time limit).
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createConnection, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import onnxProto from 'onnx-proto';
import { CHECKSUM_BYTES, PREAMBLE_BYTES } from '../artifact/format.js';
import { readArtifact } from '../artifact/read.js';
import { compile } from '../compiler/index.js';
import { writeArtifact } from '../artifact/write.js';
import { faultGrid, validateDefectMap } from '../common/defects.js';
import { readNpy } from '../common/npy.js';
import { packageRoot } from '../common/paths.js';
import { loadProfile, validateProfile } from '../common/profile.js';
import { parseJsonQuiet } from '../common/files.js';
import { InferenceSession, Tensor } from '../runtime/index.js';
import { BoardEmulator } from '../runtime/backends/device/emulator.js';
import { encodeFrame, FrameDecoder, MessageType, type Frame } from '../runtime/backends/device/protocol.js';
import { loadOnnx } from '../compiler/onnx/load.js';
import { connectBoard } from '../runtime/backends/device/client.js';
import { scan } from '../runtime/backends/device/scan.js';
import type { DeviceProfile } from '../common/profile.js';
import { mutateBytes, mutateJson, type Plan } from './mutate.js';

const { onnx } = onnxProto;

export interface Target {
  name: string;
  what: string;
  /** File extension of its inputs (for saved regressions). */
  ext: string;
  mutate(seed: Uint8Array, plan: Plan, seeds: Uint8Array[]): Uint8Array;
  run(input: Uint8Array): Promise<void>;
  /** Its seeds' folder under fuzz/corpus, when not its own name. */
  corpus?: string;
  /** Seeds made in code instead of read from fuzz/corpus. */
  seeds?(): Uint8Array[];
  /** Releases what runs kept open (servers). */
  cleanup?(): Promise<void>;
}

export function corpusDir(target: string): string {
  return join(packageRoot(), 'fuzz', 'corpus', target);
}

export function regressionDir(target: string): string {
  return join(packageRoot(), 'fuzz', 'regressions', target);
}

export function loadSeeds(target: string): Uint8Array[] {
  const inCode = targetByName(target)?.seeds;
  if (inCode) return inCode();
  const dir = corpusDir(targetByName(target)?.corpus ?? target);
  return readdirSync(dir).filter((f) => !f.startsWith('.') && !f.endsWith('.md')).sort().map((f) => new Uint8Array(readFileSync(join(dir, f))));
}

const text = (b: Uint8Array) => Buffer.from(b).toString('utf8');
const bytes = (s: string) => new Uint8Array(Buffer.from(s, 'utf8'));

/** The smallest seed model: compiled by the profile, defect-map and artifact targets. */
let tinyModel: Uint8Array | undefined;
function tiny(): Uint8Array {
  tinyModel ??= new Uint8Array(readFileSync(join(corpusDir('onnx'), 'tiny-6x5x3-gemm-relu.onnx')));
  return tinyModel;
}

/** Runs two zero samples and two random ones through an artifact on the simulator (the native addon). */
async function runArtifact(artifactBytes: Uint8Array): Promise<void> {
  const session = await InferenceSession.create(artifactBytes, { threads: 1, seed: 1 });
  try {
    const meta = session.inputMetadata[0]!;
    const dims = meta.shape.slice(1) as number[];
    const features = dims.reduce((a, b) => a * b, 1);
    if (features > 1 << 20) return;
    const x = new Float32Array(4 * features);
    for (let i = 2 * features; i < x.length; i++) x[i] = Math.sin(i) * 2;
    await session.run({ [meta.name]: new Tensor('float32', x, [4, ...dims]) });
  } finally {
    await session.release();
  }
}

/** Re-seals an artifact after its header JSON or bytes were edited: header length, padding, SHA-256. */
function sealArtifact(header: Uint8Array, blobSection: Uint8Array, version: number): Uint8Array {
  const headerEnd = PREAMBLE_BYTES + header.length;
  const blobStart = (headerEnd + 7) & ~7;
  const out = new Uint8Array(blobStart + blobSection.length + CHECKSUM_BYTES);
  out.set([0x89, 0x44, 0x4e, 0x44, 0x52, 0x0d, 0x0a, 0x1a]);
  const view = new DataView(out.buffer);
  view.setUint32(8, version, true);
  view.setUint32(12, header.length, true);
  out.set(header, PREAMBLE_BYTES);
  out.set(blobSection, blobStart);
  return reseal(out);
}

function reseal(file: Uint8Array): Uint8Array {
  if (file.length < CHECKSUM_BYTES) return file;
  const body = file.length - CHECKSUM_BYTES;
  file.set(createHash('sha256').update(file.subarray(0, body)).digest(), body);
  return file;
}

const artifact: Target = {
  name: 'artifact',
  what: '.dendra artifacts: read, then a session on the simulator runs four samples',
  ext: '.dendra',
  mutate(seed, plan, seeds) {
    const mode = plan.mode % 10;
    if (mode < 6 && seed.length > PREAMBLE_BYTES + CHECKSUM_BYTES) {
      // The header JSON, edited as a tree; blobs kept; re-sealed.
      const view = new DataView(seed.buffer, seed.byteOffset, seed.byteLength);
      const headerLen = view.getUint32(12, true);
      const header = JSON.parse(text(seed.subarray(PREAMBLE_BYTES, PREAMBLE_BYTES + headerLen)));
      const blobStart = (PREAMBLE_BYTES + headerLen + 7) & ~7;
      const blobs = seed.subarray(blobStart, seed.length - CHECKSUM_BYTES);
      return sealArtifact(bytes(JSON.stringify(mutateJson(header, plan.json))), blobs, view.getUint32(8, true));
    }
    // Byte edits, re-sealed (mostly) so they get past the checksum.
    const out = mutateBytes(seed, plan.bytes, seeds);
    return mode < 9 ? reseal(out) : out;
  },
  async run(input) {
    readArtifact(input);
    await runArtifact(input);
  },
};

const model: Target = {
  name: 'onnx',
  what: 'ONNX models: imported and compiled (ideal and hfo2-1t1r), then run on the simulator',
  ext: '.onnx',
  mutate(seed, plan, seeds) {
    if (plan.mode % 10 < 6) {
      // Structure-aware: the ModelProto as a JSON tree, edited and re-encoded (valid protobuf, odd contents).
      try {
        const obj = onnx.ModelProto.toObject(onnx.ModelProto.decode(seed), { longs: Number, bytes: String, defaults: false });
        return onnx.ModelProto.encode(onnx.ModelProto.fromObject(mutateJson(obj, plan.json) as Record<string, unknown>)).finish();
      } catch {
        // fromObject refused the edit: fall through to byte edits
      }
    }
    return mutateBytes(seed, plan.bytes, seeds);
  },
  async run(input) {
    loadOnnx(input);
    const placed = compile(input, { device: input.length % 2 ? 'ideal' : 'hfo2-1t1r' });
    await runArtifact(writeArtifact(placed));
  },
};

const npy: Target = {
  name: 'npy',
  what: '.npy arrays: read and converted to float32',
  ext: '.npy',
  mutate(seed, plan, seeds) {
    return mutateBytes(seed, plan.bytes, seeds);
  },
  async run(input) {
    const a = readNpy(input);
    const count = a.shape.reduce((x, y) => x * y, 1);
    if (a.data.length !== count) throw new Error(`readNpy returned ${a.data.length} values for shape (${a.shape.join(', ')})`);
  },
};

const defects: Target = {
  name: 'defects',
  what: 'defect maps: validated, gridded, and used to place the tiny model on hfo2-1t1r (remap auto)',
  ext: '.json',
  mutate(seed, plan, seeds) {
    if (plan.mode % 10 < 8) return bytes(JSON.stringify(mutateJson(JSON.parse(text(seed)), plan.json)));
    return mutateBytes(seed, plan.bytes, seeds);
  },
  async run(input) {
    const map = validateDefectMap(parseJsonQuiet(text(input), 'defect map'));
    for (const a of map.arrays) faultGrid(a);
    const placed = compile(tiny(), { device: 'hfo2-1t1r', defects: map, remap: input.length % 2 ? 'auto' : 'none' });
    await runArtifact(writeArtifact(placed));
  },
};

const profile: Target = {
  name: 'profile',
  what: 'device profiles: validated, then the tiny model compiled for them and run on the simulator',
  ext: '.json',
  mutate(seed, plan, seeds) {
    if (plan.mode % 10 < 8) return bytes(JSON.stringify(mutateJson(JSON.parse(text(seed)), plan.json)));
    return mutateBytes(seed, plan.bytes, seeds);
  },
  async run(input) {
    const p = validateProfile(parseJsonQuiet(text(input), 'device profile'));
    const placed = compile(tiny(), { device: p });
    await runArtifact(writeArtifact(placed));
  },
};

/** A small emulated board (2 arrays of the hfo2-1t1r kind) for the frame target. */
function smallEmulator(): BoardEmulator {
  return new BoardEmulator({ profile: loadProfile('hfo2-1t1r'), arrays: 2, faultRate: 0.05, seed: 3 });
}

/** Parses a request stream into frames (for mutation); null if it holds none. */
function framesOf(stream: Uint8Array): Frame[] {
  return new FrameDecoder().push(stream);
}

const frame: Target = {
  name: 'frame',
  what: 'request streams: decoded in odd chunks and answered by the board emulator (every request type)',
  ext: '.bin',
  mutate(seed, plan, seeds) {
    const mode = plan.mode % 10;
    const frames = framesOf(seed);
    if (mode < 6 && frames.length > 0) {
      // Edit one frame's JSON or binary part, re-encoded with valid CRCs (so the emulator sees it).
      const k = plan.seed % frames.length;
      const f = frames[k]!;
      const edited: Frame = mode < 4 ? { ...f, json: mutateJson(f.json, plan.json) } : { ...f, data: mutateBytes(f.data, plan.bytes) };
      if (mode === 5) edited.type = [1, 2, 3, 4, 5, 6, 7, 8, 0x81, 0xff, 0x42][plan.mode % 11]!;
      const parts = frames.map((x, i) => {
        try {
          return encodeFrame(i === k ? edited : x);
        } catch {
          return encodeFrame(x);
        }
      });
      const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
      let o = 0;
      for (const p of parts) {
        out.set(p, o);
        o += p.length;
      }
      return out;
    }
    return mutateBytes(seed, plan.bytes, seeds);
  },
  async run(input) {
    const emu = smallEmulator();
    const decoder = new FrameDecoder();
    // Chunk sizes from the input itself, so a replay is exact.
    let at = 0;
    let i = 0;
    while (at < input.length) {
      const size = 1 + ((input[i++ % input.length]! * 31 + i) % 997);
      for (const f of decoder.push(input.subarray(at, at + size))) {
        const reply = emu.handle(f);
        if (!(reply instanceof Uint8Array) || reply.length < 20) throw new Error('the emulator gave no reply frame');
        const back = new FrameDecoder().push(reply);
        if (back.length !== 1 || back[0]!.id !== f.id) throw new Error('the emulator reply does not decode to one frame with the request id');
      }
      at += size;
    }
    await emu.close();
  },
};

/** Requests of every type a host sends (the frame seeds; also used by make-seeds.ts). */
export function requestStream(): Uint8Array {
  const pulses = new Uint8Array(3 * 16);
  const v = new DataView(pulses.buffer);
  [[0, 0, 1.5, 1.2], [1, 2, -1.5, 1.2], [2, -1, 1.2, 1.0]].forEach(([r, c, a, g], k) => {
    v.setInt32(16 * k, r!, true);
    v.setInt32(16 * k + 4, c!, true);
    v.setFloat32(16 * k + 8, a!, true);
    v.setFloat32(16 * k + 12, g!, true);
  });
  const volts = new Float32Array([0.1, 0.2, 0.0, -0.1, 0.05, 0.1]);
  const frames: Frame[] = [
    { type: MessageType.Identify, id: 1, json: {}, data: new Uint8Array(0) },
    { type: MessageType.Status, id: 2, json: {}, data: new Uint8Array(0) },
    { type: MessageType.Mark, id: 3, json: { artifact: 'abc', state: 'programming' }, data: new Uint8Array(0) },
    { type: MessageType.Pulse, id: 4, json: { array: 0, width: 1e-7, cells: 3 }, data: pulses },
    { type: MessageType.Read, id: 5, json: { array: 0, row: 0, col: 0, rows: 3, cols: 4 }, data: new Uint8Array(0) },
    { type: MessageType.Infer, id: 6, json: { array: 1, rows: [0, 1, 2], cols: [0, 5], batch: 2 }, data: new Uint8Array(volts.buffer) },
    { type: MessageType.Mark, id: 7, json: { artifact: 'abc', state: 'ready' }, data: new Uint8Array(0) },
    { type: MessageType.ReadNeurons, id: 8, json: {}, data: new Uint8Array(0) },
    { type: MessageType.Auth, id: 9, json: { step: 'hello', client: '00'.repeat(32) }, data: new Uint8Array(0) },
  ];
  const parts = frames.map(encodeFrame);
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Emulators serving on 127.0.0.1 for the TCP target (one open, one requiring a token), kept per process. */
let served: { open: BoardEmulator; locked: BoardEmulator; urls: [string, string] } | undefined;
const FUZZ_TOKEN = 'fuzz-token';

/** Sends bytes on a fresh connection and collects what comes back until the line is quiet. */
function exchange(url: string, chunks: Uint8Array[], quietMs: number, untilId?: number): Promise<Uint8Array> {
  const decoder = new FrameDecoder();
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host: u.hostname, port: Number(u.port) });
    const got: Buffer[] = [];
    let timer: NodeJS.Timeout | undefined;
    const finish = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(new Uint8Array(Buffer.concat(got)));
    };
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(finish, quietMs);
    };
    socket.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`emulator connection failed: ${e.message}`));
    });
    socket.on('data', (d: Buffer) => {
      got.push(d);
      if (untilId !== undefined && decoder.push(d).some((f) => f.id === untilId)) finish();
      else arm();
    });
    socket.on('close', finish);
    socket.once('connect', () => {
      for (const c of chunks) socket.write(c);
      arm();
    });
  });
}

const emulatorTcp: Target = {
  name: 'emulator',
  what: 'request streams sent over TCP to running board emulators (one open, one requiring a token); each must still answer afterwards',
  ext: '.bin',
  corpus: 'frame',
  mutate: (seed, plan, seeds) => frame.mutate(seed, plan, seeds),
  async run(input) {
    if (!served) {
      const open = smallEmulator();
      const locked = new BoardEmulator({ profile: loadProfile('hfo2-1t1r'), arrays: 2, seed: 4, token: FUZZ_TOKEN });
      served = { open, locked, urls: [await open.listen('tcp://127.0.0.1:0'), await locked.listen('tcp://127.0.0.1:0')] };
    }
    const chunks: Uint8Array[] = [];
    for (let at = 0, i = 0; at < input.length; i++) {
      const size = 1 + ((input[i % input.length]! * 131 + i) % 4093);
      chunks.push(input.subarray(at, at + size));
      at += size;
    }
    for (const url of served.urls) {
      await exchange(url, chunks, 5);
      // The board must still answer a well-formed request on a new connection (an error reply counts).
      const probe = encodeFrame({ type: MessageType.Identify, id: 0x7ffffff0, json: {}, data: new Uint8Array(0) });
      const reply = new FrameDecoder().push(await exchange(url, [probe], 2000, 0x7ffffff0));
      if (!reply.some((f) => f.id === 0x7ffffff0)) throw new Error(`the emulator at ${url} no longer answers after this input`);
    }
  },
  async cleanup() {
    if (!served) return;
    await served.open.close();
    await served.locked.close();
    served = undefined;
  },
};

/** A small chip kind for the replies target: two 8 × 8 arrays of the hfo2-1t1r physics. */
export function smallProfile(): DeviceProfile {
  const p = loadProfile('hfo2-1t1r');
  return { ...p, name: 'fuzz-small', array: { ...p.array, rows: 8, cols: 8, count: 2 } };
}

/** A board that answers the k-th request with the k-th frame of the current input (its id made the request's). */
let replier: { server: Server; url: string; frames: Frame[]; next: number; sockets: Set<Socket> } | undefined;

async function replyServer(): Promise<NonNullable<typeof replier>> {
  if (replier) return replier;
  const state = { frames: [] as Frame[], next: 0, sockets: new Set<Socket>() };
  const server = createServer((socket) => {
    state.sockets.add(socket);
    const d = new FrameDecoder();
    socket.on('data', (chunk) => {
      for (const req of d.push(chunk)) {
        const f = state.frames.length ? state.frames[state.next++ % state.frames.length]! : undefined;
        let bytes: Uint8Array | undefined;
        try {
          if (f) bytes = encodeFrame({ ...f, id: req.id });
        } catch {
          // an edited frame that cannot be encoded
        }
        // Nothing usable to say: hang up (the host then gives up at once instead of waiting out a timeout).
        if (!bytes) socket.destroy();
        else socket.write(bytes);
      }
    });
    socket.on('error', () => {});
    socket.on('close', () => state.sockets.delete(socket));
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', () => res()));
  replier = Object.assign(state, { server, url: `tcp://127.0.0.1:${(server.address() as AddressInfo).port}` });
  return replier;
}

const replies: Target = {
  name: 'replies',
  what: "a board's replies (identify, status, pulse, read) edited, answered to a host running scan; the map it returns must be valid",
  ext: '.bin',
  mutate: (seed, plan, seeds) => frame.mutate(seed, plan, seeds),
  async run(input) {
    const r = await replyServer();
    r.frames = new FrameDecoder().push(input);
    r.next = 0;
    // Long enough for a loaded machine to answer a valid reply; an input with no usable reply ends at once (the board hangs up).
    const board = await connectBoard(r.url, { timeoutMs: 400, retries: 0 });
    try {
      const map = await scan(board, smallProfile());
      try {
        validateDefectMap(JSON.parse(JSON.stringify(map)));
      } catch (e) {
        throw new Error(`scan returned an invalid defect map: ${(e as Error).message}`);
      }
    } finally {
      await board.close();
    }
  },
  async cleanup() {
    if (!replier) return;
    for (const s of replier.sockets) s.destroy();
    await new Promise<void>((res) => replier!.server.close(() => res()));
    replier = undefined;
  },
};

export const TARGETS: Target[] = [model, artifact, frame, emulatorTcp, replies, npy, defects, profile];

/**
 * A target that fails on purpose (first byte 1: native-style abort, 2: an endless loop, 3: a TypeError),
 * so a test can check the runner classifies crashes, hangs and untyped errors. Only with DENDRA_FUZZ_SELFTEST=1.
 */
const selftest: Target = {
  name: 'selftest',
  what: 'checks the runner itself',
  ext: '.bin',
  // One seed of each kind: the runner replays seeds first, so every outcome shows up however short the run.
  seeds: () => [Uint8Array.of(0, 0, 0), Uint8Array.of(1, 0, 0), Uint8Array.of(2, 0, 0), Uint8Array.of(3, 0, 0)],
  mutate: (seed, plan) => Uint8Array.of(plan.mode % 4, ...seed.subarray(1)),
  async run(input) {
    if (input[0] === 1) process.abort();
    if (input[0] === 2) for (;;);
    if (input[0] === 3) (null as unknown as { x: number }).x;
  },
};

export function targetByName(name: string): Target | undefined {
  if (name === 'selftest' && process.env['DENDRA_FUZZ_SELFTEST'] === '1') return selftest;
  return TARGETS.find((t) => t.name === name);
}
