/**
 * Studies on a job queue: BullMQ on Redis. The driver (`dendra sweep ... --queue redis://HOST:PORT`) stores
 * the study's inputs in Redis by SHA-256 (once: another study with the same model or data reuses them),
 * describes the study under its id, and adds one job per point to the study's own queue; workers
 * (`dendra worker --queue ...`) on any number of machines compute the points with the same code as a local
 * run (runPoint via StudyHandler.run) and return their results; the driver assembles them into the report a
 * local run gives.
 *
 * Redis keys, all under "dendra:": blob:SHA256 (an input's bytes), study:ID (the study as JSON), studies
 * (a sorted set of the studies being run, oldest first) and the BullMQ keys of the queue study-ID.
 *
 * Jobs are idempotent (a point's seeds are fixed by the study), keyed by point (p0, p1, ...: adding a job
 * twice adds it once), retried with exponential backoff, and their results kept until the driver has read
 * them all; a worker that dies holding a job loses its lock, and another worker's stalled-job check puts the
 * job back in the queue. The driver can be stopped and started again: the jobs already done are kept.
 */
import { hostname } from 'node:os';
import { Queue, UnrecoverableError, Worker, type ConnectionOptions, type Job } from 'bullmq';
import { Redis, type RedisOptions } from 'ioredis';
import { dendraVersion } from '../artifact/write.js';
import { DendraError, describe, InputError, QueueError } from '../common/errors.js';
import { handlerFor } from './handlers.js';
import { inPointOrder, sha256, studyId, type BlobSource, type RunInfo, type Study, type StudyHandler } from './study.js';

const PREFIX = 'dendra';
const REGISTRY = `${PREFIX}:studies`;
const blobKey = (hash: string) => `${PREFIX}:blob:${hash}`;
const studyKey = (id: string) => `${PREFIX}:study:${id}`;
/** The study's queue: its own BullMQ queue, so that studies sharing one Redis never see each other's jobs. */
export const queueName = (id: string) => `study-${id.slice(0, 32)}`;
/** Inputs and study descriptions expire a week after their study was last started. */
const TTL_SECONDS = 7 * 24 * 3600;
const ATTEMPTS = 3;

export interface JobData {
  study: string;
  index: number;
  label: string;
}

/** redis://[user:password@]HOST:PORT[/DB] → ioredis options. */
export function redisOptions(url: string): RedisOptions {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new InputError(`--queue must be a Redis URL, redis://HOST:PORT (got '${url}')`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new InputError(`--queue must be a Redis URL, redis://HOST:PORT (got '${url}')`);
  const db = u.pathname && u.pathname !== '/' ? Number(u.pathname.slice(1)) : 0;
  if (!Number.isInteger(db) || db < 0) throw new InputError(`--queue: '${u.pathname.slice(1)}' is not a Redis database number (got '${url}')`);
  const opts: RedisOptions = { host: u.hostname || '127.0.0.1', port: u.port ? Number(u.port) : 6379, db };
  if (u.username) opts.username = decodeURIComponent(u.username);
  if (u.password) opts.password = decodeURIComponent(u.password);
  if (u.protocol === 'rediss:') opts.tls = {};
  return opts;
}

/** Redacts a password from a URL for messages. */
function shown(url: string): string {
  return url.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@');
}

/**
 * A connection to the Redis at url, checked with a PING; refuses one that cannot be reached within a few
 * seconds with one line (no endless reconnecting).
 */
export async function connectRedis(url: string, timeoutMs = 5000): Promise<Redis> {
  const opts = redisOptions(url);
  const probe = new Redis({ ...opts, lazyConnect: true, connectTimeout: timeoutMs, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false });
  let cause: NodeJS.ErrnoException | undefined;
  probe.on('error', (e: NodeJS.ErrnoException) => (cause ??= e)); // reported below, once
  try {
    await probe.connect();
    await probe.ping();
  } catch (e) {
    probe.disconnect();
    const err = cause ?? (e as NodeJS.ErrnoException);
    const why = err.code ?? err.message ?? String(e);
    throw new QueueError(`cannot reach Redis at ${shown(url)}: ${why}${err.code === 'ECONNREFUSED' ? ' (is redis-server running there?)' : ''}`);
  }
  probe.disconnect();
  // The working connection: retries while the link is down (BullMQ's blocking reads need maxRetriesPerRequest null).
  const redis = new Redis({ ...opts, maxRetriesPerRequest: null, connectTimeout: timeoutMs });
  redis.on('error', () => {});
  return redis;
}

function bullConnection(url: string): ConnectionOptions {
  return { ...redisOptions(url), maxRetriesPerRequest: null } as ConnectionOptions;
}

/** Inputs fetched from Redis by hash, checked against it. */
export function redisBlobs(redis: Redis, studyIdText: string): BlobSource {
  return async (hash, role) => {
    const bytes = await redis.getBuffer(blobKey(hash));
    if (!bytes) {
      throw new QueueError(`the ${role} of study ${studyIdText.slice(0, 12)} (sha256 ${hash.slice(0, 12)}…) is not in Redis (expired or deleted): run the sweep command again to store it`);
    }
    if (sha256(bytes) !== hash) throw new QueueError(`the ${role} of study ${studyIdText.slice(0, 12)} in Redis is damaged: its sha256 is not ${hash.slice(0, 12)}…`);
    return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}

export interface DriverProgress {
  /** Jobs done of the total, and the workers connected to the study's queue. */
  onProgress?: (done: number, total: number, workers: number) => void;
  /** Something worth a line on stderr (no workers yet, a job retried). */
  onNotice?: (text: string) => void;
  /** Seconds between polls of the queue (default 0.25). */
  pollSeconds?: number;
}

/**
 * The driver: the study's inputs stored, one job per point enqueued, the results collected into the report.
 * Throws QueueError naming the job and the worker's error when a job fails for good.
 */
export async function runOnQueue(study: Study, blobs: Map<string, Uint8Array>, url: string, opts: DriverProgress = {}): Promise<unknown> {
  const t0 = performance.now();
  const handler = handlerFor(study.kind);
  const points = handler.points(study);
  const total = points.length;
  const id = studyId(study);
  const redis = await connectRedis(url);
  const queue = new Queue<JobData, unknown, string>(queueName(id), { connection: bullConnection(url), prefix: PREFIX });
  // Redis going away is waited out (the connections reconnect), said once per message and minute.
  const say = onceAMinute((text) => opts.onNotice?.(text));
  queue.on('error', (e) => say(`Redis at ${shown(url)}: ${e.message}; waiting for it`));
  redis.on('error', (e: Error) => say(`Redis at ${shown(url)}: ${e.message}; waiting for it`));
  const store = async () => {
    for (const [hash, bytes] of blobs) {
      // Stored once: an input another study already stored is only given more time.
      const stored = await redis.set(blobKey(hash), Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), 'EX', TTL_SECONDS, 'NX');
      if (stored === null) await redis.expire(blobKey(hash), TTL_SECONDS);
    }
    await redis.set(studyKey(id), JSON.stringify(study), 'EX', TTL_SECONDS);
  };
  try {
    await store();
    // Jobs that failed in an earlier run of this very study are tried again; finished ones are kept.
    for (const job of await queue.getJobs(['failed'])) await job.retry('failed');
    await redis.zadd(REGISTRY, 'NX', Date.now(), id);

    const poll = (opts.pollSeconds ?? 0.25) * 1000;
    let lonely = 0;
    let warnedLonely = false;
    const retried = new Set<string>();
    const addJobs = () =>
      queue.addBulk(
        points.map((p, index) => ({
          name: study.kind,
          data: { study: id, index, label: handler.label(study, p) },
          opts: { jobId: `p${index}`, attempts: ATTEMPTS, backoff: { type: 'exponential' as const, delay: 2000 }, removeOnComplete: false, removeOnFail: false },
        })),
      );
    await addJobs();
    for (;;) {
      const counts = await queue.getJobCounts('completed', 'failed', 'delayed', 'active', 'wait', 'prioritized');
      if (Object.values(counts).reduce((a, b) => a + b, 0) < total) {
        // Jobs are gone: another driver of this same study finished it and cleared its queue before this
        // one read the results, or Redis restarted without its data. The inputs are stored again and the
        // missing points computed again (the same numbers) rather than waited for forever.
        await store();
        await addJobs();
        await redis.zadd(REGISTRY, 'NX', Date.now(), id);
        continue;
      }
      const workers = await queue.getWorkersCount();
      opts.onProgress?.(counts['completed'] ?? 0, total, workers);
      if ((counts['failed'] ?? 0) > 0) {
        const [job] = await queue.getJobs(['failed'], 0, 0);
        // The study leaves the list (workers stop taking its jobs); its finished jobs stay for a run again.
        await redis.zrem(REGISTRY, id);
        if (job) throw new QueueError(`job ${job.id} (${(job.data as JobData).label}) of study ${id.slice(0, 12)} failed on worker ${job.processedBy ?? '?'} after ${job.attemptsMade} attempt(s): ${firstLine(job.failedReason)}`);
      }
      if ((counts['completed'] ?? 0) >= total) break;
      if ((counts['delayed'] ?? 0) > 0 && opts.onNotice) {
        for (const job of await queue.getJobs(['delayed'])) {
          const key = `${job.id}#${job.attemptsMade}`;
          if (job.attemptsMade > 0 && !retried.has(key)) {
            retried.add(key);
            opts.onNotice(`job ${job.id} (${(job.data as JobData).label}) failed on worker ${job.processedBy ?? '?'} (attempt ${job.attemptsMade} of ${ATTEMPTS}), retrying: ${firstLine(job.failedReason)}`);
          }
        }
      }
      lonely = workers === 0 ? lonely + poll : 0;
      if (lonely >= 10_000 && !warnedLonely) {
        warnedLonely = true;
        opts.onNotice?.(`no worker has taken study ${id.slice(0, 12)} yet: start one with \`dendra worker --queue ${shown(url)}\``);
      }
      await sleep(poll);
    }

    const results = new Map<number, unknown>();
    const byWorker: Record<string, number> = {};
    for (const job of (await queue.getJobs(['completed'], 0, -1)) as Job<JobData>[]) {
      if (job.data.study !== id) continue;
      results.set(job.data.index, job.returnvalue);
      const w = job.processedBy ?? '?';
      byWorker[w] = (byWorker[w] ?? 0) + 1;
    }
    const run: RunInfo = { mode: 'queue', seconds: (performance.now() - t0) / 1000, workers: byWorker };
    const report = handler.assemble(study, inPointOrder(study, total, results, `queue ${queueName(id)}`), run);
    // Done: the study's queue and description go; its inputs stay (other studies may share them) until they expire.
    await redis.zrem(REGISTRY, id);
    await queue.obliterate({ force: true });
    await redis.del(studyKey(id));
    return report;
  } finally {
    await queue.close().catch(() => {});
    redis.disconnect();
  }
}

/** A logger that says each distinct line at most once a minute (errors repeat while a link is down). */
function onceAMinute(say: (text: string) => void): (text: string) => void {
  const last = new Map<string, number>();
  return (text) => {
    const now = Date.now();
    if (now - (last.get(text) ?? -Infinity) < 60_000) return;
    last.set(text, now);
    say(text);
  };
}

function firstLine(text: string | undefined): string {
  return (text ?? 'no reason given').split('\n')[0]!;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

export interface WorkerOptions {
  /** Jobs at a time (split among the studies being run at once, at least one each). */
  concurrency?: number;
  /** Simulator threads per job. */
  threads?: number;
  /** Seconds a job stays claimed by a worker that stopped answering before another worker takes it (default 30). */
  stallSeconds?: number;
  /** This worker's name on the jobs it completes (default HOST:PID). */
  name?: string;
  /** One line per event (study taken, job started, done, failed). */
  log?: (line: string) => void;
  /** Stops the worker: no new jobs, the running ones finish. */
  signal?: AbortSignal;
  /** Called once connected, with the worker's name. */
  onReady?: (name: string) => void;
}

interface Served {
  study: Study;
  handler: StudyHandler;
  points: unknown[];
  worker: Worker<JobData>;
  context?: Promise<unknown>;
}

/**
 * A worker: serves every study in Redis's list until stopped (signal), one BullMQ worker per study. Resolves
 * once the jobs it is running have finished.
 */
export async function runWorker(url: string, opts: WorkerOptions = {}): Promise<void> {
  const concurrency = opts.concurrency ?? 1;
  const stallMs = (opts.stallSeconds ?? 30) * 1000;
  const name = opts.name ?? `${hostname()}:${process.pid}`;
  const log = opts.log ?? (() => {});
  const redis = await connectRedis(url);
  const say = onceAMinute(log);
  redis.on('error', (e: Error) => say(`${name}: Redis at ${shown(url)}: ${e.message}; waiting for it`));
  const served = new Map<string, Served>();
  opts.onReady?.(name);

  const processor = (id: string) => async (job: Job<JobData>) => {
    const s = served.get(id);
    if (!s) throw new Error(`worker ${name} no longer serves study ${id.slice(0, 12)}`);
    if (s.study.dendra !== dendraVersion()) {
      throw new UnrecoverableError(`worker ${name} runs dendra ${dendraVersion()} but study ${id.slice(0, 12)} was made by dendra ${s.study.dendra}: run the same version on the driver and the workers`);
    }
    const point = s.points[job.data.index];
    if (job.data.study !== id || point === undefined) throw new UnrecoverableError(`job ${job.id} names point ${job.data.index} of study ${job.data.study.slice(0, 12)}, which this queue does not hold`);
    const t0 = performance.now();
    log(`${name}: ${job.id} (${job.data.label}) of study ${id.slice(0, 12)}: started`);
    try {
      s.context ??= s.handler.context(s.study, redisBlobs(redis, id), { threads: opts.threads });
      const ctx = await s.context.catch((e: unknown) => {
        s.context = undefined; // set up again for the next job
        throw e;
      });
      const result = await s.handler.run(ctx, point);
      log(`${name}: ${job.id} (${job.data.label}) of study ${id.slice(0, 12)}: done in ${((performance.now() - t0) / 1000).toFixed(2)} s`);
      return result;
    } catch (e) {
      log(`${name}: ${job.id} (${job.data.label}) of study ${id.slice(0, 12)}: failed: ${describe(e).split('\n')[0]}`);
      // A refusal (bad input, a missing blob) comes back the same on every try: no retry.
      if (e instanceof DendraError) throw new UnrecoverableError(describe(e).split('\n')[0]);
      throw e;
    }
  };

  const retire = async (id: string) => {
    const s = served.get(id);
    if (!s) return;
    served.delete(id);
    await s.worker.close();
    if (s.context) await s.context.then((c) => s.handler.release(c)).catch(() => {});
  };

  try {
    while (!opts.signal?.aborted) {
      const ids = await redis.zrange(REGISTRY, 0, -1);
      for (const id of ids) {
        if (served.has(id)) continue;
        const json = await redis.get(studyKey(id));
        if (json === null) {
          await redis.zrem(REGISTRY, id); // its description expired: a driver that gave up long ago
          continue;
        }
        let study: Study;
        let handler: StudyHandler;
        try {
          study = JSON.parse(json) as Study;
          handler = handlerFor(study.kind);
        } catch (e) {
          log(`${name}: cannot serve study ${id.slice(0, 12)}: ${describe(e)}`);
          continue;
        }
        const worker = new Worker<JobData>(queueName(id), processor(id), {
          connection: bullConnection(url),
          prefix: PREFIX,
          name,
          concurrency: 1,
          lockDuration: stallMs,
          stalledInterval: stallMs,
          maxStalledCount: 3,
          drainDelay: 1,
          autorun: false,
        });
        worker.on('error', (e) => say(`${name}: Redis at ${shown(url)}: ${e.message}; waiting for it`));
        served.set(id, { study, handler, points: handler.points(study), worker });
        log(`${name}: serving study ${id.slice(0, 12)} (${study.kind}, ${handler.points(study).length} points)`);
        void worker.run().catch((e: unknown) => log(`${name}: worker for study ${id.slice(0, 12)} stopped: ${describe(e)}`));
      }
      for (const id of [...served.keys()]) if (!ids.includes(id)) await retire(id);
      const share = Math.max(1, Math.floor(concurrency / Math.max(1, served.size)));
      for (const s of served.values()) if (s.worker.concurrency !== share) s.worker.concurrency = share;
      await sleep(1000, opts.signal);
    }
  } finally {
    await Promise.all([...served.keys()].map(retire));
    redis.disconnect();
  }
}
