/**
 * The forward of a LayerModel with dendrites (common/dendrite.ts, docs/dendrites.md) on one dendrite device, two
 * ways: `engineForward` on the native training engine (float32, threaded GEMMs: what calibration, soma scales and
 * fine-tuning's set-up run), and `dendriticForward`, the float64 TypeScript reference the tests hold the engine
 * and the model read literally to (test/compiler/dendrites-calibrate.test.ts, finetune-variation.test.ts). No
 * crossbar effects. No device variation (ε = 1) unless the caller gives each dendrite
 * its factor ε_bj (`eps`, `variationSeed`; `drawDendriteVariation`), as the simulator draws them for one chip.
 *
 * A dendritic layer, per sample and neuron j:
 *   z_bj  = Σ_{i ∈ b} x_i W_ij                    (branch partial sums)
 *   x_j   = κ·bias_j + Σ_b F·H(z_bj / F)          (dendrites, then the soma's input)
 *   out_j = soma(x_j)
 * A layer without `dendrites` is ordinary: out = activation(x·W + b). Bypass runs the same network without
 * dendrite devices (y = z, κ = 1: the soma sees x·W + b, summed exactly as calibrate.ts's layerInputs sums it).
 *
 * `DendriteKernel` is the dendrite transfer calibrate-dendrites applies to the engine's branch sums for each
 * candidate full scale.
 */
import { InputError } from '../../common/errors.js';
import { Random } from '../../common/random.js';
import { alphaOf, maxRatio, somaOutput, type DendriteDevice, type Soma } from '../../common/dendrite.js';
import { native } from '../../native/index.js';
import type { Activation, DenseLayer, LayerModel } from '../ir/layers.js';
import { toTrainNetwork } from './train-network.js';

/**
 * A dendrite device with its constants precomputed: y = F·H(z/F), dH/du and the energy factor, the same
 * formulas as common/dendrite.ts (dendriteTransfer, dendritePower) without their per-call setup.
 */
export class DendriteKernel {
  readonly device: DendriteDevice;
  /** Σ of dendritePower(device, u) over the calls to `out` / `branchSum` since the caller last reset it. */
  power = 0;
  readonly a: number;
  readonly invA: number;
  readonly invR: number;
  readonly alpha: number;
  /** (1 − 1/R) / (e^α − 1), or 1 − 1/R for a linear device (α ≈ 0: φ(v) = v). */
  readonly c: number;
  readonly linear: boolean;
  readonly thresholdLinear: boolean;
  readonly threshold: number;
  readonly rectify: boolean;
  /** maxVoltage / onVoltage: the applied voltage's ceiling (Infinity without a rating). */
  readonly vMax: number;

  constructor(device: DendriteDevice) {
    this.device = device;
    this.a = device.voltage / device.onVoltage;
    this.invA = 1 / this.a;
    this.invR = 1 / device.onOffRatio;
    this.alpha = alphaOf(device.nonlinearity);
    this.linear = this.alpha < 1e-9;
    this.c = this.linear ? 1 - this.invR : (1 - this.invR) / Math.expm1(this.alpha);
    this.thresholdLinear = device.kind === 'threshold-linear';
    this.threshold = device.threshold;
    this.rectify = device.rectify;
    this.vMax = maxRatio(device);
  }

  /** The device's normalised current i(v), v >= 0 (deviceCurrent). */
  current(v: number): number {
    if (this.thresholdLinear) return v >= this.threshold ? v : v * this.invR;
    if (v >= 1) return v;
    return v * this.invR + this.c * (this.linear ? v : Math.expm1(this.alpha * v));
  }

  /** F·H(z/F): the dendrite's output for branch signal z; adds dendritePower(u) to `power`. */
  out(z: number, fullScale: number): number {
    const u = z / fullScale;
    if (u === 0 || (u < 0 && this.rectify)) return 0;
    const v = Math.min(this.a * (u < 0 ? -u : u), this.vMax); // the applied voltage saturates at the rating
    const i = this.current(v);
    this.power += v * i;
    const h = i * this.invA * fullScale;
    return u < 0 ? -h : h;
  }

  /**
   * Σ_{k < count} F·H(z[offset + k·stride] / F): the summed output of `count` dendrites; adds their
   * dendritePower to `power`. The hot loop of the forward and of calibration.
   */
  branchSum(z: Float64Array | Float32Array, offset: number, stride: number, count: number, fullScale: number): number {
    const a = this.a;
    const vMax = this.vMax;
    const scale = this.invA * fullScale;
    const invF = 1 / fullScale;
    const invR = this.invR;
    const c = this.c;
    const alpha = this.alpha;
    const rectify = this.rectify;
    let sum = 0;
    let power = 0;
    if (this.thresholdLinear) {
      const th = this.threshold;
      for (let k = 0, o = offset; k < count; k++, o += stride) {
        const u = z[o]! * invF;
        if (u === 0 || (u < 0 && rectify)) continue;
        const v = Math.min(a * (u < 0 ? -u : u), vMax); // the applied voltage saturates at the rating
        const i = v >= th ? v : v * invR;
        power += v * i;
        sum += u < 0 ? -i * scale : i * scale;
      }
    } else {
      const linear = this.linear;
      for (let k = 0, o = offset; k < count; k++, o += stride) {
        const u = z[o]! * invF;
        if (u === 0 || (u < 0 && rectify)) continue;
        const v = Math.min(a * (u < 0 ? -u : u), vMax); // the applied voltage saturates at the rating
        const i = v >= 1 ? v : v * invR + c * (linear ? v : Math.expm1(alpha * v));
        power += v * i;
        sum += u < 0 ? -i * scale : i * scale;
      }
    }
    this.power += power;
    return sum;
  }

  /**
   * Σ_{k < count} ε_k·F·H(z_k / F) with z_k = z[offset + k·stride], ε_k = eps[offset + epsShift + k·stride]:
   * `branchSum` with each device's variation factor; adds Σ ε_k·dendritePower(u_k) to `power` (a device's
   * current, so its energy, scales by ε).
   */
  branchSumVaried(z: Float64Array | Float32Array, eps: ArrayLike<number>, offset: number, stride: number, count: number, fullScale: number, epsShift = 0): number {
    const invF = 1 / fullScale;
    const scale = this.invA * fullScale;
    const a = this.a;
    const vMax = this.vMax;
    const rectify = this.rectify;
    let sum = 0;
    let power = 0;
    for (let k = 0, o = offset; k < count; k++, o += stride) {
      const u = z[o]! * invF;
      if (u === 0 || (u < 0 && rectify)) continue;
      const e = eps[o + epsShift]!;
      const v = Math.min(a * (u < 0 ? -u : u), vMax); // the applied voltage saturates at the rating
      const i = this.current(v) * e;
      power += v * i;
      sum += u < 0 ? -i * scale : i * scale;
    }
    this.power += power;
    return sum;
  }
}

/** y[yo + j] += a · w[wo + j] for j < m, float64 accumulation (unrolled: V8 does not vectorise). */
export function axpy(y: Float64Array, yo: number, a: number, w: Float32Array, wo: number, m: number): void {
  let j = 0;
  for (; j + 3 < m; j += 4) {
    y[yo + j] += a * w[wo + j]!;
    y[yo + j + 1] += a * w[wo + j + 1]!;
    y[yo + j + 2] += a * w[wo + j + 2]!;
    y[yo + j + 3] += a * w[wo + j + 3]!;
  }
  for (; j < m; j++) y[yo + j] += a * w[wo + j]!;
}

/** The soma of a layer: its activation for a point-neuron layer. */
export function somaOf(layer: DenseLayer): Soma {
  return layer.dendrites?.soma ?? { kind: 'activation' };
}

/**
 * One layer, one sample at a time, float64. `dendritic`: F·H per branch and κ·bias (the layer must have
 * dendrites); otherwise the plain x·W + b. After `run` the scratch `z` (branches × outFeatures, branch-major:
 * z[b·out + j]) and `pre` (the soma inputs) hold that sample's values, for a backward pass.
 */
export class LayerRunner {
  readonly layer: DenseLayer;
  readonly dendritic: boolean;
  readonly branches: number;
  fullScale: number;
  biasScale: number;
  /** The weights and biases used (the layer's own unless a caller swaps in its copies). */
  weight: Float32Array;
  bias: Float32Array;
  readonly z: Float64Array;
  readonly pre: Float64Array;
  /**
   * Each dendrite's device-to-device factor ε (branches × outFeatures, branch-major like `z`), or null for
   * ε = 1 (the nominal device). A dendritic runner only; the caller may swap it between samples.
   */
  eps: ArrayLike<number> | null = null;
  /** Σ |soma output| and Σ dendritePower over the samples run since the caller last reset them. */
  somaSum = 0;
  power = 0;
  readonly #soma: Soma;
  readonly #kernel: DendriteKernel | null;

  constructor(layer: DenseLayer, kernel: DendriteKernel | null, dendritic: boolean) {
    if (dendritic && (!layer.dendrites || !kernel)) throw new Error('LayerRunner: a dendritic run needs the layer\'s dendrites and a device');
    this.layer = layer;
    this.dendritic = dendritic;
    this.branches = dendritic ? layer.dendrites!.count : 1;
    this.fullScale = layer.dendrites?.fullScale ?? 1;
    this.biasScale = layer.dendrites?.biasScale ?? 1;
    this.weight = layer.weight;
    this.bias = layer.bias;
    this.z = new Float64Array(this.branches * layer.outFeatures);
    this.pre = new Float64Array(layer.outFeatures);
    this.#soma = somaOf(layer);
    this.#kernel = kernel;
  }

  /** y[yo .. yo + out) = the layer's outputs for input x[xo .. xo + in). */
  run(x: Float64Array, xo: number, y: Float64Array, yo: number): void {
    const l = this.layer;
    const n = l.inFeatures;
    const m = l.outFeatures;
    const w = this.weight;
    if (!this.dendritic) {
      const pre = this.pre;
      const bias = this.bias;
      for (let j = 0; j < m; j++) pre[j] = bias[j]!;
      for (let i = 0; i < n; i++) {
        const xi = x[xo + i]!;
        if (xi !== 0) axpy(pre, 0, xi, w, i * m, m);
      }
      this.finish(pre, 0, y, yo);
    } else {
      const z = this.z;
      const branchOf = l.dendrites!.branchOf;
      z.fill(0);
      for (let i = 0; i < n; i++) {
        const xi = x[xo + i]!;
        if (xi !== 0) axpy(z, branchOf[i]! * m, xi, w, i * m, m);
      }
      this.finish(z, 0, y, yo);
    }
  }

  /**
   * The second half of `run`, from sums a caller accumulated itself (a batched forward, as `run` would: over
   * the inputs in order): a dendritic runner's branch sums at sums[so + b·out + j], a plain runner's x·W + b
   * (bias first) at sums[so + j]. Sets `pre` and writes the outputs to y[yo .. yo + out); `z` is not touched.
   */
  finish(sums: Float64Array, so: number, y: Float64Array, yo: number): void {
    const l = this.layer;
    const m = l.outFeatures;
    const bias = this.bias;
    const pre = this.pre;
    if (!this.dendritic) {
      if (sums !== pre || so !== 0) for (let j = 0; j < m; j++) pre[j] = sums[so + j]!;
    } else {
      const nb = this.branches;
      const f = this.fullScale;
      const kappa = this.biasScale;
      const k = this.#kernel!;
      k.power = 0;
      const eps = this.eps;
      if (eps) for (let j = 0; j < m; j++) pre[j] = kappa * bias[j]! + k.branchSumVaried(sums, eps, so + j, m, nb, f, -so);
      else for (let j = 0; j < m; j++) pre[j] = kappa * bias[j]! + k.branchSum(sums, so + j, m, nb, f);
      this.power += k.power;
    }
    const soma = this.#soma;
    const act = l.activation;
    let sum = 0;
    for (let j = 0; j < m; j++) {
      const o = somaOutput(soma, act, pre[j]!);
      y[yo + j] = o;
      sum += o < 0 ? -o : o;
    }
    this.somaSum += sum;
  }
}

export interface DendriticForwardOptions {
  /** The same network without dendrite devices (y = z, κ = 1). */
  bypass?: boolean;
  /** At most this many samples (default: all). */
  limit?: number;
  /**
   * Each dendrite's variation factor ε per layer (branches × outFeatures, branch-major; null or missing for a
   * layer without dendrites or ε = 1): one simulated chip. Ignored in bypass.
   */
  eps?: ReadonlyArray<ArrayLike<number> | null | undefined>;
  /** Draw the ε of one chip from this seed with the device's variation (drawDendriteVariation); `eps` wins. */
  variationSeed?: number;
  /** Keep every layer's soma inputs (DendriticForward.somaInputs). */
  somaInputs?: boolean;
}

/**
 * One chip's dendrite factors: per layer with dendrites, ε_bj = max(0, 1 + σ·N(0, 1)) for every branch b and
 * neuron j (branch-major, like LayerRunner.z), as the simulator draws them; null for a layer without. `into`
 * reuses the arrays of an earlier draw for the same model.
 */
export function drawDendriteVariation(model: LayerModel, variation: number, rng: Random, into?: (Float64Array | null)[]): (Float64Array | null)[] {
  const out = into ?? model.layers.map((l) => (l.dendrites ? new Float64Array(l.dendrites.count * l.outFeatures) : null));
  for (const e of out) {
    if (!e) continue;
    for (let k = 0; k < e.length; k++) {
      const v = 1 + variation * rng.normal();
      e[k] = v > 0 ? v : 0;
    }
  }
  return out;
}

export interface DendriticForward {
  samples: number;
  /** [samples × outFeatures] of the last layer, before the head. */
  outputs: Float32Array;
  /** Per layer, [samples × inFeatures]: the layer's inputs (layerInputs of calibrate.ts, with dendrites). */
  layerInputs: Float32Array[];
  /** Per layer: Σ over samples and neurons of |soma output|. */
  somaSum: Float64Array;
  /** Per layer: Σ over samples, branches and neurons of dendritePower(device, u) (0 without dendrites or in bypass). */
  dendritePower: Float64Array;
  /** With `somaInputs`: per layer, [samples × outFeatures] of the somas' inputs (κ·bias + Σ_b y_b, or x·W + b). */
  somaInputs?: Float32Array[];
}

/** Whole samples in x for this model, or an InputError. */
export function sampleCount(model: LayerModel, x: Float32Array, what = 'calibration data'): number {
  const features = model.input.features;
  if (x.length === 0 || x.length % features !== 0) {
    throw new InputError(`${what} holds ${x.length} values, not a whole number of samples of ${features} features`);
  }
  return x.length / features;
}

/** One runner per layer: dendritic where the layer has dendrites and `bypass` is off. */
export function layerRunners(model: LayerModel, device: DendriteDevice | null, bypass = false): LayerRunner[] {
  const kernel = device ? new DendriteKernel(device) : null;
  return model.layers.map((l, li) => {
    const dendritic = !!l.dendrites && !bypass;
    if (dendritic && !kernel) throw new InputError(`layer ${li} has dendrites but no dendrite device was given`);
    return new LayerRunner(l, kernel, dendritic);
  });
}

/** dendriticForward's result on the engine, with every dendritic layer's branch sums. */
export interface EngineForward extends DendriticForward {
  somaInputs: Float32Array[];
  /** Per layer run with its dendrites, [samples × count × outFeatures] (branch-major per sample); else null. */
  branch: (Float32Array | null)[];
}

export interface EngineForwardOptions extends DendriticForwardOptions {
  /** Per layer: false runs a dendritic layer without its devices (as bypass does for all); default all true. */
  dendritic?: readonly boolean[];
}

/**
 * dendriticForward on the native training engine (Trainer.forwardLayers, float32): the same outputs, layer
 * inputs, soma inputs, Σ|soma output| and Σ dendritePower (from the engine's branch sums, by dendriteSums),
 * plus the branch sums. Somas and dendrites as toTrainNetwork converts them.
 */
export function engineForward(model: LayerModel, device: DendriteDevice | null, x: Float32Array, opts: EngineForwardOptions = {}): EngineForward {
  const total = sampleCount(model, x);
  const n = Math.max(0, Math.min(opts.limit ?? total, total));
  const layers = model.layers;
  const f0 = model.input.features;
  const bypass = layers.map((l, li) => !l.dendrites || !!opts.bypass || (opts.dendritic ? !opts.dendritic[li] : false));
  layers.forEach((l, li) => {
    if (!bypass[li] && !device) throw new InputError(`layer ${li} has dendrites but no dendrite device was given`);
  });
  const epsIn = bypass.every((b) => b) ? undefined : opts.eps ?? (opts.variationSeed !== undefined && device && device.variation > 0 ? drawDendriteVariation(model, device.variation, new Random(opts.variationSeed)) : undefined);
  const eps = epsIn
    ? layers.map((l, li) => {
        const e = epsIn[li];
        if (bypass[li] || !e) return null;
        const count = l.dendrites!.count;
        if (e.length !== count * l.outFeatures) throw new InputError(`layer ${li}: ${e.length} dendrite factors for ${count} branches × ${l.outFeatures} neurons`);
        return e instanceof Float32Array ? e : Float32Array.from(e);
      })
    : undefined;
  const net = toTrainNetwork(model, device, { bypass, variation: 0 });
  let r: { outputs: Float32Array[]; pre: Float32Array[]; branch: (Float32Array | null)[] };
  if (n === 0) r = { outputs: layers.map(() => new Float32Array(0)), pre: layers.map(() => new Float32Array(0)), branch: layers.map((l, li) => (bypass[li] ? null : new Float32Array(0))) };
  else {
    const trainer = new (native().Trainer)(net);
    try {
      r = trainer.forwardLayers(n * f0 === x.length ? x : x.subarray(0, n * f0), eps && eps.some((e) => e) ? { eps } : {});
    } finally {
      trainer.release();
    }
  }
  const dendritePower = new Float64Array(layers.length);
  const somaSum = new Float64Array(layers.length);
  layers.forEach((l, li) => {
    const out = r.outputs[li]!;
    let sum = 0;
    for (let k = 0; k < out.length; k++) sum += Math.abs(out[k]!);
    somaSum[li] = sum;
    const z = r.branch[li];
    if (bypass[li] || !z || n === 0) return;
    // The devices' V·I on the engine's branch sums (the transfer the forward applied).
    dendritePower[li] = native().dendriteSums(net.layers[li]!.dendrites!, z, l.outFeatures, eps?.[li] ?? null).power;
  });
  return {
    samples: n,
    outputs: r.outputs[layers.length - 1]!,
    layerInputs: layers.map((_, li) => (li === 0 ? (n * f0 === x.length ? x : x.subarray(0, n * f0)) : r.outputs[li - 1]!)),
    somaSum,
    dendritePower,
    somaInputs: r.pre,
    branch: layers.map((_, li) => (bypass[li] ? null : r.branch[li] ?? null)),
  };
}

export function dendriticForward(model: LayerModel, device: DendriteDevice | null, x: Float32Array, opts: DendriticForwardOptions = {}): DendriticForward {
  const total = sampleCount(model, x);
  const n = Math.max(0, Math.min(opts.limit ?? total, total));
  const runners = layerRunners(model, device, opts.bypass ?? false);
  const layers = model.layers;
  const eps = opts.eps ?? (opts.variationSeed !== undefined && device && device.variation > 0 ? drawDendriteVariation(model, device.variation, new Random(opts.variationSeed)) : undefined);
  if (eps) {
    runners.forEach((r, li) => {
      const e = eps[li];
      if (!r.dendritic || !e) return;
      if (e.length !== r.branches * r.layer.outFeatures) throw new InputError(`layer ${li}: ${e.length} dendrite factors for ${r.branches} branches × ${r.layer.outFeatures} neurons`);
      r.eps = e;
    });
  }
  const inputs = layers.map((l) => new Float32Array(n * l.inFeatures));
  const last = layers[layers.length - 1]!;
  const outputs = new Float32Array(n * last.outFeatures);
  const bufs = layers.map((l) => new Float64Array(l.inFeatures));
  const out = new Float64Array(last.outFeatures);
  const f0 = model.input.features;
  const pres = opts.somaInputs ? layers.map((l) => new Float32Array(n * l.outFeatures)) : undefined;
  for (let s = 0; s < n; s++) {
    const x0 = bufs[0]!;
    for (let i = 0; i < f0; i++) x0[i] = x[s * f0 + i]!;
    for (let li = 0; li < layers.length; li++) {
      const xin = bufs[li]!;
      inputs[li]!.set(xin, s * xin.length);
      runners[li]!.run(xin, 0, li + 1 < layers.length ? bufs[li + 1]! : out, 0);
      if (pres) pres[li]!.set(runners[li]!.pre, s * layers[li]!.outFeatures);
    }
    outputs.set(out, s * out.length);
  }
  return {
    samples: n,
    outputs,
    layerInputs: inputs,
    somaSum: Float64Array.from(runners, (r) => r.somaSum),
    dendritePower: Float64Array.from(runners, (r) => r.power),
    ...(pres ? { somaInputs: pres } : {}),
  };
}

/** Index of the largest value of each row (the first on ties; NaN never wins). */
export function argmaxRows(y: Float32Array | Float64Array, samples: number, width: number): Int32Array {
  const out = new Int32Array(samples);
  for (let s = 0; s < samples; s++) {
    let best = 0;
    let bv = -Infinity;
    for (let j = 0; j < width; j++) {
      const v = y[s * width + j]!;
      if (v > bv) {
        bv = v;
        best = j;
      }
    }
    out[s] = best;
  }
  return out;
}

/** Fraction of rows where a[s] === b[s]. */
export function agreement(a: Int32Array, b: ArrayLike<number>): number {
  let ok = 0;
  for (let s = 0; s < a.length; s++) if (a[s] === b[s]) ok++;
  return a.length ? ok / a.length : 0;
}

/**
 * At most `limit` whole samples of x (and their labels), drawn across the whole file without replacement
 * (seeded, kept in file order): a class-sorted file gives every class its share, not the first classes only.
 * All of x, unchanged, when it holds no more than `limit` samples.
 */
export function sampleRows(x: Float32Array, features: number, limit: number, seed = 0, labels?: Int32Array): { x: Float32Array; labels?: Int32Array; rows: number } {
  const total = Math.floor(x.length / features);
  if (total <= limit) return { x, ...(labels ? { labels } : {}), rows: total };
  const rng = new Random((seed ^ 0x63616c69) >>> 0);
  const idx = new Int32Array(total);
  for (let i = 0; i < total; i++) idx[i] = i;
  for (let i = 0; i < limit; i++) {
    const j = i + rng.int(total - i);
    const t = idx[i]!;
    idx[i] = idx[j]!;
    idx[j] = t;
  }
  const pick = idx.subarray(0, limit).sort();
  const out = new Float32Array(limit * features);
  pick.forEach((r, k) => out.set(x.subarray(r * features, (r + 1) * features), k * features));
  return { x: out, ...(labels ? { labels: Int32Array.from(pick, (r) => labels[r]!) } : {}), rows: limit };
}
