// Developer smoke test of the native addon: node native/smoke.mjs  (after `npx cmake-js compile --out build`)
// Checks runSync/run against a plain JS reference, the device physics (programming error, stuck cells, drift,
// IR drop, read noise), the validation errors, release(), and times 784-500-10 ideal vs with every non-ideality.
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
// ---------- device physics: programming error, stuck cells, drift, IR drop, read noise ----------
const randomStuck = (n, rate) => Uint8Array.from({ length: n }, () => (R() < rate ? 1 + (R() < 0.5 ? 1 : 0) : 0));
// (a function, run after the other checks so it does not shift their random inputs; the scalar child runs it too)
async function physicsChecks() {
  const IDEAL = { programSigma: 0, programRelative: 0, readSigma: 0, readRelative: 0, driftNu: 0, driftNuSigma: 0, driftT0: 1, time: 0, wireResistance: 0 };
  const stats = (xs) => {
    let m = 0;
    for (const x of xs) m += x;
    m /= xs.length;
    let v = 0;
    for (const x of xs) v += (x - m) ** 2;
    return { mean: m, std: Math.sqrt(v / (xs.length - 1)) };
  };
  /**
   * One 128x64 array, one tile on rows pairs (input r drives rows r / r+64, output c reads column c), outScale 1 and
   * no bias: the output is the column current / vRead, so expectations can be written in siemens.
   */
  function physProgram({ g, stuck, physics, seed = 7, threads = 2, dacBits = 0, adcBits = 0, adcFullScale = 0 } = {}) {
    const prog = { arrays: [{ rows: 128, cols: 64, conductance: g ?? new Float32Array(128 * 64).fill(1e-4), ...(stuck ? { stuck } : {}) }],
      layers: [{ inFeatures: 64, outFeatures: 64, vRead: 0.2, dacBits, adcBits, activation: 0, alpha: 0, beta: 0, head: 0,
        outScale: new Float32Array(64).fill(1), bias: new Float32Array(64),
        tiles: [{ array: 0, inputIndex: range(64), rowPos: range(64), rowNeg: range(64, (r) => r + 64), outputIndex: range(64),
          colPos: range(64), colNeg: range(64), adcFullScale }] }],
      threads, seed };
    if (physics) prog.physics = { ...IDEAL, ...physics };
    return prog;
  }
  const stuckG = (g, stuck) => { stuck.forEach((s, i) => { if (s === 1) g[i] = 2e-4; if (s === 2) g[i] = 1e-7; }); return g; };
  {
    // programming error, absolute and relative, with stuck cells left alone
    for (const [label, physics, sigma] of [['programSigma = 4e-6', { programSigma: 4e-6 }, 4e-6], ['programRelative = 0.05', { programRelative: 0.05 }, 5e-6]]) {
      const stuck = randomStuck(128 * 64, 0.1);
      const target = stuckG(new Float32Array(128 * 64).fill(1e-4), stuck);
      const chip = new Chip(physProgram({ g: target, stuck, physics }));
      const held = chip.conductances(0);
      const healthy = [...held].filter((_, i) => stuck[i] === 0);
      const { mean, std } = stats(healthy);
      const n = healthy.length;
      check(Math.abs(mean - 1e-4) < 4 * sigma / Math.sqrt(n) && Math.abs(std / sigma - 1) < 0.03,
        `${label}: ${n} healthy cells mean ${mean.toExponential(4)} (target 1e-4), std ${std.toExponential(3)} (expected ${sigma.toExponential(1)}, ${((std / sigma - 1) * 100).toFixed(2)}%)`);
      check(held.every((v, i) => stuck[i] === 0 || v === target[i]), `${label}: stuck cells keep exactly their conductance`);
    }
    // clamped at 0
    const low = new Chip(physProgram({ g: new Float32Array(128 * 64).fill(1e-6), physics: { programSigma: 1e-5 } })).conductances(0);
    check(low.every((v) => v >= 0) && low.filter((v) => v === 0).length > 128 * 64 * 0.4, `programming error clamps at 0 (${low.filter((v) => v === 0).length} cells at 0)`);
    // reproducible: same seed -> same conductances, different seed -> different
    const ph = { programSigma: 2e-6, programRelative: 0.02, driftNu: 0.05, driftNuSigma: 0.01, time: 100 };
    const a = new Chip(physProgram({ physics: ph, seed: 11 })).conductances(0);
    const b = new Chip(physProgram({ physics: ph, seed: 11, threads: 1 })).conductances(0);
    const c = new Chip(physProgram({ physics: ph, seed: 12 })).conductances(0);
    check(a.every((v, i) => v === b[i]), 'same seed -> identical conductances()');
    check(a.filter((v, i) => v !== c[i]).length > 128 * 64 * 0.99, 'different seed -> different conductances()');
    const copy = new Chip(physProgram({ physics: ph, seed: 11 }));
    const g1 = copy.conductances(0);
    g1.fill(0);
    check(copy.conductances(0).every((v, i) => v === a[i]), 'conductances() returns a copy');
    // ideal programs: held == target, physics of zeros == no physics, bitwise
    const target = Float32Array.from({ length: 128 * 64 }, () => R() * 1e-4);
    const stuck = randomStuck(128 * 64, 0.05);
    const plain = new Chip(physProgram({ g: target }));
    check(plain.conductances(0).every((v, i) => v === target[i]), 'no physics: conductances() == targets');
    const x = randomInput(50 * 64);
    const y0 = plain.runSync(x, 50);
    const y1 = new Chip(physProgram({ g: target, stuck, physics: {} })).runSync(x, 50);
    check(y0.every((v, i) => v === y1[i]), 'all-zero physics + stuck map == ideal program, bitwise');
  }
  {
    // drift: every healthy cell scaled by (time/t0)^-nu, stuck cells untouched
    const stuck = randomStuck(128 * 64, 0.1);
    const target = stuckG(Float32Array.from({ length: 128 * 64 }, () => 1e-6 + R() * 1e-4), stuck);
    const chip = new Chip(physProgram({ g: target, stuck, physics: { time: 1e4, driftT0: 1, driftNu: 0.01, driftNuSigma: 0 } }));
    const held = chip.conductances(0);
    const f = 1e4 ** -0.01;
    let worst = 0;
    held.forEach((v, i) => { if (!stuck[i]) worst = Math.max(worst, Math.abs(v - Math.fround(target[i] * f)) / Math.fround(target[i] * f)); });
    check(worst <= 6e-8, `drift 1e4^-0.01 = ${f.toFixed(6)}: every healthy cell exactly scaled (max rel dev ${worst.toExponential(1)}, <= half a float ulp)`);
    check(held.every((v, i) => !stuck[i] || v === target[i]), 'drift: stuck cells untouched');
    const early = new Chip(physProgram({ g: target, physics: { time: 0.5, driftT0: 1, driftNu: 0.3 } })).conductances(0);
    check(early.every((v, i) => v === target[i]), 'drift: no change while time <= t0');
    const spread = new Chip(physProgram({ g: target, physics: { time: 1e4, driftNu: 0.01, driftNuSigma: 0.02 } })).conductances(0);
    const nus = [...spread].map((v, i) => -Math.log(v / target[i]) / Math.log(1e4)).filter((_, i) => !stuck[i]);
    const clamped = nus.filter((nu) => Math.abs(nu) < 1e-6).length / nus.length;
    check(nus.every((nu) => nu > -1e-6) && Math.abs(clamped - 0.3085) < 0.03, `driftNuSigma: nu >= 0, ${(clamped * 100).toFixed(1)}% clamped at 0 (expected 30.9%)`);
  }
  {
    // IR drop, one cell per column: out_c = x[i_c] * G / (1 + G r (j + 1 + R - i_c))
    const r = 2.5;
    const g = new Float32Array(128 * 64);
    const cellRow = range(64, (c) => (c * 37) % 64 + (c % 2) * 64);  // positive (rows 0..63) or negative (64..127) half
    const gv = Float32Array.from({ length: 64 }, (_, c) => 1e-5 + (c / 63) * 9e-4);
    cellRow.forEach((i, c) => { g[i * 64 + c] = gv[c]; });
    const prog = physProgram({ g, physics: { wireResistance: r } });
    const x = randomInput(3 * 64);
    const got = new Chip(prog).runSync(x, 3);
    let worst = 0;
    let maxDrop = 0;
    for (let b = 0; b < 3; b++) for (let c = 0; c < 64; c++) {
      const i = cellRow[c];
      const geff = gv[c] / (1 + gv[c] * r * (c + 1 + 128 - i));
      const want = (i < 64 ? 1 : -1) * x[b * 64 + (i % 64)] * geff;
      worst = Math.max(worst, Math.abs(got[b * 64 + c] - want) / Math.abs(want));
      maxDrop = Math.max(maxDrop, 1 - geff / gv[c]);
    }
    check(worst < 1e-5, `IR drop, one cell per column: max rel err ${worst.toExponential(2)} vs the formula (largest drop ${(maxDrop * 100).toFixed(1)}%)`);
    // the whole formula on a random multi-tile network: the JS reference on the effective conductances
    const net = addLayer(addLayer(newProgram(), 150, 70, 'rows', { activation: 1 }), 70, 10, 'cols');
    net.physics = { ...IDEAL, wireResistance: 1.5 };
    const eff = { ...net, arrays: net.arrays.map((a) => ({ ...a, conductance: Float32Array.from(a.conductance, (gg, k) => {
      const [i, j] = [Math.floor(k / a.cols), k % a.cols];
      return gg / (1 + gg * 1.5 * (j + 1 + a.rows - i));
    }) })) };
    const xin = randomInput(20 * 150);
    const errIr = maxRelErr(new Chip(net).runSync(xin, 20), reference(eff, xin, 20));
    const errIdeal = maxRelErr(new Chip({ ...net, physics: IDEAL }).runSync(xin, 20), reference(eff, xin, 20));
    check(errIr < 1e-5 && errIdeal > 1e-3, `IR drop, 150-70-10 on 128x64 tiles: max rel err ${errIr.toExponential(2)} vs reference (ideal differs by ${errIdeal.toExponential(2)})`);
  }
  {
    // read noise: one input row repeated N times; each column's std must match sqrt(sum v^2 (s(G+)^2 + s(G-)^2))
    const N = 4000;
    const stuck = randomStuck(128 * 64, 0.05);
    const g = stuckG(Float32Array.from({ length: 128 * 64 }, () => R() * 1e-4), stuck);
    const physics = { readSigma: 2e-7, readRelative: 0.03 };
    for (const dacBits of [0, 8]) {
      const prog = physProgram({ g, stuck, physics, dacBits, seed: 7 + dacBits });
      const chip = new Chip(prog);
      const ideal = new Chip(physProgram({ g, stuck, dacBits }));
      const row = randomInput(64);
      const x = new Float32Array(N * 64);
      for (let b = 0; b < N; b++) x.set(row, b * 64);
      const y = chip.runSync(x, N);
      const y0 = ideal.runSync(row, 1);
      // the DAC'd voltages (normalised), as the chip applies them
      let s = 1;
      let u = [...row];
      if (dacBits) {
        s = Math.max(...row.map(Math.abs));
        const q = 2 ** (dacBits - 1) - 1;
        u = row.map((v) => Math.min(1, Math.max(-1, roundHA((v / s) * q) / q)));
      }
      const sd = (G) => physics.readSigma + physics.readRelative * G;
      let worstStd = 0, worstMean = 0, sumRatio = 0;
      const zs = [];
      for (let c = 0; c < 64; c++) {
        let v = 0;
        for (let r2 = 0; r2 < 64; r2++) v += u[r2] ** 2 * (sd(g[r2 * 64 + c]) ** 2 + sd(g[(r2 + 64) * 64 + c]) ** 2);
        const want = Math.sqrt(v) * s;
        const col = Array.from({ length: N }, (_, b) => y[b * 64 + c]);
        const st = stats(col);
        worstStd = Math.max(worstStd, Math.abs(st.std / want - 1));
        sumRatio += st.std / want;
        worstMean = Math.max(worstMean, Math.abs(st.mean - y0[c]) / (want / Math.sqrt(N)));
        for (const val of col) zs.push((val - y0[c]) / want);
      }
      check(worstStd < 0.05 && Math.abs(sumRatio / 64 - 1) < 0.01,
        `read noise (dacBits ${dacBits}): 64 columns' empirical std / predicted: mean ${(sumRatio / 64).toFixed(4)}, worst ${(worstStd * 100).toFixed(2)}% off`);
      check(worstMean < 4.5, `read noise (dacBits ${dacBits}): means unchanged (worst ${worstMean.toFixed(2)} standard errors)`);
      // the deviates are Gaussian and independent across columns (pairs share one 64-bit draw: c and c + 32)
      const n = zs.length;
      const m2 = zs.reduce((a, z) => a + z * z, 0) / n, m4 = zs.reduce((a, z) => a + z ** 4, 0) / n;
      const in1 = zs.filter((z) => Math.abs(z) < 1).length / n, in2 = zs.filter((z) => Math.abs(z) < 2).length / n;
      check(Math.abs(m4 / m2 ** 2 - 3) < 0.06 && Math.abs(in1 - 0.6827) < 0.006 && Math.abs(in2 - 0.9545) < 0.004,
        `read noise (dacBits ${dacBits}): Gaussian shape: kurtosis ${(m4 / m2 ** 2).toFixed(3)}, P(|z|<1) ${in1.toFixed(4)}, P(|z|<2) ${in2.toFixed(4)}`);
      let worstCorr = 0;
      for (const [c1, c2] of [[0, 1], [0, 32], [5, 37], [31, 63], [10, 11]]) {
        let acc = 0;
        for (let b = 0; b < N; b++) acc += zs[c1 * N + b] * zs[c2 * N + b];
        worstCorr = Math.max(worstCorr, Math.abs(acc / N));
      }
      check(worstCorr < 4 / Math.sqrt(N), `read noise (dacBits ${dacBits}): columns uncorrelated (worst |r| ${worstCorr.toFixed(4)})`);
    }
    // determinism: threads 1 vs 2 vs 3, same seed and call sequence -> identical; runs differ; seeds differ
    const net = addLayer(addLayer(newProgram(), 200, 90, 'rows', { activation: 1, dacBits: 8, adcBits: 8, adcFullScale: 0.2 * 30 * GS }), 90, 10, 'rows', { dacBits: 8, adcBits: 8, adcFullScale: 0.2 * 30 * GS });
    net.physics = { ...IDEAL, readSigma: 5e-8, readRelative: 0.02, programSigma: 1e-7, wireResistance: 1 };
    const xin = randomInput(301 * 200);
    const seq = async (threads, seed = 7) => {
      const chip = new Chip({ ...net, threads, seed });
      return [chip.runSync(xin, 301), await chip.run(xin, 301), chip.runSync(xin.subarray(0, 200 * 13), 13)];
    };
    const [t1, t2, t3] = [await seq(1), await seq(2), await seq(3)];
    const same = (a, b) => a.length === b.length && a.every((v, i) => v === b[i]);
    check([t2, t3].every((t) => t.every((o, i) => same(o, t1[i]))), 'read noise: threads 1, 2, 3 -> identical outputs for the same seed and call sequence (batch 301, run + runSync)');
    check(!same(t1[0], t1[1]), `read noise: two runs of the same input differ (${t1[0].filter((v, i) => v !== t1[1][i]).length} of ${t1[0].length} outputs)`);
    const other = await seq(2, 8);
    check(!same(other[0], t1[0]), 'read noise: another seed -> other outputs');
    // concurrent run() calls are numbered at call time: the same sequence gives the same outputs
    const c1 = new Chip({ ...net, threads: 2 }), c2 = new Chip({ ...net, threads: 1 });
    const xs = [0, 1, 2].map(() => randomInput(40 * 200));
    const o1 = await Promise.all(xs.map((xx) => c1.run(xx, 40)));
    const o2 = [];
    for (const xx of xs) o2.push(c2.runSync(xx, 40));
    check(o1.every((o, i) => same(o, o2[i])), 'read noise: 3 concurrent run() calls == 3 sequential runSync() calls on another chip');
    // noise is added before the ADC: outputs stay on the ADC grid
    const adcProg = physProgram({ g, physics: { readSigma: 1e-6 }, adcBits: 6, adcFullScale: 4e-6 });
    const yq = new Chip(adcProg).runSync(randomInput(10 * 64), 10);
    const step = 4e-6 / 31 / 0.2;
    check(yq.every((v) => Math.abs(v / step - Math.round(v / step)) < 1e-3), 'read noise: added before the ADC (outputs on the ADC grid)');
  }
  {
    // validation of the new fields
    const vprog = () => physProgram({ physics: {}, stuck: new Uint8Array(128 * 64) });
    const expectPhys = (what, mutate, pattern, kind) => {
      let msg = '(no error)';
      let ok = false;
      try {
        const p = vprog();
        mutate(p);
        new Chip(p);
      } catch (e) {
        msg = `${e.constructor.name}: ${e.message}`;
        ok = e.message.startsWith('dendra native: ') && pattern.test(e.message) && (!kind || e instanceof kind);
      }
      check(ok, `rejects ${what} -> ${msg}`);
    };
    for (const k of Object.keys(IDEAL)) {
      const pos = k === 'driftT0';
      expectPhys(`physics.${k} = -1`, (p) => { p.physics[k] = -1; }, new RegExp(`^dendra native: physics\\.${k} = -1 must be ${pos ? '> 0' : '>= 0'}$`), RangeError);
      expectPhys(`physics.${k} = NaN`, (p) => { p.physics[k] = NaN; }, new RegExp(`physics\\.${k} = NaN must be finite`), RangeError);
      expectPhys(`physics.${k} missing`, (p) => { delete p.physics[k]; }, new RegExp(`physics\\.${k} must be a number \\(got undefined\\)`), TypeError);
    }
    expectPhys('physics.driftT0 = 0', (p) => { p.physics.driftT0 = 0; }, /physics\.driftT0 = 0 must be > 0/, RangeError);
    expectPhys('physics.time = Infinity', (p) => { p.physics.time = Infinity; }, /physics\.time = Infinity must be finite/, RangeError);
    expectPhys('physics.readSigma string', (p) => { p.physics.readSigma = '1e-6'; }, /physics\.readSigma must be a number \(got string\)/, TypeError);
    expectPhys('physics null', (p) => { p.physics = null; }, /physics must be an object \(got null\)/, TypeError);
    expectPhys('physics number', (p) => { p.physics = 3; }, /physics must be an object \(got number 3\)/, TypeError);
    expectPhys('stuck value 3', (p) => { p.arrays[0].stuck[77] = 3; }, /arrays\[0\]\.stuck\[77\] = 3 must be 0 \(healthy\), 1 \(stuck ON\) or 2 \(stuck OFF\)/, RangeError);
    expectPhys('stuck length', (p) => { p.arrays[0].stuck = new Uint8Array(10); }, /arrays\[0\]\.stuck has length 10, expected 8192/, RangeError);
    expectPhys('stuck type', (p) => { p.arrays[0].stuck = new Int8Array(128 * 64); }, /arrays\[0\]\.stuck must be a Uint8Array \(got Int8Array\)/, TypeError);
    expectPhys('stuck Array', (p) => { p.arrays[0].stuck = [0, 1]; }, /arrays\[0\]\.stuck must be a Uint8Array \(got Array\)/, TypeError);
    expectPhys('stuck null', (p) => { p.arrays[0].stuck = null; }, /arrays\[0\]\.stuck must be a Uint8Array \(got null\)/, TypeError);
    const chip = new Chip(vprog());
    for (const [arg, re] of [[1, /conductances: array = 1 must be an integer in \[0, 0\]/], [-1, /array = -1 must be/], [0.5, /array = 0\.5 must be/], ['0', /conductances: array must be a number \(got string\)/], [undefined, /got undefined/]]) {
      let msg = '(no error)';
      try { chip.conductances(arg); } catch (e) { msg = `${e.constructor.name}: ${e.message}`; }
      check(re.test(msg), `conductances(${JSON.stringify(arg)}) -> ${msg}`);
    }
    chip.release();
    let msg = '(no error)';
    try { chip.conductances(0); } catch (e) { msg = e.message; }
    check(msg === 'dendra native: chip was released', `conductances after release -> ${msg}`);
  }
}

if (process.argv[2] === '--correctness-only') {
  await physicsChecks();
  process.exit(failures ? 1 : 0);
}
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

await physicsChecks();

// ---------- throughput ----------
function time(label, chip, batch, seconds = 1.5, quiet = false) {
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
  const rate = (n * batch) / dt;
  if (!quiet) console.log(`perf ${label}: ${rate.toFixed(0)} inferences/s (${((dt / n) * 1e3).toFixed(3)} ms per batch of ${batch})`);
  return rate;
}
const mlp = (mode, q) => addLayer(addLayer(newProgram(2), 784, 500, mode, { activation: 1, ...q }), 500, 10, mode, { head: 1, ...q });
time('784-500-10 one tile/layer, ideal, batch 256', new Chip(mlp('single')), 256);
const q8 = { dacBits: 8, adcBits: 8, adcFullScale: 0.2 * 30 * GS };
const tiled = mlp('rows', q8);
time('784-500-10 128x64 tiles, 8-bit DAC/ADC, batch 256', new Chip(tiled), 256);
time('784-500-10 one tile/layer, ideal, batch 1', new Chip(mlp('single')), 1, 0.5);
{
  // every non-ideality on (read noise is the only one with a run-time cost): same network, same tiles.
  // Interleaved rounds, best of each, so a busy machine affects both alike.
  const physics = { programSigma: 5e-7, programRelative: 0.02, readSigma: 1e-7, readRelative: 0.01, driftNu: 0.02,
    driftNuSigma: 0.005, driftT0: 1, time: 3600, wireResistance: 1 };
  const noisy = { ...tiled, physics, arrays: tiled.arrays.map((a) => ({ ...a, stuck: randomStuck(a.rows * a.cols, 0.01) })) };
  const ideal = new Chip(tiled), real = new Chip(noisy);
  // Paired rounds (ideal, then the same with physics, back to back): the median of the per-round ratios is
  // robust to a machine whose speed changes under other load; the best rates are shown too.
  const ratios = [];
  let [bestIdeal, bestReal] = [0, 0];
  for (let round = 0; round < 7; round++) {
    const ri = time('', ideal, 256, 0.4, true), rr = time('', real, 256, 0.4, true);
    ratios.push(rr / ri);
    bestIdeal = Math.max(bestIdeal, ri);
    bestReal = Math.max(bestReal, rr);
  }
  ratios.sort((x, y) => x - y);
  const ratio = ratios[3];
  console.log(`perf 784-500-10 128x64 tiles, 8-bit DAC/ADC, batch 256, ideal: ${bestIdeal.toFixed(0)} inferences/s; ` +
    `all non-idealities (read noise, programming error, drift, IR drop, 1% stuck): ${bestReal.toFixed(0)} inferences/s ` +
    `(per-round ratios ${ratios.map((r) => r.toFixed(3)).join(' ')})`);
  // The target is >= 0.5. Timing on a shared machine is not a correctness property, so only a gross regression
  // (< 0.4) fails the smoke run; the line says whether the target was met here.
  console.log(`perf ratio all non-idealities / ideal = ${ratio.toFixed(3)} (median of paired rounds): ` +
    `${ratio >= 0.5 ? 'meets' : 'BELOW'} the 0.5 target on this machine`);
  check(ratio >= 0.4, `throughput with every non-ideality / ideal = ${ratio.toFixed(3)} (regression guard >= 0.4; target 0.5)`);
}

console.log(failures ? `${failures} FAILED` : 'all smoke checks passed');
process.exitCode = failures ? 1 : 0;
