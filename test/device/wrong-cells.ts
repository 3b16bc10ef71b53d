import type { Artifact } from '../../artifact/format.js';
import type { DeployReport } from '../../runtime/backends/device/deploy.js';

/**
 * Cells of a board that do not hold what the artifact asks: |G − target| beyond 3 × the deploy tolerance
 * (verify reads are noisy, so a verified cell may sit a little past 1 ×), over the cells deploy programmed
 * (not the known stuck ones, not those it reported failed). `conductances(chipArray)` gives a whole array.
 */
export function wrongCells(artifact: Artifact, conductances: (chipArray: number) => Float32Array, report: Pick<DeployReport, 'tolerance' | 'failed'>): number {
  const failed = new Set(report.failed.map((f) => `${f.array}:${f.row}:${f.col}`));
  let wrong = 0;
  artifact.arrays.forEach((a, i) => {
    const chipArray = a.chipArray ?? i;
    const g = conductances(chipArray);
    for (let r = 0; r < a.rows; r++) {
      for (let c = 0; c < a.cols; c++) {
        const cell = r * a.cols + c;
        if (a.stuck?.[cell] || failed.has(`${chipArray}:${r}:${c}`)) continue;
        if (Math.abs(g[cell]! - a.conductance[cell]!) > 3 * report.tolerance) wrong++;
      }
    }
  });
  return wrong;
}
