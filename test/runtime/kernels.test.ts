/**
 * Every kernel path this CPU has (portable, avx2, avx512, vnni: native().kernels()) against a float64
 * reference of the chip computed here from the artifact and the conductances the chip holds: the DAC's codes,
 * Σ u·(G+ − G−) in float64 (IR drop applied to the held conductances), the ADC, scaling, bias, activation.
 * Tolerances (docs/performance.md): float paths within float32 accumulation error; integer paths exact sums,
 * so the only differences are the one float32 scaling before the ADC (an ADC code may flip when a current
 * sits within ~1e-7 of a decision boundary) and, with programming error / drift / IR drop, the 16-bit fixed
 * point of G+ − G− (error <= max|G+ − G−| / 65534 per weight).
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compile } from '../../compiler/index.js';
import { writeArtifact } from '../../artifact/write.js';
import type { Artifact } from '../../artifact/format.js';
import { readNpyFile } from '../../common/npy.js';
import { loadProfile, type DeviceProfile } from '../../common/profile.js';
import { generateDefects } from '../../common/defects.js';
import { InferenceSession, Tensor } from '../../runtime/index.js';
import { createSimChip, toNativeProgram } from '../../runtime/backends/sim.js';
import { native, NativeHead } from '../../native/index.js';
import { mnist } from '../helpers/fixtures.js';
import { MAIN } from '../helpers/cli.js';

const hfo2 = loadProfile('hfo2-1t1r');
/** hfo2-1t1r's levels, DAC and ADC without noise, drift or wire resistance: every tile exact in integers. */
const quantised: DeviceProfile = {
  ...hfo2,
  name: 'hfo2-quantised',
  read: { ...hfo2.read, sigma: 0, relative: 0 },
  programming: { sigma: 0, relative: 0 },
  drift: { ...hfo2.drift, nu: 0, nuSigma: 0 },
  wire: { resistance: 0 },
};
/** The same with programming error, drift and IR drop (no read noise): conductances off the levels. */
const offLevels: DeviceProfile = { ...hfo2, name: 'hfo2-no-read-noise', read: { ...hfo2.read, sigma: 0, relative: 0 } };

const MODEL = mnist('mnist-784x500x10.onnx');
const digits = readNpyFile(mnist('digits28-f32.npy')).data as Float32Array;
const N = 24;
const x = digits.subarray(0, N * 784);

const f = Math.fround;
/** The periphery's round half away from zero, in float32 as it computes it (periphery.h). */
const roundHalfAway32 = (v: number) => Math.trunc(f(v + Math.sign(v) * f(0.49999997)));
/** Round half away from zero, exactly (the ADC of the float64 reference). */
const roundHalfAway = (v: number) => Math.sign(v) * Math.floor(Math.abs(v) + 0.5);

interface Reference {
  y: Float64Array;
  /** Per output: an ADC conversion feeding it sat within 1e-6 of a decision boundary (its code is a coin toss). */
  ambiguous: Uint8Array;
  /** Per output: the bound on the 16-bit fixed point's error, Σ_tiles Σ_k |u_k| · max|G+ − G−|_tile / 65534 · s / gPerWeight. */
  fixedPointBound: Float64Array;
}

/** The chip in float64 (no read noise): held conductances from the session, IR drop applied here. */
function reference(art: Artifact, held: (i: number) => Float32Array, input: Float32Array, batch: number, layers = art.layers.length): Reference {
  const p = art.profile;
  const r = p.wire.resistance;
  const eff = art.arrays.map((a, i) => {
    const g = held(i);
    if (!(r > 0)) return Float64Array.from(g);
    const out = new Float64Array(g.length);
    for (let row = 0; row < a.rows; row++)
      for (let col = 0; col < a.cols; col++) {
        const v = g[row * a.cols + col]!;
        out[row * a.cols + col] = v / (1 + v * r * (col + 1 + a.rows - row));
      }
    return out;
  });
  let act = Float64Array.from(input);
  let ambiguous = new Uint8Array(0);
  let fixedPointBound = new Float64Array(0);
  for (const layer of art.layers.slice(0, layers)) {
    const inF = layer.inFeatures, outF = layer.outFeatures;
    const next = new Float64Array(batch * outF);
    ambiguous = new Uint8Array(batch * outF);
    fixedPointBound = new Float64Array(batch * outF);
    const tileMax = layer.tiles.map((t) => {
      const a = art.arrays[t.array]!;
      const g = eff[t.array]!;
      let m = 0;
      for (let k = 0; k < t.inputIndex.length; k++)
        for (let c = 0; c < t.outputIndex.length; c++)
          m = Math.max(m, Math.abs(g[t.rowPos[k]! * a.cols + t.colPos[c]!]! - g[t.rowNeg[k]! * a.cols + t.colNeg[c]!]!));
      return m;
    });
    for (let b = 0; b < batch; b++) {
      const xr = act.subarray(b * inF, (b + 1) * inF);
      // DAC (digital, float32 as the periphery computes it): u = code / q, s = max |x|
      let s = 1;
      const u = new Float64Array(inF);
      if (p.dac.bits > 0) {
        s = 0;
        for (let j = 0; j < inF; j++) s = Math.max(s, Math.abs(f(xr[j]!)));
        s = f(s);
        const q = 2 ** (p.dac.bits - 1) - 1;
        for (let j = 0; j < inF; j++) {
          if (s === 0) continue;
          const v = Math.min(q, Math.max(-q, f(f(f(xr[j]!) / s) * q)));
          u[j] = roundHalfAway32(v) / q;
        }
      } else {
        for (let j = 0; j < inF; j++) u[j] = xr[j]!;
      }
      const acc = new Float64Array(outF);
      const bound = new Float64Array(outF);
      layer.tiles.forEach((t, ti) => {
        const a = art.arrays[t.array]!;
        const g = eff[t.array]!;
        let sumU = 0;
        for (let k = 0; k < t.inputIndex.length; k++) sumU += Math.abs(u[t.inputIndex[k]!]!);
        for (let c = 0; c < t.outputIndex.length; c++) {
          let i = 0; // current / vRead
          for (let k = 0; k < t.inputIndex.length; k++)
            i += u[t.inputIndex[k]!]! * (g[t.rowPos[k]! * a.cols + t.colPos[c]!]! - g[t.rowNeg[k]! * a.cols + t.colNeg[c]!]!);
          if (p.adc.bits > 0) {
            const L = 2 ** (p.adc.bits - 1) - 1;
            const step = t.adcFullScale / L;
            const v = (i * p.read.voltage) / step;
            if (Math.abs(Math.abs(v - Math.trunc(v)) - 0.5) < 1e-6 * Math.max(1, Math.abs(v))) ambiguous[b * outF + t.outputIndex[c]!] = 1;
            i = (Math.min(L, Math.max(-L, roundHalfAway(v))) * step) / p.read.voltage;
          }
          acc[t.outputIndex[c]!] += i;
          bound[t.outputIndex[c]!] += (sumU * tileMax[ti]!) / 65534;
        }
      });
      for (let j = 0; j < outF; j++) {
        let y = (acc[j]! * s) / layer.gPerWeight[j]! + layer.bias[j]!;
        if (layer.activation.kind === 'relu') y = Math.max(0, y);
        else if (layer.activation.kind !== 'none') throw new Error(`reference: activation ${layer.activation.kind}`);
        next[b * outF + j] = y;
        fixedPointBound[b * outF + j] = (bound[j]! * s) / layer.gPerWeight[j]!;
      }
    }
    act = next;
  }
  if (layers === art.layers.length && art.head !== 'none') throw new Error(`reference: head ${art.head}`);
  return { y: act, ambiguous, fixedPointBound };
}

/**
 * The artifact's first layer alone on the native chip (its DAC reads the raw inputs, so the reference's codes
 * are the chip's): y = relu(acc · s / gPerWeight + bias), [N, 500].
 */
function firstLayer(art: Artifact, kernel: string, opts: { seed?: number; time?: number } = {}) {
  const program = toNativeProgram(art, { kernel, seed: opts.seed ?? 1, time: opts.time ?? 0, threads: 2 });
  program.layers = [{ ...program.layers[0]!, head: NativeHead.None }];
  const chip = new (native().Chip)(program);
  const y = chip.runSync(x, N);
  return { chip, y };
}

/** Fraction of outputs within rel (relative, floor 1) of the reference, and the largest error over the largest |ref|. */
function compare(y: ArrayLike<number>, ref: ArrayLike<number>, rel: number) {
  let close = 0, maxRef = 0, maxErr = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = Math.abs(y[i]! - ref[i]!);
    if (d <= rel * Math.max(1, Math.abs(ref[i]!))) close++;
    maxRef = Math.max(maxRef, Math.abs(ref[i]!));
    maxErr = Math.max(maxErr, d);
  }
  return { close: close / ref.length, worst: maxErr / maxRef };
}

async function runPath(art: Artifact, kernel: string, opts: { seed?: number; time?: number } = {}) {
  const s = await InferenceSession.create(writeArtifact(art), { kernel, seed: opts.seed ?? 1, ...(opts.time ? { time: opts.time } : {}) });
  const y = (await s.run({ [s.inputNames[0]!]: new Tensor('float32', x, [N, 1, 28, 28]) }))[s.outputNames[0]!]!.data;
  return { s, y };
}

const kernels = native().kernels();

describe('kernel dispatch', () => {
  it('lists the paths this CPU has, portable first, and the default is the best of them unless DENDRA_KERNEL says otherwise', () => {
    expect(kernels[0]).toBe('portable');
    for (const k of kernels) expect(['portable', 'avx2', 'avx512', 'vnni']).toContain(k);
    if (!process.env['DENDRA_KERNEL']) expect(native().kernel()).toBe(kernels[kernels.length - 1]);
  });

  it('refuses a path the CPU lacks or an unknown name with a clear error', async () => {
    const art = compile(mnist('mnist8x8-64x54x10.onnx'), { device: 'ideal' });
    expect(() => createSimChip(art, { kernel: 'sse9' })).toThrow(/kernel = 'sse9' is not a kernel \(portable, avx2, avx512, vnni; this CPU has: portable/);
    const missing = ['avx2', 'avx512', 'vnni'].find((k) => !kernels.includes(k));
    if (missing) expect(() => createSimChip(art, { kernel: missing })).toThrow(/this CPU lacks it/);
    await expect(InferenceSession.create(writeArtifact(art), { kernel: 7 as unknown as string })).rejects.toThrow(/kernel must be a string/);
  });
});

describe('DENDRA_KERNEL', () => {
  const withEnv = (env: Record<string, string>, args: string[]) =>
    spawnSync(process.execPath, args, { encoding: 'utf8', env: { ...process.env, ...env } });

  it('forces the path of every session in the process, and `dendra --version` reports it', () => {
    for (const k of kernels) {
      const v = withEnv({ DENDRA_KERNEL: k }, [MAIN, '--version']);
      expect(v.stdout).toContain(`kernel ${k} (this CPU: ${kernels.join(', ')})`);
      const script = `const { InferenceSession } = await import(${JSON.stringify(join(MAIN, '..', '..', 'runtime', 'index.js'))});
        const { writeArtifact } = await import(${JSON.stringify(join(MAIN, '..', '..', 'artifact', 'write.js'))});
        const { compile } = await import(${JSON.stringify(join(MAIN, '..', '..', 'compiler', 'index.js'))});
        const s = await InferenceSession.create(writeArtifact(compile(${JSON.stringify(mnist('mnist8x8-64x54x10.onnx'))}, { device: 'hfo2-1t1r' })));
        console.log(s.kernel);`;
      const r = withEnv({ DENDRA_KERNEL: k }, ['--input-type=module', '-e', script]);
      expect(r.stdout.trim()).toBe(k);
    }
  });

  it('names the problem when it asks for a path this CPU lacks', () => {
    const r = withEnv({ DENDRA_KERNEL: 'avx1024' }, [MAIN, '--version']);
    expect(r.stdout).toMatch(/DENDRA_KERNEL = 'avx1024' is not a kernel/);
  });
});

describe.each(kernels)('kernel %s against the float64 reference', (kernel) => {
  it('ideal profile (float GEMM): within float32 accumulation error', async () => {
    const art = compile(MODEL, { device: 'ideal' });
    const { s, y } = await runPath(art, kernel);
    expect(s.kernel).toBe(kernel);
    const ref = reference(art, (i) => s.conductances(i), x, N).y;
    let maxRef = 0, maxErr = 0;
    for (let i = 0; i < ref.length; i++) {
      maxRef = Math.max(maxRef, Math.abs(ref[i]!));
      maxErr = Math.max(maxErr, Math.abs(y[i]! - ref[i]!));
    }
    expect(maxErr / maxRef).toBeLessThan(2e-5);
    await s.release();
  });

  it('levels and 8-bit DAC, no ADC: exact integer products, equal to the float64 reference to float32 rounding', () => {
    const art = compile(MODEL, { device: { ...quantised, adc: { bits: 0, range: 1 } } });
    const { chip, y } = firstLayer(art, kernel);
    const info = chip.info();
    expect(info.kernel).toBe(kernel);
    expect(info.integerTiles).toBe(info.tiles);
    expect(info.exactTiles).toBe(info.tiles);
    const ref = reference(art, (i) => chip.conductances(i), x, N, 1).y;
    expect(compare(y, ref, 1e-5).close).toBe(1);
    chip.release();
  });

  it('levels, 8-bit DAC and ADC: every ADC code as in the reference, but where the current sits at a decision boundary', () => {
    const art = compile(MODEL, { device: quantised });
    const { chip, y } = firstLayer(art, kernel);
    const ref = reference(art, (i) => chip.conductances(i), x, N, 1);
    let decided = 0, agree = 0, ambiguous = 0;
    for (let i = 0; i < y.length; i++) {
      if (ref.ambiguous[i]) {
        ambiguous++;
        continue;
      }
      decided++;
      if (Math.abs(y[i]! - ref.y[i]!) <= 1e-5 * Math.max(1, Math.abs(ref.y[i]!))) agree++;
    }
    expect(agree).toBe(decided);
    expect(ambiguous / y.length).toBeLessThan(0.2);
    chip.release();
  });

  it('programming error, drift (1 h), IR drop, 20 % stuck cells, no ADC: 16-bit fixed point within its bound, far inside the device error', () => {
    const noAdc: DeviceProfile = { ...offLevels, adc: { bits: 0, range: 1 } };
    const tiles = compile(MODEL, { device: 'hfo2-1t1r' }).arrays.length;
    const art = compile(MODEL, { device: noAdc, defects: generateDefects(noAdc, { rate: 0.2, onFraction: 0.5, seed: 1, arrays: tiles }) });
    const { chip, y } = firstLayer(art, kernel, { seed: 5, time: 3600 });
    const info = chip.info();
    expect(info.integerTiles).toBe(info.tiles);
    expect(info.exactTiles).toBe(0);
    const ref = reference(art, (i) => chip.conductances(i), x, N, 1);
    // The chip's own error (programming error, drift, stuck cells, IR drop) against the ideal layer, for scale.
    const ideal = firstLayer(compile(MODEL, { device: 'ideal' }), kernel);
    let bound = 0, device = 0, err = 0;
    for (let i = 0; i < y.length; i++) {
      expect(Math.abs(y[i]! - ref.y[i]!)).toBeLessThanOrEqual(ref.fixedPointBound[i]! + 1e-5 * Math.max(1, Math.abs(ref.y[i]!)));
      bound += ref.fixedPointBound[i]!;
      err += Math.abs(y[i]! - ref.y[i]!);
      device += Math.abs(ref.y[i]! - ideal.y[i]!);
    }
    expect(bound).toBeLessThan(1e-2 * device); // the worst case: under 1 % of what the devices themselves change
    expect(err).toBeLessThan(3e-4 * device); // as it comes out (about 7e-5 here)
    chip.release();
    ideal.chip.release();
  });

  it('the whole network on the quantised chip (two DACs, two ADCs): the same decisions as the reference', async () => {
    const art = compile(MODEL, { device: quantised });
    const { s, y } = await runPath(art, kernel);
    const ref = reference(art, (i) => s.conductances(i), x, N).y;
    // A hidden value at a DAC code boundary (float32 chip against float64 reference) moves a sample's logits a
    // little: compare what the logits decide, and how far they move at worst.
    let agree = 0;
    for (let b = 0; b < N; b++) {
      const am = (v: ArrayLike<number>) => { let k = 0; for (let j = 1; j < 10; j++) if (v[b * 10 + j]! > v[b * 10 + k]!) k = j; return k; };
      if (am(y) === am(ref)) agree++;
    }
    expect(agree / N).toBeGreaterThan(0.95);
    expect(compare(y, ref, 1e-5).worst).toBeLessThan(0.05);
    await s.release();
  });
});

describe('integer paths agree with each other', () => {
  it('with read noise and off-level conductances, avx2, avx512 and vnni draw the same noise and give the same bits', async () => {
    const simd = kernels.filter((k) => k !== 'portable');
    if (simd.length < 2) return; // nothing to compare on this CPU
    const art = compile(MODEL, { device: 'hfo2-1t1r' });
    const outs: Float32Array[] = [];
    for (const k of simd) {
      const s = await InferenceSession.create(writeArtifact(art), { kernel: k, seed: 7, time: 60 });
      outs.push((await s.run({ [s.inputNames[0]!]: new Tensor('float32', x, [N, 1, 28, 28]) }))[s.outputNames[0]!]!.data);
      await s.release();
    }
    for (const y of outs.slice(1)) expect(Array.from(y)).toEqual(Array.from(outs[0]!));
  });

  it('every path gives the same outputs on the quantised chip to float32 rounding of the epilogue', async () => {
    const art = compile(MODEL, { device: quantised });
    const outs = [];
    for (const k of kernels) outs.push((await runPath(art, k)).y);
    for (const y of outs.slice(1)) {
      let close = 0;
      for (let i = 0; i < y.length; i++) if (Math.abs(y[i]! - outs[0]![i]!) <= 1e-5 * Math.max(1, Math.abs(outs[0]![i]!))) close++;
      expect(close / y.length).toBeGreaterThan(0.99);
    }
  });
});
