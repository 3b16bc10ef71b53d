import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { dendra, expectOneLineError } from '../helpers/cli.js';
import { mnist } from '../helpers/fixtures.js';

// dendra makes an output folder one level deep at most: a missing parent is a mistake, refused before any work.
describe('output folders', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dendra-out-'));

  it('data mnist -o makes its folder, but no folder tree', () => {
    expectOneLineError(dendra('data', 'mnist', '--split', 'test', '--size', '8', '-o', join(dir, 'no', 'such')), /the folder '.*no' does not exist \(dendra does not create folder trees\)/);
    expect(existsSync(join(dir, 'no'))).toBe(false);
    const r = dendra('data', 'mnist', '--split', 'test', '--size', '8', '-o', join(dir, 'test8'));
    expect(r.code).toBe(0);
    expect(readdirSync(join(dir, 'test8')).sort()).toEqual(['inputs.npy', 'labels.npy']);
  });

  it('sweep --out into a missing folder tree is refused before the sweep runs', () => {
    expectOneLineError(
      dendra('sweep', mnist('mnist8x8-64x54x10.onnx'), '--device', 'hfo2-1t1r', '--rates', '0', '--trials', '1',
        '--input', mnist('digits8x8-f32.npy'), '--labels', mnist('labels.npy'), '--out', join(dir, 'a', 'b')),
      /--out .*: the folder '.*a' does not exist/,
    );
    expect(existsSync(join(dir, 'a'))).toBe(false);
  });
});
