/** Branch assignment: every strategy gives a valid split with the property it promises. */
import { describe, expect, it } from 'vitest';
import { importModel } from '../../compiler/index.js';
import { assignBranches } from '../../compiler/passes/assign-branches.js';
import { layerInputs } from '../../compiler/passes/calibrate.js';
import { readNpyFile } from '../../common/npy.js';
import { InputError } from '../../common/errors.js';
import type { LayerModel } from '../../compiler/ir/layers.js';
import { extra, mnist } from '../helpers/fixtures.js';

const svhn = importModel(extra('svhn-shaped-3072x500x10.onnx'));
const digits = importModel(mnist('mnist-784x500x10.onnx'));

function sizes(branchOf: Int32Array, count: number): number[] {
  const s = new Array<number>(count).fill(0);
  for (const b of branchOf) s[b]!++;
  return s;
}

describe('assignBranches', () => {
  it('spatial: 3 × 32 × 32 in 9 branches is colour channel × columns 1–10, 11–22, 23–32 (320/384/320), the paper’s split', () => {
    const [l0, l1] = assignBranches(svhn, { branches: [9, 4], strategy: 'spatial' });
    expect(sizes(l0!.branchOf, 9)).toEqual([320, 384, 320, 320, 384, 320, 320, 384, 320]);
    // Input (channel 1, row 5, column 15) sits in channel 1's middle strip: branch 4.
    expect(l0!.branchOf[(1 * 32 + 5) * 32 + 15]).toBe(4);
    expect(l0!.branchOf[(2 * 32 + 31) * 32 + 22]).toBe(8);
    // Later layers: contiguous blocks (hidden units 1–125, 126–250, ...).
    expect(sizes(l1!.branchOf, 4)).toEqual([125, 125, 125, 125]);
    expect(l1!.branchOf[124]).toBe(0);
    expect(l1!.branchOf[125]).toBe(1);
  });

  it('balanced: every branch carries about the same weight mass', () => {
    const [plan] = assignBranches(digits, { branches: [9, 1], strategy: 'balanced' });
    const l = digits.layers[0]!;
    const mass = new Array<number>(9).fill(0);
    let largest = 0;
    for (let i = 0; i < l.inFeatures; i++) {
      let m = 0;
      for (let j = 0; j < l.outFeatures; j++) m += Math.abs(l.weight[i * l.outFeatures + j]!);
      mass[plan!.branchOf[i]!] += m;
      largest = Math.max(largest, m);
    }
    expect(Math.max(...mass) - Math.min(...mass)).toBeLessThanOrEqual(largest);
  });

  it('correlated: inputs that are active together share a branch', () => {
    // Synthetic layer input: 12 inputs in 3 groups that switch on together, sample by sample.
    const samples = 60;
    const n = 12;
    const x = new Float32Array(samples * n);
    for (let s = 0; s < samples; s++) for (let i = 0; i < n; i++) x[s * n + i] = (s % 3 === i % 3 ? 1 : 0) + 0.01 * ((s * 7 + i * 13) % 5);
    const model = { ...digits, layers: [{ ...digits.layers[0]!, inFeatures: n, outFeatures: 2, weight: new Float32Array(n * 2), bias: new Float32Array(2) }] } as LayerModel;
    const [plan] = assignBranches(model, { branches: [3], strategy: 'correlated', activity: { samples, inputs: [x] } });
    for (let i = 0; i < n; i++) expect(plan!.branchOf[i]).toBe(plan!.branchOf[i % 3]);
    expect(sizes(plan!.branchOf, 3)).toEqual([4, 4, 4]);
  });

  it('correlated on real digits: equal branch sizes, every branch used', () => {
    const act = layerInputs(digits, readNpyFile(mnist('digits28-f32.npy')).data, 128);
    const [l0, l1] = assignBranches(digits, { branches: [9, 4], strategy: 'correlated', activity: act });
    expect(sizes(l0!.branchOf, 9).every((s) => s === 87 || s === 88)).toBe(true);
    expect(sizes(l1!.branchOf, 4)).toEqual([125, 125, 125, 125]);
  });

  it('contiguous, one branch, and refusals', () => {
    const [a] = assignBranches(digits, { branches: [4, 1], strategy: 'contiguous' });
    expect(sizes(a!.branchOf, 4)).toEqual([196, 196, 196, 196]);
    expect(() => assignBranches(digits, { branches: [9], strategy: 'contiguous' })).toThrow(/gives 1 numbers for a network of 2 layers/);
    const flat = importModel(extra('matmul-add-opset9.onnx')); // input [batch, 784]: no image shape
    expect(() => assignBranches(flat, { branches: [9, 4], strategy: 'spatial' })).toThrow(InputError);
    expect(() => assignBranches(svhn, { branches: [4, 4], strategy: 'spatial' })).toThrow(/multiple of 3/);
    expect(() => assignBranches(digits, { branches: [9, 4], strategy: 'correlated' })).toThrow(/needs calibration data/);
    expect(() => assignBranches(digits, { branches: [0, 4], strategy: 'contiguous' })).toThrow(/from 1 to 784/);
  });
});
