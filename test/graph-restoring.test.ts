/**
 * A graph restored one record at a time (Graph.restoring, what a store's loadEach feeds) in any
 * order is the graph `Graph.restore` makes of the same records, and hands out its ready tasks in
 * the live graph's order: random graphs (deps on tasks of the graph and on names never created,
 * priorities, pools, leases, completions, failures with backoff), their records shuffled.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Graph } from '../hub/src/graph/graph.js';
import type { TaskRecord, TaskSpecInput } from '../proto/src/types.js';

const T0 = 1_700_000_000_000;
const SIZE = 40;

interface Shape {
  specs: TaskSpecInput[];
  steals: number;
  completes: number;
  fails: number;
}

const shape: fc.Arbitrary<Shape> = fc
  .array(
    fc.record({
      deps: fc.uniqueArray(fc.integer({ min: 0, max: SIZE + 4 }), { maxLength: 3 }),
      priority: fc.integer({ min: 0, max: 2 }),
      pool: fc.constantFrom('default', 'gpu'),
      maxAttempts: fc.integer({ min: 1, max: 3 }),
    }),
    { minLength: 1, maxLength: SIZE },
  )
  .chain((tasks) =>
    fc.record({
      // A dependency on a later task, or past the last one (never created), is allowed: creation order only must be acyclic.
      specs: fc.constant(tasks.map((t, i) => ({ name: `t${i}`, deps: t.deps.filter((d) => d < i || d >= tasks.length).map((d) => `t${d}`), priority: t.priority, pool: t.pool, maxAttempts: t.maxAttempts }))),
      steals: fc.integer({ min: 0, max: SIZE }),
      completes: fc.integer({ min: 0, max: SIZE }),
      fails: fc.integer({ min: 0, max: 4 }),
    }),
  );

/** A live graph of `s`, and its records as a store holds them (the latest of each task). */
function live(s: Shape): { graph: Graph; records: Map<string, TaskRecord>; now: number } {
  const graph = new Graph();
  const records = new Map<string, TaskRecord>();
  const take = (): void => {
    for (const r of graph.takeDirty()) records.set(r.spec.name, structuredClone(r));
  };
  let now = T0;
  // In batches of 7, so that some dependencies exist before their dependents are created.
  for (let i = 0; i < s.specs.length; i += 7) graph.create(s.specs.slice(i, i + 7), (now += 10));
  take();
  const leased = graph.steal('w1', s.steals, [], (now += 10)).tasks.map((t) => t.name);
  take();
  graph.complete('w1', leased.slice(0, s.completes).map((name) => ({ name, result: new TextEncoder().encode(name) })), (now += 10));
  take();
  for (const name of leased.slice(s.completes, s.completes + s.fails)) graph.fail('w1', name, 'broke', false, (now += 10));
  take();
  return { graph, records, now: now + 10 };
}

function lookups(graph: Graph, names: Iterable<string>, now: number): unknown[] {
  return [...names].sort().map((n) => graph.lookup(n, now).task);
}

/** The names a steal of everything hands out, in its order (changes the graph). */
function stealOrder(graph: Graph, now: number): string[] {
  return graph.steal('w2', 1000, [], now).tasks.map((t) => t.name);
}

describe('Graph.restoring', () => {
  it('makes, from records added in any order, the graph restore makes, handing out tasks in the live order', () => {
    fc.assert(
      fc.property(shape, fc.integer(), (s, seed) => {
        const { graph, records, now } = live(s);
        const inOrder = Graph.restore([...records.values()].map((r) => structuredClone(r)), now);
        const shuffled = [...records.values()];
        let x = seed >>> 0 || 1;
        for (let i = shuffled.length - 1; i > 0; i--) {
          x = (x * 1103515245 + 12345) >>> 0;
          const j = x % (i + 1);
          [shuffled[i], shuffled[j]] = [shuffled[j] as TaskRecord, shuffled[i] as TaskRecord];
        }
        const restoring = Graph.restoring();
        // Told how many come (a snapshot's count), or a wrong count: a hint only.
        if (seed % 3 === 1) restoring.expect(shuffled.length);
        if (seed % 3 === 2) restoring.expect(seed % 2 === 0 ? shuffled.length - 5 : 3);
        for (const r of shuffled) restoring.add(structuredClone(r));
        const streamed = restoring.finish(now);

        expect(lookups(streamed, records.keys(), now)).toEqual(lookups(inOrder, records.keys(), now));
        expect(streamed.status(now)).toEqual(inOrder.status(now));
        const all = { states: [], pool: '', prefix: '', limit: 1000, after: 0, withParams: true, withResults: true, withDeps: true };
        expect(streamed.list(all, now)).toEqual(inOrder.list(all, now));
        // Past every backoff: the tasks that failed are ready again too.
        const later = now + 3_600_000;
        const order = stealOrder(graph, later);
        expect(stealOrder(inOrder, later)).toEqual(order);
        expect(stealOrder(streamed, later)).toEqual(order);
      }),
      { numRuns: 200 },
    );
  });

  it("renews running tasks' leases from the time of finish, not of add", () => {
    const graph = new Graph();
    graph.create([{ name: 'a', leaseMs: 1000 }], T0);
    graph.steal('w1', 1, [], T0);
    const [running] = graph.takeDirty();
    const restoring = Graph.restoring();
    restoring.add(running as TaskRecord);
    const restored = restoring.finish(T0 + 60_000);
    expect(restored.lookup('a', T0 + 60_000).task.leaseDeadline).toBe(T0 + 61_000);
    // Still leased just before that, expired after.
    expect(restored.steal('w2', 1, [], T0 + 60_999).tasks).toEqual([]);
    expect(restored.steal('w2', 1, [], T0 + 61_001).tasks.map((t) => t.name)).toEqual(['a']);
  });

  it('takes a count it is told as a hint, within the graph\'s limit: nothing is allocated past it', () => {
    const graph = new Graph();
    graph.create([{ name: 'a' }, { name: 'b', deps: ['a'] }], T0);
    const records = graph.takeDirty();
    // Beyond what typed arrays can hold: only the limit of 10 tasks is made room for.
    const restoring = Graph.restoring({ maxTasks: 10 });
    for (const count of [-1, Number.NaN, Infinity, 1e15]) restoring.expect(count);
    for (const r of records) restoring.add(r);
    const restored = restoring.finish(T0);
    expect(restored.size).toBe(2);
    expect(restored.steal('w', 2, [], T0).tasks.map((t) => t.name)).toEqual(['a']);
  });

  it('refuses records after finish, and a second finish', () => {
    const restoring = Graph.restoring();
    restoring.finish(T0);
    const graph = new Graph();
    graph.create([{ name: 'a' }], T0);
    const [record] = graph.takeDirty();
    expect(() => restoring.add(record as TaskRecord)).toThrow(/after finish/);
    expect(() => restoring.finish(T0)).toThrow(/twice/);
  });
});
