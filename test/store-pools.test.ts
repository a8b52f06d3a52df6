/** The store's deletions and pool settings (format 5), and an older store loading as it is. */
import { join } from 'node:path';
import { Level } from 'level';
import { afterAll, describe, expect, it } from 'vitest';
import { encodeRecord } from '../hub/src/store/record.js';
import { Store } from '../hub/src/store/store.js';
import { cleanTempDirs, tempDir } from './helpers.js';
import { taskRecord } from './support/records.js';
import { newStore, openStore, stopPgCluster, storeKinds, type OpenedStore } from './support/stores.js';

afterAll(async () => {
  await stopPgCluster();
  cleanTempDirs();
});

const names = async (store: OpenedStore): Promise<string[]> => (await store.loadAll()).map((r) => r.spec.name).sort();

const LIC = { maxRunning: 3, paused: false, jobVerifier: '', resultVerifier: '/opt/check.sh' };

describe.each(storeKinds)('store deletions and pool settings (%s store)', (kind) => {
  it('forgets deleted tasks and removed settings, from the log and from LevelDB', async () => {
    const db = await newStore(kind);
    const store = await openStore(kind, db);
    await store.write([taskRecord('a'), taskRecord('b')], { deleted: [], pools: [['lic', LIC], ['gpu', { maxRunning: 0, paused: true, jobVerifier: '', resultVerifier: '' }]] });
    await store.write([], { deleted: ['a'], pools: [['gpu', undefined]] });
    expect(await names(store)).toEqual(['b']);
    expect(await store.loadPools()).toEqual([['lic', LIC]]);
    await store.close();
    const reopened = await openStore(kind, db);
    expect(await names(reopened)).toEqual(['b']);
    expect(await reopened.loadPools()).toEqual([['lic', LIC]]);
    await reopened.write([taskRecord('a')]);
    expect(await names(reopened)).toEqual(['a', 'b']);
    await reopened.close();
  });
});

describe('store formats before pool settings', () => {
  it('loads a store of format 4 as it is: its tasks, no pool settings', async () => {
    const db = join(tempDir(), 'db');
    const level = new Level<string, Uint8Array>(db, { valueEncoding: 'view' });
    await level.put('meta:format', new TextEncoder().encode('4'));
    await level.put('t:old', encodeRecord(taskRecord('old')));
    await level.close();
    const store = await Store.open(db);
    expect(await names(store)).toEqual(['old']);
    expect(await store.loadPools()).toEqual([]);
    await store.close();
  });

  it('reads pool settings stored before verifiers existed as having none', async () => {
    const db = join(tempDir(), 'db');
    const level = new Level<string, Uint8Array>(db, { valueEncoding: 'view' });
    await level.put('meta:format', new TextEncoder().encode('5'));
    await level.put('p:lic', new TextEncoder().encode('{"maxRunning":3,"paused":true}'));
    await level.close();
    const store = await Store.open(db);
    expect(await store.loadPools()).toEqual([['lic', { maxRunning: 3, paused: true, jobVerifier: '', resultVerifier: '' }]]);
    await store.close();
  });
});
