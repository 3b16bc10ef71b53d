/**
 * Pass: LayerModel with dendrites + labelled samples → the same network with its weights and biases fine-tuned
 * with the dendrites in the loop (common/dendrite.ts): minibatch Adam on a softmax cross-entropy of the last
 * layer's outputs. The forward is dendriticForward's (the same LayerRunner, with the layers' current F and κ);
 * the backward goes through the soma (or activation), the dendrites' dH/du (dendriteSlope) and the branch sums.
 * The branch assignment, F and κ stay as they are: a weight stays on its crossbar row, in its branch.
 *
 * The dendrites attenuate the outputs by a gain argmax ignores but a cross-entropy does not, so the loss sees
 * the outputs times one fixed factor (`logitScale`): the RMS of the outputs without dendrites over the RMS with
 * them, on (the first 1000 of) the training samples, before training. Deterministic for a given seed (the sample order per epoch).
 */
import { InputError } from '../../common/errors.js';
import { Random } from '../../common/random.js';
import type { DendriteDevice } from '../../common/dendrite.js';
import type { DenseLayer, LayerModel } from '../ir/layers.js';
import { DendriteKernel, agreement, argmaxRows, dendriticForward, layerRunners, sampleCount, somaOf, somaSlope } from './dendritic-forward.js';

export interface FinetuneOptions {
  /** Passes over the samples (default 3). */
  epochs?: number;
  /** Adam step size (default 1e-3). */
  learningRate?: number;
  /** Samples per step (default 64). */
  batch?: number;
  /** Seed of the sample order (default 1). */
  seed?: number;
  /** At most this many samples (default all). */
  limit?: number;
  /** Called after every step with the samples done so far and the total (epochs × samples). */
  onProgress?: (done: number, total: number) => void;
}

export interface FinetuneReport {
  epochs: number;
  samples: number;
  batch: number;
  learningRate: number;
  optimizer: 'adam';
  /** The fixed factor on the outputs the loss sees (see the top of this file). */
  logitScale: number;
  /** Mean cross-entropy over each epoch, as it trained. */
  loss: number[];
  /** Training accuracy with dendrites, before and after (fractions). */
  accuracyBefore: number;
  accuracyAfter: number;
  seconds: number;
  summary: string;
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
  const lr = opts.learningRate ?? 1e-3;
  const batch = opts.batch ?? 64;
  if (!Number.isInteger(epochs) || epochs < 0) throw new InputError(`fine-tuning epochs must be a non-negative integer (got ${epochs})`);
  if (!Number.isInteger(batch) || batch < 1) throw new InputError(`the fine-tuning batch must be a positive integer (got ${batch})`);
  if (!(lr > 0) || !Number.isFinite(lr)) throw new InputError(`the fine-tuning learning rate must be > 0 (got ${lr})`);
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
  const probe = Math.min(n, 1000);
  const plain = dendriticForward(work, device, x, { limit: probe, bypass: true });
  const rms = (v: Float32Array) => Math.sqrt(v.reduce((a, b) => a + b * b, 0) / Math.max(1, v.length));
  const rWith = rms(before.outputs.subarray(0, probe * outF));
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
  const rng = new Random(opts.seed ?? 1);
  const order = Int32Array.from({ length: n }, (_, i) => i);
  const lossPerEpoch: number[] = [];
  let step = 0;
  let done = 0;

  /** Forward and backward of one sample; adds its gradient to gW, gB and returns its loss. */
  const sample = (s: number): number => {
    const a0 = acts[0]!;
    for (let i = 0; i < f0; i++) a0[i] = x[s * f0 + i]!;
    for (let li = 0; li < L; li++) runners[li]!.run(acts[li]!, 0, li + 1 < L ? acts[li + 1]! : out, 0);
    // Softmax cross-entropy of logitScale · out.
    let mx = -Infinity;
    for (let j = 0; j < outF; j++) mx = Math.max(mx, logitScale * out[j]!);
    let sum = 0;
    for (let j = 0; j < outF; j++) sum += probs[j] = Math.exp(logitScale * out[j]! - mx);
    const y = labels[s]!;
    const loss = -(logitScale * out[y]! - mx - Math.log(sum));
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
        for (let j = 0; j < m; j++) {
          const gp = go[j]! * somaSlope(soma, l.activation, pre[j]!);
          if (gp === 0) continue;
          act[na++] = j;
          gb[j] += kappa * gp;
          for (let b = 0; b < nb; b++) gzl[b * m + j] = gp * kernel.slope(z[b * m + j]! / f);
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
        if (dense) for (let j = 0; j < m; j++) gw[row + j] += xi * gzl[base + j]!;
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

  const adam = (p: Float32Array, g: Float64Array, mo: Float32Array, ve: Float32Array, scale: number, c1: number, c2: number) => {
    for (let k = 0; k < p.length; k++) {
      const gk = g[k]! * scale;
      if (gk !== 0 || mo[k] !== 0) {
        const mk = (mo[k] = BETA1 * mo[k]! + (1 - BETA1) * gk);
        const vk = (ve[k] = BETA2 * ve[k]! + (1 - BETA2) * gk * gk);
        p[k] -= (lr * (mk / c1)) / (Math.sqrt(vk / c2) + EPS);
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
      for (let k = start; k < end; k++) lossSum += sample(order[k]!);
      step++;
      const c1 = 1 - BETA1 ** step;
      const c2 = 1 - BETA2 ** step;
      const scale = 1 / (end - start);
      for (let li = 0; li < L; li++) {
        adam(layers[li]!.weight, gW[li]!, mW[li]!, vW[li]!, scale, c1, c2);
        adam(layers[li]!.bias, gB[li]!, mB[li]!, vB[li]!, scale, c1, c2);
      }
      done += end - start;
      opts.onProgress?.(done, epochs * n);
    }
    lossPerEpoch.push(lossSum / n);
  }

  const after = dendriticForward(work, device, x, { limit: n });
  const accuracyAfter = agreement(argmaxRows(after.outputs, n, outF), trainLabels);
  const seconds = (performance.now() - t0) / 1000;
  const pct = (v: number) => `${(100 * v).toFixed(2)} %`;
  const summary =
    `fine-tuned with dendrites in the loop: ${epochs} epoch${epochs === 1 ? '' : 's'} on ${n} samples (Adam, step ${lr}, batch ${batch}), ` +
    `training accuracy ${pct(accuracyBefore)} → ${pct(accuracyAfter)}` +
    (lossPerEpoch.length ? `, loss ${lossPerEpoch.map((v) => v.toFixed(3)).join(' → ')}` : '');
  return {
    model: work,
    report: { epochs, samples: n, batch, learningRate: lr, optimizer: 'adam', logitScale, loss: lossPerEpoch, accuracyBefore, accuracyAfter, seconds, summary },
  };
}
