/**
 * FileCache: a directory of files kept by their SHA-256, for the inputs of tasks, so that a file
 * many tasks use (the program they all run) is fetched from the hub once per cache, not once per
 * task. BOINC's sticky, checksum-named executables; Simple Parallel Exec's "fetch the executable
 * unless its checksum is there already".
 *
 * One directory may be shared by every worker of a node, and by the nodes of a cluster over NFS.
 * What it holds (nothing else in it is touched):
 *   <sha256>                   a whole file, its hash checked, read-only (0444)
 *   <sha256>.lock              someone is fetching it: JSON { host, pid, time, token }
 *   .<sha256>.part-...         a download in progress (renamed to <sha256> once its hash is checked)
 *   <sha256>.lock.broken-...   a stale lock being removed
 *
 * Fetching a hash, across processes and nodes: take its lock with O_EXCL (NFSv3 and later honour
 * it); download to a temporary name beside the file; check the SHA-256; rename into place; remove
 * the lock. While the download runs, the lock's mtime is refreshed every `lockRefreshMs`. Others
 * wait for the file to appear, polling every `pollMs`. A lock is stale, and broken, when its holder
 * is a dead process of this host, when its mtime is older than `staleLockMs`, or when it has not
 * changed for `staleLockMs` as seen by the waiter's own clock (which needs no agreement of clocks
 * between nodes). Correctness does not rest on the lock: a file only ever appears under its hash by
 * an atomic rename of checked bytes, so a lock broken wrongly costs a second download, never a
 * wrong file.
 *
 * Within one process, one fetch per hash at a time: callers that ask for a hash being fetched wait
 * for that fetch (and count as hits), so a worker fetches a file once however many tasks use it.
 *
 * Eviction, least recently used: a file's mtime is set each time it is used. After each fetch, when
 * the files in the directory pass `maxBytes`, the oldest ones are removed until they are under it,
 * except those in use by this process's running tasks (acquired and not yet released). A file
 * removed while another node links it into a scratch directory makes that node fetch it again
 * (see fetchInputs); a file already linked or copied into a scratch directory is unaffected.
 */
import { randomBytes } from 'node:crypto';
import { link, mkdir, open, readdir, readFile, rename, rm, stat, utimes } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { DagworkError } from '../../proto/src/errors.js';
import { checkSha256 } from '../../proto/src/spec.js';
import { downloadFile, type FileOps } from './files.js';
import { WorkerFault } from './worker.js';

/** Time, for the cache's waits and its LRU marks: injectable so that tests need not sleep. */
export interface CacheClock {
  now(): number;
  sleep(ms: number): Promise<void>;
}

export const realClock: CacheClock = {
  now: () => Date.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

export interface CacheOptions {
  /** The cache directory (made when missing). Required; dworker: --cache, default defaultCacheDir(). */
  dir: string;
  /** Most bytes of files kept; past it the least recently used go. Default 10 GiB (DEFAULT_CACHE_MAX_BYTES). */
  maxBytes: number;
  /** A lock not refreshed for this long (ms) is stale and broken. Default 60,000. */
  staleLockMs: number;
  /** How often the holder of a lock refreshes it while it downloads (ms). Default 10,000. */
  lockRefreshMs: number;
  /** How often a process waiting for another's download looks again (ms). Default 250. */
  pollMs: number;
  clock: CacheClock;
}

export const DEFAULT_CACHE_MAX_BYTES = 10 * 2 ** 30;

export function defaultCacheOptions(dir: string): CacheOptions {
  return { dir, maxBytes: DEFAULT_CACHE_MAX_BYTES, staleLockMs: 60_000, lockRefreshMs: 10_000, pollMs: 250, clock: realClock };
}

/** $XDG_CACHE_HOME/dagwork, else ~/.cache/dagwork. */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.XDG_CACHE_HOME || join(env.HOME || '/tmp', '.cache'), 'dagwork');
}

export interface CacheStats {
  /** Files this process downloaded into the cache, and their bytes. */
  fetched: number;
  fetchedBytes: number;
  /** Uses served without a download by this process: the file was there, another process (or task) fetched it. */
  hits: number;
  /** Files removed to stay under maxBytes, and their bytes. */
  evicted: number;
  evictedBytes: number;
  /** Stale locks this process broke. */
  brokenLocks: number;
}

/** A file of the cache, in use until released (eviction by this process leaves it alone). */
export interface CachedFile {
  path: string;
  /** Downloaded now by this process (false: it was in the cache). */
  fetched: boolean;
  release(): void;
}

const HASH = /^[0-9a-f]{64}$/;
const LEFTOVER = /^(\.[0-9a-f]{64}\.part-|[0-9a-f]{64}\.lock\.broken-)/;

interface LockSeen {
  /** Changes whenever the lock is refreshed or replaced. */
  key: string;
  mtimeMs: number;
  owner: { host?: unknown; pid?: unknown; token?: unknown } | undefined;
}

const errno = (err: unknown): string | undefined => (err as { code?: unknown }).code as string | undefined;

export class FileCache {
  readonly options: CacheOptions;
  readonly stats: CacheStats = { fetched: 0, fetchedBytes: 0, hits: 0, evicted: 0, evictedBytes: 0, brokenLocks: 0 };
  /** Fetches in progress in this process, by hash: resolves true when this process downloaded it. */
  private readonly inflight = new Map<string, Promise<boolean>>();
  /** Hashes in use by running tasks, and by how many. */
  private readonly pins = new Map<string, number>();
  private made = false;
  private evicting: Promise<void> | undefined;
  private evictAgain = false;

  constructor(
    private readonly files: FileOps,
    options: Partial<CacheOptions> & { dir: string },
  ) {
    const merged = { ...defaultCacheOptions(options.dir), ...options };
    for (const key of ['maxBytes', 'staleLockMs', 'lockRefreshMs', 'pollMs'] as const) {
      if (!Number.isSafeInteger(merged[key]) || merged[key] <= 0) throw new TypeError(`${key} must be a positive integer, not ${merged[key]}`);
    }
    this.options = merged;
  }

  /** Where the file `sha256` lies in the cache (whether or not it is there). */
  pathOf(sha256: string): string {
    return join(this.options.dir, sha256);
  }

  /**
   * The file `sha256` in the cache, fetched from the hub first when it is not there, in use until
   * `release()`. Throws the hub's DagworkError (UNKNOWN_FILE, HASH_MISMATCH...), a
   * HubUnreachableError, or a WorkerFault when the cache directory itself fails (no space, no
   * permission).
   */
  async acquire(sha256: string): Promise<CachedFile> {
    checkSha256(sha256);
    this.pins.set(sha256, (this.pins.get(sha256) ?? 0) + 1);
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      const n = (this.pins.get(sha256) ?? 1) - 1;
      if (n <= 0) this.pins.delete(sha256);
      else this.pins.set(sha256, n);
    };
    try {
      const fetched = await this.ensure(sha256);
      return { path: this.pathOf(sha256), fetched, release };
    } catch (err) {
      release();
      throw err;
    }
  }

  /** Fetches `sha256` unless it is there or being fetched by this process; true when this call downloaded it. */
  private async ensure(sha256: string): Promise<boolean> {
    const pending = this.inflight.get(sha256);
    if (pending !== undefined) {
      await pending;
      this.stats.hits++;
      return false;
    }
    const fetch = this.obtain(sha256).finally(() => this.inflight.delete(sha256));
    this.inflight.set(sha256, fetch);
    const fetched = await fetch;
    if (!fetched) this.stats.hits++;
    else {
      this.stats.fetched++;
      this.stats.fetchedBytes += (await stat(this.pathOf(sha256)).catch(() => ({ size: 0 }))).size;
      await this.evict();
    }
    return fetched;
  }

  /** The lock protocol (see the module's comment). True when this process downloaded the file. */
  private async obtain(sha256: string): Promise<boolean> {
    const file = this.pathOf(sha256);
    const lock = `${file}.lock`;
    let watched: { key: string; since: number } | undefined;
    try {
      if (!this.made) {
        await mkdir(this.options.dir, { recursive: true });
        this.made = true;
      }
      for (;;) {
        if (await this.use(file)) return false;
        const token = await this.tryLock(lock);
        if (token !== undefined) {
          try {
            // Another may have finished between our look and our lock.
            if (await this.use(file)) return false;
            await this.download(sha256, file, lock);
            return true;
          } finally {
            await this.unlock(lock, token);
          }
        }
        // Someone else fetches it: wait for the file, or for their lock to go stale.
        const seen = await this.lockState(lock);
        if (seen !== undefined) {
          const now = this.options.clock.now();
          if (watched?.key !== seen.key) watched = { key: seen.key, since: now };
          if (this.isStale(seen, now - watched.since)) {
            await this.breakLock(lock, seen);
            watched = undefined;
            continue;
          }
        }
        await this.options.clock.sleep(this.options.pollMs);
      }
    } catch (err) {
      if (err instanceof DagworkError || errno(err) === 'UNREACHABLE' || err instanceof WorkerFault) throw err;
      // The hub is not at fault, nor the task: this worker's cache directory is (full, not writable...).
      throw new WorkerFault(`file cache ${this.options.dir}: ${(err as Error).message}`, { cause: err });
    }
  }

  /** True when `file` is in the cache; marks it used now (its LRU mark). */
  private async use(file: string): Promise<boolean> {
    try {
      if (!(await stat(file)).isFile()) return false;
    } catch (err) {
      if (errno(err) === 'ENOENT') return false;
      throw err;
    }
    await this.touch(file);
    return true;
  }

  private async touch(file: string): Promise<void> {
    const now = new Date(this.options.clock.now());
    // Another user's file on a shared cache may refuse a new mtime: its LRU mark stays older.
    await utimes(file, now, now).catch(() => undefined);
  }

  /** Creates the lock with O_EXCL; its token, or undefined when another holds it. */
  private async tryLock(lock: string): Promise<string | undefined> {
    const token = randomBytes(8).toString('hex');
    let handle;
    try {
      handle = await open(lock, 'wx', 0o644);
    } catch (err) {
      if (errno(err) === 'EEXIST') return undefined;
      throw err;
    }
    try {
      await handle.writeFile(JSON.stringify({ host: hostname(), pid: process.pid, time: this.options.clock.now(), token }));
    } finally {
      await handle.close();
    }
    return token;
  }

  /** Removes the lock if it is still ours (a waiter may have broken it and another taken it since). */
  private async unlock(lock: string, token: string): Promise<void> {
    const seen = await this.lockState(lock).catch(() => undefined);
    if (seen?.owner?.token === token) await rm(lock, { force: true }).catch(() => undefined);
  }

  private async lockState(lock: string): Promise<LockSeen | undefined> {
    try {
      const [info, text] = await Promise.all([stat(lock), readFile(lock, 'utf8')]);
      let owner: LockSeen['owner'];
      try {
        owner = JSON.parse(text) as LockSeen['owner'];
      } catch {
        owner = undefined; // being written, or not ours: judged by its times alone
      }
      return { key: `${info.mtimeMs}:${info.size}:${text}`, mtimeMs: info.mtimeMs, owner };
    } catch (err) {
      if (errno(err) === 'ENOENT') return undefined;
      throw err;
    }
  }

  /** Stale: its holder is a dead process of this host, or it was not refreshed for staleLockMs. */
  private isStale(seen: LockSeen, unchangedMs: number): boolean {
    const { host, pid } = seen.owner ?? {};
    if (host === hostname() && typeof pid === 'number' && !alive(pid)) return true;
    const stale = this.options.staleLockMs;
    return this.options.clock.now() - seen.mtimeMs > stale || unchangedMs > stale;
  }

  /**
   * Moves the stale lock aside (atomic: of several breakers, one wins), and puts it back if what
   * was moved is not what was judged stale (refreshed or re-taken in the meantime).
   */
  private async breakLock(lock: string, seen: LockSeen): Promise<void> {
    const aside = `${lock}.broken-${hostname()}-${process.pid}-${randomBytes(4).toString('hex')}`;
    try {
      await rename(lock, aside);
    } catch (err) {
      if (errno(err) === 'ENOENT') return;
      throw err;
    }
    const moved = await this.lockState(aside);
    if (moved !== undefined && moved.key !== seen.key) await link(aside, lock).catch(() => undefined);
    else this.stats.brokenLocks++;
    await rm(aside, { force: true });
  }

  /** Downloads into place (checked, then renamed), refreshing the lock meanwhile. */
  private async download(sha256: string, file: string, lock: string): Promise<void> {
    const refresh = setInterval(() => {
      const now = new Date();
      void utimes(lock, now, now).catch(() => undefined);
    }, this.options.lockRefreshMs);
    refresh.unref();
    try {
      await downloadFile(this.files, sha256, file, { mode: 0o444 });
    } finally {
      clearInterval(refresh);
    }
    await this.touch(file);
  }

  /**
   * Removes the least recently used files not in use here until the cache is under maxBytes, and
   * leftovers of dead downloads. One pass at a time; a pass asked for meanwhile runs after it.
   */
  async evict(): Promise<void> {
    if (this.evicting !== undefined) {
      this.evictAgain = true;
      return this.evicting;
    }
    this.evicting = (async () => {
      do {
        this.evictAgain = false;
        await this.evictOnce();
      } while (this.evictAgain);
    })().finally(() => (this.evicting = undefined));
    return this.evicting;
  }

  private async evictOnce(): Promise<void> {
    const dir = this.options.dir;
    const now = this.options.clock.now();
    const held: { name: string; size: number; mtimeMs: number }[] = [];
    let total = 0;
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      const info = await stat(join(dir, name)).catch(() => undefined);
      if (info === undefined || !info.isFile()) continue;
      if (HASH.test(name)) {
        held.push({ name, size: info.size, mtimeMs: info.mtimeMs });
        total += info.size;
      } else if (LEFTOVER.test(name) && now - info.mtimeMs > this.options.staleLockMs) {
        // A download whose writer died (its temporary is written to all along), or a broken lock left over.
        await rm(join(dir, name), { force: true }).catch(() => undefined);
      }
    }
    if (total <= this.options.maxBytes) return;
    held.sort((a, b) => a.mtimeMs - b.mtimeMs);
    for (const f of held) {
      if (total <= this.options.maxBytes) break;
      if (this.pins.has(f.name) || this.inflight.has(f.name)) continue;
      await rm(join(dir, f.name), { force: true });
      total -= f.size;
      this.stats.evicted++;
      this.stats.evictedBytes += f.size;
    }
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return errno(err) === 'EPERM'; // it exists, another user's
  }
}
