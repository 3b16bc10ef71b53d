/**
 * Sweeps beyond one process: shards merged, and a BullMQ queue on a real Redis with workers, one of them
 * killed (SIGKILL) in the middle of a job. Every way of running gives the local run's JSON, field for field,
 * apart from `run` (how it ran, wall times) and `files` (where it was written).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readNpyFile, writeNpyFile } from '../../common/npy.js';
import { examples, mnist } from '../helpers/fixtures.js';
import { dendra, expectOneLineError, MAIN } from '../helpers/cli.js';
import { MISSING_REDIS, redisAvailable, startRedis, type TestRedis } from '../helpers/redis.js';

const dir = mkdtempSync(join(tmpdir(), 'dendra-distributed-'));

/** digits8x8 repeated 16 times (32,064 samples): jobs long enough (a worker's first, which also sets up, takes ~0.5 s) to kill a worker in the middle of one. */
function tiledData(): { x: string; l: string } {
  const x = readNpyFile(mnist('digits8x8-f32.npy'));
  const l = readNpyFile(mnist('labels.npy'));
  const k = 16;
  const xs = new Float32Array(x.data.length * k);
  const ls = new Float32Array(l.data.length * k);
  for (let i = 0; i < k; i++) {
    xs.set(x.data, i * x.data.length);
    ls.set(l.data, i * l.data.length);
  }
  const files = { x: join(dir, 'x.npy'), l: join(dir, 'l.npy') };
  writeNpyFile(files.x, xs, [x.shape[0]! * k, ...x.shape.slice(1)]);
  writeNpyFile(files.l, ls, [l.shape[0]! * k]);
  return files;
}

const data = tiledData();
const sweepArgs = ['sweep', mnist('mnist8x8-64x54x10.onnx'), '--device', 'hfo2-1t1r', '--rates', '0,0.1,0.2', '--trials', '2', '--seed', '4', '--input', data.x, '--labels', data.l];
const paramArgs = ['sweep', examples('mnist8x8-64x54x10.onnx'), '--param', 'dendrite.nonlinearity=0.05,0.2', '--branches', '4,2',
  '--input', examples('digits8x8-f32.npy'), '--labels', examples('labels.npy')];
// The simulator sums a run's energy per thread: its last bits depend on the thread count, so the local
// reference of the parameter study runs on one thread, as the workers do (accuracies do not depend on it).
const paramLocal = [...paramArgs, '--threads', '1'];

type Json = Record<string, unknown>;
/** The results: the report without how it ran and where it was written. */
function results(report: Json): Json {
  const { run: _run, files: _files, ...rest } = report;
  return rest;
}

let local: Json;
let localParam: Json;

beforeAll(() => {
  const r = dendra(...sweepArgs, '--json', '--out', join(dir, 'local'));
  expect(r.code, r.err).toBe(0);
  local = JSON.parse(r.out) as Json;
  expect((local['run'] as Json)['mode']).toBe('local');
  const p = dendra(...paramLocal, '--json');
  expect(p.code, p.err).toBe(0);
  localParam = JSON.parse(p.out) as Json;
});

describe('dendra sweep --shard and sweep merge', () => {
  it('shards 1/3, 2/3 and 3/3, computed apart, merge into the local run: JSON, table and plot', () => {
    const shards = join(dir, 'shards');
    // Shard 3 runs on "another machine": the same model and data under other paths (file names are not part of a study).
    const elsewhere = mkdtempSync(join(tmpdir(), 'dendra-elsewhere-'));
    const moved = new Map([sweepArgs[1]!, data.x, data.l].map((f, k) => [f, join(elsewhere, `input${k}${f.slice(f.lastIndexOf('.'))}`)]));
    for (const [from, to] of moved) copyFileSync(from, to);
    for (const i of [3, 1, 2]) {
      const args = i === 3 ? sweepArgs.map((a) => moved.get(a) ?? a) : sweepArgs;
      const r = dendra(...args, '--shard', `${i}/3`, '--out', shards);
      expect(r.code, r.err).toBe(0);
      expect(r.out).toMatch(new RegExp(`shard ${i}/3 of study [0-9a-f]{12}, \\d of its 8 points`));
    }
    expect(readdirSync(shards).sort()).toEqual(['sweep-shard-1-of-3.json', 'sweep-shard-2-of-3.json', 'sweep-shard-3-of-3.json']);
    const out = join(dir, 'merged');
    const m = dendra('sweep', 'merge', shards, '--out', out, '--json');
    expect(m.code, m.err).toBe(0);
    const merged = JSON.parse(m.out) as Json;
    expect(results(merged)).toEqual(results(local));
    expect((merged['run'] as { mode: string; shards: unknown[] }).mode).toBe('shards');
    expect((merged['run'] as { shards: unknown[] }).shards).toHaveLength(3);
    // The files a local run writes, with the same content.
    expect(results(JSON.parse(readFileSync(join(out, 'sweep.json'), 'utf8')) as Json)).toEqual(results(local));
    expect(readFileSync(join(out, 'sweep.svg'), 'utf8')).toBe(readFileSync(join(dir, 'local', 'sweep.svg'), 'utf8'));
    // The table, as a local run prints it, but for its foot.
    const table = (s: string) => s.split('\n').filter((l) => !l.startsWith('±')).join('\n');
    const t = dendra('sweep', 'merge', join(shards, 'sweep-shard-1-of-3.json'), join(shards, 'sweep-shard-2-of-3.json'), join(shards, 'sweep-shard-3-of-3.json'));
    expect(t.code).toBe(0);
    expect(t.out).toMatch(/merged from 3 shards/);
    const l = dendra(...sweepArgs);
    expect(table(t.out)).toBe(table(l.out));
  });

  it('refuses shards of different studies, a missing shard, conflicting copies; --shard needs --out', () => {
    const shards = join(dir, 'shards');
    const other = join(dir, 'other');
    expect(dendra(...sweepArgs.map((a) => (a === '4' ? '5' : a)), '--shard', '1/3', '--out', other).code).toBe(0);
    expectOneLineError(dendra('sweep', 'merge', shards, join(other, 'sweep-shard-1-of-3.json')), /shards of different studies: .* is study [0-9a-f]{12} .* but .* is study [0-9a-f]{12}/);
    expectOneLineError(dendra('sweep', 'merge', join(shards, 'sweep-shard-1-of-3.json'), join(shards, 'sweep-shard-3-of-3.json')), /shard 2\/3 of study [0-9a-f]{12} is missing/);
    const two = join(dir, 'two');
    expect(dendra(...sweepArgs, '--shard', '1/2', '--out', two).code).toBe(0);
    expectOneLineError(dendra('sweep', 'merge', shards, two), /is one of 3 shards but .* is one of 2/);
    const forged = JSON.parse(readFileSync(join(shards, 'sweep-shard-2-of-3.json'), 'utf8')) as { points: { result: { naive?: number } }[] };
    forged.points.find((x) => x.result.naive !== undefined)!.result.naive = 0.5;
    writeFileSync(join(dir, 'forged-sweep-shard-2-of-3.json'), JSON.stringify(forged));
    expectOneLineError(dendra('sweep', 'merge', shards, join(dir, 'forged-sweep-shard-2-of-3.json')), /shard 2\/3 is given twice with different results/);
    expectOneLineError(dendra(...sweepArgs, '--shard', '4/3', '--out', two), /--shard must be I\/N with 1 <= I <= N/);
    expectOneLineError(dendra(...sweepArgs, '--shard', '1/3'), /--shard needs --out DIR/);
    expectOneLineError(dendra('sweep', 'merge', join(dir, 'nowhere')), /nowhere.*no such file or folder/);
    expectOneLineError(dendra('sweep', 'merge', data.x), /is not a shard file/);
  });
});

/** A dendra process whose output is watched line by line. */
class Proc {
  readonly child: ChildProcess;
  out = '';
  err = '';
  readonly exited: Promise<number | null>;
  private waiters: { re: RegExp; resolve: (m: RegExpMatchArray) => void }[] = [];
  constructor(args: string[]) {
    this.child = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout!.setEncoding('utf8').on('data', (s: string) => {
      this.out += s;
      this.check();
    });
    this.child.stderr!.setEncoding('utf8').on('data', (s: string) => (this.err += s));
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => resolve(code)));
  }
  private check() {
    this.waiters = this.waiters.filter((w) => {
      const m = this.out.match(w.re);
      if (m) w.resolve(m);
      return !m;
    });
  }
  waitFor(re: RegExp, timeoutMs = 60_000): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`timed out waiting for ${re} in:\n${this.out}\n${this.err}`)), timeoutMs);
      this.waiters.push({ re, resolve: (m) => (clearTimeout(t), resolve(m)) });
      this.check();
    });
  }
}

const haveRedis = redisAvailable();
if (!haveRedis) console.warn(`skipping the queue tests: ${MISSING_REDIS}`);

// Under CI=true a missing Redis is a failure (counted as one), never a silent skip.
it.runIf(process.env['CI'] === 'true')('CI has a Redis for the queue tests', () => {
  if (!haveRedis) throw new Error(MISSING_REDIS);
});

describe.skipIf(!haveRedis)('dendra sweep --queue and dendra worker (BullMQ on Redis)', () => {
  let redis: TestRedis;
  const workers: Proc[] = [];

  beforeAll(async () => {
    redis = await startRedis(1);
  });
  afterAll(async () => {
    for (const w of workers) if (w.child.exitCode === null) w.child.kill('SIGKILL');
    await redis?.stop();
  });

  it('three workers, one killed (SIGKILL) in the middle of a job, two studies at once: each equals its local run', async () => {
    const opts = ['--stall-timeout', '3', '--threads', '1'];
    for (const name of ['w1', 'w2', 'w3']) workers.push(new Proc(['worker', '--queue', redis.url, '--name', name, ...opts]));
    await Promise.all(workers.map((w) => w.waitFor(/waiting for jobs/)));
    const driver = new Proc([...sweepArgs, '--queue', redis.url, '--json', '--out', join(dir, 'queued')]);
    const param = new Proc([...paramArgs, '--queue', redis.url, '--json']);
    const [w1, w2, w3] = workers as [Proc, Proc, Proc];
    // w1 is killed as soon as it starts a job.
    const started = await w1.waitFor(/w1: (p\d+ \(.*?\) of study [0-9a-f]{12}): started/);
    w1.child.kill('SIGKILL');
    const job = started[1]!;

    expect(await driver.exited, driver.err).toBe(0);
    const report = JSON.parse(driver.out) as Json;
    expect(results(report)).toEqual(results(local));
    expect(results(JSON.parse(readFileSync(join(dir, 'queued', 'sweep.json'), 'utf8')) as Json)).toEqual(results(local));
    expect(readFileSync(join(dir, 'queued', 'sweep.svg'), 'utf8')).toBe(readFileSync(join(dir, 'local', 'sweep.svg'), 'utf8'));
    expect(await param.exited, param.err).toBe(0);
    expect(results(JSON.parse(param.out) as Json)).toEqual(results(localParam));

    // The job w1 died in was taken again, after its lock ran out, and done by another worker.
    const escaped = job.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    expect(w1.out).not.toMatch(new RegExp(`${escaped}: done`));
    expect(w2.out + w3.out).toMatch(new RegExp(`w[23]: ${escaped}: done`));
    const run = report['run'] as { mode: string; workers: Record<string, number> };
    expect(run.mode).toBe('queue');
    expect(Object.values(run.workers).reduce((a, b) => a + b, 0)).toBe(8);

    // SIGTERM: a clean stop.
    w2.child.kill('SIGTERM');
    w3.child.kill('SIGTERM');
    expect(await w2.exited).toBe(0);
    expect(await w3.exited).toBe(0);
    expect(w2.out).toMatch(/worker stopped/);
  });

  it("a worker's failure shows in the driver, with the job and the error", async () => {
    // A driver alone; its inputs then vanish from Redis before a worker comes.
    const driver = new Proc([...sweepArgs.map((a) => (a === '4' ? '6' : a)), '--trials', '1', '--queue', redis.url]);
    const { Redis } = await import('ioredis');
    const r = new Redis(redis.url);
    try {
      for (let i = 0; i < 200 && (await r.zcard('dendra:studies')) === 0; i++) await new Promise((res) => setTimeout(res, 100));
      const blobs = await r.keys('dendra:blob:*');
      expect(blobs.length).toBeGreaterThan(0);
      await r.del(...blobs);
    } finally {
      r.disconnect();
    }
    const w = new Proc(['worker', '--queue', redis.url, '--name', 'w4']);
    workers.push(w);
    expect(await driver.exited).toBe(1);
    expect(driver.err).toMatch(/^dendra: job p\d \((fault-free|rate \d+ %), trial 1\/1\) of study [0-9a-f]{12} failed on worker w4 after 1 attempt\(s\): the model of study [0-9a-f]{12} \(sha256 [0-9a-f]{12}…\) is not in Redis/m);
    expect(driver.err).not.toMatch(/\n\s+at /);
    w.child.kill('SIGINT');
    expect(await w.exited).toBe(0);
  });

  it('refuses a Redis it cannot reach, or a bad URL, with one line and without hanging', () => {
    const t0 = Date.now();
    expectOneLineError(dendra(...sweepArgs, '--queue', 'redis://127.0.0.1:1'), /cannot reach Redis at redis:\/\/127\.0\.0\.1:1: ECONNREFUSED/);
    expectOneLineError(dendra('worker', '--queue', 'redis://127.0.0.1:1'), /cannot reach Redis at redis:\/\/127\.0\.0\.1:1: ECONNREFUSED/);
    expect(Date.now() - t0).toBeLessThan(30_000);
    expectOneLineError(dendra(...sweepArgs, '--queue', 'http://x:1'), /--queue must be a Redis URL, redis:\/\/HOST:PORT/);
    expectOneLineError(dendra(...sweepArgs, '--queue', redis.url, '--shard', '1/2', '--out', dir), /--shard and --queue are two ways/);
  });
});
