/**
 * The PostgreSQL store on a real PostgreSQL: what it writes and loads, the leader lock and epoch,
 * and the clear refusals at start (unreachable, wrong credentials, newer schema, another
 * program's database, not a postgres:// URL), none of them showing the password.
 */
import { afterAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { PostgresStore, PG_SCHEMA_VERSION, redactUrl } from '../hub/src/store/postgres.js';
import { DagworkError } from '../proto/src/errors.js';
import { taskRecord } from './support/records.js';
import { freePort } from './support/proc.js';
import { pgCluster, postgresMissing, stopPgCluster } from './support/stores.js';
import { PG_USER } from './support/postgres.js';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { Hub } from '../hub/src/server.js';
import { Client } from '../worker-kit/src/index.js';
import { cleanTempDirs, DHUB, runNode, tempDir } from './helpers.js';

afterAll(async () => {
  await stopPgCluster();
  cleanTempDirs();
});

const refusal = async (promise: Promise<unknown>): Promise<DagworkError> => {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(DagworkError);
  return err as DagworkError;
};

describe.skipIf(postgresMissing !== undefined)('the PostgreSQL store', () => {
  it('writes in one transaction what the graph changed and loads it back: specs, states, deletions, pools', async () => {
    const url = await (await pgCluster()).createDatabase();
    const store = await PostgresStore.open(url);
    const a = taskRecord('a');
    const b = taskRecord('b', { state: 'running', worker: 'w1', leaseDeadline: 123456 });
    await store.write([a, b], { deleted: [], pools: [['lic', { maxRunning: 3, paused: false, jobVerifier: '', resultVerifier: '/opt/check' }]] });
    // A state-only write keeps the spec; the last record of a task in one write wins.
    const b2 = { ...b, state: 'done' as const, worker: 'w1' };
    await store.write([b, b2], { deleted: ['a'], pools: [['lic', undefined], ['gpu', { maxRunning: 0, paused: true, jobVerifier: '', resultVerifier: '' }]], specs: new Set() });
    await store.close();
    const again = await PostgresStore.open(url);
    expect(again.id).toBe(store.id);
    expect(await again.loadAll()).toEqual([b2]);
    expect(await again.loadPools()).toEqual([['gpu', { maxRunning: 0, paused: true, jobVerifier: '', resultVerifier: '' }]]);
    await again.close();
  });

  it('refuses a state-only write of a task with no stored spec, and keeps nothing of that write', async () => {
    const url = await (await pgCluster()).createDatabase();
    const store = await PostgresStore.open(url);
    await store.write([taskRecord('kept')]);
    const err = await refusal(store.write([taskRecord('kept', { state: 'done' }), taskRecord('ghost')], { deleted: [], pools: [], specs: new Set() }));
    expect(err.code).toBe('STORE_FAILED');
    expect(err.message).toMatch(/cannot write 2 tasks: a state write names a task with no stored spec; nothing of this write was kept/);
    expect((await store.loadAll()).map((r) => [r.spec.name, r.state])).toEqual([['kept', 'ready']]);
    await store.close();
  });

  it('refuses every write once the leader epoch is no longer its own (a takeover), keeping nothing of it', async () => {
    const cluster = await pgCluster();
    const url = await cluster.createDatabase();
    const lost: Error[] = [];
    const store = await PostgresStore.open(url, { onLost: (e) => lost.push(e) });
    await store.write([taskRecord('before')]);
    await cluster.query('UPDATE dagwork_meta SET leader_epoch = leader_epoch + 1', [], new URL(url).pathname.slice(1));
    const err = await refusal(store.write([taskRecord('after')], { deleted: ['before'], pools: [] }));
    expect(err.message).toMatch(/another hub took over the store .* this hub is fenced; nothing of this write was kept/);
    // It says so (dhub exits on it) and refuses everything after.
    expect(lost.map((e) => e.message)).toEqual([err.message]);
    expect((await refusal(store.write([taskRecord('later')]))).message).toMatch(/lost the session/);
    await store.close();
    const look = await PostgresStore.open(url);
    expect((await look.loadAll()).map((r) => r.spec.name)).toEqual(['before']);
    await look.close();
  });

  it('writes a group commit larger than one statement carries as one transaction: all or none', async () => {
    const cluster = await pgCluster();
    const url = await cluster.createDatabase();
    const store = await PostgresStore.open(url);
    // 80 records of 1 MiB: two statements of at most 64 MiB.
    const big = Array.from({ length: 80 }, (_, i) => taskRecord(`big${String(i).padStart(2, '0')}`, { payload: Buffer.alloc(1 << 20, i) }));
    await cluster.query(`ALTER TABLE dagwork_tasks ADD CONSTRAINT refuse_last CHECK (name <> 'big79')`, [], new URL(url).pathname.slice(1));
    expect((await refusal(store.write(big))).message).toMatch(/refuse_last/);
    expect(await store.loadAll()).toEqual([]);
    await cluster.query('ALTER TABLE dagwork_tasks DROP CONSTRAINT refuse_last', [], new URL(url).pathname.slice(1));
    await store.write(big);
    const loaded = await store.loadAll();
    expect(loaded.length).toBe(80);
    expect(loaded[79]).toEqual(big[79]);
    await store.close();
  });

  it('loads many tasks across read batches, in name order', async () => {
    const url = await (await pgCluster()).createDatabase();
    const store = await PostgresStore.open(url);
    const names = Array.from({ length: 25_000 }, (_, i) => `t${i}`);
    await store.write(names.map((n) => taskRecord(n)));
    const loaded = (await store.loadAll()).map((r) => r.spec.name);
    expect(loaded.length).toBe(names.length);
    expect(new Set(loaded).size).toBe(names.length);
    await store.close();
  });

  it('hands each record over as its page is read, and names a row it cannot read after the others', async () => {
    const url = await (await pgCluster()).createDatabase();
    const store = await PostgresStore.open(url);
    const names = Array.from({ length: 12_000 }, (_, i) => `t${String(i).padStart(5, '0')}`);
    await store.write(names.map((n) => taskRecord(n)));
    const db = new pg.Client({ connectionString: url });
    await db.connect();
    await db.query(`UPDATE dagwork_tasks SET state = '\\xff'::bytea WHERE name = 't00007'`);
    await db.end();
    const handed: string[] = [];
    const err = await refusal(store.loadEach((record) => handed.push(record.spec.name)));
    expect(err.code).toBe('STORE_FAILED');
    expect(err.message).toMatch(/holds a task row that cannot be read: task "t00007": .*delete the row/);
    expect(handed).toEqual(names.filter((n) => n !== 't00007'));
    await store.close();
  });

  it('lets one hub lead at a time; the next takes over with a new epoch, and the old one can no longer write', async () => {
    const cluster = await pgCluster();
    const url = await cluster.createDatabase();
    const first = await PostgresStore.open(url);
    const second = await PostgresStore.connect(url);
    expect(await second.tryLead()).toBe(false);
    expect((await refusal(PostgresStore.open(url))).message).toMatch(/in use by another active dhub/);
    await refusal(second.write([taskRecord('x')]));
    // The first hub's session is cut (as a dead hub's would be): its lock goes, the second leads.
    const lost: Error[] = [];
    const watched = await PostgresStore.connect(url, { onLost: (e) => lost.push(e) });
    await first.close();
    expect(await watched.tryLead()).toBe(true);
    await cluster.query('SELECT pg_terminate_backend(pg_stat_activity.pid) FROM pg_stat_activity WHERE datname = $1 AND pid IN (SELECT pid FROM pg_locks WHERE locktype = $2 AND granted)', [new URL(url).pathname.slice(1), 'advisory']);
    for (let i = 0; i < 50 && lost.length === 0; i++) await new Promise((r) => setTimeout(r, 100));
    expect(lost.length).toBe(1);
    expect((await refusal(watched.write([taskRecord('y')]))).message).toMatch(/lost the session/);
    expect(await second.tryLead()).toBe(true);
    expect(second.leaderEpoch).toBe(watched.leaderEpoch + 1);
    await second.write([taskRecord('z')]);
    expect((await second.loadAll()).map((r) => r.spec.name)).toEqual(['z']);
    await second.close();
    await watched.close();
  });

  it('refuses an unreachable database, naming host and port', async () => {
    const port = await freePort();
    const err = await refusal(PostgresStore.open(`postgres://someone:hunter2secret@127.0.0.1:${port}/db`));
    expect(err.message).toMatch(new RegExp(`cannot reach the database at 127.0.0.1:${port} .*is PostgreSQL running there`));
    expect(err.message).not.toContain('hunter2secret');
  });

  it('refuses wrong credentials, without showing the password', async () => {
    const cluster = await pgCluster();
    const err = await refusal(PostgresStore.open(`postgres://${PG_USER}:wrong-pass-42@127.0.0.1:${cluster.port}/postgres`));
    expect(err.message).toMatch(new RegExp(`the database at 127.0.0.1:${cluster.port} refused user "${PG_USER}" .*check the user and password`));
    expect(err.message).not.toContain('wrong-pass-42');
    expect(err.message).not.toContain(cluster.password);
  });

  it('refuses a schema from a newer dagwork', async () => {
    const cluster = await pgCluster();
    const url = await cluster.createDatabase();
    await (await PostgresStore.open(url)).close();
    await cluster.query(`UPDATE dagwork_meta SET schema_version = ${PG_SCHEMA_VERSION + 1}`, [], new URL(url).pathname.slice(1));
    const err = await refusal(PostgresStore.open(url));
    expect(err.message).toBe(`the store ${redactUrl(url)} has schema version ${PG_SCHEMA_VERSION + 1}, newer than this dhub (${PG_SCHEMA_VERSION}): upgrade dhub`);
    expect(err.message).not.toContain(cluster.password);
  });

  it("refuses a database that holds another program's tables, and changes nothing in it", async () => {
    const cluster = await pgCluster();
    const url = await cluster.createDatabase();
    const db = new URL(url).pathname.slice(1);
    await cluster.query('CREATE TABLE invoices (id int)', [], db);
    const err = await refusal(PostgresStore.open(url));
    expect(err.message).toMatch(/holds tables of another program \(public\.invoices\) and no dagwork meta table: give dagwork a database of its own/);
    const tables = await cluster.query<{ tablename: string }>(`SELECT tablename FROM pg_tables WHERE schemaname = 'public'`, [], db);
    expect(tables.map((t) => t.tablename)).toEqual(['invoices']);
  });

  it('refuses a URL that is not postgres://', async () => {
    const err = await refusal(PostgresStore.open('mysql://u:secretpw@h/db'));
    expect(err.message).toBe('--store mysql://u:***@h/db is not a postgres:// or postgresql:// URL (postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE)');
    expect(redactUrl('postgres://u@h/db?password=s3cret&sslmode=require')).toBe('postgres://u@h/db?password=***&sslmode=require');
  });

  it('makes the schema once when two hubs start on an empty database at the same moment', async () => {
    const url = await (await pgCluster()).createDatabase();
    const stores = await Promise.all([PostgresStore.connect(url), PostgresStore.connect(url), PostgresStore.connect(url)]);
    expect(new Set(stores.map((s) => s.id)).size).toBe(1);
    for (const s of stores) await s.close();
  });
});

describe.skipIf(postgresMissing !== undefined)('dhub --store', () => {
  const dhub = (args: string[], env: NodeJS.ProcessEnv = {}): ReturnType<typeof runNode> =>
    runNode([DHUB, '--bind', 'tcp://127.0.0.1:*', '--db', join(tempDir(), 'db'), ...args], { timeoutMs: 30_000, env });

  it('exits 1 naming an unreachable database, without the password', async () => {
    const port = await freePort();
    const run = await dhub(['--store', `postgres://u:pw-never-shown@127.0.0.1:${port}/db`]);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(new RegExp(`^dhub: cannot reach the database at 127.0.0.1:${port} \\(postgres://u:\\*\\*\\*@127.0.0.1:${port}/db\\)`));
    expect(run.stderr).not.toContain('pw-never-shown');
  });

  it('reads DAGWORK_STORE, and names the user the database refused', async () => {
    const cluster = await pgCluster();
    const run = await dhub([], { DAGWORK_STORE: `postgresql://${PG_USER}:not-the-pw@127.0.0.1:${cluster.port}/postgres` });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(new RegExp(`^dhub: the database at 127.0.0.1:${cluster.port} refused user "${PG_USER}"`));
    expect(run.stderr).not.toContain('not-the-pw');
  });

  it('refuses, as bad usage, a URL that is not postgres:// and options that are LevelDB-only', async () => {
    const notPg = await dhub(['--store', 'mysql://u:pw@h/db']);
    expect(notPg.code).toBe(2);
    expect(notPg.stderr).toMatch(/^dhub: --store mysql:\/\/u:\*\*\*@h\/db is not a postgres:\/\/ or postgresql:\/\/ URL/);
    const noDb = await dhub(['--store', 'postgres://u:pw@h:5432/']);
    expect(noDb.code).toBe(2);
    expect(noDb.stderr).toMatch(/^dhub: --store postgres:\/\/u:\*\*\*@h:5432\/ names no database/);
    const url = (await pgCluster()).url('postgres');
    for (const flag of [['--sync'], ['--drop-record', 'spec:x'], ['--snapshot-log-bytes', '1000']]) {
      const run = await dhub(['--store', url, ...flag]);
      expect(run.code, flag.join(' ')).toBe(2);
      expect(run.stderr).toMatch(new RegExp(`^dhub: ${flag[0]} applies to the LevelDB store`));
    }
  });

  it('answers STORE_FAILED when PostgreSQL refuses a write, keeps nothing of it, and recovers from the store', async () => {
    const cluster = await pgCluster();
    const url = await cluster.createDatabase();
    const hub = await Hub.start({ bind: 'tcp://127.0.0.1:*', db: join(tempDir(), 'db'), openStore: () => PostgresStore.open(url) });
    const client = new Client({ hub: hub.endpoint, worker: 'w' });
    try {
      await client.create([{ name: 'kept' }]);
      // The database refuses any row named "lost": the transaction with it rolls back whole.
      await cluster.query(`ALTER TABLE dagwork_tasks ADD CONSTRAINT refuse_lost CHECK (name <> 'lost')`, [], new URL(url).pathname.slice(1));
      const err = await client.create([{ name: 'other' }, { name: 'lost' }]).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'STORE_FAILED' });
      expect((err as Error).message).toMatch(/cannot write 2 tasks, 0 deletions and 0 pool settings: .*refuse_lost/);
      await expect(client.lookup('other')).rejects.toMatchObject({ code: 'UNKNOWN_TASK' });
      expect((await client.steal()).tasks.map((t) => t.name)).toEqual(['kept']);
    } finally {
      client.close();
      await hub.stop();
    }
    const store = await PostgresStore.open(url);
    expect((await store.loadAll()).map((r) => `${r.spec.name}:${r.state}`)).toEqual(['kept:running']);
    await store.close();
  });
});

describe('dhub --store without the pg package', () => {
  it('says that pg cannot be loaded, and exits 1', async () => {
    // A module resolve hook that finds no 'pg', as an install without optional dependencies would.
    const dir = tempDir();
    writeFileSync(
      join(dir, 'hooks.mjs'),
      `export async function resolve(specifier, context, next) {
        if (specifier === 'pg') throw Object.assign(new Error("Cannot find package 'pg'"), { code: 'ERR_MODULE_NOT_FOUND' });
        return next(specifier, context);
      }\n`,
    );
    writeFileSync(join(dir, 'register.mjs'), `import { register } from 'node:module';\nregister('./hooks.mjs', import.meta.url);\n`);
    const run = await runNode(['--import', join(dir, 'register.mjs'), DHUB, '--bind', 'tcp://127.0.0.1:*', '--db', join(dir, 'db'), '--store', 'postgres://u:pw@127.0.0.1:1/db'], {
      timeoutMs: 30_000,
    });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^dhub: a postgres:\/\/ store needs the npm package pg, which cannot be loaded \(Cannot find package 'pg'\): install it next to dagwork \(npm install pg\)/);
  });
});

// The pg client the store uses is the one the tests use to look at the database.
void pg;
