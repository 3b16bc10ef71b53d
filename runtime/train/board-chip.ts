/**
 * In-situ training on a board over the wire protocol: the forward pass through Infer (the host's DAC, ADC and
 * periphery, as the device backend computes it: periphery.ts), whole-array reads and row-parallel updates
 * through the training messages (training-messages.ts). The link's request ids and the board's duplicate
 * cache make every update land exactly once through drops, damage and reconnects.
 */
import type { PlacedModel } from '../../compiler/ir/placed.js';
import { DeviceError } from '../../common/errors.js';
import type { Board } from '../backends/device/board.js';
import { connectBoard, type ClientOptions } from '../backends/device/client.js';
import { adc, dacRow, finishRow, makeAdc } from '../backends/device/periphery.js';
import { PROTOCOL_VERSION, type IdentifyResponse } from '../backends/device/protocol.js';
import { inferTiles, readArrays, requireTrainingFeatures, updateRows } from '../backends/device/training-messages.js';
import type { ChipCounters, TrainChip } from './chip.js';

export class BoardTrainChip implements TrainChip {
  readonly kind = 'board' as const;
  readonly boardLink: Board;
  readonly identity: IdentifyResponse;

  private constructor(board: Board, identity: IdentifyResponse) {
    this.boardLink = board;
    this.identity = identity;
  }

  /** Connects and checks that the board speaks this protocol and announces the training messages. */
  static async connect(url: string, link?: ClientOptions): Promise<BoardTrainChip> {
    const board = await connectBoard(url, link);
    try {
      const id = await board.identify();
      if (id.protocol !== PROTOCOL_VERSION) throw new DeviceError(`the board at ${url} speaks protocol version ${id.protocol}; this dendra speaks version ${PROTOCOL_VERSION}`);
      requireTrainingFeatures(board, id);
      return new BoardTrainChip(board, id);
    } catch (e) {
      await board.close();
      throw e;
    }
  }

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
    const currents = await inferTiles(this.boardLink, plans.map((p) => p.tile), plans.map((p) => p.volts), batch, this.identity.features?.inferTiles === true);
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
      if (!b) throw new DeviceError(`the network needs ${placed.arrays.length} arrays of ${a.rows} × ${a.cols}; the board at ${this.boardLink.url} has ${have.length}`);
      if (b.rows !== a.rows || b.cols !== a.cols) throw new DeviceError(`the network needs ${a.rows} × ${a.cols} arrays; array ${chipArray} of the board at ${this.boardLink.url} is ${b.rows} × ${b.cols}`);
    });
  }

  readArrays(arrays: number[], rows: number, cols: number): Promise<Float32Array[]> {
    return readArrays(this.boardLink, arrays, rows, cols);
  }

  async updateRows(array: number, rows: Int32Array, gates: Float32Array, mask: Uint8Array, amp: { set: number; reset: number; width: number }): Promise<void> {
    await updateRows(this.boardLink, array, rows, this.identity.arrays[array]?.cols ?? 0, gates, mask, amp);
  }

  board(): Board {
    // deploy() closes the board it is handed: give it a view whose close() leaves the link open.
    const b = this.boardLink;
    return {
      url: b.url,
      identify: () => b.identify(),
      status: () => b.status(),
      read: (r) => b.read(r),
      pulse: (a, w, p) => b.pulse(a, w, p),
      infer: (a, r, c, v, n) => b.infer(a, r, c, v, n),
      mark: (m) => b.mark(m),
      stats: () => b.stats(),
      close: async () => {},
    };
  }

  async counters(): Promise<ChipCounters> {
    const s = (await this.boardLink.status()) as unknown as Record<string, unknown>;
    const num = (k: string) => (typeof s[k] === 'number' ? (s[k] as number) : null);
    return { pulses: num('pulses') ?? 0, cellPulses: num('cellPulses') ?? 0, reads: num('reads') ?? 0, energy: num('pulseEnergy') };
  }

  /** Records on the board that it holds the trained artifact, verified (training read every array back). */
  async markTrained(artifact: string): Promise<void> {
    await this.boardLink.mark({ artifact, state: 'programming' });
    await this.boardLink.mark({ artifact, state: 'ready' });
  }

  async close(): Promise<void> {
    await this.boardLink.close();
  }
}
