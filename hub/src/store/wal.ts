/**
 * The store's write-ahead log: numbered segment files (`dagwork-wal-N`) of checksummed frames,
 * appended once per group commit (one write(2) per frame; frame.ts has the format). A write that
 * returned survives a crash of the process (the kernel has it); with `sync` it is also
 * fdatasync'ed, and survives power loss. LevelDB gets the same entries in the background; a
 * segment is deleted once LevelDB holds everything in it, except a segment found damaged at
 * open, which is renamed aside (`corrupt-dagwork-wal-N-TIME`) and never deleted.
 *
 * Every failure is thrown from a call (open, append, rotate, discard, close) as a StoreError
 * naming the file and the reason; nothing here runs from a timer.
 */
import {
  closeSync,
  constants,
  fdatasyncSync,
  fstatSync,
  fsyncSync,
  ftruncateSync,
  openSync,
  readdirSync,
  readSync,
  renameSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { DagworkError } from '../../../proto/src/errors.js';
import { encodeCommit, readSegment, sealCommit, SEGMENT_MAGIC, type SegmentReport, type Source, type WalEntry } from './frame.js';

export type { WalEntry } from './frame.js';
export const WAL_PREFIX = 'dagwork-wal-';
export const CORRUPT_PREFIX = 'corrupt-dagwork-wal-';
// O_APPEND: after a failed write is cut off again with ftruncate, the next one lands at the end.
const CREATE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_APPEND;

export interface WalOptions {
  /** fdatasync every append. */
  sync: boolean;
  /** Largest frame payload in bytes (frame.ts). */
  maxFrameBytes: number;
}

/** A failure of the store's files, with the reason as its cause; answered STORE_FAILED. */
export function storeError(message: string, cause: unknown): DagworkError {
  return new DagworkError('STORE_FAILED', `${message}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
}

function fileSource(path: string): { source: Source; close(): void } {
  const fd = openSync(path, 'r');
  const size = fstatSync(fd).size;
  return {
    source: {
      size,
      read(at, length) {
        const buf = Buffer.allocUnsafe(Math.max(0, Math.min(length, size - at)));
        let got = 0;
        while (got < buf.length) {
          const n = readSync(fd, buf, got, buf.length - got, at + got);
          if (n === 0) break;
          got += n;
        }
        return got === buf.length ? buf : buf.subarray(0, got);
      },
    },
    close: () => closeSync(fd),
  };
}

export class Wal {
  private fd: number;
  private segment: number;
  /** Bytes in the current segment. */
  private size = 0;
  /** Group commits in the current segment. */
  private commits = 0;
  /** The current segment ends in a partial write that could not be cut off: append elsewhere. */
  private poisoned = false;
  /** Segments closed and waiting for LevelDB to hold their entries. */
  private closed: number[];
  /** Closed segments found damaged, and where they go instead of being deleted. */
  private readonly damaged = new Map<number, string>();
  /** Bytes appended in this run, all segments. */
  appended = 0;

  private constructor(
    private readonly dir: string,
    private readonly options: WalOptions,
    existing: number[],
    first: number,
  ) {
    this.closed = existing;
    this.segment = Math.max((existing[existing.length - 1] ?? 0) + 1, first);
    this.fd = this.create(this.segment);
    this.size = SEGMENT_MAGIC.length;
  }

  /**
   * Opens the log for appends, in a new segment after those left by the last run (`old`), and
   * numbered `first` at least (a snapshot names the segments after it: their numbers never go back).
   */
  static open(dir: string, options: WalOptions, first = 1): { wal: Wal; old: number[] } {
    const old = readdirSync(dir)
      .filter((f) => f.startsWith(WAL_PREFIX))
      .map((f) => Number(f.slice(WAL_PREFIX.length)))
      .filter((n) => Number.isSafeInteger(n) && n > 0)
      .sort((a, b) => a - b);
    return { wal: new Wal(dir, options, old.slice(), first), old };
  }

  path(n: number): string {
    return join(this.dir, WAL_PREFIX + n);
  }

  /**
   * The complete commits of old segment `n`, one at a time; returns what was found. A segment
   * with damage is marked: `discard` renames it aside.
   */
  *replay(n: number): Generator<WalEntry[], SegmentReport> {
    const file = fileSource(this.path(n));
    try {
      const report = yield* readSegment(file.source);
      if (report.damage.length > 0) this.damaged.set(n, join(this.dir, `${CORRUPT_PREFIX}${n}-${new Date().toISOString().replace(/[:.]/g, '')}`));
      return report;
    } finally {
      file.close();
    }
  }

  /** Where `discard` keeps segment `n`, found damaged; undefined if it was not. */
  asidePath(n: number): string | undefined {
    return this.damaged.get(n);
  }

  private create(n: number): number {
    const path = this.path(n);
    let fd: number | undefined;
    try {
      fd = openSync(path, CREATE_FLAGS);
      writeSync(fd, SEGMENT_MAGIC);
      if (this.options.sync) {
        fdatasyncSync(fd);
        // The new file's name must survive a power cut too.
        const dirFd = openSync(this.dir, 'r');
        try {
          fsyncSync(dirFd);
        } finally {
          closeSync(dirFd);
        }
      }
      return fd;
    } catch (err) {
      if (fd !== undefined) closeSync(fd);
      throw storeError(`cannot start a new log segment ${path}`, err);
    }
  }

  /**
   * Appends one group commit (one or more frames); when this returns the entries are durable
   * (see the module comment). On failure nothing of it stays in the log, or what stays is the
   * torn tail of a segment that gets no more appends.
   */
  append(entries: readonly WalEntry[]): void {
    if (entries.length === 0) return;
    this.write((commit) => encodeCommit(entries, commit, this.options.maxFrameBytes));
  }

  /** Appends one group commit built in place (CommitBuilder.finish's frames), as `append` does. */
  appendFrames(frames: readonly Buffer[]): void {
    if (frames.length === 0) return;
    this.write((commit) => {
      sealCommit(frames, commit);
      return frames;
    });
  }

  /** Writes the frames `framesOf` gives for the next commit number (see `append`). */
  private write(framesOf: (commit: number) => Iterable<Buffer>): void {
    if (this.poisoned) this.rotate();
    let links: number;
    try {
      links = fstatSync(this.fd).nlink;
    } catch (err) {
      throw storeError(`cannot write the log segment ${this.path(this.segment)}`, err);
    }
    if (links === 0) throw new DagworkError('STORE_FAILED', `the log segment ${this.path(this.segment)} was deleted (was the store directory ${this.dir} removed?): nothing can be written durably`);
    const start = this.size;
    try {
      for (const frame of framesOf(this.commits + 1)) {
        let written = 0;
        while (written < frame.length) written += writeSync(this.fd, frame, written);
        this.size += frame.length;
        this.appended += frame.length;
      }
      if (this.options.sync) fdatasyncSync(this.fd);
      this.commits++;
    } catch (err) {
      try {
        ftruncateSync(this.fd, start);
        this.appended -= this.size - start;
        this.size = start;
      } catch {
        // A partly written commit must stay the last thing in its segment, or it would be
        // taken for damage: the next append starts a new segment.
        this.poisoned = true;
      }
      throw storeError(`cannot append to the log segment ${this.path(this.segment)}`, err);
    }
  }

  /**
   * Starts a new segment and returns the closed ones (they can go once LevelDB holds what they
   * hold). If the new one cannot be opened this throws and the log goes on in the current one.
   */
  rotate(): number[] {
    const fd = this.create(this.segment + 1);
    try {
      closeSync(this.fd);
    } catch {
      // The old descriptor is gone either way; its writes were already made.
    }
    this.closed.push(this.segment);
    this.segment++;
    this.fd = fd;
    this.size = SEGMENT_MAGIC.length;
    this.commits = 0;
    this.poisoned = false;
    return this.closed.slice();
  }

  /** The segment appends go to. */
  get current(): number {
    return this.segment;
  }

  /** Closed segments, oldest first. */
  closedSegments(): number[] {
    return this.closed.slice();
  }

  /**
   * Deletes closed segments that LevelDB now holds (renames damaged ones aside); returns the
   * failures, each naming its file. A segment that could not go stays listed and is tried again.
   */
  discard(segments: readonly number[]): Error[] {
    const errors: Error[] = [];
    const gone = new Set<number>();
    for (const n of segments) {
      const aside = this.damaged.get(n);
      try {
        if (aside !== undefined) renameSync(this.path(n), aside);
        else unlinkSync(this.path(n));
        gone.add(n);
        this.damaged.delete(n);
      } catch (err) {
        if ((err as { code?: unknown }).code === 'ENOENT' && !this.damaged.has(n)) gone.add(n);
        else errors.push(storeError(`cannot ${this.damaged.has(n) ? 'set aside' : 'delete'} the log segment ${this.path(n)}`, err));
      }
    }
    this.closed = this.closed.filter((c) => !gone.has(c));
    return errors;
  }

  /**
   * Closes the log; with `empty`, everything is in LevelDB and every segment before `keepFrom`
   * goes (those from it on stay: a snapshot needs them).
   */
  close(empty: boolean, keepFrom = Infinity): Error[] {
    try {
      closeSync(this.fd);
    } catch {
      // nothing more can be done with it
    }
    if (!empty) return [];
    const errors = this.discard(this.closed.filter((n) => n < keepFrom));
    if (this.segment >= keepFrom) return errors;
    try {
      unlinkSync(this.path(this.segment));
    } catch (err) {
      if ((err as { code?: unknown }).code !== 'ENOENT') errors.push(storeError(`cannot delete the log segment ${this.path(this.segment)}`, err));
    }
    return errors;
  }
}
