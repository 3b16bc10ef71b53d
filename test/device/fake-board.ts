/**
 * A small in-test board speaking protocol v1 over TCP (127.0.0.1, a free port) or any byte stream (a
 * serial port): ideal crossbar arrays in memory, a duplicate cache for every request, and link faults on
 * demand (drop or corrupt the next replies, disconnect once, stay silent, answer with errors).
 */
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import {
  encodeFrame,
  floats,
  bytesOf,
  FrameDecoder,
  MessageType,
  RESPONSE,
  type Frame,
  type IdentifyResponse,
  type InferRequest,
  type MarkRequest,
  type PulseRequest,
  type ReadRequest,
  type StatusResponse,
} from '../../runtime/backends/device/protocol.js';

export interface FakeArray {
  rows: number;
  cols: number;
  g: Float32Array;
}

/** Something bytes go through: a net.Socket or a SerialPort. */
export interface ByteStream {
  write(data: Uint8Array): unknown;
  on(event: 'data', fn: (chunk: Buffer) => void): unknown;
}

export class FakeBoard {
  arrays: FakeArray[];
  deployment: StatusResponse['deployment'] = null;
  /** Replies to drop (never sent) / corrupt (one byte flipped) from the next one on. */
  dropReplies = 0;
  corruptReplies = 0;
  /** Close the connection on the next request, once, before answering it. */
  disconnectNext = false;
  /** Never answer. */
  silent = false;
  /** Answer every request of this type with this error. */
  errors = new Map<number, { code: string; message: string }>();
  /** Bytes written before every reply (garbage the decoder must skip). */
  garbage: Uint8Array | undefined;
  /** Every request received (after decoding), in order. */
  readonly seen: { type: number; id: number }[] = [];
  /** How many pulses were applied (not counting duplicates answered from the cache). */
  applied = 0;
  executed = 0;
  readonly #cache = new Map<number, Uint8Array>();
  #server: Server | undefined;
  readonly #sockets = new Set<Socket>();

  constructor(arrays: FakeArray[]) {
    this.arrays = arrays;
  }

  static blank(count: number, rows: number, cols: number): FakeBoard {
    return new FakeBoard(Array.from({ length: count }, () => ({ rows, cols, g: new Float32Array(rows * cols) })));
  }

  /** Serves TCP on 127.0.0.1 and a free port; resolves with the URL. */
  async listen(): Promise<string> {
    const server = createServer((socket) => {
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
      socket.on('error', () => {});
      this.serve(socket, () => socket.destroy());
    });
    this.#server = server;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return `tcp://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  /** Serves one byte stream; `disconnect` drops it (a serial line: nothing, the reply is simply lost). */
  serve(stream: ByteStream, disconnect: () => void = () => {}): void {
    const decoder = new FrameDecoder();
    stream.on('data', (chunk) => {
      for (const frame of decoder.push(chunk)) {
        this.seen.push({ type: frame.type, id: frame.id });
        if (this.disconnectNext) {
          this.disconnectNext = false;
          disconnect();
          decoder.reset();
          return;
        }
        if (this.silent) continue;
        let reply = this.#cache.get(frame.id);
        if (!reply) {
          reply = encodeFrame(this.#handle(frame));
          this.#cache.set(frame.id, reply);
          if (this.#cache.size > 64) this.#cache.delete(this.#cache.keys().next().value!);
        }
        if (this.dropReplies > 0) {
          this.dropReplies--;
          continue;
        }
        let out = reply;
        if (this.corruptReplies > 0) {
          this.corruptReplies--;
          out = reply.slice();
          out[Math.min(out.length - 1, 20)]! ^= 0x40; // inside the payload: the payload CRC catches it
        }
        if (this.garbage) stream.write(this.garbage);
        stream.write(out);
      }
    });
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    const server = this.#server;
    this.#server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  #handle(frame: Frame): Frame {
    this.executed++;
    const reply = (json: unknown, data: Uint8Array = new Uint8Array(0)): Frame => ({ type: frame.type | RESPONSE, id: frame.id, json, data });
    const error = (code: string, message: string): Frame => ({ type: MessageType.Error, id: frame.id, json: { code, message }, data: new Uint8Array(0) });
    const forced = this.errors.get(frame.type);
    if (forced) return error(forced.code, forced.message);
    switch (frame.type) {
      case MessageType.Identify: {
        const id: IdentifyResponse = {
          protocol: 1,
          firmware: 'fake 1',
          board: 'fake board',
          serial: 'FAKE-0001',
          cellType: '1T1R',
          device: 'fake',
          arrays: this.arrays.map((a) => ({ rows: a.rows, cols: a.cols })),
          limits: { setVoltage: [0.5, 3], resetVoltage: [-3, -0.5], gateVoltage: [0.7, 1.6], width: [1e-8, 1e-4] },
          readVoltage: 0.2,
          features: { dendrites: false, soma: false },
        };
        return reply(id);
      }
      case MessageType.Status:
        return reply({ state: this.deployment?.state === 'ready' ? 'ready' : 'idle', deployment: this.deployment, pulses: this.applied, reads: 0, errors: [] } satisfies StatusResponse);
      case MessageType.Read: {
        const r = frame.json as ReadRequest;
        const a = this.arrays[r.array];
        if (!a || r.row + r.rows > a.rows || r.col + r.cols > a.cols) return error('out-of-range', `region outside array ${r.array}`);
        const out = new Float32Array(r.rows * r.cols);
        for (let i = 0; i < r.rows; i++) out.set(a.g.subarray((r.row + i) * a.cols + r.col, (r.row + i) * a.cols + r.col + r.cols), i * r.cols);
        return reply({}, bytesOf(out));
      }
      case MessageType.Pulse: {
        const p = frame.json as PulseRequest;
        const a = this.arrays[p.array];
        if (!a) return error('out-of-range', `no array ${p.array}`);
        if (frame.data.length !== p.cells * 16) return error('bad-request', `pulse data of ${frame.data.length} bytes for ${p.cells} cells`);
        const view = new DataView(frame.data.buffer, frame.data.byteOffset, frame.data.byteLength);
        for (let i = 0; i < p.cells; i++) {
          const row = view.getInt32(i * 16, true);
          const col = view.getInt32(i * 16 + 4, true);
          const amplitude = view.getFloat32(i * 16 + 8, true);
          const gate = view.getFloat32(i * 16 + 12, true);
          // A toy device: SET sets G = gate · 1e-4 S, RESET clears it.
          a.g[row * a.cols + col] = amplitude > 0 ? gate * 1e-4 : 0;
          this.applied++;
        }
        return reply({ applied: p.cells });
      }
      case MessageType.Infer: {
        const q = frame.json as InferRequest;
        const a = this.arrays[q.array];
        if (!a) return error('out-of-range', `no array ${q.array}`);
        const v = floats(frame.data);
        if (v.length !== q.batch * q.rows.length) return error('bad-request', `infer data of ${v.length} floats for batch ${q.batch} × ${q.rows.length} rows`);
        const out = new Float32Array(q.batch * q.cols.length);
        for (let b = 0; b < q.batch; b++) {
          for (let c = 0; c < q.cols.length; c++) {
            let sum = 0;
            for (let r = 0; r < q.rows.length; r++) sum += v[b * q.rows.length + r]! * a.g[q.rows[r]! * a.cols + q.cols[c]!]!;
            out[b * q.cols.length + c] = sum;
          }
        }
        return reply({}, bytesOf(out));
      }
      case MessageType.Mark: {
        const m = frame.json as MarkRequest;
        this.deployment = m.state === 'cleared' ? null : { artifact: m.artifact, state: m.state };
        return reply({});
      }
      default:
        return error('unsupported', `message type 0x${frame.type.toString(16)}`);
    }
  }
}
