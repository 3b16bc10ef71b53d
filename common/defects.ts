/**
 * Defect maps: which cells of which arrays of one chip are stuck, and at what conductance
 * (docs/defect-map.md). `dendra defects generate` makes them with the statistics real chips show;
 * a device scan produces the same format.
 */
import { writeFileSync } from 'node:fs';
import { LIMITS, readJsonBounded } from './files.js';
import { InputError } from './errors.js';
import type { DeviceProfile } from './profile.js';
import { Random } from './random.js';

export type StuckState = 'on' | 'off';
/** [row, col, state, conductance in siemens] */
export type Fault = [number, number, StuckState, number];

export interface ArrayDefects {
  rows: number;
  cols: number;
  faults: Fault[];
}

export interface DefectMap {
  format: 'dendra-defects';
  version: 1;
  /** Profile name the chip is of. */
  device: string;
  /** One entry per physical array of the chip, in chip order. */
  arrays: ArrayDefects[];
  /** How the map was made: generator settings or a scan's details. */
  origin?: Record<string, unknown>;
}

export const STUCK_NONE = 0;
export const STUCK_ON = 1;
export const STUCK_OFF = 2;

/** Per-cell view of one array's faults: state (0 healthy, 1 on, 2 off) and stuck conductance, row-major. */
export interface FaultGrid {
  rows: number;
  cols: number;
  state: Uint8Array;
  conductance: Float32Array;
  count: number;
}

export function faultGrid(a: ArrayDefects): FaultGrid {
  const state = new Uint8Array(a.rows * a.cols);
  const conductance = new Float32Array(a.rows * a.cols);
  for (const [r, c, s, g] of a.faults) {
    state[r * a.cols + c] = s === 'on' ? STUCK_ON : STUCK_OFF;
    conductance[r * a.cols + c] = g;
  }
  return { rows: a.rows, cols: a.cols, state, conductance, count: a.faults.length };
}

export function loadDefectMap(file: string): DefectMap {
  return validateDefectMap(readJsonBounded(file, LIMITS.defectMap, 'defect map'), file);
}

export function writeDefectMap(file: string, map: DefectMap): void {
  // One fault per line keeps large maps readable and diffable.
  const arrays = map.arrays.map((a) => `    {"rows": ${a.rows}, "cols": ${a.cols}, "faults": [${a.faults.length ? '\n' + a.faults.map((f) => `      ${JSON.stringify(f)}`).join(',\n') + '\n    ' : ''}]}`);
  const head = { format: map.format, version: map.version, device: map.device, origin: map.origin ?? {} };
  const text = JSON.stringify(head, null, 2).replace(/\n}$/, `,\n  "arrays": [\n${arrays.join(',\n')}\n  ]\n}\n`);
  try {
    writeFileSync(file, text);
  } catch (e) {
    throw new InputError(`cannot write defect map: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { file });
  }
}

const MAP_FIELDS = ['format', 'version', 'device', 'arrays', 'origin'];
const ARRAY_FIELDS = ['rows', 'cols', 'faults'];
/** Sane limits on what a defect map may describe (docs/limits.md). */
export const MAX_MAP_DIM = 1 << 16;
export const MAX_MAP_CELLS = 1 << 26;
export const MAX_MAP_TOTAL_CELLS = 1 << 30;
export const MAX_MAP_ARRAYS = 1 << 16;

export function validateDefectMap(json: unknown, file?: string): DefectMap {
  const bad = (msg: string): never => {
    throw new InputError(`defect map: ${msg}`, { file });
  };
  if (typeof json !== 'object' || json === null) bad('not a JSON object');
  const m = json as Record<string, unknown>;
  if (m['format'] !== 'dendra-defects') bad(`'format' must be "dendra-defects" (got ${JSON.stringify(m['format'])})`);
  if (m['version'] !== 1) bad(`version ${JSON.stringify(m['version'])} is not supported (this dendra reads version 1)`);
  if (typeof m['device'] !== 'string') bad(`'device' must name a device profile`);
  if (!Array.isArray(m['arrays']) || m['arrays'].length === 0) bad(`'arrays' must be a non-empty list`);
  if (Array.isArray(m)) bad('not a JSON object');
  for (const k of Object.keys(m)) if (!MAP_FIELDS.includes(k)) bad(`unknown field '${k}' (a defect map has ${MAP_FIELDS.join(', ')})`);
  if (m['origin'] !== undefined && (typeof m['origin'] !== 'object' || m['origin'] === null || Array.isArray(m['origin']))) bad(`'origin' must be an object`);
  if ((m['arrays'] as unknown[]).length > MAX_MAP_ARRAYS) bad(`'arrays' lists ${(m['arrays'] as unknown[]).length} arrays, more than ${MAX_MAP_ARRAYS}`);
  let cellsTotal = 0;
  const arrays = (m['arrays'] as unknown[]).map((raw, i) => {
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) bad(`arrays[${i}] must be an object with rows, cols and faults`);
    const a = raw as Record<string, unknown>;
    for (const k of Object.keys(a)) if (!ARRAY_FIELDS.includes(k)) bad(`unknown field 'arrays[${i}].${k}' (an array has ${ARRAY_FIELDS.join(', ')})`);
    const rows = a['rows'];
    const cols = a['cols'];
    if (!Number.isInteger(rows) || !Number.isInteger(cols) || (rows as number) < 1 || (cols as number) < 1) bad(`arrays[${i}] needs integer 'rows' and 'cols'`);
    if ((rows as number) > MAX_MAP_DIM || (cols as number) > MAX_MAP_DIM || (rows as number) * (cols as number) > MAX_MAP_CELLS) {
      bad(`arrays[${i}] is ${rows} × ${cols}: at most ${MAX_MAP_DIM} rows or columns and ${MAX_MAP_CELLS} cells per array (docs/limits.md)`);
    }
    cellsTotal += (rows as number) * (cols as number);
    if (cellsTotal > MAX_MAP_TOTAL_CELLS) bad(`the arrays hold more than ${MAX_MAP_TOTAL_CELLS} cells in all (docs/limits.md)`);
    if (!Array.isArray(a['faults'])) bad(`arrays[${i}].faults must be a list`);
    const seen = new Set<number>();
    const faults = (a['faults'] as unknown[]).map((f, k) => {
      const [r, c, s, g] = (Array.isArray(f) ? f : []) as unknown[];
      const where = `arrays[${i}].faults[${k}]`;
      if (!Number.isInteger(r) || !Number.isInteger(c) || (r as number) < 0 || (c as number) < 0 || (r as number) >= (rows as number) || (c as number) >= (cols as number)) {
        bad(`${where}: cell (${String(r)}, ${String(c)}) is outside the ${rows} × ${cols} array`);
      }
      if (s !== 'on' && s !== 'off') bad(`${where}: state must be "on" or "off" (got ${JSON.stringify(s)})`);
      if (typeof g !== 'number' || !Number.isFinite(g) || g < 0 || g >= 1) bad(`${where}: conductance must be a finite value in siemens (got ${JSON.stringify(g)})`);
      const key = (r as number) * (cols as number) + (c as number);
      if (seen.has(key)) bad(`${where}: cell (${r}, ${c}) is listed twice`);
      seen.add(key);
      return [r, c, s, g] as Fault;
    });
    return { rows: rows as number, cols: cols as number, faults };
  });
  return { format: 'dendra-defects', version: 1, device: m['device'] as string, arrays, origin: (m['origin'] as Record<string, unknown>) ?? {} };
}

export type DefectPattern = 'random' | 'rows' | 'columns' | 'clustered';

export interface GenerateOptions {
  /** Fraction of faulty cells, 0 to 1. */
  rate: number;
  /** Fraction of the faulty cells stuck ON (the rest stuck OFF); default 0.5. */
  onFraction?: number;
  pattern?: DefectPattern;
  seed?: number;
  /** Number of arrays; default the profile's array.count. */
  arrays?: number;
}

/**
 * A random chip: `rate` of the cells stuck, `onFraction` of them ON. Patterns:
 * random (independent cells), rows / columns (whole lines fail, as with a broken word or bit line),
 * clustered (blobs of faults around random centres, σ = 3 cells, as from a particle or a bad region).
 */
export function generateDefects(profile: DeviceProfile, opts: GenerateOptions): DefectMap {
  const { rows, cols } = profile.array;
  if (rows === null || cols === null) throw new InputError(`device '${profile.name}' has unlimited arrays; a defect map needs a finite array size`);
  const count = opts.arrays ?? profile.array.count;
  if (!count) throw new InputError(`device '${profile.name}' does not say how many arrays a chip has; give the number of arrays`);
  const rate = opts.rate;
  if (!(rate >= 0 && rate <= 1)) throw new InputError(`fault rate must be from 0 to 1 (got ${rate})`);
  const onFraction = opts.onFraction ?? 0.5;
  if (!(onFraction >= 0 && onFraction <= 1)) throw new InputError(`on-fraction must be from 0 to 1 (got ${onFraction})`);
  const pattern = opts.pattern ?? 'random';
  const rng = new Random(opts.seed ?? 0);
  const stuck = (): [StuckState, number] => (rng.next() < onFraction ? ['on', profile.stuck.on] : ['off', profile.stuck.off]);
  const arrays: ArrayDefects[] = [];
  for (let a = 0; a < count; a++) {
    const faults: Fault[] = [];
    const mark = new Uint8Array(rows * cols);
    const add = (r: number, c: number, s: [StuckState, number]) => {
      if (r < 0 || c < 0 || r >= rows || c >= cols || mark[r * cols + c]) return false;
      mark[r * cols + c] = 1;
      faults.push([r, c, s[0], s[1]]);
      return true;
    };
    if (pattern === 'random') {
      for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) if (rng.next() < rate) add(r, c, stuck());
    } else if (pattern === 'rows' || pattern === 'columns') {
      const lines = pattern === 'rows' ? rows : cols;
      const length = pattern === 'rows' ? cols : rows;
      for (let l = 0; l < lines; l++) {
        if (rng.next() >= rate) continue;
        const s = stuck();
        for (let k = 0; k < length; k++) (pattern === 'rows' ? add(l, k, s) : add(k, l, s));
      }
    } else if (pattern === 'clustered') {
      const target = Math.round(rate * rows * cols);
      while (faults.length < target) {
        const cr = rng.next() * rows;
        const cc = rng.next() * cols;
        const size = 1 + rng.int(Math.min(60, Math.max(1, target - faults.length)));
        for (let k = 0; k < size && faults.length < target; k++) add(Math.floor(cr + 3 * rng.normal()), Math.floor(cc + 3 * rng.normal()), stuck());
      }
    } else {
      throw new InputError(`unknown defect pattern '${String(pattern)}' (random, rows, columns, clustered)`);
    }
    faults.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
    arrays.push({ rows, cols, faults });
  }
  return { format: 'dendra-defects', version: 1, device: profile.name, arrays, origin: { generator: 'dendra defects generate', rate, onFraction, pattern, seed: opts.seed ?? 0 } };
}
