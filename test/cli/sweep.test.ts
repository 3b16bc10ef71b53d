/** dendra sweep: naive and remapped placements over random chips, the table, --json and --out. */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { mnist } from '../helpers/fixtures.js';
import { dendra, expectOneLineError } from '../helpers/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'dendra-sweep-'));

const model = mnist('mnist8x8-64x54x10.onnx');
const base = ['sweep', model, '--device', 'hfo2-1t1r', '--input', mnist('digits8x8-f32.npy'), '--labels', mnist('labels.npy')];

interface Stats { mean: number; sd: number }
interface Report {
  kind: string;
  model: { sha256: string };
  device: { name: string };
  chipArrays: number;
  samples: number;
  settings: { rates: number[]; trials: number };
  baseline: Stats & { trials: { accuracy: number }[] };
  rates: { rate: number; naive: Stats; remapped: Stats; naiveLoss: number; remappedLoss: number; trials: { chipSeed: number; faults: number; naive: number; remapped: number }[] }[];
  files?: { json: string; svg: string };
}

describe('dendra sweep', () => {
  const out = join(dir, 'out');
  let report: Report;

  it('--json --out: one JSON object, sweep.json with every trial, sweep.svg', () => {
    const r = dendra(...base, '--rates', '0,0.2', '--trials', '2', '--out', out, '--json');
    expect(r.err).toBe(''); // the progress bar stays off without a TTY
    expect(r.code).toBe(0);
    expect(r.out.trim().split('\n')).toHaveLength(1);
    report = JSON.parse(r.out) as Report;
    expect(report.kind).toBe('sweep');
    expect(report.device.name).toBe('hfo2-1t1r');
    expect(report.model.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(report.chipArrays).toBe(2); // 64-54 and 54-10: one 128 × 64 array each
    expect(report.samples).toBe(2004);
    expect(report.rates.map((x) => x.rate)).toEqual([0, 0.2]);
    const [r0, r2] = report.rates;
    // A fault-free chip: both placements are the baseline network, seeded alike.
    expect(r0!.trials.every((t) => t.faults === 0)).toBe(true);
    expect(r0!.naive.mean).toBeCloseTo(report.baseline.mean, 12);
    expect(r0!.remapped.mean).toBeCloseTo(report.baseline.mean, 12);
    expect(report.baseline.mean).toBeGreaterThan(0.85);
    // 20 % stuck cells: remapping recovers most of what naive placement loses.
    expect(r2!.trials.every((t) => t.faults > 0.15 * 2 * 128 * 64)).toBe(true);
    expect(r2!.remapped.mean).toBeGreaterThanOrEqual(r2!.naive.mean);
    expect(r2!.naiveLoss).toBeCloseTo(report.baseline.mean - r2!.naive.mean, 12);
    // Chip seeds follow seed·1000003 + rateIndex·1009 + trial.
    expect(r2!.trials.map((t) => t.chipSeed)).toEqual([1009, 1010]);

    const svg = readFileSync(join(out, 'sweep.svg'), 'utf8');
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    expect(svg).toMatch(/stroke-dasharray/); // the fault-free baseline

    const saved = JSON.parse(readFileSync(join(out, 'sweep.json'), 'utf8')) as Report;
    expect(saved.settings).toMatchObject({ rates: [0, 0.2], trials: 2 });
    expect(saved.rates).toHaveLength(2);
    for (const x of saved.rates) expect(x.trials).toHaveLength(2);
    expect(saved.rates[1]!.trials.map((t) => t.naive)).toEqual(r2!.trials.map((t) => t.naive));
    expect(saved.files).toEqual({ json: join(out, 'sweep.json'), svg: join(out, 'sweep.svg') });
  });

  it('prints a table: one row per rate after the fault-free row, losses in points', () => {
    const r = dendra(...base, '--rates', '0.1', '--trials', '1', '--seed', '3');
    expect(r.code).toBe(0);
    expect(r.err).toBe('');
    const lines = r.out.split('\n');
    expect(lines[0]).toMatch(/sweep of mnist8x8-64x54x10\.onnx \(64-54-10\) on hfo2-1t1r: chips of 2 arrays of 128 × 64/);
    expect(r.out).toMatch(/rate\s+trials\s+naive %\s+remapped %\s+fault-free %\s+naive loss\s+remapped loss/);
    expect(r.out).toMatch(/^fault-free\s+1\s+–\s+–\s+\d+\.\d\d ± 0\.00/m);
    expect(r.out).toMatch(/^10 %\s+1\s+\d+\.\d\d ± 0\.00\s+\d+\.\d\d ± 0\.00\s+\d+\.\d\d\s+-?\d+\.\d\d pt\s+-?\d+\.\d\d pt$/m);
  });

  it('refuses bad settings with one line', () => {
    expectOneLineError(dendra(...base, '--rates', '0,abc', '--trials', '2'), /--rates: 'abc' is not a fault rate from 0 to 1/);
    expectOneLineError(dendra(...base, '--rates', '0,1.5', '--trials', '2'), /--rates: '1\.5' is not a fault rate/);
    expectOneLineError(dendra(...base, '--rates', '0x1', '--trials', '2'), /--rates: '0x1' is not a fault rate/);
    expectOneLineError(dendra(...base, '--rates', '0,,0.1', '--trials', '2'), /--rates must be a comma-separated list/);
    expectOneLineError(dendra(...base, '--rates', '0.1,0.1', '--trials', '2'), /--rates lists 0\.1 twice/);
    expectOneLineError(dendra(...base, '--rates', '0.1', '--trials', '0'), /--trials must be an integer from 1/);
    expectOneLineError(dendra(...base, '--rates', '0.1', '--trials', '1.5'), /--trials must be an integer/);
    expectOneLineError(dendra(...base, '--rates', '0.1', '--trials', '1', '--on-fraction', '2'), /--on-fraction must be a number from 0 to 1/);
    expectOneLineError(dendra(...base, '--rates', '0.1', '--trials', '1', '--pattern', 'diagonal'), /--pattern.*Allowed choices are random, rows, columns, clustered/);
    expectOneLineError(dendra(...base.map((a) => (a === 'hfo2-1t1r' ? 'ideal' : a)), '--rates', '0.1', '--trials', '1'), /device 'ideal' has unlimited arrays/);
    expectOneLineError(dendra(...base, '--trials', '1'), /required option '--rates <list>' not specified/);
    expectOneLineError(dendra(...base.map((a) => (a.endsWith('digits8x8-f32.npy') ? mnist('digits28-f32.npy') : a)), '--rates', '0.1', '--trials', '1'), /input .*digits28-f32\.npy has shape/);
  });
});
