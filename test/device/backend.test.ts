/**
 * The device backend: InferenceSession over a board. Against an in-test board holding the artifact's exact
 * conductances it must compute what the simulator computes (same DAC, tiles, ADC, periphery); it refuses
 * boards that do not fit or hold no verified deployment; `dendra run/eval --device` use it; and end to end
 * with the board emulator and deploy.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compile } from '../../compiler/index.js';
import { writeArtifact } from '../../artifact/write.js';
import { readArtifact } from '../../artifact/read.js';
import { DeviceError, InputError } from '../../common/errors.js';
import { readNpyFile } from '../../common/npy.js';
import { loadProfile, type DeviceProfile } from '../../common/profile.js';
import { generateDefects } from '../../common/defects.js';
import { InferenceSession, Tensor } from '../../runtime/index.js';
import { artifactId, deploy } from '../../runtime/backends/device/deploy.js';
import { connectBoard } from '../../runtime/backends/device/client.js';
import { BoardEmulator } from '../../runtime/backends/device/emulator.js';
import { MessageType } from '../../runtime/backends/device/protocol.js';
import { FakeBoard } from './fake-board.js';
import { examples } from '../helpers/fixtures.js';

const ROOT = join(__dirname, '..', '..');
const MODEL = examples('mnist8x8-64x54x10.onnx');
const DIGITS = examples('digits8x8-f32.npy');
const LABELS = examples('labels.npy');
const digits = readNpyFile(DIGITS);
const N = 256;
const x = new Tensor('float32', digits.data.subarray(0, N * 64), [N, 64]);

/** The hfo2 chip without any noise, drift or IR drop, and with small arrays so layers split into many tiles. */
function quiet(over: Partial<DeviceProfile['array']> = {}, extra: Partial<DeviceProfile> = {}): DeviceProfile {
  const p = loadProfile('hfo2-1t1r');
  return {
    ...p,
    name: 'hfo2-quiet',
    array: { ...p.array, ...over },
    read: { ...p.read, sigma: 0, relative: 0 },
    programming: { sigma: 0, relative: 0 },
    drift: { ...p.drift, nu: 0, nuSigma: 0 },
    wire: { resistance: 0 },
    ...extra,
  };
}

/** A fake board holding exactly the artifact's conductances, with a ready deployment of it. */
function boardFor(bytes: Uint8Array, count?: number): FakeBoard {
  const art = readArtifact(bytes);
  const rows = art.profile.array.rows ?? art.arrays[0]!.rows;
  const cols = art.profile.array.cols ?? art.arrays[0]!.cols;
  const n = count ?? Math.max(...art.arrays.map((a, i) => (a.chipArray ?? i) + 1));
  const fake = FakeBoard.blank(n, rows, cols);
  art.arrays.forEach((a, i) => {
    const g = fake.arrays[a.chipArray ?? i]!;
    for (let r = 0; r < a.rows; r++) g.g.set(a.conductance.subarray(r * a.cols, (r + 1) * a.cols), r * cols);
  });
  fake.deployment = { artifact: artifactId(bytes), state: 'ready' };
  return fake;
}

async function runBoth(bytes: Uint8Array, fake: FakeBoard) {
  const url = await fake.listen();
  const sim = await InferenceSession.create(bytes, { threads: 1 });
  const dev = await InferenceSession.create(bytes, { backend: 'device', device: url });
  try {
    const a = (await sim.run({ input: x })).logits!.data;
    const b = (await dev.run({ input: x })).logits!.data;
    return { sim: a, dev: b, session: dev, url };
  } finally {
    await sim.release();
  }
}

/** Max |a − b| relative to max |a|, and how many of the N rows pick another class. */
function compare(a: Float32Array, b: Float32Array, width = 10) {
  let diff = 0;
  let scale = 0;
  let flips = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(a[i]!));
  }
  for (let r = 0; r < a.length / width; r++) {
    const arg = (y: Float32Array) => {
      let best = 0;
      for (let j = 1; j < width; j++) if (y[r * width + j]! > y[r * width + best]!) best = j;
      return best;
    };
    if (arg(a) !== arg(b)) flips++;
  }
  let same = 0;
  for (let i = 0; i < a.length; i++) if (a[i] === b[i]) same++;
  return { rel: diff / scale, flips, exact: same / a.length };
}

describe('device backend against a board holding the exact conductances', () => {
  it('differential rows, 8-bit DAC and ADC, 16 tiles per layer: the simulator outputs', async () => {
    const bytes = writeArtifact(compile(MODEL, { device: quiet({ rows: 32, cols: 16, count: null }) }));
    const art = readArtifact(bytes);
    expect(art.layers[0]!.tiles.length).toBeGreaterThan(4);
    const fake = boardFor(bytes);
    const { sim, dev, session } = await runBoth(bytes, fake);
    try {
      const c = compare(sim, dev);
      // Only an ADC code exactly at a rounding tie may differ (float summation order: the board sums
      // currents, the simulator normalised products): one code of one tile, in a few percent of outputs.
      expect(c.rel).toBeLessThan(0.02);
      expect(c.exact).toBeGreaterThan(0.9);
      expect(c.flips).toBeLessThanOrEqual(1);
      // the board is read back, and the sync simulator-only API points at the async one
      const g = await session.readConductances(1);
      expect(Array.from(g)).toEqual(Array.from(art.arrays[1]!.conductance));
      expect(() => session.conductances(0)).toThrow(/readConductances/);
    } finally {
      await session.release();
      await fake.close();
    }
  });

  it('differential columns, no DAC/ADC quantisation, chip arrays from a defect map', async () => {
    const profile = quiet({ rows: 64, cols: 32, count: 6, differential: 'columns' }, { dac: { bits: 0 }, adc: { bits: 0, range: 1 } });
    const defects = generateDefects(profile, { rate: 0.05, seed: 3, arrays: 6 });
    const bytes = writeArtifact(compile(MODEL, { device: profile, defects }));
    const art = readArtifact(bytes);
    expect(art.arrays.some((a, i) => a.chipArray !== undefined && a.chipArray !== i)).toBe(true);
    const fake = boardFor(bytes, 6);
    const { sim, dev, session } = await runBoth(bytes, fake);
    try {
      const c = compare(sim, dev);
      expect(c.rel).toBeLessThan(1e-4);
      expect(c.flips).toBe(0);
    } finally {
      await session.release();
      await fake.close();
    }
  });

  it('runs through dropped and corrupted replies with the same outputs', async () => {
    const bytes = writeArtifact(compile(MODEL, { device: quiet({ rows: 64, cols: 32, count: null }) }));
    const fake = boardFor(bytes);
    const url = await fake.listen();
    const dev = await InferenceSession.create(bytes, { device: url, link: { timeoutMs: 300, retries: 8 } });
    try {
      const clean = (await dev.run({ input: x })).logits!.data;
      fake.dropReplies = 2;
      fake.corruptReplies = 2;
      fake.disconnectNext = true;
      const faulty = (await dev.run({ input: x })).logits!.data;
      expect(Array.from(faulty)).toEqual(Array.from(clean));
    } finally {
      await dev.release();
      await fake.close();
    }
  });
});

describe('device backend refusals', () => {
  const bytes = writeArtifact(compile(MODEL, { device: quiet({ rows: 128, cols: 64, count: null }) }));
  it('no verified deployment of this artifact', async () => {
    for (const deployment of [null, { artifact: 'f'.repeat(64), state: 'ready' as const }, { artifact: artifactId(bytes), state: 'programming' as const }]) {
      const fake = boardFor(bytes);
      fake.deployment = deployment;
      const url = await fake.listen();
      const e = await InferenceSession.create(bytes, { device: url }).catch((x: unknown) => x);
      await fake.close();
      expect(e).toBeInstanceOf(DeviceError);
      expect((e as Error).message).toBe(`the board at ${url} holds no verified deployment of this artifact; run \`dendra deploy ART.dendra --device ${url}\` first`);
    }
  });

  it('arrays of another size, or too few', async () => {
    const small = FakeBoard.blank(4, 64, 64);
    let url = await small.listen();
    await expect(InferenceSession.create(bytes, { device: url })).rejects.toThrow(/has 64 × 64 arrays but the artifact was compiled for 128 × 64 arrays/);
    await small.close();
    const one = FakeBoard.blank(1, 128, 64);
    url = await one.listen();
    await expect(InferenceSession.create(bytes, { device: url })).rejects.toThrow(/has 1 arrays but the artifact needs chip array 1/);
    await one.close();
  });

  it('options that only the simulator takes, and a missing URL', async () => {
    await expect(InferenceSession.create(bytes, { device: 'tcp://127.0.0.1:9', seed: 1 })).rejects.toThrow(InputError);
    await expect(InferenceSession.create(bytes, { backend: 'device' })).rejects.toThrow(/needs the board's URL/);
    await expect(InferenceSession.create(bytes, { backend: 'sim', device: 'tcp://127.0.0.1:9' })).rejects.toThrow(InputError);
  });
});

const MAIN = join(ROOT, 'dist', 'cli', 'main.js');

function dendra(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [MAIN, ...args], { encoding: 'utf8', timeout: 60_000 }, (error, out, err) =>
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, out, err }));
  });
}

describe.skipIf(!existsSync(MAIN))('dendra run / eval --device', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dendra-device-cli-'));
  const art = join(dir, 'm.dendra');
  const bytes = writeArtifact(compile(MODEL, { device: quiet({ rows: 128, cols: 64, count: null }) }));
  writeFileSync(art, bytes);
  let fake: FakeBoard;
  let url: string;
  beforeAll(async () => {
    fake = boardFor(bytes);
    url = await fake.listen();
  });
  afterAll(() => fake.close());

  it('run and eval use the board and agree with the simulator', async () => {
    const y = join(dir, 'y.npy');
    const r = await dendra('run', art, '--input', DIGITS, '--output', y, '--device', url);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(readNpyFile(y).shape).toEqual([2004, 10]);
    const onBoard = JSON.parse((await dendra('eval', art, '--input', DIGITS, '--labels', LABELS, '--json', '--device', url)).out);
    const onSim = JSON.parse((await dendra('eval', art, '--input', DIGITS, '--labels', LABELS, '--json')).out);
    expect(Math.abs(onBoard.accuracy - onSim.accuracy)).toBeLessThanOrEqual(0.002);
  });

  it('errors are one line, exit 1', async () => {
    fake.deployment = null;
    try {
      const r = await dendra('eval', art, '--input', DIGITS, '--labels', LABELS, '--device', url);
      expect(r.code).toBe(1);
      expect(r.err.trim().split('\n')).toHaveLength(1);
      expect(r.err).toContain(`holds no verified deployment of this artifact; run \`dendra deploy ${art} --device ${url}\` first`);
      const bad = await dendra('run', art, '--input', DIGITS, '--output', join(dir, 'z.npy'), '--device', 'tcp://127.0.0.1');
      expect(bad.code).toBe(1);
      expect(bad.err).toMatch(/^dendra: device 'tcp:\/\/127.0.0.1' needs a host and a port/);
      const seeded = await dendra('run', art, '--input', DIGITS, '--output', join(dir, 'z.npy'), '--device', url, '--seed', '3');
      expect(seeded.code).toBe(1);
      expect(seeded.err).toMatch(/seed apply to the simulator only/);
    } finally {
      fake.deployment = { artifact: artifactId(bytes), state: 'ready' };
    }
  });
});

describe('end to end: board emulator, deploy, inference through the device backend', () => {
  const profile = quiet({ rows: 128, cols: 64, count: 4 }, { pulse: { ...loadProfile('hfo2-1t1r').pulse!, noise: 0, variation: 0 } });
  const bytes = writeArtifact(compile(MODEL, { device: profile }));
  const labels = readNpyFile(LABELS).data;
  const accuracy = (y: Float32Array) => {
    let correct = 0;
    for (let r = 0; r < N; r++) {
      let best = 0;
      for (let j = 1; j < 10; j++) if (y[r * 10 + j]! > y[r * 10 + best]!) best = j;
      if (best === labels[r]) correct++;
    }
    return correct / N;
  };

  it('deploys, verifies, and infers within a point of the simulator', async () => {
    const emu = new BoardEmulator({ profile, arrays: 4, seed: 5 });
    const url = await emu.listen('tcp://127.0.0.1:0');
    try {
      await expect(InferenceSession.create(bytes, { device: url })).rejects.toThrow(/no verified deployment/);
      const { report } = await deploy(bytes, () => connectBoard(url));
      expect(report.failed).toHaveLength(0);
      const dev = await InferenceSession.create(bytes, { device: url });
      const sim = await InferenceSession.create(bytes, { threads: 1 });
      try {
        const onBoard = (await dev.run({ input: x })).logits!.data;
        const onSim = (await sim.run({ input: x })).logits!.data;
        expect(Math.abs(accuracy(onBoard) - accuracy(onSim))).toBeLessThanOrEqual(0.01);
        expect(compare(onSim, onBoard).flips).toBeLessThanOrEqual(N * 0.02);
        // the conductances read back are the artifact's within the deploy tolerance
        const g = await dev.readConductances(0);
        const target = readArtifact(bytes).arrays[0]!.conductance;
        let worst = 0;
        for (let i = 0; i < g.length; i++) worst = Math.max(worst, Math.abs(g[i]! - target[i]!));
        expect(worst).toBeLessThanOrEqual(report.tolerance * 1.01);
      } finally {
        await dev.release();
        await sim.release();
      }
    } finally {
      await emu.close();
    }
  });

  it('a layer in pipelined InferTiles requests computes exactly what one Infer per tile does (noiseless board); a board without InferTiles still runs', async () => {
    // Small arrays: each layer splits into several tiles.
    const small = quiet({ rows: 32, cols: 16, count: null }, { pulse: profile.pulse });
    const tiled = writeArtifact(compile(MODEL, { device: small }));
    const art = readArtifact(tiled);
    expect(art.layers.every((l) => l.tiles.length > 2)).toBe(true);
    const tiles = art.layers.reduce((s, l) => s + l.tiles.length, 0);
    const emu = new BoardEmulator({ profile: small, arrays: art.arrays.length, seed: 8 });
    const url = await emu.listen('tcp://127.0.0.1:0');
    // The InferTiles tiles that reuse an earlier tile's voltages (`same`): the column tiles of a row block.
    let shared = 0;
    const handle = emu.handle.bind(emu);
    emu.handle = (frame) => {
      if (frame.type === MessageType.InferTiles) shared += (frame.json as { tiles: { same?: number }[] }).tiles.filter((t) => t.same !== undefined).length;
      return handle(frame);
    };
    const run = async (link?: { maxChunkBytes: number }) => {
      const dev = await InferenceSession.create(tiled, { device: url, link });
      try {
        const before = emu.stats().framesIn;
        shared = 0;
        const y = (await dev.run({ input: x })).logits!.data;
        return { y: Array.from(y), frames: emu.stats().framesIn - before, shared };
      } finally {
        await dev.release();
      }
    };
    try {
      const { report } = await deploy(tiled, () => connectBoard(url));
      expect(report.failed).toHaveLength(0);
      const batched = await run();
      // 4 KiB frames: each layer in many InferTiles requests, several in flight at once.
      const chunked = await run({ maxChunkBytes: 4096 });
      emu.inferTiles = false;
      const perTile = await run();
      // The per-tile path is the reference: the emulator refuses InferTiles now, so it really ran one Infer per tile.
      expect(perTile.frames).toBeGreaterThanOrEqual(tiles);
      expect(batched.frames).toBeLessThanOrEqual(art.layers.length + 1);
      expect(batched.shared).toBeGreaterThan(0);
      expect(perTile.shared).toBe(0);
      expect(chunked.frames).toBeGreaterThan(2 * art.layers.length);
      expect(batched.y).toEqual(perTile.y);
      expect(chunked.y).toEqual(perTile.y);
      expect(accuracy(Float32Array.from(perTile.y))).toBeGreaterThan(0.8);
    } finally {
      await emu.close();
    }
  });

  it('the same over a link that drops and corrupts 1 % of frames and disconnects once', async () => {
    const emu = new BoardEmulator({ profile, arrays: 4, seed: 6, linkFaults: { drop: 0.01, corrupt: 0.01, disconnectAfter: 40 } });
    const url = await emu.listen('tcp://127.0.0.1:0');
    // Small chunks: many requests (some 600 frames), so 1 % faults hit a few of them.
    const link = { timeoutMs: 300, retries: 8, maxChunkBytes: 4096 };
    try {
      const { report } = await deploy(bytes, () => connectBoard(url, link));
      expect(report.failed).toHaveLength(0);
      const dev = await InferenceSession.create(bytes, { device: url, link });
      const sim = await InferenceSession.create(bytes, { threads: 1 });
      try {
        for (let round = 0; round < 3; round++) {
          const onBoard = (await dev.run({ input: x })).logits!.data;
          expect(Math.abs(accuracy(onBoard) - accuracy((await sim.run({ input: x })).logits!.data))).toBeLessThanOrEqual(0.01);
        }
        const st = emu.stats();
        expect(st.framesIn).toBeGreaterThan(200);
        expect(st.disconnects).toBe(1);
        expect(st.droppedIn + st.droppedOut + st.corrupted).toBeGreaterThan(0);
      } finally {
        await dev.release();
        await sim.release();
      }
    } finally {
      await emu.close();
    }
  });
});

describe.skipIf(!existsSync(MAIN))('dendra deploy refusals', () => {
  it('refuses an artifact that needs more arrays than the board has, in one line, and exits', async () => {
    const emu = new BoardEmulator({ profile: loadProfile('hfo2-1t1r'), arrays: 1, seed: 2 });
    const url = await emu.listen('tcp://127.0.0.1:0');
    try {
      const dir = mkdtempSync(join(tmpdir(), 'dendra-deploy-'));
      const art = join(dir, 'm.dendra');
      writeFileSync(art, writeArtifact(compile(MODEL, { device: 'hfo2-1t1r' })));
      const t0 = performance.now();
      const r = await dendra('deploy', art, '--device', url);
      expect(r.code).toBe(1);
      expect(r.err.trim()).toMatch(/^dendra: the artifact needs chip array 1, but the board at .* has 1 arrays$/);
      // The process ends by itself: no connection is left open after a refusal.
      expect(performance.now() - t0).toBeLessThan(20_000);
    } finally {
      await emu.close();
    }
  });
});
