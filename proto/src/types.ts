/** The contract's types, as TypeScript sees them. The codec maps these to and from proto/dagwork.proto. */

/** In the order of the .proto's TaskState numbers (1, 2, ...). */
export const TASK_STATES = ['waiting', 'ready', 'running', 'done', 'failed', 'blocked', 'cancelled', 'verifying'] as const;
export type TaskState = (typeof TASK_STATES)[number];

/** A task's definition, with every default filled in. */
export interface TaskSpec {
  name: string;
  /** Names of tasks that must be done first; unique, in the order given. */
  deps: string[];
  payload: Uint8Array;
  priority: number;
  pool: string;
  maxAttempts: number;
  leaseMs: number;
  /** The parameter set, in the sweep header's order. */
  params: Param[];
  /** Files put into the scratch directory before a run. */
  inputs: FileRef[];
  /** Files the run must leave in its scratch directory. */
  outputs: string[];
  /** Files written from a param's value into the scratch directory before a run. */
  paramFiles: ParamFile[];
  /** Done by the hub itself once every dependency is done; never handed out. */
  barrier: boolean;
  /** Runs once every dependency has ended (done, failed, cancelled or blocked); never blocked. */
  afterEnded: boolean;
}

export interface Param {
  name: string;
  value: string;
}

/** A file kept by the hub by content; `name` is its place in a task's scratch directory. */
export interface FileRef {
  name: string;
  /** SHA-256, 64 lowercase hex digits. */
  sha256: string;
  size: number;
  executable: boolean;
}

export interface ParamFile {
  /** Its place in the scratch directory. */
  name: string;
  /** The param whose value it holds. */
  param: string;
}

/** A task's definition as a client gives it: everything but the name may be left out. */
export interface TaskSpecInput {
  name: string;
  deps?: readonly string[];
  payload?: Uint8Array;
  priority?: number;
  pool?: string;
  maxAttempts?: number;
  leaseMs?: number;
  params?: readonly Param[];
  inputs?: readonly FileRef[];
  outputs?: readonly string[];
  paramFiles?: readonly ParamFile[];
  barrier?: boolean;
  afterEnded?: boolean;
}

export interface StateChange {
  state: TaskState;
  /** ms since the epoch */
  at: number;
  worker: string;
  note: string;
}

/** Everything known of a task: what lookup returns and what the store keeps. */
export interface TaskRecord {
  spec: TaskSpec;
  state: TaskState;
  /** Times handed out, released leases excepted. */
  attempts: number;
  /** The current lease holder, or the last one. */
  worker: string;
  /**
   * The worker whose lease is honoured: the holder while running; after its lease expired, still
   * that worker (its completion is accepted) until another takes the task or it is settled
   * otherwise (release, exit, fail, cancel, retry); empty otherwise.
   */
  holder: string;
  /** Running: when the lease ends (ms since the epoch); 0 otherwise. */
  leaseDeadline: number;
  /** Ready after a failure: not handed out before this time; 0 otherwise. */
  notBefore: number;
  result: Uint8Array;
  lastError: string;
  log: StateChange[];
  /** Creation order. */
  seq: number;
  /** Done: the output files its completion named. */
  outputs: FileRef[];
}

export const TASK_OUTCOMES = [
  'ACCEPTED',
  'NOT_FOUND',
  'ALREADY_DONE',
  'LEASED_TO_OTHER',
  'NOT_LEASED',
  'NOT_FAILED',
  'LEASE_EXPIRED',
  'TASK_CANCELLED',
  'TASK_FAILED',
  'RESULT_TOO_LARGE',
  'MISSING_FILES',
  'NOT_DONE',
  'TASK_RUNNING',
  'HAS_DEPENDENTS',
] as const;
export type TaskOutcome = (typeof TASK_OUTCOMES)[number];

/** How one task of a multi-task operation went. */
export interface TaskResult {
  name: string;
  outcome: TaskOutcome;
  message: string;
}

export interface LeasedTask {
  name: string;
  payload: Uint8Array;
  attempt: number;
  leaseDeadline: number;
  leaseMs: number;
  pool: string;
  priority: number;
  params: Param[];
  inputs: FileRef[];
  outputs: string[];
  paramFiles: ParamFile[];
}

export interface StealResult {
  tasks: LeasedTask[];
  /** Nothing handed out, and nothing waiting, ready or running in the asked pools. */
  finished: boolean;
  /** Set (> 0) when the steal asked to wait but could not be parked: ask again after this long (ms). */
  retryAfterMs: number;
}

export interface Completion {
  name: string;
  result?: Uint8Array;
  /** The task's declared outputs, uploaded first. */
  outputs?: readonly FileRef[];
}

export interface FailResult {
  result: TaskResult;
  state: TaskState | undefined;
  notBefore: number;
}

export type StateCounts = Record<TaskState, number>;

export interface WorkerStatus {
  worker: string;
  lastSeen: number;
  running: number;
  done: number;
  failed: number;
  /** It said it left, and has not been seen since. */
  exited: boolean;
  /** Its runs that ended (done or failed), their time together and the longest, in ms (lease to end). */
  runs: number;
  busyMs: number;
  maxRunMs: number;
  /** Names of the tasks it holds now (at most 10). */
  tasks: string[];
}

/** What a create did. */
export interface CreateResult {
  created: number;
  unchanged: number;
  /** Dependencies of the new tasks that exist neither in the batch nor in the hub (at most 100). */
  missingDeps: string[];
  missingDepsTotal: number;
}

/** Which tasks a list asks for, and from where. */
export interface ListQuery {
  /** Only tasks in one of these states; empty: any. */
  states: TaskState[];
  /** Only tasks of this pool; empty: every pool. */
  pool: string;
  /** Only tasks whose name starts with this. */
  prefix: string;
  /** Most tasks in the reply; 0 means the default (100). */
  limit: number;
  /** The `next` of the previous page; 0 starts at the first task. */
  after: number;
  /** Fill `params`. */
  withParams: boolean;
  /** Fill `result` and `outputs` (a page then ends once its results pass 16 MiB). */
  withResults: boolean;
  /** Fill `deps` (a page then ends once its deps' names pass 16 MiB). */
  withDeps?: boolean;
}

/** One listed task. */
export interface TaskSummary {
  name: string;
  state: TaskState;
  pool: string;
  attempts: number;
  worker: string;
  lastError: string;
  seq: number;
  resultBytes: number;
  /** When it entered its state (ms since the epoch). */
  changedAt: number;
  createdAt: number;
  /** When its last attempt was handed out; 0 if never. */
  startedAt: number;
  /** With `withParams`; empty otherwise. */
  params: Param[];
  /** With `withResults`: a done task's result; empty otherwise. */
  result: Uint8Array;
  /** With `withResults`: a done task's output files; empty otherwise. */
  outputs: FileRef[];
  /** A barrier: it runs nothing. */
  barrier: boolean;
  /** How many of its dependencies are failed, cancelled or blocked now. */
  failedDeps: number;
  /** With `withDeps`: its dependencies as its spec names them (otherwise empty). */
  deps?: string[];
}

export interface ListResult {
  tasks: TaskSummary[];
  /** Pass as `after` for the next page; 0: nothing more. */
  next: number;
}

/** A task's record, the tasks that depend on it, and its dependencies that do not exist. */
export interface LookupResult {
  task: TaskRecord;
  dependents: string[];
  missingDeps: string[];
  /** Its dependencies that are failed, cancelled or blocked now. */
  failedDeps: string[];
}

/** Which tasks a rerun puts back to work (see RerunRequest in the .proto). */
export interface RerunQuery {
  names: string[];
  descendants: boolean;
  prefix: string;
  pool: string;
}

export interface RerunResult {
  /** Tasks put back to work, descendants included. */
  rerun: number;
  /** One per name asked. */
  results: TaskResult[];
}

export interface DeleteResult {
  /** Tasks removed, descendants included. */
  deleted: number;
  /** One per name asked: ACCEPTED, NOT_FOUND or HAS_DEPENDENTS. */
  results: TaskResult[];
}

export interface ReplaceResult {
  replaced: number;
  unchanged: number;
  created: number;
  /** One per task asked. */
  results: TaskResult[];
}

/** The hub's limits, so that a client can size its batches. */
export interface Limits {
  maxMessageBytes: number;
  maxBatch: number;
  maxSteal: number;
  maxPayloadBytes: number;
  maxResultBytes: number;
  maxNameBytes: number;
  maxWaitMs: number;
  maxFileBytes: number;
  /** 0: as much as the hub's disk holds. */
  maxFilesBytes: number;
  maxChunkBytes: number;
}

export interface GraphStatus {
  counts: StateCounts;
  /** At most 1,000 pools, the first made; `poolsTotal` counts them all. */
  pools: { pool: string; counts: StateCounts; donePerSecond: number }[];
  poolsTotal: number;
  /** The workers holding leases and the most recently seen others, capped. */
  workers: WorkerStatus[];
  /** Workers the hub knows. */
  workersTotal: number;
  /** Tasks waiting on at least one name that does not exist. */
  waitingOnMissing: number;
  /** Names that tasks depend on and that do not exist. */
  missingNames: number;
  /** A few of them (at most 10). */
  missingExamples: string[];
  donePerSecond: number;
  now: number;
  total: number;
}

export interface Status extends GraphStatus {
  limits: Limits;
  /** Made when the hub's store was created: a new store, a new id. */
  storeId: string;
  /** When the hub process started (ms since the epoch). */
  startedMs: number;
  /** Files the hub holds, and their bytes. */
  files: number;
  filesBytes: number;
}

/** What the hub holds of a file. */
export interface FileStat {
  sha256: string;
  held: boolean;
  /** Held: its size. */
  size: number;
  /** Not held: the bytes of an interrupted upload the hub has. */
  received: number;
}

export interface GcResult {
  removed: number;
  removedBytes: number;
  kept: number;
  keptBytes: number;
}

// --- Pools (PoolInfo, pool_list, pool_set, pool_delete) ---

/** Highest max_running a pool may be given (a bound for typos; the wire carries a uint32). */
export const MAX_POOL_RUNNING = 1_000_000_000;

/** What an operator sets on a pool (kept in the store). */
export interface PoolSettings {
  /** At most this many of the pool's tasks leased at once; 0: no limit. */
  maxRunning: number;
  /** Nothing of the pool is handed out. */
  paused: boolean;
  /** Shell commands that check each new task and each completion (see PoolSetRequest); '' none. */
  jobVerifier: string;
  resultVerifier: string;
}

/** A pool's settings and what it holds. */
export interface PoolInfo extends PoolSettings {
  pool: string;
  counts: StateCounts;
  /** Completions per second over the last minute (or since the first, when sooner). */
  donePerSecond: number;
}

export interface PoolListResult {
  pools: PoolInfo[];
  poolsTotal: number;
}

/** A pool_set: the settings given change, the others are kept. */
export interface PoolSetArgs {
  pool: string;
  maxRunning: number | undefined;
  paused: boolean | undefined;
  jobVerifier?: string | undefined;
  resultVerifier?: string | undefined;
}

export interface PoolDeleteResult {
  deleted: number;
  blocked: number;
}

export function emptyCounts(): StateCounts {
  return { waiting: 0, ready: 0, running: 0, done: 0, failed: 0, blocked: 0, cancelled: 0, verifying: 0 };
}

/** What a graph view shows (GraphViewRequest in the .proto). */
export type Collapse = 'none' | 'pool' | 'prefix';
export interface GraphViewQuery {
  pool: string;
  around: string;
  /** With around: 0 means 2. */
  depth: number;
  collapse: Collapse;
  /** 0 means 2,000. */
  maxNodes: number;
}
export interface GraphNode {
  id: string;
  counts: StateCounts;
  /** A task's state; undefined for a group. */
  state: TaskState | undefined;
  pool: string;
  tasks: number;
}
export interface GraphEdge {
  from: string;
  to: string;
  count: number;
}
export interface GraphView {
  nodes: GraphNode[];
  edges: GraphEdge[];
  tasks: number;
}
