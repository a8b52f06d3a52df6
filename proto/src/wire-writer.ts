/**
 * Protobuf's wire format written straight into bytes, for the messages written most often: the
 * hub's stored records and log frames, and the steal and complete replies. protobufjs would
 * build an object a message (and a writer's list of operations) first; here each field goes
 * into one reused buffer as it is read from the value that holds it. Fields are written in
 * field-number order and left out at their default, as proto3 encoders do.
 */

/** Wire types. */
export const VARINT = 0;
export const LENGTH = 2;

/** Bytes `n` (a non-negative integer up to 2^53) takes as a varint. */
export function varintSize(n: number): number {
  let size = 1;
  for (; n >= 128; size++) n = Math.floor(n / 128);
  return size;
}

/** Writes `n` (below 2^32) as a varint at `at`; returns where it ends. */
export function writeVarint(buf: Buffer, at: number, n: number): number {
  while (n >= 0x80) {
    buf[at++] = (n & 0x7f) | 0x80;
    n >>>= 7;
  }
  buf[at++] = n;
  return at;
}

/**
 * Writes `s` at `at` if it is all ASCII (room for s.length bytes made): the end, or -1 at its first
 * other character (nothing meaningful written). Names are mostly short and ASCII, where a loop
 * costs less than Buffer.write's call into the native side.
 */
export function writeAscii(buf: Buffer, at: number, s: string): number {
  for (let i = 0; i < s.length; i++) {
    const unit = s.charCodeAt(i);
    if (unit >= 0x80) return -1;
    buf[at + i] = unit;
  }
  return at + s.length;
}

/** Bytes written into one buffer, grown (copied into a bigger one) when more are needed. */
export class ByteWriter {
  at = 0;

  constructor(public buf: Buffer = Buffer.allocUnsafe(1 << 16)) {}

  /** Makes room for `bytes` more at `at`. */
  room(bytes: number): void {
    if (this.at + bytes <= this.buf.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.at + bytes));
    this.buf.copy(bigger, 0, 0, this.at);
    this.buf = bigger;
  }

  /**
   * Ends a length-delimited value begun at `start`, one byte before it kept for its length: writes
   * its length there, moving the value along when the length needs more bytes (most of ours are
   * short). Returns where the value starts now.
   */
  close(start: number): number {
    const length = this.at - start;
    if (length < 0x80) {
      this.buf[start - 1] = length;
      return start;
    }
    const extra = varintSize(length) - 1;
    this.room(extra);
    this.buf.copyWithin(start + extra, start, this.at);
    this.at = writeVarint(this.buf, start - 1, length) + length;
    return start + extra;
  }
}

/** Protobuf's wire format written into a buffer (a reused one, or a log frame's), grown when a message needs more. */
export class WireWriter extends ByteWriter {
  /** A non-negative integer up to 2^53; anything else throws (it would be written as bytes no reader could read). */
  varint(n: number): void {
    if (!(n >= 0 && n <= Number.MAX_SAFE_INTEGER)) throw new RangeError(`cannot write ${n} as a varint: not an integer from 0 to 2^53`);
    this.room(10);
    const buf = this.buf;
    let at = this.at;
    if (n < 0x80000000) {
      while (n >= 0x80) {
        buf[at++] = (n & 0x7f) | 0x80;
        n >>>= 7;
      }
      buf[at++] = n;
    } else {
      // Past 31 bits (times in ms, sizes): as two 32-bit halves, with no division a byte.
      this.at = at;
      return this.halves(n >>> 0, Math.floor(n / 2 ** 32) >>> 0);
    }
    this.at = at;
  }

  /** A 64-bit varint given as its low and high 32 bits (room for 10 bytes made). */
  private halves(lo: number, hi: number): void {
    const buf = this.buf;
    let at = this.at;
    while (hi !== 0) {
      buf[at++] = (lo & 0x7f) | 0x80;
      lo = ((lo >>> 7) | (hi << 25)) >>> 0;
      hi >>>= 7;
    }
    while (lo > 0x7f) {
      buf[at++] = (lo & 0x7f) | 0x80;
      lo >>>= 7;
    }
    buf[at++] = lo;
    this.at = at;
  }

  tag(field: number, wireType: number): void {
    const tag = (field << 3) | wireType;
    if (tag < 0x80) {
      this.room(1);
      this.buf[this.at++] = tag;
    } else {
      this.varint(tag);
    }
  }

  /** A uint32 or uint64 field (or an enum, or a bool as 0 or 1), left out at 0. */
  uint(field: number, n: number): void {
    if (n === 0) return;
    this.tag(field, VARINT);
    this.varint(n);
  }

  /** An int32 or int64 field, left out at 0; a negative one as its 64-bit two's complement. */
  int64(field: number, n: number): void {
    if (n === 0) return;
    this.tag(field, VARINT);
    if (n > 0) return this.varint(n);
    const low = -n % 2 ** 32;
    const lo = (~low + 1) >>> 0;
    const hi = (~((-n - low) / 2 ** 32) + (lo === 0 ? 1 : 0)) >>> 0;
    this.room(10);
    this.halves(lo, hi);
  }

  /** A string field, left out when empty unless `always` (an element of a repeated field). */
  string(field: number, s: string, always = false): void {
    if (s === '' && !always) return;
    if (s.length < 0x80) {
      // A 1-byte length if it is ASCII (then its length is s.length).
      this.room(12 + s.length);
      this.tag(field, LENGTH);
      const end = writeAscii(this.buf, this.at + 1, s);
      if (end >= 0) {
        this.buf[this.at] = s.length;
        this.at = end;
        return;
      }
      this.at -= varintSize((field << 3) | LENGTH);
    }
    const length = Buffer.byteLength(s);
    this.tag(field, LENGTH);
    this.varint(length);
    this.room(length);
    this.at += this.buf.write(s, this.at, length, 'utf8');
  }

  /** A bytes field, left out when empty. */
  bytes(field: number, b: Uint8Array): void {
    if (b.length === 0) return;
    this.tag(field, LENGTH);
    this.varint(b.length);
    this.room(b.length);
    this.buf.set(b, this.at);
    this.at += b.length;
  }

  /**
   * Starts a message field (`field`, or none: a length-delimited message on its own); its fields
   * follow, then `close` (ByteWriter's) with what this returns.
   */
  open(field: number): number {
    if (field !== 0) this.tag(field, LENGTH);
    this.room(1);
    return ++this.at;
  }
}
