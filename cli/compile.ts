import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { compile } from '../compiler/index.js';
import { writeArtifact } from '../artifact/write.js';
import { InputError } from '../common/errors.js';
import { readNpyFile } from '../common/npy.js';

export interface CompileArgs {
  device?: string;
  output: string;
  defects?: string;
  remap?: 'none' | 'auto';
  calibrate?: string;
}

export function compileCommand(model: string, opts: CompileArgs): void {
  const t0 = performance.now();
  const calibrate = opts.calibrate ? readNpyFile(opts.calibrate).data : undefined;
  const artifact = compile(model, { device: opts.device ?? 'ideal', defects: opts.defects, remap: opts.remap, calibrate });
  const bytes = writeArtifact(artifact);
  try {
    mkdirSync(dirname(opts.output), { recursive: true });
    writeFileSync(opts.output, bytes);
  } catch (e) {
    throw new InputError(`cannot write ${opts.output}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { file: opts.output });
  }
  const ms = performance.now() - t0;
  const shape = [artifact.layers[0]!.inFeatures, ...artifact.layers.map((l) => l.outFeatures)].join('-');
  console.log(
    `compiled ${model} (${shape}) for ${artifact.profile.name}: ${artifact.layers.length} layers on ${artifact.arrays.length} arrays` +
      (artifact.chip ? ` of a chip with ${artifact.chip.faults} stuck cells (remap ${artifact.chip.remap}${artifact.chip.calibrated ? ', calibrated' : ''})` : '') +
      ` -> ${opts.output} (${(bytes.length / 1024).toFixed(1)} KiB, ${ms.toFixed(0)} ms)`,
  );
}
