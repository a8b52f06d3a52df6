/**
 * The hub's store: task records in LevelDB, one key per task. The graph decides what changed;
 * the store only writes it, in one batch per group commit.
 */
import { Level } from 'level';
import { DagworkError } from './errors.js';
import type { TaskRecord } from './graph/types.js';
import { decodeRecord, encodeRecord } from './wire/codec.js';

/** Bumped when the layout of the store changes; a hub refuses a store newer than itself. */
export const STORE_FORMAT = 1;
const FORMAT_KEY = 'meta:format';
const TASK_PREFIX = 't:';
// ';' sorts right after ':', so [t:, t;) holds exactly the task keys.
const TASK_END = 't;';

export interface StoreOptions {
  /** fsync every group commit (survives power loss, not only a crash of the hub). Default false. */
  sync: boolean;
}

type Db = Level<string, Uint8Array>;

/** What the hub needs of a store: a way in, a way out. Tests wrap the real one to inject faults. */
export interface TaskStore {
  /** Every stored task record. */
  loadAll(): Promise<TaskRecord[]>;
  /** Writes the records atomically: all or none. */
  write(records: readonly TaskRecord[]): Promise<void>;
  close(): Promise<void>;
}

export class Store implements TaskStore {
  private constructor(
    private readonly db: Db,
    readonly location: string,
    private readonly options: StoreOptions,
  ) {}

  /** Opens (creating if needed) the store at `location`; clear errors for a locked, unwritable or newer store. */
  static async open(location: string, options: StoreOptions = { sync: false }): Promise<Store> {
    const db: Db = new Level<string, Uint8Array>(location, { valueEncoding: 'view' });
    try {
      await db.open();
    } catch (err) {
      const code = errorCode(err);
      if (code === 'LEVEL_LOCKED') {
        throw new DagworkError('STORE_FAILED', `the store ${location} is in use by another dhub (LevelDB lock held); stop that hub or use another --db`, {
          cause: err,
        });
      }
      throw new DagworkError('STORE_FAILED', `cannot open the store ${location}: ${causeMessage(err)}`, { cause: err });
    }
    const store = new Store(db, location, options);
    try {
      await store.checkFormat();
    } catch (err) {
      await db.close();
      throw err;
    }
    return store;
  }

  private async checkFormat(): Promise<void> {
    const stored = await this.db.get(FORMAT_KEY);
    if (stored === undefined) {
      await this.db.put(FORMAT_KEY, new TextEncoder().encode(String(STORE_FORMAT)), { sync: true });
      return;
    }
    const format = Number(new TextDecoder().decode(stored));
    if (!(format <= STORE_FORMAT)) {
      throw new DagworkError('STORE_FAILED', `the store ${this.location} has format ${format}, newer than this dhub's ${STORE_FORMAT}: upgrade dagwork`);
    }
  }

  /** Every stored task record, read in large batches (a restart reads millions). */
  async loadAll(): Promise<TaskRecord[]> {
    const records: TaskRecord[] = [];
    const values = this.db.values({ gte: TASK_PREFIX, lt: TASK_END });
    try {
      for (let batch = await values.nextv(10_000); batch.length > 0; batch = await values.nextv(10_000)) {
        for (const value of batch) records.push(decodeRecord(value));
      }
    } finally {
      await values.close();
    }
    return records;
  }

  /**
   * Writes `records` in one atomic batch. The records are encoded before this returns its promise,
   * so later changes to them do not leak into this write.
   */
  write(records: readonly TaskRecord[]): Promise<void> {
    if (records.length === 0) return Promise.resolve();
    const batch = records.map((r) => ({ type: 'put' as const, key: TASK_PREFIX + r.spec.name, value: encodeRecord(r) }));
    return this.db.batch(batch, { sync: this.options.sync });
  }

  async close(): Promise<void> {
    await this.db.close();
  }
}

function errorCode(err: unknown): string | undefined {
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    const code = (e as { code?: unknown }).code;
    if (code === 'LEVEL_LOCKED') return code;
  }
  return (err as { code?: string } | undefined)?.code;
}

function causeMessage(err: unknown): string {
  const messages: string[] = [];
  for (let e: unknown = err; e instanceof Error; e = e.cause) messages.push(e.message);
  return messages.join(': ') || String(err);
}
