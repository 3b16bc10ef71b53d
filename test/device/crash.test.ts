/**
 * Crash consistency: the board emulator runs as its own process (`dendra emulate`) and is killed with
 * SIGKILL at seeded random moments of an operation, then restarted blank on the same port. Whatever the
 * operation reports, no board may then hold a 'ready' mark with a wrong cell, and a second run of the
 * operation must complete. Operations are listed in OPERATIONS: deploy now; an in-situ training run
 * adds itself there with its own run and check.
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
};

const OPERATIONS: Operation[] = [deployOperation];

describe.skipIf(!existsSync(MAIN)).each(OPERATIONS.map((o) => [o.name, o] as const))('SIGKILL of the board during %s', (_name, op) => {
  it('never leaves a ready board with a wrong cell, and a second run completes', async () => {
    let emu = await startEmulator(0);
    children.push(emu.child);
    const url = emu.url;
    const port = Number(new URL(url).port);
    // How long an undisturbed run takes, so the kills land inside it.
    const t0 = performance.now();
    await op.run(url);
    const span = performance.now() - t0;
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
    expect(wrongCells(artifact, (i) => g[i]!, { tolerance: defaultTolerance, failed: [] })).toBe(0);
    expect(wrongCells(artifact, (i) => blankCells[i]!, { tolerance: defaultTolerance, failed: [] })).toBeGreaterThan(1000);

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
      if (!outcome.ok) expect(outcome.e, String(outcome.e)).toBeInstanceOf(DendraError);
      const state = await op.check(url, outcome.ok ? outcome.r : undefined);
      outcomes.push(`kill at ${killAt.toFixed(0)} ms, run ended at ${took.toFixed(0)} ms: ${outcome.ok ? `completed (${(outcome.r as DeployReport).restarts} restarts, ${(outcome.r as DeployReport).reconnects} reconnects)` : `failed (${(outcome.e as Error).message.slice(0, 80)})`}, board ${state.ready ? 'ready and correct' : 'not ready'}`);
      // A second run on the restarted board completes and leaves it ready and correct.
      const again = await op.run(url);
      expect((await op.check(url, again)).ready).toBe(true);
    }
    console.log(`${op.name}, span ${span.toFixed(0)} ms:\n  ${outcomes.join('\n  ')}`);
  });
});
