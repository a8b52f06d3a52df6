/**
 * The write-ahead log's on-disk format: how a group commit becomes frames, and how a segment is
 * read back, damaged or not. No file handling here beyond reading through a `Source`.
 *
 * Format 3 (written since STORE_FORMAT 3). All integers little-endian.
 *   segment = SEGMENT_MAGIC (8 bytes: "dagwal" 0x00 0x03), then frames.
 *   frame   = 24-byte header, then the payload:
 *     u32 FRAME_MAGIC (0xa9e1f3d7)
 *     u32 payload length in bytes
 *     u32 commit: numbers the group commits of the segment, from 1
 *     u16 part: this frame's place in its commit, from 0
 *     u16 flags: bit 0 MORE, more frames of this commit follow
 *     u32 FNV-1a of the payload
 *     u32 FNV-1a of the header's first 20 bytes
 *   payload = entries, each: varint key length, key (UTF-8), varint value length, value.
 *   Since STORE_FORMAT 5 an entry with an empty value deletes its key (store.ts); the frames
 *   themselves did not change, nor in STORE_FORMAT 6, whose task keys are a spec and a state per
 *   task (store.ts).
 *   A group commit is one frame, or several written one after another when its entries pass
 *   maxFrameBytes (a single larger entry gets a frame of its own): no frame, and no buffer, has
 *   to hold a whole commit. Replay applies a commit only once all its parts are read, up to the
 *   one without MORE: it is atomic on replay too.
 * Format 2 (STORE_FORMAT 2; read, never written): a segment is frames, without a segment header;
 *   frame = u32 payload length, u32 FNV-1a of the payload, payload (entries as above); one frame
 *   per group commit. A segment is format 3 exactly when it starts with SEGMENT_MAGIC.
 *
 * Reading a segment (`readSegment`):
 * - A torn tail is dropped quietly: the last frame cut short (its header, or its header says it
 *   runs past the end), a tail of zeros (blocks a power cut left unwritten), or a commit missing its
 *   last parts at the very end. A crash cut that write; it was never acknowledged.
 * - Anything else that does not check out is damage, reported with its offset and size: a frame
 *   whose header is sound but whose payload is not is skipped by its length (one frame lost); a
 *   frame whose header cannot be trusted is skipped up to the next frame that checks out (in
 *   format 3 the next FRAME_MAGIC whose header and payload sums match; in format 2 the next
 *   offset whose length fits and whose payload sum matches and starts with a task key). Every
 *   frame after damage is recovered. A commit that lost a part is dropped whole, and reported.
 */
import { ByteWriter, varintSize, writeAscii, writeVarint } from '../../../proto/src/wire-writer.js';

export const SEGMENT_MAGIC = Buffer.from([0x64, 0x61, 0x67, 0x77, 0x61, 0x6c, 0x00, 0x03]);
const FRAME_MAGIC = 0xa9e1f3d7;
const FRAME_MAGIC_BYTES = Buffer.from([0xd7, 0xf3, 0xe1, 0xa9]);
export const HEADER = 24;
const LEGACY_HEADER = 8;
const MORE = 1;
/** Bytes a resynchronising scan reads at a time. */
const SCAN_WINDOW = 1 << 20;

export interface WalEntry {
  key: string;
  value: Uint8Array;
}

/** Random access to a segment's bytes: a file, or a buffer in tests. */
export interface Source {
  readonly size: number;
  /** `length` bytes from `at` (fewer only past the end). */
  read(at: number, length: number): Buffer;
}

export function bufferSource(data: Buffer): Source {
  return { size: data.length, read: (at, length) => data.subarray(at, at + length) };
}

export function fnv1a(bytes: Uint8Array): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) {
    hash ^= bytes[i] as number;
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

function readVarint(buf: Buffer, at: number): [number, number] {
  let n = 0;
  let shift = 0;
  for (;;) {
    if (at >= buf.length || shift > 28) throw new RangeError('truncated varint');
    const byte = buf[at++] as number;
    n |= (byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) return [n >>> 0, at];
    shift += 7;
  }
}

/** Bytes an entry takes in a payload, its key taking `keyBytes`. */
export function entryBytes(keyBytes: number, value: Uint8Array): number {
  return varintSize(keyBytes) + keyBytes + varintSize(value.length) + value.length;
}

/** The keys' UTF-8 lengths: keys are written straight into the frame, with no Buffer each. */
function keyLengths(entries: readonly WalEntry[]): number[] {
  return entries.map((e) => Buffer.byteLength(e.key, 'utf8'));
}

function encodePayload(entries: readonly WalEntry[], keys: readonly number[], from: number, to: number, size: number, header: number): Buffer {
  const frame = Buffer.allocUnsafe(header + size);
  let at = header;
  for (let i = from; i < to; i++) {
    const { key, value } = entries[i] as WalEntry;
    const keyBytes = keys[i] as number;
    at = writeVarint(frame, at, keyBytes);
    at += frame.write(key, at, keyBytes, 'utf8');
    at = writeVarint(frame, at, value.length);
    frame.set(value, at);
    at += value.length;
  }
  return frame;
}

/**
 * The frames of one group commit (format 3), made one at a time: each holds at most
 * `maxFrameBytes` of payload, or one entry when that entry alone is larger.
 */
export function* encodeCommit(entries: readonly WalEntry[], commit: number, maxFrameBytes: number): Generator<Buffer> {
  const keys = keyLengths(entries);
  let part = 0;
  let from = 0;
  while (from < entries.length) {
    let to = from;
    let size = 0;
    while (to < entries.length) {
      const bytes = entryBytes(keys[to] as number, (entries[to] as WalEntry).value);
      if (to > from && size + bytes > maxFrameBytes) break;
      size += bytes;
      to++;
    }
    const frame = encodePayload(entries, keys, from, to, size, HEADER);
    frame.writeUInt32LE(FRAME_MAGIC, 0);
    frame.writeUInt32LE(size, 4);
    frame.writeUInt32LE(commit, 8);
    frame.writeUInt16LE(part, 12);
    frame.writeUInt16LE(to < entries.length ? MORE : 0, 14);
    frame.writeUInt32LE(fnv1a(frame.subarray(HEADER)), 16);
    frame.writeUInt32LE(fnv1a(frame.subarray(0, 20)), 20);
    yield frame;
    part++;
    from = to;
  }
}

/** The smallest buffer a CommitBuilder starts a frame in (a small commit gets no more). */
const MIN_FRAME_BUFFER = 256;
/** A key whose name has fewer UTF-16 units than this takes at most 127 bytes with its prefix: a 1-byte length. */
const SHORT_NAME = 40;

/**
 * One group commit's frames (format 3) built in place: each entry's key and value are written
 * straight into the frame (the value by whoever holds `writer` between `begin` and `end`), and
 * the values come back as views into the frames, with no copy of their own. Frames are split at
 * `maxFrameBytes` of payload as encodeCommit splits them; `frames` gives the same bytes.
 */
export class CommitBuilder {
  /** The closed frames, headers not yet filled. */
  private readonly closed: Buffer[] = [];
  /** Where the current frame's entries' values start and end. */
  private starts: number[] = [];
  private ends: number[] = [];
  /** Every value so far, in the entries' order, for the closed frames. */
  private readonly done: Uint8Array[] = [];
  /** Where the current entry starts, and its value. */
  private entryStart = 0;
  private valueStart = 0;

  /** `writer` is lent to the builder; its buffer becomes the frames. `sizeHint`: the bytes expected. */
  constructor(
    readonly writer: ByteWriter,
    private readonly maxFrameBytes: number,
    sizeHint: number,
  ) {
    writer.buf = Buffer.allocUnsafe(HEADER + Math.max(MIN_FRAME_BUFFER, Math.min(sizeHint, maxFrameBytes)));
    writer.at = HEADER;
  }

  /** Starts an entry under the key `prefix` + `name` (`prefix` ASCII); its value goes at `writer.at`, then `end`. */
  begin(prefix: string, name: string): void {
    const w = this.writer;
    this.entryStart = w.at;
    const keyBytes = name.length < SHORT_NAME ? -1 : prefix.length + Buffer.byteLength(name, 'utf8');
    w.room(10 + (keyBytes < 0 ? prefix.length + 3 * name.length : keyBytes) + 1);
    if (keyBytes < 0) {
      // Under 128 bytes whatever the name holds: a 1-byte length, written once the key is.
      const at = w.at + 1;
      const named = writeAscii(w.buf, at, prefix);
      let end = writeAscii(w.buf, named, name);
      if (end < 0) end = named + w.buf.write(name, named, 'utf8');
      w.buf[w.at] = end - at;
      w.at = end;
    } else {
      w.at = writeVarint(w.buf, w.at, keyBytes);
      w.at = writeAscii(w.buf, w.at, prefix);
      w.at += w.buf.write(name, w.at, 'utf8');
    }
    // One byte for the value's length, moved along when the value needs more.
    w.at++;
    this.valueStart = w.at;
  }

  /** Ends the entry begun last: its value is what was written since `begin`. */
  end(): void {
    const w = this.writer;
    let start = w.close(this.valueStart);
    let length = w.at - start;
    if (this.starts.length > 0 && w.at - HEADER > this.maxFrameBytes) {
      // Past the frame's bound: this entry opens the next frame.
      const bytes = w.at - this.entryStart;
      const next = Buffer.allocUnsafe(HEADER + Math.max(bytes, Math.min(2 * bytes, this.maxFrameBytes)));
      w.buf.copy(next, HEADER, this.entryStart, w.at);
      w.at = this.entryStart;
      this.close();
      start += HEADER - this.entryStart;
      w.buf = next;
      w.at = HEADER + bytes;
      length = w.at - start;
    }
    this.starts.push(start);
    this.ends.push(start + length);
  }

  /** Closes the current frame: its buffer no longer grows, so its values can be viewed. */
  private close(): void {
    const w = this.writer;
    const frame = w.buf.subarray(0, w.at);
    for (let i = 0; i < this.starts.length; i++) this.done.push(frame.subarray(this.starts[i], this.ends[i]));
    this.closed.push(frame);
    this.starts = [];
    this.ends = [];
  }

  /** Ends the commit: its frames, and every entry's value in order (views into the frames). */
  finish(): { frames: Buffer[]; values: Uint8Array[] } {
    if (this.starts.length > 0) this.close();
    const frames = this.closed;
    this.writer.buf = EMPTY_BUFFER;
    this.writer.at = 0;
    return { frames, values: this.done };
  }
}

const EMPTY_BUFFER = Buffer.alloc(0);

/** Fills in the headers of one commit's frames (from CommitBuilder.finish) as commit `commit`. */
export function sealCommit(frames: readonly Buffer[], commit: number): void {
  frames.forEach((frame, part) => {
    frame.writeUInt32LE(FRAME_MAGIC, 0);
    frame.writeUInt32LE(frame.length - HEADER, 4);
    frame.writeUInt32LE(commit, 8);
    frame.writeUInt16LE(part, 12);
    frame.writeUInt16LE(part < frames.length - 1 ? MORE : 0, 14);
    frame.writeUInt32LE(fnv1a(frame.subarray(HEADER)), 16);
    frame.writeUInt32LE(fnv1a(frame.subarray(0, 20)), 20);
  });
}

/** One format-2 frame holding `entries` (what a hub of STORE_FORMAT 2 wrote; for tests). */
export function encodeLegacyFrame(entries: readonly WalEntry[]): Buffer {
  const keys = keyLengths(entries);
  let size = 0;
  entries.forEach((e, i) => (size += entryBytes(keys[i] as number, e.value)));
  const frame = encodePayload(entries, keys, 0, entries.length, size, LEGACY_HEADER);
  frame.writeUInt32LE(size, 0);
  frame.writeUInt32LE(fnv1a(frame.subarray(LEGACY_HEADER)), 4);
  return frame;
}

function decodeEntries(payload: Buffer): WalEntry[] {
  const entries: WalEntry[] = [];
  let p = 0;
  while (p < payload.length) {
    let length: number;
    [length, p] = readVarint(payload, p);
    if (p + length > payload.length) throw new RangeError('key past the end of the frame');
    const key = payload.toString('utf8', p, p + length);
    p += length;
    [length, p] = readVarint(payload, p);
    if (p + length > payload.length) throw new RangeError('value past the end of the frame');
    entries.push({ key, value: payload.subarray(p, p + length) });
    p += length;
  }
  return entries;
}

type Read =
  | { kind: 'frame'; end: number; payload: Buffer; commit: number; part: number; more: boolean }
  /** A frame cut short by the end of the segment. */
  | { kind: 'cut' }
  /** A frame that does not check out; `end` is where it ends when its length can be trusted. */
  | { kind: 'bad'; end: number | undefined };

interface Layout {
  /** Where the first frame starts. */
  start: number;
  /** Whether a frame read as cut is surely the torn tail (its length is covered by a checksum). */
  cutIsFinal: boolean;
  /** The frame at `at`; `lookahead` lets an unchecked length be confirmed by the frame after it. */
  readAt(src: Source, at: number, lookahead?: boolean): Read;
  /** The offset of the first frame at or after `from` that checks out, if any. */
  resync(src: Source, from: number): number | undefined;
}

const allZero = (b: Buffer): boolean => b.every((x) => x === 0);

/** Whether everything from `at` to the end is zeros (checked a window at a time). */
function zerosToEnd(src: Source, at: number): boolean {
  for (let p = at; p < src.size; p += SCAN_WINDOW) if (!allZero(src.read(p, SCAN_WINDOW))) return false;
  return true;
}

const FORMAT_3: Layout = {
  start: SEGMENT_MAGIC.length,
  cutIsFinal: true,
  readAt(src, at) {
    const header = src.read(at, HEADER);
    if (header.length < HEADER) return { kind: 'cut' };
    if (header.readUInt32LE(0) !== FRAME_MAGIC || fnv1a(header.subarray(0, 20)) !== header.readUInt32LE(20)) {
      return zerosToEnd(src, at) ? { kind: 'cut' } : { kind: 'bad', end: undefined };
    }
    const size = header.readUInt32LE(4);
    const end = at + HEADER + size;
    if (end > src.size) return { kind: 'cut' };
    const payload = src.read(at + HEADER, size);
    if (fnv1a(payload) !== header.readUInt32LE(16)) return { kind: 'bad', end };
    return { kind: 'frame', end, payload, commit: header.readUInt32LE(8), part: header.readUInt16LE(12), more: (header.readUInt16LE(14) & MORE) !== 0 };
  },
  resync(src, from) {
    for (let window = from; window < src.size; window += SCAN_WINDOW) {
      const bytes = src.read(window, SCAN_WINDOW + FRAME_MAGIC_BYTES.length - 1);
      for (let i = bytes.indexOf(FRAME_MAGIC_BYTES); i >= 0 && i < SCAN_WINDOW; i = bytes.indexOf(FRAME_MAGIC_BYTES, i + 1)) {
        if (this.readAt(src, window + i).kind === 'frame') return window + i;
      }
    }
    return undefined;
  },
};

const FORMAT_2: Layout = {
  start: 0,
  cutIsFinal: false,
  readAt(src, at, lookahead = true) {
    const header = src.read(at, LEGACY_HEADER);
    if (header.length < LEGACY_HEADER) return { kind: 'cut' };
    const size = header.readUInt32LE(0);
    if (size === 0) return zerosToEnd(src, at) ? { kind: 'cut' } : { kind: 'bad', end: undefined };
    const end = at + LEGACY_HEADER + size;
    if (end > src.size) return { kind: 'cut' };
    const payload = src.read(at + LEGACY_HEADER, size);
    if (fnv1a(payload) === header.readUInt32LE(4)) return { kind: 'frame', end, payload, commit: at, part: 0, more: false };
    // The length is not covered by the sum: trust it only if the next frame, or the end, is there.
    const trusted = end === src.size || (lookahead && this.readAt(src, end, false).kind === 'frame');
    if (!trusted && zerosToEnd(src, at)) return { kind: 'cut' };
    return { kind: 'bad', end: trusted ? end : undefined };
  },
  resync(src, from) {
    // Every format-2 entry is a task record: a payload starts with a short key length and "t:".
    for (let window = from; window < src.size; window += SCAN_WINDOW) {
      const bytes = src.read(window, SCAN_WINDOW + LEGACY_HEADER + 3);
      const last = Math.min(SCAN_WINDOW, bytes.length - LEGACY_HEADER - 3);
      for (let i = 0; i < last; i++) {
        if (bytes[i + LEGACY_HEADER + 1] !== 0x74 || bytes[i + LEGACY_HEADER + 2] !== 0x3a) continue;
        if (this.readAt(src, window + i, false).kind === 'frame') return window + i;
      }
    }
    return undefined;
  },
};

/** A stretch of a segment that did not check out: lost, unless it was a torn tail. */
export interface Damage {
  offset: number;
  bytes: number;
  /** Frames lost: 1 when the bad frame's length could be trusted, undefined when unknown. */
  frames: number | undefined;
  /** Entries of commits dropped because they lost a part (0 for lost frames themselves). */
  entries: number;
  what: string;
}

export interface SegmentReport {
  format: 2 | 3;
  /** Commits applied. */
  commits: number;
  damage: Damage[];
  /** The torn tail dropped quietly: where it starts and its size. */
  torn: { offset: number; bytes: number } | undefined;
}

/**
 * The complete commits of a segment, in order, each as its entries; returns what it found (see
 * the module comment). Reads one frame at a time: memory holds one commit, not the segment.
 */
export function* readSegment(src: Source): Generator<WalEntry[], SegmentReport> {
  const format3 = src.size >= SEGMENT_MAGIC.length && src.read(0, SEGMENT_MAGIC.length).equals(SEGMENT_MAGIC);
  const layout = format3 ? FORMAT_3 : FORMAT_2;
  const report: SegmentReport = { format: format3 ? 3 : 2, commits: 0, damage: [], torn: undefined };
  // A commit whose parts are being gathered.
  let open: { commit: number; next: number; offset: number; entries: WalEntry[] } | undefined;
  const dropOpen = (what: string): void => {
    if (open === undefined) return;
    report.damage.push({ offset: open.offset, bytes: 0, frames: 0, entries: open.entries.length, what: `commit ${open.commit} ${what}` });
    open = undefined;
  };
  let at = format3 ? layout.start : 0;
  // A segment shorter than its header was cut as it was created: it holds nothing.
  if (!format3 && src.size < SEGMENT_MAGIC.length && SEGMENT_MAGIC.subarray(0, src.size).equals(src.read(0, src.size))) at = src.size;
  while (at < src.size) {
    const read = layout.readAt(src, at);
    if (read.kind === 'frame') {
      let entries: WalEntry[] | undefined;
      try {
        entries = decodeEntries(read.payload);
      } catch {
        entries = undefined;
      }
      if (entries !== undefined) {
        if (open !== undefined && (read.commit !== open.commit || read.part !== open.next)) dropOpen(`lost its part ${open.next}; its ${open.entries.length} entries were not applied`);
        if (open === undefined && read.part !== 0) {
          report.damage.push({ offset: at, bytes: 0, frames: 0, entries: entries.length, what: `part ${read.part} of commit ${read.commit} has lost the parts before it; its ${entries.length} entries were not applied` });
        } else {
          open ??= { commit: read.commit, next: 0, offset: at, entries: [] };
          for (const e of entries) open.entries.push(e);
          open.next++;
          if (!read.more) {
            report.commits++;
            yield open.entries;
            open = undefined;
          }
        }
        at = read.end;
        continue;
      }
    }
    // A frame whose length can be trusted is skipped by it; otherwise on to the next sound frame.
    const trusted = read.kind === 'frame' || (read.kind === 'bad' && read.end !== undefined);
    const end = read.kind === 'frame' || read.kind === 'bad' ? (read.end ?? layout.resync(src, at + 1)) : layout.cutIsFinal ? undefined : layout.resync(src, at + 1);
    if (read.kind === 'cut' && end === undefined) {
      report.torn = { offset: open?.offset ?? at, bytes: src.size - (open?.offset ?? at) };
      open = undefined;
      break;
    }
    report.damage.push({ offset: at, bytes: (end ?? src.size) - at, frames: trusted ? 1 : undefined, entries: 0, what: 'a corrupt frame' });
    if (end === undefined) break;
    at = end;
  }
  if (open !== undefined) {
    if (report.damage.length === 0) {
      // The crash came between two parts of the last commit: never acknowledged.
      report.torn = { offset: open.offset, bytes: src.size - open.offset };
      open = undefined;
    } else {
      dropOpen('lost its last parts; its entries were not applied');
    }
  }
  return report;
}
