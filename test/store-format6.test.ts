/**
 * Store format 6: a task's spec and its state under two keys, the spec written only when it is
 * new; stores of format 5 (one whole record per task, in LevelDB and in the log) converted at open.
 */
import { spawn } from 'node:child_process';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Level } from 'level';
import { afterAll, describe, expect, it } from 'vitest';
import type { TaskRecord, TaskState } from '../proto/src/types.js';
import { bufferSource, encodeCommit, readSegment, SEGMENT_MAGIC, type WalEntry } from '../hub/src/store/frame.js';
import fc from 'fast-check';
import { decodeRecord, decodeSplitRecord, encodeRecord, encodeSpecRecord, encodeStateRecord, RecordError } from '../hub/src/store/record.js';
import { Store, STORE_FORMAT } from '../hub/src/store/store.js';
import { cleanTempDirs, DHUB, tempDir } from './helpers.js';
import { taskRecord } from './support/records.js';

afterAll(() => cleanTempDirs());

const NONE = { deleted: [], pools: [] };
// Bytes as the store reads them back: Buffers.
const text = (s: string): Uint8Array => Buffer.from(s);

/** The keys of each commit in a log segment. */
function commitKeys(path: string): string[][] {
  const commits: string[][] = [];
  const reading = readSegment(bufferSource(readFileSync(path)));
  for (let next = reading.next(); next.done !== true; next = reading.next()) commits.push(next.value.map((e) => e.key));
  return commits;
}

async function levelKeys(db: string): Promise<string[]> {
  const level = new Level<string, Uint8Array>(db, { valueEncoding: 'view' });
  const keys = await level.keys().all();
  await level.close();
  return keys;
}

/** A task with every field set, in `state`. */
function fullTask(name: string, state: TaskState, seq: number): TaskRecord {
  return taskRecord(name, {
    payload: text(`payload of ${name}`),
    state,
    seq,
    attempts: 2,
    worker: state === 'running' ? 'w1' : '',
    holder: state === 'running' ? 'h1' : '',
    leaseDeadline: state === 'running' ? 1_700_000_060_000 : 0,
    notBefore: state === 'ready' ? 1_700_000_001_000 : 0,
    result: state === 'done' ? text('42') : new Uint8Array(0),
    lastError: 'exit 1',
    log: [
      { state: 'waiting', at: 1_700_000_000_000, worker: '', note: 'created' },
      { state, at: 1_700_000_000_500, worker: 'w1', note: 'attempt 2' },
    ],
    outputs: state === 'done' ? [{ name: 'out.txt', sha256: 'a'.repeat(64), size: 3, executable: false }] : [],
  });
}

const STATES: TaskState[] = ['waiting', 'ready', 'running', 'done', 'failed', 'blocked', 'cancelled', 'verifying'];

describe('store format 6', () => {
  it('writes a task spec once, then only its state at each transition', async () => {
    const db = join(tempDir(), 'db');
    const store = await Store.open(db);
    const created = taskRecord('a', { payload: Buffer.alloc(4096), state: 'ready' });
    await store.write([created], { ...NONE, specs: new Set(['a']) });
    const running = { ...created, state: 'running' as const, attempts: 1, worker: 'w' };
    await store.write([running], { ...NONE, specs: new Set() });
    const segment = join(db, 'dagwork-wal-1');
    expect(commitKeys(segment)).toEqual([['spec:a', 'state:a'], ['state:a']]);
    // The second commit does not carry the 4 KiB payload.
    expect(readFileSync(segment).length).toBeLessThan(4096 + 2 * 200);
    expect(await store.loadAll()).toEqual([running]);
    await store.close();
    const reopened = await Store.open(db);
    expect(await reopened.loadAll()).toEqual([running]);
    await reopened.close();
    expect(await levelKeys(db)).toEqual(['meta:format', 'meta:id', 'spec:a', 'state:a']);
  });

  it('writes a new spec for a replaced task, and forgets both records of a deleted one', async () => {
    const db = join(tempDir(), 'db');
    const store = await Store.open(db);
    await store.write([taskRecord('a'), taskRecord('b', { seq: 2 })], { ...NONE, specs: new Set(['a', 'b']) });
    await store.close();
    const reopened = await Store.open(db);
    const replaced = taskRecord('a', { payload: text('new'), state: 'waiting' });
    await reopened.write([replaced], { deleted: ['b'], pools: [], specs: new Set(['a']) });
    expect(await reopened.loadAll()).toEqual([replaced]);
    await reopened.close();
    expect(await levelKeys(db)).toEqual(['meta:format', 'meta:id', 'spec:a', 'state:a']);
    const again = await Store.open(db);
    expect(await again.loadAll()).toEqual([replaced]);
    await again.close();
  });

  it('joins specs and states in LevelDB order, naming a state without its spec', async () => {
    const db = join(tempDir(), 'db');
    await (await Store.open(db)).close();
    // UTF-8 order: a\uE000 < a\uF000 < a\u{10000}; UTF-16 order puts a\u{10000} (a surrogate) first.
    const names = ['a\uE000', 'a\u{10000}'];
    const level = new Level<string, Uint8Array>(db, { valueEncoding: 'view' });
    for (const name of names) {
      const r = taskRecord(name);
      await level.put(`spec:${name}`, encodeSpecRecord(r.spec, r.seq));
      await level.put(`state:${name}`, encodeStateRecord(r));
    }
    await level.put('state:a\uF000', encodeStateRecord(taskRecord('a\uF000')));
    await level.close();
    const store = await Store.open(db);
    await expect(store.loadAll()).rejects.toThrow(/holds a record that cannot be read: key "state:a\uF000" \(task "a\uF000"\): the state of a task whose spec record is missing\n.*--drop-record 'state:a\uF000'/);
    await store.close();
    const dropped = await Store.open(db, { dropRecords: ['state:a\uF000'] });
    expect((await dropped.loadAll()).map((r) => r.spec.name)).toEqual(names);
    await dropped.close();
  });

  it('sets aside both records of a task named by --drop-record', async () => {
    const db = join(tempDir(), 'db');
    const store = await Store.open(db);
    await store.write([taskRecord('a'), taskRecord('b', { seq: 2 })]);
    await store.close();
    const dropped = await Store.open(db, { dropRecords: ['spec:a'] });
    expect((await dropped.loadAll()).map((r) => r.spec.name)).toEqual(['b']);
    await dropped.close();
    expect(await levelKeys(db)).toEqual(['dropped:spec:a', 'dropped:state:a', 'meta:format', 'meta:id', 'spec:b', 'state:b']);
  });
});

describe('a store of format 5', () => {
  const tasks = STATES.map((state, i) => fullTask(`task-${state}`, state, i + 1));

  /** What a hub of format 5 left: whole records in LevelDB and in its log, pool settings, a deletion. */
  async function format5Store(): Promise<{ db: string; expected: TaskRecord[] }> {
    const db = join(tempDir(), 'db');
    const level = new Level<string, Uint8Array>(db, { valueEncoding: 'view' });
    await level.put('meta:format', text('5'));
    for (const r of tasks) await level.put(`t:${r.spec.name}`, encodeRecord(r));
    await level.put('t:gone', encodeRecord(taskRecord('gone', { seq: 20 })));
    await level.put('p:lic', text('{"maxRunning":3,"paused":false}'));
    await level.close();
    const finished = { ...(tasks[2] as TaskRecord), state: 'done' as const, worker: '', holder: '', leaseDeadline: 0, result: text('7') };
    const logged = fullTask('logged', 'ready', 21);
    const commits: WalEntry[][] = [
      [
        { key: 't:task-running', value: encodeRecord(finished) },
        { key: 't:gone', value: new Uint8Array(0) },
        { key: 'p:gpu', value: text('{"maxRunning":0,"paused":true,"jobVerifier":"","resultVerifier":"/bin/check"}') },
      ],
      [{ key: 't:logged', value: encodeRecord(logged) }],
    ];
    const frames = commits.flatMap((entries, i) => [...encodeCommit(entries, i + 1, 1 << 20)]);
    writeFileSync(join(db, 'dagwork-wal-3'), Buffer.concat([SEGMENT_MAGIC, ...frames]));
    const expected = [...tasks.map((r) => (r.spec.name === 'task-running' ? finished : r)), logged];
    return { db, expected: expected.sort((x, y) => (x.spec.name < y.spec.name ? -1 : 1)) };
  }

  const byName = (records: TaskRecord[]): TaskRecord[] => records.sort((x, y) => (x.spec.name < y.spec.name ? -1 : 1));

  it('opens with every task, its log replayed, converted to format 6', async () => {
    const { db, expected } = await format5Store();
    const store = await Store.open(db);
    expect(byName(await store.loadAll())).toEqual(expected);
    expect(await store.loadPools()).toEqual([
      ['gpu', { maxRunning: 0, paused: true, jobVerifier: '', resultVerifier: '/bin/check' }],
      ['lic', { maxRunning: 3, paused: false, jobVerifier: '', resultVerifier: '' }],
    ]);
    await store.close();
    const keys = await levelKeys(db);
    expect(keys.filter((k) => k.startsWith('t:'))).toEqual([]);
    expect(keys.filter((k) => k.startsWith('spec:'))).toHaveLength(expected.length);
    const level = new Level<string, string>(db);
    expect(await level.get('meta:format')).toBe(String(STORE_FORMAT));
    await level.close();
    const reopened = await Store.open(db);
    expect(byName(await reopened.loadAll())).toEqual(expected);
    await reopened.close();
  });

  it('opens with every task when a conversion was cut off between its batches (kill -9)', async () => {
    const { db, expected } = await format5Store();
    // A cut conversion leaves each task in one shape or the other: convert half of them by hand.
    const level = new Level<string, Uint8Array>(db, { valueEncoding: 'view' });
    for (const r of tasks.slice(0, 4)) {
      await level.batch([
        { type: 'put', key: `spec:${r.spec.name}`, value: encodeSpecRecord(r.spec, r.seq) },
        { type: 'put', key: `state:${r.spec.name}`, value: encodeStateRecord(r) },
        { type: 'del', key: `t:${r.spec.name}` },
      ]);
    }
    await level.put('meta:format', text(String(STORE_FORMAT)));
    await level.close();
    const store = await Store.open(db);
    expect(byName(await store.loadAll())).toEqual(expected);
    await store.close();
    expect((await levelKeys(db)).filter((k) => k.startsWith('t:'))).toEqual([]);
  });

  it('loses nothing when dhub is killed (kill -9) in the middle of converting it', async () => {
    const COUNT = 30_000; // three batches of the conversion
    const original = join(tempDir(), 'db');
    const level = new Level<string, Uint8Array>(original, { valueEncoding: 'view' });
    await level.put('meta:format', text('5'));
    const batch = level.batch();
    for (let i = 0; i < COUNT; i++) batch.put(`t:c${i}`, encodeRecord(taskRecord(`c${i}`, { seq: i + 1 })));
    await batch.write();
    await level.close();
    let cutMidway = 0;
    // Kills later and later, each on a fresh copy of the store, until one lands in the middle.
    for (let delayMs = 200; ; delayMs = Math.round(delayMs * 1.3)) {
      const db = join(tempDir(), 'db');
      cpSync(original, db, { recursive: true });
      const hub = spawn(process.execPath, [DHUB, '--bind', 'tcp://127.0.0.1:*', '--db', db], { stdio: ['ignore', 'ignore', 'pipe'] });
      let listening = false;
      hub.stderr.on('data', (chunk: Buffer) => (listening ||= chunk.toString().includes('listening on')));
      const exited = new Promise((resolve) => hub.once('exit', resolve));
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      hub.kill('SIGKILL');
      await exited;
      const keys = await levelKeys(db);
      const old = keys.filter((k) => k.startsWith('t:')).length;
      const converted = keys.filter((k) => k.startsWith('spec:')).length;
      if (old > 0 && converted > 0) cutMidway++;
      expect(old + converted).toBe(COUNT);
      const store = await Store.open(db);
      const names = new Set((await store.loadAll()).map((r) => r.spec.name));
      await store.close();
      expect(names.size).toBe(COUNT);
      if (cutMidway > 0 || listening || delayMs > 30_000) break;
    }
    expect(cutMidway).toBeGreaterThan(0);
  }, 300_000);
});

describe('the records of format 6', () => {
  const file = fc.record({ name: fc.string(), sha256: fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: 64, maxLength: 64 }), size: fc.nat(), executable: fc.boolean() });
  // As the store reads them back: a Buffer, or one empty Uint8Array.
  const bytes = fc.uint8Array({ maxLength: 40 }).map((b) => (b.length === 0 ? new Uint8Array(0) : Buffer.from(b)));
  const state = fc.constantFrom<TaskState>(...STATES);
  const time = fc.integer({ min: -(2 ** 53) + 1, max: 2 ** 53 - 1 });
  const record = fc.record({
    spec: fc.record({
      name: fc.string({ minLength: 1 }),
      deps: fc.array(fc.string()),
      payload: bytes,
      priority: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
      pool: fc.string(),
      maxAttempts: fc.nat({ max: 2 ** 32 - 1 }),
      leaseMs: fc.nat({ max: 2 ** 32 - 1 }),
      params: fc.array(fc.record({ name: fc.string(), value: fc.string({ unit: 'binary' }) })),
      inputs: fc.array(file),
      outputs: fc.array(fc.string()),
      paramFiles: fc.array(fc.record({ name: fc.string(), param: fc.string() })),
      barrier: fc.boolean(),
      afterEnded: fc.boolean(),
    }),
    state,
    attempts: fc.nat({ max: 2 ** 32 - 1 }),
    worker: fc.string({ unit: 'binary' }),
    holder: fc.string(),
    leaseDeadline: time,
    notBefore: time,
    result: bytes,
    lastError: fc.string({ unit: 'binary' }),
    log: fc.array(fc.record({ state, at: time, worker: fc.string(), note: fc.string({ unit: 'binary' }) })),
    seq: fc.nat(),
    outputs: fc.array(file),
  });

  it('read back as the whole record of format 5 reads', () => {
    fc.assert(
      fc.property(record, (r) => {
        const whole = decodeRecord(encodeRecord(r));
        const spec = encodeSpecRecord(r.spec, r.seq);
        const state = encodeStateRecord(r);
        expect(decodeSplitRecord(spec, state)).toEqual(whole);
        expect(whole).toEqual(r);
        // Protobuf merges concatenated messages: protobufjs reads the two as the whole record.
        expect(decodeRecord(Buffer.concat([spec, state]))).toEqual(r);
      }),
      { numRuns: 300 },
    );
  });

  it('reads strings that repeat from record to record (pool, worker, holder, log notes) as each record holds them', () => {
    // Same byte lengths with other bytes ('é' is two bytes, as 'pa' is), and one longer than the cache keeps.
    const repeated = fc.constantFrom('', 'pa', 'pb', 'é', 'x'.repeat(70), 'x'.repeat(69) + 'y');
    const one = fc.record({ pool: repeated, worker: repeated, holder: repeated, note: repeated, changeWorker: repeated });
    fc.assert(
      fc.property(fc.array(one, { minLength: 2, maxLength: 12 }), (fields) => {
        const records = fields.map((f, i) => {
          const r = taskRecord(`t${i}`, { worker: f.worker, holder: f.holder, log: [{ state: 'ready', at: i, worker: f.changeWorker, note: f.note }] });
          r.spec.pool = f.pool;
          return r;
        });
        // Decoded one after another, as a restart reads them.
        const decoded = records.map((r) => decodeSplitRecord(encodeSpecRecord(r.spec, r.seq), encodeStateRecord(r)));
        expect(decoded).toEqual(records);
      }),
      { numRuns: 300 },
    );
  });

  it('refuses a spec for a state, a state for a spec, and bytes that are neither', () => {
    const r = taskRecord('a');
    const spec = encodeSpecRecord(r.spec, r.seq);
    const state = encodeStateRecord(r);
    expect(() => decodeSplitRecord(state, state)).toThrow(RecordError);
    expect(() => decodeSplitRecord(spec, spec)).toThrow(/not a task's stored state/);
    expect(() => decodeSplitRecord(spec, Buffer.from([0x10, 0xff]))).toThrow(/not a task's stored state: a varint runs past the end/);
    expect(() => decodeSplitRecord(spec, Buffer.from([0x10, 99]))).toThrow(/unknown state number 99/);
  });
});
