/**
 * Pass: Graph IR → LayerChain. Walks the MLP's single data path from the graph input to its output,
 * turning each node into a chain op (dense, bias, batchnorm, activation, head), dropping the ones that
 * do nothing on a crossbar (Identity, Dropout, Flatten and Reshape to [batch, features]), checking
 * that shapes chain and weights are finite. Anything else is refused with the node, its op and the list
 * of what is supported.
 */
import { ModelError } from '../../common/errors.js';
import type { Graph, GraphNode, GraphTensor } from '../ir/graph.js';
import type { Activation, ChainOp, LayerChain, Origin } from '../ir/layers.js';
import { evaluateShapeNode, type ShapeValue } from './shape-values.js';
import { lowerDendritic, type DendriticContext } from './lower-dendritic.js';

export const SUPPORTED_OPS = [
  'Gemm', 'MatMul', 'Add', 'Flatten', 'Reshape', 'Relu', 'LeakyRelu', 'Sigmoid', 'Tanh', 'Clip',
  'Softmax', 'LogSoftmax', 'BatchNormalization', 'Dropout', 'Identity', 'Constant',
] as const;

const ACTIVATION_OPS = new Set(['Relu', 'LeakyRelu', 'Sigmoid', 'Tanh', 'Clip']);

export function lower(graph: Graph): LayerChain {
  const file = graph.source.file;
  const fail = (msg: string, node?: GraphNode): never => {
    throw new ModelError(msg, { file, node: node?.name, op: node?.op });
  };
  const constants = new Map(graph.constants);

  if (graph.inputs.length !== 1) {
    fail(`the model has ${graph.inputs.length} inputs (${graph.inputs.map((v) => v.name).join(', ')}); dendra compiles MLPs with exactly one input`);
  }
  if (graph.outputs.length !== 1) {
    fail(`the model has ${graph.outputs.length} outputs; dendra compiles MLPs with exactly one output`);
  }
  const input = graph.inputs[0]!;
  const dtype = input.dtype;
  if (dtype !== 'float32' && dtype !== 'float16' && dtype !== 'float64') {
    fail(`input '${input.name}' has element type ${dtype ?? 'unknown'}; dendra takes float32, float16 or float64 inputs`);
  }
  const shape = input.shape;
  if (!shape || shape.length < 2) {
    fail(`input '${input.name}' has shape [${(shape ?? []).join(', ')}]; dendra needs [batch, features...]`);
  }
  const featureDims = shape!.slice(1);
  if (featureDims.some((d) => typeof d !== 'number' || d <= 0)) {
    fail(`input '${input.name}' has shape [${shape!.join(', ')}]: only the first (batch) dimension may be dynamic`);
  }
  const inputFeatures = (featureDims as number[]).reduce((a, b) => a * b, 1);

  let current = input.name;
  const batch: 'B' | number = typeof shape![0] === 'number' ? shape![0] : 'B';
  let dims: ShapeValue = [batch, ...(featureDims as number[])]; // dims of the current value, batch included
  let features = inputFeatures;
  const shapes = new Map<string, ShapeValue>(); // shape arithmetic evaluated at compile time
  const ops: ChainOp[] = [];
  // A MatMul/Gemm that opens the dendritic-layer pattern (docs/dendritic-onnx.md) takes the nodes up to its soma.
  const dendritic: DendriticContext = { graph, constants, shapes, batch, consumed: new Set() };
  const dense = (node: GraphNode, op: Extract<ChainOp, { kind: 'dense' }>): string => {
    const d = lowerDendritic(dendritic, node, op);
    ops.push(d?.op ?? op);
    features = (d?.op ?? op).outFeatures;
    dims = [batch, features];
    return d?.output ?? node.outputs[0] ?? '';
  };

  const constant = (name: string | undefined, node: GraphNode, role: string): GraphTensor => {
    const t = name ? constants.get(name) : undefined;
    if (!t) return fail(`node '${node.name}' (${node.op}): its ${role} '${name ?? ''}' must be a constant initializer`, node);
    for (let i = 0; i < t.data.length; i++) {
      if (!Number.isFinite(t.data[i])) fail(`tensor '${t.name}' (${role} of node '${node.name}') holds a non-finite value (${t.data[i]}) at index ${i}`, node);
    }
    return t;
  };
  const optionalConstant = (name: string | undefined, node: GraphNode, role: string) =>
    name ? constant(name, node, role) : undefined;
  const requireFlat = (node: GraphNode) => {
    const rank = dims.length;
    if (rank !== 2) fail(`node '${node.name}' (${node.op}) gets a rank-${rank} input; dendra needs [batch, features] here (add Flatten before it)`, node);
  };
  const attr = (node: GraphNode, key: string, dflt: number): number => {
    const v = node.attrs[key];
    return typeof v === 'number' ? v : dflt;
  };

  for (const node of graph.nodes) {
    if (dendritic.consumed.has(node)) continue;
    const origin: Origin = { node: node.name, op: node.op };
    if (node.op === 'Constant') {
      const value = node.attrs['value'];
      if (typeof value !== 'object' || Array.isArray(value)) fail(`Constant node '${node.name}' has no tensor 'value' attribute`, node);
      constants.set(node.outputs[0] ?? '', { ...(value as GraphTensor), name: node.outputs[0] ?? '' });
      continue;
    }
    const shapeValue = evaluateShapeNode(node, shapes, constants, { name: current, dims });
    if (shapeValue !== undefined) {
      shapes.set(node.outputs[0] ?? '', shapeValue);
      continue;
    }
    const dataInput = node.inputs.indexOf(current);
    if (dataInput < 0) {
      if (!(SUPPORTED_OPS as readonly string[]).includes(node.op)) {
        fail(`node '${node.name}' has op ${node.op}, which dendra does not support; supported: ${SUPPORTED_OPS.join(', ')}`, node);
      }
      fail(`node '${node.name}' (${node.op}) is not on the network's single data path from '${input.name}'; dendra compiles chains of dense layers`, node);
    }
    let out = node.outputs[0] ?? '';
    switch (node.op) {
      case 'Identity':
      case 'Dropout':
        break;
      case 'Flatten': {
        const axis = attr(node, 'axis', 1);
        if (axis !== 1 && !(axis === -1 && dims.length === 2)) fail(`Flatten '${node.name}' with axis=${axis}: dendra needs axis=1 (keep the batch dimension)`, node);
        dims = [batch, features];
        break;
      }
      case 'Reshape': {
        const computed = shapes.get(node.inputs[1] ?? '');
        const to: ShapeValue = computed ?? Array.from(constant(node.inputs[1], node, 'shape').data);
        // The first entry keeps the batch: -1, 0 (copy), the symbolic batch itself, or the fixed batch size.
        const keepsBatch = to[0] === -1 || to[0] === 0 || to[0] === 'B' || (typeof batch === 'number' && to[0] === batch);
        const ok = to.length === 2 && keepsBatch && (to[1] === features || (to[1] === -1 && to[0] !== -1));
        if (!ok) fail(`Reshape '${node.name}' to [${to.join(', ')}]: dendra supports only reshaping to [batch, ${features}]`, node);
        dims = [batch, features];
        break;
      }
      case 'Gemm': {
        requireFlat(node);
        if (dataInput !== 0) fail(`Gemm '${node.name}': the data must be input A (the weights input B must be a constant)`, node);
        if (attr(node, 'transA', 0) !== 0) fail(`Gemm '${node.name}' with transA=1 transposes the batch; not supported`, node);
        const alpha = attr(node, 'alpha', 1);
        const beta = attr(node, 'beta', 1);
        const transB = attr(node, 'transB', 0) !== 0;
        const b = constant(node.inputs[1], node, 'weight B');
        if (b.dims.length !== 2) fail(`Gemm '${node.name}': weight '${b.name}' has shape [${b.dims.join(', ')}], expected rank 2`, node);
        const [r, c] = b.dims as [number, number];
        const inF = transB ? c : r;
        const outF = transB ? r : c;
        if (inF !== features) fail(`Gemm '${node.name}': weight '${b.name}' has shape [${b.dims.join(', ')}]${transB ? ' (transB=1)' : ''} but its input has ${features} features`, node);
        const weight = new Float32Array(inF * outF);
        for (let i = 0; i < inF; i++) {
          for (let j = 0; j < outF; j++) weight[i * outF + j] = alpha * (transB ? b.data[j * c + i]! : b.data[i * c + j]!);
        }
        const cT = optionalConstant(node.inputs[2], node, 'bias C');
        const bias = new Float32Array(outF);
        if (cT) {
          const bc = broadcastBias(cT, outF, node, fail);
          for (let j = 0; j < outF; j++) bias[j] = beta * bc[j]!;
        }
        out = dense(node, { kind: 'dense', origin, inFeatures: inF, outFeatures: outF, weight, bias });
        break;
      }
      case 'MatMul': {
        requireFlat(node);
        if (dataInput !== 0) fail(`MatMul '${node.name}': the data must be the first input (x · W)`, node);
        const w = constant(node.inputs[1], node, 'weight');
        if (w.dims.length !== 2) fail(`MatMul '${node.name}': weight '${w.name}' has shape [${w.dims.join(', ')}], expected rank 2`, node);
        if (w.dims[0] !== features) fail(`MatMul '${node.name}': weight '${w.name}' has shape [${w.dims.join(', ')}] but its input has ${features} features`, node);
        const outF = w.dims[1]!;
        out = dense(node, { kind: 'dense', origin, inFeatures: features, outFeatures: outF, weight: Float32Array.from(w.data), bias: new Float32Array(outF) });
        break;
      }
      case 'Add': {
        requireFlat(node);
        const other = node.inputs[1 - dataInput];
        const t = constant(other, node, 'addend');
        ops.push({ kind: 'bias', origin, bias: broadcastBias(t, features, node, fail) });
        break;
      }
      case 'BatchNormalization': {
        requireFlat(node);
        if (dataInput !== 0) fail(`BatchNormalization '${node.name}': the data must be its first input`, node);
        const parts = ['scale', 'B', 'mean', 'var'].map((role, k) => constant(node.inputs[k + 1], node, role));
        for (const p of parts) {
          if (p.data.length !== features) fail(`BatchNormalization '${node.name}': '${p.name}' has ${p.data.length} values for ${features} features`, node);
        }
        if (node.outputs.slice(1).some((o) => o !== '')) fail(`BatchNormalization '${node.name}' is in training mode (it outputs running statistics); export the model in eval mode`, node);
        ops.push({ kind: 'batchnorm', origin, scale: parts[0]!.data, shift: parts[1]!.data, mean: parts[2]!.data, variance: parts[3]!.data, epsilon: attr(node, 'epsilon', 1e-5) });
        break;
      }
      case 'Softmax':
      case 'LogSoftmax': {
        requireFlat(node);
        const axis = attr(node, 'axis', graph.source.opset >= 13 ? -1 : 1);
        if (axis !== 1 && axis !== -1) fail(`${node.op} '${node.name}' over axis ${axis}: dendra supports it over the features only`, node);
        ops.push({ kind: 'head', origin, head: node.op === 'Softmax' ? 'softmax' : 'logsoftmax' });
        break;
      }
      default: {
        if (!ACTIVATION_OPS.has(node.op)) {
          fail(`node '${node.name}' has op ${node.op}, which dendra does not support; supported: ${SUPPORTED_OPS.join(', ')}`, node);
        }
        ops.push({ kind: 'activation', origin, activation: activationOf(node, constant, graph.source.opset) });
      }
    }
    current = out;
  }

  const output = graph.outputs[0]!;
  if (current !== output.name) {
    fail(`the data path from '${input.name}' ends at '${current}', not at the graph output '${output.name}'`);
  }
  if (!ops.some((o) => o.kind === 'dense')) fail('the model has no dense layer (Gemm or MatMul) to place on a crossbar');
  return {
    source: graph.source,
    input: { name: input.name, dtype: dtype!, shape: shape!, features: inputFeatures },
    output: { name: output.name, features },
    ops,
  };
}

function broadcastBias(t: GraphTensor, n: number, node: GraphNode, fail: (m: string, n?: GraphNode) => never): Float32Array {
  const count = t.data.length;
  const okShape = t.dims.length === 0 || t.dims.slice(0, -1).every((d) => d === 1);
  if (!okShape || (count !== n && count !== 1)) {
    fail(`node '${node.name}' (${node.op}): '${t.name}' has shape [${t.dims.join(', ')}], which does not broadcast over ${n} features`, node);
  }
  return count === n ? Float32Array.from(t.data) : new Float32Array(n).fill(t.data[0]!);
}

function activationOf(node: GraphNode, constant: (name: string | undefined, node: GraphNode, role: string) => GraphTensor, opset: number): Activation {
  switch (node.op) {
    case 'Relu': return { kind: 'relu' };
    case 'Sigmoid': return { kind: 'sigmoid' };
    case 'Tanh': return { kind: 'tanh' };
    case 'LeakyRelu': {
      const a = node.attrs['alpha'];
      return { kind: 'leakyrelu', alpha: typeof a === 'number' ? a : 0.01 };
    }
    default: {
      // Clip: attributes before opset 11, optional constant inputs from 11 on.
      let min = -Infinity;
      let max = Infinity;
      if (opset < 11) {
        const a = node.attrs['min'];
        const b = node.attrs['max'];
        if (typeof a === 'number') min = a;
        if (typeof b === 'number') max = b;
      } else {
        if (node.inputs[1]) min = constant(node.inputs[1], node, 'min').data[0]!;
        if (node.inputs[2]) max = constant(node.inputs[2], node, 'max').data[0]!;
      }
      return { kind: 'clip', min, max };
    }
  }
}
