/**
 * The board emulator: a memristor test board behind the dendra wire protocol v1 (protocol.ts), with its
 * own hidden physical state (emulator-physics.ts). `dendra emulate` runs one as a separate process; tests
 * run one in-process:
 *
 *   const emu = new BoardEmulator({ profile, arrays: 4, faultRate: 0.1, seed: 1 });
 *   const url = await emu.listen('tcp://127.0.0.1:0');    // the port chosen
 *   ...
 *   await emu.close();
 *
 * What it does with each request:
 * - Identify, Status, Read, Infer: answered from the current state (re-executed if resent).
 * - Pulse, Mark (the requests that change the board): the encoded response is kept for the last
 *   CACHE_SIZE request ids; a request whose id, type and body match a kept one is answered from the cache
 *   without being applied again (a client resends the same id after a lost reply, also after reconnecting).
 *   An id that comes back with another body is a new request.
 * - A Pulse request is checked as a whole (every pulse's cell, amplitude, gate, and the width) before any
 *   pulse is applied: a bad one refuses the whole request.
 * - ReadNeurons: 'unsupported' (no dendrite or soma devices). Malformed requests: 'bad-request' naming
 *   the problem. Unexpected failures: 'internal'. The emulator never dies on input.
 *
 * Link faults (seeded, for tests): drop=P loses each incoming and each outgoing frame with probability P;
 * duplicate=P delivers each incoming frame twice (handled twice, as a line that repeats it) and sends each
 * outgoing frame twice, each with probability P; corrupt=P flips one random byte of an outgoing frame with probability P; disconnect-after=N: the N-th
 * frame received (counted over all connections) is applied, then the connection is closed instead of
 * answering, once. On a serial line (no connection to close) the reply is lost and the input buffer reset.
 *
 * Transports: a TCP server (any number of clients, each served in turn; the hidden state and the cache are
 * shared, so a client that reconnects finds everything as it left it) and a virtual serial line (socat pty
 * pair; the emulator holds PATH.board, clients open PATH).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, lstatSync, unlinkSync } from 'node:fs';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { resolve } from 'node:path';
import { crc32 } from 'node:zlib';
import { availableParallelism } from 'node:os';
import { randomUUID } from 'node:crypto';
import { createServer as createTlsServer } from 'node:tls';
import { boardProof, checkToken, hostProof, isNonce, newNonce, sameMac } from './auth.js';
import { dendraVersion } from '../../../artifact/write.js';
import { generateDefects, type DefectMap, type DefectPattern } from '../../../common/defects.js';
import { DeviceError, InputError, ProfileError } from '../../../common/errors.js';
import type { DeviceProfile } from '../../../common/profile.js';
import { Random } from '../../../common/random.js';
import { ChipPhysics, type PulseBatch } from './emulator-physics.js';
import { handleInferTiles, handleReadArrays, handleUpdateRows } from './training-messages.js';
import {
  encodeFrame,
  FrameDecoder,
  MAX_PAYLOAD,
  MessageType,
  PROTOCOL_VERSION,
  RESPONSE,
  bytesOf,
  type ErrorResponse,
  type Frame,
  type IdentifyResponse,
  type StatusResponse,
} from './protocol.js';

export const CACHE_SIZE = 64;
/** Error messages kept for Status. */
const ERRORS_KEPT = 16;

export interface LinkFaults {
  /** Probability of losing each incoming and each outgoing frame. */
  drop?: number;
  /** Probability of delivering each incoming frame twice and of sending each outgoing frame twice. */
  duplicate?: number;
  /** Probability of flipping one random byte of each outgoing frame. */
  corrupt?: number;
  /** Close the connection once, after the N-th frame received (applied, not answered). */
  disconnectAfter?: number;
}

export interface EmulatorOptions {
  profile: DeviceProfile;
  /** Arrays on the board; default the defect map's count, else profile.array.count. */
  arrays?: number;
  /** The chip's stuck cells; otherwise generated with faultRate/onFraction/pattern/seed. */
  defects?: DefectMap;
  /** Fraction of stuck cells when no map is given (default 0). */
  faultRate?: number;
  onFraction?: number;
  pattern?: DefectPattern;
  /** Seeds the generated defects (as `dendra defects generate --seed`), the as-fabricated state, noise and link faults. */
  seed?: number;
  linkFaults?: LinkFaults;
  /** Require this shared token (challenge–response, auth.ts) on every link before any other request. */
  token?: string;
  /** Certificate and key (PEM) for tcps:// listeners. */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** Announce and answer InferTiles (default true); false: a board whose firmware predates it (one Infer per tile). */
  inferTiles?: boolean;
  /** Threads the emulated chip computes an InferTiles request's tiles on (default: the CPUs, at most 4). */
  threads?: number;
}

export interface EmulatorStats {
  connections: number;
  framesIn: number;
  framesOut: number;
  droppedIn: number;
  droppedOut: number;
  corrupted: number;
  disconnects: number;
  /** Requests answered from the duplicate cache. */
  duplicates: number;
  /** Frames the duplicate link fault delivered twice (incoming) and sent twice (outgoing). */
  duplicatedIn: number;
  duplicatedOut: number;
  /** Damaged incoming bytes/frames the decoder skipped. */
  damaged: number;
  /** Auth attempts refused for a wrong token. */
  authFailures: number;
}

/** A refusal the board answers with an ErrorResponse. */
class Refusal extends Error {
  constructor(readonly code: ErrorResponse['code'], message: string) {
    super(message);
  }
}

const refuse = (code: 'bad-request' | 'out-of-range', message: string): never => {
  throw new Refusal(code, message);
};

interface Link {
  send(bytes: Uint8Array): void;
  /** Drop the connection (TCP) or lose the line's state (serial). */
  disconnect(): void;
  decoder: FrameDecoder;
  damagedSeen: number;
  alive: boolean;
  /** Authentication progress on this link (when the board requires a token). */
  auth: { state: 'none' | 'challenged' | 'done'; client?: string; server?: string };
}

interface CacheEntry {
  type: number;
  fingerprint: string;
  response: Uint8Array;
}

/** Parses `drop=P,corrupt=P,disconnect-after=N` (any subset). */
export function parseLinkFaults(spec: string): LinkFaults {
  const out: LinkFaults = {};
  for (const part of spec.split(',').map((s) => s.trim()).filter(Boolean)) {
    const [key, value, extra] = part.split('=');
    if (value === undefined || extra !== undefined) throw new InputError(`--link-faults: '${part}' is not KEY=VALUE (drop=P, duplicate=P, corrupt=P, disconnect-after=N)`);
    const x = Number(value);
    if (key === 'drop' || key === 'duplicate' || key === 'corrupt') {
      if (!(value.trim() !== '' && x >= 0 && x <= 1)) throw new InputError(`--link-faults: ${key} must be a probability from 0 to 1 (got '${value}')`);
      out[key] = x;
    } else if (key === 'disconnect-after') {
      if (!(Number.isInteger(x) && x >= 1)) throw new InputError(`--link-faults: disconnect-after must be a positive integer number of frames (got '${value}')`);
      out.disconnectAfter = x;
    } else {
      throw new InputError(`--link-faults: unknown fault '${key}' (drop, duplicate, corrupt, disconnect-after)`);
    }
  }
  return out;
}

/** The arrays the emulated chip's stuck cells sit on, from the options (checked). */
function chipDefects(opts: EmulatorOptions): DefectMap {
  const { profile } = opts;
  const { rows, cols } = profile.array;
  if (rows === null || cols === null) throw new ProfileError(`device '${profile.name}' has unlimited arrays; a board emulator needs a finite array size`);
  if (profile.pulse === null) {
    throw new ProfileError(`device profile '${profile.name}' has no pulse model ("pulse": null), so its cells' response to SET/RESET pulses is unknown and it cannot be emulated; add a "pulse" section (docs/device-profile.md)`);
  }
  if (opts.arrays !== undefined && !(Number.isInteger(opts.arrays) && opts.arrays >= 1)) throw new InputError(`arrays must be a positive integer (got ${opts.arrays})`);
  if (opts.defects) {
    if (opts.faultRate !== undefined) throw new InputError('give either a defect map or a fault rate, not both');
    const map = opts.defects;
    if (map.device !== profile.name) throw new InputError(`the defect map describes a '${map.device}' chip, but the emulated board is '${profile.name}'`);
    map.arrays.forEach((a, i) => {
      if (a.rows !== rows || a.cols !== cols) throw new InputError(`defect map array ${i} is ${a.rows} × ${a.cols}, but '${profile.name}' arrays are ${rows} × ${cols}`);
    });
    const n = opts.arrays ?? map.arrays.length;
    if (n > map.arrays.length) throw new InputError(`the defect map describes ${map.arrays.length} arrays, fewer than the ${n} asked for`);
    return { ...map, arrays: map.arrays.slice(0, n).map((a) => ({ rows: a.rows, cols: a.cols, faults: a.faults.map((f) => [...f] as typeof f) })) };
  }
  const n = opts.arrays ?? profile.array.count;
  if (!n) throw new InputError(`device '${profile.name}' does not say how many arrays a chip has; give the number of arrays`);
  return generateDefects(profile, { rate: opts.faultRate ?? 0, onFraction: opts.onFraction, pattern: opts.pattern, seed: opts.seed ?? 0, arrays: n });
}

export class BoardEmulator {
  readonly profile: DeviceProfile;
  readonly serial: string;
  /** This start's state identity (protocol: boot): a fresh random id per emulator instance, i.e. per board start. */
  readonly boot: string = randomUUID();
  readonly #token: string | undefined;
  readonly #tls: EmulatorOptions['tls'];
  readonly #chip: ChipPhysics;
  readonly #linkFaults: LinkFaults;
  readonly #linkRng: Random;
  readonly #cache = new Map<number, CacheEntry>();
  readonly #stats: EmulatorStats = { connections: 0, framesIn: 0, framesOut: 0, droppedIn: 0, droppedOut: 0, corrupted: 0, disconnects: 0, duplicates: 0, duplicatedIn: 0, duplicatedOut: 0, damaged: 0, authFailures: 0 };
  #disconnected = false;
  #deployment: StatusResponse['deployment'] = null;
  #counters = { pulses: 0, cellPulses: 0, reads: 0, infers: 0 };
  #errors: string[] = [];
  readonly #servers: Server[] = [];
  readonly #sockets = new Set<Socket>();
  readonly #closers: (() => Promise<void>)[] = [];
  #closed = false;
  /** Whether the board announces and answers InferTiles (EmulatorOptions.inferTiles; tests may switch it). */
  inferTiles: boolean;
  readonly #threads: number;

  constructor(opts: EmulatorOptions) {
    this.profile = opts.profile;
    this.inferTiles = opts.inferTiles ?? true;
    const threads = opts.threads ?? Math.min(4, availableParallelism());
    if (!(Number.isInteger(threads) && threads >= 1 && threads <= 256)) throw new InputError(`emulator threads must be an integer from 1 to 256 (got ${threads})`);
    this.#threads = threads;
    const defects = chipDefects(opts);
    const seed = (opts.seed ?? 0) >>> 0;
    this.#chip = new ChipPhysics(opts.profile, defects, seed);
    const lf = opts.linkFaults ?? {};
    for (const k of ['drop', 'duplicate', 'corrupt'] as const) {
      const p = lf[k];
      if (p !== undefined && !(p >= 0 && p <= 1)) throw new InputError(`link fault ${k} must be a probability from 0 to 1 (got ${p})`);
    }
    if (lf.disconnectAfter !== undefined && !(Number.isInteger(lf.disconnectAfter) && lf.disconnectAfter >= 1)) throw new InputError(`link fault disconnect-after must be a positive integer (got ${lf.disconnectAfter})`);
    this.#linkFaults = { ...lf };
    this.#token = opts.token === undefined ? undefined : checkToken(opts.token, 'emulator');
    this.#tls = opts.tls;
    this.#linkRng = new Random((seed ^ 0x11f4a017) >>> 0);
    // A stable identity: same profile, seed and stuck cells → same serial.
    let h = crc32(`${opts.profile.name}|${seed}|${defects.arrays.length}`);
    for (const a of defects.arrays) h = crc32(JSON.stringify(a.faults), h);
    this.serial = `emu-${h.toString(16).padStart(8, '0')}`;
  }

  get arrays(): number {
    return this.#chip.count;
  }
  get rows(): number {
    return this.#chip.rows;
  }
  get cols(): number {
    return this.#chip.cols;
  }
  /** Stuck cells over all arrays. */
  get stuckCount(): number {
    return this.#chip.defects.arrays.reduce((s, a) => s + a.faults.length, 0);
  }

  /** For tests: what array a really holds (row-major, siemens). */
  trueConductances(array: number): Float32Array {
    if (!(Number.isInteger(array) && array >= 0 && array < this.arrays)) throw new RangeError(`no array ${array}`);
    return this.#chip.trueConductances(array);
  }

  /** For tests: the hidden stuck cells, as a defect map. */
  stuckMap(): DefectMap {
    const d = this.#chip.defects;
    return {
      format: 'dendra-defects',
      version: 1,
      device: d.device,
      arrays: d.arrays.map((a) => ({ rows: a.rows, cols: a.cols, faults: a.faults.map((f) => [...f] as typeof f) })),
      origin: { ...(d.origin ?? {}), emulator: this.serial },
    };
  }

  /** For tests: the device-to-device SET factors of an array. */
  setFactors(array: number): Float32Array {
    return this.#chip.setFactors(array);
  }

  stats(): EmulatorStats {
    return { ...this.#stats };
  }

  // ---- the protocol ----

  /** Answers one request frame: the encoded response (before link faults). */
  handle(frame: Frame): Uint8Array {
    const cacheable = frame.type === MessageType.Pulse || frame.type === MessageType.Mark || frame.type === MessageType.UpdateRows;
    let fingerprint = '';
    if (cacheable) {
      fingerprint = `${crc32(JSON.stringify(frame.json ?? null))}:${crc32(frame.data)}:${frame.data.length}`;
      const hit = this.#cache.get(frame.id);
      if (hit && hit.type === frame.type && hit.fingerprint === fingerprint) {
        this.#stats.duplicates++;
        return hit.response;
      }
    }
    let response: Uint8Array;
    try {
      const { json, data } = this.#dispatch(frame);
      response = encodeFrame({ type: frame.type | RESPONSE, id: frame.id, json, data: data ?? new Uint8Array(0) });
    } catch (e) {
      const refusal = e instanceof Refusal ? e : new Refusal('internal', `the emulator failed on this request: ${(e as Error)?.message ?? String(e)}`);
      this.#errors.push(`${refusal.code}: ${refusal.message}`);
      if (this.#errors.length > ERRORS_KEPT) this.#errors.shift();
      const body: ErrorResponse = { code: refusal.code, message: refusal.message };
      response = encodeFrame({ type: MessageType.Error, id: frame.id, json: body, data: new Uint8Array(0) });
    }
    if (cacheable) {
      this.#cache.delete(frame.id);
      this.#cache.set(frame.id, { type: frame.type, fingerprint, response });
      if (this.#cache.size > CACHE_SIZE) this.#cache.delete(this.#cache.keys().next().value!);
    }
    return response;
  }

  #dispatch(frame: Frame): { json: unknown; data?: Uint8Array } {
    if (frame.type & RESPONSE) throw new Refusal('bad-request', `frame type 0x${frame.type.toString(16)} is a response or error type, not a request`);
    const body = frame.json;
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new Refusal('bad-request', `the request's JSON part must be an object (got ${Array.isArray(body) ? 'an array' : JSON.stringify(body)})`);
    const b = body as Record<string, unknown>;
    switch (frame.type) {
      case MessageType.Identify:
        return { json: this.#identify() };
      case MessageType.Status:
        return { json: this.#status() };
      case MessageType.Read:
        return this.#read(b);
      case MessageType.Pulse:
        return this.#pulse(b, frame.data);
      case MessageType.Infer:
        return this.#infer(b, frame.data);
      case MessageType.ReadNeurons:
        throw new Refusal('unsupported', 'this board has no dendrite or soma devices (features.dendrites and features.soma are false)');
      case MessageType.Mark:
        return this.#mark(b);
      case MessageType.UpdateRows: {
        const r = handleUpdateRows(this.#chip, b, frame.data, refuse);
        this.#counters.pulses += r.pulses;
        this.#counters.cellPulses += r.cellPulses;
        return { json: r.json };
      }
      case MessageType.InferTiles: {
        if (!this.inferTiles) throw new Refusal('unsupported', `unknown request type 0x${frame.type.toString(16).padStart(2, '0')} (this firmware has no InferTiles)`);
        const r = handleInferTiles(this.#chip, b, frame.data, this.inferVoltageLimit, refuse, this.#threads);
        this.#counters.infers += r.tiles;
        return { json: r.json, data: r.data };
      }
      case MessageType.ReadArrays: {
        const r = handleReadArrays(this.#chip, b, refuse);
        this.#counters.reads += r.reads;
        return { json: r.json, data: r.data };
      }
      default:
        throw new Refusal('unsupported', `unknown request type 0x${frame.type.toString(16).padStart(2, '0')} (protocol ${PROTOCOL_VERSION})`);
    }
  }

  #identify(): IdentifyResponse {
    const p = this.#chip.pulseModel;
    return {
      protocol: PROTOCOL_VERSION,
      firmware: `dendra-emulator ${dendraVersion()}`,
      board: 'dendra board emulator',
      serial: this.serial,
      cellType: '1T1R',
      device: this.profile.name,
      arrays: Array.from({ length: this.arrays }, () => ({ rows: this.rows, cols: this.cols })),
      limits: {
        setVoltage: [p.amplitude[0], p.amplitude[1]],
        resetVoltage: [-p.amplitude[1], -p.amplitude[0]],
        gateVoltage: [p.gate[0], p.gate[1]],
        width: [p.width[0], p.width[1]],
      },
      readVoltage: this.profile.read.voltage,
      features: { dendrites: false, soma: false, updateRows: true, readArrays: true, inferTiles: this.inferTiles, sharedVoltages: this.inferTiles },
      boot: this.boot,
      auth: this.#token !== undefined,
    };
  }

  #status(): StatusResponse & Record<string, unknown> {
    return {
      state: this.#deployment === null ? 'idle' : this.#deployment.state,
      deployment: this.#deployment === null ? null : { ...this.#deployment },
      pulses: this.#counters.pulses,
      reads: this.#counters.reads,
      errors: [...this.#errors],
      boot: this.boot,
      // Beyond StatusResponse: more counters, and the link faults the emulator injected.
      cellPulses: this.#counters.cellPulses,
      infers: this.#counters.infers,
      pulseEnergy: this.#chip.chip.totals().energy,
      link: this.stats(),
    };
  }

  #int(b: Record<string, unknown>, key: string, lo: number, hi: number, what = key): number {
    const v = b[key];
    if (typeof v !== 'number' || !Number.isInteger(v)) throw new Refusal('bad-request', `'${what}' must be an integer (got ${JSON.stringify(v) ?? 'nothing'})`);
    if (v < lo || v > hi) throw new Refusal('bad-request', `'${what}' = ${v} is outside ${lo}..${hi}`);
    return v;
  }

  #arrayIndex(b: Record<string, unknown>): number {
    const v = b['array'];
    if (typeof v !== 'number' || !Number.isInteger(v)) throw new Refusal('bad-request', `'array' must be an integer (got ${JSON.stringify(v) ?? 'nothing'})`);
    if (v < 0 || v >= this.arrays) throw new Refusal('bad-request', `array ${v} does not exist: this board has arrays 0..${this.arrays - 1}`);
    return v;
  }

  #read(b: Record<string, unknown>): { json: unknown; data: Uint8Array } {
    const array = this.#arrayIndex(b);
    const row = this.#int(b, 'row', 0, this.rows - 1);
    const col = this.#int(b, 'col', 0, this.cols - 1);
    const rows = this.#int(b, 'rows', 1, this.rows);
    const cols = this.#int(b, 'cols', 1, this.cols);
    if (row + rows > this.rows || col + cols > this.cols) {
      throw new Refusal('bad-request', `region rows ${row}..${row + rows - 1}, cols ${col}..${col + cols - 1} leaves the ${this.rows} × ${this.cols} array`);
    }
    const g = this.#chip.read(array, row, col, rows, cols);
    this.#counters.reads++;
    return { json: { array, row, col, rows, cols }, data: bytesOf(g) };
  }

  #pulse(b: Record<string, unknown>, data: Uint8Array): { json: unknown } {
    const p = this.#chip.pulseModel;
    const array = this.#arrayIndex(b);
    const width = b['width'];
    if (typeof width !== 'number' || !Number.isFinite(width)) throw new Refusal('bad-request', `'width' must be a pulse width in seconds (got ${JSON.stringify(width) ?? 'nothing'})`);
    if (width < p.width[0] || width > p.width[1]) throw new Refusal('out-of-range', `pulse width ${width} s is outside the board's ${p.width[0]}–${p.width[1]} s`);
    const n = this.#int(b, 'cells', 0, Math.floor(MAX_PAYLOAD / 16));
    if (data.length !== n * 16) throw new Refusal('bad-request', `'cells' = ${n} needs ${n * 16} bytes of pulses (16 each: int32 row, int32 col, float32 amplitude, float32 gate), got ${data.length}`);
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    const batch: PulseBatch = { row: new Int32Array(n), col: new Int32Array(n), amplitude: new Float32Array(n), gate: new Float32Array(n) };
    for (let k = 0; k < n; k++) {
      const row = view.getInt32(16 * k, true);
      const col = view.getInt32(16 * k + 4, true);
      const amp = view.getFloat32(16 * k + 8, true);
      const gate = view.getFloat32(16 * k + 12, true);
      const where = `pulse ${k} (row ${row}, col ${col})`;
      if (row < 0 || row >= this.rows) throw new Refusal('bad-request', `${where}: row ${row} is outside 0..${this.rows - 1}`);
      if (col < -1 || col >= this.cols) throw new Refusal('bad-request', `${where}: col ${col} is outside 0..${this.cols - 1} (or -1 for the whole row)`);
      if (!Number.isFinite(amp)) throw new Refusal('bad-request', `${where}: amplitude is not a finite number`);
      if (!Number.isFinite(gate)) throw new Refusal('bad-request', `${where}: gate voltage is not a finite number`);
      const mag = Math.abs(amp);
      if (mag < Math.fround(p.amplitude[0]) || mag > Math.fround(p.amplitude[1])) {
        throw new Refusal('out-of-range', `${where}: amplitude ${amp} V is outside the board's ${p.amplitude[0]}–${p.amplitude[1]} V (SET > 0, RESET < 0)`);
      }
      batch.row[k] = row;
      batch.col[k] = col;
      batch.amplitude[k] = amp;
      batch.gate[k] = gate;
    }
    this.#chip.pulse(array, batch, width);
    this.#counters.pulses += n;
    for (let k = 0; k < n; k++) this.#counters.cellPulses += batch.col[k]! < 0 ? this.cols : 1;
    return { json: { applied: n } };
  }

  #indexList(b: Record<string, unknown>, key: 'rows' | 'cols', size: number): number[] {
    const v = b[key];
    if (!Array.isArray(v) || v.length === 0) throw new Refusal('bad-request', `'${key}' must be a non-empty list of ${key === 'rows' ? 'row' : 'column'} indices`);
    if (v.length > size) throw new Refusal('bad-request', `'${key}' lists ${v.length} indices; the array has ${size}`);
    const seen = new Uint8Array(size);
    for (const [i, x] of v.entries()) {
      if (typeof x !== 'number' || !Number.isInteger(x) || x < 0 || x >= size) throw new Refusal('bad-request', `'${key}[${i}]' = ${JSON.stringify(x)} is not an index from 0 to ${size - 1}`);
      if (seen[x]) throw new Refusal('bad-request', `'${key}' lists ${x} twice`);
      seen[x] = 1;
    }
    return v as number[];
  }

  #infer(b: Record<string, unknown>, data: Uint8Array): { json: unknown; data: Uint8Array } {
    const array = this.#arrayIndex(b);
    const rows = this.#indexList(b, 'rows', this.rows);
    const cols = this.#indexList(b, 'cols', this.cols);
    const batch = this.#int(b, 'batch', 1, MAX_PAYLOAD);
    if (data.length !== batch * rows.length * 4) {
      throw new Refusal('bad-request', `batch ${batch} × ${rows.length} rows needs ${batch * rows.length * 4} bytes of float32 voltages, got ${data.length}`);
    }
    if (batch * cols.length * 4 + 1024 > MAX_PAYLOAD) throw new Refusal('out-of-range', `the currents of batch ${batch} × ${cols.length} columns would exceed the ${MAX_PAYLOAD}-byte frame limit; send a smaller batch`);
    const voltages = new Float32Array(batch * rows.length);
    new Uint8Array(voltages.buffer).set(data);
    const limit = this.inferVoltageLimit;
    for (let i = 0; i < voltages.length; i++) {
      const v = voltages[i]!;
      if (!Number.isFinite(v)) throw new Refusal('bad-request', `voltage ${i} (sample ${Math.floor(i / rows.length)}, row ${rows[i % rows.length]}) is not a finite number`);
      if (Math.abs(v) > limit) throw new Refusal('out-of-range', `voltage ${v} V (sample ${Math.floor(i / rows.length)}, row ${rows[i % rows.length]}) exceeds the ${limit} V an inference may drive without disturbing the cells`);
    }
    const currents = this.#chip.infer(array, rows, cols, voltages, batch);
    this.#counters.infers++;
    return { json: { array, batch, cols: cols.length }, data: bytesOf(currents) };
  }

  /** Largest |V| an Infer may drive: the read voltage, or the RESET threshold if that is higher. */
  get inferVoltageLimit(): number {
    return Math.max(this.profile.read.voltage, this.#chip.pulseModel.threshold);
  }

  #mark(b: Record<string, unknown>): { json: unknown } {
    const artifact = b['artifact'];
    const state = b['state'];
    if (typeof artifact !== 'string' || artifact.length === 0 || artifact.length > 256) throw new Refusal('bad-request', `'artifact' must be the artifact's id, a non-empty string of at most 256 characters`);
    if (state !== 'programming' && state !== 'ready' && state !== 'cleared') throw new Refusal('bad-request', `'state' must be "programming", "ready" or "cleared" (got ${JSON.stringify(state) ?? 'nothing'})`);
    const boot = b['boot'];
    if (boot !== undefined && typeof boot !== 'string') throw new Refusal('bad-request', `'boot' must be the board's boot id (a string)`);
    if (boot !== undefined && boot !== this.boot) throw new Refusal('state-lost', `this board restarted (boot ${this.boot}, not ${boot.slice(0, 64)}): what was programmed before is gone`);
    if (state === 'cleared') this.#deployment = null;
    else if (state === 'programming') this.#deployment = { artifact, state };
    else {
      if (this.#deployment?.artifact !== artifact) {
        throw new Refusal('bad-request', `cannot mark ${artifact} ready: it is not being programmed on this board (mark it 'programming' before the first pulse)`);
      }
      this.#deployment = { artifact, state };
    }
    return { json: { deployment: this.#deployment } };
  }

  // ---- links ----

  #onData(link: Link, chunk: Uint8Array): void {
    if (!link.alive) return;
    let frames: Frame[];
    try {
      frames = link.decoder.push(chunk);
    } catch {
      link.decoder.reset();
      return;
    }
    this.#stats.damaged += link.decoder.dropped - link.damagedSeen;
    link.damagedSeen = link.decoder.dropped;
    const lf = this.#linkFaults;
    for (const frame of frames) {
      if (!link.alive) break;
      this.#stats.framesIn++;
      if (lf.drop && this.#linkRng.next() < lf.drop) {
        this.#stats.droppedIn++;
        continue;
      }
      const response = this.#authGate(link, frame) ?? this.handle(frame);
      if (lf.duplicate && frame.type !== MessageType.Auth && this.#linkRng.next() < lf.duplicate) {
        // The line delivered this frame twice: the board sees (and answers) it again (not Auth: a repeated
        // hello would replace the challenge the host is answering).
        this.#stats.duplicatedIn++;
        this.#send(link, this.#authGate(link, frame) ?? this.handle(frame));
      }
      if (lf.disconnectAfter && !this.#disconnected && this.#stats.framesIn >= lf.disconnectAfter) {
        this.#disconnected = true;
        this.#stats.disconnects++;
        link.disconnect();
        break;
      }
      this.#send(link, response);
    }
  }

  /** With a token: answers Auth requests and refuses everything else until the link is authenticated. null: pass on. */
  #authGate(link: Link, frame: Frame): Uint8Array | null {
    const refuse = (code: ErrorResponse['code'], message: string) => encodeFrame({ type: MessageType.Error, id: frame.id, json: { code, message } satisfies ErrorResponse, data: new Uint8Array(0) });
    if (frame.type !== MessageType.Auth) {
      if (this.#token === undefined || link.auth.state === 'done') return null;
      return refuse('unauthorized', 'this board requires a token: authenticate (Auth) first');
    }
    if (this.#token === undefined) return refuse('unsupported', 'this board has no token configured; Auth is not used');
    const b = (typeof frame.json === 'object' && frame.json !== null ? frame.json : {}) as Record<string, unknown>;
    if (b['step'] === 'hello' && isNonce(b['client'])) {
      const server = newNonce();
      link.auth = { state: 'challenged', client: b['client'], server };
      return encodeFrame({ type: frame.type | RESPONSE, id: frame.id, json: { server, mac: boardProof(this.#token, b['client'], server) }, data: new Uint8Array(0) });
    }
    if (b['step'] === 'prove' && link.auth.state === 'challenged') {
      const ok = sameMac(b['mac'], hostProof(this.#token, link.auth.server!, link.auth.client!));
      link.auth = ok ? { state: 'done' } : { state: 'none' };
      if (!ok) {
        this.#stats.authFailures++;
        return refuse('unauthorized', 'wrong token');
      }
      return encodeFrame({ type: frame.type | RESPONSE, id: frame.id, json: { ok: true }, data: new Uint8Array(0) });
    }
    link.auth = { state: 'none' };
    return refuse('bad-request', "Auth takes {step: 'hello', client: NONCE} and then {step: 'prove', mac: MAC}");
  }

  #send(link: Link, response: Uint8Array): void {
    const lf = this.#linkFaults;
    this.#stats.framesOut++;
    if (lf.drop && this.#linkRng.next() < lf.drop) {
      this.#stats.droppedOut++;
      return;
    }
    let bytes = response;
    if (lf.corrupt && this.#linkRng.next() < lf.corrupt) {
      bytes = response.slice();
      bytes[this.#linkRng.int(bytes.length)]! ^= 1 + this.#linkRng.int(255);
      this.#stats.corrupted++;
    }
    link.send(bytes);
    if (lf.duplicate && this.#linkRng.next() < lf.duplicate) {
      this.#stats.duplicatedOut++;
      link.send(bytes);
    }
  }

  /**
   * Serves on `tcp://HOST:PORT` (port 0: any free port) or on a virtual serial pair `pty:PATH` (clients
   * open PATH). Resolves with the URL clients use: `tcp://HOST:PORT` with the actual port, or
   * `serial://PATH` (absolute).
   */
  async listen(url: string): Promise<string> {
    if (this.#closed) throw new DeviceError('the emulator is closed');
    if (url.startsWith('pty:')) return this.#listenPty(url.slice('pty:'.length).replace(/^\/\/(?=\/)/, ''));
    // A bare port listens on the loopback interface only.
    if (/^\d+$/.test(url)) url = `tcp://127.0.0.1:${url}`;
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw new InputError(`cannot listen on '${url}': expected tcp://HOST:PORT, tcps://HOST:PORT or a port`);
    }
    if ((u.protocol !== 'tcp:' && u.protocol !== 'tcps:') || !u.hostname || u.port === '' || (u.pathname !== '' && u.pathname !== '/')) throw new InputError(`cannot listen on '${url}': expected tcp://HOST:PORT or tcps://HOST:PORT (port 0 picks a free port)`);
    const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
    const secure = u.protocol === 'tcps:';
    if (secure && !this.#tls) throw new InputError(`cannot listen on '${url}': tcps:// needs a certificate and key (--tls-cert, --tls-key)`);
    const server: Server = secure
      ? createTlsServer({ cert: this.#tls!.cert, key: this.#tls!.key, minVersion: 'TLSv1.2' }, (socket) => this.#serveSocket(socket))
      : createServer((socket) => this.#serveSocket(socket));
    if (secure) server.on('tlsClientError', () => {});
    await new Promise<void>((res, rej) => {
      server.once('error', (e: NodeJS.ErrnoException) => rej(new DeviceError(`cannot listen on ${url}: ${e.code ?? e.message}`)));
      server.listen(Number(u.port), host, () => res());
    });
    server.on('error', () => {});
    this.#servers.push(server);
    const addr = server.address() as AddressInfo;
    return `${secure ? 'tcps' : 'tcp'}://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}`;
  }

  #serveSocket(socket: Socket): void {
    if (this.#closed) {
      socket.destroy();
      return;
    }
    this.#stats.connections++;
    this.#sockets.add(socket);
    socket.setNoDelay(true);
    const link: Link = {
      decoder: new FrameDecoder(),
      damagedSeen: 0,
      alive: true,
      auth: { state: 'none' },
      send: (bytes) => {
        if (link.alive && !socket.destroyed) socket.write(bytes);
      },
      disconnect: () => {
        link.alive = false;
        socket.destroy();
      },
    };
    socket.on('data', (chunk: Buffer) => {
      try {
        this.#onData(link, chunk);
      } catch {
        // never let a link take the process down
      }
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      link.alive = false;
      this.#sockets.delete(socket);
    });
  }

  async #listenPty(path: string): Promise<string> {
    if (!path) throw new InputError('--pty needs a path, e.g. /tmp/dendra-tty');
    if (/[\s,:!'"\\]/.test(path)) throw new InputError(`--pty path '${path}' must not contain spaces or any of , : ! ' " \\ (socat address syntax)`);
    const client = resolve(path);
    const board = `${client}.board`;
    const child = spawn('socat', ['-d', '-d', `pty,raw,echo=0,link=${client}`, `pty,raw,echo=0,link=${board}`], { stdio: ['ignore', 'ignore', 'pipe'] });
    const exited = new Promise<void>((res) => child.once('exit', () => res()));
    const kill = async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 2000))]);
      }
      for (const p of [client, board]) {
        try {
          if (lstatSync(p).isSymbolicLink()) unlinkSync(p);
        } catch {
          // gone already
        }
      }
    };
    try {
      await waitForSocat(child, client);
    } catch (e) {
      await kill();
      throw e;
    }
    let port: import('serialport').SerialPort;
    try {
      const { SerialPort } = await import('serialport');
      port = new SerialPort({ path: board, baudRate: 115200, autoOpen: false });
      await new Promise<void>((res, rej) => port.open((err) => (err ? rej(err) : res())));
    } catch (e) {
      await kill();
      throw new DeviceError(`cannot open the emulator's end of the virtual serial pair ${board}: ${(e as Error).message}`);
    }
    this.#stats.connections++;
    const link: Link = {
      decoder: new FrameDecoder(),
      damagedSeen: 0,
      alive: true,
      auth: { state: 'none' },
      send: (bytes) => {
        if (port.isOpen) port.write(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
      },
      // A serial line has no connection to drop: the reply is lost and whatever was half-received with it.
      disconnect: () => {
        link.decoder.reset();
        link.damagedSeen = 0;
      },
    };
    port.on('data', (chunk: Buffer) => {
      try {
        this.#onData(link, chunk);
      } catch {
        // never let a link take the process down
      }
    });
    port.on('error', () => {});
    this.#closers.push(async () => {
      link.alive = false;
      if (port.isOpen) await new Promise<void>((res) => port.close(() => res()));
      await kill();
    });
    return `serial://${client}`;
  }

  /** Stops serving: closes every connection, server and serial pair (the socat child is killed). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const s of this.#sockets) s.destroy();
    this.#sockets.clear();
    await Promise.all(this.#servers.map((s) => new Promise<void>((res) => s.close(() => res()))));
    this.#servers.length = 0;
    await Promise.all(this.#closers.map((c) => c()));
    this.#closers.length = 0;
  }
}

/** Waits for socat to report its pty pair ready, or explains why it did not start. */
function waitForSocat(child: ChildProcess, client: string): Promise<void> {
  return new Promise<void>((res, rej) => {
    let log = '';
    const timer = setTimeout(() => finish(new DeviceError(`socat did not set up the virtual serial pair ${client} within 5 s${log ? `: ${lastLine(log)}` : ''}`)), 5000);
    const finish = (err?: Error) => {
      clearTimeout(timer);
      child.stderr?.removeListener('data', onData);
      child.removeListener('error', onError);
      child.removeListener('exit', onExit);
      child.stderr?.resume(); // keep draining socat's log so it never blocks
      if (err) rej(err);
      else res();
    };
    const onData = (chunk: Buffer) => {
      log += chunk.toString('utf8');
      if (log.includes('starting data transfer loop') && existsSync(client)) finish();
    };
    const onError = (e: NodeJS.ErrnoException) =>
      finish(e.code === 'ENOENT' ? new DeviceError('--pty needs socat, which is not installed (apt-get install socat)') : new DeviceError(`cannot start socat: ${e.message}`));
    const onExit = (code: number | null) => finish(new DeviceError(`socat exited (status ${code}) before the virtual serial pair was ready${log ? `: ${lastLine(log)}` : ''}`));
    child.stderr?.on('data', onData);
    child.once('error', onError);
    child.once('exit', onExit);
  });
}

/** socat's error line (level E), else its last line, without the date and pid. */
function lastLine(s: string): string {
  const lines = s.trim().split('\n');
  const line = lines.find((l) => /socat\[\d+\] E /.test(l)) ?? lines[lines.length - 1]!;
  return line.replace(/^\S+ \S+ socat\[\d+\] \w /, '');
}
