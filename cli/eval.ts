import { readNpyFile } from '../common/npy.js';
import { InputError } from '../common/errors.js';
import { InferenceSession } from '../runtime/index.js';
import { formatJoules, type EnergyBreakdown } from '../runtime/energy.js';
import { argmaxRows, readInputs, runAll } from './io.js';

export interface EvalArgs {
  input: string;
  labels: string;
  json?: boolean;
  seed?: number;
  threads?: number;
  time?: number;
  /** Board URL: evaluate on the device backend instead of the simulator. */
  device?: string;
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
}

/** Labels as class indices: an integer vector [n], or one-hot / scores [n, classes]. */
export function readLabels(file: string, n: number): Int32Array {
  const l = readNpyFile(file);
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
  return labels;
}

export async function evaluate(artifact: string, opts: EvalArgs): Promise<EvalReport> {
  const session = await InferenceSession.create(artifact, { seed: opts.seed, threads: opts.threads, time: opts.time, device: opts.device });
  try {
    const { x, n } = readInputs(session, opts.input);
    const labels = readLabels(opts.labels, n);
    const t0 = performance.now();
    const y = await runAll(session, x.data, n);
    const seconds = (performance.now() - t0) / 1000;
    const predicted = argmaxRows(y, n, session.artifact.output.features);
    let correct = 0;
    for (let i = 0; i < n; i++) if (predicted[i] === labels[i]) correct++;
    const energy = session.energy('all');
    return {
      artifact, device: session.profile.name, n, correct, accuracy: correct / n, seconds, inferencesPerSecond: n / seconds,
      energyPerInferenceJ: energy.energyPerInferenceJ, energy: energy.breakdown,
    };
  } finally {
    await session.release();
  }
}

export async function evalCommand(artifact: string, opts: EvalArgs): Promise<void> {
  const r = await evaluate(artifact, opts);
  if (opts.json) {
    console.log(JSON.stringify(r));
  } else {
    console.log(`accuracy ${(100 * r.accuracy).toFixed(2)} % (${r.correct}/${r.n}) on ${r.device}, ${Math.round(r.inferencesPerSecond)} inferences/s, ${formatJoules(r.energyPerInferenceJ)} per inference`);
  }
}
