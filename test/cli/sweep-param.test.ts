/** dendra sweep --param: one dendritic network evaluated against a dendrite device property, with and without dendrites. */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { examples } from '../helpers/fixtures.js';
import { dendra, expectOneLineError } from '../helpers/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'dendra-sweep-param-'));

const model = examples('mnist8x8-64x54x10.onnx');
const x = examples('digits8x8-f32.npy');
const l = examples('labels.npy');
const data = ['--input', x, '--labels', l];
const base = ['sweep', model, ...data, '--branches', '4,2', '--calibrate', x, l];

interface Run { accuracy: number; correct: number; energyPerInferenceJ: number; energy: { somaJ: number; dendriteJ: number } }
interface Point { value: number; withDendrites: Run; withoutDendrites: Run; powerAdvantage: number | null; energyAdvantage: number }
interface Report {
  kind: string;
  device: { name: string };
  model: { sha256: string; shape: string };
  param: { path: string; base: number; values: number[] };
  branches: number[];
  calibration: string | null;
  samples: number;
  points: Point[];
  warnings: string[];
  files?: { json: string; svg: string };
}
interface EvalJson { accuracy: number; energyPerInferenceJ: number; dendrites: { plain: Run; powerAdvantage: number; energyAdvantage: number } }

describe('dendra sweep --param', () => {
  const out = join(dir, 'out');

  it('--json --out: every value with dendrites and in the plain compile; the base value is what compile + eval give', () => {
    const r = dendra(...base, '--param', 'dendrite.nonlinearity=0.01,0.1,0.2', '--seed', '0', '--out', out, '--json');
    expect(r.err).toBe(''); // calibrated: no warning; the progress bar stays off without a TTY
    expect(r.code).toBe(0);
    expect(r.out.trim().split('\n')).toHaveLength(1);
    const report = JSON.parse(r.out) as Report;
    expect(report.kind).toBe('sweep-param');
    expect(report.device.name).toBe('taox-dendrite');
    expect(report.model.shape).toBe('64-54-10');
    expect(report.param).toEqual({ path: 'dendrite.nonlinearity', base: 0.1, values: [0.01, 0.1, 0.2] });
    expect(report.branches).toEqual([4, 2]);
    expect(report.calibration).toMatch(/calibrated on \d+ samples/);
    expect(report.samples).toBe(2004);
    expect(report.points.map((p) => p.value)).toEqual([0.01, 0.1, 0.2]);
    for (const p of report.points) {
      for (const run of [p.withDendrites, p.withoutDendrites]) {
        expect(run.accuracy).toBeGreaterThanOrEqual(0);
        expect(run.accuracy).toBeLessThanOrEqual(1);
        expect(run.accuracy).toBeCloseTo(run.correct / 2004, 12);
        expect(run.energyPerInferenceJ).toBeGreaterThan(0);
      }
      expect(p.withoutDendrites.energy.dendriteJ).toBe(0);
    }
    const [low, mid, high] = report.points as [Point, Point, Point];
    // The profile really changes between values (with dendrites), and only there: the network without them is the same.
    expect(high.withDendrites.energy.somaJ).not.toBe(low.withDendrites.energy.somaJ);
    expect(high.withoutDendrites).toEqual(low.withoutDendrites);
    // Each point's fair power advantage (its somas at their own full scale) is reported, whichever way it goes:
    // on this small network, calibrated at the base value, it is below 1 at every value (docs/dendrites.md).
    for (const p of report.points) expect(p.powerAdvantage).toBeGreaterThan(0);
    // Calibrated at the base value (on samples of this set): accuracy there stays near the network's without dendrites.
    expect(Math.abs(mid.withDendrites.accuracy - mid.withoutDendrites.accuracy)).toBeLessThan(0.03);

    // The base value's point is the network as `dendra compile` + `dendra eval` give it.
    const art = join(dir, 'base.dendra');
    const c = dendra('compile', model, '--device', 'taox-dendrite', '--branches', '4,2', '--calibrate', x, l, '-o', art);
    expect(c.code).toBe(0);
    const e = dendra('eval', art, ...data, '--seed', '0', '--json');
    expect(e.code).toBe(0);
    const ev = JSON.parse(e.out) as EvalJson;
    expect(mid.withDendrites.accuracy).toBe(ev.accuracy);
    expect(mid.withDendrites.energyPerInferenceJ).toBeCloseTo(ev.energyPerInferenceJ, 20);
    expect(mid.withoutDendrites.accuracy).toBe(ev.dendrites.plain.accuracy);
    expect(mid.powerAdvantage).toBeCloseTo(ev.dendrites.powerAdvantage, 10);
    expect(mid.energyAdvantage).toBeCloseTo(ev.dendrites.energyAdvantage, 10);

    const saved = JSON.parse(readFileSync(join(out, 'sweep-param.json'), 'utf8')) as Report;
    expect(saved.files).toEqual({ json: join(out, 'sweep-param.json'), svg: join(out, 'sweep-param.svg') });
    expect(saved.points).toEqual(report.points);
    const svg = readFileSync(join(out, 'sweep-param.svg'), 'utf8');
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    expect(svg).toContain('power advantage');
    expect(svg).toContain('accuracy (%)');
    expect(svg).toContain('dendrite.nonlinearity');
    expect(svg).toMatch(/stroke-dasharray/); // the base value and the network without dendrites
  });

  it('prints a table: one row per value, the base profile marked', () => {
    const r = dendra(...base, '--param', 'dendrite.onOffRatio=10,100');
    expect(r.code).toBe(0);
    expect(r.err).toBe('');
    expect(r.out).toMatch(/^sweep of dendrite\.onOffRatio \(base 100\): mnist8x8-64x54x10\.onnx \(64-54-10\) on taox-dendrite, branches 4, 2 \(contiguous\), 2004 samples/);
    expect(r.out).toMatch(/dendrite\.onOffRatio\s+accuracy %\s+without %\s+power adv\.\s+energy adv\.\s+energy\/inference\s+without/);
    expect(r.out).toMatch(/^10\s+\d+\.\d\d\s+\d+\.\d\d\s+\d+\.\d+x\s+\d+\.\d+x\s+\d/m);
    expect(r.out).toMatch(/^100 \(base\)\s+\d+\.\d\d\s+\d+\.\d\d\s+\d+\.\d+x/m);
  });

  it('--param finetune.sparsity: fine-tunes at each activity penalty; the penalty makes the somas sparser, the plain compile stays', () => {
    const r = dendra(...base, '--param', 'finetune.sparsity=0,3', '--finetune', x, l, '--epochs', '2', '--json', '--out', join(dir, 'sparsity'));
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const report = JSON.parse(r.out) as Report & { points: (Point & { activeSomas: { dendritic: number; plain: number } })[] };
    expect(report.param).toEqual({ path: 'finetune.sparsity', base: 0, values: [0, 3] });
    const [none, strong] = report.points as [typeof report.points[0], typeof report.points[0]];
    // An L1 penalty on the soma outputs leaves fewer somas active; the plain compile is the same network each time.
    expect(strong.activeSomas.dendritic).toBeLessThan(none.activeSomas.dendritic - 0.05);
    expect(strong.activeSomas.plain).toBe(none.activeSomas.plain);
    expect(strong.withoutDendrites).toEqual(none.withoutDendrites);
    const svg = readFileSync(join(dir, 'sparsity', 'sweep-param.svg'), 'utf8');
    expect(svg).toContain('whole chip (nJ per inference)');
    expect(svg).toContain('plain compile');
    expectOneLineError(dendra(...base, '--param', 'finetune.sparsity=0,1'), /--param finetune\.sparsity=\.\.\. fine-tunes at each value: give --finetune X\.npy L\.npy/);
    expectOneLineError(dendra(...base, '--param', 'dendrite.nonlinearity=0.1', '--finetune', x, l), /--finetune, --epochs and --dendrite-mode belong to --param finetune\.sparsity/);
  }, 120_000);

  it('refuses bad settings with one line', () => {
    expectOneLineError(dendra(...base, '--param', 'dendrite.colour=1,2'), /--param: unknown profile field 'dendrite\.colour'; sweepable: dendrite\.nonlinearity, dendrite\.onOffRatio, dendrite\.voltage, dendrite\.onVoltage, dendrite\.threshold, dendrite\.variation.*finetune\.sparsity/);
    expectOneLineError(dendra(...base, '--param', 'read.voltage=0.1'), /unknown profile field 'read\.voltage'/);
    expectOneLineError(dendra(...base, '--param', 'dendrite.onOffRatio=0.5'), /--param dendrite\.onOffRatio=0\.5: device profile field 'dendrite\.onOffRatio' must be an ON\/OFF ratio >= 1/);
    expectOneLineError(dendra(...base, '--param', 'dendrite.nonlinearity=0.1,abc'), /--param: 'abc' is not a number/);
    expectOneLineError(dendra(...base, '--param', 'dendrite.nonlinearity=0.1,0.1'), /--param lists 0\.1 twice/);
    expectOneLineError(dendra(...base, '--param', 'dendrite.nonlinearity=0.1', '--device', 'ideal'), /the 'ideal' profile has no dendrite devices/);
    expectOneLineError(dendra('sweep', model, ...data, '--param', 'dendrite.nonlinearity=0.1'), /--param needs --branches/);
    expectOneLineError(dendra(...base, '--param', 'dendrite.nonlinearity=0.1', '--rates', '0.1'), /--rates belongs to the fault-rate sweep, not to --param/);
    expectOneLineError(dendra('sweep', model, ...data, '--device', 'hfo2-1t1r', '--rates', '0.1', '--trials', '1', '--branches', '4,2'), /--branches applies to --param sweeps only/);
  });
});
