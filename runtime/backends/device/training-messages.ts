/**
 * The protocol's training messages (docs/protocol.md, "Training"): what in-situ training needs to be practical
 * on a board, in protocol version 1 as new message types that a board announces in Identify.features.
 *
 * - UpdateRows (0x10): a row-parallel update of one array. JSON {array, rows: [r...], cols, set, reset, width};
 *   binary: float32 [rows.length × cols] gate voltages (NaN: the cell takes no SET), then uint8
 *   [rows.length × cols] RESET mask (1: RESET the cell first). Per listed row, one RESET pulse (amplitude `reset`
 *   < 0) on the masked cells, then one SET pulse (amplitude `set` > 0) on every cell with a gate voltage, each at
 *   its own gate voltage; all of `width` seconds. Reply {applied: cell-pulses}. It changes the board, so a
 *   board answers a resent id from its duplicate cache (no update is applied twice).
 * - ReadArrays (0x11): whole arrays in one request. JSON {arrays: [a...]}; reply binary float32
 *   [arrays.length × rows × cols] siemens, array after array, row-major.
 *
 * Client side: `updateRows` and `readArrays` (over Board.request, the link's ids and retries) refuse a board
 * that does not announce the feature, with a message naming it. Board side: `handleUpdateRows` and
 * `handleReadArrays`, which the emulator dispatches to.
 */
import { DeviceError } from '../../../common/errors.js';
import type { Board } from './board.js';
import { bytesOf, floats, MAX_PAYLOAD, MessageType, type Frame, type IdentifyResponse } from './protocol.js';
import type { ChipPhysics } from './emulator-physics.js';

/** Largest binary part of one UpdateRows or ReadArrays request or reply (bigger calls are split). */
const CHUNK_BYTES = 1024 * 1024;

export interface UpdateRowsRequest {
  array: number;
  rows: number[];
  cols: number;
  set: number;
  reset: number;
  width: number;
}

export interface ReadArraysRequest {
  arrays: number[];
}

/** Refuses a board that lacks a training message, naming the feature and the board. */
export function requireTrainingFeatures(board: Board, id: IdentifyResponse): void {
  const missing = (['updateRows', 'readArrays'] as const).filter((f) => id.features?.[f] !== true);
  if (missing.length > 0) {
    throw new DeviceError(`the board at ${board.url} (${id.firmware}) does not support ${missing.join(' and ')} (protocol v${id.protocol} Identify.features), which in-situ training needs; update its firmware or train on the simulator`);
  }
  if (!board.request) throw new DeviceError(`the board at ${board.url} takes no raw requests; in-situ training needs a protocol link (tcp:// or serial://)`);
}

function expectJson(f: Frame, key: string, what: string): string | null {
  return typeof f.json === 'object' && f.json !== null && typeof (f.json as Record<string, unknown>)[key] === 'number' ? null : `${what} reply without ${key}`;
}

/** Runs one step on the current connection; a caller may reconnect (and re-identify) and run it again. */
export type LinkRunner = <T>(step: (board: Board) => Promise<T>) => Promise<T>;

/**
 * Row-parallel update of one array (see above): gates and mask are [rows.length × cols]. Split into requests of
 * whole rows. Returns the cell-pulses the board applied. `link` runs each request (default: once, on `board`);
 * each request takes its id once, so a runner that reconnects after the driver gave up resends it under the
 * same id and the board answers from its duplicate cache if it had applied it: no row update lands twice.
 */
export async function updateRows(board: Board, array: number, rows: Int32Array, cols: number, gates: Float32Array, mask: Uint8Array, amp: { set: number; reset: number; width: number }, link?: LinkRunner): Promise<number> {
  if (!board.request) throw new DeviceError(`the board at ${board.url} takes no raw requests`);
  const run: LinkRunner = link ?? ((step) => step(board));
  const perRow = cols * 5;
  const step = Math.max(1, Math.floor(CHUNK_BYTES / perRow));
  let applied = 0;
  for (let r0 = 0; r0 < rows.length; r0 += step) {
    const nr = Math.min(step, rows.length - r0);
    const data = new Uint8Array(nr * perRow);
    data.set(bytesOf(gates.subarray(r0 * cols, (r0 + nr) * cols)), 0);
    data.set(mask.subarray(r0 * cols, (r0 + nr) * cols), nr * cols * 4);
    const body: UpdateRowsRequest = { array, rows: Array.from(rows.subarray(r0, r0 + nr)), cols, set: amp.set, reset: amp.reset, width: amp.width };
    const what = `row update of array ${array} (${nr} rows from row ${rows[r0]})`;
    const id = board.newId?.();
    const f = await run((b) => {
      if (!b.request) throw new DeviceError(`the board at ${b.url} takes no raw requests`);
      return b.request(MessageType.UpdateRows, body, data, what, 64, (fr) => expectJson(fr, 'applied', what), id);
    });
    applied += (f.json as { applied: number }).applied;
  }
  return applied;
}

/** Whole arrays, read in as few requests as the chunk size allows. */
export async function readArrays(board: Board, arrays: number[], rows: number, cols: number): Promise<Float32Array[]> {
  const request = board.request;
  if (!request) throw new DeviceError(`the board at ${board.url} takes no raw requests`);
  const bytes = rows * cols * 4;
  const step = Math.max(1, Math.floor(CHUNK_BYTES / bytes));
  const out: Float32Array[] = [];
  for (let a0 = 0; a0 < arrays.length; a0 += step) {
    const list = arrays.slice(a0, a0 + step);
    const what = `read of arrays ${list.join(', ')}`;
    const f = await request.call(board, MessageType.ReadArrays, { arrays: list } satisfies ReadArraysRequest, new Uint8Array(0), what, list.length * bytes, (fr) =>
      fr.data.length === list.length * bytes ? null : `${what}: reply of ${fr.data.length} bytes, expected ${list.length * bytes}`);
    const g = floats(f.data);
    for (let i = 0; i < list.length; i++) out.push(g.slice(i * rows * cols, (i + 1) * rows * cols));
  }
  return out;
}

// ---- the board's side (the emulator dispatches here) ----

export type Refuse = (code: 'bad-request' | 'out-of-range', message: string) => never;

function intList(v: unknown, key: string, limit: number, refuse: Refuse): number[] {
  if (!Array.isArray(v) || v.length === 0) return refuse('bad-request', `'${key}' must be a non-empty list of indices`);
  const seen = new Set<number>();
  for (const [i, x] of v.entries()) {
    if (typeof x !== 'number' || !Number.isInteger(x) || x < 0 || x >= limit) refuse('bad-request', `'${key}[${i}]' = ${JSON.stringify(x)} is not an index from 0 to ${limit - 1}`);
    if (seen.has(x)) refuse('bad-request', `'${key}' lists ${x} twice`);
    seen.add(x);
  }
  return v as number[];
}

/** UpdateRows on the emulated chip: everything is checked before any pulse is applied. */
export function handleUpdateRows(chip: ChipPhysics, b: Record<string, unknown>, data: Uint8Array, refuse: Refuse): { json: { applied: number }; cellPulses: number; pulses: number } {
  const p = chip.pulseModel;
  const array = b['array'];
  if (typeof array !== 'number' || !Number.isInteger(array) || array < 0 || array >= chip.count) refuse('bad-request', `array ${JSON.stringify(array)} does not exist: this board has arrays 0..${chip.count - 1}`);
  const rows = intList(b['rows'], 'rows', chip.rows, refuse);
  if (b['cols'] !== chip.cols) refuse('bad-request', `'cols' must be the array's ${chip.cols} columns (got ${JSON.stringify(b['cols'])})`);
  const num = (key: string) => {
    const v = b[key];
    if (typeof v !== 'number' || !Number.isFinite(v)) refuse('bad-request', `'${key}' must be a number (got ${JSON.stringify(v) ?? 'nothing'})`);
    return v as number;
  };
  const set = num('set');
  const reset = num('reset');
  const width = num('width');
  const lo = Math.fround(p.amplitude[0]);
  const hi = Math.fround(p.amplitude[1]);
  if (!(set >= lo && set <= hi)) refuse('out-of-range', `SET amplitude ${set} V is outside the board's ${p.amplitude[0]}–${p.amplitude[1]} V`);
  if (!(-reset >= lo && -reset <= hi)) refuse('out-of-range', `RESET amplitude ${reset} V is outside the board's −${p.amplitude[1]}–−${p.amplitude[0]} V`);
  if (!(width >= p.width[0] && width <= p.width[1])) refuse('out-of-range', `pulse width ${width} s is outside the board's ${p.width[0]}–${p.width[1]} s`);
  const cells = rows.length * chip.cols;
  if (data.length !== cells * 5) refuse('bad-request', `${rows.length} rows × ${chip.cols} columns need ${cells * 5} bytes (float32 gate voltages, then uint8 RESET mask), got ${data.length}`);
  const gates = new Float32Array(cells);
  new Uint8Array(gates.buffer).set(data.subarray(0, cells * 4));
  const mask = data.slice(cells * 4);
  for (let i = 0; i < cells; i++) {
    if (mask[i]! > 1) refuse('bad-request', `RESET mask of row ${rows[Math.floor(i / chip.cols)]}, col ${i % chip.cols} is ${mask[i]}; it must be 0 or 1`);
    if (!Number.isNaN(gates[i]!) && !Number.isFinite(gates[i]!)) refuse('bad-request', `gate voltage of row ${rows[Math.floor(i / chip.cols)]}, col ${i % chip.cols} is infinite (NaN leaves a cell out)`);
  }
  const before = chip.chip.totals();
  const applied = chip.chip.updateRows(array as number, Int32Array.from(rows), gates, mask, set, reset, width);
  return { json: { applied }, cellPulses: applied, pulses: chip.chip.totals().pulses - before.pulses };
}

/** ReadArrays on the emulated chip. */
export function handleReadArrays(chip: ChipPhysics, b: Record<string, unknown>, refuse: Refuse): { json: { arrays: number[]; rows: number; cols: number }; data: Uint8Array; reads: number } {
  const arrays = intList(b['arrays'], 'arrays', chip.count, refuse);
  const bytes = arrays.length * chip.rows * chip.cols * 4;
  if (bytes + 1024 > MAX_PAYLOAD) refuse('out-of-range', `${arrays.length} whole arrays would exceed the ${MAX_PAYLOAD}-byte frame limit; ask for fewer`);
  const out = new Float32Array(arrays.length * chip.rows * chip.cols);
  arrays.forEach((a, i) => out.set(chip.read(a, 0, 0, chip.rows, chip.cols), i * chip.rows * chip.cols));
  return { json: { arrays, rows: chip.rows, cols: chip.cols }, data: bytesOf(out), reads: arrays.length };
}

// ---- InferTiles: several tiles in one inference request ----

/** One tile of an InferTiles request: the rows it drives and the columns it senses on one array. */
export interface InferTile {
  array: number;
  rows: Int32Array;
  cols: Int32Array;
}

export interface InferTilesRequest {
  /** same: this tile is driven with the voltages of the earlier tile at that position (sent once, there). */
  tiles: { array: number; rows: number[]; cols: number[]; same?: number }[];
  batch: number;
}

/**
 * InferTiles (0x12): the Infer of several tiles (on one or several arrays) in one request. Request binary: for
 * each tile in order, float32 [batch × rows.length] volts; reply binary: for each tile in order, float32
 * [batch × cols.length] amperes. Split by batch so no frame exceeds the chunk size. A board without the
 * feature gets one Infer per tile instead (`inferTiles` falls back).
 */
export async function inferTiles(board: Board, tiles: InferTile[], voltages: Float32Array[], batch: number, supported: boolean): Promise<Float32Array[]> {
  if (supported && board.inferTiles && tiles.length > 1) return board.inferTiles(tiles, voltages, batch);
  if (!supported || !board.request || tiles.length === 1) {
    const out: Float32Array[] = [];
    for (const [i, t] of tiles.entries()) out.push(await board.infer(t.array, t.rows, t.cols, voltages[i]!, batch));
    return out;
  }
  const inPer = tiles.reduce((s, t) => s + t.rows.length, 0);
  const outPer = tiles.reduce((s, t) => s + t.cols.length, 0);
  const step = Math.max(1, Math.floor(CHUNK_BYTES / (4 * Math.max(inPer, outPer))));
  const out = tiles.map((t) => new Float32Array(batch * t.cols.length));
  const body = (b: number): InferTilesRequest => ({ tiles: tiles.map((t) => ({ array: t.array, rows: Array.from(t.rows), cols: Array.from(t.cols) })), batch: b });
  for (let s = 0; s < batch; s += step) {
    const b = Math.min(step, batch - s);
    const data = new Float32Array(b * inPer);
    let off = 0;
    tiles.forEach((t, i) => {
      data.set(voltages[i]!.subarray(s * t.rows.length, (s + b) * t.rows.length), off);
      off += b * t.rows.length;
    });
    const what = `infer of ${tiles.length} tiles (batch ${b})`;
    const f = await board.request.call(board, MessageType.InferTiles, body(b), bytesOf(data), what, b * outPer * 4, (fr) =>
      fr.data.length === b * outPer * 4 ? null : `${what}: reply of ${fr.data.length} bytes, expected ${b * outPer * 4}`);
    const g = floats(f.data);
    let at = 0;
    tiles.forEach((t, i) => {
      out[i]!.set(g.subarray(at, at + b * t.cols.length), s * t.cols.length);
      at += b * t.cols.length;
    });
  }
  return out;
}

/** InferTiles on the emulated chip: every tile checked (indices, voltages within `limit`) before any is run; the tiles' products run natively on up to `threads` threads. */
export function handleInferTiles(chip: ChipPhysics, b: Record<string, unknown>, data: Uint8Array, limit: number, refuse: Refuse, threads = 1, sharedVoltages = true): { json: { tiles: number; batch: number }; data: Uint8Array; tiles: number } {
  const tiles = b['tiles'];
  if (!Array.isArray(tiles) || tiles.length === 0) refuse('bad-request', `'tiles' must be a non-empty list of {array, rows, cols}`);
  const batch = b['batch'];
  if (typeof batch !== 'number' || !Number.isInteger(batch) || batch < 1) refuse('bad-request', `'batch' must be a positive integer (got ${JSON.stringify(batch) ?? 'nothing'})`);
  const list = (tiles as unknown[]).map((t, i) => {
    if (typeof t !== 'object' || t === null) return refuse('bad-request', `tiles[${i}] must be an object {array, rows, cols}`);
    const o = t as Record<string, unknown>;
    const array = o['array'];
    if (typeof array !== 'number' || !Number.isInteger(array) || array < 0 || array >= chip.count) refuse('bad-request', `tiles[${i}]: array ${JSON.stringify(array)} does not exist: this board has arrays 0..${chip.count - 1}`);
    const rows = intList(o['rows'], `tiles[${i}].rows`, chip.rows, refuse);
    const same = o['same'];
    if (same !== undefined) {
      if (!sharedVoltages) refuse('bad-request', `tiles[${i}].same: this board does not take shared voltages (features.sharedVoltages)`);
      if (typeof same !== 'number' || !Number.isInteger(same) || same < 0 || same >= i) refuse('bad-request', `tiles[${i}].same must be the position of an earlier tile (0..${i - 1}), got ${JSON.stringify(same)}`);
    }
    return { array: array as number, rows, cols: intList(o['cols'], `tiles[${i}].cols`, chip.cols, refuse), same: same as number | undefined };
  });
  list.forEach((t, i) => {
    if (t.same === undefined) return;
    const src = list[t.same]!;
    if (src.same !== undefined) refuse('bad-request', `tiles[${i}].same names tiles[${t.same}], which itself reuses another tile's voltages`);
    if (src.rows.length !== t.rows.length) refuse('bad-request', `tiles[${i}] drives ${t.rows.length} rows but tiles[${t.same}], whose voltages it reuses, drives ${src.rows.length}`);
  });
  const n = batch as number;
  const inPer = list.reduce((s, t) => s + (t.same === undefined ? t.rows.length : 0), 0);
  const outPer = list.reduce((s, t) => s + t.cols.length, 0);
  if (data.length !== n * inPer * 4) refuse('bad-request', `batch ${n} × ${inPer} driven rows need ${n * inPer * 4} bytes of float32 voltages, got ${data.length}`);
  if (n * outPer * 4 + 1024 > MAX_PAYLOAD) refuse('out-of-range', `the currents of batch ${n} × ${outPer} columns would exceed the ${MAX_PAYLOAD}-byte frame limit; send a smaller batch`);
  const v = new Float32Array(n * inPer);
  new Uint8Array(v.buffer).set(data);
  for (let i = 0; i < v.length; i++) {
    if (!Number.isFinite(v[i]!)) refuse('bad-request', `voltage ${i} is not a finite number`);
    if (Math.abs(v[i]!) > limit) refuse('out-of-range', `voltage ${v[i]} V exceeds the ${limit} V an inference may drive without disturbing the cells`);
  }
  let all = v;
  if (list.some((t) => t.same !== undefined)) {
    // Expand the shared blocks: every tile's voltages in order, as the native call takes them.
    const start: number[] = [];
    let at = 0;
    for (const t of list) {
      start.push(at);
      if (t.same === undefined) at += n * t.rows.length;
    }
    all = new Float32Array(list.reduce((s, t) => s + n * t.rows.length, 0));
    let off = 0;
    list.forEach((t, i) => {
      const from = start[t.same ?? i]!;
      all.set(v.subarray(from, from + n * t.rows.length), off);
      off += n * t.rows.length;
    });
  }
  const out = chip.inferTiles(list, all, n, threads);
  return { json: { tiles: list.length, batch: n }, data: bytesOf(out), tiles: list.length };
}
