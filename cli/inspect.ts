import { checkOutputPath, LIMITS, parseJsonQuiet, readBounded } from '../common/files.js';
import { isArtifact, readArtifact } from '../artifact/read.js';
import type { Artifact } from '../artifact/format.js';
import { fuseLayers, foldBatchnorm, loadOnnx, lower } from '../compiler/index.js';
import type { Activation, Graph, LayerModel } from '../compiler/index.js';
import { describe, InputError } from '../common/errors.js';
import { validateDefectMap, type DefectMap } from '../common/defects.js';
import type { PNG } from 'pngjs';
import { artifactPicture, defectMapPicture, writePng, type Layout } from './pictures.js';

const act = (a: Activation) =>
  a.kind === 'leakyrelu' ? `leakyrelu(${a.alpha})` : a.kind === 'clip' ? `clip(${a.min}, ${a.max})` : a.kind;
const uS = (g: number) => `${(g * 1e6).toPrecision(4)} uS`;

export interface InspectArgs {
  json?: boolean;
  /** Draw the artifact's arrays or the defect map's fault map into this PNG. */
  png?: string;
}

export function inspectCommand(file: string, opts: InspectArgs): void {
  if (opts.png !== undefined) checkOutputPath(opts.png, ['.png'], '--png');
  const bytes: Uint8Array = readBounded(file, Math.max(LIMITS.model, LIMITS.artifact), 'file');
  if (isArtifact(bytes)) {
    const a = readArtifact(bytes, file);
    const png = opts.png ? picture(opts.png, artifactPicture(a)) : undefined;
    if (opts.json) console.log(JSON.stringify({ ...artifactSummary(a), ...(png && { png }) }));
    else printArtifact(file, a, png);
  } else if (looksLikeJson(bytes)) {
    if (bytes.length > LIMITS.defectMap) throw new InputError(`${file}: a defect map is at most ${LIMITS.defectMap} bytes (docs/limits.md)`, { file });
    const json = parseJsonQuiet(Buffer.from(bytes).toString('utf8'), `${file} is neither a .dendra artifact nor an ONNX model, and`, InputError, file);
    const map = validateDefectMap(json, file);
    const png = opts.png ? picture(opts.png, defectMapPicture(map)) : undefined;
    if (opts.json) console.log(JSON.stringify({ ...defectMapSummary(map), ...(png && { png }) }));
    else printDefectMap(file, map, png);
  } else {
    if (opts.png) throw new InputError(`--png draws a .dendra artifact or a defect map; ${file} is an ONNX model (compile it first)`, { file });
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

/** A defect map is JSON: its first non-blank byte is '{' (an ONNX protobuf never starts so). */
function looksLikeJson(bytes: Uint8Array): boolean {
  for (const b of bytes) {
    if (b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d || b === 0xef || b === 0xbb || b === 0xbf) continue; // blanks, UTF-8 BOM
    return b === 0x7b;
  }
  return false;
}

interface PictureInfo {
  file: string;
  width: number;
  height: number;
  cellPx: number;
  gridCols: number;
  gridRows: number;
}

function picture(file: string, p: { png: PNG; layout: Layout }): PictureInfo {
  writePng(file, p.png);
  const { width, height, cellPx, gridCols, gridRows } = p.layout;
  return { file, width, height, cellPx, gridCols, gridRows };
}

const pictureLine = (p: PictureInfo, what: string) =>
  `  picture  ${p.file}: ${p.width} × ${p.height} px, ${what} at ${p.cellPx} px per cell, in ${p.gridRows} row(s) of ${p.gridCols}`;

function defectMapSummary(m: DefectMap) {
  const counts = m.arrays.map((a) => a.faults.length);
  const on = m.arrays.reduce((s, a) => s + a.faults.filter((f) => f[2] === 'on').length, 0);
  const faults = counts.reduce((s, k) => s + k, 0);
  const cells = m.arrays.reduce((s, a) => s + a.rows * a.cols, 0);
  const sizes = [...new Set(m.arrays.map((a) => `${a.rows} × ${a.cols}`))];
  return {
    kind: 'defects',
    device: m.device,
    arrays: m.arrays.length,
    sizes,
    cells,
    faults,
    on,
    off: faults - on,
    rate: faults / cells,
    perArray: { min: Math.min(...counts), max: Math.max(...counts), faultFree: counts.filter((k) => k === 0).length },
    origin: m.origin ?? {},
  };
}

function printDefectMap(file: string, m: DefectMap, png?: PictureInfo): void {
  const s = defectMapSummary(m);
  const stuckAt = (state: 'on' | 'off') => {
    const g = m.arrays.flatMap((a) => a.faults.filter((f) => f[2] === state).map((f) => f[3]));
    if (g.length === 0) return '';
    const lo = Math.min(...g);
    const hi = Math.max(...g);
    return ` at ${lo === hi ? uS(lo) : `${uS(lo)}–${uS(hi)}`}`;
  };
  const origin = Object.entries(s.origin).map(([k, v]) => `${k} ${typeof v === 'string' ? v : JSON.stringify(v)}`).join(', ');
  const out = [
    `${file}: defect map of a ${m.device} chip`,
    `  arrays   ${s.arrays} of ${s.sizes.join(', ')} (${s.cells} cells)`,
    `  faults   ${s.faults} stuck cells (rate ${(100 * s.rate).toFixed(2)} %): ${s.on} ON${stuckAt('on')}, ${s.off} OFF${stuckAt('off')}`,
    `  spread   ${s.perArray.min}–${s.perArray.max} stuck cells per array, ${s.perArray.faultFree} array(s) fault-free`,
    `  origin   ${origin || '(not given)'}`,
  ];
  if (png) out.push(pictureLine(png, `${s.arrays} arrays`));
  console.log(out.join('\n'));
}

/** Inputs per branch of a dendritic layer. */
function branchSizes(l: Artifact['layers'][number]): number[] {
  const d = l.dendrites!;
  const sizes = new Array<number>(d.count).fill(0);
  for (const b of d.branchOf) sizes[b]!++;
  return sizes;
}

function dendriteSummary(l: Artifact['layers'][number]) {
  const d = l.dendrites;
  if (!d) return undefined;
  const tilesPerBranch = new Array<number>(d.count).fill(0);
  for (const t of l.tiles) tilesPerBranch[t.branch ?? 0]!++;
  return {
    count: d.count, strategy: d.strategy, inputsPerBranch: branchSizes(l), tilesPerBranch,
    fullScale: d.fullScale, biasScale: d.biasScale, soma: d.soma, calibrated: d.calibrated, branchOf: Array.from(d.branchOf),
  };
}

/** "320 ×3, 384 ×3" style: runs of equal sizes. */
function sizesText(sizes: number[]): string {
  const runs: [number, number][] = [];
  for (const s of sizes) {
    const last = runs[runs.length - 1];
    if (last && last[0] === s) last[1]++;
    else runs.push([s, 1]);
  }
  return runs.map(([s, k]) => (k > 1 ? `${s}×${k}` : `${s}`)).join(' ');
}

const stuckCount = (a: Artifact) => a.arrays.reduce((s, arr) => s + (arr.stuck ? arr.stuck.reduce((k, v) => k + (v ? 1 : 0), 0) : 0), 0);

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
      ...(l.dendrites ? { dendrites: dendriteSummary(l) } : {}),
      ...(l.somaFullScale !== undefined ? { somaFullScale: l.somaFullScale } : {}),
    })),
    ...(a.profile.dendrite ? { dendriteDevice: a.profile.dendrite } : {}),
    ...(a.dendrites ? { dendritePasses: a.dendrites } : {}),
    ...(a.chip && { chip: { ...a.chip, chipArrays: a.arrays.map((arr) => arr.chipArray), stuckInUsedArrays: stuckCount(a) } }),
  };
}

function printArtifact(file: string, a: Artifact, png?: PictureInfo): void {
  const p = a.profile;
  const out: string[] = [];
  out.push(`${file}: dendra artifact`);
  out.push(`  source   ${a.source.file ?? '(bytes)'} sha256 ${a.source.sha256.slice(0, 16)}… opset ${a.source.opset} ${a.source.producer}`);
  out.push(`  device   ${p.name}: arrays ${p.array.rows ?? '∞'} × ${p.array.cols ?? '∞'} (pairs on ${p.array.differential}), ` +
    `G ${uS(p.conductance.min)}–${uS(p.conductance.max)}, ${p.conductance.levels || 'continuous'} levels, ` +
    `read ${p.read.voltage} V, DAC ${p.dac.bits || 'ideal'} bits, ADC ${p.adc.bits || 'ideal'} bits`);
  out.push(`  input    ${a.input.name} [${a.input.shape.join(', ')}] ${a.input.dtype}   output ${a.output.name} [batch, ${a.output.features}]${a.head !== 'none' ? ` (${a.head} head)` : ''}`);
  if (p.dendrite) {
    const d = p.dendrite;
    out.push(`  dendrite ${d.kind}${d.kind === 'exponential' ? ` n = ${d.nonlinearity}` : ` threshold ${d.threshold}`}, ON/OFF ${d.onOffRatio}, ` +
      `${d.voltage} V applied (ON at ${d.onVoltage} V)${d.rectify ? ', rectifying' : ''}, variation ${(100 * d.variation).toFixed(0)} %`);
  }
  out.push(`  arrays   ${a.arrays.length}`);
  if (a.dendrites) {
    if (a.dendrites.calibration) out.push(`  calibrated ${a.dendrites.calibration}`);
    if (a.dendrites.finetune) out.push(`  fine-tuned ${a.dendrites.finetune}`);
  }
  if (a.chip) {
    out.push(`  chip     ${a.chip.device} chip of ${a.chip.arrays} arrays with ${a.chip.faults} stuck cells, ${stuckCount(a)} of them in the arrays used ` +
      `(remap ${a.chip.remap}${a.chip.calibrated ? ', calibrated' : ''})`);
  }
  for (const l of a.layers) {
    const ids = l.tiles.map((t) => t.array);
    const used = l.tiles.reduce((s, t) => s + t.inputIndex.length * t.outputIndex.length * 2, 0);
    const cells = [...new Set(ids)].reduce((s, i) => s + a.arrays[i]!.rows * a.arrays[i]!.cols, 0);
    out.push(`  ${l.name.padEnd(8)} ${String(l.inFeatures).padStart(5)} → ${String(l.outFeatures).padEnd(5)} ${act(l.activation).padEnd(16)} ` +
      `${l.tiles.length} tile(s) on arrays ${Math.min(...ids)}–${Math.max(...ids)}, ${used} of ${cells} devices used, from ${l.origin.map((o) => `${o.op} '${o.node}'`).join(', ')}`);
    const d = l.dendrites;
    if (d) {
      const t = dendriteSummary(l)!;
      const soma = d.soma.kind === 'threshold' ? `threshold soma (θ ${d.soma.theta}, scale ${d.soma.scale})` : `${act(l.activation)} soma`;
      out.push(`           dendrites: ${d.count} branches (${d.strategy}) of ${sizesText(t.inputsPerBranch)} inputs on ${sizesText(t.tilesPerBranch)} tile(s) each; ` +
        `F ${d.fullScale.toPrecision(4)}, κ ${d.biasScale.toPrecision(4)}, ${soma}${d.calibrated ? ', calibrated' : ', gains from the weights'}`);
    }
  }
  if (png) out.push(pictureLine(png, `${a.arrays.length} arrays`));
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
