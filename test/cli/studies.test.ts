/**
 * The two studies written against the old one-process sweeps, now kinds of study (sweep/): `sweep --train`
 * (sweep/train.ts) and `sweep --param finetune.sparsity` (sweep/param.ts). Split into shards, or computed by
 * queue workers, each gives its local run's JSON field for field, apart from `run` (how it ran) and `files`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readNpyFile, writeNpyFile } from '../../common/npy.js';
import { examples, mnist } from '../helpers/fixtures.js';
import { dendra, expectOneLineError, MAIN } from '../helpers/cli.js';
import { MISSING_REDIS, redisAvailable, startRedis, type TestRedis } from '../helpers/redis.js';

const dir = mkdtempSync(join(tmpdir(), 'dendra-studies-'));

/** `n` samples of X and L spread over the file (every k-th: the files are sorted by digit), written to DIR/NAME-x.npy and NAME-l.npy. */
function spread(x: string, l: string, n: number, name: string): { x: string; l: string } {
  const a = readNpyFile(x);
  const b = readNpyFile(l);
  const f = a.data.length / a.shape[0]!;
  const k = Math.floor(a.shape[0]! / n);
  const xs = new Float32Array(n * f);
  const ls = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    xs.set(a.data.subarray(i * k * f, (i * k + 1) * f), i * f);
    ls[i] = b.data[i * k]!;
  }
  const files = { x: join(dir, `${name}-x.npy`), l: join(dir, `${name}-l.npy`) };
  writeNpyFile(files.x, xs, [n, ...a.shape.slice(1)]);
  writeNpyFile(files.l, ls, [n]);
  return files;
}

type Json = Record<string, unknown>;
/** The results: the report without how it ran and where it was written. */
function results(report: Json): Json {
  const { run: _run, files: _files, ...rest } = report;
  return rest;
}

const MODEL = mnist('mnist8x8-64x54x10.onnx');
let trainArgs: string[];
let local: Json;

beforeAll(() => {
  // A tiny Fig. 4b: 1,500 training digits (of the train split, as `dendra train` takes them), 400 test digits, 2 epochs.
  const full = join(dir, 'train');
  expect(dendra('data', 'mnist', '--split', 'train', '--size', '8', '-o', full).code).toBe(0);
  const train = spread(join(full, 'inputs.npy'), join(full, 'labels.npy'), 1500, 'train');
  const test = spread(mnist('digits8x8-f32.npy'), mnist('labels.npy'), 400, 'test');
  trainArgs = ['sweep', MODEL, '--train', '--device', 'hfo2-1t1r', '--rates', '0,0.3', '--trials', '2', '--seed', '3', '--epochs', '2', '--batch', '20',
    '--input', train.x, '--labels', train.l, '--test', test.x, test.l];
  const r = dendra(...trainArgs, '--json', '--out', join(dir, 'local'));
  expect(r.code, r.err).toBe(0);
  local = JSON.parse(r.out) as Json;
});

describe('dendra sweep --train as a study', () => {
  it('one chip per point: the chips are the fault-rate sweep\'s, and in-situ training learns on them', () => {
    const report = local as { kind: string; run: { mode: string }; rates: { rate: number; points: { chipSeed: number; faults: number; inSitu: number; naive: number; remapped: number }[] }[] };
    expect(report.kind).toBe('sweep-train');
    expect(report.run.mode).toBe('local');
    expect(report.rates.map((x) => x.rate)).toEqual([0, 0.3]);
    // The same seeds as `dendra sweep --rates`: the same chips, stuck cell for stuck cell.
    const f = dendra('sweep', MODEL, '--device', 'hfo2-1t1r', '--rates', '0,0.3', '--trials', '2', '--seed', '3', '--input', mnist('digits8x8-f32.npy'), '--labels', mnist('labels.npy'), '--json');
    expect(f.code, f.err).toBe(0);
    const fault = JSON.parse(f.out) as { rates: { trials: { chipSeed: number; faults: number }[] }[] };
    for (const [ri, x] of report.rates.entries()) {
      expect(x.points.map((p) => [p.chipSeed, p.faults])).toEqual(fault.rates[ri]!.trials.map((t) => [t.chipSeed, t.faults]));
    }
    expect(report.rates[1]!.points[0]!.faults).toBeGreaterThan(0.25 * 2 * 128 * 64);
    // Two epochs on 1,500 digits are far above chance (10 %), on a fault-free chip and on one with 30 % stuck cells,
    // where the ONNX weights loaded naively fall towards chance (in situ learns around the defects it cannot see)
    // and remapped around the known defect map do well.
    for (const x of report.rates) for (const p of x.points) expect(p.inSitu).toBeGreaterThan(0.45);
    for (const p of report.rates[1]!.points) {
      expect(p.naive).toBeLessThan(0.3);
      expect(p.inSitu).toBeGreaterThan(p.naive + 0.2);
      expect(p.remapped).toBeGreaterThan(0.8);
    }
  });

  it('shards 1/3, 2/3, 3/3 merged equal the local run: JSON, plot and table', () => {
    const shards = join(dir, 'shards');
    for (const i of [2, 3, 1]) {
      const r = dendra(...trainArgs, '--shard', `${i}/3`, '--out', shards);
      expect(r.code, r.err).toBe(0);
      expect(r.out).toMatch(new RegExp(`shard ${i}/3 of study [0-9a-f]{12}, \\d of its 4 points`));
    }
    expect(readdirSync(shards).sort()).toEqual(['sweep-train-shard-1-of-3.json', 'sweep-train-shard-2-of-3.json', 'sweep-train-shard-3-of-3.json']);
    const out = join(dir, 'merged');
    const m = dendra('sweep', 'merge', shards, '--out', out, '--json');
    expect(m.code, m.err).toBe(0);
    const merged = JSON.parse(m.out) as Json;
    expect(results(merged)).toEqual(results(local));
    expect((merged['run'] as { mode: string }).mode).toBe('shards');
    expect(readFileSync(join(out, 'sweep-train.svg'), 'utf8')).toBe(readFileSync(join(dir, 'local', 'sweep-train.svg'), 'utf8'));
    const t = dendra('sweep', 'merge', shards);
    expect(t.code).toBe(0);
    expect(t.out).toMatch(/^mnist8x8-64x54x10\.onnx \(64-54-10\) on hfo2-1t1r: test accuracy/);
    expect(t.out).toMatch(/merged from 3 shards/);
    // A different study (another seed) is not merged with these.
    const other = join(dir, 'other');
    expect(dendra(...trainArgs.map((a) => (a === '3' ? '4' : a)), '--shard', '1/3', '--out', other).code).toBe(0);
    expectOneLineError(dendra('sweep', 'merge', join(shards, 'sweep-train-shard-2-of-3.json'), join(shards, 'sweep-train-shard-3-of-3.json'), join(other, 'sweep-train-shard-1-of-3.json')), /shards of different studies/);
  }, 120_000);

  it('refuses bad settings with one line, before any training', () => {
    expectOneLineError(dendra(...trainArgs.slice(0, trainArgs.indexOf('--test'))), /--train needs the test samples: --test Xt\.npy Lt\.npy/);
    expectOneLineError(dendra(...trainArgs, '--on-fraction', '2'), /--on-fraction must be a number from 0 to 1/);
    expectOneLineError(dendra(...trainArgs.map((a) => (a === 'hfo2-1t1r' ? 'rram-512' : a))), /device profile 'rram-512' has no pulse model/);
    expectOneLineError(dendra(...trainArgs.map((a) => (a === '0,0.3' ? '0,1.5' : a))), /--rates: '1\.5' is not a fault rate from 0 to 1/);
    const bad = join(dir, 'bad-x.npy');
    writeNpyFile(bad, new Float32Array(10 * 5), [10, 5]);
    expectOneLineError(dendra(...trainArgs.map((a, i) => (trainArgs[i - 1] === '--test' ? bad : a))), /bad-x\.npy has 5 features per sample; the model takes 64/);
  });
});

const sx = examples('digits8x8-f32.npy');
const sl = examples('labels.npy');
const sparsityArgs = ['sweep', examples('mnist8x8-64x54x10.onnx'), '--input', sx, '--labels', sl, '--branches', '4,2', '--calibrate', sx, sl,
  '--param', 'finetune.sparsity=0,3', '--finetune', sx, sl, '--epochs', '1'];

describe('dendra sweep --param finetune.sparsity as a study', () => {
  it('shards 1/2 and 2/2 merged equal the local run', () => {
    const args = sparsityArgs;
    const r = dendra(...args, '--json');
    expect(r.code, r.err).toBe(0);
    const localSparsity = JSON.parse(r.out) as Json & { calibration: string | null; points: { activeSomas: { dendritic: number } }[] };
    expect(localSparsity.calibration).toMatch(/calibrated on \d+ samples/);
    const shards = join(dir, 'sparsity-shards');
    for (const i of [1, 2]) expect(dendra(...args, '--shard', `${i}/2`, '--out', shards).code).toBe(0);
    const m = dendra('sweep', 'merge', shards, '--json');
    expect(m.code, m.err).toBe(0);
    expect(results(JSON.parse(m.out) as Json)).toEqual(results(localSparsity));
    // The table: one row per sparsity, with the active somas of the fine-tuned network and of the plain compile.
    const t = dendra('sweep', 'merge', shards);
    expect(t.code, t.err).toBe(0);
    expect(t.out).toMatch(/^sweep of finetune\.sparsity: mnist8x8-64x54x10\.onnx \(64-54-10\) on taox-dendrite, branches 4, 2/);
    expect(t.out).toMatch(/finetune\.sparsity\s+accuracy %\s+without %\s+power adv\.\s+energy adv\.\s+energy\/inference\s+without\s+active somas %\s+plain %/);
    const points = localSparsity.points as { activeSomas: { dendritic: number; plain: number } }[];
    expect(t.out).toMatch(new RegExp(`^3\\s.*\\s${(100 * points[1]!.activeSomas.dendritic).toFixed(2)}\\s+${(100 * points[1]!.activeSomas.plain).toFixed(2)}$`, 'm'));
  }, 120_000);
});

/** A dendra process whose output is watched. */
class Proc {
  readonly child: ChildProcess;
  out = '';
  err = '';
  readonly exited: Promise<number | null>;
  constructor(args: string[]) {
    this.child = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout!.setEncoding('utf8').on('data', (s: string) => (this.out += s));
    this.child.stderr!.setEncoding('utf8').on('data', (s: string) => (this.err += s));
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => resolve(code)));
  }
  async waitFor(re: RegExp, timeoutMs = 60_000): Promise<void> {
    const t0 = Date.now();
    while (!re.test(this.out)) {
      if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${re} in:\n${this.out}\n${this.err}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

const haveRedis = redisAvailable();
if (!haveRedis) console.warn(`skipping the queue test: ${MISSING_REDIS}`);

describe.skipIf(!haveRedis)('dendra sweep --train --queue', () => {
  let redis: TestRedis;
  const workers: Proc[] = [];
  beforeAll(async () => {
    redis = await startRedis(3);
  });
  afterAll(async () => {
    for (const w of workers) if (w.child.exitCode === null) w.child.kill('SIGKILL');
    await redis?.stop();
  });

  it('two workers compute the training study and the sparsity study at once; each report equals its local run', async () => {
    // The workers evaluate on one simulator thread: so does the sparsity study's local reference (its energies' last bits depend on it).
    const s = dendra(...sparsityArgs, '--threads', '1', '--json');
    expect(s.code, s.err).toBe(0);
    for (const name of ['t1', 't2']) workers.push(new Proc(['worker', '--queue', redis.url, '--name', name, '--threads', '1']));
    await Promise.all(workers.map((w) => w.waitFor(/waiting for jobs/)));
    const driver = new Proc([...trainArgs, '--queue', redis.url, '--json']);
    const sparsity = new Proc([...sparsityArgs, '--queue', redis.url, '--json']);
    expect(await sparsity.exited, sparsity.err).toBe(0);
    expect(results(JSON.parse(sparsity.out) as Json)).toEqual(results(JSON.parse(s.out) as Json));
    expect(await driver.exited, driver.err).toBe(0);
    const report = JSON.parse(driver.out) as Json;
    expect(results(report)).toEqual(results(local));
    const run = report['run'] as { mode: string; workers: Record<string, number> };
    expect(run.mode).toBe('queue');
    expect(Object.values(run.workers).reduce((a, b) => a + b, 0)).toBe(4);
    for (const w of workers) w.child.kill('SIGTERM');
    for (const w of workers) expect(await w.exited).toBe(0);
  }, 120_000);
});
