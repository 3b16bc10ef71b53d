/**
 * The fault-rate study (`dendra sweep --rates`): how accuracy falls with the fault rate, placing a network
 * naively and with remapping on many random chips. One point is one chip: for rate index ri and trial t the
 * chip's defect map is generated with seed·1000003 + ri·1009 + t, the network is compiled for it twice
 * (remap none and auto) and both artifacts are evaluated with simulator seed t. The fault-free chip (the
 * baseline) is evaluated once per trial seed. Every point depends only on these seeds, so any process may
 * compute any point.
 */
import { compile } from '../compiler/index.js';
import { dendraVersion, writeArtifact } from '../artifact/write.js';
import { generateDefects, type DefectPattern } from '../common/defects.js';
import { InputError } from '../common/errors.js';
import { readNpy } from '../common/npy.js';
import { loadProfile, validateProfile, type DeviceProfile } from '../common/profile.js';
import { InferenceSession } from '../runtime/index.js';
import { readLabels } from '../cli/eval.js';
import { argmaxRows, parseIntOption, readInputs, runAll } from '../cli/io.js';
import { addBlob, canonicalJson, studyId, type BlobSource, type RunInfo, type Study, type StudyHandler } from './study.js';
import { readFileSync } from 'node:fs';

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
  /** The study's id (sweep/study.ts): the same for every run of the same inputs and settings. */
  study: string;
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
  /** How this report was computed (local, shards, queue) and the wall time: not part of the results. */
  run: RunInfo;
  files?: { json: string; svg: string };
}

export interface FaultRateSettings {
  rates: number[];
  trials: number;
  onFraction: number;
  pattern: DefectPattern;
  seed: number;
  /** Whether the remapping is weighted by sample inputs (the 'calibrate' blob). */
  calibrate: boolean;
}

export interface FaultRateHeader {
  model: string;
  input: string;
  labels: string;
  calibrate: string | null;
  sha256: string;
  shape: string;
  device: SweepReport['device'];
  chipArrays: number;
  samples: number;
}

export type FaultRateStudy = Study<FaultRateSettings, FaultRateHeader>;

export type FaultRatePoint = { kind: 'baseline'; trial: number } | { kind: 'chip'; rateIndex: number; rate: number; trial: number; chipSeed: number };
export type FaultRateResult = { kind: 'baseline'; sessionSeed: number; accuracy: number } | ({ kind: 'chip' } & SweepTrial);

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

function readBytes(file: string, what: string): Uint8Array {
  try {
    return readFileSync(file);
  } catch (e) {
    throw new InputError(`cannot read ${what}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { file });
  }
}

/** A profile as bytes (canonical JSON), so that it is addressed by hash like the other inputs. */
export function profileBytes(profile: DeviceProfile): Uint8Array {
  return new TextEncoder().encode(canonicalJson(profile));
}

export async function profileFrom(blobs: BlobSource, hash: string): Promise<DeviceProfile> {
  return validateProfile(JSON.parse(new TextDecoder().decode(await blobs(hash, 'device profile'))));
}

/**
 * From the command line's arguments to a study: every option checked, the inputs read (and checked against
 * the model) and put in `blobs` by hash. Cheap: compiles the fault-free network once.
 */
export async function prepareFaultRate(model: string, opts: SweepArgs): Promise<{ study: FaultRateStudy; blobs: Map<string, Uint8Array> }> {
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
  const blobs = new Map<string, Uint8Array>();
  const refs: Record<string, string> = {};
  refs['model'] = addBlob(blobs, readBytes(model, 'the model'));
  refs['profile'] = addBlob(blobs, profileBytes(profile));
  if (opts.calibrate) {
    const bytes = readBytes(opts.calibrate, 'the calibration samples');
    readNpy(bytes, opts.calibrate); // a readable .npy, checked here rather than on a worker
    refs['calibrate'] = addBlob(blobs, bytes);
  }

  const base = compile(model, { device: profile });
  let n: number;
  {
    const s = await InferenceSession.create(writeArtifact(base), { seed: 0, threads: opts.threads });
    try {
      n = readInputs(s, opts.input).n;
    } finally {
      await s.release();
    }
    readLabels(opts.labels, n, undefined, base.output.features);
  }
  refs['input'] = addBlob(blobs, readBytes(opts.input, 'the inputs'));
  refs['labels'] = addBlob(blobs, readBytes(opts.labels, 'the labels'));

  const study: FaultRateStudy = {
    kind: 'sweep',
    dendra: dendraVersion(),
    blobs: refs,
    settings: { rates, trials, onFraction, pattern, seed, calibrate: opts.calibrate !== undefined },
    header: {
      model,
      input: opts.input,
      labels: opts.labels,
      calibrate: opts.calibrate ?? null,
      sha256: base.source.sha256,
      shape: [base.layers[0]!.inFeatures, ...base.layers.map((l) => l.outFeatures)].join('-'),
      device: { name: profile.name, rows, cols, differential: profile.array.differential },
      chipArrays: base.arrays.length,
      samples: n,
    },
  };
  return { study, blobs };
}

interface Context {
  model: Uint8Array;
  profile: DeviceProfile;
  baseBytes: Uint8Array;
  chipArrays: number;
  calibrate?: Float32Array;
  x: Float32Array;
  n: number;
  labels: Int32Array;
  onFraction: number;
  pattern: DefectPattern;
  threads?: number;
}

async function accuracy(ctx: Context, bytes: Uint8Array, sessionSeed: number): Promise<number> {
  const s = await InferenceSession.create(bytes, { seed: sessionSeed, threads: ctx.threads });
  try {
    const y = await runAll(s, ctx.x, ctx.n);
    const predicted = argmaxRows(y, ctx.n, s.artifact.output.features);
    let correct = 0;
    for (let i = 0; i < ctx.n; i++) if (predicted[i] === ctx.labels[i]) correct++;
    return correct / ctx.n;
  } finally {
    await s.release();
  }
}

const pct = (r: number) => `${+(100 * r).toFixed(4)} %`;

export const faultRateHandler: StudyHandler<FaultRateSettings, FaultRateHeader, FaultRatePoint, FaultRateResult, Context, SweepReport> = {
  kind: 'sweep',

  points(study) {
    const { rates, trials, seed } = study.settings;
    const points: FaultRatePoint[] = [];
    for (let t = 0; t < trials; t++) points.push({ kind: 'baseline', trial: t });
    for (let ri = 0; ri < rates.length; ri++) {
      for (let t = 0; t < trials; t++) points.push({ kind: 'chip', rateIndex: ri, rate: rates[ri]!, trial: t, chipSeed: seed * 1000003 + ri * 1009 + t });
    }
    return points;
  },

  label(study, p) {
    const of = `trial ${p.trial + 1}/${study.settings.trials}`;
    return p.kind === 'baseline' ? `fault-free, ${of}` : `rate ${pct(p.rate)}, ${of}`;
  },

  async context(study, blobs, opts) {
    const model = await blobs(study.blobs['model']!, 'model');
    const profile = await profileFrom(blobs, study.blobs['profile']!);
    const base = compile(model, { device: profile });
    const baseBytes = writeArtifact(base);
    const h = study.header;
    const calibrate = study.blobs['calibrate'] ? readNpy(await blobs(study.blobs['calibrate'], 'calibration samples'), h.calibrate ?? 'calibrate.npy').data : undefined;
    const inputs = readNpy(await blobs(study.blobs['input']!, 'inputs'), h.input);
    const s = await InferenceSession.create(baseBytes, { seed: 0, threads: opts.threads });
    let x: Float32Array;
    let n: number;
    try {
      const r = readInputs(s, h.input, inputs);
      x = r.x.data;
      n = r.n;
    } finally {
      await s.release();
    }
    const labels = readLabels(h.labels, n, readNpy(await blobs(study.blobs['labels']!, 'labels'), h.labels));
    return { model, profile, baseBytes, chipArrays: base.arrays.length, calibrate, x, n, labels, onFraction: study.settings.onFraction, pattern: study.settings.pattern, threads: opts.threads };
  },

  async run(ctx, p) {
    if (p.kind === 'baseline') return { kind: 'baseline', sessionSeed: p.trial, accuracy: await accuracy(ctx, ctx.baseBytes, p.trial) };
    return { kind: 'chip', ...(await chipTrial(ctx, p)) };
  },

  async release() {},

  assemble(study, results, run) {
    const h = study.header;
    const st = study.settings;
    const baselineTrials = results.flatMap((r) => (r.kind === 'baseline' ? [{ sessionSeed: r.sessionSeed, accuracy: r.accuracy }] : []));
    const chips = results.flatMap((r) => (r.kind === 'chip' ? [r] : []));
    const baseline = { ...stats(baselineTrials.map((b) => b.accuracy)), trials: baselineTrials };
    return {
      kind: 'sweep',
      dendra: study.dendra,
      study: studyId(study),
      model: { file: h.model, sha256: h.sha256, shape: h.shape },
      device: h.device,
      chipArrays: h.chipArrays,
      samples: h.samples,
      settings: { rates: st.rates, trials: st.trials, onFraction: st.onFraction, pattern: st.pattern, seed: st.seed, calibrate: h.calibrate, input: h.input, labels: h.labels },
      baseline,
      rates: st.rates.map((rate, ri) => {
        const ts: SweepTrial[] = chips.slice(ri * st.trials, (ri + 1) * st.trials).map(({ kind: _k, ...t }) => t);
        const naive = stats(ts.map((t) => t.naive));
        const remapped = stats(ts.map((t) => t.remapped));
        return { rate, trials: ts, naive, remapped, naiveLoss: baseline.mean - naive.mean, remappedLoss: baseline.mean - remapped.mean };
      }),
      run,
    };
  },
};

/** One chip: its defect map, the network placed on it naively and remapped, both evaluated. */
async function chipTrial(ctx: Context, p: Extract<FaultRatePoint, { kind: 'chip' }>): Promise<SweepTrial> {
  const map = generateDefects(ctx.profile, { rate: p.rate, onFraction: ctx.onFraction, pattern: ctx.pattern, seed: p.chipSeed, arrays: ctx.chipArrays });
  const faults = map.arrays.reduce((s, a) => s + a.faults.length, 0);
  const on = map.arrays.reduce((s, a) => s + a.faults.filter((f) => f[2] === 'on').length, 0);
  const naive = await accuracy(ctx, writeArtifact(compile(ctx.model, { device: ctx.profile, defects: map, remap: 'none' })), p.trial);
  const remapped = await accuracy(ctx, writeArtifact(compile(ctx.model, { device: ctx.profile, defects: map, remap: 'auto', calibrate: ctx.calibrate })), p.trial);
  return { trial: p.trial, chipSeed: p.chipSeed, sessionSeed: p.trial, faults, on, naive, remapped };
}
