/** The onnxruntime-shaped session API and its refusals. */
import { describe, expect, it } from 'vitest';
import { compile } from '../../compiler/index.js';
import { writeArtifact } from '../../artifact/write.js';
import { InputError, DeviceError, ArtifactError } from '../../common/errors.js';
import { readNpyFile } from '../../common/npy.js';
import { InferenceSession, Tensor } from '../../runtime/index.js';
import { mnist } from '../helpers/fixtures.js';
import { readFileSync } from 'node:fs';
import { loadProfile } from '../../common/profile.js';

const hfo2 = loadProfile('hfo2-1t1r');
const artifact = writeArtifact(compile(mnist('mnist-784x500x10.onnx'), { device: 'hfo2-1t1r' }));
// The same chip without read noise: every run of an input gives the same output.
const steady = writeArtifact(compile(mnist('mnist-784x500x10.onnx'), { device: { ...hfo2, read: { ...hfo2.read, relative: 0 } } }));
const digits = readNpyFile(mnist('digits28-f32.npy'));

describe('InferenceSession', () => {
  it('exposes names and metadata like onnxruntime-node', async () => {
    const s = await InferenceSession.create(artifact);
    expect(s.inputNames).toEqual(['input']);
    expect(s.outputNames).toEqual(['logits']);
    expect(s.inputMetadata[0]).toEqual({ name: 'input', isTensor: true, type: 'float32', shape: ['batch', 1, 28, 28] });
    expect(s.profile.name).toBe('hfo2-1t1r');
    await s.release();
  });

  it('batch 1 (sync path) and batch 256 (worker path) give the same rows', async () => {
    const s = await InferenceSession.create(steady, { threads: 2 });
    const big = (await s.run({ input: new Tensor('float32', digits.data.subarray(0, 256 * 784), [256, 1, 28, 28]) })).logits!.data;
    for (const i of [0, 17, 255]) {
      const one = (await s.run({ input: new Tensor('float32', digits.data.subarray(i * 784, (i + 1) * 784), [1, 1, 28, 28]) })).logits!.data;
      expect(Array.from(one)).toEqual(Array.from(big.subarray(i * 10, i * 10 + 10)));
    }
    await s.release();
  });

  it('the same seed gives the same outputs; thread count does not change them', async () => {
    const x = new Tensor('float32', digits.data.subarray(0, 64 * 784), [64, 1, 28, 28]);
    const a = await InferenceSession.create(artifact, { seed: 7, threads: 1 });
    const b = await InferenceSession.create(artifact, { seed: 7, threads: 2 });
    expect((await a.run({ input: x })).logits!.data).toEqual((await b.run({ input: x })).logits!.data);
  });

  it('accepts float64 and float16 tensors', async () => {
    const s = await InferenceSession.create(steady);
    const x32 = digits.data.subarray(0, 2 * 784);
    const y32 = (await s.run({ input: new Tensor('float32', x32, [2, 1, 28, 28]) })).logits!.data;
    const y64 = (await s.run({ input: new Tensor('float64', Float64Array.from(x32), [2, 1, 28, 28]) })).logits!.data;
    expect(y64).toEqual(y32);
  });

  it('refuses wrong names, shapes, types and released sessions', async () => {
    const s = await InferenceSession.create(artifact);
    const x = new Tensor('float32', digits.data.subarray(0, 784), [1, 1, 28, 28]);
    await expect(s.run({ wrong: x })).rejects.toThrow(/unknown input 'wrong'; the model's input is 'input'/);
    await expect(s.run({})).rejects.toThrow(/missing input 'input'/);
    await expect(s.run({ input: new Tensor('float32', digits.data.subarray(0, 784), [1, 784]) })).rejects.toThrow(/has shape \[1, 784\]; the model expects \[batch, 1, 28, 28\]/);
    await expect(s.run({ input: new Tensor('uint8', new Uint8Array(784), [1, 1, 28, 28]) })).rejects.toThrow(InputError);
    await expect(s.run({ input: { dims: [1], data: [] } as unknown as Tensor })).rejects.toThrow(/must be a Tensor/);
    await s.release();
    await expect(s.run({ input: x })).rejects.toThrow(DeviceError);
  });

  it('refuses bad options and non-artifacts', async () => {
    await expect(InferenceSession.create(artifact, { seed: -1 })).rejects.toThrow(/seed must be an integer/);
    await expect(InferenceSession.create(artifact, { threads: 0 })).rejects.toThrow(/threads must be an integer/);
    await expect(InferenceSession.create(artifact, { backend: 'gpu' as 'sim' })).rejects.toThrow(/backend 'gpu' is not available/);
    await expect(InferenceSession.create(readFileSync(mnist('mnist8x8-64x54x10.onnx')))).rejects.toThrow(/not a dendra artifact; compile/);
    await expect(InferenceSession.create('/nonexistent.dendra')).rejects.toThrow(ArtifactError);
  });

  it('Tensor checks its data against its dims', () => {
    expect(() => new Tensor('float32', new Float32Array(5), [2, 3])).toThrow(/hold 6 elements but the data has 5/);
    expect(() => new Tensor('float32', new Float64Array(6) as unknown as Float32Array, [2, 3])).toThrow(/needs a Float32Array/);
    expect(new Tensor('float32', [1, 2, 3]).dims).toEqual([3]);
  });
});
