/**
 * Store.loadEach (TaskStore.loadEach, what a restart reads through): the records loadAll gives,
 * LevelDB's and the log's, over several read batches of both ranges, with updates and deletions
 * in the log; the same refusal of an unreadable store; a sink that throws ends the load and
 * leaves the store readable.
 */
import { join } from 'node:path';
import { Level } from 'level';
import { afterAll, describe, expect, it } from 'vitest';
import type { TaskRecord } from '../proto/src/types.js';
import { Store } from '../hub/src/store/store.js';
import { cleanTempDirs, tempDir } from './helpers.js';
import { taskRecord } from './support/records.js';

afterAll(() => cleanTempDirs());

/** More than two of the store's read batches (2,000 records), so that reads ahead are crossed. */
const COUNT = 5_500;

const byName = (records: readonly TaskRecord[]): TaskRecord[] => [...records].sort((a, b) => (a.spec.name < b.spec.name ? -1 : a.spec.name > b.spec.name ? 1 : 0));

async function each(store: Store): Promise<TaskRecord[]> {
  const records: TaskRecord[] = [];
  await store.loadEach((r) => records.push(r));
  return records;
}

describe('Store.loadEach', () => {
  it('hands out the records loadAll gives, LevelDB’s and the log’s, each once', async () => {
    const db = join(tempDir(), 'db');
    const expected = new Map<string, TaskRecord>();
    let store = await Store.open(db);
    const first: TaskRecord[] = [];
    for (let i = 0; i < COUNT; i++) first.push(taskRecord(`t${i}`, { seq: i + 1, state: 'ready', payload: Buffer.from(`p${i}`) }));
    for (let i = 0; i < COUNT; i += 1000) await store.write(first.slice(i, i + 1000), { deleted: [], pools: [], specs: new Set(first.slice(i, i + 1000).map((r) => r.spec.name)) });
    for (const r of first) expected.set(r.spec.name, r);
    await store.close();

    // Into LevelDB at close; now changes that stay in the log: updates, deletions, new tasks.
    store = await Store.open(db);
    const updated = first.filter((_, i) => i % 7 === 0).map((r) => ({ ...r, state: 'done' as const, result: Buffer.from('ok') }));
    await store.write(updated, { deleted: [], pools: [], specs: new Set() });
    for (const r of updated) expected.set(r.spec.name, r);
    const deleted = first.filter((_, i) => i % 11 === 3).map((r) => r.spec.name);
    await store.write([], { deleted, pools: [] });
    for (const n of deleted) expected.delete(n);
    const added = [taskRecord('a-first', { seq: COUNT + 1 }), taskRecord('zz-last', { seq: COUNT + 2 }), taskRecord('t2500x', { seq: COUNT + 3 })];
    await store.write(added, { deleted: [], pools: [], specs: new Set(added.map((r) => r.spec.name)) });
    for (const r of added) expected.set(r.spec.name, r);

    const streamed = await each(store);
    expect(streamed.length).toBe(expected.size);
    expect(new Set(streamed.map((r) => r.spec.name)).size).toBe(expected.size);
    expect(byName(streamed)).toEqual(byName(await store.loadAll()));
    expect(byName(streamed)).toEqual(byName([...expected.values()]));
    await store.close();

    const reopened = await Store.open(db);
    expect(byName(await each(reopened))).toEqual(byName([...expected.values()]));
    await reopened.close();
  });

  it('refuses a store with an unreadable record as loadAll does', async () => {
    const db = join(tempDir(), 'db');
    const store = await Store.open(db);
    const records = Array.from({ length: 3000 }, (_, i) => taskRecord(`t${i}`, { seq: i + 1 }));
    await store.write(records, { deleted: [], pools: [], specs: new Set(records.map((r) => r.spec.name)) });
    await store.close();
    const level = new Level<string, Uint8Array>(db, { valueEncoding: 'view' });
    await level.del('spec:t2999');
    await level.close();
    const damaged = await Store.open(db);
    const all = await damaged.loadAll().then(
      () => 'loaded',
      (err: Error) => err.message,
    );
    expect(all).toMatch(/key "state:t2999".*the state of a task whose spec record is missing/s);
    await expect(each(damaged)).rejects.toThrow(all);
    await damaged.close();
  });

  it('ends at a record its sink throws for, and the store stays readable', async () => {
    const db = join(tempDir(), 'db');
    const store = await Store.open(db);
    const records = Array.from({ length: 4500 }, (_, i) => taskRecord(`t${i}`, { seq: i + 1 }));
    await store.write(records, { deleted: [], pools: [], specs: new Set(records.map((r) => r.spec.name)) });
    await store.close();
    const reopened = await Store.open(db);
    let seen = 0;
    await expect(
      reopened.loadEach(() => {
        if (++seen === 2500) throw new Error('the sink is full');
      }),
    ).rejects.toThrow('the sink is full');
    expect(seen).toBe(2500);
    expect((await each(reopened)).length).toBe(4500);
    await reopened.close();
  });
});
