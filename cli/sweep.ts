/**
 * dendra sweep (fault rates): how accuracy falls with the fault rate, placing a network naively and with
 * remapping on many random chips. The study itself (its points, seeds and report) is sweep/fault-rate.ts;
 * this file prints it: the table and the plot.
 */
import { writeFileSync } from 'node:fs';
import { makeOutputFolder } from '../common/files.js';
import { basename, join } from 'node:path';
import { InputError } from '../common/errors.js';
import type { SweepReport } from '../sweep/fault-rate.js';

export { parseRates, stats, type SweepArgs, type SweepReport, type SweepRate, type SweepTrial, type Stats } from '../sweep/fault-rate.js';

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
  const foot = `± is the sample standard deviation over chips (fault-free: over simulator seeds); loss = fault-free mean − mean, in points; ${runSummary(r.run)}`;
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

/** How a report was computed, for a table's foot: "12.3 s", "queue, 3 workers, 4.1 s", "merged from 3 shards (...)". */
export function runSummary(run: SweepReport['run']): string {
  if (run.mode === 'queue') {
    const w = Object.keys(run.workers ?? {}).length;
    return `${w} worker${w === 1 ? '' : 's'} on a queue, ${run.seconds.toFixed(1)} s`;
  }
  if (run.mode === 'shards') return `merged from ${run.shards?.length ?? 0} shards (${(run.shards ?? []).map((x) => `${x.seconds.toFixed(1)} s`).join(', ')})`;
  return `${run.seconds.toFixed(1)} s`;
}

/** Writes DIR/NAME.json (the report, with the file names) and DIR/NAME.svg; returns the file names. */
export function writeSweepFiles(dir: string, name: string, report: object, svg: string): { json: string; svg: string } {
  const files = { json: join(dir, `${name}.json`), svg: join(dir, `${name}.svg`) };
  try {
    makeOutputFolder(dir, '--out');
    writeFileSync(files.json, JSON.stringify({ ...report, files }, null, 2) + '\n');
    writeFileSync(files.svg, svg);
  } catch (e) {
    throw new InputError(`cannot write to ${dir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { file: dir });
  }
  return files;
}
