/** Every way a model can be refused: a typed ModelError whose message names the problem. */
import { mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compile, loadOnnx } from '../../compiler/index.js';
import { ModelError, ProfileError } from '../../common/errors.js';
import { model, randomValues, tensor, type ModelSpec } from '../helpers/onnx-builder.js';
import { mnist } from '../helpers/fixtures.js';

const gemm = (over: Partial<ModelSpec> = {}): ModelSpec => ({
  input: { dims: ['batch', 4] },
  nodes: [{ op: 'Gemm', inputs: ['x', 'W', 'b'], outputs: ['y'] }],
  initializers: [tensor('W', [4, 3], randomValues(12, 1)), tensor('b', [3], randomValues(3, 2))],
  ...over,
});

function refused(bytes: Uint8Array | string, pattern: RegExp) {
  let err: unknown;
  try {
    compile(bytes);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(ModelError);
  expect((err as Error).message).toMatch(pattern);
  expect((err as Error).message).not.toContain('\n');
}

describe('corrupt and truncated files', () => {
  const real = readFileSync(mnist('mnist8x8-64x54x10.onnx'));
  it('empty', () => refused(new Uint8Array(0), /empty/));
  it('truncated real export', () => refused(real.subarray(0, Math.floor(real.length / 2)), /truncated|not a valid ONNX/));
  it('random bytes', () => refused(Uint8Array.from(randomValues(4096, 9), (v) => Math.floor((v + 1) * 127)), /not a valid ONNX|opset/));
  it('a text file', () => refused(new TextEncoder().encode('hello, this is not a model\n'.repeat(20)), /not a valid ONNX/));
  it('a missing file names the file', () => refused('/nonexistent/m.onnx', /cannot read model file: ENOENT/));
});

describe('unsupported content', () => {
  it('an unsupported op names the node, the op and what is supported', () => {
    refused(model(gemm({
      nodes: [
        { op: 'Gemm', inputs: ['x', 'W', 'b'], outputs: ['h'] },
        { op: 'Softplus', inputs: ['h'], outputs: ['y'], name: 'soft' },
      ],
    })), /node 'soft' has op Softplus, which dendra does not support; supported: Gemm, MatMul/);
  });
  it('an op from a custom domain', () => {
    refused(model(gemm({ nodes: [{ op: 'Gemm', inputs: ['x', 'W', 'b'], outputs: ['y'], domain: 'com.example', name: 'g' }] })), /custom domain 'com.example'/);
  });
  it('opsets below 9 and above 21', () => {
    refused(model(gemm({ opset: 8 })), /opset 8 is not supported/);
    refused(model(gemm({ opset: 22 })), /opset 22 is not supported/);
  });
  it('two inputs', () => refused(model(gemm({ extraInputs: ['x2'] })), /2 inputs/));
  it('a node off the data path', () => {
    refused(model(gemm({
      nodes: [{ op: 'Gemm', inputs: ['x', 'W', 'b'], outputs: ['y'] }, { op: 'Relu', inputs: ['b'], outputs: ['z'], name: 'stray' }],
    })), /node 'stray' \(Relu\) is not on the network's single data path/);
  });
  it('transA', () => refused(model(gemm({ nodes: [{ op: 'Gemm', inputs: ['x', 'W', 'b'], outputs: ['y'], attrs: { transA: 1 }, name: 'g' }] })), /transA=1/));
  it('a weight computed at run time rather than stored', () => {
    refused(model(gemm({ nodes: [{ op: 'MatMul', inputs: ['x', 'x'], outputs: ['y'], name: 'mm' }] })), /MatMul 'mm'.*must be a constant initializer|weight 'x' must be a constant/);
  });
  it('Softmax over the batch', () => {
    refused(model(gemm({ nodes: [{ op: 'Gemm', inputs: ['x', 'W', 'b'], outputs: ['h'] }, { op: 'Softmax', inputs: ['h'], outputs: ['y'], attrs: { axis: 0 }, name: 'sm' }] })), /Softmax 'sm' over axis 0/);
  });
  it('a batch norm with no dense layer to fold into', () => {
    const n = (k: string, v: number) => tensor(k, [4], [v, v, v, v]);
    refused(model(gemm({
      nodes: [
        { op: 'Gemm', inputs: ['x', 'W', 'b'], outputs: ['h'] },
        { op: 'Relu', inputs: ['h'], outputs: ['r'] },
        { op: 'BatchNormalization', inputs: ['r', 's', 'bb', 'm', 'v'], outputs: ['y'], name: 'bn' },
      ],
      initializers: [tensor('W', [4, 4], randomValues(16, 1)), tensor('b', [4], randomValues(4, 2)), n('s', 1), n('bb', 0), n('m', 0), n('v', 1)],
    })), /BatchNormalization 'bn' ends the network/);
  });
});

describe('bad weights and shapes', () => {
  it('a NaN weight names the tensor and index', () => {
    const w = randomValues(12, 1);
    w[5] = NaN;
    refused(model(gemm({ initializers: [tensor('W', [4, 3], w), tensor('b', [3], randomValues(3, 2))] })), /tensor 'W' .*non-finite value \(NaN\) at index 5/);
  });
  it('an infinite bias', () => {
    refused(model(gemm({ initializers: [tensor('W', [4, 3], randomValues(12, 1)), tensor('b', [3], [0, Infinity, 0])] })), /tensor 'b' .*non-finite value \(Infinity\)/);
  });
  it('shapes that do not chain', () => {
    refused(model(gemm({ initializers: [tensor('W', [5, 3], randomValues(15, 1)), tensor('b', [3], randomValues(3, 2))] })), /weight 'W' has shape \[5, 3\] but its input has 4 features/);
  });
  it('a bias that does not broadcast', () => {
    refused(model(gemm({ initializers: [tensor('W', [4, 3], randomValues(12, 1)), tensor('b', [2], randomValues(2, 2))] })), /'b' has shape \[2\], which does not broadcast over 3 features/);
  });
  it('raw data of the wrong length', () => {
    const t = tensor('W', [4, 3], randomValues(12, 1));
    t.rawData = t.rawData!.subarray(0, 40);
    refused(model(gemm({ initializers: [t, tensor('b', [3], randomValues(3, 2))] })), /tensor 'W' holds 40 bytes of raw data but its shape \[4, 3\] of float32 needs 48/);
  });
  it('an unsupported element type', () => {
    const t = { name: 'W', dims: [4, 3], dataType: 8, stringData: [] };
    refused(model(gemm({ initializers: [t, tensor('b', [3], randomValues(3, 2))] })), /tensor 'W' has element type STRING/);
  });
  it('a dynamic feature dimension', () => refused(model(gemm({ input: { dims: ['batch', 'features'] } })), /only the first \(batch\) dimension may be dynamic/));
});

describe('external data', () => {
  const ext = (location: string, offset = 0, length = 48) => ({
    name: 'W', dims: [4, 3], dataType: 1, dataLocation: 1,
    externalData: [{ key: 'location', value: location }, { key: 'offset', value: String(offset) }, { key: 'length', value: String(length) }],
  });
  function write(location: string, offset = 0, length = 48, dataBytes = 48) {
    const root = mkdtempSync(join(tmpdir(), 'dendra-ext-'));
    const dir = join(root, 'model');
    mkdirSync(dir);
    writeFileSync(join(root, 'outside.bin'), new Uint8Array(dataBytes));
    writeFileSync(join(dir, 'w.bin'), new Uint8Array(dataBytes));
    const file = join(dir, 'm.onnx');
    writeFileSync(file, model(gemm({ initializers: [ext(location, offset, length), tensor('b', [3], randomValues(3, 2))] })));
    return { root, dir, file };
  }
  it('a location outside the model folder is refused', () => refused(write('../outside.bin').file, /outside the model's folder; refused/));
  it('an absolute location is refused', () => {
    const { root, file } = write('placeholder');
    writeFileSync(file, model(gemm({ initializers: [ext(join(root, 'outside.bin')), tensor('b', [3], randomValues(3, 2))] })));
    refused(file, /outside the model's folder; refused/);
  });
  it('a symlink that leads outside is refused', () => {
    const { root, dir, file } = write('link.bin');
    symlinkSync(join(root, 'outside.bin'), join(dir, 'link.bin'));
    refused(file, /links outside the model's folder; refused/);
  });
  it('a missing data file', () => refused(write('gone.bin').file, /external data file 'gone.bin' of tensor 'W' is missing/));
  it('a truncated data file', () => refused(write('w.bin', 16, 48, 40).file, /too short for offset 16 \+ length 48 \(truncated\?\)/));
  it('bytes without a path cannot reach external data', () => {
    refused(readFileSync(write('w.bin').file), /load the model from its path/);
  });
});

describe('device profiles', () => {
  it('an unknown device name lists the shipped ones', () => {
    expect(() => compile(mnist('mnist8x8-64x54x10.onnx'), { device: 'nope' })).toThrow(ProfileError);
    expect(() => compile(mnist('mnist8x8-64x54x10.onnx'), { device: 'nope' })).toThrow(/unknown device 'nope'; shipped profiles: hfo2-1t1r, ideal, rram-512/);
  });
  it('a bad field is named', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dendra-prof-'));
    const p = JSON.parse(readFileSync(join(__dirname, '..', '..', 'models', 'devices', 'hfo2-1t1r.json'), 'utf8'));
    p.conductance.max = -1;
    writeFileSync(join(dir, 'p.json'), JSON.stringify(p));
    expect(() => compile(mnist('mnist8x8-64x54x10.onnx'), { device: join(dir, 'p.json') })).toThrow(/field 'conductance.max' must be a conductance in siemens/);
  });
});

it('loadOnnx keeps the source hash', () => {
  const g = loadOnnx(readFileSync(mnist('mnist8x8-64x54x10.onnx')));
  expect(g.source.sha256).toMatch(/^[0-9a-f]{64}$/);
});
