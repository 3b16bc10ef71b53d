/**
 * dendra sweep MODEL --train: the in-situ learning paper's Fig. 4b. Accuracy against the fraction of stuck
 * devices for three ways of getting a network onto one defective chip:
 *   - in-situ training on that chip, blind to its stuck devices (runtime/train/insitu.ts);
 *   - the ONNX (ex-situ trained) weights loaded naively (compile --remap none);
 *   - the ONNX weights placed around the chip's defect map by dendra's remapping (compile --remap auto).
 * For each rate and trial one chip is drawn (generateDefects, seed·1000003 + rate index·1009 + trial, as
 * `dendra sweep`); all three are evaluated on the test samples. `sweepTrainPoint` computes one (rate, trial)
 * point on its own, so a point can run anywhere (a job queue).
 */
import { basename } from 'node:path';
import { compile } from '../compiler/index.js';
import { dendraVersion, writeArtifact } from '../artifact/write.js';
import { generateDefects, type DefectPattern } from '../common/defects.js';
import { InputError } from '../common/errors.js';
import { loadProfile, type DeviceProfile } from '../common/profile.js';
import { InferenceSession } from '../runtime/index.js';
import { trainInSitu } from '../runtime/train/insitu.js';
import type { OptimizerKind } from '../runtime/train/optimizer.js';
import { readLabels } from './eval.js';
import { argmaxRows, parseIntOption, runAll } from './io.js';
import { progressBar } from './progress.js';
import { parseRates, stats, vegaLiteSvg, writeSweepFiles, type Stats } from './sweep.js';
import { readSamples } from './train.js';

export interface SweepTrainData {
  train: { inputs: Float32Array; labels: Int32Array };
  test: { inputs: Float32Array; labels: Int32Array };
}

/** One point of the sweep: everything it needs, nothing shared. */
export interface SweepTrainPointSpec {
  model: string;
  device: DeviceProfile;
  rate: number;
  onFraction: number;
  pattern: DefectPattern;
  /** The chip's seed (its defect map), and the trial number (the simulator's seed). */
  chipSeed: number;
  trial: number;
  arrays: number;
  training: { epochs: number; batch: number; optimizer: OptimizerKind; lr?: number };
}

export interface SweepTrainPoint {
  rate: number;
  trial: number;
  chipSeed: number;
  faults: number;
  inSitu: number;
  naive: number;
  remapped: number;
  trainSeconds: number;
}

async function accuracy(bytes: Uint8Array, seed: number, data: SweepTrainData['test']): Promise<number> {
  const s = await InferenceSession.create(bytes, { seed, threads: 1 });
  try {
    const n = data.labels.length;
    const y = await runAll(s, data.inputs, n);
    const predicted = argmaxRows(y, n, s.artifact.output.features);
    let correct = 0;
    for (let i = 0; i < n; i++) if (predicted[i] === data.labels[i]) correct++;
    return correct / n;
  } finally {
    await s.release();
  }
}

/** One (rate, trial) point: one chip, trained in situ and loaded ex situ (naive and remapped). */
export async function sweepTrainPoint(spec: SweepTrainPointSpec, data: SweepTrainData): Promise<SweepTrainPoint> {
  const profile = spec.device;
  const map = generateDefects(profile, { rate: spec.rate, onFraction: spec.onFraction, pattern: spec.pattern, seed: spec.chipSeed, arrays: spec.arrays });
  const faults = map.arrays.reduce((s, a) => s + a.faults.length, 0);
  const t0 = performance.now();
  const trained = await trainInSitu({
    model: spec.model,
    device: profile,
    inputs: data.train.inputs,
    labels: data.train.labels,
    test: data.test,
    defects: map,
    seed: spec.chipSeed,
    epochs: spec.training.epochs,
    batch: spec.training.batch,
    optimizer: spec.training.optimizer,
    lr: spec.training.lr,
    evalEvery: Number.MAX_SAFE_INTEGER,
  });
  const trainSeconds = (performance.now() - t0) / 1000;
  const naive = await accuracy(writeArtifact(compile(spec.model, { device: profile, defects: map, remap: 'none' })), spec.trial, data.test);
  const remapped = await accuracy(writeArtifact(compile(spec.model, { device: profile, defects: map, remap: 'auto', calibrate: data.train.inputs })), spec.trial, data.test);
  return { rate: spec.rate, trial: spec.trial, chipSeed: spec.chipSeed, faults, inSitu: trained.report.finalAccuracy!, naive, remapped, trainSeconds };
}

export interface SweepTrainArgs {
  device: string;
  rates: string;
  trials: string;
  input: string;
  labels: string;
  test?: string[];
  onFraction?: string;
  pattern?: string;
  seed?: number;
  epochs?: number;
  batch?: number;
  optimizer?: OptimizerKind;
  lr?: number;
  out?: string;
  json?: boolean;
}

export interface SweepTrainReport {
  kind: 'sweep-train';
  dendra: string;
  model: { file: string; shape: string };
  device: string;
  chipArrays: number;
  trainSamples: number;
  testSamples: number;
  settings: { rates: number[]; trials: number; onFraction: number; pattern: DefectPattern; seed: number; epochs: number; batch: number; optimizer: OptimizerKind; lr: number | null };
  rates: { rate: number; points: SweepTrainPoint[]; inSitu: Stats; naive: Stats; remapped: Stats }[];
  seconds: number;
  files?: { json: string; svg: string };
}

export async function sweepTrain(model: string, opts: SweepTrainArgs): Promise<SweepTrainReport> {
  const t0 = performance.now();
  const rates = parseRates(opts.rates);
  const trials = parseIntOption(String(opts.trials), '--trials', 1, 10_000);
  const onFraction = opts.onFraction === undefined ? 0.5 : Number(opts.onFraction);
  if (!(onFraction >= 0 && onFraction <= 1)) throw new InputError(`--on-fraction must be a number from 0 to 1 (got '${opts.onFraction}')`);
  const pattern = (opts.pattern ?? 'random') as DefectPattern;
  if (!opts.test || opts.test.length !== 2) throw new InputError('--train needs the test samples: --test Xt.npy Lt.npy (the ex-situ and in-situ networks are evaluated on them)');
  const profile = loadProfile(opts.device);
  const tr = readSamples(opts.input);
  const te = readSamples(opts.test[0]!);
  const data: SweepTrainData = {
    train: { inputs: tr.x, labels: readLabels(opts.labels, tr.n) },
    test: { inputs: te.x, labels: readLabels(opts.test[1]!, te.n) },
  };
  const base = compile(model, { device: profile });
  const seed = opts.seed ?? 0;
  const training = { epochs: opts.epochs ?? 20, batch: opts.batch ?? 50, optimizer: opts.optimizer ?? 'rmsprop', lr: opts.lr };
  const bar = opts.json ? undefined : progressBar('sweep --train', rates.length * trials, 'chips', true);
  const perRate: SweepTrainReport['rates'] = [];
  try {
    for (const [ri, rate] of rates.entries()) {
      const points: SweepTrainPoint[] = [];
      for (let t = 0; t < trials; t++) {
        bar?.stage(`rate ${+(100 * rate).toFixed(2)} %, trial ${t + 1}/${trials}`);
        points.push(await sweepTrainPoint({ model, device: profile, rate, onFraction, pattern, chipSeed: seed * 1000003 + ri * 1009 + t, trial: t, arrays: base.arrays.length, training }, data));
        bar?.increment();
      }
      perRate.push({ rate, points, inSitu: stats(points.map((p) => p.inSitu)), naive: stats(points.map((p) => p.naive)), remapped: stats(points.map((p) => p.remapped)) });
    }
  } finally {
    bar?.stop();
  }
  return {
    kind: 'sweep-train',
    dendra: dendraVersion(),
    model: { file: model, shape: [base.layers[0]!.inFeatures, ...base.layers.map((l) => l.outFeatures)].join('-') },
    device: profile.name,
    chipArrays: base.arrays.length,
    trainSamples: tr.n,
    testSamples: te.n,
    settings: { rates, trials, onFraction, pattern, seed, ...training, lr: training.lr ?? null },
    rates: perRate,
    seconds: (performance.now() - t0) / 1000,
  };
}

export function formatSweepTrain(r: SweepTrainReport): string {
  const p = (s: Stats) => `${(100 * s.mean).toFixed(2)} ± ${(100 * s.sd).toFixed(2)}`;
  const head = [
    `${basename(r.model.file)} (${r.model.shape}) on ${r.device}: test accuracy (%) against stuck devices (${+(100 * r.settings.onFraction).toFixed(2)} % of them stuck ON), ${r.settings.trials} chip(s) per rate`,
    `in situ: trained on the chip, blind to its defects (${r.settings.epochs} epochs, ${r.settings.optimizer}); ex situ: the ONNX weights loaded naively or remapped around the chip's map`,
  ];
  const rows = r.rates.map((x) => `${(100 * x.rate).toFixed(1).padStart(6)} %   in situ ${p(x.inSitu).padEnd(16)} ex situ naive ${p(x.naive).padEnd(16)} ex situ remapped ${p(x.remapped)}`);
  return [...head, '', ...rows, '', `± is the sample standard deviation over chips; ${r.seconds.toFixed(1)} s`].join('\n');
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

export async function sweepTrainCommand(model: string, opts: SweepTrainArgs): Promise<void> {
  const report = await sweepTrain(model, opts);
  if (opts.out) report.files = writeSweepFiles(opts.out, 'sweep-train', report, await sweepTrainSvg(report));
  if (opts.json) console.log(JSON.stringify(report));
  else console.log(formatSweepTrain(report) + (report.files ? `\nwrote ${report.files.json} and ${report.files.svg}` : ''));
}
