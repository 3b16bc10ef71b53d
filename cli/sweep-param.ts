/**
 * dendra sweep --param PATH=V1,V2,...: how one trained dendritic network fares as one property of its
 * dendrite devices changes (Li et al. 2020, Extended Data Fig. 6). The study itself is sweep/param.ts; this
 * file prints it: the table and the plot.
 */
import { basename } from 'node:path';
import { formatJoules } from '../runtime/energy.js';
import type { SweepParamReport } from '../sweep/param.js';
import { vegaLiteSvg } from './sweep.js';

export { parseParam, patchProfile, SWEEP_PARAMS, type SweepParam, type SweepParamArgs, type SweepParamPoint, type SweepParamReport } from '../sweep/param.js';

const pct = (x: number) => (100 * x).toFixed(2);
const times = (x: number | null) => (x === null ? 'n/a' : `${x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2)}x`);

/** The text table: one row per value, the base profile's value marked; a sparsity sweep adds active somas (dendritic and plain). */
export function formatSweepParam(r: SweepParamReport): string {
  const sparsity = r.param.path === 'finetune.sparsity';
  const share = (x: number | null | undefined) => (x === null || x === undefined ? 'n/a' : pct(x));
  const head = [r.param.path, 'accuracy %', 'without %', 'power adv.', 'energy adv.', 'energy/inference', 'without', ...(sparsity ? ['active somas %', 'plain %'] : [])];
  const rows = r.points.map((p) => [
    `${p.value}${!sparsity && p.value === r.param.base ? ' (base)' : ''}`,
    pct(p.withDendrites.accuracy),
    pct(p.withoutDendrites.accuracy),
    times(p.powerAdvantage),
    times(p.energyAdvantage),
    formatJoules(p.withDendrites.energyPerInferenceJ),
    formatJoules(p.withoutDendrites.energyPerInferenceJ),
    ...(sparsity ? [share(p.activeSomas?.dendritic), share(p.activeSomas?.plain)] : []),
  ]);
  const width = head.map((h, c) => Math.max(h.length, ...rows.map((row) => row[c]!.length)));
  const line = (cells: string[]) => cells.map((x, c) => (c === 0 ? x.padEnd(width[c]!) : x.padStart(width[c]!))).join('   ').trimEnd();
  const noise = r.settings.inputNoise ? `, input noise σ = ${r.settings.inputNoise}` : '';
  const calibration = sparsity
    ? `compiled, ${r.calibration ? `calibrated (${r.calibration})` : 'not calibrated'} and fine-tuned at each sparsity; "without" is the plain compile`
    : r.calibration ? `calibrated at the base profile: ${r.calibration}` : 'not calibrated: dendrite gains from the weights alone';
  return [
    `sweep of ${r.param.path}${sparsity ? '' : ` (base ${r.param.base})`}: ${basename(r.model.file)} (${r.model.shape}) on ${r.device.name}, branches ${r.branches.join(', ')} (${r.strategy}), ${r.samples} samples${noise}`,
    calibration,
    '',
    line(head),
    ...rows.map(line),
  ].join('\n');
}

/** The plot (Extended Data Fig. 6a/d): power advantage (log scale) over accuracy with and without dendrites, against the parameter. */
export async function sweepParamSvg(r: SweepParamReport): Promise<string> {
  const WITH = 'with dendrites';
  const sparsity = r.param.path === 'finetune.sparsity';
  const WITHOUT = sparsity ? 'plain compile' : 'without dendrites';
  const values = r.param.values;
  const logX = values.every((v) => v > 0) && Math.max(...values) / Math.min(...values) >= 100;
  const x = { field: 'value', type: 'quantitative', title: r.param.path, scale: logX ? { type: 'log' } : { zero: false } } as const;
  const power = r.points.filter((p) => p.powerAdvantage !== null && p.powerAdvantage > 0).map((p) => ({ value: p.value, advantage: p.powerAdvantage }));
  const energy = r.points.flatMap((p) => [
    { value: p.value, series: WITH, energy: 1e9 * p.withDendrites.energyPerInferenceJ },
    { value: p.value, series: WITHOUT, energy: 1e9 * p.withoutDendrites.energyPerInferenceJ },
  ]);
  const accuracy = r.points.flatMap((p) => [
    { value: p.value, series: WITH, accuracy: 100 * p.withDendrites.accuracy },
    { value: p.value, series: WITHOUT, accuracy: 100 * p.withoutDendrites.accuracy },
  ]);
  // The base profile's value (where the network was calibrated), dashed; left out where a log axis cannot show it.
  const base = logX && !(r.param.base > 0) ? [] : [{ data: { values: [{ value: r.param.base }] }, mark: { type: 'rule', color: '#999999', strokeDash: [4, 4] }, encoding: { x: { field: 'value', type: 'quantitative' } } }];
  const color = { field: 'series', type: 'nominal', title: null, scale: { domain: [WITH, WITHOUT], range: ['#1f77b4', '#555555'] }, legend: { symbolType: 'stroke', symbolStrokeWidth: 2, orient: 'bottom' } } as const;
  const dash = { field: 'series', type: 'nominal', title: null, scale: { domain: [WITH, WITHOUT], range: [[1, 0], [6, 4]] } } as const;
  const spec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: `dendrites against ${r.param.path}`,
      // Lines short enough for the headless renderer's text-width estimate, which sizes the picture.
      subtitle: [
        `${basename(r.model.file)} on ${r.device.name}, branches ${r.branches.join(', ')} (${r.strategy})`,
        `${r.samples} samples${r.settings.inputNoise ? `, input noise σ = ${r.settings.inputNoise}` : ''}`,
        sparsity
          ? 'compiled, calibrated and fine-tuned at each sparsity; against the plain compile'
          : `${r.calibration ? 'calibrated' : 'not calibrated'} at ${r.param.path} = ${r.param.base} (dashed)${power.length === 0 ? '; no somas: no power advantage' : ''}`,
      ],
      anchor: 'start',
    },
    background: 'white',
    padding: 10,
    vconcat: [
      {
        width: 480,
        height: 220,
        // Sparsity: the whole chip's energy of both networks (each point is its own compile, no base value).
        layer: sparsity
          ? [
              {
                data: { values: energy },
                mark: { type: 'line', point: true },
                encoding: { x: { ...x, axis: { title: null } }, y: { field: 'energy', type: 'quantitative', title: 'whole chip (nJ per inference)', scale: { zero: false } }, color, strokeDash: dash },
              },
            ]
          : [
              {
                data: { values: power },
                mark: { type: 'line', color: '#d62728', point: { color: '#d62728' } },
                encoding: { x: { ...x, axis: { title: null } }, y: { field: 'advantage', type: 'quantitative', title: 'power advantage (soma, ×)', scale: { type: 'log' } } },
              },
              ...base,
            ],
      },
      {
        width: 480,
        height: 220,
        layer: [
          {
            data: { values: accuracy },
            mark: { type: 'line', point: true },
            encoding: { x, y: { field: 'accuracy', type: 'quantitative', title: 'accuracy (%)', scale: { zero: false } }, color, strokeDash: dash },
          },
          ...base,
        ],
      },
    ],
  };
  return vegaLiteSvg(spec);
}
