/** Store faults: at start (unwritable, locked, newer format) and at run time (a failed write). */
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Level } from 'level';
import { afterAll, describe, expect, it } from 'vitest';
import { Hub } from '../hub/src/server.js';
import { Store, STORE_FORMAT } from '../hub/src/store/store.js';
import { encodeRecord } from '../hub/src/store/record.js';
import type { TaskRecord } from '../proto/src/types.js';
import { Client, DagworkError } from '../worker-kit/src/index.js';
import { failingStore } from './support/failing-store.js';
import { cleanTempDirs, DHUB, runNode, startHub, tempDir } from './helpers.js';
import { taskRecord } from './support/records.js';

afterAll(cleanTempDirs);

const readyTask = (name: string): TaskRecord => taskRecord(name);

/** A store holding the task "good" and, under t:mangled, bytes that are no stored task. */
async function storeWithMangledRecord(): Promise<string> {
  const db = join(tempDir(), 'db');
  await (await Store.open(db)).close();
  const level = new Level<string, Uint8Array>(db, { valueEncoding: 'view' });
  await level.put('t:good', encodeRecord(readyTask('good')));
  await level.put('t:mangled', Buffer.from([0x0a, 0xff, 0xff, 0x01]));
  await level.close();
  return db;
}

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

  it('refuses a format record that is not a number, saying what it holds', async () => {
    const db = join(tempDir(), 'db');
    const level = new Level<string, string>(db);
    await level.put('meta:format', 'v2-beta');
    await level.close();
    const run = await runNode([DHUB, '--bind', 'tcp://127.0.0.1:*', '--db', db], { timeoutMs: 20_000 });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(new RegExp(`^dhub: the store ${db} has a format record \\(meta:format\\) holding "v2-beta", not a format number`));
  });

  it('refuses a non-empty directory that is not a dagwork store, and leaves it alone', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'thesis.tex'), 'chapter one');
    const run = await runNode([DHUB, '--bind', 'tcp://127.0.0.1:*', '--db', dir], { timeoutMs: 20_000 });
    expect(run.code).toBe(1);
    expect(run.stderr).toBe(
      `dhub: --db ${dir} is a non-empty directory that is not a dagwork store (no LevelDB files, no log segments; it holds thesis.tex): give a new or empty directory, or the store's own\n`,
    );
    expect(readdirSync(dir)).toEqual(['thesis.tex']);
  });

  it('opens an existing empty directory as a new store', async () => {
    const dir = join(tempDir(), 'empty');
    mkdirSync(dir);
    const store = await Store.open(dir);
    await store.close();
    expect(readdirSync(dir)).toContain('CURRENT');
  });

  it('refuses a record it cannot read, naming its key and the way out', async () => {
    const db = await storeWithMangledRecord();
    const run = await runNode([DHUB, '--bind', 'tcp://127.0.0.1:*', '--db', db], { timeoutMs: 20_000 });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(
      new RegExp(`^dhub: the store ${db} holds a record that cannot be read: key "t:mangled" \\(task "mangled"\\): not a stored task: .*\\n.*--drop-record t:mangled`),
    );
  });

  it('starts without a record named by --drop-record, and keeps it aside', async () => {
    const db = await storeWithMangledRecord();
    const hub = await startHub({ db, args: ['--drop-record', 't:mangled'] });
    const client = new Client({ hub: hub.endpoint, worker: 'w' });
    try {
      expect((await client.status()).counts.ready).toBe(1);
    } finally {
      client.close();
    }
    expect(await hub.stop()).toBe(0);
    const store = await Store.open(db);
    const loaded = (await store.loadAll()).map((r) => r.spec.name);
    await store.close();
    expect(loaded).toEqual(['good']);
    const after = new Level<string, Uint8Array>(db, { valueEncoding: 'view' });
    const aside = await after.get('dropped:t:mangled');
    await after.close();
    expect(Buffer.from(aside ?? []).equals(Buffer.from([0x0a, 0xff, 0xff, 0x01]))).toBe(true);
  });

  it('keeps serving when a new log segment cannot be opened: one write refused, then the next acknowledged', async () => {
    const hub = await startHub();
    mkdirSync(join(hub.db, 'dagwork-wal-2')); // where the next segment goes: its open fails (EISDIR), as with EMFILE
    const client = new Client({ hub: hub.endpoint, worker: 'w', timeoutMs: 2000, retries: 0 });
    const outcomes: string[] = [];
    try {
      // The background write (200 ms after a change) tries the new segment; the write after it is refused.
      const deadline = Date.now() + 10_000;
      while (!outcomes.includes('STORE_FAILED') && Date.now() < deadline) {
        outcomes.push(await client.create([{ name: `t${outcomes.length}` }]).then(
          () => 'ok',
          (e: unknown) => String((e as { code?: unknown }).code ?? e),
        ));
      }
      expect(outcomes.at(-1)).toBe('STORE_FAILED');
      expect(await client.create([{ name: 'after' }])).toMatchObject({ created: 1, unchanged: 0 });
    } finally {
      client.close();
    }
    expect(await hub.stop()).toBe(0);
    expect(hub.log()).toMatch(/error +cannot start a new log segment \S+dagwork-wal-2: EISDIR/);
  });

  it('answers STORE_FAILED when a write fails, acknowledges nothing unwritten, and recovers', async () => {
    let failWrites = false;
    const db = join(tempDir(), 'db');
    const hub = await Hub.start({
      bind: 'tcp://127.0.0.1:*',
      db,
      openStore: failingStore(() => failWrites),
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
