/**
 * Dendritic layers from ONNX (docs/dendritic-onnx.md): graphs built node by node as torch.onnx.export writes
 * models/pytorch/dendritic.py's DendriticLinear, imported into the Layer IR, and checked three ways on random
 * inputs: the imported layers run with common/dendrite.ts, the module's math computed here by hand, and ONNX
 * Runtime on the same bytes; then compiled for an ideal crossbar with the trained dendrite device and run on the
 * native simulator. Then every refusal of the pattern.
 */
import { describe, expect, it } from 'vitest';
import type { onnx as OnnxTypes } from 'onnx-proto';
import { compileWithReport, importModel, resolveProfile } from '../../compiler/index.js';
import { writeArtifact } from '../../artifact/write.js';
import { InferenceSession, Tensor } from '../../runtime/index.js';
import { dendriteTransfer, somaOutput, type DendriteDevice } from '../../common/dendrite.js';
import { ModelError } from '../../common/errors.js';
import type { DenseLayer } from '../../compiler/ir/layers.js';
import { model, randomValues, tensor, type NodeSpec } from '../helpers/onnx-builder.js';
import { runOrt } from '../helpers/ort.js';

/** DendriticLinear's arguments (models/pytorch/dendritic.py). */
interface Dendrite {
  kind: 'exponential' | 'threshold-linear';
  nonlinearity: number;
  onOffRatio: number;
  ratio: number;
  threshold: number;
  rectify: boolean;
  fullScale: number;
  soma: 'relu' | 'threshold' | 'none';
  theta: number;
  somaScale: number;
}

interface Layer extends Dendrite {
  inF: number;
  out: number;
  branchOf: number[];
  /** [in][out] */
  weight: Float32Array;
  bias: Float32Array;
}

/** How the exporter writes the graph around the same math. */
interface Style {
  opset: number;
  /** Scalars as Constant nodes (TorchScript exporter) or initializers (constant-folded / dynamo). */
  scalars: 'nodes' | 'initializers';
  /** The Reshape's target as a constant, or as Shape → Gather → Unsqueeze → Concat on the MatMul's output. */
  reshape: 'constant' | 'shape';
  /** torch.clamp(v, max=1) as Clip (opset ≥ 11) or torch.minimum(v, 1) as Min. */
  clamp: 'clip' | 'min';
}

const DEFAULT_STYLE: Style = { opset: 17, scalars: 'nodes', reshape: 'constant', clamp: 'clip' };

function layerOf(d: Partial<Dendrite> & { inF: number; out: number; branchOf: number[] }, seed: number): Layer {
  return {
    kind: 'exponential', nonlinearity: 0.1, onOffRatio: 100, ratio: 1, threshold: 0.5, rectify: false,
    fullScale: 1.5, soma: 'relu', theta: 0.1, somaScale: 1,
    weight: randomValues(d.inF * d.out, seed), bias: randomValues(d.out, seed + 1, 0.5),
    ...d,
  };
}

const contiguous = (n: number, count: number) => Array.from({ length: n }, (_, i) => Math.floor((i * count) / n));
const branchesOf = (l: Layer) => Math.max(...l.branchOf) + 1;

/** Wb [in, B·out]: row i holds weight[i] in the columns of its branch (the module's one_hot ⊙ weight). */
function blockWeight(l: Layer): Float32Array {
  const B = branchesOf(l);
  const wb = new Float32Array(l.inF * B * l.out);
  for (let i = 0; i < l.inF; i++) for (let j = 0; j < l.out; j++) wb[i * B * l.out + l.branchOf[i]! * l.out + j] = l.weight[i * l.out + j]!;
  return wb;
}

interface Built {
  nodes: NodeSpec[];
  initializers: OnnxTypes.ITensorProto[];
  output: string;
}

/**
 * The nodes torch.onnx.export writes for DendriticLinear.forward (frozen for export: the block matrix is one
 * initializer), named as the TorchScript exporter names them. `output` names the layer's last value.
 */
function dendriticLayer(p: string, x: string, l: Layer, style: Style, output: string, wb = blockWeight(l)): Built {
  const B = branchesOf(l);
  const nodes: NodeSpec[] = [];
  const initializers: OnnxTypes.ITensorProto[] = [tensor(`${p}.block`, [l.inF, B * l.out], wb), tensor(`${p}.bias`, [l.out], l.bias)];
  let k = 0;
  const scalar = (v: number): string => {
    const name = `/${p}/Constant_${k}_output_0`;
    if (style.scalars === 'nodes') nodes.push({ op: 'Constant', name: `/${p}/Constant_${k}`, inputs: [], outputs: [name], attrs: { value: tensor('', [], [v]) } });
    else initializers.push(tensor(name, [], [v]));
    k++;
    return name;
  };
  let n = 0;
  const op = (type: string, inputs: string[], attrs?: NodeSpec['attrs'], out?: string): string => {
    const name = `/${p}/${type}${n ? `_${n}` : ''}`;
    n++;
    const o = out ?? `${name}_output_0`;
    nodes.push({ op: type, name, inputs, outputs: [o], ...(attrs ? { attrs } : {}) });
    return o;
  };
  const mm = op('MatMul', [x, `${p}.block`]);
  let shape: string;
  if (style.reshape === 'constant') {
    shape = `/${p}/Constant_shape_output_0`;
    nodes.push({ op: 'Constant', name: `/${p}/Constant_shape`, inputs: [], outputs: [shape], attrs: { value: tensor('', [3], [-1, B, l.out], 'int64') } });
  } else {
    initializers.push(tensor(`/${p}/zero`, [], [0], 'int64'), tensor(`/${p}/rest`, [2], [B, l.out], 'int64'));
    const s = op('Shape', [mm]);
    const g = op('Gather', [s, `/${p}/zero`], { axis: 0 });
    const u = style.opset >= 13 ? (initializers.push(tensor(`/${p}/axes0`, [1], [0], 'int64')), op('Unsqueeze', [g, `/${p}/axes0`])) : op('Unsqueeze', [g], { axes: [0] });
    shape = op('Concat', [u, `/${p}/rest`], { axis: 0 });
  }
  const r = op('Reshape', [mm, shape]);
  // dendrite(z): u = z / F; sign·i(a|u|)/a·F
  const u = op('Div', [r, scalar(l.fullScale)]);
  let m: string;
  let sign: string | undefined;
  if (l.rectify) {
    m = op('Relu', [u]);
  } else {
    sign = op('Sign', [u]);
    m = op('Abs', [u]);
  }
  const v = op('Mul', [m, scalar(l.ratio)]);
  let i: string;
  if (l.kind === 'exponential') {
    const alpha = (50 * l.nonlinearity) / (1 - l.nonlinearity);
    const vc = style.clamp === 'min' ? op('Min', [v, scalar(1)]) : style.opset < 11 ? op('Clip', [v], { max: 1.5 - 0.5 }) : op('Clip', [v, '', scalar(1)]);
    const t = op('Mul', [op('Sub', [vc, scalar(1)]), scalar(alpha)]);
    const e = op('Exp', [t]);
    const below = op('Less', [v, scalar(1)]);
    const lin = op('Div', [v, scalar(l.onOffRatio)]);
    const ex = op('Mul', [op('Sub', [e, scalar(Math.exp(-alpha))]), scalar((1 - 1 / l.onOffRatio) / (1 - Math.exp(-alpha)))]);
    i = op('Where', [below, op('Add', [lin, ex]), v]);
  } else {
    const on = style.opset >= 12 ? op('GreaterOrEqual', [v, scalar(l.threshold)]) : op('Not', [op('Less', [v, scalar(l.threshold)])]);
    i = op('Where', [on, v, op('Div', [v, scalar(l.onOffRatio)])]);
  }
  let h = op('Div', [i, scalar(l.ratio)]);
  if (sign) h = op('Mul', [h, sign]);
  const y = op('Mul', [h, scalar(l.fullScale)]);
  const sum = style.opset >= 13
    ? (initializers.push(tensor(`/${p}/axes1`, [1], [1], 'int64')), op('ReduceSum', [y, `/${p}/axes1`], { keepdims: 0 }))
    : op('ReduceSum', [y], { axes: [1], keepdims: 0 });
  const last = (type: string, inputs: string[], attrs?: NodeSpec['attrs'], final = false) => op(type, inputs, attrs, final ? output : undefined);
  if (l.soma === 'none') {
    last('Add', [sum, `${p}.bias`], undefined, true);
  } else if (l.soma === 'relu') {
    last('Relu', [last('Add', [sum, `${p}.bias`])], undefined, true);
  } else {
    const xb = last('Add', [sum, `${p}.bias`]);
    const s = op('Sigmoid', [op('Sub', [op('Div', [xb, scalar(l.somaScale)]), scalar(l.theta)])]);
    const t = op('Relu', [op('Sub', [op('Mul', [s, scalar(2)]), scalar(1)])]);
    last('Mul', [t, scalar(l.somaScale)], undefined, true);
  }
  return { nodes, initializers, output };
}

function oneLayerModel(l: Layer, style: Style = DEFAULT_STYLE, wb?: Float32Array) {
  const built = dendriticLayer('l1', 'x', l, style, 'y', wb);
  return { bytes: model({ opset: style.opset, input: { dims: ['batch', l.inF] }, nodes: built.nodes, initializers: built.initializers }), built };
}

/** The module's forward, written out from its formula (float64): x [N, in] → [N, out]. */
function moduleForward(l: Layer, x: Float64Array, N: number, regimes?: { off: number; on: number }): Float64Array {
  const B = branchesOf(l);
  const wb = blockWeight(l);
  const alpha = (50 * l.nonlinearity) / (1 - l.nonlinearity);
  const out = new Float64Array(N * l.out);
  for (let s = 0; s < N; s++) {
    for (let j = 0; j < l.out; j++) {
      let sum = 0;
      for (let b = 0; b < B; b++) {
        let z = 0;
        for (let i = 0; i < l.inF; i++) z += x[s * l.inF + i]! * wb[i * B * l.out + b * l.out + j]!;
        const u = z / l.fullScale;
        const v = l.ratio * (l.rectify ? Math.max(u, 0) : Math.abs(u));
        if (regimes && v > 0) regimes[v >= (l.kind === 'exponential' ? 1 : l.threshold) ? 'on' : 'off']++;
        const cur = l.kind === 'exponential'
          ? (v < 1 ? v / l.onOffRatio + (1 - 1 / l.onOffRatio) * (Math.exp(alpha * v) - 1) / (Math.exp(alpha) - 1) : v)
          : (v >= l.threshold ? v : v / l.onOffRatio);
        sum += l.fullScale * (l.rectify ? 1 : Math.sign(u)) * (cur / l.ratio);
      }
      const xj = sum + l.bias[j]!;
      out[s * l.out + j] = l.soma === 'relu' ? Math.max(xj, 0)
        : l.soma === 'none' ? xj
        : l.somaScale * Math.max(2 / (1 + Math.exp(-(xj / l.somaScale - l.theta))) - 1, 0);
    }
  }
  return out;
}

/** The imported layers run with common/dendrite.ts (float64, each layer on the device it was trained with). */
function importedForward(layers: DenseLayer[], x: Float64Array, N: number): Float64Array {
  let cur = x;
  for (const layer of layers) {
    const { inFeatures: n, outFeatures: m } = layer;
    const next = new Float64Array(N * m);
    const d = layer.dendrites;
    const t = d?.trained;
    const device: DendriteDevice | undefined = t && {
      kind: t.kind, nonlinearity: t.nonlinearity, onOffRatio: t.onOffRatio, voltage: t.ratio, onVoltage: 1,
      threshold: t.threshold, rectify: t.rectify, variation: 0, onCurrent: 1, time: 1,
    };
    for (let s = 0; s < N; s++) {
      for (let j = 0; j < m; j++) {
        let xj: number;
        if (d && device) {
          const z = new Float64Array(d.count);
          for (let i = 0; i < n; i++) z[d.branchOf[i]!]! += cur[s * n + i]! * layer.weight[i * m + j]!;
          xj = d.biasScale * layer.bias[j]!;
          for (const zb of z) xj += d.fullScale * dendriteTransfer(device, zb / d.fullScale);
          next[s * m + j] = somaOutput(d.soma, layer.activation, xj);
        } else {
          xj = layer.bias[j]!;
          for (let i = 0; i < n; i++) xj += cur[s * n + i]! * layer.weight[i * m + j]!;
          next[s * m + j] = somaOutput({ kind: 'activation' }, layer.activation, xj);
        }
      }
    }
    cur = next;
  }
  return cur;
}

function maxRelDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let diff = 0;
  let peak = 0;
  for (let k = 0; k < a.length; k++) {
    diff = Math.max(diff, Math.abs(a[k]! - b[k]!));
    peak = Math.max(peak, Math.abs(b[k]!));
  }
  return diff / peak;
}

const N = 64;
const f32 = (v: number) => Math.fround(v);

interface Case { name: string; layer: Layer; style: Style; trained: { kind: string; nonlinearity: number; onOffRatio: number; ratio: number; threshold: number } }

const CASES: Case[] = [
  {
    name: 'exponential n = 0.1, R = 100, both polarities, ReLU soma, opset 17 (TorchScript: Constant nodes, Clip)',
    layer: layerOf({ inF: 12, out: 5, branchOf: contiguous(12, 3), fullScale: 0.75 }, 11),
    style: DEFAULT_STYLE,
    trained: { kind: 'exponential', nonlinearity: 0.1, onOffRatio: 100, ratio: 1, threshold: 1 },
  },
  {
    name: 'threshold-linear R = 10 at 0.375, rectifying, threshold soma (θ 0.125, scale 2.5), opset 13, scalar initializers',
    layer: layerOf({ inF: 10, out: 4, branchOf: [0, 1, 0, 1, 2, 2, 1, 0, 2, 1], kind: 'threshold-linear', onOffRatio: 10, threshold: 0.375, rectify: true, soma: 'threshold', theta: 0.125, somaScale: 2.5, fullScale: 1.25 }, 21),
    style: { opset: 13, scalars: 'initializers', reshape: 'constant', clamp: 'clip' },
    trained: { kind: 'threshold-linear', nonlinearity: 0, onOffRatio: 10, ratio: 1, threshold: 0.375 },
  },
  {
    name: 'threshold-linear at a = 0.5 (only threshold/a = 0.75 is seen), no soma, reshape target from Shape arithmetic, opset 17',
    layer: layerOf({ inF: 8, out: 6, branchOf: contiguous(8, 4), kind: 'threshold-linear', onOffRatio: 20, threshold: 0.375, ratio: 0.5, soma: 'none', fullScale: 1 }, 31),
    style: { opset: 17, scalars: 'nodes', reshape: 'shape', clamp: 'clip' },
    trained: { kind: 'threshold-linear', nonlinearity: 0, onOffRatio: 20, ratio: 1, threshold: 0.75 },
  },
  {
    name: 'exponential n = 0.3, R = 10, a = 2, rectifying, threshold soma, torch.minimum, opset 13',
    layer: layerOf({ inF: 9, out: 3, branchOf: contiguous(9, 3), nonlinearity: 0.3, onOffRatio: 10, ratio: 2, rectify: true, soma: 'threshold', theta: 0.0625, somaScale: 1, fullScale: 2 }, 41),
    style: { opset: 13, scalars: 'nodes', reshape: 'constant', clamp: 'min' },
    trained: { kind: 'exponential', nonlinearity: 0.3, onOffRatio: 10, ratio: 2, threshold: 1 },
  },
  {
    name: 'threshold-linear, both polarities, ReLU soma, opset 11 (Not(Less), ReduceSum axes attribute)',
    layer: layerOf({ inF: 6, out: 4, branchOf: [1, 1, 0, 0, 1, 0], kind: 'threshold-linear', onOffRatio: 100, threshold: 0.5, soma: 'relu', fullScale: 1.5 }, 51),
    style: { opset: 11, scalars: 'nodes', reshape: 'constant', clamp: 'clip' },
    trained: { kind: 'threshold-linear', nonlinearity: 0, onOffRatio: 100, ratio: 1, threshold: 0.5 },
  },
  {
    name: "the paper's exponential (n = 0.1, rectifying) with a threshold soma (θ = 0.1), opset 11 Shape arithmetic",
    layer: layerOf({ inF: 16, out: 4, branchOf: contiguous(16, 4), rectify: true, soma: 'threshold', theta: 0.1, somaScale: 1, fullScale: 0.625 }, 61),
    style: { opset: 11, scalars: 'initializers', reshape: 'shape', clamp: 'clip' },
    trained: { kind: 'exponential', nonlinearity: 0.1, onOffRatio: 100, ratio: 1, threshold: 1 },
  },
];

describe('dendritic layers imported from ONNX', () => {
  for (const c of CASES) {
    it(c.name, async () => {
      const l = c.layer;
      const { bytes } = oneLayerModel(l, c.style);
      const m = importModel(bytes);
      expect(m.layers).toHaveLength(1);
      const layer = m.layers[0]!;
      expect(layer.inFeatures).toBe(l.inF);
      expect(layer.outFeatures).toBe(l.out);
      expect(Array.from(layer.weight)).toEqual(Array.from(l.weight));
      expect(Array.from(layer.bias)).toEqual(Array.from(l.bias));
      expect(layer.activation).toEqual(l.soma === 'relu' ? { kind: 'relu' } : { kind: 'none' });
      const d = layer.dendrites!;
      expect(d.count).toBe(branchesOf(l));
      expect(Array.from(d.branchOf)).toEqual(l.branchOf);
      expect(d.fullScale).toBe(f32(l.fullScale));
      expect(d).toMatchObject({ biasScale: 1, strategy: 'onnx', calibrated: true });
      if (l.soma === 'threshold') {
        expect(d.soma.kind).toBe('threshold');
        const s = d.soma as { theta: number; scale: number };
        expect(s.scale).toBeCloseTo(l.somaScale, 6);
        expect(s.theta).toBeCloseTo(l.theta, 6);
      } else {
        expect(d.soma).toEqual({ kind: 'activation' });
      }
      const t = d.trained!;
      expect(t.kind).toBe(c.trained.kind);
      expect(t.rectify).toBe(l.rectify);
      for (const key of ['nonlinearity', 'onOffRatio', 'ratio', 'threshold'] as const) {
        expect(Math.abs(t[key] - c.trained[key]), `${key}: ${t[key]}`).toBeLessThanOrEqual(1e-6 * Math.max(1, c.trained[key]));
      }

      const x32 = randomValues(N * l.inF, 7, 1);
      const x = Float64Array.from(x32);
      const regimes = { off: 0, on: 0 };
      const hand = moduleForward(l, x, N, regimes);
      // Both regimes of the device are exercised: many branch signals are weak, many reach the ON state.
      expect(Math.min(regimes.off, regimes.on)).toBeGreaterThan(0.1 * (regimes.off + regimes.on));
      const imported = importedForward(m.layers, x, N);
      expect(maxRelDiff(imported, hand)).toBeLessThan(1e-5);
      const ort = await runOrt(bytes, 'x', x32, [N, l.inF]);
      expect(maxRelDiff(ort, hand)).toBeLessThan(1e-4);
    });
  }

  it('compiled for an ideal crossbar with the trained dendrite device, the simulator reproduces the module', async () => {
    const ideal = resolveProfile('ideal');
    const taox = resolveProfile('taox-dendrite');
    for (const c of CASES) {
      const l = c.layer;
      const { bytes } = oneLayerModel(l, c.style);
      const t = importModel(bytes).layers[0]!.dendrites!.trained!;
      const device: DendriteDevice = {
        ...taox.dendrite!, maxVoltage: undefined, variation: 0, kind: t.kind, nonlinearity: t.nonlinearity, onOffRatio: t.onOffRatio,
        voltage: t.ratio * taox.dendrite!.onVoltage, threshold: t.threshold, rectify: t.rectify,
      };
      const { artifact, report } = compileWithReport(bytes, { device: { ...ideal, name: 'ideal-dendrites', dendrite: device, soma: taox.soma } });
      expect(report.warnings, c.name).toEqual([]);
      const s = await InferenceSession.create(writeArtifact(artifact));
      const x32 = randomValues(N * l.inF, 7, 1);
      const out = await s.run({ [s.inputNames[0]!]: new Tensor('float32', x32, [N, l.inF]) });
      await s.release();
      expect(maxRelDiff(out[s.outputNames[0]!]!.data, moduleForward(l, Float64Array.from(x32), N)), c.name).toBeLessThan(1e-5);
    }
  });

  it('the dendrite matters: the same weights without dendrites give other outputs', () => {
    const l = CASES[0]!.layer;
    const imported = importModel(oneLayerModel(l).bytes);
    const x = Float64Array.from(randomValues(N * l.inF, 7, 1));
    const plain: DenseLayer[] = imported.layers.map(({ dendrites: _d, ...rest }) => rest);
    expect(maxRelDiff(importedForward(plain, x, N), importedForward(imported.layers, x, N))).toBeGreaterThan(0.05);
  });

  it('a two-layer network (Flatten, spatial branches with a threshold soma, then contiguous ones) with a LogSoftmax head', async () => {
    // Input [N, 3, 2, 4]: branches colour × 2 column strips as branches_spatial(3, 2, 4, 6) gives them.
    const spatial = Array.from({ length: 24 }, (_, k) => {
      const ch = Math.floor(k / 8);
      const col = k % 4;
      return ch * 2 + (col < 2 ? 0 : 1);
    });
    const l1 = layerOf({ inF: 24, out: 6, branchOf: spatial, soma: 'threshold', theta: 0.1, somaScale: 1, fullScale: 1 }, 71);
    const l2 = layerOf({ inF: 6, out: 3, branchOf: contiguous(6, 2), soma: 'none', fullScale: 0.5, nonlinearity: 0.2, onOffRatio: 50 }, 81);
    const a = dendriticLayer('hidden', '/Flatten_output_0', l1, DEFAULT_STYLE, 'h');
    const b = dendriticLayer('out', 'h', l2, DEFAULT_STYLE, 'logits');
    const bytes = model({
      opset: 17,
      input: { dims: ['batch', 3, 2, 4] },
      nodes: [
        { op: 'Flatten', name: '/Flatten', inputs: ['x'], outputs: ['/Flatten_output_0'], attrs: { axis: 1 } },
        ...a.nodes, ...b.nodes,
        { op: 'LogSoftmax', name: '/LogSoftmax', inputs: ['logits'], outputs: ['y'], attrs: { axis: 1 } },
      ],
      initializers: [...a.initializers, ...b.initializers],
    });
    const m = importModel(bytes);
    expect(m.head).toBe('logsoftmax');
    expect(m.layers.map((k) => [k.inFeatures, k.outFeatures, k.dendrites?.count, k.dendrites?.soma.kind])).toEqual([[24, 6, 6, 'threshold'], [6, 3, 2, 'activation']]);
    expect(m.layers[1]!.dendrites!.trained).toMatchObject({ kind: 'exponential', nonlinearity: 0.2, onOffRatio: 50, ratio: 1 });

    const x32 = randomValues(N * 24, 5, 1);
    const x = Float64Array.from(x32);
    const hand = moduleForward(l2, moduleForward(l1, x, N), N);
    const logits = importedForward(m.layers, x, N);
    expect(maxRelDiff(logits, hand)).toBeLessThan(1e-5);
    const logSoftmax = hand.map((v, k) => {
      const row = hand.subarray(Math.floor(k / 3) * 3, Math.floor(k / 3) * 3 + 3);
      const mx = Math.max(...row);
      return v - mx - Math.log(row.reduce((acc, r) => acc + Math.exp(r - mx), 0));
    });
    expect(maxRelDiff(await runOrt(bytes, 'x', x32, [N, 3, 2, 4]), logSoftmax)).toBeLessThan(1e-4);
  });

  it('an input whose row is all zero goes to branch 0', () => {
    const l = layerOf({ inF: 6, out: 2, branchOf: [1, 1, 1, 0, 0, 1] }, 91);
    l.weight.fill(0, 2 * 2, 3 * 2); // row 2 (branch 1) all zero
    const layer = importModel(oneLayerModel(l).bytes).layers[0]!;
    expect(Array.from(layer.dendrites!.branchOf)).toEqual([1, 1, 0, 0, 0, 1]);
  });
});

describe('dendritic patterns dendra refuses', () => {
  const base = () => layerOf({ inF: 12, out: 5, branchOf: contiguous(12, 3) }, 11);

  function refused(bytes: Uint8Array, pattern: RegExp, node?: string) {
    let err: unknown;
    try {
      importModel(bytes);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ModelError);
    expect((err as Error).message).toMatch(pattern);
    expect((err as Error).message).not.toContain('\n');
    if (node) expect((err as ModelError).where.node).toBe(node);
    return err as ModelError;
  }

  /** The one-layer model with its nodes edited. */
  function edited(edit: (b: Built) => void, l = base(), style: Style = DEFAULT_STYLE, wb?: Float32Array): Uint8Array {
    const built = dendriticLayer('l1', 'x', l, style, 'y', wb);
    edit(built);
    return model({ opset: style.opset, input: { dims: ['batch', l.inF] }, nodes: built.nodes, initializers: built.initializers });
  }
  const nodeNamed = (b: Built, name: string) => b.nodes.find((n) => n.name === name)!;

  it('an input row nonzero in two branch blocks names the initializer and the row', () => {
    const l = base();
    const wb = blockWeight(l);
    wb[3 * 15 + 2 * 5 + 1] = 0.25; // row 3 is in branch 0 (columns 0–4); put something in branch 2 too
    const err = refused(oneLayerModel(l, DEFAULT_STYLE, wb).bytes, /row 3 of weight 'l1\.block' \(MatMul '\/l1\/MatMul'\) is nonzero in column blocks 0 and 2 \(columns 0–4 and 10–14\)/, '/l1/MatMul');
    expect(err.where.tensor).toBe('l1.block');
  });

  it('an op dendra cannot evaluate in the dendrite function', () => {
    refused(edited((b) => { nodeNamed(b, '/l1/Exp_9').op = 'Sin'; }), /node '\/l1\/Exp_9' \(Sin\) in the dendrite function of MatMul '\/l1\/MatMul': dendra evaluates only Div, Mul/, '/l1/Exp_9');
  });

  it('a dendrite function that matches no device (a perturbed constant, a tanh)', () => {
    // The exponential's amplitude 30 % too large.
    refused(edited((b) => {
      const mul = nodeNamed(b, '/l1/Mul_13');
      const k = b.nodes.find((n) => n.outputs[0] === mul.inputs[1])!;
      const t = k.attrs!['value'] as OnnxTypes.ITensorProto;
      k.attrs!['value'] = tensor('', [], [new Float32Array(t.rawData!.slice().buffer)[0]! * 1.3]);
    }), /the dendrite function of MatMul '\/l1\/MatMul' \(Div '\/l1\/Div_2' … Mul '\/l1\/Mul_18'\) matches no dendrite device of common\/dendrite\.ts: the closest, .* is off by/, '/l1/Div_2');
    refused(edited((b) => { nodeNamed(b, '/l1/Exp_9').op = 'Tanh'; }), /matches no dendrite device/);
  });

  it('ReduceSum over the wrong axis, over every axis, or keeping the axis', () => {
    const axes = (v: number[]) => (b: Built) => { b.initializers = b.initializers.map((t) => (t.name === '/l1/axes1' ? tensor('/l1/axes1', [v.length], v, 'int64') : t)); };
    refused(edited(axes([2])), /ReduceSum '\/l1\/ReduceSum_19' after MatMul '\/l1\/MatMul' sums over axes \[2\]; a dendritic layer sums its \[batch, 3, 5\] branch outputs over axis 1/, '/l1/ReduceSum_19');
    refused(edited(axes([-1])), /sums over axes \[-1\]/);
    refused(edited((b) => { nodeNamed(b, '/l1/ReduceSum_19').inputs = ['/l1/Mul_18_output_0']; }), /sums over every axis/);
    refused(edited((b) => { nodeNamed(b, '/l1/ReduceSum_19').attrs = { keepdims: 1 }; }), /keepdims=1/);
    const opset11 = { ...DEFAULT_STYLE, opset: 11 };
    refused(edited((b) => { nodeNamed(b, '/l1/ReduceSum_19').attrs = { axes: [0], keepdims: 0 }; }, base(), opset11), /sums over axes \[0\]/);
  });

  it('a per-branch constant in the dendrite function', () => {
    refused(edited((b) => {
      b.initializers.push(tensor('perBranch', [3, 1], [1.5, 1.5, 2]));
      nodeNamed(b, '/l1/Div_2').inputs[1] = 'perBranch';
    }), /input 'perBranch' of node '\/l1\/Div_2' \(Div\) in the dendrite function of MatMul '\/l1\/MatMul' has shape \[3, 1\]; dendra takes scalar constants/);
  });

  it('a dendrite function that does not start by dividing by F', () => {
    refused(edited((b) => {
      // Drop the Div: the Reshape's output goes straight to Sign and Abs.
      b.nodes = b.nodes.filter((n) => n.name !== '/l1/Div_2');
      for (const n of b.nodes) n.inputs = n.inputs.map((i) => (i === '/l1/Div_2_output_0' ? '/l1/Reshape_1_output_0' : i));
    }), /must start by dividing the branch sums by the full scale F .* it starts with Sign '\/l1\/Sign_3' and Abs '\/l1\/Abs_4'/);
  });

  it('a Gemm that adds a bias to the branch columns', () => {
    refused(edited((b) => {
      const mm = nodeNamed(b, '/l1/MatMul');
      mm.op = 'Gemm';
      mm.inputs = ['x', 'l1.block', 'colBias'];
      b.initializers.push(tensor('colBias', [15], randomValues(15, 3)));
    }), /Gemm '\/l1\/MatMul' adds a bias to its 15 branch columns before the dendrites/);
  });

  it('a Reshape that is not [batch, branches, outputs]', () => {
    refused(edited((b) => {
      const k = nodeNamed(b, '/l1/Constant_shape');
      k.attrs!['value'] = tensor('', [3], [-1, 4, 4], 'int64');
    }), /Reshape '\/l1\/Reshape_1' to \[-1, 4, 4\] after MatMul '\/l1\/MatMul' \(15 columns\)/);
  });

  it('a BatchNormalization after a dendritic layer', () => {
    const l = base();
    l.soma = 'none';
    const n4 = (k: string, v: number) => tensor(k, [5], [v, v, v, v, v]);
    refused(edited((b) => {
      const add = b.nodes[b.nodes.length - 1]!;
      add.outputs = ['pre'];
      b.nodes.push({ op: 'BatchNormalization', name: 'bn', inputs: ['pre', 's', 'bb', 'mu', 'var'], outputs: ['y'] });
      b.initializers.push(n4('s', 2), n4('bb', 0.1), n4('mu', 0), n4('var', 1));
    }, l), /BatchNormalization 'bn' follows the dendritic layer MatMul '\/l1\/MatMul'/, 'bn');
  });

  it('a BatchNormalization before a dendritic layer', () => {
    const l = base();
    const v12 = (k: string, v: number) => tensor(k, [12], new Array(12).fill(v));
    const built = dendriticLayer('l1', 'bnOut', l, DEFAULT_STYLE, 'y');
    refused(model({
      opset: 17,
      input: { dims: ['batch', 8] },
      nodes: [
        { op: 'MatMul', name: 'mm0', inputs: ['x', 'W0'], outputs: ['h0'] },
        { op: 'Relu', name: 'relu0', inputs: ['h0'], outputs: ['r0'] },
        { op: 'BatchNormalization', name: 'bn0', inputs: ['r0', 's', 'bb', 'mu', 'var'], outputs: ['bnOut'] },
        ...built.nodes,
      ],
      initializers: [tensor('W0', [8, 12], randomValues(96, 5)), v12('s', 2), v12('bb', 0.1), v12('mu', 0), v12('var', 1), ...built.initializers],
    }), /BatchNormalization 'bn0' is followed by the dendritic layer MatMul '\/l1\/MatMul': its shift would act inside the branches/, 'bn0');
  });

  it('an activation after a threshold soma', () => {
    const l = base();
    l.soma = 'threshold';
    refused(edited((b) => {
      const last = b.nodes[b.nodes.length - 1]!;
      last.outputs = ['s'];
      b.nodes.push({ op: 'Tanh', name: 'tanh', inputs: ['s'], outputs: ['y'] });
    }, l), /Tanh 'tanh' follows the threshold soma of the dendritic layer0/, 'tanh');
  });

  it('a soma chain that is not the threshold soma', () => {
    const l = base();
    l.soma = 'threshold';
    refused(edited((b) => {
      // 2·σ(x − θ) − 1 without the Relu: negative outputs.
      const relu = b.nodes.find((n) => n.op === 'Relu' && n.name?.endsWith('_26'))!;
      for (const n of b.nodes) n.inputs = n.inputs.map((i) => (i === relu.outputs[0] ? relu.inputs[0]! : i));
      b.nodes = b.nodes.filter((n) => n !== relu);
    }, l), /the ops after the dendritic sum of MatMul '\/l1\/MatMul' \(Div '\/l1\/Div_21' … Mul '\/l1\/Mul_27'\) are not a soma dendra knows: it is not zero for large negative inputs/);
  });
});
