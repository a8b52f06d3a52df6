import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..');

// The pure graph's heap a task, measured in a process of its own after full collections: a
// bound, so that a change that makes every task hold more (an array grown by push keeps 17
// slots, an object kept by mistake) shows here and not first at a million tasks.
const MEASURE = `
const { Graph } = await import(${JSON.stringify(join(ROOT, 'dist/hub/src/graph/graph.js'))});
const N = 100000, COLUMNS = 100;
global.gc();
const before = process.memoryUsage();
const g = new Graph();
for (let i = 0; i < N; i += 5000) {
  g.create(Array.from({ length: 5000 }, (_, j) => {
    const k = i + j, row = Math.floor(k / COLUMNS), col = k % COLUMNS;
    const name = (r, c) => 'r' + r + 'c' + ((c + COLUMNS) % COLUMNS);
    return { name: name(row, col), deps: row === 0 ? [] : [name(row - 1, col - 1), name(row - 1, col), name(row - 1, col + 1)] };
  }), 1);
}
g.takeDirty(); g.takeNewSpecs();
global.gc(); global.gc();
const after = process.memoryUsage();
console.log(JSON.stringify({ tasks: g.size, bytes: after.heapUsed + after.arrayBuffers - before.heapUsed - before.arrayBuffers }));
`;

describe('graph memory', () => {
  it('holds a 100,000-task stencil in under 330 bytes a task', () => {
    const out = execFileSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', MEASURE], { encoding: 'utf8', timeout: 60_000 });
    const { tasks, bytes } = JSON.parse(out) as { tasks: number; bytes: number };
    expect(tasks).toBe(100_000);
    expect(bytes / tasks).toBeLessThan(330);
  });
});
