/** Running the built CLI (dist/cli/main.js) as a script would, and checking its one-line errors. */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { expect } from 'vitest';

export const MAIN = join(__dirname, '..', '..', 'dist', 'cli', 'main.js');

export function dendra(...args: string[]) {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

export function expectOneLineError(r: ReturnType<typeof dendra>, pattern: RegExp) {
  expect(r.code).toBe(1);
  expect(r.err).toMatch(pattern);
  expect(r.err.trim().split('\n')).toHaveLength(1);
  expect(r.err).not.toMatch(/\n\s+at /);
}
