/**
 * Pass: LayerChain (after batch-norm folding) → LayerModel. Each dense op opens a crossbar layer; the
 * bias adds and the single activation after it join that layer; a Softmax/LogSoftmax at the very end
 * becomes the digital output head. A dense op's `dendrites` (an imported dendritic layer) go with its layer.
 */
import { ModelError, type ErrorWhere } from '../../common/errors.js';
import type { DenseLayer, Head, LayerChain, LayerModel, Origin } from '../ir/layers.js';

export function fuseLayers(chain: LayerChain): LayerModel {
  const layers: DenseLayer[] = [];
  let head: Head = 'none';
  const file = chain.source.file;
  for (const op of chain.ops) {
    const where = { file, node: op.origin.node, op: op.origin.op };
    if (head !== 'none') throw new ModelError(`${op.origin.op} '${op.origin.node}' comes after the ${head} output head; the head must be the last op`, where);
    const layer = layers[layers.length - 1];
    switch (op.kind) {
      case 'dense':
        layers.push({
          name: `layer${layers.length}`,
          origin: [op.origin],
          inFeatures: op.inFeatures,
          outFeatures: op.outFeatures,
          weight: op.weight,
          bias: Float32Array.from(op.bias),
          activation: { kind: 'none' },
          ...(op.dendrites ? { dendrites: op.dendrites } : {}),
        });
        break;
      case 'bias':
        if (layer?.dendrites?.soma.kind === 'threshold') throw afterSoma(op.origin, layer.name, where);
        if (!layer || layer.activation.kind !== 'none') {
          throw new ModelError(`Add '${op.origin.node}' must follow a dense layer directly (before its activation)`, where);
        }
        for (let j = 0; j < layer.outFeatures; j++) layer.bias[j]! += op.bias[j]!;
        layer.origin.push(op.origin);
        break;
      case 'activation':
        if (!layer) throw new ModelError(`${op.origin.op} '${op.origin.node}' comes before any dense layer; dendra applies activations after a crossbar layer`, where);
        if (layer.dendrites?.soma.kind === 'threshold') throw afterSoma(op.origin, layer.name, where);
        if (layer.activation.kind !== 'none') throw new ModelError(`${op.origin.op} '${op.origin.node}' is a second activation on ${layer.name}; dendra applies one activation per layer`, where);
        layer.activation = op.activation;
        layer.origin.push(op.origin);
        break;
      case 'head':
        if (!layer) throw new ModelError(`${op.origin.op} '${op.origin.node}' comes before any dense layer`, where);
        head = op.head;
        break;
      case 'batchnorm':
        throw new ModelError(`BatchNormalization '${op.origin.node}' was not folded (run foldBatchnorm first)`, where);
    }
  }
  const { ops: _ops, ...rest } = chain;
  return { ...rest, layers, head };
}

function afterSoma(origin: Origin, layer: string, where: ErrorWhere): ModelError {
  return new ModelError(`${origin.op} '${origin.node}' follows the threshold soma of the dendritic ${layer}; dendra takes nothing between a threshold soma and the next layer`, where);
}
