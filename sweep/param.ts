/**
 * The parameter study (`dendra sweep --param PATH=V1,V2,...`): how one trained dendritic network fares as one
 * property of its dendrite devices changes (Li et al. 2020, Extended Data Fig. 6: power advantage and accuracy
 * against the I–V nonlinearity, the ON/OFF ratio, the applied voltage...).
 *
 * The network is compiled once per process, for the base profile (branches assigned and, with calibration
 * samples, its dendrite gains calibrated at the base device); one point is one value: the artifact's profile
 * field is patched (the weights, branches and gains stay) and the patched artifact is evaluated on the
 * labelled inputs with its dendrites and bypassed, as `dendra eval` evaluates a dendritic artifact. Each variant's
 * somas are set to their own full scale (on the calibration samples), as a compile for that device would set them.
 *
 * `finetune.sparsity=V1,V2,...` (issue 11) is the one value that is no profile field: one point is one activity
 * penalty, for which the model is compiled with its branches, calibrated and fine-tuned (on the study's fine-tuning
 * samples) at that sparsity, then evaluated as `dendra eval` does, against the plain compile the artifact carries.
 */
import { readFileSync } from 'node:fs';
import { compile, compileWithReport, type CompileOptions, type CompileResult } from '../compiler/index.js';
import { somaFullScales } from '../compiler/passes/calibrate-dendrites.js';
import type { BranchStrategy } from '../compiler/passes/assign-branches.js';
import { dendraVersion, writeArtifact } from '../artifact/write.js';
import type { Artifact } from '../artifact/format.js';
import { InputError, ProfileError } from '../common/errors.js';
import { readNpy } from '../common/npy.js';
import { loadProfile, validateProfile, type DeviceProfile } from '../common/profile.js';
import { InferenceSession } from '../runtime/index.js';
import { addInputNoise, compareDendrites, evalRun, readLabels, type EvalRun } from '../cli/eval.js';
import { parseBranches } from '../cli/compile.js';
import { readInputs } from '../cli/io.js';
import { profileBytes, profileFrom } from './fault-rate.js';
import { addBlob, studyId, type BlobSource, type RunInfo, type Study, type StudyHandler } from './study.js';

export interface SweepParamArgs {
  /** PATH=V1,V2,... */
  param: string;
  device?: string;
  branches?: string;
  branchStrategy?: BranchStrategy;
  /** X.npy [L.npy] */
  calibrate?: string[];
  input: string;
  labels: string;
  inputNoise?: number;
  seed?: number;
  threads?: number;
  /** finetune.sparsity: the fine-tuning samples and labels, epochs, calibration mode. */
  finetune?: string[];
  epochs?: number;
  dendriteMode?: 'efficient' | 'nonlinear';
  out?: string;
  json?: boolean;
}

/** The profile fields a parameter sweep can vary: the dendrite device's numeric properties. */
export const SWEEP_PARAMS = [
  'dendrite.nonlinearity',
  'dendrite.onOffRatio',
  'dendrite.voltage',
  'dendrite.onVoltage',
  'dendrite.threshold',
  'dendrite.variation',
  'dendrite.onCurrent',
  'dendrite.time',
  'finetune.sparsity',
] as const;
export type SweepParam = (typeof SWEEP_PARAMS)[number];
type DendriteField = SweepParam extends `dendrite.${infer F}` ? F : never;

export interface SweepParamPoint {
  value: number;
  withDendrites: EvalRun;
  /** The plain compile (no branches, same profile), or the bypassed artifact where it carries none. */
  withoutDendrites: EvalRun;
  /** Soma energy of the plain compile ÷ with dendrites, each at its own full scale (eval's powerAdvantage). */
  powerAdvantage: number | null;
  /** The whole chip's energy, plain compile ÷ with dendrites. */
  energyAdvantage: number | null;
  /** finetune.sparsity sweeps: branch signals ON and active somas (eval's). */
  signalsOn?: number | null;
  activeSomas?: { dendritic: number | null; plain: number | null };
}

export interface SweepParamReport {
  kind: 'sweep-param';
  dendra: string;
  /** The study's id (sweep/study.ts). */
  study: string;
  model: { file: string; sha256: string; shape: string };
  device: { name: string };
  param: { path: SweepParam; base: number; values: number[] };
  /** Branches per layer (1 = no dendrites on that layer) and how inputs were split. */
  branches: number[];
  strategy: string;
  /** The calibration's one-line summary (at the base profile); null when the gains come from the weights. */
  calibration: string | null;
  samples: number;
  settings: { seed: number; input: string; labels: string; calibrate: string[] | null; inputNoise: number | null };
  points: SweepParamPoint[];
  warnings: string[];
  /** How this report was computed and the wall time: not part of the results. */
  run: RunInfo;
  files?: { json: string; svg: string };
}

const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

/** "dendrite.nonlinearity=0.01,0.1,0.2" → its path and values (numbers, no repeats); the path must be one of SWEEP_PARAMS. */
export function parseParam(text: string): { path: SweepParam; values: number[] } {
  const eq = text.indexOf('=');
  const path = (eq < 0 ? text : text.slice(0, eq)).trim();
  if (!(SWEEP_PARAMS as readonly string[]).includes(path)) {
    throw new InputError(`--param: unknown profile field '${path}'; sweepable: ${SWEEP_PARAMS.join(', ')}`);
  }
  const list = eq < 0 ? '' : text.slice(eq + 1);
  const parts = list.split(',').map((s) => s.trim());
  if (parts.some((s) => s === '')) throw new InputError(`--param must be PATH=V1,V2,... with numbers, e.g. ${path}=0.01,0.1,0.2 (got '${text}')`);
  const values = parts.map((s) => {
    if (!NUMBER.test(s)) throw new InputError(`--param: '${s}' is not a number (got '${text}')`);
    return Number(s);
  });
  const seen = new Set<number>();
  for (const v of values) {
    if (seen.has(v)) throw new InputError(`--param lists ${v} twice (got '${text}')`);
    seen.add(v);
  }
  return { path: path as SweepParam, values };
}

/** The profile with one dendrite field set, validated (a value out of the field's range is refused with its rule). */
export function patchProfile(profile: DeviceProfile, path: SweepParam, value: number): DeviceProfile {
  if (!profile.dendrite) throw new InputError(`the '${profile.name}' profile has no dendrite devices`);
  if (!path.startsWith('dendrite.')) throw new InputError(`--param ${path} is not a profile field`);
  const field = path.slice('dendrite.'.length) as DendriteField;
  try {
    return validateProfile({ ...profile, dendrite: { ...profile.dendrite, [field]: value } });
  } catch (e) {
    if (e instanceof ProfileError) throw new InputError(`--param ${path}=${value}: ${e.message}`);
    throw e;
  }
}

export interface ParamSettings {
  path: SweepParam;
  values: number[];
  branches: number[] | 'auto';
  branchStrategy: BranchStrategy | null;
  seed: number;
  inputNoise: number | null;
  /** finetune.sparsity: fine-tuning epochs (null: the compiler's default) and the calibration mode; null otherwise. */
  finetune: { epochs: number | null; dendriteMode: 'efficient' | 'nonlinear' | null } | null;
}

export interface ParamHeader {
  model: string;
  input: string;
  labels: string;
  calibrate: string[] | null;
  sha256: string;
  shape: string;
  device: string;
  base: number;
  branches: number[];
  strategy: string;
  calibration: string | null;
  samples: number;
  warnings: string[];
}

export type ParamStudy = Study<ParamSettings, ParamHeader>;

function readBytes(file: string, what: string): Uint8Array {
  try {
    return readFileSync(file);
  } catch (e) {
    throw new InputError(`cannot read ${what}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { file });
  }
}

function floatRows(bytes: Uint8Array, file: string): { data: Float32Array; n: number } {
  const x = readNpy(bytes, file);
  return { data: x.data instanceof Float32Array ? x.data : Float32Array.from(x.data), n: x.shape[0] ?? 0 };
}

function compileOptions(profile: DeviceProfile, s: ParamSettings, calibrate?: { data: Float32Array; n: number }, calibrateLabels?: Int32Array): CompileOptions {
  const options: CompileOptions = { device: profile, branches: s.branches };
  if (s.branchStrategy !== null) options.branchStrategy = s.branchStrategy;
  if (s.finetune?.dendriteMode) options.dendriteMode = s.finetune.dendriteMode;
  if (calibrate) options.calibrate = calibrate.data;
  if (calibrateLabels) options.calibrateLabels = calibrateLabels;
  return options;
}

/** What this process compiled while preparing a study: its context reuses it instead of compiling again. */
const preparedCompiles = new WeakMap<Study, CompileResult>();

export async function prepareParam(model: string, opts: SweepParamArgs, onStage?: (text: string) => void): Promise<{ study: ParamStudy; blobs: Map<string, Uint8Array> }> {
  const { path, values } = parseParam(opts.param);
  const profile = loadProfile(opts.device ?? 'taox-dendrite');
  if (!profile.dendrite) {
    throw new InputError(`the '${profile.name}' profile has no dendrite devices (no "dendrite" section): a --param sweep varies them; use --device taox-dendrite or a profile with one`);
  }
  if (opts.branches === undefined) throw new InputError('--param needs --branches (dendritic branches per neuron, per layer, e.g. 9,4)');
  if (opts.inputNoise !== undefined && !(Number.isFinite(opts.inputNoise) && opts.inputNoise >= 0)) {
    throw new InputError(`--input-noise must be a standard deviation >= 0 (got ${opts.inputNoise})`);
  }
  const sparsity = path === 'finetune.sparsity';
  if (sparsity) {
    if (!opts.finetune || opts.finetune.length !== 2) throw new InputError('--param finetune.sparsity=... fine-tunes at each value: give --finetune X.npy L.npy');
    if (values.some((v) => !(v >= 0))) throw new InputError(`--param finetune.sparsity: every value must be >= 0 (got ${values.join(', ')})`);
  } else {
    if (opts.finetune || opts.epochs !== undefined || opts.dendriteMode !== undefined) throw new InputError('--finetune, --epochs and --dendrite-mode belong to --param finetune.sparsity=...');
    for (const v of values) patchProfile(profile, path, v); // every value checked before the compile
  }
  const field = sparsity ? null : (path.slice('dendrite.'.length) as DendriteField);
  const base = field === null ? 0 : profile.dendrite[field];
  const seed = opts.seed ?? 0;
  const settings: ParamSettings = {
    path,
    values,
    branches: parseBranches(opts.branches),
    branchStrategy: opts.branchStrategy ?? null,
    seed,
    inputNoise: opts.inputNoise ?? null,
    finetune: sparsity ? { epochs: opts.epochs ?? null, dendriteMode: opts.dendriteMode ?? null } : null,
  };

  const blobs = new Map<string, Uint8Array>();
  const refs: Record<string, string> = {};
  const modelBytes = readBytes(model, 'the model');
  refs['model'] = addBlob(blobs, modelBytes);
  refs['profile'] = addBlob(blobs, profileBytes(profile));
  let calibrate: { data: Float32Array; n: number } | undefined;
  let calibrateLabels: Int32Array | undefined;
  if (opts.calibrate) {
    if (opts.calibrate.length > 2) throw new InputError('--calibrate takes X.npy and optionally its labels L.npy');
    const bytes = readBytes(opts.calibrate[0]!, 'the calibration samples');
    calibrate = floatRows(bytes, opts.calibrate[0]!);
    refs['calibrate'] = addBlob(blobs, bytes);
    if (opts.calibrate[1]) {
      const lb = readBytes(opts.calibrate[1], 'the calibration labels');
      calibrateLabels = readLabels(opts.calibrate[1], calibrate.n, readNpy(lb, opts.calibrate[1]));
      refs['calibrateLabels'] = addBlob(blobs, lb);
    }
  }
  if (sparsity) {
    const [xFile, lFile] = opts.finetune as [string, string];
    const xb = readBytes(xFile, 'the fine-tuning samples');
    const lb = readBytes(lFile, 'the fine-tuning labels');
    readLabels(lFile, floatRows(xb, xFile).n, readNpy(lb, lFile)); // checked here rather than on a worker
    refs['finetune'] = addBlob(blobs, xb);
    refs['finetuneLabels'] = addBlob(blobs, lb);
  }

  // Compiled from the file (as `dendra compile` does, so the artifact is the one it would write). Sparsity: every
  // point compiles, calibrates and fine-tunes its own; this compile (without the fine-tuning) checks the options
  // and the inputs and gives the branch counts.
  onStage?.(`compiling for ${profile.name}${calibrate ? ', calibrating' : ''}`);
  const compiled = compileWithReport(model, compileOptions(profile, settings, calibrate, calibrateLabels));
  const { artifact, report } = compiled;
  const warnings = sparsity ? [] : [...report.warnings];
  if (field === 'threshold' && profile.dendrite.kind !== 'threshold-linear') {
    warnings.push(`dendrite.threshold applies to threshold-linear dendrites only; the '${profile.name}' dendrites are ${profile.dendrite.kind}, so it changes nothing`);
  }
  let n: number;
  {
    const s = await InferenceSession.create(writeArtifact(artifact), { seed, threads: opts.threads });
    try {
      n = readInputs(s, opts.input).n;
    } finally {
      await s.release();
    }
    readLabels(opts.labels, n, undefined, artifact.output.features);
  }
  refs['input'] = addBlob(blobs, readBytes(opts.input, 'the inputs'));
  refs['labels'] = addBlob(blobs, readBytes(opts.labels, 'the labels'));
  const study: ParamStudy = {
    kind: 'sweep-param',
    dendra: dendraVersion(),
    blobs: refs,
    settings,
    header: {
      model,
      input: opts.input,
      labels: opts.labels,
      calibrate: opts.calibrate ?? null,
      sha256: artifact.source.sha256,
      shape: [artifact.layers[0]!.inFeatures, ...artifact.layers.map((l) => l.outFeatures)].join('-'),
      device: profile.name,
      base,
      branches: artifact.layers.map((l) => l.dendrites?.count ?? 1),
      strategy: report.branches?.strategy ?? settings.branchStrategy ?? 'contiguous',
      calibration: report.calibration?.summary ?? null,
      samples: n,
      warnings,
    },
  };
  if (!sparsity) preparedCompiles.set(study, compiled);
  return { study, blobs };
}

interface Context {
  /** The compile every value patches (dendrite fields); null for sparsity, where every point compiles its own. */
  compiled: CompileResult | null;
  model: Uint8Array;
  settings: ParamSettings;
  calibrate?: { data: Float32Array; n: number };
  calibrateLabels?: Int32Array;
  finetune?: { data: Float32Array; labels: Int32Array };
  profile: DeviceProfile;
  inputs: Float32Array;
  n: number;
  labels: Int32Array;
  seed: number;
  path: SweepParam;
  threads?: number;
}

/** A point's result; a sparsity point also says what its compile reported (the report takes it from them). */
type ParamResult = SweepParamPoint & { compile?: { strategy: string | null; calibration: string | null; warnings: string[] } };

export const paramHandler: StudyHandler<ParamSettings, ParamHeader, { value: number }, ParamResult, Context, SweepParamReport> = {
  kind: 'sweep-param',

  points: (study) => study.settings.values.map((value) => ({ value })),

  label: (study, p) => `${study.settings.path} = ${p.value}`,

  async context(study, blobs, opts) {
    const s = study.settings;
    const h = study.header;
    const profile = await profileFrom(blobs, study.blobs['profile']!);
    const model = await blobs(study.blobs['model']!, 'model');
    const calibrate = study.blobs['calibrate'] ? floatRows(await blobs(study.blobs['calibrate'], 'calibration samples'), h.calibrate?.[0] ?? 'calibrate.npy') : undefined;
    const calibrateLabels = study.blobs['calibrateLabels'] && calibrate
      ? readLabels(h.calibrate?.[1] ?? 'labels.npy', calibrate.n, readNpy(await blobs(study.blobs['calibrateLabels'], 'calibration labels'), h.calibrate?.[1]))
      : undefined;
    let finetune: Context['finetune'];
    if (s.path === 'finetune.sparsity') {
      const x = floatRows(await blobs(study.blobs['finetune']!, 'fine-tuning samples'), 'finetune.npy');
      finetune = { data: x.data, labels: readLabels('finetune labels', x.n, readNpy(await blobs(study.blobs['finetuneLabels']!, 'fine-tuning labels'), 'finetune-labels.npy')) };
    }
    const compiled = finetune ? null : (preparedCompiles.get(study) ?? compileWithReport(model, compileOptions(profile, s, calibrate, calibrateLabels)));
    // Inputs and labels once, checked against the model's input; the same (noisy) inputs for every value.
    const session = await InferenceSession.create(writeArtifact(compiled ? compiled.artifact : compile(model, { device: profile })), { seed: s.seed, threads: opts.threads });
    let inputs: Float32Array;
    let n: number;
    try {
      const r = readInputs(session, h.input, readNpy(await blobs(study.blobs['input']!, 'inputs'), h.input));
      n = r.n;
      inputs = s.inputNoise ? addInputNoise(r.x.data, s.inputNoise, s.seed) : r.x.data;
    } finally {
      await session.release();
    }
    const labels = readLabels(h.labels, n, readNpy(await blobs(study.blobs['labels']!, 'labels'), h.labels));
    return { compiled, model, settings: s, calibrate, calibrateLabels, finetune, profile, inputs, n, labels, seed: s.seed, path: s.path, threads: opts.threads };
  },

  async run(ctx, { value }) {
    if (!ctx.compiled) return sparsityPoint(ctx, value);
    const patched = patchProfile(ctx.profile, ctx.path, value);
    // Each variant's somas at their own full scale (on the calibration samples), as a compile for it would set.
    const scales = ctx.calibrate && patched.soma ? somaFullScales(ctx.compiled.model, ctx.calibrate.data, 1000, patched.dendrite) : null;
    const artifact = ctx.compiled.artifact;
    const variant: Artifact = { ...artifact, profile: patched, layers: artifact.layers.map((l, li) => (scales ? { ...l, somaFullScale: scales[li]! } : l)) };
    const { withDendrites, d } = await evaluate(ctx, variant);
    return { value, withDendrites, withoutDendrites: d.plain ?? d.bypass, powerAdvantage: d.powerAdvantage, energyAdvantage: d.energyAdvantage };
  },

  async release() {},

  assemble(study, results, run) {
    const h = study.header;
    const s = study.settings;
    // Sparsity: the strategy and calibration as the points' compiles report them (the first's), their warnings once each.
    const compiles = results.flatMap((r) => (r.compile ? [r.compile] : []));
    const warnings = [...h.warnings];
    for (const c of compiles) for (const w of c.warnings) if (!warnings.includes(w)) warnings.push(w);
    const points = results.map(({ compile: _c, ...p }) => p);
    return {
      kind: 'sweep-param',
      dendra: study.dendra,
      study: studyId(study),
      model: { file: h.model, sha256: h.sha256, shape: h.shape },
      device: { name: h.device },
      param: { path: s.path, base: h.base, values: s.values },
      branches: h.branches,
      strategy: compiles[0]?.strategy ?? h.strategy,
      calibration: compiles.length > 0 ? compiles[0]!.calibration : h.calibration,
      samples: h.samples,
      settings: { seed: s.seed, input: h.input, labels: h.labels, calibrate: h.calibrate, inputNoise: s.inputNoise },
      points,
      warnings,
      run,
    };
  },
};

/** An artifact evaluated as `dendra eval` evaluates a dendritic one: with its dendrites, then against its plain compile and bypassed. */
async function evaluate(ctx: Context, artifact: Artifact): Promise<{ withDendrites: EvalRun; d: Awaited<ReturnType<typeof compareDendrites>> }> {
  const bytes = writeArtifact(artifact);
  const s = await InferenceSession.create(bytes, { seed: ctx.seed, threads: ctx.threads });
  let withDendrites: EvalRun;
  try {
    const { seconds: _s, ...r } = await evalRun(s, ctx.inputs, ctx.n, ctx.labels);
    withDendrites = r;
  } finally {
    await s.release();
  }
  const d = await compareDendrites(bytes, artifact, withDendrites, ctx.inputs, ctx.n, ctx.labels, { seed: ctx.seed, threads: ctx.threads });
  return { withDendrites, d };
}

/** finetune.sparsity = value: the model compiled with its branches, calibrated and fine-tuned at that activity penalty, then evaluated. */
async function sparsityPoint(ctx: Context, value: number): Promise<ParamResult> {
  const options = compileOptions(ctx.profile, ctx.settings, ctx.calibrate, ctx.calibrateLabels);
  const ft = ctx.finetune!;
  const { artifact, report } = compileWithReport(ctx.model, { ...options, finetune: { inputs: ft.data, labels: ft.labels, epochs: ctx.settings.finetune?.epochs ?? undefined, sparsity: value } });
  const { withDendrites, d } = await evaluate(ctx, artifact);
  return {
    value,
    withDendrites,
    withoutDendrites: d.plain ?? d.bypass,
    powerAdvantage: d.powerAdvantage,
    energyAdvantage: d.energyAdvantage,
    signalsOn: d.signalsOn,
    activeSomas: d.activeSomas,
    compile: { strategy: report.branches?.strategy ?? null, calibration: report.calibration?.summary ?? null, warnings: report.warnings },
  };
}
