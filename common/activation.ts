/**
 * The activations dendra maps onto a chip, and the one translation of each into the native core's code
 * (native/index.ts NativeActivation). The simulator, the training engine and in-situ training all use
 * `nativeActivation`; the native side checks the codes it is handed.
 */
import { NativeActivation } from '../native/index.js';

export type Activation =
  | { kind: 'none' }
  | { kind: 'relu' }
  | { kind: 'sigmoid' }
  | { kind: 'tanh' }
  | { kind: 'leakyrelu'; alpha: number }
  | { kind: 'clip'; min: number; max: number };

/** A clip bound beyond this is no bound (an ONNX Clip without min or max): the native core takes finite numbers. */
const CLIP_LIMIT = 1e30;

/** The native code of an activation and its parameters (leaky slope; clip min and max). */
export function nativeActivation(a: Activation): { activation: NativeActivation; alpha: number; beta: number } {
  switch (a.kind) {
    case 'none': return { activation: NativeActivation.None, alpha: 0, beta: 0 };
    case 'relu': return { activation: NativeActivation.Relu, alpha: 0, beta: 0 };
    case 'sigmoid': return { activation: NativeActivation.Sigmoid, alpha: 0, beta: 0 };
    case 'tanh': return { activation: NativeActivation.Tanh, alpha: 0, beta: 0 };
    case 'leakyrelu': return { activation: NativeActivation.LeakyRelu, alpha: a.alpha, beta: 0 };
    case 'clip': return { activation: NativeActivation.Clip, alpha: Math.max(a.min, -CLIP_LIMIT), beta: Math.min(a.max, CLIP_LIMIT) };
  }
}
