/**
 * In-situ training on a board over the wire protocol: the forward pass through Infer (the host's DAC, ADC and
 * periphery, as the device backend computes it: periphery.ts), whole-array reads and row-parallel updates
 * through the training messages (training-messages.ts).
 *
 * Exactly once, and never on a board that forgot: every request runs through `#withLink`. The driver resends a
 * request under the same id through drops, damage and its own reconnects (the board's duplicate cache answers a
 * resend it already applied); when the driver gives up, the chip makes a new connection, re-identifies the board
 * (state.ts: its boot id) and resends, an update under the id it first had, so it still lands once. A board
 * whose boot id changed restarted and lost what training built: the run stops with a DeviceError saying so. The
 * board is marked 'programming' before the first update (a 'ready' mark of an earlier network no longer holds)
 * and 'ready' with the trained artifact's id only at the end (`markTrained`), with the boot id the whole run saw.
 */
import type { PlacedModel } from '../../compiler/ir/placed.js';
import { DeviceError, LinkError } from '../../common/errors.js';
import type { Board } from '../backends/device/board.js';
import { BoardRequestError, connectBoard, type ClientOptions } from '../backends/device/client.js';
import { adc, dacRow, finishRow, makeAdc } from '../backends/device/periphery.js';
import { PROTOCOL_VERSION, type IdentifyResponse } from '../backends/device/protocol.js';
import { StateLost, StateWatch } from '../backends/device/state.js';
import { inferTiles, readArrays, requireTrainingFeatures, updateRows, type LinkRunner } from '../backends/device/training-messages.js';
import type { ChipCounters, TrainChip } from './chip.js';

/** The 'programming' mark a board carries while training changes it (no artifact exists yet). */
export const TRAINING_MARK = 'in-situ training (dendra train)';

export interface BoardTrainOptions extends ClientOptions {
  /** New connections per request after the driver gave up on the link (default 3). */
  reconnects?: number;
}

export class BoardTrainChip implements TrainChip {
  readonly kind = 'board' as const;
  readonly identity: IdentifyResponse;
  readonly #url: string;
  readonly #options: BoardTrainOptions;
  readonly #reconnects: number;
  readonly #watch: StateWatch;
  #link: Board;

  private constructor(url: string, board: Board, identity: IdentifyResponse, options: BoardTrainOptions) {
    this.#url = url;
    this.#link = board;
    this.identity = identity;
    this.#options = options;
    this.#reconnects = options.reconnects ?? 3;
    this.#watch = new StateWatch(() => this.#link, identity.boot);
  }

  /** Connects and checks that the board speaks this protocol and announces the training messages. */
  static async connect(url: string, link: BoardTrainOptions = {}): Promise<BoardTrainChip> {
    if (link.reconnects !== undefined && !(Number.isInteger(link.reconnects) && link.reconnects >= 0 && link.reconnects <= 1000)) {
      throw new DeviceError(`reconnects must be an integer from 0 to 1000 (got ${link.reconnects})`);
    }
    // A driver that gives up on the first Identify gets new connections, as every later request does.
    for (let left = link.reconnects ?? 3; ; left--) {
      const board = await connectBoard(url, link);
      try {
        const id = await board.identify();
        if (id.protocol !== PROTOCOL_VERSION) throw new DeviceError(`the board at ${url} speaks protocol version ${id.protocol}; this dendra speaks version ${PROTOCOL_VERSION}`);
        requireTrainingFeatures(board, id);
        return new BoardTrainChip(url, board, id, link);
      } catch (e) {
        await board.close();
        if (!(e instanceof LinkError) || left <= 0) throw e;
      }
    }
  }

  /** The current connection (a new one after the driver gave up on the link). */
  get boardLink(): Board {
    return this.#link;
  }

  /** Link re-establishments during the run (the driver's reconnects and new connections), each re-identified. */
  get reconnects(): number {
    return this.#watch.reconnects;
  }

  /** The board's boot id the whole run has seen. */
  get boot(): string | undefined {
    return this.#watch.boot;
  }

  #lost(e: StateLost): DeviceError {
    return new DeviceError(
      `the board at ${this.#url} restarted during in-situ training (boot ${e.before ?? '?'} -> ${e.after ?? '?'}) and lost the trained state; ` +
        `the run stops, nothing is written and the board is not marked ready: check its power and run dendra train again`,
    );
  }

  /**
   * Runs one step on the current connection, then re-identifies the board if the link was re-established.
   * When the driver gives up (LinkError), a new connection is made (up to `reconnects` per step), the board
   * re-identified, and the step run again: reads and inferences simply repeat, an update repeats under its
   * own id (training-messages.ts). A changed boot id ends the run (#lost).
   */
  readonly #withLink: LinkRunner = async <T>(step: (board: Board) => Promise<T>): Promise<T> => {
    let left = this.#reconnects;
    let reconnect = false;
    for (;;) {
      try {
        if (reconnect) {
          await this.#link.close().catch(() => {});
          this.#link = await connectBoard(this.#url, this.#options);
          await this.#watch.reconnected();
          reconnect = false;
        }
        const result = await step(this.#link);
        await this.#watch.check(false);
        return result;
      } catch (e) {
        if (e instanceof StateLost) throw this.#lost(e);
        if (e instanceof BoardRequestError && e.code === 'state-lost') {
          const err = await this.#watch.translate(e).catch(() => new StateLost(this.#watch.boot, undefined));
          throw err instanceof StateLost ? this.#lost(err) : err;
        }
        if (!(e instanceof LinkError) || left-- <= 0) throw e;
        reconnect = true;
      }
    }
  };

  get device(): string {
    return this.identity.device;
  }

  async forwardLayer(placed: PlacedModel, li: number, x: Float32Array, batch: number): Promise<Float32Array> {
    const p = placed.profile;
    const vRead = p.read.voltage;
    const layer = placed.layers[li]!;
    const inF = layer.inFeatures;
    const outF = layer.outFeatures;
    const v = new Float32Array(batch * inF);
    const scale = new Float32Array(batch);
    const u = new Float32Array(inF);
    for (let b = 0; b < batch; b++) {
      const s = dacRow(x.subarray(b * inF, (b + 1) * inF), p.dac.bits, u);
      scale[b] = s;
      for (let i = 0; i < inF; i++) v[b * inF + i] = u[i]! * vRead;
    }
    const acc = new Float32Array(batch * outF);
    const plans = layer.tiles.map((t) => {
      const arr = placed.arrays[t.array]!;
      const rowSlot = new Map<number, number>();
      const colSlot = new Map<number, number>();
      for (const r of [...t.rowPos, ...t.rowNeg]) if (!rowSlot.has(r)) rowSlot.set(r, rowSlot.size);
      for (const c of [...t.colPos, ...t.colNeg]) if (!colSlot.has(c)) colSlot.set(c, colSlot.size);
      const nRows = rowSlot.size;
      const volts = new Float32Array(batch * nRows);
      for (let b = 0; b < batch; b++) {
        for (let r = 0; r < t.inputIndex.length; r++) {
          const value = v[b * inF + t.inputIndex[r]!]!;
          volts[b * nRows + rowSlot.get(t.rowPos[r]!)!] += value;
          if (t.rowNeg[r] !== t.rowPos[r]) volts[b * nRows + rowSlot.get(t.rowNeg[r]!)!] -= value;
        }
      }
      return { t, rowSlot, colSlot, volts, tile: { array: arr.chipArray ?? t.array, rows: Int32Array.from(rowSlot.keys()), cols: Int32Array.from(colSlot.keys()) } };
    });
    // Every tile of the layer in one request where the board takes InferTiles.
    const currents = await this.#withLink((b) => inferTiles(b, plans.map((p) => p.tile), plans.map((p) => p.volts), batch, this.identity.features?.inferTiles === true));
    plans.forEach(({ t, colSlot }, i) => {
      const cur = currents[i]!;
      const nCols = colSlot.size;
      const conv = makeAdc(p.adc.bits, t.adcFullScale, vRead);
      for (let b = 0; b < batch; b++) {
        for (let q = 0; q < t.outputIndex.length; q++) {
          const pos = colSlot.get(t.colPos[q]!)!;
          const neg = t.colNeg[q] !== t.colPos[q] ? colSlot.get(t.colNeg[q]!)! : -1;
          const current = cur[b * nCols + pos]! - (neg >= 0 ? cur[b * nCols + neg]! : 0);
          let y = Math.fround(current / vRead);
          if (conv) y = adc(conv, y);
          acc[b * outF + t.outputIndex[q]!] += y;
        }
      }
    });
    const outScale = Float32Array.from(layer.gPerWeight, (g) => 1 / g);
    for (let b = 0; b < batch; b++) finishRow(acc.subarray(b * outF, (b + 1) * outF), scale[b]!, outScale, layer.bias, layer.activation, 'none');
    return acc;
  }

  checkFits(placed: PlacedModel): void {
    const have = this.identity.arrays;
    placed.arrays.forEach((a, i) => {
      const chipArray = a.chipArray ?? i;
      const b = have[chipArray];
      if (!b) throw new DeviceError(`the network needs ${placed.arrays.length} arrays of ${a.rows} × ${a.cols}; the board at ${this.#url} has ${have.length}`);
      if (b.rows !== a.rows || b.cols !== a.cols) throw new DeviceError(`the network needs ${a.rows} × ${a.cols} arrays; array ${chipArray} of the board at ${this.#url} is ${b.rows} × ${b.cols}`);
    });
  }

  readArrays(arrays: number[], rows: number, cols: number): Promise<Float32Array[]> {
    return this.#withLink((b) => readArrays(b, arrays, rows, cols));
  }

  async updateRows(array: number, rows: Int32Array, gates: Float32Array, mask: Uint8Array, amp: { set: number; reset: number; width: number }): Promise<void> {
    await updateRows(this.#link, array, rows, this.identity.arrays[array]?.cols ?? 0, gates, mask, amp, this.#withLink);
  }

  /** Before the first update: the board is no longer what an earlier 'ready' mark says (refused if it restarted). */
  async claim(): Promise<void> {
    const boot = this.#watch.boot;
    await this.#withLink((b) => b.mark({ artifact: TRAINING_MARK, state: 'programming', ...(boot !== undefined ? { boot } : {}) }));
  }

  /** Re-identifies the board now (a reset that kept the link, e.g. a serial line, shows only here). */
  async checkpoint(): Promise<void> {
    await this.#withLink(() => this.#watch.check(true));
  }

  board(): Board {
    // deploy() closes the board it is handed: give it a view of the current link whose close() leaves it open.
    const self = () => this.#link;
    return {
      url: this.#url,
      identify: () => self().identify(),
      status: () => self().status(),
      read: (r) => self().read(r),
      pulse: (a, w, p) => self().pulse(a, w, p),
      infer: (a, r, c, v, n) => self().infer(a, r, c, v, n),
      mark: (m) => self().mark(m),
      stats: () => self().stats(),
      close: async () => {},
    };
  }

  async counters(): Promise<ChipCounters> {
    const s = (await this.#withLink((b) => b.status())) as unknown as Record<string, unknown>;
    const num = (k: string) => (typeof s[k] === 'number' ? (s[k] as number) : null);
    return { pulses: num('pulses') ?? 0, cellPulses: num('cellPulses') ?? 0, reads: num('reads') ?? 0, energy: num('pulseEnergy') };
  }

  /**
   * Records on the board that it holds the trained artifact (training read every array back at the end):
   * 'programming', then 'ready', both carrying the boot id the whole run saw, so a board that restarted since
   * refuses them; then confirmed by a Status. Throws a DeviceError (the board is then not ready) otherwise.
   */
  async markTrained(artifact: string): Promise<void> {
    const boot = this.#watch.boot;
    const withBoot = boot !== undefined ? { boot } : {};
    await this.checkpoint();
    await this.#withLink((b) => b.mark({ artifact, state: 'programming', ...withBoot }));
    await this.#withLink((b) => b.mark({ artifact, state: 'ready', ...withBoot }));
    await this.checkpoint();
    const after = await this.#withLink((b) => b.status());
    if (after.deployment?.artifact !== artifact || after.deployment.state !== 'ready') {
      throw new DeviceError(`the board at ${this.#url} did not keep the 'ready' mark of the trained network (it reports ${JSON.stringify(after.deployment)?.slice(0, 200)}); run dendra train again`);
    }
  }

  async close(): Promise<void> {
    await this.#link.close();
  }
}
