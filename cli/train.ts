/**
 * `dendra train MODEL.onnx --device P --input X.npy --labels L.npy ... -o OUT.dendra`: in-situ training on the
 * simulated pulse-level chip (or on a board with --board URL), runtime/train/insitu.ts.
 */
import { writeFileSync } from 'node:fs';
import { checkOutputPath } from '../common/files.js';
import { basename } from 'node:path';
import { writeArtifact } from '../artifact/write.js';
import { loadDefectMap } from '../common/defects.js';
import { InputError } from '../common/errors.js';
import { readNpyFile } from '../common/npy.js';
import { trainInSitu, type InSituReport, type InSituResult } from '../runtime/train/insitu.js';
import type { InitMode } from '../runtime/train/layout.js';
import type { OptimizerKind } from '../runtime/train/optimizer.js';
import { BoardTrainChip } from '../runtime/train/board-chip.js';
import { artifactId } from '../runtime/backends/device/deploy.js';
import { readLabels } from './eval.js';
import { progressBar } from './progress.js';
import { vegaLiteSvg } from './sweep.js';

export interface TrainArgs {
  device: string;
  input: string;
  labels: string;
  test?: string[];
  defects?: string;
  board?: string;
  init?: InitMode;
  optimizer?: OptimizerKind;
  lr?: number;
  batch?: number;
  epochs?: number;
  seed?: number;
  evalEvery?: number;
  gateStep?: number;
  output: string;
  report?: string;
  json?: boolean;
}

/** Whole samples of X.npy as float32 rows. */
export function readSamples(file: string): { x: Float32Array; n: number } {
  const a = readNpyFile(file);
  const n = a.shape[0] ?? 0;
  if (a.shape.length < 2 || n === 0) throw new InputError(`${file} has shape (${a.shape.join(', ')}); expected samples along the first dimension`, { file });
  return { x: a.data instanceof Float32Array ? a.data : Float32Array.from(a.data), n };
}

/** The report's plot: test accuracy against training samples (the paper's Fig. 3c). */
export async function trainSvg(r: InSituReport, title: string): Promise<string> {
  const spec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: title,
      subtitle: [
        `in-situ training on ${r.chip === 'sim' ? 'the simulated' : 'a board\'s'} ${r.device} chip, init ${r.init}`,
        `${r.optimizer} lr ${r.lr}, batch ${r.batch}, ${r.epochs} epochs, seed ${r.seed}; ${r.testSamples} test samples`,
      ],
      anchor: 'start',
    },
    width: 480,
    height: 320,
    background: 'white',
    padding: 10,
    data: { values: r.curve.map((c) => ({ samples: c.samples, accuracy: 100 * c.accuracy })) },
    mark: { type: 'line', point: true },
    encoding: {
      x: { field: 'samples', type: 'quantitative', title: 'training samples' },
      y: { field: 'accuracy', type: 'quantitative', title: 'test accuracy (%)', scale: { domain: [0, 100] } },
    },
  };
  return vegaLiteSvg(spec);
}

export function formatTrain(r: InSituReport, output: string): string {
  const e = r.chipCounters.energyJ;
  return [
    `in-situ training on ${r.chip === 'sim' ? 'the simulated' : 'the board\'s'} ${r.device} chip: ${r.trainSamples} samples × ${r.epochs} epochs, ${r.optimizer} lr ${r.lr}, batch ${r.batch}, init ${r.init}`,
    ...(r.finalAccuracy !== null ? [`test accuracy ${(100 * r.finalAccuracy).toFixed(2)} % on ${r.testSamples} samples`] : []),
    `pulses per device: mean ${r.pulsesPerDevice.mean.toFixed(0)}, max ${r.pulsesPerDevice.max} (${r.pulsesPerDevice.devices} devices); cells read ${r.chipCounters.reads}${e !== null ? `; programming energy ${(e * 1e6).toFixed(3)} µJ` : ''}`,
    `${r.wallSeconds.toFixed(1)} s; wrote ${output}`,
  ].join('\n');
}

export async function trainCommand(model: string, opts: TrainArgs): Promise<void> {
  checkOutputPath(opts.output, ['.dendra'], '-o');
  if (opts.report) checkOutputPath(opts.report, ['.json'], '--report');
  const train = readSamples(opts.input);
  const labels = readLabels(opts.labels, train.n);
  let test: { inputs: Float32Array; labels: Int32Array } | undefined;
  if (opts.test) {
    if (opts.test.length !== 2) throw new InputError('--test takes two files: the test inputs and their labels (--test Xt.npy Lt.npy)');
    const t = readSamples(opts.test[0]!);
    test = { inputs: t.x, labels: readLabels(opts.test[1]!, t.n) };
  }
  if (opts.board && opts.defects) throw new InputError("--defects describes a simulated chip's stuck devices; a board has its own (give one or the other)");
  const chip = opts.board ? await BoardTrainChip.connect(opts.board) : undefined;
  const total = train.n * (opts.epochs ?? 20);
  const bar = opts.json ? undefined : progressBar('training', total, 'samples', true);
  let result: InSituResult;
  try {
    result = await trainInSitu({
      model,
      device: opts.device,
      inputs: train.x,
      labels,
      test,
      defects: opts.defects ? loadDefectMap(opts.defects) : undefined,
      chip,
      init: opts.init,
      optimizer: opts.optimizer,
      lr: opts.lr,
      batch: opts.batch,
      epochs: opts.epochs,
      seed: opts.seed,
      evalEvery: opts.evalEvery,
      gateStep: opts.gateStep,
      onProgress: (e) => {
        if (!bar) return;
        if (e.kind === 'step') bar.update(e.samples);
        else bar.stage(`test ${(100 * e.accuracy).toFixed(1)} %`);
      },
    });
  } finally {
    bar?.stop();
    if (chip && !result!) await chip.close();
  }
  const bytes = writeArtifact(result.artifact);
  if (chip) {
    // The trained state stays on the board: mark it as this artifact's verified deployment (with the boot id the
    // whole run saw), so eval --device runs it; only then is the artifact written. A board that restarted is not
    // marked, and nothing is written (board-chip.ts).
    try {
      await chip.markTrained(artifactId(bytes));
    } finally {
      await chip.close();
    }
  }
  try {
    writeFileSync(opts.output, bytes);
  } catch (e) {
    throw new InputError(`cannot write ${opts.output}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { file: opts.output });
  }
  const report = { model: basename(model), output: opts.output, ...result.report };
  if (opts.report) {
    const svgFile = opts.report.replace(/\.json$/i, '') + '.svg';
    try {
      writeFileSync(opts.report, JSON.stringify({ ...report, svg: svgFile }, null, 2) + '\n');
      writeFileSync(svgFile, await trainSvg(result.report, `${basename(model)}: test accuracy during in-situ training`));
    } catch (e) {
      throw new InputError(`cannot write the report ${opts.report}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { file: opts.report });
    }
  }
  if (opts.json) console.log(JSON.stringify(report));
  else console.log(formatTrain(result.report, opts.output) + (opts.report ? `; report ${opts.report}` : ''));
}
