import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { compile } from '../compiler/index.js';
import { writeArtifact } from '../artifact/write.js';
import { InputError } from '../common/errors.js';

export interface CompileArgs {
  device?: string;
  output: string;
}

export function compileCommand(model: string, opts: CompileArgs): void {
  const t0 = performance.now();
  const artifact = compile(model, { device: opts.device ?? 'ideal' });
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
      ` -> ${opts.output} (${(bytes.length / 1024).toFixed(1)} KiB, ${ms.toFixed(0)} ms)`,
  );
}
