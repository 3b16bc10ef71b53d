export { InferenceSession, type SessionOptions, type ValueMetadata } from './session.js';
export { Tensor, type TensorType } from './tensor.js';
