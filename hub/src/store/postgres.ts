/**
 * The hub's store on PostgreSQL (dhub --store postgres://...): the same task records as the
 * LevelDB store (record.ts: a spec and a state record per task), one row a task, and pools'
 * settings, one row a pool. Every `write` is one transaction, committed before it resolves, with
 * one multi-row statement per kind of change (unnest of arrays), never a statement per task.
 *
 * Several hubs may share one database; one is active. It holds a session-level advisory lock on
 * ONE connection, and runs every write transaction on that same connection: a hub whose session
 * is gone can never commit, hence never acknowledge (the fence). Each takeover bumps the leader
 * epoch in the meta table; each write transaction checks it under a row lock (belt and braces).
 * The session is checked every second (a cheap query with a timeout) and on the connection's
 * error and end events; when it is lost the store says so once (`onLost`) and refuses writes.
 *
 * Durability is the server's: a commit returns when PostgreSQL's synchronous_commit says it is
 * durable (on by default: flushed to its disk; with synchronous replicas, on them too).
 */
import { randomBytes } from 'node:crypto';
import type { Client as PgClient, ClientConfig } from 'pg';
import { DagworkError } from '../../../proto/src/errors.js';
import type { PoolSettings, TaskRecord } from '../../../proto/src/types.js';
import { silentLogger, type Logger } from '../log.js';
import { decodeSplitRecord, encodeSpecRecord, encodeStateRecord } from './record.js';
import type { StoreChanges, TaskStore } from './store.js';

/** Bumped when the tables change; a hub refuses a database whose schema is newer than itself. */
export const PG_SCHEMA_VERSION = 1;
/** What the meta row's `marker` holds: this database is a dagwork store. */
export const PG_MARKER = 'dagwork store';
export const META_TABLE = 'dagwork_meta';
export const TASKS_TABLE = 'dagwork_tasks';
export const POOLS_TABLE = 'dagwork_pools';
/** Serializes the first hubs making the schema at once (a transaction-level advisory lock). */
const SCHEMA_LOCK_KEY = '7308475932187301'; // any constant: the same in every dhub
/** Rows read at a time at start. */
const READ_BATCH = 10_000;
/**
 * How often the active hub checks its session, and how long the connection may answer nothing at
 * all (a check waits behind a write in flight) before the session counts as lost (ms).
 */
const SESSION_CHECK_MS = 1000;
const SESSION_CHECK_TIMEOUT_MS = 5000;
/** A write in flight extends that silence by 1 s a MiB it carries: a large one may take long and is no sign of a lost session. */
const SILENCE_MS_PER_WRITE_BYTE = 1000 / (1 << 20);
/** How long connecting may take before it is refused (ms). */
const CONNECT_TIMEOUT_MS = 10_000;
/** TCP keepalive on the connection, so that a dead server or network is noticed (ms before the first probe). */
const KEEPALIVE_DELAY_MS = 5000;
/** Unreadable rows named in a refusal (all are counted). */
const NAMED_BAD_RECORDS = 10;
/** Most bytes of records one write statement carries (bytea is at most 1 GiB); a larger group commit is several in one transaction. */
const WRITE_CHUNK_BYTES = 64 << 20;
/**
 * Raised inside WRITE_SQL when a state write names a task with no stored spec: a failed cast
 * aborts the statement (its text holds a subquery, so the planner cannot fold it ahead).
 */
const NO_SPEC = 'dagwork: a task state without a stored spec';

/**
 * A group commit as one statement. The records travel in one binary bytea ($2), each cut out by
 * its 1-based offset and length; names and settings as text arrays. Every change is guarded by
 * the fence (the meta row, locked FOR SHARE, still at this hub's epoch: a takeover's update of it
 * waits for this statement, or this one finds the new epoch and changes nothing). A state write
 * for a task without a row fails the whole statement (its state would be lost, as LevelDB's
 * start would refuse it).
 */
const WRITE_SQL = `WITH fence AS (SELECT 1 FROM ${META_TABLE} WHERE leader_epoch = $1::bigint FOR SHARE),
full_rows AS (
  INSERT INTO ${TASKS_TABLE} (name, spec, state)
  SELECT u.n, substring($2::bytea FROM u.so FOR u.sl), substring($2::bytea FROM u.ao FOR u.al)
  FROM unnest($3::text[], $4::int[], $5::int[], $6::int[], $7::int[]) AS u(n, so, sl, ao, al)
  WHERE EXISTS (SELECT 1 FROM fence)
  ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, state = excluded.state
  RETURNING 1),
state_rows AS (
  UPDATE ${TASKS_TABLE} AS t SET state = substring($2::bytea FROM u.ao FOR u.al)
  FROM unnest($8::text[], $9::int[], $10::int[]) AS u(n, ao, al)
  WHERE t.name = u.n AND EXISTS (SELECT 1 FROM fence)
  RETURNING 1),
deleted_rows AS (DELETE FROM ${TASKS_TABLE} WHERE name = ANY($11::text[]) AND EXISTS (SELECT 1 FROM fence) RETURNING 1),
pools_set AS (
  INSERT INTO ${POOLS_TABLE} (pool, settings) SELECT * FROM unnest($12::text[], $13::text[]) WHERE EXISTS (SELECT 1 FROM fence)
  ON CONFLICT (pool) DO UPDATE SET settings = excluded.settings
  RETURNING 1),
pools_removed AS (DELETE FROM ${POOLS_TABLE} WHERE pool = ANY($14::text[]) AND EXISTS (SELECT 1 FROM fence) RETURNING 1)
SELECT (SELECT count(*) FROM fence)::text AS fence,
  CASE WHEN NOT EXISTS (SELECT 1 FROM fence) OR (SELECT count(*) FROM state_rows) = cardinality($8::text[]) THEN 0
  ELSE CAST('${NO_SPEC}: ' || (SELECT count(*) FROM state_rows) || ' of ' || cardinality($8::text[]) AS int) END AS checked`;

interface WriteChunk {
  bytes: number;
  blobs: Uint8Array[];
  fullNames: string[];
  /** Offset (1-based) and length in the bytea of each record: spec, state; state only. */
  fullSpec: number[];
  fullState: number[];
  stateNames: string[];
  stateOnly: number[];
  deleted: string[];
  poolsSet: [string, string][];
  poolsRemoved: string[];
  /** Appends `bytes` to the chunk's bytea: its [offset, length]. */
  add(bytes: Uint8Array): [number, number];
  values(epoch: number): unknown[];
}

function emptyChunk(): WriteChunk {
  const chunk: WriteChunk = {
    bytes: 0,
    blobs: [],
    fullNames: [],
    fullSpec: [],
    fullState: [],
    stateNames: [],
    stateOnly: [],
    deleted: [],
    poolsSet: [],
    poolsRemoved: [],
    add(bytes) {
      const at = chunk.bytes + 1;
      chunk.blobs.push(bytes);
      chunk.bytes += bytes.length;
      return [at, bytes.length];
    },
    values(epoch) {
      const every = (xs: number[], from: number): number[] => xs.filter((_, i) => i % 2 === from);
      return [
        String(epoch),
        Buffer.concat(chunk.blobs, chunk.bytes),
        chunk.fullNames,
        every(chunk.fullSpec, 0),
        every(chunk.fullSpec, 1),
        every(chunk.fullState, 0),
        every(chunk.fullState, 1),
        chunk.stateNames,
        every(chunk.stateOnly, 0),
        every(chunk.stateOnly, 1),
        chunk.deleted,
        chunk.poolsSet.map((p) => p[0]),
        chunk.poolsSet.map((p) => p[1]),
        chunk.poolsRemoved,
      ];
    },
  };
  return chunk;
}

export const isPostgresUrl = (url: string): boolean => /^postgres(ql)?:\/\//i.test(url);

/** `url` with its password (if any) replaced by ***: what logs and errors show. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    if (u.searchParams.has('password')) u.searchParams.set('password', '***');
    return u.toString();
  } catch {
    return url.replace(/^([^:]+:\/\/[^:/@]*):[^@/]*@/, '$1:***@');
  }
}

export interface PostgresStoreOptions {
  log: Logger;
  /** Called once when the active hub's database session is lost (it can no longer commit). */
  onLost: (error: Error) => void;
}

type Pg = typeof import('pg');

async function loadPg(): Promise<Pg> {
  try {
    const mod = (await import('pg')) as Pg & { default?: Pg };
    return mod.default ?? mod;
  } catch (err) {
    throw new DagworkError('STORE_FAILED', `a postgres:// store needs the npm package pg, which cannot be loaded (${(err as Error).message}): install it next to dagwork (npm install pg)`, {
      cause: err,
    });
  }
}

/** Where and who, from the URL: for messages (never the password). */
interface Target {
  shown: string;
  host: string;
  port: number;
  user: string;
  database: string;
}

/** Checks a --store URL before anything is opened: a DagworkError INVALID_ARGUMENT naming the problem. */
export function checkStoreUrl(url: string): void {
  parseTarget(url);
}

function parseTarget(url: string): Target {
  if (!isPostgresUrl(url)) throw new DagworkError('INVALID_ARGUMENT', `--store ${redactUrl(url)} is not a postgres:// or postgresql:// URL (postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE)`);
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new DagworkError('INVALID_ARGUMENT', `--store ${redactUrl(url)} is not a valid URL (postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE)`);
  }
  const database = decodeURIComponent(u.pathname.replace(/^\//, ''));
  if (database === '') throw new DagworkError('INVALID_ARGUMENT', `--store ${redactUrl(url)} names no database (postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE)`);
  return { shown: redactUrl(url), host: u.hostname || 'localhost', port: Number(u.port || 5432), user: decodeURIComponent(u.username), database };
}

/** A message for a failed connection or query: what PostgreSQL or the network said, never the password. */
function describe(err: unknown, url?: string): string {
  const e = err as { message?: string; code?: string };
  let message = e?.message ?? String(err);
  if (message === '' && err instanceof AggregateError) message = err.errors.map((x: Error) => x.message).join('; ');
  if (url !== undefined) {
    const password = (() => {
      try {
        return decodeURIComponent(new URL(url).password);
      } catch {
        return '';
      }
    })();
    if (password !== '') message = message.split(password).join('***');
  }
  return message;
}

/** The leader lock's key: the store id's 64 bits as a signed bigint (PostgreSQL's advisory lock key). */
const leaderKey = (id: string): string => BigInt.asIntN(64, BigInt(`0x${id}`)).toString();

export class PostgresStore implements TaskStore {
  id = '';
  readonly location: string;
  private epoch = 0;
  private active = false;
  private lost: Error | undefined;
  private closed = false;
  /** Connected once: a failed connect is refused by `connect`, not reported as a lost session. */
  private connected = false;
  private checkTimer: NodeJS.Timeout | undefined;
  private checking = false;
  /** When the leader connection last answered a query (ms since the epoch). */
  private lastAnswerMs = Date.now();
  /** Bytes of records the write statement in flight carries (0: none). */
  private writingBytes = 0;

  private constructor(
    private readonly client: PgClient,
    private readonly target: Target,
    private readonly options: PostgresStoreOptions,
  ) {
    this.location = target.shown;
  }

  /**
   * Connects to the database at `url`, makes or checks the schema, reads the store's id. Clear
   * errors for an unreachable database, wrong credentials, a newer schema, another program's
   * database. Not yet active: see `tryLead`.
   */
  static async connect(url: string, options: Partial<PostgresStoreOptions> = {}): Promise<PostgresStore> {
    const target = parseTarget(url);
    const pg = await loadPg();
    const config: ClientConfig = {
      connectionString: url,
      keepAlive: true,
      keepAliveInitialDelayMillis: KEEPALIVE_DELAY_MS,
      connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
      application_name: 'dhub',
    };
    const client = new pg.Client(config);
    const settings: PostgresStoreOptions = { log: options.log ?? silentLogger, onLost: options.onLost ?? (() => undefined) };
    const store = new PostgresStore(client, target, settings);
    // Before connect: an error event with no listener would end the process.
    client.on('error', (err) => store.sessionLost(err));
    client.on('end', () => store.sessionLost(new Error('the connection to the database ended')));
    try {
      await client.connect();
      store.connected = true;
    } catch (err) {
      store.closed = true;
      await client.end().catch(() => undefined);
      throw new DagworkError('STORE_FAILED', connectProblem(err, target, url), { cause: err });
    }
    try {
      store.id = await store.prepareSchema();
    } catch (err) {
      store.closed = true;
      await client.end().catch(() => undefined);
      if (err instanceof DagworkError) throw err;
      throw new DagworkError('STORE_FAILED', `cannot prepare the store ${target.shown}: ${describe(err, url)}`, { cause: err });
    }
    return store;
  }

  /** Connects and waits for nothing: takes the leader lock now, or refuses (another hub is active). */
  static async open(url: string, options: Partial<PostgresStoreOptions> = {}): Promise<PostgresStore> {
    const store = await PostgresStore.connect(url, options);
    try {
      if (!(await store.tryLead())) throw new DagworkError('STORE_FAILED', `the store ${store.location} is in use by another active dhub (it holds the leader lock)`);
    } catch (err) {
      await store.close();
      throw err;
    }
    return store;
  }

  /** Makes the tables in an empty database, or checks a dagwork one; returns the store id. */
  private async prepareSchema(): Promise<string> {
    const c = this.client;
    await c.query('BEGIN');
    try {
      await c.query('SELECT pg_advisory_xact_lock($1::bigint)', [SCHEMA_LOCK_KEY]);
      const exists = (await c.query<{ ok: boolean }>('SELECT to_regclass($1) IS NOT NULL AS ok', [META_TABLE])).rows[0]?.ok === true;
      const id = exists ? await this.checkSchema() : await this.createSchema();
      await c.query('COMMIT');
      return id;
    } catch (err) {
      await c.query('ROLLBACK').catch(() => undefined);
      throw err;
    }
  }

  private async checkSchema(): Promise<string> {
    const notOurs = `the database ${this.target.shown} has a table ${META_TABLE} that is not dagwork's (no "${PG_MARKER}" marker): give dagwork a database of its own`;
    let row: { marker: string; schema_version: number; store_id: string } | undefined;
    try {
      row = (await this.client.query<{ marker: string; schema_version: number; store_id: string }>(`SELECT marker, schema_version, store_id FROM ${META_TABLE}`)).rows[0];
    } catch (err) {
      throw new DagworkError('STORE_FAILED', `${notOurs} (${describe(err)})`, { cause: err });
    }
    if (row === undefined || row.marker !== PG_MARKER) throw new DagworkError('STORE_FAILED', notOurs);
    if (row.schema_version > PG_SCHEMA_VERSION) {
      throw new DagworkError('STORE_FAILED', `the store ${this.target.shown} has schema version ${row.schema_version}, newer than this dhub (${PG_SCHEMA_VERSION}): upgrade dhub`);
    }
    // Older schemas are migrated here, in this transaction; version 1 is the first.
    return row.store_id;
  }

  private async createSchema(): Promise<string> {
    const c = this.client;
    const others = await c.query<{ name: string }>(
      `SELECT schemaname || '.' || tablename AS name FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1 LIMIT 6`,
    );
    if (others.rows.length > 0) {
      const names = others.rows.slice(0, 5).map((r) => r.name);
      throw new DagworkError(
        'STORE_FAILED',
        `the database ${this.target.shown} holds tables of another program (${names.join(', ')}${others.rows.length > 5 ? ', ...' : ''}) and no dagwork meta table: give dagwork a database of its own (CREATE DATABASE dagwork)`,
      );
    }
    const id = randomBytes(8).toString('hex');
    await c.query(`CREATE TABLE ${META_TABLE} (
      marker text NOT NULL,
      schema_version integer NOT NULL,
      store_id text NOT NULL,
      leader_epoch bigint NOT NULL,
      one boolean PRIMARY KEY DEFAULT true CHECK (one)
    )`);
    await c.query(`CREATE TABLE ${TASKS_TABLE} (name text COLLATE "C" PRIMARY KEY, spec bytea NOT NULL, state bytea NOT NULL)`);
    await c.query(`CREATE TABLE ${POOLS_TABLE} (pool text COLLATE "C" PRIMARY KEY, settings text NOT NULL)`);
    await c.query(`INSERT INTO ${META_TABLE} (marker, schema_version, store_id, leader_epoch) VALUES ($1, $2, $3, 0)`, [PG_MARKER, PG_SCHEMA_VERSION, id]);
    this.options.log.info(`made the store's tables in ${this.target.shown} (schema version ${PG_SCHEMA_VERSION}, store ${id})`);
    return id;
  }

  /**
   * Tries to become the active hub: the leader lock, on this connection; on success bumps the
   * leader epoch and starts checking the session. False when another hub holds it.
   */
  async tryLead(): Promise<boolean> {
    if (this.active) return true;
    this.refuseIfLost();
    let got: boolean;
    try {
      got = (await this.client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1::bigint) AS ok', [leaderKey(this.id)])).rows[0]?.ok === true;
    } catch (err) {
      throw this.failure('cannot ask for the leader lock', err);
    }
    if (!got) return false;
    try {
      this.epoch = Number((await this.client.query<{ e: string }>(`UPDATE ${META_TABLE} SET leader_epoch = leader_epoch + 1 RETURNING leader_epoch AS e`)).rows[0]?.e);
    } catch (err) {
      throw this.failure('cannot bump the leader epoch', err);
    }
    this.active = true;
    this.lastAnswerMs = Date.now();
    this.scheduleCheck();
    return true;
  }

  /** The leader epoch this hub took over at (0 before). */
  get leaderEpoch(): number {
    return this.epoch;
  }

  async loadAll(): Promise<TaskRecord[]> {
    const records: TaskRecord[] = [];
    await this.loadEach((record) => records.push(record));
    return records;
  }

  /**
   * Every task record handed to `sink` as its page is read (TaskStore.loadEach): pages of
   * READ_BATCH rows in name order, the next one asked for before the current one is decoded, so
   * that the database reads while the graph is built and no array of every record is held.
   */
  async loadEach(sink: (record: TaskRecord) => void): Promise<void> {
    this.refuseIfLost();
    const bad: string[] = [];
    let badCount = 0;
    const page = (after: string | undefined): Promise<[string, Buffer, Buffer][]> =>
      this.answered(
        this.client.query<[string, Buffer, Buffer]>({
          text:
            after === undefined
              ? `SELECT name, spec, state FROM ${TASKS_TABLE} ORDER BY name LIMIT ${READ_BATCH}`
              : `SELECT name, spec, state FROM ${TASKS_TABLE} WHERE name > $1 ORDER BY name LIMIT ${READ_BATCH}`,
          values: after === undefined ? [] : [after],
          rowMode: 'array',
        }),
      ).then((result) => result.rows);
    let next: Promise<[string, Buffer, Buffer][]> | undefined = page(undefined);
    while (next !== undefined) {
      let rows: [string, Buffer, Buffer][];
      try {
        rows = await next;
      } catch (err) {
        throw this.failure('cannot read the tasks', err);
      }
      const last = rows.length === READ_BATCH ? (rows[rows.length - 1] as [string, Buffer, Buffer])[0] : undefined;
      next = last === undefined ? undefined : page(last);
      // Awaited at the next turn; if the sink throws first, its failure must not go unhandled.
      next?.catch(() => undefined);
      for (const [name, spec, state] of rows) {
        let record: TaskRecord;
        try {
          record = decodeSplitRecord(spec, state);
        } catch (err) {
          badCount++;
          if (bad.length < NAMED_BAD_RECORDS) bad.push(`task ${JSON.stringify(name)}: ${(err as Error).message}`);
          continue;
        }
        sink(record);
      }
    }
    if (badCount > 0) {
      throw new DagworkError(
        'STORE_FAILED',
        `the store ${this.location} holds ${badCount === 1 ? 'a task row' : `${badCount} task rows`} that cannot be read: ${bad.join('; ')}${badCount > bad.length ? `; and ${badCount - bad.length} more` : ''}. Nothing was changed; delete the row (DELETE FROM ${TASKS_TABLE} WHERE name = ...) to start without it`,
      );
    }
  }

  async loadPools(): Promise<[string, PoolSettings][]> {
    this.refuseIfLost();
    let rows: [string, string][];
    try {
      rows = (await this.client.query<[string, string]>({ text: `SELECT pool, settings FROM ${POOLS_TABLE} ORDER BY pool`, rowMode: 'array' })).rows;
    } catch (err) {
      throw this.failure('cannot read the pools', err);
    }
    return rows.map(([pool, text]) => {
      let s: Partial<PoolSettings>;
      try {
        s = JSON.parse(text) as Partial<PoolSettings>;
      } catch (err) {
        throw new DagworkError('STORE_FAILED', `the store ${this.location} holds settings of pool ${JSON.stringify(pool)} that are not JSON: ${(err as Error).message}`);
      }
      const maxRunning = s.maxRunning ?? 0;
      if (!Number.isInteger(maxRunning) || maxRunning < 0) throw new DagworkError('STORE_FAILED', `the store ${this.location} holds settings of pool ${JSON.stringify(pool)} with max running ${String(maxRunning)}, not a count`);
      const command = (value: unknown): string => (typeof value === 'string' ? value : '');
      return [pool, { maxRunning, paused: s.paused === true, jobVerifier: command(s.jobVerifier), resultVerifier: command(s.resultVerifier) }];
    });
  }

  /**
   * One transaction, committed before it resolves: usually one statement (WRITE_SQL: the epoch
   * checked under a row lock, then every kind of change, many rows each), prepared once per
   * connection; a group commit of more than WRITE_CHUNK_BYTES of records is several such
   * statements between BEGIN and COMMIT.
   */
  async write(records: readonly TaskRecord[], changes?: StoreChanges): Promise<void> {
    const deleted = changes?.deleted ?? [];
    const pools = changes?.pools ?? [];
    if (records.length === 0 && deleted.length === 0 && pools.length === 0) return;
    this.refuseIfLost();
    if (!this.active) throw new DagworkError('STORE_FAILED', `the store ${this.location} is not held by this hub (another hub is active)`);
    // A statement may touch a row once: the latest record of each task wins, and a deletion wins
    // over a record of the same write (as in the LevelDB store, where it comes after).
    const gone = new Set(deleted);
    const specs = changes?.specs;
    const latest = new Map<string, { record: TaskRecord; spec: boolean }>();
    for (const r of records) {
      const name = r.spec.name;
      if (gone.has(name)) continue;
      const spec = specs === undefined || specs.has(name) || latest.get(name)?.spec === true;
      latest.set(name, { record: r, spec });
    }
    const poolRows = new Map<string, string | undefined>();
    for (const [pool, settings] of pools) poolRows.set(pool, settings === undefined ? undefined : JSON.stringify(settings));
    const chunks: WriteChunk[] = [];
    let chunk = emptyChunk();
    for (const [name, { record, spec }] of latest) {
      const state = encodeStateRecord(record);
      if (spec) {
        const specBytes = encodeSpecRecord(record.spec, record.seq);
        chunk.fullNames.push(name);
        chunk.fullSpec.push(...chunk.add(specBytes));
        chunk.fullState.push(...chunk.add(state));
      } else {
        chunk.stateNames.push(name);
        chunk.stateOnly.push(...chunk.add(state));
      }
      if (chunk.bytes >= WRITE_CHUNK_BYTES) {
        chunks.push(chunk);
        chunk = emptyChunk();
      }
    }
    chunk.deleted = [...gone];
    for (const [pool, settings] of poolRows) {
      if (settings === undefined) chunk.poolsRemoved.push(pool);
      else chunk.poolsSet.push([pool, settings]);
    }
    chunks.push(chunk);
    const c = this.client;
    const several = chunks.length > 1;
    try {
      if (several) await this.answered(c.query('BEGIN'));
      for (const part of chunks) {
        this.writingBytes = part.bytes;
        const row = (await this.answered(c.query<{ fence: string }>({ name: 'dagwork_write', text: WRITE_SQL, values: part.values(this.epoch) }))).rows[0];
        if (row?.fence !== '1') {
          const fenced = new DagworkError('STORE_FAILED', `another hub took over the store ${this.location} (the leader epoch is no longer this hub's ${this.epoch}): this hub is fenced; nothing of this write was kept`);
          // Whatever let it happen, this hub is no longer the leader: as if its session were gone.
          this.sessionLost(fenced);
          throw fenced;
        }
      }
      if (several) await this.answered(c.query('COMMIT'));
      this.writingBytes = 0;
    } catch (err) {
      this.writingBytes = 0;
      if (several && !this.closed && this.lost === undefined) await c.query('ROLLBACK').catch(() => undefined);
      if (err instanceof DagworkError) throw err;
      if ((err as { code?: string }).code === '22P02' && String((err as Error).message).includes(NO_SPEC)) {
        throw new DagworkError('STORE_FAILED', `the store ${this.location}: cannot write ${latest.size} tasks: a state write names a task with no stored spec; nothing of this write was kept`, { cause: err });
      }
      throw this.failure(`cannot write ${latest.size} tasks, ${gone.size} deletions and ${poolRows.size} pool settings`, err);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.checkTimer);
    this.checkTimer = undefined;
    // Ending the session releases the leader lock.
    await this.client.end().catch(() => undefined);
  }

  private refuseIfLost(): void {
    if (this.lost !== undefined) throw new DagworkError('STORE_FAILED', `lost the session with the store ${this.location}: ${this.lost.message}`, { cause: this.lost });
    if (this.closed) throw new DagworkError('STORE_FAILED', `the store ${this.location} is closed`);
  }

  private failure(what: string, err: unknown): DagworkError {
    return new DagworkError('STORE_FAILED', `the store ${this.location}: ${what}: ${describe(err)}`, { cause: err });
  }

  /** The session is gone (or cannot be trusted): refuse everything from now on, say so once. */
  private sessionLost(err: Error): void {
    if (this.closed || !this.connected || this.lost !== undefined) return;
    this.lost = err;
    clearTimeout(this.checkTimer);
    this.checkTimer = undefined;
    // Without the session the lock is gone: another hub may take over. End ours for good.
    this.client.end().catch(() => undefined);
    try {
      this.options.onLost(err);
    } catch (callbackError) {
      this.options.log.error(`the store's onLost failed: ${(callbackError as Error).message}`);
    }
  }

  private scheduleCheck(): void {
    if (this.closed || this.lost !== undefined) return;
    this.checkTimer = setTimeout(() => {
      this.checkTimer = undefined;
      this.checkSession().catch((err: unknown) => this.sessionLost(err instanceof Error ? err : new Error(String(err))));
    }, SESSION_CHECK_MS);
  }

  /** Marks the connection as answering when `query` settles (the session check counts on it). */
  private answered<T>(query: Promise<T>): Promise<T> {
    return query.finally(() => {
      this.lastAnswerMs = Date.now();
    });
  }

  /**
   * A cheap query on the leader connection. It waits behind a write in flight, so the session
   * counts as lost only when the connection answered nothing at all for SESSION_CHECK_TIMEOUT_MS
   * (and 1 s a MiB of the write in flight).
   */
  private async checkSession(): Promise<void> {
    if (this.checking) return;
    this.checking = true;
    let timer: NodeJS.Timeout | undefined;
    try {
      const stalled = new Promise<never>((_, reject) => {
        timer = setInterval(() => {
          const silent = Date.now() - this.lastAnswerMs;
          if (silent > SESSION_CHECK_TIMEOUT_MS + this.writingBytes * SILENCE_MS_PER_WRITE_BYTE) reject(new Error(`the database answered nothing for ${silent} ms`));
        }, SESSION_CHECK_MS / 4);
      });
      await Promise.race([this.answered(this.client.query('SELECT 1')), stalled]);
    } finally {
      clearInterval(timer);
      this.checking = false;
    }
    this.scheduleCheck();
  }
}

/** Why connecting failed, in the operator's words: where, who, and what to change. */
function connectProblem(err: unknown, target: Target, url: string): string {
  const code = (err as { code?: string }).code;
  const where = `${target.host}:${target.port}`;
  const said = describe(err, url);
  switch (code) {
    case 'ECONNREFUSED':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'ETIMEDOUT':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `cannot reach the database at ${where} (${target.shown}): ${said || code}: is PostgreSQL running there, and the host and port right?`;
    case '28P01':
    case '28000':
      return `the database at ${where} refused user ${JSON.stringify(target.user)} (${target.shown}): ${said}: check the user and password in --store`;
    case '3D000':
      return `the database at ${where} has no database ${JSON.stringify(target.database)} (${target.shown}): create it (CREATE DATABASE ${target.database}) or name another`;
    default:
      if (/timeout/i.test(said)) return `cannot reach the database at ${where} (${target.shown}): ${said}`;
      return `cannot connect to the database at ${where} (${target.shown}): ${said || String(code)}`;
  }
}
