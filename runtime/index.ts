export { InferenceSession, type SessionOptions, type ValueMetadata, type EnergyReport } from './session.js';
export { Tensor, type TensorType } from './tensor.js';
