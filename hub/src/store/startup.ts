/**
 * What the store checks before it serves, each refusal naming the problem and the way out: the
 * directory (an unrelated one is never taken over), the format record, unreadable records; and
 * the way out itself, records set aside by `--drop-record`.
 */
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import type { Level } from 'level';
import { DagworkError } from '../../../proto/src/errors.js';
import type { Logger } from '../log.js';
import { CORRUPT_PREFIX, WAL_PREFIX } from './wal.js';

type Db = Level<string, Uint8Array>;

export const FORMAT_KEY = 'meta:format';
/** Where `--drop-record KEY` keeps the record: outside the task keys, so it is never loaded. */
export const DROPPED_PREFIX = 'dropped:';
const LEVELDB_FILE = /^(CURRENT|LOCK|LOG|LOG\.old|MANIFEST-\d+|\d+\.(log|ldb|sst))$/;

/**
 * Refuses a directory that holds files but is not a dagwork store (no LevelDB files, no log
 * segments), before LevelDB writes a byte into it. A missing or empty directory is fine.
 */
export function checkDirectory(location: string): void {
  let names: string[];
  try {
    names = readdirSync(location);
  } catch {
    return; // missing (LevelDB creates it) or not a directory (LevelDB says so)
  }
  if (names.length === 0 || names.some((n) => LEVELDB_FILE.test(n) || n.startsWith(WAL_PREFIX) || n.startsWith(CORRUPT_PREFIX))) return;
  const shown = names.sort().slice(0, 5).join(', ') + (names.length > 5 ? ` and ${names.length - 5} more` : '');
  throw new DagworkError(
    'STORE_FAILED',
    `--db ${location} is a non-empty directory that is not a dagwork store (no LevelDB files, no log segments; it holds ${shown}): give a new or empty directory, or the store's own`,
  );
}

/** Bytes for a message: quoted text when printable and short, else their size and first bytes. */
export function describeBytes(bytes: Uint8Array): string {
  const b = Buffer.from(bytes);
  if (b.length <= 64 && b.every((x) => x >= 0x20 && x < 0x7f)) return JSON.stringify(b.toString('latin1'));
  const head = b.subarray(0, 16).toString('hex').replace(/(..)(?!$)/g, '$1 ');
  return `${b.length} bytes (${head}${b.length > 16 ? ' ...' : ''})`;
}

/** A word for a shell command line, quoted when it needs to be. */
export function shellWord(word: string): string {
  return /^[\w:./@%+=,-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/**
 * Reads the format record: refuses one that is not a number, or a store newer than `current`;
 * marks an older store as `current` (older layouts are read as they are).
 */
export async function checkFormat(db: Db, location: string, current: number): Promise<void> {
  const stored = await db.get(FORMAT_KEY);
  let format = 0;
  if (stored !== undefined) {
    const text = Buffer.from(stored).toString('latin1');
    if (!/^\d{1,9}$/.test(text)) {
      throw new DagworkError(
        'STORE_FAILED',
        `the store ${location} has a format record (${FORMAT_KEY}) holding ${describeBytes(stored)}, not a format number: it was not written by ` +
          `dagwork, or it was damaged. If ${location} is a dagwork store, start dhub once with --drop-record ${FORMAT_KEY} (the record is set aside ` +
          `as ${DROPPED_PREFIX}${FORMAT_KEY} and written anew); otherwise give --db another directory`,
      );
    }
    format = Number(text);
  }
  if (format > current) {
    throw new DagworkError('STORE_FAILED', `the store ${location} has format ${format}, newer than this dhub's ${current}: upgrade dagwork`);
  }
  if (format < current) await db.put(FORMAT_KEY, new TextEncoder().encode(String(current)), { sync: true });
}

export const ID_KEY = 'meta:id';

/** The store's id, made (random, 16 hex digits) and kept the first time the store is opened. */
export async function storeId(db: Db): Promise<string> {
  const stored = await db.get(ID_KEY);
  if (stored !== undefined) return Buffer.from(stored).toString('latin1');
  const id = randomBytes(8).toString('hex');
  await db.put(ID_KEY, new TextEncoder().encode(id), { sync: true });
  return id;
}

/** Moves each record named in `keys` to DROPPED_PREFIX + key, in one durable batch each. */
export async function dropRecords(db: Db, keys: readonly string[], log: Logger): Promise<void> {
  for (const key of keys) {
    const value = await db.get(key);
    if (value === undefined) {
      log.warn(`--drop-record ${key}: the store holds no such record; nothing dropped`);
      continue;
    }
    await db.batch(
      [
        { type: 'put', key: DROPPED_PREFIX + key, value },
        { type: 'del', key },
      ],
      { sync: true },
    );
    log.warn(`--drop-record: the record ${key} is set aside as ${DROPPED_PREFIX}${key}${key.startsWith('t:') ? `; task ${JSON.stringify(key.slice(2))} is no longer in the graph` : ''}`);
  }
}

/** A refusal naming the records that cannot be read and the flag that starts without them. */
export function unreadableRecords(location: string, bad: readonly { key: string; reason: string }[], count: number): DagworkError {
  const named = bad.map(({ key, reason }) => `key ${JSON.stringify(key)}${key.startsWith('t:') ? ` (task ${JSON.stringify(key.slice(2))})` : ''}: ${reason}`);
  const more = count > bad.length ? `; and ${count - bad.length} more` : '';
  const flags = bad.map(({ key }) => `--drop-record ${shellWord(key)}`).join(' ');
  return new DagworkError(
    'STORE_FAILED',
    `the store ${location} holds ${count === 1 ? 'a record' : `${count} records`} that cannot be read: ${named.join('; ')}${more}\n` +
      `Nothing was changed. To start without ${count === 1 ? 'it' : 'them'}, run dhub with ${flags}: each record is set aside under ` +
      `${DROPPED_PREFIX}KEY (not deleted) and its task leaves the graph; tasks that depend on it wait until it is created again.`,
  );
}
