import { writeFileSync } from 'node:fs';
import { readArtifactBytes } from '../artifact/read.js';
import { writeDefectMap } from '../common/defects.js';
import { InputError } from '../common/errors.js';
import { connectBoard } from '../runtime/backends/device/client.js';
import { deploy } from '../runtime/backends/device/deploy.js';
import { progressBar } from './progress.js';

export interface DeployArgs {
  device: string;
  tolerance?: string;
  maxAttempts?: number;
  report?: string;
  defectsOut?: string;
  force?: boolean;
}

export async function deployCommand(artifact: string, opts: DeployArgs): Promise<void> {
  const bytes = readArtifactBytes(artifact);
  const tolerance = opts.tolerance === undefined ? undefined : Number(opts.tolerance) * 1e-6;
  if (tolerance !== undefined && !(tolerance > 0)) throw new InputError(`--tolerance must be a positive number of microsiemens (got '${opts.tolerance}')`);
  let bar: ReturnType<typeof progressBar> | undefined;
  const { report, defects } = await deploy(bytes, () => connectBoard(opts.device), {
    tolerance,
    maxAttempts: opts.maxAttempts,
    force: opts.force,
    onProgress: (done, arrays) => {
      bar ??= progressBar('programming', arrays, 'arrays');
      bar.update(done);
    },
  });
  bar?.stop();
  const reportFile = opts.report ?? artifact.replace(/\.dendra$/, '') + '.verify.json';
  const defectsFile = opts.defectsOut ?? artifact.replace(/\.dendra$/, '') + '.defects.json';
  writeFileSync(reportFile, JSON.stringify(report, null, 2) + '\n');
  writeDefectMap(defectsFile, defects);
  if (report.skipped) {
    console.log(`${opts.device} already holds a verified deployment of ${artifact}; nothing programmed (--force to program again)`);
    return;
  }
  const programmed = report.cells - report.skippedStuck;
  console.log(
    `deployed ${artifact} to ${opts.device} (chip ${report.serial}): ${report.arrays} arrays, ${programmed} cells programmed and verified within ±${(report.tolerance * 1e6).toFixed(2)} uS ` +
      `(${report.pulses} pulses, ${report.rounds} rounds at most, ${report.failed.length} failed, ${report.reconnects} reconnects, ${report.seconds.toFixed(1)} s); ` +
      `report ${reportFile}, defects ${defectsFile}`,
  );
}
