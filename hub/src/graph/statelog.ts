import { TASK_STATES, type StateChange, type TaskState } from '../../../proto/src/types.js';
import { grown } from './grow.js';

/** Entries per chunk: a chunk is 1.25 MiB, allocated whole when the previous one is full. */
const CHUNK_BITS = 16;
const CHUNK = 1 << CHUNK_BITS;
const MASK = CHUNK - 1;
/** Entries of the first chunk at first. */
const FIRST_CHUNK = 64;
/** An entry's `prev` when it is the first of its log; a log without entries has this head. */
export const NO_ENTRY = -1;
/** A worker or note longer than this is kept as it is (in `longWorkers`, `longNotes`), not interned. */
const MAX_WORD_CHARS = 256;
/**
 * Distinct workers and notes interned at most (interned words are never forgotten); past it they
 * are kept as they are, with their entry: peers that make up worker names cannot grow the table.
 */
const MAX_WORDS = 1 << 16;
/** The worker id of an entry whose worker is kept as it is (never an interned word's id). */
const LONG_WORKER = MAX_WORDS;
const STATE_BITS = 3;
const STATE_MASK = (1 << STATE_BITS) - 1;
const STATE_INDEX = new Map<TaskState, number>(TASK_STATES.map((state, i) => [state, i]));

/** One chunk of entries, column by column. */
interface Chunk {
  at: Float64Array;
  /** The state's index in TASK_STATES, and the worker's word id above STATE_BITS. */
  code: Int32Array;
  /** The note's word id, or NO_ENTRY: the note is in `longNotes`. */
  note: Int32Array;
  /** The entry before it in its log (NO_ENTRY: the first), or the next free entry. */
  prev: Int32Array;
}

/**
 * Every task's state log, packed: 20 bytes an entry, in chunks that grow by one at a time (never
 * copied), instead of an array of StateChange objects per task. A log is a chain of entries from
 * its latest back to its first: the task keeps the index of its latest (its head) and its length.
 * Workers and short notes are interned (one string each, however many entries name them). Freed
 * entries are reused. Pure memory: no I/O.
 */
export class StateLogs {
  private readonly chunks: Chunk[] = [];
  /** Entries handed out so far (the free ones included). */
  private used = 0;
  /** Entries the chunks hold: the first chunk starts small and doubles (a graph of a few tasks costs little), the others are whole. */
  private capacity = 0;
  private free = NO_ENTRY;
  private freeCount = 0;
  private readonly wordIds = new Map<string, number>([['', 0]]);
  private readonly words: string[] = [''];
  /** Workers and notes not interned (long, or past MAX_WORDS), by entry. */
  private readonly longWorkers = new Map<number, string>();
  private readonly longNotes = new Map<number, string>();

  /** Workers and notes interned (at most MAX_WORDS). */
  get interned(): number {
    return this.words.length;
  }

  /** Entries in use. */
  get size(): number {
    return this.used - this.freeCount;
  }

  /** Appends `change` to the log whose latest entry is `head` (NO_ENTRY: an empty log); returns the new head. */
  append(head: number, change: StateChange): number {
    const entry = this.allocate();
    const chunk = this.chunks[entry >>> CHUNK_BITS] as Chunk;
    const i = entry & MASK;
    chunk.at[i] = change.at;
    const worker = this.word(change.worker);
    chunk.code[i] = (STATE_INDEX.get(change.state) as number) | ((worker === NO_ENTRY ? LONG_WORKER : worker) << STATE_BITS);
    if (worker === NO_ENTRY) this.longWorkers.set(entry, change.worker);
    const note = this.word(change.note);
    chunk.note[i] = note;
    if (note === NO_ENTRY) this.longNotes.set(entry, change.note);
    chunk.prev[i] = head;
    return entry;
  }

  /**
   * Drops the second entry of the log of `head` and `length` (the first, creation, is kept; the
   * latest ones are what matter): returns the new head. A log of one entry is left as it is.
   */
  dropSecond(head: number, length: number): number {
    if (length < 2) return head;
    if (length === 2) {
      const first = this.prev(head);
      this.release(head);
      return first;
    }
    // The third entry links to the second: walk back to it.
    let third = head;
    for (let n = length - 3; n > 0; n--) third = this.prev(third);
    const second = this.prev(third);
    this.setPrev(third, this.prev(second));
    this.release(second);
    return head;
  }

  /** Frees every entry of the log of `head`. */
  freeLog(head: number): void {
    for (let entry = head; entry !== NO_ENTRY; ) {
      const prev = this.prev(entry);
      this.release(entry);
      entry = prev;
    }
  }

  at(entry: number): number {
    return (this.chunks[entry >>> CHUNK_BITS] as Chunk).at[entry & MASK] as number;
  }

  state(entry: number): TaskState {
    return TASK_STATES[((this.chunks[entry >>> CHUNK_BITS] as Chunk).code[entry & MASK] as number) & STATE_MASK] as TaskState;
  }

  worker(entry: number): string {
    const worker = ((this.chunks[entry >>> CHUNK_BITS] as Chunk).code[entry & MASK] as number) >>> STATE_BITS;
    return worker === LONG_WORKER ? (this.longWorkers.get(entry) as string) : (this.words[worker] as string);
  }

  note(entry: number): string {
    const note = (this.chunks[entry >>> CHUNK_BITS] as Chunk).note[entry & MASK] as number;
    return note === NO_ENTRY ? (this.longNotes.get(entry) as string) : (this.words[note] as string);
  }

  prev(entry: number): number {
    return (this.chunks[entry >>> CHUNK_BITS] as Chunk).prev[entry & MASK] as number;
  }

  /** The first entry of the log of `head` (NO_ENTRY for an empty log). */
  first(head: number): number {
    let entry = head;
    for (let prev = entry === NO_ENTRY ? NO_ENTRY : this.prev(entry); prev !== NO_ENTRY; prev = this.prev(entry)) entry = prev;
    return entry;
  }

  /** When the latest RUNNING entry of the log of `head` was made; 0 if there is none. */
  startedAt(head: number): number {
    for (let entry = head; entry !== NO_ENTRY; entry = this.prev(entry)) {
      if (this.state(entry) === 'running') return this.at(entry);
    }
    return 0;
  }

  /** The log of `head` as StateChange objects, first to latest. */
  entries(head: number, length: number): StateChange[] {
    const log = new Array<StateChange>(length);
    let i = length;
    for (let entry = head; entry !== NO_ENTRY && i > 0; entry = this.prev(entry)) log[--i] = this.change(entry);
    return i === 0 ? log : log.slice(i);
  }

  private change(entry: number): StateChange {
    const chunk = this.chunks[entry >>> CHUNK_BITS] as Chunk;
    const i = entry & MASK;
    return { state: TASK_STATES[(chunk.code[i] as number) & STATE_MASK] as TaskState, at: chunk.at[i] as number, worker: this.worker(entry), note: this.note(entry) };
  }

  /** The id of `text`, interned now if need be; NO_ENTRY for one kept as it is. */
  private word(text: string): number {
    const id = this.wordIds.get(text);
    if (id !== undefined) return id;
    if (text.length > MAX_WORD_CHARS || this.words.length >= MAX_WORDS) return NO_ENTRY;
    this.wordIds.set(text, this.words.length);
    this.words.push(text);
    return this.words.length - 1;
  }

  private setPrev(entry: number, prev: number): void {
    (this.chunks[entry >>> CHUNK_BITS] as Chunk).prev[entry & MASK] = prev;
  }

  private allocate(): number {
    if (this.free !== NO_ENTRY) {
      const entry = this.free;
      this.free = this.prev(entry);
      this.freeCount--;
      return entry;
    }
    if (this.used === this.capacity) {
      const first = this.chunks[0];
      if (first !== undefined && this.capacity < CHUNK) {
        this.capacity *= 2;
        this.chunks[0] = { at: grown(first.at, new Float64Array(this.capacity)), code: grown(first.code, new Int32Array(this.capacity)), note: grown(first.note, new Int32Array(this.capacity)), prev: grown(first.prev, new Int32Array(this.capacity)) };
      } else {
        const size = first === undefined ? FIRST_CHUNK : CHUNK;
        this.chunks.push({ at: new Float64Array(size), code: new Int32Array(size), note: new Int32Array(size), prev: new Int32Array(size) });
        this.capacity += size;
      }
    }
    return this.used++;
  }

  private release(entry: number): void {
    const chunk = this.chunks[entry >>> CHUNK_BITS] as Chunk;
    if (chunk.note[entry & MASK] === NO_ENTRY) this.longNotes.delete(entry);
    if ((chunk.code[entry & MASK] as number) >>> STATE_BITS === LONG_WORKER) this.longWorkers.delete(entry);
    chunk.prev[entry & MASK] = this.free;
    this.free = entry;
    this.freeCount++;
  }
}

