/**
 * The store at run time: a log segment that cannot be opened, a store directory removed under a
 * running hub, LevelDB failing in the background, and the bounds on what the store holds.
 */
import { mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import type { TaskRecord } from '../proto/src/types.js';
import type { Logger } from '../hub/src/log.js';
import { Store } from '../hub/src/store/store.js';
import { cleanTempDirs, tempDir } from './helpers.js';

afterAll(cleanTempDirs);
afterEach(() => {
  vi.useRealTimers();
});

const record = (name: string, state: TaskRecord['state'] = 'ready', payloadBytes = 0): TaskRecord => ({
  spec: { name, deps: [], payload: Buffer.alloc(payloadBytes, 7), priority: 0, pool: 'default', maxAttempts: 3, leaseMs: 60_000 },
  state,
  attempts: 0,
  worker: '',
  leaseDeadline: 0,
  notBefore: 0,
  result: new Uint8Array(0),
  lastError: '',
  log: [],
  seq: 1,
});

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
    const db = join(tempDir(), 'db');
    const store = await Store.open(db, { sync: false, log: captureLog() });
    const blocked = blockNextSegment(db);
    fakeTimers();
    await store.write([record('a')]);
    vi.advanceTimersByTime(1000);
    vi.useRealTimers();
    await expect(store.write([record('b')])).rejects.toThrow(`cannot start a new log segment ${blocked}: EISDIR`);
    await store.close();
  });

  it('logs the failure as an error', async () => {
    const db = join(tempDir(), 'db');
    const log = captureLog();
    const store = await Store.open(db, { sync: false, log });
    const blocked = blockNextSegment(db);
    fakeTimers();
    await store.write([record('a')]);
    vi.advanceTimersByTime(1000);
    vi.useRealTimers();
    await store.close();
    expect(log.lines.filter((l) => l.startsWith('error ') && l.includes(blocked) && l.includes('EISDIR'))).toHaveLength(1);
  });

  it('goes on appending to the old segment, and keeps what it acknowledged there', async () => {
    const db = join(tempDir(), 'db');
    const store = await Store.open(db, { sync: false, log: captureLog() });
    const blocked = blockNextSegment(db);
    fakeTimers();
    await store.write([record('a')]);
    vi.advanceTimersByTime(1000);
    vi.useRealTimers();
    await store.write([record('refused')]).catch(() => undefined);
    await store.write([record('c')]);
    await store.close();
    rmSync(blocked, { recursive: true }); // or the next start would refuse: it cannot open its segment
    expect(await names(db)).toEqual(['a', 'c']);
  });

  it('opens a new segment once it can', async () => {
    const db = join(tempDir(), 'db');
    const store = await Store.open(db, { sync: false, log: captureLog() });
    const blocked = blockNextSegment(db);
    fakeTimers();
    await store.write([record('a')]);
    vi.advanceTimersByTime(1000);
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
