/**
 * In-situ training (Li et al., Nat. Commun. 9, 2385, 2018): the network learns on the chip that will run it.
 *
 * Per minibatch:
 *   1. inputs as voltages, the forward pass on the chip, layer by layer (the chip's own currents, DAC/ADC,
 *      read noise and, on the simulator, IR drop; activations in the periphery);
 *   2. the conductances read back, whole arrays at a time: W = (G+ − G−) / gPerWeight;
 *   3. backpropagation on the host from those weights and the activations measured on the chip
 *      (gradients.ts), and the optimizer's ΔW (optimizer.ts);
 *   4. ΔW mapped to gate voltages: Vg± ← clip(Vg± ± ΔW·gPerWeight / (2·slope)); the devices whose gate
 *      voltage falls are RESET, then SET with their new gate voltage, and those whose gate voltage rises are
 *      SET, row by row (one row-parallel update per row: its gate voltages and RESET mask). A device is pulsed
 *      once its gate voltage moved by `gateStep` (10 mV; 0 pulses every device on every step, as the paper's
 *      code), so devices the optimizer no longer moves stop collecting pulse noise; the learning rate falls
 *      linearly to lrEnd·lr. Nothing is verified and nothing knows which devices are stuck: the host keeps its
 *      gate-voltage matrix as its state, as in the paper.
 * Biases live in the digital periphery and are trained there.
 *
 * `init: 'random'` starts from a full RESET of every device and a SET at Vg0 = 1.0 V (W ≈ 0);
 * `init: 'model'` programs the ONNX weights with program-and-verify (deploy), then tunes them in situ.
 */
import { importModel, resolveProfile } from '../../compiler/index.js';
import type { PlacedModel } from '../../compiler/ir/placed.js';
import { faultGrid, generateDefects, type DefectMap } from '../../common/defects.js';
import { InputError } from '../../common/errors.js';
import type { DeviceProfile } from '../../common/profile.js';
import { Random } from '../../common/random.js';
import { writeArtifact } from '../../artifact/write.js';
import { deploy } from '../backends/device/deploy.js';
import { pulseModelOf } from '../pulse-chip.js';
import { SimTrainChip, type TrainChip } from './chip.js';
import { hostGradients } from './gradients.js';
import { deviceIndex, gateFor, INITIAL_GATE, inSituLayout, weightsFrom, type InitMode } from './layout.js';
import { DEFAULT_LR, HostOptimizer, OPTIMIZERS, type OptimizerKind } from './optimizer.js';

export interface InSituOptions {
  /** The ONNX model: its architecture (and its weights for init 'model'). */
  model: string | Uint8Array;
  /** A shipped profile name, a profile JSON path or a profile object; it needs a pulse model. */
  device: string | DeviceProfile;
  /** Training samples [n × features] and labels [n]. */
  inputs: Float32Array;
  labels: ArrayLike<number>;
  /** Test samples: accuracy on them every `evalEvery` training samples (and at the end). */
  test?: { inputs: Float32Array; labels: ArrayLike<number> };
  /** Simulator: the chip's stuck devices (hidden from training). Default: none. */
  defects?: DefectMap;
  /** Train on this chip instead of the simulator (a board, board-chip.ts). */
  chip?: TrainChip;
  init?: InitMode;
  optimizer?: OptimizerKind;
  lr?: number;
  batch?: number;
  epochs?: number;
  seed?: number;
  /** Training samples between two test evaluations (default: 2000). */
  evalEvery?: number;
  /** The learning rate falls linearly from lr to lrEnd·lr over the run (default 0.1; 1 = constant). */
  lrEnd?: number;
  /**
   * A device is pulsed once the gate voltage the optimizer wants for it has moved by at least this much (V)
   * since its last pulse (default 0.01 V, about 1 µS on hfo2-1t1r; 0 = every device on every step, as the paper).
   */
  gateStep?: number;
  /** Called after every minibatch and evaluation. */
  onProgress?: (event: TrainEvent) => void;
}

export type TrainEvent =
  | { kind: 'step'; epoch: number; samples: number; total: number; loss: number }
  | { kind: 'eval'; epoch: number; samples: number; accuracy: number };

export interface InSituReport {
  chip: 'sim' | 'board';
  device: string;
  init: InitMode;
  optimizer: OptimizerKind;
  lr: number;
  lrEnd: number;
  gateStep: number;
  batch: number;
  epochs: number;
  seed: number;
  trainSamples: number;
  testSamples: number;
  /** Test accuracy (0–1) after every evalEvery training samples: the paper's Fig. 3c curve. */
  curve: { samples: number; accuracy: number }[];
  /** Mean training loss per epoch. */
  loss: number[];
  finalAccuracy: number | null;
  /** Pulses the host sent, per device of the network (RESET and SET each count one). */
  pulsesPerDevice: { mean: number; median: number; max: number; devices: number };
  /** What the chip counted: pulses and cell-pulses (program-and-verify included), programming energy (J; null where not reported); cells read back by the host. */
  chipCounters: { pulses: number; cellPulses: number; reads: number; energyJ: number | null };
  /** Program-and-verify of the ONNX weights (init 'model'). */
  programVerify?: { pulses: number; rounds: number; failed: number };
  /** On a board: link re-establishments (the driver's reconnects and new connections), each re-identified. */
  reconnects?: number;
  wallSeconds: number;
}

export interface InSituResult {
  /** The trained network as the chip holds it (conductances read back at the end, biases). */
  artifact: PlacedModel;
  report: InSituReport;
}

/** A gate-voltage DAC step of 10 mV: about 1 µS of SET level on hfo2-1t1r, a quarter of the pulse noise. */
export const DEFAULT_GATE_STEP = 0.01;

/** Reset and SET amplitudes and the pulse width of training updates. */
function amplitudes(profile: DeviceProfile): { set: number; reset: number; width: number } {
  const p = pulseModelOf(profile);
  // memNN code: SET pulses at 2.5 V; a full RESET (the strongest the board takes), 10× the shortest width.
  return { set: Math.min(p.amplitude[1], Math.max(p.amplitude[0], 2.5)), reset: -p.amplitude[1], width: Math.min(p.width[1], p.width[0] * 10) };
}

function checkData(inputs: Float32Array, labels: ArrayLike<number>, features: number, classes: number, what: string): number {
  if (!(inputs instanceof Float32Array)) throw new InputError(`${what} inputs must be float32`);
  if (inputs.length % features !== 0) throw new InputError(`${what} inputs hold ${inputs.length} values, not a whole number of ${features}-feature samples`);
  const n = inputs.length / features;
  if (n === 0) throw new InputError(`${what} inputs are empty`);
  if (labels.length !== n) throw new InputError(`${what}: ${n} samples but ${labels.length} labels`);
  for (let i = 0; i < n; i++) {
    const l = labels[i]!;
    if (!(Number.isInteger(l) && l >= 0 && l < classes)) throw new InputError(`${what} label ${i} = ${l} is not a class index 0..${classes - 1}`);
  }
  for (let i = 0; i < inputs.length; i++) if (!Number.isFinite(inputs[i]!)) throw new InputError(`${what} input ${Math.floor(i / features)} holds a non-finite value`);
  return n;
}

/** Runs the whole network on the chip: per layer outputs (the last one: logits). */
async function forward(chip: TrainChip, placed: PlacedModel, x: Float32Array, batch: number): Promise<Float32Array[]> {
  const outs: Float32Array[] = [];
  let h = x;
  for (let li = 0; li < placed.layers.length; li++) {
    h = await chip.forwardLayer(placed, li, h, batch);
    outs.push(h);
  }
  return outs;
}

function argmaxCorrect(logits: Float32Array, labels: ArrayLike<number>, offset: number, batch: number, classes: number): number {
  let correct = 0;
  for (let b = 0; b < batch; b++) {
    let best = 0;
    for (let c = 1; c < classes; c++) if (logits[b * classes + c]! > logits[b * classes + best]!) best = c;
    if (best === labels[offset + b]) correct++;
  }
  return correct;
}

/** Test accuracy on the chip, in chunks. */
export async function chipAccuracy(chip: TrainChip, placed: PlacedModel, inputs: Float32Array, labels: ArrayLike<number>, chunk = 1024): Promise<number> {
  const features = placed.layers[0]!.inFeatures;
  const classes = placed.layers[placed.layers.length - 1]!.outFeatures;
  const n = inputs.length / features;
  let correct = 0;
  for (let s = 0; s < n; s += chunk) {
    const b = Math.min(chunk, n - s);
    const outs = await forward(chip, placed, inputs.subarray(s * features, (s + b) * features), b);
    correct += argmaxCorrect(outs[outs.length - 1]!, labels, s, b, classes);
  }
  return correct / n;
}

/** In-situ training as an async iterator of progress events; its return value is the result. */
export async function* trainInSituSteps(options: InSituOptions): AsyncGenerator<TrainEvent, InSituResult> {
  const started = performance.now();
  const profile = resolveProfile(options.device);
  const pulse = pulseModelOf(profile);
  const init = options.init ?? 'random';
  if (init !== 'random' && init !== 'model') throw new InputError(`--init must be 'random' or 'model' (got '${String(init)}')`);
  const optimizerKind = options.optimizer ?? 'rmsprop';
  if (!OPTIMIZERS.includes(optimizerKind)) throw new InputError(`--optimizer must be one of ${OPTIMIZERS.join(', ')} (got '${String(optimizerKind)}')`);
  const lr = options.lr ?? DEFAULT_LR[optimizerKind];
  const batchSize = options.batch ?? 50;
  const epochs = options.epochs ?? 20;
  const seed = (options.seed ?? 0) >>> 0;
  const evalEvery = options.evalEvery ?? 2000;
  const lrEnd = options.lrEnd ?? 0.1;
  const minStep = options.gateStep ?? DEFAULT_GATE_STEP;
  if (!(lrEnd >= 0 && lrEnd <= 1)) throw new InputError(`the final learning-rate fraction must be from 0 to 1 (got ${lrEnd})`);
  if (!(minStep >= 0 && minStep < 1)) throw new InputError(`--gate-step must be a gate voltage step from 0 to 1 V (got ${minStep})`);
  if (!(lr > 0 && Number.isFinite(lr))) throw new InputError(`--lr must be a positive number (got ${lr})`);
  if (!(Number.isInteger(batchSize) && batchSize >= 1)) throw new InputError(`--batch must be a positive integer (got ${batchSize})`);
  if (!(Number.isInteger(epochs) && epochs >= 1)) throw new InputError(`--epochs must be a positive integer (got ${epochs})`);
  if (!(Number.isInteger(evalEvery) && evalEvery >= 1)) throw new InputError(`the evaluation interval must be a positive integer (got ${evalEvery})`);

  const layerModel = importModel(options.model);
  if (layerModel.head === 'logsoftmax') throw new InputError('in-situ training ends in softmax cross-entropy on the host; the model already ends in LogSoftmax — export the logits (or Softmax) instead');
  const placed = inSituLayout(layerModel, profile, init);
  const features = placed.layers[0]!.inFeatures;
  const classes = placed.layers[placed.layers.length - 1]!.outFeatures;
  const n = checkData(options.inputs, options.labels, features, classes, 'training');
  const test = options.test;
  const nTest = test ? checkData(test.inputs, test.labels, features, classes, 'test') : 0;

  const index = deviceIndex(placed);
  const rows = profile.array.rows!;
  const cols = profile.array.cols!;
  let chip: TrainChip;
  let simDefects: DefectMap | undefined;
  if (options.chip) {
    chip = options.chip;
  } else {
    const defects = options.defects ?? generateDefects(profile, { rate: 0, seed, arrays: placed.arrays.length });
    if (defects.device !== profile.name) throw new InputError(`the defect map describes a '${defects.device}' chip, but training is on '${profile.name}'`);
    if (defects.arrays.length < placed.arrays.length) throw new InputError(`the defect map has ${defects.arrays.length} arrays; the network needs ${placed.arrays.length}`);
    chip = new SimTrainChip(placed, defects, seed);
    simDefects = defects;
  }
  placed.arrays.forEach((a, i) => { a.chipArray = i; });
  const chipArrays = placed.arrays.map((a, i) => a.chipArray ?? i);
  const amp = amplitudes(profile);
  let cellsRead = 0;
  const readAll = async () => {
    cellsRead += chipArrays.length * rows * cols;
    return chip.readArrays(chipArrays, rows, cols);
  };
  if (chip.kind === 'board' && chip.device !== profile.name) throw new InputError(`training for '${profile.name}', but the board is a '${chip.device}' chip`);
  chip.checkFits(placed);

  // The host's state: every device's gate voltage (NaN: not a device of the network), per artifact array.
  const vg = placed.arrays.map((a) => new Float32Array(a.rows * a.cols).fill(NaN));
  const pulsesSent = placed.arrays.map((a) => new Uint32Array(a.rows * a.cols));
  const usedRows = index.arrays.map((a) => Int32Array.from(new Set([...a.cells].map((c) => Math.floor(c / cols)))).sort());
  let programVerify: InSituReport['programVerify'];

  /** Sends the gate voltages in `next` (RESETting the devices whose gate voltage falls) and makes them the state. */
  const apply = async (ai: number, next: Float32Array, resetAll: boolean, minStep: number) => {
    const rowList = usedRows[ai]!;
    const gates = new Float32Array(rowList.length * cols).fill(NaN);
    const mask = new Uint8Array(rowList.length * cols);
    const cur = vg[ai]!;
    const sent = pulsesSent[ai]!;
    rowList.forEach((row, r) => {
      for (let c = 0; c < cols; c++) {
        const cell = row * cols + c;
        const v = next[cell]!;
        if (Number.isNaN(v)) continue;
        if (!resetAll && Math.abs(v - cur[cell]!) < minStep) continue;
        gates[r * cols + c] = v;
        sent[cell]++;
        if (resetAll || !(v >= cur[cell]!)) {
          mask[r * cols + c] = 1;
          sent[cell]++;
        }
        cur[cell] = v;
      }
    });
    await chip.updateRows(chipArrays[ai]!, rowList, gates, mask, amp);
  };

  try {
    // A board: no longer what an earlier 'ready' mark says, from before the first pulse on.
    await chip.claim?.();
    if (init === 'random') {
      for (let ai = 0; ai < placed.arrays.length; ai++) {
        const next = new Float32Array(rows * cols).fill(NaN);
        for (const cell of index.arrays[ai]!.cells) next[cell] = INITIAL_GATE;
        await apply(ai, next, true, 0);
      }
    } else {
      const bytes = writeArtifact(placed);
      // On a board that restarts, deploy fails (restarts: 0): training's own watch holds the first boot id.
      const { report } = await deploy(bytes, async () => chip.board(), { force: true, restarts: 0 });
      programVerify = { pulses: report.pulses, rounds: report.rounds, failed: report.failed.length };
      // deploy marked the board ready with the untrained network: training changes it from here on.
      await chip.claim?.();
      const g = await readAll();
      index.arrays.forEach((a, ai) => {
        for (const cell of a.cells) vg[ai]![cell] = gateFor(profile, g[ai]![cell]!);
      });
    }

    // What the optimizer wants each gate voltage to be; a device is pulsed once its target moved by minStep.
    const target = vg.map((v) => Float32Array.from(v));
    const biases = placed.layers.map((l) => Float32Array.from(l.bias));
    const current = (): PlacedModel => ({ ...placed, layers: placed.layers.map((l, li) => ({ ...l, bias: biases[li]! })) });
    const opt = new HostOptimizer(optimizerKind, lr);
    const rng = new Random(seed ^ 0x7472616e);
    const order = Int32Array.from({ length: n }, (_, i) => i);
    const curve: InSituReport['curve'] = [];
    const losses: number[] = [];
    let samples = 0;
    let nextEval = evalEvery;
    const xb = new Float32Array(batchSize * features);
    const yb = new Int32Array(batchSize);

    if (test) {
      const accuracy = await chipAccuracy(chip, current(), test.inputs, test.labels);
      curve.push({ samples: 0, accuracy });
      yield { kind: 'eval', epoch: 0, samples: 0, accuracy };
    }
    for (let epoch = 1; epoch <= epochs; epoch++) {
      for (let i = n - 1; i > 0; i--) {
        const j = rng.int(i + 1);
        const t = order[i]!;
        order[i] = order[j]!;
        order[j] = t;
      }
      let lossSum = 0;
      let steps = 0;
      for (let s = 0; s < n; s += batchSize) {
        const b = Math.min(batchSize, n - s);
        for (let k = 0; k < b; k++) {
          const src = order[s + k]!;
          xb.set(options.inputs.subarray(src * features, (src + 1) * features), k * features);
          yb[k] = options.labels[src]!;
        }
        const x = xb.subarray(0, b * features);
        const y = yb.subarray(0, b);
        const net = current();
        const measured = await forward(chip, net, x, b);
        const g = await readAll();
        const weights = weightsFrom(placed, index, g);
        const grads = hostGradients({
          layers: placed.layers.map((l, li) => ({ inFeatures: l.inFeatures, outFeatures: l.outFeatures, weight: weights[li]!, bias: biases[li]!, activation: l.activation })),
          x,
          labels: y,
          batch: b,
          measured,
        });
        lossSum += grads.loss;
        steps++;
        // The learning rate falls linearly to lrEnd·lr over the run (lrEnd 1: constant).
        const stepLr = lr * (1 - (1 - lrEnd) * (samples / (n * epochs)));
        const dW = grads.weight.map((gw, li) => opt.delta(`w${li}`, gw, stepLr));
        grads.bias.forEach((gb, li) => {
          const d = opt.delta(`b${li}`, gb, stepLr);
          const bias = biases[li]!;
          for (let j = 0; j < bias.length; j++) bias[j] += d[j]!;
        });
        for (let ai = 0; ai < placed.arrays.length; ai++) {
          const a = index.arrays[ai]!;
          const next = target[ai]!;
          for (let d = 0; d < a.cells.length; d++) {
            const li = a.layer[d]!;
            const l = placed.layers[li]!;
            const wi = a.weight[d]!;
            const dv = (a.sign[d]! * dW[li]![wi]! * l.gPerWeight[wi % l.outFeatures]!) / (2 * pulse.slope);
            const cell = a.cells[d]!;
            next[cell] = Math.min(pulse.gate[1], Math.max(pulse.gate[0], next[cell]! + dv));
          }
          await apply(ai, next, false, minStep);
        }
        // A board that reset without dropping the link (a serial line) shows here, once per minibatch.
        await chip.checkpoint?.();
        samples += b;
        yield { kind: 'step', epoch, samples, total: n * epochs, loss: grads.loss };
        if (test && samples >= nextEval) {
          nextEval += evalEvery;
          const accuracy = await chipAccuracy(chip, current(), test.inputs, test.labels);
          curve.push({ samples, accuracy });
          yield { kind: 'eval', epoch, samples, accuracy };
        }
      }
      losses.push(lossSum / Math.max(1, steps));
    }
    let finalAccuracy: number | null = null;
    if (test) {
      if (curve[curve.length - 1]?.samples !== samples) {
        finalAccuracy = await chipAccuracy(chip, current(), test.inputs, test.labels);
        curve.push({ samples, accuracy: finalAccuracy });
        yield { kind: 'eval', epoch: epochs, samples, accuracy: finalAccuracy };
      } else {
        finalAccuracy = curve[curve.length - 1]!.accuracy;
      }
    }

    // The artifact: the network as the chip holds it (a final read of every array, re-identified after it:
    // a board that restarted before or during the read does not give its blank cells as the network).
    const final = await readAll();
    await chip.checkpoint?.();
    // On the simulator the chip's stuck cells are known (the map it was made from; training never used it):
    // the artifact records them, so the simulator runs them as stuck. A board's stay unknown.
    const stuckOf = (ai: number) => (simDefects ? faultGrid(simDefects.arrays[chipArrays[ai]!]!) : undefined);
    const artifact: PlacedModel = {
      ...current(),
      arrays: placed.arrays.map((a, ai) => {
        const g = Float32Array.from(final[ai]!, (v) => Math.max(0, v));
        const grid = stuckOf(ai);
        if (grid) for (let i = 0; i < g.length; i++) if (grid.state[i]) g[i] = grid.conductance[i]!;
        return { rows: a.rows, cols: a.cols, conductance: g, chipArray: chipArrays[ai]!, ...(grid && grid.count > 0 ? { stuck: grid.state } : {}) };
      }),
      ...(simDefects
        ? {
            chip: {
              device: profile.name,
              arrays: simDefects.arrays.length,
              faults: simDefects.arrays.reduce((n, a) => n + a.faults.length, 0),
              remap: 'none' as const,
              calibrated: false,
              origin: { ...(simDefects.origin ?? {}), trained: 'in-situ', init, seed, note: 'conductances read back from the simulated chip after in-situ training, which never saw its stuck cells' },
            },
          }
        : {}),
    };
    const perDevice: number[] = [];
    index.arrays.forEach((a, ai) => {
      for (const cell of a.cells) perDevice.push(pulsesSent[ai]![cell]!);
    });
    perDevice.sort((p, q) => p - q);
    const counters = await chip.counters();
    const report: InSituReport = {
      chip: chip.kind,
      device: profile.name,
      init,
      optimizer: optimizerKind,
      lr,
      lrEnd,
      gateStep: minStep,
      batch: batchSize,
      epochs,
      seed,
      trainSamples: n,
      testSamples: nTest,
      curve,
      loss: losses,
      finalAccuracy,
      pulsesPerDevice: {
        mean: perDevice.reduce((s, p) => s + p, 0) / Math.max(1, perDevice.length),
        median: perDevice[Math.floor(perDevice.length / 2)] ?? 0,
        max: perDevice[perDevice.length - 1] ?? 0,
        devices: perDevice.length,
      },
      chipCounters: { pulses: counters.pulses, cellPulses: counters.cellPulses, reads: cellsRead, energyJ: counters.energy },
      ...(programVerify ? { programVerify } : {}),
      ...(chip.reconnects !== undefined ? { reconnects: chip.reconnects } : {}),
      wallSeconds: (performance.now() - started) / 1000,
    };
    return { artifact, report };
  } finally {
    if (!options.chip) await chip.close();
  }
}

/** In-situ training with an optional progress callback (options.onProgress). */
export async function trainInSitu(options: InSituOptions): Promise<InSituResult> {
  const it = trainInSituSteps(options);
  for (;;) {
    const r = await it.next();
    if (r.done) return r.value;
    options.onProgress?.(r.value);
  }
}
