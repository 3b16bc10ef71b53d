/**
 * The protocol's training messages on the emulator (docs/protocol.md, "Training"): UpdateRows, ReadArrays and
 * InferTiles, spoken on the wire directly (encodeFrame / FrameDecoder), their refusals and the duplicate cache.
 */
import { describe, expect, it } from 'vitest';
import { loadProfile } from '../../common/profile.js';
import { BoardEmulator } from '../../runtime/backends/device/emulator.js';
import { floats, FrameDecoder, MessageType, RESPONSE, type Frame, type IdentifyResponse } from '../../runtime/backends/device/protocol.js';

const profile = loadProfile('hfo2-1t1r');
const R = profile.array.rows!;
const C = profile.array.cols!;

let nextId = 1000;
function ask(emu: BoardEmulator, type: number, json: unknown, data: Uint8Array = new Uint8Array(0), id = nextId++): Frame {
  const frames = new FrameDecoder().push(emu.handle({ type, id, json, data }));
  expect(frames).toHaveLength(1);
  return frames[0]!;
}

/** UpdateRows' binary part: gate voltages then the RESET mask. */
function updateData(gates: Float32Array, mask: Uint8Array): Uint8Array {
  const out = new Uint8Array(gates.length * 5);
  out.set(new Uint8Array(gates.buffer, gates.byteOffset, gates.byteLength), 0);
  out.set(mask, gates.length * 4);
  return out;
}

const rows = (n: number) => Array.from({ length: n }, (_, r) => r);

describe('training messages on the emulator', () => {
  it('Identify announces them', () => {
    const emu = new BoardEmulator({ profile, arrays: 2, seed: 1 });
    const id = ask(emu, MessageType.Identify, {}).json as IdentifyResponse;
    expect(id.features).toMatchObject({ updateRows: true, readArrays: true, inferTiles: true });
  });

  it('UpdateRows: RESET the masked cells, then SET each cell at its own gate voltage; a resent id is not applied twice', () => {
    const emu = new BoardEmulator({ profile, arrays: 2, seed: 2 });
    // Column c of rows 0..3 gets gate 0.7 + 0.9·c/63 V; only even columns are RESET first; column 5 takes no SET.
    const gates = new Float32Array(4 * C);
    const mask = new Uint8Array(4 * C);
    for (let r = 0; r < 4; r++) for (let c = 0; c < C; c++) {
      gates[r * C + c] = c === 5 ? NaN : 0.7 + (0.9 * c) / (C - 1);
      mask[r * C + c] = c % 2 === 0 ? 1 : 0;
    }
    const body = { array: 1, rows: rows(4), cols: C, set: 2.5, reset: -3, width: 1e-7 };
    const before = emu.trueConductances(1);
    const f = ask(emu, MessageType.UpdateRows, body, updateData(gates, mask), 77);
    expect(f.type).toBe(MessageType.UpdateRows | RESPONSE);
    expect((f.json as { applied: number }).applied).toBe(4 * (C - 1) + 4 * (C / 2));
    const g = emu.trueConductances(1);
    const d = emu.setFactors(1);
    for (let r = 0; r < 4; r++) {
      for (let c = 0; c < C; c++) {
        const i = r * C + c;
        if (c === 5) expect(g[i]).toBe(before[i]); // no SET, not masked: untouched
        else expect(Math.abs(g[i]! - Math.max(d[i]! * (98e-6 * gates[i]! + 120e-6), c % 2 ? before[i]! : 0))).toBeLessThan(6 * profile.pulse!.noise);
      }
    }
    for (let i = 4 * C; i < R * C; i++) expect(g[i]).toBe(before[i]); // other rows untouched
    // The same id and body again: the cached reply, nothing applied.
    const again = ask(emu, MessageType.UpdateRows, body, updateData(gates, mask), 77);
    expect(again.json).toEqual(f.json);
    expect(emu.trueConductances(1)).toEqual(g);
    expect(emu.stats().duplicates).toBe(1);
  });

  it('UpdateRows refuses a bad request whole, changing nothing', () => {
    const emu = new BoardEmulator({ profile, arrays: 1, seed: 3 });
    const before = emu.trueConductances(0);
    const gates = new Float32Array(2 * C).fill(1);
    const bad = (body: object, data: Uint8Array, code: string, message: RegExp) => {
      const f = ask(emu, MessageType.UpdateRows, body, data);
      expect(f.type).toBe(MessageType.Error);
      expect(f.json).toMatchObject({ code });
      expect((f.json as { message: string }).message).toMatch(message);
    };
    const ok = { array: 0, rows: [0, 1], cols: C, set: 2.5, reset: -3, width: 1e-7 };
    const mask2 = new Uint8Array(2 * C);
    mask2[70] = 2;
    bad(ok, updateData(gates, mask2), 'bad-request', /RESET mask of row 1, col 6 is 2/);
    bad({ ...ok, set: 9 }, updateData(gates, new Uint8Array(2 * C)), 'out-of-range', /SET amplitude 9 V/);
    bad({ ...ok, rows: [0, 0] }, updateData(gates, new Uint8Array(2 * C)), 'bad-request', /lists 0 twice/);
    bad(ok, new Uint8Array(10), 'bad-request', /need 640 bytes/);
    expect(emu.trueConductances(0)).toEqual(before);
  });

  it('ReadArrays reads whole arrays in one request; InferTiles answers several tiles as their Infers would', () => {
    const emu = new BoardEmulator({ profile, arrays: 3, seed: 4 });
    const f = ask(emu, MessageType.ReadArrays, { arrays: [2, 0] });
    const g = floats(f.data);
    expect(g).toHaveLength(2 * R * C);
    const t2 = emu.trueConductances(2);
    const t0 = emu.trueConductances(0);
    for (let i = 0; i < R * C; i += 97) {
      expect(Math.abs(g[i]! - t2[i]!)).toBeLessThan(6 * profile.read.relative * t2[i]! + 1e-12);
      expect(Math.abs(g[R * C + i]! - t0[i]!)).toBeLessThan(6 * profile.read.relative * t0[i]! + 1e-12);
    }
    // two tiles: rows 0..9 → cols 0..2 of array 0, rows 5..7 → cols 10, 11 of array 1
    const tiles = [{ array: 0, rows: rows(10), cols: [0, 1, 2] }, { array: 1, rows: [5, 6, 7], cols: [10, 11] }];
    const batch = 4;
    const v0 = Float32Array.from({ length: batch * 10 }, (_, i) => 0.2 * Math.sin(i));
    const v1 = Float32Array.from({ length: batch * 3 }, (_, i) => 0.1 * Math.cos(i));
    const data = new Float32Array([...v0, ...v1]);
    const r = ask(emu, MessageType.InferTiles, { tiles, batch }, new Uint8Array(data.buffer));
    expect(r.type).toBe(MessageType.InferTiles | RESPONSE);
    const out = floats(r.data);
    expect(out).toHaveLength(batch * 3 + batch * 2);
    const truth = [emu.trueConductances(0), emu.trueConductances(1)];
    let at = 0;
    tiles.forEach((t, ti) => {
      const v = ti === 0 ? v0 : v1;
      for (let b = 0; b < batch; b++) {
        for (const [q, c] of t.cols.entries()) {
          let expected = 0;
          let sd2 = 0;
          for (const [p, row] of t.rows.entries()) {
            const gi = truth[t.array]![row * C + c]!;
            expected += v[b * t.rows.length + p]! * gi;
            sd2 += (v[b * t.rows.length + p]! * profile.read.relative * gi) ** 2;
          }
          expect(Math.abs(out[at + b * t.cols.length + q]! - expected)).toBeLessThan(6 * Math.sqrt(sd2) + 1e-15);
        }
      }
      at += batch * t.cols.length;
    });
    const tooHigh = new Float32Array(data);
    tooHigh[3] = 5;
    const refused = ask(emu, MessageType.InferTiles, { tiles, batch }, new Uint8Array(tooHigh.buffer));
    expect(refused.json).toMatchObject({ code: 'out-of-range' });
  });

  it('InferTiles on several threads: read noise of the exact variance per column, and the same currents as on one thread', () => {
    // 6 whole-array tiles, the same voltages in every sample: over 4,000 samples each column's mean is Σ V·G and
    // its variance Σ V²·σ² (σ = read.sigma + read.relative·G) of the true conductances.
    const n = 4000;
    const tiles = Array.from({ length: 6 }, (_, a) => ({ array: a, rows: rows(R), cols: rows(C) }));
    const volts = Float32Array.from({ length: R }, (_, r) => 0.2 * Math.sin(r + 1));
    const data = new Float32Array(tiles.length * n * R);
    for (let t = 0; t < tiles.length; t++) for (let b = 0; b < n; b++) data.set(volts, (t * n + b) * R);
    const answer = (threads: number) => {
      const emu = new BoardEmulator({ profile, arrays: 6, seed: 9, threads });
      return { out: floats(ask(emu, MessageType.InferTiles, { tiles, batch: n }, new Uint8Array(data.buffer)).data), emu };
    };
    const one = answer(1);
    const two = answer(2);
    expect(Array.from(two.out)).toEqual(Array.from(one.out));
    for (const t of [0, 5]) {
      const g = two.emu.trueConductances(t);
      for (const c of [0, 17, C - 1]) {
        let mean = 0;
        let variance = 0;
        for (let r = 0; r < R; r++) {
          const gi = g[r * C + c]!;
          mean += volts[r]! * gi;
          variance += (volts[r]! * (profile.read.sigma + profile.read.relative * gi)) ** 2;
        }
        let m1 = 0;
        let m2 = 0;
        for (let b = 0; b < n; b++) m1 += two.out[(t * n + b) * C + c]!;
        m1 /= n;
        for (let b = 0; b < n; b++) m2 += (two.out[(t * n + b) * C + c]! - m1) ** 2;
        m2 /= n - 1;
        const sd = Math.sqrt(variance);
        expect(Math.abs(m1 - mean)).toBeLessThan((5 * sd) / Math.sqrt(n) + 1e-6 * Math.abs(mean));
        expect(m2 / variance).toBeGreaterThan(0.9);
        expect(m2 / variance).toBeLessThan(1.1);
      }
    }
  });

  it("InferTiles 'same': a tile driven with an earlier tile's voltages, sent once; bad references refused", () => {
    const quietProfile = { ...profile, read: { ...profile.read, sigma: 0, relative: 0 } };
    const emu = new BoardEmulator({ profile: quietProfile, arrays: 3, seed: 5 });
    const batch = 3;
    const va = Float32Array.from({ length: batch * 8 }, (_, i) => 0.15 * Math.sin(i + 2));
    const vb = Float32Array.from({ length: batch * 4 }, (_, i) => 0.1 * Math.cos(i));
    const a = { array: 0, rows: rows(8), cols: [0, 1] };
    const b = { array: 1, rows: [3, 4, 5, 6], cols: [2] };
    const c = { array: 2, rows: [9, 10, 11, 12, 13, 14, 15, 16], cols: [5, 6, 7] };
    const full = floats(ask(emu, MessageType.InferTiles, { tiles: [a, b, c], batch }, new Uint8Array(new Float32Array([...va, ...vb, ...va]).buffer)).data);
    const shared = floats(ask(emu, MessageType.InferTiles, { tiles: [a, b, { ...c, same: 0 }], batch }, new Uint8Array(new Float32Array([...va, ...vb]).buffer)).data);
    expect(Array.from(shared)).toEqual(Array.from(full));
    const data = new Uint8Array(new Float32Array([...va, ...vb]).buffer);
    expect(ask(emu, MessageType.InferTiles, { tiles: [a, b, { ...c, same: 1 }], batch }, data).json).toMatchObject({ code: 'bad-request', message: expect.stringMatching(/drives 8 rows but tiles\[1\]/) });
    expect(ask(emu, MessageType.InferTiles, { tiles: [a, b, { ...c, same: 2 }], batch }, data).json).toMatchObject({ code: 'bad-request', message: expect.stringMatching(/earlier tile/) });
  });
});
