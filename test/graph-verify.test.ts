/** Result and job verifiers in the pure graph: the VERIFYING state, verdicts, stale tickets, restarts. */
import { describe, expect, it } from 'vitest';
import { Graph, type VerifyTicket } from '../hub/src/graph/graph.js';
import type { PoolSettings, TaskRecord, TaskSpecInput } from '../proto/src/types.js';
import { codeOf } from './support/errors.js';

const T0 = 1_700_000_000_000;
const CHECK = '/bin/true';

function verified(pool = 'sims'): Graph {
  const g = new Graph({ backoffBaseMs: 1000 });
  g.poolSet({ pool, maxRunning: undefined, paused: undefined, resultVerifier: CHECK }, T0);
  return g;
}

function run(g: Graph, worker: string, name: string, result = 'ok'): void {
  const [task] = g.steal(worker, 1, [], T0).tasks;
  expect(task?.name).toBe(name);
  expect(g.complete(worker, [{ name, result: new TextEncoder().encode(result) }], T0)[0]?.outcome).toBe('ACCEPTED');
}

const state = (g: Graph, name: string): string => g.lookup(name, T0).task.state;

class FakeStore {
  records = new Map<string, TaskRecord>();
  pools = new Map<string, PoolSettings>();
  take(g: Graph): void {
    for (const r of g.takeDirty()) this.records.set(r.spec.name, structuredClone(r));
    for (const [pool, settings] of g.takeDirtyPools()) {
      if (settings === undefined) this.pools.delete(pool);
      else this.pools.set(pool, settings);
    }
  }
  restore(now = T0): Graph {
    return Graph.restore([...this.records.values()].map((r) => structuredClone(r)), now, { backoffBaseMs: 1000 }, undefined, [...this.pools]);
  }
}

describe('result verifier', () => {
  it('keeps a completed task VERIFYING, its dependents waiting, until the verdict; a pass makes it done', () => {
    const g = verified();
    g.create([{ name: 'a', pool: 'sims' }, { name: 'b', deps: ['a'] }], T0);
    run(g, 'w', 'a', 'answer');
    expect(state(g, 'a')).toBe('verifying');
    expect(state(g, 'b')).toBe('waiting');
    expect(g.status(T0).counts.verifying).toBe(1);
    const [ticket] = g.takeToVerify();
    expect(ticket?.name).toBe('a');
    const v = g.verification(ticket as VerifyTicket);
    expect(v).toMatchObject({ attempt: 1, worker: 'w', verifier: CHECK });
    expect(new TextDecoder().decode(v?.result)).toBe('answer');
    expect(g.takeToVerify()).toEqual([]); // handed out once
    expect(g.verified(ticket as VerifyTicket, true, '', T0 + 5)).toBe(true);
    expect(state(g, 'a')).toBe('done');
    expect(state(g, 'b')).toBe('ready');
    expect(g.status(T0).workers.find((w) => w.worker === 'w')?.done).toBe(1);
  });

  it('a rejection fails the attempt with the reason: retried after the backoff, failed once attempts are used up', () => {
    const g = verified();
    g.create([{ name: 'a', pool: 'sims', maxAttempts: 2 }, { name: 'b', deps: ['a'] }], T0);
    run(g, 'w', 'a');
    g.verified(g.takeToVerify()[0] as VerifyTicket, false, 'no convergence', T0);
    const after = g.lookup('a', T0).task;
    expect(after.state).toBe('ready');
    expect(after.lastError).toBe('result rejected: no convergence');
    expect(g.steal('w', 1, [], T0).tasks).toEqual([]); // backoff
    const [second] = g.steal('w', 1, [], T0 + 1000).tasks;
    expect(second?.attempt).toBe(2);
    g.complete('w', [{ name: 'a' }], T0 + 1000);
    g.verified(g.takeToVerify()[0] as VerifyTicket, false, 'still wrong', T0 + 1000);
    expect(state(g, 'a')).toBe('failed');
    expect(state(g, 'b')).toBe('blocked');
    expect(g.status(T0 + 1000).workers.find((w) => w.worker === 'w')?.failed).toBe(2);
  });

  it('drops a verdict for a verification no longer wanted: cancelled, rerun, replaced or deleted meanwhile', () => {
    for (const change of ['cancel', 'retry-after-cancel', 'replace', 'delete'] as const) {
      const g = verified();
      g.create([{ name: 'a', pool: 'sims', payload: new TextEncoder().encode('v1') }], T0);
      run(g, 'w', 'a');
      const [ticket] = g.takeToVerify();
      if (change === 'cancel') g.cancel(['a'], 'stop', T0);
      if (change === 'retry-after-cancel') {
        g.cancel(['a'], 'stop', T0);
        g.retry(['a'], T0);
        run(g, 'w', 'a'); // verifying again, under a new ticket
      }
      if (change === 'replace') g.replace([{ name: 'a', pool: 'sims', payload: new TextEncoder().encode('v2') }], true, false, T0);
      if (change === 'delete') g.deleteTasks(['a'], false, T0);
      expect(g.verification(ticket as VerifyTicket), change).toBeUndefined();
      expect(g.verified(ticket as VerifyTicket, true, '', T0), change).toBe(false);
      if (change === 'retry-after-cancel') expect(state(g, 'a')).toBe('verifying');
    }
  });

  it('refuses a second completion while verifying, and counts the task as still at work', () => {
    const g = verified();
    g.create([{ name: 'a', pool: 'sims' }, { name: 'z', deps: ['a'], pool: 'sims' }], T0);
    run(g, 'w', 'a');
    expect(g.complete('w', [{ name: 'a' }], T0)[0]?.outcome).toBe('ALREADY_DONE');
    expect(g.heartbeat('w', ['a'], T0)[0]?.outcome).toBe('NOT_LEASED');
    // Not finished: a rejection would make it ready again, and z waits on it.
    expect(g.steal('v', 1, ['sims'], T0).finished).toBe(false);
    expect(g.isFinished([])).toBe(false);
    expect(g.rerun({ names: ['a'], prefix: '', pool: '', descendants: false }, T0).results[0]?.outcome).toBe('NOT_DONE');
    expect(g.replace([{ name: 'a', pool: 'sims', priority: 3 }], false, false, T0).results[0]?.outcome).toBe('ALREADY_DONE');
  });

  it('keeps the output files of the completion while verifying, and once done', () => {
    const g = new Graph();
    g.poolSet({ pool: 'p', maxRunning: undefined, paused: undefined, resultVerifier: CHECK }, T0);
    g.create([{ name: 'a', pool: 'p', outputs: ['out.txt'] }], T0);
    g.steal('w', 1, [], T0);
    const file = { name: 'out.txt', sha256: 'a'.repeat(64), size: 3, executable: false };
    g.complete('w', [{ name: 'a', outputs: [file] }], T0);
    const [ticket] = g.takeToVerify();
    expect(g.verification(ticket as VerifyTicket)?.outputs).toEqual([file]);
    expect(g.referencedFiles().has(file.sha256)).toBe(true);
    g.verified(ticket as VerifyTicket, true, '', T0);
    expect(g.lookup('a', T0).task.outputs).toEqual([file]);
  });

  it('never verifies a barrier, nor tasks of pools without a verifier', () => {
    const g = verified();
    g.create([{ name: 'a' }, { name: 'all', deps: ['a'], pool: 'sims', barrier: true }], T0);
    run(g, 'w', 'a');
    expect(state(g, 'a')).toBe('done');
    expect(state(g, 'all')).toBe('done');
    expect(g.takeToVerify()).toEqual([]);
  });

  it('verifies again after a restart what was VERIFYING, and rebuilds the worker figures from the log', () => {
    const g = verified();
    const store = new FakeStore();
    g.create([{ name: 'a', pool: 'sims' }, { name: 'b', pool: 'sims' }, { name: 'c', deps: ['a'] }], T0);
    run(g, 'w', 'a');
    run(g, 'w', 'b');
    const tickets = g.takeToVerify();
    g.verified(tickets.find((t) => t.name === 'b') as VerifyTicket, true, '', T0);
    store.take(g);
    const back = store.restore(T0 + 10);
    expect(back.lookup('a', T0).task.state).toBe('verifying');
    const again = back.takeToVerify();
    expect(again.map((t) => t.name)).toEqual(['a']);
    expect(back.verification(again[0] as VerifyTicket)?.verifier).toBe(CHECK);
    back.verified(again[0] as VerifyTicket, true, '', T0 + 10);
    expect(back.lookup('c', T0).task.state).toBe('ready');
    const w = back.status(T0 + 10).workers.find((x) => x.worker === 'w');
    expect(w).toMatchObject({ done: 2, runs: 2, failed: 0 }); // b from the log; a by the verdict after the restart
  });

  it('hands a verification with its pool verifier removed the empty verifier (the hub passes it)', () => {
    const g = verified();
    g.create([{ name: 'a', pool: 'sims' }], T0);
    run(g, 'w', 'a');
    g.poolSet({ pool: 'sims', maxRunning: undefined, paused: undefined, resultVerifier: '' }, T0);
    const [ticket] = g.takeToVerify();
    expect(g.verification(ticket as VerifyTicket)?.verifier).toBe('');
  });
});

describe('job verifier', () => {
  const specs = (n: number, pool = 'sims'): TaskSpecInput[] => Array.from({ length: n }, (_, i) => ({ name: `t${i}`, pool }));

  it('names the tasks of a create that their pools must check: new or changed ones, once each', () => {
    const g = new Graph();
    expect(g.jobChecks(specs(3))).toEqual([]); // no pool has one: nothing to check
    g.poolSet({ pool: 'sims', maxRunning: undefined, paused: undefined, jobVerifier: '/bin/true' }, T0);
    g.create([{ name: 't0', pool: 'sims' }], T0);
    const checks = g.jobChecks([...specs(3), { name: 't2', pool: 'sims' }, { name: 'other' }, { name: 'all', pool: 'sims', barrier: true, deps: ['t1'] }]);
    expect(checks.map((c) => c.spec.name)).toEqual(['t1', 't2']); // t0 exists identically; "other" is in default; a barrier never runs
    expect(checks[0]?.verifier).toBe('/bin/true');
    expect(g.jobChecks([{ name: 't0', pool: 'sims', priority: 4 }]).map((c) => c.spec.name)).toEqual(['t0']); // a changed definition (replace)
  });

  it('throws what a create throws for a bad spec, before anything runs', () => {
    const g = new Graph();
    g.poolSet({ pool: 'sims', maxRunning: undefined, paused: undefined, jobVerifier: '/bin/true' }, T0);
    expect(codeOf(() => g.jobChecks([{ name: '' , pool: 'sims'}]))).toBe('INVALID_NAME');
  });

  it('keeps verifiers as pool settings: listed, stored, restored, removed with an empty command', () => {
    const g = new Graph();
    const store = new FakeStore();
    g.poolSet({ pool: 'sims', maxRunning: undefined, paused: undefined, jobVerifier: '/bin/true', resultVerifier: 'test -s "$1"' }, T0);
    store.take(g);
    expect(store.pools.get('sims')).toEqual({ maxRunning: 0, paused: false, jobVerifier: '/bin/true', resultVerifier: 'test -s "$1"' });
    const back = store.restore();
    expect(back.poolList('sims', T0).pools[0]).toMatchObject({ jobVerifier: '/bin/true', resultVerifier: 'test -s "$1"' });
    expect(back.jobChecks(specs(1)).length).toBe(1);
    back.poolSet({ pool: 'sims', maxRunning: undefined, paused: undefined, jobVerifier: '', resultVerifier: '' }, T0);
    store.take(back);
    expect(store.pools.has('sims')).toBe(false);
    expect(back.jobChecks(specs(1))).toEqual([]);
  });

  it('refuses a blank, NUL-holding or over-long command, changing nothing', () => {
    const g = new Graph();
    for (const command of ['  ', 'a\0b', 'x'.repeat(5000)]) {
      expect(codeOf(() => g.poolSet({ pool: 'sims', maxRunning: undefined, paused: undefined, resultVerifier: command }, T0))).toBe('INVALID_ARGUMENT');
    }
    expect(g.takeDirtyPools()).toEqual([]);
  });
});
