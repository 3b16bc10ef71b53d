/**
 * The real PyTorch exports: the ideal profile reproduces ONNX Runtime's stored outputs, and the
 * hfo2-1t1r chip stays within 1.5 points of float accuracy.
 */
import { describe, expect, it } from 'vitest';
import { compile } from '../../compiler/index.js';
import { writeArtifact } from '../../artifact/write.js';
import { readNpyFile } from '../../common/npy.js';
import { InferenceSession, Tensor } from '../../runtime/index.js';
import { argmaxAccuracy, extraFixtures, labels, mnistFixtures, patternFixtures, relError } from '../helpers/fixtures.js';

const fixtures = [...mnistFixtures(), ...extraFixtures(), ...patternFixtures()];

async function runFixture(model: string, inputs: string, device: string) {
  const session = await InferenceSession.create(writeArtifact(compile(model, { device })), { seed: 1 });
  const x = readNpyFile(inputs);
  const n = x.shape[0]!;
  const meta = session.inputMetadata[0]!;
  const y = await session.run({ [meta.name]: new Tensor('float32', x.data, [n, ...(meta.shape.slice(1) as number[])]) });
  await session.release();
  return { y: y[session.outputNames[0]!]!.data, n };
}

describe('ideal profile reproduces ONNX Runtime', () => {
  it.each(fixtures.filter((f) => !f.name.startsWith('fp16')).map((f) => [f.name, f] as const))('%s', async (_name, f) => {
    const { y } = await runFixture(f.model, f.inputs, 'ideal');
    const ref = readNpyFile(f.logits).data;
    expect(y.length).toBe(ref.length);
    expect(relError(y, ref)).toBeLessThan(1e-4);
    expect(argmaxAccuracy(y, 10, labels(f.inputs))).toBeCloseTo(f.ortAccuracy, 6);
  });

  it('fp16-8x8: float16 weights and input, within float16 rounding of ONNX Runtime and the same accuracy within 0.2 points', async () => {
    const f = fixtures.find((x) => x.name === 'fp16-8x8')!;
    const { y } = await runFixture(f.model, f.inputs, 'ideal');
    const ref = readNpyFile(f.logits).data;
    // ONNX Runtime computes this model in float16 (about 3 decimal digits); dendra in float32.
    expect(relError(y, ref)).toBeLessThan(2e-3);
    expect(Math.abs(argmaxAccuracy(y, 10, labels(f.inputs)) - f.ortAccuracy)).toBeLessThan(0.002);
  });
});

describe('hfo2-1t1r (128 x 64 arrays, 32 levels, 8-bit DAC and ADC)', () => {
  it.each(mnistFixtures().map((f) => [f.name, f] as const))('%s stays within 1.5 points of float accuracy', async (_name, f) => {
    const { y } = await runFixture(f.model, f.inputs, 'hfo2-1t1r');
    const acc = argmaxAccuracy(y, 10, labels(f.inputs));
    expect(acc).toBeGreaterThan(f.ortAccuracy - 0.015);
  });
});
