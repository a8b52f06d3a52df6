/**
 * The graph's failure policy (after_ended) and changing the graph after the fact (rerun, replace),
 * walked step by step. After each change, a graph restored from the records written so far must
 * hold the same tasks in the same states (what a hub restart would see).
 */
import { describe, expect, it } from 'vitest';
import { Graph } from '../hub/src/graph/graph.js';
import type { TaskRecord, TaskSpecInput } from '../proto/src/types.js';
import { codeOf } from './support/errors.js';

const T0 = 1_700_000_000_000;
const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

/** A graph that keeps what a store would hold, and checks a restore of it against itself. */
class Harness {
  readonly g = new Graph();
  private readonly stored = new Map<string, TaskRecord>();

  flush(): void {
    for (const r of this.g.takeDirty()) this.stored.set(r.spec.name, structuredClone({ ...r, spec: r.spec, log: r.log }) as TaskRecord);
  }

  state(name: string): string {
    return this.g.lookup(name, T0).task.state;
  }

  /** Creates, then runs (steals and completes) every task it can, in steal order, returning that order. */
  drain(fail: ReadonlySet<string> = new Set()): string[] {
    const ran: string[] = [];
    for (;;) {
      const stolen = this.g.steal('w', 1, [], T0).tasks;
      const task = stolen[0];
      if (task === undefined) break;
      ran.push(task.name);
      if (fail.has(task.name)) this.g.fail('w', task.name, 'boom', true, T0);
      else this.g.complete('w', [{ name: task.name, result: bytes(`result of ${task.name}`) }], T0);
    }
    this.flush();
    return ran;
  }

  /** Every task's state in the live graph equals its state in a graph restored from the store. */
  checkRestore(): void {
    this.flush();
    const restored = Graph.restore([...this.stored.values()].map((r) => structuredClone(r)), T0);
    const live = this.g.list({ states: [], pool: '', prefix: '', limit: 1000, after: 0, withParams: false, withResults: false }, T0).tasks;
    const again = restored.list({ states: [], pool: '', prefix: '', limit: 1000, after: 0, withParams: false, withResults: false }, T0).tasks;
    expect(again.map((t) => [t.name, t.state, t.attempts, t.resultBytes])).toEqual(live.map((t) => [t.name, t.state, t.attempts, t.resultBytes]));
    // The restored graph hands out the same tasks.
    expect(restored.status(T0).counts).toEqual(this.g.status(T0).counts);
  }
}


describe('after_ended', () => {
  it('runs a task after a failed dependency, and lookup names the failed one', () => {
    const h = new Harness();
    h.g.create([{ name: 'a' }, { name: 'b' }, { name: 'report', deps: ['a', 'b'], afterEnded: true }, { name: 'plain', deps: ['a'] }], T0);
    const ran = h.drain(new Set(['a']));
    expect(ran).toEqual(['a', 'b', 'report']);
    expect(h.state('report')).toBe('done');
    expect(h.state('plain')).toBe('blocked');
    expect(h.g.lookup('report', T0).failedDeps).toEqual(['a']);
    const listed = h.g.list({ states: [], pool: '', prefix: 'report', limit: 10, after: 0, withParams: false, withResults: false }, T0).tasks;
    expect(listed[0]?.failedDeps).toBe(1);
    h.checkRestore();
  });

  it('waits while a dependency is still running or waiting', () => {
    const h = new Harness();
    h.g.create([{ name: 'a' }, { name: 'b', deps: ['a'] }, { name: 'r', deps: ['a', 'b'], afterEnded: true }], T0);
    expect(h.g.steal('w', 1, [], T0).tasks.map((t) => t.name)).toEqual(['a']);
    expect(h.state('r')).toBe('waiting');
    h.g.complete('w', [{ name: 'a' }], T0);
    expect(h.state('r')).toBe('waiting'); // b is ready, not ended
    h.drain();
    expect(h.state('r')).toBe('done');
    h.checkRestore();
  });

  it('counts a blocked dependency as ended, and a missing one as not', () => {
    const h = new Harness();
    h.g.create([{ name: 'a' }, { name: 'b', deps: ['a'] }, { name: 'r', deps: ['b'], afterEnded: true }, { name: 'm', deps: ['nope'], afterEnded: true }], T0);
    h.drain(new Set(['a']));
    expect(h.state('b')).toBe('blocked');
    expect(h.state('r')).toBe('done');
    expect(h.g.lookup('r', T0).failedDeps).toEqual(['b']);
    expect(h.state('m')).toBe('waiting');
    h.checkRestore();
  });

  it('runs after a cancelled dependency, and waits again when the dependency is retried before it started', () => {
    const h = new Harness();
    h.g.create([{ name: 'a' }, { name: 'r', deps: ['a'], afterEnded: true }], T0);
    h.g.cancel(['a'], 'no', T0);
    expect(h.state('r')).toBe('ready');
    h.g.retry(['a'], T0);
    expect(h.state('r')).toBe('waiting');
    expect(h.drain()).toEqual(['a', 'r']);
    h.checkRestore();
  });

  it('waits again when its lease expires after a failed dependency was retried (found by the property test)', () => {
    const h = new Harness();
    h.g.create([{ name: 'a', maxAttempts: 1, leaseMs: 100 }, { name: 'c', deps: ['a'], afterEnded: true, maxAttempts: 2, leaseMs: 100 }], T0);
    h.g.steal('w', 1, [], T0);
    h.g.advance(T0 + 100); // a's lease expires: failed, so c is ready
    expect(h.g.steal('w', 1, [], T0 + 100).tasks.map((t) => t.name)).toEqual(['c']);
    h.g.retry(undefined, T0 + 100);
    h.g.advance(T0 + 200); // c's lease expires while a is back at work
    expect(h.g.lookup('c', T0 + 200).task.state).toBe('waiting');
  });

  it('is part of the definition: a create that differs only in it is a conflict', () => {
    const g = new Graph();
    g.create([{ name: 'r', deps: ['a'] }], T0);
    expect(codeOf(() => g.create([{ name: 'r', deps: ['a'], afterEnded: true }], T0))).toBe('CONFLICT');
  });

  it('cannot go with a barrier', () => {
    expect(codeOf(() => new Graph().create([{ name: 'b', barrier: true, afterEnded: true }], T0))).toBe('INVALID_ARGUMENT');
  });
});

/** a -> b -> c, a -> d; x alone. */
function chain(): Harness {
  const h = new Harness();
  h.g.create([{ name: 'a' }, { name: 'b', deps: ['a'] }, { name: 'c', deps: ['b'] }, { name: 'd', deps: ['a'] }, { name: 'x' }], T0);
  h.drain();
  return h;
}

describe('rerun', () => {
  it('puts a done task back to work with fresh attempts, noting its old result; its done dependents stay done', () => {
    const h = chain();
    const r = h.g.rerun({ names: ['b'], descendants: false, prefix: '', pool: '' }, T0);
    expect(r).toEqual({ rerun: 1, results: [{ name: 'b', outcome: 'ACCEPTED', message: '' }] });
    const b = h.g.lookup('b', T0).task;
    expect(b.state).toBe('ready');
    expect(b.attempts).toBe(0);
    expect(b.result.length).toBe(0);
    expect(b.log.some((c) => c.note === 'rerun; previous result 11 bytes')).toBe(true);
    expect(h.state('c')).toBe('done');
    expect(h.drain()).toEqual(['b']);
    h.checkRestore();
  });

  it('with descendants reruns the downstream cone in dependency order, and leaves the rest alone', () => {
    const h = chain();
    const r = h.g.rerun({ names: ['b'], descendants: true, prefix: '', pool: '' }, T0);
    expect(r.rerun).toBe(2);
    expect(h.state('c')).toBe('waiting');
    expect(h.state('a')).toBe('done');
    expect(h.state('d')).toBe('done');
    h.checkRestore();
    expect(h.drain()).toEqual(['b', 'c']);
    h.checkRestore();
  });

  it('answers NOT_FOUND and NOT_DONE per name, and reruns the rest', () => {
    const h = new Harness();
    h.g.create([{ name: 'a' }, { name: 'b', deps: ['a'] }, { name: 'f' }], T0);
    h.drain(new Set(['f']));
    h.g.create([{ name: 'w', deps: ['zzz'] }], T0);
    const r = h.g.rerun({ names: ['nope', 'w', 'f', 'a'], descendants: false, prefix: '', pool: '' }, T0);
    expect(r.results.map((x) => x.outcome)).toEqual(['NOT_FOUND', 'NOT_DONE', 'NOT_DONE', 'ACCEPTED']);
    expect(r.rerun).toBe(1);
    expect(h.state('f')).toBe('failed');
    h.checkRestore();
  });

  it('makes a ready dependent wait again, so dependency order holds', () => {
    const h = new Harness();
    h.g.create([{ name: 'a' }, { name: 'b' }, { name: 'c', deps: ['a', 'b'] }], T0);
    expect(h.g.steal('w', 1, [], T0).tasks[0]?.name).toBe('a');
    h.g.complete('w', [{ name: 'a' }], T0);
    h.g.steal('w', 1, [], T0);
    h.g.complete('w', [{ name: 'b' }], T0);
    expect(h.state('c')).toBe('ready');
    h.g.rerun({ names: ['a'], descendants: false, prefix: '', pool: '' }, T0);
    expect(h.state('c')).toBe('waiting');
    expect(h.drain()).toEqual(['a', 'c']);
    h.checkRestore();
  });

  it('takes the lease of a running descendant: its worker learns it at heartbeat and its completion is refused', () => {
    const h = new Harness();
    h.g.create([{ name: 'a' }, { name: 'b', deps: ['a'] }], T0);
    h.g.steal('w', 1, [], T0);
    h.g.complete('w', [{ name: 'a' }], T0);
    expect(h.g.steal('v', 1, [], T0).tasks[0]?.name).toBe('b');
    h.g.rerun({ names: ['a'], descendants: true, prefix: '', pool: '' }, T0);
    expect(h.state('b')).toBe('waiting');
    expect(h.g.heartbeat('v', ['b'], T0)[0]?.outcome).toBe('NOT_LEASED');
    expect(h.g.complete('v', [{ name: 'b' }], T0)[0]?.outcome).toBe('NOT_LEASED');
    expect(h.g.status(T0).counts.running).toBe(0);
    expect(h.drain()).toEqual(['a', 'b']);
    h.checkRestore();
  });

  it('with descendants brings back failed and blocked tasks downstream, afresh', () => {
    const h = new Harness();
    h.g.create([{ name: 'a' }, { name: 'b', deps: ['a'] }, { name: 'c', deps: ['b'] }], T0);
    h.drain(new Set(['b']));
    expect(h.state('c')).toBe('blocked');
    h.g.rerun({ names: ['a'], descendants: true, prefix: '', pool: '' }, T0);
    expect([h.state('a'), h.state('b'), h.state('c')]).toEqual(['ready', 'waiting', 'waiting']);
    expect(h.drain()).toEqual(['a', 'b', 'c']);
    h.checkRestore();
  });

  it('chooses done tasks by prefix and pool', () => {
    const h = new Harness();
    h.g.create([{ name: 'p1', pool: 'gpu' }, { name: 'p2' }, { name: 'q1', pool: 'gpu' }], T0);
    h.drain();
    expect(h.g.rerun({ names: [], descendants: false, prefix: 'p', pool: 'gpu' }, T0).rerun).toBe(1);
    expect([h.state('p1'), h.state('p2'), h.state('q1')]).toEqual(['ready', 'done', 'done']);
    expect(h.g.rerun({ names: [], descendants: false, prefix: '', pool: 'gpu' }, T0).rerun).toBe(1);
    expect(h.state('q1')).toBe('ready');
    h.checkRestore();
  });

  it('reruns a barrier with its sweep: it is done again only once its lines are', () => {
    const h = new Harness();
    h.g.create([{ name: 'l1' }, { name: 'l2' }, { name: 'sweep', deps: ['l1', 'l2'], barrier: true }, { name: 'after', deps: ['sweep'] }], T0);
    h.drain();
    h.g.rerun({ names: ['l1'], descendants: true, prefix: '', pool: '' }, T0);
    expect([h.state('sweep'), h.state('after')]).toEqual(['waiting', 'waiting']);
    expect(h.drain()).toEqual(['l1', 'after']);
    expect(h.state('sweep')).toBe('done');
    h.checkRestore();
  });
});

describe('replace', () => {
  it('gives a waiting task a new definition and new dependencies', () => {
    const h = new Harness();
    h.g.create([{ name: 'a' }, { name: 'b', deps: ['a'], payload: bytes('old') }], T0);
    const r = h.g.replace([{ name: 'b', payload: bytes('new') }], false, false, T0);
    expect(r).toMatchObject({ replaced: 1, unchanged: 0, created: 0 });
    expect(h.state('b')).toBe('ready');
    expect(new TextDecoder().decode(h.g.lookup('b', T0).task.spec.payload)).toBe('new');
    expect(h.g.lookup('a', T0).dependents).toEqual([]);
    const stolen = h.g.steal('w', 5, [], T0).tasks.map((t) => [t.name, new TextDecoder().decode(t.payload)]);
    expect(stolen).toEqual([['a', ''], ['b', 'new']]);
    h.checkRestore();
  });

  it('refuses a done task without rerun, and reruns it and its descendants with rerun', () => {
    const h = chain();
    expect(h.g.replace([{ name: 'b', deps: ['a'], payload: bytes('fixed') }], false, false, T0).results[0]?.outcome).toBe('ALREADY_DONE');
    expect(h.state('b')).toBe('done');
    const r = h.g.replace([{ name: 'b', deps: ['a'], payload: bytes('fixed') }], true, false, T0);
    expect(r.results[0]?.outcome).toBe('ACCEPTED');
    expect([h.state('b'), h.state('c'), h.state('d')]).toEqual(['ready', 'waiting', 'done']);
    h.checkRestore();
    expect(h.drain()).toEqual(['b', 'c']);
    h.checkRestore();
  });

  it('refuses a running task without rerun (TASK_RUNNING), and takes its lease with rerun', () => {
    const h = new Harness();
    h.g.create([{ name: 'a', payload: bytes('1') }], T0);
    h.g.steal('w', 1, [], T0);
    expect(h.g.replace([{ name: 'a', payload: bytes('2') }], false, false, T0).results[0]?.outcome).toBe('TASK_RUNNING');
    h.g.replace([{ name: 'a', payload: bytes('2') }], true, false, T0);
    expect(h.state('a')).toBe('ready');
    expect(h.g.heartbeat('w', ['a'], T0)[0]?.outcome).toBe('NOT_LEASED');
    expect(h.g.status(T0).counts).toMatchObject({ ready: 1, running: 0 });
    h.checkRestore();
  });

  it('brings back a failed task and unblocks its descendants', () => {
    const h = new Harness();
    h.g.create([{ name: 'a', payload: bytes('bad') }, { name: 'b', deps: ['a'] }], T0);
    h.drain(new Set(['a']));
    expect(h.state('b')).toBe('blocked');
    h.g.replace([{ name: 'a', payload: bytes('good') }], false, false, T0);
    expect([h.state('a'), h.state('b')]).toEqual(['ready', 'waiting']);
    expect(h.g.lookup('a', T0).task.attempts).toBe(0);
    expect(h.drain()).toEqual(['a', 'b']);
    h.checkRestore();
  });

  it('refuses new dependencies that would close a cycle, and changes nothing', () => {
    const h = chain();
    h.g.create([{ name: 'e', deps: ['c'] }], T0);
    h.flush();
    expect(codeOf(() => h.g.replace([{ name: 'e', deps: ['c'] }, { name: 'a', deps: ['e'] }], true, false, T0))).toBe('CYCLE');
    expect(h.state('a')).toBe('done');
    expect(h.g.lookup('a', T0).task.spec.deps).toEqual([]);
    expect(h.g.takeDirty()).toEqual([]);
  });

  it('answers NOT_FOUND for an unknown task, or creates it with createMissing; identical ones are unchanged', () => {
    const h = new Harness();
    h.g.create([{ name: 'a' }], T0);
    expect(h.g.replace([{ name: 'a' }, { name: 'z' }], false, false, T0)).toMatchObject({ replaced: 0, unchanged: 1, created: 0 });
    expect(h.g.replace([{ name: 'z' }], false, false, T0).results[0]?.outcome).toBe('NOT_FOUND');
    expect(h.g.replace([{ name: 'a' }, { name: 'z', deps: ['a'] }], false, true, T0)).toMatchObject({ replaced: 0, unchanged: 1, created: 1 });
    expect(h.state('z')).toBe('waiting');
    h.checkRestore();
  });

  it('moves a task to another pool and priority', () => {
    const h = new Harness();
    h.g.create([{ name: 'a' }, { name: 'b' }], T0);
    h.g.replace([{ name: 'b', pool: 'gpu', priority: 5 }], false, false, T0);
    expect(h.g.steal('w', 5, ['default'], T0).tasks.map((t) => t.name)).toEqual(['a']);
    expect(h.g.steal('w', 5, ['gpu'], T0).tasks.map((t) => t.name)).toEqual(['b']);
    expect(h.g.status(T0).pools.map((p) => [p.pool, p.counts.running])).toEqual([['default', 1], ['gpu', 1]]);
    h.checkRestore();
  });

  it('depends on a name that does not exist yet, and waits for it', () => {
    const h = new Harness();
    h.g.create([{ name: 'a' }], T0);
    h.g.replace([{ name: 'a', deps: ['later'] }], false, false, T0);
    expect(h.state('a')).toBe('waiting');
    expect(h.g.status(T0).waitingOnMissing).toBe(1);
    h.g.replace([{ name: 'a' }], false, false, T0);
    expect(h.g.status(T0).waitingOnMissing).toBe(0);
    expect(h.state('a')).toBe('ready');
    h.checkRestore();
  });
});

it('input type guard: a TaskSpecInput takes afterEnded', () => {
  const spec: TaskSpecInput = { name: 'x', afterEnded: true };
  expect(spec.afterEnded).toBe(true);
});
