/** The graph's observer (what the hub's metrics count): each transition told once, with its pool and times. */
import { describe, expect, it } from 'vitest';
import { Graph, NO_OBSERVER, type GraphObserver, type VerifyTicket } from '../hub/src/graph/graph.js';

const T0 = 1_700_000_000_000;
const ok = new TextEncoder().encode('ok');

/** An observer that writes down every call as a line: `leased alpha 100`. */
function recorder(): { observer: GraphObserver; calls: string[] } {
  const calls: string[] = [];
  const observer: GraphObserver = {
    created: (pool, n) => calls.push(`created ${pool} ${n}`),
    leased: (pool, waitedMs) => calls.push(`leased ${pool} ${waitedMs}`),
    completed: (pool, ranMs) => calls.push(`completed ${pool} ${ranMs}`),
    attemptFailed: (pool) => calls.push(`attemptFailed ${pool}`),
    failed: (pool) => calls.push(`failed ${pool}`),
    retried: (pool) => calls.push(`retried ${pool}`),
    leaseExpired: (pool) => calls.push(`leaseExpired ${pool}`),
  };
  return { observer, calls };
}

function observed(options: ConstructorParameters<typeof Graph>[0] = {}): { g: Graph; calls: string[] } {
  const g = new Graph({ backoffBaseMs: 1000, ...options });
  const { observer, calls } = recorder();
  g.observer = observer;
  return { g, calls };
}

/** The calls made since the last take. */
function take(calls: string[]): string[] {
  return calls.splice(0);
}

describe('graph observer', () => {
  it('is a no-op until one is set', () => {
    const g = new Graph();
    expect(g.observer).toBe(NO_OBSERVER);
    g.create([{ name: 'a' }], T0);
    expect(g.steal('w', 1, [], T0).tasks).toHaveLength(1);
  });

  it('sees creations (one call per run of a pool in the batch; an unchanged task is not created again)', () => {
    const { g, calls } = observed();
    g.create([{ name: 'a', pool: 'p' }, { name: 'b', pool: 'p' }, { name: 'c', pool: 'q' }, { name: 'd', pool: 'p' }], T0);
    expect(take(calls)).toEqual(['created p 2', 'created q 1', 'created p 1']);
    g.create([{ name: 'a', pool: 'p' }, { name: 'e' }], T0);
    expect(take(calls)).toEqual(['created default 1']);
  });

  it('sees a lease with the time since the task became ready, and a completion with the time since its lease', () => {
    const { g, calls } = observed();
    g.create([{ name: 'a', pool: 'p' }, { name: 'b', pool: 'p', deps: ['a'] }], T0);
    take(calls);
    g.steal('w', 1, [], T0 + 100);
    g.complete('w', [{ name: 'a', result: ok }], T0 + 350);
    // b became ready at the completion of a.
    g.steal('w', 1, [], T0 + 1350);
    expect(take(calls)).toEqual(['leased p 100', 'completed p 250', 'leased p 1000']);
  });

  it('sees failed attempts, a task that became failed, its retry, and a lease that expired', () => {
    const { g, calls } = observed();
    g.create([{ name: 'a', pool: 'p', maxAttempts: 2 }, { name: 'x', pool: 'q', leaseMs: 500, maxAttempts: 2 }], T0);
    take(calls);
    g.steal('w', 1, ['p'], T0);
    g.fail('w', 'a', 'boom', false, T0 + 10);
    // Ready again after the backoff (1 s): its wait counts from the failure, the backoff included.
    g.steal('w', 1, ['p'], T0 + 1010);
    g.fail('w', 'a', 'boom again', false, T0 + 1020);
    expect(take(calls)).toEqual(['leased p 0', 'attemptFailed p', 'leased p 1000', 'attemptFailed p', 'failed p']);
    g.retry(['a'], T0 + 2000);
    expect(take(calls)).toEqual(['retried p']);

    g.steal('w', 1, ['q'], T0 + 2000);
    g.advance(T0 + 2499);
    expect(take(calls)).toEqual(['leased q 2000']);
    g.advance(T0 + 2500);
    expect(take(calls)).toEqual(['leaseExpired q', 'attemptFailed q']);
    g.steal('w', 1, ['q'], T0 + 2600);
    g.advance(T0 + 3100);
    expect(take(calls)).toEqual(['leased q 100', 'leaseExpired q', 'attemptFailed q', 'failed q']);
    // A permanent failure uses up the attempts at once.
    g.retry(undefined, T0 + 4000);
    g.steal('w', 1, ['q'], T0 + 4000);
    g.fail('w', 'x', 'bad input', true, T0 + 4001);
    expect(take(calls)).toEqual(['retried q', 'leased q 0', 'attemptFailed q', 'failed q']);
  });

  it('sees a rerun as a retry of each task put back to work, its descendants too', () => {
    const { g, calls } = observed();
    g.create([{ name: 'a', pool: 'p' }, { name: 'b', pool: 'q', deps: ['a'] }, { name: 'c', pool: 'q', deps: ['b'] }], T0);
    for (const name of ['a', 'b', 'c']) {
      g.steal('w', 1, [], T0);
      g.complete('w', [{ name, result: ok }], T0);
    }
    take(calls);
    g.rerun({ names: ['b'], prefix: '', pool: '', descendants: true }, T0);
    expect(take(calls).sort()).toEqual(['retried q', 'retried q']);
  });

  it('sees nothing for a release, a worker exit or a cancel (no attempt failed)', () => {
    const { g, calls } = observed();
    g.create([{ name: 'a' }, { name: 'b' }, { name: 'c' }], T0);
    g.steal('w', 2, [], T0);
    take(calls);
    g.release('w', ['a'], T0);
    g.workerExit('w', T0);
    g.cancel(['c'], 'not needed', T0);
    expect(take(calls)).toEqual([]);
  });

  it('sees a verified completion as completed when the verdict passes, timed from the lease to the completion; a rejection as an attempt failed', () => {
    const { g, calls } = observed();
    g.poolSet({ pool: 'v', maxRunning: undefined, paused: undefined, resultVerifier: '/bin/true' }, T0);
    g.create([{ name: 'a', pool: 'v' }, { name: 'b', pool: 'v', maxAttempts: 1 }], T0);
    take(calls);
    g.steal('w', 1, [], T0 + 10);
    g.complete('w', [{ name: 'a', result: ok }], T0 + 110);
    expect(take(calls)).toEqual(['leased v 10']);
    g.verified(g.takeToVerify()[0] as VerifyTicket, true, '', T0 + 5000);
    expect(take(calls)).toEqual(['completed v 100']);
    g.steal('w', 1, [], T0 + 5000);
    g.complete('w', [{ name: 'b', result: ok }], T0 + 5001);
    g.verified(g.takeToVerify()[0] as VerifyTicket, false, 'wrong', T0 + 5002);
    expect(take(calls)).toEqual(['leased v 5000', 'attemptFailed v', 'failed v']);
  });
});
