/**
 * The simulator's dendrites (native/src/dendrite.h, network.cc) against the model stated in
 * common/dendrite.ts, on hand-built programs: per-branch accumulation, the transfer, the bias scale, the
 * threshold soma, bypass, device variation, the dendrite and soma energy, and refusals of bad fields.
 */
import { describe, expect, it } from 'vitest';
import { native, NativeActivation, NativeDendriteKind, NativeHead, type NativeDendrites, type NativeProgram } from '../../native/index.js';
import { alphaOf, dendritePower, dendriteTransfer, type DendriteDevice } from '../../common/dendrite.js';
import { Random } from '../../common/random.js';

const IN = 6;
const OUT = 3;
/** Branch of each input: 0, 1, 0, 1, 2, 2 (three branches, interleaved so tiles gather). */
const BRANCH = [0, 1, 0, 1, 2, 2];

const device: DendriteDevice = {
  kind: 'exponential', nonlinearity: 0.1, onOffRatio: 20, voltage: 4, onVoltage: 5, threshold: 0.5,
  rectify: false, variation: 0, onCurrent: 2e-6, time: 1e-5,
};

function dendritesOf(d: DendriteDevice, fullScale: number, biasScale: number, bypass = false): NativeDendrites {
  return {
    count: 3, kind: d.kind === 'exponential' ? NativeDendriteKind.Exponential : NativeDendriteKind.ThresholdLinear,
    alpha: alphaOf(d.nonlinearity), onOffRatio: d.onOffRatio, ratio: d.voltage / d.onVoltage, threshold: d.threshold,
    rectify: d.rectify, variation: d.variation, fullScale, biasScale, energyUnit: d.onVoltage * d.onCurrent * d.time, bypass,
  };
}

/** One array holding W (pairs on columns: G+ in column 2q, G− in 2q+1), one tile per branch. */
function program(weights: Float32Array, dendrites: NativeDendrites | undefined, opts: { activation?: NativeActivation; alpha?: number; beta?: number; seed?: number } = {}): NativeProgram {
  const g = new Float32Array(IN * 2 * OUT);
  for (let i = 0; i < IN; i++) {
    for (let j = 0; j < OUT; j++) {
      const w = weights[i * OUT + j]!;
      g[i * 2 * OUT + 2 * j] = Math.max(w, 0);
      g[i * 2 * OUT + 2 * j + 1] = Math.max(-w, 0);
    }
  }
  const tiles = [0, 1, 2].map((b) => {
    const inputs = BRANCH.flatMap((bb, i) => (bb === b ? [i] : []));
    return {
      array: 0, ...(dendrites ? { branch: b } : {}),
      inputIndex: Int32Array.from(inputs), rowPos: Int32Array.from(inputs), rowNeg: Int32Array.from(inputs),
      outputIndex: Int32Array.from([0, 1, 2]), colPos: Int32Array.from([0, 2, 4]), colNeg: Int32Array.from([1, 3, 5]),
      adcFullScale: 0,
    };
  });
  return {
    arrays: [{ rows: IN, cols: 2 * OUT, conductance: g }],
    layers: [{
      inFeatures: IN, outFeatures: OUT, vRead: 1, dacBits: 0, adcBits: 0, tiles,
      outScale: new Float32Array(OUT).fill(1), bias: Float32Array.from([0.3, -0.2, 0.1]),
      activation: opts.activation ?? NativeActivation.None, alpha: opts.alpha ?? 0, beta: opts.beta ?? 0, head: NativeHead.None,
      ...(dendrites ? { dendrites } : {}),
      soma: { fullScale: 2, energy: 5 * 1e-6 * 1e-5 },
    }],
    threads: 1,
    seed: opts.seed ?? 3,
  };
}

const rng = new Random(11);
const W = Float32Array.from({ length: IN * OUT }, () => rng.normal() * 0.5);
const X = Float32Array.from({ length: 8 * IN }, () => rng.normal());

/** The model of common/dendrite.ts, computed here. */
function expected(x: Float32Array, d: DendriteDevice, fullScale: number, biasScale: number, bypass: boolean) {
  const bias = [0.3, -0.2, 0.1];
  const n = x.length / IN;
  const out = new Float64Array(n * OUT);
  let power = 0;
  let soma = 0;
  for (let s = 0; s < n; s++) {
    for (let j = 0; j < OUT; j++) {
      let sum = (bypass ? 1 : biasScale) * bias[j]!;
      for (let b = 0; b < 3; b++) {
        let z = 0;
        for (let i = 0; i < IN; i++) if (BRANCH[i] === b) z += x[s * IN + i]! * W[i * OUT + j]!;
        if (bypass) sum += z;
        else {
          sum += fullScale * dendriteTransfer(d, z / fullScale);
          power += dendritePower(d, z / fullScale);
        }
      }
      const clipped = Math.max(-2, Math.min(2, sum)); // the soma saturates at its full scale (2)
      out[s * OUT + j] = clipped;
      soma += Math.abs(clipped) / 2;
    }
  }
  return { out, dendriteJ: power * d.onVoltage * d.onCurrent * d.time, somaJ: soma * 5 * 1e-6 * 1e-5 };
}

function run(p: NativeProgram, x: Float32Array) {
  const chip = new (native().Chip)(p);
  const stats = new Float64Array(3);
  const y = chip.runSync(x, x.length / IN, stats);
  chip.release();
  return { y, stats };
}

describe('native dendrites', () => {
  for (const [name, d] of [
    ['exponential', device],
    ['exponential, rectifying', { ...device, rectify: true }],
    ['threshold-linear', { ...device, kind: 'threshold-linear' as const, threshold: 0.3 }],
    ['a linear device (n = 0)', { ...device, nonlinearity: 0 }],
  ] as const) {
    it(`computes branch sums, the ${name} transfer and κ·bias as common/dendrite.ts states`, () => {
      const F = 0.8;
      const { y, stats } = run(program(W, dendritesOf(d, F, 0.4)), X);
      const e = expected(X, d, F, 0.4, false);
      for (let k = 0; k < y.length; k++) expect(y[k]).toBeCloseTo(e.out[k]!, 5);
      expect(stats[1]).toBeGreaterThan(0);
      expect(stats[1]! / e.dendriteJ).toBeCloseTo(1, 5);
      expect(stats[2]! / e.somaJ).toBeCloseTo(1, 5);
    });
  }

  it('bypass is the network without dendrite devices: plain sums, κ = 1, no dendrite energy', () => {
    const { y, stats } = run(program(W, dendritesOf(device, 0.8, 0.4, true)), X);
    const plain = run(program(W, undefined), X);
    const e = expected(X, device, 0.8, 0.4, true);
    for (let k = 0; k < y.length; k++) {
      expect(y[k]).toBeCloseTo(e.out[k]!, 5);
      expect(y[k]).toBeCloseTo(plain.y[k]!, 5);
    }
    expect(stats[1]).toBe(0);
    expect(stats[2]! / e.somaJ).toBeCloseTo(1, 5);
  });

  it('a rated device saturates: signals beyond its maxVoltage apply maxVoltage, and its energy stays within the rating', () => {
    const rated = { ...device, maxVoltage: 2 }; // a = 4/5, ceiling 2/5: branch signals beyond F/2 saturate
    const F = 0.8;
    const d = { ...dendritesOf(rated, F, 0.4), maxRatio: 2 / 5 };
    const { y, stats } = run(program(W, d), X);
    const e = expected(X, rated, F, 0.4, false);
    for (let k = 0; k < y.length; k++) expect(y[k]).toBeCloseTo(e.out[k]!, 5);
    expect(stats[1]! / e.dendriteJ).toBeCloseTo(1, 5);
    // 1000× larger inputs: every device at its ceiling, no more
    const big = run(program(W, d), X.map((v) => v * 1000));
    const ceiling = dendritePower({ ...device, voltage: 2, onVoltage: 5 }, 1);
    expect(big.stats[1]!).toBeLessThanOrEqual(8 * 3 * OUT * ceiling * rated.onVoltage * rated.onCurrent * rated.time * (1 + 1e-6)); // float kernel
    expect(big.stats[2]!).toBeLessThanOrEqual(8 * OUT * 5 * 1e-6 * 1e-5 * (1 + 1e-9));
  });

  it("applies the paper's threshold soma, beta · max(2σ(x/beta − θ) − 1, 0)", () => {
    const theta = 0.1;
    const scale = 1.5;
    const { y } = run(program(W, dendritesOf(device, 0.8, 0.4), { activation: NativeActivation.ThresholdSoma, alpha: theta, beta: scale }), X);
    const e = expected(X, device, 0.8, 0.4, false);
    for (let k = 0; k < y.length; k++) {
      const s = 2 / (1 + Math.exp(-(e.out[k]! / scale - theta))) - 1;
      expect(y[k]).toBeCloseTo(s > 0 ? scale * s : 0, 5);
    }
  });

  it('draws device-to-device variation once per chip from the seed', () => {
    const d = dendritesOf({ ...device, variation: 0.2 }, 0.8, 1);
    const a = run(program(W, d, { seed: 5 }), X).y;
    const b = run(program(W, d, { seed: 5 }), X).y;
    const c = run(program(W, d, { seed: 6 }), X).y;
    const none = run(program(W, dendritesOf(device, 0.8, 1), { seed: 5 }), X).y;
    expect(Array.from(a)).toEqual(Array.from(b));
    expect(Array.from(a)).not.toEqual(Array.from(c));
    expect(Array.from(a)).not.toEqual(Array.from(none));
  });

  it('refuses bad dendrite fields, naming them', () => {
    const good = dendritesOf(device, 0.8, 1);
    const bad = (patch: Partial<NativeDendrites>, tilePatch?: Record<string, unknown>) => () => {
      const p = program(W, { ...good, ...patch });
      if (tilePatch) Object.assign(p.layers[0]!.tiles[1]!, tilePatch);
      return new (native().Chip)(p);
    };
    expect(bad({ count: 0 })).toThrow(/layers\[0\]\.dendrites\.count = 0 must be in \[1, 6\]/);
    expect(bad({ fullScale: 0 })).toThrow(/dendrites\.fullScale = 0 must be > 0/);
    expect(bad({ alpha: 1000 })).toThrow(/dendrites\.alpha = 1000 must be <= 700/);
    expect(bad({ onOffRatio: 0.5 })).toThrow(/dendrites\.onOffRatio = 0\.5 must be >= 1/);
    expect(bad({ bypass: 1 as unknown as boolean })).toThrow(/dendrites\.bypass must be a boolean/);
    expect(bad({}, { branch: 3 })).toThrow(/layers\[0\]\.tiles\[1\]\.branch = 3 must be in \[0, 2\]/);
    expect(bad({}, { branch: undefined })).toThrow(/layers\[0\]\.tiles\[1\]\.branch must be a number/);
    const p = program(W, undefined);
    p.layers[0]!.tiles[1]!.branch = 1;
    expect(() => new (native().Chip)(p)).toThrow(/tiles\[1\]\.branch = 1 must be in \[0, 0\]/);
    const q = program(W, good);
    q.layers[0]!.soma = { fullScale: 0, energy: 1 };
    expect(() => new (native().Chip)(q)).toThrow(/soma\.fullScale = 0 must be finite and > 0/);
  });
});
