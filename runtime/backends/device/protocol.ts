/**
 * The dendra board protocol, version 1 (docs/protocol.md): framing, message types, payload encoding.
 * Shared by the driver (client) and the board emulator (server). No I/O here.
 *
 * Frame:
 *   0   magic    2   0xDE 0x1D
 *   2   version  1   PROTOCOL_VERSION
 *   3   type     1   request type; its response is type | 0x80; an error response is 0xFF
 *   4   id       4   uint32 LE request id (a response echoes it)
 *   8   length   4   uint32 LE payload bytes (<= MAX_PAYLOAD)
 *   12  hcrc     4   CRC-32 of bytes 0..11 (a corrupted length is caught at once)
 *   16  payload  length bytes: uint32 LE JSON length, UTF-8 JSON, then binary data (little-endian)
 *   ..  pcrc     4   CRC-32 of the payload
 */
import { crc32 } from 'node:zlib';

export const PROTOCOL_VERSION = 1;
export const MAGIC0 = 0xde;
export const MAGIC1 = 0x1d;
export const HEADER_BYTES = 16;
export const MAX_PAYLOAD = 64 * 1024 * 1024;

export const MessageType = {
  Identify: 0x01,
  Status: 0x02,
  Read: 0x03,
  Pulse: 0x04,
  Infer: 0x05,
  ReadNeurons: 0x06,
  Mark: 0x07,
  /** Challenge–response authentication with a shared token (auth.ts); the first request on a link to a board that requires a token. */
  Auth: 0x08,
  /** Training messages (docs/protocol.md "Training"; training-messages.ts): a board announces them in Identify.features. */
  UpdateRows: 0x10,
  ReadArrays: 0x11,
  InferTiles: 0x12,
  Error: 0xff,
} as const;
export type MessageType = (typeof MessageType)[keyof typeof MessageType];
export const RESPONSE = 0x80;

export interface Frame {
  type: number;
  id: number;
  /** The JSON part of the payload. */
  json: unknown;
  /** The binary part of the payload (may be empty). */
  data: Uint8Array;
}

export function encodeFrame(frame: Frame): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(frame.json ?? {}));
  const length = 4 + json.length + frame.data.length;
  if (length > MAX_PAYLOAD) throw new RangeError(`frame payload of ${length} bytes exceeds ${MAX_PAYLOAD}`);
  const out = new Uint8Array(HEADER_BYTES + length + 4);
  const view = new DataView(out.buffer);
  out[0] = MAGIC0;
  out[1] = MAGIC1;
  out[2] = PROTOCOL_VERSION;
  out[3] = frame.type;
  view.setUint32(4, frame.id >>> 0, true);
  view.setUint32(8, length, true);
  view.setUint32(12, crc32(out.subarray(0, 12)), true);
  view.setUint32(HEADER_BYTES, json.length, true);
  out.set(json, HEADER_BYTES + 4);
  out.set(frame.data, HEADER_BYTES + 4 + json.length);
  view.setUint32(HEADER_BYTES + length, crc32(out.subarray(HEADER_BYTES, HEADER_BYTES + length)), true);
  return out;
}

/**
 * Incremental decoder for a byte stream: push chunks, take whole frames. Damaged bytes (bad magic,
 * header or payload CRC, unknown version, oversize length, unparsable JSON) are skipped by resynchronising
 * on the next magic; `dropped` counts the frames lost that way.
 *
 * Linear time: bytes are appended to a buffer that grows by doubling and is compacted only when the
 * unread part fits in its first half, so each byte is copied O(1) times on average however the frame
 * is chunked; the header and payload CRCs are computed once, when the whole frame is there. A frame is
 * at most MAX_PAYLOAD + 20 bytes, so the buffer never exceeds about twice that.
 */
export class FrameDecoder {
  #store = new Uint8Array(0);
  /** Unread bytes are #store[#start, #end). */
  #start = 0;
  #end = 0;
  dropped = 0;
  /** Bytes moved inside the buffer (growth and compaction): bounded by a small multiple of the bytes pushed. */
  copied = 0;

  #append(chunk: Uint8Array): void {
    const live = this.#end - this.#start;
    if (this.#end + chunk.length > this.#store.length) {
      const need = live + chunk.length;
      this.copied += live;
      if (need <= this.#store.length >>> 1) {
        this.#store.copyWithin(0, this.#start, this.#end);
      } else {
        const grown = new Uint8Array(Math.max(need, 2 * this.#store.length, 4096));
        grown.set(this.#store.subarray(this.#start, this.#end));
        this.#store = grown;
      }
      this.#start = 0;
      this.#end = live;
    }
    this.#store.set(chunk, this.#end);
    this.#end += chunk.length;
  }

  push(chunk: Uint8Array): Frame[] {
    this.#append(chunk);
    const store = this.#store;
    const end = this.#end;
    const frames: Frame[] = [];
    let at = this.#start;
    for (;;) {
      // Find the magic.
      while (at + 1 < end && !(store[at] === MAGIC0 && store[at + 1] === MAGIC1)) at++;
      if (at + HEADER_BYTES > end) break;
      const view = new DataView(store.buffer, store.byteOffset + at);
      const length = view.getUint32(8, true);
      const headerOk = view.getUint32(12, true) === crc32(store.subarray(at, at + 12)) && store[at + 2] === PROTOCOL_VERSION && length <= MAX_PAYLOAD && length >= 4;
      if (!headerOk) {
        this.dropped++;
        at++;
        continue;
      }
      if (at + HEADER_BYTES + length + 4 > end) break;
      const payload = store.subarray(at + HEADER_BYTES, at + HEADER_BYTES + length);
      const pcrc = new DataView(store.buffer, store.byteOffset + at + HEADER_BYTES + length).getUint32(0, true);
      if (pcrc !== crc32(payload)) {
        this.dropped++;
        at++;
        continue;
      }
      const jsonLength = new DataView(payload.buffer, payload.byteOffset).getUint32(0, true);
      let json: unknown;
      try {
        if (4 + jsonLength > payload.length) throw new Error('json length');
        json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(payload.subarray(4, 4 + jsonLength)));
      } catch {
        this.dropped++;
        at++;
        continue;
      }
      frames.push({ type: store[at + 3]!, id: view.getUint32(4, true), json, data: payload.slice(4 + jsonLength) });
      at += HEADER_BYTES + length + 4;
    }
    // Nothing before `at` is needed again (a frame in progress starts at `at`).
    this.#start = Math.min(at, end);
    if (this.#start === this.#end) this.#start = this.#end = 0;
    return frames;
  }

  reset(): void {
    this.#store = new Uint8Array(0);
    this.#start = this.#end = 0;
  }
}

/** Float32 data in a frame's binary part (copied, so it is aligned). */
export function floats(data: Uint8Array): Float32Array {
  const copy = new Uint8Array(data.length - (data.length % 4));
  copy.set(data.subarray(0, copy.length));
  return new Float32Array(copy.buffer);
}

export function bytesOf(a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

// ---- Message bodies (the JSON part). Binary parts are described beside each. ----

export interface IdentifyResponse {
  protocol: number;
  firmware: string;
  board: string;
  /** A stable identifier of this chip (a scan records it; deploy refuses an artifact placed for another chip). */
  serial: string;
  cellType: '1T1R';
  /** The device profile the chip follows (its name); the full profile is not sent. */
  device: string;
  arrays: { rows: number; cols: number }[];
  /** Pulse limits the board accepts. */
  limits: { setVoltage: [number, number]; resetVoltage: [number, number]; gateVoltage: [number, number]; width: [number, number] };
  readVoltage: number;
  /** updateRows / readArrays / inferTiles: the training messages (absent = not supported); sharedVoltages: InferTiles takes `same`. */
  features: { dendrites: boolean; soma: boolean; updateRows?: boolean; readArrays?: boolean; inferTiles?: boolean; sharedVoltages?: boolean };
  /**
   * The board's state identity: a random id drawn each time the board starts or loses its programmed
   * state (power cycle, reset, crash). Two answers with the same boot id come from the same state; a
   * changed one means everything programmed before is gone. Optional for boards that predate it.
   */
  boot?: string;
  /** Whether requests need a token (Auth) first. */
  auth?: boolean;
}

export interface StatusResponse {
  state: 'idle' | 'programming' | 'ready';
  /** What is deployed (set by Mark): the artifact's SHA-256, and whether programming completed and verified. */
  deployment: { artifact: string; state: 'programming' | 'ready' } | null;
  pulses: number;
  reads: number;
  errors: string[];
  /** The same boot id as Identify's. */
  boot?: string;
}

/** Read: conductances of a rectangular region; response data = float32 [rows × cols] siemens, row-major. */
export interface ReadRequest {
  array: number;
  row: number;
  col: number;
  rows: number;
  cols: number;
}

/**
 * Pulse: SET (amplitude > 0) or RESET (amplitude < 0) pulses of one array, applied in order.
 * A pulse with col = -1 drives the whole row (every column, with the same gate voltage), as 1T1R rows are driven.
 * Request data = n × (int32 row, int32 col, float32 amplitude, float32 gate), n = `cells`, little-endian.
 */
export interface PulseRequest {
  array: number;
  /** Pulse width in seconds for every pulse of the request. */
  width: number;
  /** Number of pulses in the binary part (16 bytes each). */
  cells: number;
}
export interface PulseResponse {
  applied: number;
}

/**
 * Infer: drive `rows` with voltages and read the currents of `cols` (sense amplifiers, virtual ground).
 * Request data = float32 [batch × rows.length] volts; response data = float32 [batch × cols.length] amperes.
 */
export interface InferRequest {
  array: number;
  rows: number[];
  cols: number[];
  batch: number;
}

/** Mark: record on the board what is deployed and whether it is complete (deploy sets 'programming' first, 'ready' last). */
export interface MarkRequest {
  artifact: string;
  state: 'programming' | 'ready' | 'cleared';
  /** When given, the board refuses the mark ('state-lost') unless its boot id is this one. */
  boot?: string;
}

export interface ErrorResponse {
  code: 'bad-request' | 'unsupported' | 'out-of-range' | 'busy' | 'internal' | 'state-lost' | 'unauthorized';
  message: string;
}
