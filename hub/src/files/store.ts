/**
 * The hub's files, kept by content (SHA-256) for tasks' inputs and outputs.
 *
 * Layout of the directory (dhub --files, default <db>/files):
 *   ab/<sha256>              a held file: whole, its hash checked (ab: the hash's first two digits)
 *   partial/<sha256>.<size>  an upload in progress: the bytes received so far, never under the
 *                            name a held file has
 * An upload becomes a held file in one rename, after its bytes were checked against the hash and
 * fsynced; the directory is fsynced after the rename. So a crash leaves either the partial upload
 * (resumed from its size) or the whole file, never a file under a hash it does not have.
 *
 * In memory: the held files (hash -> size, when last touched) and the uploads in progress (size,
 * bytes received, the SHA-256 of those bytes so far), loaded from the directory at open. The
 * running hash of an upload found at open is rebuilt by reading its partial file back, at its next
 * chunk. Answering "is this file held" (the graph's question) is a lookup in memory.
 *
 * Operations on one hash are serialized (two clients uploading the same file at once take turns,
 * each chunk going where the other left off, or being told where to go on). All I/O is async, and
 * every failure becomes a DagworkError for the request that met it: nothing is thrown elsewhere.
 */
import { createHash, type Hash } from 'node:crypto';
import { mkdir, open, readdir, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { DagworkError } from '../../../proto/src/errors.js';
import { checkSha256, defaultLimits } from '../../../proto/src/spec.js';
import type { FileStat, GcResult } from '../../../proto/src/types.js';
import { silentLogger, type Logger } from '../log.js';
import { KeyedLock } from './lock.js';

export interface FileStoreOptions {
  /** The directory (created if missing). */
  dir: string;
  /** Largest file, in bytes; a bigger upload is TOO_LARGE at its first chunk. Default 16 GiB. */
  maxFileBytes: number;
  /**
   * Most bytes of files held and of uploads in progress (the bytes they received) together; past
   * it an upload is NO_SPACE (a new one that would not fit now, a chunk that does not fit). 0: as
   * much as the disk holds. Default 0.
   */
  maxFilesBytes: number;
  /** Most bytes of one file_put's data or one file_get's reply. Default 4 MiB. */
  maxChunkBytes: number;
  /**
   * Most uploads in progress at once. Past it, the upload idle longest gives its place to a new one
   * if it had no progress for IDLE_UPLOAD_MS; otherwise the new one is NO_SPACE. Default 1,000.
   */
  maxUploads: number;
  /** ms since the epoch. Default Date.now. */
  clock: () => number;
  log: Logger;
}

export function defaultFileStoreOptions(dir: string): FileStoreOptions {
  const limits = defaultLimits();
  return {
    dir,
    maxFileBytes: limits.maxFileBytes,
    maxFilesBytes: limits.maxFilesBytes,
    maxChunkBytes: limits.maxChunkBytes,
    maxUploads: MAX_UPLOADS,
    clock: Date.now,
    log: silentLogger,
  };
}

/** Uploads in progress at once, by default: each holds a running hash in memory and a partial file. */
export const MAX_UPLOADS = 1_000;
/** gc keeps files held or touched (stat, put, get) this recently, whether tasks name them or not (ms). */
export const RECENT_MS = 3600_000;
/** gc removes uploads without progress for this long (ms). */
export const STALE_UPLOAD_MS = 24 * 3600_000;
/**
 * An upload without progress for this long (ms) gives way: its place to a new upload when all
 * places are taken, its hash to a put that says another size. So peers that start uploads and
 * leave them cannot keep others out for long; a live upload sends a chunk far more often.
 */
export const IDLE_UPLOAD_MS = 60_000;
/** Bytes read at a time when an upload's hash is rebuilt from its partial file. */
const READ_BACK_BYTES = 1 << 20;
const PARTIAL = 'partial';
const SHA256 = /^[0-9a-f]{64}$/;
const SHARD = /^[0-9a-f]{2}$/;
const PARTIAL_NAME = /^([0-9a-f]{64})\.(\d+)$/;
const EMPTY = new Uint8Array(0);

interface Held {
  size: number;
  /** When it became held or was last asked for (ms). */
  touched: number;
}

interface Upload {
  size: number;
  received: number;
  /** SHA-256 of the bytes received; undefined until rebuilt from the partial file (after a restart). */
  hash: Hash | undefined;
  /** When the last bytes arrived (ms). */
  progressAt: number;
}

export interface PutResult {
  received: number;
  held: boolean;
}

export class FileStore {
  private readonly held = new Map<string, Held>();
  private readonly uploads = new Map<string, Upload>();
  private heldBytes = 0;
  /** The bytes the uploads in progress received (what their partial files hold). */
  private partialBytes = 0;
  private readonly lock = new KeyedLock();

  private constructor(readonly options: FileStoreOptions) {}

  /** Opens (creating) the directory and loads what it holds: held files and partial uploads. */
  static async open(overrides: Partial<FileStoreOptions> & { dir: string }): Promise<FileStore> {
    const options = { ...defaultFileStoreOptions(overrides.dir), ...overrides };
    for (const key of ['maxFileBytes', 'maxFilesBytes', 'maxChunkBytes', 'maxUploads'] as const) {
      if (!Number.isSafeInteger(options[key]) || options[key] < 0) throw new TypeError(`file store option ${key} must be a non-negative integer, got ${options[key]}`);
    }
    const files = new FileStore(options);
    try {
      await mkdir(join(options.dir, PARTIAL), { recursive: true });
      await files.load();
    } catch (err) {
      throw new DagworkError('STORE_FAILED', `cannot open the file store ${options.dir}: ${(err as Error).message}`, { cause: err });
    }
    return files;
  }

  private async load(): Promise<void> {
    const dir = this.options.dir;
    for (const shard of await readdir(dir)) {
      if (!SHARD.test(shard)) continue;
      for (const name of await readdir(join(dir, shard))) {
        if (!SHA256.test(name) || !name.startsWith(shard)) continue;
        const s = await stat(join(dir, shard, name));
        if (!s.isFile()) continue;
        this.held.set(name, { size: s.size, touched: s.mtimeMs });
        this.heldBytes += s.size;
      }
    }
    for (const name of await readdir(join(dir, PARTIAL))) {
      const match = PARTIAL_NAME.exec(name);
      if (match === null) continue;
      const sha = match[1] as string;
      const size = Number(match[2]);
      const path = join(dir, PARTIAL, name);
      if (this.held.has(sha) || this.uploads.has(sha) || !Number.isSafeInteger(size)) {
        await unlink(path).catch(() => undefined); // left over: the file is held, or a second upload of it
        continue;
      }
      const s = await stat(path);
      // A partial that is not a regular file (a device, say) has received nothing.
      const received = s.isFile() ? Math.min(s.size, size) : 0;
      this.uploads.set(sha, { size, received, hash: undefined, progressAt: s.mtimeMs });
      this.partialBytes += received;
    }
  }

  /** True when the whole file of this hash and size is held (the graph's FileHeld). */
  holds(sha256: string, size: number): boolean {
    return this.held.get(sha256)?.size === size;
  }

  /** Where the held file of this hash is (a result verifier reads outputs there). */
  pathOf(sha256: string): string {
    return join(this.options.dir, sha256.slice(0, 2), sha256);
  }

  /** Files held, and their bytes (for status). */
  get count(): number {
    return this.held.size;
  }
  get bytes(): number {
    return this.heldBytes;
  }

  /** What is held of each file; a held file counts as touched (gc keeps it an hour more). */
  stat(hashes: readonly string[]): FileStat[] {
    for (const sha of hashes) checkSha256(sha);
    const now = this.options.clock();
    return hashes.map((sha256) => {
      const held = this.held.get(sha256);
      if (held !== undefined) {
        held.touched = Math.max(held.touched, now);
        return { sha256, held: true, size: held.size, received: held.size };
      }
      return { sha256, held: false, size: 0, received: this.uploads.get(sha256)?.received ?? 0 };
    });
  }

  /**
   * One chunk of an upload. A chunk not at the bytes received so far writes nothing and says where
   * to go on (an upload of the hash under another size counts as another upload: it is replaced by
   * one starting at offset 0). The last byte checks the hash: HASH_MISMATCH drops the upload, a
   * match makes the file held.
   */
  put(sha256: string, size: number, offset: number, data: Uint8Array): Promise<PutResult> {
    checkSha256(sha256);
    if (!Number.isSafeInteger(size) || size < 0) throw new DagworkError('INVALID_ARGUMENT', `file size ${size} is not a byte count`);
    if (data.length > this.options.maxChunkBytes) {
      throw new DagworkError('TOO_LARGE', `a chunk of ${data.length} bytes is over the hub's max_chunk_bytes of ${this.options.maxChunkBytes}`);
    }
    if (!Number.isSafeInteger(offset) || offset < 0 || offset + data.length > size) {
      throw new DagworkError('INVALID_ARGUMENT', `a chunk of ${data.length} bytes at offset ${offset} does not lie within a file of ${size} bytes`);
    }
    return this.lock.run(sha256, () => this.putNow(sha256, size, offset, data));
  }

  private async putNow(sha: string, size: number, offset: number, data: Uint8Array): Promise<PutResult> {
    const now = this.options.clock();
    const held = this.held.get(sha);
    if (held !== undefined) {
      held.touched = Math.max(held.touched, now);
      return { received: held.size, held: true };
    }
    if (size > this.options.maxFileBytes) {
      throw new DagworkError('TOO_LARGE', `a file of ${size} bytes is over the hub's max_file_bytes of ${this.options.maxFileBytes}`);
    }
    let upload = this.uploads.get(sha);
    if (upload !== undefined && upload.size !== size) {
      // A hash has one size: one of the two uploaders is wrong. The live upload stays; a put that
      // asks only where to go on (no data) changes nothing either way.
      if (now - upload.progressAt < IDLE_UPLOAD_MS || data.length === 0 || offset !== 0) {
        throw new DagworkError(
          'INVALID_ARGUMENT',
          `an upload of ${sha} of ${upload.size} bytes is in progress, and this put says the file has ${size}: a file's size goes with its hash`,
        );
      }
      await this.drop(sha, upload);
      upload = undefined;
    }
    if (upload === undefined) {
      if (offset !== 0 || (data.length === 0 && size > 0)) return { received: 0, held: false };
      upload = await this.begin(sha, size, now);
    }
    if (offset !== upload.received) return { received: upload.received, held: false };
    if (data.length === 0 && upload.received < upload.size) return { received: upload.received, held: false };
    const hash = upload.hash ?? (await this.readBack(sha, upload));
    if (offset !== upload.received) return { received: upload.received, held: false }; // the partial was shorter
    if (data.length > 0) {
      if (!(await this.append(sha, upload, hash, data, now))) return { received: 0, held: false };
    }
    if (upload.received < upload.size) return { received: upload.received, held: false };
    await this.finish(sha, upload, hash, now);
    return { received: upload.size, held: true };
  }

  /** A new upload: checked against the limits, its (empty) partial file made. */
  private async begin(sha: string, size: number, now: number): Promise<Upload> {
    const { maxUploads, maxFilesBytes } = this.options;
    if (this.uploads.size >= maxUploads && !(await this.evictIdle(now))) {
      throw new DagworkError(
        'NO_SPACE',
        `the hub has ${this.uploads.size} uploads in progress, the most it takes at once, each with progress in the last ${IDLE_UPLOAD_MS / 1000} s: try again later`,
      );
    }
    if (maxFilesBytes > 0 && this.heldBytes + this.partialBytes + size > maxFilesBytes) {
      throw new DagworkError(
        'NO_SPACE',
        `a file of ${size} bytes does not fit in the hub's file space: ${this.heldBytes} bytes held and ${this.partialBytes} received by uploads in progress, of max_files_bytes ${maxFilesBytes} (gc removes files no task names)`,
      );
    }
    const path = this.partialPath(sha, size);
    try {
      const handle = await open(path, 'w');
      await handle.close();
    } catch (err) {
      throw ioError(err, `start the upload of ${sha}`);
    }
    const upload: Upload = { size, received: 0, hash: createHash('sha256'), progressAt: now };
    this.uploads.set(sha, upload);
    return upload;
  }

  /** Drops the upload idle longest if it had no progress for IDLE_UPLOAD_MS; false when none had. */
  private async evictIdle(now: number): Promise<boolean> {
    let idlest: [string, Upload] | undefined;
    for (const entry of this.uploads) if (idlest === undefined || entry[1].progressAt < idlest[1].progressAt) idlest = entry;
    if (idlest === undefined || now - idlest[1].progressAt < IDLE_UPLOAD_MS) return false;
    const [sha, upload] = idlest;
    // In its hash's turn: a chunk of it may be on its way.
    await this.lock.run(sha, async () => {
      if (this.uploads.get(sha) === upload && this.options.clock() - upload.progressAt >= IDLE_UPLOAD_MS) {
        this.options.log.info(`upload of ${sha} (${upload.received} of ${upload.size} bytes, idle for ${Math.round((now - upload.progressAt) / 1000)} s) dropped to make room for a new one`);
        await this.drop(sha, upload);
      }
    });
    return this.uploads.size < this.options.maxUploads;
  }

  /** The hash of what an upload found at open received: its partial file read back. */
  private async readBack(sha: string, upload: Upload): Promise<Hash> {
    const hash = createHash('sha256');
    let handle: FileHandle | undefined;
    let at = 0;
    try {
      handle = await open(this.partialPath(sha, upload.size), 'r');
      const buffer = Buffer.allocUnsafe(Math.min(READ_BACK_BYTES, Math.max(1, upload.received)));
      while (at < upload.received) {
        const { bytesRead } = await handle.read(buffer, 0, Math.min(buffer.length, upload.received - at), at);
        if (bytesRead === 0) break;
        hash.update(buffer.subarray(0, bytesRead));
        at += bytesRead;
      }
    } catch (err) {
      await this.drop(sha, upload);
      throw ioError(err, `read back the upload of ${sha} (it is dropped: send it again from offset 0)`);
    } finally {
      await handle?.close().catch(() => undefined);
    }
    this.partialBytes -= upload.received - at;
    upload.received = at;
    upload.hash = hash;
    return hash;
  }

  /**
   * Writes `data` at the end of the upload. A failed write is undone (the partial cut back to the
   * bytes received) or, when that fails too, the upload is dropped. False: the partial file is
   * gone (removed from outside): the upload starts again from 0.
   */
  private async append(sha: string, upload: Upload, hash: Hash, data: Uint8Array, now: number): Promise<boolean> {
    const { maxFilesBytes } = this.options;
    if (maxFilesBytes > 0 && this.heldBytes + this.partialBytes + data.length > maxFilesBytes) {
      throw new DagworkError(
        'NO_SPACE',
        `the hub's file space is full: ${this.heldBytes} bytes held and ${this.partialBytes} received by uploads in progress, of max_files_bytes ${maxFilesBytes}; this upload stays at ${upload.received} bytes (resume it once gc made room)`,
      );
    }
    let handle: FileHandle | undefined;
    try {
      handle = await open(this.partialPath(sha, upload.size), 'r+');
      for (let done = 0; done < data.length; ) {
        const { bytesWritten } = await handle.write(data, done, data.length - done, upload.received + done);
        done += bytesWritten;
      }
    } catch (err) {
      const gone = handle === undefined && (err as NodeJS.ErrnoException).code === 'ENOENT';
      const undone = handle !== undefined && (await handle.truncate(upload.received).then(() => true, () => false));
      await handle?.close().catch(() => undefined);
      handle = undefined;
      if (gone || !undone) await this.drop(sha, upload);
      if (gone) return false;
      throw ioError(err, `write ${data.length} bytes of the upload of ${sha}${undone ? '' : ' (the upload is dropped: send it again from offset 0)'}`);
    } finally {
      await handle?.close().catch(() => undefined);
    }
    hash.update(data);
    upload.received += data.length;
    this.partialBytes += data.length;
    upload.progressAt = now;
    return true;
  }

  /** The last byte arrived: the hash checked, the bytes fsynced, the file renamed under its hash, the directory fsynced. */
  private async finish(sha: string, upload: Upload, hash: Hash, now: number): Promise<void> {
    const digest = hash.copy().digest('hex');
    if (digest !== sha) {
      await this.drop(sha, upload);
      throw new DagworkError(
        'HASH_MISMATCH',
        `the ${upload.size} bytes uploaded as ${sha} have the SHA-256 ${digest}: the upload is dropped; send the file again from offset 0`,
      );
    }
    const from = this.partialPath(sha, upload.size);
    const shard = join(this.options.dir, sha.slice(0, 2));
    try {
      await syncFile(from);
      const made = await mkdir(shard, { recursive: true });
      if (made !== undefined) await syncFile(this.options.dir);
      await rename(from, join(shard, sha));
    } catch (err) {
      throw ioError(err, `keep the uploaded file ${sha}`);
    }
    this.uploads.delete(sha);
    this.partialBytes -= upload.received;
    this.held.set(sha, { size: upload.size, touched: now });
    this.heldBytes += upload.size;
    try {
      await syncFile(shard);
    } catch (err) {
      throw ioError(err, `fsync the directory of the uploaded file ${sha} (it is held; the next put says so)`);
    }
  }

  /** Removes an upload and its partial file. */
  private async drop(sha: string, upload: Upload): Promise<void> {
    if (this.uploads.get(sha) === upload) {
      this.uploads.delete(sha);
      this.partialBytes -= upload.received;
    }
    await unlink(this.partialPath(sha, upload.size)).catch((err: unknown) => {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.options.log.warn(`cannot remove the partial upload of ${sha}: ${(err as Error).message}`);
    });
  }

  /** One chunk of a held file, read from disk (never the whole file in memory). */
  async get(sha256: string, offset: number, length: number): Promise<{ data: Uint8Array; size: number }> {
    checkSha256(sha256);
    const held = this.held.get(sha256);
    if (held === undefined) throw unknownFile(sha256);
    held.touched = Math.max(held.touched, this.options.clock());
    const chunk = length === 0 || length > this.options.maxChunkBytes ? this.options.maxChunkBytes : length;
    const n = Math.min(chunk, Math.max(0, held.size - offset));
    if (n === 0) return { data: EMPTY, size: held.size };
    const data = Buffer.allocUnsafe(n);
    let at = 0;
    let handle: FileHandle | undefined;
    try {
      handle = await open(join(this.options.dir, sha256.slice(0, 2), sha256), 'r');
      while (at < n) {
        const { bytesRead } = await handle.read(data, at, n - at, offset + at);
        if (bytesRead === 0) break;
        at += bytesRead;
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw unknownFile(sha256);
      throw ioError(err, `read the file ${sha256}`);
    } finally {
      await handle?.close().catch(() => undefined);
    }
    return { data: data.subarray(0, at), size: held.size };
  }

  /**
   * Removes held files that no task names (`referenced`) and that were not held or touched in the
   * last RECENT_MS, and uploads without progress for STALE_UPLOAD_MS. The files leave the index at
   * once (from then on no task can name them: a create is UNKNOWN_FILE), their bytes as each one's
   * turn comes. `kept` counts the held files kept.
   */
  async gc(referenced: ReadonlySet<string>, dryRun: boolean): Promise<GcResult> {
    const now = this.options.clock();
    const result: GcResult = { removed: 0, removedBytes: 0, kept: 0, keptBytes: 0 };
    const files: [string, Held][] = [];
    for (const [sha, held] of this.held) {
      if (referenced.has(sha) || now - held.touched < RECENT_MS) {
        result.kept++;
        result.keptBytes += held.size;
      } else {
        files.push([sha, held]);
        result.removed++;
        result.removedBytes += held.size;
      }
    }
    const stale: [string, Upload][] = [];
    for (const [sha, upload] of this.uploads) {
      if (now - upload.progressAt < STALE_UPLOAD_MS) continue;
      stale.push([sha, upload]);
      result.removed++;
      result.removedBytes += upload.received;
    }
    if (dryRun) return result;
    for (const [sha, held] of files) {
      this.held.delete(sha);
      this.heldBytes -= held.size;
    }
    const removals: Promise<void>[] = [];
    for (const [sha] of files) {
      removals.push(
        this.lock.run(sha, () =>
          unlink(join(this.options.dir, sha.slice(0, 2), sha)).catch((err: unknown) => {
            if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.options.log.warn(`gc: cannot remove ${sha}: ${(err as Error).message}`);
          }),
        ),
      );
    }
    for (const [sha, upload] of stale) {
      // Progress may have come while earlier operations on this hash ran: looked at again in turn.
      removals.push(this.lock.run(sha, async () => (now - upload.progressAt >= STALE_UPLOAD_MS ? this.drop(sha, upload) : undefined)));
    }
    await Promise.all(removals);
    return result;
  }

  private partialPath(sha: string, size: number): string {
    return join(this.options.dir, PARTIAL, `${sha}.${size}`);
  }
}

/** fsync of a file or a directory, by path. */
async function syncFile(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function unknownFile(sha: string): DagworkError {
  return new DagworkError('UNKNOWN_FILE', `the hub holds no file ${sha}`);
}

/** An I/O failure as the request's error: a full disk or quota is NO_SPACE, anything else STORE_FAILED. */
function ioError(err: unknown, what: string): DagworkError {
  if (err instanceof DagworkError) return err;
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new DagworkError('NO_SPACE', `the hub's disk is full (${code}): could not ${what}; nothing was kept under the file's hash`, { cause: err });
  }
  return new DagworkError('STORE_FAILED', `the hub could not ${what}: ${(err as Error).message}`, { cause: err });
}
