/**
 * The hub's store: task records in LevelDB, one key per task, in front of them a write-ahead log.
 * The graph decides what changed; the store writes it: one frame appended to the log per group
 * commit (durable when `write` resolves), and into LevelDB in the background, many commits at a
 * time, each task's latest record only. A start puts whatever the log still holds into LevelDB.
 */
import { Level } from 'level';
import { DagworkError } from '../../../proto/src/errors.js';
import type { TaskRecord } from '../../../proto/src/types.js';
import { Wal, type WalEntry } from './wal.js';
import { decodeRecord, encodeRecord } from './record.js';

/** Bumped when the layout of the store changes; a hub refuses a store newer than itself. */
export const STORE_FORMAT = 2; // 2: the write-ahead log
/** How long changes wait in the log before they go into LevelDB together (ms). */
const BACKGROUND_MS = 200;
/**
 * Records per LevelDB batch in the background. Preparing a batch runs on the event loop, so big
 * ones would hold up requests; between chunks the hub answers.
 */
const BACKGROUND_CHUNK = 1000;
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
  private wal: Wal | undefined;
  /** Logged, not yet in LevelDB: the latest value of each key. */
  private pending = new Map<string, Uint8Array>();
  private timer: NodeJS.Timeout | undefined;
  private background: Promise<void> | undefined;
  /** Why the last background write into LevelDB failed, if it did (it is retried). */
  lastBackgroundError: Error | undefined;

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
      const { wal, recovered } = Wal.open(location, options.sync);
      store.wal = wal;
      // What the last run logged but had not put into LevelDB goes there first.
      store.stage(recovered);
      await store.toLevel();
      if (store.lastBackgroundError !== undefined) throw store.lastBackgroundError;
    } catch (err) {
      store.wal?.close(false);
      await db.close();
      if (err instanceof DagworkError) throw err;
      throw new DagworkError('STORE_FAILED', `cannot open the store ${location}: ${causeMessage(err)}`, { cause: err });
    }
    return store;
  }

  private async checkFormat(): Promise<void> {
    const stored = await this.db.get(FORMAT_KEY);
    const format = stored === undefined ? 0 : Number(new TextDecoder().decode(stored));
    if (!(format <= STORE_FORMAT)) {
      throw new DagworkError('STORE_FAILED', `the store ${this.location} has format ${format}, newer than this dhub's ${STORE_FORMAT}: upgrade dagwork`);
    }
    // Older layouts are read as they are; the record says which hub may open the store now.
    if (format < STORE_FORMAT) await this.db.put(FORMAT_KEY, new TextEncoder().encode(String(STORE_FORMAT)), { sync: true });
  }

  /** Every stored task record, LevelDB's and the log's, read in large batches (a restart reads millions). */
  async loadAll(): Promise<TaskRecord[]> {
    await this.background;
    const logged = new Map(this.pending);
    const records: TaskRecord[] = [];
    const entries = this.db.iterator({ gte: TASK_PREFIX, lt: TASK_END });
    try {
      for (let batch = await entries.nextv(10_000); batch.length > 0; batch = await entries.nextv(10_000)) {
        for (const [key, value] of batch) if (!logged.has(key)) records.push(decodeRecord(value));
      }
    } finally {
      await entries.close();
    }
    for (const value of logged.values()) records.push(decodeRecord(value));
    return records;
  }

  /**
   * Writes `records` atomically: one frame appended to the log. When the promise resolves they
   * are durable. They are encoded before it returns, so later changes to them do not leak in.
   */
  write(records: readonly TaskRecord[]): Promise<void> {
    if (records.length === 0) return Promise.resolve();
    try {
      const entries = records.map((r) => ({ key: TASK_PREFIX + r.spec.name, value: encodeRecord(r) }));
      (this.wal as Wal).append(entries);
      this.stage(entries);
      return Promise.resolve();
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
  }

  async close(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.background;
    await this.toLevel();
    // With everything in LevelDB the log goes; otherwise the next start puts it there.
    this.wal?.close(this.pending.size === 0 && this.lastBackgroundError === undefined);
    await this.db.close();
  }

  private stage(entries: readonly WalEntry[]): void {
    for (const e of entries) this.pending.set(e.key, e.value);
    if (this.timer === undefined && this.pending.size > 0) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        void this.toLevel();
      }, BACKGROUND_MS);
    }
  }

  /** Puts what is pending into LevelDB in one batch, then drops the log segments it came from. */
  private toLevel(): Promise<void> {
    if (this.background !== undefined) return this.background;
    if (this.pending.size === 0) return Promise.resolve();
    const batch = this.pending;
    this.pending = new Map();
    const wal = this.wal as Wal;
    const segments = wal.rotate();
    const operations = [...batch].map(([key, value]) => ({ type: 'put' as const, key, value }));
    const writeAll = async (): Promise<void> => {
      for (let i = 0; i < operations.length; i += BACKGROUND_CHUNK) {
        await this.db.batch(operations.slice(i, i + BACKGROUND_CHUNK), { sync: this.options.sync });
      }
    };
    this.background = writeAll()
      .then(
        () => {
          wal.discard(segments);
          this.lastBackgroundError = undefined;
        },
        (err: unknown) => {
          // Still in the log; try again with whatever comes next (newer values win).
          this.lastBackgroundError = err instanceof Error ? err : new Error(String(err));
          for (const [key, value] of batch) if (!this.pending.has(key)) this.pending.set(key, value);
        },
      )
      .finally(() => {
        this.background = undefined;
        if (this.pending.size > 0) this.stage([]);
      });
    return this.background;
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
