/**
 * Pass: LayerModel with dendrites + labelled samples → the same network with its weights and biases fine-tuned
 * with the dendrites in the loop (common/dendrite.ts): minibatch Adam on a softmax cross-entropy of the last
 * layer's outputs, on the native training engine (native/src/train/, docs/training.md): its forward is the
 * model of common/dendrite.ts with the layers' current F and κ, its backward goes through the soma (or
 * activation), the dendrites' dH/du and the branch sums. This file only orchestrates: the sample order, the
 * ε of each minibatch, the step schedule and the epoch kept. The branch assignment, F and κ stay as they are:
 * a weight stays on its crossbar row, in its branch.
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
import { native, type NativeTrainer, type NativeTrainHardware } from '../../native/index.js';
import type { DenseLayer, LayerModel } from '../ir/layers.js';
import { agreement, argmaxRows, drawDendriteVariation, sampleCount } from './dendritic-forward.js';
import { toTrainNetwork } from './train-network.js';

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
  /**
   * Per layer, hardware effects in the training forward (NativeTrainHardware: ADC clipping, read noise,
   * programming error, DAC quantisation, stuck weights), in weight units; noise is drawn for every minibatch.
   * The probe and the accuracies stay on the nominal devices.
   */
  hardware?: (NativeTrainHardware | undefined)[];
  /** L1 activity penalty added to the loss (per sample): soma·Σ|soma outputs| (hidden layers) + branch·Σ|branch signal z/F|. */
  penalty?: { soma?: number; branch?: number };
  /** GEMM threads of the engine (default: the machine's, at most 8). */
  threads?: number;
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
  /** Mean loss (cross-entropy, plus the penalty when one is set) over each epoch, as it trained. */
  loss: number[];
  /** σ of the dendrite factors ε drawn for every minibatch (0: trained on the nominal devices only). */
  variation: number;
  /** The activity penalty in the loss (zeros: none). */
  penalty: { soma: number; branch: number };
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

/** One chip's ε as the engine takes them (Float32Array per dendritic layer, null elsewhere). */
function epsArrays(eps: (Float64Array | null)[]): (Float32Array | null)[] {
  return eps.map((e) => (e ? Float32Array.from(e) : null));
}

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
  const penalty = { soma: opts.penalty?.soma ?? 0, branch: opts.penalty?.branch ?? 0 };
  if (!Number.isInteger(epochs) || epochs < 0) throw new InputError(`fine-tuning epochs must be a non-negative integer (got ${epochs})`);
  if (!Number.isInteger(batch) || batch < 1) throw new InputError(`the fine-tuning batch must be a positive integer (got ${batch})`);
  if (!(lr > 0) || !Number.isFinite(lr)) throw new InputError(`the fine-tuning learning rate must be > 0 (got ${lr})`);
  if (!(sigma >= 0) || !Number.isFinite(sigma)) throw new InputError(`the fine-tuning variation must be >= 0 (got ${sigma})`);
  for (const [k, v] of Object.entries(penalty)) {
    if (!(v >= 0) || !Number.isFinite(v)) throw new InputError(`the fine-tuning ${k} penalty must be >= 0 (got ${v})`);
  }
  if (n < 1) throw new InputError('fine-tuning needs at least one sample');
  if (labels.length < n) throw new InputError(`${labels.length} labels for ${n} fine-tuning samples`);
  const L = model.layers.length;
  const outF = model.layers[L - 1]!.outFeatures;
  for (let s = 0; s < n; s++) {
    const c = labels[s]!;
    if (!Number.isInteger(c) || c < 0 || c >= outF) throw new InputError(`label ${c} of sample ${s} is not a class of the network's ${outF} outputs`);
  }

  const f0 = model.input.features;
  const xs = x.subarray(0, n * f0);
  const trainLabels = labels.subarray(0, n);
  const seed = opts.seed ?? 1;
  const varied = sigma > 0 && model.layers.some((l) => l.dendrites);
  const noisy = (opts.hardware ?? []).some((h) => !!h && ((h.programSigma ?? 0) > 0 || (h.programRelative ?? 0) > 0 || (h.readSigma ?? 0) > 0 || (h.readRelative ?? 0) > 0));
  const Trainer = native().Trainer;
  const base = { seed, variation: sigma, threads: opts.threads };

  // The nominal network (ε = 1, no hardware effects): accuracy before, and the outputs the logit scale compares.
  const nominal = new Trainer(toTrainNetwork(model, device, base));
  const before = nominal.predict(xs);
  nominal.release();
  const accuracyBefore = agreement(argmaxRows(before, n, outF), trainLabels);
  const rmsN = Math.min(n, 1000);
  const bypassed = new Trainer(toTrainNetwork(model, device, { ...base, bypass: true }));
  const plain = bypassed.predict(xs.subarray(0, rmsN * f0));
  bypassed.release();
  const rms = (v: Float32Array) => Math.sqrt(v.reduce((a, b) => a + b * b, 0) / Math.max(1, v.length));
  const rWith = rms(before.subarray(0, rmsN * outF));
  const rWithout = rms(plain);
  const logitScale = rWith > 0 && rWithout > 0 && Number.isFinite(rWith / rWithout) ? rWithout / rWith : 1;

  const stepsPerEpoch = Math.ceil(n / batch);
  const totalSteps = Math.max(1, epochs * stepsPerEpoch);
  const trainer: NativeTrainer = new Trainer(
    toTrainNetwork(model, device, { ...base, logitScale, penalty, hardware: opts.hardware }),
    { kind: 'adam', learningRate: lr, ...(decay ? { schedule: 'linear' as const, totalSteps } : {}) },
  );
  // The probe and the accuracies: the same weights on the nominal devices (no hardware effects), the loss scaled.
  const judge = new Trainer(toTrainNetwork(model, device, { ...base, logitScale }));

  // The probe (see the top of this file): samples spread over the set (sets sorted by class are common) and
  // chips drawn once from a generator of their own.
  const probeN = Math.min(n, PROBE_SAMPLES);
  const probeX = new Float32Array(probeN * f0);
  const probeLabels = new Int32Array(probeN);
  for (let k = 0; k < probeN; k++) {
    const s = Math.floor((k * n) / probeN);
    probeX.set(xs.subarray(s * f0, (s + 1) * f0), k * f0);
    probeLabels[k] = labels[s]!;
  }
  const chipRng = new Random((Math.imul(seed, 0x85ebca6b) + 0x3c6ef372) >>> 0);
  const chips = varied ? Array.from({ length: PROBE_CHIPS }, () => epsArrays(drawDendriteVariation(model, sigma, chipRng))) : [null];
  const probeLoss: number[] = [];
  const probeAccuracy: number[] = [];
  /** Mean loss (and accuracy, recorded) of the given weights over the probe's samples × chips. */
  const evaluate = (params: { weight: Float32Array[]; bias: Float32Array[] }): number => {
    judge.setParams(params);
    let loss = 0;
    let ok = 0;
    for (const chip of chips) {
      const r = judge.evaluate(probeX, probeLabels, chip ? { eps: chip } : {});
      loss += r.loss;
      ok += r.accuracy;
    }
    probeLoss.push(loss / chips.length);
    probeAccuracy.push(ok / chips.length);
    return loss / chips.length;
  };
  let keptEpoch = epochs;
  let bestLoss = Infinity;
  /** The weights and biases of the best candidate so far (epoch 0: the input's). */
  let kept: { weight: Float32Array[]; bias: Float32Array[] } | null = null;
  const consider = (epoch: number, params: () => { weight: Float32Array[]; bias: Float32Array[] }) => {
    if (!keepBest || epochs === 0) return;
    const p = params();
    const loss = evaluate(p);
    if (loss < bestLoss) {
      bestLoss = loss;
      keptEpoch = epoch;
      kept = p;
    }
  };
  consider(0, () => ({ weight: model.layers.map((l) => l.weight), bias: model.layers.map((l) => l.bias) }));

  // Variation in the loop: one ε per dendrite of every dendritic layer, redrawn for every minibatch from its own
  // generator (the sample order's stays the one without variation).
  const epsRng = minibatchVariationRandom(seed);
  let eps: (Float64Array | null)[] | undefined;
  const rng = new Random(seed);
  const order = Int32Array.from({ length: n }, (_, i) => i);
  const xb = new Float32Array(Math.min(batch, n) * f0);
  const lb = new Int32Array(Math.min(batch, n));
  const lossPerEpoch: number[] = [];
  let done = 0;
  for (let e = 0; e < epochs; e++) {
    for (let i = n - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      const t = order[i]!;
      order[i] = order[j]!;
      order[j] = t;
    }
    let lossSum = 0;
    for (let start = 0; start < n; start += batch) {
      const nb = Math.min(n, start + batch) - start;
      for (let k = 0; k < nb; k++) {
        const s = order[start + k]!;
        xb.set(xs.subarray(s * f0, (s + 1) * f0), k * f0);
        lb[k] = labels[s]!;
      }
      const chip = varied ? epsArrays((eps = drawDendriteVariation(model, sigma, epsRng, eps))) : undefined; // one chip for the whole minibatch
      const r = trainer.step(nb === xb.length / f0 ? xb : xb.subarray(0, nb * f0), nb === lb.length ? lb : lb.subarray(0, nb), { ...(chip ? { eps: chip } : {}), ...(noisy ? { noise: true } : {}) });
      lossSum += r.loss * nb;
      done += nb;
      opts.onProgress?.(done, epochs * n);
    }
    lossPerEpoch.push(lossSum / n);
    consider(e + 1, () => trainer.params());
  }
  const finalParams = kept ?? trainer.params();
  trainer.release();
  // Fresh arrays (never the input model's own).
  const layers: DenseLayer[] = model.layers.map((l, li) => ({ ...l, weight: Float32Array.from(finalParams.weight[li]!), bias: Float32Array.from(finalParams.bias[li]!) }));
  const work: LayerModel = { ...model, layers };

  judge.setParams(finalParams);
  const accuracyAfter = agreement(argmaxRows(judge.predict(xs), n, outF), trainLabels);
  judge.release();
  const seconds = (performance.now() - t0) / 1000;
  const pct = (v: number) => `${(100 * v).toFixed(2)} %`;
  const probe = { samples: probeN, chips: probeLoss.length ? chips.length : 0, loss: probeLoss, accuracy: probeAccuracy };
  const variation = varied ? sigma : 0;
  const penalised = penalty.soma > 0 || penalty.branch > 0;
  const summary =
    `fine-tuned with dendrites in the loop` +
    (varied ? ` and device variation σ = ${sigma} in the loop (a fresh ε per dendrite every minibatch)` : '') +
    (opts.hardware?.some((h) => h) ? ' and the crossbar\'s hardware effects in the forward' : '') +
    (penalised ? ` with an activity penalty (soma ${penalty.soma}, branch ${penalty.branch})` : '') +
    `: ${epochs} epoch${epochs === 1 ? '' : 's'} on ${n} samples (Adam, step ${lr}${decay ? ' falling linearly to 0' : ''}, batch ${batch}), ` +
    `training accuracy ${pct(accuracyBefore)} → ${pct(accuracyAfter)}` +
    (lossPerEpoch.length ? `, loss ${lossPerEpoch.map((v) => v.toFixed(3)).join(' → ')}` : '') +
    (probeLoss.length
      ? `; kept ${keptEpoch === 0 ? 'the input weights (no epoch improved)' : `epoch ${keptEpoch}`} by the loss on ${probeN} samples × ${chips.length} ` +
        `${varied ? 'drawn chips' : 'nominal chip'} (${probeLoss.map((v) => v.toFixed(3)).join(' → ')}; accuracy ${probeAccuracy.map(pct).join(' → ')})`
      : '');
  return {
    model: work,
    report: { epochs, samples: n, batch, learningRate: lr, schedule: decay ? 'linear-decay' : 'constant', optimizer: 'adam', logitScale, loss: lossPerEpoch, variation, penalty, probe, keptEpoch, accuracyBefore, accuracyAfter, seconds, summary },
  };
}
