import { readNpyFile, type NpyArray } from '../common/npy.js';
import { InputError } from '../common/errors.js';
import { readTokenFile } from '../runtime/backends/device/auth.js';
import { InferenceSession } from '../runtime/index.js';
import { formatJoules, type EnergyBreakdown, type EnergyEvents } from '../runtime/energy.js';
import { writeArtifact } from '../artifact/write.js';
import type { Artifact } from '../artifact/format.js';
import { argmaxRows, readInputs, runAll } from './io.js';
import { Random } from '../common/random.js';

export interface EvalArgs {
  input: string;
  labels: string;
  json?: boolean;
  seed?: number;
  threads?: number;
  time?: number;
  /** Board URL: evaluate on the device backend instead of the simulator. */
  device?: string;
  /** Gaussian noise of this standard deviation added to every input value (seeded by --seed). */
  inputNoise?: number;
  /** Run inputs that hold NaN or ±Infinity (counted and reported) instead of refusing them. */
  allowNonfinite?: boolean;
  tokenFile?: string;
}

/** One run of the evaluation set: accuracy and the energy model's figures per inference. */
export interface EvalRun {
  correct: number;
  accuracy: number;
  energyPerInferenceJ: number;
  energy: EnergyBreakdown;
  /** What the devices did (simulator only): event-driven row sparsity, branch signals ON, active somas. */
  events?: EnergyEvents;
}

/** The fair comparison of a dendritic artifact (docs/dendrites.md, "Fair figures"). */
export interface DendriteComparison {
  branches: number[];
  /**
   * Soma energy of the plain compile ÷ the dendritic one, each network's somas driven to their own full scale
   * (the 99.9th percentile of its own soma input on the calibration samples draws the soma's rated current);
   * null without soma devices or without a plain compile in the artifact.
   */
  powerAdvantage: number | null;
  /** Whole-chip energy per inference of the plain compile ÷ the dendritic one (null without a plain compile). */
  energyAdvantage: number | null;
  /** Fraction of non-zero branch signals in the dendrites' ON region (simulator). */
  signalsOn: number | null;
  /** Fraction of soma outputs above 1 % of their full scale: with dendrites, and in the plain compile. */
  activeSomas: { dendritic: number | null; plain: number | null };
  /** The same model compiled without branches on the same profile and periphery, on the same inputs. */
  plain: EvalRun | null;
  /** The same artifact with its dendrites bypassed (y = z, κ = 1), with the old ratios against it. */
  bypass: EvalRun & { powerAdvantage: number | null; energyAdvantage: number };
}

export interface EvalReport {
  artifact: string;
  device: string;
  n: number;
  correct: number;
  accuracy: number;
  seconds: number;
  inferencesPerSecond: number;
  /** Energy model (docs/energy.md), per inference, averaged over the whole evaluation. */
  energyPerInferenceJ: number;
  energy: EnergyBreakdown;
  /** What the devices did (simulator only): event-driven row sparsity, branch signals ON, active somas. */
  events?: EnergyEvents;
  /** The σ of the Gaussian noise added to the inputs (absent: clean inputs). */
  inputNoise?: number;
  /** With --allow-nonfinite: how many input values were NaN or ±Infinity. */
  nonfiniteInputs?: number;
  /** Dendritic artifacts: the fair comparison with the plain compile (DendriteComparison). */
  dendrites?: DendriteComparison;
}

/** Adds N(0, sigma²) to every value (seeded), into a new array. */
export function addInputNoise(x: Float32Array, sigma: number, seed: number): Float32Array {
  const rng = new Random(seed ^ 0x6e6f6973);
  return Float32Array.from(x, (v) => v + sigma * rng.normal());
}

/** Labels as class indices: an integer vector [n], or one-hot / scores [n, classes] (`read`: the file already read). */
export function readLabels(file: string, n: number, read?: NpyArray, classes?: number): Int32Array {
  const l = read ?? readNpyFile(file);
  let labels: Int32Array;
  if (l.shape.length === 1) {
    labels = Int32Array.from(l.data);
    if (l.data.some((v, i) => v !== labels[i] || v < 0)) throw new InputError(`labels ${file} must be non-negative integers`, { file });
  } else if (l.shape.length === 2) {
    labels = argmaxRows(l.data, l.shape[0]!, l.shape[1]!);
  } else {
    throw new InputError(`labels ${file} have shape (${l.shape.join(', ')}); expected (n,) class indices or (n, classes)`, { file });
  }
  if (labels.length !== n) throw new InputError(`labels ${file} hold ${labels.length} labels but the input holds ${n} samples`, { file });
  if (l.shape.length === 2 && classes !== undefined && l.shape[1] !== classes) {
    throw new InputError(`labels ${file} have ${l.shape[1]} columns, but the model has ${classes} classes`, { file });
  }
  if (classes !== undefined) {
    const i = labels.findIndex((c) => c >= classes);
    if (i >= 0) throw new InputError(`labels ${file}: label ${labels[i]} (sample ${i}) is outside the model's ${classes} classes (0..${classes - 1})`, { file });
  }
  return labels;
}

/** Runs the n samples of x through the session: accuracy against the labels, the energy of these runs per inference, the seconds taken. */
export async function evalRun(session: InferenceSession, x: Float32Array, n: number, labels: Int32Array): Promise<EvalRun & { seconds: number }> {
  const t0 = performance.now();
  const y = await runAll(session, x, n);
  const seconds = (performance.now() - t0) / 1000;
  const predicted = argmaxRows(y, n, session.artifact.output.features);
  let correct = 0;
  for (let i = 0; i < n; i++) if (predicted[i] === labels[i]) correct++;
  const energy = session.energy('all');
  return { correct, accuracy: correct / n, energyPerInferenceJ: energy.energyPerInferenceJ, energy: energy.breakdown, ...(energy.events ? { events: energy.events } : {}), seconds };
}

/**
 * A dendritic artifact's EvalReport.dendrites: the plain compile it carries (artifact.reference.plain) and the
 * same artifact with its dendrites bypassed, run on the same inputs and simulator settings, against
 * `withDendrites`, the run with them.
 */
export async function compareDendrites(
  artifact: string | Uint8Array,
  parsed: Artifact,
  withDendrites: EvalRun,
  inputs: Float32Array,
  n: number,
  labels: Int32Array,
  opts: { seed?: number; threads?: number; time?: number },
): Promise<DendriteComparison> {
  const r = withDendrites;
  const run = async (source: string | Uint8Array, dendrites?: 'bypass') => {
    const s = await InferenceSession.create(source, { seed: opts.seed, threads: opts.threads, time: opts.time, ...(dendrites ? { dendrites } : {}) });
    try {
      const { seconds: _s, ...out } = await evalRun(s, inputs, n, labels);
      return out;
    } finally {
      await s.release();
    }
  };
  const bypass = await run(artifact, 'bypass');
  const plainModel = parsed.reference?.plain;
  const plain = plainModel ? await run(writeArtifact({ ...plainModel, profile: parsed.profile })) : null;
  const ratio = (a: number, b: number) => (b > 0 && Number.isFinite(a / b) ? a / b : null);
  return {
    branches: parsed.layers.map((l) => l.dendrites?.count ?? 1),
    powerAdvantage: plain && parsed.profile.soma ? ratio(plain.energy.somaJ, r.energy.somaJ) : null,
    energyAdvantage: plain ? ratio(plain.energyPerInferenceJ, r.energyPerInferenceJ) : null,
    signalsOn: r.events?.signalsOn ?? null,
    activeSomas: { dendritic: r.events?.activeSomas ?? null, plain: plain?.events?.activeSomas ?? null },
    plain,
    bypass: {
      ...bypass,
      powerAdvantage: ratio(bypass.energy.somaJ, r.energy.somaJ),
      energyAdvantage: bypass.energyPerInferenceJ / r.energyPerInferenceJ,
    },
  };
}

export async function evaluate(artifact: string, opts: EvalArgs): Promise<EvalReport> {
  if (opts.inputNoise !== undefined && !(Number.isFinite(opts.inputNoise) && opts.inputNoise >= 0)) {
    throw new InputError(`--input-noise must be a standard deviation >= 0 (got ${opts.inputNoise})`);
  }
  const session = await InferenceSession.create(artifact, { seed: opts.seed, threads: opts.threads, time: opts.time, device: opts.device, ...(opts.tokenFile !== undefined ? { link: { token: readTokenFile(opts.tokenFile) } } : {}) });
  try {
    const { x, n, nonfinite } = readInputs(session, opts.input, undefined, opts.allowNonfinite);
    const labels = readLabels(opts.labels, n, undefined, session.artifact.output.features);
    const inputs = opts.inputNoise ? addInputNoise(x.data, opts.inputNoise, opts.seed ?? 0) : x.data;
    const r = await evalRun(session, inputs, n, labels);
    const report: EvalReport = {
      artifact, device: session.profile.name, n, correct: r.correct, accuracy: r.accuracy, seconds: r.seconds, inferencesPerSecond: n / r.seconds,
      energyPerInferenceJ: r.energyPerInferenceJ, energy: r.energy, ...(r.events ? { events: r.events } : {}),
      ...(opts.inputNoise !== undefined ? { inputNoise: opts.inputNoise } : {}),
      ...(opts.allowNonfinite ? { nonfiniteInputs: nonfinite } : {}),
    };
    if (session.artifact.layers.some((l) => l.dendrites)) report.dendrites = await compareDendrites(artifact, session.artifact, r, inputs, n, labels, opts);
    return report;
  } finally {
    await session.release();
  }
}

export async function evalCommand(artifact: string, opts: EvalArgs): Promise<void> {
  const r = await evaluate(artifact, opts);
  if (opts.json) {
    console.log(JSON.stringify(r));
  } else {
    const noise = r.inputNoise ? ` with input noise σ = ${r.inputNoise}` : '';
    if (r.nonfiniteInputs) console.log(`warning: ${r.nonfiniteInputs} non-finite input values were run as given (--allow-nonfinite)`);
    console.log(`accuracy ${(100 * r.accuracy).toFixed(2)} % (${r.correct}/${r.n}) on ${r.device}${noise}, ${Math.round(r.inferencesPerSecond)} inferences/s, ${formatJoules(r.energyPerInferenceJ)} per inference`);
    const ev = r.events;
    if (ev) console.log(`rows driven ${ev.rowsDriven.toFixed(0)} of ${ev.rowsPossible} per inference (sparsity ${(100 * ev.sparsity).toFixed(1)} %)`);
    const d = r.dendrites;
    if (d) {
      const pct = (x: number | null) => (x === null ? 'n/a' : `${(100 * x).toFixed(1)} %`);
      const x = (v: number | null, digits = 2) => (v === null ? 'n/a' : `${v.toFixed(digits)}x`);
      if (d.plain) console.log(`plain compile (no branches, same profile): accuracy ${(100 * d.plain.accuracy).toFixed(2)} %, ${formatJoules(d.plain.energyPerInferenceJ)} per inference`);
      else console.log('plain compile: n/a (the artifact carries none; recompile it with this dendra)');
      console.log(`dendrites (${d.branches.join(', ')} branches): ${pct(d.signalsOn)} of branch signals ON, active somas ${pct(d.activeSomas.dendritic)} vs ${pct(d.activeSomas.plain)} plain; ` +
        `soma power advantage ${d.powerAdvantage === null ? 'n/a' : x(d.powerAdvantage)} (each network at its own full scale), whole chip ${x(d.energyAdvantage, 3)} against the plain compile`);
      console.log(`bypass (same artifact, dendrites bypassed): accuracy ${(100 * d.bypass.accuracy).toFixed(2)} %, ${formatJoules(d.bypass.energyPerInferenceJ)} per inference`);
    }
  }
}
