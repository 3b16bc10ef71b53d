/**
 * The queue's retries, in one process against a real Redis: a job whose attempt fails with a passing error
 * is retried after a backoff (and the driver says so), a refusal (a DendraError) is not retried and stops the
 * driver with the job and the error. The study here is a kind registered by the test: the queue's
 * mechanics, not the physics, are under test (test/cli/distributed.test.ts runs the real sweeps).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dendraVersion } from '../../artifact/write.js';
import { InputError, QueueError } from '../../common/errors.js';
import { registerStudyKind } from '../../sweep/handlers.js';
import { runOnQueue, runWorker } from '../../sweep/queue.js';
import type { RunInfo, Study, StudyHandler } from '../../sweep/study.js';
import { MISSING_REDIS, redisAvailable, startRedis, type TestRedis } from '../helpers/redis.js';

/** Attempts per (study, point) in this process; point `flaky` fails its first attempt, point `refused` every one. */
const attempts = new Map<string, number>();
interface Settings { n: number; flaky: number; refused: number; tag: string }
const handler: StudyHandler<Settings, null, { i: number }, { i: number; attempt: number }, Settings, unknown> = {
  kind: 'test-retries',
  points: (s) => Array.from({ length: s.settings.n }, (_, i) => ({ i })),
  label: (_s, p) => `point ${p.i}`,
  context: async (s) => s.settings,
  async run(ctx, p) {
    const key = `${ctx.tag}/${p.i}`;
    const attempt = (attempts.get(key) ?? 0) + 1;
    attempts.set(key, attempt);
    if (p.i === ctx.refused) throw new InputError(`point ${p.i} is refused`);
    if (p.i === ctx.flaky && attempt === 1) throw new Error('the link dropped');
    return { i: p.i, attempt };
  },
  release: async () => {},
  assemble: (_s, results, run: RunInfo) => ({ kind: 'test-retries', results, run }),
};
registerStudyKind(handler);

const study = (tag: string, flaky: number, refused: number): Study<Settings, null> => ({ kind: handler.kind, dendra: dendraVersion(), blobs: {}, settings: { n: 4, flaky, refused, tag }, header: null });

const haveRedis = redisAvailable();
it.runIf(process.env['CI'] === 'true')('CI has a Redis for the queue tests', () => {
  if (!haveRedis) throw new Error(MISSING_REDIS);
});

describe.skipIf(!haveRedis)('the queue retries passing failures, not refusals', () => {
  let redis: TestRedis;
  const stop = new AbortController();
  let worker: Promise<void>;
  beforeAll(async () => {
    redis = await startRedis(2);
    worker = runWorker(redis.url, { name: 'in-process', stallSeconds: 5, signal: stop.signal });
  });
  afterAll(async () => {
    stop.abort();
    await worker;
    await redis?.stop();
  });

  it('a job that failed once is retried after a backoff; the driver says so and the report is complete', async () => {
    const notices: string[] = [];
    const t0 = Date.now();
    const report = (await runOnQueue(study('a', 2, -1), new Map(), redis.url, { onNotice: (n) => notices.push(n), pollSeconds: 0.1 })) as { results: { i: number; attempt: number }[]; run: RunInfo };
    expect(report.results.map((r) => r.i)).toEqual([0, 1, 2, 3]);
    expect(report.results[2]!.attempt).toBe(2);
    expect(report.results.filter((r) => r.i !== 2).every((r) => r.attempt === 1)).toBe(true);
    expect(notices.some((n) => /^job p2 \(point 2\) failed on worker in-process \(attempt 1 of 3\), retrying: the link dropped$/.test(n))).toBe(true);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(2000); // the first backoff
    expect(report.run.workers).toEqual({ 'in-process': 4 });
  });

  it('a refusal is not retried: the driver stops with the job, the worker and the error', async () => {
    const run = runOnQueue(study('b', -1, 1), new Map(), redis.url, { pollSeconds: 0.1 });
    await expect(run).rejects.toThrow(QueueError);
    await expect(run).rejects.toThrow(/^job p1 \(point 1\) of study [0-9a-f]{12} failed on worker in-process after 1 attempt\(s\): point 1 is refused$/);
    expect(attempts.get('b/1')).toBe(1);
  });
});
