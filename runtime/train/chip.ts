/**
 * The chip an in-situ trainer talks to: the forward pass of one layer on the chip, whole-array reads and
 * row-parallel updates. Two implementations: SimTrainChip (the native pulse-level chip, with the simulator's
 * read path for the forward pass) and BoardTrainChip (a board over the wire protocol, board-chip.ts).
 */
import type { PlacedModel } from '../../compiler/ir/placed.js';
import type { DefectMap } from '../../common/defects.js';
import { native, type NativeChip, type NativeProgram, type NativePulseChip } from '../../native/index.js';
import { toNativeProgram } from '../backends/sim.js';
import { createPulseChip, pulseModelOf } from '../pulse-chip.js';
import type { Board, LinkStats, Pulses } from '../backends/device/board.js';
import type { IdentifyResponse, MarkRequest, ReadRequest, StatusResponse } from '../backends/device/protocol.js';

export interface ChipCounters {
  /** Pulses the chip applied (a row-wide or row-parallel pulse counts once) and cell-pulses. */
  pulses: number;
  cellPulses: number;
  /** Cells read. */
  reads: number;
  /** Programming energy (J), where the chip reports it (null: it does not). */
  energy: number | null;
}

/** What the trainer needs from a chip. Artifact array i lives on chip array `chipArray(i)`. */
export interface TrainChip {
  readonly kind: 'sim' | 'board';
  /** The device profile the chip follows (its name). */
  readonly device: string;
  /** Layer li of `placed` on the chip with bias and activation (no head): x [batch × in] → [batch × out]. */
  forwardLayer(placed: PlacedModel, li: number, x: Float32Array, batch: number): Promise<Float32Array>;
  /** Whole-array reads of the listed chip arrays (noisy, as a board reads). */
  readArrays(arrays: number[], rows: number, cols: number): Promise<Float32Array[]>;
  /**
   * Row-parallel update of one chip array: per listed row, one RESET (amplitude `reset`) on the masked cells,
   * then one SET (amplitude `set`) on every cell whose gate voltage is not NaN. gates and mask [rows × cols].
   */
  updateRows(array: number, rows: Int32Array, gates: Float32Array, mask: Uint8Array, amplitudes: { set: number; reset: number; width: number }): Promise<void>;
  /** Throws a DeviceError naming the problem when the network's arrays do not fit this chip's. */
  checkFits(placed: PlacedModel): void;
  /** A Board on this chip, for program-and-verify (deploy) with --init model. */
  board(): Board;
  /**
   * A board: marks it 'programming' before training changes it (an earlier 'ready' mark no longer holds).
   * Throws a DeviceError if the board restarted since it was identified.
   */
  claim?(): Promise<void>;
  /** A board: re-identifies it; throws a DeviceError if it restarted (lost what training built). */
  checkpoint?(): Promise<void>;
  /** A board: link re-establishments so far, each followed by a re-identification. */
  readonly reconnects?: number;
  counters(): Promise<ChipCounters>;
  close(): Promise<void>;
}

/**
 * The simulated chip: cells change only by pulses (native PulseChip); the forward pass runs the simulator's
 * read path (DAC, read noise, IR drop, ADC, periphery) on the conductances the cells really hold.
 */
export class SimTrainChip implements TrainChip {
  readonly kind = 'sim' as const;
  readonly chip: NativePulseChip;
  readonly device: string;
  readonly #placed: PlacedModel;
  #runs = 0;
  readonly #seed: number;

  constructor(placed: PlacedModel, defects: DefectMap, seed: number) {
    pulseModelOf(placed.profile);
    this.#placed = placed;
    this.device = placed.profile.name;
    this.#seed = seed >>> 0;
    this.chip = createPulseChip(placed.profile, defects, seed);
  }

  async forwardLayer(placed: PlacedModel, li: number, x: Float32Array, batch: number): Promise<Float32Array> {
    const layer = placed.layers[li]!;
    const used = [...new Set(layer.tiles.map((t) => t.array))];
    const local = new Map(used.map((a, i) => [a, i]));
    const single: PlacedModel = {
      ...placed,
      head: 'none',
      arrays: used.map((a) => {
        const arr = placed.arrays[a]!;
        return { rows: arr.rows, cols: arr.cols, conductance: this.chip.conductances(arr.chipArray ?? a) };
      }),
      layers: [{ ...layer, tiles: layer.tiles.map((t) => ({ ...t, array: local.get(t.array)! })) }],
    };
    // Each forward pass draws its own read noise; the cells already hold their conductances (no programming error, no drift).
    const program: NativeProgram = toNativeProgram(single, { seed: (this.#seed * 2654435761 + ++this.#runs) >>> 0, threads: 1 });
    program.physics = { ...program.physics!, programSigma: 0, programRelative: 0, driftNu: 0, driftNuSigma: 0, time: 0 };
    const chip: NativeChip = new (native().Chip)(program);
    try {
      return chip.runSync(x, batch);
    } finally {
      chip.release();
    }
  }

  async readArrays(arrays: number[], rows: number, cols: number): Promise<Float32Array[]> {
    return arrays.map((a) => this.chip.read(a, 0, 0, rows, cols));
  }

  async updateRows(array: number, rows: Int32Array, gates: Float32Array, mask: Uint8Array, amp: { set: number; reset: number; width: number }): Promise<void> {
    this.chip.updateRows(array, rows, gates, mask, amp.set, amp.reset, amp.width);
  }

  checkFits(): void {}

  board(): Board {
    return localBoard(this.chip, this.#placed);
  }

  async counters(): Promise<ChipCounters> {
    const t = this.chip.totals();
    return { pulses: t.pulses, cellPulses: t.cellPulses, reads: t.reads, energy: t.energy };
  }

  async close(): Promise<void> {}
}

/** A Board on a native pulse chip, in process (deploy's program-and-verify runs on it unchanged). */
function localBoard(chip: NativePulseChip, placed: PlacedModel): Board {
  const p = pulseModelOf(placed.profile);
  const profile = placed.profile;
  const arrays = Math.max(0, ...placed.arrays.map((a, i) => (a.chipArray ?? i) + 1));
  let deployment: StatusResponse['deployment'] = null;
  let requests = 0;
  return {
    url: 'sim://pulse-chip',
    async identify(): Promise<IdentifyResponse> {
      requests++;
      return {
        protocol: 1,
        firmware: 'dendra simulator',
        board: 'dendra pulse-level simulator',
        serial: 'sim',
        cellType: '1T1R',
        device: profile.name,
        arrays: Array.from({ length: arrays }, () => ({ rows: profile.array.rows!, cols: profile.array.cols! })),
        limits: { setVoltage: [p.amplitude[0], p.amplitude[1]], resetVoltage: [-p.amplitude[1], -p.amplitude[0]], gateVoltage: [p.gate[0], p.gate[1]], width: [p.width[0], p.width[1]] },
        readVoltage: profile.read.voltage,
        features: { dendrites: false, soma: false },
      } as IdentifyResponse;
    },
    async status(): Promise<StatusResponse> {
      requests++;
      const t = chip.totals();
      return { state: deployment ? deployment.state : 'idle', deployment, pulses: t.pulses, reads: t.reads, errors: [] } as StatusResponse;
    },
    async read(r: ReadRequest): Promise<Float32Array> {
      requests++;
      return chip.read(r.array, r.row, r.col, r.rows, r.cols);
    },
    async pulse(array: number, width: number, pulses: Pulses): Promise<number> {
      requests++;
      chip.pulse(array, pulses.row, pulses.col, pulses.amplitude, pulses.gate, width);
      return pulses.row.length;
    },
    async infer(array: number, rows: Int32Array, cols: Int32Array, voltages: Float32Array, batch: number): Promise<Float32Array> {
      requests++;
      return chip.infer(array, rows, cols, voltages, batch);
    },
    async mark(m: MarkRequest): Promise<void> {
      requests++;
      deployment = m.state === 'cleared' ? null : { artifact: m.artifact, state: m.state };
    },
    stats(): LinkStats {
      return { requests, retries: 0, timeouts: 0, reconnects: 0, dropped: 0 };
    },
    async close(): Promise<void> {},
  };
}
