import { grown } from './grow.js';

/** No id: a free slot. */
const EMPTY = 0;
const FIRST_SLOTS = 64;
const FIRST_IDS = 64;
/** addRange's radix sort: digits of this many bits. */
const RADIX_BITS = 11;
const RADIX = 1 << RADIX_BITS;

/**
 * Task names to task ids: ids in one Int32Array, found by linear probing from the name's hash (a
 * slot holds id + 1; 0 is free), each id's hash kept beside it. 12 to 20 bytes a name, where a
 * Map entry cost about 37, and an insertion about half the time.
 *
 * Names come from clients, so the hash is keyed (HalfSipHash-1-3, as Linux hashes its tables of
 * network flows) with a key drawn at random for each index: names chosen to collide cannot be
 * worked out in advance. Removal shifts the entries after it back (no tombstones). Pure memory.
 */
export class NameIndex {
  private slots = new Int32Array(FIRST_SLOTS);
  private mask = FIRST_SLOTS - 1;
  /** Each id's hash (valid while the id is in the index). */
  private hashes = new Int32Array(FIRST_IDS);
  private count = 0;
  private readonly k0: number;
  private readonly k1: number;

  /** `nameOf`: the name of an id in the index (the graph's TaskTable). */
  constructor(private readonly nameOf: (id: number) => string) {
    const key = new Uint32Array(2);
    globalThis.crypto.getRandomValues(key);
    this.k0 = key[0] as number;
    this.k1 = key[1] as number;
  }

  get size(): number {
    return this.count;
  }

  get(name: string): number | undefined {
    const slot = this.find(name, this.hash(name));
    return slot < 0 ? undefined : (this.slots[slot] as number) - 1;
  }

  has(name: string): boolean {
    return this.find(name, this.hash(name)) >= 0;
  }

  /** Maps `name` to `id` (replacing the id it had, if any). */
  set(name: string, id: number): void {
    const hash = this.hash(name);
    const found = this.find(name, hash);
    if (found < 0) return this.insert(hash, id);
    this.keepHash(id, hash);
    this.slots[found] = id + 1;
  }

  /** Maps `name`, which the index does not hold, to `id` (a new task's: no search first). */
  add(name: string, id: number): void {
    this.insert(this.hash(name), id);
  }

  /**
   * Maps the names of ids `from` to `to` - 1, none of which the index holds (a restore's): placed
   * in the order of their slots, so that the table is written from one end to the other, where
   * a million insertions one at a time each miss the processor's cache.
   */
  addRange(from: number, to: number): void {
    const n = to - from;
    if (n <= 0) return;
    // Room for them all at once: at most half full, as `insert` keeps it.
    let size = this.slots.length;
    while ((this.count + n) * 2 > size) size *= 2;
    if (size > this.slots.length) this.resize(size);
    if (to > this.hashes.length) this.hashes = grown(this.hashes, new Int32Array(to));
    let homes = new Int32Array(n);
    let ids = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      const hash = this.hash(this.nameOf(from + i));
      this.hashes[from + i] = hash;
      homes[i] = hash & this.mask;
      ids[i] = from + i;
    }
    // By home slot: a radix sort, 11 bits a pass, keys and ids moved together (each pass reads in order).
    let homesTo = new Int32Array(n);
    let idsTo = new Int32Array(n);
    const bits = 31 - Math.clz32(this.slots.length);
    const starts = new Int32Array(RADIX + 1);
    for (let shift = 0; shift < bits; shift += RADIX_BITS) {
      starts.fill(0);
      for (let i = 0; i < n; i++) (starts[(((homes[i] as number) >>> shift) & (RADIX - 1)) + 1] as number)++;
      for (let b = 0; b < RADIX; b++) starts[b + 1] = (starts[b + 1] as number) + (starts[b] as number);
      for (let i = 0; i < n; i++) {
        const home = homes[i] as number;
        const at = (starts[(home >>> shift) & (RADIX - 1)] as number)++;
        homesTo[at] = home;
        idsTo[at] = ids[i] as number;
      }
      [homes, homesTo] = [homesTo, homes];
      [ids, idsTo] = [idsTo, ids];
    }
    const slots = this.slots;
    const mask = this.mask;
    for (let i = 0; i < n; i++) {
      let slot = homes[i] as number;
      while (slots[slot] !== EMPTY) slot = (slot + 1) & mask;
      slots[slot] = (ids[i] as number) + 1;
    }
    this.count += n;
  }

  private insert(hash: number, id: number): void {
    this.keepHash(id, hash);
    if ((this.count + 1) * 2 > this.slots.length) this.resize(this.slots.length * 2);
    let slot = hash & this.mask;
    while (this.slots[slot] !== EMPTY) slot = (slot + 1) & this.mask;
    this.slots[slot] = id + 1;
    this.count++;
  }

  private keepHash(id: number, hash: number): void {
    if (id >= this.hashes.length) this.hashes = grown(this.hashes, new Int32Array(Math.max(id + 1, this.hashes.length * 2)));
    this.hashes[id] = hash;
  }

  /** Forgets `name` (nothing if it is not there). */
  delete(name: string): boolean {
    let hole = this.find(name, this.hash(name));
    if (hole < 0) return false;
    this.slots[hole] = EMPTY;
    this.count--;
    // Entries after the hole that could sit in it move back, so that every probe still finds its entry.
    for (let slot = (hole + 1) & this.mask; this.slots[slot] !== EMPTY; slot = (slot + 1) & this.mask) {
      const entry = this.slots[slot] as number;
      const home = (this.hashes[entry - 1] as number) & this.mask;
      // Stays unless its home is at or before the hole, going round from the hole to its slot.
      if (((slot - home) & this.mask) < ((slot - hole) & this.mask)) continue;
      this.slots[hole] = entry;
      this.slots[slot] = EMPTY;
      hole = slot;
    }
    return true;
  }

  /** Every id in the index, in the order of their slots (for tests). */
  *values(): Generator<number> {
    const slots = this.slots;
    for (let slot = 0; slot < slots.length; slot++) if (slots[slot] !== EMPTY) yield (slots[slot] as number) - 1;
  }

  /** The slot holding `name`, or -1. */
  private find(name: string, hash: number): number {
    const slots = this.slots;
    const mask = this.mask;
    for (let slot = hash & mask; ; slot = (slot + 1) & mask) {
      const entry = slots[slot] as number;
      if (entry === EMPTY) return -1;
      if (this.hashes[entry - 1] === hash && this.nameOf(entry - 1) === name) return slot;
    }
  }

  private resize(size: number): void {
    const old = this.slots;
    this.slots = new Int32Array(size);
    this.mask = size - 1;
    for (let i = 0; i < old.length; i++) {
      const entry = old[i] as number;
      if (entry === EMPTY) continue;
      let slot = (this.hashes[entry - 1] as number) & this.mask;
      while (this.slots[slot] !== EMPTY) slot = (slot + 1) & this.mask;
      this.slots[slot] = entry;
    }
  }

  /** HalfSipHash-1-3 of the name's UTF-16 code units, two to a word, keyed by (k0, k1). */
  private hash(name: string): number {
    let v0 = this.k0 | 0;
    let v1 = this.k1 | 0;
    let v2 = (this.k0 ^ 0x6c796765) | 0;
    let v3 = (this.k1 ^ 0x74656462) | 0;
    const length = name.length;
    const whole = length & ~1;
    // One round a word (c = 1), the last word holding the length and the odd code unit if there
    // is one; then three rounds (d = 3) after v2 ^= 0xff.
    const words = whole / 2 + 1;
    for (let r = 0; r < words + 3; r++) {
      let m = 0;
      if (r < words) {
        const i = 2 * r;
        m = i < whole ? name.charCodeAt(i) | (name.charCodeAt(i + 1) << 16) : ((length & 0xffff) << 16) | (length & 1 ? name.charCodeAt(i) : 0);
        v3 ^= m;
      } else if (r === words) {
        v2 ^= 0xff;
      }
      v0 = (v0 + v1) | 0;
      v1 = (v1 << 5) | (v1 >>> 27);
      v1 ^= v0;
      v0 = (v0 << 16) | (v0 >>> 16);
      v2 = (v2 + v3) | 0;
      v3 = (v3 << 8) | (v3 >>> 24);
      v3 ^= v2;
      v0 = (v0 + v3) | 0;
      v3 = (v3 << 7) | (v3 >>> 25);
      v3 ^= v0;
      v2 = (v2 + v1) | 0;
      v1 = (v1 << 13) | (v1 >>> 19);
      v1 ^= v2;
      v2 = (v2 << 16) | (v2 >>> 16);
      v0 ^= m;
    }
    return v1 ^ v3;
  }
}
