/**
 * Pass: LayerModel with dendrites + sample inputs → each dendritic layer's operating point: F (fullScale,
 * the branch signal that applies the profile's dendrite voltage) and κ (biasScale, the soma threshold's scale),
 * the model of common/dendrite.ts.
 *
 * Layer by layer (earlier layers fixed first; later layers not yet calibrated run without dendrites):
 *   - the branch partial sums z_bj of the layer on the calibration data are computed once (they depend only on
 *     the earlier layers), and with them the candidates F = quantile of the non-zero |z_bj| × multiplier
 *     (q ∈ {0.5, 0.75, 0.9, 0.99, 0.999, max}, × {1, 2, 4, 8, 16, 32});
 *   - for each F: κ = ⟨Σ_b y_b, Σ_b z_b⟩ / ⟨Σ_b z_b, Σ_b z_b⟩ over samples and neurons (the least-squares gain of
 *     the dendrites, so the bias keeps its relation to the attenuated signal), then the rest of the network;
 *   - score: the soma power advantage of the whole network (soma energy without dendrites ÷ with, each layer's
 *     Σ|soma output| over its somaFullScale as in the runtime's energy model), subject to the calibration accuracy
 *     staying within the tolerance of the network without dendrites. The tolerance is shared out: the k-th of K
 *     dendritic layers may spend (k + 1)/K of it. The best advantage within tolerance wins; if no candidate is
 *     within tolerance, the most accurate.
 * Accuracy is against the labels when given, else the agreement of argmax with the network without dendrites.
 * Layers already calibrated (imported from a trained dendritic model) keep their F and κ.
 *
 * Also the two scales a compile needs without calibration data: somaFullScales (the soma energy model's
 * per-layer output scale) and defaultDendriteScales (F from the weights, κ = 1).
 */
import { InputError } from '../../common/errors.js';
import { somaOutput, type DendriteDevice, type Soma } from '../../common/dendrite.js';
import type { DenseLayer, LayerModel } from '../ir/layers.js';
import { DendriteKernel, LayerRunner, agreement, argmaxRows, dendriticForward, sampleCount, somaOf } from './dendritic-forward.js';

export interface CalibrateDendritesOptions {
  /** Calibration samples used (default 1000). */
  limit?: number;
  /** Accuracy points (percent) allowed to drop on the calibration data (default 0.5). */
  tolerance?: number;
}

export interface DendriteLayerCalibration {
  layer: number;
  branches: number;
  /** F. */
  fullScale: number;
  /** F as a quantile of the non-zero |branch sums| times a multiplier (quantile 1 = the largest); null if kept. */
  quantile: number | null;
  multiplier: number | null;
  /** κ. */
  biasScale: number;
  /** Σ|z| ÷ Σ|y| over the layer's dendrites: how much they cut the branch currents (1 = not at all). */
  attenuation: number;
  /** This layer's soma output without dendrites ÷ with (Σ|out|). */
  somaAdvantage: number;
  /** Mean fraction of the layer's non-zero branch signals that reach the device's ON state. */
  onFraction: number;
  /** false: the layer was already calibrated and kept its F and κ. */
  calibrated: boolean;
  /** Candidates tried. */
  candidates: number;
}

export interface DendriteCalibrationReport {
  samples: number;
  /** true: accuracies are against labels; false: they are agreement with the network without dendrites. */
  labelled: boolean;
  tolerance: number;
  /** Calibration accuracy with dendrites (fraction; agreement when unlabelled). */
  accuracy: number;
  /** Calibration accuracy without dendrites (1 when unlabelled). */
  bypassAccuracy: number;
  /** Agreement of argmax with the network without dendrites. */
  agreement: number;
  /** Soma energy without dendrites ÷ with (per-layer Σ|out| / somaFullScale, summed). */
  powerAdvantage: number;
  /** Mean Σ dendritePower per inference (units of onVoltage·onCurrent). */
  dendritePower: number;
  layers: DendriteLayerCalibration[];
  seconds: number;
  summary: string;
}

const QUANTILES = [0.5, 0.75, 0.9, 0.99, 0.999, 1];
const MULTIPLIERS = [1, 2, 4, 8, 16, 32];

export function calibrateDendrites(
  model: LayerModel,
  device: DendriteDevice,
  x: Float32Array,
  labels?: Int32Array,
  opts: CalibrateDendritesOptions = {},
): { model: LayerModel; report: DendriteCalibrationReport } {
  const t0 = performance.now();
  const total = sampleCount(model, x);
  const limit = opts.limit ?? 1000;
  const n = Math.max(1, Math.min(limit, total));
  const tolerance = opts.tolerance ?? 0.5;
  if (!(tolerance >= 0)) throw new InputError(`the calibration tolerance must be >= 0 accuracy points (got ${tolerance})`);
  if (labels && labels.length < n) throw new InputError(`${labels.length} labels for ${n} calibration samples`);
  const layers = model.layers;
  const L = layers.length;
  const kernel = new DendriteKernel(device);

  // The network without dendrites: the reference accuracy, soma energy and soma full scales.
  const ref = dendriticForward(model, device, x, { bypass: true, limit: n });
  const outF = layers[L - 1]!.outFeatures;
  const refArg = argmaxRows(ref.outputs, n, outF);
  const somaScales = scalesFromForward(model, ref.layerInputs, ref.outputs, n);
  const refEnergy = weighted(ref.somaSum, somaScales);
  const score = (arg: Int32Array) => (labels ? agreement(arg, labels.subarray(0, n)) : agreement(arg, refArg));
  const refAcc = score(refArg);

  // The working model: fresh layer and dendrite objects.
  const work: DenseLayer[] = layers.map((l) => (l.dendrites ? { ...l, dendrites: { ...l.dendrites } } : { ...l }));
  const todo = work.map((l, li) => (l.dendrites && !l.dendrites.calibrated ? li : -1)).filter((li) => li >= 0);
  const chosen = new Map<number, { q: number; mult: number; candidates: number }>();

  // Inputs of the current layer with the earlier layers fixed (float64, [n × inFeatures]), their soma sums.
  let cur = new Float64Array(n * layers[0]!.inFeatures);
  for (let i = 0; i < cur.length; i++) cur[i] = x[i]!;
  const fixedSoma = new Float64Array(L);
  let li = 0;
  const advance = (upto: number) => {
    // Run the fixed layers li .. upto − 1 (with their dendrites where calibrated or kept) on `cur`.
    for (; li < upto; li++) {
      const l = work[li]!;
      const r = new LayerRunner(l, kernel, !!l.dendrites && (l.dendrites.calibrated || chosen.has(li)));
      const next = new Float64Array(n * l.outFeatures);
      for (let s = 0; s < n; s++) r.run(cur, s * l.inFeatures, next, s * l.outFeatures);
      fixedSoma[li] = r.somaSum;
      cur = next;
    }
  };

  todo.forEach((target, k) => {
    advance(target);
    const l = work[target]!;
    const d = l.dendrites!;
    const m = l.outFeatures;
    const nb = d.count;
    const floor = refAcc - (tolerance / 100) * ((k + 1) / todo.length);

    // Branch sums z[s][b][j] and their totals Z[s][j] (independent of this layer's F and κ).
    const z = new Float64Array(n * nb * m);
    const zsum = new Float64Array(n * m);
    const probe = new LayerRunner(l, kernel, true);
    for (let s = 0; s < n; s++) {
      probe.run(cur, s * l.inFeatures, zsum, s * m); // fills probe.z; zsum is overwritten below
      z.set(probe.z, s * nb * m);
    }
    let zz = 0;
    for (let s = 0; s < n; s++) {
      for (let j = 0; j < m; j++) {
        let t = 0;
        for (let b = 0; b < nb; b++) {
          const v = z[(s * nb + b) * m + j]!;
          t += v;
        }
        zsum[s * m + j] = t;
        zz += t * t;
      }
    }
    const cands = candidates(z);

    // Later layers while this one is tuned: already-calibrated ones with their dendrites, the rest without.
    const later = work.slice(target + 1).map((ll) => new LayerRunner(ll, kernel, !!ll.dendrites && ll.dendrites.calibrated));
    const ybuf = new Float64Array(n * m);
    const next = new Float64Array(n * m);
    const bufs = later.map((r) => new Float64Array(r.layer.outFeatures));
    const outs = new Float64Array(n * outF);
    const soma = somaOf(l);

    let best: { f: number; q: number; mult: number; kappa: number; acc: number; adv: number } | null = null;
    for (const c of cands) {
      const f = c.f;
      kernel.power = 0;
      let yz = 0;
      for (let s = 0; s < n; s++) {
        const zs = s * nb * m;
        for (let j = 0; j < m; j++) {
          let y = 0;
          for (let b = 0; b < nb; b++) y += kernel.out(z[zs + b * m + j]!, f);
          ybuf[s * m + j] = y;
          yz += y * zsum[s * m + j]!;
        }
      }
      const kappa = zz > 0 ? yz / zz : 1;
      const energy = fixedSoma.slice();
      let own = 0;
      for (let s = 0; s < n; s++) {
        for (let j = 0; j < m; j++) {
          const o = somaOutput(soma, l.activation, ybuf[s * m + j]! + kappa * l.bias[j]!);
          next[s * m + j] = o;
          own += Math.abs(o);
        }
      }
      energy[target] = own;
      for (const r of later) r.somaSum = 0;
      if (later.length === 0) outs.set(next);
      else {
        for (let s = 0; s < n; s++) {
          let xin = next;
          let xo = s * m;
          later.forEach((r, o) => {
            const last = o === later.length - 1;
            r.run(xin, xo, last ? outs : bufs[o]!, last ? s * outF : 0);
            xin = bufs[o]!;
            xo = 0;
          });
        }
      }
      later.forEach((r, o) => { energy[target + 1 + o] = r.somaSum; });
      const acc = score(argmaxRows(outs, n, outF));
      const e = weighted(energy, somaScales);
      const adv = e > 0 ? refEnergy / e : Infinity;
      const ok = acc >= floor - 1e-12;
      const better = !best
        ? true
        : ok !== best.acc >= floor - 1e-12
          ? ok
          : ok
            ? adv > best.adv || (adv === best.adv && acc > best.acc)
            : acc > best.acc || (acc === best.acc && adv > best.adv);
      if (better) best = { f, q: c.q, mult: c.mult, kappa, acc, adv };
    }
    d.fullScale = best!.f;
    d.biasScale = Number.isFinite(best!.kappa) && best!.kappa !== 0 ? best!.kappa : 1;
    d.calibrated = true;
    chosen.set(target, { q: best!.q, mult: best!.mult, candidates: cands.length });
  });

  const out: LayerModel = { ...model, layers: work };
  // The report: the final network by the reference forward itself.
  const fwd = dendriticForward(out, device, x, { limit: n });
  const arg = argmaxRows(fwd.outputs, n, outF);
  const acc = score(arg);
  const agree = agreement(arg, refArg);
  const energy = weighted(fwd.somaSum, somaScales);
  const powerAdvantage = energy > 0 ? refEnergy / energy : Infinity;
  const perLayer: DendriteLayerCalibration[] = [];
  work.forEach((l, i) => {
    const d = l.dendrites;
    if (!d) return;
    const st = branchStats(l, kernel, fwd.layerInputs[i]!, n);
    const c = chosen.get(i);
    perLayer.push({
      layer: i,
      branches: d.count,
      fullScale: d.fullScale,
      quantile: c ? c.q : null,
      multiplier: c ? c.mult : null,
      biasScale: d.biasScale,
      attenuation: st.absY > 0 ? st.absZ / st.absY : Infinity,
      somaAdvantage: fwd.somaSum[i]! > 0 ? ref.somaSum[i]! / fwd.somaSum[i]! : Infinity,
      onFraction: st.nonzero > 0 ? st.on / st.nonzero : 0,
      calibrated: !!c,
      candidates: c ? c.candidates : 0,
    });
  });
  const dendritePower = fwd.dendritePower.reduce((a, b) => a + b, 0) / n;
  const seconds = (performance.now() - t0) / 1000;
  const pct = (v: number) => `${(100 * v).toFixed(2)} %`;
  const fmt = (v: number) => (Number.isFinite(v) ? (Math.abs(v) >= 0.01 && Math.abs(v) < 1e4 ? v.toPrecision(3) : v.toExponential(2)) : String(v));
  const layerText = perLayer
    .map((p) => `layer ${p.layer} F ${fmt(p.fullScale)}${p.quantile !== null ? ` (${p.multiplier} × ${p.quantile === 1 ? 'max' : `q${p.quantile}`})` : ' (kept)'} κ ${fmt(p.biasScale)}`)
    .join(', ');
  const summary = labels
    ? `dendrites calibrated on ${n} samples: accuracy ${pct(acc)} with dendrites, ${pct(refAcc)} without (agreement ${pct(agree)}), soma power advantage ${fmt(powerAdvantage)}×; ${layerText}`
    : `dendrites calibrated on ${n} unlabelled samples: agreement ${pct(agree)} with the network without dendrites, soma power advantage ${fmt(powerAdvantage)}×; ${layerText}`;
  return {
    model: out,
    report: { samples: n, labelled: !!labels, tolerance, accuracy: acc, bypassAccuracy: refAcc, agreement: agree, powerAdvantage, dendritePower, layers: perLayer, seconds, summary },
  };
}

/** Candidate full scales from the non-zero |z| (a strided sample of at most 2^18 of them; the max exactly). */
function candidates(z: Float64Array): { f: number; q: number; mult: number }[] {
  let nonzero = 0;
  let max = 0;
  for (let i = 0; i < z.length; i++) {
    const v = Math.abs(z[i]!);
    if (v > 0 && Number.isFinite(v)) {
      nonzero++;
      if (v > max) max = v;
    }
  }
  if (nonzero === 0) return [{ f: 1, q: 1, mult: 1 }];
  const stride = Math.max(1, Math.ceil(nonzero / 262144));
  const sample = new Float64Array(Math.ceil(nonzero / stride));
  let k = 0;
  for (let i = 0, seen = 0; i < z.length; i++) {
    const v = Math.abs(z[i]!);
    if (!(v > 0 && Number.isFinite(v))) continue;
    if (seen++ % stride === 0) sample[k++] = v;
  }
  const sorted = sample.subarray(0, k).sort();
  const out: { f: number; q: number; mult: number }[] = [];
  for (const q of QUANTILES) {
    const base = q === 1 ? max : sorted[Math.min(k - 1, Math.max(0, Math.ceil(q * k) - 1))]!;
    for (const mult of MULTIPLIERS) out.push({ f: base * mult, q, mult });
  }
  // Drop near-duplicates (within 1 %), keeping the first of each.
  out.sort((a, b) => a.f - b.f);
  return out.filter((c, i) => i === 0 || c.f > out[i - 1]!.f * 1.01);
}

function weighted(soma: Float64Array, scales: number[]): number {
  let e = 0;
  for (let i = 0; i < soma.length; i++) e += soma[i]! / scales[i]!;
  return e;
}

/** Σ|z|, Σ|y|, non-zero and ON-state branch signals of a dendritic layer on its inputs. */
function branchStats(l: DenseLayer, kernel: DendriteKernel, inputs: Float32Array, n: number): { absZ: number; absY: number; nonzero: number; on: number } {
  const d = l.dendrites!;
  const r = new LayerRunner(l, kernel, true);
  const x = new Float64Array(l.inFeatures);
  const y = new Float64Array(l.outFeatures);
  const onAt = kernel.device.kind === 'threshold-linear' ? kernel.device.threshold : 1;
  const a = kernel.device.voltage / kernel.device.onVoltage;
  let absZ = 0;
  let absY = 0;
  let nonzero = 0;
  let on = 0;
  for (let s = 0; s < n; s++) {
    for (let i = 0; i < x.length; i++) x[i] = inputs[s * x.length + i]!;
    r.run(x, 0, y, 0);
    for (let i = 0; i < r.z.length; i++) {
      const v = r.z[i]!;
      if (v === 0) continue;
      absZ += Math.abs(v);
      const o = kernel.out(v, d.fullScale);
      absY += Math.abs(o);
      if (!(v < 0 && kernel.device.rectify)) {
        nonzero++;
        if (a * Math.abs(v / d.fullScale) >= onAt) on++;
      }
    }
  }
  return { absZ, absY, nonzero, on };
}

/** |soma(±B)| at most: the magnitude a layer's output can reach for soma inputs within ±B. */
function somaMagnitude(soma: Soma, l: DenseLayer, bound: number): number {
  return Math.max(Math.abs(somaOutput(soma, l.activation, bound)), Math.abs(somaOutput(soma, l.activation, -bound)));
}

/** The 99th percentile (nearest rank) of |v|. */
function percentile99(v: Float32Array): number {
  if (v.length === 0) return 0;
  const a = new Float32Array(v.length);
  for (let i = 0; i < v.length; i++) a[i] = Math.abs(v[i]!);
  a.sort();
  return a[Math.min(a.length - 1, Math.max(0, Math.ceil(0.99 * a.length) - 1))]!;
}

function scalesFromForward(model: LayerModel, inputs: Float32Array[], outputs: Float32Array, n: number): number[] {
  return model.layers.map((_, li) => {
    const out = li + 1 < model.layers.length ? inputs[li + 1]! : outputs;
    const p = n > 0 ? percentile99(out) : 0;
    return Number.isFinite(p) ? Math.max(p, 1e-12) : 1e-12;
  });
}

/**
 * Per layer, the soma output scale of the energy model (the output at which a soma draws soma.onCurrent):
 * the 99th percentile of |soma output| of the network without dendrites on the first 1000 samples of x;
 * without x a bound from the weights (inputs within ±1). At least 1e-12.
 */
export function somaFullScales(model: LayerModel, x?: Float32Array, limit = 1000): number[] {
  if (x) {
    const f = dendriticForward(model, null, x, { bypass: true, limit });
    return scalesFromForward(model, f.layerInputs, f.outputs, f.samples);
  }
  return weightBounds(model).outputs.map((b) => (Number.isFinite(b) ? Math.max(b, 1e-12) : 1e-12));
}

/**
 * Worst-case magnitudes from the weights: inputs[l] bounds |x| into layer l (1 for the network's input),
 * outputs[l] bounds its soma output; branch[l] = max over j, b of Σ_{i ∈ b} |W_ij|·inputs[l] (the whole
 * column for a layer without dendrites).
 */
function weightBounds(model: LayerModel): { inputs: number[]; outputs: number[]; branch: number[] } {
  const inputs: number[] = [];
  const outputs: number[] = [];
  const branch: number[] = [];
  let bound = 1;
  for (const l of model.layers) {
    inputs.push(bound);
    const m = l.outFeatures;
    const nb = l.dendrites?.count ?? 1;
    const branchOf = l.dendrites?.branchOf;
    const mass = new Float64Array(nb * m);
    for (let i = 0; i < l.inFeatures; i++) {
      const base = (branchOf ? branchOf[i]! : 0) * m;
      for (let j = 0; j < m; j++) mass[base + j] += Math.abs(l.weight[i * m + j]!);
    }
    let pre = 0;
    let br = 0;
    for (let j = 0; j < m; j++) {
      let col = 0;
      for (let b = 0; b < nb; b++) {
        col += mass[b * m + j]!;
        br = Math.max(br, mass[b * m + j]! * bound);
      }
      pre = Math.max(pre, col * bound + Math.abs(l.bias[j]!));
    }
    branch.push(br);
    bound = somaMagnitude(somaOf(l), l, pre);
    outputs.push(bound);
  }
  return { inputs, outputs, branch };
}

/**
 * F and κ for a compile without calibration data: F = the largest branch signal the weights allow
 * (max over j, b of Σ_{i ∈ b} |W_ij|·bound of the layer's inputs), κ = 1. One entry per layer (a layer
 * without dendrites is treated as one branch).
 */
export function defaultDendriteScales(model: LayerModel): { fullScale: number; biasScale: number }[] {
  return weightBounds(model).branch.map((b) => ({ fullScale: Number.isFinite(b) && b > 0 ? b : 1, biasScale: 1 }));
}
