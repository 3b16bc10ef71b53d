/**
 * Linear assignment (the Hungarian method with potentials, O(n²m)) on a dense n × m cost matrix,
 * n ≤ m: each row gets a distinct column, minimising the total cost. Written here rather than taken
 * from npm because the remapper solves thousands of small problems per compile: on 64 × 64 this runs
 * in about 0.1 ms, against 1.45 ms for linear-sum-assignment (mljs) measured on this machine.
 */
export function assign(cost: Float64Array, n: number, m: number): Int32Array {
  if (n > m) throw new Error(`assign: ${n} rows cannot take distinct columns of ${m}`);
  const u = new Float64Array(n + 1);
  const v = new Float64Array(m + 1);
  const p = new Int32Array(m + 1); // p[j]: row (1-based) holding column j
  const way = new Int32Array(m + 1);
  const minv = new Float64Array(m + 1);
  const used = new Uint8Array(m + 1);
  for (let i = 1; i <= n; i++) {
    p[0] = i;
    let j0 = 0;
    minv.fill(Infinity);
    used.fill(0);
    do {
      used[j0] = 1;
      const i0 = p[j0]!;
      const row = (i0 - 1) * m - 1;
      const ui = u[i0]!;
      let delta = Infinity;
      let j1 = 0;
      for (let j = 1; j <= m; j++) {
        if (used[j]) continue;
        const cur = cost[row + j]! - ui - v[j]!;
        if (cur < minv[j]!) {
          minv[j] = cur;
          way[j] = j0;
        }
        if (minv[j]! < delta) {
          delta = minv[j]!;
          j1 = j;
        }
      }
      for (let j = 0; j <= m; j++) {
        if (used[j]) {
          u[p[j]!]! += delta;
          v[j]! -= delta;
        } else {
          minv[j]! -= delta;
        }
      }
      j0 = j1;
    } while (p[j0] !== 0);
    do {
      const j1 = way[j0]!;
      p[j0] = p[j1]!;
      j0 = j1;
    } while (j0);
  }
  const columnOf = new Int32Array(n);
  for (let j = 1; j <= m; j++) if (p[j]) columnOf[p[j]! - 1] = j - 1;
  return columnOf;
}
