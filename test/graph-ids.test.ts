/**
 * The graph keeps its tasks in columns indexed by an integer id (TaskTable), and hands the id of a
 * removed or replaced task out again. Its old entries in the ready, lease and backoff heaps must
 * be gone by then: a new task under that id would otherwise sit in a heap at the old task's place
 * (handed out out of order, or twice).
 */
import { describe, expect, it } from 'vitest';
import { Graph } from '../hub/src/graph/graph.js';

const T0 = 1_700_000_000_000;
const LATER = T0 + 24 * 3600_000;

/** Steals one task at a time, completing each, until none is left: the names in the order handed out. */
function drain(g: Graph, now: number): string[] {
  const ran: string[] = [];
  for (;;) {
    const task = g.steal('w', 1, [], now).tasks[0];
    if (task === undefined) return ran;
    ran.push(task.name);
    g.complete('w', [{ name: task.name }], now);
  }
}

describe('task ids', () => {
  it("hands a deleted pool's ids out again, with nothing of its tasks left in a heap", () => {
    const g = new Graph();
    const N = 2_000;
    g.create(Array.from({ length: N }, (_, i) => ({ name: `a${i}`, pool: 'a', priority: i % 7 })), T0);
    // Some running (the lease heap), some failed once (the backoff heap), the rest ready (both ready heaps).
    const leased = g.steal('w', 400, [], T0).tasks.map((t) => t.name);
    for (const name of leased.slice(0, 200)) g.fail('w', name, 'once', false, T0);
    expect(g.timedEntries).toBeGreaterThanOrEqual(400);
    g.poolDelete('a', false, T0);
    // The new tasks' priorities run the other way, so a stale heap place shows as a wrong order.
    g.create(Array.from({ length: N }, (_, i) => ({ name: `b${i}`, pool: 'b', priority: -(i % 7) })), T0);
    expect(g.taskIds).toBe(N);
    const ran = drain(g, LATER);
    const expected = Array.from({ length: N }, (_, i) => i)
      .sort((x, y) => (x % 7) - (y % 7) || x - y)
      .map((i) => `b${i}`);
    expect(ran).toEqual(expected);
    expect(g.status(LATER).counts.done).toBe(N);
  });

  it('hands the ids of replaced tasks out again, each new task in its place', () => {
    const g = new Graph();
    const N = 3_000;
    g.create(Array.from({ length: N }, (_, i) => ({ name: `t${i}` })), T0);
    // Replaced twice: the second time reuses the ids the first let go of.
    for (const round of [1, 2]) {
      const result = g.replace(Array.from({ length: N }, (_, i) => ({ name: `t${i}`, priority: round === 1 ? i + 1 : -i })), false, false, T0);
      expect(result.replaced).toBe(N);
    }
    expect(g.taskIds).toBeLessThanOrEqual(2 * N + 1_024);
    expect(drain(g, T0)).toEqual(Array.from({ length: N }, (_, i) => `t${i}`));
  });

  it('hands out the ids of deleted tasks again after their leases and backoffs', () => {
    const g = new Graph();
    g.create(Array.from({ length: 100 }, (_, i) => ({ name: `x${i}`, leaseMs: 1_000 })), T0);
    const leased = g.steal('w', 60, [], T0).tasks.map((t) => t.name);
    for (const name of leased.slice(0, 30)) g.fail('w', name, 'once', false, T0);
    g.deleteTasks(Array.from({ length: 100 }, (_, i) => `x${i}`), false, T0);
    g.create(Array.from({ length: 100 }, (_, i) => ({ name: `y${i}`, leaseMs: 1_000 })), T0);
    expect(g.taskIds).toBe(100);
    // The new tasks run with leases of their own; the old ones' deadlines and backoff ends pass.
    const first = g.steal('w2', 100, [], T0).tasks.map((t) => t.name);
    expect(first).toEqual(Array.from({ length: 100 }, (_, i) => `y${i}`));
    g.heartbeat('w2', first, T0 + 900);
    // Past the old deadlines (T0 + 1 s) and backoff ends, within the renewed leases: nothing expires.
    const lost = g.heartbeat('w2', first, T0 + 1_500);
    expect(lost).toEqual([]);
    expect(g.status(T0 + 1_500).counts.running).toBe(100);
  });
});
