/**
 * dendra sweep --param PATH=V1,V2,...: how one trained dendritic network fares as one property of its
 * dendrite devices changes (Li et al. 2020, Extended Data Fig. 6: power advantage and accuracy against the
 * I–V nonlinearity, the ON/OFF ratio, the applied voltage...).
 *
 * The network is compiled once, for the base profile (branches assigned and, with --calibrate, its dendrite
 * gains calibrated at the base device); for each value the artifact's profile field is patched (the weights,
 * branches and gains stay) and the patched artifact is evaluated on the labelled inputs with its dendrites and
 * bypassed, as `dendra eval` evaluates a dendritic artifact (cli/eval.ts).
 */
import { basename, join } from 'node:path';
import { compileWithReport, type CompileOptions } from '../compiler/index.js';
import type { BranchStrategy } from '../compiler/passes/assign-branches.js';
import { dendraVersion, writeArtifact } from '../artifact/write.js';
import type { Artifact } from '../artifact/format.js';
import { InputError, ProfileError } from '../common/errors.js';
import { readNpyFile } from '../common/npy.js';
import { loadProfile, validateProfile, type DeviceProfile } from '../common/profile.js';
import { InferenceSession } from '../runtime/index.js';
import { formatJoules } from '../runtime/energy.js';
import { somaFullScales } from '../compiler/passes/calibrate-dendrites.js';
import { addInputNoise, compareDendrites, evalRun, readLabels, type EvalRun } from './eval.js';
import { parseBranches } from './compile.js';
import { readInputs } from './io.js';
import { progressBar } from './progress.js';
import { vegaLiteSvg, writeSweepFiles } from './sweep.js';

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
  seconds: number;
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
  const field = path.slice('dendrite.'.length) as DendriteField;
  if (!path.startsWith('dendrite.')) throw new InputError(`--param ${path} is not a profile field`);
  try {
    return validateProfile({ ...profile, dendrite: { ...profile.dendrite, [field]: value } });
  } catch (e) {
    if (e instanceof ProfileError) throw new InputError(`--param ${path}=${value}: ${e.message}`);
    throw e;
  }
}

function samples(file: string): { data: Float32Array; n: number } {
  const x = readNpyFile(file);
  return { data: x.data instanceof Float32Array ? x.data : Float32Array.from(x.data), n: x.shape[0] ?? 0 };
}

export async function sweepParam(model: string, opts: SweepParamArgs): Promise<SweepParamReport> {
  const t0 = performance.now();
  const { path, values } = parseParam(opts.param);
  const profile = loadProfile(opts.device ?? 'taox-dendrite');
  if (!profile.dendrite) {
    throw new InputError(`the '${profile.name}' profile has no dendrite devices (no "dendrite" section): a --param sweep varies them; use --device taox-dendrite or a profile with one`);
  }
  if (opts.branches === undefined) throw new InputError('--param needs --branches (dendritic branches per neuron, per layer, e.g. 9,4)');
  if (opts.inputNoise !== undefined && !(Number.isFinite(opts.inputNoise) && opts.inputNoise >= 0)) {
    throw new InputError(`--input-noise must be a standard deviation >= 0 (got ${opts.inputNoise})`);
  }
  if (path === 'finetune.sparsity') return sweepSparsity(model, opts, profile, values, t0);
  if (opts.finetune || opts.epochs !== undefined || opts.dendriteMode !== undefined) throw new InputError('--finetune, --epochs and --dendrite-mode belong to --param finetune.sparsity=...');
  const patched = values.map((v) => patchProfile(profile, path, v)); // every value checked before the compile
  const field = path.slice('dendrite.'.length) as Exclude<DendriteField, never>;
  const base = profile.dendrite[field as keyof typeof profile.dendrite] as number;
  const seed = opts.seed ?? 0;

  const options: CompileOptions = { device: profile, branches: parseBranches(opts.branches) };
  if (opts.branchStrategy !== undefined) options.branchStrategy = opts.branchStrategy;
  if (opts.calibrate) {
    if (opts.calibrate.length > 2) throw new InputError('--calibrate takes X.npy and optionally its labels L.npy');
    const x = samples(opts.calibrate[0]!);
    options.calibrate = x.data;
    if (opts.calibrate[1]) options.calibrateLabels = readLabels(opts.calibrate[1], x.n);
  }

  const bar = progressBar('sweep', 1 + 2 * values.length, 'steps', true);
  try {
    bar.stage(`compiling for ${profile.name}${options.calibrate ? ', calibrating' : ''}`);
    const { artifact, report: compiled, model: layers } = compileWithReport(model, options);
    bar.increment();
    const warnings = [...compiled.warnings];
    if (field === 'threshold' && profile.dendrite.kind !== 'threshold-linear') {
      warnings.push(`dendrite.threshold applies to threshold-linear dendrites only; the '${profile.name}' dendrites are ${profile.dendrite.kind}, so it changes nothing`);
    }

    // Inputs and labels once, checked against the model's input; the same (noisy) inputs for every value.
    let inputs: Float32Array;
    let n: number;
    let labels: Int32Array;
    {
      const s = await InferenceSession.create(writeArtifact(artifact), { seed, threads: opts.threads });
      try {
        const r = readInputs(s, opts.input);
        n = r.n;
        inputs = opts.inputNoise ? addInputNoise(r.x.data, opts.inputNoise, seed) : r.x.data;
      } finally {
        await s.release();
      }
      labels = readLabels(opts.labels, n);
    }

    const points: SweepParamPoint[] = [];
    for (const [i, value] of values.entries()) {
      // Each variant's somas at their own full scale (on the calibration samples), as a compile for it would set.
      const scales = options.calibrate && patched[i]!.soma ? somaFullScales(layers, options.calibrate, 1000, patched[i]!.dendrite) : null;
      const variant: Artifact = {
        ...artifact,
        profile: patched[i]!,
        layers: artifact.layers.map((l, li) => (scales ? { ...l, somaFullScale: scales[li]! } : l)),
      };
      const bytes = writeArtifact(variant);
      bar.stage(`${path} = ${value}: with dendrites`);
      const s = await InferenceSession.create(bytes, { seed, threads: opts.threads });
      let withDendrites: EvalRun;
      try {
        const { seconds: _s, ...r } = await evalRun(s, inputs, n, labels);
        withDendrites = r;
      } finally {
        await s.release();
      }
      bar.increment();
      bar.stage(`${path} = ${value}: without dendrites`);
      const d = await compareDendrites(bytes, variant, withDendrites, inputs, n, labels, { seed, threads: opts.threads });
      bar.increment();
      points.push({ value, withDendrites, withoutDendrites: d.plain ?? d.bypass, powerAdvantage: d.powerAdvantage, energyAdvantage: d.energyAdvantage });
    }
    return {
      kind: 'sweep-param',
      dendra: dendraVersion(),
      model: { file: model, sha256: artifact.source.sha256, shape: [artifact.layers[0]!.inFeatures, ...artifact.layers.map((l) => l.outFeatures)].join('-') },
      device: { name: profile.name },
      param: { path, base, values },
      branches: artifact.layers.map((l) => l.dendrites?.count ?? 1),
      strategy: compiled.branches?.strategy ?? options.branchStrategy ?? 'contiguous',
      calibration: compiled.calibration?.summary ?? null,
      samples: n,
      settings: { seed, input: opts.input, labels: opts.labels, calibrate: opts.calibrate ?? null, inputNoise: opts.inputNoise ?? null },
      points,
      warnings,
      seconds: (performance.now() - t0) / 1000,
    };
  } finally {
    bar.stop();
  }
}

const pct = (x: number) => (100 * x).toFixed(2);
const times = (x: number | null) => (x === null ? 'n/a' : `${x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2)}x`);

/** The text table: one row per value, the base profile's value marked. */
export function formatSweepParam(r: SweepParamReport): string {
  const head = [r.param.path, 'accuracy %', 'without %', 'power adv.', 'energy adv.', 'energy/inference', 'without'];
  const rows = r.points.map((p) => [
    `${p.value}${p.value === r.param.base ? ' (base)' : ''}`,
    pct(p.withDendrites.accuracy),
    pct(p.withoutDendrites.accuracy),
    times(p.powerAdvantage),
    times(p.energyAdvantage),
    formatJoules(p.withDendrites.energyPerInferenceJ),
    formatJoules(p.withoutDendrites.energyPerInferenceJ),
  ]);
  const width = head.map((h, c) => Math.max(h.length, ...rows.map((row) => row[c]!.length)));
  const line = (cells: string[]) => cells.map((x, c) => (c === 0 ? x.padEnd(width[c]!) : x.padStart(width[c]!))).join('   ').trimEnd();
  const noise = r.settings.inputNoise ? `, input noise σ = ${r.settings.inputNoise}` : '';
  return [
    `sweep of ${r.param.path} (base ${r.param.base}): ${basename(r.model.file)} (${r.model.shape}) on ${r.device.name}, branches ${r.branches.join(', ')} (${r.strategy}), ${r.samples} samples${noise}`,
    r.calibration ? `calibrated at the base profile: ${r.calibration}` : 'not calibrated: dendrite gains from the weights alone',
    '',
    line(head),
    ...rows.map(line),
  ].join('\n');
}

/** The plot (Extended Data Fig. 6a/d): power advantage (log scale) over accuracy with and without dendrites, against the parameter. */
export async function sweepParamSvg(r: SweepParamReport): Promise<string> {
  const WITH = 'with dendrites';
  const WITHOUT = r.param.path === 'finetune.sparsity' ? 'plain compile' : 'without dendrites';
  const values = r.param.values;
  const logX = values.every((v) => v > 0) && Math.max(...values) / Math.min(...values) >= 100;
  const x = { field: 'value', type: 'quantitative', title: r.param.path, scale: logX ? { type: 'log' } : { zero: false } } as const;
  const power = r.points.filter((p) => p.powerAdvantage !== null && p.powerAdvantage > 0).map((p) => ({ value: p.value, advantage: p.powerAdvantage }));
  const sparsity = r.param.path === 'finetune.sparsity';
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
          ? `compiled, calibrated and fine-tuned at each sparsity; against the plain compile`
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
        layer: sparsity
          ? [{
              data: { values: energy },
              mark: { type: 'line', point: true },
              encoding: { x: { ...x, axis: { title: null } }, y: { field: 'energy', type: 'quantitative', title: 'whole chip (nJ per inference)', scale: { zero: false } }, color, strokeDash: dash },
            }]
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

export async function sweepParamCommand(model: string, opts: SweepParamArgs): Promise<void> {
  const report = await sweepParam(model, opts);
  for (const w of report.warnings) console.warn(`warning: ${w}`);
  if (opts.out) report.files = writeSweepFiles(opts.out, 'sweep-param', report, await sweepParamSvg(report));
  if (opts.json) console.log(JSON.stringify(report));
  else console.log(formatSweepParam(report) + (report.files ? `\nwrote ${report.files.json} and ${report.files.svg}` : ''));
}

/**
 * --param finetune.sparsity=V1,V2,...: for each activity penalty, the model compiled with --branches, calibrated
 * and fine-tuned (--finetune X.npy L.npy) at that sparsity, then evaluated as `dendra eval` does, against the
 * plain compile it carries: accuracy and whole-chip energy on one plot (issue 11).
 */
async function sweepSparsity(model: string, opts: SweepParamArgs, profile: DeviceProfile, values: number[], t0: number): Promise<SweepParamReport> {
  if (!opts.finetune || opts.finetune.length !== 2) throw new InputError('--param finetune.sparsity=... fine-tunes at each value: give --finetune X.npy L.npy');
  if (values.some((v) => !(v >= 0))) throw new InputError(`--param finetune.sparsity: every value must be >= 0 (got ${values.join(', ')})`);
  const seed = opts.seed ?? 0;
  const options: CompileOptions = { device: profile, branches: parseBranches(opts.branches!) };
  if (opts.branchStrategy !== undefined) options.branchStrategy = opts.branchStrategy;
  if (opts.dendriteMode !== undefined) options.dendriteMode = opts.dendriteMode;
  if (opts.calibrate) {
    if (opts.calibrate.length > 2) throw new InputError('--calibrate takes X.npy and optionally its labels L.npy');
    const x = samples(opts.calibrate[0]!);
    options.calibrate = x.data;
    if (opts.calibrate[1]) options.calibrateLabels = readLabels(opts.calibrate[1], x.n);
  }
  const ft = samples(opts.finetune[0]!);
  const ftLabels = readLabels(opts.finetune[1]!, ft.n);
  const bar = progressBar('sweep', values.length, 'values', true);
  const points: SweepParamPoint[] = [];
  const warnings: string[] = [];
  let artifact0: Artifact | null = null;
  let calibration: string | null = null;
  let strategy = opts.branchStrategy ?? 'contiguous';
  let inputs: Float32Array | null = null;
  let n = 0;
  let labels: Int32Array | null = null;
  try {
    for (const value of values) {
      bar.stage(`finetune.sparsity = ${value}: compiling, fine-tuning`);
      const { artifact, report } = compileWithReport(model, { ...options, finetune: { inputs: ft.data, labels: ftLabels, epochs: opts.epochs, sparsity: value } });
      for (const w of report.warnings) if (!warnings.includes(w)) warnings.push(w);
      artifact0 ??= artifact;
      calibration ??= report.calibration?.summary ?? null;
      strategy = report.branches?.strategy ?? strategy;
      const bytes = writeArtifact(artifact);
      const s = await InferenceSession.create(bytes, { seed, threads: opts.threads });
      let withDendrites: EvalRun;
      try {
        if (!inputs) {
          const r = readInputs(s, opts.input);
          n = r.n;
          inputs = opts.inputNoise ? addInputNoise(r.x.data, opts.inputNoise, seed) : r.x.data;
          labels = readLabels(opts.labels, n);
        }
        const { seconds: _s, ...r } = await evalRun(s, inputs, n, labels!);
        withDendrites = r;
      } finally {
        await s.release();
      }
      const d = await compareDendrites(bytes, artifact, withDendrites, inputs, n, labels!, { seed, threads: opts.threads });
      points.push({ value, withDendrites, withoutDendrites: d.plain ?? d.bypass, powerAdvantage: d.powerAdvantage, energyAdvantage: d.energyAdvantage, signalsOn: d.signalsOn, activeSomas: d.activeSomas });
      bar.increment();
    }
  } finally {
    bar.stop();
  }
  const a = artifact0!;
  return {
    kind: 'sweep-param',
    dendra: dendraVersion(),
    model: { file: model, sha256: a.source.sha256, shape: [a.layers[0]!.inFeatures, ...a.layers.map((l) => l.outFeatures)].join('-') },
    device: { name: profile.name },
    param: { path: 'finetune.sparsity', base: 0, values },
    branches: a.layers.map((l) => l.dendrites?.count ?? 1),
    strategy,
    calibration,
    samples: n,
    settings: { seed, input: opts.input, labels: opts.labels, calibrate: opts.calibrate ?? null, inputNoise: opts.inputNoise ?? null },
    points,
    warnings,
    seconds: (performance.now() - t0) / 1000,
  };
}
