import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { loadMnist, type MnistSize, type MnistSplit } from '../common/mnist.js';
import { writeNpyFile } from '../common/npy.js';
import { InputError } from '../common/errors.js';

export interface MnistArgs {
  split: string;
  size: string;
  output: string;
}

/** `dendra data mnist`: writes one split of the shipped MNIST digits as inputs.npy (float32) and labels.npy (uint8). */
export function dataMnistCommand(opts: MnistArgs): void {
  const size = Number(opts.size);
  if (size !== 28 && size !== 8) throw new InputError(`--size must be 28 or 8 (got '${opts.size}')`);
  const data = loadMnist(opts.split as MnistSplit, size as MnistSize);
  try {
    mkdirSync(opts.output, { recursive: true });
  } catch (e) {
    throw new InputError(`cannot create the output folder: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { file: opts.output });
  }
  const inputs = join(opts.output, 'inputs.npy');
  const labels = join(opts.output, 'labels.npy');
  writeNpyFile(inputs, data.x, data.shape);
  writeNpyFile(labels, data.labels, [data.labels.length]);
  console.log(`wrote ${inputs} (float32 [${data.shape.join(', ')}]) and ${labels} (uint8 [${data.labels.length}]): the MNIST ${opts.split} split, ${size} × ${size}`);
}
