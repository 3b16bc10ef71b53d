/**
 * dendra sweep: how accuracy falls with the fault rate, placing a network naively and with remapping
 * on many random chips. For each rate and trial one chip is drawn (generateDefects), the network is
 * compiled for it twice (remap none and auto) and both artifacts are evaluated on labelled inputs;
 * the same network on a fault-free chip is the baseline.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { progressBar } from './progress.js';
import { compile } from '../compiler/index.js';
import { dendraVersion, writeArtifact } from '../artifact/write.js';
import { generateDefects, type DefectPattern } from '../common/defects.js';
import { InputError } from '../common/errors.js';
import { readNpyFile } from '../common/npy.js';
import { loadProfile, type DeviceProfile } from '../common/profile.js';
import { InferenceSession } from '../runtime/index.js';
import { readLabels } from './eval.js';
import { argmaxRows, parseIntOption, readInputs, runAll } from './io.js';

export interface SweepArgs {
  device: string;
  rates: string;
  trials: string;
  input: string;
  labels: string;
  out?: string;
  onFraction?: string;
  pattern?: string;
  calibrate?: string;
  seed?: number;
  threads?: number;
  json?: boolean;
}

/** Mean and sample standard deviation (n − 1; 0 for one value) of accuracies, as fractions 0–1. */
export interface Stats {
  mean: number;
  sd: number;
}

export interface SweepTrial {
  trial: number;
  /** The seed the chip's defect map was generated with: seed·1000003 + rateIndex·1009 + trial. */
  chipSeed: number;
  /** The simulator's seed for both evaluations (programming and read noise): the trial number. */
  sessionSeed: number;
  /** Stuck cells on the chip, and how many of them stuck ON. */
  faults: number;
  on: number;
  naive: number;
  remapped: number;
}

export interface SweepRate {
  rate: number;
  trials: SweepTrial[];
  naive: Stats;
  remapped: Stats;
  /** Fault-free baseline mean minus the mean (fractions; × 100 for points). */
  naiveLoss: number;
  remappedLoss: number;
}

export interface SweepReport {
  kind: 'sweep';
  dendra: string;
  model: { file: string; sha256: string; shape: string };
  device: { name: string; rows: number; cols: number; differential: 'rows' | 'columns' };
  /** Arrays per generated chip: the number of tiles the network needs. */
  chipArrays: number;
  samples: number;
  settings: {
    rates: number[];
    trials: number;
    onFraction: number;
    pattern: DefectPattern;
    seed: number;
    calibrate: string | null;
    input: string;
    labels: string;
  };
  /** The network on a fault-free chip, one evaluation per trial seed. */
  baseline: Stats & { trials: { sessionSeed: number; accuracy: number }[] };
  rates: SweepRate[];
  seconds: number;
  files?: { json: string; svg: string };
}

const PATTERNS: DefectPattern[] = ['random', 'rows', 'columns', 'clustered'];

export function parseRates(text: string): number[] {
  const parts = text.split(',').map((s) => s.trim());
  if (parts.length === 0 || parts.some((s) => s === '')) throw new InputError(`--rates must be a comma-separated list of fault rates from 0 to 1, e.g. 0,0.05,0.1 (got '${text}')`);
  const rates = parts.map((s) => {
    const r = /^(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(s) ? Number(s) : NaN;
    if (!(r >= 0 && r <= 1)) throw new InputError(`--rates: '${s}' is not a fault rate from 0 to 1 (got '${text}')`);
    return r;
  });
  const seen = new Set<number>();
  for (const r of rates) {
    if (seen.has(r)) throw new InputError(`--rates lists ${r} twice (got '${text}')`);
    seen.add(r);
  }
  return rates;
}

function parseFraction(v: string, name: string): number {
  const x = Number(v);
  if (!(v.trim() !== '' && Number.isFinite(x) && x >= 0 && x <= 1)) throw new InputError(`${name} must be a number from 0 to 1 (got '${v}')`);
  return x;
}

export function stats(xs: number[]): Stats {
  const n = xs.length;
  const mean = xs.reduce((s, x) => s + x, 0) / n;
  const sd = n > 1 ? Math.sqrt(xs.reduce((s, x) => s + (x - mean) ** 2, 0) / (n - 1)) : 0;
  return { mean, sd };
}

export async function sweep(model: string, opts: SweepArgs): Promise<SweepReport> {
  const t0 = performance.now();
  const rates = parseRates(opts.rates);
  const trials = parseIntOption(String(opts.trials), '--trials', 1, 10_000);
  const onFraction = opts.onFraction === undefined ? 0.5 : parseFraction(opts.onFraction, '--on-fraction');
  const pattern = (opts.pattern ?? 'random') as DefectPattern;
  if (!PATTERNS.includes(pattern)) throw new InputError(`--pattern must be random, rows, columns or clustered (got '${pattern}')`);
  const seed = opts.seed ?? 0;
  const profile: DeviceProfile = loadProfile(opts.device);
  const { rows, cols } = profile.array;
  if (rows === null || cols === null) {
    throw new InputError(`device '${profile.name}' has unlimited arrays, so it has no chip to put defects on; sweep a device with a finite array size (e.g. hfo2-1t1r)`);
  }
  const calibrate = opts.calibrate ? readNpyFile(opts.calibrate).data : undefined;

  // The network on a fault-free chip: its tile count sizes the generated chips.
  const base = compile(model, { device: profile });
  const chipArrays = base.arrays.length;
  const baseBytes = writeArtifact(base);

  // Inputs and labels once, checked against the model's input.
  let x: Float32Array;
  let n: number;
  let labels: Int32Array;
  {
    const s = await InferenceSession.create(baseBytes, { seed: 0, threads: opts.threads });
    try {
      const r = readInputs(s, opts.input);
      x = r.x.data;
      n = r.n;
    } finally {
      await s.release();
    }
    labels = readLabels(opts.labels, n, s.artifact.output.features);
  }
  const accuracy = async (bytes: Uint8Array, sessionSeed: number): Promise<number> => {
    const s = await InferenceSession.create(bytes, { seed: sessionSeed, threads: opts.threads });
    try {
      const y = await runAll(s, x, n);
      const predicted = argmaxRows(y, n, s.artifact.output.features);
      let correct = 0;
      for (let i = 0; i < n; i++) if (predicted[i] === labels[i]) correct++;
      return correct / n;
    } finally {
      await s.release();
    }
  };

  const total = trials * (1 + rates.length);
  const pct = (r: number) => `${+(100 * r).toFixed(4)} %`;
  const baselineTrials: { sessionSeed: number; accuracy: number }[] = [];
  const perRate: { rate: number; trials: SweepTrial[] }[] = [];
  const bar = progressBar('sweep', total, 'chips', true);
  try {
    for (let t = 0; t < trials; t++) {
      bar.stage(`fault-free, trial ${t + 1}/${trials}`);
      baselineTrials.push({ sessionSeed: t, accuracy: await accuracy(baseBytes, t) });
      bar.increment();
    }
    for (let ri = 0; ri < rates.length; ri++) {
      const rate = rates[ri]!;
      const done: SweepTrial[] = [];
      for (let t = 0; t < trials; t++) {
        bar.stage(`rate ${pct(rate)}, trial ${t + 1}/${trials}`);
        const chipSeed = seed * 1000003 + ri * 1009 + t;
        const map = generateDefects(profile, { rate, onFraction, pattern, seed: chipSeed, arrays: chipArrays });
        const faults = map.arrays.reduce((s, a) => s + a.faults.length, 0);
        const on = map.arrays.reduce((s, a) => s + a.faults.filter((f) => f[2] === 'on').length, 0);
        const naive = await accuracy(writeArtifact(compile(model, { device: profile, defects: map, remap: 'none' })), t);
        const remapped = await accuracy(writeArtifact(compile(model, { device: profile, defects: map, remap: 'auto', calibrate })), t);
        done.push({ trial: t, chipSeed, sessionSeed: t, faults, on, naive, remapped });
        bar.increment();
      }
      perRate.push({ rate, trials: done });
    }
  } finally {
    bar.stop();
  }

  const baseline = { ...stats(baselineTrials.map((b) => b.accuracy)), trials: baselineTrials };
  return {
    kind: 'sweep',
    dendra: dendraVersion(),
    model: { file: model, sha256: base.source.sha256, shape: [base.layers[0]!.inFeatures, ...base.layers.map((l) => l.outFeatures)].join('-') },
    device: { name: profile.name, rows, cols, differential: profile.array.differential },
    chipArrays,
    samples: n,
    settings: { rates, trials, onFraction, pattern, seed, calibrate: opts.calibrate ?? null, input: opts.input, labels: opts.labels },
    baseline,
    rates: perRate.map(({ rate, trials: ts }) => {
      const naive = stats(ts.map((t) => t.naive));
      const remapped = stats(ts.map((t) => t.remapped));
      return { rate, trials: ts, naive, remapped, naiveLoss: baseline.mean - naive.mean, remappedLoss: baseline.mean - remapped.mean };
    }),
    seconds: (performance.now() - t0) / 1000,
  };
}

/** The table: accuracies in %, losses in points against the fault-free baseline. */
export function formatSweep(r: SweepReport): string {
  const p = (x: number) => (100 * x).toFixed(2);
  const s = r.settings;
  const head = [
    `sweep of ${basename(r.model.file)} (${r.model.shape}) on ${r.device.name}: chips of ${r.chipArrays} arrays of ${r.device.rows} × ${r.device.cols}, ` +
      `${s.pattern} faults (${p(s.onFraction).replace(/\.00$/, '')} % stuck ON), ${s.trials} chip(s) per rate, ${r.samples} samples` +
      `${s.calibrate ? `, remapping calibrated on ${s.calibrate}` : ''}, seed ${s.seed}`,
  ];
  const rows: string[][] = [['rate', 'trials', 'naive %', 'remapped %', 'fault-free %', 'naive loss', 'remapped loss']];
  const base = p(r.baseline.mean);
  rows.push(['fault-free', String(r.baseline.trials.length), '–', '–', `${base} ± ${p(r.baseline.sd)}`, '–', '–']);
  for (const x of r.rates) {
    rows.push([
      `${+(100 * x.rate).toFixed(4)} %`, String(x.trials.length),
      `${p(x.naive.mean)} ± ${p(x.naive.sd)}`, `${p(x.remapped.mean)} ± ${p(x.remapped.sd)}`,
      base, `${p(x.naiveLoss)} pt`, `${p(x.remappedLoss)} pt`,
    ]);
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((row) => row[c]!.length)));
  const lines = rows.map((row) => row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('   ').trimEnd());
  lines.splice(1, 0, widths.map((w) => '-'.repeat(w)).join('   '));
  const foot = `± is the sample standard deviation over chips (fault-free: over simulator seeds); loss = fault-free mean − mean, in points; ${r.seconds.toFixed(1)} s`;
  return [...head, '', ...lines, '', foot].join('\n');
}

/** The plot: accuracy (%) against fault rate (%), naive and remapped (mean, error bars = sd), fault-free dashed. */
export async function sweepSvg(r: SweepReport): Promise<string> {
  const NAIVE = 'naive placement';
  const REMAP = 'remapped';
  const BASE = 'fault-free chip';
  const values = r.rates.flatMap((x) => [
    { rate: 100 * x.rate, series: NAIVE, mean: 100 * x.naive.mean, lo: 100 * (x.naive.mean - x.naive.sd), hi: 100 * (x.naive.mean + x.naive.sd) },
    { rate: 100 * x.rate, series: REMAP, mean: 100 * x.remapped.mean, lo: 100 * (x.remapped.mean - x.remapped.sd), hi: 100 * (x.remapped.mean + x.remapped.sd) },
  ]);
  const domain = [NAIVE, REMAP, BASE];
  const color = { field: 'series', type: 'nominal', title: null, scale: { domain, range: ['#d62728', '#1f77b4', '#555555'] }, legend: { symbolType: 'stroke', symbolStrokeWidth: 2, labelLimit: 300 } } as const;
  const dash = { field: 'series', type: 'nominal', title: null, scale: { domain, range: [[1, 0], [1, 0], [6, 4]] } } as const;
  const y = (field: string) => ({ field, type: 'quantitative', title: 'accuracy (%)', scale: { zero: false } }) as const;
  const s = r.settings;
  const spec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: `${basename(r.model.file)} on ${r.device.name}: accuracy against stuck cells`,
      subtitle: `${s.trials} random chip(s) per rate, ${s.pattern} faults, ${+(100 * s.onFraction).toFixed(2)} % of them stuck ON, ${r.samples} samples; mean ± sd`,
      anchor: 'start',
    },
    width: 480,
    height: 320,
    background: 'white',
    padding: 10,
    layer: [
      {
        data: { values },
        mark: { type: 'line', point: true },
        encoding: {
          x: { field: 'rate', type: 'quantitative', title: 'fault rate (% of cells stuck)' },
          y: y('mean'),
          color,
          strokeDash: dash,
        },
      },
      {
        data: { values },
        mark: { type: 'errorbar', ticks: true },
        encoding: {
          x: { field: 'rate', type: 'quantitative' },
          y: y('lo'),
          y2: { field: 'hi' },
          color,
        },
      },
      {
        data: { values: [{ series: BASE, mean: 100 * r.baseline.mean }] },
        mark: { type: 'rule', strokeWidth: 1.5 },
        encoding: { y: y('mean'), color, strokeDash: dash },
      },
    ],
  };
  // vega-lite's spec type is very wide; the literal above is checked by compiling it.
  return vegaLiteSvg(spec);
}

/** A vega-lite spec rendered to SVG (headless); the spec is checked by compiling it. */
export async function vegaLiteSvg(spec: object): Promise<string> {
  const vega = await import('vega');
  const vl = await import('vega-lite');
  const compiled = vl.compile(spec as unknown as Parameters<typeof vl.compile>[0]).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

export async function sweepCommand(model: string, opts: SweepArgs): Promise<void> {
  const report = await sweep(model, opts);
  if (opts.out) report.files = writeSweepFiles(opts.out, 'sweep', report, await sweepSvg(report));
  if (opts.json) console.log(JSON.stringify(report));
  else console.log(formatSweep(report) + (report.files ? `\nwrote ${report.files.json} and ${report.files.svg}` : ''));
}

/** Writes DIR/NAME.json (the report, with the file names) and DIR/NAME.svg; returns the file names. */
export function writeSweepFiles(dir: string, name: string, report: object, svg: string): { json: string; svg: string } {
  const files = { json: join(dir, `${name}.json`), svg: join(dir, `${name}.svg`) };
  try {
    mkdirSync(dir, { recursive: true });
    writeFileSync(files.json, JSON.stringify({ ...report, files }, null, 2) + '\n');
    writeFileSync(files.svg, svg);
  } catch (e) {
    throw new InputError(`cannot write to ${dir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { file: dir });
  }
  return files;
}
