/** Pools an operator manages, in the pure graph: max_running, paused, delete, and what the store is given. */
import { describe, expect, it, vi } from 'vitest';
import { Graph } from '../hub/src/graph/graph.js';
import { Heap } from '../hub/src/graph/heap.js';
import { ParkedSteals } from '../hub/src/graph/parked.js';
import type { PoolSettings, TaskRecord, TaskSpecInput } from '../proto/src/types.js';
import { codeOf } from './support/errors.js';

const T0 = 1_700_000_000_000;

function names(graph: Graph, worker: string, n: number, pools: string[] = [], now = T0): string[] {
  return graph.steal(worker, n, pools, now).tasks.map((t) => t.name);
}


const tasks = (pool: string, n: number, extra: Partial<TaskSpecInput> = {}): TaskSpecInput[] =>
  Array.from({ length: n }, (_, i) => ({ name: `${pool}-${i}`, pool, ...extra }));

/** What a store given everything the graph handed it so far holds: records, deletions, settings. */
class FakeStore {
  records = new Map<string, TaskRecord>();
  pools = new Map<string, PoolSettings>();
  take(g: Graph): void {
    for (const r of g.takeDirty()) this.records.set(r.spec.name, structuredClone(r));
    for (const name of g.takeDeleted()) this.records.delete(name);
    for (const [pool, settings] of g.takeDirtyPools()) {
      if (settings === undefined) this.pools.delete(pool);
      else this.pools.set(pool, settings);
    }
  }
  restore(now = T0): Graph {
    return Graph.restore([...this.records.values()].map((r) => structuredClone(r)), now, {}, undefined, [...this.pools]);
  }
}

describe('pool max_running', () => {
  it('hands out at most N of the pool at once, to one worker or several', () => {
    const g = new Graph();
    g.create(tasks('lic', 5), T0);
    g.poolSet({ pool: 'lic', maxRunning: 2, paused: undefined }, T0);
    expect(names(g, 'w1', 5, ['lic'])).toEqual(['lic-0', 'lic-1']);
    expect(names(g, 'w2', 5)).toEqual([]);
    expect(g.steal('w2', 1, ['lic'], T0).finished).toBe(false);
  });

  it('gives the next task once a lease ends: complete, fail, release, expiry, worker exit', () => {
    const g = new Graph({ backoffBaseMs: 0 });
    g.create(tasks('lic', 8, { leaseMs: 1000 }), T0);
    g.poolSet({ pool: 'lic', maxRunning: 1, paused: undefined }, T0);
    expect(names(g, 'w', 3)).toEqual(['lic-0']);
    g.complete('w', [{ name: 'lic-0' }], T0);
    expect(names(g, 'w', 3)).toEqual(['lic-1']);
    g.release('w', ['lic-1'], T0);
    expect(names(g, 'w', 3)).toEqual(['lic-1']);
    g.workerExit('w', T0);
    expect(names(g, 'v', 3)).toEqual(['lic-1']);
    expect(names(g, 'u', 3, [], T0 + 1001)).toEqual(['lic-1']); // v's lease expired
  });

  it('does not hold back other pools, whose tasks a steal of every pool takes in turn', () => {
    const g = new Graph();
    g.create([...tasks('lic', 3, { priority: 5 }), ...tasks('free', 3)], T0);
    g.poolSet({ pool: 'lic', maxRunning: 1, paused: undefined }, T0);
    expect(names(g, 'w', 10)).toEqual(['lic-0', 'free-0', 'free-1', 'free-2']);
  });

  it('lifted (0), puts the pool back among every pool, in priority order', () => {
    const g = new Graph();
    g.create([...tasks('lic', 3, { priority: 5 }), ...tasks('free', 2)], T0);
    g.poolSet({ pool: 'lic', maxRunning: 1, paused: undefined }, T0);
    g.poolSet({ pool: 'lic', maxRunning: 0, paused: undefined }, T0);
    expect(names(g, 'w', 10)).toEqual(['lic-0', 'lic-1', 'lic-2', 'free-0', 'free-1']);
  });

  it('serves a parked steal of the pool when a lease of it ends', () => {
    const g = new Graph();
    g.create(tasks('lic', 2), T0);
    g.poolSet({ pool: 'lic', maxRunning: 1, paused: undefined }, T0);
    expect(names(g, 'w1', 1)).toEqual(['lic-0']);
    const parked = new ParkedSteals<string>(10);
    parked.park('w2', { worker: 'w2', n: 1, pools: [], waitWhenFinished: false }, T0 + 60_000);
    expect(parked.serve(g, T0)).toEqual([]);
    g.complete('w1', [{ name: 'lic-0' }], T0 + 1);
    const [answer] = parked.serve(g, T0 + 1);
    expect(answer !== undefined && 'result' in answer ? answer.result.tasks.map((t) => t.name) : answer).toEqual(['lic-1']);
  });

  it('refuses a negative, fractional or huge limit and changes nothing', () => {
    const g = new Graph();
    g.create(tasks('lic', 1), T0);
    for (const bad of [-1, 1.5, 2 ** 32]) expect(codeOf(() => g.poolSet({ pool: 'lic', maxRunning: bad, paused: undefined }, T0))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => g.poolSet({ pool: 'bad\tname', maxRunning: 1, paused: undefined }, T0))).toBe('INVALID_NAME');
    expect(g.takeDirtyPools()).toEqual([]);
    expect(g.poolList('lic', T0).pools[0]).toMatchObject({ maxRunning: 0, paused: false });
  });
});

describe('pool paused', () => {
  it('hands out nothing of it, is not finished, and lets running tasks complete', () => {
    const g = new Graph();
    g.create(tasks('gpu', 3), T0);
    expect(names(g, 'w', 1)).toEqual(['gpu-0']);
    g.poolSet({ pool: 'gpu', maxRunning: undefined, paused: true }, T0);
    const paused = g.steal('w', 5, [], T0);
    expect(paused).toMatchObject({ tasks: [], finished: false });
    expect(g.steal('w', 5, ['gpu'], T0)).toMatchObject({ tasks: [], finished: false });
    expect(g.complete('w', [{ name: 'gpu-0' }], T0)[0]?.outcome).toBe('ACCEPTED');
    expect(g.steal('w', 5, ['gpu'], T0)).toMatchObject({ tasks: [], finished: false });
    g.poolSet({ pool: 'gpu', maxRunning: undefined, paused: false }, T0);
    expect(g.takeWoken().pools.has('gpu')).toBe(true);
    expect(names(g, 'w', 5)).toEqual(['gpu-1', 'gpu-2']);
  });

  it('keeps a setting given with the other one (set one, the other stays)', () => {
    const g = new Graph();
    g.poolSet({ pool: 'p', maxRunning: 4, paused: undefined }, T0);
    expect(g.poolSet({ pool: 'p', maxRunning: undefined, paused: true }, T0)).toMatchObject({ pool: 'p', maxRunning: 4, paused: true });
  });

  it('costs a steal of every pool no scan of the paused pool’s tasks', () => {
    const g = new Graph();
    g.poolSet({ pool: 'big', maxRunning: undefined, paused: true }, T0);
    g.create(tasks('big', 5000), T0);
    g.create(tasks('small', 1), T0);
    const pops = vi.spyOn(Heap.prototype, 'pop');
    try {
      expect(names(g, 'w', 1)).toEqual(['small-0']);
      expect(names(g, 'w', 1)).toEqual([]);
      expect(pops.mock.calls.length).toBeLessThan(20);
    } finally {
      pops.mockRestore();
    }
  });
});

describe('pool list and settings before tasks', () => {
  it('lists pools with tasks or settings, with counts and throughput; unknown pools are UNKNOWN_POOL', () => {
    const g = new Graph();
    g.poolSet({ pool: 'later', maxRunning: 2, paused: undefined }, T0);
    g.create(tasks('a', 2), T0);
    names(g, 'w', 2, ['a']);
    g.complete('w', [{ name: 'a-0' }, { name: 'a-1' }], T0 + 200);
    const { pools, poolsTotal } = g.poolList('', T0 + 400); // one second seen: 2 a second
    expect(poolsTotal).toBe(2);
    expect(pools.map((p) => p.pool)).toEqual(['a', 'later']);
    expect(pools[0]).toMatchObject({ counts: { done: 2 }, maxRunning: 0, paused: false });
    expect(pools[0]?.donePerSecond).toBe(2);
    expect(pools[1]).toMatchObject({ counts: { ready: 0 }, maxRunning: 2 });
    expect(codeOf(() => g.poolList('nope', T0))).toBe('UNKNOWN_POOL');
    expect(codeOf(() => g.poolDelete('nope', false, T0))).toBe('UNKNOWN_POOL');
  });

  it('applies settings given before the pool holds a task, and a restored graph keeps them', () => {
    const g = new Graph();
    const store = new FakeStore();
    g.poolSet({ pool: 'lic', maxRunning: 2, paused: undefined }, T0);
    g.create(tasks('lic', 4), T0);
    store.take(g);
    expect(store.pools.get('lic')).toEqual({ maxRunning: 2, paused: false, jobVerifier: '', resultVerifier: '' });
    expect(names(store.restore(), 'w', 4)).toEqual(['lic-0', 'lic-1']);
    g.poolSet({ pool: 'lic', maxRunning: 0, paused: false }, T0);
    store.take(g);
    expect(store.pools.has('lic')).toBe(false); // no settings: the record goes
  });
});

describe('pool delete', () => {
  function twoPools(): Graph {
    const g = new Graph();
    g.create([{ name: 's1', pool: 'stage' }, { name: 's2', pool: 'stage', deps: ['s1'] }, { name: 'next', deps: ['s2'] }, { name: 'after', deps: ['next'] }, { name: 'alone' }], T0);
    return g;
  }

  it('is refused while tasks of other pools depend on the pool, changing nothing', () => {
    const g = twoPools();
    g.takeDirty();
    expect(() => g.poolDelete('stage', false, T0)).toThrow(/task "next" of pool "default" depends on "s2" of pool "stage": delete with force/);
    expect(g.size).toBe(5);
    expect(g.takeDirty()).toEqual([]);
    expect(g.takeDeleted()).toEqual([]);
  });

  it('with force removes the tasks, blocks the dependents with the reason, and the store forgets them', () => {
    const g = twoPools();
    const store = new FakeStore();
    expect(names(g, 'w', 1, ['stage'])).toEqual(['s1']);
    store.take(g);
    expect(g.poolDelete('stage', true, T0 + 1)).toEqual({ deleted: 2, blocked: 1 });
    expect(() => g.lookup('s1', T0)).toThrow(/no task named "s1"/);
    const next = g.lookup('next', T0).task;
    expect(next.state).toBe('blocked');
    expect(next.log.at(-1)?.note).toBe('dependency deleted with pool stage');
    expect(g.lookup('next', T0).missingDeps).toEqual(['s2']);
    expect(g.lookup('after', T0).task.state).toBe('blocked');
    expect(g.heartbeat('w', ['s1'], T0 + 2)[0]?.outcome).toBe('NOT_FOUND');
    expect(g.status(T0 + 2)).toMatchObject({ total: 3, counts: { running: 0, ready: 1, blocked: 2 }, missingNames: 1, waitingOnMissing: 1 });
    store.take(g);
    expect([...store.records.keys()].sort()).toEqual(['after', 'alone', 'next']);
    const restored = store.restore(T0 + 2);
    expect(restored.status(T0 + 2)).toMatchObject({ total: 3, counts: { ready: 1, blocked: 2 }, missingNames: 1, waitingOnMissing: 1 });
    expect(names(g, 'w', 5)).toEqual(['alone']);
  });

  it('deletes a pool without dependents outside, and a task of a deleted name can be created again', () => {
    const g = new Graph();
    const store = new FakeStore();
    g.create([...tasks('tmp', 2), { name: 'keep' }], T0);
    g.poolSet({ pool: 'tmp', maxRunning: 1, paused: undefined }, T0);
    store.take(g);
    expect(g.poolDelete('tmp', false, T0)).toEqual({ deleted: 2, blocked: 0 });
    expect(codeOf(() => g.poolList('tmp', T0))).toBe('UNKNOWN_POOL');
    g.create([{ name: 'tmp-0', pool: 'tmp' }], T0);
    store.take(g);
    expect([...store.records.keys()].sort()).toEqual(['keep', 'tmp-0']);
    expect(store.pools.size).toBe(0);
    expect(names(store.restore(), 'w', 5).sort()).toEqual(['keep', 'tmp-0']);
  });
});
