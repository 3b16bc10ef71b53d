/**
 * What the host believes of a board's reports: every size or count a board sends is checked against sane
 * limits (here) and against the device profile (checkAgainstProfile) before the host allocates anything
 * for it. A board that claims more is refused with a DeviceError naming the claim (docs/protocol.md).
 */
import { DeviceError } from '../../../common/errors.js';
import type { DeviceProfile } from '../../../common/profile.js';
import type { IdentifyResponse } from './protocol.js';

/** Most arrays a board may report. */
export const MAX_BOARD_ARRAYS = 4096;
/** Most rows or columns of one array. */
export const MAX_BOARD_DIM = 1 << 16;
/** Most cells of one array (a read of the whole array is 4 bytes a cell). */
export const MAX_BOARD_CELLS = 1 << 24;
/** Most cells of all arrays together. */
export const MAX_BOARD_TOTAL_CELLS = 1 << 28;
/** Longest identity string (serial, device, board, firmware, boot). */
const MAX_STRING = 256;

/** null when an Identify reply is well formed and within the limits; otherwise what is wrong with it. */
export function checkIdentity(j: Record<string, unknown>): string | null {
  if (typeof j['protocol'] !== 'number' || !Array.isArray(j['arrays'])) return 'identify reply without protocol/arrays';
  for (const key of ['serial', 'device']) {
    const v = j[key];
    if (typeof v !== 'string' || v.length === 0 || v.length > MAX_STRING) return `identify reply: '${key}' must be a string of 1 to ${MAX_STRING} characters`;
  }
  for (const key of ['board', 'firmware', 'boot']) {
    const v = j[key];
    if (v !== undefined && (typeof v !== 'string' || v.length > MAX_STRING)) return `identify reply: '${key}' must be a string of at most ${MAX_STRING} characters`;
  }
  const arrays = j['arrays'] as unknown[];
  if (arrays.length === 0 || arrays.length > MAX_BOARD_ARRAYS) return `identify reply claims ${arrays.length} arrays (1 to ${MAX_BOARD_ARRAYS} accepted)`;
  let total = 0;
  for (const [i, a] of arrays.entries()) {
    const g = (typeof a === 'object' && a !== null ? a : {}) as Record<string, unknown>;
    const rows = g['rows'];
    const cols = g['cols'];
    if (!Number.isInteger(rows) || !Number.isInteger(cols) || (rows as number) < 1 || (cols as number) < 1) return `identify reply: array ${i} has no integer rows and cols`;
    const r = rows as number;
    const c = cols as number;
    if (r > MAX_BOARD_DIM || c > MAX_BOARD_DIM || r * c > MAX_BOARD_CELLS) return `identify reply claims array ${i} of ${r} × ${c} cells (at most ${MAX_BOARD_DIM} a side and ${MAX_BOARD_CELLS} cells accepted)`;
    total += r * c;
  }
  if (total > MAX_BOARD_TOTAL_CELLS) return `identify reply claims ${total} cells in all (at most ${MAX_BOARD_TOTAL_CELLS} accepted)`;
  return null;
}

/** Refuses a board whose arrays are not what its device profile says a chip of that kind has. */
export function checkAgainstProfile(id: IdentifyResponse, profile: DeviceProfile, url: string): void {
  const { rows, cols, count } = profile.array;
  if (count !== null && id.arrays.length > count) {
    throw new DeviceError(`the board at ${url} reports ${id.arrays.length} arrays, but a '${profile.name}' chip has ${count}; refusing to trust its report`);
  }
  for (const [i, a] of id.arrays.entries()) {
    if ((rows !== null && a.rows !== rows) || (cols !== null && a.cols !== cols)) {
      throw new DeviceError(`the board at ${url} reports array ${i} as ${a.rows} × ${a.cols}, but '${profile.name}' arrays are ${rows ?? 'any'} × ${cols ?? 'any'}; refusing to trust its report`);
    }
  }
}
