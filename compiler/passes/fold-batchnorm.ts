/**
 * Pass: LayerChain → LayerChain without BatchNormalization. Inference-mode batch norm is an affine map
 * per feature, y = a·x + c with a = scale/√(var+ε), c = B − mean·a. It folds into the dense layer
 * before it (scaling that layer's columns and bias), or, where an activation stands between, into the
 * dense layer after it (scaling that layer's rows and shifting its bias). Neither folds into a dendritic layer
 * (an imported one with `dendrites`): that is refused.
 */
import { ModelError } from '../../common/errors.js';
import type { ChainOp, LayerChain } from '../ir/layers.js';

type Dense = Extract<ChainOp, { kind: 'dense' }>;
type BatchNorm = Extract<ChainOp, { kind: 'batchnorm' }>;

function affine(bn: BatchNorm): { a: Float64Array; c: Float64Array } {
  const n = bn.scale.length;
  const a = new Float64Array(n);
  const c = new Float64Array(n);
  for (let j = 0; j < n; j++) {
    a[j] = bn.scale[j]! / Math.sqrt(bn.variance[j]! + bn.epsilon);
    c[j] = bn.shift[j]! - bn.mean[j]! * a[j]!;
  }
  return { a, c };
}

export function foldBatchnorm(chain: LayerChain): LayerChain {
  const out: ChainOp[] = [];
  let pending: BatchNorm | undefined; // a batch norm waiting for the dense layer after it
  for (const op of chain.ops) {
    if (op.kind === 'batchnorm') {
      if (pending) throw refuse(chain, pending, 'is followed by another BatchNormalization');
      // Biases between the dense layer and the batch norm are merged into the dense layer first.
      let k = out.length - 1;
      const biases: Extract<ChainOp, { kind: 'bias' }>[] = [];
      while (k >= 0 && out[k]!.kind === 'bias') biases.push(out[k--] as Extract<ChainOp, { kind: 'bias' }>);
      const prev = out[k];
      if (prev?.kind === 'dense') {
        if (prev.dendrites) throw refuse(chain, op, `follows the dendritic layer ${prev.origin.op} '${prev.origin.node}': its per-feature scale cannot pass back through the dendrites' nonlinearity into the weights; fold it in before export or drop it`);
        const { a, c } = affine(op);
        const n = prev.outFeatures;
        const weight = new Float32Array(prev.weight.length);
        const bias = new Float32Array(n);
        for (let j = 0; j < n; j++) {
          let b = prev.bias[j]!;
          for (const extra of biases) b += extra.bias[j]!;
          bias[j] = b * a[j]! + c[j]!;
        }
        for (let i = 0; i < prev.inFeatures; i++) {
          for (let j = 0; j < n; j++) weight[i * n + j] = prev.weight[i * n + j]! * a[j]!;
        }
        out.length = k;
        out.push({ ...prev, origin: prev.origin, weight, bias });
      } else {
        pending = op;
      }
      continue;
    }
    if (pending) {
      if (op.kind !== 'dense') throw refuse(chain, pending, `is followed by ${op.origin.op} '${op.origin.node}' instead of a dense layer it could fold into`);
      if (op.dendrites) throw refuse(chain, pending, `is followed by the dendritic layer ${op.origin.op} '${op.origin.node}': its shift would act inside the branches, before the dendrites, which no weight or bias of that layer can express`);
      const { a, c } = affine(pending);
      const n = op.outFeatures;
      const weight = new Float32Array(op.weight.length);
      const bias = new Float64Array(op.bias);
      for (let i = 0; i < op.inFeatures; i++) {
        for (let j = 0; j < n; j++) {
          const w = op.weight[i * n + j]!;
          weight[i * n + j] = w * a[i]!;
          bias[j]! += c[i]! * w;
        }
      }
      out.push({ ...op, weight, bias: Float32Array.from(bias) });
      pending = undefined;
      continue;
    }
    out.push(op);
  }
  if (pending) throw refuse(chain, pending, 'ends the network; there is no dense layer to fold it into');
  return { ...chain, ops: out };
}

function refuse(chain: LayerChain, bn: BatchNorm, why: string): ModelError {
  return new ModelError(`BatchNormalization '${bn.origin.node}' ${why}`, { file: chain.source.file, node: bn.origin.node, op: 'BatchNormalization' });
}
