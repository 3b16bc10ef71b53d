/**
 * The host's optimizer for in-situ training: turns gradients into the weight changes ΔW the chip is asked
 * to make (the chip then makes them only approximately: pulse noise, stuck devices, the SET window).
 * SGD: ΔW = −lr·g. RMSprop (the paper's memNN demo: decay 0.9): s ← ρ·s + (1 − ρ)·g², ΔW = −lr·g/(√s + ε).
 */
export type OptimizerKind = 'sgd' | 'rmsprop';

export const OPTIMIZERS: readonly OptimizerKind[] = ['sgd', 'rmsprop'];

/** Learning rates that train the 64-54-10 network on hfo2-1t1r (docs/in-situ.md). */
export const DEFAULT_LR: Record<OptimizerKind, number> = { sgd: 1, rmsprop: 0.01 };

export class HostOptimizer {
  readonly kind: OptimizerKind;
  readonly lr: number;
  readonly decay = 0.9;
  readonly eps = 1e-8;
  readonly #state = new Map<string, Float32Array>();

  constructor(kind: OptimizerKind, lr: number) {
    this.kind = kind;
    this.lr = lr;
  }

  /** The change for parameters `key` given their gradient (a new array). */
  delta(key: string, grad: Float32Array, lr = this.lr): Float32Array {
    const out = new Float32Array(grad.length);
    if (this.kind === 'sgd') {
      for (let i = 0; i < grad.length; i++) out[i] = -lr * grad[i]!;
      return out;
    }
    let s = this.#state.get(key);
    if (!s) {
      s = new Float32Array(grad.length);
      this.#state.set(key, s);
    }
    const rho = this.decay;
    for (let i = 0; i < grad.length; i++) {
      const g = grad[i]!;
      s[i] = rho * s[i]! + (1 - rho) * g * g;
      out[i] = (-lr * g) / (Math.sqrt(s[i]!) + this.eps);
    }
    return out;
  }
}
