/** The artifact format: round trip, checksum, versions, foreign and damaged files. */
import { describe, expect, it } from 'vitest';
import { compile } from '../../compiler/index.js';
import { writeArtifact } from '../../artifact/write.js';
import { readArtifact } from '../../artifact/read.js';
import { ArtifactError } from '../../common/errors.js';
import { mnist } from '../helpers/fixtures.js';

const placed = compile(mnist('mnist8x8-64x54x10.onnx'), { device: 'hfo2-1t1r' });
const bytes = writeArtifact(placed);

describe('artifact', () => {
  it('round-trips every conductance, index, scale and the profile', () => {
    const back = readArtifact(bytes);
    expect(back.profile).toEqual(placed.profile);
    expect(back.source.sha256).toBe(placed.source.sha256);
    expect(back.arrays.length).toBe(placed.arrays.length);
    back.arrays.forEach((a, i) => expect(a.conductance).toEqual(placed.arrays[i]!.conductance));
    back.layers.forEach((l, i) => {
      expect(l.activation).toEqual(placed.layers[i]!.activation);
      expect(l.bias).toEqual(placed.layers[i]!.bias);
      expect(l.gPerWeight).toEqual(placed.layers[i]!.gPerWeight);
      expect(l.tiles[0]!.rowNeg).toEqual(placed.layers[i]!.tiles[0]!.rowNeg);
    });
    expect(back.input).toEqual(placed.input);
  });

  it('keeps non-finite clip bounds', () => {
    const copy = { ...placed, layers: placed.layers.map((l) => ({ ...l, activation: { kind: 'clip' as const, min: 0, max: Infinity } })) };
    expect(readArtifact(writeArtifact(copy)).layers[0]!.activation).toEqual({ kind: 'clip', min: 0, max: Infinity });
  });

  const refused = (b: Uint8Array, pattern: RegExp) => {
    expect(() => readArtifact(b)).toThrow(ArtifactError);
    expect(() => readArtifact(b)).toThrow(pattern);
  };
  it('one flipped bit anywhere is caught by the checksum', () => {
    for (const at of [20, Math.floor(bytes.length / 2), bytes.length - 40]) {
      const bad = Uint8Array.from(bytes);
      bad[at]! ^= 0x10;
      refused(bad, /checksum does not match/);
    }
  });
  it('truncated', () => {
    refused(bytes.subarray(0, bytes.length - 100), /checksum does not match/);
    refused(bytes.subarray(0, 20), /truncated/);
  });
  it('a foreign file', () => refused(new TextEncoder().encode('{"not": "an artifact"}'), /not a dendra artifact \(bad magic bytes\)/));
  it('another format version', () => {
    const other = Uint8Array.from(bytes);
    new DataView(other.buffer).setUint32(8, 99, true);
    refused(other, /format version 99 is not supported/);
  });
});
