/**
 * The snapshot a clean stop writes (Store.close with the graph's tasks) and the next start reads
 * in place of LevelDB: read once and deleted; never used when LevelDB may hold something else
 * (a write since, a crash, records dropped at open); a file that does not check out (damaged, cut
 * short, another snapshot's, gone) is named in the log and LevelDB read instead. A real dhub:
 * SIGTERM writes it, the start after reads it, and after a kill -9 the tasks changed since are
 * read back as they were acknowledged.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { Level } from 'level';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Logger } from '../hub/src/log.js';
import { fnv1a } from '../hub/src/store/frame.js';
import { SNAPSHOT_FILE } from '../hub/src/store/snapshot.js';
import { encodeSpecRecord, encodeStateRecord, RECENT_NAMES } from '../hub/src/store/record.js';
import { WireWriter } from '../proto/src/wire-writer.js';
import { Store } from '../hub/src/store/store.js';
import type { TaskRecord } from '../proto/src/types.js';
import { Client } from '../worker-kit/src/index.js';
import { cleanTempDirs, startHub, tempDir, type RunningHub } from './helpers.js';
import { taskRecord } from './support/records.js';

afterAll(() => cleanTempDirs());

/** Tasks of 400-byte payloads: a snapshot of several 1 MiB chunks. */
const COUNT = 6_000;

function captureLog(): Logger & { lines: string[] } {
  const lines: string[] = [];
  return { lines, error: (m) => lines.push(`error ${m}`), warn: (m) => lines.push(`warn ${m}`), info: (m) => lines.push(`info ${m}`), debug() {} };
}

/** The records by name, their bytes as hex (a deep comparison of thousands of byte arrays is slow). */
const byName = (records: readonly TaskRecord[]): unknown[] =>
  [...records]
    .sort((a, b) => (a.spec.name < b.spec.name ? -1 : a.spec.name > b.spec.name ? 1 : 0))
    .map((r) => ({ ...r, spec: { ...r.spec, payload: Buffer.from(r.spec.payload).toString('hex') }, result: Buffer.from(r.result).toString('hex') }));

function records(count: number, state: TaskRecord['state'] = 'ready'): TaskRecord[] {
  return Array.from({ length: count }, (_, i) =>
    taskRecord(`t${i}`, {
      seq: i + 1,
      state,
      payload: Buffer.alloc(400, i % 251),
      attempts: i % 3,
      log: [{ state: 'ready', at: 1_700_000_000_000 + i, worker: '', note: 'created' }],
    }),
  );
}

/** A store holding `stored`, closed with `snapshot` as the graph's tasks. */
async function storeWith(stored: TaskRecord[], snapshot: TaskRecord[] = stored): Promise<string> {
  const db = join(tempDir(), 'db');
  const store = await Store.open(db);
  for (let i = 0; i < stored.length; i += 1000) {
    const batch = stored.slice(i, i + 1000);
    await store.write(batch, { deleted: [], pools: [], specs: new Set(batch.map((r) => r.spec.name)) });
  }
  await store.close(() => snapshot);
  return db;
}

function flipped(file: Buffer, at: number): Buffer {
  const copy = Buffer.from(file);
  copy.writeUInt8(copy.readUInt8(at) ^ 1, at);
  return copy;
}

async function load(db: string, options: { dropRecords?: string[] } = {}): Promise<{ tasks: TaskRecord[]; lines: string[]; expected: number[] }> {
  const log = captureLog();
  const store = await Store.open(db, { log, ...options });
  const tasks: TaskRecord[] = [];
  /** What the store said would come, and when: the count told, then -1 for each task handed over before it. */
  const expected: number[] = [];
  try {
    await store.loadEach(
      (r) => {
        if (expected.length === 0) expected.push(-1);
        tasks.push(r);
      },
      (count) => expected.push(count),
    );
  } finally {
    await store.close();
  }
  return { tasks, lines: log.lines, expected };
}

describe('the snapshot of a clean stop', () => {
  it('is what the next start reads (not LevelDB), and every start after until another is written: the file stays, and the log kept with it', async () => {
    const stored = records(COUNT);
    // The snapshot given one task more than LevelDB holds: which one the start read shows.
    const extra = taskRecord('only-in-the-snapshot', { seq: COUNT + 1 });
    const db = await storeWith(stored, [...stored, extra]);
    expect(existsSync(join(db, SNAPSHOT_FILE))).toBe(true);
    const first = await load(db);
    expect(first.lines.filter((l) => l.includes('snapshot'))).toEqual([expect.stringMatching(new RegExp(`^info read ${COUNT + 1} tasks from the snapshot in \\d+ ms$`))]);
    expect(byName(first.tasks)).toEqual(byName([...stored, extra]));
    // Told how many come before the first (a restore makes room for them at once).
    expect(first.expected).toEqual([COUNT + 1]);
    expect(existsSync(join(db, SNAPSHOT_FILE))).toBe(true);
    // The close after that load had no tasks to give (as after a crash): the same snapshot.
    const second = await load(db);
    expect(second.lines.filter((l) => l.includes('snapshot'))).toEqual([expect.stringMatching(new RegExp(`^info read ${COUNT + 1} tasks from the snapshot in \\d+ ms$`))]);
    expect(byName(second.tasks)).toEqual(byName([...stored, extra]));
    expect(second.expected).toEqual([COUNT + 1]);
    // Out of the store: LevelDB's tasks, without the extra one, and LevelDB does not know how many it holds.
    const third = await load(db, { dropRecords: ['meta:snapshot'] });
    expect(byName(third.tasks)).toEqual(byName(stored));
    expect(third.expected).toEqual([-1]);
  });

  it('writes a dependency on one of the last RECENT_NAMES tasks by its place and reads it back as its name, in its order among the others', async () => {
    const count = RECENT_NAMES + 3_000;
    // The task before; the farthest one kept and the one just past it; a name no task has; a
    // name twice; a task created later: in an order of their own.
    const stored = Array.from({ length: count }, (_, i) => {
      const deps = [`t${i - RECENT_NAMES}`, 'never-made', `t${i - 1}`, `t${i - RECENT_NAMES - 1}`, `t${i - 1}`, `t${i + 5}`].filter((d) => {
        const n = Number(d.slice(1));
        return d === 'never-made' || (n >= 0 && n < count);
      });
      const r = taskRecord(`t${i}`, { seq: i + 1 });
      return { ...r, spec: { ...r.spec, deps } };
    });
    const db = await storeWith(stored);
    // Smaller than the records with every name written out (a place is one to three bytes, a name
    // here six), where without places it would be longer by its lengths and headers.
    const file = readFileSync(join(db, SNAPSHOT_FILE));
    const named = stored.reduce((n, r) => n + encodeSpecRecord(r.spec, r.seq).length + encodeStateRecord(r).length, 0);
    expect(file.length).toBeLessThan(named);
    const { tasks, lines } = await load(db);
    expect(lines.filter((l) => l.includes('snapshot'))).toEqual([expect.stringMatching(/^info read \d+ tasks from the snapshot/)]);
    expect(tasks.map((r) => r.spec.deps)).toEqual(stored.map((r) => r.spec.deps));
  });

  it('reads a snapshot of the release before (version 1: every dependency by its name)', async () => {
    const stored = records(3_000).map((r, i) => ({ ...r, spec: { ...r.spec, deps: i > 0 ? [`t${i - 1}`, 'never-made'] : [] } }));
    const db = await storeWith(stored);
    const path = join(db, SNAPSHOT_FILE);
    const written = readFileSync(path);
    // As that release wrote it (snapshot.ts has the layout): its magic, the same id, chunks of its records.
    const chunks: Buffer[] = [];
    let payload: Buffer[] = [];
    let inChunk = 0;
    let payloadBytes = 0;
    const w = new WireWriter();
    const varint = (n: number): Buffer => {
      w.at = 0;
      w.varint(n);
      return Buffer.from(w.buf.subarray(0, w.at));
    };
    const flush = (): void => {
      const body = Buffer.concat(payload);
      const header = Buffer.alloc(16);
      header.writeUInt32LE(0x5e1f0c8a, 0);
      header.writeUInt32LE(body.length, 4);
      header.writeUInt32LE(inChunk, 8);
      header.writeUInt32LE(fnv1a(body), 12);
      chunks.push(header, body);
      payload = [];
      payloadBytes = 0;
      inChunk = 0;
    };
    for (const r of stored) {
      const spec = encodeSpecRecord(r.spec, r.seq);
      const state = encodeStateRecord(r);
      const task = [varint(spec.length), Buffer.from(spec), varint(state.length), Buffer.from(state)];
      payload.push(...task);
      payloadBytes += task.reduce((n, b) => n + b.length, 0);
      inChunk++;
      if (payloadBytes >= 1 << 20) flush();
    }
    if (inChunk > 0) flush();
    const v1 = Buffer.concat([Buffer.from('dagsnap\x01', 'latin1'), written.subarray(8, 24), ...chunks]);
    // The store's marker names the file's size: the release before's store named its own file's.
    const level = new Level<string, string>(db, { valueEncoding: 'utf8' });
    const mark = JSON.parse(await level.get('meta:snapshot')) as { bytes: number };
    expect(v1.length).toBeGreaterThan(written.length);
    await level.put('meta:snapshot', JSON.stringify({ ...mark, bytes: v1.length }));
    await level.close();
    writeFileSync(path, v1);
    const { tasks, lines } = await load(db);
    expect(lines.filter((l) => l.includes('snapshot'))).toEqual([expect.stringMatching(/^info read 3000 tasks from the snapshot/)]);
    expect(byName(tasks)).toEqual(byName(stored));
  });

  it('holds every field of a task as LevelDB does', async () => {
    const stored = records(50).map((r, i) => ({
      ...r,
      spec: {
        ...r.spec,
        deps: i > 0 ? [`t${i - 1}`, 'never-made'] : [],
        priority: i === 0 ? 0 : -i,
        pool: i % 2 === 0 ? 'gpu' : 'default',
        params: [{ name: 'x', value: `é${i}` }],
        inputs: [{ name: 'in.txt', sha256: 'a'.repeat(64), size: i, executable: i % 2 === 0 }],
        outputs: ['out.txt'],
        paramFiles: [{ name: 'p.txt', param: 'x' }],
      },
      state: (['waiting', 'ready', 'running', 'done', 'failed'] as const)[i % 5] as TaskRecord['state'],
      worker: i % 5 === 2 ? 'w1' : '',
      holder: i % 5 === 2 ? 'w1' : '',
      leaseDeadline: i % 5 === 2 ? 1_700_000_060_000 + i : 0,
      notBefore: i % 7 === 1 ? 1_700_000_000_500 : 0,
      result: i % 5 === 3 ? Buffer.from(`result ${i}`) : new Uint8Array(0),
      lastError: i % 5 === 4 ? 'exit code 2' : '',
    }));
    const db = await storeWith(stored);
    expect(byName((await load(db)).tasks)).toEqual(byName(stored));
  });

  it('is not used when records were dropped at the start (--drop-record): the tasks are LevelDB’s', async () => {
    const stored = records(10);
    const db = await storeWith(stored);
    const { tasks, lines } = await load(db, { dropRecords: ['spec:t3'] });
    expect(lines).toContainEqual(`warn the snapshot ${join(db, SNAPSHOT_FILE)}: it is not used: records were dropped (--drop-record) since it was written; the tasks are read from LevelDB`);
    expect(tasks.map((r) => r.spec.name).sort()).toEqual(stored.map((r) => r.spec.name).filter((n) => n !== 't3').sort());
    expect(existsSync(join(db, SNAPSHOT_FILE))).toBe(false);
  });

  it.each([
    ['a byte changed in a chunk', (file: Buffer) => flipped(file, file.length - 100), /it is not used: the chunk at byte \d+ is damaged \(its sum does not match\)/],
    ['a chunk’s length changed', (file: Buffer) => flipped(file, 24 + 4 + 2), /it is not used: the chunk at byte 24 is damaged/],
    ['cut short', (file: Buffer) => file.subarray(0, file.length - 10), /it is not used: it holds \d+ bytes, not the \d+ written/],
    ['longer than written', (file: Buffer) => Buffer.concat([file, Buffer.alloc(1)]), /it is not used: it holds \d+ bytes, not the \d+ written/],
    ['not a snapshot', () => Buffer.from('hello'), /it is not used: it does not start as a snapshot does/],
    ['of a version this dhub does not read', (file: Buffer) => flipped(file, 7), /it is not used: it is a snapshot of version 3, which this dhub does not read \(versions 1 and 2\)/],
  ])('is not used when %s: the log says so, the tasks are LevelDB’s', async (_what, damage, message) => {
    const stored = records(COUNT);
    const db = await storeWith(stored, [...stored, taskRecord('only-in-the-snapshot', { seq: COUNT + 1 })]);
    const path = join(db, SNAPSHOT_FILE);
    const file = readFileSync(path);
    writeFileSync(path, damage(file));
    const { tasks, lines, expected } = await load(db);
    const warning = lines.find((l) => l.startsWith('warn the snapshot'));
    expect(warning).toMatch(message);
    expect(warning).toMatch(/; the tasks are read from LevelDB$/);
    expect(byName(tasks)).toEqual(byName(stored));
    // The file's count was not told: it did not check out.
    expect(expected).toEqual([-1]);
    expect(existsSync(path)).toBe(false);
  });

  it('is not used when it is another stop’s snapshot, or gone', async () => {
    const stored = records(20);
    const db = await storeWith(stored, stored.slice(0, 5));
    const other = await storeWith(stored.slice(0, 3));
    writeFileSync(join(db, SNAPSHOT_FILE), readFileSync(join(other, SNAPSHOT_FILE)));
    const swapped = await load(db);
    expect(swapped.lines.find((l) => l.startsWith('warn'))).toMatch(/it is not used: it is snapshot [0-9a-f]{16}, not the [0-9a-f]{16} the store names; the tasks are read from LevelDB$/);
    expect(byName(swapped.tasks)).toEqual(byName(stored));

    const gone = await storeWith(stored, stored.slice(0, 5));
    rmSync(join(gone, SNAPSHOT_FILE));
    const missing = await load(gone);
    expect(missing.lines.find((l) => l.startsWith('warn'))).toMatch(/it is not used: cannot open it: ENOENT/);
    expect(byName(missing.tasks)).toEqual(byName(stored));
  });

  it('a snapshot file the store does not name (a stop cut before it named it, or while it wrote it) is deleted, not read, and said', async () => {
    const stored = records(20);
    const db = await storeWith(stored);
    const file = readFileSync(join(db, SNAPSHOT_FILE));
    // The store's record of it gone, as when a stop was cut before it wrote the record.
    const level = new Level<string, Uint8Array>(db, { valueEncoding: 'view' });
    await level.del('meta:snapshot');
    await level.close();
    const extra = taskRecord('only-in-the-snapshot', { seq: 99 });
    const other = await storeWith([...stored, extra]);
    writeFileSync(join(db, SNAPSHOT_FILE), readFileSync(join(other, SNAPSHOT_FILE)));
    expect(file.length).toBeGreaterThan(0);
    // And the temporary file of a stop killed while it wrote one.
    writeFileSync(join(db, `${SNAPSHOT_FILE}.tmp`), file.subarray(0, 1000));
    const { tasks, lines } = await load(db);
    expect(lines.filter((l) => l.includes('snapshot'))).toEqual([
      `warn the snapshot ${join(db, SNAPSHOT_FILE)}: the store does not name it (its stop was cut short, or the store lost its record of it); the tasks are read from LevelDB`,
    ]);
    expect(byName(tasks)).toEqual(byName(stored));
    expect(existsSync(join(db, SNAPSHOT_FILE))).toBe(false);
    expect(existsSync(join(db, `${SNAPSHOT_FILE}.tmp`))).toBe(false);
  });

  it('is not used when a dhub of an older format opened the store (started past the format check with --drop-record meta:format)', async () => {
    const stored = records(10);
    const db = await storeWith(stored, [...stored, taskRecord('only-in-the-snapshot', { seq: 11 })]);
    // What such a hub leaves: its format, and its writes, with the snapshot's record still there.
    const level = new Level<string, Uint8Array>(db, { valueEncoding: 'view' });
    const late = taskRecord('late', { seq: 12 });
    await level.batch([
      { type: 'put', key: 'meta:format', value: Buffer.from('6') },
      { type: 'put', key: 'spec:late', value: encodeSpecRecord(late.spec, late.seq) },
      { type: 'put', key: 'state:late', value: encodeStateRecord(late) },
    ]);
    await level.close();
    const { tasks, lines } = await load(db);
    expect(lines).toContainEqual(`warn the snapshot ${join(db, SNAPSHOT_FILE)}: it is not used: the store was opened by a dhub of format 6 since it was written; the tasks are read from LevelDB`);
    expect(byName(tasks)).toEqual(byName([...stored, late]));
  });

  it('--drop-record meta:snapshot sets its record aside: the file is not read', async () => {
    const stored = records(10);
    const db = await storeWith(stored, [...stored, taskRecord('only-in-the-snapshot', { seq: 11 })]);
    const { tasks, lines } = await load(db, { dropRecords: ['meta:snapshot'] });
    expect(lines.filter((l) => l.startsWith('warn'))).toEqual([
      'warn --drop-record: the record meta:snapshot is set aside as dropped:meta:snapshot',
      `warn the snapshot ${join(db, SNAPSHOT_FILE)}: the store does not name it (its stop was cut short, or the store lost its record of it); the tasks are read from LevelDB`,
    ]);
    expect(byName(tasks)).toEqual(byName(stored));
  });

  it.each([
    ['a directory', (path: string) => mkdirSync(path)],
    ['a FIFO (which would block a plain open)', (path: string) => execFileSync('mkfifo', [path])],
    ['a link to /dev/zero', (path: string) => symlinkSync('/dev/zero', path)],
  ])('is not used when %s stands in its place: the start reads LevelDB', async (_what, put) => {
    const stored = records(10);
    const db = await storeWith(stored, [...stored, taskRecord('only-in-the-snapshot', { seq: 11 })]);
    const path = join(db, SNAPSHOT_FILE);
    rmSync(path);
    put(path);
    const { tasks, lines } = await load(db);
    expect(lines.find((l) => l.startsWith('warn the snapshot'))).toMatch(/it is not used: (it is not a file|cannot open it: ELOOP.*); the tasks are read from LevelDB$/);
    expect(byName(tasks)).toEqual(byName(stored));
  });

  it('a directory in the place of its temporary file is said, and the store opens', async () => {
    const stored = records(5);
    const db = await storeWith(stored);
    mkdirSync(join(db, `${SNAPSHOT_FILE}.tmp`));
    writeFileSync(join(db, `${SNAPSHOT_FILE}.tmp`, 'x'), 'x');
    const log = captureLog();
    const store = await Store.open(db, { log });
    expect(byName(await store.loadAll())).toEqual(byName(stored));
    await store.close(() => stored);
    expect(log.lines.find((l) => l.includes('.tmp'))).toMatch(/^warn cannot delete .*dagwork-snapshot\.tmp: .*; no snapshot is written while it is there$/);
    // The one before stays the store's.
    expect(log.lines.find((l) => l.includes('no snapshot written'))).toMatch(/^warn no snapshot written \(.*EEXIST.*\): the next start reads the one before, with the log kept for it$/);
    expect((await load(db)).lines.filter((l) => l.includes('from the snapshot'))).toEqual([expect.stringMatching(/^info read 5 tasks from the snapshot in \d+ ms$/)]);
  });

  it('cut short after its check, while its tasks are read: the start fails, saying the next one reads LevelDB, and no task is handed over twice', async () => {
    const stored = records(COUNT);
    const db = await storeWith(stored);
    const path = join(db, SNAPSHOT_FILE);
    const store = await Store.open(db, { log: captureLog() });
    const seen = new Map<string, number>();
    let cut = false;
    const loading = store.loadEach((r) => {
      if (!cut) {
        cut = true;
        truncateSync(path, 100_000);
      }
      seen.set(r.spec.name, (seen.get(r.spec.name) ?? 0) + 1);
    });
    await expect(loading).rejects.toThrow(/^the snapshot .* or the log kept with it holds a task that cannot be read \(the snapshot changed or failed while it was read: it was cut short while it was read \(at byte \d+\)\); the snapshot is deleted, and the next start reads the tasks from LevelDB: start dhub again$/);
    await store.close();
    expect([...seen.values()].filter((n) => n > 1)).toEqual([]);
    expect(existsSync(path)).toBe(false);
    expect(byName((await load(db)).tasks)).toEqual(byName(stored));
  });

  it('is not read by a load after a write (LevelDB and the log are), and stays for the next start, which reads the write from the log kept with it', async () => {
    const stored = records(10);
    const extra = taskRecord('only-in-the-snapshot', { seq: 11 });
    const db = await storeWith(stored, [...stored, extra]);
    const store = await Store.open(db);
    const late = taskRecord('late', { seq: 12 });
    await store.write([late], { deleted: ['t0'], pools: [], specs: new Set(['late']) });
    const tasks = await store.loadAll();
    await store.close();
    expect(tasks.map((r) => r.spec.name).sort()).toEqual([...stored.slice(1), late].map((r) => r.spec.name).sort());
    expect(existsSync(join(db, SNAPSHOT_FILE))).toBe(true);
    const next = await load(db);
    expect(next.tasks.map((r) => r.spec.name).sort()).toEqual([...stored.slice(1), extra, late].map((r) => r.spec.name).sort());
    expect(next.lines).toContainEqual(expect.stringMatching(/^info read 11 tasks from the snapshot and 2 tasks' newer records from the log kept with it \(1 not in the snapshot\) in \d+ ms$/));
  });

  it('is not written when a write was left in the log (LevelDB refused it)', async () => {
    const db = join(tempDir(), 'db');
    const log = captureLog();
    const store = await Store.open(db, { log });
    await store.write(records(3), { deleted: [], pools: [], specs: new Set(['t0', 't1', 't2']) });
    // LevelDB closed under the store: the close cannot put the log into it.
    await (store as unknown as { db: { close(): Promise<void> } }).db.close();
    await store.close(() => records(3)).catch(() => undefined);
    expect(log.lines.filter((l) => l.includes('wrote a snapshot'))).toEqual([]);
    expect(existsSync(join(db, SNAPSHOT_FILE))).toBe(false);
  });
});

describe('dhub and its snapshot', () => {
  it('a SIGTERM writes it and the next start reads it; after a kill -9 the start reads it again, with the changes since from the log kept with it', async () => {
    const db = join(tempDir(), 'db');
    // Every hub and client started here ends, whatever fails (stop() of an ended hub only waits).
    const hubs: RunningHub[] = [];
    const clients: Client[] = [];
    const started = async (): Promise<{ hub: RunningHub; client: Client }> => {
      const hub = await startHub({ db });
      hubs.push(hub);
      const client = new Client({ hub: hub.endpoint, worker: 'w1' });
      clients.push(client);
      return { hub, client };
    };
    try {
      const first = await started();
      const names = Array.from({ length: 300 }, (_, i) => `job${i}`);
      await first.client.create(names.map((name, i) => ({ name, deps: i % 10 === 0 ? [] : [`job${i - 1}`], payload: `echo ${i}` })));
      const leased = await first.client.steal({ n: 5 });
      expect(await first.hub.stop()).toBe(0);
      expect(first.hub.log()).toMatch(/wrote a snapshot of 300 tasks \(\d+ bytes\) in \d+ ms: the next start reads it/);

      const second = await started();
      expect(second.hub.log()).toMatch(/read 300 tasks from the snapshot in \d+ ms/);
      const before = await second.client.status();
      expect(before.total).toBe(300);
      expect(before.counts.running).toBe(5);
      // Acknowledged after the start from the snapshot, then the hub is killed: no snapshot says so.
      await second.client.complete(leased.tasks.map((t) => ({ name: t.name })));
      await second.client.create([{ name: 'late', payload: 'echo late' }]);
      await second.hub.stop('SIGKILL');

      const third = await started();
      // The 5 completed, the tasks they released, and the one created after.
      expect(third.hub.log()).toMatch(/read 300 tasks from the snapshot and \d+ tasks' newer records from the log kept with it \(1 not in the snapshot\) in \d+ ms/);
      const after = await third.client.status();
      expect(after.total).toBe(301);
      expect(after.counts.done).toBe(5);
      expect(after.counts.running).toBe(0);
      for (const t of leased.tasks) expect((await third.client.lookup(t.name)).task.state).toBe('done');
    } finally {
      for (const client of clients) client.close();
      for (const hub of hubs) await hub.stop();
    }
  });
});
