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
import { DendriteKernel, LayerRunner, agreement, axpy, argmaxRows, dendriticForward, sampleCount, sampleRows, somaOf } from './dendritic-forward.js';

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
  const ref = dendriticForward(model, device, x, { bypass: true, limit: n, somaInputs: true });
  const outF = layers[L - 1]!.outFeatures;
  const refArg = argmaxRows(ref.outputs, n, outF);
  const refLayerEnergy = layers.map((l, li) => fairSomaEnergy(l, ref.somaInputs![li]!));
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
    if (!p) plainSums.set(li, (p = columnSums(layers[li]!, ref.layerInputs[li]!, n)));
    return p;
  };

  /**
   * One greedy search, layer by layer; the k-th of the K layers to calibrate may lose `share[k]` of the
   * tolerance. Returns the working layers and the choices.
   */
  const search = (share: (k: number) => number) => {
    const work: DenseLayer[] = layers.map((l) => (l.dendrites ? { ...l, dendrites: { ...l.dendrites } } : { ...l }));
    const chosen = new Map<number, { q: number; mult: number; candidates: number }>();
    // Inputs of the current layer with the earlier layers fixed (float64, [n × inFeatures]), their soma sums.
    let cur: Float64Array | null = null;
    const fixedSoma = new Float64Array(L);
    let li = 0;
    const advance = (upto: number) => {
      if (!cur) {
        cur = new Float64Array(n * layers[0]!.inFeatures);
        for (let i = 0; i < cur.length; i++) cur[i] = x[i]!;
      }
      for (; li < upto; li++) {
        const l = work[li]!;
        const r = new LayerRunner(l, kernel, !!l.dendrites && l.dendrites.calibrated);
        const next: Float64Array = new Float64Array(n * l.outFeatures);
        const pre = new Float32Array(n * l.outFeatures);
        for (let s = 0; s < n; s++) {
          r.run(cur, s * l.inFeatures, next, s * l.outFeatures);
          pre.set(r.pre, s * l.outFeatures);
        }
        fixedSoma[li] = fairSomaEnergy(l, pre);
        cur = next;
      }
      return cur;
    };
    let firstOk = true;
    todo.forEach((target, k) => {
      const l = work[target]!;
      const d = l.dendrites!;
      const floor = refAcc - (tolerance / 100) * share(k);
      let results: Scored[];
      if (k === 0 && firstResults) {
        results = firstResults;
        if (target > 0) advance(target); // the fixed layers' soma sums
      } else {
        const cache = branchCache(l, advance(target), n, multipliers, mode === 'nonlinear' ? uOn : Infinity);
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
    const nb = l.dendrites!.count;
    const { z } = cache;
    const { zsum, zz } = plainSumsOf(target);
    // Later layers while this one is tuned: already-calibrated ones with their dendrites; the dendritic layers
    // still to calibrate without their devices but with the bias scaled by this layer's κ (the gain they will
    // take on: their κ is fitted against the network without dendrites too); point-neuron layers as they are.
    const later = work.slice(target + 1).map((ll) => new LayerRunner(ll, kernel, !!ll.dendrites && ll.dendrites.calibrated));
    const scaled = later.map((r) => (r.layer.dendrites && !r.dendritic ? new Float32Array(r.layer.bias.length) : null));
    later.forEach((r, o) => { if (scaled[o]) r.bias = scaled[o]!; });
    const ybuf = new Float64Array(n * m);
    const next = new Float64Array(n * m);
    const bufs = later.map((r) => new Float64Array(r.layer.outFeatures));
    const outs = new Float64Array(n * outF);
    const soma = somaOf(l);
    const bias = l.bias;
    const ownPre = new Float32Array(n * m);
    const laterPre = later.map((r) => new Float32Array(n * r.layer.outFeatures));
    const results: Scored[] = [];
    for (const c of cache.candidates) {
      const f = c.f;
      let yz = 0;
      for (let s = 0, o = 0; s < n * m; s++, o += nb) {
        const y = kernel.branchSum(z, o, 1, nb, f);
        ybuf[s] = y;
        yz += y * zsum[s]!;
      }
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
      later.forEach((r, o) => {
        r.somaSum = 0;
        const sb = scaled[o];
        if (sb) for (let j = 0; j < sb.length; j++) sb[j] = kappa * r.layer.bias[j]!;
      });
      if (later.length === 0) outs.set(next);
      else {
        for (let s = 0; s < n; s++) {
          let xin = next;
          let xo = s * m;
          for (let o = 0; o < later.length; o++) {
            const last = o === later.length - 1;
            const r = later[o]!;
            r.run(xin, xo, last ? outs : bufs[o]!, last ? s * outF : 0);
            laterPre[o]!.set(r.pre, s * r.layer.outFeatures);
            xin = bufs[o]!;
            xo = 0;
          }
        }
      }
      later.forEach((r, o) => { energy[target + 1 + o] = fairSomaEnergy(r.layer, laterPre[o]!); });
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
  // The report: the final network by the reference forward itself.
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
  /** z[(s·out + j)·branches + b]: the branch sums, neuron-major. */
  z: Float64Array;
  /** Σ_b z per sample and neuron, and Σ of their squares. */
  plain: { zsum: Float64Array; zz: number };
  candidates: { f: number; q: number; mult: number; on: number }[];
}

/** Σ_i x_i W_ij per sample and neuron of a layer's inputs (float32, [n × inFeatures]), and Σ of their squares. */
function columnSums(l: DenseLayer, x: Float32Array, n: number): { zsum: Float64Array; zz: number } {
  const m = l.outFeatures;
  const zsum = new Float64Array(n * m);
  const w = l.weight;
  let zz = 0;
  for (let s = 0; s < n; s++) {
    const xo = s * l.inFeatures;
    const o = s * m;
    for (let i = 0; i < l.inFeatures; i++) {
      const xi = x[xo + i]!;
      if (xi !== 0) axpy(zsum, o, xi, w, i * m, m);
    }
    for (let j = 0; j < m; j++) zz += zsum[o + j]! ** 2;
  }
  return { zsum, zz };
}

/** A dendritic layer's branch sums on its inputs x ([n × inFeatures], float64), summed as LayerRunner sums them. */
function branchCache(l: DenseLayer, x: Float64Array, n: number, multipliers: readonly number[], uOn: number): BranchCache {
  const m = l.outFeatures;
  const nb = l.dendrites!.count;
  const z = new Float64Array(n * m * nb);
  const zsum = new Float64Array(n * m);
  let zz = 0;
  // In LayerRunner's order (input by input), so the candidates see the forward's exact branch sums.
  const zb = new Float64Array(nb * m);
  const branchOf = l.dendrites!.branchOf;
  const w = l.weight;
  for (let s = 0; s < n; s++) {
    zb.fill(0);
    const xo = s * l.inFeatures;
    for (let i = 0; i < l.inFeatures; i++) {
      const xi = x[xo + i]!;
      if (xi !== 0) axpy(zb, branchOf[i]! * m, xi, w, i * m, m);
    }
    for (let j = 0; j < m; j++) {
      const o = (s * m + j) * nb;
      let t = 0;
      for (let b = 0; b < nb; b++) t += z[o + b] = zb[b * m + j]!;
      zsum[s * m + j] = t;
      zz += t * t;
    }
  }
  return { z, plain: { zsum, zz }, candidates: candidates(z, multipliers, uOn) };
}

/** Candidate full scales from the non-zero |z| (a strided sample of at most 2^18 of them; the max exactly). */
function candidates(z: Float64Array, multipliers: readonly number[] = MULTIPLIERS, uOn = Infinity): { f: number; q: number; mult: number; on: number }[] {
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
  for (let i = 0, seen = 0; i < z.length; i++) {
    const v = Math.abs(z[i]!);
    if (!(v > 0 && Number.isFinite(v))) continue;
    if (seen++ % stride === 0) sample[k++] = v;
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
  const s = a.subarray(0, k).sort();
  return s[Math.min(k - 1, Math.max(0, Math.ceil(q * k) - 1))]!;
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
 * dendriticForward's computation (the same LayerRunners, sample by sample) with, per dendritic layer, Σ|z| and
 * Σ|y| over its dendrites and its non-zero and ON-state branch signals (a rectified negative signal counts as neither).
 */
function forwardWithStats(model: LayerModel, kernel: DendriteKernel, x: Float32Array, n: number) {
  const layers = model.layers;
  const runners = layers.map((l) => new LayerRunner(l, kernel, !!l.dendrites));
  const stats: (BranchStats | null)[] = layers.map((l) => (l.dendrites ? { absZ: 0, absY: 0, nonzero: 0, on: 0 } : null));
  const pres = layers.map((l) => new Float32Array(n * l.outFeatures));
  const last = layers[layers.length - 1]!;
  const outputs = new Float32Array(n * last.outFeatures);
  const bufs = layers.map((l) => new Float64Array(l.inFeatures));
  const out = new Float64Array(last.outFeatures);
  const f0 = model.input.features;
  const dev = kernel.device;
  const onAt = onPoint(dev);
  for (let s = 0; s < n; s++) {
    const x0 = bufs[0]!;
    for (let i = 0; i < f0; i++) x0[i] = x[s * f0 + i]!;
    for (let li = 0; li < layers.length; li++) {
      const r = runners[li]!;
      r.run(bufs[li]!, 0, li + 1 < layers.length ? bufs[li + 1]! : out, 0);
      pres[li]!.set(r.pre, s * layers[li]!.outFeatures);
      const st = stats[li];
      if (!st) continue;
      const f = r.fullScale;
      for (let k = 0; k < r.z.length; k++) {
        const v = r.z[k]!;
        if (v === 0) continue;
        st.absZ += Math.abs(v);
        st.absY += Math.abs(kernel.out(v, f));
        if (v < 0 && dev.rectify) continue;
        st.nonzero++;
        if (Math.min(kernel.a * Math.abs(v / f), kernel.vMax) >= onAt) st.on++;
      }
    }
    outputs.set(out, s * out.length);
  }
  return {
    outputs,
    somaSum: Float64Array.from(runners, (r) => r.somaSum),
    somaEnergy: Float64Array.from(layers, (l, li) => fairSomaEnergy(l, pres[li]!)),
    dendritePower: Float64Array.from(runners, (r) => r.power),
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
    const f = dendriticForward(model, dendritic ? device : null, drawn.x, { bypass: !dendritic || !device, somaInputs: true });
    return model.layers.map((l, li) => ownSomaScale(l, f.somaInputs![li]!));
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
