/**
 * Crash consistency: the board emulator runs as its own process (`dendra emulate`) and is killed with
 * SIGKILL at seeded random moments of an operation, then restarted blank on the same port. Whatever the
 * operation reports, no board may then hold a 'ready' mark with a wrong cell, and a second run of the
 * operation must complete. Operations are listed in OPERATIONS, each with its own run and check: deploy,
 * and an in-situ training run (`dendra train --board`'s path: train, mark the board ready with the trained
 * artifact's id, write the artifact).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { compile } from '../../compiler/index.js';
import { writeArtifact } from '../../artifact/write.js';
import { readArtifact } from '../../artifact/read.js';
import { DendraError } from '../../common/errors.js';
import { loadProfile } from '../../common/profile.js';
import { Random } from '../../common/random.js';
import { artifactId, deploy, type DeployReport } from '../../runtime/backends/device/deploy.js';
import { connectBoard } from '../../runtime/backends/device/client.js';
import type { Board } from '../../runtime/backends/device/board.js';
import type { Artifact } from '../../artifact/format.js';
import { loadMnist } from '../../common/mnist.js';
import { trainInSitu, type InSituReport } from '../../runtime/train/insitu.js';
import { BoardTrainChip } from '../../runtime/train/board-chip.js';
import { examples } from '../helpers/fixtures.js';
import { wrongCells } from './wrong-cells.js';

const MAIN = join(__dirname, '..', '..', 'dist', 'cli', 'main.js');
const hfo2 = loadProfile('hfo2-1t1r');

/** `dendra emulate` on 127.0.0.1:port (0: any), resolved once it listens. */
function startEmulator(port: number): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [MAIN, 'emulate', '--listen', `tcp://127.0.0.1:${port}`, '--device', 'hfo2-1t1r', '--arrays', '2', '--seed', '5'], { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (tcp:\/\/\S+)/.exec(out);
      if (m) resolve({ child, url: m[1]! });
    });
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    child.once('exit', (code) => reject(new Error(`dendra emulate exited (${code}): ${err}`)));
  });
}

const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

async function readArrays(board: Board, rows: number, cols: number, n: number): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  for (let a = 0; a < n; a++) out.push(await board.read({ array: a, row: 0, col: 0, rows, cols }));
  return out;
}

interface Operation {
  name: string;
  /** One run against the board at url; resolves with what the check needs, or rejects. */
  run(url: string): Promise<unknown>;
  /** After the run (and any crash): the invariant on the board at url. `result` is what run resolved with, if it did. */
  check(url: string, result: unknown): Promise<{ ready: boolean }>;
  /** What a completed run put on the board: the artifact and the tolerance its cells are held to. */
  expected(result: unknown): { artifact: Artifact; report: Pick<DeployReport, 'tolerance' | 'failed'> };
  /** One line about a completed run. */
  describe(result: unknown): string;
}

const bytes = writeArtifact(compile(examples('mnist8x8-64x54x10.onnx'), { device: hfo2 }));
const artifact = readArtifact(bytes);
const spacing = (hfo2.conductance.max - hfo2.conductance.min) / (hfo2.conductance.levels - 1);
const defaultTolerance = Math.max(spacing / 2, 1.5 * hfo2.pulse!.noise);

const deployOperation: Operation = {
  name: 'deploy',
  run: async (url) => (await deploy(bytes, () => connectBoard(url, { timeoutMs: 400, retries: 8 }), { force: true })).report,
  async check(url, result) {
    const board = await connectBoard(url, { timeoutMs: 1000, retries: 8 });
    try {
      const status = await board.status();
      const ready = status.deployment?.artifact === artifactId(bytes) && status.deployment.state === 'ready';
      if (ready) {
        const report = (result as DeployReport | undefined) ?? { tolerance: defaultTolerance, failed: [] };
        const g = await readArrays(board, hfo2.array.rows!, hfo2.array.cols!, 2);
        expect(wrongCells(artifact, (i) => g[i]!, report)).toBe(0);
      }
      return { ready };
    } finally {
      await board.close();
    }
  },
  expected: (result) => ({ artifact, report: result as DeployReport }),
  describe: (result) => `completed (${(result as DeployReport).restarts} restarts, ${(result as DeployReport).reconnects} reconnects)`,
};

/** 600 training digits, one epoch (12 minibatches): long enough to be killed in, short enough for CI. */
const digits = (() => {
  const d = loadMnist('train', 8);
  const n = 600;
  const every = Math.floor(d.labels.length / n);
  const inputs = new Float32Array(n * 64);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    inputs.set(d.x.subarray(i * every * 64, (i * every + 1) * 64), i * 64);
    labels[i] = d.labels[i * every]!;
  }
  return { inputs, labels };
})();

interface Trained {
  bytes: Uint8Array;
  report: InSituReport;
  /** The board's cell-pulse count when the run began. */
  startCellPulses: number;
}

const cellPulses = async (board: Board) => Number((await board.status() as unknown as Record<string, unknown>)['cellPulses']);

const trainOperation: Operation = {
  name: 'in-situ training',
  // What `dendra train --board` does (cli/train.ts): train, mark the board ready with the artifact's id (the
  // boot id the run saw), then write the artifact; a failure leaves nothing written.
  async run(url): Promise<Trained> {
    const chip = await BoardTrainChip.connect(url, { timeoutMs: 400, retries: 8 });
    try {
      const startCellPulses = await cellPulses(chip.boardLink);
      const r = await trainInSitu({ model: examples('mnist8x8-64x54x10.onnx'), device: hfo2, ...digits, epochs: 1, seed: 9, chip });
      const written = writeArtifact(r.artifact);
      await chip.markTrained(artifactId(written));
      return { bytes: written, report: r.report, startCellPulses };
    } finally {
      await chip.close();
    }
  },
  async check(url, result) {
    const board = await connectBoard(url, { timeoutMs: 1000, retries: 8 });
    try {
      const status = await board.status();
      const trained = result as Trained | undefined;
      const ready = trained !== undefined && status.deployment?.artifact === artifactId(trained.bytes) && status.deployment.state === 'ready';
      if (!ready) {
        // The run failed, or the board was killed after it completed: whatever the board holds, it is not
        // marked ready (a killed board comes back blank and unmarked; one that survived a failed run carries
        // training's 'programming' mark).
        expect(status.deployment?.state, JSON.stringify(status.deployment)).not.toBe('ready');
        return { ready: false };
      }
      // The board is ready with exactly the artifact the run wrote, and holds it.
      const g = await readArrays(board, hfo2.array.rows!, hfo2.array.cols!, 2);
      expect(wrongCells(readArtifact(trained!.bytes), (i) => g[i]!, { tolerance: defaultTolerance, failed: [] })).toBe(0);
      // ... and every update of the run: a board that restarted mid-run and was trained on silently from its
      // blank state would hold the artifact it read back, but not the updates made before it restarted.
      const sent = Math.round(trained!.report.pulsesPerDevice.mean * trained!.report.pulsesPerDevice.devices);
      expect((await cellPulses(board)) - trained!.startCellPulses).toBe(sent);
      return { ready: true };
    } finally {
      await board.close();
    }
  },
  expected: (result) => ({ artifact: readArtifact((result as Trained).bytes), report: { tolerance: defaultTolerance, failed: [] } }),
  describe: (result) => `completed (${(result as Trained).report.reconnects} reconnects)`,
};

const OPERATIONS: Operation[] = [deployOperation, trainOperation];

describe.skipIf(!existsSync(MAIN)).each(OPERATIONS.map((o) => [o.name, o] as const))('SIGKILL of the board during %s', (_name, op) => {
  it('never leaves a ready board with a wrong cell, and a second run completes', async () => {
    let emu = await startEmulator(0);
    children.push(emu.child);
    const url = emu.url;
    const port = Number(new URL(url).port);
    // How long an undisturbed run takes, so the kills land inside it (the second of two: the first warms up).
    await op.run(url);
    const t0 = performance.now();
    const undisturbed = await op.run(url);
    const span = performance.now() - t0;
    const { artifact, report } = op.expected(undisturbed);
    expect((await op.check(url, undisturbed)).ready).toBe(true);
    // The check can fail: a blank board marked ready would show wrong cells.
    const blank = await connectBoard(url);
    const g = await readArrays(blank, hfo2.array.rows!, hfo2.array.cols!, 2);
    await blank.close();
    emu.child.kill('SIGKILL');
    emu = await startEmulator(port);
    children.push(emu.child);
    const fresh = await connectBoard(url);
    const blankCells = await readArrays(fresh, hfo2.array.rows!, hfo2.array.cols!, 2);
    await fresh.close();
    expect(wrongCells(artifact, (i) => g[i]!, report)).toBe(0);
    expect(wrongCells(artifact, (i) => blankCells[i]!, report)).toBeGreaterThan(1000);

    const rng = new Random(2026);
    const outcomes: string[] = [];
    for (let k = 0; k < 4; k++) {
      // Each run starts on a blank board (a fresh start), so every kill lands in a real deploy.
      emu.child.kill('SIGKILL');
      emu = await startEmulator(port);
      children.push(emu.child);
      const killAt = (0.05 + 0.6 * rng.next()) * span;
      const began = performance.now();
      const run = op.run(url).then((r) => ({ ok: true as const, r }), (e: unknown) => ({ ok: false as const, e }));
      await new Promise((r) => setTimeout(r, killAt));
      emu.child.kill('SIGKILL');
      await new Promise((r) => setTimeout(r, 50 + 250 * rng.next()));
      emu = await startEmulator(port);
      children.push(emu.child);
      const outcome = await run;
      const took = performance.now() - began;
      if (!outcome.ok) {
        // A typed error, one line (as the CLI prints it).
        expect(outcome.e, String(outcome.e)).toBeInstanceOf(DendraError);
        expect((outcome.e as Error).message).not.toMatch(/\n/);
      }
      const state = await op.check(url, outcome.ok ? outcome.r : undefined);
      outcomes.push(`kill at ${killAt.toFixed(0)} ms, run ended at ${took.toFixed(0)} ms: ${outcome.ok ? op.describe(outcome.r) : `failed (${(outcome.e as Error).message.slice(0, 110)})`}, board ${state.ready ? 'ready and correct' : 'not ready'}`);
      // A second run on the restarted board completes and leaves it ready and correct.
      const again = await op.run(url);
      expect((await op.check(url, again)).ready).toBe(true);
    }
    console.log(`${op.name}, span ${span.toFixed(0)} ms:\n  ${outcomes.join('\n  ')}`);
  });
});
