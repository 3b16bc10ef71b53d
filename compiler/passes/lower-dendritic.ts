/**
 * The dendritic-layer pattern inside `lower` (docs/dendritic-onnx.md): a MatMul/Gemm whose [in, B·out]
 * weight is block-structured, Reshape to [batch, B, out], an elementwise dendrite function, ReduceSum over
 * the branches, an optional bias Add and an optional threshold-soma chain become one dense op carrying
 * `dendrites` (the model of common/dendrite.ts).
 *
 * The dendrite function is not matched op by op: F is read from its leading scalar Div (or Mul by 1/F),
 * the rest is evaluated numerically on probe signals u and fitted to a device of common/dendrite.ts
 * (`dendriteTransfer`), which must reproduce it to 1e-4 of its peak; the threshold soma is fitted and
 * verified the same way against `somaOutput`. Every refusal is a ModelError naming the node or tensor.
 */
import { ModelError } from '../../common/errors.js';
import { alphaOf, dendriteTransfer, somaOutput, type DendriteDevice, type Soma } from '../../common/dendrite.js';
import type { Graph, GraphNode, GraphTensor } from '../ir/graph.js';
import type { ChainOp, Dendrites } from '../ir/layers.js';
import { evaluateShapeNode, SHAPE_OPS, type ShapeValue } from './shape-values.js';

type DenseOp = Extract<ChainOp, { kind: 'dense' }>;
export type TrainedDendrite = NonNullable<Dendrites['trained']>;

/** Ops the dendrite function may use (evaluated elementwise, every other input a scalar constant). */
export const DENDRITE_OPS = [
  'Div', 'Mul', 'Add', 'Sub', 'Neg', 'Abs', 'Sign', 'Relu', 'Exp', 'Sigmoid', 'Tanh', 'Min', 'Max', 'Clip', 'Where',
  'Greater', 'GreaterOrEqual', 'Less', 'LessOrEqual', 'Equal', 'Not', 'Cast', 'Identity',
] as const;
const ELEMENTWISE = new Set<string>(DENDRITE_OPS);
/** Ops a threshold-soma chain may use. */
const SOMA_OPS = new Set(['Div', 'Mul', 'Add', 'Sub', 'Sigmoid', 'Relu', 'Max', 'Clip']);

/** How closely the fitted device (soma) must reproduce the exported function: max |difference| / max |H|. */
export const FIT_TOLERANCE = 1e-4;

export interface DendriticContext {
  graph: Graph;
  /** Initializers and the Constant nodes `lower` has seen so far. */
  constants: Map<string, GraphTensor>;
  /** Shape values `lower` has evaluated so far. */
  shapes: Map<string, ShapeValue>;
  batch: 'B' | number;
  /** Nodes the pattern took; `lower` skips them. */
  consumed: Set<GraphNode>;
}

/**
 * `dense` is what `lower` made of `node` (weight [in][cols], bias [cols]). Returns undefined when the node's
 * output does not go into a Reshape to rank 3 (then it is an ordinary dense layer); otherwise the dendritic
 * dense op and the value the pattern ends at, or a ModelError.
 */
export function lowerDendritic(ctx: DendriticContext, node: GraphNode, dense: DenseOp): { op: DenseOp; output: string } | undefined {
  const { graph } = ctx;
  const file = graph.source.file;
  const nodes = graph.nodes;
  const at = new Map(nodes.map((n, k) => [n, k]));
  const fail = (msg: string, n: GraphNode = node, tensor?: string): never => {
    throw new ModelError(msg, { file, node: n.name, op: n.op, ...(tensor ? { tensor } : {}) });
  };
  const layer = `${node.op} '${node.name}'`;
  const consumers = (name: string) => nodes.filter((n) => n.inputs.includes(name));
  const isOutput = (name: string) => graph.outputs.some((o) => o.name === name);
  let allConstants: Map<string, GraphTensor> | undefined;
  const constantOf = (name: string): GraphTensor | undefined => {
    if (!allConstants) {
      allConstants = new Map(ctx.constants);
      for (const n of nodes) {
        const v = n.attrs['value'];
        if (n.op === 'Constant' && n.outputs[0] && typeof v === 'object' && !Array.isArray(v)) allConstants.set(n.outputs[0], { ...v, name: n.outputs[0] });
      }
    }
    return allConstants.get(name);
  };

  // MatMul → Reshape to [batch, B, out]; anything else is not this pattern.
  const mmOut = node.outputs[0] ?? '';
  const users = consumers(mmOut).filter((n) => n.op !== 'Shape');
  const reshape = users.length === 1 && users[0]!.op === 'Reshape' && users[0]!.inputs[0] === mmOut ? users[0]! : undefined;
  if (!reshape) return undefined;
  const taken = new Set<GraphNode>([reshape]);
  const to = reshapeTarget(reshape.inputs[1] ?? '');
  if (!to || to.length !== 3) return undefined;

  const cols = dense.outFeatures;
  const inF = dense.inFeatures;
  const keepsBatch = to[0] === -1 || to[0] === 0 || to[0] === 'B' || (typeof ctx.batch === 'number' && to[0] === ctx.batch);
  let [, count, out] = to as [unknown, number | 'B', number | 'B'];
  if (keepsBatch && to[0] !== -1 && count === -1 && typeof out === 'number' && out > 0) count = cols / out;
  if (keepsBatch && to[0] !== -1 && out === -1 && typeof count === 'number' && count > 0) out = cols / count;
  if (!keepsBatch || typeof count !== 'number' || typeof out !== 'number' || !Number.isInteger(count) || !Number.isInteger(out) || count < 1 || out < 1 || count * out !== cols) {
    fail(`Reshape '${reshape.name}' to [${to.join(', ')}] after ${layer} (${cols} columns): a dendritic layer reshapes to [batch, branches, outputs] with branches × outputs = ${cols}`, reshape);
  }
  const B = count as number;
  const outF = out as number;
  if (dense.bias.some((v) => v !== 0)) {
    fail(`${layer} adds a bias to its ${cols} branch columns before the dendrites; a dendritic layer adds its bias after the ReduceSum over the branches`, node, node.inputs[2]);
  }

  // The dendrite function: every node from the Reshape's output to the ReduceSum.
  const rOut = reshape.outputs[0] ?? '';
  const chain: GraphNode[] = [];
  const inChain = new Set([rOut]);
  let reduce: GraphNode | undefined;
  for (let k = at.get(reshape)! + 1; k < nodes.length; k++) {
    const n = nodes[k]!;
    if (!n.inputs.some((i) => inChain.has(i))) continue;
    if (n.op === 'ReduceSum') {
      if (reduce) fail(`the dendrite function of ${layer} reaches two ReduceSum nodes ('${reduce.name}', '${n.name}'); a dendritic layer sums its branches once`, n);
      reduce = n;
      continue;
    }
    if (!ELEMENTWISE.has(n.op)) {
      fail(`node '${n.name}' (${n.op}) in the dendrite function of ${layer}: dendra evaluates only ${DENDRITE_OPS.join(', ')} between the Reshape and the ReduceSum`, n);
    }
    chain.push(n);
    for (const o of n.outputs) inChain.add(o);
  }
  if (!reduce) return fail(`Reshape '${reshape.name}' to [batch, ${B}, ${outF}] after ${layer} is not followed by a ReduceSum over the branches (axis 1)`, reshape);
  const chainOut = reduce.inputs[0] ?? '';
  if (!inChain.has(chainOut) || reduce.inputs.slice(1).some((i) => inChain.has(i))) fail(`ReduceSum '${reduce.name}' does not sum the dendrite outputs of ${layer}`, reduce);
  if (chain.length === 0) fail(`${layer} → Reshape '${reshape.name}' → ReduceSum '${reduce.name}' has no dendrite function between; export a layer without dendrites as a plain MatMul`, reduce);
  for (const v of inChain) {
    if (isOutput(v)) fail(`value '${v}' of the dendrite function of ${layer} is a graph output; the branch outputs must go only to the ReduceSum`, chain.find((n) => n.outputs.includes(v)) ?? reshape);
  }
  checkReduce(reduce, B, outF);
  const scalars = new Map<string, number>();
  for (const n of chain) {
    for (const name of n.inputs) {
      if (name === '' || inChain.has(name)) continue;
      scalars.set(name, scalarInput(name, n, `the dendrite function of ${layer}`));
    }
  }

  // F from the leading Div (or Mul by 1/F).
  const leads = consumers(rOut);
  const lead = leads[0]!;
  const leadConst = lead.inputs.find((i) => i !== rOut);
  const c = leadConst !== undefined ? scalars.get(leadConst) : undefined;
  let F = NaN;
  if (leads.length === 1 && c !== undefined && lead.inputs.length === 2) {
    if (lead.op === 'Div' && lead.inputs[0] === rOut) F = c;
    else if (lead.op === 'Mul') F = 1 / c;
  }
  if (Number.isNaN(F)) {
    fail(`the dendrite function of ${layer} must start by dividing the branch sums by the full scale F (Div by a scalar, or Mul by 1/F); it starts with ${leads.map((n) => `${n.op} '${n.name}'`).join(' and ')}`, lead);
  }
  if (!(F > 0 && Number.isFinite(F))) fail(`the dendrite function of ${layer} divides by a full scale F = ${F}; F must be positive and finite`, lead);

  // Evaluate H(u) = chain(F·u) / F on probes and fit a device.
  const opset = graph.source.opset;
  const H = (us: Float64Array): Float64Array => {
    const zs = us.map((u) => F * u);
    const v = evaluate(chain, rOut, zs, scalars, opset).get(chainOut)!;
    return v.map((y) => y / F);
  };
  const h1 = (u: number) => H(Float64Array.of(u))[0]!;
  const probe = grid(2, 4001);
  const hp = H(probe);
  const bad = hp.findIndex((y) => !Number.isFinite(y));
  if (bad >= 0) fail(`the dendrite function of ${layer} gives ${hp[bad]} at u = z/F = ${probe[bad]}`, lead);
  const peak = Math.max(...hp.map(Math.abs));
  if (!(peak > 0)) fail(`the dendrite function of ${layer} is zero for every branch signal`, lead);
  let negPeak = 0;
  probe.forEach((u, k) => { if (u < 0) negPeak = Math.max(negPeak, Math.abs(hp[k]!)); });
  const rectify = negPeak <= FIT_TOLERANCE * peak;
  const fit = fitDendrite(H, h1, rectify);
  if (!fit.best) {
    const near = fit.closest;
    const last = chain[chain.length - 1]!;
    fail(`the dendrite function of ${layer} (${lead.op} '${lead.name}' … ${last.op} '${last.name}') matches no dendrite device of common/dendrite.ts: the closest, ${describeDevice(near.device)}, is off by ${near.error.toExponential(2)} of its peak at u = ${near.at.toPrecision(4)}`, lead);
  }
  const trained = fit.best!.device;

  // Branches from the block structure: row i of Wb is nonzero only in the columns of branch b(i).
  const wName = node.inputs[1] ?? '';
  const branchOf = new Int32Array(inF);
  const weight = new Float32Array(inF * outF);
  for (let i = 0; i < inF; i++) {
    let found = -1;
    for (let b = 0; b < B; b++) {
      let nonzero = false;
      for (let j = 0; j < outF && !nonzero; j++) nonzero = dense.weight[i * cols + b * outF + j] !== 0;
      if (!nonzero) continue;
      if (found >= 0) {
        fail(`row ${i} of weight '${wName}' (${layer}) is nonzero in column blocks ${found} and ${b} (columns ${found * outF}–${found * outF + outF - 1} and ${b * outF}–${b * outF + outF - 1}); in a dendritic layer every input feeds one branch`, node, wName);
      }
      found = b;
    }
    branchOf[i] = Math.max(found, 0);
    for (let j = 0; j < outF; j++) weight[i * outF + j] = dense.weight[i * cols + branchOf[i]! * outF + j]!;
  }
  for (const n of [...chain, reduce]) taken.add(n);

  // After the sum: an optional bias Add, then an optional threshold soma.
  let output = reduce.outputs[0] ?? '';
  const bias = new Float32Array(outF);
  const next = (name: string) => (isOutput(name) ? [] : consumers(name));
  const afterSum = next(output);
  if (afterSum.length === 1 && afterSum[0]!.op === 'Add') {
    const add = afterSum[0]!;
    const other = add.inputs.find((i) => i !== output);
    const t = other !== undefined ? constantOf(other) : undefined;
    const okShape = t && t.dims.slice(0, -1).every((d) => d === 1) && (t.data.length === outF || t.data.length === 1);
    if (t && okShape && t.data.every(Number.isFinite)) {
      for (let j = 0; j < outF; j++) bias[j] = t.data.length === 1 ? t.data[0]! : t.data[j]!;
      taken.add(add);
      output = add.outputs[0] ?? '';
    }
  }
  let soma: Soma = { kind: 'activation' };
  const somaChain: GraphNode[] = [];
  const somaScalars = new Map<string, number>();
  for (let v = output; ;) {
    const us = next(v);
    const n = us[0];
    if (us.length !== 1 || !n || !SOMA_OPS.has(n.op) || n.inputs.filter((i) => i === v).length !== 1) break;
    const rest = n.inputs.filter((i) => i !== v && i !== '');
    const values = rest.map((i) => constantOf(i));
    if (values.some((t) => !t || t.data.length !== 1)) break;
    rest.forEach((i, k) => somaScalars.set(i, values[k]!.data[0]!));
    somaChain.push(n);
    v = n.outputs[0] ?? '';
  }
  // One node alone (a Relu, a Sigmoid) is the layer's activation, which `lower` reads as usual.
  if (somaChain.length >= 2) {
    const start = somaChain[0]!;
    const last = somaChain[somaChain.length - 1]!;
    const S = (xs: Float64Array) => evaluate(somaChain, output, xs, somaScalars, opset).get(last.outputs[0] ?? '')!;
    soma = fitSoma(S, (msg) => fail(`the ops after the dendritic sum of ${layer} (${start.op} '${start.name}' … ${last.op} '${last.name}') are not a soma dendra knows: ${msg}`, start));
    for (const n of somaChain) taken.add(n);
    output = last.outputs[0] ?? '';
  }

  for (const n of taken) ctx.consumed.add(n);
  return {
    op: {
      kind: 'dense', origin: dense.origin, inFeatures: inF, outFeatures: outF, weight, bias,
      dendrites: { count: B, branchOf, fullScale: F, biasScale: 1, soma, strategy: 'onnx', calibrated: true, trained },
    },
    output,
  };

  /** The Reshape's target: a constant, a known shape value, or shape arithmetic on the MatMul's output. */
  function reshapeTarget(name: string): ShapeValue | undefined {
    const known = ctx.shapes.get(name);
    if (known) return known;
    const c = constantOf(name);
    if (c) return Array.from(c.data, (v) => Math.trunc(v));
    const producer = new Map(nodes.flatMap((n) => n.outputs.map((o): [string, GraphNode] => [o, n])));
    const slice = new Set<GraphNode>();
    const collect = (v: string): boolean => {
      if (v === '' || v === mmOut || ctx.shapes.has(v) || constantOf(v)) return true;
      const p = producer.get(v);
      if (!p || !SHAPE_OPS.has(p.op) || at.get(p)! <= at.get(node)!) return false;
      slice.add(p);
      return p.inputs.every(collect);
    };
    if (!collect(name)) return undefined;
    const local = new Map(ctx.shapes);
    for (const p of [...slice].sort((a, b) => at.get(a)! - at.get(b)!)) {
      const v = evaluateShapeNode(p, local, allConstants!, { name: mmOut, dims: [ctx.batch, dense.outFeatures] });
      if (!v) return undefined;
      local.set(p.outputs[0] ?? '', v);
    }
    for (const p of slice) taken.add(p);
    return local.get(name);
  }

  function checkReduce(r: GraphNode, branches: number, outputs: number): void {
    const what = `ReduceSum '${r.name}' after ${layer}`;
    let axes: number[] | undefined;
    if (graph.source.opset < 13) {
      const a = r.attrs['axes'];
      axes = Array.isArray(a) ? (a as number[]) : undefined;
    } else if (r.inputs[1]) {
      const t = constantOf(r.inputs[1]);
      if (!t) fail(`${what}: its axes '${r.inputs[1]}' must be a constant`, r);
      axes = Array.from(t!.data);
    }
    if (!axes || axes.length === 0) fail(`${what} sums over every axis; a dendritic layer sums its [batch, ${branches}, ${outputs}] branch outputs over axis 1 only`, r);
    const norm = axes!.map((a) => (a < 0 ? a + 3 : a));
    if (norm.length !== 1 || norm[0] !== 1) fail(`${what} sums over axes [${axes!.join(', ')}]; a dendritic layer sums its [batch, ${branches}, ${outputs}] branch outputs over axis 1 (the branches) only`, r);
    const keep = r.attrs['keepdims'];
    if (keep === undefined || keep !== 0) fail(`${what} keeps the summed axis (keepdims=1), leaving [batch, 1, ${outputs}]; export it with keepdims=0 (x.sum(dim=1))`, r);
  }

  function scalarInput(name: string, n: GraphNode, where: string): number {
    const t = constantOf(name);
    if (!t) return fail(`input '${name}' of node '${n.name}' (${n.op}) in ${where} must be a scalar constant (every dendrite of the layer computes the same function)`, n, name);
    if (t.data.length !== 1) fail(`input '${name}' of node '${n.name}' (${n.op}) in ${where} has shape [${t.dims.join(', ')}]; dendra takes scalar constants there (every dendrite of the layer computes the same function)`, n, name);
    if (!Number.isFinite(t.data[0])) fail(`input '${name}' of node '${n.name}' (${n.op}) in ${where} is ${t.data[0]}`, n, name);
    return t.data[0]!;
  }
}

/** n points evenly from −L to L. */
function grid(L: number, n: number): Float64Array {
  return Float64Array.from({ length: n }, (_, k) => -L + (2 * L * k) / (n - 1));
}

const FLOAT_TYPES = new Set([1, 10, 11, 16]);

/** Evaluates elementwise nodes (in graph order) on `xs` fed at `input`; non-data inputs come from `scalars`. */
export function evaluate(nodes: GraphNode[], input: string, xs: Float64Array, scalars: Map<string, number>, opset: number): Map<string, Float64Array> {
  const vals = new Map<string, Float64Array>([[input, xs]]);
  const n = xs.length;
  for (const node of nodes) {
    const args = node.inputs.map((name) => (name === '' ? undefined : vals.get(name) ?? scalars.get(name)));
    const x = (k: number, i: number): number => {
      const a = args[k];
      return a === undefined ? NaN : typeof a === 'number' ? a : a[i]!;
    };
    const out = new Float64Array(n);
    for (let i = 0; i < n; i++) out[i] = apply(node, args, (k) => x(k, i), opset);
    vals.set(node.outputs[0] ?? '', out);
  }
  return vals;
}

function apply(node: GraphNode, args: unknown[], x: (k: number) => number, opset: number): number {
  switch (node.op) {
    case 'Identity': return x(0);
    case 'Cast': {
      const to = node.attrs['to'];
      if (to === 9) return x(0) !== 0 ? 1 : 0;
      return FLOAT_TYPES.has(to as number) ? x(0) : Math.trunc(x(0));
    }
    case 'Neg': return -x(0);
    case 'Abs': return Math.abs(x(0));
    case 'Sign': return Math.sign(x(0));
    case 'Relu': return x(0) > 0 ? x(0) : 0;
    case 'Exp': return Math.exp(x(0));
    case 'Sigmoid': return 1 / (1 + Math.exp(-x(0)));
    case 'Tanh': return Math.tanh(x(0));
    case 'Not': return x(0) === 0 ? 1 : 0;
    case 'Add': return x(0) + x(1);
    case 'Sub': return x(0) - x(1);
    case 'Mul': return x(0) * x(1);
    case 'Div': return x(0) / x(1);
    case 'Min':
    case 'Max': {
      let m = x(0);
      for (let k = 1; k < args.length; k++) m = node.op === 'Min' ? Math.min(m, x(k)) : Math.max(m, x(k));
      return m;
    }
    case 'Clip': {
      let lo = -Infinity;
      let hi = Infinity;
      if (opset < 11) {
        const a = node.attrs['min'];
        const b = node.attrs['max'];
        if (typeof a === 'number') lo = a;
        if (typeof b === 'number') hi = b;
      } else {
        if (args[1] !== undefined) lo = x(1);
        if (args[2] !== undefined) hi = x(2);
      }
      return Math.min(hi, Math.max(lo, x(0)));
    }
    case 'Where': return x(0) !== 0 ? x(1) : x(2);
    case 'Greater': return x(0) > x(1) ? 1 : 0;
    case 'GreaterOrEqual': return x(0) >= x(1) ? 1 : 0;
    case 'Less': return x(0) < x(1) ? 1 : 0;
    case 'LessOrEqual': return x(0) <= x(1) ? 1 : 0;
    case 'Equal': return x(0) === x(1) ? 1 : 0;
    default: throw new ModelError(`node '${node.name}' (${node.op}) cannot be evaluated elementwise`, { node: node.name, op: node.op });
  }
}

/** A DendriteDevice with the trained parameters (only what dendriteTransfer reads is meaningful). */
export function trainedDevice(t: TrainedDendrite): DendriteDevice {
  return {
    kind: t.kind, nonlinearity: t.nonlinearity, onOffRatio: t.onOffRatio, voltage: t.ratio, onVoltage: 1,
    threshold: t.threshold, rectify: t.rectify, variation: 0, onCurrent: 1, time: 1,
  };
}

function describeDevice(t: TrainedDendrite): string {
  const p = (v: number) => Number(v.toPrecision(6));
  return t.kind === 'exponential'
    ? `exponential n = ${p(t.nonlinearity)}, R = ${p(t.onOffRatio)}, a = ${p(t.ratio)}${t.rectify ? ', rectifying' : ''}`
    : `threshold-linear R = ${p(t.onOffRatio)}, threshold ${p(t.threshold)} at a = ${p(t.ratio)}${t.rectify ? ', rectifying' : ''}`;
}

interface Candidate { device: TrainedDendrite; error: number; at: number }

/**
 * Fits the device families of common/dendrite.ts to H (evaluated on any u) and returns the one that
 * reproduces it best over the probes, its parameters snapped to the fewest significant digits that keep
 * the fit (float32 constants in the graph blur the trained values in their 7th digit). Where the function
 * does not determine a parameter: a linear H is the exponential family with n = 0, R = 1, a = 1; the
 * threshold-linear family fixes only threshold/a, reported with a = 1 (a = 1/(threshold/a) beyond 1) and
 * n = 0; the exponential family does not use the threshold, reported as 1.
 */
export function fitDendrite(H: (us: Float64Array) => Float64Array, h1: (u: number) => number, rectify: boolean): { best?: Candidate; closest: Candidate } {
  const fits: TrainedDendrite[] = [{ kind: 'exponential', nonlinearity: 0, onOffRatio: 1, ratio: 1, threshold: 1, rectify }];
  const u0 = 1e-6;
  const ratioAt = (u: number) => h1(u) / u;
  const r0 = ratioAt(u0);
  const limits: number[] = [2];
  if (r0 > 0 && r0 <= 1 + 1e-6) {
    const slope0 = Math.min(1, r0);
    // threshold-linear: slope 1/R below u_t = threshold / a, slope 1 above.
    const mid = (1 + slope0) / 2;
    const ut = firstTrue((u) => ratioAt(u) >= mid, u0);
    if (ut !== undefined) {
      const a = ut <= 1 ? 1 : 1 / ut;
      fits.push({ kind: 'threshold-linear', nonlinearity: 0, onOffRatio: 1 / slope0, ratio: a, threshold: a * ut, rectify });
      limits.push(2 * ut);
    }
    // exponential: H(u) = u from u_on = 1/a on; below, a·H(v/a) − v = (1 − 1/R)·(φ_α(v) − v).
    const uon = firstTrue((u) => Math.abs(ratioAt(u) - 1) <= 1e-9, u0);
    if (uon !== undefined) {
      const a = 1 / uon;
      const vs = Float64Array.from({ length: 63 }, (_, k) => (k + 1) / 64);
      const hv = H(vs.map((v) => v / a));
      const d = vs.map((v, k) => a * hv[k]! - v);
      const phi = (alpha: number, v: number) => (Math.exp(alpha * (v - 1)) - Math.exp(-alpha)) / -Math.expm1(-alpha);
      const solve = (n: number) => {
        const alpha = alphaOf(n);
        let db = 0;
        let bb = 0;
        vs.forEach((v, k) => { const b = phi(alpha, v) - v; db += d[k]! * b; bb += b * b; });
        const c = bb > 0 ? db / bb : 0;
        let res = 0;
        vs.forEach((v, k) => { res += (d[k]! - c * (phi(alpha, v) - v)) ** 2; });
        return { c, res };
      };
      let bestN = 0.0025;
      for (let n = 0.0025; n <= 0.93; n += 0.0025) if (solve(n).res < solve(bestN).res) bestN = n;
      let lo = Math.max(1e-6, bestN - 0.0025);
      let hi = Math.min(0.93, bestN + 0.0025);
      const g = (Math.sqrt(5) - 1) / 2;
      for (let k = 0; k < 120; k++) {
        const m1 = hi - g * (hi - lo);
        const m2 = lo + g * (hi - lo);
        if (solve(m1).res <= solve(m2).res) hi = m2;
        else lo = m1;
      }
      const n = (lo + hi) / 2;
      const { c } = solve(n);
      if (c > 0 && c < 1) {
        fits.push({ kind: 'exponential', nonlinearity: n, onOffRatio: 1 / (1 - c), ratio: a, threshold: 1, rectify });
        limits.push(2 * uon);
      }
    }
  }
  const probes = grid(Math.min(Math.max(...limits), 1e6), 4001);
  const hp = H(probes);
  const peak = Math.max(...hp.map(Math.abs));
  const score = (t: TrainedDendrite): Candidate => {
    const dev = trainedDevice(t);
    let error = 0;
    let where = 0;
    probes.forEach((u, k) => {
      const e = Math.abs(dendriteTransfer(dev, u) - hp[k]!);
      if (!(e <= error)) { error = e; where = u; }
    });
    return { device: t, error: error / peak, at: where };
  };
  let closest = score(fits[0]!);
  for (const t of fits.slice(1)) {
    const s = score(t);
    if (s.error < closest.error) closest = s;
  }
  if (closest.error > FIT_TOLERANCE) return { closest };
  const snapped = snap({ value: closest.device, error: closest.error }, ['nonlinearity', 'onOffRatio', 'ratio', 'threshold'], (t) => {
    const c = score(t);
    return { value: c.device, error: c.error };
  }).value;
  const best = score(snapped);
  return { best, closest };
}

/** Smallest u > lo where `pred` holds, if it holds somewhere up to 2^20 (and not at lo): bisection. */
function firstTrue(pred: (u: number) => boolean, lo: number): number | undefined {
  if (pred(lo)) return undefined;
  let hi = 2;
  while (!pred(hi)) {
    lo = hi;
    hi *= 2;
    if (hi > 2 ** 20) return undefined;
  }
  for (let k = 0; k < 400; k++) {
    const m = (lo + hi) / 2;
    if (m <= lo || m >= hi) break;
    if (pred(m)) hi = m;
    else lo = m;
  }
  return hi;
}

/** Fits scale·max(2σ(x/scale − θ) − 1, 0) to S (the paper's threshold soma) and verifies it on probes. */
export function fitSoma(S: (xs: Float64Array) => Float64Array, refuse: (msg: string) => never): Soma {
  const s1 = (x: number) => S(Float64Array.of(x))[0]!;
  const big = 1e12;
  const scale = s1(big);
  if (!(scale > 0 && Number.isFinite(scale)) || Math.abs(s1(2 * big) - scale) > 1e-9 * scale) {
    return refuse(`it does not saturate at a positive level for large inputs (gives ${s1(big)} at ${big} and ${s1(2 * big)} at ${2 * big})`);
  }
  if (s1(-big) !== 0) return refuse(`it is not zero for large negative inputs (gives ${s1(-big)} at ${-big})`);
  // The output turns positive at x = θ·scale.
  let lo = -big;
  let hi = big;
  for (let k = 0; k < 400; k++) {
    const m = (lo + hi) / 2;
    if (m <= lo || m >= hi) break;
    if (s1(m) > 0) hi = m;
    else lo = m;
  }
  const xs = grid(Math.abs(hi) + 12 * scale, 4001);
  const got = S(xs);
  const score = (soma: Extract<Soma, { kind: 'threshold' }>) => {
    let error = 0;
    let at = 0;
    xs.forEach((x, k) => {
      const e = Math.abs(somaOutput(soma, { kind: 'none' }, x) - got[k]!);
      if (!(e <= error)) { error = e; at = x; }
    });
    return { value: soma, error: error / scale, at };
  };
  const fit = score({ kind: 'threshold', theta: hi / scale, scale });
  if (fit.error > FIT_TOLERANCE) {
    return refuse(`the closest threshold soma (θ = ${fit.value.theta.toPrecision(6)}, scale ${scale.toPrecision(6)}) is off by ${fit.error.toExponential(2)} of its scale at x = ${fit.at.toPrecision(4)}`);
  }
  return snap(fit, ['theta', 'scale'], score).value;
}

/**
 * Rounds each named parameter to the fewest significant digits (1 to 8) that move it by at most 1e-6 of
 * itself and keep the error within twice the fit's (at least 1e-7): float32 constants blur trained values
 * such as 0.1 in their 8th digit, and this recovers them without changing the function.
 */
function snap<T extends object, K extends keyof T & string>(fit: { value: T; error: number }, keys: K[], score: (v: T) => { value: T; error: number }): { value: T; error: number } {
  let best = fit;
  const keep = Math.max(2 * fit.error, 1e-7);
  for (const key of keys) {
    const x = best.value[key] as unknown as number;
    for (let digits = 1; digits <= 8; digits++) {
      const v = Number(x.toPrecision(digits));
      if (v === x) break;
      if (Math.abs(v - x) > 1e-6 * Math.abs(x)) continue;
      const s = score({ ...best.value, [key]: v });
      if (s.error <= keep) { best = s; break; }
    }
  }
  return best;
}
