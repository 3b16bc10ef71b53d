/** Paths and loaders for the real PyTorch exports copied into test/fixtures. */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readNpyFile } from '../../common/npy.js';

export const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');
export const mnist = (f: string) => join(FIXTURES, 'mnist', f);
export const extra = (f: string) => join(FIXTURES, 'extra', f);
/** The example model and data the README's demo ships (models/examples). */
export const examples = (f: string) => join(FIXTURES, '..', '..', 'models', 'examples', f);

export interface Fixture {
  name: string;
  model: string;
  inputs: string;
  logits: string;
  ortAccuracy: number;
}

function inputsFile(name: string): string {
  const local = join(FIXTURES, 'extra', `${name}.npy`);
  return existsSync(local) ? local : join(FIXTURES, 'mnist', `${name}.npy`);
}

function manifest(dir: 'mnist' | 'extra' | 'patterns'): Fixture[] {
  const m = JSON.parse(readFileSync(join(FIXTURES, dir, 'manifest.json'), 'utf8')) as Record<string, Record<string, unknown>>;
  return Object.entries(m)
    .filter(([, v]) => typeof v === 'object' && v !== null && 'ort_accuracy' in v)
    .map(([name, v]) => ({
      name,
      model: join(FIXTURES, dir, `${name}.onnx`),
      inputs: inputsFile(String(v['test_inputs'])),
      logits: join(FIXTURES, dir, `${name}.ort-logits.npy`),
      ortAccuracy: Number(v['ort_accuracy']),
    }));
}

export const mnistFixtures = () => manifest('mnist');
export const extraFixtures = () => manifest('extra');
export const patternFixtures = () => manifest('patterns');

export const labels = (inputs = mnist('digits28-f32.npy')) =>
  readNpyFile(inputs.includes('svhn') ? extra('svhn-shaped-labels.npy') : mnist('labels.npy')).data;

export function argmaxAccuracy(y: Float32Array, width: number, l: Float32Array): number {
  let ok = 0;
  for (let i = 0; i < l.length; i++) {
    let best = 0;
    for (let j = 1; j < width; j++) if (y[i * width + j]! > y[i * width + best]!) best = j;
    if (best === l[i]) ok++;
  }
  return ok / l.length;
}

/** max |a - b| / max |b|: the relative error of a whole output against the reference. */
export function relError(a: Float32Array, b: Float32Array): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < b.length; i++) {
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  return diff / scale;
}
