/**
 * The native pulse-level chip (native/src/pulse_physics.h) against the device's published behaviour, not
 * against its own formula: the SET conductance-gate voltage line of Li et al. 2018 (memNN code:
 * G = 98 µS/V · Vg + 120 µS, Vg clipped to 0.7–1.6 V, so 188.6 µS at 0.7 V, 218.0 at 1.0, 247.4 at 1.3 and
 * 276.8 at 1.6), "SET: G ← max(f(Vg), G)", "RESET: G ← ~0", ~4 µS of noise on every pulse, and stuck
 * devices (Fig. 4a-b) that do not respond.
 */
import { describe, expect, it } from 'vitest';
import { generateDefects } from '../../common/defects.js';
import { loadProfile } from '../../common/profile.js';
import { createPulseChip } from '../../runtime/pulse-chip.js';

const profile = loadProfile('hfo2-1t1r');
const R = 128;
const C = 64;
const US = 1e-6;
/** The published SET line, literal (µS). */
const PUBLISHED: [number, number][] = [[0.7, 188.6], [1.0, 218.0], [1.3, 247.4], [1.6, 276.8]];

function mean(xs: ArrayLike<number>, pick: (i: number) => boolean = () => true): number {
  let s = 0;
  let n = 0;
  for (let i = 0; i < xs.length; i++) if (pick(i)) { s += xs[i]!; n++; }
  return s / n;
}
function sd(xs: ArrayLike<number>, pick: (i: number) => boolean = () => true): number {
  const m = mean(xs, pick);
  let s = 0;
  let n = 0;
  for (let i = 0; i < xs.length; i++) if (pick(i)) { s += (xs[i]! - m) ** 2; n++; }
  return Math.sqrt(s / (n - 1));
}

const allRows = Int32Array.from({ length: R }, (_, r) => r);
const fill = (v: number) => new Float32Array(R * C).fill(v);

describe('pulse-level chip', () => {
  it('a SET with gate voltage Vg lands on the published conductance-gate voltage line', () => {
    const chip = createPulseChip(profile, generateDefects(profile, { rate: 0, seed: 1, arrays: PUBLISHED.length }), 3);
    PUBLISHED.forEach(([vg, g], a) => {
      chip.updateRows(a, allRows, fill(vg), new Uint8Array(R * C).fill(1), 2.5, -3, 1e-7);
      const got = chip.conductances(a);
      expect(Math.abs(mean(got) / US - g)).toBeLessThan(1.0);
    });
    // beyond the gate range the level is clipped
    const chip2 = createPulseChip(profile, generateDefects(profile, { rate: 0, seed: 1, arrays: 1 }), 4);
    chip2.updateRows(0, allRows, fill(2.2), new Uint8Array(R * C).fill(1), 2.5, -3, 1e-7);
    expect(Math.abs(mean(chip2.conductances(0)) / US - 276.8)).toBeLessThan(1.0);
  });

  it('SET never lowers a device (G ← max(f(Vg), G)); a full RESET brings it to ~0; a partial RESET only part of the way', () => {
    const chip = createPulseChip(profile, generateDefects(profile, { rate: 0, seed: 1, arrays: 1 }), 5);
    const none = new Uint8Array(R * C);
    chip.updateRows(0, allRows, fill(1.6), none, 2.5, -3, 1e-7);
    const high = chip.conductances(0);
    chip.updateRows(0, allRows, fill(0.7), none, 2.5, -3, 1e-7); // a lower gate voltage: the devices stay high
    const after = chip.conductances(0);
    expect(Math.abs(mean(after) - mean(high)) / US).toBeLessThan(0.5);
    // a weak RESET (just above the threshold) lowers the devices, a full one takes them to about 0
    chip.pulse(0, allRows, new Int32Array(R).fill(-1), new Float32Array(R).fill(-0.8), new Float32Array(R).fill(1.6), 1e-7);
    const partial = mean(chip.conductances(0)) / US;
    expect(partial).toBeLessThan(0.5 * 276.8);
    expect(partial).toBeGreaterThan(20);
    chip.pulse(0, allRows, new Int32Array(R).fill(-1), new Float32Array(R).fill(-3), new Float32Array(R).fill(1.6), 1e-7);
    expect(mean(chip.conductances(0)) / US).toBeLessThan(5);
  });

  it('every pulse adds ~4 µS of noise; device-to-device variation spreads the SET level further', () => {
    const chip = createPulseChip(profile, generateDefects(profile, { rate: 0, seed: 1, arrays: 1 }), 6);
    chip.updateRows(0, allRows, fill(1.0), new Uint8Array(R * C).fill(1), 2.5, -3, 1e-7);
    const g = chip.conductances(0);
    const d = chip.setFactors(0);
    const residual = Float32Array.from(g, (v, i) => v - d[i]! * 218.0 * US);
    expect(sd(residual) / US).toBeGreaterThan(3.6);
    expect(sd(residual) / US).toBeLessThan(4.4);
    expect(sd(g) / US).toBeGreaterThan(sd(residual) / US);
  });

  it('stuck devices ignore pulses and read as their stuck conductance; counters count every pulse and its energy', () => {
    const defects = generateDefects(profile, { rate: 0.11, onFraction: 0, seed: 9, arrays: 1 });
    const stuck = new Set(defects.arrays[0]!.faults.map(([r, c]) => r * C + c));
    const chip = createPulseChip(profile, defects, 7);
    chip.updateRows(0, allRows, fill(1.3), new Uint8Array(R * C).fill(1), 2.5, -3, 1e-6);
    const g = chip.conductances(0);
    for (const cell of stuck) expect(g[cell]).toBeCloseTo(10e-6, 9); // stuck at ~10 µS (Li et al. 2018, Fig. 4)
    expect(mean(g, (i) => !stuck.has(i)) / US).toBeGreaterThan(240);
    expect(stuck.size / (R * C)).toBeGreaterThan(0.09);
    const counts = chip.pulseCounts(0);
    expect([...counts].every((c) => c === 2)).toBe(true); // one RESET and one SET per device
    const energy = chip.pulseEnergy(0);
    // a SET of 2.5 V and 1 µs on a device that ends near 247 µS: about (2.5 V)² · 247 µS · 1 µs ≈ 1.5 nJ
    const healthy = [...energy].filter((_, i) => !stuck.has(i));
    expect(mean(healthy)).toBeGreaterThan(1.2e-9);
    expect(mean(healthy)).toBeLessThan(2.2e-9);
    expect(chip.totals().cellPulses).toBe(2 * R * C);
  });

  it('refuses bad arguments with a message naming them, changing nothing', () => {
    const chip = createPulseChip(profile, generateDefects(profile, { rate: 0, seed: 1, arrays: 1 }), 8);
    const before = chip.conductances(0);
    expect(() => chip.updateRows(3, allRows, fill(1), new Uint8Array(R * C), 2.5, -3, 1e-7)).toThrow(/array 3 does not exist/);
    expect(() => chip.updateRows(0, Int32Array.from([0, 0]), new Float32Array(2 * C), new Uint8Array(2 * C), 2.5, -3, 1e-7)).toThrow(/listed twice/);
    expect(() => chip.pulse(0, Int32Array.of(200), Int32Array.of(0), Float32Array.of(2), Float32Array.of(1), 1e-7)).toThrow(/row is outside/);
    expect(() => chip.updateRows(0, allRows, fill(1), new Uint8Array(5), 2.5, -3, 1e-7)).toThrow(/rows.length × cols/);
    expect(chip.conductances(0)).toEqual(before);
  });

  it('inference sees every pulse: a tile read, then SET and RESET, then read again (noiseless reads)', () => {
    const quiet = { ...profile, read: { ...profile.read, sigma: 0, relative: 0 } };
    const chip = createPulseChip(quiet, generateDefects(quiet, { rate: 0, seed: 1, arrays: 1 }), 4);
    const rows = Int32Array.from([3, 7]);
    const cols = Int32Array.from([5]);
    const v = Float32Array.from([0.2, 0]);
    const current = () => chip.infer(0, rows, cols, v, 1)[0]!;
    const tiles = () => chip.inferTiles(Int32Array.of(0), Int32Array.of(2), rows, Int32Array.of(1), cols, v, 1, 2)[0]!;
    // the current of row 3 alone at 0.2 V is 0.2 V × G(3, 5), as read back
    const g0 = chip.conductances(0)[3 * C + 5]!;
    expect(Math.abs(current() - 0.2 * g0)).toBeLessThan(1e-6 * 0.2 * Math.max(g0, 100 * US));
    expect(tiles()).toBe(current());
    chip.pulse(0, Int32Array.of(3), Int32Array.of(5), Float32Array.of(2), Float32Array.of(1.6), 1e-7);
    const g1 = chip.conductances(0)[3 * C + 5]!;
    expect(g1).toBeGreaterThan(200 * US);
    expect(Math.abs(current() - 0.2 * g1)).toBeLessThan(1e-6 * 0.2 * Math.max(g1, 100 * US));
    expect(tiles()).toBe(current());
    chip.updateRows(0, Int32Array.of(3), new Float32Array(C).fill(NaN), new Uint8Array(C).fill(1), 2, -2.5, 1e-7);
    const g2 = chip.conductances(0)[3 * C + 5]!;
    expect(g2).toBeLessThan(g1 / 2);
    expect(Math.abs(current() - 0.2 * g2)).toBeLessThan(1e-6 * 0.2 * Math.max(g2, 100 * US));
  });
});
