/**
 * Device non-idealities, end to end through the session: statistics over many cells and many reads,
 * never single values.
 */
import { describe, expect, it } from 'vitest';
import { compile } from '../../compiler/index.js';
import { writeArtifact } from '../../artifact/write.js';
import { generateDefects } from '../../common/defects.js';
import { loadProfile, type DeviceProfile } from '../../common/profile.js';
import { readNpyFile } from '../../common/npy.js';
import { InferenceSession, Tensor } from '../../runtime/index.js';
import { mnist } from '../helpers/fixtures.js';

const MODEL = mnist('mnist8x8-64x54x10.onnx');
const base = loadProfile('hfo2-1t1r');
const quiet: DeviceProfile = {
  ...base,
  name: 'hfo2-quiet',
  conductance: { ...base.conductance, levels: 0 },
  dac: { bits: 0 },
  adc: { bits: 0, range: 1 },
  read: { ...base.read, sigma: 0, relative: 0 },
  programming: { sigma: 0, relative: 0 },
  drift: { nu: 0, nuSigma: 0, t0: 1 },
  wire: { resistance: 0 },
};
const digits = readNpyFile(mnist('digits8x8-f32.npy'));
const one = new Tensor('float32', digits.data.subarray(0, 64), [1, 64]);

async function session(profile: DeviceProfile, opts: { seed?: number; time?: number } = {}) {
  return InferenceSession.create(writeArtifact(compile(MODEL, { device: profile })), opts);
}

function meanStd(xs: ArrayLike<number>) {
  let m = 0;
  for (let i = 0; i < xs.length; i++) m += xs[i]! / xs.length;
  let v = 0;
  for (let i = 0; i < xs.length; i++) v += (xs[i]! - m) ** 2 / (xs.length - 1);
  return { mean: m, std: Math.sqrt(v) };
}

describe('programming error', () => {
  it('absolute σ: held − target has mean ≈ 0 and std ≈ σ over the programmed cells; stuck cells untouched', async () => {
    const sigma = 4e-6;
    const profile = { ...quiet, programming: { sigma, relative: 0 } };
    const placed = compile(MODEL, { device: profile });
    const s = await InferenceSession.create(writeArtifact(placed), { seed: 3 });
    const target = placed.arrays[0]!.conductance;
    const held = s.conductances(0);
    const diff: number[] = [];
    for (let i = 0; i < target.length; i++) if (target[i]! > 5 * sigma) diff.push(held[i]! - target[i]!);
    const { mean, std } = meanStd(diff);
    expect(diff.length).toBeGreaterThan(1500);
    expect(Math.abs(mean)).toBeLessThan(0.1 * sigma);
    expect(std / sigma).toBeGreaterThan(0.95);
    expect(std / sigma).toBeLessThan(1.05);
    // Same seed, same chip; another seed, another chip.
    expect((await InferenceSession.create(writeArtifact(placed), { seed: 3 })).conductances(0)).toEqual(held);
    expect((await InferenceSession.create(writeArtifact(placed), { seed: 4 })).conductances(0)).not.toEqual(held);
    // Stuck cells sit exactly at their stuck conductance.
    const chip = generateDefects({ ...profile, name: 'hfo2-quiet' }, { rate: 0.1, seed: 1, arrays: 2 });
    const onChip = compile(MODEL, { device: profile, defects: chip, remap: 'none' });
    const cs = await InferenceSession.create(writeArtifact(onChip), { seed: 3 });
    const a = onChip.arrays[0]!;
    const h = cs.conductances(0);
    for (let i = 0; i < a.conductance.length; i++) if (a.stuck![i]) expect(h[i]).toBe(a.conductance[i]);
  });
});

describe('read noise', () => {
  it('fresh noise on every read, with the spread the device σ implies; same seed and call sequence → same outputs', async () => {
    const noisy = { ...quiet, read: { ...quiet.read, relative: 0.02 } };
    const clean = await (await session(quiet)).run({ input: one });
    const s = await session(noisy, { seed: 9 });
    const reps = 300;
    const batch = new Float32Array(reps * 64);
    for (let i = 0; i < reps; i++) batch.set(digits.data.subarray(0, 64), i * 64);
    const out = (await s.run({ input: new Tensor('float32', batch, [reps, 64]) })).logits!.data;
    const col = Float64Array.from({ length: reps }, (_, i) => out[i * 10 + 3]!);
    const { mean, std } = meanStd(col);
    const ref = clean.logits!.data[3]!;
    expect(std).toBeGreaterThan(0);
    expect(Math.abs(mean - ref)).toBeLessThan(4 * std / Math.sqrt(reps) + 1e-6);
    // Two reads differ; two chips with the same seed and calls agree.
    const a = await session(noisy, { seed: 9 });
    const b = await session(noisy, { seed: 9 });
    const a1 = (await a.run({ input: one })).logits!.data;
    const a2 = (await a.run({ input: one })).logits!.data;
    expect(a1).not.toEqual(a2);
    expect((await b.run({ input: one })).logits!.data).toEqual(a1);
  });
});

describe('drift', () => {
  it('G(t) = G·(t/t0)^−ν scales every healthy cell; t <= t0 changes nothing', async () => {
    const nu = 0.02;
    const profile = { ...quiet, drift: { nu, nuSigma: 0, t0: 1 } };
    const placed = compile(MODEL, { device: profile });
    const fresh = (await InferenceSession.create(writeArtifact(placed), { time: 0.5 })).conductances(0);
    expect(fresh).toEqual(placed.arrays[0]!.conductance);
    const later = (await InferenceSession.create(writeArtifact(placed), { time: 1e4 })).conductances(0);
    const factor = 1e4 ** -nu;
    for (let i = 0; i < later.length; i += 97) expect(later[i]).toBeCloseTo(placed.arrays[0]!.conductance[i]! * factor, 9);
  });
});

describe('IR drop', () => {
  it('wire resistance lowers the currents, more for cells far from the drivers', async () => {
    const ideal = (await (await session(quiet)).run({ input: one })).logits!.data;
    const drop = (await (await session({ ...quiet, wire: { resistance: 5 } })).run({ input: one })).logits!.data;
    const norm = (x: Float32Array) => Math.sqrt(x.reduce((s, v) => s + v * v, 0));
    expect(drop).not.toEqual(ideal);
    expect(norm(drop)).toBeLessThan(norm(ideal));
  });
});

describe('the hfo2-1t1r chip with every non-ideality on', () => {
  it('keeps the accuracy within 1.5 points of float on the 8x8 digits', async () => {
    const s = await session(base, { seed: 1, time: 3600 });
    const y = (await s.run({ input: new Tensor('float32', digits.data, [2004, 64]) })).logits!.data;
    const labels = readNpyFile(mnist('labels.npy')).data;
    let ok = 0;
    for (let i = 0; i < 2004; i++) {
      let best = 0;
      for (let j = 1; j < 10; j++) if (y[i * 10 + j]! > y[i * 10 + best]!) best = j;
      if (best === labels[i]) ok++;
    }
    expect(ok / 2004).toBeGreaterThan(0.9032 - 0.015);
  });
});
