/** The graph's packed layout (arena, state logs, shared spec fields) gives back what it was given. */
import { describe, expect, it } from 'vitest';
import { Graph } from '../hub/src/graph/graph.js';
import { Heap } from '../hub/src/graph/heap.js';

const T0 = 1_700_000_000_000;
const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const text = (b: Uint8Array): string => new TextDecoder().decode(b);

describe('graph layout', () => {
  it('keeps its own copy of payloads and results, not a view into the caller buffer', () => {
    const g = new Graph();
    const request = bytes('echo one|echo two');
    // Two payloads that are views into one request buffer, as a decoded request gives them.
    g.create([{ name: 'a', payload: request.subarray(0, 8) }, { name: 'b', payload: request.subarray(9) }], T0);
    const reply = bytes('result of a');
    g.complete('w', [{ name: g.steal('w', 1, [], T0).tasks[0]?.name as string, result: reply }], T0);
    request.fill(0);
    reply.fill(0);
    expect(text(g.lookup('a', T0).task.spec.payload)).toBe('echo one');
    expect(text(g.lookup('a', T0).task.result)).toBe('result of a');
    expect(text(g.steal('w', 1, [], T0).tasks[0]?.payload as Uint8Array)).toBe('echo two');
  });

  it('gives back the records it holds, through a restore, the same', () => {
    const g = new Graph({ maxLogEntries: 4 });
    g.create(
      [
        { name: 'a', payload: bytes('x'.repeat(300_000)) },
        { name: 'b', deps: ['a', 'later'], maxAttempts: 5 },
        { name: 'c', params: [{ name: 'p', value: 'v' }], pool: 'p1' },
        { name: 'd', barrier: true, deps: ['a'] },
      ],
      T0,
    );
    for (let i = 0; i < 3; i++) {
      g.steal('w', 1, ['p1'], T0 + i);
      g.fail('w', 'c', `reason ${i}`, false, T0 + i);
      g.advance(T0 + 100_000 * (i + 1));
    }
    g.complete('w', [{ name: 'a', result: bytes('done') }], T0 + 400_000);
    g.deleteTasks(['c'], false, T0 + 400_001);
    const records = ['a', 'b', 'd'].map((name) => g.lookup(name, T0 + 400_002).task);
    // Logs kept to their first and latest entries.
    expect(records.every((r) => r.log.length <= 4 && r.log[0]?.note.startsWith('created'))).toBe(true);
    const again = Graph.restore(records, T0 + 400_002, { maxLogEntries: 4 });
    for (const record of records) expect(again.lookup(record.spec.name, T0 + 400_002).task).toEqual(record);
    expect(again.lookup('b', T0 + 400_002).missingDeps).toEqual(['later']);
    expect(again.lookup('a', T0 + 400_002).dependents.sort()).toEqual(['b', 'd']);
  });

  it('replaces and deletes tasks without mixing up the payloads and results of the others', () => {
    const g = new Graph();
    const n = 2_000;
    g.create(Array.from({ length: n }, (_, i) => ({ name: `t${i}`, payload: bytes(`payload ${i} `.repeat(i % 50)) })), T0);
    const leased = g.steal('w', n, [], T0).tasks.map((t) => t.name);
    g.complete('w', leased.map((name) => ({ name, result: bytes(`result of ${name}`) })), T0);
    g.deleteTasks(Array.from({ length: n / 2 }, (_, i) => `t${2 * i}`), false, T0);
    g.replace(Array.from({ length: n / 4 }, (_, i) => ({ name: `t${4 * i + 1}`, payload: bytes(`new ${4 * i + 1}`) })), true, false, T0);
    for (let i = 1; i < n; i += 2) {
      const task = g.lookup(`t${i}`, T0).task;
      expect(text(task.spec.payload)).toBe(i % 4 === 1 ? `new ${i}` : `payload ${i} `.repeat(i % 50));
      expect(text(task.result)).toBe(i % 4 === 1 ? '' : `result of t${i}`);
    }
  });

  it('drops the lease entries of tasks completed before their deadline once they pass twice the running tasks', () => {
    const g = new Graph();
    g.create(Array.from({ length: 5_000 }, (_, i) => ({ name: `t${i}` })), T0);
    // A drain within one lease length: no deadline passes, every entry is of a lease ended early.
    for (let now = T0, tasks = g.steal('w', 64, [], now).tasks; tasks.length > 0; tasks = g.steal('w', 64, [], ++now).tasks) {
      g.complete('w', tasks.map((t) => ({ name: t.name })), now);
      expect(g.timedEntries).toBeLessThanOrEqual(2 * 64 + 1_024 + 1);
    }
    expect(g.status(T0 + 100).counts.done).toBe(5_000);
    // A lease still running keeps its entry, and expires on time.
    g.create([{ name: 'late', leaseMs: 1_000 }], T0 + 100);
    g.steal('w', 1, [], T0 + 100);
    g.create(Array.from({ length: 2_000 }, (_, i) => ({ name: `u${i}` })), T0 + 100);
    for (const t of g.steal('w', 2_000, [], T0 + 100).tasks) g.complete('w', [{ name: t.name }], T0 + 100);
    expect(g.lookup('late', T0 + 1_099).task.state).toBe('running');
    expect(g.lookup('late', T0 + 1_100).task.state).toBe('ready');
  });

  it('keeps a heap in order after dropping some of its items', () => {
    const heap = new Heap<number>((a, b) => a < b);
    const values = Array.from({ length: 1_000 }, (_, i) => (i * 7919) % 1_000);
    for (const v of values) heap.push(v);
    heap.retain((v) => v % 3 !== 0);
    const out: number[] = [];
    for (let v = heap.pop(); v !== undefined; v = heap.pop()) out.push(v);
    expect(out).toEqual(values.filter((v) => v % 3 !== 0).sort((a, b) => a - b));
  });
});
