/**
 * The store kinds the store's tests and the hub's integration tests run against: a factory of a
 * fresh store location (a directory for LevelDB, a new database's URL for PostgreSQL), a way to
 * open it, and the dhub arguments that select it. One PostgreSQL cluster per test file, reused.
 */
import { join } from 'node:path';
import { PostgresStore } from '../../hub/src/store/postgres.js';
import { Store, type TaskStore } from '../../hub/src/store/store.js';
import type { PoolSettings, TaskRecord } from '../../proto/src/types.js';
import { startPostgres, type PgCluster, type StoreKind } from './postgres.js';
import { tempDir } from './proc.js';

export { postgresMissing, storeKinds, type StoreKind } from './postgres.js';

let cluster: Promise<PgCluster> | undefined;

/** This file's cluster, started at the first call. */
export function pgCluster(): Promise<PgCluster> {
  cluster ??= startPostgres();
  return cluster;
}

/** Stops this file's cluster, if one was started (afterAll). */
export async function stopPgCluster(): Promise<void> {
  const started = cluster;
  cluster = undefined;
  const c = await started?.catch(() => undefined);
  await c?.stop();
}

/** A fresh, empty store location of `kind`. */
export async function newStore(kind: StoreKind): Promise<string> {
  return kind === 'leveldb' ? join(tempDir(), 'db') : (await pgCluster()).createDatabase();
}

export type OpenedStore = TaskStore & { loadPools(): Promise<[string, PoolSettings][]> };

export async function openStore(kind: StoreKind, location: string): Promise<OpenedStore> {
  return kind === 'leveldb' ? Store.open(location) : PostgresStore.open(location);
}

/** dhub's arguments for a store at `location` (a PostgreSQL store keeps its local files in `db`). */
export function storeArgs(kind: StoreKind, location: string): string[] {
  return kind === 'leveldb' ? [] : ['--store', location];
}

/** Every task stored at `location`, by name (the store opened and closed again). */
export async function storedTasks(kind: StoreKind, location: string): Promise<Map<string, TaskRecord>> {
  const store = await openStore(kind, location);
  try {
    const tasks = new Map<string, TaskRecord>();
    for (const r of await store.loadAll()) tasks.set(r.spec.name, r);
    return tasks;
  } finally {
    await store.close();
  }
}

/**
 * What is wrong with a finished run as its state logs record it: a task not done, done other than
 * once, or first run before one of its dependencies was done. Empty when all is well.
 */
export function runProblems(tasks: ReadonlyMap<string, TaskRecord>): string[] {
  const problems: string[] = [];
  const doneAt = (r: TaskRecord | undefined): number => r?.log.find((c) => c.state === 'done')?.at ?? NaN;
  for (const t of tasks.values()) {
    if (t.state !== 'done') problems.push(`${t.spec.name} is ${t.state}`);
    const dones = t.log.filter((c) => c.state === 'done').length;
    if (dones !== 1) problems.push(`${t.spec.name} recorded done ${dones} times`);
    const firstRun = t.log.find((c) => c.state === 'running')?.at ?? NaN;
    for (const dep of t.spec.deps) if (!(firstRun >= doneAt(tasks.get(dep)))) problems.push(`${t.spec.name} ran before ${dep} was done`);
  }
  return problems;
}
