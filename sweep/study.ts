/**
 * A study: many independent points (one chip, one device setting...), each computed by the same handler
 * from the same inputs, then assembled into one report. The one place a sweep's points are computed:
 * a local run, a shard (`--shard I/N`) and a queue worker (`dendra worker`) all call `runPoint` here,
 * so they give the same numbers, whatever process computes which point and in which order.
 *
 * A study is plain JSON: its kind (the handler), the dendra version, its inputs addressed by SHA-256
 * (model, data: stored once, wherever the points run) and its settings. Those four determine every
 * result, so they also name it (`studyId`): shards and queue jobs of one study carry its id, and
 * results of different studies are never mixed. The header holds what the report says about where the
 * inputs came from (file names), which is not part of the identity.
 *
 * A new kind of study is one more StudyHandler in sweep/handlers.ts (sweep/train.ts, in-situ training over
 * chips, is one).
 */
import { createHash } from 'node:crypto';
import { InputError } from '../common/errors.js';

export interface Study<Settings = unknown, Header = unknown> {
  kind: string;
  dendra: string;
  /** The inputs, by role (model, input, labels, ...): their SHA-256. */
  blobs: Record<string, string>;
  settings: Settings;
  /** Descriptive only (file names, shapes): not part of the identity. */
  header: Header;
}

/** A study's inputs by SHA-256, with the bytes (a local run, a driver) or fetched on demand (a worker). */
export type BlobSource = (sha256: string, role: string) => Promise<Uint8Array>;

/** What the run of a study says about how it ran: wall-clock figures only, kept apart from the results. */
export interface RunInfo {
  mode: 'local' | 'shards' | 'queue';
  /** Wall time of the command that wrote the report (for shards: of the merge). */
  seconds: number;
  /** Shards merged: each shard's own wall time. */
  shards?: { index: number; count: number; seconds: number }[];
  /** Queue: the workers that completed jobs, and how many each. */
  workers?: Record<string, number>;
}

/**
 * How one kind of study is computed. `points` lists the work in report order (JSON, cheap to recompute
 * from the study); `context` does the per-process set-up once (parse the inputs, compile the base
 * network); `run` computes one point and must depend only on the study and the point (seeds included),
 * never on which process runs it or what it ran before; `assemble` builds the report from the results
 * in point order.
 */
export interface StudyHandler<S = any, H = any, P = any, R = any, C = any, Rep = any> {
  kind: string;
  points(study: Study<S, H>): P[];
  /** A short description of a point for progress bars and errors ("rate 10 %, trial 2/3"). */
  label(study: Study<S, H>, point: P): string;
  context(study: Study<S, H>, blobs: BlobSource, opts: { threads?: number }): Promise<C>;
  run(ctx: C, point: P): Promise<R>;
  release(ctx: C): Promise<void>;
  assemble(study: Study<S, H>, results: R[], run: RunInfo): Rep;
}

/** JSON with object keys sorted: the same value gives the same text, whatever order it was built in. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => {
    if (v && typeof v === 'object' && !Array.isArray(v) && !ArrayBuffer.isView(v)) {
      return Object.fromEntries(Object.keys(v as object).sort().map((k) => [k, (v as Record<string, unknown>)[k]]));
    }
    return v;
  });
}

export function sha256(bytes: Uint8Array | string): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** The study's name: SHA-256 of its kind, dendra version, input hashes and settings. */
export function studyId(study: Study): string {
  return sha256(canonicalJson({ kind: study.kind, dendra: study.dendra, blobs: study.blobs, settings: study.settings }));
}

/** A BlobSource over bytes in memory (what the local run and the driver hold). */
export function memoryBlobs(blobs: Map<string, Uint8Array>): BlobSource {
  return async (hash, role) => {
    const b = blobs.get(hash);
    if (!b) throw new InputError(`the study's ${role} (sha256 ${hash.slice(0, 12)}…) is not among its inputs`);
    return b;
  };
}

/** Adds bytes to a blob map; returns their SHA-256. */
export function addBlob(blobs: Map<string, Uint8Array>, bytes: Uint8Array): string {
  const h = sha256(bytes);
  blobs.set(h, bytes);
  return h;
}

/** "I/N" → { index: I, count: N } with 1 <= I <= N. */
export function parseShard(text: string): { index: number; count: number } {
  const m = /^(\d+)\/(\d+)$/.exec(text.trim());
  const index = m ? Number(m[1]) : NaN;
  const count = m ? Number(m[2]) : NaN;
  if (!(Number.isSafeInteger(index) && Number.isSafeInteger(count) && count >= 1 && count <= 100_000 && index >= 1 && index <= count)) {
    throw new InputError(`--shard must be I/N with 1 <= I <= N, e.g. 2/8 (got '${text}')`);
  }
  return { index, count };
}

/** The points shard I of N computes: every N-th, starting at I − 1 (so every shard gets a share of every rate). */
export function shardPoints(total: number, shard: { index: number; count: number }): number[] {
  const out: number[] = [];
  for (let i = shard.index - 1; i < total; i += shard.count) out.push(i);
  return out;
}

/**
 * Computes the listed points of a study in this process, in order; `onPoint` is told before each
 * (for a progress bar) and after each with its result. The context is set up once and released.
 */
export async function runPoints<R>(
  handler: StudyHandler,
  study: Study,
  blobs: BlobSource,
  indices: number[],
  opts: { threads?: number; onStart?: (index: number, label: string) => void; onDone?: (index: number, result: R) => void } = {},
): Promise<Map<number, R>> {
  const points = handler.points(study);
  const ctx = await handler.context(study, blobs, { threads: opts.threads });
  const results = new Map<number, R>();
  try {
    for (const i of indices) {
      const point = points[i];
      if (point === undefined) throw new InputError(`study ${studyId(study).slice(0, 12)} has ${points.length} points; there is no point ${i}`);
      opts.onStart?.(i, handler.label(study, point));
      const r = (await handler.run(ctx, point)) as R;
      results.set(i, r);
      opts.onDone?.(i, r);
    }
  } finally {
    await handler.release(ctx);
  }
  return results;
}

/** Results by point index → the array in point order; refuses a study with points missing. */
export function inPointOrder<R>(study: Study, total: number, results: Map<number, R>, where: string): R[] {
  const missing: number[] = [];
  const out: R[] = [];
  for (let i = 0; i < total; i++) {
    if (!results.has(i)) missing.push(i);
    else out.push(results.get(i)!);
  }
  if (missing.length > 0) {
    throw new InputError(`${where}: ${missing.length} of the ${total} points of study ${studyId(study).slice(0, 12)} are missing (points ${missing.slice(0, 8).join(', ')}${missing.length > 8 ? ', ...' : ''})`);
  }
  return out;
}
