/**
 * Every bad input of issue 13, through the CLI: one typed line naming the problem and exit status 1 —
 * never a stack trace, an "internal error", a read that never ends, or a silent exit 0.
 */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeNpy, readNpyFile } from '../../common/npy.js';
import { generateDefects, writeDefectMap } from '../../common/defects.js';
import { loadProfile } from '../../common/profile.js';
import { BoardEmulator } from '../../runtime/backends/device/emulator.js';
import { connectBoard } from '../../runtime/backends/device/client.js';
import { examples, extra } from '../helpers/fixtures.js';
import { dendra, expectOneLineError, MAIN } from '../helpers/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'dendra-bad-'));
const MODEL = examples('mnist8x8-64x54x10.onnx');
const DIGITS = examples('digits8x8-f32.npy');
const LABELS = examples('labels.npy');
const ART = join(dir, 'm.dendra');
const noInternal = (r: { err: string }) => expect(r.err).not.toMatch(/internal error|RangeError|TypeError/);

describe.skipIf(!existsSync(MAIN))('every bad input is named (exit 1, one line)', () => {
  beforeAll(() => {
    expect(dendra('compile', MODEL, '--device', 'hfo2-1t1r', '-o', ART).code).toBe(0);
  });

  it('regression seeds of the fuzzer: a null blob entry and input.shape against input.features', () => {
    for (const [file, pattern] of [
      ['blob-entry-null.dendra', /blob table entry 0 is not an object/],
      ['input-shape-vs-features.dendra', /input.shape \[batch, 7\] holds 7 features but input.features is 6/],
    ] as const) {
      const r = dendra('inspect', join(__dirname, '..', '..', 'fuzz', 'regressions', 'artifact', file));
      expectOneLineError(r, pattern);
      noInternal(r);
    }
  });

  it('a defect map with absurd rows/cols, or an unknown field (named by its path)', () => {
    const map = generateDefects(loadProfile('hfo2-1t1r'), { rate: 0.01, seed: 1, arrays: 2 });
    const huge = join(dir, 'huge.json');
    writeDefectMap(huge, { ...map, arrays: [{ rows: 1e9, cols: 1e9, faults: [] }] });
    let r = dendra('compile', MODEL, '--device', 'hfo2-1t1r', '--defects', huge, '-o', join(dir, 'x.dendra'));
    expectOneLineError(r, /arrays\[0\] is 1000000000 × 1000000000: at most 65536 rows or columns/);
    noInternal(r);
    const typo = join(dir, 'typo.json');
    writeFileSync(typo, JSON.stringify({ ...map, arrays: [{ ...map.arrays[0], fautls: [] }, map.arrays[1]] }));
    r = dendra('compile', MODEL, '--device', 'hfo2-1t1r', '--defects', typo, '-o', join(dir, 'x.dendra'));
    expectOneLineError(r, /unknown field 'arrays\[0\]\.fautls'/);
  });

  it('external data that names a directory', () => {
    const d = join(dir, 'ext');
    mkdirSync(d);
    copyFileSync(extra('external-784x200x10-opset17.onnx'), join(d, 'm.onnx'));
    mkdirSync(join(d, 'external-784x200x10-opset17.onnx.data'));
    const r = dendra('compile', join(d, 'm.onnx'), '-o', join(dir, 'x.dendra'));
    expectOneLineError(r, /external data 'external-784x200x10-opset17\.onnx\.data' of tensor '.*' is a directory/);
    expect(r.err).not.toMatch(/EISDIR/);
  });

  it('/dev/zero as a model, an input or a defect map: refused at once, not read forever', () => {
    const t0 = performance.now();
    expectOneLineError(dendra('inspect', '/dev/zero'), /\/dev\/zero: cannot read file: it is a device, not a file/);
    expectOneLineError(dendra('run', ART, '--input', '/dev/zero', '--output', join(dir, 'y.npy')), /cannot read \.npy file: it is a device/);
    expectOneLineError(dendra('compile', MODEL, '--device', 'hfo2-1t1r', '--defects', '/dev/zero', '-o', join(dir, 'x.dendra')), /cannot read defect map: it is a device/);
    expect(performance.now() - t0).toBeLessThan(20_000);
  });

  it('.npy: a NaN element count, an unlisted dtype', () => {
    const nan = join(dir, 'nan-count.npy');
    copyFileSync(join(__dirname, '..', '..', 'fuzz', 'regressions', 'npy', 'nan-count.npy'), nan);
    expectOneLineError(dendra('run', ART, '--input', nan, '--output', join(dir, 'y.npy')), /not a readable \.npy file/);
    const u2 = join(dir, 'u2.npy');
    const f = Buffer.from(encodeNpy(new Float32Array(128), [2, 64]));
    const header = f.subarray(10, 10 + f.readUInt16LE(8)).toString('latin1').replace("'<f4'", "'<u2'");
    writeFileSync(u2, Buffer.concat([f.subarray(0, 10), Buffer.from(header, 'latin1'), Buffer.alloc(256)]));
    expectOneLineError(dendra('run', ART, '--input', u2, '--output', join(dir, 'y.npy')), /dtype 'u2' is not supported \(float32, float16, float64, uint8, int8, int32 or int64/);
  });

  it("labels outside the model's classes", () => {
    const labels = join(dir, 'labels12.npy');
    const l = readFileSync(LABELS);
    const bad = Buffer.from(l);
    bad[bad.length - 1] = 12;
    writeFileSync(labels, bad);
    expectOneLineError(dendra('eval', ART, '--input', DIGITS, '--labels', labels), /label 12 \(sample 2003\) is outside the model's 10 classes/);
  });

  it('non-finite inputs: refused, or run and counted with --allow-nonfinite', () => {
    const data = readNpyFile(DIGITS).data.slice();
    data[5 * 64 + 3] = NaN;
    data[9 * 64] = Infinity;
    const file = join(dir, 'nan.npy');
    writeFileSync(file, encodeNpy(data, [2004, 64]));
    expectOneLineError(dendra('eval', ART, '--input', file, '--labels', LABELS), /holds 2 non-finite values .*sample 5, element 3.*--allow-nonfinite/);
    const ok = dendra('eval', ART, '--input', file, '--labels', LABELS, '--allow-nonfinite', '--json');
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.out.trim().split('\n').pop()!).nonfiniteInputs).toBe(2);
  });

  it('profiles: a misspelt field is refused with its path; an error never echoes the file', () => {
    const p = JSON.parse(readFileSync(join(__dirname, '..', '..', 'models', 'devices', 'hfo2-1t1r.json'), 'utf8'));
    const typo = join(dir, 'typo-profile.json');
    writeFileSync(typo, JSON.stringify({ ...p, dac: { ...p.dac, bitz: 6 } }));
    expectOneLineError(dendra('compile', MODEL, '--device', typo, '-o', join(dir, 'x.dendra')), /device profile field 'dac\.bitz' is not a field of 'dac'/);
    const secret = join(dir, 'secret.json');
    writeFileSync(secret, 'root:x:0:0:root:/root:/bin/bash\nsecret-line-two\n');
    const r = dendra('compile', MODEL, '--device', secret, '-o', join(dir, 'x.dendra'));
    expectOneLineError(r, /device profile is not valid JSON/);
    expect(r.err).not.toMatch(/root|secret-line/);
  });

  it('output paths: a wrong extension, a folder that does not exist', () => {
    expectOneLineError(dendra('compile', MODEL, '-o', join(dir, 'x.onnx')), /-o .*x\.onnx: expected a file ending in \.dendra, not '\.onnx'/);
    expectOneLineError(dendra('compile', MODEL, '-o', join(dir, 'no', 'such', 'x.dendra')), /the folder '.*no[/\\]such' does not exist/);
    expect(existsSync(join(dir, 'no'))).toBe(false);
    expectOneLineError(dendra('run', ART, '--input', DIGITS, '--output', join(dir, 'y.csv')), /expected a file ending in \.npy/);
  });
});

describe.skipIf(!existsSync(MAIN))('deploy --max-failed', () => {
  let emu: BoardEmulator;
  let url: string;
  beforeAll(async () => {
    emu = new BoardEmulator({ profile: loadProfile('hfo2-1t1r'), arrays: 2, faultRate: 0.1, seed: 9 });
    url = await emu.listen('tcp://127.0.0.1:0');
  });
  afterAll(() => emu.close());

  it('an artifact compiled without the chip map fails beyond the threshold: exit 1, the fix named, not marked ready', async () => {
    const art = join(dir, 'nomap.dendra');
    expect(dendra('compile', MODEL, '--device', 'hfo2-1t1r', '-o', art).code).toBe(0);
    const r = await new Promise<{ code: number | null; err: string }>((resolve) => {
      // async: the emulator serves from this process
      import('node:child_process').then(({ execFile }) =>
        execFile(process.execPath, [MAIN, 'deploy', art, '--device', url], (e, _out, err) => resolve({ code: e ? (e as { code?: number }).code ?? 1 : 0, err })),
      );
    });
    expect(r.code).toBe(1);
    expect(r.err.trim().split('\n').filter((l) => l.startsWith('dendra:'))).toHaveLength(1);
    expect(r.err).toMatch(/cells failed program-and-verify \(more than --max-failed 1% = \d+\); the board is not marked ready/);
    expect(r.err).toMatch(/dendra scan --device .* --defects/);
    expect(existsSync(join(dir, 'nomap.defects.json'))).toBe(true);
    const board = await connectBoard(url);
    expect((await board.status()).deployment?.state).toBe('programming');
    await board.close();
  });
});
