/**
 * Pass: LayerModel → a branch plan: which dendritic branch each input of each layer feeds (issue 4;
 * the simulator does not model dendrites yet, so nothing downstream consumes the plan so far).
 * Every neuron of a layer uses the same split, as in Li et al. 2020; a branch is a segment of each
 * neuron's crossbar column that drives one dendrite device.
 *
 *   contiguous  blocks of consecutive inputs
 *   spatial     from the input's [C, H, W] shape: colour channel × vertical strips of columns, the outer
 *               strips floor(W/S) wide and the rest in the middle (3 × 32 × 32 in 9 branches: columns
 *               1–10, 11–22, 23–32 of each channel, 320/384/320 inputs, the paper's split); first layer only
 *   balanced    equal weight mass Σ_j |w_ij| per branch (longest-processing-time greedy)
 *   correlated  inputs that are active together on calibration data share a branch (clusters of inputs
 *               by the correlation of their activity, equal sizes)
 */
import { InputError } from '../../common/errors.js';
import type { LayerModel } from '../ir/layers.js';

export type BranchStrategy = 'contiguous' | 'spatial' | 'balanced' | 'correlated';

export interface BranchPlan {
  /** Branches of each layer. */
  count: number;
  /** Branch of each input, in [0, count). */
  branchOf: Int32Array;
}

export interface BranchOptions {
  /** Branches per layer (1 = no dendrites on that layer). */
  branches: number[];
  strategy: BranchStrategy;
  /** Per layer, row-major [samples × inFeatures] inputs from calibration data (needed by 'correlated'). */
  activity?: { samples: number; inputs: Float32Array[] };
}

export function assignBranches(model: LayerModel, options: BranchOptions): BranchPlan[] {
  if (options.branches.length !== model.layers.length) {
    throw new InputError(`--branches gives ${options.branches.length} numbers for a network of ${model.layers.length} layers`);
  }
  return model.layers.map((layer, li) => {
    const n = layer.inFeatures;
    const count = options.branches[li]!;
    if (!Number.isInteger(count) || count < 1 || count > n) {
      throw new InputError(`layer ${li} has ${n} inputs; its branch count must be an integer from 1 to ${n} (got ${count})`);
    }
    if (count === 1) return { count, branchOf: new Int32Array(n) };
    switch (options.strategy) {
      case 'contiguous':
        return { count, branchOf: contiguous(n, count) };
      case 'spatial':
        return { count, branchOf: li === 0 ? spatial(model, count) : contiguous(n, count) };
      case 'balanced':
        return { count, branchOf: balanced(layer.weight, n, layer.outFeatures, count) };
      case 'correlated': {
        const a = options.activity;
        if (!a) throw new InputError("branch strategy 'correlated' needs calibration data (--calibrate X.npy)");
        return { count, branchOf: correlated(a.inputs[li]!, a.samples, n, count) };
      }
      default:
        throw new InputError(`unknown branch strategy '${String(options.strategy)}' (contiguous, spatial, balanced, correlated)`);
    }
  });
}

function contiguous(n: number, count: number): Int32Array {
  return Int32Array.from({ length: n }, (_, i) => Math.floor((i * count) / n));
}

function spatial(model: LayerModel, count: number): Int32Array {
  const dims = model.input.shape.slice(1);
  if (dims.length !== 3 || dims.some((d) => typeof d !== 'number')) {
    throw new InputError(`branch strategy 'spatial' needs an input of shape [batch, C, H, W] (the model's input is [${model.input.shape.join(', ')}])`);
  }
  const [c, h, w] = dims as [number, number, number];
  if (count % c !== 0 || count / c > w) throw new InputError(`branch strategy 'spatial' splits each of the ${c} channels into strips: the first layer's branch count must be a multiple of ${c} (got ${count})`);
  const strips = count / c;
  const edge = Math.floor(w / strips);
  // Strip widths: `edge` for the outer strips; the middle one (two, for an even count) take the remainder.
  const widths = new Array<number>(strips).fill(edge);
  const middles = strips % 2 === 1 ? [(strips - 1) / 2] : [strips / 2 - 1, strips / 2];
  for (let k = 0, rest = w - edge * strips; rest > 0; k++, rest--) widths[middles[k % middles.length]!]! += 1;
  const stripOf = new Int32Array(w);
  let col = 0;
  widths.forEach((width, s) => {
    for (let x = 0; x < width; x++) stripOf[col++] = s;
  });
  const out = new Int32Array(c * h * w);
  for (let ch = 0; ch < c; ch++) for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) out[(ch * h + y) * w + x] = ch * strips + stripOf[x]!;
  return out;
}

function balanced(weight: Float32Array, n: number, m: number, count: number): Int32Array {
  const mass = Float64Array.from({ length: n }, (_, i) => {
    let s = 0;
    for (let j = 0; j < m; j++) s += Math.abs(weight[i * m + j]!);
    return s;
  });
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => mass[b]! - mass[a]! || a - b);
  const load = new Float64Array(count);
  const out = new Int32Array(n);
  for (const i of order) {
    let best = 0;
    for (let b = 1; b < count; b++) if (load[b]! < load[best]!) best = b;
    out[i] = best;
    load[best]! += mass[i]!;
  }
  return out;
}

/**
 * Equal-size clusters of inputs by activity correlation: standardise each input over the samples, seed
 * `count` centres by farthest-point selection, then alternate capacity-limited assignment (most
 * correlated free centre first) and centre updates, 8 rounds. Inputs that never vary correlate with
 * nothing and fill the remaining places.
 */
function correlated(x: Float32Array, samples: number, n: number, count: number): Int32Array {
  const z = new Float32Array(n * samples); // z[i][s], unit norm per input
  for (let i = 0; i < n; i++) {
    let mean = 0;
    for (let s = 0; s < samples; s++) mean += x[s * n + i]! / samples;
    let norm = 0;
    for (let s = 0; s < samples; s++) norm += (x[s * n + i]! - mean) ** 2;
    const inv = norm > 0 ? 1 / Math.sqrt(norm) : 0;
    for (let s = 0; s < samples; s++) z[i * samples + s] = (x[s * n + i]! - mean) * inv;
  }
  const dot = (a: Float32Array, ao: number, b: Float32Array, bo: number) => {
    let d = 0;
    for (let s = 0; s < samples; s++) d += a[ao + s]! * b[bo + s]!;
    return d;
  };
  const centres = new Float32Array(count * samples);
  // Farthest-point seeding from the input with the most variance-carrying neighbours (input 0 if all are flat).
  const chosen: number[] = [];
  let first = 0;
  for (let i = 0; i < n; i++) if (dot(z, i * samples, z, i * samples) > 0) { first = i; break; }
  chosen.push(first);
  const closest = Float64Array.from({ length: n }, (_, i) => dot(z, i * samples, z, first * samples));
  while (chosen.length < count) {
    let next = -1;
    for (let i = 0; i < n; i++) if (!chosen.includes(i) && (next < 0 || closest[i]! < closest[next]!)) next = i;
    chosen.push(next);
    for (let i = 0; i < n; i++) closest[i] = Math.max(closest[i]!, dot(z, i * samples, z, next * samples));
  }
  chosen.forEach((i, b) => centres.set(z.subarray(i * samples, (i + 1) * samples), b * samples));
  // Equal sizes: the first n mod count branches take one input more.
  const capacity = Int32Array.from({ length: count }, (_, b) => Math.floor(n / count) + (b < n % count ? 1 : 0));
  let out = new Int32Array(n);
  for (let round = 0; round < 8; round++) {
    const sim = new Float64Array(n * count);
    for (let i = 0; i < n; i++) for (let b = 0; b < count; b++) sim[i * count + b] = dot(z, i * samples, centres, b * samples);
    // Assign the most decided inputs first, each to its most correlated centre with room left.
    const best = Float64Array.from({ length: n }, (_, i) => Math.max(...sim.subarray(i * count, (i + 1) * count)));
    const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => best[b]! - best[a]! || a - b);
    const size = new Int32Array(count);
    const next = new Int32Array(n);
    for (const i of order) {
      let pick = -1;
      for (let b = 0; b < count; b++) if (size[b]! < capacity[b]! && (pick < 0 || sim[i * count + b]! > sim[i * count + pick]!)) pick = b;
      next[i] = pick;
      size[pick]!++;
    }
    out = next;
    centres.fill(0);
    for (let i = 0; i < n; i++) for (let s = 0; s < samples; s++) centres[out[i]! * samples + s]! += z[i * samples + s]!;
  }
  return out;
}
