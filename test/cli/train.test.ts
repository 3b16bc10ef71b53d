/** dendra train and dendra sweep --train end to end, as a user runs them, and their one-line errors. */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { dendra, expectOneLineError, MAIN } from '../helpers/cli.js';
import { connectBoard } from '../../runtime/backends/device/client.js';

const MODEL = join(__dirname, '..', 'fixtures', 'mnist', 'mnist8x8-64x54x10.onnx');
const dir = mkdtempSync(join(tmpdir(), 'dendra-train-'));
const TRAIN = join(dir, 'train');
const TEST = join(dir, 'test');

beforeAll(() => {
  expect(dendra('data', 'mnist', '--split', 'train', '--size', '8', '-o', TRAIN).code).toBe(0);
  expect(dendra('data', 'mnist', '--split', 'test', '--size', '8', '-o', TEST).code).toBe(0);
});

const data = () => ['--input', join(TRAIN, 'inputs.npy'), '--labels', join(TRAIN, 'labels.npy'), '--test', join(TEST, 'inputs.npy'), join(TEST, 'labels.npy')];

describe('dendra train', () => {
  it('trains on the simulated chip, writes an artifact eval takes, a JSON report and its SVG curve', () => {
    const out = join(dir, 'trained.dendra');
    const report = join(dir, 'report.json');
    const r = dendra('train', MODEL, '--device', 'hfo2-1t1r', ...data(), '--epochs', '1', '--eval-every', '4000', '--seed', '5', '-o', out, '--report', report, '--json');
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out);
    expect(j.finalAccuracy).toBeGreaterThan(0.6);
    expect(j.curve.map((c: { samples: number }) => c.samples)).toEqual([0, 4000, 7996]);
    expect(j.pulsesPerDevice.mean).toBeGreaterThan(2);
    expect(JSON.parse(readFileSync(report, 'utf8')).finalAccuracy).toBe(j.finalAccuracy);
    expect(readFileSync(join(dir, 'report.svg'), 'utf8')).toMatch(/^<svg/);
    const e = dendra('eval', out, '--input', join(TEST, 'inputs.npy'), '--labels', join(TEST, 'labels.npy'), '--json');
    expect(e.code).toBe(0);
    expect(JSON.parse(e.out).accuracy).toBeGreaterThan(j.finalAccuracy - 0.06);
  });

  it('refuses bad input in one line', () => {
    const out = join(dir, 'x.dendra');
    const base = ['--input', join(TRAIN, 'inputs.npy'), '-o', out];
    expectOneLineError(dendra('train', MODEL, '--device', 'hfo2-1t1r', ...base, '--labels', join(TEST, 'labels.npy')), /labels .* hold 2004 labels but the input holds 7996 samples/);
    expectOneLineError(dendra('train', MODEL, '--device', 'ideal', ...base, '--labels', join(TRAIN, 'labels.npy')), /'ideal' has no pulse model/);
    expectOneLineError(dendra('train', MODEL, '--device', 'hfo2-1t1r', ...base, '--labels', join(TRAIN, 'labels.npy'), '--test', join(TEST, 'inputs.npy')), /--test takes two files/);
    const wrong = join(dir, 'wrong.json');
    writeFileSync(wrong, JSON.stringify({ format: 'dendra-defects', version: 1, device: 'rram-512', arrays: [{ rows: 512, cols: 512, faults: [] }] }));
    expectOneLineError(dendra('train', MODEL, '--device', 'hfo2-1t1r', ...base, '--labels', join(TRAIN, 'labels.npy'), '--defects', wrong), /describes a 'rram-512' chip/);
    const inputs = ['--input', join(TRAIN, 'inputs.npy'), '--labels', join(TRAIN, 'labels.npy')];
    expectOneLineError(dendra('train', MODEL, '--device', 'hfo2-1t1r', ...inputs, '-o', join(dir, 'no', 'such', 'x.dendra')), /does not exist \(dendra does not create folders\)/);
    expectOneLineError(dendra('train', MODEL, '--device', 'hfo2-1t1r', ...inputs, '-o', join(dir, 'x.onnx')), /expected a file ending in \.dendra/);
    expectOneLineError(dendra('train', MODEL, '--device', 'hfo2-1t1r', ...inputs, '-o', out, '--report', join(dir, 'r.txt')), /expected a file ending in \.json/);
    expect(existsSync(join(dir, 'no'))).toBe(false);
    expect(existsSync(out)).toBe(false);
  });
});

describe('dendra train --board', () => {
  it('trains through the protocol; the trained network stays on the board, so eval --device runs it without deploy', async () => {
    const child = spawn(process.execPath, [MAIN, 'emulate', '--listen', 'tcp://127.0.0.1:0', '--device', 'hfo2-1t1r', '--arrays', '2', '--fault-rate', '0.11', '--on-fraction', '0', '--seed', '13'], { stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      const line = await new Promise<string>((res) => {
        let out = '';
        child.stdout.on('data', (c: Buffer) => {
          out += c.toString();
          if (out.includes('\n')) res(out.split('\n')[0]!);
        });
      });
      const url = /tcp:\/\/\S+/.exec(line)![0];
      const out = join(dir, 'board.dendra');
      const run = (...args: string[]) => new Promise<{ code: number | null; out: string; err: string }>((res) => {
        const p = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
        let o = '';
        let e = '';
        p.stdout.on('data', (c: Buffer) => { o += c.toString(); });
        p.stderr.on('data', (c: Buffer) => { e += c.toString(); });
        p.on('exit', (code) => res({ code, out: o, err: e }));
      });
      const t = await run('train', MODEL, '--device', 'hfo2-1t1r', ...data(), '--epochs', '1', '--eval-every', '100000', '--seed', '13', '--board', url, '-o', out, '--json');
      expect(t.err).toBe('');
      const j = JSON.parse(t.out);
      expect(j.chip).toBe('board');
      expect(j.finalAccuracy).toBeGreaterThan(0.6);
      const e = await run('eval', out, '--device', url, '--input', join(TEST, 'inputs.npy'), '--labels', join(TEST, 'labels.npy'), '--json');
      expect(e.err).toBe('');
      expect(Math.abs(JSON.parse(e.out).accuracy - j.finalAccuracy)).toBeLessThan(0.03);
    } finally {
      child.kill('SIGKILL');
    }
  });
});

describe('dendra train --board on a board that restarts', () => {
  it('fails in one line, writes nothing, and the restarted board is not marked ready', async () => {
    const emulate = (port: number) => {
      const child = spawn(process.execPath, [MAIN, 'emulate', '--listen', `tcp://127.0.0.1:${port}`, '--device', 'hfo2-1t1r', '--arrays', '2', '--seed', '17'], { stdio: ['ignore', 'pipe', 'pipe'] });
      return new Promise<{ child: typeof child; url: string }>((res, rej) => {
        let out = '';
        child.stdout.on('data', (c: Buffer) => {
          out += c.toString();
          const m = /tcp:\/\/\S+/.exec(out);
          if (m && out.includes('\n')) res({ child, url: m[0] });
        });
        child.once('exit', (code) => rej(new Error(`dendra emulate exited (${code})`)));
      });
    };
    let emu = await emulate(0);
    const url = emu.url;
    const out = join(dir, 'restarted.dendra');
    try {
      const train = spawn(process.execPath, [MAIN, 'train', MODEL, '--device', 'hfo2-1t1r', ...data(), '--epochs', '1', '--eval-every', '100000', '--board', url, '-o', out], { stdio: ['ignore', 'pipe', 'pipe'] });
      let err = '';
      train.stderr.on('data', (c: Buffer) => { err += c.toString(); });
      const exited = new Promise<number | null>((res) => train.on('exit', (code) => res(code)));
      // Once training has pulsed the board, kill it and bring it back blank on the same port.
      const watcher = await connectBoard(url, { timeoutMs: 2000 });
      for (;;) {
        const s = (await watcher.status()) as unknown as Record<string, number>;
        if (s['cellPulses'] > 0) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      await watcher.close();
      emu.child.kill('SIGKILL');
      emu = await emulate(Number(new URL(url).port));
      const code = await exited;
      expect(code).toBe(1);
      expect(err.trim()).not.toMatch(/\n/);
      expect(err).toMatch(/restarted during in-situ training \(boot \S+ -> \S+\) and lost the trained state; the run stops, nothing is written and the board is not marked ready/);
      expect(existsSync(out)).toBe(false);
      const board = await connectBoard(url);
      expect((await board.status()).deployment?.state).not.toBe('ready');
      await board.close();
    } finally {
      emu.child.kill('SIGKILL');
    }
  });
});

describe('dendra sweep --train', () => {
  it('in situ against ex situ (naive and remapped) on the same chips: table, JSON and SVG', () => {
    const out = join(dir, 'sweep');
    const r = dendra('sweep', MODEL, '--train', '--device', 'hfo2-1t1r', '--rates', '0,0.5', '--on-fraction', '0', '--trials', '1', '--epochs', '2', ...data(), '--out', out, '--json');
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out);
    expect(j.rates.map((x: { rate: number }) => x.rate)).toEqual([0, 0.5]);
    for (const x of j.rates) for (const k of ['inSitu', 'naive', 'remapped']) expect(x[k].mean).toBeGreaterThan(0.4);
    expect(j.rates[1].points[0].faults).toBeGreaterThan(0.45 * 2 * 128 * 64);
    expect(readFileSync(join(out, 'sweep-train.svg'), 'utf8')).toMatch(/^<svg/);
    expectOneLineError(dendra('sweep', MODEL, '--device', 'hfo2-1t1r', '--rates', '0', '--trials', '1', '--epochs', '2', ...data()), /--test, --epochs apply to --train sweeps only/);
  });
});
