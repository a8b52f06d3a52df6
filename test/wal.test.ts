/** The store's write-ahead log: frames, torn tails, and recovery into LevelDB at open. */
import { appendFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { TaskRecord } from '../proto/src/types.js';
import { Store } from '../hub/src/store/store.js';
import { decodeSegment, encodeFrame } from '../hub/src/store/wal.js';
import { encodeRecord } from '../hub/src/store/record.js';
import { cleanTempDirs, tempDir } from './helpers.js';

afterAll(cleanTempDirs);

const record = (name: string, state: TaskRecord['state'] = 'ready'): TaskRecord => ({
  spec: { name, deps: [], payload: Buffer.from(`echo ${name}`), priority: 0, pool: 'default', maxAttempts: 3, leaseMs: 60_000 },
  state,
  attempts: 0,
  worker: '',
  holder: '',
  leaseDeadline: 0,
  notBefore: 0,
  result: new Uint8Array(0),
  lastError: '',
  log: [],
  seq: 1,
});
const entry = (r: TaskRecord): { key: string; value: Uint8Array } => ({ key: `t:${r.spec.name}`, value: encodeRecord(r) });

describe('write-ahead log', () => {
  it('reads back every frame, and stops at a torn or corrupt one', () => {
    const a = encodeFrame([entry(record('a')), entry(record('é-ü'))]);
    const b = encodeFrame([entry(record('b'))]);
    const whole = decodeSegment(Buffer.concat([a, b]));
    expect(whole.torn).toBe(false);
    expect(whole.entries.map((e) => e.key)).toEqual(['t:a', 't:é-ü', 't:b']);
    expect(Buffer.from(whole.entries[2]?.value ?? []).equals(Buffer.from(encodeRecord(record('b'))))).toBe(true);
    for (const cut of [1, 7, 8, b.length - 1]) {
      const torn = decodeSegment(Buffer.concat([a, b.subarray(0, cut)]));
      expect(torn).toMatchObject({ torn: true });
      expect(torn.entries.map((e) => e.key)).toEqual(['t:a', 't:é-ü']);
    }
    const flipped = Buffer.concat([a, b]);
    flipped[flipped.length - 3] = (flipped[flipped.length - 3] as number) ^ 0xff;
    expect(decodeSegment(flipped).entries).toHaveLength(2);
  });

  it('puts what a crashed hub logged into LevelDB at open, newest value winning, torn tail ignored', async () => {
    const db = join(tempDir(), 'db');
    const store = await Store.open(db);
    await store.write([record('kept')]);
    await store.close(); // everything in LevelDB, no log left
    expect(readdirSync(db).filter((f) => f.startsWith('dagwork-wal-'))).toEqual([]);
    // What a hub killed between its log write and the background LevelDB write leaves behind:
    writeFileSync(join(db, 'dagwork-wal-7'), Buffer.concat([encodeFrame([entry(record('x', 'ready'))]), encodeFrame([entry(record('x', 'running'))])]));
    writeFileSync(join(db, 'dagwork-wal-8'), encodeFrame([entry(record('kept', 'done')), entry(record('y'))]));
    appendFileSync(join(db, 'dagwork-wal-8'), encodeFrame([entry(record('never-acknowledged'))]).subarray(0, 12));
    const reopened = await Store.open(db);
    const states = Object.fromEntries((await reopened.loadAll()).map((r) => [r.spec.name, r.state]));
    expect(states).toEqual({ kept: 'done', x: 'running', y: 'ready' });
    await reopened.close();
    expect(readdirSync(db).filter((f) => f.startsWith('dagwork-wal-'))).toEqual([]);
    // And they are in LevelDB now, not only in the log.
    const third = await Store.open(db);
    expect((await third.loadAll()).length).toBe(3);
    await third.close();
  });

  it('keeps records written since the last background write visible to loadAll', async () => {
    const store = await Store.open(join(tempDir(), 'db'));
    await store.write([record('a')]);
    await store.write([record('a', 'running'), record('b')]);
    const seen = Object.fromEntries((await store.loadAll()).map((r) => [r.spec.name, r.state]));
    expect(seen).toEqual({ a: 'running', b: 'ready' });
    await store.close();
  });
});
