/**
 * A snapshot of every task, written by a hub that stops cleanly or while it runs (a task at a
 * time, between requests: SnapshotWriter), and read by a start in place of LevelDB's two entries a
 * task (reading those is most of a restart: bench/README), with the log kept since it was begun
 * replayed over it. It is an extra copy, never the only one: LevelDB holds the same records, and a
 * start that cannot trust the snapshot reads LevelDB instead (store.ts says when it is trusted).
 *
 * The file (SNAPSHOT_FILE in the store's directory). All integers little-endian.
 *   file    = MAGIC (8 bytes: "dagsnap" 0x02), the snapshot's id (16 ASCII hex digits), then chunks.
 *   chunk   = 16-byte header, then the payload:
 *     u32 CHUNK_MAGIC (0x5e1f0c8a)
 *     u32 payload length in bytes
 *     u32 tasks in the payload
 *     u32 FNV-1a of the payload
 *   payload = per task: varint length, its spec record, varint length, its state record (record.ts,
 *   STORE_FORMAT 6); a chunk ends after the task that takes it past CHUNK_BYTES. The tasks are
 *   in creation order, and a dependency on one of the RECENT_NAMES tasks before is written as how
 *   many tasks back it is (record.ts, DEP_BACK), not by its name (version 2; version 1, which
 *   wrote every name, is read as well).
 * The store's marker (SNAPSHOT_KEY in LevelDB) names the id, the file's size, its tasks and the
 * first log segment it needs: a file that does not match it, or whose chunks do not check out, is
 * not used.
 */
import { closeSync, constants, fstatSync, fsync, fsyncSync, openSync, readSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import type { TaskRecord } from '../../../proto/src/types.js';
import { WireWriter } from '../../../proto/src/wire-writer.js';
import { fnv1a } from './frame.js';
import { decodeSplitRecordIn, RecentNames, RecordError, writeSpecRecord, writeStateRecord } from './record.js';

export const SNAPSHOT_FILE = 'dagwork-snapshot';
const MAGIC = Buffer.from('dagsnap\x02', 'latin1');
/** A snapshot of the release before (every dependency by its name), read as it is. */
const MAGIC_1 = Buffer.from('dagsnap\x01', 'latin1');
const ID_BYTES = 16;
const FILE_HEADER = MAGIC.length + ID_BYTES;
const CHUNK_MAGIC = 0x5e1f0c8a;
const CHUNK_HEADER = 16;
/** A chunk is written once its payload passes this; the reader holds one chunk at a time. */
const CHUNK_BYTES = 1 << 20;

/** What the marker says of its snapshot. */
export interface SnapshotMark {
  id: string;
  bytes: number;
  tasks: number;
  /**
   * The first log segment written after the snapshot was begun: with every segment from it on,
   * the snapshot gives what the store holds (the log's later records replayed over it). Absent in
   * the marks of the release before, which a clean stop wrote with the log empty behind it.
   */
  log?: number;
  /** Segment `log` was made (when the snapshot began while serving, or by a start that took it over): it must be there. */
  made?: true;
}

/**
 * A snapshot written a task at a time (`add`: a hub writes one while it runs, between requests,
 * into `path`.tmp), then put in place (`finish`: fsynced off the main thread, renamed, the
 * directory fsynced) or given up (`abort`: the temporary file deleted). Every method throws what
 * the file system says; `abort` never throws.
 */
export class SnapshotWriter {
  private readonly fd: number;
  private readonly tmp: string;
  private bytes = 0;
  private tasks = 0;
  private inChunk = 0;
  private readonly w = new WireWriter(Buffer.allocUnsafe(CHUNK_BYTES * 2));
  private readonly recent = new RecentNames(true);
  private readonly back = (dep: string): number | undefined => this.recent.backTo(dep);
  private closed = false;
  /** Renamed into place. */
  placed = false;

  constructor(
    private readonly path: string,
    private readonly id: string,
  ) {
    this.tmp = `${path}.tmp`;
    // 'wx': never through a link or into a file someone put there.
    this.fd = openSync(this.tmp, 'wx');
    try {
      this.write(Buffer.concat([MAGIC, Buffer.from(id, 'latin1')]));
    } catch (err) {
      this.abort();
      throw err;
    }
    this.w.at = CHUNK_HEADER;
  }

  /** Bytes written so far (a chunk being built not counted). */
  get written(): number {
    return this.bytes;
  }

  /**
   * `dependedOn` false: no task names it as a dependency now. Its place is then not kept (a place
   * kept costs a map insertion, most of a task's writing); a later task naming it after all has
   * the name written whole. Default true.
   */
  add(record: TaskRecord, dependedOn = true): void {
    const w = this.w;
    const spec = w.open(0);
    writeSpecRecord(w, record.spec, record.seq, this.back);
    w.close(spec);
    this.recent.add(record.spec.name, dependedOn);
    const state = w.open(0);
    writeStateRecord(w, record);
    w.close(state);
    this.inChunk++;
    this.tasks++;
    if (w.at - CHUNK_HEADER >= CHUNK_BYTES) this.flush();
  }

  /** Writes the chunk being built, if it holds a task. */
  flush(): void {
    if (this.inChunk === 0) return;
    const w = this.w;
    const header = Buffer.allocUnsafe(CHUNK_HEADER);
    const payload = w.buf.subarray(CHUNK_HEADER, w.at);
    header.writeUInt32LE(CHUNK_MAGIC, 0);
    header.writeUInt32LE(payload.length, 4);
    header.writeUInt32LE(this.inChunk, 8);
    header.writeUInt32LE(fnv1a(payload), 12);
    header.copy(w.buf, 0);
    this.write(w.buf.subarray(0, w.at));
    w.at = CHUNK_HEADER;
    this.inChunk = 0;
  }

  /** Writes the last chunk, fsyncs the file and puts it in place: what the marker says of it. */
  finishNow(): SnapshotMark {
    try {
      this.flush();
      fsyncSync(this.fd);
      return this.place();
    } catch (err) {
      this.abort();
      throw err;
    }
  }

  /** finishNow, but the file's fsync runs off the main thread. */
  async finish(): Promise<SnapshotMark> {
    try {
      this.flush();
      await new Promise<void>((resolve, reject) => fsync(this.fd, (err) => (err === null ? resolve() : reject(err))));
      return this.place();
    } catch (err) {
      this.abort();
      throw err;
    }
  }

  /** Closes the file (fsynced already), renames it into place and fsyncs the directory. */
  private place(): SnapshotMark {
    this.closed = true;
    closeSync(this.fd);
    renameSync(this.tmp, this.path);
    this.placed = true;
    const dir = openSync(dirname(this.path), 'r');
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
    return { id: this.id, bytes: this.bytes, tasks: this.tasks };
  }

  /** Gives the snapshot up: its temporary file closed and deleted. */
  abort(): void {
    if (!this.closed) {
      this.closed = true;
      try {
        closeSync(this.fd);
      } catch {
        // Closed either way.
      }
    }
    try {
      rmSync(this.tmp, { force: true });
    } catch {
      // Not ours to remove (a directory put there): the error that matters is the first.
    }
  }

  private write(data: Uint8Array): void {
    for (let done = 0; done < data.length; ) done += writeSync(this.fd, data, done, data.length - done);
    this.bytes += data.length;
  }
}

/** Why a snapshot file is not used, for the log. */
export class SnapshotError extends Error {}

/**
 * Reads the snapshot at `path` that `mark` names, handing each task to `sink` (`expect` told how
 * many come, once the file has checked out). The whole file is
 * checked first (sums, lengths, counts): one that does not check out throws SnapshotError having
 * handed over nothing, and the caller reads LevelDB instead. After that, a record that does not
 * decode (the file was written so), or a file that changes or fails while it is read, throws
 * RecordError (record.ts): tasks have gone to `sink`.
 */
export function readSnapshot(path: string, mark: SnapshotMark, sink: (record: TaskRecord) => void, expect?: (tasks: number) => void): void {
  let fd: number;
  try {
    // Not through a link; a FIFO put there does not block the open.
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    throw new SnapshotError(`cannot open it: ${(err as Error).message}`);
  }
  try {
    let stat;
    try {
      stat = fstatSync(fd);
    } catch (err) {
      throw new SnapshotError(`cannot read it: ${(err as Error).message}`);
    }
    if (!stat.isFile()) throw new SnapshotError('it is not a file');
    /** Reads up to `buf.length` bytes at `at`: fewer only at the end. */
    const read = (buf: Buffer, at: number): number => {
      let done = 0;
      try {
        while (done < buf.length) {
          const n = readSync(fd, buf, done, buf.length - done, at + done);
          if (n === 0) break;
          done += n;
        }
      } catch (err) {
        throw new SnapshotError(`cannot read it: ${(err as Error).message}`);
      }
      return done;
    };
    const head = Buffer.alloc(FILE_HEADER);
    const magic = head.subarray(0, MAGIC.length);
    const prefix = MAGIC.length - 1;
    if (read(head, 0) < FILE_HEADER || !magic.subarray(0, prefix).equals(MAGIC.subarray(0, prefix))) throw new SnapshotError('it does not start as a snapshot does');
    if (!(magic.equals(MAGIC) || magic.equals(MAGIC_1))) throw new SnapshotError(`it is a snapshot of version ${magic[prefix]}, which this dhub does not read (versions 1 and 2)`);
    const id = head.toString('latin1', MAGIC.length);
    if (id !== mark.id) throw new SnapshotError(`it is snapshot ${id}, not the ${mark.id} the store names`);
    if (stat.size !== mark.bytes) throw new SnapshotError(`it holds ${stat.size} bytes, not the ${mark.bytes} written`);
    // One pass checking every chunk, then one reading them (from the page cache, most likely).
    const chunks: { at: number; length: number }[] = [];
    const header = Buffer.alloc(CHUNK_HEADER);
    let tasks = 0;
    let at = FILE_HEADER;
    while (at < mark.bytes) {
      if (read(header, at) < CHUNK_HEADER) throw new SnapshotError(`it ends at byte ${at}, inside a chunk's header; ${mark.bytes} bytes were written`);
      const length = header.readUInt32LE(4);
      if (header.readUInt32LE(0) !== CHUNK_MAGIC || at + CHUNK_HEADER + length > mark.bytes) throw new SnapshotError(`the chunk at byte ${at} is damaged`);
      const payload = Buffer.allocUnsafe(length);
      if (read(payload, at + CHUNK_HEADER) < length) throw new SnapshotError(`it ends inside the chunk at byte ${at}`);
      if (fnv1a(payload) !== header.readUInt32LE(12)) throw new SnapshotError(`the chunk at byte ${at} is damaged (its sum does not match)`);
      const count = walk(payload, at);
      if (count !== header.readUInt32LE(8)) throw new SnapshotError(`the chunk at byte ${at} holds ${count} tasks, not the ${header.readUInt32LE(8)} its header says`);
      chunks.push({ at, length });
      tasks += count;
      at += CHUNK_HEADER + length;
    }
    if (read(header.subarray(0, 1), at) !== 0) throw new SnapshotError(`it is longer than the ${mark.bytes} bytes written`);
    if (tasks !== mark.tasks) throw new SnapshotError(`it holds ${tasks} tasks, not the ${mark.tasks} written`);
    expect?.(tasks);
    try {
      const recent = new RecentNames();
      for (const chunk of chunks) {
        const payload = Buffer.allocUnsafe(chunk.length);
        if (read(payload, chunk.at + CHUNK_HEADER) < chunk.length) throw new SnapshotError(`it was cut short while it was read (at byte ${chunk.at})`);
        walk(payload, chunk.at, (specFrom, specEnd, stateFrom, stateEnd) => sink(decodeSplitRecordIn(payload, specFrom, specEnd, payload, stateFrom, stateEnd, recent)));
      }
    } catch (err) {
      // Tasks went to `sink` already: no longer a reason to read LevelDB into the same sink.
      if (err instanceof SnapshotError) throw new RecordError(`the snapshot changed or failed while it was read: ${err.message}`);
      throw err;
    }
  } finally {
    closeSync(fd);
  }
}

/**
 * The tasks of a chunk's payload (the chunk at byte `at`), each handed to `visit` if given (where
 * its two records start and end in `payload`); their count.
 */
function walk(payload: Buffer, at: number, visit?: (specFrom: number, specEnd: number, stateFrom: number, stateEnd: number) => void): number {
  let p = 0;
  /** Where the record whose varint length is at `p` starts (`p` then goes past it). */
  const next = (): number => {
    let length = 0;
    for (let shift = 0; ; shift += 7) {
      if (p >= payload.length || shift > 28) throw new SnapshotError(`a task's record in the chunk at byte ${at} runs past it`);
      const byte = payload[p++] as number;
      length += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) break;
    }
    if (p + length > payload.length) throw new SnapshotError(`a task's record in the chunk at byte ${at} runs past it`);
    const from = p;
    p += length;
    return from;
  };
  let count = 0;
  while (p < payload.length) {
    const specFrom = next();
    const specEnd = p;
    const stateFrom = next();
    visit?.(specFrom, specEnd, stateFrom, p);
    count++;
  }
  return count;
}
