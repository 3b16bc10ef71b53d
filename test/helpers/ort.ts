/** ONNX Runtime (onnxruntime-node) as the reference in tests. */
import * as ort from 'onnxruntime-node';

export async function runOrt(model: string | Uint8Array, inputName: string, data: Float32Array, dims: number[]): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(model as Uint8Array, { intraOpNumThreads: 1 });
  try {
    const out = await session.run({ [inputName]: new ort.Tensor('float32', data, dims) });
    return out[session.outputNames[0]!]!.data as Float32Array;
  } finally {
    await session.release();
  }
}
