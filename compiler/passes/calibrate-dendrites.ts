/**
 * Pass: LayerModel with dendrites + sample inputs → each dendritic layer's operating point: F (fullScale,
 * the branch signal that applies the profile's dendrite voltage) and κ (biasScale, the soma threshold's scale),
 * the model of common/dendrite.ts.
 *
 * Layer by layer, earlier layers fixed first:
 *   - the branch partial sums z_bj of the layer on the calibration data (with the earlier layers' dendrites in
 *     place: the signals its devices will see) are computed once, and with them the candidates F = quantile of
 *     the non-zero |z_bj| × multiplier (q ∈ {0.5, 0.75, 0.9, 0.99, 0.999, max}, × {1, 2, 4, 8, 16, 32}; and
 *     q0.01 and q0.1 × 1: nearly every signal at or beyond full scale); near-duplicates (within 5 %) are tried once;
 *   - for each F: κ = ⟨Σ_b y_b, Σ_b ẑ_b⟩ / ⟨Σ_b ẑ_b, Σ_b ẑ_b⟩ over samples and neurons, ẑ the branch sums of the
 *     network without dendrites: the least-squares gain from that network's signal to this one's, earlier layers'
 *     attenuation included, so the bias keeps its relation to the attenuated signal (for the first dendritic
 *     layer ẑ = z). Then the rest of the network: calibrated layers with their dendrites, dendritic layers still
 *     to calibrate without devices but with their bias scaled by this κ (the gain they will take on), point-neuron
 *     layers as they are;
 *   - score: the soma power advantage of the whole network (soma energy without dendrites ÷ with, each layer's
 *     Σ|soma output| over its somaFullScale as in the runtime's energy model), subject to the calibration accuracy
 *     staying within the tolerance of the network without dendrites. The best advantage within tolerance wins;
 *     if no candidate is within tolerance, the most accurate.
 * Each layer may spend the whole tolerance; if the finished network is outside it (an early layer took it all),
 * the search runs again with the tolerance shared out, (k + 1)/K of it to the k-th of K layers, and the better
 * of the two networks is kept. The report's numbers come from the finished network's own forward.
 * Accuracy is against the labels when given, else the agreement of argmax with the network without dendrites.
 * Layers already calibrated (imported from a trained dendritic model) keep their F and κ.
 *
 * Also the two scales a compile needs without calibration data: somaFullScales (the soma energy model's
 * per-layer output scale) and defaultDendriteScales (F from the weights, κ = 1).
 */
import { InputError } from '../../common/errors.js';
import { maxRatio, onPoint, somaOutput, type DendriteDevice, type Soma } from '../../common/dendrite.js';
import type { DenseLayer, LayerModel } from '../ir/layers.js';
import { native } from '../../native/index.js';
import { DendriteKernel, agreement, argmaxRows, engineForward, sampleCount, sampleRows, somaOf } from './dendritic-forward.js';
import { toTrainNetwork } from './train-network.js';

export interface CalibrateDendritesOptions {
  /** Calibration samples used (default 1000). */
  limit?: number;
  /** Accuracy points (percent) allowed to drop on the calibration data (default 0.5). */
  tolerance?: number;
  /**
   * 'efficient' (default): F up to 32 × the largest branch signal, so the search may hold the devices in their
   * OFF state, where they attenuate; 'nonlinear': F at most the largest signal, so the strongest calibration
   * signals drive the devices ON and the dendrites filter (pass strong, suppress weak) rather than attenuate.
   */
  mode?: 'efficient' | 'nonlinear';
  /** Seed of the draw of `limit` samples across the file (default 0). */
  seed?: number;
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
  /** This layer's soma energy without dendrites ÷ with, each at its own full scale (fairSomaEnergy). */
  somaAdvantage: number;
  /** Mean fraction of the layer's non-zero branch signals in the device's ON region (onPoint). */
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
  /**
   * Soma energy without dendrites ÷ with, each network's somas at their own full scale (fairSomaEnergy): the
   * 99.9th percentile of a layer's own soma input draws the soma's rated current.
   */
  powerAdvantage: number;
  /** Mean Σ dendritePower per inference (units of onVoltage·onCurrent). */
  dendritePower: number;
  layers: DendriteLayerCalibration[];
  seconds: number;
  /** The operating mode searched (CalibrateDendritesOptions.mode). */
  mode: 'efficient' | 'nonlinear';
  summary: string;
}

const QUANTILES = [0.5, 0.75, 0.9, 0.99, 0.999, 1];
const MULTIPLIERS = [1, 2, 4, 8, 16, 32];
const NEAR_ON = [0.01, 0.1];
/** 'nonlinear' mode: full scales putting these quantiles of the branch signals at the device's ON point. */
const ON_QUANTILES = [0.5, 0.75, 0.9, 0.95];
/** 'nonlinear' mode: the least share of the non-zero branch signals a candidate must put in the ON region. */
export const MIN_SIGNALS_ON = 0.05;

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
  const tolerance = opts.tolerance ?? 0.5;
  if (!(tolerance >= 0)) throw new InputError(`the calibration tolerance must be >= 0 accuracy points (got ${tolerance})`);
  if (labels && labels.length < total) throw new InputError(`${labels.length} labels for ${total} calibration samples`);
  // At most `limit` samples, drawn across the whole file (seeded): not the first rows of a class-sorted file.
  const drawn = sampleRows(x, model.input.features, Math.max(1, limit), opts.seed ?? 0, labels);
  x = drawn.x;
  labels = drawn.labels;
  const n = drawn.rows;
  const layers = model.layers;
  const L = layers.length;
  const kernel = new DendriteKernel(device);
  const mode = opts.mode ?? 'efficient';
  if (mode !== 'efficient' && mode !== 'nonlinear') throw new InputError(`the dendrite operating mode must be 'efficient' or 'nonlinear' (got '${String(mode)}')`);
  const multipliers = mode === 'nonlinear' ? [1] : MULTIPLIERS;
  // |u| at which a branch signal reaches the device's ON region (onPoint, within the device's rating).
  const uOn = Math.min(onPoint(device), maxRatio(device)) / (device.voltage / device.onVoltage);

  // The network without dendrites: the reference accuracy, soma energy and soma full scales.
  const ref = engineForward(model, device, x, { bypass: true, limit: n });
  const outF = layers[L - 1]!.outFeatures;
  const refArg = argmaxRows(ref.outputs, n, outF);
  const refLayerEnergy = layers.map((l, li) => fairSomaEnergy(l, ref.somaInputs[li]!));
  const refEnergy = refLayerEnergy.reduce((a, b) => a + b, 0);
  const score = (arg: Int32Array) => (labels ? agreement(arg, labels.subarray(0, n)) : agreement(arg, refArg));
  const refAcc = score(refArg);

  // The first layer to calibrate does not depend on any choice: its scores are shared by both searches; nor do
  // the sums Σ_b z_b of the network without dendrites that κ is fitted to.
  const todo = layers.map((l, li) => (l.dendrites && !l.dendrites.calibrated ? li : -1)).filter((li) => li >= 0);
  let firstResults: Scored[] | null = null;
  const plainSums = new Map<number, { zsum: Float64Array; zz: number }>();
  const plainSumsOf = (li: number) => {
    let p = plainSums.get(li);
    if (!p) plainSums.set(li, (p = columnSums(model, li, ref.layerInputs[li]!, n)));
    return p;
  };

  /**
   * One greedy search, layer by layer; the k-th of the K layers to calibrate may lose `share[k]` of the
   * tolerance. Returns the working layers and the choices.
   */
  const search = (share: (k: number) => number) => {
    const work: DenseLayer[] = layers.map((l) => (l.dendrites ? { ...l, dendrites: { ...l.dendrites } } : { ...l }));
    const chosen = new Map<number, { q: number; mult: number; candidates: number }>();
    const fixedSoma = new Float64Array(L);
    /**
     * The network up to layer `target` on the engine, the earlier layers fixed (with their dendrites once
     * calibrated): their soma energies into fixedSoma, and the target's branch sums.
     */
    const prefix = (target: number): Float32Array => {
      const sub: LayerModel = { ...model, layers: work.slice(0, target + 1) };
      const fwd = engineForward(sub, device, x, { limit: n, dendritic: sub.layers.map((l, li) => li === target || (!!l.dendrites && l.dendrites.calibrated)) });
      for (let li = 0; li < target; li++) fixedSoma[li] = fairSomaEnergy(work[li]!, fwd.somaInputs[li]!);
      return fwd.branch[target]!;
    };
    let firstOk = true;
    todo.forEach((target, k) => {
      const l = work[target]!;
      const d = l.dendrites!;
      const floor = refAcc - (tolerance / 100) * share(k);
      let results: Scored[];
      if (k === 0 && firstResults) {
        results = firstResults;
        if (target > 0) prefix(target); // the fixed layers' soma sums
      } else {
        const cache = branchCache(l, prefix(target), n, multipliers, mode === 'nonlinear' ? uOn : Infinity);
        // With no dendrites before it, this layer's branch sums are those of the network without dendrites.
        if (!plainSums.has(target) && layers.slice(0, target).every((ll) => !ll.dendrites)) plainSums.set(target, cache.plain);
        results = scoreLayer(work, target, cache, fixedSoma);
        if (k === 0) firstResults = results;
      }
      let best: Scored | null = null;
      let bestOk = false;
      for (const r of results) {
        // 'nonlinear': a candidate must also switch at least MIN_SIGNALS_ON of the signals ON (filter, not attenuate).
        const ok = r.acc >= floor - 1e-12 && (mode !== 'nonlinear' || r.on >= MIN_SIGNALS_ON);
        const better = !best || (ok !== bestOk ? ok : ok ? r.adv > best.adv || (r.adv === best.adv && r.acc > best.acc) : r.acc > best.acc || (r.acc === best.acc && r.adv > best.adv));
        if (better) {
          best = r;
          bestOk = ok;
        }
      }
      if (k === 0) firstOk = bestOk;
      d.fullScale = best!.f;
      d.biasScale = best!.kappa;
      d.calibrated = true;
      chosen.set(target, { q: best!.q, mult: best!.mult, candidates: results.length });
    });
    return { work, chosen, firstOk };
  };

  /** Every candidate F of layer `target` (earlier layers fixed, their soma sums in fixedSoma): κ, accuracy, advantage. */
  const scoreLayer = (work: DenseLayer[], target: number, cache: BranchCache, fixedSoma: Float64Array): Scored[] => {
    const l = work[target]!;
    const m = l.outFeatures;
    const { z } = cache;
    const { zsum, zz } = plainSumsOf(target);
    // Later layers while this one is tuned: already-calibrated ones with their dendrites; the dendritic layers
    // still to calibrate without their devices but with the bias scaled by this layer's κ (the gain they will
    // take on: their κ is fitted against the network without dendrites too); point-neuron layers as they are.
    const later = work.slice(target + 1);
    const laterDendritic = later.map((ll) => !!ll.dendrites && ll.dendrites.calibrated);
    // The layer's dendrites as the engine takes them; each candidate's Σ_b F·H(z_b/F) on the engine (dendriteSums).
    const dendrites = toTrainNetwork({ ...model, layers: [l] }, device, { threads: 1 }).layers[0]!.dendrites!;
    const next = new Float32Array(n * m);
    const soma = somaOf(l);
    const bias = l.bias;
    const ownPre = new Float32Array(n * m);
    const results: Scored[] = [];
    for (const c of cache.candidates) {
      const f = c.f;
      const ybuf = native().dendriteSums({ ...dendrites, fullScale: f }, z, m).sums;
      let yz = 0;
      for (let k = 0; k < n * m; k++) yz += ybuf[k]! * zsum[k]!;
      const kappa = zz > 0 && yz !== 0 && Number.isFinite(yz / zz) ? yz / zz : 1;
      for (let s = 0; s < n; s++) {
        for (let j = 0; j < m; j++) {
          const pre = kappa * bias[j]! + ybuf[s * m + j]!;
          ownPre[s * m + j] = pre;
          next[s * m + j] = somaOutput(soma, l.activation, pre);
        }
      }
      const energy = fixedSoma.slice();
      energy[target] = fairSomaEnergy(l, ownPre);
      let outs: Float32Array = next;
      if (later.length > 0) {
        const rest: LayerModel = {
          ...model,
          input: { ...model.input, features: m },
          layers: later.map((ll, o) => (ll.dendrites && !laterDendritic[o] ? { ...ll, bias: ll.bias.map((b) => kappa * b) } : ll)),
        };
        const fwd = engineForward(rest, device, next, { dendritic: laterDendritic });
        outs = fwd.outputs;
        later.forEach((ll, o) => { energy[target + 1 + o] = fairSomaEnergy(ll, fwd.somaInputs[o]!); });
      }
      const acc = score(argmaxRows(outs, n, outF));
      const e = energy.reduce((a, b) => a + b, 0);
      results.push({ f, q: c.q, mult: c.mult, kappa, acc, adv: e > 0 ? refEnergy / e : Infinity, on: c.on });
    }
    return results;
  };

  // Greedy: every layer may spend the whole tolerance (a later layer then finds what is left). If the whole
  // network ends outside the tolerance although the first layer could stay within it, search again with the
  // tolerance shared out, (k + 1)/K to the k-th of K layers (the first layer's scores are reused).
  const evaluate = (work: DenseLayer[]) => {
    const model1: LayerModel = { ...model, layers: work };
    const fwd = forwardWithStats(model1, kernel, x, n);
    const arg = argmaxRows(fwd.outputs, n, outF);
    const e = fwd.somaEnergy.reduce((a, b) => a + b, 0);
    return { model: model1, fwd, arg, acc: score(arg), adv: e > 0 ? refEnergy / e : Infinity };
  };
  let pick = search(() => 1);
  let final = evaluate(pick.work);
  const floor = refAcc - tolerance / 100 - 1e-12;
  if (final.acc < floor && todo.length > 1 && pick.firstOk) {
    const again = search((k) => (k + 1) / todo.length);
    const second = evaluate(again.work);
    if (second.acc >= floor ? final.acc < floor || second.adv > final.adv : second.acc > final.acc) {
      pick = again;
      final = second;
    }
  }
  const { work, chosen } = pick;
  // The report: the final network by its own forward on the engine.
  const { model: out, fwd, arg, acc, adv: powerAdvantage } = final;
  const agree = agreement(arg, refArg);
  const perLayer: DendriteLayerCalibration[] = [];
  work.forEach((l, i) => {
    const d = l.dendrites;
    if (!d) return;
    const st = fwd.stats[i]!;
    const c = chosen.get(i);
    perLayer.push({
      layer: i,
      branches: d.count,
      fullScale: d.fullScale,
      quantile: c ? c.q : null,
      multiplier: c ? c.mult : null,
      biasScale: d.biasScale,
      attenuation: st.absY > 0 ? st.absZ / st.absY : Infinity,
      somaAdvantage: fwd.somaEnergy[i]! > 0 ? refLayerEnergy[i]! / fwd.somaEnergy[i]! : Infinity,
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
    .map((p) => `layer ${p.layer} F ${fmt(p.fullScale)}${p.quantile !== null ? ` (${p.multiplier} × ${p.quantile === 1 ? 'max' : `q${p.quantile}`})` : ' (kept)'} κ ${fmt(p.biasScale)}, ${pct(p.onFraction)} of signals ON`)
    .join(', ');
  const summary = `${mode} mode: ` + (labels
    ? `dendrites calibrated on ${n} samples: accuracy ${pct(acc)} with dendrites, ${pct(refAcc)} without (agreement ${pct(agree)}), soma power advantage ${fmt(powerAdvantage)}×; ${layerText}`
    : `dendrites calibrated on ${n} unlabelled samples: agreement ${pct(agree)} with the network without dendrites, soma power advantage ${fmt(powerAdvantage)}×; ${layerText}`);
  return {
    model: out,
    report: { mode, samples: n, labelled: !!labels, tolerance, accuracy: acc, bypassAccuracy: refAcc, agreement: agree, powerAdvantage, dendritePower, layers: perLayer, seconds, summary },
  };
}

/** One candidate F of a layer, scored. */
interface Scored {
  /** Share of the layer's non-zero branch signals in the ON region. */
  on: number;
  f: number;
  q: number;
  mult: number;
  kappa: number;
  acc: number;
  adv: number;
}

interface BranchCache {
  /** z[s·branches·out + b·out + j]: the branch sums, branch-major per sample (the engine's layout). */
  z: Float32Array;
  /** Σ_b z per sample and neuron, and Σ of their squares. */
  plain: { zsum: Float64Array; zz: number };
  candidates: { f: number; q: number; mult: number; on: number }[];
}

/** Σ_i x_i W_ij per sample and neuron of a layer's inputs (float32, [n × inFeatures]) on the engine, and Σ of their squares. */
function columnSums(model: LayerModel, li: number, x: Float32Array, n: number): { zsum: Float64Array; zz: number } {
  const l = model.layers[li]!;
  const sums: DenseLayer = { ...l, bias: new Float32Array(l.outFeatures), activation: { kind: 'none' }, dendrites: undefined };
  const one: LayerModel = { ...model, input: { ...model.input, features: l.inFeatures }, layers: [sums] };
  const pre = engineForward(one, null, x, { limit: n }).somaInputs[0]!;
  const zsum = Float64Array.from(pre);
  let zz = 0;
  for (let k = 0; k < zsum.length; k++) zz += zsum[k]! ** 2;
  return { zsum, zz };
}

/** A dendritic layer's branch sums z ([n × branches × outFeatures], from the engine): Σ_b z, and the candidates. */
function branchCache(l: DenseLayer, z: Float32Array, n: number, multipliers: readonly number[], uOn: number): BranchCache {
  const m = l.outFeatures;
  const nb = l.dendrites!.count;
  const zsum = new Float64Array(n * m);
  let zz = 0;
  for (let s = 0; s < n; s++) {
    for (let j = 0; j < m; j++) {
      let t = 0;
      for (let b = 0, o = s * nb * m + j; b < nb; b++, o += m) t += z[o]!;
      zsum[s * m + j] = t;
      zz += t * t;
    }
  }
  return { z, plain: { zsum, zz }, candidates: candidates(z, n, m, nb, multipliers, uOn) };
}

/**
 * Candidate full scales from the non-zero |z| (a strided sample of at most 2^18 of them, taken sample by sample,
 * neuron by neuron, branch by branch; the max exactly). z: [n × branches × outFeatures], branch-major per sample.
 */
function candidates(z: Float32Array, n: number, m: number, nb: number, multipliers: readonly number[] = MULTIPLIERS, uOn = Infinity): { f: number; q: number; mult: number; on: number }[] {
  let nonzero = 0;
  let max = 0;
  for (let i = 0; i < z.length; i++) {
    const v = Math.abs(z[i]!);
    if (v > 0 && Number.isFinite(v)) {
      nonzero++;
      if (v > max) max = v;
    }
  }
  if (nonzero === 0) return [{ f: 1, q: 1, mult: 1, on: 0 }];
  const stride = Math.max(1, Math.ceil(nonzero / 262144));
  const sample = new Float64Array(Math.ceil(nonzero / stride));
  let k = 0;
  let seen = 0;
  for (let s = 0; s < n; s++) {
    for (let j = 0; j < m; j++) {
      for (let b = 0, i = s * nb * m + j; b < nb; b++, i += m) {
        const v = Math.abs(z[i]!);
        if (!(v > 0 && Number.isFinite(v))) continue;
        if (seen++ % stride === 0) sample[k++] = v;
      }
    }
  }
  const sorted = sample.subarray(0, k).sort();
  const out: { f: number; q: number; mult: number; on: number }[] = [];
  const quantile = (q: number) => (q === 1 ? max : sorted[Math.min(k - 1, Math.max(0, Math.ceil(q * k) - 1))]!);
  // The share of the non-zero signals at or above |u| = uOn (the device's ON region) for full scale f.
  const onShare = (f: number) => {
    const t = uOn * f;
    let lo = 0;
    let hi = k;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (sorted[mid]! < t) lo = mid + 1;
      else hi = mid;
    }
    return (k - lo) / k;
  };
  const add = (f: number, q: number, mult: number) => out.push({ f, q, mult, on: onShare(f) });
  for (const q of QUANTILES) for (const mult of multipliers) add(quantile(q) * mult, q, mult);
  // Two small full scales: nearly every branch signal at or beyond full scale, the device's most conducting range
  // (close to the network without dendrites where the device is ON there).
  for (const q of NEAR_ON) add(quantile(q), q, 1);
  // Full scales that put the q-quantile of the signals at the ON point: 1 − q of them switch the devices ON.
  if (Number.isFinite(uOn) && uOn > 0) for (const q of ON_QUANTILES) add(quantile(q) / uOn, q, 1 / uOn);
  // Drop near-duplicates (within 5 % of the last kept), keeping the first of each.
  out.sort((a, b) => a.f - b.f);
  const kept: typeof out = [];
  for (const c of out) if (kept.length === 0 || c.f > kept[kept.length - 1]!.f * 1.05) kept.push(c);
  return kept;
}

/** The 99.9th percentile (nearest rank) of |v| over its finite values; 0 when there are none. */
export function percentileAbs(v: ArrayLike<number>, q = 0.999): number {
  const a = new Float32Array(v.length);
  let k = 0;
  for (let i = 0; i < v.length; i++) {
    const x = Math.abs(v[i]!);
    if (Number.isFinite(x)) a[k++] = x;
  }
  if (k === 0) return 0;
  return kthSmallest(a.subarray(0, k), Math.min(k - 1, Math.max(0, Math.ceil(q * k) - 1)));
}

/** The r-th smallest of a (0-based, no NaN), as a sort would place it; reorders a (quickselect, median of three). */
function kthSmallest(a: Float32Array, r: number): number {
  let lo = 0;
  let hi = a.length - 1;
  while (hi > lo) {
    const mid = (lo + hi) >> 1;
    // The median of a[lo], a[mid], a[hi] as the pivot.
    const x = a[lo]!, y = a[mid]!, z = a[hi]!;
    const pivot = x < y ? (y < z ? y : x < z ? z : x) : (x < z ? x : y < z ? z : y);
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i]! < pivot) i++;
      while (a[j]! > pivot) j--;
      if (i <= j) {
        const t = a[i]!;
        a[i] = a[j]!;
        a[j] = t;
        i++;
        j--;
      }
    }
    // a[lo..j] <= pivot <= a[i..hi], and every element strictly between j and i equals the pivot.
    if (r <= j) hi = j;
    else if (r >= i) lo = i;
    else return a[r]!;
  }
  return a[r]!;
}

/**
 * A layer's soma output full scale for its soma inputs `pre` (samples × outFeatures): the output its somas give
 * at the 99.9th percentile of their own |input| (either sign), where a soma draws its rated current. At least 1e-12.
 */
export function ownSomaScale(l: DenseLayer, pre: ArrayLike<number>): number {
  const s = somaMagnitude(somaOf(l), l, percentileAbs(pre));
  return Number.isFinite(s) ? Math.max(s, 1e-12) : 1e-12;
}

/**
 * The soma energy of a layer on its soma inputs `pre`, in units of one soma at its rated current for one
 * inference, its somas driven to their own full scale (ownSomaScale): Σ min(|soma(pre)|, S) / S. The runtime's
 * soma energy (native/src/network.cc) is this times soma.voltage · soma.onCurrent · soma.time.
 */
export function fairSomaEnergy(l: DenseLayer, pre: ArrayLike<number>): number {
  const full = ownSomaScale(l, pre);
  const soma = somaOf(l);
  let e = 0;
  for (let i = 0; i < pre.length; i++) {
    const o = Math.abs(somaOutput(soma, l.activation, pre[i]!));
    if (Number.isFinite(o)) e += Math.min(o, full) / full;
  }
  return e;
}

interface BranchStats {
  absZ: number;
  absY: number;
  nonzero: number;
  on: number;
}

/**
 * engineForward with, per dendritic layer, Σ|z| and Σ|y| over its dendrites and its non-zero and ON-state branch
 * signals (a rectified negative signal counts as neither).
 */
function forwardWithStats(model: LayerModel, kernel: DendriteKernel, x: Float32Array, n: number) {
  const layers = model.layers;
  const fwd = engineForward(model, kernel.device, x, { limit: n });
  const dev = kernel.device;
  const onAt = onPoint(dev);
  const stats: (BranchStats | null)[] = layers.map((l, li) => {
    const z = fwd.branch[li];
    if (!l.dendrites || !z) return null;
    const st = { absZ: 0, absY: 0, nonzero: 0, on: 0 };
    const f = l.dendrites.fullScale;
    for (let k = 0; k < z.length; k++) {
      const v = z[k]!;
      if (v === 0) continue;
      st.absZ += Math.abs(v);
      st.absY += Math.abs(kernel.out(v, f));
      if (v < 0 && dev.rectify) continue;
      st.nonzero++;
      if (Math.min(kernel.a * Math.abs(v / f), kernel.vMax) >= onAt) st.on++;
    }
    return st;
  });
  return {
    outputs: fwd.outputs,
    somaEnergy: Float64Array.from(layers, (l, li) => fairSomaEnergy(l, fwd.somaInputs[li]!)),
    dendritePower: fwd.dendritePower,
    stats,
  };
}

/** |soma(±B)| at most: the magnitude a layer's output can reach for soma inputs within ±B. */
function somaMagnitude(soma: Soma, l: DenseLayer, bound: number): number {
  return Math.max(Math.abs(somaOutput(soma, l.activation, bound)), Math.abs(somaOutput(soma, l.activation, -bound)));
}

/**
 * Per layer, the soma output full scale of the energy model (the output at which a soma draws soma.onCurrent and
 * beyond which it saturates): ownSomaScale of the network itself — with its dendrites when it has them (`device`)
 * — on at most `limit` samples of x drawn across the file; without x a bound from the weights (inputs within
 * ±1). At least 1e-12.
 */
export function somaFullScales(model: LayerModel, x?: Float32Array, limit = 1000, device: DendriteDevice | null = null): number[] {
  if (x) {
    sampleCount(model, x);
    const drawn = sampleRows(x, model.input.features, limit);
    const dendritic = model.layers.some((l) => l.dendrites);
    const f = engineForward(model, dendritic ? device : null, drawn.x, { bypass: !dendritic || !device });
    return model.layers.map((l, li) => ownSomaScale(l, f.somaInputs[li]!));
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
