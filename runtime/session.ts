/**
 * InferenceSession, shaped like onnxruntime-node's: `create`, `run(feeds)`, `inputNames`, `outputNames`,
 * `inputMetadata`, `release()`; plus what only dendra has: the artifact's device profile and layout.
 */
import { readArtifact, readArtifactBytes, readArtifactFile, isArtifact } from '../artifact/read.js';
import type { Artifact } from '../artifact/format.js';
import { ArtifactError, InputError, DeviceError } from '../common/errors.js';
import type { DeviceProfile } from '../common/profile.js';
import { NativeStat, type NativeChip, type NativeChipInfo } from '../native/index.js';
import { createSimChip } from './backends/sim.js';
import { DeviceBackend } from './backends/device/backend.js';
import type { ClientOptions } from './backends/device/client.js';
import { Tensor } from './tensor.js';
import { EnergyMeter, type EnergyReport } from './energy.js';
export type { EnergyReport, EnergyBreakdown } from './energy.js';
import { f16round, getFloat16 } from '@petamoriken/float16';

export interface SessionOptions {
  /** 'sim' (the native simulator, default) or 'device' (a board programmed by `dendra deploy`, at `device`). */
  backend?: 'sim' | 'device';
  /** The board for backend 'device': tcp://HOST:PORT or serial:///dev/ttyX[?baud=N]. Implies backend 'device'. */
  device?: string;
  /** Link settings of the device backend (timeoutMs, retries, maxChunkBytes). */
  link?: ClientOptions;
  /** Seed of the simulator's random number generator (noise, stuck cells): same seed, same results. */
  seed?: number;
  /** Threads used for a batch; default: all cores. */
  threads?: number;
  /** Seconds since the chip was programmed, for conductance drift (default 0: just programmed). */
  time?: number;
  /**
   * 'bypass' runs a dendritic artifact as the same network without its dendrite devices (each branch's current
   * straight into the soma): the reference of the power advantage. Default 'on'. Simulator only.
   */
  dendrites?: 'on' | 'bypass';
  /**
   * The simulator's kernels: 'portable', 'avx2', 'avx512' or 'vnni' (one this CPU has: `kernels()`), or 'auto'
   * (default: the DENDRA_KERNEL environment variable, else the best this CPU has). docs/performance.md.
   */
  kernel?: string;
}

export interface ValueMetadata {
  name: string;
  isTensor: true;
  type: 'float32';
  /** Dimensions; a string names a symbolic (batch) dimension. */
  shape: (number | string)[];
}

/**
 * Up to this many multiply-accumulates a run stays on the calling thread: no worker hop, no input copy (a
 * hop costs tens of microseconds, about what the kernels take for 4M MACs; a batch-1 inference of any network
 * the benchmark runs stays synchronous). docs/performance.md.
 */
const SYNC_MACS = 1 << 22;

export class InferenceSession {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  readonly inputMetadata: readonly ValueMetadata[];
  readonly outputMetadata: readonly ValueMetadata[];
  readonly artifact: Artifact;
  #chip: NativeChip | undefined;
  /** Set for backend 'device' (then #chip is undefined). */
  #device: DeviceBackend | undefined;
  #released = false;
  readonly #macsPerSample: number;
  readonly #energy: EnergyMeter;

  private constructor(artifact: Artifact, chip: NativeChip | undefined, device?: DeviceBackend) {
    this.artifact = artifact;
    this.#chip = chip;
    this.#device = device;
    const batchName = typeof artifact.input.shape[0] === 'string' ? artifact.input.shape[0] : 'batch';
    this.inputNames = [artifact.input.name];
    this.outputNames = [artifact.output.name];
    this.inputMetadata = [{ name: artifact.input.name, isTensor: true, type: 'float32', shape: [batchName, ...(artifact.input.shape.slice(1) as number[])] }];
    this.outputMetadata = [{ name: artifact.output.name, isTensor: true, type: 'float32', shape: [batchName, artifact.output.features] }];
    this.#macsPerSample = artifact.layers.reduce((s, l) => s + l.inFeatures * l.outFeatures, 0);
    this.#energy = new EnergyMeter(artifact);
  }

  /** Opens a compiled artifact (.dendra path or bytes). */
  static async create(pathOrBytes: string | Uint8Array, options: SessionOptions = {}): Promise<InferenceSession> {
    const backend = options.backend ?? (options.device !== undefined ? 'device' : 'sim');
    if (backend !== 'sim' && backend !== 'device') throw new InputError(`backend '${String(backend)}' is not available (supported: sim, device)`);
    if (backend === 'device') {
      if (typeof options.device !== 'string' || !options.device) throw new InputError("backend 'device' needs the board's URL: { device: 'tcp://HOST:PORT' | 'serial:///dev/ttyX' }");
      const simOnly = (['seed', 'threads', 'time', 'dendrites', 'kernel'] as const).filter((k) => options[k] !== undefined);
      if (simOnly.length > 0) throw new InputError(`${simOnly.join(', ')} apply to the simulator only, not to backend 'device'`);
    } else if (options.device !== undefined) {
      throw new InputError(`device '${options.device}' needs backend 'device' (got '${backend}')`);
    }
    if (options.seed !== undefined && !(Number.isInteger(options.seed) && options.seed >= 0 && options.seed <= 0xffffffff)) {
      throw new InputError(`seed must be an integer from 0 to 4294967295 (got ${options.seed})`);
    }
    if (options.threads !== undefined && !(Number.isInteger(options.threads) && options.threads >= 1 && options.threads <= 256)) {
      throw new InputError(`threads must be an integer from 1 to 256 (got ${options.threads})`);
    }
    if (options.dendrites !== undefined && options.dendrites !== 'on' && options.dendrites !== 'bypass') {
      throw new InputError(`dendrites must be 'on' or 'bypass' (got '${String(options.dendrites)}')`);
    }
    if (options.kernel !== undefined && typeof options.kernel !== 'string') {
      throw new InputError(`kernel must be a string: 'auto', 'portable', 'avx2', 'avx512' or 'vnni' (got ${typeof options.kernel})`);
    }
    if (options.time !== undefined && !(Number.isFinite(options.time) && options.time >= 0)) {
      throw new InputError(`time must be a number of seconds >= 0 (got ${options.time})`);
    }
    let artifact: Artifact;
    if (backend === 'device') {
      // The board is checked against the file's bytes (its SHA-256 trailer), so keep them.
      let bytes: Uint8Array;
      let file: string | undefined;
      if (typeof pathOrBytes === 'string') {
        file = pathOrBytes;
        bytes = readArtifactBytes(pathOrBytes);
      } else if (pathOrBytes instanceof Uint8Array) {
        bytes = pathOrBytes;
      } else {
        throw new InputError('InferenceSession.create takes a .dendra path or its bytes');
      }
      if (!isArtifact(bytes)) throw new InputError('the bytes are not a dendra artifact; compile an ONNX model with `dendra compile` (or compile()) first');
      artifact = readArtifact(bytes, file);
      return new InferenceSession(artifact, undefined, await DeviceBackend.open(artifact, bytes, { device: options.device!, link: options.link, file }));
    }
    if (typeof pathOrBytes === 'string') {
      artifact = readArtifactFile(pathOrBytes);
    } else if (pathOrBytes instanceof Uint8Array) {
      if (!isArtifact(pathOrBytes)) throw new InputError('the bytes are not a dendra artifact; compile an ONNX model with `dendra compile` (or compile()) first');
      artifact = readArtifact(pathOrBytes);
    } else {
      throw new InputError('InferenceSession.create takes a .dendra path or its bytes');
    }
    return new InferenceSession(artifact, createSimChip(artifact, options));
  }

  get profile(): DeviceProfile {
    return this.artifact.profile;
  }

  /**
   * The simulator's kernels in use ('portable', 'avx2', 'avx512' or 'vnni'; docs/performance.md), or 'device'
   * for backend 'device'.
   */
  get kernel(): string {
    if (this.#device) return 'device';
    if (!this.#chip) throw new DeviceError('session was released');
    return this.#chip.info().kernel;
  }

  /**
   * How the simulator runs this artifact: its kernels, the bytes the session holds natively (the packed
   * matrices, once per session, the held conductances and scratch buffers), and how many tiles run as integer
   * products (exactly, when their conductances sit on the device's levels). Simulator only.
   */
  info(): NativeChipInfo {
    if (this.#device) throw new InputError("info() describes the simulator; backend 'device' has none");
    if (!this.#chip) throw new DeviceError('session was released');
    return this.#chip.info();
  }

  /** Runs a batch. Feeds: { [inputName]: Tensor } with dims [batch, ...input dims]. */
  async run(feeds: Record<string, Tensor>): Promise<Record<string, Tensor<'float32'>>> {
    const chip = this.#chip;
    const device = this.#device;
    if (this.#released || (!chip && !device)) throw new DeviceError('session was released');
    const { input, batch } = this.#checkFeeds(feeds);
    const macs = batch * this.#macsPerSample;
    // The run's crossbar read power (W), dendrite and soma energy (J) and event counts, summed over its samples
    // (NativeStat); the device backend fills the crossbar power and the row events only.
    const stats = new Float64Array(device ? NativeStat.InputRowEvents + 1 : NativeStat.Length);
    const out = device ? await device.run(input, batch, stats) : macs <= SYNC_MACS ? chip!.runSync(input, batch, stats) : await chip!.run(input, batch, stats);
    this.#energy.record({
      crossbarPower: stats[NativeStat.CrossbarPower]!, dendriteJ: stats[NativeStat.DendriteJ] ?? 0, somaJ: stats[NativeStat.SomaJ] ?? 0,
      rowEvents: stats[NativeStat.RowEvents]!, inputRowEvents: stats[NativeStat.InputRowEvents]!,
      ...(device ? {} : {
        signalsOn: stats[NativeStat.SignalsOn]!, signals: stats[NativeStat.Signals]!, somasActive: stats[NativeStat.SomasActive]!, somas: stats[NativeStat.Somas]!,
      }),
    }, batch);
    return { [this.outputNames[0]!]: new Tensor('float32', out, [batch, this.artifact.output.features]) };
  }

  /**
   * The energy model's figures (docs/energy.md), per inference: `energyPerInferenceJ` and its `breakdown`
   * into crossbar read, DAC, ADC and digital periphery, averaged over the last run's samples (scope 'last',
   * the default) or over every run of this session (scope 'all'). The crossbar term is data-dependent: the
   * simulator sums V² · G over the conductances the chip holds; the device backend estimates it from the
   * voltages it applies and the artifact's target conductances. Throws before the first run.
   */
  energy(scope: 'last' | 'all' = 'last'): EnergyReport {
    if (scope !== 'last' && scope !== 'all') throw new InputError(`energy scope must be 'last' or 'all' (got '${String(scope)}')`);
    const r = this.#energy.report(scope);
    if (!r) throw new InputError('session.energy() reports on runs: call run() first');
    return r;
  }

  /**
   * Device state: the conductances (S, row-major) array `index` of the artifact actually holds on this
   * session's chip, after programming error, stuck cells and drift. Simulator only: with backend 'device'
   * it throws; use `readConductances`, which reads the board.
   */
  conductances(index: number): Float32Array {
    const chip = this.#chip;
    if (this.#device) throw new InputError("conductances() is synchronous and simulator-only; with backend 'device' use `await session.readConductances(i)`, which reads the board");
    if (!chip) throw new DeviceError('session was released');
    this.#checkArrayIndex(index);
    return chip.conductances(index);
  }

  /** The conductances array `index` of the artifact holds, on either backend: read back from the board for 'device'. */
  async readConductances(index: number): Promise<Float32Array> {
    if (this.#released || (!this.#chip && !this.#device)) throw new DeviceError('session was released');
    this.#checkArrayIndex(index);
    return this.#device ? this.#device.readConductances(index) : this.#chip!.conductances(index);
  }

  async release(): Promise<void> {
    this.#released = true;
    this.#chip?.release();
    this.#chip = undefined;
    const device = this.#device;
    this.#device = undefined;
    await device?.release();
  }

  #checkArrayIndex(index: number): void {
    if (!Number.isInteger(index) || index < 0 || index >= this.artifact.arrays.length) {
      throw new InputError(`array index ${index} is outside 0..${this.artifact.arrays.length - 1}`);
    }
  }

  #checkFeeds(feeds: Record<string, Tensor>): { input: Float32Array; batch: number } {
    if (typeof feeds !== 'object' || feeds === null) throw new InputError('run() takes an object of input tensors');
    const name = this.inputNames[0]!;
    const extra = Object.keys(feeds).filter((k) => k !== name);
    if (extra.length > 0) throw new InputError(`unknown input '${extra[0]}'; the model's input is '${name}'`);
    const t = feeds[name];
    if (!t) throw new InputError(`missing input '${name}'`);
    if (!(t instanceof Tensor)) throw new InputError(`input '${name}' must be a Tensor`);
    const expected = this.inputMetadata[0]!.shape;
    const dims = t.dims;
    const shapeText = `[${expected.join(', ')}]`;
    if (dims.length !== expected.length || dims.slice(1).some((d, i) => d !== expected[i + 1])) {
      throw new InputError(`input '${name}' has shape [${dims.join(', ')}]; the model expects ${shapeText}`);
    }
    const batch = dims[0]!;
    if (batch < 1) throw new InputError(`input '${name}' has an empty batch`);
    let input: Float32Array;
    switch (t.type) {
      case 'float32': input = t.data as Float32Array; break;
      case 'float64': input = Float32Array.from(t.data as Float64Array); break;
      case 'float16': {
        const bits = t.data as Uint16Array;
        const view = new DataView(bits.buffer, bits.byteOffset, bits.byteLength);
        input = Float32Array.from({ length: bits.length }, (_, i) => getFloat16(view, i * 2, true));
        break;
      }
      default:
        throw new InputError(`input '${name}' has type ${t.type}; the model takes float32 (or float16/float64)`);
    }
    // A float16 model sees its input in float16: round float32/float64 feeds as ONNX Runtime's cast would.
    if (this.artifact.input.dtype === 'float16' && t.type !== 'float16') input = input.map((v) => f16round(v));
    return { input, batch };
  }
}
