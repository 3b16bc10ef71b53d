/**
 * Writes the fuzz seed corpus (fuzz/corpus/TARGET/): small valid inputs of every kind, so mutations start
 * from files the readers accept. Deterministic; run `npm run build && node dist/fuzz/make-seeds.js` after
 * a format change and commit the result.
 */
import { copyFileSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { compile } from '../compiler/index.js';
import { writeArtifact } from '../artifact/write.js';
import { generateDefects, writeDefectMap } from '../common/defects.js';
import { encodeNpy } from '../common/npy.js';
import { packageRoot } from '../common/paths.js';
import { loadProfile } from '../common/profile.js';
import { model, randomValues, tensor } from '../test/helpers/onnx-builder.js';
import { corpusDir, requestStream, smallProfile } from './targets.js';
import { createConnection, createServer, type AddressInfo } from 'node:net';
import { BoardEmulator } from '../runtime/backends/device/emulator.js';
import { connectBoard } from '../runtime/backends/device/client.js';
import { scan } from '../runtime/backends/device/scan.js';

const root = packageRoot();
const dir = (t: string) => {
  const d = corpusDir(t);
  mkdirSync(d, { recursive: true });
  return d;
};

// ---- ONNX models ----
const onnxDir = dir('onnx');
const models: Record<string, Uint8Array> = {
  'tiny-6x5x3-gemm-relu.onnx': model({
    input: { dims: ['batch', 6] },
    nodes: [
      { op: 'Gemm', inputs: ['x', 'w1', 'b1'], outputs: ['h'], attrs: { transB: 1 } },
      { op: 'Relu', inputs: ['h'], outputs: ['r'] },
      { op: 'Gemm', inputs: ['r', 'w2', 'b2'], outputs: ['y'], attrs: { transB: 1 } },
    ],
    initializers: [tensor('w1', [5, 6], randomValues(30, 1)), tensor('b1', [5], randomValues(5, 2, 0.1)), tensor('w2', [3, 5], randomValues(15, 3)), tensor('b2', [3], randomValues(3, 4, 0.1))],
  }),
  'matmul-add-sigmoid-softmax.onnx': model({
    input: { dims: ['batch', 4] },
    nodes: [
      { op: 'MatMul', inputs: ['x', 'w1'], outputs: ['m'] },
      { op: 'Add', inputs: ['m', 'b1'], outputs: ['h'] },
      { op: 'Sigmoid', inputs: ['h'], outputs: ['s'] },
      { op: 'MatMul', inputs: ['s', 'w2'], outputs: ['m2'] },
      { op: 'Add', inputs: ['m2', 'b2'], outputs: ['z'] },
      { op: 'Softmax', inputs: ['z'], outputs: ['y'], attrs: { axis: 1 } },
    ],
    initializers: [tensor('w1', [4, 7], randomValues(28, 5)), tensor('b1', [7], randomValues(7, 6)), tensor('w2', [7, 3], randomValues(21, 7)), tensor('b2', [3], randomValues(3, 8))],
  }),
  'flatten-bn-leakyrelu.onnx': model({
    input: { dims: ['batch', 1, 2, 3] },
    nodes: [
      { op: 'Flatten', inputs: ['x'], outputs: ['f'], attrs: { axis: 1 } },
      { op: 'Gemm', inputs: ['f', 'w1', 'b1'], outputs: ['h'], attrs: { transB: 1 } },
      { op: 'BatchNormalization', inputs: ['h', 'g', 'beta', 'mean', 'var'], outputs: ['n'], attrs: { epsilon: 1e-5 } },
      { op: 'LeakyRelu', inputs: ['n'], outputs: ['l'], attrs: { alpha: 0.1 } },
      { op: 'Gemm', inputs: ['l', 'w2', 'b2'], outputs: ['y'], attrs: { transB: 1 } },
    ],
    initializers: [
      tensor('w1', [5, 6], randomValues(30, 9)), tensor('b1', [5], randomValues(5, 10)),
      tensor('g', [5], randomValues(5, 11).map((v) => 1 + v / 4)), tensor('beta', [5], randomValues(5, 12)), tensor('mean', [5], randomValues(5, 13)), tensor('var', [5], randomValues(5, 14).map((v) => 1 + v / 2)),
      tensor('w2', [2, 5], randomValues(10, 15)), tensor('b2', [2], randomValues(2, 16)),
    ],
  }),
  'fp16-tanh-clip-typed-opset11.onnx': model({
    opset: 11,
    input: { dims: ['batch', 5] },
    nodes: [
      { op: 'MatMul', inputs: ['x', 'w1'], outputs: ['m'] },
      { op: 'Add', inputs: ['m', 'b1'], outputs: ['h'] },
      { op: 'Tanh', inputs: ['h'], outputs: ['t'] },
      { op: 'MatMul', inputs: ['t', 'w2'], outputs: ['m2'] },
      { op: 'Clip', inputs: ['m2'], outputs: ['y'], attrs: { min: -1, max: 1 } },
    ],
    initializers: [tensor('w1', [5, 4], randomValues(20, 17).map((v) => Math.round(v * 256) / 256), 'float16'), tensor('b1', [4], randomValues(4, 18), 'float32', 'typed'), tensor('w2', [4, 3], randomValues(12, 19), 'float64')],
  }),
};
for (const [name, bytes] of Object.entries(models)) writeFileSync(join(onnxDir, name), bytes);
copyFileSync(join(root, 'models', 'examples', 'mnist8x8-64x54x10.onnx'), join(onnxDir, 'mnist8x8-64x54x10.onnx'));

// ---- artifacts ----
const artDir = dir('artifact');
const tiny = models['tiny-6x5x3-gemm-relu.onnx']!;
writeFileSync(join(artDir, 'tiny-ideal.dendra'), writeArtifact(compile(tiny, { device: 'ideal' })));
writeFileSync(join(artDir, 'tiny-hfo2.dendra'), writeArtifact(compile(tiny, { device: 'hfo2-1t1r' })));
const hfo2 = loadProfile('hfo2-1t1r');
writeFileSync(join(artDir, 'tiny-hfo2-defects.dendra'), writeArtifact(compile(tiny, { device: hfo2, defects: generateDefects(hfo2, { rate: 0.02, seed: 5, arrays: 2 }) })));
writeFileSync(join(artDir, 'bn-ideal.dendra'), writeArtifact(compile(models['flatten-bn-leakyrelu.onnx']!, { device: 'ideal' })));
writeFileSync(join(artDir, 'tiny-dendrites.dendra'), writeArtifact(compile(tiny, { device: 'taox-dendrite', branches: [2, 1] })));

// ---- .npy arrays ----
const npyDir = dir('npy');
writeFileSync(join(npyDir, 'f32-3x6.npy'), encodeNpy(randomValues(18, 20), [3, 6]));
writeFileSync(join(npyDir, 'f32-empty-0x6.npy'), encodeNpy(new Float32Array(0), [0, 6]));
const header = (descr: string, shape: string, major = 1) => {
  let h = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shape}, }`;
  const pre = major === 1 ? 10 : 12;
  h += ' '.repeat((64 - ((pre + h.length + 1) % 64)) % 64) + '\n';
  const out = new Uint8Array(pre + h.length);
  out.set([0x93, ...Buffer.from('NUMPY'), major, 0]);
  const v = new DataView(out.buffer);
  if (major === 1) v.setUint16(8, h.length, true);
  else v.setUint32(8, h.length, true);
  out.set(Buffer.from(h, 'latin1'), pre);
  return out;
};
const withData = (h: Uint8Array, data: Uint8Array) => {
  const out = new Uint8Array(h.length + data.length);
  out.set(h);
  out.set(data, h.length);
  return out;
};
writeFileSync(join(npyDir, 'u8-labels-5.npy'), withData(header('|u1', '(5,)'), Uint8Array.from([0, 1, 2, 9, 3])));
writeFileSync(join(npyDir, 'i64-labels-3.npy'), withData(header('<i8', '(3,)'), new Uint8Array(BigInt64Array.from([0n, 2n, 1n]).buffer)));
writeFileSync(join(npyDir, 'f16-2x3-v2.npy'), withData(header('<f2', '(2, 3)', 2), new Uint8Array(Uint16Array.from([0x3c00, 0x4000, 0xbc00, 0, 0x3800, 0x7bff]).buffer)));
writeFileSync(join(npyDir, 'f64-2x2x2-v3.npy'), withData(header('<f8', '(2, 2, 2)', 3), new Uint8Array(Float64Array.from([1, 2, 3, 4, 5, 6, 7, 8]).buffer)));
writeFileSync(join(npyDir, 'i8-scalar.npy'), withData(header('|i1', '()'), Uint8Array.from([7])));

// ---- defect maps ----
const defDir = dir('defects');
writeDefectMap(join(defDir, 'hfo2-2-arrays-random.json'), generateDefects(hfo2, { rate: 0.003, seed: 1, arrays: 2 }));
writeDefectMap(join(defDir, 'hfo2-2-arrays-rows.json'), generateDefects(hfo2, { rate: 0.01, seed: 2, arrays: 2, pattern: 'rows' }));

// ---- device profiles ----
const profDir = dir('profile');
for (const f of readdirSync(join(root, 'models', 'devices')).filter((f) => f.endsWith('.json'))) copyFileSync(join(root, 'models', 'devices', f), join(profDir, f));

// ---- request streams ----
writeFileSync(join(dir('frame'), 'every-request.bin'), requestStream());

// ---- a board's replies to a scan (recorded from the emulator through a relay) ----
{
  const emu = new BoardEmulator({ profile: smallProfile(), arrays: 2, faultRate: 0.1, seed: 2 });
  const target = new URL(await emu.listen('tcp://127.0.0.1:0'));
  const recorded: Uint8Array[] = [];
  const relay = createServer((client) => {
    const upstream = createConnection({ host: target.hostname, port: Number(target.port) });
    client.on('data', (d) => upstream.write(d));
    upstream.on('data', (d) => {
      recorded.push(new Uint8Array(d));
      client.write(d);
    });
    client.on('close', () => upstream.destroy());
    upstream.on('error', () => {});
    client.on('error', () => {});
  });
  await new Promise<void>((res) => relay.listen(0, '127.0.0.1', () => res()));
  const board = await connectBoard(`tcp://127.0.0.1:${(relay.address() as AddressInfo).port}`);
  await scan(board, smallProfile());
  await board.close();
  await new Promise<void>((res) => relay.close(() => res()));
  await emu.close();
  writeFileSync(join(dir('replies'), 'scan-2x8x8.bin'), Buffer.concat(recorded));
}

console.log(`seeds written to ${join(root, 'fuzz', 'corpus')}`);
