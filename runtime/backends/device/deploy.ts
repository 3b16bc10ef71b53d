/**
 * Deploy: program every conductance of an artifact onto a board with program-and-verify, array by array:
 * read the array, pulse every cell outside the tolerance towards its target (pulses.ts), read again, up to
 * `maxAttempts` rounds; cells still outside are reported and become defects. The board is marked
 * 'programming' before the first pulse and 'ready' only after every array has been programmed and
 * verified, so a half-programmed network is never marked ready. A dropped link is survived: the
 * driver retries each request, and if it gives up, deploy reconnects and resumes at the array it was on
 * (reading back first, so nothing is programmed twice). After every reconnect, every array and the final
 * mark the board is re-identified (state.ts): a board that restarted (its boot id changed) lost what was
 * programmed, so deploy starts over on it, or fails saying so — the 'ready' mark carries the boot id, so
 * a board can never be marked ready holding half a network.
 */
import type { Artifact } from '../../../artifact/format.js';
import { readArtifact } from '../../../artifact/read.js';
import { refuseDendrites } from './backend.js';
import type { DefectMap, Fault } from '../../../common/defects.js';
import { DeviceError, LinkError } from '../../../common/errors.js';
import type { Board, Pulses } from './board.js';
import { choosePulses, programmingWidth, setLevel } from './pulses.js';
import { StateLost, StateWatch } from './state.js';

/** Deploy programmed everything but more cells failed than allowed (DeployOptions.maxFailed): not marked ready. */
export class TooManyFailedError extends DeviceError {
  constructor(message: string, readonly report: DeployReport, readonly defects: DefectMap) {
    super(message);
  }
}


export interface DeployOptions {
  /** Acceptable |G − target| in siemens; default half the level spacing, at least 1.5 × the pulse noise. */
  tolerance?: number;
  maxAttempts?: number;
  /** Re-program even if the board already holds a ready deployment of this artifact. */
  force?: boolean;
  /** Reconnects after the driver gave up on a request (default 3). */
  reconnects?: number;
  /**
   * Most cells that may fail program-and-verify (default: no limit). Beyond it the board is not marked
   * ready and deploy throws a TooManyFailedError carrying the report and the chip's map with the failures.
   */
  maxFailed?: number;
  /** Times deploy starts over when the board restarts (its boot id changes) mid-deploy (default 2). */
  restarts?: number;
  onProgress?: (arraysDone: number, arrays: number, cellsDone: number, cells: number) => void;
}

export interface FailedCell {
  array: number;
  row: number;
  col: number;
  target: number;
  reached: number;
}

export interface DeployReport {
  artifact: string;
  board: string;
  serial: string;
  device: string;
  arrays: number;
  cells: number;
  /** Cells that needed no pulse at all. */
  alreadyWithin: number;
  /** Known stuck cells (from the artifact's chip map) that were not programmed. */
  skippedStuck: number;
  failed: FailedCell[];
  pulses: number;
  rounds: number;
  /** Link re-establishments: the driver's and deploy's own, each followed by a re-identification. */
  reconnects: number;
  /** Times the board restarted (lost its state) and programming started over. */
  restarts: number;
  seconds: number;
  tolerance: number;
  /** Final G − target over the programmed cells, in µS: histogram bin edges and counts. */
  errorHistogram: { edges: number[]; counts: number[] };
  /** Largest |G − target| over the cells that did not fail, µS. */
  maxErrorMicroSiemens: number;
  skipped?: 'already-deployed';
}

/** The artifact's identity: hex SHA-256 trailer of its file. */
export function artifactId(bytes: Uint8Array): string {
  return Buffer.from(bytes.subarray(bytes.length - 32)).toString('hex');
}

export async function deploy(bytes: Uint8Array, connect: () => Promise<Board>, options: DeployOptions = {}): Promise<{ report: DeployReport; defects: DefectMap }> {
  const artifact = readArtifact(bytes);
  refuseDendrites(artifact);
  const id = artifactId(bytes);
  const profile = artifact.profile;
  const pulse = profile.pulse;
  if (!pulse) throw new DeviceError(`the artifact's device profile '${profile.name}' has no pulse model, so dendra cannot program it; recompile with a profile that has one (models/devices/hfo2-1t1r.json does)`);
  const levels = profile.conductance.levels;
  const spacing = levels ? (profile.conductance.max - profile.conductance.min) / (levels - 1) : 0;
  // Every pulse lands with noise σ = pulse.noise: a window narrower than ~1.5σ is hit too rarely per try.
  const tolerance = options.tolerance ?? Math.max(spacing / 2, 1.5 * pulse.noise);
  const aim = 0.75 * tolerance;
  const maxAttempts = options.maxAttempts ?? 20;
  const started = performance.now();

  let board = await connect();
  try {
    let identity = await board.identify();
    checkCompatible(artifact, identity, board.url);
    const status = await board.status();
    if (!options.force && status.deployment?.artifact === id && status.deployment.state === 'ready' && status.boot === identity.boot) {
      const report = emptyReport(artifact, id, board.url, identity, tolerance);
      report.skipped = 'already-deployed';
      return { report, defects: defectsAfter(artifact, identity, [], board.url) };
    }

    const report = emptyReport(artifact, id, board.url, identity, tolerance);
    let failed: FailedCell[] = [];
    let errors: number[] = [];
    const cellsTotal = artifact.arrays.reduce((s, a) => s + a.rows * a.cols, 0);
    let cellsDone = 0;
    let reconnectsLeft = options.reconnects ?? 3;
    let restartsLeft = options.restarts ?? 2;
    // The board's state identity (protocol: boot) this pass programs against; re-checked after every reconnect.
    const watch = new StateWatch(() => board, identity.boot);
    const checkState = (always: boolean) => watch.check(always);

    /** Runs one step, reconnecting and retrying the step when the driver gives up on the link; re-identifies after every reconnect. */
    const withLink = async <T>(step: (b: Board) => Promise<T>): Promise<T> => {
      for (;;) {
        let result: T;
        try {
          result = await step(board);
        } catch (e) {
          const err = await watch.translate(e);
          if (!(err instanceof LinkError) || reconnectsLeft-- <= 0) throw err;
          await board.close().catch(() => {});
          board = await connect();
          await watch.reconnected();
          continue;
        }
        await checkState(false);
        return result;
      }
    };

    const programPass = async (): Promise<void> => {
      if (report.restarts > 0) {
        const again = await withLink((b) => b.identify());
        if (again.boot !== watch.boot) throw new StateLost(watch.boot, again.boot);
        checkCompatible(artifact, again, board.url);
        identity = again;
      }
      const boot = watch.boot;
      await withLink((b) => b.mark({ artifact: id, state: 'programming', ...(boot !== undefined ? { boot } : {}) }));
      for (const [i, a] of artifact.arrays.entries()) {
        const chipArray = a.chipArray ?? i;
        const region = { array: chipArray, row: 0, col: 0, rows: a.rows, cols: a.cols };
        const target = a.conductance;
        const skip = (cell: number) => a.stuck !== undefined && a.stuck[cell] !== 0;
        let g = await withLink((b) => b.read(region));
        // Per cell: how its SETs have landed against the model (reached ÷ expected), to aim the next one.
        const gain = new Float32Array(target.length).fill(1);
        for (let cell = 0; cell < target.length; cell++) {
          if (skip(cell)) report.skippedStuck++;
          else if (Math.abs(g[cell]! - target[cell]!) <= tolerance) report.alreadyWithin++;
        }
        for (let round = 0; round < maxAttempts; round++) {
          const out: number[] = [];
          // Aim inside the tolerance (75 % of it), so read noise does not push accepted cells back out.
          for (let cell = 0; cell < target.length; cell++) if (!skip(cell) && Math.abs(g[cell]! - target[cell]!) > aim) out.push(cell);
          if (out.length === 0) break;
          const plan = out.map((cell) => choosePulses(profile, g[cell]!, target[cell]!, gain[cell]!));
          const count = plan.reduce((s, p) => s + p.length, 0);
          const pulses: Pulses = { row: new Int32Array(count), col: new Int32Array(count), amplitude: new Float32Array(count), gate: new Float32Array(count) };
          let n = 0;
          out.forEach((cell, k) => {
            for (const choice of plan[k]!) {
              pulses.row[n] = Math.floor(cell / a.cols);
              pulses.col[n] = cell % a.cols;
              pulses.amplitude[n] = choice.amplitude;
              pulses.gate[n] = choice.gate;
              n++;
            }
          });
          await withLink((b) => b.pulse(chipArray, programmingWidth(pulse), pulses));
          report.pulses += count;
          report.rounds = Math.max(report.rounds, round + 1);
          const before = g;
          g = await withLink((b) => b.read(region));
          out.forEach((cell, k) => {
            // What the SET pulses did tells how this cell's SET response compares with the model (its gain):
            // a lone SET that was expected to lift the cell reached gain·level(Vg); a SET followed by a partial
            // RESET lands at (gain_true / gain_assumed)·target.
            const steps = plan[k]!;
            const first = steps[0]!;
            if (first.amplitude <= 0) return;
            const level = setLevel(pulse, first.gate);
            let next = gain[cell]!;
            if (steps.length === 1 && gain[cell]! * level > before[cell]!) next = g[cell]! / level;
            else if (steps.length === 2) next = gain[cell]! * (g[cell]! / target[cell]!);
            gain[cell] = Math.min(2, Math.max(0.5, next));
          });
        }
        for (let cell = 0; cell < target.length; cell++) {
          if (skip(cell)) continue;
          const err = g[cell]! - target[cell]!;
          if (Math.abs(err) > tolerance) failed.push({ array: chipArray, row: Math.floor(cell / a.cols), col: cell % a.cols, target: target[cell]!, reached: g[cell]! });
          else errors.push(err * 1e6);
        }
        // One status per array: a board that reset without dropping the link (a serial line) is caught here.
        await withLink(() => checkState(true));
        cellsDone += target.length;
        options.onProgress?.(i + 1, artifact.arrays.length, cellsDone, cellsTotal);
      }
      if (options.maxFailed !== undefined && failed.length > options.maxFailed) return;
      // 'ready' only on the board this pass programmed (the boot id makes the board check it too), then confirmed.
      await withLink((b) => b.mark({ artifact: id, state: 'ready', ...(boot !== undefined ? { boot } : {}) }));
      await withLink(() => checkState(true));
      const after = await withLink((b) => b.status());
      if (after.deployment?.artifact !== id || after.deployment.state !== 'ready') {
        throw new DeviceError(`the board at ${board.url} did not keep the 'ready' mark of this deployment (it reports ${JSON.stringify(after.deployment)?.slice(0, 200)}); run deploy again`);
      }
    };

    for (;;) {
      try {
        await programPass();
        break;
      } catch (e) {
        if (!(e instanceof StateLost)) throw e;
        if (restartsLeft-- <= 0) {
          throw new DeviceError(`the board at ${board.url} restarted during deploy and lost its state (boot ${e.before ?? '?'} -> ${e.after ?? '?'}) ${report.restarts + 1} times; it is not marked ready. Check its power and run deploy again`);
        }
        // Start over on the fresh board (programPass re-identifies it: it may even be another chip).
        report.restarts++;
        watch.boot = e.after;
        report.alreadyWithin = 0;
        report.skippedStuck = 0;
        failed = [];
        errors = [];
        cellsDone = 0;
      }
    }

    report.failed = failed;
    report.reconnects = watch.reconnects;
    report.seconds = (performance.now() - started) / 1000;
    report.errorHistogram = histogram(errors, tolerance * 1e6);
    report.maxErrorMicroSiemens = errors.reduce((m, e) => Math.max(m, Math.abs(e)), 0);
    const defects = defectsAfter(artifact, identity, failed, board.url);
    if (options.maxFailed !== undefined && failed.length > options.maxFailed) {
      const programmed = report.cells - report.skippedStuck;
      throw new TooManyFailedError(
        `${failed.length} of ${programmed} cells failed program-and-verify (more than the ${options.maxFailed} allowed), so the board at ${board.url} is not marked ready; ` +
          `the artifact was probably compiled without this chip's defect map: scan the chip (dendra scan) and recompile with --defects`,
        report,
        defects,
      );
    }
    return { report, defects };
  } finally {
    // Every way out, errors included, leaves no connection open.
    await board.close().catch(() => {});
  }
}


function checkCompatible(artifact: Artifact, identity: Awaited<ReturnType<Board['identify']>>, url: string): void {
  const p = artifact.profile;
  if (identity.device !== p.name) throw new DeviceError(`the artifact was compiled for '${p.name}', but the board at ${url} is a '${identity.device}' chip`);
  const serial = artifact.chip?.origin?.['serial'];
  if (typeof serial === 'string' && serial !== identity.serial) {
    throw new DeviceError(`the artifact was placed around the defects of chip ${serial}, but the board at ${url} is chip ${identity.serial}; scan this chip and recompile`);
  }
  for (const [i, a] of artifact.arrays.entries()) {
    const chipArray = a.chipArray ?? i;
    const g = identity.arrays[chipArray];
    if (!g) throw new DeviceError(`the artifact needs chip array ${chipArray}, but the board at ${url} has ${identity.arrays.length} arrays`);
    if (g.rows !== a.rows || g.cols !== a.cols) throw new DeviceError(`artifact array ${i} is ${a.rows} × ${a.cols}, but chip array ${chipArray} is ${g.rows} × ${g.cols}`);
  }
}

function emptyReport(artifact: Artifact, id: string, url: string, identity: Awaited<ReturnType<Board['identify']>>, tolerance: number): DeployReport {
  return {
    artifact: id,
    board: url,
    serial: identity.serial,
    device: identity.device,
    arrays: artifact.arrays.length,
    cells: artifact.arrays.reduce((s, a) => s + a.rows * a.cols, 0),
    alreadyWithin: 0,
    skippedStuck: 0,
    failed: [],
    pulses: 0,
    rounds: 0,
    reconnects: 0,
    restarts: 0,
    seconds: 0,
    tolerance,
    errorHistogram: { edges: [], counts: [] },
    maxErrorMicroSiemens: 0,
  };
}

function histogram(values: number[], halfWidth: number): { edges: number[]; counts: number[] } {
  const bins = 20;
  const edges = Array.from({ length: bins + 1 }, (_, i) => -halfWidth + (2 * halfWidth * i) / bins);
  const counts = new Array<number>(bins).fill(0);
  for (const v of values) counts[Math.min(bins - 1, Math.max(0, Math.floor(((v + halfWidth) / (2 * halfWidth)) * bins)))]!++;
  return { edges, counts };
}

/** The chip's defect map after deploying: the artifact's known stuck cells plus the cells that failed. */
function defectsAfter(artifact: Artifact, identity: Awaited<ReturnType<Board['identify']>>, failed: FailedCell[], url: string): DefectMap {
  const arrays = identity.arrays.map((g) => ({ rows: g.rows, cols: g.cols, faults: [] as Fault[] }));
  const seen = new Set<string>();
  const add = (array: number, row: number, col: number, state: 'on' | 'off', g: number) => {
    const key = `${array}:${row}:${col}`;
    if (seen.has(key) || !arrays[array]) return;
    seen.add(key);
    arrays[array]!.faults.push([row, col, state, Math.max(0, g)]);
  };
  artifact.arrays.forEach((a, i) => {
    if (!a.stuck) return;
    const chipArray = a.chipArray ?? i;
    for (let cell = 0; cell < a.stuck.length; cell++) {
      if (a.stuck[cell]) add(chipArray, Math.floor(cell / a.cols), cell % a.cols, a.stuck[cell] === 1 ? 'on' : 'off', a.conductance[cell]!);
    }
  });
  // A cell that would not come down to its target behaves as stuck ON; one that would not rise, as stuck OFF.
  for (const f of failed) add(f.array, f.row, f.col, f.reached > f.target ? 'on' : 'off', f.reached);
  for (const a of arrays) a.faults.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
  return {
    format: 'dendra-defects',
    version: 1,
    device: identity.device,
    arrays,
    origin: { ...(artifact.chip?.origin ?? {}), deploy: url, serial: identity.serial, date: new Date().toISOString(), note: 'known stuck cells plus cells that failed program-and-verify' },
  };
}

