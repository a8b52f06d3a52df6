/**
 * The store at run time: a log segment that cannot be opened, a store directory removed under a
 * running hub, LevelDB failing in the background, and the bounds on what the store holds.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Level } from 'level';
import { afterAll, afterEach, describe, expect, it, vi, type MockInstance } from 'vitest';
import type { TaskRecord } from '../proto/src/types.js';
import type { Logger } from '../hub/src/log.js';
import { Store, STORE_FORMAT } from '../hub/src/store/store.js';
import { cleanTempDirs, tempDir } from './helpers.js';
import { taskRecord } from './support/records.js';
import { newStore, openStore, stopPgCluster, storeKinds } from './support/stores.js';

afterAll(async () => {
  await stopPgCluster();
  cleanTempDirs();
});
afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

const record = (name: string, state: TaskRecord['state'] = 'ready', payloadBytes = 0): TaskRecord => taskRecord(name, { state, payload: Buffer.alloc(payloadBytes, 7) });

/** A logger that keeps every line, "level message". */
function captureLog(): Logger & { lines: string[] } {
  const lines: string[] = [];
  return {
    lines,
    error: (m) => lines.push(`error ${m}`),
    warn: (m) => lines.push(`warn ${m}`),
    info: (m) => lines.push(`info ${m}`),
    debug: (m) => lines.push(`debug ${m}`),
  };
}

async function names(db: string): Promise<string[]> {
  const store = await Store.open(db);
  try {
    return (await store.loadAll()).map((r) => r.spec.name).sort();
  } finally {
    await store.close();
  }
}

const segments = (db: string): string[] => readdirSync(db).filter((f) => /^dagwork-wal-\d+$/.test(f));

/** Fakes only setTimeout: the store's background timer runs when the test says. */
const fakeTimers = (): void => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
};

describe('a new log segment that cannot be opened', () => {
  // A directory where the next segment file would go makes its open fail (EISDIR), as EMFILE would.
  const blockNextSegment = (db: string): string => {
    const next = Math.max(0, ...segments(db).map((f) => Number(f.slice('dagwork-wal-'.length)))) + 1;
    const path = join(db, `dagwork-wal-${next}`);
    mkdirSync(path);
    return path;
  };

  /** A store whose background move tried to rotate onto a blocked segment (fake timers still on). */
  const rotatedOntoABlockedSegment = async (log = captureLog()): Promise<{ db: string; store: Store; blocked: string }> => {
    const db = join(tempDir(), 'db');
    const store = await Store.open(db, { sync: false, log });
    const blocked = blockNextSegment(db);
    fakeTimers();
    await store.write([record('a')]);
    vi.advanceTimersByTime(1000);
    return { db, store, blocked };
  };

  it('throws nothing from the background timer', async () => {
    const db = join(tempDir(), 'db');
    const store = await Store.open(db, { sync: false, log: captureLog() });
    blockNextSegment(db);
    fakeTimers();
    await store.write([record('a')]);
    expect(() => vi.advanceTimersByTime(1000)).not.toThrow();
    vi.useRealTimers();
    await store.close();
  });

  it('fails the next write, naming the segment and the reason', async () => {
    const { store, blocked } = await rotatedOntoABlockedSegment();
    vi.useRealTimers();
    await expect(store.write([record('b')])).rejects.toThrow(`cannot start a new log segment ${blocked}: EISDIR`);
    await store.close();
  });

  it('logs the failure as an error', async () => {
    const log = captureLog();
    const { store, blocked } = await rotatedOntoABlockedSegment(log);
    vi.useRealTimers();
    await store.close();
    expect(log.lines.filter((l) => l.startsWith('error ') && l.includes(blocked) && l.includes('EISDIR'))).toHaveLength(1);
  });

  it('goes on appending to the old segment, and keeps what it acknowledged there', async () => {
    const { db, store, blocked } = await rotatedOntoABlockedSegment();
    vi.useRealTimers();
    await store.write([record('refused')]).catch(() => undefined);
    await store.write([record('c')]);
    await store.close();
    rmSync(blocked, { recursive: true }); // or the next start would refuse: it cannot open its segment
    expect(await names(db)).toEqual(['a', 'c']);
  });

  it('opens a new segment once it can', async () => {
    const { db, store, blocked } = await rotatedOntoABlockedSegment();
    await store.write([record('refused')]).catch(() => undefined);
    rmSync(blocked, { recursive: true });
    await store.loadAll(); // waits for the background write in flight
    await store.write([record('c')]);
    vi.advanceTimersByTime(1000);
    vi.useRealTimers();
    expect(statSync(blocked).isFile()).toBe(true); // the new segment
    await store.write([record('d')]);
    await store.close();
    expect(await names(db)).toEqual(['a', 'c', 'd']);
  });
});

describe('a store directory removed under the store', () => {
  it('refuses writes instead of acknowledging them into a deleted file', async () => {
    const db = join(tempDir(), 'db');
    const store = await Store.open(db, { sync: false, log: captureLog() });
    await store.write([record('a')]);
    rmSync(db, { recursive: true });
    await expect(store.write([record('b')])).rejects.toThrow(/was deleted/);
    await store.close().catch(() => undefined);
  });

  it('throws nothing from the background timer', async () => {
    const db = join(tempDir(), 'db');
    const store = await Store.open(db, { sync: false, log: captureLog() });
    fakeTimers();
    await store.write([record('a')]);
    rmSync(db, { recursive: true });
    expect(() => vi.advanceTimersByTime(1000)).not.toThrow();
    vi.useRealTimers();
    await store.close().catch(() => undefined);
  });
});

/**
 * LevelDB's batch write, to make it fail: the chained batch's `_write` (abstract-level's
 * implementer interface), found on a throwaway database.
 */
async function levelWrites(): Promise<MockInstance<(options: unknown) => Promise<void>>> {
  const probe = new Level<string, Uint8Array>(join(tempDir(), 'probe'), { valueEncoding: 'view' });
  await probe.open();
  const proto = Object.getPrototypeOf(probe.batch()) as { _write(options: unknown): Promise<void> };
  await probe.close();
  return vi.spyOn(proto, '_write');
}

describe('LevelDB failing in the background', () => {
  it('is logged as an error naming the cause', async () => {
    const writes = await levelWrites();
    writes.mockRejectedValueOnce(new Error('IO error: disk on fire'));
    const log = captureLog();
    const store = await Store.open(join(tempDir(), 'db'), { sync: false, log });
    fakeTimers();
    await store.write([record('a')]);
    vi.advanceTimersByTime(200);
    await store.loadAll(); // waits for the background write
    vi.useRealTimers();
    await store.close();
    expect(log.lines.filter((l) => l.startsWith('error '))).toEqual([expect.stringMatching(/^error cannot put 1 records from the log into LevelDB \(failure 1 in a row; .*: IO error: disk on fire$/)]);
  });

  it('is retried after a backoff that doubles', async () => {
    const writes = await levelWrites();
    writes.mockRejectedValue(new Error('IO error: disk on fire'));
    const store = await Store.open(join(tempDir(), 'db'), { sync: false, log: captureLog() });
    fakeTimers();
    await store.write([record('a')]);
    const attemptsAfter = async (ms: number): Promise<number> => {
      vi.advanceTimersByTime(ms);
      await store.loadAll();
      return writes.mock.calls.length;
    };
    const seen = [await attemptsAfter(200), await attemptsAfter(399), await attemptsAfter(1), await attemptsAfter(799), await attemptsAfter(1)];
    vi.useRealTimers();
    writes.mockRestore();
    await store.close();
    expect(seen).toEqual([1, 1, 2, 2, 3]);
  });

  it('loses nothing: the records reach LevelDB once it works again', async () => {
    const writes = await levelWrites();
    writes.mockRejectedValueOnce(new Error('IO error: disk on fire'));
    const db = join(tempDir(), 'db');
    const store = await Store.open(db, { sync: false, log: captureLog() });
    fakeTimers();
    await store.write([record('a')]);
    vi.advanceTimersByTime(200);
    await store.loadAll();
    vi.advanceTimersByTime(400);
    await store.loadAll();
    // Later writes go on in the same segment: no new one each background write (they would pile up).
    await store.write([record('b')]);
    vi.advanceTimersByTime(400);
    await store.loadAll();
    vi.useRealTimers();
    // In LevelDB, but kept: LevelDB's own log may be torn since its failure (below).
    expect(segments(db)).toEqual(['dagwork-wal-1', 'dagwork-wal-2']);
    await store.close();
    expect(segments(db)).toEqual(['dagwork-wal-1', 'dagwork-wal-2']);
    expect(await names(db)).toEqual(['a', 'b']);
    expect(segments(db)).toEqual([]); // put into LevelDB again at that start, then deleted
  });

  it('loses nothing when the failure tore LevelDB’s own log: every segment since is kept and put into LevelDB again at the next start', async () => {
    // A failed write to LevelDB's log (ENOSPC, EIO) leaves a torn record there; LevelDB does not
    // stop (only a failed sync stops it) and appends after it, and its next open drops everything
    // from the tear on. Here the failure is injected and the tear made by hand afterwards.
    const writes = await levelWrites();
    writes.mockRejectedValueOnce(new Error('IO error: No space left on device'));
    const db = join(tempDir(), 'db');
    const log = captureLog();
    const store = await Store.open(db, { sync: false, log });
    fakeTimers();
    await store.write([record('before')]);
    vi.advanceTimersByTime(200);
    await store.loadAll();
    vi.advanceTimersByTime(400);
    await store.loadAll(); // LevelDB took it on the second try
    vi.useRealTimers();
    await store.write([record('after', 'done')]);
    await store.close(() => [record('before'), record('after', 'done')]);
    expect(log.lines).toContainEqual(expect.stringMatching(/^warn LevelDB failed a write: its own log may now be torn.*every log segment is kept from now on/));
    expect(log.lines).toContainEqual('warn the log is kept, as LevelDB failed a write in this run: the next start puts it into LevelDB again, and deletes it');
    expect(log.lines.filter((l) => l.includes('wrote a snapshot'))).toEqual([]);
    for (const file of readdirSync(db).filter((f) => /^\d+\.log$/.test(f))) {
      const path = join(db, file);
      writeFileSync(path, randomBytes(statSync(path).size));
    }
    const reopened = await Store.open(db, { log: captureLog() });
    const records = await reopened.loadAll();
    await reopened.close();
    expect(records.map((r) => [r.spec.name, r.state]).sort()).toEqual([
      ['after', 'done'],
      ['before', 'ready'],
    ]);
  });
});

describe('the bound on records logged but not yet in LevelDB (maxPendingBytes)', () => {
  const kB = (name: string): TaskRecord => record(name, 'ready', 1000);

  it('makes a write past it wait until LevelDB holds them, without the timer', async () => {
    const writes = await levelWrites();
    const db = join(tempDir(), 'db');
    const store = await Store.open(db, { sync: false, log: captureLog(), maxPendingBytes: 1500 });
    fakeTimers(); // never advanced: only the bound moves records into LevelDB
    await store.write([kB('a')]);
    await store.write([kB('b')]);
    const before = writes.mock.calls.length;
    await store.write([kB('c')]);
    vi.useRealTimers();
    expect(writes.mock.calls.length - before).toBe(1);
    expect(segments(db)).toEqual(['dagwork-wal-2']);
    await store.close();
  });

  it('refuses a write past it while LevelDB fails, and keeps nothing of the refused write', async () => {
    const writes = await levelWrites();
    const db = join(tempDir(), 'db');
    const store = await Store.open(db, { sync: false, log: captureLog(), maxPendingBytes: 1500 });
    fakeTimers();
    await store.write([kB('a')]);
    await store.write([kB('b')]);
    writes.mockRejectedValue(new Error('IO error: disk on fire'));
    await expect(store.write([kB('c')])).rejects.toThrow(/^LevelDB does not take the log's records \(2 records, \d+ bytes wait, over the limit of 1500\): IO error: disk on fire$/);
    vi.useRealTimers();
    writes.mockRestore();
    await store.close();
    expect(await names(db)).toEqual(['a', 'b']);
  });
});

describe('records of format 4: params, files and barriers', () => {
  const full = (): TaskRecord => {
    const r = taskRecord('sweep/3', { state: 'done', outputs: [{ name: 'out.csv', sha256: 'c'.repeat(64), size: 2 ** 40, executable: true }] });
    r.spec = {
      ...r.spec,
      params: [
        { name: 'alpha', value: '0.25' },
        { name: 'label', value: 'two words, ü' },
      ],
      inputs: [{ name: 'bin/sim', sha256: 'a'.repeat(64), size: 123, executable: true }],
      outputs: ['out.csv'],
      paramFiles: [{ name: 'alpha.txt', param: 'alpha' }],
    };
    return r;
  };

  it.each(storeKinds)('keeps every new field of spec and record through the store (%s)', async (kind) => {
    const db = await newStore(kind);
    const barrier = taskRecord('gate', { state: 'done' });
    barrier.spec = { ...barrier.spec, barrier: true };
    const store = await openStore(kind, db);
    await store.write([full(), barrier]);
    await store.close();
    const reopened = await openStore(kind, db);
    const records = new Map((await reopened.loadAll()).map((r) => [r.spec.name, r]));
    await reopened.close();
    expect(records.get('sweep/3')).toEqual(full());
    expect(records.get('gate')?.spec.barrier).toBe(true);
  });

  it('reads a store of format 3 (records without them) and marks it the current format', async () => {
    const db = join(tempDir(), 'db');
    // A format-3 record: the fields of format 3 only, by their numbers (spec 1, state 2, seq 10).
    const spec = Buffer.concat([Buffer.from([0x0a, 3]), Buffer.from('old'), Buffer.from([0x2a, 7]), Buffer.from('default'), Buffer.from([0x30, 3, 0x38, 0xe0, 0xd4, 0x03])]);
    const value = Buffer.concat([Buffer.from([0x0a, spec.length]), spec, Buffer.from([0x10, 2, 0x50, 1])]);
    const level = new Level<string, Uint8Array>(db, { valueEncoding: 'view' });
    await level.put('meta:format', new TextEncoder().encode('3'));
    await level.put('t:old', value);
    await level.close();
    const store = await Store.open(db);
    const [old] = await store.loadAll();
    await store.close();
    expect(old).toEqual(taskRecord('old', { state: 'ready', seq: 1 }));
    const after = new Level<string, string>(db);
    const format = await after.get('meta:format');
    await after.close();
    expect(format).toBe(String(STORE_FORMAT));
  });
});
