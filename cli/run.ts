import { writeNpyFile } from '../common/npy.js';
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
}

export async function runCommand(artifact: string, opts: RunArgs): Promise<void> {
  const session = await InferenceSession.create(artifact, { seed: opts.seed, threads: opts.threads, time: opts.time, device: opts.device });
  try {
    const { x, n } = readInputs(session, opts.input);
    const y = await runAll(session, x.data, n);
    const width = session.artifact.output.features;
    writeNpyFile(opts.output, y, [n, width]);
    console.log(`ran ${n} samples through ${artifact} -> ${opts.output} (float32 [${n}, ${width}])`);
  } finally {
    await session.release();
  }
}
