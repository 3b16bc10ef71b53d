/**
 * The training study (`dendra sweep --train`): the in-situ learning paper's Fig. 4b. Accuracy against the
 * fraction of stuck devices for three ways of getting a network onto one defective chip:
 *   - in-situ training on that chip, blind to its stuck devices (runtime/train/insitu.ts);
 *   - the ONNX (ex-situ trained) weights loaded naively (compile --remap none);
 *   - the ONNX weights placed around the chip's defect map by dendra's remapping (compile --remap auto,
 *     weighted by the training inputs).
 * One point is one chip: for rate index ri and trial t its defect map is generated with
 * seed·1000003 + ri·1009 + t (as the fault-rate study's chips), training is seeded with that chip seed, and the
 * three networks are evaluated on the test samples with simulator seed t. A point depends only on these seeds
 * and the study's inputs, so any process (a shard, a queue worker) may compute any point.
 */
import { readFileSync } from 'node:fs';
import { compile, importModel } from '../compiler/index.js';
import { dendraVersion, writeArtifact } from '../artifact/write.js';
import { generateDefects, type DefectPattern } from '../common/defects.js';
import { InputError } from '../common/errors.js';
import { readNpy } from '../common/npy.js';
import { loadProfile, type DeviceProfile } from '../common/profile.js';
import { InferenceSession } from '../runtime/index.js';
import { pulseModelOf } from '../runtime/pulse-chip.js';
import { trainInSitu } from '../runtime/train/insitu.js';
import { OPTIMIZERS, type OptimizerKind } from '../runtime/train/optimizer.js';
import { readLabels } from '../cli/eval.js';
import { argmaxRows, parseIntOption, runAll } from '../cli/io.js';
import { parseRates, profileBytes, profileFrom, stats, type Stats } from './fault-rate.js';
import { addBlob, studyId, type RunInfo, type Study, type StudyHandler } from './study.js';

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

/** One chip's result. */
export interface SweepTrainPoint {
  rate: number;
  trial: number;
  chipSeed: number;
  /** Stuck devices on the chip. */
  faults: number;
  /** Test accuracy (0–1) of the network trained in situ on the chip, loaded naively, remapped. */
  inSitu: number;
  naive: number;
  remapped: number;
}

export interface SweepTrainReport {
  kind: 'sweep-train';
  dendra: string;
  /** The study's id (sweep/study.ts). */
  study: string;
  model: { file: string; sha256: string; shape: string };
  device: string;
  chipArrays: number;
  trainSamples: number;
  testSamples: number;
  settings: {
    rates: number[];
    trials: number;
    onFraction: number;
    pattern: DefectPattern;
    seed: number;
    epochs: number;
    batch: number;
    optimizer: OptimizerKind;
    lr: number | null;
    input: string;
    labels: string;
    test: string[];
  };
  rates: { rate: number; points: SweepTrainPoint[]; inSitu: Stats; naive: Stats; remapped: Stats }[];
  /** How this report was computed (local, shards, queue) and the wall time: not part of the results. */
  run: RunInfo;
  files?: { json: string; svg: string };
}

export interface TrainSettings {
  rates: number[];
  trials: number;
  onFraction: number;
  pattern: DefectPattern;
  seed: number;
  epochs: number;
  batch: number;
  optimizer: OptimizerKind;
  lr: number | null;
}

export interface TrainHeader {
  model: string;
  input: string;
  labels: string;
  test: string[];
  sha256: string;
  shape: string;
  device: string;
  chipArrays: number;
  trainSamples: number;
  testSamples: number;
}

export type TrainStudy = Study<TrainSettings, TrainHeader>;
export interface TrainPointSpec {
  rateIndex: number;
  rate: number;
  trial: number;
  chipSeed: number;
}

const PATTERNS: DefectPattern[] = ['random', 'rows', 'columns', 'clustered'];

function readBytes(file: string, what: string): Uint8Array {
  try {
    return readFileSync(file);
  } catch (e) {
    throw new InputError(`cannot read ${what}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { file });
  }
}

/** Samples along the first dimension, as float32. */
function samplesFrom(bytes: Uint8Array, file: string): { x: Float32Array; n: number } {
  const a = readNpy(bytes, file);
  const n = a.shape[0] ?? 0;
  if (a.shape.length < 2 || n === 0) throw new InputError(`${file} has shape (${a.shape.join(', ')}); expected samples along the first dimension`, { file });
  return { x: a.data instanceof Float32Array ? a.data : Float32Array.from(a.data), n };
}

interface Data {
  train: { inputs: Float32Array; labels: Int32Array };
  test: { inputs: Float32Array; labels: Int32Array };
}

function dataFrom(bytes: { input: Uint8Array; labels: Uint8Array; testInput: Uint8Array; testLabels: Uint8Array }, h: Pick<TrainHeader, 'input' | 'labels' | 'test'>, features: { in: number; classes: number }): Data {
  const tr = samplesFrom(bytes.input, h.input);
  const te = samplesFrom(bytes.testInput, h.test[0]!);
  for (const [s, file] of [[tr, h.input], [te, h.test[0]!]] as const) {
    const f = s.x.length / s.n;
    if (f !== features.in) throw new InputError(`${file} has ${f} features per sample; the model takes ${features.in}`, { file });
  }
  return {
    train: { inputs: tr.x, labels: readLabels(h.labels, tr.n, readNpy(bytes.labels, h.labels), features.classes) },
    test: { inputs: te.x, labels: readLabels(h.test[1]!, te.n, readNpy(bytes.testLabels, h.test[1]!), features.classes) },
  };
}

/**
 * From the command line's arguments to a study: every option checked, the training and test samples read
 * (and checked against the model) and put in `blobs` by hash. Cheap: compiles the fault-free network once.
 */
export async function prepareTrain(model: string, opts: SweepTrainArgs): Promise<{ study: TrainStudy; blobs: Map<string, Uint8Array> }> {
  const rates = parseRates(opts.rates);
  const trials = parseIntOption(String(opts.trials), '--trials', 1, 10_000);
  const onFraction = opts.onFraction === undefined ? 0.5 : Number(opts.onFraction);
  if (!(String(opts.onFraction ?? '0.5').trim() !== '' && onFraction >= 0 && onFraction <= 1)) throw new InputError(`--on-fraction must be a number from 0 to 1 (got '${opts.onFraction}')`);
  const pattern = (opts.pattern ?? 'random') as DefectPattern;
  if (!PATTERNS.includes(pattern)) throw new InputError(`--pattern must be random, rows, columns or clustered (got '${pattern}')`);
  if (!opts.test || opts.test.length !== 2) throw new InputError('--train needs the test samples: --test Xt.npy Lt.npy (the ex-situ and in-situ networks are evaluated on them)');
  const optimizer = opts.optimizer ?? 'rmsprop';
  if (!(OPTIMIZERS as readonly string[]).includes(optimizer)) throw new InputError(`--optimizer must be one of ${OPTIMIZERS.join(', ')} (got '${optimizer}')`);
  const profile = loadProfile(opts.device);
  // What every point's training would refuse, refused here, before any job.
  pulseModelOf(profile);
  if (importModel(model).head === 'logsoftmax') throw new InputError('in-situ training ends in softmax cross-entropy on the host; the model already ends in LogSoftmax — export the logits (or Softmax) instead', { file: model });
  const blobs = new Map<string, Uint8Array>();
  const refs: Record<string, string> = {};
  const modelBytes = readBytes(model, 'the model');
  refs['model'] = addBlob(blobs, modelBytes);
  refs['profile'] = addBlob(blobs, profileBytes(profile));
  const files = { input: readBytes(opts.input, 'the training inputs'), labels: readBytes(opts.labels, 'the training labels'), testInput: readBytes(opts.test[0]!, 'the test inputs'), testLabels: readBytes(opts.test[1]!, 'the test labels') };
  const base = compile(model, { device: profile });
  const header = { input: opts.input, labels: opts.labels, test: opts.test };
  const data = dataFrom(files, header, { in: base.layers[0]!.inFeatures, classes: base.output.features });
  for (const [role, bytes] of Object.entries(files)) refs[role] = addBlob(blobs, bytes);
  const settings: TrainSettings = {
    rates,
    trials,
    onFraction,
    pattern,
    seed: opts.seed ?? 0,
    epochs: opts.epochs ?? 20,
    batch: opts.batch ?? 50,
    optimizer,
    lr: opts.lr ?? null,
  };
  const study: TrainStudy = {
    kind: 'sweep-train',
    dendra: dendraVersion(),
    blobs: refs,
    settings,
    header: {
      model,
      ...header,
      sha256: base.source.sha256,
      shape: [base.layers[0]!.inFeatures, ...base.layers.map((l) => l.outFeatures)].join('-'),
      device: profile.name,
      chipArrays: base.arrays.length,
      trainSamples: data.train.labels.length,
      testSamples: data.test.labels.length,
    },
  };
  return { study, blobs };
}

interface Context {
  model: Uint8Array;
  profile: DeviceProfile;
  chipArrays: number;
  data: Data;
  settings: TrainSettings;
}

async function accuracy(bytes: Uint8Array, seed: number, data: Data['test']): Promise<number> {
  // One thread: the result must not depend on the machine that computes the point.
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

const pct = (r: number) => `${+(100 * r).toFixed(4)} %`;

export const trainHandler: StudyHandler<TrainSettings, TrainHeader, TrainPointSpec, SweepTrainPoint, Context, SweepTrainReport> = {
  kind: 'sweep-train',

  points(study) {
    const { rates, trials, seed } = study.settings;
    const points: TrainPointSpec[] = [];
    for (let ri = 0; ri < rates.length; ri++) {
      for (let t = 0; t < trials; t++) points.push({ rateIndex: ri, rate: rates[ri]!, trial: t, chipSeed: seed * 1000003 + ri * 1009 + t });
    }
    return points;
  },

  label: (study, p) => `rate ${pct(p.rate)}, trial ${p.trial + 1}/${study.settings.trials}: training`,

  async context(study, blobs) {
    const model = await blobs(study.blobs['model']!, 'model');
    const profile = await profileFrom(blobs, study.blobs['profile']!);
    const base = compile(model, { device: profile });
    const b = study.blobs;
    const data = dataFrom(
      {
        input: await blobs(b['input']!, 'training inputs'),
        labels: await blobs(b['labels']!, 'training labels'),
        testInput: await blobs(b['testInput']!, 'test inputs'),
        testLabels: await blobs(b['testLabels']!, 'test labels'),
      },
      study.header,
      { in: base.layers[0]!.inFeatures, classes: base.output.features },
    );
    return { model, profile, chipArrays: base.arrays.length, data, settings: study.settings };
  },

  async run(ctx, p) {
    const s = ctx.settings;
    const map = generateDefects(ctx.profile, { rate: p.rate, onFraction: s.onFraction, pattern: s.pattern, seed: p.chipSeed, arrays: ctx.chipArrays });
    const faults = map.arrays.reduce((sum, a) => sum + a.faults.length, 0);
    const trained = await trainInSitu({
      model: ctx.model,
      device: ctx.profile,
      inputs: ctx.data.train.inputs,
      labels: ctx.data.train.labels,
      test: ctx.data.test,
      defects: map,
      seed: p.chipSeed,
      epochs: s.epochs,
      batch: s.batch,
      optimizer: s.optimizer,
      lr: s.lr ?? undefined,
      evalEvery: Number.MAX_SAFE_INTEGER,
    });
    const naive = await accuracy(writeArtifact(compile(ctx.model, { device: ctx.profile, defects: map, remap: 'none' })), p.trial, ctx.data.test);
    const remapped = await accuracy(writeArtifact(compile(ctx.model, { device: ctx.profile, defects: map, remap: 'auto', calibrate: ctx.data.train.inputs })), p.trial, ctx.data.test);
    return { rate: p.rate, trial: p.trial, chipSeed: p.chipSeed, faults, inSitu: trained.report.finalAccuracy!, naive, remapped };
  },

  async release() {},

  assemble(study, results, run) {
    const h = study.header;
    const s = study.settings;
    return {
      kind: 'sweep-train',
      dendra: study.dendra,
      study: studyId(study),
      model: { file: h.model, sha256: h.sha256, shape: h.shape },
      device: h.device,
      chipArrays: h.chipArrays,
      trainSamples: h.trainSamples,
      testSamples: h.testSamples,
      settings: { ...s, input: h.input, labels: h.labels, test: h.test },
      rates: s.rates.map((rate, ri) => {
        const points = results.slice(ri * s.trials, (ri + 1) * s.trials);
        return { rate, points, inSitu: stats(points.map((p) => p.inSitu)), naive: stats(points.map((p) => p.naive)), remapped: stats(points.map((p) => p.remapped)) };
      }),
      run,
    };
  },
};
