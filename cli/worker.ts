/**
 * dendra worker --queue redis://HOST:PORT: computes the points of the studies drivers put on the queue
 * (sweep/queue.ts) until SIGINT or SIGTERM; then it takes no new job, finishes the ones it runs and exits.
 * A second signal exits at once (the jobs it held go back to the queue when their lock runs out).
 */
import { availableParallelism } from 'node:os';
import { runWorker } from '../sweep/queue.js';

export interface WorkerArgs {
  queue: string;
  concurrency?: number;
  threads?: number;
  stallTimeout?: number;
  name?: string;
  quiet?: boolean;
}

export async function workerCommand(opts: WorkerArgs): Promise<void> {
  const stop = new AbortController();
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    signals++;
    if (signals > 1) process.exit(sig === 'SIGINT' ? 130 : 143);
    process.stderr.write(`dendra worker: ${sig}: finishing the running jobs, then stopping (again to stop now)\n`);
    stop.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    await runWorker(opts.queue, {
      concurrency: opts.concurrency,
      threads: opts.threads ?? Math.max(1, Math.floor(availableParallelism() / (opts.concurrency ?? 1))),
      stallSeconds: opts.stallTimeout,
      name: opts.name,
      log: opts.quiet ? undefined : (line) => console.log(line),
      signal: stop.signal,
      onReady: (name) => { if (!opts.quiet) console.log(`${name}: waiting for jobs on ${opts.queue.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@')}`); },
    });
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  if (!opts.quiet) console.log('worker stopped');
}
