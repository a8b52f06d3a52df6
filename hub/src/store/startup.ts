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
 * marks an older store as `current` (older layouts are read as they are). Returns the format the
 * store had (0: none, a new store).
 */
export async function checkFormat(db: Db, location: string, current: number): Promise<number> {
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
  return format;
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

/** The task whose record `key` is (formats 2 to 5: `t:NAME`; 6: `spec:NAME`, `state:NAME`), if it is one. */
export function taskOfKey(key: string): string | undefined {
  for (const prefix of ['t:', 'spec:', 'state:']) if (key.startsWith(prefix)) return key.slice(prefix.length);
  return undefined;
}

/** The other record of a task stored as two (format 6). */
function partnerKey(key: string): string | undefined {
  if (key.startsWith('spec:')) return `state:${key.slice('spec:'.length)}`;
  if (key.startsWith('state:')) return `spec:${key.slice('state:'.length)}`;
  return undefined;
}

/**
 * Moves each record named in `keys` to DROPPED_PREFIX + key, in one durable batch each; a task's
 * spec or state record goes with the other (one alone would be refused at the next start).
 * Returns how many records were moved.
 */
export async function dropRecords(db: Db, keys: readonly string[], log: Logger): Promise<number> {
  let dropped = 0;
  for (const key of keys) {
    const value = await db.get(key);
    if (value === undefined) {
      log.warn(`--drop-record ${key}: the store holds no such record; nothing dropped`);
      continue;
    }
    const moves = [{ key, value }];
    const partner = partnerKey(key);
    const partnerValue = partner === undefined ? undefined : await db.get(partner);
    if (partner !== undefined && partnerValue !== undefined) moves.push({ key: partner, value: partnerValue });
    await db.batch(
      moves.flatMap((m) => [
        { type: 'put' as const, key: DROPPED_PREFIX + m.key, value: m.value },
        { type: 'del' as const, key: m.key },
      ]),
      { sync: true },
    );
    dropped += moves.length;
    const task = taskOfKey(key);
    for (const m of moves) {
      log.warn(`--drop-record: the record ${m.key} is set aside as ${DROPPED_PREFIX}${m.key}${task !== undefined ? `; task ${JSON.stringify(task)} is no longer in the graph` : ''}`);
    }
  }
  return dropped;
}

/** A refusal naming the records that cannot be read and the flag that starts without them. */
export function unreadableRecords(location: string, bad: readonly { key: string; reason: string }[], count: number): DagworkError {
  const named = bad.map(({ key, reason }) => {
    const task = taskOfKey(key);
    return `key ${JSON.stringify(key)}${task !== undefined ? ` (task ${JSON.stringify(task)})` : ''}: ${reason}`;
  });
  const more = count > bad.length ? `; and ${count - bad.length} more` : '';
  const flags = bad.map(({ key }) => `--drop-record ${shellWord(key)}`).join(' ');
  return new DagworkError(
    'STORE_FAILED',
    `the store ${location} holds ${count === 1 ? 'a record' : `${count} records`} that cannot be read: ${named.join('; ')}${more}\n` +
      `Nothing was changed. To start without ${count === 1 ? 'it' : 'them'}, run dhub with ${flags}: each record is set aside under ` +
      `${DROPPED_PREFIX}KEY (not deleted) and its task leaves the graph; tasks that depend on it wait until it is created again.`,
  );
}
