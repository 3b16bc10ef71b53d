import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { compileWithReport, type CompileOptions } from '../compiler/index.js';
import { writeArtifact } from '../artifact/write.js';
import { InputError } from '../common/errors.js';
import { readNpyFile } from '../common/npy.js';
import type { BranchStrategy } from '../compiler/passes/assign-branches.js';
import { readLabels } from './eval.js';
import { progressBar } from './progress.js';

export interface CompileArgs {
  device?: string;
  output: string;
  defects?: string;
  remap?: 'none' | 'auto';
  /** X.npy [L.npy] */
  calibrate?: string[];
  branches?: string;
  branchStrategy?: BranchStrategy;
  /** X.npy L.npy */
  finetune?: string[];
  epochs?: number;
  dendriteMode?: 'efficient' | 'nonlinear';
}

/** "9,4" → [9, 4]; "auto" → 'auto'. */
export function parseBranches(text: string): number[] | 'auto' {
  if (text.trim() === 'auto') return 'auto';
  const parts = text.split(',').map((p) => p.trim());
  const counts = parts.map(Number);
  if (parts.some((p) => p === '') || counts.some((c) => !Number.isInteger(c) || c < 1)) {
    throw new InputError(`--branches must be positive integers, one per layer, separated by commas (e.g. 9,4), or auto (got '${text}')`);
  }
  return counts;
}

/** Whole samples of X.npy as float32 rows, and the sample count. */
function samples(file: string): { data: Float32Array; n: number } {
  const x = readNpyFile(file);
  return { data: x.data instanceof Float32Array ? x.data : Float32Array.from(x.data), n: x.shape[0] ?? 0 };
}

export function compileCommand(model: string, opts: CompileArgs): void {
  const t0 = performance.now();
  const options: CompileOptions = { device: opts.device ?? 'ideal', defects: opts.defects, remap: opts.remap };
  if (opts.calibrate) {
    if (opts.calibrate.length > 2) throw new InputError('--calibrate takes X.npy and optionally its labels L.npy');
    const x = samples(opts.calibrate[0]!);
    options.calibrate = x.data;
    if (opts.calibrate[1]) options.calibrateLabels = readLabels(opts.calibrate[1], x.n);
  }
  if (opts.branches !== undefined) options.branches = parseBranches(opts.branches);
  if (opts.dendriteMode !== undefined) {
    if (!opts.calibrate) throw new InputError('--dendrite-mode chooses how --calibrate sets the dendrites; give --calibrate X.npy too');
    options.dendriteMode = opts.dendriteMode;
  }
  if (opts.branchStrategy !== undefined) {
    if (opts.branches === undefined) throw new InputError('--branch-strategy needs --branches');
    options.branchStrategy = opts.branchStrategy;
  }
  let bar: ReturnType<typeof progressBar> | undefined;
  if (opts.finetune) {
    if (opts.finetune.length !== 2) throw new InputError('--finetune takes two files: the samples X.npy and their labels L.npy');
    const x = samples(opts.finetune[0]!);
    options.finetune = {
      inputs: x.data,
      labels: readLabels(opts.finetune[1]!, x.n),
      epochs: opts.epochs,
      onProgress: (done, total) => {
        bar ??= progressBar('fine-tuning', total, 'steps');
        bar.update(done);
      },
    };
  } else if (opts.epochs !== undefined) {
    throw new InputError('--epochs needs --finetune');
  }
  let result;
  try {
    result = compileWithReport(model, options);
  } finally {
    bar?.stop();
  }
  const { artifact, report } = result;
  const bytes = writeArtifact(artifact);
  try {
    mkdirSync(dirname(opts.output), { recursive: true });
    writeFileSync(opts.output, bytes);
  } catch (e) {
    throw new InputError(`cannot write ${opts.output}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { file: opts.output });
  }
  const ms = performance.now() - t0;
  const shape = [artifact.layers[0]!.inFeatures, ...artifact.layers.map((l) => l.outFeatures)].join('-');
  for (const w of report.warnings) console.warn(`warning: ${w}`);
  if (report.branches) console.log(`branches ${report.branches.counts.join(', ')} (${report.branches.strategy})`);
  if (report.calibration) console.log(`calibration: ${report.calibration.summary}`);
  if (report.finetune) console.log(`fine-tuning: ${report.finetune.summary} (${report.finetune.seconds.toFixed(1)} s)`);
  console.log(
    `compiled ${model} (${shape}) for ${artifact.profile.name}: ${artifact.layers.length} layers on ${artifact.arrays.length} arrays` +
      (artifact.chip ? ` of a chip with ${artifact.chip.faults} stuck cells (remap ${artifact.chip.remap}${artifact.chip.calibrated ? ', calibrated' : ''})` : '') +
      ` -> ${opts.output} (${(bytes.length / 1024).toFixed(1)} KiB, ${ms.toFixed(0)} ms)`,
  );
}
