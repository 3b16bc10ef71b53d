/**
 * dendra sweep MODEL --train: the in-situ learning paper's Fig. 4b. Accuracy against the fraction of stuck
 * devices for three ways of getting a network onto one defective chip: trained in situ on it (blind to its
 * stuck devices), the ONNX weights loaded naively, and remapped around the chip's defect map. The study
 * itself is sweep/train.ts (one point = one chip, so it runs locally, as shards and on a queue); this file
 * prints it: the table and the plot.
 */
import { basename } from 'node:path';
import type { Stats } from '../sweep/fault-rate.js';
import type { SweepTrainReport } from '../sweep/train.js';
import { runSummary, vegaLiteSvg } from './sweep.js';

export { prepareTrain, type SweepTrainArgs, type SweepTrainPoint, type SweepTrainReport } from '../sweep/train.js';

export function formatSweepTrain(r: SweepTrainReport): string {
  const p = (s: Stats) => `${(100 * s.mean).toFixed(2)} ± ${(100 * s.sd).toFixed(2)}`;
  const head = [
    `${basename(r.model.file)} (${r.model.shape}) on ${r.device}: test accuracy (%) against stuck devices (${+(100 * r.settings.onFraction).toFixed(2)} % of them stuck ON), ${r.settings.trials} chip(s) per rate`,
    `in situ: trained on the chip, blind to its defects (${r.settings.epochs} epochs, ${r.settings.optimizer}); ex situ: the ONNX weights loaded naively or remapped around the chip's map`,
  ];
  const rows = r.rates.map((x) => `${(100 * x.rate).toFixed(1).padStart(6)} %   in situ ${p(x.inSitu).padEnd(16)} ex situ naive ${p(x.naive).padEnd(16)} ex situ remapped ${p(x.remapped)}`);
  return [...head, '', ...rows, '', `± is the sample standard deviation over chips; ${runSummary(r.run)}`].join('\n');
}

export async function sweepTrainSvg(r: SweepTrainReport): Promise<string> {
  const series = [['inSitu', 'in-situ training'], ['naive', 'ex-situ, loaded naively'], ['remapped', 'ex-situ, remapped']] as const;
  const values = r.rates.flatMap((x) => series.map(([k, name]) => ({ rate: 100 * x.rate, series: name, mean: 100 * x[k].mean, lo: 100 * (x[k].mean - x[k].sd), hi: 100 * (x[k].mean + x[k].sd) })));
  const color = { field: 'series', type: 'nominal', title: null, scale: { domain: series.map((s) => s[1]), range: ['#2ca02c', '#d62728', '#1f77b4'] }, legend: { labelLimit: 300 } } as const;
  const y = (field: string) => ({ field, type: 'quantitative', title: 'test accuracy (%)', scale: { domain: [0, 100] } }) as const;
  return vegaLiteSvg({
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: `${basename(r.model.file)} on ${r.device}: accuracy against stuck devices`,
      subtitle: `${r.settings.trials} chip(s) per rate, ${+(100 * r.settings.onFraction).toFixed(2)} % stuck ON; mean ± sd`,
      anchor: 'start',
    },
    width: 480,
    height: 320,
    background: 'white',
    padding: 10,
    data: { values },
    layer: [
      { mark: { type: 'line', point: true }, encoding: { x: { field: 'rate', type: 'quantitative', title: 'stuck devices (%)' }, y: y('mean'), color } },
      { mark: { type: 'errorbar', ticks: true }, encoding: { x: { field: 'rate', type: 'quantitative' }, y: y('lo'), y2: { field: 'hi' }, color } },
    ],
  });
}
