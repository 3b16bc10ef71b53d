import { it } from 'vitest';
import { importModel } from '../../compiler/index.js';
import { assignBranches } from '../../compiler/passes/assign-branches.js';
import { calibrateDendrites, defaultDendriteScales } from '../../compiler/passes/calibrate-dendrites.js';
import { dendriticForward, argmaxRows, agreement } from '../../compiler/passes/dendritic-forward.js';
import { readNpyFile } from '../../common/npy.js';
import type { LayerModel } from '../../compiler/ir/layers.js';
import type { DendriteDevice } from '../../common/dendrite.js';
import { mnist } from '../helpers/fixtures.js';

it('scratch', () => {
  const plain = importModel(mnist('mnist-784x500x10.onnx'));
  console.log(plain.layers.map(l => [l.inFeatures, l.outFeatures, l.activation.kind]), plain.head);
  const x = readNpyFile(mnist('digits28-f32.npy')).data as Float32Array;
  const lab = Int32Array.from(readNpyFile(mnist('labels.npy')).data as ArrayLike<number>);
  const plans = assignBranches(plain, { branches: [9, 4], strategy: 'contiguous' });
  const model: LayerModel = { ...plain, layers: plain.layers.map((l, li) => ({ ...l, dendrites: { count: plans[li]!.count, branchOf: plans[li]!.branchOf, fullScale: 1, biasScale: 1, soma: { kind: 'activation' as const }, strategy: 'contiguous', calibrated: false } })) };
  const sc = defaultDendriteScales(model);
  console.log('default', sc);
  const withDef: LayerModel = { ...model, layers: model.layers.map((l, li) => ({ ...l, dendrites: { ...l.dendrites!, ...sc[li]! } })) };
  for (const rectify of [false, true]) {
    const dev: DendriteDevice = { kind: 'exponential', nonlinearity: 0.1, onOffRatio: 100, voltage: 5, onVoltage: 5, threshold: 0.5, rectify, variation: 0, onCurrent: 1e-6, time: 1e-5 };
    const n = 1000;
    const calX = x.subarray(0, n * 784), calL = lab.subarray(0, n);
    const held = x.subarray(n * 784);
    const heldL = lab.subarray(n);
    let t = performance.now();
    const byp = dendriticForward(model, dev, held, { bypass: true });
    console.log('bypass forward ms', performance.now() - t);
    const acc = (m: LayerModel, bypass = false) => agreement(argmaxRows(dendriticForward(m, dev, held, { bypass }).outputs, heldL.length, 10), heldL);
    console.log('held bypass', acc(model, true), 'default', acc(withDef));
    t = performance.now();
    const cal = calibrateDendrites(withDef, dev, calX, calL);
    console.log('calibrate s', (performance.now() - t) / 1000, cal.report.summary, JSON.stringify(cal.report.layers));
    console.log('held cal', acc(cal.model));
    void byp;
  }
});
