/**
 * The board emulator: its hidden physics (SET/RESET, noise, stuck cells, reads, inference), the protocol
 * answers (errors, duplicates), link faults and its transports (TCP with a raw socket, a socat pty pair,
 * the CLI). Talks the wire protocol directly (encodeFrame / FrameDecoder), not through the driver.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { generateDefects, STUCK_NONE, faultGrid } from '../../common/defects.js';
import { ProfileError } from '../../common/errors.js';
import { loadProfile } from '../../common/profile.js';
import { BoardEmulator, parseLinkFaults } from '../../runtime/backends/device/emulator.js';
import { encodeFrame, floats, FrameDecoder, MessageType, RESPONSE, type Frame } from '../../runtime/backends/device/protocol.js';

const profile = loadProfile('hfo2-1t1r');
const P = profile.pulse!;
const R = profile.array.rows!;
const C = profile.array.cols!;
const GMAX = profile.conductance.max;
const MAIN = join(__dirname, '..', '..', 'dist', 'cli', 'main.js');
const EMPTY = new Uint8Array(0);

/** Pulses as the wire carries them: n × (int32 row, int32 col, float32 amplitude, float32 gate). */
function pulseData(pulses: [number, number, number, number][]): Uint8Array {
  const out = new Uint8Array(16 * pulses.length);
  const v = new DataView(out.buffer);
  pulses.forEach(([r, c, a, g], k) => {
    v.setInt32(16 * k, r, true);
    v.setInt32(16 * k + 4, c, true);
    v.setFloat32(16 * k + 8, a, true);
    v.setFloat32(16 * k + 12, g, true);
  });
  return out;
}
const rowPulses = (amplitude: number, gate: number, rows = R) => pulseData(Array.from({ length: rows }, (_, r) => [r, -1, amplitude, gate] as [number, number, number, number]));

let nextId = 1;
/** One request answered in-process (no link). */
function ask(emu: BoardEmulator, type: number, json: unknown, data: Uint8Array = EMPTY, id = nextId++): Frame {
  const frames = new FrameDecoder().push(emu.handle({ type, id, json, data }));
  expect(frames).toHaveLength(1);
  expect(frames[0]!.id).toBe(id);
  return frames[0]!;
}
const pulse = (emu: BoardEmulator, array: number, data: Uint8Array, width = 1e-6, id?: number) => ask(emu, MessageType.Pulse, { array, width, cells: data.length / 16 }, data, id);
const readAll = (emu: BoardEmulator, array = 0) => floats(ask(emu, MessageType.Read, { array, row: 0, col: 0, rows: R, cols: C }).data);
const expectError = (f: Frame, code: string, message: RegExp) => {
  expect(f.type).toBe(MessageType.Error);
  expect((f.json as { code: string }).code).toBe(code);
  expect((f.json as { message: string }).message).toMatch(message);
};

function stats(xs: number[]) {
  const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
  const sd = Math.sqrt(xs.reduce((s, x) => s + (x - mean) ** 2, 0) / (xs.length - 1));
  return { mean, sd };
}

describe('hidden physics', () => {
  const emu = new BoardEmulator({ profile, arrays: 2, faultRate: 0.1, seed: 11 });
  const grid = faultGrid(emu.stuckMap().arrays[0]!);
  const healthy = Array.from({ length: R * C }, (_, i) => i).filter((i) => grid.state[i] === STUCK_NONE);
  const stuck = Array.from({ length: R * C }, (_, i) => i).filter((i) => grid.state[i] !== STUCK_NONE);

  it('starts as fabricated: healthy cells uniform in the lower quarter of the window, stuck cells at their conductance', () => {
    const g = emu.trueConductances(0);
    const h = healthy.map((i) => g[i]!);
    expect(Math.min(...h)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...h)).toBeLessThanOrEqual(GMAX / 4);
    expect(stats(h).mean).toBeCloseTo(GMAX / 8, 5);
    for (const i of stuck) expect(g[i]).toBe(grid.conductance[i]);
    expect(stuck.length / (R * C)).toBeGreaterThan(0.08);
    expect(stuck.length / (R * C)).toBeLessThan(0.12);
  });

  it('a SET with gate Vg reaches d·(slope·Vg + offset) on healthy cells, spread by the pulse noise', () => {
    const f = pulse(emu, 0, rowPulses(2, 1.0));
    expect(f.type).toBe(MessageType.Pulse | RESPONSE);
    expect(f.json).toEqual({ applied: R });
    const level = P.slope * 1.0 + P.offset; // 218 µS
    const g = emu.trueConductances(0);
    const d = emu.setFactors(0);
    const reached = stats(healthy.map((i) => g[i]!));
    expect(Math.abs(reached.mean - level)).toBeLessThan(0.5e-6);
    // the spread: device-to-device variation and pulse noise together
    expect(reached.sd).toBeGreaterThan(0.85 * Math.hypot(P.variation * level, P.noise));
    expect(reached.sd).toBeLessThan(1.15 * Math.hypot(P.variation * level, P.noise));
    // around each cell's own level, only the pulse noise is left
    const residual = stats(healthy.map((i) => g[i]! - d[i]! * level));
    expect(Math.abs(residual.mean)).toBeLessThan(0.3e-6);
    expect(residual.sd / P.noise).toBeGreaterThan(0.9);
    expect(residual.sd / P.noise).toBeLessThan(1.1);
    expect(stats([...d].filter((_, i) => grid.state[i] === STUCK_NONE)).sd).toBeCloseTo(P.variation, 2);
  });

  it('a SET never lowers a cell; the gate voltage is clipped to the profile range', () => {
    pulse(emu, 1, rowPulses(3, 9)); // clipped to 1.6 V: the top of the SET range
    const top = emu.trueConductances(1);
    const d = emu.setFactors(1);
    const g1 = faultGrid(emu.stuckMap().arrays[1]!);
    const h1 = Array.from({ length: R * C }, (_, i) => i).filter((i) => g1.state[i] === STUCK_NONE);
    expect(Math.abs(stats(h1.map((i) => top[i]! - d[i]! * (P.slope * P.gate[1] + P.offset))).mean)).toBeLessThan(0.3e-6);
    pulse(emu, 1, rowPulses(3, 0.1)); // clipped to 0.7 V: a lower level than the cells hold
    const after = emu.trueConductances(1);
    const diff = stats(h1.map((i) => after[i]! - top[i]!));
    expect(Math.abs(diff.mean)).toBeLessThan(0.3e-6); // only noise
    expect(diff.sd / P.noise).toBeGreaterThan(0.9);
    expect(diff.sd / P.noise).toBeLessThan(1.1);
    for (const i of h1) expect(after[i]!).toBeLessThanOrEqual(Math.fround(1.2 * GMAX));
  });

  it('RESET lowers G − Gmin by exp(−(|a| − threshold)/scale); at the threshold it does nothing', () => {
    const before = emu.trueConductances(0);
    pulse(emu, 0, rowPulses(-P.threshold, 1));
    expect(emu.trueConductances(0)).toEqual(before);
    pulse(emu, 0, rowPulses(-(P.threshold + P.scale), 1)); // divides G − Gmin by e
    const after = emu.trueConductances(0);
    const ratio = stats(healthy.map((i) => after[i]!)).mean / stats(healthy.map((i) => before[i]!)).mean;
    expect(ratio).toBeGreaterThan(Math.exp(-1) - 0.01);
    expect(ratio).toBeLessThan(Math.exp(-1) + 0.01);
    pulse(emu, 0, rowPulses(-P.amplitude[1], 1)); // full RESET: down to Gmin, noise clamped at 0
    const full = emu.trueConductances(0);
    for (const i of healthy) expect(full[i]!).toBeGreaterThanOrEqual(0);
    expect(stats(healthy.map((i) => full[i]!)).mean).toBeLessThan(P.noise);
  });

  it('single-cell pulses touch only their cell', () => {
    const before = emu.trueConductances(0);
    const cell = healthy[1234]!;
    const [r, c] = [Math.floor(cell / C), cell % C];
    pulse(emu, 0, pulseData([[r, c, 2, 1.6]]));
    const after = emu.trueConductances(0);
    for (let i = 0; i < R * C; i++) if (i !== cell) expect(after[i]).toBe(before[i]);
    expect(after[cell]! - emu.setFactors(0)[cell]! * (P.slope * 1.6 + P.offset)).toBeLessThan(5 * P.noise);
  });

  it('stuck cells never change and read as their stuck conductance', () => {
    const g = emu.trueConductances(0);
    for (const i of stuck) expect(g[i]).toBe(grid.conductance[i]);
    const read = readAll(emu);
    for (const i of stuck) expect(Math.abs(read[i]! - grid.conductance[i]!)).toBeLessThan(6 * profile.read.relative * grid.conductance[i]! + 1e-12);
  });

  it('reads are noisy around the truth: σ = read.sigma + read.relative·G, fresh on every read', () => {
    pulse(emu, 0, rowPulses(2, 1.3));
    const truth = emu.trueConductances(0);
    const a = readAll(emu);
    const b = readAll(emu);
    expect(emu.trueConductances(0)).toEqual(truth); // reading changes nothing
    const z = healthy.map((i) => (a[i]! - truth[i]!) / (profile.read.sigma + profile.read.relative * truth[i]!));
    const s = stats(z);
    expect(Math.abs(s.mean)).toBeLessThan(0.05);
    expect(s.sd).toBeGreaterThan(0.95);
    expect(s.sd).toBeLessThan(1.05);
    expect(a).not.toEqual(b);
    // a sub-region reads the same cells
    const sub = ask(emu, MessageType.Read, { array: 0, row: 3, col: 5, rows: 2, cols: 4 });
    expect(sub.json).toEqual({ array: 0, row: 3, col: 5, rows: 2, cols: 4 });
    const g = floats(sub.data);
    expect(g).toHaveLength(8);
    for (let r = 0; r < 2; r++) for (let c = 0; c < 4; c++) expect(Math.abs(g[r * 4 + c]! / truth[(3 + r) * C + 5 + c]! - 1)).toBeLessThan(0.05);
  });

  it('infer: column currents Σ V·G with read noise of the exact variance; 128 × 64 × batch 2004 in well under a second', () => {
    const truth = emu.trueConductances(0);
    const rows = Array.from({ length: R }, (_, r) => r);
    const cols = Array.from({ length: C }, (_, c) => c);
    const batch = 2004;
    const v = new Float32Array(batch * R);
    for (let i = 0; i < v.length; i++) v[i] = 0.2 * Math.sin(i * 0.37) * (i % 3 === 0 ? 0 : 1);
    const t0 = performance.now();
    const f = ask(emu, MessageType.Infer, { array: 0, rows, cols, batch }, new Uint8Array(v.buffer));
    const ms = performance.now() - t0;
    expect(f.type).toBe(MessageType.Infer | RESPONSE);
    expect(ms).toBeLessThan(1000);
    const out = floats(f.data);
    expect(out).toHaveLength(batch * C);
    const z: number[] = [];
    for (let b = 0; b < batch; b += 7) {
      for (let c = 0; c < C; c++) {
        let mean = 0;
        let variance = 0;
        for (let r = 0; r < R; r++) {
          const g = truth[r * C + c]!;
          mean += v[b * R + r]! * g;
          variance += (v[b * R + r]! * (profile.read.sigma + profile.read.relative * g)) ** 2;
        }
        z.push((out[b * C + c]! - mean) / Math.sqrt(variance));
      }
    }
    const s = stats(z);
    expect(Math.abs(s.mean)).toBeLessThan(0.05);
    expect(s.sd).toBeGreaterThan(0.93);
    expect(s.sd).toBeLessThan(1.07);
    console.log(`emulator infer 128 × 64 × batch ${batch}: ${ms.toFixed(1)} ms`);
  });

  it('infer on a subset of rows and columns, in the order asked', () => {
    const truth = emu.trueConductances(0);
    const f = ask(emu, MessageType.Infer, { array: 0, rows: [5, 2], cols: [7, 1, 3], batch: 1 }, new Uint8Array(new Float32Array([0.1, -0.2]).buffer));
    const out = floats(f.data);
    [7, 1, 3].forEach((c, k) => {
      const expected = 0.1 * truth[5 * C + c]! - 0.2 * truth[2 * C + c]!;
      expect(Math.abs(out[k]! - expected)).toBeLessThan(0.05 * Math.abs(expected) + 1e-9);
    });
  });
});

describe('protocol answers', () => {
  const emu = new BoardEmulator({ profile, arrays: 3, faultRate: 0.05, seed: 4 });

  it('identify', () => {
    const f = ask(emu, MessageType.Identify, {});
    expect(f.type).toBe(MessageType.Identify | RESPONSE);
    const id = f.json as Record<string, unknown>;
    expect(id).toMatchObject({
      protocol: 1,
      board: 'dendra board emulator',
      cellType: '1T1R',
      device: 'hfo2-1t1r',
      limits: { setVoltage: [0.5, 3], resetVoltage: [-3, -0.5], gateVoltage: [0.7, 1.6], width: [1e-8, 1e-4] },
      readVoltage: 0.2,
      features: { dendrites: false, soma: false },
    });
    expect(id['firmware']).toMatch(/^dendra-emulator \d+\.\d+\.\d+/);
    expect(id['arrays']).toEqual([{ rows: R, cols: C }, { rows: R, cols: C }, { rows: R, cols: C }]);
    expect(id['serial']).toBe(emu.serial);
    // the same chip (profile, seed, stuck cells) has the same serial; another chip another
    expect(new BoardEmulator({ profile, arrays: 3, faultRate: 0.05, seed: 4 }).serial).toBe(emu.serial);
    expect(new BoardEmulator({ profile, arrays: 3, faultRate: 0.05, seed: 5 }).serial).not.toBe(emu.serial);
  });

  it('mark and status: programming → ready → cleared; ready only for what is being programmed', () => {
    const status = () => ask(emu, MessageType.Status, {}).json as Record<string, unknown>;
    expect(status()).toMatchObject({ state: 'idle', deployment: null });
    expectError(ask(emu, MessageType.Mark, { artifact: 'abc', state: 'ready' }), 'bad-request', /not being programmed/);
    expect(ask(emu, MessageType.Mark, { artifact: 'abc', state: 'programming' }).json).toEqual({ deployment: { artifact: 'abc', state: 'programming' } });
    expect(status()).toMatchObject({ state: 'programming', deployment: { artifact: 'abc', state: 'programming' } });
    expectError(ask(emu, MessageType.Mark, { artifact: 'xyz', state: 'ready' }), 'bad-request', /xyz/);
    ask(emu, MessageType.Mark, { artifact: 'abc', state: 'ready' });
    expect(status()).toMatchObject({ state: 'ready', deployment: { artifact: 'abc', state: 'ready' } });
    ask(emu, MessageType.Mark, { artifact: 'abc', state: 'cleared' });
    expect(status()).toMatchObject({ state: 'idle', deployment: null });
    expectError(ask(emu, MessageType.Mark, { artifact: 'abc', state: 'done' }), 'bad-request', /'state'/);
    expectError(ask(emu, MessageType.Mark, { artifact: '', state: 'ready' }), 'bad-request', /'artifact'/);
  });

  it('a duplicate id is answered from the cache, without pulsing twice; the same id with another body is a new request', () => {
    const data = rowPulses(2, 1.2, 4);
    const before = emu.trueConductances(2);
    const first = emu.handle({ type: MessageType.Pulse, id: 777, json: { array: 2, width: 1e-6, cells: 4 }, data });
    const once = emu.trueConductances(2);
    expect(once).not.toEqual(before);
    const dupBefore = emu.stats().duplicates;
    const again = emu.handle({ type: MessageType.Pulse, id: 777, json: { array: 2, width: 1e-6, cells: 4 }, data });
    expect(again).toEqual(first);
    expect(emu.trueConductances(2)).toEqual(once);
    expect(emu.stats().duplicates).toBe(dupBefore + 1);
    // a RESET under the same id is not the resend of that SET
    const reset = new FrameDecoder().push(emu.handle({ type: MessageType.Pulse, id: 777, json: { array: 2, width: 1e-6, cells: 4 }, data: rowPulses(-3, 1, 4) }))[0]!;
    expect(reset.type).toBe(MessageType.Pulse | RESPONSE);
    expect(emu.trueConductances(2)).not.toEqual(once);
    // Marks are cached too
    const m1 = emu.handle({ type: MessageType.Mark, id: 778, json: { artifact: 'q', state: 'programming' }, data: EMPTY });
    ask(emu, MessageType.Mark, { artifact: 'q', state: 'cleared' });
    expect(emu.handle({ type: MessageType.Mark, id: 778, json: { artifact: 'q', state: 'programming' }, data: EMPTY })).toEqual(m1);
    expect((ask(emu, MessageType.Status, {}).json as { deployment: unknown }).deployment).toBeNull();
  });

  it('a bad pulse refuses the whole request before anything is applied', () => {
    const before = emu.trueConductances(1);
    const pulsesBefore = (ask(emu, MessageType.Status, {}).json as { pulses: number }).pulses;
    expectError(pulse(emu, 1, pulseData([[0, -1, 2, 1], [1, 0, 3.5, 1]])), 'out-of-range', /pulse 1 \(row 1, col 0\): amplitude 3\.5 V/);
    expectError(pulse(emu, 1, pulseData([[0, -1, 2, 1], [1, 0, -0.2, 1]])), 'out-of-range', /amplitude -0\.2/);
    expectError(pulse(emu, 1, pulseData([[0, -1, 0, 1]])), 'out-of-range', /amplitude 0 V/);
    expectError(pulse(emu, 1, pulseData([[0, -1, 2, 1]]), 1), 'out-of-range', /width 1 s/);
    expectError(pulse(emu, 1, pulseData([[0, -1, 2, 1], [R, 0, 2, 1]])), 'bad-request', /row 128 is outside 0\.\.127/);
    expectError(pulse(emu, 1, pulseData([[0, -2, 2, 1]])), 'bad-request', /col -2/);
    expectError(pulse(emu, 1, pulseData([[0, 0, 2, NaN]])), 'bad-request', /gate voltage is not a finite number/);
    expectError(ask(emu, MessageType.Pulse, { array: 1, width: 1e-6, cells: 3 }, pulseData([[0, 0, 2, 1]])), 'bad-request', /'cells' = 3 needs 48 bytes/);
    expectError(ask(emu, MessageType.Pulse, { array: 1, cells: 1 }, pulseData([[0, 0, 2, 1]])), 'bad-request', /'width'/);
    expect(emu.trueConductances(1)).toEqual(before);
    expect((ask(emu, MessageType.Status, {}).json as { pulses: number }).pulses).toBe(pulsesBefore);
  });

  it('malformed and unsupported requests get error responses naming the problem', () => {
    expectError(ask(emu, MessageType.Read, [1, 2]), 'bad-request', /JSON part must be an object/);
    expectError(ask(emu, MessageType.Read, null), 'bad-request', /JSON part must be an object/);
    expectError(ask(emu, MessageType.Read, { row: 0, col: 0, rows: 1, cols: 1 }), 'bad-request', /'array' must be an integer/);
    expectError(ask(emu, MessageType.Read, { array: 3, row: 0, col: 0, rows: 1, cols: 1 }), 'bad-request', /array 3 does not exist: this board has arrays 0\.\.2/);
    expectError(ask(emu, MessageType.Read, { array: 0, row: 120, col: 0, rows: 10, cols: 1 }), 'bad-request', /leaves the 128 × 64 array/);
    expectError(ask(emu, MessageType.Read, { array: 0, row: 0, col: 0, rows: 1.5, cols: 1 }), 'bad-request', /'rows' must be an integer/);
    expectError(ask(emu, MessageType.Infer, { array: 0, rows: [0, 0], cols: [1], batch: 1 }, new Uint8Array(8)), 'bad-request', /lists 0 twice/);
    expectError(ask(emu, MessageType.Infer, { array: 0, rows: [0, 1], cols: [64], batch: 1 }, new Uint8Array(8)), 'bad-request', /'cols\[0\]' = 64/);
    expectError(ask(emu, MessageType.Infer, { array: 0, rows: [0, 1], cols: [1], batch: 2 }, new Uint8Array(8)), 'bad-request', /needs 16 bytes/);
    expectError(ask(emu, MessageType.Infer, { array: 0, rows: [0], cols: [1], batch: 1 }, new Uint8Array(new Float32Array([5]).buffer)), 'out-of-range', /voltage 5 V/);
    expectError(ask(emu, MessageType.Infer, { array: 0, rows: [0], cols: [1], batch: 1 }, new Uint8Array(new Float32Array([NaN]).buffer)), 'bad-request', /not a finite number/);
    expectError(ask(emu, MessageType.ReadNeurons, {}), 'unsupported', /no dendrite or soma/);
    expectError(ask(emu, 0x42, {}), 'unsupported', /unknown request type 0x42/);
    expectError(ask(emu, MessageType.Status | RESPONSE, {}), 'bad-request', /is a response/);
    const status = ask(emu, MessageType.Status, {}).json as { errors: string[] };
    expect(status.errors.length).toBeGreaterThan(0);
    expect(status.errors.length).toBeLessThanOrEqual(16);
    expect(status.errors[status.errors.length - 1]).toMatch(/^bad-request: .*is a response/);
  });

  it('refuses what it cannot emulate, naming why', () => {
    expect(() => new BoardEmulator({ profile: { ...profile, pulse: null }, arrays: 1 })).toThrow(ProfileError);
    expect(() => new BoardEmulator({ profile: { ...profile, pulse: null }, arrays: 1 })).toThrow(/no pulse model/);
    expect(() => new BoardEmulator({ profile: loadProfile('ideal'), arrays: 1 })).toThrow(/unlimited arrays/);
    const map = generateDefects(profile, { rate: 0.1, seed: 1, arrays: 2 });
    expect(() => new BoardEmulator({ profile, defects: map, arrays: 3 })).toThrow(/describes 2 arrays/);
    expect(() => new BoardEmulator({ profile, defects: { ...map, device: 'rram-512' } })).toThrow(/'rram-512' chip/);
    expect(() => new BoardEmulator({ profile, defects: map, faultRate: 0.1 })).toThrow(/not both/);
    expect(() => parseLinkFaults('drop=0.1,bogus=1')).toThrow(/unknown fault 'bogus'/);
    expect(() => parseLinkFaults('disconnect-after=0')).toThrow(/positive integer/);
    expect(parseLinkFaults('drop=0.01,corrupt=0.02,disconnect-after=500')).toEqual({ drop: 0.01, corrupt: 0.02, disconnectAfter: 500 });
    expect(parseLinkFaults('duplicate=0.1')).toEqual({ duplicate: 0.1 });
    expect(() => parseLinkFaults('duplicate=2')).toThrow(/duplicate must be a probability/);
  });

  it('hides the defect map it is given, or the one `defects generate` makes from the same rate and seed', () => {
    const map = generateDefects(profile, { rate: 0.1, seed: 9, arrays: 2 });
    expect(new BoardEmulator({ profile, defects: map }).stuckMap().arrays).toEqual(map.arrays);
    expect(new BoardEmulator({ profile, defects: map, arrays: 1 }).stuckMap().arrays).toEqual(map.arrays.slice(0, 1));
    expect(new BoardEmulator({ profile, faultRate: 0.1, seed: 9, arrays: 2 }).stuckMap().arrays).toEqual(map.arrays);
    const full = new BoardEmulator({ profile });
    expect(full.arrays).toBe(profile.array.count);
    expect(full.stuckCount).toBe(0);
  });
});

// ---- over a link ----

/** A raw protocol client on a socket: request → the frame with the same id (or null after timeoutMs). */
class RawClient {
  readonly decoder = new FrameDecoder();
  readonly frames: Frame[] = [];
  closed = false;
  #waiters = new Map<number, (f: Frame) => void>();
  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk) => {
      for (const f of this.decoder.push(chunk)) {
        this.frames.push(f);
        this.#waiters.get(f.id)?.(f);
      }
    });
    socket.on('close', () => (this.closed = true));
    socket.on('error', () => {});
  }
  static async open(url: string): Promise<RawClient> {
    const u = new URL(url);
    const socket = connect(Number(u.port), u.hostname);
    await new Promise<void>((res, rej) => socket.once('connect', res).once('error', rej));
    return new RawClient(socket);
  }
  send(type: number, id: number, json: unknown, data: Uint8Array = EMPTY): void {
    this.socket.write(encodeFrame({ type, id, json, data }));
  }
  request(type: number, id: number, json: unknown, data: Uint8Array = EMPTY, timeoutMs = 2000): Promise<Frame | null> {
    return new Promise((res) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(id);
        res(null);
      }, timeoutMs);
      this.#waiters.set(id, (f) => {
        clearTimeout(timer);
        this.#waiters.delete(id);
        res(f);
      });
      this.send(type, id, json, data);
    });
  }
  close(): void {
    this.socket.destroy();
  }
}

const opened: { close(): unknown }[] = [];
/** Waits until cond() holds (polling), at most ms. */
async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
}
afterAll(async () => {
  for (const o of opened.reverse()) await o.close();
});

async function serve(options: Partial<ConstructorParameters<typeof BoardEmulator>[0]> = {}) {
  const emu = new BoardEmulator({ profile, arrays: 2, seed: 3, ...options });
  opened.push(emu);
  const url = await emu.listen('tcp://127.0.0.1:0');
  const client = await RawClient.open(url);
  opened.push(client);
  return { emu, url, client };
}

describe('over TCP', () => {
  it('round trips with a raw socket; damaged bytes are skipped and the board keeps answering', async () => {
    const { emu, url, client } = await serve({ faultRate: 0.1 });
    expect(url).toMatch(/^tcp:\/\/127\.0\.0\.1:\d+$/);
    expect(url).not.toMatch(/:0$/);
    const id = await client.request(MessageType.Identify, 1, {});
    expect((id!.json as { device: string }).device).toBe('hfo2-1t1r');
    client.socket.write(Uint8Array.from([0xde, 0x1d, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17]));
    const p = await client.request(MessageType.Pulse, 2, { array: 1, width: 1e-6, cells: R }, rowPulses(2, 1.6));
    expect(p!.json).toEqual({ applied: R });
    const read = await client.request(MessageType.Read, 3, { array: 1, row: 0, col: 0, rows: R, cols: C });
    const g = floats(read!.data);
    const truth = emu.trueConductances(1);
    for (let i = 0; i < R * C; i += 97) expect(Math.abs(g[i]! - truth[i]!)).toBeLessThan(0.05 * truth[i]! + 1e-9);
    expect(emu.stats().damaged).toBeGreaterThan(0);
    // a second client at the same time, and a reconnect, find the same state
    const other = await RawClient.open(url);
    opened.push(other);
    const st = await other.request(MessageType.Status, 1, {});
    expect(st!.json).toMatchObject({ pulses: R, reads: 1 });
    other.close();
  });

  it('drop=P loses incoming and outgoing frames, counted', async () => {
    const { emu, client } = await serve({ linkFaults: { drop: 0.3 } });
    const n = 60;
    for (let i = 0; i < n; i++) client.send(MessageType.Status, 100 + i, {});
    await until(() => emu.stats().framesIn === n && client.frames.length === n - emu.stats().droppedIn - emu.stats().droppedOut);
    const s = emu.stats();
    expect(s.framesIn).toBe(n);
    expect(s.droppedIn).toBeGreaterThan(5);
    expect(s.droppedOut).toBeGreaterThan(3);
    expect(s.framesOut).toBe(n - s.droppedIn);
    expect(client.frames.length).toBe(n - s.droppedIn - s.droppedOut);
  });

  it('corrupt=P damages replies, which the client decoder rejects', async () => {
    const { emu, client } = await serve({ linkFaults: { corrupt: 1 } });
    for (let i = 0; i < 10; i++) client.send(MessageType.Identify, 200 + i, {});
    await until(() => emu.stats().corrupted === 10);
    await new Promise((r) => setTimeout(r, 100));
    expect(emu.stats().corrupted).toBe(10);
    expect(client.frames).toHaveLength(0); // CRC-32 catches every single-byte error
    expect(client.decoder.dropped).toBeGreaterThan(0);
  });

  it('disconnect-after=N applies the N-th request, drops the link; the resend after reconnecting comes from the cache', async () => {
    const { emu, url, client } = await serve({ linkFaults: { disconnectAfter: 3 } });
    expect(await client.request(MessageType.Status, 1, {})).not.toBeNull();
    expect(await client.request(MessageType.Status, 2, {})).not.toBeNull();
    const before = emu.trueConductances(0);
    const body = { array: 0, width: 1e-6, cells: R };
    const data = rowPulses(2, 1.1);
    expect(await client.request(MessageType.Pulse, 3, body, data, 300)).toBeNull();
    await until(() => client.closed);
    expect(client.closed).toBe(true);
    const applied = emu.trueConductances(0);
    expect(applied).not.toEqual(before);
    const again = await RawClient.open(url);
    opened.push(again);
    const reply = await again.request(MessageType.Pulse, 3, body, data);
    expect(reply!.json).toEqual({ applied: R });
    expect(emu.trueConductances(0)).toEqual(applied);
    const s = emu.stats();
    expect(s).toMatchObject({ disconnects: 1, duplicates: 1, connections: 2 });
    // only once
    for (let i = 0; i < 5; i++) expect(await again.request(MessageType.Status, 10 + i, {})).not.toBeNull();
    expect((await again.request(MessageType.Status, 20, {}))!.json).toMatchObject({ pulses: R, link: { disconnects: 1 } });
  });

  it('close() ends every connection', async () => {
    const emu = new BoardEmulator({ profile, arrays: 1 });
    const url = await emu.listen('tcp://127.0.0.1:0');
    const c = await RawClient.open(url);
    await emu.close();
    await until(() => c.closed);
    expect(c.closed).toBe(true);
    await expect(RawClient.open(url)).rejects.toThrow();
    await expect(emu.listen('tcp://127.0.0.1:0')).rejects.toThrow(/closed/);
    await expect(new BoardEmulator({ profile, arrays: 1 }).listen('udp://127.0.0.1:1')).rejects.toThrow(/tcp:\/\/HOST:PORT/);
  });
});

const haveSocat = spawnSync('socat', ['-V'], { stdio: 'ignore' }).status === 0;

describe.skipIf(!haveSocat)('over a virtual serial pair (socat)', () => {
  it('serves on PATH.board; a client opens PATH, also again after closing it', async () => {
    const { SerialPort } = await import('serialport');
    const dir = mkdtempSync(join(tmpdir(), 'dendra-emu-'));
    const path = join(dir, 'tty');
    const emu = new BoardEmulator({ profile, arrays: 1, seed: 2 });
    opened.push(emu);
    expect(await emu.listen(`pty:${path}`)).toBe(`serial://${path}`);
    for (let round = 0; round < 2; round++) {
      const port = new SerialPort({ path, baudRate: 115200, autoOpen: false });
      await new Promise<void>((res, rej) => port.open((e) => (e ? rej(e) : res())));
      const decoder = new FrameDecoder();
      const reply = new Promise<Frame>((res) => port.on('data', (c: Buffer) => decoder.push(c).forEach(res)));
      port.write(Buffer.from(encodeFrame({ type: MessageType.Identify, id: 50 + round, json: {}, data: EMPTY })));
      const f = await reply;
      expect(f.id).toBe(50 + round);
      expect((f.json as { serial: string }).serial).toBe(emu.serial);
      await new Promise<void>((res) => port.close(() => res()));
    }
    await emu.close();
    expect(existsSync(path)).toBe(false);
    expect(existsSync(`${path}.board`)).toBe(false);
  });
});

describe.skipIf(!existsSync(MAIN))('dendra emulate', () => {
  it('prints one line, serves, and exits cleanly on SIGTERM', async () => {
    const child = spawn(process.execPath, [MAIN, 'emulate', '--listen', 'tcp://127.0.0.1:0', '--device', 'hfo2-1t1r', '--arrays', '3', '--fault-rate', '0.1', '--seed', '5'], { stdio: ['ignore', 'pipe', 'pipe'] });
    opened.push({ close: () => child.kill('SIGKILL') });
    const line = await new Promise<string>((res) => {
      let out = '';
      child.stdout.on('data', (c: Buffer) => {
        out += c.toString();
        if (out.includes('\n')) res(out.split('\n')[0]!);
      });
    });
    expect(line).toMatch(/^emulating hfo2-1t1r board: 3 arrays of 128 × 64, \d+ stuck cells, listening on tcp:\/\/127\.0\.0\.1:\d+$/);
    const stuck = Number(/(\d+) stuck cells/.exec(line)![1]);
    expect(stuck).toBe(generateDefects(profile, { rate: 0.1, seed: 5, arrays: 3 }).arrays.reduce((s, a) => s + a.faults.length, 0));
    const client = await RawClient.open(/tcp:\/\/\S+/.exec(line)![0]);
    const f = await client.request(MessageType.Identify, 1, {});
    expect((f!.json as { arrays: unknown[] }).arrays).toHaveLength(3);
    client.close();
    const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  });

  it('one-line errors', () => {
    const run = (...args: string[]) => spawnSync(process.execPath, [MAIN, 'emulate', ...args], { encoding: 'utf8' });
    for (const [args, pattern] of [
      [['--listen', 'tcp://127.0.0.1:0', '--device', 'ideal'], /unlimited arrays/],
      [['--device', 'hfo2-1t1r'], /--listen .* or --pty/],
      [['--listen', 'tcp://127.0.0.1:0', '--device', 'hfo2-1t1r', '--link-faults', 'drop=2'], /drop must be a probability/],
      [['--listen', 'tcp://127.0.0.1:0', '--device', 'hfo2-1t1r', '--fault-rate', 'x'], /--fault-rate must be a number/],
    ] as [string[], RegExp][]) {
      const r = run(...args);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(pattern);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
    }
  });
});

