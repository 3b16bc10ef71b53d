/**
 * The training engine's section of `npm run bench` (`npm run bench -- training` runs it alone):
 *
 * 1. Training throughput (samples/s through forward, backward and an Adam step) of the 784-500-10 network on
 *    the 7,996 training digits, against onnxruntime-node's inference throughput on the same network and the
 *    same number of threads, in the same process, measured in interleaved windows (load that comes and goes
 *    falls on both alike). A training step is about three GEMMs per layer against inference's one, so the
 *    target is ≥ 0.25× (issue 10).
 * 2. `--finetune` of the 3072-500-10 network (taox-dendrite, --branches 9,4 --branch-strategy spatial,
 *    calibrated on the training split, 3 epochs on its 7,996 digits coloured as the SVHN-shaped fixture): the
 *    fine-tuning's seconds (target < 30 s) and the whole compile's, next to the simulator's inference
 *    throughput on the artifact it produces (batch 256).
 */
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { compileWithReport, importModel } from '../compiler/index.js';
import { toTrainNetwork } from '../compiler/passes/train-network.js';
import { colouriseDigits, loadMnist } from '../common/mnist.js';
import { packageRoot } from '../common/paths.js';
import { writeArtifact } from '../artifact/write.js';
import { native } from '../native/index.js';
import { InferenceSession, Tensor } from '../runtime/index.js';

export interface TrainingBench {
  throughput: { net: string; batch: number; trainSamplesPerSecond: number; ortInferencesPerSecond: number; ortBatch: number; ratio: number; target?: number }[];
  finetune: { net: string; samples: number; epochs: number; seconds: number; compileSeconds: number; simInferencesPerSecond: number; trainedSamplesPerSecond: number; target: number; summary: string };
}

export async function trainingBench(threads: number, seconds: number): Promise<TrainingBench> {
  const root = packageRoot();
  const train = loadMnist('train', 28);
  const labels = Int32Array.from(train.labels);
  const model784 = join(root, 'test/fixtures/mnist/mnist-784x500x10.onnx');

  // 1. Training against inference, 784-500-10.
  const ortSession = await ort.InferenceSession.create(model784, { intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential' });
  const ortBatch = 256;
  const ortFeed = { [ortSession.inputNames[0]!]: new ort.Tensor('float32', train.x.slice(0, ortBatch * 784), [ortBatch, 1, 28, 28]) };
  const layers = importModel(model784);
  const throughput: TrainingBench['throughput'] = [];
  const window = Math.max(0.2, seconds / 5) * 1000;
  for (const batch of [64, 256]) {
    const trainer = new (native().Trainer)(toTrainNetwork(layers, null, { threads, seed: 1 }), { kind: 'adam', learningRate: 1e-4 });
    const chunk = 2048; // samples per fit call
    const xs = train.x.subarray(0, chunk * 784);
    const ls = labels.subarray(0, chunk);
    await trainer.fit(xs, ls, { epochs: 1, batch }); // warm-up
    for (let i = 0; i < 5; i++) await ortSession.run(ortFeed);
    let bestTrain = 0;
    let bestOrt = 0;
    for (let round = 0; round < 5; round++) {
      let t0 = performance.now();
      let samples = 0;
      while (performance.now() - t0 < window) {
        await trainer.fit(xs, ls, { epochs: 1, batch });
        samples += chunk;
      }
      bestTrain = Math.max(bestTrain, (samples * 1000) / (performance.now() - t0));
      t0 = performance.now();
      let calls = 0;
      while (performance.now() - t0 < window) {
        await ortSession.run(ortFeed);
        calls++;
      }
      bestOrt = Math.max(bestOrt, (calls * ortBatch * 1000) / (performance.now() - t0));
    }
    trainer.release();
    throughput.push({ net: '784-500-10', batch, trainSamplesPerSecond: bestTrain, ortInferencesPerSecond: bestOrt, ortBatch, ratio: bestTrain / bestOrt, target: 0.25 });
  }
  await ortSession.release();

  // 2. --finetune of 3072-500-10 on the coloured training digits.
  const model3072 = join(root, 'test/fixtures/extra/svhn-shaped-3072x500x10.onnx');
  const coloured = colouriseDigits(train.x, 1).x;
  const t0 = performance.now();
  const result = compileWithReport(model3072, {
    device: 'taox-dendrite',
    branches: [9, 4],
    branchStrategy: 'spatial',
    calibrate: coloured,
    calibrateLabels: labels,
    finetune: { inputs: coloured, labels, epochs: 3 },
  });
  const compileSeconds = (performance.now() - t0) / 1000;
  const ft = result.report.finetune!;
  const session = await InferenceSession.create(writeArtifact(result.artifact), { threads });
  const feed = { [session.inputNames[0]!]: new Tensor('float32', coloured.slice(0, 256 * 3072), [256, 3, 32, 32]) };
  for (let i = 0; i < 3; i++) await session.run(feed);
  let calls = 0;
  const s0 = performance.now();
  while (performance.now() - s0 < seconds * 1000) {
    await session.run(feed);
    calls++;
  }
  const simIps = (calls * 256 * 1000) / (performance.now() - s0);
  await session.release();
  const finetune = {
    net: '3072-500-10',
    samples: ft.samples,
    epochs: ft.epochs,
    seconds: ft.seconds,
    compileSeconds,
    simInferencesPerSecond: simIps,
    trainedSamplesPerSecond: (ft.samples * ft.epochs) / ft.seconds,
    target: 30,
    summary: ft.summary,
  };

  console.log(`\ntraining engine (native/src/train, ${threads} thread(s), Adam; onnxruntime-node inference at batch ${ortBatch} on the same threads, interleaved windows):`);
  console.log('  network      train batch   trained samples/s   onnxruntime inferences/s   ratio    target');
  for (const r of throughput) {
    const target = r.target === undefined ? '' : `≥ ${r.target}× ${r.ratio >= r.target ? 'met' : 'MISSED'}`;
    console.log(`  ${r.net.padEnd(12)} ${String(r.batch).padStart(11)}   ${Math.round(r.trainSamplesPerSecond).toString().padStart(17)}   ${Math.round(r.ortInferencesPerSecond).toString().padStart(24)}   ${`${r.ratio.toFixed(2)}×`.padStart(6)}   ${target}`);
  }
  console.log(`  --finetune 3072-500-10 (taox-dendrite, branches 9,4 spatial, ${ft.samples} coloured training digits × ${ft.epochs} epochs): ` +
    `${ft.seconds.toFixed(1)} s   target < 30 s ${ft.seconds < 30 ? 'met' : 'MISSED'} (whole compile with calibration ${compileSeconds.toFixed(1)} s)`);
  console.log(`    ${Math.round(finetune.trainedSamplesPerSecond)} trained samples/s, next to the simulator's ${Math.round(simIps)} inferences/s on the fine-tuned artifact (batch 256)`);
  return { throughput, finetune };
}
