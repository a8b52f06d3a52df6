/** The contract's types, as TypeScript sees them. The codec maps these to and from proto/dagwork.proto. */

/** In the order of the .proto's TaskState numbers (1, 2, ...). */
export const TASK_STATES = ['waiting', 'ready', 'running', 'done', 'failed', 'blocked', 'cancelled'] as const;
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
}

export interface GraphStatus {
  counts: StateCounts;
  pools: { pool: string; counts: StateCounts }[];
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
}

export function emptyCounts(): StateCounts {
  return { waiting: 0, ready: 0, running: 0, done: 0, failed: 0, blocked: 0, cancelled: 0 };
}
