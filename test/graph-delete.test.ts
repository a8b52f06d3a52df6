/**
 * delete (issue 13), walked step by step on the graph alone. After each change, a graph restored
 * from the records a store would hold (takeDirty written, takeDeleted forgotten) must hold the same
 * tasks in the same states (what a hub restart would see).
 */
import { describe, expect, it } from 'vitest';
import { Graph } from '../hub/src/graph/graph.js';
import type { TaskRecord } from '../proto/src/types.js';
import { codeOf } from './support/errors.js';

const T0 = 1_700_000_000_000;
const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const ALL = { states: [], pool: '', prefix: '', limit: 1000, after: 0, withParams: false, withResults: false };

/** A graph that keeps what a store would hold, and checks a restore of it against itself. */
class Harness {
  readonly g = new Graph();
  readonly stored = new Map<string, TaskRecord>();

  flush(): void {
    for (const r of this.g.takeDirty()) this.stored.set(r.spec.name, structuredClone(r));
    for (const name of this.g.takeDeleted()) this.stored.delete(name);
  }

  names(): string[] {
    return this.g.list(ALL, T0).tasks.map((t) => t.name);
  }

  state(name: string): string {
    return this.g.lookup(name, T0).task.state;
  }

  drain(): string[] {
    const ran: string[] = [];
    for (;;) {
      const task = this.g.steal('w', 1, [], T0).tasks[0];
      if (task === undefined) break;
      ran.push(task.name);
      this.g.complete('w', [{ name: task.name, result: bytes(`result of ${task.name}`) }], T0);
    }
    return ran;
  }

  /** The restored graph holds the same tasks, in the same states, as the live one. */
  checkRestore(): Graph {
    this.flush();
    const restored = Graph.restore([...this.stored.values()].map((r) => structuredClone(r)), T0);
    const live = this.g.list(ALL, T0).tasks;
    const again = restored.list(ALL, T0).tasks;
    expect(again.map((t) => [t.name, t.state, t.attempts])).toEqual(live.map((t) => [t.name, t.state, t.attempts]));
    expect(restored.status(T0)).toMatchObject({ total: this.g.status(T0).total, counts: this.g.status(T0).counts });
    return restored;
  }
}


describe('delete', () => {
  it('removes tasks nothing depends on, whatever their state, and a restore does not bring them back', () => {
    const h = new Harness();
    h.g.create([{ name: 'a' }, { name: 'b' }, { name: 'c', deps: ['a'] }, { name: 'lone' }], T0);
    h.flush();
    expect(h.g.steal('w', 1, [], T0).tasks.map((t) => t.name)).toEqual(['a']);
    const r = h.g.deleteTasks(['lone', 'nope', 'c'], false, T0);
    expect(r).toEqual({
      deleted: 2,
      results: [
        { name: 'lone', outcome: 'ACCEPTED', message: '' },
        { name: 'nope', outcome: 'NOT_FOUND', message: 'no task named "nope"' },
        { name: 'c', outcome: 'ACCEPTED', message: '' },
      ],
    });
    expect(h.names()).toEqual(['a', 'b']);
    expect(h.g.status(T0).total).toBe(2);
    const restored = h.checkRestore();
    expect(restored.list(ALL, T0).tasks.map((t) => t.name)).toEqual(['a', 'b']);
    expect([...h.stored.keys()].sort()).toEqual(['a', 'b']);
  });

  it('refuses a task another depends on (HAS_DEPENDENTS, naming it), and changes nothing for it', () => {
    const h = new Harness();
    h.g.create([{ name: 'a' }, { name: 'b', deps: ['a'] }, { name: 'c', deps: ['b'] }, { name: 'x' }], T0);
    h.flush();
    const r = h.g.deleteTasks(['a', 'x'], false, T0);
    expect(r.deleted).toBe(1);
    expect(r.results[0]).toEqual({ name: 'a', outcome: 'HAS_DEPENDENTS', message: 'task "b" depends on it: delete it too, or use descendants' });
    expect(r.results[1]).toMatchObject({ name: 'x', outcome: 'ACCEPTED' });
    expect(h.names()).toEqual(['a', 'b', 'c']);
    expect(h.state('a')).toBe('ready');
    h.flush();
    expect([...h.stored.keys()].sort()).toEqual(['a', 'b', 'c']);
    h.checkRestore();
    // A named task refused keeps the tasks it depends on: named a and b, c still needs b.
    const both = h.g.deleteTasks(['a', 'b'], false, T0);
    expect(both.deleted).toBe(0);
    expect(both.results.map((x) => x.outcome)).toEqual(['HAS_DEPENDENTS', 'HAS_DEPENDENTS']);
    expect(both.results[1]?.message).toMatch(/^task "c" depends on it/);
    // Every dependent named too: all go.
    const all = h.g.deleteTasks(['a', 'b', 'c'], false, T0);
    expect(all.deleted).toBe(3);
    expect(h.names()).toEqual([]);
    h.checkRestore();
  });

  it('with descendants removes the downstream cone and nothing else', () => {
    const h = new Harness();
    // root -> mid1 -> leaf, root -> mid2 -> leaf; side -> mid2; other alone; up -> root.
    h.g.create(
      [
        { name: 'up' },
        { name: 'root', deps: ['up'] },
        { name: 'side' },
        { name: 'mid1', deps: ['root'] },
        { name: 'mid2', deps: ['root', 'side'] },
        { name: 'leaf', deps: ['mid1', 'mid2'] },
        { name: 'other' },
      ],
      T0,
    );
    expect(h.drain().sort()).toEqual(['leaf', 'mid1', 'mid2', 'other', 'root', 'side', 'up']);
    h.flush();
    const r = h.g.deleteTasks(['root'], true, T0);
    expect(r.deleted).toBe(4);
    expect(r.results).toEqual([{ name: 'root', outcome: 'ACCEPTED', message: 'with its descendants' }]);
    expect(h.names()).toEqual(['up', 'side', 'other']);
    expect(h.g.lookup('up', T0).dependents).toEqual([]);
    expect(h.g.lookup('side', T0).dependents).toEqual([]);
    h.flush();
    expect([...h.stored.keys()].sort()).toEqual(['other', 'side', 'up']);
    h.checkRestore();
  });

  it('takes a running task away: its heartbeat and completion are NOT_FOUND, and steals go on', () => {
    const h = new Harness();
    h.g.create([{ name: 'a' }, { name: 'b' }], T0);
    expect(h.g.steal('w', 1, [], T0).tasks.map((t) => t.name)).toEqual(['a']);
    expect(h.g.deleteTasks(['a'], false, T0).deleted).toBe(1);
    expect(h.g.heartbeat('w', ['a'], T0)).toEqual([{ name: 'a', outcome: 'NOT_FOUND', message: 'no task named "a"' }]);
    expect(h.g.complete('w', [{ name: 'a', result: bytes('late') }], T0)[0]).toMatchObject({ name: 'a', outcome: 'NOT_FOUND' });
    expect(h.g.status(T0)).toMatchObject({ total: 1, counts: { running: 0, ready: 1 } });
    expect(h.g.steal('w', 5, [], T0).tasks.map((t) => t.name)).toEqual(['b']);
    h.checkRestore();
  });

  it('frees the name: a task created again under it is new, and one waiting on it waits again', () => {
    const h = new Harness();
    h.g.create([{ name: 'a' }], T0);
    h.drain();
    h.g.deleteTasks(['a'], false, T0);
    expect(codeOf(() => h.g.lookup('a', T0))).toBe('UNKNOWN_TASK');
    // Created again before the store heard of the deletion: written anew, not forgotten.
    h.g.create([{ name: 'a', payload: bytes('new') }, { name: 'later', deps: ['a'] }], T0);
    expect(h.state('a')).toBe('ready');
    expect(h.state('later')).toBe('waiting');
    const restored = h.checkRestore();
    expect(restored.lookup('a', T0).task.attempts).toBe(0);
  });

  it('counts names against max_batch', () => {
    const g = new Graph({ maxBatch: 2 });
    g.create([{ name: 'a' }], T0);
    expect(codeOf(() => g.deleteTasks(['a', 'b', 'c'], false, T0))).toBe('TOO_LARGE');
    expect(g.status(T0).total).toBe(1);
  });
});
