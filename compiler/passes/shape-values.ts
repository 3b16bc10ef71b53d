/**
 * Shape arithmetic that exporters put in front of a Reshape (`x.view(x.size(0), -1)` exports as
 * Shape → Gather → Unsqueeze → Concat → Reshape): evaluated at compile time on 1-D integer values in
 * which the dynamic batch dimension stays symbolic ('B'). Used by `lower`; no ONNX types here.
 */
import type { GraphNode, GraphTensor } from '../ir/graph.js';

export type ShapeEntry = number | 'B';
export type ShapeValue = ShapeEntry[];

export const SHAPE_OPS = new Set(['Shape', 'Gather', 'Unsqueeze', 'Squeeze', 'Concat', 'Slice', 'Cast', 'Mul', 'Div', 'Add', 'Sub']);

const asValue = (t: GraphTensor): ShapeValue => Array.from(t.data, (v) => Math.trunc(v));

/**
 * Evaluates `node` if every input is a known shape value or a constant; returns undefined when it is not
 * shape arithmetic (the caller then treats the node as part of the network). `current` is the name and
 * dims of the value on the network's data path, which Shape may read.
 */
export function evaluateShapeNode(
  node: GraphNode,
  known: Map<string, ShapeValue>,
  constants: Map<string, GraphTensor>,
  current: { name: string; dims: ShapeValue },
): ShapeValue | undefined {
  if (!SHAPE_OPS.has(node.op)) return undefined;
  const value = (name: string | undefined): ShapeValue | undefined => {
    if (!name) return undefined;
    const k = known.get(name);
    if (k) return k;
    const c = constants.get(name);
    return c ? asValue(c) : undefined;
  };
  const attr = (key: string): number | number[] | undefined => {
    const v = node.attrs[key];
    return typeof v === 'number' || Array.isArray(v) ? (v as number | number[]) : undefined;
  };
  if (node.op === 'Shape') {
    if (node.inputs[0] !== current.name) return undefined;
    const rank = current.dims.length;
    const norm = (i: number) => (i < 0 ? Math.max(0, i + rank) : Math.min(i, rank));
    const start = norm((attr('start') as number | undefined) ?? 0);
    const end = norm((attr('end') as number | undefined) ?? rank);
    return current.dims.slice(start, end);
  }
  // Every other op: all (non-empty) inputs must be known values. A node that reads the data path is not shape arithmetic.
  const inputs = node.inputs.map((n) => (n ? value(n) : []));
  if (node.inputs.some((n, i) => n && inputs[i] === undefined)) return undefined;
  const vals = inputs as ShapeValue[];
  const data = vals[0] ?? [];
  switch (node.op) {
    case 'Cast':
    case 'Squeeze':
    case 'Unsqueeze':
      return [...data];
    case 'Gather': {
      if (((attr('axis') as number | undefined) ?? 0) !== 0) return undefined;
      const out: ShapeValue = [];
      for (const i of vals[1] ?? []) {
        if (i === 'B') return undefined;
        const e = data[i < 0 ? i + data.length : i];
        if (e === undefined) return undefined;
        out.push(e);
      }
      return out;
    }
    case 'Concat':
      return vals.flat();
    case 'Slice': {
      // Opset ≥ 10: starts, ends, axes, steps are inputs; before: attributes.
      const starts = (vals[1] ?? (attr('starts') as number[] | undefined) ?? [0]) as ShapeValue;
      const ends = (vals[2] ?? (attr('ends') as number[] | undefined) ?? [data.length]) as ShapeValue;
      const steps = (vals[4] ?? [1]) as ShapeValue;
      if ([starts[0], ends[0], steps[0]].some((x) => typeof x !== 'number') || steps[0] !== 1) return undefined;
      const n = data.length;
      const clampIndex = (i: number) => Math.max(0, Math.min(n, i < 0 ? i + n : i));
      return data.slice(clampIndex(starts[0] as number), clampIndex(Math.min(ends[0] as number, n)));
    }
    default: {
      // Elementwise integer arithmetic with broadcasting; anything involving the symbolic batch stays symbolic.
      const [a = [], b = []] = vals;
      const len = Math.max(a.length, b.length);
      const at = (v: ShapeValue, i: number) => (v.length === 1 ? v[0]! : v[i]!);
      return Array.from({ length: len }, (_, i) => {
        const x = at(a, i);
        const y = at(b, i);
        if (x === 'B' || y === 'B') return 'B';
        switch (node.op) {
          case 'Mul': return x * y;
          case 'Div': return Math.trunc(x / y);
          case 'Add': return x + y;
          default: return x - y;
        }
      });
    }
  }
}
