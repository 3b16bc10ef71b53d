/**
 * Scan: measure a chip's defect map through the protocol. For every array: one strong SET of every row,
 * a read, one full RESET of every row, a read. A cell that does not rise above the midpoint after the SET
 * is stuck OFF; one that does not fall below it after the RESET is stuck ON; its stuck conductance is the
 * mean of its two reads. The chip is left RESET.
 */
import type { DefectMap, Fault } from '../../../common/defects.js';
import { DeviceError } from '../../../common/errors.js';
import type { DeviceProfile } from '../../../common/profile.js';
import type { Board, Pulses } from './board.js';
import { programmingWidth, setLevel } from './pulses.js';
import { checkAgainstProfile } from './limits.js';

export interface ScanOptions {
  onProgress?: (done: number, total: number) => void;
}

function rowPulses(rows: number, amplitude: number, gate: number): Pulses {
  return {
    row: Int32Array.from({ length: rows }, (_, r) => r),
    col: new Int32Array(rows).fill(-1),
    amplitude: new Float32Array(rows).fill(amplitude),
    gate: new Float32Array(rows).fill(gate),
  };
}

export async function scan(board: Board, profile: DeviceProfile, options: ScanOptions = {}): Promise<DefectMap> {
  const id = await board.identify();
  const p = profile.pulse;
  if (!p) throw new DeviceError(`device profile '${profile.name}' has no pulse model; dendra cannot choose test pulses for it`);
  if (id.device !== profile.name) throw new DeviceError(`the board at ${board.url} is a '${id.device}' chip, not '${profile.name}'`);
  checkAgainstProfile(id, profile, board.url);
  const high = setLevel(p, p.gate[1]);
  const mid = (high + profile.conductance.min) / 2;
  const width = programmingWidth(p);
  const arrays: DefectMap['arrays'] = [];
  for (const [a, geometry] of id.arrays.entries()) {
    const { rows, cols } = geometry;
    await board.pulse(a, width, rowPulses(rows, Math.min(p.amplitude[1], 2), p.gate[1]));
    const afterSet = await board.read({ array: a, row: 0, col: 0, rows, cols });
    await board.pulse(a, width, rowPulses(rows, -p.amplitude[1], p.gate[1]));
    const afterReset = await board.read({ array: a, row: 0, col: 0, rows, cols });
    const faults: Fault[] = [];
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const i = r * cols + c;
        const s = afterSet[i]!;
        const z = afterReset[i]!;
        if (s < mid) faults.push([r, c, 'off', Math.max(0, (s + z) / 2)]);
        else if (z > mid) faults.push([r, c, 'on', Math.max(0, (s + z) / 2)]);
      }
    }
    arrays.push({ rows, cols, faults });
    options.onProgress?.(a + 1, id.arrays.length);
  }
  return {
    format: 'dendra-defects',
    version: 1,
    device: id.device,
    arrays,
    origin: { scan: board.url, serial: id.serial, board: id.board, firmware: id.firmware, date: new Date().toISOString() },
  };
}
