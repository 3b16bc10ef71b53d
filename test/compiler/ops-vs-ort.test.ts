/**
 * Hand-built graphs for every supported op, attribute and weight encoding, compiled with the ideal
 * profile and compared with ONNX Runtime on the same bytes.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compile } from '../../compiler/index.js';
import { writeArtifact } from '../../artifact/write.js';
import { InferenceSession, Tensor } from '../../runtime/index.js';
import { model, randomValues, roundTo16, tensor, type ModelSpec } from '../helpers/onnx-builder.js';
import { runOrt } from '../helpers/ort.js';
import { relError } from '../helpers/fixtures.js';

const BATCH = 7;

async function dendra(bytesOrPath: Uint8Array | string, x: Float32Array, dims: number[]): Promise<Float32Array> {
  const s = await InferenceSession.create(writeArtifact(compile(bytesOrPath, { device: 'ideal' })));
  const out = await s.run({ [s.inputNames[0]!]: new Tensor('float32', x, dims) });
  await s.release();
  return out[s.outputNames[0]!]!.data;
}

async function expectSameAsOrt(spec: ModelSpec, dims: number[], seed = 3) {
  const bytes = model(spec);
  const x = randomValues(dims.reduce((a, b) => a * b, 1), seed, 2);
  const ref = await runOrt(bytes, spec.input?.name ?? 'x', x, dims);
  const got = await dendra(bytes, x, dims);
  expect(got.length).toBe(ref.length);
  expect(relError(got, ref)).toBeLessThan(1e-5);
  return got;
}

const W = (name: string, r: number, c: number, seed: number, type: Parameters<typeof tensor>[3] = 'float32', enc: Parameters<typeof tensor>[4] = 'raw') =>
  tensor(name, [r, c], randomValues(r * c, seed), type, enc);
const B = (name: string, n: number, seed: number, dims = [n]) => tensor(name, dims, randomValues(n, seed, 0.5));

describe('ops match ONNX Runtime (ideal profile)', () => {
  it('Gemm with alpha, beta, transB and a [1, n] bias in typed fields, opset 9, Relu', async () => {
    await expectSameAsOrt({
      opset: 9,
      input: { dims: ['N', 6] },
      nodes: [
        { op: 'Gemm', inputs: ['x', 'W', 'C'], outputs: ['h'], attrs: { alpha: 0.5, beta: 2, transB: 1 } },
        { op: 'Relu', inputs: ['h'], outputs: ['y'] },
      ],
      initializers: [W('W', 5, 6, 1, 'float32', 'typed'), tensor('C', [1, 5], randomValues(5, 2), 'float32', 'typed')],
    }, [BATCH, 6]);
  });

  it('MatMul followed by Add (bias first), LeakyRelu, then a second MatMul + Add with Softmax head, opset 13', async () => {
    const y = await expectSameAsOrt({
      opset: 13,
      input: { dims: ['batch', 8] },
      nodes: [
        { op: 'MatMul', inputs: ['x', 'W1'], outputs: ['a'] },
        { op: 'Add', inputs: ['b1', 'a'], outputs: ['h'] },
        { op: 'LeakyRelu', inputs: ['h'], outputs: ['r'], attrs: { alpha: 0.2 } },
        { op: 'MatMul', inputs: ['r', 'W2'], outputs: ['c'] },
        { op: 'Add', inputs: ['c', 'b2'], outputs: ['z'] },
        { op: 'Softmax', inputs: ['z'], outputs: ['y'], attrs: { axis: -1 } },
      ],
      initializers: [W('W1', 8, 6, 3), B('b1', 6, 4), W('W2', 6, 4, 5), B('b2', 4, 6)],
    }, [BATCH, 8]);
    for (let i = 0; i < BATCH; i++) expect(y.subarray(i * 4, i * 4 + 4).reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5);
  });

  it('BatchNormalization folded into the Gemm before it, and after an activation into the Gemm after it; Sigmoid; Dropout; Identity', async () => {
    const bn = (p: string, n: number, s: number) => [
      tensor(`${p}s`, [n], randomValues(n, s).map((v) => 1 + v / 2)),
      tensor(`${p}b`, [n], randomValues(n, s + 1)),
      tensor(`${p}m`, [n], randomValues(n, s + 2)),
      tensor(`${p}v`, [n], randomValues(n, s + 3).map((v) => 0.5 + Math.abs(v))),
    ];
    await expectSameAsOrt({
      opset: 11,
      input: { dims: ['batch', 6] },
      nodes: [
        { op: 'Gemm', inputs: ['x', 'W1', 'b1'], outputs: ['a'], attrs: { transB: 1 } },
        { op: 'BatchNormalization', inputs: ['a', 'n1s', 'n1b', 'n1m', 'n1v'], outputs: ['an'], attrs: { epsilon: 1e-3 } },
        { op: 'Sigmoid', inputs: ['an'], outputs: ['h'] },
        { op: 'Dropout', inputs: ['h'], outputs: ['hd'], attrs: { ratio: 0.3 } },
        { op: 'BatchNormalization', inputs: ['hd', 'n2s', 'n2b', 'n2m', 'n2v'], outputs: ['hn'] },
        { op: 'Identity', inputs: ['hn'], outputs: ['hi'] },
        { op: 'Gemm', inputs: ['hi', 'W2', 'b2'], outputs: ['y'] },
      ],
      initializers: [W('W1', 5, 6, 11), B('b1', 5, 12), ...bn('n1', 5, 20), ...bn('n2', 5, 30), W('W2', 5, 3, 13), B('b2', 3, 14)],
    }, [BATCH, 6]);
  });

  it('Clip from attributes (opset 9) and from inputs (opset 13), Tanh, LogSoftmax', async () => {
    for (const opset of [9, 13]) {
      const clip = opset < 11
        ? { op: 'Clip', inputs: ['a'], outputs: ['h'], attrs: { min: -0.5, max: 0.75 } }
        : { op: 'Clip', inputs: ['a', 'lo', 'hi'], outputs: ['h'] };
      await expectSameAsOrt({
        opset,
        input: { dims: ['batch', 5] },
        nodes: [
          { op: 'Gemm', inputs: ['x', 'W1', 'b1'], outputs: ['a'] },
          clip,
          { op: 'Gemm', inputs: ['h', 'W2', 'b2'], outputs: ['t'] },
          { op: 'Tanh', inputs: ['t'], outputs: ['u'] },
          { op: 'Gemm', inputs: ['u', 'W3', 'b3'], outputs: ['z'] },
          { op: 'LogSoftmax', inputs: ['z'], outputs: ['y'], attrs: { axis: 1 } },
        ],
        initializers: [W('W1', 5, 7, 1), B('b1', 7, 2), W('W2', 7, 6, 3), B('b2', 6, 4), W('W3', 6, 3, 5), B('b3', 3, 6),
          tensor('lo', [], [-0.5]), tensor('hi', [], [0.75])],
      }, [BATCH, 5]);
    }
  });

  it('Flatten of [N, 2, 3, 4] and Reshape to [-1, F] through a Constant node', async () => {
    await expectSameAsOrt({
      opset: 13,
      input: { dims: ['batch', 2, 3, 4] },
      nodes: [
        { op: 'Flatten', inputs: ['x'], outputs: ['f'], attrs: { axis: 1 } },
        { op: 'Gemm', inputs: ['f', 'W1'], outputs: ['y'] },
      ],
      initializers: [W('W1', 24, 5, 9)],
    }, [BATCH, 2, 3, 4]);
    await expectSameAsOrt({
      opset: 14,
      input: { dims: ['batch', 2, 3, 4] },
      nodes: [
        { op: 'Constant', inputs: [], outputs: ['shape'], attrs: { value: tensor('shape', [2], [-1, 24], 'int64') } },
        { op: 'Reshape', inputs: ['x', 'shape'], outputs: ['f'] },
        { op: 'Gemm', inputs: ['f', 'W1'], outputs: ['y'] },
      ],
      initializers: [W('W1', 24, 5, 9)],
    }, [BATCH, 2, 3, 4]);
  });

  it('x.view(x.size(0), -1) as exporters write it: Shape → Gather → Unsqueeze → Concat → Reshape (opsets 9 and 13)', async () => {
    for (const opset of [9, 13]) {
      const unsqueeze = opset < 13
        ? { op: 'Unsqueeze', inputs: ['n'], outputs: ['n1'], attrs: { axes: [0] } }
        : { op: 'Unsqueeze', inputs: ['n', 'ax'], outputs: ['n1'] };
      await expectSameAsOrt({
        opset,
        input: { dims: ['batch', 2, 3, 4] },
        nodes: [
          { op: 'Shape', inputs: ['x'], outputs: ['s'] },
          { op: 'Constant', inputs: [], outputs: ['zero'], attrs: { value: tensor('zero', [], [0], 'int64') } },
          { op: 'Gather', inputs: ['s', 'zero'], outputs: ['n'], attrs: { axis: 0 } },
          unsqueeze,
          { op: 'Concat', inputs: ['n1', 'minus1'], outputs: ['shape'], attrs: { axis: 0 } },
          { op: 'Reshape', inputs: ['x', 'shape'], outputs: ['f'] },
          { op: 'Gemm', inputs: ['f', 'W1', 'b1'], outputs: ['y'] },
        ],
        initializers: [W('W1', 24, 5, 9), B('b1', 5, 3), tensor('minus1', [1], [-1], 'int64'), tensor('ax', [1], [0], 'int64')],
      }, [BATCH, 2, 3, 4]);
    }
  });

  it('a shape computed as the product of the feature dims: x.view(-1, x.size(1) * x.size(2) * x.size(3))', async () => {
    await expectSameAsOrt({
      opset: 13,
      input: { dims: ['batch', 2, 3, 4] },
      nodes: [
        { op: 'Shape', inputs: ['x'], outputs: ['s'] },
        { op: 'Slice', inputs: ['s', 'one', 'two'], outputs: ['d1'] },
        { op: 'Slice', inputs: ['s', 'two', 'three'], outputs: ['d2'] },
        { op: 'Slice', inputs: ['s', 'three', 'four'], outputs: ['d3'] },
        { op: 'Mul', inputs: ['d1', 'd2'], outputs: ['p'] },
        { op: 'Mul', inputs: ['p', 'd3'], outputs: ['f'] },
        { op: 'Concat', inputs: ['minus1', 'f'], outputs: ['shape'], attrs: { axis: 0 } },
        { op: 'Reshape', inputs: ['x', 'shape'], outputs: ['flat'] },
        { op: 'Gemm', inputs: ['flat', 'W1'], outputs: ['y'] },
      ],
      initializers: [W('W1', 24, 5, 9), ...[['one', 1], ['two', 2], ['three', 3], ['four', 4], ['minus1', -1]].map(([n, v]) => tensor(n as string, [1], [v as number], 'int64'))],
    }, [BATCH, 2, 3, 4]);
  });

  it('weights in an external data file at offsets, loaded from the model path', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dendra-ext-'));
    const w1 = randomValues(6 * 4, 7);
    const b1 = randomValues(4, 8);
    const blob = new Uint8Array(16 + w1.byteLength + b1.byteLength);
    blob.set(new Uint8Array(w1.buffer), 16);
    blob.set(new Uint8Array(b1.buffer), 16 + w1.byteLength);
    writeFileSync(join(dir, 'weights.bin'), blob);
    const ext = (name: string, dims: number[], offset: number, length: number) => ({
      name, dims, dataType: 1, dataLocation: 1,
      externalData: [{ key: 'location', value: 'weights.bin' }, { key: 'offset', value: String(offset) }, { key: 'length', value: String(length) }],
    });
    const file = join(dir, 'm.onnx');
    writeFileSync(file, model({
      input: { dims: ['batch', 6] },
      nodes: [{ op: 'Gemm', inputs: ['x', 'W', 'b'], outputs: ['y'] }],
      initializers: [ext('W', [6, 4], 16, w1.byteLength), ext('b', [4], 16 + w1.byteLength, b1.byteLength)],
    }));
    const x = randomValues(BATCH * 6, 5);
    const ref = await runOrt(file, 'x', x, [BATCH, 6]);
    expect(relError(await dendra(file, x, [BATCH, 6]), ref)).toBeLessThan(1e-5);
  });
});

describe('initializer encodings decode to the same weights', () => {
  const values = roundTo16(randomValues(6 * 4, 21));
  const spec = (type: Parameters<typeof tensor>[3], enc: 'raw' | 'typed'): ModelSpec => ({
    input: { dims: ['batch', 6] },
    nodes: [{ op: 'MatMul', inputs: ['x', 'W'], outputs: ['y'] }],
    initializers: [tensor('W', [6, 4], values, type, enc)],
  });
  it.each([
    ['float16', 'raw'], ['float16', 'typed'], ['bfloat16', 'raw'], ['bfloat16', 'typed'], ['float64', 'raw'], ['float64', 'typed'], ['float32', 'typed'],
  ] as const)('%s in %s fields', async (type, enc) => {
    const x = randomValues(BATCH * 6, 22);
    const reference = await runOrt(model(spec('float32', 'raw')), 'x', x, [BATCH, 6]);
    expect(relError(await dendra(model(spec(type, enc)), x, [BATCH, 6]), reference)).toBeLessThan(1e-6);
  });
});
