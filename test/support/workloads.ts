/** The task graphs the benchmark and the tests run. */
import type { TaskSpecInput } from '../../proto/src/types.js';

/** dwork's gen_tasks.py stencil: `columns` wide, `rows` deep, each task on up to 3 of the row before. */
export function stencilSpecs(columns: number, rows: number): TaskSpecInput[] {
  const specs: TaskSpecInput[] = [];
  for (let t = 0; t < rows; t++) {
    for (let c = 0; c < columns; c++) {
      const n = t * columns + c;
      const deps = t === 0 ? [] : [c - 1, c, c + 1].filter((x) => x >= 0 && x < columns).map((x) => String(n - columns + (x - c)));
      specs.push({ name: String(n), deps });
    }
  }
  return specs;
}

export function independentSpecs(count: number, prefix = 't'): TaskSpecInput[] {
  return Array.from({ length: count }, (_, i) => ({ name: `${prefix}${i}` }));
}

/** The stencil in dwork's file format, as `dquery addfile` reads it. */
export function stencilFile(columns: number, rows: number): string {
  return stencilSpecs(columns, rows).map((s) => [s.name, ...(s.deps ?? [])].join(',')).join('\n') + '\n';
}
