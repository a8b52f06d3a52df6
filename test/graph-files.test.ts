/** The graph core's params, files and barriers, step by step (pure: no hub, no disk). */
import { describe, expect, it } from 'vitest';
import { DagworkError } from '../proto/src/errors.js';
import { Graph } from '../hub/src/graph/graph.js';
import type { FileRef, ListQuery } from '../proto/src/types.js';

const T0 = 1_700_000_000_000;
const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const file = (name: string, digit: string, size = 10): FileRef => ({ name, sha256: digit.repeat(64), size, executable: false });

function stateOf(graph: Graph, name: string): string {
  return graph.lookup(name, T0).task.state;
}

function errorOf(fn: () => unknown): DagworkError {
  try {
    fn();
  } catch (err) {
    if (err instanceof DagworkError) return err;
    throw err;
  }
  throw new Error('no error');
}

const q = (over: Partial<ListQuery> = {}): ListQuery => ({ states: [], pool: '', prefix: '', limit: 0, after: 0, withParams: false, withResults: false, ...over });

/** A graph whose file store holds the files of `held` (hash digit -> size). */
function graphHolding(held: Record<string, number>): Graph {
  return new Graph({}, (sha256, size) => held[sha256[0] as string] === size);
}

describe('barriers', () => {
  it('are never handed out, and are done as soon as every dependency is done, releasing their dependents', () => {
    const g = new Graph();
    g.create([{ name: 'a' }, { name: 'b' }, { name: 'all', deps: ['a', 'b'], barrier: true }, { name: 'next', deps: ['all'] }], T0);
    expect(g.steal('w', 10, [], T0).tasks.map((t) => t.name)).toEqual(['a', 'b']);
    g.complete('w', [{ name: 'a' }], T0);
    expect(stateOf(g, 'all')).toBe('waiting');
    g.complete('w', [{ name: 'b' }], T0 + 1);
    const all = g.lookup('all', T0).task;
    expect(all.state).toBe('done');
    expect(all.log.at(-1)).toMatchObject({ state: 'done', at: T0 + 1, note: 'barrier: every dependency is done' });
    expect(g.steal('w', 10, [], T0 + 1).tasks.map((t) => t.name)).toEqual(['next']);
  });

  it('is done at creation when its dependencies are done already, or it has none', () => {
    const g = new Graph();
    g.create([{ name: 'a' }], T0);
    g.steal('w', 1, [], T0);
    g.complete('w', [{ name: 'a' }], T0);
    g.create([{ name: 'empty', barrier: true }, { name: 'after-a', deps: ['a'], barrier: true }, { name: 'then', deps: ['after-a', 'empty'] }], T0);
    expect([stateOf(g, 'empty'), stateOf(g, 'after-a'), stateOf(g, 'then')]).toEqual(['done', 'done', 'ready']);
    // A task created earlier that waited for the barrier's name is released too.
    const h = new Graph();
    h.create([{ name: 'waits', deps: ['gate'] }], T0);
    h.create([{ name: 'gate', barrier: true }], T0);
    expect(stateOf(h, 'waits')).toBe('ready');
  });

  it('cascade through a long chain of barriers without recursion', () => {
    const g = new Graph();
    const n = 50_000;
    g.create([{ name: 'root' }, ...Array.from({ length: n }, (_, i) => ({ name: `b${i}`, deps: [i === 0 ? 'root' : `b${i - 1}`], barrier: true })), { name: 'end', deps: [`b${n - 1}`] }], T0);
    g.steal('w', 1, [], T0);
    g.complete('w', [{ name: 'root' }], T0);
    expect(g.status(T0).counts).toMatchObject({ done: n + 1, ready: 1 });
    expect(g.steal('w', 1, [], T0).tasks.map((t) => t.name)).toEqual(['end']);
  });

  it('are blocked by a failed dependency, cancelled and retried like any task', () => {
    const g = new Graph();
    g.create([{ name: 'a', maxAttempts: 1 }, { name: 'gate', deps: ['a'], barrier: true }, { name: 'after', deps: ['gate'] }], T0);
    g.steal('w', 1, [], T0);
    g.fail('w', 'a', 'boom', true, T0);
    expect([stateOf(g, 'gate'), stateOf(g, 'after')]).toEqual(['blocked', 'blocked']);
    g.cancel(['gate'], 'not wanted', T0);
    expect(stateOf(g, 'gate')).toBe('cancelled');
    g.retry(['a'], T0);
    g.steal('w', 1, [], T0);
    g.complete('w', [{ name: 'a' }], T0);
    expect(stateOf(g, 'gate')).toBe('cancelled'); // a cancel stands until the barrier is retried
    expect(g.retry(['gate'], T0).retried).toBe(1);
    expect([stateOf(g, 'gate'), stateOf(g, 'after')]).toEqual(['done', 'ready']);
  });

  it('do not keep a pool open: a barrier waiting on nothing that can still run leaves it finished', () => {
    const g = new Graph();
    g.create([{ name: 'a', maxAttempts: 1 }, { name: 'gate', deps: ['a', 'never-made'], barrier: true }], T0);
    g.steal('w', 1, [], T0);
    g.complete('w', [{ name: 'a' }], T0);
    expect(stateOf(g, 'gate')).toBe('waiting');
    expect(g.steal('w', 1, [], T0)).toMatchObject({ tasks: [], finished: true });
  });

  it('are refused with a payload, inputs or outputs', () => {
    expect(errorOf(() => new Graph().create([{ name: 'b', barrier: true, payload: bytes('x') }], T0)).code).toBe('INVALID_ARGUMENT');
    expect(errorOf(() => new Graph().create([{ name: 'b', barrier: true, outputs: ['o'] }], T0)).code).toBe('INVALID_ARGUMENT');
  });
});

describe('input files', () => {
  it('refuses the whole create when an input is not held, naming task and file', () => {
    const g = graphHolding({ a: 10 });
    const err = errorOf(() => g.create([{ name: 'ok', inputs: [file('x', 'a')] }, { name: 'bad', inputs: [file('in/y', 'b')] }], T0));
    expect(err.code).toBe('UNKNOWN_FILE');
    expect(err.task).toBe('bad');
    expect(err.message).toMatch(/task "bad" names the input "in\/y" \(sha256 b{64}, 10 bytes\)/);
    expect(g.size).toBe(0);
    // Held under another size is not held.
    expect(errorOf(() => g.create([{ name: 'ok', inputs: [file('x', 'a', 11)] }], T0)).code).toBe('UNKNOWN_FILE');
    expect(g.create([{ name: 'ok', inputs: [file('x', 'a')] }], T0).created).toBe(1);
  });

  it('hands a task out with its params, inputs, outputs and param files', () => {
    const g = graphHolding({ a: 10 });
    const spec = { name: 't', payload: bytes('run'), params: [{ name: 'n', value: '3' }], inputs: [file('prog', 'a')], outputs: ['out'], paramFiles: [{ name: 'n.txt', param: 'n' }] };
    g.create([spec], T0);
    expect(g.steal('w', 1, [], T0).tasks[0]).toMatchObject({ params: spec.params, inputs: spec.inputs, outputs: spec.outputs, paramFiles: spec.paramFiles });
  });
});

describe('output files', () => {
  function running(held: Record<string, number>): Graph {
    const g = graphHolding(held);
    g.create([{ name: 't', outputs: ['out.csv', 'log'] }, { name: 'next', deps: ['t'] }], T0);
    g.steal('w', 1, [], T0);
    return g;
  }

  it('refuses a completion that leaves out a declared output, names another, or names a file not held; records nothing', () => {
    const g = running({ a: 10, b: 10 });
    const outcome = (outputs: FileRef[]) => g.complete('w', [{ name: 't', outputs }], T0)[0];
    expect(outcome([])).toMatchObject({ outcome: 'MISSING_FILES', message: 'the completion leaves out the declared output "out.csv"' });
    expect(outcome([file('out.csv', 'a'), file('log', 'b'), file('x', 'a')])?.message).toMatch(/"x", which is not one of the task's declared outputs/);
    expect(outcome([file('out.csv', 'a'), file('out.csv', 'a'), file('log', 'b')])?.message).toMatch(/names the output "out.csv" twice/);
    expect(outcome([file('out.csv', 'a'), file('log', 'c')])?.message).toMatch(/output "log" \(sha256 c{64}, 10 bytes\) is not held by the hub/);
    expect(stateOf(g, 't')).toBe('running');
    expect(g.lookup('t', T0).task.outputs).toEqual([]);
  });

  it('keeps the outputs of an accepted completion, in the declared order, and names them for gc', () => {
    const g = running({ a: 10, b: 10 });
    expect(g.complete('w', [{ name: 't', outputs: [file('log', 'b'), { ...file('out.csv', 'a'), executable: true }] }], T0)[0]?.outcome).toBe('ACCEPTED');
    const outputs = g.lookup('t', T0).task.outputs;
    expect(outputs).toEqual([{ ...file('out.csv', 'a'), executable: true }, file('log', 'b')]);
    expect(stateOf(g, 'next')).toBe('ready');
    const restored = Graph.restore(g.takeDirty(), T0);
    expect(restored.lookup('t', T0).task.outputs).toEqual(outputs);
    expect([...restored.referencedFiles()].sort()).toEqual(['a'.repeat(64), 'b'.repeat(64)]);
  });

  it('accepts a completion without outputs from a task that declares none, whatever the file store holds', () => {
    const g = graphHolding({});
    g.create([{ name: 'plain' }], T0);
    g.steal('w', 1, [], T0);
    expect(g.complete('w', [{ name: 'plain' }], T0)[0]?.outcome).toBe('ACCEPTED');
  });

  it('names the inputs of every task for gc, done or not', () => {
    const g = graphHolding({ a: 10, b: 10 });
    g.create([{ name: 'x', inputs: [file('i', 'a')] }, { name: 'y', deps: ['x'], inputs: [file('j', 'b')] }], T0);
    expect([...g.referencedFiles()].sort()).toEqual(['a'.repeat(64), 'b'.repeat(64)]);
  });
});

describe('list', () => {
  it('says when a task was created and when its latest attempt started', () => {
    const g = new Graph({ backoffBaseMs: 10 });
    g.create([{ name: 't' }, { name: 'idle' }], T0);
    g.steal('w', 1, [], T0 + 100);
    g.fail('w', 't', 'boom', false, T0 + 200);
    g.steal('w', 1, [], T0 + 300);
    const [t, idle] = g.list(q(), T0 + 300).tasks;
    expect(t).toMatchObject({ createdAt: T0, startedAt: T0 + 300, changedAt: T0 + 300 });
    expect(idle).toMatchObject({ createdAt: T0, startedAt: 0 });
  });

  it('says which tasks are barriers', () => {
    const g = new Graph();
    g.create([{ name: 'a' }, { name: 'all', deps: ['a'], barrier: true }], T0);
    expect(g.list(q(), T0).tasks.map((t) => [t.name, t.barrier])).toEqual([
      ['a', false],
      ['all', true],
    ]);
  });

  it('shows params only when asked, and results and outputs of done tasks only when asked', () => {
    const g = graphHolding({ a: 10 });
    g.create([{ name: 'd', params: [{ name: 'p', value: 'v' }], outputs: ['o'] }, { name: 'r', params: [{ name: 'p', value: 'w' }] }], T0);
    g.steal('w', 2, [], T0);
    g.complete('w', [{ name: 'd', result: bytes('R'), outputs: [file('o', 'a')] }], T0);
    const plain = g.list(q(), T0).tasks;
    expect(plain.map((t) => [t.params, t.result.length, t.outputs])).toEqual([
      [[], 0, []],
      [[], 0, []],
    ]);
    expect(plain[0]?.resultBytes).toBe(1);
    const full = g.list(q({ withParams: true, withResults: true }), T0).tasks;
    expect(full.map((t) => t.params)).toEqual([[{ name: 'p', value: 'v' }], [{ name: 'p', value: 'w' }]]);
    expect(new TextDecoder().decode(full[0]?.result)).toBe('R');
    expect(full[0]?.outputs).toEqual([file('o', 'a')]);
    expect(full[1]).toMatchObject({ state: 'running', outputs: [] });
    expect(full[1]?.result.length).toBe(0);
  });

  it('ends a page with results once they pass 16 MiB, holding one task at least', () => {
    const g = new Graph({ maxResultBytes: 10 << 20 });
    g.create(Array.from({ length: 5 }, (_, i) => ({ name: `t${i}` })), T0);
    g.steal('w', 5, [], T0);
    const big = new Uint8Array(9 << 20);
    g.complete('w', Array.from({ length: 5 }, (_, i) => ({ name: `t${i}`, result: big })), T0);
    const first = g.list(q({ withResults: true }), T0);
    expect(first.tasks.map((t) => t.name)).toEqual(['t0', 't1']); // 18 MiB: past 16 after the second
    const second = g.list(q({ withResults: true, after: first.next }), T0);
    expect(second.tasks.map((t) => t.name)).toEqual(['t2', 't3']);
    expect(g.list(q(), T0).tasks).toHaveLength(5); // without results, no such bound
  });
});

describe('a steal of tasks with big params', () => {
  it('counts their params in the bytes one steal hands out (one task always goes)', () => {
    const g = new Graph({ maxStealBytes: 1_000 });
    g.create(
      Array.from({ length: 5 }, (_, i) => ({ name: `p${i}`, params: [{ name: 'blob', value: 'x'.repeat(600) }] })),
      T0,
    );
    expect(g.steal('w', 10, [], T0).tasks.map((t) => t.name)).toEqual(['p0']);
    expect(g.steal('w', 10, [], T0).tasks.map((t) => t.name)).toEqual(['p1']);
    const small = new Graph({ maxStealBytes: 1_000 });
    small.create(Array.from({ length: 5 }, (_, i) => ({ name: `s${i}`, params: [{ name: 'v', value: 'x' }] })), T0);
    expect(small.steal('w', 10, [], T0).tasks).toHaveLength(5);
  });
});
