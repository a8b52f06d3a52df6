/** How dquery shows status and records: pure, from made-up replies. */
import { taskRecord } from './support/records.js';
import { describe, expect, it } from 'vitest';
import { emptyCounts, type GraphStatus, type StateCounts, type TaskSummary } from '../proto/src/types.js';
import { finishedLine, formatLookup, formatStatus, formatTaskList, formatWorkers, isFinished } from '../query/src/format.js';

const NOW = Date.parse('2026-01-01T12:00:00Z');

function status(counts: Partial<StateCounts>, more: Partial<GraphStatus> = {}): GraphStatus {
  const c = { ...emptyCounts(), ...counts };
  const total = Object.values(c).reduce((a, n) => a + n, 0);
  return {
    counts: c,
    pools: [{ pool: 'default', counts: c, donePerSecond: 0 }],
    poolsTotal: 1,
    workers: [],
    workersTotal: 0,
    waitingOnMissing: 0,
    missingNames: 0,
    missingExamples: [],
    donePerSecond: 0,
    now: NOW,
    total,
    ...more,
  };
}

describe('formatStatus', () => {
  it('shows per pool its completions per second and the time its tasks left take at that rate', () => {
    const c = { ...emptyCounts(), ready: 10, running: 2, done: 30 };
    const gpu = { ...emptyCounts(), waiting: 5, done: 1 };
    const text = formatStatus(status({ ready: 10, running: 2, waiting: 5, done: 31 }, { donePerSecond: 2.5, pools: [{ pool: 'cpu', counts: c, donePerSecond: 2 }, { pool: 'gpu', counts: gpu, donePerSecond: 0 }] }));
    expect(text).toMatch(/^pool +waiting +ready +running +done +failed +blocked +cancelled +done\/s +left$/m);
    expect(text).toMatch(/^cpu +0 +10 +2 +30 +0 +0 +0 +2\.0 +6s$/m);
    expect(text).toMatch(/^gpu +5 +0 +0 +1 +0 +0 +0 +0 +\?$/m);
    expect(text).toMatch(/^total +5 +10 +2 +31 +0 +0 +0 +2\.5 +7s$/m);
  });

  it('says which hub answered: endpoint, store id, and when it started', () => {
    const text = formatStatus(status({ done: 1 }), { endpoint: 'tcp://h:6125', storeId: '0123456789abcdef', startedMs: NOW - 3 * 3600_000 });
    expect(text.split('\n')[0]).toBe('hub tcp://h:6125, store 0123456789abcdef, up 3h 0m (since 2026-01-01T09:00:00.000Z)');
  });

  it('says how many files the hub holds, when it holds any', () => {
    const source = { endpoint: 'tcp://h:6125', storeId: 'id', startedMs: 0 };
    expect(formatStatus(status({ done: 1 }), { ...source, files: { count: 3, bytes: 5 * 2 ** 20 + 2 ** 19 } }).split('\n')[1]).toBe('files: 3 files held, 5.5 MiB');
    expect(formatStatus(status({ done: 1 }), { ...source, files: { count: 0, bytes: 0 } })).not.toMatch(/files:/);
  });

  it('counts in the singular for one task', () => {
    expect(formatStatus(status({ ready: 1 }))).toMatch(/^1 task, 0 done \(0\.0%\), 0 failed, 0 blocked$/m);
  });

  it('says the rate is over the last minute or since the first completion, with the time left at that rate', () => {
    const text = formatStatus(status({ done: 100, ready: 50, waiting: 70 }, { donePerSecond: 2 }));
    expect(text).toMatch(/^2\.0 done\/s over the last minute \(or since the first completion, if sooner\); 120 tasks to go, about 60s at this rate$/m);
  });

  it('leaves out of the time left the tasks waiting on names that do not exist', () => {
    const text = formatStatus(status({ ready: 10, waiting: 30 }, { donePerSecond: 1, waitingOnMissing: 30, missingNames: 1, missingExamples: ['x'] }));
    expect(text).toMatch(/10 tasks to go, about 10s at this rate/);
  });

  it('gives no time left when the run is finished', () => {
    const text = formatStatus(status({ done: 10, waiting: 3 }, { donePerSecond: 1, waitingOnMissing: 3, missingNames: 1, missingExamples: ['x'] }));
    expect(text).not.toMatch(/to go/);
  });

  it('says how many tasks wait on how many names that do not exist, with a few of them', () => {
    const text = formatStatus(status({ waiting: 7 }, { waitingOnMissing: 7, missingNames: 12, missingExamples: ['a', 'b', 'c', 'd', 'e', 'f'] }));
    expect(text).toMatch(/^7 tasks wait on 12 names that don't exist \(e\.g\. a, b, c, d, e and 7 more\): a typo, or tasks still to be created$/m);
  });

  it('marks a worker that exited', () => {
    const workers = [
      { worker: 'w1', lastSeen: NOW - 5000, running: 0, done: 3, failed: 0, exited: true, runs: 3, busyMs: 900, maxRunMs: 500, tasks: [] },
      { worker: 'w2', lastSeen: NOW - 1000, running: 1, done: 2, failed: 0, exited: false, runs: 2, busyMs: 125_000, maxRunMs: 100_000, tasks: ['job/7'] },
    ];
    const text = formatStatus(status({ running: 1 }, { workers, workersTotal: 2 }));
    expect(text).toMatch(/^w1 +0 +3 +0 +exited, 5s ago$/m);
    expect(text).toMatch(/^w2 +1 +2 +0 +1s ago$/m);
    // dquery workers: run times, and what each worker holds.
    const listed = formatWorkers(status({ running: 1 }, { workers, workersTotal: 2 }));
    expect(listed).toMatch(/^w1 +3 +0 +900 ms +300 ms +500 ms +exited, 5s ago +-$/m);
    expect(listed).toMatch(/^w2 +2 +0 +2m +63s +100s +1s ago +1: job\/7$/m);
  });

  it('says how many workers the hub knows when it lists fewer', () => {
    const workers = [{ worker: 'w1', lastSeen: NOW, running: 1, done: 0, failed: 0, exited: false, runs: 0, busyMs: 0, maxRunMs: 0, tasks: ['t'] }];
    expect(formatStatus(status({ running: 1 }, { workers, workersTotal: 1500 }))).toMatch(/^\(1 of 1500 workers listed: those holding tasks, then the most recently seen\)$/m);
  });
});

describe('finished', () => {
  it('is nothing ready or running, even with tasks waiting', () => {
    expect(isFinished({ ...emptyCounts(), waiting: 5, done: 2 })).toBe(true);
    expect(isFinished({ ...emptyCounts(), waiting: 5, running: 1 })).toBe(false);
  });

  it('says all done, or what was not', () => {
    expect(finishedLine(status({ done: 41 }))).toBe('finished: all 41 tasks done');
    expect(finishedLine(status({ done: 3, failed: 1, blocked: 2, waiting: 1 }))).toBe(
      "finished, not all done: 3 done, 1 failed, 2 blocked, 1 still waiting (on names that don't exist) (of 7 tasks)",
    );
  });
});

describe('formatLookup', () => {
  it('marks the dependencies that do not exist', () => {
    const spec = { ...taskRecord('t').spec, deps: ['a', 'tpyo'] };
    const task = { ...taskRecord('t'), spec, state: 'waiting' as const };
    const text = formatLookup({ task, dependents: [], missingDeps: ['tpyo'], failedDeps: [] });
    expect(text).toMatch(/^deps: +a, tpyo \(does not exist\)$/m);
    expect(text).toMatch(/^missing: +1 dependency does not exist: it waits until a task of that name is created$/m);
  });
});

describe('formatStatus with many pools', () => {
  it('says how many pools it lists of how many', () => {
    expect(formatStatus(status({ ready: 1 }, { poolsTotal: 20_000 }))).toMatch(/\(1 of 20000 pools listed; the total counts them all\)/);
  });
});

describe('formatTaskList', () => {
  const summary = (name: string, more: Partial<TaskSummary>): TaskSummary => ({
    name, state: 'ready', pool: 'default', attempts: 0, worker: '', lastError: '', seq: 1, resultBytes: 0, changedAt: NOW, createdAt: NOW, startedAt: 0,
    params: [], result: new Uint8Array(), outputs: [], barrier: false, failedDeps: 0, ...more,
  });

  it('says how many dependencies of a task failed', () => {
    const text = formatTaskList([summary('report', { failedDeps: 2 }), summary('plain', {}), summary('one', { state: 'blocked', failedDeps: 1 })], true);
    const lines = text.split('\n');
    expect(lines[1]).toMatch(/^report +ready \(2 deps failed\) +0/);
    expect(lines[2]).toMatch(/^plain +ready +0/);
    expect(lines[3]).toMatch(/^one +blocked \(1 dep failed\) +0/);
  });
});

describe('status with verifying tasks', () => {
  it('shows the verifying column only while a task verifies, and counts verifying tasks as not finished', () => {
    expect(formatStatus(status({ done: 3, ready: 1 }))).not.toContain('verifying');
    expect(formatStatus(status({ done: 3, verifying: 2 }))).toMatch(/verifying/);
    expect(isFinished({ ...emptyCounts(), done: 3, verifying: 1 })).toBe(false);
  });
});
