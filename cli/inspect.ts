import { readFileSync } from 'node:fs';
import { isArtifact, readArtifact } from '../artifact/read.js';
import type { Artifact } from '../artifact/format.js';
import { fuseLayers, foldBatchnorm, loadOnnx, lower } from '../compiler/index.js';
import type { Activation, Graph, LayerModel } from '../compiler/index.js';
import { describe, InputError } from '../common/errors.js';

const act = (a: Activation) =>
  a.kind === 'leakyrelu' ? `leakyrelu(${a.alpha})` : a.kind === 'clip' ? `clip(${a.min}, ${a.max})` : a.kind;
const uS = (g: number) => `${(g * 1e6).toPrecision(4)} uS`;

export function inspectCommand(file: string, opts: { json?: boolean }): void {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(file);
  } catch (e) {
    throw new InputError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { file });
  }
  if (isArtifact(bytes)) {
    const a = readArtifact(bytes, file);
    if (opts.json) console.log(JSON.stringify(artifactSummary(a)));
    else printArtifact(file, a);
  } else {
    const graph = loadOnnx(bytes, { file });
    let model: LayerModel | undefined;
    let problem: string | undefined;
    try {
      model = fuseLayers(foldBatchnorm(lower(graph)));
    } catch (e) {
      problem = describe(e);
    }
    if (opts.json) console.log(JSON.stringify(modelSummary(graph, model, problem)));
    else printModel(file, graph, model, problem);
  }
}

function artifactSummary(a: Artifact) {
  return {
    kind: 'artifact',
    source: a.source,
    device: a.profile.name,
    input: a.input,
    output: a.output,
    head: a.head,
    arrays: a.arrays.length,
    layers: a.layers.map((l) => ({
      name: l.name,
      inFeatures: l.inFeatures,
      outFeatures: l.outFeatures,
      activation: act(l.activation),
      tiles: l.tiles.length,
      arrays: [...new Set(l.tiles.map((t) => t.array))],
    })),
  };
}

function printArtifact(file: string, a: Artifact): void {
  const p = a.profile;
  const out: string[] = [];
  out.push(`${file}: dendra artifact`);
  out.push(`  source   ${a.source.file ?? '(bytes)'} sha256 ${a.source.sha256.slice(0, 16)}… opset ${a.source.opset} ${a.source.producer}`);
  out.push(`  device   ${p.name}: arrays ${p.array.rows ?? '∞'} × ${p.array.cols ?? '∞'} (pairs on ${p.array.differential}), ` +
    `G ${uS(p.conductance.min)}–${uS(p.conductance.max)}, ${p.conductance.levels || 'continuous'} levels, ` +
    `read ${p.read.voltage} V, DAC ${p.dac.bits || 'ideal'} bits, ADC ${p.adc.bits || 'ideal'} bits`);
  out.push(`  input    ${a.input.name} [${a.input.shape.join(', ')}] ${a.input.dtype}   output ${a.output.name} [batch, ${a.output.features}]${a.head !== 'none' ? ` (${a.head} head)` : ''}`);
  out.push(`  arrays   ${a.arrays.length}`);
  for (const l of a.layers) {
    const ids = l.tiles.map((t) => t.array);
    const used = l.tiles.reduce((s, t) => s + t.inputIndex.length * t.outputIndex.length * 2, 0);
    const cells = [...new Set(ids)].reduce((s, i) => s + a.arrays[i]!.rows * a.arrays[i]!.cols, 0);
    out.push(`  ${l.name.padEnd(8)} ${String(l.inFeatures).padStart(5)} → ${String(l.outFeatures).padEnd(5)} ${act(l.activation).padEnd(16)} ` +
      `${l.tiles.length} tile(s) on arrays ${Math.min(...ids)}–${Math.max(...ids)}, ${used} of ${cells} devices used, from ${l.origin.map((o) => `${o.op} '${o.node}'`).join(', ')}`);
  }
  console.log(out.join('\n'));
}

function modelSummary(graph: Graph, model: LayerModel | undefined, problem: string | undefined) {
  return {
    kind: 'onnx',
    source: graph.source,
    inputs: graph.inputs,
    outputs: graph.outputs,
    nodes: graph.nodes.map((n) => ({ name: n.name, op: n.op })),
    compilable: !problem,
    problem,
    layers: model?.layers.map((l) => ({ name: l.name, inFeatures: l.inFeatures, outFeatures: l.outFeatures, activation: act(l.activation) })),
    head: model?.head,
  };
}

function printModel(file: string, graph: Graph, model: LayerModel | undefined, problem: string | undefined): void {
  const out: string[] = [];
  const ops = new Map<string, number>();
  for (const n of graph.nodes) ops.set(n.op, (ops.get(n.op) ?? 0) + 1);
  out.push(`${file}: ONNX model, opset ${graph.source.opset}, ${graph.source.producer || 'unknown producer'}`);
  for (const v of graph.inputs) out.push(`  input    ${v.name} [${(v.shape ?? []).join(', ')}] ${v.dtype ?? '?'}`);
  for (const v of graph.outputs) out.push(`  output   ${v.name} [${(v.shape ?? []).join(', ')}] ${v.dtype ?? '?'}`);
  out.push(`  nodes    ${graph.nodes.length}: ${[...ops].map(([op, k]) => `${op}×${k}`).join(', ')}`);
  if (model) {
    for (const l of model.layers) out.push(`  ${l.name.padEnd(8)} ${String(l.inFeatures).padStart(5)} → ${String(l.outFeatures).padEnd(5)} ${act(l.activation)}`);
    if (model.head !== 'none') out.push(`  head     ${model.head}`);
    out.push('  compilable: yes');
  } else {
    out.push(`  compilable: no — ${problem}`);
  }
  console.log(out.join('\n'));
}
