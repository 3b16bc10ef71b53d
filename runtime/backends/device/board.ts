/**
 * The typed view of one board over the protocol: what the driver offers to deploy, scan and the device
 * backend. `connectBoard(url)` (runtime/backends/device/client.ts) returns one.
 */
import type { Frame, IdentifyResponse, StatusResponse, ReadRequest, MarkRequest } from './protocol.js';
import type { InferTile } from './training-messages.js';

/** A batch of pulses on one array, applied in order. col = -1 drives the whole row. */
export interface Pulses {
  row: Int32Array;
  col: Int32Array;
  /** Volts: > 0 SET, < 0 RESET. */
  amplitude: Float32Array;
  /** Gate voltage of each pulse (V). */
  gate: Float32Array;
}

export interface LinkStats {
  requests: number;
  retries: number;
  timeouts: number;
  reconnects: number;
  /** Damaged frames the decoder skipped. */
  dropped: number;
}

export interface Board {
  readonly url: string;
  identify(): Promise<IdentifyResponse>;
  status(): Promise<StatusResponse>;
  /** Conductances of a region, row-major, siemens. */
  read(region: ReadRequest): Promise<Float32Array>;
  /** Applies pulses of the given width (s) on one array; resolves with how many were applied. */
  pulse(array: number, width: number, pulses: Pulses): Promise<number>;
  /** Drives `rows` with voltages [batch × rows.length] and returns column currents [batch × cols.length] (A). */
  infer(array: number, rows: Int32Array, cols: Int32Array, voltages: Float32Array, batch: number): Promise<Float32Array>;
  /**
   * InferTiles (0x12): `infer` of several tiles, voltages[i] [batch × tiles[i].rows.length], in as few
   * pipelined requests as the link allows; only for a board that announces features.inferTiles. Absent on
   * in-process boards.
   */
  inferTiles?(tiles: InferTile[], voltages: Float32Array[], batch: number): Promise<Float32Array[]>;
  mark(request: MarkRequest): Promise<void>;
  /** Any request, with the link's ids and retries (for messages beyond these, e.g. training-messages.ts); absent on in-process boards. */
  request?(type: number, json: unknown, data: Uint8Array, what: string, replyBytes: number, check: (f: Frame) => string | null, id?: number): Promise<Frame>;
  /** A fresh request id (for `request(..., id)`: resending a change under its own id, also on a new connection). */
  newId?(): number;
  stats(): LinkStats;
  close(): Promise<void>;
}

export interface ConnectOptions {
  /** Per-request timeout (ms), default 2000. */
  timeoutMs?: number;
  /** Retries after a timeout, a damaged reply or a dropped link, default 5. */
  retries?: number;
}
