/**
 * The store's write-ahead log: numbered segment files of checksummed frames, appended with one
 * write(2) per group commit. A write that returned survives a crash of the process (the kernel has
 * it); with `sync` it is also fdatasync'ed, and survives power loss. LevelDB gets the same entries
 * in the background; a segment is deleted once LevelDB holds everything in it.
 *
 * Frame: u32 payload length, u32 FNV-1a of the payload (both little-endian), payload.
 * Payload: entries of varint key length, key (UTF-8), varint value length, value.
 */
import { closeSync, fdatasyncSync, fsyncSync, openSync, readdirSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';

const PREFIX = 'dagwork-wal-';
const HEADER = 8;

export interface WalEntry {
  key: string;
  value: Uint8Array;
}

function fnv1a(bytes: Uint8Array): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) {
    hash ^= bytes[i] as number;
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

function varintLength(n: number): number {
  let length = 1;
  while (n >= 0x80) {
    n >>>= 7;
    length++;
  }
  return length;
}

function writeVarint(buf: Buffer, at: number, n: number): number {
  while (n >= 0x80) {
    buf[at++] = (n & 0x7f) | 0x80;
    n >>>= 7;
  }
  buf[at++] = n;
  return at;
}

function readVarint(buf: Buffer, at: number): [number, number] {
  let n = 0;
  let shift = 0;
  for (;;) {
    if (at >= buf.length || shift > 28) throw new Error('truncated varint');
    const byte = buf[at++] as number;
    n |= (byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) return [n >>> 0, at];
    shift += 7;
  }
}

/** One frame holding `entries`. */
export function encodeFrame(entries: readonly WalEntry[]): Buffer {
  const keys = entries.map((e) => Buffer.from(e.key, 'utf8'));
  let size = 0;
  entries.forEach((e, i) => {
    const key = keys[i] as Buffer;
    size += varintLength(key.length) + key.length + varintLength(e.value.length) + e.value.length;
  });
  const frame = Buffer.allocUnsafe(HEADER + size);
  let at = HEADER;
  entries.forEach((e, i) => {
    const key = keys[i] as Buffer;
    at = writeVarint(frame, at, key.length);
    at += key.copy(frame, at);
    at = writeVarint(frame, at, e.value.length);
    frame.set(e.value, at);
    at += e.value.length;
  });
  frame.writeUInt32LE(size, 0);
  frame.writeUInt32LE(fnv1a(frame.subarray(HEADER)), 4);
  return frame;
}

/**
 * The entries of a segment, in order. A torn or corrupt frame ends the segment: it can only be
 * the last write, cut short by a crash of the machine, and was never acknowledged.
 */
export function decodeSegment(data: Buffer): { entries: WalEntry[]; torn: boolean } {
  const entries: WalEntry[] = [];
  let at = 0;
  while (at < data.length) {
    if (at + HEADER > data.length) return { entries, torn: true };
    const size = data.readUInt32LE(at);
    const payload = data.subarray(at + HEADER, at + HEADER + size);
    if (payload.length !== size || fnv1a(payload) !== data.readUInt32LE(at + 4)) return { entries, torn: true };
    let p = 0;
    try {
      while (p < payload.length) {
        let length: number;
        [length, p] = readVarint(payload, p);
        const key = payload.toString('utf8', p, p + length);
        p += length;
        [length, p] = readVarint(payload, p);
        entries.push({ key, value: payload.subarray(p, p + length) });
        p += length;
      }
    } catch {
      return { entries, torn: true };
    }
    at += HEADER + size;
  }
  return { entries, torn: false };
}

export class Wal {
  private fd: number;
  private segment: number;
  /** Segments closed and waiting for LevelDB to hold their entries. */
  private closed: number[] = [];

  private constructor(
    private readonly dir: string,
    private readonly sync: boolean,
    existing: number[],
  ) {
    this.closed = existing;
    this.segment = (existing[existing.length - 1] ?? 0) + 1;
    this.fd = this.create(this.segment);
  }

  /** The entries left by the last run (to be put into LevelDB), and a log ready for appends. */
  static open(dir: string, sync: boolean): { wal: Wal; recovered: WalEntry[] } {
    const existing = readdirSync(dir)
      .filter((f) => f.startsWith(PREFIX))
      .map((f) => Number(f.slice(PREFIX.length)))
      .filter(Number.isSafeInteger)
      .sort((a, b) => a - b);
    const recovered: WalEntry[] = [];
    for (const n of existing) recovered.push(...decodeSegment(readFileSync(join(dir, PREFIX + n))).entries);
    return { wal: new Wal(dir, sync, existing), recovered };
  }

  private create(n: number): number {
    const fd = openSync(join(this.dir, PREFIX + n), 'a');
    if (this.sync) {
      // The new file's name must survive a power cut too.
      const dirFd = openSync(this.dir, 'r');
      try {
        fsyncSync(dirFd);
      } finally {
        closeSync(dirFd);
      }
    }
    return fd;
  }

  /** Appends one frame; when this returns the entries are durable (see the module comment). */
  append(entries: readonly WalEntry[]): void {
    if (entries.length === 0) return;
    const frame = encodeFrame(entries);
    try {
      let written = 0;
      while (written < frame.length) written += writeSync(this.fd, frame, written);
      if (this.sync) fdatasyncSync(this.fd);
    } catch (err) {
      // A partly written frame must stay the last of its segment, or it would hide the ones after.
      try {
        this.rotate();
      } catch {
        // the next append reports the trouble
      }
      throw err;
    }
  }

  /** Starts a new segment; the ones before it can go once LevelDB holds what they hold. */
  rotate(): number[] {
    closeSync(this.fd);
    this.closed.push(this.segment);
    this.segment++;
    this.fd = this.create(this.segment);
    return [...this.closed];
  }

  /** Deletes closed segments that LevelDB now holds. */
  discard(segments: readonly number[]): void {
    for (const n of segments) {
      unlinkSync(join(this.dir, PREFIX + n));
      this.closed = this.closed.filter((c) => c !== n);
    }
  }

  /** Closes the log; with `empty`, everything is in LevelDB and every segment goes. */
  close(empty: boolean): void {
    closeSync(this.fd);
    if (empty) {
      this.discard([...this.closed]);
      unlinkSync(join(this.dir, PREFIX + this.segment));
    }
  }
}
