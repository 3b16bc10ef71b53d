import { checkOutputPath } from '../common/files.js';
import { writeNpyFile } from '../common/npy.js';
import { readTokenFile } from '../runtime/backends/device/auth.js';
import { InferenceSession } from '../runtime/index.js';
import { readInputs, runAll } from './io.js';

export interface RunArgs {
  input: string;
  output: string;
  seed?: number;
  threads?: number;
  time?: number;
  /** Board URL: run on the device backend instead of the simulator. */
  device?: string;
  /** Run inputs that hold NaN or ±Infinity (counted and reported) instead of refusing them. */
  allowNonfinite?: boolean;
  tokenFile?: string;
}

export async function runCommand(artifact: string, opts: RunArgs): Promise<void> {
  checkOutputPath(opts.output, ['.npy'], '--output');
  const session = await InferenceSession.create(artifact, { seed: opts.seed, threads: opts.threads, time: opts.time, device: opts.device, ...(opts.tokenFile !== undefined ? { link: { token: readTokenFile(opts.tokenFile) } } : {}) });
  try {
    const { x, n, nonfinite } = readInputs(session, opts.input, undefined, opts.allowNonfinite);
    const y = await runAll(session, x.data, n);
    const width = session.artifact.output.features;
    writeNpyFile(opts.output, y, [n, width]);
    if (nonfinite) console.log(`warning: ${nonfinite} non-finite input values were run as given (--allow-nonfinite)`);
    console.log(`ran ${n} samples through ${artifact} -> ${opts.output} (float32 [${n}, ${width}])`);
  } finally {
    await session.release();
  }
}
