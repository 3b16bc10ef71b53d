/**
 * The board driver: protocol v1 (protocol.ts, docs/protocol.md) over a TCP or serial link (transport.ts).
 *
 * One request is outstanding at a time (calls queue). Each request gets the next id; it is sent, and
 * resent with the SAME id (a board answers a duplicate from its cache instead of executing it twice)
 * after a timeout, a damaged or mismatched reply, or a dropped link (reconnected with backoff first), up
 * to `retries` times. Replies whose id is not the outstanding one are ignored. An error response (0xFF)
 * is the board's answer and is not retried: it becomes a BoardRequestError (a DeviceError). Giving up on
 * the link throws a LinkError (a DeviceError) that says how many tries were made and why they failed.
 */
import { randomInt } from 'node:crypto';
import { DeviceError, InputError, LinkError } from '../../../common/errors.js';
import type { Board, ConnectOptions, LinkStats, Pulses } from './board.js';
import {
  bytesOf,
  encodeFrame,
  floats,
  MAX_PAYLOAD,
  FrameDecoder,
  MessageType,
  RESPONSE,
  type ErrorResponse,
  type Frame,
  type IdentifyResponse,
  type InferRequest,
  type MarkRequest,
  type PulseRequest,
  type PulseResponse,
  type ReadRequest,
  type StatusResponse,
} from './protocol.js';
import { openLink, parseDeviceUrl, type DeviceAddress, type Link } from './transport.js';
import { boardProof, checkToken, hostProof, isNonce, newNonce, sameMac, TOKEN_ENV } from './auth.js';
import { checkIdentity } from './limits.js';
import type { InferTile, InferTilesRequest } from './training-messages.js';

export interface ClientOptions extends ConnectOptions {
  /**
   * Largest binary part (bytes) of one read, pulse or infer request or response; bigger calls are split
   * into several requests. Default 2 MiB on TCP; on a serial line what the line carries in about a second.
   */
  maxChunkBytes?: number;
  /**
   * Shared token of a board that requires one (challenge–response, auth.ts; never sent). Default: the
   * DENDRA_BOARD_TOKEN environment variable, if set.
   */
  token?: string;
}

/** Authentication with the board failed (wrong token, or a board that does not know it): not retried. */
export class BoardAuthError extends DeviceError {}

export const DEFAULT_TIMEOUT_MS = 2000;
export const DEFAULT_RETRIES = 5;
const DEFAULT_CHUNK_TCP = 2 * 1024 * 1024;
/** Reconnect backoff: 50 ms, doubling, at most 1 s. */
const BACKOFF_MS = 50;
const BACKOFF_MAX_MS = 1000;

/** The board answered a request with an error response (0xFF). */
export class BoardRequestError extends DeviceError {
  readonly url: string;
  readonly request: string;
  readonly code: ErrorResponse['code'] | string;
  readonly boardMessage: string;
  constructor(url: string, request: string, code: string, boardMessage: string, array?: number) {
    super(`the board at ${url} refused ${request}: ${boardMessage} (${code})`, array === undefined ? {} : { array });
    this.url = url;
    this.request = request;
    this.code = code;
    this.boardMessage = boardMessage;
  }
}

/** Connects to the board at `url` (tcp://HOST:PORT or serial:///dev/ttyX[?baud=N]). */
export async function connectBoard(url: string, options: ClientOptions = {}): Promise<Board> {
  const address = parseDeviceUrl(url);
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const retries = options.retries ?? DEFAULT_RETRIES;
  if (!(Number.isFinite(timeoutMs) && timeoutMs > 0)) throw new InputError(`timeoutMs must be a number of milliseconds > 0 (got ${timeoutMs})`);
  if (!(Number.isInteger(retries) && retries >= 0 && retries <= 1000)) throw new InputError(`retries must be an integer from 0 to 1000 (got ${retries})`);
  const chunk = options.maxChunkBytes ?? (address.kind === 'tcp' ? DEFAULT_CHUNK_TCP : Math.max(16 * 1024, Math.min(DEFAULT_CHUNK_TCP, address.baud / 10)));
  if (!(Number.isInteger(chunk) && chunk >= 64 && chunk <= 32 * 1024 * 1024)) throw new InputError(`maxChunkBytes must be an integer from 64 to 33554432 (got ${chunk})`);
  const rawToken = options.token ?? process.env[TOKEN_ENV];
  const token = rawToken === undefined || rawToken === '' ? undefined : checkToken(rawToken, options.token !== undefined ? 'token' : TOKEN_ENV);
  const client = new BoardClient(url, address, timeoutMs, retries, chunk, token, options.maxChunkBytes !== undefined);
  await client.open();
  return client;
}

type Outcome =
  | { kind: 'reply'; frame: Frame }
  | { kind: 'timeout' }
  | { kind: 'damaged' }
  | { kind: 'down'; reason: string }
  | { kind: 'closed' };

interface Waiter {
  id: number;
  settle(outcome: Outcome): void;
  /** Bytes arrived; `damaged`: the decoder skipped a damaged frame among them. */
  activity(damaged: boolean): void;
}

/** A pipelined group's requests in flight now (they share the board's queue: see #send's timeout). */
interface Pipeline {
  inFlight: number;
}

/** InferTiles requests of one call in flight at once (docs/protocol.md, "Pipelining"). */
export const PIPELINE_DEPTH = 4;
/** Largest binary part of one InferTiles request or reply on TCP when maxChunkBytes is not given. */
const TILES_CHUNK_TCP = 16 * 1024 * 1024;

/** After a damaged frame, the line must stay quiet this long (the rest of the frame drains) before the resend. */
const QUIET_MS = 25;
/** The shortest wait for a reply once round trips have been measured (ms). */
const MIN_RTO_MS = 200;

const typeNames: Record<number, string> = Object.fromEntries(Object.entries(MessageType).map(([k, v]) => [v, k.toLowerCase()]));

class BoardClient implements Board {
  readonly url: string;
  readonly #address: DeviceAddress;
  readonly #timeoutMs: number;
  readonly #retries: number;
  readonly #chunk: number;
  readonly #decoder = new FrameDecoder();
  readonly #stats = { requests: 0, retries: 0, timeouts: 0, reconnects: 0 };
  #link: Link | undefined;
  /** The requests awaiting a reply, by id: one, or several while a pipelined group is in flight. */
  readonly #waiters = new Map<number, Waiter>();
  #queue: Promise<unknown> = Promise.resolve();
  /** A reconnect in progress, which every request that finds the link down waits on. */
  #connecting: Promise<void> | undefined;
  /** Whether maxChunkBytes was given (then it also bounds InferTiles frames). */
  readonly #chunkGiven: boolean;
  /** The board's last Identify announced sharedVoltages: InferTiles tiles may reuse an earlier tile's voltages. */
  #sharedVoltages = false;
  #nextId: number;
  #closed = false;
  /** Cancels a pending backoff sleep or connect (close() calls it). */
  #cancel: (() => void) | undefined;
  #failedConnects = 0;
  /** Smoothed round-trip time and its variation (ms), as TCP estimates them (RFC 6298). */
  #srtt: number | undefined;
  #rttvar = 0;

  readonly #token: string | undefined;

  constructor(url: string, address: DeviceAddress, timeoutMs: number, retries: number, chunk: number, token?: string, chunkGiven = false) {
    this.#token = token;
    this.#chunkGiven = chunkGiven;
    this.url = url;
    this.#address = address;
    this.#timeoutMs = timeoutMs;
    this.#retries = retries;
    this.#chunk = chunk;
    // A random start: a board's duplicate cache never mistakes this session's first ids for another's.
    this.#nextId = randomInt(1, 0x40000000);
  }

  /** First connection, with the same retries and backoff as a reconnect. */
  async open(): Promise<void> {
    const reasons: string[] = [];
    for (let attempt = 0; attempt <= this.#retries; attempt++) {
      try {
        await this.#connect(attempt > 0);
        return;
      } catch (e) {
        if (this.#closed) throw new DeviceError(`the link to the board at ${this.url} was closed`);
        if (e instanceof BoardAuthError) throw e;
        reasons.push((e as Error).message);
      }
    }
    throw new LinkError(`cannot reach the board at ${this.url} after ${this.#retries + 1} tries (${summarise(reasons)})`);
  }

  async identify(): Promise<IdentifyResponse> {
    const id = await this.#json<IdentifyResponse>(MessageType.Identify, {}, 'identify', (j) => checkIdentity(j));
    this.#sharedVoltages = id.features?.sharedVoltages === true;
    return id;
  }

  status(): Promise<StatusResponse> {
    return this.#json<StatusResponse>(MessageType.Status, {}, 'status', (j) =>
      typeof j['state'] !== 'string' ? 'status reply without state' : j['boot'] !== undefined && typeof j['boot'] !== 'string' ? 'status reply with a boot id that is not a string' : null);
  }

  async mark(request: MarkRequest): Promise<void> {
    await this.#json(MessageType.Mark, request, `mark '${request.state}'`);
  }

  async read(region: ReadRequest): Promise<Float32Array> {
    const { array, row, col, rows, cols } = region;
    for (const [k, v] of Object.entries({ array, row, col, rows, cols })) {
      if (!Number.isInteger(v) || v < 0) throw new InputError(`read: ${k} must be an integer >= 0 (got ${v})`);
    }
    const out = new Float32Array(rows * cols);
    if (out.length === 0) return out;
    const colStep = Math.max(1, Math.min(cols, Math.floor(this.#chunk / 4)));
    const rowStep = Math.max(1, Math.floor(this.#chunk / (4 * colStep)));
    for (let r = 0; r < rows; r += rowStep) {
      const nr = Math.min(rowStep, rows - r);
      for (let c = 0; c < cols; c += colStep) {
        const nc = Math.min(colStep, cols - c);
        const req: ReadRequest = { array, row: row + r, col: col + c, rows: nr, cols: nc };
        const what = `read of array ${array} (rows ${req.row}..${req.row + nr - 1}, cols ${req.col}..${req.col + nc - 1})`;
        const frame = await this.#exchange(MessageType.Read, req, new Uint8Array(0), what, nr * nc * 4, array, (f) =>
          f.data.length !== nr * nc * 4 ? `read reply of ${f.data.length} bytes, expected ${nr * nc * 4}` : allFinite(f.data) ? null : 'read reply holding a conductance that is not a finite number');
        const g = floats(frame.data);
        for (let i = 0; i < nr; i++) out.set(g.subarray(i * nc, (i + 1) * nc), (r + i) * cols + c);
      }
    }
    return out;
  }

  async pulse(array: number, width: number, pulses: Pulses): Promise<number> {
    const n = pulses.row.length;
    if (pulses.col.length !== n || pulses.amplitude.length !== n || pulses.gate.length !== n) {
      throw new InputError(`pulse: row, col, amplitude and gate must have the same length (${n}, ${pulses.col.length}, ${pulses.amplitude.length}, ${pulses.gate.length})`);
    }
    const step = Math.max(1, Math.floor(this.#chunk / 16));
    let applied = 0;
    for (let start = 0; start < n; start += step) {
      const m = Math.min(step, n - start);
      const data = new Uint8Array(m * 16);
      const view = new DataView(data.buffer);
      for (let i = 0; i < m; i++) {
        view.setInt32(i * 16, pulses.row[start + i]!, true);
        view.setInt32(i * 16 + 4, pulses.col[start + i]!, true);
        view.setFloat32(i * 16 + 8, pulses.amplitude[start + i]!, true);
        view.setFloat32(i * 16 + 12, pulses.gate[start + i]!, true);
      }
      const req: PulseRequest = { array, width, cells: m };
      const frame = await this.#exchange(MessageType.Pulse, req, data, `pulse of ${m} cells on array ${array}`, 64, array, (f) =>
        Number.isInteger((f.json as Partial<PulseResponse>)?.applied) && (f.json as PulseResponse).applied >= 0 && (f.json as PulseResponse).applied <= m ? null : `pulse reply without a count of applied pulses from 0 to ${m}`);
      applied += (frame.json as PulseResponse).applied;
    }
    return applied;
  }

  async infer(array: number, rows: Int32Array, cols: Int32Array, voltages: Float32Array, batch: number): Promise<Float32Array> {
    const k = rows.length;
    const m = cols.length;
    if (!Number.isInteger(batch) || batch < 0) throw new InputError(`infer: batch must be an integer >= 0 (got ${batch})`);
    if (voltages.length !== batch * k) throw new InputError(`infer: ${voltages.length} voltages for batch ${batch} × ${k} rows`);
    const out = new Float32Array(batch * m);
    if (batch === 0 || m === 0) return out;
    const step = Math.max(1, Math.floor(this.#chunk / (4 * Math.max(k, m, 1))));
    const rowList = Array.from(rows);
    const colList = Array.from(cols);
    for (let start = 0; start < batch; start += step) {
      const b = Math.min(step, batch - start);
      const req: InferRequest = { array, rows: rowList, cols: colList, batch: b };
      const v = voltages.subarray(start * k, (start + b) * k);
      const data = new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
      const frame = await this.#exchange(MessageType.Infer, req, data, `infer on array ${array} (batch ${b}, ${k} rows, ${m} cols)`, b * m * 4, array, (f) =>
        f.data.length !== b * m * 4 ? `infer reply of ${f.data.length} bytes, expected ${b * m * 4}` : allFinite(f.data) ? null : 'infer reply holding a current that is not a finite number');
      out.set(floats(frame.data), start * m);
    }
    return out;
  }

  /**
   * InferTiles (0x12, training-messages.ts): several tiles of a batch in as few requests as the frame limit
   * allows, split by samples (and by tiles where one sample of them all would not fit), up to PIPELINE_DEPTH
   * of them in flight. Every request keeps its own id, retries and the board's answers are matched by id.
   * The caller checks that the board announces features.inferTiles.
   */
  async inferTiles(tiles: InferTile[], voltages: Float32Array[], batch: number): Promise<Float32Array[]> {
    if (!Number.isInteger(batch) || batch < 0) throw new InputError(`inferTiles: batch must be an integer >= 0 (got ${batch})`);
    if (voltages.length !== tiles.length) throw new InputError(`inferTiles: ${voltages.length} voltage blocks for ${tiles.length} tiles`);
    tiles.forEach((t, i) => {
      if (voltages[i]!.length !== batch * t.rows.length) throw new InputError(`inferTiles: tile ${i} has ${voltages[i]!.length} voltages for batch ${batch} × ${t.rows.length} rows`);
    });
    const out = tiles.map((t) => new Float32Array(batch * t.cols.length));
    if (batch === 0 || tiles.length === 0) return out;
    const limit = Math.min(MAX_PAYLOAD - 64 * 1024, this.#chunkGiven || this.#address.kind !== 'tcp' ? this.#chunk : TILES_CHUNK_TCP);
    const heads = tiles.map((t) => ({ array: t.array, rows: Array.from(t.rows), cols: Array.from(t.cols) }));
    // A tile given the very same voltage block as an earlier tile of its request reuses it (`same`) where the
    // board takes that (sharedVoltages): its voltages are not sent again.
    const firstOf = new Map<Float32Array, number>();
    const sameAs = tiles.map((t, i) => {
      if (!this.#sharedVoltages) return -1;
      const j = firstOf.get(voltages[i]!);
      if (j !== undefined && tiles[j]!.rows.length === t.rows.length) return j;
      if (j === undefined) firstOf.set(voltages[i]!, i);
      return -1;
    });
    // Groups of whole tiles whose request (JSON and one sample) fits the limit; usually one group.
    const groups: number[][] = [];
    let group: number[] = [];
    let json = 0;
    let per = 0;
    tiles.forEach((t, i) => {
      const j = JSON.stringify(heads[i]).length + 16;
      const p = 4 * Math.max(t.rows.length, t.cols.length);
      if (group.length > 0 && json + j + 64 + per + p > limit) {
        groups.push(group);
        group = [];
        json = 0;
        per = 0;
      }
      group.push(i);
      json += j;
      per += p;
    });
    groups.push(group);
    const jobs: (() => Promise<void>)[] = [];
    const pipeline: Pipeline = { inFlight: 0 };
    for (const g of groups) {
      // Within a group, `same` names a position in the group; a tile whose first user is in another group sends its own.
      const pos = new Map(g.map((i, at) => [i, at]));
      const same = g.map((i) => (sameAs[i]! >= 0 && pos.has(sameAs[i]!) ? pos.get(sameAs[i]!)! : -1));
      const sent = g.filter((_, at) => same[at]! < 0);
      const inPer = sent.reduce((s, i) => s + tiles[i]!.rows.length, 0);
      const outPer = g.reduce((s, i) => s + tiles[i]!.cols.length, 0);
      const jsonBytes = g.reduce((s, i) => s + JSON.stringify(heads[i]).length + 16, 64);
      const step = Math.max(1, Math.floor((limit - jsonBytes) / (4 * Math.max(inPer, outPer, 1))));
      for (let s0 = 0; s0 < batch; s0 += step) {
        const b = Math.min(step, batch - s0);
        jobs.push(async () => {
          const data = new Float32Array(b * inPer);
          let off = 0;
          for (const i of sent) {
            const k = tiles[i]!.rows.length;
            data.set(voltages[i]!.subarray(s0 * k, (s0 + b) * k), off);
            off += b * k;
          }
          const req: InferTilesRequest = { tiles: g.map((i, at) => (same[at]! >= 0 ? { ...heads[i]!, same: same[at]! } : heads[i]!)), batch: b };
          const what = `infer of ${g.length} tiles (batch ${b} from sample ${s0})`;
          const replyBytes = b * outPer * 4;
          const f = await this.#send(MessageType.InferTiles, req, bytesOf(data), what, replyBytes, undefined, (fr) =>
            fr.data.length !== replyBytes ? `${what}: reply of ${fr.data.length} bytes, expected ${replyBytes}` : allFinite(fr.data) ? null : `${what}: reply holding a current that is not a finite number`, undefined, pipeline);
          const cur = floats(f.data);
          let at = 0;
          for (const i of g) {
            const m = tiles[i]!.cols.length;
            out[i]!.set(cur.subarray(at, at + b * m), s0 * m);
            at += b * m;
          }
        });
      }
    }
    await this.#pipelined(jobs, PIPELINE_DEPTH);
    return out;
  }

  /**
   * One request of any type through the same ids, retries and reconnects (the training messages of
   * training-messages.ts use it). `check` names what is wrong with a reply, or returns null. `id`: send
   * under this id (from `newId()`, possibly of an earlier connection) instead of the next one: resending a
   * request the driver gave up on under its own id, the board answers it from its duplicate cache if it
   * was applied, so a change is never applied twice even across new connections.
   */
  request(type: number, json: unknown, data: Uint8Array, what: string, replyBytes: number, check: (f: Frame) => string | null, id?: number): Promise<Frame> {
    if (id !== undefined && !(Number.isInteger(id) && id >= 1 && id <= 0xffffffff)) throw new InputError(`request id must be an integer from 1 to 4294967295 (got ${id})`);
    return this.#exchange(type, json, data, what, replyBytes, undefined, check, id);
  }

  /** A fresh request id of this link's sequence (for `request(..., id)`). */
  newId(): number {
    return this.#takeId();
  }

  stats(): LinkStats {
    return { ...this.#stats, dropped: this.#decoder.dropped };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#cancel?.();
    for (const w of [...this.#waiters.values()]) w.settle({ kind: 'closed' });
    const link = this.#link;
    this.#link = undefined;
    await link?.close();
    await this.#queue.catch(() => {});
  }

  // ---- internals ----

  async #json<T>(type: number, json: unknown, what: string, check?: (j: Record<string, unknown>) => string | null): Promise<T> {
    const frame = await this.#exchange(type, json, new Uint8Array(0), what, 4096, undefined, (f) => {
      if (typeof f.json !== 'object' || f.json === null) return `${what} reply is not a JSON object`;
      return check ? check(f.json as Record<string, unknown>) : null;
    });
    return frame.json as T;
  }

  /**
   * Queues a group of requests as one place in the queue (requests before and after it keep their order)
   * and runs up to `depth` of them at once, each through the retry loop with its own id. Only requests that
   * change nothing on the board belong in a group. The first failure is thrown once every request settled.
   */
  #pipelined(jobs: (() => Promise<void>)[], depth: number): Promise<void> {
    const run = this.#queue.then(async () => {
      let next = 0;
      let failure: { error: unknown } | undefined;
      const lane = async () => {
        while (next < jobs.length && !failure) {
          const job = jobs[next++]!;
          try {
            await job();
          } catch (e) {
            failure ??= { error: e };
          }
        }
      };
      await Promise.all(Array.from({ length: Math.min(depth, jobs.length) }, lane));
      if (failure) throw failure.error;
    });
    this.#queue = run.catch(() => {});
    return run;
  }

  /** Queues one request (one id) and runs it through the retry loop. */
  #exchange(type: number, json: unknown, data: Uint8Array, what: string, replyBytes: number, array: number | undefined, check: (f: Frame) => string | null, id?: number): Promise<Frame> {
    const run = this.#queue.then(() => this.#send(type, json, data, what, replyBytes, array, check, id));
    this.#queue = run.catch(() => {});
    return run;
  }

  async #send(type: number, json: unknown, data: Uint8Array, what: string, replyBytes: number, array: number | undefined, check: (f: Frame) => string | null, given?: number, pipeline?: Pipeline): Promise<Frame> {
    const closedError = () => new DeviceError(`the link to the board at ${this.url} is closed (${what})`);
    if (this.#closed) throw closedError();
    const id = given ?? this.#takeId();
    const bytes = encodeFrame({ type, id, json, data });
    this.#stats.requests++;
    const reasons: string[] = [];
    const tries = this.#retries + 1;
    for (let attempt = 0; attempt < tries; attempt++) {
      if (attempt > 0) this.#stats.retries++;
      if (!this.#link) {
        try {
          await this.#reconnect();
        } catch (e) {
          if (this.#closed) throw closedError();
          if (e instanceof BoardAuthError) throw e;
          reasons.push((e as Error).message);
          continue;
        }
      }
      const link = this.#link!;
      const transfer = 2000 * link.transferSeconds(bytes.length + replyBytes);
      // A lost frame costs a timeout: once replies have been timed, wait srtt + 4·rttvar (at least
      // MIN_RTO_MS) rather than the full configured timeout; never longer than the configured one.
      const rto = this.#srtt === undefined ? this.#timeoutMs : Math.min(this.#timeoutMs, Math.max(MIN_RTO_MS, this.#srtt + 4 * this.#rttvar));
      // Pipelined: the board answers in order, so a reply may wait behind every request in flight before it.
      const ahead = pipeline ? Math.max(1, pipeline.inFlight) : 1;
      const timeout = Math.ceil((rto + transfer) * ahead);
      const sent = performance.now();
      // Only a request that was alone on the link times the round trip (a queued one would inflate it).
      const alone = this.#waiters.size === 0;
      if (pipeline) pipeline.inFlight++;
      const outcome = await this.#attempt(link, bytes, id, timeout);
      if (pipeline) pipeline.inFlight--;
      if (outcome.kind === 'reply' && attempt === 0 && alone && this.#waiters.size === 0) this.#sample(performance.now() - sent - transfer);
      switch (outcome.kind) {
        case 'closed':
          throw closedError();
        case 'timeout':
          this.#stats.timeouts++;
          reasons.push(`no reply within ${timeout} ms`);
          break;
        case 'damaged':
          reasons.push('damaged reply');
          break;
        case 'down':
          reasons.push(`link dropped: ${outcome.reason}`);
          break;
        case 'reply': {
          const f = outcome.frame;
          if (f.type === MessageType.Error) {
            const e = (typeof f.json === 'object' && f.json !== null ? f.json : {}) as Partial<ErrorResponse>;
            const hint = e.code === 'unauthorized' ? `; give the board's token (${TOKEN_ENV} or --token-file)` : '';
            throw new BoardRequestError(this.url, what, String(e.code ?? 'unknown'), String(e.message ?? 'no message').slice(0, 500) + hint, array);
          }
          const bad = f.type !== (type | RESPONSE) ? `reply of type 0x${f.type.toString(16)} to a ${typeNames[type] ?? type} request` : check(f);
          if (bad === null) return f;
          reasons.push(bad);
          break;
        }
      }
    }
    throw new LinkError(`no valid reply from the board at ${this.url} to ${what} after ${tries} tries (${summarise(reasons)})`, array === undefined ? {} : { array });
  }

  /** Sends the frame once and waits for the reply with its id, a timeout, damage or a drop. */
  #attempt(link: Link, bytes: Uint8Array, id: number, timeoutMs: number): Promise<Outcome> {
    return new Promise<Outcome>((resolve) => {
      const timer = setTimeout(() => waiter.settle({ kind: 'timeout' }), timeoutMs);
      let quiet: NodeJS.Timeout | undefined;
      const waiter: Waiter = {
        id,
        settle: (outcome) => {
          if (this.#waiters.get(id) !== waiter) return;
          this.#waiters.delete(id);
          clearTimeout(timer);
          clearTimeout(quiet);
          resolve(outcome);
        },
        // A damaged frame may have been our reply: resend once the line has been quiet for QUIET_MS (so
        // the damaged frame's tail has drained) rather than wait out the timeout. More bytes restart the wait.
        activity: (damaged) => {
          if (!damaged && quiet === undefined) return;
          clearTimeout(quiet);
          quiet = setTimeout(() => waiter.settle({ kind: 'damaged' }), QUIET_MS);
        },
      };
      this.#waiters.set(id, waiter);
      link.write(bytes);
    });
  }

  #sample(rtt: number): void {
    const r = Math.max(0, rtt);
    if (this.#srtt === undefined) {
      this.#srtt = r;
      this.#rttvar = r / 2;
    } else {
      this.#rttvar = 0.75 * this.#rttvar + 0.25 * Math.abs(this.#srtt - r);
      this.#srtt = 0.875 * this.#srtt + 0.125 * r;
    }
  }

  #takeId(): number {
    const id = this.#nextId;
    this.#nextId = this.#nextId >= 0xffffffff ? 1 : this.#nextId + 1;
    return id;
  }

  #onData(link: Link, chunk: Uint8Array): void {
    if (link !== this.#link) return;
    const before = this.#decoder.dropped;
    for (const frame of this.#decoder.push(chunk)) {
      // Only replies (responses and error responses) to an outstanding id count; anything else is stale.
      const waiter = this.#waiters.get(frame.id);
      if (waiter && (frame.type & RESPONSE) !== 0) waiter.settle({ kind: 'reply', frame });
    }
    const damaged = this.#decoder.dropped > before;
    for (const w of [...this.#waiters.values()]) w.activity(damaged);
  }

  #onClose(link: Link, reason: string): void {
    if (link !== this.#link) return;
    this.#link = undefined;
    for (const w of [...this.#waiters.values()]) w.settle({ kind: 'down', reason });
  }

  /** Reconnects once for every request that found the link down (pipelined requests share one reconnect). */
  #reconnect(): Promise<void> {
    this.#connecting ??= this.#connect(true)
      .then(() => {
        this.#stats.reconnects++;
      })
      .finally(() => {
        this.#connecting = undefined;
      });
    return this.#connecting;
  }

  /** Opens the link, after a backoff sleep when `backoff` and an earlier connect or link failed. */
  async #connect(backoff: boolean): Promise<void> {
    if (backoff) await this.#sleep(Math.min(BACKOFF_MAX_MS, BACKOFF_MS * 2 ** Math.min(this.#failedConnects, 10)));
    if (this.#closed) throw new Error('closed');
    let link: Link | undefined;
    try {
      link = await openLink(this.#address, {
        onData: (chunk) => link && this.#onData(link, chunk),
        onClose: (reason) => link && this.#onClose(link, reason),
      }, this.#timeoutMs);
    } catch (e) {
      this.#failedConnects++;
      throw e;
    }
    if (this.#closed) {
      await link.close();
      throw new Error('closed');
    }
    this.#failedConnects = 0;
    this.#decoder.reset();
    this.#link = link;
    if (this.#token !== undefined) {
      try {
        await this.#authenticate(link, this.#token);
      } catch (e) {
        this.#link = undefined;
        await link.close();
        throw e;
      }
    }
  }

  /** Challenge–response on a fresh link (auth.ts): the board proves it knows the token, then the host does. */
  async #authenticate(link: Link, token: string): Promise<void> {
    const step = async (json: Record<string, unknown>): Promise<Record<string, unknown>> => {
      const id = this.#takeId();
      const outcome = await this.#attempt(link, encodeFrame({ type: MessageType.Auth, id, json, data: new Uint8Array(0) }), id, this.#timeoutMs);
      if (outcome.kind !== 'reply') throw new Error(`authentication: ${outcome.kind === 'down' ? `link dropped: ${outcome.reason}` : outcome.kind === 'timeout' ? 'no reply' : outcome.kind}`);
      const j = (typeof outcome.frame.json === 'object' && outcome.frame.json !== null ? outcome.frame.json : {}) as Record<string, unknown>;
      if (outcome.frame.type === MessageType.Error) {
        const why = j['code'] === 'unsupported' ? 'the board does not use a token; refusing to trust it with one (unset the token to talk to it)' : `the board refused the token (${String(j['code'] ?? 'error')})`;
        throw new BoardAuthError(`cannot authenticate with the board at ${this.url}: ${why}`);
      }
      if (outcome.frame.type !== (MessageType.Auth | RESPONSE)) throw new Error('authentication: unexpected reply');
      return j;
    };
    const client = newNonce();
    const challenge = await step({ step: 'hello', client });
    const server = challenge['server'];
    if (!isNonce(server) || !sameMac(challenge['mac'], boardProof(token, client, server))) {
      throw new BoardAuthError(`cannot authenticate with the board at ${this.url}: it does not know the token (wrong token, or not the board you meant)`);
    }
    const done = await step({ step: 'prove', mac: hostProof(token, server, client) });
    if (done['ok'] !== true) throw new BoardAuthError(`cannot authenticate with the board at ${this.url}: it did not accept the token`);
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#cancel = done;
    });
  }
}

/** Whether every float32 of a reply's binary part is finite (a board never reports NaN or ±Infinity). */
function allFinite(data: Uint8Array): boolean {
  if (data.byteOffset % 4 === 0 && data.length % 4 === 0) {
    const f = new Float32Array(data.buffer, data.byteOffset, data.length / 4);
    for (let i = 0; i < f.length; i++) if (!Number.isFinite(f[i]!)) return false;
    return true;
  }
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  for (let i = 0; i + 4 <= data.length; i += 4) if (!Number.isFinite(view.getFloat32(i, true))) return false;
  return true;
}

/** "3× no reply within 2000 ms, 2× link dropped: ECONNRESET" in order of first appearance. */
function summarise(reasons: string[]): string {
  const counts = new Map<string, number>();
  for (const r of reasons) counts.set(r, (counts.get(r) ?? 0) + 1);
  return [...counts].map(([r, n]) => (n > 1 ? `${n}× ${r}` : r)).join(', ');
}
