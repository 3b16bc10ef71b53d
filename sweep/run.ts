/**
 * Running a study without a broker: all of it in this process, or one shard of it (`--shard I/N`), and
 * merging shards back into the report a local run gives. Every point goes through runPoints (study.ts).
 */
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { makeOutputFolder } from '../common/files.js';
import { join } from 'node:path';
import { InputError } from '../common/errors.js';
import { handlerFor } from './handlers.js';
import { canonicalJson, inPointOrder, memoryBlobs, runPoints, shardPoints, studyId, type Study } from './study.js';

export interface Progress {
  onStart?: (index: number, label: string) => void;
  onDone?: (index: number) => void;
}

/** The whole study here, point after point: the report (with run.mode 'local'). */
export async function runLocal(study: Study, blobs: Map<string, Uint8Array>, opts: { threads?: number } & Progress = {}): Promise<unknown> {
  const t0 = performance.now();
  const handler = handlerFor(study.kind);
  const total = handler.points(study).length;
  const results = await runPoints(handler, study, memoryBlobs(blobs), [...Array(total).keys()], opts);
  return handler.assemble(study, inPointOrder(study, total, results, 'local run'), { mode: 'local', seconds: (performance.now() - t0) / 1000 });
}

export interface ShardFile {
  format: 'dendra-shard';
  version: 1;
  /** studyId(spec) */
  study: string;
  spec: Study;
  shard: { index: number; count: number };
  points: { index: number; result: unknown }[];
  /** This shard's wall time. */
  seconds: number;
}

export function shardFileName(kind: string, shard: { index: number; count: number }): string {
  return `${kind}-shard-${shard.index}-of-${shard.count}.json`;
}

/** Shard I of N: its points computed here, written to DIR/KIND-shard-I-of-N.json; returns the file. */
export async function runShard(
  study: Study,
  blobs: Map<string, Uint8Array>,
  shard: { index: number; count: number },
  out: string,
  opts: { threads?: number } & Progress = {},
): Promise<{ file: string; shard: ShardFile }> {
  const t0 = performance.now();
  const handler = handlerFor(study.kind);
  const indices = shardPoints(handler.points(study).length, shard);
  const results = await runPoints(handler, study, memoryBlobs(blobs), indices, opts);
  const file = join(out, shardFileName(study.kind, shard));
  const content: ShardFile = {
    format: 'dendra-shard',
    version: 1,
    study: studyId(study),
    spec: study,
    shard,
    points: indices.map((index) => ({ index, result: results.get(index) })),
    seconds: (performance.now() - t0) / 1000,
  };
  try {
    makeOutputFolder(out, '--out');
    writeFileSync(file, JSON.stringify(content) + '\n');
  } catch (e) {
    throw new InputError(`cannot write to ${out}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { file: out });
  }
  return { file, shard: content };
}

const SHARD_FILE = /-shard-\d+-of-\d+\.json$/;

/** Shard files named on the command line: files as they are, folders for the shard files in them. */
export function shardFiles(paths: string[]): string[] {
  const files: string[] = [];
  for (const p of paths) {
    if (!existsSync(p)) throw new InputError('no such file or folder', { file: p });
    if (statSync(p).isDirectory()) {
      const found = readdirSync(p).filter((f) => SHARD_FILE.test(f)).sort().map((f) => join(p, f));
      if (found.length === 0) throw new InputError(`holds no shard files (NAME-shard-I-of-N.json, written by sweep --shard)`, { file: p });
      files.push(...found);
    } else {
      files.push(p);
    }
  }
  return files;
}

function readShard(file: string): ShardFile {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new InputError(`is not a shard file: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { file });
  }
  const s = json as Partial<ShardFile>;
  if (s?.format !== 'dendra-shard' || s.version !== 1 || typeof s.study !== 'string' || !s.spec || !s.shard || !Array.isArray(s.points)) {
    throw new InputError('is not a dendra shard file (format dendra-shard, version 1)', { file });
  }
  if (studyId(s.spec) !== s.study) throw new InputError(`is damaged: its study description does not hash to its study id ${s.study.slice(0, 12)}`, { file });
  return s as ShardFile;
}

function describeStudy(spec: Study): string {
  const h = spec.header as { model?: string };
  return `a ${spec.kind} of ${h.model ?? 'a model'} with ${canonicalJson(spec.settings)}`;
}

/**
 * Shards of one study → its report, as a local run gives it (run.mode 'shards'). Refuses shards of different
 * studies, of different shard counts, missing shards, and two copies of a shard that disagree.
 */
export function mergeShards(paths: string[]): { report: unknown; study: Study; files: string[] } {
  const t0 = performance.now();
  const files = shardFiles(paths);
  const shards = files.map((f) => ({ file: f, shard: readShard(f) }));
  const first = shards[0]!;
  for (const s of shards.slice(1)) {
    if (s.shard.study !== first.shard.study) {
      throw new InputError(
        `shards of different studies: ${first.file} is study ${first.shard.study.slice(0, 12)} (${describeStudy(first.shard.spec)}) but ${s.file} is study ${s.shard.study.slice(0, 12)} (${describeStudy(s.shard.spec)})`,
      );
    }
    if (s.shard.shard.count !== first.shard.shard.count) {
      throw new InputError(`${first.file} is one of ${first.shard.shard.count} shards but ${s.file} is one of ${s.shard.shard.count}: merge the shards of one split`);
    }
  }
  const count = first.shard.shard.count;
  const study = first.shard.spec;
  const handler = handlerFor(study.kind);
  const total = handler.points(study).length;
  const byIndex = new Map<number, { file: string; shard: ShardFile }>();
  for (const s of shards) {
    const i = s.shard.shard.index;
    const expected = shardPoints(total, { index: i, count });
    const got = s.shard.points.map((p) => p.index);
    if (canonicalJson(got) !== canonicalJson(expected)) throw new InputError(`shard ${i}/${count} should hold points ${expected.join(', ')} but holds ${got.join(', ')}`, { file: s.file });
    const seen = byIndex.get(i);
    if (seen) {
      if (canonicalJson(seen.shard.points) !== canonicalJson(s.shard.points)) {
        throw new InputError(`shard ${i}/${count} is given twice with different results: ${seen.file} and ${s.file}`);
      }
      continue;
    }
    byIndex.set(i, s);
  }
  const missing = [...Array(count).keys()].map((k) => k + 1).filter((i) => !byIndex.has(i));
  if (missing.length > 0) throw new InputError(`shard${missing.length > 1 ? 's' : ''} ${missing.map((i) => `${i}/${count}`).join(', ')} of study ${first.shard.study.slice(0, 12)} ${missing.length > 1 ? 'are' : 'is'} missing`);
  const results = new Map<number, unknown>();
  for (const s of byIndex.values()) for (const p of s.shard.points) results.set(p.index, p.result);
  const sorted = [...byIndex.values()].sort((a, b) => a.shard.shard.index - b.shard.shard.index);
  const report = handler.assemble(study, inPointOrder(study, total, results, 'merge'), {
    mode: 'shards',
    seconds: (performance.now() - t0) / 1000,
    shards: sorted.map((s) => ({ index: s.shard.shard.index, count, seconds: s.shard.seconds })),
  });
  return { report, study, files: sorted.map((s) => s.file) };
}
