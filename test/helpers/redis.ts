/**
 * A Redis for the queue tests: the one .ci/run started (DENDRA_TEST_REDIS=redis://HOST:PORT), else a
 * redis-server of our own on a free local port, stopped after the tests. Under CI=true a missing Redis
 * fails the tests with the reason; elsewhere they are skipped with a line saying why.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestRedis {
  /** redis://HOST:PORT/DB */
  url: string;
  stop(): Promise<void>;
}

export const MISSING_REDIS =
  'the queue tests need Redis: install redis-server (apt-get install redis-server; .ci/run does) or set DENDRA_TEST_REDIS=redis://HOST:PORT';

/** Whether a Redis can be had: DENDRA_TEST_REDIS is set or redis-server is on the PATH. */
export function redisAvailable(): boolean {
  if (process.env['DENDRA_TEST_REDIS']) return true;
  return spawnSync('redis-server', ['--version'], { encoding: 'utf8' }).status === 0;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

async function waitForPing(port: number, child: ChildProcess): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null) throw new Error(`redis-server exited with code ${child.exitCode}`);
    const r = spawnSync('redis-cli', ['-p', String(port), 'ping'], { encoding: 'utf8' });
    if (r.stdout?.trim() === 'PONG') return;
    await new Promise((res) => setTimeout(res, 100));
  }
  throw new Error(`redis-server on port ${port} did not answer PING`);
}

/** `db`: the database number this test file uses, so that files running at once never share a queue. */
export async function startRedis(db: number): Promise<TestRedis> {
  const given = process.env['DENDRA_TEST_REDIS'];
  if (given) return { url: `${given.replace(/\/(\d+)?$/, '')}/${db}`, stop: async () => {} };
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'dendra-redis-'));
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  await waitForPing(port, child);
  return {
    url: `redis://127.0.0.1:${port}/${db}`,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}
