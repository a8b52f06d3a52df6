/** The graph's packed layout (arena, state logs, shared spec fields) gives back what it was given. */
import { describe, expect, it } from 'vitest';
import { Graph } from '../hub/src/graph/graph.js';

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
});
