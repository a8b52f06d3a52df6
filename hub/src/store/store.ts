/**
 * The hub's store: task records in LevelDB, two keys per task (its spec, written when it is
 * created or replaced, and its state, written at every transition), in front of them a
 * write-ahead log. The graph decides what changed; the store writes it: one group commit appended
 * to the log per `write` (durable when it resolves), and into LevelDB in the background, many
 * commits at a time, each key's latest value only. A start reads what the log still holds (LevelDB
 * gets it in the background, as when running), then converts the records of older formats (one
 * key per task). A snapshot of every task (snapshot.ts), written at a clean stop and while the hub
 * runs (Store.checkpoint), is what a start reads in place of LevelDB's entries, with the log kept
 * since it was begun replayed over it.
 *
 * Failures: nothing is thrown from a timer or callback of the store. What goes wrong in the
 * background is logged (StoreOptions.log) and, where a client must hear of it, refused on the
 * next `write` (STORE_FAILED): a new log segment that cannot be opened (the log goes on in the
 * current one), LevelDB refusing the background write while the log is full (maxPendingBytes).
 */
import { Level } from 'level';
import { DagworkError } from '../../../proto/src/errors.js';
import type { PoolSettings, TaskRecord } from '../../../proto/src/types.js';
import { silentLogger, type Logger } from '../log.js';
import { CommitBuilder, type SegmentReport } from './frame.js';
import { decodeRecord, decodeSplitRecord, encodeSpecRecord, encodeStateRecord, RecordError, withStateRecord, writeSpecRecord, writeStateRecord } from './record.js';
import { WireWriter } from '../../../proto/src/wire-writer.js';
import { checkDirectory, checkFormat, describeBytes, dropRecords, FORMAT_KEY, storeId, unreadableRecords } from './startup.js';
import { randomBytes } from 'node:crypto';
import { existsSync, lstatSync, rmSync, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { readSnapshot, SNAPSHOT_FILE, SnapshotError, SnapshotWriter, type SnapshotMark } from './snapshot.js';
import { Wal } from './wal.js';

/** Bumped when the layout of the store changes; a hub refuses a store newer than itself. */
export const STORE_FORMAT = 7; // 2: the write-ahead log; 3: log frames of bounded size (frame.ts); 4: params, files and barriers in records (record.ts); 5: deletions (an empty value in the log) and pool settings (POOL_PREFIX); 6: a task's spec and state under two keys (SPEC_PREFIX, STATE_PREFIX); 7: a snapshot at a clean stop (SNAPSHOT_KEY)
/** How long changes wait in the log before they go into LevelDB together (ms). */
const BACKGROUND_MS = 200;
/** Longest wait before the background write into LevelDB is tried again after failures (ms). */
const BACKGROUND_RETRY_MAX_MS = 30_000;
/**
 * Records and bytes per LevelDB batch in the background. Preparing a batch runs on the event
 * loop, so big ones would hold up requests; between chunks the hub answers. The byte bound keeps
 * LevelDB's copy of a batch small when records are large (1,000 records of 1 MiB would be 1 GiB).
 */
const BACKGROUND_CHUNK = 1000;
const BACKGROUND_CHUNK_BYTES = 16 << 20;
/** Formats 2 to 5: a task's whole record under `t:NAME`; converted at open (convert). */
const TASK_PREFIX = 't:';
// ';' sorts right after ':', so [t:, t;) holds exactly the task keys.
const TASK_END = 't;';
/** Format 6: a task's spec record and its state record (record.ts), under `spec:NAME` and `state:NAME`. */
const SPEC_PREFIX = 'spec:';
const SPEC_END = 'spec;';
const STATE_PREFIX = 'state:';
const STATE_END = 'state;';
/**
 * Records read at a time from LevelDB at start, and converted per atomic batch. Batches of 10,000
 * (two ranges, one batch read ahead each) outlived young-generation collections and were copied
 * by them: 2,000 took 20% less CPU in a restart of 200,000 tasks.
 */
const READ_BATCH = 2_000;
/**
 * Bytes LevelDB reads ahead for one `nextv` at start. Its default (16 KiB) cuts a READ_BATCH of
 * small records into dozens of calls into the native side (a restart reads millions).
 */
const READ_AHEAD_BYTES = 16 << 20;
/**
 * Format 5: a pool's settings (pool_set), under `p:POOL`, as JSON ({"maxRunning": N, "paused": B,
 * "jobVerifier": CMD, "resultVerifier": CMD}; the verifiers came later in format 5: absent, none).
 * A store of format 4 has none: every pool without settings.
 */
const POOL_PREFIX = 'p:';
const POOL_END = 'p;';
/*
 * Format 5: a log entry with an empty value deletes its key (a task removed with its pool, a
 * pool's settings removed: Store.encode). No record encodes to nothing (a task's has its name), so
 * no older entry reads as a deletion; a hub of format 4 refuses a store of format 5 (checkFormat).
 */
/**
 * Format 7: the snapshot the store names ({"id", "bytes", "tasks", "log"} as JSON: snapshot.ts),
 * put after its file was in place. `log` is the first log segment written after the snapshot was
 * begun: the snapshot with every segment from it on replayed over it is what the store holds, so
 * those segments stay until another snapshot is named. A clean stop's names the segment after the
 * last (it needs none). A mark without `log` is the release before's, written at a clean stop
 * with the log empty behind it, which that release took out at its next start (so does it still:
 * it then reads LevelDB, and puts the kept segments there as any log). A hub of format 6, which
 * would write without a word of it, refuses a store of format 7 (checkFormat).
 */
const SNAPSHOT_KEY = 'meta:snapshot';
/** Past any log segment's number a store reaches (one a second for 8 million years): a mark naming one is not the store's. */
const MAX_SEGMENT = 2 ** 48;
/**
 * A snapshot while running is begun once the log since the last one holds this many times its
 * size (and StoreOptions.checkpointBytes): writing it then costs at most half as much again as
 * the log did, and a start reads the snapshot and at most about this many times its size of log.
 */
const CHECKPOINT_GROWTH = 2;
/** ... but never waits for more log than this: a start holds the kept log's latest records in memory. */
const CHECKPOINT_MAX_BYTES = 1 << 30;
/** The log kept for a snapshot, named or being written, is at most this many times what sets one off. */
const KEEP_FACTOR = 2;
/** Bytes a task's records take in a log frame, roughly: where a commit's first frame starts. */
const RECORD_BYTES_GUESS = 96;
/** Unreadable records named in a refusal (all are counted). */
const NAMED_BAD_RECORDS = 10;

export interface StoreOptions {
  /** fsync every group commit (survives power loss, not only a crash of the hub). Default false. */
  sync: boolean;
  /** Where the store reports what goes wrong in the background and what it found at open. Default: silent. */
  log?: Logger;
  /**
   * Largest log frame payload, in bytes: a bigger group commit is written as several frames,
   * replayed all or none. Default 32 MiB; 1 KiB to 1 GiB.
   */
  maxFrameBytes?: number;
  /**
   * Most bytes of records logged but not yet in LevelDB. Past it a write first waits for the
   * background write into LevelDB (backpressure), and is refused if LevelDB fails. Default 256 MiB.
   */
  maxPendingBytes?: number;
  /** Keys set aside at open under `dropped:KEY`, to start past unreadable records (dhub --drop-record). Default none. */
  dropRecords?: readonly string[];
  /**
   * Log bytes written since the last snapshot began after which the hub writes a new one while it
   * runs (Store.checkpoint), at least CHECKPOINT_GROWTH times the last one's size (up to
   * CHECKPOINT_MAX_BYTES); 0: only a clean stop writes one. Default 64 MiB.
   */
  checkpointBytes?: number;
}

type Settings = Required<StoreOptions>;

export function defaultStoreOptions(): Settings {
  return { sync: false, log: silentLogger, maxFrameBytes: 32 << 20, maxPendingBytes: 256 << 20, dropRecords: [], checkpointBytes: 64 << 20 };
}

function settingsOf(options: Partial<StoreOptions>): Settings {
  const s: Settings = { ...defaultStoreOptions(), ...options };
  if (!Number.isInteger(s.maxFrameBytes) || s.maxFrameBytes < 1024 || s.maxFrameBytes > 1 << 30) throw new TypeError(`maxFrameBytes ${s.maxFrameBytes} is not 1 KiB to 1 GiB`);
  if (!Number.isInteger(s.maxPendingBytes) || s.maxPendingBytes < 0) throw new TypeError(`maxPendingBytes ${s.maxPendingBytes} is not a byte count`);
  if (!Number.isSafeInteger(s.checkpointBytes) || s.checkpointBytes < 0) throw new TypeError(`checkpointBytes ${s.checkpointBytes} is not a byte count`);
  return s;
}

type Db = Level<string, Uint8Array>;

/**
 * What a write changes besides task records: tasks removed, pools' settings (undefined: none any
 * more), and which of the records have a new spec (created or replaced: Graph.takeNewSpecs). Without
 * `specs` every record's spec is written.
 */
export interface StoreChanges {
  deleted: readonly string[];
  pools: readonly (readonly [string, PoolSettings | undefined])[];
  specs?: ReadonlySet<string>;
}

/** What the hub needs of a store: a way in, a way out. Tests wrap the real one to inject faults. */
export interface TaskStore {
  /** Made when the store was created: a new store, a new id. */
  readonly id: string;
  /** Where it is, for logs (a directory, a URL without its password). Default: the hub's --db. */
  readonly location?: string;
  /** Every stored task record. */
  loadAll(): Promise<TaskRecord[]>;
  /**
   * Optional: the same records as `loadAll`, each handed to `sink` as soon as it is read, in no
   * particular order, none held after it: a restart then never holds every record at once (a
   * store without it is read through `loadAll`). Rejects as `loadAll` does, possibly after some
   * records went to `sink`; a record that `sink` throws for rejects the load. `expect`, when the
   * store knows how many records follow (a snapshot that checked out), is told so first.
   */
  loadEach?(sink: (record: TaskRecord) => void, expect?: (tasks: number) => void): Promise<void>;
  /** Every pool's stored settings (a store without any may leave this out). */
  loadPools?(): Promise<[string, PoolSettings][]>;
  /** Writes the records and `changes` atomically: all or none. */
  write(records: readonly TaskRecord[], changes?: StoreChanges): Promise<void>;
  /**
   * Closes the store. `tasks`, at a clean stop, gives every task as the graph holds it (what the
   * store holds, but for leases' renewals): a store may keep them to start faster next time.
   */
  close(tasks?: () => Iterable<TaskRecord>): Promise<void>;
  /**
   * Optional: a snapshot to write while the hub runs, when the store wants one now (the log since
   * the last is long); undefined otherwise. Asked after a write, when the graph holds nothing the
   * store was not given.
   */
  checkpoint?(): Checkpoint | undefined;
}

const toError = (err: unknown): Error => (err instanceof Error ? err : new Error(String(err)));

/**
 * A snapshot written while the hub runs (TaskStore.checkpoint): the hub adds every task, in its
 * creation order, each as it is at a moment when the graph holds nothing the log does not (all
 * written), between requests; then finishes it. Tasks may change between one add and the next:
 * the log from the snapshot's first segment on, replayed over it at a start, gives what the store
 * holds. Nothing here throws but `add` (the file's error, after which the snapshot is given up).
 */
export interface Checkpoint {
  /** `dependedOn` false: no task names it as a dependency now (its name is then not kept for back references). Default true. */
  add(record: TaskRecord, dependedOn?: boolean): void;
  /** Puts the snapshot in place and names it in the store (the log before it then goes); never rejects. */
  finish(): Promise<void>;
  /** Gives it up (the hub reloaded its graph, or stops): its file is deleted. */
  abort(): void;
}

class RunningCheckpoint implements Checkpoint {
  readonly started = Date.now();
  private phase: 'adding' | 'finishing' | 'ended' = 'adding';
  private finishing: Promise<void> | undefined;

  constructor(
    private readonly writer: SnapshotWriter,
    /** The first log segment written after it was begun. */
    readonly from: number,
    /** The log's bytes appended in this run when it was begun (Wal.appended). */
    readonly appendedAt: number,
    /** Names the snapshot, in place, in the store. */
    private readonly name: (mark: SnapshotMark & { log: number }) => Promise<void>,
    /** Told once how it ended: named (`mark`), failed (`error`) or given up (neither). */
    private readonly ended: (mark: (SnapshotMark & { log: number }) | undefined, error: unknown) => void,
  ) {}

  /** Its file was put in place (renamed over the snapshot before). */
  get placed(): boolean {
    return this.writer.placed;
  }

  /** Tasks are still being added (it may be given up). */
  get adding(): boolean {
    return this.phase === 'adding';
  }

  /** Bytes of the snapshot written so far. */
  get written(): number {
    return this.writer.written;
  }

  /** Its file was in place and the store's write of its mark failed (LevelDB's own log may then be torn). */
  nameFailed = false;

  add(record: TaskRecord, dependedOn = true): void {
    if (this.phase !== 'adding') throw new Error('a task added to a snapshot no longer being written');
    try {
      this.writer.add(record, dependedOn);
    } catch (err) {
      this.end(undefined, err);
      throw err;
    }
  }

  finish(): Promise<void> {
    if (this.finishing !== undefined) return this.finishing;
    if (this.phase === 'ended') return Promise.resolve();
    this.phase = 'finishing';
    this.finishing = (async () => {
      let mark: SnapshotMark & { log: number };
      try {
        mark = { ...(await this.writer.finish()), log: this.from, made: true };
      } catch (err) {
        this.end(undefined, err);
        return;
      }
      try {
        await this.name(mark);
      } catch (err) {
        this.nameFailed = true;
        this.end(undefined, err);
        return;
      }
      this.end(mark, undefined);
    })();
    return this.finishing;
  }

  abort(): void {
    if (this.phase === 'adding') this.end(undefined, undefined);
  }

  /** Waits for a finish under way; gives up a snapshot still being added to. */
  async close(): Promise<void> {
    if (this.finishing !== undefined) await this.finishing;
    else this.abort();
  }

  private end(mark: (SnapshotMark & { log: number }) | undefined, error: unknown): void {
    if (this.phase === 'ended') return;
    this.phase = 'ended';
    if (mark === undefined) this.writer.abort();
    try {
      this.ended(mark, error);
    } catch {
      // The store's bookkeeping and its log line: nothing to throw into (finish never rejects).
    }
  }
}

/** A task's records logged but not yet in LevelDB: each undefined when not written since (empty: deleted). */
interface PendingTask {
  spec: Uint8Array | undefined;
  state: Uint8Array | undefined;
}

/**
 * What the log holds that LevelDB does not yet: each key's latest value. Task records by the
 * task's name (one entry for its two keys: a commit of many tasks stays cheap), other keys (pools'
 * settings; task records of older formats, met in a replay) by key. A written commit's values are
 * views into its log frames, which stay in memory until none is held: up to about twice the bytes
 * counted (keys, frame headers, and a frame buffer's room left from growing it by doubling).
 */
class Pending {
  readonly tasks = new Map<string, PendingTask>();
  readonly keys = new Map<string, Uint8Array>();
  /** Bytes of the keys and values held. */
  bytes = 0;

  /** Records held, as an operator counts them: a task's spec and state are one. */
  get size(): number {
    return this.tasks.size + this.keys.size;
  }

  /** Holds `spec` and `state` of task `name` (undefined: that one is not written). */
  task(name: string, spec: Uint8Array | undefined, state: Uint8Array | undefined): void {
    let held = this.tasks.get(name);
    if (held === undefined) {
      held = { spec: undefined, state: undefined };
      this.tasks.set(name, held);
    }
    if (spec !== undefined) {
      this.bytes += spec.length - (held.spec === undefined ? -(SPEC_PREFIX.length + name.length) : held.spec.length);
      held.spec = spec;
    }
    if (state !== undefined) {
      this.bytes += state.length - (held.state === undefined ? -(STATE_PREFIX.length + name.length) : held.state.length);
      held.state = state;
    }
  }

  /** Holds `value` under `key`, a task's record key or any other. */
  key(key: string, value: Uint8Array): void {
    if (key.startsWith(SPEC_PREFIX)) return this.task(key.slice(SPEC_PREFIX.length), value, undefined);
    if (key.startsWith(STATE_PREFIX)) return this.task(key.slice(STATE_PREFIX.length), undefined, value);
    const before = this.keys.get(key);
    this.bytes += value.length - (before === undefined ? -key.length : before.length);
    this.keys.set(key, value);
  }

  /** Holds a task's whole record of formats 2 to 5 (a log written by such a hub): convert reads them from LevelDB. */
  holdsOldRecords(): boolean {
    for (const key of this.keys.keys()) if (key.startsWith(TASK_PREFIX)) return true;
    return false;
  }

  /** Holds what `older` holds and this does not (a newer value wins). */
  under(older: Pending): void {
    for (const [name, held] of older.tasks) {
      const newer = this.tasks.get(name);
      this.task(name, newer?.spec === undefined ? held.spec : undefined, newer?.state === undefined ? held.state : undefined);
    }
    for (const [key, value] of older.keys) if (!this.keys.has(key)) this.key(key, value);
  }
}

export class Store implements TaskStore {
  id = '';
  private wal: Wal | undefined;
  /** Logged, not yet in LevelDB: the latest value of each key, and their bytes. */
  private pending = new Pending();
  /** Where a commit's records are written: into its log frames (CommitBuilder). */
  private readonly writer = new WireWriter();
  private timer: NodeJS.Timeout | undefined;
  private background: Promise<void> | undefined;
  private closing = false;
  /** Why the background write into LevelDB failed, and how many times in a row. */
  private levelError: Error | undefined;
  private levelFailures = 0;
  /** A new log segment could not be opened; `reported` once a write was refused for it. */
  private segmentTrouble: { error: Error; reported: boolean; attempts: number } | undefined;
  /**
   * A write into LevelDB failed in this run. LevelDB does not stop after a failed write to its own
   * log (only after a failed sync): it goes on appending after the torn record, and its next open
   * drops everything from there on. So from the first failure on no log segment is deleted, and
   * the next start puts them all into LevelDB again.
   */
  private levelUntrusted = false;
  /**
   * The snapshot the store names, which gives what the store holds with the log from its `log`
   * segment on replayed over it: those segments are kept (keepFrom) until the next snapshot.
   */
  private snapshot: (SnapshotMark & { log: number }) | undefined;
  /** The snapshot the first load reads (none once anything was written before it). */
  private toLoad: SnapshotMark | undefined;
  /** The kept log's records (from the snapshot's segment on, each key's latest), for the first load. */
  private overlay: Pending | undefined;
  /** A segment replayed at open was damaged: no snapshot is trusted. */
  private logDamaged = false;
  /** The last snapshot's size. */
  private lastSnapshotBytes = 0;
  /** The log's bytes since the last snapshot was begun (or tried): the kept segments' at open, then appends past `checkpointAt`. */
  private logBeforeRun = 0;
  private checkpointAt = 0;
  /** The log's bytes the named snapshot keeps: the kept segments' at open, then appends past `namedAt`. */
  private keptBeforeRun = 0;
  private namedAt = 0;
  /** The named snapshot being taken out of the store (its log grew past KEEP_FACTOR triggers). */
  private forgetting: Promise<void> | undefined;
  /** A snapshot being written while the hub runs. */
  private running: RunningCheckpoint | undefined;

  private constructor(
    private readonly db: Db,
    readonly location: string,
    private readonly options: Settings,
  ) {}

  /**
   * Opens (creating if needed) the store at `location`; clear errors for a locked, unwritable,
   * unrelated or newer store; replays what the log still holds into LevelDB, reporting damage.
   */
  static async open(location: string, options: Partial<StoreOptions> = {}): Promise<Store> {
    const settings = settingsOf(options);
    checkDirectory(location);
    const db: Db = new Level<string, Uint8Array>(location, { valueEncoding: 'view' });
    try {
      await db.open();
    } catch (err) {
      if (errorCode(err) === 'LEVEL_LOCKED') {
        throw new DagworkError('STORE_FAILED', `the store ${location} is in use by another dhub (LevelDB lock held); stop that hub or use another --db`, {
          cause: err,
        });
      }
      throw new DagworkError('STORE_FAILED', `cannot open the store ${location}: ${causeMessage(err)}`, { cause: err });
    }
    const store = new Store(db, location, settings);
    try {
      // The store's own records first: a dropped snapshot record is not read below.
      const meta = (k: string): boolean => k === FORMAT_KEY || k === SNAPSHOT_KEY;
      await dropRecords(db, settings.dropRecords.filter(meta), settings.log);
      const format = await checkFormat(db, location, STORE_FORMAT);
      const snapshot = await store.readSnapshotMark();
      // Segments are numbered past the snapshot's first: those it needs are never confused with new ones.
      const { wal, old } = Wal.open(location, { sync: settings.sync, maxFrameBytes: settings.maxFrameBytes }, snapshot?.log ?? 1);
      store.wal = wal;
      // An older release's mark was written with the log empty behind it: its log is this run's.
      const needs = snapshot === undefined ? undefined : (snapshot.log ?? (old.length === 0 ? wal.current : undefined));
      await store.replay(wal, old, needs);
      // What the log held goes into LevelDB in the background, as a running hub's log does (the
      // loads read it from memory meanwhile), unless records are dropped or converted, which
      // LevelDB must then hold first.
      const drops = settings.dropRecords.filter((k) => !meta(k));
      if (drops.length > 0 || (format > 0 && format < 6) || store.pending.holdsOldRecords()) await store.moveOrThrow();
      const dropped = await dropRecords(db, drops, settings.log);
      const converted = await store.convert();
      store.id = await storeId(db);
      if (snapshot !== undefined) {
        // A hub of an older format may have written after the snapshot: one started past the
        // format check (--drop-record meta:format) writes without taking the snapshot's record out.
        const changed =
          format < STORE_FORMAT
            ? `the store was opened by a dhub of format ${format}`
            : needs === undefined
              ? 'the log held changes'
              : !old.filter((n) => n >= needs).every((n, i) => n === needs + i) || (snapshot.made === true && !old.includes(needs))
                ? `a segment of the log it needs (from ${needs} on) is missing`
                : store.logDamaged
                  ? 'the log was damaged'
                  : converted > 0
                    ? 'records were converted'
                    : dropped > 0
                      ? 'records were dropped (--drop-record)'
                      : '';
        if (changed === '') {
          const mark = { ...snapshot, log: needs as number };
          store.toLoad = mark;
          store.lastSnapshotBytes = mark.bytes;
          store.keptBeforeRun = store.logBeforeRun;
          if (settings.checkpointBytes === 0) {
            // No snapshot while serving: this one is read once, and the log goes once LevelDB holds it.
            await db.del(SNAPSHOT_KEY, { sync: true });
          } else {
            // Its first segment exists from now on (this start made it, or one before): a start
            // that finds it gone must not read the snapshot without it.
            const taken = { ...mark, made: true as const };
            if (snapshot.log === undefined || snapshot.made !== true) await db.put(SNAPSHOT_KEY, markBytes(taken), { sync: true });
            store.snapshot = taken;
          }
        } else {
          store.overlay = undefined;
          await store.forgetSnapshot(`it is not used: ${changed} since it was written`);
        }
      }
      // The segments LevelDB holds go once no snapshot needs them (Store.moved).
      // (Scheduled after the first load, which would otherwise wait for it.)
      if (store.pending.size === 0) for (const e of wal.discard(old.filter((n) => n < store.keepFrom))) settings.log.warn(e.message);
    } catch (err) {
      store.wal?.close(false);
      await db.close();
      if (err instanceof DagworkError) throw err;
      throw new DagworkError('STORE_FAILED', `cannot open the store ${location}: ${causeMessage(err)}`, { cause: err });
    }
    return store;
  }

  /** The first log segment a snapshot needs (the named one, or one being written): this one and every later one are kept. */
  private get keepFrom(): number {
    return Math.min(this.snapshot?.log ?? Infinity, this.running?.from ?? Infinity);
  }

  private get snapshotPath(): string {
    return join(this.location, SNAPSHOT_FILE);
  }

  /**
   * The snapshot the store names (a clean stop's, or one written while the hub ran); a snapshot
   * file no marker names, or one half-written, is deleted. The mark stays: with the log it names
   * kept, the snapshot is good for every start until the next one replaces it.
   */
  private async readSnapshotMark(): Promise<SnapshotMark | undefined> {
    // A stop or a hub killed while it wrote a snapshot leaves the temporary file.
    const tmp = `${this.snapshotPath}.tmp`;
    try {
      rmSync(tmp, { force: true });
    } catch (err) {
      this.options.log.warn(`cannot delete ${tmp}: ${causeMessage(err)}; no snapshot is written while it is there`);
    }
    const stored = await this.db.get(SNAPSHOT_KEY);
    if (stored === undefined) {
      if (existsSync(this.snapshotPath)) this.dropSnapshot('the store does not name it (its stop was cut short, or the store lost its record of it)');
      return undefined;
    }
    try {
      const mark = JSON.parse(Buffer.from(stored).toString('utf8')) as Partial<SnapshotMark>;
      const count = (n: unknown): boolean => Number.isSafeInteger(n) && (n as number) >= 0;
      if (typeof mark.id === 'string' && count(mark.bytes) && count(mark.tasks) && (mark.log === undefined || (count(mark.log) && (mark.log as number) > 0 && (mark.log as number) < MAX_SEGMENT))) {
        return { id: mark.id, bytes: mark.bytes as number, tasks: mark.tasks as number, ...(mark.log === undefined ? {} : { log: mark.log }), ...(mark.made === true ? { made: true } : {}) };
      }
    } catch {
      // Said below.
    }
    await this.forgetSnapshot(`the store's record of it (${SNAPSHOT_KEY}) holds ${describeBytes(stored)}`);
    return undefined;
  }

  /**
   * Takes the snapshot out of the store (its mark first, durably, then its file): from then on
   * the log is kept only until LevelDB holds it, and starts read LevelDB.
   */
  private async forgetSnapshot(reason: string): Promise<void> {
    this.toLoad = undefined;
    this.overlay = undefined;
    try {
      await this.db.del(SNAPSHOT_KEY, { sync: true });
    } catch (err) {
      // The mark may still be there, naming segments: every one is kept (and LevelDB's own log may be torn: notMoved).
      this.levelUntrusted = true;
      throw err;
    }
    // Only now may the segments it kept go.
    this.snapshot = undefined;
    this.dropSnapshot(reason);
  }

  /** Deletes the snapshot file, saying why when there is a reason worth a line. */
  private dropSnapshot(reason: string): void {
    if (reason !== '') this.options.log.warn(`the snapshot ${this.snapshotPath}: ${reason}; the tasks are read from LevelDB`);
    try {
      // A directory put there is left alone, and said.
      if (lstatSync(this.snapshotPath).isDirectory()) {
        this.options.log.warn(`${this.snapshotPath} is a directory: it is left alone, and no snapshot is written while it is there`);
        return;
      }
    } catch {
      return; // gone
    }
    try {
      unlinkSync(this.snapshotPath);
    } catch (err) {
      if (errorCode(err) !== 'ENOENT') this.options.log.warn(`cannot delete the snapshot ${this.snapshotPath}: ${causeMessage(err)}`);
    }
  }

  /**
   * Reads what the last run logged, segment by segment, as a running hub's log: each key's latest
   * value waits in `pending` for LevelDB (moved there at once past maxPendingBytes); the entries
   * replayed. The records of segments from `overlayFrom` on are also held for the first load (a
   * snapshot's log).
   */
  private async replay(wal: Wal, old: readonly number[], overlayFrom: number | undefined): Promise<number> {
    const started = Date.now();
    let entries = 0;
    const overlay = overlayFrom === undefined ? undefined : new Pending();
    for (const n of old) {
      const commits = wal.replay(n);
      const kept = overlay !== undefined && n >= (overlayFrom as number) ? overlay : undefined;
      if (kept !== undefined) this.logBeforeRun += segmentBytes(wal.path(n));
      for (let next = commits.next(); ; next = commits.next()) {
        if (next.done === true) {
          this.report(wal, n, next.value);
          break;
        }
        for (const e of next.value) {
          this.pending.key(e.key, e.value);
          kept?.key(e.key, e.value);
        }
        entries += next.value.length;
        if (this.pending.bytes > this.options.maxPendingBytes) await this.moveOrThrow();
      }
    }
    this.overlay = overlay;
    if (old.length > 0) this.options.log.info(`replayed ${entries} log entries from ${old.length} segment(s) in ${Date.now() - started} ms (LevelDB gets them in the background)`);
    return entries;
  }

  private async moveOrThrow(): Promise<void> {
    await this.toLevel(false);
    if (this.levelError !== undefined) throw this.levelError;
  }

  private report(wal: Wal, n: number, report: SegmentReport): void {
    const log = this.options.log;
    const path = wal.path(n);
    if (report.damage.length > 0) this.logDamaged = true;
    if (report.torn !== undefined) {
      log.info(`${path}: dropped a torn tail of ${report.torn.bytes} bytes at byte ${report.torn.offset} (the last write, cut by a crash: never acknowledged)`);
    }
    for (const d of report.damage) {
      const lost =
        d.what === 'a corrupt frame'
          ? `${d.what} at byte ${d.offset}: ${d.frames === 1 ? `1 frame (${d.bytes} bytes)` : `${d.bytes} bytes (the frame's length was damaged too: how many frames is unknown)`} lost`
          : `${d.what} (at byte ${d.offset})`;
      log.error(`${path}: ${lost}; every sound frame after it was recovered; the segment is kept as ${wal.asidePath(n) ?? path}`);
    }
  }

  /**
   * Converts the whole records of formats 2 to 5 (`t:NAME`) into a spec and a state record, in
   * batches that each put the new keys and delete the old ones atomically: a crash at any point
   * leaves every task in one shape or the other, and the next open goes on. Records that cannot
   * be read stay as they are and are named (the way out: --drop-record). Returns how many were.
   */
  private async convert(): Promise<number> {
    const started = Date.now();
    const bad: { key: string; reason: string }[] = [];
    let badCount = 0;
    let converted = 0;
    const old = this.db.iterator({ gte: TASK_PREFIX, lt: TASK_END, highWaterMarkBytes: READ_AHEAD_BYTES });
    try {
      for (let batch = await old.nextv(READ_BATCH); batch.length > 0; batch = await old.nextv(READ_BATCH)) {
        const chunk = this.db.batch();
        for (const [key, value] of batch) {
          let record: TaskRecord;
          try {
            record = decodeRecord(value);
          } catch (err) {
            badCount++;
            if (bad.length < NAMED_BAD_RECORDS) bad.push({ key, reason: toError(err).message });
            continue;
          }
          const name = key.slice(TASK_PREFIX.length);
          chunk.put(SPEC_PREFIX + name, encodeSpecRecord(record.spec, record.seq));
          chunk.put(STATE_PREFIX + name, encodeStateRecord(record));
          chunk.del(key);
          converted++;
        }
        if (chunk.length > 0) await chunk.write({ sync: true });
        else await chunk.close();
      }
    } finally {
      await old.close();
    }
    if (badCount > 0) throw unreadableRecords(this.location, bad, badCount);
    if (converted > 0) this.options.log.info(`converted ${converted} task records of an older format in ${Date.now() - started} ms`);
    return converted;
  }

  /**
   * Every stored task record, LevelDB's and the log's: the spec and state ranges read side by side
   * in large batches and joined by name (both are in the names' order).
   */
  async loadAll(): Promise<TaskRecord[]> {
    const records: TaskRecord[] = [];
    await this.loadEach((record) => records.push(record));
    return records;
  }

  /**
   * Every stored task record handed to `sink` as it is read (TaskStore.loadEach): the first load
   * after a start, the snapshot the store names with the kept log's newer records (loadSnapshot);
   * otherwise LevelDB's in the names' order, then those only the log holds. Unreadable records
   * are counted and named at the end, as loadAll does; the records read meanwhile have gone to `sink`.
   */
  async loadEach(sink: (record: TaskRecord) => void, expect?: (tasks: number) => void): Promise<void> {
    await this.background;
    try {
      if (this.toLoad !== undefined && (await this.loadSnapshot(this.toLoad, sink, expect))) return;
      await this.loadStored(sink);
    } finally {
      // What the start read from the log goes into LevelDB now.
      this.schedule(BACKGROUND_MS);
    }
  }

  /** loadEach from LevelDB and the log's records not yet in it. */
  private async loadStored(sink: (record: TaskRecord) => void): Promise<void> {
    const logged = this.pending;
    const bad: { key: string; reason: string }[] = [];
    let badCount = 0;
    const refuse = (key: string, reason: string): void => {
      badCount++;
      if (bad.length < NAMED_BAD_RECORDS) bad.push({ key, reason });
    };
    /** Names met in LevelDB whose keys the log also holds (the log's are newer). */
    const seen = new Set<string>();
    /** Joins a task's two records; its name comes from a key, `specKey` when there is one. */
    const join = (specKey: string | undefined, stateKey: string | undefined, storedSpec: Uint8Array | undefined, storedState: Uint8Array | undefined): void => {
      let spec = storedSpec;
      let state = storedState;
      const nameOf = (): string => (specKey !== undefined ? specKey.slice(SPEC_PREFIX.length) : (stateKey as string).slice(STATE_PREFIX.length));
      if (logged.size > 0) {
        const name = nameOf();
        const held = logged.tasks.get(name);
        if (held !== undefined) {
          seen.add(name);
          spec = held.spec ?? spec;
          state = held.state ?? state;
        }
      }
      const hasSpec = spec !== undefined && spec.length > 0;
      const hasState = state !== undefined && state.length > 0;
      if (!hasSpec && !hasState) return; // deleted
      if (!hasSpec) return refuse(STATE_PREFIX + nameOf(), 'the state of a task whose spec record is missing');
      if (!hasState) return refuse(SPEC_PREFIX + nameOf(), 'the spec of a task whose state record is missing');
      let record: TaskRecord;
      try {
        record = decodeSplitRecord(spec as Uint8Array, state as Uint8Array);
      } catch (err) {
        return refuse(STATE_PREFIX + nameOf(), toError(err).message);
      }
      sink(record);
    };
    const specs = new Batches(this.db.iterator({ gte: SPEC_PREFIX, lt: SPEC_END, highWaterMarkBytes: READ_AHEAD_BYTES }));
    const states = new Batches(this.db.iterator({ gte: STATE_PREFIX, lt: STATE_END, highWaterMarkBytes: READ_AHEAD_BYTES }));
    try {
      await Promise.all([specs.fill(), states.fill()]);
      while (specs.entry !== undefined || states.entry !== undefined) {
        const specKey = specs.entry?.[0];
        const stateKey = states.entry?.[0];
        const order = specKey === undefined ? 1 : stateKey === undefined ? -1 : nameOrder(specKey, SPEC_PREFIX.length, stateKey, STATE_PREFIX.length);
        if (order === 0) {
          join(specKey, stateKey, specs.entry?.[1], states.entry?.[1]);
          if (specs.advance()) await specs.fill();
          if (states.advance()) await states.fill();
        } else if (order < 0) {
          join(specKey, undefined, specs.entry?.[1], undefined);
          if (specs.advance()) await specs.fill();
        } else {
          join(undefined, stateKey, undefined, states.entry?.[1]);
          if (states.advance()) await states.fill();
        }
      }
    } finally {
      await specs.close();
      await states.close();
    }
    for (const name of logged.tasks.keys()) if (!seen.has(name)) join(SPEC_PREFIX + name, undefined, undefined, undefined);
    if (badCount > 0) throw unreadableRecords(this.location, bad, badCount);
  }

  /**
   * Hands the snapshot's tasks to `sink`, each with the kept log's newer records of it, then the
   * tasks only the kept log holds; false (nothing handed over) when the file does not check out,
   * and the snapshot is taken out of the store (the caller reads LevelDB). Read once.
   */
  private async loadSnapshot(mark: SnapshotMark, sink: (record: TaskRecord) => void, expect?: (tasks: number) => void): Promise<boolean> {
    const overlay = this.overlay;
    this.toLoad = undefined;
    this.overlay = undefined;
    const started = Date.now();
    const logged = overlay === undefined || overlay.tasks.size === 0 ? undefined : overlay.tasks;
    let fromLog = 0;
    try {
      if (logged === undefined) readSnapshot(this.snapshotPath, mark, sink, expect);
      else {
        const seen = new Set<string>();
        readSnapshot(
          this.snapshotPath,
          mark,
          (record) => {
            const held = logged.get(record.spec.name);
            if (held === undefined) return sink(record);
            seen.add(record.spec.name);
            const newer = withLogged(record.spec.name, record, held);
            if (newer !== undefined) sink(newer);
          },
          expect,
        );
        for (const [name, held] of logged) {
          if (seen.has(name)) continue;
          const created = withLogged(name, undefined, held);
          if (created === undefined) continue;
          sink(created);
          fromLog++;
        }
      }
    } catch (err) {
      if (err instanceof SnapshotError) {
        await this.forgetSnapshot(`it is not used: ${err.message}`);
        return false;
      }
      await this.forgetSnapshot('');
      if (!(err instanceof RecordError)) throw err;
      throw new DagworkError(
        'STORE_FAILED',
        `the snapshot ${this.snapshotPath} or the log kept with it holds a task that cannot be read (${toError(err).message}); the snapshot is deleted, and the next start reads the tasks from LevelDB: start dhub again`,
        { cause: err },
      );
    }
    // Not the store's (no snapshot while serving: --snapshot-log-bytes 0): read once.
    if (this.snapshot === undefined) this.dropSnapshot('');
    const since = logged === undefined ? '' : ` and ${logged.size} tasks' newer records from the log kept with it (${fromLog} not in the snapshot)`;
    this.options.log.info(`read ${mark.tasks} tasks from the snapshot${since} in ${Date.now() - started} ms`);
    return true;
  }

  /** Every pool's settings, LevelDB's and the log's. A record that cannot be read is named. */
  async loadPools(): Promise<[string, PoolSettings][]> {
    await this.background;
    const values = new Map<string, Uint8Array>();
    for await (const [key, value] of this.db.iterator({ gte: POOL_PREFIX, lt: POOL_END })) values.set(key, value);
    for (const [key, value] of this.pending.keys) if (key.startsWith(POOL_PREFIX)) values.set(key, value);
    const pools: [string, PoolSettings][] = [];
    for (const [key, value] of values) {
      if (value.length === 0) continue;
      let settings: Partial<PoolSettings>;
      try {
        settings = JSON.parse(Buffer.from(value).toString('utf8')) as Partial<PoolSettings>;
      } catch (err) {
        throw unreadableRecords(this.location, [{ key, reason: `not pool settings: ${toError(err).message}` }], 1);
      }
      const maxRunning = settings.maxRunning ?? 0;
      if (!Number.isInteger(maxRunning) || maxRunning < 0) throw unreadableRecords(this.location, [{ key, reason: `max running ${String(maxRunning)} is not a count` }], 1);
      const command = (value: unknown): string => (typeof value === 'string' ? value : '');
      pools.push([key.slice(POOL_PREFIX.length), { maxRunning, paused: settings.paused === true, jobVerifier: command(settings.jobVerifier), resultVerifier: command(settings.resultVerifier) }]);
    }
    return pools;
  }

  /**
   * Writes `records` atomically: one group commit appended to the log. When the promise resolves
   * they are durable. They are encoded before it returns, so later changes to them do not leak in.
   * With maxPendingBytes not yet in LevelDB, it first waits for the background write.
   */
  write(records: readonly TaskRecord[], changes?: StoreChanges): Promise<void> {
    const deleted = changes?.deleted ?? [];
    const pools = changes?.pools ?? [];
    const specs = changes?.specs;
    if (records.length === 0 && deleted.length === 0 && pools.length === 0) return Promise.resolve();
    // Written before the first load (no hub does): the first load reads LevelDB and the log, which
    // hold this write (the snapshot, with the log kept from its segment on, stays good for a start).
    if (this.toLoad !== undefined) {
      this.toLoad = undefined;
      this.overlay = undefined;
    }
    let commit: { frames: Buffer[]; values: Uint8Array[] };
    try {
      commit = this.encode(records, specs, deleted, pools);
    } catch (err) {
      return Promise.reject(toError(err));
    }
    const append = (): Promise<void> => this.append(commit.frames, () => this.hold(records, specs, deleted, pools, commit.values));
    if (this.pending.bytes <= this.options.maxPendingBytes) return append();
    return this.makeRoom().then(append);
  }

  /**
   * The log frames of one commit, each record written straight into them; the values, views into
   * the frames, in the order `hold` takes them: each record's spec (if in `specs`, or without
   * `specs`) and state, each deleted task's two deletions, each pool's settings.
   */
  private encode(
    records: readonly TaskRecord[],
    specs: ReadonlySet<string> | undefined,
    deleted: readonly string[],
    pools: StoreChanges['pools'],
  ): { frames: Buffer[]; values: Uint8Array[] } {
    const w = this.writer;
    const commit = new CommitBuilder(w, this.options.maxFrameBytes, records.length * RECORD_BYTES_GUESS);
    for (const r of records) {
      const name = r.spec.name;
      if (specs === undefined || specs.has(name)) {
        commit.begin(SPEC_PREFIX, name);
        writeSpecRecord(w, r.spec, r.seq);
        commit.end();
      }
      commit.begin(STATE_PREFIX, name);
      writeStateRecord(w, r);
      commit.end();
    }
    for (const name of deleted) {
      // A deletion is an empty value.
      commit.begin(SPEC_PREFIX, name);
      commit.end();
      commit.begin(STATE_PREFIX, name);
      commit.end();
    }
    for (const [pool, settings] of pools) {
      commit.begin(POOL_PREFIX, pool);
      if (settings !== undefined) {
        const json = Buffer.from(JSON.stringify(settings), 'utf8');
        w.room(json.length);
        w.at += json.copy(w.buf, w.at);
      }
      commit.end();
    }
    return commit.finish();
  }

  /** Holds a logged commit's values (`encode`'s, in its order) until they are in LevelDB. */
  private hold(records: readonly TaskRecord[], specs: ReadonlySet<string> | undefined, deleted: readonly string[], pools: StoreChanges['pools'], values: readonly Uint8Array[]): void {
    let i = 0;
    for (const r of records) {
      const name = r.spec.name;
      const spec = specs === undefined || specs.has(name) ? values[i++] : undefined;
      this.pending.task(name, spec, values[i++]);
    }
    for (const name of deleted) {
      this.pending.task(name, values[i], values[i + 1]);
      i += 2;
    }
    for (const [pool] of pools) this.pending.key(POOL_PREFIX + pool, values[i++] as Uint8Array);
  }

  private append(frames: readonly Buffer[], hold: () => void): Promise<void> {
    try {
      const trouble = this.segmentTrouble;
      if (trouble !== undefined && !trouble.reported) {
        trouble.reported = true;
        throw trouble.error;
      }
      (this.wal as Wal).appendFrames(frames);
      hold();
      this.boundKeptLog();
      this.schedule(BACKGROUND_MS);
      return Promise.resolve();
    } catch (err) {
      return Promise.reject(toError(err));
    }
  }

  /** Backpressure: waits until LevelDB has taken enough of the log; refuses if it cannot. */
  private async makeRoom(): Promise<void> {
    while (this.pending.bytes > this.options.maxPendingBytes) {
      clearTimeout(this.timer);
      this.timer = undefined;
      await this.toLevel(true);
      if (this.levelError !== undefined && this.pending.bytes > this.options.maxPendingBytes) {
        throw new DagworkError(
          'STORE_FAILED',
          `LevelDB does not take the log's records (${this.pending.size} records, ${this.pending.bytes} bytes wait, over the limit of ${this.options.maxPendingBytes}): ${this.levelError.message}`,
          { cause: this.levelError },
        );
      }
    }
  }

  /**
   * A snapshot to write while the hub runs, when the log written since the last one began is long
   * enough (StoreOptions.checkpointBytes, and CHECKPOINT_GROWTH times the last snapshot's size):
   * every later change goes into a new log segment, which the snapshot names and keeps. Undefined
   * when none is due, one is being written, or the store cannot begin one (said in the log).
   */
  checkpoint(): Checkpoint | undefined {
    const wal = this.wal;
    if (this.closing || this.options.checkpointBytes === 0 || wal === undefined) return undefined;
    if (this.running !== undefined || this.forgetting !== undefined || this.segmentTrouble !== undefined) return undefined;
    if (this.logBeforeRun + wal.appended - this.checkpointAt < this.checkpointDue()) return undefined;
    // Begun or not, the next try waits for as much log again.
    this.logBeforeRun = 0;
    this.checkpointAt = wal.appended;
    let writer: SnapshotWriter;
    try {
      wal.rotate();
      writer = new SnapshotWriter(this.snapshotPath, randomBytes(8).toString('hex'));
    } catch (err) {
      this.options.log.warn(`no snapshot begun (${causeMessage(err)}): tried again after as much log`);
      return undefined;
    }
    const begun = new RunningCheckpoint(
      writer,
      wal.current,
      wal.appended,
      (mark) => this.db.put(SNAPSHOT_KEY, markBytes(mark), { sync: true }),
      (mark, error) => this.checkpointEnded(begun, mark, error),
    );
    this.running = begun;
    return begun;
  }

  /** Log bytes since the last snapshot began (or was tried) that set off the next. */
  private checkpointDue(): number {
    return Math.max(this.options.checkpointBytes, Math.min(CHECKPOINT_GROWTH * this.lastSnapshotBytes, CHECKPOINT_MAX_BYTES));
  }

  /**
   * The log a snapshot keeps is bounded (checked after every append): past KEEP_FACTOR times what
   * sets one off and what it wrote so far, a snapshot still being written is given up (it has
   * stalled: a walk writes more than the log grows between slices), and a named one with none being
   * written after it (they fail: a full disk, a file in the way) is taken out of the store, so
   * that the log goes again. At most about KEEP_FACTOR + 1 times that is ever kept.
   */
  private boundKeptLog(): void {
    const wal = this.wal;
    if (wal === undefined || this.closing || this.options.checkpointBytes === 0) return;
    const limit = KEEP_FACTOR * this.checkpointDue();
    const running = this.running;
    // A walk that goes on writes more snapshot than the log grows: one given up has stalled.
    if (running !== undefined && running.adding && wal.appended - running.appendedAt > Math.max(limit, KEEP_FACTOR * running.written)) {
      this.options.log.warn(`the snapshot begun at log segment ${running.from} is given up: ${KEEP_FACTOR} times the log that sets one off was written while it was`);
      running.abort();
    }
    // Never while one is being written or named: the mark is written by one of them at a time.
    if (this.snapshot === undefined || this.running !== undefined || this.forgetting !== undefined) return;
    if (this.keptBeforeRun + wal.appended - this.namedAt <= limit) return;
    this.forgetting = this.forgetSnapshot(`it is taken out of the store: the log kept with it passed ${KEEP_FACTOR} times what sets off the next (no snapshot written since)`)
      .catch((err: unknown) => {
        // Tried again after as much log more (LevelDB is untrusted meanwhile: every segment kept).
        this.keptBeforeRun = 0;
        this.namedAt = wal.appended;
        this.options.log.error(`cannot take the snapshot out of the store (every log segment is kept): ${causeMessage(err)}`);
      })
      .finally(() => (this.forgetting = undefined));
  }

  private checkpointEnded(running: RunningCheckpoint, mark: (SnapshotMark & { log: number }) | undefined, error: unknown): void {
    if (this.running === running) this.running = undefined;
    const log = this.options.log;
    if (mark !== undefined) {
      this.snapshot = mark;
      this.lastSnapshotBytes = mark.bytes;
      this.keptBeforeRun = 0;
      this.namedAt = running.appendedAt;
      log.info(`wrote a snapshot of ${mark.tasks} tasks (${mark.bytes} bytes) while serving, in ${Date.now() - running.started} ms: a start reads it and the log from segment ${mark.log} on`);
      return;
    }
    if (error === undefined) return; // given up
    // Put in place, not named: the snapshot named before is gone (a start reads LevelDB).
    if (running.placed) this.snapshot = undefined;
    // LevelDB failed a write (its own log may be torn: notMoved): every segment is kept.
    if (running.nameFailed) this.levelUntrusted = true;
    log.warn(`the snapshot begun at log segment ${running.from} was not written (${causeMessage(error)}); ${this.snapshot !== undefined ? 'the one before stays' : 'a start reads LevelDB until the next one'}`);
  }

  async close(tasks?: () => Iterable<TaskRecord>): Promise<void> {
    this.closing = true;
    await this.running?.close();
    await this.forgetting;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.background;
    await this.toLevel(false);
    // With everything in LevelDB the log goes, but for the segments a snapshot needs; otherwise
    // the next start puts it there. (A LevelDB failure, now or earlier in the run, makes it
    // untrusted: notMoved.)
    // A clean stop's snapshot is named before the log goes: it needs none of it.
    if (tasks !== undefined && this.pending.size === 0 && !this.levelUntrusted && this.segmentTrouble === undefined && this.wal !== undefined) {
      await this.writeSnapshot(tasks(), this.wal.current + 1);
    }
    const allInLevel = this.pending.size === 0 && !this.levelUntrusted;
    if (this.levelUntrusted) this.options.log.warn('the log is kept, as LevelDB failed a write in this run: the next start puts it into LevelDB again, and deletes it');
    const logErrors = this.wal?.close(allInLevel, this.keepFrom) ?? [];
    for (const e of logErrors) this.options.log.warn(e.message);
    await this.db.close();
  }

  /** A snapshot of `tasks` that needs the log from segment `log` on, and the store's record of it; on failure the one before stays, if it can. */
  private async writeSnapshot(tasks: Iterable<TaskRecord>, log: number): Promise<void> {
    const started = Date.now();
    let writer: SnapshotWriter | undefined;
    try {
      writer = new SnapshotWriter(this.snapshotPath, randomBytes(8).toString('hex'));
      for (const task of tasks) writer.add(task);
      const mark = { ...writer.finishNow(), log };
      try {
        await this.db.put(SNAPSHOT_KEY, markBytes(mark), { sync: true });
      } catch (err) {
        // LevelDB failed a write: its own log may be torn (notMoved).
        this.levelUntrusted = true;
        throw err;
      }
      this.snapshot = mark;
      this.options.log.info(`wrote a snapshot of ${mark.tasks} tasks (${mark.bytes} bytes) in ${Date.now() - started} ms: the next start reads it`);
    } catch (err) {
      writer?.abort();
      // Put in place but not named: the snapshot named before is gone.
      if (writer?.placed === true) this.snapshot = undefined;
      this.options.log.warn(`no snapshot written (${causeMessage(err)}): the next start reads ${this.snapshot !== undefined ? 'the one before, with the log kept for it' : 'the tasks from LevelDB'}`);
    }
  }

  private schedule(delayMs: number): void {
    if (this.timer !== undefined || this.closing || this.pending.size === 0) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      // toLevel catches everything itself; this is the last line for a mistake in it.
      this.toLevel(true).catch((err: unknown) => this.options.log.error(`the store's background write failed: ${toError(err).stack ?? String(err)}`));
    }, delayMs);
  }

  /**
   * Puts what is pending into LevelDB; with `rotate`, starts a new log segment first and then
   * drops the segments LevelDB now holds. Never rejects: a failure is kept in `levelError`,
   * logged, and the records go back to pending, to be tried again after a backoff.
   */
  private toLevel(rotate: boolean): Promise<void> {
    if (this.background !== undefined) return this.background;
    if (this.pending.size === 0) return Promise.resolve();
    // With LevelDB untrusted every segment is kept: a new one only to get past one that failed.
    const segments = rotate && (!this.levelUntrusted || this.segmentTrouble !== undefined) ? this.startSegment() : [];
    const batch = this.pending;
    this.pending = new Pending();
    this.background = this.putAll(batch)
      .then(
        () => this.moved(segments),
        (err: unknown) => this.notMoved(batch, toError(err)),
      )
      .catch((err: unknown) => this.options.log.error(`the store's background write failed: ${toError(err).stack ?? String(err)}`))
      .finally(() => {
        this.background = undefined;
        this.schedule(this.levelFailures === 0 ? BACKGROUND_MS : Math.min(BACKGROUND_MS * 2 ** this.levelFailures, BACKGROUND_RETRY_MAX_MS));
      });
    return this.background;
  }

  /** A new log segment, returning the closed ones; on failure the log goes on in the current one. */
  private startSegment(): number[] {
    const wal = this.wal as Wal;
    const log = this.options.log;
    try {
      const closed = wal.rotate();
      if (this.segmentTrouble !== undefined) log.warn(`a new log segment is open again after ${this.segmentTrouble.attempts} failed attempts`);
      this.segmentTrouble = undefined;
      return closed;
    } catch (err) {
      const error = toError(err);
      if (this.segmentTrouble === undefined) {
        this.segmentTrouble = { error, reported: false, attempts: 1 };
        log.error(`${error.message}; the log goes on in the current segment, the next write is refused so that clients hear of it, and a new segment is tried again`);
      } else {
        const attempts = ++this.segmentTrouble.attempts;
        if (attempts >= 4 && (attempts & (attempts - 1)) === 0) log.error(`still no new log segment after ${attempts} attempts: ${error.message}`);
      }
      return wal.closedSegments();
    }
  }

  /**
   * Writes `batch` into LevelDB in chunks. Chained batches: an array batch with options copies the
   * options into every operation, 10x slower (200,000 records: 4.8 s against 0.5 s).
   */
  private async putAll(batch: Pending): Promise<void> {
    let chunk = this.db.batch();
    let bytes = 0;
    /** Adds one key to the chunk; true when the chunk is full. */
    const add = (key: string, value: Uint8Array): boolean => {
      if (value.length === 0) chunk.del(key);
      else chunk.put(key, value);
      bytes += key.length + value.length;
      return chunk.length >= BACKGROUND_CHUNK || bytes >= BACKGROUND_CHUNK_BYTES;
    };
    const next = async (): Promise<void> => {
      await chunk.write({ sync: this.options.sync });
      chunk = this.db.batch();
      bytes = 0;
    };
    for (const [name, held] of batch.tasks) {
      if (held.spec !== undefined && add(SPEC_PREFIX + name, held.spec)) await next();
      if (held.state !== undefined && add(STATE_PREFIX + name, held.state)) await next();
    }
    for (const [key, value] of batch.keys) if (add(key, value)) await next();
    if (chunk.length > 0) await chunk.write({ sync: this.options.sync });
    else await chunk.close();
  }

  private moved(segments: readonly number[]): void {
    if (this.levelError !== undefined) this.options.log.warn(`LevelDB takes the log's records again, after ${this.levelFailures} failed attempts`);
    this.levelError = undefined;
    this.levelFailures = 0;
    if (this.levelUntrusted) return; // the segments stay for the next start (notMoved)
    // Those the snapshot needs stay until the next one is named.
    const keepFrom = this.keepFrom;
    const done = keepFrom === Infinity ? segments : segments.filter((n) => n < keepFrom);
    for (const e of (this.wal as Wal).discard(done)) this.options.log.warn(`${e.message}; it is tried again at the next background write`);
  }

  private notMoved(batch: Pending, err: Error): void {
    // Still in the log; newer values, written meanwhile, win.
    this.pending.under(batch);
    this.levelError = err;
    this.levelFailures++;
    const retry = Math.min(BACKGROUND_MS * 2 ** this.levelFailures, BACKGROUND_RETRY_MAX_MS);
    this.options.log.error(
      `cannot put ${batch.size} records from the log into LevelDB (failure ${this.levelFailures} in a row; tried again in ${retry} ms; they stay in the log): ${causeMessage(err)}`,
    );
    if (!this.levelUntrusted) {
      this.levelUntrusted = true;
      this.options.log.warn(
        "LevelDB failed a write: its own log may now be torn, and LevelDB would drop what it takes from here on when it is next opened, so every log segment is kept from now on and put into LevelDB again at the next start (restart dhub once the cause is fixed, to reclaim the log's space)",
      );
    }
  }
}

/**
 * Task `name` as the log kept with the snapshot last wrote it, over the snapshot's record of it
 * (`record`; undefined when the snapshot does not hold it): undefined when deleted; the log's spec
 * and state when it wrote the task again (created or replaced: both are written together), the
 * snapshot's spec with the log's state when only the state changed. Throws RecordError.
 */
function withLogged(name: string, record: TaskRecord | undefined, held: PendingTask): TaskRecord | undefined {
  const spec = held.spec;
  const state = held.state;
  if (record === undefined) {
    // Created (or made again) after the snapshot was begun: both records are in the log.
    const hasSpec = spec !== undefined && spec.length > 0;
    const hasState = state !== undefined && state.length > 0;
    if (!hasSpec && !hasState) return undefined; // deleted
    if (!hasSpec || !hasState) throw new RecordError(`the log kept with the snapshot holds ${hasSpec ? 'the spec' : 'the state'} of task ${JSON.stringify(name)}, which the snapshot does not hold, without its ${hasSpec ? 'state' : 'spec'}`);
    return decodeSplitRecord(spec as Uint8Array, state as Uint8Array);
  }
  if (spec !== undefined && spec.length === 0 && state !== undefined && state.length === 0) return undefined;
  if (spec === undefined && state !== undefined && state.length > 0) return withStateRecord(record, state);
  if (spec !== undefined && spec.length > 0 && state !== undefined && state.length > 0) return decodeSplitRecord(spec, state);
  throw new RecordError(`the log kept with the snapshot holds a ${spec === undefined ? 'state' : 'spec'} record of task ${JSON.stringify(name)} without the other (or one of them empty)`);
}

function segmentBytes(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

function markBytes(mark: SnapshotMark): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(mark));
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

type Entry = [string, Uint8Array];

/**
 * A LevelDB range read in large batches, one entry at a time (`entry`; undefined at the end). The
 * next batch is asked for as soon as one arrives, so that LevelDB reads it (off the main thread)
 * while this one is decoded.
 */
class Batches {
  entry: Entry | undefined;
  private batch: Entry[] = [];
  private at = 0;
  private ahead: Promise<Entry[]> | undefined;

  constructor(private readonly iterator: ReturnType<Db['iterator']>) {}

  async fill(): Promise<void> {
    const next = this.ahead ?? this.read();
    this.ahead = undefined;
    this.batch = await next;
    this.at = 0;
    this.entry = this.batch[0];
    if (this.batch.length > 0) {
      this.ahead = this.read();
      // Awaited by the next fill; a failure meanwhile is not unhandled (close waits it out).
      this.ahead.catch(() => undefined);
    }
  }

  private read(): Promise<Entry[]> {
    return this.iterator.nextv(READ_BATCH) as Promise<Entry[]>;
  }

  /** On to the next entry; true when the batch is used up and `fill` must read the next one. */
  advance(): boolean {
    this.at++;
    this.entry = this.batch[this.at];
    return this.entry === undefined && this.batch.length > 0;
  }

  async close(): Promise<void> {
    // A read still on its way ends before the iterator closes (classic-level wants one call at a time).
    await this.ahead?.catch(() => undefined);
    this.ahead = undefined;
    await this.iterator.close();
  }
}

/**
 * LevelDB's order of the names in two keys, `a` from `aFrom` and `b` from `bFrom` (no copies): that
 * of their UTF-8 bytes, which is the code points', where JS's `<` compares UTF-16 units: a
 * surrogate (0xD800-0xDFFF, a code point past 0xFFFF) sorts after 0xE000-0xFFFF in LevelDB.
 */
function nameOrder(a: string, aFrom: number, b: string, bFrom: number): number {
  const length = Math.min(a.length - aFrom, b.length - bFrom);
  for (let i = 0; i < length; i++) {
    const x = a.charCodeAt(aFrom + i);
    const y = b.charCodeAt(bFrom + i);
    if (x !== y) return codePointRank(x) - codePointRank(y);
  }
  return a.length - aFrom - (b.length - bFrom);
}

function codePointRank(unit: number): number {
  if (unit >= 0xd800 && unit <= 0xdfff) return unit + 0x2000;
  return unit >= 0xe000 ? unit - 0x800 : unit;
}
