import { writeFileSync } from 'node:fs';
import { readArtifact, readArtifactBytes } from '../artifact/read.js';
import { writeDefectMap } from '../common/defects.js';
import { DeviceError, InputError } from '../common/errors.js';
import { checkOutputPath } from '../common/files.js';
import { readTokenFile } from '../runtime/backends/device/auth.js';
import { connectBoard } from '../runtime/backends/device/client.js';
import { deploy, TooManyFailedError } from '../runtime/backends/device/deploy.js';
import { progressBar } from './progress.js';

export interface DeployArgs {
  device: string;
  tolerance?: string;
  maxAttempts?: number;
  report?: string;
  defectsOut?: string;
  force?: boolean;
  /** Most cells that may fail program-and-verify: a count or a percentage of the programmed cells (default 1%). */
  maxFailed?: string;
  tokenFile?: string;
}

/** '250' → 250 cells; '0.5%' → 0.5 % of `cells`. */
export function parseMaxFailed(text: string, cells: number): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(%?)\s*$/.exec(text);
  if (!m || (m[2] === '' && !Number.isInteger(Number(m[1]))) || (m[2] === '%' && Number(m[1]) > 100)) {
    throw new InputError(`--max-failed must be a number of cells or a percentage from 0% to 100% (got '${text}')`);
  }
  return m[2] === '%' ? Math.floor((Number(m[1]) / 100) * cells) : Number(m[1]);
}

export async function deployCommand(artifact: string, opts: DeployArgs): Promise<void> {
  const bytes = readArtifactBytes(artifact);
  const reportFile = opts.report ?? artifact.replace(/\.dendra$/, '') + '.verify.json';
  const defectsFile = opts.defectsOut ?? artifact.replace(/\.dendra$/, '') + '.defects.json';
  checkOutputPath(reportFile, ['.json'], '--report');
  checkOutputPath(defectsFile, ['.json'], '--defects-out');
  const token = opts.tokenFile !== undefined ? readTokenFile(opts.tokenFile) : undefined;
  const tolerance = opts.tolerance === undefined ? undefined : Number(opts.tolerance) * 1e-6;
  if (tolerance !== undefined && !(tolerance > 0)) throw new InputError(`--tolerance must be a positive number of microsiemens (got '${opts.tolerance}')`);
  const art = readArtifact(bytes, artifact);
  const programmable = art.arrays.reduce((n, a) => n + a.rows * a.cols - (a.stuck ? a.stuck.reduce((k, x) => k + (x ? 1 : 0), 0) : 0), 0);
  const maxFailed = parseMaxFailed(opts.maxFailed ?? '1%', programmable);
  let bar: ReturnType<typeof progressBar> | undefined;
  let result: Awaited<ReturnType<typeof deploy>>;
  try {
    result = await deploy(bytes, () => connectBoard(opts.device, { token }), {
      tolerance,
      maxAttempts: opts.maxAttempts,
      force: opts.force,
      maxFailed,
      onProgress: (done, arrays) => {
        bar ??= progressBar('programming', arrays, 'arrays');
        bar.update(done);
      },
    });
  } catch (e) {
    bar?.stop();
    if (!(e instanceof TooManyFailedError)) throw e;
    writeFileSync(reportFile, JSON.stringify(e.report, null, 2) + '\n');
    writeDefectMap(defectsFile, e.defects);
    throw new DeviceError(
      `${e.report.failed.length} of ${programmable} cells failed program-and-verify (more than --max-failed ${opts.maxFailed ?? '1%'} = ${maxFailed}); the board is not marked ready. ` +
        `The artifact was probably compiled without this chip's defect map: scan and recompile (dendra scan --device ${opts.device} -o chip.json, then dendra compile MODEL.onnx --device ${e.report.device} --defects chip.json), ` +
        `or recompile with --defects ${defectsFile}, the map this deploy wrote; report ${reportFile}`,
    );
  }
  bar?.stop();
  const { report, defects } = result;
  writeFileSync(reportFile, JSON.stringify(report, null, 2) + '\n');
  writeDefectMap(defectsFile, defects);
  if (report.skipped) {
    console.log(`${opts.device} already holds a verified deployment of ${artifact}; nothing programmed (--force to program again)`);
    return;
  }
  const programmed = report.cells - report.skippedStuck;
  console.log(
    `deployed ${artifact} to ${opts.device} (chip ${report.serial}): ${report.arrays} arrays, ${programmed} cells programmed and verified within ±${(report.tolerance * 1e6).toFixed(2)} uS ` +
      `(${report.pulses} pulses, ${report.rounds} rounds at most, ${report.failed.length} failed, ${report.reconnects} reconnects${report.restarts ? `, ${report.restarts} board restarts survived` : ''}, ${report.seconds.toFixed(1)} s); ` +
      `report ${reportFile}, defects ${defectsFile}`,
  );
}
