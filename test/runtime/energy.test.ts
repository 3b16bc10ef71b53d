/**
 * The energy model (docs/energy.md): the crossbar term against a reference computed here from the
 * conductances the chip holds and the voltages applied; the DAC/ADC/digital counts against the artifact's
 * tiles; the V² scaling of the crossbar term; the device backend's estimate; `eval --json`.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compile } from '../../compiler/index.js';
import { writeArtifact } from '../../artifact/write.js';
import { readArtifact } from '../../artifact/read.js';
import type { Artifact } from '../../artifact/format.js';
import { generateDefects } from '../../common/defects.js';
import { readNpyFile } from '../../common/npy.js';
import { ENERGY_DEFAULTS, loadProfile, validateProfile, type DeviceProfile } from '../../common/profile.js';
import { InferenceSession, Tensor } from '../../runtime/index.js';
import { energyCounts } from '../../runtime/energy.js';
import { createSimChip } from '../../runtime/backends/sim.js';
import { native } from '../../native/index.js';
import { artifactId } from '../../runtime/backends/device/deploy.js';
import { model, randomValues, tensor } from '../helpers/onnx-builder.js';
import { dendra } from '../helpers/cli.js';
import { FakeBoard } from '../device/fake-board.js';
import { examples } from '../helpers/fixtures.js';

const MNIST8 = examples('mnist8x8-64x54x10.onnx');
const DIGITS = examples('digits8x8-f32.npy');
const LABELS = examples('labels.npy');
const digits = readNpyFile(DIGITS);

const IN = 20;
const OUT = 12;
/** One Gemm layer, 20 → 12, ReLU-free, seeded weights. */
const GEMM = model({
  input: { dims: ['batch', IN] },
  output: { dims: ['batch', OUT] },
  nodes: [{ op: 'Gemm', inputs: ['x', 'W', 'b'], outputs: ['y'], attrs: { transB: 1 } }],
  initializers: [tensor('W', [OUT, IN], randomValues(OUT * IN, 7)), tensor('b', [OUT], randomValues(OUT, 8, 0.1))],
});

/** hfo2-1t1r with small arrays (so the layer splits into tiles), programming error, drift, IR drop, read noise; no DAC. */
function small(differential: 'rows' | 'columns'): DeviceProfile {
  const p = loadProfile('hfo2-1t1r');
  const [rows, cols] = differential === 'rows' ? [16, 8] : [8, 16];
  return {
    ...p,
    name: `hfo2-small-${differential}`,
    array: { ...p.array, rows, cols, differential, count: 6 },
    dac: { bits: 0 },
    read: { ...p.read, relative: 0.01 },
  };
}

/** Σ over samples, tiles and driven rows of V_row² · Σ_c G[row, c], with V = x · vRead (DAC off). */
function referencePower(art: Artifact, held: (i: number) => Float32Array, x: Float32Array, batch: number): number {
  const layer = art.layers[0]!;
  const vRead = art.profile.read.voltage;
  let total = 0;
  for (const t of layer.tiles) {
    const a = art.arrays[t.array]!;
    const g = held(t.array);
    for (let b = 0; b < batch; b++) {
      const v = new Map<number, number>();
      for (let p = 0; p < t.inputIndex.length; p++) {
        const volts = x[b * layer.inFeatures + t.inputIndex[p]!]! * vRead;
        v.set(t.rowPos[p]!, (v.get(t.rowPos[p]!) ?? 0) + volts);
        if (t.rowNeg[p] !== t.rowPos[p]) v.set(t.rowNeg[p]!, (v.get(t.rowNeg[p]!) ?? 0) - volts);
      }
      for (const [row, volts] of v) {
        let sum = 0;
        for (let c = 0; c < a.cols; c++) sum += g[row * a.cols + c]!;
        total += volts * volts * sum;
      }
    }
  }
  return total;
}

const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);

describe('crossbar read energy', () => {
  for (const differential of ['rows', 'columns'] as const) {
    it(`pairs on ${differential}: Σ V²·G·t over the held conductances of every driven row, stuck cells included`, async () => {
      const profile = small(differential);
      const defects = generateDefects(profile, { rate: 0.1, seed: 2, arrays: 6 });
      const placed = compile(GEMM, { device: profile, defects, remap: 'none' });
      expect(placed.layers[0]!.tiles.length).toBe(6);
      const s = await InferenceSession.create(writeArtifact(placed), { seed: 5, time: 1000 });
      try {
        const batch = 9;
        const x = randomValues(batch * IN, 11, 1.5);
        await s.run({ x: new Tensor('float32', x, [batch, IN]) });
        const e = s.energy();
        expect(e.samples).toBe(batch);
        const ref = referencePower(placed, (i) => s.conductances(i), x, batch);
        // the held conductances differ from the targets (programming error, drift): the reference must use them
        expect(rel(referencePower(placed, (i) => placed.arrays[i]!.conductance, x, batch), ref)).toBeGreaterThan(1e-4);
        expect(rel(e.breakdown.crossbarJ, (ref * profile.energy.readTime) / batch)).toBeLessThan(1e-9);
        expect(e.energyPerInferenceJ).toBeCloseTo(e.breakdown.crossbarJ + e.breakdown.dacJ + e.breakdown.adcJ + e.breakdown.digitalJ, 20);
      } finally {
        await s.release();
      }
    });
  }

  it('scales with the input amplitude squared (DAC off); with the DAC, abs-max scaling makes it amplitude-free', async () => {
    const x = randomValues(4 * IN, 3);
    const twice = x.map((v) => 2 * v);
    const energyOf = async (profile: DeviceProfile, input: Float32Array) => {
      const s = await InferenceSession.create(writeArtifact(compile(GEMM, { device: profile })));
      await s.run({ x: new Tensor('float32', input, [4, IN]) });
      const e = s.energy();
      await s.release();
      return e;
    };
    const off = small('rows');
    const [a, b] = [await energyOf(off, x), await energyOf(off, twice)];
    expect(rel(b.breakdown.crossbarJ, 4 * a.breakdown.crossbarJ)).toBeLessThan(1e-12);
    expect(b.breakdown.dacJ).toBe(a.breakdown.dacJ);
    expect(b.breakdown.adcJ).toBe(a.breakdown.adcJ);
    expect(b.breakdown.digitalJ).toBe(a.breakdown.digitalJ);
    const on = { ...off, dac: { bits: 8 } };
    const [c, d] = [await energyOf(on, x), await energyOf(on, twice)];
    expect(rel(d.breakdown.crossbarJ, c.breakdown.crossbarJ)).toBeLessThan(1e-12);
  });

  it('the chip API: stats[0] of run/runSync and lastRunCrossbarPower(); all runs or the last one', async () => {
    const art = compile(GEMM, { device: small('rows') });
    const chip = createSimChip(art, { threads: 2 });
    try {
      const x = randomValues(300 * IN, 4);
      const stats = new Float64Array(1);
      chip.runSync(x, 300, stats);
      expect(stats[0]).toBeGreaterThan(0);
      expect(chip.lastRunCrossbarPower()).toBe(stats[0]);
      const async = new Float64Array(1);
      await chip.run(x, 300, async);
      expect(rel(async[0]!, stats[0]!)).toBeLessThan(1e-12);
      const one = new Float64Array(1);
      await chip.run(x.subarray(0, IN), 1, one);
      expect(chip.lastRunCrossbarPower()).toBe(one[0]);
      expect(() => chip.runSync(x, 300, new Float32Array(1) as unknown as Float64Array)).toThrow(/stats must be a Float64Array/);
      // a sample holding NaN adds no crossbar energy
      const nan = x.slice(0, 2 * IN);
      nan[IN + 3] = NaN;
      chip.runSync(nan, 2, stats);
      chip.runSync(x.subarray(0, IN), 1, one);
      expect(stats[0]).toBe(one[0]);
    } finally {
      chip.release();
    }
    // A (hand-written) tile in which two inputs drive one physical row: the row's voltage is their signed sum.
    const shared = new (native().Chip)({
      arrays: [{ rows: 3, cols: 2, conductance: Float32Array.from([1e-5, 2e-5, 3e-5, 4e-5, 5e-5, 6e-5]) }],
      layers: [{
        inFeatures: 2, outFeatures: 1, vRead: 0.5, dacBits: 0, adcBits: 0, outScale: Float32Array.of(1), bias: Float32Array.of(0),
        activation: 0, alpha: 0, beta: 0, head: 0,
        tiles: [{ array: 0, inputIndex: Int32Array.of(0, 1), rowPos: Int32Array.of(0, 2), rowNeg: Int32Array.of(1, 1),
          outputIndex: Int32Array.of(0), colPos: Int32Array.of(0), colNeg: Int32Array.of(0), adcFullScale: 0 }],
      }],
      threads: 1, seed: 0,
    });
    const st = new Float64Array(1);
    shared.runSync(Float32Array.of(0.6, 0.2), 1, st);
    // row 0: +0.3 V, row 2: +0.1 V, row 1: −0.3 − 0.1 V
    expect(rel(st[0]!, 0.3 ** 2 * 3e-5 + 0.1 ** 2 * 11e-5 + 0.4 ** 2 * 7e-5)).toBeLessThan(1e-6);
    shared.release();

    const s = await InferenceSession.create(writeArtifact(art));
    expect(() => s.energy()).toThrow(/call run\(\) first/);
    const x = randomValues(3 * IN, 9);
    await s.run({ x: new Tensor('float32', x.subarray(0, IN), [1, IN]) });
    const first = s.energy();
    await s.run({ x: new Tensor('float32', x.subarray(IN), [2, IN]) });
    const second = s.energy();
    const all = s.energy('all');
    expect(all.samples).toBe(3);
    expect(rel(all.breakdown.crossbarJ, (first.breakdown.crossbarJ + 2 * second.breakdown.crossbarJ) / 3)).toBeLessThan(1e-12);
    await s.release();
  });
});

describe('DAC, ADC and digital periphery', () => {
  it('counts read off the tiles of the shipped 64-54-10 net on hfo2-1t1r and of a tiled layer', async () => {
    const art = compile(MNIST8, { device: 'hfo2-1t1r' });
    const c = energyCounts(art);
    // pairs on rows: each input drives two physical rows; one ADC per output column of each tile
    expect(c.dacConversions).toBe(2 * 64 + 2 * 54);
    expect(c.adcConversions).toBe(54 + 10);
    // one tile per layer: no partial sums; scale + bias (+ ReLU on layer 0); DAC abs-max scaling 2 per input; no head
    expect(c.layers.map((l) => l.partialSumAdds)).toEqual([0, 0]);
    expect(c.digitalOps).toBe(54 * 3 + 10 * 2 + 2 * 64 + 2 * 54 + 0);
    const s = await InferenceSession.create(writeArtifact(art));
    await s.run({ input: new Tensor('float32', digits.data.subarray(0, 64 * 8), [8, 64]) });
    const report = s.energy();
    const e = report.breakdown;
    const k = art.profile.energy;
    // Event-driven rows: a DAC converts only rows whose input is non-zero. Every pooled digit has blank pixels,
    // every hidden layer ReLU zeros: fewer than 236 conversions, at least the first layer's non-zero inputs.
    const ev = report.events!;
    expect(ev.rowsPossible).toBe(236);
    expect(e.dacJ).toBeCloseTo(ev.rowsDriven * k.dacConversion, 25);
    let nonzero = 0;
    for (let i = 0; i < 8 * 64; i++) if (digits.data[i] !== 0) nonzero++;
    expect(ev.rowsDriven).toBeLessThan(236);
    expect(ev.rowsDriven).toBeGreaterThan((2 * nonzero) / 8 - 1e-9);
    expect(ev.sparsity).toBeCloseTo(1 - ev.rowsDriven / 236, 12);
    expect(e.adcJ).toBeCloseTo(64 * k.adcConversion, 25);
    expect(e.digitalJ).toBeCloseTo(c.digitalOps * k.digitalOp, 25);
    await s.release();

    // 20 → 12 on 16 × 8 arrays: 3 row blocks × 2 column blocks; every output summed from 3 tiles
    const tiled = compile(GEMM, { device: small('rows') });
    const t = energyCounts(tiled);
    expect(tiled.layers[0]!.tiles.length).toBe(6);
    expect(t.dacConversions).toBe(2 * 2 * IN);
    expect(t.adcConversions).toBe(3 * OUT);
    expect(t.layers[0]!.partialSumAdds).toBe(2 * OUT);
    expect(t.digitalOps).toBe(2 * OUT + 2 * OUT + 0);
    const cols = energyCounts(compile(GEMM, { device: small('columns') }));
    expect(cols.dacConversions).toBe(2 * IN); // one row per input, on each of the two column blocks
    // Event-driven rows on the tiled layer: an input with 7 zeros drives 2 rows (pair) × 2 column blocks for
    // each of its 13 non-zero inputs; an all-zero input drives nothing and costs no DAC or crossbar energy.
    const ts = await InferenceSession.create(writeArtifact(tiled));
    const x = Float32Array.from({ length: IN }, (_, i) => (i % 3 === 0 ? 0 : 0.5 + i / IN));
    await ts.run({ x: new Tensor('float32', x, [1, IN]) });
    expect(ts.energy().events!.rowsDriven).toBe(13 * 2 * 2);
    expect(ts.energy().breakdown.dacJ).toBeCloseTo(52 * tiled.profile.energy.dacConversion, 25);
    await ts.run({ x: new Tensor('float32', new Float32Array(IN), [1, IN]) });
    expect(ts.energy().events!.rowsDriven).toBe(0);
    expect(ts.energy().breakdown.dacJ).toBe(0);
    expect(ts.energy().breakdown.crossbarJ).toBe(0);
    await ts.release();
  });

  it('profile: energy is optional (documented defaults) and validated field by field', () => {
    const p = loadProfile('hfo2-1t1r');
    const { energy: _, ...withoutEnergy } = p;
    expect(validateProfile(JSON.parse(JSON.stringify(withoutEnergy))).energy).toEqual(ENERGY_DEFAULTS);
    expect(validateProfile({ ...p, energy: { adcConversion: 2e-12 } }).energy).toEqual({ ...ENERGY_DEFAULTS, adcConversion: 2e-12 });
    expect(() => validateProfile({ ...p, energy: { readTime: 0 } })).toThrow(/energy\.readTime/);
    expect(() => validateProfile({ ...p, energy: { dacConversion: -1 } })).toThrow(/energy\.dacConversion/);
    expect(() => validateProfile({ ...p, energy: 3 })).toThrow(/'energy' must be an object/);
    for (const name of ['ideal', 'hfo2-1t1r', 'rram-512']) {
      const q = loadProfile(name);
      for (const f of ['readTime', 'dacConversion', 'adcConversion', 'digitalOp']) expect(q.cite[`energy.${f}`]).toBeTruthy();
    }
  });
});

describe('device backend estimate', () => {
  it('a board holding the exact conductances: the simulator figures, from the voltages applied', async () => {
    const base = loadProfile('hfo2-1t1r');
    const profile: DeviceProfile = {
      ...base, name: 'hfo2-quiet', array: { ...base.array, rows: 32, cols: 16, count: null },
      read: { ...base.read, relative: 0 }, programming: { sigma: 0, relative: 0 }, drift: { ...base.drift, nu: 0, nuSigma: 0 }, wire: { resistance: 0 },
    };
    const bytes = writeArtifact(compile(MNIST8, { device: profile }));
    const art = readArtifact(bytes);
    const fake = FakeBoard.blank(art.arrays.length, 32, 16);
    art.arrays.forEach((a, i) => fake.arrays[i]!.g.set(a.conductance));
    fake.deployment = { artifact: artifactId(bytes), state: 'ready' };
    const url = await fake.listen();
    const x = new Tensor('float32', digits.data.subarray(0, 16 * 64), [16, 64]);
    const sim = await InferenceSession.create(bytes);
    const dev = await InferenceSession.create(bytes, { backend: 'device', device: url });
    try {
      await sim.run({ input: x });
      await dev.run({ input: x });
      const a = sim.energy();
      const b = dev.energy();
      expect(b.samples).toBe(16);
      expect(rel(b.breakdown.crossbarJ, a.breakdown.crossbarJ)).toBeLessThan(1e-3); // hidden layer: ADC ties may differ
      expect(b.breakdown.dacJ).toBe(a.breakdown.dacJ);
      expect(b.breakdown.adcJ).toBe(a.breakdown.adcJ);
      expect(b.breakdown.digitalJ).toBe(a.breakdown.digitalJ);
    } finally {
      await sim.release();
      await dev.release();
      await fake.close();
    }
  });
});

describe('dendra eval', () => {
  it('--json reports energyPerInferenceJ and its breakdown; the text one energy figure', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dendra-energy-'));
    const art = join(dir, 'h.dendra');
    writeFileSync(art, writeArtifact(compile(MNIST8, { device: 'hfo2-1t1r' })));
    const r = dendra('eval', art, '--input', DIGITS, '--labels', LABELS, '--json');
    expect(r.code).toBe(0);
    const report = JSON.parse(r.out);
    expect(report.energyPerInferenceJ).toBeGreaterThan(0);
    const e = report.energy;
    for (const k of ['crossbarJ', 'dacJ', 'adcJ', 'digitalJ']) expect(e[k]).toBeGreaterThan(0);
    expect(report.energyPerInferenceJ).toBeCloseTo(e.crossbarJ + e.dacJ + e.adcJ + e.digitalJ, 20);
    const text = dendra('eval', art, '--input', DIGITS, '--labels', LABELS);
    expect(text.out).toMatch(/inferences\/s, [\d.]+ [pnµ]J per inference/);
  });
});
