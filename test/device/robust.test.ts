/**
 * Boards that restart or lie, and who may talk to a board: the frame decoder's cost is linear in the bytes;
 * a board that loses its state mid-deploy is noticed (boot id) and re-programmed, or deploy fails saying
 * so; a board's claims are checked before anything is allocated; a token is proved by challenge–response
 * and never crosses the wire; tcps:// links verify the board's certificate.
 */
import { createServer, createConnection, type AddressInfo, type Server } from 'node:net';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { generate } from 'selfsigned';
import { compile } from '../../compiler/index.js';
import { writeArtifact } from '../../artifact/write.js';
import { readArtifact } from '../../artifact/read.js';
import { DendraError, DeviceError } from '../../common/errors.js';
import { loadProfile } from '../../common/profile.js';
import { deploy, artifactId } from '../../runtime/backends/device/deploy.js';
import { BoardAuthError, BoardRequestError, connectBoard } from '../../runtime/backends/device/client.js';
import { BoardEmulator, type EmulatorOptions } from '../../runtime/backends/device/emulator.js';
import { scan } from '../../runtime/backends/device/scan.js';
import { encodeFrame, FrameDecoder, MessageType, RESPONSE } from '../../runtime/backends/device/protocol.js';
import { examples } from '../helpers/fixtures.js';
import { InferenceSession, Tensor } from '../../runtime/index.js';
import { readNpyFile } from '../../common/npy.js';
import { wrongCells } from './wrong-cells.js';

const hfo2 = loadProfile('hfo2-1t1r');
const bytes = writeArtifact(compile(examples('mnist8x8-64x54x10.onnx'), { device: hfo2 }));
const artifact = readArtifact(bytes);
const opts: EmulatorOptions = { profile: hfo2, arrays: 2, seed: 11 };

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});

function emulator(o: Partial<EmulatorOptions> = {}): BoardEmulator {
  const e = new BoardEmulator({ ...opts, ...o });
  cleanups.push(() => e.close());
  return e;
}

describe('frame decoder', () => {
  it('decodes a 32 MB frame pushed in 64 KiB chunks in time proportional to its size (ratio against a 4 MB frame)', () => {
    const frameOf = (mb: number) => encodeFrame({ type: MessageType.Read | RESPONSE, id: 7, json: { ok: 1 }, data: new Uint8Array(mb << 20).fill(0x5a) });
    const time = (frame: Uint8Array) => {
      let best = Infinity;
      for (let rep = 0; rep < 5; rep++) {
        const d = new FrameDecoder();
        const t0 = performance.now();
        let got = 0;
        for (let at = 0; at < frame.length; at += 65536) got += d.push(frame.subarray(at, at + 65536)).length;
        best = Math.min(best, performance.now() - t0);
        expect(got).toBe(1);
        // The work itself, independent of the machine's load: bytes moved inside the buffer stay below
        // twice the frame (doubling growth), where copying the buffer on every chunk moves frame²/(2·chunk).
        expect(d.copied).toBeLessThan(2 * frame.length);
      }
      return best;
    };
    const small = time(frameOf(4));
    const big = time(frameOf(32));
    console.log(`frame decoder: 4 MB in ${small.toFixed(1)} ms, 32 MB in ${big.toFixed(1)} ms (ratio ${(big / small).toFixed(1)}; linear 8)`);
    // 8× the bytes: linear costs about 8× (best of 5; allocation and page faults under a loaded CI push it
    // to about 35); a decoder that copies its buffer on every chunk costs 8² = 64× and more (the one it
    // replaced: about 400×).
    expect(big / small).toBeLessThan(60);
  });

  it('still finds frames after garbage, split at every byte', () => {
    const f = encodeFrame({ type: MessageType.Status, id: 3, json: { a: 1 }, data: Uint8Array.of(1, 2, 3) });
    const stream = new Uint8Array([0xde, 0x00, 0x1d, 0xde, ...f, 9, 9, ...f]);
    const d = new FrameDecoder();
    const frames = [];
    for (let i = 0; i < stream.length; i++) frames.push(...d.push(stream.subarray(i, i + 1)));
    expect(frames.map((x) => x.id)).toEqual([3, 3]);
    expect(Array.from(frames[1]!.data)).toEqual([1, 2, 3]);
  });
});

describe('a board that restarts mid-deploy', () => {
  /** Deploys while the board is replaced by a blank one (a new process on the same port) after the first array. */
  async function deployAcrossRestart(restarts?: number) {
    const first = new BoardEmulator(opts);
    const url = await first.listen('tcp://127.0.0.1:0');
    const port = Number(new URL(url).port);
    let second: BoardEmulator | undefined;
    let restarted: Promise<void> | undefined;
    cleanups.push(async () => {
      await first.close();
      await second?.close();
    });
    const run = deploy(bytes, () => connectBoard(url, { timeoutMs: 300, retries: 6 }), {
      restarts,
      onProgress: (done) => {
        if (done !== 1 || restarted) return;
        restarted = (async () => {
          await first.close();
          second = new BoardEmulator(opts);
          await second.listen(`tcp://127.0.0.1:${port}`);
        })();
      },
    });
    const outcome = await run.then((r) => ({ ok: true as const, ...r }), (e: unknown) => ({ ok: false as const, error: e }));
    await restarted;
    return { outcome, first, second: second!, url };
  }

  it('is noticed (boot id), re-programmed from the start, counted, and only then marked ready', async () => {
    const { outcome, first, second, url } = await deployAcrossRestart();
    expect(second.boot).not.toBe(first.boot);
    if (!outcome.ok) throw outcome.error;
    expect(outcome.report.restarts).toBe(1);
    expect(outcome.report.reconnects).toBeGreaterThanOrEqual(1);
    const board = await connectBoard(url);
    cleanups.push(() => board.close());
    const status = await board.status();
    expect(status.deployment).toEqual({ artifact: artifactId(bytes), state: 'ready' });
    expect(status.boot).toBe(second.boot);
    // Every cell of the board now marked ready holds its target (the half programmed before the restart is gone).
    expect(wrongCells(artifact, (i) => second.trueConductances(i), outcome.report)).toBe(0);
    // The check can fail: the blank board of a fresh start has many wrong cells.
    expect(wrongCells(artifact, (i) => emulator().trueConductances(i), outcome.report)).toBeGreaterThan(1000);
  });

  it('with no restarts allowed: a clear DeviceError, and the board is not marked ready', async () => {
    const { outcome, url } = await deployAcrossRestart(0);
    expect(outcome.ok).toBe(false);
    const error = (outcome as { error: unknown }).error;
    expect(error).toBeInstanceOf(DeviceError);
    expect((error as Error).message).toMatch(/restarted during deploy and lost its state .* not marked ready/);
    const board = await connectBoard(url);
    cleanups.push(() => board.close());
    expect((await board.status()).deployment?.state).not.toBe('ready');
  });

  it("the board refuses a 'ready' mark carrying another boot id ('state-lost')", async () => {
    const emu = emulator();
    const board = await connectBoard(await emu.listen('tcp://127.0.0.1:0'));
    cleanups.push(() => board.close());
    await board.mark({ artifact: 'a', state: 'programming', boot: emu.boot });
    const err = await board.mark({ artifact: 'a', state: 'ready', boot: 'another-boot' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BoardRequestError);
    expect((err as BoardRequestError).code).toBe('state-lost');
    expect((await board.status()).deployment?.state).toBe('programming');
  });
});

describe('a board that restarts during inference', () => {
  it('the device backend notices (boot id) and discards the outputs', async () => {
    const first = new BoardEmulator(opts);
    const url = await first.listen('tcp://127.0.0.1:0');
    let second: BoardEmulator | undefined;
    cleanups.push(async () => {
      await first.close();
      await second?.close();
    });
    await deploy(bytes, () => connectBoard(url));
    const session = await InferenceSession.create(bytes, { backend: 'device', device: url, link: { timeoutMs: 300, retries: 6 } });
    cleanups.push(() => session.release());
    const x = new Tensor('float32', readNpyFile(examples('digits8x8-f32.npy')).data.slice(0, 8 * 64), [8, 64]);
    const feeds = { [session.inputNames[0]!]: x };
    expect((await session.run(feeds))[session.outputNames[0]!]!.data.length).toBe(80);
    await first.close();
    second = new BoardEmulator(opts);
    await second.listen(url);
    const err = await session.run(feeds).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeviceError);
    expect((err as Error).message).toMatch(/restarted during inference .* lost its deployment; these outputs are discarded/);
  });
});

/** A board that answers Identify (and Status) with whatever it is told to claim. */
async function lyingBoard(identify: Record<string, unknown>): Promise<string> {
  const server: Server = createServer((socket) => {
    const d = new FrameDecoder();
    socket.on('data', (chunk) => {
      for (const f of d.push(chunk)) {
        const json = f.type === MessageType.Identify ? identify : { state: 'idle', deployment: null, pulses: 0, reads: 0, errors: [] };
        socket.write(encodeFrame({ type: f.type | RESPONSE, id: f.id, json, data: new Uint8Array(0) }));
      }
    });
    socket.on('error', () => {});
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', () => res()));
  cleanups.push(() => new Promise<void>((res) => server.close(() => res())));
  return `tcp://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe('a board that lies about its size', () => {
  const base = { protocol: 1, firmware: 'x', board: 'x', serial: 'liar', cellType: '1T1R', device: 'hfo2-1t1r', limits: {}, readVoltage: 0.2, features: { dendrites: false, soma: false } };

  it('a 100,000 × 100,000 array: refused at identify, nothing allocated', async () => {
    const board = await connectBoard(await lyingBoard({ ...base, arrays: [{ rows: 100000, cols: 100000 }] }), { timeoutMs: 200, retries: 0 });
    cleanups.push(() => board.close());
    const err = await scan(board, hfo2).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DendraError);
    expect((err as Error).message).toMatch(/100000 × 100000/);
  });

  it("4 arrays of 4,096 × 4,096: within the sane limits, refused against the profile's 128 × 64", async () => {
    const board = await connectBoard(await lyingBoard({ ...base, arrays: Array.from({ length: 4 }, () => ({ rows: 4096, cols: 4096 })) }), { timeoutMs: 200, retries: 0 });
    cleanups.push(() => board.close());
    const t0 = performance.now();
    const err = await scan(board, hfo2).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeviceError);
    expect((err as Error).message).toMatch(/4096 × 4096, but 'hfo2-1t1r' arrays are 128 × 64/);
    expect(performance.now() - t0).toBeLessThan(5000); // refused at once, not after minutes of scanning
  });

  it('a million arrays, or a non-numeric size: refused', async () => {
    for (const arrays of [Array.from({ length: 5000 }, () => ({ rows: 2, cols: 2 })), [{ rows: '128', cols: 64 }], [{ rows: -1, cols: 64 }]]) {
      const board = await connectBoard(await lyingBoard({ ...base, arrays }), { timeoutMs: 200, retries: 0 });
      cleanups.push(() => board.close());
      await expect(board.identify()).rejects.toBeInstanceOf(DeviceError);
    }
  });
});

/** A TCP proxy that records every byte going either way. */
async function recordingProxy(target: string): Promise<{ url: string; bytes: () => Buffer }> {
  const t = new URL(target);
  const seen: Buffer[] = [];
  const server = createServer((client) => {
    const upstream = createConnection({ host: t.hostname, port: Number(t.port) });
    client.on('data', (d) => {
      seen.push(d);
      upstream.write(d);
    });
    upstream.on('data', (d) => {
      seen.push(d);
      client.write(d);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end);
    upstream.on('close', end);
    client.on('error', () => {});
    upstream.on('error', () => {});
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', () => res()));
  cleanups.push(() => new Promise<void>((res) => server.close(() => res())));
  return { url: `tcp://127.0.0.1:${(server.address() as AddressInfo).port}`, bytes: () => Buffer.concat(seen) };
}

describe('access control', () => {
  const TOKEN = 'correct horse battery staple 7f3a';

  it('a board with a token serves a host that proves it; the token never crosses the wire', async () => {
    const emu = emulator({ token: TOKEN });
    const proxy = await recordingProxy(await emu.listen('tcp://127.0.0.1:0'));
    const board = await connectBoard(proxy.url, { token: TOKEN });
    cleanups.push(() => board.close());
    const id = await board.identify();
    expect(id.auth).toBe(true);
    expect(id.serial).toBe(emu.serial);
    const wire = proxy.bytes();
    expect(wire.length).toBeGreaterThan(200);
    expect(wire.includes(Buffer.from(TOKEN))).toBe(false);
    expect(wire.includes(Buffer.from(TOKEN.slice(0, 8)))).toBe(false);
  });

  it('without the token every request is refused; with a wrong one the host gives up at once', async () => {
    const emu = emulator({ token: TOKEN });
    const url = await emu.listen('tcp://127.0.0.1:0');
    const anon = await connectBoard(url);
    cleanups.push(() => anon.close());
    const err = await anon.identify().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BoardRequestError);
    expect((err as BoardRequestError).code).toBe('unauthorized');
    expect((err as Error).message).toMatch(/DENDRA_BOARD_TOKEN/);
    await expect(anon.pulse(0, 1e-7, { row: Int32Array.of(0), col: Int32Array.of(-1), amplitude: Float32Array.of(1.5), gate: Float32Array.of(1.6) })).rejects.toBeInstanceOf(BoardRequestError);
    expect(emu.stats().framesIn).toBeGreaterThan(0);
    const t0 = performance.now();
    const wrong = await connectBoard(url, { token: 'wrong', retries: 5 }).catch((e: unknown) => e);
    expect(wrong).toBeInstanceOf(BoardAuthError);
    expect((wrong as Error).message).toMatch(/does not know the token/);
    expect(performance.now() - t0).toBeLessThan(2000); // not retried 6 times with backoff
    // The board's proof did not match, so the host never proved anything to it.
    expect(emu.stats().authFailures).toBe(0);
  });

  it('a host with a token refuses a board that does not know it (an impostor)', async () => {
    const emu = emulator();
    await expect(connectBoard(await emu.listen('tcp://127.0.0.1:0'), { token: TOKEN })).rejects.toThrow(/does not use a token/);
  });

  it('the emulator listens on 127.0.0.1 when given only a port', async () => {
    const emu = emulator();
    expect(await emu.listen('0')).toMatch(/^tcp:\/\/127\.0\.0\.1:\d+$/);
  });

  it('tcps://: TLS with a certificate the host trusts (DENDRA_BOARD_CA); an untrusted one is refused', async () => {
    const pems = await generate([{ name: 'commonName', value: 'dendra-board' }], {
      keySize: 2048,
      extensions: [{ name: 'subjectAltName', altNames: [{ type: 7, ip: '127.0.0.1' }] }],
    } as Parameters<typeof generate>[1]);
    const dir = mkdtempSync(join(tmpdir(), 'dendra-tls-'));
    writeFileSync(join(dir, 'board.pem'), pems.cert);
    const emu = emulator({ token: TOKEN, tls: { cert: pems.cert, key: pems.private } });
    const url = await emu.listen('tcps://127.0.0.1:0');
    expect(url).toMatch(/^tcps:\/\//);
    const before = process.env['DENDRA_BOARD_CA'];
    try {
      delete process.env['DENDRA_BOARD_CA'];
      await expect(connectBoard(url, { token: TOKEN, retries: 0, timeoutMs: 1000 })).rejects.toThrow(/SELF_SIGNED|certificate/i);
      process.env['DENDRA_BOARD_CA'] = join(dir, 'board.pem');
      const board = await connectBoard(url, { token: TOKEN });
      cleanups.push(() => board.close());
      expect((await board.identify()).serial).toBe(emu.serial);
    } finally {
      if (before === undefined) delete process.env['DENDRA_BOARD_CA'];
      else process.env['DENDRA_BOARD_CA'] = before;
    }
  });
});
