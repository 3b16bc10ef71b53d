import { makeOutputFolder } from '../common/files.js';
import { join } from 'node:path';
import { colouriseDigits, loadMnist, type MnistSize, type MnistSplit } from '../common/mnist.js';
import { writeNpyFile } from '../common/npy.js';
import { InputError } from '../common/errors.js';

export interface MnistArgs {
  split: string;
  size: string;
  output: string;
  /** Seed of the SVHN-shaped colouring (colouriseDigits); absent: the plain digits. */
  colour?: string;
}

/** `dendra data mnist`: writes one split of the shipped MNIST digits as inputs.npy (float32) and labels.npy (uint8). */
export function dataMnistCommand(opts: MnistArgs): void {
  const size = Number(opts.size);
  if (size !== 28 && size !== 8) throw new InputError(`--size must be 28 or 8 (got '${opts.size}')`);
  let colourSeed: number | undefined;
  if (opts.colour !== undefined) {
    colourSeed = Number(opts.colour);
    if (!Number.isInteger(colourSeed) || colourSeed < 0 || colourSeed > 0xffffffff) throw new InputError(`--colour takes a seed, an integer from 0 to 4294967295 (got '${opts.colour}')`);
    if (size !== 28) throw new InputError('--colour pads the 28 × 28 digits to 32 × 32 colour images; it does not go with --size 8');
  }
  const data = loadMnist(opts.split as MnistSplit, size as MnistSize);
  if (colourSeed !== undefined) Object.assign(data, colouriseDigits(data.x, colourSeed));
  makeOutputFolder(opts.output, '-o');
  const inputs = join(opts.output, 'inputs.npy');
  const labels = join(opts.output, 'labels.npy');
  writeNpyFile(inputs, data.x, data.shape);
  writeNpyFile(labels, data.labels, [data.labels.length]);
  console.log(`wrote ${inputs} (float32 [${data.shape.join(', ')}]) and ${labels} (uint8 [${data.labels.length}]): the MNIST ${opts.split} split, ${colourSeed !== undefined ? `coloured as the SVHN-shaped fixture (seed ${colourSeed}), 32 × 32 × 3` : `${size} × ${size}`}`);
}
