/**
 * Running a study from the command line, whichever way it is split: here (local), one shard of it
 * (--shard I/N), or on a job queue (--queue redis://...); `dendra sweep merge` for the shards, and the
 * report's table, JSON and plot, the same for all of them. The work itself is in sweep/.
 */
import { makeOutputFolder } from '../common/files.js';
import { InputError } from '../common/errors.js';
import { mergeShards, runLocal, runShard } from '../sweep/run.js';
import { connectRedis, runOnQueue } from '../sweep/queue.js';
import { handlerFor } from '../sweep/handlers.js';
import { parseShard, shardPoints, studyId, type Study } from '../sweep/study.js';
import type { SweepReport } from '../sweep/fault-rate.js';
import type { SweepParamReport } from '../sweep/param.js';
import { progressBar } from './progress.js';
import { formatSweep, runSummary, sweepSvg, writeSweepFiles } from './sweep.js';
import { formatSweepParam, sweepParamSvg } from './sweep-param.js';
import { formatSweepTrain, sweepTrainSvg, type SweepTrainReport } from './sweep-train.js';

export interface StudyRunArgs {
  out?: string;
  json?: boolean;
  threads?: number;
  /** I/N: compute only this shard's points and write them to --out. */
  shard?: string;
  /** redis://HOST:PORT: one job per point, computed by `dendra worker`s. */
  queue?: string;
}

/** How a report of each kind is printed and drawn: its file name in --out, the table, the plot. */
interface Presenter {
  file: string;
  format(report: any): string;
  svg(report: any): Promise<string>;
  warnings(report: any): string[];
}

const PRESENTERS: Record<string, Presenter> = {
  sweep: { file: 'sweep', format: (r: SweepReport) => formatSweep(r), svg: (r: SweepReport) => sweepSvg(r), warnings: () => [] },
  'sweep-param': {
    file: 'sweep-param',
    format: (r: SweepParamReport) => `${formatSweepParam(r)}\n${runSummary(r.run)}`,
    svg: (r: SweepParamReport) => sweepParamSvg(r),
    warnings: (r: SweepParamReport) => r.warnings,
  },
  'sweep-train': { file: 'sweep-train', format: (r: SweepTrainReport) => formatSweepTrain(r), svg: (r: SweepTrainReport) => sweepTrainSvg(r), warnings: () => [] },
};

function presenter(kind: string): Presenter {
  const p = PRESENTERS[kind];
  if (!p) throw new InputError(`no table or plot for studies of kind '${kind}'`);
  return p;
}

/** The report printed (table or --json) and, with an output folder, written as NAME.json and NAME.svg. */
async function emit(report: { kind: string; files?: { json: string; svg: string } }, args: { out?: string; json?: boolean }): Promise<void> {
  const p = presenter(report.kind);
  for (const w of p.warnings(report)) console.warn(`warning: ${w}`);
  if (args.out) report.files = writeSweepFiles(args.out, p.file, report, await p.svg(report));
  if (args.json) console.log(JSON.stringify(report));
  else console.log(p.format(report) + (report.files ? `\nwrote ${report.files.json} and ${report.files.svg}` : ''));
}

/** Prepares a study (every option checked, inputs read) and runs it locally, as one shard, or on a queue. */
export async function studyCommand(prepare: () => Promise<{ study: Study; blobs: Map<string, Uint8Array> }>, args: StudyRunArgs): Promise<void> {
  if (args.shard !== undefined && args.queue !== undefined) throw new InputError('--shard and --queue are two ways of splitting a sweep: give one of them');
  const shard = args.shard === undefined ? undefined : parseShard(args.shard);
  if (shard && !args.out) throw new InputError('--shard needs --out DIR: the folder its shard file goes to (dendra sweep merge reads it)');
  if (args.out) makeOutputFolder(args.out, '--out'); // before any work: dendra never creates folder trees
  // A malformed URL or a Redis out of reach is refused before any work.
  if (args.queue !== undefined) (await connectRedis(args.queue)).disconnect();
  const { study, blobs } = await prepare();
  const total = handlerFor(study.kind).points(study).length;

  if (args.queue !== undefined) {
    const bar = progressBar('sweep', total, 'jobs', true);
    let report: unknown;
    try {
      report = await runOnQueue(study, blobs, args.queue, {
        onProgress: (done, _t, workers) => {
          bar.update(done);
          bar.stage(`${workers} worker${workers === 1 ? '' : 's'} connected`);
        },
        onNotice: (text) => process.stderr.write(`\ndendra: ${text}\n`),
      });
    } finally {
      bar.stop();
    }
    return emit(report as { kind: string }, args);
  }

  const count = shard ? shardPoints(total, shard).length : total;
  const bar = progressBar('sweep', count, 'points', true);
  const progress = { threads: args.threads, onStart: (_i: number, label: string) => bar.stage(label), onDone: () => bar.increment() };
  if (shard) {
    let written: Awaited<ReturnType<typeof runShard>>;
    try {
      written = await runShard(study, blobs, shard, args.out!, progress);
    } finally {
      bar.stop();
    }
    const summary = { file: written.file, study: studyId(study), shard, points: written.shard.points.length, of: total, seconds: written.shard.seconds };
    if (args.json) console.log(JSON.stringify(summary));
    else console.log(`wrote ${summary.file}: shard ${shard.index}/${shard.count} of study ${summary.study.slice(0, 12)}, ${summary.points} of its ${total} points, ${summary.seconds.toFixed(1)} s; join the shards with dendra sweep merge`);
    return;
  }
  let report: unknown;
  try {
    report = await runLocal(study, blobs, progress);
  } finally {
    bar.stop();
  }
  return emit(report as { kind: string }, args);
}

/** dendra sweep merge DIR... : shards of one study → the report a local run gives. */
export async function mergeCommand(paths: string[], args: { out?: string; json?: boolean }): Promise<void> {
  const { report } = mergeShards(paths);
  return emit(report as { kind: string }, args);
}
