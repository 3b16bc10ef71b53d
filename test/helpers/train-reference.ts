/**
 * The training engine's network read literally in float64, sample by sample and neuron by neuron, from the one
 * TypeScript statement of the model (common/dendrite.ts: dendriteTransfer, somaOutput): what the gradient tests
 * differentiate by central differences. Knows the engine's deterministic hardware effects (stuck weights, ADC
 * clipping, the DAC), the activity penalty and the logit scale; nothing random (ε may be given).
 */
import { dendriteTransfer, somaOutput, type DendriteDevice, type Soma } from '../../common/dendrite.js';
import type { Activation } from '../../compiler/ir/layers.js';
import { NativeActivation, NativeDendriteKind, type NativeTrainLayer, type NativeTrainNetwork } from '../../native/index.js';

export interface Params64 {
  weight: Float64Array[];
  bias: Float64Array[];
}

export function params64(net: NativeTrainNetwork): Params64 {
  return { weight: net.layers.map((l) => Float64Array.from(l.weight)), bias: net.layers.map((l) => Float64Array.from(l.bias)) };
}

/** The layer's dendrite as common/dendrite.ts's device (voltage/onVoltage = ratio, α = 50n/(1 − n)). */
export function deviceOf(l: NativeTrainLayer): DendriteDevice | null {
  const d = l.dendrites;
  if (!d) return null;
  const alpha = d.alpha ?? 0;
  return {
    kind: d.kind === NativeDendriteKind.ThresholdLinear ? 'threshold-linear' : 'exponential',
    nonlinearity: alpha / (50 + alpha),
    onOffRatio: d.onOffRatio ?? 1,
    voltage: d.ratio ?? 1,
    onVoltage: 1,
    threshold: d.threshold ?? 1,
    rectify: d.rectify ?? false,
    variation: 0,
    onCurrent: 1,
    time: 1,
  };
}

function somaOf(l: NativeTrainLayer): { soma: Soma; activation: Activation } {
  const a = l.alpha ?? 0;
  const b = l.beta ?? 0;
  switch (l.activation) {
    case NativeActivation.ThresholdSoma: return { soma: { kind: 'threshold', theta: a, scale: b }, activation: { kind: 'none' } };
    case NativeActivation.Relu: return { soma: { kind: 'activation' }, activation: { kind: 'relu' } };
    case NativeActivation.LeakyRelu: return { soma: { kind: 'activation' }, activation: { kind: 'leakyrelu', alpha: a } };
    case NativeActivation.Sigmoid: return { soma: { kind: 'activation' }, activation: { kind: 'sigmoid' } };
    case NativeActivation.Tanh: return { soma: { kind: 'activation' }, activation: { kind: 'tanh' } };
    case NativeActivation.Clip: return { soma: { kind: 'activation' }, activation: { kind: 'clip', min: a, max: b } };
    default: return { soma: { kind: 'activation' }, activation: { kind: 'none' } };
  }
}

/** The simulator's DAC on one row (periphery.cc dacRow), back in input units: s·round(x/s·q)/q, half away from 0. */
export function dacRow(x: number[], bits: number): number[] {
  const s = Math.max(...x.map(Math.abs));
  if (s === 0) return x.map(() => 0);
  const q = 2 ** (bits - 1) - 1;
  return x.map((v) => {
    const t = Math.min(q, Math.max(-q, (v / s) * q));
    return (Math.sign(t) * Math.floor(Math.abs(t) + 0.5) * s) / q;
  });
}

export interface ReferenceResult {
  /** Mean over samples of cross-entropy (of logitScale × outputs) + penalty. */
  loss: number;
  /** Per layer [samples × out]. */
  outputs: number[][];
}

/** eps: per layer [count × out] (branch-major) or null. */
export function referenceForward(net: NativeTrainNetwork, p: Params64, x: Float32Array, labels: Int32Array, eps?: (ArrayLike<number> | null)[]): ReferenceResult {
  const inF = net.layers[0]!.inFeatures;
  const n = x.length / inF;
  const T = net.logitScale ?? 1;
  const lambdaSoma = net.penalty?.soma ?? 0;
  const lambdaBranch = net.penalty?.branch ?? 0;
  const outputs: number[][] = net.layers.map(() => []);
  let total = 0;
  for (let s = 0; s < n; s++) {
    let a = Array.from(x.subarray(s * inF, (s + 1) * inF));
    let penalty = 0;
    net.layers.forEach((l, li) => {
      const hw = l.hardware ?? {};
      if (hw.dacBits) a = dacRow(a, hw.dacBits);
      const w = (i: number, j: number) => {
        const k = net.layout === 'out-in' ? j * l.inFeatures + i : i * l.outFeatures + j;
        return hw.stuck && hw.stuck[k] ? hw.stuckValue![k]! : p.weight[li]![k]!;
      };
      const clip = (z: number) => (hw.adcClip ? Math.min(hw.adcClip, Math.max(-hw.adcClip, z)) : z);
      const { soma, activation } = somaOf(l);
      const d = l.dendrites;
      const dev = deviceOf(l);
      const next: number[] = [];
      for (let j = 0; j < l.outFeatures; j++) {
        let pre: number;
        if (!d) {
          let z = 0;
          for (let i = 0; i < l.inFeatures; i++) z += a[i]! * w(i, j);
          pre = clip(z) + p.bias[li]![j]!;
        } else {
          const F = d.fullScale ?? 1;
          pre = (d.biasScale ?? 1) * p.bias[li]![j]!;
          for (let b = 0; b < d.count; b++) {
            let z = 0;
            for (let i = 0; i < l.inFeatures; i++) if (d.branchOf[i] === b) z += a[i]! * w(i, j);
            z = clip(z);
            const e = eps?.[li] ? eps[li]![b * l.outFeatures + j]! : 1;
            pre += F * e * dendriteTransfer(dev!, z / F);
            if (!(dev!.rectify && z < 0)) penalty += lambdaBranch * Math.abs(z / F);
          }
        }
        const o = somaOutput(soma, activation, pre);
        if (li + 1 < net.layers.length) penalty += lambdaSoma * Math.abs(o);
        next.push(o);
      }
      outputs[li]!.push(...next);
      a = next;
    });
    const z = a.map((v) => T * v);
    const mx = Math.max(...z);
    const lse = mx + Math.log(z.reduce((acc, v) => acc + Math.exp(v - mx), 0));
    total += lse - z[labels[s]!]! + penalty;
  }
  return { loss: total / n, outputs };
}

/**
 * Central differences of the reference loss for every weight and bias (float64, step h), skipping a parameter
 * whose one-sided differences disagree by more than `kink` (a kink or jump of the model inside ±h: no derivative
 * to compare). Returns the differences and the number skipped.
 */
export function finiteDifferences(net: NativeTrainNetwork, x: Float32Array, labels: Int32Array, opts: { h?: number; kink?: number; eps?: (ArrayLike<number> | null)[] } = {}) {
  const h = opts.h ?? 1e-6;
  const p = params64(net);
  const base = referenceForward(net, p, x, labels, opts.eps).loss;
  let skipped = 0;
  const diff = (arr: Float64Array, k: number): number => {
    const v = arr[k]!;
    arr[k] = v + h;
    const up = referenceForward(net, p, x, labels, opts.eps).loss;
    arr[k] = v - h;
    const down = referenceForward(net, p, x, labels, opts.eps).loss;
    arr[k] = v;
    const right = (up - base) / h;
    const left = (base - down) / h;
    if (Math.abs(right - left) > (opts.kink ?? 1e-3) * Math.max(1, Math.abs(right) + Math.abs(left))) {
      skipped++;
      return NaN;
    }
    return (up - down) / (2 * h);
  };
  const weight = p.weight.map((w) => Float64Array.from(w, (_, k) => diff(w, k)));
  const bias = p.bias.map((b) => Float64Array.from(b, (_, k) => diff(b, k)));
  return { loss: base, weight, bias, skipped };
}
