/** Store faults: at start (unwritable, locked, newer format) and at run time (a failed write). */
import { join } from 'node:path';
import { Level } from 'level';
import { afterAll, describe, expect, it } from 'vitest';
import { Hub } from '../hub/src/server.js';
import { Store, STORE_FORMAT, type TaskStore } from '../hub/src/store/store.js';
import { Client, DagworkError } from '../worker-kit/src/index.js';
import { cleanTempDirs, DHUB, runNode, tempDir } from './helpers.js';

afterAll(cleanTempDirs);

describe('store faults', () => {
  it('refuses a store that cannot be created, with the reason', async () => {
    const run = await runNode([DHUB, '--bind', 'tcp://127.0.0.1:*', '--db', '/proc/version/db'], { timeoutMs: 20_000 });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^dhub: cannot open the store \/proc\/version\/db: /);
  });

  it('refuses a store written by a newer dagwork', async () => {
    const db = join(tempDir(), 'db');
    const level = new Level<string, string>(db);
    await level.put('meta:format', String(STORE_FORMAT + 1));
    await level.close();
    const run = await runNode([DHUB, '--bind', 'tcp://127.0.0.1:*', '--db', db], { timeoutMs: 20_000 });
    expect(run.code).toBe(1);
    expect(run.stderr).toBe(`dhub: the store ${db} has format ${STORE_FORMAT + 1}, newer than this dhub's ${STORE_FORMAT}: upgrade dagwork\n`);
  });

  it('answers STORE_FAILED when a write fails, acknowledges nothing unwritten, and recovers', async () => {
    let failWrites = false;
    const db = join(tempDir(), 'db');
    const hub = await Hub.start({
      bind: 'tcp://127.0.0.1:*',
      db,
      openStore: async (location, options): Promise<TaskStore> => {
        const real = await Store.open(location, options);
        return {
          loadAll: () => real.loadAll(),
          write: (records) => (failWrites ? Promise.reject(new Error('No space left on device')) : real.write(records)),
          close: () => real.close(),
        };
      },
    });
    const client = new Client({ hub: hub.endpoint, worker: 'w' });
    try {
      await client.create([{ name: 'kept' }]);
      failWrites = true;
      const err = await client.create([{ name: 'lost' }]).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DagworkError);
      expect(err).toMatchObject({ code: 'STORE_FAILED', message: 'the store could not be written: No space left on device' });
      const steal = await client.steal().catch((e: unknown) => e);
      expect(steal).toMatchObject({ code: 'STORE_FAILED' }); // its lease could not be written either
      failWrites = false;
      // The hub rebuilt its graph from the store: the failed changes are gone, the rest is there.
      await expect(client.lookup('lost')).rejects.toMatchObject({ code: 'UNKNOWN_TASK' });
      expect((await client.lookup('kept')).task.state).toBe('ready');
      expect((await client.steal()).tasks.map((t) => [t.name, t.attempt])).toEqual([['kept', 1]]);
    } finally {
      client.close();
      await hub.stop();
    }
    const store = await Store.open(db);
    const names: string[] = [];
    for (const r of await store.loadAll()) names.push(`${r.spec.name}:${r.state}`);
    await store.close();
    expect(names).toEqual(['kept:running']);
  });
});
