import { grown } from './grow.js';

/** Bytes per chunk; a value longer than a quarter of it gets a chunk of its own. */
const CHUNK_BYTES = 1 << 20;
const LARGE_BYTES = CHUNK_BYTES >>> 2;
const FIRST_CHUNK_BYTES = 4096;
/** Slots of the first column at first. */
const FIRST_SLOTS = 64;
/** Slots per column chunk of the slot table. */
const SLOT_BITS = 16;
const SLOTS = 1 << SLOT_BITS;
const SLOT_MASK = SLOTS - 1;
/** The handle of the empty value: it takes no slot. */
export const EMPTY_HANDLE = 0;
const NONE = -1;
/** Garbage past which (and past the live bytes) the arena is compacted. */
const COMPACT_GARBAGE = 4 * CHUNK_BYTES;

const EMPTY = new Uint8Array(0);

/** Where each slot's bytes are: chunk, offset in it, length (-1: the slot is free, `offset` the next free one). */
interface SlotColumns {
  chunk: Int32Array;
  offset: Int32Array;
  length: Int32Array;
}

/**
 * Byte strings (payloads, results) packed into 1 MiB chunks, each known by a small integer handle
 * instead of a Uint8Array of its own (about 270 bytes of objects each, and a view into a decoded
 * request keeps the whole request alive). `get` gives a view into the chunk: valid for good, as
 * bytes once written are never overwritten (a compaction copies live bytes into new chunks and
 * drops the old ones). Handles of freed values are reused. Pure memory: no I/O.
 */
export class ByteArena {
  private readonly chunks: (Uint8Array | undefined)[] = [];
  /** Live bytes in each chunk: a chunk with none, other than the one being filled, is dropped. */
  private live: number[] = [];
  /** Bytes written into each chunk, live or freed since. */
  private placed: number[] = [];
  private fill = NONE;
  private fillAt = 0;
  private readonly slots: SlotColumns[] = [];
  /** Slot 0 is EMPTY_HANDLE's and never handed out. */
  private usedSlots = 1;
  /** Slots the columns hold: the first column starts small and doubles, the others are whole. */
  private slotCapacity = 0;
  /** Size of the next chunk being filled: from FIRST_CHUNK_BYTES, doubling to CHUNK_BYTES (a graph of a few tasks costs little). */
  private nextChunkBytes = FIRST_CHUNK_BYTES;
  private freeSlot = NONE;
  private freeChunks: number[] = [];
  private liveBytes = 0;
  /** Bytes written into the chunks held: the live ones and the garbage. */
  private placedBytes = 0;

  /** Bytes held by live values. */
  get bytes(): number {
    return this.liveBytes;
  }

  /** Chunks held (for tests: dropped and compacted chunks go). */
  get chunkCount(): number {
    return this.chunks.length - this.freeChunks.length;
  }

  /** Copies `bytes` in; its handle (EMPTY_HANDLE for no bytes). */
  put(bytes: Uint8Array): number {
    if (bytes.length === 0) return EMPTY_HANDLE;
    const slot = this.allocateSlot();
    this.place(slot, bytes);
    return slot;
  }

  /** The bytes of `handle`, as a view (no copy). */
  get(handle: number): Uint8Array {
    if (handle === EMPTY_HANDLE) return EMPTY;
    const columns = this.slots[handle >>> SLOT_BITS] as SlotColumns;
    const i = handle & SLOT_MASK;
    const chunk = this.chunks[columns.chunk[i] as number] as Uint8Array;
    const offset = columns.offset[i] as number;
    return chunk.subarray(offset, offset + (columns.length[i] as number));
  }

  /** The length of the bytes of `handle`, without a view. */
  length(handle: number): number {
    if (handle === EMPTY_HANDLE) return 0;
    return (this.slots[handle >>> SLOT_BITS] as SlotColumns).length[handle & SLOT_MASK] as number;
  }

  /** Forgets the bytes of `handle` (EMPTY_HANDLE: nothing); the handle may be handed out again. */
  free(handle: number): void {
    if (handle === EMPTY_HANDLE) return;
    const columns = this.slots[handle >>> SLOT_BITS] as SlotColumns;
    const i = handle & SLOT_MASK;
    const length = columns.length[i] as number;
    const chunk = columns.chunk[i] as number;
    columns.length[i] = NONE;
    columns.offset[i] = this.freeSlot;
    this.freeSlot = handle;
    this.liveBytes -= length;
    this.live[chunk] = (this.live[chunk] as number) - length;
    if (this.live[chunk] === 0 && chunk !== this.fill) this.dropChunk(chunk);
    const garbage = this.placedBytes - this.liveBytes;
    if (garbage > COMPACT_GARBAGE && garbage > this.liveBytes) this.compact();
  }

  /** Copies every live value into fresh chunks and drops the old ones; handles stay as they are. */
  private compact(): void {
    const old = this.chunks.slice();
    this.chunks.length = 0;
    this.live = [];
    this.placed = [];
    this.freeChunks = [];
    this.fill = NONE;
    this.liveBytes = 0;
    this.placedBytes = 0;
    for (let handle = 1; handle < this.usedSlots; handle++) {
      const columns = this.slots[handle >>> SLOT_BITS] as SlotColumns;
      const i = handle & SLOT_MASK;
      const length = columns.length[i] as number;
      if (length === NONE) continue;
      const from = old[columns.chunk[i] as number] as Uint8Array;
      const offset = columns.offset[i] as number;
      this.place(handle, from.subarray(offset, offset + length));
    }
  }

  /** Writes `bytes` at the end of the chunk being filled (or into one of their own) and points `slot` at them. */
  private place(slot: number, bytes: Uint8Array): void {
    let chunk: number;
    let offset = 0;
    if (bytes.length > LARGE_BYTES) {
      chunk = this.newChunk(bytes.length);
    } else {
      if (this.fill === NONE || this.fillAt + bytes.length > (this.chunks[this.fill] as Uint8Array).length) {
        const previous = this.fill;
        this.fill = this.newChunk(Math.max(this.nextChunkBytes, bytes.length));
        this.nextChunkBytes = Math.min(CHUNK_BYTES, this.nextChunkBytes * 2);
        this.fillAt = 0;
        if (previous !== NONE && this.live[previous] === 0) this.dropChunk(previous);
      }
      chunk = this.fill;
      offset = this.fillAt;
      this.fillAt += bytes.length;
    }
    (this.chunks[chunk] as Uint8Array).set(bytes, offset);
    this.live[chunk] = (this.live[chunk] as number) + bytes.length;
    this.placed[chunk] = (this.placed[chunk] as number) + bytes.length;
    this.liveBytes += bytes.length;
    this.placedBytes += bytes.length;
    const columns = this.slots[slot >>> SLOT_BITS] as SlotColumns;
    const i = slot & SLOT_MASK;
    columns.chunk[i] = chunk;
    columns.offset[i] = offset;
    columns.length[i] = bytes.length;
  }

  private newChunk(size: number): number {
    const index = this.freeChunks.pop() ?? this.chunks.length;
    this.chunks[index] = new Uint8Array(size);
    this.live[index] = 0;
    this.placed[index] = 0;
    return index;
  }

  /** A chunk without live bytes goes; the garbage it held goes with it. */
  private dropChunk(chunk: number): void {
    this.placedBytes -= this.placed[chunk] as number;
    this.chunks[chunk] = undefined;
    this.freeChunks.push(chunk);
  }

  private allocateSlot(): number {
    if (this.freeSlot !== NONE) {
      const slot = this.freeSlot;
      this.freeSlot = (this.slots[slot >>> SLOT_BITS] as SlotColumns).offset[slot & SLOT_MASK] as number;
      return slot;
    }
    if (this.usedSlots >= this.slotCapacity) {
      const first = this.slots[0];
      if (first !== undefined && this.slotCapacity < SLOTS) {
        this.slotCapacity *= 2;
        const size = this.slotCapacity;
        this.slots[0] = { chunk: grown(first.chunk, new Int32Array(size)), offset: grown(first.offset, new Int32Array(size)), length: grown(first.length, new Int32Array(size)) };
      } else {
        const size = first === undefined ? FIRST_SLOTS : SLOTS;
        this.slots.push({ chunk: new Int32Array(size), offset: new Int32Array(size), length: new Int32Array(size) });
        this.slotCapacity += size;
      }
    }
    return this.usedSlots++;
  }
}
