/** The store's write-ahead log: frames, torn tails, and recovery into LevelDB at open. */
import { appendFileSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { TaskRecord } from '../proto/src/types.js';
import type { Logger } from '../hub/src/log.js';
import { Level } from 'level';
import { Store, STORE_FORMAT } from '../hub/src/store/store.js';
import { bufferSource, encodeCommit, encodeLegacyFrame as encodeFrame, readSegment, SEGMENT_MAGIC, type SegmentReport, type WalEntry } from '../hub/src/store/frame.js';
import { encodeRecord } from '../hub/src/store/record.js';
import { cleanTempDirs, tempDir } from './helpers.js';
import { taskRecord } from './support/records.js';

afterAll(cleanTempDirs);

const record = (name: string, state: TaskRecord['state'] = 'ready'): TaskRecord => taskRecord(name, { state, payload: Buffer.from(`echo ${name}`) });
const entry = (r: TaskRecord): { key: string; value: Uint8Array } => ({ key: `t:${r.spec.name}`, value: encodeRecord(r) });

/** A format-3 segment holding these group commits. */
function segment(commits: WalEntry[][], maxFrameBytes = 1 << 20): Buffer {
  const parts: Buffer[] = [SEGMENT_MAGIC];
  commits.forEach((c, i) => {
    for (const frame of encodeCommit(c, i + 1, maxFrameBytes)) parts.push(frame);
  });
  return Buffer.concat(parts);
}

/** Where each frame of a sound format-3 segment ends (a frame: 24-byte header, payload length at +4). */
function frameEnds(data: Buffer): number[] {
  const ends: number[] = [];
  for (let at = SEGMENT_MAGIC.length; at < data.length; at += 24 + data.readUInt32LE(at + 4)) ends.push(at + 24 + data.readUInt32LE(at + 4));
  return ends;
}

/** Every key a segment gives back, and what was found. */
function decode(data: Buffer): { keys: string[]; report: SegmentReport } {
  const keys: string[] = [];
  const commits = readSegment(bufferSource(data));
  for (let next = commits.next(); ; next = commits.next()) {
    if (next.done === true) return { keys, report: next.value };
    for (const e of next.value) keys.push(e.key);
  }
}

describe('write-ahead log', () => {
  it('reads back every entry of a segment, in order', () => {
    const data = segment([[entry(record('a')), entry(record('é-ü'))], [entry(record('b'))]]);
    const { keys, report } = decode(data);
    expect(keys).toEqual(['t:a', 't:é-ü', 't:b']);
    expect(report).toMatchObject({ format: 3, commits: 2, damage: [], torn: undefined });
  });

  it('drops a last frame cut short, anywhere in it, as a torn tail', () => {
    const first = segment([[entry(record('a'))]]);
    const last = [...encodeCommit([entry(record('b'))], 2, 1 << 20)][0] as Buffer;
    for (const cut of [1, 7, 8, 23, 24, last.length - 1]) {
      const { keys, report } = decode(Buffer.concat([first, last.subarray(0, cut)]));
      expect({ cut, keys, damage: report.damage, torn: report.torn }).toEqual({ cut, keys: ['t:a'], damage: [], torn: { offset: first.length, bytes: cut } });
    }
  });

  it('reads a format-2 segment and drops its torn tail', () => {
    const a = encodeFrame([entry(record('a')), entry(record('b'))]);
    const b = encodeFrame([entry(record('c'))]);
    const { keys, report } = decode(Buffer.concat([a, b.subarray(0, b.length - 1)]));
    expect(keys).toEqual(['t:a', 't:b']);
    expect(report).toMatchObject({ format: 2, damage: [], torn: { offset: a.length, bytes: b.length - 1 } });
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

/** A new, empty store directory. */
async function emptyStore(): Promise<string> {
  const db = join(tempDir(), 'db');
  await (await Store.open(db)).close();
  return db;
}

async function openNames(db: string, log: Logger = captureLog()): Promise<string[]> {
  const store = await Store.open(db, { sync: false, log });
  try {
    return (await store.loadAll()).map((r) => r.spec.name).sort();
  } finally {
    await store.close();
  }
}

const range = (n: number, name: (i: number) => string): string[] => Array.from({ length: n }, (_, i) => name(i));

describe('a format-2 segment with a corrupt frame in the middle', () => {
  // 50 commits of one task each, as a format-2 hub wrote them; then one bit flips in the 11th.
  const fifty = (): { data: Buffer; offsets: number[] } => {
    const frames = range(50, (i) => `t${String(i).padStart(2, '0')}`).map((n) => encodeFrame([entry(record(n))]));
    const offsets: number[] = [];
    let at = 0;
    for (const f of frames) {
      offsets.push(at);
      at += f.length;
    }
    return { data: Buffer.concat(frames), offsets };
  };

  it('recovers every frame after the corrupt one', async () => {
    const db = await emptyStore();
    const { data, offsets } = fifty();
    const at = (offsets[10] as number) + 20; // inside frame 10's payload
    data[at] = (data[at] as number) ^ 0x04;
    writeFileSync(join(db, 'dagwork-wal-1'), data);
    const recovered = await openNames(db);
    expect(recovered).toEqual(range(50, (i) => `t${String(i).padStart(2, '0')}`).filter((n) => n !== 't10'));
  });

  it('recovers every frame after one whose length field is corrupt', async () => {
    const db = await emptyStore();
    const { data, offsets } = fifty();
    const at = (offsets[10] as number) + 2; // the length's third byte: the frame now claims megabytes
    data[at] = (data[at] as number) ^ 0x10;
    writeFileSync(join(db, 'dagwork-wal-1'), data);
    const recovered = await openNames(db);
    expect(recovered).toEqual(range(50, (i) => `t${String(i).padStart(2, '0')}`).filter((n) => n !== 't10'));
  });

  it('logs the segment, the offset and what was lost, as an error', async () => {
    const db = await emptyStore();
    const { data, offsets } = fifty();
    const at = (offsets[10] as number) + 20;
    data[at] = (data[at] as number) ^ 0x04;
    writeFileSync(join(db, 'dagwork-wal-1'), data);
    const log = captureLog();
    await openNames(db, log);
    const frameBytes = (offsets[11] as number) - (offsets[10] as number);
    expect(log.lines.filter((l) => l.startsWith('error '))).toEqual([
      expect.stringContaining(`${join(db, 'dagwork-wal-1')}: a corrupt frame at byte ${offsets[10]}: 1 frame (${frameBytes} bytes) lost`),
    ]);
  });

  it('keeps a copy of the segment aside', async () => {
    const db = await emptyStore();
    const { data, offsets } = fifty();
    const at = (offsets[10] as number) + 20;
    data[at] = (data[at] as number) ^ 0x04;
    writeFileSync(join(db, 'dagwork-wal-1'), data);
    await openNames(db);
    const kept = readdirSync(db).filter((f) => f.startsWith('corrupt-dagwork-wal-1-'));
    expect(kept).toHaveLength(1);
    expect(readFileSync(join(db, kept[0] as string)).equals(data)).toBe(true);
  });

  it('drops a torn tail without an error', async () => {
    const db = await emptyStore();
    const { data } = fifty();
    const log = captureLog();
    writeFileSync(join(db, 'dagwork-wal-1'), data.subarray(0, data.length - 5));
    expect(await openNames(db, log)).toHaveLength(49);
    expect(log.lines.filter((l) => l.startsWith('error ') || l.startsWith('warn '))).toEqual([]);
  });
});

describe('a format-3 segment with a corrupt frame in the middle', () => {
  const ten = (): Buffer => segment(Array.from({ length: 10 }, (_, i) => [entry(record(`c${i}`))]));

  it('skips a frame whose payload is corrupt by its length, and reads every frame after it', () => {
    const data = ten();
    const third = frameEnds(data)[1] as number;
    data[third + 30] = (data[third + 30] as number) ^ 0x01;
    const { keys, report } = decode(data);
    expect(keys).toEqual(range(10, (i) => `t:c${i}`).filter((k) => k !== 't:c2'));
    expect(report.damage).toEqual([{ offset: third, bytes: (frameEnds(data)[2] as number) - third, frames: 1, entries: 0, what: 'a corrupt frame' }]);
  });

  it('resynchronises after a frame whose header is corrupt, and reads every frame after it', () => {
    const data = ten();
    const third = frameEnds(data)[1] as number;
    data[third + 5] = (data[third + 5] as number) ^ 0x40; // the length: now past the end of the segment
    const { keys, report } = decode(data);
    expect(keys).toEqual(range(10, (i) => `t:c${i}`).filter((k) => k !== 't:c2'));
    expect(report.damage).toMatchObject([{ offset: third, frames: undefined, what: 'a corrupt frame' }]);
  });
});

describe('a store of format 2', () => {
  it('opens with its log replayed, and is marked the current format', async () => {
    const db = join(tempDir(), 'db');
    const level = new Level<string, string>(db);
    await level.put('meta:format', '2');
    await level.close();
    writeFileSync(join(db, 'dagwork-wal-4'), Buffer.concat([encodeFrame([entry(record('a'))]), encodeFrame([entry(record('b'))])]));
    expect(await openNames(db)).toEqual(['a', 'b']);
    const after = new Level<string, string>(db);
    const format = await after.get('meta:format');
    await after.close();
    expect(format).toBe(String(STORE_FORMAT));
  });
});

describe('a large log', () => {
  it('replays 200,000 entries left by a crashed hub', async () => {
    const db = await emptyStore();
    const value = encodeRecord(record('x'));
    const entries = range(200_000, (i) => `t:x${i}`).map((key) => ({ key, value }));
    writeFileSync(join(db, 'dagwork-wal-1'), encodeFrame(entries));
    const store = await Store.open(db);
    try {
      expect((await store.loadAll()).length).toBe(200_000);
    } finally {
      await store.close();
    }
  });
});

describe('a group commit larger than a frame', () => {
  const big = (name: string): WalEntry => entry({ ...record(name), spec: { ...record(name).spec, payload: Buffer.alloc(300_000, 1) } });
  const eight = (): WalEntry[] => range(8, (i) => `big${i}`).map(big);

  it('is written as frames of at most maxFrameBytes', async () => {
    const db = join(tempDir(), 'db');
    const store = await Store.open(db, { sync: false, maxFrameBytes: 1 << 20 });
    await store.write(range(8, (i) => `big${i}`).map((n) => ({ ...record(n), spec: { ...record(n).spec, payload: Buffer.alloc(300_000, 1) } })));
    const data = readFileSync(join(db, 'dagwork-wal-1'));
    await store.close();
    const ends = frameEnds(data);
    const sizes = ends.map((end, i) => end - (i === 0 ? SEGMENT_MAGIC.length : (ends[i - 1] as number)) - 24);
    expect(sizes.length).toBe(3); // 3 + 3 + 2 entries of ~300 kB
    expect(Math.max(...sizes)).toBeLessThanOrEqual(1 << 20);
  });

  it('is replayed whole', () => {
    const { keys, report } = decode(segment([eight(), [entry(record('after'))]], 1 << 20));
    expect(keys).toEqual([...range(8, (i) => `t:big${i}`), 't:after']);
    expect(report).toMatchObject({ commits: 2, damage: [], torn: undefined });
  });

  it('is dropped quietly when its last frames are missing at the tail', () => {
    const whole = segment([[entry(record('before'))], eight()], 1 << 20);
    const ends = frameEnds(whole); // 'before', then the big commit's parts 0, 1, 2
    const { keys, report } = decode(whole.subarray(0, ends[2]));
    expect(keys).toEqual(['t:before']);
    expect(report.damage).toEqual([]);
    expect(report.torn).toEqual({ offset: ends[0], bytes: (ends[2] as number) - (ends[0] as number) });
  });

  it('is dropped whole, and reported, when a frame in its middle is corrupt', () => {
    const data = segment([eight(), [entry(record('after'))]], 1 << 20);
    const secondFrame = frameEnds(data)[0] as number;
    data[secondFrame + 100] = (data[secondFrame + 100] as number) ^ 0x01;
    const { keys, report } = decode(data);
    expect(keys).toEqual(['t:after']);
    expect(report.damage.map((d) => d.what)).toEqual(['a corrupt frame', 'commit 1 lost its part 1; its 3 entries were not applied', 'part 2 of commit 1 has lost the parts before it; its 2 entries were not applied']);
  });
});
