/**
 * Replays every input the fuzzer saved (fuzz/regressions/TARGET/) and every seed (fuzz/corpus/TARGET/)
 * through its target, in-process: each must end accepted or in a typed error — never an untyped error
 * (a crash here takes the test worker down; a hang runs into the test timeout).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { classify } from '../../fuzz/classify.js';
import { packageRoot } from '../../common/paths.js';
import { loadSeeds, regressionDir, TARGETS } from '../../fuzz/targets.js';

afterAll(async () => {
  for (const t of TARGETS) await t.cleanup?.();
});

describe.each(TARGETS.map((t) => [t.name, t] as const))('fuzz target %s', (_name, target) => {
  it('accepts every seed', async () => {
    const seeds = loadSeeds(target.name);
    expect(seeds.length).toBeGreaterThan(0);
    for (const s of seeds) {
      const r = await classify(() => target.run(s));
      expect(r.detail).toBe('');
      expect(r.outcome).toBe('accepted');
    }
  });

  const dir = regressionDir(target.name);
  const cases = existsSync(dir) ? readdirSync(dir).filter((f) => !f.endsWith('.txt') && !f.endsWith('.md')).sort() : [];
  it.runIf(cases.length > 0).each(cases)('regression %s ends accepted or typed', async (file) => {
    const r = await classify(() => target.run(new Uint8Array(readFileSync(join(dir, file)))));
    expect(['accepted', 'typed'], `${file}: ${r.outcome} ${r.detail}`).toContain(r.outcome);
  });
});

describe('the fuzz runner', () => {
  it('classifies crashes, hangs and untyped errors, and exits 1 on them', () => {
    const r = spawnSync(process.execPath, [join(packageRoot(), 'dist', 'fuzz', 'run.js'), 'selftest', '--seconds', '1', '--timeout-ms', '3000', '--no-save', '--seed', '7'], {
      env: { ...process.env, DENDRA_FUZZ_SELFTEST: '1' },
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(r.status).toBe(1);
    const line = r.stdout.split('\n').find((l) => l.startsWith('fuzz selftest: ') && l.includes('inputs in'))!;
    const count = (what: string) => Number(new RegExp(`(\\d+) ${what}`).exec(line)?.[1]);
    expect(count('accepted')).toBeGreaterThan(0);
    expect(count('untyped errors')).toBeGreaterThan(0);
    expect(count('crashes')).toBeGreaterThan(0);
    expect(count('hangs')).toBeGreaterThan(0);
    expect(r.stdout).toMatch(/fuzz: FAILED/);
  });
});
