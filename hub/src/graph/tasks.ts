import type { FileRef, Param, ParamFile, TaskState } from '../../../proto/src/types.js';
import { TASK_STATES } from '../../../proto/src/types.js';
import { EMPTY_HANDLE } from './arena.js';
import { grown, nextCapacity } from './grow.js';
import { NO_ENTRY } from './statelog.js';

/**
 * A task inside the graph: its index in the TaskTable's columns. Ids of removed tasks are handed
 * out again, but only once nothing holds them any more (see TaskTable.retire and Graph.reclaim).
 */
export type TaskId = number;

/**
 * The fields of a spec beyond its name, deps, pool, priority and payload. Tasks with the same
 * scalars and no params, files or outputs share one (most tasks: one for the whole graph).
 */
export interface SpecMore {
  readonly maxAttempts: number;
  readonly leaseMs: number;
  readonly params: Param[];
  readonly inputs: FileRef[];
  readonly outputs: string[];
  readonly paramFiles: ParamFile[];
  readonly barrier: boolean;
  readonly afterEnded: boolean;
}

/** Shared by every task without dependencies, and by ids not in use. */
export const NO_DEPS: string[] = [];
/** Shared by every task without output files. */
export const NO_OUTPUTS: FileRef[] = [];
const NO_MORE: SpecMore = { maxAttempts: 1, leaseMs: 0, params: [], inputs: [], outputs: [], paramFiles: [], barrier: false, afterEnded: false };

/** bits: the state's index in TASK_STATES (below STATE_MASK), then one bit per flag. */
const STATE_MASK = 7;
/** Sitting in its pool's ready heap. */
export const QUEUED = 8;
/** Sitting in the graph's heap of every ready task (what a steal of every pool takes from). */
export const QUEUED_ALL = 16;
/** Has an entry in the lease heap (one at most: a renewal moves the deadline, not the entry). */
export const LEASE_QUEUED = 32;
/** Removed from the graph: its id waits to be reclaimed (see TaskTable.retire). */
export const RETIRED = 64;
/**
 * The worker of its latest lease may still complete it (a record's `holder`: see Graph.refuse).
 * A holder is always that worker, so a bit stands for it, not a string a task.
 */
export const HELD = 128;
const STATE_INDEX = Object.fromEntries(TASK_STATES.map((state, i) => [state, i])) as Record<TaskState, number>;
const FIRST_CAPACITY = 64;
/** Dependency names a chunk holds (a task with more gets a chunk of its own), and the most chunks: an offset and a chunk in an int32. */
const DEP_BITS = 20;
const DEP_CHUNK = 1 << DEP_BITS;
const DEP_MASK = DEP_CHUNK - 1;
const MAX_DEP_CHUNKS = 2_047;

/**
 * Every task's fields in columns indexed by its id: numbers in typed arrays, strings and shared
 * objects in plain arrays, the fields few tasks have in maps. A task costs about 90 bytes here,
 * where an object of its own cost 176 (Node's V8 keeps every field in 8 bytes) and an array of
 * its dependency names 48 more, each an object the collector walks. Pure memory, no I/O; the
 * graph keeps the meaning of every field.
 */
export class TaskTable {
  // Strings and shared objects, one slot a task.
  readonly name: string[] = [];
  /** The pool's own name string (PoolQueue.name), one for all its tasks. */
  readonly pool: string[] = [];
  /** The rest of its spec: shared by the tasks that have the same (see Graph.moreOf). */
  readonly more: SpecMore[] = [];
  /** Its latest lease's worker ('' never leased). */
  readonly worker: string[] = [];
  // Numbers. Replaced by longer arrays as the table grows: read them through the table, never keep one.
  /** Its state (its index in TASK_STATES) and the flags (QUEUED, QUEUED_ALL, LEASE_QUEUED, RETIRED, HELD). */
  bits = new Uint8Array(0);
  attempts = new Int32Array(0);
  /** Its result and payload in the graph's ByteArena (EMPTY_HANDLE: none). */
  result = new Int32Array(0);
  payload = new Int32Array(0);
  /** Its state log, in the graph's StateLogs: the latest entry, and how many there are. */
  logHead = new Int32Array(0);
  logLength = new Int32Array(0);
  /** Dependencies not done yet, the ones that do not exist yet included. */
  pendingDeps = new Int32Array(0);
  /** Dependencies that do not exist yet. */
  missingDeps = new Int32Array(0);
  priority = new Int32Array(0);
  /** Its place in creation order (kept by a replace); a double: a long-lived hub creates more than 2^31 tasks. */
  seq = new Float64Array(0);
  /** How many dependencies it has (their names: dep, depsOf). */
  depCount = new Int32Array(0);
  /** Where its dependencies' names start: chunk * DEP_CHUNK + offset in depChunks. */
  private depAt = new Int32Array(0);
  /**
   * Every task's dependency names, a task's side by side: one slot a name where an array a task
   * cost 48 bytes more. Each that exists is that task's own name string (see Graph.link).
   */
  private depChunks: string[][] = [];
  /** Slots of tasks removed or replaced since the last compaction. */
  private depGarbage = 0;
  private depSlots = 0;
  /** Running: when its lease ends; 0 otherwise. */
  leaseDeadline = new Float64Array(0);
  // Fields few tasks have.
  /** Ready after a failure: not handed out before this time. */
  private readonly notBefores = new Map<TaskId, number>();
  /** Failed, cancelled, or ready again after a failure: why. */
  private readonly lastErrors = new Map<TaskId, string>();
  /** Done: the output files its completion named. */
  private readonly outputFiles = new Map<TaskId, FileRef[]>();
  private capacity = 0;
  /** Ids handed out so far (in use, retired or free). */
  private used = 0;
  /** Ids of removed tasks that nothing holds any more: handed out again first. */
  private free: TaskId[] = [];
  /** Ids of removed tasks that heaps may still hold (see Graph.reclaim). */
  private retiredIds: TaskId[] = [];

  /** A new task's id, every field empty but those given. */
  add(name: string, deps: readonly string[], pool: string, priority: number, payload: number, more: SpecMore, seq: number): TaskId {
    const id = this.free.pop() ?? this.used++;
    if (id >= this.capacity) this.grow();
    if (id === this.name.length) {
      this.name.push(name);
      this.pool.push(pool);
      this.more.push(more);
      this.worker.push('');
    } else {
      this.name[id] = name;
      this.pool[id] = pool;
      this.more[id] = more;
      this.worker[id] = '';
    }
    this.bits[id] = 0;
    this.attempts[id] = 0;
    this.result[id] = EMPTY_HANDLE;
    this.payload[id] = payload;
    this.logHead[id] = NO_ENTRY;
    this.logLength[id] = 0;
    this.pendingDeps[id] = 0;
    this.missingDeps[id] = 0;
    this.priority[id] = priority;
    this.seq[id] = seq;
    this.leaseDeadline[id] = 0;
    this.placeDeps(id, deps);
    return id;
  }

  /**
   * `id` leaves the graph: its strings and arrays are let go, its state becomes `state` (what a
   * heap entry still holding it finds: never ready nor running), and it waits in `retired` until
   * `reclaim` is told that nothing holds it any more.
   */
  retire(id: TaskId, state: TaskState): void {
    this.name[id] = '';
    this.depGarbage += this.depCount[id] as number;
    this.depCount[id] = 0;
    this.more[id] = NO_MORE;
    this.worker[id] = '';
    this.bits[id] = STATE_INDEX[state] | RETIRED;
    this.leaseDeadline[id] = 0;
    this.notBefores.delete(id);
    this.lastErrors.delete(id);
    this.outputFiles.delete(id);
    this.retiredIds.push(id);
  }

  /** Ids retired and not yet reclaimed. */
  get retired(): readonly TaskId[] {
    return this.retiredIds;
  }

  /**
   * The retired ids are held nowhere any more (the graph has dropped every heap entry and list
   * item of one): they may be handed out again.
   */
  reclaim(): void {
    for (const id of this.retiredIds) this.free.push(id);
    this.retiredIds = [];
  }

  /** Ids handed out so far, in use or not (a restore's are 0 to this, one a record, none removed). */
  get idsUsed(): number {
    return this.used;
  }

  state(id: TaskId): TaskState {
    return TASK_STATES[(this.bits[id] as number) & STATE_MASK] as TaskState;
  }
  setState(id: TaskId, state: TaskState): void {
    this.bits[id] = ((this.bits[id] as number) & ~STATE_MASK) | STATE_INDEX[state];
  }
  /** One of the flags (QUEUED, QUEUED_ALL, LEASE_QUEUED, RETIRED, HELD). */
  flag(id: TaskId, flag: number): boolean {
    return ((this.bits[id] as number) & flag) !== 0;
  }
  setFlag(id: TaskId, flag: number, on: boolean): void {
    this.bits[id] = on ? (this.bits[id] as number) | flag : (this.bits[id] as number) & ~flag;
  }

  notBefore(id: TaskId): number {
    return this.notBefores.get(id) ?? 0;
  }
  setNotBefore(id: TaskId, at: number): void {
    if (at === 0) this.notBefores.delete(id);
    else this.notBefores.set(id, at);
  }
  lastError(id: TaskId): string {
    return this.lastErrors.get(id) ?? '';
  }
  setLastError(id: TaskId, error: string): void {
    if (error === '') this.lastErrors.delete(id);
    else this.lastErrors.set(id, error);
  }
  outputs(id: TaskId): FileRef[] {
    return this.outputFiles.get(id) ?? NO_OUTPUTS;
  }
  setOutputs(id: TaskId, files: FileRef[]): void {
    if (files.length === 0) this.outputFiles.delete(id);
    else this.outputFiles.set(id, files);
  }

  /** Dependency names held, those of removed tasks not yet compacted away included (for tests). */
  get depSlotsHeld(): number {
    return this.depSlots;
  }

  /** The most dependency names a graph holds (far past what memory holds: 2,047 chunks of 1M). */
  get maxDepNames(): number {
    return MAX_DEP_CHUNKS * DEP_CHUNK;
  }

  /**
   * Whether tasks with these numbers of dependencies can be added (placeDeps never throws then):
   * a chunk is left only for a task that does not fit in it, so one left for a task of half a
   * chunk or less is over half full, and a larger task takes at most one new chunk.
   */
  depRoom(counts: readonly number[]): boolean {
    const half = DEP_CHUNK / 2;
    let chunks = 1;
    let small = 0;
    for (const count of counts) {
      if (count > half) chunks++;
      else small += count;
    }
    chunks += Math.ceil(small / half);
    return this.depChunks.length + chunks <= MAX_DEP_CHUNKS;
  }

  /** Its `i`th dependency's name. */
  dep(id: TaskId, i: number): string {
    const at = this.depAt[id] as number;
    return (this.depChunks[at >>> DEP_BITS] as string[])[(at & DEP_MASK) + i] as string;
  }

  /** Names its `i`th dependency `name` (the same name: Graph.link puts the dependency's own string in). */
  setDep(id: TaskId, i: number, name: string): void {
    const at = this.depAt[id] as number;
    (this.depChunks[at >>> DEP_BITS] as string[])[(at & DEP_MASK) + i] = name;
  }

  /** Its dependencies' names, as an array of their own. */
  depsOf(id: TaskId): string[] {
    const count = this.depCount[id] as number;
    if (count === 0) return NO_DEPS;
    const at = this.depAt[id] as number;
    const offset = at & DEP_MASK;
    return (this.depChunks[at >>> DEP_BITS] as string[]).slice(offset, offset + count);
  }

  /**
   * Copies the names of tasks in use into fresh chunks once removed tasks' names are over half of
   * them (O(tasks): called where the graph already pays that, see Graph.reclaim).
   */
  compactDeps(): void {
    if (this.depGarbage < DEP_CHUNK || this.depGarbage < this.depSlots - this.depGarbage) return;
    const old = this.depChunks;
    const oldAt = this.depAt;
    this.depChunks = [];
    this.depGarbage = 0;
    this.depSlots = 0;
    for (let id = 0; id < this.used; id++) {
      const count = this.depCount[id] as number;
      if (count === 0) continue;
      const at = oldAt[id] as number;
      const offset = at & DEP_MASK;
      this.placeDeps(id, (old[at >>> DEP_BITS] as string[]).slice(offset, offset + count));
    }
  }

  /** Writes `deps` at the end of the last chunk (or a new one) for `id`. */
  private placeDeps(id: TaskId, deps: readonly string[]): void {
    this.depCount[id] = deps.length;
    if (deps.length === 0) return;
    let chunk = this.depChunks[this.depChunks.length - 1];
    if (chunk === undefined || chunk.length + deps.length > DEP_CHUNK) {
      // Graph.create and replace ask depRoom first; a restore holds what a graph held.
      if (this.depChunks.length === MAX_DEP_CHUNKS) throw new Error(`over ${MAX_DEP_CHUNKS * DEP_CHUNK} dependency names in one graph`);
      chunk = [];
      this.depChunks.push(chunk);
    }
    this.depAt[id] = ((this.depChunks.length - 1) << DEP_BITS) | chunk.length;
    // One at a time: a spread of 10,000 names would pass them all as arguments.
    for (let i = 0; i < deps.length; i++) chunk.push(deps[i] as string);
    this.depSlots += deps.length;
  }

  /** Room for `count` ids without growing (a restore that knows how many come). */
  reserve(count: number): void {
    if (count > this.capacity) this.grow(count);
  }

  /** Room for more ids (the numeric columns copied; the plain arrays grow by themselves). */
  private grow(capacity = nextCapacity(this.capacity, FIRST_CAPACITY)): void {
    this.bits = grown(this.bits, new Uint8Array(capacity));
    this.attempts = grown(this.attempts, new Int32Array(capacity));
    this.result = grown(this.result, new Int32Array(capacity));
    this.payload = grown(this.payload, new Int32Array(capacity));
    this.logHead = grown(this.logHead, new Int32Array(capacity));
    this.logLength = grown(this.logLength, new Int32Array(capacity));
    this.pendingDeps = grown(this.pendingDeps, new Int32Array(capacity));
    this.missingDeps = grown(this.missingDeps, new Int32Array(capacity));
    this.priority = grown(this.priority, new Int32Array(capacity));
    this.seq = grown(this.seq, new Float64Array(capacity));
    this.depCount = grown(this.depCount, new Int32Array(capacity));
    this.depAt = grown(this.depAt, new Int32Array(capacity));
    this.leaseDeadline = grown(this.leaseDeadline, new Float64Array(capacity));
    this.capacity = capacity;
  }
}
