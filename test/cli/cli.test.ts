/** The CLI contract, as scripts use it: compile → run → eval → inspect, and one-line errors. */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { encodeNpy, readNpyFile } from '../../common/npy.js';
import { mnist, extra, relError } from '../helpers/fixtures.js';
import { dendra, expectOneLineError } from '../helpers/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'dendra-cli-'));

describe('compile → run → eval → inspect', () => {
  const art = join(dir, 'm.dendra');
  it('compile', () => {
    const r = dendra('compile', mnist('mnist-784x500x10.onnx'), '--device', 'ideal', '-o', art);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/2 layers on 2 arrays/);
  });
  it('run writes float32 [n, 10] matching ONNX Runtime', () => {
    const y = join(dir, 'y.npy');
    const r = dendra('run', art, '--input', mnist('digits28-f32.npy'), '--output', y);
    expect(r.code).toBe(0);
    const out = readNpyFile(y);
    expect(out.dtype).toBe('float32');
    expect(out.shape).toEqual([2004, 10]);
    expect(relError(out.data, readNpyFile(mnist('mnist-784x500x10.ort-logits.npy')).data)).toBeLessThan(1e-4);
  });
  it('run takes float64, float16 and uint8 inputs, and flat rows for image models', () => {
    const x = readNpyFile(mnist('digits28-f32.npy'));
    const n = 5;
    const rows = x.data.subarray(0, n * 784);
    const f64 = encodeNpy(rows, [n, 1, 28, 28]);
    // Rewrite the float32 payload as float64 / float16 / uint8 .npy files by hand.
    const header = (descr: string, shape: string) => {
      let h = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shape}, }`;
      h += ' '.repeat((64 - ((10 + h.length + 1) % 64)) % 64) + '\n';
      const b = Buffer.alloc(10 + h.length);
      b.write('\x93NUMPY', 0, 'latin1');
      b[6] = 1;
      b.writeUInt16LE(h.length, 8);
      b.write(h, 10, 'latin1');
      return b;
    };
    void f64;
    const files: Record<string, Buffer> = {
      'x64.npy': Buffer.concat([header('<f8', '(5, 1, 28, 28)'), Buffer.from(Float64Array.from(rows).buffer)]),
      'x16.npy': Buffer.concat([header('<f2', '(5, 784)'), Buffer.from(new Uint16Array(n * 784).fill(0x3c00).buffer)]),
      'xu8.npy': Buffer.concat([header('|u1', '(5, 28, 28)'), Buffer.from(new Uint8Array(n * 784).fill(1))]),
    };
    for (const [name, bytes] of Object.entries(files)) {
      writeFileSync(join(dir, name), bytes);
      const y = join(dir, `y-${name}`);
      const r = dendra('run', art, '--input', join(dir, name), '--output', y);
      expect(r.err).toBe('');
      expect(readNpyFile(y).shape).toEqual([5, 10]);
    }
    // float16 ones and uint8 ones are the same input: all pixels 1.0.
    expect(readNpyFile(join(dir, 'y-x16.npy')).data).toEqual(readNpyFile(join(dir, 'y-xu8.npy')).data);
    expect(relError(readNpyFile(join(dir, 'y-x64.npy')).data, readNpyFile(join(dir, 'y.npy')).data.subarray(0, 50))).toBeLessThan(1e-6);
  });
  it('eval --json prints one JSON object with accuracy and n', () => {
    const r = dendra('eval', art, '--input', mnist('digits28-f32.npy'), '--labels', mnist('labels.npy'), '--json');
    expect(r.code).toBe(0);
    const report = JSON.parse(r.out);
    expect(report.n).toBe(2004);
    expect(report.accuracy).toBeCloseTo(0.9426147704590818, 9);
  });
  it('inspect an artifact and a model', () => {
    const a = dendra('inspect', art);
    expect(a.code).toBe(0);
    expect(a.out).toMatch(/layer0\s+784 → 500\s+relu/);
    const m = dendra('inspect', extra('bn-leakyrelu-opset11.onnx'));
    expect(m.out).toMatch(/BatchNormalization×2/);
    expect(m.out).toMatch(/compilable: yes/);
    const j = JSON.parse(dendra('inspect', art, '--json').out);
    expect(j.layers[0].tiles).toBe(1);
  });
});

describe('bad input: exit status 1 and one line', () => {
  const art = join(dir, 'small.dendra');
  dendra('compile', mnist('mnist8x8-64x54x10.onnx'), '--device', 'hfo2-1t1r', '-o', art);
  it('a missing model', () => expectOneLineError(dendra('compile', join(dir, 'none.onnx'), '-o', join(dir, 'x.dendra')), /none\.onnx: cannot read model file: ENOENT/));
  it('a corrupt model', () => {
    const bad = join(dir, 'bad.onnx');
    writeFileSync(bad, readFileSync(mnist('mnist8x8-64x54x10.onnx')).subarray(0, 5000));
    expectOneLineError(dendra('compile', bad, '-o', join(dir, 'x.dendra')), /bad\.onnx: not a valid ONNX model/);
  });
  it('an unknown device', () => expectOneLineError(dendra('compile', mnist('mnist8x8-64x54x10.onnx'), '--device', 'quantum', '-o', join(dir, 'x.dendra')), /unknown device 'quantum'/));
  it('a damaged artifact', () => {
    const bad = join(dir, 'bad.dendra');
    const b = readFileSync(art);
    b[200]! ^= 1;
    writeFileSync(bad, b);
    expectOneLineError(dendra('run', bad, '--input', mnist('digits8x8-f32.npy'), '--output', join(dir, 'o.npy')), /checksum does not match/);
  });
  it('inputs of the wrong shape', () => expectOneLineError(dendra('run', art, '--input', mnist('digits28-f32.npy'), '--output', join(dir, 'o.npy')), /trailing dimensions must be \(64\)/));
  it('labels that do not match', () => {
    const five = join(dir, 'five.npy');
    writeFileSync(five, encodeNpy(Float32Array.from([1, 2, 3, 4, 5]), [5]));
    expectOneLineError(dendra('eval', art, '--input', mnist('digits8x8-f32.npy'), '--labels', five), /five\.npy hold 5 labels but the input holds 2004 samples/);
    expectOneLineError(dendra('eval', art, '--input', mnist('digits8x8-f32.npy'), '--labels', mnist('digits28-f32.npy')), /expected \(n,\) class indices or \(n, classes\)/);
  });
  it('a missing option', () => expectOneLineError(dendra('run', art, '--input', mnist('digits8x8-f32.npy')), /required option '--output <Y.npy>' not specified/));
  it('a bad seed', () => expectOneLineError(dendra('run', art, '--input', mnist('digits8x8-f32.npy'), '--output', join(dir, 'o.npy'), '--seed', 'x'), /--seed must be an integer/));
  it('an unknown command', () => expectOneLineError(dendra('fly'), /unknown command 'fly'/));
  it('data mnist --colour: a seed, and 28 × 28 digits only', () => {
    expectOneLineError(dendra('data', 'mnist', '--colour', 'red', '-o', join(dir, 'c')), /--colour takes a seed/);
    expectOneLineError(dendra('data', 'mnist', '--colour', '1', '--size', '8', '-o', join(dir, 'c')), /--colour pads the 28 × 28 digits .* not go with --size 8/);
    const r = dendra('data', 'mnist', '--split', 'test', '--colour', '3', '-o', join(dir, 'c'));
    expect(r.code).toBe(0);
    expect(readNpyFile(join(dir, 'c', 'inputs.npy')).shape).toEqual([2004, 3, 32, 32]);
  });
  it('an npy file that is not one', () => expectOneLineError(dendra('run', art, '--input', mnist('labels.npy').replace('labels.npy', 'README.md'), '--output', join(dir, 'o.npy')), /not a readable \.npy file/));
});
