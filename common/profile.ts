/**
 * Device profiles: plain data describing one kind of memristor chip. The JSON files live in
 * models/devices/; docs/device-profile.md documents every field. Loading validates every field and
 * names the bad one.
 */
import { existsSync, readdirSync } from 'node:fs';
import { LIMITS, readJsonBounded } from './files.js';
import { basename, join } from 'node:path';
import { ProfileError } from './errors.js';
import { packageRoot } from './paths.js';
import type { DendriteDevice, SomaDevice } from './dendrite.js';

export interface DeviceProfile {
  name: string;
  description: string;
  /** Geometry of one physical crossbar array. null = unlimited (one array holds any layer). */
  array: {
    rows: number | null;
    cols: number | null;
    /** Where a weight's two devices sit: two rows driven with +v/−v, or two columns subtracted. */
    differential: 'rows' | 'columns';
    /** Rows / columns of each array held back from the naive placement, for remapping around defects. */
    spareRows: number;
    spareCols: number;
    /** Arrays on one chip (for generated defect maps); null = as many as a network needs. */
    count: number | null;
  };
  /** Programmable conductance window in siemens and the number of evenly spaced levels (0 = continuous). */
  conductance: { min: number; max: number; levels: number };
  /** Conductance per unit weight chosen per output column or once per layer. */
  mapping: { scale: 'column' | 'layer' };
  /** Read voltage (V) applied for a normalised input of 1; Gaussian noise of every device on every read, σ = sigma + relative·G. */
  read: { voltage: number; sigma: number; relative: number };
  /** Programming error: a programmed cell lands at G + N(0, σ²), σ = sigma + relative·G. */
  programming: { sigma: number; relative: number };
  /** Conductance drift G(t) = G(t0)·(t/t0)^(−ν), ν ~ N(nu, nuSigma²) per device, t in seconds since programming. */
  drift: { nu: number; nuSigma: number; t0: number };
  /** Wire resistance (Ω) of each segment between adjacent cells, for the first-order IR-drop model. */
  wire: { resistance: number };
  /** Conductances (S) at which stuck-ON and stuck-OFF cells sit. */
  stuck: { on: number; off: number };
  /**
   * How the cells respond to programming pulses (a board or the emulator), or null where the profile does
   * not say. SET (positive amplitude) with gate voltage Vg: G ← max(G, slope·Vg + offset) + N(0, noise²),
   * Vg clipped to `gate`; RESET (negative amplitude a): G ← Gmin + (G − Gmin)·exp(−(|a| − threshold)/scale)
   * for |a| > threshold (a full RESET for large |a|). Each cell's slope and offset carry a device-to-device
   * factor N(1, variation²).
   */
  pulse: {
    slope: number;
    offset: number;
    gate: [number, number];
    threshold: number;
    scale: number;
    amplitude: [number, number];
    width: [number, number];
    noise: number;
    variation: number;
  } | null;
  /** Input DAC resolution (bits, signed, per-sample abs-max scaling); 0 = ideal. */
  dac: { bits: number };
  /** Output ADC resolution per array column; full scale = range × the tile's worst-case column current. */
  adc: { bits: number; range: number };
  /**
   * Energy constants of the runtime's energy model (docs/energy.md): the read time of one crossbar read (s),
   * the energy of one DAC conversion (one per driven physical row of a tile per inference), of one ADC
   * conversion (one per read output column of a tile per inference) and of one digital periphery
   * operation (J). Optional: absent fields take ENERGY_DEFAULTS.
   */
  energy: { readTime: number; dacConversion: number; adcConversion: number; digitalOp: number; tiaConversion: number };
  /**
   * What sits between a layer's columns and the next layer's rows (docs/energy.md): 'adc' (an ADC per read
   * column, digital activation, a DAC per driven row of the next layer: the 1T1R chip of Li et al. 2018) or
   * 'analog' (the column currents of a neuron summed in the current domain into a transimpedance stage and
   * analog activation, or into the dendrites and the soma where the chip has them, driving the next layer's
   * rows directly: a DAC per driven row of the first layer and an ADC per output of the last only). Absent: 'adc'.
   */
  periphery: 'adc' | 'analog';
  /** The chip's dendrite devices (common/dendrite.ts, docs/dendrites.md), or null: no dendrites on this chip. */
  dendrite: DendriteDevice | null;
  /** The chip's soma devices (their energy), or null: the periphery computes activations digitally. */
  soma: SomaDevice | null;
  /** Where each constant comes from: dotted field path → citation. */
  cite: Record<string, string>;
}

export const PROFILE_FIELDS_CITED = [
  'array.rows', 'array.cols', 'array.differential', 'conductance.min', 'conductance.max', 'conductance.levels',
  'read.voltage', 'dac.bits', 'adc.bits', 'adc.range',
  'read.sigma', 'read.relative', 'programming.sigma', 'programming.relative', 'drift.nu', 'drift.nuSigma',
  'wire.resistance', 'stuck.on', 'stuck.off',
  'energy.readTime', 'energy.dacConversion', 'energy.adcConversion', 'energy.digitalOp', 'energy.tiaConversion', 'periphery',
] as const;

/**
 * The energy constants a profile without an `energy` section (or a field of it) gets: an 8-bit ISAAC-class
 * periphery at 32 nm (Shafiee et al., ISCA 2016, per-action figures as tabulated in Accelergy's
 * hwcomponents-library, isaac.py) and the 10 ns read pulse of docs/anchors.md. Sources in docs/energy.md.
 */
export const ENERGY_DEFAULTS: Readonly<DeviceProfile['energy']> = Object.freeze({
  /** 10 ns read pulse (docs/anchors.md: read pulses of 10 ns at 0.15–0.55 V). */
  readTime: 1e-8,
  /** 8 × 0.41667 pJ: an 8-bit input priced as 8 one-bit ISAAC DAC drives (assumption, docs/energy.md). */
  dacConversion: 3.33336e-12,
  /** 1.6667 pJ: ISAAC's 8-bit 1.2 GS/s SAR ADC, 16 mW for 8 ADCs (docs/anchors.md: about 1.6 pJ). */
  adcConversion: 1.66667e-12,
  /** 0.021 pJ: one operation of ISAAC's 16-bit shift-and-add unit (assumption for every periphery op). */
  digitalOp: 2.1e-14,
  /**
   * 1 pJ: one transimpedance stage with analog activation settling within one read (analog periphery only;
   * an assumption derived in docs/energy.md: a 100 µA, 1 V stage held for the 10 ns read).
   */
  tiaConversion: 1e-12,
});

export function devicesDir(): string {
  return join(packageRoot(), 'models', 'devices');
}

/** Names of the shipped profiles (file names in models/devices without .json). */
export function builtinProfiles(): string[] {
  return readdirSync(devicesDir()).filter((f) => f.endsWith('.json')).map((f) => basename(f, '.json')).sort();
}

/** A shipped profile by name, or a JSON file by path. */
export function loadProfile(nameOrPath: string): DeviceProfile {
  const isPath = nameOrPath.endsWith('.json') || nameOrPath.includes('/');
  const file = isPath ? nameOrPath : join(devicesDir(), `${nameOrPath}.json`);
  if (!existsSync(file)) {
    throw new ProfileError(
      isPath ? `device profile file not found` : `unknown device '${nameOrPath}'; shipped profiles: ${builtinProfiles().join(', ')} (or give a PROFILE.json path)`,
      { file: isPath ? file : undefined },
    );
  }
  return validateProfile(readJsonBounded(file, LIMITS.profile, 'device profile', ProfileError), file);
}

/** The fields a profile may hold, per section (null: free-form, e.g. cite). */
const PROFILE_FIELDS: Record<string, string[] | null> = {
  name: null,
  description: null,
  cite: null,
  periphery: null,
  array: ['rows', 'cols', 'differential', 'spareRows', 'spareCols', 'count'],
  conductance: ['min', 'max', 'levels'],
  mapping: ['scale'],
  read: ['voltage', 'sigma', 'relative'],
  programming: ['sigma', 'relative'],
  drift: ['nu', 'nuSigma', 't0'],
  wire: ['resistance'],
  stuck: ['on', 'off'],
  dac: ['bits'],
  adc: ['bits', 'range'],
  energy: ['readTime', 'dacConversion', 'adcConversion', 'digitalOp', 'tiaConversion'],
  pulse: ['slope', 'offset', 'gate', 'threshold', 'scale', 'amplitude', 'width', 'noise', 'variation'],
  dendrite: ['kind', 'nonlinearity', 'onOffRatio', 'voltage', 'onVoltage', 'maxVoltage', 'threshold', 'rectify', 'variation', 'onCurrent', 'time'],
  soma: ['voltage', 'onCurrent', 'time'],
};

/** Checks a parsed profile field by field; the error names the field and the file. */
export function validateProfile(json: unknown, file?: string): DeviceProfile {
  const bad = (field: string, why: string): never => {
    throw new ProfileError(`device profile field '${field}' ${why}`, { file });
  };
  const obj = (v: unknown, field: string): Record<string, unknown> =>
    typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : bad(field, 'must be an object');
  const root = obj(json, '(root)');
  // Every field is known: a misspelt one ("bitz") is refused with its path rather than ignored.
  for (const [key, value] of Object.entries(root)) {
    const fields = Object.hasOwn(PROFILE_FIELDS, key) ? PROFILE_FIELDS[key] : undefined;
    if (fields === undefined) bad(key, `is not a device profile field (known: ${Object.keys(PROFILE_FIELDS).join(', ')})`);
    if (fields && typeof value === 'object' && value !== null && !Array.isArray(value)) {
      for (const sub of Object.keys(value)) if (!fields.includes(sub)) bad(`${key}.${sub}`, `is not a field of '${key}' (known: ${fields.join(', ')})`);
    }
  }
  const number = (sec: Record<string, unknown>, key: string, field: string, check: (x: number) => boolean, rule: string): number => {
    const v = sec[key];
    if (typeof v !== 'number' || !Number.isFinite(v) || !check(v)) bad(field, `must be ${rule} (got ${JSON.stringify(v)})`);
    return v as number;
  };
  const intIn = (lo: number, hi: number) => (x: number) => Number.isInteger(x) && x >= lo && x <= hi;
  const dim = (sec: Record<string, unknown>, key: string, field: string): number | null =>
    sec[key] === null ? null : number(sec, key, field, intIn(2, 1 << 20), 'an integer from 2 to 1048576, or null for unlimited');

  const name = typeof root['name'] === 'string' && root['name'] ? (root['name'] as string) : bad('name', 'must be a non-empty string');
  const description = typeof root['description'] === 'string' ? (root['description'] as string) : '';
  const a = obj(root['array'], 'array');
  const differential = a['differential'];
  if (differential !== 'rows' && differential !== 'columns') bad('array.differential', `must be "rows" or "columns"`);
  const optional = (sec: Record<string, unknown>, key: string, field: string, dflt: number, check: (x: number) => boolean, rule: string) =>
    sec[key] === undefined ? dflt : number(sec, key, field, check, rule);
  const section = (key: string) => (root[key] === undefined ? {} : obj(root[key], key));
  const array = {
    rows: dim(a, 'rows', 'array.rows'),
    cols: dim(a, 'cols', 'array.cols'),
    differential: differential as 'rows' | 'columns',
    spareRows: optional(a, 'spareRows', 'array.spareRows', 0, intIn(0, 1 << 20), 'a non-negative integer'),
    spareCols: optional(a, 'spareCols', 'array.spareCols', 0, intIn(0, 1 << 20), 'a non-negative integer'),
    count: a['count'] === undefined || a['count'] === null ? null : number(a, 'count', 'array.count', intIn(1, 1 << 20), 'a positive integer or null'),
  };
  if (array.rows !== null && array.spareRows >= array.rows - (array.differential === 'rows' ? 1 : 0)) bad('array.spareRows', `leaves no rows of the ${array.rows} for weights`);
  if (array.cols !== null && array.spareCols >= array.cols - (array.differential === 'columns' ? 1 : 0)) bad('array.spareCols', `leaves no columns of the ${array.cols} for weights`);
  if (array.differential === 'rows' && array.spareRows % 2 !== 0) bad('array.spareRows', 'must be even when pairs sit on rows');
  if (array.differential === 'columns' && array.spareCols % 2 !== 0) bad('array.spareCols', 'must be even when pairs sit on columns');
  if (array.differential === 'rows' && array.rows !== null && array.rows % 2 !== 0) bad('array.rows', 'must be even when pairs sit on rows');
  if (array.differential === 'columns' && array.cols !== null && array.cols % 2 !== 0) bad('array.cols', 'must be even when pairs sit on columns');
  const g = obj(root['conductance'], 'conductance');
  const gmin = number(g, 'min', 'conductance.min', (x) => x >= 0 && x < 1, 'a conductance in siemens, >= 0');
  const gmax = number(g, 'max', 'conductance.max', (x) => x > gmin && x < 1, `a conductance in siemens, > conductance.min (${gmin})`);
  const levels = number(g, 'levels', 'conductance.levels', (x) => x === 0 || (Number.isInteger(x) && x >= 2 && x <= 1 << 24), '0 (continuous) or an integer >= 2');
  const m = root['mapping'] === undefined ? {} : obj(root['mapping'], 'mapping');
  const scale = m['scale'] ?? 'column';
  if (scale !== 'column' && scale !== 'layer') bad('mapping.scale', 'must be "column" or "layer"');
  const r = obj(root['read'], 'read');
  const voltage = number(r, 'voltage', 'read.voltage', (x) => x > 0 && x <= 10, 'a voltage in volts, > 0 and <= 10');
  const readSigma = optional(r, 'sigma', 'read.sigma', 0, (x) => x >= 0 && x < 1, 'a conductance in siemens, >= 0');
  const readRelative = optional(r, 'relative', 'read.relative', 0, (x) => x >= 0 && x <= 1, 'a fraction from 0 to 1');
  const pr = section('programming');
  const programming = {
    sigma: optional(pr, 'sigma', 'programming.sigma', 0, (x) => x >= 0 && x < 1, 'a conductance in siemens, >= 0'),
    relative: optional(pr, 'relative', 'programming.relative', 0, (x) => x >= 0 && x <= 1, 'a fraction from 0 to 1'),
  };
  const dr = section('drift');
  const drift = {
    nu: optional(dr, 'nu', 'drift.nu', 0, (x) => x >= 0 && x <= 1, 'an exponent from 0 to 1'),
    nuSigma: optional(dr, 'nuSigma', 'drift.nuSigma', 0, (x) => x >= 0 && x <= 1, 'from 0 to 1'),
    t0: optional(dr, 't0', 'drift.t0', 1, (x) => x > 0, 'a time in seconds, > 0'),
  };
  const wire = { resistance: optional(section('wire'), 'resistance', 'wire.resistance', 0, (x) => x >= 0 && x <= 1e4, 'ohms per segment, from 0 to 10000') };
  const st = section('stuck');
  const stuck = {
    on: optional(st, 'on', 'stuck.on', gmax, (x) => x >= 0 && x < 1, 'a conductance in siemens'),
    off: optional(st, 'off', 'stuck.off', gmin, (x) => x >= 0 && x < 1, 'a conductance in siemens'),
  };
  const d = obj(root['dac'], 'dac');
  const bitsRule = (x: number) => x === 0 || (Number.isInteger(x) && x >= 2 && x <= 16);
  const dacBits = number(d, 'bits', 'dac.bits', bitsRule, '0 (ideal) or an integer from 2 to 16');
  const c = obj(root['adc'], 'adc');
  const adcBits = number(c, 'bits', 'adc.bits', bitsRule, '0 (ideal) or an integer from 2 to 16');
  const range = c['range'] === undefined ? 1 : number(c, 'range', 'adc.range', (x) => x > 0 && x <= 1, 'a fraction in (0, 1]');
  const en = section('energy');
  const joules = (x: number) => x >= 0 && x < 1e-6;
  const energy = {
    readTime: optional(en, 'readTime', 'energy.readTime', ENERGY_DEFAULTS.readTime, (x) => x > 0 && x <= 1, 'a time in seconds, > 0 and <= 1'),
    dacConversion: optional(en, 'dacConversion', 'energy.dacConversion', ENERGY_DEFAULTS.dacConversion, joules, 'an energy in joules, >= 0 and < 1e-6'),
    adcConversion: optional(en, 'adcConversion', 'energy.adcConversion', ENERGY_DEFAULTS.adcConversion, joules, 'an energy in joules, >= 0 and < 1e-6'),
    digitalOp: optional(en, 'digitalOp', 'energy.digitalOp', ENERGY_DEFAULTS.digitalOp, joules, 'an energy in joules, >= 0 and < 1e-6'),
    tiaConversion: optional(en, 'tiaConversion', 'energy.tiaConversion', ENERGY_DEFAULTS.tiaConversion, joules, 'an energy in joules, >= 0 and < 1e-6'),
  };
  const peripheryRaw = root['periphery'] ?? 'adc';
  if (peripheryRaw !== 'adc' && peripheryRaw !== 'analog') bad('periphery', `must be "adc" or "analog" (got ${JSON.stringify(peripheryRaw)})`);
  const periphery = peripheryRaw as 'adc' | 'analog';
  const citeRaw = root['cite'] === undefined ? {} : obj(root['cite'], 'cite');
  let pulse: DeviceProfile['pulse'] = null;
  if (root['pulse'] !== undefined && root['pulse'] !== null) {
    const pu = obj(root['pulse'], 'pulse');
    const range = (key: string, check: (x: number) => boolean, rule: string): [number, number] => {
      const v = pu[key];
      if (!Array.isArray(v) || v.length !== 2 || !v.every((x) => typeof x === "number" && check(x)) || (v[0] as number) > (v[1] as number)) bad(`pulse.${key}`, `must be [low, high] with ${rule}`);
      return [(v as number[])[0]!, (v as number[])[1]!];
    };
    const pos = (x: number) => Number.isFinite(x) && x > 0;
    pulse = {
      slope: number(pu, 'slope', 'pulse.slope', pos, 'siemens per volt, > 0'),
      offset: number(pu, 'offset', 'pulse.offset', (x) => x >= 0 && x < 1, 'siemens, >= 0'),
      gate: range('gate', pos, 'volts > 0'),
      threshold: number(pu, 'threshold', 'pulse.threshold', (x) => x >= 0, 'volts, >= 0'),
      scale: number(pu, 'scale', 'pulse.scale', pos, 'volts, > 0'),
      amplitude: range('amplitude', pos, 'volts > 0'),
      width: range('width', pos, 'seconds > 0'),
      noise: number(pu, 'noise', 'pulse.noise', (x) => x >= 0 && x < 1, 'siemens, >= 0'),
      variation: number(pu, 'variation', 'pulse.variation', (x) => x >= 0 && x < 1, 'a fraction from 0 to 1'),
    };
  }
  let dendrite: DendriteDevice | null = null;
  if (root['dendrite'] !== undefined && root['dendrite'] !== null) {
    const de = obj(root['dendrite'], 'dendrite');
    const kind = de['kind'] ?? 'exponential';
    if (kind !== 'exponential' && kind !== 'threshold-linear') bad('dendrite.kind', 'must be "exponential" or "threshold-linear"');
    const rectify = de['rectify'] ?? false;
    if (typeof rectify !== 'boolean') bad('dendrite.rectify', 'must be true or false');
    dendrite = {
      kind: kind as DendriteDevice['kind'],
      nonlinearity: optional(de, 'nonlinearity', 'dendrite.nonlinearity', 0.1, (x) => x >= 0 && x < 0.95, 'the I-V nonlinearity n, from 0 to 0.95'),
      onOffRatio: optional(de, 'onOffRatio', 'dendrite.onOffRatio', 100, (x) => x >= 1 && x <= 1e9, 'an ON/OFF ratio >= 1'),
      voltage: optional(de, 'voltage', 'dendrite.voltage', 5, (x) => x > 0 && x <= 100, 'a voltage in volts, > 0'),
      onVoltage: optional(de, 'onVoltage', 'dendrite.onVoltage', 5, (x) => x > 0 && x <= 100, 'a voltage in volts, > 0'),
      ...(de['maxVoltage'] !== undefined ? { maxVoltage: optional(de, 'maxVoltage', 'dendrite.maxVoltage', 5, (x) => x > 0 && x <= 100, 'a voltage in volts, > 0') } : {}),
      threshold: optional(de, 'threshold', 'dendrite.threshold', 0.5, (x) => x > 0 && x <= 1, 'a normalised voltage in (0, 1]'),
      rectify: rectify as boolean,
      variation: optional(de, 'variation', 'dendrite.variation', 0, (x) => x >= 0 && x <= 1, 'a fraction from 0 to 1'),
      onCurrent: optional(de, 'onCurrent', 'dendrite.onCurrent', 1e-6, (x) => x > 0 && x < 1, 'a current in amperes, > 0'),
      time: optional(de, 'time', 'dendrite.time', 1e-5, (x) => x > 0 && x <= 1, 'a time in seconds, > 0'),
    };
  }
  let soma: SomaDevice | null = null;
  if (root['soma'] !== undefined && root['soma'] !== null) {
    const so = obj(root['soma'], 'soma');
    soma = {
      voltage: optional(so, 'voltage', 'soma.voltage', 5, (x) => x > 0 && x <= 100, 'a voltage in volts, > 0'),
      onCurrent: optional(so, 'onCurrent', 'soma.onCurrent', 1e-6, (x) => x > 0 && x < 1, 'a current in amperes, > 0'),
      time: optional(so, 'time', 'soma.time', 1e-5, (x) => x > 0 && x <= 1, 'a time in seconds, > 0'),
    };
  }
  const cite: Record<string, string> = {};
  for (const [k, v] of Object.entries(citeRaw)) {
    if (typeof v !== 'string') bad(`cite.${k}`, 'must be a string');
    cite[k] = v as string;
  }
  return {
    name,
    description,
    array,
    conductance: { min: gmin, max: gmax, levels },
    mapping: { scale: scale as 'column' | 'layer' },
    read: { voltage, sigma: readSigma, relative: readRelative },
    programming,
    drift,
    wire,
    stuck,
    pulse,
    dac: { bits: dacBits },
    adc: { bits: adcBits, range },
    energy,
    periphery,
    dendrite,
    soma,
    cite,
  };
}
