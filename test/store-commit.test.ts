/**
 * A group commit built in place: records written straight into the log frames (CommitBuilder), the
 * values the store holds until LevelDB has them being views into those frames, one pending entry
 * per task for its spec and state. The log's bytes must be those encodeCommit writes, and what a
 * store gives back after a reopen, or after dhub is killed (kill -9), what was acknowledged.
 */
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { TaskRecord } from '../proto/src/types.js';
import { Client } from '../worker-kit/src/index.js';
import { CommitBuilder, encodeCommit, sealCommit, type WalEntry } from '../hub/src/store/frame.js';
import { ByteWriter, WireWriter } from '../proto/src/wire-writer.js';
import { decodeSplitRecord, encodeSpecRecord, encodeStateRecord, writeSpecRecord, writeStateRecord } from '../hub/src/store/record.js';
import { Store } from '../hub/src/store/store.js';
import { cleanTempDirs, startHub, tempDir } from './helpers.js';
import { taskRecord } from './support/records.js';

afterAll(() => cleanTempDirs());

const NONE = { deleted: [], pools: [] };

/** `entries` built in place, as commit 7 with frames of at most `maxFrameBytes`. */
function built(entries: readonly WalEntry[], maxFrameBytes: number): { frames: Buffer[]; values: Uint8Array[] } {
  const writer = new ByteWriter();
  const commit = new CommitBuilder(writer, maxFrameBytes, 0);
  for (const e of entries) {
    const colon = e.key.indexOf(':') + 1;
    commit.begin(e.key.slice(0, colon), e.key.slice(colon));
    writer.room(e.value.length);
    writer.buf.set(e.value, writer.at);
    writer.at += e.value.length;
    commit.end();
  }
  const result = commit.finish();
  sealCommit(result.frames, 7);
  return result;
}

describe('a commit built in place (CommitBuilder)', () => {
  const bytes = (n: number, fill: number): Uint8Array => new Uint8Array(n).fill(fill);
  const entries: WalEntry[] = [
    { key: 'spec:a', value: bytes(3, 1) },
    { key: 'state:a', value: bytes(127, 2) }, // the largest value with a 1-byte length
    { key: 'state:b', value: bytes(128, 3) }, // the smallest with 2
    { key: 'spec:ünï', value: bytes(20_000, 4) }, // 3-byte length; a name that is not ASCII
    { key: 'state:' + 'x'.repeat(39), value: bytes(1, 5) }, // the longest name given a 1-byte length unmeasured
    { key: 'state:' + 'é'.repeat(40), value: bytes(1, 6) }, // a long name, measured: 86 bytes
    { key: 'state:' + '\u{1F600}'.repeat(70), value: bytes(2, 7) }, // a key past 127 bytes: 2-byte length
    { key: 'state:deleted', value: new Uint8Array(0) },
    { key: 'p:pool', value: bytes(5000, 8) },
  ];

  for (const maxFrameBytes of [1024, 4096, 32 << 20]) {
    it(`writes the bytes encodeCommit writes, frames split at ${maxFrameBytes} bytes the same`, () => {
      const { frames, values } = built(entries, maxFrameBytes);
      const expected = [...encodeCommit(entries, 7, maxFrameBytes)];
      expect(frames.length).toBe(expected.length);
      if (maxFrameBytes === 1024) expect(frames.length).toBeGreaterThan(2);
      expect(Buffer.concat(frames)).toEqual(Buffer.concat(expected));
      expect(values.map((v) => Buffer.from(v))).toEqual(entries.map((e) => Buffer.from(e.value)));
    });
  }

  it('gives the values as views into the frames, not copies', () => {
    const { frames, values } = built(entries, 4096);
    for (const value of values) expect(frames.some((f) => f.buffer === value.buffer && value.byteOffset >= f.byteOffset && value.byteOffset + value.length <= f.byteOffset + f.length)).toBe(true);
  });

  it('writes the records encodeSpecRecord and encodeStateRecord give, long ones too', () => {
    const records: TaskRecord[] = [
      taskRecord('short'),
      // A spec past 127 bytes (its length moves along), names not ASCII, a long log.
      taskRecord('lång', {
        state: 'failed',
        lastError: 'ë'.repeat(300),
        log: Array.from({ length: 20 }, (_, i) => ({ state: 'running' as const, at: 1_700_000_000_000 + i, worker: `w${i}`, note: 'ñ' })),
        seq: 2 ** 40,
        payload: new Uint8Array(300).fill(9),
      }),
    ];
    records[1]!.spec.deps = ['d'.repeat(200), 'dép'];
    const writer = new WireWriter();
    const commit = new CommitBuilder(writer, 1024, 0);
    for (const r of records) {
      commit.begin('spec:', r.spec.name);
      writeSpecRecord(writer, r.spec, r.seq);
      commit.end();
      commit.begin('state:', r.spec.name);
      writeStateRecord(writer, r);
      commit.end();
    }
    const { values } = commit.finish();
    const expected = records.flatMap((r) => [encodeSpecRecord(r.spec, r.seq), encodeStateRecord(r)]);
    expect(values.map((v) => Buffer.from(v))).toEqual(expected.map((v) => Buffer.from(v)));
    expect(decodeSplitRecord(values[2]!, values[3]!)).toEqual(decodeSplitRecord(expected[2]!, expected[3]!));
    expect(decodeSplitRecord(values[2]!, values[3]!).lastError).toBe('ë'.repeat(300));
  });
});

describe("a task's spec and state written together, then its state alone", () => {
  const created = (name: string): TaskRecord => taskRecord(name, { state: 'ready', payload: Buffer.from(`payload of ${name}`), seq: 5 });
  const running = (name: string): TaskRecord => ({ ...created(name), state: 'running', worker: 'w', attempts: 1 });

  it('reads back the spec of the first commit and the state of the second after a reopen, from the log and from LevelDB', async () => {
    for (const intoLevel of [false, true]) {
      const db = join(tempDir(), 'db');
      let store = await Store.open(db);
      await store.write([created('a'), created('b')], { ...NONE, specs: new Set(['a', 'b']) });
      if (intoLevel) {
        // The first commit into LevelDB before the second one is logged.
        await store.close();
        store = await Store.open(db);
      }
      await store.write([running('a')], { ...NONE, specs: new Set() });
      // Read while the log holds them, then after the close puts them into LevelDB.
      const live = await store.loadAll();
      await store.close();
      store = await Store.open(db);
      const reopened = await store.loadAll();
      await store.close();
      for (const records of [live, reopened]) {
        const byName = new Map(records.map((r) => [r.spec.name, r]));
        expect({ ...byName.get('a'), spec: undefined }).toEqual({ ...running('a'), spec: undefined });
        expect(byName.get('a')?.state).toBe('running');
        expect(Buffer.from(byName.get('a')!.spec.payload).toString()).toBe('payload of a');
        expect(byName.get('b')?.state).toBe('ready');
        expect(records.length).toBe(2);
      }
    }
  });

  it('keeps both when dhub is killed (kill -9) after the state alone was acknowledged, and when killed before it reached LevelDB', async () => {
    for (const waitMs of [0, 1000]) {
      const hub = await startHub();
      const client = new Client({ hub: hub.endpoint, worker: 'w' });
      let stolen: string[];
      try {
        await client.create([{ name: 'a', payload: Buffer.from('payload of a') }, { name: 'b' }]);
        // 1000 ms: the spec is in LevelDB (moved after 200 ms) when the state alone is logged.
        await new Promise((resolve) => setTimeout(resolve, waitMs));
        stolen = (await client.steal({ n: 1 })).tasks.map((t) => t.name);
      } finally {
        client.close();
        await hub.stop('SIGKILL');
      }
      expect(stolen).toHaveLength(1);
      const store = await Store.open(hub.db);
      const records = await store.loadAll();
      await store.close();
      const byName = new Map(records.map((r) => [r.spec.name, r]));
      expect(records.length).toBe(2);
      expect(byName.get(stolen[0]!)?.state).toBe('running');
      expect(Buffer.from(byName.get('a')!.spec.payload).toString()).toBe('payload of a');
      expect([...byName.values()].filter((r) => r.state === 'ready').length).toBe(1);
    }
  }, 60_000);
});
