/**
 * Pass: LayerModel with dendrites + labelled samples → the same network with its weights and biases fine-tuned
 * with the dendrites in the loop (common/dendrite.ts): minibatch Adam on a softmax cross-entropy of the last
 * layer's outputs. The forward is dendriticForward's (the same LayerRunner, with the layers' current F and κ);
 * the backward goes through the soma (or activation), the dendrites' dH/du (dendriteSlope) and the branch sums.
 * The branch assignment, F and κ stay as they are: a weight stays on its crossbar row, in its branch.
 *
 * The dendrites attenuate the outputs by a gain argmax ignores but a cross-entropy does not, so the loss sees
 * the outputs times one fixed factor (`logitScale`): the RMS of the outputs without dendrites over the RMS with
 * them, on (the first 1000 of) the training samples, before training. Deterministic for a given seed (the
 * sample order per epoch, the variation drawn). The step starts at `learningRate` and falls linearly to 0
 * (DEFAULT_STEP says why).
 *
 * Device variation in the loop: the simulator gives each dendrite (branch b, neuron j) a factor ε_bj ~ N(1, σ²)
 * clamped at 0, drawn once per chip, and a network trained for ε = 1 loses accuracy on every chip. With σ > 0
 * (the device's `variation`, or `opts.variation`) every minibatch draws a fresh ε for every dendrite of every
 * dendritic layer — one chip, the same for all the minibatch's samples — and uses it in the forward
 * (y = F·ε·H(z/F)) and the backward (dy/dz = ε·H'(u)): the weights learn to hold accuracy over the chips.
 * σ = 0 trains exactly as without this (no ε, the same sample order and arithmetic: with `decay` and `keepBest`
 * off, the weights of the pass before variation was added, to the bit).
 *
 * The epoch kept: fine-tuning must not make an already good network worse (Adam's first steps move every
 * parameter by about the step size whatever its gradient, and a calibrated network that is already close to
 * its optimum has little to win and something to lose). So the input's weights and each epoch's are scored on
 * a fixed probe — up to PROBE_SAMPLES training samples spread over the set, on PROBE_CHIPS chips drawn once
 * (one, the nominal devices, without variation): the same samples and chips for every candidate, so the
 * comparison is paired — and the lowest mean cross-entropy (the loss being minimised, smoother than the
 * accuracy of a thousand samples) is kept; the epoch 0 candidate is the input unchanged. The first layer's x·W
 * does not depend on ε, so an evaluation costs about PROBE_SAMPLES forwards whatever the chips (≈ 1/10 of an
 * epoch on 8000 samples).
 */
import { InputError } from '../../common/errors.js';
import { Random } from '../../common/random.js';
import type { DendriteDevice } from '../../common/dendrite.js';
import type { DenseLayer, LayerModel } from '../ir/layers.js';
import { DendriteKernel, agreement, argmaxRows, dendriticForward, drawDendriteVariation, layerRunners, sampleCount, somaOf, somaSlope } from './dendritic-forward.js';

export interface FinetuneOptions {
  /** Passes over the samples (default 3). */
  epochs?: number;
  /** Adam's first step size (default DEFAULT_STEP, 1e-3); see `decay`. */
  learningRate?: number;
  /** Samples per step (default 64). */
  batch?: number;
  /** Seed of the sample order (default 1). */
  seed?: number;
  /** At most this many samples (default all). */
  limit?: number;
  /** σ of the dendrites' device-to-device factor ε drawn per minibatch (default: the device's `variation`; 0: none). */
  variation?: number;
  /** The step size falls linearly from learningRate towards 0 over the steps (default true; false: constant). */
  decay?: boolean;
  /** Keep the best of the input's and each epoch's weights on the probe (default true; see the top of this file). */
  keepBest?: boolean;
  /** Called after every step with the samples done so far and the total (epochs × samples). */
  onProgress?: (done: number, total: number) => void;
}

export interface FinetuneReport {
  epochs: number;
  samples: number;
  batch: number;
  /** The first step; `schedule` says how it went on. */
  learningRate: number;
  schedule: 'linear-decay' | 'constant';
  optimizer: 'adam';
  /** The fixed factor on the outputs the loss sees (see the top of this file). */
  logitScale: number;
  /** Mean cross-entropy over each epoch, as it trained. */
  loss: number[];
  /** σ of the dendrite factors ε drawn for every minibatch (0: trained on the nominal devices only). */
  variation: number;
  /**
   * The probe that picks the weights kept: its samples and chips, and per candidate (0: the input, then
   * each epoch) the mean cross-entropy and accuracy over samples × chips (fractions).
   */
  probe: { samples: number; chips: number; loss: number[]; accuracy: number[] };
  /** The epoch whose weights were kept (0: the input's; `epochs` without keepBest). */
  keptEpoch: number;
  /** Training accuracy with dendrites on the nominal devices (ε = 1), before and after (fractions). */
  accuracyBefore: number;
  accuracyAfter: number;
  seconds: number;
  summary: string;
}

/** y[yo + j] += a · g[go + j] for j < m (unrolled). */
function axpy64(y: Float64Array, yo: number, a: number, g: Float64Array, go: number, m: number): void {
  let j = 0;
  for (; j + 3 < m; j += 4) {
    y[yo + j] += a * g[go + j]!;
    y[yo + j + 1] += a * g[go + j + 1]!;
    y[yo + j + 2] += a * g[go + j + 2]!;
    y[yo + j + 3] += a * g[go + j + 3]!;
  }
  for (; j < m; j++) y[yo + j] += a * g[go + j]!;
}

/**
 * The default first Adam step, and why the step decays and the best epoch is kept. Adam moves every parameter
 * by about the step on every minibatch whatever its gradient, so a constant 1e-3 keeps shaking a network that
 * is already good: a calibrated 784-500-10 digits network was reported going from 99.79 % to 98.67 % training
 * accuracy, and went from 100.00 % to 99.86 % on 8000 digits here (σ = 0). A constant 2e-4 does not, but is too slow where there is something
 * to win: on the svhn-shaped 3072-500-10 network (9 and 4 branches, taox-dendrite, 3 epochs on 7996 samples,
 * float reference on the 512 held-out images) it reached 62.9 % nominal, 58.9 % mean over 8 drawn chips,
 * against 64.1-64.5 % and 59.9-60.7 % from 1e-3. So the step starts at 1e-3 and falls linearly to 0 over the
 * run (the last steps settle instead of shaking: the same 8000 digits stay at 100.00 %), and the probe keeps the
 * input if no epoch beats it.
 */
export const DEFAULT_STEP = 1e-3;
/** The probe that picks the epoch kept (see the top of this file). */
const PROBE_SAMPLES = 1000;
const PROBE_CHIPS = 4;

/**
 * The generator of the ε drawn for the minibatches (drawDendriteVariation, one draw per minibatch in order):
 * its own, so the sample order stays Random(seed)'s whether or not variation is in the loop.
 */
export function minibatchVariationRandom(seed: number): Random {
  return new Random((Math.imul(seed, 0x9e3779b1) + 0x7f4a7c15) >>> 0);
}

const BETA1 = 0.9;
const BETA2 = 0.999;
const EPS = 1e-8;

export function finetune(
  model: LayerModel,
  device: DendriteDevice,
  x: Float32Array,
  labels: Int32Array,
  opts: FinetuneOptions = {},
): { model: LayerModel; report: FinetuneReport } {
  const t0 = performance.now();
  const total = sampleCount(model, x, 'fine-tuning data');
  const n = Math.min(opts.limit ?? total, total);
  const epochs = opts.epochs ?? 3;
  const lr = opts.learningRate ?? DEFAULT_STEP;
  const sigma = opts.variation ?? device.variation;
  const keepBest = opts.keepBest ?? true;
  const decay = opts.decay ?? true;
  const batch = opts.batch ?? 64;
  if (!Number.isInteger(epochs) || epochs < 0) throw new InputError(`fine-tuning epochs must be a non-negative integer (got ${epochs})`);
  if (!Number.isInteger(batch) || batch < 1) throw new InputError(`the fine-tuning batch must be a positive integer (got ${batch})`);
  if (!(lr > 0) || !Number.isFinite(lr)) throw new InputError(`the fine-tuning learning rate must be > 0 (got ${lr})`);
  if (!(sigma >= 0) || !Number.isFinite(sigma)) throw new InputError(`the fine-tuning variation must be >= 0 (got ${sigma})`);
  if (n < 1) throw new InputError('fine-tuning needs at least one sample');
  if (labels.length < n) throw new InputError(`${labels.length} labels for ${n} fine-tuning samples`);
  const L = model.layers.length;
  const outF = model.layers[L - 1]!.outFeatures;
  for (let s = 0; s < n; s++) {
    const c = labels[s]!;
    if (!Number.isInteger(c) || c < 0 || c >= outF) throw new InputError(`label ${c} of sample ${s} is not a class of the network's ${outF} outputs`);
  }

  // The trained copy: fresh layers with their own weight and bias arrays (dendrites shared: unchanged).
  const layers: DenseLayer[] = model.layers.map((l) => ({ ...l, weight: Float32Array.from(l.weight), bias: Float32Array.from(l.bias) }));
  const work: LayerModel = { ...model, layers };
  const trainLabels = labels.subarray(0, n);

  const before = dendriticForward(work, device, x, { limit: n });
  const accuracyBefore = agreement(argmaxRows(before.outputs, n, outF), trainLabels);
  const rmsN = Math.min(n, 1000);
  const plain = dendriticForward(work, device, x, { limit: rmsN, bypass: true });
  const rms = (v: Float32Array) => Math.sqrt(v.reduce((a, b) => a + b * b, 0) / Math.max(1, v.length));
  const rWith = rms(before.outputs.subarray(0, rmsN * outF));
  const rWithout = rms(plain.outputs);
  const logitScale = rWith > 0 && rWithout > 0 && Number.isFinite(rWith / rWithout) ? rWithout / rWith : 1;

  const runners = layerRunners(work, device);
  const kernel = new DendriteKernel(device);
  const f0 = model.input.features;
  const acts = layers.map((l) => new Float64Array(l.inFeatures));
  const out = new Float64Array(outF);
  const gOut = layers.map((l) => new Float64Array(l.outFeatures));
  const gz = layers.map((l) => new Float64Array((l.dendrites?.count ?? 1) * l.outFeatures));
  const gW = layers.map((l) => new Float64Array(l.weight.length));
  const gB = layers.map((l) => new Float64Array(l.bias.length));
  const mW = layers.map((l) => new Float32Array(l.weight.length));
  const vW = layers.map((l) => new Float32Array(l.weight.length));
  const mB = layers.map((l) => new Float32Array(l.bias.length));
  const vB = layers.map((l) => new Float32Array(l.bias.length));
  const active = layers.map((l) => new Int32Array(l.outFeatures));
  const probs = new Float64Array(outF);
  const seed = opts.seed ?? 1;
  const rng = new Random(seed);
  const order = Int32Array.from({ length: n }, (_, i) => i);
  const lossPerEpoch: number[] = [];
  let step = 0;
  let done = 0;

  // Variation in the loop: one ε array per dendritic layer, redrawn for every minibatch, from its own generator
  // (the sample order's stays the one without variation).
  const varied = sigma > 0 && runners.some((r) => r.dendritic);
  const epsRng = minibatchVariationRandom(seed);
  const eps = varied ? runners.map((r) => (r.dendritic ? new Float64Array(r.branches * r.layer.outFeatures) : null)) : null;
  const setEps = (e: (Float64Array | null)[] | null) => runners.forEach((r, li) => { if (r.dendritic) r.eps = e?.[li] ?? null; });

  /** Softmax cross-entropy of logitScale · out against class y; leaves the softmax's terms in probs and their sum in probSum. */
  let probSum = 0;
  const crossEntropy = (y: number): number => {
    let mx = -Infinity;
    for (let j = 0; j < outF; j++) mx = Math.max(mx, logitScale * out[j]!);
    let sum = 0;
    for (let j = 0; j < outF; j++) sum += probs[j] = Math.exp(logitScale * out[j]! - mx);
    probSum = sum;
    return -(logitScale * out[y]! - mx - Math.log(sum));
  };
  /** The forward of sample s from layer `from` on (acts[from] already holds that layer's input). */
  const forward = (from: number) => {
    for (let li = from; li < L; li++) runners[li]!.run(acts[li]!, 0, li + 1 < L ? acts[li + 1]! : out, 0);
  };
  const load = (s: number) => {
    const a0 = acts[0]!;
    for (let i = 0; i < f0; i++) a0[i] = x[s * f0 + i]!;
  };

  // The probe (see the top of this file): samples spread over the set (sets sorted by class are common) and
  // chips drawn once from a generator of their own.
  const probeN = Math.min(n, PROBE_SAMPLES);
  const probeIdx = Int32Array.from({ length: probeN }, (_, k) => Math.floor((k * n) / probeN));
  const chipRng = new Random((Math.imul(seed, 0x85ebca6b) + 0x3c6ef372) >>> 0);
  const chips = varied ? Array.from({ length: PROBE_CHIPS }, () => drawDendriteVariation(work, sigma, chipRng)) : [null];
  const probeLoss: number[] = [];
  const probeAccuracy: number[] = [];
  /** Mean loss (and accuracy, recorded) of the current weights over the probe's samples × chips. */
  const evaluate = (): number => {
    let loss = 0;
    let ok = 0;
    const r0 = runners[0]!;
    for (const s of probeIdx) {
      load(s);
      const y = labels[s]!;
      for (let c = 0; c < chips.length; c++) {
        setEps(chips[c]!);
        // The first layer's sums x·W do not depend on ε: computed once per sample, finished per chip.
        if (c === 0) forward(0);
        else {
          r0.finish(r0.dendritic ? r0.z : r0.pre, 0, L > 1 ? acts[1]! : out, 0);
          forward(1);
        }
        loss += crossEntropy(y);
        let best = 0;
        let bv = -Infinity;
        for (let j = 0; j < outF; j++) {
          if (out[j]! > bv) {
            bv = out[j]!;
            best = j;
          }
        }
        if (best === y) ok++;
      }
    }
    setEps(null);
    const count = chips.length * probeN;
    probeLoss.push(loss / count);
    probeAccuracy.push(ok / count);
    return loss / count;
  };
  let keptEpoch = epochs;
  let bestLoss = Infinity;
  /** The weights and biases of the best candidate so far when it is not the current one (epoch 0: the input's). */
  let kept: { weight: Float32Array; bias: Float32Array }[] | null = null;
  const consider = (epoch: number) => {
    if (!keepBest || epochs === 0) return;
    const loss = evaluate();
    if (loss < bestLoss) {
      bestLoss = loss;
      keptEpoch = epoch;
      kept = epoch === epochs ? null : epoch === 0 ? model.layers.map((l) => ({ weight: l.weight, bias: l.bias })) : layers.map((l) => ({ weight: Float32Array.from(l.weight), bias: Float32Array.from(l.bias) }));
    }
  };
  consider(0);

  /** Forward and backward of one sample; adds its gradient to gW, gB and returns its loss. */
  const sample = (s: number): number => {
    load(s);
    forward(0);
    const y = labels[s]!;
    const loss = crossEntropy(y);
    const sum = probSum;
    const g = gOut[L - 1]!;
    for (let j = 0; j < outF; j++) g[j] = logitScale * (probs[j]! / sum - (j === y ? 1 : 0));
    for (let li = L - 1; li >= 0; li--) {
      const l = layers[li]!;
      const r = runners[li]!;
      const m = l.outFeatures;
      const go = gOut[li]!;
      const gzl = gz[li]!;
      const gb = gB[li]!;
      const soma = somaOf(l);
      const pre = r.pre;
      // The neurons whose soma passes a gradient (a dead ReLU or a soma below threshold passes none).
      const act = active[li]!;
      let na = 0;
      if (r.dendritic) {
        const nb = r.branches;
        const f = r.fullScale;
        const kappa = r.biasScale;
        const z = r.z;
        const e = r.eps;
        for (let j = 0; j < m; j++) {
          const gp = go[j]! * somaSlope(soma, l.activation, pre[j]!);
          if (gp === 0) continue;
          act[na++] = j;
          gb[j] += kappa * gp;
          // dy/dz = ε·H'(z/F), ε = 1 on the nominal devices.
          if (e) for (let b = 0; b < nb; b++) gzl[b * m + j] = gp * e[b * m + j]! * kernel.slope(z[b * m + j]! / f);
          else for (let b = 0; b < nb; b++) gzl[b * m + j] = gp * kernel.slope(z[b * m + j]! / f);
        }
      } else {
        for (let j = 0; j < m; j++) {
          const gp = go[j]! * somaSlope(soma, l.activation, pre[j]!);
          if (gp === 0) continue;
          act[na++] = j;
          gb[j] += gp;
          gzl[j] = gp;
        }
      }
      const xin = acts[li]!;
      const w = l.weight;
      const gw = gW[li]!;
      const branchOf = r.dendritic ? l.dendrites!.branchOf : null;
      const gx = li > 0 ? gOut[li - 1]! : null;
      if (gx) gx.fill(0);
      if (na === 0) continue;
      const dense = na === m;
      for (let i = 0; i < l.inFeatures; i++) {
        const xi = xin[i]!;
        const row = i * m;
        const base = branchOf ? branchOf[i]! * m : 0;
        if (gx) {
          let t = 0;
          if (dense) for (let j = 0; j < m; j++) t += w[row + j]! * gzl[base + j]!;
          else for (let k = 0; k < na; k++) t += w[row + act[k]!]! * gzl[base + act[k]!]!;
          gx[i] = t;
        }
        if (xi === 0) continue;
        if (dense) axpy64(gw, row, xi, gzl, base, m);
        else {
          for (let k = 0; k < na; k++) {
            const j = act[k]!;
            gw[row + j] += xi * gzl[base + j]!;
          }
        }
      }
    }
    return loss;
  };

  const totalSteps = epochs * Math.ceil(n / batch);
  let lrNow = lr;
  const adam = (p: Float32Array, g: Float64Array, mo: Float32Array, ve: Float32Array, scale: number, c1: number, c2: number) => {
    for (let k = 0; k < p.length; k++) {
      const gk = g[k]! * scale;
      if (gk !== 0 || mo[k] !== 0) {
        const mk = (mo[k] = BETA1 * mo[k]! + (1 - BETA1) * gk);
        const vk = (ve[k] = BETA2 * ve[k]! + (1 - BETA2) * gk * gk);
        p[k] -= (lrNow * (mk / c1)) / (Math.sqrt(vk / c2) + EPS);
      }
      g[k] = 0;
    }
  };

  for (let e = 0; e < epochs; e++) {
    for (let i = n - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      const t = order[i]!;
      order[i] = order[j]!;
      order[j] = t;
    }
    let lossSum = 0;
    for (let start = 0; start < n; start += batch) {
      const end = Math.min(n, start + batch);
      if (eps) setEps(drawDendriteVariation(work, sigma, epsRng, eps)); // one chip for the whole minibatch
      for (let k = start; k < end; k++) lossSum += sample(order[k]!);
      step++;
      const c1 = 1 - BETA1 ** step;
      const c2 = 1 - BETA2 ** step;
      const scale = 1 / (end - start);
      lrNow = decay ? lr * (1 - (step - 1) / totalSteps) : lr;
      for (let li = 0; li < L; li++) {
        adam(layers[li]!.weight, gW[li]!, mW[li]!, vW[li]!, scale, c1, c2);
        adam(layers[li]!.bias, gB[li]!, mB[li]!, vB[li]!, scale, c1, c2);
      }
      done += end - start;
      opts.onProgress?.(done, epochs * n);
    }
    lossPerEpoch.push(lossSum / n);
    setEps(null);
    consider(e + 1);
  }
  if (kept) {
    // An earlier candidate won: fresh copies of its arrays (never the input model's own).
    const best: { weight: Float32Array; bias: Float32Array }[] = kept;
    layers.forEach((l, li) => {
      l.weight = Float32Array.from(best[li]!.weight);
      l.bias = Float32Array.from(best[li]!.bias);
    });
  }

  const after = dendriticForward(work, device, x, { limit: n });
  const accuracyAfter = agreement(argmaxRows(after.outputs, n, outF), trainLabels);
  const seconds = (performance.now() - t0) / 1000;
  const pct = (v: number) => `${(100 * v).toFixed(2)} %`;
  const probe = { samples: probeN, chips: probeLoss.length ? chips.length : 0, loss: probeLoss, accuracy: probeAccuracy };
  const variation = varied ? sigma : 0;
  const summary =
    `fine-tuned with dendrites in the loop` +
    (varied ? ` and device variation σ = ${sigma} in the loop (a fresh ε per dendrite every minibatch)` : '') +
    `: ${epochs} epoch${epochs === 1 ? '' : 's'} on ${n} samples (Adam, step ${lr}${decay ? ' falling linearly to 0' : ''}, batch ${batch}), ` +
    `training accuracy ${pct(accuracyBefore)} → ${pct(accuracyAfter)}` +
    (lossPerEpoch.length ? `, loss ${lossPerEpoch.map((v) => v.toFixed(3)).join(' → ')}` : '') +
    (probeLoss.length
      ? `; kept ${keptEpoch === 0 ? 'the input weights (no epoch improved)' : `epoch ${keptEpoch}`} by the loss on ${probeN} samples × ${chips.length} ` +
        `${varied ? 'drawn chips' : 'nominal chip'} (${probeLoss.map((v) => v.toFixed(3)).join(' → ')}; accuracy ${probeAccuracy.map(pct).join(' → ')})`
      : '');
  return {
    model: work,
    report: { epochs, samples: n, batch, learningRate: lr, schedule: decay ? 'linear-decay' : 'constant', optimizer: 'adam', logitScale, loss: lossPerEpoch, variation, probe, keptEpoch, accuracyBefore, accuracyAfter, seconds, summary },
  };
}
