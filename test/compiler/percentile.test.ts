/** percentileAbs (the soma energy model's full scale) by quickselect: the value a sort puts at the nearest rank. */
import { expect, it } from 'vitest';
import { percentileAbs } from '../../compiler/passes/calibrate-dendrites.js';
import { Random } from '../../common/random.js';
it('is the nearest-rank value of the sorted |v|, NaN skipped, on ties and zeros too', () => {
  const rng = new Random(5);
  for (let t = 0; t < 160; t++) {
    const n = 1 + rng.int(t < 100 ? 20 : 5000);
    const v = Float32Array.from({ length: n }, () => (rng.next() < 0.3 ? 0 : rng.next() < 0.2 ? Math.round(rng.normal() * 3) : rng.normal()));
    if (t % 7 === 0) v[0] = NaN;
    for (const q of [0.999, 0.5, 0, 1, 0.37]) {
      const a = Float32Array.from(v, Math.abs).filter((x) => Number.isFinite(x)).sort();
      const want = a.length ? a[Math.min(a.length - 1, Math.max(0, Math.ceil(q * a.length) - 1))] : 0;
      expect(percentileAbs(v, q)).toBe(want);
    }
  }
});
