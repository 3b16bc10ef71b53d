/**
 * The device backend of InferenceSession: runs an artifact on a board that `dendra deploy` programmed.
 *
 * The board does what a crossbar does: it drives rows with voltages and senses column currents. Everything
 * else — the DAC, the differential pairs' subtraction, the ADC of each tile, adding tiles, scaling, bias,
 * activation and head — happens here on the host (periphery.ts mirrors the simulator's periphery), so a
 * layer computes exactly what docs/artifact-format.md "What the runtime computes" says.
 */
import { StateLost, StateWatch } from './state.js';
import type { Artifact } from '../../../artifact/format.js';
import { ArtifactError, DeviceError } from '../../../common/errors.js';
import type { Board } from './board.js';
import { connectBoard, type ClientOptions } from './client.js';
import { artifactId } from './deploy.js';
import { PROTOCOL_VERSION } from './protocol.js';
import { adc, dacRow, finishRow, makeAdc, type Adc } from './periphery.js';
import { rowSums } from '../../energy.js';

export interface DeviceBackendOptions {
  /** Board URL: tcp://HOST:PORT or serial:///dev/ttyX[?baud=N]. */
  device: string;
  /** Link settings: timeoutMs, retries, maxChunkBytes. */
  link?: ClientOptions;
  /** The artifact's file, for messages. */
  file?: string;
}

/** One tile as the board sees it: physical rows driven and columns sensed, and how they map back. */
interface BoardTile {
  chipArray: number;
  inputIndex: Int32Array;
  outputIndex: Int32Array;
  /** Distinct physical rows driven, and for each tile row r the slot of rowPos[r] and of rowNeg[r] (−1: the same row). */
  rows: Int32Array;
  posRow: Int32Array;
  negRow: Int32Array;
  /** Distinct physical columns sensed, and for each output q the slot of colPos[q] and of colNeg[q] (−1: one column). */
  cols: Int32Array;
  posCol: Int32Array;
  negCol: Int32Array;
  adc: Adc | undefined;
  /** For each driven row slot: Σ_c G of the row's target conductances in the artifact (S), for the energy estimate. */
  rowSum: Float64Array;
}

/**
 * Tiles that drive the same row slots from the same inputs (the column tiles of one row block, unless remapping
 * moved their rows) see the same voltages: computed once per group. rowSum: the members' rowSums added.
 */
interface DriveGroup {
  tile: BoardTile;
  members: number;
  rowSum: Float64Array;
}

interface BoardLayer {
  inFeatures: number;
  outFeatures: number;
  tiles: BoardTile[];
  outScale: Float32Array;
  groups: DriveGroup[];
  /** For each tile, its drive group. */
  groupOf: Int32Array;
}

function driveGroups(tiles: BoardTile[]): { groups: DriveGroup[]; groupOf: Int32Array } {
  const byKey = new Map<string, number>();
  const groups: DriveGroup[] = [];
  const groupOf = new Int32Array(tiles.length);
  tiles.forEach((t, i) => {
    const key = `${t.rows.length}|${t.inputIndex.join(',')}|${t.posRow.join(',')}|${t.negRow.join(',')}`;
    let g = byKey.get(key);
    if (g === undefined) {
      g = groups.length;
      byKey.set(key, g);
      groups.push({ tile: t, members: 0, rowSum: new Float64Array(t.rows.length) });
    }
    const group = groups[g]!;
    group.members++;
    for (let j = 0; j < t.rowSum.length; j++) group.rowSum[j] += t.rowSum[j]!;
    groupOf[i] = g;
  });
  return { groups, groupOf };
}

/** Artifact's array i → the chip's array (compiled for a chip: chipArray; otherwise i). */
const chipArrayOf = (artifact: Artifact, i: number) => artifact.arrays[i]!.chipArray ?? i;

function prepare(artifact: Artifact, file: string): BoardLayer[] {
  return artifact.layers.map((layer, li) => {
    const tiles = boardTiles(artifact, li, file);
    return { inFeatures: layer.inFeatures, outFeatures: layer.outFeatures, outScale: Float32Array.from(layer.gPerWeight, (g) => 1 / g), tiles, ...driveGroups(tiles) };
  });
}

function boardTiles(artifact: Artifact, li: number, file: string): BoardTile[] {
  const p = artifact.profile;
  const layer = artifact.layers[li]!;
  return layer.tiles.map((t, ti) => {
      const where = `layer ${li} tile ${ti}`;
      const a = artifact.arrays[t.array];
      if (!a) throw new ArtifactError(`${where} refers to array ${t.array}, which the artifact does not hold`, { file, layer: li });
      const k = t.inputIndex.length;
      const m = t.outputIndex.length;
      let rowPairs = false;
      let colPairs = false;
      for (let r = 0; r < k; r++) rowPairs ||= t.rowPos[r] !== t.rowNeg[r];
      for (let q = 0; q < m; q++) colPairs ||= t.colPos[q] !== t.colNeg[q];
      if (rowPairs && colPairs) {
        throw new ArtifactError(`${where} subtracts both row pairs and column pairs, which a physical crossbar cannot compute in one read`, { file, layer: li });
      }
      const slots = (indices: Int32Array[], limit: number, what: string) => {
        const slotOf = new Map<number, number>();
        for (const idx of indices) {
          for (const v of idx) {
            if (!(v >= 0 && v < limit)) throw new ArtifactError(`${where}: ${what} ${v} is outside array ${t.array} (${limit} ${what}s)`, { file, layer: li });
            if (!slotOf.has(v)) slotOf.set(v, slotOf.size);
          }
        }
        return { list: Int32Array.from(slotOf.keys()), slotOf };
      };
      const rs = slots([t.rowPos, t.rowNeg], a.rows, 'row');
      const cs = slots([t.colPos, t.colNeg], a.cols, 'column');
      const sums = rowSums(a.conductance, a.rows, a.cols);
      return {
        chipArray: chipArrayOf(artifact, t.array),
        inputIndex: t.inputIndex,
        outputIndex: t.outputIndex,
        rows: rs.list,
        posRow: Int32Array.from(t.rowPos, (v) => rs.slotOf.get(v)!),
        negRow: Int32Array.from(t.rowNeg, (v, r) => (v === t.rowPos[r] ? -1 : rs.slotOf.get(v)!)),
        cols: cs.list,
        posCol: Int32Array.from(t.colPos, (v) => cs.slotOf.get(v)!),
        negCol: Int32Array.from(t.colNeg, (v, q) => (v === t.colPos[q] ? -1 : cs.slotOf.get(v)!)),
        adc: makeAdc(p.adc.bits, t.adcFullScale, p.read.voltage),
        rowSum: Float64Array.from(rs.list, (row) => sums[row]!),
      };
    });
}

export class DeviceBackend {
  readonly board: Board;
  readonly #artifact: Artifact;
  readonly #layers: BoardLayer[];
  #released = false;
  #watch: StateWatch | undefined;
  /** The board announces InferTiles: a layer's tiles go in pipelined InferTiles requests, else one Infer per tile. */
  readonly #inferTiles: boolean;

  private constructor(artifact: Artifact, board: Board, layers: BoardLayer[], boot: string | undefined, inferTiles: boolean) {
    this.#artifact = artifact;
    this.#inferTiles = inferTiles;
    this.board = board;
    this.#layers = layers;
    this.#watch = new StateWatch(() => board, boot);
  }

  /**
   * Connects, checks that the board's arrays fit the artifact and that the board holds a verified
   * deployment of exactly these bytes (deployment.artifact = the hex SHA-256 trailer of the file).
   */
  static async open(artifact: Artifact, bytes: Uint8Array, options: DeviceBackendOptions): Promise<DeviceBackend> {
    const url = options.device;
    const file = options.file;
    refuseDendrites(artifact, file);
    const layers = prepare(artifact, file ?? '');
    const board = await connectBoard(url, options.link);
    try {
      const id = await board.identify();
      if (id.protocol !== PROTOCOL_VERSION) {
        throw new DeviceError(`the board at ${url} speaks protocol version ${id.protocol}; this dendra speaks version ${PROTOCOL_VERSION}`);
      }
      const p = artifact.profile;
      const name = file ?? 'the artifact';
      for (let i = 0; i < artifact.arrays.length; i++) {
        const a = artifact.arrays[i]!;
        const chip = chipArrayOf(artifact, i);
        const b = id.arrays[chip];
        if (!b) {
          throw new DeviceError(`the board at ${url} has ${id.arrays.length} arrays but ${name} needs chip array ${chip} (it uses ${artifact.arrays.length} arrays)`, { array: i });
        }
        const rows = p.array.rows ?? a.rows;
        const cols = p.array.cols ?? a.cols;
        const fits = p.array.rows !== null && p.array.cols !== null ? b.rows === rows && b.cols === cols : b.rows >= a.rows && b.cols >= a.cols;
        if (!fits) {
          throw new DeviceError(`the board at ${url} has ${b.rows} × ${b.cols} arrays but ${name} was compiled for ${rows} × ${cols} arrays (profile '${p.name}')`, { array: i });
        }
      }
      const status = await board.status();
      const d = status.deployment;
      if (!d || d.artifact !== artifactId(bytes) || d.state !== 'ready') {
        throw new DeviceError(`the board at ${url} holds no verified deployment of this artifact; run \`dendra deploy ${file ?? 'ART.dendra'} --device ${url}\` first`);
      }
      return new DeviceBackend(artifact, board, layers, status.boot, id.features?.inferTiles === true && board.inferTiles !== undefined);
    } catch (e) {
      await board.close();
      throw e;
    }
  }

  /**
   * Runs `batch` samples (input: batch × inFeatures) and returns batch × outFeatures. `stats[0]`, if given,
   * receives the crossbar read power summed over the samples (W), estimated as the simulator computes it
   * (Σ over driven rows of V² · Σ_c G) from the voltages applied and the artifact's target conductances:
   * the board's real conductances are not read back for it. Where `stats` is long enough, [3] and [4] receive
   * the physical rows driven (non-zero inputs) over every layer and over the first, as the simulator counts them.
   */
  async run(input: Float32Array, batch: number, stats?: Float64Array): Promise<Float32Array> {
    if (this.#released) throw new DeviceError('session was released');
    const artifact = this.#artifact;
    const vRead = artifact.profile.read.voltage;
    const dacBits = artifact.profile.dac.bits;
    const last = this.#layers.length - 1;
    let power = 0;
    let rowEvents = 0;
    let inputRowEvents = 0;
    let x = input;
    for (const [li, layer] of this.#layers.entries()) {
      const inF = layer.inFeatures;
      const outF = layer.outFeatures;
      const source = artifact.layers[li]!;
      // DAC: per-sample scale s and volts v = u · vRead. A sample whose scale is not finite (an input
      // holding NaN or ±Infinity) drives 0 V and comes out NaN, as in the simulator.
      const v = new Float32Array(batch * inF);
      const scale = new Float32Array(batch);
      const u = new Float32Array(inF);
      for (let b = 0; b < batch; b++) {
        const row = x.subarray(b * inF, (b + 1) * inF);
        let s = dacRow(row, dacBits, u);
        if (dacBits === 0 && !row.every(Number.isFinite)) s = NaN;
        scale[b] = s;
        if (Number.isFinite(s)) for (let i = 0; i < inF; i++) v[b * inF + i] = u[i]! * vRead;
      }
      const acc = new Float32Array(batch * outF);
      const drives: Float32Array[] = [];
      for (const { tile, members, rowSum } of layer.groups) {
        const nRows = tile.rows.length;
        const k = tile.inputIndex.length;
        const volts = new Float32Array(batch * nRows);
        drives.push(volts);
        for (let b = 0; b < batch; b++) {
          const vb = b * inF;
          const ob = b * nRows;
          let events = 0;
          for (let r = 0; r < k; r++) {
            const value = v[vb + tile.inputIndex[r]!]!;
            volts[ob + tile.posRow[r]!] += value;
            if (tile.negRow[r]! >= 0) volts[ob + tile.negRow[r]!] -= value;
            if (value !== 0) events += tile.negRow[r]! >= 0 ? 2 : 1; // event-driven rows: a zero input drives nothing
          }
          rowEvents += events * members;
          if (li === 0) inputRowEvents += events * members;
          let p = 0;
          for (let j = 0; j < nRows; j++) p += volts[ob + j]! * volts[ob + j]! * rowSum[j]!;
          if (Number.isFinite(p)) power += p;
        }
      }
      // The whole layer at once where the board takes InferTiles (pipelined requests), else tile after tile.
      const layerCurrents = this.#inferTiles && layer.tiles.length > 1
        ? await this.board.inferTiles!(layer.tiles.map((t) => ({ array: t.chipArray, rows: t.rows, cols: t.cols })), layer.tiles.map((_, ti) => drives[layer.groupOf[ti]!]!), batch)
        : undefined;
      for (const [ti, tile] of layer.tiles.entries()) {
        const nCols = tile.cols.length;
        const currents = layerCurrents ? layerCurrents[ti]! : await this.board.infer(tile.chipArray, tile.rows, tile.cols, drives[layer.groupOf[ti]!]!, batch);
        const m = tile.outputIndex.length;
        for (let b = 0; b < batch; b++) {
          const ib = b * nCols;
          const ab = b * outF;
          for (let q = 0; q < m; q++) {
            const neg = tile.negCol[q]!;
            const current = currents[ib + tile.posCol[q]!]! - (neg >= 0 ? currents[ib + neg]! : 0);
            let p = Math.fround(current / vRead);
            if (tile.adc) p = adc(tile.adc, p);
            acc[ab + tile.outputIndex[q]!] += p;
          }
        }
      }
      for (let b = 0; b < batch; b++) {
        finishRow(acc.subarray(b * outF, (b + 1) * outF), scale[b]!, layer.outScale, source.bias, source.activation, li === last ? artifact.head : 'none');
      }
      x = acc;
    }
    if (stats) {
      stats[0] = power;
      if (stats.length >= 5) {
        stats[3] = rowEvents;
        stats[4] = inputRowEvents;
      }
    }
    await this.#checkState();
    return x;
  }

  /** After a reconnect, the board must still be the one that holds the deployment (same boot id, state.ts). */
  async #checkState(): Promise<void> {
    try {
      await this.#watch?.check(false);
    } catch (e) {
      if (!(e instanceof StateLost)) throw e;
      throw new DeviceError(`the board at ${this.board.url} restarted during inference (boot ${e.before ?? '?'} -> ${e.after ?? '?'}) and lost its deployment; these outputs are discarded: run \`dendra deploy\` again`);
    }
  }

  /** The conductances (S, row-major) the board's array holds for the artifact's array `index`, read back. */
  async readConductances(index: number): Promise<Float32Array> {
    if (this.#released) throw new DeviceError('session was released');
    const a = this.#artifact.arrays[index]!;
    return this.board.read({ array: chipArrayOf(this.#artifact, index), row: 0, col: 0, rows: a.rows, cols: a.cols });
  }

  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    await this.board.close();
  }
}

/**
 * Board protocol v1 has no dendrite or soma devices: a dendritic artifact runs on the simulator only (the
 * host cannot stand in for analog dendrites without faking their physics).
 */
export function refuseDendrites(artifact: Artifact, file?: string): void {
  const li = artifact.layers.findIndex((l) => l.dendrites);
  if (li >= 0) {
    throw new DeviceError(`layer ${li} of ${file ?? 'the artifact'} has dendrites; board protocol v${PROTOCOL_VERSION} has no dendrite devices, so dendritic networks run on the simulator only (backend 'sim')`);
  }
}
