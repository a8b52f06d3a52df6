/** The task graphs the benchmark and the tests run. */
import type { TaskSpecInput } from '../../proto/src/types.js';

/** dwork's gen_tasks.py stencil: `columns` wide, `rows` deep, each task on up to 3 of the row before. */
export function stencilSpecs(columns: number, rows: number): TaskSpecInput[] {
  return Array.from({ length: columns * rows }, (_, n) => stencilSpec(n, columns));
}

/** Task `n` of a stencil `columns` wide: named n, on n-columns and its neighbours in the row before. */
export function stencilSpec(n: number, columns: number): TaskSpecInput {
  const t = Math.floor(n / columns);
  const c = n - t * columns;
  const deps = t === 0 ? [] : [c - 1, c, c + 1].filter((x) => x >= 0 && x < columns).map((x) => String(n - columns + (x - c)));
  return { name: String(n), deps };
}

export function independentSpecs(count: number, prefix = 't'): TaskSpecInput[] {
  return Array.from({ length: count }, (_, i) => ({ name: `${prefix}${i}` }));
}

/** The stencil in dwork's file format, as `dquery addfile` reads it. */
export function stencilFile(columns: number, rows: number): string {
  return stencilSpecs(columns, rows).map((s) => [s.name, ...(s.deps ?? [])].join(',')).join('\n') + '\n';
}
