/** Each worker's figures (done, failed, run times, what it holds), and the same after a restart. */
import { describe, expect, it } from 'vitest';
import { Graph } from '../hub/src/graph/graph.js';
import type { WorkerStatus } from '../proto/src/types.js';

const T0 = 1_700_000_000_000;
const worker = (g: Graph, id: string, now: number): WorkerStatus | undefined => g.status(now).workers.find((w) => w.worker === id);

describe('worker figures', () => {
  it('count done and failed runs with their time from lease to end, the longest, and the tasks held now', () => {
    const g = new Graph({ backoffBaseMs: 1 });
    g.create([{ name: 'a' }, { name: 'b' }, { name: 'c', leaseMs: 1_000 }, { name: 'd' }, { name: 'e' }], T0);
    g.steal('w1', 2, [], T0); // a, b
    g.complete('w1', [{ name: 'a' }], T0 + 300);
    g.fail('w1', 'b', 'boom', false, T0 + 500);
    g.steal('w2', 1, [], T0 + 500); // c
    g.advance(T0 + 2_000); // c's lease expired (seen at 2,000): a failure of w2's, 1,500 ms after it took it
    g.steal('w1', 1, [], T0 + 2_000);
    g.release('w1', [(worker(g, 'w1', T0 + 2_000)?.tasks[0] as string)], T0 + 2_100); // given back: not a run
    g.steal('w2', 2, [], T0 + 3_000);
    expect(worker(g, 'w1', T0 + 3_000)).toMatchObject({ done: 1, failed: 1, runs: 2, busyMs: 800, maxRunMs: 500, running: 0, tasks: [] });
    const w2 = worker(g, 'w2', T0 + 3_000);
    expect(w2).toMatchObject({ done: 0, failed: 1, runs: 1, busyMs: 1_500, maxRunMs: 1_500, running: 2 });
    expect(w2?.tasks).toHaveLength(2);

    // A restart rebuilds them from the state logs.
    const h = Graph.restore(g.takeDirty(), T0 + 4_000);
    expect(worker(h, 'w1', T0 + 4_000)).toMatchObject({ done: 1, failed: 1, runs: 2, busyMs: 800, maxRunMs: 500 });
    expect(worker(h, 'w2', T0 + 4_000)).toMatchObject({ done: 0, failed: 1, runs: 1, busyMs: 1_500, maxRunMs: 1_500, running: 2 });
  });
});
