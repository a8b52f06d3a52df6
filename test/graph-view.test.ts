/** The graph as a picture (Graph.view): filters, around/depth, collapse, caps and errors. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import protobuf from 'protobufjs';
import { describe, expect, it } from 'vitest';
import { Graph } from '../hub/src/graph/graph.js';
import { graphView, namePrefix, type ViewSource } from '../hub/src/graph/view.js';
import { VIEW_MAX_EDGES, VIEW_MAX_NODES } from '../proto/src/graph-view.js';
import { emptyCounts, type GraphViewQuery, type StateCounts } from '../proto/src/types.js';
import { codeOf } from './support/errors.js';
import { decodeReply, decodeRequest, encodeReply, encodeRequest } from '../proto/src/codec.js';
import { allows } from '../proto/src/roles.js';
import { ROOT } from './support/proc.js';
import { stencilSpecs } from './support/workloads.js';

const T0 = 1_700_000_000_000;
const Q: GraphViewQuery = { pool: '', around: '', depth: 0, collapse: 'none', maxNodes: 0 };
const view = (g: Graph, query: Partial<GraphViewQuery> = {}) => g.view({ ...Q, ...query }, T0);
const ids = (g: Graph, query: Partial<GraphViewQuery> = {}): string[] => view(g, query).nodes.map((n) => n.id);
const edges = (g: Graph, query: Partial<GraphViewQuery> = {}): string[] => view(g, query).edges.map((e) => `${e.from}>${e.to}:${e.count}`);
const counts = (c: Partial<StateCounts>): StateCounts => ({ ...emptyCounts(), ...c });

/** A chain c0 -> c1 -> ... -> c{n-1} (each on the one before). */
const chain = (n: number, prefix = 'c', pool = '') =>
  Array.from({ length: n }, (_, i) => ({ name: `${prefix}${i}`, pool, deps: i === 0 ? [] : [`${prefix}${i - 1}`] }));

describe('a whole graph', () => {
  it('holds every task as a node, in creation order, with its state and pool, and every edge once', () => {
    const g = new Graph();
    g.create([{ name: 'b' }, { name: 'a', pool: 'gpu' }, { name: 'c', deps: ['a', 'b'] }, { name: 'd', deps: ['c', 'nowhere'] }], T0);
    const v = view(g);
    expect(v.nodes).toEqual([
      { id: 'b', counts: counts({ ready: 1 }), state: 'ready', pool: 'default', tasks: 1 },
      { id: 'a', counts: counts({ ready: 1 }), state: 'ready', pool: 'gpu', tasks: 1 },
      { id: 'c', counts: counts({ waiting: 1 }), state: 'waiting', pool: 'default', tasks: 1 },
      { id: 'd', counts: counts({ waiting: 1 }), state: 'waiting', pool: 'default', tasks: 1 },
    ]);
    // Sorted by the nodes' order (from, then to); a dependency that does not exist has no edge.
    expect(edges(g)).toEqual(['b>c:1', 'a>c:1', 'c>d:1']);
    expect(v.tasks).toBe(4);
  });

  it('shows states as they are now (a lease expired by `now` is ready again)', () => {
    const g = new Graph();
    g.create([{ name: 'a', leaseMs: 1000 }], T0);
    g.steal('w', 1, [], T0);
    expect(view(g).nodes[0]?.state).toBe('running');
    expect(g.view(Q, T0 + 5000).nodes[0]?.state).toBe('ready');
  });

  it('is empty for an empty graph, and refuses a pool nobody knows (UNKNOWN_POOL) or a name over the limit', () => {
    const g = new Graph();
    expect(view(g)).toEqual({ nodes: [], edges: [], tasks: 0 });
    g.create([{ name: 'a' }], T0);
    expect(codeOf(() => view(g, { pool: 'nope' }))).toBe('UNKNOWN_POOL');
    expect(codeOf(() => view(g, { around: 'x'.repeat(2_000_000) }))).toBe('INVALID_NAME');
    g.poolSet({ pool: 'later', maxRunning: 3, paused: undefined }, T0);
    expect(view(g, { pool: 'later' })).toEqual({ nodes: [], edges: [], tasks: 0 }); // known by its settings
  });
});

describe('the pool filter', () => {
  it('keeps the tasks of the pool, and only edges between them', () => {
    const g = new Graph();
    g.create([{ name: 'a', pool: 'p' }, { name: 'b', pool: 'q', deps: ['a'] }, { name: 'c', pool: 'p', deps: ['b', 'a'] }], T0);
    expect(ids(g, { pool: 'p' })).toEqual(['a', 'c']);
    expect(edges(g, { pool: 'p' })).toEqual(['a>c:1']);
    expect(ids(g, { pool: 'q' })).toEqual(['b']);
    expect(edges(g, { pool: 'q' })).toEqual([]);
  });
});

describe('around a task', () => {
  it('holds the task, its ancestors and descendants up to depth steps (0 means 2)', () => {
    const g = new Graph();
    g.create(chain(9), T0);
    expect(ids(g, { around: 'c4' })).toEqual(['c2', 'c3', 'c4', 'c5', 'c6']);
    expect(ids(g, { around: 'c4', depth: 1 })).toEqual(['c3', 'c4', 'c5']);
    expect(ids(g, { around: 'c4', depth: 100 })).toEqual(chain(9).map((t) => t.name));
    expect(edges(g, { around: 'c4', depth: 1 })).toEqual(['c3>c4:1', 'c4>c5:1']);
  });

  it('leaves out siblings and cousins (neither ancestors nor descendants), keeping edges between nodes it holds', () => {
    const g = new Graph();
    // a -> b -> d, a -> c -> d, x -> c: around b holds a and d (and not c, x).
    g.create([{ name: 'a' }, { name: 'x' }, { name: 'b', deps: ['a'] }, { name: 'c', deps: ['a', 'x'] }, { name: 'd', deps: ['b', 'c'] }], T0);
    expect(ids(g, { around: 'b' })).toEqual(['a', 'b', 'd']);
    expect(edges(g, { around: 'b' })).toEqual(['a>b:1', 'b>d:1']);
    // Around d at depth 2: its ancestors a, x, b, c; a -> c is kept as both are in the view.
    expect(ids(g, { around: 'd' })).toEqual(['a', 'x', 'b', 'c', 'd']);
    expect(edges(g, { around: 'd' })).toEqual(['a>b:1', 'a>c:1', 'x>c:1', 'b>d:1', 'c>d:1']);
  });

  it('counts steps by the shortest path', () => {
    const g = new Graph();
    // a -> b -> c -> d and a -> d: around a at depth 1 holds b and d.
    g.create([{ name: 'a' }, { name: 'b', deps: ['a'] }, { name: 'c', deps: ['b'] }, { name: 'd', deps: ['c', 'a'] }], T0);
    expect(ids(g, { around: 'a', depth: 1 })).toEqual(['a', 'b', 'd']);
  });

  it('with a pool, keeps the tasks of that pool among those it reaches (through any pool)', () => {
    const g = new Graph();
    g.create([{ name: 'a', pool: 'p' }, { name: 'b', pool: 'q', deps: ['a'] }, { name: 'c', pool: 'p', deps: ['b'] }], T0);
    expect(ids(g, { around: 'a', pool: 'p' })).toEqual(['a', 'c']);
    expect(edges(g, { around: 'a', pool: 'p' })).toEqual([]);
    expect(ids(g, { around: 'b', pool: 'p' })).toEqual(['a', 'c']);
  });

  it('refuses a task that does not exist (UNKNOWN_TASK) and a depth over 100 (INVALID_ARGUMENT)', () => {
    const g = new Graph();
    g.create(chain(3), T0);
    expect(codeOf(() => view(g, { around: 'nope' }))).toBe('UNKNOWN_TASK');
    expect(() => view(g, { around: 'nope' })).toThrow(/no task named "nope"/);
    expect(codeOf(() => view(g, { around: 'c1', depth: 101 }))).toBe('INVALID_ARGUMENT');
    expect(ids(g, { around: 'c1', depth: 100 })).toEqual(['c0', 'c1', 'c2']);
  });

  it('stops its walk once it has found more tasks than max_nodes, naming how to narrow it', () => {
    const g = new Graph();
    // A star: hub with 50 dependents.
    g.create([{ name: 'hub' }, ...Array.from({ length: 50 }, (_, i) => ({ name: `s/${i}`, deps: ['hub'] }))], T0);
    expect(codeOf(() => view(g, { around: 'hub', maxNodes: 50 }))).toBe('TOO_LARGE');
    expect(() => view(g, { around: 'hub', maxNodes: 50 })).toThrow(/more than 50 tasks lie within 2 steps of "hub"; narrow the view: a smaller depth, collapse \(prefix or pool\), a pool/);
    expect(ids(g, { around: 'hub', maxNodes: 51 })).toHaveLength(51);
    // Collapsed, the same neighbourhood is two nodes.
    expect(ids(g, { around: 'hub', maxNodes: 50, collapse: 'prefix' })).toEqual(['hub', 's']);
  });
});

describe('collapse', () => {
  it('by pool: one node per pool with its counts, edges between pools counted, self-edges left out', () => {
    const g = new Graph();
    g.create(
      [
        { name: 'a1', pool: 'a' },
        { name: 'a2', pool: 'a', deps: ['a1'] },
        { name: 'b1', pool: 'b', deps: ['a1', 'a2'] },
        { name: 'b2', pool: 'b', deps: ['a2', 'b1'] },
        { name: 'c1', pool: 'c', deps: ['b2'] },
      ],
      T0,
    );
    g.steal('w', 1, ['a'], T0);
    g.complete('w', [{ name: 'a1' }], T0);
    const v = view(g, { collapse: 'pool' });
    expect(v.nodes).toEqual([
      { id: 'a', counts: counts({ done: 1, ready: 1 }), state: undefined, pool: 'a', tasks: 2 },
      { id: 'b', counts: counts({ waiting: 2 }), state: undefined, pool: 'b', tasks: 2 },
      { id: 'c', counts: counts({ waiting: 1 }), state: undefined, pool: 'c', tasks: 1 },
    ]);
    expect(edges(g, { collapse: 'pool' })).toEqual(['a>b:3', 'b>c:1']);
    expect(v.tasks).toBe(5);
  });

  it('by prefix: the name up to its last slash, or the whole name; group nodes have no pool', () => {
    expect(namePrefix('sweep/a/1')).toBe('sweep/a');
    expect(namePrefix('plain')).toBe('plain');
    expect(namePrefix('/x')).toBe('');
    const g = new Graph();
    g.create(
      [
        { name: 'prep' },
        { name: 'sweep/a/1', deps: ['prep'] },
        { name: 'sweep/a/2', deps: ['prep'], pool: 'gpu' },
        { name: 'sweep/b/1', deps: ['sweep/a/1', 'sweep/a/2'] },
        { name: 'report', deps: ['sweep/b/1', 'sweep/a/1'] },
      ],
      T0,
    );
    const v = view(g, { collapse: 'prefix' });
    expect(v.nodes.map((n) => [n.id, n.tasks, n.pool, n.state])).toEqual([
      ['prep', 1, '', undefined],
      ['sweep/a', 2, '', undefined],
      ['sweep/b', 1, '', undefined],
      ['report', 1, '', undefined],
    ]);
    expect(edges(g, { collapse: 'prefix' })).toEqual(['prep>sweep/a:2', 'sweep/a>sweep/b:2', 'sweep/a>report:1', 'sweep/b>report:1']);
    // With a pool: only the gpu task's group, and no edges (its neighbours are elsewhere).
    expect(view(g, { collapse: 'prefix', pool: 'gpu' })).toMatchObject({ nodes: [{ id: 'sweep/a', tasks: 1 }], edges: [], tasks: 1 });
  });

  it('around a task, collapsed: groups of the tasks it reaches, and their edges', () => {
    const g = new Graph();
    g.create([...chain(4, 'x/'), ...chain(4, 'y/').map((t, i) => (i === 0 ? { ...t, deps: ['x/3'] } : t))], T0);
    const v = view(g, { around: 'x/3', depth: 2, collapse: 'prefix' });
    expect(v.nodes.map((n) => [n.id, n.tasks])).toEqual([
      ['x', 3],
      ['y', 2],
    ]);
    expect(v.edges).toEqual([{ from: 'x', to: 'y', count: 1 }]);
  });
});

describe('caps', () => {
  it('max_nodes: 0 means 2,000; over 100,000 is INVALID_ARGUMENT', () => {
    const g = new Graph();
    g.create(stencilSpecs(100, 20), T0);
    expect(ids(g)).toHaveLength(2000);
    g.create([{ name: 'one-more' }], T0);
    expect(codeOf(() => view(g))).toBe('TOO_LARGE');
    expect(ids(g, { maxNodes: 2001 })).toHaveLength(2001);
    expect(codeOf(() => view(g, { maxNodes: VIEW_MAX_NODES + 1 }))).toBe('INVALID_ARGUMENT');
    expect(() => view(g, { maxNodes: VIEW_MAX_NODES + 1 })).toThrow(/max_nodes 100001 is over the limit of 100000/);
  });

  it('a view with more nodes is refused with TOO_LARGE, naming the count and the ways to narrow it', () => {
    const g = new Graph();
    g.create(Array.from({ length: 30 }, (_, i) => ({ name: `g${i % 3}/t${i}`, pool: `p${i % 5}` })), T0);
    expect(() => view(g, { maxNodes: 10 })).toThrow(/the view would have 30 nodes; the limit is 10 \(max_nodes\): narrow it with collapse \(prefix or pool\), around a task, a pool/);
    expect(() => view(g, { maxNodes: 4, collapse: 'pool' })).toThrow(/the view would have 5 nodes; the limit is 4 \(max_nodes\): narrow it with around a task, a pool$/);
    expect(() => view(g, { maxNodes: 1, collapse: 'prefix', pool: 'p0' })).toThrow(/the view would have 3 nodes; the limit is 1 \(max_nodes\): narrow it with around a task$/);
    expect(ids(g, { maxNodes: 3, collapse: 'prefix' })).toEqual(['g0', 'g1', 'g2']);
    expect(ids(g, { maxNodes: 5, collapse: 'pool' })).toEqual(['p0', 'p1', 'p2', 'p3', 'p4']);
  });

  it('refusing changes nothing', () => {
    const g = new Graph();
    g.create(chain(5), T0);
    const before = view(g);
    expect(codeOf(() => view(g, { maxNodes: 2 }))).toBe('TOO_LARGE');
    expect(view(g)).toEqual(before);
    expect(g.status(T0).total).toBe(5);
  });
});

/** A graph of `count` tasks named by `nameOf`, each depending on the tasks `depsOf` gives (by index), without a Graph. */
function fakeSource(count: number, nameOf: (i: number) => string, depsOf: (i: number) => number[]): ViewSource<number> {
  const dependents: number[][] = Array.from({ length: count }, () => []);
  for (let i = 0; i < count; i++) for (const d of depsOf(i)) (dependents[d] as number[]).push(i);
  const byName = new Map(Array.from({ length: count }, (_, i) => [nameOf(i), i]));
  return {
    order: Array.from({ length: count }, (_, i) => i),
    get: (name) => byName.get(name),
    name: nameOf,
    pool: () => 'default',
    state: () => 'waiting',
    seq: (i) => i,
    deps: (i) => depsOf(i).map(nameOf),
    dependents: (i) => dependents[i] as number[],
  };
}

describe('the size of a reply', () => {
  it('refuses more than 1,000,000 edges', () => {
    // 1,001 tasks, then 1,000 each on all of them: 1,001,000 edges between 2,001 nodes.
    const base = 1001;
    const all = Array.from({ length: base }, (_, i) => i);
    const source = fakeSource(base + 1000, String, (i) => (i < base ? [] : all));
    const query = { ...Q, maxNodes: 3000 };
    expect(codeOf(() => graphView(source, query))).toBe('TOO_LARGE');
    expect(() => graphView(source, query)).toThrow(`the view would have more than ${VIEW_MAX_EDGES} edges; narrow it with collapse (prefix or pool), around a task, a pool`);
    // Collapsed, the same edges are one.
    expect(graphView(fakeSource(base + 1000, (i) => (i < base ? `a/${i}` : `b/${i}`), (i) => (i < base ? [] : all)), { ...query, collapse: 'prefix' }).edges).toEqual([
      { from: 'a', to: 'b', count: 1_001_000 },
    ]);
  }, 60_000);

  it('refuses a reply of more than about 64 MiB (long names)', () => {
    // 45,000 names of 500 bytes in a chain: about 70 MB of names, nodes and edges.
    const long = (i: number): string => `${String(i).padStart(6, '0')}${'x'.repeat(494)}`;
    const source = fakeSource(45_000, long, (i) => (i === 0 ? [] : [i - 1]));
    expect(() => graphView(source, { ...Q, maxNodes: 100_000 })).toThrow(/^the view would have a reply over 64 MiB \(45000 nodes, \d+ edges so far\); narrow it with collapse/);
    // Half of it fits.
    expect(graphView(fakeSource(22_500, long, (i) => (i === 0 ? [] : [i - 1])), { ...Q, maxNodes: 100_000 }).edges).toHaveLength(22_499);
  }, 60_000);
});

describe('a big graph', () => {
  it('collapses 100,000 tasks into their groups, with every edge counted', () => {
    const g = new Graph();
    // 1,000 columns, 100 rows; each row its own prefix: edges only between consecutive rows.
    const specs = stencilSpecs(1000, 100).map((s) => ({ name: rowName(s.name), deps: (s.deps ?? []).map(rowName) }));
    g.create(specs.slice(0, 50_000), T0);
    g.create(specs.slice(50_000), T0);
    const v = view(g, { collapse: 'prefix' });
    expect(v.nodes).toHaveLength(100);
    expect(v.tasks).toBe(100_000);
    expect(v.edges).toHaveLength(99);
    // Each row but the first: 3 deps per task but 2 at the edges.
    expect(v.edges.every((e) => e.count === 1000 * 3 - 2)).toBe(true);
    expect(v.edges[0]).toMatchObject({ from: 'row0', to: 'row1' });
    expect(codeOf(() => view(g))).toBe('TOO_LARGE');
    expect(view(g, { around: 'row50/500', depth: 3 }).nodes).toHaveLength(1 + 2 * (3 + 5 + 7));
    // Not a timing test: the bound is only there so that a loaded machine does not fail it.
  }, 60_000);
});

function rowName(n: string): string {
  const i = Number(n);
  return `row${Math.floor(i / 1000)}/${i % 1000}`;
}

describe('on the wire', () => {
  it('carries a graph view request and reply both ways', () => {
    for (const collapse of ['none', 'pool', 'prefix'] as const) {
      const request = { op: 'graphView' as const, pool: 'gpu', around: 'a "b"', depth: 3, collapse, maxNodes: 100_000 };
      expect(decodeRequest(encodeRequest(request))).toEqual(request);
    }
    const g = new Graph();
    g.create([{ name: 'a', pool: 'p' }, { name: 'x/b', deps: ['a'] }, { name: 'x/c', deps: ['a', 'x/b'] }], T0);
    for (const collapse of ['none', 'pool', 'prefix'] as const) {
      const reply = { op: 'graphView' as const, ...view(g, { collapse }) };
      expect(decodeReply(encodeReply(reply))).toEqual(reply);
    }
    expect(decodeReply(encodeReply({ op: 'graphView', nodes: [], edges: [], tasks: 0 }))).toEqual({ op: 'graphView', nodes: [], edges: [], tasks: 0 });
  });

  it('refuses a collapse the contract does not know (INVALID_ARGUMENT)', () => {
    const root = protobuf.parse(readFileSync(join(ROOT, 'proto/dagwork.proto'), 'utf8')).root;
    const type = root.lookupType('dagwork.v1.Request');
    const frame = type.encodeDelimited(type.fromObject({ graphView: { collapse: 7 } })).finish();
    expect(codeOf(() => decodeRequest(frame))).toBe('INVALID_ARGUMENT');
  });

  it('is allowed to every role (read-only)', () => {
    expect(allows('worker', 'graphView')).toBe(true);
  });
});
