// Developer smoke test of the native addon: node native/smoke.mjs  (after `npx cmake-js compile --out build`)
// Checks runSync/run against a plain JS reference, the validation errors, release(), and times 784-500-10.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const addon = createRequire(import.meta.url)(join(root, 'build', 'Release', 'dendra_native.node'));
const { Chip } = addon;

let failures = 0;
const check = (ok, what) => {
  if (!ok) failures++;
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
};

// ---------- deterministic random numbers ----------
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const R = rng(12345);
const randn = () => Math.sqrt(-2 * Math.log(1 - R())) * Math.cos(2 * Math.PI * R());
const range = (n, f = (i) => i) => Int32Array.from({ length: n }, (_, i) => f(i));

// ---------- program builders ----------
const G0 = 1e-6; // siemens offset of both cells of a pair
const GS = 1e-5; // siemens per unit weight
/**
 * One layer of random weights mapped onto arrays. mode: 'single' (one array, column pairs),
 * 'rows' (128x64 arrays, rowNeg = rowPos + 64), 'cols' (128x64 arrays, colNeg = colPos + 32),
 * 'gather' (like 'rows' but inputs permuted and some repeated across tiles).
 */
function addLayer(prog, inF, outF, mode, opts = {}) {
  const w = Array.from({ length: inF }, () => Array.from({ length: outF }, () => randn() / Math.sqrt(inF)));
  const tiles = [];
  const place = (rows, cols, inputs, outputs, rowPair) => {
    const g = new Float32Array(rows * cols).fill(G0 * 0.5); // unused cells
    const t = { array: prog.arrays.length, adcFullScale: opts.adcFullScale ?? 0, inputIndex: Int32Array.from(inputs),
      outputIndex: Int32Array.from(outputs), rowPos: range(inputs.length), colPos: range(outputs.length) };
    t.rowNeg = rowPair ? range(inputs.length, (r) => r + rows / 2) : t.rowPos;
    t.colNeg = rowPair ? t.colPos : range(outputs.length, (c) => c + cols / 2);
    inputs.forEach((i, r) => outputs.forEach((o, c) => {
      const v = w[i][o] * (opts.share ?? 1);
      g[t.rowPos[r] * cols + t.colPos[c]] = G0 + Math.max(v, 0) * GS;
      g[t.rowNeg[r] * cols + t.colNeg[c]] = G0 + Math.max(-v, 0) * GS;
    }));
    prog.arrays.push({ rows, cols, conductance: g });
    tiles.push(t);
  };
  if (mode === 'single') place(inF, 2 * outF, [...range(inF)], [...range(outF)], false);
  const chunks = (n, size) => Array.from({ length: Math.ceil(n / size) }, (_, i) => [...range(Math.min(size, n - i * size), (j) => i * size + j)]);
  if (mode === 'rows' || mode === 'cols') {
    const [ri, co] = mode === 'rows' ? [64, 64] : [128, 32];
    for (const ins of chunks(inF, ri)) for (const outs of chunks(outF, co)) place(128, 64, ins, outs, mode === 'rows');
  }
  if (mode === 'gather') {
    // inputs in a shuffled order; 10 inputs also drive a second set of tiles (repeated inputIndex across tiles)
    const perm = [...range(inF)].sort(() => R() - 0.5);
    opts.share = 1;
    for (const ins of chunks(inF, 64)) for (const outs of chunks(outF, 64)) place(128, 64, ins.map((i) => perm[i]), outs, true);
    opts.share = 0.5;
    const dup = perm.slice(0, Math.min(10, inF));
    w.forEach((row, i) => { if (!dup.includes(i)) row.fill(0); });
    for (const outs of chunks(outF, 64)) place(128, 64, dup, outs, true);
  }
  prog.layers.push({
    inFeatures: inF, outFeatures: outF, vRead: opts.vRead ?? 0.2, dacBits: opts.dacBits ?? 0, adcBits: opts.adcBits ?? 0,
    tiles, outScale: Float32Array.from({ length: outF }, () => (1 / GS) * (0.5 + R())),
    bias: Float32Array.from({ length: outF }, () => randn() * 0.1),
    activation: opts.activation ?? 0, alpha: opts.alpha ?? 0, beta: opts.beta ?? 0, head: opts.head ?? 0,
  });
  return prog;
}
const newProgram = (threads = 2) => ({ arrays: [], layers: [], threads, seed: 7 });

// ---------- JS reference of the semantics (float64, same round-half-away-from-zero) ----------
const roundHA = (x) => Math.sign(x) * Math.round(Math.abs(x));
function reference(prog, input, batch) {
  let x = Array.from(input);
  for (const L of prog.layers) {
    const y = new Array(batch * L.outFeatures).fill(0);
    for (let b = 0; b < batch; b++) {
      const row = x.slice(b * L.inFeatures, (b + 1) * L.inFeatures);
      let s = 1;
      let v = row.map((xi) => xi * L.vRead);
      if (L.dacBits > 0) {
        s = Math.max(...row.map(Math.abs));
        const q = 2 ** (L.dacBits - 1) - 1;
        v = s === 0 ? row.map(() => 0) : row.map((xi) => Math.min(1, Math.max(-1, roundHA((xi / s) * q) / q)) * L.vRead);
      }
      const acc = new Array(L.outFeatures).fill(0);
      for (const t of L.tiles) {
        const A = prog.arrays[t.array];
        t.outputIndex.forEach((o, c) => {
          let I = 0;
          t.inputIndex.forEach((i, r) => {
            I += v[i] * (A.conductance[t.rowPos[r] * A.cols + t.colPos[c]] - A.conductance[t.rowNeg[r] * A.cols + t.colNeg[c]]);
          });
          if (L.adcBits > 0) {
            const lv = 2 ** (L.adcBits - 1) - 1, step = t.adcFullScale / lv;
            I = roundHA(Math.min(lv, Math.max(-lv, I / step))) * step;
          }
          acc[o] += I;
        });
      }
      let out = acc.map((a, j) => (a / L.vRead) * s * L.outScale[j] + L.bias[j]);
      const act = [(y) => y, (y) => Math.max(0, y), (y) => (y < 0 ? L.alpha * y : y), (y) => 1 / (1 + Math.exp(-y)),
        Math.tanh, (y) => Math.min(Math.max(y, L.alpha), L.beta)][L.activation];
      out = out.map(act);
      if (L.head > 0) {
        const mx = Math.max(...out);
        const lse = Math.log(out.reduce((a, y) => a + Math.exp(y - mx), 0));
        out = out.map((y) => (L.head === 1 ? Math.exp(y - mx - lse) : y - mx - lse));
      }
      out.forEach((val, j) => { y[b * L.outFeatures + j] = val; });
    }
    x = y;
  }
  return x;
}
const maxRelErr = (got, ref) => {
  const scale = Math.max(1e-30, ...ref.map(Math.abs));
  let e = 0;
  ref.forEach((r, i) => { e = Math.max(e, Math.abs(got[i] - r) / scale); });
  return e;
};
const randomInput = (n) => Float32Array.from({ length: n }, () => randn());

// ---------- correctness ----------
console.log(`kernel: ${addon.kernel()}`);
const cases = [
  ['single tile 100-37 relu', () => addLayer(newProgram(), 100, 37, 'single', { activation: 1 })],
  ['rows 128x64 tiles 200-150-10 tanh/softmax', () => addLayer(addLayer(newProgram(), 200, 150, 'rows', { activation: 4 }), 150, 10, 'rows', { head: 1 })],
  ['cols 128x64 tiles 300-70 sigmoid/logsoftmax', () => addLayer(newProgram(3), 300, 70, 'cols', { activation: 3, head: 2 })],
  ['gather + repeated inputs 130-90 leaky', () => addLayer(newProgram(), 130, 90, 'gather', { activation: 2, alpha: 0.1 })],
  ['clip, batch 1', () => addLayer(newProgram(), 50, 20, 'single', { activation: 5, alpha: -0.5, beta: 0.7 }), 1],
  ['600-40 (3 K blocks), batch 301 (row blocks), 3 threads', () => addLayer(newProgram(3), 600, 40, 'single'), 301],
];
for (const [name, build, batchArg] of cases) {
  const prog = build();
  const batch = batchArg ?? 37;
  const chip = new Chip(prog);
  const input = randomInput(batch * chip.inFeatures);
  const got = chip.runSync(input, batch);
  const err = maxRelErr(got, reference(prog, input, batch));
  check(err < 1e-5 && got.length === batch * chip.outFeatures, `${name}: max rel err ${err.toExponential(2)}`);
  const asyncGot = await chip.run(input, batch);
  check(asyncGot.every((v, i) => v === got[i]), `${name}: run() == runSync() bitwise`);
  const [inF, outF] = [chip.inFeatures, chip.outFeatures];
  const alone = [...new Set([0, Math.min(5, batch - 1), batch - 1])].every((b) => chip.runSync(input.slice(b * inF, (b + 1) * inF), 1)
    .every((v, j) => v === got[b * outF + j]));
  check(alone, `${name}: a row run alone == the same row in the batch, bitwise`);
}
{
  // a Float32Array view with a byte offset
  const prog = addLayer(newProgram(), 20, 6, 'single');
  const backing = randomInput(3 * 20 + 5);
  const view = backing.subarray(5);
  const err = maxRelErr(new Chip(prog).runSync(view, 3), reference(prog, view, 3));
  check(err < 1e-5, `input view with byteOffset: max rel err ${err.toExponential(2)}`);
}
if (process.argv[2] === '--correctness-only') process.exit(failures ? 1 : 0);
if (addon.kernel() !== 'scalar') {
  // the portable kernel, forced through the environment in a child process
  const child = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--correctness-only'],
    { env: { ...process.env, DENDRA_NATIVE_KERNEL: 'scalar' }, encoding: 'utf8' });
  check(child.status === 0 && child.stdout.includes('kernel: scalar'), `scalar kernel passes the correctness cases${child.status ? `\n${child.stdout}${child.stderr}` : ''}`);
}

// Quantised: the reference does the same rounding; float vs double sums may flip a value sitting on a rounding
// edge, so require >= 99% of outputs to agree to 1e-4 and every output within a few ADC steps.
for (const [name, bits, mode] of [['8-bit DAC/ADC, 128x64 row pairs', 8, 'rows'], ['4-bit DAC/ADC, col pairs', 4, 'cols'], ['6-bit DAC only', 6, 'single']]) {
  const adcBits = name.includes('DAC only') ? 0 : bits;
  const prog = addLayer(newProgram(), 260, 80, mode, { dacBits: bits, adcBits, adcFullScale: 0.2 * 40 * GS, vRead: 0.2 });
  const batch = 64;
  const chip = new Chip(prog);
  const input = randomInput(batch * 260);
  const got = chip.runSync(input, batch);
  const ref = reference(prog, input, batch);
  const scale = Math.max(...ref.map(Math.abs));
  const close = ref.filter((r, i) => Math.abs(got[i] - r) <= 1e-4 * scale).length / ref.length;
  check(close >= 0.99, `${name}: ${(close * 100).toFixed(2)}% of outputs match the quantised reference`);
  // quantisation must actually change something vs the unquantised program
  const plain = new Chip({ ...prog, layers: prog.layers.map((l) => ({ ...l, dacBits: 0, adcBits: 0 })) }).runSync(input, batch);
  check(maxRelErr(plain, ref) > 1e-4, `${name}: differs from the unquantised result (rel ${maxRelErr(plain, ref).toExponential(2)})`);
}

// Saturation: tiny full scale clamps every current to +-L steps.
{
  const prog = addLayer(newProgram(), 40, 8, 'single', { adcBits: 3, adcFullScale: 1e-9 });
  const input = randomInput(4 * 40);
  const err = maxRelErr(new Chip(prog).runSync(input, 4), reference(prog, input, 4));
  check(err < 1e-5, `ADC saturation: max rel err ${err.toExponential(2)}`);
}
// Zero input row with a DAC: output is the activation of the bias.
{
  const prog = addLayer(newProgram(), 30, 5, 'single', { dacBits: 8, activation: 1 });
  const got = new Chip(prog).runSync(new Float32Array(30), 1);
  check(got.every((v, j) => Math.abs(v - Math.max(0, prog.layers[0].bias[j])) < 1e-7), 'zero row with DAC -> relu(bias)');
}

// ---------- validation ----------
const base = () => addLayer(addLayer(newProgram(), 130, 70, 'rows', { activation: 1 }), 70, 10, 'rows');
const expectThrow = (what, mutate, pattern, kind) => {
  const prog = base();
  let msg = '(no error)';
  let ok = false;
  try {
    mutate(prog);
    new Chip(prog);
  } catch (e) {
    msg = `${e.constructor.name}: ${e.message}`;
    ok = e.message.startsWith('dendra native: ') && pattern.test(e.message) && (!kind || e instanceof kind);
  }
  check(ok, `rejects ${what} -> ${msg}`);
};
const T = (l, t) => (p) => p.layers[l].tiles[t];
expectThrow('missing arrays', (p) => delete p.arrays, /program\.arrays must be an array \(got undefined\)/, TypeError);
expectThrow('no layers', (p) => { p.layers = []; }, /program\.layers is empty/, RangeError);
expectThrow('rows not integer', (p) => { p.arrays[1].rows = 1.5; }, /arrays\[1\]\.rows = 1\.5 must be an integer/, RangeError);
expectThrow('conductance wrong type', (p) => { p.arrays[0].conductance = new Float64Array(128 * 64); }, /arrays\[0\]\.conductance must be a Float32Array \(got Float64Array\)/, TypeError);
expectThrow('conductance length', (p) => { p.arrays[2].conductance = new Float32Array(100); }, /arrays\[2\]\.conductance has length 100, expected 8192/, RangeError);
expectThrow('negative conductance', (p) => { p.arrays[0].conductance[17] = -1e-5; }, /arrays\[0\]\.conductance\[17\] = .* must be finite and >= 0/, RangeError);
expectThrow('NaN conductance', (p) => { p.arrays[0].conductance[3] = NaN; }, /arrays\[0\]\.conductance\[3\] = NaN/, RangeError);
expectThrow('tile array out of range', (p) => { T(0, 1)(p).array = 99; }, /layers\[0\]\.tiles\[1\]\.array = 99 must be in \[0, /, RangeError);
expectThrow('rowPos out of array', (p) => { T(1, 0)(p).rowPos = Int32Array.from(T(1, 0)(p).rowPos, (v, i) => (i === 7 ? 130 : v)); }, /layers\[1\]\.tiles\[0\]\.rowPos\[7\] = 130 is outside array \d+ \(128 rows\)/, RangeError);
expectThrow('rowNeg negative', (p) => { T(0, 0)(p).rowNeg[3] = -1; }, /layers\[0\]\.tiles\[0\]\.rowNeg\[3\] = -1 is outside array 0/, RangeError);
expectThrow('colPos out of array', (p) => { T(0, 2)(p).colPos[0] = 64; }, /layers\[0\]\.tiles\[2\]\.colPos\[0\] = 64 is outside array 2 \(64 cols\)/, RangeError);
expectThrow('colNeg wrong type', (p) => { T(0, 0)(p).colNeg = [...T(0, 0)(p).colNeg]; }, /layers\[0\]\.tiles\[0\]\.colNeg must be an Int32Array \(got Array\)/, TypeError);
expectThrow('inputIndex out of range', (p) => { T(0, 0)(p).inputIndex[5] = 130; }, /layers\[0\]\.tiles\[0\]\.inputIndex\[5\] = 130 is outside \[0, 130\)/, RangeError);
expectThrow('outputIndex out of range', (p) => { T(1, 0)(p).outputIndex[2] = 10; }, /layers\[1\]\.tiles\[0\]\.outputIndex\[2\] = 10 is outside \[0, 10\)/, RangeError);
expectThrow('rowPos length', (p) => { T(0, 0)(p).rowPos = T(0, 0)(p).rowPos.subarray(1); }, /layers\[0\]\.tiles\[0\]\.rowPos has length 63, expected 64/, RangeError);
expectThrow('colNeg length', (p) => { T(0, 0)(p).colNeg = new Int32Array(3); }, /layers\[0\]\.tiles\[0\]\.colNeg has length 3, expected 64/, RangeError);
expectThrow('empty tile', (p) => { Object.assign(T(0, 0)(p), { inputIndex: new Int32Array(0), rowPos: new Int32Array(0), rowNeg: new Int32Array(0) }); }, /inputIndex is empty/, RangeError);
expectThrow('outScale length', (p) => { p.layers[0].outScale = new Float32Array(69); }, /layers\[0\]\.outScale has length 69, expected 70/, RangeError);
expectThrow('bias type', (p) => { p.layers[1].bias = new Array(10).fill(0); }, /layers\[1\]\.bias must be a Float32Array \(got Array\)/, TypeError);
expectThrow('bias NaN', (p) => { p.layers[1].bias[4] = NaN; }, /layers\[1\]\.bias\[4\] = NaN must be finite/, RangeError);
expectThrow('layer chain', (p) => { p.layers[1].inFeatures = 71; }, /layers\[1\]\.inFeatures = 71 does not match layers\[0\]\.outFeatures = 70/, RangeError);
expectThrow('dacBits 17', (p) => { p.layers[0].dacBits = 17; }, /layers\[0\]\.dacBits = 17 must be in \[0, 16\]/, RangeError);
expectThrow('adcBits fraction', (p) => { p.layers[1].adcBits = 2.5; }, /layers\[1\]\.adcBits = 2\.5 must be an integer/, RangeError);
expectThrow('dacBits string', (p) => { p.layers[1].dacBits = '8'; }, /layers\[1\]\.dacBits must be a number \(got string\)/, TypeError);
expectThrow('vRead 0', (p) => { p.layers[0].vRead = 0; }, /layers\[0\]\.vRead = 0 must be > 0/, RangeError);
expectThrow('vRead Infinity', (p) => { p.layers[0].vRead = Infinity; }, /layers\[0\]\.vRead = Infinity must be finite/, RangeError);
expectThrow('adcFullScale 0 with ADC', (p) => { p.layers[0].adcBits = 8; }, /layers\[0\]\.tiles\[0\]\.adcFullScale = 0 must be > 0/, RangeError);
expectThrow('activation code', (p) => { p.layers[0].activation = 6; }, /layers\[0\]\.activation = 6 must be in \[0, 5\]/, RangeError);
expectThrow('head code', (p) => { p.layers[1].head = -1; }, /layers\[1\]\.head = -1 must be in \[0, 2\]/, RangeError);
expectThrow('alpha missing', (p) => { delete p.layers[0].alpha; }, /layers\[0\]\.alpha must be a number \(got undefined\)/, TypeError);
expectThrow('threads 0', (p) => { p.threads = 0; }, /program\.threads = 0 must be in \[1, 256\]/, RangeError);
expectThrow('threads 257', (p) => { p.threads = 257; }, /program\.threads = 257/, RangeError);
expectThrow('seed negative', (p) => { p.seed = -1; }, /program\.seed = -1 must be in \[0, 4294967295\]/, RangeError);
expectThrow('seed 2^32', (p) => { p.seed = 2 ** 32; }, /program\.seed = 4294967296/, RangeError);
expectThrow('huge rows', (p) => { p.arrays[0].rows = 2 ** 40; }, /arrays\[0\]\.rows = 1099511627776 must be in/, RangeError);
expectThrow('tile not object', (p) => { p.layers[0].tiles[0] = 5; }, /layers\[0\]\.tiles\[0\] must be an object \(got number 5\)/, TypeError);
{
  let msg = '(no error)';
  try { new Chip(); } catch (e) { msg = e.message; }
  check(/program must be an object \(got undefined\)/.test(msg), `rejects missing program -> ${msg}`);
}

// run/runSync argument checks
{
  const chip = new Chip(base());
  const bad = [
    [() => chip.runSync(new Float64Array(130), 1), /runSync: input must be a Float32Array \(got Float64Array\)/],
    [() => chip.runSync(new Float32Array(130), 2), /runSync: input\.length = 130 but batch\*inFeatures = 2\*130 = 260/],
    [() => chip.runSync(new Float32Array(130), 0), /runSync: batch = 0 must be a positive integer/],
    [() => chip.runSync(new Float32Array(130), 1.5), /batch = 1\.5 must be a positive integer/],
    [() => chip.runSync(new Float32Array(130)), /batch must be a number \(got undefined\)/],
    [() => chip.run(new Float32Array(3), 1), /run: input\.length = 3/],
  ];
  for (const [f, re] of bad) {
    let msg = '(no error)';
    try { f(); } catch (e) { msg = e.message; }
    check(re.test(msg), `rejects bad call -> ${msg}`);
  }
  // release during an in-flight run is safe; later calls throw
  const input = randomInput(512 * 130);
  const pending = chip.run(input, 512);
  chip.release();
  const out = await pending;
  check(out.length === 512 * 10 && out.every(Number.isFinite), 'release() during run(): the run still resolves');
  let msg = '(no error)';
  try { chip.runSync(input, 512); } catch (e) { msg = e.message; }
  check(msg === 'dendra native: chip was released', `runSync after release -> ${msg}`);
  msg = '(no error)';
  try { await chip.run(input, 512); } catch (e) { msg = e.message; }
  check(msg === 'dendra native: chip was released', `run after release -> ${msg}`);
  check(chip.inFeatures === 130 && chip.outFeatures === 10, 'feature getters survive release()');
  chip.release(); // idempotent
}
// concurrent runs on one instance
{
  const prog = base();
  const chip = new Chip(prog);
  const inputs = [1, 2, 3, 4].map(() => randomInput(100 * 130));
  const outs = await Promise.all(inputs.map((x) => chip.run(x, 100)));
  check(outs.every((o, i) => o.every((v, j) => v === chip.runSync(inputs[i], 100)[j])), '4 concurrent run() calls match runSync()');
}

// ---------- throughput ----------
function time(label, chip, batch, seconds = 1.5) {
  const input = randomInput(batch * chip.inFeatures);
  for (let i = 0; i < 20; i++) chip.runSync(input, batch);
  let n = 0;
  const t0 = process.hrtime.bigint();
  let dt = 0;
  while (dt < seconds) {
    chip.runSync(input, batch);
    n++;
    dt = Number(process.hrtime.bigint() - t0) / 1e9;
  }
  console.log(`perf ${label}: ${((n * batch) / dt).toFixed(0)} inferences/s (${((dt / n) * 1e3).toFixed(3)} ms per batch of ${batch})`);
}
const mlp = (mode, q) => addLayer(addLayer(newProgram(2), 784, 500, mode, { activation: 1, ...q }), 500, 10, mode, { head: 1, ...q });
time('784-500-10 one tile/layer, ideal, batch 256', new Chip(mlp('single')), 256);
time('784-500-10 128x64 tiles, 8-bit DAC/ADC, batch 256', new Chip(mlp('rows', { dacBits: 8, adcBits: 8, adcFullScale: 0.2 * 30 * GS })), 256);
time('784-500-10 one tile/layer, ideal, batch 1', new Chip(mlp('single')), 1, 0.5);

console.log(failures ? `${failures} FAILED` : 'all smoke checks passed');
process.exitCode = failures ? 1 : 0;
