/**
 * Mutations for the fuzz targets, drawn with fast-check (its arbitraries and seeded sampling):
 * byte-level edits (bit flips, interesting bytes and 32-bit words, deletions, insertions, duplications,
 * truncation, splices with another seed) and structure-aware edits of JSON trees (replace a value with an
 * interesting one, delete or add a key, scale a number, grow a list). Targets apply them to raw files,
 * to JSON documents, or to the JSON inside a container whose checksums they then re-seal.
 */
import fc from 'fast-check';

const at = fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true });

export type ByteOp =
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'byte'; at: number; value: number }
  | { kind: 'u32'; at: number; value: number }
  | { kind: 'delete'; at: number; len: number }
  | { kind: 'insert'; at: number; bytes: Uint8Array }
  | { kind: 'duplicate'; at: number; len: number; to: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'splice'; at: number; other: number; from: number; len: number };

const INTERESTING_U32 = [0, 1, 2, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff, 64 * 1024 * 1024, 64 * 1024 * 1024 + 1];

export const byteOp: fc.Arbitrary<ByteOp> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at, bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant('byte' as const), at, value: fc.oneof(fc.constantFrom(0, 1, 0x7f, 0x80, 0xff, 0x22, 0x2c, 0x3a, 0x7b, 0x7d, 0x5b), fc.integer({ min: 0, max: 255 })) }),
  fc.record({ kind: fc.constant('u32' as const), at, value: fc.constantFrom(...INTERESTING_U32) }),
  fc.record({ kind: fc.constant('delete' as const), at, len: fc.integer({ min: 1, max: 256 }) }),
  fc.record({ kind: fc.constant('insert' as const), at, bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }) }),
  fc.record({ kind: fc.constant('duplicate' as const), at, len: fc.integer({ min: 1, max: 512 }), to: at }),
  fc.record({ kind: fc.constant('truncate' as const), at }),
  fc.record({ kind: fc.constant('splice' as const), at, other: fc.nat(), from: at, len: fc.integer({ min: 1, max: 1024 }) }),
);

export type JsonOp =
  | { kind: 'set'; at: number; value: unknown }
  | { kind: 'delete'; at: number }
  | { kind: 'add'; at: number; key: string; value: unknown }
  | { kind: 'scale'; at: number; factor: number }
  | { kind: 'grow'; at: number; times: number };

const interestingValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom<unknown>(null, true, false, 0, -1, 1, 2, 0.5, -0.5, 1e308, -1e308, 2 ** 31, 2 ** 32, 2 ** 53 + 2, -(2 ** 31), 1e-320, 65536, 100000, '', 'x', 'NaN', '../../../etc/passwd', '/dev/zero', [], {}, [null], [0, 0, 'on', 0]) },
  { weight: 2, arbitrary: fc.integer({ min: -5, max: 5000 }) },
  { weight: 1, arbitrary: fc.double() },
  { weight: 1, arbitrary: fc.string({ maxLength: 12 }) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
  { weight: 1, arbitrary: fc.array(fc.integer({ min: -2, max: 100000 }), { maxLength: 4 }) },
  { weight: 1, arbitrary: fc.constantFrom<unknown>({ $blob: 0 }, { $blob: -1 }, { $blob: 1e9 }, { $blob: 0.5 }, { $number: 'NaN' }, { $number: 'Infinity' }, { $number: '-1e400' }) },
);

export const jsonOp: fc.Arbitrary<JsonOp> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('set' as const), at, value: interestingValue }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('delete' as const), at }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('add' as const), at, key: fc.constantFrom('bitz', 'extra', '__proto__', 'constructor', 'rows', 'cols', 'faults', 'length'), value: interestingValue }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('scale' as const), at, factor: fc.constantFrom(0, -1, 2, 10, 1000, 1e6, 0.5, 1.0000001) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('grow' as const), at, times: fc.integer({ min: 2, max: 40 }) }) },
);

/** One mutation plan: which seed, which edits; each target uses the parts it needs. */
export interface Plan {
  seed: number;
  bytes: ByteOp[];
  json: JsonOp[];
  /** A target-specific choice (which layer of a container to mutate, how to chunk a stream, ...). */
  mode: number;
}

export const plan: fc.Arbitrary<Plan> = fc.record({
  seed: fc.nat(),
  bytes: fc.array(byteOp, { minLength: 1, maxLength: 5 }),
  json: fc.array(jsonOp, { minLength: 1, maxLength: 4 }),
  mode: fc.nat({ max: 999 }),
});

/** A stream of plans from a fast-check seed, drawn in batches. */
export function* plans(seed: number): Generator<Plan> {
  for (let batch = 0; ; batch++) {
    for (const p of fc.sample(plan, { seed: (seed + batch * 7919) | 0, numRuns: 200 })) yield p;
  }
}

const idx = (f: number, n: number) => Math.min(n - 1, Math.max(0, Math.floor(f * n)));

/** Applies byte ops; `others` are the seeds a splice may take bytes from. */
export function mutateBytes(input: Uint8Array, ops: ByteOp[], others: Uint8Array[] = []): Uint8Array {
  let b: Uint8Array = Uint8Array.from(input);
  for (const op of ops) {
    const n = b.length;
    const p = n === 0 ? 0 : idx(op.at, n);
    switch (op.kind) {
      case 'flip':
        if (n) b[p]! ^= 1 << op.bit;
        break;
      case 'byte':
        if (n) b[p] = op.value;
        break;
      case 'u32':
        if (n >= 4) new DataView(b.buffer).setUint32(Math.min(p, n - 4), op.value, true);
        break;
      case 'delete':
        b = concat(b.subarray(0, p), b.subarray(Math.min(n, p + op.len)));
        break;
      case 'insert':
        b = concat(b.subarray(0, p), op.bytes, b.subarray(p));
        break;
      case 'duplicate': {
        const chunk = b.slice(p, Math.min(n, p + op.len));
        const to = n === 0 ? 0 : idx(op.to, n);
        b = concat(b.subarray(0, to), chunk, b.subarray(to));
        break;
      }
      case 'truncate':
        b = b.slice(0, p);
        break;
      case 'splice': {
        const other = others.length ? others[op.other % others.length]! : b;
        if (other.length === 0) break;
        const from = idx(op.from, other.length);
        b = concat(b.subarray(0, p), other.subarray(from, from + op.len), b.subarray(p));
        break;
      }
    }
    if (b.length > 64 << 20) b = b.slice(0, 64 << 20);
  }
  return b;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

type Slot = { parent: Record<string, unknown> | unknown[]; key: string | number };

function slots(root: unknown): Slot[] {
  const out: Slot[] = [];
  const walk = (v: unknown) => {
    if (Array.isArray(v)) {
      // Long numeric arrays (weights) count as one slot each few elements, so structure gets most edits.
      const step = v.length > 64 && v.every((x) => typeof x === 'number') ? Math.ceil(v.length / 16) : 1;
      for (let i = 0; i < v.length; i += step) {
        out.push({ parent: v, key: i });
        walk(v[i]);
      }
    } else if (v && typeof v === 'object') {
      for (const k of Object.keys(v)) {
        out.push({ parent: v as Record<string, unknown>, key: k });
        walk((v as Record<string, unknown>)[k]);
      }
    }
  };
  walk(root);
  return out;
}

/** Applies JSON ops to a deep copy of `doc`. */
export function mutateJson(doc: unknown, ops: JsonOp[]): unknown {
  const root = { v: structuredClone(doc) } as Record<string, unknown>;
  for (const op of ops) {
    const all = slots(root);
    if (all.length === 0) break;
    const s = all[idx(op.at, all.length)]!;
    const get = () => (s.parent as Record<string | number, unknown>)[s.key];
    const set = (v: unknown) => {
      (s.parent as Record<string | number, unknown>)[s.key] = v;
    };
    switch (op.kind) {
      case 'set':
        set(structuredClone(op.value));
        break;
      case 'delete':
        if (Array.isArray(s.parent)) s.parent.splice(s.key as number, 1);
        else if (s.parent !== root) delete (s.parent as Record<string, unknown>)[s.key as string];
        break;
      case 'add': {
        const target = get();
        if (target && typeof target === 'object' && !Array.isArray(target)) Object.defineProperty(target, op.key, { value: structuredClone(op.value), enumerable: true, writable: true, configurable: true });
        else if (Array.isArray(target)) target.push(structuredClone(op.value));
        break;
      }
      case 'scale': {
        const v = get();
        if (typeof v === 'number') set(v * op.factor);
        break;
      }
      case 'grow': {
        const v = get();
        if (Array.isArray(v) && v.length > 0 && v.length * op.times < 100_000) set(Array.from({ length: v.length * op.times }, (_, i) => structuredClone(v[i % v.length])));
        break;
      }
    }
  }
  return root['v'];
}
