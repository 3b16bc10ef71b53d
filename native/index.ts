/**
 * The typed surface of the native addon (build/Release/dendra_native.node), in one place.
 *
 * The addon knows physical arrays, conductances (siemens), voltages (volts) and currents (amperes);
 * it knows nothing of ONNX or files. Everything handed to it is validated on the C++ side and a bad
 * value comes back as a JS `Error` whose message names the field (e.g. `layers[1].tiles[3].rowPos[7]`).
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** One physical crossbar array: `rows × cols` cells, conductance row-major in siemens. */
export interface NativeArray {
  rows: number;
  cols: number;
  /** Target conductance of each cell, row-major, length rows*cols, siemens, finite and >= 0. */
  conductance: Float32Array;
  /**
   * Optional, length rows*cols: 0 healthy, 1 stuck ON, 2 stuck OFF. Stuck cells sit exactly at their
   * `conductance` (no programming error, no drift); they still show read noise.
   */
  stuck?: Uint8Array;
}

/**
 * Device non-idealities applied by the simulator (all 0 = an ideal device). Programming error and
 * drift are drawn once, when the chip is constructed ("programmed"), from the instance's seeded RNG;
 * read noise is drawn on every run.
 */
export interface NativePhysics {
  /** Programming error of each healthy cell: G ← max(0, G + N(0, σ²)), σ = programSigma + programRelative·G. */
  programSigma: number;
  programRelative: number;
  /**
   * Read noise of every device on every read, σ = readSigma + readRelative·G, independent per device.
   * Drawn per output column from the exact variance it implies: Var(I_c) = Σ_r v_r² (σ²(G+_rc) + σ²(G−_rc)).
   */
  readSigma: number;
  readRelative: number;
  /** Drift of each healthy cell: G(t) = G·(t/t0)^(−ν), ν ~ N(driftNu, driftNuSigma²) clamped at 0; no drift when time <= driftT0. */
  driftNu: number;
  driftNuSigma: number;
  driftT0: number;
  /** Seconds since programming. */
  time: number;
  /**
   * Wire resistance (Ω) of each row/column segment between adjacent cells. First-order IR drop: a cell at
   * (i, j) of an R-row array sees (j + 1) row segments from its row driver (at column 0) and (R − i) column
   * segments to its column's sense amplifier (below row R − 1) in series, ignoring the other cells' currents:
   *   G_eff = G / (1 + G · r · (j + 1 + R − i)).
   */
  wireResistance: number;
  /**
   * Spacing (S) of the device's evenly spaced conductance levels; 0 or absent: continuous. With a DAC of at
   * most 8 bits, a tile whose G+ − G− are all whole multiples of it runs as exact integer products (level
   * differences × DAC codes); any other tile in 16-bit fixed point (docs/performance.md).
   */
  levelStep?: number;
}

/**
 * A tile: the part of one layer's weight matrix held by one physical array.
 * Logical input `inputIndex[r]` drives the differential row pair (rowPos[r], rowNeg[r]) with +v / -v
 * (or the same row when rowPos == rowNeg and the pair is on columns); logical output `outputIndex[c]`
 * reads the difference of columns (colPos[c], colNeg[c]) (or one column when the pair is on rows).
 * The effective conductance seen by (r, c) is
 *   G[rowPos[r], colPos[c]] - G[rowNeg[r], colNeg[c]].
 */
export interface NativeTile {
  array: number;
  inputIndex: Int32Array;
  rowPos: Int32Array;
  rowNeg: Int32Array;
  outputIndex: Int32Array;
  colPos: Int32Array;
  colNeg: Int32Array;
  /** ADC full-scale current in amperes (symmetric, ±fullScale); ignored when the layer's adcBits is 0. */
  adcFullScale: number;
  /**
   * The dendritic branch every input of this tile feeds, in [0, layer.dendrites.count); absent = 0. Its
   * column segments' currents add into that branch's partial sums.
   */
  branch?: number;
}

/** Activation codes, applied by the periphery after the bias. */
export const NativeActivation = {
  None: 0,
  Relu: 1,
  /** alpha = slope for x < 0 */
  LeakyRelu: 2,
  Sigmoid: 3,
  Tanh: 4,
  /** alpha = min, beta = max */
  Clip: 5,
  /** The paper's soma: beta · max(2·sigmoid(x/beta − alpha) − 1, 0); alpha = θ, beta = scale > 0. */
  ThresholdSoma: 6,
} as const;
export type NativeActivation = (typeof NativeActivation)[keyof typeof NativeActivation];

/** Digital output heads, applied to a layer's whole output row after its activation. */
export const NativeHead = { None: 0, Softmax: 1, LogSoftmax: 2 } as const;
export type NativeHead = (typeof NativeHead)[keyof typeof NativeHead];

export const NativeDendriteKind = { Exponential: 0, ThresholdLinear: 1 } as const;
export type NativeDendriteKind = (typeof NativeDendriteKind)[keyof typeof NativeDendriteKind];

/**
 * A layer's dendrites (common/dendrite.ts, docs/dendrites.md). Per sample, neuron j and branch b the tiles of
 * branch b give z (weight units, after the DAC scale and outScale); the dendrite outputs
 * y = fullScale · ε · H(z / fullScale) with H(u) = sign(u) · i(ratio·|u|) / ratio, and the soma gets
 * Σ_b y + biasScale · bias. ε ~ N(1, variation²) per device, clamped at 0, drawn once per chip from the seed.
 */
export interface NativeDendrites {
  /** Branches per neuron, 1..inFeatures. */
  count: number;
  kind: NativeDendriteKind;
  /** 50·n/(1 − n), 0..700. */
  alpha: number;
  /** ON/OFF ratio >= 1. */
  onOffRatio: number;
  /** voltage / onVoltage, > 0. */
  ratio: number;
  /** maxVoltage / onVoltage, > 0: the applied voltage saturates there (the device's rating); absent: no ceiling. */
  maxRatio?: number;
  /** threshold-linear switching voltage (normalised), (0, 1]. */
  threshold: number;
  rectify: boolean;
  variation: number;
  fullScale: number;
  biasScale: number;
  /** Joules per unit of Σ (ratio·|u|)·i(ratio·|u|)·ε: onVoltage · onCurrent · time. */
  energyUnit: number;
  /** The same network without dendrite devices: y = z, biasScale taken as 1, no dendrite energy. */
  bypass: boolean;
}

export interface NativeLayer {
  inFeatures: number;
  outFeatures: number;
  /** Read voltage in volts: a normalised input of 1.0 is applied as vRead. > 0. */
  vRead: number;
  /** DAC bits (signed, per-sample abs-max scaling); 0 = no quantisation and no scaling. 0..16. */
  dacBits: number;
  /** ADC bits (signed, ±adcFullScale of each tile); 0 = ideal ADC. 0..16. */
  adcBits: number;
  tiles: NativeTile[];
  /** Per output: weight units per siemens (1 / conductance-per-unit-weight). Length outFeatures. */
  outScale: Float32Array;
  /** Per output bias added digitally after scaling. Length outFeatures. */
  bias: Float32Array;
  activation: NativeActivation;
  alpha: number;
  beta: number;
  head: NativeHead;
  /** Absent: point neurons (every tile adds straight into its outputs). */
  dendrites?: NativeDendrites;
  /**
   * Soma devices (energy only): per sample Σ_j |out_j| / fullScale · energy joules, out the activation's output
   * before the head. Absent: no soma devices.
   */
  soma?: { fullScale: number; energy: number };
}

export interface NativeProgram {
  arrays: NativeArray[];
  layers: NativeLayer[];
  /** Worker threads used for a batch (>= 1). */
  threads: number;
  /** Seed of the instance's RNG (a uint32). */
  seed: number;
  /** Optional; absent = ideal devices. */
  physics?: NativePhysics;
  /** The kernels: 'portable', 'avx2', 'avx512', 'vnni' or 'auto' (absent: DENDRA_KERNEL, else the CPU's best). */
  kernel?: string;
}

/** Slots of the `stats` array of NativeChip.run/runSync. */
export const NativeStat = {
  CrossbarPower: 0, DendriteJ: 1, SomaJ: 2, RowEvents: 3, InputRowEvents: 4, SignalsOn: 5, Signals: 6, SomasActive: 7, Somas: 8,
  Length: 9,
} as const;

export interface NativeChip {
  readonly inFeatures: number;
  readonly outFeatures: number;
  /**
   * Runs `batch` samples synchronously on the calling thread's pool. input.length == batch*inFeatures.
   * `stats`, if given (a Float64Array of length >= 1), receives in stats[0] the run's crossbar read power
   * summed over its samples, in watts (see lastRunCrossbarPower), and where it is long enough the dendrites'
   * energy (J) in stats[1] and the somas' (J) in stats[2], summed over the samples; then the run's event counts
   * (docs/energy.md), summed over its samples: [3] physical rows driven (non-zero inputs, every layer), [4] those
   * of the first layer, [5] dendrite branch signals in the ON region, [6] non-zero branch signals, [7] soma outputs
   * above 1 % of their full scale, [8] soma outputs (layers with soma devices). See NativeStat.
   */
  runSync(input: Float32Array, batch: number, stats?: Float64Array): Float32Array;
  /**
   * Same computation off the main thread (Napi::AsyncWorker); the input is copied before it starts.
   * `stats[0]` is written just before the promise resolves, so concurrent runs each get their own figure.
   */
  run(input: Float32Array, batch: number, stats?: Float64Array): Promise<Float32Array>;
  /**
   * The crossbar read power of the last completed run, summed over its samples, in watts: for every sample,
   * layer and tile, Σ over the tile's driven physical rows ρ of V_ρ² · Σ_c G_ρc, with V_ρ the voltage the row
   * is driven with (the DAC output times vRead; −V on the negative row of a pair on rows) and G the held
   * conductances of every cell of the row (after programming error and drift, stuck cells included, before
   * IR drop). Multiplied by the read time it is the run's crossbar energy (docs/energy.md). A sample whose
   * term is not finite (an input holding NaN or ±Infinity) adds 0. 0 before any run.
   */
  lastRunCrossbarPower(): number;
  /** The conductances the chip actually holds after programming error, stuck cells and drift (a copy), row-major. */
  conductances(array: number): Float32Array;
  /** Frees the native memory; later calls throw. */
  release(): void;
  /** How the chip runs: its kernels and what it holds (docs/performance.md). */
  info(): NativeChipInfo;
}

export interface NativeChipInfo {
  /** The kernels in use: 'portable', 'avx2', 'avx512' or 'vnni'. */
  kernel: string;
  /** Bytes the session holds natively: packed matrices (once per session), held conductances, scratch buffers. */
  memoryBytes: number;
  tiles: number;
  /** Tiles run as integer products (their layer has a DAC of 1..8 bits). */
  integerTiles: number;
  /** ... of which every G+ − G− is a whole number of conductance levels: products exact. */
  exactTiles: number;
}

/**
 * One tile on one array for the placement solver (compiler/passes/remap-defects.ts): logical inputs go to
 * row slots and outputs to column slots, minimising Σ power_r · invK2_q · miss(±weight_rq, site)² over
 * the faulty sites, by alternating linear assignments (rows, columns, rows, ...).
 */
export interface NativePlacementProblem {
  rowSlots: number;
  colSlots: number;
  /** true: a row slot may be taken flipped (pairs on rows); false: a column slot may. */
  flipRows: boolean;
  k: number;
  c: number;
  /** k*c, row-major: the target G+ − G− of each weight in siemens. */
  weights: Float64Array;
  /** c: 1 / (conductance per unit weight)² of each output. */
  invK2: Float64Array;
  /** k: weight of each input's error (its mean power), >= 0. */
  power: Float64Array;
  /** The faulty sites: slot indices and the interval of G+ − G− each can still reach, unflipped. */
  siteRow: Int32Array;
  siteCol: Int32Array;
  siteLo: Float64Array;
  siteHi: Float64Array;
  /** Initial (naive) slots, distinct. */
  rowSlot: Int32Array;
  colSlot: Int32Array;
  rounds: number;
}

export interface NativePlacement {
  rowSlot: Int32Array;
  rowFlip: Uint8Array;
  colSlot: Int32Array;
  colFlip: Uint8Array;
}

/**
 * A chip whose cells change only by pulses (native/src/pulse_physics.h): the board emulator's hidden state and
 * the in-situ trainer's simulated chip. As fabricated, healthy cells are uniform in the lower quarter of the
 * window; each cell has a device-to-device factor d ~ N(1, variation²) on its SET response.
 * SET (a > 0): G ← max(G, d·(slope·clip(Vg) + offset)) + N(0, noise²); RESET (a < 0, |a| > threshold):
 * G ← Gmin + (G − Gmin)·exp(−(|a| − threshold)/scale) + N(0, noise²); G clamped to [0, 1.2·Gmax]. Stuck cells
 * never change. Each cell counts its pulses and their energy a²·G·width (G the larger of before and after).
 */
export interface NativePulseChipConfig {
  rows: number;
  cols: number;
  /** Arrays on the chip, materialised on first use, each from its own seeded stream. */
  count: number;
  gmin: number;
  gmax: number;
  readSigma: number;
  readRelative: number;
  pulse: { slope: number; offset: number; gateLo: number; gateHi: number; threshold: number; scale: number; noise: number; variation: number };
  seed: number;
  /** Per array (at most count entries): the stuck cells (row-major indices) and their conductances. */
  stuck?: { cells: Int32Array; conductance: Float32Array }[];
}

export interface NativePulseChip {
  /** Pulses in order on one array (col −1 = the whole row); everything is checked before any pulse is applied. */
  pulse(array: number, row: Int32Array, col: Int32Array, amplitude: Float32Array, gate: Float32Array, width: number): void;
  /**
   * Row-parallel update: per listed row one RESET pulse (resetAmplitude < 0) on the cells whose mask is 1, then
   * one SET pulse (setAmplitude > 0) on every cell whose gate voltage is not NaN, at that gate voltage.
   * gates and reset are [rows.length × cols]. Returns the cell-pulses applied.
   */
  updateRows(array: number, rows: Int32Array, gates: Float32Array, reset: Uint8Array, setAmplitude: number, resetAmplitude: number, width: number): number;
  /** A noisy read of a region (σ = readSigma + readRelative·G per cell), row-major. */
  read(array: number, row: number, col: number, rows: number, cols: number): Float32Array;
  /** Column currents [batch × cols] for voltages [batch × rows], read noise of the exact variance per column. */
  infer(array: number, rows: Int32Array, cols: Int32Array, voltages: Float32Array, batch: number): Float32Array;
  /**
   * `infer` of several tiles at once (InferTiles): tile t drives rowCounts[t] rows of arrays[t] and senses
   * colCounts[t] columns; rows, cols and voltages ([batch × rowCounts[t]] per tile) hold the tiles' lists one
   * after another; returns their currents ([batch × colCounts[t]] per tile) one after another. Tiles run on up
   * to `threads` threads, each with its own noise stream drawn in tile order.
   */
  inferTiles(arrays: Int32Array, rowCounts: Int32Array, rows: Int32Array, colCounts: Int32Array, cols: Int32Array, voltages: Float32Array, batch: number, threads: number): Float32Array;
  /** The hidden truth (copies): conductances, SET factors, pulses per cell, energy per cell (J), stuck mask. */
  conductances(array: number): Float32Array;
  setFactors(array: number): Float32Array;
  pulseCounts(array: number): Uint32Array;
  pulseEnergy(array: number): Float64Array;
  stuckMask(array: number): Uint8Array;
  totals(): { pulses: number; cellPulses: number; reads: number; energy: number };
}

// ───────────────────────── The training engine (native/src/train/, docs/training.md) ─────────────────────────

/**
 * A dendritic layer in training (the model of common/dendrite.ts): per sample, neuron j and branch b,
 *   z_bj = Σ_{i: branchOf[i] = b} x_i W_ij,   pre_j = biasScale·b_j + Σ_b fullScale·ε_bj·H(z_bj / fullScale),
 * H(u) = sign(u)·i(ratio·|u|)/ratio (NativeDendrites), then the layer's activation (the soma).
 */
export interface NativeTrainDendrites {
  /** Branches per neuron, 1..inFeatures. */
  count: number;
  /** Branch of each input, in [0, count); length inFeatures. */
  branchOf: Int32Array;
  kind: NativeDendriteKind;
  /** 50·n/(1 − n), 0..700 (default 0: a linear device). */
  alpha?: number;
  /** ON/OFF ratio >= 1 (default 1). */
  onOffRatio?: number;
  /** voltage / onVoltage, > 0 (default 1). */
  ratio?: number;
  /** maxVoltage / onVoltage, > 0: the applied voltage saturates there (default: no ceiling). */
  maxRatio?: number;
  /** threshold-linear switching voltage (normalised), (0, 1] (default 1). */
  threshold?: number;
  /** Negative branch signals pass nothing (default false). */
  rectify?: boolean;
  /** σ of each dendrite's factor ε ~ N(1, σ²) clamped at 0, drawn per minibatch when a pass asks for `variation` (default 0). */
  variation?: number;
  /** F > 0 (default 1). */
  fullScale?: number;
  /** κ (default 1). */
  biasScale?: number;
}

/**
 * Hardware effects in the training forward pass, in weight units (what x·W sums in); all off by default.
 * Random draws come from the trainer's seeded RNG and only in passes that ask for `noise`.
 */
export interface NativeTrainHardware {
  /** Per weight (same layout as `weight`): non-zero = stuck at `stuckValue` (fixed; no gradient, never updated). */
  stuck?: Uint8Array;
  stuckValue?: Float32Array;
  /** Programming error: W̃ = W + N(0, (programSigma + programRelative·|W|)²) per healthy weight, one draw per pass (minibatch); gradient straight through. */
  programSigma?: number;
  programRelative?: number;
  /** Read noise: each sum z_j gets N(0, Σ_i x_i²·(readSigma + readRelative·|W̃_ij|)²), per sample, per pass. */
  readSigma?: number;
  readRelative?: number;
  /** ADC: sums (branch sums in a dendritic layer) clipped to ±adcClip; no gradient where clipped. 0 = off. */
  adcClip?: number;
  /** ADC bits (needs adcClip): sums quantised to adcClip/(2^(bits−1) − 1), straight-through. 0 = off. */
  adcBits?: number;
  /** DAC bits: each input row scaled by its abs-max and quantised as the simulator's DAC, straight-through. 0 = off. */
  dacBits?: number;
}

export interface NativeTrainLayer {
  inFeatures: number;
  outFeatures: number;
  /** inFeatures × outFeatures, row-major [in][out] (dendra's DenseLayer, crossbar rows × columns), or [out][in] with layout 'out-in'. */
  weight: Float32Array;
  bias: Float32Array;
  /** The soma: NativeActivation (ThresholdSoma: alpha = θ, beta = scale > 0; LeakyRelu: alpha; Clip: alpha = min, beta = max). */
  activation: NativeActivation;
  alpha?: number;
  beta?: number;
  dendrites?: NativeTrainDendrites;
  hardware?: NativeTrainHardware;
}

export interface NativeTrainNetwork {
  layers: NativeTrainLayer[];
  /** Threads for the GEMMs (>= 1). */
  threads: number;
  /** Seed of the trainer's RNG (a uint32): minibatch order, ε, programming error, read noise. */
  seed: number;
  /** 'in-out' (default): weights [in][out]; 'out-in': [out][in] (ONNX Gemm transB, PyTorch Linear). Gradients come back in the same layout. */
  layout?: 'in-out' | 'out-in';
  /** The loss is the softmax cross-entropy of logitScale × the last layer's outputs (default 1). */
  logitScale?: number;
  /** L1 activity penalty added to the loss, per sample: soma·Σ_j |out_j| over every layer but the last (its outputs are the logits), branch·Σ_bj |z_bj / F| over dendritic layers (a rectified negative signal: 0). */
  penalty?: { soma?: number; branch?: number };
}

/** What one forward/backward pass draws or is given. */
export interface NativeTrainPassOptions {
  /** Draw programming error and read noise (NativeTrainHardware) for this pass (default false). */
  noise?: boolean;
  /** Draw a fresh ε for every dendrite, one chip for the whole batch (default false: ε = 1, or `eps`). */
  variation?: boolean;
  /** Per layer ε [count × out] (branch-major) of one chip, or null (ε = 1). Not with `variation`. */
  eps?: (Float32Array | null)[];
}

export interface NativeTrainGradientOptions extends NativeTrainPassOptions {
  /**
   * Per layer, [batch × outFeatures]: the outputs the chip measured (after the activation, before any head).
   * The backward then uses what the chip computed: each layer's input is the previous layer's measured output
   * (layer 0: x), the activation's slope is taken from the measured output, and the loss from the last layer's;
   * a dendritic layer's branch sums are recomputed from its measured input and the current weights. No draws
   * (noise and variation must be off).
   */
  measured?: Float32Array[];
}

/** d(loss)/d(params) of one batch, in the network's layout; the loss is the batch mean. */
export interface NativeTrainGradients {
  weight: Float32Array[];
  bias: Float32Array[];
  /** Mean over the batch of cross-entropy + penalty. */
  loss: number;
  crossEntropy: number;
  /** Samples whose largest output is their label. */
  correct: number;
  samples: number;
}

export interface NativeOptimizer {
  kind: 'sgd' | 'rmsprop' | 'adam';
  /** η > 0 (default 1e-3). */
  learningRate?: number;
  /** SGD: v ← μ·v + g, θ ← θ − η·v (default 0). */
  momentum?: number;
  /** RMSprop: s ← ρ·s + (1 − ρ)·g², θ ← θ − η·g/(√s + ε) (default 0.9). */
  rho?: number;
  /** Adam (Kingma & Ba, Algorithm 1; defaults 0.9, 0.999). */
  beta1?: number;
  beta2?: number;
  /** ε of RMSprop and Adam (default 1e-8). */
  epsilon?: number;
  /** 'constant' (default) or 'linear': η_t = η·(1 − (t − 1)/totalSteps). */
  schedule?: 'constant' | 'linear';
  totalSteps?: number;
}

export interface NativeFitOptions {
  /** Passes over the samples (default 1); each reshuffled from the trainer's RNG (Fisher–Yates). */
  epochs?: number;
  /** Samples per step (default 32; the last minibatch of an epoch may be smaller). */
  batch?: number;
  /** Draw programming error and read noise for every minibatch (default false). */
  noise?: boolean;
  /** Draw a fresh ε per dendrite for every minibatch (one chip per minibatch) (default false). */
  variation?: boolean;
}

export interface NativeFitProgress {
  epoch: number;
  /** Samples done so far over all epochs, of `total`. */
  samples: number;
  total: number;
  /** Mean loss of this epoch's minibatches so far. */
  loss: number;
}

export interface NativeFitResult {
  /** Per epoch, the mean loss and accuracy over its minibatches as they trained. */
  loss: number[];
  accuracy: number[];
  /** Optimizer steps taken so far (all fits). */
  steps: number;
}

/** A network's weights, its optimizer's state and a seeded RNG, in native memory. */
export interface NativeTrainer {
  /** The gradients at the current weights (no update). */
  gradients(x: Float32Array, labels: Int32Array, options?: NativeTrainGradientOptions): NativeTrainGradients;
  /** One optimizer step on this batch (the whole batch is one minibatch). */
  step(x: Float32Array, labels: Int32Array, options?: NativeTrainGradientOptions): Omit<NativeTrainGradients, 'weight' | 'bias'>;
  /** Epochs of seeded minibatches off the main thread (Napi::AsyncProgressQueueWorker); x and labels are copied first. */
  fit(x: Float32Array, labels: Int32Array, options?: NativeFitOptions, onProgress?: (p: NativeFitProgress) => void): Promise<NativeFitResult>;
  /** The same on the calling thread, for tiny networks. */
  fitSync(x: Float32Array, labels: Int32Array, options?: NativeFitOptions): NativeFitResult;
  /** Mean cross-entropy and accuracy of the forward (default nominal: no noise, ε = 1). */
  evaluate(x: Float32Array, labels: Int32Array, options?: NativeTrainPassOptions): { loss: number; accuracy: number; correct: number; samples: number };
  /** The last layer's outputs [samples × out] (before any head). */
  predict(x: Float32Array, options?: NativeTrainPassOptions): Float32Array;
  /**
   * The forward with every layer kept: per layer its outputs [samples × out] (after the soma), its soma inputs
   * `pre` [samples × out] and, for a dendritic layer, its branch sums z [samples × count × out] (after the ADC;
   * null for a point-neuron layer): what calibration and energy statistics need, and the activations a
   * simulated chip would report to trainGradients' `measured`.
   */
  forwardLayers(x: Float32Array, options?: NativeTrainPassOptions): { outputs: Float32Array[]; pre: Float32Array[]; branch: (Float32Array | null)[] };
  /** Copies of the current weights and biases, in the network's layout. */
  params(): { weight: Float32Array[]; bias: Float32Array[] };
  setParams(p: { weight: Float32Array[]; bias: Float32Array[] }): void;
  /** Optimizer steps taken. */
  readonly steps: number;
  /** Frees the native memory (weights, optimizer state, buffers) now; later calls throw. A running fit finishes first. */
  release(): void;
}

export interface NativeModule {
  Chip: new (program: NativeProgram) => NativeChip;
  PulseChip: new (config: NativePulseChipConfig) => NativePulseChip;
  /** Solves every problem (on up to `threads` threads) and returns the improved slots. */
  placeTiles(problems: NativePlacementProblem[], threads: number): NativePlacement[];
  /**
   * The kernels a program without `kernel` runs: DENDRA_KERNEL (portable | avx2 | avx512 | vnni) when set, else
   * the best this CPU has. Throws a RangeError when DENDRA_KERNEL names one this CPU lacks.
   */
  kernel(): string;
  /** Every kernel this CPU can run, lowest first. */
  kernels(): string[];
  /** A trainer holding a copy of the network's weights and an optimizer (default Adam, η = 1e-3). */
  Trainer: new (network: NativeTrainNetwork, optimizer?: NativeOptimizer) => NativeTrainer;
  /**
   * The one-step primitive (sync): the gradients of the loss of one batch at the network's weights, e.g. the
   * weights a chip holds read back as float32 per layer (layout 'out-in' for [out][in]), with `measured` the
   * per-layer outputs the chip computed for this batch. Nothing is kept between calls.
   */
  trainGradients(network: NativeTrainNetwork, x: Float32Array, labels: Int32Array, options?: NativeTrainGradientOptions): NativeTrainGradients;
  /**
   * The dendrites of one layer on given branch sums (sync): sums[s·out + j] = Σ_b F·ε_bj·H(z[(s·count + b)·out + j] / F)
   * for z [samples × count × out] (forwardLayers' `branch` layout), the transfer the forward applies (the bias
   * and the soma not included), and power = Σ of the devices' V·I in units of onVoltage·onCurrent. `branchOf`,
   * `variation` and `biasScale` are not read. For a caller trying many full scales on one set of branch sums.
   */
  dendriteSums(dendrites: Omit<NativeTrainDendrites, 'branchOf'>, z: Float32Array, outFeatures: number, eps?: Float32Array | null): { sums: Float32Array; power: number };
}

function findAddon(): string {
  // DENDRA_NATIVE_ADDON: another build of the addon (CI runs the tests against build-asan/, the sanitizer build).
  const override = process.env['DENDRA_NATIVE_ADDON'];
  if (override) {
    if (!existsSync(override)) throw new Error(`dendra: DENDRA_NATIVE_ADDON names ${override}, which does not exist`);
    return override;
  }
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, 'build', 'Release', 'dendra_native.node');
    if (existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  throw new Error('dendra: native addon build/Release/dendra_native.node not found; run `npm install` (it builds the addon with cmake-js)');
}

let cached: NativeModule | undefined;

/** Loads the addon once. */
export function native(): NativeModule {
  if (!cached) cached = createRequire(import.meta.url)(findAddon()) as NativeModule;
  return cached;
}
