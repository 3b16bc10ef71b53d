/**
 * `npm run fuzz -- [TARGET...] [--seconds N] [--seed S] [--timeout-ms T] [--no-save]`
 *
 * Fuzzes each target (default: all; see targets.ts) for N seconds (default 30): the seeds first, then
 * inputs mutated from them (mutate.ts, fast-check), each run in a worker process (worker.ts). Every input
 * ends as accepted, typed (a DendraError), untyped (any other error), crash (the worker died: a native
 * fault, an abort, a sanitizer report) or hang (no answer within --timeout-ms, default 10000). The first
 * three are fine; a crash, hang or untyped error is printed, saved under fuzz/regressions/TARGET/ (which
 * `npm test` replays) unless --no-save, and makes the run exit 1.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BAD, type Outcome } from './classify.js';
import { plans } from './mutate.js';
import { loadSeeds, regressionDir, targetByName, TARGETS, type Target } from './targets.js';

interface Args {
  targets: Target[];
  seconds: number;
  seed: number;
  timeoutMs: number;
  save: boolean;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { targets: [], seconds: 30, seed: Date.now() % 0x7fffffff, timeoutMs: 10_000, save: true };
  const num = (flag: string, v: string | undefined, min: number, max: number) => {
    const x = Number(v);
    if (v === undefined || !Number.isFinite(x) || x < min || x > max) throw new Error(`${flag} takes a number from ${min} to ${max} (got '${v ?? ''}')`);
    return x;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--seconds') args.seconds = num(a, argv[++i], 0.1, 86400);
    else if (a === '--seed') args.seed = Math.floor(num(a, argv[++i], 0, 0x7fffffff));
    else if (a === '--timeout-ms') args.timeoutMs = num(a, argv[++i], 100, 600_000);
    else if (a === '--no-save') args.save = false;
    else if (a.startsWith('-')) throw new Error(`unknown option ${a}`);
    else {
      const t = targetByName(a);
      if (!t) throw new Error(`unknown target '${a}' (targets: ${TARGETS.map((x) => x.name).join(', ')})`);
      args.targets.push(t);
    }
  }
  if (args.targets.length === 0) args.targets = [...TARGETS];
  return args;
}

type Reply = { id: number; outcome: Outcome; detail: string };

/** One worker process, restarted after a crash or hang. */
class Worker {
  #child: ChildProcess | undefined;
  #pending: ((r: Reply) => void) | undefined;
  #stderr = '';
  #nextId = 1;

  constructor(readonly target: Target) {}

  async #start(): Promise<void> {
    const script = join(dirname(fileURLToPath(import.meta.url)), 'worker.js');
    const child = fork(script, [this.target.name], {
      serialization: 'advanced',
      execArgv: ['--max-old-space-size=3072', '--stack-size=984'],
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    this.#child = child;
    this.#stderr = '';
    child.stderr!.on('data', (d: Buffer) => {
      this.#stderr = (this.#stderr + d.toString('utf8')).slice(-6000);
    });
    const ready = new Promise<void>((res, rej) => {
      child.once('message', () => res());
      child.once('exit', (code, signal) => rej(new Error(`the fuzz worker exited at start (${signal ?? code}): ${this.#stderr.trim().split('\n').slice(-3).join(' | ')}`)));
    });
    child.on('message', (m: Reply) => {
      const settle = this.#pending;
      if (!settle) return;
      this.#pending = undefined;
      settle(m);
    });
    child.on('exit', (code, signal) => {
      if (this.#child === child) this.#child = undefined;
      const settle = this.#pending;
      this.#pending = undefined;
      settle?.({ id: -1, outcome: 'crash', detail: `worker died (${signal ?? `exit ${code}`})${this.#stderr ? `:\n${this.#stderr.trim().split('\n').slice(-25).join('\n')}` : ''}` });
    });
    await ready;
  }

  async run(input: Uint8Array, timeoutMs: number): Promise<Reply> {
    if (!this.#child) await this.#start();
    const child = this.#child!;
    const id = this.#nextId++;
    return new Promise<Reply>((resolve) => {
      const timer = setTimeout(() => {
        if (this.#pending !== settle) return;
        this.#pending = undefined;
        this.#child = undefined;
        child.kill('SIGKILL');
        resolve({ id, outcome: 'hang', detail: `no answer within ${timeoutMs} ms` });
      }, timeoutMs);
      const settle = (r: Reply) => {
        clearTimeout(timer);
        resolve(r);
      };
      this.#pending = settle;
      child.send({ id, input });
    });
  }

  stop(): void {
    this.#child?.kill('SIGKILL');
    this.#child = undefined;
  }
}

export interface TargetResult {
  target: string;
  inputs: number;
  seconds: number;
  counts: Record<Outcome, number>;
  saved: string[];
}

async function fuzzTarget(target: Target, args: Args): Promise<TargetResult> {
  const seeds = loadSeeds(target.name);
  if (seeds.length === 0) throw new Error(`no seeds in fuzz/corpus/${target.name}`);
  const worker = new Worker(target);
  const counts: Record<Outcome, number> = { accepted: 0, typed: 0, untyped: 0, crash: 0, hang: 0 };
  const saved: string[] = [];
  const seenBad = new Set<string>();
  const started = performance.now();
  const deadline = started + args.seconds * 1000;
  const gen = plans(args.seed);
  let inputs = 0;
  const record = async (input: Uint8Array, r: Reply) => {
    counts[r.outcome]++;
    inputs++;
    if (!BAD.includes(r.outcome)) return;
    // One report per distinct failure (its first line), however many inputs hit it.
    const key = `${r.outcome}:${r.detail.split('\n')[0]!.replace(/\d+/g, 'N')}`;
    const digest = createHash('sha256').update(input).digest('hex').slice(0, 16);
    const file = join(regressionDir(target.name), `${digest}${target.ext}`);
    if (!seenBad.has(key)) {
      seenBad.add(key);
      console.log(`fuzz ${target.name}: ${r.outcome.toUpperCase()} ${r.detail.split('\n')[0]}${r.outcome === 'crash' ? `\n${r.detail.split('\n').slice(1).join('\n')}` : ''}`);
      if (args.save) {
        mkdirSync(dirname(file), { recursive: true });
        writeFileSync(file, input);
        writeFileSync(`${file}.txt`, `${r.outcome}: ${r.detail}\n`);
        saved.push(relative(process.cwd(), file));
        console.log(`  saved as ${relative(process.cwd(), file)} (npm test replays it)`);
      }
    }
  };
  try {
    for (const s of seeds) await record(s, await worker.run(s, args.timeoutMs));
    while (performance.now() < deadline) {
      const plan = gen.next().value!;
      let input: Uint8Array;
      try {
        input = target.mutate(seeds[plan.seed % seeds.length]!, plan, seeds);
      } catch {
        continue; // a mutation the seed's structure does not allow
      }
      await record(input, await worker.run(input, args.timeoutMs));
    }
  } finally {
    worker.stop();
  }
  return { target: target.name, inputs, seconds: (performance.now() - started) / 1000, counts, saved };
}

async function main(): Promise<void> {
  let args: Args;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (e) {
    console.error(`fuzz: ${(e as Error).message}`);
    process.exitCode = 2;
    return;
  }
  console.log(`fuzz: targets ${args.targets.map((t) => t.name).join(', ')}; ${args.seconds} s each; seed ${args.seed}; hang limit ${args.timeoutMs} ms${process.env['DENDRA_NATIVE_ADDON'] ? `; addon ${process.env['DENDRA_NATIVE_ADDON']}` : ''}`);
  let bad = 0;
  for (const t of args.targets) {
    let r: TargetResult;
    try {
      r = await fuzzTarget(t, args);
    } catch (e) {
      // The harness itself failed (a worker that cannot start, a missing corpus): not an input's fault.
      console.error(`fuzz ${t.name}: cannot run: ${(e as Error).message}`);
      process.exitCode = 2;
      return;
    }
    const c = r.counts;
    const n = c.untyped + c.crash + c.hang;
    bad += n;
    console.log(`fuzz ${r.target}: ${r.inputs} inputs in ${r.seconds.toFixed(1)} s (${(r.inputs / r.seconds).toFixed(0)}/s): ${c.accepted} accepted, ${c.typed} typed errors, ${c.untyped} untyped errors, ${c.crash} crashes, ${c.hang} hangs${n ? '  <-- FAIL' : ''}`);
  }
  console.log(bad ? `fuzz: FAILED (${bad} bad inputs; replay with npm test, see fuzz/regressions/)` : 'fuzz: passed (no crash, hang or untyped error)');
  process.exitCode = bad ? 1 : 0;
}

void main();
