import { describe, expect, it } from 'vitest';
import { NO_ENTRY, StateLogs } from '../hub/src/graph/statelog.js';
import type { StateChange } from '../proto/src/types.js';

const T0 = 1_700_000_000_123.5;
const change = (i: number, note = `note ${i}`): StateChange => ({ state: i % 2 === 0 ? 'ready' : 'running', at: T0 + i, worker: i % 2 === 0 ? '' : `w${i % 5}`, note });

/** A log built by appending `changes`: its head and length. */
function build(logs: StateLogs, changes: StateChange[]): { head: number; length: number } {
  let head = NO_ENTRY;
  for (const c of changes) head = logs.append(head, c);
  return { head, length: changes.length };
}

describe('StateLogs', () => {
  it('gives back what was appended, in order, with times, workers and notes as given', () => {
    const logs = new StateLogs();
    const changes = [change(0, 'created'), change(1, 'attempt 1'), change(2, ''), { state: 'done' as const, at: T0 + 9, worker: 'w1', note: 'x'.repeat(5000) }];
    const { head, length } = build(logs, changes);
    expect(logs.entries(head, length)).toEqual(changes);
    expect(logs.at(head)).toBe(T0 + 9);
    expect(logs.at(logs.first(head))).toBe(T0);
    expect(logs.startedAt(head)).toBe(T0 + 1);
    expect(logs.entries(NO_ENTRY, 0)).toEqual([]);
    expect(logs.first(NO_ENTRY)).toBe(NO_ENTRY);
    expect(logs.startedAt(NO_ENTRY)).toBe(0);
  });

  it('keeps logs apart across chunk boundaries (entries of many logs interleaved)', () => {
    const logs = new StateLogs();
    const heads = new Array<number>(1000).fill(NO_ENTRY);
    // 150,000 entries: past two chunks of 65,536.
    for (let i = 0; i < 150_000; i++) heads[i % 1000] = logs.append(heads[i % 1000] as number, change(i));
    expect(logs.size).toBe(150_000);
    for (const k of [0, 1, 499, 999]) {
      const got = logs.entries(heads[k] as number, 150);
      expect(got.map((c) => c.at)).toEqual(Array.from({ length: 150 }, (_, j) => T0 + k + j * 1000));
      expect(got[149]).toEqual(change(k + 149_000));
    }
  });

  it('drops the second entry, keeping the first and the latest, down to one entry', () => {
    const logs = new StateLogs();
    const changes = [0, 1, 2, 3, 4].map((i) => change(i));
    let { head, length } = build(logs, changes);
    head = logs.dropSecond(head, length--);
    expect(logs.entries(head, length)).toEqual([changes[0], changes[2], changes[3], changes[4]]);
    head = logs.dropSecond(head, length--);
    head = logs.dropSecond(head, length--);
    expect(logs.entries(head, length)).toEqual([changes[0], changes[4]]);
    head = logs.dropSecond(head, length--);
    expect(logs.entries(head, length)).toEqual([changes[0]]);
    expect(logs.dropSecond(head, length)).toBe(head);
    expect(logs.size).toBe(1);
  });

  it('reuses freed entries, long notes included, without touching other logs', () => {
    const logs = new StateLogs();
    const long = 'why '.repeat(200);
    const a = build(logs, [change(0), change(1, long), change(2)]);
    const b = build(logs, [change(10), change(11)]);
    logs.freeLog(a.head);
    expect(logs.size).toBe(2);
    const c = build(logs, [change(20, 'short'), change(21), change(22), change(23, long)]);
    // Three freed entries came back before a fresh one was taken.
    expect(logs.size).toBe(6);
    expect(logs.entries(b.head, b.length)).toEqual([change(10), change(11)]);
    expect(logs.entries(c.head, c.length)).toEqual([change(20, 'short'), change(21), change(22), change(23, long)]);
  });

  it('keeps notes past the interned ones as they are', () => {
    const logs = new StateLogs();
    const changes = Array.from({ length: 70_000 }, (_, i) => change(i, `failed: reason ${i}`));
    const { head, length } = build(logs, changes);
    const got = logs.entries(head, length);
    expect(got[0]).toEqual(changes[0]);
    expect(got[69_999]).toEqual(changes[69_999]);
    expect(got.every((c, i) => c.note === `failed: reason ${i}`)).toBe(true);
  });

  it('interns at most 65,536 workers: made-up worker names past it are kept with their entries, and go with them', () => {
    const logs = new StateLogs();
    const long = 'w'.repeat(300);
    const many = Array.from({ length: 70_000 }, (_, i) => ({ state: 'running' as const, at: T0 + i, worker: i === 5 ? long : `made-up ${i}`, note: 'leased' }));
    const { head, length } = build(logs, many);
    expect(logs.interned).toBeLessThanOrEqual(1 << 16);
    expect(logs.entries(head, length).map((c) => c.worker)).toEqual(many.map((c) => c.worker));
    logs.freeLog(head);
    expect(logs.size).toBe(0);
    // Freed entries reused by a known worker read back as that worker, not a stale made-up one.
    const again = build(logs, [{ state: 'done', at: T0, worker: 'made-up 1', note: '' }, { state: 'done', at: T0, worker: 'made-up 69999', note: '' }]);
    expect(logs.entries(again.head, again.length).map((c) => c.worker)).toEqual(['made-up 1', 'made-up 69999']);
    expect(logs.interned).toBeLessThanOrEqual(1 << 16);
  });
});
