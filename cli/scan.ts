import { writeDefectMap } from '../common/defects.js';
import { builtinProfiles, loadProfile } from '../common/profile.js';
import { DeviceError } from '../common/errors.js';
import { checkOutputPath } from '../common/files.js';
import { readTokenFile } from '../runtime/backends/device/auth.js';
import { connectBoard } from '../runtime/backends/device/client.js';
import { scan } from '../runtime/backends/device/scan.js';
import { progressBar } from './progress.js';

export interface ScanArgs {
  device: string;
  profile?: string;
  output: string;
  tokenFile?: string;
}

export async function scanCommand(opts: ScanArgs): Promise<void> {
  checkOutputPath(opts.output, ['.json'], '-o');
  const board = await connectBoard(opts.device, { token: opts.tokenFile !== undefined ? readTokenFile(opts.tokenFile) : undefined });
  try {
    const id = await board.identify();
    // The board names its profile; only a shipped profile is looked up by that name (never a path it sends).
    if (opts.profile === undefined && !builtinProfiles().includes(id.device)) {
      throw new DeviceError(`the board at ${opts.device} names device '${id.device.slice(0, 64)}', which is not a shipped profile; give --profile PROFILE.json`);
    }
    const profile = loadProfile(opts.profile ?? id.device);
    const bar = progressBar('scanning', id.arrays.length, 'arrays');
    const map = await scan(board, profile, { onProgress: (done) => bar.update(done) });
    bar.stop();
    writeDefectMap(opts.output, map);
    const faults = map.arrays.reduce((s, a) => s + a.faults.length, 0);
    const on = map.arrays.reduce((s, a) => s + a.faults.filter((f) => f[2] === 'on').length, 0);
    const cells = map.arrays.reduce((s, a) => s + a.rows * a.cols, 0);
    console.log(`scanned ${opts.device} (${id.device}, chip ${id.serial}): ${map.arrays.length} arrays, ${faults} stuck cells (${((100 * faults) / cells).toFixed(2)} %, ${on} ON / ${faults - on} OFF) -> ${opts.output}`);
  } finally {
    await board.close();
  }
}
