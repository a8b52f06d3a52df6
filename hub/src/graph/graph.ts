import { DagworkError } from '../../../proto/src/errors.js';
import { Heap } from './heap.js';
import { checkBatch, graphOptions, type GraphOptions } from './options.js';
import { RateWindow } from './rate.js';
import { NO_ENTRY, StateLogs } from './statelog.js';
import { ByteArena, EMPTY_HANDLE } from './arena.js';
import { graphView, type ViewSource } from './view.js';
import { IdLists, NO_EDGE } from './edges.js';
import { NameIndex } from './names.js';
import { HELD, LEASE_QUEUED, NO_DEPS, NO_OUTPUTS, QUEUED, QUEUED_ALL, RETIRED, TaskTable, type SpecMore, type TaskId } from './tasks.js';
import {
  MAX_POOL_RUNNING,
  emptyCounts,
  TASK_STATES,
  type CreateResult,
  type ListQuery,
  type ListResult,
  type LookupResult,
  type TaskSummary,
  type WorkerStatus,
  type Completion,
  type FailResult,
  type FileRef,
  type Param,
  type ParamFile,
  type GraphStatus,
  type PoolDeleteResult,
  type PoolInfo,
  type PoolListResult,
  type PoolSetArgs,
  type PoolSettings,
  type LeasedTask,
  type StateChange,
  type StateCounts,
  type StealResult,
  type TaskOutcome,
  type TaskRecord,
  type TaskResult,
  type TaskSpec,
  type TaskSpecInput,
  type TaskState,
  type RerunQuery,
  type RerunResult,
  type DeleteResult,
  type ReplaceResult,
  type GraphView,
  type GraphViewQuery,
} from '../../../proto/src/types.js';
import { checkName, checkWorker, DEFAULT_POOL, dependencyOrder, normalizeSpec, sameSpec } from '../../../proto/src/spec.js';

const EMPTY = new Uint8Array(0);
const NO_PARAMS: Param[] = [];
const NO_NAMES: string[] = [];
const NO_PARAM_FILES: ParamFile[] = [];
const NO_TICKETS: VerifyTicket[] = [];
/** Result bytes past which a list page with results ends (it always holds one task at least). */
const LIST_RESULT_BYTES = 16 << 20;
/** Bytes of dependency names past which a list page with deps ends (it always holds one task at least). */
const LIST_DEPS_BYTES = 16 << 20;
/** Longest failure reason kept, in characters; the rest is cut. */
const MAX_REASON_CHARS = 16_384;
/** A worker holding no lease and unseen for this long is forgotten (ms). */
const WORKER_IDLE_MS = 3600_000;
/** Most workers the table keeps; past it the longest-idle ones without leases are forgotten first. */
const MAX_WORKERS = 100_000;
/** Most workers a status lists (those holding leases first, then the most recently seen). */
const MAX_STATUS_WORKERS = 1_000;
/** Tasks a list page holds unless it says; the most it may ask for; tasks one page looks at. */
const LIST_DEFAULT = 100;
const LIST_MAX = 1_000;
const LIST_SCAN = 100_000;
/** Characters of a last error a list shows. */
const LIST_ERROR_CHARS = 1_000;
/** Most pools a status lists. */
const MAX_STATUS_POOLS = 1_000;
/** Missing dependencies a create names (it counts them all). */
const MAX_MISSING_LISTED = 100;
/** Missing names a status shows as examples. */
const MAX_MISSING_EXAMPLES = 10;
/** Most pools a pool list holds (the first by name); `poolsTotal` counts them all. */
const MAX_LISTED_POOLS = 1_000;

/** Most distinct shared SpecMore objects kept; past it a task with a new combination gets its own. */
const MAX_SHARED_MORE = 1_024;
/** Ids of replaced tasks kept from reuse before their heaps are swept (see Graph.reclaim). */
const RECLAIM_AFTER = 1_024;

/** Where a steal takes tasks from: the best ready one, and taking it. */
interface ReadySource {
  peek(): TaskId | undefined;
  take(): void;
}

/** A lease's log note; the common ones made once, not a string a lease. */
const ATTEMPT_NOTES = Array.from({ length: 16 }, (_, i) => `attempt ${i}`);
const attemptNote = (attempt: number): string => ATTEMPT_NOTES[attempt] ?? `attempt ${attempt}`;

/** Higher priority first, then creation order. */
function handsOutBefore(tasks: TaskTable, a: TaskId, b: TaskId): boolean {
  const pa = tasks.priority[a] as number;
  const pb = tasks.priority[b] as number;
  return pa > pb || (pa === pb && (tasks.seq[a] as number) < (tasks.seq[b] as number));
}

class PoolQueue {
  /** `name`: the one string of its name that its tasks hold; `tasks`: the graph's. */
  constructor(
    readonly name: string,
    private readonly tasks: TaskTable,
  ) {}

  readonly ready = new Heap<TaskId>((a, b) => handsOutBefore(this.tasks, a, b));
  readonly counts = emptyCounts();
  /** Settings (pool_set): at most this many running at once, 0 no limit; nothing handed out while paused. */
  maxRunning = 0;
  paused = false;
  /** Shell commands the hub runs on each new task, and on each completion (see PoolSetRequest); '' none. */
  jobVerifier = '';
  resultVerifier = '';
  /**
   * Completions per second; made at the pool's first completion (about 1 KiB: a pool that never
   * completes a task costs nothing).
   */
  rate: RateWindow | undefined;

  /**
   * It has settings that can hold it back. Its ready tasks are then kept out of the graph's heap
   * of every ready task (see Graph.everyPool), so that a steal never scans them while it waits.
   */
  get throttled(): boolean {
    return this.paused || this.maxRunning > 0;
  }

  /** It has settings of any kind: what keeps a pool without tasks listed and stored. */
  get hasSettings(): boolean {
    return this.throttled || this.jobVerifier !== '' || this.resultVerifier !== '';
  }

  settings(): PoolSettings {
    return { maxRunning: this.maxRunning, paused: this.paused, jobVerifier: this.jobVerifier, resultVerifier: this.resultVerifier };
  }

  /** Its settings hold it back now: paused, or as many running as it may have. */
  held(): boolean {
    return this.paused || (this.maxRunning > 0 && this.counts.running >= this.maxRunning);
  }

  /** The next task to hand out, dropping entries that stopped being ready while queued. */
  head(): TaskId | undefined {
    let task = this.ready.peek();
    while (task !== undefined && this.tasks.state(task) !== 'ready') {
      this.ready.pop();
      this.tasks.setFlag(task, QUEUED, false);
      task = this.ready.peek();
    }
    return task;
  }

  /** Tasks of this pool, in any state. */
  size(): number {
    let n = 0;
    for (const state of TASK_STATES) n += this.counts[state];
    return n;
  }

  /**
   * Whether a steal of this pool may still get a task without new tasks being created: one is
   * ready or running (or verifying: a rejection makes it ready again), or one is waiting while
   * some task anywhere is ready, running or verifying (its dependency may complete). `busy`: the
   * whole graph has a task ready, running or verifying.
   */
  mayStillHaveWork(busy: boolean): boolean {
    return this.counts.ready + this.counts.running + this.counts.verifying > 0 || (busy && this.counts.waiting > 0);
  }
}

interface WorkerStats {
  /** Said it left (worker exit) and not seen since. */
  exited: boolean;
  lastSeen: number;
  done: number;
  failed: number;
  /** Runs that ended (done or failed), their time together and the longest (ms): lease to end. */
  runs: number;
  busyMs: number;
  maxRunMs: number;
  leases: Set<TaskId>;
}

/** Notes of a run given back without using an attempt: not a failure of its worker. */
const GIVEN_BACK = new Set(['released', 'worker exited', 'the steal reply could not be delivered']);
/** Most names of the tasks a worker holds that a status lists for it. */
const LISTED_LEASES = 10;

interface Timed {
  task: TaskId;
  at: number;
}
const earlier = (a: Timed, b: Timed): boolean => a.at < b.at;
/** Entries of ended leases the lease heap may hold beyond twice the running tasks before it drops them. */
const STALE_LEASES = 1_024;

/** A graph restored one stored record at a time (Graph.restoring). */
export interface GraphRestore {
  /** About `tasks` records follow (a hint, before the first `add`): room is made for them at once. */
  expect(tasks: number): void;
  add(record: TaskRecord): void;
  finish(now: number): Graph;
}

/**
 * Whether the hub holds the file of this SHA-256 and size, whole. The graph asks it of a create's
 * inputs and a completion's outputs; the hub's file store answers (from memory: the graph stays
 * pure and synchronous). Without one, every file counts as held.
 */
export type FileHeld = (sha256: string, size: number) => boolean;

/** A verification to run: the task, and the token that keeps a stale verdict from counting (Graph.verified). */
export interface VerifyTicket {
  name: string;
  token: number;
}
/** What a result verifier is given (Graph.verification), and the pool's result verifier now. */
export interface ResultToVerify {
  spec: TaskSpec;
  attempt: number;
  worker: string;
  result: Uint8Array;
  outputs: readonly FileRef[];
  verifier: string;
}
/** A task of a create that its pool's job verifier must pass (Graph.jobChecks). */
export interface JobCheck {
  spec: TaskSpec;
  verifier: string;
}
/** Longest verifier command, in bytes. */
const MAX_VERIFIER_BYTES = 4096;
const everyFileHeld: FileHeld = () => true;

/**
 * Told of the transitions that metrics count, as they happen (times in ms). Called on the hot
 * path: an implementation must be cheap and must not throw.
 */
export interface GraphObserver {
  /** `n` tasks of `pool` were created. */
  created(pool: string, n: number): void;
  /** A task was leased, `waitedMs` after it last became ready (a backoff after a failure included). */
  leased(pool: string, waitedMs: number): void;
  /** A task became done by a worker's completion (verified, when its pool has a result verifier), `ranMs` after its lease. */
  completed(pool: string, ranMs: number): void;
  /** An attempt failed: the worker's fail, a rejected result, or an expired lease. */
  attemptFailed(pool: string): void;
  /** A task became FAILED (permanent failure or attempts used up). */
  failed(pool: string): void;
  /** A task was put back to work afresh by retry or rerun (a rerun's descendants each count). */
  retried(pool: string): void;
  /** A lease expired (its attempt failed too: attemptFailed is told as well). */
  leaseExpired(pool: string): void;
}

const noop = (): void => undefined;
/** The observer of a graph nobody watches. */
export const NO_OBSERVER: GraphObserver = { created: noop, leased: noop, completed: noop, attemptFailed: noop, failed: noop, retried: noop, leaseExpired: noop };

/**
 * The task graph and its state machine: pure, with no I/O and no clock of its own. Every operation
 * takes the time `now` (ms since the epoch), first applies what that time implies (expired leases,
 * ended backoffs), then changes tasks. Changed tasks are collected for the store: `takeDirty()`.
 * Request-level problems throw DagworkError before anything changes.
 */
export class Graph {
  readonly options: GraphOptions;
  /** Every task's fields (see TaskTable). */
  private readonly tasks = new TaskTable();
  /** Every task's dependents (the tasks that name it as a dependency), by id. */
  private readonly dependents = new IdLists();
  /** Every task's id by its name. */
  private readonly byName = new NameIndex((task) => this.tasks.name[task] as string);
  /** Every task in creation order (by seq): what `list` pages through. */
  private readonly order: TaskId[] = [];
  /** Names that existing tasks depend on but that do not exist yet, with those tasks. */
  private readonly missing = new Map<string, TaskId[]>();
  private readonly pools = new Map<string, PoolQueue>();
  /** Pools whose settings can hold them back (PoolQueue.throttled): few, an operator's choice. */
  private readonly throttled = new Set<PoolQueue>();
  /** Pools whose settings changed since `takeDirtyPools`. */
  private dirtyPools = new Set<string>();
  /** Tasks removed (pool delete, delete) since `takeDeleted`, for the store to forget. */
  private deleted = new Set<string>();
  /** Tasks created or replaced since `takeNewSpecs`: the store writes their spec, not only their state. */
  private newSpecs = new Set<string>();
  /** Every ready task of every pool, best first: a steal of all pools costs O(log n), not O(pools). */
  private readonly allReady = new Heap<TaskId>((a, b) => handsOutBefore(this.tasks, a, b));
  private readonly counts = emptyCounts();
  private readonly failedTasks = new Set<TaskId>();
  private readonly backoffs = new Heap<Timed>(earlier);
  private readonly leases = new Heap<Timed>(earlier);
  private readonly workers = new Map<string, WorkerStats>();
  private readonly doneRate = new RateWindow();
  /** Completions and failed attempts since this graph was made; they only grow (the hub's throughput history counts them). */
  readonly ended = { done: 0, failed: 0 };
  private dirty = new Set<TaskId>();
  /** Every task's state log. */
  private readonly logs = new StateLogs();
  /** Every task's payload and result. */
  private readonly blobs = new ByteArena();
  /** Shared SpecMore objects, by their scalars (see moreOf). */
  private readonly sharedMore = new Map<string, SpecMore>();
  /** The shared SpecMore moreOf gave last. */
  private lastMore: SpecMore | undefined;
  /** Pools that got a ready task or ran out of work since `takeWoken` (parked steals look at these). */
  private woken = new Set<string>();
  /** Every pool ran out of work (nothing ready or running anywhere) since `takeWoken`. */
  private wokenAll = false;
  /** Tasks with at least one dependency that does not exist. */
  private onMissing = 0;
  private nextSeq = 1;
  /**
   * Tasks VERIFYING, each with the token of its verification: a verdict counts only for the
   * verification it was made for (the task may have been cancelled, rerun or replaced meanwhile).
   */
  private readonly verifying = new Map<TaskId, number>();
  private verifyTokens = 0;
  /** Tasks that became VERIFYING since `takeToVerify` (at a restore: every one). */
  private toVerify: TaskId[] = [];
  /** Pools with a job verifier: while there is none, a create costs nothing more. */
  private readonly jobVerified = new Set<PoolQueue>();
  /** Told of the transitions metrics count; the hub sets it. */
  observer: GraphObserver = NO_OBSERVER;

  /** `held`: see FileHeld. */
  constructor(
    options: Partial<GraphOptions> = {},
    private readonly held: FileHeld = everyFileHeld,
  ) {
    this.options = graphOptions(options);
  }

  /**
   * A graph holding `records` as they were stored, at time `now`. Tasks that were running keep
   * their leases, each renewed to its full length from `now`: the hub was away, so their workers
   * could not heartbeat (and renewals are not stored).
   */
  static restore(
    records: Iterable<TaskRecord>,
    now: number,
    options: Partial<GraphOptions> = {},
    held: FileHeld = everyFileHeld,
    pools: Iterable<[string, PoolSettings]> = [],
  ): Graph {
    const restoring = Graph.restoring(options, held, pools);
    for (const record of records) restoring.add(record);
    return restoring.finish(now);
  }

  /**
   * `restore` one record at a time, for a store that reads them one at a time (TaskStore.loadEach):
   * `add` each record, then `finish` once, at time `now`, for the graph: the same graph as `restore`
   * of the same records in any order at `now` (running tasks' leases are renewed from `now`, when
   * the reading is over). Nothing keeps a record once `add` returns (its spec's arrays excepted).
   */
  static restoring(options: Partial<GraphOptions> = {}, held: FileHeld = everyFileHeld, pools: Iterable<[string, PoolSettings]> = []): GraphRestore {
    const graph = new Graph(options, held);
    // Settings first: a throttled pool's ready tasks stay out of the heap of every ready task.
    for (const [pool, settings] of pools) graph.applySettings(pool, settings);
    let finished = false;
    return {
      expect(tasks: number): void {
        // A count from a file: never room past the graph's own limit, whatever it says.
        const room = Math.min(Math.max(0, Math.floor(tasks)), graph.options.maxTasks);
        if (finished || !(room > 0)) return;
        graph.tasks.reserve(room);
      },
      add(record: TaskRecord): void {
        if (finished) throw new Error('a record added to a restored graph after finish');
        graph.restoreTask(record);
      },
      finish(now: number): Graph {
        if (finished) throw new Error('a restored graph finished twice');
        finished = true;
        graph.finishRestore(now);
        return graph;
      },
    };
  }

  /** The end of a restore (see restoring): links, leases, verifications and queues, in creation order. */
  private finishRestore(now: number): void {
    const tasks = this.tasks;
    // A restore hands ids out from 0, one a record, and removes none; a store holds one record a name.
    this.byName.addRange(0, tasks.idsUsed);
    const order = this.order;
    let sorted = true;
    for (let task = 0; task < tasks.idsUsed; task++) {
      if (task > 0 && (tasks.seq[task] as number) < (tasks.seq[task - 1] as number)) sorted = false;
      order.push(task);
    }
    // Records in creation order (a snapshot's) need no sort; LevelDB's come in the names' order.
    if (!sorted) order.sort((a, b) => (tasks.seq[a] as number) - (tasks.seq[b] as number));
    // In creation order, whatever order the records came in: the same graph from any store.
    for (const task of this.order) {
      const state = tasks.state(task);
      if (state === 'running') {
        tasks.leaseDeadline[task] = Math.max(tasks.leaseDeadline[task] as number, now + (tasks.more[task] as SpecMore).leaseMs);
        this.queueLease(task);
        this.stats(tasks.worker[task] as string, 0).leases.add(task);
      } else if (state === 'verifying') {
        // Its verification was cut off by the restart (or never started): it runs again.
        this.startVerifying(task);
      }
    }
    for (const task of this.order) this.link(task);
    const entries: number[] = [];
    for (const task of this.order) this.countRuns(task, entries);
    // Queued in creation order too: each push then sifts up little, where records in the
    // names' order would make each one climb the heap.
    for (const task of this.order) if (tasks.state(task) === 'ready' && tasks.notBefore(task) === 0) this.enqueue(task);
  }

  /**
   * One stored task into a graph being restored (restoring); `finish` connects them all, renews
   * running tasks' leases and queues ready ones.
   */
  private restoreTask(record: TaskRecord): void {
    const tasks = this.tasks;
    const task = this.newTask(record.spec, record.seq);
    tasks.setState(task, record.state);
    tasks.attempts[task] = record.attempts;
    tasks.worker[task] = record.worker;
    // The worker whose lease expired may still complete it: by construction its latest lease's.
    tasks.setFlag(task, HELD, record.holder !== '' && record.holder === record.worker);
    tasks.leaseDeadline[task] = record.leaseDeadline;
    // A new id has none of these: no map is touched for the million tasks that have none either.
    if (record.notBefore !== 0) tasks.setNotBefore(task, record.notBefore);
    if (record.outputs.length > 0) tasks.setOutputs(task, record.outputs);
    if (record.lastError !== '') tasks.setLastError(task, record.lastError);
    tasks.result[task] = this.blobs.put(record.result);
    // As stored, however long (appendLog trims it at its next change).
    let head = NO_ENTRY;
    for (const change of record.log) head = this.logs.append(head, change);
    tasks.logHead[task] = head;
    tasks.logLength[task] = record.log.length;
    this.nextSeq = Math.max(this.nextSeq, record.seq + 1);
    this.countIn(task);
    // Ready without a backoff: queued by `finish`, in creation order.
    if (record.state === 'ready' && record.notBefore > 0) this.backoffs.push({ task, at: record.notBefore });
  }

  get size(): number {
    return this.byName.size;
  }

  /** Task ids handed out so far, in use or not (for tests: removed tasks' ids are handed out again). */
  get taskIds(): number {
    return this.tasks.idsUsed;
  }

  /**
   * Create a batch of tasks, all or nothing. A task that exists with an identical definition is
   * left alone; a different definition under an existing name (CONFLICT), a cycle (CYCLE) or a
   * bad field throws, naming the task, and nothing changes; so does an input file the hub does
   * not hold (UNKNOWN_FILE). A barrier whose dependencies are all done is done at once, releasing
   * its dependents.
   * Writes: the new tasks, tasks blocked because a new task starts out blocked, and tasks done or
   * made ready by a barrier done at once.
   */
  create(inputs: readonly TaskSpecInput[], now: number): CreateResult {
    checkBatch(inputs.length, this.options, 'create');
    if (this.byName.size + inputs.length > this.options.maxTasks) {
      const fresh = inputs.filter((input) => !this.byName.has(input.name)).length;
      if (this.byName.size + fresh > this.options.maxTasks) {
        throw new DagworkError('TOO_LARGE', `the graph would hold ${this.byName.size + fresh} tasks; the limit is ${this.options.maxTasks}`);
      }
    }
    const fresh = new Map<string, TaskSpec>();
    // Dependencies not among the new tasks before theirs: when none is a new task either, the
    // batch is in an order already (batchOrder).
    const forward: string[] = [];
    let unchanged = 0;
    for (const input of inputs) {
      const spec = normalizeSpec(input, this.options);
      const task = this.byName.get(spec.name);
      const existing = task === undefined ? fresh.get(spec.name) : this.specOf(task);
      if (existing === undefined) {
        for (const dep of spec.deps) if (!fresh.has(dep)) forward.push(dep);
        fresh.set(spec.name, spec);
      } else if (sameSpec(existing, spec)) {
        unchanged++;
      } else {
        throw new DagworkError('CONFLICT', `task "${spec.name}" already exists with a different definition`, { task: spec.name });
      }
    }
    for (const spec of fresh.values()) {
      for (const file of spec.inputs) {
        if (!this.held(file.sha256, file.size)) {
          throw new DagworkError(
            'UNKNOWN_FILE',
            `task "${spec.name}" names the input "${file.name}" (sha256 ${file.sha256}, ${file.size} bytes), which the hub does not hold: upload it first (file_put)`,
            { task: spec.name },
          );
        }
      }
    }
    const order = this.batchOrder(fresh, forward.every((dep) => !fresh.has(dep)));
    this.checkDepRoom(fresh.values());
    this.advance(now);

    const added = order.map((name) => this.newTask(fresh.get(name) as TaskSpec, this.nextSeq++));
    for (const task of added) {
      this.byName.add(this.tasks.name[task] as string, task); // `fresh` holds no name the graph has
      this.order.push(task);
      this.deleted.delete(this.tasks.name[task] as string); // deleted with its pool earlier in this batch window: written anew
      this.newSpecs.add(this.tasks.name[task] as string);
    }
    for (const task of added) this.link(task);
    // `order` puts dependencies first, so a dependency's state is settled before its dependents'.
    // A barrier with every dependency done starts out waiting and is done once the batch is in.
    const barriersDone: TaskId[] = [];
    for (const task of added) {
      this.tasks.setState(task, this.stateFromDeps(task));
      if ((this.tasks.more[task] as SpecMore).barrier && this.tasks.state(task) === 'ready') {
        this.tasks.setState(task, 'waiting');
        barriersDone.push(task);
      }
      this.countIn(task);
      this.appendLog(task, { state: this.tasks.state(task), at: now, worker: '', note: this.tasks.state(task) === 'blocked' ? `created; ${this.blockedBy(task)}` : 'created' });
      if (this.tasks.state(task) === 'ready') this.enqueue(task);
    }
    // Tasks created earlier that waited for one of these names inherit its blocked state.
    for (const task of added) if (this.tasks.state(task) === 'blocked') this.blockDescendants(task, now);
    this.observeCreated(added);
    for (const task of barriersDone) if (this.tasks.state(task) === 'waiting' && (this.tasks.pendingDeps[task] as number) === 0) this.completeBarriers(task, now);
    const missing = new Set<string>();
    for (const task of added) {
      // Linked: a task counts its dependencies that do not exist, so most are not looked at here.
      if ((this.tasks.missingDeps[task] as number) === 0) continue;
      for (const dep of this.tasks.depsOf(task)) if (!this.byName.has(dep)) missing.add(dep);
    }
    const missingDeps: string[] = [];
    for (const name of missing) {
      if (missingDeps.length === MAX_MISSING_LISTED) break;
      missingDeps.push(name);
    }
    return { created: added.length, unchanged, missingDeps, missingDepsTotal: missing.size };
  }

  /**
   * Lease up to `n` ready tasks of `pools` (all pools when empty) to `worker`, highest priority
   * first, FIFO within a priority. Writes: each leased task (running, attempts + 1).
   */
  steal(worker: string, n: number, pools: readonly string[], now: number): StealResult {
    this.checkSteal(worker, n, pools);
    this.advance(now);
    this.stats(worker, now);
    const want = Math.max(n, 1);
    const source = pools.length === 0 ? this.everyPool() : this.somePools(pools);
    const tasks: LeasedTask[] = [];
    let bytes = 0;
    // The reply is bounded by bytes as well as by count; the first task always goes.
    for (let task = source.peek(); task !== undefined && tasks.length < want; task = source.peek()) {
      const size = this.leasedBytes(task);
      if (tasks.length > 0 && bytes + size > this.options.maxStealBytes) break;
      source.take();
      bytes += size;
      tasks.push(this.lease(task, worker, now));
    }
    const finished = tasks.length === 0 && this.isFinished(pools);
    return { tasks, finished, retryAfterMs: 0 };
  }

  /** Throws what `steal` would throw for these arguments (a complete checks its `next` first). */
  checkSteal(worker: string, n: number, pools: readonly string[]): void {
    checkWorker(worker);
    if (n > this.options.maxSteal) {
      throw new DagworkError('TOO_LARGE', `steal asks for ${n} tasks; the limit is ${this.options.maxSteal} per request`);
    }
    if (pools.length > this.options.maxPools) {
      throw new DagworkError('TOO_LARGE', `steal names ${pools.length} pools; the limit is ${this.options.maxPools}`);
    }
    for (const pool of pools) if (pool !== '') checkName(pool, this.options, 'pool');
  }

  /**
   * True when a steal of `pools` (all when empty) cannot get a task unless tasks are created: none
   * is ready or running there, and none waiting there can become ready (see PoolQueue.mayStillHaveWork).
   */
  isFinished(pools: readonly string[]): boolean {
    const busy = this.busy();
    // Every pool: with nothing ready or running anywhere, nothing waiting can become ready.
    if (pools.length === 0) return !busy;
    return !this.queuesOf(pools).some((queue) => queue.mayStillHaveWork(busy));
  }

  /**
   * The ready tasks of every pool, best first: the heap of every ready task of the pools without
   * settings, merged with the heads of the throttled pools (a pool paused or at its limit is
   * skipped without looking at its tasks). A steal costs O(log n + t log t), t throttled pools.
   */
  private everyPool(): ReadySource {
    const all = this.allReadySource();
    if (this.throttled.size === 0) return all;
    const some = this.poolHeads(this.throttled);
    const pick = (): ReadySource | undefined => {
      const a = all.peek();
      const b = some.peek();
      if (a === undefined) return b === undefined ? undefined : some;
      return b !== undefined && handsOutBefore(this.tasks, b, a) ? some : all;
    };
    return { peek: () => pick()?.peek(), take: () => pick()?.take() };
  }

  /** The heap of every ready task, dropping entries no longer ready or of a pool now throttled. */
  private allReadySource(): ReadySource {
    const heap = this.allReady;
    const peek = (): TaskId | undefined => {
      let task = heap.peek();
      while (task !== undefined && (this.tasks.state(task) !== 'ready' || this.pools.get(this.tasks.pool[task] as string)?.throttled === true)) {
        heap.pop();
        this.tasks.setFlag(task, QUEUED_ALL, false);
        task = heap.peek();
      }
      return task;
    };
    return {
      peek,
      take: () => {
        const task = heap.pop();
        if (task !== undefined) this.tasks.setFlag(task, QUEUED_ALL, false);
      },
    };
  }

  /** The ready tasks of `pools`, best first. */
  private somePools(pools: readonly string[]): ReadySource {
    return this.poolHeads(this.queuesOf(pools));
  }

  /**
   * The ready tasks of `queues`, best first: a heap of the pools by their best task. A pool its
   * settings hold back (paused, or at its limit once a task was leased) leaves the heap.
   */
  private poolHeads(queues: Iterable<PoolQueue>): ReadySource {
    const byHead = new Heap<PoolQueue>((a, b) => handsOutBefore(this.tasks, a.head() as TaskId, b.head() as TaskId));
    for (const queue of queues) if (!queue.held() && queue.head() !== undefined) byHead.push(queue);
    const top = (): PoolQueue | undefined => {
      let queue = byHead.peek();
      while (queue !== undefined && (queue.held() || queue.head() === undefined)) {
        byHead.pop();
        queue = byHead.peek();
      }
      return queue;
    };
    return {
      peek: () => top()?.head(),
      take: () => {
        const queue = top();
        if (queue === undefined) return;
        byHead.pop();
        const task = queue.ready.pop() as TaskId;
        this.tasks.setFlag(task, QUEUED, false);
        if (queue.head() !== undefined) byHead.push(queue);
      },
    };
  }

  /** Some task, in any pool, is ready or running. */
  private busy(): boolean {
    return this.counts.ready + this.counts.running + this.counts.verifying > 0;
  }

  /**
   * Mark tasks done with their results and release successors whose dependencies are all done.
   * Accepted: the worker's own lease, or its lease that expired while nobody else took the task
   * (see `refuse`). Answered per task: a result over the limit is refused alone, and so is a
   * completion whose output files are not exactly the task's declared outputs, each held by the
   * hub (MISSING_FILES).
   * Writes: each completed task and each successor made ready, unblocked or (a barrier) done.
   */
  complete(worker: string, completions: readonly Completion[], now: number): TaskResult[] {
    checkWorker(worker);
    checkBatch(completions.length, this.options, 'complete');
    this.advance(now);
    const stats = this.stats(worker, now);
    return completions.map(({ name, result, outputs }) => {
      const task = this.byName.get(name);
      const refusal = this.refuse(task, name, worker, true);
      if (refusal !== undefined || task === undefined) return refusal ?? notFound(name);
      if (result !== undefined && result.length > this.options.maxResultBytes) {
        return outcome(name, 'RESULT_TOO_LARGE', `result of ${result.length} bytes is over the limit of ${this.options.maxResultBytes}`);
      }
      const files = this.checkOutputs(task, outputs ?? NO_OUTPUTS);
      if (typeof files === 'string') return outcome(name, 'MISSING_FILES', files);
      const late = this.tasks.state(task) !== 'running';
      if (this.tasks.state(task) === 'running') this.dropLease(task);
      const wasFailed = this.tasks.state(task) === 'failed';
      this.tasks.setFlag(task, HELD, false);
      this.blobs.free(this.tasks.result[task] as number);
      this.tasks.result[task] = this.blobs.put(result ?? EMPTY);
      this.tasks.setNotBefore(task, 0);
      const lateNote = late ? 'accepted late: the lease had expired but nobody else held the task' : '';
      this.ranFor(stats, task, now);
      if (this.pool(this.tasks.pool[task] as string).resultVerifier !== '') {
        this.setState(task, 'verifying', now, worker, late ? 'late completion after the lease expired; the result is being verified' : 'the result is being verified');
        this.tasks.setOutputs(task, files);
        this.startVerifying(task);
        return accepted(name, `${lateNote}${late ? '; ' : ''}the pool's result verifier checks the result before the task is done`);
      }
      this.observer.completed(this.tasks.pool[task] as string, this.runTime(task, now));
      this.setState(task, 'done', now, worker, late ? 'late completion after the lease expired' : '');
      this.tasks.setOutputs(task, files);
      stats.done++;
      this.finish(task, now, wasFailed);
      return accepted(name, lateNote);
    });
  }

  /** `task` became done by a completion: counted, and its dependents released (unblocked, if it had failed). */
  private finish(task: TaskId, now: number, wasFailed: boolean): void {
    this.doneRate.add(now);
    this.ended.done++;
    const queue = this.pool(this.tasks.pool[task] as string);
    (queue.rate ??= new RateWindow()).add(now);
    this.releaseDependents(task, now);
    if (wasFailed) this.unblockDescendants(task, now);
  }

  /**
   * The output files of a completion of `task`, in the order the task declares them, or why they
   * are refused: each declared output named once, nothing else, and every file held by the hub.
   */
  private checkOutputs(task: TaskId, given: readonly FileRef[]): FileRef[] | string {
    const declared = (this.tasks.more[task] as SpecMore).outputs;
    if (declared.length === 0 && given.length === 0) return NO_OUTPUTS;
    const byName = new Map<string, FileRef>();
    for (const file of given) {
      if (!declared.includes(file.name)) return `the completion names the file "${file.name}", which is not one of the task's declared outputs`;
      if (byName.has(file.name)) return `the completion names the output "${file.name}" twice`;
      byName.set(file.name, file);
    }
    const files: FileRef[] = [];
    for (const name of declared) {
      const file = byName.get(name);
      if (file === undefined) return `the completion leaves out the declared output "${name}"`;
      if (!this.held(file.sha256, file.size)) {
        return `output "${name}" (sha256 ${file.sha256}, ${file.size} bytes) is not held by the hub: upload it first (file_put)`;
      }
      files.push({ name, sha256: file.sha256, size: file.size, executable: file.executable === true });
    }
    return files;
  }

  /**
   * A worker reports that its run of a task failed. While attempts remain the task is ready again
   * after an exponential backoff; otherwise (or when `permanent`) it fails and every descendant
   * is blocked. Writes: the task, and the descendants it blocks.
   */
  fail(worker: string, name: string, reason: string, permanent: boolean, now: number): FailResult {
    checkWorker(worker);
    this.advance(now);
    const stats = this.stats(worker, now);
    const task = this.byName.get(name);
    const refusal = this.refuse(task, name, worker, false);
    if (refusal !== undefined || task === undefined) return { result: refusal ?? notFound(name), state: task === undefined ? undefined : this.tasks.state(task), notBefore: 0 };
    this.dropLease(task);
    this.tasks.setFlag(task, HELD, false);
    stats.failed++;
    this.ranFor(stats, task, now);
    this.failAttempt(task, reason, permanent, now, worker);
    return { result: accepted(name, ''), state: this.tasks.state(task), notBefore: this.tasks.notBefore(task) };
  }

  /** An attempt failed: ready again after the backoff while attempts remain, failed otherwise (or when `permanent`). */
  private failAttempt(task: TaskId, reason: string, permanent: boolean, now: number, worker: string): void {
    this.ended.failed++;
    this.tasks.setLastError(task, reason.length > MAX_REASON_CHARS ? `${reason.slice(0, MAX_REASON_CHARS)}... (cut)` : reason);
    this.observer.attemptFailed(this.tasks.pool[task] as string);
    if (permanent || (this.tasks.attempts[task] as number) >= (this.tasks.more[task] as SpecMore).maxAttempts) {
      this.failTask(task, now, worker, permanent ? `failed permanently: ${this.tasks.lastError(task)}` : `attempts used up: ${this.tasks.lastError(task)}`);
    } else {
      const backoff = Math.min(this.options.backoffMaxMs, this.options.backoffBaseMs * 2 ** ((this.tasks.attempts[task] as number) - 1));
      this.makeReady(task, now, worker, `failed: ${this.tasks.lastError(task)}`, now + backoff);
    }
  }

  // --- verifiers (issue 13) ----------------------------------------------------------------

  /** `task` is VERIFYING: its verification gets a token and waits for takeToVerify. */
  private startVerifying(task: TaskId): void {
    this.verifying.set(task, ++this.verifyTokens);
    this.toVerify.push(task);
  }

  /**
   * The verifications to run: tasks that became VERIFYING since the last call (after a restore,
   * every VERIFYING task), each with its token. One that stopped verifying meanwhile is left out.
   */
  takeToVerify(): VerifyTicket[] {
    // Asked after every request: nothing allocated while nothing verifies.
    if (this.toVerify.length === 0) return NO_TICKETS;
    const tickets: VerifyTicket[] = [];
    for (const task of this.toVerify) {
      const token = this.verifying.get(task);
      if (token !== undefined && this.tasks.state(task) === 'verifying') tickets.push({ name: this.tasks.name[task] as string, token });
    }
    this.toVerify = [];
    return tickets;
  }

  /**
   * What a result verifier is given, and the pool's verifier now; undefined when the ticket's
   * verification is no longer wanted (the task was cancelled, rerun, replaced or deleted).
   */
  verification(ticket: VerifyTicket): ResultToVerify | undefined {
    const task = this.byName.get(ticket.name);
    if (task === undefined || this.tasks.state(task) !== 'verifying' || this.verifying.get(task) !== ticket.token) return undefined;
    return { spec: this.specOf(task), attempt: this.tasks.attempts[task] as number, worker: this.tasks.worker[task] as string, result: this.blobs.get(this.tasks.result[task] as number), outputs: this.tasks.outputs(task), verifier: this.pool(this.tasks.pool[task] as string).resultVerifier };
  }

  /**
   * A verification ended: passed, the task is done and its dependents released; rejected, the
   * attempt fails with "result rejected: <reason>" (the usual attempts and backoff). False, and
   * nothing changes, when the ticket is stale (see `verification`).
   * Writes: the task, and the tasks it releases or blocks.
   */
  verified(ticket: VerifyTicket, passed: boolean, reason: string, now: number): boolean {
    if (this.verification(ticket) === undefined) return false;
    this.advance(now);
    const task = this.byName.get(ticket.name) as TaskId;
    const stats = this.stats(this.tasks.worker[task] as string, 0);
    if (passed) {
      const outputs = this.tasks.outputs(task);
      // Its run ended at the completion: the VERIFYING entry, its latest.
      this.observer.completed(this.tasks.pool[task] as string, this.runTime(task, this.changedAt(task, now)));
      this.setState(task, 'done', now, '', reason === '' ? 'result verified' : `result verified: ${reason}`);
      this.tasks.setOutputs(task, outputs);
      stats.done++;
      // It may have failed (attempts used up at a lease expiry) before its late completion came.
      this.finish(task, now, true);
    } else {
      stats.failed++;
      this.failAttempt(task, `result rejected: ${reason}`, false, now, '');
    }
    return true;
  }

  /** The job verifier of the pool of that name ('' none). */
  jobVerifier(pool: string): string {
    return this.pools.get(pool === '' ? DEFAULT_POOL : pool)?.jobVerifier ?? '';
  }

  /**
   * The tasks of a create (or replace) that the job verifiers of their pools must pass first: each
   * of a pool with one that the request would add or change (not one identical to its task, nor a
   * barrier, which never runs), once.
   * Throws what a bad spec throws in `create`, before anything runs. Costs nothing while no pool
   * has a job verifier.
   */
  jobChecks(inputs: readonly TaskSpecInput[]): JobCheck[] {
    if (this.jobVerified.size === 0) return [];
    checkBatch(inputs.length, this.options, 'create');
    const checks: JobCheck[] = [];
    const seen = new Set<string>();
    for (const input of inputs) {
      const spec = normalizeSpec(input, this.options);
      const verifier = this.jobVerifier(spec.pool);
      // A barrier never runs: nothing of it to check.
      if (verifier === '' || spec.barrier || seen.has(spec.name)) continue;
      const existing = this.byName.get(spec.name);
      if (existing !== undefined && sameSpec(this.specOf(existing), spec)) continue;
      seen.add(spec.name);
      checks.push({ spec, verifier });
    }
    return checks;
  }

  /**
   * Extend the leases `worker` holds on `names` (a name repeated counts once). Returns the ones it
   * does not hold any more. Writes nothing: a renewal lives in memory only, and a restart renews
   * every lease anyway (see `restore`).
   */
  heartbeat(worker: string, names: readonly string[], now: number): TaskResult[] {
    checkWorker(worker);
    checkBatch(names.length, this.options, 'heartbeat');
    this.advance(now);
    this.stats(worker, now);
    const lost: TaskResult[] = [];
    for (const name of new Set(names)) {
      const task = this.byName.get(name);
      if (task !== undefined && this.tasks.state(task) === 'running' && (this.tasks.worker[task] as string) === worker) {
        // The heap entry stays where it is; `advance` moves it when it comes due.
        this.tasks.leaseDeadline[task] = now + (this.tasks.more[task] as SpecMore).leaseMs;
      } else {
        lost.push(this.refuse(task, name, worker, false) ?? notLeased(name, 'the lease is gone'));
      }
    }
    return lost;
  }

  /** Give leased tasks back without using an attempt. Writes: each released task. */
  release(worker: string, names: readonly string[], now: number): TaskResult[] {
    checkWorker(worker);
    checkBatch(names.length, this.options, 'release');
    this.advance(now);
    this.stats(worker, now);
    return names.map((name) => {
      const task = this.byName.get(name);
      if (task !== undefined && this.tasks.state(task) === 'running' && (this.tasks.worker[task] as string) === worker) {
        this.giveBack(task, now, 'released');
        return accepted(name, '');
      }
      return this.refuse(task, name, worker, false) ?? notLeased(name, 'not leased to this worker');
    });
  }

  /** `worker` leaves: each lease it holds goes back to ready without using an attempt. */
  workerExit(worker: string, now: number): number {
    checkWorker(worker);
    this.advance(now);
    const stats = this.stats(worker, now);
    const held = [...stats.leases];
    for (const task of held) this.giveBack(task, now, 'worker exited');
    stats.exited = true;
    return held.length;
  }

  /**
   * Put tasks back to work with fresh attempts, and unblock their descendants: the named ones that
   * are failed or cancelled, or (`names` undefined) every failed one, not the cancelled ones: an
   * operator's cancel stands until that task is named.
   * Writes: each retried task and unblocked descendant.
   */
  retry(names: readonly string[] | undefined, now: number): { retried: number; results: TaskResult[] } {
    if (names !== undefined) checkBatch(names.length, this.options, 'retry');
    this.advance(now);
    const results: TaskResult[] = [];
    const targets: TaskId[] = [];
    if (names === undefined) {
      for (const task of this.failedTasks) targets.push(task);
    } else {
      for (const name of names) {
        const task = this.byName.get(name);
        if (task === undefined) results.push(notFound(name));
        else if (this.tasks.state(task) !== 'failed' && this.tasks.state(task) !== 'cancelled') results.push(outcome(name, 'NOT_FAILED', `task is ${this.tasks.state(task)}, not failed or cancelled`));
        else {
          targets.push(task);
          results.push(accepted(name, ''));
        }
      }
    }
    let retried = 0;
    for (const task of targets) {
      if (this.tasks.state(task) !== 'failed' && this.tasks.state(task) !== 'cancelled') continue; // named twice
      retried++;
      this.observer.retried(this.tasks.pool[task] as string);
      this.tasks.attempts[task] = 0;
      this.tasks.setFlag(task, HELD, false);
      // A task that failed running had its deps done; a cancelled one may not have.
      this.resettle(task, now, 'retry');
      this.unblockDescendants(task, now);
    }
    return { retried, results };
  }

  /**
   * Stop tasks for good: each not done becomes cancelled (a running one loses its lease; a failed
   * or blocked one is cancelled too) and its descendants blocked. Final until `retry` names it.
   * Writes: each cancelled task and the descendants it blocks.
   */
  cancel(names: readonly string[], reason: string, now: number): { cancelled: number; results: TaskResult[] } {
    checkBatch(names.length, this.options, 'cancel');
    this.advance(now);
    let cancelled = 0;
    const results = names.map((name) => {
      const task = this.byName.get(name);
      if (task === undefined) return notFound(name);
      if (this.tasks.state(task) === 'done') return outcome(name, 'ALREADY_DONE', `completed by worker ${this.tasks.worker[task] as string}`);
      if (this.tasks.state(task) === 'cancelled') return outcome(name, 'TASK_CANCELLED', 'cancelled already');
      if (this.tasks.state(task) === 'running') this.dropLease(task);
      this.tasks.setFlag(task, HELD, false);
      this.tasks.setNotBefore(task, 0);
      this.tasks.setLastError(task, `cancelled: ${reason.slice(0, MAX_REASON_CHARS)}`);
      this.setState(task, 'cancelled', now, '', this.tasks.lastError(task));
      this.blockDescendants(task, now);
      cancelled++;
      return accepted(name, '');
    });
    return { cancelled, results };
  }

  /** Apply what time `now` implies: expired leases, ended backoffs. */
  advance(now: number): void {
    for (let entry = this.leases.peek(); entry !== undefined && entry.at <= now; entry = this.leases.peek()) {
      this.leases.pop();
      const task = entry.task;
      this.tasks.setFlag(task, LEASE_QUEUED, false);
      if (this.tasks.state(task) !== 'running') continue; // the lease ended otherwise
      if ((this.tasks.leaseDeadline[task] as number) > now) {
        this.queueLease(task); // renewed since the entry was made
        continue;
      }
      const worker = this.tasks.worker[task] as string;
      this.dropLease(task);
      // The worker may still complete it while nobody else takes it: HELD stays.
      const stats = this.stats(worker, 0);
      stats.failed++;
      this.ended.failed++;
      this.ranFor(stats, task, now);
      this.tasks.setLastError(task, `lease expired (worker ${worker}, attempt ${this.tasks.attempts[task] as number})`);
      this.observer.leaseExpired(this.tasks.pool[task] as string);
      this.observer.attemptFailed(this.tasks.pool[task] as string);
      if ((this.tasks.attempts[task] as number) >= (this.tasks.more[task] as SpecMore).maxAttempts) this.failTask(task, now, worker, `${this.tasks.lastError(task)}; attempts used up`);
      else this.makeReady(task, now, worker, this.tasks.lastError(task));
    }
    for (let entry = this.backoffs.peek(); entry !== undefined && entry.at <= now; entry = this.backoffs.peek()) {
      this.backoffs.pop();
      const task = entry.task;
      if (this.tasks.state(task) !== 'ready' || this.tasks.notBefore(task) !== entry.at) continue;
      this.tasks.setNotBefore(task, 0);
      this.dirty.add(task);
      this.enqueue(task);
    }
  }

  /** Entries in the lease and backoff heaps (what timers the graph keeps; for tests and metrics). */
  get timedEntries(): number {
    return this.leases.size + this.backoffs.size;
  }

  /** The earliest time at which `advance` would change something, if any (or look at a renewed lease). */
  nextWakeAt(): number | undefined {
    const lease = this.leases.peek()?.at;
    const backoff = this.backoffs.peek()?.at;
    if (lease === undefined) return backoff;
    return backoff === undefined ? lease : Math.min(lease, backoff);
  }

  /**
   * The counts of tasks by state, of the graph and of each pool holding tasks (the first
   * MAX_STATUS_POOLS made, as a status lists), and how many workers the graph knows. Changes
   * nothing (no `advance`): what metrics read at a scrape.
   */
  stateCounts(): { counts: StateCounts; pools: { pool: string; counts: StateCounts }[]; workers: number } {
    const pools: { pool: string; counts: StateCounts }[] = [];
    for (const [pool, queue] of this.pools) {
      if (pools.length === MAX_STATUS_POOLS) break;
      if (queue.size() > 0) pools.push({ pool, counts: { ...queue.counts } });
    }
    return { counts: { ...this.counts }, pools, workers: this.workers.size };
  }

  status(now: number): GraphStatus {
    this.advance(now);
    // At most MAX_STATUS_POOLS listed (the first made), so that a status costs the same with a
    // million pools; `poolsTotal` counts them all.
    const pools: { pool: string; counts: StateCounts; donePerSecond: number }[] = [];
    let poolsTotal = 0;
    for (const [pool, queue] of this.pools) {
      if (queue.size() === 0) continue;
      poolsTotal++;
      if (pools.length < MAX_STATUS_POOLS) pools.push({ pool, counts: { ...queue.counts }, donePerSecond: queue.rate?.perSecond(now) ?? 0 });
    }
    pools.sort((a, b) => (a.pool < b.pool ? -1 : a.pool > b.pool ? 1 : 0));
    this.forgetIdleWorkers(now);
    // Newest last in the map (see `stats`): walk from the end, those holding leases first.
    const listed: WorkerStatus[] = [];
    const entries = [...this.workers.entries()];
    for (const holding of [true, false]) {
      for (let i = entries.length - 1; i >= 0 && listed.length < MAX_STATUS_WORKERS; i--) {
        const [worker, s] = entries[i] as [string, WorkerStats];
        if (s.leases.size > 0 === holding) {
          const tasks: string[] = [];
          for (const t of s.leases) {
            if (tasks.length >= LISTED_LEASES) break;
            tasks.push(this.tasks.name[t] as string);
          }
          listed.push({ worker, lastSeen: s.lastSeen, running: s.leases.size, done: s.done, failed: s.failed, exited: s.exited, runs: s.runs, busyMs: s.busyMs, maxRunMs: s.maxRunMs, tasks });
        }
      }
    }
    const workers = listed.sort((a, b) => (a.worker < b.worker ? -1 : a.worker > b.worker ? 1 : 0));
    const missingExamples: string[] = [];
    for (const name of this.missing.keys()) {
      if (missingExamples.length === MAX_MISSING_EXAMPLES) break;
      missingExamples.push(name);
    }
    return {
      counts: { ...this.counts },
      pools,
      poolsTotal,
      workers,
      workersTotal: this.workers.size,
      waitingOnMissing: this.onMissing,
      missingNames: this.missing.size,
      missingExamples,
      donePerSecond: this.doneRate.perSecond(now),
      now,
      total: this.byName.size,
    };
  }

  /**
   * Tasks matching `query` in creation order, after the task of seq `query.after`: at most
   * `limit` of them, looking at no more than LIST_SCAN tasks, so a page costs a bounded time
   * whatever the graph's size. `next` (0: the end) resumes where this page stopped. With
   * `withResults` a page also ends once its results pass LIST_RESULT_BYTES, and with `withDeps`
   * once its deps' names pass LIST_DEPS_BYTES (one task at least).
   */
  list(query: ListQuery, now: number): ListResult {
    this.advance(now);
    const limit = query.limit === 0 ? LIST_DEFAULT : query.limit;
    if (limit > LIST_MAX) throw new DagworkError('TOO_LARGE', `list asks for ${limit} tasks; the limit is ${LIST_MAX} per page`);
    const states = new Set(query.states);
    const pool = query.pool === '' ? undefined : query.pool;
    // The first task created after `after`: seqs only grow along `order`.
    let lo = 0;
    let hi = this.order.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.tasks.seq[this.order[mid] as TaskId] as number) <= query.after) lo = mid + 1;
      else hi = mid;
    }
    const tasks: TaskSummary[] = [];
    let resultBytes = 0;
    let depBytes = 0;
    let i = lo;
    for (const end = Math.min(this.order.length, lo + LIST_SCAN); i < end && tasks.length < limit && resultBytes <= LIST_RESULT_BYTES && depBytes <= LIST_DEPS_BYTES; i++) {
      const t = this.order[i] as TaskId;
      if (states.size > 0 && !states.has(this.tasks.state(t))) continue;
      if (pool !== undefined && (this.tasks.pool[t] as string) !== pool) continue;
      if (!(this.tasks.name[t] as string).startsWith(query.prefix)) continue;
      const withResult = query.withResults && this.tasks.state(t) === 'done';
      const resultLength = this.blobs.length(this.tasks.result[t] as number);
      if (withResult) resultBytes += resultLength;
      const deps = query.withDeps === true ? this.tasks.depsOf(t) : NO_DEPS;
      for (const dep of deps) depBytes += Buffer.byteLength(dep, 'utf8');
      tasks.push({
        name: this.tasks.name[t] as string,
        state: this.tasks.state(t),
        pool: this.tasks.pool[t] as string,
        attempts: this.tasks.attempts[t] as number,
        worker: this.tasks.worker[t] as string,
        lastError: this.tasks.lastError(t).length > LIST_ERROR_CHARS ? `${this.tasks.lastError(t).slice(0, LIST_ERROR_CHARS)}...` : this.tasks.lastError(t),
        seq: this.tasks.seq[t] as number,
        resultBytes: resultLength,
        changedAt: this.changedAt(t, 0),
        createdAt: (this.tasks.logHead[t] as number) === NO_ENTRY ? 0 : this.logs.at(this.logs.first(this.tasks.logHead[t] as number)),
        startedAt: this.logs.startedAt(this.tasks.logHead[t] as number),
        params: query.withParams ? (this.tasks.more[t] as SpecMore).params : NO_PARAMS,
        result: withResult ? this.blobs.get(this.tasks.result[t] as number) : EMPTY,
        outputs: withResult ? this.tasks.outputs(t) : NO_OUTPUTS,
        barrier: (this.tasks.more[t] as SpecMore).barrier,
        failedDeps: this.failedDeps(t).length,
        ...(query.withDeps === true ? { deps } : {}),
      });
    }
    const last = this.order[i - 1];
    const next = i < this.order.length ? (last === undefined ? query.after : this.tasks.seq[last] as number) : 0;
    return { tasks, next };
  }

  /** The graph as a picture: see graphView (view.ts). Reads only. */
  view(query: GraphViewQuery, now: number): GraphView {
    // Names checked as everywhere (a 2 MB name is not echoed back); a pool nobody knows is named.
    if (query.around !== '') checkName(query.around, this.options, 'task name');
    if (query.pool !== '') {
      checkName(query.pool, this.options, 'pool');
      this.knownPool(query.pool);
    }
    this.advance(now);
    const source: ViewSource<TaskId> = {
      order: this.order,
      get: (name) => this.byName.get(name),
      name: (task) => (this.tasks.name[task] as string),
      pool: (task) => (this.tasks.pool[task] as string),
      state: (task) => this.tasks.state(task),
      seq: (task) => (this.tasks.seq[task] as number),
      deps: (task) => this.tasks.depsOf(task),
      dependents: (task) => this.dependents.toArray(task),
    };
    return graphView(source, query);
  }

  /**
   * Every file hash a task names, as an input or as an output of its completion: what gc keeps.
   * O(tasks); gc is an operator's occasional request.
   */
  referencedFiles(): Set<string> {
    const hashes = new Set<string>();
    for (const task of this.order) {
      for (const file of (this.tasks.more[task] as SpecMore).inputs) hashes.add(file.sha256);
      for (const file of this.tasks.outputs(task)) hashes.add(file.sha256);
    }
    return hashes;
  }

  /** The task's record, the names of its dependents and of its deps that do not exist; UNKNOWN_TASK if there is none. */
  lookup(name: string, now: number): LookupResult {
    this.advance(now);
    const task = this.byName.get(name);
    if (task === undefined) throw new DagworkError('UNKNOWN_TASK', `no task named "${name}"`, { task: name });
    return {
      task: this.record(task),
      dependents: this.dependents.toArray(task).map((d) => this.tasks.name[d] as string),
      missingDeps: this.tasks.depsOf(task).filter((d) => !this.byName.has(d)),
      failedDeps: this.failedDeps(task),
    };
  }

  /**
   * A steal's reply could not be delivered (its client is gone): the tasks it leased go back to
   * ready without using an attempt. Writes: each task given back.
   */
  undelivered(worker: string, names: readonly string[], now: number): void {
    this.advance(now);
    for (const name of names) {
      const task = this.byName.get(name);
      if (task !== undefined && this.tasks.state(task) === 'running' && (this.tasks.worker[task] as string) === worker) this.giveBack(task, now, 'the steal reply could not be delivered');
    }
  }

  /** The pools that got a ready task or ran out of work since the last call. */
  takeWoken(): { all: boolean; pools: ReadonlySet<string> } {
    const woken = { all: this.wokenAll, pools: this.woken };
    this.woken = new Set();
    this.wokenAll = false;
    return woken;
  }

  /** The tasks changed since the last call, for the store to write. */
  takeDirty(): TaskRecord[] {
    const dirty = Array.from(this.dirty, (task) => this.record(task));
    this.dirty = new Set();
    return dirty;
  }

  /** Changes not yet taken for the store (takeDirty, takeDeleted, takeDirtyPools, takeNewSpecs). */
  get unwritten(): boolean {
    return this.dirty.size > 0 || this.deleted.size > 0 || this.dirtyPools.size > 0 || this.newSpecs.size > 0;
  }

  /**
   * Every task's record as `takeDirty` gives it, one at a time, in creation order (restoring them
   * in that order spares `finish` most of its sort): what a store keeps as a snapshot when the hub
   * stops (TaskStore.close). Running tasks carry their leases as renewed, which a store's records
   * do not (renewals are not written).
   */
  *records(): Generator<TaskRecord> {
    if (this.unwritten) throw new Error('the graph has changes the store was not given (takeDirty)');
    for (const task of this.order) yield this.record(task);
  }

  /** The seq the next task created gets: a walk begun now (recordsFrom) stops before it. */
  get nextTaskSeq(): number {
    return this.nextSeq;
  }

  /**
   * The records of the tasks of seqs `fromSeq` to `beforeSeq` (excluded), in creation order, each
   * handed to `sink` (with whether a task names it as a dependency) until `more` (asked before
   * each) says stop: a snapshot written a slice at a time while the graph changes between slices.
   * Returns the seq to go on from, or undefined once the last was handed over. A task that exists through the whole walk is handed over once; one
   * deleted meanwhile may have been; one created meanwhile (a name made again included) is not,
   * as its seq is `beforeSeq` at least when the walk began at `nextTaskSeq`.
   */
  recordsFrom(fromSeq: number, beforeSeq: number, sink: (record: TaskRecord, dependedOn: boolean) => void, more: () => boolean): number | undefined {
    if (this.unwritten) throw new Error('the graph has changes the store was not given (takeDirty)');
    const order = this.order;
    const seqs = this.tasks.seq;
    for (let i = this.orderIndex(fromSeq); i < order.length; i++) {
      const task = order[i] as TaskId;
      const seq = seqs[task] as number;
      if (seq >= beforeSeq) return undefined;
      if (!more()) return seq;
      sink(this.record(task), this.dependents.first(task) !== NO_EDGE);
    }
    return undefined;
  }

  // --- pools (pool_list, pool_set, pool_delete) ----------------------------------------

  /**
   * The pools that hold a task or have settings, by name (at most MAX_LISTED_POOLS), or the one
   * named `pool` (UNKNOWN_POOL if it has neither). Writes nothing.
   */
  poolList(pool: string, now: number): PoolListResult {
    this.advance(now);
    if (pool !== '') {
      checkName(pool, this.options, 'pool');
      return { pools: [this.poolInfo(pool, this.knownPool(pool), now)], poolsTotal: 1 };
    }
    const names: string[] = [];
    for (const [name, queue] of this.pools) if (queue.size() > 0 || queue.hasSettings) names.push(name);
    names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const pools: PoolInfo[] = [];
    for (const name of names) {
      if (pools.length === MAX_LISTED_POOLS) break;
      pools.push(this.poolInfo(name, this.pools.get(name) as PoolQueue, now));
    }
    return { pools, poolsTotal: names.length };
  }

  /**
   * Change a pool's settings: those given, the others kept. The pool need not hold a task. A limit
   * lowered below what runs takes no lease away. Throws INVALID_NAME, INVALID_ARGUMENT (a limit
   * that is not an integer from 0 to MAX_POOL_RUNNING, a verifier command verifierProblem names)
   * before anything changes (checkPoolSet).
   * Writes: the pool's settings (none of its tasks).
   */
  poolSet(args: PoolSetArgs, now: number): PoolInfo {
    this.checkPoolSet(args);
    const name = args.pool === '' ? DEFAULT_POOL : args.pool;
    const limit = args.maxRunning;
    this.advance(now);
    const queue = this.pool(name);
    this.applySettings(name, {
      maxRunning: limit ?? queue.maxRunning,
      paused: args.paused ?? queue.paused,
      jobVerifier: args.jobVerifier ?? queue.jobVerifier,
      resultVerifier: args.resultVerifier ?? queue.resultVerifier,
    });
    this.dirtyPools.add(name);
    // Unpaused, or a limit raised or lifted: parked steals of the pool look again.
    this.woken.add(name);
    return this.poolInfo(name, queue, now);
  }

  /** Throws what `poolSet` would throw for these arguments (the hub checks before it runs sh on the verifiers). */
  checkPoolSet(args: PoolSetArgs): void {
    checkName(args.pool === '' ? DEFAULT_POOL : args.pool, this.options, 'pool');
    const limit = args.maxRunning;
    if (limit !== undefined && (!Number.isInteger(limit) || limit < 0 || limit > MAX_POOL_RUNNING)) {
      throw new DagworkError('INVALID_ARGUMENT', `max running ${limit} is not an integer from 0 (no limit) to ${MAX_POOL_RUNNING}`);
    }
    for (const [what, command] of verifierCommands(args)) {
      const problem = verifierProblem(command);
      if (problem !== undefined) throw new DagworkError('INVALID_ARGUMENT', `${what}: ${problem}`);
    }
  }

  /**
   * Remove a pool's tasks, whatever their state (a running one's worker hears NOT_FOUND at its
   * next heartbeat), and its settings. While a task of another pool depends on one of them this
   * throws CONFLICT, unless `force`: then each such dependent not started (waiting or ready) is
   * blocked with the note `dependency deleted with pool P`, its descendants with it; those done,
   * running or failed are left as they are. Every dependent of a removed task waits on its name
   * again, as on a name never created. UNKNOWN_POOL if the pool holds no task and has no settings.
   * O(tasks): an operator's occasional request.
   * Writes: the removal of each task (takeDeleted), of the pool's settings (takeDirtyPools), and
   * each task blocked.
   */
  poolDelete(pool: string, force: boolean, now: number): PoolDeleteResult {
    const name = pool === '' ? DEFAULT_POOL : pool;
    checkName(name, this.options, 'pool');
    const queue = this.knownPool(name);
    this.advance(now);
    const doomed = new Set<TaskId>();
    for (const task of this.order) if ((this.tasks.pool[task] as string) === name) doomed.add(task);
    const outside = new Set<TaskId>();
    for (const task of doomed) for (const d of this.dependents.toArray(task)) if (!doomed.has(d)) outside.add(d);
    if (outside.size > 0 && !force) {
      const [first] = outside as Set<TaskId>;
      const dependent = first as TaskId;
      const dep = this.tasks.depsOf(dependent).find((n) => this.poolOfName(n) === name) ?? '';
      const more = outside.size > 1 ? ` (and ${outside.size - 1} more tasks of other pools)` : '';
      throw new DagworkError(
        'CONFLICT',
        `task "${this.tasks.name[dependent] as string}" of pool "${this.tasks.pool[dependent] as string}" depends on "${dep}" of pool "${name}"${more}: delete with force to block them`,
        { task: this.tasks.name[dependent] as string },
      );
    }
    this.removeTasks(doomed);
    this.pools.delete(name);
    this.throttled.delete(queue);
    this.jobVerified.delete(queue);
    if (queue.hasSettings) this.dirtyPools.add(name);
    let blocked = 0;
    const note = `dependency deleted with pool ${name}`;
    for (const d of outside) {
      if (this.tasks.state(d) !== 'waiting' && this.tasks.state(d) !== 'ready') continue;
      this.tasks.setNotBefore(d, 0);
      this.setState(d, 'blocked', now, '', note);
      this.blockDescendants(d, now);
      blocked++;
    }
    // Steals parked on the pool, or on every pool, look again: it may be finished now.
    this.woken.add(name);
    if (!this.busy()) this.wokenAll = true;
    return { deleted: doomed.size, blocked };
  }

  /**
   * Remove `doomed` from the graph, whatever their states (a running one's lease is dropped: its
   * worker hears NOT_FOUND at its next heartbeat, and its completion is refused). Every dependent
   * of a removed task that is not removed itself waits on its name again, as on a name never
   * created. The one way tasks leave the graph (pool delete, delete): the store forgets them by
   * takeDeleted.
   */
  private removeTasks(doomed: ReadonlySet<TaskId>): void {
    // Unlink first, while every name still resolves: parents keep no removed dependent, names
    // awaited keep no removed waiter, and dependents outside wait on the removed names.
    const parents = new Set<TaskId>();
    for (const task of doomed) {
      for (const dep of this.tasks.depsOf(task)) {
        const parent = this.byName.get(dep);
        if (parent === undefined) {
          const waiting = (this.missing.get(dep) ?? []).filter((w) => w !== task);
          if (waiting.length === 0) this.missing.delete(dep);
          else this.missing.set(dep, waiting);
        } else if (!doomed.has(parent)) {
          parents.add(parent);
        }
      }
      if ((this.tasks.missingDeps[task] as number) > 0) this.onMissing--;
      for (let e = this.dependents.first(task); e !== NO_EDGE; e = this.dependents.next(e)) {
        const d = this.dependents.item(e);
        if (doomed.has(d)) continue;
        const waiting = this.missing.get(this.tasks.name[task] as string);
        if (waiting === undefined) this.missing.set(this.tasks.name[task] as string, [d]);
        else waiting.push(d);
        if (this.tasks.state(task) === 'done') this.tasks.pendingDeps[d] = (this.tasks.pendingDeps[d] as number) + 1;
        if (this.addMissingDep(d)) this.onMissing++;
      }
    }
    for (const parent of parents) this.dependents.removeWhere(parent, (d) => doomed.has(d));
    for (const task of doomed) {
      if (this.tasks.state(task) === 'running') this.dropLease(task);
      this.verifying.delete(task);
      this.countOut(task);
      this.byName.delete(this.tasks.name[task] as string);
      this.dirty.delete(task);
      this.deleted.add(this.tasks.name[task] as string);
      this.logs.freeLog(this.tasks.logHead[task] as number);
      this.blobs.free(this.tasks.payload[task] as number);
      this.blobs.free(this.tasks.result[task] as number);
      this.tasks.result[task] = EMPTY_HANDLE;
      this.tasks.logHead[task] = NO_ENTRY;
      this.tasks.logLength[task] = 0;
      // Entries left in the ready, backoff and lease heaps are dropped when they come up (they
      // look for a ready or running task, and this one is neither any more), or by `reclaim`.
      this.dependents.clear(task);
      this.tasks.retire(task, 'cancelled');
    }
    let kept = 0;
    for (const task of this.order) if (!doomed.has(task)) this.order[kept++] = task;
    this.order.length = kept;
    // O(tasks) already: the heaps let go of the removed ids now.
    this.reclaim(true);
  }

  /**
   * Hands the ids of removed and replaced tasks out again once no heap or list holds them: every
   * such entry is dropped (O(ready + running + verifying)). Unless `now`, only once they are many
   * (1,024, and a quarter of the graph), so that their cost is spread over the removals.
   */
  private reclaim(now: boolean): void {
    const tasks = this.tasks;
    const retired = tasks.retired.length;
    if (retired === 0 || (!now && (retired < RECLAIM_AFTER || retired < this.byName.size / 4))) return;
    const alive = (task: TaskId): boolean => !tasks.flag(task, RETIRED);
    this.allReady.retain(alive);
    for (const queue of this.pools.values()) queue.ready.retain(alive);
    this.leases.retain((entry) => alive(entry.task));
    this.backoffs.retain((entry) => alive(entry.task));
    this.toVerify = this.toVerify.filter(alive);
    tasks.reclaim();
    tasks.compactDeps();
  }

  /** Pools whose settings changed since the last call, each with its settings (undefined: none any more). */
  takeDirtyPools(): [string, PoolSettings | undefined][] {
    const changed: [string, PoolSettings | undefined][] = [];
    for (const name of this.dirtyPools) {
      const queue = this.pools.get(name);
      changed.push([name, queue?.hasSettings === true ? queue.settings() : undefined]);
    }
    this.dirtyPools = new Set();
    return changed;
  }

  /** Tasks created or replaced since the last call: their spec is new, for the store to write. */
  takeNewSpecs(): Set<string> {
    const names = this.newSpecs;
    this.newSpecs = new Set();
    return names;
  }

  /** Tasks removed since the last call, for the store to forget. */
  takeDeleted(): string[] {
    const deleted = [...this.deleted];
    this.deleted = new Set();
    return deleted;
  }

  /** The pool of that name, if it holds a task or has settings; UNKNOWN_POOL otherwise. */
  private knownPool(name: string): PoolQueue {
    const queue = this.pools.get(name);
    if (queue === undefined || (queue.size() === 0 && !queue.hasSettings)) {
      throw new DagworkError('UNKNOWN_POOL', `no pool named "${name}" (it holds no task and has no settings)`);
    }
    return queue;
  }

  private poolInfo(pool: string, queue: PoolQueue, now: number): PoolInfo {
    return { pool, counts: { ...queue.counts }, ...queue.settings(), donePerSecond: queue.rate?.perSecond(now) ?? 0 };
  }

  /**
   * Gives a pool its settings. A pool that stops being throttled puts its ready tasks (back) into
   * the heap of every ready task; one that starts being throttled leaves its tasks there, to be
   * dropped when they come up (allReadySource).
   */
  private applySettings(name: string, settings: PoolSettings): void {
    const queue = this.pool(name);
    const was = queue.throttled;
    queue.maxRunning = settings.maxRunning;
    queue.paused = settings.paused;
    queue.jobVerifier = settings.jobVerifier;
    queue.resultVerifier = settings.resultVerifier;
    if (queue.jobVerifier !== '') this.jobVerified.add(queue);
    else this.jobVerified.delete(queue);
    if (queue.throttled) {
      this.throttled.add(queue);
    } else if (was) {
      this.throttled.delete(queue);
      for (const task of queue.ready.values()) {
        if (this.tasks.state(task) !== 'ready' || this.tasks.flag(task, QUEUED_ALL)) continue;
        this.tasks.setFlag(task, QUEUED_ALL, true);
        this.allReady.push(task);
      }
    }
  }

  // --- changing the graph after the fact (rerun, replace; issue 13) -------------------------

  /**
   * Put done tasks back to work with fresh attempts (see RerunRequest in the .proto): the named
   * ones and every done task matching `prefix` and `pool` (when one is set); with `descendants`,
   * everything downstream of them too, whatever its state (a running one loses its lease).
   * Writes: every task put back to work, and every dependent made to wait again.
   */
  rerun(query: RerunQuery, now: number): RerunResult {
    checkBatch(query.names.length, this.options, 'rerun');
    this.advance(now);
    const roots = new Set<TaskId>();
    const named: (TaskId | undefined)[] = query.names.map((name) => this.byName.get(name));
    for (const task of named) if (task !== undefined && this.tasks.state(task) === 'done') roots.add(task);
    if (query.prefix !== '' || query.pool !== '') {
      for (const task of this.order) {
        if (this.tasks.state(task) !== 'done' || !(this.tasks.name[task] as string).startsWith(query.prefix)) continue;
        if (query.pool !== '' && (this.tasks.pool[task] as string) !== query.pool) continue;
        roots.add(task);
      }
    }
    const cone = query.descendants ? this.downstream(roots) : roots;
    const results = query.names.map((name, i) => {
      const task = named[i];
      if (task === undefined) return notFound(name);
      if (roots.has(task)) return accepted(name, '');
      if (cone.has(task)) return accepted(name, 'downstream of another task rerun');
      return outcome(name, 'NOT_DONE', `task is ${this.tasks.state(task)}, not done${this.tasks.state(task) === 'failed' || this.tasks.state(task) === 'cancelled' ? ': use retry' : ''}`);
    });
    this.restart(cone, now, (task) => (roots.has(task) ? 'rerun' : 'rerun: downstream of a task rerun'));
    return { rerun: cone.size, results };
  }

  /**
   * Remove tasks from the graph (see DeleteRequest in the .proto), whatever their states. A named
   * task that another task depends on is refused (HAS_DEPENDENTS, naming one) unless that
   * dependent goes too: named in the same request, or, with `descendants`, downstream of a named
   * task (then the whole downstream cone goes). Removal is removeTasks, as for pool delete.
   * Writes: the removal of each task (takeDeleted).
   */
  deleteTasks(names: readonly string[], descendants: boolean, now: number): DeleteResult {
    checkBatch(names.length, this.options, 'delete');
    this.advance(now);
    const named: (TaskId | undefined)[] = names.map((name) => this.byName.get(name));
    const roots = new Set<TaskId>();
    for (const task of named) if (task !== undefined) roots.add(task);
    const doomed = descendants ? this.downstream(roots) : roots;
    // Without descendants: a task stays while something that stays depends on it (to a fixed point:
    // a refused task keeps its own dependencies among the named ones).
    const kept = new Map<TaskId, TaskId>();
    for (let changed = true; changed; ) {
      changed = false;
      for (const task of doomed) {
        const stays = this.dependents.toArray(task).find((d) => !doomed.has(d));
        if (stays === undefined) continue;
        doomed.delete(task);
        kept.set(task, stays);
        changed = true;
      }
    }
    const results = names.map((name, i) => {
      const task = named[i];
      if (task === undefined) return notFound(name);
      const dependent = kept.get(task);
      if (dependent === undefined) return accepted(name, roots.has(task) && descendants ? 'with its descendants' : '');
      const count = this.dependents.count(task);
      const more = count > 1 ? ` (and ${count - 1} more)` : '';
      return outcome(name, 'HAS_DEPENDENTS', `task "${this.tasks.name[dependent] as string}" depends on it${more}: delete it too, or use descendants`);
    });
    const pools = new Set<string>();
    for (const task of doomed) pools.add(this.tasks.pool[task] as string);
    this.removeTasks(doomed);
    // Steals parked on their pools, or on every pool, look again: a pool may be finished now.
    for (const pool of pools) this.woken.add(pool);
    if (doomed.size > 0 && !this.busy()) this.wokenAll = true;
    return { deleted: doomed.size, results };
  }

  /**
   * Give tasks new definitions (see ReplaceRequest in the .proto). Every spec is checked first, and
   * the new dependencies for cycles, as if every changed task were replaced: a problem throws and
   * nothing changes. Then per task: unchanged, replaced (attempts reset, state from its new
   * dependencies), or (done or running, with `rerun`) replaced and rerun with its descendants.
   * Writes: each replaced or created task, and every task whose state follows from them.
   */
  replace(inputs: readonly TaskSpecInput[], rerun: boolean, createMissing: boolean, now: number): ReplaceResult {
    checkBatch(inputs.length, this.options, 'replace');
    const specs = inputs.map((input) => normalizeSpec(input, this.options));
    const changed = new Map<string, TaskSpec>();
    const fresh = new Map<string, TaskSpec>();
    for (const spec of specs) {
      const existing = this.byName.get(spec.name);
      const seen = changed.get(spec.name) ?? fresh.get(spec.name);
      if (seen !== undefined) {
        if (!sameSpec(seen, spec)) throw new DagworkError('CONFLICT', `task "${spec.name}" is given twice with different definitions`, { task: spec.name });
        continue;
      }
      if (existing === undefined) {
        if (createMissing) fresh.set(spec.name, spec);
      } else if (!sameSpec(this.specOf(existing), spec)) {
        changed.set(spec.name, spec);
      }
    }
    for (const spec of [...changed.values(), ...fresh.values()]) {
      for (const file of spec.inputs) {
        if (!this.held(file.sha256, file.size)) {
          throw new DagworkError('UNKNOWN_FILE', `task "${spec.name}" names the input "${file.name}" (sha256 ${file.sha256}), which the hub does not hold: upload it first (file_put)`, { task: spec.name });
        }
      }
    }
    if (this.byName.size + fresh.size > this.options.maxTasks) {
      throw new DagworkError('TOO_LARGE', `the graph would hold ${this.byName.size + fresh.size} tasks; the limit is ${this.options.maxTasks}`);
    }
    this.checkDepRoom([...changed.values(), ...fresh.values()]);
    // The cycle check: new and changed specs as given, every other task as it is. It may walk much
    // of the graph (an operator's occasional request; iterative, so a long chain is fine).
    if (changed.size > 0 || fresh.size > 0) {
      const given = (name: string): TaskSpec | undefined => changed.get(name) ?? fresh.get(name);
      dependencyOrder(
        [...changed.keys(), ...fresh.keys()],
        (name) => given(name) !== undefined,
        (name) => given(name)?.deps ?? this.depsOfName(name),
      );
    }
    this.advance(now);
    let created = 0;
    if (fresh.size > 0) created = this.create([...fresh.values()], now).created;
    let replaced = 0;
    let unchanged = 0;
    const done = new Set<string>();
    const results = specs.map((spec): TaskResult => {
      const name = spec.name;
      const task = this.byName.get(name);
      const newSpec = changed.get(name);
      if (fresh.has(name)) return accepted(name, 'created');
      if (task === undefined) return notFound(name);
      if (newSpec === undefined || done.has(name)) {
        if (!done.has(name)) unchanged++;
        return accepted(name, done.has(name) ? 'replaced' : 'unchanged');
      }
      if (this.tasks.state(task) === 'done' && !rerun) return outcome(name, 'ALREADY_DONE', 'the task is done: replace it with rerun to run it again (and its descendants)');
      if (this.tasks.state(task) === 'verifying' && !rerun) return outcome(name, 'ALREADY_DONE', 'the task is completed and its result being verified: replace it with rerun to run it again (and its descendants)');
      if (this.tasks.state(task) === 'running' && !rerun) return outcome(name, 'TASK_RUNNING', `the task is running (worker ${this.tasks.worker[task] as string}): replace it with rerun to take its lease away`);
      done.add(name);
      replaced++;
      this.swapSpec(task, newSpec, rerun, now);
      return accepted(name, 'replaced');
    });
    this.reclaim(false);
    return { replaced, unchanged, created, results };
  }

  /**
   * Put `task` under `spec`: a new task id (heaps holding the old one drop it, as it is never
   * ready again), relinked to its new dependencies, keeping its seq, log and dependents. Then it
   * goes back to work; with `rerun` everything downstream of it too.
   */
  private swapSpec(old: TaskId, spec: TaskSpec, rerun: boolean, now: number): void {
    const wasDone = this.tasks.state(old) === 'done';
    if (this.tasks.state(old) === 'running') this.dropLease(old);
    this.verifying.delete(old);
    this.unlink(old);
    this.countOut(old);
    this.dirty.delete(old);
    this.blobs.free(this.tasks.payload[old] as number);
    const task = this.newTask(spec, this.tasks.seq[old] as number);
    this.newSpecs.add(spec.name);
    this.tasks.logHead[task] = this.tasks.logHead[old] as number;
    this.tasks.logLength[task] = this.tasks.logLength[old] as number;
    this.tasks.worker[task] = this.tasks.worker[old] as string;
    this.dependents.move(old, task);
    this.byName.set(spec.name, task);
    this.order[this.orderIndex(this.tasks.seq[old] as number)] = task;
    this.link(task);
    this.countIn(task);
    // Its dependents counted the old task as not done; a done one as done.
    if (wasDone) this.dependentsWaitAgain(task);
    this.appendLog(task, { state: 'waiting', at: now, worker: '', note: `replaced${wasDone ? `; previous result ${this.blobs.length(this.tasks.result[old] as number)} bytes` : ''}` });
    this.blobs.free(this.tasks.result[old] as number);
    this.tasks.result[old] = EMPTY_HANDLE;
    // Never counted again; any heap entry of it is dropped as not ready, or by `reclaim`.
    this.tasks.retire(old, 'waiting');
    const cone = rerun ? this.downstream(new Set([task])) : new Set([task]);
    cone.delete(task);
    this.restart(cone, now, () => 'rerun: downstream of a task replaced');
    this.settle([task], now);
    if (this.tasks.state(task) === 'blocked') this.blockDescendants(task, now);
    else this.unblockDescendants(task, now);
  }

  /** `task` was done and is not any more: each of its dependents has one dependency more to wait for. */
  private dependentsWaitAgain(task: TaskId): void {
    const pending = this.tasks.pendingDeps;
    for (let e = this.dependents.first(task); e !== NO_EDGE; e = this.dependents.next(e)) {
      const d = this.dependents.item(e);
      pending[d] = (pending[d] as number) + 1;
    }
  }

  /** Undo `link`: `task` leaves its dependencies' dependents and the missing-name lists. */
  private unlink(task: TaskId): void {
    for (const dep of this.tasks.depsOf(task)) {
      const parent = this.byName.get(dep);
      if (parent !== undefined) {
        this.dependents.remove(parent, task);
        continue;
      }
      const waiting = this.missing.get(dep);
      if (waiting === undefined) continue;
      const i = waiting.indexOf(task);
      if (i !== -1) waiting.splice(i, 1);
      if (waiting.length === 0) this.missing.delete(dep);
    }
    if ((this.tasks.missingDeps[task] as number) > 0) this.onMissing--;
    this.tasks.missingDeps[task] = 0;
    this.tasks.pendingDeps[task] = 0;
  }

  /** Where the task of `seq` sits in `order` (seqs only grow along it). */
  private orderIndex(seq: number): number {
    let lo = 0;
    let hi = this.order.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.tasks.seq[this.order[mid] as TaskId] as number) < seq) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** `roots` and every task downstream of them. */
  private downstream(roots: ReadonlySet<TaskId>): Set<TaskId> {
    const seen = new Set(roots);
    const stack = [...roots];
    for (let task = stack.pop(); task !== undefined; task = stack.pop()) {
      for (let e = this.dependents.first(task); e !== NO_EDGE; e = this.dependents.next(e)) {
        const d = this.dependents.item(e);
        if (seen.has(d)) continue;
        seen.add(d);
        stack.push(d);
      }
    }
    return seen;
  }

  /**
   * Put every task of `cone` back to work, afresh: a running one loses its lease; attempts,
   * result, outputs and last error are cleared; each is waiting, then settled in dependency order.
   * Dependents outside the cone wait for it again (a ready one goes back to waiting).
   */
  private restart(cone: ReadonlySet<TaskId>, now: number, why: (task: TaskId) => string): void {
    if (cone.size === 0) return;
    for (const task of cone) {
      const wasDone = this.tasks.state(task) === 'done';
      if (this.tasks.state(task) === 'running') this.dropLease(task);
      const note = wasDone ? `${why(task)}; previous result ${this.blobs.length(this.tasks.result[task] as number)} bytes` : `${why(task)} (was ${this.tasks.state(task)})`;
      this.tasks.attempts[task] = 0;
      this.tasks.setFlag(task, HELD, false);
      this.tasks.setNotBefore(task, 0);
      this.blobs.free(this.tasks.result[task] as number);
      this.tasks.result[task] = EMPTY_HANDLE;
      this.tasks.setLastError(task, '');
      if (wasDone) this.dependentsWaitAgain(task);
      this.observer.retried(this.tasks.pool[task] as string);
      this.setState(task, 'waiting', now, '', note);
    }
    for (const task of cone) {
      for (let e = this.dependents.first(task); e !== NO_EDGE; e = this.dependents.next(e)) {
        const d = this.dependents.item(e);
        if (cone.has(d) || this.tasks.state(d) !== 'ready' || (this.tasks.more[d] as SpecMore).barrier) continue;
        this.setState(d, 'waiting', now, '', `dependency "${this.tasks.name[task] as string}" is rerun`);
      }
    }
    this.settle(this.coneOrder(cone), now);
  }

  /** Tasks that are waiting, in dependency order, to the state their dependencies give them. */
  private settle(tasks: readonly TaskId[], now: number): void {
    for (const task of tasks) {
      if (this.tasks.state(task) !== 'waiting') continue; // a barrier done on the way
      const state = this.stateFromDeps(task);
      if (state === 'ready') this.makeReady(task, now, '', 'dependencies done');
      else if (state === 'blocked') this.setState(task, 'blocked', now, '', this.blockedBy(task));
    }
  }

  /** The tasks of `cone` in dependency order (Kahn's algorithm over the edges inside it). */
  private coneOrder(cone: ReadonlySet<TaskId>): TaskId[] {
    const inside = new Map<TaskId, number>();
    for (const task of cone) {
      let n = 0;
      for (const dep of this.tasks.depsOf(task)) {
        const parent = this.byName.get(dep);
        if (parent !== undefined && cone.has(parent)) n++;
      }
      inside.set(task, n);
    }
    const order: TaskId[] = [];
    for (const [task, n] of inside) if (n === 0) order.push(task);
    for (let i = 0; i < order.length; i++) {
      for (let e = this.dependents.first(order[i] as TaskId); e !== NO_EDGE; e = this.dependents.next(e)) {
        const d = this.dependents.item(e);
        const n = inside.get(d);
        if (n === undefined) continue;
        inside.set(d, n - 1);
        if (n === 1) order.push(d);
      }
    }
    return order;
  }

  // --- transitions -----------------------------------------------------------------------

  /**
   * Why `worker` may not complete (`forCompletion`) or otherwise act on `task`, or undefined when
   * it may. One rule, whatever came before: the worker acts on its lease while it runs; after the
   * lease expired (and only then: not after release, exit, its own fail or a cancel) it may still
   * complete the task while nobody else took it, the task being ready or failed by that expiry.
   */
  private refuse(task: TaskId | undefined, name: string, worker: string, forCompletion: boolean): TaskResult | undefined {
    if (task === undefined) return notFound(name);
    const expiredMine = this.tasks.flag(task, HELD) && (this.tasks.worker[task] as string) === worker;
    const state = this.tasks.state(task);
    switch (state) {
      case 'running':
        return (this.tasks.worker[task] as string) === worker ? undefined : outcome(name, 'LEASED_TO_OTHER', `leased to worker ${this.tasks.worker[task] as string}`);
      case 'done':
        return outcome(name, 'ALREADY_DONE', `completed by worker ${this.tasks.worker[task] as string}`);
      case 'verifying':
        return forCompletion
          ? outcome(name, 'ALREADY_DONE', `completed by worker ${this.tasks.worker[task] as string}; the pool's result verifier is checking the result`)
          : notLeased(name, `task is verifying (completed by worker ${this.tasks.worker[task] as string})`);
      case 'cancelled':
        return outcome(name, 'TASK_CANCELLED', this.tasks.lastError(task));
      case 'ready':
      case 'failed':
        if (expiredMine) return forCompletion ? undefined : outcome(name, 'LEASE_EXPIRED', `the lease expired; task is ${state}`);
        if (state === 'failed') return outcome(name, 'TASK_FAILED', this.tasks.lastError(task));
        return notLeased(name, `task is ready${(this.tasks.worker[task] as string) === '' ? '' : `; last leased to ${this.tasks.worker[task] as string}`}`);
      case 'waiting':
      case 'blocked':
        return notLeased(name, `task is ${state}`);
      default: {
        const unknown: never = state;
        throw new Error(`unknown state ${String(unknown)}`);
      }
    }
  }

  private lease(task: TaskId, worker: string, now: number): LeasedTask {
    // Its latest log entry is when it became ready.
    this.observer.leased(this.tasks.pool[task] as string, Math.max(0, now - this.changedAt(task, now)));
    this.tasks.attempts[task] = (this.tasks.attempts[task] as number) + 1;
    this.tasks.worker[task] = worker;
    this.tasks.setFlag(task, HELD, true);
    this.tasks.leaseDeadline[task] = now + (this.tasks.more[task] as SpecMore).leaseMs;
    this.setState(task, 'running', now, worker, attemptNote(this.tasks.attempts[task] as number));
    this.queueLease(task);
    this.stats(worker, now).leases.add(task);
    const more = this.tasks.more[task] as SpecMore;
    return {
      name: this.tasks.name[task] as string,
      payload: this.blobs.get(this.tasks.payload[task] as number),
      attempt: this.tasks.attempts[task] as number,
      leaseDeadline: this.tasks.leaseDeadline[task] as number,
      leaseMs: more.leaseMs,
      pool: this.tasks.pool[task] as string,
      priority: this.tasks.priority[task] as number,
      params: more.params,
      inputs: more.inputs,
      outputs: more.outputs,
      paramFiles: more.paramFiles,
    };
  }

  private dropLease(task: TaskId): void {
    this.workers.get(this.tasks.worker[task] as string)?.leases.delete(task);
    this.tasks.leaseDeadline[task] = 0;
  }

  /** One lease-heap entry per task, at or before its deadline (`advance` moves it on). */
  private queueLease(task: TaskId): void {
    if (this.tasks.flag(task, LEASE_QUEUED)) return;
    this.tasks.setFlag(task, LEASE_QUEUED, true);
    this.leases.push({ task, at: this.tasks.leaseDeadline[task] as number });
    // The entry of a lease that ended early (most: completed) waits for its time to be dropped;
    // past twice the running tasks such entries go at once, so that a drain's memory stays flat.
    if (this.leases.size > 2 * this.counts.running + STALE_LEASES) {
      this.leases.retain((entry) => {
        if (this.tasks.state(entry.task) === 'running') return true;
        this.tasks.setFlag(entry.task, LEASE_QUEUED, false);
        return false;
      });
    }
  }

  /** Running back to ready without using an attempt (release, worker exit). */
  private giveBack(task: TaskId, now: number, note: string): void {
    const worker = this.tasks.worker[task] as string;
    this.dropLease(task);
    this.tasks.setFlag(task, HELD, false);
    this.tasks.attempts[task] = (this.tasks.attempts[task] as number) - 1;
    this.makeReady(task, now, worker, note);
  }

  /** A task whose dependencies are all done goes back to work: ready, or (a barrier) done at once. */
  private makeReady(task: TaskId, now: number, worker: string, note: string, notBefore = 0): void {
    if ((this.tasks.more[task] as SpecMore).barrier) return this.completeBarriers(task, now);
    if ((this.tasks.more[task] as SpecMore).afterEnded && !this.allDepsEnded(task)) {
      // A dependency went back to work (retry, replace) while this one ran: it waits for it to end again.
      this.tasks.setNotBefore(task, 0);
      return this.setState(task, 'waiting', now, worker, `${note}; a dependency is back at work`);
    }
    this.setState(task, 'ready', now, worker, note);
    if (notBefore > now) {
      this.tasks.setNotBefore(task, notBefore);
      this.backoffs.push({ task, at: notBefore });
    } else {
      this.tasks.setNotBefore(task, 0);
      this.enqueue(task);
    }
  }

  /** `task` is done: its dependents have one dependency less to wait for; those with none left go to work. */
  private releaseDependents(task: TaskId, now: number): void {
    for (let e = this.dependents.first(task); e !== NO_EDGE; e = this.dependents.next(e)) {
      const dependent = this.dependents.item(e);
      this.tasks.pendingDeps[dependent] = (this.tasks.pendingDeps[dependent] as number) - 1;
      if (this.tasks.state(dependent) !== 'waiting') continue;
      if ((this.tasks.pendingDeps[dependent] as number) === 0) this.makeReady(dependent, now, '', 'dependencies done');
      else if ((this.tasks.more[dependent] as SpecMore).afterEnded && this.allDepsEnded(dependent)) {
        this.makeReady(dependent, now, '', `every dependency has ended (${this.failedDeps(dependent).length} not done)`);
      }
    }
  }

  // --- after_ended -------------------------------------------------------------------------

  /** Every dependency exists and has ended: done, failed, cancelled or blocked (O(deps)). */
  private allDepsEnded(task: TaskId): boolean {
    for (let i = 0, n = this.tasks.depCount[task] as number; i < n; i++) {
      const dep = this.tasks.dep(task, i);
      const state = this.stateOfName(dep);
      if (state !== 'done' && state !== 'failed' && state !== 'cancelled' && state !== 'blocked') return false;
    }
    return true;
  }

  /** The names of its dependencies that are failed, cancelled or blocked now. */
  private failedDeps(task: TaskId): string[] {
    const names: string[] = [];
    for (let i = 0, n = this.tasks.depCount[task] as number; i < n; i++) {
      const dep = this.tasks.dep(task, i);
      const state = this.stateOfName(dep);
      if (state === 'failed' || state === 'cancelled' || state === 'blocked') names.push(dep);
    }
    return names;
  }

  /**
   * Marks `first`, a barrier whose dependencies are all done, done; then every barrier that this
   * leaves with all its dependencies done, in turn (a stack, not recursion: a chain of barriers may
   * be long). Other dependents become ready. A barrier is never handed out, so it holds no lease.
   */
  private completeBarriers(first: TaskId, now: number): void {
    const stack = [first];
    for (let task = stack.pop(); task !== undefined; task = stack.pop()) {
      this.tasks.setFlag(task, HELD, false);
      this.tasks.setNotBefore(task, 0);
      this.setState(task, 'done', now, '', 'barrier: every dependency is done');
      for (let e = this.dependents.first(task); e !== NO_EDGE; e = this.dependents.next(e)) {
        const dependent = this.dependents.item(e);
        this.tasks.pendingDeps[dependent] = (this.tasks.pendingDeps[dependent] as number) - 1;
        if (this.tasks.state(dependent) !== 'waiting') continue;
        if ((this.tasks.pendingDeps[dependent] as number) !== 0) {
          if ((this.tasks.more[dependent] as SpecMore).afterEnded && this.allDepsEnded(dependent)) this.makeReady(dependent, now, '', 'every dependency has ended');
          continue;
        }
        if ((this.tasks.more[dependent] as SpecMore).barrier) stack.push(dependent);
        else this.makeReady(dependent, now, '', 'dependencies done');
      }
    }
  }

  private failTask(task: TaskId, now: number, worker: string, note: string): void {
    this.observer.failed(this.tasks.pool[task] as string);
    this.setState(task, 'failed', now, worker, note);
    this.blockDescendants(task, now);
  }

  private blockDescendants(task: TaskId, now: number): void {
    const note = `ancestor "${this.tasks.name[task] as string}" is ${this.tasks.state(task)}`;
    const stack = this.dependents.toArray(task);
    for (let next = stack.pop(); next !== undefined; next = stack.pop()) {
      if (this.tasks.state(next) !== 'waiting') continue; // blocked already, with its descendants
      if ((this.tasks.more[next] as SpecMore).afterEnded) {
        // Never blocked: a dependency that ended badly has ended all the same.
        if (this.allDepsEnded(next)) this.makeReady(next, now, '', `every dependency has ended (${this.failedDeps(next).length} not done)`);
        continue;
      }
      this.setState(next, 'blocked', now, '', note);
      for (let e = this.dependents.first(next); e !== NO_EDGE; e = this.dependents.next(e)) stack.push(this.dependents.item(e));
    }
  }

  /** After `task` stopped being failed: unblock descendants that have no failed ancestor left. */
  private unblockDescendants(task: TaskId, now: number): void {
    const stack = this.dependents.toArray(task);
    for (let next = stack.pop(); next !== undefined; next = stack.pop()) {
      if ((this.tasks.more[next] as SpecMore).afterEnded) {
        // It was never blocked; if it has not started, it waits again for the dependency now back at work.
        if (this.tasks.state(next) === 'ready' && !this.allDepsEnded(next)) this.setState(next, 'waiting', now, '', `dependency "${this.tasks.name[task] as string}" is back at work`);
        continue;
      }
      if (this.tasks.state(next) !== 'blocked' || this.stateFromDeps(next) === 'blocked') continue; // a blocked dependency unblocked later pushes it again
      this.resettle(next, now, 'unblocked');
      for (let e = this.dependents.first(next); e !== NO_EDGE; e = this.dependents.next(e)) stack.push(this.dependents.item(e));
    }
  }

  /** The state its dependencies give a task that is not running, done, failed or cancelled. */
  private stateFromDeps(task: TaskId): 'blocked' | 'ready' | 'waiting' {
    if ((this.tasks.more[task] as SpecMore).afterEnded) return this.allDepsEnded(task) ? 'ready' : 'waiting';
    for (let i = 0, n = this.tasks.depCount[task] as number; i < n; i++) {
      const dep = this.tasks.dep(task, i);
      const state = this.stateOfName(dep);
      if (state === 'failed' || state === 'blocked' || state === 'cancelled') return 'blocked';
    }
    return (this.tasks.pendingDeps[task] as number) === 0 ? 'ready' : 'waiting';
  }

  /** Why a blocked task is blocked: the first of its dependencies that is failed, cancelled or blocked. */
  private blockedBy(task: TaskId): string {
    for (let i = 0, n = this.tasks.depCount[task] as number; i < n; i++) {
      const dep = this.tasks.dep(task, i);
      const state = this.stateOfName(dep);
      if (state === 'failed' || state === 'blocked' || state === 'cancelled') return `dependency "${dep}" is ${state}`;
    }
    return 'a dependency failed';
  }

  /** Moves a task to the state its dependencies give it. */
  private resettle(task: TaskId, now: number, note: string): void {
    const state = this.stateFromDeps(task);
    if (state === 'ready') this.makeReady(task, now, '', note);
    else this.setState(task, state, now, '', note);
  }

  private setState(task: TaskId, state: TaskState, now: number, worker: string, note: string): void {
    // A lease of a pool with a limit ended: a steal parked on that pool may have a turn now.
    if (this.tasks.state(task) === 'running' && state !== 'running' && this.pool(this.tasks.pool[task] as string).maxRunning > 0) this.woken.add(this.tasks.pool[task] as string);
    if (this.tasks.state(task) === 'verifying') this.verifying.delete(task);
    this.countOut(task);
    this.tasks.setState(task, state);
    this.countIn(task);
    // Output files belong to a completion: a task that leaves done (or never was) names none.
    if (state !== 'done' && state !== 'verifying' && this.tasks.outputs(task).length > 0) this.tasks.setOutputs(task, NO_OUTPUTS);
    this.appendLog(task, { state, at: now, worker, note });
    const busy = this.busy();
    if (!busy) this.wokenAll = true;
    else if (!this.pool(this.tasks.pool[task] as string).mayStillHaveWork(busy)) this.woken.add(this.tasks.pool[task] as string);
  }

  private appendLog(task: TaskId, change: StateChange): void {
    this.pushLog(task, change);
    this.dirty.add(task);
  }

  /** Appends to the task's log, keeping its first entry (creation) and the latest ones. */
  private pushLog(task: TaskId, change: StateChange): void {
    const tasks = this.tasks;
    let head = tasks.logHead[task] as number;
    let length = tasks.logLength[task] as number;
    for (; length >= this.options.maxLogEntries; length--) head = this.logs.dropSecond(head, length);
    tasks.logHead[task] = this.logs.append(head, change);
    tasks.logLength[task] = length + 1;
  }

  /** When the task's latest log entry was made (`otherwise` if its log is empty). */
  private changedAt(task: TaskId, otherwise: number): number {
    return (this.tasks.logHead[task] as number) === NO_ENTRY ? otherwise : this.logs.at(this.tasks.logHead[task] as number);
  }

  /** How long the latest attempt ran until `end` (ms; 0 if unknown: the clock went back, or the lease's entry is gone). */
  private runTime(task: TaskId, end: number): number {
    const started = this.logs.startedAt(this.tasks.logHead[task] as number);
    return started === 0 ? 0 : Math.max(0, end - started);
  }

  /** A task of `spec`, created as `seq`: its payload copied into the arena, its pool's name and the rest of its spec shared. */
  private newTask(spec: TaskSpec, seq: number): TaskId {
    const deps = spec.deps.length === 0 ? NO_DEPS : spec.deps;
    return this.tasks.add(spec.name, deps, this.pool(spec.pool).name, spec.priority, this.blobs.put(spec.payload), this.moreOf(spec), seq);
  }

  /** The SpecMore of `spec`: a shared one when it has no params, files or outputs. */
  private moreOf(spec: TaskSpec): SpecMore {
    const plain = spec.params.length === 0 && spec.inputs.length === 0 && spec.outputs.length === 0 && spec.paramFiles.length === 0;
    // Tasks come in runs of the same settings: the last shared one, without building its key.
    const last = this.lastMore;
    if (plain && last !== undefined && last.maxAttempts === spec.maxAttempts && last.leaseMs === spec.leaseMs && last.barrier === spec.barrier && last.afterEnded === spec.afterEnded) return last;
    const key = plain ? `${spec.maxAttempts}:${spec.leaseMs}:${spec.barrier ? 1 : 0}:${spec.afterEnded ? 1 : 0}` : '';
    const shared = plain ? this.sharedMore.get(key) : undefined;
    if (shared !== undefined) return (this.lastMore = shared);
    const more: SpecMore = {
      maxAttempts: spec.maxAttempts,
      leaseMs: spec.leaseMs,
      params: spec.params.length === 0 ? NO_PARAMS : spec.params,
      inputs: spec.inputs.length === 0 ? NO_OUTPUTS : spec.inputs,
      outputs: spec.outputs.length === 0 ? NO_NAMES : spec.outputs,
      paramFiles: spec.paramFiles.length === 0 ? NO_PARAM_FILES : spec.paramFiles,
      barrier: spec.barrier,
      afterEnded: spec.afterEnded,
    };
    if (plain && this.sharedMore.size < MAX_SHARED_MORE) {
      this.sharedMore.set(key, more);
      this.lastMore = more;
    }
    return more;
  }

  /** The task's spec, as given (its payload a view into the arena). */
  private specOf(task: TaskId): TaskSpec {
    const more = this.tasks.more[task] as SpecMore;
    return {
      name: this.tasks.name[task] as string,
      deps: this.tasks.depsOf(task),
      payload: this.blobs.get(this.tasks.payload[task] as number),
      priority: this.tasks.priority[task] as number,
      pool: this.tasks.pool[task] as string,
      maxAttempts: more.maxAttempts,
      leaseMs: more.leaseMs,
      params: more.params,
      inputs: more.inputs,
      outputs: more.outputs,
      paramFiles: more.paramFiles,
      barrier: more.barrier,
      afterEnded: more.afterEnded,
    };
  }

  /**
   * About how many bytes a task adds to a steal's reply: its payload, and its params and file names
   * (a task's params alone may be a MiB), so that the reply's bound holds for sweeps too.
   */
  private leasedBytes(task: TaskId): number {
    const more = this.tasks.more[task] as SpecMore;
    let bytes = this.blobs.length(this.tasks.payload[task] as number);
    for (const p of more.params) bytes += p.name.length + p.value.length;
    for (const f of more.inputs) bytes += f.name.length + 80;
    for (const name of more.outputs) bytes += name.length;
    for (const f of more.paramFiles) bytes += f.name.length + f.param.length;
    return bytes;
  }

  /** Everything known of `task`, as lookup returns it and the store keeps it. */
  private record(task: TaskId): TaskRecord {
    return {
      spec: this.specOf(task),
      state: this.tasks.state(task),
      attempts: this.tasks.attempts[task] as number,
      worker: this.tasks.worker[task] as string,
      holder: this.tasks.flag(task, HELD) ? this.tasks.worker[task] as string : '',
      leaseDeadline: this.tasks.leaseDeadline[task] as number,
      notBefore: this.tasks.notBefore(task),
      result: this.blobs.get(this.tasks.result[task] as number),
      lastError: this.tasks.lastError(task),
      log: this.logs.entries(this.tasks.logHead[task] as number, this.tasks.logLength[task] as number),
      seq: this.tasks.seq[task] as number,
      outputs: this.tasks.outputs(task),
    };
  }

  /** TOO_LARGE, before anything changes, when the dependency names of `specs` would not fit in the graph (TaskTable.depRoom). */
  private checkDepRoom(specs: Iterable<TaskSpec>): void {
    const counts: number[] = [];
    for (const spec of specs) if (spec.deps.length > 0) counts.push(spec.deps.length);
    if (!this.tasks.depRoom(counts)) throw new DagworkError('TOO_LARGE', `the graph would hold more than ${this.tasks.maxDepNames} dependency names`);
  }

  /** The state of the task of that name (undefined: there is none). */
  private stateOfName(name: string): TaskState | undefined {
    const task = this.byName.get(name);
    return task === undefined ? undefined : this.tasks.state(task);
  }

  /** The pool of the task of that name (undefined: there is none). */
  private poolOfName(name: string): string | undefined {
    const task = this.byName.get(name);
    return task === undefined ? undefined : this.tasks.pool[task] as string;
  }

  /** The deps of the task of that name (none: there is none). */
  private depsOfName(name: string): readonly string[] {
    const task = this.byName.get(name);
    return task === undefined ? NO_DEPS : this.tasks.depsOf(task);
  }

  /** One more dependency of `task` does not exist; true when it is its first. */
  private addMissingDep(task: TaskId): boolean {
    const before = this.tasks.missingDeps[task] as number;
    this.tasks.missingDeps[task] = before + 1;
    return before === 0;
  }

  // --- bookkeeping -----------------------------------------------------------------------

  /** Connect `task` to its dependencies (existing or not) and to tasks that waited for its name. */
  private link(task: TaskId): void {
    const tasks = this.tasks;
    const pending = tasks.pendingDeps;
    for (let i = 0, n = tasks.depCount[task] as number; i < n; i++) {
      const dep = tasks.dep(task, i);
      const parent = this.byName.get(dep);
      if (parent === undefined) {
        const waiting = this.missing.get(dep);
        if (waiting === undefined) this.missing.set(dep, [task]);
        else waiting.push(task);
        pending[task] = (pending[task] as number) + 1;
        if (this.addMissingDep(task)) this.onMissing++;
      } else {
        this.dependents.append(parent, task);
        // The dependency's own name string, not the copy the request carried: one string per name.
        tasks.setDep(task, i, tasks.name[parent] as string);
        if (tasks.state(parent) !== 'done') pending[task] = (pending[task] as number) + 1;
      }
    }
    const name = tasks.name[task] as string;
    const waiting = this.missing.get(name);
    if (waiting !== undefined) {
      const missing = tasks.missingDeps;
      // A loop, not push(...waiting): a name can be awaited by more tasks than a call takes arguments.
      for (const w of waiting) {
        this.dependents.append(task, w);
        for (let i = 0, n = tasks.depCount[w] as number; i < n; i++) if (tasks.dep(w, i) === name) tasks.setDep(w, i, name);
        missing[w] = (missing[w] as number) - 1;
        if (missing[w] === 0) this.onMissing--;
      }
      this.missing.delete(name);
    }
  }

  /**
   * The names of `fresh` ordered dependencies first; throws CYCLE if they would close a cycle.
   * The existing graph is acyclic, so a cycle must run through a new task, and from there back
   * into it through an existing task that waited for a new task's name. Without such a task (the
   * usual case: dependencies created first) the search stays inside the batch; with one, it enters
   * only existing tasks with a dependency not done, the only ones that can wait for a name.
   */
  private batchOrder(fresh: Map<string, TaskSpec>, inOrder: boolean): string[] {
    let awaited = false;
    for (const name of fresh.keys()) if (this.missing.has(name)) awaited = true;
    // A batch that names each new task after the new tasks it depends on (`inOrder`: a file
    // written in order, as most are) is in an order already, and holds no cycle: its tasks
    // reach only earlier ones, and the graph's tasks wait for none of them (not awaited).
    if (inOrder && !awaited) return [...fresh.keys()];
    const depsOf = (name: string): readonly string[] => {
      const spec = fresh.get(name);
      if (spec !== undefined) return spec.deps;
      if (!awaited) return [];
      // Only a task with a dependency not done can lie on a cycle with a new task, whatever its
      // state (waiting, blocked, or cancelled before its deps were done).
      const task = this.byName.get(name);
      return task !== undefined && (this.tasks.pendingDeps[task] as number) > 0 ? this.tasks.depsOf(task) : [];
    };
    return dependencyOrder(fresh.keys(), (name) => fresh.has(name), depsOf);
  }

  private queuesOf(pools: readonly string[]): PoolQueue[] {
    if (pools.length === 0) return [...this.pools.values()];
    const queues: PoolQueue[] = [];
    for (const pool of new Set(pools.map((p) => p || DEFAULT_POOL))) {
      const queue = this.pools.get(pool);
      if (queue !== undefined) queues.push(queue);
    }
    return queues;
  }

  private pool(name: string): PoolQueue {
    let queue = this.pools.get(name);
    if (queue === undefined) {
      queue = new PoolQueue(name, this.tasks);
      this.pools.set(name, queue);
    }
    return queue;
  }

  private enqueue(task: TaskId): void {
    const queue = this.pool(this.tasks.pool[task] as string);
    if (!this.tasks.flag(task, QUEUED_ALL) && !queue.throttled) {
      this.tasks.setFlag(task, QUEUED_ALL, true);
      this.allReady.push(task);
    }
    if (this.tasks.flag(task, QUEUED)) return;
    this.tasks.setFlag(task, QUEUED, true);
    queue.ready.push(task);
    this.woken.add(this.tasks.pool[task] as string);
  }

  /** Tells the observer of `added`, one call per run of tasks of one pool (a batch is mostly one pool). */
  private observeCreated(added: readonly TaskId[]): void {
    let from = 0;
    for (let i = 1; i <= added.length; i++) {
      const pool = (this.tasks.pool[(added[from] as TaskId)] as string);
      if (i < added.length && (this.tasks.pool[(added[i] as TaskId)] as string) === pool) continue;
      this.observer.created(pool, i - from);
      from = i;
    }
  }

  private countIn(task: TaskId): void {
    this.counts[this.tasks.state(task)]++;
    this.pool(this.tasks.pool[task] as string).counts[this.tasks.state(task)]++;
    if (this.tasks.state(task) === 'failed') this.failedTasks.add(task);
  }

  private countOut(task: TaskId): void {
    this.counts[this.tasks.state(task)]--;
    this.pool(this.tasks.pool[task] as string).counts[this.tasks.state(task)]--;
    if (this.tasks.state(task) === 'failed') this.failedTasks.delete(task);
  }

  /**
   * The worker's statistics, marked as seen at `now` (0: not seen, only referred to). The table
   * is kept in the order workers were last seen (a touch moves a worker to the end), so the
   * longest idle are first to be forgotten.
   */
  private stats(worker: string, now: number): WorkerStats {
    let stats = this.workers.get(worker);
    if (stats === undefined) {
      stats = { exited: false, lastSeen: now, done: 0, failed: 0, runs: 0, busyMs: 0, maxRunMs: 0, leases: new Set() };
      this.workers.set(worker, stats);
      if (this.workers.size > MAX_WORKERS) this.forgetIdleWorkers(now);
    } else if (now > stats.lastSeen) {
      stats.lastSeen = now;
      stats.exited = false;
      this.workers.delete(worker);
      this.workers.set(worker, stats);
    }
    return stats;
  }

  /** A run of `task` by the worker of `stats` ends now: its time, from its lease (the latest RUNNING entry). */
  private ranFor(stats: WorkerStats, task: TaskId, now: number): void {
    const started = this.logs.startedAt(this.tasks.logHead[task] as number);
    if (started === 0) return;
    const ms = Math.max(0, now - started);
    stats.runs++;
    stats.busyMs += ms;
    stats.maxRunMs = Math.max(stats.maxRunMs, ms);
  }

  /**
   * At a restart, each worker's figures again, from the tasks' state logs: a RUNNING entry and the
   * one after it are a run (done; failed, or back to ready by a failure or an expiry; runs given
   * back without using an attempt do not count). Logs keep their first and latest entries only
   * (maxLogEntries), so a task retried very often counts its latest runs.
   */
  private countRuns(task: TaskId, entries: number[]): void {
    // Read in the arena, first entry to latest: `entries` is the log from its latest back.
    const logs = this.logs;
    entries.length = 0;
    for (let entry = this.tasks.logHead[task] as number; entry !== NO_ENTRY; entry = logs.prev(entry)) entries.push(entry);
    for (let i = entries.length - 1; i > 0; i--) {
      const run = entries[i] as number;
      if (logs.state(run) !== 'running' || logs.worker(run) === '') continue;
      const end = entries[i - 1] as number;
      const endState = logs.state(end);
      const stats = this.stats(logs.worker(run), 0);
      stats.lastSeen = Math.max(stats.lastSeen, logs.at(end));
      // A run whose result was verified: done or failed by the verdict that followed (none yet: neither).
      const verdict = endState === 'verifying' && i > 1 ? logs.state(entries[i - 2] as number) : undefined;
      if (endState === 'verifying') {
        if (verdict === 'done') stats.done++;
        else if (verdict === 'ready' || verdict === 'failed') stats.failed++;
      } else if (endState === 'done') stats.done++;
      else if ((endState === 'failed' || endState === 'ready') && !GIVEN_BACK.has(logs.note(end))) stats.failed++;
      else continue;
      const ms = Math.max(0, logs.at(end) - logs.at(run));
      stats.runs++;
      stats.busyMs += ms;
      stats.maxRunMs = Math.max(stats.maxRunMs, ms);
    }
  }

  /** Forgets workers holding no lease that were not seen for an hour, or the longest idle past the cap. */
  private forgetIdleWorkers(now: number): void {
    for (const [worker, stats] of this.workers) {
      const stale = stats.lastSeen < now - WORKER_IDLE_MS;
      if (!stale && this.workers.size <= MAX_WORKERS) return;
      if (stats.leases.size === 0) this.workers.delete(worker);
    }
  }
}


/** The verifier commands a pool_set sets (not those it removes with ''), each with what it is. */
export function verifierCommands(args: PoolSetArgs): [string, string][] {
  const commands: [string, string][] = [];
  if (args.jobVerifier !== undefined && args.jobVerifier !== '') commands.push(['job verifier', args.jobVerifier]);
  if (args.resultVerifier !== undefined && args.resultVerifier !== '') commands.push(['result verifier', args.resultVerifier]);
  return commands;
}

/** Why a verifier command cannot be taken as it is (the graph's part: the hub checks that sh can run it), or undefined. */
function verifierProblem(command: string): string | undefined {
  const bytes = Buffer.byteLength(command, 'utf8');
  if (bytes > MAX_VERIFIER_BYTES) return `the command is ${bytes} bytes; the limit is ${MAX_VERIFIER_BYTES}`;
  if (command.includes('\0')) return 'the command holds a NUL character';
  if (command.trim() === '') return 'the command is blank (give an empty one to remove the verifier)';
  return undefined;
}

function outcome(name: string, what: TaskOutcome, message: string): TaskResult {
  return { name, outcome: what, message };
}
function accepted(name: string, message: string): TaskResult {
  return outcome(name, 'ACCEPTED', message);
}
function notFound(name: string): TaskResult {
  return outcome(name, 'NOT_FOUND', `no task named "${name}"`);
}
function notLeased(name: string, message: string): TaskResult {
  return outcome(name, 'NOT_LEASED', message);
}

export type { StateCounts };
