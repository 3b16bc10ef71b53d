/**
 * ONNX bytes (and external data files) → Graph IR. All protobuf handling lives here.
 */
import { createHash } from 'node:crypto';
import { realpathSync, statSync, openSync, readSync, closeSync } from 'node:fs';
import { dirname, isAbsolute, resolve, sep } from 'node:path';
import onnxProto from 'onnx-proto';
import type { onnx as OnnxTypes } from 'onnx-proto';
import { dtypeByOnnx, toFloat32, type DTypeInfo } from '../../common/dtypes.js';
import { ModelError } from '../../common/errors.js';
import { LIMITS, readBounded } from '../../common/files.js';
import type { AttrValue, Graph, GraphNode, GraphTensor, GraphValue } from '../ir/graph.js';

const { onnx } = onnxProto;
type Long = { toNumber(): number };
type IntLike = number | Long | null | undefined;

export const MIN_OPSET = 9;
export const MAX_OPSET = 21;

function num(x: IntLike): number {
  if (x === null || x === undefined) return 0;
  return typeof x === 'number' ? x : x.toNumber();
}

export interface LoadOptions {
  /** Path of the .onnx file: names it in errors and locates external data. */
  file?: string;
}

/** Reads an .onnx file from disk. */
export function loadOnnxFile(file: string): Graph {
  return loadOnnx(readBounded(file, LIMITS.model, 'model file', ModelError), { file });
}

/** Decodes ONNX bytes into Graph IR; every problem is a ModelError naming the node or tensor. */
export function loadOnnx(bytes: Uint8Array, options: LoadOptions = {}): Graph {
  const file = options.file;
  if (bytes.length === 0) throw new ModelError('model file is empty', { file });
  let model: OnnxTypes.ModelProto;
  try {
    model = onnx.ModelProto.decode(bytes);
  } catch (e) {
    throw new ModelError(`not a valid ONNX model (truncated or corrupt protobuf: ${(e as Error).message})`, { file });
  }
  const graph = model.graph;
  if (!graph || !graph.node || graph.node.length === 0) {
    throw new ModelError('not a valid ONNX model (no graph or no nodes)', { file });
  }
  let opset = 0;
  for (const imp of model.opsetImport ?? []) {
    if (!imp.domain || imp.domain === 'ai.onnx') opset = num(imp.version);
  }
  if (opset === 0) throw new ModelError('not a valid ONNX model (no default-domain opset_import)', { file });
  if (opset < MIN_OPSET || opset > MAX_OPSET) {
    throw new ModelError(`opset ${opset} is not supported (dendra reads opsets ${MIN_OPSET} to ${MAX_OPSET})`, { file });
  }

  const ctx: TensorContext = { file, baseDir: file ? dirname(resolve(file)) : undefined };
  const constants = new Map<string, GraphTensor>();
  for (const t of graph.initializer ?? []) {
    const tensor = decodeTensor(t, ctx);
    constants.set(tensor.name, tensor);
  }
  const nodes: GraphNode[] = graph.node.map((n, i) => {
    const name = n.name || `${n.opType ?? '?'}_${i}`;
    const node: GraphNode = {
      name,
      op: n.opType ?? '',
      inputs: [...(n.input ?? [])],
      outputs: [...(n.output ?? [])],
      attrs: {},
    };
    if (n.domain && n.domain !== 'ai.onnx') {
      throw new ModelError(`node '${name}' (${n.domain}::${node.op}) is from the custom domain '${n.domain}', which dendra does not support`, { file, node: name, op: node.op });
    }
    for (const a of n.attribute ?? []) node.attrs[a.name ?? ''] = decodeAttr(a, ctx, name);
    return node;
  });

  const isConst = (name: string) => constants.has(name);
  const inputs = (graph.input ?? []).filter((v) => !isConst(v.name ?? '')).map(valueInfo);
  const outputs = (graph.output ?? []).map(valueInfo);
  return {
    source: {
      file,
      sha256: createHash('sha256').update(bytes).digest('hex'),
      producer: `${model.producerName ?? ''} ${model.producerVersion ?? ''}`.trim(),
      opset,
    },
    inputs,
    outputs,
    constants,
    nodes,
  };
}

function valueInfo(v: OnnxTypes.IValueInfoProto): GraphValue {
  const tt = v.type?.tensorType;
  const dims = tt?.shape?.dim;
  return {
    name: v.name ?? '',
    dtype: tt?.elemType ? dtypeByOnnx(tt.elemType)?.name : undefined,
    shape: dims ? dims.map((d) => (d.dimParam ? d.dimParam : d.dimValue !== null && d.dimValue !== undefined ? num(d.dimValue) : null)) : undefined,
  };
}

interface TensorContext {
  file?: string;
  baseDir?: string;
}

function decodeAttr(a: OnnxTypes.IAttributeProto, ctx: TensorContext, node: string): AttrValue {
  const T = onnx.AttributeProto.AttributeType;
  switch (a.type) {
    case T.FLOAT: return a.f ?? 0;
    case T.INT: return num(a.i);
    case T.STRING: return Buffer.from(a.s ?? new Uint8Array()).toString('utf8');
    case T.FLOATS: return [...(a.floats ?? [])];
    case T.INTS: return (a.ints ?? []).map(num);
    case T.TENSOR: return decodeTensor(a.t ?? {}, ctx, `${node}.${a.name}`);
    default: return 0; // graphs, sparse tensors, strings lists: no supported op uses them
  }
}

/** TensorProto → float32 GraphTensor: raw_data, typed fields or external data; any dtype in the table. */
export function decodeTensor(t: OnnxTypes.ITensorProto, ctx: TensorContext, fallbackName = ''): GraphTensor {
  const name = t.name || fallbackName;
  const where = { file: ctx.file, tensor: name };
  const dims = (t.dims ?? []).map(num);
  if (dims.some((d) => !Number.isInteger(d) || d < 0)) throw new ModelError(`tensor '${name}' has an invalid shape [${dims.join(', ')}]`, where);
  const count = dims.reduce((a, b) => a * b, 1);
  const info = dtypeByOnnx(t.dataType ?? 0);
  if (!info) {
    const typeName = onnx.TensorProto.DataType[t.dataType ?? 0] ?? String(t.dataType);
    throw new ModelError(`tensor '${name}' has element type ${typeName}; dendra reads float32, float16, bfloat16, float64 and integer tensors`, where);
  }
  let data: Float32Array;
  if (t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) {
    data = toFloat32(readExternal(t, ctx, name, count * info.bytes), info, count);
  } else if (t.rawData && t.rawData.length > 0) {
    if (t.rawData.length !== count * info.bytes) {
      throw new ModelError(`tensor '${name}' holds ${t.rawData.length} bytes of raw data but its shape [${dims.join(', ')}] of ${info.name} needs ${count * info.bytes}`, where);
    }
    data = toFloat32(t.rawData, info, count);
  } else {
    data = fromTypedField(t, info, count, name, where);
  }
  return { name, dims, dtype: info.name, data };
}

function fromTypedField(t: OnnxTypes.ITensorProto, info: DTypeInfo, count: number, name: string, where: object): Float32Array {
  let values: ArrayLike<number>;
  switch (info.name) {
    case 'float32': values = t.floatData ?? []; break;
    case 'float64': values = t.doubleData ?? []; break;
    case 'int64': values = (t.int64Data ?? []).map(num); break;
    default: values = t.int32Data ?? []; // int32, int8, uint8, and the 16-bit patterns of float16/bfloat16
  }
  if (values.length !== count) throw new ModelError(`tensor '${name}' holds ${values.length} values but its shape needs ${count}`, where);
  if (info.name === 'float16' || info.name === 'bfloat16') {
    const bits = Uint16Array.from(values, (x) => x & 0xffff);
    return toFloat32(new Uint8Array(bits.buffer), info, count);
  }
  return Float32Array.from(values);
}

function readExternal(t: OnnxTypes.ITensorProto, ctx: TensorContext, name: string, expected: number): Uint8Array {
  const where = { file: ctx.file, tensor: name };
  const entries = new Map((t.externalData ?? []).map((e): [string, string] => [e.key ?? '', e.value ?? '']));
  const location = entries.get('location');
  if (!location) throw new ModelError(`tensor '${name}' is marked external but names no location`, where);
  if (!ctx.baseDir) throw new ModelError(`tensor '${name}' keeps its data in the external file '${location}'; load the model from its path so the file can be found`, where);
  const offset = Number(entries.get('offset') ?? '0');
  const length = entries.has('length') ? Number(entries.get('length')) : expected;
  if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
    throw new ModelError(`tensor '${name}' has an invalid external offset/length (${entries.get('offset')}, ${entries.get('length')})`, where);
  }
  const base = realpathSync(ctx.baseDir);
  const target = resolve(base, location);
  if (isAbsolute(location) || !(target.startsWith(base + sep))) {
    throw new ModelError(`tensor '${name}' points at external data '${location}' outside the model's folder; refused`, where);
  }
  let real: string;
  try {
    real = realpathSync(target);
  } catch {
    throw new ModelError(`external data file '${location}' of tensor '${name}' is missing`, where);
  }
  if (!real.startsWith(base + sep)) throw new ModelError(`external data '${location}' of tensor '${name}' links outside the model's folder; refused`, where);
  const st = statSync(real);
  if (!st.isFile()) throw new ModelError(`external data '${location}' of tensor '${name}' is ${st.isDirectory() ? 'a directory' : 'not a regular file'}; refused`, where);
  const size = st.size;
  if (length > LIMITS.externalData) throw new ModelError(`tensor '${name}': external length ${length} bytes exceeds the ${LIMITS.externalData}-byte limit (docs/limits.md)`, where);
  if (length !== expected) throw new ModelError(`tensor '${name}': external length ${length} bytes does not match its shape (${expected} bytes)`, where);
  if (offset + length > size) {
    throw new ModelError(`tensor '${name}': external data '${location}' is ${size} bytes, too short for offset ${offset} + length ${length} (truncated?)`, where);
  }
  const out = new Uint8Array(length);
  const fd = openSync(real, 'r');
  try {
    readSync(fd, out, 0, length, offset);
  } finally {
    closeSync(fd);
  }
  return out;
}
