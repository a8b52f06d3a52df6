/**
 * The file cache and a task's files in its scratch directory, against a fake hub (FileOps): no
 * hub needed. Several caches on one directory stand for several dworkers sharing it over NFS.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, utimesSync, writeFileSync, chmodSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { defaultLimits } from '../proto/src/spec.js';
import { FileCache, fetchInputs, uploadOutputs, whileHubAway, type CacheClock, type FileOps, type FileRef, type LeasedTask } from '../worker-kit/src/index.js';
import { DagworkError } from '../proto/src/errors.js';
import { completionItems, nextBatchSize } from '../worker-kit/src/limits.js';
import { cleanTempDirs, tempDir } from './helpers.js';
import { leasedTask } from './support/records.js';

afterAll(() => cleanTempDirs());

const sha = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

/** A hub's file store in memory, answering in small chunks, each after a turn of the event loop (so that callers interleave). */
class FakeHub implements FileOps {
  readonly held = new Map<string, Buffer>();
  readonly partial = new Map<string, Buffer>();
  /** Downloads begun (file_get at offset 0), by hash. */
  readonly downloads = new Map<string, number>();
  constructor(private readonly chunk = 5) {}

  add(content: string | Buffer, as?: string): string {
    const bytes = Buffer.from(content);
    const key = as ?? sha(bytes);
    this.held.set(key, bytes);
    return key;
  }

  async fileStat(hashes: string[]) {
    await new Promise((resolve) => setImmediate(resolve));
    return hashes.map((h) => ({ sha256: h, held: this.held.has(h), size: this.held.get(h)?.length ?? 0, received: this.partial.get(h)?.length ?? 0 }));
  }

  async filePut(hash: string, size: number, offset: number, data: Uint8Array) {
    await new Promise((resolve) => setImmediate(resolve));
    const have = this.partial.get(hash) ?? Buffer.alloc(0);
    if (offset !== have.length) return { received: have.length, held: false };
    const now = Buffer.concat([have, data]);
    if (now.length < size) {
      this.partial.set(hash, now);
      return { received: now.length, held: false };
    }
    this.partial.delete(hash);
    if (sha(now) !== hash) throw new DagworkError('HASH_MISMATCH', 'upload does not match its hash');
    this.held.set(hash, now);
    return { received: now.length, held: true };
  }

  async fileGet(hash: string, offset: number, length: number) {
    await new Promise((resolve) => setTimeout(resolve, 1));
    const bytes = this.held.get(hash);
    if (bytes === undefined) throw new DagworkError('UNKNOWN_FILE', `file ${hash} is not held`);
    if (offset === 0) this.downloads.set(hash, (this.downloads.get(hash) ?? 0) + 1);
    return { data: bytes.subarray(offset, offset + Math.min(length, this.chunk)), size: bytes.length };
  }

  async hubLimits() {
    return { ...defaultLimits(), maxChunkBytes: this.chunk };
  }
}

/** A clock that moves only when told, or when the cache sleeps. */
function fakeClock(start = Date.now()): CacheClock & { t: number } {
  const clock = {
    t: start,
    now: () => clock.t,
    sleep: async (ms: number) => {
      clock.t += ms;
      await new Promise((resolve) => setImmediate(resolve));
    },
  };
  return clock;
}

const task = (over: Partial<LeasedTask>): LeasedTask => leasedTask('t', over);

describe('FileCache shared by several processes', () => {
  it('downloads a file once when two caches on one directory are asked for it by several callers at once, and every caller gets its bytes', async () => {
    const dir = tempDir();
    const hub = new FakeHub(3);
    const content = 'the program all tasks run\n'.repeat(20);
    const h = hub.add(content);
    const a = new FileCache(hub, { dir, pollMs: 5 });
    const b = new FileCache(hub, { dir, pollMs: 5 });
    const got = await Promise.all([a, b, a, b, a, b, a, b].map((c) => c.acquire(h)));
    expect(hub.downloads.get(h)).toBe(1);
    for (const f of got) expect(readFileSync(f.path, 'utf8')).toBe(content);
    expect(a.stats.fetched + b.stats.fetched).toBe(1);
    expect(a.stats.hits + b.stats.hits).toBe(7);
    expect(readdirSync(dir)).toEqual([h]); // no lock, no temporary left
    expect(statSync(join(dir, h)).mode & 0o777).toBe(0o444);
  });

  it('waits for a download another process has under way, and does not fetch the file itself', async () => {
    const dir = tempDir();
    const hub = new FakeHub();
    const h = hub.add('shared input');
    writeFileSync(join(dir, `${h}.lock`), JSON.stringify({ host: 'node7', pid: 4242, time: Date.now(), token: 'x' }));
    const clock = fakeClock();
    const cache = new FileCache(hub, { dir, pollMs: 100, clock });
    const waiting = cache.acquire(h);
    // The other process finishes: its file appears, its lock goes.
    await clock.sleep(0);
    writeFileSync(join(dir, h), 'shared input');
    await import('node:fs/promises').then((fs) => fs.rm(join(dir, `${h}.lock`)));
    const file = await waiting;
    expect(file.fetched).toBe(false);
    expect(hub.downloads.get(h)).toBeUndefined();
    expect(cache.stats).toMatchObject({ fetched: 0, hits: 1, brokenLocks: 0 });
  });

  it('breaks a lock not refreshed for staleLockMs and fetches the file itself', async () => {
    const dir = tempDir();
    const hub = new FakeHub();
    const h = hub.add('input of a dead node');
    const lock = join(dir, `${h}.lock`);
    writeFileSync(lock, JSON.stringify({ host: 'node-that-died', pid: 4242, time: Date.now(), token: 'x' }));
    const clock = fakeClock();
    const cache = new FileCache(hub, { dir, pollMs: 1_000, staleLockMs: 60_000, clock });
    const file = await cache.acquire(h);
    expect(readFileSync(file.path, 'utf8')).toBe('input of a dead node');
    expect(cache.stats).toMatchObject({ fetched: 1, brokenLocks: 1 });
    expect(clock.t - Date.now()).toBeGreaterThanOrEqual(59_000); // it waited out the stale time first
    expect(existsSync(lock)).toBe(false);
  });

  it('breaks at once a lock whose holder is a dead process of this host', async () => {
    const dir = tempDir();
    const hub = new FakeHub();
    const h = hub.add('input');
    const dead = spawnSync('true').pid;
    writeFileSync(join(dir, `${h}.lock`), JSON.stringify({ host: hostname(), pid: dead, time: Date.now(), token: 'x' }));
    const clock = fakeClock();
    const start = clock.t;
    const cache = new FileCache(hub, { dir, clock });
    expect((await cache.acquire(h)).fetched).toBe(true);
    expect(cache.stats.brokenLocks).toBe(1);
    expect(clock.t - start).toBeLessThan(1_000);
  });

  it('breaks a lock whose mtime is older than staleLockMs without waiting that long', async () => {
    const dir = tempDir();
    const hub = new FakeHub();
    const h = hub.add('input');
    const lock = join(dir, `${h}.lock`);
    writeFileSync(lock, 'not even JSON');
    const old = new Date(Date.now() - 120_000);
    utimesSync(lock, old, old);
    const clock = fakeClock();
    const start = clock.t;
    const cache = new FileCache(hub, { dir, clock });
    expect((await cache.acquire(h)).fetched).toBe(true);
    expect(clock.t - start).toBeLessThan(1_000);
  });
});

describe('FileCache downloads that fail', () => {
  it('leaves nothing under the hash (nor a lock or a temporary) when the bytes do not have the hash', async () => {
    const dir = tempDir();
    const hub = new FakeHub();
    const claimed = sha('what was promised');
    hub.add('what came instead', claimed);
    const cache = new FileCache(hub, { dir });
    const err = await cache.acquire(claimed).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DagworkError);
    expect((err as DagworkError).code).toBe('HASH_MISMATCH');
    expect(readdirSync(dir)).toEqual([]);
    expect(cache.stats.fetched).toBe(0);
  });

  it('fails every caller waiting on the same fetch with UNKNOWN_FILE when the hub does not hold the file', async () => {
    const dir = tempDir();
    const cache = new FileCache(new FakeHub(), { dir });
    const missing = sha('never uploaded');
    const results = await Promise.allSettled([cache.acquire(missing), cache.acquire(missing)]);
    for (const r of results) expect(r).toMatchObject({ status: 'rejected', reason: { code: 'UNKNOWN_FILE' } });
    expect(readdirSync(dir)).toEqual([]);
  });
});

describe('FileCache eviction', () => {
  /** Four files of 100 bytes in a cache of 250: at most two stay. */
  function setUp(): { cache: FileCache; clock: ReturnType<typeof fakeClock>; hashes: Record<'a' | 'b' | 'c', string>; dir: string } {
    const dir = tempDir();
    const hub = new FakeHub(1000);
    const hashes = { a: hub.add('a'.repeat(100)), b: hub.add('b'.repeat(100)), c: hub.add('c'.repeat(100)) };
    const clock = fakeClock(1_700_000_000_000);
    return { cache: new FileCache(hub, { dir, maxBytes: 250, clock }), clock, hashes, dir };
  }

  it('removes the least recently used files until the cache is under its cap', async () => {
    const { cache, clock, hashes, dir } = setUp();
    (await cache.acquire(hashes.a)).release();
    clock.t += 1_000;
    (await cache.acquire(hashes.b)).release();
    clock.t += 1_000;
    (await cache.acquire(hashes.a)).release(); // used again: b is now the oldest
    clock.t += 1_000;
    (await cache.acquire(hashes.c)).release();
    expect(readdirSync(dir).sort()).toEqual([hashes.a, hashes.c].sort());
    expect(cache.stats).toMatchObject({ fetched: 3, hits: 1, evicted: 1, evictedBytes: 100 });
  });

  it('keeps a file a running task uses though it is the oldest', async () => {
    const { cache, clock, hashes, dir } = setUp();
    const inUse = await cache.acquire(hashes.a);
    clock.t += 1_000;
    (await cache.acquire(hashes.b)).release();
    clock.t += 1_000;
    (await cache.acquire(hashes.c)).release();
    expect(readdirSync(dir).sort()).toEqual([hashes.a, hashes.c].sort());
    inUse.release();
  });
});

describe("a task's files in its scratch directory", () => {
  it('links plain inputs from the cache, copies executables with mode 0755, makes subdirectories and writes param files', async () => {
    const hub = new FakeHub(1000);
    const cache = new FileCache(hub, { dir: tempDir() });
    const prog = hub.add('#!/bin/sh\necho hi\n');
    const data = hub.add('1 2 3\n');
    const scratch = tempDir();
    const t = task({
      params: [{ name: 'config', value: 'temperature = 300\n' }],
      inputs: [
        { name: 'bin/sim', sha256: prog, size: 18, executable: true },
        { name: 'data/in.txt', sha256: data, size: 6, executable: false },
      ],
      paramFiles: [{ name: 'conf/run.cfg', param: 'config' }],
    });
    const prepared = await fetchInputs(hub, t, scratch, { cache, link: true });
    expect(statSync(join(scratch, 'bin/sim')).mode & 0o777).toBe(0o755);
    expect(statSync(join(scratch, 'bin/sim')).ino).not.toBe(statSync(cache.pathOf(prog)).ino);
    expect(statSync(join(scratch, 'data/in.txt')).ino).toBe(statSync(cache.pathOf(data)).ino);
    expect(readFileSync(join(scratch, 'conf/run.cfg'), 'utf8')).toBe('temperature = 300\n');
    expect(prepared.inputs.map((i) => [i.name, i.fetched])).toEqual([['bin/sim', true], ['data/in.txt', true]]);
    prepared.release();
  });

  it('copies inputs by default: a command that makes its input writable and changes it leaves the cache alone', async () => {
    const hub = new FakeHub(1000);
    const cache = new FileCache(hub, { dir: tempDir() });
    const data = hub.add('GENUINE DATA\n');
    const t = task({ inputs: [{ name: 'in.dat', sha256: data, size: 13, executable: false }] });
    const first = tempDir();
    (await fetchInputs(hub, t, first, { cache })).release();
    expect(statSync(join(first, 'in.dat')).ino).not.toBe(statSync(cache.pathOf(data)).ino);
    chmodSync(join(first, 'in.dat'), 0o644);
    writeFileSync(join(first, 'in.dat'), 'tool rewrote its input in place\n');
    const second = tempDir();
    (await fetchInputs(hub, t, second, { cache })).release();
    expect(readFileSync(join(second, 'in.dat'), 'utf8')).toBe('GENUINE DATA\n');
    expect(hub.downloads.get(data)).toBe(1);
  });

  it("fetches again a cached file whose size is not its hash's (changed through a link, or by hand)", async () => {
    const hub = new FakeHub(1000);
    const cache = new FileCache(hub, { dir: tempDir() });
    const data = hub.add('GENUINE DATA\n');
    const t = task({ inputs: [{ name: 'in.dat', sha256: data, size: 13, executable: false }] });
    (await fetchInputs(hub, t, tempDir(), { cache, link: true })).release();
    chmodSync(cache.pathOf(data), 0o644);
    writeFileSync(cache.pathOf(data), 'poisoned\n');
    const next = tempDir();
    (await fetchInputs(hub, t, next, { cache })).release();
    expect(readFileSync(join(next, 'in.dat'), 'utf8')).toBe('GENUINE DATA\n');
    expect(hub.downloads.get(data)).toBe(2);
  });

  it('fetches an input once however many tasks use it', async () => {
    const hub = new FakeHub(1000);
    const cache = new FileCache(hub, { dir: tempDir() });
    const prog = hub.add('program');
    const t = task({ inputs: [{ name: 'prog', sha256: prog, size: 7, executable: true }] });
    const runs = await Promise.all([1, 2, 3].map(() => fetchInputs(hub, t, tempDir(), { cache })));
    expect(hub.downloads.get(prog)).toBe(1);
    expect(runs.flatMap((r) => r.inputs.map((i) => i.fetched)).sort()).toEqual([false, false, true]);
  });

  it('names the input in the error when the hub does not hold it', async () => {
    const missing = sha('gone');
    const t = task({ inputs: [{ name: 'prog', sha256: missing, size: 4, executable: true }] });
    await expect(fetchInputs(new FakeHub(), t, tempDir(), { cache: new FileCache(new FakeHub(), { dir: tempDir() }) })).rejects.toThrow(`input "prog" (${missing}): file ${missing} is not held`);
  });

  it('refuses an input name that leads out of the scratch directory', async () => {
    const hub = new FakeHub();
    const h = hub.add('x');
    await expect(fetchInputs(hub, task({ inputs: [{ name: '../escape', sha256: h, size: 1, executable: false }] }), tempDir())).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('uploads declared outputs under their declared names, with their run bit', async () => {
    const hub = new FakeHub(4);
    const scratch = tempDir();
    mkdirSync(join(scratch, 'out'));
    writeFileSync(join(scratch, 'out/result.dat'), 'forty-two');
    writeFileSync(join(scratch, 'tool'), '#!/bin/sh\n');
    chmodSync(join(scratch, 'tool'), 0o755);
    const refs: FileRef[] = await uploadOutputs(hub, scratch, ['out/result.dat', 'tool']);
    expect(refs.map(({ name, sha256, size, executable }) => ({ name, sha256, size, executable }))).toEqual([
      { name: 'out/result.dat', sha256: sha('forty-two'), size: 9, executable: false },
      { name: 'tool', sha256: sha('#!/bin/sh\n'), size: 10, executable: true },
    ]);
    expect(hub.held.get(sha('forty-two'))?.toString()).toBe('forty-two');
  });

  it('fails with `declared output "NAME" was not written` when an output is missing, uploading nothing', async () => {
    const hub = new FakeHub();
    const scratch = tempDir();
    writeFileSync(join(scratch, 'a'), 'a');
    await expect(uploadOutputs(hub, scratch, ['a', 'sub/b'])).rejects.toThrow('declared output "sub/b" was not written');
    expect(hub.held.size).toBe(0);
  });

  it('refuses an output that is a symbolic link, or lies behind one, outside the scratch directory', async () => {
    const hub = new FakeHub();
    const scratch = tempDir();
    const outside = tempDir();
    writeFileSync(join(outside, 'secret'), 'secret');
    symlinkSync(join(outside, 'secret'), join(scratch, 'link'));
    symlinkSync(outside, join(scratch, 'dir'));
    await expect(uploadOutputs(hub, scratch, ['link'])).rejects.toThrow('declared output "link" is not a regular file (a symbolic link)');
    await expect(uploadOutputs(hub, scratch, ['dir/secret'])).rejects.toThrow('declared output "dir/secret" lies outside the scratch directory');
    expect(hub.held.size).toBe(0);
  });
});

describe('completion batches with output files', () => {
  it("count each output against the hub's max_batch", () => {
    const out = (n: number): FileRef[] => Array.from({ length: n }, (_, i) => ({ name: `o${i}`, sha256: '0'.repeat(64), size: 1, executable: false }));
    const queue = [{ name: 'a', outputs: out(3) }, { name: 'b', outputs: out(3) }, { name: 'c' }];
    expect(completionItems(queue[0]!)).toBe(4);
    const limits = { maxMessageBytes: 64 << 20, maxBatch: 8, maxSteal: 10, maxResultBytes: 1 << 20 };
    expect(nextBatchSize(queue, limits)).toBe(2);
    expect(nextBatchSize(queue, { ...limits, maxBatch: 3 })).toBe(1); // a lone completion over it goes alone
  });
});

describe('transfers while the hub is away', () => {
  it('are tried again, 1 s later doubling, until the hub answers', async () => {
    vi.useFakeTimers();
    try {
      let calls = 0;
      const transfer = async (): Promise<string> => {
        if (++calls <= 2) throw Object.assign(new Error('connection refused at tcp://hub:6125'), { code: 'UNREACHABLE' });
        return 'done';
      };
      const waits: number[] = [];
      const result = whileHubAway(transfer, { onRetry: (_err, ms) => waits.push(ms) });
      await vi.advanceTimersByTimeAsync(3_000);
      expect(await result).toBe('done');
      expect(waits).toEqual([1_000, 2_000]);
    } finally {
      vi.useRealTimers();
    }
  });

  it('are not tried again for an error of their own (UNKNOWN_FILE), nor once the task is aborted', async () => {
    await expect(whileHubAway(() => Promise.reject(new DagworkError('UNKNOWN_FILE', 'not held')))).rejects.toMatchObject({ code: 'UNKNOWN_FILE' });
    const aborted = AbortSignal.abort();
    let calls = 0;
    const away = (): Promise<never> => {
      calls++;
      return Promise.reject(Object.assign(new Error('no reply'), { code: 'UNREACHABLE' }));
    };
    await expect(whileHubAway(away, { signal: aborted })).rejects.toThrow('no reply');
    expect(calls).toBe(1);
  });
});
