/** Protocol v1 framing and the board driver (client.ts) over loopback TCP and a virtual serial pair, with link faults. */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DeviceError, InputError, LinkError } from '../../common/errors.js';
import type { Board } from '../../runtime/backends/device/board.js';
import { BoardRequestError, connectBoard } from '../../runtime/backends/device/client.js';
import { encodeFrame, FrameDecoder, HEADER_BYTES, MessageType, RESPONSE, type Frame } from '../../runtime/backends/device/protocol.js';
import { parseDeviceUrl } from '../../runtime/backends/device/transport.js';
import { FakeBoard } from './fake-board.js';

const frame = (id: number, n = 64): Frame => ({
  type: MessageType.Read,
  id,
  json: { array: 1, row: 2, col: 3, rows: 4, cols: 5, note: 'ünïcode' },
  data: Uint8Array.from({ length: n }, (_, i) => (i * 37 + id) & 0xff),
});

const concat = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};

describe('framing', () => {
  it('round trip, whole and byte by byte', () => {
    const f = frame(7, 1000);
    const bytes = encodeFrame(f);
    const whole = new FrameDecoder().push(bytes);
    expect(whole).toHaveLength(1);
    expect(whole[0]).toEqual(f);
    const d = new FrameDecoder();
    const got: Frame[] = [];
    for (const b of bytes) got.push(...d.push(Uint8Array.of(b)));
    expect(got).toEqual([f]);
    expect(d.dropped).toBe(0);
  });

  it('a corrupted byte anywhere loses that frame only, and it is counted', () => {
    const good = encodeFrame(frame(2));
    for (const at of [3, 5, 9, 14, HEADER_BYTES + 2, HEADER_BYTES + 30, good.length - 1]) {
      const bad = encodeFrame(frame(1));
      bad[at]! ^= 0x10;
      const d = new FrameDecoder();
      const out = d.push(concat(bad, good));
      expect(out.map((f) => f.id)).toEqual([2]);
      expect(d.dropped).toBeGreaterThan(0);
    }
  });

  it('resynchronises after garbage, including false magic bytes', () => {
    const garbage = Uint8Array.from([0xde, 0x1d, 1, 2, 3, 0xde, 0xde, 0x1d, 0x01, 0x83, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 0xde]);
    const d = new FrameDecoder();
    const out = [...d.push(garbage), ...d.push(concat(encodeFrame(frame(3)), garbage, encodeFrame(frame(4))))];
    expect(out.map((f) => f.id)).toEqual([3, 4]);
  });

  it('the header CRC catches a corrupted length at once (no wait for bytes that never come)', () => {
    const bad = encodeFrame(frame(5));
    new DataView(bad.buffer).setUint32(8, 1_000_000, true); // claims a megabyte of payload
    const d = new FrameDecoder();
    expect(d.push(concat(bad, encodeFrame(frame(6)))).map((f) => f.id)).toEqual([6]);
    expect(d.dropped).toBeGreaterThan(0);
  });
});

describe('device URLs', () => {
  it('parses tcp and serial forms and refuses others with an InputError', () => {
    expect(parseDeviceUrl('tcp://127.0.0.1:7070')).toEqual({ kind: 'tcp', host: '127.0.0.1', port: 7070 });
    expect(parseDeviceUrl('tcp://[::1]:1')).toEqual({ kind: 'tcp', host: '::1', port: 1 });
    expect(parseDeviceUrl('serial:///dev/ttyUSB0')).toEqual({ kind: 'serial', path: '/dev/ttyUSB0', baud: 115200 });
    expect(parseDeviceUrl('serial:///dev/ttyS1?baud=921600')).toEqual({ kind: 'serial', path: '/dev/ttyS1', baud: 921600 });
    for (const bad of ['127.0.0.1:7070', 'tcp://127.0.0.1', 'tcp://h:0', 'http://h:1', 'serial://', 'serial:///dev/x?baud=fast', 'serial:///dev/x?parity=odd']) {
      expect(() => parseDeviceUrl(bad), bad).toThrow(InputError);
    }
  });
});

describe('client over TCP', () => {
  let fake: FakeBoard;
  let url: string;
  let board: Board | undefined;
  const open = async (options = {}) => (board = await connectBoard(url, { timeoutMs: 1000, retries: 3, ...options }));

  beforeAll(async () => {
    fake = FakeBoard.blank(2, 8, 6);
    url = await fake.listen();
  });
  afterEach(async () => {
    await board?.close();
    board = undefined;
    Object.assign(fake, { dropReplies: 0, corruptReplies: 0, disconnectNext: false, silent: false, garbage: undefined });
    fake.errors.clear();
  });
  afterAll(() => fake.close());

  it('every message type, with increasing ids', async () => {
    const b = await open();
    const first = fake.seen.length;
    const id = await b.identify();
    expect(id.arrays).toEqual([{ rows: 8, cols: 6 }, { rows: 8, cols: 6 }]);
    const pulses = { row: Int32Array.of(0, 1, 7), col: Int32Array.of(0, 5, 2), amplitude: Float32Array.of(1, 1, 1), gate: Float32Array.of(1, 0.5, 0.25) };
    expect(await b.pulse(1, 1e-6, pulses)).toBe(3);
    const g = await b.read({ array: 1, row: 0, col: 0, rows: 8, cols: 6 });
    expect(g[0]).toBeCloseTo(1e-4, 10);
    expect(g[1 * 6 + 5]).toBeCloseTo(0.5e-4, 10);
    expect(g[7 * 6 + 2]).toBeCloseTo(0.25e-4, 10);
    // I_c = Σ_r v_r G[r, c] over the rows driven
    const i = await b.infer(1, Int32Array.of(0, 1), Int32Array.of(0, 5), Float32Array.of(0.2, 0.1, -0.1, 0.3), 2);
    [0.2e-4, 0.1 * 0.5e-4, -0.1e-4, 0.3 * 0.5e-4].forEach((want, k) => expect(i[k]).toBeCloseTo(want, 10));
    await b.mark({ artifact: 'ab'.repeat(32), state: 'ready' });
    expect((await b.status()).deployment).toEqual({ artifact: 'ab'.repeat(32), state: 'ready' });
    const ids = fake.seen.slice(first).map((s) => s.id);
    expect(ids).toHaveLength(6);
    for (let k = 1; k < ids.length; k++) expect(ids[k]).toBe(ids[k - 1]! + 1);
    expect(b.stats()).toEqual({ requests: 6, retries: 0, timeouts: 0, reconnects: 0, dropped: 0 });
  });

  it('large reads, pulses and infers are split into several requests', async () => {
    const b = await open({ maxChunkBytes: 64 });
    const before = fake.seen.length;
    const g = await b.read({ array: 0, row: 1, col: 1, rows: 7, cols: 5 });
    expect(g).toHaveLength(35);
    expect(fake.seen.length - before).toBe(3); // 3 rows (60 bytes) per request
    const n = 10;
    const pulses = { row: Int32Array.from({ length: n }, (_, k) => k % 8), col: Int32Array.from({ length: n }, (_, k) => k % 6), amplitude: new Float32Array(n).fill(1), gate: new Float32Array(n).fill(1) };
    expect(await b.pulse(0, 1e-6, pulses)).toBe(n);
    const v = Float32Array.from({ length: 9 * 8 }, (_, k) => (k % 8) * 0.01);
    const rows = Int32Array.from({ length: 8 }, (_, k) => k);
    const cols = Int32Array.from({ length: 6 }, (_, k) => k);
    const b2 = await connectBoard(url);
    const whole = await b2.infer(0, rows, cols, v, 9);
    await b2.close();
    const split = fake.seen.length;
    expect(Array.from(await b.infer(0, rows, cols, v, 9))).toEqual(Array.from(whole));
    expect(fake.seen.length - split).toBe(5); // 2 samples (8 rows, 64 bytes) per request
  });

  it('dropped replies: resent with the same id after the timeout, applied once (duplicate cache)', async () => {
    const b = await open({ timeoutMs: 300 });
    const before = fake.seen.length;
    const applied = fake.applied;
    fake.dropReplies = 2;
    const pulses = { row: Int32Array.of(3), col: Int32Array.of(3), amplitude: Float32Array.of(1), gate: Float32Array.of(1) };
    expect(await b.pulse(0, 1e-6, pulses)).toBe(1);
    const sent = fake.seen.slice(before);
    expect(sent.length).toBeGreaterThanOrEqual(3); // more only if a loaded machine delays a reply past 300 ms
    expect(new Set(sent.map((s) => s.id)).size).toBe(1);
    expect(fake.applied - applied).toBe(1);
    expect(b.stats().requests).toBe(1);
    expect(b.stats().retries).toBe(sent.length - 1);
    expect(b.stats().timeouts).toBeGreaterThanOrEqual(2);
  });

  it('corrupted replies are caught by the CRC and resent without waiting for the timeout', async () => {
    const b = await open({ timeoutMs: 5000 });
    fake.corruptReplies = 2;
    const t0 = performance.now();
    expect((await b.identify()).arrays).toHaveLength(2);
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(b.stats()).toMatchObject({ requests: 1, retries: 2, timeouts: 0 });
    expect(b.stats().dropped).toBeGreaterThanOrEqual(2);
  });

  it('garbage and stale replies (other ids) on the line are ignored', async () => {
    const b = await open();
    fake.garbage = concat(Uint8Array.of(0xde, 0x1d, 0, 0, 0xde), encodeFrame({ type: MessageType.Identify | RESPONSE, id: 1, json: { protocol: 99, arrays: [] }, data: new Uint8Array(0) }));
    expect((await b.identify()).protocol).toBe(1);
    expect((await b.status()).state).toBeDefined();
    expect(b.stats()).toMatchObject({ requests: 2, timeouts: 0 });
  });

  it('a dropped connection is reconnected and the request resent with the same id', async () => {
    const b = await open();
    const before = fake.seen.length;
    fake.disconnectNext = true;
    const g = await b.read({ array: 0, row: 0, col: 0, rows: 2, cols: 2 });
    expect(g).toHaveLength(4);
    const sent = fake.seen.slice(before);
    expect(sent).toHaveLength(2);
    expect(sent[1]!.id).toBe(sent[0]!.id);
    expect(b.stats()).toMatchObject({ requests: 1, retries: 1, reconnects: 1 });
    // and the link keeps working
    expect((await b.identify()).protocol).toBe(1);
  });

  it('an error response is a DeviceError naming the board, the request and its message, not retried', async () => {
    const b = await open();
    fake.errors.set(MessageType.Read, { code: 'out-of-range', message: 'array 9 does not exist' });
    const before = fake.seen.length;
    const e = await b.read({ array: 9, row: 0, col: 0, rows: 1, cols: 1 }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(DeviceError);
    expect(e).toBeInstanceOf(BoardRequestError);
    expect(e).not.toBeInstanceOf(LinkError);
    expect((e as Error).message).toContain(url);
    expect((e as Error).message).toContain('read of array 9');
    expect((e as Error).message).toContain('array 9 does not exist');
    expect((e as BoardRequestError).code).toBe('out-of-range');
    expect(fake.seen.length - before).toBe(1);
    expect(b.stats().retries).toBe(0);
  });

  it('a board that never answers: a LinkError after the retries, in bounded time', async () => {
    const b = await open({ timeoutMs: 100, retries: 2 });
    fake.silent = true;
    const t0 = performance.now();
    const e = await b.status().catch((x: unknown) => x);
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(e).toBeInstanceOf(LinkError);
    expect((e as Error).message).toMatch(/after 3 tries \(3× no reply within 100 ms\)/);
    expect(b.stats()).toMatchObject({ requests: 1, retries: 2, timeouts: 3 });
  });

  it('calls made at once are queued: one request outstanding at a time', async () => {
    const b = await open();
    const results = await Promise.all([b.identify(), b.status(), b.read({ array: 0, row: 0, col: 0, rows: 1, cols: 1 }), b.identify()]);
    expect(results).toHaveLength(4);
    expect(b.stats()).toMatchObject({ requests: 4, retries: 0 });
  });

  it('close rejects later calls and is idempotent', async () => {
    const b = await open();
    await b.close();
    await b.close();
    await expect(b.identify()).rejects.toThrow(/closed/);
  });
});

describe('client: unreachable boards', () => {
  it('a dead port: a LinkError after the retries, in bounded time', async () => {
    const server = createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    await new Promise<void>((r) => server.close(() => r()));
    const t0 = performance.now();
    const e = await connectBoard(`tcp://127.0.0.1:${port}`, { timeoutMs: 200, retries: 3 }).catch((x: unknown) => x);
    expect(performance.now() - t0).toBeLessThan(5000);
    expect(e).toBeInstanceOf(LinkError);
    expect((e as Error).message).toBe(`cannot reach the board at tcp://127.0.0.1:${port} after 4 tries (4× connect ECONNREFUSED)`);
  });

  it('a malformed URL is an InputError', async () => {
    await expect(connectBoard('tcp://localhost')).rejects.toThrow(InputError);
    await expect(connectBoard('ftp://x:1')).rejects.toThrow(/unsupported scheme/);
  });

  const client = join(__dirname, '..', '..', 'dist', 'runtime', 'backends', 'device', 'client.js');
  it.skipIf(!existsSync(client))('a process that closes its board exits by itself (no dangling sockets or timers)', async () => {
    const fake = FakeBoard.blank(1, 4, 4);
    const url = await fake.listen();
    try {
      fake.dropReplies = 1; // a retry timer and a resend on the way
      const script = `import { connectBoard } from ${JSON.stringify(client)};
        const b = await connectBoard(${JSON.stringify(url)}, { timeoutMs: 200 });
        await b.identify(); await b.read({ array: 0, row: 0, col: 0, rows: 4, cols: 4 }); await b.close();
        console.log(JSON.stringify(b.stats()));`;
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d));
      child.stderr.on('data', (d: Buffer) => (out += d));
      const code = await new Promise<number | null>((resolve) => {
        const kill = setTimeout(() => child.kill('SIGKILL'), 10_000);
        child.on('exit', (c) => {
          clearTimeout(kill);
          resolve(c);
        });
      });
      expect(out).toMatch(/"retries":[1-9]/);
      expect(code).toBe(0);
    } finally {
      await fake.close();
    }
  });
});

const socat = spawnSync('socat', ['-V']).status === 0;

describe.skipIf(!socat)('client over a virtual serial pair (socat)', () => {
  let dir: string;
  let proc: ChildProcess;
  let port: import('serialport').SerialPort;
  let fake: FakeBoard;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'dendra-serial-'));
    proc = spawn('socat', ['-d', '-d', `pty,raw,echo=0,link=${join(dir, 'a')}`, `pty,raw,echo=0,link=${join(dir, 'b')}`], { stdio: 'ignore' });
    for (let i = 0; i < 100 && !(existsSync(join(dir, 'a')) && existsSync(join(dir, 'b'))); i++) await new Promise((r) => setTimeout(r, 50));
    const { SerialPort } = await import('serialport');
    port = new SerialPort({ path: join(dir, 'b'), baudRate: 115200, autoOpen: false });
    await new Promise<void>((resolve, reject) => port.open((e) => (e ? reject(e) : resolve())));
    fake = FakeBoard.blank(1, 16, 8);
    fake.serve(port);
  });
  afterAll(async () => {
    if (port?.isOpen) await new Promise<void>((r) => port.close(() => r()));
    proc?.kill('SIGTERM');
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('requests complete over the line, with a dropped and a corrupted reply', async () => {
    const b = await connectBoard(`serial://${join(dir, 'a')}?baud=115200`, { timeoutMs: 500, retries: 5 });
    try {
      expect((await b.identify()).arrays).toEqual([{ rows: 16, cols: 8 }]);
      const pulses = { row: Int32Array.of(2, 15), col: Int32Array.of(1, 7), amplitude: Float32Array.of(1, 1), gate: Float32Array.of(1, 0.5) };
      fake.dropReplies = 1;
      expect(await b.pulse(0, 1e-6, pulses)).toBe(2);
      fake.corruptReplies = 1;
      const g = await b.read({ array: 0, row: 0, col: 0, rows: 16, cols: 8 });
      expect(g[2 * 8 + 1]).toBeCloseTo(1e-4, 10);
      expect(g[15 * 8 + 7]).toBeCloseTo(0.5e-4, 10);
      const i = await b.infer(0, Int32Array.of(2, 15), Int32Array.of(1, 7), Float32Array.of(0.2, 0.2), 1);
      expect(i[0]).toBeCloseTo(0.2e-4, 10);
      expect(i[1]).toBeCloseTo(0.1e-4, 10);
      expect(fake.applied).toBe(2);
      expect(b.stats().requests).toBe(4);
      expect(b.stats().retries).toBeGreaterThanOrEqual(2);
      expect(b.stats().timeouts).toBeGreaterThanOrEqual(1);
      expect(b.stats().dropped).toBeGreaterThanOrEqual(1);
    } finally {
      await b.close();
    }
  });
});
