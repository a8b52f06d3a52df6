import { describe, expect, it, vi } from 'vitest';
import { Heap } from '../hub/src/graph/heap.js';
import { Graph } from '../hub/src/graph/graph.js';
import type { TaskSpecInput } from '../proto/src/types.js';
import { codeOf } from './support/errors.js';

const T0 = 1_700_000_000_000;
const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const text = (b: Uint8Array): string => new TextDecoder().decode(b);

function stateOf(graph: Graph, name: string): string {
  return graph.lookup(name, T0).task.state;
}

function names(graph: Graph, worker: string, n: number, now = T0, pools: string[] = []): string[] {
  return graph.steal(worker, n, pools, now).tasks.map((t) => t.name);
}


describe('create', () => {
  it('makes tasks without deps ready and the rest waiting', () => {
    const g = new Graph();
    expect(g.create([{ name: 'a' }, { name: 'b', deps: ['a'] }], T0)).toMatchObject({ created: 2, unchanged: 0 });
    expect(stateOf(g, 'a')).toBe('ready');
    expect(stateOf(g, 'b')).toBe('waiting');
    expect(g.status(T0).counts).toMatchObject({ ready: 1, waiting: 1 });
  });

  it('treats an identical re-creation as a no-op and a different one as a conflict', () => {
    const g = new Graph();
    const batch: TaskSpecInput[] = [{ name: 'a', payload: bytes('echo a') }, { name: 'b', deps: ['a'] }];
    g.create(batch, T0);
    expect(g.create(batch, T0)).toMatchObject({ created: 0, unchanged: 2 });
    expect(codeOf(() => g.create([{ name: 'c' }, { name: 'a', payload: bytes('echo other') }], T0))).toBe('CONFLICT');
    expect(() => g.lookup('c', T0)).toThrow(/no task named "c"/); // all or nothing
    expect(codeOf(() => g.create([{ name: 'x', priority: 1 }, { name: 'x', priority: 2 }], T0))).toBe('CONFLICT');
  });

  it('refuses bad names and oversized payloads, naming the task, and changes nothing', () => {
    const g = new Graph({ maxPayloadBytes: 4, maxNameBytes: 8 });
    expect(codeOf(() => g.create([{ name: '' }], T0))).toBe('INVALID_NAME');
    expect(codeOf(() => g.create([{ name: 'ok' }, { name: 'far-too-long' }], T0))).toBe('INVALID_NAME');
    expect(codeOf(() => g.create([{ name: 'tab\there' }], T0))).toBe('INVALID_NAME');
    expect(() => g.create([{ name: 'p', payload: bytes('12345') }], T0)).toThrow(/task "p" has a payload of 5 bytes/);
    expect(codeOf(() => g.create([{ name: 'z', maxAttempts: -1 }], T0))).toBe('INVALID_ARGUMENT');
    expect(g.size).toBe(0);
  });

  it('refuses cycles, within a batch and through forward references, and changes nothing', () => {
    const g = new Graph();
    expect(codeOf(() => g.create([{ name: 'self', deps: ['self'] }], T0))).toBe('CYCLE');
    expect(() => g.create([{ name: 'a', deps: ['c'] }, { name: 'b', deps: ['a'] }, { name: 'c', deps: ['b'] }], T0)).toThrow(
      /cycle: .*a.*->.*->.*->/,
    );
    // x waits for y, which does not exist yet; y depending on x would close a cycle.
    g.create([{ name: 'x', deps: ['y'] }], T0);
    expect(codeOf(() => g.create([{ name: 'y', deps: ['x'] }], T0))).toBe('CYCLE');
    expect(codeOf(() => g.create([{ name: 'y', deps: ['w'] }, { name: 'w', deps: ['x'] }], T0))).toBe('CYCLE');
    expect(g.size).toBe(1);
    g.create([{ name: 'y' }], T0);
    expect(stateOf(g, 'y')).toBe('ready');
  });

  it('lets deps name tasks created later: the task waits until they exist and are done', () => {
    const g = new Graph();
    g.create([{ name: 'late', deps: ['early'] }], T0);
    expect(stateOf(g, 'late')).toBe('waiting');
    // Finished: nothing can run unless someone creates 'early'.
    expect(g.steal('w', 5, [], T0)).toEqual({ tasks: [], finished: true, retryAfterMs: 0 });
    g.create([{ name: 'early' }], T0);
    expect(names(g, 'w', 5)).toEqual(['early']);
    g.complete('w', [{ name: 'early' }], T0);
    expect(names(g, 'w', 5)).toEqual(['late']);
  });
});

describe('steal and complete', () => {
  it('hands out the highest priority first, FIFO within a priority', () => {
    const g = new Graph();
    g.create([{ name: 'low1' }, { name: 'high1', priority: 5 }, { name: 'low2' }, { name: 'high2', priority: 5 }, { name: 'neg', priority: -1 }], T0);
    expect(names(g, 'w', 10)).toEqual(['high1', 'high2', 'low1', 'low2', 'neg']);
  });

  it('runs a diamond in dependency order and reports when the work is finished', () => {
    const g = new Graph();
    g.create([{ name: 'top' }, { name: 'left', deps: ['top'] }, { name: 'right', deps: ['top'] }, { name: 'bottom', deps: ['left', 'right'] }], T0);
    expect(names(g, 'w', 10)).toEqual(['top']);
    expect(g.steal('w', 10, [], T0)).toEqual({ tasks: [], finished: false, retryAfterMs: 0 });
    g.complete('w', [{ name: 'top' }], T0);
    expect(names(g, 'w', 10)).toEqual(['left', 'right']);
    g.complete('w', [{ name: 'left' }], T0);
    expect(names(g, 'w', 10)).toEqual([]);
    g.complete('w', [{ name: 'right', result: bytes('r') }], T0);
    expect(names(g, 'w', 10)).toEqual(['bottom']);
    g.complete('w', [{ name: 'bottom' }], T0);
    expect(g.steal('w', 10, [], T0)).toEqual({ tasks: [], finished: true, retryAfterMs: 0 });
    expect(text(g.lookup('right', T0).task.result)).toBe('r');
    expect(g.lookup('top', T0).dependents.sort()).toEqual(['left', 'right']);
  });

  it('leases with a deadline and an attempt number, and keeps a state log', () => {
    const g = new Graph();
    g.create([{ name: 'a', leaseMs: 5000, payload: bytes('echo') }], T0);
    const [leased] = g.steal('w1', 1, [], T0 + 10).tasks;
    expect(leased).toMatchObject({ name: 'a', attempt: 1, leaseDeadline: T0 + 5010, leaseMs: 5000, pool: 'default' });
    expect(text(leased?.payload ?? new Uint8Array())).toBe('echo');
    g.complete('w1', [{ name: 'a' }], T0 + 20);
    const record = g.lookup('a', T0 + 20).task;
    expect(record.log.map((c) => [c.state, c.at, c.worker])).toEqual([
      ['ready', T0, ''],
      ['running', T0 + 10, 'w1'],
      ['done', T0 + 20, 'w1'],
    ]);
  });

  it('keeps pools apart', () => {
    const g = new Graph();
    g.create([{ name: 'gpu1', pool: 'gpu' }, { name: 'cpu1' }], T0);
    expect(names(g, 'w', 10, T0, ['gpu'])).toEqual(['gpu1']);
    expect(g.steal('w', 10, ['gpu'], T0)).toEqual({ tasks: [], finished: false, retryAfterMs: 0 }); // gpu1 is running
    g.complete('w', [{ name: 'gpu1' }], T0);
    expect(g.steal('w', 10, ['gpu'], T0).finished).toBe(true);
    expect(g.steal('w', 10, ['nosuchpool'], T0).finished).toBe(true);
    expect(names(g, 'w', 10)).toEqual(['cpu1']);
    expect(g.status(T0).pools.map((p) => [p.pool, p.counts.done, p.counts.running])).toEqual([
      ['default', 0, 1],
      ['gpu', 1, 0],
    ]);
  });

  it('answers each completion it cannot accept with the reason', () => {
    const g = new Graph();
    g.create([{ name: 'a' }, { name: 'b' }, { name: 'c', deps: ['a'] }], T0);
    g.steal('w1', 1, [], T0); // a
    g.steal('w2', 1, [], T0); // b
    const results = g.complete('w1', [{ name: 'a' }, { name: 'a' }, { name: 'b' }, { name: 'nope' }, { name: 'c' }], T0);
    expect(results.map((r) => r.outcome)).toEqual(['ACCEPTED', 'ALREADY_DONE', 'LEASED_TO_OTHER', 'NOT_FOUND', 'NOT_LEASED']);
    expect(stateOf(g, 'b')).toBe('running');
  });

  it('refuses an oversized result alone and keeps the other completions of the batch', () => {
    const g = new Graph({ maxResultBytes: 4 });
    g.create([{ name: 'a' }, { name: 'b' }], T0);
    g.steal('w', 2, [], T0);
    const results = g.complete('w', [{ name: 'a', result: bytes('12345') }, { name: 'b', result: bytes('ok') }], T0);
    expect(results.map((r) => r.outcome)).toEqual(['RESULT_TOO_LARGE', 'ACCEPTED']);
    expect(stateOf(g, 'a')).toBe('running');
    expect(stateOf(g, 'b')).toBe('done');
  });

  it('creates a task with 150,000 dependents waiting for its name, and runs them', () => {
    const g = new Graph({ maxBatch: 200_000 });
    g.create(Array.from({ length: 150_000 }, (_, i) => ({ name: `leaf${i}`, deps: ['root'] })), T0);
    expect(g.create([{ name: 'root' }], T0)).toMatchObject({ created: 1, unchanged: 0 });
    expect(names(g, 'w', 1)).toEqual(['root']);
    g.complete('w', [{ name: 'root' }], T0);
    expect(g.status(T0).counts.ready).toBe(150_000);
  });

  it('refuses a priority outside int32, changing nothing', () => {
    const g = new Graph();
    expect(codeOf(() => g.create([{ name: 'p', priority: 2 ** 31 }], T0))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => g.create([{ name: 'p', priority: -(2 ** 31) - 1 }], T0))).toBe('INVALID_ARGUMENT');
    expect(g.create([{ name: 'p', priority: 2 ** 31 - 1 }, { name: 'q', priority: -(2 ** 31) }], T0).created).toBe(2);
  });

  it('caps a steal by payload bytes, always handing out at least one task', () => {
    const g = new Graph({ maxStealBytes: 10 });
    g.create([{ name: 'a', payload: bytes('123456') }, { name: 'b', payload: bytes('123456') }, { name: 'c', payload: bytes('12345678901') }], T0);
    expect(names(g, 'w', 10)).toEqual(['a']);
    expect(names(g, 'w', 10)).toEqual(['b']);
    expect(names(g, 'w', 10)).toEqual(['c']);
  });

  it('accepts a late completion of a task nobody else holds, but not of one re-leased elsewhere', () => {
    const g = new Graph();
    g.create([{ name: 'a', leaseMs: 100 }, { name: 'b', leaseMs: 100 }], T0);
    g.steal('slow', 2, [], T0);
    // Both leases expire; b is taken by another worker, a is not.
    expect(names(g, 'fast', 1, T0 + 200)).toEqual(['a']);
    const results = g.complete('slow', [{ name: 'a' }, { name: 'b' }], T0 + 250);
    expect(results.map((r) => r.outcome)).toEqual(['LEASED_TO_OTHER', 'ACCEPTED']);
    expect(stateOf(g, 'b')).toBe('done');
    expect(g.steal('x', 5, [], T0 + 250).tasks).toEqual([]); // b is no longer handed out
  });

  it('steals with n = 0 as one task, and refuses more than maxSteal', () => {
    const g = new Graph({ maxSteal: 3 });
    g.create(Array.from({ length: 10 }, (_, i) => ({ name: `t${i}` })), T0);
    expect(names(g, 'w', 0)).toHaveLength(1);
    expect(names(g, 'w', 3)).toHaveLength(3);
    expect(() => g.steal('w', 2 ** 31, [], T0)).toThrow('steal asks for 2147483648 tasks; the limit is 3 per request');
    expect(codeOf(() => g.steal('', 1, [], T0))).toBe('INVALID_ARGUMENT');
  });

  it('refuses batches and graphs over their limits, changing nothing', () => {
    const g = new Graph({ maxBatch: 3, maxTasks: 4 });
    expect(() => g.create([{ name: 'a' }, { name: 'b' }, { name: 'c' }, { name: 'd' }], T0)).toThrow('create names 4 tasks; the limit is 3 per request');
    g.create([{ name: 'a' }, { name: 'b' }, { name: 'c' }], T0);
    expect(() => g.create([{ name: 'd' }, { name: 'e' }], T0)).toThrow('the graph would hold 5 tasks; the limit is 4');
    expect(g.create([{ name: 'a' }, { name: 'd' }], T0)).toMatchObject({ created: 1, unchanged: 1 });
    expect(codeOf(() => g.complete('w', [{ name: 'a' }, { name: 'b' }, { name: 'c' }, { name: 'd' }], T0))).toBe('TOO_LARGE');
  });
});

describe('failure, backoff and retry', () => {
  it('retries after an exponential backoff, then fails and blocks every descendant', () => {
    const g = new Graph({ backoffBaseMs: 1000 });
    g.create([{ name: 'a', maxAttempts: 3 }, { name: 'b', deps: ['a'] }, { name: 'c', deps: ['b'] }, { name: 'other' }], T0);
    expect(names(g, 'w', 1)).toEqual(['a']);
    expect(g.fail('w', 'a', 'boom 1', false, T0)).toMatchObject({ state: 'ready', notBefore: T0 + 1000 });
    expect(names(g, 'w', 1, T0 + 999)).toEqual(['other']); // a is still backing off
    expect(g.nextWakeAt()).toBe(T0 + 1000);
    expect(names(g, 'w', 1, T0 + 1000)).toEqual(['a']);
    expect(g.fail('w', 'a', 'boom 2', false, T0 + 1000)).toMatchObject({ state: 'ready', notBefore: T0 + 3000 });
    expect(names(g, 'w', 1, T0 + 3000)).toEqual(['a']);
    expect(g.fail('w', 'a', 'boom 3', false, T0 + 3000).state).toBe('failed');
    expect(stateOf(g, 'b')).toBe('blocked');
    expect(stateOf(g, 'c')).toBe('blocked');
    const record = g.lookup('a', T0).task;
    expect(record.attempts).toBe(3);
    expect(record.lastError).toBe('boom 3');
    g.complete('w', [{ name: 'other' }], T0 + 3000);
    // Nothing can run any more: the work is finished (with failures).
    expect(g.steal('w', 1, [], T0 + 3000).finished).toBe(true);
  });

  it('fails a permanent error at once', () => {
    const g = new Graph();
    g.create([{ name: 'a', maxAttempts: 5 }], T0);
    g.steal('w', 1, [], T0);
    expect(g.fail('w', 'a', 'bad input', true, T0).state).toBe('failed');
    expect(g.lookup('a', T0).task.attempts).toBe(1);
  });

  it('refuses a failure report from a worker that does not hold the lease', () => {
    const g = new Graph();
    g.create([{ name: 'a' }], T0);
    g.steal('w1', 1, [], T0);
    expect(g.fail('w2', 'a', 'x', false, T0).result.outcome).toBe('LEASED_TO_OTHER');
    expect(g.fail('w2', 'zz', 'x', false, T0).result.outcome).toBe('NOT_FOUND');
    expect(stateOf(g, 'a')).toBe('running');
  });

  it('retry puts failed tasks back with fresh attempts and unblocks descendants', () => {
    const g = new Graph();
    g.create(
      [
        { name: 'a', maxAttempts: 1 },
        { name: 'b', maxAttempts: 1 },
        { name: 'ab', deps: ['a', 'b'] },
        { name: 'after', deps: ['ab'] },
      ],
      T0,
    );
    g.steal('w', 2, [], T0);
    g.fail('w', 'a', 'x', false, T0);
    g.fail('w', 'b', 'y', false, T0);
    expect(stateOf(g, 'after')).toBe('blocked');
    expect(g.retry(['a', 'after', 'nope'], T0).results.map((r) => r.outcome)).toEqual(['ACCEPTED', 'NOT_FAILED', 'NOT_FOUND']);
    expect(stateOf(g, 'a')).toBe('ready');
    expect(stateOf(g, 'ab')).toBe('blocked'); // b is still failed
    expect(g.retry(undefined, T0).retried).toBe(1);
    expect(stateOf(g, 'ab')).toBe('waiting');
    expect(stateOf(g, 'after')).toBe('waiting');
    expect(names(g, 'w', 5)).toEqual(['a', 'b']);
    expect(g.lookup('a', T0).task.attempts).toBe(1);
  });

  it('cancel makes tasks cancelled at once, revoking a lease and blocking descendants', () => {
    const g = new Graph();
    g.create([{ name: 'run' }, { name: 'wait', deps: ['run'] }, { name: 'ready' }, { name: 'done' }], T0);
    g.steal('w', 1, [], T0); // run
    g.steal('x', 1, [], T0); // ready (FIFO after run)
    g.complete('x', [{ name: 'ready' }], T0);
    const { cancelled, results } = g.cancel(['run', 'ready', 'done', 'nope'], 'wrong input', T0);
    expect(results.map((r) => r.outcome)).toEqual(['ACCEPTED', 'ALREADY_DONE', 'ACCEPTED', 'NOT_FOUND']);
    expect(cancelled).toBe(2);
    expect(g.lookup('run', T0).task).toMatchObject({ state: 'cancelled', lastError: 'cancelled: wrong input' });
    expect(stateOf(g, 'wait')).toBe('blocked');
    expect(g.status(T0).counts).toMatchObject({ cancelled: 2, blocked: 1 });
  });

  it('tells the worker of a cancelled task so, and refuses its late completion', () => {
    const g = new Graph();
    g.create([{ name: 'run' }, { name: 'child', deps: ['run'] }], T0);
    g.steal('w', 1, [], T0);
    g.cancel(['run'], 'stop', T0);
    expect(g.heartbeat('w', ['run'], T0).map((r) => r.outcome)).toEqual(['TASK_CANCELLED']);
    expect(g.complete('w', [{ name: 'run' }], T0)[0]?.outcome).toBe('TASK_CANCELLED');
    expect(stateOf(g, 'run')).toBe('cancelled');
    expect(stateOf(g, 'child')).toBe('blocked');
  });

  it('cancels a failed or blocked task too, and answers a second cancel TASK_CANCELLED', () => {
    const g = new Graph();
    g.create([{ name: 'f', maxAttempts: 1 }, { name: 'b', deps: ['f'] }], T0);
    g.steal('w', 1, [], T0);
    g.fail('w', 'f', 'boom', false, T0);
    expect(g.cancel(['f', 'b'], 'enough', T0).cancelled).toBe(2);
    expect(stateOf(g, 'f')).toBe('cancelled');
    expect(stateOf(g, 'b')).toBe('cancelled');
    expect(g.cancel(['f'], 'again', T0).results[0]?.outcome).toBe('TASK_CANCELLED');
  });

  it('retry of every failed task leaves cancelled ones alone; retry by name brings them back', () => {
    const g = new Graph();
    g.create([{ name: 'f', maxAttempts: 1 }, { name: 'c' }, { name: 'after-c', deps: ['c'] }], T0);
    g.steal('w', 1, [], T0); // f
    g.fail('w', 'f', 'boom', false, T0);
    g.cancel(['c'], 'not needed', T0);
    expect(g.retry(undefined, T0).retried).toBe(1);
    expect(stateOf(g, 'f')).toBe('ready');
    expect(stateOf(g, 'c')).toBe('cancelled');
    expect(g.retry(['c'], T0).retried).toBe(1);
    expect(stateOf(g, 'c')).toBe('ready');
    expect(stateOf(g, 'after-c')).toBe('waiting');
  });

  it('refuses a completion after the worker failed the task permanently', () => {
    const g = new Graph();
    g.create([{ name: 'p' }, { name: 'child', deps: ['p'] }], T0);
    g.steal('w', 1, [], T0);
    g.fail('w', 'p', 'bad input', true, T0);
    expect(g.complete('w', [{ name: 'p' }], T0)[0]?.outcome).toBe('TASK_FAILED');
    expect(stateOf(g, 'p')).toBe('failed');
    expect(stateOf(g, 'child')).toBe('blocked');
  });

  it('refuses a completion after release or worker exit, whatever came before', () => {
    const g = new Graph();
    g.create([{ name: 'r', leaseMs: 100 }, { name: 'x' }], T0);
    // r: leased, expired, re-leased to w, released: w gave it back, so its completion is refused.
    g.steal('w', 1, [], T0);
    g.advance(T0 + 100);
    g.steal('w', 1, [], T0 + 100);
    g.release('w', ['r'], T0 + 100);
    expect(g.complete('w', [{ name: 'r' }], T0 + 100)[0]?.outcome).toBe('NOT_LEASED');
    g.steal('v', 2, [], T0 + 100); // r and x
    g.workerExit('v', T0 + 100);
    expect(g.complete('v', [{ name: 'r' }, { name: 'x' }], T0 + 100).map((r) => r.outcome)).toEqual(['NOT_LEASED', 'NOT_LEASED']);
  });

  it('answers LEASE_EXPIRED to the heartbeat of an expired lease nobody took, and still accepts its completion', () => {
    const g = new Graph();
    g.create([{ name: 'a', leaseMs: 100 }], T0);
    g.steal('w', 1, [], T0);
    expect(g.heartbeat('w', ['a'], T0 + 150).map((r) => r.outcome)).toEqual(['LEASE_EXPIRED']);
    expect(g.complete('w', [{ name: 'a' }], T0 + 160)[0]?.outcome).toBe('ACCEPTED');
  });

  it('retry by name undoes a cancel', () => {
    const g = new Graph();
    g.create([{ name: 'done' }], T0);
    g.cancel(['done'], 'oops', T0);
    g.retry(['done'], T0);
    expect(stateOf(g, 'done')).toBe('ready');
  });

  it('refuses a cycle through a cancelled task that waits for a name', () => {
    const g = new Graph();
    g.create([{ name: 'X', deps: ['N'] }], T0);
    g.cancel(['X'], 'stop', T0);
    expect(codeOf(() => g.create([{ name: 'N', deps: ['X'] }], T0))).toBe('CYCLE');
    expect(g.size).toBe(1);
  });

  it('says in the log of a task created blocked which dependency blocks it', () => {
    const g = new Graph();
    g.create([{ name: 'f', maxAttempts: 1 }], T0);
    g.steal('w', 1, [], T0);
    g.fail('w', 'f', 'x', false, T0);
    g.create([{ name: 'child', deps: ['f'] }], T0);
    g.create([{ name: 'grandchild', deps: ['child'] }], T0);
    expect(g.lookup('grandchild', T0).task.log.map((c) => c.note)).toEqual(['created; dependency "child" is blocked']);
  });

  it('blocks a task created under a failed ancestor, and tasks that waited for its name', () => {
    const g = new Graph();
    g.create([{ name: 'f', maxAttempts: 1 }, { name: 'waits', deps: ['child'] }], T0);
    g.steal('w', 1, [], T0);
    g.fail('w', 'f', 'x', false, T0);
    g.create([{ name: 'child', deps: ['f'] }], T0);
    expect(stateOf(g, 'child')).toBe('blocked');
    expect(stateOf(g, 'waits')).toBe('blocked');
    g.retry(['f'], T0);
    expect(stateOf(g, 'waits')).toBe('waiting');
  });

  it('a late completion of a failed task unblocks its descendants', () => {
    const g = new Graph();
    g.create([{ name: 'a', maxAttempts: 1, leaseMs: 10 }, { name: 'b', deps: ['a'] }], T0);
    g.steal('w', 1, [], T0);
    g.advance(T0 + 10); // the lease expired: failed, but its holder may still complete it
    expect(stateOf(g, 'a')).toBe('failed');
    expect(stateOf(g, 'b')).toBe('blocked');
    expect(g.complete('w', [{ name: 'a' }], T0 + 20)[0]?.outcome).toBe('ACCEPTED');
    expect(stateOf(g, 'b')).toBe('ready');
  });
});

describe('leases', () => {
  it('expires a lease: the task is ready again with an attempt used, and a dead worker loses nothing', () => {
    const g = new Graph();
    g.create([{ name: 'a', leaseMs: 1000, maxAttempts: 2 }], T0);
    g.steal('dead', 1, [], T0);
    expect(g.nextWakeAt()).toBe(T0 + 1000);
    expect(names(g, 'live', 1, T0 + 999)).toEqual([]);
    const [again] = g.steal('live', 1, [], T0 + 1000).tasks;
    expect(again).toMatchObject({ name: 'a', attempt: 2 });
    expect(g.lookup('a', T0).task.lastError).toMatch(/lease expired \(worker dead, attempt 1\)/);
    g.advance(T0 + 2000);
    expect(stateOf(g, 'a')).toBe('failed');
    expect(g.status(T0 + 2000).workers.find((w) => w.worker === 'dead')?.failed).toBe(1);
  });

  it('heartbeat extends a lease and lists the leases the worker lost', () => {
    const g = new Graph();
    g.create([{ name: 'a', leaseMs: 1000 }, { name: 'b', leaseMs: 1000 }], T0);
    g.steal('w', 2, [], T0);
    expect(g.heartbeat('w', ['a'], T0 + 900)).toEqual([]);
    g.advance(T0 + 1500); // b expires, a does not
    expect(stateOf(g, 'a')).toBe('running');
    expect(stateOf(g, 'b')).toBe('ready');
    g.steal('other', 1, [], T0 + 1500);
    const lost = g.heartbeat('w', ['a', 'b', 'ghost'], T0 + 1600);
    expect(lost.map((r) => [r.name, r.outcome])).toEqual([
      ['b', 'LEASED_TO_OTHER'],
      ['ghost', 'NOT_FOUND'],
    ]);
    expect(g.lookup('a', T0).task.leaseDeadline).toBe(T0 + 2600);
  });

  it('release and worker exit give tasks back without using an attempt', () => {
    const g = new Graph();
    g.create([{ name: 'a' }, { name: 'b' }, { name: 'c' }], T0);
    g.steal('w', 3, [], T0);
    expect(g.release('w', ['a', 'zz'], T0).map((r) => r.outcome)).toEqual(['ACCEPTED', 'NOT_FOUND']);
    expect(g.release('other', ['b'], T0)[0]?.outcome).toBe('LEASED_TO_OTHER');
    expect(g.workerExit('w', T0)).toBe(2);
    expect(g.status(T0).counts).toMatchObject({ ready: 3, running: 0 });
    const again = g.steal('w2', 3, [], T0).tasks;
    expect(again.map((t) => t.attempt)).toEqual([1, 1, 1]);
  });
});

describe('bounds', () => {
  it('keeps one lease entry per task however often it is renewed', () => {
    const g = new Graph({ maxLeaseMs: 7 * 24 * 3600 * 1000 });
    g.create([{ name: 'a', leaseMs: 7 * 24 * 3600 * 1000 }, { name: 'b' }], T0);
    g.steal('w', 2, [], T0);
    for (let i = 1; i <= 1000; i++) g.heartbeat('w', ['a', 'a', 'b'], T0 + i);
    expect(g.timedEntries).toBe(2);
    expect(g.lookup('a', T0 + 1000).task.leaseDeadline).toBe(T0 + 1000 + 7 * 24 * 3600 * 1000);
  });

  it('still expires a renewed lease at its new deadline', () => {
    const g = new Graph();
    g.create([{ name: 'a', leaseMs: 100 }], T0);
    g.steal('w', 1, [], T0);
    g.heartbeat('w', ['a'], T0 + 50);
    g.advance(T0 + 100);
    expect(stateOf(g, 'a')).toBe('running');
    expect(g.nextWakeAt()).toBe(T0 + 150);
    g.advance(T0 + 150);
    expect(g.lookup('a', T0 + 150).task.state).toBe('ready');
  });

  it('answers a name repeated in one heartbeat once', () => {
    const g = new Graph();
    expect(g.heartbeat('w', ['x', 'x', 'x'], T0)).toHaveLength(1);
  });

  it('writes nothing for a heartbeat', () => {
    const g = new Graph();
    g.create([{ name: 'a' }], T0);
    g.steal('w', 1, [], T0);
    g.takeDirty();
    g.heartbeat('w', ['a'], T0 + 10);
    expect(g.takeDirty()).toEqual([]);
  });

  it('forgets workers idle for an hour that hold no lease', () => {
    const g = new Graph();
    g.create([{ name: 'a', leaseMs: 2 * 3600_000 }], T0);
    g.steal('busy', 1, [], T0);
    g.heartbeat('idle', [], T0);
    expect(g.status(T0 + 3600_000 - 1).workersTotal).toBe(2);
    const later = g.status(T0 + 3600_001);
    expect(later.workers.map((w) => w.worker)).toEqual(['busy']);
    expect(later.workersTotal).toBe(1);
  });
});

describe('missing dependencies', () => {
  it('names the dependencies of a create that exist neither in the batch nor in the graph', () => {
    const g = new Graph();
    g.create([{ name: 'a' }], T0);
    const result = g.create([{ name: 'b', deps: ['a', 'c', 'typo'] }, { name: 'c' }], T0);
    expect(result).toEqual({ created: 2, unchanged: 0, missingDeps: ['typo'], missingDepsTotal: 1 });
  });

  it('shows them in lookup and counts them in status, until they are created', () => {
    const g = new Graph();
    g.create([{ name: 'x', deps: ['typo', 'later'] }, { name: 'y', deps: ['typo'] }], T0);
    expect(g.lookup('x', T0).missingDeps).toEqual(['typo', 'later']);
    expect(g.status(T0)).toMatchObject({ waitingOnMissing: 2, missingNames: 2, missingExamples: ['typo', 'later'] });
    g.create([{ name: 'typo' }], T0);
    expect(g.status(T0)).toMatchObject({ waitingOnMissing: 1, missingNames: 1, missingExamples: ['later'] });
    expect(g.lookup('y', T0).missingDeps).toEqual([]);
  });

  it('is finished when the only tasks left wait on names that do not exist', () => {
    const g = new Graph();
    g.create([{ name: 'a' }, { name: 'stuck', deps: ['typo'] }], T0);
    expect(g.steal('w', 5, [], T0).finished).toBe(false);
    expect(g.isFinished([])).toBe(false); // a running task keeps every pool with waiting tasks open
    g.complete('w', [{ name: 'a' }], T0);
    expect(g.steal('w', 5, [], T0)).toEqual({ tasks: [], finished: true, retryAfterMs: 0 });
  });

  it('keeps a pool open while a task it waits for runs in another pool', () => {
    const g = new Graph();
    g.create([{ name: 'cpu', pool: 'cpu' }, { name: 'gpu', pool: 'gpu', deps: ['cpu'] }], T0);
    g.steal('w', 1, ['cpu'], T0);
    expect(g.steal('v', 1, ['gpu'], T0).finished).toBe(false);
    g.complete('w', [{ name: 'cpu' }], T0);
    expect(names(g, 'v', 1, T0, ['gpu'])).toEqual(['gpu']);
  });
});

describe('many pools', () => {
  const manyPools = (): Graph => {
    const g = new Graph();
    g.create(Array.from({ length: 20_000 }, (_, i) => ({ name: `t${i}`, pool: `p${i}` })), T0);
    return g;
  };

  it('steals from every pool without looking at every pool for each task', () => {
    const g = manyPools();
    const peek = vi.spyOn(Heap.prototype, 'peek');
    const { tasks } = g.steal('w', 1000, [], T0);
    expect(tasks.map((t) => t.name)).toEqual(Array.from({ length: 1000 }, (_, i) => `t${i}`));
    expect(peek.mock.calls.length).toBeLessThan(20_000); // once per pool per task would be 20 million
    peek.mockRestore();
  });

  it('steals from named pools best task first, looking at each pool about once', () => {
    const g = manyPools();
    const pools = Array.from({ length: 1000 }, (_, i) => `p${999 - i}`);
    const peek = vi.spyOn(Heap.prototype, 'peek');
    const { tasks } = g.steal('w', 1000, pools, T0);
    expect(tasks.map((t) => t.name)).toEqual(Array.from({ length: 1000 }, (_, i) => `t${i}`));
    expect(peek.mock.calls.length).toBeLessThan(100_000); // once per pool per task would be a million
    peek.mockRestore();
  });

  it('lists at most 1,000 pools in status and counts them all', () => {
    const status = manyPools().status(T0);
    expect(status.pools).toHaveLength(1000);
    expect(status.poolsTotal).toBe(20_000);
  });
});

describe('workers', () => {
  it('marks a worker that exited, until it is seen again', () => {
    const g = new Graph();
    g.heartbeat('w', [], T0);
    g.workerExit('w', T0 + 1);
    expect(g.status(T0 + 1).workers).toMatchObject([{ worker: 'w', exited: true }]);
    g.heartbeat('w', [], T0 + 2);
    expect(g.status(T0 + 2).workers).toMatchObject([{ worker: 'w', exited: false }]);
  });

  it('measures the completion rate over the time since the first completion when under a minute', () => {
    const g = new Graph();
    g.create(Array.from({ length: 10 }, (_, i) => ({ name: `t${i}` })), T0);
    g.steal('w', 10, [], T0);
    g.complete('w', Array.from({ length: 10 }, (_, i) => ({ name: `t${i}` })), T0);
    expect(g.status(T0 + 1000).donePerSecond).toBe(5); // 10 over 2 whole seconds, not over 60
  });
});

describe('list', () => {
  const q = (over: Partial<{ states: ('ready' | 'failed' | 'done' | 'running' | 'waiting')[]; pool: string; prefix: string; limit: number; after: number }> = {}) => ({
    states: [],
    pool: '',
    prefix: '',
    limit: 0,
    after: 0,
    withParams: false,
    withResults: false,
    ...over,
  });

  it('pages through every task in creation order', () => {
    const g = new Graph();
    g.create(Array.from({ length: 250 }, (_, i) => ({ name: `t${i}` })), T0);
    const seen: string[] = [];
    let after = 0;
    for (let page = 0; page < 5; page++) {
      const { tasks, next } = g.list(q({ after }), T0);
      seen.push(...tasks.map((t) => t.name));
      if (next === 0) break;
      after = next;
    }
    expect(seen).toEqual(Array.from({ length: 250 }, (_, i) => `t${i}`));
  });

  it('filters by state, pool and name prefix, and shows why a task failed', () => {
    const g = new Graph();
    g.create([{ name: 'run-a', maxAttempts: 1 }, { name: 'run-b' }, { name: 'gpu-a', pool: 'gpu' }, { name: 'other' }], T0);
    g.steal('w', 1, ['default'], T0);
    g.fail('w', 'run-a', 'exit 3: no input', false, T0 + 5);
    expect(g.list(q({ states: ['failed'] }), T0 + 5).tasks).toEqual([
      {
        name: 'run-a',
        state: 'failed',
        pool: 'default',
        attempts: 1,
        worker: 'w',
        lastError: 'exit 3: no input',
        seq: 1,
        resultBytes: 0,
        changedAt: T0 + 5,
        createdAt: T0,
        startedAt: T0,
        params: [],
        result: new Uint8Array(0),
        outputs: [],
        barrier: false,
        failedDeps: 0,
      },
    ]);
    expect(g.list(q({ pool: 'gpu' }), T0).tasks.map((t) => t.name)).toEqual(['gpu-a']);
    expect(g.list(q({ prefix: 'run-' }), T0).tasks.map((t) => t.name)).toEqual(['run-a', 'run-b']);
  });

  it('looks at a bounded number of tasks a page, and says where to go on', () => {
    const g = new Graph({ maxBatch: 200_000 });
    g.create(Array.from({ length: 150_000 }, (_, i) => ({ name: `t${i}` })), T0);
    g.create([{ name: 'needle' }], T0);
    const first = g.list(q({ prefix: 'needle' }), T0);
    expect(first.tasks).toEqual([]);
    expect(first.next).toBe(100_000);
    const second = g.list(q({ prefix: 'needle', after: first.next }), T0);
    expect(second.tasks.map((t) => t.name)).toEqual(['needle']);
    expect(second.next).toBe(0);
  });

  it('lists in creation order after a restore too', () => {
    const g = new Graph();
    g.create([{ name: 'z' }, { name: 'a' }, { name: 'm' }], T0);
    const h = Graph.restore(g.takeDirty().sort((x, y) => x.spec.name.localeCompare(y.spec.name)), T0);
    expect(h.list(q(), T0).tasks.map((t) => t.name)).toEqual(['z', 'a', 'm']);
  });

  it('refuses a page of more than 1,000 tasks', () => {
    expect(codeOf(() => new Graph().list(q({ limit: 1001 }), T0))).toBe('TOO_LARGE');
  });
});

describe('restore', () => {
  it('rebuilds the graph, its queues and its leases from the records', () => {
    const g = new Graph();
    g.create([{ name: 'a', leaseMs: 1000 }, { name: 'b', priority: 2 }, { name: 'c', deps: ['a', 'b'] }, { name: 'd', deps: ['future'] }], T0);
    g.steal('w', 1, [], T0); // b (priority 2)
    g.complete('w', [{ name: 'b', result: bytes('B') }], T0);
    g.steal('w', 1, [], T0); // a
    const records = g.takeDirty();
    expect(records.map((r) => r.spec.name).sort()).toEqual(['a', 'b', 'c', 'd']);
    expect(g.takeDirty()).toEqual([]);

    const h = Graph.restore(records.map((r) => structuredClone({ ...r })), T0);
    expect(h.status(T0).counts).toEqual(g.status(T0).counts);
    expect(text(h.lookup('b', T0).task.result)).toBe('B');
    // The lease on a survives, renewed to its full length from the restart.
    expect(h.lookup('a', T0 + 500).task.leaseDeadline).toBe(T0 + 1000);
    expect(h.complete('w', [{ name: 'a' }], T0 + 10)[0]?.outcome).toBe('ACCEPTED');
    expect(names(h, 'w', 5, T0 + 10)).toEqual(['c']);
    h.create([{ name: 'future' }], T0);
    expect(stateOf(h, 'd')).toBe('waiting');
    expect(names(h, 'w', 5, T0 + 10)).toEqual(['future']);
  });
});
