import { readNpyFile, type NpyArray } from '../common/npy.js';
import { InputError } from '../common/errors.js';
import { readTokenFile } from '../runtime/backends/device/auth.js';
import { InferenceSession } from '../runtime/index.js';
import { formatJoules, type EnergyBreakdown } from '../runtime/energy.js';
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
  /** The σ of the Gaussian noise added to the inputs (absent: clean inputs). */
  inputNoise?: number;
  /** With --allow-nonfinite: how many input values were NaN or ±Infinity. */
  nonfiniteInputs?: number;
  /**
   * Dendritic artifacts: branches per layer, the same network without dendrite devices run on the same inputs,
   * powerAdvantage = soma energy without ÷ with dendrites (Li et al. 2020: the integral of the applied voltage
   * and each soma's output current), energyAdvantage = the whole chip's energy without ÷ with.
   */
  dendrites?: {
    branches: number[];
    withoutDendrites: EvalRun;
    powerAdvantage: number | null;
    energyAdvantage: number;
  };
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
  return { correct, accuracy: correct / n, energyPerInferenceJ: energy.energyPerInferenceJ, energy: energy.breakdown, seconds };
}

/**
 * A dendritic artifact's EvalReport.dendrites: the same artifact (path or bytes) run again with its dendrites
 * bypassed, on the same inputs and simulator settings, against `withDendrites`, the run with them.
 */
export async function compareWithoutDendrites(
  artifact: string | Uint8Array,
  parsed: Artifact,
  withDendrites: EvalRun,
  inputs: Float32Array,
  n: number,
  labels: Int32Array,
  opts: { seed?: number; threads?: number; time?: number },
): Promise<NonNullable<EvalReport['dendrites']>> {
  const r = withDendrites;
  const bypass = await InferenceSession.create(artifact, { seed: opts.seed, threads: opts.threads, time: opts.time, dendrites: 'bypass' });
  try {
    const { seconds: _s, ...without } = await evalRun(bypass, inputs, n, labels);
    return {
      branches: parsed.layers.map((l) => l.dendrites?.count ?? 1),
      withoutDendrites: without,
      powerAdvantage: r.energy.somaJ > 0 ? without.energy.somaJ / r.energy.somaJ : null,
      energyAdvantage: without.energyPerInferenceJ / r.energyPerInferenceJ,
    };
  } finally {
    await bypass.release();
  }
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
      energyPerInferenceJ: r.energyPerInferenceJ, energy: r.energy,
      ...(opts.inputNoise !== undefined ? { inputNoise: opts.inputNoise } : {}),
      ...(opts.allowNonfinite ? { nonfiniteInputs: nonfinite } : {}),
    };
    if (session.artifact.layers.some((l) => l.dendrites)) report.dendrites = await compareWithoutDendrites(artifact, session.artifact, r, inputs, n, labels, opts);
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
    const d = r.dendrites;
    if (d) {
      console.log(`without dendrites: accuracy ${(100 * d.withoutDendrites.accuracy).toFixed(2)} %, ${formatJoules(d.withoutDendrites.energyPerInferenceJ)} per inference`);
      console.log(`dendrites (${d.branches.join(', ')} branches): soma ${formatJoules(r.energy.somaJ)} vs ${formatJoules(d.withoutDendrites.energy.somaJ)} without, ` +
        `power advantage ${d.powerAdvantage === null ? 'n/a (the profile has no soma devices)' : `${d.powerAdvantage.toFixed(2)}x`}, whole chip ${d.energyAdvantage.toFixed(3)}x`);
    }
  }
}
