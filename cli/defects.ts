import { generateDefects, writeDefectMap, type DefectPattern } from '../common/defects.js';
import { loadProfile } from '../common/profile.js';
import { InputError } from '../common/errors.js';
import { checkOutputPath } from '../common/files.js';

export interface GenerateArgs {
  device: string;
  rate: string;
  onFraction?: string;
  pattern?: string;
  seed?: number;
  arrays?: number;
  output: string;
}

const fraction = (v: string, name: string) => {
  const x = Number(v);
  if (!(x >= 0 && x <= 1)) throw new InputError(`${name} must be a number from 0 to 1 (got '${v}')`);
  return x;
};

export function defectsGenerateCommand(opts: GenerateArgs): void {
  checkOutputPath(opts.output, ['.json'], '-o');
  const profile = loadProfile(opts.device);
  const pattern = (opts.pattern ?? 'random') as DefectPattern;
  if (!['random', 'rows', 'columns', 'clustered'].includes(pattern)) throw new InputError(`--pattern must be random, rows, columns or clustered (got '${pattern}')`);
  const map = generateDefects(profile, {
    rate: fraction(opts.rate, '--rate'),
    onFraction: opts.onFraction === undefined ? 0.5 : fraction(opts.onFraction, '--on-fraction'),
    pattern,
    seed: opts.seed ?? 0,
    arrays: opts.arrays,
  });
  writeDefectMap(opts.output, map);
  const faults = map.arrays.reduce((s, a) => s + a.faults.length, 0);
  const on = map.arrays.reduce((s, a) => s + a.faults.filter((f) => f[2] === 'on').length, 0);
  const cells = map.arrays.reduce((s, a) => s + a.rows * a.cols, 0);
  console.log(`wrote ${opts.output}: ${map.arrays.length} arrays of ${map.arrays[0]!.rows} × ${map.arrays[0]!.cols} (${profile.name}), ${faults} stuck cells (${((100 * faults) / cells).toFixed(2)} %, ${on} ON / ${faults - on} OFF), pattern ${pattern}`);
}
