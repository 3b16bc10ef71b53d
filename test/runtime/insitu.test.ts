/**
 * In-situ training (runtime/train/): the 64-54-10 network of Li et al. 2018 learns 8 × 8 digits on the
 * simulated pulse-level chip and on the board emulator over TCP, small enough for CI (a subset, few epochs).
 * The thresholds are ones a broken update rule (wrong sign, wrong device, no update) cannot reach: chance is
 * 10 %, and the same loop with a learning rate too small to move a device stays near it.
 */
import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { generateDefects } from '../../common/defects.js';
import { loadMnist } from '../../common/mnist.js';
import { loadProfile } from '../../common/profile.js';
import { compile } from '../../compiler/index.js';
import { writeArtifact } from '../../artifact/write.js';
import { InferenceSession, Tensor } from '../../runtime/index.js';
import { trainInSitu, trainInSituSteps } from '../../runtime/train/insitu.js';
import { BoardTrainChip, TRAINING_MARK } from '../../runtime/train/board-chip.js';
import { artifactId } from '../../runtime/backends/device/deploy.js';
import { BoardEmulator } from '../../runtime/backends/device/emulator.js';
import { connectBoard } from '../../runtime/backends/device/client.js';
import { requireTrainingFeatures } from '../../runtime/backends/device/training-messages.js';
import type { Board } from '../../runtime/backends/device/board.js';

const MODEL = join(__dirname, '..', 'fixtures', 'mnist', 'mnist8x8-64x54x10.onnx');
const profile = loadProfile('hfo2-1t1r');

function subset(split: 'train' | 'test', every: number) {
  const d = loadMnist(split, 8);
  const n = Math.floor(d.labels.length / every);
  const x = new Float32Array(n * 64);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    x.set(d.x.subarray(i * every * 64, (i * every + 1) * 64), i * 64);
    labels[i] = d.labels[i * every]!;
  }
  return { inputs: x, labels };
}

const train = subset('train', 4); // 1,999 digits
const test = subset('test', 4); // 501 digits

async function accuracyOf(artifact: Uint8Array, seed: number): Promise<number> {
  const s = await InferenceSession.create(artifact, { seed, threads: 1 });
  try {
    const n = test.labels.length;
    const out = await s.run({ [s.inputNames[0]!]: new Tensor('float32', test.inputs, [n, 64]) });
    const y = out[s.outputNames[0]!]!.data as Float32Array;
    let correct = 0;
    for (let i = 0; i < n; i++) {
      let best = 0;
      for (let c = 1; c < 10; c++) if (y[i * 10 + c]! > y[i * 10 + best]!) best = c;
      if (best === test.labels[i]) correct++;
    }
    return correct / n;
  } finally {
    await s.release();
  }
}

describe('in-situ training on the simulated chip', () => {
  it('learns the digits from a random start, blind to nothing but noise; a learning rate that moves no device stays near chance', async () => {
    const events: string[] = [];
    const r = await trainInSitu({ model: MODEL, device: 'hfo2-1t1r', inputs: train.inputs, labels: train.labels, test, epochs: 6, seed: 11, evalEvery: 2000, onProgress: (e) => events.push(e.kind) });
    expect(r.report.finalAccuracy!).toBeGreaterThan(0.78);
    expect(r.report.curve[0]!.samples).toBe(0);
    expect(r.report.curve[0]!.accuracy).toBeLessThan(0.35);
    expect(events.filter((e) => e === 'step').length).toBe(6 * Math.ceil(train.labels.length / 50));
    expect(r.report.pulsesPerDevice.devices).toBe(2 * (64 * 54 + 54 * 10));
    expect(r.report.chipCounters.energyJ!).toBeGreaterThan(0);
    // The artifact holds the network as the chip holds it: the simulator runs it (programming it anew) close to the chip's accuracy.
    const acc = await accuracyOf(writeArtifact(r.artifact), 1);
    expect(acc).toBeGreaterThan(r.report.finalAccuracy! - 0.05);

    const still = await trainInSitu({ model: MODEL, device: 'hfo2-1t1r', inputs: train.inputs, labels: train.labels, test, epochs: 1, seed: 11, lr: 1e-9, optimizer: 'sgd' });
    expect(still.report.finalAccuracy!).toBeLessThan(0.35);
  });

  it('with half of the devices stuck OFF it still learns, above the ex-situ weights loaded naively on the same chip', async () => {
    const defects = generateDefects(profile, { rate: 0.5, onFraction: 0, seed: 77, arrays: 2 });
    const r = await trainInSitu({ model: MODEL, device: profile, inputs: train.inputs, labels: train.labels, test, defects, epochs: 6, seed: 5 });
    const naive = await accuracyOf(writeArtifact(compile(MODEL, { device: profile, defects, remap: 'none' })), 5);
    expect(r.report.finalAccuracy!).toBeGreaterThan(0.55);
    expect(r.report.finalAccuracy!).toBeGreaterThan(naive);
    console.log(`50 % stuck OFF, 1,999 digits × 6 epochs: in situ ${r.report.finalAccuracy}, ex situ naive ${naive}`);
  });

  it('--init model programs the ONNX weights with program-and-verify, then tunes them', async () => {
    const r = await trainInSitu({ model: MODEL, device: 'hfo2-1t1r', inputs: train.inputs, labels: train.labels, test, epochs: 1, seed: 3, init: 'model', evalEvery: 100000 });
    expect(r.report.programVerify!.pulses).toBeGreaterThan(0);
    // before any update the chip already runs the trained network; the blind updates then keep it learning
    expect(r.report.curve[0]!.accuracy).toBeGreaterThan(0.85);
    expect(r.report.finalAccuracy!).toBeGreaterThan(0.85);
  });
});

describe('in-situ training on a board', () => {
  it('over TCP with a link that drops 1 % of frames: every update lands exactly once, and it learns as the simulator does', async () => {
    const emu = new BoardEmulator({ profile, arrays: 2, faultRate: 0, seed: 21, linkFaults: { drop: 0.01 } });
    const url = await emu.listen('tcp://127.0.0.1:0');
    try {
      const chip = await BoardTrainChip.connect(url, { timeoutMs: 200 });
      const board = await trainInSitu({ model: MODEL, device: profile, ...train, test, epochs: 4, seed: 21, chip, evalEvery: 100000 });
      await chip.close();
      const sim = await trainInSitu({ model: MODEL, device: profile, ...train, test, epochs: 4, seed: 21, evalEvery: 100000 });
      const link = await connectBoard(url);
      const status = (await link.status()) as unknown as Record<string, number>;
      await link.close();
      const sent = board.report.pulsesPerDevice.mean * board.report.pulsesPerDevice.devices;
      expect(Math.round(sent)).toBe(status['cellPulses']);
      expect(emu.stats().droppedIn + emu.stats().droppedOut).toBeGreaterThan(0);
      expect(board.report.finalAccuracy!).toBeGreaterThan(0.65);
      expect(Math.abs(board.report.finalAccuracy! - sim.report.finalAccuracy!)).toBeLessThan(0.08);
    } finally {
      await emu.close();
    }
  });

  it('over a link that drops and duplicates frames, with a driver that gives up at the first loss (new connections): every update lands exactly once', async () => {
    const emu = new BoardEmulator({ profile, arrays: 2, faultRate: 0, seed: 23, linkFaults: { drop: 0.06, duplicate: 0.1 } });
    const url = await emu.listen('tcp://127.0.0.1:0');
    try {
      // retries 0: every lost frame makes the driver give up, so the chip opens a new connection (new ids),
      // re-identifies the board, and resends the request; an update goes again under the id it first had.
      const chip = await BoardTrainChip.connect(url, { timeoutMs: 100, retries: 0, reconnects: 20 });
      const n = 400;
      const r = await trainInSitu({ model: MODEL, device: profile, inputs: train.inputs.subarray(0, n * 64), labels: train.labels.subarray(0, n), epochs: 1, seed: 23, chip });
      await chip.close();
      const link = await connectBoard(url, { timeoutMs: 100, retries: 20 });
      const status = (await link.status()) as unknown as Record<string, number>;
      await link.close();
      const sent = r.report.pulsesPerDevice.mean * r.report.pulsesPerDevice.devices;
      expect(Math.round(sent)).toBe(status['cellPulses']);
      const stats = emu.stats();
      expect(r.report.reconnects!).toBeGreaterThan(3);
      expect(stats.droppedIn + stats.droppedOut).toBeGreaterThan(3);
      expect(stats.duplicatedIn).toBeGreaterThan(0);
      expect(stats.duplicatedOut).toBeGreaterThan(0);
      // resends of updates the board had applied (duplicated frames, and resends after a lost reply) came from its cache
      expect(stats.duplicates).toBeGreaterThan(0);
      console.log(`drop 6 %, duplicate 10 %, driver retries 0: ${r.report.reconnects} new connections, ${stats.droppedIn + stats.droppedOut} frames dropped, ${stats.duplicatedIn + stats.duplicatedOut} duplicated, ${stats.duplicates} answered from the cache; ${status['cellPulses']} cell-pulses applied = sent`);
    } finally {
      await emu.close();
    }
  });

  it('a board that held a ready network is marked programming from before the first update until training marks it ready again', async () => {
    const emu = new BoardEmulator({ profile, arrays: 2, faultRate: 0, seed: 4 });
    const url = await emu.listen('tcp://127.0.0.1:0');
    try {
      const chip = await BoardTrainChip.connect(url);
      const n = 100;
      const data = { inputs: train.inputs.subarray(0, n * 64), labels: train.labels.subarray(0, n) };
      const first = await trainInSitu({ model: MODEL, device: profile, ...data, epochs: 1, seed: 4, chip });
      const id = artifactId(writeArtifact(first.artifact));
      await chip.markTrained(id);
      const status = async () => (await chip.boardLink.status()).deployment;
      expect(await status()).toEqual({ artifact: id, state: 'ready' });
      // A second run stops after one minibatch (the host dies): the board must not still claim the first network.
      const steps = trainInSituSteps({ model: MODEL, device: profile, ...data, epochs: 1, seed: 5, chip });
      expect((await steps.next()).value).toMatchObject({ kind: 'step' });
      await steps.return(undefined as never);
      expect(await status()).toEqual({ artifact: TRAINING_MARK, state: 'programming' });
      await chip.close();
    } finally {
      await emu.close();
    }
  });

  it('a board too small for the network is refused before any pulse', async () => {
    const emu = new BoardEmulator({ profile, arrays: 1, seed: 2 });
    const url = await emu.listen('tcp://127.0.0.1:0');
    try {
      const chip = await BoardTrainChip.connect(url);
      await expect(trainInSitu({ model: MODEL, device: profile, ...train, epochs: 1, chip })).rejects.toThrow(/needs 2 arrays of 128 × 64; the board at .* has 1/);
      await chip.close();
      expect(emu.trueConductances(0)).toEqual(new BoardEmulator({ profile, arrays: 1, seed: 2 }).trueConductances(0));
    } finally {
      await emu.close();
    }
  });

  it('a board without the training messages is refused with a message naming them', () => {
    const board = { url: 'tcp://old-board:1' } as Board;
    const id = { protocol: 1, firmware: 'old 1.0', features: { dendrites: false, soma: false } } as Parameters<typeof requireTrainingFeatures>[1];
    expect(() => requireTrainingFeatures(board, id)).toThrow(/does not support updateRows and readArrays/);
  });
});
